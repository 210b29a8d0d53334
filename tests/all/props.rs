//! Property test of the hostile guest: generated sequences of import calls with extreme
//! arguments (empty, 0, boundaries, `u32::MAX`, 16 MiB strings, 100,000-deep paths and JSON,
//! 100,000 headers) never end the run: it completes, every session ends with a reason, the
//! report is written and read back, and the summary renders.

use crate::merge::tempdir;
use crate::support::{plan, run, target};
use chaperon_host::report::Report;
use proptest::prelude::*;
use std::time::Duration;

const OPS: &[&str] = &[
    "get",
    "header_value",
    "header_count",
    "assign_path",
    "assign_text",
    "assign_deep",
    "config_deep",
    "config_path",
    "read_path",
    "signal_parent",
    "signal_deep",
    "spread",
    "spawn_args",
    "await",
    "check",
    "record",
    "metric_names",
    "log",
    "feed",
    "run_scenario",
    "random",
    "delay",
    "ws_connect",
];

const SIZES: &[u64] = &[
    0,
    1,
    255,
    256,
    8 * 1024,
    8 * 1024 + 1,
    65_536,
    100_000,
    (1 << 20) + 1,
    16 << 20,
    u32::MAX as u64,
    u64::MAX,
];

/// End reasons a hostile call may lead to; anything else (a load error, an interruption) means
/// the host, not the guest, gave way.
const GUEST_ENDS: &[&str] = &[
    "completed",
    "guest-error",
    "trap",
    "cpu-budget",
    "memory-limit",
    "resource-limit",
    "timeout",
];

fn call() -> impl Strategy<Value = (String, u64)> {
    (
        proptest::sample::select(OPS).prop_map(str::to_owned),
        proptest::sample::select(SIZES),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20, max_shrink_iters: 20, ..ProptestConfig::default() })]

    #[test]
    fn generated_hostile_calls_never_end_the_run(script in proptest::collection::vec(call(), 1..5)) {
        let server = target(Default::default());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let script = format!("evil.script={}", serde_json::to_string(&script).unwrap());
        let mut plan = plan("evil", 2, Some(server.base_url()), &["evil.mode=script", &script]);
        plan.limits.session_timeout = Duration::from_secs(8);
        let report = runtime.block_on(run(&plan)).report;
        check_report(&report)?;
    }
}

/// Every session ended for a guest-caused reason, and the report survives a round trip and
/// renders.
fn check_report(report: &Report) -> Result<(), TestCaseError> {
    let table = report.summary_table();
    let ended: u64 = report.sessions.ended.values().sum();
    prop_assert_eq!(ended, report.sessions.started, "{}", table);
    prop_assert_eq!(report.sessions.started, 2);
    for kind in report.sessions.ended.keys() {
        prop_assert!(GUEST_ENDS.contains(&kind.as_str()), "{}: {}", kind, table);
    }
    let file = tempdir().join("props-report.json");
    report.write_json(&file).unwrap();
    prop_assert_eq!(&Report::read_json(&file).unwrap(), report);
    prop_assert!(
        table.lines().all(|l| l.chars().count() < 4_000),
        "{}",
        table
    );
    Ok(())
}
