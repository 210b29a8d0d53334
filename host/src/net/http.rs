//! HTTP/1.1 for one virtual user: its own keep-alive connections, capped per session.
//!
//! Connections are opened by [`connect`](super::connect::connect) (the policy checkpoint, timed
//! DNS/connect/TLS phases, byte counters) and driven by hyper's low-level client, inside the
//! session's own task: no per-connection task, so a request costs no hop to another task and
//! back (see [`Driver`]). Each open connection owns one permit of the session's connection
//! semaphore, so the cap is tied to connection ownership: a request cancelled by its timeout
//! drops its connection and with it the permit, and nothing can leak the count.

use super::NetConfig;
use super::connect::{Origin, connect};
use super::cookies::Cookies;
use super::stream::ByteCounters;
use crate::util::ledger::{Charge, HostMemory};
use crate::util::repoll::Repoll;
use crate::util::{micros_between, micros_since_u32};
use crate::wit::RequestError;
use crate::wit::http::{Body, Method, Request, Response, ResponseParts, StatusRange, Timings};
use bytes::Bytes;
use http::HeaderValue;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An open connection and the connection-cap permit it holds while it lives.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    driver: Driver,
    origin: Origin,
    /// The `host` header for this connection's origin, made once.
    host: HeaderValue,
    /// When it last went back to the idle list.
    idle_since: Instant,
    counters: Arc<ByteCounters>,
    _permit: OwnedSemaphorePermit,
}

/// hyper's connection state machine, polled only while a request of this session uses it.
struct Driver {
    io: Io,
    /// The peer closed or the connection failed: it is dropped after the current request.
    ended: bool,
    repoll: Repoll,
}

/// hyper's connection state machine over one stream.
type Io = Connection<TokioIo<super::stream::NetStream>, Full<Bytes>>;

/// Lets the connection read and write what it can now; notes when it has ended.
fn poll_io(io: &mut Io, ended: &mut bool, cx: &mut std::task::Context<'_>) {
    if !*ended && Pin::new(io).poll(cx).is_ready() {
        *ended = true;
    }
}

impl Driver {
    fn poll_io(&mut self, cx: &mut std::task::Context<'_>) {
        poll_io(&mut self.io, &mut self.ended, cx);
    }

    /// Polls the connection once without waiting, so it notices a close that arrived.
    async fn look(&mut self) {
        std::future::poll_fn(|cx| {
            self.poll_io(cx);
            Poll::Ready(())
        })
        .await;
    }

    /// Runs `work` (a request on this connection) while driving the connection on this task.
    /// The two wake each other (head, body frames, end); those wakes re-poll them in place.
    async fn run<F: Future>(&mut self, work: F) -> F::Output {
        let mut work = std::pin::pin!(work);
        let Driver { io, ended, repoll } = self;
        std::future::poll_fn(|cx| {
            repoll.poll(cx, |cx| {
                if let Poll::Ready(out) = work.as_mut().poll(cx) {
                    return Poll::Ready(out);
                }
                // The request is queued: let the connection write it, then look again.
                poll_io(io, ended, cx);
                work.as_mut().poll(cx)
            })
        })
        .await
    }
}

/// An idle connection not used for this long is checked for a close from the server before
/// it is reused (one read attempt); one reused at once skips the syscall.
const STALE_AFTER: Duration = Duration::from_millis(1);

impl Conn {
    /// Whether the connection can take the next request at `now` (driving it until it says so).
    async fn ready(&mut self, now: Instant) -> bool {
        if now.saturating_duration_since(self.idle_since) >= STALE_AFTER {
            // Let hyper read what came while it idled: a close or reset from the server.
            self.driver.look().await;
        }
        if self.driver.ended {
            return false;
        }
        let ready = self.driver.run(self.sender.ready()).await.is_ok();
        // Driving it may have found the peer gone.
        ready && !self.driver.ended
    }
}

/// One virtual user's HTTP connections and cookie jar.
pub struct HttpClient {
    /// Idle connections, each knowing its origin; at most the connection cap of them, so a
    /// scan is cheaper than hashing the origin. Boxed: a request moves its connection out and
    /// back, a pointer rather than hyper's state.
    #[allow(clippy::vec_box)]
    idle: Vec<Box<Conn>>,
    /// One permit per connection the session may have open (idle or in use).
    permits: Arc<Semaphore>,
    pub cookies: Cookies,
    /// Where buffered response bodies are charged.
    memory: HostMemory,
    /// Durations (µs) of the redirect hops followed since [`HttpClient::take_hops`]: each is a
    /// request the target served, counted as such.
    hops: Vec<u32>,
    /// The request timeout, one timer per client: pushing a later deadline into an armed
    /// timer is an atomic store, where a fresh `timeout` per request inserted into and removed
    /// from the runtime's timer wheel (under its lock) every time.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl HttpClient {
    /// A client with at most `connections` open connections, sharing `cookies`.
    pub fn new(connections: u32, cookies: Cookies, memory: HostMemory) -> HttpClient {
        HttpClient {
            idle: Vec::new(),
            permits: Arc::new(Semaphore::new(connections.max(1) as usize)),
            cookies,
            memory,
            hops: Vec::new(),
            timer: None,
        }
    }

    /// The redirect hops followed since the last call.
    pub fn take_hops(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.hops)
    }

    /// The same connections and jar, charging buffered bodies to `memory` (a virtual user's
    /// next session).
    pub fn charging(mut self, memory: HostMemory) -> HttpClient {
        self.memory = memory;
        self
    }

    /// Connections open right now (idle or in use).
    pub fn open_connections(&self, cap: u32) -> u32 {
        cap.saturating_sub(u32::try_from(self.permits.available_permits()).unwrap_or(u32::MAX))
    }

    /// Sends one request to `url` within its timeout (and at most `left`, the session's time
    /// left), following redirects as asked; the response carries the parts `keep` names.
    pub async fn send(
        &mut self,
        net: &NetConfig,
        request: Request,
        url: Arc<url::Url>,
        left: Duration,
        keep: ResponseParts,
    ) -> Result<Response, RequestError> {
        let timeout = request
            .options
            .timeout_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(net.request_timeout)
            .min(left);
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started) + timeout;
        let mut timer = match self.timer.take() {
            Some(mut t) => {
                t.as_mut().reset(deadline);
                t
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        // Boxed once here so the layers above move a pointer, not this future's few KiB.
        let exchange = Box::pin(self.follow(net, request, url, keep, started));
        let r = tokio::select! {
            biased;
            r = exchange => r,
            () = timer.as_mut() => Err(RequestError::Timeout),
        };
        self.timer = Some(timer);
        r
    }

    /// Sends and follows up to `follow-redirects` hops (at most the run's cap); 303 (and
    /// 301/302 after a POST) become GET. Every hop passes the policy again.
    async fn follow(
        &mut self,
        net: &NetConfig,
        mut request: Request,
        mut url: Arc<url::Url>,
        keep: ResponseParts,
        started: Instant,
    ) -> Result<Response, RequestError> {
        let mut hop_start = started;
        let (mut sent, mut received) = (0u32, 0u32);
        let mut hops_left = request
            .options
            .follow_redirects
            .unwrap_or(0)
            .min(net.max_redirects);
        loop {
            let (mut response, location, done) =
                self.exchange(net, &request, &url, keep, hop_start).await?;
            sent = sent.saturating_add(response.bytes_sent);
            received = received.saturating_add(response.bytes_received);
            match location {
                Some(loc) if hops_left > 0 => {
                    hops_left -= 1;
                    self.hops.push(micros_between(hop_start, done));
                    hop_start = done;
                    url = Arc::new(url.join(&loc).map_err(|e| {
                        RequestError::Protocol(format!(
                            "bad redirect `{}`: {e}",
                            crate::util::escape(&loc)
                        ))
                    })?);
                    net.policy.check_url(&url)?;
                    if response.status == 303
                        || (matches!(response.status, 301 | 302) && request.method == Method::Post)
                    {
                        request.method = Method::Get;
                        request.body = Body::None;
                    }
                }
                _ => {
                    response.timings.total_us = micros_between(started, done);
                    (response.bytes_sent, response.bytes_received) = (sent, received);
                    response.expected = is_expected(response.status, &request.options.expect);
                    return Ok(response);
                }
            }
        }
    }

    /// One request/response on one connection begun at `begun`: the response, the
    /// redirect's `location` if it is one, and when it ended. A body not kept is read and
    /// dropped (the connection stays usable) without a copy.
    async fn exchange(
        &mut self,
        net: &NetConfig,
        request: &Request,
        url: &url::Url,
        keep: ResponseParts,
        begun: Instant,
    ) -> Result<(Response, Option<String>, Instant), RequestError> {
        let mut http_request = build_request(net, &self.cookies, request, url)?;
        let (mut conn, mut timings, reused) = self.checkout(net, url, begun).await?;
        http_request
            .headers_mut()
            .insert(http::header::HOST, conn.host.clone());
        let (sent0, recv0) = conn.counters.read();
        // On a kept-alive connection the request goes out now; a new one took its connect.
        let start = if reused { begun } else { Instant::now() };
        let memory = &self.memory;
        let Conn { sender, driver, .. } = &mut *conn;
        let (parts, body, truncated) = driver
            .run(async {
                let response = sender
                    .send_request(http_request)
                    .await
                    .map_err(|e| hyper_error(&e))?;
                timings.ttfb_us = micros_since_u32(start);
                let (parts, body) = response.into_parts();
                let mut held = memory.empty();
                let cap = if keep.contains(ResponseParts::BODY) {
                    net.max_response_body
                } else {
                    0
                };
                let (body, truncated) = read_body(body, cap, &mut held).await?;
                let truncated = truncated && cap > 0;
                Ok::<_, RequestError>((parts, body, truncated))
            })
            .await?;
        let mut set_cookies = parts
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .peekable();
        if set_cookies.peek().is_some() {
            self.cookies.store(url, set_cookies);
        }
        let (sent1, recv1) = conn.counters.read();
        let done = Instant::now();
        if !connection_close(&parts.headers) && !conn.driver.ended {
            conn.idle_since = done;
            self.idle.push(conn);
        }
        let headers = if keep.contains(ResponseParts::HEADERS) {
            header_list(&parts.headers)
        } else {
            Vec::new()
        };
        let response = Response {
            status: parts.status.as_u16(),
            headers,
            body,
            body_truncated: truncated,
            expected: true,
            timings,
            bytes_sent: clamp(sent1 - sent0),
            bytes_received: clamp(recv1 - recv0),
        };
        Ok((
            response,
            redirect_location(parts.status, &parts.headers),
            done,
        ))
    }

    /// Takes an idle connection to `url`'s origin (true) or opens one within the connection
    /// cap (false), closing an idle connection to another origin to make room.
    async fn checkout(
        &mut self,
        net: &NetConfig,
        url: &url::Url,
        now: Instant,
    ) -> Result<(Box<Conn>, Timings, bool), RequestError> {
        while let Some(i) = self.idle.iter().rposition(|c| c.origin.serves(url)) {
            let mut conn = self.idle.swap_remove(i);
            if conn.ready(now).await {
                return Ok((conn, no_timings(), true));
            }
        }
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.idle.pop().is_none() {
                    return Err(RequestError::TooManyConnections);
                }
                self.permits
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| RequestError::TooManyConnections)?
            }
        };
        // Boxed: the connect path is rare, and kept inline it would make every request's
        // future (moved a few times per request) several KiB larger.
        let (conn, timings) = Box::pin(open(net, url, permit)).await?;
        Ok((conn, timings, false))
    }

    /// Sends `requests` in parallel, at most `http_connections` at a time; results in order.
    /// Each lane gets one idle connection when one is free; the connection cap is shared, and
    /// afterwards the lanes' connections return to the session.
    pub async fn batch(
        &mut self,
        net: &NetConfig,
        requests: Vec<(Request, Arc<url::Url>)>,
        left: Duration,
    ) -> Vec<Result<Response, RequestError>> {
        let lanes = (net.http_connections.max(1) as usize).min(requests.len().max(1));
        let mut results = Vec::with_capacity(requests.len());
        let mut iter = requests.into_iter().peekable();
        while iter.peek().is_some() {
            let chunk: Vec<(Request, Arc<url::Url>)> = iter.by_ref().take(lanes).collect();
            let mut forks: Vec<HttpClient> = (0..chunk.len()).map(|_| self.fork()).collect();
            let futures = chunk
                .into_iter()
                .zip(forks.iter_mut())
                .map(|((req, url), fork)| fork.send(net, req, url, left, ResponseParts::all()));
            results.extend(futures_util::future::join_all(futures).await);
            for fork in forks {
                self.absorb(fork);
            }
        }
        results
    }

    /// A lane for a parallel request: the same jar and cap, and one idle connection.
    fn fork(&mut self) -> HttpClient {
        let mut lane = HttpClient::new(0, self.cookies.clone(), self.memory.clone());
        lane.permits = self.permits.clone();
        lane.idle.extend(self.idle.pop());
        lane
    }

    /// Takes back a lane's idle connections.
    fn absorb(&mut self, lane: HttpClient) {
        self.hops.extend(lane.hops);
        self.idle.extend(lane.idle);
    }
}

/// Opens a connection to `url`'s origin, holding `permit` while it lives.
async fn open(
    net: &NetConfig,
    url: &url::Url,
    permit: OwnedSemaphorePermit,
) -> Result<(Box<Conn>, Timings), RequestError> {
    let origin = Origin::of(url)?;
    let (stream, t) = connect(net, url, net.connect_timeout).await?;
    let counters = stream.counters();
    let (sender, io) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| hyper_error(&e))?;
    let conn = Conn {
        sender,
        origin,
        driver: Driver {
            io,
            ended: false,
            repoll: Repoll::default(),
        },
        host: host_header(url)?,
        idle_since: Instant::now(),
        counters,
        _permit: permit,
    };
    let timings = Timings {
        dns_us: t.dns_us,
        connect_us: t.connect_us,
        tls_us: t.tls_us,
        ..no_timings()
    };
    Ok((Box::new(conn), timings))
}

/// Timings of a request on a reused connection (no connect phases).
fn no_timings() -> Timings {
    Timings {
        dns_us: 0,
        connect_us: 0,
        tls_us: 0,
        ttfb_us: 0,
        total_us: 0,
    }
}

fn clamp(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The method's name on the wire.
pub fn method_str(m: Method) -> &'static str {
    match m {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Options => "OPTIONS",
    }
}

/// Whether `status` is expected: 200–399, or in one of the ranges the request added with
/// `expect` (expect_status adds to the default; it never narrows it).
pub fn is_expected(status: u16, expect: &[StatusRange]) -> bool {
    (200..400).contains(&status) || expect.iter().any(|r| (r.min..=r.max).contains(&status))
}

fn redirect_location(status: http::StatusCode, headers: &http::HeaderMap) -> Option<String> {
    if !matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    headers
        .get(http::header::LOCATION)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn connection_close(h: &http::HeaderMap) -> bool {
    h.get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// The request as hyper sends it, built in place (the `http` builder moves the whole request
/// through every call); `host` is a placeholder the connection's own value replaces.
fn build_request(
    net: &NetConfig,
    cookies: &Cookies,
    request: &Request,
    url: &url::Url,
) -> Result<http::Request<Full<Bytes>>, RequestError> {
    use http::header;
    let (body, content_type) = body_bytes(&request.body, net.max_request_body)?;
    let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
    let mut r = http::Request::new(Full::new(body));
    *r.method_mut() = http_method(request.method);
    *r.uri_mut() = http::Uri::try_from(path).map_err(|e| RequestError::Invalid(e.to_string()))?;
    let h = r.headers_mut();
    h.insert(header::HOST, HeaderValue::from_static(""));
    h.insert(
        header::USER_AGENT,
        HeaderValue::from_static(concat!("chaperon/", env!("CARGO_PKG_VERSION"))),
    );
    h.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    let mut has_content_type = false;
    for (n, v) in super::headers::check_all(&request.headers)? {
        has_content_type |= n == header::CONTENT_TYPE;
        h.append(n, v);
    }
    if let (Some(ct), false) = (content_type, has_content_type) {
        h.append(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    if let Some(c) = cookies.header_for(url) {
        h.append(header::COOKIE, header_value(c)?);
    }
    if let Some((user, pass)) = &request.options.basic_auth {
        h.append(header::AUTHORIZATION, header_value(basic_auth(user, pass))?);
    }
    Ok(r)
}

fn header_value(v: String) -> Result<HeaderValue, RequestError> {
    HeaderValue::try_from(v).map_err(|e| RequestError::Invalid(e.to_string()))
}

fn http_method(m: Method) -> http::Method {
    match m {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Patch => http::Method::PATCH,
        Method::Delete => http::Method::DELETE,
        Method::Options => http::Method::OPTIONS,
    }
}

/// `host[:port]` as the URL gives it (the port only when it is not the scheme's default).
fn host_header(url: &url::Url) -> Result<HeaderValue, RequestError> {
    HeaderValue::from_str(&url[url::Position::BeforeHost..url::Position::AfterPort])
        .map_err(|e| RequestError::Invalid(format!("host of {url}: {e}")))
}

fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn body_bytes(body: &Body, max: usize) -> Result<(Bytes, Option<&'static str>), RequestError> {
    let (bytes, ct) = match body {
        Body::None => (Bytes::new(), None),
        Body::Text(t) => (Bytes::from(t.clone()), Some("text/plain; charset=utf-8")),
        Body::Bytes(b) => (Bytes::from(b.clone()), Some("application/octet-stream")),
        Body::Json(j) => (Bytes::from(j.clone()), Some("application/json")),
        Body::Form(fields) => {
            let encoded = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(fields.iter())
                .finish();
            (
                Bytes::from(encoded),
                Some("application/x-www-form-urlencoded"),
            )
        }
    };
    if bytes.len() > max {
        return Err(RequestError::TooLarge);
    }
    Ok((bytes, ct))
}

/// Reads the body; beyond `cap` bytes the rest is read and discarded (so the connection stays
/// usable) and the response is flagged truncated. What is kept is charged to `held` as it
/// arrives: past the session's or tenant's host-memory cap the request is `too-large`.
async fn read_body(
    mut body: hyper::body::Incoming,
    cap: usize,
    held: &mut Charge,
) -> Result<(Vec<u8>, bool), RequestError> {
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| body_error(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = cap.saturating_sub(out.len());
            truncated |= data.len() > room;
            let kept = data.get(..room.min(data.len())).unwrap_or_default();
            held.grow("a response body", kept.len() as u64)
                .map_err(|_| RequestError::TooLarge)?;
            out.extend_from_slice(kept);
        }
    }
    Ok((out, truncated))
}

fn header_list(h: &http::HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Classifies an error reading a response body: the connection closing before the body's
/// announced end (Content-Length or the last chunk) is a malformed response, `protocol`; a
/// reset is still `reset`.
fn body_error(e: &hyper::Error) -> RequestError {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::UnexpectedEof
        {
            return RequestError::Protocol(format!("incomplete body: {io}"));
        }
        source = s.source();
    }
    hyper_error(e)
}

/// Classifies a hyper error.
fn hyper_error(e: &hyper::Error) -> RequestError {
    use std::error::Error as _;
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return crate::outcome::io_error_to_request_error(io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        RequestError::Reset
    } else if e.is_timeout() {
        RequestError::Timeout
    } else {
        RequestError::Protocol(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_status_adds_to_the_default_range() {
        assert!(is_expected(200, &[]));
        assert!(!is_expected(404, &[]));
        let also_404 = [StatusRange { min: 404, max: 404 }];
        assert!(is_expected(404, &also_404));
        assert!(
            is_expected(204, &also_404),
            "the default 200–399 still holds"
        );
        assert!(!is_expected(500, &also_404));
    }
}
