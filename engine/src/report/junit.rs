//! JUnit XML: one testsuite per runbook, one testcase per step, rollback and `finally` step;
//! budgets as their own testcases. `<failure>` for failed assertions, timeouts and budgets,
//! `<error>` for environment and input errors, `<skipped>` for steps that did not run; a
//! content check with no ground truth is `type="unproven"` on its failure or skip, and each
//! suite whose checks judged content says `content: proven|unproven|failed` in its
//! `<system-out>`. One builder for a run's file and a fleet's combined file (`xml` of several parts).

use std::path::{Path, PathBuf};

use junit_report::{ReportBuilder, TestCase, TestSuiteBuilder};

use super::summary::Content;
use super::{cdata_text, display_name, write_atomic, xml_escaped, xml_text, ReportSink, RunSummary};
use crate::error::Class;
use crate::exec::{ErrorKind, Outcome, Rollback};

pub struct Junit {
    path: PathBuf,
}

/// The `type` of a testcase's `<failure>` or `<skipped>` when its check had no ground truth.
pub const UNPROVEN: &str = "unproven";

/// A skipped testcase's reason, and whether it is an accepted "content unproven".
struct Skip {
    reason: String,
    unproven: bool,
}

impl Junit {
    pub fn new(path: PathBuf) -> Self {
        Junit { path }
    }
}

/// What goes into a JUnit file.
pub enum Part<'a> {
    /// A run's suites, each named `PREFIX: name` when a prefix is given (a fleet's target).
    Run { prefix: Option<&'a str>, summary: &'a RunSummary },
    /// A run that left no summary (it never started, or stopped before its runbook ran): one
    /// suite `suite` with one errored case `run` of type `kind` saying why.
    NotRun { suite: String, classname: &'a str, kind: &'a str, message: &'a str },
}

/// Write the JUnit file of `parts` at `path`, atomically.
pub fn write(path: &Path, parts: &[Part<'_>]) -> crate::Result<()> {
    let (report, skipped) = xml(parts);
    let mut xml = Vec::new();
    report.write_xml(&mut xml).map_err(|e| crate::Error::io("writing the JUnit report", std::io::Error::other(e)))?;
    drop(report);
    // The library writes UTF-8 from our strings; lossy only if it ever did not.
    let xml = String::from_utf8(xml).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    write_atomic(path, |w| with_skip_reasons(&xml, &skipped, w).map(|_| ()))
}

/// The report, and the reason of each skipped testcase in document order (the library
/// writes `<skipped/>` without one; `with_skip_reasons` adds them).
fn xml(parts: &[Part<'_>]) -> (junit_report::Report, Vec<Skip>) {
    let mut skipped = Vec::new();
    let mut report = ReportBuilder::new();
    for part in parts {
        let (prefix, summary) = match part {
            Part::Run { prefix, summary } => (prefix, summary),
            Part::NotRun { suite, classname, kind, message } => {
                let mut tc = TestCase::error("run", junit_report::Duration::ZERO, kind, &xml_text(message));
                tc.set_classname(&xml_text(classname));
                let mut s = TestSuiteBuilder::new(&xml_text(suite));
                s.add_testcase(tc);
                report.add_testsuite(s.build());
                continue;
            }
        };
        for s in &summary.record.suites {
            let name = match prefix {
                Some(p) => format!("{p}: {}", s.name),
                None => s.name.clone(),
            };
            let mut suite = TestSuiteBuilder::new(&xml_text(&name));
            suite.set_timestamp(s.started_at);
            let names: Vec<String> = s.steps.iter().map(display_name).collect();
            // How many steps share each name, counted once (counting per step was n²).
            let mut shared: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
            for n in &names {
                *shared.entry(n.as_str()).or_default() += 1;
            }
            for (r, shown) in s.steps.iter().zip(&names) {
                // Steps are told apart by position: a name two steps share gets it added.
                let name = if shared.get(shown.as_str()).copied().unwrap_or(0) > 1 {
                    format!("{shown} [{}]", r.path)
                } else {
                    shown.clone()
                };
                let name = xml_text(&name);
                // A budget's measure is the whole run, whose steps are already counted: as its
                // own time it would count the run twice in the suite's (its value is in the
                // message).
                let time = if r.phase == crate::exec::Phase::Budget {
                    junit_report::Duration::ZERO
                } else {
                    junit_report::Duration::try_from(r.duration).unwrap_or_default()
                };
                let msg = xml_text(r.message.as_deref().unwrap_or_default());
                // A failure's message ends with where the step is written, so a CI page links
                // the failure to its runbook line.
                let failure = match (&r.location, r.outcome) {
                    (Some(at), Outcome::Failed | Outcome::TimedOut | Outcome::Errored) => {
                        format!("{msg} (at {})", xml_text(at))
                    }
                    _ => msg.clone(),
                };
                // A check with no ground truth has its own outcome: a failure of type
                // `unproven`, or a skip of type `unproven` (the run accepted it), never a pass
                // nor a plain failure or skip (issue 35).
                let unproven = Content::of_step(r) == Some(Content::Unproven);
                let mut tc = match r.outcome {
                    Outcome::Passed => TestCase::success(&name, time),
                    Outcome::Skipped => {
                        skipped.push(Skip {
                            reason: if msg.is_empty() { "skipped".to_string() } else { msg.clone() },
                            unproven,
                        });
                        TestCase::skipped(&name)
                    }
                    Outcome::Failed if unproven => TestCase::failure(&name, time, UNPROVEN, &failure),
                    Outcome::Failed => TestCase::failure(&name, time, "failed", &failure),
                    Outcome::TimedOut => TestCase::failure(&name, time, "timed_out", &failure),
                    Outcome::Errored => {
                        let ty = match r.error_kind {
                            Some(ErrorKind::Class(Class::Environment)) => "environment",
                            Some(ErrorKind::Class(Class::Invalid)) => "invalid",
                            Some(ErrorKind::Interrupted) => "interrupted",
                            _ => "error",
                        };
                        TestCase::error(&name, time, ty, &failure)
                    }
                };
                tc.set_classname(&xml_text(&s.name));
                tc.set_filepath(&xml_text(&s.file));
                let mut out = Vec::new();
                // The rollback is an added fact; the outcome above stays what the step did.
                match r.rollback {
                    Some(Rollback::RolledBack) => out.push("rolled back after a later failure".to_string()),
                    Some(Rollback::Failed) => {
                        out.push("its rollback FAILED after a later failure: what it did may still be in place".into())
                    }
                    Some(Rollback::Skipped) => {
                        out.push("its rollback was skipped after a later failure: what it did is still in place".into())
                    }
                    None => {}
                }
                if r.outcome == Outcome::Skipped && !msg.is_empty() {
                    out.push(msg.clone());
                }
                if unproven && r.outcome == Outcome::Passed {
                    // What it did held (a recovery reached its target), but it compared the
                    // content with nothing: said beside the pass.
                    out.push("content unproven: no ground truth to compare the restored content with".into());
                }
                out.extend(r.log.iter().cloned());
                if !out.is_empty() {
                    tc.set_system_out(&cdata_text(&out.join("\n")));
                }
                suite.add_testcase(tc);
            }
            if let Some(m) = &s.message {
                suite.set_system_err(&cdata_text(m));
            }
            if let Some(c) = s.content {
                suite.set_system_out(&format!("content: {}", c.as_str()));
            }
            let mut built = suite.build();
            // The package stays the runbook's, prefix or not (as in the run's own file).
            built.package = format!("testsuite/{}", xml_text(&s.name));
            report.add_testsuite(built);
        }
    }
    (report.build(), skipped)
}

/// Writes `xml` to `out` with each `<skipped/>` element, in order, given its reason as
/// `message`. Only markup counts: text inside CDATA sections (a step's log) is copied as it
/// is. One pass over the text: searching it again for the next `<skipped/>` from every CDATA
/// section read a 10,000-step file 10,000 times (issue 36 case 11). Returns how many bytes
/// were looked at, which the test holds to the file's length.
fn with_skip_reasons(xml: &str, reasons: &[Skip], out: &mut dyn std::io::Write) -> std::io::Result<usize> {
    const SKIPPED: &str = "<skipped/>";
    const CDATA: &str = "<![CDATA[";
    let mut reasons = reasons.iter();
    // `written`: what is already out; `at`: where the search for the next markup goes on.
    let (mut written, mut at, mut looked) = (0, 0, 0);
    while let Some(found) = xml[at..].find('<') {
        let lt = at + found;
        looked += found + 1;
        let rest = &xml[lt..];
        if let Some(body) = rest.strip_prefix(CDATA) {
            let end = body.find("]]>").map(|e| lt + CDATA.len() + e + 3).unwrap_or(xml.len());
            looked += end - lt - 1;
            at = end;
        } else if rest.starts_with(SKIPPED) {
            out.write_all(&xml.as_bytes()[written..lt])?;
            match reasons.next() {
                Some(Skip { reason, unproven: true }) => {
                    write!(out, "<skipped type=\"{UNPROVEN}\" message=\"{}\"/>", xml_escaped(reason))?
                }
                Some(Skip { reason, unproven: false }) => {
                    write!(out, "<skipped message=\"{}\"/>", xml_escaped(reason))?
                }
                None => out.write_all(SKIPPED.as_bytes())?,
            }
            looked += SKIPPED.len() - 1;
            at = lt + SKIPPED.len();
            written = at;
        } else {
            at = lt + 1;
        }
    }
    looked += xml.len() - at;
    out.write_all(&xml.as_bytes()[written..])?;
    Ok(looked)
}

impl ReportSink for Junit {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        write(&self.path, &[Part::Run { prefix: None, summary }])
    }
}

#[cfg(test)]
mod tests {
    use super::{with_skip_reasons, Skip};
    use crate::exec::{Fact, Outcome, Phase, StepRecord};

    fn check(path: &str, label: &str, outcome: Outcome, message: &str, basis: Option<&str>) -> StepRecord {
        StepRecord {
            suite: 0,
            path: path.into(),
            label: label.into(),
            id: Some(label.into()),
            uses: "verify.fingerprint".into(),
            location: Some("verify.yaml:9:7".into()),
            phase: Phase::Main,
            outcome,
            error_kind: (outcome == Outcome::Failed)
                .then_some(crate::exec::ErrorKind::Class(crate::error::Class::Failed)),
            started_at: time::OffsetDateTime::now_utc(),
            duration: std::time::Duration::from_millis(10),
            attempts: 1,
            message: (!message.is_empty()).then(|| message.to_string()),
            outputs: serde_json::json!({}),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: basis.map(|b| vec![Fact::GroundTruth { basis: b.into() }]).unwrap_or_default(),
        }
    }

    fn junit_of(steps: Vec<StepRecord>) -> String {
        let summary = crate::report::summary::of_records(None, "verify", "app", steps);
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("j.xml");
        super::write(&path, &[super::Part::Run { prefix: None, summary: &summary }]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Issue 35: "restorable, content unproven" was a plain `<failure type="failed">`, or a
    /// plain `<skipped>` when the run accepted it, like any other. Now it is its own outcome:
    /// type `unproven` on the failure or the skip, the suite says `content: unproven`, and a
    /// step that passed without a ground truth (a recovery) says so beside its pass. A check
    /// against a ground truth keeps the plain types.
    #[test]
    fn a_check_without_ground_truth_has_its_own_outcome_in_junit() {
        let why = "restorable, content unproven: no manifest; the restored copy has 3 tables, 1000 rows";
        let xml = junit_of(vec![
            check("steps[0]", "recover", Outcome::Passed, "", Some("none")),
            check("steps[1]", "tables", Outcome::Failed, why, Some("none")),
            check("steps[2]", "schema", Outcome::Skipped, "no source fingerprint to compare the schema with", None),
            check("steps[3]", "again", Outcome::Failed, "1 table difference", Some("manifest")),
        ]);
        assert!(xml.contains(&format!("<failure type=\"unproven\" message=\"{why} (at verify.yaml:9:7)\"")), "{xml}");
        assert!(xml.contains("<failure type=\"failed\" message=\"1 table difference"), "{xml}");
        assert!(xml.contains("<skipped message=\"no source fingerprint to compare the schema with\"/>"), "{xml}");
        assert!(xml.contains("content unproven: no ground truth to compare the restored content with"), "{xml}");
        assert!(xml.contains("content: failed"), "the suite's verdict: failed over unproven: {xml}");

        let accepted = format!("{why} (accepted: accept_unproven)");
        let xml = junit_of(vec![check("steps[0]", "tables", Outcome::Skipped, &accepted, Some("none"))]);
        assert!(xml.contains(&format!("<skipped type=\"unproven\" message=\"{accepted}\"/>")), "{xml}");
        assert!(xml.contains("content: unproven"), "{xml}");
        assert!(!xml.contains("<failure"), "{xml}");
    }

    /// Each `<skipped/>` gets its reason in order, a CDATA section's text is left as it is,
    /// and the text is looked at once, byte for byte: from each CDATA section the search for
    /// the next `<skipped/>` went to the end again, so a 10,000-step file was read 10,000 times.
    #[test]
    fn skip_reasons_are_added_in_one_pass_over_the_file() {
        let mut xml = String::from("<testsuites>");
        let mut reasons = Vec::new();
        for i in 0..2000 {
            xml.push_str(&format!("<testcase name=\"s{i}\"><system-out><![CDATA[log <skipped/> {i}]]></system-out>"));
            if i % 500 == 0 {
                xml.push_str("<skipped/>");
                reasons.push(Skip { reason: format!("because \"{i}\" <said>"), unproven: false });
            }
            xml.push_str("</testcase>");
        }
        xml.push_str("<skipped/></testsuites>");
        let mut out = Vec::new();
        let looked = with_skip_reasons(&xml, &reasons, &mut out).unwrap_or_default();
        let out = String::from_utf8_lossy(&out);
        assert_eq!(looked, xml.len(), "every byte looked at once");
        assert_eq!(out.matches("<skipped message=").count(), 4);
        assert!(out.contains("<skipped message=\"because &quot;500&quot; &lt;said&gt;\"/>"), "{out}");
        assert_eq!(out.matches("[log <skipped/> ").count(), 2000, "CDATA text untouched");
        assert!(out.ends_with("<skipped/></testsuites>"), "a reason short: left as it was");
    }
}
