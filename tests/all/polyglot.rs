//! The Python and JavaScript SDKs and examples (built by `scripts/build-polyglot` into
//! target/polyglot) against their Rust twins: the same server-side counts, the same metric names
//! and counts in the report, one host call per WebSocket action, typed guest errors instead of
//! traps, and 1000 concurrent sessions.
//!
//! These tests skip (with a printed reason) when the components are missing, unless
//! CHAPERON_REQUIRE_POLYGLOT is set (CI sets it and builds them first); then a missing component
//! is a failure.

use crate::support::{ended, guest, metric, root, run};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use chaperon_host::report::Report;
use chaperon_target::{TargetOptions, TargetStats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The polyglot builds of one example: (label, path relative to target/polyglot).
fn builds(example: &str) -> Vec<(&'static str, String)> {
    vec![
        ("python", format!("python/{example}.wasm")),
        ("js (quickjs)", format!("js/{example}.wasm")),
        (
            "js (starlingmonkey)",
            format!("js/starlingmonkey/{example}.wasm"),
        ),
    ]
}

/// The components at `paths` (relative to target/polyglot), or `None` (after printing why) when
/// one is missing and CHAPERON_REQUIRE_POLYGLOT is unset.
fn components(test: &str, paths: &[String]) -> Option<Vec<PathBuf>> {
    let dir = root().join("target/polyglot");
    let full: Vec<PathBuf> = paths.iter().map(|p| dir.join(p)).collect();
    let missing: Vec<String> = full
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(full);
    }
    if std::env::var_os("CHAPERON_REQUIRE_POLYGLOT").is_some() {
        panic!(
            "{test}: missing {} (CHAPERON_REQUIRE_POLYGLOT is set): run `bash scripts/build-polyglot` first",
            missing.join(", ")
        );
    }
    eprintln!(
        "skipping {test}: {} missing; run `bash scripts/build-polyglot` to build the Python and JavaScript components (CHAPERON_REQUIRE_POLYGLOT=1 makes this an error)",
        missing.join(", ")
    );
    None
}

/// A plan for `sessions` sessions of the component at `path` (default limits: the CPU meter does
/// not charge the time a session waits for other sessions after yielding).
fn plan_for(path: &Path, sessions: u32, base_url: String, config: &[&str]) -> RunPlan {
    let args = RunArgs {
        target: path.to_path_buf(),
        sessions: Some(sessions),
        base_url: Some(base_url),
        config: config.iter().map(|s| s.to_string()).collect(),
        no_cache: false,
        quiet: true,
        log_level: Some("off".into()),
        // sdk-probe's `refused` mode dials port 1, where nothing listens.
        allow: vec!["127.0.0.1:1".into()],
        ..RunArgs::default()
    };
    RunPlan::from_args(&args).expect("valid plan")
}

/// Metric name → (count, errors): what must be identical across languages.
fn counts(r: &Report) -> BTreeMap<String, (u64, u64)> {
    r.metrics
        .iter()
        .map(|(k, m)| (k.clone(), (m.count, m.errors)))
        .collect()
}

/// Check name → (passed, failed).
fn checks(r: &Report) -> BTreeMap<String, (u64, u64)> {
    r.checks
        .iter()
        .map(|(k, c)| (k.clone(), (c.passed, c.failed)))
        .collect()
}

/// What the target saw of a pingpong run.
fn ws_stats(s: &TargetStats) -> [(&'static str, u64); 5] {
    [
        ("ws opened", s.ws_opened()),
        ("ws messages", s.ws_messages()),
        ("pings", s.pings()),
        ("pongs", s.pongs()),
        ("http requests", s.http_requests()),
    ]
}

/// What the target saw of an http-basic run.
fn http_stats(s: &TargetStats) -> Vec<(String, u64)> {
    let mut out = vec![
        ("http requests".to_owned(), s.http_requests()),
        ("connections".to_owned(), s.connections()),
        ("ws opened".to_owned(), s.ws_opened()),
    ];
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/items/1"),
        ("GET", "/items/2"),
        ("GET", "/items/3"),
        ("GET", "/items/4"),
        ("POST", "/items"),
        ("POST", "/echo"),
    ] {
        out.push((format!("{method} {path}"), s.requests_to(method, path)));
    }
    out
}

/// Runs `path` against a fresh target; returns the report and the target's stats.
async fn run_against_target(
    path: &Path,
    sessions: u32,
    config: &[&str],
    options: TargetOptions,
) -> (Report, std::sync::Arc<TargetStats>) {
    let server = crate::support::target(options);
    let plan = plan_for(path, sessions, server.base_url(), config);
    let report = run(&plan).await.report;
    let stats = server.stats();
    server.shutdown().await;
    (report, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pingpong_in_python_and_js_matches_rust() {
    let polyglot = builds("pingpong");
    let paths: Vec<String> = polyglot.iter().map(|(_, p)| p.clone()).collect();
    let Some(paths) = components("pingpong_in_python_and_js_matches_rust", &paths) else {
        return;
    };
    let config = ["ping_pong.iterations=5"];
    let (rust, rust_stats) =
        run_against_target(&guest("pingpong"), 20, &config, TargetOptions::default()).await;
    assert_eq!(ended(&rust, "completed"), 20, "{}", rust.summary_table());
    assert_eq!(metric(&rust, "call ping_pong").count, 100);
    assert_eq!(metric(&rust, "ws_connect /ping/pong").count, 20);
    assert_eq!(metric(&rust, "ws_send").count, 100);
    assert_eq!(metric(&rust, "ws_await_recv").count, 100);
    assert_eq!(rust_stats.pings(), 100);
    for ((label, _), path) in polyglot.iter().zip(&paths) {
        let (r, stats) = run_against_target(path, 20, &config, TargetOptions::default()).await;
        assert_eq!(ended(&r, "completed"), 20, "{label}: {}", r.summary_table());
        assert_eq!(
            counts(&r),
            counts(&rust),
            "{label}: metric names and counts"
        );
        assert_eq!(checks(&r), checks(&rust), "{label}: checks");
        assert_eq!(
            ws_stats(&stats),
            ws_stats(&rust_stats),
            "{label}: what the server saw"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_basic_in_python_and_js_matches_rust() {
    let polyglot = builds("http-basic");
    let paths: Vec<String> = polyglot.iter().map(|(_, p)| p.clone()).collect();
    let Some(paths) = components("http_basic_in_python_and_js_matches_rust", &paths) else {
        return;
    };
    for items in ["http_basic.items=3", "http_basic.items=4"] {
        let config = [items];
        let (rust, rust_stats) =
            run_against_target(&guest("http_basic"), 10, &config, TargetOptions::default()).await;
        assert_eq!(ended(&rust, "completed"), 10, "{}", rust.summary_table());
        assert_eq!(metric(&rust, "http GET /").count, 10);
        assert_eq!(rust.total_errors(), 0, "{}", rust.summary_table());
        assert_eq!(rust.checks.len(), 4);
        for ((label, _), path) in polyglot.iter().zip(&paths) {
            let (r, stats) = run_against_target(path, 10, &config, TargetOptions::default()).await;
            assert_eq!(ended(&r, "completed"), 10, "{label}: {}", r.summary_table());
            assert_eq!(
                counts(&r),
                counts(&rust),
                "{label} {items}: metric names and counts"
            );
            assert_eq!(checks(&r), checks(&rust), "{label} {items}: checks");
            assert_eq!(
                http_stats(&stats),
                http_stats(&rust_stats),
                "{label} {items}: what the server saw"
            );
        }
    }
}

/// No SDK may fold the ping-pong loop into one action: every `ws_send` and `ws_await_recv` is
/// its own host call, so each is its own sample, and the server sees each ping separately.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ws_send_and_await_recv_is_its_own_host_call() {
    let polyglot = builds("pingpong");
    let paths: Vec<String> = polyglot.iter().map(|(_, p)| p.clone()).collect();
    let Some(paths) = components("every_ws_send_and_await_recv_is_its_own_host_call", &paths)
    else {
        return;
    };
    let (sessions, iterations) = (3u64, 37u64);
    let config = format!("ping_pong.iterations={iterations}");
    for ((label, _), path) in polyglot.iter().zip(&paths) {
        let (r, stats) = run_against_target(
            path,
            sessions as u32,
            &[config.as_str()],
            TargetOptions::default(),
        )
        .await;
        assert_eq!(
            ended(&r, "completed"),
            sessions,
            "{label}: {}",
            r.summary_table()
        );
        let n = sessions * iterations;
        assert_eq!(
            metric(&r, "ws_send").count,
            n,
            "{label}: one ws_send sample per send"
        );
        assert_eq!(
            metric(&r, "ws_await_recv").count,
            n,
            "{label}: one ws_await_recv sample per receive"
        );
        assert_eq!(metric(&r, "call ping_pong").count, n, "{label}");
        assert_eq!(
            metric(&r, "ws_connect /ping/pong").count,
            sessions,
            "{label}"
        );
        assert!(
            !r.metrics.contains_key("ws_recv"),
            "{label}: await_recv must not be built from recv calls"
        );
        assert_eq!(stats.pings(), n, "{label}: pings at the server");
        assert_eq!(stats.pongs(), n, "{label}: pongs from the server");
    }
}

/// Whatever a Python or JavaScript scenario throws ends the session as a guest error (or
/// aborted) with a useful reason, never as a trap; caught errors have their SDK types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exceptions_become_typed_guest_errors_not_traps() {
    let polyglot = builds("sdk-probe");
    let paths: Vec<String> = polyglot.iter().map(|(_, p)| p.clone()).collect();
    let Some(paths) = components("exceptions_become_typed_guest_errors_not_traps", &paths) else {
        return;
    };
    let cases: [(&str, &str, &[&str]); 6] = [
        // (mode, end kind, reason must contain one of)
        ("raise", "guest-error", &["KeyError", "TypeError"]),
        ("fail", "guest-error", &["told to fail"]),
        ("abort", "aborted", &["told to abort"]),
        ("abort-caught", "aborted", &["aborted even though caught"]),
        (
            "missing-config",
            "guest-error",
            &["no config value at `probe.nothing` (set it"],
        ),
        (
            "refused",
            "guest-error",
            &["request failed: connection refused"],
        ),
    ];
    for ((label, _), path) in polyglot.iter().zip(&paths) {
        for (mode, kind, reasons) in cases {
            let mode_arg = format!("probe.mode={mode}");
            let (r, _) =
                run_against_target(path, 2, &[mode_arg.as_str()], TargetOptions::default()).await;
            assert_eq!(ended(&r, kind), 2, "{label} {mode}: {}", r.summary_table());
            let reason = &crate::support::first_reason(&r);
            assert!(
                reasons.iter().any(|want| reason.contains(want)),
                "{label} {mode}: reason `{reason}` names none of {reasons:?}"
            );
        }
        let (r, _) =
            run_against_target(path, 2, &["probe.mode=caught"], TargetOptions::default()).await;
        assert_eq!(
            ended(&r, "completed"),
            2,
            "{label} caught: {}",
            r.summary_table()
        );
        assert_eq!(r.checks.len(), 4, "{label}: {:?}", r.checks);
        for (name, c) in &r.checks {
            assert_eq!((c.passed, c.failed), (2, 0), "{label}: check `{name}`");
        }
        let failed_call = metric(&r, "call probe_fails");
        assert_eq!((failed_call.count, failed_call.errors), (2, 2), "{label}");
    }
}

/// 1000 sessions of the pingpong, all open at once (the target holds every pong until 1000
/// WebSockets are open), complete without errors.
async fn thousand_concurrent_pingpong_sessions(label: &str, path: &Path) {
    let _machine = crate::support::heavy().await;
    let server = crate::support::target(TargetOptions {
        hold_pongs_until_open: Some(1000),
    });
    let mut plan = plan_for(path, 1000, server.base_url(), &["ping_pong.iterations=2"]);
    plan.limits.session_timeout = std::time::Duration::from_secs(300);
    let outcome = run(&plan).await;
    let r = &outcome.report;
    let stats = server.stats();
    assert_eq!(
        ended(r, "completed"),
        1000,
        "{label}: {}",
        r.summary_table()
    );
    assert_eq!(r.total_errors(), 0, "{label}: {}", r.summary_table());
    assert_eq!(
        stats.ws_max_open(),
        1000,
        "{label}: all sessions were open at once"
    );
    assert_eq!(stats.pings(), 2000, "{label}");
    assert_eq!(metric(r, "call ping_pong").count, 2000, "{label}");
    assert_eq!(metric(r, "ws_send").count, 2000, "{label}");
    assert_eq!(metric(r, "ws_await_recv").count, 2000, "{label}");
    assert!(outcome.all_completed());
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_python_pingpong_sessions() {
    let Some(paths) = components(
        "thousand_concurrent_python_pingpong_sessions",
        &["python/pingpong.wasm".to_owned()],
    ) else {
        return;
    };
    thousand_concurrent_pingpong_sessions("python", &paths[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_js_pingpong_sessions() {
    let Some(paths) = components(
        "thousand_concurrent_js_pingpong_sessions",
        &["js/pingpong.wasm".to_owned()],
    ) else {
        return;
    };
    thousand_concurrent_pingpong_sessions("js (quickjs)", &paths[0]).await;
}

#[test]
fn inspect_names_the_toolchain_of_each_language() {
    let cases = [
        ("python/pingpong.wasm", "Python (componentize-py)"),
        ("js/pingpong.wasm", "JavaScript (componentize-qjs, QuickJS)"),
        (
            "js/starlingmonkey/pingpong.wasm",
            "JavaScript (componentize-js, StarlingMonkey)",
        ),
    ];
    let paths: Vec<String> = cases.iter().map(|(p, _)| p.to_string()).collect();
    let Some(full) = components("inspect_names_the_toolchain_of_each_language", &paths) else {
        return;
    };
    for (path, (_, toolchain)) in full.iter().zip(cases) {
        let (code, stdout, stderr) = crate::support::host(&["inspect", path.to_str().unwrap()]);
        assert_eq!(code, 0, "{stderr}");
        assert!(
            stdout.contains(&format!("toolchain: {toolchain}")),
            "{stdout}"
        );
    }
}
