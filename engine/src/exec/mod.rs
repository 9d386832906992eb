//! The executor: runs a runbook's plan (`plan::Plan`, built once from the parsed file) step
//! by step with `when`, `timeout`, `retry`, `continue_on_error` and `rollback`, then
//! `finally`, and reports everything as events.
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
use crate::plan::{Group, Node, Plan, PlanStep};
use crate::redact::Redactor;
use crate::runbook::{self, Runbook, StepDef};
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
    /// `--evidence`: the log's head as the run found it, for the manifests its backups write.
    evidence_head: Mutex<Option<crate::backup::EvidenceHead>>,
    /// The object stores the run's steps open (nested runbooks' too), owned by the caller,
    /// which aborts their uploads in flight when the run is stopped.
    stores: crate::storage::Opened,
    me: Weak<Executor>,
}

impl Executor {
    pub fn new(
        sink: Sink,
        redactor: Redactor,
        cancel: CancellationToken,
        cause: Arc<Mutex<Option<String>>>,
        stores: crate::storage::Opened,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Executor {
            sink,
            redactor,
            cancel,
            cause,
            next_suite: AtomicUsize::new(0),
            assume_yes: AtomicBool::new(false),
            rto_objective: Mutex::new(None),
            evidence_head: Mutex::new(None),
            stores,
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

    /// The head of the run's evidence log, which every backup this run writes anchors in its
    /// manifest (`pgdrill run --evidence`).
    pub fn evidence_head(&self, head: Option<crate::backup::EvidenceHead>) {
        if let Ok(mut h) = self.evidence_head.lock() {
            *h = head;
        }
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
        // The plan is built before anything starts: it is what runs.
        let plan = Plan::build(rb)?;
        preflight::check(&plan, &vars, &lets, &env)?;
        crate::runbook::register_run_inputs(&self.redactor, rb, &vars, &env, &secrets);
        let run = json!({ "status": "running", "message": null, "elapsed_s": 0 });
        let run = run.as_object().cloned().unwrap_or_default();
        let late_lets = plan.late_lets.iter().map(scope::LateLet::from).collect();
        let mut scope = Scope {
            cx,
            resources: Resources::default(),
            vars,
            lets,
            late_lets,
            env,
            secrets,
            steps: Arc::default(),
            run,
        };

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
        for node in &plan.nodes {
            // One step, or every step of a `parallel` group.
            let batch = node.steps();
            if scope.cx.cancel.token.is_cancelled() {
                state.interrupt(scope.cx.cancel.reason());
            }
            if state.stopped() {
                for step in batch {
                    self.emit_not_run(suite, rb, step.def, Phase::Main, state.not_run_reason());
                }
                continue;
            }
            let recs = match node {
                Node::Group(g) => match self.group_skipped(suite, rb, &mut scope, g) {
                    Some(recs) => recs,
                    // A group of one step runs as a step of its own.
                    None if g.steps.len() == 1 => {
                        vec![self.run_step(suite, rb, &mut scope, &g.steps[0], Phase::Main, true).await]
                    }
                    None => self.run_group(suite, rb, &mut scope, g).await,
                },
                Node::Step(step) => vec![self.run_step(suite, rb, &mut scope, step, Phase::Main, true).await],
            };
            for (step, rec) in batch.iter().zip(&recs) {
                state.main_step_ended(step, rec);
            }
        }

        for done in state.to_roll_back() {
            let of = done.def.label();
            let mut recs = Vec::new();
            for rbk in &done.rollback {
                recs.push(self.run_step(suite, rb, &mut scope, rbk, Phase::Rollback { of: of.clone() }, false).await);
            }
            let (result, message) = state.rolled_back(done.def, &recs);
            self.sink.emit(Event::StepRolledBack {
                step: StepId::new(suite, done.def.path.clone(), of),
                result,
                message,
            });
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
        for step in &plan.finally {
            let rec = self.run_step(suite, rb, &mut scope, step, Phase::Finally, false).await;
            state.finally_ended(step.def, &rec);
        }
        // Servers and other resources end with the runbook, after `finally` used them: one
        // after another, newest first, and those that depend on nothing beside them.
        let log = |what: &str| {
            self.sink.emit(Event::StepLog {
                step: StepId::new(suite, "teardown", "teardown"),
                line: format!("tearing down {what}"),
            })
        };
        scope.resources.end_all(log).await;

        let Summary { outcome, exit, message } = state.summarize();
        self.sink.emit(Event::SuiteFinished {
            suite,
            name: rb.name.clone(),
            outcome,
            exit,
            duration: started.elapsed(),
            message: message.clone(),
        });
        Ok(SuiteResult { exit, message, outputs: Arc::unwrap_or_clone(scope.steps) })
    }

    fn emit_not_run(&self, suite: usize, rb: &Runbook, step: &StepDef, phase: Phase, why: &str) {
        let message = format!("not run: {why}");
        self.sink.emit(Event::StepFinished(unrun_record(suite, rb, step, phase, Outcome::Skipped, None, message)));
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
        step: &PlanStep<'_>,
        phase: Phase,
        cancellable: bool,
    ) -> StepRecord {
        let cancel =
            if cancellable { Some(Stopper::new(scope.cx.cancel.token.clone(), &scope.cx.cancel)) } else { None };
        let rec = self.execute(suite, rb, scope, step, phase, cancel.as_ref()).await;
        store_outputs(scope, step.def, &rec);
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
        group: &Group<'_>,
    ) -> Option<Vec<StepRecord>> {
        let cond = group.when.as_ref()?;
        let env = template::environment();
        let (outcome, kind, message) = match cond.eval(&env, &scope.context()) {
            Ok(true) => return None,
            Ok(false) => {
                (Outcome::Skipped, None, format!("skipped: `when: {}` of its `parallel` group is false", cond.text()))
            }
            Err(e) => (
                Outcome::Errored,
                Some(ErrorKind::Class(Class::Invalid)),
                format!(
                    "template error in runbook `{}`, {}, field `when`: {}",
                    rb.name,
                    runbook::describe_path(&group.def.path),
                    template::describe(&e)
                ),
            ),
        };
        let recs: Vec<StepRecord> = group
            .steps
            .iter()
            .map(|step| {
                let rec = self.not_run(suite, rb, step.def, outcome, kind, message.clone());
                store_outputs(scope, step.def, &rec);
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
        let rec = unrun_record(suite, rb, step, Phase::Main, outcome, kind, message);
        self.sink.emit(Event::StepFinished(rec.clone()));
        rec
    }

    /// The steps of a `parallel` group, at the same time. The first failure cancels the
    /// siblings still running (reported as skipped, never passed), as a failure in a
    /// sequence stops the steps after it, unless the group says `fail_fast: false`; a signal
    /// cancels them all as usual. A step with `after: <id>` starts when that sibling has
    /// passed, and is skipped when it did not.
    async fn run_group(&self, suite: usize, rb: &Runbook, scope: &mut Scope, group: &Group<'_>) -> Vec<StepRecord> {
        let batch = &group.steps;
        let mut stopper = Stopper::new(scope.cx.cancel.token.child_token(), &scope.cx.cancel);
        // Each sibling's end, for a step that follows another of its group (`StepCtx::ended`)
        // or waits for it (`after`).
        stopper.ended =
            Arc::new(batch.iter().filter_map(|s| s.def.id.clone()).map(|id| (id, CancellationToken::new())).collect());
        let outcomes = stopper.outcomes.clone();
        let fail_fast = group.fail_fast;
        let shared: &Scope = scope;
        let runs = batch.iter().map(|step| {
            let stopper = &stopper;
            let outcomes = outcomes.clone();
            async move {
                let mut waited = None;
                for id in &step.def.after {
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
                if waited.is_none() && !step.def.after.is_empty() && stopper.token.is_cancelled() {
                    waited =
                        stopper.by_sibling().map(|why| format!("skipped: cancelled because {why}, before it started"));
                }
                let rec = match waited {
                    Some(why) => self.not_run(suite, rb, step.def, Outcome::Skipped, None, why),
                    None => self.execute(suite, rb, shared, step, Phase::Main, Some(stopper)).await,
                };
                if let Some(id) = &step.def.id {
                    if let Ok(mut o) = outcomes.lock() {
                        o.insert(id.clone(), rec.outcome);
                    }
                    if let Ok(mut e) = stopper.entries.lock() {
                        e.insert(id.clone(), scope::entry(&rec));
                    }
                    if let Some(ended) = stopper.ended.get(id) {
                        ended.cancel();
                    }
                }
                let failed = !matches!(rec.outcome, Outcome::Passed | Outcome::Skipped);
                if failed && fail_fast && !step.def.continue_on_error && !stopper.token.is_cancelled() {
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
            store_outputs(scope, step.def, rec);
        }
        recs
    }
}

/// The record of a step that never started (skipped, or an error before it could start):
/// no attempts, no time, no outputs.
fn unrun_record(
    suite: usize,
    rb: &Runbook,
    step: &StepDef,
    phase: Phase,
    outcome: Outcome,
    kind: Option<ErrorKind>,
    message: String,
) -> StepRecord {
    StepRecord {
        suite,
        path: step.path.clone(),
        label: step.label(),
        id: step.id.clone(),
        uses: step.uses.clone(),
        location: Some(location(rb, step)),
        phase,
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
    }
}

/// `FILE:LINE:COL` of `step` in its runbook: where a failure points.
fn location(rb: &Runbook, step: &StepDef) -> String {
    format!("{}:{}:{}", rb.file, step.pos.line, step.pos.col)
}
