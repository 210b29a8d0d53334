//! The JUnit XML output for CI: one test case per threshold and per check (a check fails when
//! any of its runs failed), and one for the sessions (failed when a session failed).

use super::{COMPLETED, Report, ReportError};
use quick_xml::escape::escape;
use std::fmt::Write as _;
use std::path::Path;

/// One test case: its name and, when it failed, why.
struct Case {
    name: String,
    failure: Option<String>,
}

impl Report {
    /// The JUnit XML text.
    pub fn to_junit(&self) -> String {
        let thresholds: Vec<Case> = self
            .thresholds
            .iter()
            .map(|v| Case {
                name: format!("{}: {}", v.metric, v.expression),
                failure: (!v.passed).then(|| match v.observed {
                    Some(x) => format!("observed {x}"),
                    None => "no data recorded".to_owned(),
                }),
            })
            .collect();
        let checks: Vec<Case> = self
            .checks
            .iter()
            .map(|(name, c)| Case {
                name: name.clone(),
                failure: (c.failed > 0)
                    .then(|| format!("{} of {} failed", c.failed, c.passed + c.failed)),
            })
            .collect();
        let s = &self.sessions;
        let failed = s.failed();
        let sessions = vec![Case {
            name: "sessions".into(),
            failure: (failed > 0).then(|| {
                let ended: Vec<String> = s
                    .ended
                    .iter()
                    .filter(|(k, _)| *k != COMPLETED)
                    .map(|(k, n)| format!("{n} {k}"))
                    .collect();
                format!(
                    "{failed} of {} sessions failed: {}",
                    s.started,
                    ended.join(", ")
                )
            }),
        }];
        let suites = [
            ("thresholds", thresholds),
            ("checks", checks),
            ("sessions", sessions),
        ];
        let tests: usize = suites.iter().map(|(_, c)| c.len()).sum();
        let failures: usize = suites
            .iter()
            .map(|(_, c)| c.iter().filter(|c| c.failure.is_some()).count())
            .sum();
        let mut out = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"chaperon\" \
             tests=\"{tests}\" failures=\"{failures}\" time=\"{:.3}\">\n",
            self.duration_secs
        );
        for (name, cases) in &suites {
            suite(&mut out, name, cases);
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// Writes [`Report::to_junit`] to `path`.
    pub fn write_junit(&self, path: &Path) -> Result<(), ReportError> {
        super::write_file(path, &self.to_junit())
    }
}

fn suite(out: &mut String, name: &str, cases: &[Case]) {
    let failures = cases.iter().filter(|c| c.failure.is_some()).count();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{name}\" tests=\"{}\" failures=\"{failures}\">",
        cases.len()
    );
    for c in cases {
        let case_name = escape(c.name.as_str());
        match &c.failure {
            None => {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{name}\" name=\"{case_name}\"/>"
                );
            }
            Some(why) => {
                let why = escape(why.as_str());
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{name}\" name=\"{case_name}\">\n      \
                     <failure message=\"{why}\">{why}</failure>\n    </testcase>"
                );
            }
        }
    }
    out.push_str("  </testsuite>\n");
}
