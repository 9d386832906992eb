//! The one typed summary of a run, built once from its events and handed to every reporter
//! at the end (`ReportSink::finish`): compliance, notify, JUnit and run.json read it, and a
//! fleet run reads its targets' runs back into it from the run.json each wrote. No reporter
//! re-reads a file another one wrote, looks at a step's kind or an output's name, or
//! summarises the run a second time.
//!
//! Everything in it is redacted with the run's final list of secrets: a secret registered
//! after an event went out (a notify password, a value a later step made secret) is masked
//! here even where the event carried it in clear.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::exec::{BackupRole, ErrorKind, Event, Fact, Objective, Outcome, Phase, StepId, StepRecord, SuiteOutcome};
use crate::redact::Redactor;
use crate::runbook::RunKind;

/// run.json's `schema`: versions the format for tools that read it.
pub const SCHEMA: &str = "pgdrill.run/1";

/// The run record, as run.json holds it: every suite (runbook) and step in start order.
/// Field order is run.json's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub schema: String,
    pub pgdrill_version: String,
    /// RFC 3339.
    pub started_at: String,
    /// RFC 3339.
    pub finished_at: String,
    /// The top suite's outcome.
    pub outcome: Option<SuiteOutcome>,
    /// The top suite's exit code.
    pub exit_code: Option<i32>,
    /// What the run proved of the content it restored, over every suite: `proven`,
    /// `unproven` (a check had no ground truth, whether the run failed on it or accepted it)
    /// or `failed`; absent when no check judged content. A run that passed with content
    /// unproven is never a plain pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    pub suites: Vec<SuiteRecord>,
}

/// What a check, a suite or a run proved of a restored copy's content, from what each check
/// judged it against (`Fact::GroundTruth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    /// Compared with a ground truth (manifest, source, expectations, earlier) and held.
    Proven,
    /// Nothing to compare with: "restorable, content unproven", its own verdict (a failure,
    /// or a skip when the run accepted it), never a pass.
    Unproven,
    /// Compared with a ground truth and did not hold.
    Failed,
}

impl Content {
    pub fn as_str(self) -> &'static str {
        match self {
            Content::Proven => "proven",
            Content::Unproven => "unproven",
            Content::Failed => "failed",
        }
    }

    /// A step's content verdict: what it said it judged content against (its last
    /// `Fact::GroundTruth`) and how it ended. None for a step that judged nothing, or that
    /// errored (the environment failed: no verdict on the content).
    pub fn of_step(r: &StepRecord) -> Option<Content> {
        let basis = r.facts.iter().rev().find_map(|f| match f {
            Fact::GroundTruth { basis } => Some(basis.as_str()),
            _ => None,
        })?;
        match (basis, r.outcome) {
            (_, Outcome::Errored) => None,
            ("none", _) => Some(Content::Unproven),
            (_, Outcome::Failed | Outcome::TimedOut) => Some(Content::Failed),
            (_, Outcome::Passed) => Some(Content::Proven),
            (_, Outcome::Skipped) => None,
        }
    }

    /// Several checks' verdicts as one: any failed is failed, else any unproven is
    /// unproven, else proven; None when none judged content.
    pub fn of_all(all: impl IntoIterator<Item = Content>) -> Option<Content> {
        all.into_iter().max()
    }
}

/// One runbook's part of a run (a nested runbook is a suite of its own).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteRecord {
    pub id: usize,
    pub parent: Option<usize>,
    pub name: String,
    pub file: String,
    /// What the runbook declares it is (`kind:`), if it does.
    pub kind: Option<RunKind>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Seconds, to the millisecond, in run.json; exact within the run.
    #[serde(serialize_with = "as_secs", deserialize_with = "from_secs")]
    pub duration: Duration,
    pub outcome: Option<SuiteOutcome>,
    pub exit_code: Option<i32>,
    pub message: Option<String>,
    /// What this runbook's own checks proved of the content (`RunRecord::content`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    pub steps: Vec<StepRecord>,
}

/// A server the run used, and the step that told of it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerUsed {
    pub step: StepId,
    pub version: String,
}

/// A backup a step wrote, picked or snapshotted (values as the step output them).
#[derive(Debug, Clone, PartialEq)]
pub struct BackupSeen {
    pub step: StepId,
    /// The name of the step's suite (its runbook).
    pub suite: String,
    pub role: BackupRole,
    pub path: Value,
    pub sha256: Value,
    pub size: Value,
    pub created: Value,
    pub age_s: Value,
    /// How the step that told of it ended, and how long it took.
    pub outcome: Outcome,
    pub duration: Duration,
}

/// What was measured against a target.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    /// A recovery objective a step measured (`Fact::Objective`).
    Objective(Objective),
    /// A budget of `targets:` (its label, say `rto`, and its suite's name).
    Budget { label: String, suite: String },
}

/// An objective or budget, measured (as the step reported it) against its target.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub step: StepId,
    pub what: Measure,
    pub measured_s: Value,
    pub target_s: Value,
    /// Where the recovery time went, phase name -> seconds (RTO only).
    pub phases: Option<Value>,
    /// How the step ended: a missed objective is a failed step.
    pub outcome: Outcome,
    pub message: Option<String>,
}

/// A step that failed, errored or timed out.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedCheck {
    pub step: StepId,
    pub uses: String,
    pub outcome: Outcome,
    pub error_kind: Option<ErrorKind>,
    pub message: Option<String>,
    /// `FILE:LINE:COL` of the step in its runbook.
    pub location: Option<String>,
}

/// A step that did not run, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SkippedStep {
    pub step: StepId,
    pub reason: Option<String>,
}

/// What a step warned of (`Fact::Warning`), whatever its outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Warned {
    pub step: StepId,
    /// The name of the step's suite (its runbook).
    pub suite: String,
    /// The step as reports name it (`display_name`: a rollback's or `finally` step's with
    /// its phase).
    pub name: String,
    pub text: String,
}

/// The summary every reporter reads.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The record run.json holds (already redacted).
    pub record: RunRecord,
    /// When the summary was made: the run's end.
    pub finished: OffsetDateTime,
    /// The database the run is about (its `database` variable or its `database_url`'s, else
    /// the first a step told as a fact, `Fact::Database`); empty when none.
    pub database: String,
    pub servers: Vec<ServerUsed>,
    pub backups: Vec<BackupSeen>,
    pub objectives: Vec<Measured>,
    /// Steps that established part of proving a backup restores (`Fact::Verified`), with
    /// how they ended.
    pub verified: Vec<(StepId, Outcome)>,
    pub failed: Vec<FailedCheck>,
    pub skipped: Vec<SkippedStep>,
    /// What each check judged content against (`Fact::GroundTruth`).
    pub ground_truths: Vec<(StepId, String)>,
    /// The checks that had no ground truth ("restorable, content unproven"), with how each
    /// ended: failed (the run did not accept it) or skipped (accepted). The run's verdict on
    /// content is `record.content`.
    pub unproven: Vec<(StepId, Outcome)>,
    /// Throwaway servers the run started (`Fact::Throwaway`): step, provider, version.
    pub throwaways: Vec<(StepId, String, String)>,
    /// The throwaways' identities, where their steps told them (`Fact::Throwaway`).
    pub throwaway_ids: Vec<Identity>,
    /// What the run knew of the servers its backups came from (`Fact::Source`).
    pub sources: Vec<Identity>,
    /// Physical backups taken or recovered (`Fact::Physical`), with how their steps ended.
    pub physical: Vec<(StepId, Outcome, crate::facts::PhysicalFact)>,
    /// Point-in-time recoveries proven (`Fact::PointInTime`), with how their step ended.
    pub point_in_time: Vec<(StepId, Outcome)>,
    /// What the steps warned of (`Fact::Warning`), in the order they ran.
    pub warnings: Vec<Warned>,
}

/// A server's identity as a step told it: its system identifier and where it listens.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub step: StepId,
    pub system_identifier: Option<String>,
    pub host: Option<String>,
}

impl RunSummary {
    /// The typed facts of a run record: what a run built from its events, and what a fleet
    /// run reads back from a target's run.json. `database` is the run's subject as its
    /// caller knows it (may be empty).
    pub fn from_record(mut record: RunRecord, database: &str, finished: OffsetDateTime) -> Self {
        let mut suites = std::mem::take(&mut record.suites);
        let mut s = RunSummary {
            finished,
            database: database.to_string(),
            servers: Vec::new(),
            backups: Vec::new(),
            objectives: Vec::new(),
            verified: Vec::new(),
            failed: Vec::new(),
            skipped: Vec::new(),
            ground_truths: Vec::new(),
            unproven: Vec::new(),
            throwaways: Vec::new(),
            throwaway_ids: Vec::new(),
            sources: Vec::new(),
            physical: Vec::new(),
            point_in_time: Vec::new(),
            warnings: Vec::new(),
            record,
        };
        for suite in &mut suites {
            for r in &suite.steps {
                s.add_step(suite, r);
            }
            suite.content = Content::of_all(suite.steps.iter().filter_map(Content::of_step));
        }
        s.record.content = Content::of_all(suites.iter().filter_map(|x| x.content));
        s.record.suites = suites;
        s
    }

    /// What the run proved of the content it restored (`RunRecord::content`).
    pub fn content(&self) -> Option<Content> {
        self.record.content
    }

    fn add_step(&mut self, suite: &SuiteRecord, r: &StepRecord) {
        let id = r.id();
        for fact in &r.facts {
            match fact {
                Fact::Server { version } => {
                    self.servers.push(ServerUsed { step: id.clone(), version: version.clone() })
                }
                Fact::Backup { role, path, sha256, size, created, age_s } => self.backups.push(BackupSeen {
                    step: id.clone(),
                    suite: suite.name.clone(),
                    role: *role,
                    path: path.clone(),
                    sha256: sha256.clone(),
                    size: size.clone(),
                    created: created.clone(),
                    age_s: age_s.clone(),
                    outcome: r.outcome,
                    duration: r.duration,
                }),
                Fact::Objective { objective, measured_s, target_s, phases } => self.objectives.push(Measured {
                    step: id.clone(),
                    what: Measure::Objective(*objective),
                    measured_s: measured_s.clone(),
                    target_s: target_s.clone(),
                    phases: phases.clone(),
                    outcome: r.outcome,
                    message: r.message.clone(),
                }),
                Fact::Verified => self.verified.push((id.clone(), r.outcome)),
                Fact::GroundTruth { basis } => self.ground_truths.push((id.clone(), basis.clone())),
                Fact::Throwaway { provider, version, system_identifier, host } => {
                    self.throwaways.push((id.clone(), provider.clone(), version.clone()));
                    self.throwaway_ids.push(Identity {
                        step: id.clone(),
                        system_identifier: system_identifier.clone(),
                        host: host.clone(),
                    });
                }
                Fact::Source { system_identifier, host } => self.sources.push(Identity {
                    step: id.clone(),
                    system_identifier: system_identifier.clone(),
                    host: host.clone(),
                }),
                Fact::Physical(p) => self.physical.push((id.clone(), r.outcome, (**p).clone())),
                Fact::PointInTime { .. } => self.point_in_time.push((id.clone(), r.outcome)),
                // A run not told its database (a drill of a throwaway) is filed under the
                // first one a step told; an output that happens to be called `database`
                // (a step's own, a script's) never names it.
                Fact::Database { name } => {
                    if self.database.is_empty() {
                        self.database = name.clone();
                    }
                }
                Fact::Warning { text } => self.warnings.push(Warned {
                    step: id.clone(),
                    suite: suite.name.clone(),
                    name: super::display_name(r),
                    text: text.clone(),
                }),
            }
        }
        if r.phase == Phase::Budget {
            self.objectives.push(Measured {
                step: id.clone(),
                what: Measure::Budget { label: r.label.clone(), suite: suite.name.clone() },
                measured_s: Value::from(secs(r.duration)),
                target_s: r.outputs["target_s"].clone(),
                phases: None,
                outcome: r.outcome,
                message: r.message.clone(),
            });
        }
        match r.outcome {
            Outcome::Failed | Outcome::Errored | Outcome::TimedOut => self.failed.push(FailedCheck {
                step: id.clone(),
                uses: r.uses.clone(),
                outcome: r.outcome,
                error_kind: r.error_kind,
                message: r.message.clone(),
                location: r.location.clone(),
            }),
            Outcome::Skipped => self.skipped.push(SkippedStep { step: id.clone(), reason: r.message.clone() }),
            Outcome::Passed => {}
        }
        if Content::of_step(r) == Some(Content::Unproven) {
            self.unproven.push((id, r.outcome));
        }
    }

    /// The top suite: the runbook that was run.
    pub fn top(&self) -> Option<&SuiteRecord> {
        self.record.suites.first()
    }

    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.top().and_then(|t| t.outcome) == Some(SuiteOutcome::Passed)
    }

    /// What a run was, for `pgdrill report`, which judges drills apart from the daily backup
    /// and verify runs (a fresh backup is no evidence that a drill was run): what the top
    /// runbook declares (`kind:`), else what its steps established, in this order: an RTO or
    /// RPO measured (a drill), a backup written (a backup run), a safety snapshot of a
    /// database (a restore), a part of a verification (a verify), else other. Step kind names
    /// never count.
    pub fn kind(&self) -> RunKind {
        if let Some(declared) = self.top().and_then(|s| s.kind) {
            return declared;
        }
        let measured = |o: Objective| self.objectives.iter().any(|m| m.what == Measure::Objective(o));
        let backup = |role: BackupRole| self.backups.iter().any(|b| b.role == role);
        if measured(Objective::Rto) || measured(Objective::Rpo) {
            RunKind::Drill
        } else if backup(BackupRole::Written) {
            RunKind::Backup
        } else if backup(BackupRole::Snapshot) {
            RunKind::Restore
        } else if !self.verified.is_empty() {
            RunKind::Verify
        } else {
            RunKind::Other
        }
    }
}

/// Collects a run's events into its record; `summary` makes the `RunSummary` at the end.
#[derive(Debug)]
pub struct SummaryBuilder {
    started_at: OffsetDateTime,
    suites: Vec<SuiteRecord>,
}

impl Default for SummaryBuilder {
    fn default() -> Self {
        SummaryBuilder { started_at: OffsetDateTime::now_utc(), suites: Vec::new() }
    }
}

impl SummaryBuilder {
    pub fn on_event(&mut self, e: &Event) {
        match e {
            Event::SuiteStarted { suite, parent, name, file, kind, started_at } => self.suites.push(SuiteRecord {
                id: *suite,
                parent: *parent,
                name: name.clone(),
                file: file.clone(),
                kind: *kind,
                started_at: *started_at,
                duration: Duration::ZERO,
                outcome: None,
                exit_code: None,
                message: None,
                content: None,
                steps: Vec::new(),
            }),
            Event::StepFinished(rec) => {
                if let Some(s) = self.get(rec.suite) {
                    s.steps.push(rec.clone());
                }
            }
            Event::StepRolledBack { step, result, .. } => {
                // By position, not label: two steps may share a `name:`.
                if let Some(s) = self.get(step.suite) {
                    if let Some(r) = s.steps.iter_mut().rev().find(|r| r.phase == Phase::Main && r.path == step.path) {
                        r.rollback = Some(*result);
                    }
                }
            }
            Event::SuiteFinished { suite, outcome, exit, duration, message, .. } => {
                if let Some(s) = self.get(*suite) {
                    s.outcome = Some(*outcome);
                    s.exit_code = Some(exit.code());
                    s.duration = *duration;
                    s.message = message.clone();
                }
            }
            _ => {}
        }
    }

    fn get(&mut self, id: usize) -> Option<&mut SuiteRecord> {
        self.suites.iter_mut().find(|s| s.id == id)
    }

    /// The summary of the events so far, every text masked with `redactor`'s secrets as they
    /// are now (the events were masked with those known when each went out). Only the unit
    /// tests read a summary mid-run; a run ends with `into_summary`.
    #[cfg(test)]
    pub fn summary(&self, redactor: &Redactor, database: &str) -> RunSummary {
        Self::summarize(self.started_at, self.suites.clone(), redactor, database)
    }

    /// `summary` at the run's end, taking the records rather than copying them: a copy of
    /// every step was the second largest thing a 10,000-step run held (issue 36 case 11).
    pub fn into_summary(self, redactor: &Redactor, database: &str) -> RunSummary {
        Self::summarize(self.started_at, self.suites, redactor, database)
    }

    fn summarize(
        started_at: OffsetDateTime,
        mut suites: Vec<SuiteRecord>,
        redactor: &Redactor,
        database: &str,
    ) -> RunSummary {
        let fmt = &time::format_description::well_known::Rfc3339;
        let finished = OffsetDateTime::now_utc();
        for s in &mut suites {
            redact_suite(redactor, s);
        }
        let top = suites.first();
        let record = RunRecord {
            schema: SCHEMA.to_string(),
            pgdrill_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: started_at.format(fmt).unwrap_or_default(),
            finished_at: finished.format(fmt).unwrap_or_default(),
            outcome: top.and_then(|s| s.outcome),
            exit_code: top.and_then(|s| s.exit_code),
            content: None,
            suites,
        };
        RunSummary::from_record(record, database, finished)
    }
}

fn redact_suite(r: &Redactor, s: &mut SuiteRecord) {
    if let Some(m) = &mut s.message {
        *m = r.redact(m);
    }
    for rec in &mut s.steps {
        if let Some(m) = &mut rec.message {
            *m = r.redact(m);
        }
        for l in rec.log.iter_mut() {
            *l = r.redact(l);
        }
        r.redact_json(&mut rec.outputs);
        for f in rec.facts.iter_mut() {
            match f {
                Fact::Server { version } => *version = r.redact(version),
                Fact::Backup { path, sha256, size, created, age_s, .. } => {
                    for v in [path, sha256, size, created, age_s] {
                        r.redact_json(v);
                    }
                }
                Fact::Objective { measured_s, target_s, phases, .. } => {
                    r.redact_json(measured_s);
                    r.redact_json(target_s);
                    if let Some(p) = phases {
                        r.redact_json(p);
                    }
                }
                Fact::Verified => {}
                Fact::GroundTruth { basis } => *basis = r.redact(basis),
                Fact::Throwaway { provider, version, system_identifier, host } => {
                    *provider = r.redact(provider);
                    *version = r.redact(version);
                    for v in [system_identifier, host].into_iter().flatten() {
                        *v = r.redact(v);
                    }
                }
                Fact::Source { system_identifier, host } => {
                    for v in [system_identifier, host].into_iter().flatten() {
                        *v = r.redact(v);
                    }
                }
                Fact::Physical(p) => {
                    // Every text of it through the redactor, as JSON: the fact's own
                    // shape is kept when nothing needed masking.
                    if let Ok(mut v) = serde_json::to_value(&**p) {
                        r.redact_json(&mut v);
                        if let Ok(back) = serde_json::from_value(v) {
                            **p = back;
                        }
                    }
                }
                Fact::PointInTime { target } => *target = r.redact(target),
                Fact::Database { name } => *name = r.redact(name),
                Fact::Warning { text } => *text = r.redact(text),
            }
        }
    }
}

/// Seconds to the millisecond, as run.json and the reports write durations.
pub fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(secs(*d))
}

fn from_secs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// A summary of one suite (`r.yaml`, of `kind`) whose passed steps, labelled `s0`, `s1`...,
/// each ran `uses` and established its facts: what the reporters' unit tests read.
#[cfg(test)]
pub(crate) fn of_steps(kind: Option<RunKind>, steps: Vec<(&str, Vec<Fact>)>) -> RunSummary {
    let now = OffsetDateTime::now_utc();
    let steps = steps
        .into_iter()
        .enumerate()
        .map(|(i, (uses, facts))| StepRecord {
            suite: 0,
            path: format!("steps[{i}]"),
            label: format!("s{i}"),
            id: None,
            uses: uses.into(),
            location: None,
            phase: Phase::Main,
            outcome: Outcome::Passed,
            error_kind: None,
            started_at: now,
            duration: Duration::ZERO,
            attempts: 1,
            message: None,
            outputs: serde_json::json!({}),
            log: vec![],
            rollback: None,
            notice: None,
            facts,
        })
        .collect();
    of_records(kind, "r", "", steps)
}

/// A summary of one suite (`NAME.yaml`, of `kind`) of the records `steps`, the run's
/// database `database`: what the reporters' unit tests read.
#[cfg(test)]
pub(crate) fn of_records(kind: Option<RunKind>, name: &str, database: &str, steps: Vec<StepRecord>) -> RunSummary {
    let now = OffsetDateTime::now_utc();
    let suite = SuiteRecord {
        id: 0,
        parent: None,
        name: name.into(),
        file: format!("{name}.yaml"),
        kind,
        started_at: now,
        duration: Duration::ZERO,
        outcome: None,
        exit_code: None,
        message: None,
        content: None,
        steps,
    };
    let record = RunRecord {
        schema: SCHEMA.into(),
        pgdrill_version: String::new(),
        started_at: String::new(),
        finished_at: String::new(),
        outcome: None,
        exit_code: None,
        content: None,
        suites: vec![suite],
    };
    RunSummary::from_record(record, database, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Class, ExitCode};

    fn started(b: &mut SummaryBuilder) {
        b.on_event(&Event::SuiteStarted {
            suite: 0,
            parent: None,
            name: "verify".into(),
            file: "verify.yaml".into(),
            kind: None,
            started_at: OffsetDateTime::now_utc(),
        });
    }

    fn step(path: &str, label: &str, outcome: Outcome, message: Option<&str>) -> StepRecord {
        StepRecord {
            suite: 0,
            path: path.into(),
            label: label.into(),
            id: None,
            uses: "sql.assert".into(),
            location: Some("verify.yaml:7:5".into()),
            phase: Phase::Main,
            outcome,
            error_kind: (outcome == Outcome::Failed).then_some(ErrorKind::Class(Class::Failed)),
            started_at: OffsetDateTime::now_utc(),
            duration: Duration::from_millis(1500),
            attempts: 1,
            message: message.map(String::from),
            outputs: serde_json::json!({}),
            log: Vec::new(),
            rollback: None,
            notice: None,
            facts: Vec::new(),
        }
    }

    fn finished(b: &mut SummaryBuilder, message: &str) {
        b.on_event(&Event::SuiteFinished {
            suite: 0,
            name: "verify".into(),
            outcome: SuiteOutcome::Failed,
            exit: ExitCode::Failed,
            duration: Duration::from_secs(2),
            message: Some(message.into()),
        });
    }

    /// Two steps share a label: the failed one is named by its position, and the skipped one
    /// keeps its reason.
    #[test]
    fn a_failed_check_appears_with_its_step_id() {
        let mut b = SummaryBuilder::default();
        started(&mut b);
        b.on_event(&Event::StepFinished(step("steps[0]", "count", Outcome::Passed, None)));
        b.on_event(&Event::StepFinished(step("steps[1]", "count", Outcome::Failed, Some("3 rows, expected 4"))));
        b.on_event(&Event::StepFinished(step("steps[2]", "amcheck", Outcome::Skipped, Some("when: false"))));
        finished(&mut b, "step count failed");
        let s = b.summary(&Redactor::default(), "app");
        assert_eq!(s.failed.len(), 1, "{:?}", s.failed);
        let f = &s.failed[0];
        assert_eq!(f.step, StepId::new(0, "steps[1]", "count"));
        assert_eq!(f.message.as_deref(), Some("3 rows, expected 4"));
        assert_eq!(f.location.as_deref(), Some("verify.yaml:7:5"));
        assert_eq!(f.error_kind, Some(ErrorKind::Class(Class::Failed)));
        assert_eq!(
            s.skipped,
            vec![SkippedStep { step: StepId::new(0, "steps[2]", "amcheck"), reason: Some("when: false".into()) }]
        );
        assert_eq!((s.record.outcome, s.record.exit_code), (Some(SuiteOutcome::Failed), Some(1)));
        assert!(!s.passed());
    }

    /// A secret learned after the events that carried it went out (so they carried it in
    /// clear) is masked in the summary every reporter reads.
    #[test]
    fn a_secret_registered_mid_run_is_already_redacted_in_the_summary() {
        let secret = "Zq8-late-secret-7731";
        let redactor = Redactor::default();
        let mut b = SummaryBuilder::default();
        started(&mut b);
        let mut rec = step("steps[0]", "hook", Outcome::Failed, Some(&format!("answered 500 for {secret}")));
        rec.log.push(format!("token={secret}"));
        rec.outputs = serde_json::json!({ "body": secret });
        rec.facts.push(Fact::Backup {
            role: BackupRole::Written,
            path: Value::from(format!("/backups/{secret}/x.pgdrill")),
            sha256: Value::Null,
            size: Value::from(10),
            created: Value::Null,
            age_s: Value::Null,
        });
        b.on_event(&Event::StepFinished(rec));
        finished(&mut b, &format!("step hook failed: {secret}"));
        redactor.add(secret);
        let s = b.summary(&redactor, "app");
        let text = serde_json::to_string(&s.record).expect("json");
        assert!(!text.contains(secret), "the summary holds the secret: {text}");
        assert!(text.contains(crate::redact::MASK), "{text}");
        assert!(!format!("{:?}", s.failed).contains(secret));
        assert!(!format!("{:?}", s.backups).contains(secret));
    }

    fn truth(mut r: StepRecord, basis: &str) -> StepRecord {
        r.facts.push(Fact::GroundTruth { basis: basis.into() });
        r
    }

    /// Issue 35: a check with no ground truth ended failed (the run did not accept it) or
    /// skipped (accepted), and nothing in the summary or run.json told it from any other
    /// failure or skip. Now each such check is listed as unproven, and the run, and each
    /// suite, carry a content verdict: failed over unproven over proven; an errored check
    /// (the environment) gives none.
    #[test]
    fn a_check_without_ground_truth_is_unproven_in_the_summary_and_run_json() {
        let verdict = |steps: Vec<StepRecord>| {
            let mut b = SummaryBuilder::default();
            started(&mut b);
            for s in steps {
                b.on_event(&Event::StepFinished(s));
            }
            finished(&mut b, "done");
            b.summary(&Redactor::default(), "app")
        };
        let s = verdict(vec![
            step("steps[0]", "restore", Outcome::Passed, None),
            truth(
                step("steps[1]", "tables", Outcome::Skipped, Some("restorable, content unproven (accepted)")),
                "none",
            ),
        ]);
        assert_eq!(s.content(), Some(Content::Unproven));
        assert_eq!(s.unproven, vec![(StepId::new(0, "steps[1]", "tables"), Outcome::Skipped)]);
        assert_eq!(s.record.suites[0].content, Some(Content::Unproven));
        let text = serde_json::to_string(&s.record).expect("json");
        let v: Value = serde_json::from_str(&text).expect("json");
        assert_eq!((v["content"].as_str(), v["suites"][0]["content"].as_str()), (Some("unproven"), Some("unproven")));
        let back: RunRecord = serde_json::from_str(&text).expect("run.json reads back");
        assert_eq!(RunSummary::from_record(back, "app", s.finished).unproven, s.unproven);

        let failed = verdict(vec![truth(step("steps[0]", "tables", Outcome::Failed, Some("unproven")), "none")]);
        assert_eq!((failed.content(), failed.unproven.len()), (Some(Content::Unproven), 1));
        let proven = verdict(vec![truth(step("steps[0]", "tables", Outcome::Passed, None), "manifest")]);
        assert_eq!((proven.content(), proven.unproven.len()), (Some(Content::Proven), 0));
        let worse = verdict(vec![
            truth(step("steps[0]", "tables", Outcome::Failed, Some("2 table differences")), "manifest"),
            truth(step("steps[1]", "pitr", Outcome::Passed, None), "none"),
        ]);
        assert_eq!(worse.content(), Some(Content::Failed));
        let mut errored = truth(step("steps[0]", "tables", Outcome::Errored, Some("connection lost")), "source");
        errored.error_kind = Some(ErrorKind::Class(Class::Environment));
        let none = verdict(vec![errored, step("steps[1]", "amcheck", Outcome::Passed, None)]);
        assert_eq!(none.content(), None);
        let text = serde_json::to_string(&none.record).expect("json");
        assert!(!text.contains("\"content\""), "no content key when nothing judged content: {text}");
    }

    /// Issue 37: a run with no `database` variable was labelled (alerts, metrics, the
    /// `recovered` state) by the first step output that happened to be called `database`,
    /// whatever the step meant by it: here a script's. Now only what a step told as a fact
    /// (`Fact::Database`) names it, masked like every other fact, and a database the run was
    /// given still wins.
    #[test]
    fn an_output_called_database_no_longer_names_the_run_s_database() {
        let secret = "Zq8-db-secret-4410";
        let mut script = step("steps[0]", "script", Outcome::Passed, None);
        script.outputs = serde_json::json!({ "database": "what-a-script-printed" });
        let mut throwaway = step("steps[1]", "server", Outcome::Passed, None);
        throwaway.facts.push(Fact::Database { name: "drill".into() });
        let mut later = step("steps[2]", "restore", Outcome::Passed, None);
        later.facts.push(Fact::Database { name: format!("other-{secret}") });
        let summary = |given: &str, redactor: &Redactor| {
            let mut b = SummaryBuilder::default();
            started(&mut b);
            for r in [script.clone(), throwaway.clone(), later.clone()] {
                b.on_event(&Event::StepFinished(r));
            }
            finished(&mut b, "done");
            b.summary(redactor, given)
        };
        assert_eq!(summary("", &Redactor::default()).database, "drill");
        assert_eq!(summary("app", &Redactor::default()).database, "app");
        let mut only_script = SummaryBuilder::default();
        started(&mut only_script);
        only_script.on_event(&Event::StepFinished(script.clone()));
        assert_eq!(only_script.summary(&Redactor::default(), "").database, "");
        // The fact is masked like the others: a database named by a secret stays masked.
        let redactor = Redactor::default();
        redactor.add(secret);
        let s = summary("", &redactor);
        let text = serde_json::to_string(&s.record).expect("json");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("\"fact\":\"database\""), "the fact is in run.json: {text}");
    }

    /// run.json read back (a fleet run reading its targets) gives the same summary facts.
    #[test]
    fn a_run_record_read_back_from_json_summarises_the_same() {
        let mut b = SummaryBuilder::default();
        started(&mut b);
        let mut rec = step("steps[0]", "rto", Outcome::Failed, Some("rto 90 s exceeds 60 s"));
        rec.facts.push(Fact::Objective {
            objective: Objective::Rto,
            measured_s: Value::from(90.0),
            target_s: Value::from(60),
            phases: None,
        });
        rec.rollback = Some(crate::exec::Rollback::RolledBack);
        b.on_event(&Event::StepFinished(rec));
        finished(&mut b, "rto missed");
        let s = b.summary(&Redactor::default(), "");
        let text = serde_json::to_string(&s.record).expect("json");
        let back: RunRecord = serde_json::from_str(&text).expect("run.json reads back");
        let again = RunSummary::from_record(back, "", s.finished);
        assert_eq!(again.failed, s.failed);
        assert_eq!(again.objectives, s.objectives);
        assert_eq!(again.kind(), RunKind::Drill);
        assert_eq!(serde_json::to_string(&again.record).expect("json"), text);
    }
}
