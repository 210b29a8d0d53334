//! The human summary printed at the end of a run: metric table, sessions, checks, failure and
//! abort examples, dropped keys.

use super::{ABORTED, COMPLETED, MetricStats, Report};
use crate::metrics::MAX_METRIC_KEYS;
use crate::metrics::keys::{CHILD_SESSIONS, NESTED_SESSIONS};
use std::fmt::Write as _;

/// Failure examples shown by [`Report::summary_table`]; the JSON has the rest.
const SUMMARY_FAILURE_EXAMPLES: usize = 5;

impl Report {
    /// Human summary: metric table, sessions line, checks, failure examples, dropped keys.
    pub fn summary_table(&self) -> String {
        let mut out = self.metrics_table();
        out.push('\n');
        out.push_str(&self.sessions_line());
        out.push('\n');
        for (tenant, kinds) in &self.sessions.by_tenant {
            let _ = writeln!(out, "  tenant {tenant}: {}", ends_list(kinds));
        }
        for (scenario, kinds) in &self.sessions.by_scenario {
            let _ = writeln!(out, "  scenario {scenario}: {}", ends_list(kinds));
        }
        out.push_str(&self.errors_line());
        if !self.counters.is_empty() {
            let data: Vec<String> = self
                .counters
                .iter()
                .filter(|(name, _)| ![CHILD_SESSIONS, NESTED_SESSIONS].contains(&name.as_str()))
                .map(|(name, n)| format!("{n} {name}"))
                .collect();
            let _ = writeln!(out, "data: {}", data.join(", "));
        }
        if !self.checks.is_empty() {
            out.push_str("\nchecks:\n");
            out.push_str(&self.checks_table());
        }
        if !self.thresholds.is_empty() {
            out.push_str("\nthresholds:\n");
            out.push_str(&self.thresholds_list());
        }
        if let Some(why) = &self.aborted_by {
            let _ = writeln!(out, "\nrun aborted early: {why}");
        }
        let s = &self.sessions;
        if !s.failures.is_empty() {
            out.push('\n');
            out.push_str(&examples("failed sessions", &s.failures, s.failed()));
        }
        if !s.aborted.is_empty() {
            out.push('\n');
            let n = s.ended.get(ABORTED).copied().unwrap_or(0);
            out.push_str(&examples("aborted sessions", &s.aborted, n));
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
        if sessions.not_started > 0 {
            let _ = write!(line, "; {} not started", sessions.not_started);
        }
        let kinds: Vec<String> = [CHILD_SESSIONS, NESTED_SESSIONS]
            .iter()
            .filter_map(|k| self.counters.get(*k).map(|n| format!("{n} {k}")))
            .collect();
        if !kinds.is_empty() {
            let _ = write!(line, " (and {})", kinds.join(", "));
        }
        line
    }

    /// "errors: N timeout, M refused" over all metrics, with what to do about the kinds the
    /// generator itself caused; empty when nothing failed.
    fn errors_line(&self) -> String {
        let mut kinds: std::collections::BTreeMap<&str, u64> = Default::default();
        for stats in self.metrics.values() {
            for (kind, n) in &stats.errors_by_kind {
                let count = kinds.entry(kind.as_str()).or_default();
                *count = count.saturating_add(*n);
            }
        }
        if kinds.is_empty() {
            return String::new();
        }
        let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let mut line = format!("errors: {}\n", list.join(", "));
        for (kind, hint) in ERROR_HINTS {
            if kinds.contains_key(kind) {
                let _ = writeln!(line, "  {kind}: {hint}");
            }
        }
        line
    }

    /// Per check, k6 style: `✓ name  99.5% — ✓ 1990 ✗ 10` (✗ first when any failed).
    fn checks_table(&self) -> String {
        let mut out = String::new();
        for (name, c) in &self.checks {
            let total = c.passed.saturating_add(c.failed);
            let rate = if total == 0 {
                0.0
            } else {
                100.0 * c.passed as f64 / total as f64
            };
            let mark = if c.failed == 0 { '✓' } else { '✗' };
            let _ = writeln!(
                out,
                "  {mark} {name}  {} — ✓ {} ✗ {}",
                format_percent(rate),
                c.passed,
                c.failed
            );
        }
        out
    }

    /// Per rule: `✓ http GET /: p(99) < 200ms (observed 12.3ms)`.
    fn thresholds_list(&self) -> String {
        let mut out = String::new();
        for v in &self.thresholds {
            let mark = if v.passed { '✓' } else { '✗' };
            let observed = observed_text(v);
            let _ = writeln!(
                out,
                "  {mark} {}: {} (observed {observed})",
                v.metric, v.expression
            );
        }
        out
    }
}

/// Error kinds the generator causes rather than the target, and what to change.
const ERROR_HINTS: [(&str, &str); 3] = [
    (
        "host-capacity",
        "the generator ran out of file descriptors or ports; raise `ulimit -n` or lower \
         the sessions or [limits] http_connections / ws_connections",
    ),
    (
        "denied",
        "a URL outside the run's allowlist; add its origin to [network] allow if it is yours",
    ),
    (
        "blocked-ip",
        "a name resolved to a non-global address; allow it literally in [network] allow",
    ),
];

/// "3 completed, 1 timeout" of one tenant's session ends.
fn ends_list(kinds: &std::collections::BTreeMap<String, u64>) -> String {
    let list: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    list.join(", ")
}

/// The first few examples of sessions that ended one way, with their reasons.
fn examples(title: &str, list: &[super::SessionFailure], total: u64) -> String {
    let total = total.max(list.len() as u64);
    let shown = list.len().min(SUMMARY_FAILURE_EXAMPLES);
    let mut out = format!("{title} (showing {shown} of {total}):\n");
    for e in list.iter().take(shown) {
        let _ = writeln!(out, "  {} [{}]: {}", e.session, e.scenario, e.reason);
    }
    out
}

/// Summary cells of one metric; latencies are "-" when only errors were recorded.
pub(super) fn metric_row(name: &str, stats: &MetricStats) -> Vec<String> {
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

/// A threshold's observed value: a latency with its unit, else the number (4 decimals), or
/// "no data".
pub(super) fn observed_text(v: &crate::metrics::threshold::Verdict) -> String {
    match v.observed {
        Some(x) if v.latency => format_micros(x),
        Some(x) => format!("{}", (x * 10_000.0).round() / 10_000.0),
        None => "no data".to_owned(),
    }
}

/// "99.5%", with more digits only where they matter ("99.95%"), "100%" when none failed.
fn format_percent(p: f64) -> String {
    if p >= 100.0 {
        "100%".to_owned()
    } else if p >= 99.0 {
        format!("{:.2}%", (p * 100.0).floor() / 100.0)
    } else {
        format!("{p:.1}%")
    }
}

/// "850µs" below 1 ms, "12.34ms" below 1 s, else "1.23s"; unit chosen after rounding so
/// 999.996 ms prints as "1.00s", not "1000.00ms".
pub fn format_micros(micros: f64) -> String {
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
