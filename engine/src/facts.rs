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
    Throwaway { provider: String, version: String },
    /// A point-in-time recovery of a physical backup, proven to have reached its target
    /// (`pitr.restore`): the run's RTO and RPO are also a PITR's (`pgdrill_pitr_*` metrics).
    PointInTime { target: String },
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
