//! WebSocket endpoints: the upgrade handshake (answered by the HTTP service, then parked for
//! the connection's task) and the sessions that run on the upgraded connection.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::Shared;
use crate::http_routes::{Resp, headers_json, text};
use crate::stats::TargetStats;
use crate::topics::{Subscription, replay_request};

/// WebSocket endpoints of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum WsRoute {
    PingPong,
    Echo,
    /// `/subscribe/{topic}`.
    Subscribe(String),
    /// `/ws/handshake`: reports the handshake's headers (JSON), pings the client and says
    /// "pong received" when the pong arrives, then echoes.
    Handshake(String),
}

/// An accepted upgrade, parked until hyper hands over the raw connection.
pub(crate) struct PendingUpgrade {
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) route: WsRoute,
    /// For `/subscribe/{topic}`: taken before the 101 answer, so a client that saw its
    /// handshake complete misses no later publication.
    pub(crate) subscription: Option<Subscription>,
}

pub(crate) type UpgradeSlot = Arc<Mutex<Option<PendingUpgrade>>>;

/// Which WebSocket endpoint `req` asks for, if it is a well-formed upgrade to a known one.
pub(crate) fn websocket_route(req: &Request<Incoming>) -> Option<WsRoute> {
    let headers = req.headers();
    let wants_ws = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        });
    if req.method() != Method::GET || !wants_ws || !headers.contains_key(header::SEC_WEBSOCKET_KEY)
    {
        return None;
    }
    let path = req.uri().path();
    match path {
        "/ping/pong" => Some(WsRoute::PingPong),
        "/ws/echo" => Some(WsRoute::Echo),
        "/ws/handshake" => Some(WsRoute::Handshake(headers_json(headers).to_string())),
        _ => topic_of(path).map(|topic| WsRoute::Subscribe(topic.to_owned())),
    }
}

/// The topic of `/subscribe/{topic}`: one non-empty path segment.
fn topic_of(path: &str) -> Option<&str> {
    path.strip_prefix("/subscribe/")
        .filter(|t| !t.is_empty() && !t.contains('/'))
}

/// Answers 101 and parks the upgrade so the connection task can pick it up.
pub(crate) fn accept_websocket(
    req: &mut Request<Incoming>,
    route: WsRoute,
    subscription: Option<Subscription>,
    slot: &UpgradeSlot,
) -> Resp {
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|k| derive_accept_key(k.as_bytes()));
    let Some(accept) = key.and_then(|k| HeaderValue::from_str(&k).ok()) else {
        return text(StatusCode::BAD_REQUEST, "bad websocket key\n");
    };
    let on_upgrade = hyper::upgrade::on(&mut *req);
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(PendingUpgrade {
        on_upgrade,
        route,
        subscription,
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    // Agree to the first subprotocol the client offers (clients reject a silent server).
    let offered = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL);
    let first = offered
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next());
    if let Some(p) = first.and_then(|p| HeaderValue::from_str(p.trim()).ok()) {
        resp.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    resp
}

/// Counts a WebSocket as open for as long as it lives, even if its task is aborted.
struct OpenGuard<'a> {
    stats: &'a TargetStats,
}

impl<'a> OpenGuard<'a> {
    fn new(stats: &'a TargetStats) -> Self {
        stats.ws_opened.fetch_add(1, Ordering::SeqCst);
        let now = stats.ws_open_now.fetch_add(1, Ordering::SeqCst) + 1;
        stats.ws_max_open.fetch_max(now, Ordering::SeqCst);
        stats.ws_opened_signal.notify_waiters();
        OpenGuard { stats }
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.stats.ws_open_now.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What to send back for one received message.
struct Reply {
    message: Message,
    is_pong: bool,
}

/// Runs one WebSocket session until the peer closes, the socket fails, or the server stops.
/// Control frames are handled by tungstenite: pings are answered and a close is echoed on
/// the next read, which then ends the stream.
pub(crate) async fn run_websocket(
    io: TokioIo<hyper::upgrade::Upgraded>,
    route: WsRoute,
    shared: &Shared,
) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let _open = OpenGuard::new(&shared.stats);
    if let WsRoute::Handshake(headers) = &route
        && !greet_and_probe(&mut ws, headers).await
    {
        return;
    }
    while let Some(Ok(message)) = ws.next().await {
        let Some(reply) = reply_to(message, &route, shared).await else {
            continue;
        };
        if ws.send(reply.message).await.is_err() {
            break;
        }
        if reply.is_pong {
            shared.stats.pongs.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Runs one subscription to `/subscribe/{topic}`: forwards every publication until the peer
/// closes, the socket fails, or the server stops. A text message `{"last_message_sequence": N}`
/// from the client first replays the kept messages after N that predate the subscription.
pub(crate) async fn run_subscriber(
    io: TokioIo<hyper::upgrade::Upgraded>,
    mut sub: Subscription,
    shared: &Shared,
) {
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, None).await;
    let _open = OpenGuard::new(&shared.stats);
    let stats = &shared.stats;
    stats.subscriptions.fetch_add(1, Ordering::SeqCst);
    loop {
        let outgoing = tokio::select! {
            inbound = ws.next() => match inbound {
                Some(Ok(message)) if message.is_text() || message.is_binary() => {
                    stats.ws_messages.fetch_add(1, Ordering::SeqCst);
                    match replay_request(&message) {
                        Some(after) => shared.topics.replay(&sub.topic, after, sub.since),
                        None => Vec::new(),
                    }
                }
                Some(Ok(_)) => Vec::new(),
                _ => break,
            },
            published = sub.rx.recv() => match published {
                Ok(p) => vec![p.message],
                Err(RecvError::Lagged(_)) => Vec::new(),
                Err(RecvError::Closed) => break,
            },
        };
        for message in outgoing {
            stats.delivered.fetch_add(1, Ordering::SeqCst);
            if ws.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// `/ws/handshake`: sends the handshake headers, then a ping, and waits (≤ 2 s) for the
/// client's pong, announcing it with "pong received". False when the socket failed.
async fn greet_and_probe(
    ws: &mut WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>,
    headers: &str,
) -> bool {
    let greeted = ws.send(Message::text(headers.to_owned())).await.is_ok()
        && ws
            .send(Message::Ping(Bytes::from_static(b"probe")))
            .await
            .is_ok();
    if !greeted {
        return false;
    }
    let pong = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.next().await {
            if matches!(m, Message::Pong(_)) {
                return true;
            }
        }
        false
    });
    match pong.await {
        Ok(true) => ws.send(Message::text("pong received")).await.is_ok(),
        _ => false,
    }
}

/// Counts a data message and decides the answer; `None` for control frames.
async fn reply_to(message: Message, route: &WsRoute, shared: &Shared) -> Option<Reply> {
    if !(message.is_text() || message.is_binary()) {
        return None;
    }
    let stats = &shared.stats;
    stats.ws_messages.fetch_add(1, Ordering::SeqCst);
    let is_ping =
        *route == WsRoute::PingPong && matches!(&message, Message::Text(t) if t.as_str() == "ping");
    if !is_ping {
        return Some(Reply {
            message,
            is_pong: false,
        });
    }
    stats.pings.fetch_add(1, Ordering::SeqCst);
    hold_pong(shared).await;
    Some(Reply {
        message: Message::text("pong"),
        is_pong: true,
    })
}

/// Waits until enough WebSockets were open at once (see [`crate::TargetOptions`]); only this
/// session waits, other connections keep running in their own tasks.
async fn hold_pong(shared: &Shared) {
    let Some(needed) = shared.options.hold_pongs_until_open else {
        return;
    };
    let needed = u64::try_from(needed).unwrap_or(u64::MAX);
    let stats = &shared.stats;
    loop {
        // Register before checking so an open between check and await is not missed.
        let mut notified = pin!(stats.ws_opened_signal.notified());
        notified.as_mut().enable();
        if stats.ws_max_open() >= needed {
            return;
        }
        notified.await;
    }
}
