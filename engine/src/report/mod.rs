//! Reporters: independent consumers of the executor's event stream.
//!
//! Each keeps what it needs from the events and writes its output; none influences the run.
//! Events arrive already redacted.

pub mod charts;
pub mod compliance;
mod json;
mod junit;
pub mod lock;
pub mod notify;
pub mod remote;
mod smtp;
mod terminal;

use std::io::Write;
use std::path::Path;

pub use json::JsonRecord;
pub use junit::Junit;
pub use terminal::Terminal;

use crate::exec::{Phase, StepRecord};
use crate::Error;

/// The name a step has in reports: rollbacks and `finally` steps say what they are.
pub fn display_name(rec: &StepRecord) -> String {
    match &rec.phase {
        Phase::Main | Phase::Budget => rec.label.clone(),
        Phase::Rollback { of } => format!("rollback of {of}: {}", rec.label),
        Phase::Finally => format!("finally: {}", rec.label),
    }
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
        } else {
            out.push(c);
        }
    }
    out
}

/// Text for the inside of a CDATA section, which is written as is: `]]>` would end it, so it
/// is split across two sections (`]]` `]]><![CDATA[` `>`).
pub fn cdata_text(s: &str) -> String {
    xml_text(s).replace("]]>", "]]]]><![CDATA[>")
}

/// Collected suites, in start order, shared by the file reporters.
#[derive(Debug, Default)]
struct Suites {
    list: Vec<SuiteData>,
}

#[derive(Debug)]
struct SuiteData {
    id: usize,
    parent: Option<usize>,
    name: String,
    file: String,
    /// What the runbook declares it is (`kind:`), if it does.
    kind: Option<crate::runbook::RunKind>,
    started_at: time::OffsetDateTime,
    outcome: Option<crate::exec::SuiteOutcome>,
    exit: Option<crate::error::ExitCode>,
    duration: std::time::Duration,
    message: Option<String>,
    steps: Vec<StepRecord>,
}

impl Suites {
    fn on_event(&mut self, e: &crate::exec::Event) {
        use crate::exec::Event;
        match e {
            Event::SuiteStarted { suite, parent, name, file, kind, started_at } => self.list.push(SuiteData {
                id: *suite,
                parent: *parent,
                name: name.clone(),
                file: file.clone(),
                kind: *kind,
                started_at: *started_at,
                outcome: None,
                exit: None,
                duration: std::time::Duration::ZERO,
                message: None,
                steps: Vec::new(),
            }),
            Event::StepFinished(rec) => {
                if let Some(s) = self.get(rec.suite) {
                    s.steps.push(rec.clone());
                }
            }
            Event::StepRolledBack { suite, path, result, .. } => {
                // By position, not label: two steps may share a `name:`.
                if let Some(s) = self.get(*suite) {
                    if let Some(r) = s.steps.iter_mut().rev().find(|r| r.phase == Phase::Main && &r.path == path) {
                        r.rollback = Some(*result);
                    }
                }
            }
            Event::SuiteFinished { suite, outcome, exit, duration, message, .. } => {
                if let Some(s) = self.get(*suite) {
                    s.outcome = Some(*outcome);
                    s.exit = Some(*exit);
                    s.duration = *duration;
                    s.message = message.clone();
                }
            }
            _ => {}
        }
    }

    fn get(&mut self, id: usize) -> Option<&mut SuiteData> {
        self.list.iter_mut().find(|s| s.id == id)
    }
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
    write(tmp.as_file_mut()).map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    tmp.persist(path).map_err(|e| Error::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

pub use crate::util::human_bytes;
