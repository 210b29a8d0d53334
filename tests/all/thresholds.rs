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

#[test]
fn csv_json_and_junit_outputs_round_trip_through_parsers_and_compare_finds_regressions() {
    let server = target(Default::default());
    let dir = crate::merge::tempdir().join("outputs");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    let outs = [
        format!("json={}", file("r.json")),
        format!("csv={}", file("r.csv")),
        format!("junit={}", file("r.xml")),
    ];
    let (code, out, err) = run_http_basic(
        &server.base_url(),
        &[
            "--out",
            &outs[0],
            "--out",
            &outs[1],
            "--out",
            &outs[2],
            "--threshold",
            "http GET /: count > 1000000",
            "--threshold",
            "checks: rate == 1",
        ],
    );
    assert_eq!(code, 99, "{out}{err}");
    let report = chaperon_host::report::Report::read_json(&dir.join("r.json")).unwrap();

    let mut csv = csv::Reader::from_path(dir.join("r.csv")).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(str::to_owned).collect();
    assert_eq!(header[..3], ["metric", "total_count", "errors"]);
    assert!(
        header.contains(&"percentile_99.999".to_owned()),
        "{header:?}"
    );
    let p99 = header.iter().position(|h| h == "percentile_99.0").unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), report.metrics.len());
    for row in &rows {
        let stats = &report.metrics[&row[0]];
        assert_eq!(row[1].parse::<u64>().unwrap(), stats.count, "{row:?}");
        assert_eq!(row[p99].parse::<u64>().unwrap(), stats.p99, "{row:?}");
    }

    let xml = std::fs::read_to_string(dir.join("r.xml")).unwrap();
    let (mut cases, mut failures) = (Vec::new(), 0);
    let mut reader = quick_xml::Reader::from_str(&xml);
    loop {
        match reader.read_event().unwrap() {
            quick_xml::events::Event::Eof => break,
            quick_xml::events::Event::Start(e) | quick_xml::events::Event::Empty(e) => {
                match e.name().as_ref() {
                    b"testcase" => {
                        let name = e.try_get_attribute("name").unwrap().unwrap();
                        cases.push(name.unescape_value().unwrap().into_owned());
                    }
                    b"failure" => failures += 1,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    assert_eq!(cases.len(), 2 + report.checks.len() + 1, "{cases:?}");
    assert!(
        cases.contains(&"http GET /: count > 1000000".to_owned()),
        "{cases:?}"
    );
    assert_eq!(failures, 1, "only the count threshold failed: {xml}");

    let json = file("r.json");
    let (code, out, _) = host(&["compare", &json, &json]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 regression(s)"), "{out}");
    let mut slower = report.clone();
    for stats in slower.metrics.values_mut() {
        stats.p99 = stats.p99 * 3 + 1_000;
    }
    slower.write_json(&dir.join("slower.json")).unwrap();
    let (code, out, _) = host(&["compare", &json, &file("slower.json")]);
    assert_eq!(code, 99, "{out}");
    assert!(out.contains("✗ regression"), "{out}");
}
