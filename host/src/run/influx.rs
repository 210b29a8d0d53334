//! The time series as InfluxDB line protocol, streamed each second while the run goes (see
//! net/influx.rs for the server). The sums of the points equal the report's totals.

use crate::metrics::data::MetricData;
use crate::metrics::timeseries::Bucket;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The points of one bucket: `chaperon_run` (requests, errors, active, dropped, bytes) and one
/// `chaperon_metric,metric=KEY` per metric with samples or errors in it.
pub fn lines(bucket: &Bucket, deltas: &BTreeMap<String, MetricData>) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut out = format!(
        "chaperon_run requests={}i,errors={}i,active={}i,dropped={}i,bytes_sent={}i,bytes_received={}i {ms}\n",
        bucket.requests,
        bucket.errors,
        bucket.active,
        bucket.dropped,
        bucket.bytes_sent,
        bucket.bytes_received
    );
    for (key, d) in deltas {
        let h = &d.histogram;
        let (count, errors) = (h.len(), d.error_count());
        if count == 0 && errors == 0 {
            continue;
        }
        let q = |p: f64| {
            if count == 0 {
                0
            } else {
                h.value_at_quantile(p)
            }
        };
        let _ = writeln!(
            out,
            "chaperon_metric,metric={} count={count}i,errors={errors}i,p50={}i,p95={}i,p99={}i,max={}i {ms}",
            escape_tag(key),
            q(0.5),
            q(0.95),
            q(0.99),
            if count == 0 { 0 } else { h.max() },
        );
    }
    out
}

/// A tag value in line protocol: commas, equals signs and spaces escaped, line breaks dropped.
fn escape_tag(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            ',' | '=' | ' ' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => {}
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    if out.is_empty() { "-".to_owned() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_values_are_escaped() {
        assert_eq!(escape_tag("http GET /a,b=c"), "http\\ GET\\ /a\\,b\\=c");
    }
}
