//! Verification by restore: `backup.pick`, `backup.restore`, `verify.freshness`,
//! `verify.fingerprint`, `verify.amcheck` and `verify.record`.
//!
//! Each check is its own step so each is its own JUnit testcase. A check that cannot be made
//! (no source fingerprint for a backup made by another tool, no amcheck extension) is
//! reported as skipped with the reason, never as passed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use super::{pg_error, rfc3339, Fields, step, StepCtx, StepError, With, WithError};
use crate::backup::layout::LocalStore;
use crate::backup::resolve::{self, Asked};
use crate::backup::restore::{self, RestoreOptions};
use crate::backup::source::{self, Origin};
use crate::backup::{ledger, Manifest};
use crate::backup::complete::Privileges;
use crate::facts::Outcome;
use crate::pg::fingerprint::{self, Fingerprint, Mode, TablePrint};
use crate::template::is_template;

// ---------------------------------------------------------------------------------------
// backup.pick

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct PickWith {
    /// backup directory (needed for latest, random, a bare file name)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    storage: Option<String>,
    /// whose backups: pgdrill's folder of that database, other tools' files whose name says it
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    /// other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the
    /// classic schemes)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
    /// default latest; a path may be any pg_dump output (.sql, .sql.gz, .dump, directory,
    /// openssl enc)
    #[serde(default = "latest")]
    #[field(ty = "latest|random|name|path")]
    backup: String,
    /// random: among backups of the last N days (default 7)
    #[serde(default = "seven", deserialize_with = "super::de::int")]
    within_days: u32,
    /// output skip=true when the ledger says it already passed
    #[serde(default, deserialize_with = "super::de::boolean")]
    skip_verified: bool,
    /// never skip
    #[serde(default, deserialize_with = "super::de::boolean")]
    force: bool,
    /// the backup's key: its manifest is authenticated before anything in it is used
    #[field(key)]
    key: Option<String>,
    /// with a key, accept a pgdrill backup whose manifest is not authenticated (unencrypted,
    /// or written before binding); by default it is refused, and `latest` names it
    #[serde(default, deserialize_with = "super::de::boolean")]
    allow_unauthenticated: bool,
}

/// How far `t` is ahead of now, for messages.
fn skew(t: OffsetDateTime) -> String {
    let s = (t - OffsetDateTime::now_utc()).whole_seconds().max(0) as u64;
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

fn latest() -> String {
    "latest".into()
}
fn seven() -> u32 {
    7
}

/// `within_days` at most: 100 years, as every duration is bounded (`util::MAX_DURATION`).
/// More reached back before the clock's range and panicked in the date arithmetic.
const MAX_WITHIN_DAYS: u32 = 36_525;

impl With for PickWith {
    fn check(&self) -> Result<(), WithError> {
        if self.within_days > MAX_WITHIN_DAYS {
            return Err(WithError::new(
                "within_days",
                format!("{} days is beyond the bound of {MAX_WITHIN_DAYS} (100 years)", self.within_days),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct Picked {
    /// the backup
    path: String,
    /// foreign: made by another tool, no manifest
    #[field(ty = "pgdrill|foreign")]
    origin: String,
    /// source major version (pgdrill backups)
    server_major: Option<u32>,
    /// source fingerprint (null when unknown)
    #[field(ty = "map|null")]
    fingerprint: serde_json::Value,
    /// the database the manifest names (pgdrill backups)
    database: Option<String>,
    /// when it was made (RFC 3339)
    #[field(ty = "string|null")]
    created: String,
    /// custom, plain or directory
    #[field(ty = "string|null")]
    format: String,
    /// whether it is encrypted
    encrypted: bool,
    /// of the file (null for a directory)
    sha256: Option<String>,
    /// stored bytes (null for a directory)
    size: Option<u64>,
    /// the plain dump's bytes, as pg_dump wrote them (what a restore reads; `data_size` of
    /// postgres.ephemeral)
    plain_size: u64,
    /// seconds since it was made (file time for foreign ones)
    age_s: i64,
    /// seconds it is dated in the future beyond the tolerance (0 normally): its age is
    /// unknown
    future_s: i64,
    /// last passed verification in the ledger
    verified_at: Option<String>,
    /// skip_verified and already verified
    skip: bool,
    /// the manifest's MAC under the key holds (false: unencrypted, older, or no key)
    manifest_authenticated: bool,
    /// the source database's encoding, locale and locale provider (null when the manifest
    /// predates them): database.create's `like_source`
    #[field(ty = "map|null")]
    database_properties: Option<crate::backup::DatabaseProperties>,
}

/// `backup.pick`'s outputs for another tool's file: no manifest says its database, format or
/// encryption, so those are absent (a later step reading one fails as undefined).
#[derive(Debug, Serialize)]
pub struct PickedForeign {
    path: String,
    origin: String,
    /// Always null: nothing says which server wrote it.
    server_major: Option<u32>,
    /// Always null: there is no fingerprint without a manifest.
    fingerprint: Option<serde_json::Value>,
    created: String,
    sha256: Option<String>,
    size: Option<u64>,
    /// Always null: nothing records the plain dump's size.
    plain_size: Option<u64>,
    age_s: i64,
    future_s: i64,
    verified_at: Option<String>,
    skip: bool,
    manifest_authenticated: bool,
    /// Always null: nothing records the source database's locale.
    database_properties: Option<crate::backup::DatabaseProperties>,
}

super::one_of_outputs! {
    /// What `backup.pick` hands on: a pgdrill backup's outputs, or the fewer of another tool's
    /// file.
    PickOutputs { Pgdrill(Picked), Foreign(PickedForeign) }
}

/// What a pgdrill backup's manifest adds to `backup.pick`'s outputs.
struct FromManifest {
    server_major: u32,
    fingerprint: serde_json::Value,
    format: String,
    encrypted: bool,
    database: String,
    authenticated: bool,
    size: u64,
    plain_size: u64,
    properties: Option<crate::backup::DatabaseProperties>,
}

/// `sha256_file` of an object in a store, read as a stream of the version its store's head
/// gave (another tool's file: no manifest says its sha256). A store that fails mid-read is
/// the environment's.
async fn sha256_streamed(s: &super::FromStore) -> Result<String, StepError> {
    let (r, shown) = (s.object.reader().await.map_err(StepError::environment)?, s.shown());
    tokio::task::spawn_blocking(move || {
        let mut hr = crate::archive::HashReader::new(std::io::BufReader::with_capacity(1 << 20, r));
        std::io::copy(&mut hr, &mut std::io::sink())
            .map_err(|e| StepError::environment(format!("reading {shown}: {e}")))?;
        Ok(hr.finish().0)
    })
    .await
    .map_err(|e| StepError::environment(e.to_string()))?
}

pub(super) fn sha256_file(path: &Path) -> Result<String, StepError> {
    let f =
        std::fs::File::open(path).map_err(|e| StepError::invalid(format!("cannot read {}: {e}", path.display())))?;
    let mut hr = crate::archive::HashReader::new(std::io::BufReader::with_capacity(1 << 20, f));
    std::io::copy(&mut hr, &mut std::io::sink())
        .map_err(|e| StepError::environment(format!("reading {}: {e}", path.display())))?;
    Ok(hr.finish().0)
}

/// Choose the backup to verify or restore: the latest, a random one within a window, or a named one (pgdrill's or
/// another tool's).
#[step(kind = Pick, name = "backup.pick", report_log)]
async fn pick(ctx: StepCtx, w: PickWith) -> Result<PickOutputs, StepError> {
    let storage = match w.storage.as_deref() {
        Some(s) => Some(ctx.view(&*ctx.store(s)?).await?),
        None => None,
    };
    let pattern = w
        .name_pattern
        .as_deref()
        .map(crate::backup::names::NamePattern::parse)
        .transpose()
        .map_err(StepError::invalid)?;
    // One walk of the storage, whatever `backup` says (`backup::resolve`).
    let survey_of = |storage: &crate::storage::tree::Tree| -> Result<crate::backup::layout::Survey, StepError> {
        LocalStore::new(storage)
            .survey(pattern.as_ref())
            .map_err(|e| StepError::environment(format!("cannot list {}: {e}", storage.root().display())))
    };
    let asked = Asked::parse(&w.backup);
    let mut picked: Option<crate::backup::layout::Entry> = None;
    // The picked backup as its store says it is, when it is an object in a store (its head,
    // first bytes and manifest, read there: no local stand-in of it is made, issue 37).
    let mut from_store: Option<super::FromStore> = None;
    // The manifest of a backup chosen from a listing, read once through its store when it
    // was chosen: what is judged and handed on below, never read again.
    let mut listed: Option<crate::backup::ListedManifest> = None;
    // The view the picked path is in (the storage's, or the named object's): how it is
    // shown and read, with its store in hand.
    let mut tree = storage.clone().unwrap_or_default();
    let where_ = || {
        format!(
            "{}{}",
            w.database.as_deref().map(|d| format!(" of `{d}`")).unwrap_or_default(),
            storage.as_ref().map(|s| format!(" in {}", s.shown())).unwrap_or_default()
        )
    };
    let path: PathBuf = match &asked {
        Asked::Latest | Asked::Random | Asked::At { .. } | Asked::Label(_) => {
            let storage =
                storage.clone().ok_or_else(|| StepError::invalid(format!("`backup: {}` needs `storage`", w.backup)))?;
            let survey = survey_of(&storage)?;
            let mut entries = survey.select(w.database.as_deref());
            let unfinished = super::backup::say_unfinished(&ctx, &storage, w.database.as_deref());
            // A backup dated in the future is never `latest` in silence: it would be "0 s
            // old" and pass any max_age and rpo while the real newest may be weeks old.
            // Each is named with its skew, and the choice is made among the others.
            let horizon = OffsetDateTime::now_utc() + crate::backup::FUTURE_TOLERANCE;
            for e in entries.iter().filter(|e| e.made > horizon) {
                ctx.log(format!(
                    "not picking {}: dated {} ({} in the future: a skewed clock, or a file that is not what its name says); its age is unknown",
                    e.name,
                    rfc3339(e.made),
                    skew(e.made)
                ));
            }
            entries.retain(|e| e.made <= horizon);
            // Fail closed: an unreadable manifest of the newest backup is an error, never a
            // reason to quietly verify (and call fresh) an older one. Read once, through the
            // store the listing was of (never a file of its local mirror), pinned to the
            // version the listing saw: the chosen backup's manifest is judged and handed on
            // from this read (issue 37).
            let manifest_of = |e: &crate::backup::layout::Entry| {
                let (storage, e) = (storage.clone(), e.clone());
                async move {
                    crate::backup::manifest_listed(&storage, &e.path).await.map_err(|err| {
                        // The store failed to give the manifest (read when picked): no verdict.
                        if err.class == crate::error::Class::Environment {
                            return StepError::from(err);
                        }
                        let folder = e.path.parent().unwrap_or(Path::new("."));
                        StepError::failed(format!(
                            "{err}; refusing to pick another backup in its place: repair it, or move {} and its manifest out of {} to use the older ones",
                            e.name,
                            storage.display(folder)
                        ))
                    })
                }
            };
            if asked != Asked::Random {
                // `label:` names a deployment's backup first (`resolve::deployed`).
                let deployed = match &asked {
                    Asked::Label(l) => {
                        resolve::deployed(&survey, &entries, w.database.as_deref(), l).map_err(StepError::failed)?
                    }
                    _ => None,
                };
                let chosen = match &deployed {
                    Some((e, _)) => Some(*e),
                    None => resolve::choose(&entries, &asked),
                };
                match chosen {
                    Some(e) => {
                        if !e.foreign {
                            listed = Some(manifest_of(e).await?);
                        }
                        if let Asked::At { until, written } = &asked {
                            ctx.log(format!("`{written}`: the newest backup made at or before {}", rfc3339(*until)));
                        }
                        if let Asked::Label(l) = &asked {
                            ctx.log(match &deployed {
                                Some((_, note)) => note.clone(),
                                None => format!("`label:{l}`: the newest backup whose name holds the word `{l}`"),
                            });
                        }
                        for line in resolve::pointer_notes(&survey, e) {
                            ctx.log(line);
                        }
                        picked = Some(e.clone());
                        Some(e.path.clone())
                    }
                    None => None,
                }
            } else {
                let cutoff = OffsetDateTime::now_utc()
                    .checked_sub(time::Duration::days(i64::from(w.within_days.min(MAX_WITHIN_DAYS))))
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                let mut recent = Vec::new();
                for e in &entries {
                    let (made, read) = match e.foreign {
                        true => (e.made, None),
                        false => {
                            let read = manifest_of(e).await?;
                            (read.manifest.finished_at, Some(read))
                        }
                    };
                    if made >= cutoff {
                        recent.push((e, read));
                    }
                }
                let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos() as usize;
                match recent.is_empty() {
                    true => None,
                    false => {
                        let (e, read) = recent.swap_remove(nanos % recent.len());
                        picked = Some(e.clone());
                        listed = read;
                        Some(e.path.clone())
                    }
                }
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
                let asked_for = if asked == Asked::Latest { String::new() } else { format!(" for `backup: {}`", w.backup) };
                StepError::failed(format!(
                    "no backup{}{asked_for}{legacy}{unfinished}{}",
                    where_(),
                    resolve::explain(&survey, w.database.as_deref(), &asked)
                ))
            })?
        }
        // Its header and manifest (below: another tool's file is downloaded now).
        // A path or an object's URL: its header and manifest (below: another tool's file is
        // downloaded now); else a name in storage.
        Asked::Named(named) => {
            let object = ctx.object(named)?;
            // An object in a store is asked of its store; what needs a local file (a
            // directory dump) and a file here are looked at where they are.
            from_store = super::stream_of(&object).await?;
            let direct = match &from_store {
                Some(_) => object.view_path(),
                None => object.header_file(super::HEAD).await.map_err(StepError::environment)?,
            };
            let exists = from_store.is_some() || direct.exists();
            let survey = match storage.as_ref() {
                Some(s) if !exists => Some(survey_of(s)?),
                _ => None,
            };
            let found = match &survey {
                Some(sv) => resolve::named(sv, w.database.as_deref(), named).map_err(StepError::invalid)?,
                None => None,
            };
            if exists {
                tree = object.tree();
                // A `LATEST`-style symlink given as a path: what it points to, said.
                if std::fs::symlink_metadata(&direct).is_ok_and(|m| m.file_type().is_symlink()) {
                    let real = std::fs::canonicalize(&direct)
                        .map_err(|e| StepError::invalid(format!("{}: a symlink that leads nowhere ({e})", direct.display())))?;
                    ctx.log(format!("followed the symlink {} to {}", direct.display(), real.display()));
                    real
                } else {
                    direct
                }
            } else if let Some((found, notes)) = found {
                for line in notes {
                    ctx.log(line);
                }
                match found {
                    resolve::Resolved::Listed(e) => {
                        let p = e.path.clone();
                        picked = Some(e);
                        p
                    }
                    resolve::Resolved::Path(p) => p,
                }
            } else {
                return Err(StepError::invalid(format!(
                    "backup `{named}` not found{}: give `latest`, `random`, a time (`2024-01-15`, `2024-01-15T02:00`), `label:WORD`, a file name in storage or a path{}",
                    where_(),
                    survey.as_ref().map(|sv| resolve::explain(sv, w.database.as_deref(), &asked)).unwrap_or_default()
                )));
            }
        }
    };
    // A listed object in a store is asked of its store too: its header and manifest for
    // pgdrill's own (read again by the step that needs them, beside the throwaway server's
    // start); another tool's file has no manifest to say its sha256, so it is read through
    // once here as a stream to compute it, and read as a stream again by the steps that
    // check and restore it. Nothing of it is downloaded. The manifest
    // the choice from a listing read is the one judged: it is not read again.
    if from_store.is_none() && tree.object(&path).is_some() && tree.is_stand_in(&path) {
        let read = listed.as_ref().map(|l| (l.manifest.clone(), l.text.clone()));
        from_store = super::stream_with(&ctx.object(&tree.display(&path))?, read).await?;
    }
    let path = match tree.object(&path) {
        Some((_, rel)) if from_store.is_none() && tree.is_stand_in(&path) => {
            let manifest = crate::backup::layout::manifest_path(&path);
            if rel.ends_with(".pgdrill") && tree.is_file(&manifest) {
                // Named as an archive with a manifest, but its first bytes are not one's: its
                // header read into a stand-in, judged below as before, never downloaded.
                tree.fill_head(&path, super::HEAD, &manifest).await.map_err(StepError::environment)?;
                path
            } else {
                tree.fetch(&path).await.map_err(StepError::environment)?
            }
        }
        _ => path,
    };
    let shown = tree.display(&path);
    let origin = match &from_store {
        Some(s) => s.origin,
        None => source::origin_in(&tree, &path),
    };
    let origin_name =
        serde_json::to_value(origin).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    // A team's own format pgdrill wrote (issue 40, item 2) has its manifest beside it, and
    // is picked as pgdrill's own are: its fingerprint is what the restored copy must match.
    let sidecar = match (origin, &from_store) {
        (Origin::Foreign, Some(s)) => s.sidecar()?,
        (Origin::Foreign, None) => crate::backup::sidecar_in(&tree, &path).map_err(StepError::from)?,
        (Origin::Pgdrill, _) => None,
    };
    let mut store_sha = match (&from_store, origin, &sidecar) {
        (Some(s), Origin::Foreign, None) => Some(sha256_streamed(s).await?),
        _ => None,
    };
    let (sha, made, from_manifest) = match origin {
        o if o == Origin::Pgdrill || sidecar.is_some() => {
            let (m, trust) = match (sidecar, &from_store) {
                (Some(m), _) => (m, crate::backup::ManifestTrust::Sidecar),
                (None, Some(s)) => {
                    let key = w.key.as_deref().filter(|k| !k.is_empty()).map(crate::archive::KeySource::from_secret);
                    s.judged(key.as_ref()).await?
                }
                (None, None) if listed.is_some() => {
                    let key = w.key.as_deref().filter(|k| !k.is_empty()).map(crate::archive::KeySource::from_secret);
                    let l = listed.take().ok_or_else(|| StepError::environment("backup.pick: no manifest read"))?;
                    let trust = l.judged(key.as_ref()).await.map_err(StepError::from)?;
                    (l.manifest, trust)
                }
                (None, None) => {
                    let m = Manifest::read_in(&tree, &path).map_err(StepError::from)?;
                    let (p, t) = (path.clone(), tree.clone());
                    let key = w.key.as_deref().filter(|k| !k.is_empty()).map(crate::archive::KeySource::from_secret);
                    let trust =
                        tokio::task::spawn_blocking(move || crate::backup::authenticate_manifest_in(&t, &p, key.as_ref()))
                            .await
                            .map_err(|e| StepError::environment(e.to_string()))?
                            .map_err(StepError::from)?;
                    (m, trust)
                }
            };
            ctx.log(trust.describe());
            let refused = crate::backup::require_authenticated(
                &shown,
                trust,
                w.key.as_deref().is_some_and(|k| !k.is_empty()),
                w.allow_unauthenticated,
            );
            if let Err(e) = refused {
                // `latest` never falls back to an older backup in silence: it names what it
                // refused, and the run stops.
                let what = if w.backup == "latest" { "the latest backup" } else { "the backup asked for" };
                return Err(StepError::from(e.context(what)));
            }
            if w.allow_unauthenticated
                && matches!(
                    trust,
                    crate::backup::ManifestTrust::Unencrypted
                        | crate::backup::ManifestTrust::Legacy
                        | crate::backup::ManifestTrust::Sidecar
                )
            {
                ctx.log("accepted although unauthenticated: allow_unauthenticated is set");
            }
            // The folder says which database a backup is of; the manifest must agree, or a
            // restore of `acct` could bring back another database's tables.
            if let Some(want) = w.database.as_deref() {
                if m.stored_as() != want {
                    return Err(StepError::failed(format!(
                        "{} is a backup of database `{}`, not `{want}` as asked: refusing it",
                        shown,
                        m.stored_as()
                    )));
                }
            }
            let from = FromManifest {
                server_major: m.server_major,
                fingerprint: serde_json::to_value(&m.fingerprint).unwrap_or_default(),
                format: m.format.name().to_string(),
                encrypted: m.cipher != "none",
                database: m.database.clone(),
                authenticated: trust == crate::backup::ManifestTrust::Authenticated,
                size: m.sizes.stored,
                plain_size: m.sizes.raw,
                properties: m.database_properties.clone(),
            };
            (Some(m.sha256.clone()), m.finished_at, Some(from))
        }
        _ => {
            let p = path.clone();
            let sha = if store_sha.is_some() {
                store_sha.take()
            } else if path.is_file() {
                Some(
                    tokio::task::spawn_blocking(move || sha256_file(&p))
                        .await
                        .map_err(|e| StepError::environment(e.to_string()))??,
                )
            } else {
                None
            };
            // When it was made: the stamp in its name (a download or copy resets the mtime),
            // the file's mtime only when the name has none, and then the log says so.
            let name = ledger::name_of(&path);
            let from_name = match (&picked, &pattern) {
                (Some(e), _) => (e.made_from == crate::backup::layout::MadeFrom::Name).then_some(e.made),
                (None, Some(p)) => p.matches(&name).and_then(|i| i.at),
                (None, None) => crate::backup::names::parse(&name).at,
            };
            let made = match from_name {
                Some(t) => {
                    ctx.log(format!("made at {} (from its name)", rfc3339(t)));
                    t
                }
                None => {
                    ctx.log("its name holds no time: its age is taken from the file's modification time, which a copy or download resets (give `name_pattern` if the name has a time in another form)");
                    match &from_store {
                        Some(s) => OffsetDateTime::from(s.object.seen.modified),
                        None => std::fs::metadata(&path)
                            .and_then(|m| m.modified())
                            .map(OffsetDateTime::from)
                            .unwrap_or_else(|_| OffsetDateTime::now_utc()),
                    }
                }
            };
            if let Some(e) = picked.as_ref().filter(|e| e.database_assumed) {
                ctx.log(format!(
                    "its name does not say which database it is of; nothing in its folder names another one, so it is taken as `{}`'s",
                    e.database
                ));
            }
            ctx.log(format!("{shown} was not made by pgdrill: no manifest: its completeness is checked by its format, its content against the live source, declared expectations or the nearest earlier verified backup of its folder, else it stays unproven"));
            (sha, made, None)
        }
    };
    // A directory dump has no one size; a file (or an object, by its store's head) has its
    // length.
    let foreign_size = match &from_store {
        Some(s) => Some(s.object.seen.size),
        None => std::fs::metadata(&path).ok().filter(|m| m.is_file()).map(|m| m.len()),
    };
    let future_s = crate::backup::dated_ahead(made).unwrap_or(0);
    if future_s > 0 {
        ctx.log(format!(
            "{shown} is dated {} ({} in the future): its age is unknown, and freshness fails closed",
            rfc3339(made),
            skew(made)
        ));
    }
    let age = (OffsetDateTime::now_utc() - made).whole_seconds().max(0);
    let ledger_file = ledger::path_for(&path);
    let verified = if w.skip_verified && !w.force {
        // Fail closed: an unreadable ledger must not decide that a backup was verified.
        ledger::passed(&ledger_file, &ledger::name_of(&path), sha.as_deref())?
    } else {
        ledger::passed(&ledger_file, &ledger::name_of(&path), sha.as_deref()).unwrap_or_else(|e| {
            ctx.log(format!("verification history unknown: {e}"));
            None
        })
    };
    let verified_at = verified.as_ref().map(|e| e.verified_at.clone());
    let skip = w.skip_verified && !w.force && verified.is_some();
    if let (true, Some(v)) = (skip, &verified) {
        ctx.log(format!("already verified at {}: skipping (force to verify again)", v.verified_at));
    }
    ctx.log(format!("picked {} ({} old)", shown, humantime::format_duration(Duration::from_secs(age as u64))));
    if let Some(m) = &from_manifest {
        ctx.fact(crate::facts::Fact::Database { name: m.database.clone() });
    }
    let out = match from_manifest {
        Some(m) => PickOutputs::Pgdrill(Picked {
            path: shown,
            origin: origin_name,
            server_major: Some(m.server_major),
            fingerprint: m.fingerprint,
            database: Some(m.database),
            created: rfc3339(made),
            format: m.format,
            encrypted: m.encrypted,
            sha256: sha,
            size: Some(m.size),
            plain_size: m.plain_size,
            age_s: age,
            future_s,
            verified_at,
            skip,
            manifest_authenticated: m.authenticated,
            database_properties: m.properties,
        }),
        None => PickOutputs::Foreign(PickedForeign {
            path: shown,
            origin: origin_name,
            server_major: None,
            fingerprint: None,
            created: rfc3339(made),
            sha256: sha,
            size: foreign_size,
            plain_size: None,
            age_s: age,
            future_s,
            verified_at,
            skip,
            manifest_authenticated: false,
            database_properties: None,
        }),
    };
    ctx.backup_fact(crate::facts::BackupRole::Picked, &super::outputs_of(&out)?);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// verify.freshness

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct FreshWith {
    /// the backup's age in seconds (backup.pick's age_s)
    #[serde(deserialize_with = "super::de::int")]
    age_s: u64,
    /// e.g. 26h
    #[serde(deserialize_with = "super::de::duration")]
    max_age: Duration,
    /// RPO target, e.g. 24h: an older backup fails the check
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    rpo: Option<Duration>,
    /// how far the backup is dated in the future (backup.pick's future_s): more than 0 makes
    /// its age unknown, and the check fails closed
    #[serde(default, deserialize_with = "super::de::int")]
    future_s: u64,
}

impl With for FreshWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct FreshOutputs {
    /// the RPO the backup implies: its age in seconds
    rpo_s: u64,
    /// the rpo target in seconds, null without one
    target_s: Option<u64>,
}

/// Fail when a backup is older than max_age; report the RPO it implies (its age: what restoring it now would lose)
/// against an rpo target.
#[step(kind = Freshness, name = "verify.freshness")]
async fn freshness(ctx: StepCtx, w: FreshWith) -> Result<FreshOutputs, StepError> {
    // A backup dated in the future (a host with a skewed clock, another tool's file) has
    // no age anyone can judge: "0 s old" would pass any max_age and rpo. Fail closed, and
    // report no RPO measurement.
    if w.future_s > 0 {
        return Err(StepError::failed(format!(
            "the backup's age is unknown: it is dated {} in the future (a skewed clock, or a file that is not what its name says); neither max_age nor the RPO can be judged",
            humantime::format_duration(Duration::from_secs(w.future_s))
        )));
    }
    let age = Duration::from_secs(w.age_s);
    let shown = humantime::format_duration(Duration::from_secs(w.age_s / 60 * 60));
    // The RPO this backup implies: restoring it now loses everything written since it
    // was made. Kept so that it is reported even when the check fails.
    let out = FreshOutputs { rpo_s: w.age_s, target_s: w.rpo.map(|t| t.as_secs()) };
    for (k, v) in &super::outputs_of(&out)? {
        ctx.keep(k, v.clone());
    }
    ctx.fact(crate::facts::Fact::Objective {
        objective: crate::facts::Objective::BackupAge,
        measured_s: json!(out.rpo_s),
        target_s: json!(out.target_s),
        phases: None,
    });
    match w.rpo {
        Some(t) if age > t => {
            return Err(StepError::failed(format!(
                "RPO {shown} exceeds the target rpo={}: restoring this backup now would lose everything written in the last {shown}",
                humantime::format_duration(t)
            )))
        }
        Some(t) => ctx.log(format!("RPO {shown}, within the target rpo={}", humantime::format_duration(t))),
        None => ctx.log(format!("RPO {shown} (no rpo target given)")),
    }
    if age > w.max_age {
        return Err(StepError::failed(format!(
            "the backup is {shown} old, older than max_age {}",
            humantime::format_duration(w.max_age)
        )));
    }
    ctx.log(format!("{shown} old, within {}", humantime::format_duration(w.max_age)));
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// backup.restore

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RestoreWith {
    /// pgdrill archive or another tool's dump
    #[field(ty = "path")]
    backup: String,
    /// target database URL
    #[field(conninfo)]
    into: String,
    /// pgdrill key/passphrase, or the openssl enc passphrase
    #[field(key)]
    key: Option<String>,
    /// parallel pg_restore jobs (default 1: streamed, nothing staged)
    #[serde(default = "one", deserialize_with = "super::de::jobs")]
    jobs: u32,
    /// CREATE DATABASE the target first
    #[serde(default, deserialize_with = "super::de::boolean")]
    create: bool,
    /// drop objects before recreating them
    #[serde(default, deserialize_with = "super::de::boolean")]
    clean: bool,
    /// skip ownership and grants
    #[serde(default, deserialize_with = "super::de::boolean")]
    no_owner: bool,
    /// dump role -> target role for ownership and grants
    #[serde(default, deserialize_with = "super::de::string_map")]
    role_map: BTreeMap<String, String>,
    /// where to stage for jobs > 1 (default: beside the backup)
    #[field(ty = "path")]
    staging: Option<String>,
    /// the plaintext `backup.check` staged for this backup (its `staged` output; empty: read
    /// the backup)
    #[field(ty = "path")]
    staged: Option<String>,
    /// directory of pg_restore and psql
    #[field(ty = "path")]
    bin_dir: Option<String>,
    /// with a key, restore a pgdrill backup whose manifest is not authenticated (by default
    /// refused)
    #[serde(default, deserialize_with = "super::de::boolean")]
    allow_unauthenticated: bool,
    /// pg_restore's sections to restore: pre-data, data, post-data (default all). Restoring
    /// pre-data and data first and post-data in a second step lets the data be read while
    /// the indexes are built; a dump that cannot be split (a SQL script, a stream) is
    /// restored whole by the first, and `sections` says so
    #[serde(default)]
    sections: Vec<String>,
}

fn one() -> u32 {
    1
}

impl With for RestoreWith {
    fn check(&self) -> Result<(), WithError> {
        if self.jobs == 0 {
            return Err(WithError::new("jobs", "jobs must be at least 1"));
        }
        if !self.sections.iter().any(|s| is_template(s)) {
            restore::Sections::parse(&self.sections).map_err(|e| WithError::new("sections", e))?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RestoreOutputs {
    /// tables in the target afterwards
    tables: i64,
    /// restore time
    seconds: f64,
    /// bytes staged for a parallel restore
    staged_bytes: u64,
    /// pg_restore or psql
    tool: String,
    /// what was peeled off on the way: encryption, compression (other tools' files too)
    layers: Vec<&'static str>,
    /// the sections restored (all three when the dump could not be restored in parts)
    sections: Vec<&'static str>,
}

/// Restore a backup into a database: decrypt, decompress, pg_restore (parallel from a staged file) or psql for SQL.
#[step(kind = Restore, name = "backup.restore")]
async fn restore_into(ctx: StepCtx, w: RestoreWith) -> Result<RestoreOutputs, StepError> {
    let staged_given = w.staged.as_deref().is_some_and(|s| !s.is_empty());
    // With the plaintext staged by `backup.check`, the backup itself is not read again:
    // from a store, only what its store says of it (its header and manifest) is needed.
    // Otherwise a backup in a store is read as a stream. Nothing of it is kept locally.
    let object = ctx.object(&w.backup)?;
    let key = w.key.as_deref().filter(|k| !k.is_empty()).map(crate::archive::KeySource::from_secret);
    let (backup, stream) = match super::stream_of(&object).await? {
        Some(s) => {
            if s.origin == Origin::Pgdrill && key.is_some() {
                let (_, trust) = s.judged(key.as_ref()).await?;
                crate::backup::require_authenticated(object.shown(), trust, true, w.allow_unauthenticated)?;
            }
            let stream = if staged_given {
                None
            } else {
                ctx.log(format!("reading {} from the store as a stream (no local copy)", object.shown()));
                Some(s.stream().await?)
            };
            (restore::RestoreFrom::Store { shown: s.shown(), manifest: s.manifest().cloned().map(Box::new) }, stream)
        }
        None => {
            let path = if staged_given {
                object.header_file(super::HEAD).await.map_err(StepError::environment)?
            } else {
                object.local_file().await.map_err(StepError::environment)?
            };
            let tree = object.tree();
            if let Some(key) = key.filter(|_| source::origin_in(&tree, &path) == Origin::Pgdrill) {
                let (p, t) = (path.clone(), tree.clone());
                let trust = tokio::task::spawn_blocking(move || crate::backup::authenticate_manifest_in(&t, &p, Some(&key)))
                    .await
                    .map_err(|e| StepError::environment(e.to_string()))?
                    .map_err(StepError::from)?;
                crate::backup::require_authenticated(object.shown(), trust, true, w.allow_unauthenticated)?;
            }
            (restore::RestoreFrom::File { path, tree }, None)
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
        staging: w.staging.as_deref().map(|s| ctx.local("staging", s)).transpose()?,
        staged: w.staged.as_deref().filter(|s| !s.is_empty()).map(|s| ctx.local("staged", s)).transpose()?,
        bin_dir: w.bin_dir.as_deref().map(PathBuf::from),
        meter: Some(crate::progress::Meter::default()),
        sections: restore::Sections::parse(&w.sections).map_err(|e| StepError::field("sections", e))?,
    };
    let log_ctx = ctx.clone();
    let log = move |l: String| log_ctx.log(l);
    let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
    let r = match stream {
        Some(reader) => restore::restore_stream(opts, reader, &log).await,
        None => restore::restore(opts, &log).await,
    }
    .map_err(|f| {
        // A throwaway whose disk filled, which ran out of memory, crashed or was shut down,
        // or a lost connection, says nothing about the backup: exit 3, never a verdict.
        let mut f = match crate::backup::environment_in_stderr(&f.message.replace(" | ", "\n")).filter(|_| f.class == crate::error::Class::Failed) {
            Some(what) => {
                let why = format!("{what}: the environment failed, not the backup");
                f.context(why).in_class(crate::error::Class::Environment)
            }
            None => f,
        };
        // A throwaway of this run whose files are in the tmpfs filled it (its log says so,
        // whether the client saw a full disk or a lost connection): say the remedy.
        let tmpfs = std::path::Path::new(crate::util::memory::TMPFS);
        if f.class == crate::error::Class::Environment && crate::pg::native::filled_in(tmpfs) {
            f.message = format!("{}; {}", f.message, crate::util::memory::full_remedy(crate::util::memory::InMemory::Data));
        }
        StepError::from(f)
    })?;
    ctx.log(format!("{} restored {} tables in {:.1}s", r.tool, r.tables, r.seconds));
    ctx.fact(crate::facts::Fact::Verified);
    Ok(RestoreOutputs {
        tables: r.tables,
        seconds: r.seconds,
        staged_bytes: r.staged_bytes,
        tool: r.tool,
        layers: r.layers,
        sections: r.sections.names(),
    })
}

// ---------------------------------------------------------------------------------------
// verify.fingerprint

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct FingerprintWith {
    /// database to fingerprint (the restored copy)
    #[field(conninfo)]
    url: String,
    /// source fingerprint (backup.pick's); null: skipped, counts reported
    #[serde(default)]
    #[field(ty = "map|null")]
    expect: Option<serde_json::Value>,
    /// what to compare (default all)
    #[serde(default = "all")]
    #[field(ty = "all|schema|tables")]
    check: String,
    /// tables: hashes or counts only (default: the expected fingerprint's)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "full|counts")]
    mode: Option<String>,
    /// the backup's source major; when the restored server's differs, view and rule
    /// definitions are compared by name and columns (their deparsed text changed in 16)
    ///
    /// The rules for comparing across majors are `fingerprint::schema_differences_across`.
    #[serde(default)]
    #[field(ty = "integer")]
    source_major: Option<serde_json::Value>,
    /// compare ownership, privileges, default privileges, roles, memberships and role
    /// settings: the restore kept owners and grants after `globals.restore` (default false:
    /// not compared, and the log says the proof is the weaker one)
    #[serde(default, deserialize_with = "super::de::boolean")]
    ownership: bool,
    /// without `expect`: the live source's connection, whose table set and per-table row
    /// counts now are the ground truth (within `tolerance`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(secret)]
    source: Option<String>,
    /// without `expect` and `source`: tables that must exist, with minimum rows, e.g.
    /// `public.accounts>=1000, payments` (a name without a schema is in public)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    expect_tables: Option<String>,
    /// with `source`: how far a table's rows may differ from the source's now, in percent of
    /// the larger count (tables grow and shrink after the backup; default 10)
    #[serde(default = "ten", deserialize_with = "super::de::int")]
    tolerance_pct: u32,
    /// without any ground truth: false fails the check as "restorable, content unproven"
    /// (verify), true accepts that and skips; unset skips, as a check after an operator's
    /// restore always did
    #[serde(default, deserialize_with = "super::de::opt_bool")]
    #[field(ty = "boolean")]
    accept_unproven: Option<bool>,
    /// without `expect`, `source` and `expect_tables`: this backup (path or URL); the
    /// nearest earlier backup of its folder whose content a verification proved is the
    /// ground truth (its every table there, none shrunk by more than `tolerance_pct`; with
    /// `check: schema`, its every schema object there: tables, columns, constraints, indexes,
    /// functions, views, sequences, types, triggers, policies, extensions)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    earlier_than: Option<String>,
    /// with `check: schema`: the backup's own grants by object, as `backup.check` read them
    /// from another tool's dump (its `privileges` output; a restore without the dump's roles
    /// leaves them out, so the restored copy cannot show them). Kept in the outputs for the
    /// ledger; with `earlier_than`, each grant the earlier verified backup had must still be
    /// there
    #[serde(default)]
    #[field(ty = "map|null")]
    privileges: Option<serde_json::Value>,
}

fn ten() -> u32 {
    10
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
        // A major is a small number; one past u32 was truncated to another major (2^32 + 15
        // read as 15), so it is refused. Empty text (a manifest without it) is no major.
        if let Some(m) = &self.source_major {
            let ok = match m {
                serde_json::Value::Number(n) => n.as_u64().is_some_and(|n| u32::try_from(n).is_ok()),
                serde_json::Value::String(s) => is_template(s) || s.trim().is_empty() || s.trim().parse::<u32>().is_ok(),
                serde_json::Value::Null => true,
                _ => false,
            };
            if !ok {
                return Err(WithError::new("source_major", format!("`{m}` is not a PostgreSQL major version")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct FingerprintOutputs {
    /// tables in the database
    tables: usize,
    /// rows in all tables
    rows: i64,
    /// what differs (empty when passed)
    differences: Vec<String>,
    /// the computed fingerprint
    #[field(ty = "map")]
    fingerprint: serde_json::Value,
    /// what the restored copy was compared with: manifest, source, expectations, earlier
    /// (the nearest earlier verified backup), or none (kept when the step fails)
    #[field(ty = "manifest|source|expectations|earlier|none")]
    ground_truth: String,
    /// the backup's own grants as given (`privileges`), kept with a proven verification
    #[field(ty = "map|null")]
    privileges: Option<serde_json::Value>,
}

const SHOWN: usize = 10;

fn summarize(what: &str, diffs: &[String]) -> String {
    let mut msg = format!("{} {what} difference{}: ", diffs.len(), if diffs.len() == 1 { "" } else { "s" });
    msg.push_str(&diffs.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; "));
    if diffs.len() > SHOWN {
        msg.push_str(&format!("; and {} more (see the step's outputs)", diffs.len() - SHOWN));
    }
    msg
}

/// Fingerprint a database (schema, per-table rows and content hashes) and compare it with an expected one.
#[step(kind = FingerprintCheck, name = "verify.fingerprint")]
async fn compare(ctx: StepCtx, w: FingerprintWith) -> Result<FingerprintOutputs, StepError> {
    let expect: Option<Fingerprint> = match w.expect.as_ref() {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() || s == "none" => None,
        Some(v) => Some(
            serde_json::from_value(v.clone())
                .map_err(|e| StepError::field("expect", format!("not a pgdrill fingerprint: {e}")))?,
        ),
    };
    let mode = match w.mode.as_deref() {
        Some(m) => Mode::parse(m).map_err(StepError::invalid)?,
        None => expect.as_ref().map(|f| f.mode).unwrap_or(Mode::Counts),
    };
    let privileges: Option<Privileges> = match w.privileges.as_ref() {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|e| {
            StepError::field("privileges", format!("not a dump's grants by object (backup.check's `privileges`): {e}"))
        })?),
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
    let tables: BTreeMap<String, TablePrint> = if want_tables {
        // Content hashed as the expectation's were; without one, as a new backup's would be.
        let content = match &expect {
            Some(e) => e.content(),
            None => fingerprint::Content::for_server(&tx).await.map_err(pg_error)?,
        };
        fingerprint::compute_tables(&tx, mode, content).await.map_err(pg_error)?
    } else {
        BTreeMap::new()
    };
    let restored_major = tx
        .query_one("select current_setting('server_version_num')::int / 10000", &[])
        .await
        .map_err(pg_error)?
        .get::<_, i32>(0) as u32;
    tx.batch_execute("commit").await.map_err(pg_error)?;
    let source_major = match &w.source_major {
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
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
        if !want_tables {
            // The schema as restored stays in the outputs whatever comes of it: a proven
            // verification's record keeps its objects, the ground truth of later dumps.
            ctx.keep("fingerprint", serde_json::to_value(&computed).unwrap_or_default());
            ctx.keep("privileges", serde_json::to_value(&privileges).unwrap_or_default());
            // The earlier backup is the ground truth only after the live source and declared
            // expectations, as for the tables; neither of those says what the schema held.
            let earlier_than = w.earlier_than.as_deref().filter(|_| w.source.is_none() && w.expect_tables.is_none());
            if let Some((name, earlier)) = earlier_verified(&ctx, earlier_than)? {
                let Some(objects) = earlier.objects else {
                    return Err(StepError::Skipped(format!(
                        "no source fingerprint to compare the schema with, and the earlier verified backup {name} has no schema objects recorded (verified before pgdrill kept them); {counts}"
                    )));
                };
                ctx.keep("ground_truth", json!("earlier"));
                ctx.fact(crate::facts::Fact::GroundTruth { basis: "earlier".into() });
                ctx.log(format!(
                    "ground truth for the schema: {name}, the nearest earlier backup of this folder whose content was proven ({} schema objects)",
                    objects.values().map(Vec::len).sum::<usize>()
                ));
                let mut diffs = objects_missing(&name, &objects, &schema_objects(&schema));
                match &earlier.definitions {
                    Some(defs) => diffs.extend(definitions_changed(&name, defs, &schema)),
                    None => ctx.log(format!(
                        "the earlier verified backup {name} has no schema definitions recorded (verified before pgdrill kept them): its objects are compared by name only, a changed definition is not seen"
                    )),
                }
                // The grants come from the dumps themselves (the restore leaves them out).
                let grants_compared = match (&earlier.privileges, &privileges) {
                    (Some(was), Some(now)) => {
                        diffs.extend(privileges_lost(&name, was, now));
                        true
                    }
                    (None, _) => {
                        ctx.log(format!(
                            "the earlier verified backup {name} has no privileges recorded (verified before pgdrill kept them): compared without privileges, a lost grant is not seen"
                        ));
                        false
                    }
                    (Some(_), None) => {
                        ctx.log("this backup's own grants were not given (`privileges`, backup.check's output): compared without privileges, a lost grant is not seen");
                        false
                    }
                };
                if !diffs.is_empty() {
                    return Err(StepError::failed(summarize("schema", &diffs)));
                }
                ctx.log(format!(
                    "every schema object of {name} is in the restored copy{}{}",
                    if earlier.definitions.is_some() { ", each with the definition it had" } else { "" },
                    if grants_compared { ", and the dump still makes every grant it made" } else { "" }
                ));
                ctx.fact(crate::facts::Fact::Verified);
                return Ok(FingerprintOutputs {
                    tables: table_lines,
                    rows: 0,
                    differences: Vec::new(),
                    fingerprint: serde_json::to_value(&computed).unwrap_or_default(),
                    ground_truth: "earlier".into(),
                    privileges: w.privileges.clone().filter(|_| privileges.is_some()),
                });
            }
            return Err(StepError::Skipped(format!(
                "no source fingerprint to compare the schema with (a backup made by another tool, or fingerprint: off); {counts}"
            )));
        }
        let out = |truth: &str| FingerprintOutputs {
            tables: tables.len(),
            rows,
            differences: Vec::new(),
            fingerprint: serde_json::to_value(&computed).unwrap_or_default(),
            ground_truth: truth.into(),
            privileges: None,
        };
        let diffs = if let Some(url) = w.source.as_deref() {
            ctx.keep("ground_truth", json!("source"));
            ctx.fact(crate::facts::Fact::GroundTruth { basis: "source".into() });
            ctx.log(format!(
                "ground truth: the live source's table set and row counts now (tolerance {} %)",
                w.tolerance_pct
            ));
            let live = source_counts(url).await?;
            let (system_identifier, host) = super::ephemeral::identity(url).await;
            ctx.fact(crate::facts::Fact::Source { system_identifier, host });
            against_source(&live, &tables, w.tolerance_pct)
        } else if let Some(spec) = w.expect_tables.as_deref() {
            ctx.keep("ground_truth", json!("expectations"));
            ctx.fact(crate::facts::Fact::GroundTruth { basis: "expectations".into() });
            ctx.log(format!("ground truth: the declared expectations `{spec}`"));
            against_expectations(&parse_expectations(spec).map_err(|m| StepError::field("expect_tables", m))?, &tables)
        } else if let Some((name, earlier)) = earlier_verified(&ctx, w.earlier_than.as_deref())? {
            let earlier = earlier.tables.unwrap_or_default();
            ctx.keep("ground_truth", json!("earlier"));
            ctx.fact(crate::facts::Fact::GroundTruth { basis: "earlier".into() });
            ctx.log(format!(
                "ground truth: {name}, the nearest earlier backup of this folder whose content was proven ({} tables; tolerance {} %)",
                earlier.len(),
                w.tolerance_pct
            ));
            against_earlier(&name, &earlier, &tables, w.tolerance_pct)
        } else {
            // Nothing to compare with: the dump restored, but nothing says it holds the
            // database it claims (every table, every row). Never green.
            ctx.keep("ground_truth", json!("none"));
            ctx.fact(crate::facts::Fact::GroundTruth { basis: "none".into() });
            let why = format!(
                "restorable, content unproven: no manifest, no live source, no declared expectations and no earlier verified backup to compare the restored copy with; {counts}"
            );
            return Err(unproven(
                &ctx,
                None::<&()>,
                why,
                "Give the live source (secret PGDRILL_SOURCE_URL), declare what it must hold (--var expect_tables='public.accounts>=1000, ...'), or accept unproven content explicitly (--var accept_unproven=true)",
                w.accept_unproven,
            ));
        };
        if !diffs.is_empty() {
            return Err(StepError::failed(summarize("table", &diffs)));
        }
        let o = out(match (&w.source, &w.expect_tables) {
            (Some(_), _) => "source",
            (None, Some(_)) => "expectations",
            (None, None) => "earlier",
        });
        ctx.log(format!("{} tables, {rows} rows hold against the {}", tables.len(), o.ground_truth));
        ctx.fact(crate::facts::Fact::Verified);
        return Ok(o);
    };

    // Said before comparing: a copy that differs from the manifest's fingerprint failed
    // against a ground truth (content failed), which is not the same as having none.
    ctx.fact(crate::facts::Fact::GroundTruth { basis: "manifest".into() });
    let mut diffs = Vec::new();
    if want_schema && schema_hash != expect.schema_hash {
        // Equal lines with a different hash: only sequence positions moved.
        let d = if w.ownership {
            fingerprint::schema_differences_across(&expect.schema, &schema, across.is_some())
        } else {
            let (e, a) = (fingerprint::without_privileges(&expect.schema), fingerprint::without_privileges(&schema));
            fingerprint::schema_differences_across(&e, &a, across.is_some())
        };
        if !d.is_empty() {
            return Err(StepError::failed(summarize("schema", &d)));
        }
    }
    if want_tables {
        diffs = fingerprint::table_differences(&expect.tables, &tables);
        if !diffs.is_empty() {
            return Err(StepError::failed(summarize("table", &diffs)));
        }
        ctx.log(format!(
            "{} tables, {rows} rows match the source ({})",
            tables.len(),
            if mode == Mode::Full { "counts and content hashes" } else { "row counts" }
        ));
    }
    if want_schema {
        ctx.log(format!("schema matches the source ({})", &schema_hash[..12.min(schema_hash.len())]));
        super::globals::log_ownership_proof(&ctx, w.ownership, &expect.schema);
    }
    ctx.fact(crate::facts::Fact::Verified);
    Ok(FingerprintOutputs {
        tables: tables.len(),
        rows,
        differences: diffs,
        fingerprint: serde_json::to_value(&computed).unwrap_or_default(),
        ground_truth: "manifest".into(),
        privileges: None,
    })
}

/// The live source's tables and exact row counts, in one consistent view.
async fn source_counts(url: &str) -> Result<BTreeMap<String, TablePrint>, StepError> {
    let c = crate::pg::connect(url).await?;
    c.batch_execute("begin isolation level repeatable read read only").await.map_err(pg_error)?;
    let content = fingerprint::Content::for_server(&c).await.map_err(pg_error)?;
    let t = fingerprint::compute_tables(&c, Mode::Counts, content).await.map_err(pg_error)?;
    c.batch_execute("commit").await.map_err(pg_error)?;
    Ok(t)
}

/// Differences between the restored copy and the live source now: a table on one side
/// only, or rows differing by more than `pct` percent of the larger count.
fn against_source(
    live: &BTreeMap<String, TablePrint>,
    restored: &BTreeMap<String, TablePrint>,
    pct: u32,
) -> Vec<String> {
    let mut out = Vec::new();
    for (t, l) in live {
        match restored.get(t) {
            None => out.push(format!("{t}: missing from the restore (the source has it, {} rows)", l.rows)),
            Some(r) => {
                let (a, b) = (r.rows.max(0) as u128, l.rows.max(0) as u128);
                if a.abs_diff(b) * 100 > a.max(b) * pct as u128 {
                    out.push(format!(
                        "{t}: {} rows restored, the source has {} now (more than {pct} % apart)",
                        r.rows, l.rows
                    ));
                }
            }
        }
    }
    for t in restored.keys().filter(|t| !live.contains_key(*t)) {
        out.push(format!("{t}: in the restore but not in the source"));
    }
    out
}

/// `expect_tables`: `schema.table>=N` or `table` entries, comma or space separated.
fn parse_expectations(spec: &str) -> Result<Vec<(String, i64)>, String> {
    let mut out = Vec::new();
    for item in spec.split([',', ' ', '\n']).map(str::trim).filter(|i| !i.is_empty()) {
        let (name, min) = match item.split_once(">=") {
            Some((n, m)) => (
                n.trim(),
                m.trim()
                    .parse::<i64>()
                    .map_err(|_| format!("`{item}`: the minimum rows after >= must be a whole number"))?,
            ),
            None => (item, 0),
        };
        if name.is_empty() {
            return Err(format!("`{item}`: no table name"));
        }
        let name = if name.contains('.') { name.to_string() } else { format!("public.{name}") };
        out.push((name, min));
    }
    if out.is_empty() {
        return Err("no table named: use `schema.table>=ROWS` entries, comma separated".into());
    }
    Ok(out)
}

/// The nearest earlier backup of `backup`'s folder whose content a verification proved
/// (and recorded the rows per table it restored): its name and that verification's ledger
/// entry. None when there is no such record (or no backup given). A ledger that cannot be
/// read fails closed.
fn earlier_verified(ctx: &StepCtx, backup: Option<&str>) -> Result<Option<(String, ledger::Entry)>, StepError> {
    let Some(backup) = backup.filter(|b| !b.is_empty()) else { return Ok(None) };
    // An object store's backups are read through its local view, where its ledger was
    // gathered.
    let named = ctx.object(backup)?;
    let path = named.view_path();
    let Some(folder) = path.parent() else { return Ok(None) };
    let me = ledger::name_of(&path);
    let entries = ledger::read(&ledger::path_for(&path)).map_err(StepError::from)?.entries;
    // When each backup of the folder was made, by name: "earlier" is the backups' order,
    // never the order they were verified in.
    let made: BTreeMap<String, OffsetDateTime> = LocalStore::new(named.tree().at(folder))
        .list_with(None, None)
        .map_err(|e| StepError::environment(format!("cannot list {}: {e}", folder.display())))?
        .into_iter()
        .filter(|e| e.path.parent() == Some(folder))
        .map(|e| (e.name, e.made))
        .collect();
    let Some(mine) = made.get(&me) else { return Ok(None) };
    let best = entries
        .into_iter()
        .filter(|e| e.backup != me && e.content.as_deref() == Some("proven") && e.tables.is_some())
        .filter_map(|e| Some((*made.get(&e.backup)?, e.backup.clone(), e)))
        .filter(|(t, _, _)| t < mine)
        .max_by_key(|(t, _, _)| *t);
    Ok(best.map(|(_, name, entry)| (name, entry)))
}

/// The schema kinds whose objects a later backup must still have, and how a line of each
/// names its object: by name only, so a definition that changed since (a column's type, a
/// function's body) is not "missing", while an object that is gone is.
const OBJECT_KINDS: &[&str] = &[
    "tables",
    "columns",
    "constraints",
    "indexes",
    "sequences",
    "views",
    "functions",
    "extensions",
    "types",
    "triggers",
    "policies",
];

/// A schema line's words, a double-quoted identifier (which may hold spaces) kept whole.
fn words(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in line.char_indices() {
        match c {
            '"' => {
                quoted = !quoted;
                start.get_or_insert(i);
            }
            ' ' if !quoted => {
                if let Some(s) = start.take() {
                    out.push(&line[s..i]);
                }
            }
            _ => {
                start.get_or_insert(i);
            }
        }
    }
    if let Some(s) = start {
        out.push(&line[s..]);
    }
    out
}

/// The object a schema line of `kind` is about, by name (None for a line it cannot read).
fn object_of(kind: &str, line: &str) -> Option<String> {
    let w = words(line);
    // The word after `key` (`INDEX name`, `ON table`), skipping `ONLY`.
    let after = |key: &str| {
        let at = w.iter().position(|x| *x == key)?;
        w[at + 1..].iter().find(|x| **x != "ONLY").map(|x| x.to_string())
    };
    match kind {
        "tables" | "sequences" | "views" | "extensions" | "types" => w.first().map(|x| x.to_string()),
        // `schema.table position name type ...`
        "columns" => Some(format!("{} {}", w.first()?, w.get(2)?)),
        // `schema.table name definition`
        "constraints" | "policies" => Some(format!("{} {}", w.first()?, w.get(1)?)),
        // `schema.name(arguments) md5`: the arguments may hold spaces, the hash is last.
        "functions" => line.rsplit_once(' ').map(|(f, _)| f.to_string()),
        // `CREATE [UNIQUE] INDEX name ON [ONLY] schema.table USING ...`
        "indexes" => Some(format!("{} on {}", after("INDEX")?, after("ON")?)),
        // `CREATE [CONSTRAINT] TRIGGER name ... ON schema.table ...`
        "triggers" => Some(format!("{} on {}", after("TRIGGER")?, after("ON")?)),
        // `table schema.name: md5` (`pg_describe_object`, then the comment's md5)
        "comments" => line.rsplit_once(": ").map(|(o, _)| o.to_string()),
        _ => None,
    }
}

/// A fingerprint's schema as the objects a later backup must keep, by kind (`OBJECT_KINDS`).
fn schema_objects(schema: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    OBJECT_KINDS
        .iter()
        .filter_map(|k| {
            let lines = schema.get(*k)?;
            let mut objects: Vec<String> = lines.iter().filter_map(|l| object_of(k, l)).collect();
            objects.sort();
            objects.dedup();
            Some((k.to_string(), objects))
        })
        .collect()
}

/// Kinds kept by definition only: an object's comment is no object a dump must keep by
/// name, but one the earlier backup had must still be there, unchanged (a dump made with
/// `--no-comments` loses them all).
const DEFINED_ONLY: &[&str] = &["comments"];

/// What defines an object of `kind`, from its schema line: the whole line, but for a column
/// its position (a column dropped before it moves it, and changes nothing of its own).
fn definition_of(kind: &str, line: &str) -> String {
    match kind {
        "columns" => {
            let w = words(line);
            w.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, x)| *x).collect::<Vec<_>>().join(" ")
        }
        _ => line.to_string(),
    }
}

/// A fingerprint's schema objects with their definitions, by kind then object: the
/// definition's text (its lines, sorted, when one object has several).
fn schema_definition_texts(schema: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeMap<String, String>> {
    OBJECT_KINDS
        .iter()
        .chain(DEFINED_ONLY)
        .filter_map(|k| {
            let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for l in schema.get(*k)? {
                if let Some(o) = object_of(k, l) {
                    by.entry(o).or_default().push(definition_of(k, l));
                }
            }
            let texts = by
                .into_iter()
                .map(|(o, mut d)| {
                    d.sort();
                    (o, d.join("\n"))
                })
                .collect();
            Some((k.to_string(), texts))
        })
        .collect()
}

fn digest(text: &str) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(text.as_bytes());
    h.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// The ledger's definitions of a fingerprint's schema objects: a digest of each one's
/// definition (`ledger::Entry::definitions`).
fn schema_definitions(schema: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, BTreeMap<String, String>> {
    schema_definition_texts(schema)
        .into_iter()
        .map(|(k, objects)| (k, objects.into_iter().map(|(o, t)| (o, digest(&t))).collect()))
        .collect()
}

/// The schema objects of the earlier verified backup `name` that the restored copy has under
/// the same name with another definition (an index that lost a column, a column whose type
/// changed), each named with its definition now. Missing objects are `objects_missing`'s.
fn definitions_changed(
    name: &str,
    earlier: &BTreeMap<String, BTreeMap<String, String>>,
    restored: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let now = schema_definition_texts(restored);
    let mut out = Vec::new();
    for (kind, objects) in earlier {
        let empty = BTreeMap::new();
        let have = now.get(kind).unwrap_or(&empty);
        for (o, was) in objects {
            match have.get(o) {
                Some(text) if digest(text) != *was => out.push(format!(
                    "{kind}: {o} changed its definition since the earlier verified backup {name} (now `{}`)",
                    text.replace('\n', "; ")
                )),
                // Missing objects are named by `objects_missing`; a comment only here.
                None if DEFINED_ONLY.contains(&kind.as_str()) => {
                    out.push(format!("{kind}: {o} is gone since the earlier verified backup {name}"))
                }
                _ => {}
            }
        }
    }
    out
}

/// The schema objects the earlier verified backup `name` had that the restored copy lacks.
fn objects_missing(
    name: &str,
    earlier: &BTreeMap<String, Vec<String>>,
    restored: &BTreeMap<String, Vec<String>>,
) -> Vec<String> {
    let empty = Vec::new();
    let mut out = Vec::new();
    for (kind, objects) in earlier {
        let have: std::collections::BTreeSet<&String> = restored.get(kind).unwrap_or(&empty).iter().collect();
        for o in objects.iter().filter(|o| !have.contains(o)) {
            out.push(format!("{kind}: {o} missing (the earlier verified backup {name} had it)"));
        }
    }
    out
}

/// The grants the earlier verified backup `name` made that this backup's dump no longer
/// makes, each named by object, privilege and role (a grant changed, say to lose its grant
/// option, is the old one lost). A grant added since is no difference: grants are given as
/// a database grows, as tables are. A revoke that is gone gave a privilege back (to PUBLIC,
/// usually).
fn privileges_lost(name: &str, earlier: &Privileges, now: &Privileges) -> Vec<String> {
    let none = Vec::new();
    let mut out = Vec::new();
    for (object, items) in earlier {
        let have = now.get(object).unwrap_or(&none);
        for item in items.iter().filter(|i| !have.contains(i)) {
            let said = if let Some((privilege, role)) = item.strip_prefix("GRANT ").and_then(|i| i.split_once(" TO ")) {
                match role.strip_suffix(" WITH GRANT OPTION") {
                    Some(role) => format!("lost {privilege} WITH GRANT OPTION for role {role}"),
                    None => format!("lost {privilege} for role {role}"),
                }
            } else if let Some((privilege, role)) = item.strip_prefix("REVOKE ").and_then(|i| i.split_once(" FROM ")) {
                format!("no longer revokes {privilege} from {role}")
            } else {
                format!("lost `{item}`")
            };
            out.push(format!("privileges: {object} {said} since the earlier verified backup {name}"));
        }
    }
    out
}

/// What an earlier verified backup had that the restored copy lacks: a table, or rows
/// beyond `tolerance_pct` (tables grow; one that shrank that much, or vanished, is a dump
/// that is not the whole database).
fn against_earlier(
    name: &str,
    earlier: &BTreeMap<String, i64>,
    restored: &BTreeMap<String, TablePrint>,
    tolerance_pct: u32,
) -> Vec<String> {
    earlier
        .iter()
        .filter_map(|(t, was)| match restored.get(t) {
            None => Some(format!("{t}: missing from the restore (the earlier verified backup {name} had it)")),
            Some(r) if (r.rows as i128) * 100 < (*was as i128) * i128::from(100 - tolerance_pct.min(100)) => Some(
                format!("{t}: {} rows restored, the earlier verified backup {name} had {was} (tolerance {tolerance_pct} %)", r.rows),
            ),
            Some(_) => None,
        })
        .collect()
}

fn against_expectations(want: &[(String, i64)], restored: &BTreeMap<String, TablePrint>) -> Vec<String> {
    want.iter()
        .filter_map(|(t, min)| match restored.get(t) {
            None => Some(format!("{t}: missing from the restore (declared in expect_tables)")),
            Some(r) if r.rows < *min => Some(format!("{t}: {} rows restored, at least {min} declared", r.rows)),
            Some(_) => None,
        })
        .collect()
}

/// Fingerprint the database at `url` the way `expect` was taken, in one consistent view, and
/// compare schema and tables. Returns the table and row counts when everything matches.
pub(super) async fn compare_database(url: &str, expect: &Fingerprint) -> Result<(usize, i64), StepError> {
    let client = crate::pg::connect(url).await?;
    client.batch_execute("begin isolation level repeatable read read only").await.map_err(pg_error)?;
    let actual = fingerprint::compute_like(&client, expect).await.map_err(pg_error)?;
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
        return Err(StepError::failed(summarize("fingerprint", &diffs)));
    }
    Ok((actual.tables.len(), actual.tables.values().map(|t| t.rows).sum()))
}

// ---------------------------------------------------------------------------------------
// verify.amcheck

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct AmcheckWith {
    /// database to check
    #[field(conninfo)]
    url: String,
    /// also check every heap tuple is indexed (default true)
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    heapallindexed: bool,
    /// the id of a step of the same `parallel` group that builds the indexes (a
    /// `backup.restore`): each index is checked as soon as it is built, and the rest when
    /// that step has ended; skipped, not passed, when that step did not pass
    #[serde(default, deserialize_with = "super::de::opt_text")]
    follow: Option<String>,
    /// connections checking indexes at the same time (default 1)
    #[serde(default = "one", deserialize_with = "super::de::jobs")]
    jobs: u32,
}

fn yes() -> bool {
    true
}

impl With for AmcheckWith {
    fn check(&self) -> Result<(), WithError> {
        if self.jobs == 0 {
            return Err(WithError::new("jobs", "jobs must be at least 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct AmcheckOutputs {
    /// indexes checked
    indexes: usize,
}

/// Check every B-tree index with amcheck (bt_index_check, heapallindexed); skipped when amcheck is not available.
#[step(kind = Amcheck, name = "verify.amcheck")]
async fn amcheck(ctx: StepCtx, w: AmcheckWith) -> Result<AmcheckOutputs, StepError> {
    // Beside a restore of post-data, indexes are checked as they appear; the last listing is
    // taken after that step has ended, so none is left out.
    let ended = match w.follow.as_deref().filter(|f| !f.is_empty()) {
        Some(id) => Some(ctx.ended(id)?),
        None => None,
    };
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
    // One connection lists the indexes as they become valid; `jobs` others check them, each
    // index once, as they come.
    let (queue, work) = tokio::sync::mpsc::unbounded_channel::<String>();
    let work = std::sync::Arc::new(tokio::sync::Mutex::new(work));
    let failures = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers = (0..w.jobs.max(1)).map(|i| {
        let (work, failures, url) = (work.clone(), failures.clone(), w.url.clone());
        // Without `follow` the listing is one query, sent before any index is queued: the
        // first worker checks on the lister's session instead of opening one more.
        let shared = (i == 0 && ended.is_none()).then_some(&client);
        async move {
            let own;
            let c = match shared {
                Some(c) => c,
                None => {
                    own = crate::pg::connect(&url).await?;
                    &own
                }
            };
            loop {
                let next = work.lock().await.recv().await;
                let Some(name) = next else { return Ok::<(), StepError>(()) };
                let q = format!(
                    "select bt_index_check({}::regclass, {})",
                    crate::pg::native::quote_literal(&name),
                    w.heapallindexed
                );
                if let Err(e) = c.batch_execute(&q).await {
                    if let Ok(mut f) = failures.lock() {
                        f.push(format!("{name}: {}", crate::pg::describe(&e)));
                    }
                }
            }
        }
    });
    let lister = async {
        let mut checked = std::collections::BTreeSet::new();
        let mut early = 0usize;
        loop {
            let last = ended.as_ref().is_none_or(|t| t.is_cancelled());
            for name in valid_btree_indexes(&client).await? {
                if !checked.insert(name.clone()) {
                    continue;
                }
                if !last {
                    early += 1;
                }
                // The workers end only when the queue is closed, below.
                let _ = queue.send(name);
            }
            match &ended {
                Some(t) if !last => {
                    tokio::select! {
                        _ = t.cancelled() => {}
                        _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
                    }
                }
                _ => break,
            }
        }
        drop(queue);
        Ok::<_, StepError>((checked, early))
    };
    let (listed, checks) = tokio::join!(lister, futures_util::future::try_join_all(workers));
    let (checked, early) = listed?;
    checks?;
    let mut failures: Vec<String> = failures.lock().map(|mut f| std::mem::take(&mut *f)).unwrap_or_default();
    failures.sort();
    let indexes = checked;
    // Leave the restored copy as it came back: its extension list is part of the schema.
    if installed.is_none() {
        let _ = client.batch_execute("drop extension amcheck").await;
    }
    if !failures.is_empty() {
        return Err(StepError::failed(summarize("index", &failures)));
    }
    if let Some(id) = w.follow.as_deref().filter(|f| !f.is_empty()) {
        // What was checked is not every index of a restore that stopped half-way.
        if let Some(o) = ctx.sibling_outcome(id).filter(|o| !matches!(o, Outcome::Passed | Outcome::Skipped)) {
            return Err(StepError::Skipped(format!(
                "`{id}`, which this check follows, {}: the {} indexes it had built were sound, but they are not all of them",
                o.as_str(),
                indexes.len()
            )));
        }
        ctx.log(format!("{early} of them checked while `{id}` was still building indexes"));
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
    ctx.fact(crate::facts::Fact::Verified);
    Ok(AmcheckOutputs { indexes: indexes.len() })
}

/// The B-tree indexes amcheck can check, valid ones only (an index being built is not yet
/// listed). Only indexes with storage (relkind `i`): a partitioned table's own index (`I`)
/// has none and bt_index_check refuses it; its partitions' indexes are checked instead.
/// Largest first (its table and itself: heapallindexed reads both), so the longest check
/// starts at once instead of last on a worker that is already busy.
async fn valid_btree_indexes(client: &tokio_postgres::Client) -> Result<Vec<String>, StepError> {
    let rows = client
        .query(
            "select c.oid::regclass::text from pg_index i join pg_class c on c.oid = i.indexrelid \
             join pg_am a on a.oid = c.relam join pg_namespace n on n.oid = c.relnamespace \
             where a.amname = 'btree' and c.relkind = 'i' and i.indisvalid and i.indisready and c.relpersistence <> 't' \
             and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' \
             order by pg_relation_size(i.indrelid) + pg_relation_size(c.oid) desc, 1",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

// ---------------------------------------------------------------------------------------
// verify.record

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RecordWith {
    /// the verified backup
    #[field(ty = "path")]
    backup: String,
    /// its checksum
    #[serde(default, deserialize_with = "super::de::opt_text")]
    sha256: Option<String>,
    /// passed, failed or interrupted (`{{ run.status }}` in finally); failed is recorded as
    /// `error` when no check failed and a step errored (the environment)
    result: String,
    /// `{{ steps }}`: outcomes and durations are taken from it
    #[serde(default)]
    steps: serde_json::Map<String, serde_json::Value>,
    /// which steps to record
    #[serde(default)]
    checks: Vec<String>,
    /// the verification's duration
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "number")]
    duration_s: Option<String>,
    /// why the run ended (`{{ run.message }}`), kept unless passed
    #[serde(default, deserialize_with = "super::de::opt_text")]
    message: Option<String>,
    /// the check whose outcome is the content verdict (proven, unproven, failed)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    content_check: Option<String>,
    /// the schema check: its failure fails the content verdict too, and the schema objects
    /// it read are kept with a proven verification (the ground truth of later dumps)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    schema_check: Option<String>,
    /// the check whose outcome is the age verdict (fresh, stale, unknown); its failure is
    /// not a failure of the backup's content
    #[serde(default, deserialize_with = "super::de::opt_text")]
    age_check: Option<String>,
}

impl With for RecordWith {
    fn check(&self) -> Result<(), WithError> {
        match self.duration_s.as_deref().map(str::trim) {
            Some(d) if !d.is_empty() && !is_template(d) && self.seconds().is_none() => Err(WithError::new(
                "duration_s",
                format!("`{d}` is not a number of seconds from 0 to {}", super::de::float_text(super::de::MAX_NUMBER)),
            )),
            _ => Ok(()),
        }
    }
}

impl RecordWith {
    /// The duration as the ledger keeps it: finite, not negative, within `MAX_NUMBER` (a
    /// NaN or 1e300 in the ledger would be every later reader's problem).
    fn seconds(&self) -> Option<f64> {
        let d: f64 = self.duration_s.as_deref()?.trim().parse().ok()?;
        (d.is_finite() && (0.0..=super::de::MAX_NUMBER).contains(&d)).then_some(d)
    }
}

fn outcome_of<'a>(steps: &'a serde_json::Map<String, serde_json::Value>, id: &str) -> Option<&'a str> {
    steps.get(id).and_then(|s| s.get("outcome")).and_then(|o| o.as_str())
}

/// "Restorable, content unproven": the one outcome of a check that restored or recovered a
/// copy and had no ground truth to compare its content with (it told the run so with
/// `Fact::GroundTruth { basis: "none" }`), whichever step it is: verify's tables, a
/// physical recovery without `expect`. Never a pass: a failure (JUnit `<failure
/// type="unproven">`) when `accept` is false, else a skip (`<skipped type="unproven">`) with
/// the reason, "accepted" when the run said so. `outputs`, when the step has them, stay
/// readable by later steps and reports (a recovered server's `url`, the ledger's `backup`).
pub(crate) fn unproven<O: Serialize>(
    ctx: &StepCtx,
    outputs: Option<&O>,
    why: String,
    remedy: &str,
    accept: Option<bool>,
) -> StepError {
    if let Some(serde_json::Value::Object(m)) = outputs.and_then(|o| serde_json::to_value(o).ok()) {
        for (k, v) in m {
            ctx.keep(&k, v);
        }
    }
    match accept {
        Some(true) => StepError::Skipped(format!("{why} (accepted: accept_unproven)")),
        None => StepError::Skipped(why),
        Some(false) => StepError::failed(format!("{why}. {remedy}")),
    }
}

/// The ledger's verdicts of one verification: `result` (passed, failed, unproven, error,
/// interrupted), the content's (proven, unproven, failed, error) with the ground truth it was
/// proven against, and the age's (fresh, stale, unknown). The age check's failure does not
/// make the result failed: a backup whose content was proven stays proven when it is old.
fn verdicts(w: &RecordWith) -> (String, Option<String>, Option<String>, Option<String>) {
    let age_id = w.age_check.as_deref();
    let age = age_id.map(|id| match outcome_of(&w.steps, id) {
        Some("passed") => "fresh".to_string(),
        Some("failed") => "stale".into(),
        _ => "unknown".into(),
    });
    // Every step but the age check decides the result.
    let rest: serde_json::Map<String, serde_json::Value> =
        w.steps.iter().filter(|(k, _)| Some(k.as_str()) != age_id).map(|(k, v)| (k.clone(), v.clone())).collect();
    let failed_ids: Vec<&str> = rest
        .iter()
        .filter(|(_, s)| matches!(s.get("outcome").and_then(|o| o.as_str()), Some("failed" | "timed_out")))
        .map(|(k, _)| k.as_str())
        .collect();
    let age_failed = age_id.is_some_and(|id| outcome_of(&w.steps, id) == Some("failed"));
    // Only the age check failed: the rest of the run is the verdict on the backup.
    let status = if w.result == "failed"
        && failed_ids.is_empty()
        && age_failed
        && !rest.values().any(|s| s.get("outcome").and_then(|o| o.as_str()) == Some("errored"))
    {
        "passed"
    } else {
        w.result.as_str()
    };
    let mut result = ledger_result(status, &rest);
    let Some(cid) = w.content_check.as_deref() else { return (result, None, None, age) };
    let truth = w
        .steps
        .get(cid)
        .and_then(|s| s.get("outputs"))
        .and_then(|o| o.get("ground_truth"))
        .and_then(|g| g.as_str())
        .map(str::to_string);
    // A schema that did not hold against its ground truth is content that failed, whatever
    // the tables said.
    let schema_failed =
        w.schema_check.as_deref().is_some_and(|id| matches!(outcome_of(&w.steps, id), Some("failed" | "timed_out")));
    let content = match outcome_of(&w.steps, cid) {
        Some("passed") if schema_failed => "failed",
        // A step that passes without a ground truth (a recovery proven, its content compared
        // with nothing: physical.verify without `expect`) proved no content.
        Some("passed") if truth.as_deref() == Some("none") => "unproven",
        Some("passed") => "proven",
        Some("failed" | "timed_out") if truth.as_deref() == Some("none") => "unproven",
        Some("failed" | "timed_out") => "failed",
        Some("errored") => "error",
        // Skipped: accepted as unproven when nothing else failed or errored.
        _ if result == "error" => "error",
        _ if failed_ids.iter().any(|f| *f != cid) => "failed",
        _ if result == "interrupted" => "unknown",
        _ => "unproven",
    };
    if content == "unproven" && failed_ids.iter().all(|f| *f == cid) && matches!(result.as_str(), "passed" | "failed") {
        result = "unproven".into();
    }
    let truth = if content == "proven" { truth } else { None };
    (result, Some(content.to_string()), truth, age)
}

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

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RecordOutputs {
    /// the ledger file
    ledger: String,
}

/// Append a verification result to the ledger beside the backup (ledger.jsonl).
#[step(kind = Record, name = "verify.record")]
async fn record(ctx: StepCtx, w: RecordWith) -> Result<RecordOutputs, StepError> {
    let named = ctx.object(&w.backup)?;
    let path = named.view_path();
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
    let (result, content, ground_truth, age) = verdicts(&w);
    // The rows per table a proven verification restored: a later dump of this folder without
    // a manifest is held against them.
    let tables = w
        .content_check
        .as_deref()
        .filter(|_| content.as_deref() == Some("proven"))
        .and_then(|cid| w.steps.get(cid)?.get("outputs")?.get("fingerprint")?.get("tables")?.as_object().cloned())
        .map(|t| t.iter().filter_map(|(k, v)| Some((k.clone(), v.get("rows")?.as_i64()?))).collect());
    // The schema objects the schema check read (passed, or skipped with nothing to compare
    // them with), kept with a proven verification: a later dump must still have them all.
    let objects = w
        .schema_check
        .as_deref()
        .filter(|_| content.as_deref() == Some("proven"))
        .and_then(|id| w.steps.get(id)?.get("outputs")?.get("fingerprint")?.get("schema")?.as_object().cloned())
        .map(|schema| {
            let lines: BTreeMap<String, Vec<String>> = schema
                .into_iter()
                .map(|(k, v)| {
                    let l = v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(String::from)).collect::<Vec<_>>());
                    (k, l.unwrap_or_default())
                })
                .collect();
            (schema_objects(&lines), schema_definitions(&lines))
        })
        .filter(|(o, _)| !o.is_empty());
    let (objects, definitions) = match objects {
        Some((o, d)) => (Some(o), Some(d)),
        None => (None, None),
    };
    // The dump's own grants the schema check was given (backup.check read them), kept with a
    // proven verification beside its objects: a later dump must still make each of them.
    let privileges: Option<Privileges> = w
        .schema_check
        .as_deref()
        .filter(|_| content.as_deref() == Some("proven"))
        .and_then(|id| w.steps.get(id)?.get("outputs")?.get("privileges").cloned())
        .and_then(|p| serde_json::from_value(p).ok());
    let entry = ledger::Entry {
        backup: ledger::name_of(&path),
        sha256: w.sha256.clone(),
        verified_at: rfc3339(OffsetDateTime::now_utc()),
        result,
        content,
        ground_truth,
        age,
        tables,
        objects,
        definitions,
        privileges,
        error: w.message.as_deref().filter(|_| w.result != "passed").map(|m| ctx.redactor.redact(m)),
        duration_s: w.seconds(),
        checks,
        pgdrill_version: Some(env!("CARGO_PKG_VERSION").into()),
    };
    let (store, folder) = named.folder();
    let ledger_key = if folder.is_empty() { ledger::FILE.to_string() } else { format!("{folder}/{}", ledger::FILE) };
    // A folder on this machine keeps one ledger file, appended under a lock; a store with no
    // file to append to keeps one object per verification, beside the backup.
    let Some(file) = store.local_path(&ledger_key) else {
        let url = ledger::record(&*store, &folder, &entry).await.map_err(StepError::environment)?;
        ctx.log(format!("{}: {} recorded in {url}", entry.backup, entry.result));
        return Ok(RecordOutputs { ledger: url });
    };
    ledger::append(&file, &entry)
        .map_err(|e| StepError::environment(format!("cannot append to {}: {e}", file.display())))?;
    ctx.log(format!("{}: {} recorded in {}", entry.backup, entry.result, file.display()));
    Ok(RecordOutputs { ledger: file.display().to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(kinds: &[(&str, Vec<&str>)]) -> BTreeMap<String, Vec<String>> {
        kinds.iter().map(|(k, l)| (k.to_string(), l.iter().map(|x| x.to_string()).collect())).collect()
    }

    /// Schema lines as the fingerprint writes them, read as objects by name: quoted names
    /// with spaces kept whole, a definition left out.
    #[test]
    fn schema_lines_are_read_as_the_objects_they_name() {
        let lines = schema(&[
            ("tables", vec!["public.accounts r", "public.\"odd name\" r"]),
            ("columns", vec!["public.accounts 2 name text not null", "public.\"odd name\" 1 \"a b\" integer"]),
            ("constraints", vec!["public.accounts accounts_pkey PRIMARY KEY (id)"]),
            (
                "indexes",
                vec![
                    "CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)",
                    "CREATE INDEX \"by name\" ON ONLY public.parted USING btree (name)",
                ],
            ),
            ("functions", vec!["public.add(a integer, b integer) 0cc175b9c0f1b6a831c399e269772661"]),
            ("triggers", vec!["CREATE TRIGGER audit AFTER INSERT OR UPDATE ON public.accounts FOR EACH ROW EXECUTE FUNCTION public.audit() enabled=O"]),
            ("extensions", vec!["pg_trgm 1.6"]),
            ("comments", vec!["table public.accounts: 0cc175b9c0f1b6a831c399e269772661"]),
        ]);
        let o = schema_objects(&lines);
        assert_eq!(o["tables"], vec!["public.\"odd name\"", "public.accounts"]);
        assert_eq!(o["columns"], vec!["public.\"odd name\" \"a b\"", "public.accounts name"]);
        assert_eq!(o["constraints"], vec!["public.accounts accounts_pkey"]);
        assert_eq!(o["indexes"], vec!["\"by name\" on public.parted", "accounts_pkey on public.accounts"]);
        assert_eq!(o["functions"], vec!["public.add(a integer, b integer)"]);
        assert_eq!(o["triggers"], vec!["audit on public.accounts"]);
        assert_eq!(o["extensions"], vec!["pg_trgm"]);
        assert!(!o.contains_key("comments"), "a comment is not an object a dump must keep: {o:?}");
    }

    /// A dump without its post-data section (indexes, constraints, triggers) against the
    /// earlier verified backup's objects: each one missing is named; a changed definition
    /// and an added object are not differences.
    #[test]
    fn a_schema_without_its_indexes_misses_each_by_name() {
        let earlier = schema_objects(&schema(&[
            ("tables", vec!["public.accounts r"]),
            ("columns", vec!["public.accounts 1 id integer not null"]),
            ("constraints", vec!["public.accounts accounts_pkey PRIMARY KEY (id)"]),
            ("indexes", vec!["CREATE UNIQUE INDEX accounts_pkey ON public.accounts USING btree (id)"]),
            ("functions", vec!["public.f() aaaa"]),
        ]));
        let cut = schema_objects(&schema(&[
            ("tables", vec!["public.accounts r", "public.added r"]),
            ("columns", vec!["public.accounts 1 id bigint"]),
            ("constraints", vec![]),
            ("indexes", vec![]),
            ("functions", vec!["public.f() bbbb"]),
        ]));
        let missing = objects_missing("app-1.sql.gz", &earlier, &cut);
        assert_eq!(
            missing,
            vec![
                "constraints: public.accounts accounts_pkey missing (the earlier verified backup app-1.sql.gz had it)",
                "indexes: accounts_pkey on public.accounts missing (the earlier verified backup app-1.sql.gz had it)",
            ]
        );
        assert!(objects_missing("app-1.sql.gz", &earlier, &earlier).is_empty());
    }

    /// Issue 35: the earlier verified backup's objects were compared by name only, so an
    /// index that lost a column or a column whose type changed was no difference. Each
    /// object's definition is kept as a digest and compared; a column that only moved (one
    /// before it dropped) is unchanged, and an added object is no difference.
    #[test]
    fn a_changed_definition_is_named_against_the_earlier_backup() {
        let earlier = schema(&[
            ("columns", vec!["public.accounts 1 id integer not null", "public.accounts 3 name text"]),
            ("indexes", vec!["CREATE INDEX by_name ON public.accounts USING btree (name, id)"]),
            ("constraints", vec!["public.accounts accounts_pkey PRIMARY KEY (id)"]),
            ("functions", vec!["public.f(a integer) aaaa"]),
            ("views", vec!["public.v 1111"]),
        ]);
        let defs = schema_definitions(&earlier);
        assert!(defs["indexes"]["by_name on public.accounts"].len() == 16, "{defs:?}");
        assert!(definitions_changed("app-1.sql.gz", &defs, &earlier).is_empty());
        let later = schema(&[
            ("columns", vec!["public.accounts 1 id bigint not null", "public.accounts 2 name text", "public.accounts 3 added int"]),
            ("indexes", vec!["CREATE INDEX by_name ON public.accounts USING btree (name)"]),
            ("constraints", vec!["public.accounts accounts_pkey PRIMARY KEY (id)"]),
            ("functions", vec!["public.f(a integer) bbbb"]),
            ("views", vec!["public.v 2222"]),
        ]);
        let since = "changed its definition since the earlier verified backup app-1.sql.gz";
        assert_eq!(
            definitions_changed("app-1.sql.gz", &defs, &later),
            vec![
                format!("columns: public.accounts id {since} (now `public.accounts id bigint not null`)"),
                format!("functions: public.f(a integer) {since} (now `public.f(a integer) bbbb`)"),
                format!("indexes: by_name on public.accounts {since} (now `CREATE INDEX by_name ON public.accounts USING btree (name)`)"),
                format!("views: public.v {since} (now `public.v 2222`)"),
            ]
        );
        // Comments: by definition only, never an object by name; one changed or gone is named.
        let commented = schema(&[(
            "comments",
            vec!["table public.accounts: 0cc175b9c0f1b6a831c399e269772661", "column public.accounts.id: 92eb5ffee6ae2fec3ad71c777531578f"],
        )]);
        assert!(!schema_objects(&commented).contains_key("comments"));
        let defs = schema_definitions(&commented);
        let later = schema(&[("comments", vec!["table public.accounts: 4a8a08f09d37b73795649038408b5f33"])]);
        assert_eq!(
            definitions_changed("app-1.sql.gz", &defs, &later),
            vec![
                "comments: column public.accounts.id is gone since the earlier verified backup app-1.sql.gz".to_string(),
                format!("comments: table public.accounts {since} (now `table public.accounts: 4a8a08f09d37b73795649038408b5f33`)"),
            ]
        );
    }

    /// Issue 35: verify restores another tool's dump without its grants (its roles are not in
    /// the throwaway), so a dump that lost a GRANT verified green against the earlier backup.
    /// The grants the dump itself states are compared: each one the earlier verified backup
    /// made and this one does not (gone, or changed: the grant option lost) is named by
    /// object, privilege and role; a revoke that is gone is named too; a grant added since
    /// is no difference.
    #[test]
    fn a_grant_the_earlier_backup_made_is_named_when_the_dump_lost_it() {
        let grants = |l: &[(&str, &[&str])]| -> Privileges {
            l.iter().map(|(o, i)| (o.to_string(), i.iter().map(|x| x.to_string()).collect())).collect()
        };
        let earlier = grants(&[
            ("TABLE public.payments", &["GRANT SELECT TO reporting", "GRANT UPDATE(amount) TO app WITH GRANT OPTION"]),
            ("FUNCTION public.balance(a integer)", &["REVOKE ALL FROM PUBLIC"]),
            ("SCHEMA audit", &["GRANT USAGE TO reporting"]),
        ]);
        assert!(privileges_lost("app-1.sql.gz", &earlier, &earlier).is_empty());
        let added = grants(&[
            (
                "TABLE public.payments",
                &["GRANT INSERT TO app", "GRANT SELECT TO reporting", "GRANT UPDATE(amount) TO app WITH GRANT OPTION"],
            ),
            ("FUNCTION public.balance(a integer)", &["REVOKE ALL FROM PUBLIC"]),
            ("SCHEMA audit", &["GRANT USAGE TO reporting"]),
            ("TABLE public.notes", &["GRANT SELECT TO reporting"]),
        ]);
        assert!(privileges_lost("app-1.sql.gz", &earlier, &added).is_empty(), "a grant added since is no difference");
        let now = grants(&[("TABLE public.payments", &["GRANT UPDATE(amount) TO app"])]);
        let since = "since the earlier verified backup app-1.sql.gz";
        assert_eq!(
            privileges_lost("app-1.sql.gz", &earlier, &now),
            vec![
                format!("privileges: FUNCTION public.balance(a integer) no longer revokes ALL from PUBLIC {since}"),
                format!("privileges: SCHEMA audit lost USAGE for role reporting {since}"),
                format!("privileges: TABLE public.payments lost SELECT for role reporting {since}"),
                format!("privileges: TABLE public.payments lost UPDATE(amount) WITH GRANT OPTION for role app {since}"),
            ]
        );
    }
}

#[cfg(test)]
mod record_verdicts {
    use super::*;

    /// Regression (issue 39): a recovery proven with its content compared with nothing
    /// (physical.verify without `expect`, `ground_truth: none`) was recorded in the ledger as
    /// `passed`, its content `proven`.
    #[test]
    fn a_passed_check_without_a_ground_truth_is_recorded_unproven_never_passed() {
        let w = |truth: &str| RecordWith {
            backup: "/ledger/20261206-101500F".into(),
            sha256: None,
            result: "passed".into(),
            steps: serde_json::from_value(json!({
                "recover": { "outcome": "passed", "outputs": { "ground_truth": truth } },
                "amcheck": { "outcome": "passed" },
                "freshness": { "outcome": "passed" },
            }))
            .expect("steps"),
            checks: Vec::new(),
            duration_s: None,
            message: None,
            content_check: Some("recover".into()),
            age_check: Some("freshness".into()),
            schema_check: None,
        };
        let (result, content, truth, age) = verdicts(&w("none"));
        assert_eq!(
            (result.as_str(), content.as_deref(), truth, age.as_deref()),
            ("unproven", Some("unproven"), None, Some("fresh"))
        );
        let (result, content, truth, _) = verdicts(&w("source at the target"));
        assert_eq!(
            (result.as_str(), content.as_deref(), truth.as_deref()),
            ("passed", Some("proven"), Some("source at the target"))
        );
    }
}
