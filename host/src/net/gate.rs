//! The run's connect gate: at most `limit` connections are being established at once (DNS,
//! TCP, TLS); the others queue here, in the generator, before their connect timeout starts.
//!
//! A connect storm (a thousand sessions opening their WebSocket together while the generator
//! is busy instantiating) then waits visibly instead of failing with `connect-timeout`s that
//! measure the generator, not the target. The gate counts how many connects queued and the
//! longest wait, and the run reports both.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::{Semaphore, SemaphorePermit};

/// Shared by every session of a run.
#[derive(Debug)]
pub struct ConnectGate {
    slots: Semaphore,
    queued: AtomicU64,
    max_wait_us: AtomicU64,
}

/// What the gate saw over a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GateStats {
    /// Connects that found every slot taken and waited.
    pub queued: u64,
    /// The longest of those waits, µs.
    pub max_wait_us: u64,
}

impl ConnectGate {
    /// A gate letting `limit` connects proceed at once (at least one).
    pub fn new(limit: u32) -> ConnectGate {
        ConnectGate {
            slots: Semaphore::new(limit.max(1) as usize),
            queued: AtomicU64::new(0),
            max_wait_us: AtomicU64::new(0),
        }
    }

    /// Waits for a slot; the slot is freed when the permit drops (the connection is set up).
    pub async fn enter(&self) -> Option<SemaphorePermit<'_>> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Some(permit);
        }
        let start = Instant::now();
        let permit = self.slots.acquire().await.ok();
        let waited = crate::util::micros_since(start);
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.max_wait_us.fetch_max(waited, Ordering::Relaxed);
        permit
    }

    /// Counts so far.
    pub fn stats(&self) -> GateStats {
        GateStats {
            queued: self.queued.load(Ordering::Relaxed),
            max_wait_us: self.max_wait_us.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_over_the_limit_queue_and_are_counted() {
        let gate = std::sync::Arc::new(ConnectGate::new(1));
        let first = gate.enter().await;
        let waiter = {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _p = gate.enter().await;
            })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(gate.stats().queued, 0, "still waiting");
        drop(first);
        waiter.await.unwrap();
        let s = gate.stats();
        assert_eq!(s.queued, 1);
        assert!(s.max_wait_us >= 10_000, "{s:?}");
    }
}
