//! The report of a run: session ends by reason (with failure and abort examples), metrics,
//! provenance.

use super::ends::EndTally;
use crate::metrics::MetricSet;
use crate::plan::RunPlan;
use crate::report::{
    self, ComponentInfo, Provenance, Report, ReportError, SessionFailure, SessionSummary,
};
use crate::sandbox::loader::Preflight;

/// Builds the report of a finished run.
pub fn report(
    plan: &RunPlan,
    preflights: &[Preflight],
    metrics: &MetricSet,
    ended: &EndTally,
    duration: f64,
    started_at: std::time::SystemTime,
) -> Result<Report, ReportError> {
    let mut sessions = SessionSummary {
        started: ended.total(),
        ..SessionSummary::default()
    };
    let several = plan.scenarios.iter().filter(|s| s.sessions > 0).count() > 1;
    for (scenario, kinds) in &ended.counts {
        let tenant = tenant_of(plan, scenario);
        for (&kind, &n) in kinds {
            sessions.count_ends(kind, n);
            if let Some(tenant) = tenant {
                sessions.count_tenant_ends(tenant, kind, n);
            }
            if several {
                sessions.count_scenario_ends(scenario, kind, n);
            }
        }
    }
    for e in &ended.examples {
        let example = SessionFailure {
            session: e.id.clone(),
            scenario: e.scenario.clone(),
            reason: e.end.to_string(),
        };
        sessions.add_example(e.end.kind(), example);
    }
    let components = plan
        .scenarios
        .iter()
        .filter(|s| s.component().is_some())
        .zip(preflights)
        .map(|(s, p)| ComponentInfo {
            scenario: s.name.clone(),
            path: p.path.display().to_string(),
            sha256: p.sha256.clone(),
        })
        .collect();
    let config: serde_json::Map<String, serde_json::Value> = plan
        .scenarios
        .iter()
        .map(|s| (s.name.clone(), report::redact(&s.config)))
        .collect();
    let provenance = Provenance {
        host_version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
        components,
        config: serde_json::Value::Object(config),
        merged_from: 1,
    };
    Report::build(metrics, duration, sessions, provenance)
}

/// The tenant of the scenario named `scenario`; nested runs carry their own scenario name.
fn tenant_of<'p>(plan: &'p RunPlan, scenario: &str) -> Option<&'p str> {
    plan.scenarios
        .iter()
        .find(|s| s.name == scenario)
        .map(|s| s.tenant.as_str())
}

/// Report counter of connects that waited at the run's connect gate.
pub const CONNECTS_QUEUED: &str = "connects_queued";

/// Puts a connect storm on the record: the count under [`CONNECTS_QUEUED`] and a warning that
/// names the longest wait and the limit to raise.
pub fn connect_queue(
    report: &mut Report,
    stats: crate::net::gate::GateStats,
    limits: &crate::plan::limits::Limits,
) -> Option<String> {
    if stats.queued == 0 {
        return None;
    }
    report.counters.insert(CONNECTS_QUEUED.into(), stats.queued);
    Some(format!(
        "{} connection(s) queued in the generator for a connect slot (longest wait {} ms; \
         at most {} connect at once: raise [limits] max_connecting to allow more)",
        stats.queued,
        stats.max_wait_us / 1000,
        limits.max_connecting
    ))
}
