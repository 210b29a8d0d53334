//! The run report: a versioned JSON document that keeps full histograms (so reports of a
//! distributed run merge losslessly), plus the human summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::metrics::{CheckCount, MAX_METRIC_KEYS, MetricData, MetricSet};

/// Version of the JSON layout; bumped on incompatible changes so old hosts refuse new reports.
pub const SCHEMA_VERSION: u32 = 1;

/// Most failure examples a report keeps: enough to diagnose, bounded for huge runs.
pub const MAX_FAILURE_EXAMPLES: usize = 20;

/// Failure examples shown by [`Report::summary_table`]; the JSON has the rest.
const SUMMARY_FAILURE_EXAMPLES: usize = 5;

/// End-reason kind of a session that finished normally.
pub const COMPLETED: &str = "completed";

/// Replacement for redacted configuration values.
const REDACTED: &str = "[redacted]";

/// Key fragments that mark a configuration value as a credential.
const SECRET_KEY_PARTS: [&str; 7] = [
    "password",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "auth",
];

/// Everything a run produced, in the form written to disk.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Report {
    pub schema_version: u32,
    pub provenance: Provenance,
    /// Run wall time in seconds; rate = count / duration_secs.
    pub duration_secs: f64,
    pub sessions: SessionSummary,
    pub metrics: BTreeMap<String, MetricStats>,
    pub checks: BTreeMap<String, CheckCount>,
    pub dropped_metric_keys: u64,
    /// Host-defined totals: `bytes sent`, `bytes received`.
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}

/// What produced a report, so results can be traced to exact scenario builds and settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Provenance {
    pub host_version: String,
    /// RFC 3339, seconds precision, UTC.
    pub started_at: String,
    pub components: Vec<ComponentInfo>,
    /// Run configuration with credentials removed by [`redact`].
    pub config: serde_json::Value,
    /// 1 for a plain run, the number of merged run reports otherwise.
    pub merged_from: usize,
}

impl Provenance {
    /// Provenance of a single run started at `started_at`; `config` is redacted here so secrets
    /// never reach a report file.
    pub fn new(
        started_at: SystemTime,
        components: Vec<ComponentInfo>,
        config: &serde_json::Value,
    ) -> Self {
        Self {
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            components,
            config: redact(config),
            merged_from: 1,
        }
    }
}

/// One scenario component used by the run, identified by content hash.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ComponentInfo {
    pub scenario: String,
    pub path: String,
    pub sha256: String,
}

/// How sessions (virtual users) started and ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct SessionSummary {
    pub started: u64,
    /// End reason kind (e.g. "completed", "trap", "cpu-budget", "timeout") -> count.
    pub ended: BTreeMap<String, u64>,
    /// Up to [`MAX_FAILURE_EXAMPLES`] sessions that did not complete.
    pub failures: Vec<SessionFailure>,
}

impl SessionSummary {
    /// Counts one ended session, keeping `failure` as an example while there is room.
    pub fn record_end(&mut self, kind: &str, failure: Option<SessionFailure>) {
        let count = self.ended.entry(kind.to_owned()).or_default();
        *count = count.saturating_add(1);
        if let Some(failure) = failure
            && self.failures.len() < MAX_FAILURE_EXAMPLES
        {
            self.failures.push(failure);
        }
    }

    /// Adds `other`'s counts and as many of its examples as still fit.
    pub fn merge(&mut self, other: &SessionSummary) {
        self.started = self.started.saturating_add(other.started);
        for (kind, n) in &other.ended {
            let count = self.ended.entry(kind.clone()).or_default();
            *count = count.saturating_add(*n);
        }
        let room = MAX_FAILURE_EXAMPLES.saturating_sub(self.failures.len());
        self.failures
            .extend(other.failures.iter().take(room).cloned());
    }

    /// Sessions that ended for any reason other than [`COMPLETED`].
    pub fn not_completed(&self) -> u64 {
        self.ended
            .iter()
            .filter(|(kind, _)| kind.as_str() != COMPLETED)
            .fold(0, |total, (_, n)| total.saturating_add(*n))
    }
}

/// Example of a session that did not complete.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SessionFailure {
    pub session: String,
    pub scenario: String,
    pub reason: String,
}

/// Statistics of one metric key; `histogram` keeps the full distribution for lossless merges.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricStats {
    pub count: u64,
    pub errors: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    pub min: u64,
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p95: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    /// count / duration_secs (0 when the duration is 0).
    pub rate: f64,
    /// Base64 (standard alphabet) of the HDR V2 + DEFLATE serialization.
    pub histogram: String,
}

impl MetricStats {
    /// Statistics of `data` over a run of `duration_secs`.
    fn from_data(data: &MetricData, duration_secs: f64) -> Result<Self, String> {
        let histogram = &data.histogram;
        let count = histogram.len();
        Ok(Self {
            count,
            errors: data.error_count(),
            errors_by_kind: data.errors.clone(),
            min: if count == 0 { 0 } else { histogram.min() },
            mean: histogram.mean(),
            p50: histogram.value_at_quantile(0.5),
            p90: histogram.value_at_quantile(0.9),
            p95: histogram.value_at_quantile(0.95),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: if count == 0 { 0 } else { histogram.max() },
            rate: rate(count, duration_secs),
            histogram: encode_histogram(histogram)?,
        })
    }

    /// The stored histogram and error kinds, decoded for merging.
    fn to_data(&self) -> Result<MetricData, String> {
        let mut data = MetricData::new();
        data.merge(&MetricData {
            histogram: decode_histogram(&self.histogram)?,
            errors: self.errors_by_kind.clone(),
        });
        Ok(data)
    }
}

/// `count / duration_secs`, or 0 when no meaningful duration exists.
fn rate(count: u64, duration_secs: f64) -> f64 {
    if duration_secs.is_finite() && duration_secs > 0.0 {
        count as f64 / duration_secs
    } else {
        0.0
    }
}

/// Base64 of the V2 + DEFLATE serialization, the format other HDR tools read.
fn encode_histogram(histogram: &Histogram<u64>) -> Result<String, String> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .map_err(|e| format!("cannot encode histogram: {e}"))?;
    Ok(BASE64.encode(bytes))
}

/// Inverse of [`encode_histogram`].
fn decode_histogram(encoded: &str) -> Result<Histogram<u64>, String> {
    let bytes = BASE64
        .decode(encoded)
        .map_err(|e| format!("histogram is not valid base64: {e}"))?;
    Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("histogram is not a valid HDR V2 serialization: {e}"))
}

/// Why a report could not be built, written, read or merged.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "cannot access report file {}: {source}; check that the path exists and is readable/writable",
        path.display()
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "report file {} is not a valid chaperon report: {source}; pass a JSON report written by chaperon-host",
        path.display()
    )]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "report file {} has schema_version {found}, but this chaperon-host reads version {expected}; use the chaperon-host version that wrote it",
        path.display()
    )]
    SchemaVersion {
        path: PathBuf,
        found: u64,
        expected: u32,
    },
    #[error("cannot serialize the report to JSON: {0}; this is a bug, please report it")]
    Serialize(#[source] serde_json::Error),
    #[error("{0}; the report may be corrupted or written by an incompatible tool")]
    Histogram(String),
    #[error("no reports to merge; pass at least one report file")]
    NothingToMerge,
}

impl Report {
    /// Report of a single run from its recorded metrics.
    pub fn build(
        set: &MetricSet,
        duration_secs: f64,
        mut sessions: SessionSummary,
        provenance: Provenance,
    ) -> Result<Report, ReportError> {
        // NaN/inf would serialize as JSON null and make the report unreadable.
        let duration_secs = if duration_secs.is_finite() && duration_secs > 0.0 {
            duration_secs
        } else {
            0.0
        };
        sessions.failures.truncate(MAX_FAILURE_EXAMPLES);
        let metrics = set
            .metrics
            .iter()
            .map(|(key, data)| {
                MetricStats::from_data(data, duration_secs)
                    .map(|stats| (key.clone(), stats))
                    .map_err(|e| ReportError::Histogram(format!("metric {key:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Report {
            schema_version: SCHEMA_VERSION,
            provenance,
            duration_secs,
            sessions,
            metrics,
            checks: set.checks.clone(),
            dropped_metric_keys: set.dropped_keys,
            counters: set.counters.clone(),
        })
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self).map_err(ReportError::Serialize)
    }

    /// Writes the pretty JSON (with a trailing newline) to `path`.
    pub fn write_json(&self, path: &Path) -> Result<(), ReportError> {
        let mut json = self.to_json()?;
        json.push('\n');
        std::fs::write(path, json).map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a report, refusing other schema versions with a clear message rather than a
    /// confusing field error.
    pub fn read_json(path: &Path) -> Result<Report, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_owned(),
            source,
        })?;
        let json_error = |source| ReportError::Json {
            path: path.to_owned(),
            source,
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(json_error)?;
        if let Some(found) = value.get("schema_version").and_then(|v| v.as_u64())
            && found != u64::from(SCHEMA_VERSION)
        {
            return Err(ReportError::SchemaVersion {
                path: path.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
        serde_json::from_value(value).map_err(json_error)
    }

    /// Lossless merge of reports of one distributed run: histograms are decoded and added,
    /// error kinds/checks/sessions summed, the duration is the longest input (the reports cover
    /// the same wall time), and stats are recomputed from the merged histograms.
    pub fn merge(reports: &[Report]) -> Result<Report, ReportError> {
        if reports.is_empty() {
            return Err(ReportError::NothingToMerge);
        }
        let mut set = MetricSet::default();
        let mut sessions = SessionSummary::default();
        let mut duration_secs: f64 = 0.0;
        for report in reports {
            set.merge(&report.metric_set()?);
            sessions.merge(&report.sessions);
            duration_secs = duration_secs.max(report.duration_secs);
        }
        let provenance = merge_provenance(reports);
        Report::build(&set, duration_secs, sessions, provenance)
    }

    /// The report's metrics and checks decoded back into a [`MetricSet`].
    fn metric_set(&self) -> Result<MetricSet, ReportError> {
        let mut set = MetricSet {
            checks: self.checks.clone(),
            dropped_keys: self.dropped_metric_keys,
            counters: self.counters.clone(),
            ..MetricSet::default()
        };
        for (key, stats) in &self.metrics {
            let data = stats
                .to_data()
                .map_err(|e| ReportError::Histogram(format!("metric {key:?}: {e}")))?;
            set.metrics.insert(key.clone(), data);
        }
        Ok(set)
    }

    /// Errors over all metrics.
    pub fn total_errors(&self) -> u64 {
        self.metrics
            .values()
            .fold(0, |total, stats| total.saturating_add(stats.errors))
    }

    /// Human summary: metric table, sessions line, checks, failure examples, dropped keys.
    pub fn summary_table(&self) -> String {
        let mut out = self.metrics_table();
        out.push('\n');
        out.push_str(&self.sessions_line());
        out.push('\n');
        if !self.counters.is_empty() {
            let data: Vec<String> = self
                .counters
                .iter()
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
            let _ = writeln!(out, "data: {}", data.join(", "));
        }
        if !self.checks.is_empty() {
            out.push_str("\nchecks:\n");
            out.push_str(&self.checks_table());
        }
        if !self.sessions.failures.is_empty() {
            out.push('\n');
            out.push_str(&self.failures_section());
        }
        if self.dropped_metric_keys > 0 {
            let _ = writeln!(
                out,
                "\ndropped: {} samples/errors/checks beyond the {MAX_METRIC_KEYS}-key limit; \
                 use fewer distinct metric or check names",
                self.dropped_metric_keys
            );
        }
        out
    }

    /// One row per metric, or a note that nothing was recorded.
    fn metrics_table(&self) -> String {
        if self.metrics.is_empty() {
            return "no metrics recorded\n".to_owned();
        }
        let headers = [
            "metric", "count", "errors", "min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max",
            "rate",
        ];
        let rows: Vec<Vec<String>> = self
            .metrics
            .iter()
            .map(|(name, stats)| metric_row(name, stats))
            .collect();
        render_table(&headers, &rows)
    }

    /// "sessions: N started, N completed, N <reason>..."
    fn sessions_line(&self) -> String {
        let sessions = &self.sessions;
        let completed = sessions.ended.get(COMPLETED).copied().unwrap_or(0);
        let mut line = format!(
            "sessions: {} started, {completed} {COMPLETED}",
            sessions.started
        );
        for (kind, n) in sessions.ended.iter().filter(|(k, _)| *k != COMPLETED) {
            let _ = write!(line, ", {n} {kind}");
        }
        let ended = sessions
            .ended
            .values()
            .fold(0u64, |t, n| t.saturating_add(*n));
        if sessions.started > ended {
            let _ = write!(line, ", {} unfinished", sessions.started - ended);
        }
        line
    }

    /// Name, passed, failed per check.
    fn checks_table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|(name, c)| vec![name.clone(), c.passed.to_string(), c.failed.to_string()])
            .collect();
        render_table(&["check", "passed", "failed"], &rows)
    }

    /// The first few failure examples.
    fn failures_section(&self) -> String {
        let failures = &self.sessions.failures;
        let total = self.sessions.not_completed().max(failures.len() as u64);
        let shown = failures.len().min(SUMMARY_FAILURE_EXAMPLES);
        let mut out = format!("failed sessions (showing {shown} of {total}):\n");
        for failure in &failures[..shown] {
            let _ = writeln!(
                out,
                "  {} [{}]: {}",
                failure.session, failure.scenario, failure.reason
            );
        }
        out
    }
}

/// Summary cells of one metric; latencies are "-" when only errors were recorded.
fn metric_row(name: &str, stats: &MetricStats) -> Vec<String> {
    let latency = |micros: f64| {
        if stats.count == 0 {
            "-".to_owned()
        } else {
            format_micros(micros)
        }
    };
    vec![
        name.to_owned(),
        stats.count.to_string(),
        stats.errors.to_string(),
        latency(stats.min as f64),
        latency(stats.mean),
        latency(stats.p50 as f64),
        latency(stats.p90 as f64),
        latency(stats.p95 as f64),
        latency(stats.p99 as f64),
        latency(stats.p999 as f64),
        latency(stats.max as f64),
        format!("{:.1}/s", stats.rate),
    ]
}

/// "850µs" below 1 ms, "12.34ms" below 1 s, else "1.23s"; unit chosen after rounding so
/// 999.996 ms prints as "1.00s", not "1000.00ms".
fn format_micros(micros: f64) -> String {
    if micros.round() < 1_000.0 {
        return format!("{micros:.0}µs");
    }
    let millis = micros / 1_000.0;
    if (millis * 100.0).round() < 100_000.0 {
        return format!("{millis:.2}ms");
    }
    format!("{:.2}s", micros / 1_000_000.0)
}

/// Aligned text table: first column left-aligned, the rest right-aligned, widths from content.
fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header_cells: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_cells).chain(rows) {
        out.push_str(&render_row(row, &widths));
        out.push('\n');
    }
    out
}

/// One table line with trailing spaces trimmed.
fn render_row(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
        if i == 0 {
            let _ = write!(line, "{cell:<width$}");
        } else {
            let _ = write!(line, "  {cell:>width$}");
        }
    }
    line.trim_end().to_owned()
}

/// Provenance of a merged report: components deduplicated by (sha256, scenario), the earliest
/// start, and the common config (or every input's config when they differ).
fn merge_provenance(reports: &[Report]) -> Provenance {
    let mut components: Vec<ComponentInfo> = Vec::new();
    let mut versions: Vec<&str> = Vec::new();
    let mut configs: Vec<&serde_json::Value> = Vec::new();
    for provenance in reports.iter().map(|r| &r.provenance) {
        for component in &provenance.components {
            if !components
                .iter()
                .any(|c| c.sha256 == component.sha256 && c.scenario == component.scenario)
            {
                components.push(component.clone());
            }
        }
        if !versions.contains(&provenance.host_version.as_str()) {
            versions.push(&provenance.host_version);
        }
        if !configs.contains(&&provenance.config) {
            configs.push(&provenance.config);
        }
    }
    let config = match configs.as_slice() {
        [single] => (*single).clone(),
        many => serde_json::Value::Array(many.iter().map(|c| (*c).clone()).collect()),
    };
    Provenance {
        host_version: versions.join(", "),
        // Same-format RFC 3339 UTC strings sort chronologically.
        started_at: reports
            .iter()
            .map(|r| r.provenance.started_at.clone())
            .min()
            .unwrap_or_default(),
        components,
        config,
        merged_from: reports.iter().map(|r| r.provenance.merged_from).sum(),
    }
}

/// Copy of `config` with every object value whose key contains (case-insensitive) "password",
/// "secret", "token", "api_key", "apikey", "authorization" or "auth" replaced by `"[redacted]"`,
/// recursively, so reports can be shared without leaking credentials.
pub fn redact(config: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match config {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if is_secret_key(key) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redact(value)
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        other => other.clone(),
    }
}

/// Whether a config key names a credential.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| key.contains(part))
}

#[cfg(test)]
mod tests {
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
    fn build_computes_stats_and_round_trips_through_json() -> Result<(), Box<dyn std::error::Error>>
    {
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
    fn write_and_read_json_round_trip_and_check_version() -> Result<(), Box<dyn std::error::Error>>
    {
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
                "metric", "count", "errors", "min", "mean", "p50", "p90", "p95", "p99", "p99.9",
                "max", "rate"
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
}
