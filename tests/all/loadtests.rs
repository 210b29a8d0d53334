//! Load-test files: several scenarios, sequences, nested scenarios, setup/teardown hooks,
//! data feeders and the whole-test deadline.

use crate::merge::tempdir;
use crate::support::{ended, guest, metric, run};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;

/// Writes `toml` (with `EVIL` replaced by the evil component's path) and plans it.
pub fn plan_file(name: &str, toml: &str) -> RunPlan {
    let dir = tempdir();
    let path = dir.join(format!("{name}.toml"));
    let evil = guest("evil").display().to_string();
    std::fs::write(&path, toml.replace("EVIL", &evil)).unwrap();
    let args = RunArgs {
        target: path,
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    RunPlan::from_args(&args).expect("valid load-test file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_passes_each_steps_assigns_on_as_config() {
    let plan = plan_file(
        "sequence",
        r#"
        [[scenario]]
        name = "stepper"
        component = "EVIL"
        sessions = 0
        config = { evil = { mode = "step" } }

        [[scenario]]
        name = "three_steps"
        sequence = ["stepper", "stepper", "stepper"]
        sessions = 4
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 4, "{}", r.summary_table());
    let steps = metric(&r, "step_value");
    assert_eq!((steps.count, steps.min, steps.max), (12, 0, 2));
    assert_eq!(metric(&r, "run_scenario stepper").count, 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nested_scenario_merges_its_assigns_back() {
    let plan = plan_file(
        "nested",
        r#"
        [[scenario]]
        name = "stepper"
        component = "EVIL"
        sessions = 0
        config = { evil = { mode = "step" } }

        [[scenario]]
        name = "outer"
        component = "EVIL"
        sessions = 3
        config = { evil = { mode = "nest" } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 3, "{}", r.summary_table());
    let back = metric(&r, "nested_assign");
    assert_eq!((back.count, back.min, back.max), (3, 42, 42));
    assert_eq!(r.checks["own assigns kept"].passed, 3);
    assert_eq!(metric(&r, "run_scenario stepper").count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_data_reaches_every_session_and_teardown() {
    let plan = plan_file(
        "hooks",
        r#"
        [setup]
        scenario = "main"
        function = "make_setup"

        [teardown]
        scenario = "main"
        function = "check_teardown"

        [[scenario]]
        name = "main"
        component = "EVIL"
        sessions = 5
        config = { evil = { mode = "read_setup" } }
        "#,
    );
    let r = run(&plan).await.report;
    let seen = metric(&r, "setup_seen");
    assert_eq!((seen.count, seen.min), (5, 1), "{}", r.summary_table());
    let teardown = metric(&r, "teardown_saw_token");
    assert_eq!((teardown.count, teardown.min), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unique_feeder_hands_each_record_out_once() {
    let dir = tempdir();
    let data = dir.join("nums.json");
    std::fs::write(
        &data,
        r#"[{"n": 10}, {"n": 11}, {"n": 12}, {"n": 13}, {"n": 14}]"#,
    )
    .unwrap();
    let toml = format!(
        r#"
        [data.nums]
        file = "{}"
        mode = "unique"

        [[scenario]]
        name = "feeder"
        component = "EVIL"
        sessions = 6
        config = {{ evil = {{ mode = "feed" }} }}
        "#,
        data.display()
    );
    let plan = plan_file("feed", &toml);
    let r = run(&plan).await.report;
    let fed = metric(&r, "fed");
    assert_eq!((fed.count, fed.min, fed.max), (5, 10, 14));
    assert_eq!(ended(&r, "guest-error"), 1, "{}", r.summary_table());
    let reason = &r.sessions.failures[0].reason;
    assert!(reason.contains("no records left"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_test_deadline_interrupts_sessions_and_keeps_results() {
    let plan = plan_file(
        "deadline",
        r#"
        [limits]
        max_duration = "300ms"
        graceful_stop = "200ms"

        [[scenario]]
        name = "quick"
        component = "EVIL"
        sessions = 3
        config = { evil = { mode = "record" } }

        [[scenario]]
        name = "slow"
        component = "EVIL"
        sessions = 3
        config = { evil = { mode = "delay", delay_ms = 60000 } }
        "#,
    );
    let started = std::time::Instant::now();
    let outcome = run(&plan).await;
    let r = &outcome.report;
    assert!(
        started.elapsed().as_secs() < 10,
        "the run ended at its deadline"
    );
    assert!(
        !outcome.interrupted,
        "a planned end is not a stop from outside"
    );
    assert_eq!(outcome.cut_by_plan, 3);
    assert!(
        outcome.no_failures(),
        "sessions cut by the plan are not failures"
    );
    assert_eq!(ended(r, "interrupted"), 3, "{}", r.summary_table());
    assert_eq!(metric(r, "value").count, 3, "completed results are kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_to_missing_scenarios_are_refused() {
    let dir = tempdir();
    let path = dir.join("bad-seq.toml");
    std::fs::write(&path, "[[scenario]]\nname = 'seq'\nsequence = ['nope']\n").unwrap();
    let args = RunArgs {
        target: path,
        ..RunArgs::default()
    };
    let e = RunPlan::from_args(&args).unwrap_err().to_string();
    assert!(e.contains("names scenario `nope`"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_counted_by_kind_and_scenario_and_cut_start_delays_never_started() {
    let plan = plan_file(
        "kinds",
        r#"
        [limits]
        max_duration = "1s"
        graceful_stop = "0s"

        [[scenario]]
        name = "parent"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "children", n = 3 } }

        [[scenario]]
        name = "nester"
        component = "EVIL"
        sessions = 1
        config = { evil = { mode = "nest" } }

        [[scenario]]
        name = "stepper"
        component = "EVIL"
        sessions = 0

        [[scenario]]
        name = "late"
        component = "EVIL"
        sessions = 4
        start_delay = "30s"
        "#,
    );
    let r = run(&plan).await.report;
    let table = r.summary_table();
    let s = &r.sessions;
    assert_eq!(s.not_started, 4, "{table}");
    assert_eq!(s.started, 3, "{table}");
    assert_eq!(ended(&r, "completed"), 3, "{table}");
    assert_eq!(r.counters.get("child sessions"), Some(&6), "{table}");
    assert_eq!(r.counters.get("nested sessions"), Some(&1), "{table}");
    assert!(
        table.contains("sessions: 3 started, 3 completed; 4 not started (and 6 child sessions, 1 nested sessions)"),
        "{table}"
    );
    assert!(
        table.contains("  scenario parent: 2 completed\n"),
        "{table}"
    );
    assert_eq!(s.by_scenario.get("late"), None, "{table}");
}
