//! The words a step and the reporters share: how a step ended (`Outcome`) and what it
//! established (`Fact`: a server used, a backup written or picked, an objective measured,
//! a part of a verification). Steps tell them through their context; the executor carries
//! them in events and records; reporters read them, never a step's kind or output names.
//! Below steps/ and exec/, so that neither has to reach into the other for them.

use serde::{Deserialize, Serialize};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Passed,
    Failed,
    Errored,
    TimedOut,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed => "failed",
            Outcome::Errored => "errored",
            Outcome::TimedOut => "timed out",
            Outcome::Skipped => "skipped",
        }
    }
}

/// A fact a step reports through its context, whatever its kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
pub enum Fact {
    /// A PostgreSQL server the run used (a throwaway, a restore target).
    Server { version: String },
    /// A backup the step wrote, picked or snapshotted (values as the step output them).
    Backup {
        role: BackupRole,
        path: serde_json::Value,
        sha256: serde_json::Value,
        size: serde_json::Value,
        created: serde_json::Value,
        age_s: serde_json::Value,
    },
    /// A recovery objective measured against its target (reported pass or fail).
    Objective {
        objective: Objective,
        measured_s: serde_json::Value,
        target_s: serde_json::Value,
        /// Where the recovery time went, phase name -> seconds (RTO only).
        #[serde(skip_serializing_if = "Option::is_none")]
        phases: Option<serde_json::Value>,
    },
    /// Part of proving a backup restores: restored, fingerprint compared, amcheck run.
    Verified,
    /// What a check judged the restored copy's content against: `manifest` (the fingerprint
    /// taken with the backup), `source` (the live source now), `expectations` (declared by
    /// the runbook) or `none` (content unproven). Signed evidence states it per check.
    GroundTruth { basis: String },
    /// A throwaway server the run started for itself and removes at the end (a restore
    /// target apart from every source server: what DORA Art. 12 calls segregated).
    Throwaway {
        provider: String,
        version: String,
        /// Its own identity, to compare with the source's (`Fact::Source`): `pg_control`'s
        /// system identifier and where it listens (`host:port`, or its socket directory).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_identifier: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// The server a backup came from, as far as the step knows it: its system identifier
    /// (from the server or the backup's manifest) and where it listens. Signed evidence
    /// compares a throwaway with it to say the restore was segregated from its source.
    Source {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        system_identifier: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// A physical backup taken or recovered, by what an auditor can check (issue 42): the
    /// base backup and the WAL range it holds or replayed, each with its sha256 where the
    /// source records one, and for a recovery the target with the server's own word that it
    /// was reached. Signed evidence names the digests as its statement's subjects.
    Physical(Box<PhysicalFact>),
    /// A point-in-time recovery of a physical backup, proven to have reached its target
    /// (`pitr.restore`): the run's RTO and RPO are also a PITR's (`pgdrill_pitr_*` metrics).
    PointInTime { target: String },
    /// The database the step worked on: a backup's source, a throwaway's database, a
    /// recovery's. A run not told which database it is about (no `database` variable, no
    /// `database_url`: a drill of a throwaway) is labelled in its alerts and metrics by the
    /// first one a step told (`RunSummary::database`).
    Database { name: String },
    /// Something the operator must act on, whatever the step's outcome (a backup written
    /// unencrypted, a certificate not verified, roles left to drop by hand), told with
    /// `StepCtx::warn`: its log shows it as `warning: TEXT`, and the terminal and the
    /// compliance report list it by this kind, never by how a log line begins.
    Warning { text: String },
}

/// A file or object an auditor can find again, by name, and by its sha256 where known.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Artefact {
    pub name: String,
    #[serde(default)]
    pub sha256: Option<String>,
}

/// What a physical backup step established (`Fact::Physical`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PhysicalFact {
    /// The tool behind the backup and its version (`pgdrill 0.1.0`, `pgbackrest 2.54.0`).
    pub tool: String,
    /// The base backup. Its sha256 is the stored archive's (pgdrill: from its authenticated
    /// manifest) or the tool's own manifest's (pg_basebackup's `backup_manifest`); none
    /// where the tool keeps no single file to hash (then its id is the name).
    pub base: Artefact,
    /// The backed-up cluster's system identifier, as the backup records it.
    #[serde(default)]
    pub system_identifier: Option<String>,
    /// The WAL range: the first and last segment, with their sha256 when pgdrill's own
    /// archive recorded it (each checked as it was fetched).
    #[serde(default)]
    pub wal_first: Option<Artefact>,
    #[serde(default)]
    pub wal_last: Option<Artefact>,
    /// Segments in the range, where counted.
    #[serde(default)]
    pub wal_segments: Option<u32>,
    /// The range as WAL locations (`X/Y`): from the backup's start (or replay's redo start)
    /// to its stop (or the last record replayed).
    #[serde(default)]
    pub wal_from_lsn: Option<String>,
    #[serde(default)]
    pub wal_to_lsn: Option<String>,
    /// Who says what the range is: `pgdrill archive` (each segment's recorded sha256, as
    /// `wal fetch` checked it), `server log` (the recovered server's `restored log file`
    /// lines), `backup` (the WAL inside the base backup, from its manifest's LSNs).
    pub wal_basis: String,
    /// A recovery's target and its proof; none for a backup taken.
    #[serde(default)]
    pub recovery: Option<RecoveryProof>,
}

/// A point-in-time recovery's target and what proves it was reached.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct RecoveryProof {
    /// The target as asked (`time 2026-12-06 07:00:00+00, inclusive`, `latest`, ...).
    pub target: String,
    /// Whether the proof held: the step passes only when it did.
    pub reached: bool,
    /// The server's own line saying where it stopped (none for `latest`).
    #[serde(default)]
    pub stop_line: Option<String>,
    /// The commit time of the last transaction replayed (RFC 3339).
    #[serde(default)]
    pub achieved_time: Option<String>,
    /// `pg_last_wal_replay_lsn()` after promotion.
    pub replay_lsn: String,
    /// The timeline promoted to.
    #[serde(default)]
    pub new_timeline: Option<u32>,
    /// The marker query's answer, when one was given.
    #[serde(default)]
    pub marker: Option<bool>,
    /// The server log lines the proof rests on, in order.
    #[serde(default)]
    pub server_log: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupRole {
    Written,
    Picked,
    Snapshot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// A drill's recovery time.
    Rto,
    /// A drill's data loss.
    Rpo,
    /// The age of the backup a verify proved restorable: the RPO it implies.
    BackupAge,
}
