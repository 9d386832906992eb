//! Reporters: independent consumers of the executor's event stream.
//!
//! Each keeps what it needs from the events and writes its output; none influences the run.
//! Events arrive already redacted.

pub mod charts;
pub mod compliance;
mod json;
pub mod junit;
pub mod lock;
pub mod notify;
pub mod oncall;
pub mod pdf;
pub mod probe;
pub mod remote;
pub mod signed;
mod smtp;
pub mod summary;
mod terminal;

use std::io::Write;
use std::path::Path;

pub use json::JsonRecord;
pub use junit::Junit;
pub use summary::{RunRecord, RunSummary};
pub use terminal::Terminal;

use crate::exec::{Event, Phase, StepRecord};
use crate::redact::Redactor;
use crate::Error;

/// A reporter: it may follow the run as it goes (`on_event`, the terminal does), and it
/// writes or sends its output once at the end from the run's summary (`finish`). Adding a
/// sink is a file implementing this and one line where the command line lists them
/// (ARCHITECTURE.md, "Adding a sink").
pub trait ReportSink: Send {
    /// An event of the run, already redacted, as it happens.
    fn on_event(&mut self, _event: &Event) {}
    /// Once after the run, with the summary built from every event.
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()>;
}

/// The run's reporters behind the executor's one `Reporter`: every event goes to each of
/// them and into the one summary, which each of them gets at the end.
pub struct Reports {
    builder: summary::SummaryBuilder,
    sinks: Vec<Box<dyn ReportSink>>,
    redactor: Redactor,
    database: String,
}

impl Reports {
    /// `database` is what the run is about as its caller knows it (its `database` variable,
    /// else the database of its `database_url`; may be empty): it labels metrics and alerts,
    /// so a run that fails before any step names a database is still filed under it.
    pub fn new(redactor: Redactor, database: String, sinks: Vec<Box<dyn ReportSink>>) -> Self {
        Reports { builder: summary::SummaryBuilder::default(), sinks, redactor, database }
    }
}

impl crate::exec::Reporter for Reports {
    fn on_event(&mut self, event: &Event) {
        self.builder.on_event(event);
        for s in self.sinks.iter_mut() {
            s.on_event(event);
        }
    }

    /// Every sink is tried; the first error wins.
    fn finish(&mut self) -> crate::Result<()> {
        // Once, at the end: the builder's records become the summary's.
        let summary = std::mem::take(&mut self.builder).into_summary(&self.redactor, &self.database);
        let mut first = Ok(());
        for s in self.sinks.iter_mut() {
            if let Err(e) = s.finish(&summary) {
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// The name a step has in reports: rollbacks and `finally` steps say what they are.
pub fn display_name(rec: &StepRecord) -> String {
    match &rec.phase {
        Phase::Main | Phase::Budget => rec.label.clone(),
        Phase::Rollback { of } => format!("rollback of {of}: {}", rec.label),
        Phase::Finally => format!("finally: {}", rec.label),
    }
}

/// Every step of the run, suite by suite as its record lists them, as a check in a report:
/// what each report says of a check (suite, place, name, kind, seconds, message) and the
/// fields `own` adds, which are the report's own (the compliance report's outcome, the
/// signed statement's verdict and ground truth).
pub fn checks(run: &RunSummary, own: impl Fn(&StepRecord) -> serde_json::Value) -> Vec<serde_json::Value> {
    let mut checks = Vec::new();
    for suite in &run.record.suites {
        for s in &suite.steps {
            let mut check = serde_json::json!({
                "suite": suite.name,
                "step": s.path,
                "name": display_name(s),
                "uses": s.uses,
                "duration_s": summary::secs(s.duration),
                "message": s.message,
            });
            if let (Some(check), serde_json::Value::Object(own)) = (check.as_object_mut(), own(s)) {
                check.extend(own);
            }
            checks.push(check);
        }
    }
    checks
}

pub use crate::util::visible;

/// Text that is a valid XML 1.0 character sequence: characters XML forbids (most control
/// characters) and the discouraged C1 controls shown as `\x1b`, like the terminal shows them.
pub fn xml_text(s: &str) -> String {
    let bad = |c: char| {
        let n = c as u32;
        (n < 0x20 && !matches!(c, '\t' | '\n' | '\r')) || (0x7f..=0x9f).contains(&n) || matches!(n, 0xfffe | 0xffff)
    };
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if bad(c) {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else if crate::util::is_bidi_control(c) {
            // Valid XML, but it reorders what a reader of the report or the CI page sees.
            out.push_str(&format!("\\u{{{:04x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Text as an XML attribute value or element content outside CDATA (JUnit's skip reasons,
/// the charts' SVG): `xml_text`, with markup's characters escaped and a newline kept as one
/// (an attribute's raw newline reads back as a space).
pub fn xml_escaped(s: &str) -> String {
    xml_text(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
}

/// Text for the inside of a CDATA section, which is written as is: `]]>` would end it, so it
/// is split across two sections (`]]` `]]><![CDATA[` `>`).
pub fn cdata_text(s: &str) -> String {
    xml_text(s).replace("]]>", "]]]]><![CDATA[>")
}

/// Write a file atomically: a temp file beside it, then rename, so readers never see half.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> crate::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(&dir).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    // Buffered: serde_json writes a token at a time, and unbuffered that was a system call per
    // token (a 10,000-step run.json took hundreds of thousands of writes).
    let mut buf = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
    write(&mut buf).and_then(|()| buf.flush()).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    drop(buf);
    tmp.as_file().sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path).map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

pub use crate::util::human_bytes;

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::exec::{Fact, SuiteOutcome};

    /// Issue 37: the compliance report and the signed statement each built a run's checks in
    /// their own copy of one loop; they share `checks` now, and each entry holds exactly the
    /// fields it held.
    #[test]
    fn each_report_s_checks_hold_the_fields_they_held() {
        let run = summary::of_steps(None, vec![("shell.run", vec![]), ("sleep", vec![])]);
        let keys = |c: &serde_json::Value| c.as_object().expect("a check").keys().cloned().collect::<Vec<_>>();
        let report = compliance::build(&run);
        let checks = report["checks"].as_array().expect("checks");
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert_eq!(
            keys(&checks[1]),
            ["content", "duration_s", "message", "name", "outcome", "rollback", "step", "suite", "uses"]
        );
        let c = &checks[1];
        assert!(
            c["step"] == "steps[1]" && c["name"] == "s1" && c["uses"] == "sleep" && c["outcome"] == "passed",
            "{c}"
        );
        let statement = signed::statement(&run, "00");
        let checks = statement.predicate["checks"].as_array().expect("checks");
        assert_eq!(checks.len(), 2, "{checks:?}");
        assert_eq!(
            keys(&checks[0]),
            ["duration_s", "ground_truth", "location", "message", "name", "step", "suite", "uses", "verdict"]
        );
        let c = &checks[0];
        assert!(c["step"] == "steps[0]" && c["uses"] == "shell.run" && c["verdict"] == "passed", "{c}");
    }

    /// Issue 37: compliance and the terminal picked a step's warnings out of its log by the
    /// text `warning: `, so a line a script printed became a warning of the run, and a
    /// step's warning was known only by its wording. A step now tells a warning
    /// (`StepCtx::warn`, `Fact::Warning`): through the run's sink it reaches the terminal
    /// and, from the summary, the compliance report by its kind, masked like every text,
    /// with its step; a log line that only begins the same way is not one.
    #[test]
    fn a_warning_is_known_by_its_kind_not_by_a_log_line_that_begins_with_warning() {
        let secret = "Zq8-warn-secret-5521";
        let told = format!("this backup is NOT encrypted (storage /b/{secret})");
        let plain = "warning: a script's own line, logged as text";
        let made = summary::of_steps(None, vec![("backup.create", vec![Fact::Warning { text: told.clone() }])]);
        let mut rec = made.record.suites[0].steps[0].clone();
        rec.log = vec![format!("warning: {told}"), plain.to_string()];

        struct Keep(Arc<Mutex<Option<RunSummary>>>);
        impl ReportSink for Keep {
            fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
                *self.0.lock().expect("lock") = Some(summary.clone());
                Ok(())
            }
        }
        let (terminal, shown) = terminal::Terminal::capturing();
        let kept = Arc::default();
        let redactor = Redactor::default();
        redactor.add(secret);
        let sinks: Vec<Box<dyn ReportSink>> = vec![Box::new(terminal), Box::new(Keep(Arc::clone(&kept)))];
        let reports = Reports::new(redactor.clone(), String::new(), sinks);
        let sink = crate::exec::Sink::new(redactor, vec![Box::new(reports)]);
        let started_at = time::OffsetDateTime::now_utc();
        sink.emit(Event::SuiteStarted {
            suite: 0,
            parent: None,
            name: "r".into(),
            file: "r.yaml".into(),
            kind: None,
            started_at,
        });
        sink.emit(Event::StepFinished(rec));
        sink.emit(Event::SuiteFinished {
            suite: 0,
            name: "r".into(),
            outcome: SuiteOutcome::Passed,
            exit: crate::error::ExitCode::Passed,
            duration: std::time::Duration::ZERO,
            message: None,
        });
        sink.finish().expect("finish");

        let masked = told.replace(secret, crate::redact::MASK);
        let shown = shown.lock().expect("lock").clone();
        let warned: Vec<&String> = shown.iter().filter(|l| l.contains("warning")).collect();
        assert_eq!(warned, [&format!("      warning: {masked}")], "the terminal: {shown:?}");
        let summary = kept.lock().expect("lock").clone().expect("a summary");
        assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
        assert_eq!(summary.warnings[0].step, crate::exec::StepId::new(0, "steps[0]", "s0"));
        assert_eq!(summary.warnings[0].text, masked);
        let report = compliance::build(&summary);
        assert_eq!(report["warnings"], serde_json::json!([{ "suite": "r", "name": "s0", "warning": masked }]));
        // The user's log is what it was: both lines, the told one as `warning: ...`.
        let log = &summary.record.suites[0].steps[0].log;
        assert_eq!(log, &[format!("warning: {masked}"), plain.to_string()]);
    }

    /// One escaper for JUnit's attributes and the charts' SVG (there were two, one of which
    /// kept a newline raw): markup, forbidden characters and newlines all survive a reader.
    #[test]
    fn escaped_text_is_one_well_formed_attribute_value() {
        assert_eq!(
            super::xml_escaped("a \"b\" <c> & d\ne\u{1b}f\u{202e}"),
            "a &quot;b&quot; &lt;c&gt; &amp; d&#10;e\\x1bf\\u{202e}"
        );
    }
}
