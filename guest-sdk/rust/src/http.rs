//! HTTP: the [`Request`] builder, [`Response`] helpers and the `Session` HTTP actions.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::session::Session;
use crate::wit::chaperon::scenario::http as host;
use crate::wit::chaperon::scenario::http::{
    Body, Method, RequestOptions, Response, ResponseParts, StatusRange,
};

/// An HTTP request, built step by step and sent with [`Session::send`] or [`Session::batch`].
///
/// `path` is resolved against the load test's `base_url`, or is an absolute URL.
///
/// ```no_run
/// # use chaperon_sdk::prelude::*;
/// # fn f(s: &mut Session) -> Result {
/// let res = s.send(
///     Request::get("/search")
///         .query("q", "rust")
///         .header("accept", "application/json")
///         .metric_name("/search")
///         .timeout_ms(2_000),
/// )?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Request {
    inner: host::Request,
    /// The response parts handed back (all unless [`Request::discard_body`] or
    /// [`Request::status_only`]).
    pub(crate) keep: ResponseParts,
    /// A builder step that failed (e.g. a value that does not serialize to JSON); reported
    /// when the request is sent.
    error: Option<Error>,
}

impl Request {
    /// A request with `method` to `path`, no headers and no body.
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Request {
            inner: host::Request {
                method,
                url: path.into(),
                headers: Vec::new(),
                query: Vec::new(),
                body: Body::None,
                options: RequestOptions {
                    metric_name: None,
                    timeout_ms: None,
                    expect: Vec::new(),
                    follow_redirects: None,
                    basic_auth: None,
                },
            },
            keep: ResponseParts::all(),
            error: None,
        }
    }

    /// A `GET` request.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::Get, path)
    }

    /// A `HEAD` request.
    pub fn head(path: impl Into<String>) -> Self {
        Self::new(Method::Head, path)
    }

    /// A `POST` request.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::Post, path)
    }

    /// A `PUT` request.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::Put, path)
    }

    /// A `PATCH` request.
    pub fn patch(path: impl Into<String>) -> Self {
        Self::new(Method::Patch, path)
    }

    /// A `DELETE` request.
    pub fn delete(path: impl Into<String>) -> Self {
        Self::new(Method::Delete, path)
    }

    /// An `OPTIONS` request.
    pub fn options(path: impl Into<String>) -> Self {
        Self::new(Method::Options, path)
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a query parameter (URL-encoded by the host).
    pub fn query(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.inner.query.push((name.into(), value.into()));
        self
    }

    /// Sets the body: text (`&str`, `String`), bytes (`Vec<u8>`, `&[u8]`) or JSON ([`Value`](crate::Value)).
    pub fn body(mut self, body: impl Into<Body>) -> Self {
        self.inner.body = body.into();
        self
    }

    /// Sets a JSON body (and `content-type: application/json` unless a header sets it).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// let req = Request::post("/items").json(&json!({ "name": "apple" }));
    /// ```
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(json) => self.inner.body = Body::Json(json),
            Err(e) => self.error = Some(e.into()),
        }
        self
    }

    /// Sets a URL-encoded form body (and its content type).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// let req = Request::post("/login").form(&[("user", "alice"), ("password", "secret")]);
    /// ```
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, fields: &[(K, V)]) -> Self {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()));
        self.inner.body = Body::Form(fields.collect());
        self
    }

    /// Records this request under the metric `name` instead of its path, so dynamic paths
    /// share one histogram: `Request::get(format!("/items/{id}")).metric_name("/items/:id")`.
    pub fn metric_name(mut self, name: impl Into<String>) -> Self {
        self.inner.options.metric_name = Some(name.into());
        self
    }

    /// Timeout of the whole exchange, body included (default: the load test's).
    pub fn timeout_ms(mut self, ms: u32) -> Self {
        self.inner.options.timeout_ms = Some(ms);
        self
    }

    /// Adds `min..=max` to the statuses that count as success: 200-399 always count, and
    /// each call adds a range (it never narrows the default). [`Response::ok`] follows it.
    pub fn expect_status(mut self, min: u16, max: u16) -> Self {
        self.inner.options.expect.push(StatusRange { min, max });
        self
    }

    /// Follows up to `max` redirects (default: none).
    pub fn follow_redirects(mut self, max: u32) -> Self {
        self.inner.options.follow_redirects = Some(max);
        self
    }

    /// Uses HTTP basic auth.
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.inner.options.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Drops the response body unread by the scenario (`Response::body` is empty; the host
    /// still reads it and counts its bytes), like k6's `responseType: "none"`: the request
    /// costs no copy of the body. Headers are kept.
    pub fn discard_body(mut self) -> Self {
        self.keep.remove(ResponseParts::BODY);
        self
    }

    /// Hands back only the status, timings and byte counts (no headers, no body): the cheapest
    /// request, for loops that check only [`Response::ok`] or the status.
    pub fn status_only(mut self) -> Self {
        self.keep = ResponseParts::empty();
        self
    }

    pub(crate) fn into_host(self) -> Result<host::Request> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.inner),
        }
    }
}

impl From<&str> for Body {
    fn from(text: &str) -> Self {
        Body::Text(text.to_owned())
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Body::Text(text)
    }
}

impl From<&[u8]> for Body {
    fn from(bytes: &[u8]) -> Self {
        Body::Bytes(bytes.to_vec())
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body::Bytes(bytes)
    }
}

impl From<serde_json::Value> for Body {
    fn from(json: serde_json::Value) -> Self {
        Body::Json(json.to_string())
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Body::None
    }
}

impl Response {
    /// The body as text (invalid UTF-8 is replaced with `�`).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T` (use [`Value`](crate::Value) for any JSON).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let item: Value = s.get("/items/1")?.json()?;
    /// # Ok(()) }
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| Error::Json(format!("response body: {e}")))
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is one the request expected: 200-399 and every range added with
    /// [`Request::expect_status`].
    pub fn ok(&self) -> bool {
        self.expected
    }
}

impl Session {
    /// Sends a request and reads the whole response. An unexpected status is still `Ok`
    /// (see [`Response::ok`]); only network failures are errors.
    pub fn send(&mut self, request: Request) -> Result<Response> {
        let keep = request.keep;
        let request = request.into_host()?;
        if keep == ResponseParts::all() {
            Ok(host::send(&request)?)
        } else {
            Ok(host::send_keeping(&request, keep)?)
        }
    }

    /// Sends requests in parallel (bounded by the session's connection cap); the results are
    /// in request order.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let results = s.batch(vec![Request::get("/a"), Request::get("/b")]);
    /// for res in results {
    ///     s.check("batch ok", res?.ok());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn batch(&mut self, requests: Vec<Request>) -> Vec<Result<Response>> {
        let mut results: Vec<Option<Result<Response>>> = Vec::with_capacity(requests.len());
        let mut valid = Vec::with_capacity(requests.len());
        for request in requests {
            match request.into_host() {
                Ok(r) => {
                    valid.push(r);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut sent = host::batch(&valid).into_iter();
        results
            .into_iter()
            .map(|r| match r {
                Some(err) => err,
                None => sent
                    .next()
                    .map(|r| r.map_err(Error::from))
                    .unwrap_or_else(|| {
                        Err(Error::Failed(
                            "batch: the host returned too few results".into(),
                        ))
                    }),
            })
            .collect()
    }

    /// `GET path`.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let res = s.get("/")?;
    /// s.check("home ok", res.ok());
    /// # Ok(()) }
    /// ```
    pub fn get(&mut self, path: &str) -> Result<Response> {
        self.send(Request::get(path))
    }

    /// `HEAD path`.
    pub fn head(&mut self, path: &str) -> Result<Response> {
        self.send(Request::head(path))
    }

    /// `DELETE path`.
    pub fn delete(&mut self, path: &str) -> Result<Response> {
        self.send(Request::delete(path))
    }

    /// `POST path` with a body (text, bytes, a JSON [`Value`](crate::Value), or `()` for none).
    pub fn post(&mut self, path: &str, body: impl Into<Body>) -> Result<Response> {
        self.send(Request::post(path).body(body))
    }

    /// `PUT path` with a body.
    pub fn put(&mut self, path: &str, body: impl Into<Body>) -> Result<Response> {
        self.send(Request::put(path).body(body))
    }

    /// `PATCH path` with a body.
    pub fn patch(&mut self, path: &str, body: impl Into<Body>) -> Result<Response> {
        self.send(Request::patch(path).body(body))
    }

    /// `POST path` with `value` as a JSON body.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// let created: Value = s.post_json("/items", &json!({ "name": "apple" }))?.json()?;
    /// # Ok(()) }
    /// ```
    pub fn post_json<T: Serialize + ?Sized>(&mut self, path: &str, value: &T) -> Result<Response> {
        self.send(Request::post(path).json(value))
    }
}
