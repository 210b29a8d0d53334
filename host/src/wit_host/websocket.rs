//! The `websocket` interface on [`WsCtx`]: connections are host resources in the context's
//! table; every action's outcome goes to the metrics sink.
//!
//! The WIT `connection` resource is the bindings' placeholder type, so `wit` depends on nothing
//! in the crate; its handles are mapped onto [`WsConnection`]s here by their table index.

use super::Wt;
use crate::metrics::keys::{WS_AWAIT_RECV, WS_RECV, WS_SEND};
use crate::metrics::sink::InFlight;
use crate::metrics::{MetricKey, Sink};
use crate::net::url::resolve;
use crate::net::websocket::{self as ws, WsConnection};
use crate::session::state::WsCtx;
use crate::wit::RequestError;
use crate::wit::websocket::{self, ConnectOptions, Connection, Message};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message as WireMessage;
use wasmtime::component::Resource;

/// The host connection behind a guest handle (borrowed for one call).
fn host_handle(handle: &Resource<Connection>) -> Resource<WsConnection> {
    Resource::new_borrow(handle.rep())
}

impl WsCtx {
    fn conn(&mut self, handle: &Resource<Connection>) -> Wt<&mut WsConnection> {
        Ok(self.table.get_mut(&host_handle(handle))?)
    }

    /// The wait of a receive: the guest's or the default, clamped to the session deadline.
    fn recv_wait(&self, ms: Option<u32>) -> Option<Duration> {
        let wait = ms.map_or(self.recv_timeout, |ms| Duration::from_millis(u64::from(ms)));
        self.deadline.clamp(wait)
    }

    async fn send(
        &mut self,
        handle: Resource<Connection>,
        msg: WireMessage,
    ) -> Wt<Result<(), RequestError>> {
        let start = Instant::now();
        let flight = self.sink.in_flight(MetricKey::fixed(WS_SEND));
        let r = match self.deadline.clamp(self.send_timeout) {
            Some(wait) => self.conn(&handle)?.send(msg, wait).await,
            None => Err(RequestError::Timeout),
        };
        self.mark.host_returned();
        flight.action(start, &r);
        Ok(r)
    }

    /// The metric key of a connect: `ws_connect {metric-name or path}`.
    fn connect_key(url: &Result<url::Url, RequestError>, name: Option<&str>) -> MetricKey {
        match (name, url) {
            (Some(name), _) => MetricKey::ws_connect(name),
            (None, Ok(u)) => MetricKey::ws_connect(u.path()),
            (None, Err(_)) => MetricKey::fixed("ws_connect"),
        }
    }

    /// The connect's resolved URL and its in-flight record under its metric key.
    fn connect_flight(
        sink: &Sink,
        base: Option<&url::Url>,
        url: &str,
        name: Option<&str>,
    ) -> (Result<url::Url, RequestError>, InFlight) {
        let url = resolve(base, url, true);
        let flight = sink.in_flight(Self::connect_key(&url, name));
        (url, flight)
    }
}

impl websocket::Host for WsCtx {}

impl websocket::HostConnection for WsCtx {
    async fn connect(
        &mut self,
        url: String,
        options: ConnectOptions,
    ) -> Wt<Result<Resource<Connection>, RequestError>> {
        let refused = if self.open >= self.cap {
            Some(RequestError::TooManyConnections)
        } else if self.deadline.passed() {
            Some(RequestError::ConnectTimeout)
        } else {
            None
        };
        let (net, cookies, memory, sink) = (
            self.net.clone(),
            self.cookies.clone(),
            self.memory.clone(),
            self.sink.clone(),
        );
        // Started here, so time spent queued for the task (a connect storm) is in the latency.
        let start = Instant::now();
        // A connect whose session goes before its task ran counts as interrupted, as one in
        // flight does (its record is dropped undone).
        let unstarted = {
            let (sink, base, url, name) = (
                sink.clone(),
                net.base_url.clone(),
                url.clone(),
                options.metric_name.clone(),
            );
            move || {
                drop(Self::connect_flight(
                    &sink,
                    base.as_ref(),
                    &url,
                    name.as_deref(),
                ))
            }
        };
        // All of it on its own task, recording included: what runs on the session's fiber
        // stack stays resident there for the session's life (a deep connect path cost 8 KiB
        // per idle WebSocket session).
        let connecting = move || async move {
            let name = options.metric_name.as_deref();
            let (url, flight) = Self::connect_flight(&sink, net.base_url.as_ref(), &url, name);
            let r = match (url, refused) {
                (Err(e), _) | (Ok(_), Some(e)) => Err(e),
                (Ok(url), None) => ws::connect(&net, &cookies, &memory, &url, &options).await,
            };
            flight.action(start, &r);
            if let Ok(conn) = &r {
                let t = conn.phases;
                sink.ws_phases(t.dns_us, t.connect_us, t.tls_us);
            }
            r
        };
        let r = crate::util::on_own_task(connecting, unstarted)
            .await
            .unwrap_or(Err(RequestError::Interrupted));
        self.mark.host_returned();
        match r {
            Ok(conn) => {
                self.open += 1;
                self.wire.push(conn.counters.clone());
                let host = self.table.push(conn)?;
                Ok(Ok(Resource::new_own(host.rep())))
            }
            Err(e) => Ok(Err(e)),
        }
    }

    async fn send_text(
        &mut self,
        handle: Resource<Connection>,
        text: String,
    ) -> Wt<Result<(), RequestError>> {
        self.send(handle, WireMessage::text(text)).await
    }

    async fn send_binary(
        &mut self,
        handle: Resource<Connection>,
        data: Vec<u8>,
    ) -> Wt<Result<(), RequestError>> {
        self.send(handle, WireMessage::binary(data)).await
    }

    async fn recv(
        &mut self,
        handle: Resource<Connection>,
        timeout_ms: Option<u32>,
    ) -> Wt<Result<Message, RequestError>> {
        let start = Instant::now();
        let flight = self.sink.in_flight(MetricKey::fixed(WS_RECV));
        let r = match self.recv_wait(timeout_ms) {
            Some(wait) => self.conn(&handle)?.recv(wait).await,
            None => Err(RequestError::Timeout),
        };
        self.mark.host_returned();
        flight.action(start, &r);
        Ok(r)
    }

    async fn await_recv(
        &mut self,
        handle: Resource<Connection>,
        expected: Message,
        timeout_ms: Option<u32>,
    ) -> Wt<Result<(), RequestError>> {
        let start = Instant::now();
        let flight = self.sink.in_flight(MetricKey::fixed(WS_AWAIT_RECV));
        let r = match self.recv_wait(timeout_ms) {
            Some(wait) => self.conn(&handle)?.await_recv(&expected, wait).await,
            None => Err(RequestError::Timeout),
        };
        self.mark.host_returned();
        flight.action(start, &r);
        Ok(r)
    }

    async fn close(
        &mut self,
        handle: Resource<Connection>,
        code: u16,
        reason: String,
    ) -> Wt<Result<(), RequestError>> {
        let r = self.conn(&handle)?.close(code, reason).await;
        self.mark.host_returned();
        Ok(r)
    }

    async fn drop(&mut self, handle: Resource<Connection>) -> Wt<()> {
        let host: Resource<WsConnection> = Resource::new_own(handle.rep());
        let conn = self.table.delete(host)?;
        let (sent, received) = conn.counters.read();
        self.wire_closed.0 += sent;
        self.wire_closed.1 += received;
        self.wire
            .retain(|c| !std::sync::Arc::ptr_eq(c, &conn.counters));
        self.open = self.open.saturating_sub(1);
        Ok(())
    }
}
