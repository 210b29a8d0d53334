//! Unit tests of the target, driven over real loopback sockets: helpers and the HTTP routes
//! here, WebSocket and pub/sub in `ws`, connection bursts and the own runtime in `burst`.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::http_routes::JSON;
use crate::{TargetOptions, TargetServer};

mod burst;
mod ws;

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

/// The socket ends (closes or errors) within [`WAIT`] without another message.
async fn assert_ended(ws: &mut Ws) {
    let end = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("ended in time");
    assert!(!matches!(
        end,
        Some(Ok(Message::Text(_) | Message::Binary(_)))
    ));
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
    assert_ended(&mut ws).await;
    assert!(TcpStream::connect(addr).await.is_err());
}
