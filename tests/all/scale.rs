//! Many sessions waiting at once hold no threads.

use crate::merge::tempdir;
use crate::support::{bin, guest, root};
use chaperon_host::report::Report;

fn threads_of(pid: u32) -> Option<usize> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn two_thousand_sessions_in_delay_hold_no_threads() {
    let _machine = crate::support::heavy_blocking();
    let report = tempdir().join("delay.json");
    let mut child = std::process::Command::new(bin())
        .args([
            "run",
            guest("evil").to_str().unwrap(),
            "--sessions",
            "2000",
            "--config",
            "evil.mode=delay",
            "--config",
            "evil.delay_ms=3000",
            "--quiet",
            "--out",
            &format!("json={}", report.display()),
        ])
        .current_dir(root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut max_threads = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(n) = threads_of(child.id()) {
            max_threads = max_threads.max(n);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let r = Report::read_json(&report).unwrap();
    assert_eq!(r.sessions.ended.get("completed"), Some(&2000));
    assert!(
        r.duration_secs < 30.0,
        "sessions waited one after another: {}",
        r.duration_secs
    );
    assert!(
        max_threads <= workers + 8,
        "{max_threads} threads with {workers} workers"
    );
}
