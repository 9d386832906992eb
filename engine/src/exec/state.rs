//! A suite's run state: what stopped it, which steps completed (and so are rolled back when a
//! later one fails), what the rollbacks and `finally` came to, and the one place all of that
//! is summarized into the suite's outcome, exit code and final message.
//!
//! The executor tells it what each step came to and asks it what to do next; it never runs a
//! step, and nothing else decides an outcome, so a failed rollback cannot be shown as "rolled
//! back" nor a failed `finally` step as a passed run.

use super::{ErrorKind, Outcome, Rollback, StepRecord, SuiteOutcome};
use crate::error::{Class, ExitCode};
use crate::plan::PlanStep;
use crate::runbook::{self, StepDef};

/// Everything a suite decides while its steps run.
#[derive(Default)]
pub(super) struct RunState<'rb> {
    /// The first problem that stopped the run: it decides the exit code and leads the message.
    stop: Option<(ExitCode, String)>,
    /// Why the steps after the stop are not run (`step `x` failed`, `interrupted by SIGINT`).
    not_run: String,
    /// Main steps that completed (passed, or failed under `continue_on_error`), in order; a
    /// later failure rolls them back in reverse.
    completed: Vec<&'rb PlanStep<'rb>>,
    /// A rollback that failed or was skipped, for the final message (never "rolled back").
    rollback_problems: Vec<String>,
    /// What rollback steps told the operator (`StepCtx::notice`), for the final message.
    notices: Vec<String>,
    /// The exit code of the first `finally` step that failed.
    finally_failed: Option<ExitCode>,
}

/// How a suite ended, decided once by [`RunState::summarize`].
pub(super) struct Summary {
    pub outcome: SuiteOutcome,
    pub exit: ExitCode,
    pub message: Option<String>,
}

impl<'rb> RunState<'rb> {
    /// Whether a step or a signal has stopped the main steps.
    pub fn stopped(&self) -> bool {
        self.stop.is_some()
    }

    /// Why a main step after the stop is not run.
    pub fn not_run_reason(&self) -> &str {
        &self.not_run
    }

    /// A signal (or what stopped the parent's step) arrived before the next batch.
    pub fn interrupt(&mut self, reason: String) {
        if self.stop.is_none() {
            self.not_run = format!("interrupted by {reason}");
            self.stop = Some((ExitCode::Interrupted, self.not_run.clone()));
        }
    }

    /// What a main step came to: completed (to roll back later), skipped, or the stop.
    pub fn main_step_ended(&mut self, step: &'rb PlanStep<'rb>, rec: &StepRecord) {
        match rec.outcome {
            Outcome::Passed => self.completed.push(step),
            Outcome::Skipped => {}
            _ if step.def.continue_on_error && rec.error_kind != Some(ErrorKind::Interrupted) => {
                self.completed.push(step)
            }
            _ if self.stop.is_some() => {}
            outcome => {
                let message = rec.message.clone().unwrap_or_default();
                self.not_run = format!("step `{}` {}", rec.label, outcome.as_str());
                self.stop = Some((exit_for(rec.error_kind), format!("{}: {message}", self.not_run)));
            }
        }
    }

    /// The completed steps that have rollbacks, last first; none when nothing stopped the run.
    pub fn to_roll_back(&self) -> Vec<&'rb PlanStep<'rb>> {
        if self.stop.is_none() {
            return Vec::new();
        }
        self.completed.iter().rev().filter(|s| !s.rollback.is_empty()).copied().collect()
    }

    /// What the rollback steps of `done` came to; their notices and problems are kept for the
    /// final message.
    pub fn rolled_back(&mut self, done: &StepDef, recs: &[StepRecord]) -> (Rollback, Option<String>) {
        self.notices.extend(recs.iter().filter_map(|r| r.notice.clone()));
        let (result, message) = rollback_result(recs);
        let (of, at, why) = (done.label(), runbook::describe_path(&done.path), message.as_deref().unwrap_or_default());
        match result {
            Rollback::Failed => self
                .rollback_problems
                .push(format!("the rollback of step `{of}` ({at}) FAILED ({why}): what it did may still be in place")),
            Rollback::Skipped => self
                .rollback_problems
                .push(format!("the rollback of step `{of}` ({at}) was skipped ({why}): what it did is still in place")),
            Rollback::RolledBack => {}
        }
        (result, message)
    }

    /// A budget from `targets:` was missed: the run fails unless something stopped it before.
    pub fn budget_missed(&mut self, message: &str) {
        if self.stop.is_none() {
            self.stop = Some((ExitCode::Failed, message.to_string()));
        }
    }

    /// `run.status` and `run.message` for the `finally` steps.
    pub fn status(&self) -> (&'static str, Option<String>) {
        let status = match &self.stop {
            None => "passed",
            Some((ExitCode::Interrupted, _)) => "interrupted",
            Some(_) => "failed",
        };
        (status, self.stop.as_ref().map(|(_, m)| m.clone()))
    }

    /// What a `finally` step came to: the first failure (not under `continue_on_error`) fails
    /// a run that had not failed before.
    pub fn finally_ended(&mut self, step: &StepDef, rec: &StepRecord) {
        if !matches!(rec.outcome, Outcome::Passed | Outcome::Skipped)
            && !step.continue_on_error
            && self.finally_failed.is_none()
        {
            self.finally_failed = Some(exit_for(rec.error_kind));
        }
    }

    /// The suite's outcome, exit code and message: the first stop (else a failed `finally`),
    /// then every rollback problem, then every notice.
    pub fn summarize(self) -> Summary {
        let stop = self.stop.or_else(|| self.finally_failed.map(|code| (code, "a `finally` step failed".into())));
        let (outcome, exit, mut message) = match stop {
            None => (SuiteOutcome::Passed, ExitCode::Passed, None),
            Some((ExitCode::Interrupted, m)) => (SuiteOutcome::Interrupted, ExitCode::Interrupted, Some(m)),
            Some((code, m)) => (SuiteOutcome::Failed, code, Some(m)),
        };
        for extra in self.rollback_problems.iter().chain(&self.notices) {
            message = Some(format!("{}; {extra}", message.unwrap_or_default()));
        }
        Summary { outcome, exit, message }
    }
}

/// The exit code of a step's error class (a step that did not pass without one failed).
fn exit_for(kind: Option<ErrorKind>) -> ExitCode {
    kind.unwrap_or(ErrorKind::Class(Class::Failed)).exit_code()
}

/// What the rollback steps of one completed step came to: rolled back only when every one
/// passed (or was skipped with others passing); otherwise failed or skipped, with why.
fn rollback_result(recs: &[StepRecord]) -> (Rollback, Option<String>) {
    let failed: Vec<String> = recs
        .iter()
        .filter(|r| !matches!(r.outcome, Outcome::Passed | Outcome::Skipped))
        .map(|r| format!("step `{}` {}: {}", r.label, r.outcome.as_str(), r.message.clone().unwrap_or_default()))
        .collect();
    if !failed.is_empty() {
        return (Rollback::Failed, Some(failed.join("; ")));
    }
    if recs.iter().all(|r| r.outcome == Outcome::Skipped) {
        let why: Vec<String> = recs.iter().filter_map(|r| r.message.clone()).collect();
        return (Rollback::Skipped, Some(why.join("; ")));
    }
    (Rollback::RolledBack, None)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::exec::Phase;
    use crate::runbook::Runbook;

    fn runbook() -> Runbook {
        let text = "name: t\nsteps:\n  - id: a\n    uses: sleep\n    with: { duration: 1s }\n    rollback:\n      - uses: sleep\n        with: { duration: 1s }\n  - id: b\n    uses: sleep\n    with: { duration: 1s }\nfinally:\n  - uses: sleep\n    with: { duration: 1s }\n";
        crate::runbook::parse("t.yaml", text, PathBuf::new()).expect("parses")
    }

    fn rec(label: &str, outcome: Outcome, kind: Option<ErrorKind>, message: &str) -> StepRecord {
        StepRecord {
            suite: 0,
            path: String::new(),
            label: label.into(),
            id: None,
            uses: "sleep".into(),
            location: None,
            phase: Phase::Main,
            outcome,
            error_kind: kind,
            started_at: time::OffsetDateTime::now_utc(),
            duration: Duration::ZERO,
            attempts: 1,
            message: Some(message.into()).filter(|m: &String| !m.is_empty()),
            outputs: serde_json::Value::Null,
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        }
    }

    #[test]
    fn a_failed_rollback_is_never_rolled_back_and_reaches_the_message() {
        let rb = runbook();
        let Ok(plan) = crate::plan::Plan::build(&rb) else { panic!("the runbook plans") };
        let steps: Vec<_> = plan.nodes.iter().flat_map(|n| n.steps()).collect();
        let mut state = RunState::default();
        state.main_step_ended(steps[0], &rec("a", Outcome::Passed, None, ""));
        state
            .main_step_ended(steps[1], &rec("b", Outcome::Errored, Some(ErrorKind::Class(Class::Environment)), "gone"));
        assert!(state.stopped());
        assert_eq!(state.not_run_reason(), "step `b` errored");
        let to_roll_back = state.to_roll_back();
        assert_eq!(to_roll_back.len(), 1);
        let (result, _) = state.rolled_back(
            to_roll_back[0].def,
            &[rec("undo", Outcome::Failed, Some(ErrorKind::Class(Class::Failed)), "no")],
        );
        assert_eq!(result, Rollback::Failed);
        let s = state.summarize();
        assert_eq!((s.outcome, s.exit), (SuiteOutcome::Failed, ExitCode::Environment));
        let m = s.message.unwrap_or_default();
        assert!(m.starts_with("step `b` errored: gone; the rollback of step `a`"), "{m}");
        assert!(m.contains("FAILED (step `undo` failed: no)"), "{m}");
    }

    #[test]
    fn a_failed_finally_step_fails_a_passing_run_and_the_first_stop_wins() {
        let rb = runbook();
        let Ok(plan) = crate::plan::Plan::build(&rb) else { panic!("the runbook plans") };
        let steps: Vec<_> = plan.nodes.iter().flat_map(|n| n.steps()).collect();
        let mut state = RunState::default();
        state.main_step_ended(steps[0], &rec("a", Outcome::Passed, None, ""));
        assert!(state.to_roll_back().is_empty(), "nothing failed: nothing is rolled back");
        assert_eq!(state.status().0, "passed");
        state.finally_ended(&rb.finally[0], &rec("f", Outcome::Errored, Some(ErrorKind::Class(Class::Invalid)), "bad"));
        let s = state.summarize();
        assert_eq!((s.outcome, s.exit), (SuiteOutcome::Failed, ExitCode::Invalid));
        assert_eq!(s.message.as_deref(), Some("a `finally` step failed"));

        let mut state = RunState::default();
        state.interrupt("SIGINT".into());
        state.main_step_ended(steps[1], &rec("b", Outcome::Failed, Some(ErrorKind::Class(Class::Failed)), "late"));
        state.budget_missed("rto exceeds budget");
        let s = state.summarize();
        assert_eq!((s.outcome, s.exit), (SuiteOutcome::Interrupted, ExitCode::Interrupted));
        assert_eq!(s.message.as_deref(), Some("interrupted by SIGINT"));
    }
}
