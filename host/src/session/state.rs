//! The data of one session's store, composed of one context per concern: the sandbox (WASI,
//! CPU meter, memory limiter, guest output) and one context per WIT interface, each of which
//! `wit_host` implements that interface's `Host` trait on. Nothing here is shared between
//! sessions except through [`ScenarioRt`].

use super::children::Family;
use super::deadline::Deadline;
use super::journal::{LogLimiter, Traces};
use super::scenario::ScenarioRt;
use crate::metrics::Sink;
use crate::net::NetConfig;
use crate::net::cookies::Cookies;
use crate::net::http::HttpClient;
use crate::sandbox::SandboxCtx;
use crate::sandbox::cpu::{CpuMark, CpuTree};
use crate::util::ledger::{Charge, HostMemory};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtxView, WasiView};

/// Identity of a session.
#[derive(Clone, Debug)]
pub struct SessionIdentity {
    pub id: String,
    pub parent_id: Option<String>,
    pub vu: u32,
    pub iteration: u32,
}

/// The data of one store.
pub struct SessionState {
    pub sandbox: SandboxCtx,
    pub session: SessionCtx,
    pub http: HttpCtx,
    pub ws: WsCtx,
}

/// The `session` interface's context: identity, config and assigns, traces, logs, children and
/// signals, and the session's deadline.
pub struct SessionCtx {
    pub scenario: Arc<ScenarioRt>,
    pub identity: SessionIdentity,
    /// Shared with the scenario and the session's children until the guest sets a value.
    pub config: Arc<Value>,
    pub assigns: Value,
    pub traces: Traces,
    pub logs: LogLimiter,
    pub family: Family,
    pub deadline: Deadline,
    /// The session's jar (shared with its HTTP and WebSocket contexts).
    pub cookies: Cookies,
    pub mark: CpuMark,
    /// The CPU budget of this session's tree, handed to its children and nested runs.
    pub cpu_tree: CpuTree,
    /// The host memory this session's guest makes the host hold.
    pub memory: HostMemory,
    /// What the assigns and config the guest set hold (values it replaced are given back).
    pub state_held: Charge,
}

/// The `http` interface's context: the session's connections and jar.
pub struct HttpCtx {
    pub client: HttpClient,
    pub net: Arc<NetConfig>,
    pub sink: Sink,
    pub mark: CpuMark,
    pub deadline: Deadline,
    /// The last request's resolved URL and metric key.
    pub recent: Option<Recent>,
}

/// The last request's URL text, resolved, and its metric key: a scenario that sends the same
/// request again (the common loop) pays no URL parse and no key formatting.
pub struct Recent {
    pub method: crate::wit::http::Method,
    pub text: String,
    pub metric_name: Option<String>,
    pub url: std::sync::Arc<url::Url>,
    pub key: crate::metrics::MetricKey,
}

/// The `websocket` interface's context: the session's open connections.
pub struct WsCtx {
    /// Host side of the `connection` resources.
    pub table: ResourceTable,
    /// Where queued inbound messages are charged.
    pub memory: HostMemory,
    pub open: u32,
    /// Open WebSockets allowed at once.
    pub cap: u32,
    /// Receive wait when the guest gives none; send deadline.
    pub recv_timeout: Duration,
    pub send_timeout: Duration,
    pub cookies: Cookies,
    pub net: Arc<NetConfig>,
    pub sink: Sink,
    pub mark: CpuMark,
    pub deadline: Deadline,
    /// Byte counters of the session's open WebSockets; with `wire_closed` (bytes of those it
    /// closed), added to the run's data counters when the session ends.
    pub wire: Vec<Arc<crate::net::stream::ByteCounters>>,
    pub wire_closed: (u64, u64),
}

impl Drop for WsCtx {
    fn drop(&mut self) {
        if self.wire.is_empty() && self.wire_closed == (0, 0) {
            return;
        }
        let (mut sent, mut received) = self.wire_closed;
        for c in &self.wire {
            let (s, r) = c.read();
            sent += s;
            received += r;
        }
        let recorder = self.sink.recorder();
        recorder.add(crate::metrics::keys::BYTES_SENT, sent);
        recorder.add(crate::metrics::keys::BYTES_RECEIVED, received);
    }
}

impl SessionState {
    /// Moves the session's deadline (in every context), e.g. to give `teardown` its grace.
    pub fn set_deadline(&mut self, deadline: Deadline) {
        self.session.deadline = deadline;
        self.http.deadline = deadline;
        self.ws.deadline = deadline;
    }
}

impl WasiView for SessionState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.sandbox.wasi,
            table: &mut self.sandbox.table,
        }
    }
}
