//! `--out influxdb=…` against Debian's InfluxDB 1.x, started here from a temporary config
//! (reporting off, loopback on free ports, data in a temporary directory): points arrive while
//! the run goes, and afterwards their sums equal the report's totals.

use crate::support::{guest, run, target};
use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running influxd, killed on drop.
struct Influx {
    child: Child,
    http: String,
}

impl Drop for Influx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_influx() -> Influx {
    let dir = crate::merge::tempdir().join("influx");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (http, rpc) = (free_port(), free_port());
    let d = dir.display();
    let config = format!(
        "reporting-disabled = true\nbind-address = \"127.0.0.1:{rpc}\"\n\
         [meta]\n  dir = \"{d}/meta\"\n\
         [data]\n  dir = \"{d}/data\"\n  wal-dir = \"{d}/wal\"\n  query-log-enabled = false\n\
         [http]\n  enabled = true\n  bind-address = \"127.0.0.1:{http}\"\n  log-enabled = false\n\
         [monitor]\n  store-enabled = false\n\
         [subscriber]\n  enabled = false\n\
         [continuous_queries]\n  enabled = false\n"
    );
    let file = dir.join("influxdb.conf");
    std::fs::write(&file, config).unwrap();
    let child = Command::new("influxd")
        .arg("-config")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("influxd is missing: scripts/test installs it (bash scripts/install-test-tools)");
    let influx = Influx {
        child,
        http: format!("127.0.0.1:{http}"),
    };
    let started = Instant::now();
    while request(&influx.http, "GET", "/ping").is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "influxd did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    influx
}

/// A raw HTTP/1.0 request; the response body, or None when the server is not there.
fn request(addr: &str, method: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// The single number a query returns (0 when it returns no series).
fn query_number(addr: &str, q: &str) -> f64 {
    let q: String = url::form_urlencoded::byte_serialize(q.as_bytes()).collect();
    let body = request(addr, "GET", &format!("/query?db=chaperon&q={q}")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    json["results"][0]["series"][0]["values"][0][1]
        .as_f64()
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_stream_during_the_run_and_add_up_to_the_report() {
    let influx = start_influx();
    let q: String = url::form_urlencoded::byte_serialize(b"CREATE DATABASE chaperon").collect();
    assert!(request(&influx.http, "POST", &format!("/query?q={q}")).is_some());
    let server = target(Default::default());
    let args = RunArgs {
        target: guest("evil"),
        base_url: Some(server.base_url()),
        config: vec!["evil.mode=get".into(), "evil.path=/x".into()],
        rate: Some(30.0),
        duration: Some("4s".into()),
        out: vec![format!("influxdb=http://{}/chaperon", influx.http)],
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    let plan = RunPlan::from_args(&args).unwrap();
    let addr = influx.http.clone();
    let during = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(3_000));
        query_number(&addr, "SELECT count(requests) FROM chaperon_run")
    });
    let report = run(&plan).await.report;
    let points_during = during.await.unwrap();
    assert!(
        points_during >= 2.0,
        "points arrived while running: {points_during}"
    );
    let counted = query_number(
        &influx.http,
        "SELECT sum(\"count\") FROM chaperon_metric WHERE metric = 'http GET /x'",
    );
    assert_eq!(counted as u64, report.metrics["http GET /x"].count);
    assert_eq!(counted as u64, 120);
    let requests = query_number(&influx.http, "SELECT sum(requests) FROM chaperon_run");
    let series: u64 = report.timeseries.buckets.iter().map(|b| b.requests).sum();
    assert_eq!(requests as u64, series);
}
