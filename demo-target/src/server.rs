//! The listener, the accept loop and what every connection runs: HTTP, then possibly a
//! WebSocket session in the same task.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::Shared;
use crate::http_routes::{Resp, route};
use crate::websocket::{
    UpgradeSlot, WsRoute, accept_websocket, run_subscriber, run_websocket, websocket_route,
};

/// Connections the kernel may queue before they are accepted (tokio's `TcpListener::bind`
/// uses 1024, too few for a load test that opens thousands at once): room for a storm of
/// 20,000 and more. The kernel caps it at `net.core.somaxconn` (4096 by default since Linux
/// 5.4); `sysctl -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535` lifts it.
pub const LISTEN_BACKLOG: u32 = 65_535;
/// Pause after a failed `accept` (e.g. out of file descriptors) to avoid a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// Binds `listen` with a [`LISTEN_BACKLOG`]-deep accept queue, registered with the current
/// tokio runtime (so it must be called inside one).
pub(crate) fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    let socket = if listen.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Like `TcpListener::bind` on Unix: a restarted target can take its port back at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts until stopped, then aborts every connection task (which closes their sockets).
///
/// Per connection it only counts and spawns, so a burst is drained without stalls; a stop
/// request wins over a pending connection, and a pending connection over reaping.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                    // Reap what already finished without waiting, so the set stays small
                    // even when connections keep coming and the last branch never runs.
                    while connections.try_join_next().is_some() {}
                }
                // That one connection failed (reset or aborted while queued); take the next.
                Err(e) if is_connection_error(&e) => {}
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// An `accept` error that concerns only the connection being accepted, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

/// Resolves once a stop was requested or the server handle was dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, which is a stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Serves HTTP on one connection; if it was upgraded, runs the WebSocket session in this task.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    // Latency matters more than throughput for a load-test target.
    let _ = stream.set_nodelay(true);
    let slot = UpgradeSlot::default();
    let service = {
        let slot = Arc::clone(&slot);
        let shared = Arc::clone(&shared);
        service_fn(move |req| handle(req, Arc::clone(&shared), Arc::clone(&slot)))
    };
    let conn = http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if conn.await.is_err() {
        return;
    }
    let pending = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(pending) = pending
        && let Ok(upgraded) = pending.on_upgrade.await
    {
        let io = TokioIo::new(upgraded);
        match pending.subscription {
            Some(subscription) => run_subscriber(io, subscription, &shared).await,
            None => run_websocket(io, pending.route, &shared).await,
        }
    }
}

/// Entry point of every request: WebSocket upgrades go one way, plain HTTP the other.
async fn handle(
    mut req: Request<Incoming>,
    shared: Arc<Shared>,
    slot: UpgradeSlot,
) -> Result<Resp, Infallible> {
    if let Some(route) = websocket_route(&req) {
        let subscription = match &route {
            WsRoute::Subscribe(topic) => Some(shared.topics.subscribe(topic)),
            _ => None,
        };
        return Ok(accept_websocket(&mut req, route, subscription, &slot));
    }
    shared
        .stats
        .record_request(req.method().as_str(), req.uri().path());
    Ok(route(req, &shared).await)
}
