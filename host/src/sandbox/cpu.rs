//! The CPU budget: epoch ticks charged only while wasm runs; and the CPU share: how many of
//! a tenant's guests may run past a tick at once, so that a tenant whose guests all spin
//! leaves the other worker threads to the other tenants.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A tenant's share of the runtime's worker threads: guests that run through a whole epoch
/// tick (spinners; a guest doing I/O returns to the host far sooner) take turns on
/// `permits` lanes, first come first served, one tick at a time.
#[derive(Clone, Debug)]
pub struct CpuShare {
    lanes: Arc<Semaphore>,
}

impl CpuShare {
    /// A share of `lanes` worker threads (at least one).
    pub fn new(lanes: usize) -> CpuShare {
        CpuShare {
            lanes: Arc::new(Semaphore::new(lanes.max(1))),
        }
    }
}

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
    tree: CpuTree,
    /// Whether this session is its tree's root (its entry calls start a new tree budget).
    root: bool,
    pub exceeded: bool,
}

/// The CPU budget a session tree shares: the root session, its async children and spreads,
/// and its nested scenarios all charge their wasm time here, so spawning more instances buys
/// no more CPU: a descendant is ended once the tree has spent it. The root's every entry-point
/// call starts it afresh; the root itself is held to its own per-call budget.
#[derive(Clone, Debug, Default)]
pub struct CpuTree {
    ticks: Arc<AtomicU64>,
}

impl CpuTree {
    /// Ticks charged since the root's current entry-point call began.
    pub fn used(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }
}

/// A handle a host context uses to say "the guest resumes now": time spent waiting inside a
/// host call (or for other sessions after a yield) is not the guest's.
#[derive(Clone)]
pub struct CpuMark {
    epoch: Arc<AtomicU64>,
    resumed_at: Arc<AtomicU64>,
    /// The tenant's share and the lane this guest holds while it spins (`None`: no share,
    /// the run has one tenant).
    lane: Option<Arc<Lane>>,
}

/// A guest's place in its tenant's share.
struct Lane {
    share: CpuShare,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Lane {
    fn release(&self) {
        if let Ok(mut held) = self.held.lock() {
            held.take();
        }
    }
}

impl CpuMark {
    /// Marks the return from a host call that may have waited.
    pub fn host_returned(&self) {
        self.resumed_at
            .store(self.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Whether this guest spins within a tenant's share (then the store calls
    /// [`left_wasm`](Self::left_wasm) on every exit from wasm).
    pub fn shared(&self) -> bool {
        self.lane.is_some()
    }

    /// The guest left wasm (a host call, or its entry point returned): it is not spinning,
    /// so it gives its lane back to its tenant's other guests.
    pub fn left_wasm(&self) {
        if let Some(lane) = &self.lane {
            lane.release();
        }
    }

    fn get(&self) -> u64 {
        self.resumed_at.load(Ordering::Relaxed)
    }
}

impl CpuMeter {
    /// A meter allowing `budget_ticks` ticks per entry-point call, to this session and to its
    /// whole tree: `tree` is the root's (for a child or nested session) or `None` for a root.
    pub fn new(
        epoch: Arc<AtomicU64>,
        budget_ticks: u64,
        tree: Option<CpuTree>,
        share: Option<CpuShare>,
    ) -> Self {
        let now = epoch.load(Ordering::Relaxed);
        let lane = share.map(|share| {
            Arc::new(Lane {
                share,
                held: Mutex::new(None),
            })
        });
        CpuMeter {
            mark: CpuMark {
                epoch: epoch.clone(),
                resumed_at: Arc::new(AtomicU64::new(now)),
                lane,
            },
            epoch,
            charged_to: now,
            ticks: 0,
            budget: budget_ticks,
            root: tree.is_none(),
            tree: tree.unwrap_or_default(),
            exceeded: false,
        }
    }

    /// The tree this session charges (children and nested runs it starts share it).
    pub fn tree(&self) -> CpuTree {
        self.tree.clone()
    }

    /// The handle host contexts mark their returns with.
    pub fn mark(&self) -> CpuMark {
        self.mark.clone()
    }

    /// See [`CpuMark::left_wasm`].
    pub fn left_wasm(&self) {
        self.mark.left_wasm();
    }

    /// Starts a new budget (each entry-point call gets one).
    pub fn reset(&mut self) {
        self.ticks = 0;
        if self.root {
            self.tree.ticks.store(0, Ordering::Relaxed);
        }
        self.mark.host_returned();
    }

    /// The future a session awaits when it yields at a deadline: it lets other tasks run (with
    /// a share, it gives its lane back and queues for one), then marks the epoch it resumed
    /// at, so the wait is not charged to it.
    pub fn yield_now(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mark = self.mark.clone();
        async move {
            match &mark.lane {
                None => tokio::task::yield_now().await,
                Some(lane) => {
                    lane.release();
                    let permit = lane.share.lanes.clone().acquire_owned().await.ok();
                    mark.host_returned();
                    if let Ok(mut held) = lane.held.lock() {
                        *held = permit;
                    }
                    return;
                }
            }
            mark.host_returned();
        }
    }

    /// Called at an epoch deadline; true when the budget is used up.
    pub fn charge(&mut self) -> bool {
        let now = self.epoch.load(Ordering::Relaxed);
        let from = self.mark.get().max(self.charged_to);
        let spent = now.saturating_sub(from);
        self.ticks += spent;
        let tree = self.tree.ticks.fetch_add(spent, Ordering::Relaxed) + spent;
        self.charged_to = now;
        // The root answers for its own calls only; descendants stop once the tree is spent,
        // so a child's spinning cannot end the parent that would handle its failure.
        self.exceeded = self.ticks > self.budget || (!self.root && tree > self.budget);
        self.exceeded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_draw_from_their_roots_budget() {
        let epoch = Arc::new(AtomicU64::new(0));
        let mut root = CpuMeter::new(epoch.clone(), 10, None, None);
        let mut kids: Vec<CpuMeter> = (0..3)
            .map(|_| CpuMeter::new(epoch.clone(), 10, Some(root.tree()), None))
            .collect();
        root.reset();
        // Each child spins 4 ticks: under its own budget of 10, over the tree's together.
        let mut ended = Vec::new();
        for k in &mut kids {
            k.reset();
            epoch.fetch_add(4, Ordering::Relaxed);
            ended.push(k.charge());
        }
        assert_eq!(
            ended,
            [false, false, true],
            "the third child pushes the tree over"
        );
        assert_eq!(root.tree().used(), 12);
        root.reset();
        assert_eq!(root.tree().used(), 0, "the root's next call starts afresh");
    }

    #[tokio::test]
    async fn spinners_of_a_tenant_take_turns_on_its_lanes() {
        let epoch = Arc::new(AtomicU64::new(0));
        let share = CpuShare::new(1);
        let a = CpuMeter::new(epoch.clone(), 10, None, Some(share.clone()));
        let b = CpuMeter::new(epoch.clone(), 10, None, Some(share.clone()));
        a.yield_now().await;
        assert_eq!(
            share.lanes.available_permits(),
            0,
            "a spins on the one lane"
        );
        let b_turn = tokio::spawn(b.yield_now());
        tokio::task::yield_now().await;
        assert!(!b_turn.is_finished(), "b waits while a holds the lane");
        a.mark().left_wasm();
        tokio::time::timeout(std::time::Duration::from_secs(5), b_turn)
            .await
            .expect("b gets the lane once a is back in the host")
            .expect("no panic");
    }
}
