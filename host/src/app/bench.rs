//! `chaperon-host bench`: start rate, host-call cost and memory per idle WebSocket session,
//! printed as a table. Measurements, not tests: these machines are shared and noisy.
//!
//! The target runs in a separate process (`chaperon-host target`) on loopback so its sockets and
//! memory are not counted as ours. The open-files limit is raised to the hard limit first; when a
//! kernel limit caps a count, the figure is measured at the count that fits and the limit named.

use crate::cli::{BenchArgs, RunArgs};
use crate::plan::RunPlan;
use crate::run::{self, RunOptions, RunOutcome, Stop};
use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// One row of the result table.
struct Row {
    what: String,
    figure: String,
    goal: &'static str,
}

/// Runs the benchmark and prints the table; exit code 0, or 1 when it could not run.
pub async fn run(args: &BenchArgs) -> i32 {
    match bench(args).await {
        Ok(rows) => {
            if !rows.is_empty() {
                print_table(&rows);
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// One memory measurement in this (fresh) process, printed as a `memory` line for the parent.
async fn memory_only(args: &BenchArgs, n: u32, url: &str) -> Result<(), String> {
    let (rss, _) = memory_per_session(&args.idle_component, n, url, false).await?;
    let (rss_ws, private_ws) = memory_per_session(&args.ws_component, n, url, true).await?;
    println!("memory {rss:.1} {rss_ws:.1} {private_ws:.1}");
    Ok(())
}

/// Runs `memory_only` in a child process, so memory freed by earlier runs cannot hide growth.
fn memory_in_child(args: &BenchArgs, n: u32, url: &str) -> Result<[f64; 3], String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg("--idle-component")
        .arg(&args.idle_component)
        .arg("--ws-component")
        .arg(&args.ws_component)
        .args(["--memory-only", &n.to_string(), "--target-url", url])
        .output()
        .map_err(|e| format!("cannot run the memory probe: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = text
        .lines()
        .find_map(|l| l.strip_prefix("memory "))
        .map(|l| {
            l.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    match figures[..] {
        [a, b, c] => Ok([a, b, c]),
        _ => Err(format!(
            "the memory probe at {n} sessions failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

async fn bench(args: &BenchArgs) -> Result<Vec<Row>, String> {
    if let (Some(n), Some(url)) = (args.memory_only, &args.target_url) {
        memory_only(args, n, url).await?;
        return Ok(Vec::new());
    }
    let sys = crate::plan::limits::SystemLimits::probe();
    eprintln!(
        "open-files limit {}, vm.max_map_count {}",
        sys.open_files,
        sys.max_map_count
            .map_or("unknown".into(), |m| m.to_string())
    );
    let target = TargetProcess::start()?;
    let mut rows = Vec::new();
    let idle = &args.idle_component;
    let rate = start_rate(idle, args.starts, None).await?;
    rows.push(Row {
        what: format!("session starts/s, idle host ({} sessions)", args.starts),
        figure: format!("{rate:.0}"),
        goal: ">= 50000",
    });
    let background = background_count(&sys, 10_000);
    let rate = start_rate(idle, args.starts, Some(background)).await?;
    rows.push(Row {
        what: format!("session starts/s while {background} sessions run"),
        figure: format!("{rate:.0}"),
        goal: "",
    });
    let ns = host_call_ns(idle).await?;
    rows.push(Row {
        what: "host call (session.random), ns".into(),
        figure: format!("{ns:.0}"),
        goal: "<= 100",
    });
    for &n in &args.sessions {
        let n = n.min(socket_cap(&sys));
        let [rss, rss_ws, private_ws] = memory_in_child(args, n, &target.base_url)?;
        rows.push(Row {
            what: format!("RSS per idle session (no connection) at {n}, KiB"),
            figure: format!("{rss:.1}"),
            goal: "",
        });
        rows.push(Row {
            what: format!("RSS per idle WebSocket session at {n}, KiB"),
            figure: format!("{rss_ws:.1}"),
            goal: "<= 64",
        });
        rows.push(Row {
            what: format!("private memory per idle WebSocket session at {n}, KiB"),
            figure: format!("{private_ws:.1}"),
            goal: "<= 64",
        });
    }
    Ok(rows)
}

/// Sessions the map count allows next to a measuring run; names the sysctl when capped.
fn background_count(sys: &crate::plan::limits::SystemLimits, wanted: u32) -> u32 {
    let fits = sys
        .max_instances()
        .map_or(u64::from(wanted), |m| m.saturating_sub(2_000));
    let n = u32::try_from(fits.min(u64::from(wanted))).unwrap_or(wanted);
    if n < wanted {
        eprintln!(
            "note: vm.max_map_count caps the background run at {n} sessions; raise it with `sysctl -w vm.max_map_count={}` to measure {wanted}",
            u64::from(wanted + 2_000) * 6 + 256
        );
    }
    n
}

/// Sessions with one socket each the fd limit allows (our side; the target has its own).
fn socket_cap(sys: &crate::plan::limits::SystemLimits) -> u32 {
    u32::try_from(sys.max_socket_sessions(1)).unwrap_or(u32::MAX)
}

fn plan(
    component: &Path,
    sessions: u32,
    config: &[String],
    base_url: Option<&str>,
) -> Result<RunPlan, String> {
    let args = RunArgs {
        target: component.to_path_buf(),
        sessions: Some(sessions),
        base_url: base_url.map(str::to_owned),
        config: config.to_vec(),
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    RunPlan::from_args(&args).map_err(|e| e.to_string())
}

async fn run_quiet(plan: &RunPlan, stop: watch::Receiver<Stop>) -> Result<RunOutcome, String> {
    let options = RunOptions {
        stop,
        progress: false,
    };
    run::run(plan, options).await.map_err(|e| e.to_string())
}

/// Sessions per second for `starts` short sessions, optionally next to `background` sessions
/// waiting in a delay.
async fn start_rate(component: &Path, starts: u32, background: Option<u32>) -> Result<f64, String> {
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let mut bg = None;
    if let Some(n) = background {
        let p = plan(
            component,
            n,
            &["evil.mode=delay".into(), "evil.delay_ms=120000".into()],
            None,
        )?;
        let rx = stop_rx.clone();
        bg = Some(tokio::spawn(async move { run_quiet(&p, rx).await }));
        wait_for_instances(n).await;
    }
    let mut p = plan(component, starts, &["evil.mode=ok".into()], None)?;
    p.limits.max_concurrent = 1_000;
    let (_keep, rx) = watch::channel(Stop::Running);
    let outcome = run_quiet(&p, rx).await?;
    let _ = stop_tx.send(Stop::Now);
    if let Some(bg) = bg {
        let _ = bg.await;
    }
    let done = outcome
        .report
        .sessions
        .ended
        .get("completed")
        .copied()
        .unwrap_or(0);
    Ok(done as f64 / outcome.report.duration_secs.max(1e-9))
}

/// Waits until roughly `n` more instances are alive, judged by this process's memory maps
/// (each instance maps its memory and stack), for at most 60 s.
async fn wait_for_instances(n: u32) {
    let base = count_maps();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_maps() < base + u64::from(n) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn count_maps() -> u64 {
    std::fs::read_to_string("/proc/self/maps").map_or(0, |m| m.lines().count() as u64)
}

/// Nanoseconds per cheap host call: one session making a million calls, minus one making none.
async fn host_call_ns(component: &Path) -> Result<f64, String> {
    const CALLS: u32 = 2_000_000;
    let time = |n: u32| async move {
        let p = plan(
            component,
            1,
            &["evil.mode=calls".into(), format!("evil.n={n}")],
            None,
        )?;
        let (_keep, rx) = watch::channel(Stop::Running);
        let start = Instant::now();
        let o = run_quiet(&p, rx).await?;
        if !o.all_completed() {
            return Err(format!(
                "the host-call guest did not complete:\n{}",
                o.report.summary_table()
            ));
        }
        Ok::<f64, String>(start.elapsed().as_secs_f64())
    };
    let base = time(0).await?;
    let full = time(CALLS).await?;
    Ok((full - base).max(0.0) * 1e9 / f64::from(CALLS))
}

/// (RSS KiB, private KiB) per session idle in a delay, holding an open WebSocket when `ws`.
async fn memory_per_session(
    component: &Path,
    n: u32,
    base_url: &str,
    ws: bool,
) -> Result<(f64, f64), String> {
    let (rss0, private0) = (rss_kib(), private_kib());
    let (fds0, maps0) = (count_fds(), count_maps());
    let mode = if ws {
        "evil.mode=ws_hold"
    } else {
        "evil.mode=delay"
    };
    let p = plan(
        component,
        n,
        &[mode.into(), "evil.delay_ms=120000".into()],
        Some(base_url),
    )?;
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let run = tokio::spawn(async move { run_quiet(&p, stop_rx).await });
    let ready = || {
        if ws {
            count_fds() >= fds0 + u64::from(n)
        } else {
            count_maps() >= maps0 + u64::from(n)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !ready() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all_up = ready();
    let (rss1, private1) = (rss_kib(), private_kib());
    let _ = stop_tx.send(Stop::Now);
    let _ = run.await;
    if !all_up {
        return Err(format!("only part of {n} sessions started within 120 s"));
    }
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(n);
    Ok((per(rss0, rss1), per(private0, private1)))
}

fn rss_kib() -> u64 {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .unwrap_or(0);
    pages * 4
}

/// Private (anonymous + private file) memory from smaps_rollup: what sessions really add, as
/// opposed to shared code pages.
fn private_kib() -> u64 {
    let text = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("Private_Clean:") || l.starts_with("Private_Dirty:"))
        .filter_map(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<u64>().ok())
        })
        .sum()
}

fn count_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The demo target in a child process on a free loopback port; killed on drop.
struct TargetProcess {
    child: std::process::Child,
    base_url: String,
}

impl TargetProcess {
    fn start() -> Result<TargetProcess, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = std::process::Command::new(exe)
            .args(["target", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the target process: {e}"))?;
        let stdout = child.stdout.take().ok_or("the target has no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let base_url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| format!("unexpected target output: {line}"))?
            .to_owned();
        Ok(TargetProcess { child, base_url })
    }
}

impl Drop for TargetProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.what.len()).max().unwrap_or(10);
    println!("{:<w$}  {:>10}  goal", "measure", "figure");
    for r in rows {
        println!("{:<w$}  {:>10}  {}", r.what, r.figure, r.goal);
    }
}
