//! Every bad input gets one clear line naming the fix, exit code 1, no panic.

use crate::merge::tempdir;
use crate::support::{guest, host};

fn assert_fails(args: &[&str], expected: &str) {
    let (code, stdout, stderr) = host(args);
    assert_eq!(code, 1, "exit code for {args:?}: {stdout}{stderr}");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected `{expected}` in: {stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn missing_file() {
    assert_fails(&["inspect", "no/such.wasm"], "cannot read no/such.wasm");
    assert_fails(&["run", "no/such.wasm"], "check the path");
}

#[test]
fn a27_not_a_wasm_file() {
    let f = tempdir().join("notes.wasm");
    std::fs::write(&f, "hello").unwrap();
    assert_fails(&["run", f.to_str().unwrap()], "is not a WebAssembly file");
}

#[test]
fn a27_a_core_module_is_not_a_component() {
    let f = tempdir().join("core.wasm");
    std::fs::write(&f, b"\0asm\x01\0\0\0").unwrap();
    assert_fails(
        &["run", f.to_str().unwrap()],
        "is a core module, not a component; build with --target wasm32-wasip2",
    );
}

#[test]
fn a27_a_component_of_another_world_names_its_imports() {
    let g = guest("otherworld");
    assert_fails(
        &["run", g.to_str().unwrap()],
        "is a component of another world: it does not export init, run, teardown, invoke",
    );
}

#[test]
fn a27_a_truncated_component() {
    let bytes = std::fs::read(guest("pingpong")).unwrap();
    let f = tempdir().join("truncated.wasm");
    std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(
        &["inspect", f.to_str().unwrap()],
        "is not a valid component (truncated or corrupt",
    );
}

#[test]
fn bad_config_and_load_test_files() {
    let g = guest("pingpong");
    let g = g.to_str().unwrap();
    assert_fails(&["run", g, "--config", "oops"], "is not PATH=VALUE");
    assert_fails(&["run", g, "--base-url", "ftp://x"], "scheme must be http");
    let t = tempdir().join("bad.toml");
    std::fs::write(
        &t,
        "[[scenario]]\nname='a'\ncomponent='a.wasm'\nsesions=1\n",
    )
    .unwrap();
    assert_fails(&["run", t.to_str().unwrap()], "unknown field `sesions`");
}

#[test]
fn inspect_lists_the_world() {
    let (code, stdout, _) = host(&["inspect", guest("pingpong").to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("exports: init, run, teardown, invoke"),
        "{stdout}"
    );
    assert!(
        stdout.contains("chaperon:scenario/websocket@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("toolchain: Rust (wit-bindgen)"), "{stdout}");
}
