//! The http-basic example against the embedded target: keep-alive, metric-name override,
//! JSON bodies, checks.

use crate::support::{ended, metric, plan, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_reuses_one_connection_per_session() {
    let server = crate::support::target(Default::default());
    let plan = plan(
        "http_basic",
        10,
        Some(server.base_url()),
        &["http_basic.items=3"],
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 10, "{}", r.summary_table());
    assert_eq!(metric(&r, "http GET /").count, 10);
    assert_eq!(metric(&r, "http GET /items/:id").count, 30);
    assert_eq!(metric(&r, "http POST /items").count, 10);
    assert_eq!(r.total_errors(), 0, "{}", r.summary_table());
    assert_eq!(
        metric(&r, "http phase ttfb").count,
        60,
        "six requests per session"
    );
    assert_eq!(
        metric(&r, "http phase connect").count,
        10,
        "one connect per session"
    );
    assert!(r.counters["bytes sent"] > 60 * 40, "{:?}", r.counters);
    assert!(r.counters["bytes received"] > 60 * 60, "{:?}", r.counters);
    let stats = server.stats();
    assert_eq!(stats.requests_to("GET", "/items/2"), 10);
    assert_eq!(
        stats.connections(),
        10,
        "one keep-alive connection per virtual user"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_keeping_hands_back_only_the_parts_asked_for_and_counts_the_rest() {
    let server = crate::support::target(Default::default());
    let r = checks_all_pass(&server, "keeping", 3, 4).await;
    // Every request is recorded and reaches the server, whatever the scenario kept of it.
    assert_eq!(metric(&r, "http GET /").count, 9);
    assert_eq!(server.stats().requests_to("GET", "/"), 9);
    assert_eq!(
        metric(&r, "http redirect hop").count,
        6,
        "two hops per session"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_url_never_carries_an_earlier_requests_query() {
    let server = crate::support::target(Default::default());
    checks_all_pass(&server, "query_then_plain", 2, 2).await;
    server.shutdown().await;
}

/// Runs the evil guest in `mode` as `sessions` sessions against `server`; each completes and
/// passes every one of its `checks` named checks.
async fn checks_all_pass(
    server: &chaperon_target::TargetServer,
    mode: &str,
    sessions: u32,
    checks: usize,
) -> chaperon_host::report::Report {
    let plan = plan(
        "evil",
        sessions,
        Some(server.base_url()),
        &[&format!("evil.mode={mode}")],
    );
    let r = run(&plan).await.report;
    assert_eq!(
        ended(&r, "completed"),
        u64::from(sessions),
        "{}",
        r.summary_table()
    );
    for (name, count) in &r.checks {
        assert_eq!(
            (count.passed, count.failed),
            (u64::from(sessions), 0),
            "check `{name}`"
        );
    }
    assert_eq!(r.checks.len(), checks, "{:?}", r.checks.keys());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_surface_behaves_as_documented() {
    let server = crate::support::target(Default::default());
    let r = checks_all_pass(&server, "http_features", 2, 15).await;
    let status = metric(&r, "http GET /status/404");
    assert_eq!(status.count, 4, "both 404s are latency samples");
    assert_eq!(
        status.errors_by_kind.get("status 404"),
        Some(&2),
        "only the unexpected one is an error"
    );
    assert_eq!(
        metric(&r, "http GET /redirect/3").count,
        2,
        "one sample per followed request"
    );
    assert_eq!(server.stats().requests_to("GET", "/redirect/0"), 2);
    // Every hop the host followed is a request in the counts, as the server saw it (less the
    // unfollowed GET /redirect/1, a request of its own).
    let served: u64 = ["/redirect/3", "/redirect/2", "/redirect/1"]
        .iter()
        .map(|p| server.stats().requests_to("GET", p))
        .sum();
    let unfollowed = metric(&r, "http GET /redirect/1").count;
    assert_eq!(unfollowed, 2);
    assert_eq!(metric(&r, "http redirect hop").count, served - unfollowed);
    assert_eq!(
        metric(&r, "http GET /").errors_by_kind.get("invalid"),
        Some(&2)
    );
    server.shutdown().await;
}
