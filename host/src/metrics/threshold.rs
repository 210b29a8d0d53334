//! Thresholds: pass/fail rules on what a run recorded, k6 style. A rule is a subject (a metric
//! key, a `prefix*` of keys, `checks`, or a check name) and an expression `AGG OP VALUE`, e.g.
//! `p(99) < 200ms`, `error_rate < 0.01`, `count > 1000`, `checks > 0.99`, `rate > 500/s`.
//! Rules are parsed when the plan is built and evaluated on a [`MetricSet`], at the end of the
//! run and (for `abort_on_fail`) while it runs.

use super::data::{CheckCount, MetricData, MetricSet};
use std::time::Duration;

/// One parsed rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    /// What it is about, as written: a metric key, `prefix*`, `checks` or a check name.
    pub subject: String,
    /// The expression as written.
    pub expression: String,
    agg: Agg,
    op: Op,
    /// The bound, in the aggregate's unit (µs for latencies, per second for rates).
    value: f64,
    /// End the run (gracefully) as soon as the rule fails.
    pub abort_on_fail: bool,
    /// How long after the start the rule is first evaluated for `abort_on_fail`.
    pub delay_abort_eval: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Agg {
    Count,
    Errors,
    ErrorRate,
    /// Per second for a metric; the pass ratio for checks.
    Rate,
    Checks,
    Percentile(f64),
    Mean,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A rule that cannot be understood; one line naming the fix.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error(
    "threshold `{subject}: {expression}`: {reason} (e.g. `p(99) < 200ms`, `error_rate < 0.01`, \
     `count > 1000`, `checks > 0.99`, `rate > 500/s`)"
)]
pub struct ThresholdError {
    pub subject: String,
    pub expression: String,
    pub reason: String,
}

/// How a rule came out.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Verdict {
    pub metric: String,
    pub expression: String,
    /// The aggregate's value (µs for latencies), or none when the subject recorded nothing.
    pub observed: Option<f64>,
    /// Whether `observed` is a latency in µs (else a count, a rate or a ratio).
    #[serde(default)]
    pub latency: bool,
    pub passed: bool,
}

impl Threshold {
    /// Parses `expression` about `subject`.
    pub fn parse(subject: &str, expression: &str) -> Result<Threshold, ThresholdError> {
        let fail = |reason: &str| ThresholdError {
            subject: subject.to_owned(),
            expression: expression.to_owned(),
            reason: reason.to_owned(),
        };
        let text = expression.trim();
        let (at, op_text) = ["<=", ">=", "==", "!=", "<", ">"]
            .iter()
            .filter_map(|op| text.find(op).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, usize::MAX - op.len()))
            .ok_or_else(|| fail("no comparison (<, <=, >, >=, ==, !=)"))?;
        let agg = parse_agg(text[..at].trim()).ok_or_else(|| {
            fail("unknown aggregate; use count, errors, error_rate, rate, checks, p(N), avg, min, max or med")
        })?;
        let op = match op_text {
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "==" => Op::Eq,
            _ => Op::Ne,
        };
        let value = parse_value(agg, text[at + op_text.len()..].trim())
            .ok_or_else(|| fail("the value is not a number with a fitting unit"))?;
        if subject.trim().is_empty() {
            return Err(fail("the metric name is empty"));
        }
        Ok(Threshold {
            subject: subject.trim().to_owned(),
            expression: text.to_owned(),
            agg,
            op,
            value,
            abort_on_fail: false,
            delay_abort_eval: Duration::ZERO,
        })
    }

    /// `METRIC: EXPR` from the command line (the last `:` separates them, so tenant-prefixed
    /// keys such as `acme: http GET /` work).
    pub fn parse_arg(arg: &str) -> Result<Threshold, ThresholdError> {
        match arg.rsplit_once(':') {
            Some((subject, expression)) => Threshold::parse(subject, expression),
            None => Err(ThresholdError {
                subject: String::new(),
                expression: arg.to_owned(),
                reason: "write it as 'METRIC: EXPR'".into(),
            }),
        }
    }

    /// The same rule, ending the run when it fails (`abort_on_fail`), evaluated for that from
    /// `delay` after the start.
    pub fn aborting(mut self, abort_on_fail: bool, delay: Duration) -> Threshold {
        self.abort_on_fail = abort_on_fail;
        self.delay_abort_eval = delay;
        self
    }

    /// Evaluates the rule on `set`, a run of `duration_secs` so far.
    pub fn evaluate(&self, set: &MetricSet, duration_secs: f64) -> Verdict {
        let observed = self.observe(set, duration_secs);
        let passed = observed.is_some_and(|v| self.op.holds(v, self.value));
        Verdict {
            metric: self.subject.clone(),
            expression: self.expression.clone(),
            observed,
            latency: self.is_latency(),
            passed,
        }
    }

    fn observe(&self, set: &MetricSet, duration_secs: f64) -> Option<f64> {
        if let Some(checks) = self.checks_of(set) {
            let total = checks.passed.saturating_add(checks.failed);
            return match self.agg {
                Agg::Rate | Agg::Checks if total > 0 => Some(checks.passed as f64 / total as f64),
                Agg::Count => Some(total as f64),
                Agg::Errors => Some(checks.failed as f64),
                Agg::ErrorRate if total > 0 => Some(checks.failed as f64 / total as f64),
                _ => None,
            };
        }
        let data = self.metric_of(set)?;
        let count = data.histogram.len();
        let errors = data.error_count();
        let h = &data.histogram;
        let latency = |v: f64| (count > 0).then_some(v);
        match self.agg {
            Agg::Count => Some(count as f64),
            Agg::Errors => Some(errors as f64),
            Agg::ErrorRate => {
                let all = count.saturating_add(errors);
                (all > 0).then(|| errors as f64 / all as f64)
            }
            Agg::Rate => Some(if duration_secs > 0.0 {
                count as f64 / duration_secs
            } else {
                0.0
            }),
            Agg::Checks => None,
            Agg::Percentile(p) => latency(h.value_at_quantile(p / 100.0) as f64),
            Agg::Mean => latency(h.mean()),
            Agg::Min => latency(h.min() as f64),
            Agg::Max => latency(h.max() as f64),
        }
    }

    /// The checks the subject names: all of them for `checks`, else the check of that name
    /// (when no metric has it).
    fn checks_of(&self, set: &MetricSet) -> Option<CheckCount> {
        if self.subject == "checks" {
            let mut all = CheckCount::default();
            for c in set.checks.values() {
                all.passed = all.passed.saturating_add(c.passed);
                all.failed = all.failed.saturating_add(c.failed);
            }
            return Some(all);
        }
        if set.metrics.contains_key(&self.subject) {
            return None;
        }
        set.checks.get(&self.subject).cloned()
    }

    /// The metric the subject names; a `prefix*` subject merges every key with the prefix.
    fn metric_of(&self, set: &MetricSet) -> Option<MetricData> {
        match self.subject.strip_suffix('*') {
            Some(prefix) => {
                let mut matched = set.metrics.iter().filter(|(k, _)| k.starts_with(prefix));
                let (_, first) = matched.next()?;
                let mut merged = first.clone();
                for (_, data) in matched {
                    merged.merge(data);
                }
                Some(merged)
            }
            None => set.metrics.get(&self.subject).cloned(),
        }
    }

    /// Whether the value is a latency (µs), for display.
    pub fn is_latency(&self) -> bool {
        matches!(
            self.agg,
            Agg::Percentile(_) | Agg::Mean | Agg::Min | Agg::Max
        )
    }
}

impl Op {
    fn holds(self, observed: f64, bound: f64) -> bool {
        match self {
            Op::Lt => observed < bound,
            Op::Le => observed <= bound,
            Op::Gt => observed > bound,
            Op::Ge => observed >= bound,
            Op::Eq => (observed - bound).abs() < 1e-9,
            Op::Ne => (observed - bound).abs() >= 1e-9,
        }
    }
}

fn parse_agg(text: &str) -> Option<Agg> {
    let agg = match text {
        "count" => Agg::Count,
        "errors" => Agg::Errors,
        "error_rate" => Agg::ErrorRate,
        "rate" => Agg::Rate,
        "checks" => Agg::Checks,
        "avg" | "mean" => Agg::Mean,
        "min" => Agg::Min,
        "max" => Agg::Max,
        "med" => Agg::Percentile(50.0),
        _ => {
            let inner = text.strip_prefix("p(")?.strip_suffix(')')?;
            let p: f64 = inner.trim().parse().ok()?;
            if !(0.0..=100.0).contains(&p) {
                return None;
            }
            Agg::Percentile(p)
        }
    };
    Some(agg)
}

/// The bound in the aggregate's unit: latencies in µs (a bare number is ms, as in k6), rates
/// per second (`500/s` or `500`), ratios as fractions (`0.01` or `1%`).
fn parse_value(agg: Agg, text: &str) -> Option<f64> {
    let number = |t: &str| t.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match agg {
        Agg::Percentile(_) | Agg::Mean | Agg::Min | Agg::Max => {
            for (unit, micros) in [
                ("ms", 1_000.0),
                ("us", 1.0),
                ("µs", 1.0),
                ("s", 1_000_000.0),
                ("m", 60_000_000.0),
            ] {
                if let Some(n) = text.strip_suffix(unit).and_then(number) {
                    return Some(n * micros);
                }
            }
            number(text).map(|ms| ms * 1_000.0)
        }
        Agg::Rate => text
            .strip_suffix("/s")
            .and_then(number)
            .or_else(|| text.strip_suffix('%').and_then(number).map(|p| p / 100.0))
            .or_else(|| number(text)),
        Agg::ErrorRate | Agg::Checks => text
            .strip_suffix('%')
            .and_then(number)
            .map(|p| p / 100.0)
            .or_else(|| number(text)),
        Agg::Count | Agg::Errors => number(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> MetricSet {
        let mut set = MetricSet::default();
        let mut data = MetricData::new();
        for micros in 1..=100u64 {
            data.record(micros * 1_000);
        }
        data.record_error("timeout");
        set.metrics.insert("http GET /".into(), data.clone());
        set.metrics.insert("http GET /b".into(), data);
        set.checks.insert(
            "status 200".into(),
            CheckCount {
                passed: 99,
                failed: 1,
            },
        );
        set
    }

    fn verdict(subject: &str, expr: &str) -> Verdict {
        Threshold::parse(subject, expr)
            .unwrap()
            .evaluate(&set(), 10.0)
    }

    #[test]
    fn latency_rates_counts_and_checks() {
        assert!(verdict("http GET /", "p(99) < 200ms").passed);
        assert!(!verdict("http GET /", "p(99) < 50").passed);
        assert!(verdict("http GET /", "max < 0.11s").passed);
        assert!(verdict("http GET /", "count == 100").passed);
        assert!(verdict("http GET /", "rate >= 10/s").passed);
        assert!(!verdict("http GET /", "error_rate < 0.001").passed);
        assert!(verdict("http GET /", "error_rate < 1%").passed);
        assert!(verdict("http GET *", "count == 200").passed);
        assert!(verdict("checks", "rate > 0.98").passed);
        assert!(!verdict("status 200", "checks > 0.99").passed);
        let missing = verdict("http GET /nothing", "count > 0");
        assert_eq!((missing.observed, missing.passed), (None, false));
    }

    #[test]
    fn bad_rules_are_named() {
        let e = Threshold::parse("m", "p(99) 200ms").unwrap_err();
        assert!(e.to_string().contains("no comparison"), "{e}");
        let e = Threshold::parse("m", "p95 < 200ms").unwrap_err();
        assert!(e.to_string().contains("unknown aggregate"), "{e}");
        let e = Threshold::parse("m", "p(95) < fast").unwrap_err();
        assert!(e.to_string().contains("not a number"), "{e}");
        assert!(Threshold::parse_arg("no colon").is_err());
        let t = Threshold::parse_arg("acme: http GET /: p(99) < 200ms").unwrap();
        assert_eq!(t.subject, "acme: http GET /");
    }
}
