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

/// Most headers a scenario may set on one request or handshake.
pub const MAX_HEADERS: usize = 64;
/// Longest header name a scenario may set, in bytes.
pub const MAX_NAME: usize = 256;
/// Longest header value a scenario may set, in bytes.
pub const MAX_VALUE: usize = 8 * 1024;

/// Checks the guest's headers (count and sizes) and converts them for the wire.
pub fn check_all(
    headers: &[(String, String)],
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, RequestError> {
    if headers.len() > MAX_HEADERS {
        return Err(RequestError::Invalid(format!(
            "{} headers; a scenario may set at most {MAX_HEADERS}",
            headers.len()
        )));
    }
    headers.iter().map(|(n, v)| check(n, v)).collect()
}

/// Checks one guest header and converts it for the wire.
pub fn check(
    name: &str,
    value: &str,
) -> Result<(http::HeaderName, http::HeaderValue), RequestError> {
    if name.len() > MAX_NAME || value.len() > MAX_VALUE {
        return Err(RequestError::Invalid(format!(
            "header `{}` is over the limit ({MAX_NAME}-byte names, {MAX_VALUE}-byte values)",
            escape(crate::util::truncate(name, 64))
        )));
    }
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
        assert!(check(&"x".repeat(MAX_NAME + 1), "ok").is_err());
        assert!(check("x-big", &"v".repeat(MAX_VALUE + 1)).is_err());
        let many: Vec<(String, String)> = (0..=MAX_HEADERS)
            .map(|i| (format!("x-{i}"), "v".into()))
            .collect();
        assert!(check_all(&many).is_err());
        assert_eq!(check_all(&many[..MAX_HEADERS]).unwrap().len(), MAX_HEADERS);
    }
}
