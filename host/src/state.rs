//! Per-store state: everything one session (one instance) owns.
//!
//! A session's `Store<VuState>` holds its WASI context (empty: it grants nothing), its resource
//! table (WebSocket connections), its quotas and meters, and its session data (config, assigns,
//! cookies, HTTP pool). Nothing here is shared between sessions except [`RunShared`], which is
//! read-only apart from the metrics recorder.

use crate::http_client::HttpPool;
use crate::limits::{Limits, MAX_GUEST_OUTPUT};
use crate::metrics::Recorder;
use serde_json::Value;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Log verbosity of scenario log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

/// Read-only state shared by all sessions of one scenario in a run.
pub struct RunShared {
    pub scenario: Arc<str>,
    pub recorder: Arc<Recorder>,
    pub limits: Limits,
    /// `base_url` from the config, parsed once.
    pub base_url: Option<url::Url>,
    pub tls: Arc<rustls::ClientConfig>,
    /// Mirror of the engine epoch, to charge CPU time.
    pub epoch: Arc<AtomicU64>,
    /// Scenario log lines below this level are not printed.
    pub log_level: LogLevel,
    /// The scenario's config (global config merged with its own).
    pub config: Value,
    /// Result of the load test's setup function (set once it ran).
    pub setup_data: Arc<std::sync::OnceLock<String>>,
    /// The load test's data sets.
    pub data: Arc<std::collections::BTreeMap<String, crate::data::Dataset>>,
    /// Every component scenario of the run by name (weak: each holds the map).
    pub registry:
        Arc<std::sync::OnceLock<std::collections::BTreeMap<String, std::sync::Weak<RunShared>>>>,
    /// The scenario's pre-instantiated component, for async children (set once loaded).
    pub pre: std::sync::OnceLock<crate::bindings::ScenarioPre<VuState>>,
    /// Pool slots for children and nested scenarios; taken without waiting.
    pub slots: Arc<tokio::sync::Semaphore>,
}

/// Identity of a session.
#[derive(Clone, Debug)]
pub struct SessionIdentity {
    pub id: String,
    pub parent_id: Option<String>,
    pub vu: u32,
    pub iteration: u32,
}

/// The state of one store.
pub struct VuState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: MemoryLimiter,
    pub cpu: CpuMeter,
    pub shared: Arc<RunShared>,
    pub identity: SessionIdentity,
    pub config: Value,
    pub assigns: Value,
    pub http: HttpPool,
    pub traces: Traces,
    pub ws_open: u32,
    pub logs: LogLimiter,
    pub output: GuestOutput,
    /// Async children and signals.
    pub family: crate::children::Family,
    /// When the session's time is up (children inherit what is left of it).
    pub deadline: Instant,
}

impl VuState {
    /// A fresh session of `shared`'s scenario.
    pub fn new(shared: Arc<RunShared>, identity: SessionIdentity, config: Value) -> VuState {
        let output = GuestOutput::default();
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_ip_name_lookup(false)
            .build();
        let memory =
            usize::try_from(u64::from(shared.limits.memory_mb) << 20).unwrap_or(usize::MAX);
        let budget = u64::from(shared.limits.cpu_budget_ms)
            / u64::try_from(crate::engine::EPOCH_TICK.as_millis())
                .unwrap_or(10)
                .max(1);
        let cpu = CpuMeter::new(shared.epoch.clone(), budget.max(1));
        VuState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory),
            cpu,
            identity,
            config,
            assigns: Value::Object(serde_json::Map::new()),
            http: HttpPool::default(),
            traces: Traces::default(),
            ws_open: 0,
            logs: LogLimiter::default(),
            output,
            family: crate::children::Family::default(),
            deadline: Instant::now() + shared.limits.session_timeout,
            shared,
        }
    }

    /// Marks the return from a host call that may have waited: the time spent waiting is not
    /// charged to the guest's CPU budget.
    pub fn host_returned(&mut self) {
        self.cpu.resumed();
    }
}

impl WasiView for VuState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and table growth; remembers a refusal so a resulting trap is reported as
/// `memory-limit` rather than as an anonymous `unreachable`.
pub struct MemoryLimiter {
    max_bytes: usize,
    pub hit: bool,
}

/// Table elements one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    pub fn new(max_bytes: usize) -> Self {
        MemoryLimiter {
            max_bytes,
            hit: false,
        }
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= self.max_bytes;
        self.hit |= !ok;
        Ok(ok)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let ok = desired <= MAX_TABLE_ELEMENTS;
        self.hit |= !ok;
        Ok(ok)
    }
}

/// Counts epoch ticks that pass while wasm runs (not while the session waits in a host call).
///
/// The epoch deadline fires at the first check after a tick; the meter charges only ticks since
/// the later of the last host-call return and the last charge, so a session that slept 5 s in
/// `delay` is charged nothing for it, and a guest spinning between cheap host calls is charged
/// for every tick it spans.
pub struct CpuMeter {
    epoch: Arc<AtomicU64>,
    /// Set when the session runs again after yielding at a deadline: the time it waited for
    /// other sessions is not its own.
    yielded_until: Arc<AtomicU64>,
    resumed_at: u64,
    charged_to: u64,
    ticks: u64,
    budget: u64,
    pub exceeded: bool,
}

impl CpuMeter {
    pub fn new(epoch: Arc<AtomicU64>, budget_ticks: u64) -> Self {
        let now = epoch.load(Ordering::Relaxed);
        CpuMeter {
            yielded_until: Arc::new(AtomicU64::new(now)),
            epoch,
            resumed_at: now,
            charged_to: now,
            ticks: 0,
            budget: budget_ticks,
            exceeded: false,
        }
    }

    fn resumed(&mut self) {
        self.resumed_at = self.epoch.load(Ordering::Relaxed);
    }

    /// Starts a new budget (each entry-point call gets one).
    pub fn reset(&mut self) {
        self.ticks = 0;
        self.resumed();
    }

    /// The future a session awaits when it yields at a deadline: it lets other tasks run, then
    /// marks the epoch it resumed at.
    pub fn yield_now(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (epoch, mark) = (self.epoch.clone(), self.yielded_until.clone());
        async move {
            tokio::task::yield_now().await;
            mark.store(epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Called at an epoch deadline; true when the budget is used up.
    pub fn charge(&mut self) -> bool {
        let now = self.epoch.load(Ordering::Relaxed);
        let yielded = self.yielded_until.load(Ordering::Relaxed);
        let from = self.resumed_at.max(self.charged_to).max(yielded);
        self.ticks += now.saturating_sub(from);
        self.charged_to = now;
        self.exceeded = self.ticks > self.budget;
        self.exceeded
    }
}

/// Open traced calls: token → (metric name, start).
#[derive(Default)]
pub struct Traces {
    open: HashMap<u32, (String, Instant)>,
    next: u32,
}

impl Traces {
    /// Starts a trace; `None` when too many are open (a guest that never ends them).
    pub fn begin(&mut self, name: String) -> Option<u32> {
        if self.open.len() >= crate::limits::MAX_OPEN_TRACES {
            return None;
        }
        self.next = self.next.wrapping_add(1);
        self.open.insert(self.next, (name, Instant::now()));
        Some(self.next)
    }

    /// Ends a trace: its name and duration in µs.
    pub fn end(&mut self, token: u32) -> Option<(String, u64)> {
        self.open
            .remove(&token)
            .map(|(name, start)| (name, duration_micros(start)))
    }
}

/// Microseconds since `start`.
pub fn duration_micros(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Per-second log-line budget; lines over it are dropped and counted.
#[derive(Default)]
pub struct LogLimiter {
    window: Option<Instant>,
    in_window: u32,
    pub dropped: u64,
}

impl LogLimiter {
    /// Whether one more line may be written now.
    pub fn admit(&mut self, per_sec: u32) -> bool {
        let now = Instant::now();
        match self.window {
            Some(w) if now.duration_since(w).as_secs() < 1 => {}
            _ => {
                self.window = Some(now);
                self.in_window = 0;
            }
        }
        self.in_window += 1;
        let ok = self.in_window <= per_sec;
        if !ok {
            self.dropped += 1;
        }
        ok
    }
}

/// Guest stdout and stderr: the last [`MAX_GUEST_OUTPUT`] bytes are kept, older ones dropped
/// (never a trap), so a panic message can be shown in the session's end reason.
#[derive(Clone, Default)]
pub struct GuestOutput(Arc<Mutex<Vec<u8>>>);

impl GuestOutput {
    /// The last meaningful line written (a panic's message, not the backtrace hint that
    /// follows it), escaped for the terminal.
    pub fn last_line(&self) -> String {
        let buf = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let text = String::from_utf8_lossy(&buf);
        let line = text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with("note: "))
            .unwrap_or("");
        crate::session_host::escape(line)
    }
}

impl wasmtime_wasi::cli::IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let keep = buf.len().min(MAX_GUEST_OUTPUT);
        out.extend_from_slice(buf.get(buf.len() - keep..).unwrap_or_default());
        let excess = out.len().saturating_sub(MAX_GUEST_OUTPUT);
        out.drain(..excess);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
