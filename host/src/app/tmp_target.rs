//! Embedded demo target: a small HTTP/1.1 + WebSocket server that scenarios can be pointed at
//! (`chaperon-host target`) and that the test-suite uses as a counting server.
//!
//! Every connection runs in its own task; a WebSocket upgrade continues in the task of the
//! connection it came from, so shutting the server down ends every socket at once.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

/// Largest `/bytes/{n}` answer, so a typo cannot make the target allocate gigabytes.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body read by `/echo` and `/items`, for the same reason.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;
/// Longest `/delay/{ms}`, so a stuck scenario cannot park connections forever.
const MAX_DELAY_MS: u64 = 10_000;
/// Pause after a failed `accept` (e.g. out of file descriptors) to avoid a busy loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);
/// Messages kept per topic for `{"last_message_sequence": N}` replays.
const TOPIC_HISTORY: usize = 1024;
/// Messages queued per subscriber; one that falls further behind skips the oldest.
const TOPIC_QUEUE: usize = 4096;
/// Distinct search queries and posted bodies tallied one by one; beyond this only the totals
/// count, so a load test with unique values cannot grow the target without bound.
const MAX_TALLY_KEYS: usize = 10_000;

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const OCTETS: &str = "application/octet-stream";

/// Response type of every route: bodies are small and fully built, so `Full` suffices.
type Resp = Response<Full<Bytes>>;

/// Knobs that tests use to make the target behave in observable ways.
#[derive(Clone, Debug, Default)]
pub struct TargetOptions {
    /// Test hook: hold back every pong until this many WebSockets have been open at the same time
    /// (proves sessions really run concurrently). None = answer at once.
    pub hold_pongs_until_open: Option<usize>,
}

/// A running demo target; it stops on [`TargetServer::shutdown`] or when dropped.
pub struct TargetServer {
    addr: SocketAddr,
    stats: Arc<TargetStats>,
    /// Sending `true` (or dropping the sender) stops the accept loop and all connections.
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TargetServer {
    /// Binds `listen` (port 0 allowed) and serves in background tokio tasks until shutdown/drop.
    pub async fn start(
        listen: SocketAddr,
        options: TargetOptions,
    ) -> std::io::Result<TargetServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(TargetStats::default());
        let shared = Arc::new(Shared {
            stats: Arc::clone(&stats),
            options,
            next_item_id: AtomicU64::new(1),
            topics: Topics::default(),
        });
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, shared, stop_rx));
        Ok(TargetServer {
            addr,
            stats,
            stop,
            task,
        })
    }

    /// The bound address (useful after binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL for scenarios, e.g. `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Live counters; they keep counting while the server runs.
    pub fn stats(&self) -> Arc<TargetStats> {
        Arc::clone(&self.stats)
    }

    /// Stops accepting, ends every open connection and waits until all of it is gone.
    pub async fn shutdown(self) {
        // An error only means the accept loop is already gone.
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Counters that let tests prove what a scenario really did on the wire.
#[derive(Debug, Default)]
pub struct TargetStats {
    http_requests: AtomicU64,
    per_route: Mutex<HashMap<(String, String), u64>>,
    connections: AtomicU64,
    ws_opened: AtomicU64,
    ws_open_now: AtomicU64,
    ws_max_open: AtomicU64,
    ws_messages: AtomicU64,
    pings: AtomicU64,
    pongs: AtomicU64,
    published: AtomicU64,
    delivered: AtomicU64,
    subscriptions: AtomicU64,
    polls: AtomicU64,
    searches: AtomicU64,
    posts: AtomicU64,
    /// Searches by query.
    queries: Tally,
    /// POST bodies by (path, body); JSON bodies in compact form with sorted keys.
    posted: Tally,
    /// Woken whenever a WebSocket opens, for `hold_pongs_until_open`.
    ws_opened_signal: Notify,
}

/// Counts by key, for at most [`MAX_TALLY_KEYS`] distinct keys.
#[derive(Debug, Default)]
struct Tally(Mutex<HashMap<(String, String), u64>>);

impl Tally {
    fn add(&self, key: (&str, &str)) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (key.0.to_owned(), key.1.to_owned());
        if let Some(n) = map.get_mut(&key) {
            *n += 1;
        } else if map.len() < MAX_TALLY_KEYS {
            map.insert(key, 1);
        }
    }

    fn get(&self, key: (&str, &str)) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (key.0.to_owned(), key.1.to_owned());
        map.get(&key).copied().unwrap_or(0)
    }

    /// Second key parts and their counts, for one first part.
    fn under(&self, first: &str) -> BTreeMap<String, u64> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .filter(|((a, _), _)| a == first)
            .map(|((_, b), n)| (b.clone(), *n))
            .collect()
    }
}

impl TargetStats {
    /// All HTTP requests (excluding WebSocket upgrades).
    pub fn http_requests(&self) -> u64 {
        self.http_requests.load(Ordering::SeqCst)
    }

    /// HTTP requests with this method (e.g. "GET") and path (without query string).
    pub fn requests_to(&self, method: &str, path: &str) -> u64 {
        let key = (method.to_owned(), path.to_owned());
        let map = self
            .per_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&key).copied().unwrap_or(0)
    }

    /// TCP connections accepted (proves keep-alive reuse).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// WebSocket upgrades completed.
    pub fn ws_opened(&self) -> u64 {
        self.ws_opened.load(Ordering::SeqCst)
    }

    /// WebSockets open right now.
    pub fn ws_open_now(&self) -> u64 {
        self.ws_open_now.load(Ordering::SeqCst)
    }

    /// High-water mark of simultaneously open WebSockets.
    pub fn ws_max_open(&self) -> u64 {
        self.ws_max_open.load(Ordering::SeqCst)
    }

    /// Text and binary messages received on all WebSockets.
    pub fn ws_messages(&self) -> u64 {
        self.ws_messages.load(Ordering::SeqCst)
    }

    /// Text messages equal to "ping" received on `/ping/pong`.
    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::SeqCst)
    }

    /// "pong" replies sent on `/ping/pong`.
    pub fn pongs(&self) -> u64 {
        self.pongs.load(Ordering::SeqCst)
    }

    /// Messages published with `POST|PUT /publish/{topic}`.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Messages sent to WebSocket subscribers of `/subscribe/{topic}` (each copy counts, replays
    /// included; counted as the send starts).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// WebSocket subscriptions to `/subscribe/{topic}` that started.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::SeqCst)
    }

    /// Plain HTTP `GET /subscribe/{topic}` requests (polls for the latest message).
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::SeqCst)
    }

    /// `GET /search` requests.
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::SeqCst)
    }

    /// `GET /search?q={query}` requests with this query (`""` when there was no `q`).
    pub fn searches_for(&self, query: &str) -> u64 {
        self.queries.get(("", query))
    }

    /// `POST /posts` requests.
    pub fn posts(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }

    /// Bodies POSTed to `path` (by `/posts` and the catch-all POST sink) with their counts;
    /// JSON bodies are in compact form with sorted keys (`serde_json::Value::to_string`),
    /// others as (lossy UTF-8) text.
    pub fn posted_bodies(&self, path: &str) -> BTreeMap<String, u64> {
        self.posted.under(path)
    }

    fn record_request(&self, method: &str, path: &str) {
        self.http_requests.fetch_add(1, Ordering::SeqCst);
        let mut map = self
            .per_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry((method.to_owned(), path.to_owned())).or_insert(0) += 1;
    }
}

/// Starts the target, announces it on stdout and serves until Ctrl-C.
pub async fn serve_until_ctrl_c(listen: SocketAddr) -> std::io::Result<()> {
    let server = TargetServer::start(listen, TargetOptions::default()).await?;
    println!(
        "chaperon demo target listening on {} (Ctrl-C to stop)",
        server.base_url()
    );
    let signal = tokio::signal::ctrl_c().await;
    server.shutdown().await;
    signal
}

/// State shared by all connections of one server.
struct Shared {
    stats: Arc<TargetStats>,
    options: TargetOptions,
    next_item_id: AtomicU64,
    topics: Topics,
}

/// Accepts until stopped, then aborts every connection task (which closes their sockets).
async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.stats.connections.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            // Reap finished connections so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Resolves once a stop was requested or the server handle was dropped.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // Err means the sender is gone, which is a stop as well.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// WebSocket endpoints of the target.
#[derive(Clone, Debug, PartialEq, Eq)]
enum WsRoute {
    PingPong,
    Echo,
    /// `/subscribe/{topic}`.
    Subscribe(String),
    /// `/ws/handshake`: reports the handshake's headers (JSON), pings the client and says
    /// "pong received" when the pong arrives, then echoes.
    Handshake(String),
}

/// An accepted upgrade, parked until hyper hands over the raw connection.
struct PendingUpgrade {
    on_upgrade: OnUpgrade,
    route: WsRoute,
    /// For `/subscribe/{topic}`: taken before the 101 answer, so a client that saw its
    /// handshake complete misses no later publication.
    subscription: Option<Subscription>,
}

type UpgradeSlot = Arc<Mutex<Option<PendingUpgrade>>>;

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

/// Which WebSocket endpoint `req` asks for, if it is a well-formed upgrade to a known one.
fn websocket_route(req: &Request<Incoming>) -> Option<WsRoute> {
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
fn accept_websocket(
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

/// Dispatches plain HTTP. HEAD is routed like GET; hyper then omits the body but keeps
/// the content-length, which is exactly what HEAD means.
async fn route(req: Request<Incoming>, shared: &Shared) -> Resp {
    let method = req.method().clone();
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segments.as_slice()) {
        ("GET", [""]) => text(StatusCode::OK, "chaperon demo target\n"),
        ("GET", ["health"]) => text(StatusCode::OK, "ok"),
        ("GET", ["items", id]) if !id.is_empty() => get_item(id),
        ("POST", ["items"]) => create_item(req, shared).await,
        ("POST" | "PUT" | "PATCH", ["echo"]) => echo(req).await,
        ("DELETE", ["items", id]) if !id.is_empty() => empty(StatusCode::NO_CONTENT),
        ("GET", ["status", code]) => status(code),
        ("GET", ["delay", ms]) => delay(ms).await,
        ("GET", ["headers"]) => json(StatusCode::OK, &headers_json(req.headers())),
        ("GET", ["cookies", "set"]) => set_cookies(req.uri().query().unwrap_or("")),
        ("GET", ["cookies"]) => json(StatusCode::OK, &cookies_json(req.headers())),
        ("GET", ["redirect", n]) => redirect(n),
        ("GET", ["bytes", n]) => bytes(n),
        ("POST" | "PUT", ["publish", topic]) if !topic.is_empty() => {
            publish(topic, req, shared).await
        }
        ("GET", ["subscribe", topic]) if !topic.is_empty() => poll(topic, shared),
        ("GET", ["search"]) => search(req.uri().query().unwrap_or(""), shared),
        ("POST", ["posts"]) => create_post(req, shared).await,
        ("POST", _) => sink(&path, req, shared).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `POST|PUT /publish/{topic}`: sends the body to every WebSocket subscriber of
/// `/subscribe/{topic}` (as text when it is UTF-8, else binary) and answers
/// `{"topic", "sequence", "subscribers"}`. Sequences count from 1 per topic.
async fn publish(topic: &str, req: Request<Incoming>, shared: &Shared) -> Resp {
    let Some((_, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::text(text),
        Err(_) => Message::binary(body),
    };
    let (sequence, subscribers) = shared.topics.publish(topic, message);
    shared.stats.published.fetch_add(1, Ordering::SeqCst);
    let answer = serde_json::json!({
        "topic": topic,
        "sequence": sequence,
        "subscribers": subscribers,
    });
    json(StatusCode::OK, &answer)
}

/// `GET /subscribe/{topic}` without an upgrade: the latest message of the topic, or 204 when
/// nothing was published to it yet.
fn poll(topic: &str, shared: &Shared) -> Resp {
    shared.stats.polls.fetch_add(1, Ordering::SeqCst);
    match shared.topics.latest(topic) {
        Some(Message::Text(t)) => text(StatusCode::OK, Bytes::from(t)),
        Some(Message::Binary(b)) => with_type(StatusCode::OK, OCTETS, b),
        _ => empty(StatusCode::NO_CONTENT),
    }
}

/// `GET /search?q=...`: three fake results for the query.
fn search(query: &str, shared: &Shared) -> Resp {
    let q = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "q")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    shared.stats.searches.fetch_add(1, Ordering::SeqCst);
    shared.stats.queries.add(("", &q));
    let results: Vec<Value> = (1..=3)
        .map(|i| serde_json::json!({ "title": format!("{q} result {i}") }))
        .collect();
    json(
        StatusCode::OK,
        &serde_json::json!({ "q": q, "results": results }),
    )
}

/// `POST /posts`: counts the post, tallies its body and answers 201 with a fresh `"id"`.
async fn create_post(req: Request<Incoming>, shared: &Shared) -> Resp {
    let Some((_, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    shared.stats.posts.fetch_add(1, Ordering::SeqCst);
    shared.stats.posted.add(("/posts", &tally_text(&body)));
    let id = shared.next_item_id.fetch_add(1, Ordering::SeqCst);
    json(StatusCode::CREATED, &serde_json::json!({ "id": id }))
}

/// `POST` to any path without a route of its own (e.g. Chaperon tutorial's `/a`, `/a/config`):
/// a sink that tallies the body and answers 201 `{"path": ...}`.
async fn sink(path: &str, req: Request<Incoming>, shared: &Shared) -> Resp {
    let Some((_, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    shared.stats.posted.add((path, &tally_text(&body)));
    json(StatusCode::CREATED, &serde_json::json!({ "path": path }))
}

/// A body as tallied: compact JSON with sorted keys, else lossy UTF-8 text.
fn tally_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => value.to_string(),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    }
}

/// Publish/subscribe topics, created on first use.
#[derive(Default)]
struct Topics(Mutex<HashMap<String, Topic>>);

struct Topic {
    tx: broadcast::Sender<Published>,
    /// The last [`TOPIC_HISTORY`] messages, oldest first.
    history: VecDeque<Published>,
    /// Sequence of the latest message (0: none yet).
    sequence: u64,
}

#[derive(Clone, Debug)]
struct Published {
    sequence: u64,
    message: Message,
}

/// One subscriber's queue, taken when its handshake was accepted.
struct Subscription {
    topic: String,
    rx: broadcast::Receiver<Published>,
    /// The topic's sequence when the subscription started: later messages come through `rx`,
    /// earlier ones only by replay.
    since: u64,
}

impl Topics {
    fn with<R>(&self, topic: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = map.entry(topic.to_owned()).or_insert_with(|| Topic {
            tx: broadcast::channel(TOPIC_QUEUE).0,
            history: VecDeque::new(),
            sequence: 0,
        });
        f(topic)
    }

    fn subscribe(&self, topic: &str) -> Subscription {
        self.with(topic, |t| Subscription {
            topic: topic.to_owned(),
            rx: t.tx.subscribe(),
            since: t.sequence,
        })
    }

    /// Sends `message` to the topic's subscribers; returns its sequence and how many got it.
    fn publish(&self, topic: &str, message: Message) -> (u64, usize) {
        self.with(topic, |t| {
            t.sequence += 1;
            let published = Published {
                sequence: t.sequence,
                message,
            };
            if t.history.len() == TOPIC_HISTORY {
                t.history.pop_front();
            }
            t.history.push_back(published.clone());
            // An error only means there is no subscriber.
            let subscribers = t.tx.send(published).unwrap_or(0);
            (t.sequence, subscribers)
        })
    }

    /// The topic's latest message; polling never creates a topic.
    fn latest(&self, topic: &str) -> Option<Message> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = map.get(topic)?.history.back()?;
        Some(latest.message.clone())
    }

    /// Kept messages with `after < sequence <= until`, oldest first.
    fn replay(&self, topic: &str, after: u64, until: u64) -> Vec<Message> {
        self.with(topic, |t| {
            t.history
                .iter()
                .filter(|p| p.sequence > after && p.sequence <= until)
                .map(|p| p.message.clone())
                .collect()
        })
    }
}

/// `{"last_message_sequence": N}` from a subscriber (Firehose's protocol): replay after N.
fn replay_request(message: &Message) -> Option<u64> {
    let Message::Text(text) = message else {
        return None;
    };
    let value: Value = serde_json::from_str(text.as_str()).ok()?;
    value.get("last_message_sequence")?.as_u64()
}

/// `GET /items/{id}`: a fake item, so scenarios can fetch "records" by id.
fn get_item(id: &str) -> Resp {
    let item = serde_json::json!({ "id": id, "name": format!("item {id}") });
    json(StatusCode::OK, &item)
}

/// `POST /items`: echoes the JSON with a fresh numeric `"id"`, like a typical create API.
/// A JSON value that is not an object comes back as `{"id": N, "value": ...}`.
async fn create_item(req: Request<Incoming>, shared: &Shared) -> Resp {
    let Some((_, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return text(StatusCode::BAD_REQUEST, "body is not JSON\n");
    };
    let id = Value::from(shared.next_item_id.fetch_add(1, Ordering::SeqCst));
    let item = match value {
        Value::Object(mut map) => {
            map.insert("id".to_owned(), id);
            Value::Object(map)
        }
        other => serde_json::json!({ "id": id, "value": other }),
    };
    json(StatusCode::CREATED, &item)
}

/// `POST|PUT|PATCH /echo`: returns the body with the same content type.
async fn echo(req: Request<Incoming>) -> Resp {
    let Some((content_type, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    let mut resp = Response::new(Full::new(body));
    if let Some(content_type) = content_type {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    resp
}

/// Reads a whole request body (up to [`MAX_REQUEST_BODY`]) and its content type.
async fn read_body(req: Request<Incoming>) -> Option<(Option<HeaderValue>, Bytes)> {
    let (parts, body) = req.into_parts();
    let collected = Limited::new(body, MAX_REQUEST_BODY).collect().await.ok()?;
    Some((
        parts.headers.get(header::CONTENT_TYPE).cloned(),
        collected.to_bytes(),
    ))
}

/// `GET /status/{code}`: any final status. 1xx is refused with 400 because hyper cannot
/// send an informational status as a final response.
fn status(code: &str) -> Resp {
    let status = code
        .parse::<u16>()
        .ok()
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok());
    match status {
        Some(s) if s == StatusCode::NO_CONTENT || s == StatusCode::NOT_MODIFIED => empty(s),
        Some(s) => text(s, format!("status {}\n", s.as_u16())),
        None => text(StatusCode::BAD_REQUEST, "status must be 200..=599\n"),
    }
}

/// `GET /delay/{ms}`: simulates a slow backend without blocking other connections.
async fn delay(ms: &str) -> Resp {
    let Ok(ms) = ms.parse::<u64>() else {
        return text(StatusCode::BAD_REQUEST, "delay must be milliseconds\n");
    };
    let ms = ms.min(MAX_DELAY_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    text(StatusCode::OK, format!("delayed {ms} ms\n"))
}

/// Request headers as a JSON object; repeated headers are joined with ", ".
fn headers_json(headers: &HeaderMap) -> Value {
    let map: Map<String, Value> = headers
        .keys()
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), Value::from(values.join(", ")))
        })
        .collect();
    Value::Object(map)
}

/// `GET /cookies/set?a=1&b=2`: one `Set-Cookie` per pair, to exercise cookie jars.
/// Pairs that cannot form a valid header are skipped; the body lists those that were set.
fn set_cookies(query: &str) -> Resp {
    let mut set = Map::new();
    let mut headers = Vec::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if let Ok(header) = HeaderValue::from_str(&format!("{name}={value}; Path=/")) {
            headers.push(header);
            set.insert(name.into_owned(), Value::from(value.into_owned()));
        }
    }
    let mut resp = json(StatusCode::OK, &Value::Object(set));
    for header in headers {
        resp.headers_mut().append(header::SET_COOKIE, header);
    }
    resp
}

/// Cookies sent by the client, as a JSON object.
fn cookies_json(headers: &HeaderMap) -> Value {
    let map: Map<String, Value> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .map(|(name, value)| (name.to_owned(), Value::from(value)))
        .collect();
    Value::Object(map)
}

/// `GET /redirect/{n}`: a chain of n redirects ending in 200, to exercise redirect following.
fn redirect(n: &str) -> Resp {
    match n.parse::<u64>() {
        Ok(0) => text(StatusCode::OK, "redirect chain done\n"),
        Ok(n) => {
            let mut resp = text(StatusCode::FOUND, "redirecting\n");
            if let Ok(location) = HeaderValue::from_str(&format!("/redirect/{}", n - 1)) {
                resp.headers_mut().insert(header::LOCATION, location);
            }
            resp
        }
        Err(_) => text(StatusCode::BAD_REQUEST, "redirect count must be a number\n"),
    }
}

/// `GET /bytes/{n}`: n bytes (capped at [`MAX_BYTES`]) to measure download throughput.
fn bytes(n: &str) -> Resp {
    let Ok(n) = n.parse::<usize>() else {
        return text(StatusCode::BAD_REQUEST, "byte count must be a number\n");
    };
    // A repeating 0..=255 pattern makes truncation visible, unlike a constant fill.
    let body: Vec<u8> = (0..n.min(MAX_BYTES)).map(|i| (i % 256) as u8).collect();
    with_type(StatusCode::OK, OCTETS, Bytes::from(body))
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    with_type(status, TEXT, body.into())
}

fn json(status: StatusCode, value: &Value) -> Resp {
    with_type(status, JSON, Bytes::from(value.to_string()))
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
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
async fn run_websocket(io: TokioIo<hyper::upgrade::Upgraded>, route: WsRoute, shared: &Shared) {
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
async fn run_subscriber(
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

/// Waits until enough WebSockets were open at once (see [`TargetOptions`]); only this
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

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::client::conn::http1::SendRequest;
    use std::net::Ipv4Addr;

    const WAIT: Duration = Duration::from_secs(5);

    async fn start(options: TargetOptions) -> TargetServer {
        let listen = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        TargetServer::start(listen, options)
            .await
            .expect("start target")
    }

    async fn client(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        sender
    }

    async fn send(
        sender: &mut SendRequest<Full<Bytes>>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> (StatusCode, HeaderMap, Bytes) {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "127.0.0.1");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let req = builder
            .body(Full::new(Bytes::from_static(body)))
            .expect("request");
        // The previous response may still be finishing; hyper refuses a request until then.
        sender.ready().await.expect("connection ready");
        let resp = sender.send_request(req).await.expect("send");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    }

    async fn get(addr: SocketAddr, path: &str) -> (StatusCode, HeaderMap, Bytes) {
        send(&mut client(addr).await, Method::GET, path, &[], b"").await
    }

    fn body_json(body: &Bytes) -> Value {
        serde_json::from_slice(body).expect("json body")
    }

    type Ws = WebSocketStream<TcpStream>;

    async fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}{path}"), tcp)
            .await
            .expect("ws handshake");
        assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
        ws
    }

    async fn next_text(ws: &mut Ws) -> String {
        loop {
            let msg = tokio::time::timeout(WAIT, ws.next())
                .await
                .expect("reply in time")
                .expect("stream open")
                .expect("message");
            if let Message::Text(text) = msg {
                return text.as_str().to_owned();
            }
        }
    }

    async fn eventually(what: &str, check: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !check() {
            assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_routes() {
        let server = start(TargetOptions::default()).await;
        let addr = server.addr();
        assert_eq!(
            server.base_url(),
            format!("http://127.0.0.1:{}", addr.port())
        );

        let (status, _, body) = get(addr, "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"chaperon demo target\n");

        let (status, headers, body) = get(addr, "/items/42").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], JSON);
        assert_eq!(
            body_json(&body),
            serde_json::json!({"id": "42", "name": "item 42"})
        );

        assert_eq!(get(addr, "/health").await.2, "ok");
        assert_eq!(get(addr, "/nope").await.0, StatusCode::NOT_FOUND);
        assert_eq!(
            get(addr, "/status/503").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(get(addr, "/status/204").await.0, StatusCode::NO_CONTENT);
        assert_eq!(get(addr, "/status/99").await.0, StatusCode::BAD_REQUEST);
        assert_eq!(get(addr, "/bytes/300").await.2.len(), 300);
        assert_eq!(get(addr, "/delay/1").await.0, StatusCode::OK);

        let stats = server.stats();
        assert_eq!(stats.requests_to("GET", "/items/42"), 1);
        assert_eq!(stats.http_requests(), 9);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn head_redirect_headers_and_cookies() {
        let server = start(TargetOptions::default()).await;
        let mut c = client(server.addr()).await;

        let (status, headers, body) = send(&mut c, Method::HEAD, "/bytes/10", &[], b"").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_LENGTH], "10");
        assert!(body.is_empty());

        let (status, headers, _) = send(&mut c, Method::GET, "/redirect/2", &[], b"").await;
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(headers[header::LOCATION], "/redirect/1");
        assert_eq!(
            send(&mut c, Method::GET, "/redirect/0", &[], b"").await.0,
            StatusCode::OK
        );

        let (_, _, body) = send(&mut c, Method::GET, "/headers", &[("X-Test", "yes")], b"").await;
        assert_eq!(body_json(&body)["x-test"], "yes");

        let (_, headers, _) = send(&mut c, Method::GET, "/cookies/set?a=1&b=2", &[], b"").await;
        let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
        assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);

        let (_, _, body) = send(
            &mut c,
            Method::GET,
            "/cookies",
            &[("cookie", "a=1; b=2")],
            b"",
        )
        .await;
        assert_eq!(body_json(&body), serde_json::json!({"a": "1", "b": "2"}));

        let status = send(&mut c, Method::DELETE, "/items/3", &[], b"").await.0;
        assert_eq!(status, StatusCode::NO_CONTENT);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn post_echo_and_items() {
        let server = start(TargetOptions::default()).await;
        let mut c = client(server.addr()).await;
        let xml = [("content-type", "application/xml")];

        let (status, headers, body) = send(&mut c, Method::POST, "/echo", &xml, b"<a/>").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/xml");
        assert_eq!(&body[..], b"<a/>");
        assert_eq!(send(&mut c, Method::PUT, "/echo", &[], b"x").await.2, "x");

        let (status, _, body) = send(&mut c, Method::POST, "/items", &[], br#"{"n":1}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body_json(&body), serde_json::json!({"n": 1, "id": 1}));
        let (status, _, body) = send(&mut c, Method::POST, "/items", &[], b"[]").await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body_json(&body)["id"], 2);
        let status = send(&mut c, Method::POST, "/items", &[], b"not json")
            .await
            .0;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        assert_eq!(server.stats().requests_to("POST", "/items"), 3);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keep_alive_reuses_one_connection() {
        let server = start(TargetOptions::default()).await;
        let mut c = client(server.addr()).await;
        assert_eq!(
            send(&mut c, Method::GET, "/", &[], b"").await.0,
            StatusCode::OK
        );
        assert_eq!(
            send(&mut c, Method::GET, "/health", &[], b"").await.0,
            StatusCode::OK
        );
        let stats = server.stats();
        assert_eq!(stats.connections(), 1);
        assert_eq!(stats.http_requests(), 2);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_ping_pong_and_echo() {
        let server = start(TargetOptions::default()).await;
        let stats = server.stats();

        let mut ws = ws_connect(server.addr(), "/ping/pong").await;
        ws.send(Message::text("ping")).await.expect("send");
        assert_eq!(next_text(&mut ws).await, "pong");
        ws.send(Message::text("hello")).await.expect("send");
        assert_eq!(next_text(&mut ws).await, "hello");

        let mut echo = ws_connect(server.addr(), "/ws/echo").await;
        echo.send(Message::binary(vec![1u8, 2, 3]))
            .await
            .expect("send");
        let reply = tokio::time::timeout(WAIT, echo.next())
            .await
            .expect("in time");
        assert_eq!(
            reply.expect("open").expect("msg"),
            Message::binary(vec![1u8, 2, 3])
        );

        ws.close(None).await.expect("close");
        echo.close(None).await.expect("close");
        eventually("sockets closed", || stats.ws_open_now() == 0).await;
        assert_eq!(stats.ws_opened(), 2);
        assert_eq!(stats.ws_max_open(), 2);
        assert_eq!(stats.ws_messages(), 3);
        assert_eq!((stats.pings(), stats.pongs()), (1, 1));
        assert_eq!(stats.http_requests(), 0);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pongs_are_held_until_enough_sockets_are_open() {
        let options = TargetOptions {
            hold_pongs_until_open: Some(2),
        };
        let server = start(options).await;
        let stats = server.stats();

        let mut first = ws_connect(server.addr(), "/ping/pong").await;
        first.send(Message::text("ping")).await.expect("send");
        eventually("first ping counted", || stats.pings() == 1).await;
        let early = tokio::time::timeout(Duration::from_millis(300), first.next()).await;
        assert!(
            early.is_err(),
            "pong arrived before the second socket opened"
        );
        assert_eq!(stats.pongs(), 0);

        let mut second = ws_connect(server.addr(), "/ping/pong").await;
        assert_eq!(next_text(&mut first).await, "pong");
        second.send(Message::text("ping")).await.expect("send");
        assert_eq!(next_text(&mut second).await, "pong");
        assert_eq!(stats.ws_max_open(), 2);
        server.shutdown().await;
    }

    /// Waits of the pub/sub, search and post tests.
    const QUICK: Duration = Duration::from_secs(2);

    async fn recv_within(ws: &mut Ws) -> Message {
        loop {
            let msg = tokio::time::timeout(QUICK, ws.next())
                .await
                .expect("message in time")
                .expect("stream open")
                .expect("message");
            if msg.is_text() || msg.is_binary() {
                return msg;
            }
        }
    }

    async fn nothing_within(ws: &mut Ws, ms: u64) {
        let early = tokio::time::timeout(Duration::from_millis(ms), ws.next()).await;
        assert!(early.is_err(), "unexpected message: {early:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_reaches_every_subscriber_of_its_topic_only() {
        let server = start(TargetOptions::default()).await;
        let addr = server.addr();
        let stats = server.stats();
        let mut a = ws_connect(addr, "/subscribe/news").await;
        let mut b = ws_connect(addr, "/subscribe/news").await;
        let mut other = ws_connect(addr, "/subscribe/sports").await;
        let mut c = client(addr).await;

        // The subscription exists as soon as the handshake is answered.
        let (status, _, body) = send(&mut c, Method::POST, "/publish/news", &[], b"hello").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body_json(&body),
            serde_json::json!({"topic": "news", "sequence": 1, "subscribers": 2})
        );
        assert_eq!(recv_within(&mut a).await, Message::text("hello"));
        assert_eq!(recv_within(&mut b).await, Message::text("hello"));

        let (_, _, body) = send(&mut c, Method::PUT, "/publish/news", &[], b"\xff\x00").await;
        assert_eq!(body_json(&body)["sequence"], 2);
        assert_eq!(recv_within(&mut a).await, Message::binary(vec![0xffu8, 0]));
        assert_eq!(recv_within(&mut b).await, Message::binary(vec![0xffu8, 0]));
        nothing_within(&mut other, 100).await;

        // A plain GET polls the latest message; 204 when there is none.
        let (status, _, body) = send(&mut c, Method::GET, "/subscribe/news", &[], b"").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &[0xffu8, 0][..]));
        let (status, _, _) = send(&mut c, Method::GET, "/subscribe/empty", &[], b"").await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        for ws in [&mut a, &mut b, &mut other] {
            ws.close(None).await.expect("close");
        }
        eventually("sockets closed", || stats.ws_open_now() == 0).await;
        assert_eq!(stats.published(), 2);
        assert_eq!(stats.delivered(), 4);
        assert_eq!(stats.subscriptions(), 3);
        assert_eq!(stats.polls(), 2);
        assert_eq!(stats.requests_to("POST", "/publish/news"), 1);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_can_ask_for_earlier_messages() {
        let server = start(TargetOptions::default()).await;
        let addr = server.addr();
        let mut c = client(addr).await;
        let bodies: [&'static [u8]; 3] = [b"one", b"two", b"three"];
        for body in bodies {
            send(&mut c, Method::POST, "/publish/t", &[], body).await;
        }
        let mut ws = ws_connect(addr, "/subscribe/t").await;
        nothing_within(&mut ws, 100).await;
        let ask = Message::text(r#"{"last_message_sequence": 1}"#);
        ws.send(ask).await.expect("send");
        assert_eq!(recv_within(&mut ws).await, Message::text("two"));
        assert_eq!(recv_within(&mut ws).await, Message::text("three"));
        send(&mut c, Method::POST, "/publish/t", &[], b"four").await;
        assert_eq!(recv_within(&mut ws).await, Message::text("four"));
        // A replay never repeats what came live.
        let again = Message::text(r#"{"last_message_sequence": 3}"#);
        ws.send(again).await.expect("send");
        nothing_within(&mut ws, 100).await;
        let stats = server.stats();
        assert_eq!((stats.published(), stats.delivered()), (4, 3));
        assert_eq!(stats.ws_messages(), 2);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn searches_posts_and_the_post_sink_are_counted() {
        let server = start(TargetOptions::default()).await;
        let mut c = client(server.addr()).await;

        let (status, _, body) = send(&mut c, Method::GET, "/search?q=foo%20bar", &[], b"").await;
        assert_eq!(status, StatusCode::OK);
        let found = body_json(&body);
        assert_eq!(found["q"], "foo bar");
        assert_eq!(found["results"][2]["title"], "foo bar result 3");
        send(&mut c, Method::GET, "/search?q=foo+bar", &[], b"").await;
        send(&mut c, Method::GET, "/search", &[], b"").await;

        let (status, _, body) = send(&mut c, Method::POST, "/posts", &[], br#"{"m": 1}"#).await;
        assert_eq!(status, StatusCode::CREATED);
        assert!(body_json(&body)["id"].is_u64());
        send(&mut c, Method::POST, "/posts", &[], br#"{ "m":1 }"#).await;

        let body = br#"{"b": 2, "a": 1}"#;
        let (status, _, reply) = send(&mut c, Method::POST, "/a/config", &[], body).await;
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(body_json(&reply), serde_json::json!({"path": "/a/config"}));
        send(&mut c, Method::POST, "/a/config", &[], b"plain").await;
        // Only POST has a sink; other methods on unknown paths stay 404.
        let status = send(&mut c, Method::PUT, "/a/config", &[], b"x").await.0;
        assert_eq!(status, StatusCode::NOT_FOUND);

        let stats = server.stats();
        assert_eq!(stats.searches(), 3);
        assert_eq!(stats.searches_for("foo bar"), 2);
        assert_eq!(stats.searches_for(""), 1);
        assert_eq!(stats.posts(), 2);
        let posts = stats.posted_bodies("/posts");
        assert_eq!(posts, BTreeMap::from([(r#"{"m":1}"#.to_owned(), 2)]));
        let sunk = stats.posted_bodies("/a/config");
        let want = [(r#"{"a":1,"b":2}"#.to_owned(), 1), ("plain".to_owned(), 1)];
        assert_eq!(sunk, BTreeMap::from(want));
        assert_eq!(stats.requests_to("POST", "/a/config"), 2);
        server.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shutdown_ends_open_connections() {
        let server = start(TargetOptions::default()).await;
        let addr = server.addr();
        let mut ws = ws_connect(addr, "/ws/echo").await;
        server.shutdown().await;
        let end = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("ended in time");
        assert!(!matches!(
            end,
            Some(Ok(Message::Text(_) | Message::Binary(_)))
        ));
        assert!(TcpStream::connect(addr).await.is_err());
    }
}
