//! `compare old.json new.json`: per-metric deltas between two runs, and whether the new one
//! regressed past a tolerance (Goose's baseline comparison, for CI).

use super::{MetricStats, Report, summary::format_micros};
use std::fmt::Write as _;

/// Latency increases below this are noise whatever the percentage (µs).
const NOISE_FLOOR_MICROS: f64 = 100.0;

/// An error rate rising by more than this (a fraction of requests) is a regression.
const ERROR_RATE_SLACK: f64 = 0.01;

/// The comparison of two reports.
pub struct Comparison {
    /// The printed table and notes.
    pub text: String,
    /// Metrics that regressed past the tolerance.
    pub regressions: Vec<String>,
}

impl Report {
    /// Compares `self` (the new run) with `old`: p50, p95 and p99 per metric in both, their
    /// change in percent, and the error rates. A metric regressed when its p95 or p99 grew by
    /// more than `tolerance_percent` (and more than 100 µs), or its error rate by more than one
    /// percentage point.
    pub fn compare(&self, old: &Report, tolerance_percent: f64) -> Comparison {
        let mut text = format!(
            "{:<40} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8}\n",
            "metric", "p95 old", "p95 new", "Δ", "p99 old", "p99 new", "Δ", "err old", "err new"
        );
        let mut regressions = Vec::new();
        for (key, new) in &self.metrics {
            let Some(was) = old.metrics.get(key) else {
                let _ = writeln!(text, "{key:<40} (new metric)");
                continue;
            };
            let worse = |o: u64, n: u64| {
                let (o, n) = (o as f64, n as f64);
                n - o > NOISE_FLOOR_MICROS && n > o * (1.0 + tolerance_percent / 100.0)
            };
            let regressed = worse(was.p95, new.p95)
                || worse(was.p99, new.p99)
                || error_rate(new) > error_rate(was) + ERROR_RATE_SLACK;
            let _ = writeln!(
                text,
                "{key:<40} {:>10} {:>10} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8}{}",
                format_micros(was.p95 as f64),
                format_micros(new.p95 as f64),
                delta(was.p95, new.p95),
                format_micros(was.p99 as f64),
                format_micros(new.p99 as f64),
                delta(was.p99, new.p99),
                percent(error_rate(was)),
                percent(error_rate(new)),
                if regressed { "  ✗ regression" } else { "" }
            );
            if regressed {
                regressions.push(key.clone());
            }
        }
        for key in old
            .metrics
            .keys()
            .filter(|k| !self.metrics.contains_key(*k))
        {
            let _ = writeln!(text, "{key:<40} (missing in the new run)");
        }
        let _ = writeln!(
            text,
            "\n{} regression(s) past {tolerance_percent}% (p95/p99) or +1 point of errors",
            regressions.len()
        );
        Comparison { text, regressions }
    }
}

fn error_rate(m: &MetricStats) -> f64 {
    let all = m.count.saturating_add(m.errors);
    if all == 0 {
        0.0
    } else {
        m.errors as f64 / all as f64
    }
}

fn delta(old: u64, new: u64) -> String {
    if old == 0 {
        return "-".to_owned();
    }
    format!("{:+.1}%", (new as f64 - old as f64) / old as f64 * 100.0)
}

fn percent(rate: f64) -> String {
    format!("{:.2}%", rate * 100.0)
}
