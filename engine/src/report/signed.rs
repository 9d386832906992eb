//! The signed statement of a run (issue 42): the run's summary as an in-toto statement
//! (subject: the backups by their manifest sha256, and the runbook by its own), signed and
//! appended to the evidence log of its location (`crate::evidence`). Pass or fail: a failed
//! drill is evidence too, and the chain makes its removal visible.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use super::summary::Measure;
use super::{ReportSink, RunSummary};
use crate::evidence::keys::SigningKey;
use crate::evidence::statement::{Statement, Subject};
use crate::exec::Objective;

/// The head a run appended to its evidence log, for the other reports to carry (an anchor of
/// the log's end kept outside it): `{location, chain, sequence, record_sha256}`.
pub type Anchor = Arc<std::sync::Mutex<Option<Value>>>;

pub struct SignedEvidence {
    /// Set once the run's record is in the log (and in the store, for a log in one).
    anchor: Anchor,
    /// The head of this run's last append, not yet in the store.
    pending: Option<Value>,
    dir: PathBuf,
    key: Arc<SigningKey>,
    /// The runbook's text's sha256, as it was run.
    runbook_sha256: String,
    /// An RFC 3161 time-stamping authority's URL: each record is timestamped.
    tsa: Option<String>,
    /// The log is in an object store: `dir` is its local staging, published after the append.
    remote: Option<crate::evidence::remote::RemoteLog>,
}

impl SignedEvidence {
    pub fn new(dir: PathBuf, key: Arc<SigningKey>, runbook_source: &str) -> Self {
        SignedEvidence {
            anchor: Anchor::default(),
            pending: None,
            dir,
            key,
            runbook_sha256: crate::evidence::keys::sha256_hex(runbook_source.as_bytes()),
            tsa: None,
            remote: None,
        }
    }

    /// Evidence for a log in an object store, staged (`RemoteLog`).
    pub fn remote(log: crate::evidence::remote::RemoteLog, key: Arc<SigningKey>, runbook_source: &str) -> Self {
        let mut e = SignedEvidence::new(log.dir().to_path_buf(), key, runbook_source);
        e.remote = Some(log);
        e
    }

    /// Where the head this run appends will be, for the reports that carry it.
    pub fn anchor(&self) -> Anchor {
        self.anchor.clone()
    }

    /// The log's head before this run appends: what the backups the run writes anchor in
    /// their manifests.
    pub fn head(&self) -> Option<crate::backup::EvidenceHead> {
        let location = match &self.remote {
            Some(r) => r.location().to_string(),
            None => self.dir.display().to_string(),
        };
        crate::evidence::log::head(&self.dir, &location)
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
    // A physical backup is its archive (or its tool's manifest) and the WAL range replayed:
    // each that has a sha256 is a subject an auditor can hash again.
    for (_, _, ph) in &run.physical {
        for a in [Some(&ph.base), ph.wal_first.as_ref(), ph.wal_last.as_ref()].into_iter().flatten() {
            if let Some(sha) = &a.sha256 {
                if !subject.iter().any(|s| s.name == a.name) {
                    subject.push(Subject::sha256(a.name.clone(), sha.clone()));
                }
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
    let checks = super::checks(run, |s| {
        json!({
            "location": s.location,
            "verdict": s.outcome,
            "ground_truth": truth(&s.id()),
        })
    });
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
        .map(|(step, provider, version)| {
            let id = run.throwaway_ids.iter().find(|i| &i.step == step);
            json!({
                "step": step.label,
                "provider": provider,
                "version": version,
                "system_identifier": id.and_then(|i| i.system_identifier.as_deref()),
                "host": id.and_then(|i| i.host.as_deref()),
            })
        })
        .collect();
    let physical: Vec<Value> = run
        .physical
        .iter()
        .map(|(step, outcome, ph)| {
            let mut v = serde_json::to_value(ph).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("step".into(), step.label.clone().into());
                o.insert("verdict".into(), json!(outcome));
            }
            v
        })
        .collect();
    let mut servers: Vec<String> = run.servers.iter().map(|s| s.version.clone()).collect();
    servers.dedup();
    let (segregated, compared) = segregation(run);
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
            "physical": physical,
            "target": {
                "throwaway_servers": throwaways,
                "segregated_from_source": segregated,
                "segregation_compared": compared,
            },
        }),
    )
}

/// Whether the restored copy was segregated from its source, and what was compared to say
/// so. A throwaway this run started held it (DORA Art. 12's "segregated"), and where the
/// source is known (a server a step connected to, a backup's manifest) the throwaway's
/// system identifier and host differ from the source's. A physical recovery is a copy of the
/// source's data directory and keeps its system identifier: there the host decides. A run
/// that used only existing servers (an operator restore) is not segregated; one that used
/// none (a backup alone) restored nothing to segregate (null).
pub fn segregation(run: &RunSummary) -> (Value, Vec<String>) {
    if run.throwaways.is_empty() {
        return match run.servers.is_empty() {
            true => (Value::Null, vec!["no server held a restored copy".into()]),
            false => (Value::Bool(false), vec!["no server this run started held the restored copy".into()]),
        };
    }
    let mut compared = Vec::new();
    let mut apart = true;
    let sources: Vec<_> = run.sources.iter().collect();
    for (step, provider, _) in &run.throwaways {
        let id = run.throwaway_ids.iter().find(|i| &i.step == step);
        let physical_copy = run.physical.iter().any(|(s, _, _)| s == step);
        let label = format!("throwaway of step `{}` ({provider})", step.label);
        if sources.is_empty() {
            compared.push(format!(
                "{label}: started by this run; no source known to compare with (no database_url or manifest named one)"
            ));
            continue;
        }
        for src in &sources {
            let pair = |what: &str, mine: Option<&String>, theirs: Option<&String>| match (mine, theirs) {
                (Some(a), Some(b)) => Some((a == b, format!("{what}: {a} against the source's {b}"))),
                _ => None,
            };
            let mut said = false;
            if let Some((same, text)) =
                pair("system identifier", id.and_then(|i| i.system_identifier.as_ref()), src.system_identifier.as_ref())
            {
                said = true;
                if same && physical_copy {
                    compared.push(format!("{label}: {text}, the same as a physical copy must be"));
                } else {
                    apart &= !same;
                    compared.push(format!("{label}: {text}, {}", if same { "THE SAME" } else { "different" }));
                }
            }
            if let Some((same, text)) = pair("host", id.and_then(|i| i.host.as_ref()), src.host.as_ref()) {
                said = true;
                apart &= !same;
                compared.push(format!("{label}: {text}, {}", if same { "THE SAME" } else { "different" }));
            }
            if !said {
                compared.push(format!(
                    "{label}: started by this run; the source (step `{}`) told nothing comparable",
                    src.step.label
                ));
            }
        }
    }
    (Value::Bool(apart), compared)
}

/// Where a TSA URL points, without what may identify the caller (path, query, credentials).
fn tsa_shown(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| format!("{}://{}:{}", u.scheme(), u.host_str().unwrap_or("?"), u.port_or_known_default().unwrap_or(0)))
        .unwrap_or_else(|_| "an invalid URL".into())
}

impl ReportSink for SignedEvidence {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        // A log in a store: another run may take the sequence number this one staged for;
        // then the head is staged again and the statement appended after it (a few tries:
        // each loss means another run's record went in).
        for _ in 0..8 {
            let (said, sequence) = self.append(summary)?;
            let Some(remote) = &mut self.remote else {
                let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{said}\n").as_bytes());
                self.settle();
                return Ok(());
            };
            match block_on(remote.publish(sequence))? {
                crate::evidence::remote::Publish::Done(url) => {
                    // The staging path means nothing to the reader: the store's URL does.
                    let staged =
                        self.dir.join(crate::evidence::log::RECORDS).join(crate::evidence::log::record_name(sequence));
                    let staged = crate::util::visible(&staged.display().to_string()).into_owned();
                    let text = said.replace(&staged, &crate::util::visible(&url));
                    let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{text}\n").as_bytes());
                    self.settle();
                    return Ok(());
                }
                crate::evidence::remote::Publish::Taken(_) => {
                    let key = self.key.clone();
                    block_on(remote.stage(&key))?;
                }
            }
        }
        Err(crate::Error::environment(format!(
            "evidence location {}: other runs kept taking the next sequence number; this run's statement was not stored",
            self.remote.as_ref().map(|r| crate::util::visible(r.location())).unwrap_or_default()
        )))
    }
}

/// Run `f` to its end from a reporter (called on the runtime's thread).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    match tokio::runtime::Handle::try_current() {
        Ok(h) => tokio::task::block_in_place(|| h.block_on(f)),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the evidence upload")
            .block_on(f),
    }
}

impl SignedEvidence {
    /// The record is in the log for good: its head is the anchor the other reports carry.
    fn settle(&mut self) {
        if let Ok(mut a) = self.anchor.lock() {
            *a = self.pending.take();
        }
    }

    /// Sign and append the run's statement to the (local or staged) log, timestamped when a
    /// TSA is set: what to say, and the record's sequence number.
    fn append(&mut self, summary: &RunSummary) -> crate::Result<(String, u64)> {
        let s = statement(summary, &self.runbook_sha256);
        // An evidence log that cannot take the record is the run's environment error: the
        // run's side effects happened, and its evidence must not be silently lost.
        // A staged log's records name the store's location, not the staging directory's.
        let appended = match &self.remote {
            Some(r) => crate::evidence::log::append_at(
                &self.dir,
                &crate::evidence::log::location_name(r.location()),
                &self.key,
                s,
            )?,
            None => crate::evidence::log::append(&self.dir, &self.key, s)?,
        };
        let location = match &self.remote {
            Some(r) => crate::evidence::log::location_name(r.location()),
            None => crate::evidence::log::location_name(&self.dir.display().to_string()),
        };
        self.pending = Some(json!({
            "location": location,
            "chain": appended.chain_id,
            "sequence": appended.sequence,
            "record_sha256": appended.sha256,
        }));
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
        Ok((said, appended.sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Fact;
    use crate::facts::{Artefact, PhysicalFact, RecoveryProof};

    /// A run of one suite whose steps (labelled `s0`, `s1`...) established `facts`.
    fn run(steps: Vec<Vec<Fact>>) -> RunSummary {
        crate::report::summary::of_steps(None, steps.into_iter().map(|facts| ("x", facts)).collect())
    }

    fn throwaway(sid: &str, host: &str) -> Vec<Fact> {
        vec![
            Fact::Server { version: "15.8".into() },
            Fact::Throwaway {
                provider: "native".into(),
                version: "15.8".into(),
                system_identifier: Some(sid.into()),
                host: Some(host.into()),
            },
        ]
    }

    fn source(sid: Option<&str>, host: Option<&str>) -> Vec<Fact> {
        vec![Fact::Source { system_identifier: sid.map(Into::into), host: host.map(Into::into) }]
    }

    /// Regression (issue 42): "segregated_from_source" was true for any throwaway, even one
    /// that was the source itself; it now compares the throwaway's system identifier and
    /// host with the source's where the source is known, and says what it compared.
    #[test]
    fn segregation_compares_the_throwaway_with_the_source_and_says_what_it_compared() {
        let (v, said) =
            segregation(&run(vec![source(Some("7001"), Some("db:5432")), throwaway("7999", "127.0.0.1:40001")]));
        assert_eq!(v, Value::Bool(true), "{said:?}");
        assert!(
            said.iter().any(|s| s.contains("system identifier: 7999 against the source's 7001, different")),
            "{said:?}"
        );
        assert!(
            said.iter().any(|s| s.contains("host: 127.0.0.1:40001 against the source's db:5432, different")),
            "{said:?}"
        );

        // The "throwaway" is the source: same system identifier and host.
        let (v, said) = segregation(&run(vec![source(Some("7001"), Some("db:5432")), throwaway("7001", "db:5432")]));
        assert_eq!(v, Value::Bool(false), "{said:?}");
        assert!(said.iter().filter(|s| s.contains("THE SAME")).count() == 2, "{said:?}");

        // Same host, another cluster (a second initdb on the source's address): not apart.
        let (v, _) = segregation(&run(vec![source(None, Some("db:5432")), throwaway("7999", "db:5432")]));
        assert_eq!(v, Value::Bool(false));

        // No source known: started by this run, and said so.
        let (v, said) = segregation(&run(vec![throwaway("7999", "127.0.0.1:40001")]));
        assert_eq!(v, Value::Bool(true));
        assert!(said[0].contains("no source known"), "{said:?}");

        // Existing servers only: not segregated; none at all: nothing to say.
        assert_eq!(segregation(&run(vec![vec![Fact::Server { version: "15".into() }]])).0, Value::Bool(false));
        assert_eq!(segregation(&run(vec![vec![]])).0, Value::Null);
    }

    /// A physical copy shares its source's system identifier by nature: that is said, and
    /// the host decides.
    #[test]
    fn a_physical_recovery_is_judged_apart_by_its_host_and_its_archive_and_wal_are_subjects() {
        let ph = PhysicalFact {
            tool: "pgdrill".into(),
            base: Artefact { name: "/b/x.base.tar.pgdrill".into(), sha256: Some("aa".repeat(32)) },
            system_identifier: Some("7001".into()),
            wal_first: Some(Artefact { name: "000000010000000000000003".into(), sha256: Some("bb".repeat(32)) }),
            wal_last: Some(Artefact { name: "000000010000000000000005".into(), sha256: Some("cc".repeat(32)) }),
            wal_segments: Some(3),
            wal_from_lsn: Some("0/3000028".into()),
            wal_to_lsn: Some("0/5000100".into()),
            wal_basis: "pgdrill archive".into(),
            recovery: Some(RecoveryProof {
                target: "restore point \"x\"".into(),
                reached: true,
                stop_line: Some("recovery stopping at restore point \"x\"".into()),
                replay_lsn: "0/5000100".into(),
                ..Default::default()
            }),
        };
        let mut recovered = throwaway("7001", "/tmp/sock:5432");
        recovered.push(Fact::Physical(Box::new(ph)));
        let r = run(vec![source(Some("7001"), Some("127.0.0.1:5433")), recovered]);
        let (v, said) = segregation(&r);
        assert_eq!(v, Value::Bool(true), "{said:?}");
        assert!(said.iter().any(|s| s.contains("the same as a physical copy must be")), "{said:?}");
        let s = statement(&r, &"dd".repeat(32));
        let names: Vec<&str> = s.subject.iter().map(|s| s.name.as_str()).collect();
        for want in ["/b/x.base.tar.pgdrill", "000000010000000000000003", "000000010000000000000005"] {
            assert!(names.contains(&want), "{names:?}");
        }
        let p = &s.predicate["physical"][0];
        assert_eq!(p["recovery"]["reached"], json!(true), "{p}");
        assert_eq!(p["wal_basis"], json!("pgdrill archive"), "{p}");
        assert!(s.predicate["target"]["segregation_compared"].as_array().is_some_and(|a| !a.is_empty()));
    }
}
