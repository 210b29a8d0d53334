//! Plain HTTP routes of the target (the pub/sub ones live in `topics`) and the helpers that
//! build responses.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;

use crate::Shared;
use crate::topics::{poll, publish};

/// Largest `/bytes/{n}` answer, so a typo cannot make the target allocate gigabytes.
const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Largest request body read by `/echo` and `/items`, for the same reason.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;
/// Longest `/delay/{ms}`, so a stuck scenario cannot park connections forever.
const MAX_DELAY_MS: u64 = 10_000;

const TEXT: &str = "text/plain; charset=utf-8";
pub(crate) const JSON: &str = "application/json";
pub(crate) const OCTETS: &str = "application/octet-stream";

/// Response type of every route: bodies are small and fully built, so `Full` suffices.
pub(crate) type Resp = Response<Full<Bytes>>;

/// Dispatches plain HTTP. HEAD is routed like GET; hyper then omits the body but keeps
/// the content-length, which is exactly what HEAD means.
pub(crate) async fn route(req: Request<Incoming>, shared: &Shared) -> Resp {
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
pub(crate) async fn read_body(req: Request<Incoming>) -> Option<(Option<HeaderValue>, Bytes)> {
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
pub(crate) fn headers_json(headers: &HeaderMap) -> Value {
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

pub(crate) fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    with_type(status, TEXT, body.into())
}

pub(crate) fn json(status: StatusCode, value: &Value) -> Resp {
    with_type(status, JSON, Bytes::from(value.to_string()))
}

pub(crate) fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = status;
    resp
}

pub(crate) fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Resp {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}
