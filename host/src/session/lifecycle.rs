//! The one session lifecycle. This is the only code that creates a `Store`: top-level
//! sessions, async children, nested scenarios, sequence steps and the load test's hooks all
//! start here, and all end with one [`SessionEnd`].

use super::children::Family;
use super::deadline::{Deadline, TEARDOWN_GRACE};
use super::scenario::ScenarioRt;
use super::state::{HttpCtx, SessionCtx, SessionIdentity, SessionState, WsCtx};
use crate::net::cookies::Cookies;
use crate::net::http::HttpClient;
use crate::outcome::SessionEnd;
use crate::sandbox::SandboxCtx;
use crate::sandbox::cpu::CpuTree;
use crate::wit::{Scenario, ScenarioError};
use serde_json::Value;
use std::sync::Arc;
use wasmtime::{Store, UpdateDeadline};

/// What a session starts from.
pub struct Seed {
    pub identity: SessionIdentity,
    pub config: Arc<Value>,
    pub assigns: Value,
    pub cookies: Cookies,
    pub family: Family,
    pub deadline: Deadline,
    /// The CPU budget of the tree this session belongs to; `None` starts a new tree.
    pub cpu_tree: Option<CpuTree>,
    /// The HTTP connections of its virtual user's previous iteration (keep-alive and jar
    /// kept across iterations); `None` opens fresh ones.
    pub http: Option<HttpClient>,
}

impl Seed {
    /// A session of its own: empty assigns and jar, no family.
    pub fn fresh(identity: SessionIdentity, config: Arc<Value>, deadline: Deadline) -> Seed {
        Seed {
            identity,
            config,
            assigns: Value::Object(serde_json::Map::new()),
            cookies: Cookies::default(),
            family: Family::default(),
            deadline,
            cpu_tree: None,
            http: None,
        }
    }

    /// The same, continuing a virtual user's connections and cookie jar.
    pub fn continuing(mut self, http: Option<HttpClient>) -> Seed {
        if let Some(client) = &http {
            self.cookies = client.cookies.clone();
        }
        self.http = http;
        self
    }
}

/// A session that ended: why, and its final assigns (nested runs merge them back).
pub struct Finished {
    pub end: SessionEnd,
    pub assigns: Value,
    /// Its HTTP connections and jar, for its virtual user's next iteration.
    pub http: Option<HttpClient>,
}

/// A store for one session of `scenario` (the one `Store::new` of the host), with its limits,
/// CPU meter and epoch behaviour.
fn new_store(
    scenario: &Arc<ScenarioRt>,
    engine: &wasmtime::Engine,
    seed: Seed,
) -> Store<SessionState> {
    let limits = &scenario.limits;
    let sandbox = SandboxCtx::new(
        limits.memory_mb,
        limits.cpu_budget_ms,
        scenario.epoch.clone(),
        seed.cpu_tree,
        scenario.cpu_share.clone(),
    );
    let cpu_tree = sandbox.cpu.tree();
    let mark = sandbox.cpu.mark();
    let memory = scenario.host_memory();
    let client = match seed.http {
        Some(client) => client.charging(memory.clone()),
        None => HttpClient::new(
            limits.http_connections,
            seed.cookies.clone(),
            memory.clone(),
        ),
    };
    let state = SessionState {
        http: HttpCtx {
            client,
            net: scenario.net.clone(),
            sink: scenario.sink.clone(),
            mark: mark.clone(),
            deadline: seed.deadline,
            recent: None,
        },
        ws: WsCtx {
            table: crate::sandbox::capped_table(),
            memory: memory.clone(),
            open: 0,
            cap: limits.ws_connections,
            recv_timeout: limits.recv_timeout,
            send_timeout: limits.request_timeout,
            cookies: seed.cookies.clone(),
            net: scenario.net.clone(),
            sink: scenario.sink.clone(),
            mark: mark.clone(),
            deadline: seed.deadline,
            wire: Vec::new(),
            wire_closed: (0, 0),
        },
        session: SessionCtx {
            scenario: scenario.clone(),
            identity: seed.identity,
            config: seed.config,
            assigns: seed.assigns,
            traces: Default::default(),
            logs: Default::default(),
            family: seed.family,
            deadline: seed.deadline,
            cookies: seed.cookies,
            mark,
            cpu_tree,
            state_held: memory.empty(),
            memory,
        },
        sandbox,
    };
    let shared = state.sandbox.cpu.mark().shared();
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.sandbox.limiter);
    if shared {
        store.call_hook(|ctx, hook| {
            if hook.entering_host() {
                ctx.data().sandbox.cpu.left_wasm();
            }
            Ok(())
        });
    }
    store.epoch_deadline_callback(|mut ctx| {
        let cpu = &mut ctx.data_mut().sandbox.cpu;
        if cpu.charge() {
            Ok(UpdateDeadline::Interrupt)
        } else {
            Ok(UpdateDeadline::YieldCustom(1, Box::pin(cpu.yield_now())))
        }
    });
    store.set_epoch_deadline(1);
    store
}

/// Runs a session: instantiate, `init`, `run`, await its children, `teardown`. `teardown`
/// runs after `run` returned (also with an error, an abort or a timeout, then within
/// [`TEARDOWN_GRACE`]), never after a trap.
pub async fn run(scenario: &Arc<ScenarioRt>, seed: Seed) -> Finished {
    let Some(pre) = scenario.pre.get() else {
        return Finished {
            end: SessionEnd::LoadError("the scenario is not loaded".into()),
            assigns: seed.assigns,
            http: seed.http,
        };
    };
    let deadline = seed.deadline;
    let mut store = new_store(scenario, pre.engine(), seed);
    let instantiate = async {
        let _turn = scenario.run.instantiating.acquire().await;
        // The wait for a turn is not the guest's CPU time: its budget starts now.
        store.data_mut().sandbox.cpu.reset();
        pre.instantiate_async(&mut store).await
    };
    // Instantiation and teardown are boxed: a session's future is allocated at its largest
    // state for all its life, and an idle session waits in `run`, a smaller one.
    let instance = match Box::pin(deadline.enforce(instantiate)).await {
        Some(Ok(i)) => i,
        Some(Err(e)) => {
            let end = store.data().sandbox.instantiate_error(&e);
            return finished(end, store);
        }
        None => return finished(SessionEnd::Timeout, store),
    };
    let Some(mut end) = deadline.enforce(init_and_run(&instance, &mut store)).await else {
        // The guest did not return within the grace: its call was dropped mid-flight, so the
        // instance cannot be entered again.
        return finished(SessionEnd::Timeout, store);
    };
    if deadline.passed() && end.runs_teardown() {
        end = SessionEnd::Timeout;
        store
            .data_mut()
            .set_deadline(Deadline::after(TEARDOWN_GRACE));
    }
    if end.runs_teardown() {
        let window = store.data().session.deadline;
        let teardown = Box::pin(window.enforce(teardown(&instance, &mut store))).await;
        if let (true, Some(e)) = (
            end.is_completed(),
            teardown.unwrap_or(Some(SessionEnd::Timeout)),
        ) {
            end = e;
        }
    }
    finished(end, store)
}

/// `init`, `run` and the wait for children; the end so far (`Completed` when both returned ok).
async fn init_and_run(instance: &Scenario, store: &mut Store<SessionState>) -> SessionEnd {
    store.data_mut().sandbox.cpu.reset();
    let init = instance.call_init(&mut *store).await;
    if let Some(end) = outcome(store, init) {
        return end;
    }
    store.data_mut().sandbox.cpu.reset();
    let run = instance.call_run(&mut *store).await;
    let run_end = outcome(store, run);
    super::children::await_remaining(&mut store.data_mut().session).await;
    run_end.unwrap_or(SessionEnd::Completed)
}

async fn teardown(instance: &Scenario, store: &mut Store<SessionState>) -> Option<SessionEnd> {
    store.data_mut().sandbox.cpu.reset();
    let r = instance.call_teardown(&mut *store).await;
    outcome(store, r)
}

/// `None` when an entry point returned ok, else how the session ends.
fn outcome(
    store: &Store<SessionState>,
    r: wasmtime::Result<Result<(), ScenarioError>>,
) -> Option<SessionEnd> {
    match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(scenario_error_end(e)),
        Err(e) => Some(store.data().sandbox.classify(&e)),
    }
}

/// Instantiates a fresh instance and calls `invoke(function, args)`, then awaits the
/// instance's own children (async children, spreads, the load test's hooks).
pub async fn invoke(
    scenario: &Arc<ScenarioRt>,
    seed: Seed,
    function: &str,
    args: String,
) -> Result<String, SessionEnd> {
    let Some(pre) = scenario.pre.get() else {
        return Err(SessionEnd::LoadError("the scenario is not loaded".into()));
    };
    let deadline = seed.deadline;
    let mut store = new_store(scenario, pre.engine(), seed);
    let body = async {
        let turn = scenario.run.instantiating.acquire().await;
        let instance = pre.instantiate_async(&mut store).await;
        drop(turn);
        let instance = instance.map_err(|e| store.data().sandbox.instantiate_error(&e))?;
        store.data_mut().sandbox.cpu.reset();
        let out = match instance.call_invoke(&mut store, function, &args).await {
            Ok(Ok(json)) => Ok(json),
            Ok(Err(e)) => Err(scenario_error_end(e)),
            Err(e) => Err(store.data().sandbox.classify(&e)),
        };
        super::children::await_remaining(&mut store.data_mut().session).await;
        out
    };
    match deadline.enforce(body).await {
        Some(Ok(_)) if deadline.passed() => Err(SessionEnd::Timeout),
        Some(r) => r,
        None => Err(SessionEnd::Timeout),
    }
}

fn finished(end: SessionEnd, mut store: Store<SessionState>) -> Finished {
    super::report_dropped_logs(&mut store.data_mut().session);
    let state = store.into_data();
    Finished {
        end,
        assigns: state.session.assigns,
        http: Some(state.http.client),
    }
}

/// The end reason of a scenario's own error.
pub fn scenario_error_end(e: ScenarioError) -> SessionEnd {
    match e {
        ScenarioError::Failed(m) => SessionEnd::GuestError(crate::util::escape(&m)),
        ScenarioError::Aborted(m) => SessionEnd::Aborted(crate::util::escape(&m)),
    }
}
