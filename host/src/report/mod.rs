//! The run report: a versioned JSON document that keeps full histograms (so reports of a
//! distributed run merge losslessly). The schema and building are here; the human summary
//! ([`summary`]), merging ([`merge`]) and credential redaction ([`redact`]) are their own files.

mod compare;
mod csv_export;
mod html;
mod junit;
mod merge;
mod redact;
mod summary;

pub use redact::redact;
pub use summary::format_micros;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize};

use crate::metrics::threshold::Verdict;
use crate::metrics::{CheckCount, MetricData, MetricSet};

/// Version of the JSON layout; bumped on incompatible changes so old hosts refuse new reports.
pub const SCHEMA_VERSION: u32 = 1;

/// Most failure examples a report keeps: enough to diagnose, bounded for huge runs.
pub const MAX_FAILURE_EXAMPLES: usize = 20;

/// End-reason kind of a session that finished normally.
pub const COMPLETED: &str = "completed";

/// End-reason kind of a session that called `abort`.
pub const ABORTED: &str = "aborted";

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
    /// Each threshold rule and how it came out (in the order given).
    #[serde(default)]
    pub thresholds: Vec<Verdict>,
    /// Per-second buckets of the run (absent in merged reports).
    #[serde(default)]
    pub timeseries: crate::metrics::timeseries::TimeSeries,
    /// Why the run ended early, when a threshold with `abort_on_fail` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aborted_by: Option<String>,
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
    /// Up to [`MAX_FAILURE_EXAMPLES`] sessions that failed (not completed, not aborted).
    pub failures: Vec<SessionFailure>,
    /// Up to [`MAX_FAILURE_EXAMPLES`] sessions that ended by `abort`, with their reasons: a
    /// deliberate end, not a failure.
    #[serde(default)]
    pub aborted: Vec<SessionFailure>,
    /// Session ends per named tenant (tenant -> end kind -> count); empty when the run has
    /// only the implicit tenant.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_tenant: BTreeMap<String, BTreeMap<String, u64>>,
    /// Session ends per scenario (scenario -> end kind -> count), when the run has several.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_scenario: BTreeMap<String, BTreeMap<String, u64>>,
    /// Sessions due that never started: still in their start delay (or waiting for a slot)
    /// when the run or their shape ended. Not in `started`.
    #[serde(default)]
    pub not_started: u64,
}

impl SessionSummary {
    /// Counts one ended session, keeping `example` (a failure or an abort) while there is
    /// room.
    pub fn record_end(&mut self, kind: &str, example: Option<SessionFailure>) {
        self.count_ends(kind, 1);
        if let Some(example) = example {
            self.add_example(kind, example);
        }
    }

    /// Counts `n` sessions that ended as `kind`.
    pub fn count_ends(&mut self, kind: &str, n: u64) {
        add_count(&mut self.ended, kind, n);
    }

    /// Keeps `example` of a session that ended as `kind` (a failure or an abort) while its
    /// list has room; a completed session is no example.
    pub fn add_example(&mut self, kind: &str, example: SessionFailure) {
        let list = if kind == ABORTED {
            &mut self.aborted
        } else {
            &mut self.failures
        };
        if kind != COMPLETED && list.len() < MAX_FAILURE_EXAMPLES {
            list.push(example);
        }
    }

    /// Counts one end under a named tenant as well (the implicit tenant, "", is not listed).
    pub fn record_tenant_end(&mut self, tenant: &str, kind: &str) {
        self.count_tenant_ends(tenant, kind, 1);
    }

    /// Counts `n` ends under a named tenant (the implicit tenant, "", is not listed).
    pub fn count_tenant_ends(&mut self, tenant: &str, kind: &str, n: u64) {
        if tenant.is_empty() {
            return;
        }
        let kinds = self.by_tenant.entry(tenant.to_owned()).or_default();
        add_count(kinds, kind, n);
    }

    /// Counts `n` ends under their scenario (listed when a run has several).
    pub fn count_scenario_ends(&mut self, scenario: &str, kind: &str, n: u64) {
        let kinds = self.by_scenario.entry(scenario.to_owned()).or_default();
        add_count(kinds, kind, n);
    }

    /// Adds `other`'s counts and as many of its examples as still fit.
    pub fn merge(&mut self, other: &SessionSummary) {
        self.started = self.started.saturating_add(other.started);
        for (kind, n) in &other.ended {
            add_count(&mut self.ended, kind, *n);
        }
        for (mine, theirs) in [
            (&mut self.by_tenant, &other.by_tenant),
            (&mut self.by_scenario, &other.by_scenario),
        ] {
            for (name, kinds) in theirs {
                let into = mine.entry(name.clone()).or_default();
                for (kind, n) in kinds {
                    add_count(into, kind, *n);
                }
            }
        }
        self.not_started = self.not_started.saturating_add(other.not_started);
        for (mine, theirs) in [
            (&mut self.failures, &other.failures),
            (&mut self.aborted, &other.aborted),
        ] {
            let room = MAX_FAILURE_EXAMPLES.saturating_sub(mine.len());
            mine.extend(theirs.iter().take(room).cloned());
        }
    }

    /// Sessions that ended for any reason other than [`COMPLETED`].
    pub fn not_completed(&self) -> u64 {
        self.count_where(|kind| kind != COMPLETED)
    }

    /// Sessions that failed: neither completed nor aborted (an abort is a deliberate end).
    pub fn failed(&self) -> u64 {
        self.count_where(|kind| kind != COMPLETED && kind != ABORTED)
    }

    fn count_where(&self, keep: impl Fn(&str) -> bool) -> u64 {
        self.ended
            .iter()
            .filter(|(kind, _)| keep(kind))
            .fold(0, |total, (_, n)| total.saturating_add(*n))
    }
}

/// Adds `n` to `counts[kind]`, saturating.
fn add_count(counts: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    let count = counts.entry(kind.to_owned()).or_default();
    *count = count.saturating_add(n);
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

/// Writes `text` to `path`, naming the path in the error.
fn write_file(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|source| ReportError::Io {
        path: path.to_owned(),
        source,
    })
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
            thresholds: Vec::new(),
            timeseries: Default::default(),
            aborted_by: None,
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
        write_file(path, &json)
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

    /// The report's metrics and checks decoded back into a [`MetricSet`].
    pub(super) fn metric_set(&self) -> Result<MetricSet, ReportError> {
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
}

#[cfg(test)]
mod tests;
