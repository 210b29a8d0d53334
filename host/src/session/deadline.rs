//! The one deadline object of a session. Children and nested runs inherit the remaining budget
//! (the same instant); every host call that waits is clamped to it, so a session whose time is
//! up sees its waits end and its requests fail `timeout` and can still run `teardown`.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a guest whose deadline passed may take to return from `run` (its waits end at
/// once, so this is only the time to unwind) before its call is dropped.
pub const UNWIND_GRACE: Duration = Duration::from_secs(2);
/// How long `teardown` may run after a session timed out.
pub const TEARDOWN_GRACE: Duration = Duration::from_secs(5);

/// When a session's time is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline(Instant);

impl Deadline {
    /// A deadline `budget` from now.
    pub fn after(budget: Duration) -> Deadline {
        Deadline(Instant::now() + budget)
    }

    /// The instant itself.
    pub fn at(self) -> Instant {
        self.0
    }

    /// Time left (zero once passed).
    pub fn remaining(self) -> Duration {
        self.0.saturating_duration_since(Instant::now())
    }

    /// Whether the deadline has passed.
    pub fn passed(self) -> bool {
        Instant::now() >= self.0
    }

    /// `wait` clamped to the time left; `None` once the deadline passed.
    pub fn clamp(self, wait: Duration) -> Option<Duration> {
        let left = self.remaining();
        (!left.is_zero()).then(|| wait.min(left))
    }

    /// The earlier of the deadline and `from now + wait` (a timeout that cannot outlive the
    /// session).
    pub fn within(self, wait: Option<Duration>) -> Deadline {
        match wait {
            Some(w) => Deadline(self.0.min(Instant::now() + w)),
            None => self,
        }
    }

    /// Runs `fut` until the deadline plus [`UNWIND_GRACE`]; `None` if it had to be dropped.
    pub async fn enforce<T>(self, fut: impl Future<Output = T>) -> Option<T> {
        let hard = tokio::time::Instant::from_std(self.0 + UNWIND_GRACE);
        tokio::time::timeout_at(hard, fut).await.ok()
    }

    /// Runs `fut` until the deadline; `None` if it passed first.
    pub async fn race<T>(self, fut: impl Future<Output = T>) -> Option<T> {
        tokio::time::timeout_at(tokio::time::Instant::from_std(self.0), fut)
            .await
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_and_within_never_outlive_the_deadline() {
        let d = Deadline::after(Duration::from_secs(1));
        assert!(d.clamp(Duration::from_secs(60)).unwrap() <= Duration::from_secs(1));
        assert_eq!(d.within(Some(Duration::from_secs(60))), d);
        let past = Deadline::after(Duration::ZERO);
        assert!(past.passed() && past.clamp(Duration::from_secs(1)).is_none());
    }
}
