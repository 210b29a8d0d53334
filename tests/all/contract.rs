//! Behaviours the design contract fixes (docs/design.md): connection ownership, cookies per
//! origin, how errors and ends are counted, config rules, exit codes, logging, and the demo.

use crate::loadtests::plan_file;
use crate::merge::tempdir;
use crate::support::{bin, ended, guest, host, metric, plan, run};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// A server that accepts connections and reads them but never answers, holding every socket.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hang", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(socket.read(&mut buf).await, Ok(n) if n > 0) {}
            }));
        }
    });
    (url, task)
}

async fn evil_at(
    base: &str,
    mode: &str,
    sessions: u32,
    extra: &[&str],
) -> chaperon_host::report::Report {
    let mode = format!("evil.mode={mode}");
    let mut config = vec![mode.as_str()];
    config.extend_from_slice(extra);
    let mut plan = plan("evil", sessions, Some(base.to_owned()), &config);
    plan.limits.session_timeout = Duration::from_secs(20);
    // These guests also reach other loopback ports and the name `localhost`.
    for entry in ["127.0.0.1", "localhost"] {
        plan.allow(entry).expect("valid allow entry");
    }
    run(&plan).await.report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_time_out_waiting_for_headers_do_not_use_up_the_connection_cap() {
    let server = crate::support::target(Default::default());
    let (hang, silent) = silent_server().await;
    let hang_url = format!("evil.hang_url={hang}");
    // 12 timed-out requests: more than the 8 connections a session may hold at once.
    let r = evil_at(
        &server.base_url(),
        "hang_then_get",
        3,
        &[&hang_url, "evil.n=12"],
    )
    .await;
    silent.abort();
    assert_eq!(ended(&r, "completed"), 3, "{}", r.summary_table());
    assert_eq!(r.checks["hanging request times out"].passed, 36);
    assert_eq!(
        r.checks["request after timeouts ok"].passed,
        3,
        "{}",
        r.summary_table()
    );
    assert_eq!(server.stats().requests_to("GET", "/"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookies_are_kept_per_host_and_sent_back_only_to_it() {
    let server = crate::support::target(Default::default());
    let other = format!("evil.other_url=http://localhost:{}", server.addr().port());
    let r = evil_at(&server.base_url(), "cookie_origins", 2, &[&other]).await;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    assert_eq!(r.checks["cookie not sent to another origin"].passed, 2);
    assert_eq!(r.checks["cookie sent to its origin"].passed, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_owned_headers_are_refused_on_websocket_handshakes() {
    let server = crate::support::target(Default::default());
    let r = evil_at(&server.base_url(), "ws_forbidden_headers", 1, &[]).await;
    let refused = &r.checks["host-owned ws header refused"];
    assert_eq!(
        (refused.passed, refused.failed),
        (5, 0),
        "{}",
        r.summary_table()
    );
    assert_eq!(
        server.stats().ws_opened(),
        0,
        "no refused handshake reached the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_status_adds_to_the_default_success_range() {
    let server = crate::support::target(Default::default());
    let r = evil_at(&server.base_url(), "expect_adds", 2, &[]).await;
    assert_eq!(r.checks["204 still expected with 404 added"].passed, 2);
    assert_eq!(r.checks["500 not expected"].passed, 2);
    assert_eq!(metric(&r, "http GET /status/204").errors, 0);
    assert_eq!(metric(&r, "http GET /status/500").errors, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scenario_applies_the_named_scenarios_own_config_like_a_sequence() {
    let plan = plan_file(
        "nested-own-config",
        r#"
        [[scenario]]
        name = "child"
        component = "EVIL"
        sessions = 0
        config = { own = "yes" }

        [[scenario]]
        name = "parent"
        component = "EVIL"
        sessions = 2
        config = { evil = { mode = "nest_own" } }

        [[scenario]]
        name = "steps"
        sequence = ["child"]
        sessions = 2
        config = { evil = { mode = "own_config" } }
        "#,
    );
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "completed"), 4, "{}", r.summary_table());
    let own = &r.checks["own config seen"];
    assert_eq!(
        (own.passed, own.failed),
        (4, 0),
        "nested and sequence alike"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teardown_runs_after_a_session_timeout() {
    let mut plan = plan(
        "evil",
        2,
        None,
        &["evil.mode=sleep_forever", "evil.mark_teardown=true"],
    );
    plan.limits.session_timeout = Duration::from_secs(1);
    let r = run(&plan).await.report;
    assert_eq!(ended(&r, "timeout"), 2, "{}", r.summary_table());
    assert_eq!(metric(&r, "teardown_ran").count, 2, "{}", r.summary_table());
}

/// Runs the host binary on the evil guest with `args` after `run EVIL --quiet`.
fn run_evil(args: &[&str]) -> (i32, String, String) {
    let evil = guest("evil");
    let mut all = vec!["run", evil.to_str().unwrap(), "--quiet"];
    all.extend_from_slice(args);
    host(&all)
}

#[test]
fn abort_is_a_deliberate_end_listed_under_its_own_heading_and_exits_0() {
    let (code, stdout, stderr) = run_evil(&["--sessions", "2", "--config", "evil.mode=abort"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("aborted sessions"), "{stdout}");
    assert!(
        stdout.contains("evil abort"),
        "the reason is shown: {stdout}"
    );
    assert!(!stdout.contains("failed sessions"), "{stdout}");
}

#[test]
fn a_failing_session_exits_2_and_is_listed_as_failed() {
    let (code, stdout, _) = run_evil(&["--sessions", "2", "--config", "evil.mode=error"]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("failed sessions"), "{stdout}");
}

#[test]
fn the_planned_end_of_a_load_test_exits_0() {
    let toml = "[limits]\nmax_duration = \"1s\"\ngraceful_stop = \"200ms\"\n\n[[scenario]]\nname = \"sleeper\"\ncomponent = \"EVIL\"\nsessions = 2\nconfig = { evil = { mode = \"sleep_forever\" } }\n";
    let (code, stdout, stderr) = crate::support::host_on_file("planned-end", toml, &["--quiet"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_config_value_is_one_sentence_naming_the_path_and_the_fix() {
    let mut plan = plan("evil", 1, None, &["evil.mode=hang_then_get"]);
    plan.limits.session_timeout = Duration::from_secs(10);
    let r = run(&plan).await.report;
    let reason = &r.sessions.failures[0].reason;
    assert!(
        reason.contains(
            "no config value at `evil.hang_url` (set it in the load-test file's config or with --config evil.hang_url=VALUE)"
        ),
        "{reason}"
    );
    assert!(!reason.contains("missing value at no config"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_child_is_counted_once_on_its_task_metric() {
    let mut plan = plan("evil", 3, None, &["evil.mode=child_fails"]);
    plan.limits.session_timeout = Duration::from_secs(10);
    let r = run(&plan).await.report;
    let panic = metric(&r, "async panic");
    assert_eq!(
        panic.errors, 3,
        "one error per failed child: {:?}",
        panic.errors_by_kind
    );
    assert_eq!(panic.errors_by_kind.values().sum::<u64>(), 3);
}

#[test]
fn log_level_debug_shows_debug_lines_and_a_flood_says_how_many_lines_it_dropped() {
    let flood = ["--config", "evil.mode=log_flood", "--log-level"];
    let (code, _, stderr) = run_evil(&[&flood[..], &["debug"]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("[debug] evil-0 evil | evil debug line"),
        "debug lines shown"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("log line(s) dropped (over")),
        "the rate limit reports what it dropped"
    );
    let (code, _, quiet) = run_evil(&[&flood[..], &["warn"]].concat());
    assert_eq!(code, 0, "{quiet}");
    assert!(
        !quiet.contains("evil log line"),
        "info lines hidden at warn"
    );
    assert!(!quiet.contains("evil debug line"));
}

#[test]
fn the_demo_runs_from_any_directory() {
    let elsewhere = tempdir().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let out = std::process::Command::new(bin())
        .args(["demo", "--sessions", "5", "--iterations", "2"])
        .current_dir(&elsewhere)
        .output()
        .expect("host binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ws_await_recv"), "{stdout}");
}
