//! The one error type of scenario code, and how host errors map onto it.

use core::fmt;

use crate::wit::chaperon::scenario::session::{FlowError, StateError};
use crate::wit::chaperon::scenario::types::RequestError;

/// `Result` with [`Error`] as the error type and `()` as the default value, so a scenario step
/// is simply `fn step(s: &mut Session) -> Result`.
pub type Result<T = (), E = Error> = core::result::Result<T, E>;

/// Why a scenario step failed.
///
/// Every SDK call that can fail returns this, so `?` works throughout scenario code. Returning
/// it from [`Scenario::run`](crate::Scenario::run) ends the session as failed with the error's
/// text as the reason ([`Error::Aborted`] ends it as aborted instead).
///
/// ```no_run
/// # use chaperon_sdk::prelude::*;
/// fn step(s: &mut Session) -> Result {
///     let res = s.get("/health")?; // Error::Request on a network failure
///     if res.status != 200 {
///         return Err(format!("unhealthy: {}", res.status).into()); // Error::Failed
///     }
///     Ok(())
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// An HTTP or WebSocket action failed (refused, timeout, denied by the allowlist, ...).
    /// An unexpected HTTP status is not an error: it is a [`Response`](crate::Response).
    Request(RequestError),
    /// Config, assigns or data-set lookup failed (missing value, invalid path, exhausted data set).
    State(String),
    /// An async child, signal or nested scenario failed (capacity, unknown task, timeout, ...).
    Flow(String),
    /// A failure the scenario reports itself: `Err("text".into())`.
    Failed(String),
    /// The scenario gave up on purpose: see [`Session::abort`](crate::Session::abort).
    Aborted(String),
    /// A value could not be converted to or from JSON.
    Json(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Request(e) => write!(f, "request failed: {}", describe_request_error(e)),
            Error::State(m) | Error::Flow(m) | Error::Failed(m) => f.write_str(m),
            Error::Aborted(m) => write!(f, "aborted: {m}"),
            Error::Json(m) => write!(f, "json: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Request(e) => Some(e),
            _ => None,
        }
    }
}

impl From<RequestError> for Error {
    fn from(e: RequestError) -> Self {
        Error::Request(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Json(e.to_string())
    }
}

impl From<String> for Error {
    fn from(message: String) -> Self {
        Error::Failed(message)
    }
}

impl From<&str> for Error {
    fn from(message: &str) -> Self {
        Error::Failed(message.to_owned())
    }
}

/// A human-readable description of a network failure, e.g. `connection refused`.
pub fn describe_request_error(e: &RequestError) -> String {
    match e {
        RequestError::Denied(rule) => format!("denied by the allowlist: {rule}"),
        RequestError::BlockedIp(why) => format!("blocked address: {why}"),
        RequestError::Dns(why) => format!("name resolution failed: {why}"),
        RequestError::Refused => "connection refused".into(),
        RequestError::ConnectTimeout => "connect timeout".into(),
        RequestError::Reset => "connection reset".into(),
        RequestError::Timeout => "timeout".into(),
        RequestError::Tls(why) => format!("tls: {why}"),
        RequestError::Protocol(why) => format!("protocol error: {why}"),
        RequestError::WsHandshake(status) => {
            format!("websocket handshake answered with HTTP {status}")
        }
        RequestError::TooLarge => "too large".into(),
        RequestError::TooManyConnections => "too many connections".into(),
        RequestError::HostCapacity => "host out of capacity".into(),
        RequestError::Interrupted => "interrupted".into(),
        RequestError::Invalid(why) => format!("invalid request: {why}"),
        RequestError::Closed => "connection closed".into(),
    }
}

/// `Error::State` for a failed lookup of `what` (e.g. `config ping_pong.iterations`). The
/// host's text is one sentence that names the path (`no config value at `a.b` ...`), so it is
/// shown as it is.
pub(crate) fn state_error(_what: &str, e: StateError) -> Error {
    Error::State(match e {
        StateError::Missing(m) | StateError::Invalid(m) | StateError::Exhausted(m) => m,
    })
}

/// `Error::Flow` for a failed flow operation `what` (e.g. `await_task pings`).
pub(crate) fn flow_error(what: &str, e: FlowError) -> Error {
    Error::Flow(match e {
        FlowError::Capacity(why) => format!("{what}: capacity reached: {why}"),
        FlowError::Unknown(name) => format!("{what}: unknown task: {name}"),
        FlowError::ChildFailed(reason) => format!("{what}: child failed: {reason}"),
        FlowError::Timeout => format!("{what}: timed out"),
        FlowError::QueueFull => format!("{what}: signal queue full"),
        FlowError::Interrupted => format!("{what}: interrupted"),
    })
}
