//! Unit tests of the parts that need no host (they run natively: `cargo test -p chaperon-sdk`).

use std::collections::BTreeMap;

use crate::session::{Session, split_path};
use crate::wit::chaperon::scenario::http::Timings;
use crate::wit::chaperon::scenario::types::ScenarioError;
use crate::{Body, Error, Method, Request, RequestError, Response, json, parse_args};

fn session() -> Session {
    Session {
        connections: BTreeMap::new(),
        aborted: None,
    }
}

#[test]
fn dotted_paths_split_into_segments() {
    assert_eq!(
        split_path("ping_pong.iterations"),
        ["ping_pong", "iterations"]
    );
    assert_eq!(split_path("items"), ["items"]);
    assert!(split_path("").is_empty());
}

#[test]
fn errors_convert_and_display() {
    assert_eq!(
        Error::from("evil error"),
        Error::Failed("evil error".into())
    );
    assert_eq!(Error::from(String::from("x")), Error::Failed("x".into()));
    assert_eq!(
        Error::from(RequestError::Timeout),
        Error::Request(RequestError::Timeout)
    );
    assert_eq!(Error::Failed("evil error".into()).to_string(), "evil error");
    assert_eq!(
        Error::Request(RequestError::Refused).to_string(),
        "request failed: connection refused"
    );
    assert_eq!(
        Error::Request(RequestError::WsHandshake(403)).to_string(),
        "request failed: websocket handshake answered with HTTP 403"
    );
    let json_err = serde_json::from_str::<u32>("\"x\"").unwrap_err();
    assert!(matches!(Error::from(json_err), Error::Json(_)));
}

#[test]
fn finish_maps_errors_for_the_host() {
    let mut s = session();
    assert!(s.finish(Ok(())).is_ok());
    assert!(
        matches!(s.finish::<()>(Err("boom".into())), Err(ScenarioError::Failed(m)) if m == "boom")
    );
    assert!(matches!(
        s.finish::<()>(Err(Error::Request(RequestError::Timeout))),
        Err(ScenarioError::Failed(m)) if m == "request failed: timeout"
    ));
    let err = s.abort("stop");
    assert!(matches!(s.finish::<()>(Err(err)), Err(ScenarioError::Aborted(r)) if r == "stop"));
    // An abort whose error was dropped is still reported, once.
    let _ = s.abort("dropped");
    assert!(matches!(s.finish(Ok(())), Err(ScenarioError::Aborted(r)) if r == "dropped"));
    assert!(s.finish(Ok(())).is_ok());
}

#[test]
fn invoke_args_parse() {
    assert_eq!(parse_args("").unwrap(), json!(null));
    assert_eq!(parse_args("{\"n\":1}").unwrap(), json!({ "n": 1 }));
    assert!(matches!(parse_args("{"), Err(Error::Json(_))));
}

#[test]
fn request_builder_fills_the_wit_request() {
    let req = Request::post("/items")
        .header("x-a", "1")
        .query("q", "rust")
        .json(&json!({ "name": "apple" }))
        .metric_name("/items")
        .timeout_ms(500)
        .expect_status(201, 201)
        .follow_redirects(3)
        .basic_auth("u", "p")
        .into_host()
        .unwrap();
    assert_eq!(req.method, Method::Post);
    assert_eq!(req.url, "/items");
    assert_eq!(req.headers, [("x-a".to_string(), "1".to_string())]);
    assert_eq!(req.query, [("q".to_string(), "rust".to_string())]);
    assert_eq!(req.body, Body::Json("{\"name\":\"apple\"}".into()));
    assert_eq!(req.options.metric_name.as_deref(), Some("/items"));
    assert_eq!(req.options.timeout_ms, Some(500));
    assert_eq!(
        (req.options.expect[0].min, req.options.expect[0].max),
        (201, 201)
    );
    assert_eq!(req.options.follow_redirects, Some(3));
    assert_eq!(req.options.basic_auth, Some(("u".into(), "p".into())));

    let form = Request::post("/login")
        .form(&[("user", "alice")])
        .into_host()
        .unwrap();
    assert_eq!(form.body, Body::Form(vec![("user".into(), "alice".into())]));
    assert_eq!(Request::get("/").into_host().unwrap().body, Body::None);
}

#[test]
fn a_json_body_that_does_not_serialize_fails_at_send() {
    let mut map = BTreeMap::new();
    map.insert((1, 2), "tuple keys are not JSON");
    assert!(matches!(
        Request::post("/x").json(&map).into_host(),
        Err(Error::Json(_))
    ));
}

#[test]
fn bodies_convert() {
    assert_eq!(Body::from("hi"), Body::Text("hi".into()));
    assert_eq!(Body::from(vec![1u8, 2]), Body::Bytes(vec![1, 2]));
    assert_eq!(Body::from(&b"ab"[..]), Body::Bytes(b"ab".to_vec()));
    assert_eq!(
        Body::from(json!({ "a": 1 })),
        Body::Json("{\"a\":1}".into())
    );
    assert_eq!(Body::from(()), Body::None);
}

#[test]
fn response_helpers() {
    let res = Response {
        status: 201,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: b"{\"name\":\"apple\"}".to_vec(),
        body_truncated: false,
        expected: true,
        timings: Timings {
            dns_us: 0,
            connect_us: 0,
            tls_us: 0,
            ttfb_us: 0,
            total_us: 0,
        },
        bytes_sent: 0,
        bytes_received: 0,
    };
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.header("x-missing"), None);
    assert_eq!(res.text(), "{\"name\":\"apple\"}");
    assert_eq!(res.json::<serde_json::Value>().unwrap()["name"], "apple");
    assert!(matches!(res.json::<u32>(), Err(Error::Json(_))));
    assert!(res.ok());
}

#[test]
fn a_request_keeps_every_response_part_unless_told() {
    use crate::wit::chaperon::scenario::http::ResponseParts;
    assert_eq!(Request::get("/").keep, ResponseParts::all());
    assert_eq!(Request::get("/").status_only().keep, ResponseParts::empty());
    assert_eq!(
        Request::get("/").discard_body().keep,
        ResponseParts::HEADERS
    );
}
