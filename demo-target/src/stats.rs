//! [`TargetStats`]: what the target saw on the wire, for tests and the demo.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

/// Distinct search queries and posted bodies tallied one by one; beyond this only the totals
/// count, so a load test with unique values cannot grow the target without bound.
const MAX_TALLY_KEYS: usize = 10_000;

/// Counters that let tests prove what a scenario really did on the wire.
#[derive(Debug, Default)]
pub struct TargetStats {
    http_requests: AtomicU64,
    per_route: Mutex<HashMap<(String, String), u64>>,
    pub(crate) connections: AtomicU64,
    pub(crate) ws_opened: AtomicU64,
    pub(crate) ws_open_now: AtomicU64,
    pub(crate) ws_max_open: AtomicU64,
    pub(crate) ws_messages: AtomicU64,
    pub(crate) pings: AtomicU64,
    pub(crate) pongs: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) searches: AtomicU64,
    pub(crate) posts: AtomicU64,
    /// Searches by query.
    pub(crate) queries: Tally,
    /// POST bodies by (path, body); JSON bodies in compact form with sorted keys.
    pub(crate) posted: Tally,
    /// Woken whenever a WebSocket opens, for `hold_pongs_until_open`.
    pub(crate) ws_opened_signal: Notify,
}

/// Counts by key, for at most [`MAX_TALLY_KEYS`] distinct keys.
#[derive(Debug, Default)]
pub(crate) struct Tally(Mutex<HashMap<(String, String), u64>>);

impl Tally {
    pub(crate) fn add(&self, key: (&str, &str)) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (key.0.to_owned(), key.1.to_owned());
        if let Some(n) = map.get_mut(&key) {
            *n += 1;
        } else if map.len() < MAX_TALLY_KEYS {
            map.insert(key, 1);
        }
    }

    fn get(&self, key: (&str, &str)) -> u64 {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (key.0.to_owned(), key.1.to_owned());
        map.get(&key).copied().unwrap_or(0)
    }

    /// Second key parts and their counts, for one first part.
    fn under(&self, first: &str) -> BTreeMap<String, u64> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .filter(|((a, _), _)| a == first)
            .map(|((_, b), n)| (b.clone(), *n))
            .collect()
    }
}

impl TargetStats {
    /// All HTTP requests (excluding WebSocket upgrades).
    pub fn http_requests(&self) -> u64 {
        self.http_requests.load(Ordering::SeqCst)
    }

    /// HTTP requests with this method (e.g. "GET") and path (without query string).
    pub fn requests_to(&self, method: &str, path: &str) -> u64 {
        let key = (method.to_owned(), path.to_owned());
        let map = self
            .per_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(&key).copied().unwrap_or(0)
    }

    /// TCP connections accepted (proves keep-alive reuse).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// WebSocket upgrades completed.
    pub fn ws_opened(&self) -> u64 {
        self.ws_opened.load(Ordering::SeqCst)
    }

    /// WebSockets open right now.
    pub fn ws_open_now(&self) -> u64 {
        self.ws_open_now.load(Ordering::SeqCst)
    }

    /// High-water mark of simultaneously open WebSockets.
    pub fn ws_max_open(&self) -> u64 {
        self.ws_max_open.load(Ordering::SeqCst)
    }

    /// Text and binary messages received on all WebSockets.
    pub fn ws_messages(&self) -> u64 {
        self.ws_messages.load(Ordering::SeqCst)
    }

    /// Text messages equal to "ping" received on `/ping/pong`.
    pub fn pings(&self) -> u64 {
        self.pings.load(Ordering::SeqCst)
    }

    /// "pong" replies sent on `/ping/pong`.
    pub fn pongs(&self) -> u64 {
        self.pongs.load(Ordering::SeqCst)
    }

    /// Messages published with `POST|PUT /publish/{topic}`.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    /// Messages sent to WebSocket subscribers of `/subscribe/{topic}` (each copy counts, replays
    /// included; counted as the send starts).
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::SeqCst)
    }

    /// WebSocket subscriptions to `/subscribe/{topic}` that started.
    pub fn subscriptions(&self) -> u64 {
        self.subscriptions.load(Ordering::SeqCst)
    }

    /// Plain HTTP `GET /subscribe/{topic}` requests (polls for the latest message).
    pub fn polls(&self) -> u64 {
        self.polls.load(Ordering::SeqCst)
    }

    /// `GET /search` requests.
    pub fn searches(&self) -> u64 {
        self.searches.load(Ordering::SeqCst)
    }

    /// `GET /search?q={query}` requests with this query (`""` when there was no `q`).
    pub fn searches_for(&self, query: &str) -> u64 {
        self.queries.get(("", query))
    }

    /// `POST /posts` requests.
    pub fn posts(&self) -> u64 {
        self.posts.load(Ordering::SeqCst)
    }

    /// Bodies POSTed to `path` (by `/posts` and the catch-all POST sink) with their counts;
    /// JSON bodies are in compact form with sorted keys (`serde_json::Value::to_string`),
    /// others as (lossy UTF-8) text.
    pub fn posted_bodies(&self, path: &str) -> BTreeMap<String, u64> {
        self.posted.under(path)
    }

    pub(crate) fn record_request(&self, method: &str, path: &str) {
        self.http_requests.fetch_add(1, Ordering::SeqCst);
        let mut map = self
            .per_route
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *map.entry((method.to_owned(), path.to_owned())).or_insert(0) += 1;
    }
}
