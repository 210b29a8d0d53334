//! Merging reports of one distributed run losslessly (histograms are decoded and added).

use super::{ComponentInfo, Provenance, Report, ReportError, SessionSummary};
use crate::metrics::MetricSet;

impl Report {
    /// Lossless merge of reports of one distributed run: histograms are decoded and added,
    /// error kinds/checks/sessions summed, the duration is the longest input (the reports cover
    /// the same wall time), and stats are recomputed from the merged histograms.
    pub fn merge(reports: &[Report]) -> Result<Report, ReportError> {
        if reports.is_empty() {
            return Err(ReportError::NothingToMerge);
        }
        let mut set = MetricSet::default();
        let mut sessions = SessionSummary::default();
        let mut duration_secs: f64 = 0.0;
        for report in reports {
            set.merge(&report.metric_set()?);
            sessions.merge(&report.sessions);
            duration_secs = duration_secs.max(report.duration_secs);
        }
        let provenance = merge_provenance(reports);
        Report::build(&set, duration_secs, sessions, provenance)
    }
}

/// Provenance of a merged report: components deduplicated by (sha256, scenario), the earliest
/// start, and the common config (or every input's config when they differ).
fn merge_provenance(reports: &[Report]) -> Provenance {
    let mut components: Vec<ComponentInfo> = Vec::new();
    let mut versions: Vec<&str> = Vec::new();
    let mut configs: Vec<&serde_json::Value> = Vec::new();
    for provenance in reports.iter().map(|r| &r.provenance) {
        for component in &provenance.components {
            if !components
                .iter()
                .any(|c| c.sha256 == component.sha256 && c.scenario == component.scenario)
            {
                components.push(component.clone());
            }
        }
        if !versions.contains(&provenance.host_version.as_str()) {
            versions.push(&provenance.host_version);
        }
        if !configs.contains(&&provenance.config) {
            configs.push(&provenance.config);
        }
    }
    let config = match configs.as_slice() {
        [single] => (*single).clone(),
        many => serde_json::Value::Array(many.iter().map(|c| (*c).clone()).collect()),
    };
    Provenance {
        host_version: versions.join(", "),
        // Same-format RFC 3339 UTC strings sort chronologically.
        started_at: reports
            .iter()
            .map(|r| r.provenance.started_at.clone())
            .min()
            .unwrap_or_default(),
        components,
        config,
        merged_from: reports.iter().map(|r| r.provenance.merged_from).sum(),
    }
}
