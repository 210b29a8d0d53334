//! Request headers a scenario may set, for HTTP requests and WebSocket handshakes alike.

use crate::util::escape;
use crate::wit::RequestError;

/// Headers the host owns (framing, routing, connection management). The list follows
/// wasmtime-wasi-http's forbidden headers; a scenario setting one gets `invalid`.
pub const FORBIDDEN: [&str; 13] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "http2-settings",
    "sec-websocket-key",
    "sec-websocket-version",
];

/// Checks one guest header and converts it for the wire.
pub fn check(
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), RequestError> {
    if FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return Err(RequestError::Invalid(format!(
            "header `{}` is set by the host and may not be set by a scenario",
            escape(name)
        )));
    }
    let n = http::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| RequestError::Invalid(format!("invalid header name `{}`", escape(name))))?;
    let v = http::HeaderValue::from_str(value).map_err(|_| {
        RequestError::Invalid(format!("invalid value for header `{}`", escape(name)))
    })?;
    Ok((n, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_headers_are_refused_in_any_case() {
        assert!(check("Keep-Alive", "x").is_err());
        assert!(check("HTTP2-Settings", "x").is_err());
        assert!(check("x-fine", "ok").is_ok());
        assert!(check("bad name", "ok").is_err());
    }
}
