//! The one naming rule for metric keys. Every key is built here: a family prefix (`http GET`,
//! `ws_connect`, `async`, `run_scenario`) and a name cut to [`MAX_METRIC_NAME`] bytes with
//! control characters escaped, so any key the host accepts renders in every output.

use crate::util::{escape, truncate};

/// Longest name part of a metric key (or check name) a guest may choose, in bytes.
pub const MAX_METRIC_NAME: usize = 256;

/// Metric of each WebSocket send.
pub const WS_SEND: &str = "ws_send";
/// Metric of each WebSocket receive.
pub const WS_RECV: &str = "ws_recv";
/// Metric of each WebSocket receive-until-match.
pub const WS_AWAIT_RECV: &str = "ws_await_recv";
/// Phase metrics: where the time of HTTP requests went, across all requests of the run.
pub const HTTP_PHASES: [&str; 4] = [
    "http phase dns",
    "http phase connect",
    "http phase tls",
    "http phase ttfb",
];
/// Phase metrics of WebSocket connects (DNS, TCP connect, TLS) before the upgrade, so a
/// connection storm (a full accept queue) shows as such and not only in `ws_connect`.
pub const WS_PHASES: [&str; 3] = ["ws phase dns", "ws phase connect", "ws phase tls"];
/// Metric of each redirect hop the host followed (the chain's total is the request's key).
pub const HTTP_REDIRECT: &str = "http redirect hop";
/// Host counters of async children (spawns and spread members) and nested scenario runs
/// started: sessions of their own kind beside the top-level ones.
pub const CHILD_SESSIONS: &str = "child sessions";
/// See [`CHILD_SESSIONS`].
pub const NESTED_SESSIONS: &str = "nested sessions";
/// Host counters of bytes on the wire.
pub const BYTES_SENT: &str = "bytes sent";
/// See [`BYTES_SENT`].
pub const BYTES_RECEIVED: &str = "bytes received";

/// A metric key that went through the naming rule; cheap to clone (a session keeps the keys
/// it uses again).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MetricKey(std::sync::Arc<str>);

impl MetricKey {
    /// `http {METHOD} {name}` (the name: the request's metric-name or its path).
    pub fn http(method: &str, name: &str) -> MetricKey {
        MetricKey(format!("http {method} {}", clean(name)).into())
    }

    /// `ws_connect {name}` (the connect's metric-name or its path).
    pub fn ws_connect(name: &str) -> MetricKey {
        MetricKey(format!("ws_connect {}", clean(name)).into())
    }

    /// `async {task}`: the duration of each async child of a task.
    pub fn task(task: &str) -> MetricKey {
        MetricKey(format!("async {}", clean(task)).into())
    }

    /// `run_scenario {name}`: the duration of each nested scenario run.
    pub fn nested(scenario: &str) -> MetricKey {
        MetricKey(format!("run_scenario {}", clean(scenario)).into())
    }

    /// `iteration {scenario}`: each iteration's duration, from its start.
    pub fn iteration(scenario: &str) -> MetricKey {
        MetricKey(format!("iteration {}", clean(scenario)).into())
    }

    /// `iteration {scenario} (from intended start)`: under an arrival rate, each iteration's
    /// duration from when it was due (wrk2's coordinated-omission correction).
    pub fn iteration_from_intended_start(scenario: &str) -> MetricKey {
        MetricKey(format!("iteration {} (from intended start)", clean(scenario)).into())
    }

    /// A name the guest chose whole: traced calls (`call …`), `time`, `record-metric`.
    pub fn custom(name: &str) -> MetricKey {
        MetricKey(clean(name).into())
    }

    /// A host-defined key (its text is a constant of this module).
    pub fn fixed(name: &'static str) -> MetricKey {
        MetricKey(name.into())
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A guest-chosen name made safe: cut to [`MAX_METRIC_NAME`] bytes, control characters
/// escaped.
pub fn clean(name: &str) -> String {
    let cut = truncate(name, MAX_METRIC_NAME);
    if cut.chars().any(char::is_control) {
        truncate(&escape(cut), MAX_METRIC_NAME * 2).to_owned()
    } else {
        cut.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_printable() {
        let long = "x".repeat(10_000);
        assert!(MetricKey::http("GET", &long).as_str().len() <= MAX_METRIC_NAME + 9);
        assert_eq!(MetricKey::custom("a\u{1b}b").as_str(), "a\\u{1b}b");
        assert_eq!(MetricKey::task("t").as_str(), "async t");
    }
}
