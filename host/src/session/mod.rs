//! Sessions: the one lifecycle ([`lifecycle`]) that builds a store and runs init/run/teardown
//! or `invoke`, the one [`deadline`] children and nested runs inherit, the store's per-concern
//! contexts ([`state`]), async children, signals and nested scenarios.

pub mod children;
pub mod deadline;
pub mod journal;
pub mod lifecycle;
pub mod nested;
pub mod scenario;
pub mod signals;
pub mod state;

pub use deadline::Deadline;
pub use lifecycle::{Finished, Seed};
pub use scenario::{RunCtx, ScenarioRt};
pub use state::{SessionIdentity, SessionState};

/// Says how many log lines the rate limit dropped and did not report yet.
pub fn report_dropped_logs(session: &mut state::SessionCtx) {
    let n = session.logs.take_unreported();
    if n > 0 && session.scenario.log_level <= crate::plan::LogLevel::Warn {
        eprintln!(
            "[warn] {} {} | {n} log line(s) dropped (over {}/s)",
            session.identity.id, session.scenario.name, session.scenario.limits.log_lines_per_sec
        );
    }
}
