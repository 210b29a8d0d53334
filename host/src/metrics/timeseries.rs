//! Per-second buckets of a run (requests, errors, latency percentiles per metric, active
//! sessions, dropped iterations, bytes) in bounded memory: each second is the difference of
//! two snapshots of the cumulative recorder, so recording costs nothing extra on the hot path;
//! past [`MAX_BUCKETS`] buckets, neighbours are merged pairwise and a bucket covers twice the
//! time, so a run of any length keeps the same number of points.

use super::data::{MetricData, MetricSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most buckets kept; then pairs merge and the bucket width doubles.
pub const MAX_BUCKETS: usize = 1800;

/// Most metric keys with a series of their own (the first seen); all keys count in the totals.
pub const MAX_SERIES_KEYS: usize = 50;

/// Counters that are not requests: their deltas are not in `requests`.
const DROPPED: &str = "dropped_iterations";

/// The time series of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimeSeries {
    /// Seconds each bucket covers (1, then 2, 4, ... as long runs are merged).
    pub bucket_secs: u64,
    pub buckets: Vec<Bucket>,
    /// Per metric key: one point per bucket (aligned with `buckets`).
    pub metrics: BTreeMap<String, Vec<Point>>,
}

/// One bucket of the whole run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    /// Seconds since the start at the end of the bucket.
    pub t: u64,
    /// Network actions in the bucket: HTTP requests and WebSocket actions, answered or not.
    pub requests: u64,
    pub errors: u64,
    /// Sessions running at the end of the bucket.
    pub active: u64,
    pub dropped: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// One metric in one bucket; latencies in µs (0 without samples).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub count: u64,
    pub errors: u64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

/// Builds a [`TimeSeries`] from successive cumulative snapshots.
#[derive(Default)]
pub struct Sampler {
    previous: MetricSet,
    series: TimeSeries,
    elapsed: u64,
    /// Snapshots seen since the last bucket was closed (for merged widths).
    pending: Option<(Bucket, BTreeMap<String, MetricData>)>,
    pending_secs: u64,
}

impl Sampler {
    /// A sampler whose first bucket starts now.
    pub fn new() -> Sampler {
        Sampler {
            series: TimeSeries {
                bucket_secs: 1,
                ..TimeSeries::default()
            },
            ..Sampler::default()
        }
    }

    /// Takes the cumulative `now` one second after the previous one, with `active` sessions
    /// running; returns the bucket of that second (what the progress display shows).
    pub fn second(
        &mut self,
        now: MetricSet,
        active: u64,
    ) -> (Bucket, BTreeMap<String, MetricData>) {
        self.elapsed += 1;
        let mut bucket = Bucket {
            t: self.elapsed,
            active,
            dropped: delta_counter(&now, &self.previous, DROPPED),
            bytes_sent: delta_counter(&now, &self.previous, super::keys::BYTES_SENT),
            bytes_received: delta_counter(&now, &self.previous, super::keys::BYTES_RECEIVED),
            ..Bucket::default()
        };
        let mut deltas = BTreeMap::new();
        for (key, data) in &now.metrics {
            let delta = match self.previous.metrics.get(key) {
                Some(before) => difference(data, before),
                None => data.clone(),
            };
            if is_request(key) {
                bucket.requests += delta.histogram.len() + delta.error_count();
            }
            bucket.errors += delta.error_count();
            deltas.insert(key.clone(), delta);
        }
        self.previous = now;
        self.add(bucket.clone(), &deltas);
        (bucket, deltas)
    }

    /// The series so far (the partial last bucket included).
    pub fn finish(mut self) -> TimeSeries {
        if let Some((bucket, data)) = self.pending.take() {
            self.push(bucket, &data);
        }
        self.series
    }

    /// Adds a one-second bucket, merging it into a wider one while the width is above 1 s.
    fn add(&mut self, bucket: Bucket, deltas: &BTreeMap<String, MetricData>) {
        let (mut merged, mut data) = self.pending.take().unwrap_or_default();
        merge_bucket(&mut merged, &bucket);
        for (key, d) in deltas {
            data.entry(key.clone()).or_default().merge(d);
        }
        self.pending_secs += 1;
        if self.pending_secs < self.series.bucket_secs {
            self.pending = Some((merged, data));
            return;
        }
        self.pending_secs = 0;
        self.push(merged, &data);
        if self.series.buckets.len() >= MAX_BUCKETS {
            self.halve();
        }
    }

    fn push(&mut self, bucket: Bucket, data: &BTreeMap<String, MetricData>) {
        let n = self.series.buckets.len();
        self.series.buckets.push(bucket);
        for (key, d) in data {
            let known = self.series.metrics.contains_key(key);
            if !known && self.series.metrics.len() >= MAX_SERIES_KEYS {
                continue;
            }
            let points = self.series.metrics.entry(key.clone()).or_default();
            points.resize(n, Point::default());
            points.push(point(d));
        }
        for points in self.series.metrics.values_mut() {
            points.resize(n + 1, Point::default());
        }
    }

    /// Merges neighbouring buckets pairwise: half the points, twice the width.
    fn halve(&mut self) {
        let s = &mut self.series;
        s.bucket_secs *= 2;
        s.buckets = s
            .buckets
            .chunks(2)
            .map(|pair| {
                let mut b = Bucket::default();
                for x in pair {
                    merge_bucket(&mut b, x);
                }
                b
            })
            .collect();
        for points in s.metrics.values_mut() {
            *points = points.chunks(2).map(merge_points).collect();
        }
    }
}

/// Whether a metric key counts network actions (not phases, iterations or custom metrics).
pub fn is_request(key: &str) -> bool {
    let key = key.rsplit_once(": ").map_or(key, |(_, k)| k);
    (key.starts_with("http ") && !key.starts_with("http phase")) || key.starts_with("ws_")
}

/// `a - b` of cumulative data (b taken earlier), never below zero.
fn difference(a: &MetricData, b: &MetricData) -> MetricData {
    let mut d = a.clone();
    if d.histogram.subtract(&b.histogram).is_err() {
        d = MetricData::new();
    }
    for (kind, n) in &b.errors {
        if let Some(mine) = d.errors.get_mut(kind) {
            *mine = mine.saturating_sub(*n);
        }
    }
    d.errors.retain(|_, n| *n > 0);
    d
}

fn delta_counter(now: &MetricSet, before: &MetricSet, name: &str) -> u64 {
    let get = |s: &MetricSet| {
        s.counters
            .iter()
            .filter(|(k, _)| k.as_str() == name || k.starts_with(&format!("{name} ")))
            .map(|(_, v)| *v)
            .sum::<u64>()
    };
    get(now).saturating_sub(get(before))
}

fn point(d: &MetricData) -> Point {
    let h = &d.histogram;
    let q = |p: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(p)
        }
    };
    Point {
        count: h.len(),
        errors: d.error_count(),
        p50: q(0.5),
        p95: q(0.95),
        p99: q(0.99),
        max: if h.is_empty() { 0 } else { h.max() },
    }
}

/// Sums counts; the later bucket's time and active sessions.
fn merge_bucket(into: &mut Bucket, b: &Bucket) {
    into.t = b.t;
    into.active = b.active;
    into.requests += b.requests;
    into.errors += b.errors;
    into.dropped += b.dropped;
    into.bytes_sent += b.bytes_sent;
    into.bytes_received += b.bytes_received;
}

/// Two points as one: counts summed, percentiles weighted by count (an approximation that
/// keeps the shape; the exact figures of the whole run are in the report's metrics), max kept.
fn merge_points(pair: &[Point]) -> Point {
    let count: u64 = pair.iter().map(|p| p.count).sum();
    let weighted = |f: fn(&Point) -> u64| {
        if count == 0 {
            return 0;
        }
        let sum: u128 = pair
            .iter()
            .map(|p| u128::from(f(p)) * u128::from(p.count))
            .sum();
        (sum / u128::from(count)) as u64
    };
    Point {
        count,
        errors: pair.iter().map(|p| p.errors).sum(),
        p50: weighted(|p| p.p50),
        p95: weighted(|p| p.p95),
        p99: pair.iter().map(|p| p.p99).max().unwrap_or(0),
        max: pair.iter().map(|p| p.max).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_with(count: u64, micros: u64) -> MetricSet {
        let mut set = MetricSet::default();
        let mut d = MetricData::new();
        for _ in 0..count {
            d.record(micros);
        }
        set.metrics.insert("http GET /".into(), d);
        set
    }

    #[test]
    fn each_second_is_the_difference_of_snapshots() {
        let mut s = Sampler::new();
        let (b1, _) = s.second(set_with(10, 1_000), 3);
        assert_eq!((b1.requests, b1.active), (10, 3));
        let mut later = set_with(10, 1_000);
        later
            .metrics
            .get_mut("http GET /")
            .unwrap()
            .merge(&set_with(5, 9_000).metrics["http GET /"]);
        let (b2, deltas) = s.second(later, 2);
        assert_eq!(b2.requests, 5);
        assert!(deltas["http GET /"].histogram.min() >= 8_990);
        let series = s.finish();
        assert_eq!(series.buckets.len(), 2);
        assert_eq!(series.metrics["http GET /"][1].count, 5);
    }

    #[test]
    fn memory_is_bounded_however_long_the_run() {
        let mut s = Sampler::new();
        let mut total = 0;
        for i in 0..(MAX_BUCKETS as u64 * 5) {
            total += 1;
            s.second(set_with(total, 1_000), i % 7);
        }
        let series = s.finish();
        assert!(
            series.buckets.len() <= MAX_BUCKETS,
            "{}",
            series.buckets.len()
        );
        assert_eq!(series.bucket_secs, 8);
        let counted: u64 = series.buckets.iter().map(|b| b.requests).sum();
        assert_eq!(counted, total, "merging keeps every count");
        assert_eq!(series.metrics["http GET /"].len(), series.buckets.len());
    }
}
