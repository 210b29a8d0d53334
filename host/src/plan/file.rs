//! The load-test file (TOML). Unknown keys are rejected so a typo never silently changes a run.
//!
//! ```toml
//! [config]                      # shared by every scenario
//! base_url = "http://127.0.0.1:8080"
//!
//! [[scenario]]
//! name = "pingpong"
//! component = "pingpong.wasm"   # relative to this file
//! sessions = 100
//! config = { ping_pong = { iterations = 10 } }
//!
//! [limits]                      # see limits.rs; durations as "30s"
//! session_timeout = "2m"
//!
//! [output]
//! json = "report.json"
//! ```

use super::limits::Limits;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A parsed load-test file.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LoadTestFile {
    /// Config every scenario sees (base_url and scenario settings).
    #[serde(default)]
    pub config: toml::Table,
    /// The scenarios, run side by side.
    #[serde(default)]
    pub scenario: Vec<ScenarioEntry>,
    /// Run once before all sessions: `invoke(function, null)` on a fresh instance of `scenario`;
    /// its JSON result is what every session's `setup-data` returns.
    pub setup: Option<Hook>,
    /// Run once after all sessions, with the setup result as its argument.
    pub teardown: Option<Hook>,
    /// Data sets sessions take records from (`session.feed(NAME)`).
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, super::data::DataSpec>,
    #[serde(default)]
    pub limits: Limits,
    /// `[limits]` as written, for tenants' limits to be laid over.
    #[serde(skip)]
    pub limits_table: toml::Table,
    /// Where sessions may connect besides the base URLs.
    #[serde(default)]
    pub network: NetworkSection,
    /// Tenants sharing this run: `[tenant.NAME]`. Scenarios name theirs with `tenant = "NAME"`;
    /// without one they belong to the implicit tenant (whose data sets are `[data]`).
    #[serde(default)]
    pub tenant: std::collections::BTreeMap<String, TenantSection>,
    /// Pass/fail rules: `"METRIC" = ["EXPR", ...]` (an entry may be a table with
    /// `threshold`, `abort_on_fail` and `delay_abort_eval`).
    #[serde(default)]
    pub thresholds: std::collections::BTreeMap<String, ThresholdRules>,
    #[serde(default)]
    pub output: OutputSection,
    #[serde(default)]
    pub tls: TlsSection,
}

/// `[tls]`: how targets' certificates are checked.
#[derive(Clone, Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Extra trusted CA certificates (PEM), relative to the load-test file.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (self-signed, expired, wrong name). For test rigs only.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// One `[[scenario]]`: a component, or a sequence of other scenarios.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ScenarioEntry {
    pub name: String,
    /// Path of the component, relative to the load-test file.
    pub component: Option<PathBuf>,
    /// Names of scenarios run one after another in each session; each one's assigns become
    /// the next one's config.
    pub sequence: Option<Vec<String>>,
    /// Sessions to run, one iteration each (the short form of `vus` with `iterations = 1`);
    /// 0 defines a scenario only for sequences and `run_scenario`.
    pub sessions: Option<u32>,
    /// Closed model: virtual users, each running iterations back to back.
    pub vus: Option<u32>,
    /// Iterations per virtual user (default 1 without a `duration`).
    pub iterations: Option<u32>,
    /// How long the virtual users (or the arrival rate) run, e.g. "30s".
    #[serde(default, with = "crate::plan::limits::humantime_serde_opt")]
    pub duration: Option<std::time::Duration>,
    /// Ramping stages: `[{ duration = "10s", target = 20 }, ...]`, of virtual users, or of
    /// iterations per second with `rate`.
    pub stages: Option<Vec<super::shape::Stage>>,
    /// Open model: iterations started per second (the start rate with `stages`).
    pub rate: Option<f64>,
    /// Open model: virtual users in use at once at most.
    pub max_vus: Option<u32>,
    /// Open model: virtual users ready at the start.
    pub pre_allocated: Option<u32>,
    /// Open model: how long a due iteration waits for a free virtual user before it is
    /// dropped (default 1s).
    #[serde(default, with = "crate::plan::limits::humantime_serde_opt")]
    pub max_start_lag: Option<std::time::Duration>,
    /// When this scenario's shape starts, after the test's start (e.g. "30s").
    #[serde(default, with = "crate::plan::limits::humantime_serde_compat")]
    pub start_time: std::time::Duration,
    /// Give each iteration of a virtual user fresh HTTP connections and a fresh cookie jar
    /// (by default they are kept across its iterations).
    #[serde(default)]
    pub reset_connections: bool,
    /// Config for this scenario, merged over `[config]`.
    #[serde(default)]
    pub config: toml::Table,
    /// The `[tenant.NAME]` it belongs to; none: the implicit tenant.
    pub tenant: Option<String>,
    /// Wait before each session starts (e.g. "2s"); not applied to nested runs.
    #[serde(default, with = "crate::plan::limits::humantime_serde_compat")]
    pub start_delay: std::time::Duration,
    /// A random extra wait in [0, this) before each session starts.
    #[serde(default, with = "crate::plan::limits::humantime_serde_compat")]
    pub random_start_delay: std::time::Duration,
}

/// `[setup]` / `[teardown]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// The scenario whose component has the function.
    pub scenario: String,
    /// The function passed to `invoke`.
    pub function: String,
}

impl ScenarioEntry {
    /// Its shape keys.
    pub fn shape_spec(&self) -> super::shape::ShapeSpec {
        super::shape::ShapeSpec {
            sessions: self.sessions,
            vus: self.vus,
            iterations: self.iterations,
            duration: self.duration,
            stages: self.stages.clone(),
            rate: self.rate,
            max_vus: self.max_vus,
            pre_allocated: self.pre_allocated,
            max_start_lag: self.max_start_lag,
        }
    }
}

/// `[tenant.NAME]`: what one tenant's scenarios may reach and read. Its scenarios' names, data
/// sets and network are invisible to other tenants.
#[derive(Clone, Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    /// Its per-session limits: keys given here replace `[limits]`'s for its scenarios (run-wide
    /// keys such as `max_duration` stay `[limits]`'s).
    #[serde(default)]
    pub limits: Option<toml::Table>,
    /// Where its sessions may connect besides its scenarios' base URLs (and `[network] allow`).
    #[serde(default)]
    pub network: NetworkSection,
    /// Its share of the host's worker threads for guests that spin (0 < share ≤ 1); by
    /// default each tenant gets an equal share.
    #[serde(default)]
    pub cpu_share: Option<f64>,
    /// Its data sets: `[tenant.NAME.data.SET]`.
    #[serde(default)]
    pub data: std::collections::BTreeMap<String, super::data::DataSpec>,
}

/// `[network]`: the outbound allowlist beyond the base URLs (see `net/allowlist.rs`).
#[derive(Clone, Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    /// Entries: host, host:port, origin URL, `*.suffix`, IP address or CIDR.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Names pinned to addresses, resolved without DNS (k6's `hosts`): `"api.test" =
    /// "127.0.0.1"` or a list; `[]` makes the name not exist. Pinning does not widen the
    /// allowlist: the name must be allowed, and every address is checked as if resolved.
    #[serde(default)]
    pub hosts: std::collections::BTreeMap<String, OneOrMany>,
}

/// A TOML value that is one string or a list of strings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, in order.
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// The rules of one `[thresholds]` key: one expression or a list.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ThresholdRules {
    One(ThresholdRule),
    Many(Vec<ThresholdRule>),
}

/// One rule: `"p(99) < 200ms"`, or a table that also says whether to abort the run.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ThresholdRule {
    Expr(String),
    Full {
        threshold: String,
        #[serde(default)]
        abort_on_fail: bool,
        /// Not evaluated for aborting before this much of the run passed (e.g. "10s").
        #[serde(default, with = "crate::plan::limits::humantime_serde_opt")]
        delay_abort_eval: Option<std::time::Duration>,
    },
}

impl ThresholdRules {
    /// The rules, in order.
    pub fn rules(&self) -> Vec<&ThresholdRule> {
        match self {
            ThresholdRules::One(r) => vec![r],
            ThresholdRules::Many(v) => v.iter().collect(),
        }
    }
}

/// `[output]`: report files written at the end of the run.
#[derive(Clone, Debug, Deserialize, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    pub json: Option<PathBuf>,
    /// One row per metric, Chaperon's columns.
    pub csv: Option<PathBuf>,
    /// Thresholds, checks and sessions as JUnit XML test cases.
    pub junit: Option<PathBuf>,
    /// A self-contained HTML report.
    pub html: Option<PathBuf>,
    /// Scenario log lines below this level are not printed (`--log-level` overrides it).
    pub log_level: Option<super::LogLevel>,
}

/// Why a load-test file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("cannot read load-test file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid load-test file {path}: {reason}")]
    Parse { path: String, reason: String },
    #[error("load-test file {path} has no [[scenario]]; add one with name, component and sessions")]
    NoScenario { path: String },
    #[error("load-test file {path}: scenario name `{name}` is used twice; names must be unique")]
    DuplicateName { path: String, name: String },
    #[error(
        "load-test file {path}: scenario `{name}` needs exactly one of `component` or `sequence`"
    )]
    ComponentOrSequence { path: String, name: String },
    #[error(
        "load-test file {path}: `{what}` names scenario `{name}`, which is not a [[scenario]] with a component in the same tenant"
    )]
    UnknownScenario {
        path: String,
        what: String,
        name: String,
    },
    #[error(
        "load-test file {path}: scenario `{name}` names tenant `{tenant}`, which has no [tenant.{tenant}] section"
    )]
    UnknownTenant {
        path: String,
        name: String,
        tenant: String,
    },
}

impl LoadTestFile {
    /// Reads and validates `path`; component paths become relative to the current directory.
    pub fn read(path: &Path) -> Result<LoadTestFile, LoadTestError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadTestError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
        let mut file = Self::parse(&text, &shown)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for s in &mut file.scenario {
            s.component = s.component.as_ref().map(|c| dir.join(c));
        }
        let tenant_data = file.tenant.values_mut().flat_map(|t| t.data.values_mut());
        for d in file.data.values_mut().chain(tenant_data) {
            d.file = dir.join(&d.file);
        }
        if let Some(ca) = &mut file.tls.ca_file {
            *ca = dir.join(&*ca);
        }
        let o = &mut file.output;
        for out in [&mut o.json, &mut o.csv, &mut o.junit, &mut o.html]
            .into_iter()
            .flatten()
        {
            *out = dir.join(&*out);
        }
        Ok(file)
    }

    /// Parses TOML text; `shown` names the source in errors.
    pub fn parse(text: &str, shown: &str) -> Result<LoadTestFile, LoadTestError> {
        let parse_error = |e: toml::de::Error| LoadTestError::Parse {
            path: shown.into(),
            reason: crate::util::first_line(e.message()),
        };
        let mut file: LoadTestFile = toml::from_str(text).map_err(parse_error)?;
        let raw: toml::Table = toml::from_str(text).map_err(parse_error)?;
        if let Some(toml::Value::Table(limits)) = raw.get("limits") {
            file.limits_table = limits.clone();
        }
        if file.scenario.is_empty() {
            return Err(LoadTestError::NoScenario { path: shown.into() });
        }
        let mut names = std::collections::BTreeSet::new();
        for s in &file.scenario {
            if !names.insert(s.name.as_str()) {
                return Err(LoadTestError::DuplicateName {
                    path: shown.into(),
                    name: s.name.clone(),
                });
            }
            if s.component.is_some() == s.sequence.is_some() {
                return Err(LoadTestError::ComponentOrSequence {
                    path: shown.into(),
                    name: s.name.clone(),
                });
            }
        }
        file.check_references(shown)?;
        Ok(file)
    }

    /// Sequences and hooks must name scenarios that have a component, in their own tenant
    /// (hooks: the implicit tenant); scenarios must name declared tenants.
    fn check_references(&self, shown: &str) -> Result<(), LoadTestError> {
        for s in &self.scenario {
            if let Some(t) = &s.tenant
                && !self.tenant.contains_key(t)
            {
                return Err(LoadTestError::UnknownTenant {
                    path: shown.into(),
                    name: s.name.clone(),
                    tenant: t.clone(),
                });
            }
        }
        let has_component = |tenant: &Option<String>, n: &str| {
            self.scenario
                .iter()
                .any(|s| s.name == n && s.component.is_some() && &s.tenant == tenant)
        };
        let steps = self.scenario.iter().flat_map(|s| {
            let what = format!("sequence of `{}`", s.name);
            s.sequence
                .iter()
                .flatten()
                .map(move |step| (s.tenant.clone(), what.clone(), step.clone()))
        });
        let hooks = [("setup", &self.setup), ("teardown", &self.teardown)]
            .into_iter()
            .filter_map(|(w, h)| h.as_ref().map(|h| (None, w.to_owned(), h.scenario.clone())));
        for (tenant, what, name) in steps.chain(hooks) {
            if !has_component(&tenant, &name) {
                return Err(LoadTestError::UnknownScenario {
                    path: shown.into(),
                    what,
                    name,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_file() {
        let f = LoadTestFile::parse(
            r#"
            [config]
            base_url = "http://127.0.0.1:1"
            [[scenario]]
            name = "a"
            component = "a.wasm"
            sessions = 3
            config = { x = 1 }
            [limits]
            session_timeout = "5s"
            [output]
            json = "r.json"
            "#,
            "t.toml",
        )
        .unwrap();
        assert_eq!(f.scenario[0].sessions, Some(3));
        assert_eq!(f.limits.session_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn rejects_unknown_keys_and_reserved_sections() {
        let bad = "[[scenario]]\nname='a'\ncomponent='a.wasm'\nsesions=3\n";
        let e = LoadTestFile::parse(bad, "t.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `sesions`"), "{e}");
        let bad = "[[scenario]]\nname='a'\ncomponent='a.wasm'\n[thresholds]\np99=1\n";
        assert!(LoadTestFile::parse(bad, "t.toml").is_err());
        let e = LoadTestFile::parse("", "t.toml").unwrap_err().to_string();
        assert!(e.contains("no [[scenario]]"));
    }
}
