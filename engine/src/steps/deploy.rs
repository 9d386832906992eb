//! `deploy.record` and `deploy.read`: the deployment manifest a pre-deployment backup
//! leaves, and the restore that rolls a database back to it.
//!
//! The manifest is a small JSON file (target, backup location, sha256, time, label). A
//! restore given one restores exactly that file: the database must match, and the backup's
//! sha256 must still be the one recorded, or nothing is touched.

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};

/// What a deployment manifest holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Deployment {
    /// Always `pgdrill-deployment/1`.
    pub format: String,
    pub label: String,
    pub database: String,
    /// The fleet target (`project/environment/database`) or the server, as given.
    pub target: String,
    pub backup: String,
    pub sha256: String,
    /// RFC 3339, when the manifest was written (after the backup was checked).
    pub recorded_at: String,
    pub pgdrill: String,
}

const FORMAT: &str = "pgdrill-deployment/1";

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RecordWith {
    /// the file to write; an existing one is never replaced
    #[field(ty = "path")]
    manifest: String,
    /// the deployment, e.g. a release tag
    label: String,
    /// the database backed up
    database: String,
    /// where it lives (a fleet target, a server)
    #[serde(default)]
    target: String,
    /// the checked backup
    #[field(ty = "path")]
    backup: String,
    /// its checksum as checked
    sha256: String,
}

impl With for RecordWith {
    fn check(&self) -> Result<(), WithError> {
        if self.label.trim().is_empty() {
            return Err(WithError::new("label", "the deploy label is empty: give the release, e.g. `v2.14.0`"));
        }
        if self.label.chars().any(char::is_control) {
            return Err(WithError::new("label", "the deploy label holds control characters"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RecordOutputs {
    /// the manifest written
    manifest: String,
}

/// Write a deployment manifest (label, database, backup, sha256, time) that a restore can roll back to.
#[step(name = "deploy.record", report_log)]
impl Record {
    async fn run(ctx: StepCtx, w: RecordWith) -> Result<RecordOutputs, StepError> {
        let path = ctx.local("manifest", &w.manifest)?;
        let backup = crate::storage::canonical_in(&w.backup, &ctx.base_dir)
            .map_err(|e| StepError::environment(format!("backup {}: {e}", w.backup)))?;
        let d = Deployment {
            format: FORMAT.into(),
            label: w.label,
            database: w.database,
            target: w.target,
            backup,
            sha256: w.sha256,
            recorded_at: super::rfc3339(time::OffsetDateTime::now_utc()),
            pgdrill: env!("CARGO_PKG_VERSION").into(),
        };
        let body = serde_json::to_string_pretty(&d).map_err(|e| StepError::environment(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StepError::environment(format!("cannot create {}: {e}", dir.display())))?;
        }
        // Written beside, then linked into place: a second deployment with the same label
        // fails instead of replacing the first one's way back.
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, body.as_bytes())
            .and_then(|_| std::fs::File::open(&tmp)?.sync_all())
            .map_err(|e| StepError::environment(format!("cannot write {}: {e}", tmp.display())))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(StepError::invalid(format!(
                    "deployment manifest {} already exists: give another label or manifest path",
                    path.display()
                )))
            }
            Err(e) => return Err(StepError::environment(format!("cannot write {}: {e}", path.display()))),
        }
        ctx.log(format!("deployment {} of {}: {} (sha256 {})", d.label, d.database, d.backup, d.sha256));
        Ok(RecordOutputs { manifest: path.display().to_string() })
    }
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct ReadWith {
    /// written by deploy.record
    #[field(ty = "path")]
    manifest: String,
    /// the manifest must be for this database
    ///
    /// The database the restore is about.
    database: String,
}

impl With for ReadWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct ReadOutputs {
    /// the backup file
    backup: String,
    /// as recorded, and as the file still is
    sha256: String,
    /// the deployment
    label: String,
    /// the database backed up
    database: String,
    /// when the manifest was written
    recorded_at: String,
}

/// Read a deployment manifest: the backup to roll back to, checked against the database and the recorded sha256.
#[step(name = "deploy.read", report_log)]
impl Read {
    async fn run(ctx: StepCtx, w: ReadWith) -> Result<ReadOutputs, StepError> {
        let path = ctx.local("manifest", &w.manifest)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| StepError::invalid(format!("cannot read deployment manifest {}: {e}", path.display())))?;
        let d: Deployment = serde_json::from_str(&text)
            .map_err(|e| StepError::invalid(format!("{} is not a deployment manifest: {e}", path.display())))?;
        if d.format != FORMAT {
            return Err(StepError::invalid(format!("{} is `{}`, not a {FORMAT} manifest", path.display(), d.format)));
        }
        if d.database != w.database {
            return Err(StepError::invalid(format!(
                "deployment manifest {} is for database `{}`, not `{}`: nothing was changed",
                path.display(),
                d.database,
                w.database
            )));
        }
        let backup = std::path::PathBuf::from(&d.backup);
        let sha = tokio::task::spawn_blocking(move || super::verify::sha256_file(&backup))
            .await
            .map_err(|e| StepError::environment(e.to_string()))??;
        if sha != d.sha256 {
            return Err(StepError::failed(format!(
                "backup {} changed since deployment {} was recorded (sha256 {sha}, recorded {}): nothing was changed",
                d.backup, d.label, d.sha256
            )));
        }
        ctx.log(format!("deployment {} recorded {}: {} (sha256 matches)", d.label, d.recorded_at, d.backup));
        ctx.fact(crate::facts::Fact::Database { name: d.database.clone() });
        Ok(ReadOutputs {
            backup: d.backup,
            sha256: d.sha256,
            label: d.label,
            database: d.database,
            recorded_at: d.recorded_at,
        })
    }
}
