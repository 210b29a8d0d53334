//! The report of a run: session ends by reason (with failure and abort examples), metrics,
//! provenance.

use super::schedule::Ended;
use crate::metrics::Recorder;
use crate::plan::RunPlan;
use crate::report::{
    self, ComponentInfo, Provenance, Report, ReportError, SessionFailure, SessionSummary,
};
use crate::sandbox::loader::Preflight;

/// Builds the report of a finished run.
pub fn report(
    plan: &RunPlan,
    preflights: &[Preflight],
    recorder: &Recorder,
    ended: &[Ended],
    duration: f64,
    started_at: std::time::SystemTime,
) -> Result<Report, ReportError> {
    let mut sessions = SessionSummary {
        started: ended.len() as u64,
        ..SessionSummary::default()
    };
    for e in ended {
        let example = (!e.id.is_empty()).then(|| SessionFailure {
            session: e.id.clone(),
            scenario: e.scenario.clone(),
            reason: e.end.to_string(),
        });
        sessions.record_end(e.end.kind(), example);
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
    Report::build(&recorder.snapshot(), duration, sessions, provenance)
}
