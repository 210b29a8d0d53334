//! Isolation: every session has its own instance; pool slots are reused but never leak state.

use crate::support::{ended, metric, plan, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a25_four_hundred_sessions_through_fifty_slots_each_see_a_fresh_global() {
    let mut plan = plan("counter", 400, None, &["counter.delay_ms=5"]);
    plan.limits.max_concurrent = 50;
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 400, "{}", r.summary_table());
    let counter = metric(&r, "global_counter");
    assert_eq!(counter.count, 400);
    assert_eq!(
        (counter.min, counter.max),
        (1, 1),
        "a global leaked between sessions"
    );
    assert_eq!(ended(&r, "completed"), 400);
}
