//! WebSocket connections of one session.
//!
//! Each connection has a host reader task that answers pings and fills a bounded inbound queue
//! even while the scenario is busy elsewhere; when the queue is full the reader stops reading,
//! so a flooding server meets TCP backpressure instead of growing host memory.

use super::NetConfig;
use super::cookies::Cookies;
use super::stream::NetStream;
use crate::util::ledger::{Charge, HostMemory};
use crate::wit::RequestError;
use crate::wit::websocket::{ConnectOptions, Message};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::{self, protocol::WebSocketConfig};

type Sink = SplitSink<WebSocketStream<NetStream>, tungstenite::Message>;

/// Largest single frame a server may send.
const MAX_FRAME: usize = 4 << 20;
/// Initial read buffer per connection (it grows for large messages). tungstenite's default
/// of 128 KiB per connection would dominate the memory of an idle session.
const READ_BUFFER: usize = 1024;
/// How long `close` waits for the peer's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What the reader task hands to the session. A message holds its share of the queue's byte
/// budget until the session takes it.
enum Inbound {
    /// A message, its share of the connection's byte budget and its host-memory charge.
    Message(Message, Option<(OwnedSemaphorePermit, Charge)>),
    Failed(RequestError),
}

/// Bytes of inbound messages one connection may hold while the guest is not receiving; past
/// it the reader stops reading (TCP backpressure), as it does past `ws_queue` messages. One
/// message larger than this is still delivered, alone.
pub const QUEUE_BYTES: usize = 4 << 20;

/// An open connection (the host side of the WIT `connection` resource).
pub struct WsConnection {
    sink: Sink,
    /// Boxed items: the channel allocates its first block of 32 slots up front, for every
    /// connection, idle or not; a pointer per slot keeps that block small.
    inbound: mpsc::Receiver<Box<Inbound>>,
    reader: tokio::task::JoinHandle<()>,
    /// Set once the peer closed or the connection failed.
    done: Option<RequestError>,
    /// Bytes on the wire, handshake included.
    pub counters: Arc<super::stream::ByteCounters>,
    /// Where the connect's time went before the upgrade (a storm shows in `connect_us`).
    pub phases: super::connect::ConnectTimings,
}

impl Drop for WsConnection {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Opens a WebSocket to `url` (already resolved): the connection passes the network
/// checkpoint, and the handshake carries the session's cookies for that URL.
pub async fn connect(
    net: &NetConfig,
    cookies: &Cookies,
    memory: &HostMemory,
    url: &url::Url,
    options: &ConnectOptions,
) -> Result<WsConnection, RequestError> {
    let timeout = options
        .timeout_ms
        .map(|ms| Duration::from_millis(u64::from(ms)))
        .unwrap_or(net.connect_timeout);
    let request = handshake_request(url, cookies.header_for(url), options)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(net.max_ws_message))
        .max_frame_size(Some(MAX_FRAME));
    // The connect (after the run's connect gate) and the handshake each get `timeout`. A
    // connect that does not complete is `connect-timeout`; a server that accepted the
    // connection but never answers the upgrade is `timeout`, like an unanswered request.
    let (mut stream, phases) = super::connect::connect(net, url, timeout).await?;
    let counters = stream.counters();
    let handshake = super::upgrade::handshake(&mut stream, request);
    let (response, tail) = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| RequestError::Timeout)?
        .map_err(|e| ws_error(&e))?;
    // The connection reads into its own small buffer from here (see `upgrade`).
    let ws = WebSocketStream::from_partially_read(
        stream,
        tail,
        tungstenite::protocol::Role::Client,
        Some(config),
    )
    .await;
    cookies.store(
        url,
        response
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let (sink, stream) = ws.split();
    let (tx, inbound) = mpsc::channel(net.ws_queue.max(1));
    let budget = Arc::new(Semaphore::new(QUEUE_BYTES));
    let reader = tokio::spawn(read_loop(stream, tx, budget, memory.clone()));
    Ok(WsConnection {
        sink,
        inbound,
        reader,
        done: None,
        counters,
        phases,
    })
}

/// The handshake request: the guest's headers (checked like HTTP request headers), its
/// subprotocols and the jar's cookies.
fn handshake_request(
    url: &url::Url,
    cookies: Option<String>,
    options: &ConnectOptions,
) -> Result<tungstenite::handshake::client::Request, RequestError> {
    use tungstenite::client::IntoClientRequest;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| RequestError::Invalid(e.to_string()))?;
    let headers = request.headers_mut();
    for (n, v) in super::headers::check_all(&options.headers)? {
        headers.append(n, v);
    }
    let mut add = |name: http::HeaderName, value: &str| -> Result<(), RequestError> {
        let v = http::HeaderValue::from_str(value)
            .map_err(|_| RequestError::Invalid(format!("invalid value for header `{name}`")))?;
        headers.append(name, v);
        Ok(())
    };
    if !options.protocols.is_empty() {
        add(
            http::header::SEC_WEBSOCKET_PROTOCOL,
            &options.protocols.join(", "),
        )?;
    }
    if let Some(c) = cookies {
        add(http::header::COOKIE, &c)?;
    }
    Ok(request)
}

async fn read_loop(
    mut stream: SplitStream<WebSocketStream<NetStream>>,
    tx: mpsc::Sender<Box<Inbound>>,
    budget: Arc<Semaphore>,
    memory: HostMemory,
) {
    while let Some(item) = stream.next().await {
        let message = match item {
            Ok(tungstenite::Message::Text(t)) => Message::Text(t.to_string()),
            Ok(tungstenite::Message::Binary(b)) => Message::Binary(b.to_vec()),
            Ok(tungstenite::Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                let close = Message::Close((code, reason));
                let _ = tx.send(Box::new(Inbound::Message(close, None))).await;
                return;
            }
            Ok(_) => continue,
            Err(e) => {
                let _ = tx.send(Box::new(Inbound::Failed(read_error(&e)))).await;
                return;
            }
        };
        // Waiting for the queue's byte budget stops reading: TCP backpressure on the peer.
        let Ok(share) = budget
            .clone()
            .acquire_many_owned(byte_share(&message))
            .await
        else {
            return;
        };
        let held = charge_when_room(&memory, &message).await;
        if tx
            .send(Box::new(Inbound::Message(message, Some((share, held)))))
            .await
            .is_err()
        {
            return;
        }
    }
    let _ = tx
        .send(Box::new(Inbound::Failed(RequestError::Reset)))
        .await;
}

/// Charges a queued message to the session's host memory, waiting (and so not reading: TCP
/// backpressure again) while the session or its tenant is at its cap.
async fn charge_when_room(memory: &HostMemory, message: &Message) -> Charge {
    let bytes = u64::from(byte_share(message));
    loop {
        if let Ok(held) = memory.charge("a queued WebSocket message", bytes) {
            return held;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A message's share of [`QUEUE_BYTES`] (at least 1, at most all of it).
fn byte_share(message: &Message) -> u32 {
    let len = match message {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        Message::Close(_) => 0,
    };
    u32::try_from(len.clamp(1, QUEUE_BYTES)).unwrap_or(u32::MAX)
}

impl WsConnection {
    /// Sends one message within `timeout`.
    pub async fn send(
        &mut self,
        msg: tungstenite::Message,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        if let Some(e) = &self.done {
            return Err(e.clone());
        }
        match tokio::time::timeout(timeout, self.sink.send(msg)).await {
            Ok(r) => r.map_err(|e| ws_error(&e)),
            Err(_) => Err(RequestError::Timeout),
        }
    }

    /// The next message; after a close or failure, that outcome again (as `closed`).
    pub async fn recv(&mut self, timeout: Duration) -> Result<Message, RequestError> {
        if let Some(e) = &self.done {
            return Err(e.clone());
        }
        let next = tokio::time::timeout(timeout, self.inbound.recv()).await;
        match next.map(|item| item.map(|b| *b)) {
            Err(_) => Err(RequestError::Timeout),
            Ok(None) => Err(self.finish(RequestError::Reset)),
            Ok(Some(Inbound::Failed(e))) => Err(self.finish(e)),
            Ok(Some(Inbound::Message(m, _share))) => {
                if matches!(m, Message::Close(_)) {
                    self.done = Some(RequestError::Closed);
                }
                Ok(m)
            }
        }
    }

    fn finish(&mut self, e: RequestError) -> RequestError {
        self.done = Some(e.clone());
        e
    }

    /// Receives until `expected` arrives; the deadline covers the whole wait.
    pub async fn await_recv(
        &mut self,
        expected: &Message,
        timeout: Duration,
    ) -> Result<(), RequestError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.recv(left).await?;
            if same_message(&m, expected) {
                return Ok(());
            }
            if let Message::Close(_) = m {
                return Err(RequestError::Closed);
            }
        }
    }

    /// Sends a close frame and waits briefly for the peer's close.
    pub async fn close(&mut self, code: u16, reason: String) -> Result<(), RequestError> {
        if self.done.is_some() {
            return Ok(());
        }
        let frame = tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        self.send(tungstenite::Message::Close(Some(frame)), CLOSE_WAIT)
            .await?;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Inbound::Message(m, _)) = self.inbound.recv().await.map(|b| *b) {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        self.done = Some(RequestError::Closed);
        Ok(())
    }
}

fn same_message(a: &Message, b: &Message) -> bool {
    match (a, b) {
        (Message::Text(x), Message::Text(y)) => x == y,
        (Message::Binary(x), Message::Binary(y)) => x == y,
        (Message::Close(x), Message::Close(y)) => x.0 == y.0,
        _ => false,
    }
}

/// Classifies an error reading from the peer: a frame or message over the size limits is the
/// peer breaking the protocol (`protocol`, like invalid UTF-8), not a `too-large` of ours.
fn read_error(e: &tungstenite::Error) -> RequestError {
    match e {
        tungstenite::Error::Capacity(c) => {
            RequestError::Protocol(format!("over the size limit: {c}"))
        }
        other => ws_error(other),
    }
}

/// Classifies a tungstenite error.
fn ws_error(e: &tungstenite::Error) -> RequestError {
    use tungstenite::Error as E;
    use tungstenite::error::ProtocolError;
    match e {
        E::Http(response) => RequestError::WsHandshake(response.status().as_u16()),
        E::Io(io) => crate::outcome::io_error_to_request_error(io),
        // The TCP connection ended without a close frame.
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => RequestError::Reset,
        E::ConnectionClosed | E::AlreadyClosed => RequestError::Closed,
        E::Capacity(_) => RequestError::TooLarge,
        E::Tls(t) => RequestError::Tls(t.to_string()),
        E::Url(u) => RequestError::Invalid(u.to_string()),
        other => RequestError::Protocol(other.to_string()),
    }
}
