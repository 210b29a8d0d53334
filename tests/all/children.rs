//! Async children, signals and spreads (session-API issue, first part).

use crate::support::{ended, metric, plan, run};

async fn evil(mode: &str, sessions: u32, extra: &[&str]) -> chaperon_host::report::Report {
    let mode = format!("evil.mode={mode}");
    let mut config = vec![mode.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", sessions, None, &config);
    plan.limits.session_timeout = std::time::Duration::from_secs(10);
    run(&plan).await.report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn children_signal_their_parent_and_are_signalled_back() {
    let r = evil("children", 10, &["evil.n=3"]).await;
    assert_eq!(ended(&r, "completed"), 10, "{}", r.summary_table());
    assert_eq!(metric(&r, "async kids").count, 30);
    let done = metric(&r, "children_done");
    assert_eq!((done.count, done.min, done.max), (10, 3, 3));
    assert_eq!(r.total_errors(), 0, "{}", r.summary_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spread_starts_every_child_and_is_awaitable_by_its_name() {
    let r = evil("spread", 4, &["evil.n=5", "evil.ms=100"]).await;
    assert_eq!(ended(&r, "completed"), 4, "{}", r.summary_table());
    assert_eq!(metric(&r, "async spread").count, 20);
    let done = metric(&r, "spread_done");
    assert_eq!((done.min, done.max), (5, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_child_is_a_typed_error_and_the_parent_completes() {
    let r = evil("child_fails", 3, &[]).await;
    assert_eq!(ended(&r, "completed"), 3, "{}", r.summary_table());
    let panic = metric(&r, "async panic");
    assert_eq!(
        panic.errors_by_kind.get("trap"),
        Some(&3),
        "the child's own end"
    );
    assert_eq!(r.checks["child failure is reported"].passed, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn un_awaited_children_are_awaited_before_the_session_ends() {
    let r = evil("orphans", 3, &["evil.delay_ms=200"]).await;
    assert_eq!(ended(&r, "completed"), 3, "{}", r.summary_table());
    let orphan = metric(&r, "async orphan");
    assert_eq!(orphan.count, 3, "every orphan ran to its end");
    assert!(
        orphan.min >= 200_000,
        "the child's delay was awaited: {}µs",
        orphan.min
    );
}
