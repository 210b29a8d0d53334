//! How sessions and requests end: the two outcome enums of the report.
//!
//! Every session ends with exactly one [`SessionEnd`]; its [`SessionEnd::kind`] is the key under
//! which the report counts it. Request failures are the WIT `request-error` variant; their
//! [`request_error_kind`] is the key under which a metric's errors are counted.

use crate::wit::RequestError;
use std::fmt;

/// Why a trap happened, as far as the host can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrapKind {
    /// `unreachable` (a Rust panic with panic=abort, an abort in C).
    Unreachable,
    /// The wasm stack limit was reached (unbounded recursion).
    StackOverflow,
    /// An out-of-bounds memory access.
    MemoryOutOfBounds,
    /// Any other trap, with wasmtime's description.
    Other(String),
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::Unreachable => f.write_str("unreachable"),
            TrapKind::StackOverflow => f.write_str("stack-overflow"),
            TrapKind::MemoryOutOfBounds => f.write_str("memory-out-of-bounds"),
            TrapKind::Other(s) => f.write_str(s),
        }
    }
}

/// The end reason of one session (one virtual user or async child).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// `init`, `run` and `teardown` all returned ok.
    Completed,
    /// The scenario returned an error.
    GuestError(String),
    /// The guest trapped; the detail carries the guest's last stderr line when there is one.
    Trap { kind: TrapKind, detail: String },
    /// The guest used more than its CPU budget without yielding to the host.
    CpuBudget,
    /// The guest tried to grow its linear memory, or the host memory it holds, past a cap
    /// (named in the detail).
    MemoryLimit(String),
    /// A host-enforced resource cap other than memory (tables, instances, handles).
    ResourceLimit(String),
    /// The session's wall-clock deadline passed.
    Timeout,
    /// The scenario called `abort`.
    Aborted(String),
    /// The load test was stopped (Ctrl-C or graceful-stop expiry) while the session ran.
    Interrupted,
    /// The session could not start (instantiation failed, pool full).
    LoadError(String),
}

impl SessionEnd {
    /// Stable short name used as the report key.
    pub fn kind(&self) -> &'static str {
        match self {
            SessionEnd::Completed => "completed",
            SessionEnd::GuestError(_) => "guest-error",
            SessionEnd::Trap { .. } => "trap",
            SessionEnd::CpuBudget => "cpu-budget",
            SessionEnd::MemoryLimit(_) => "memory-limit",
            SessionEnd::ResourceLimit(_) => "resource-limit",
            SessionEnd::Timeout => "timeout",
            SessionEnd::Aborted(_) => "aborted",
            SessionEnd::Interrupted => "interrupted",
            SessionEnd::LoadError(_) => "load-error",
        }
    }

    /// Whether the session counts as a success.
    pub fn is_completed(&self) -> bool {
        matches!(self, SessionEnd::Completed)
    }

    /// Whether `teardown` still runs after `run` ended this way: `run` returned (ok, with an
    /// error or an abort) or its deadline passed; never after a trap or a broken quota.
    pub fn runs_teardown(&self) -> bool {
        matches!(
            self,
            SessionEnd::Completed
                | SessionEnd::GuestError(_)
                | SessionEnd::Aborted(_)
                | SessionEnd::Timeout
        )
    }
}

impl fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionEnd::Completed => f.write_str("completed"),
            SessionEnd::GuestError(m) => write!(f, "guest-error: {m}"),
            SessionEnd::Trap { kind, detail } if detail.is_empty() => write!(f, "trap({kind})"),
            SessionEnd::Trap { kind, detail } => write!(f, "trap({kind}): {detail}"),
            SessionEnd::CpuBudget => {
                f.write_str("cpu-budget: the guest ran too long without yielding")
            }
            SessionEnd::MemoryLimit(m) => write!(f, "memory-limit: {m}"),
            SessionEnd::ResourceLimit(m) => write!(f, "resource-limit: {m}"),
            SessionEnd::Timeout => f.write_str("timeout: the session deadline passed"),
            SessionEnd::Aborted(r) => write!(f, "aborted: {r}"),
            SessionEnd::Interrupted => f.write_str("interrupted"),
            SessionEnd::LoadError(m) => write!(f, "load-error: {m}"),
        }
    }
}

/// Short, stable name of a request error, used as the error kind in the report.
pub fn request_error_kind(e: &RequestError) -> &'static str {
    match e {
        RequestError::Denied(_) => "denied",
        RequestError::BlockedIp(_) => "blocked-ip",
        RequestError::Dns(_) => "dns",
        RequestError::Refused => "refused",
        RequestError::ConnectTimeout => "connect-timeout",
        RequestError::Reset => "reset",
        RequestError::Timeout => "timeout",
        RequestError::Tls(_) => "tls",
        RequestError::Protocol(_) => "protocol",
        RequestError::WsHandshake(_) => "ws-handshake",
        RequestError::TooLarge => "too-large",
        RequestError::TooManyConnections => "too-many-connections",
        RequestError::HostCapacity => "host-capacity",
        RequestError::Interrupted => "interrupted",
        RequestError::Invalid(_) => "invalid",
        RequestError::Closed => "closed",
    }
}

/// Classifies an I/O error from connecting or talking to a target.
pub fn io_error_to_request_error(e: &std::io::Error) -> RequestError {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => RequestError::Refused,
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
            RequestError::Reset
        }
        K::TimedOut => RequestError::Timeout,
        _ if is_fd_exhaustion(e) => RequestError::HostCapacity,
        K::AddrNotAvailable | K::AddrInUse => RequestError::HostCapacity,
        _ => RequestError::Protocol(e.to_string()),
    }
}

/// EMFILE/ENFILE: the host ran out of file descriptors — a host problem, not the target's.
fn is_fd_exhaustion(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}
