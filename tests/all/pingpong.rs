//! The foundation's acceptance test: pingpong 100 × 10 against a counting server that holds its
//! first pong until 100 WebSockets are open at once.

use crate::support::{ended, metric, plan, run};
use chaperon_target::TargetOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingpong_100_sessions_run_concurrently_with_exact_counts() {
    let _machine = crate::support::heavy().await;
    let server = crate::support::target(TargetOptions {
        hold_pongs_until_open: Some(100),
    });
    let plan = plan(
        "pingpong",
        100,
        Some(server.base_url()),
        &["ping_pong.iterations=10"],
    );
    let outcome = run(&plan).await;
    let r = &outcome.report;
    let stats = server.stats();
    assert_eq!(stats.pings(), 1000, "pings at the server");
    assert_eq!(stats.ws_max_open(), 100, "all sessions were open at once");
    assert_eq!(metric(r, "call ping_pong").count, 1000);
    assert_eq!(metric(r, "ws_connect /ping/pong").count, 100);
    assert_eq!(metric(r, "ws_send").count, 1000);
    assert_eq!(metric(r, "ws_await_recv").count, 1000);
    assert_eq!(r.total_errors(), 0, "{}", r.summary_table());
    assert_eq!(ended(r, "completed"), 100);
    assert!(outcome.all_completed());
    // WebSocket bytes are in the data counters: each session's handshake (~200 bytes out and
    // in) and ten masked "ping" frames (10 bytes) out, ten "pong" frames (6 bytes) in.
    let (sent, received) = (r.counters["bytes sent"], r.counters["bytes received"]);
    assert!(sent >= 100 * (150 + 10 * 10), "{:?}", r.counters);
    assert!(received >= 100 * (120 + 10 * 6), "{:?}", r.counters);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_target_is_counted_as_errors_and_the_run_still_reports() {
    // Bind and drop a listener: nothing listens on that port any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let plan = plan(
        "pingpong",
        5,
        Some(format!("http://127.0.0.1:{port}")),
        &["ping_pong.iterations=3"],
    );
    let r = run(&plan).await.report;
    let connect = metric(&r, "ws_connect /ping/pong");
    assert_eq!(connect.count, 0);
    assert_eq!(connect.errors_by_kind.get("refused"), Some(&5));
    assert_eq!(ended(&r, "guest-error"), 5, "{}", r.summary_table());
}
