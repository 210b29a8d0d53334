//! A session's cookie jar, kept per origin with RFC 6265 domain, path and expiry semantics (by
//! the `cookie_store` crate), as browsers and k6 do: a cookie set by one host is never sent to
//! another. HTTP requests and WebSocket handshakes of a session share one jar.

use std::sync::{Arc, Mutex, MutexGuard};

/// One session's jar. Clones share it (the session's HTTP and WebSocket contexts);
/// [`Cookies::snapshot`] makes an independent copy (for an async child or a nested run).
#[derive(Clone, Default)]
pub struct Cookies(Arc<Mutex<cookie_store::CookieStore>>);

impl Cookies {
    fn lock(&self) -> MutexGuard<'_, cookie_store::CookieStore> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The `cookie` header value for a request to `url`, if any cookie matches.
    pub fn header_for(&self, url: &url::Url) -> Option<String> {
        let url = http_url(url);
        let jar = self.lock();
        let mut out = String::new();
        for (name, value) in jar.get_request_values(&url) {
            if !out.is_empty() {
                out.push_str("; ");
            }
            out.push_str(name);
            out.push('=');
            out.push_str(value);
        }
        (!out.is_empty()).then_some(out)
    }

    /// Stores the `set-cookie` values of a response from `url` (invalid ones are ignored, as a
    /// browser would).
    pub fn store<'a>(&self, url: &url::Url, set_cookies: impl Iterator<Item = &'a str>) {
        let url = http_url(url);
        let mut jar = self.lock();
        for raw in set_cookies {
            let _ = jar.parse(raw, &url);
        }
    }

    /// An independent copy of the jar.
    pub fn snapshot(&self) -> Cookies {
        Cookies(Arc::new(Mutex::new(self.lock().clone())))
    }

    /// Replaces this jar's content with `other`'s (a nested run's cookies replace the caller's).
    pub fn replace_with(&self, other: &Cookies) {
        let copy = other.lock().clone();
        *self.lock() = copy;
    }
}

/// Cookies are scoped by host and path, not scheme: a ws URL is looked up as its http twin
/// (wss as https, so `Secure` cookies go only over TLS).
fn http_url(url: &url::Url) -> std::borrow::Cow<'_, url::Url> {
    let scheme = match url.scheme() {
        "ws" => "http",
        "wss" => "https",
        _ => return std::borrow::Cow::Borrowed(url),
    };
    let mut u = url.clone();
    let _ = u.set_scheme(scheme);
    std::borrow::Cow::Owned(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn cookies_stay_with_their_origin_and_path() {
        let jar = Cookies::default();
        let a = url("http://127.0.0.1:1/login");
        jar.store(&a, ["sid=1; Path=/", "scoped=2; Path=/api"].into_iter());
        assert_eq!(
            jar.header_for(&url("http://127.0.0.1:1/x")).unwrap(),
            "sid=1"
        );
        let api = jar.header_for(&url("ws://127.0.0.1:1/api/ws")).unwrap();
        assert!(api.contains("sid=1") && api.contains("scoped=2"), "{api}");
        assert_eq!(jar.header_for(&url("http://localhost:1/x")), None);
        jar.store(&a, ["sid=; Max-Age=0; Path=/"].into_iter());
        assert_eq!(jar.header_for(&url("http://127.0.0.1:1/x")), None);
    }

    #[test]
    fn snapshot_is_independent() {
        let jar = Cookies::default();
        let u = url("http://127.0.0.1:1/");
        jar.store(&u, ["a=1"].into_iter());
        let copy = jar.snapshot();
        copy.store(&u, ["a=2"].into_iter());
        assert_eq!(jar.header_for(&u).unwrap(), "a=1");
        jar.replace_with(&copy);
        assert_eq!(jar.header_for(&u).unwrap(), "a=2");
    }
}
