//! Control flow and WebSocket features of the SDK, against the host (Chaperon's bugs fixed).

use crate::support::{ended, metric, plan, run};

async fn evil(
    mode: &str,
    sessions: u32,
    base: Option<String>,
    extra: &[&str],
) -> chaperon_host::report::Report {
    let mode = format!("evil.mode={mode}");
    let mut config = vec![mode.as_str()];
    config.extend_from_slice(extra);
    run(&plan("evil", sessions, base, &config)).await.report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_count_after_the_first_attempt() {
    // Chaperon's `retries: 1` never retries; here 2 failures + 2 retries succeed on attempt 3.
    let r = evil("retry", 2, None, &["evil.fail_times=2", "evil.retries=2"]).await;
    assert_eq!(metric(&r, "attempt").count, 6, "{}", r.summary_table());
    assert_eq!(r.checks["retry succeeded"].passed, 2);
    let r = evil("retry", 1, None, &["evil.fail_times=5", "evil.retries=1"]).await;
    assert_eq!(
        metric(&r, "attempt").max,
        2,
        "one retry after the first attempt"
    );
    assert_eq!(r.checks["retry succeeded"].failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_for_records_one_sample_per_iteration() {
    let r = evil("loop", 2, None, &["evil.ms=200", "evil.delay_ms=50"]).await;
    let ticks = metric(&r, "call tick");
    assert!(
        (6..=12).contains(&ticks.count),
        "{} iterations",
        ticks.count
    );
    assert!(ticks.min >= 50_000, "each iteration waited its delay");
    assert_eq!(ended(&r, "completed"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_websockets_json_timeouts_and_close() {
    let server = crate::support::target(Default::default());
    let r = evil("ws_features", 3, Some(server.base_url()), &[]).await;
    assert_eq!(ended(&r, "completed"), 3, "{}", r.summary_table());
    assert_eq!(metric(&r, "ws_connect /ws/echo").count, 6);
    assert_eq!(r.checks["text echoed on a"].passed, 3);
    assert_eq!(r.checks["receive timeout is typed"].passed, 3);
    assert_eq!(
        metric(&r, "ws_recv").errors_by_kind.get("timeout"),
        Some(&3)
    );
    assert_eq!(server.stats().ws_messages(), 6);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a11_the_fifth_websocket_is_refused_at_once() {
    let server = crate::support::target(Default::default());
    let r = evil("ws_cap", 2, Some(server.base_url()), &[]).await;
    assert_eq!(
        r.checks["fifth connection refused at once"].passed,
        2,
        "{}",
        r.summary_table()
    );
    assert_eq!(
        server.stats().ws_opened(),
        8,
        "only four per session reached the server"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_handshakes_carry_cookies_headers_auth_and_pongs_answer_pings() {
    let server = crate::support::target(Default::default());
    let r = evil("ws_handshake", 2, Some(server.base_url()), &[]).await;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    for (name, count) in &r.checks {
        assert_eq!((count.passed, count.failed), (2, 0), "check `{name}`");
    }
    assert_eq!(r.checks.len(), 5);
    let probe = metric(&r, "ws_connect /ws/handshake (probe)");
    assert_eq!(
        probe.count, 2,
        "the connect's metric name replaces its path"
    );
    server.shutdown().await;
}
