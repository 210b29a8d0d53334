//! `merge` of two half-runs equals the whole run.

use crate::support::{bin, guest, host};
use chaperon_host::report::Report;

fn run_to(file: &std::path::Path, sessions: u32, offset: u32) {
    let out = format!("json={}", file.display());
    let (code, stdout, stderr) = host(&[
        "run",
        guest("evil").to_str().unwrap(),
        "--sessions",
        &sessions.to_string(),
        "--config",
        "evil.mode=record",
        "--config",
        &format!("evil.offset={offset}"),
        "--quiet",
        "--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
}

#[test]
fn merging_two_half_runs_equals_the_whole_run() {
    let _ = bin();
    let dir = tempdir();
    let (a, b, whole, merged) = (
        dir.join("a.json"),
        dir.join("b.json"),
        dir.join("whole.json"),
        dir.join("merged.json"),
    );
    run_to(&a, 50, 0);
    run_to(&b, 50, 50);
    run_to(&whole, 100, 0);
    let out = format!("json={}", merged.display());
    let (code, _, stderr) = host(&[
        "merge",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out",
        &out,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let whole = Report::read_json(&whole).unwrap();
    let merged = Report::read_json(&merged).unwrap();
    assert_eq!(merged.sessions.started, whole.sessions.started);
    let (m, w) = (&merged.metrics["value"], &whole.metrics["value"]);
    assert_eq!(m.count, w.count);
    assert_eq!(m.count, 100);
    assert_eq!((m.min, m.max), (w.min, w.max));
    assert_eq!(m.p99, w.p99, "values 0..100 recorded exactly in both");
}

/// A fresh directory under the target dir (kept for inspection after a failure).
pub fn tempdir() -> std::path::PathBuf {
    let dir = crate::support::root().join("target/test-tmp").join(format!(
        "{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
