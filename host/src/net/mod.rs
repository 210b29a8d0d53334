//! Everything that touches the network. [`connect::connect`] is the one checkpoint every
//! HTTP and WebSocket connection passes (policy by URL before DNS, by address after it);
//! [`http`] and [`websocket`] are the clients a session drives; [`cookies`] is the per-session
//! jar both share. Nothing here records metrics: requests return values (status, phases,
//! bytes, outcome) that the caller hands to the metrics sink.

pub mod allowlist;
pub mod connect;
pub mod cookies;
pub mod gate;
pub mod headers;
pub mod http;
pub mod influx;
pub mod policy;
pub mod resolve;
pub mod stream;
pub mod tls;
pub mod upgrade;
pub mod url;
pub mod websocket;

use std::sync::Arc;
use std::time::Duration;

/// What every connection of one scenario's sessions needs, resolved once per run.
#[derive(Clone)]
pub struct NetConfig {
    /// Where scenario paths point (`base_url` of the config, parsed once).
    pub base_url: Option<::url::Url>,
    pub tls: Arc<rustls::ClientConfig>,
    pub policy: Arc<dyn policy::Policy>,
    /// Turns allowed names into addresses (the system resolver behind pinned names).
    pub resolver: Arc<dyn resolve::Resolve>,
    /// The run's connect gate (shared by every scenario).
    pub gate: Arc<gate::ConnectGate>,
    /// TCP connect + TLS (+ WebSocket handshake) deadline.
    pub connect_timeout: Duration,
    /// Deadline of one HTTP request unless the request sets its own.
    pub request_timeout: Duration,
    /// Open HTTP connections per session.
    pub http_connections: u32,
    /// Largest response body handed to the guest; the rest is drained.
    pub max_response_body: usize,
    /// Largest request body a guest may send.
    pub max_request_body: usize,
    /// Most redirect hops a request may follow, whatever it asks for.
    pub max_redirects: u32,
    /// Largest WebSocket message.
    pub max_ws_message: usize,
    /// Inbound WebSocket messages buffered per connection.
    pub ws_queue: usize,
}
