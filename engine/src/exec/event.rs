//! The event stream: the only way the executor tells the world what happened.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Class, ExitCode};
// What a step tells: its outcome and facts are the step contract's words, kept beside it.
pub use crate::facts::{BackupRole, Fact, Objective, Outcome};
use time::OffsetDateTime;

/// What became of a completed step's rollback after a later failure. A fact added to the
/// step's record: the step's own outcome (passed, or failed under `continue_on_error`) stays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollback {
    /// Every rollback step passed.
    RolledBack,
    /// A rollback step failed: the step's effect may still be there.
    Failed,
    /// No rollback step ran (`when:` was false for all of them).
    Skipped,
}

impl Rollback {
    pub fn as_str(self) -> &'static str {
        match self {
            Rollback::RolledBack => "rolled back",
            Rollback::Failed => "rollback FAILED",
            Rollback::Skipped => "rollback skipped",
        }
    }
}

/// Which part of a runbook a step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Phase {
    Main,
    /// A rollback step of the completed step `of`.
    Rollback {
        of: String,
    },
    Finally,
    /// A budget from `targets:` checked after the steps.
    Budget,
}

/// Which step an event is about: its suite, its position in the file (`steps[2]`,
/// `steps[1].parallel[0]`, `finally[0]`: unique within a suite whatever its label) and the
/// label reports show. Reporters tell steps apart by `(suite, path)`, never by label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepId {
    pub suite: usize,
    pub path: String,
    /// What it is called in reports: `name:`, else `id:`, else its kind and line.
    pub label: String,
}

impl StepId {
    pub fn new(suite: usize, path: impl Into<String>, label: impl Into<String>) -> Self {
        StepId { suite, path: path.into(), label: label.into() }
    }
}

/// The finished record of one step (or rollback, finally step, budget). Also read back from
/// run.json (`Deserialize`) by a fleet run, which summarises its targets' runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub suite: usize,
    /// The step's identity: its position in the file (`steps[2]`, `steps[1].parallel[0]`,
    /// `steps[2].rollback[0]`, `finally[0]`), unique within a suite whatever its label.
    pub path: String,
    /// What it is called in reports: `name:`, else `id:`, else its kind and line.
    pub label: String,
    pub id: Option<String>,
    pub uses: String,
    /// Where the step is written: `FILE:LINE:COL` of its runbook (none for a budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub phase: Phase,
    pub outcome: Outcome,
    /// The exit-code class of a failure: `failed`, `environment`, `invalid`, `interrupted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(serialize_with = "as_secs", deserialize_with = "from_secs")]
    pub duration: Duration,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub outputs: serde_json::Value,
    pub log: Vec<String>,
    /// Set when a later failure made its rollback run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<Rollback>,
    /// What a rollback step said must reach the run's final message (`StepCtx::notice`).
    #[serde(skip)]
    pub notice: Option<String>,
    /// What the step established for the reports (`StepCtx::fact`): reporters read these,
    /// never the step's kind or its output names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<Fact>,
}

impl StepRecord {
    /// The step's identity, as the events before its record named it.
    pub fn id(&self) -> StepId {
        StepId::new(self.suite, self.path.clone(), self.label.clone())
    }
}

/// What class of problem ended a step: an error's [`Class`], or the run's interruption.
/// Serialized as the class (`failed`, `invalid`, `environment`) or `interrupted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Class(Class),
    Interrupted,
}

impl From<Class> for ErrorKind {
    fn from(c: Class) -> Self {
        ErrorKind::Class(c)
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ErrorKind::Class(c) => c.serialize(s),
            ErrorKind::Interrupted => s.serialize_str("interrupted"),
        }
    }
}

impl<'de> Deserialize<'de> for ErrorKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "interrupted" => Ok(ErrorKind::Interrupted),
            _ => Class::ALL
                .into_iter()
                .find(|c| serde_json::to_value(c).ok().and_then(|v| v.as_str().map(|v| v == name)).unwrap_or(false))
                .map(ErrorKind::Class)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown error kind `{name}`"))),
        }
    }
}

impl ErrorKind {
    /// The exit code of a run this ended: its class's ([`Class::exit_code`]), or 130.
    pub fn exit_code(self) -> ExitCode {
        match self {
            ErrorKind::Class(c) => c.exit_code(),
            ErrorKind::Interrupted => ExitCode::Interrupted,
        }
    }
}

/// How a suite (one runbook) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteOutcome {
    Passed,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone)]
// A step's record is most of the traffic; boxing it would only move the size around.
#[allow(clippy::large_enum_variant)]
pub enum Event {
    SuiteStarted {
        suite: usize,
        parent: Option<usize>,
        name: String,
        file: String,
        /// What the runbook declares it is (`kind:`), if it does.
        kind: Option<crate::runbook::RunKind>,
        started_at: OffsetDateTime,
    },
    StepStarted {
        step: StepId,
        uses: String,
        phase: Phase,
        /// The step talks to the operator on the terminal (`StepKind::interactive`).
        interactive: bool,
        /// The step's log is what it reports: shown in full, not only on failure
        /// (`StepKind::report_log`).
        report_log: bool,
    },
    StepRetrying {
        step: StepId,
        attempt: u32,
        attempts: u32,
        message: String,
        delay: Duration,
    },
    StepLog {
        step: StepId,
        line: String,
    },
    /// Bytes a running step has moved so far (a dump, a staging pass, a restore), and the
    /// expected total when known.
    StepProgress {
        step: StepId,
        done: u64,
        total: Option<u64>,
    },
    StepFinished(StepRecord),
    /// A completed step's rollback ran (or was skipped); the step keeps its outcome.
    StepRolledBack {
        step: StepId,
        result: Rollback,
        /// Why a rollback failed or was skipped.
        message: Option<String>,
    },
    SuiteFinished {
        suite: usize,
        name: String,
        outcome: SuiteOutcome,
        /// The exit code the run of this suite comes to: an environment error (3) or invalid
        /// input (2) is not a failed check, and the history keeps them apart.
        exit: crate::error::ExitCode,
        duration: Duration,
        message: Option<String>,
    },
}

fn from_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// run.json names an error kind as it always did: its class, or `interrupted`.
    #[test]
    fn an_error_kind_serializes_as_its_class_or_interrupted() {
        let kinds = [Class::Failed, Class::Invalid, Class::Environment].map(ErrorKind::from);
        let names: Vec<String> = kinds.iter().map(|k| serde_json::to_string(k).expect("json")).collect();
        assert_eq!(names, [r#""failed""#, r#""invalid""#, r#""environment""#]);
        assert_eq!(serde_json::to_string(&ErrorKind::Interrupted).expect("json"), r#""interrupted""#);
        assert_eq!(ErrorKind::Interrupted.exit_code(), ExitCode::Interrupted);
        for c in Class::ALL {
            assert_eq!(ErrorKind::from(c).exit_code(), c.exit_code());
        }
    }
}
