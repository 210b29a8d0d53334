//! The CPU budget: epoch ticks charged only while wasm runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts epoch ticks that pass while wasm runs (not while the session waits in a host call).
///
/// The epoch deadline fires at the first check after a tick; the meter charges only ticks since
/// the latest of the last host-call return, the last charge and the return from the last
/// yield, so a session that slept 5 s in `delay` is charged nothing for it, and a guest
/// spinning between cheap host calls is charged for every tick it spans.
pub struct CpuMeter {
    epoch: Arc<AtomicU64>,
    mark: CpuMark,
    charged_to: u64,
    ticks: u64,
    budget: u64,
    pub exceeded: bool,
}

/// A handle a host context uses to say "the guest resumes now": time spent waiting inside a
/// host call (or for other sessions after a yield) is not the guest's.
#[derive(Clone)]
pub struct CpuMark {
    epoch: Arc<AtomicU64>,
    resumed_at: Arc<AtomicU64>,
}

impl CpuMark {
    /// Marks the return from a host call that may have waited.
    pub fn host_returned(&self) {
        self.resumed_at
            .store(self.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.resumed_at.load(Ordering::Relaxed)
    }
}

impl CpuMeter {
    /// A meter allowing `budget_ticks` ticks per entry-point call.
    pub fn new(epoch: Arc<AtomicU64>, budget_ticks: u64) -> Self {
        let now = epoch.load(Ordering::Relaxed);
        CpuMeter {
            mark: CpuMark {
                epoch: epoch.clone(),
                resumed_at: Arc::new(AtomicU64::new(now)),
            },
            epoch,
            charged_to: now,
            ticks: 0,
            budget: budget_ticks,
            exceeded: false,
        }
    }

    /// The handle host contexts mark their returns with.
    pub fn mark(&self) -> CpuMark {
        self.mark.clone()
    }

    /// Starts a new budget (each entry-point call gets one).
    pub fn reset(&mut self) {
        self.ticks = 0;
        self.mark.host_returned();
    }

    /// The future a session awaits when it yields at a deadline: it lets other tasks run, then
    /// marks the epoch it resumed at.
    pub fn yield_now(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mark = self.mark.clone();
        async move {
            tokio::task::yield_now().await;
            mark.host_returned();
        }
    }

    /// Called at an epoch deadline; true when the budget is used up.
    pub fn charge(&mut self) -> bool {
        let now = self.epoch.load(Ordering::Relaxed);
        let from = self.mark.get().max(self.charged_to);
        self.ticks += now.saturating_sub(from);
        self.charged_to = now;
        self.exceeded = self.ticks > self.budget;
        self.exceeded
    }
}
