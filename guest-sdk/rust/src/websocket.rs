//! WebSocket actions of [`Session`]: one default connection and any number of named ones.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::session::Session;
use crate::wit::chaperon::scenario::types::RequestError;
use crate::wit::chaperon::scenario::websocket::{ConnectOptions, Connection, Message};

/// Close code sent by `ws_close`: normal closure.
const NORMAL_CLOSURE: u16 = 1000;

impl Message {
    /// The text of a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            _ => None,
        }
    }
}

fn not_connected(name: &str) -> Error {
    let which = if name.is_empty() {
        "default".to_owned()
    } else {
        format!("{name:?}")
    };
    Error::Failed(format!(
        "no open {which} WebSocket connection (call ws_connect first)"
    ))
}

impl Session {
    fn connection(&self, name: &str) -> Result<&Connection> {
        self.connections
            .get(name)
            .ok_or_else(|| not_connected(name))
    }

    /// Opens the default WebSocket connection to `path` (resolved against `base_url`, with
    /// `http` → `ws` and `https` → `wss`), replacing any open default connection.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// s.ws_connect("/ping/pong")?;
    /// s.ws_send("ping")?;
    /// s.ws_await_recv("pong")?;
    /// s.ws_close()
    /// # }
    /// ```
    pub fn ws_connect(&mut self, path: &str) -> Result {
        self.ws_connect_named("", path)
    }

    /// Opens the default connection to `path`, recording its handshake under
    /// `ws_connect {metric_name}` rather than the path, so per-user paths share one histogram.
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session, topic: &str) -> Result {
    /// s.ws_connect_as(&format!("/subscribe/{topic}"), "/subscribe/:topic")
    /// # }
    /// ```
    pub fn ws_connect_as(&mut self, path: &str, metric_name: &str) -> Result {
        let options = ConnectOptions {
            metric_name: Some(metric_name.to_owned()),
            headers: Vec::new(),
            protocols: Vec::new(),
            timeout_ms: None,
        };
        self.ws_connect_with("", path, options)
    }

    /// Opens the connection `name`, replacing (and closing) an open one of that name.
    pub fn ws_connect_named(&mut self, name: &str, path: &str) -> Result {
        let options = ConnectOptions {
            metric_name: None,
            headers: Vec::new(),
            protocols: Vec::new(),
            timeout_ms: None,
        };
        self.ws_connect_with(name, path, options)
    }

    /// Like [`ws_connect_named`](Session::ws_connect_named), with extra handshake headers,
    /// subprotocols or a handshake timeout.
    pub fn ws_connect_with(&mut self, name: &str, path: &str, options: ConnectOptions) -> Result {
        // Drop the old connection first: it counts against the session's connection cap.
        drop(self.connections.remove(name));
        let connection = Connection::connect(path, &options)?;
        self.connections.insert(name.to_owned(), connection);
        Ok(())
    }

    /// Sends a text message on the default connection.
    pub fn ws_send(&mut self, text: &str) -> Result {
        self.ws_send_to("", text)
    }

    /// Sends a text message on the connection `name`.
    pub fn ws_send_to(&mut self, name: &str, text: &str) -> Result {
        Ok(self.connection(name)?.send_text(text)?)
    }

    /// Sends a binary message on the default connection.
    pub fn ws_send_binary(&mut self, data: &[u8]) -> Result {
        self.ws_send_binary_to("", data)
    }

    /// Sends a binary message on the connection `name`.
    pub fn ws_send_binary_to(&mut self, name: &str, data: &[u8]) -> Result {
        Ok(self.connection(name)?.send_binary(data)?)
    }

    /// Sends `value` as a JSON text message on the default connection.
    pub fn ws_send_json<T: Serialize + ?Sized>(&mut self, value: &T) -> Result {
        self.ws_send_json_to("", value)
    }

    /// Sends `value` as a JSON text message on the connection `name`.
    pub fn ws_send_json_to<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> Result {
        let text = serde_json::to_string(value)?;
        self.ws_send_to(name, &text)
    }

    /// The next message on the default connection, waiting at most `timeout_ms`
    /// (`None`: the load test's receive timeout).
    ///
    /// ```no_run
    /// # use chaperon_sdk::prelude::*;
    /// # fn f(s: &mut Session) -> Result {
    /// match s.ws_recv(Some(1_000))? {
    ///     Message::Text(text) => s.log_info(format!("got {text}")),
    ///     Message::Binary(data) => s.log_info(format!("got {} bytes", data.len())),
    ///     Message::Close((code, reason)) => s.log_warn(format!("closed: {code} {reason}")),
    /// }
    /// # Ok(()) }
    /// ```
    pub fn ws_recv(&mut self, timeout_ms: Option<u32>) -> Result<Message> {
        self.ws_recv_from("", timeout_ms)
    }

    /// The next message on the connection `name`.
    pub fn ws_recv_from(&mut self, name: &str, timeout_ms: Option<u32>) -> Result<Message> {
        Ok(self.connection(name)?.recv(timeout_ms)?)
    }

    /// Receives on the default connection until the text message `expected` arrives, dropping
    /// others, within the load test's default receive timeout.
    pub fn ws_await_recv(&mut self, expected: &str) -> Result {
        self.ws_await_recv_from("", expected, None)
    }

    /// Receives on the connection `name` until the text message `expected` arrives, dropping
    /// others; `timeout_ms` covers the whole wait (`None`: the load test's receive timeout).
    pub fn ws_await_recv_from(
        &mut self,
        name: &str,
        expected: &str,
        timeout_ms: Option<u32>,
    ) -> Result {
        let expected = Message::Text(expected.to_owned());
        Ok(self.connection(name)?.await_recv(&expected, timeout_ms)?)
    }

    /// Closes the default connection (code 1000). Closing a connection the peer already
    /// closed is not an error.
    pub fn ws_close(&mut self) -> Result {
        self.ws_close_named("")
    }

    /// Closes the connection `name` (code 1000).
    pub fn ws_close_named(&mut self, name: &str) -> Result {
        let connection = self
            .connections
            .remove(name)
            .ok_or_else(|| not_connected(name))?;
        match connection.close(NORMAL_CLOSURE, "") {
            Ok(()) | Err(RequestError::Closed) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
