//! Thresholds and checks in the summary, seen as a CI job sees them: the exit code, the ✓/✗
//! lines, and `abort_on_fail` ending a long run early.

use crate::support::{guest, host, host_on_file, target};
use std::time::{Duration, Instant};

fn run_http_basic(base: &str, extra: &[&str]) -> (i32, String, String) {
    let component = guest("http_basic");
    let mut args = vec![
        "run",
        component.to_str().unwrap(),
        "--vus",
        "2",
        "--iterations",
        "3",
        "--base-url",
        base,
        "--log-level",
        "off",
    ];
    args.extend_from_slice(extra);
    host(&args)
}

#[test]
fn passing_thresholds_exit_0_and_a_failing_one_exits_99() {
    let server = target(Default::default());
    let base = server.base_url();
    let (code, out, err) = run_http_basic(
        &base,
        &[
            "--threshold",
            "http GET /: p(99) < 5s",
            "--threshold",
            "checks: rate > 0.99",
            "--threshold",
            "http GET /items/:id: count == 18",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("thresholds:\n  ✓ http GET /: p(99) < 5s (observed "),
        "{out}"
    );
    assert!(
        out.contains("  ✓ http GET /items/:id: count == 18 (observed 18)"),
        "{out}"
    );
    assert!(out.contains("  ✓ home is ok  100% — ✓ 6 ✗ 0"), "{out}");

    let (code, out, err) = run_http_basic(
        &base,
        &[
            "--threshold",
            "http GET /: p(50) < 1us",
            "--threshold",
            "typo: count > 0",
        ],
    );
    assert_eq!(code, 99, "{out}{err}");
    assert!(
        out.contains("  ✗ http GET /: p(50) < 1us (observed "),
        "{out}"
    );
    assert!(
        out.contains("  ✗ typo: count > 0 (observed no data)"),
        "{out}"
    );

    let (code, _, err) = run_http_basic(&base, &["--threshold", "http GET /: p95 < 1s"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown aggregate"), "{err}");
}

#[test]
fn abort_on_fail_ends_a_long_run_early_with_exit_99() {
    let server = target(Default::default());
    let toml = format!(
        r#"
        [[scenario]]
        name = "web"
        component = "EVIL"
        vus = 2
        duration = "60s"
        config = {{ base_url = "{}", evil = {{ mode = "get", path = "/delay/20" }} }}

        [thresholds]
        "http GET /delay/20" = [
            "count > 0",
            {{ threshold = "p(99) < 1ms", abort_on_fail = true, delay_abort_eval = "1s" }},
        ]
        "#,
        server.base_url()
    );
    let started = Instant::now();
    let (code, out, err) = host_on_file("abort", &toml, &["--log-level", "off"]);
    let took = started.elapsed();
    assert_eq!(code, 99, "{out}{err}");
    assert!(
        took < Duration::from_secs(20),
        "aborted early, not after 60 s: {took:?}"
    );
    assert!(
        out.contains("run aborted early: threshold `http GET /delay/20: p(99) < 1ms` failed"),
        "{out}"
    );
    assert!(out.contains("  ✓ http GET /delay/20: count > 0"), "{out}");
    assert!(out.contains("sessions: "), "{out}");
}
