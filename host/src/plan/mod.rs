//! The validated plan of a run, built from the command line and the load-test file.
//!
//! Precedence, lowest first: `[config]` of the file, the scenario's `config`, `--config-file`,
//! `--base-url`, `--config PATH=VALUE`. `chaperon-host run x.wasm` is the short form of a file
//! with one scenario named after the component.
//!
//! Everything the run needs is resolved here ONCE (TLS client config, data sets, base URLs,
//! limits, log level); later layers never re-parse the file or the arguments.

mod args;
pub mod data;
pub mod file;
pub mod limits;
pub mod shape;

use crate::cli::RunArgs;
use crate::metrics::threshold::{Threshold, ThresholdError};
use crate::net::allowlist::{Allowlist, Entry, EntryError, Source};
use crate::util::jsonpath;
pub use args::parse_outputs;
use args::{cli_overlay, cli_shape, thresholds, with_cli_limits};
use data::{DataError, Dataset};
use file::{Hook, LoadTestError, LoadTestFile, ScenarioEntry};
use limits::Limits;
use serde_json::Value;
use shape::ShapeSpec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Log verbosity of scenario log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    /// Parses `debug`, `info`, `warn`, `error` or `off`.
    pub fn parse(s: &str) -> Option<LogLevel> {
        match s.to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warn" | "warning" => Some(LogLevel::Warn),
            "error" => Some(LogLevel::Error),
            "off" | "none" => Some(LogLevel::Off),
            _ => None,
        }
    }
}

/// A report to write at the end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Json(PathBuf),
    Csv(PathBuf),
    Junit(PathBuf),
    Html(PathBuf),
    /// Points streamed to InfluxDB 1.x during the run.
    Influx(crate::net::influx::InfluxTarget),
}

/// What a scenario runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScenarioKind {
    /// A component.
    Component(PathBuf),
    /// Other scenarios, one after another in the same session.
    Sequence(Vec<String>),
}

/// One scenario of the plan.
#[derive(Clone, Debug)]
pub struct ScenarioPlan {
    pub name: String,
    pub kind: ScenarioKind,
    /// Sessions of it alive at once at most (its shape's peak virtual users); 0 for a
    /// building block of sequences and `run_scenario`.
    pub sessions: u32,
    /// How its iterations start.
    pub shape: shape::Shape,
    /// When its shape starts, after the test's start.
    pub start_time: std::time::Duration,
    /// Fresh connections and cookie jar for every iteration of a virtual user.
    pub reset_connections: bool,
    /// The session config (global config merged with the scenario's).
    pub config: Value,
    pub start_delay: std::time::Duration,
    pub random_start_delay: std::time::Duration,
    /// `base_url` of the config, parsed once.
    pub base_url: Option<url::Url>,
    /// Its `[tenant.NAME]`; empty for the implicit tenant.
    pub tenant: String,
    /// Its tenant's limits when the tenant has its own; otherwise the plan's apply.
    pub limits: Option<Limits>,
}

impl ScenarioPlan {
    /// The limits its sessions run under: its tenant's, else the plan's `limits`.
    pub fn limits<'a>(&'a self, plan: &'a Limits) -> &'a Limits {
        self.limits.as_ref().unwrap_or(plan)
    }
}

impl ScenarioPlan {
    /// The component path, for component scenarios.
    pub fn component(&self) -> Option<&Path> {
        match &self.kind {
            ScenarioKind::Component(p) => Some(p),
            ScenarioKind::Sequence(_) => None,
        }
    }
}

/// Everything a run needs, validated.
#[derive(Clone, Debug)]
pub struct RunPlan {
    pub scenarios: Vec<ScenarioPlan>,
    /// The TLS client config of every connection.
    pub tls: Arc<rustls::ClientConfig>,
    pub setup: Option<Hook>,
    pub teardown: Option<Hook>,
    /// Each tenant's data sets, loaded (the implicit tenant's, `[data]`, under "").
    pub data: BTreeMap<String, Arc<BTreeMap<String, Dataset>>>,
    pub limits: Limits,
    pub outputs: Vec<Output>,
    pub cache_dir: Option<PathBuf>,
    /// Print capacity warnings (and, later, progress) while running.
    pub progress: bool,
    /// Scenario log lines below this level are not printed.
    pub log_level: LogLevel,
    /// Where each tenant's sessions may connect (the implicit tenant under ""): its scenarios'
    /// base URLs plus `[network] allow`, its `[tenant.NAME.network] allow` and `--allow`.
    pub allowlists: BTreeMap<String, Arc<Allowlist>>,
    /// Names each tenant resolves without DNS (`[network] hosts` plus its own), under the
    /// tenant's name like `allowlists`.
    pub hosts: BTreeMap<String, PinnedNames>,
    /// Tenants' declared shares of the worker threads (`[tenant.NAME] cpu_share`).
    pub cpu_shares: BTreeMap<String, f64>,
    /// Pass/fail rules: `[thresholds]` then `--threshold`.
    pub thresholds: Vec<Threshold>,
}

/// Host names pinned to addresses (an empty list: the name does not exist).
pub type PinnedNames = BTreeMap<String, Vec<std::net::IpAddr>>;

/// A bad command line or config; one line naming the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    LoadTest(#[from] LoadTestError),
    #[error("--config `{0}` is not PATH=VALUE (e.g. --config ping_pong.iterations=10)")]
    ConfigArg(String),
    #[error("cannot set config `{path}`: {reason}")]
    ConfigPath { path: String, reason: String },
    #[error("cannot read --config-file {path}: {reason}")]
    ConfigFile { path: String, reason: String },
    #[error("--base-url `{url}` is not usable: {reason} (e.g. --base-url http://127.0.0.1:8080)")]
    BaseUrl { url: String, reason: String },
    #[error(
        "--out `{0}` is not FORMAT=FILE with FORMAT json, csv, junit, html or influxdb (e.g. --out json=report.json)"
    )]
    OutArg(String),
    #[error(
        "--out {0}=… is not available in this version; use json=FILE, csv=FILE, junit=FILE or html=FILE"
    )]
    OutFormat(String),
    #[error("{what} must be at least 1")]
    Zero { what: &'static str },
    #[error("--session-timeout `{0}` is not a duration (e.g. 30s, 2m)")]
    Duration(String),
    #[error("{path} is neither a .wasm component nor a .toml load-test file")]
    UnknownTarget { path: String },
    #[error("{0}")]
    Tls(String),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("--log-level `{0}` is not one of debug, info, warn, error, off")]
    LogLevel(String),
    #[error(transparent)]
    Allow(#[from] EntryError),
    #[error(
        "[network] hosts: `{name}` = `{value}` is not an IP address (e.g. \"api.test\" = \"127.0.0.1\")"
    )]
    PinnedHost { name: String, value: String },
    #[error("[tenant.{0}] cpu_share must be more than 0 and at most 1 (e.g. cpu_share = 0.5)")]
    CpuShare(String),
    #[error("scenario `{scenario}`: {error}")]
    Shape {
        scenario: String,
        error: shape::ShapeError,
    },
    #[error("--duration `{0}` is not a duration (e.g. 30s, 2m)")]
    ShapeDuration(String),
    #[error(transparent)]
    Stages(#[from] shape::ShapeError),
    #[error(transparent)]
    Threshold(#[from] ThresholdError),
    #[error("{0}")]
    Influx(String),
    #[error("[tenant.{tenant}.limits]: {reason}")]
    TenantLimits { tenant: String, reason: String },
}

impl RunPlan {
    /// Builds the plan for `run`.
    pub fn from_args(args: &RunArgs) -> Result<RunPlan, ConfigError> {
        let file = load_target(&args.target)?;
        let overlay = cli_overlay(args)?;
        let global = toml_to_json(file.config.clone());
        let limits = with_cli_limits(file.limits.clone(), args)?;
        let tenant_limits = tenant_limits(&file, args)?;
        let cli_shape = cli_shape(args)?;
        let scenarios = file
            .scenario
            .iter()
            .map(|s| {
                let tenant = s.tenant.as_deref().unwrap_or_default();
                let own = tenant_limits.get(tenant);
                scenario_plan(s, &global, &overlay, &cli_shape, own)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if scenarios.iter().all(|s| s.sessions == 0) {
            return Err(ConfigError::Zero { what: "sessions" });
        }
        let mut outputs = parse_outputs(&args.out)?;
        if outputs.is_empty() {
            let o = &file.output;
            outputs.extend(o.json.clone().map(Output::Json));
            outputs.extend(o.csv.clone().map(Output::Csv));
            outputs.extend(o.junit.clone().map(Output::Junit));
            outputs.extend(o.html.clone().map(Output::Html));
        }
        let tls = crate::net::tls::client_config(
            file.tls.ca_file.as_deref(),
            file.tls.insecure_skip_verify,
        )
        .map_err(ConfigError::Tls)?;
        let mut data = BTreeMap::from([(String::new(), load_data(&file.data)?)]);
        let mut allowlists = BTreeMap::new();
        let everyone: Vec<&String> = file.network.allow.iter().chain(&args.allow).collect();
        let implicit = allowlist(&scenarios, "", everyone.iter().copied())?;
        allowlists.insert(String::new(), Arc::new(implicit));
        let shared_hosts = pinned(&file.network.hosts, &PinnedNames::new())?;
        let mut hosts = BTreeMap::from([(String::new(), shared_hosts.clone())]);
        let mut cpu_shares = BTreeMap::new();
        for (name, t) in &file.tenant {
            if let Some(share) = t.cpu_share {
                if !(share > 0.0 && share <= 1.0) {
                    return Err(ConfigError::CpuShare(name.clone()));
                }
                cpu_shares.insert(name.clone(), share);
            }
            hosts.insert(name.clone(), pinned(&t.network.hosts, &shared_hosts)?);
            data.insert(name.clone(), load_data(&t.data)?);
            let entries = everyone.iter().copied().chain(&t.network.allow);
            allowlists.insert(
                name.clone(),
                Arc::new(allowlist(&scenarios, name, entries)?),
            );
        }
        let log_level = match &args.log_level {
            Some(l) => LogLevel::parse(l).ok_or_else(|| ConfigError::LogLevel(l.clone()))?,
            None => file.output.log_level.unwrap_or(LogLevel::Info),
        };
        let thresholds = thresholds(&file.thresholds, &args.threshold)?;
        Ok(RunPlan {
            thresholds,
            allowlists,
            hosts,
            cpu_shares,
            scenarios,
            setup: file.setup.clone(),
            tls,
            teardown: file.teardown.clone(),
            data,
            limits,
            outputs,
            cache_dir: (!args.no_cache).then(default_cache_dir).flatten(),
            progress: !args.quiet,
            log_level,
        })
    }

    /// Also allows `entry` (tests and embedders; the CLI uses `--allow`).
    pub fn allow(&mut self, entry: &str) -> Result<(), EntryError> {
        let entry = Entry::parse(entry)?;
        for list in self.allowlists.values_mut() {
            Arc::make_mut(list).push(entry.clone());
        }
        Ok(())
    }

    /// Also resolves `name` to `ips` without DNS, for every tenant (tests and embedders; the
    /// load-test file uses `[network] hosts`). It widens no allowlist.
    pub fn pin_host(&mut self, name: &str, ips: &[std::net::IpAddr]) {
        for names in self.hosts.values_mut() {
            names.insert(name.to_ascii_lowercase(), ips.to_vec());
        }
    }

    /// Each tenant's lanes of `workers` worker threads for spinning guests: its declared share
    /// or an equal one, at least one lane. Empty when the run has one tenant (no sharing).
    pub fn cpu_lanes(&self, workers: usize) -> BTreeMap<String, usize> {
        let tenants: std::collections::BTreeSet<&String> =
            self.scenarios.iter().map(|s| &s.tenant).collect();
        if tenants.len() < 2 {
            return BTreeMap::new();
        }
        let equal = 1.0 / tenants.len() as f64;
        tenants
            .into_iter()
            .map(|t| {
                let share = self.cpu_shares.get(t).copied().unwrap_or(equal);
                (t.clone(), ((workers as f64 * share) as usize).max(1))
            })
            .collect()
    }

    /// How long the run's shapes last, when every running scenario's shape says (a
    /// count of iterations does not).
    pub fn total_duration(&self) -> Option<std::time::Duration> {
        self.scenarios
            .iter()
            .filter(|s| s.sessions > 0)
            .map(|s| s.shape.duration().map(|d| s.start_time + d))
            .try_fold(std::time::Duration::ZERO, |max, d| d.map(|d| max.max(d)))
    }

    /// "stage 2/3" of the first scenario with stages, `elapsed` after the test's start.
    pub fn stage_at(&self, elapsed: std::time::Duration) -> Option<String> {
        self.scenarios.iter().find_map(|s| {
            let since = elapsed.checked_sub(s.start_time)?;
            let (i, n) = s.shape.stage_at(since)?;
            Some(format!("stage {i}/{n}"))
        })
    }

    /// Total sessions over all scenarios.
    pub fn total_sessions(&self) -> u64 {
        self.scenarios.iter().map(|s| u64::from(s.sessions)).sum()
    }
}

/// A tenant's allowlist: the base URL origin of each of its scenarios, then `allow` entries.
fn allowlist<'a>(
    scenarios: &[ScenarioPlan],
    tenant: &str,
    allow: impl Iterator<Item = &'a String>,
) -> Result<Allowlist, EntryError> {
    let mut entries: Vec<Entry> = scenarios
        .iter()
        .filter(|s| s.tenant == tenant)
        .filter_map(|s| s.base_url.as_ref())
        .filter_map(|u| Entry::from_url(u, Source::BaseUrl).ok())
        .collect();
    for text in allow {
        entries.push(Entry::parse(text)?);
    }
    Ok(Allowlist::new(entries))
}

/// `[network] hosts` parsed over `base` (a tenant's entries over the shared ones).
fn pinned(
    section: &BTreeMap<String, file::OneOrMany>,
    base: &PinnedNames,
) -> Result<PinnedNames, ConfigError> {
    let mut out = base.clone();
    for (name, value) in section {
        let ips = value
            .items()
            .into_iter()
            .map(|v| {
                v.parse().map_err(|_| ConfigError::PinnedHost {
                    name: name.clone(),
                    value: v.to_owned(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.insert(name.to_ascii_lowercase(), ips);
    }
    Ok(out)
}

fn load_data(
    specs: &BTreeMap<String, data::DataSpec>,
) -> Result<Arc<BTreeMap<String, Dataset>>, DataError> {
    let sets = specs
        .iter()
        .map(|(name, spec)| Ok((name.clone(), Dataset::load(name, spec)?)))
        .collect::<Result<BTreeMap<_, _>, DataError>>()?;
    Ok(Arc::new(sets))
}

fn load_target(path: &Path) -> Result<LoadTestFile, ConfigError> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => Ok(LoadTestFile::read(path)?),
        Some("wasm") => Ok(short_form(path)),
        _ => Err(ConfigError::UnknownTarget {
            path: path.display().to_string(),
        }),
    }
}

/// `run x.wasm` = a file with one scenario `x` of one session.
fn short_form(path: &Path) -> LoadTestFile {
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("scenario")
        .to_owned();
    LoadTestFile {
        scenario: vec![ScenarioEntry {
            name,
            component: Some(path.to_path_buf()),
            ..ScenarioEntry::default()
        }],
        ..LoadTestFile::default()
    }
}

/// Each declared tenant's limits: its `[tenant.NAME.limits]` keys over `[limits]`, then the
/// command line's overrides.
fn tenant_limits(
    file: &LoadTestFile,
    args: &RunArgs,
) -> Result<BTreeMap<String, Limits>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, tenant) in &file.tenant {
        let Some(own) = &tenant.limits else { continue };
        let mut table = file.limits_table.clone();
        table.extend(own.clone());
        let limits: Limits =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::TenantLimits {
                    tenant: name.clone(),
                    reason: crate::util::first_line(e.message()),
                })?;
        out.insert(name.clone(), with_cli_limits(limits, args)?);
    }
    Ok(out)
}

fn scenario_plan(
    s: &ScenarioEntry,
    global: &Value,
    overlay: &Value,
    cli_shape: &ShapeSpec,
    limits: Option<&Limits>,
) -> Result<ScenarioPlan, ConfigError> {
    let mut config = global.clone();
    jsonpath::deep_merge(&mut config, toml_to_json(s.config.clone()));
    jsonpath::deep_merge(&mut config, overlay.clone());
    let own = s.shape_spec();
    // The command line's shape applies to the scenarios that run, not to building blocks.
    let block = own.sessions == Some(0);
    let spec = if block {
        own
    } else {
        own.overridden_by(cli_shape)
    };
    let shape = spec.resolve().map_err(|error| ConfigError::Shape {
        scenario: s.name.clone(),
        error,
    })?;
    let sessions = if block { 0 } else { shape.peak_vus() };
    let base_url = match config.get("base_url").and_then(Value::as_str) {
        Some(url) => Some(validate_base_url(url)?),
        None => None,
    };
    let kind = match (&s.component, &s.sequence) {
        (Some(c), _) => ScenarioKind::Component(c.clone()),
        (None, Some(steps)) => ScenarioKind::Sequence(steps.clone()),
        (None, None) => ScenarioKind::Sequence(Vec::new()),
    };
    Ok(ScenarioPlan {
        name: s.name.clone(),
        kind,
        sessions,
        shape,
        start_time: s.start_time,
        reset_connections: s.reset_connections,
        config,
        start_delay: s.start_delay,
        random_start_delay: s.random_start_delay,
        base_url,
        tenant: s.tenant.clone().unwrap_or_default(),
        limits: limits.cloned(),
    })
}

/// Checks that a base URL is absolute with a scheme we speak.
pub fn validate_base_url(raw: &str) -> Result<url::Url, ConfigError> {
    let err = |reason: &str| ConfigError::BaseUrl {
        url: raw.into(),
        reason: reason.into(),
    };
    let url = url::Url::parse(raw).map_err(|e| err(&e.to_string()))?;
    match url.scheme() {
        "http" | "https" | "ws" | "wss" if url.host().is_some() => Ok(url),
        "http" | "https" | "ws" | "wss" => Err(err("it has no host")),
        _ => Err(err("the scheme must be http, https, ws or wss")),
    }
}

/// Where compiled components are cached: `$CHAPERON_CACHE_DIR`, else `~/.cache/chaperon`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("CHAPERON_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("chaperon"))
}

/// TOML tables become JSON objects (datetimes become strings).
pub fn toml_to_json(table: toml::Table) -> Value {
    serde_json::to_value(table).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(target: &str) -> RunArgs {
        RunArgs {
            target: target.into(),
            ..RunArgs::default()
        }
    }

    #[test]
    fn short_form_with_config_overrides() {
        let mut a = args("x/pingpong.wasm");
        a.sessions = Some(5);
        a.config = vec!["ping_pong.iterations=10".into(), "name=bob".into()];
        a.base_url = Some("http://127.0.0.1:9".into());
        let plan = RunPlan::from_args(&a).unwrap();
        let s = &plan.scenarios[0];
        assert_eq!((s.name.as_str(), s.sessions), ("pingpong", 5));
        assert_eq!(s.component(), Some(Path::new("x/pingpong.wasm")));
        assert_eq!(s.config["ping_pong"]["iterations"], 10);
        assert_eq!(s.config["name"], "bob");
        assert_eq!(s.config["base_url"], "http://127.0.0.1:9");
    }

    #[test]
    fn bad_arguments_name_the_fix() {
        let mut a = args("x.wasm");
        a.config = vec!["novalue".into()];
        let e = RunPlan::from_args(&a).unwrap_err().to_string();
        assert!(e.contains("is not PATH=VALUE"), "{e}");
        let mut a = args("x.wasm");
        a.base_url = Some("ftp://x".into());
        let e = RunPlan::from_args(&a).unwrap_err().to_string();
        assert!(e.contains("scheme must be http"), "{e}");
        let e = parse_outputs(&["influxdb=x".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--out influxdb=x"), "{e}");
        let e = parse_outputs(&["yaml=x".into()]).unwrap_err().to_string();
        assert!(
            e.contains("FORMAT json, csv, junit, html or influxdb"),
            "{e}"
        );
        let e = RunPlan::from_args(&args("x.txt")).unwrap_err().to_string();
        assert!(e.contains("neither a .wasm component nor a .toml"), "{e}");
    }
}
