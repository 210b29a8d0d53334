//! `chaperon-host demo`: the embedded target on a free loopback port and the pingpong scenario
//! against it. Works from any directory: the component is found next to the binary's build
//! tree or the source tree, or the error says how to build it.

use super::{fail, run_plan};
use crate::cli::{DemoArgs, RunArgs};
use crate::plan::RunPlan;
use std::path::{Path, PathBuf};

/// Where `scripts/build-guests` writes the pingpong component, relative to the repository.
const PINGPONG: &str = "target/wasm32-wasip2/guest/pingpong.wasm";

/// Runs the demo.
pub async fn run(args: &DemoArgs) -> i32 {
    let component = match find_component(args.component.as_deref()) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    // Its own thread and runtime: the load generator in this process must not starve it.
    let server =
        match chaperon_target::TargetServer::start_on_own_runtime(listen, Default::default()) {
            Ok(s) => s,
            Err(e) => return fail(format!("cannot start the demo target: {e}")),
        };
    println!(
        "demo target on {}; running {} pingpong sessions x {} iterations, each in its own wasm instance",
        server.base_url(),
        args.sessions,
        args.iterations
    );
    let run = RunArgs {
        target: component,
        sessions: Some(args.sessions),
        base_url: Some(server.base_url()),
        config: vec![format!("ping_pong.iterations={}", args.iterations)],
        out: args.out.clone(),
        quiet: true,
        log_level: Some("warn".into()),
        ..RunArgs::default()
    };
    let code = match RunPlan::from_args(&run) {
        Ok(plan) => run_plan(&plan).await,
        Err(e) => fail(e),
    };
    let stats = server.stats();
    println!(
        "target saw {} WebSocket connections, {} pings, {} pongs (at most {} open at once)",
        stats.ws_opened(),
        stats.pings(),
        stats.pongs(),
        stats.ws_max_open()
    );
    server.shutdown().await;
    code
}

/// The pingpong component: `--component` if given, else the first built copy among the
/// current directory, the repository the binary was built in, and the source tree.
fn find_component(given: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(path) = given {
        return if path.exists() {
            Ok(path.to_path_buf())
        } else {
            Err(format!("--component {}: no such file", path.display()))
        };
    }
    let source_root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut roots = vec![PathBuf::from(".")];
    // target/release/chaperon-host → the repository two levels up.
    if let Ok(exe) = std::env::current_exe()
        && let Some(repo) = exe.parent().and_then(Path::parent).and_then(Path::parent)
    {
        roots.push(repo.to_path_buf());
    }
    roots.push(source_root.clone());
    roots
        .iter()
        .map(|r| r.join(PINGPONG))
        .find(|p| p.exists())
        .ok_or_else(|| {
            format!(
                "the pingpong component is not built; run `bash scripts/build-guests --only rust` in {} (or pass --component PATH)",
                source_root.canonicalize().unwrap_or(source_root).display()
            )
        })
}
