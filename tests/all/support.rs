//! Helpers shared by the integration tests.

use chaperon_host::cli::RunArgs;
use chaperon_host::plan::RunPlan;
use chaperon_host::report::{MetricStats, Report};
use chaperon_host::run::{self, RunOptions, RunOutcome};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Path of a guest component built by scripts/build-guests.
pub fn guest(name: &str) -> PathBuf {
    let path = root()
        .join("target/wasm32-wasip2/guest")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/build-guests` first (scripts/test does)",
        path.display()
    );
    path
}

/// The host binary.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_chaperon-host")
}

/// A plan for `sessions` sessions of `component` with `--config` values.
pub fn plan(component: &str, sessions: u32, base_url: Option<String>, config: &[&str]) -> RunPlan {
    let args = RunArgs {
        target: guest(component),
        sessions: Some(sessions),
        base_url,
        config: config.iter().map(|s| s.to_string()).collect(),
        no_cache: false,
        quiet: true,
        log_level: Some("off".into()),
        ..RunArgs::default()
    };
    RunPlan::from_args(&args).expect("valid plan")
}

/// Runs a plan in-process.
pub async fn run(plan: &RunPlan) -> RunOutcome {
    let (_tx, options) = RunOptions::unattended(false);
    run::run(plan, options).await.expect("run starts")
}

/// A metric of the report, or a panic naming the keys there are.
pub fn metric<'a>(report: &'a Report, key: &str) -> &'a MetricStats {
    report.metrics.get(key).unwrap_or_else(|| {
        panic!(
            "no metric `{key}`; have {:?}",
            report.metrics.keys().collect::<Vec<_>>()
        )
    })
}

/// How many sessions ended with `kind`.
pub fn ended(report: &Report, kind: &str) -> u64 {
    report.sessions.ended.get(kind).copied().unwrap_or(0)
}

/// Runs the host binary with `args`; returns (exit code, stdout, stderr).
pub fn host(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .current_dir(root())
        .output()
        .expect("host binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The reason of the first session that did not complete (failed or aborted), or "".
pub fn first_reason(report: &Report) -> String {
    let s = &report.sessions;
    s.failures
        .iter()
        .chain(&s.aborted)
        .next()
        .map(|f| f.reason.clone())
        .unwrap_or_default()
}

/// A demo target on 127.0.0.1 with its own thread and runtime, so that a run saturating the
/// test's runtime cannot starve the server it measures.
pub fn target(options: chaperon_target::TargetOptions) -> chaperon_target::TargetServer {
    chaperon_target::TargetServer::start_on_own_runtime(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        options,
    )
    .expect("the target binds a loopback port")
}

/// Held by the tests that load the machine (a thousand sessions or more), so that two of them
/// never run at once on a 2-core machine and time each other out.
pub async fn heavy() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.lock().await
}

/// [`heavy`] for tests that are not async.
pub fn heavy_blocking() -> tokio::sync::MutexGuard<'static, ()> {
    HEAVY.blocking_lock()
}

static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Writes `toml` as `NAME.toml` (with `EVIL` replaced by the evil component's path) and runs
/// the host binary on it with `args`; returns (exit code, stdout, stderr).
pub fn host_on_file(name: &str, toml: &str, args: &[&str]) -> (i32, String, String) {
    let path = crate::merge::tempdir().join(format!("{name}.toml"));
    let evil = format!("{:?}", guest("evil").display().to_string());
    std::fs::write(&path, toml.replace("\"EVIL\"", &evil)).expect("test file written");
    let mut all = vec!["run", path.to_str().expect("UTF-8 temp path")];
    all.extend_from_slice(args);
    host(&all)
}
