//! Concurrent recording without per-sample storage: each OS thread writes to its own shard, so
//! runtime workers never contend on one lock; [`Recorder::snapshot`] merges the shards into a
//! [`MetricSet`]. Only the [`Sink`](super::Sink) calls it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::data::{CheckCount, MAX_METRIC_KEYS, MetricData, MetricSet};

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

/// Maps on the per-sample path: keys are ours or already capped, so a fast hasher is fine.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One thread group's slice of the recorder's data.
#[derive(Default)]
struct Shard {
    metrics: FastMap<String, MetricData>,
    checks: FastMap<String, CheckCount>,
    counters: FastMap<&'static str, u64>,
}

/// The calling thread's shard, locked: several records for the price of one lock (all the
/// samples and counters of one HTTP request).
pub struct Locked<'a> {
    recorder: &'a Recorder,
    shard: MutexGuard<'a, Shard>,
}

impl Locked<'_> {
    /// A duration sample in µs under `key`.
    pub fn record(&mut self, key: &str, micros: u64) {
        let Locked { recorder, shard } = self;
        recorder.update(&mut shard.metrics, &recorder.metric_keys, key, |data| {
            data.record(micros)
        });
    }

    /// One error of `kind` (e.g. "refused", "timeout", "status 503") under `key`; no sample.
    pub fn record_error(&mut self, key: &str, kind: &str) {
        let Locked { recorder, shard } = self;
        recorder.update(&mut shard.metrics, &recorder.metric_keys, key, |data| {
            data.record_error(kind)
        });
    }

    /// Adds `n` to the host-defined counter `name` (e.g. bytes sent).
    pub fn add(&mut self, name: &'static str, n: u64) {
        let c = self.shard.counters.entry(name).or_default();
        *c = c.saturating_add(n);
    }
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
        self.locked().record(key, micros);
    }

    /// One error of `kind` (e.g. "refused", "timeout", "status 503") under `key`; no sample.
    pub fn record_error(&self, key: &str, kind: &str) {
        self.locked().record_error(key, kind);
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
        self.locked().add(name, n);
    }

    /// The calling thread's shard, to record several things under one lock.
    pub fn locked(&self) -> Locked<'_> {
        Locked {
            recorder: self,
            shard: self.shard(),
        }
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
        map: &mut FastMap<String, V>,
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
    use crate::metrics::data::*;
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
