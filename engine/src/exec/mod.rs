//! The executor: runs a runbook's steps in order with `when`, `timeout`, `retry`,
//! `continue_on_error` and `rollback`, then `finally`, and reports everything as events.
//!
//! It never prints. Every event passes through the run's redactor before any reporter sees
//! it, so a secret's value cannot reach the terminal, JUnit or run.json. Cancellation
//! (SIGINT/SIGTERM) stops the running main step; rollbacks and `finally` still run, and are
//! not themselves cancelled, because an interrupted restore must still be rolled back.

pub mod event;
pub mod signal;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

pub use event::{BackupRole, ErrorKind, Event, Fact, Objective, Outcome, Phase, Rollback, StepRecord, SuiteOutcome};

use crate::error::ExitCode;
use crate::redact::Redactor;
use crate::runbook::{self, Runbook, StepDef};
use crate::steps::{self, NestedRunner, Outputs, Resources, StepCtx, StepError};
use crate::{shipped, template, Error};

/// A consumer of the event stream.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &Event);
    /// Called once after the run; writes files.
    fn finish(&mut self) -> crate::Result<()> {
        Ok(())
    }
}

/// Fans events out to reporters, redacting them first.
#[derive(Clone)]
pub struct Sink {
    reporters: Arc<Mutex<Vec<Box<dyn Reporter>>>>,
    redactor: Redactor,
}

impl Sink {
    pub fn new(redactor: Redactor, reporters: Vec<Box<dyn Reporter>>) -> Self {
        Sink { reporters: Arc::new(Mutex::new(reporters)), redactor }
    }

    pub fn emit(&self, mut event: Event) {
        redact_event(&self.redactor, &mut event);
        if let Ok(mut list) = self.reporters.lock() {
            for r in list.iter_mut() {
                r.on_event(&event);
            }
        }
    }

    /// Let every reporter write its files; the first error wins.
    pub fn finish(&self) -> crate::Result<()> {
        let mut first = Ok(());
        if let Ok(mut list) = self.reporters.lock() {
            for r in list.iter_mut() {
                if let Err(e) = r.finish() {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

fn redact_event(r: &Redactor, e: &mut Event) {
    match e {
        Event::StepRetrying { message, .. } => *message = r.redact(message),
        Event::StepLog { line, .. } => *line = r.redact(line),
        Event::StepFinished(rec) => {
            if let Some(m) = &mut rec.message {
                *m = r.redact(m);
            }
            for l in rec.log.iter_mut() {
                *l = r.redact(l);
            }
            r.redact_json(&mut rec.outputs);
        }
        Event::SuiteFinished { message: Some(m), .. } => *m = r.redact(m),
        _ => {}
    }
}

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

/// How deep runbooks may nest. A runbook that nests itself through a templated path (which
/// `validate` cannot follow) stops here with an error, so its rollbacks and `finally` run
/// instead of the process overflowing its stack.
pub const MAX_NESTING: usize = 16;

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
    me: Weak<Executor>,
}

struct Scope {
    cx: SuiteCtx,
    resources: Resources,
    vars: Map<String, Json>,
    /// `let:` values, computed once when the suite starts.
    lets: Map<String, Json>,
    env: Map<String, Json>,
    secrets: Map<String, Json>,
    steps: Map<String, Json>,
    /// `run.status` (`running`, then `passed`, `failed` or `interrupted` for `finally`),
    /// `run.message` and `run.elapsed_s`: what a `finally` step needs to record a result.
    run: Map<String, Json>,
}

impl Scope {
    fn context(&self) -> minijinja::Value {
        minijinja::Value::from_serialize(json!({
            "vars": self.vars, "let": self.lets, "env": self.env, "secrets": self.secrets, "steps": self.steps,
            "run": self.run,
        }))
    }
}

/// What running a step's attempts came to, when it did not fail.
enum Attempted {
    Ran(Outputs),
    /// `when` was false, or the step found it does not apply (reported as skipped, never passed).
    Skipped(String),
}

enum Ended {
    Done(Result<Outputs, StepError>),
    TimedOut(Duration),
    Interrupted,
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
            me: me.clone(),
        })
    }

    /// Confirm on the operator's behalf (`pgdrill run --yes`).
    pub fn assume_yes(&self, yes: bool) {
        self.assume_yes.store(yes, Ordering::SeqCst);
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
        let secrets = self.load_secrets(rb, given)?;
        let vars = resolve_vars(rb, overrides, &env)?;
        let lets = resolve_lets(rb, &vars, &env)?;
        crate::redact::register_run_inputs(&self.redactor, rb, &vars, &env, &secrets);
        let run = json!({ "status": "running", "message": null, "elapsed_s": 0 });
        let run = run.as_object().cloned().unwrap_or_default();
        let mut scope = Scope { cx, resources: Resources::default(), vars, lets, env, secrets, steps: Map::new(), run };

        let suite = self.next_suite.fetch_add(1, Ordering::SeqCst);
        let started = Instant::now();
        self.sink.emit(Event::SuiteStarted {
            suite,
            parent,
            name: rb.name.clone(),
            file: rb.file.clone(),
            started_at: OffsetDateTime::now_utc(),
        });

        // The first problem that stopped the run decides the exit code.
        let mut stop: Option<(ExitCode, String)> = None;
        let mut not_run_reason = String::new();
        let mut completed: Vec<&StepDef> = Vec::new();
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
            if stop.is_none() && scope.cx.cancel.token.is_cancelled() {
                not_run_reason = format!("interrupted by {}", scope.cx.cancel.reason());
                stop = Some((ExitCode::Interrupted, not_run_reason.clone()));
            }
            if stop.is_some() {
                for step in batch {
                    self.emit_not_run(suite, rb, step, Phase::Main, &not_run_reason);
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
            for (step, rec) in batch.iter().zip(recs) {
                match (rec.outcome, rec.error_kind) {
                    (Outcome::Passed, _) => completed.push(step),
                    (Outcome::Skipped, _) => {}
                    (_, _) if step.continue_on_error && rec.error_kind != Some(ErrorKind::Interrupted) => {
                        completed.push(step)
                    }
                    (_, _) if stop.is_some() => {}
                    (_, kind) => {
                        let code = exit_for(kind);
                        let msg = format!(
                            "step `{}` {}: {}",
                            rec.label,
                            rec.outcome.as_str(),
                            rec.message.clone().unwrap_or_default()
                        );
                        not_run_reason = format!("step `{}` {}", rec.label, rec.outcome.as_str());
                        stop = Some((code, msg));
                    }
                }
            }
        }

        // What rollbacks want the operator to read in the run's final message: a rollback
        // that failed or was skipped (never shown as "rolled back"), and their notices.
        let mut rollback_problems: Vec<String> = Vec::new();
        let mut notices: Vec<String> = Vec::new();
        if stop.is_some() {
            for done in completed.iter().rev() {
                if done.rollback.is_empty() {
                    continue;
                }
                let of = done.label();
                let mut recs = Vec::new();
                for rbk in &done.rollback {
                    let rec =
                        self.run_step(suite, rb, &mut scope, rbk, Phase::Rollback { of: of.clone() }, false).await;
                    if let Some(n) = &rec.notice {
                        notices.push(n.clone());
                    }
                    recs.push(rec);
                }
                let (result, message) = rollback_result(&recs);
                match (result, &message) {
                    (Rollback::Failed, m) => rollback_problems.push(format!(
                        "the rollback of step `{of}` ({}) FAILED ({}): what it did may still be in place",
                        runbook::describe_path(&done.path),
                        m.as_deref().unwrap_or_default()
                    )),
                    (Rollback::Skipped, m) => rollback_problems.push(format!(
                        "the rollback of step `{of}` ({}) was skipped ({}): what it did is still in place",
                        runbook::describe_path(&done.path),
                        m.as_deref().unwrap_or_default()
                    )),
                    (Rollback::RolledBack, _) => {}
                }
                self.sink.emit(Event::StepRolledBack { suite, path: done.path.clone(), label: of, result, message });
            }
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
            self.emit_budget(suite, "rto", took, ok, &msg);
            if !ok && stop.is_none() {
                stop = Some((ExitCode::Failed, msg));
            }
        }

        let status = match &stop {
            None => "passed",
            Some((ExitCode::Interrupted, _)) => "interrupted",
            Some(_) => "failed",
        };
        scope.run.insert("status".into(), json!(status));
        scope.run.insert("message".into(), json!(stop.as_ref().map(|(_, m)| m.clone())));
        scope.run.insert("elapsed_s".into(), json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0));
        let mut finally_failed: Option<ExitCode> = None;
        for step in &rb.finally {
            let rec = self.run_step(suite, rb, &mut scope, step, Phase::Finally, false).await;
            if !matches!(rec.outcome, Outcome::Passed | Outcome::Skipped)
                && !step.continue_on_error
                && finally_failed.is_none()
            {
                finally_failed = Some(exit_for(rec.error_kind));
            }
        }
        // Servers and other resources end with the runbook, after `finally` used them.
        for (what, r) in scope.resources.drain() {
            self.sink.emit(Event::StepLog {
                suite,
                path: "teardown".into(),
                label: "teardown".into(),
                line: format!("tearing down {what}"),
            });
            r.teardown().await;
        }

        if stop.is_none() {
            if let Some(code) = finally_failed {
                stop = Some((code, "a `finally` step failed".into()));
            }
        }

        let (outcome, exit, mut message) = match stop {
            None => (SuiteOutcome::Passed, ExitCode::Passed, None),
            Some((ExitCode::Interrupted, m)) => (SuiteOutcome::Interrupted, ExitCode::Interrupted, Some(m)),
            Some((code, m)) => (SuiteOutcome::Failed, code, Some(m)),
        };
        for p in &rollback_problems {
            message = Some(format!("{}; {p}", message.unwrap_or_default()));
        }
        for n in &notices {
            message = Some(format!("{}; {n}", message.unwrap_or_default()));
        }
        self.sink.emit(Event::SuiteFinished {
            suite,
            name: rb.name.clone(),
            outcome,
            duration: started.elapsed(),
            message: message.clone(),
        });
        Ok(SuiteResult { outcome, exit, message, outputs: scope.steps })
    }

    fn load_secrets(&self, rb: &Runbook, given: &Map<String, Json>) -> Result<Map<String, Json>, Error> {
        let mut out = Map::new();
        for (name, src) in &rb.secrets {
            if let Some(v) = given.get(name).and_then(Json::as_str).filter(|v| !v.is_empty()) {
                self.redactor.add(v);
                out.insert(name.clone(), Json::String(v.to_string()));
                continue;
            }
            let value = match (&src.env, &src.file) {
                (Some(var), _) if src.optional && std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) => {
                    out.insert(name.clone(), Json::String(String::new()));
                    continue;
                }
                (Some(var), _) => std::env::var(var).map_err(|_| {
                    Error::Invalid(format!(
                        "secret `{name}` of runbook `{}`: environment variable {var} is not set",
                        rb.name
                    ))
                })?,
                (None, Some(file)) => {
                    let path = if Path::new(file).is_absolute() { PathBuf::from(file) } else { rb.base_dir.join(file) };
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        Error::Invalid(format!(
                            "secret `{name}` of runbook `{}`: cannot read {}: {e}",
                            rb.name,
                            path.display()
                        ))
                    })?;
                    text.trim_end_matches(['\n', '\r']).to_string()
                }
                (None, None) => return Err(Error::Invalid(format!("secret `{name}` has no source"))),
            };
            if value.is_empty() {
                return Err(Error::Invalid(format!("secret `{name}` of runbook `{}` is empty", rb.name)));
            }
            self.redactor.add(&value);
            out.insert(name.clone(), Json::String(value));
        }
        Ok(out)
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

    fn emit_budget(&self, suite: usize, name: &str, took: Duration, ok: bool, msg: &str) {
        self.sink.emit(Event::StepFinished(StepRecord {
            suite,
            path: format!("targets.{name}"),
            label: msg.to_string(),
            id: Some(name.to_string()),
            uses: "budget".into(),
            location: None,
            phase: Phase::Budget,
            outcome: if ok { Outcome::Passed } else { Outcome::Failed },
            error_kind: if ok { None } else { Some(ErrorKind::Failed) },
            started_at: OffsetDateTime::now_utc(),
            duration: took,
            attempts: 1,
            message: Some(msg.to_string()),
            outputs: Json::Object(Map::new()),
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
                Some(ErrorKind::Invalid),
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
        let outcomes: Mutex<HashMap<String, Outcome>> = Mutex::default();
        let fail_fast = batch.first().is_none_or(|s| s.group_fail_fast);
        let shared: &Scope = scope;
        let runs = batch.iter().map(|step| {
            let stopper = &stopper;
            let outcomes = &outcomes;
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

    /// Run one step and emit its record; `cancel` is `None` for steps a signal must not cut
    /// short (rollback, `finally`).
    async fn execute(
        &self,
        suite: usize,
        rb: &Runbook,
        scope: &Scope,
        step: &StepDef,
        phase: Phase,
        cancel: Option<&Stopper>,
    ) -> StepRecord {
        let label = step.label();
        let started_at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let log: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        self.sink.emit(Event::StepStarted {
            suite,
            path: step.path.clone(),
            label: label.clone(),
            uses: step.uses.clone(),
            phase: phase.clone(),
            interactive: steps::find(&step.uses).is_some_and(|k| k.interactive),
        });

        let mut rec = StepRecord {
            suite,
            path: step.path.clone(),
            label: label.clone(),
            id: step.id.clone(),
            uses: step.uses.clone(),
            location: Some(location(rb, step)),
            phase,
            outcome: Outcome::Passed,
            error_kind: None,
            started_at,
            duration: Duration::ZERO,
            attempts: 0,
            message: None,
            outputs: Json::Object(Map::new()),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        };
        let kept: Arc<Mutex<Outputs>> = Arc::new(Mutex::new(Outputs::new()));
        let notice: Shared<Option<String>> = Arc::default();
        let facts: Shared<Vec<Fact>> = Arc::default();
        let result =
            self.attempts(suite, rb, scope, step, &label, (&log, &kept, &notice, &facts), cancel, &mut rec).await;
        rec.notice = notice.lock().ok().and_then(|n| n.clone());
        rec.facts = facts.lock().map(|f| f.clone()).unwrap_or_default();
        match result {
            Ok(Attempted::Skipped(why)) => {
                rec.outcome = Outcome::Skipped;
                rec.message = Some(format!("skipped: {why}"));
            }
            Ok(Attempted::Ran(outputs)) => rec.outputs = Json::Object(outputs),
            Err((outcome, kind, msg)) => {
                rec.outcome = outcome;
                rec.error_kind = Some(kind);
                rec.message = Some(msg);
                // What a failing step measured (an RTO over its target) still reaches reports.
                rec.outputs = Json::Object(kept.lock().map(|k| k.clone()).unwrap_or_default());
            }
        }
        rec.duration = started.elapsed();
        rec.log = log.lock().map(|l| l.clone()).unwrap_or_default();
        self.sink.emit(Event::StepFinished(rec.clone()));
        rec
    }

    /// One attempt of a step that stops itself when told to (a nested runbook): its timeout
    /// and the suite's cancellation cancel the token it is given, and the attempt is awaited
    /// to its end, so the nested runbook's rollbacks and `finally` run before the parent's.
    #[allow(clippy::too_many_arguments)]
    async fn attempt_to_the_end(
        &self,
        scope: &Scope,
        step: &StepDef,
        label: &str,
        step_ctx: &StepCtx,
        rendered: &Yaml,
        kind: &steps::StepKind,
        stopper: Option<&Stopper>,
    ) -> Ended {
        // Rollbacks and `finally` (no stopper) are not stopped by a signal, only by their timeout.
        let token = match stopper {
            Some(st) => st.token.child_token(),
            None => CancellationToken::new(),
        };
        let timed_out = Arc::new(AtomicBool::new(false));
        let why = {
            let timed_out = timed_out.clone();
            let sibling = stopper.map(|st| (st.why.clone(), st.suite.clone()));
            let suite = scope.cx.cancel.clone();
            let label = label.to_string();
            let t = step.timeout.map(humantime::format_duration).map(|d| d.to_string()).unwrap_or_default();
            move || {
                if timed_out.load(Ordering::SeqCst) {
                    return format!("the timeout of step `{label}` ({t}) in the runbook that nests this one");
                }
                if let Some((why, suite)) = &sibling {
                    if let Some(w) = why.lock().ok().and_then(|w| w.clone()).filter(|_| !suite.token.is_cancelled()) {
                        return format!("{w} (beside step `{label}` in the runbook that nests this one)");
                    }
                }
                suite.reason()
            }
        };
        let handle = NestedHandle {
            exec: self.me.clone(),
            cx: SuiteCtx { cancel: Cancel { token: token.clone(), why: Arc::new(why) }, chain: scope.cx.chain.clone() },
        };
        let mut ctx = step_ctx.clone();
        ctx.cancel = token.clone();
        ctx.nested = Arc::new(handle);
        let timer = step.timeout.map(|t| {
            let (timed_out, token) = (timed_out.clone(), token.clone());
            tokio::spawn(async move {
                tokio::time::sleep(t).await;
                timed_out.store(true, Ordering::SeqCst);
                token.cancel();
            })
        });
        let r = (kind.run)(ctx, rendered.clone()).await;
        if let Some(t) = timer {
            t.abort();
        }
        if timed_out.load(Ordering::SeqCst) {
            return Ended::TimedOut(step.timeout.unwrap_or_default());
        }
        if token.is_cancelled() {
            return Ended::Interrupted;
        }
        Ended::Done(r)
    }

    #[allow(clippy::too_many_arguments)]
    async fn attempts(
        &self,
        suite: usize,
        rb: &Runbook,
        scope: &Scope,
        step: &StepDef,
        label: &str,
        (log, kept, notice, facts): Captures<'_>,
        stopper: Option<&Stopper>,
        rec: &mut StepRecord,
    ) -> Result<Attempted, (Outcome, ErrorKind, String)> {
        let env = template::environment();
        let ctx = scope.context();
        let where_ = |field: &str| format!("runbook `{}`, step `{label}`, field `{field}`", rb.name);
        if let Some(cond) = &step.when {
            let go = template::eval_condition(&env, cond, &ctx).map_err(|e| {
                (
                    Outcome::Errored,
                    ErrorKind::Invalid,
                    format!("template error in {}: {}", where_("when"), template::describe(&e)),
                )
            })?;
            if !go {
                return Ok(Attempted::Skipped(format!("`when: {}` is false", cond.trim())));
            }
        }
        let kind = steps::find(&step.uses)
            .ok_or_else(|| (Outcome::Errored, ErrorKind::Invalid, format!("unknown step kind `{}`", step.uses)))?;
        let mut rendered = template::render_tree(&env, &step.with, &ctx, "with").map_err(|(path, e)| {
            (
                Outcome::Errored,
                ErrorKind::Invalid,
                format!("template error in {}: {}", where_(&path), template::describe(&e)),
            )
        })?;
        text_where_text_is_wanted(kind, &step.with, &mut rendered);
        crate::redact::register_step_inputs(&self.redactor, kind, &rendered)
            .map_err(|(path, m)| (Outcome::Errored, ErrorKind::Invalid, format!("{}: {m}", where_(&path))))?;

        let sink = self.sink.clone();
        let log_store = log.clone();
        let log_label = label.to_string();
        let log_path = step.path.clone();
        let step_ctx = StepCtx {
            runbook_name: rb.name.clone(),
            base_dir: rb.base_dir.clone(),
            step: label.to_string(),
            suite,
            log: Arc::new(move |line: String| {
                if let Ok(mut l) = log_store.lock() {
                    l.push(line.clone());
                }
                sink.emit(Event::StepLog { suite, path: log_path.clone(), label: log_label.clone(), line });
            }),
            progress: {
                let sink = self.sink.clone();
                let (path, label) = (step.path.clone(), label.to_string());
                Arc::new(move |done: u64, total: Option<u64>| {
                    sink.emit(Event::StepProgress { suite, path: path.clone(), label: label.clone(), done, total });
                })
            },
            // Rollbacks and `finally` are not cut short by the signal that stopped the run.
            cancel: stopper.map(|s| s.token.clone()).unwrap_or_default(),
            siblings: stopper.map(|s| s.ended.clone()).unwrap_or_default(),
            assume_yes: self.assume_yes.load(Ordering::SeqCst),
            kept: kept.clone(),
            notice: notice.clone(),
            facts: facts.clone(),
            redactor: self.redactor.clone(),
            resources: scope.resources.clone(),
            nested: Arc::new(NestedHandle { exec: self.me.clone(), cx: scope.cx.clone() }),
        };

        // A nested runbook is never dropped half-way: it is told to stop and finishes its own
        // rollbacks and `finally` first (a dropped future would skip them).
        let finishes_itself = kind.name == steps::nested::RUNBOOK.name;
        let total = step.retry.count + 1;
        let mut delay = step.retry.delay;
        for attempt in 1..=total {
            rec.attempts = attempt;
            // What an attempt that failed established is not a fact of the step.
            if let Ok(mut f) = facts.lock() {
                f.clear();
            }
            let attempt_started = Instant::now();
            // A step that ran but whose `assert:` does not hold failed this attempt; what it
            // emitted is kept for the reports, which show the output, expected and actual.
            let asserted = |o: Outputs| -> Result<Outputs, (Outcome, ErrorKind, String, bool)> {
                match check_asserts(&env, &ctx, step, &o, attempt_started.elapsed()) {
                    Ok(()) => Ok(o),
                    Err(e) => {
                        if let Ok(mut k) = kept.lock() {
                            *k = o;
                        }
                        Err(e)
                    }
                }
            };
            if finishes_itself {
                let ended = self.attempt_to_the_end(scope, step, label, &step_ctx, &rendered, kind, stopper).await;
                let (outcome, kind, msg, retryable) = match ended {
                    Ended::Done(Ok(o)) => match asserted(o) {
                        Ok(o) => return Ok(Attempted::Ran(o)),
                        Err(e) => e,
                    },
                    Ended::Done(Err(StepError::Skipped(m))) => return Ok(Attempted::Skipped(m)),
                    Ended::Done(Err(e)) => {
                        let (outcome, kind) = error_class(&e);
                        (outcome, kind, e.describe(|| where_("with")), !e.is_invalid())
                    }
                    Ended::TimedOut(t) => (
                        Outcome::TimedOut,
                        ErrorKind::Failed,
                        format!(
                            "timed out after {}; what it started was stopped and rolled back",
                            humantime::format_duration(t)
                        ),
                        true,
                    ),
                    Ended::Interrupted => match stopper.and_then(Stopper::by_sibling) {
                        Some(why) => {
                            return Ok(Attempted::Skipped(format!(
                                "cancelled because {why}; what it started was stopped and rolled back"
                            )))
                        }
                        None => (
                            Outcome::Errored,
                            ErrorKind::Interrupted,
                            format!("interrupted by {}", scope.cx.cancel.reason()),
                            false,
                        ),
                    },
                };
                if !retryable || attempt == total {
                    let msg = if total > 1 && retryable { format!("{msg} (after {total} attempts)") } else { msg };
                    return Err((outcome, kind, msg));
                }
                self.sink.emit(Event::StepRetrying {
                    suite,
                    path: step.path.clone(),
                    label: label.to_string(),
                    attempt,
                    attempts: total,
                    message: msg,
                    delay,
                });
                tokio::time::sleep(delay).await;
                delay = delay.mul_f64(step.retry.backoff);
                continue;
            }
            let fut = (kind.run)(step_ctx.clone(), rendered.clone());
            let timed = async {
                match step.timeout {
                    Some(t) => match tokio::time::timeout(t, fut).await {
                        Ok(r) => Ended::Done(r),
                        Err(_) => Ended::TimedOut(t),
                    },
                    None => Ended::Done(fut.await),
                }
            };
            let ended = match stopper {
                Some(st) => tokio::select! {
                    e = timed => e,
                    _ = st.token.cancelled() => Ended::Interrupted,
                },
                None => timed.await,
            };
            let (outcome, kind, msg, retryable) = match ended {
                Ended::Done(Ok(o)) => {
                    record_emitted(kind, &o);
                    match asserted(o) {
                        Ok(o) => return Ok(Attempted::Ran(o)),
                        Err(e) => e,
                    }
                }
                Ended::Done(Err(StepError::Skipped(m))) => return Ok(Attempted::Skipped(m)),
                // A field error is located in the runbook; a refusal (no confirmation) is
                // about the invocation and says so itself.
                Ended::Done(Err(e)) => {
                    let (outcome, kind) = error_class(&e);
                    (outcome, kind, e.describe(|| where_("with")), !e.is_invalid())
                }
                Ended::TimedOut(t) => (
                    Outcome::TimedOut,
                    ErrorKind::Failed,
                    format!("timed out after {}", humantime::format_duration(t)),
                    true,
                ),
                Ended::Interrupted => match stopper.and_then(Stopper::by_sibling) {
                    // Not a signal: a step of the same `parallel` group failed.
                    Some(why) => return Ok(Attempted::Skipped(format!("cancelled because {why}"))),
                    None => (
                        Outcome::Errored,
                        ErrorKind::Interrupted,
                        format!("interrupted by {}", scope.cx.cancel.reason()),
                        false,
                    ),
                },
            };
            if !retryable || attempt == total {
                let msg = if total > 1 && retryable { format!("{msg} (after {total} attempts)") } else { msg };
                return Err((outcome, kind, msg));
            }
            self.sink.emit(Event::StepRetrying {
                suite,
                path: step.path.clone(),
                label: label.to_string(),
                attempt,
                attempts: total,
                message: msg,
                delay,
            });
            let interrupted = match stopper {
                Some(st) => tokio::select! {
                    _ = tokio::time::sleep(delay) => false,
                    _ = st.token.cancelled() => true,
                },
                None => {
                    tokio::time::sleep(delay).await;
                    false
                }
            };
            if interrupted {
                if let Some(why) = stopper.and_then(Stopper::by_sibling) {
                    return Ok(Attempted::Skipped(format!("cancelled while waiting to retry because {why}")));
                }
                return Err((
                    Outcome::Errored,
                    ErrorKind::Interrupted,
                    format!("interrupted by {} while waiting to retry", scope.cx.cancel.reason()),
                ));
            }
            delay = delay.mul_f64(step.retry.backoff);
        }
        Err((Outcome::Errored, ErrorKind::Environment, "no attempt was made".into()))
    }
}

/// What can cut a running step short: the suite's token, or for a step of a `parallel`
/// group a child of it that a failing sibling also cancels.
struct Stopper {
    token: CancellationToken,
    /// Which sibling failed, once one has.
    why: Arc<Mutex<Option<String>>>,
    /// The suite's own cancellation (a signal, or what stopped the parent's step).
    suite: Cancel,
    /// In a `parallel` group: each sibling's id, and a token cancelled when it has ended.
    ended: Arc<HashMap<String, CancellationToken>>,
}

impl Stopper {
    fn new(token: CancellationToken, suite: &Cancel) -> Self {
        Stopper { token, why: Arc::new(Mutex::new(None)), suite: suite.clone(), ended: Arc::default() }
    }

    fn sibling_failure(&self) -> Option<String> {
        self.why.lock().ok().and_then(|w| w.clone())
    }

    /// A sibling's failure, not the suite's own cancellation, stopped the step.
    fn by_sibling(&self) -> Option<String> {
        self.sibling_failure().filter(|_| !self.suite.token.is_cancelled())
    }
}

/// Keep a step's outputs for the templates of later steps: `steps.<id>.outputs.<name>`, with
/// the engine's `outcome` and `duration_s` beside them, as GitHub Actions keeps `outputs` apart
/// from `outcome`. The outputs are also kept at `steps.<id>.<name>`, the older form (which
/// `validate` reports as deprecated); there the engine's two names win, as they always did.
/// With `PGDRILL_RECORD_OUTPUTS=FILE`, every passing step appends `{"kind", "outputs"}` (the
/// output names it emitted) to FILE: the catalogue test runs the shipped runbooks with it and
/// holds each kind's emitted outputs against its documented ones.
fn record_emitted(kind: &steps::StepKind, o: &Map<String, Json>) {
    let Some(path) = std::env::var_os("PGDRILL_RECORD_OUTPUTS") else { return };
    let names: Vec<&String> = o.keys().collect();
    let line = format!("{}\n", json!({ "kind": kind.name, "outputs": names }));
    // One write of one line with O_APPEND: lines of concurrent steps and runs never mix.
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = std::io::Write::write_all(&mut f, line.as_bytes());
    }
}

fn store_outputs(scope: &mut Scope, step: &StepDef, rec: &StepRecord) {
    let Some(id) = &step.id else { return };
    let outputs = match &rec.outputs {
        Json::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut o = outputs.clone();
    o.insert("outputs".into(), Json::Object(outputs));
    o.insert(
        "outcome".into(),
        Json::String(
            serde_json::to_value(rec.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        ),
    );
    o.insert("duration_s".into(), json!((rec.duration.as_secs_f64() * 1000.0).round() / 1000.0));
    scope.steps.insert(id.clone(), Json::Object(o));
}

/// A field that is one expression keeps its type; where the step wants text (a name, an
/// environment variable's value) a number or boolean is given as its text, as it was before
/// fields kept their types, so `env: { PGPORT: "{{ steps.db.outputs.port }}" }` still works.
/// Only values that came from a template change, and only on a type error at their path.
fn text_where_text_is_wanted(kind: &steps::StepKind, written: &Yaml, rendered: &mut Yaml) {
    let mut templated = Vec::new();
    template::templated_strings(written, "", &mut templated);
    for _ in 0..=templated.len() {
        let Err(e) = (kind.check)(rendered) else { return };
        if !templated.iter().any(|(p, _)| *p == e.path) || !e.message.contains("expected a string") {
            return;
        }
        match value_at(rendered, &e.path) {
            Some(v @ (Yaml::Number(_) | Yaml::Bool(_))) => {
                let text = match v {
                    Yaml::Number(n) => n.to_string(),
                    Yaml::Bool(b) => b.to_string(),
                    _ => return,
                };
                *v = Yaml::String(text);
            }
            _ => return,
        }
    }
}

/// The value at a path of [`template::templated_strings`] (`env.PGPORT`, `argv[2]`).
fn value_at<'a>(v: &'a mut Yaml, path: &str) -> Option<&'a mut Yaml> {
    let mut cur = v;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            cur = cur.get_mut(key)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            let n: usize = idx.trim_end_matches(']').parse().ok()?;
            cur = cur.get_mut(n)?;
        }
    }
    Some(cur)
}

/// A step's `assert:` against what it emitted (and its `outcome`, passed so far, and
/// `duration_s`): every failing entry named with its expectation and the actual value.
fn check_asserts(
    env: &minijinja::Environment<'_>,
    ctx: &minijinja::Value,
    step: &StepDef,
    outputs: &Outputs,
    took: Duration,
) -> Result<(), (Outcome, ErrorKind, String, bool)> {
    let mut failed = Vec::new();
    for a in &step.assert {
        let expect = if template::is_template(&a.expect) {
            match template::render_str(env, &a.expect, ctx) {
                Ok(Yaml::String(t)) => t,
                Ok(other) => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
                Err(e) => {
                    return Err((
                        Outcome::Errored,
                        ErrorKind::Invalid,
                        format!(
                            "template error in step `{}`, `assert.{}`: {}",
                            step.label(),
                            a.output,
                            template::describe(&e)
                        ),
                        false,
                    ))
                }
            }
        } else {
            a.expect.clone()
        };
        let parsed = steps::sql::Expect::parse(&expect).map_err(|m| {
            (
                Outcome::Errored,
                ErrorKind::Invalid,
                format!("step `{}`, `assert.{}`: {m}", step.label(), a.output),
                false,
            )
        })?;
        let value = match a.output.as_str() {
            "outcome" => Some(Json::String("passed".into())),
            "duration_s" => Some(json!((took.as_secs_f64() * 1000.0).round() / 1000.0)),
            name => outputs.get(name).cloned(),
        };
        let Some(value) = value else {
            let mut names: Vec<&str> = outputs.keys().map(String::as_str).collect();
            names.sort_unstable();
            failed.push(format!(
                "assert `{}` {expect}: the step emitted no output `{}` (it emitted: {})",
                a.output,
                a.output,
                names.join(", ")
            ));
            continue;
        };
        let text = match &value {
            Json::Null => None,
            Json::String(t) => Some(t.clone()),
            other => Some(other.to_string()),
        };
        if let Err(why) = parsed.holds(text.as_deref()) {
            let actual = text.as_deref().map(|t| format!("`{t}`")).unwrap_or_else(|| "null".into());
            failed.push(format!("assert `{}` {expect} failed: the output is {actual}{why}", a.output));
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err((Outcome::Failed, ErrorKind::Failed, failed.join("; "), true))
    }
}

fn exit_for(kind: Option<ErrorKind>) -> ExitCode {
    match kind {
        Some(ErrorKind::Environment) => ExitCode::Environment,
        Some(ErrorKind::Invalid) => ExitCode::Invalid,
        Some(ErrorKind::Interrupted) => ExitCode::Interrupted,
        Some(ErrorKind::Failed) | None => ExitCode::Failed,
    }
}

/// Declared defaults, overridden by `--var`; every declared variable must end with a value.
pub(crate) fn resolve_vars(
    rb: &Runbook,
    overrides: &serde_yaml::Mapping,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    for k in overrides.keys() {
        let k = k.as_str().unwrap_or_default();
        if !rb.vars.contains_key(k) {
            let help = runbook::suggest::help(k, rb.vars.keys().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
            let declared = if rb.vars.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", rb.vars.keys().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(Error::Invalid(format!(
                "--var {k}: runbook `{}` has no variable `{k}` ({declared}){help}",
                rb.name
            )));
        }
    }
    let tenv = template::environment();
    let ctx = minijinja::Value::from_serialize(json!({ "env": env }));
    let mut out = Map::new();
    for (name, default) in &rb.vars {
        let value: Yaml = match overrides.get(name.as_str()) {
            Some(v) => typed_like(v, default.as_ref()).map_err(|e| {
                Error::Invalid(format!(
                    "--var {name}: {e} (runbook `{}`, the default is {})",
                    rb.name,
                    describe_yaml(default.as_ref())
                ))
            })?,
            None => match default {
                Some(d) => template::render_tree(&tenv, d, &ctx, &format!("vars.{name}")).map_err(|(_, e)| {
                    Error::Invalid(format!(
                        "runbook `{}`, default of variable `{name}`: {}",
                        rb.name,
                        template::describe(&e)
                    ))
                })?,
                None => {
                    return Err(Error::Invalid(format!(
                        "runbook `{}` needs a value for variable `{name}`: pass --var {name}=VALUE",
                        rb.name
                    )))
                }
            },
        };
        out.insert(name.clone(), serde_json::to_value(&value).unwrap_or(Json::Null));
    }
    Ok(out)
}

/// The `let:` values, in the order written, each from vars, env and the values above it.
/// A value that is one expression keeps its type, like any field.
pub(crate) fn resolve_lets(
    rb: &Runbook,
    vars: &Map<String, Json>,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    let tenv = template::environment();
    let mut lets = Map::new();
    for (name, value) in &rb.lets {
        let ctx = minijinja::Value::from_serialize(json!({ "vars": vars, "env": env, "let": lets }));
        let v = template::render_tree(&tenv, value, &ctx, &format!("let.{name}")).map_err(|(_, e)| {
            Error::Invalid(format!(
                "runbook `{}`, `let.{name}` ({}): {}",
                rb.name,
                rb.location(&format!("let.{name}")),
                template::describe(&e)
            ))
        })?;
        lets.insert(name.clone(), serde_json::to_value(&v).unwrap_or(Json::Null));
    }
    Ok(lets)
}

/// A `--var` value is text; a variable whose default is a boolean or a number takes the
/// value as one, so `--var skip=false` is false (the text "false" would be true in `when:`).
fn typed_like(v: &Yaml, default: Option<&Yaml>) -> Result<Yaml, String> {
    let Yaml::String(text) = v else { return Ok(v.clone()) };
    let t = text.trim();
    match default {
        Some(Yaml::Bool(_)) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Yaml::Bool(true)),
            "false" | "no" | "off" | "0" | "" => Ok(Yaml::Bool(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
        Some(Yaml::Number(_)) => Ok(t
            .parse::<i64>()
            .map(|n| Yaml::Number(n.into()))
            .or_else(|_| t.parse::<f64>().map(|f| Yaml::Number(f.into())))
            .unwrap_or_else(|_| v.clone())),
        _ => Ok(v.clone()),
    }
}

fn describe_yaml(v: Option<&Yaml>) -> &'static str {
    match v {
        Some(Yaml::Bool(_)) => "a boolean",
        Some(Yaml::Number(_)) => "a number",
        _ => "text",
    }
}

/// What a `runbook` step runs its runbook with: the executor, and what the nested suite
/// inherits (the cancellation that reaches it, the chain of files that nest it).
struct NestedHandle {
    exec: Weak<Executor>,
    cx: SuiteCtx,
}

impl NestedRunner for NestedHandle {
    fn run_nested(
        &self,
        ctx: StepCtx,
        path: PathBuf,
        vars: serde_yaml::Mapping,
        secrets: Map<String, Json>,
    ) -> steps::BoxFuture<'static, Result<Outputs, StepError>> {
        let me = self.exec.upgrade();
        let mut cx = self.cx.clone();
        Box::pin(async move {
            let me = me.ok_or_else(|| StepError::Environment("executor is gone".into()))?;
            let rb = load_runbook_ref(&path).map_err(|e| StepError::Invalid(e.to_string()))?;
            if cx.chain.len() >= MAX_NESTING {
                let mut files: Vec<&str> = Vec::new();
                for f in cx.chain.iter().chain(std::iter::once(&rb.file)) {
                    if !files.contains(&f.as_str()) {
                        files.push(f);
                    }
                }
                return Err(StepError::Invalid(format!(
                    "runbooks nest deeper than {MAX_NESTING} levels (through {}): a runbook that nests itself never ends",
                    files.join(", ")
                )));
            }
            cx.chain.push(rb.file.clone());
            let res =
                me.run_suite(&rb, &vars, &secrets, Some(ctx.suite), cx).await.map_err(|e| match e.exit_code() {
                    ExitCode::Invalid => StepError::Invalid(e.to_string()),
                    _ => StepError::Environment(e.to_string()),
                })?;
            let msg = || format!("runbook `{}` {}", rb.name, res.message.clone().unwrap_or_default());
            match res.exit {
                ExitCode::Passed => {
                    let mut o = Outputs::new();
                    o.insert("steps".into(), Json::Object(res.outputs));
                    Ok(o)
                }
                ExitCode::Environment => Err(StepError::Environment(msg())),
                ExitCode::Invalid => Err(StepError::Invalid(msg())),
                ExitCode::Failed | ExitCode::Interrupted => Err(StepError::Failed(msg())),
            }
        })
    }
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

/// A value a running step shares with the executor.
type Shared<T> = Arc<Mutex<T>>;

/// The outcome and error class of a step error (not `Skipped`, which is no error).
fn error_class(e: &StepError) -> (Outcome, ErrorKind) {
    match e {
        StepError::Failed(_) | StepError::Skipped(_) => (Outcome::Failed, ErrorKind::Failed),
        StepError::Environment(_) => (Outcome::Errored, ErrorKind::Environment),
        StepError::Invalid(_) | StepError::Field { .. } => (Outcome::Errored, ErrorKind::Invalid),
    }
}

/// A runbook file, or the name of a shipped runbook or drill (`backup`, `verify` ...).
pub fn load_runbook_ref(path: &Path) -> Result<Runbook, Error> {
    if path.exists() {
        return runbook::load(path);
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    match shipped::find(name) {
        Some(s) => {
            runbook::parse(&format!("<shipped>/{}", s.path), s.text, std::env::current_dir().unwrap_or_default())
                .map_err(Error::Runbook)
        }
        None => {
            let help = runbook::suggest::help(name, shipped::names()).map(|h| format!(" ({h})")).unwrap_or_default();
            Err(Error::Invalid(format!(
                "no runbook file `{}` and no shipped runbook of that name{help}",
                path.display()
            )))
        }
    }
}

/// A runbook to run or validate: loaded, and its nesting followed through every `runbook`
/// step whose path is written out (not templated), so a runbook that nests itself, directly
/// or through others, is invalid input before anything runs.
pub fn load_checked(path: &Path) -> Result<Runbook, Error> {
    let rb = load_runbook_ref(path)?;
    let mut chain = Vec::new();
    if let Some(cycle) = nesting_cycle(&rb, &mut chain, &mut Vec::new()) {
        let hops: Vec<&str> = cycle.hops.iter().map(|(at, _)| at.as_str()).collect();
        let d =
            rb.diagnostic_at(&cycle.root_step, format!("runbook `{}` nests itself", rb.name)).with_help(Some(format!(
                "{} -> {}: a runbook that nests itself never ends; remove the step that closes the cycle",
                hops.join(" -> "),
                cycle.closes
            )));
        let mut all = runbook::Diagnostics::default();
        all.push(d);
        return Err(Error::Runbook(all));
    }
    Ok(rb)
}

/// A nesting cycle: every hop as (`file:line:col` of the `path:` that nests, key of the
/// nesting file), the file that closes it, and the step of the outermost runbook it starts at.
struct Cycle {
    hops: Vec<(String, String)>,
    closes: String,
    root_step: String,
}

/// How a nested runbook's file is known: its canonical path, or its name for a shipped one.
fn nesting_key(rb: &Runbook) -> String {
    std::fs::canonicalize(&rb.file).map(|p| p.display().to_string()).unwrap_or_else(|_| rb.file.clone())
}

/// Depth-first over the written-out nestings of `rb`; `chain` holds the hops above it (see
/// [`Cycle`]), `done` the runbooks already followed to the end.
fn nesting_cycle(rb: &Runbook, chain: &mut Vec<(String, String, String)>, done: &mut Vec<String>) -> Option<Cycle> {
    let key = nesting_key(rb);
    if done.contains(&key) || chain.len() > MAX_NESTING {
        return None;
    }
    for step in rb.all_steps().filter(|s| s.uses == steps::nested::RUNBOOK.name) {
        let Some(p) = step.with.get("path").and_then(Yaml::as_str).filter(|p| !p.contains("{{")) else { continue };
        let full = if Path::new(p).is_absolute() { PathBuf::from(p) } else { rb.base_dir.join(p) };
        // A nested file that does not load is reported when it runs (or by its own validate).
        let Ok(child) = load_runbook_ref(&full) else { continue };
        let at = format!("{}.with.path", step.path);
        chain.push((rb.location(&at), key.clone(), at));
        let child_key = nesting_key(&child);
        let found = match chain.iter().position(|(_, k, _)| *k == child_key) {
            Some(start) => Some(Cycle {
                hops: chain[start..].iter().map(|(loc, k, _)| (loc.clone(), k.clone())).collect(),
                closes: child.file.clone(),
                root_step: chain.first().map(|(_, _, at)| at.clone()).unwrap_or_default(),
            }),
            None => nesting_cycle(&child, chain, done),
        };
        chain.pop();
        if found.is_some() {
            return found;
        }
    }
    done.push(key);
    None
}

/// `--var k=v` pairs as a mapping of strings.
pub fn overrides_from_pairs(pairs: &[(String, String)]) -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in pairs {
        m.insert(Yaml::String(k.clone()), Yaml::String(v.clone()));
    }
    m
}

/// A map for callers that want `BTreeMap` ordering.
pub type VarMap = BTreeMap<String, String>;

/// `FILE:LINE:COL` of `step` in its runbook: where a failure points.
fn location(rb: &Runbook, step: &StepDef) -> String {
    format!("{}:{}:{}", rb.file, step.pos.line, step.pos.col)
}

/// What a step's context collects while it runs: its log, kept outputs, notice and facts.
type Captures<'a> = (&'a Shared<Vec<String>>, &'a Shared<Outputs>, &'a Shared<Option<String>>, &'a Shared<Vec<Fact>>);
