//! chaperon-host: runs load-test scenarios compiled to WebAssembly components, one sandboxed
//! instance per virtual user, and reports latency histograms.
//!
//! The modules are layers; each may only use the ones below it (`LAYERS` lists them, bottom
//! first, and `scripts/check-layers` enforces it):
//!
//! - `util`, `wit`: helpers and the generated WIT bindings.
//! - `outcome`, `cli`: the outcome enums; what the user typed.
//! - `net`, `metrics`: the one network checkpoint and HTTP/WebSocket clients; the one metrics
//!   sink and its naming rule.
//! - `plan`, `report`: the validated run plan; the report (schema, merge, summary).
//! - `sandbox`: wasmtime engine, pooling, CPU meter, memory limiter, loader, trap classes.
//! - `session`: the one session lifecycle (store, deadline, children, nested scenarios).
//! - `wit_host`: one file per WIT interface, implementing its `Host` trait on its context.
//! - `run`: load scenarios, schedule sessions, drain, stop.
//! - `app`: the commands behind the binary (run, inspect, merge, demo, target, bench).
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes; everything else
//! lives here so integration tests drive it in-process.

pub mod app;
pub mod cli;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod plan;
pub mod report;
pub mod run;
pub mod sandbox;
pub mod session;
pub mod util;
pub mod wit;
pub mod wit_host;
