//! Port of Chaperon's examples/firehose.ex: the three scenarios of a pub/sub load test in one
//! component, chosen by the config key `firehose`, all on the channel `channel`:
//!
//! - `publish` (`PublishChannel`): `publications_per_loop` loops of `duration` ms; each iteration
//!   waits up to `base_interval` ms, then publishes in an async child (`PUT /publish/{channel}`).
//! - `subscribe` (`SubscribeChannel`): `subscriptions_per_loop` async children, each polling the
//!   channel (`GET /subscribe/{channel}`) in async children of its own for `duration` ms.
//! - `ws_subscribe` (`WSSubscribeChannel`): subscribes over WebSocket, asks for every message
//!   since the first (`{"last_message_sequence": 0}`) and receives `await_messages` of them.

use chaperon_sdk::prelude::*;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest wait for each WebSocket message, in ms.
const WAIT_MS: u32 = 2_000;

struct Firehose;

impl Scenario for Firehose {
    fn run(s: &mut Session) -> Result {
        match s.config::<String>("firehose")?.as_str() {
            "publish" => publish_loop(s),
            "subscribe" => multi_subscribe_loop(s),
            "ws_subscribe" => ws_subscribe(s),
            other => Err(format!("unknown firehose scenario {other:?}").into()),
        }
    }

    fn invoke(s: &mut Session, function: &str, _args: Value) -> Result<Value> {
        match function {
            "subscribe_loop" => subscribe_loop(s)?,
            "subscribe" => subscribe(s)?,
            "publish" => publish(s)?,
            _ => return Err(format!("unknown function {function}").into()),
        }
        Ok(Value::Null)
    }
}

/// `/{kind}/{channel}`.
fn channel(s: &Session, kind: &str) -> Result<String> {
    Ok(format!("/{kind}/{}", s.config::<String>("channel")?))
}

// ---------------------------------------------------------------- SubscribeChannel

fn multi_subscribe_loop(s: &mut Session) -> Result {
    for _ in 0..s.config::<u32>("subscriptions_per_loop")? {
        s.spawn("subscribe_loop", ())?; // ~> subscribe_loop
    }
    s.await_task("subscribe_loop")?; // <~ subscribe_loop
    Ok(())
}

fn subscribe_loop(s: &mut Session) -> Result {
    let base_interval: u32 = s.config("base_interval")?;
    s.loop_for("subscribe", s.config("duration")?, |s| {
        s.random_delay(base_interval);
        s.spawn("subscribe", ())?; // ~> subscribe(channel)
        Ok(())
    })?;
    s.await_task("subscribe")?; // <~ subscribe
    Ok(())
}

fn subscribe(s: &mut Session) -> Result {
    let channel = channel(s, "subscribe")?;
    s.get(&channel)?;
    Ok(())
}

// ---------------------------------------------------------------- WSSubscribeChannel

fn ws_subscribe(s: &mut Session) -> Result {
    let channel = channel(s, "subscribe")?;
    let amount: u32 = s.config("await_messages")?;
    s.log_info(format!(
        "WS subscribe {channel} (Awaiting {amount} messages)"
    ));
    s.ws_connect(&channel)?;
    s.ws_send_json(&json!({ "last_message_sequence": 0 }))?;
    for _ in 0..amount {
        s.ws_recv(Some(WAIT_MS))?;
    }
    s.log_info(format!("WS received {amount}/{amount} messages"));
    Ok(())
}

// ---------------------------------------------------------------- PublishChannel

fn publish_loop(s: &mut Session) -> Result {
    let base_interval: u32 = s.config("base_interval")?;
    for _ in 0..s.config::<u32>("publications_per_loop")? {
        s.loop_for("publish", s.config("duration")?, |s| {
            s.random_delay(base_interval);
            s.spawn("publish", ())?; // ~> publish(channel)
            Ok(())
        })?;
    }
    s.await_task("publish")?; // <~ publish
    Ok(())
}

fn publish(s: &mut Session) -> Result {
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |t| t.as_millis());
    let message = json!({ "hello": "world", "time": time as u64 });
    let put = Request::put(channel(s, "publish")?).json(&message);
    s.send(put.header("X-Firehose-Persist", "true"))?;
    Ok(())
}

export_scenario!(Firehose);
