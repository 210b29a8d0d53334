//! The host side of the WIT imports: session state, timing and logging, HTTP and WebSocket.
//!
//! Every function is async (a waiting session parks its fiber, holding no thread) and returns
//! the WIT result types; a trap (`Err` of the outer `wasmtime::Result`) is reserved for host
//! invariants such as an unknown resource handle.

use crate::bindings::http::{self, Request, Response};
use crate::bindings::session::{self, FlowError, LogLevel as WitLevel, SessionInfo, StateError};
use crate::bindings::websocket::{self, ConnectOptions, Message};
use crate::bindings::{RequestError, chaperon::scenario::types};
use crate::jsonpath::{self, PathError};
use crate::limits::{MAX_LOG_LINE, MAX_METRIC_NAME};
use crate::state::{LogLevel, VuState, duration_micros};
use crate::websocket::WsConnection;
use std::time::{Duration, Instant};
use wasmtime::component::Resource;

type Wt<T> = wasmtime::Result<T>;

/// Makes untrusted text safe for a terminal: control characters (ANSI/OSC escapes included)
/// are shown as `\u{..}`, and the text is cut at [`MAX_LOG_LINE`] bytes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_LOG_LINE));
    for c in s.chars() {
        if out.len() >= MAX_LOG_LINE {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    out
}

/// Cuts a guest-chosen metric name to [`MAX_METRIC_NAME`] bytes (on a char boundary).
fn metric_name(s: String) -> String {
    if s.len() <= MAX_METRIC_NAME {
        return s;
    }
    let mut end = MAX_METRIC_NAME;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn state_error(e: PathError) -> StateError {
    match e {
        PathError::Missing(p) => StateError::Missing(format!("no config value at `{p}`")),
        other => StateError::Invalid(other.to_string()),
    }
}

fn parse_json(text: &str) -> Result<serde_json::Value, StateError> {
    serde_json::from_str(text).map_err(|e| StateError::Invalid(format!("not JSON: {e}")))
}

impl types::Host for VuState {}

impl session::Host for VuState {
    async fn info(&mut self) -> Wt<SessionInfo> {
        let id = &self.identity;
        Ok(SessionInfo {
            id: id.id.clone(),
            parent_id: id.parent_id.clone(),
            scenario: self.shared.scenario.to_string(),
            vu: id.vu,
            iteration: id.iteration,
        })
    }

    async fn config(&mut self, path: Vec<String>) -> Wt<Result<String, StateError>> {
        Ok(jsonpath::get(&self.config, &path)
            .map(ToString::to_string)
            .map_err(state_error))
    }

    async fn set_config(&mut self, path: Vec<String>, value: String) -> Wt<Result<(), StateError>> {
        Ok(parse_json(&value)
            .and_then(|v| jsonpath::set(&mut self.config, &path, v).map_err(state_error)))
    }

    async fn assigned(&mut self, path: Vec<String>) -> Wt<Result<String, StateError>> {
        Ok(jsonpath::get(&self.assigns, &path)
            .map(ToString::to_string)
            .map_err(|e| match e {
                PathError::Missing(p) => StateError::Missing(format!("nothing assigned at `{p}`")),
                other => StateError::Invalid(other.to_string()),
            }))
    }

    async fn assign(&mut self, path: Vec<String>, value: String) -> Wt<Result<(), StateError>> {
        Ok(parse_json(&value)
            .and_then(|v| jsonpath::set(&mut self.assigns, &path, v).map_err(state_error)))
    }

    async fn delete_assign(&mut self, path: Vec<String>) -> Wt<()> {
        jsonpath::delete(&mut self.assigns, &path);
        Ok(())
    }

    async fn setup_data(&mut self) -> Wt<Option<String>> {
        Ok(self.shared.setup_data.get().cloned())
    }

    async fn feed(&mut self, dataset: String) -> Wt<Result<String, StateError>> {
        let Some(set) = self.shared.data.get(&dataset) else {
            return Ok(Err(StateError::Missing(format!(
                "no data set `{}` in this load test (add [data.{}] to the load-test file)",
                escape(&dataset),
                escape(&dataset)
            ))));
        };
        Ok(set
            .take(self.identity.vu, random_below)
            .map(str::to_owned)
            .map_err(|_| {
                StateError::Exhausted(format!("data set `{}` has no records left", set.name()))
            }))
    }

    async fn delay(&mut self, ms: u32) -> Wt<()> {
        tokio::time::sleep(Duration::from_millis(u64::from(ms))).await;
        self.host_returned();
        Ok(())
    }

    async fn random(&mut self, bound: u32) -> Wt<u32> {
        Ok(random_below(bound))
    }

    async fn trace_begin(&mut self, name: String) -> Wt<u32> {
        match self.traces.begin(metric_name(name)) {
            Some(token) => Ok(token),
            None => Err(wasmtime::Error::msg(
                "resource limit: too many traced calls open at once",
            )),
        }
    }

    async fn trace_end(&mut self, token: u32, ok: bool) -> Wt<()> {
        if let Some((name, micros)) = self.traces.end(token) {
            self.shared.recorder.record(&name, micros);
            if !ok {
                self.shared.recorder.record_error(&name, "failed");
            }
        }
        Ok(())
    }

    async fn record_metric(&mut self, name: String, value: u32) -> Wt<()> {
        self.shared
            .recorder
            .record(&metric_name(name), u64::from(value));
        Ok(())
    }

    async fn check(&mut self, name: String, passed: bool) -> Wt<()> {
        self.shared.recorder.check(&metric_name(name), passed);
        Ok(())
    }

    async fn log(&mut self, level: WitLevel, message: String) -> Wt<()> {
        let level = match level {
            WitLevel::Debug => LogLevel::Debug,
            WitLevel::Info => LogLevel::Info,
            WitLevel::Warn => LogLevel::Warn,
            WitLevel::Error => LogLevel::Error,
        };
        if level >= self.shared.log_level && self.logs.admit(self.shared.limits.log_lines_per_sec) {
            eprintln!(
                "[{}] {} {} | {}",
                format!("{level:?}").to_lowercase(),
                self.identity.id,
                self.shared.scenario,
                escape(&message)
            );
        }
        Ok(())
    }

    async fn spawn(
        &mut self,
        function: String,
        args: String,
        task: String,
    ) -> Wt<Result<String, FlowError>> {
        Ok(crate::children::spawn(self, function, args, task))
    }

    async fn spread(
        &mut self,
        function: String,
        args: String,
        count: u32,
        interval_ms: u32,
        task: String,
    ) -> Wt<Result<(), FlowError>> {
        Ok(crate::children::spread(
            self,
            function,
            args,
            count,
            interval_ms,
            task,
        ))
    }

    async fn await_task(
        &mut self,
        task: String,
        timeout_ms: u32,
    ) -> Wt<Vec<Result<String, FlowError>>> {
        let r = crate::children::await_task(self, &task, optional_ms(timeout_ms)).await;
        self.host_returned();
        Ok(r)
    }

    async fn await_all(&mut self, timeout_ms: u32) -> Wt<Vec<Result<String, FlowError>>> {
        let r = crate::children::await_all(self, optional_ms(timeout_ms)).await;
        self.host_returned();
        Ok(r)
    }

    async fn signal(&mut self, task: String, value: String) -> Wt<Result<(), FlowError>> {
        Ok(crate::children::signal(self, &task, value))
    }

    async fn signal_parent(&mut self, value: String) -> Wt<Result<(), FlowError>> {
        Ok(crate::children::signal_parent(self, value))
    }

    async fn await_signal(
        &mut self,
        expected: Option<String>,
        timeout_ms: u32,
    ) -> Wt<Result<String, FlowError>> {
        let timeout = self.recv_timeout(timeout_ms);
        let r = crate::children::await_signal(self, expected, timeout).await;
        self.host_returned();
        Ok(r)
    }

    async fn run_scenario(
        &mut self,
        name: String,
        config: String,
        merge: bool,
    ) -> Wt<Result<String, FlowError>> {
        let r = crate::nested::run_scenario(self, &name, config, merge).await;
        self.host_returned();
        Ok(r)
    }
}

/// A WIT timeout where 0 means "until the session deadline".
fn optional_ms(ms: u32) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(u64::from(ms)))
}

/// A uniformly distributed number in `[0, bound)` from a per-thread xorshift generator seeded
/// from the OS (scenario randomness, not cryptography).
pub fn random_below(bound: u32) -> u32 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(seed());
    }
    if bound == 0 {
        return 0;
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        u32::try_from(((x >> 32) * u64::from(bound)) >> 32).unwrap_or(0)
    })
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(duration_micros(Instant::now() - Duration::from_millis(1)));
    h.finish() | 1
}

impl http::Host for VuState {
    async fn send(&mut self, request: Request) -> Wt<Result<Response, RequestError>> {
        let r = crate::http_client::send(&self.shared, &mut self.http, request).await;
        self.host_returned();
        Ok(r)
    }

    async fn batch(&mut self, requests: Vec<Request>) -> Wt<Vec<Result<Response, RequestError>>> {
        let r = crate::http_client::batch(&self.shared, &mut self.http, requests).await;
        self.host_returned();
        Ok(r)
    }
}

impl websocket::Host for VuState {}

impl VuState {
    fn ws(&mut self, handle: &Resource<WsConnection>) -> Wt<&mut WsConnection> {
        Ok(self.table.get_mut(handle)?)
    }

    fn recv_timeout(&self, ms: u32) -> Duration {
        if ms == 0 {
            self.shared.limits.recv_timeout
        } else {
            Duration::from_millis(u64::from(ms))
        }
    }

    /// Times a WebSocket action under `key`, counting its error kind on failure.
    fn record_ws<T>(&self, key: &str, start: Instant, r: &Result<T, RequestError>) {
        match r {
            Ok(_) => self.shared.recorder.record(key, duration_micros(start)),
            Err(e) => self
                .shared
                .recorder
                .record_error(key, crate::outcome::request_error_kind(e)),
        }
    }

    async fn ws_send(
        &mut self,
        handle: Resource<WsConnection>,
        msg: tokio_tungstenite::tungstenite::Message,
    ) -> Wt<Result<(), RequestError>> {
        let start = Instant::now();
        let timeout = self.shared.limits.request_timeout;
        let r = self.ws(&handle)?.send(msg, timeout).await;
        self.host_returned();
        self.record_ws("ws_send", start, &r);
        Ok(r)
    }
}

/// The metric key of a WebSocket connect: `ws_connect {metric-name or path}`.
fn ws_connect_key(shared: &crate::state::RunShared, url: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("ws_connect {}", metric_name(name.to_owned())),
        None => match crate::http_client::resolve(shared.base_url.as_ref(), url, true) {
            Ok(u) => format!("ws_connect {}", u.path()),
            Err(_) => "ws_connect".to_owned(),
        },
    }
}

impl websocket::HostConnection for VuState {
    async fn connect(
        &mut self,
        url: String,
        options: ConnectOptions,
    ) -> Wt<Result<Resource<WsConnection>, RequestError>> {
        let key = ws_connect_key(&self.shared, &url, options.metric_name.as_deref());
        if self.ws_open >= self.shared.limits.ws_connections {
            self.shared
                .recorder
                .record_error(&key, "too-many-connections");
            return Ok(Err(RequestError::TooManyConnections));
        }
        let start = Instant::now();
        let cookies = self.http.cookie_header();
        let r = crate::websocket::connect(&self.shared, cookies, &url, &options).await;
        self.host_returned();
        match r {
            Ok(conn) => {
                self.shared.recorder.record(&key, duration_micros(start));
                self.ws_open += 1;
                Ok(Ok(self.table.push(conn)?))
            }
            Err(e) => {
                self.shared
                    .recorder
                    .record_error(&key, crate::outcome::request_error_kind(&e));
                Ok(Err(e))
            }
        }
    }

    async fn send_text(
        &mut self,
        handle: Resource<WsConnection>,
        text: String,
    ) -> Wt<Result<(), RequestError>> {
        self.ws_send(handle, tokio_tungstenite::tungstenite::Message::text(text))
            .await
    }

    async fn send_binary(
        &mut self,
        handle: Resource<WsConnection>,
        data: Vec<u8>,
    ) -> Wt<Result<(), RequestError>> {
        self.ws_send(
            handle,
            tokio_tungstenite::tungstenite::Message::binary(data),
        )
        .await
    }

    async fn recv(
        &mut self,
        handle: Resource<WsConnection>,
        timeout_ms: u32,
    ) -> Wt<Result<Message, RequestError>> {
        let start = Instant::now();
        let timeout = self.recv_timeout(timeout_ms);
        let r = self.ws(&handle)?.recv(timeout).await;
        self.host_returned();
        self.record_ws("ws_recv", start, &r);
        Ok(r)
    }

    async fn await_recv(
        &mut self,
        handle: Resource<WsConnection>,
        expected: Message,
        timeout_ms: u32,
    ) -> Wt<Result<(), RequestError>> {
        let start = Instant::now();
        let timeout = self.recv_timeout(timeout_ms);
        let r = self.ws(&handle)?.await_recv(&expected, timeout).await;
        self.host_returned();
        self.record_ws("ws_await_recv", start, &r);
        Ok(r)
    }

    async fn close(
        &mut self,
        handle: Resource<WsConnection>,
        code: u16,
        reason: String,
    ) -> Wt<Result<(), RequestError>> {
        let r = self.ws(&handle)?.close(code, reason).await;
        self.host_returned();
        Ok(r)
    }

    async fn drop(&mut self, handle: Resource<WsConnection>) -> Wt<()> {
        self.table.delete(handle)?;
        self.ws_open = self.ws_open.saturating_sub(1);
        Ok(())
    }
}
