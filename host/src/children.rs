//! Async child sessions (`spawn`, `spread`, `await-task`) and signals between sessions.
//!
//! A child is a fresh instance of the parent's scenario on which the host calls
//! `invoke(function, args)`. It gets copies of the parent's config, assigns and cookies, its own
//! HTTP pool and WebSockets, its own CPU budget, and the parent's remaining deadline. Children
//! take slots from the run's instance pool without waiting (a full pool is a typed `capacity`
//! error, never a hang) and at most [`MAX_LIVE_CHILDREN`] run per session at once. Every session
//! awaits its own un-awaited children before it ends (Chaperon only does so for the top level).
//!
//! Signals are JSON values queued per session (at most [`SIGNAL_QUEUE`]; a full queue is a typed
//! error). `await-signal` compares JSON values, so key order and spacing do not matter, and
//! signals that do not match stay queued for a later wait.

use crate::bindings::session::FlowError;
use crate::outcome::SessionEnd;
use crate::state::{SessionIdentity, VuState};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Children of one session alive at once.
pub const MAX_LIVE_CHILDREN: usize = 64;
/// Signals queued per session.
pub const SIGNAL_QUEUE: usize = 1024;

/// What a child ended with: its JSON result, or why it failed.
pub type ChildResult = Result<String, String>;

/// A child awaiting collection.
enum Pending {
    One {
        outbox: mpsc::Sender<String>,
        join: JoinHandle<ChildResult>,
    },
    Spread(JoinHandle<Vec<ChildResult>>),
}

/// A session's signal inbox, created on first use (most sessions never signal).
pub struct Inbox {
    tx: mpsc::Sender<String>,
    rx: mpsc::Receiver<String>,
    /// Signals that arrived while waiting for another one.
    stash: VecDeque<String>,
}

impl Inbox {
    fn new() -> Inbox {
        let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
        Inbox {
            tx,
            rx,
            stash: VecDeque::new(),
        }
    }

    fn from_parts(tx: mpsc::Sender<String>, rx: mpsc::Receiver<String>) -> Inbox {
        Inbox {
            tx,
            rx,
            stash: VecDeque::new(),
        }
    }
}

/// A session's children and signal plumbing.
#[derive(Default)]
pub struct Family {
    tasks: BTreeMap<String, Vec<Pending>>,
    live: Option<Arc<Semaphore>>,
    spawned: u32,
    inbox: Option<Inbox>,
    /// Where `signal-parent` goes (children only).
    pub parent: Option<mpsc::Sender<String>>,
}

impl Family {
    /// Family of a child: its inbox was made by the parent, which keeps the sending side.
    fn child(parent: mpsc::Sender<String>, inbox: Inbox) -> Family {
        Family {
            parent: Some(parent),
            inbox: Some(inbox),
            ..Family::default()
        }
    }

    fn inbox(&mut self) -> &mut Inbox {
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

/// What a child starts from: a snapshot of its parent.
#[derive(Clone)]
struct Seed {
    config: Value,
    assigns: Value,
    cookies: BTreeMap<String, String>,
    parent_id: String,
    vu: u32,
    iteration: u32,
    deadline: Instant,
}

impl Seed {
    fn of(parent: &VuState) -> Seed {
        Seed {
            config: parent.config.clone(),
            assigns: parent.assigns.clone(),
            cookies: parent.http.cookies.clone(),
            parent_id: parent.identity.id.clone(),
            vu: parent.identity.vu,
            iteration: parent.identity.iteration,
            deadline: parent.deadline,
        }
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
    parent: &mut VuState,
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
        .shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| FlowError::Capacity("the host's instance pool is full".into()))?;
    let parent_tx = parent.family.inbox().tx.clone();
    parent.family.spawned += 1;
    let id = format!("{}.{}", parent.identity.id, parent.family.spawned);
    let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
    let inbox = Inbox::from_parts(tx.clone(), rx);
    let family = Family::child(parent_tx, inbox);
    let (shared, seed) = (parent.shared.clone(), Seed::of(parent));
    let (child_id, metric) = (id.clone(), task_metric(&task));
    let join = tokio::spawn(async move {
        let r = run_child(shared, seed, child_id, family, &metric, function, args).await;
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

fn task_metric(task: &str) -> String {
    format!("async {task}")
}

/// `spread`: starts `count` children of `function`, evenly over `interval_ms`, in the
/// background; they wait for a free child slot rather than fail.
pub fn spread(
    parent: &mut VuState,
    function: String,
    args: String,
    count: u32,
    interval_ms: u32,
    task: String,
) -> Result<(), FlowError> {
    if count == 0 {
        return Ok(());
    }
    let task = task_name(task, &function);
    let gap = Duration::from_millis(u64::from(interval_ms)) / count;
    let parent_tx = parent.family.inbox().tx.clone();
    let live = parent.family.live();
    let (shared, seed) = (parent.shared.clone(), Seed::of(parent));
    let base = parent.family.spawned;
    parent.family.spawned += count;
    let metric = task_metric(&task);
    let join = tokio::spawn(async move {
        let mut joins = Vec::new();
        for i in 0..count {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let Ok(permit) = live.clone().acquire_owned().await else {
                break;
            };
            let Ok(pool) = shared.slots.clone().try_acquire_owned() else {
                joins.push(None);
                continue;
            };
            let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
            let family = Family::child(parent_tx.clone(), Inbox::from_parts(tx, rx));
            let id = format!("{}.{}", seed.parent_id, base + i + 1);
            let (shared, seed, function, args, metric) = (
                shared.clone(),
                seed.clone(),
                function.clone(),
                args.clone(),
                metric.clone(),
            );
            joins.push(Some(tokio::spawn(async move {
                let r = run_child(shared, seed, id, family, &metric, function, args).await;
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

/// Runs one child to its end and records its duration under `metric`.
async fn run_child(
    shared: Arc<crate::state::RunShared>,
    seed: Seed,
    id: String,
    family: Family,
    metric: &str,
    function: String,
    args: String,
) -> ChildResult {
    let Some(pre) = shared.pre.get().cloned() else {
        return Err("load-error: the scenario is not loaded".into());
    };
    let identity = SessionIdentity {
        id,
        parent_id: Some(seed.parent_id),
        vu: seed.vu,
        iteration: seed.iteration,
    };
    let recorder = shared.recorder.clone();
    let mut store = crate::runner::new_store(pre.engine(), shared, identity, seed.config);
    let state = store.data_mut();
    state.assigns = seed.assigns;
    state.http.cookies = seed.cookies;
    state.family = family;
    state.deadline = seed.deadline;
    let start = Instant::now();
    let left = seed.deadline.saturating_duration_since(start);
    let result = tokio::time::timeout(left, invoke(&pre, &mut store, &function, args)).await;
    let result = result.unwrap_or(Err(SessionEnd::Timeout));
    match &result {
        Ok(_) => recorder.record(metric, crate::state::duration_micros(start)),
        Err(end) => recorder.record_error(metric, end.kind()),
    }
    result.map_err(|end| end.to_string())
}

/// Instantiates and calls `invoke(function, args)`, then awaits the instance's own children.
pub(crate) async fn invoke(
    pre: &crate::bindings::ScenarioPre<VuState>,
    store: &mut wasmtime::Store<VuState>,
    function: &str,
    args: String,
) -> Result<String, SessionEnd> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| crate::runner::classify_trap(store, &e))?;
    store.data_mut().cpu.reset();
    let r = instance.call_invoke(&mut *store, function, &args).await;
    let out = match r {
        Ok(Ok(json)) => Ok(json),
        Ok(Err(e)) => Err(crate::runner::scenario_error_end(e)),
        Err(e) => Err(crate::runner::classify_trap(store, &e)),
    };
    await_remaining(store.data_mut()).await;
    out
}

/// `await-task`: waits for every child under `task`; `timeout` None = until the deadline.
pub async fn await_task(
    state: &mut VuState,
    task: &str,
    timeout: Option<Duration>,
) -> Vec<Result<String, FlowError>> {
    let pending = state.family.tasks.remove(task).unwrap_or_default();
    let deadline = timeout.map_or(state.deadline, |t| Instant::now() + t);
    collect(state.shared.recorder.clone(), deadline, task, pending).await
}

/// `await-all`: waits for every child of the session.
pub async fn await_all(
    state: &mut VuState,
    timeout: Option<Duration>,
) -> Vec<Result<String, FlowError>> {
    let tasks = std::mem::take(&mut state.family.tasks);
    let deadline = timeout.map_or(state.deadline, |t| Instant::now() + t);
    let mut out = Vec::new();
    for (task, pending) in tasks {
        let recorder = state.shared.recorder.clone();
        out.extend(collect(recorder, deadline, &task, pending).await);
    }
    out
}

/// Awaits whatever children are left when a session ends (until its deadline).
pub async fn await_remaining(state: &mut VuState) {
    if state.family.has_pending() {
        let _ = await_all(state, None).await;
    }
}

/// Awaits `pending` children of `task` until `deadline`; failures count as errors.
async fn collect(
    recorder: Arc<crate::metrics::Recorder>,
    deadline: Instant,
    task: &str,
    pending: Vec<Pending>,
) -> Vec<Result<String, FlowError>> {
    let mut out = Vec::new();
    for p in pending {
        let left = deadline.saturating_duration_since(Instant::now());
        match p {
            Pending::One { join, .. } => out.push(join_one(join, left).await),
            Pending::Spread(join) => match tokio::time::timeout(left, join).await {
                Ok(Ok(results)) => out.extend(
                    results
                        .into_iter()
                        .map(|r| r.map_err(FlowError::ChildFailed)),
                ),
                Ok(Err(e)) => out.push(Err(FlowError::ChildFailed(e.to_string()))),
                Err(_) => out.push(Err(FlowError::Timeout)),
            },
        }
    }
    let failed = out.iter().filter(|r| r.is_err()).count();
    for _ in 0..failed {
        recorder.record_error(&task_metric(task), "child-failed");
    }
    out
}

async fn join_one(mut join: JoinHandle<ChildResult>, left: Duration) -> Result<String, FlowError> {
    match tokio::time::timeout(left, &mut join).await {
        Ok(Ok(r)) => r.map_err(FlowError::ChildFailed),
        Ok(Err(e)) => Err(FlowError::ChildFailed(e.to_string())),
        Err(_) => {
            join.abort();
            Err(FlowError::Timeout)
        }
    }
}

/// `signal`: sends `value` to every child under `task`.
pub fn signal(state: &mut VuState, task: &str, value: String) -> Result<(), FlowError> {
    let outboxes: Vec<&mpsc::Sender<String>> = state
        .family
        .tasks
        .get(task)
        .into_iter()
        .flatten()
        .filter_map(|p| match p {
            Pending::One { outbox, .. } => Some(outbox),
            Pending::Spread(_) => None,
        })
        .collect();
    if outboxes.is_empty() {
        return Err(FlowError::Unknown(format!(
            "no child task `{}` to signal",
            crate::session_host::escape(task)
        )));
    }
    for tx in outboxes {
        send(tx, value.clone())?;
    }
    Ok(())
}

/// `signal-parent`.
pub fn signal_parent(state: &mut VuState, value: String) -> Result<(), FlowError> {
    match &state.family.parent {
        Some(tx) => send(tx, value),
        None => Err(FlowError::Unknown(
            "this session has no parent to signal".into(),
        )),
    }
}

fn send(tx: &mpsc::Sender<String>, value: String) -> Result<(), FlowError> {
    tx.try_send(value).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => FlowError::QueueFull,
        // The receiver ended: nobody will ever read it, which the sender should know.
        mpsc::error::TrySendError::Closed(_) => {
            FlowError::Unknown("the receiving session has ended".into())
        }
    })
}

/// `await-signal`: the first queued or arriving signal equal to `expected` (any when `None`).
pub async fn await_signal(
    state: &mut VuState,
    expected: Option<String>,
    timeout: Duration,
) -> Result<String, FlowError> {
    let expected = match expected {
        Some(text) => Some(
            serde_json::from_str::<Value>(&text)
                .map_err(|e| FlowError::Unknown(format!("expected signal is not JSON: {e}")))?,
        ),
        None => None,
    };
    let matches = |s: &str| match &expected {
        None => true,
        Some(v) => serde_json::from_str::<Value>(s).is_ok_and(|got| &got == v),
    };
    let inbox = state.family.inbox();
    if let Some(i) = inbox.stash.iter().position(|s| matches(s)) {
        return inbox.stash.remove(i).ok_or(FlowError::Timeout);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, inbox.rx.recv()).await {
            Err(_) => return Err(FlowError::Timeout),
            Ok(None) => return Err(FlowError::Interrupted),
            Ok(Some(s)) if matches(&s) => return Ok(s),
            Ok(Some(s)) => {
                if inbox.stash.len() >= SIGNAL_QUEUE {
                    return Err(FlowError::QueueFull);
                }
                inbox.stash.push_back(s);
            }
        }
    }
}
