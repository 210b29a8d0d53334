//! Scenarios inside sessions: `run_scenario`, sequences, and the load test's setup/teardown.
//!
//! A nested run is a fresh instance of the named scenario's component that runs `init`, `run`
//! and `teardown` while its caller waits. One rule for its config, the same for `run_scenario`
//! and sequence steps (Chaperon's): the named scenario's own config (from the load-test file),
//! then the caller's config when merging, then the config given to the call. It starts from the
//! caller's assigns and a copy of its cookies; when it completes, its assigns are merged back
//! (nested values win), its cookies replace the caller's, and its config is not copied back.
//! The scenario's start delay is not applied again. Its duration is recorded as
//! `run_scenario {name}`. Names resolve among the scenarios of the caller's own load test.

use super::deadline::Deadline;
use super::lifecycle::{self, Seed};
use super::scenario::ScenarioRt;
use super::state::{SessionCtx, SessionIdentity};
use crate::metrics::MetricKey;
use crate::net::cookies::Cookies;
use crate::outcome::SessionEnd;
use crate::util::{escape, jsonpath, micros_since};
use crate::wit::session::FlowError;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// The config of a nested run: the scenario's own, then `caller`'s (when given), then `given`.
pub fn nested_config(target: &ScenarioRt, caller: Option<&Value>, given: Value) -> Value {
    let mut config = Value::clone(&target.config);
    if let Some(c) = caller {
        jsonpath::deep_merge(&mut config, c.clone());
    }
    jsonpath::deep_merge(&mut config, given);
    config
}

/// Runs scenario `target` to its end from `seed`; its final assigns on success.
async fn run_nested(target: &Arc<ScenarioRt>, seed: Seed) -> Result<Value, SessionEnd> {
    let start = Instant::now();
    let metric = MetricKey::nested(&target.name);
    let recorder = target.sink.recorder();
    recorder.add(crate::metrics::keys::NESTED_SESSIONS, 1);
    let finished = lifecycle::run(target, seed).await;
    if !finished.end.is_completed() {
        target.sink.error(&metric, finished.end.kind());
        return Err(finished.end);
    }
    target.sink.duration(&metric, micros_since(start));
    Ok(finished.assigns)
}

/// `run-scenario` from inside a session: blocks the caller while the nested run goes.
pub async fn run_scenario(
    state: &mut SessionCtx,
    name: &str,
    config: String,
    merge: bool,
) -> Result<String, FlowError> {
    let target = state.scenario.lookup(name).ok_or_else(|| {
        FlowError::Unknown(format!(
            "no scenario `{}` with a component in this load test",
            escape(name)
        ))
    })?;
    let given: Value = serde_json::from_str(&config)
        .map_err(|e| FlowError::Unknown(format!("run_scenario config is not JSON: {e}")))?;
    let config = nested_config(&target, merge.then_some(&state.config), given);
    let _slot = state
        .scenario
        .run
        .child_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| FlowError::Capacity("the host's instance pool is full".into()))?;
    let cookies = state.cookies.snapshot();
    let seed = Seed {
        identity: SessionIdentity {
            id: format!("{}/{name}", state.identity.id),
            parent_id: Some(state.identity.id.clone()),
            ..state.identity.clone()
        },
        config: Arc::new(config),
        assigns: state.assigns.clone(),
        cookies: cookies.clone(),
        family: Default::default(),
        deadline: state.deadline,
        cpu_tree: Some(state.cpu_tree.clone()),
        http: None,
    };
    let assigns = run_nested(&target, seed)
        .await
        .map_err(|end| FlowError::ChildFailed(end.to_string()))?;
    jsonpath::deep_merge(&mut state.assigns, assigns);
    state.cookies.replace_with(&cookies);
    Ok(state.assigns.to_string())
}

/// A session of a sequence: each step runs as a nested scenario with the sequence's config as
/// the caller's and the previous step's assigns as the given config.
pub async fn run_sequence(
    steps: &[Arc<ScenarioRt>],
    identity: SessionIdentity,
    config: Value,
    deadline: Deadline,
) -> SessionEnd {
    let mut assigns = Value::Object(serde_json::Map::new());
    let cookies = Cookies::default();
    for step in steps {
        let seed = Seed {
            identity: SessionIdentity {
                id: format!("{}/{}", identity.id, step.name),
                parent_id: Some(identity.id.clone()),
                ..identity.clone()
            },
            config: Arc::new(nested_config(step, Some(&config), assigns.clone())),
            assigns,
            cookies: cookies.clone(),
            family: Default::default(),
            deadline,
            cpu_tree: None,
            http: None,
        };
        match run_nested(step, seed).await {
            Ok(next) => assigns = next,
            Err(end) => return end,
        }
    }
    SessionEnd::Completed
}

/// Runs a load-test hook (setup or teardown): `invoke(function, args)` on a fresh instance.
pub async fn run_hook(
    target: &Arc<ScenarioRt>,
    function: &str,
    args: String,
) -> Result<String, SessionEnd> {
    let identity = SessionIdentity {
        id: function.to_owned(),
        parent_id: None,
        vu: 0,
        iteration: 0,
    };
    let deadline = Deadline::after(target.limits.session_timeout);
    let seed = Seed::fresh(identity, target.config.clone(), deadline);
    lifecycle::invoke(target, seed, function, args).await
}
