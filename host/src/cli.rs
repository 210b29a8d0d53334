//! What the user typed: the clap definition of the command line. `plan` turns it into a
//! validated plan; nothing here interprets values.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Load testing with scenarios compiled to WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "chaperon-host", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario component or a load-test file.
    Run(Box<RunArgs>),
    /// Validate a component and list its imports, exports and producers.
    Inspect {
        /// The component (.wasm).
        component: PathBuf,
    },
    /// Merge JSON reports of runs (e.g. of several processes) losslessly.
    Merge {
        /// The reports to merge.
        #[arg(required = true, num_args = 1..)]
        reports: Vec<PathBuf>,
        /// Where to write the merged report: json=FILE.
        #[arg(long = "out", value_name = "FORMAT=FILE", required = true)]
        out: Vec<String>,
    },
    /// Compare two JSON reports: per-metric p95/p99 and error-rate deltas; exits 99 when the
    /// new run regressed past the tolerance.
    Compare {
        /// The baseline report.
        old: PathBuf,
        /// The report of the run to judge.
        new: PathBuf,
        /// Allowed p95/p99 increase, in percent.
        #[arg(long, default_value_t = 10.0)]
        tolerance: f64,
    },
    /// Serve the demo target (HTTP endpoints and a WebSocket at /ping/pong) on loopback.
    Target {
        /// Address to listen on (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Start the demo target on a free loopback port and run the pingpong scenario against it.
    Demo(DemoArgs),
    /// Measure start rate, host-call cost and memory per session (prints a table).
    Bench(BenchArgs),
}

/// `run` arguments.
#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// A scenario component (.wasm) or a load-test file (.toml).
    pub target: PathBuf,
    /// Sessions to run (per scenario), one iteration each; overrides the load-test file.
    #[arg(long)]
    pub sessions: Option<u32>,
    /// Virtual users (per scenario), each running iterations back to back.
    #[arg(long)]
    pub vus: Option<u32>,
    /// Iterations per virtual user.
    #[arg(long)]
    pub iterations: Option<u32>,
    /// How long virtual users or the arrival rate run, e.g. 30s.
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Open model: iterations started per second (with --duration or --stages).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Ramping stages DURATION:TARGET,... of virtual users (or of --rate), e.g. 10s:20,30s:20,10s:0.
    #[arg(long, value_name = "STAGES")]
    pub stages: Option<String>,
    /// Open model: virtual users in use at once at most (default twice the peak rate, 100 to 10,000).
    #[arg(long)]
    pub max_vus: Option<u32>,
    /// Base URL that scenario paths resolve against (http, https, ws or wss).
    #[arg(long)]
    pub base_url: Option<String>,
    /// Set a config value: PATH=VALUE, e.g. ping_pong.iterations=10 (VALUE is JSON, else a string).
    #[arg(long = "config", value_name = "PATH=VALUE")]
    pub config: Vec<String>,
    /// Also allow connections to ENTRY (repeatable): host, host:port, origin URL, *.suffix, IP
    /// or CIDR. The base URLs are always allowed; nothing else is unless listed.
    #[arg(long = "allow", value_name = "ENTRY")]
    pub allow: Vec<String>,
    /// A JSON or TOML file merged into the config.
    #[arg(long)]
    pub config_file: Option<PathBuf>,
    /// Write a report: json=FILE (repeatable).
    #[arg(long = "out", value_name = "FORMAT=FILE")]
    pub out: Vec<String>,
    /// A pass/fail rule 'METRIC: EXPR' (repeatable), e.g. 'http GET /: p(99) < 200ms',
    /// 'checks: rate > 0.99'; a failed rule exits 99.
    #[arg(long = "threshold", value_name = "METRIC: EXPR")]
    pub threshold: Vec<String>,
    /// Sessions alive at once (instance pool slots); default: all of them.
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// Wall-clock deadline per session, e.g. 30s.
    #[arg(long)]
    pub session_timeout: Option<String>,
    /// Do not use the on-disk cache of compiled components.
    #[arg(long)]
    pub no_cache: bool,
    /// Print only the summary (no capacity warnings).
    #[arg(long, short)]
    pub quiet: bool,
    /// Scenario log lines shown: debug, info, warn, error or off (default info, or the
    /// load-test file's [output] log_level).
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

/// `demo` arguments.
#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// The pingpong component (default: the one scripts/build-guests builds in this
    /// repository, found from any directory).
    #[arg(long)]
    pub component: Option<PathBuf>,
    /// Sessions (virtual users).
    #[arg(long, default_value_t = 100)]
    pub sessions: u32,
    /// Ping-pong round trips per session.
    #[arg(long, default_value_t = 10)]
    pub iterations: u32,
    /// Write a report: json=FILE.
    #[arg(long = "out", value_name = "FORMAT=FILE")]
    pub out: Vec<String>,
}

/// `bench` arguments.
#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// A component whose `run` waits in a delay (tests/guests/evil in mode "delay").
    #[arg(long, default_value = "target/wasm32-wasip2/guest/evil.wasm")]
    pub idle_component: PathBuf,
    /// Components whose idle WebSocket sessions are measured (comma-separated): pingpong
    /// holding its connection (`ping_pong.hold_ms`), a typical scenario, and evil in mode
    /// "ws_hold", which imports every function of the world (the largest instance).
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/guest/pingpong.wasm,target/wasm32-wasip2/guest/evil.wasm",
        value_delimiter = ','
    )]
    pub ws_components: Vec<PathBuf>,
    /// Session counts to measure memory at (comma-separated).
    #[arg(long, default_value = "1000,10000", value_delimiter = ',')]
    pub sessions: Vec<u32>,
    /// Components whose start rate is measured (comma-separated): get-loop, a typical
    /// scenario, and evil (the largest instance). Each session ends at once.
    #[arg(
        long,
        default_value = "target/wasm32-wasip2/guest/get_loop.wasm,target/wasm32-wasip2/guest/evil.wasm",
        value_delimiter = ','
    )]
    pub start_components: Vec<PathBuf>,
    /// Sessions started back to back for the start-rate figure (about 2 s of starts, so one
    /// scheduling hiccup of a shared machine weighs little).
    #[arg(long, default_value_t = 100_000)]
    pub starts: u32,
    /// Fresh processes each start-rate and host-call figure is measured in (min / median /
    /// max of them).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Internal: take one measurement (starts, starts-loaded, host-call) in this fresh
    /// process and print it as `figure VALUE`.
    #[arg(long, hide = true)]
    pub measure: Option<String>,
}
