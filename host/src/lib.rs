//! chaperon-host: runs load-test scenarios compiled to WebAssembly components, one sandboxed
//! instance per virtual user, and reports latency histograms.
//!
//! The binary (`main.rs`) only parses arguments and maps errors to exit codes; everything else
//! lives here so integration tests drive it in-process.

pub mod app;
pub mod bench;
pub mod bindings;
pub mod children;
pub mod cli;
pub mod config;
pub mod data;
pub mod engine;
pub mod http_client;
pub mod jsonpath;
pub mod limits;
pub mod loader;
pub mod loadtest;
pub mod metrics;
pub mod nested;
pub mod net;
pub mod outcome;
pub mod report;
pub mod runner;
pub mod session_host;
pub mod state;
pub mod target;
pub mod websocket;
