//! The one checkpoint every outbound connection passes, HTTP and WebSocket alike: the policy's
//! URL check before DNS, resolution, the policy's address check on every resolved address,
//! then TCP and TLS, each phase timed and bounded by the connect timeout.

use super::NetConfig;
use super::stream::{ByteCounters, Inner, NetStream};
use crate::outcome::io_error_to_request_error;
use crate::util::micros_since_u32;
use crate::wit::RequestError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Where a connection goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// The origin of an http(s) or ws(s) URL.
    pub fn of(url: &url::Url) -> Result<Origin, RequestError> {
        let host = url
            .host_str()
            .ok_or_else(|| RequestError::Invalid(format!("{url} has no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| RequestError::Invalid(format!("{url} has no port")))?;
        Ok(Origin {
            tls: is_tls(url),
            host: bare_host(host).to_owned(),
            port,
        })
    }

    /// Whether a connection to this origin serves `url` (compared in place: a request on a
    /// kept-alive connection allocates no origin).
    pub fn serves(&self, url: &url::Url) -> bool {
        self.port == url.port_or_known_default().unwrap_or(0)
            && self.tls == is_tls(url)
            && url.host_str().map(bare_host) == Some(self.host.as_str())
    }
}

fn is_tls(url: &url::Url) -> bool {
    matches!(url.scheme(), "https" | "wss")
}

/// An IPv6 host without its brackets.
fn bare_host(host: &str) -> &str {
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Time spent in each connection phase, µs (0 = the phase did not happen).
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectTimings {
    pub dns_us: u32,
    pub connect_us: u32,
    pub tls_us: u32,
}

/// Connects to `url`'s origin within `timeout` (DNS + TCP + TLS together), after the policy
/// allowed the URL and each address. The timeout starts once the run's connect gate lets
/// the connect proceed.
pub async fn connect(
    net: &NetConfig,
    url: &url::Url,
    timeout: Duration,
) -> Result<(NetStream, ConnectTimings), RequestError> {
    net.policy.check_url(url)?;
    let origin = Origin::of(url)?;
    let _slot = net.gate.enter().await;
    match tokio::time::timeout(timeout, phases(net, &origin)).await {
        Ok(r) => r,
        Err(_) => Err(RequestError::ConnectTimeout),
    }
}

async fn phases(
    net: &NetConfig,
    origin: &Origin,
) -> Result<(NetStream, ConnectTimings), RequestError> {
    // A phase that happened takes at least 1 µs, so 0 always means "did not happen".
    let mut t = ConnectTimings::default();
    let addrs: Vec<SocketAddr> = match origin.host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => {
            let start = Instant::now();
            let found = net
                .resolver
                .lookup(&origin.host, origin.port)
                .await
                .map_err(|e| RequestError::Dns(format!("{}: {e}", origin.host)))?;
            t.dns_us = micros_since_u32(start).max(1);
            found
        }
    };
    // Only addresses the policy allows are dialed; none allowed is the first refusal.
    let mut refused = None;
    let addrs: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| match net.policy.check_addr(&origin.host, *a) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        })
        .collect();
    if addrs.is_empty()
        && let Some(e) = refused
    {
        return Err(e);
    }
    let start = Instant::now();
    let tcp = connect_any(&addrs, &origin.host).await?;
    let _ = tcp.set_nodelay(true);
    t.connect_us = micros_since_u32(start).max(1);
    let counters = Arc::new(ByteCounters::default());
    if !origin.tls {
        let inner = Inner::Plain(tcp);
        return Ok((NetStream { inner, counters }, t));
    }
    let start = Instant::now();
    let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
        .map_err(|e| RequestError::Invalid(format!("{}: {e}", origin.host)))?;
    let stream = tokio_rustls::TlsConnector::from(net.tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| RequestError::Tls(e.to_string()))?;
    t.tls_us = micros_since_u32(start).max(1);
    let inner = Inner::Tls(Box::new(stream));
    Ok((NetStream { inner, counters }, t))
}

async fn connect_any(addrs: &[SocketAddr], host: &str) -> Result<TcpStream, RequestError> {
    let mut last = RequestError::Dns(format!("{host}: no addresses"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = io_error_to_request_error(&e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).expect("a valid test URL")
    }

    #[test]
    fn an_origin_serves_urls_of_its_scheme_host_and_port_only() {
        let origin = Origin::of(&url("http://127.0.0.1:8080/a")).expect("origin");
        assert!(origin.serves(&url("http://127.0.0.1:8080/b?q=1")));
        assert!(!origin.serves(&url("https://127.0.0.1:8080/b")), "scheme");
        assert!(!origin.serves(&url("http://127.0.0.1:8081/b")), "port");
        assert!(!origin.serves(&url("http://localhost:8080/b")), "host");
        let v6 = Origin::of(&url("http://[::1]/")).expect("origin");
        assert_eq!(v6.host, "::1");
        assert!(
            v6.serves(&url("http://[::1]:80/x")),
            "the scheme's default port"
        );
    }
}
