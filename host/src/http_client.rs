//! HTTP/1.1 for one virtual user: its own keep-alive pool and cookie jar.
//!
//! Connections are opened by `net::connect` (timed DNS/connect/TLS phases, byte counters) and
//! driven by hyper's low-level client, so the report can show per-request phases and bytes, and
//! each session's connection count is a hard cap rather than a shared pool's guess.

use crate::bindings::RequestError;
use crate::bindings::http::{
    Body, Method, Request, RequestOptions, Response, StatusRange, Timings,
};
use crate::net::{self, ByteCounters, Origin};
use crate::state::RunShared;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Headers a scenario may not set: the host owns framing and routing.
const FORBIDDEN_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "te",
];

/// Largest request body a guest may send.
pub const MAX_REQUEST_BODY: usize = 8 << 20;

/// A kept-alive connection.
struct PooledConn {
    sender: SendRequest<Full<Bytes>>,
    counters: Arc<ByteCounters>,
}

/// One virtual user's connections and cookies.
#[derive(Default)]
pub struct HttpPool {
    idle: HashMap<Origin, Vec<PooledConn>>,
    /// Connections checked out right now (batch requests run in parallel).
    busy: u32,
    /// Cookie jar: name → value, merged by name (a later Set-Cookie replaces only its name).
    pub cookies: std::collections::BTreeMap<String, String>,
}

impl HttpPool {
    /// The `cookie` header value for a request, if any cookie is set.
    pub fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    /// Merges `set-cookie` values into the jar (attributes ignored; Max-Age=0 deletes).
    pub fn store_cookies<'a>(&mut self, set_cookies: impl Iterator<Item = &'a str>) {
        for raw in set_cookies {
            let mut parts = raw.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            let name = name.trim().to_owned();
            if expired {
                self.cookies.remove(&name);
            } else {
                self.cookies.insert(name, value.trim().to_owned());
            }
        }
    }
}

/// Resolves a scenario URL: an absolute http(s)/ws(s) URL as is, else `base_url` + path
/// (the base's own path is kept as a prefix: base `http://x/api` + `/items` = `http://x/api/items`).
pub fn resolve(base: Option<&url::Url>, path: &str, ws: bool) -> Result<url::Url, RequestError> {
    let invalid = |m: String| RequestError::Invalid(m);
    let mut url = match url::Url::parse(path) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = base.ok_or_else(|| {
                invalid(format!(
                    "`{path}` is relative and the config has no base_url"
                ))
            })?;
            let joined = format!(
                "{}/{}",
                base.as_str().trim_end_matches('/'),
                path.trim_start_matches('/')
            );
            url::Url::parse(&joined).map_err(|e| invalid(format!("`{joined}`: {e}")))?
        }
        Err(e) => return Err(invalid(format!("`{path}`: {e}"))),
    };
    let scheme = match (url.scheme(), ws) {
        ("http", true) | ("ws", true) => "ws",
        ("https", true) | ("wss", true) => "wss",
        ("http", false) | ("https", false) => return Ok(url),
        (other, _) => return Err(invalid(format!("scheme `{other}` is not supported here"))),
    };
    url.set_scheme(scheme)
        .map_err(|_| invalid(format!("cannot use {scheme} for {path}")))?;
    Ok(url)
}

/// The metric key of a request: `http {METHOD} {metric name or path}`.
pub fn metric_key(method: Method, url: &url::Url, options: &RequestOptions) -> String {
    let name = options.metric_name.as_deref().unwrap_or(url.path());
    format!("http {} {name}", method_str(method))
}

fn method_str(m: Method) -> &'static str {
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

/// Whether `status` is expected: in one of `expect`, or 200–399 when `expect` is empty.
pub fn is_expected(status: u16, expect: &[StatusRange]) -> bool {
    if expect.is_empty() {
        return (200..400).contains(&status);
    }
    expect.iter().any(|r| (r.min..=r.max).contains(&status))
}

/// Sends one request (following redirects as asked), records its metric and returns the
/// response.
pub async fn send(
    shared: &RunShared,
    pool: &mut HttpPool,
    request: Request,
) -> Result<Response, RequestError> {
    let url = resolve(shared.base_url.as_ref(), &request.url, false).map(|mut u| {
        append_query(&mut u, &request.query);
        u
    });
    let key = match &url {
        Ok(u) => metric_key(request.method, u, &request.options),
        Err(_) => format!("http {} {}", method_str(request.method), request.url),
    };
    let result = match url {
        Ok(url) => {
            let timeout = request
                .options
                .timeout_ms
                .map(|ms| Duration::from_millis(u64::from(ms)))
                .unwrap_or(shared.limits.request_timeout);
            tokio::time::timeout(timeout, follow(shared, pool, request, url))
                .await
                .unwrap_or(Err(RequestError::Timeout))
        }
        Err(e) => Err(e),
    };
    record(shared, &key, &result);
    result
}

/// Phase metrics: where the time of requests went, across all requests of the run.
const PHASES: [&str; 4] = [
    "http phase dns",
    "http phase connect",
    "http phase tls",
    "http phase ttfb",
];

fn record(shared: &RunShared, key: &str, result: &Result<Response, RequestError>) {
    match result {
        Ok(r) => {
            let rec = &shared.recorder;
            rec.record(key, u64::from(r.timings.total_us));
            let t = &r.timings;
            for (name, us) in PHASES
                .iter()
                .zip([t.dns_us, t.connect_us, t.tls_us, t.ttfb_us])
            {
                // A phase that did not happen (a reused connection) is not a 0 µs sample.
                if us > 0 || *name == PHASES[3] {
                    rec.record(name, u64::from(us));
                }
            }
            rec.add("bytes sent", u64::from(r.bytes_sent));
            rec.add("bytes received", u64::from(r.bytes_received));
            if !r.expected {
                shared
                    .recorder
                    .record_error(key, &format!("status {}", r.status));
            }
        }
        Err(e) => shared
            .recorder
            .record_error(key, crate::outcome::request_error_kind(e)),
    }
}

fn append_query(url: &mut url::Url, query: &[(String, String)]) {
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query.iter());
    }
}

/// Sends and follows up to `follow-redirects` hops; 303 (and 301/302 after a POST) become GET.
async fn follow(
    shared: &RunShared,
    pool: &mut HttpPool,
    mut request: Request,
    mut url: url::Url,
) -> Result<Response, RequestError> {
    let started = Instant::now();
    let mut hops_left = request.options.follow_redirects.unwrap_or(0);
    loop {
        let mut response = exchange(shared, pool, &request, &url).await?;
        let location = redirect_location(&response);
        match location {
            Some(loc) if hops_left > 0 => {
                hops_left -= 1;
                url = url
                    .join(&loc)
                    .map_err(|e| RequestError::Protocol(format!("bad redirect `{loc}`: {e}")))?;
                if response.status == 303
                    || (matches!(response.status, 301 | 302) && request.method == Method::Post)
                {
                    request.method = Method::Get;
                    request.body = Body::None;
                }
            }
            _ => {
                response.timings.total_us = net::micros_since(started);
                response.expected = is_expected(response.status, &request.options.expect);
                return Ok(response);
            }
        }
    }
}

fn redirect_location(r: &Response) -> Option<String> {
    if !matches!(r.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    r.headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("location"))
        .map(|(_, v)| v.clone())
}

/// One request/response on one connection.
async fn exchange(
    shared: &RunShared,
    pool: &mut HttpPool,
    request: &Request,
    url: &url::Url,
) -> Result<Response, RequestError> {
    let origin = Origin::of(url)?;
    let http_request = build_request(pool, request, url)?;
    let (mut conn, mut timings) = checkout(shared, pool, &origin).await?;
    let (sent0, recv0) = (
        conn.counters.sent.load(Ordering::Relaxed),
        conn.counters.received.load(Ordering::Relaxed),
    );
    let start = Instant::now();
    let result = conn.sender.send_request(http_request).await;
    pool.busy = pool.busy.saturating_sub(1);
    let response = result.map_err(|e| hyper_error(&e))?;
    timings.ttfb_us = net::micros_since(start);
    let keep_alive = !connection_close(response.headers());
    let (parts, body) = response.into_parts();
    let (body, truncated) = read_body(body, shared.limits.max_response_body as usize).await?;
    let headers = header_list(&parts.headers);
    pool.store_cookies(
        parts
            .headers
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let bytes_sent = delta(&conn.counters.sent, sent0);
    let bytes_received = delta(&conn.counters.received, recv0);
    if keep_alive && !conn.sender.is_closed() {
        pool.idle.entry(origin).or_default().push(conn);
    }
    Ok(Response {
        status: parts.status.as_u16(),
        headers,
        body,
        body_truncated: truncated,
        expected: true,
        timings,
        bytes_sent,
        bytes_received,
    })
}

fn delta(counter: &std::sync::atomic::AtomicU64, before: u64) -> u32 {
    u32::try_from(counter.load(Ordering::Relaxed).saturating_sub(before)).unwrap_or(u32::MAX)
}

fn connection_close(h: &http::HeaderMap) -> bool {
    h.get(http::header::CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

/// Takes an idle connection to `origin` or opens one (within the session's connection cap).
async fn checkout(
    shared: &RunShared,
    pool: &mut HttpPool,
    origin: &Origin,
) -> Result<(PooledConn, Timings), RequestError> {
    let idle_total: usize = pool.idle.values().map(Vec::len).sum();
    while let Some(mut conn) = pool.idle.get_mut(origin).and_then(Vec::pop) {
        if conn.sender.ready().await.is_ok() {
            pool.busy += 1;
            return Ok((conn, no_timings()));
        }
    }
    let open = pool.busy as usize + idle_total;
    if open >= shared.limits.http_connections as usize {
        // Make room by closing an idle connection to another origin.
        if let Some(list) = pool.idle.values_mut().find(|l| !l.is_empty()) {
            list.pop();
        } else {
            return Err(RequestError::TooManyConnections);
        }
    }
    let (stream, t) = net::connect(origin, &shared.tls, shared.limits.connect_timeout).await?;
    let counters = stream.counters();
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| hyper_error(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    pool.busy += 1;
    let timings = Timings {
        dns_us: t.dns_us,
        connect_us: t.connect_us,
        tls_us: t.tls_us,
        ..no_timings()
    };
    Ok((PooledConn { sender, counters }, timings))
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

fn build_request(
    pool: &HttpPool,
    request: &Request,
    url: &url::Url,
) -> Result<http::Request<Full<Bytes>>, RequestError> {
    let (body, content_type) = body_bytes(&request.body)?;
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_owned(),
    };
    let mut b = http::Request::builder()
        .method(method_str(request.method))
        .uri(path)
        .header(http::header::HOST, host)
        .header(
            http::header::USER_AGENT,
            concat!("chaperon/", env!("CARGO_PKG_VERSION")),
        )
        .header(http::header::ACCEPT, "*/*");
    let mut has_content_type = false;
    for (name, value) in &request.headers {
        check_header(name, value)?;
        has_content_type |= name.eq_ignore_ascii_case("content-type");
        b = b.header(name.as_str(), value.as_str());
    }
    if let (Some(ct), false) = (content_type, has_content_type) {
        b = b.header(http::header::CONTENT_TYPE, ct);
    }
    if let Some(cookies) = pool.cookie_header() {
        b = b.header(http::header::COOKIE, cookies);
    }
    if let Some((user, pass)) = &request.options.basic_auth {
        b = b.header(http::header::AUTHORIZATION, basic_auth(user, pass));
    }
    b.body(Full::new(body))
        .map_err(|e| RequestError::Invalid(e.to_string()))
}

fn check_header(name: &str, value: &str) -> Result<(), RequestError> {
    if FORBIDDEN_HEADERS
        .iter()
        .any(|f| name.eq_ignore_ascii_case(f))
    {
        return Err(RequestError::Invalid(format!(
            "header `{name}` is set by the host and may not be set by a scenario"
        )));
    }
    http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        RequestError::Invalid(format!(
            "invalid header name `{}`",
            crate::session_host::escape(name)
        ))
    })?;
    http::HeaderValue::from_str(value)
        .map_err(|_| RequestError::Invalid(format!("invalid value for header `{name}`")))?;
    Ok(())
}

fn basic_auth(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn body_bytes(body: &Body) -> Result<(Bytes, Option<&'static str>), RequestError> {
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
    if bytes.len() > MAX_REQUEST_BODY {
        return Err(RequestError::TooLarge);
    }
    Ok((bytes, ct))
}

/// Reads the body; beyond `cap` bytes the rest is read and discarded (so the connection stays
/// usable) and the response is flagged truncated.
async fn read_body(
    mut body: hyper::body::Incoming,
    cap: usize,
) -> Result<(Vec<u8>, bool), RequestError> {
    let mut out = Vec::new();
    let mut truncated = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| hyper_error(&e))?;
        if let Ok(data) = frame.into_data() {
            let room = cap.saturating_sub(out.len());
            truncated |= data.len() > room;
            out.extend_from_slice(data.get(..room.min(data.len())).unwrap_or_default());
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

/// Sends `requests` in parallel, at most `http_connections` at a time; results in order.
/// Each parallel lane gets its own pool seeded with the session's cookies and an idle
/// connection when one is free; afterwards cookies and connections return to the session.
pub async fn batch(
    shared: &RunShared,
    pool: &mut HttpPool,
    requests: Vec<Request>,
) -> Vec<Result<Response, RequestError>> {
    let lanes = (shared.limits.http_connections.max(1) as usize).min(requests.len().max(1));
    let mut results = Vec::with_capacity(requests.len());
    let mut iter = requests.into_iter().peekable();
    while iter.peek().is_some() {
        let chunk: Vec<Request> = iter.by_ref().take(lanes).collect();
        let mut forks: Vec<HttpPool> = (0..chunk.len()).map(|_| pool.fork()).collect();
        let futures = chunk
            .into_iter()
            .zip(forks.iter_mut())
            .map(|(req, fork)| send(shared, fork, req));
        results.extend(futures_util::future::join_all(futures).await);
        for fork in forks {
            pool.absorb(fork);
        }
    }
    results
}

impl HttpPool {
    /// A lane for a parallel request: the cookies and one idle connection.
    fn fork(&mut self) -> HttpPool {
        let mut lane = HttpPool {
            cookies: self.cookies.clone(),
            ..HttpPool::default()
        };
        if let Some((origin, list)) = self.idle.iter_mut().find(|(_, l)| !l.is_empty())
            && let Some(conn) = list.pop()
        {
            lane.idle.entry(origin.clone()).or_default().push(conn);
        }
        lane
    }

    /// Takes back a lane's cookies and idle connections.
    fn absorb(&mut self, lane: HttpPool) {
        self.cookies.extend(lane.cookies);
        for (origin, conns) in lane.idle {
            self.idle.entry(origin).or_default().extend(conns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_base_path_and_switches_ws_scheme() {
        let base = url::Url::parse("http://127.0.0.1:8080/api/").ok();
        let u = resolve(base.as_ref(), "/items/1", false).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/api/items/1");
        let u = resolve(base.as_ref(), "/ping/pong", true).unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:8080/api/ping/pong");
        assert!(resolve(None, "/x", false).is_err());
        assert!(resolve(None, "gopher://x/", false).is_err());
    }

    #[test]
    fn cookies_merge_by_name() {
        let mut p = HttpPool::default();
        p.store_cookies(["a=1; Path=/", "b=2"].into_iter());
        p.store_cookies(["a=3"].into_iter());
        assert_eq!(p.cookie_header().unwrap(), "a=3; b=2");
        p.store_cookies(["b=; Max-Age=0"].into_iter());
        assert_eq!(p.cookie_header().unwrap(), "a=3");
    }

    #[test]
    fn expected_statuses() {
        assert!(is_expected(200, &[]));
        assert!(!is_expected(404, &[]));
        assert!(is_expected(404, &[StatusRange { min: 404, max: 404 }]));
    }
}
