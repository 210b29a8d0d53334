//! An InfluxDB 1.x server that points are written to (`--out influxdb=http://HOST:PORT/DB`):
//! plain HTTP POSTs of line protocol to `/write?db=DB&precision=ms`. The run streams its time
//! series here (run/influx.rs formats the points).

use http_body_util::{BodyExt, Full};
use std::time::Duration;

/// How long one write may take before it is given up (the run never waits for it).
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the points go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InfluxTarget {
    /// `host:port` of the server.
    pub authority: String,
    pub db: String,
}

impl InfluxTarget {
    /// `http://HOST:PORT/DB`.
    pub fn parse(spec: &str) -> Result<InfluxTarget, String> {
        let bad = |why: &str| {
            format!(
                "--out influxdb={spec}: {why} (e.g. --out influxdb=http://127.0.0.1:8086/chaperon)"
            )
        };
        let url = url::Url::parse(spec).map_err(|e| bad(&e.to_string()))?;
        if url.scheme() != "http" {
            return Err(bad("the scheme must be http"));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let db = url.path().trim_matches('/');
        if db.is_empty() || db.contains('/') {
            return Err(bad("the path must be the database name"));
        }
        let port = url.port().unwrap_or(8086);
        Ok(InfluxTarget {
            authority: format!("{host}:{port}"),
            db: db.to_owned(),
        })
    }

    /// Posts `body`; the error names the server and what it said.
    pub async fn write(&self, body: String) -> Result<(), String> {
        tokio::time::timeout(WRITE_TIMEOUT, self.post(body))
            .await
            .map_err(|_| format!("InfluxDB at {} did not answer in time", self.authority))?
    }

    async fn post(&self, body: String) -> Result<(), String> {
        let fail = |e: &dyn std::fmt::Display| format!("InfluxDB at {}: {e}", self.authority);
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| fail(&e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| fail(&e))?;
        tokio::spawn(conn);
        let request = http::Request::post(format!("/write?db={}&precision=ms", self.db))
            .header(http::header::HOST, &self.authority)
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| fail(&e))?;
        let response = sender.send_request(request).await.map_err(|e| fail(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(fail(&format!("{status}: {}", text.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_name_their_server_and_database() {
        let t = InfluxTarget::parse("http://127.0.0.1:9999/load").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.db.as_str()),
            ("127.0.0.1:9999", "load")
        );
        assert!(InfluxTarget::parse("http://127.0.0.1:9999/").is_err());
        assert!(InfluxTarget::parse("https://h/db").is_err());
    }
}
