//! What is recorded under one metric key, and the merged set of all of them. Each key owns
//! one HDR histogram of microsecond values, so memory stays constant however many samples a
//! run produces.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Most distinct metric keys (and, separately, most distinct check names) one run may create.
///
/// Each key costs a histogram per shard (16–190 KiB each), so a scenario that builds keys from
/// unbounded data (URLs with ids, error texts) would otherwise exhaust host memory and make the
/// report unreadable. Samples for keys beyond the cap are counted in
/// [`MetricSet::dropped_keys`] instead of being stored.
pub const MAX_METRIC_KEYS: usize = 1000;

/// Most distinct error kinds kept per metric key; further kinds are counted under
/// [`OTHER_ERROR_KIND`], for the same memory and readability reasons as [`MAX_METRIC_KEYS`].
pub const MAX_ERROR_KINDS: usize = 100;

/// Error kind that collects errors whose own kind did not fit under [`MAX_ERROR_KINDS`].
pub const OTHER_ERROR_KIND: &str = "other";

/// Largest value a histogram tracks (one hour); larger samples are clamped to it, still counted.
pub const HIGHEST_MICROS: u64 = 3_600_000_000;

/// Smallest discernible value; 0 µs is still recordable (it shares the lowest bucket).
const LOWEST_MICROS: u64 = 1;

/// Three significant figures: 0.1% relative error, the usual latency-reporting precision.
const SIGNIFICANT_FIGURES: u8 = 3;

/// Histograms start at the smallest range and auto-resize up to [`HIGHEST_MICROS`], so memory
/// follows the largest sample actually seen instead of always paying for the one-hour ceiling.
const INITIAL_HIGHEST_MICROS: u64 = 2 * LOWEST_MICROS;

// The constants above satisfy every `CreationError` condition, which makes `empty_histogram`
// infallible; checked at compile time so a future edit cannot break that silently.
const _: () = assert!(
    LOWEST_MICROS >= 1
        && INITIAL_HIGHEST_MICROS >= 2 * LOWEST_MICROS
        && HIGHEST_MICROS >= INITIAL_HIGHEST_MICROS
        && SIGNIFICANT_FIGURES <= 5
);

/// A fresh auto-resizing histogram with the run-wide precision.
fn empty_histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(LOWEST_MICROS, INITIAL_HIGHEST_MICROS, SIGNIFICANT_FIGURES) {
        Ok(mut histogram) => {
            histogram.auto(true);
            histogram
        }
        // The constants are validated at compile time (see the assertion above).
        Err(e) => unreachable!("HDR histogram constants are invalid: {e}"),
    }
}

/// Adds `n` errors of `kind`, folding kinds beyond [`MAX_ERROR_KINDS`] into
/// [`OTHER_ERROR_KIND`].
fn add_error(errors: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    if let Some(count) = errors.get_mut(kind) {
        *count = count.saturating_add(n);
        return;
    }
    let kind = if errors.len() >= MAX_ERROR_KINDS {
        OTHER_ERROR_KIND
    } else {
        kind
    };
    let count = errors.entry(kind.to_owned()).or_default();
    *count = count.saturating_add(n);
}

/// Everything recorded under one metric key.
#[derive(Clone, Debug)]
pub struct MetricData {
    /// Completed samples in µs.
    pub histogram: Histogram<u64>,
    /// Error kind (e.g. "timeout", "status 503") -> count; errors carry no sample.
    pub errors: BTreeMap<String, u64>,
}

impl Default for MetricData {
    fn default() -> Self {
        Self::new()
    }
}

impl MetricData {
    /// Empty data with an auto-resizing histogram (1 µs .. 1 h, 3 significant figures).
    pub fn new() -> Self {
        Self {
            histogram: empty_histogram(),
            errors: BTreeMap::new(),
        }
    }

    /// Records one sample; values above [`HIGHEST_MICROS`] are clamped so they are still counted.
    pub fn record(&mut self, micros: u64) {
        if self.histogram.record(micros.min(HIGHEST_MICROS)).is_err() {
            // Only reachable if growing failed (or auto-resize was switched off on a decoded
            // histogram): clamp to the current range rather than lose the sample.
            self.histogram.saturating_record(micros);
        }
    }

    /// Records one error of `kind`.
    pub fn record_error(&mut self, kind: &str) {
        add_error(&mut self.errors, kind, 1);
    }

    /// Total errors over all kinds.
    pub fn error_count(&self) -> u64 {
        self.errors
            .values()
            .fold(0, |total, n| total.saturating_add(*n))
    }

    /// Adds `other` into `self` without losing counts.
    pub fn merge(&mut self, other: &MetricData) {
        add_histogram(&mut self.histogram, &other.histogram);
        for (kind, n) in &other.errors {
            add_error(&mut self.errors, kind, *n);
        }
    }
}

/// Adds `from` into `into`; if `into` cannot grow to `from`'s range, values are clamped
/// instead of the whole addition being refused.
fn add_histogram(into: &mut Histogram<u64>, from: &Histogram<u64>) {
    // `add` validates the range before touching any counter, so a failure leaves `into` intact.
    if into.add(from).is_ok() {
        return;
    }
    for value in from.iter_recorded() {
        into.saturating_record_n(value.value_iterated_to(), value.count_at_value());
    }
}

/// How often a named check passed and failed.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CheckCount {
    pub passed: u64,
    pub failed: u64,
}

impl CheckCount {
    /// Counts one outcome.
    pub(super) fn count(&mut self, passed: bool) {
        let counter = if passed {
            &mut self.passed
        } else {
            &mut self.failed
        };
        *counter = counter.saturating_add(1);
    }

    /// Adds another tally into this one.
    pub(super) fn absorb(&mut self, other: CheckCount) {
        self.passed = self.passed.saturating_add(other.passed);
        self.failed = self.failed.saturating_add(other.failed);
    }
}

/// Merged view of recorded metrics and checks.
#[derive(Clone, Debug, Default)]
pub struct MetricSet {
    pub metrics: BTreeMap<String, MetricData>,
    pub checks: BTreeMap<String, CheckCount>,
    /// Samples/errors/check results refused because [`MAX_METRIC_KEYS`] distinct keys (or check
    /// names) already existed.
    pub dropped_keys: u64,
    /// Host-defined totals (bytes sent and received); not capped, guests cannot name them.
    pub counters: BTreeMap<String, u64>,
}

impl MetricSet {
    /// Adds `other` into `self` losslessly. The key cap is not applied here: both sides were
    /// already capped when recorded.
    pub fn merge(&mut self, other: &MetricSet) {
        for (key, data) in &other.metrics {
            self.merge_metric(key, data);
        }
        for (name, count) in &other.checks {
            self.merge_check(name, *count);
        }
        self.dropped_keys = self.dropped_keys.saturating_add(other.dropped_keys);
        for (name, n) in &other.counters {
            self.add_counter(name, *n);
        }
    }

    /// Adds a tenant's set into `self`, its metric keys and check names under `tenant: `
    /// (the implicit tenant, "", keeps its names); its refused keys are also counted under
    /// the counter `dropped_metric_keys TENANT`.
    pub fn merge_tenant(&mut self, tenant: &str, other: &MetricSet) {
        if tenant.is_empty() {
            return self.merge(other);
        }
        for (key, data) in &other.metrics {
            self.merge_metric(&format!("{tenant}: {key}"), data);
        }
        for (name, count) in &other.checks {
            self.merge_check(&format!("{tenant}: {name}"), *count);
        }
        self.dropped_keys = self.dropped_keys.saturating_add(other.dropped_keys);
        if other.dropped_keys > 0 {
            self.add_counter(&format!("dropped_metric_keys {tenant}"), other.dropped_keys);
        }
        for (name, n) in &other.counters {
            self.add_counter(name, *n);
        }
    }

    /// Adds `n` to the counter `name`.
    pub fn add_counter(&mut self, name: &str, n: u64) {
        let c = self.counters.entry(name.to_owned()).or_default();
        *c = c.saturating_add(n);
    }

    /// Adds `data` under `key`.
    pub fn merge_metric(&mut self, key: &str, data: &MetricData) {
        // Merging into a fresh `MetricData` (rather than cloning) keeps every stored histogram
        // auto-resizing, even when `data` was decoded from a fixed-range report.
        self.metrics.entry(key.to_owned()).or_default().merge(data);
    }

    /// Adds a check tally under `name`.
    pub(super) fn merge_check(&mut self, name: &str, count: CheckCount) {
        self.checks
            .entry(name.to_owned())
            .or_default()
            .absorb(count);
    }
}
