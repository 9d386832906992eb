//! One step's attempts: its `when`, the rendering of its `with:`, its retries with their
//! delay and backoff, its timeout, its cancellation (by a signal or a failing sibling of a
//! `parallel` group) and its `assert:`, ending in the step's record. What the run does with
//! that record (stop, roll back) is the run state's business (`state.rs`), not this file's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::nested::NestedHandle;
use super::scope::Scope;
use super::{location, Cancel, ErrorKind, Event, Executor, Fact, Outcome, Phase, StepId, StepRecord, SuiteCtx};
use crate::error::Class;
use crate::plan::PlanStep;
use crate::runbook::{Runbook, StepDef};
use crate::steps::{self, Outputs, StepCtx, StepError};
use crate::template;

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
    /// Run one step and emit its record; `cancel` is `None` for steps a signal must not cut
    /// short (rollback, `finally`).
    pub(super) async fn execute(
        &self,
        suite: usize,
        rb: &Runbook,
        scope: &Scope,
        planned: &PlanStep<'_>,
        phase: Phase,
        cancel: Option<&Stopper>,
    ) -> StepRecord {
        let step = planned.def;
        let label = step.label();
        let started_at = OffsetDateTime::now_utc();
        let started = Instant::now();
        let log: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
        self.sink.emit(Event::StepStarted {
            step: StepId::new(suite, step.path.clone(), label.clone()),
            uses: step.uses.clone(),
            phase: phase.clone(),
            interactive: planned.kind.interactive,
            report_log: planned.kind.report_log,
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
            self.attempts(suite, rb, scope, planned, &label, (&log, &kept, &notice, &facts), cancel, &mut rec).await;
        rec.notice = notice.lock().ok().and_then(|n| n.clone());
        rec.facts = facts.lock().map(|f| f.clone()).unwrap_or_default();
        match result {
            Ok(Attempted::Skipped(why)) => {
                rec.outcome = Outcome::Skipped;
                rec.message = Some(format!("skipped: {why}"));
                // What a step kept before it skipped itself (the schema a fingerprint check
                // read with nothing to compare it with) still reaches later steps and reports.
                let kept = kept.lock().map(|k| k.clone()).unwrap_or_default();
                if !kept.is_empty() {
                    rec.outputs = Json::Object(kept);
                }
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

    /// After a failed attempt: the step's final error when it may not be retried or this was
    /// its last attempt (with how many were made), else the retry announced.
    fn retry_or_give_up(
        &self,
        suite: usize,
        step: &StepDef,
        label: &str,
        (attempt, total, delay): (u32, u32, Duration),
        (outcome, kind, msg, retryable): (Outcome, ErrorKind, String, bool),
    ) -> Result<(), (Outcome, ErrorKind, String)> {
        if !retryable || attempt == total {
            let msg = if total > 1 && retryable { format!("{msg} (after {total} attempts)") } else { msg };
            return Err((outcome, kind, msg));
        }
        self.sink.emit(Event::StepRetrying {
            step: StepId::new(suite, step.path.clone(), label),
            attempt,
            attempts: total,
            message: msg,
            delay,
        });
        Ok(())
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
        let r = guarded(step, (kind.run)(ctx, rendered.clone())).await;
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
        planned: &PlanStep<'_>,
        label: &str,
        (log, kept, notice, facts): Captures<'_>,
        stopper: Option<&Stopper>,
        rec: &mut StepRecord,
    ) -> Result<Attempted, (Outcome, ErrorKind, String)> {
        let step = planned.def;
        let env = template::environment();
        // In a `parallel` group, the siblings that have ended too (validate lets a step read
        // only those it runs `after:`).
        let ctx = match stopper.and_then(|s| s.entries.lock().ok().map(|e| e.clone())) {
            Some(ended) => scope.context_with(ended),
            None => scope.context(),
        };
        let where_ = |field: &str| format!("runbook `{}`, step `{label}`, field `{field}`", rb.name);
        if let Some(cond) = &planned.when {
            let go = cond.eval(&env, &ctx).map_err(|e| {
                (
                    Outcome::Errored,
                    ErrorKind::Class(Class::Invalid),
                    format!("template error in {}: {}", where_("when"), template::describe(&e)),
                )
            })?;
            if !go {
                return Ok(Attempted::Skipped(format!("`when: {}` is false", cond.text())));
            }
        }
        let kind = planned.kind;
        let mut rendered = template::render_tree(&env, &step.with, &ctx, "with").map_err(|(path, e)| {
            (
                Outcome::Errored,
                ErrorKind::Class(Class::Invalid),
                format!("template error in {}: {}", where_(&path), template::describe(&e)),
            )
        })?;
        text_where_text_is_wanted(kind, &step.with, &mut rendered);
        crate::redact::register_step_inputs(&self.redactor, crate::runbook::secret_fields(kind), &rendered).map_err(
            |(path, m)| (Outcome::Errored, ErrorKind::Class(Class::Invalid), format!("{}: {m}", where_(&path))),
        )?;

        let sink = self.sink.clone();
        let log_store = log.clone();
        let log_id = StepId::new(suite, step.path.clone(), label.to_string());
        let step_ctx = StepCtx {
            base_dir: rb.base_dir.clone(),
            step: label.to_string(),
            suite,
            log: Arc::new(move |line: String| {
                if let Ok(mut l) = log_store.lock() {
                    l.push(line.clone());
                }
                sink.emit(Event::StepLog { step: log_id.clone(), line });
            }),
            progress: {
                let sink = self.sink.clone();
                let id = StepId::new(suite, step.path.clone(), label.to_string());
                Arc::new(move |done: u64, total: Option<u64>| {
                    sink.emit(Event::StepProgress { step: id.clone(), done, total });
                })
            },
            // Rollbacks and `finally` are not cut short by the signal that stopped the run.
            cancel: stopper.map(|s| s.token.clone()).unwrap_or_default(),
            siblings: stopper.map(|s| s.ended.clone()).unwrap_or_default(),
            sibling_outcomes: stopper.map(|s| s.outcomes.clone()).unwrap_or_default(),
            assume_yes: self.assume_yes.load(Ordering::SeqCst),
            operator: Arc::new(super::operator::Terminal),
            rto_objective: self.rto_objective.lock().ok().and_then(|r| *r),
            evidence_head: self.evidence_head.lock().ok().and_then(|h| h.clone()),
            kept: kept.clone(),
            notice: notice.clone(),
            facts: facts.clone(),
            redactor: self.redactor.clone(),
            resources: scope.resources.clone(),
            stores: self.stores.clone(),
            nested: Arc::new(NestedHandle { exec: self.me.clone(), cx: scope.cx.clone() }),
        };

        // A kind that finishes itself (a nested runbook) is never dropped half-way: it is told
        // to stop and finishes its own rollbacks and `finally` first (a dropped future would
        // skip them).
        let finishes_itself = kind.finishes_itself;
        // Bounded at validate (`MAX_RETRIES`); saturating all the same, so no count overflows.
        let total = step.retry.count.saturating_add(1);
        let mut delay = step.retry.delay;
        for attempt in 1..=total {
            rec.attempts = attempt;
            // What an attempt that failed established is not a fact of the step. What it warned
            // of stays, as its log lines do: roles left to drop by hand are still there.
            if let Ok(mut f) = facts.lock() {
                f.retain(|f| matches!(f, Fact::Warning { .. }));
            }
            let attempt_started = Instant::now();
            // A step that ran but whose `assert:` does not hold failed this attempt; what it
            // emitted is kept for the reports, which show the output, expected and actual.
            let asserted = |o: Outputs| -> Result<Outputs, (Outcome, ErrorKind, String, bool)> {
                match check_asserts(&env, &ctx, planned, &o, attempt_started.elapsed()) {
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
                    Ended::Done(Err(e)) => failure_of(&e, || where_("with")),
                    Ended::TimedOut(t) => (
                        Outcome::TimedOut,
                        ErrorKind::Class(Class::Failed),
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
                        None => interrupted(&scope.cx.cancel),
                    },
                };
                self.retry_or_give_up(suite, step, label, (attempt, total, delay), (outcome, kind, msg, retryable))?;
                tokio::time::sleep(delay).await;
                delay = crate::runbook::next_delay(delay, step.retry.backoff);
                continue;
            }
            // The attempt's own token: the run's (or its group's) cancellation, and its timeout.
            // A step blocked in a tool call is not polled, so dropping it at its timeout left
            // the call running; a step that watches its token (`physical.verify`'s tool call)
            // is ended at its timeout as at a signal.
            let own = stopper.map(|st| st.token.child_token()).unwrap_or_default();
            let timed_out = Arc::new(AtomicBool::new(false));
            let timer = step.timeout.map(|t| {
                let (timed_out, own) = (timed_out.clone(), own.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(t).await;
                    timed_out.store(true, Ordering::SeqCst);
                    own.cancel();
                })
            });
            let mut attempt_ctx = step_ctx.clone();
            attempt_ctx.cancel = own;
            let fut = guarded(step, (kind.run)(attempt_ctx, rendered.clone()));
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
            if let Some(t) = timer {
                t.abort();
            }
            // An error that comes back once the timeout ended the step's call is the timeout's,
            // never the step's verdict (a signal's is the interruption's, below).
            let signalled = stopper.is_some_and(|st| st.suite.token.is_cancelled());
            let ended = match ended {
                Ended::Done(Err(_)) if timed_out.load(Ordering::SeqCst) && !signalled => {
                    Ended::TimedOut(step.timeout.unwrap_or_default())
                }
                other => other,
            };
            let (outcome, kind, msg, retryable) = match ended {
                Ended::Done(Ok(o)) => {
                    record_emitted(kind, &o);
                    match asserted(o) {
                        Ok(o) => return Ok(Attempted::Ran(o)),
                        Err(e) => e,
                    }
                }
                Ended::Done(Err(StepError::Skipped(m))) => {
                    // A step that ran to its end and skipped itself ("restorable, content
                    // unproven") emitted the outputs it kept.
                    if let Ok(k) = kept.lock() {
                        if !k.is_empty() {
                            record_emitted(kind, &k);
                        }
                    }
                    return Ok(Attempted::Skipped(m));
                }
                // A field error is located in the runbook; a refusal (no confirmation) is
                // about the invocation and says so itself. An error that lands once a signal
                // cancelled the run is the interruption's (a child the signal, or the step's
                // own cancellation, ended), never a verdict: the select above chose between
                // the two at random.
                Ended::Done(Err(_)) if stopper.is_some_and(|st| st.suite.token.is_cancelled()) => {
                    interrupted(&scope.cx.cancel)
                }
                Ended::Done(Err(e)) => failure_of(&e, || where_("with")),
                Ended::TimedOut(t) => (
                    Outcome::TimedOut,
                    ErrorKind::Class(Class::Failed),
                    format!("timed out after {}", humantime::format_duration(t)),
                    true,
                ),
                Ended::Interrupted => match stopper.and_then(Stopper::by_sibling) {
                    // Not a signal: a step of the same `parallel` group failed.
                    Some(why) => return Ok(Attempted::Skipped(format!("cancelled because {why}"))),
                    None => interrupted(&scope.cx.cancel),
                },
            };
            self.retry_or_give_up(suite, step, label, (attempt, total, delay), (outcome, kind, msg, retryable))?;
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
            delay = crate::runbook::next_delay(delay, step.retry.backoff);
        }
        Err((Outcome::Errored, ErrorKind::Class(Class::Environment), "no attempt was made".into()))
    }
}

/// A step's run with a panic inside it caught and made the step's error: a bug in one step
/// must still leave the run able to roll back and run `finally`, and the process able to
/// exit with its documented codes (never Rust's 101). Debug builds panic on purpose in the
/// step at the path `PGDRILL_PANIC_IN_STEP` names, so a test can prove it.
async fn guarded(
    step: &StepDef,
    fut: steps::BoxFuture<'static, Result<Outputs, StepError>>,
) -> Result<Outputs, StepError> {
    use futures_util::FutureExt;
    let forced =
        cfg!(debug_assertions) && std::env::var("PGDRILL_PANIC_IN_STEP").is_ok_and(|p| !p.is_empty() && p == step.path);
    let fut = async move {
        if forced {
            panic!("PGDRILL_PANIC_IN_STEP asked for a panic here");
        }
        fut.await
    };
    match std::panic::AssertUnwindSafe(fut).catch_unwind().await {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(StepError::environment(format!(
                "pgdrill hit an internal error in this step ({what}): this is a bug, please report it"
            )))
        }
    }
}

/// What can cut a running step short: the suite's token, or for a step of a `parallel`
/// group a child of it that a failing sibling also cancels.
pub(super) struct Stopper {
    pub(super) token: CancellationToken,
    /// Which sibling failed, once one has.
    pub(super) why: Arc<Mutex<Option<String>>>,
    /// The suite's own cancellation (a signal, or what stopped the parent's step).
    pub(super) suite: Cancel,
    /// In a `parallel` group: each sibling's id, and a token cancelled when it has ended.
    pub(super) ended: Arc<HashMap<String, CancellationToken>>,
    /// How each sibling that has ended ended.
    pub(super) outcomes: Arc<Mutex<HashMap<String, Outcome>>>,
    /// Each ended sibling's `steps.<id>` entry: what a step that runs `after:` it reads.
    pub(super) entries: Arc<Mutex<serde_json::Map<String, serde_json::Value>>>,
}

impl Stopper {
    pub(super) fn new(token: CancellationToken, suite: &Cancel) -> Self {
        Stopper {
            token,
            why: Arc::new(Mutex::new(None)),
            suite: suite.clone(),
            ended: Arc::default(),
            outcomes: Arc::default(),
            entries: Arc::default(),
        }
    }

    fn sibling_failure(&self) -> Option<String> {
        self.why.lock().ok().and_then(|w| w.clone())
    }

    /// A sibling's failure, not the suite's own cancellation, stopped the step.
    pub(super) fn by_sibling(&self) -> Option<String> {
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

/// A field that is one expression keeps its type; where the step wants text (a name, an
/// environment variable's value) a number or boolean is given as its text, as it was before
/// fields kept their types, so `env: { PGPORT: "{{ steps.db.outputs.port }}" }` still works.
/// Only values that came from a template change, and only on a type error at their path.
pub(super) fn text_where_text_is_wanted(kind: &steps::StepKind, written: &Yaml, rendered: &mut Yaml) {
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
pub(super) fn value_at<'a>(v: &'a mut Yaml, path: &str) -> Option<&'a mut Yaml> {
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

/// A step's `assert:` (typed by the plan) against what it emitted (and its `outcome`, passed
/// so far, and `duration_s`): every failing entry named with its expectation and the actual
/// value.
fn check_asserts(
    env: &minijinja::Environment<'_>,
    ctx: &minijinja::Value,
    step: &PlanStep<'_>,
    outputs: &Outputs,
    took: Duration,
) -> Result<(), (Outcome, ErrorKind, String, bool)> {
    let mut failed = Vec::new();
    for check in &step.checks {
        match check.judge(env, ctx, &step.def.label(), outputs, took) {
            Ok(None) => {}
            Ok(Some(why)) => failed.push(why),
            Err(e) => return Err((Outcome::Errored, ErrorKind::Class(Class::Invalid), e, false)),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err((Outcome::Failed, ErrorKind::Class(Class::Failed), failed.join("; "), true))
    }
}

/// A value a running step shares with the executor.
type Shared<T> = Arc<Mutex<T>>;

/// The outcome and error class of a step error (not `Skipped`, which is no error).
/// A step's error as an attempt's failure: its outcome and kind, its message (a field error
/// located by `with`), and whether another attempt may help (never for invalid input).
fn failure_of(e: &StepError, with: impl FnOnce() -> String) -> (Outcome, ErrorKind, String, bool) {
    let (outcome, kind) = error_class(e);
    (outcome, kind, e.describe(with), !e.is_invalid())
}

/// An attempt stopped by a signal (or the run's cancellation, which `cancel` names): an
/// error no other attempt can help.
fn interrupted(cancel: &super::Cancel) -> (Outcome, ErrorKind, String, bool) {
    (Outcome::Errored, ErrorKind::Interrupted, format!("interrupted by {}", cancel.reason()), false)
}

fn error_class(e: &StepError) -> (Outcome, ErrorKind) {
    match e.class() {
        Some(Class::Failed) | None => (Outcome::Failed, ErrorKind::Class(Class::Failed)),
        Some(class) => (Outcome::Errored, class.into()),
    }
}

/// What a step's context collects while it runs: its log, kept outputs, notice and facts.
type Captures<'a> = (&'a Shared<Vec<String>>, &'a Shared<Outputs>, &'a Shared<Option<String>>, &'a Shared<Vec<Fact>>);
