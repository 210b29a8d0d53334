//! Publish/subscribe topics: `POST|PUT /publish/{topic}` sends to every WebSocket subscribed
//! with `/subscribe/{topic}`; a plain `GET /subscribe/{topic}` polls the latest message.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::Shared;
use crate::http_routes::{OCTETS, Resp, empty, json, read_body, text, with_type};

/// Messages kept per topic for `{"last_message_sequence": N}` replays.
const TOPIC_HISTORY: usize = 1024;
/// Messages queued per subscriber; one that falls further behind skips the oldest.
const TOPIC_QUEUE: usize = 4096;

/// Publish/subscribe topics, created on first use.
#[derive(Default)]
pub(crate) struct Topics(Mutex<HashMap<String, Topic>>);

struct Topic {
    tx: broadcast::Sender<Published>,
    /// The last [`TOPIC_HISTORY`] messages, oldest first.
    history: VecDeque<Published>,
    /// Sequence of the latest message (0: none yet).
    sequence: u64,
}

#[derive(Clone, Debug)]
pub(crate) struct Published {
    sequence: u64,
    pub(crate) message: Message,
}

/// One subscriber's queue, taken when its handshake was accepted.
pub(crate) struct Subscription {
    pub(crate) topic: String,
    pub(crate) rx: broadcast::Receiver<Published>,
    /// The topic's sequence when the subscription started: later messages come through `rx`,
    /// earlier ones only by replay.
    pub(crate) since: u64,
}

impl Topics {
    fn with<R>(&self, topic: &str, f: impl FnOnce(&mut Topic) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let topic = map.entry(topic.to_owned()).or_insert_with(|| Topic {
            tx: broadcast::channel(TOPIC_QUEUE).0,
            history: VecDeque::new(),
            sequence: 0,
        });
        f(topic)
    }

    pub(crate) fn subscribe(&self, topic: &str) -> Subscription {
        self.with(topic, |t| Subscription {
            topic: topic.to_owned(),
            rx: t.tx.subscribe(),
            since: t.sequence,
        })
    }

    /// Sends `message` to the topic's subscribers; returns its sequence and how many got it.
    fn publish(&self, topic: &str, message: Message) -> (u64, usize) {
        self.with(topic, |t| {
            t.sequence += 1;
            let published = Published {
                sequence: t.sequence,
                message,
            };
            if t.history.len() == TOPIC_HISTORY {
                t.history.pop_front();
            }
            t.history.push_back(published.clone());
            // An error only means there is no subscriber.
            let subscribers = t.tx.send(published).unwrap_or(0);
            (t.sequence, subscribers)
        })
    }

    /// The topic's latest message; polling never creates a topic.
    fn latest(&self, topic: &str) -> Option<Message> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let latest = map.get(topic)?.history.back()?;
        Some(latest.message.clone())
    }

    /// Kept messages with `after < sequence <= until`, oldest first.
    pub(crate) fn replay(&self, topic: &str, after: u64, until: u64) -> Vec<Message> {
        self.with(topic, |t| {
            t.history
                .iter()
                .filter(|p| p.sequence > after && p.sequence <= until)
                .map(|p| p.message.clone())
                .collect()
        })
    }
}

/// `{"last_message_sequence": N}` from a subscriber (Firehose's protocol): replay after N.
pub(crate) fn replay_request(message: &Message) -> Option<u64> {
    let Message::Text(text) = message else {
        return None;
    };
    let value: Value = serde_json::from_str(text.as_str()).ok()?;
    value.get("last_message_sequence")?.as_u64()
}

/// `/subscribe/{topic}` (as text when it is UTF-8, else binary) and answers
/// `{"topic", "sequence", "subscribers"}`. Sequences count from 1 per topic.
pub(crate) async fn publish(topic: &str, req: Request<Incoming>, shared: &Shared) -> Resp {
    let Some((_, body)) = read_body(req).await else {
        return text(StatusCode::BAD_REQUEST, "could not read body\n");
    };
    let message = match String::from_utf8(body.to_vec()) {
        Ok(text) => Message::text(text),
        Err(_) => Message::binary(body),
    };
    let (sequence, subscribers) = shared.topics.publish(topic, message);
    shared.stats.published.fetch_add(1, Ordering::SeqCst);
    let answer = serde_json::json!({
        "topic": topic,
        "sequence": sequence,
        "subscribers": subscribers,
    });
    json(StatusCode::OK, &answer)
}

/// `GET /subscribe/{topic}` without an upgrade: the latest message of the topic, or 204 when
/// nothing was published to it yet.
pub(crate) fn poll(topic: &str, shared: &Shared) -> Resp {
    shared.stats.polls.fetch_add(1, Ordering::SeqCst);
    match shared.topics.latest(topic) {
        Some(Message::Text(t)) => text(StatusCode::OK, Bytes::from(t)),
        Some(Message::Binary(b)) => with_type(StatusCode::OK, OCTETS, b),
        _ => empty(StatusCode::NO_CONTENT),
    }
}
