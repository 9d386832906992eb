//! The signed statement of a run (issue 42): the run's summary as an in-toto statement
//! (subject: the backups by their manifest sha256, and the runbook by its own), signed and
//! appended to the evidence log of its location (`crate::evidence`). Pass or fail: a failed
//! drill is evidence too, and the chain makes its removal visible.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::summary::{secs, Measure};
use super::{display_name, ReportSink, RunSummary};
use crate::evidence::keys::SigningKey;
use crate::evidence::statement::{Statement, Subject};
use crate::exec::Objective;

pub struct SignedEvidence {
    dir: PathBuf,
    key: Arc<SigningKey>,
    /// The runbook's text's sha256, as it was run.
    runbook_sha256: String,
    /// An RFC 3161 time-stamping authority's URL: each record is timestamped.
    tsa: Option<String>,
}

impl SignedEvidence {
    pub fn new(dir: PathBuf, key: Arc<SigningKey>, runbook_source: &str) -> Self {
        SignedEvidence {
            dir,
            key,
            runbook_sha256: crate::evidence::keys::sha256_hex(runbook_source.as_bytes()),
            tsa: None,
        }
    }

    /// Timestamp each record with the TSA at `url`.
    pub fn tsa(mut self, url: Option<String>) -> Self {
        self.tsa = url;
        self
    }
}

/// An objective's name as the reports write it.
pub fn objective_name(m: &Measure) -> String {
    match m {
        Measure::Objective(Objective::Rto) => "RTO".into(),
        Measure::Objective(Objective::Rpo) => "RPO".into(),
        Measure::Objective(Objective::BackupAge) => "Backup age".into(),
        Measure::Budget { label, suite } => format!("{label} budget of {suite}"),
    }
}

/// The statement of a run, from its (redacted) summary. `runbook_sha256` is the sha256 of
/// the runbook's text.
pub fn statement(run: &RunSummary, runbook_sha256: &str) -> Statement {
    let top = run.top();
    let runbook = top.map(|t| t.name.clone()).unwrap_or_default();
    let mut subject: Vec<Subject> = Vec::new();
    for b in &run.backups {
        if let (Some(path), Some(sha)) = (b.path.as_str(), b.sha256.as_str()) {
            if !subject.iter().any(|s| s.name == path) {
                subject.push(Subject::sha256(path, sha));
            }
        }
    }
    // The runbook is always a subject: a run that failed before any backup was named still
    // states what was run.
    subject.push(Subject::sha256(format!("runbook:{runbook}"), runbook_sha256));
    let truth = |id: &crate::exec::StepId| {
        run.ground_truths
            .iter()
            .rev()
            .find(|(s, _)| s == id)
            .map(|(_, b)| Value::from(b.as_str()))
            .unwrap_or(Value::Null)
    };
    let mut checks = Vec::new();
    for suite in &run.record.suites {
        for s in &suite.steps {
            checks.push(json!({
                "suite": suite.name,
                "step": s.path,
                "name": display_name(s),
                "uses": s.uses,
                "location": s.location,
                "verdict": s.outcome,
                "ground_truth": truth(&s.id()),
                "duration_s": secs(s.duration),
                "message": s.message,
            }));
        }
    }
    let objectives: Vec<Value> = run
        .objectives
        .iter()
        .map(|o| {
            json!({
                "name": objective_name(&o.what),
                "measured_s": o.measured_s,
                "target_s": o.target_s,
                "verdict": o.outcome,
                "phases": o.phases,
            })
        })
        .collect();
    let backups: Vec<Value> = run
        .backups
        .iter()
        .map(|b| {
            json!({
                "role": b.role,
                "path": b.path,
                "sha256": b.sha256,
                "size": b.size,
                "created": b.created,
                "age_s": b.age_s,
                "verdict": b.outcome,
            })
        })
        .collect();
    let throwaways: Vec<Value> = run
        .throwaways
        .iter()
        .map(|(step, provider, version)| json!({ "step": step.label, "provider": provider, "version": version }))
        .collect();
    let mut servers: Vec<String> = run.servers.iter().map(|s| s.version.clone()).collect();
    servers.dedup();
    // Segregated: a server this run started for itself held the restored copy. A run that
    // used only existing servers (an operator restore) is not, and one that used none
    // (a backup alone) restored nothing to segregate.
    let segregated = match (throwaways.is_empty(), run.servers.is_empty()) {
        (false, _) => Value::Bool(true),
        (true, false) => Value::Bool(false),
        (true, true) => Value::Null,
    };
    let outcome = match run.record.exit_code {
        Some(2 | 3) => Value::from("errored"),
        _ => json!(run.record.outcome),
    };
    Statement::run(
        subject,
        json!({
            "runbook": { "name": runbook, "file": top.map(|t| t.file.as_str()), "sha256": runbook_sha256 },
            "kind": run.kind().as_str(),
            "outcome": outcome,
            "exit_code": run.record.exit_code,
            "message": top.and_then(|t| t.message.as_deref()),
            "database": run.database,
            "started_at": run.record.started_at,
            "finished_at": run.record.finished_at,
            "host": crate::util::hostname().unwrap_or_default(),
            "versions": { "pgdrill": run.record.pgdrill_version, "servers": servers },
            "backups": backups,
            "objectives": objectives,
            "checks": checks,
            "target": { "throwaway_servers": throwaways, "segregated_from_source": segregated },
        }),
    )
}

/// Where a TSA URL points, without what may identify the caller (path, query, credentials).
fn tsa_shown(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0)))
        .unwrap_or_else(|_| "an invalid URL".into())
}

impl ReportSink for SignedEvidence {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        let s = statement(summary, &self.runbook_sha256);
        // An evidence log that cannot take the record is the run's environment error: the
        // run's side effects happened, and its evidence must not be silently lost.
        let appended = crate::evidence::log::append(&self.dir, &self.key, s)?;
        let mut said = format!(
            "evidence: signed statement {} appended to {}",
            appended.sequence,
            crate::util::visible(&appended.path.display().to_string())
        );
        // The record is signed and chained already: a TSA that does not answer costs the
        // timestamp, which `evidence verify --tsa-ca` then names, never the record.
        if let Some(url) = &self.tsa {
            let stamped = match tokio::runtime::Handle::try_current() {
                Ok(h) => tokio::task::block_in_place(|| {
                    h.block_on(crate::evidence::timestamp::request(url, &appended.sha256))
                }),
                Err(_) => Err("no async runtime".to_string()),
            };
            match stamped.and_then(|tsr| {
                crate::evidence::log::add_timestamp(&self.dir, appended.sequence, &tsr).map_err(|e| e.to_string())
            }) {
                Ok(()) => said.push_str(", timestamped"),
                Err(e) => said.push_str(&format!("; warning: no RFC 3161 timestamp from {}: {e}", tsa_shown(url))),
            }
        }
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{said}\n").as_bytes());
        Ok(())
    }
}
