//! Async child sessions (`spawn`, `spread`, `await-task`, `await-all`).
//!
//! A child is a fresh instance of the parent's scenario on which the host calls
//! `invoke(function, args)`. It gets copies of the parent's config, assigns and cookies, its own
//! HTTP pool and WebSockets, its own CPU budget, and the parent's remaining deadline. Children
//! take slots from the run's instance pool without waiting (a full pool is a typed `capacity`
//! error, never a hang) and at most [`MAX_LIVE_CHILDREN`] run per session at once. Every session
//! awaits its own un-awaited children before it ends (Chaperon only does so for the top level).
//! A child's duration is recorded under `async {task}`; a failed child counts once, as its end
//! kind, on that metric.

use super::deadline::Deadline;
use super::lifecycle::{self, Seed};
use super::scenario::ScenarioRt;
use super::signals::{Inbox, Outbox, SIGNAL_QUEUE};
use super::state::{SessionCtx, SessionIdentity};
use crate::metrics::MetricKey;
use crate::util::micros_since;
use crate::wit::session::FlowError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Children of one session alive at once.
pub const MAX_LIVE_CHILDREN: usize = 64;

/// What a child ended with: its JSON result, or why it failed.
pub type ChildResult = Result<String, String>;

/// A child awaiting collection.
pub(super) enum Pending {
    One {
        outbox: Outbox,
        join: JoinHandle<ChildResult>,
    },
    Spread(JoinHandle<Vec<ChildResult>>),
}

/// A session's children and signal plumbing.
#[derive(Default)]
pub struct Family {
    pub(super) tasks: BTreeMap<String, Vec<Pending>>,
    live: Option<Arc<Semaphore>>,
    spawned: u32,
    pub(super) inbox: Option<Inbox>,
    /// Where `signal-parent` goes (children only).
    pub parent: Option<Outbox>,
}

impl Family {
    /// Family of a child: its inbox was made by the parent, which keeps the sending side.
    fn child(parent: Outbox, inbox: Inbox) -> Family {
        Family {
            parent: Some(parent),
            inbox: Some(inbox),
            ..Family::default()
        }
    }

    pub(super) fn inbox(&mut self) -> &mut Inbox {
        self.inbox.get_or_insert_with(Inbox::new)
    }

    fn live(&mut self) -> Arc<Semaphore> {
        self.live
            .get_or_insert_with(|| Arc::new(Semaphore::new(MAX_LIVE_CHILDREN)))
            .clone()
    }

    /// Whether any child is still to be awaited.
    pub fn has_pending(&self) -> bool {
        self.tasks.values().any(|v| !v.is_empty())
    }
}

/// What a child starts from: a snapshot of its parent (config, assigns, a copy of its jar,
/// its identity and what is left of its deadline).
#[derive(Clone)]
struct ChildSeed {
    scenario: Arc<ScenarioRt>,
    config: Arc<serde_json::Value>,
    assigns: serde_json::Value,
    cookies: crate::net::cookies::Cookies,
    parent_id: String,
    vu: u32,
    iteration: u32,
    deadline: Deadline,
    cpu_tree: crate::sandbox::cpu::CpuTree,
}

impl ChildSeed {
    fn of(parent: &SessionCtx) -> ChildSeed {
        ChildSeed {
            scenario: parent.scenario.clone(),
            config: parent.config.clone(),
            assigns: parent.assigns.clone(),
            cookies: parent.cookies.snapshot(),
            parent_id: parent.identity.id.clone(),
            vu: parent.identity.vu,
            iteration: parent.identity.iteration,
            deadline: parent.deadline,
            cpu_tree: parent.cpu_tree.clone(),
        }
    }

    fn seed(self, id: String, family: Family) -> (Arc<ScenarioRt>, Seed) {
        let seed = Seed {
            identity: SessionIdentity {
                id,
                parent_id: Some(self.parent_id),
                vu: self.vu,
                iteration: self.iteration,
            },
            config: self.config,
            assigns: self.assigns,
            cookies: self.cookies,
            family,
            deadline: self.deadline,
            cpu_tree: Some(self.cpu_tree),
            http: None,
        };
        (self.scenario, seed)
    }
}

fn task_name(task: String, function: &str) -> String {
    if task.is_empty() {
        function.to_owned()
    } else {
        task
    }
}

/// `spawn`: starts one child now; fails at once when a cap is reached.
pub fn spawn(
    parent: &mut SessionCtx,
    function: String,
    args: String,
    task: String,
) -> Result<String, FlowError> {
    let task = task_name(task, &function);
    let live = parent.family.live().try_acquire_owned().map_err(|_| {
        FlowError::Capacity(format!(
            "this session already runs {MAX_LIVE_CHILDREN} children"
        ))
    })?;
    let pool = parent
        .scenario
        .run
        .child_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| FlowError::Capacity("the host's instance pool is full".into()))?;
    let parent_tx = parent.family.inbox().tx.clone();
    parent.family.spawned += 1;
    let id = format!("{}.{}", parent.identity.id, parent.family.spawned);
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let inbox = Inbox::from_parts(tx.clone(), rx);
    let family = Family::child(parent_tx, inbox);
    let seed = ChildSeed::of(parent);
    let (child_id, metric) = (id.clone(), MetricKey::task(&task));
    let join = tokio::spawn(async move {
        let r = run_child(seed, child_id, family, &metric, function, args).await;
        drop((live, pool));
        r
    });
    parent
        .family
        .tasks
        .entry(task)
        .or_default()
        .push(Pending::One { outbox: tx, join });
    Ok(id)
}

/// Most children one `spread` call may start (they run at most `child_slots` at a time).
pub const MAX_SPREAD: u32 = 10_000;

/// `spread`: starts `count` children of `function`, evenly over `interval_ms`, in the
/// background; they wait for a free child slot rather than fail.
pub fn spread(
    parent: &mut SessionCtx,
    function: String,
    args: String,
    count: u32,
    interval_ms: u32,
    task: String,
) -> Result<(), FlowError> {
    if count == 0 {
        return Ok(());
    }
    if count > MAX_SPREAD {
        return Err(FlowError::Capacity(format!(
            "a spread of {count} children; at most {MAX_SPREAD} per call"
        )));
    }
    let task = task_name(task, &function);
    let gap = Duration::from_millis(u64::from(interval_ms)) / count;
    let parent_tx = parent.family.inbox().tx.clone();
    let live = parent.family.live();
    let seed = ChildSeed::of(parent);
    let slots = parent.scenario.run.child_slots.clone();
    let base = parent.family.spawned;
    parent.family.spawned += count;
    let metric = MetricKey::task(&task);
    let join = tokio::spawn(async move {
        let mut joins = Vec::new();
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let Ok(permit) = live.clone().acquire_owned().await else {
                break;
            };
            let Ok(pool) = slots.clone().try_acquire_owned() else {
                joins.push(None);
                continue;
            };
            let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
            let family = Family::child(parent_tx.clone(), Inbox::from_parts(tx, rx));
            let id = format!("{}.{}", seed.parent_id, base + i + 1);
            let (seed, function, args, metric) =
                (seed.clone(), function.clone(), args.clone(), metric.clone());
            joins.push(Some(tokio::spawn(async move {
                let r = run_child(seed, id, family, &metric, function, args).await;
                drop((permit, pool));
                r
            })));
        }
        let mut results = Vec::with_capacity(joins.len());
        for j in joins {
            results.push(match j {
                Some(j) => j.await.unwrap_or_else(|e| Err(e.to_string())),
                None => Err("capacity: the host's instance pool is full".into()),
            });
        }
        results
    });
    parent
        .family
        .tasks
        .entry(task)
        .or_default()
        .push(Pending::Spread(join));
    Ok(())
}

/// Runs one child to its end and records its duration (or its end kind) under `metric`:
/// the one place a child's outcome is counted.
async fn run_child(
    seed: ChildSeed,
    id: String,
    family: Family,
    metric: &MetricKey,
    function: String,
    args: String,
) -> ChildResult {
    let (scenario, seed) = seed.seed(id, family);
    let start = Instant::now();
    scenario
        .sink
        .recorder()
        .add(crate::metrics::keys::CHILD_SESSIONS, 1);
    let result = lifecycle::invoke(&scenario, seed, &function, args).await;
    match &result {
        Ok(_) => scenario.sink.duration(metric, micros_since(start)),
        Err(end) => scenario.sink.error(metric, end.kind()),
    }
    result.map_err(|end| end.to_string())
}

/// `await-task`: waits for every child under `task`; `timeout` None = until the deadline.
pub async fn await_task(
    state: &mut SessionCtx,
    task: &str,
    timeout: Option<Duration>,
) -> Vec<Result<String, FlowError>> {
    let pending = state.family.tasks.remove(task).unwrap_or_default();
    let deadline = state.deadline.within(timeout);
    collect(&state.scenario, deadline, task, pending).await
}

/// `await-all`: waits for every child of the session.
pub async fn await_all(
    state: &mut SessionCtx,
    timeout: Option<Duration>,
) -> Vec<Result<String, FlowError>> {
    let tasks = std::mem::take(&mut state.family.tasks);
    let deadline = state.deadline.within(timeout);
    let mut out = Vec::new();
    for (task, pending) in tasks {
        out.extend(collect(&state.scenario, deadline, &task, pending).await);
    }
    out
}

/// Awaits whatever children are left when a session ends (until its deadline).
pub async fn await_remaining(state: &mut SessionCtx) {
    if state.family.has_pending() {
        let _ = await_all(state, None).await;
    }
}

/// Awaits `pending` children of `task` until `deadline`. A child counts its own outcome; a
/// child this wait gave up on (and stopped) is counted here, as `timeout`.
async fn collect(
    scenario: &ScenarioRt,
    deadline: Deadline,
    task: &str,
    pending: Vec<Pending>,
) -> Vec<Result<String, FlowError>> {
    let mut out = Vec::new();
    for p in pending {
        match p {
            Pending::One { join, .. } => {
                let r = join_one(join, deadline).await;
                if matches!(r, Err(FlowError::Timeout)) {
                    scenario.sink.error(&MetricKey::task(task), "timeout");
                }
                out.push(r);
            }
            Pending::Spread(join) => match deadline.race(join).await {
                Some(Ok(results)) => out.extend(
                    results
                        .into_iter()
                        .map(|r| r.map_err(FlowError::ChildFailed)),
                ),
                Some(Err(e)) => out.push(Err(FlowError::ChildFailed(e.to_string()))),
                None => out.push(Err(FlowError::Timeout)),
            },
        }
    }
    out
}

async fn join_one(
    mut join: JoinHandle<ChildResult>,
    deadline: Deadline,
) -> Result<String, FlowError> {
    match deadline.race(&mut join).await {
        Some(Ok(r)) => r.map_err(FlowError::ChildFailed),
        Some(Err(e)) => Err(FlowError::ChildFailed(e.to_string())),
        None => {
            join.abort();
            Err(FlowError::Timeout)
        }
    }
}
