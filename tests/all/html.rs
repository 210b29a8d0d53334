//! The HTML report: self-contained, well-formed, one chart point per second of the run, the
//! p99 shown equal to the JSON report's; and opened in headless Chromium without console
//! errors (a screenshot is kept in target/test-artifacts/).

use crate::support::{guest, host, root, target};
use chaperon_host::report::Report;
use quick_xml::events::Event;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A 6-second arrival-rate run of http_basic writing JSON and HTML; returns (report, html path).
fn html_run(name: &str) -> (Report, PathBuf) {
    let server = target(Default::default());
    let dir = crate::merge::tempdir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (json, html) = (dir.join("r.json"), dir.join("r.html"));
    let component = guest("http_basic");
    let (code, out, err) = host(&[
        "run",
        component.to_str().unwrap(),
        "--rate",
        "50",
        "--duration",
        "6s",
        "--base-url",
        &server.base_url(),
        "--threshold",
        "http GET /: p(99) < 5s",
        "--out",
        &format!("json={}", json.display()),
        "--out",
        &format!("html={}", html.display()),
        "-q",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    (Report::read_json(&json).unwrap(), html)
}

/// Every element's attributes, in document order: (tag, attributes).
fn elements(path: &Path) -> Vec<(String, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let mut out = Vec::new();
    loop {
        match reader.read_event().expect("the HTML report is well-formed") {
            Event::Eof => break,
            Event::Start(e) | Event::Empty(e) => {
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        let key = String::from_utf8_lossy(a.key.as_ref()).into_owned();
                        (key, a.unescape_value().unwrap().into_owned())
                    })
                    .collect();
                out.push((
                    String::from_utf8_lossy(e.name().as_ref()).into_owned(),
                    attrs,
                ));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn the_html_report_is_self_contained_with_a_point_per_second_and_the_json_p99s() {
    let (report, html) = html_run("html-static");
    let els = elements(&html);
    let seconds = report.timeseries.buckets.len();
    assert!((6..=7).contains(&seconds), "{seconds}");
    let lines: Vec<&BTreeMap<String, String>> = els
        .iter()
        .filter(|(t, _)| t == "polyline")
        .map(|(_, a)| a)
        .collect();
    assert!(
        lines.len() >= 3 + 3,
        "requests, errors, active, and p50/p95/p99 lines"
    );
    for l in &lines {
        assert_eq!(l["data-points"], seconds.to_string(), "{l:?}");
        assert_eq!(l["points"].split(' ').count(), seconds);
    }
    let rows: BTreeMap<&str, u64> = els
        .iter()
        .filter(|(_, a)| a.contains_key("data-metric"))
        .map(|(_, a)| (a["data-metric"].as_str(), a["data-p99"].parse().unwrap()))
        .collect();
    assert_eq!(rows.len(), report.metrics.len());
    for (key, stats) in &report.metrics {
        assert_eq!(rows[key.as_str()], stats.p99, "{key}");
    }
    for (tag, a) in &els {
        for attr in ["src", "href"] {
            if let Some(v) = a.get(attr) {
                panic!("<{tag} {attr}={v:?}>: the report must fetch nothing");
            }
        }
    }
    let text = std::fs::read_to_string(&html).unwrap();
    assert!(
        text.contains("✓ http GET /: p(99) &lt; 5s"),
        "thresholds are shown"
    );
    assert!(text.contains("id=\"distribution\""));
}

#[test]
fn the_html_report_renders_in_headless_chromium_without_console_errors() {
    let chromium = which("chromium")
        .expect("chromium is missing: scripts/test installs it (bash scripts/install-test-tools)");
    let (_, html) = html_run("html-chromium");
    let artifacts = root().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("html-report.png");
    let _ = std::fs::remove_file(&shot);
    let profile = crate::merge::tempdir().join("chromium-profile");
    let url = format!("file://{}", html.display());
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-quic",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,2400",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", shot.display()),
            &url,
        ])
        .output()
        .expect("chromium runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "a screenshot of the rendered report: {size} bytes"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}
