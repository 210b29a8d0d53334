//! The commands behind the binary: each returns an exit code, and every failure is one line.
//!
//! Exit codes: 0 ok (also when the planned end of the test cut sessions, or sessions aborted
//! deliberately), 1 usage/config/load error, 2 a session failed, 99 thresholds failed
//! (reserved), 130 stopped from outside by Ctrl-C, SIGTERM, SIGHUP or SIGQUIT (the report is
//! still written).

pub mod bench;
mod demo;

use crate::cli::{Cli, Command, RunArgs};
use crate::plan::{self, RunPlan};
use crate::report::Report;
use crate::run::{self, RunOptions, Stop};
use tokio::sync::watch;

pub const EXIT_OK: i32 = 0;
pub const EXIT_USAGE: i32 = 1;
pub const EXIT_RUN_FAILED: i32 = 2;
pub const EXIT_THRESHOLDS: i32 = 99;
pub const EXIT_INTERRUPTED: i32 = 130;

/// Runs a parsed command line.
pub async fn main(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(args) => run_command(&args).await,
        Command::Inspect { component } => inspect(&component),
        Command::Merge { reports, out } => merge(&reports, &out),
        Command::Compare {
            old,
            new,
            tolerance,
        } => compare(&old, &new, tolerance),
        Command::Target { listen } => target(&listen).await,
        Command::Demo(args) => demo::run(&args).await,
        Command::Bench(args) => bench::run(&args).await,
    }
}

pub(crate) fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("error: {e}");
    EXIT_USAGE
}

async fn run_command(args: &RunArgs) -> i32 {
    match RunPlan::from_args(args) {
        Ok(plan) => run_plan(&plan).await,
        Err(e) => fail(e),
    }
}

/// Runs a plan with stop-signal handling, prints the summary, writes outputs, picks the exit code:
/// 130 when stopped from outside, 99 when a threshold failed, 2 when a session failed (an `abort` or the planned end of
/// the test is not a failure), else 0.
pub async fn run_plan(plan: &RunPlan) -> i32 {
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    // Installed here, before any session starts: a watcher task could be polled only after
    // the first sessions, and a SIGQUIT or SIGHUP arriving before it would kill the process
    // with its default action, report unwritten.
    let signals = tokio::spawn(watch_stop_signals(StopSignals::install().ok(), stop_tx));
    let options = RunOptions {
        stop: stop_rx,
        progress: plan.progress,
    };
    let outcome = run::run(plan, options).await;
    signals.abort();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    println!("{}", outcome.report.summary_table());
    if let Err(e) = run::write_outputs(&outcome.report, &plan.outputs) {
        return fail(e);
    }
    if outcome.interrupted {
        EXIT_INTERRUPTED
    } else if outcome.thresholds_failed() {
        EXIT_THRESHOLDS
    } else if outcome.no_failures() {
        EXIT_OK
    } else {
        EXIT_RUN_FAILED
    }
}

/// First stop signal (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT): graceful stop; second: stop now.
/// Either way the summary and the report are still written.
async fn watch_stop_signals(signals: Option<StopSignals>, stop: watch::Sender<Stop>) {
    let Some(mut signals) = signals else {
        return;
    };
    for level in [Stop::Graceful, Stop::Now] {
        let name = signals.next().await;
        eprintln!(
            "{}",
            match level {
                Stop::Graceful => format!(
                    "{name}: stopping: no new sessions; running ones may finish (send it again, or Ctrl-C, to stop now)"
                ),
                _ => format!("{name}: stopping now; writing the report"),
            }
        );
        let _ = stop.send(level);
    }
}

/// The signals that ask a run to stop, installed once so a second one is never missed.
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    quit: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
            hup: signal(SignalKind::hangup())?,
            quit: signal(SignalKind::quit())?,
        })
    }

    /// Waits for the next one; returns its name.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "Ctrl-C",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
            _ = self.quit.recv() => "SIGQUIT",
        }
    }
}

fn inspect(path: &std::path::Path) -> i32 {
    match crate::sandbox::loader::preflight(path) {
        Ok(p) => {
            println!("{}: a chaperon scenario component", p.path.display());
            println!("  sha256: {}", p.sha256);
            println!("  size: {} bytes", p.bytes.len());
            if let Some(t) = crate::sandbox::loader::toolchain(&p) {
                println!("  toolchain: {t}");
            }
            println!(
                "  per instance: {} core instances, {} memories, {} tables",
                p.shape.core_instances, p.shape.memories, p.shape.tables
            );
            println!("  exports: {}", p.exports.join(", "));
            println!("  imports:");
            for i in &p.imports {
                println!("    {i}");
            }
            if !p.producers.is_empty() {
                println!("  built with:");
                for t in &p.producers {
                    println!("    {t}");
                }
            }
            EXIT_OK
        }
        Err(e) => fail(e),
    }
}

fn merge(paths: &[std::path::PathBuf], out: &[String]) -> i32 {
    let outputs = match plan::parse_outputs(out) {
        Ok(o) => o,
        Err(e) => return fail(e),
    };
    let reports: Result<Vec<Report>, _> = paths.iter().map(|p| Report::read_json(p)).collect();
    let merged = match reports.and_then(|r| Report::merge(&r)) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    println!("{}", merged.summary_table());
    match run::write_outputs(&merged, &outputs) {
        Ok(()) => EXIT_OK,
        Err(e) => fail(e),
    }
}

/// Prints the comparison of two reports; 99 when the new one regressed.
fn compare(old: &std::path::Path, new: &std::path::Path, tolerance: f64) -> i32 {
    let (old, new) = match (Report::read_json(old), Report::read_json(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let comparison = new.compare(&old, tolerance);
    print!("{}", comparison.text);
    if comparison.regressions.is_empty() {
        EXIT_OK
    } else {
        EXIT_THRESHOLDS
    }
}

/// Parses a listen address and refuses anything but loopback (the network rule).
pub fn loopback_addr(listen: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| format!("--listen `{listen}` is not an address like 127.0.0.1:8080"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "--listen {addr}: the demo target only listens on loopback (127.0.0.1 or [::1])"
        ));
    }
    Ok(addr)
}

async fn target(listen: &str) -> i32 {
    let addr = match loopback_addr(listen) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    if let Some(backlog) = chaperon_target::effective_backlog()
        && backlog < 20_000
    {
        eprintln!(
            "note: the accept queue holds {backlog} connections (net.core.somaxconn); for storms of 20,000 connects run `sysctl -w net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535`"
        );
    }
    match chaperon_target::serve_until_ctrl_c(addr).await {
        Ok(()) => EXIT_OK,
        Err(e) => fail(format!("cannot serve on {addr}: {e}")),
    }
}
