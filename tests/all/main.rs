//! Integration tests: one binary (ripgrep/wasmtime style). Every test starts its own servers on
//! 127.0.0.1:0 and runs real components built by `scripts/build-guests`.

mod bad_input;
mod catalogue;
mod children;
mod contract;
mod examples;
mod faults;
mod flow;
mod handmade;
mod hostile;
mod html;
mod http;
mod influx;
mod isolation;
mod loadtests;
mod merge;
mod pingpong;
mod polyglot;
mod props;
mod sandbox;
mod scale;
mod shapes;
mod support;
mod tenants;
mod thresholds;
mod tls;
