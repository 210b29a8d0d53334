use super::summary::format_micros;
use super::*;
use crate::metrics::Recorder;
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

fn provenance(scenario: &str, sha: &str) -> Provenance {
    Provenance::new(
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        vec![ComponentInfo {
            scenario: scenario.to_owned(),
            path: format!("{scenario}.wasm"),
            sha256: sha.to_owned(),
        }],
        &json!({"target": "http://localhost:8080", "token": "abc"}),
    )
}

fn sessions(started: u64, completed: u64, traps: u64) -> SessionSummary {
    let mut summary = SessionSummary {
        started,
        ..SessionSummary::default()
    };
    for _ in 0..completed {
        summary.record_end(COMPLETED, None);
    }
    for i in 0..traps {
        summary.record_end(
            "trap",
            Some(SessionFailure {
                session: format!("s-{i}"),
                scenario: "pingpong".to_owned(),
                reason: "wasm trap: unreachable".to_owned(),
            }),
        );
    }
    summary
}

/// Records `values` (µs) under "http.get", with an error every 10th value.
fn record_all(recorder: &Recorder, values: impl Iterator<Item = u64>) {
    for micros in values {
        recorder.record("http.get", micros);
        if micros % 10 == 0 {
            recorder.record_error("http.get", "status 503");
        }
        recorder.check("status is 200", micros % 10 != 0);
    }
}

fn build(recorder: &Recorder, duration: f64) -> Result<Report, ReportError> {
    Report::build(
        &recorder.snapshot(),
        duration,
        sessions(10, 9, 1),
        provenance("pingpong", "aa"),
    )
}

#[test]
fn build_computes_stats_and_round_trips_through_json() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = Recorder::new(2);
    record_all(&recorder, 1..=1000);
    let report = build(&recorder, 10.0)?;
    let stats = &report.metrics["http.get"];
    assert_eq!(stats.count, 1000);
    assert_eq!(stats.errors, 100);
    assert_eq!(stats.errors_by_kind["status 503"], 100);
    assert_eq!(
        (stats.min, stats.p50, stats.p90, stats.max),
        (1, 500, 900, 1000)
    );
    assert_eq!((stats.p99, stats.p999), (990, 999));
    assert!((stats.mean - 500.5).abs() < 0.01);
    assert!((stats.rate - 100.0).abs() < 1e-9);
    assert_eq!(report.checks["status is 200"].failed, 100);
    assert_eq!(report.provenance.config["token"], json!("[redacted]"));
    assert_eq!(report.provenance.started_at, "2023-11-14T22:13:20Z");
    assert_eq!(report.total_errors(), 100);

    let parsed: Report = serde_json::from_str(&report.to_json()?)?;
    assert_eq!(parsed, report);
    let histogram = decode_histogram(&parsed.metrics["http.get"].histogram)?;
    assert_eq!(histogram.len(), 1000);
    Ok(())
}

#[test]
fn zero_duration_gives_zero_rate() -> Result<(), ReportError> {
    let recorder = Recorder::new(1);
    recorder.record("k", 5);
    let report = build(&recorder, 0.0)?;
    assert_eq!(report.metrics["k"].rate, 0.0);
    let report = build(&recorder, f64::NAN)?;
    assert_eq!(report.duration_secs, 0.0);
    Ok(())
}

#[test]
fn merge_of_halves_equals_whole() -> Result<(), ReportError> {
    let whole = Recorder::new(2);
    let first = Recorder::new(2);
    let second = Recorder::new(2);
    // Spread over several HDR bucket sizes (µs to seconds).
    let values = |range: std::ops::Range<u64>| range.map(|i| i * i * 7 + 13);
    record_all(&whole, values(0..2000));
    record_all(&first, values(0..1000));
    record_all(&second, values(1000..2000));
    let whole = build(&whole, 30.0)?;
    let a = build(&first, 30.0)?;
    let mut b = build(&second, 29.5)?;
    b.provenance = provenance("http-basic", "bb");

    let merged = Report::merge(&[a, b])?;
    let (m, w) = (&merged.metrics["http.get"], &whole.metrics["http.get"]);
    assert_eq!(
        (m.count, m.errors, m.min, m.max),
        (w.count, w.errors, w.min, w.max)
    );
    assert_eq!(m.errors_by_kind, w.errors_by_kind);
    assert_eq!((m.p50, m.p90, m.p99, m.p999), (w.p50, w.p90, w.p99, w.p999));
    assert!((m.mean - w.mean).abs() < 1e-6 * w.mean);
    assert_eq!(merged.duration_secs, 30.0);
    assert_eq!(m.rate, w.rate);
    assert_eq!(merged.checks, whole.checks);
    assert_eq!(merged.sessions.started, 20);
    assert_eq!(merged.sessions.ended["completed"], 18);
    assert_eq!(merged.sessions.failures.len(), 2);
    assert_eq!(merged.provenance.merged_from, 2);
    assert_eq!(merged.provenance.components.len(), 2);
    assert_eq!(merged.provenance.config["token"], json!("[redacted]"));

    // Merging is associative with itself: a merged report merges again losslessly.
    let again = Report::merge(&[merged.clone(), whole.clone()])?;
    assert_eq!(again.metrics["http.get"].count, 2 * w.count);
    assert_eq!(again.metrics["http.get"].p99, w.p99);
    assert_eq!(again.provenance.merged_from, 3);
    assert_eq!(again.provenance.components.len(), 2);
    Ok(())
}

#[test]
fn merge_rejects_empty_input_and_corrupt_histograms() -> Result<(), ReportError> {
    assert!(matches!(
        Report::merge(&[]),
        Err(ReportError::NothingToMerge)
    ));
    let recorder = Recorder::new(1);
    recorder.record("k", 5);
    let mut report = build(&recorder, 1.0)?;
    if let Some(stats) = report.metrics.get_mut("k") {
        stats.histogram = "bm90IGEgaGlzdG9ncmFt".to_owned();
    }
    let err = Report::merge(&[report]).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("metric \"k\"")));
    Ok(())
}

#[test]
fn write_and_read_json_round_trip_and_check_version() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("chaperon-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("report.json");
    let recorder = Recorder::new(1);
    record_all(&recorder, 1..=100);
    let report = build(&recorder, 2.0)?;
    report.write_json(&path)?;
    assert_eq!(Report::read_json(&path)?, report);

    let mut future = serde_json::to_value(&report)?;
    future["schema_version"] = json!(2);
    std::fs::write(&path, future.to_string())?;
    let err = Report::read_json(&path).err();
    assert!(matches!(
        err,
        Some(ReportError::SchemaVersion {
            found: 2,
            expected: 1,
            ..
        })
    ));
    std::fs::write(&path, "{")?;
    assert!(matches!(
        Report::read_json(&path),
        Err(ReportError::Json { .. })
    ));
    let missing = dir.join("missing.json");
    let err = Report::read_json(&missing).err().map(|e| e.to_string());
    assert!(err.is_some_and(|e| e.contains("missing.json")));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[test]
fn redact_replaces_secrets_recursively() {
    let config = json!({
        "target": "https://example.com",
        "Password": "hunter2",
        "headers": {"Authorization": "Bearer x", "accept": "json"},
        "users": [{"name": "a", "api_key": "k1"}, {"name": "b", "ApiKey": "k2"}],
        "oauth": {"client": "c"},
        "refresh_token": 42,
        "vus": 10
    });
    let redacted = redact(&config);
    assert_eq!(
        redacted,
        json!({
            "target": "https://example.com",
            "Password": "[redacted]",
            "headers": {"Authorization": "[redacted]", "accept": "json"},
            "users": [{"name": "a", "api_key": "[redacted]"},
                      {"name": "b", "ApiKey": "[redacted]"}],
            "oauth": "[redacted]",
            "refresh_token": "[redacted]",
            "vus": 10
        })
    );
}

#[test]
fn formats_latencies_human_friendly() {
    assert_eq!(format_micros(850.0), "850µs");
    assert_eq!(format_micros(999.4), "999µs");
    assert_eq!(format_micros(999.6), "1.00ms");
    assert_eq!(format_micros(12_340.0), "12.34ms");
    assert_eq!(format_micros(999_996.0), "1.00s");
    assert_eq!(format_micros(1_234_000.0), "1.23s");
}

#[test]
fn summary_table_has_rows_sessions_checks_and_failures() -> Result<(), ReportError> {
    let recorder = Recorder::new(1);
    for micros in [850, 12_340, 1_234_000] {
        recorder.record("http.get", micros);
    }
    recorder.record_error("http.get", "timeout");
    recorder.record_error("ws.connect", "refused");
    recorder.check("body ok", true);
    let mut summary = sessions(100, 92, 7);
    summary.record_end("timeout", None);
    let report = Report::build(
        &recorder.snapshot(),
        2.0,
        summary,
        provenance("pingpong", "aa"),
    )?;
    let table = report.summary_table();
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "metric", "count", "errors", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max",
            "rate"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..4], ["http.get", "3", "1", "850µs"]);
    assert_eq!(row[5], "12.34ms");
    assert!(row[10].starts_with("1.23") && row[10].ends_with('s'));
    assert_eq!(row[11], "1.5/s");
    let errors_only: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(errors_only[..4], ["ws.connect", "0", "1", "-"]);
    assert_eq!(errors_only[11], "0.0/s");
    // Columns line up: every table line has the same length in chars.
    let len = lines[0].chars().count();
    assert!(lines[1..3].iter().all(|l| l.chars().count() == len));
    assert!(table.contains("sessions: 100 started, 92 completed, 1 timeout, 7 trap"));
    assert!(table.contains("body ok"));
    assert!(table.contains("failed sessions (showing 5 of 8):"));
    assert!(table.contains("  s-4 [pingpong]: wasm trap: unreachable"));
    assert!(!table.contains("s-5 "));
    assert!(!table.contains("dropped"));
    Ok(())
}

#[test]
fn summary_mentions_unfinished_sessions_and_dropped_keys() -> Result<(), ReportError> {
    let set = MetricSet {
        dropped_keys: 3,
        ..MetricSet::default()
    };
    let report = Report::build(&set, 1.0, sessions(5, 2, 0), provenance("p", "aa"))?;
    let table = report.summary_table();
    assert!(table.starts_with("no metrics recorded\n"));
    assert!(table.contains("sessions: 5 started, 2 completed, 3 unfinished"));
    assert!(table.contains("dropped: 3 "));
    assert!(!table.contains("checks:"));
    Ok(())
}

#[test]
fn summary_groups_session_ends_by_tenant_and_totals_errors_by_kind() -> Result<(), ReportError> {
    let recorder = Recorder::new(1);
    recorder.record_error("acme: http.get", "timeout");
    recorder.record_error("acme: http.get", "host-capacity");
    recorder.record_error("zeta: http.get", "timeout");
    let mut summary = sessions(4, 3, 0);
    for (tenant, kind) in [
        ("acme", COMPLETED),
        ("acme", COMPLETED),
        ("zeta", COMPLETED),
    ] {
        summary.record_tenant_end(tenant, kind);
    }
    summary.record_end("cpu-budget", None);
    summary.record_tenant_end("zeta", "cpu-budget");
    summary.record_tenant_end("", COMPLETED);
    let report = Report::build(&recorder.snapshot(), 1.0, summary, provenance("p", "aa"))?;
    let table = report.summary_table();
    assert!(table.contains("  tenant acme: 2 completed\n"), "{table}");
    assert!(
        table.contains("  tenant zeta: 1 completed, 1 cpu-budget\n"),
        "{table}"
    );
    assert!(
        table.contains("errors: 1 host-capacity, 2 timeout\n"),
        "{table}"
    );
    assert!(table.contains("ulimit -n"), "{table}");
    assert_eq!(report.sessions.by_tenant.len(), 2);
    let mut twice = report.sessions.clone();
    twice.merge(&report.sessions);
    assert_eq!(twice.by_tenant["zeta"]["cpu-budget"], 2);
    Ok(())
}
