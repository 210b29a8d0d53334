//! Tenants sharing one host: CPU fairness and host memory caps (catalogue A3, A4 and the
//! invariants I2/I3 of ../shared/reference/style-and-reliability.md Part 2).

use crate::loadtests::plan_file;
use crate::support::{ended, first_reason, heavy, metric, run, target};
use chaperon_host::report::Report;

/// A canary tenant doing `n` GETs per session, and (when `evil`) a tenant whose sessions each
/// spawn eight children that spin until their tree's CPU budget is spent.
fn shared_host(base: &str, evil: bool) -> String {
    let spinners = if evil {
        r#"
        [tenant.spinner]

        [[scenario]]
        name = "spinner"
        tenant = "spinner"
        component = "EVIL"
        sessions = 6
        config = { evil = { mode = "spinners", n = 8 } }
        "#
    } else {
        ""
    };
    format!(
        r#"
        [limits]
        cpu_budget_ms = 500
        session_timeout = "20s"

        [tenant.canary]

        [[scenario]]
        name = "canary"
        tenant = "canary"
        component = "EVIL"
        sessions = 4
        config = {{ base_url = "{base}", evil = {{ mode = "gets", n = 150, delay_ms = 5 }} }}
        {spinners}
        "#
    )
}

fn canary(r: &Report) -> (u64, u64) {
    let m = metric(r, "canary: http GET /");
    (m.count, m.p99)
}

/// One round: the canary alone, then beside the spinning tenant; returns both p99s (µs) after
/// checking that every canary request ran and succeeded and every spinner was ended.
async fn fairness_round(base: &str) -> (u64, u64) {
    let solo = run(&plan_file("canary-solo", &shared_host(base, false)))
        .await
        .report;
    let (solo_count, solo_p99) = canary(&solo);
    assert_eq!(solo_count, 600, "{}", solo.summary_table());
    let shared = run(&plan_file("canary-shared", &shared_host(base, true)))
        .await
        .report;
    let table = shared.summary_table();
    let (count, p99) = canary(&shared);
    assert_eq!(count, 600, "every canary request ran: {table}");
    let ok = shared
        .checks
        .get("canary: canary ok")
        .map(|c| (c.passed, c.failed));
    assert_eq!(ok, Some((600, 0)), "{table}");
    // Every spinning child was ended by its tree's budget, and every session completed.
    assert_eq!(
        metric(&shared, "spinner: async spinners").errors,
        6 * 8,
        "{table}"
    );
    assert_eq!(ended(&shared, "completed"), 4 + 6, "{table}");
    (solo_p99, p99)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a3_a_spinning_tenant_cannot_slow_a_canary_tenant_past_3x_its_solo_p99() {
    let _heavy = heavy().await;
    let server = target(Default::default());
    // Without the tenant's CPU share the canary's p99 measures 100-200× its solo p99 (48
    // spinners take turns on both workers); with it, about 1×. The bound is 3× plus 2 ms
    // (a loopback GET's p99 is under a millisecond, where one scheduler hiccup on a shared
    // 2-core machine is already 3×), and a round disturbed by other tests gets two retries.
    let mut rounds = Vec::new();
    for _ in 0..3 {
        let (solo, shared) = fairness_round(&server.base_url()).await;
        eprintln!("canary p99: {solo} µs alone, {shared} µs beside a spinning tenant");
        rounds.push((solo, shared));
        if shared <= 3 * solo + 2_000 {
            return;
        }
    }
    panic!("canary p99 past 3× its solo p99 in every round (alone, shared µs): {rounds:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_assigns_past_the_host_memory_cap_end_the_session_naming_the_value() {
    let plan = plan_file(
        "host-memory",
        r#"
        [limits]
        host_memory_mb = 4

        [[scenario]]
        name = "hoarder"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "hoard", mib = 8 } }

        [[scenario]]
        name = "modest"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "hoard", mib = 2 } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "memory-limit"), 2, "{}", r.summary_table());
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    let reason = first_reason(&r);
    assert!(
        reason.contains("the assign value at `hoard.")
            && reason.contains("4 MiB host-memory cap ([limits] host_memory_mb)"),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_a_tenants_sessions_share_its_host_memory_cap() {
    let plan = plan_file(
        "tenant-memory",
        r#"
        [tenant.small.limits]
        tenant_memory_mb = 2

        [[scenario]]
        name = "small"
        tenant = "small"
        component = "EVIL"
        sessions = 4
        config = { evil = { mode = "hoard", mib = 1, hold_ms = 1500 } }

        [[scenario]]
        name = "other"
        component = "EVIL"
        sessions = 4
        config = { evil = { mode = "hoard", mib = 1, hold_ms = 1500 } }
        "#,
    );
    let r = run(&plan).await.report;
    // Two of the small tenant's ~1 MiB values fit in its 2 MiB at once, the other two do
    // not; the implicit tenant's four sessions are not affected.
    assert_eq!(ended(&r, "memory-limit"), 2, "{}", r.summary_table());
    assert_eq!(ended(&r, "completed"), 6, "{}", r.summary_table());
    assert!(
        first_reason(&r).contains("tenant `small`'s 2 MiB host-memory cap"),
        "{}",
        first_reason(&r)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_signals_are_charged_to_their_sender_and_refused_past_its_cap() {
    let plan = plan_file(
        "signal-memory",
        r#"
        [limits]
        host_memory_mb = 2

        [[scenario]]
        name = "flood"
        component = "EVIL"
        config = { evil = { mode = "signal_flood", delay_ms = 3000 } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 1, "{}", r.summary_table());
    let refused = r.checks.get("signal refused: too large").map(|c| c.passed);
    assert_eq!(refused, Some(1), "{:?}", r.checks);
    let queued = metric(&r, "signals queued");
    assert_eq!(
        queued.max, 2,
        "two ~1 MiB signals fit in 2 MiB, the third is refused"
    );
}
