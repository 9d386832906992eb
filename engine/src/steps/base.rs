//! `backup.base`: a base backup of a whole cluster (`backup::base`), streamed encrypted into
//! any store, beside the WAL archive `pgdrill wal push` fills.

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::archive::KeySource;
use crate::backup::base::{self, BaseOptions};
use crate::template::is_template;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct BaseWith {
    /// the server (a role with REPLICATION; password from the URL, PGPASSWORD or ~/.pgpass)
    #[field(secret)]
    database_url: String,
    /// where it goes: a directory, s3://, gs://, az://; stored under
    /// .cluster/<system identifier>/base/
    #[field(ty = "path")]
    storage: String,
    /// 64 hex digits, base64 of 32 bytes, or a passphrase (Argon2id); absent: not encrypted
    #[field(key)]
    key: Option<String>,
    /// true: a key is required; false: not encrypted even with a key; unset: encrypted when
    /// a key is given
    #[serde(default, deserialize_with = "super::de::opt_bool")]
    encrypt: Option<bool>,
    /// zstd level (default 3)
    #[serde(default = "three", deserialize_with = "super::de::int")]
    level: i32,
    /// zstd threads (default 2)
    #[serde(default = "two", deserialize_with = "super::de::threads")]
    threads: u32,
    /// fetch (default): the WAL the backup needs is inside it; none: only in the WAL archive
    #[serde(default = "fetch")]
    #[field(ty = "fetch|none")]
    wal: String,
    /// fast (default): an immediate checkpoint; spread: the server's pace
    #[serde(default = "fast")]
    #[field(ty = "fast|spread")]
    checkpoint: String,
    /// pg_basebackup to use (default: found for the server's major, else from its image)
    #[field(ty = "path")]
    pg_basebackup: Option<String>,
    /// keep the base backup and its manifest from deletion this long (e.g. `30d`) with S3
    /// Object Lock, as backup.create does; a storage that cannot keep it (a bucket without
    /// Object Lock, a local directory, Azure, GCS) is refused before pg_basebackup starts;
    /// empty: no retention
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    retain: Option<std::time::Duration>,
    /// the Object Lock mode with `retain` (default governance: users allowed to bypass it may
    /// still remove the backup; compliance: no one can until the date)
    #[serde(default = "super::de::governance")]
    #[field(ty = "governance|compliance")]
    lock_mode: String,
}

fn three() -> i32 {
    3
}
fn two() -> u32 {
    2
}
fn fetch() -> String {
    "fetch".into()
}
fn fast() -> String {
    "fast".into()
}

impl With for BaseWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.wal) && !matches!(self.wal.as_str(), "fetch" | "none") {
            return Err(WithError::new("wal", format!("`{}`: use fetch or none", self.wal)));
        }
        if !is_template(&self.checkpoint) && !matches!(self.checkpoint.as_str(), "fast" | "spread") {
            return Err(WithError::new("checkpoint", format!("`{}`: use fast or spread", self.checkpoint)));
        }
        super::de::check_retention(self.retain, &self.lock_mode)?;
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct BaseOutputs {
    /// the stored base backup (URL or path)
    path: String,
    /// its key inside the storage (what `wal.check`'s `base` and a restore take)
    key: String,
    /// its manifest
    manifest: String,
    /// the cluster's system identifier (text: it has 20 digits)
    system_identifier: String,
    /// the timeline it was taken on
    timeline: u32,
    /// where its WAL starts (`X/Y`)
    start_lsn: String,
    /// where it is consistent (`X/Y`): recovery must replay to here at least
    stop_lsn: String,
    /// the server's major version
    server_major: u32,
    /// stored bytes
    size: u64,
    /// bytes pg_basebackup produced
    raw_size: u64,
    /// of the stored object
    sha256: String,
    /// files in the backup
    files: u64,
    /// whether it is encrypted
    encrypted: bool,
    /// when it finished (RFC 3339)
    created: String,
}

/// Base backup of a whole cluster: pg_basebackup (tar, SHA-256 backup manifest) streamed through zstd and AES-256-GCM
/// into any storage, with an authenticated manifest (system identifier, timeline, start and stop LSN).
#[step(name = "backup.base")]
impl Base {
    async fn run(ctx: StepCtx, w: BaseWith) -> Result<BaseOutputs, StepError> {
        let key = w.key.as_deref().filter(|k| !k.is_empty()).map(KeySource::from_secret);
        let key = match (w.encrypt, key) {
            (Some(true), None) => {
                return Err(StepError::invalid(
                    "no key to encrypt with: set the key (PGDRILL_BACKUP_KEY for the shipped base-backup runbook), or encrypt: false",
                ))
            }
            (Some(false), _) => {
                ctx.warn("this base backup is NOT encrypted (encrypt: false)");
                None
            }
            (None, None) => {
                ctx.warn("no key: this base backup is NOT encrypted");
                None
            }
            (_, k) => k,
        };
        let storage = match ctx.resolve(&w.storage) {
            super::Place::Local(p) => p.display().to_string(),
            super::Place::Object(_) => w.storage.clone(),
        };
        let retention = super::de::retention(w.retain, &w.lock_mode, &storage)?;
        let opts = BaseOptions {
            url: w.database_url.clone(),
            retention,
            store: ctx.store(&storage)?,
            key,
            level: w.level,
            threads: w.threads,
            wal_method: w.wal.clone(),
            checkpoint: w.checkpoint.clone(),
            pg_basebackup: w.pg_basebackup.as_deref().map(|p| ctx.local("pg_basebackup", p)).transpose()?,
            evidence: ctx.evidence_head.clone(),
        };
        let log = |l: String| ctx.log(l);
        let made = base::create(opts, &log).await?;
        let m = &made.manifest;
        let out = BaseOutputs {
            path: made.url.clone(),
            manifest: crate::backup::layout::manifest_key(&made.url),
            key: made.key.clone(),
            system_identifier: m.system_identifier.clone(),
            timeline: m.timeline,
            start_lsn: m.start_lsn.clone(),
            stop_lsn: m.stop_lsn.clone(),
            server_major: m.server_major,
            size: m.sizes.stored,
            raw_size: m.sizes.raw,
            sha256: m.sha256.clone(),
            files: m.files,
            encrypted: m.cipher != "none",
            created: crate::util::rfc3339(m.finished_at),
        };
        ctx.fact(crate::facts::Fact::Server { version: m.server_version.clone() });
        ctx.backup_fact(crate::facts::BackupRole::Written, &super::outputs_of(&out)?);
        ctx.fact(crate::facts::Fact::Source {
            system_identifier: Some(m.system_identifier.clone()),
            host: crate::pg::server_id(&w.database_url).ok(),
        });
        ctx.fact(crate::facts::Fact::Physical(Box::new(base_fact(&made))));
        Ok(out)
    }
}

/// What a base backup taken is, for the evidence: the stored archive by its sha256, and the
/// WAL range from its start to its stop (inside it with `wal: fetch`; else the archive must
/// hold it, which `wal.check` proves).
fn base_fact(made: &base::BaseCreated) -> crate::facts::PhysicalFact {
    use crate::facts::{Artefact, PhysicalFact};
    use crate::physical::source::Lsn;
    let m = &made.manifest;
    let segment = |lsn: &str| {
        Lsn::parse(lsn).map(|l| Artefact { name: l.segment_name(m.timeline, m.wal_segment_size), sha256: None })
    };
    PhysicalFact {
        tool: format!("pgdrill {} ({})", m.pgdrill_version, m.pg_basebackup_version),
        base: Artefact { name: made.url.clone(), sha256: Some(m.sha256.clone()) },
        system_identifier: Some(m.system_identifier.clone()),
        wal_first: segment(&m.start_lsn),
        wal_last: segment(&m.stop_lsn),
        wal_segments: None,
        wal_from_lsn: Some(m.start_lsn.clone()),
        wal_to_lsn: Some(m.stop_lsn.clone()),
        wal_basis: if m.wal_method == "fetch" { "backup" } else { "backup manifest (the WAL is in the archive only)" }.into(),
        recovery: None,
    }
}
