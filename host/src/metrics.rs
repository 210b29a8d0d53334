//! Sample recording without per-sample storage.
//!
//! Every metric key owns one HDR histogram of microsecond values, so memory stays constant no
//! matter how many samples a run produces. Recording goes to a per-OS-thread shard so runtime
//! workers never contend on one lock; [`Recorder::snapshot`] merges the shards into a
//! [`MetricSet`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

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

/// Source of per-thread shard slots; shared by all recorders, which only take it modulo their
/// shard count.
static NEXT_THREAD_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Round-robin slot of this OS thread, assigned on its first recording.
    static THREAD_SLOT: usize = NEXT_THREAD_SLOT.fetch_add(1, Ordering::Relaxed);
}

/// Slot of the calling thread; 0 while the thread is being torn down (TLS already destroyed).
fn thread_slot() -> usize {
    THREAD_SLOT.try_with(|slot| *slot).unwrap_or(0)
}

/// Locks `mutex`, recovering from poisoning: counters stay meaningful even if a recording thread
/// panicked mid-update, and losing a whole run's metrics would be worse.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

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
    fn count(&mut self, passed: bool) {
        let counter = if passed {
            &mut self.passed
        } else {
            &mut self.failed
        };
        *counter = counter.saturating_add(1);
    }

    /// Adds another tally into this one.
    fn absorb(&mut self, other: CheckCount) {
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
    fn merge_check(&mut self, name: &str, count: CheckCount) {
        self.checks
            .entry(name.to_owned())
            .or_default()
            .absorb(count);
    }
}

/// Run-wide set of admitted names, consulted only when a shard sees a name for the first time,
/// so the per-sample path never touches this shared lock.
#[derive(Default)]
struct KeyLimit {
    seen: Mutex<HashSet<String>>,
}

impl KeyLimit {
    /// Whether `key` exists already or still fits under [`MAX_METRIC_KEYS`].
    fn admit(&self, key: &str) -> bool {
        let mut seen = lock(&self.seen);
        if seen.contains(key) {
            return true;
        }
        if seen.len() >= MAX_METRIC_KEYS {
            return false;
        }
        seen.insert(key.to_owned());
        true
    }
}

/// One thread group's slice of the recorder's data.
#[derive(Default)]
struct Shard {
    metrics: HashMap<String, MetricData>,
    checks: HashMap<String, CheckCount>,
    counters: HashMap<&'static str, u64>,
}

/// Concurrent, sharded metric recorder for one run.
pub struct Recorder {
    shards: Vec<Mutex<Shard>>,
    metric_keys: KeyLimit,
    check_names: KeyLimit,
    dropped_keys: AtomicU64,
}

impl Recorder {
    /// A recorder with `shards` shards (use worker threads + 1 so the runtime's workers rarely
    /// share one); 0 is treated as 1.
    pub fn new(shards: usize) -> Self {
        Self {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(Shard::default()))
                .collect(),
            metric_keys: KeyLimit::default(),
            check_names: KeyLimit::default(),
            dropped_keys: AtomicU64::new(0),
        }
    }

    /// One completed sample under `key`.
    pub fn record(&self, key: &str, micros: u64) {
        let mut shard = self.shard();
        self.update(&mut shard.metrics, &self.metric_keys, key, |data| {
            data.record(micros)
        });
    }

    /// One error of `kind` (e.g. "refused", "timeout", "status 503") under `key`; no sample.
    pub fn record_error(&self, key: &str, kind: &str) {
        let mut shard = self.shard();
        self.update(&mut shard.metrics, &self.metric_keys, key, |data| {
            data.record_error(kind)
        });
    }

    /// A named check passed or failed.
    pub fn check(&self, name: &str, passed: bool) {
        let mut shard = self.shard();
        self.update(&mut shard.checks, &self.check_names, name, |count| {
            count.count(passed)
        });
    }

    /// Adds `n` to the host-defined counter `name` (e.g. bytes sent).
    pub fn add(&self, name: &'static str, n: u64) {
        let mut shard = self.shard();
        let c = shard.counters.entry(name).or_default();
        *c = c.saturating_add(n);
    }

    /// Merged view of everything recorded so far.
    pub fn snapshot(&self) -> MetricSet {
        let mut set = MetricSet {
            dropped_keys: self.dropped_keys.load(Ordering::Relaxed),
            ..MetricSet::default()
        };
        for shard in &self.shards {
            let shard = lock(shard);
            for (key, data) in &shard.metrics {
                set.merge_metric(key, data);
            }
            for (name, count) in &shard.checks {
                set.merge_check(name, *count);
            }
            for (name, n) in &shard.counters {
                set.add_counter(name, *n);
            }
        }
        set
    }

    /// The calling thread's shard, locked.
    fn shard(&self) -> MutexGuard<'_, Shard> {
        // `new` guarantees at least one shard, so the index is always in range.
        lock(&self.shards[thread_slot() % self.shards.len()])
    }

    /// Applies `update` to the entry for `key`, creating it if `limit` admits the key and
    /// counting a dropped key otherwise.
    fn update<V: Default>(
        &self,
        map: &mut HashMap<String, V>,
        limit: &KeyLimit,
        key: &str,
        update: impl FnOnce(&mut V),
    ) {
        if let Some(value) = map.get_mut(key) {
            update(value);
            return;
        }
        if limit.admit(key) {
            update(map.entry(key.to_owned()).or_default());
        } else {
            self.dropped_keys.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn records_from_four_threads_sum_exactly() {
        let recorder = Arc::new(Recorder::new(3));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let recorder = Arc::clone(&recorder);
                std::thread::spawn(move || {
                    for i in 0..10_000u64 {
                        recorder.record("req", t * 10_000 + i + 1);
                        if i % 100 == 0 {
                            recorder.record_error("req", "timeout");
                        }
                        recorder.check("ok", i % 4 != 0);
                    }
                })
            })
            .collect();
        for thread in threads {
            assert!(thread.join().is_ok());
        }
        let set = recorder.snapshot();
        let req = &set.metrics["req"];
        assert_eq!(req.histogram.len(), 40_000);
        assert_eq!(req.error_count(), 400);
        assert_eq!(req.errors["timeout"], 400);
        assert_eq!(req.histogram.min(), 1);
        assert!(req.histogram.equivalent(req.histogram.max(), 40_000));
        assert_eq!(
            set.checks["ok"],
            CheckCount {
                passed: 30_000,
                failed: 10_000
            }
        );
        assert_eq!(set.dropped_keys, 0);
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let recorder = Recorder::new(1);
        for micros in 1..=1000 {
            recorder.record("uniform", micros);
        }
        let histogram = &recorder.snapshot().metrics["uniform"].histogram;
        // Values below 2048 are stored exactly at 3 significant figures.
        assert_eq!(histogram.value_at_quantile(0.5), 500);
        assert_eq!(histogram.value_at_quantile(0.9), 900);
        assert_eq!(histogram.value_at_quantile(0.99), 990);
        assert!((histogram.mean() - 500.5).abs() < 0.01);
        assert_eq!(histogram.min(), 1);
        assert_eq!(histogram.max(), 1000);
    }

    #[test]
    fn large_values_keep_three_significant_figures() {
        let recorder = Recorder::new(2);
        for millis in 1..=1000 {
            recorder.record("slow", millis * 1000);
        }
        let histogram = &recorder.snapshot().metrics["slow"].histogram;
        let p50 = histogram.value_at_quantile(0.5);
        assert!(p50.abs_diff(500_000) <= 500, "p50 {p50}");
        let p99 = histogram.value_at_quantile(0.99);
        assert!(p99.abs_diff(990_000) <= 990, "p99 {p99}");
    }

    #[test]
    fn key_cap_drops_new_keys_but_keeps_existing_ones() {
        let recorder = Recorder::new(2);
        for i in 0..MAX_METRIC_KEYS {
            recorder.record(&format!("key-{i}"), 10);
        }
        recorder.record("one-too-many", 10);
        recorder.record_error("another-new-one", "refused");
        recorder.record("key-0", 20);
        recorder.record_error("key-1", "refused");
        let set = recorder.snapshot();
        assert_eq!(set.metrics.len(), MAX_METRIC_KEYS);
        assert_eq!(set.dropped_keys, 2);
        assert_eq!(set.metrics["key-0"].histogram.len(), 2);
        assert_eq!(set.metrics["key-1"].error_count(), 1);
        assert!(!set.metrics.contains_key("one-too-many"));
    }

    #[test]
    fn check_names_have_their_own_cap() {
        let recorder = Recorder::new(1);
        for i in 0..MAX_METRIC_KEYS {
            recorder.record(&format!("key-{i}"), 1);
            recorder.check(&format!("check-{i}"), true);
        }
        recorder.check("check-0", false);
        recorder.check("check-new", true);
        let set = recorder.snapshot();
        assert_eq!(set.checks.len(), MAX_METRIC_KEYS);
        assert_eq!(
            set.checks["check-0"],
            CheckCount {
                passed: 1,
                failed: 1
            }
        );
        assert_eq!(set.dropped_keys, 1);
    }

    #[test]
    fn out_of_range_values_are_clamped_and_counted() {
        let recorder = Recorder::new(1);
        recorder.record("huge", 1_000_000_000_000);
        recorder.record("huge", 0);
        let histogram = &recorder.snapshot().metrics["huge"].histogram;
        assert_eq!(histogram.len(), 2);
        assert!(histogram.equivalent(histogram.max(), HIGHEST_MICROS));
        assert_eq!(histogram.min(), 0);
    }

    #[test]
    fn error_kinds_beyond_the_cap_fold_into_other() {
        let mut data = MetricData::new();
        for i in 0..MAX_ERROR_KINDS + 5 {
            data.record_error(&format!("kind-{i}"));
        }
        data.record_error("kind-0");
        assert_eq!(data.errors.len(), MAX_ERROR_KINDS + 1);
        assert_eq!(data.errors[OTHER_ERROR_KIND], 5);
        assert_eq!(data.errors["kind-0"], 2);
        assert_eq!(data.error_count(), MAX_ERROR_KINDS as u64 + 6);
    }

    #[test]
    fn metric_set_merge_is_lossless() {
        let a = Recorder::new(1);
        let b = Recorder::new(1);
        for micros in 1..=500 {
            a.record("k", micros);
            b.record("k", micros + 500);
        }
        a.check("c", true);
        b.check("c", false);
        b.record_error("only-b", "timeout");
        let mut merged = a.snapshot();
        merged.merge(&b.snapshot());
        let k = &merged.metrics["k"].histogram;
        assert_eq!(k.len(), 1000);
        assert_eq!(k.value_at_quantile(0.5), 500);
        assert_eq!(merged.metrics["only-b"].error_count(), 1);
        assert_eq!(
            merged.checks["c"],
            CheckCount {
                passed: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn recorder_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Recorder>();
    }
}
