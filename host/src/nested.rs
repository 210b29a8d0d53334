//! Scenarios inside sessions: `run_scenario`, sequences, and the load test's setup/teardown.
//!
//! A nested run is a fresh instance of the named scenario's component that runs `init`, `run`
//! and `teardown` while its caller waits. It starts from the caller's assigns and cookies; when it
//! completes, its assigns are merged back (nested values win), its cookies replace the caller's,
//! and its config is not copied back. The scenario's start delay is not applied again. Its
//! duration is recorded as `run_scenario {name}`.

use crate::bindings::session::FlowError;
use crate::jsonpath;
use crate::outcome::SessionEnd;
use crate::state::{RunShared, SessionIdentity, VuState, duration_micros};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// What a nested run starts from and gives back.
pub struct Carry {
    pub config: Value,
    pub assigns: Value,
    pub cookies: BTreeMap<String, String>,
}

/// Runs scenario `target` to its end with `carry`; returns the final assigns and cookies.
pub async fn run_nested(
    target: &Arc<RunShared>,
    identity: SessionIdentity,
    carry: Carry,
    deadline: Instant,
) -> Result<Carry, SessionEnd> {
    let Some(pre) = target.pre.get().cloned() else {
        return Err(SessionEnd::LoadError(format!(
            "scenario `{}` is not loaded",
            target.scenario
        )));
    };
    let start = Instant::now();
    let mut store = crate::runner::new_store(pre.engine(), target.clone(), identity, carry.config);
    let state = store.data_mut();
    state.assigns = carry.assigns;
    state.http.cookies = carry.cookies;
    state.deadline = deadline;
    let left = deadline.saturating_duration_since(start);
    let end = tokio::time::timeout(left, crate::runner::lifecycle(&pre, &mut store))
        .await
        .unwrap_or(SessionEnd::Timeout);
    let metric = format!("run_scenario {}", target.scenario);
    if !end.is_completed() {
        target.recorder.record_error(&metric, end.kind());
        return Err(end);
    }
    target.recorder.record(&metric, duration_micros(start));
    let state = store.data_mut();
    Ok(Carry {
        config: Value::Null,
        assigns: std::mem::take(&mut state.assigns),
        cookies: std::mem::take(&mut state.http.cookies),
    })
}

/// The scenario `name` of this run, if it has a component.
fn lookup(shared: &RunShared, name: &str) -> Option<Arc<RunShared>> {
    shared.registry.get()?.get(name)?.upgrade()
}

/// `run-scenario` from inside a session: blocks the caller while the nested run goes.
pub async fn run_scenario(
    state: &mut VuState,
    name: &str,
    config: String,
    merge: bool,
) -> Result<String, FlowError> {
    let target = lookup(&state.shared, name).ok_or_else(|| {
        FlowError::Unknown(format!(
            "no scenario `{}` with a component in this load test",
            crate::session_host::escape(name)
        ))
    })?;
    let given: Value = serde_json::from_str(&config)
        .map_err(|e| FlowError::Unknown(format!("run_scenario config is not JSON: {e}")))?;
    let config = if merge {
        let mut c = state.config.clone();
        jsonpath::deep_merge(&mut c, given);
        c
    } else {
        given
    };
    let _slot = state
        .shared
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| FlowError::Capacity("the host's instance pool is full".into()))?;
    let identity = SessionIdentity {
        id: format!("{}/{name}", state.identity.id),
        parent_id: Some(state.identity.id.clone()),
        ..state.identity.clone()
    };
    let carry = Carry {
        config,
        assigns: state.assigns.clone(),
        cookies: state.http.cookies.clone(),
    };
    let back = run_nested(&target, identity, carry, state.deadline)
        .await
        .map_err(|end| FlowError::ChildFailed(end.to_string()))?;
    jsonpath::deep_merge(&mut state.assigns, back.assigns);
    state.http.cookies = back.cookies;
    Ok(state.assigns.to_string())
}

/// A session of a sequence: each step runs as a nested scenario; its assigns become the next
/// step's config.
pub async fn run_sequence(
    steps: &[Arc<RunShared>],
    identity: SessionIdentity,
    config: Value,
    deadline: Instant,
) -> SessionEnd {
    let mut carry = Carry {
        config: Value::Null,
        assigns: Value::Object(serde_json::Map::new()),
        cookies: BTreeMap::new(),
    };
    for step in steps {
        let mut step_config = step.config.clone();
        jsonpath::deep_merge(&mut step_config, config.clone());
        jsonpath::deep_merge(&mut step_config, carry.assigns.clone());
        carry.config = step_config;
        let id = SessionIdentity {
            id: format!("{}/{}", identity.id, step.scenario),
            parent_id: Some(identity.id.clone()),
            ..identity.clone()
        };
        match run_nested(step, id, carry, deadline).await {
            Ok(next) => carry = next,
            Err(end) => return end,
        }
    }
    SessionEnd::Completed
}

/// Runs a load-test hook (setup or teardown): `invoke(function, args)` on a fresh instance.
pub async fn run_hook(
    target: &Arc<RunShared>,
    function: &str,
    args: String,
) -> Result<String, SessionEnd> {
    let Some(pre) = target.pre.get().cloned() else {
        return Err(SessionEnd::LoadError("the scenario is not loaded".into()));
    };
    let identity = SessionIdentity {
        id: function.to_owned(),
        parent_id: None,
        vu: 0,
        iteration: 0,
    };
    let mut store = crate::runner::new_store(
        pre.engine(),
        target.clone(),
        identity,
        target.config.clone(),
    );
    let left = target.limits.session_timeout;
    tokio::time::timeout(
        left,
        crate::children::invoke(&pre, &mut store, function, args),
    )
    .await
    .unwrap_or(Err(SessionEnd::Timeout))
}
