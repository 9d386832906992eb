//! `backup.create`, `backup.check`, `backup.list`, `backup.latest`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With, WithError};
use crate::archive::{Codec, KeySource};
use crate::backup::{self, CreateOptions, Format, Manifest};
use crate::pg::fingerprint::Mode;
use crate::storage::LocalStore;
use crate::template::is_template;

fn key_of(k: &Option<String>) -> Option<KeySource> {
    k.as_deref().filter(|s| !s.is_empty()).map(KeySource::from_secret)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateWith {
    database_url: String,
    storage: String,
    #[serde(default = "custom")]
    format: String,
    #[serde(default = "zstd")]
    compression: String,
    #[serde(default = "three", deserialize_with = "super::de::int")]
    level: i32,
    #[serde(default = "two", deserialize_with = "super::de::int")]
    threads: u32,
    #[serde(default = "two", deserialize_with = "super::de::int")]
    jobs: u32,
    key: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_bool")]
    encrypt: Option<bool>,
    #[serde(default = "full")]
    fingerprint: String,
    pg_dump: Option<String>,
    name: Option<String>,
}

fn custom() -> String {
    "custom".into()
}
fn zstd() -> String {
    "zstd".into()
}
fn full() -> String {
    "full".into()
}
fn three() -> i32 {
    3
}
fn two() -> u32 {
    2
}

impl With for CreateWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.format) {
            Format::parse(&self.format).map_err(|m| WithError::new("format", m))?;
        }
        if !is_template(&self.compression) {
            Codec::parse(&self.compression).map_err(|m| WithError::new("compression", m))?;
        }
        if !is_template(&self.fingerprint) {
            Mode::parse(&self.fingerprint).map_err(|m| WithError::new("fingerprint", m))?;
        }
        Ok(())
    }
}

pub const CREATE: StepKind = StepKind {
    name: "backup.create",
    summary:
        "pg_dump streamed through compression and AES-256-GCM into storage, with a manifest and source fingerprint.",
    fields: &[
        Field {
            name: "database_url",
            ty: "string",
            required: true,
            doc: "source (password from the URL, PGPASSWORD or ~/.pgpass)",
        },
        Field {
            name: "storage",
            ty: "path",
            required: true,
            doc: "backup directory; files go to <storage>/<database>/ (the name encoded: `%XX` for anything but letters, digits, `_`, `-` and a `.` not first)",
        },
        Field {
            name: "format",
            ty: "custom|directory|plain",
            required: false,
            doc: "pg_dump format (default custom); directory dumps with `jobs` in parallel",
        },
        Field { name: "compression", ty: "zstd|gzip|none", required: false, doc: "default zstd" },
        Field { name: "level", ty: "integer", required: false, doc: "compression level (default 3)" },
        Field { name: "threads", ty: "integer", required: false, doc: "zstd threads (default 2)" },
        Field { name: "jobs", ty: "integer", required: false, doc: "pg_dump -j for format directory (default 2)" },
        Field {
            name: "key",
            ty: "secret",
            required: false,
            doc: "64 hex digits, base64 of 32 bytes, or a passphrase (Argon2id); absent: not encrypted",
        },
        Field {
            name: "encrypt",
            ty: "boolean",
            required: false,
            doc: "true: a key is required; false: not encrypted even with a key (a warning in the log and reports); unset: encrypted when a key is given",
        },
        Field {
            name: "fingerprint",
            ty: "full|counts|off",
            required: false,
            doc: "source fingerprint in the dump's snapshot (default full)",
        },
        Field {
            name: "pg_dump",
            ty: "path",
            required: false,
            doc: "pg_dump to use (default: found and version-checked)",
        },
        Field {
            name: "name",
            ty: "string",
            required: false,
            doc: "storage directory name (default: the database name)",
        },
    ],
    outputs: &[
        Field { name: "path", ty: "string", required: false, doc: "the backup file" },
        Field { name: "manifest", ty: "string", required: false, doc: "its manifest" },
        Field { name: "sha256", ty: "string", required: false, doc: "of the stored file" },
        Field { name: "size", ty: "integer", required: false, doc: "stored bytes" },
        Field { name: "raw_size", ty: "integer", required: false, doc: "pg_dump bytes" },
        Field { name: "database", ty: "string", required: false, doc: "source database" },
        Field { name: "server_major", ty: "integer", required: false, doc: "source major version" },
        Field { name: "fingerprint", ty: "map", required: false, doc: "source fingerprint" },
        Field { name: "format", ty: "string", required: false, doc: "custom or plain" },
        Field { name: "encrypted", ty: "boolean", required: false, doc: "whether it is encrypted" },
        Field { name: "manifest_auth", ty: "string", required: false, doc: "`mac`, or why the manifest is not bound to the backup" },
        Field { name: "created", ty: "string", required: false, doc: "when the dump finished (RFC 3339)" },
        Field { name: "started_epoch", ty: "number", required: false, doc: "when the dump's snapshot was taken (Unix seconds): what a drill's RPO is measured against" },
        Field { name: "peak_rss_kib", ty: "integer", required: false, doc: "pgdrill's peak memory so far" },
    ],
    check: check_with::<CreateWith>,
    report_log: true,
    interactive: false,
    run: run_create,
};

fn run_create(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: CreateWith = typed(with)?;
        let opts = CreateOptions {
            url: w.database_url.clone(),
            storage: if crate::storage::remote::is_remote(&w.storage) {
                PathBuf::new()
            } else {
                ctx.resolve(&w.storage)
            },
            remote: if crate::storage::remote::is_remote(&w.storage) {
                Some(crate::storage::remote::open(&w.storage).map_err(StepError::Invalid)?)
            } else {
                None
            },
            format: Format::parse(&w.format).map_err(StepError::Invalid)?,
            codec: Codec::parse(&w.compression).map_err(StepError::Invalid)?,
            level: w.level,
            threads: w.threads,
            jobs: w.jobs,
            key: if w.encrypt == Some(false) { None } else { key_of(&w.key) },
            fingerprint: Mode::parse(&w.fingerprint).map_err(StepError::Invalid)?,
            pg_dump: w.pg_dump.as_deref().map(PathBuf::from),
            name: w.name.clone(),
            meter: Some(crate::progress::Meter::default()),
        };
        match (w.encrypt, opts.key.is_some()) {
            (Some(true), false) => {
                return Err(StepError::Invalid(
                    "no key to encrypt with: set the key (PGDRILL_BACKUP_KEY for the shipped backup runbook), or --var encrypt=false for an unencrypted backup".into(),
                ))
            }
            (Some(false), _) => ctx.log(
                "warning: this backup is NOT encrypted (encrypt: false): whoever can read the storage can read the data, and its manifest is bound to nothing (backups list shows UNAUTH)",
            ),
            (None, false) => ctx.log("warning: no key: this backup is NOT encrypted"),
            _ => {}
        }
        let log_ctx = ctx.clone();
        let log = move |l: String| log_ctx.log(l);
        let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
        let created = backup::create(opts, &log).await.map_err(StepError::from)?;
        let mut o = manifest_outputs(&created.path, &created.manifest);
        o.insert("peak_rss_kib".into(), backup::peak_rss_kib().unwrap_or(0).into());
        ctx.backup_fact(crate::exec::BackupRole::Written, &o);
        Ok(o)
    })
}

fn manifest_outputs(path: &std::path::Path, m: &Manifest) -> Outputs {
    let mut o = Outputs::new();
    o.insert("path".into(), crate::storage::remote::display(path).into());
    o.insert("manifest".into(), crate::storage::remote::display(&crate::storage::manifest_path(path)).into());
    o.insert("sha256".into(), m.sha256.clone().into());
    o.insert("size".into(), m.sizes.stored.into());
    o.insert("raw_size".into(), m.sizes.raw.into());
    o.insert("database".into(), m.database.clone().into());
    o.insert("server_major".into(), m.server_major.into());
    o.insert("format".into(), serde_json::to_value(m.format).unwrap_or_default());
    o.insert("encrypted".into(), (m.cipher != "none").into());
    // What binds the manifest to the backup, as written (checked with the key by
    // backup.pick and backup.check): `mac`, or why there is none.
    let auth = match (&m.authentication, m.cipher.as_str()) {
        (Some(_), _) => "mac",
        (None, "none") => "unauthenticated (not encrypted)",
        (None, _) => "unauthenticated (written before binding)",
    };
    o.insert("manifest_auth".into(), auth.into());
    o.insert("created".into(), super::rfc3339(m.finished_at).into());
    o.insert("fingerprint".into(), serde_json::to_value(&m.fingerprint).unwrap_or_default());
    // When the dump's snapshot was taken (to the millisecond): what a drill's RPO is checked against.
    o.insert("started_epoch".into(), serde_json::json!(m.started_at.unix_timestamp_nanos() as f64 / 1e9));
    o
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckWith {
    path: String,
    key: Option<String>,
    #[serde(default, deserialize_with = "super::de::boolean")]
    stage: bool,
    staging: Option<String>,
}

impl With for CheckWith {}

pub const CHECK: StepKind = StepKind {
    name: "backup.check",
    summary:
        "Verify a backup without restoring: manifest, sha256, every encrypted chunk, decompression, pg_restore --list.",
    fields: &[
        Field { name: "path", ty: "path", required: true, doc: "backup file" },
        Field { name: "key", ty: "secret", required: false, doc: "key for an encrypted backup" },
        Field {
            name: "stage",
            ty: "bool",
            required: false,
            doc: "keep the checked plaintext of a custom dump for a parallel restore (`backup.restore` field `staged`), removed when the runbook ends",
        },
        Field { name: "staging", ty: "path", required: false, doc: "directory for the staged file (default: beside the backup)" },
    ],
    outputs: &[
        Field { name: "tables", ty: "integer", required: false, doc: "tables in the dump's table of contents" },
        Field { name: "sha256", ty: "string", required: false, doc: "verified checksum" },
        Field { name: "staged", ty: "path", required: false, doc: "the staged plaintext dump, or empty when nothing was staged" },
    ],
    check: check_with::<CheckWith>,
    report_log: false,
    interactive: false,
    run: run_check,
};

fn run_check(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: CheckWith = typed(with)?;
        // A pgdrill archive in an object store is read as a stream: checked (and staged)
        // in one pass, with no local copy of it.
        let streamed = ctx.backup_stream(&w.path).await?;
        if let Some(s) = &streamed {
            ctx.log(format!(
                "reading {} from the store as a stream (no local copy)",
                crate::storage::remote::display(s.stand_in())
            ));
        }
        let path = match &streamed {
            Some(s) => s.stand_in().to_path_buf(),
            None => ctx.backup_file(&w.path).await?,
        };
        let secret = w.key.clone();
        let stage = w.stage.then(|| match &w.staging {
            Some(d) => ctx.resolve(d),
            None => path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        });
        let meter = crate::progress::Meter::default();
        let _watch = ctx.watch(&meter);
        let (checked, staged) = tokio::task::spawn_blocking(move || match streamed {
            Some(super::FromStore::Archive(path, reader)) => {
                backup::check_stream(&path, reader, secret.as_deref(), stage.as_deref(), Some(&meter))
            }
            Some(super::FromStore::Foreign(path, opener)) => backup::check_foreign_stream(
                std::path::Path::new(&crate::storage::remote::display(&path)),
                &opener,
                secret.as_deref(),
                stage.as_deref(),
            ),
            None => backup::check_and_stage(&path, secret.as_deref(), stage.as_deref(), Some(&meter)),
        })
        .await
        .map_err(|e| StepError::Environment(e.to_string()))?
        .map_err(StepError::from)?;
        let mut o = Outputs::new();
        o.insert("tables".into(), checked.tables.into());
        match staged {
            Some(st) => {
                let p = st.file.0.display().to_string();
                let size = std::fs::metadata(&st.file.0).map(|m| m.len()).unwrap_or(0);
                ctx.log(format!("staged the checked dump ({size} bytes) in {p} for the restore"));
                match &st.offsets {
                    Ok(n) => ctx.log(format!("recorded where the data of {n} entries starts, for parallel restore")),
                    Err(why) => ctx.log(format!("data offsets not recorded ({why}): pg_restore will scan for them")),
                }
                o.insert("staged".into(), p.clone().into());
                ctx.resources.push(format!("staged dump {p}"), Box::new(st.file));
            }
            None => {
                if w.stage {
                    ctx.log("nothing to stage: the restore reads this backup as it is");
                }
                o.insert("staged".into(), "".into());
            }
        }
        match &checked.manifest {
            Some(m) => {
                if let Some(t) = checked.trust {
                    ctx.log(t.describe());
                }
                ctx.log(format!("{} tables, sha256 {}", checked.tables, m.sha256));
                o.insert("sha256".into(), m.sha256.clone().into());
            }
            None => {
                if let Some(l) = checked.layers.iter().find(|l| l.contains("legacy key derivation")) {
                    ctx.log(format!(
                        "warning: {l}: one round of a fast hash turns the passphrase into the key, which makes guessing it cheap; new backups should use `openssl enc -pbkdf2` or pgdrill's own encryption"
                    ));
                }
                ctx.log(format!(
                    "not a pgdrill backup: read through {} and listed {} tables; without a manifest there is no checksum to compare",
                    if checked.layers.is_empty() { "the file".to_string() } else { checked.layers.join(", ") },
                    checked.tables
                ));
                o.insert("sha256".into(), serde_json::Value::Null);
            }
        }
        Ok(o)
    })
}

/// A staged dump lives until the runbook ends (the restore that reads it may come later).
impl super::Teardown for backup::Staged {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        Box::pin(async move { tokio::task::spawn_blocking(move || drop(self)).await.unwrap_or_default() })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListWith {
    storage: String,
    database: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
}

/// A `name_pattern:` field, checked.
pub(super) fn name_pattern(p: Option<&str>) -> Result<Option<crate::storage::names::NamePattern>, StepError> {
    p.map(crate::storage::names::NamePattern::parse).transpose().map_err(StepError::Invalid)
}

const NAME_PATTERN_DOC: &str =
    "other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the classic schemes)";

impl With for ListWith {}

pub const LIST: StepKind = StepKind {
    name: "backup.list",
    summary: "List backups in storage, newest first.",
    fields: &[
        Field { name: "storage", ty: "path", required: true, doc: "backup directory" },
        Field { name: "database", ty: "string", required: false, doc: "only this database" },
        Field { name: "name_pattern", ty: "string", required: false, doc: NAME_PATTERN_DOC },
    ],
    outputs: &[
        Field { name: "backups", ty: "list", required: false, doc: "path, database, created, size, sha256 of each" },
        Field { name: "count", ty: "integer", required: false, doc: "how many" },
    ],
    check: check_with::<ListWith>,
    report_log: false,
    interactive: false,
    run: run_list,
};

/// Backups in `storage`, newest first: pgdrill's with their manifests, other tools' with what
/// their names and first bytes say. A manifest that cannot be read is an entry with `error`.
pub fn listing(
    storage: &std::path::Path,
    database: Option<&str>,
    pattern: Option<&crate::storage::names::NamePattern>,
) -> Result<Vec<serde_json::Value>, StepError> {
    let store = LocalStore::new(storage);
    let entries = store
        .list_with(database, pattern)
        .map_err(|e| StepError::Environment(format!("cannot list {}: {e}", storage.display())))?;
    let mut ledgers: std::collections::HashMap<std::path::PathBuf, _> = std::collections::HashMap::new();
    let mut last_of = |e: &crate::storage::Entry| {
        let ledger_path = crate::backup::ledger::path_for(&e.path);
        let last = match ledgers
            .entry(ledger_path.clone())
            .or_insert_with(|| crate::backup::ledger::last_by_backup(&ledger_path))
        {
            Ok(by_name) => by_name
                .get(&e.name)
                .map(|l| json!({ "result": l.result, "verified_at": l.verified_at, "sha256": l.sha256 })),
            // Unknown is not "never": say why instead of showing nothing.
            Err(err) => Some(json!({ "result": "unknown", "error": err.to_string() })),
        };
        last.unwrap_or(serde_json::Value::Null)
    };
    Ok(entries
        .iter()
        .map(|e| {
            if e.foreign {
                let kind = crate::backup::source::sniff(&e.path);
                let size = if e.path.is_dir() {
                    std::fs::read_dir(&e.path)
                        .map(|rd| rd.flatten().filter_map(|f| f.metadata().ok()).map(|m| m.len()).sum::<u64>())
                        .unwrap_or(0)
                } else {
                    std::fs::metadata(&e.path).map(|m| m.len()).unwrap_or(0)
                };
                return json!({
                    "path": crate::storage::remote::display(&e.path),
                    "database": e.database,
                    "database_assumed": e.database_assumed,
                    "origin": "foreign",
                    "created": super::rfc3339(e.made),
                    "created_from": e.made_from,
                    "size": size,
                    "format": kind,
                    "encrypted": kind.starts_with("openssl") || kind.starts_with("gpg"),
                    "manifest_auth": "none",
                    "last_verification": last_of(e),
                });
            }
            match Manifest::read(&e.path) {
                Ok(m) => {
                    let mut v = serde_json::Value::Object(manifest_outputs(&e.path, &m));
                    if let Some(o) = v.as_object_mut() {
                        o.remove("fingerprint");
                        o.insert("origin".into(), "pgdrill".into());
                        o.insert("last_verification".into(), last_of(e));
                    }
                    v
                }
                Err(err) => {
                    json!({ "path": crate::storage::remote::display(&e.path), "database": e.database, "origin": "pgdrill", "error": err.to_string() })
                }
            }
        })
        .collect())
}

fn run_list(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: ListWith = typed(with)?;
        let pattern = name_pattern(w.name_pattern.as_deref())?;
        let list = listing(&ctx.storage_root(&w.storage).await?, w.database.as_deref(), pattern.as_ref())?;
        let mut o = Outputs::new();
        o.insert("count".into(), list.len().into());
        o.insert("backups".into(), list.into());
        Ok(o)
    })
}

pub const LATEST: StepKind = StepKind {
    name: "backup.latest",
    summary: "The newest backup of a database (an error when its manifest cannot be read).",
    fields: &[
        Field { name: "storage", ty: "path", required: true, doc: "backup directory" },
        Field { name: "database", ty: "string", required: false, doc: "database (default: any)" },
        Field { name: "name_pattern", ty: "string", required: false, doc: NAME_PATTERN_DOC },
    ],
    outputs: &[
        Field { name: "path", ty: "string", required: false, doc: "the backup file" },
        Field { name: "manifest", ty: "string", required: false, doc: "its manifest" },
        Field { name: "sha256", ty: "string", required: false, doc: "of the stored file" },
        Field { name: "size", ty: "integer", required: false, doc: "stored bytes" },
        Field { name: "raw_size", ty: "integer", required: false, doc: "pg_dump bytes" },
        Field { name: "database", ty: "string", required: false, doc: "source database" },
        Field { name: "server_major", ty: "integer", required: false, doc: "source major version" },
        Field { name: "fingerprint", ty: "map", required: false, doc: "source fingerprint" },
        Field { name: "format", ty: "string", required: false, doc: "custom or plain" },
        Field { name: "encrypted", ty: "boolean", required: false, doc: "whether it is encrypted" },
        Field {
            name: "manifest_auth",
            ty: "string",
            required: false,
            doc: "`mac`, or why the manifest is not bound to the backup",
        },
        Field { name: "created", ty: "string", required: false, doc: "when the dump finished (RFC 3339)" },
        Field {
            name: "started_epoch",
            ty: "number",
            required: false,
            doc: "when the dump's snapshot was taken (Unix seconds): what a drill's RPO is measured against",
        },
        Field { name: "age_s", ty: "integer", required: false, doc: "seconds since the backup finished" },
    ],
    check: check_with::<ListWith>,
    report_log: false,
    interactive: false,
    run: run_latest,
};

fn run_latest(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: ListWith = typed(with)?;
        let storage = ctx.storage_root(&w.storage).await?;
        let pattern = name_pattern(w.name_pattern.as_deref())?;
        let entries = LocalStore::new(&storage)
            .list_with(w.database.as_deref(), pattern.as_ref())
            .map_err(|e| StepError::Environment(format!("cannot list {}: {e}", storage.display())))?;
        if let Some(e) = entries.first().filter(|e| e.foreign) {
            // Another tool's file: what its name (or, failing that, its mtime) says.
            let mut o = Outputs::new();
            o.insert("path".into(), crate::storage::remote::display(&e.path).into());
            o.insert("server_major".into(), serde_json::Value::Null);
            o.insert("fingerprint".into(), serde_json::Value::Null);
            o.insert("created_from".into(), serde_json::to_value(e.made_from).unwrap_or_default());
            let age = (time::OffsetDateTime::now_utc() - e.made).whole_seconds().max(0);
            o.insert("age_s".into(), age.into());
            return Ok(o);
        }
        if let Some(e) = entries.first() {
            // The newest backup's manifest, or a loud error: an older backup in its place would
            // make a stale database look backed up.
            let m = Manifest::read(&e.path).map_err(|err| {
                StepError::Failed(format!(
                    "{err}; refusing to report an older backup as the latest: repair it, or move {} and its manifest away",
                    e.name
                ))
            })?;
            let mut o = manifest_outputs(&e.path, &m);
            let age = (time::OffsetDateTime::now_utc() - m.finished_at).whole_seconds().max(0);
            o.insert("age_s".into(), age.into());
            return Ok(o);
        }
        Err(StepError::Failed(format!(
            "no backup{} in {}",
            w.database.as_deref().map(|d| format!(" of `{d}`")).unwrap_or_default(),
            crate::storage::remote::display(&storage)
        )))
    })
}
