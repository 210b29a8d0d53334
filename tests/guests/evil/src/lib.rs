//! Test guest: one hostile (or merely odd) behaviour per session, picked by config.
//!
//! - `evil.mode`: what to do (see [`misbehave`]); default `"ok"`.
//! - `evil.phase`: when: `"init"`, `"run"` (default) or `"teardown"`.
//! - `invoke(mode, args)` runs `mode` in an async child and returns `args`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use chaperon_sdk::prelude::*;
use chaperon_sdk::{ConnectOptions, Message, RequestError};

const MIB: usize = 1024 * 1024;

struct Evil;

impl Evil {
    fn in_phase(s: &mut Session, phase: &str) -> Result {
        if s.config_or::<String>("evil.phase", "run".into()) != phase {
            return Ok(());
        }
        let mode: String = s.config_or("evil.mode", "ok".into());
        misbehave(s, &mode)
    }
}

impl Scenario for Evil {
    fn init(s: &mut Session) -> Result {
        Self::in_phase(s, "init")
    }

    fn run(s: &mut Session) -> Result {
        Self::in_phase(s, "run")
    }

    fn teardown(s: &mut Session) -> Result {
        if s.config_or("evil.mark_teardown", false) {
            s.record("teardown_ran", 1);
        }
        Self::in_phase(s, "teardown")
    }

    fn invoke(s: &mut Session, function: &str, args: Value) -> Result<Value> {
        match function {
            // Load-test hooks: setup returns data for every session; teardown records what it got.
            "make_setup" => Ok(json!({ "token": "abc" })),
            "check_teardown" => {
                s.record("teardown_saw_token", u32::from(args["token"] == "abc"));
                Ok(Value::Null)
            }
            _ => {
                misbehave(s, function)?;
                Ok(args)
            }
        }
    }
}

fn misbehave(s: &mut Session, mode: &str) -> Result {
    match mode {
        "ok" => Ok(()),
        "delay" => {
            s.delay(s.config_or("evil.delay_ms", 0));
            Ok(())
        }
        // Runs until the host's CPU budget interrupts it.
        "spin" => {
            let mut n = 0u64;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        // CPU-heavy work that ends on its own after `evil.ms`.
        "spin_ms" => {
            let budget = Duration::from_millis(s.config_or("evil.ms", 100));
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < budget {
                n = black_box(n.wrapping_add(1));
            }
            Ok(())
        }
        // Grows memory until the host's memory limit makes an allocation fail (a trap).
        "alloc" => {
            let mut chunks: Vec<Vec<u8>> = Vec::new();
            loop {
                chunks.push(black_box(vec![0xA5; MIB]));
            }
        }
        "recurse" => {
            black_box(recurse(black_box(0)));
            Ok(())
        }
        "panic" => panic!("evil panic"),
        "error" => Err("evil error".into()),
        "abort" => Err(s.abort("evil abort")),
        "sleep_forever" => {
            s.delay(u32::MAX);
            Ok(())
        }
        "log_flood" => {
            s.log_debug("evil debug line");
            for i in 0..100_000 {
                s.log_info(format!("evil log line {i}"));
            }
            Ok(())
        }
        // Holds a WebSocket connection open while delaying.
        "ws_hold" => {
            let path: String = s.config_or("evil.path", "/ping/pong".into());
            s.ws_connect(&path)?;
            s.delay(s.config_or("evil.delay_ms", 0));
            Ok(())
        }
        // Records `evil.offset + vu` under `value` (merge tests compare exact values).
        "record" => {
            let offset: u32 = s.config_or("evil.offset", 0);
            let value = offset + s.vu();
            s.record("value", value);
            Ok(())
        }
        // `evil.n` cheap host calls in a row (host-call cost benchmark).
        "calls" => {
            let n: u32 = s.config_or("evil.n", 0);
            let mut acc = 0u32;
            for _ in 0..n {
                acc = acc.wrapping_add(s.random(10));
            }
            black_box(acc);
            Ok(())
        }
        // Parent: `evil.n` children that report ready, wait for "go", then finish.
        "children" => {
            let n: u32 = s.config_or("evil.n", 3);
            for i in 0..n {
                s.spawn_named("kids", "ready_then_go", json!({ "child": i }))?;
            }
            for _ in 0..n {
                s.await_signal("ready", Some(2000))?;
            }
            s.signal("kids", "go")?;
            let done = s.await_task("kids")?;
            s.record("children_done", done.len() as u32);
            Ok(())
        }
        // Child of "children".
        "ready_then_go" => {
            s.signal_parent("ready")?;
            s.await_signal("go", Some(2000))?;
            Ok(())
        }
        // `evil.n` children spread over `evil.ms`, then awaited.
        "spread" => {
            let n: u32 = s.config_or("evil.n", 5);
            s.cc_spread("ok", n, s.config_or("evil.ms", 100), "spread")?;
            let done = s.await_task("spread")?;
            s.record("spread_done", done.len() as u32);
            Ok(())
        }
        // A child that panics: the parent sees a typed failure and goes on.
        "child_fails" => {
            s.spawn("panic", json!(null))?;
            let failed = matches!(s.await_task("panic"), Err(Error::Flow(_)));
            s.check("child failure is reported", failed);
            Ok(())
        }
        // Children left un-awaited are awaited by the host before the session ends.
        "orphans" => {
            s.spawn_named("orphan", "delay", json!(null))?;
            Ok(())
        }
        // One step of a sequence: records the `step_in` it was given and passes on one more.
        "step" => {
            let v: u32 = s.config_or("step_in", 0);
            s.record("step_value", v);
            s.assign("step_in", v + 1)
        }
        // Runs the scenario `stepper` nested and checks that its assigns came back.
        "nest" => {
            s.assign("mine", "kept")?;
            let config = json!({ "step_in": 41, "evil": { "mode": "step" } });
            s.run_scenario("stepper", config, true)?;
            let back: u32 = s.assigned("step_in")?;
            let mine: String = s.assigned("mine")?;
            s.record("nested_assign", back);
            s.check("own assigns kept", mine == "kept");
            Ok(())
        }
        // Reads the load test's setup data.
        "read_setup" => {
            let data: Value = s.setup_data().unwrap_or(Value::Null);
            s.record("setup_seen", u32::from(data["token"] == "abc"));
            Ok(())
        }
        // Takes one record of the data set `nums` and records its `n`.
        "feed" => {
            let record: Value = s.feed("nums")?;
            let n = record["n"].as_u64().unwrap_or(u64::MAX);
            s.record("fed", u32::try_from(n).unwrap_or(u32::MAX));
            Ok(())
        }
        // Fails `evil.fail_times` times, under retry_on_error(`evil.retries`, 10 ms).
        "retry" => {
            let (fails, retries): (u32, u32) = (
                s.config_or("evil.fail_times", 2),
                s.config_or("evil.retries", 2),
            );
            let mut attempts = 0;
            let outcome = s.retry_on_error(retries, 10, |s| {
                attempts += 1;
                s.record("attempt", attempts);
                if attempts <= fails {
                    Err("not yet".into())
                } else {
                    Ok(())
                }
            });
            s.check("retry succeeded", outcome.is_ok());
            Ok(())
        }
        // Traced iterations of a `evil.delay_ms` delay for `evil.ms`.
        "loop" => {
            let (ms, each) = (
                s.config_or("evil.ms", 200),
                s.config_or("evil.delay_ms", 50),
            );
            s.loop_for("tick", ms, |s| {
                s.delay(each);
                Ok(())
            })
        }
        // Two named connections to /ws/echo, text and JSON, a typed receive timeout, close.
        "ws_features" => {
            s.ws_connect_named("a", "/ws/echo")?;
            s.ws_connect_named("b", "/ws/echo")?;
            s.ws_send_to("a", "x")?;
            let echoed = s.ws_recv_from("a", Some(2000))?;
            s.check("text echoed on a", echoed.as_text() == Some("x"));
            s.ws_send_json_to("b", &json!({ "k": 1 }))?;
            s.ws_await_recv_from("b", r#"{"k":1}"#, Some(2000))?;
            let silent = s.ws_recv_from("a", Some(100));
            let timed_out = matches!(silent, Err(Error::Request(RequestError::Timeout)));
            s.check("receive timeout is typed", timed_out);
            s.ws_close_named("a")?;
            s.ws_close_named("b")
        }
        // Opens one WebSocket more than the session's cap allows.
        "ws_cap" => {
            for i in 0..4 {
                s.ws_connect_named(&format!("c{i}"), "/ws/echo")?;
            }
            let fifth = s.ws_connect_named("c4", "/ws/echo");
            let refused = matches!(fifth, Err(Error::Request(RequestError::TooManyConnections)));
            s.check("fifth connection refused at once", refused);
            Ok(())
        }
        // One GET of `evil.path` (default "/"); the request error, if any, ends the session.
        // A well-behaved canary: `evil.n` GETs of `/`, `evil.delay_ms` apart.
        "gets" => {
            let (n, each): (u32, u32) =
                (s.config_or("evil.n", 100), s.config_or("evil.delay_ms", 5));
            for _ in 0..n {
                let res = s.get("/")?;
                s.check("canary ok", res.ok());
                s.delay(each);
            }
            Ok(())
        }
        // `evil.n` children that spin until the tree's CPU budget ends them.
        "spinners" => {
            let n: u32 = s.config_or("evil.n", 8);
            for _ in 0..n {
                s.spawn_named("spinners", "spin", json!(null))?;
            }
            let _ = s.await_task("spinners");
            Ok(())
        }
        // Assigns `evil.mib` values of ~1 MiB each, then holds them `evil.hold_ms`.
        "hoard" => {
            let mib: u32 = s.config_or("evil.mib", 1);
            let value = "x".repeat(1000 * 1024);
            for i in 0..mib {
                s.assign(&format!("hoard.{i}"), &value)?;
            }
            s.delay(s.config_or("evil.hold_ms", 0));
            Ok(())
        }
        // Queues ~1 MiB signals at a child that never reads them, until one is refused.
        "signal_flood" => {
            s.spawn_named("deaf", "delay", json!(null))?;
            let value = "x".repeat(1000 * 1024);
            let mut queued = 0;
            let refused = loop {
                match s.signal("deaf", &value) {
                    Ok(()) => queued += 1,
                    Err(e) => break e.to_string(),
                }
                if queued > 100 {
                    break "never refused".into();
                }
            };
            s.record("signals queued", queued);
            s.check("signal refused: too large", refused.contains("host memory"));
            let _ = s.await_task("deaf");
            Ok(())
        }
        "get" => {
            let path: String = s.config_or("evil.path", "/".into());
            let res = s.get(&path)?;
            s.check("get ok", res.ok());
            Ok(())
        }
        // The same GET taken whole, status only and without its body; each result a check.
        "keeping" => {
            let full = s.get("/")?;
            let bare = s.send(Request::get("/").status_only())?;
            let no_body = s.send(Request::get("/").discard_body())?;
            let hops = s.send(
                Request::get("/redirect/2")
                    .follow_redirects(3)
                    .status_only(),
            )?;
            s.check(
                "whole: headers and body",
                !full.headers.is_empty() && full.text() == "chaperon demo target\n",
            );
            s.check(
                "status_only: status and byte counts, no headers, no body",
                bare.status == 200
                    && bare.ok()
                    && bare.headers.is_empty()
                    && bare.body.is_empty()
                    && bare.bytes_received as usize > full.body.len(),
            );
            s.check(
                "discard_body: headers, no body",
                no_body.header("content-length") == Some("21") && no_body.body.is_empty(),
            );
            s.check("status_only still follows redirects", hops.status == 200);
            Ok(())
        }
        // The same path with and then without query pairs: the second must carry none.
        "query_then_plain" => {
            let with: Value = s.send(Request::get("/search").query("q", "rust"))?.json()?;
            let without: Value = s.get("/search")?.json()?;
            s.check("query sent", with["q"] == "rust");
            s.check("no query carried over", without["q"] == "");
            Ok(())
        }
        // Exercises the HTTP surface against the demo target; each result is a named check.
        "http_features" => http_features(s),
        // WebSocket handshake with the session's cookies, headers, auth and a subprotocol; the
        // server pings and reports whether our pong arrived.
        "ws_handshake" => {
            s.get("/cookies/set?sid=abc")?;
            let options = ConnectOptions {
                metric_name: Some("/ws/handshake (probe)".into()),
                headers: vec![
                    ("x-tenant".into(), "t1".into()),
                    ("authorization".into(), "Bearer tok".into()),
                ],
                protocols: vec!["chat".into()],
                timeout_ms: Some(2000),
            };
            s.ws_connect_with("h", "/ws/handshake", options)?;
            let seen: Value = match s.ws_recv_from("h", Some(2000))? {
                Message::Text(t) => chaperon_sdk::serde_json::from_str(&t)?,
                _ => Value::Null,
            };
            s.check("cookie sent on connect", seen["cookie"] == "sid=abc");
            s.check("header sent on connect", seen["x-tenant"] == "t1");
            s.check(
                "auth sent on connect",
                seen["authorization"] == "Bearer tok",
            );
            s.check(
                "subprotocol offered",
                seen["sec-websocket-protocol"] == "chat",
            );
            let answer = s.ws_recv_from("h", Some(2000))?;
            s.check(
                "ping answered with pong",
                answer.as_text() == Some("pong received"),
            );
            s.ws_close_named("h")
        }
        "stderr" => {
            eprintln!("evil line on stderr");
            panic!("evil panic after stderr");
        }
        // `evil.n` requests to `evil.hang_url` that time out waiting for headers, then one GET
        // of `evil.path`: the timed-out requests must not use up the connection cap.
        "hang_then_get" => {
            let url: String = s.config("evil.hang_url")?;
            for _ in 0..s.config_or::<u32>("evil.n", 12) {
                let r = s.send(Request::get(url.as_str()).timeout_ms(100));
                let timed_out = matches!(r, Err(Error::Request(RequestError::Timeout)));
                s.check("hanging request times out", timed_out);
            }
            let path: String = s.config_or("evil.path", "/".into());
            let res = s.get(&path)?;
            s.check("request after timeouts ok", res.ok());
            Ok(())
        }
        // A cookie set by the base URL's host is not sent to `evil.other_url` (another host name
        // for the same server), and is sent back to its own.
        "cookie_origins" => {
            s.get("/cookies/set?sid=abc")?;
            let other: String = s.config("evil.other_url")?;
            let there: Value = s.get(&format!("{other}/cookies"))?.json()?;
            s.check(
                "cookie not sent to another origin",
                there.get("sid").is_none(),
            );
            let here: Value = s.get("/cookies")?.json()?;
            s.check("cookie sent to its origin", here["sid"] == "abc");
            Ok(())
        }
        // expect_status adds to the default 200-399; it never narrows it.
        "expect_adds" => {
            let ok = s.send(Request::get("/status/204").expect_status(404, 404))?;
            s.check("204 still expected with 404 added", ok.ok());
            let miss = s.send(Request::get("/status/500").expect_status(404, 404))?;
            s.check("500 not expected", !miss.ok());
            Ok(())
        }
        // Whether the scenario's own config (`own = "yes"` in the load-test file) is seen.
        "own_config" => {
            let own: String = s.config_or("own", String::new());
            s.check("own config seen", own == "yes");
            Ok(())
        }
        // Host-owned headers on a WebSocket handshake are refused, as on HTTP requests.
        "ws_forbidden_headers" => {
            for name in [
                "host",
                "connection",
                "upgrade",
                "sec-websocket-key",
                "Keep-Alive",
            ] {
                let options = ConnectOptions {
                    metric_name: None,
                    headers: vec![(name.into(), "x".into())],
                    protocols: Vec::new(),
                    timeout_ms: None,
                };
                let r = s.ws_connect_with("f", "/ping/pong", options);
                let refused = matches!(r, Err(Error::Request(RequestError::Invalid(_))));
                s.check("host-owned ws header refused", refused);
            }
            Ok(())
        }
        // GETs each of `evil.urls` and records how it went as a check `reach OUTCOME`
        // (`reach status 200`, `reach denied`, `reach blocked-ip`, `reach other: ...`).
        "reach" => {
            let urls: Vec<String> = s.config("evil.urls")?;
            for url in urls {
                let outcome = match s.send(Request::get(url.as_str())) {
                    Ok(r) => format!("status {}", r.status),
                    Err(Error::Request(RequestError::Denied(_))) => "denied".into(),
                    Err(Error::Request(RequestError::BlockedIp(_))) => "blocked-ip".into(),
                    Err(e) => format!("other: {e}"),
                };
                s.check(&format!("reach {outcome}"), true);
            }
            Ok(())
        }
        // A child that spins until stopped, then a child that spins `evil.ms`: records
        // whether the second completed (it cannot when children share their root's budget).
        "exhaust_then_spawn" => {
            s.spawn("spin", json!(null))?;
            let first = s.await_task("spin");
            s.check("first child ended by the budget", first.is_err());
            s.spawn("spin_ms", json!(null))?;
            let second = s.await_task("spin_ms").is_ok();
            s.record("second_child_completed", u32::from(second));
            Ok(())
        }
        // Extreme arguments to the imports: each must be refused with an error (a check
        // `refused: WHAT` passes) or accepted harmlessly, never end the run.
        "extremes" => extremes(s),
        // `evil.script`: a list of `[op, n]` calls with generated extreme arguments (see
        // [`script_call`]); every error is ignored. Driven by the host's property test.
        "script" => {
            let script: Vec<(String, u64)> = s.config_or("evil.script", Vec::new());
            for (op, n) in script {
                script_call(s, &op, n);
            }
            Ok(())
        }
        // From one tenant, tries to reach another's: its scenario `evil.other_scenario`, its
        // data set `evil.other_set`, its base URL `evil.other_url`; and its own data set
        // `evil.own_set`. Records a check for each.
        "tenant_probe" => {
            let other: String = s.config("evil.other_scenario")?;
            let r = s.run_scenario(&other, json!({}), true);
            s.check("other tenant's scenario is unknown", r.is_err());
            let other_set: String = s.config("evil.other_set")?;
            let r = s.feed::<Value>(&other_set);
            s.check("other tenant's data set is unknown", r.is_err());
            let own_set: String = s.config("evil.own_set")?;
            let r = s.feed::<Value>(&own_set);
            s.check("own data set is fed", r.is_ok());
            let url: String = s.config("evil.other_url")?;
            let r = s.send(Request::get(url.as_str()));
            let denied = matches!(r, Err(Error::Request(RequestError::Denied(_))));
            s.check("other tenant's base URL is denied", denied);
            let own = s.get("/health")?;
            s.check("own base URL is reachable", own.ok());
            s.check(
                "no setup data across tenants",
                s.setup_data::<Value>().is_none(),
            );
            Ok(())
        }
        // Records `evil.n` distinct metric names (`name 0`, `name 1`, ...).
        "many_metrics" => {
            for i in 0..s.config_or::<u32>("evil.n", 1500) {
                s.record(&format!("name {i}"), i);
            }
            Ok(())
        }
        // Runs scenario `child` nested, in mode `own_config`.
        "nest_own" => {
            s.run_scenario("child", json!({ "evil": { "mode": "own_config" } }), true)?;
            Ok(())
        }
        // Requests `evil.urls` and records each outcome; see [`fetch`].
        "fetch" => fetch(s),
        // One WebSocket to `evil.path` driven by `evil.ws_steps`; see [`ws_fault`].
        "ws_fault" => ws_fault(s),
        // `evil.children` children at once, each running `fetch` (with `evil.batch`, up to the
        // connection cap in parallel): many sockets open at once.
        "fd_storm" => {
            let n: u32 = s.config_or("evil.children", 16);
            s.cc_spread("fetch", n, 0, "storm")?;
            let done = s.await_task("storm");
            s.check("storm children done", done.is_ok());
            Ok(())
        }
        "forbidden_headers" => forbidden_headers(s),
        "header_injection" => header_injection(s),
        "wasi_probe" => wasi_probe(s),
        // Holds WASI handles without dropping them until the host's handle cap stops it.
        "handles" => {
            let mut held = Vec::new();
            loop {
                held.push(wasip2::cli::stdout::get_stdout());
                if held.len() % 1024 == 0 {
                    s.record("handles held", held.len() as u32);
                }
            }
        }
        // Asks the host for u64::MAX random bytes.
        "random_huge" => {
            let bytes = wasip2::random::random::get_random_bytes(u64::MAX);
            s.record("random bytes", bytes.len() as u32);
            Ok(())
        }
        other => Err(format!("unknown evil.mode {other:?}").into()),
    }
}

/// The request-error kind as the host's report names it (`ws-handshake 403` with its status).
fn error_kind(e: &RequestError) -> String {
    match e {
        RequestError::Denied(_) => "denied".into(),
        RequestError::BlockedIp(_) => "blocked-ip".into(),
        RequestError::Dns(_) => "dns".into(),
        RequestError::Refused => "refused".into(),
        RequestError::ConnectTimeout => "connect-timeout".into(),
        RequestError::Reset => "reset".into(),
        RequestError::Timeout => "timeout".into(),
        RequestError::Tls(_) => "tls".into(),
        RequestError::Protocol(_) => "protocol".into(),
        RequestError::WsHandshake(status) => format!("ws-handshake {status}"),
        RequestError::TooLarge => "too-large".into(),
        RequestError::TooManyConnections => "too-many-connections".into(),
        RequestError::HostCapacity => "host-capacity".into(),
        RequestError::Interrupted => "interrupted".into(),
        RequestError::Invalid(_) => "invalid".into(),
        RequestError::Closed => "closed".into(),
    }
}

/// An error's kind, or `other: TEXT` when it is not a request error.
fn outcome_of_error(e: &Error) -> String {
    match e {
        Error::Request(e) => error_kind(e),
        other => format!("other: {other}"),
    }
}

/// Mode `fetch`: requests each of `evil.urls` with `evil.method` (`GET` or `POST`), `evil.body`
/// and `evil.timeout_ms` when set, one after another with `evil.pause_ms` between them (or all
/// at once with `evil.batch`), `evil.repeat` times or, when `evil.for_ms` is set, over and over
/// until that much time has passed. Every outcome is a check `fetch OUTCOME` (`fetch status
/// 200`, `fetch status 500 unexpected`, `fetch status 200 truncated`, `fetch refused`, `fetch
/// connect-timeout`, ...) and its wall time a sample of `fetch time OUTCOME` (µs); a response's body
/// length is a sample of `fetch body bytes` (of a truncated one, also a check `fetch kept N
/// bytes`). A failed request never ends the session.
fn fetch(s: &mut Session) -> Result {
    let urls: Vec<String> = s.config("evil.urls")?;
    let method: String = s.config_or("evil.method", "GET".into());
    let body: Option<String> = s.config_or("evil.body", None);
    let timeout: Option<u32> = s.config_or("evil.timeout_ms", None);
    let repeat: u32 = s.config_or("evil.repeat", 1);
    let for_ms: u32 = s.config_or("evil.for_ms", 0);
    let pause: u32 = s.config_or("evil.pause_ms", 0);
    let batch: bool = s.config_or("evil.batch", false);
    let redirects: Option<u32> = s.config_or("evil.redirects", None);
    let build = |url: &str| {
        let mut r = match method.as_str() {
            "POST" => Request::post(url),
            _ => Request::get(url),
        };
        if let Some(b) = &body {
            r = r.body(b.as_str());
        }
        if let Some(ms) = timeout {
            r = r.timeout_ms(ms);
        }
        if let Some(n) = redirects {
            r = r.follow_redirects(n);
        }
        r
    };
    let start = Instant::now();
    let mut round = 0;
    loop {
        if batch {
            let t = Instant::now();
            let results = s.batch(urls.iter().map(|u| build(u)).collect());
            for r in &results {
                note_fetch(s, r, t);
            }
        } else {
            for url in &urls {
                let t = Instant::now();
                let r = s.send(build(url));
                if let Err(e) = &r {
                    s.log_info(format!("fetch {url}: {e}"));
                }
                note_fetch(s, &r, t);
                if pause > 0 {
                    s.delay(pause);
                }
            }
        }
        round += 1;
        let more = if for_ms > 0 {
            start.elapsed() < Duration::from_millis(for_ms.into())
        } else {
            round < repeat
        };
        if !more {
            return Ok(());
        }
    }
}

/// Records one `fetch` outcome.
fn note_fetch(s: &mut Session, r: &Result<Response>, started: Instant) {
    let outcome = match r {
        Ok(res) => {
            s.record("fetch body bytes", res.body.len() as u32);
            let mut o = format!("status {}", res.status);
            if !res.ok() {
                o.push_str(" unexpected");
            }
            if res.body_truncated {
                o.push_str(" truncated");
                s.check(&format!("fetch kept {} bytes", res.body.len()), true);
            }
            o
        }
        Err(e) => outcome_of_error(e),
    };
    s.record(&format!("fetch time {outcome}"), micros_since(started));
    s.check(&format!("fetch {outcome}"), true);
}

/// Mode `ws_fault`: opens a WebSocket to `evil.path` (handshake timeout `evil.timeout_ms` when
/// set; its wall time a sample of `ws connect time OUTCOME`, µs), then runs `evil.ws_steps`: `recv` (the default receive timeout), `recv:MS`, `send`
/// (the text `hello`), `hold:MS` (a delay) or `drain:MS` (receive until nothing arrives for MS;
/// the count is a sample of `ws drained`). Every outcome is a check `ws VERB OUTCOME`: `ws
/// connect ok`, `ws connect ws-handshake 403`, `ws recv text`, `ws recv binary`, `ws recv close
/// 4000 bye`, `ws send ok`, `ws recv reset`, `ws drain timeout`, ...; a failed connect ends the
/// steps, a failed step does not.
fn ws_fault(s: &mut Session) -> Result {
    let path: String = s.config("evil.path")?;
    let steps: Vec<String> = s.config_or("evil.ws_steps", Vec::new());
    let options = ConnectOptions {
        metric_name: None,
        headers: Vec::new(),
        protocols: Vec::new(),
        timeout_ms: s.config_or("evil.timeout_ms", None),
    };
    let started = Instant::now();
    let connected = s.ws_connect_with("f", &path, options);
    let outcome = match &connected {
        Ok(()) => "ok".to_owned(),
        Err(e) => outcome_of_error(e),
    };
    s.record(&format!("ws connect time {outcome}"), micros_since(started));
    s.check(&format!("ws connect {outcome}"), true);
    if connected.is_err() {
        return Ok(());
    }
    for step in steps {
        let (verb, arg) = step.split_once(':').unwrap_or((step.as_str(), ""));
        let ms: Option<u32> = arg.parse().ok();
        let outcome = match verb {
            "recv" => match s.ws_recv_from("f", ms) {
                Ok(m) => message_outcome(&m),
                Err(e) => outcome_of_error(&e),
            },
            "send" => match s.ws_send_to("f", "hello") {
                Ok(()) => "ok".to_owned(),
                Err(e) => outcome_of_error(&e),
            },
            "hold" => {
                s.delay(ms.unwrap_or(0));
                continue;
            }
            "drain" => {
                let mut n = 0u32;
                let end = loop {
                    match s.ws_recv_from("f", ms) {
                        Ok(Message::Close(_)) => break "close".to_owned(),
                        Ok(_) => n += 1,
                        Err(e) => break outcome_of_error(&e),
                    }
                };
                s.record("ws drained", n);
                end
            }
            other => return Err(format!("unknown ws step {other:?}").into()),
        };
        s.check(&format!("ws {verb} {outcome}"), true);
    }
    Ok(())
}

/// Microseconds since `start` (saturating at `u32::MAX`, 71 minutes).
fn micros_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX)
}

fn message_outcome(m: &Message) -> String {
    match m {
        Message::Text(_) => "text".into(),
        Message::Binary(_) => "binary".into(),
        Message::Close((code, reason)) => format!("close {code} {reason}"),
    }
}

/// Recursion without end: every frame keeps a live buffer and uses the result of the call
/// below it, so it cannot become a loop.
#[inline(never)]
#[expect(unconditional_recursion, reason = "the stack overflow is the point")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 8]);
    let below = recurse(black_box(depth + 1));
    black_box(below.wrapping_add(frame[(depth % 8) as usize]))
}

export_scenario!(Evil);

/// Statuses, redirects, cookies, auth, query, form, HEAD, PUT/PATCH/DELETE and a batch.
fn http_features(s: &mut Session) -> Result {
    let missing = s.get("/status/404")?;
    s.check(
        "404 is unexpected by default",
        missing.status == 404 && !missing.ok(),
    );
    let allowed = s.send(Request::get("/status/404").expect_status(404, 404))?;
    s.check("404 expected when asked", allowed.ok());
    let hops = s.send(Request::get("/redirect/3").follow_redirects(3))?;
    s.check("three redirects followed", hops.status == 200);
    let unfollowed = s.get("/redirect/1")?;
    s.check(
        "redirects not followed by default",
        unfollowed.status == 302,
    );
    s.get("/cookies/set?a=1&b=2")?;
    s.get("/cookies/set?a=3")?;
    let jar: Value = s.get("/cookies")?.json()?;
    s.check(
        "cookies merge by name",
        jar == json!({ "a": "3", "b": "2" }),
    );
    let req = Request::get("/headers")
        .basic_auth("ann", "secret")
        .header("x-tenant", "t1")
        .query("q", "a b");
    let headers: Value = s.send(req)?.json()?;
    s.check(
        "basic auth sent",
        headers["authorization"] == "Basic YW5uOnNlY3JldA==",
    );
    s.check("custom header sent", headers["x-tenant"] == "t1");
    let form = s.send(Request::post("/echo").form(&[("k", "v w")]))?;
    s.check("form encoded", form.text() == "k=v+w");
    let head = s.head("/")?;
    s.check("HEAD has no body", head.body.is_empty());
    let put = s.put("/echo", "p")?;
    s.check("PUT echoes", put.text() == "p");
    let patch = s.patch("/echo", "q")?;
    s.check("PATCH echoes", patch.text() == "q");
    let deleted = s.delete("/items/7")?;
    s.check("DELETE is 204", deleted.status == 204);
    let forbidden = s.send(Request::get("/").header("host", "elsewhere"));
    s.check(
        "host header refused",
        matches!(forbidden, Err(Error::Request(RequestError::Invalid(_)))),
    );
    let batch: Vec<Request> = (1..=6)
        .map(|i| Request::get(format!("/delay/{}", 100 + i)))
        .collect();
    let started = std::time::Instant::now();
    let results = s.batch(batch);
    s.check(
        "batch all ok",
        results.iter().all(|r| r.as_ref().is_ok_and(Response::ok)),
    );
    s.check(
        "batch ran in parallel",
        started.elapsed() < Duration::from_millis(500),
    );
    Ok(())
}

/// See mode `extremes`.
fn extremes(s: &mut Session) -> Result {
    let huge_url = format!("/{}", "u".repeat(16 * MIB));
    let r = s.get(&huge_url);
    s.check(
        "refused: 16 MiB URL",
        matches!(r, Err(Error::Request(RequestError::Invalid(_)))),
    );
    let mut many = Request::get("/health");
    for i in 0..100 {
        many = many.header(format!("x-{i}"), "v");
    }
    let r = s.send(many);
    s.check(
        "refused: 100 headers",
        matches!(r, Err(Error::Request(RequestError::Invalid(_)))),
    );
    let r = s.send(Request::get("/health").header("x-big", "v".repeat(64 * 1024)));
    s.check(
        "refused: 64 KiB header",
        matches!(r, Err(Error::Request(RequestError::Invalid(_)))),
    );
    let deep = "a.".repeat(100_000) + "a";
    let r = s.assign(&deep, 1);
    s.check("refused: 100,000-segment path", r.is_err());
    let r = s.assign("big", "x".repeat(2 * MIB));
    s.check("refused: 2 MiB assign", r.is_err());
    let r = s.signal_parent("x".repeat(2 * MIB));
    s.check("refused: 2 MiB signal", r.is_err());
    let r = s.cc_spread("ok", u32::MAX, 0, "many");
    s.check("refused: spread of u32::MAX", r.is_err());
    s.check(&"c".repeat(MIB), true);
    s.record(&"m".repeat(MIB), 1);
    s.record(&format!("control \u{1b}[31m {}", "é".repeat(300)), 1);
    Ok(())
}

/// One import called with an argument made from `n`: a string of `n` bytes (at most 16 MiB),
/// a path of `n` segments, JSON `n` levels deep, or `n` itself as a count or a duration.
fn script_call(s: &mut Session, op: &str, n: u64) {
    use chaperon_sdk::wit::chaperon::scenario::session as raw;
    let count = u32::try_from(n).unwrap_or(u32::MAX);
    let bytes = usize::try_from(n).unwrap_or(usize::MAX).min(16 * MIB);
    let text = |c: &str| c.repeat(bytes);
    let deep_path = || vec!["a".to_owned(); bytes.min(200_000)];
    let deep_json = || "[".repeat(bytes) + &"]".repeat(bytes);
    let _ = match op {
        "get" => s.get(&format!("/{}", text("u"))).map(drop),
        "header_value" => s
            .send(Request::get("/health").header("x-h", text("v")))
            .map(drop),
        "header_count" => {
            let mut r = Request::get("/health");
            for i in 0..count.min(100_000) {
                r = r.header(format!("x-{i}"), "v");
            }
            s.send(r).map(drop)
        }
        "assign_path" => raw::assign(&deep_path(), "1").map_err(|_| "refused".into()),
        "assign_text" => s.assign("t", text("x")),
        "assign_deep" => raw::assign(&["d".into()], &deep_json()).map_err(|_| "refused".into()),
        "config_deep" => raw::set_config(&["d".into()], &deep_json()).map_err(|_| "refused".into()),
        "config_path" => raw::set_config(&deep_path(), "1").map_err(|_| "refused".into()),
        "read_path" => raw::assigned(&deep_path())
            .map(drop)
            .map_err(|_| "refused".into()),
        "signal_parent" => s.signal_parent(text("s")),
        "signal_deep" => raw::signal_parent(&deep_json()).map_err(|_| "refused".into()),
        "spread" => s.cc_spread("ok", count, count, "t"),
        "spawn_args" => raw::spawn("ok", &deep_json(), &text("t"))
            .map(drop)
            .map_err(|_| "refused".into()),
        "await" => raw::await_signal(None, Some(count.min(2_000)))
            .map(drop)
            .map_err(|_| "refused".into()),
        "check" => {
            s.check(&text("c"), n.is_multiple_of(2));
            Ok(())
        }
        "record" => {
            s.record(&text("m"), count);
            Ok(())
        }
        "metric_names" => {
            for i in 0..count.min(5_000) {
                s.record(&format!("name {i}"), 1);
            }
            Ok(())
        }
        "log" => {
            s.log_info(text("l"));
            Ok(())
        }
        "feed" => s.feed::<Value>(&text("d")).map(drop),
        "run_scenario" => s.run_scenario(&text("r"), Value::Null, false).map(drop),
        "random" => {
            black_box(s.random(count));
            Ok(())
        }
        "delay" => {
            s.delay(count.min(2_000));
            Ok(())
        }
        "ws_connect" => s.ws_connect(&format!("/{}", text("w"))).map(drop),
        _ => Ok(()),
    };
}

/// Host-owned request headers and a relative URL: each is refused with a typed `invalid`.
fn forbidden_headers(s: &mut Session) -> Result {
    for name in [
        "Host",
        "Connection",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Keep-Alive",
        "Proxy-Connection",
        "HTTP2-Settings",
    ] {
        let r = s.send(Request::get("/health").header(name, "x"));
        let refused = matches!(r, Err(Error::Request(RequestError::Invalid(_))));
        s.check("forbidden header refused", refused);
    }
    for url in [
        "//elsewhere.test/",
        "health",
        "gopher://x/",
        "file:///etc/passwd",
        "unix:/run/x",
    ] {
        let r = s.send(Request::get(url));
        s.check(&format!("url {url}: {}", outcome(&r)), true);
    }
    Ok(())
}

/// What a request came to, as a short word.
fn outcome(r: &Result<chaperon_sdk::Response>) -> String {
    match r {
        Ok(res) => format!("status {}", res.status),
        Err(e) => outcome_of_error(e),
    }
}

/// CR/LF and NUL in header names and values, and 10,000 headers: refused, never sent.
fn header_injection(s: &mut Session) -> Result {
    let bad = [
        ("x-a", "v\r\nx-injected: 1"),
        ("x-a\r\nx-injected", "v"),
        ("x-a", "v\nx-injected: 1"),
        ("x-a", "v\0"),
        ("x a", "v"),
        ("", "v"),
    ];
    for (name, value) in bad {
        let r = s.send(Request::get("/headers").header(name, value));
        s.check(&format!("injection: {}", outcome(&r)), true);
    }
    let mut many = Request::get("/headers");
    for i in 0..10_000 {
        many = many.header(format!("x-{i}"), "v");
    }
    let r = s.send(many);
    s.check(&format!("10000 headers: {}", outcome(&r)), true);
    Ok(())
}

/// The WASI a guest gets: no files, no environment, no arguments, no sockets.
fn wasi_probe(s: &mut Session) -> Result {
    s.check(
        "fs: /etc/passwd unreadable",
        std::fs::read("/etc/passwd").is_err(),
    );
    s.check("fs: / unlistable", std::fs::read_dir("/").is_err());
    s.check("fs: nothing writable", std::fs::write("x", "y").is_err());
    s.check("env: empty", std::env::vars().count() == 0);
    s.check("args: none", std::env::args().count() == 0);
    let addr: String = s.config_or("evil.addr", "127.0.0.1:9".into());
    let tcp = std::net::TcpStream::connect(addr.as_str());
    s.check("sockets: tcp refused", tcp.is_err());
    let udp = std::net::UdpSocket::bind("127.0.0.1:0");
    s.check("sockets: udp refused", udp.is_err());
    let lookup = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 80));
    s.check("sockets: name lookup refused", lookup.is_err());
    Ok(())
}
