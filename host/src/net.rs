//! Opening connections to targets: DNS, TCP, TLS, each phase timed and bounded.
//!
//! HTTP and WebSocket share this, so both report the same phases and classify failures the same
//! way (`request-error`).

use crate::bindings::RequestError;
use crate::outcome::io_error_to_request_error;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

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
        let tls = matches!(url.scheme(), "https" | "wss");
        let host = url
            .host_str()
            .ok_or_else(|| RequestError::Invalid(format!("{url} has no host")))?;
        let port = url
            .port_or_known_default()
            .ok_or_else(|| RequestError::Invalid(format!("{url} has no port")))?;
        Ok(Origin {
            tls,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
        })
    }
}

/// Time spent in each connection phase, µs.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectTimings {
    pub dns_us: u32,
    pub connect_us: u32,
    pub tls_us: u32,
}

/// Bytes moved over one connection, read by the request that used it.
#[derive(Debug, Default)]
pub struct ByteCounters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
}

/// A plain or TLS stream that counts bytes.
pub struct NetStream {
    inner: Inner,
    counters: Arc<ByteCounters>,
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl NetStream {
    /// The stream's byte counters.
    pub fn counters(&self) -> Arc<ByteCounters> {
        self.counters.clone()
    }
}

/// Microseconds since `start`, saturating at u32::MAX (71 minutes).
pub fn micros_since(start: Instant) -> u32 {
    u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX)
}

/// Connects to `origin` within `timeout` (DNS + TCP + TLS together).
pub async fn connect(
    origin: &Origin,
    tls: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<(NetStream, ConnectTimings), RequestError> {
    match tokio::time::timeout(timeout, connect_phases(origin, tls)).await {
        Ok(r) => r,
        Err(_) => Err(RequestError::ConnectTimeout),
    }
}

async fn connect_phases(
    origin: &Origin,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(NetStream, ConnectTimings), RequestError> {
    // A phase that happened takes at least 1 µs, so 0 always means "did not happen".
    let mut t = ConnectTimings::default();
    let addrs: Vec<std::net::SocketAddr> = match origin.host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![std::net::SocketAddr::new(ip, origin.port)],
        Err(_) => {
            let start = Instant::now();
            let found = tokio::net::lookup_host((origin.host.as_str(), origin.port))
                .await
                .map_err(|e| RequestError::Dns(format!("{}: {e}", origin.host)))?
                .collect();
            t.dns_us = micros_since(start).max(1);
            found
        }
    };
    let start = Instant::now();
    let tcp = connect_any(&addrs, &origin.host).await?;
    let _ = tcp.set_nodelay(true);
    t.connect_us = micros_since(start).max(1);
    let counters = Arc::new(ByteCounters::default());
    if !origin.tls {
        let inner = Inner::Plain(tcp);
        return Ok((NetStream { inner, counters }, t));
    }
    let start = Instant::now();
    let name = rustls::pki_types::ServerName::try_from(origin.host.clone())
        .map_err(|e| RequestError::Invalid(format!("{}: {e}", origin.host)))?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| RequestError::Tls(e.to_string()))?;
    t.tls_us = micros_since(start).max(1);
    let inner = Inner::Tls(Box::new(stream));
    Ok((NetStream { inner, counters }, t))
}

async fn connect_any(
    addrs: &[std::net::SocketAddr],
    host: &str,
) -> Result<TcpStream, RequestError> {
    let mut last = RequestError::Dns(format!("{host}: no addresses"));
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = io_error_to_request_error(&e),
        }
    }
    Err(last)
}

/// The TLS client config of a run: webpki roots plus the load test's CA file, or no
/// verification at all when `insecure_skip_verify` is set. Both speak HTTP/1.1 only.
pub fn tls_config(
    settings: &crate::loadtest::TlsSection,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?;
    let mut config = if settings.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(settings.ca_file.as_deref())?)
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn roots(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots =
        rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let err = |e: String| format!("[tls] ca_file {}: {e}", path.display());
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| err(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(e.to_string()))?;
        if certs.is_empty() {
            return Err(err("no PEM certificates in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(roots)
}

/// `insecure_skip_verify`: trusts any certificate, but still checks that the server holds the
/// key of the certificate it sent (handshake signatures).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        };
        let n = buf.filled().len() - before;
        this.counters
            .received
            .fetch_add(n as u64, Ordering::Relaxed);
        r
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = &mut *self;
        let r = match &mut this.inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = &r {
            this.counters.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
