//! Hostile components no compiler emits, made here from WAT and our own WIT: a start function
//! that never returns (A2) and a table.grow bomb (A5). A well-behaved canary tenant shares each
//! run and must complete all its sessions.

use crate::loadtests::plan_file;
use crate::merge::tempdir;
use crate::support::{ended, first_reason, guest, host, root, run};
use chaperon_host::report::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Entry points of the `scenario` world in the canonical ABI: each returns a pointer to its
/// result (zeroed memory reads as `ok`). `$run_body` is the body of `run`, `$start` an optional
/// start function.
fn core_module(run_body: &str, start: &str) -> String {
    format!(
        r#"(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "init") (result i32) i32.const 0)
  (func (export "run") (result i32) {run_body})
  (func (export "teardown") (result i32) i32.const 0)
  (func (export "invoke") (param i32 i32 i32 i32) (result i32) i32.const 0)
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const 1024)
  {start}
)"#
    )
}

/// A component of the `scenario` world around `wat`, written to a file of its own.
fn component(name: &str, wat: &str) -> PathBuf {
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_path(root().join("wit")).unwrap();
    let world = resolve.select_world(&[pkg], Some("scenario")).unwrap();
    let mut module = wat::parse_str(wat).unwrap();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
        false,
    )
    .unwrap();
    let bytes = wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap();
    let path = tempdir().join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A load test of two tenants: `offender` (4 sessions of the hand-made component) and a
/// canary running 20 sessions of the counter guest; returns the report and the run's wall time.
async fn with_canary(offender: &Path) -> (Report, Duration) {
    let toml = format!(
        r#"
        [limits]
        cpu_budget_ms = 200
        session_timeout = "20s"

        [tenant.evil]
        [tenant.good]

        [[scenario]]
        name = "offender"
        tenant = "evil"
        component = "{offender}"
        sessions = 4

        [[scenario]]
        name = "canary"
        tenant = "good"
        component = "{canary}"
        sessions = 20
        "#,
        offender = offender.display(),
        canary = guest("counter").display(),
    );
    let name = offender.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
    let plan = plan_file(name, &toml);
    let started = Instant::now();
    let report = run(&plan).await.report;
    (report, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_a_start_function_that_never_returns_ends_on_its_cpu_budget() {
    let wat = core_module(
        "i32.const 0",
        "(func $spin (loop $l (br $l))) (start $spin)",
    );
    let (r, took) = with_canary(&component("start-loop", &wat)).await;
    let good = &r.sessions.by_tenant["good"];
    assert_eq!(good.get("completed"), Some(&20), "{}", r.summary_table());
    let evil = &r.sessions.by_tenant["evil"];
    assert_eq!(evil.get("cpu-budget"), Some(&4), "{}", r.summary_table());
    assert_eq!(ended(&r, "cpu-budget"), 4);
    assert!(took < Duration::from_secs(15), "ended in {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a5_a_table_grow_bomb_is_refused_and_named() {
    // Grows its table by a billion elements; traps (as a compiler's allocator would) if that
    // fails, and returns ok if it somehow succeeded.
    let run_body = "ref.null func i32.const 1000000000 table.grow $t i32.const -1 i32.eq \
                    (if (then unreachable)) i32.const 0";
    let (r, _) = with_canary(&component("table-bomb", &core_module(run_body, ""))).await;
    assert_eq!(
        r.sessions.by_tenant["good"].get("completed"),
        Some(&20),
        "{}",
        r.summary_table()
    );
    assert_eq!(ended(&r, "memory-limit"), 4, "{}", r.summary_table());
    assert!(
        first_reason(&r).contains("a table would grow past 100000 elements"),
        "{}",
        first_reason(&r)
    );
}

#[test]
fn a28_a_compile_bomb_is_abandoned_at_the_compile_timeout() {
    // One function of 4,000,000 instructions: over a second of cranelift work, far past 100 ms.
    let body = "i32.const 1 i32.const 2 i32.add drop ".repeat(1_000_000);
    let bomb = component(
        "compile-bomb",
        &core_module(&format!("{body} i32.const 0"), ""),
    );
    let file = tempdir().join("compile-bomb.toml");
    let toml = format!(
        "[limits]\ncompile_timeout = \"100ms\"\n[[scenario]]\nname = \"bomb\"\n\
         component = \"{}\"\nsessions = 1\n",
        bomb.display()
    );
    std::fs::write(&file, toml).unwrap();
    let started = Instant::now();
    let (code, _, stderr) = host(&["run", file.to_str().unwrap(), "--no-cache"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("compile timeout after 100ms") && stderr.contains("compile_timeout"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The host exits without waiting for the abandoned compile.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
}
