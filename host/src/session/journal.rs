//! A session's traced calls and its log-line budget.

use std::collections::HashMap;
use std::time::Instant;

/// Open traced calls: token → (metric name, start).
#[derive(Default)]
pub struct Traces {
    open: HashMap<u32, (String, Instant)>,
    next: u32,
}

impl Traces {
    /// Starts a trace; `None` when too many are open (a guest that never ends them).
    pub fn begin(&mut self, name: String) -> Option<u32> {
        if self.open.len() >= crate::plan::limits::MAX_OPEN_TRACES {
            return None;
        }
        self.next = self.next.wrapping_add(1);
        self.open.insert(self.next, (name, Instant::now()));
        Some(self.next)
    }

    /// Ends a trace: its name and duration in µs.
    pub fn end(&mut self, token: u32) -> Option<(String, u64)> {
        self.open
            .remove(&token)
            .map(|(name, start)| (name, crate::util::micros_since(start)))
    }
}

/// Per-second log-line budget; lines over it are dropped and counted, and the next line
/// admitted (or the session's end) reports how many were dropped.
#[derive(Default)]
pub struct LogLimiter {
    window: Option<Instant>,
    in_window: u32,
    /// Lines dropped and not yet reported.
    unreported: u64,
    /// Lines dropped in the whole session.
    pub dropped: u64,
}

/// The limiter's answer for one line.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    /// Whether the line may be written.
    pub write: bool,
    /// Lines dropped since the last report, to be reported before this line.
    pub dropped_before: u64,
}

impl LogLimiter {
    /// Whether one more line may be written now, and how many were dropped before it.
    pub fn admit(&mut self, per_sec: u32) -> Admission {
        let now = Instant::now();
        match self.window {
            Some(w) if now.duration_since(w).as_secs() < 1 => {}
            _ => {
                self.window = Some(now);
                self.in_window = 0;
            }
        }
        self.in_window += 1;
        if self.in_window <= per_sec {
            return Admission {
                write: true,
                dropped_before: std::mem::take(&mut self.unreported),
            };
        }
        self.dropped += 1;
        self.unreported += 1;
        Admission {
            write: false,
            dropped_before: 0,
        }
    }

    /// Dropped lines not reported yet (at the session's end).
    pub fn take_unreported(&mut self) -> u64 {
        std::mem::take(&mut self.unreported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_reports_what_it_dropped() {
        let mut l = LogLimiter::default();
        assert!(l.admit(2).write && l.admit(2).write);
        assert!(!l.admit(2).write && !l.admit(2).write);
        assert_eq!((l.dropped, l.take_unreported()), (2, 2));
        assert_eq!(l.take_unreported(), 0);
    }
}
