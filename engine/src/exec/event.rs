//! The event stream: the only way the executor tells the world what happened.

use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Errored,
    TimedOut,
    Skipped,
    /// Passed, then undone by its rollback after a later failure.
    RolledBack,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Errored => "errored",
            Outcome::TimedOut => "timed out",
            Outcome::Skipped => "skipped",
            Outcome::RolledBack => "rolled back",
        }
    }
}

/// Which part of a runbook a step belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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

/// The finished record of one step (or rollback, finally step, budget).
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub suite: usize,
    pub label: String,
    pub id: Option<String>,
    pub uses: String,
    pub phase: Phase,
    pub outcome: Outcome,
    /// The exit-code class of a failure: `failed`, `environment`, `invalid`, `interrupted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(serialize_with = "as_secs")]
    pub duration: Duration,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub outputs: serde_json::Value,
    pub log: Vec<String>,
}

/// What class of problem ended a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Failed,
    Environment,
    Invalid,
    Interrupted,
}

/// How a suite (one runbook) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SuiteOutcome {
    Passed,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone)]
pub enum Event {
    SuiteStarted {
        suite: usize,
        parent: Option<usize>,
        name: String,
        file: String,
        started_at: OffsetDateTime,
    },
    StepStarted {
        suite: usize,
        label: String,
        uses: String,
        phase: Phase,
    },
    StepRetrying {
        suite: usize,
        label: String,
        attempt: u32,
        attempts: u32,
        message: String,
        delay: Duration,
    },
    StepLog {
        suite: usize,
        label: String,
        line: String,
    },
    StepFinished(StepRecord),
    /// A completed step's rollback ran; its outcome is now `rolled_back`.
    StepRolledBack {
        suite: usize,
        label: String,
    },
    SuiteFinished {
        suite: usize,
        name: String,
        outcome: SuiteOutcome,
        duration: Duration,
        message: Option<String>,
    },
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}
