//! Running a load test: load components, build the engine, run every session in its own
//! instance, and report.
//!
//! Sessions are tokio tasks; each owns a `Store<VuState>` with one instance from the scenario's
//! pre-instantiated component. A semaphore with one permit per pool slot bounds how many are
//! alive at once, so the pool never runs out (pool exhaustion is an error in wasmtime, not a wait).
//! Stopping (Ctrl-C) stops new sessions, lets running ones finish for the graceful-stop period,
//! then drops them: they are reported as `interrupted`, and every completed result is kept.

use crate::bindings::{Scenario, ScenarioError, ScenarioPre};
use crate::config::{Output, RunPlan, ScenarioKind, ScenarioPlan};
use crate::data::Dataset;
use crate::engine::{self, EngineSettings, EpochTicker};
use crate::limits::{self, SystemLimits};
use crate::loader::{self, LoadError, Preflight};
use crate::metrics::Recorder;
use crate::outcome::{SessionEnd, TrapKind};
use crate::report::{self, ComponentInfo, Provenance, Report, SessionFailure, SessionSummary};
use crate::state::{LogLevel, RunShared, SessionIdentity, VuState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use wasmtime::component::Linker;
use wasmtime::{Engine, Store, UpdateDeadline};

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
    pub log_level: LogLevel,
    /// Print capacity warnings and progress to stderr.
    pub progress: bool,
}

/// A failure before any session ran.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Engine(#[from] engine::EngineError),
    #[error("cannot start the run: {0}")]
    Setup(String),
}

/// The result of a run.
pub struct RunOutcome {
    pub report: Report,
    pub interrupted: bool,
    /// Limits that capped the number of concurrent sessions.
    pub warnings: Vec<String>,
}

impl RunOutcome {
    /// Whether every session completed.
    pub fn all_completed(&self) -> bool {
        let s = &self.report.sessions;
        s.ended.get("completed").copied().unwrap_or(0) == s.started
    }
}

/// What a scenario's sessions run.
#[derive(Clone)]
enum Runs {
    Component(Arc<RunShared>),
    Sequence(Vec<Arc<RunShared>>),
}

/// A loaded scenario, ready to start sessions.
struct ScenarioRt {
    plan: ScenarioPlan,
    runs: Runs,
}

/// Runs `plan` to the end (or until stopped) and builds the report.
pub async fn run(plan: &RunPlan, options: RunOptions) -> Result<RunOutcome, RunError> {
    let preflights = plan
        .scenarios
        .iter()
        .filter_map(ScenarioPlan::component)
        .map(loader::preflight)
        .collect::<Result<Vec<_>, _>>()?;
    let data = load_data(plan)?;
    let wanted = match plan.limits.max_concurrent {
        0 => u32::try_from(plan.total_sessions()).unwrap_or(u32::MAX),
        n => n,
    };
    let capacity = limits::capacity(wanted, 1, &SystemLimits::probe());
    if options.progress {
        for w in &capacity.warnings {
            eprintln!("warning: {w}");
        }
    }
    let shape = preflights.iter().map(|p| p.shape).fold(
        engine::ComponentShape::default(),
        engine::ComponentShape::max,
    );
    let child_slots = plan.limits.child_slots;
    let engine = engine::build_engine(&EngineSettings {
        slots: capacity.slots.saturating_add(child_slots),
        memory_bytes: u64::from(plan.limits.memory_mb) << 20,
        shape,
        cache_dir: plan.cache_dir.clone(),
    })?;
    let ticker = EpochTicker::start(&engine).map_err(|e| RunError::Setup(e.to_string()))?;
    let recorder = Arc::new(Recorder::new(worker_threads() + 1));
    let slots = Arc::new(Semaphore::new(capacity.slots as usize));
    let children = Arc::new(Semaphore::new(child_slots as usize));
    let loaded = Loaded {
        engine: &engine,
        ticker: &ticker,
        recorder: &recorder,
        slots: &children,
    };
    let scenarios = load_scenarios(plan, &preflights, &loaded, data, &options).await?;
    let started_at = std::time::SystemTime::now();
    let start = Instant::now();
    let setup = run_setup(plan, &scenarios).await?;
    let (ends, interrupted) = run_sessions(&scenarios, slots, &plan.limits, options).await;
    run_teardown(plan, &scenarios, setup).await;
    let duration = start.elapsed().as_secs_f64();
    drop(ticker);
    let report = build_report(plan, &preflights, &recorder, ends, duration, started_at)
        .map_err(|e| RunError::Setup(e.to_string()))?;
    Ok(RunOutcome {
        report,
        interrupted,
        warnings: capacity.warnings,
    })
}

/// Tokio worker threads of the current runtime (for sizing metric shards).
fn worker_threads() -> usize {
    tokio::runtime::Handle::try_current()
        .map(|h| h.metrics().num_workers())
        .unwrap_or(1)
}

/// What every loaded scenario shares.
struct Loaded<'a> {
    engine: &'a Engine,
    ticker: &'a EpochTicker,
    recorder: &'a Arc<Recorder>,
    slots: &'a Arc<Semaphore>,
}

/// Loads the load test's data sets.
fn load_data(plan: &RunPlan) -> Result<Arc<BTreeMap<String, Dataset>>, RunError> {
    plan.data
        .iter()
        .map(|(name, spec)| Ok((name.clone(), Dataset::load(name, spec)?)))
        .collect::<Result<BTreeMap<_, _>, crate::data::DataError>>()
        .map(Arc::new)
        .map_err(|e| RunError::Setup(e.to_string()))
}

async fn load_scenarios(
    plan: &RunPlan,
    preflights: &[Preflight],
    loaded: &Loaded<'_>,
    data: Arc<BTreeMap<String, Dataset>>,
    options: &RunOptions,
) -> Result<Vec<ScenarioRt>, RunError> {
    let engine = loaded.engine;
    let linker = linker(engine)?;
    let tls = crate::net::tls_config(&plan.tls).map_err(RunError::Setup)?;
    let registry = Arc::new(std::sync::OnceLock::new());
    let setup_data = Arc::new(std::sync::OnceLock::new());
    let mut components: BTreeMap<String, Arc<RunShared>> = BTreeMap::new();
    let with_component = plan.scenarios.iter().filter(|s| s.component().is_some());
    for (sp, pre) in with_component.zip(preflights) {
        let component = loader::compile(engine, pre).await?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .and_then(ScenarioPre::new)
            .map_err(|e| LoadError::Link {
                path: pre.path.display().to_string(),
                reason: loader::first_line(&format!("{e:#}")),
            })?;
        let base_url = sp
            .config
            .get("base_url")
            .and_then(|v| v.as_str())
            .and_then(|s| url::Url::parse(s).ok());
        let shared = Arc::new(RunShared {
            scenario: sp.name.as_str().into(),
            recorder: loaded.recorder.clone(),
            limits: plan.limits.clone(),
            base_url,
            tls: tls.clone(),
            epoch: loaded.ticker.epoch(),
            log_level: options.log_level,
            config: sp.config.clone(),
            setup_data: setup_data.clone(),
            data: data.clone(),
            registry: registry.clone(),
            pre: std::sync::OnceLock::new(),
            slots: loaded.slots.clone(),
        });
        let _ = shared.pre.set(instance_pre);
        components.insert(sp.name.clone(), shared);
    }
    let _ = registry.set(
        components
            .iter()
            .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
            .collect(),
    );
    Ok(plan
        .scenarios
        .iter()
        .map(|sp| ScenarioRt {
            plan: sp.clone(),
            runs: match &sp.kind {
                ScenarioKind::Component(_) => components
                    .get(&sp.name)
                    .cloned()
                    .map_or(Runs::Sequence(Vec::new()), Runs::Component),
                ScenarioKind::Sequence(steps) => Runs::Sequence(
                    steps
                        .iter()
                        .filter_map(|s| components.get(s).cloned())
                        .collect(),
                ),
            },
        })
        .collect())
}

fn hook_target<'a>(scenarios: &'a [ScenarioRt], name: &str) -> Option<&'a Arc<RunShared>> {
    scenarios.iter().find_map(|s| match &s.runs {
        Runs::Component(shared) if s.plan.name == name => Some(shared),
        _ => None,
    })
}

/// Runs the load test's setup hook; its result becomes every session's `setup-data`.
async fn run_setup(plan: &RunPlan, scenarios: &[ScenarioRt]) -> Result<Option<String>, RunError> {
    let Some(hook) = &plan.setup else {
        return Ok(None);
    };
    let target = hook_target(scenarios, &hook.scenario).ok_or_else(|| {
        RunError::Setup(format!("setup scenario `{}` is not loaded", hook.scenario))
    })?;
    let data = crate::nested::run_hook(target, &hook.function, "null".into())
        .await
        .map_err(|end| {
            RunError::Setup(format!(
                "the setup function `{}` failed: {end}",
                hook.function
            ))
        })?;
    let _ = target.setup_data.set(data.clone());
    Ok(Some(data))
}

/// Runs the teardown hook with the setup result; a failure is reported, the results stay.
async fn run_teardown(plan: &RunPlan, scenarios: &[ScenarioRt], setup: Option<String>) {
    let Some(hook) = &plan.teardown else { return };
    let Some(target) = hook_target(scenarios, &hook.scenario) else {
        return;
    };
    let args = setup.unwrap_or_else(|| "null".into());
    if let Err(end) = crate::nested::run_hook(target, &hook.function, args).await {
        eprintln!(
            "warning: the teardown function `{}` failed: {end}",
            hook.function
        );
    }
}

/// The linker: empty WASI (async) plus our world.
fn linker(engine: &Engine) -> Result<Linker<VuState>, RunError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(|e| RunError::Setup(format!("cannot link WASI: {e:#}")))?;
    Scenario::add_to_linker::<_, wasmtime::component::HasSelf<_>>(&mut linker, |s| s)
        .map_err(|e| RunError::Setup(format!("cannot link the scenario world: {e:#}")))?;
    Ok(linker)
}

/// One finished session.
struct Ended {
    id: String,
    scenario: String,
    end: SessionEnd,
}

/// Starts every session (at most `slots` alive at once) and waits for them.
async fn run_sessions(
    scenarios: &[ScenarioRt],
    permits: Arc<Semaphore>,
    limits: &crate::limits::Limits,
    mut options: RunOptions,
) -> (Vec<Ended>, bool) {
    let mut tasks = JoinSet::new();
    let mut ends = Vec::new();
    let total: u64 = scenarios.iter().map(|s| u64::from(s.plan.sessions)).sum();
    let test_end = tokio::time::Instant::now() + limits.max_duration;
    'spawn: for (next_id, (vu, sc)) in interleave(scenarios).enumerate() {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p,
            _ = options.stop.wait_for(|s| *s != Stop::Running) => break 'spawn,
            _ = tokio::time::sleep_until(test_end) => break 'spawn,
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
            timeout: limits.session_timeout,
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
    let spawned_all = ends.len() as u64 + tasks.len() as u64 == total;
    let stop = &mut options.stop;
    let interrupted = drain(&mut tasks, &mut ends, limits.graceful_stop, stop, test_end).await;
    (ends, interrupted || !spawned_all)
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
        let extra = self.plan.random_start_delay.as_millis();
        let jitter = u32::try_from(extra).unwrap_or(u32::MAX);
        let delay = self.plan.start_delay
            + Duration::from_millis(u64::from(crate::session_host::random_below(jitter)));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match &self.runs {
            Runs::Component(shared) => {
                run_session(shared.clone(), identity, self.plan.config.clone()).await
            }
            Runs::Sequence(steps) => {
                let deadline = Instant::now() + self.timeout;
                crate::nested::run_sequence(steps, identity, self.plan.config.clone(), deadline)
                    .await
            }
        }
    }
}

/// Sessions of all scenarios, interleaved so every scenario starts early: (vu number, scenario).
fn interleave(scenarios: &[ScenarioRt]) -> impl Iterator<Item = (u32, &ScenarioRt)> {
    let max = scenarios.iter().map(|s| s.plan.sessions).max().unwrap_or(0);
    (0..max).flat_map(move |vu| {
        scenarios
            .iter()
            .filter(move |s| vu < s.plan.sessions)
            .map(move |s| (vu, s))
    })
}

/// Waits for running sessions; on a stop request, gives them `grace`, then drops the rest.
/// Returns whether the run was stopped early.
async fn drain(
    tasks: &mut JoinSet<Ended>,
    ends: &mut Vec<Ended>,
    grace: Duration,
    stop: &mut watch::Receiver<Stop>,
    test_end: tokio::time::Instant,
) -> bool {
    if !wait_until(tasks, ends, stop, Stop::Graceful, Some(test_end)).await {
        return false;
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
    true
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

/// Runs one session: instantiate, init, run, teardown, within the session deadline.
pub async fn run_session(
    shared: Arc<RunShared>,
    identity: SessionIdentity,
    config: serde_json::Value,
) -> SessionEnd {
    let Some(pre) = shared.pre.get().cloned() else {
        return SessionEnd::LoadError("the scenario is not loaded".into());
    };
    let timeout = shared.limits.session_timeout;
    let mut store = new_store(pre.engine(), shared, identity, config);
    match tokio::time::timeout(timeout, lifecycle(&pre, &mut store)).await {
        Ok(end) => end,
        Err(_) => SessionEnd::Timeout,
    }
}

/// A store with the session's limits, CPU meter and epoch behaviour.
pub fn new_store(
    engine: &Engine,
    shared: Arc<RunShared>,
    identity: SessionIdentity,
    config: serde_json::Value,
) -> Store<VuState> {
    let mut store = Store::new(engine, VuState::new(shared, identity, config));
    store.limiter(|s| &mut s.limiter);
    store.epoch_deadline_callback(|mut ctx| {
        let cpu = &mut ctx.data_mut().cpu;
        if cpu.charge() {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(cpu.yield_now())))
        }
    });
    store.set_epoch_deadline(1);
    store
}

/// Instantiates and runs `init`, `run`, the children's await and `teardown`.
pub(crate) async fn lifecycle(
    pre: &ScenarioPre<VuState>,
    store: &mut Store<VuState>,
) -> SessionEnd {
    let instance = match pre.instantiate_async(&mut *store).await {
        Ok(i) => i,
        Err(e) => return instantiate_error(store, &e),
    };
    store.data_mut().cpu.reset();
    let init = instance.call_init(&mut *store).await;
    if let Some(end) = failed(store, init) {
        return end;
    }
    store.data_mut().cpu.reset();
    let run = instance.call_run(&mut *store).await;
    let run_end = failed(store, run);
    crate::children::await_remaining(store.data_mut()).await;
    if matches!(
        run_end,
        Some(SessionEnd::GuestError(_)) | Some(SessionEnd::Aborted(_)) | None
    ) {
        store.data_mut().cpu.reset();
        let teardown = instance.call_teardown(&mut *store).await;
        if let (None, Some(end)) = (&run_end, failed(store, teardown)) {
            return end;
        }
    }
    run_end.unwrap_or(SessionEnd::Completed)
}

/// `None` when an entry point returned ok, else how the session ends.
fn failed(
    store: &Store<VuState>,
    r: wasmtime::Result<Result<(), ScenarioError>>,
) -> Option<SessionEnd> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(scenario_error_end(e)),
        Err(e) => Some(classify_trap(store, &e)),
    }
}

/// The end reason of a scenario's own error.
pub fn scenario_error_end(e: ScenarioError) -> SessionEnd {
    match e {
        ScenarioError::Failed(m) => SessionEnd::GuestError(crate::session_host::escape(&m)),
        ScenarioError::Aborted(m) => SessionEnd::Aborted(crate::session_host::escape(&m)),
    }
}

/// Turns a wasmtime error out of a guest call into the session's end reason.
pub fn classify_trap(store: &Store<VuState>, e: &wasmtime::Error) -> SessionEnd {
    let state = store.data();
    let detail = state.output.last_line();
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) if state.cpu.exceeded => SessionEnd::CpuBudget,
        Some(wasmtime::Trap::Interrupt) => SessionEnd::Interrupted,
        Some(_) if state.limiter.hit => SessionEnd::MemoryLimit,
        Some(wasmtime::Trap::UnreachableCodeReached) => SessionEnd::Trap {
            kind: TrapKind::Unreachable,
            detail,
        },
        Some(wasmtime::Trap::StackOverflow) => SessionEnd::Trap {
            kind: TrapKind::StackOverflow,
            detail,
        },
        Some(wasmtime::Trap::MemoryOutOfBounds) => SessionEnd::Trap {
            kind: TrapKind::MemoryOutOfBounds,
            detail,
        },
        Some(t) => SessionEnd::Trap {
            kind: TrapKind::Other(t.to_string()),
            detail,
        },
        None if state.limiter.hit => SessionEnd::MemoryLimit,
        None => SessionEnd::ResourceLimit(loader::first_line(&format!("{e:#}"))),
    }
}

fn instantiate_error(store: &Store<VuState>, e: &wasmtime::Error) -> SessionEnd {
    let text = format!("{e:#}");
    if text.contains("maximum concurrent") || text.contains("pool") {
        return SessionEnd::LoadError(format!("instance pool full: {}", loader::first_line(&text)));
    }
    match classify_trap(store, e) {
        SessionEnd::ResourceLimit(m) => SessionEnd::LoadError(m),
        other => other,
    }
}

fn build_report(
    plan: &RunPlan,
    preflights: &[Preflight],
    recorder: &Recorder,
    ends: Vec<Ended>,
    duration: f64,
    started_at: std::time::SystemTime,
) -> Result<Report, report::ReportError> {
    let mut sessions = SessionSummary {
        started: ends.len() as u64,
        ..SessionSummary::default()
    };
    for e in ends {
        *sessions.ended.entry(e.end.kind().to_owned()).or_default() += 1;
        if !e.end.is_completed() && sessions.failures.len() < 20 && !e.id.is_empty() {
            sessions.failures.push(SessionFailure {
                session: e.id,
                scenario: e.scenario,
                reason: e.end.to_string(),
            });
        }
    }
    let components = plan
        .scenarios
        .iter()
        .filter(|s| s.component().is_some())
        .zip(preflights)
        .map(|(s, p)| ComponentInfo {
            scenario: s.name.clone(),
            path: p.path.display().to_string(),
            sha256: p.sha256.clone(),
        })
        .collect();
    let config: serde_json::Map<String, serde_json::Value> = plan
        .scenarios
        .iter()
        .map(|s| (s.name.clone(), report::redact(&s.config)))
        .collect();
    let provenance = Provenance {
        host_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        components,
        config: serde_json::Value::Object(config),
        merged_from: 1,
    };
    Report::build(&recorder.snapshot(), duration, sessions, provenance)
}

/// Writes the report files the plan asks for.
pub fn write_outputs(report: &Report, outputs: &[Output]) -> Result<(), report::ReportError> {
    for o in outputs {
        match o {
            Output::Json(path) => report.write_json(path)?,
        }
    }
    Ok(())
}
