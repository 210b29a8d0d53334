//! Small helpers every layer uses: terminal-safe text, bounded names, time in microseconds,
//! scenario randomness, and JSON paths. Nothing here knows about sessions or the network.

pub mod jsonpath;
pub mod ledger;
pub mod repoll;

use std::time::{Duration, Instant};

/// Longest log line (or other guest text shown on a terminal) kept, in bytes.
pub const MAX_LOG_LINE: usize = 4096;

/// Makes untrusted text safe for a terminal: control characters (ANSI/OSC escapes included)
/// are shown as `\u{..}`, and the text is cut at [`MAX_LOG_LINE`] bytes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOG_LINE));
    for c in s.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` cut to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Microseconds since `start`, saturating.
pub fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Microseconds since `start` as the WIT's `u32`, saturating at 71 minutes.
pub fn micros_since_u32(start: Instant) -> u32 {
    micros_between(start, Instant::now())
}

/// Microseconds from `start` to `end` as the WIT's `u32` (0 if `end` is earlier), saturating.
pub fn micros_between(start: Instant, end: Instant) -> u32 {
    u32::try_from(end.saturating_duration_since(start).as_micros()).unwrap_or(u32::MAX)
}

/// A uniformly distributed number in `[0, bound)` from a per-thread xorshift generator seeded
/// from the OS (scenario randomness, not cryptography).
pub fn random_below(bound: u32) -> u32 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    if bound == 0 {
        return 0;
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        u32::try_from(((x >> 32) * u64::from(bound)) >> 32).unwrap_or(0)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(micros_since(Instant::now() - Duration::from_millis(1)));
    h.finish() | 1
}

/// The first line of an error chain's text (wasmtime errors span many lines).
pub fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// Runs `work` as its own tokio task and waits for it; the task is aborted if the wait is
/// dropped. A host call that awaits this keeps deep, one-off call stacks (a TLS or WebSocket
/// handshake) off the session's fiber stack, whose touched pages stay resident for as long
/// as the session lives. `make` builds the work on the task, boxed: what is spawned from the
/// fiber is a few words, not the work's whole state machine, whose moves would touch as many
/// stack pages as it is large. `unstarted` runs instead when the task is dropped before it
/// ever ran (its caller gone first), so that work can still be accounted for. `None` when the
/// task failed.
pub async fn on_own_task<M, F, U>(make: M, unstarted: U) -> Option<F::Output>
where
    M: FnOnce() -> F + Send + 'static,
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
    U: FnOnce() + Send + 'static,
{
    struct AbortOnDrop(tokio::task::AbortHandle);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    /// Calls its function when dropped, unless disarmed first.
    struct OnDrop<U: FnOnce()>(Option<U>);
    impl<U: FnOnce()> Drop for OnDrop<U> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    let never_ran = OnDrop(Some(unstarted));
    // Boxed before it is spawned: `spawn` moves its future by value through several frames
    // of its own, each a copy on this (the session's fiber) stack, which then stays resident.
    let task = tokio::spawn(Box::pin(async move {
        let mut ran = never_ran;
        drop(ran.0.take());
        Box::pin(make()).await
    }));
    let _guard = AbortOnDrop(task.abort_handle());
    task.await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_dropped_before_its_task_ran_is_accounted_for() {
        use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
        let unstarted = std::sync::Arc::new(AtomicU32::new(0));
        let count = || {
            let n = unstarted.clone();
            move || {
                n.fetch_add(1, SeqCst);
            }
        };
        assert_eq!(on_own_task(|| async { 7 }, count()).await, Some(7));
        assert_eq!(unstarted.load(SeqCst), 0, "work that ran is not unstarted");
        // Polled once (the task is spawned), then dropped before the runtime runs the task.
        let mut call = Box::pin(on_own_task(|| async { 7 }, count()));
        let waker = std::task::Waker::noop();
        let _ = call
            .as_mut()
            .poll(&mut std::task::Context::from_waker(waker));
        drop(call);
        for _ in 0..100 {
            if unstarted.load(SeqCst) == 1 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(unstarted.load(SeqCst), 1);
    }

    #[test]
    fn escape_and_truncate_are_safe() {
        assert_eq!(escape("a\u{1b}[31m"), "a\\u{1b}[31m");
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(random_below(0), 0);
        assert!(random_below(3) < 3);
    }
}
