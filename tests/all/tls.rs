//! HTTPS targets: certificates are verified unless the load test trusts a CA file or says
//! `insecure_skip_verify` (no silent downgrade).

use crate::merge::tempdir;
use crate::support::{ended, guest, metric, run};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use std::sync::Arc;

/// A self-signed HTTPS server for `localhost` on 127.0.0.1:0 answering 200 to everything.
/// Returns its port and the certificate (PEM).
async fn https_server() -> (u16, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key_der)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"tls ok")),
                    ))
                });
                let io = hyper_util::rt::TokioIo::new(tls);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    (port, cert.pem())
}

fn plan_with_tls(port: u16, tls: &str) -> RunPlan {
    let dir = tempdir();
    let path = dir.join(format!("tls-{port}-{}.toml", tls.len()));
    let toml = format!(
        "[config]\nbase_url = \"https://localhost:{port}\"\n{tls}\n[[scenario]]\nname = \"get\"\ncomponent = \"{}\"\nsessions = 2\nconfig = {{ evil = {{ mode = \"get\" }} }}\n",
        guest("evil").display()
    );
    std::fs::write(&path, toml).unwrap();
    RunPlan::from_args(&RunArgs {
        target: path,
        quiet: true,
        ..RunArgs::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_a_tls_error() {
    let (port, _) = https_server().await;
    let r = run(&plan_with_tls(port, "")).await.report;
    let get = metric(&r, "http GET /");
    assert_eq!(
        get.errors_by_kind.get("tls"),
        Some(&2),
        "{}",
        r.summary_table()
    );
    assert_eq!(ended(&r, "guest-error"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_ca_file_or_the_insecure_flag_connects() {
    let (port, pem) = https_server().await;
    let ca = tempdir().join(format!("ca-{port}.pem"));
    std::fs::write(&ca, pem).unwrap();
    let with_ca = format!("[tls]\nca_file = \"{}\"\n", ca.display());
    let r = run(&plan_with_tls(port, &with_ca)).await.report;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
    assert_eq!(
        metric(&r, "http phase tls").count,
        2,
        "TLS handshakes are timed"
    );
    let r = run(&plan_with_tls(port, "[tls]\ninsecure_skip_verify = true\n"))
        .await
        .report;
    assert_eq!(ended(&r, "completed"), 2, "{}", r.summary_table());
}
