//! Session ends, tallied as they come: a run of millions of sessions keeps a count per
//! scenario and reason and the first few examples, never one record per session.

use crate::outcome::SessionEnd;
use crate::report::{ABORTED, COMPLETED, MAX_FAILURE_EXAMPLES};
use std::collections::HashMap;

/// One finished session.
pub struct Ended {
    pub id: String,
    pub scenario: String,
    pub end: SessionEnd,
    /// Interrupted by the plan (the end of a shape or of the test), not a failure.
    pub cut: bool,
}

/// The ends of a run so far.
#[derive(Default)]
pub struct EndTally {
    /// Ends by scenario, then by reason ([`SessionEnd::kind`]).
    pub counts: HashMap<String, HashMap<&'static str, u64>>,
    /// Of those, sessions interrupted by the plan.
    pub cut: u64,
    /// The first failed and the first aborted sessions, in the order they ended, at most
    /// [`MAX_FAILURE_EXAMPLES`] of each.
    pub examples: Vec<Ended>,
    failures_kept: usize,
    aborts_kept: usize,
}

impl EndTally {
    /// Counts `e`, keeping it as an example while there is room for its kind.
    pub fn add(&mut self, e: Ended) {
        let kind = e.end.kind();
        let kinds = match self.counts.get_mut(e.scenario.as_str()) {
            Some(kinds) => kinds,
            None => self.counts.entry(e.scenario.clone()).or_default(),
        };
        let n = kinds.entry(kind).or_default();
        *n = n.saturating_add(1);
        if e.cut {
            self.cut = self.cut.saturating_add(1);
            return;
        }
        let kept = if kind == ABORTED {
            &mut self.aborts_kept
        } else {
            &mut self.failures_kept
        };
        if kind != COMPLETED && *kept < MAX_FAILURE_EXAMPLES {
            *kept += 1;
            self.examples.push(e);
        }
    }

    /// Sessions ended in all.
    pub fn total(&self) -> u64 {
        self.counts
            .values()
            .flat_map(|kinds| kinds.values())
            .fold(0, |t, n| t.saturating_add(*n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(scenario: &str, end: SessionEnd, cut: bool) -> Ended {
        Ended {
            id: format!("{scenario}-x"),
            scenario: scenario.to_owned(),
            end,
            cut,
        }
    }

    #[test]
    fn counts_every_end_and_keeps_only_the_first_examples() {
        let mut t = EndTally::default();
        for _ in 0..1000 {
            t.add(ended("a", SessionEnd::Completed, false));
            t.add(ended("b", SessionEnd::GuestError("boom".into()), false));
            t.add(ended("b", SessionEnd::Aborted("stop".into()), false));
        }
        t.add(ended("a", SessionEnd::Interrupted, true));
        assert_eq!(t.total(), 3001);
        assert_eq!(t.cut, 1);
        assert_eq!(t.counts["a"]["completed"], 1000);
        assert_eq!(t.counts["b"]["guest-error"], 1000);
        assert_eq!(t.counts["b"][ABORTED], 1000);
        assert_eq!(t.examples.len(), 2 * MAX_FAILURE_EXAMPLES);
        assert!(t.examples.iter().all(|e| !e.cut && e.scenario == "b"));
    }
}
