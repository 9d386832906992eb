//! Verification by restore: `backup.pick`, `backup.restore`, `verify.freshness`,
//! `verify.fingerprint`, `verify.amcheck` and `verify.record`.
//!
//! Each check is its own step so each is its own JUnit testcase. A check that cannot be made
//! (no source fingerprint for a backup made by another tool, no amcheck extension) is
//! reported as skipped with the reason, never as passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use serde_yaml::Value as Yaml;
use time::OffsetDateTime;

use super::{check_with, pg_error, rfc3339, typed, Field, Outputs, StepCtx, StepError, StepKind, With, WithError};
use crate::backup::restore::{self, RestoreOptions};
use crate::backup::source::{self, Origin};
use crate::backup::{ledger, Manifest};
use crate::pg::fingerprint::{self, Fingerprint, Mode, TablePrint};
use crate::storage::LocalStore;
use crate::template::is_template;

// ---------------------------------------------------------------------------------------
// backup.pick

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PickWith {
    #[serde(default, deserialize_with = "super::de::opt_text")]
    storage: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    #[serde(default = "latest")]
    backup: String,
    #[serde(default = "seven", deserialize_with = "super::de::int")]
    within_days: u32,
    #[serde(default, deserialize_with = "super::de::boolean")]
    skip_verified: bool,
    #[serde(default, deserialize_with = "super::de::boolean")]
    force: bool,
    key: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
}

fn latest() -> String {
    "latest".into()
}
fn seven() -> u32 {
    7
}

impl With for PickWith {}

pub const PICK: StepKind = StepKind {
    name: "backup.pick",
    summary: "Choose the backup to verify or restore: the latest, a random one within a window, or a named one (pgdrill's or another tool's).",
    fields: &[
        Field { name: "storage", ty: "path", required: false, doc: "backup directory (needed for latest, random, a bare file name)" },
        Field {
            name: "database",
            ty: "string",
            required: false,
            doc: "whose backups: pgdrill's folder of that database, other tools' files whose name says it",
        },
        Field {
            name: "name_pattern",
            ty: "string",
            required: false,
            doc: "other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the classic schemes)",
        },
        Field {
            name: "backup",
            ty: "latest|random|name|path",
            required: false,
            doc: "default latest; a path may be any pg_dump output (.sql, .sql.gz, .dump, directory, openssl enc)",
        },
        Field { name: "within_days", ty: "integer", required: false, doc: "random: among backups of the last N days (default 7)" },
        Field { name: "skip_verified", ty: "boolean", required: false, doc: "output skip=true when the ledger says it already passed" },
        Field { name: "force", ty: "boolean", required: false, doc: "never skip" },
        Field {
            name: "key",
            ty: "secret",
            required: false,
            doc: "the backup's key: its manifest is authenticated before anything in it is used",
        },
    ],
    outputs: &[
        Field { name: "path", ty: "string", required: false, doc: "the backup" },
        Field { name: "origin", ty: "pgdrill|foreign", required: false, doc: "foreign: made by another tool, no manifest" },
        Field { name: "server_major", ty: "integer|null", required: false, doc: "source major version (pgdrill backups)" },
        Field { name: "fingerprint", ty: "map|null", required: false, doc: "source fingerprint (null when unknown)" },
        Field { name: "database", ty: "string|null", required: false, doc: "the database the manifest names (pgdrill backups)" },
        Field { name: "created", ty: "string|null", required: false, doc: "when it was made (RFC 3339)" },
        Field { name: "format", ty: "string|null", required: false, doc: "custom, plain or directory" },
        Field { name: "encrypted", ty: "boolean", required: false, doc: "whether it is encrypted" },
        Field { name: "sha256", ty: "string", required: false, doc: "of the file (null for a directory)" },
        Field { name: "age_s", ty: "integer", required: false, doc: "seconds since it was made (file time for foreign ones)" },
        Field { name: "verified_at", ty: "string|null", required: false, doc: "last passed verification in the ledger" },
        Field { name: "skip", ty: "boolean", required: false, doc: "skip_verified and already verified" },
        Field {
            name: "manifest_authenticated",
            ty: "boolean",
            required: false,
            doc: "the manifest's MAC under the key holds (false: unencrypted, older, or no key)",
        },
    ],
    check: check_with::<PickWith>,
    report_log: true,
    interactive: false,
    run: run_pick,
};

pub(super) fn sha256_file(path: &Path) -> Result<String, StepError> {
    let f =
        std::fs::File::open(path).map_err(|e| StepError::Invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut hr = crate::archive::HashReader::new(std::io::BufReader::with_capacity(1 << 20, f));
    std::io::copy(&mut hr, &mut std::io::sink())
        .map_err(|e| StepError::Environment(format!("reading {}: {e}", path.display())))?;
    Ok(hr.finish().0)
}

fn run_pick(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: PickWith = typed(with)?;
        let storage = match w.storage.as_deref() {
            Some(s) => Some(ctx.storage_root(s).await?),
            None => None,
        };
        let pattern = w
            .name_pattern
            .as_deref()
            .map(crate::storage::names::NamePattern::parse)
            .transpose()
            .map_err(StepError::Invalid)?;
        let list = |storage: &Path| -> Result<Vec<crate::storage::Entry>, StepError> {
            LocalStore::new(storage)
                .list_with(w.database.as_deref(), pattern.as_ref())
                .map_err(|e| StepError::Environment(format!("cannot list {}: {e}", storage.display())))
        };
        let mut picked: Option<crate::storage::Entry> = None;
        let where_ = || {
            format!(
                "{}{}",
                w.database.as_deref().map(|d| format!(" of `{d}`")).unwrap_or_default(),
                storage.as_ref().map(|s| format!(" in {}", crate::storage::remote::display(s))).unwrap_or_default()
            )
        };
        let path: PathBuf = match w.backup.as_str() {
            "latest" | "random" => {
                let storage = storage
                    .clone()
                    .ok_or_else(|| StepError::Invalid(format!("`backup: {}` needs `storage`", w.backup)))?;
                let entries = list(&storage)?;
                // Fail closed: an unreadable manifest of the newest backup is an error, never a
                // reason to quietly verify (and call fresh) an older one.
                let manifest_of = |e: &crate::storage::Entry| -> Result<Manifest, StepError> {
                    Manifest::read(&e.path).map_err(|err| {
                        StepError::Failed(format!(
                            "{err}; refusing to pick another backup in its place: repair it, or move {} and its manifest out of {} to use the older ones",
                            e.name,
                            e.path.parent().unwrap_or(Path::new(".")).display()
                        ))
                    })
                };
                if w.backup == "latest" {
                    match entries.first() {
                        Some(e) => {
                            if !e.foreign {
                                manifest_of(e)?;
                            }
                            picked = Some(e.clone());
                            Some(e.path.clone())
                        }
                        None => None,
                    }
                } else {
                    let cutoff = OffsetDateTime::now_utc() - Duration::from_secs(u64::from(w.within_days) * 86_400);
                    let mut recent = Vec::new();
                    for e in &entries {
                        let made = if e.foreign { e.made } else { manifest_of(e)?.finished_at };
                        if made >= cutoff {
                            recent.push(e);
                        }
                    }
                    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as usize;
                    (!recent.is_empty()).then(|| {
                        let e = recent[nanos % recent.len()];
                        picked = Some(e.clone());
                        e.path.clone()
                    })
                }
                .ok_or_else(|| {
                    let legacy = w
                        .database
                        .as_deref()
                        .and_then(|d| LocalStore::new(&storage).legacy_folder(d))
                        .map(|p| format!(
                            "; {} is where pgdrill stored this database's backups before folder names became unambiguous: check their manifests and move them to {}",
                            p.display(),
                            LocalStore::new(&storage).folder(w.database.as_deref().unwrap_or_default()).display()
                        ))
                        .unwrap_or_default();
                    StepError::Failed(format!("no backup{}{legacy}", where_()))
                })?
            }
            // Its header and manifest (below: another tool's file is downloaded now).
            named if crate::storage::remote::is_remote(named) => ctx.backup_header(named).await?,
            named => {
                let direct = ctx.resolve(named);
                if direct.exists() {
                    direct
                } else if let Some(found) = storage
                    .as_ref()
                    .and_then(|s| list(s).ok())
                    .and_then(|l| l.into_iter().find(|e| e.name == named || e.name.starts_with(named)))
                {
                    let p = found.path.clone();
                    picked = Some(found);
                    p
                } else {
                    return Err(StepError::Invalid(format!(
                        "backup `{named}` not found{}: give `latest`, `random`, a file name in storage or a path",
                        where_()
                    )));
                }
            }
        };
        // A listed object: for pgdrill's own, its header is enough here (the manifest is
        // mirrored), so the read happens in the step that needs it, beside the throwaway
        // server's start. Another tool's file has no manifest to say its sha256: it is read
        // through once here to compute it, and read as a stream again by the steps that check
        // and restore it; only what needs a local file (gpg) is downloaded.
        let mut store_sha = None;
        let path = match crate::storage::remote::for_mirror(&path) {
            Some((r, rel)) if crate::storage::remote::is_stand_in(&path) => {
                if rel.ends_with(".pgdrill") && crate::storage::manifest_path(&path).is_file() {
                    r.fill_head(&rel, u64::from(crate::archive::MAX_HEADER) + 64)
                        .await
                        .map_err(StepError::Environment)?;
                    path
                } else if !rel.ends_with(".pgdrill") && source::streamable(&path) {
                    store_sha = Some(r.digest(&rel).await.map_err(StepError::Environment)?.0);
                    path
                } else {
                    r.fetch(&rel).await.map_err(StepError::Environment)?
                }
            }
            _ => path,
        };
        let shown = crate::storage::remote::display(&path);
        let mut o = Outputs::new();
        o.insert("path".into(), shown.clone().into());
        let origin = source::origin(&path);
        o.insert("origin".into(), serde_json::to_value(origin).unwrap_or_default());
        let (sha, made) = match origin {
            Origin::Pgdrill => {
                let m = Manifest::read(&path).map_err(StepError::from)?;
                let p = path.clone();
                let key = w.key.as_deref().filter(|k| !k.is_empty()).map(crate::archive::KeySource::from_secret);
                let trust = tokio::task::spawn_blocking(move || crate::backup::authenticate_manifest(&p, key.as_ref()))
                    .await
                    .map_err(|e| StepError::Environment(e.to_string()))?
                    .map_err(StepError::from)?;
                ctx.log(trust.describe());
                o.insert(
                    "manifest_authenticated".into(),
                    (trust == crate::backup::ManifestTrust::Authenticated).into(),
                );
                // The folder says which database a backup is of; the manifest must agree, or a
                // restore of `acct` could bring back another database's tables.
                if let Some(want) = w.database.as_deref() {
                    if m.stored_as() != want {
                        return Err(StepError::Failed(format!(
                            "{} is a backup of database `{}`, not `{want}` as asked: refusing it",
                            shown,
                            m.stored_as()
                        )));
                    }
                }
                o.insert("server_major".into(), m.server_major.into());
                o.insert("fingerprint".into(), serde_json::to_value(&m.fingerprint).unwrap_or_default());
                o.insert("format".into(), serde_json::to_value(m.format).unwrap_or_default());
                o.insert("encrypted".into(), (m.cipher != "none").into());
                o.insert("database".into(), m.database.clone().into());
                (Some(m.sha256.clone()), m.finished_at)
            }
            Origin::Foreign => {
                o.insert("server_major".into(), json!(null));
                o.insert("fingerprint".into(), json!(null));
                let p = path.clone();
                let sha = if store_sha.is_some() {
                    store_sha.take()
                } else if path.is_file() {
                    Some(
                        tokio::task::spawn_blocking(move || sha256_file(&p))
                            .await
                            .map_err(|e| StepError::Environment(e.to_string()))??,
                    )
                } else {
                    None
                };
                // When it was made: the stamp in its name (a download or copy resets the mtime),
                // the file's mtime only when the name has none, and then the log says so.
                let name = ledger::name_of(&path);
                let from_name = match (&picked, &pattern) {
                    (Some(e), _) => (e.made_from == crate::storage::MadeFrom::Name).then_some(e.made),
                    (None, Some(p)) => p.matches(&name).and_then(|i| i.at),
                    (None, None) => crate::storage::names::parse(&name).at,
                };
                let made = match from_name {
                    Some(t) => {
                        ctx.log(format!("made at {} (from its name)", rfc3339(t)));
                        t
                    }
                    None => {
                        ctx.log("its name holds no time: its age is taken from the file's modification time, which a copy or download resets (give `name_pattern` if the name has a time in another form)");
                        std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .map(OffsetDateTime::from)
                            .unwrap_or_else(|_| OffsetDateTime::now_utc())
                    }
                };
                if let Some(e) = picked.as_ref().filter(|e| e.database_assumed) {
                    ctx.log(format!(
                        "its name does not say which database it is of; nothing in storage names one, so it is taken as `{}`'s",
                        e.database
                    ));
                }
                ctx.log(format!("{shown} was not made by pgdrill: no manifest, so checks that need the source fingerprint will be skipped"));
                o.insert("manifest_authenticated".into(), false.into());
                (sha, made)
            }
        };
        o.insert("sha256".into(), json!(sha));
        o.insert("created".into(), rfc3339(made).into());
        let age = (OffsetDateTime::now_utc() - made).whole_seconds().max(0);
        o.insert("age_s".into(), age.into());
        let ledger_file = ledger::path_for(&path);
        let verified = if w.skip_verified && !w.force {
            // Fail closed: an unreadable ledger must not decide that a backup was verified.
            ledger::passed(&ledger_file, &ledger::name_of(&path), sha.as_deref())
                .map_err(|e| StepError::Failed(e.to_string()))?
        } else {
            ledger::passed(&ledger_file, &ledger::name_of(&path), sha.as_deref()).unwrap_or_else(|e| {
                ctx.log(format!("verification history unknown: {e}"));
                None
            })
        };
        o.insert("verified_at".into(), json!(verified.as_ref().map(|e| e.verified_at.clone())));
        let skip = w.skip_verified && !w.force && verified.is_some();
        if let (true, Some(v)) = (skip, &verified) {
            ctx.log(format!("already verified at {}: skipping (force to verify again)", v.verified_at));
        }
        o.insert("skip".into(), skip.into());
        ctx.log(format!("picked {} ({} old)", shown, humantime::format_duration(Duration::from_secs(age as u64))));
        ctx.backup_fact(crate::exec::BackupRole::Picked, &o);
        Ok(o)
    })
}

// ---------------------------------------------------------------------------------------
// verify.freshness

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FreshWith {
    #[serde(deserialize_with = "super::de::int")]
    age_s: u64,
    #[serde(deserialize_with = "super::de::duration")]
    max_age: Duration,
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    rpo: Option<Duration>,
}

impl With for FreshWith {}

pub const FRESHNESS: StepKind = StepKind {
    name: "verify.freshness",
    summary: "Fail when a backup is older than max_age; report the RPO it implies (its age: what restoring it now would lose) against an rpo target.",
    fields: &[
        Field {
            name: "age_s",
            ty: "integer",
            required: true,
            doc: "the backup's age in seconds (backup.pick's age_s)",
        },
        Field { name: "max_age", ty: "duration", required: true, doc: "e.g. 26h" },
        Field { name: "rpo", ty: "duration", required: false, doc: "RPO target, e.g. 24h: an older backup fails the check" },
    ],
    outputs: &[
        Field { name: "rpo_s", ty: "integer", required: false, doc: "the RPO the backup implies: its age in seconds" },
        Field { name: "target_s", ty: "integer|null", required: false, doc: "the rpo target in seconds, null without one" },
    ],
    check: check_with::<FreshWith>,
    report_log: false,
    interactive: false,
    run: run_freshness,
};

fn run_freshness(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: FreshWith = typed(with)?;
        let age = Duration::from_secs(w.age_s);
        let shown = humantime::format_duration(Duration::from_secs(w.age_s / 60 * 60));
        // The RPO this backup implies: restoring it now loses everything written since it
        // was made. Kept so that it is reported even when the check fails.
        let mut o = Outputs::new();
        o.insert("rpo_s".into(), w.age_s.into());
        o.insert("target_s".into(), json!(w.rpo.map(|t| t.as_secs())));
        for (k, v) in &o {
            ctx.keep(k, v.clone());
        }
        ctx.fact(crate::exec::Fact::Objective {
            objective: crate::exec::Objective::BackupAge,
            measured_s: o["rpo_s"].clone(),
            target_s: o["target_s"].clone(),
            phases: None,
        });
        match w.rpo {
            Some(t) if age > t => {
                return Err(StepError::Failed(format!(
                    "RPO {shown} exceeds the target rpo={}: restoring this backup now would lose everything written in the last {shown}",
                    humantime::format_duration(t)
                )))
            }
            Some(t) => ctx.log(format!("RPO {shown}, within the target rpo={}", humantime::format_duration(t))),
            None => ctx.log(format!("RPO {shown} (no rpo target given)")),
        }
        if age > w.max_age {
            return Err(StepError::Failed(format!(
                "the backup is {shown} old, older than max_age {}",
                humantime::format_duration(w.max_age)
            )));
        }
        ctx.log(format!("{shown} old, within {}", humantime::format_duration(w.max_age)));
        Ok(o)
    })
}

// ---------------------------------------------------------------------------------------
// backup.restore

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreWith {
    backup: String,
    into: String,
    key: Option<String>,
    #[serde(default = "one", deserialize_with = "super::de::int")]
    jobs: u32,
    #[serde(default, deserialize_with = "super::de::boolean")]
    create: bool,
    #[serde(default, deserialize_with = "super::de::boolean")]
    clean: bool,
    #[serde(default, deserialize_with = "super::de::boolean")]
    no_owner: bool,
    #[serde(default, deserialize_with = "super::de::string_map")]
    role_map: BTreeMap<String, String>,
    staging: Option<String>,
    staged: Option<String>,
    bin_dir: Option<String>,
}

fn one() -> u32 {
    1
}

impl With for RestoreWith {
    fn check(&self) -> Result<(), WithError> {
        if self.jobs == 0 {
            return Err(WithError::new("jobs", "jobs must be at least 1"));
        }
        Ok(())
    }
}

pub const RESTORE: StepKind = StepKind {
    name: "backup.restore",
    summary: "Restore a backup into a database: decrypt, decompress, pg_restore (parallel from a staged file) or psql for SQL.",
    fields: &[
        Field { name: "backup", ty: "path", required: true, doc: "pgdrill archive or another tool's dump" },
        Field { name: "into", ty: "string", required: true, doc: "target database URL" },
        Field { name: "key", ty: "secret", required: false, doc: "pgdrill key/passphrase, or the openssl enc passphrase" },
        Field { name: "jobs", ty: "integer", required: false, doc: "parallel pg_restore jobs (default 1: streamed, nothing staged)" },
        Field { name: "create", ty: "boolean", required: false, doc: "CREATE DATABASE the target first" },
        Field { name: "clean", ty: "boolean", required: false, doc: "drop objects before recreating them" },
        Field { name: "no_owner", ty: "boolean", required: false, doc: "skip ownership and grants" },
        Field { name: "role_map", ty: "map", required: false, doc: "dump role -> target role for ownership and grants" },
        Field { name: "staging", ty: "path", required: false, doc: "where to stage for jobs > 1 (default: beside the backup)" },
        Field {
            name: "staged",
            ty: "path",
            required: false,
            doc: "the plaintext `backup.check` staged for this backup (its `staged` output; empty: read the backup)",
        },
        Field { name: "bin_dir", ty: "path", required: false, doc: "directory of pg_restore and psql" },
    ],
    outputs: &[
        Field { name: "tables", ty: "integer", required: false, doc: "tables in the target afterwards" },
        Field { name: "seconds", ty: "number", required: false, doc: "restore time" },
        Field { name: "staged_bytes", ty: "integer", required: false, doc: "bytes staged for a parallel restore" },
        Field { name: "tool", ty: "string", required: false, doc: "pg_restore or psql" },
        Field { name: "layers", ty: "list", required: false, doc: "what was peeled off on the way: encryption, compression (other tools' files too)" },
    ],
    check: check_with::<RestoreWith>,
    report_log: false,
    interactive: false,
    run: run_restore,
};

fn run_restore(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: RestoreWith = typed(with)?;
        let staged_given = w.staged.as_deref().is_some_and(|s| !s.is_empty());
        // With the plaintext staged by `backup.check`, the backup itself is not read again:
        // from a store, only its header and manifest are needed. Otherwise a pgdrill archive
        // in a store is read as a stream, and nothing of it is kept locally.
        let (backup, stream) = if staged_given {
            (ctx.backup_header(&w.backup).await?, None)
        } else {
            match ctx.backup_stream(&w.backup).await? {
                Some(s) => {
                    ctx.log(format!(
                        "reading {} from the store as a stream (no local copy)",
                        crate::storage::remote::display(s.stand_in())
                    ));
                    match s {
                        super::FromStore::Archive(p, reader) => (p, Some(restore::Streamed::Archive(reader))),
                        super::FromStore::Foreign(p, opener) => (p, Some(restore::Streamed::Foreign(opener))),
                    }
                }
                None => (ctx.backup_file(&w.backup).await?, None),
            }
        };
        let opts = RestoreOptions {
            backup,
            into: w.into.clone(),
            key: w.key.clone(),
            jobs: w.jobs,
            create: w.create,
            clean: w.clean,
            no_owner: w.no_owner,
            role_map: w.role_map.clone(),
            staging: w.staging.as_deref().map(|s| ctx.resolve(s)),
            staged: w.staged.as_deref().filter(|s| !s.is_empty()).map(|s| ctx.resolve(s)),
            bin_dir: w.bin_dir.as_deref().map(PathBuf::from),
            meter: Some(crate::progress::Meter::default()),
        };
        let log_ctx = ctx.clone();
        let log = move |l: String| log_ctx.log(l);
        let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
        let r = match stream {
            Some(reader) => restore::restore_stream(opts, reader, &log).await,
            None => restore::restore(opts, &log).await,
        }
        .map_err(StepError::from)?;
        ctx.log(format!("{} restored {} tables in {:.1}s", r.tool, r.tables, r.seconds));
        let mut o = Outputs::new();
        o.insert("tables".into(), r.tables.into());
        o.insert("seconds".into(), json!(r.seconds));
        o.insert("staged_bytes".into(), r.staged_bytes.into());
        o.insert("tool".into(), r.tool.into());
        o.insert("layers".into(), json!(r.layers));
        ctx.fact(crate::exec::Fact::Verified);
        Ok(o)
    })
}

// ---------------------------------------------------------------------------------------
// verify.fingerprint

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FingerprintWith {
    url: String,
    #[serde(default)]
    expect: Option<serde_json::Value>,
    #[serde(default = "all")]
    check: String,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    mode: Option<String>,
    /// The backup's source major: when the restored server's differs, the rules for
    /// comparing across majors apply (see `fingerprint::schema_differences_across`).
    #[serde(default)]
    source_major: Option<serde_json::Value>,
}

fn all() -> String {
    "all".into()
}

impl With for FingerprintWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.check) && !matches!(self.check.as_str(), "all" | "schema" | "tables") {
            return Err(WithError::new("check", format!("unknown check `{}`: use all, schema or tables", self.check)));
        }
        if let Some(m) = self.mode.as_deref().filter(|m| !is_template(m)) {
            if Mode::parse(m).is_err() || m == "off" {
                return Err(WithError::new("mode", format!("unknown mode `{m}`: use full or counts")));
            }
        }
        Ok(())
    }
}

pub const FINGERPRINT: StepKind = StepKind {
    name: "verify.fingerprint",
    summary: "Fingerprint a database (schema, per-table rows and content hashes) and compare it with an expected one.",
    fields: &[
        Field { name: "url", ty: "string", required: true, doc: "database to fingerprint (the restored copy)" },
        Field {
            name: "expect",
            ty: "map|null",
            required: false,
            doc: "source fingerprint (backup.pick's); null: skipped, counts reported",
        },
        Field { name: "check", ty: "all|schema|tables", required: false, doc: "what to compare (default all)" },
        Field {
            name: "mode",
            ty: "full|counts",
            required: false,
            doc: "tables: hashes or counts only (default: the expected fingerprint's)",
        },
        Field {
            name: "source_major",
            ty: "integer",
            required: false,
            doc: "the backup's source major; when the restored server's differs, view and rule definitions are compared by name and columns (their deparsed text changed in 16)",
        },
    ],
    outputs: &[
        Field { name: "tables", ty: "integer", required: false, doc: "tables in the database" },
        Field { name: "rows", ty: "integer", required: false, doc: "rows in all tables" },
        Field { name: "differences", ty: "list", required: false, doc: "what differs (empty when passed)" },
        Field { name: "fingerprint", ty: "map", required: false, doc: "the computed fingerprint" },
    ],
    check: check_with::<FingerprintWith>,
    report_log: false,
    interactive: false,
    run: run_fingerprint,
};

const SHOWN: usize = 10;

fn summarize(what: &str, diffs: &[String]) -> String {
    let mut msg = format!("{} {what} difference{}: ", diffs.len(), if diffs.len() == 1 { "" } else { "s" });
    msg.push_str(&diffs.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "));
    if diffs.len() > SHOWN {
        msg.push_str(&format!("; and {} more (see the step's outputs)", diffs.len() - SHOWN));
    }
    msg
}

fn run_fingerprint(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: FingerprintWith = typed(with)?;
        let expect: Option<Fingerprint> = match w.expect.as_ref() {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) if s.is_empty() || s == "none" => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| StepError::field("expect", format!("not a pgdrill fingerprint: {e}")))?,
            ),
        };
        let mode = match w.mode.as_deref() {
            Some(m) => Mode::parse(m).map_err(StepError::Invalid)?,
            None => expect.as_ref().map(|f| f.mode).unwrap_or(Mode::Counts),
        };
        // Comparing hashes needs them on both sides.
        let mode = if expect.as_ref().is_some_and(|e| e.mode == Mode::Counts) { Mode::Counts } else { mode };
        let want_schema = w.check != "tables";
        let want_tables = w.check != "schema";

        let tx = crate::pg::connect(&w.url).await?;
        // One consistent view, with the same pinned settings as the backup's fingerprint.
        tx.batch_execute("begin isolation level repeatable read read only").await.map_err(pg_error)?;
        // Without an expectation, the schema is read only to report the table count.
        let (schema_hash, schema) = if want_schema || (expect.is_none() && !want_tables) {
            fingerprint::compute_schema(&tx).await.map_err(pg_error)?
        } else {
            (String::new(), BTreeMap::new())
        };
        let tables: BTreeMap<String, TablePrint> =
            if want_tables { fingerprint::compute_tables(&tx, mode).await.map_err(pg_error)? } else { BTreeMap::new() };
        let restored_major = tx
            .query_one("select current_setting('server_version_num')::int / 10000", &[])
            .await
            .map_err(pg_error)?
            .get::<_, i32>(0) as u32;
        tx.batch_execute("commit").await.map_err(pg_error)?;
        let source_major = match &w.source_major {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        let across = source_major.filter(|m| *m != restored_major);
        if let (Some(from), true) = (across, want_schema) {
            ctx.log(format!(
                "across majors ({from} -> {restored_major}): view and rule definitions are compared by name and columns, not by the text the server deparses them to (it changed in 16)"
            ));
        }

        let rows: i64 = tables.values().map(|t| t.rows).sum();
        let mut o = Outputs::new();
        o.insert("tables".into(), tables.len().into());
        o.insert("rows".into(), rows.into());
        let computed =
            Fingerprint { mode, schema_hash: schema_hash.clone(), schema: schema.clone(), tables: tables.clone() };

        let Some(expect) = expect else {
            let table_lines = schema
                .get("tables")
                .map(|l| l.iter().filter(|x| x.ends_with(" r") || x.ends_with(" p")).count())
                .unwrap_or(0);
            let counts = if want_tables {
                format!("the restored copy has {} tables, {rows} rows", tables.len())
            } else {
                format!("the restored copy has {table_lines} tables")
            };
            for (t, p) in &tables {
                ctx.log(format!("{t}: {} rows", p.rows));
            }
            return Err(StepError::Skipped(format!(
                "no source fingerprint to compare with (a backup made by another tool, or fingerprint: off); {counts}"
            )));
        };

        let mut diffs = Vec::new();
        if want_schema && schema_hash != expect.schema_hash {
            // Equal lines with a different hash: only sequence positions moved.
            let d = fingerprint::schema_differences_across(&expect.schema, &schema, across.is_some());
            if !d.is_empty() {
                o.insert("differences".into(), json!(d));
                return Err(StepError::Failed(summarize("schema", &d)));
            }
        }
        if want_tables {
            diffs = fingerprint::table_differences(&expect.tables, &tables);
            if !diffs.is_empty() {
                o.insert("differences".into(), json!(diffs));
                return Err(StepError::Failed(summarize("table", &diffs)));
            }
            ctx.log(format!(
                "{} tables, {rows} rows match the source ({})",
                tables.len(),
                if mode == Mode::Full { "counts and content hashes" } else { "row counts" }
            ));
        }
        if want_schema {
            ctx.log(format!("schema matches the source ({})", &schema_hash[..12.min(schema_hash.len())]));
        }
        o.insert("differences".into(), json!(diffs));
        o.insert("fingerprint".into(), serde_json::to_value(&computed).unwrap_or_default());
        ctx.fact(crate::exec::Fact::Verified);
        Ok(o)
    })
}

/// Fingerprint the database at `url` the way `expect` was taken, in one consistent view, and
/// compare schema and tables. Returns the table and row counts when everything matches.
pub(super) async fn compare_database(url: &str, expect: &Fingerprint) -> Result<(usize, i64), StepError> {
    let client = crate::pg::connect(url).await?;
    client.batch_execute("begin isolation level repeatable read read only").await.map_err(pg_error)?;
    let actual = fingerprint::compute(&client, expect.mode).await.map_err(pg_error)?;
    client.batch_execute("commit").await.map_err(pg_error)?;
    let Some(actual) = actual else {
        return Err(StepError::Skipped("the expected fingerprint was taken with fingerprint: off".into()));
    };
    let mut diffs = Vec::new();
    if actual.schema_hash != expect.schema_hash {
        diffs = fingerprint::schema_differences(&expect.schema, &actual.schema);
    }
    diffs.extend(fingerprint::table_differences(&expect.tables, &actual.tables));
    if !diffs.is_empty() {
        return Err(StepError::Failed(summarize("fingerprint", &diffs)));
    }
    Ok((actual.tables.len(), actual.tables.values().map(|t| t.rows).sum()))
}

// ---------------------------------------------------------------------------------------
// verify.amcheck

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmcheckWith {
    url: String,
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    heapallindexed: bool,
}

fn yes() -> bool {
    true
}

impl With for AmcheckWith {}

pub const AMCHECK: StepKind = StepKind {
    name: "verify.amcheck",
    summary:
        "Check every B-tree index with amcheck (bt_index_check, heapallindexed); skipped when amcheck is not available.",
    fields: &[
        Field { name: "url", ty: "string", required: true, doc: "database to check" },
        Field {
            name: "heapallindexed",
            ty: "boolean",
            required: false,
            doc: "also check every heap tuple is indexed (default true)",
        },
    ],
    outputs: &[Field { name: "indexes", ty: "integer", required: false, doc: "indexes checked" }],
    check: check_with::<AmcheckWith>,
    report_log: false,
    interactive: false,
    run: run_amcheck,
};

fn run_amcheck(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: AmcheckWith = typed(with)?;
        let client = crate::pg::connect(&w.url).await?;
        let available = client
            .query_opt("select installed_version from pg_available_extensions where name = 'amcheck'", &[])
            .await
            .map_err(pg_error)?;
        let Some(row) = available else {
            return Err(StepError::Skipped("the amcheck extension is not available on this server".into()));
        };
        let installed: Option<String> = row.get(0);
        if installed.is_none() {
            client.batch_execute("create extension amcheck").await.map_err(pg_error)?;
        }
        // Only indexes with storage (relkind `i`): a partitioned table's own index (`I`) has
        // none and bt_index_check refuses it; its partitions' indexes are checked instead.
        let indexes = client
            .query(
                "select c.oid::regclass::text from pg_index i join pg_class c on c.oid = i.indexrelid \
                 join pg_am a on a.oid = c.relam join pg_namespace n on n.oid = c.relnamespace \
                 where a.amname = 'btree' and c.relkind = 'i' and i.indisvalid and c.relpersistence <> 't' \
                 and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' order by 1",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let mut failures = Vec::new();
        for r in &indexes {
            let name: String = r.get(0);
            let q = format!("select bt_index_check('{}'::regclass, {})", name.replace('\'', "''"), w.heapallindexed);
            if let Err(e) = client.batch_execute(&q).await {
                failures.push(format!("{name}: {}", crate::pg::describe(&e)));
            }
        }
        // Leave the restored copy as it came back: its extension list is part of the schema.
        if installed.is_none() {
            let _ = client.batch_execute("drop extension amcheck").await;
        }
        if !failures.is_empty() {
            return Err(StepError::Failed(summarize("index", &failures)));
        }
        ctx.log(format!(
            "{} B-tree indexes checked ({})",
            indexes.len(),
            if w.heapallindexed {
                "structure and heapallindexed: every heap tuple found in its index"
            } else {
                "structure only, without heapallindexed"
            }
        ));
        let mut o = Outputs::new();
        o.insert("indexes".into(), indexes.len().into());
        ctx.fact(crate::exec::Fact::Verified);
        Ok(o)
    })
}

// ---------------------------------------------------------------------------------------
// verify.record

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordWith {
    backup: String,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    sha256: Option<String>,
    result: String,
    #[serde(default)]
    steps: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    checks: Vec<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    duration_s: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    message: Option<String>,
}

impl With for RecordWith {}

/// The ledger's result for a run that ended `status`: a run that failed only because the
/// environment did (a step errored: full disk, missing tool, unreachable server) and no
/// check failed learnt nothing about the backup, so it is recorded as `error`, never as a
/// `failed` verdict on the backup.
fn ledger_result(status: &str, steps: &serde_json::Map<String, serde_json::Value>) -> String {
    if status != "failed" {
        return status.to_string();
    }
    let outcomes: Vec<&str> = steps.values().filter_map(|s| s.get("outcome").and_then(|o| o.as_str())).collect();
    let verdict = outcomes.iter().any(|o| matches!(*o, "failed" | "timed_out"));
    if !verdict && outcomes.contains(&"errored") {
        "error".into()
    } else {
        status.to_string()
    }
}

pub const RECORD: StepKind = StepKind {
    name: "verify.record",
    summary: "Append a verification result to the ledger beside the backup (ledger.jsonl).",
    fields: &[
        Field { name: "backup", ty: "path", required: true, doc: "the verified backup" },
        Field { name: "sha256", ty: "string", required: false, doc: "its checksum" },
        Field {
            name: "result",
            ty: "string",
            required: true,
            doc: "passed, failed or interrupted (`{{ run.status }}` in finally); failed is recorded as `error` when no check failed and a step errored (the environment)",
        },
        Field {
            name: "steps",
            ty: "map",
            required: false,
            doc: "`{{ steps }}`: outcomes and durations are taken from it",
        },
        Field { name: "checks", ty: "list", required: false, doc: "which steps to record" },
        Field { name: "duration_s", ty: "number", required: false, doc: "the verification's duration" },
        Field { name: "message", ty: "string", required: false, doc: "why the run ended (`{{ run.message }}`), kept unless passed" },
    ],
    outputs: &[Field { name: "ledger", ty: "string", required: false, doc: "the ledger file" }],
    check: check_with::<RecordWith>,
    report_log: false,
    interactive: false,
    run: run_record,
};

fn run_record(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: RecordWith = typed(with)?;
        let path = ctx.resolve(&w.backup);
        let mut checks = serde_json::Map::new();
        for name in &w.checks {
            let s = w.steps.get(name);
            checks.insert(
                name.clone(),
                json!({
                    "outcome": s.and_then(|s| s.get("outcome")).cloned().unwrap_or(json!("not_run")),
                    "duration_s": s.and_then(|s| s.get("duration_s")).cloned().unwrap_or(json!(null)),
                }),
            );
        }
        let entry = ledger::Entry {
            backup: ledger::name_of(&path),
            sha256: w.sha256.clone(),
            verified_at: rfc3339(OffsetDateTime::now_utc()),
            result: ledger_result(&w.result, &w.steps),
            error: w.message.as_deref().filter(|_| w.result != "passed").map(|m| ctx.redactor.redact(m)),
            duration_s: w.duration_s.as_deref().and_then(|d| d.trim().parse().ok()),
            checks,
            pgdrill_version: Some(env!("CARGO_PKG_VERSION").into()),
        };
        let mut o = Outputs::new();
        if crate::storage::remote::is_remote(&w.backup) {
            // An object store has no append: one object per verification, beside the backup.
            let (r, rel) = crate::storage::remote::locate(&w.backup).map_err(StepError::Invalid)?;
            let folder = rel.rsplit_once('/').map(|(f, _)| f).unwrap_or("");
            let url = r.record(folder, &entry).await.map_err(StepError::Environment)?;
            ctx.log(format!("{}: {} recorded in {url}", entry.backup, entry.result));
            o.insert("ledger".into(), url.into());
            return Ok(o);
        }
        let file = ledger::path_for(&path);
        ledger::append(&file, &entry)
            .map_err(|e| StepError::Environment(format!("cannot append to {}: {e}", file.display())))?;
        ctx.log(format!("{}: {} recorded in {}", entry.backup, entry.result, file.display()));
        o.insert("ledger".into(), file.display().to_string().into());
        Ok(o)
    })
}
