//! A loaded scenario: what every session of it shares (read-only apart from the metrics sink).

use super::state::SessionState;
use crate::metrics::Sink;
use crate::net::NetConfig;
use crate::plan::LogLevel;
use crate::plan::data::Dataset;
use crate::plan::limits::Limits;
use crate::sandbox::cpu::CpuShare;
use crate::util::ledger::{Account, HostMemory};
use crate::wit::ScenarioPre;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::Semaphore;

/// What all scenarios of one run share.
pub struct RunCtx {
    /// Result of the load test's setup function (set once it ran).
    pub setup_data: OnceLock<String>,
    /// Every component scenario of the run by name (weak: each scenario holds this context).
    pub registry: OnceLock<BTreeMap<String, Weak<ScenarioRt>>>,
    /// Pool slots for children and nested scenarios; taken without waiting.
    pub child_slots: Arc<Semaphore>,
    /// Instantiations in progress at once. A storm of session starts (each instantiation is
    /// CPU work on a runtime worker) queues here instead of starving the I/O of sessions that
    /// already run, whose connect and receive timeouts would otherwise fire because the
    /// generator was busy.
    pub instantiating: Semaphore,
}

/// One scenario of the run, ready to start sessions.
pub struct ScenarioRt {
    pub name: Arc<str>,
    /// Its tenant ("" for the implicit one): names, data sets and network resolve inside it.
    pub tenant: Arc<str>,
    /// Its tenant's data sets.
    pub data: Arc<BTreeMap<String, Dataset>>,
    /// The scenario's own config: `[config]`, its `config`, then the command line's. Shared:
    /// a session copies it only when its guest sets a value (copy on write).
    pub config: Arc<Value>,
    pub limits: Limits,
    /// Base URL, TLS and network caps of its sessions' connections.
    pub net: Arc<NetConfig>,
    pub sink: Sink,
    /// Host memory its tenant's sessions hold (shared by the tenant's scenarios).
    pub tenant_memory: Arc<Account>,
    /// How a session's own host-memory cap is named in errors.
    pub session_memory_label: Arc<str>,
    /// Its tenant's share of the worker threads for spinning guests (`None` with one tenant).
    pub cpu_share: Option<CpuShare>,
    /// Mirror of the engine epoch, to charge CPU time.
    pub epoch: Arc<AtomicU64>,
    /// Scenario log lines below this level are not printed.
    pub log_level: LogLevel,
    pub run: Arc<RunCtx>,
    /// The pre-instantiated component (set once loaded).
    pub pre: OnceLock<ScenarioPre<SessionState>>,
}

impl ScenarioRt {
    /// The component scenario `name` of this run, if it is in this scenario's tenant: another
    /// tenant's scenarios are unknown here.
    pub fn lookup(&self, name: &str) -> Option<Arc<ScenarioRt>> {
        let found = self.run.registry.get()?.get(name)?.upgrade()?;
        (found.tenant == self.tenant).then_some(found)
    }

    /// A new session's host-memory ledger: its own cap and its tenant's.
    pub fn host_memory(&self) -> HostMemory {
        let cap = u64::from(self.limits.host_memory_mb) << 20;
        HostMemory::new(
            Account::new(cap, self.session_memory_label.clone()),
            self.tenant_memory.clone(),
        )
    }

    /// Whether `run` may see the load test's setup data (the implicit tenant's hook).
    pub fn sees_setup_data(&self) -> bool {
        self.tenant.is_empty()
    }
}
