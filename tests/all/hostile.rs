//! Hostile guests end their own session with a clear reason, never the run.

use crate::support::{ended, plan, run};

async fn end_reason(mode: &str, extra: &[&str]) -> chaperon_host::report::Report {
    let mode = format!("evil.mode={mode}");
    let mut config = vec![mode.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", 2, None, &config);
    plan.limits.cpu_budget_ms = 200;
    plan.limits.memory_mb = 16;
    plan.limits.session_timeout = std::time::Duration::from_secs(2);
    run(&plan).await.report
}

fn reason(r: &chaperon_host::report::Report) -> String {
    crate::support::first_reason(r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_a_spinning_guest_is_ended_by_its_cpu_budget() {
    let r = end_reason("spin", &[]).await;
    assert_eq!(ended(&r, "cpu-budget"), 2, "{}", r.summary_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a7_a_panic_is_a_trap_with_the_guest_message() {
    let r = end_reason("panic", &[]).await;
    assert_eq!(ended(&r, "trap"), 2, "{}", r.summary_table());
    assert!(reason(&r).contains("evil panic"), "{}", reason(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a8_an_error_is_a_guest_error_and_abort_is_aborted() {
    let r = end_reason("error", &[]).await;
    assert_eq!(ended(&r, "guest-error"), 2);
    assert!(reason(&r).contains("evil error"), "{}", reason(&r));
    let r = end_reason("abort", &[]).await;
    assert_eq!(ended(&r, "aborted"), 2);
    assert!(reason(&r).contains("evil abort"), "{}", reason(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_allocating_past_the_memory_cap_ends_with_memory_limit() {
    let r = end_reason("alloc", &[]).await;
    assert_eq!(ended(&r, "memory-limit"), 2, "{}", r.summary_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a6_unbounded_recursion_is_a_stack_overflow_trap() {
    let r = end_reason("recurse", &[]).await;
    assert_eq!(ended(&r, "trap"), 2, "{}", r.summary_table());
    assert!(reason(&r).contains("stack-overflow"), "{}", reason(&r));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a24_a_sleeping_guest_meets_the_session_deadline() {
    let r = end_reason("sleep_forever", &[]).await;
    assert_eq!(ended(&r, "timeout"), 2, "{}", r.summary_table());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a3_delay_time_is_not_charged_to_the_cpu_budget() {
    let r = end_reason("delay", &["evil.delay_ms=600"]).await;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
}

#[test]
fn a22_a_log_flood_is_rate_limited_and_prefixed() {
    let (code, _, stderr) = crate::support::host(&[
        "run",
        crate::support::guest("evil").to_str().unwrap(),
        "--config",
        "evil.mode=log_flood",
        "--quiet",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("evil log line"))
        .collect();
    assert!(
        (100..=300).contains(&lines.len()),
        "{} of 100000 lines printed",
        lines.len()
    );
    assert!(
        lines[0].starts_with("[info] evil-0 evil | evil log line 0"),
        "{}",
        lines[0]
    );
}
