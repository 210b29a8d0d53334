//! Port of Chaperon's `PublishAndAwait` (tutorial part 2, "Task signals"): an async child
//! subscribes to a topic over WebSocket and signals its parent, which only then publishes
//! `message_count` messages over HTTP and awaits the child, which has received them all.
//!
//! Each session uses its own topic, `{topic}-{vu}`, so sessions never see each other's messages.

use chaperon_sdk::prelude::*;

/// Longest wait for the `subscribed` signal and for each message, in ms.
const WAIT_MS: u32 = 2_000;

struct PublishAndAwait;

impl Scenario for PublishAndAwait {
    fn run(s: &mut Session) -> Result {
        let message_count: u32 = s.config("message_count")?;
        let topic = format!("{}-{}", s.config_or("topic", "foo".to_owned()), s.vu());

        s.spawn("subscribe", json!([topic, message_count]))?; // async child session
        s.await_signal(json!(["subscribed", topic]), Some(WAIT_MS))?;
        s.repeat(message_count, |s| publish(s, &topic))?;
        let received = s.await_task("subscribe")?;
        s.check("subscriber got every message", received == [message_count]);
        Ok(())
    }

    fn invoke(s: &mut Session, function: &str, args: Value) -> Result<Value> {
        match function {
            "subscribe" => {
                let (topic, message_count) = chaperon_sdk::serde_json::from_value(args)?;
                subscribe(s, topic, message_count)
            }
            _ => Err(format!("unknown function {function}").into()),
        }
    }
}

fn publish(s: &mut Session, topic: &str) -> Result {
    let data = json!({ "data": "some random data here" });
    let publication = Request::post(format!("/publish/{topic}")).json(&data);
    s.send(publication.metric_name("/publish/:topic"))?;
    Ok(())
}

fn subscribe(s: &mut Session, topic: String, message_count: u32) -> Result<Value> {
    s.ws_connect_as(&format!("/subscribe/{topic}"), "/subscribe/:topic")?;
    s.signal_parent(json!(["subscribed", topic]))?; // the parent may publish now
    s.assign("subscription_messages", json!([]))?; // received messages are kept here
    s.repeat(message_count, subscribe_recv_message)?;
    s.ws_close()?;
    subscribe_finished(s)
}

fn subscribe_recv_message(s: &mut Session) -> Result {
    let Message::Text(msg) = s.ws_recv(Some(WAIT_MS))? else {
        return Err("the subscription ended early".into());
    };
    s.update_assign("subscription_messages", |list| {
        let mut list = list.and_then(|l| l.as_array().cloned()).unwrap_or_default();
        list.insert(0, json!(msg));
        json!(list)
    })
}

fn subscribe_finished(s: &mut Session) -> Result<Value> {
    let messages: Vec<String> = s.assigned("subscription_messages")?;
    s.log_info(format!(
        "Finished subscribing - Received messages: {messages:?}"
    ));
    Ok(json!(messages.len()))
}

export_scenario!(PublishAndAwait);
