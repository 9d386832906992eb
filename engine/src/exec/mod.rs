//! The executor: runs a runbook's steps in order with `when`, `timeout`, `retry`,
//! `continue_on_error` and `rollback`, then `finally`, and reports everything as events.
//!
//! It never prints. Every event passes through the run's redactor before any reporter sees
//! it (`sink.rs`), so a secret's value cannot reach the terminal, JUnit or run.json.
//! Cancellation (SIGINT/SIGTERM) stops the running main step; rollbacks and `finally` still
//! run, and are not themselves cancelled, because an interrupted restore must still be rolled
//! back. This file orders the steps; one step's attempts are in `attempt.rs`, what the run
//! decides as it goes (and its outcome) in `state.rs`, what templates read in `scope.rs`, and
//! a nested runbook's way back in `nested.rs`. Loading runbooks and typing `--var` values is
//! `runbook/`'s job.

mod attempt;
pub mod event;
mod nested;
mod operator;
mod preflight;
mod scope;
pub mod signal;
mod sink;
mod state;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use event::{
    BackupRole, ErrorKind, Event, Fact, Objective, Outcome, Phase, Rollback, StepId, StepRecord, SuiteOutcome,
};
pub use sink::{Reporter, Sink};

use crate::error::{Class, ExitCode};
use crate::redact::Redactor;
use crate::runbook::{self, Runbook, StepDef};
// Loading moved to `runbook/`; these paths stay for callers of the library.
pub use crate::runbook::{load_checked, load_runbook_ref, overrides_from_pairs, VarMap, MAX_NESTING};
use crate::steps::Resources;
use crate::{template, Error};
use attempt::Stopper;
use scope::{store_outputs, Scope};
use state::{RunState, Summary};

/// What stops a suite's running steps, and how to say why: the run's signal at the top; for
/// a nested runbook, also the timeout of the step that runs it or the failure of a sibling
/// of that step. The nested suite sees them all as one token, so it stops its own step and
/// runs its own rollbacks and `finally` before the parent's.
#[derive(Clone)]
struct Cancel {
    token: CancellationToken,
    why: Arc<dyn Fn() -> String + Send + Sync>,
}

impl Cancel {
    fn reason(&self) -> String {
        (self.why)()
    }
}

/// What a suite inherits from the step that started it.
#[derive(Clone)]
struct SuiteCtx {
    cancel: Cancel,
    /// Files of the runbooks that nest this one, outermost first, this one last.
    chain: Vec<String>,
}

/// How a runbook run ended.
#[derive(Debug, Clone)]
pub struct SuiteResult {
    pub outcome: SuiteOutcome,
    pub exit: ExitCode,
    pub message: Option<String>,
    /// Outputs of the steps that ran, by step id.
    pub outputs: Map<String, Json>,
}

/// Runs runbooks; one per process invocation (nested runbooks share it).
pub struct Executor {
    sink: Sink,
    redactor: Redactor,
    cancel: CancellationToken,
    /// Which signal cancelled the run, for messages.
    cause: Arc<Mutex<Option<String>>>,
    next_suite: AtomicUsize,
    /// `--yes`: confirmation steps pass without asking.
    assume_yes: AtomicBool,
    /// `--rto`: the recovery objective of the drill's `drill.rto` steps.
    rto_objective: Mutex<Option<Duration>>,
    me: Weak<Executor>,
}

impl Executor {
    pub fn new(
        sink: Sink,
        redactor: Redactor,
        cancel: CancellationToken,
        cause: Arc<Mutex<Option<String>>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Executor {
            sink,
            redactor,
            cancel,
            cause,
            next_suite: AtomicUsize::new(0),
            assume_yes: AtomicBool::new(false),
            rto_objective: Mutex::new(None),
            me: me.clone(),
        })
    }

    /// Confirm on the operator's behalf (`pgdrill run --yes`).
    pub fn assume_yes(&self, yes: bool) {
        self.assume_yes.store(yes, Ordering::SeqCst);
    }

    /// Hold every `drill.rto` step to this recovery time objective instead of its `target`
    /// (`pgdrill run --rto`).
    pub fn rto_objective(&self, rto: Option<Duration>) {
        if let Ok(mut r) = self.rto_objective.lock() {
            *r = rto;
        }
    }

    pub fn sink(&self) -> &Sink {
        &self.sink
    }

    /// Run a runbook as a suite. `overrides` are `--var` values (or a nested step's `vars`).
    /// Errors are returned only for problems found before the first step starts.
    pub async fn run(
        &self,
        rb: &Runbook,
        overrides: &serde_yaml::Mapping,
        parent: Option<usize>,
    ) -> Result<SuiteResult, Error> {
        self.run_with_secrets(rb, overrides, &Map::new(), parent).await
    }

    /// `run`, with secret values a parent runbook hands down (a nested `runbook` step's
    /// `secrets:`) taking the place of the declared sources.
    pub async fn run_with_secrets(
        &self,
        rb: &Runbook,
        overrides: &serde_yaml::Mapping,
        given: &Map<String, Json>,
        parent: Option<usize>,
    ) -> Result<SuiteResult, Error> {
        let cause = self.cause.clone();
        let why = move || cause.lock().ok().and_then(|c| c.clone()).unwrap_or_else(|| "a signal".into());
        let cx = SuiteCtx {
            cancel: Cancel { token: self.cancel.clone(), why: Arc::new(why) },
            chain: vec![rb.file.clone()],
        };
        self.run_suite(rb, overrides, given, parent, cx).await
    }

    async fn run_suite(
        &self,
        rb: &Runbook,
        overrides: &serde_yaml::Mapping,
        given: &Map<String, Json>,
        parent: Option<usize>,
        cx: SuiteCtx,
    ) -> Result<SuiteResult, Error> {
        let env: Map<String, Json> = std::env::vars().map(|(k, v)| (k, Json::String(v))).collect();
        let secrets = scope::load_secrets(&self.redactor, rb, given)?;
        let vars = runbook::resolve_vars(rb, overrides, &env)?;
        let lets = runbook::resolve_lets(rb, &vars, &env)?;
        preflight::check(rb, &vars, &lets, &env)?;
        crate::runbook::register_run_inputs(&self.redactor, rb, &vars, &env, &secrets);
        let run = json!({ "status": "running", "message": null, "elapsed_s": 0 });
        let run = run.as_object().cloned().unwrap_or_default();
        let mut scope =
            Scope { cx, resources: Resources::default(), vars, lets, env, secrets, steps: Arc::default(), run };

        let suite = self.next_suite.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        self.sink.emit(Event::SuiteStarted {
            suite,
            parent,
            name: rb.name.clone(),
            file: rb.file.clone(),
            kind: rb.kind,
            started_at: OffsetDateTime::now_utc(),
        });

        let mut state = RunState::default();
        let mut next = 0;
        while next < rb.steps.len() {
            // One step, or every step of a `parallel` group.
            let batch = match rb.steps[next].group {
                Some(g) => {
                    let n = rb.steps[next..].iter().take_while(|s| s.group == Some(g)).count();
                    &rb.steps[next..next + n]
                }
                None => &rb.steps[next..=next],
            };
            next += batch.len();
            if scope.cx.cancel.token.is_cancelled() {
                state.interrupt(scope.cx.cancel.reason());
            }
            if state.stopped() {
                for step in batch {
                    self.emit_not_run(suite, rb, step, Phase::Main, state.not_run_reason());
                }
                continue;
            }
            let recs = if let Some(recs) = self.group_skipped(suite, rb, &mut scope, batch) {
                recs
            } else if batch.len() == 1 {
                vec![self.run_step(suite, rb, &mut scope, &batch[0], Phase::Main, true).await]
            } else {
                self.run_group(suite, rb, &mut scope, batch).await
            };
            for (step, rec) in batch.iter().zip(&recs) {
                state.main_step_ended(step, rec);
            }
        }

        for done in state.to_roll_back() {
            let of = done.label();
            let mut recs = Vec::new();
            for rbk in &done.rollback {
                recs.push(self.run_step(suite, rb, &mut scope, rbk, Phase::Rollback { of: of.clone() }, false).await);
            }
            let (result, message) = state.rolled_back(done, &recs);
            self.sink.emit(Event::StepRolledBack { step: StepId::new(suite, done.path.clone(), of), result, message });
        }

        if let Some(target) = rb.targets.rto {
            let took = started.elapsed();
            let ok = took <= target;
            let msg = format!(
                "rto {:.1} s {} {}",
                took.as_secs_f64(),
                if ok { "within" } else { "exceeds budget" },
                humantime::format_duration(target)
            );
            self.emit_budget(suite, "rto", (took, target), ok, &msg);
            if !ok {
                state.budget_missed(&msg);
            }
        }

        let (status, message) = state.status();
        scope.run.insert("status".into(), json!(status));
        scope.run.insert("message".into(), json!(message));
        scope.run.insert("elapsed_s".into(), json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0));
        for step in &rb.finally {
            let rec = self.run_step(suite, rb, &mut scope, step, Phase::Finally, false).await;
            state.finally_ended(step, &rec);
        }
        // Servers and other resources end with the runbook, after `finally` used them.
        for (what, r) in scope.resources.drain() {
            self.sink.emit(Event::StepLog {
                step: StepId::new(suite, "teardown", "teardown"),
                line: format!("tearing down {what}"),
            });
            r.teardown().await;
        }

        let Summary { outcome, exit, message } = state.summarize();
        self.sink.emit(Event::SuiteFinished {
            suite,
            name: rb.name.clone(),
            outcome,
            exit,
            duration: started.elapsed(),
            message: message.clone(),
        });
        Ok(SuiteResult { outcome, exit, message, outputs: Arc::unwrap_or_clone(scope.steps) })
    }

    fn emit_not_run(&self, suite: usize, rb: &Runbook, step: &StepDef, phase: Phase, why: &str) {
        self.sink.emit(Event::StepFinished(StepRecord {
            suite,
            path: step.path.clone(),
            label: step.label(),
            id: step.id.clone(),
            uses: step.uses.clone(),
            location: Some(location(rb, step)),
            phase,
            outcome: Outcome::Skipped,
            error_kind: None,
            started_at: OffsetDateTime::now_utc(),
            duration: Duration::ZERO,
            attempts: 0,
            message: Some(format!("not run: {why}")),
            outputs: Json::Object(Map::new()),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        }));
    }

    /// A budget's record: what it measured and its target in its outputs, for every report.
    fn emit_budget(&self, suite: usize, name: &str, (took, target): (Duration, Duration), ok: bool, msg: &str) {
        let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        self.sink.emit(Event::StepFinished(StepRecord {
            suite,
            path: format!("targets.{name}"),
            label: msg.to_string(),
            id: Some(name.to_string()),
            uses: "budget".into(),
            location: None,
            phase: Phase::Budget,
            outcome: if ok { Outcome::Passed } else { Outcome::Failed },
            error_kind: if ok { None } else { Some(ErrorKind::Class(Class::Failed)) },
            started_at: OffsetDateTime::now_utc(),
            duration: took,
            attempts: 1,
            message: Some(msg.to_string()),
            outputs: json!({ "measured_s": secs(took), "target_s": secs(target) }),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        }));
    }

    /// Run one step with its `when`, rendering, retries and timeout; emit its record and
    /// keep its outputs for the steps after it.
    async fn run_step(
        &self,
        suite: usize,
        rb: &Runbook,
        scope: &mut Scope,
        step: &StepDef,
        phase: Phase,
        cancellable: bool,
    ) -> StepRecord {
        let cancel =
            if cancellable { Some(Stopper::new(scope.cx.cancel.token.clone(), &scope.cx.cancel)) } else { None };
        let rec = self.execute(suite, rb, scope, step, phase, cancel.as_ref()).await;
        store_outputs(scope, step, &rec);
        rec
    }

    /// A `parallel` group's `when`, evaluated once before any of its steps: when false, every
    /// step of the group is recorded as skipped with the reason (and an error in the condition
    /// is every step's error). `None` when the group runs.
    fn group_skipped(
        &self,
        suite: usize,
        rb: &Runbook,
        scope: &mut Scope,
        batch: &[StepDef],
    ) -> Option<Vec<StepRecord>> {
        let cond = batch.first()?.group_when.as_deref()?;
        let env = template::environment();
        let (outcome, kind, message) = match template::eval_condition(&env, cond, &scope.context()) {
            Ok(true) => return None,
            Ok(false) => {
                (Outcome::Skipped, None, format!("skipped: `when: {}` of its `parallel` group is false", cond.trim()))
            }
            Err(e) => (
                Outcome::Errored,
                Some(ErrorKind::Class(Class::Invalid)),
                format!(
                    "template error in runbook `{}`, {}, field `when`: {}",
                    rb.name,
                    runbook::describe_path(batch[0].path.split(".parallel").next().unwrap_or_default()),
                    template::describe(&e)
                ),
            ),
        };
        let recs: Vec<StepRecord> = batch
            .iter()
            .map(|step| {
                let rec = self.not_run(suite, rb, step, outcome, kind, message.clone());
                store_outputs(scope, step, &rec);
                rec
            })
            .collect();
        Some(recs)
    }

    /// The record of a step that did not run (skipped, or an error before it could start),
    /// emitted as finished.
    fn not_run(
        &self,
        suite: usize,
        rb: &Runbook,
        step: &StepDef,
        outcome: Outcome,
        kind: Option<ErrorKind>,
        message: String,
    ) -> StepRecord {
        let rec = StepRecord {
            suite,
            path: step.path.clone(),
            label: step.label(),
            id: step.id.clone(),
            uses: step.uses.clone(),
            location: Some(location(rb, step)),
            phase: Phase::Main,
            outcome,
            error_kind: kind,
            started_at: OffsetDateTime::now_utc(),
            duration: Duration::ZERO,
            attempts: 0,
            message: Some(message),
            outputs: Json::Object(Map::new()),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        };
        self.sink.emit(Event::StepFinished(rec.clone()));
        rec
    }

    /// The steps of a `parallel` group, at the same time. The first failure cancels the
    /// siblings still running (reported as skipped, never passed), as a failure in a
    /// sequence stops the steps after it, unless the group says `fail_fast: false`; a signal
    /// cancels them all as usual. A step with `after: <id>` starts when that sibling has
    /// passed, and is skipped when it did not.
    async fn run_group(&self, suite: usize, rb: &Runbook, scope: &mut Scope, batch: &[StepDef]) -> Vec<StepRecord> {
        let mut stopper = Stopper::new(scope.cx.cancel.token.child_token(), &scope.cx.cancel);
        // Each sibling's end, for a step that follows another of its group (`StepCtx::ended`)
        // or waits for it (`after`).
        stopper.ended =
            Arc::new(batch.iter().filter_map(|s| s.id.clone()).map(|id| (id, CancellationToken::new())).collect());
        let outcomes = stopper.outcomes.clone();
        let fail_fast = batch.first().is_none_or(|s| s.group_fail_fast);
        let shared: &Scope = scope;
        let runs = batch.iter().map(|step| {
            let stopper = &stopper;
            let outcomes = outcomes.clone();
            async move {
                let mut waited = None;
                for id in &step.after {
                    let Some(ended) = stopper.ended.get(id) else { continue };
                    tokio::select! {
                        _ = ended.cancelled() => {}
                        _ = stopper.token.cancelled() => {}
                    }
                    let theirs = outcomes.lock().ok().and_then(|o| o.get(id).copied());
                    // Passed, or had nothing to do (`when` false): go on.
                    if let Some(o) = theirs.filter(|o| !matches!(o, Outcome::Passed | Outcome::Skipped)) {
                        waited.get_or_insert(format!("skipped: `after: {id}`, and `{id}` {}", o.as_str()));
                    }
                }
                // A sibling's failure that stopped the group while this step waited: it never
                // starts (it used to start, and run until the cancellation reached it).
                if waited.is_none() && !step.after.is_empty() && stopper.token.is_cancelled() {
                    waited =
                        stopper.by_sibling().map(|why| format!("skipped: cancelled because {why}, before it started"));
                }
                let rec = match waited {
                    Some(why) => self.not_run(suite, rb, step, Outcome::Skipped, None, why),
                    None => self.execute(suite, rb, shared, step, Phase::Main, Some(stopper)).await,
                };
                if let Some(id) = &step.id {
                    if let Ok(mut o) = outcomes.lock() {
                        o.insert(id.clone(), rec.outcome);
                    }
                    if let Some(ended) = stopper.ended.get(id) {
                        ended.cancel();
                    }
                }
                let failed = !matches!(rec.outcome, Outcome::Passed | Outcome::Skipped);
                if failed && fail_fast && !step.continue_on_error && !stopper.token.is_cancelled() {
                    if let Ok(mut why) = stopper.why.lock() {
                        *why = Some(format!("step `{}` {}", rec.label, rec.outcome.as_str()));
                    }
                    stopper.token.cancel();
                }
                rec
            }
        });
        let recs = futures_util::future::join_all(runs).await;
        for (step, rec) in batch.iter().zip(&recs) {
            store_outputs(scope, step, rec);
        }
        recs
    }
}

/// `FILE:LINE:COL` of `step` in its runbook: where a failure points.
fn location(rb: &Runbook, step: &StepDef) -> String {
    format!("{}:{}:{}", rb.file, step.pos.line, step.pos.col)
}
