//! The one place samples are recorded: actions produce values (a response with status, phases
//! and bytes; a request error; a duration; a session end) and the sink turns them into samples,
//! error counts and counters under keys built by [`keys`](super::keys).

use super::keys::{BYTES_RECEIVED, BYTES_SENT, HTTP_PHASES, MetricKey, WS_PHASES};
use super::recorder::Recorder;
use crate::outcome::request_error_kind;
use crate::util::micros_since;
use crate::wit::RequestError;
use crate::wit::http::Response;
use std::sync::Arc;
use std::time::Instant;

/// A handle on the run's recorder; cheap to clone into every session context.
#[derive(Clone)]
pub struct Sink {
    recorder: Arc<Recorder>,
}

impl Sink {
    /// A sink writing to `recorder`.
    pub fn new(recorder: Arc<Recorder>) -> Sink {
        Sink { recorder }
    }

    /// The recorder behind the sink (for snapshots).
    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// An HTTP request's outcome: the total time, its phases and bytes; an unexpected status is
    /// both a sample and an error `status N`; a transport error is an error of its kind only.
    pub fn http(&self, key: &MetricKey, result: &Result<Response, RequestError>) {
        let mut rec = self.recorder.locked();
        let r = match result {
            Ok(r) => r,
            Err(e) => return rec.record_error(key.as_str(), request_error_kind(e)),
        };
        let t = &r.timings;
        rec.record(key.as_str(), u64::from(t.total_us));
        let phases = [t.dns_us, t.connect_us, t.tls_us, t.ttfb_us];
        for (i, (name, us)) in HTTP_PHASES.iter().zip(phases).enumerate() {
            // A phase that did not happen (a reused connection) is not a 0 µs sample.
            if us > 0 || i == 3 {
                rec.record(name, u64::from(us));
            }
        }
        rec.add(BYTES_SENT, u64::from(r.bytes_sent));
        rec.add(BYTES_RECEIVED, u64::from(r.bytes_received));
        if !r.expected {
            rec.record_error(key.as_str(), &format!("status {}", r.status));
        }
    }

    /// The connect phases of a WebSocket (µs; a phase that did not happen is 0 and skipped).
    pub fn ws_phases(&self, dns_us: u32, connect_us: u32, tls_us: u32) {
        let mut rec = self.recorder.locked();
        for (name, us) in WS_PHASES.iter().zip([dns_us, connect_us, tls_us]) {
            if us > 0 {
                rec.record(name, u64::from(us));
            }
        }
    }

    /// A timed network action (WebSocket connect, send, receive): its duration since `start`
    /// on success, its error kind on failure.
    pub fn action<T>(&self, key: &MetricKey, start: Instant, result: &Result<T, RequestError>) {
        match result {
            Ok(_) => self.recorder.record(key.as_str(), micros_since(start)),
            Err(e) => self
                .recorder
                .record_error(key.as_str(), request_error_kind(e)),
        }
    }

    /// A duration in µs (traced calls, `time`, `record-metric`, child and nested runs).
    pub fn duration(&self, key: &MetricKey, micros: u64) {
        self.recorder.record(key.as_str(), micros);
    }

    /// One error of `kind` under `key`, without a sample (a failed traced call, a failed child).
    pub fn error(&self, key: &MetricKey, kind: &str) {
        self.recorder.record_error(key.as_str(), kind);
    }

    /// A guard for an action about to wait on the network under `key`: if the action is dropped
    /// before its outcome is recorded (the run stopped at once), the guard records one
    /// `interrupted` error, so requests in flight at a stop are counted, and not as latency.
    pub fn in_flight(&self, key: MetricKey) -> InFlight {
        InFlight {
            sink: self.clone(),
            key,
            done: false,
        }
    }

    /// A named check passed or failed (the name goes through the naming rule).
    pub fn check(&self, name: &str, passed: bool) {
        self.recorder.check(&super::keys::clean(name), passed);
    }
}

/// See [`Sink::in_flight`].
pub struct InFlight {
    sink: Sink,
    key: MetricKey,
    done: bool,
}

impl InFlight {
    /// Records an HTTP outcome ([`Sink::http`]).
    pub fn http(mut self, result: &Result<Response, RequestError>) {
        self.done = true;
        self.sink.http(&self.key, result);
    }

    /// Records a timed action ([`Sink::action`]).
    pub fn action<T>(mut self, start: Instant, result: &Result<T, RequestError>) {
        self.done = true;
        self.sink.action(&self.key, start, result);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.sink
                .error(&self.key, request_error_kind(&RequestError::Interrupted));
        }
    }
}
