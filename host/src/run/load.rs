//! Loading a plan's scenarios (compile, link, pre-instantiate) and running its setup and
//! teardown hooks.

use super::RunError;
use crate::metrics::Sink;
use crate::net::NetConfig;
use crate::net::gate::ConnectGate;
use crate::net::resolve::{PinnedHosts, SystemResolver};
use crate::plan::limits::Limits;
use crate::plan::{RunPlan, ScenarioKind, ScenarioPlan};
use crate::sandbox::cpu::CpuShare;
use crate::sandbox::loader::{self, LoadError, Preflight};
use crate::session::nested::run_hook;
use crate::session::{RunCtx, ScenarioRt};
use crate::util::first_line;
use crate::util::ledger::Account;
use crate::wit::ScenarioPre;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use tokio::sync::Semaphore;
use wasmtime::Engine;

/// What every loaded scenario shares.
pub struct Env<'a> {
    pub engine: &'a Engine,
    pub epoch: Arc<AtomicU64>,
    /// The implicit tenant's sink.
    pub sink: Sink,
    /// Each tenant's share of the worker threads, when the run has several tenants.
    pub cpu_shares: BTreeMap<String, CpuShare>,
    /// One sink per declared tenant: each tenant has its own metric-key quota.
    pub tenant_sinks: BTreeMap<String, Sink>,
    pub child_slots: Arc<Semaphore>,
    /// Instantiations allowed at once.
    pub instantiations: usize,
    /// The run's connect gate.
    pub gate: Arc<ConnectGate>,
}

impl Env<'_> {
    /// The sink of `tenant`'s scenarios (the plan only names declared tenants).
    fn sink_of(&self, tenant: &str) -> Sink {
        self.tenant_sinks.get(tenant).unwrap_or(&self.sink).clone()
    }
}

/// What a scenario's sessions run.
#[derive(Clone)]
pub enum Runs {
    Component(Arc<ScenarioRt>),
    Sequence(Vec<Arc<ScenarioRt>>),
}

/// A loaded scenario, ready to start sessions.
pub struct Loaded {
    pub plan: ScenarioPlan,
    pub runs: Runs,
    /// The deadline of each of its sessions (sequences run their steps within it).
    pub timeout: std::time::Duration,
    /// `iteration NAME` and `iteration NAME (from intended start)`, named once.
    pub iteration_keys: [crate::metrics::MetricKey; 2],
}

/// The network settings of one scenario's sessions.
fn net_config(plan: &RunPlan, sp: &ScenarioPlan, gate: &Arc<ConnectGate>) -> NetConfig {
    let l = sp.limits(&plan.limits);
    NetConfig {
        base_url: sp.base_url.clone(),
        tls: plan.tls.clone(),
        policy: plan.allowlists.get(&sp.tenant).cloned().unwrap_or_default(),
        resolver: Arc::new(PinnedHosts::new(
            plan.hosts.get(&sp.tenant).cloned().unwrap_or_default(),
            Arc::new(SystemResolver),
        )),
        gate: gate.clone(),
        connect_timeout: l.connect_timeout,
        request_timeout: l.request_timeout,
        http_connections: l.http_connections,
        max_response_body: l.max_response_body as usize,
        max_request_body: crate::plan::limits::MAX_REQUEST_BODY,
        max_redirects: l.max_redirects,
        max_ws_message: l.max_ws_message as usize,
        ws_queue: l.ws_queue as usize,
    }
}

/// The host-memory account all sessions of `tenant` share.
fn tenant_account(tenant: &str, limits: &Limits) -> Arc<Account> {
    let cap = u64::from(limits.tenant_memory_mb) << 20;
    let label = match tenant {
        "" => format!(
            "the run's {} MiB host-memory cap ([limits] tenant_memory_mb)",
            limits.tenant_memory_mb
        ),
        t => format!(
            "tenant `{t}`'s {} MiB host-memory cap ([tenant.{t}.limits] tenant_memory_mb)",
            limits.tenant_memory_mb
        ),
    };
    Account::new(cap, label.into())
}

/// Compiles and links every component scenario; sequences point at their steps.
pub async fn scenarios(
    plan: &RunPlan,
    preflights: &[Preflight],
    env: &Env<'_>,
) -> Result<Vec<Arc<Loaded>>, RunError> {
    let linker = crate::wit_host::linker(env.engine)?;
    let run = Arc::new(RunCtx {
        setup_data: OnceLock::new(),
        registry: OnceLock::new(),
        child_slots: env.child_slots.clone(),
        instantiating: Semaphore::new(env.instantiations),
    });
    let mut components: BTreeMap<String, Arc<ScenarioRt>> = BTreeMap::new();
    let mut tenant_memory: BTreeMap<String, Arc<Account>> = BTreeMap::new();
    let with_component = plan.scenarios.iter().filter(|s| s.component().is_some());
    for (sp, pre) in with_component.zip(preflights) {
        let component = loader::compile(env.engine, pre, plan.limits.compile_timeout).await?;
        let instance_pre = linker
            .instantiate_pre(&component)
            .and_then(ScenarioPre::new)
            .map_err(|e| LoadError::Link {
                path: pre.path.display().to_string(),
                reason: first_line(&format!("{e:#}")),
            })?;
        let limits = sp.limits(&plan.limits);
        let tenant_memory = tenant_memory
            .entry(sp.tenant.clone())
            .or_insert_with(|| tenant_account(&sp.tenant, limits))
            .clone();
        let scenario = Arc::new(ScenarioRt {
            name: sp.name.as_str().into(),
            tenant: sp.tenant.as_str().into(),
            data: plan.data.get(&sp.tenant).cloned().unwrap_or_default(),
            config: Arc::new(sp.config.clone()),
            limits: limits.clone(),
            net: Arc::new(net_config(plan, sp, &env.gate)),
            sink: env.sink_of(&sp.tenant),
            tenant_memory,
            cpu_share: env.cpu_shares.get(&sp.tenant).cloned(),
            session_memory_label: format!(
                "the session's {} MiB host-memory cap ([limits] host_memory_mb)",
                limits.host_memory_mb
            )
            .into(),
            epoch: env.epoch.clone(),
            log_level: plan.log_level,
            run: run.clone(),
            pre: OnceLock::new(),
        });
        let _ = scenario.pre.set(instance_pre);
        components.insert(sp.name.clone(), scenario);
    }
    let registry = components
        .iter()
        .map(|(k, v)| (k.clone(), Arc::downgrade(v)))
        .collect();
    let _ = run.registry.set(registry);
    Ok(plan
        .scenarios
        .iter()
        .map(|sp| Loaded {
            iteration_keys: [
                crate::metrics::MetricKey::iteration(&sp.name),
                crate::metrics::MetricKey::iteration_from_intended_start(&sp.name),
            ],
            plan: sp.clone(),
            timeout: sp.limits(&plan.limits).session_timeout,
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
        .map(Arc::new)
        .collect())
}

fn hook_target<'a>(scenarios: &'a [Arc<Loaded>], name: &str) -> Option<&'a Arc<ScenarioRt>> {
    scenarios.iter().find_map(|s| match &s.runs {
        Runs::Component(rt) if s.plan.name == name => Some(rt),
        _ => None,
    })
}

/// Runs the load test's setup hook; its result becomes every session's `setup-data`.
pub async fn run_setup(
    plan: &RunPlan,
    scenarios: &[Arc<Loaded>],
) -> Result<Option<String>, RunError> {
    let Some(hook) = &plan.setup else {
        return Ok(None);
    };
    let target = hook_target(scenarios, &hook.scenario)
        .ok_or_else(|| RunError::SetupScenario(hook.scenario.clone()))?;
    let data = run_hook(target, &hook.function, "null".into())
        .await
        .map_err(|end| RunError::Setup {
            function: hook.function.clone(),
            reason: end.to_string(),
        })?;
    let _ = target.run.setup_data.set(data.clone());
    Ok(Some(data))
}

/// Runs the teardown hook with the setup result; a failure is reported, the results stay.
pub async fn run_teardown(plan: &RunPlan, scenarios: &[Arc<Loaded>], setup: Option<String>) {
    let Some(hook) = &plan.teardown else { return };
    let Some(target) = hook_target(scenarios, &hook.scenario) else {
        return;
    };
    let args = setup.unwrap_or_else(|| "null".into());
    if let Err(end) = run_hook(target, &hook.function, args).await {
        eprintln!(
            "warning: the teardown function `{}` failed: {end}",
            hook.function
        );
    }
}
