//! [`Session`]: the virtual user's handle on the host, with identity, config, assigns, timing,
//! metrics, logging and control flow. HTTP and WebSocket methods live in `http.rs` and
//! `websocket.rs`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result, flow_error, state_error};
use crate::wit::chaperon::scenario::session as host;
use crate::wit::chaperon::scenario::session::{LogLevel, SessionInfo, StateError};
use crate::wit::chaperon::scenario::types::ScenarioError;
use crate::wit::chaperon::scenario::websocket::Connection;

/// One virtual user: everything a scenario does goes through its `Session`.
///
/// The SDK creates it; scenario code receives `&mut Session` in every [`Scenario`](crate::Scenario)
/// function. The host keeps the real state (config, assigns, metrics, cookies); the `Session`
/// itself only holds the open WebSocket connections, so they live from `init` through `run` to
/// `teardown`.
///
/// Names follow Elixir Chaperon: `session |> get("/") |> ws_send("x")` becomes
/// `s.get("/")?; s.ws_send("x")?;`.
pub struct Session {
    /// Open WebSocket connections by name; the default connection is named `""`.
    pub(crate) connections: BTreeMap<String, Connection>,
    /// Set by [`Session::abort`]; reported when the current export returns.
    pub(crate) aborted: Option<String>,
}

thread_local! {
    /// The instance's one session (an instance is one virtual user, and is never re-entered).
    static SESSION: RefCell<Session> = const {
        RefCell::new(Session { connections: BTreeMap::new(), aborted: None })
    };
}

/// Runs `f` with the instance's session.
pub(crate) fn with_session<R>(f: impl FnOnce(&mut Session) -> R) -> R {
    SESSION.with_borrow_mut(f)
}

/// `"ping_pong.iterations"` → `["ping_pong", "iterations"]`; `""` → `[]`.
pub(crate) fn split_path(path: &str) -> Vec<String> {
    if path.is_empty() {
        Vec::new()
    } else {
        path.split('.').map(str::to_owned).collect()
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    Ok(serde_json::to_string(value)?)
}

fn from_json<T: DeserializeOwned>(what: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Json(format!("{what}: {e}")))
}

impl Session {
    /// Turns the result of a scenario function into what the host expects, reporting an
    /// [`abort`](Session::abort) even if the function then returned `Ok`.
    pub(crate) fn finish<T>(
        &mut self,
        result: Result<T>,
    ) -> core::result::Result<T, ScenarioError> {
        let aborted = self.aborted.take();
        match (result, aborted) {
            (Err(Error::Aborted(reason)), _) | (_, Some(reason)) => {
                Err(ScenarioError::Aborted(reason))
            }
            (Err(e), None) => Err(ScenarioError::Failed(e.to_string())),
            (Ok(value), None) => Ok(value),
        }
    }

    // ---------------------------------------------------------------- identity

    /// Who this session is (id, parent id, scenario name, virtual-user number, iteration).
    pub fn info(&self) -> SessionInfo {
        host::info()
    }

    /// Unique id of this session.
    pub fn id(&self) -> String {
        host::info().id
    }

    /// Id of the parent session, for async children and spreads.
    pub fn parent_id(&self) -> Option<String> {
        host::info().parent_id
    }

    /// Virtual-user number, 0-based and dense within the scenario.
    pub fn vu(&self) -> u32 {
        host::info().vu
    }

    /// Iteration number of this virtual user, 0-based.
    pub fn iteration(&self) -> u32 {
        host::info().iteration
    }

    /// Name of the scenario (the `[[scenario]] name` of the load-test file).
    pub fn scenario_name(&self) -> String {
        host::info().scenario
    }

    // ---------------------------------------------------------------- config and assigns

    /// The config value at a dotted `path`, converted to `T`.
    ///
    /// A missing value is an [`Error::State`]; use [`config_or`](Session::config_or) for
    /// optional settings.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let iterations: u32 = s.config("ping_pong.iterations")?;
    /// # Ok(()) }
    /// ```
    pub fn config<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let what = format!("config {path}");
        let json = host::config(&split_path(path)).map_err(|e| state_error(&what, e))?;
        from_json(&what, &json)
    }

    /// The config value at `path`, or `default` when there is none. A value of the wrong type
    /// also gives `default`, with a warning in the log.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) {
    /// let items: u32 = s.config_or("http_basic.items", 3);
    /// # }
    /// ```
    pub fn config_or<T: DeserializeOwned>(&self, path: &str, default: T) -> T {
        match host::config(&split_path(path)) {
            Err(StateError::Missing(_)) => default,
            Err(e) => {
                self.log_warn(format!(
                    "{}; using the default",
                    state_error(&format!("config {path}"), e)
                ));
                default
            }
            Ok(json) => from_json(&format!("config {path}"), &json).unwrap_or_else(|e| {
                self.log_warn(format!("{e}; using the default"));
                default
            }),
        }
    }

    /// Sets the config value at `path` for this session only.
    pub fn set_config(&mut self, path: &str, value: impl Serialize) -> Result {
        let json = to_json(&value)?;
        host::set_config(&split_path(path), &json)
            .map_err(|e| state_error(&format!("set_config {path}"), e))
    }

    /// Assigns `value` at a dotted `path`, creating intermediate objects (namespaces).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.assign("auth.token", "abc123")?;
    /// let token: String = s.assigned("auth.token")?;
    /// # Ok(()) }
    /// ```
    pub fn assign(&mut self, path: &str, value: impl Serialize) -> Result {
        let json = to_json(&value)?;
        host::assign(&split_path(path), &json)
            .map_err(|e| state_error(&format!("assign {path}"), e))
    }

    /// The assigned value at `path`, converted to `T`; `""` gives all assigns as one object.
    pub fn assigned<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let what = format!("assigned {path}");
        let json = host::assigned(&split_path(path)).map_err(|e| state_error(&what, e))?;
        from_json(&what, &json)
    }

    /// Replaces the value at `path` with `f(old)`; `old` is `None` when nothing is assigned.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.update_assign("stats.logins", |old| json!(old.and_then(|v| v.as_u64()).unwrap_or(0) + 1))?;
    /// # Ok(()) }
    /// ```
    pub fn update_assign(&mut self, path: &str, f: impl FnOnce(Option<Value>) -> Value) -> Result {
        let old = match host::assigned(&split_path(path)) {
            Ok(json) => Some(from_json(&format!("assigned {path}"), &json)?),
            Err(StateError::Missing(_)) => None,
            Err(e) => return Err(state_error(&format!("assigned {path}"), e)),
        };
        self.assign(path, f(old))
    }

    /// Removes the value at `path`; removing a missing value is not an error.
    pub fn delete_assign(&mut self, path: &str) {
        host::delete_assign(&split_path(path));
    }

    /// The result of the load test's setup function, if it has one (and it converts to `T`).
    pub fn setup_data<T: DeserializeOwned>(&self) -> Option<T> {
        let json = host::setup_data()?;
        match from_json("setup_data", &json) {
            Ok(value) => Some(value),
            Err(e) => {
                self.log_warn(e.to_string());
                None
            }
        }
    }

    /// The next record of a data set named in the load-test file.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let user: Value = s.feed("users")?;
    /// s.post_json("/login", &json!({ "name": user["name"], "password": user["password"] }))?;
    /// # Ok(()) }
    /// ```
    pub fn feed<T: DeserializeOwned>(&mut self, dataset: &str) -> Result<T> {
        let what = format!("feed {dataset}");
        let json = host::feed(dataset).map_err(|e| state_error(&what, e))?;
        from_json(&what, &json)
    }

    // ---------------------------------------------------------------- time and randomness

    /// Waits `ms` milliseconds (the host parks the session; no thread is held).
    pub fn delay(&mut self, ms: u32) {
        host::delay(ms);
    }

    /// Waits a uniformly random time in `0..=max_ms` milliseconds.
    pub fn random_delay(&mut self, max_ms: u32) {
        let ms = self.random(max_ms.saturating_add(1));
        self.delay(ms);
    }

    /// A uniformly random number in `0..bound` (0 when `bound` is 0).
    pub fn random(&self, bound: u32) -> u32 {
        host::random(bound)
    }

    // ---------------------------------------------------------------- control flow

    /// Runs `f` (a scenario step) untraced; Chaperon's `call`.
    pub fn call<T>(&mut self, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        f(self)
    }

    /// Runs `f` and records its duration under the metric `call {name}` (an error counts as a
    /// failed call); Chaperon's `call_traced`.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.call_traced("login", |s| {
    ///     s.post_json("/login", &json!({ "user": "alice" }))?;
    ///     Ok(())
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn call_traced<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        self.time(&format!("call {name}"), f)
    }

    /// Runs `f` `n` times, untraced; stops at the first error and returns it.
    pub fn repeat(&mut self, n: u32, mut f: impl FnMut(&mut Session) -> Result) -> Result {
        for _ in 0..n {
            f(self)?;
        }
        Ok(())
    }

    /// Runs `f` `n` times, recording one `call {name}` sample per iteration; stops at the first
    /// error and returns it.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.repeat_traced("ping_pong", 10, |s| {
    ///     s.ws_send("ping")?;
    ///     s.ws_await_recv("pong")
    /// })
    /// # }
    /// ```
    pub fn repeat_traced(
        &mut self,
        name: &str,
        n: u32,
        mut f: impl FnMut(&mut Session) -> Result,
    ) -> Result {
        let metric = format!("call {name}");
        for _ in 0..n {
            self.time(&metric, &mut f)?;
        }
        Ok(())
    }

    /// Runs `f` over and over for `duration_ms`, recording one `call {name}` sample per
    /// iteration; Chaperon's `loop`. The first iteration always runs; the loop stops once more
    /// than `duration_ms` has passed since it started (so the last iteration may overrun), or
    /// at the first error, which it returns.
    pub fn loop_for(
        &mut self,
        name: &str,
        duration_ms: u32,
        mut f: impl FnMut(&mut Session) -> Result,
    ) -> Result {
        let metric = format!("call {name}");
        let duration = Duration::from_millis(duration_ms.into());
        let start = Instant::now();
        loop {
            self.time(&metric, &mut f)?;
            if start.elapsed() > duration {
                return Ok(());
            }
        }
    }

    /// Runs `f`, and on an error runs it again up to `retries` more times, waiting `delay_ms`
    /// between attempts; returns the last error if every attempt failed. An
    /// [`Error::Aborted`] is returned at once, never retried.
    ///
    /// Unlike Chaperon (where `retries: 1` means one attempt), `retries` counts the retries
    /// *after* the first attempt: `retry_on_error(2, ..)` makes at most 3 attempts.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let body = s.retry_on_error(2, 500, |s| Ok(s.get("/flaky")?.text()))?;
    /// # Ok(()) }
    /// ```
    pub fn retry_on_error<T>(
        &mut self,
        retries: u32,
        delay_ms: u32,
        mut f: impl FnMut(&mut Session) -> Result<T>,
    ) -> Result<T> {
        let mut attempt = 0;
        loop {
            match f(self) {
                Ok(value) => return Ok(value),
                Err(e @ Error::Aborted(_)) => return Err(e),
                Err(e) if attempt >= retries => return Err(e),
                Err(e) => {
                    attempt += 1;
                    self.log_warn(format!("retry {attempt}/{retries} after error: {e}"));
                    self.delay(delay_ms);
                }
            }
        }
    }

    /// Runs `f` and records its duration under `metric` (an error counts as a failed sample);
    /// Chaperon's `time`.
    pub fn time<T>(
        &mut self,
        metric: &str,
        f: impl FnOnce(&mut Session) -> Result<T>,
    ) -> Result<T> {
        let token = host::trace_begin(metric);
        let result = f(self);
        host::trace_end(token, result.is_ok());
        result
    }

    /// Counts the check `name` as passed or failed, and returns `passed`.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let res = s.get("/")?;
    /// s.check("home is 200", res.status == 200);
    /// # Ok(()) }
    /// ```
    pub fn check(&mut self, name: &str, passed: bool) -> bool {
        host::check(name, passed);
        passed
    }

    /// Records a custom sample `value` under `metric` (µs, or whatever unit the name implies).
    pub fn record(&mut self, metric: &str, value: u32) {
        host::record_metric(metric, value);
    }

    /// Ends the scenario on purpose: returns an [`Error::Aborted`] to propagate with
    /// `return Err(s.abort(..))`. The session is reported as aborted with `reason` (not as
    /// failed), even if the error is dropped; `teardown` still runs.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// if s.get("/maintenance")?.status == 200 {
    ///     return Err(s.abort("target is in maintenance mode"));
    /// }
    /// # Ok(()) }
    /// ```
    pub fn abort(&mut self, reason: impl Into<String>) -> Error {
        let reason = reason.into();
        self.aborted = Some(reason.clone());
        Error::Aborted(reason)
    }

    // ---------------------------------------------------------------- logging

    /// Logs at debug level; the host prefixes the session id and scenario name.
    pub fn log_debug(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Debug, message.as_ref());
    }

    /// Logs at info level.
    pub fn log_info(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Info, message.as_ref());
    }

    /// Logs at warn level.
    pub fn log_warn(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Warn, message.as_ref());
    }

    /// Logs at error level.
    pub fn log_error(&self, message: impl AsRef<str>) {
        host::log(LogLevel::Error, message.as_ref());
    }

    // ---------------------------------------------------------------- async children and signals

    /// Starts an async child session that runs `invoke(function, args)` on a fresh instance of
    /// this scenario, registered under the task name `function`; Chaperon's `async`.
    /// Returns what the host returns for the child (its task registration).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.spawn("poll_status", json!({ "every_ms": 500 }))?;
    /// let results = s.await_task("poll_status")?;
    /// # Ok(()) }
    /// ```
    pub fn spawn(&mut self, function: &str, args: impl Serialize) -> Result<String> {
        self.spawn_named("", function, args)
    }

    /// Like [`spawn`](Session::spawn), registered under the task name `task`.
    pub fn spawn_named(
        &mut self,
        task: &str,
        function: &str,
        args: impl Serialize,
    ) -> Result<String> {
        let args = to_json(&args)?;
        host::spawn(function, &args, task).map_err(|e| flow_error(&format!("spawn {function}"), e))
    }

    /// Starts `count` children running `function` (with `null` args), evenly spread over
    /// `interval_ms`, under `task` (or `function` when empty); Chaperon's `cc_spread`.
    /// Returns at once; wait for them with [`await_task`](Session::await_task).
    pub fn cc_spread(
        &mut self,
        function: &str,
        count: u32,
        interval_ms: u32,
        task: &str,
    ) -> Result {
        self.spread(function, Value::Null, count, interval_ms, task)
    }

    /// Like [`cc_spread`](Session::cc_spread), passing `args` to every child.
    pub fn spread(
        &mut self,
        function: &str,
        args: impl Serialize,
        count: u32,
        interval_ms: u32,
        task: &str,
    ) -> Result {
        let args = to_json(&args)?;
        host::spread(function, &args, count, interval_ms, task)
            .map_err(|e| flow_error(&format!("spread {function}"), e))
    }

    /// Waits (up to the host's default timeout) for every child registered under `task`;
    /// returns their results in order, or the first child failure as [`Error::Flow`].
    pub fn await_task(&mut self, task: &str) -> Result<Vec<Value>> {
        collect_children(&format!("await_task {task}"), host::await_task(task, None))
    }

    /// Like [`await_task`](Session::await_task), waiting at most `timeout_ms`.
    pub fn await_task_timeout(&mut self, task: &str, timeout_ms: u32) -> Result<Vec<Value>> {
        collect_children(
            &format!("await_task {task}"),
            host::await_task(task, Some(timeout_ms)),
        )
    }

    /// Waits (up to the host's default timeout) for every child of this session.
    pub fn await_all(&mut self) -> Result<Vec<Value>> {
        collect_children("await_all", host::await_all(None))
    }

    /// Like [`await_all`](Session::await_all), waiting at most `timeout_ms`.
    pub fn await_all_timeout(&mut self, timeout_ms: u32) -> Result<Vec<Value>> {
        collect_children("await_all", host::await_all(Some(timeout_ms)))
    }

    /// Sends `value` to every child registered under `task`.
    pub fn signal(&mut self, task: &str, value: impl Serialize) -> Result {
        let value = to_json(&value)?;
        host::signal(task, &value).map_err(|e| flow_error(&format!("signal {task}"), e))
    }

    /// Sends `value` to the parent session.
    pub fn signal_parent(&mut self, value: impl Serialize) -> Result {
        let value = to_json(&value)?;
        host::signal_parent(&value).map_err(|e| flow_error("signal_parent", e))
    }

    /// Waits up to `timeout_ms` (`None`: the load test's receive timeout) for a signal equal
    /// to `expected`; other signals stay queued.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.await_signal("go", Some(5_000))?;
    /// # Ok(()) }
    /// ```
    pub fn await_signal(
        &mut self,
        expected: impl Serialize,
        timeout_ms: Option<u32>,
    ) -> Result<Value> {
        let expected = to_json(&expected)?;
        let value = host::await_signal(Some(&expected), timeout_ms)
            .map_err(|e| flow_error("await_signal", e))?;
        from_json("signal", &value)
    }

    /// Waits up to `timeout_ms` (`None`: the load test's receive timeout) for any signal and
    /// returns it.
    pub fn await_any_signal(&mut self, timeout_ms: Option<u32>) -> Result<Value> {
        let value =
            host::await_signal(None, timeout_ms).map_err(|e| flow_error("await_any_signal", e))?;
        from_json("signal", &value)
    }

    /// Runs the scenario `name` of this load test as a nested session and waits for it.
    /// Its config: the named scenario's own config from the load-test file, then this
    /// session's config when `merge` is true, then `config` (the rule sequences follow).
    /// The nested scenario's assigns are merged back into this session and also returned.
    pub fn run_scenario(
        &mut self,
        name: &str,
        config: impl Serialize,
        merge: bool,
    ) -> Result<Value> {
        let config = to_json(&config)?;
        let assigns = host::run_scenario(name, &config, merge)
            .map_err(|e| flow_error(&format!("run_scenario {name}"), e))?;
        from_json(&format!("run_scenario {name}"), &assigns)
    }
}

fn collect_children(
    what: &str,
    results: Vec<core::result::Result<String, host::FlowError>>,
) -> Result<Vec<Value>> {
    results
        .into_iter()
        .map(|r| {
            let json = r.map_err(|e| flow_error(what, e))?;
            from_json(what, &json)
        })
        .collect()
}
