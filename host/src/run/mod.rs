//! Running a load test: load the scenarios ([`load`]), run their hooks and sessions
//! ([`schedule`]: start, drain, stop), and build the report ([`finish`]).
//!
//! Sessions are tokio tasks; each owns a store with one instance from the scenario's
//! pre-instantiated component. A semaphore with one permit per pool slot bounds how many are
//! alive at once, so the pool never runs out (pool exhaustion is an error in wasmtime, not a wait).
//! Stopping (Ctrl-C) stops new sessions, lets running ones finish for the graceful-stop period,
//! then drops them: they are reported as `interrupted`, and every completed result is kept.

mod ends;
mod finish;
mod influx;
mod live;
mod load;
mod schedule;

use crate::metrics::{MetricSet, Recorder, Sink};
use crate::net::gate::ConnectGate;
use crate::plan::limits::{self, SystemLimits};
use crate::plan::{Output, RunPlan};
use crate::report::{self, Report};
use crate::sandbox::cpu::CpuShare;
use crate::sandbox::engine::{self, EngineSettings, EpochTicker};
use crate::sandbox::loader::{self, LoadError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, watch};

/// How the run is being stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    Running,
    /// Start no new sessions; let running ones finish within the graceful-stop period.
    Graceful,
    /// Drop every running session now.
    Now,
}

/// Knobs of a run that do not come from the plan.
pub struct RunOptions {
    pub stop: watch::Receiver<Stop>,
    /// Print capacity warnings to stderr.
    pub progress: bool,
}

impl RunOptions {
    /// Options for a run nobody stops from outside (tests, bench), quiet or not.
    pub fn unattended(progress: bool) -> (watch::Sender<Stop>, RunOptions) {
        let (tx, stop) = watch::channel(Stop::Running);
        (tx, RunOptions { stop, progress })
    }
}

/// A failure before any session ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error(transparent)]
    Link(#[from] crate::wit_host::LinkError),
    #[error("cannot start the epoch ticker: {0}")]
    Ticker(std::io::Error),
    #[error("the setup function `{function}` failed: {reason}")]
    Setup { function: String, reason: String },
    #[error("setup scenario `{0}` is not loaded")]
    SetupScenario(String),
    #[error(transparent)]
    Report(#[from] report::ReportError),
}

/// How a run ended.
pub struct RunOutcome {
    pub report: Report,
    /// Stopped from outside (Ctrl-C), not by the plan.
    pub interrupted: bool,
    /// Sessions dropped at the planned end of the test (not failures).
    pub cut_by_plan: u64,
    /// Limits that capped the number of concurrent sessions.
    pub warnings: Vec<String>,
}

impl RunOutcome {
    /// Whether no session failed (completed or deliberately aborted; sessions cut by the
    /// planned end of the test are not failures either).
    pub fn no_failures(&self) -> bool {
        self.report.sessions.failed() <= self.cut_by_plan
    }

    /// Whether a threshold failed (or ended the run early).
    pub fn thresholds_failed(&self) -> bool {
        self.report.aborted_by.is_some() || self.report.thresholds.iter().any(|v| !v.passed)
    }

    /// Whether every session completed.
    pub fn all_completed(&self) -> bool {
        self.report.sessions.not_completed() == 0
    }
}

/// Runs `plan` to the end (or until stopped) and builds the report.
pub async fn run(plan: &RunPlan, options: RunOptions) -> Result<RunOutcome, RunError> {
    let preflights = plan
        .scenarios
        .iter()
        .filter_map(|s| s.component())
        .map(loader::preflight)
        .collect::<Result<Vec<_>, _>>()?;
    let (engine, capacity) = sized_engine(plan, &preflights)?;
    let progress = options.progress;
    if progress {
        for w in &capacity.warnings {
            eprintln!("warning: {w}");
        }
    }
    let child_slots = plan.limits.child_slots;
    let ticker = EpochTicker::start(&engine).map_err(RunError::Ticker)?;
    let recorders = Arc::new(Recorders::of(plan));
    let env = load::Env {
        engine: &engine,
        epoch: ticker.epoch(),
        sink: Sink::new(recorders.implicit.clone()),
        cpu_shares: plan
            .cpu_lanes(worker_threads())
            .into_iter()
            .map(|(t, lanes)| (t, CpuShare::new(lanes)))
            .collect(),
        tenant_sinks: recorders
            .named
            .iter()
            .map(|(t, r)| (t.clone(), Sink::new(r.clone())))
            .collect(),
        child_slots: Arc::new(Semaphore::new(child_slots as usize)),
        instantiations: 2 * worker_threads(),
        gate: Arc::new(ConnectGate::new(plan.limits.max_connecting)),
    };
    let scenarios = load::scenarios(plan, &preflights, &env).await?;
    let started_at = std::time::SystemTime::now();
    let start = Instant::now();
    let setup = load::run_setup(plan, &scenarios).await?;
    let slots = Arc::new(Semaphore::new(capacity.slots as usize));
    let external = options.stop.clone();
    let (inner_tx, inner_rx) = watch::channel(Stop::Running);
    let inner_tx = Arc::new(inner_tx);
    let forward = tokio::spawn(forward_stops(external.clone(), inner_tx.clone()));
    let aborted_by = Arc::new(std::sync::OnceLock::new());
    let judge = tokio::spawn(abort_on_fail(
        plan.thresholds.clone(),
        recorders.clone(),
        inner_tx,
        aborted_by.clone(),
    ));
    let inner = RunOptions {
        stop: inner_rx,
        progress,
    };
    let counters = Arc::new(live::Live::default());
    let snapshot = {
        let recorders = recorders.clone();
        move || recorders.snapshot()
    };
    let display = live::Display::pick(progress);
    let influx = plan.outputs.iter().find_map(|o| match o {
        Output::Influx(t) => Some(t.clone()),
        _ => None,
    });
    let shapes = plan.clone();
    let sampling = live::Sampling::start(
        snapshot,
        counters.clone(),
        live::Plan {
            display,
            total: plan.total_duration(),
            stage: Box::new(move |elapsed| shapes.stage_at(elapsed)),
        },
        influx,
    );
    let mut ended =
        schedule::run_sessions(scenarios.clone(), slots, &plan.limits, inner, counters).await;
    let timeseries = sampling.finish().await;
    forward.abort();
    judge.abort();
    ended.interrupted = *external.borrow() != Stop::Running;
    if ended.interrupted {
        ended.cut_by_plan = 0;
    }
    load::run_teardown(plan, &scenarios, setup).await;
    let duration = start.elapsed().as_secs_f64();
    drop(ticker);
    let set = recorders.snapshot();
    let not_started = ended.not_started;
    let mut report = finish::report(plan, &preflights, &set, &ended.ends, duration, started_at)?;
    report.thresholds = plan
        .thresholds
        .iter()
        .map(|t| t.evaluate(&set, duration))
        .collect();
    report.aborted_by = aborted_by.get().cloned();
    report.timeseries = timeseries;
    report.sessions.not_started = not_started;
    let queued = finish::connect_queue(&mut report, env.gate.stats(), &plan.limits);
    if let (true, Some(w)) = (progress, &queued) {
        eprintln!("warning: {w}");
    }
    let mut warnings = capacity.warnings;
    warnings.extend(queued);
    Ok(RunOutcome {
        report,
        interrupted: ended.interrupted,
        cut_by_plan: ended.cut_by_plan,
        warnings,
    })
}

/// Passes every stop request from outside (Ctrl-C) on to the run's own stop channel, which
/// thresholds may also pull.
async fn forward_stops(mut external: watch::Receiver<Stop>, inner: Arc<watch::Sender<Stop>>) {
    loop {
        let now = *external.borrow_and_update();
        inner.send_if_modified(|s| {
            let raise = now > *s;
            if raise {
                *s = now;
            }
            raise
        });
        if external.changed().await.is_err() {
            return;
        }
    }
}

/// Every second, evaluates the thresholds marked `abort_on_fail` (once their delay passed);
/// the first that fails stops the run gracefully and is named in `aborted_by`.
async fn abort_on_fail(
    thresholds: Vec<crate::metrics::threshold::Threshold>,
    recorders: Arc<Recorders>,
    stop: Arc<watch::Sender<Stop>>,
    aborted_by: Arc<std::sync::OnceLock<String>>,
) {
    let watched: Vec<_> = thresholds.into_iter().filter(|t| t.abort_on_fail).collect();
    if watched.is_empty() {
        return;
    }
    let start = Instant::now();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        let set = recorders.snapshot();
        let failed = watched
            .iter()
            .filter(|t| elapsed >= t.delay_abort_eval)
            .map(|t| t.evaluate(&set, elapsed.as_secs_f64()))
            .find(|v| v.observed.is_some() && !v.passed);
        if let Some(v) = failed {
            let _ = aborted_by.set(format!("threshold `{}: {}` failed", v.metric, v.expression));
            stop.send_if_modified(|s| {
                let raise = *s == Stop::Running;
                if raise {
                    *s = Stop::Graceful;
                }
                raise
            });
            return;
        }
    }
}

/// One recorder per tenant, so that each has its own metric-key quota.
struct Recorders {
    implicit: Arc<Recorder>,
    named: BTreeMap<String, Arc<Recorder>>,
}

impl Recorders {
    fn of(plan: &RunPlan) -> Recorders {
        let new = || Arc::new(Recorder::new(worker_threads() + 1));
        Recorders {
            implicit: new(),
            named: plan
                .data
                .keys()
                .filter(|t| !t.is_empty())
                .map(|t| (t.clone(), new()))
                .collect(),
        }
    }

    /// Every tenant's metrics in one set, declared tenants' names prefixed `TENANT: `.
    fn snapshot(&self) -> MetricSet {
        let mut set = self.implicit.snapshot();
        for (tenant, recorder) in &self.named {
            set.merge_tenant(tenant, &recorder.snapshot());
        }
        set
    }
}

/// The engine and its pool, sized to the sessions the plan wants at once and what the machine
/// allows (map count, open files, address space).
fn sized_engine(
    plan: &RunPlan,
    preflights: &[loader::Preflight],
) -> Result<(wasmtime::Engine, limits::Capacity), RunError> {
    let wanted = match plan.limits.max_concurrent {
        0 => u32::try_from(plan.total_sessions()).unwrap_or(u32::MAX),
        n => n,
    };
    let shape = preflights.iter().map(|p| p.shape).fold(
        engine::ComponentShape::default(),
        engine::ComponentShape::max,
    );
    let memory_bytes = u64::from(plan.limits.memory_mb) << 20;
    let cost = limits::SlotCost {
        sockets: 1,
        max_sockets: connections_per_session(plan),
        bytes: engine::slot_bytes(memory_bytes, &shape),
        extra_slots: u64::from(plan.limits.child_slots),
    };
    let capacity = limits::capacity(wanted, cost, &SystemLimits::probe());
    let engine = engine::build_engine(&EngineSettings {
        slots: capacity.slots.saturating_add(plan.limits.child_slots),
        memory_bytes,
        shape,
        cache_dir: plan.cache_dir.clone(),
    })?;
    Ok((engine, capacity))
}

/// Tokio worker threads of the current runtime (for sizing metric shards).
/// Connections one session may hold open: the largest HTTP + WebSocket caps of any scenario.
fn connections_per_session(plan: &RunPlan) -> u64 {
    plan.scenarios
        .iter()
        .map(|s| {
            let l = s.limits(&plan.limits);
            u64::from(l.http_connections) + u64::from(l.ws_connections)
        })
        .max()
        .unwrap_or(1)
}

fn worker_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1)
}

/// Writes the report files the plan asks for.
pub fn write_outputs(report: &Report, outputs: &[Output]) -> Result<(), report::ReportError> {
    for o in outputs {
        match o {
            Output::Json(path) => report.write_json(path)?,
            Output::Csv(path) => report.write_csv(path)?,
            Output::Junit(path) => report.write_junit(path)?,
            Output::Html(path) => report.write_html(path)?,
            // Streamed while the run went.
            Output::Influx(_) => {}
        }
    }
    Ok(())
}
