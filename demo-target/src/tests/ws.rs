//! WebSocket endpoints and publish/subscribe.

use super::*;
use futures_util::SinkExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_ping_pong_and_echo() {
    let server = start(TargetOptions::default()).await;
    let stats = server.stats();

    let mut ws = ws_connect(server.addr(), "/ping/pong").await;
    ws.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "pong");
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "hello");

    let mut echo = ws_connect(server.addr(), "/ws/echo").await;
    echo.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    let reply = tokio::time::timeout(WAIT, echo.next())
        .await
        .expect("in time");
    assert_eq!(
        reply.expect("open").expect("msg"),
        Message::binary(vec![1u8, 2, 3])
    );

    ws.close(None).await.expect("close");
    echo.close(None).await.expect("close");
    eventually("sockets closed", || stats.ws_open_now() == 0).await;
    assert_eq!(stats.ws_opened(), 2);
    assert_eq!(stats.ws_max_open(), 2);
    assert_eq!(stats.ws_messages(), 3);
    assert_eq!((stats.pings(), stats.pongs()), (1, 1));
    assert_eq!(stats.http_requests(), 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pongs_are_held_until_enough_sockets_are_open() {
    let options = TargetOptions {
        hold_pongs_until_open: Some(2),
    };
    let server = start(options).await;
    let stats = server.stats();

    let mut first = ws_connect(server.addr(), "/ping/pong").await;
    first.send(Message::text("ping")).await.expect("send");
    eventually("first ping counted", || stats.pings() == 1).await;
    let early = tokio::time::timeout(Duration::from_millis(300), first.next()).await;
    assert!(
        early.is_err(),
        "pong arrived before the second socket opened"
    );
    assert_eq!(stats.pongs(), 0);

    let mut second = ws_connect(server.addr(), "/ping/pong").await;
    assert_eq!(next_text(&mut first).await, "pong");
    second.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_text(&mut second).await, "pong");
    assert_eq!(stats.ws_max_open(), 2);
    server.shutdown().await;
}

/// Waits of the pub/sub, search and post tests.
const QUICK: Duration = Duration::from_secs(2);

async fn recv_within(ws: &mut Ws) -> Message {
    loop {
        let msg = tokio::time::timeout(QUICK, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("message");
        if msg.is_text() || msg.is_binary() {
            return msg;
        }
    }
}

async fn nothing_within(ws: &mut Ws, ms: u64) {
    let early = tokio::time::timeout(Duration::from_millis(ms), ws.next()).await;
    assert!(early.is_err(), "unexpected message: {early:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_reaches_every_subscriber_of_its_topic_only() {
    let server = start(TargetOptions::default()).await;
    let addr = server.addr();
    let stats = server.stats();
    let mut a = ws_connect(addr, "/subscribe/news").await;
    let mut b = ws_connect(addr, "/subscribe/news").await;
    let mut other = ws_connect(addr, "/subscribe/sports").await;
    let mut c = client(addr).await;

    // The subscription exists as soon as the handshake is answered.
    let (status, _, body) = send(&mut c, Method::POST, "/publish/news", &[], b"hello").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body_json(&body),
        serde_json::json!({"topic": "news", "sequence": 1, "subscribers": 2})
    );
    assert_eq!(recv_within(&mut a).await, Message::text("hello"));
    assert_eq!(recv_within(&mut b).await, Message::text("hello"));

    let (_, _, body) = send(&mut c, Method::PUT, "/publish/news", &[], b"\xff\x00").await;
    assert_eq!(body_json(&body)["sequence"], 2);
    assert_eq!(recv_within(&mut a).await, Message::binary(vec![0xffu8, 0]));
    assert_eq!(recv_within(&mut b).await, Message::binary(vec![0xffu8, 0]));
    nothing_within(&mut other, 100).await;

    // A plain GET polls the latest message; 204 when there is none.
    let (status, _, body) = send(&mut c, Method::GET, "/subscribe/news", &[], b"").await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &[0xffu8, 0][..]));
    let (status, _, _) = send(&mut c, Method::GET, "/subscribe/empty", &[], b"").await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    for ws in [&mut a, &mut b, &mut other] {
        ws.close(None).await.expect("close");
    }
    eventually("sockets closed", || stats.ws_open_now() == 0).await;
    assert_eq!(stats.published(), 2);
    assert_eq!(stats.delivered(), 4);
    assert_eq!(stats.subscriptions(), 3);
    assert_eq!(stats.polls(), 2);
    assert_eq!(stats.requests_to("POST", "/publish/news"), 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_can_ask_for_earlier_messages() {
    let server = start(TargetOptions::default()).await;
    let addr = server.addr();
    let mut c = client(addr).await;
    let bodies: [&'static [u8]; 3] = [b"one", b"two", b"three"];
    for body in bodies {
        send(&mut c, Method::POST, "/publish/t", &[], body).await;
    }
    let mut ws = ws_connect(addr, "/subscribe/t").await;
    nothing_within(&mut ws, 100).await;
    let ask = Message::text(r#"{"last_message_sequence": 1}"#);
    ws.send(ask).await.expect("send");
    assert_eq!(recv_within(&mut ws).await, Message::text("two"));
    assert_eq!(recv_within(&mut ws).await, Message::text("three"));
    send(&mut c, Method::POST, "/publish/t", &[], b"four").await;
    assert_eq!(recv_within(&mut ws).await, Message::text("four"));
    // A replay never repeats what came live.
    let again = Message::text(r#"{"last_message_sequence": 3}"#);
    ws.send(again).await.expect("send");
    nothing_within(&mut ws, 100).await;
    let stats = server.stats();
    assert_eq!((stats.published(), stats.delivered()), (4, 3));
    assert_eq!(stats.ws_messages(), 2);
    server.shutdown().await;
}
