//! JUnit XML: one testsuite per runbook, one testcase per step, rollback and `finally` step;
//! budgets as their own testcases. `<failure>` for failed assertions, timeouts and budgets,
//! `<error>` for environment and input errors, `<skipped>` for steps that did not run.

use std::path::PathBuf;

use junit_report::{ReportBuilder, TestCase, TestSuiteBuilder};

use super::{display_name, write_atomic, Suites};
use crate::exec::{ErrorKind, Event, Outcome, Reporter};

pub struct Junit {
    path: PathBuf,
    suites: Suites,
}

impl Junit {
    pub fn new(path: PathBuf) -> Self {
        Junit { path, suites: Suites::default() }
    }

    fn xml(&self) -> junit_report::Report {
        let mut report = ReportBuilder::new();
        for s in &self.suites.list {
            let mut suite = TestSuiteBuilder::new(&s.name);
            suite.set_timestamp(s.started_at);
            for r in &s.steps {
                let name = display_name(r);
                let time = junit_report::Duration::try_from(r.duration).unwrap_or_default();
                let msg = r.message.clone().unwrap_or_default();
                let mut tc = match r.outcome {
                    Outcome::Passed | Outcome::RolledBack => TestCase::success(&name, time),
                    Outcome::Skipped => TestCase::skipped(&name),
                    Outcome::Failed => TestCase::failure(&name, time, "failed", &msg),
                    Outcome::TimedOut => TestCase::failure(&name, time, "timed_out", &msg),
                    Outcome::Errored => {
                        let ty = match r.error_kind {
                            Some(ErrorKind::Environment) => "environment",
                            Some(ErrorKind::Invalid) => "invalid",
                            Some(ErrorKind::Interrupted) => "interrupted",
                            _ => "error",
                        };
                        TestCase::error(&name, time, ty, &msg)
                    }
                };
                tc.set_classname(&s.name);
                tc.set_filepath(&s.file);
                let mut out = Vec::new();
                if r.outcome == Outcome::RolledBack {
                    out.push("passed, then rolled back after a later failure".to_string());
                }
                if r.outcome == Outcome::Skipped && !msg.is_empty() {
                    out.push(msg.clone());
                }
                out.extend(r.log.iter().cloned());
                if !out.is_empty() {
                    tc.set_system_out(&out.join("\n"));
                }
                suite.add_testcase(tc);
            }
            if let Some(m) = &s.message {
                suite.set_system_err(m);
            }
            report.add_testsuite(suite.build());
        }
        report.build()
    }
}

impl Reporter for Junit {
    fn on_event(&mut self, event: &Event) {
        self.suites.on_event(event);
    }

    fn finish(&mut self) -> crate::Result<()> {
        let report = self.xml();
        write_atomic(&self.path, |w| report.write_xml(w).map_err(std::io::Error::other))
    }
}
