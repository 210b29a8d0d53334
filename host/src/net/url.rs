//! Scenario URLs: a path resolved against the load test's base URL, or an absolute URL.

use crate::util::escape;
use crate::wit::RequestError;

/// Longest URL a scenario may request, in bytes (query included).
pub const MAX_URL: usize = 8 * 1024;

/// Refuses a URL over [`MAX_URL`] bytes before it is parsed, logged or sent.
pub fn check_len(len: usize) -> Result<(), RequestError> {
    if len > MAX_URL {
        return Err(RequestError::Invalid(format!(
            "a URL of {len} bytes; at most {MAX_URL}"
        )));
    }
    Ok(())
}

/// Resolves a scenario URL: an absolute http(s)/ws(s) URL as is, else `base` + path (the
/// base's own path is kept as a prefix: base `http://x/api` + `/items` = `http://x/api/items`).
/// With `ws`, an http base becomes ws and https becomes wss.
pub fn resolve(base: Option<&url::Url>, path: &str, ws: bool) -> Result<url::Url, RequestError> {
    let invalid = |m: String| RequestError::Invalid(m);
    check_len(path.len())?;
    let mut url = match url::Url::parse(path) {
        Ok(u) => u,
        Err(url::ParseError::RelativeUrlWithoutBase) => {
            let base = base.ok_or_else(|| {
                invalid(format!(
                    "`{}` is relative and the config has no base_url",
                    escape(path)
                ))
            })?;
            let joined = format!(
                "{}/{}",
                base.as_str().trim_end_matches('/'),
                path.trim_start_matches('/')
            );
            url::Url::parse(&joined).map_err(|e| invalid(format!("`{}`: {e}", escape(&joined))))?
        }
        Err(e) => return Err(invalid(format!("`{}`: {e}", escape(path)))),
    };
    let scheme = match (url.scheme(), ws) {
        ("http", true) | ("ws", true) => "ws",
        ("https", true) | ("wss", true) => "wss",
        ("http", false) | ("https", false) => return Ok(url),
        (other, _) => {
            return Err(RequestError::Denied(format!(
                "scheme `{}` is not allowed: {} reaches {} only",
                escape(other),
                if ws { "a WebSocket" } else { "an HTTP request" },
                if ws {
                    "ws(s) and http(s) URLs"
                } else {
                    "http(s) URLs"
                }
            )));
        }
    };
    url.set_scheme(scheme)
        .map_err(|_| invalid(format!("cannot use {scheme} for {}", escape(path))))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_keeps_base_path_and_switches_ws_scheme() {
        let base = url::Url::parse("http://127.0.0.1:8080/api/").ok();
        let u = resolve(base.as_ref(), "/items/1", false).unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/api/items/1");
        let u = resolve(base.as_ref(), "/ping/pong", true).unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:8080/api/ping/pong");
        assert!(resolve(None, "/x", false).is_err());
        assert!(resolve(None, "gopher://x/", false).is_err());
    }
}
