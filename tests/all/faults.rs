//! Catalogue B (../shared/reference/style-and-reliability.md §2.8): network faults.
//!
//! Every test starts its own fault-injecting servers on 127.0.0.1:0: raw TCP that misbehaves on
//! purpose (never answers, trickles, lies about its length, resets, sends garbage), rustls for
//! bad certificates, tokio-tungstenite for WebSocket faults. The evil guest drives them in mode
//! `fetch` (HTTP) or `ws_fault` (WebSocket), which record every outcome as a check naming the
//! exact request-error kind (`fetch refused`, `ws recv reset`, ...) and its wall time as a
//! sample of `fetch time OUTCOME` / `ws connect time OUTCOME` (µs). Timing asserts are upper
//! bounds with generous margins (a noisy 2-core machine).

use crate::merge::tempdir;
use crate::support::{bin, ended, guest, metric, plan, run};
use chaperon_host::plan::RunPlan;
use chaperon_host::report::Report;
use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Ws;

const MIB: usize = 1 << 20;

pub(crate) type Counter = Arc<AtomicU64>;

pub(crate) fn counter() -> Counter {
    Arc::new(AtomicU64::new(0))
}

// ------------------------------------------------------------------------------ fault servers

/// A TCP server on 127.0.0.1:0 running `handler` on every connection it accepts; returns its
/// address and a count of the connections. It lives as long as the test's runtime.
pub(crate) async fn serve<F, Fut>(handler: F) -> (SocketAddr, Counter)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = counter();
    let seen = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            seen.fetch_add(1, Relaxed);
            tokio::spawn(handler(socket));
        }
    });
    (addr, connections)
}

/// One HTTP/1.1 request as the fault servers read it.
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) path: String,
    body: Vec<u8>,
}

/// Reads the next request on `socket` (head and a Content-Length body); `None` at EOF.
pub(crate) async fn read_request(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Req> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                read_more(socket, buf).await?;
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            let mut first = head.lines().next()?.split(' ');
            let method = first.next()?.to_owned();
            let path = first.next()?.to_owned();
            return Some(Req { method, path, body });
        }
        read_more(socket, buf).await?;
    }
}

async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 8192];
    match socket.read(&mut chunk).await {
        Ok(n) if n > 0 => {
            buf.extend_from_slice(&chunk[..n]);
            Some(())
        }
        _ => None,
    }
}

/// A complete keep-alive response with a text body.
pub(crate) fn response(status: u16, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} Fault\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Answers every request on `socket` with `200 ok`, counting them in `served`.
async fn answer_ok(mut socket: TcpStream, served: Counter) {
    let mut buf = Vec::new();
    while read_request(&mut socket, &mut buf).await.is_some() {
        served.fetch_add(1, Relaxed);
        if socket.write_all(&response(200, "ok")).await.is_err() {
            return;
        }
    }
}

/// A server answering `200 ok` to everything; returns its address and a count of requests.
pub(crate) async fn ok_server() -> (SocketAddr, Counter) {
    let served = counter();
    let count = served.clone();
    let (addr, _) = serve(move |socket| answer_ok(socket, count.clone())).await;
    (addr, served)
}

/// A server that accepts and reads but never answers, holding every socket until the peer
/// closes it.
async fn silent_server() -> SocketAddr {
    serve(|mut socket| async move {
        let mut buf = [0u8; 1024];
        while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
    })
    .await
    .0
}

/// A server that reads one request, writes `bytes` and closes the connection (FIN).
pub(crate) async fn one_shot_server(bytes: Vec<u8>) -> SocketAddr {
    let bytes = Arc::new(bytes);
    serve(move |mut socket| {
        let bytes = bytes.clone();
        async move {
            let mut buf = Vec::new();
            if read_request(&mut socket, &mut buf).await.is_some() {
                let _ = socket.write_all(&bytes).await;
                let _ = socket.shutdown().await;
            }
        }
    })
    .await
    .0
}

/// A loopback port nothing listens on (bound, then released).
pub(crate) fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Closes `socket` with an RST instead of a FIN.
fn reset(socket: &TcpStream) {
    // SO_LINGER 0: close() sends an RST at once and does not block.
    #[expect(deprecated, reason = "a zero linger is the point: an RST, no blocking")]
    socket.set_linger(Some(Duration::ZERO)).unwrap();
}

/// A WebSocket server: every accepted handshake is handed to `handler`.
async fn ws_server<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(WebSocketStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = Arc::new(handler);
    serve(move |socket| {
        let handler = handler.clone();
        async move {
            if let Ok(ws) = tokio_tungstenite::accept_async(socket).await {
                handler(ws).await;
            }
        }
    })
    .await
    .0
}

/// Reads and drops whatever the client sends until it closes.
async fn drain_ws(ws: &mut WebSocketStream<TcpStream>) {
    while let Some(Ok(_)) = ws.next().await {}
}

/// Resident memory of this process, KiB (`VmRSS`).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Samples [`rss_kib`] every 20 ms; the highest value so far.
fn watch_rss() -> Counter {
    let peak = Arc::new(AtomicU64::new(rss_kib()));
    let watch = peak.clone();
    tokio::spawn(async move {
        loop {
            watch.fetch_max(rss_kib(), Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    peak
}

// ----------------------------------------------------------------------------------- the guest

/// The evil guest in mode `fetch` over `urls`, `sessions` sessions with base URL `base`, extra
/// `--config` values; any loopback port is reachable.
pub(crate) fn fetch_plan(
    base: SocketAddr,
    sessions: u32,
    urls: &[String],
    extra: &[&str],
) -> RunPlan {
    let urls = format!("evil.urls={}", serde_json::to_string(urls).unwrap());
    let mut config = vec!["evil.mode=fetch", urls.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", sessions, Some(format!("http://{base}")), &config);
    plan.limits.session_timeout = Duration::from_secs(30);
    plan.allow("127.0.0.1").expect("valid allow entry");
    plan
}

/// The evil guest in mode `ws_fault` on `base` + `path`, running `steps`.
fn ws_plan(base: SocketAddr, sessions: u32, path: &str, steps: &[&str], extra: &[&str]) -> RunPlan {
    let path = format!("evil.path={path}");
    let steps = format!("evil.ws_steps={}", serde_json::to_string(steps).unwrap());
    let mut config = vec!["evil.mode=ws_fault", path.as_str(), steps.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", sessions, Some(format!("http://{base}")), &config);
    plan.limits.session_timeout = Duration::from_secs(30);
    plan
}

/// Every check that passed at least once, with its count.
pub(crate) fn checks(r: &Report) -> BTreeMap<String, u64> {
    r.checks
        .iter()
        .filter(|(_, c)| c.passed > 0)
        .map(|(name, c)| (name.clone(), c.passed))
        .collect()
}

pub(crate) fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// A metric's transport errors (and unexpected statuses) by kind.
fn kinds(r: &Report, key: &str) -> BTreeMap<String, u64> {
    metric(r, key).errors_by_kind.clone()
}

/// The passed count of check `name` (0 when it never passed).
fn passed(r: &Report, name: &str) -> u64 {
    r.checks.get(name).map_or(0, |c| c.passed)
}

/// Asserts that every sample of the wall-time metric `key` (`fetch time OUTCOME` or `ws connect
/// time OUTCOME`, µs) is between `min_ms` and `max_ms`.
fn took(r: &Report, key: &str, min_ms: u64, max_ms: u64) {
    let m = metric(r, key);
    let (min, max) = (m.min / 1000, m.max / 1000);
    assert!(
        min >= min_ms && max < max_ms,
        "`{key}` took {min}..{max} ms, expected {min_ms}..{max_ms} ms"
    );
}

// --------------------------------------------------------------------------------------- HTTP

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b1_connection_refused_is_a_fast_refused_error_and_the_session_goes_on() {
    let (live, served) = ok_server().await;
    let dead = closed_port();
    let urls = [format!("http://127.0.0.1:{dead}/dead"), "/live".to_owned()];
    let r = run(&fetch_plan(live, 2, &urls, &["evil.repeat=2"]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[("fetch refused", 4), ("fetch status 200", 4)]),
        "each refusal is followed by the next request: {}",
        r.summary_table()
    );
    assert_eq!(metric(&r, "http GET /dead").count, 0, "no latency sample");
    assert_eq!(kinds(&r, "http GET /dead"), map(&[("refused", 4)]));
    took(&r, "fetch time refused", 0, 2000);
    assert_eq!(served.load(Relaxed), 4);
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b2_a_connect_that_never_completes_is_a_connect_timeout() {
    // A listener with a backlog of 0 that never accepts: one connect fills its accept queue,
    // and Linux then drops every further SYN, so a connect hangs (SYN retries) until its
    // timeout. The fillers make sure the queue is full before the guest connects.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let _queued = TcpStream::connect(addr).await.unwrap();
    let fillers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(TcpStream::connect(addr)))
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut plan = fetch_plan(addr, 2, &["/".to_owned()], &[]);
    plan.limits.connect_timeout = Duration::from_secs(1);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch connect-timeout", 2)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(
        metric(&r, "http GET /").count,
        0,
        "not recorded as a success"
    );
    assert_eq!(kinds(&r, "http GET /"), map(&[("connect-timeout", 2)]));
    took(&r, "fetch time connect-timeout", 900, 5000);
    for filler in fillers {
        filler.abort();
    }
    drop(listener);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b3_a_server_that_never_answers_is_a_timeout_at_the_request_timeout() {
    let addr = silent_server().await;
    let mut plan = fetch_plan(addr, 2, &["/hang".to_owned()], &[]);
    plan.limits.request_timeout = Duration::from_secs(1);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch timeout", 2)]),
        "{}",
        r.summary_table()
    );
    let hang = metric(&r, "http GET /hang");
    assert_eq!(hang.count, 0, "not in the success latency");
    assert_eq!(hang.errors_by_kind, map(&[("timeout", 2)]));
    assert_eq!(r.total_errors(), 2, "counted in the error rate");
    took(&r, "fetch time timeout", 900, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b4_a_trickled_body_times_out_at_the_request_timeout() {
    let trickled = counter();
    let count = trickled.clone();
    let (addr, _) = serve(move |mut socket| {
        let count = count.clone();
        async move {
            let mut buf = Vec::new();
            if read_request(&mut socket, &mut buf).await.is_none() {
                return;
            }
            let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
            if socket.write_all(head).await.is_err() {
                return;
            }
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if socket.write_all(b"x").await.is_err() {
                    return;
                }
                count.fetch_add(1, Relaxed);
            }
        }
    })
    .await;
    let mut plan = fetch_plan(addr, 2, &["/trickle".to_owned()], &[]);
    plan.limits.request_timeout = Duration::from_secs(1);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch timeout", 2)]),
        "the timeout covers the body: {}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "http GET /trickle"), map(&[("timeout", 2)]));
    assert_eq!(metric(&r, "http GET /trickle").count, 0);
    assert!(
        trickled.load(Relaxed) >= 2,
        "the headers came at once and the body was trickling when the timeout hit"
    );
    took(&r, "fetch time timeout", 900, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b5_a_body_shorter_than_its_content_length_is_a_protocol_error() {
    let short = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789".to_vec();
    let addr = one_shot_server(short).await;
    let r = run(&fetch_plan(addr, 2, &["/short".to_owned()], &[]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[("fetch protocol", 2)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "http GET /short"), map(&[("protocol", 2)]));
    assert_eq!(ended(&r, "completed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b6_a_reset_mid_response_is_a_reset_error() {
    let (addr, _) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        if read_request(&mut socket, &mut buf).await.is_none() {
            return;
        }
        let part = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789";
        let _ = socket.write_all(part).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        reset(&socket);
    })
    .await;
    let r = run(&fetch_plan(addr, 2, &["/rst".to_owned()], &[]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[("fetch reset", 2)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "http GET /rst"), map(&[("reset", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b7_a_1_gib_body_is_cut_at_16_mib_flagged_truncated_and_drained_in_bounded_memory() {
    // docs/design.md: the guest gets at most `max_response_body` (16 MiB), the rest is drained
    // and counted, and the response says `body-truncated` (the catalogue's first option).
    const GIB: u64 = 1 << 30;
    let (addr, _) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        if read_request(&mut socket, &mut buf).await.is_none() {
            return;
        }
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {GIB}\r\n\r\n");
        if socket.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b'z'; MIB];
        for _ in 0..GIB / MIB as u64 {
            if socket.write_all(&chunk).await.is_err() {
                return;
            }
        }
    })
    .await;
    let before = rss_kib();
    let peak = watch_rss();
    let r = run(&fetch_plan(addr, 1, &["/huge".to_owned()], &[]))
        .await
        .report;
    let kept = format!("fetch kept {} bytes", 16 * MIB);
    assert_eq!(
        checks(&r),
        map(&[("fetch status 200 truncated", 1), (kept.as_str(), 1)]),
        "the guest got exactly the cap: {}",
        r.summary_table()
    );
    assert!(
        r.counters["bytes received"] >= GIB,
        "the rest was drained and counted: {:?}",
        r.counters
    );
    let grown = peak.load(Relaxed).saturating_sub(before);
    assert!(
        grown < 512 * 1024,
        "host RSS grew {grown} KiB for a 1 GiB body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b8_a_1_mib_header_or_10k_headers_is_a_protocol_error() {
    let (addr, _) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        let Some(req) = read_request(&mut socket, &mut buf).await else {
            return;
        };
        let mut out = b"HTTP/1.1 200 OK\r\n".to_vec();
        if req.path == "/huge-header" {
            out.extend_from_slice(b"X-Big: ");
            out.extend(std::iter::repeat_n(b'a', MIB));
            out.extend_from_slice(b"\r\n");
        } else {
            for i in 0..10_000 {
                out.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
            }
        }
        out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        let _ = socket.write_all(&out).await;
    })
    .await;
    let urls = ["/huge-header".to_owned(), "/many-headers".to_owned()];
    let r = run(&fetch_plan(addr, 2, &urls, &[])).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch protocol", 4)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "http GET /huge-header"), map(&[("protocol", 2)]));
    assert_eq!(kinds(&r, "http GET /many-headers"), map(&[("protocol", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b9_garbage_instead_of_http_is_a_protocol_error() {
    let garbage = b"\x00\x01\x02 this is not HTTP \xff\xfe\r\n\r\n".to_vec();
    let addr = one_shot_server(garbage).await;
    let r = run(&fetch_plan(addr, 2, &["/garbage".to_owned()], &[]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[("fetch protocol", 2)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "http GET /garbage"), map(&[("protocol", 2)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b10_error_statuses_are_responses_counted_by_the_expected_status_rules() {
    let (addr, _) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        while let Some(req) = read_request(&mut socket, &mut buf).await {
            let status = req
                .path
                .strip_prefix("/status/")
                .and_then(|s| s.parse().ok())
                .unwrap_or(200);
            if socket.write_all(&response(status, "s")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let urls = ["/status/500", "/status/404", "/status/429", "/status/200"].map(String::from);
    let r = run(&fetch_plan(addr, 2, &urls, &[])).await.report;
    assert_eq!(
        checks(&r),
        map(&[
            ("fetch status 200", 2),
            ("fetch status 404 unexpected", 2),
            ("fetch status 429 unexpected", 2),
            ("fetch status 500 unexpected", 2),
        ]),
        "{}",
        r.summary_table()
    );
    for status in [500, 404, 429] {
        let m = metric(&r, &format!("http GET /status/{status}"));
        assert_eq!(m.count, 2, "a response is a latency sample");
        assert_eq!(
            m.errors_by_kind,
            map(&[(format!("status {status}").as_str(), 2)]),
            "an unexpected status, not a transport error"
        );
    }
    assert_eq!(metric(&r, "http GET /status/200").errors, 0);
    assert_eq!(ended(&r, "completed"), 2, "a status never ends the session");
}

/// A self-signed certificate (and its key) for `name`, expired when `expired`.
fn certificate(
    name: &str,
    expired: bool,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
    String,
) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} {expired}"));
    if expired {
        params.not_before = rcgen::date_time_ymd(2000, 1, 1);
        params.not_after = rcgen::date_time_ymd(2001, 1, 1);
    }
    let cert = params.self_signed(&key).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    (der, key, cert.pem())
}

/// An HTTPS server with `cert`, answering 200 to everything; returns its port and a count of
/// the requests it answered.
async fn https_server(
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> (u16, Counter) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let served = counter();
    let count = served.clone();
    let (addr, _) = serve(move |tcp| {
        let (acceptor, count) = (acceptor.clone(), count.clone());
        async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |_req| {
                count.fetch_add(1, Relaxed);
                async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"tls ok")),
                    ))
                }
            });
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        }
    })
    .await;
    (addr.port(), served)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b11_untrusted_expired_or_misnamed_certificates_are_tls_errors_unless_insecure() {
    let (der, key, _) = certificate("localhost", false);
    let (untrusted, untrusted_served) = https_server(der, key).await;
    let (der, key, expired_pem) = certificate("localhost", true);
    let (expired, expired_served) = https_server(der, key).await;
    let (der, key, misnamed_pem) = certificate("elsewhere.example", false);
    let (misnamed, misnamed_served) = https_server(der, key).await;
    // The CA file trusts the expired and the misnamed certificates, so their only fault is
    // the date or the name; the untrusted one is in no trust store.
    let ca = tempdir().join(format!("b11-ca-{expired}.pem"));
    std::fs::write(&ca, format!("{expired_pem}{misnamed_pem}")).unwrap();
    let urls = [
        format!("https://localhost:{untrusted}/untrusted"),
        format!("https://localhost:{expired}/expired"),
        format!("https://localhost:{misnamed}/misnamed"),
    ];
    let plan_with = |tls| {
        let json = serde_json::to_string(&urls).unwrap();
        let urls = format!("evil.urls={json}");
        let base = format!("https://localhost:{untrusted}");
        let mut plan = plan("evil", 1, Some(base), &["evil.mode=fetch", &urls]);
        plan.limits.session_timeout = Duration::from_secs(30);
        for entry in ["localhost", "127.0.0.1"] {
            plan.allow(entry).expect("valid allow entry");
        }
        plan.tls = tls;
        plan
    };
    let verified = chaperon_host::net::tls::client_config(Some(&ca), false).unwrap();
    let r = run(&plan_with(verified)).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch tls", 3)]),
        "{}",
        r.summary_table()
    );
    for path in ["/untrusted", "/expired", "/misnamed"] {
        assert_eq!(kinds(&r, &format!("http GET {path}")), map(&[("tls", 1)]));
    }
    let served = || [&untrusted_served, &expired_served, &misnamed_served].map(|c| c.load(Relaxed));
    assert_eq!(served(), [0, 0, 0], "no request went out unverified");
    let insecure = chaperon_host::net::tls::client_config(None, true).unwrap();
    let r = run(&plan_with(insecure)).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch status 200", 3)]),
        "insecure_skip_verify connects: {}",
        r.summary_table()
    );
    assert_eq!(served(), [1, 1, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b12_a_keep_alive_connection_closed_by_the_server_is_replaced_and_a_post_never_replayed() {
    // `/idle-close`: answered keep-alive, then the server closes the idle connection. `/eat`:
    // the first request on a connection is answered; a second one is read in full and the
    // connection closed without an answer (the keep-alive race at its worst: the POST reached
    // the server). Every POST body the server reads is counted per path.
    let (idle_close, eaten) = (counter(), counter());
    let (a, b) = (idle_close.clone(), eaten.clone());
    let (addr, connections) = serve(move |mut socket| {
        let (idle_close, eaten) = (a.clone(), b.clone());
        async move {
            let mut buf = Vec::new();
            let mut on_this_connection = 0;
            while let Some(req) = read_request(&mut socket, &mut buf).await {
                if req.method != "POST" || req.body != b"x" {
                    return;
                }
                on_this_connection += 1;
                if req.path == "/idle-close" {
                    idle_close.fetch_add(1, Relaxed);
                    let _ = socket.write_all(&response(200, "ok")).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return;
                }
                eaten.fetch_add(1, Relaxed);
                if on_this_connection > 1 {
                    return;
                }
                let _ = socket.write_all(&response(200, "ok")).await;
            }
        }
    })
    .await;
    let urls = ["/idle-close", "/idle-close", "/eat", "/eat", "/eat"].map(String::from);
    let extra = ["evil.method=POST", "evil.body=x", "evil.pause_ms=300"];
    let r = run(&fetch_plan(addr, 2, &urls, &extra)).await.report;
    let idle = metric(&r, "http POST /idle-close");
    assert_eq!(
        (idle.count, idle.errors),
        (4, 0),
        "a request after the server closed the idle connection goes out on a new one: {}",
        r.summary_table()
    );
    let eat = metric(&r, "http POST /eat");
    assert_eq!(eat.count, 4, "{}", r.summary_table());
    assert_eq!(
        eat.errors_by_kind,
        map(&[("reset", 2)]),
        "the POST that lost its connection fails `reset`"
    );
    assert_eq!(idle_close.load(Relaxed), 4);
    assert_eq!(
        eaten.load(Relaxed),
        6,
        "three POSTs per session reached the server, none of them twice"
    );
    assert_eq!(connections.load(Relaxed), 8);
    assert_eq!(ended(&r, "completed"), 2);
}

/// An HTTP server on a fixed loopback port that can be taken down (listener closed, every open
/// connection dropped) and brought back on the same port.
struct Flapping {
    port: u16,
    served: Counter,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Flapping {
    async fn start() -> Flapping {
        let mut server = Flapping {
            port: 0,
            served: counter(),
            task: None,
        };
        server.up().await;
        server
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    async fn up(&mut self) {
        let listener = bind_reusing(self.addr()).await;
        self.port = listener.local_addr().unwrap().port();
        let served = self.served.clone();
        self.task = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((socket, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                connections.spawn(answer_ok(socket, served.clone()));
            }
        }));
    }

    /// Aborting the accept task drops its JoinSet, which aborts every connection task.
    async fn down(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

/// A listener on `addr` with SO_REUSEADDR (the port may have sockets in TIME_WAIT), retried
/// for a while in case something else holds the port for a moment.
async fn bind_reusing(addr: SocketAddr) -> TcpListener {
    for _ in 0..50 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(addr).is_ok() {
            return socket.listen(1024).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot listen on {addr} again");
}

async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "no {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b13_an_outage_is_counted_as_errors_and_the_sessions_recover_when_the_target_returns() {
    // The catalogue's 5 s outage, shortened to 1.5 s. With an open model the report would also
    // show dropped iterations; that lands with the load-shapes issue (arrival-rate executors).
    let mut target = Flapping::start().await;
    let served = target.served.clone();
    let extra = [
        "evil.for_ms=5000",
        "evil.pause_ms=50",
        "evil.timeout_ms=500",
    ];
    let plan = fetch_plan(target.addr(), 2, &["/".to_owned()], &extra);
    let running = tokio::spawn(async move { run(&plan).await.report });
    wait_for("requests before the outage", || served.load(Relaxed) >= 4).await;
    target.down().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let until_back = served.load(Relaxed);
    target.up().await;
    let r = running.await.unwrap();
    let after = served.load(Relaxed) - until_back;
    assert_eq!(
        ended(&r, "completed"),
        2,
        "the sessions kept iterating: {}",
        r.summary_table()
    );
    let outcomes = checks(&r);
    assert!(
        outcomes
            .keys()
            .all(|k| ["fetch status 200", "fetch refused", "fetch reset"].contains(&k.as_str())),
        "only refusals (and a reset of a request in flight) during the outage: {outcomes:?}"
    );
    assert!(
        passed(&r, "fetch refused") >= 4,
        "errors counted during the outage: {outcomes:?}"
    );
    let errors = kinds(&r, "http GET /");
    assert_eq!(
        errors.get("refused").copied(),
        Some(passed(&r, "fetch refused"))
    );
    assert!(
        after >= 4,
        "requests succeed again after the outage: {after} ({outcomes:?})"
    );
    assert_eq!(
        passed(&r, "fetch status 200"),
        served.load(Relaxed),
        "every answered request is a success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b14_a_stalled_target_under_concurrent_sessions_is_timeouts_not_latency_and_the_run_ends() {
    // The catalogue asks for coordinated omission under an arrival-rate (open) schedule:
    // dropped iterations and/or corrected latency. The host has only the closed model (N
    // sessions) for now; the arrival-rate part lands with the load-shapes issue. What holds
    // today: every stalled request ends at the request timeout as a `timeout` error, none is
    // a latency sample, and the run ends and reports.
    let addr = silent_server().await;
    let mut plan = fetch_plan(addr, 4, &["/stall".to_owned()], &["evil.repeat=2"]);
    plan.limits.request_timeout = Duration::from_secs(1);
    let start = Instant::now();
    let r = run(&plan).await.report;
    assert!(start.elapsed() < Duration::from_secs(12), "the run ended");
    assert_eq!(
        checks(&r),
        map(&[("fetch timeout", 8)]),
        "{}",
        r.summary_table()
    );
    let stall = metric(&r, "http GET /stall");
    assert_eq!(stall.count, 0, "no latency sample for a stalled request");
    assert_eq!(stall.errors_by_kind, map(&[("timeout", 8)]));
    took(&r, "fetch time timeout", 900, 5000);
    assert_eq!(ended(&r, "completed"), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b15_a_name_that_does_not_resolve_is_a_dns_error_and_the_session_goes_on() {
    // The name is pinned to no address (`[network] hosts`), so it does not exist for the run
    // and no query leaves the machine.
    let (live, served) = ok_server().await;
    let urls = ["http://nxdomain.invalid/nx".to_owned(), "/live".to_owned()];
    let mut plan = fetch_plan(live, 2, &urls, &[]);
    plan.allow("nxdomain.invalid").expect("valid allow entry");
    plan.pin_host("nxdomain.invalid", &[]);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("fetch dns", 2), ("fetch status 200", 2)]),
        "{}",
        r.summary_table()
    );
    let nx = metric(&r, "http GET /nx");
    assert_eq!(nx.count, 0);
    assert_eq!(nx.errors_by_kind, map(&[("dns", 2)]));
    took(&r, "fetch time dns", 0, 2000);
    assert_eq!(served.load(Relaxed), 2);
}

// ---------------------------------------------------------------------------------- WebSocket

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b16_a_rejected_handshake_is_ws_handshake_403_and_an_unanswered_one_a_timeout() {
    let forbidden = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n".to_vec();
    let addr = one_shot_server(forbidden).await;
    let r = run(&ws_plan(addr, 2, "/ws", &[], &[])).await.report;
    assert_eq!(
        checks(&r),
        map(&[("ws connect ws-handshake 403", 2)]),
        "{}",
        r.summary_table()
    );
    let connect = metric(&r, "ws_connect /ws");
    assert_eq!(connect.count, 0);
    assert_eq!(connect.errors_by_kind, map(&[("ws-handshake", 2)]));

    let addr = silent_server().await;
    let r = run(&ws_plan(addr, 2, "/ws", &[], &["evil.timeout_ms=1000"]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[("ws connect timeout", 2)]),
        "connected, but the handshake was never answered: {}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "ws_connect /ws"), map(&[("timeout", 2)]));
    took(&r, "ws connect time timeout", 900, 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b17_a_close_frame_from_the_server_is_a_close_message_not_an_error() {
    let addr = ws_server(|mut ws| async move {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: 4000.into(),
            reason: "bye".into(),
        };
        let _ = ws.send(Ws::Close(Some(frame))).await;
        drain_ws(&mut ws).await;
    })
    .await;
    let r = run(&ws_plan(addr, 2, "/ws", &["recv:2000", "recv:500"], &[]))
        .await
        .report;
    assert_eq!(
        checks(&r),
        map(&[
            ("ws connect ok", 2),
            ("ws recv close 4000 bye", 2),
            ("ws recv closed", 2),
        ]),
        "{}",
        r.summary_table()
    );
    let recv = metric(&r, "ws_recv");
    assert_eq!(recv.count, 2, "the close is a received message");
    assert_eq!(
        recv.errors_by_kind,
        map(&[("closed", 2)]),
        "only a receive after the close fails"
    );
    assert_eq!(ended(&r, "completed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b18_a_websocket_dropped_without_a_close_frame_is_a_reset() {
    for rst in [false, true] {
        let addr = ws_server(move |ws| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if rst {
                reset(ws.get_ref());
            }
            drop(ws);
        })
        .await;
        let r = run(&ws_plan(addr, 2, "/ws", &["recv:3000", "send"], &[]))
            .await
            .report;
        assert_eq!(
            checks(&r),
            map(&[
                ("ws connect ok", 2),
                ("ws recv reset", 2),
                ("ws send reset", 2)
            ]),
            "dropped with {}: {}",
            if rst { "an RST" } else { "a FIN" },
            r.summary_table()
        );
        assert_eq!(kinds(&r, "ws_recv"), map(&[("reset", 2)]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b19_an_oversized_frame_or_invalid_utf8_is_a_protocol_error_and_the_connection_closes() {
    // A binary frame announcing 1 GiB (the host's max frame is 4 MiB: refused from its header,
    // nothing buffered), and a text frame of invalid UTF-8. Both written raw after the
    // handshake; then the server waits for the connection to close.
    let mut huge = vec![0x82, 127];
    huge.extend_from_slice(&(1u64 << 30).to_be_bytes());
    huge.extend(std::iter::repeat_n(0u8, 1024));
    let invalid = vec![0x81, 0x02, 0xff, 0xfe];
    for frame in [huge, invalid] {
        let closed = counter();
        let seen = closed.clone();
        let kind = format!("{:02x?}", &frame[..2]);
        let frame = Arc::new(frame);
        let addr = ws_server(move |mut ws| {
            let (frame, seen) = (frame.clone(), seen.clone());
            async move {
                let raw = ws.get_mut();
                if raw.write_all(&frame).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while matches!(raw.read(&mut buf).await, Ok(n) if n > 0) {}
                seen.fetch_add(1, Relaxed);
            }
        })
        .await;
        let r = run(&ws_plan(addr, 2, "/ws", &["recv:3000", "send"], &[]))
            .await
            .report;
        assert_eq!(
            checks(&r),
            map(&[
                ("ws connect ok", 2),
                ("ws recv protocol", 2),
                ("ws send protocol", 2)
            ]),
            "frame {kind}: {}",
            r.summary_table()
        );
        wait_for("closed connections", || closed.load(Relaxed) == 2).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b20_a_flooding_websocket_meets_backpressure_and_loses_nothing() {
    // The server sends 150 × 1 MiB while the guest holds for 2.5 s, then drains. The host's
    // inbound queue is bounded (4 MiB) and then stops reading: what the server got rid of is
    // that plus the kernel's socket buffers, far from 150 MiB. Nothing is dropped.
    const MESSAGES: u64 = 150;
    let sent = counter();
    let count = sent.clone();
    let addr = ws_server(move |mut ws| {
        let count = count.clone();
        async move {
            let mib = bytes::Bytes::from(vec![7u8; MIB]);
            for _ in 0..MESSAGES {
                if ws.send(Ws::Binary(mib.clone())).await.is_err() {
                    return;
                }
                count.fetch_add(1, Relaxed);
            }
            drain_ws(&mut ws).await;
        }
    })
    .await;
    let plan = ws_plan(addr, 1, "/flood", &["hold:2500", "drain:1000"], &[]);
    let running = tokio::spawn(async move { run(&plan).await.report });
    wait_for("the flood", || sent.load(Relaxed) > 0).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let held = sent.load(Relaxed);
    assert!(
        held < 64,
        "the host took {held} MiB from a guest that did not read"
    );
    let r = running.await.unwrap();
    assert_eq!(
        checks(&r),
        map(&[("ws connect ok", 1), ("ws drain timeout", 1)]),
        "{}",
        r.summary_table()
    );
    assert_eq!(sent.load(Relaxed), MESSAGES);
    assert_eq!(
        metric(&r, "ws drained").max,
        MESSAGES,
        "every message delivered"
    );
    assert_eq!(ended(&r, "completed"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b21_server_pings_are_answered_automatically_and_an_idle_receive_times_out() {
    // The host sends no pings of its own, so "never answers our pings" cannot stall it; an idle
    // connection ends the receive at the receive timeout.
    let pongs = counter();
    let count = pongs.clone();
    let addr = ws_server(move |ws| {
        let count = count.clone();
        async move {
            let (mut tx, mut rx) = ws.split();
            let pinger = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if tx
                        .send(Ws::Ping(bytes::Bytes::from_static(b"p")))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
            while let Some(Ok(m)) = rx.next().await {
                if m.is_pong() {
                    count.fetch_add(1, Relaxed);
                }
            }
            pinger.abort();
        }
    })
    .await;
    let mut plan = ws_plan(addr, 1, "/ws", &["recv"], &[]);
    plan.limits.recv_timeout = Duration::from_millis(1500);
    let r = run(&plan).await.report;
    assert_eq!(
        checks(&r),
        map(&[("ws connect ok", 1), ("ws recv timeout", 1)]),
        "pings are not messages: {}",
        r.summary_table()
    );
    assert_eq!(kinds(&r, "ws_recv"), map(&[("timeout", 1)]));
    let pongs = pongs.load(Relaxed);
    assert!(pongs >= 3, "{pongs} pongs while the guest waited in recv");
    assert_eq!(ended(&r, "completed"), 1);
}

// ------------------------------------------------------------------------------------- host

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b22_running_out_of_file_descriptors_is_host_capacity_and_the_run_ends_cleanly() {
    // A slow target (1 s per answer) and a host process limited to 64 descriptors: 16 children
    // of one session each send 8 requests at once, 128 sockets wanted. The connects that find
    // no descriptor fail `host-capacity` (the host's fault, not the target's); the rest succeed.
    // The start warns about the limit; the kinds are checked in the JSON report (the printed
    // summary counts errors per metric without naming their kinds).
    let (addr, _) = serve(|mut socket| async move {
        let mut buf = Vec::new();
        while read_request(&mut socket, &mut buf).await.is_some() {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if socket.write_all(&response(200, "ok")).await.is_err() {
                return;
            }
        }
    })
    .await;
    let report = tempdir().join(format!("b22-{}.json", addr.port()));
    let urls = serde_json::to_string(&["/slow"; 8]).unwrap();
    let script = r#"ulimit -n 64 && exec "$@""#;
    let args: Vec<String> = [
        "sh",
        "-c",
        script,
        "sh",
        bin(),
        "run",
        guest("evil").to_str().unwrap(),
        "--sessions",
        "1",
        "--base-url",
        &format!("http://{addr}"),
        "--config",
        "evil.mode=fd_storm",
        "--config",
        "evil.children=16",
        "--config",
        "evil.batch=true",
        "--config",
        &format!("evil.urls={urls}"),
        "--log-level",
        "off",
        "--out",
        &format!("json={}", report.display()),
    ]
    .map(String::from)
    .into();
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&args[0])
            .args(&args[1..])
            .output()
            .expect("sh runs")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(start.elapsed() < Duration::from_secs(30), "the run ended");
    assert!(!stderr.contains("panic"), "{stderr}");
    assert!(
        stderr.contains("open-files limit (64)") && stderr.contains("raise `ulimit -n`"),
        "the start names the limit and the fix: {stderr}"
    );
    let r = Report::read_json(&report).expect("the report was written");
    assert_eq!(
        r.checks.get("storm children done").map(|c| c.passed),
        Some(1),
        "{}",
        r.summary_table()
    );
    let slow = metric(&r, "http GET /slow");
    let capacity = slow
        .errors_by_kind
        .get("host-capacity")
        .copied()
        .unwrap_or(0);
    assert!(
        capacity > 0 && slow.count > 0,
        "some requests found no descriptor, others got through: {}",
        r.summary_table()
    );
    assert_eq!(
        slow.errors_by_kind,
        map(&[("host-capacity", capacity)]),
        "no error blamed on the target"
    );
    assert_eq!(slow.count + capacity, 128);
}
