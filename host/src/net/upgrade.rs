//! The client side of the WebSocket opening handshake (RFC 6455 §4.1), done here rather than
//! by tungstenite: tungstenite reads the response into a 4 KiB buffer and keeps that buffer as
//! the connection's read buffer for its whole life, 4 KiB per idle WebSocket session. Here the
//! response head is read into a buffer dropped after it, and the connection starts from the
//! configured (small) read buffer with only the bytes that followed the head.
//!
//! The checks and their errors are tungstenite's (status, `Upgrade`, `Connection`,
//! `Sec-WebSocket-Accept`, subprotocol), so a failed handshake reads as it did before.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response, generate_request};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::{Error, http};

/// Largest response head accepted (tungstenite's limit too).
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers parsed (tungstenite's limit too).
const MAX_HEADERS: usize = 124;
/// Bytes read per attempt while the head is incomplete.
const READ_CHUNK: usize = 1024;

/// Sends `request` (built by tungstenite's `into_client_request`, so it carries the key and the
/// upgrade headers; written by tungstenite's `generate_request`, so it goes out as it did) and
/// reads and checks the server's answer. Returns the response head and the bytes that came
/// after it (the first frames, if the server sent any at once).
pub async fn handshake<S>(stream: &mut S, request: Request) -> Result<(Response, Vec<u8>), Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let asked = asked_subprotocols(&request);
    let (bytes, key) = generate_request(request)?;
    stream.write_all(&bytes).await?;
    stream.flush().await?;
    let (response, tail) = read_response(stream).await?;
    verify(&key, asked.as_deref(), &response)?;
    Ok((response, tail))
}

/// The subprotocols the request offers, if any.
fn asked_subprotocols(request: &Request) -> Option<Vec<String>> {
    request
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(',').map(|p| p.trim().to_owned()).collect())
}

/// Reads until the end of the response head (at most [`MAX_HEAD`] bytes) and parses it.
async fn read_response<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Response, Vec<u8>), Error> {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    loop {
        let searched_to = buf.len().saturating_sub(3);
        let had = buf.len();
        buf.resize(had + READ_CHUNK, 0);
        let n = stream.read(&mut buf[had..]).await?;
        buf.truncate(had + n);
        if n == 0 {
            return Err(Error::Protocol(ProtocolError::HandshakeIncomplete));
        }
        if let Some(at) = find_head_end(&buf[searched_to..]) {
            let end = searched_to + at;
            let response = parse_head(&buf[..end])?;
            return Ok((response, buf[end..].to_vec()));
        }
        if buf.len() > MAX_HEAD {
            return Err(Error::AttackAttempt);
        }
    }
}

/// Where the head ends (just past its blank line) within `bytes`.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
}

fn parse_head(head: &[u8]) -> Result<Response, Error> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    match parsed.parse(head)? {
        httparse::Status::Complete(_) => {}
        httparse::Status::Partial => {
            return Err(Error::Protocol(ProtocolError::HandshakeIncomplete));
        }
    }
    if parsed.version != Some(1) {
        return Err(Error::Protocol(ProtocolError::WrongHttpVersion));
    }
    let mut response = Response::new(None);
    *response.status_mut() = http::StatusCode::from_u16(parsed.code.unwrap_or(0))?;
    let map = response.headers_mut();
    for h in parsed.headers.iter() {
        let name = http::HeaderName::from_bytes(h.name.as_bytes())?;
        map.append(name, http::HeaderValue::from_bytes(h.value)?);
    }
    Ok(response)
}

/// RFC 6455 §4.1's checks of the server's answer to the request with `key`, with tungstenite's
/// errors.
fn verify(key: &str, asked: Option<&[String]>, response: &Response) -> Result<(), Error> {
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let mut rejected = http::Response::new(None);
        *rejected.status_mut() = response.status();
        return Err(Error::Http(Box::new(rejected)));
    }
    let headers = response.headers();
    let is = |name: &str, want: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(want))
    };
    if !is("Upgrade", "websocket") {
        return Err(Error::Protocol(
            ProtocolError::MissingUpgradeWebSocketHeader,
        ));
    }
    if !is("Connection", "Upgrade") {
        return Err(Error::Protocol(
            ProtocolError::MissingConnectionUpgradeHeader,
        ));
    }
    if headers
        .get("Sec-WebSocket-Accept")
        .is_none_or(|h| h.as_bytes() != derive_accept_key(key.as_bytes()).as_bytes())
    {
        return Err(Error::Protocol(
            ProtocolError::SecWebSocketAcceptKeyMismatch,
        ));
    }
    check_subprotocol(asked, response)
}

/// The server may pick one of the subprotocols asked for, and must when any were.
fn check_subprotocol(asked: Option<&[String]>, response: &Response) -> Result<(), Error> {
    let sub = |e| {
        Err(Error::Protocol(
            ProtocolError::SecWebSocketSubProtocolError(e),
        ))
    };
    match (response.headers().get("Sec-WebSocket-Protocol"), asked) {
        (None, None) => Ok(()),
        (None, Some(_)) => sub(SubProtocolError::NoSubProtocol),
        (Some(_), None) => sub(SubProtocolError::ServerSentSubProtocolNoneRequested),
        (Some(picked), Some(asked)) => {
            let picked = picked.to_str().unwrap_or_default();
            if asked.iter().any(|a| a == picked) {
                Ok(())
            } else {
                sub(SubProtocolError::InvalidSubProtocol)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// A server on the other end of a pipe that answers the handshake with `answer` (its
    /// `{accept}` replaced by the right accept key) and then `tail`.
    async fn against(
        answer: &str,
        tail: &[u8],
        protocols: Option<&str>,
    ) -> Result<(Response, Vec<u8>), Error> {
        let mut request = "ws://127.0.0.1:9/ws?x=1".into_client_request()?;
        if let Some(p) = protocols {
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", http::HeaderValue::from_str(p)?);
        }
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let answer = answer.to_owned();
        let tail = tail.to_vec();
        let served = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut chunk = [0u8; 512];
            while find_head_end(&got).is_none() {
                let n = server.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&got).into_owned();
            let key = text
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap_or_default()
                .to_owned();
            let reply = answer.replace("{accept}", &derive_accept_key(key.as_bytes()));
            let _ = server.write_all(reply.as_bytes()).await;
            let _ = server.write_all(&tail).await;
            text
        });
        let r = handshake(&mut client, request).await;
        let sent = served.await.unwrap_or_default();
        assert!(sent.starts_with("GET /ws?x=1 HTTP/1.1\r\n"), "{sent}");
        assert!(sent.contains("Upgrade: websocket\r\n"), "{sent}");
        r
    }

    const OK: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";

    #[tokio::test]
    async fn an_accepted_upgrade_keeps_the_bytes_after_the_head() {
        let answer = format!("{OK}Set-Cookie: a=1\r\n\r\n");
        let (response, tail) = against(&answer, &[0x81, 0x01, b'x'], None)
            .await
            .expect("accepted");
        assert_eq!(response.headers()["set-cookie"], "a=1");
        assert_eq!(tail, [0x81, 0x01, b'x']);
    }

    #[tokio::test]
    async fn a_refusal_or_a_bad_answer_is_the_error_tungstenite_gave() {
        let refused = against(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
            &[],
            None,
        )
        .await;
        assert!(
            matches!(&refused, Err(Error::Http(r)) if r.status() == 403),
            "{refused:?}"
        );
        let wrong_key = OK.replace("{accept}", "nope") + "\r\n";
        let r = against(&wrong_key, &[], None).await;
        assert!(matches!(
            r,
            Err(Error::Protocol(
                ProtocolError::SecWebSocketAcceptKeyMismatch
            ))
        ));
        let no_upgrade = OK.replace("Upgrade: websocket\r\n", "") + "\r\n";
        let r = against(&no_upgrade, &[], None).await;
        assert!(matches!(
            r,
            Err(Error::Protocol(
                ProtocolError::MissingUpgradeWebSocketHeader
            ))
        ));
        let cut = against("HTTP/1.1 101 Switching", &[], None).await;
        assert!(matches!(
            cut,
            Err(Error::Protocol(ProtocolError::HandshakeIncomplete))
        ));
    }

    #[tokio::test]
    async fn the_server_picks_one_of_the_subprotocols_asked_for() {
        let picked = format!("{OK}Sec-WebSocket-Protocol: b\r\n\r\n");
        assert!(against(&picked, &[], Some("a, b")).await.is_ok());
        let other = format!("{OK}Sec-WebSocket-Protocol: c\r\n\r\n");
        let r = against(&other, &[], Some("a, b")).await;
        assert!(matches!(
            r,
            Err(Error::Protocol(
                ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::InvalidSubProtocol)
            ))
        ));
        let none = format!("{OK}\r\n");
        assert!(against(&none, &[], Some("a")).await.is_err());
        assert!(against(&picked, &[], None).await.is_err());
    }
}
