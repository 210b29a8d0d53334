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

/// Runs one measurement of `component` in a fresh process of this binary (`--measure WHAT`)
/// and reads back its `figure` line, so no measurement runs in a process an earlier one warmed
/// or fragmented.
fn measure_in_child(args: &BenchArgs, what: &str, component: &Path) -> Result<Vec<f64>, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg("--idle-component")
        .arg(&args.idle_component)
        .arg("--start-components")
        .arg(component)
        .arg("--starts")
        .arg(args.starts.to_string())
        .args(["--measure", what])
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run the `{what}` measurement: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("figure "))
        .and_then(|v| v.split_whitespace().map(|f| f.parse().ok()).collect())
        .ok_or_else(|| format!("the `{what}` measurement failed ({})", out.status))
}

/// `repeat` fresh-process measurements: per figure the measurement prints, its
/// "min / median / max".
fn measure_repeated(args: &BenchArgs, what: &str, component: &Path) -> Result<Vec<String>, String> {
    let runs = (0..args.repeat.max(1))
        .map(|_| measure_in_child(args, what, component))
        .collect::<Result<Vec<Vec<f64>>, String>>()?;
    let width = runs.iter().map(Vec::len).min().unwrap_or(0);
    Ok((0..width)
        .map(|i| {
            let mut of_i: Vec<f64> = runs.iter().map(|r| r[i]).collect();
            of_i.sort_by(f64::total_cmp);
            let at = |j: usize| of_i.get(j).copied().unwrap_or(0.0);
            let digits = if at(0) < 100.0 { 1 } else { 0 };
            format!(
                "{:.digits$} / {:.digits$} / {:.digits$}",
                at(0),
                at(of_i.len() / 2),
                at(of_i.len().saturating_sub(1))
            )
        })
        .collect())
}

/// The measurement `what`, in this process; prints `figure VALUE`.
async fn measure_here(args: &BenchArgs, what: &str) -> Result<(), String> {
    let idle = &args.idle_component;
    let starting = args
        .start_components
        .first()
        .ok_or("no --start-components given")?;
    let figures = match what {
        "starts" => start_rate(starting, idle, args.starts, None).await?,
        "starts-loaded" => {
            let sys = crate::plan::limits::SystemLimits::probe();
            let background = Some(background_count(&sys, 10_000));
            start_rate(starting, idle, args.starts, background).await?
        }
        "host-call" => vec![host_call_ns(idle).await?],
        other => return Err(format!("unknown measurement `{other}`")),
    };
    let figures: Vec<String> = figures.iter().map(f64::to_string).collect();
    println!("figure {}", figures.join(" "));
    Ok(())
}

async fn bench(args: &BenchArgs) -> Result<Vec<Row>, String> {
    if let Some(what) = &args.measure {
        measure_here(args, what).await?;
        return Ok(Vec::new());
    }
    let sys = crate::plan::limits::SystemLimits::probe();
    eprintln!(
        "open-files limit {}, vm.max_map_count {}; start rates and the host call: min / median / max of {} fresh processes",
        sys.open_files,
        sys.max_map_count
            .map_or("unknown".into(), |m| m.to_string()),
        args.repeat.max(1)
    );
    let target = TargetProcess::start()?;
    let mut rows = Vec::new();
    let background = background_count(&sys, 10_000);
    for component in &args.start_components {
        let name = stem(component);
        let loads = [
            ("starts", "idle host".to_owned()),
            ("starts-loaded", format!("while {background} sessions run")),
        ];
        for (what, load) in loads {
            let mut figures = measure_repeated(args, what, component)?.into_iter();
            rows.push(Row {
                what: format!("session starts/s ({name}), {load}"),
                figure: figures.next().unwrap_or_default(),
                goal: ">= 50000",
            });
            rows.push(Row {
                what: format!("CPU µs per session start ({name}), {load}"),
                figure: figures.next().unwrap_or_default(),
                goal: "",
            });
        }
    }
    rows.push(Row {
        what: "host call (session.random), ns".into(),
        figure: measure_repeated(args, "host-call", &args.idle_component)?
            .into_iter()
            .next()
            .unwrap_or_default(),
        goal: "<= 100",
    });
    for &n in &args.sessions {
        let n = n.min(socket_cap(&sys));
        let idle = memory_per_session(&args.idle_component, n, &target.base_url, false)?;
        idle.push_rows(
            &mut rows,
            &format!("idle session (no connection) at {n}"),
            "",
        );
        for component in &args.ws_components {
            let ws = memory_per_session(component, n, &target.base_url, true)?;
            let what = format!("idle WebSocket session ({}) at {n}", stem(component));
            ws.push_rows(&mut rows, &what, "<= 64");
        }
    }
    Ok(rows)
}

/// A component's file name without `.wasm`, for row names.
fn stem(component: &Path) -> String {
    component
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
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

/// Sessions per second for `starts` sessions of `component` that end at once, and this
/// process's CPU µs per start meanwhile (all threads; the background idles), optionally next to
/// `background` sessions of `idle` waiting in a delay.
async fn start_rate(
    component: &Path,
    idle: &Path,
    starts: u32,
    background: Option<u32>,
) -> Result<Vec<f64>, String> {
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let mut bg = None;
    if let Some(n) = background {
        let p = plan(
            idle,
            n,
            &["evil.mode=delay".into(), "evil.delay_ms=120000".into()],
            None,
        )?;
        let rx = stop_rx.clone();
        bg = Some(tokio::spawn(async move { run_quiet(&p, rx).await }));
        wait_for_instances(n).await;
    }
    // Each component ignores the other's keys.
    let at_once = ["evil.mode=ok".into(), "get_loop.seconds=0".into()];
    let mut p = plan(component, starts, &at_once, None)?;
    p.limits.max_concurrent = 1_000;
    let (_keep, rx) = watch::channel(Stop::Running);
    let cpu_before = process_cpu_secs();
    let outcome = run_quiet(&p, rx).await?;
    let cpu = process_cpu_secs() - cpu_before;
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
    if done < u64::from(starts) {
        return Err(format!(
            "only {done} of {starts} sessions of {} completed:\n{}",
            component.display(),
            outcome.report.summary_table()
        ));
    }
    let done = done as f64;
    Ok(vec![
        done / outcome.report.duration_secs.max(1e-9),
        cpu * 1e6 / done.max(1.0),
    ])
}

/// This process's user + system CPU time (all threads), in seconds, from /proc/self/stat
/// (in clock ticks of 1/100 s, the Linux ABI's USER_HZ).
fn process_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is the 3rd field overall,
    // utime the 14th and stime the 15th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// Waits until `n` more instances are alive, judged by this process's memory maps (each
/// instance maps its memories, tables and stack, several maps each): at least `n` more and no
/// change for 1 s, for at most 120 s. Measuring while the background still starts would measure
/// the two runs' starts together.
async fn wait_for_instances(n: u32) {
    let base = count_maps();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (base, Instant::now());
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = count_maps();
        if c != last.0 {
            last = (c, Instant::now());
        } else if c >= base + u64::from(n) && last.1.elapsed() >= Duration::from_secs(1) {
            return;
        }
    }
}

fn count_maps() -> u64 {
    count_lines("/proc/self/maps")
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

impl PerSession {
    /// Its two rows: RSS, and private memory (the figure with a goal).
    fn push_rows(&self, rows: &mut Vec<Row>, what: &str, goal: &'static str) {
        rows.push(Row {
            what: format!("RSS per {what}, KiB"),
            figure: format!("{:.1}", self.rss),
            goal: "",
        });
        rows.push(Row {
            what: format!("private memory per {what}, KiB"),
            figure: format!("{:.1}", self.private),
            goal,
        });
    }
}

/// Memory one more idle session costs, in KiB.
struct PerSession {
    rss: f64,
    private: f64,
}

/// Memory per session idle in a delay (holding an open WebSocket when `ws`), read from outside:
/// two `chaperon-host run` processes, with `BASELINE` and with `n` sessions, each sampled from
/// /proc/PID/smaps_rollup once all its sessions are up; the difference over `n - BASELINE`.
fn memory_per_session(
    component: &Path,
    n: u32,
    base_url: &str,
    ws: bool,
) -> Result<PerSession, String> {
    const BASELINE: u32 = 100;
    let n = n.max(BASELINE + 1);
    let small = sample_run(component, BASELINE, base_url, ws)?;
    let big = sample_run(component, n, base_url, ws)?;
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / f64::from(n - BASELINE);
    Ok(PerSession {
        rss: per(small.0, big.0),
        private: per(small.1, big.1),
    })
}

/// Starts `n` idle sessions in a child process and returns its (RSS, private) KiB once they
/// are all up (their maps or sockets exist), then stops it.
fn sample_run(component: &Path, n: u32, base_url: &str, ws: bool) -> Result<(u64, u64), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mode = if ws {
        "evil.mode=ws_hold"
    } else {
        "evil.mode=delay"
    };
    let mut child = std::process::Command::new(exe)
        .arg("run")
        .arg(component)
        .args(["--sessions", &n.to_string(), "--base-url", base_url, "-q"])
        .args(["--config", mode, "--config", "evil.delay_ms=120000"])
        // pingpong holds its connection idle; each component ignores the other's keys.
        .args(["--config", "ping_pong.iterations=1"])
        .args(["--config", "ping_pong.hold_ms=120000"])
        .args(["--log-level", "off"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the memory probe: {e}"))?;
    let proc_dir = format!("/proc/{}", child.id());
    // Up: at least one socket (or memory map) per session, and no more appearing for 1 s.
    let count = || {
        if ws {
            count_entries(&format!("{proc_dir}/fd"))
        } else {
            count_lines(&format!("{proc_dir}/maps"))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (0, Instant::now());
    let all_up = loop {
        std::thread::sleep(Duration::from_millis(200));
        let c = count();
        if c != last.0 {
            last = (c, Instant::now());
        } else if c >= u64::from(n) && last.1.elapsed() >= Duration::from_secs(1) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    let sample = smaps_rollup(&proc_dir);
    let _ = child.kill();
    let _ = child.wait();
    match (all_up, sample) {
        (true, Some(s)) => Ok(s),
        (false, _) => Err(format!("only part of {n} sessions started within 120 s")),
        (_, None) => Err(format!("cannot read {proc_dir}/smaps_rollup")),
    }
}

/// (Rss, Private_Clean + Private_Dirty) of a process, KiB: private is what sessions really
/// add, as opposed to shared code pages.
fn smaps_rollup(proc_dir: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("{proc_dir}/smaps_rollup")).ok()?;
    let field = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    };
    Some((
        field("Rss:"),
        field("Private_Clean:") + field("Private_Dirty:"),
    ))
}

fn count_lines(path: &str) -> u64 {
    std::fs::read_to_string(path).map_or(0, |m| m.lines().count() as u64)
}

fn count_entries(path: &str) -> u64 {
    std::fs::read_dir(path).map_or(0, |d| d.count() as u64)
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
    let w = rows
        .iter()
        .map(|r| r.what.chars().count())
        .max()
        .unwrap_or(10);
    let f = rows.iter().map(|r| r.figure.len()).max().unwrap_or(10);
    println!("{:<w$}  {:>f$}  goal", "measure", "figure");
    for r in rows {
        println!("{:<w$}  {:>f$}  {}", r.what, r.figure, r.goal);
    }
}
