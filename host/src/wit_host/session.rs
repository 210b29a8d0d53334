//! The `session` interface on [`SessionCtx`]: identity, config and assigns, data, timing,
//! traces, metrics, checks, logs, children, signals and nested scenarios.

use super::{Wt, optional_ms};
use crate::metrics::MetricKey;
use crate::plan::LogLevel;
use crate::session::state::SessionCtx;
use crate::session::{children, nested, signals};
use crate::util::jsonpath::{self, PathError};
use crate::util::{escape, random_below};
use crate::wit::session::{self, FlowError, LogLevel as WitLevel, SessionInfo, StateError};
use std::time::Duration;

/// Which value a path error is about, for a message that reads as one sentence.
#[derive(Clone, Copy)]
enum Store {
    Config,
    Assigns,
}

impl Store {
    fn missing(self, path: &str) -> String {
        match self {
            Store::Config => format!(
                "no config value at `{path}` (set it in the load-test file's config or with --config {path}=VALUE)"
            ),
            Store::Assigns => format!("nothing assigned at `{path}`"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Store::Config => "config",
            Store::Assigns => "assign",
        }
    }
}

fn state_error(store: Store, e: PathError) -> StateError {
    match e {
        PathError::Missing(p) => StateError::Missing(store.missing(&escape(&p))),
        other => StateError::Invalid(format!("{} {}", store.name(), other)),
    }
}

/// Refuses a JSON text over [`jsonpath::MAX_JSON`] before the host keeps or parses it.
fn json_fits(what: &str, text: &str) -> Result<(), FlowError> {
    if text.len() > jsonpath::MAX_JSON {
        return Err(FlowError::Capacity(format!(
            "a {what} of {} bytes is over the {} KiB limit",
            text.len(),
            jsonpath::MAX_JSON >> 10
        )));
    }
    Ok(())
}

fn parse_json(store: Store, path: &[String], text: &str) -> Result<serde_json::Value, StateError> {
    jsonpath::check(path).map_err(|e| state_error(store, e))?;
    if text.len() > jsonpath::MAX_JSON {
        return Err(StateError::Invalid(format!(
            "a {} value of {} bytes is over the {} KiB limit",
            store.name(),
            text.len(),
            jsonpath::MAX_JSON >> 10
        )));
    }
    serde_json::from_str(text).map_err(|e| {
        StateError::Invalid(format!(
            "the {} value at `{}` is not JSON: {e}",
            store.name(),
            escape(&jsonpath::display(path))
        ))
    })
}

/// Sets `text` at `path` of the config or the assigns, charging the growth to the session's
/// host memory first: past its cap the session ends `memory-limit`, naming the value.
fn set_value(
    ctx: &mut SessionCtx,
    store: Store,
    path: &[String],
    text: &str,
) -> Wt<Result<(), StateError>> {
    let value = match parse_json(store, path, text) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let root = match store {
        Store::Config => std::sync::Arc::make_mut(&mut ctx.config),
        Store::Assigns => &mut ctx.assigns,
    };
    // A new key costs its path; a replaced value gives its bytes back.
    let (replaced, new_path) = match jsonpath::get(root, path) {
        Ok(old) => (jsonpath::weight(old), 0),
        Err(_) => (0, path.iter().map(|k| k.len() as u64 + 32).sum()),
    };
    let held =
        (ctx.state_held.bytes() + jsonpath::weight(&value) + new_path).saturating_sub(replaced);
    let what = format!(
        "the {} value at `{}`",
        store.name(),
        escape(&jsonpath::display(path))
    );
    ctx.state_held
        .resize(&what, held)
        .map_err(wasmtime::Error::new)?;
    Ok(jsonpath::set(root, path, value).map_err(|e| state_error(store, e)))
}

impl session::Host for SessionCtx {
    async fn info(&mut self) -> Wt<SessionInfo> {
        let id = &self.identity;
        Ok(SessionInfo {
            id: id.id.clone(),
            parent_id: id.parent_id.clone(),
            scenario: self.scenario.name.to_string(),
            vu: id.vu,
            iteration: id.iteration,
        })
    }

    async fn config(&mut self, path: Vec<String>) -> Wt<Result<String, StateError>> {
        Ok(jsonpath::get(&self.config, &path)
            .map(ToString::to_string)
            .map_err(|e| state_error(Store::Config, e)))
    }

    async fn set_config(&mut self, path: Vec<String>, value: String) -> Wt<Result<(), StateError>> {
        set_value(self, Store::Config, &path, &value)
    }

    async fn assigned(&mut self, path: Vec<String>) -> Wt<Result<String, StateError>> {
        Ok(jsonpath::get(&self.assigns, &path)
            .map(ToString::to_string)
            .map_err(|e| state_error(Store::Assigns, e)))
    }

    async fn assign(&mut self, path: Vec<String>, value: String) -> Wt<Result<(), StateError>> {
        set_value(self, Store::Assigns, &path, &value)
    }

    async fn delete_assign(&mut self, path: Vec<String>) -> Wt<()> {
        let freed = jsonpath::get(&self.assigns, &path).map_or(0, jsonpath::weight);
        // An over-long path names nothing that can exist, so there is nothing to delete.
        if jsonpath::delete(&mut self.assigns, &path).is_ok() {
            let held = self.state_held.bytes().saturating_sub(freed);
            let _ = self.state_held.resize("assigns", held);
        }
        Ok(())
    }

    async fn setup_data(&mut self) -> Wt<Option<String>> {
        let visible = self.scenario.sees_setup_data();
        Ok(visible
            .then(|| self.scenario.run.setup_data.get().cloned())
            .flatten())
    }

    async fn feed(&mut self, dataset: String) -> Wt<Result<String, StateError>> {
        let Some(set) = self.scenario.data.get(&dataset) else {
            let name = escape(&dataset);
            return Ok(Err(StateError::Missing(format!(
                "no data set `{name}` in this load test (add [data.{name}] to the load-test file)"
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
        if let Some(wait) = self.deadline.clamp(Duration::from_millis(u64::from(ms))) {
            tokio::time::sleep(wait).await;
        }
        self.mark.host_returned();
        Ok(())
    }

    async fn random(&mut self, bound: u32) -> Wt<u32> {
        Ok(random_below(bound))
    }

    async fn trace_begin(&mut self, name: String) -> Wt<u32> {
        match self.traces.begin(name) {
            Some(token) => Ok(token),
            None => Err(wasmtime::Error::msg(
                "resource limit: too many traced calls open at once",
            )),
        }
    }

    async fn trace_end(&mut self, token: u32, ok: bool) -> Wt<()> {
        if let Some((name, micros)) = self.traces.end(token) {
            let key = MetricKey::custom(&name);
            self.scenario.sink.duration(&key, micros);
            if !ok {
                self.scenario.sink.error(&key, "failed");
            }
        }
        Ok(())
    }

    async fn record_metric(&mut self, name: String, value: u32) -> Wt<()> {
        let key = MetricKey::custom(&name);
        self.scenario.sink.duration(&key, u64::from(value));
        Ok(())
    }

    async fn check(&mut self, name: String, passed: bool) -> Wt<()> {
        self.scenario.sink.check(&name, passed);
        Ok(())
    }

    async fn log(&mut self, level: WitLevel, message: String) -> Wt<()> {
        let level = match level {
            WitLevel::Debug => LogLevel::Debug,
            WitLevel::Info => LogLevel::Info,
            WitLevel::Warn => LogLevel::Warn,
            WitLevel::Error => LogLevel::Error,
        };
        if level < self.scenario.log_level {
            return Ok(());
        }
        let admission = self.logs.admit(self.scenario.limits.log_lines_per_sec);
        let (id, scenario) = (&self.identity.id, &self.scenario.name);
        if admission.dropped_before > 0 {
            let per_sec = self.scenario.limits.log_lines_per_sec;
            let n = admission.dropped_before;
            eprintln!("[warn] {id} {scenario} | {n} log line(s) dropped (over {per_sec}/s)");
        }
        if admission.write {
            let level = format!("{level:?}").to_lowercase();
            eprintln!("[{level}] {id} {scenario} | {}", escape(&message));
        }
        Ok(())
    }

    async fn spawn(
        &mut self,
        function: String,
        args: String,
        task: String,
    ) -> Wt<Result<String, FlowError>> {
        Ok(json_fits("spawn args", &args)
            .and_then(|()| children::spawn(self, function, args, task)))
    }

    async fn spread(
        &mut self,
        function: String,
        args: String,
        count: u32,
        interval_ms: u32,
        task: String,
    ) -> Wt<Result<(), FlowError>> {
        Ok(json_fits("spread args", &args)
            .and_then(|()| children::spread(self, function, args, count, interval_ms, task)))
    }

    async fn await_task(
        &mut self,
        task: String,
        timeout_ms: Option<u32>,
    ) -> Wt<Vec<Result<String, FlowError>>> {
        let r = children::await_task(self, &task, optional_ms(timeout_ms)).await;
        self.mark.host_returned();
        Ok(r)
    }

    async fn await_all(&mut self, timeout_ms: Option<u32>) -> Wt<Vec<Result<String, FlowError>>> {
        let r = children::await_all(self, optional_ms(timeout_ms)).await;
        self.mark.host_returned();
        Ok(r)
    }

    async fn signal(&mut self, task: String, value: String) -> Wt<Result<(), FlowError>> {
        Ok(json_fits("signal value", &value).and_then(|()| signals::signal(self, &task, value)))
    }

    async fn signal_parent(&mut self, value: String) -> Wt<Result<(), FlowError>> {
        Ok(json_fits("signal value", &value).and_then(|()| signals::signal_parent(self, value)))
    }

    async fn await_signal(
        &mut self,
        expected: Option<String>,
        timeout_ms: Option<u32>,
    ) -> Wt<Result<String, FlowError>> {
        let wait = optional_ms(timeout_ms).unwrap_or(self.scenario.limits.recv_timeout);
        let r = match self.deadline.clamp(wait) {
            Some(wait) => signals::await_signal(self, expected, wait).await,
            None => Err(FlowError::Timeout),
        };
        self.mark.host_returned();
        Ok(r)
    }

    async fn run_scenario(
        &mut self,
        name: String,
        config: String,
        merge: bool,
    ) -> Wt<Result<String, FlowError>> {
        let r = nested::run_scenario(self, &name, config, merge).await;
        self.mark.host_returned();
        Ok(r)
    }
}
