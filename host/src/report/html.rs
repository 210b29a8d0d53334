//! The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched
//! when opened): provenance, thresholds and checks, sessions, a table per metric, latency
//! percentiles over time, requests and errors per second, active sessions, the latency
//! distribution of the busiest request metric, and per-scenario iterations. The markup is
//! well-formed XML, so tests read it with an XML parser; every chart carries `data-points`
//! (its points per series) and every metric row `data-p99` (µs) for them.

use super::summary::{format_micros, metric_row, observed_text};
use super::{Report, ReportError};
use crate::metrics::timeseries::{Bucket, Point, is_request};
use quick_xml::escape::escape;
use std::fmt::Write as _;
use std::path::Path;

/// Request metrics drawn over time (the busiest first).
const CHARTED_METRICS: usize = 8;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const COLORS: [&str; 4] = ["#2b6cb0", "#dd6b20", "#c53030", "#2f855a"];

/// One line of a chart.
struct Line<'a> {
    name: &'a str,
    values: Vec<f64>,
}

impl Report {
    /// The HTML text.
    pub fn to_html(&self) -> Result<String, ReportError> {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\
             <meta name=\"viewport\" content=\"width=device-width\"/><title>chaperon report</title>",
        );
        out.push_str(STYLE);
        out.push_str("</head><body>\n<h1>chaperon load test</h1>\n");
        self.provenance_html(&mut out);
        self.verdicts_html(&mut out);
        self.metrics_html(&mut out);
        self.charts_html(&mut out);
        self.distribution_html(&mut out)?;
        self.scenarios_html(&mut out);
        out.push_str("</body></html>\n");
        Ok(out)
    }

    /// Writes [`Report::to_html`] to `path`.
    pub fn write_html(&self, path: &Path) -> Result<(), ReportError> {
        super::write_file(path, &self.to_html()?)
    }

    fn provenance_html(&self, out: &mut String) {
        let p = &self.provenance;
        let _ = write!(
            out,
            "<section id=\"provenance\"><p>started {} · {:.1} s · chaperon-host {}</p><ul>",
            escape(p.started_at.as_str()),
            self.duration_secs,
            escape(p.host_version.as_str())
        );
        for c in &p.components {
            let _ = write!(
                out,
                "<li><b>{}</b> {} <code>{}</code></li>",
                escape(c.scenario.as_str()),
                escape(c.path.as_str()),
                escape(c.sha256.as_str())
            );
        }
        out.push_str("</ul>");
        let s = &self.sessions;
        let ends: Vec<String> = s.ended.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = write!(
            out,
            "<p id=\"sessions\">sessions: {} started, {}</p>",
            s.started,
            escape(ends.join(", ").as_str())
        );
        if let Some(why) = &self.aborted_by {
            let _ = write!(
                out,
                "<p class=\"fail\">run aborted early: {}</p>",
                escape(why.as_str())
            );
        }
        out.push_str("</section>\n");
    }

    fn verdicts_html(&self, out: &mut String) {
        if !self.thresholds.is_empty() {
            out.push_str("<section id=\"thresholds\"><h2>Thresholds</h2><ul>");
            for v in &self.thresholds {
                let observed = observed_text(v);
                let (class, mark) = if v.passed {
                    ("pass", "✓")
                } else {
                    ("fail", "✗")
                };
                let _ = write!(
                    out,
                    "<li class=\"{class}\">{mark} {}: {} (observed {})</li>",
                    escape(v.metric.as_str()),
                    escape(v.expression.as_str()),
                    escape(observed.as_str())
                );
            }
            out.push_str("</ul></section>\n");
        }
        if !self.checks.is_empty() {
            out.push_str("<section id=\"checks\"><h2>Checks</h2><ul>");
            for (name, c) in &self.checks {
                let total = c.passed + c.failed;
                let rate = if total == 0 {
                    0.0
                } else {
                    100.0 * c.passed as f64 / total as f64
                };
                let (class, mark) = if c.failed == 0 {
                    ("pass", "✓")
                } else {
                    ("fail", "✗")
                };
                let _ = write!(
                    out,
                    "<li class=\"{class}\">{mark} {} {rate:.2}% — ✓ {} ✗ {}</li>",
                    escape(name.as_str()),
                    c.passed,
                    c.failed
                );
            }
            out.push_str("</ul></section>\n");
        }
    }

    fn metrics_html(&self, out: &mut String) {
        out.push_str(
            "<section id=\"metrics\"><h2>Metrics</h2><table><tr><th>metric</th><th>count</th>\
             <th>errors</th><th>min</th><th>mean</th><th>p50</th><th>p90</th><th>p95</th>\
             <th>p99</th><th>p99.9</th><th>max</th><th>rate</th></tr>",
        );
        for (key, m) in &self.metrics {
            let _ = write!(
                out,
                "<tr data-metric=\"{}\" data-p99=\"{}\">",
                escape(key.as_str()),
                m.p99
            );
            for cell in metric_row(key, m) {
                let _ = write!(out, "<td>{}</td>", escape(cell.as_str()));
            }
            out.push_str("</tr>");
        }
        out.push_str("</table></section>\n");
    }

    fn charts_html(&self, out: &mut String) {
        let ts = &self.timeseries;
        if ts.buckets.is_empty() {
            return;
        }
        let per = ts.bucket_secs.max(1) as f64;
        let _ = write!(
            out,
            "<section id=\"over-time\"><h2>Over time</h2><p>one point per {} s</p>",
            ts.bucket_secs
        );
        let series = |f: fn(&Bucket) -> u64| ts.buckets.iter().map(|b| f(b) as f64 / per).collect();
        out.push_str(&chart(
            "requests and errors per second",
            &[
                Line {
                    name: "requests/s",
                    values: series(|b| b.requests),
                },
                Line {
                    name: "errors/s",
                    values: series(|b| b.errors),
                },
            ],
            |v| format!("{v:.0}"),
        ));
        out.push_str(&chart(
            "active sessions",
            &[Line {
                name: "active",
                values: ts.buckets.iter().map(|b| b.active as f64).collect(),
            }],
            |v| format!("{v:.0}"),
        ));
        let mut busiest: Vec<(&String, &Vec<Point>)> =
            ts.metrics.iter().filter(|(k, _)| is_request(k)).collect();
        busiest.sort_by_key(|(_, p)| std::cmp::Reverse(p.iter().map(|p| p.count).sum::<u64>()));
        for (key, points) in busiest.into_iter().take(CHARTED_METRICS) {
            let pick = |f: fn(&Point) -> u64| points.iter().map(|p| f(p) as f64).collect();
            out.push_str(&chart(
                &format!("{key}: latency percentiles"),
                &[
                    Line {
                        name: "p50",
                        values: pick(|p| p.p50),
                    },
                    Line {
                        name: "p95",
                        values: pick(|p| p.p95),
                    },
                    Line {
                        name: "p99",
                        values: pick(|p| p.p99),
                    },
                ],
                format_micros,
            ));
        }
        out.push_str("</section>\n");
    }

    /// Bars of the busiest request metric's latency distribution (log-spaced buckets).
    fn distribution_html(&self, out: &mut String) -> Result<(), ReportError> {
        let Some((key, stats)) = self
            .metrics
            .iter()
            .filter(|(k, m)| is_request(k) && m.count > 0)
            .max_by_key(|(_, m)| m.count)
        else {
            return Ok(());
        };
        let data = stats
            .to_data()
            .map_err(|e| ReportError::Histogram(format!("metric {key:?}: {e}")))?;
        let mut bars: Vec<(u64, u64)> = Vec::new();
        for v in data.histogram.iter_log(stats.min.max(1), 2.0) {
            bars.push((v.value_iterated_to(), v.count_since_last_iteration()));
        }
        let max = bars.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
        let width = WIDTH / bars.len().max(1) as f64;
        let _ = write!(
            out,
            "<section id=\"distribution\"><h2>Latency distribution: {}</h2>\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{}\" \
             data-points=\"{}\">",
            escape(key.as_str()),
            HEIGHT + 20.0,
            bars.len()
        );
        for (i, (upto, n)) in bars.iter().enumerate() {
            let h = HEIGHT * (*n as f64) / max;
            let _ = write!(
                out,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\">\
                 <title>≤ {}: {n}</title></rect>",
                i as f64 * width,
                HEIGHT - h,
                (width - 1.0).max(1.0),
                COLORS[0],
                escape(format_micros(*upto as f64).as_str())
            );
        }
        out.push_str("</svg></section>\n");
        Ok(())
    }

    /// Per scenario: its iteration metrics and how its sessions ended (by tenant when named).
    fn scenarios_html(&self, out: &mut String) {
        let iterations: Vec<(&String, &super::MetricStats)> = self
            .metrics
            .iter()
            .filter(|(k, _)| k.starts_with("iteration ") || k.contains(": iteration "))
            .collect();
        if iterations.is_empty() && self.sessions.by_tenant.is_empty() {
            return;
        }
        out.push_str("<section id=\"scenarios\"><h2>Per scenario</h2><ul>");
        for (key, m) in iterations {
            let _ = write!(
                out,
                "<li>{}: {} iterations, p50 {}, p99 {}</li>",
                escape(key.as_str()),
                m.count,
                format_micros(m.p50 as f64),
                format_micros(m.p99 as f64)
            );
        }
        for (tenant, ends) in &self.sessions.by_tenant {
            let list: Vec<String> = ends.iter().map(|(k, n)| format!("{n} {k}")).collect();
            let _ = write!(
                out,
                "<li>tenant {}: {}</li>",
                escape(tenant.as_str()),
                escape(list.join(", ").as_str())
            );
        }
        out.push_str("</ul></section>\n");
    }
}

/// An SVG line chart of `lines` (all the same length), y from 0 to the largest value.
fn chart(title: &str, lines: &[Line<'_>], label: impl Fn(f64) -> String) -> String {
    let points = lines.first().map_or(0, |l| l.values.len());
    let top = lines
        .iter()
        .flat_map(|l| l.values.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0);
    let x = |i: usize| {
        if points <= 1 {
            WIDTH / 2.0
        } else {
            i as f64 * WIDTH / (points - 1) as f64
        }
    };
    let mut svg = format!(
        "<figure><figcaption>{}</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{}\" height=\"{}\" viewBox=\"-60 -10 {} {}\" data-points=\"{points}\">\
         <text x=\"-55\" y=\"5\">{}</text><text x=\"-55\" y=\"{HEIGHT}\">0</text>\
         <line x1=\"0\" y1=\"{HEIGHT}\" x2=\"{WIDTH}\" y2=\"{HEIGHT}\" stroke=\"#999\"/>",
        escape(title),
        WIDTH + 140.0,
        HEIGHT + 30.0,
        WIDTH + 140.0,
        HEIGHT + 30.0,
        escape(label(top).as_str())
    );
    for (n, line) in lines.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let coords: Vec<String> = line
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), HEIGHT - HEIGHT * v / top))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" \
             data-series=\"{}\" data-points=\"{}\" points=\"{}\"/>\
             <text x=\"{}\" y=\"{}\" fill=\"{color}\">{}</text>",
            escape(line.name),
            line.values.len(),
            coords.join(" "),
            WIDTH + 8.0,
            15.0 + 15.0 * n as f64,
            escape(line.name)
        );
    }
    svg.push_str("</svg></figure>");
    svg
}

const STYLE: &str = "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;font-size:90%}td,th{padding:2px 8px;text-align:right}\
td:first-child,th:first-child{text-align:left}tr:nth-child(even){background:#f4f6f8}\
.pass{color:#2f855a}.fail{color:#c53030}svg text{font-size:11px}\
figure{margin:1em 0}</style>";
