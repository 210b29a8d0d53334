//! Connection bursts ("connection storms") and the target on its own runtime.

use super::*;
use std::io::{Read, Write};

/// A burst larger than tokio's default backlog (1024).
const BURST: usize = 1500;

fn localhost() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// The kernel's cap on listen backlogs, where it can be read.
fn somaxconn() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok()?;
    text.trim().parse().ok()
}

/// Opens `n` connections one after the other, each within `within`, and keeps them open.
fn connect_many(addr: SocketAddr, n: usize, within: Duration) -> Vec<std::net::TcpStream> {
    (0..n)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&addr, within)
                .unwrap_or_else(|e| panic!("connection {i} of {n}: {e}"))
        })
        .collect()
}

/// A blocking `GET` that owns its connection; the raw response.
fn blocking_get(addr: SocketAddr, path: &str) -> String {
    let mut tcp = std::net::TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    tcp.set_read_timeout(Some(WAIT)).expect("read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).expect("write");
    let mut response = String::new();
    tcp.read_to_string(&mut response).expect("read");
    response
}

fn wait_blocking(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test]
async fn the_listener_queues_a_burst_that_nobody_accepts_yet() {
    if somaxconn().is_none_or(|max| max <= BURST) {
        eprintln!("skipped: net.core.somaxconn unknown or too small for {BURST}");
        return;
    }
    let listener = crate::server::bind(localhost()).expect("bind");
    let addr = listener.local_addr().expect("addr");
    // A dropped SYN is retried only after a second, so a full queue shows as a timeout.
    let clients = connect_many(addr, BURST, Duration::from_millis(500));
    assert_eq!(clients.len(), BURST);
}

#[test]
fn own_runtime_serves_a_burst_without_a_runtime_of_the_caller() {
    let server = TargetServer::start_on_own_runtime(localhost(), TargetOptions::default())
        .expect("start target");
    let addr = server.addr();
    let stats = server.stats();
    let clients = connect_many(addr, BURST, WAIT);
    wait_blocking("burst accepted", || stats.connections() == BURST as u64);
    let response = blocking_get(addr, "/health");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("\r\n\r\nok"), "{response}");
    assert_eq!(stats.requests_to("GET", "/health"), 1);

    drop(clients);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(server.shutdown());
    assert!(std::net::TcpStream::connect_timeout(&addr, WAIT).is_err());
}

#[tokio::test(flavor = "current_thread")]
async fn own_runtime_answers_while_the_callers_runtime_is_blocked() {
    let server = TargetServer::start_on_own_runtime(localhost(), TargetOptions::default())
        .expect("start target");
    // Blocks the only thread of this runtime: a target started with `start` could not answer.
    let response = blocking_get(server.addr(), "/items/7");
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains(r#""name":"item 7""#), "{response}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_own_runtime_target_stops_it() {
    let server = TargetServer::start_on_own_runtime(localhost(), TargetOptions::default())
        .expect("start target");
    let addr = server.addr();
    let mut ws = ws_connect(addr, "/ws/echo").await;
    drop(server);
    assert_ended(&mut ws).await;
    // The listener closes right after the connections, on the target's own thread.
    let deadline = tokio::time::Instant::now() + WAIT;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
