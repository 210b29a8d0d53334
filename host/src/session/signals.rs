//! Signals between sessions: JSON values queued per session (at most [`SIGNAL_QUEUE`]; a full
//! queue is a typed error). A queued signal's bytes are charged to the sending session's host
//! memory until it is received or dropped, so a flood of large signals hits the sender's cap.
//! `await-signal` compares JSON values, so key order and spacing do not
//! matter, and signals that do not match stay queued for a later wait.

use super::children::Pending;
use super::state::SessionCtx;
use crate::util::ledger::Charge;
use crate::wit::session::FlowError;
use serde_json::Value;
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;

/// Signals queued per session.
pub const SIGNAL_QUEUE: usize = 1024;

/// A queued signal and the host memory it holds.
pub struct Signal {
    text: String,
    _held: Charge,
}

/// The sending side of a session's inbox.
pub type Outbox = mpsc::Sender<Signal>;

/// A session's signal inbox, created on first use (most sessions never signal).
pub struct Inbox {
    pub(super) tx: Outbox,
    rx: mpsc::Receiver<Signal>,
    /// Signals that arrived while waiting for another one.
    stash: VecDeque<Signal>,
}

impl Inbox {
    pub(super) fn new() -> Inbox {
        let (tx, rx) = mpsc::channel(SIGNAL_QUEUE);
        Inbox {
            tx,
            rx,
            stash: VecDeque::new(),
        }
    }

    pub(super) fn from_parts(tx: Outbox, rx: mpsc::Receiver<Signal>) -> Inbox {
        Inbox {
            tx,
            rx,
            stash: VecDeque::new(),
        }
    }
}

/// `signal`: sends `value` to every child under `task`.
pub fn signal(state: &mut SessionCtx, task: &str, value: String) -> Result<(), FlowError> {
    let outboxes: Vec<&Outbox> = state
        .family
        .tasks
        .get(task)
        .into_iter()
        .flatten()
        .filter_map(|p| match p {
            Pending::One { outbox, .. } => Some(outbox),
            Pending::Spread(_) => None,
        })
        .collect();
    if outboxes.is_empty() {
        return Err(FlowError::Unknown(format!(
            "no child task `{}` to signal",
            crate::util::escape(task)
        )));
    }
    for tx in outboxes {
        send(tx, charged(state, &value)?)?;
    }
    Ok(())
}

/// `signal-parent`.
pub fn signal_parent(state: &mut SessionCtx, value: String) -> Result<(), FlowError> {
    let signal = charged(state, &value)?;
    match &state.family.parent {
        Some(tx) => send(tx, signal),
        None => Err(FlowError::Unknown(
            "this session has no parent to signal".into(),
        )),
    }
}

/// `value` as a signal, its bytes charged to the sender.
fn charged(state: &SessionCtx, value: &str) -> Result<Signal, FlowError> {
    let held = state
        .memory
        .charge("a queued signal", value.len() as u64)
        .map_err(|e| FlowError::Capacity(e.to_string()))?;
    Ok(Signal {
        text: value.to_owned(),
        _held: held,
    })
}

fn send(tx: &Outbox, value: Signal) -> Result<(), FlowError> {
    tx.try_send(value).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => FlowError::QueueFull,
        // The receiver ended: nobody will ever read it, which the sender should know.
        mpsc::error::TrySendError::Closed(_) => {
            FlowError::Unknown("the receiving session has ended".into())
        }
    })
}

/// `await-signal`: the first queued or arriving signal equal to `expected` (any when `None`).
pub async fn await_signal(
    state: &mut SessionCtx,
    expected: Option<String>,
    timeout: Duration,
) -> Result<String, FlowError> {
    let expected = match expected {
        Some(text) => Some(
            serde_json::from_str::<Value>(&text)
                .map_err(|e| FlowError::Unknown(format!("expected signal is not JSON: {e}")))?,
        ),
        None => None,
    };
    let matches = |s: &str| match &expected {
        None => true,
        Some(v) => serde_json::from_str::<Value>(s).is_ok_and(|got| &got == v),
    };
    let inbox = state.family.inbox();
    if let Some(i) = inbox.stash.iter().position(|s| matches(&s.text)) {
        return inbox
            .stash
            .remove(i)
            .map(|s| s.text)
            .ok_or(FlowError::Timeout);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, inbox.rx.recv()).await {
            Err(_) => return Err(FlowError::Timeout),
            Ok(None) => return Err(FlowError::Interrupted),
            Ok(Some(s)) if matches(&s.text) => return Ok(s.text),
            Ok(Some(s)) => {
                if inbox.stash.len() >= SIGNAL_QUEUE {
                    return Err(FlowError::QueueFull);
                }
                inbox.stash.push_back(s);
            }
        }
    }
}
