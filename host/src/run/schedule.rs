//! Starting sessions, waiting for them, and stopping: at most one session per pool slot, every
//! scenario's sessions interleaved, the whole test bounded by `max_duration`, Ctrl-C honoured.

use super::Stop;
use super::load::{Loaded, Runs};
use crate::outcome::SessionEnd;
use crate::plan::ScenarioPlan;
use crate::plan::limits::Limits;
use crate::session::nested::run_sequence;
use crate::session::{Deadline, Seed, SessionIdentity, lifecycle};
use crate::util::random_below;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// One finished session.
pub struct Ended {
    pub id: String,
    pub scenario: String,
    pub end: SessionEnd,
}

/// The sessions of a run and how the run stopped.
pub struct Sessions {
    pub sessions: Vec<Ended>,
    /// Stopped from outside (Ctrl-C) rather than by the plan.
    pub interrupted: bool,
    /// Sessions dropped at the planned end of the test (`max_duration` + graceful stop):
    /// counted `interrupted`, but a planned end is not a failure.
    pub cut_by_plan: u64,
}

/// Starts every session (at most `slots` alive at once) and waits for them.
pub async fn run_sessions(
    scenarios: &[Loaded],
    permits: Arc<Semaphore>,
    limits: &Limits,
    mut options: super::RunOptions,
) -> Sessions {
    let mut tasks = JoinSet::new();
    let mut ends = Vec::new();
    let test_end = tokio::time::Instant::now() + limits.max_duration;
    for (next_id, (vu, sc)) in interleave(scenarios).enumerate() {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = options.stop.wait_for(|s| *s != Stop::Running) => break,
            _ = tokio::time::sleep_until(test_end) => break,
        };
        let Ok(permit) = permit else { break };
        let identity = SessionIdentity {
            id: format!("{}-{next_id}", sc.plan.name),
            parent_id: None,
            vu,
            iteration: 0,
        };
        let job = SessionJob {
            runs: sc.runs.clone(),
            plan: sc.plan.clone(),
            timeout: sc.plan.limits(limits).session_timeout,
        };
        tasks.spawn(async move {
            let id = identity.id.clone();
            let end = job.run(identity).await;
            drop(permit);
            Ended {
                id,
                scenario: job.plan.name,
                end,
            }
        });
        while let Some(Ok(e)) = tasks.try_join_next() {
            ends.push(e);
        }
    }
    let stop = &mut options.stop;
    let cut = drain(&mut tasks, &mut ends, limits.graceful_stop, stop, test_end).await;
    let interrupted = *stop.borrow() != Stop::Running;
    Sessions {
        sessions: ends,
        interrupted,
        cut_by_plan: if interrupted { 0 } else { cut },
    }
}

/// One top-level session to run.
struct SessionJob {
    runs: Runs,
    plan: ScenarioPlan,
    /// The session deadline (sequences run their steps within it).
    timeout: Duration,
}

impl SessionJob {
    /// Waits the scenario's start delay, then runs the session to its end.
    async fn run(&self, identity: SessionIdentity) -> SessionEnd {
        let jitter = u32::try_from(self.plan.random_start_delay.as_millis()).unwrap_or(u32::MAX);
        let delay = self.plan.start_delay + Duration::from_millis(u64::from(random_below(jitter)));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let deadline = Deadline::after(self.timeout);
        let config = self.plan.config.clone();
        match &self.runs {
            Runs::Component(scenario) => {
                let seed = Seed::fresh(identity, config, deadline);
                lifecycle::run(scenario, seed).await.end
            }
            Runs::Sequence(steps) => run_sequence(steps, identity, config, deadline).await,
        }
    }
}

/// Sessions of all scenarios, interleaved so every scenario starts early: (vu number, scenario).
fn interleave(scenarios: &[Loaded]) -> impl Iterator<Item = (u32, &Loaded)> {
    let max = scenarios.iter().map(|s| s.plan.sessions).max().unwrap_or(0);
    (0..max).flat_map(move |vu| {
        scenarios
            .iter()
            .filter(move |s| vu < s.plan.sessions)
            .map(move |s| (vu, s))
    })
}

/// Waits for running sessions; on a stop request or at the end of the test, gives them
/// `grace`, then drops the rest (counted `interrupted`); returns how many were dropped.
async fn drain(
    tasks: &mut JoinSet<Ended>,
    ends: &mut Vec<Ended>,
    grace: Duration,
    stop: &mut watch::Receiver<Stop>,
    test_end: tokio::time::Instant,
) -> u64 {
    if !wait_until(tasks, ends, stop, Stop::Graceful, Some(test_end)).await {
        return 0;
    }
    let deadline = tokio::time::Instant::now() + grace;
    wait_until(tasks, ends, stop, Stop::Now, Some(deadline)).await;
    let left = tasks.len();
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    ends.extend((0..left).map(|_| Ended {
        id: String::new(),
        scenario: String::new(),
        end: SessionEnd::Interrupted,
    }));
    left as u64
}

/// Collects finished sessions until none are left (false) or the stop state reaches `level`
/// or the deadline passes (true).
async fn wait_until(
    tasks: &mut JoinSet<Ended>,
    ends: &mut Vec<Ended>,
    stop: &mut watch::Receiver<Stop>,
    level: Stop,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    let mut watching = true;
    let far = tokio::time::Instant::now() + Duration::from_secs(86_400 * 365);
    loop {
        if *stop.borrow() >= level {
            return true;
        }
        tokio::select! {
            next = tasks.join_next() => match next {
                Some(Ok(e)) => ends.push(e),
                Some(Err(_)) => {}
                None => return false,
            },
            changed = stop.changed(), if watching => watching = changed.is_ok(),
            _ = tokio::time::sleep_until(deadline.unwrap_or(far)) => return true,
        }
    }
}
