//! `backup.copy`: one backup (and its manifest) from one location to another, local or an
//! object store, for the 3-2-1 rule. The copy is checked: its size and sha256, read back from
//! where it landed, must be the source's (and the manifest's, for pgdrill's own backups).
//! Nothing is replaced: a copy already there with the same sha256 is reported as such, one
//! with other contents is a failure.

use std::io::Read;

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::storage::{Store, Unproven};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct CopyWith {
    /// the backup: a path or an object URL (e.g. steps.backup.outputs.path)
    #[field(ty = "path")]
    backup: String,
    /// the destination storage: a directory or s3://, gs://, az:// URL
    #[field(ty = "path")]
    to: String,
    /// the folder in the destination (default: the manifest's database, else the source's folder)
    #[serde(default)]
    database: Option<String>,
    /// keep the copy and its manifest from deletion this long (e.g. `90d`) with S3 Object
    /// Lock; a destination that cannot keep it is refused before anything is copied; empty:
    /// no retention
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    retain: Option<std::time::Duration>,
    /// the Object Lock mode with `retain` (default governance; compliance: no one can remove
    /// it until the date)
    #[serde(default = "super::de::governance")]
    #[field(ty = "governance|compliance")]
    lock_mode: String,
}

impl With for CopyWith {
    fn check(&self) -> Result<(), WithError> {
        if self.to.trim().is_empty() {
            return Err(WithError::new("to", "no destination: give a directory or an object store URL (s3://...)"));
        }
        if !crate::template::is_template(&self.lock_mode) {
            crate::storage::lock::Mode::parse(&self.lock_mode).map_err(|m| WithError::new("lock_mode", m))?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct CopyOutputs {
    /// the copy
    path: String,
    /// its sha256, read back from the destination
    sha256: String,
    /// its size in bytes
    size: u64,
    /// false when the same copy was already there
    copied: bool,
}

/// Copy a backup and its manifest to another location (local or object store), checking size and sha256 of the copy.
#[step(name = "backup.copy", report_log)]
impl Copy {
    async fn run(ctx: StepCtx, w: CopyWith) -> Result<CopyOutputs, StepError> {
        let to = ctx.store(&w.to)?;
        // A retention the destination cannot keep is refused before anything is copied.
        let locked = match w.retain {
            Some(d) if d.is_zero() => return Err(StepError::field("retain", "a retention of 0 keeps nothing")),
            Some(d) => {
                let mode = crate::storage::lock::Mode::parse(&w.lock_mode).map_err(|m| StepError::field("lock_mode", m))?;
                let l = crate::storage::lock::Locked::open(&w.to).await.map_err(crate::Error::into_failure)?;
                Some((l, mode, d))
            }
            None => None,
        };
        let out = copy_one(&ctx, &w.backup, &*to, w.database.as_deref(), None).await?;
        if let Some((l, mode, d)) = locked {
            // The copy and its manifest, each the newest version, which this step just read
            // back (or found already there with the same sha256).
            let base = format!("{}/", to.url().trim_end_matches('/'));
            let key = out.path.strip_prefix(&base).unwrap_or(&out.path).to_string();
            let until = crate::storage::lock::retain_until(d);
            for k in [key.clone(), crate::backup::layout::manifest_key(&key)] {
                if to.head(&k).await.map_err(StepError::environment)?.is_none() {
                    continue;
                }
                let (version, until) = l.retain(&k, None, mode, &until).await.map_err(|e| {
                    StepError::from(crate::error::Failure::environment(format!(
                        "{}; the copy {} is whole but not retained",
                        e.into_failure().message,
                        out.path
                    )))
                })?;
                ctx.log(format!(
                    "retained {} (version {version}) in {} mode until {until}",
                    to.url_of(&k),
                    mode.header().to_ascii_lowercase()
                ));
            }
        }
        Ok(out)
    }
}

/// Copy one backup (`backup`: a path or an object URL) and its manifest into `to`: under
/// `rel` when given (a folder's layout kept by `backup.sync`), else under the database's
/// folder and the file's name.
async fn copy_one(
    ctx: &StepCtx,
    backup: &str,
    to: &dyn Store,
    database: Option<&str>,
    rel: Option<String>,
) -> Result<CopyOutputs, StepError> {
    let object = ctx.object(backup)?;
    // Read through its store as one stream of the version seen, hashed as it is copied,
    // never downloaded into a local file first (issue 37). Where it is seen locally, reading
    // nothing, gives its folder's name and tells a directory dump here.
    let (from, key) = object.object();
    let src = object.view_path();
    let shown_src = object.shown().to_string();
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| StepError::invalid(format!("{shown_src} names no file")))?;
    if src.is_dir() {
        return Err(StepError::invalid(format!(
            "{shown_src} is a directory dump: copy it as a tar or with the store's own tools"
        )));
    }
    let Some(seen) = from.head(&key).await.map_err(StepError::environment)? else {
        return Err(StepError::environment(format!("reading {shown_src}: it does not exist")));
    };
    let mk = crate::backup::layout::manifest_key(&key);
    let manifest = match from.head(&mk).await.map_err(StepError::environment)? {
        Some(_) => Some(from.read(&mk).await.map_err(StepError::environment)?),
        None => None,
    };
    let recorded: Option<crate::backup::Manifest> = manifest.as_deref().and_then(|b| serde_json::from_slice(b).ok());
    let rel = match rel {
        Some(r) => r,
        None => {
            let folder_db = match (database, &recorded) {
                (Some(d), _) if !d.is_empty() => d.to_string(),
                (_, Some(m)) => m.stored_as().to_string(),
                _ => src
                    .parent()
                    .and_then(|p| p.file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .and_then(|f| crate::backup::layout::database_of_folder(&f))
                    .ok_or_else(|| StepError::invalid(format!("which database is {shown_src} of? give `database`")))?,
            };
            format!("{}/{name}", crate::backup::layout::folder_name(&folder_db))
        }
    };
    let dest = to.url_of(&rel);
    // Resuming: a copy whose manifest is there, the same as the source's, was read back and
    // matched when it was made (the manifest goes last); the source is not read again.
    if let (Some(m), Some(bytes)) = (&recorded, &manifest) {
        let size_there = to.head(&rel).await.ok().flatten().map(|h| h.size);
        if size_there == Some(m.sizes.stored)
            && to.read(&crate::backup::layout::manifest_key(&rel)).await.ok().as_deref() == Some(bytes.as_slice())
        {
            ctx.log(format!(
                "{dest} is already there with the same sha256 {} and the same manifest (read back when it was copied, not read again): nothing copied",
                m.sha256
            ));
            return Ok(CopyOutputs { path: dest, sha256: m.sha256.clone(), size: m.sizes.stored, copied: false });
        }
    }
    // A team's own file (a sidecar of envelope none, openssl or gpg) lands as it was written:
    // its sidecar first, so the team's globs never see it at the destination without one.
    let sidecar_first = recorded.as_ref().is_some_and(|m| m.envelope != crate::archive::Envelope::Pgdrill);
    let origin = Origin {
        store: &*from,
        key: &key,
        version: seen.version.as_deref(),
        size: seen.size,
        shown: &shown_src,
        recorded: recorded.as_ref(),
    };
    let source = Source { from: origin, manifest: manifest.as_deref() };
    let (copied, sha, size) = match to_store(to, &rel, source, sidecar_first).await? {
        Copied::Now { sha, size, checked: None } => {
            ctx.log(format!("copied {shown_src} to {dest} ({size} bytes, sha256 {sha}, read back and matched)"));
            (true, sha, size)
        }
        Copied::Now { sha, size, checked: Some(checked) } => {
            ctx.log(format!("copied {shown_src} to {dest} ({size} bytes, sha256 {sha}): {checked}"));
            (true, sha, size)
        }
        Copied::Already { sha, size } => {
            ctx.log(format!("{dest} is already there with the same sha256 {sha}: nothing copied"));
            (false, sha, size)
        }
    };
    Ok(CopyOutputs { path: dest, sha256: sha, size, copied })
}

/// sha256 and size of what `r` reads, 1 MiB at a time, each piece written on to `w` as it
/// is hashed: the source is hashed as it is copied, so it is read once (issue 37), and a
/// read-back is hashed alike (`w` a sink), so a copy matches its source only byte for byte.
fn send(mut r: impl Read, mut w: impl std::io::Write) -> Result<(String, u64), Broke> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Broke::Reading(e)),
        };
        h.update(&buf[..k]);
        w.write_all(&buf[..k]).map_err(Broke::Writing)?;
        n += k as u64;
    }
    Ok((crate::archive::hex(&h.finalize()), n))
}

/// Which end of `send` failed: the source's store or the destination's.
enum Broke {
    Reading(std::io::Error),
    Writing(std::io::Error),
}

/// sha256 and size of what `r` reads (`shown`, for the error), read off the runtime.
async fn digest(r: Box<dyn Read + Send>, shown: String) -> Result<(String, u64), String> {
    tokio::task::spawn_blocking(move || send(r, std::io::sink()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|(Broke::Reading(e) | Broke::Writing(e))| format!("reading {shown}: {e}"))
}

/// sha256 and size of `key` in `store`, read back as a stream (memory stays bounded).
async fn digest_in(store: &dyn Store, key: &str) -> Result<(String, u64), String> {
    digest(store.open(key, None, None).await?, store.url_of(key)).await
}

/// Copy `src` (and its manifest) to `key` in `store`: nothing under the key until the copy
/// is whole, matched to its source, read back and matched; an existing copy with the same
/// sha256 is kept (`Already`), one with other contents is never replaced. The manifest goes
/// last (pgdrill's commit marker), or first when `sidecar_first` (a team's sidecar, see
/// `backup::layout`); a copy that fails then takes its sidecar away again.
async fn to_store(store: &dyn Store, key: &str, src: Source<'_>, sidecar_first: bool) -> Result<Copied, StepError> {
    let env = StepError::environment;
    let manifest = src.manifest;
    let mk = crate::backup::layout::manifest_key(key);
    // Where the file is there already, `to_store_file` judges it (and adds a missing manifest).
    let file_there = store.head(key).await.map_err(env)?.is_some();
    let early = manifest.filter(|_| sidecar_first && !file_there);
    if let Some(m) = early {
        // A sidecar left by a copy stopped before its file is kept when it is this one.
        match store.head(&mk).await.map_err(env)? {
            Some(_) if store.read(&mk).await.map_err(env)?.as_slice() == m => {}
            Some(_) => {
                return Err(StepError::failed(format!(
                    "{} already exists with other contents: nothing was replaced",
                    store.url_of(&mk)
                )))
            }
            None => store.put_new(&mk, m.to_vec()).await.map_err(env)?,
        }
        crate::util::test_pause("copy-sidecar-written");
    }
    let result = to_store_file(store, key, Source { manifest: if early.is_some() { None } else { manifest }, ..src }).await;
    if early.is_some() && result.is_err() && store.head(key).await.ok().flatten().is_none() {
        let _ = store.delete(&mk).await;
    }
    result
}

/// `to_store`'s file, and its manifest after it when given.
async fn to_store_file(store: &dyn Store, key: &str, src: Source<'_>) -> Result<Copied, StepError> {
    let Source { from, manifest } = src;
    let env = StepError::environment;
    if store.head(key).await.map_err(env)?.is_some() {
        // Nothing is copied over a file that is there: the source is only hashed.
        let (sha, size) = digest(from.open().await?, from.shown.to_string()).await.map_err(env)?;
        from.judge(&sha, size)?;
        let (there, n) = digest_in(store, key).await.map_err(env)?;
        if there == sha && n == size {
            // A copy stopped after the archive and before its manifest: the manifest now.
            if let Some(m) = manifest {
                let mk = crate::backup::layout::manifest_key(key);
                if store.head(&mk).await.map_err(env)?.is_none() {
                    store.put_new(&mk, m.to_vec()).await.map_err(env)?;
                }
            }
            return Ok(Copied::Already { sha, size });
        }
        return Err(StepError::failed(format!(
            "{} already exists with other contents (sha256 {there}): nothing was replaced",
            store.url_of(key)
        )));
    }
    let read = from.open().await?;
    let mut writer = store.create(key).await.map_err(env)?;
    let (writer, sent) = tokio::task::spawn_blocking(move || {
        let sent = send(read, &mut writer);
        (writer, sent)
    })
    .await
    .map_err(|e| StepError::environment(e.to_string()))?;
    let (sha, size) = match sent {
        Ok(read) => read,
        Err(broke) => {
            writer.abort().await;
            return Err(StepError::environment(match broke {
                Broke::Reading(e) => format!("reading {}: {e}", from.shown),
                Broke::Writing(e) => format!("copying to {}: {e}", store.url_of(key)),
            }));
        }
    };
    // What was read is judged before anything is published: a source that differs from its
    // manifest, or changed while it was read, leaves nothing under the key.
    if let Err(e) = from.judge(&sha, size) {
        writer.abort().await;
        return Err(e);
    }
    let archived = if store.archival_class().is_some() {
        // An archive class refuses the read-back: the store's metadata is compared with what
        // the parts as they were sent make instead (no second read of the source).
        let published = writer.publish_new(&[]).await.map_err(env)?;
        match store.check_published(&published, size, &sha).await {
            Ok(line) => line,
            Err(Unproven::Differs(e) | Unproven::Unread(e)) => {
                let _ = store.delete(key).await;
                return Err(StepError::environment(format!("{e}: the copy was removed")));
            }
        }
    } else {
        writer.publish().await.map_err(env)?;
        let (back, n) = digest_in(store, key).await.map_err(env)?;
        if back != sha || n != size {
            let _ = store.delete(key).await;
            return Err(StepError::environment(format!(
                "the copy {} reads back as {n} bytes with sha256 {back}, not {size} bytes with {sha}: it was removed",
                store.url_of(key)
            )));
        }
        None
    };
    if let Some(m) = manifest {
        if let Err(e) = store.put_new(&crate::backup::layout::manifest_key(key), m.to_vec()).await {
            let _ = store.delete(key).await;
            return Err(StepError::environment(format!("writing the copy's manifest: {e}")));
        }
    }
    Ok(Copied::Now { sha, size, checked: archived })
}

/// What `to_store` copies: the file, and its manifest when it has one.
#[derive(Clone, Copy)]
struct Source<'a> {
    from: Origin<'a>,
    manifest: Option<&'a [u8]>,
}

/// The backup copied, in its store: read once, as a stream of the version `head` saw (hashed
/// as it is copied; only hashed when the destination has a file under its name already), and
/// held to what `head` saw and to its manifest.
#[derive(Clone, Copy)]
struct Origin<'a> {
    store: &'a dyn Store,
    key: &'a str,
    version: Option<&'a str>,
    size: u64,
    /// How it is shown.
    shown: &'a str,
    /// Its manifest, when it has one that reads.
    recorded: Option<&'a crate::backup::Manifest>,
}

impl Origin<'_> {
    async fn open(&self) -> Result<Box<dyn Read + Send>, StepError> {
        self.store.open(self.key, Some(0..self.size), self.version).await.map_err(StepError::environment)
    }

    /// What was read (`sha`, `size`) held to its manifest and to the size `head` saw.
    fn judge(&self, sha: &str, size: u64) -> Result<(), StepError> {
        if let Some(m) = self.recorded.filter(|m| m.sha256 != sha || m.sizes.stored != size) {
            return Err(StepError::failed(format!(
                "{} does not match its manifest (sha256 {sha}, {size} bytes; the manifest says {}, {} bytes): refusing to copy a damaged backup",
                self.shown, m.sha256, m.sizes.stored
            )));
        }
        if size != self.size {
            return Err(StepError::environment(format!(
                "reading {}: {size} bytes were read, but the store said {} bytes: it changed while it was read",
                self.shown, self.size
            )));
        }
        Ok(())
    }
}

/// What `to_store` did, with the sha256 and size the source read as.
enum Copied {
    /// The same copy was already there.
    Already { sha: String, size: u64 },
    /// Copied now; for an archive class, the line saying how it was checked instead of read
    /// back.
    Now { sha: String, size: u64, checked: Option<String> },
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SyncWith {
    /// where the backups are: a directory or s3://, gs://, az:// URL
    #[field(ty = "path")]
    storage: String,
    /// the destination storage: a directory or s3://, gs://, az:// URL
    #[field(ty = "path")]
    to: String,
    /// only this database's backups (default, or empty: every database's, and other tools'
    /// files found in the folder)
    #[serde(default)]
    database: Option<String>,
    /// other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz`: the files
    /// copied besides pgdrill's own, as backup.latest and prune read them (default: the
    /// classic schemes)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
    /// S3 Object Lock retention asked for the copies (the offsite runbook's
    /// `offsite_retain`): not set by a sync yet, so a value is refused rather than ignored
    #[serde(default, deserialize_with = "super::de::opt_text")]
    retain: Option<String>,
}

impl With for SyncWith {
    fn check(&self) -> Result<(), WithError> {
        if self.to.trim().is_empty() {
            return Err(WithError::new("to", "no destination: give a directory or an object store URL (s3://...)"));
        }
        // Copies that would look kept while nothing locks them: refused before anything moves.
        if self.retain.as_deref().is_some_and(|r| !r.trim().is_empty() && !crate::template::is_template(r)) {
            return Err(WithError::new(
                "retain",
                "a sync does not set Object Lock retention on what it copies: copy the newest backup with backup.copy (offsite `copy=latest`), which locks it, or leave the retention empty",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SyncOutputs {
    /// backups copied by this run
    copied: u64,
    /// backups already at the destination (copied by an earlier run)
    present: u64,
    /// bytes copied by this run
    bytes: u64,
}

/// Copy every backup of a location (or of one database) that the destination does not have yet, each checked as
/// backup.copy checks one; run again to resume.
#[step(name = "backup.sync", report_log)]
impl CopyAll {
    async fn run(ctx: StepCtx, w: SyncWith) -> Result<SyncOutputs, StepError> {
        let root = ctx.view(&*ctx.store(&w.storage)?).await?;
        let database = w.database.as_deref().filter(|d| !d.is_empty());
        let pattern = super::backup::name_pattern(w.name_pattern.as_deref())?;
        let entries = crate::backup::layout::LocalStore::new(&root)
            .list_with(database, pattern.as_ref())
            .map_err(|e| StepError::environment(format!("cannot list {}: {e}", root.shown())))?;
        let to = ctx.store(&w.to)?;
        let mut out = SyncOutputs::default();
        let mut failed = Vec::new();
        // Newest first: a run stopped half-way has put the most recent ones offsite.
        for e in &entries {
            if root.is_dir(&e.path) {
                ctx.log(format!("{}: a directory dump, left out: copy it as a tar", e.name));
                continue;
            }
            // The folder's layout is kept: `app/x.dump.pgdrill`, `db_20261201.sql.gz`.
            let Some(rel) = e.path.strip_prefix(root.root()).ok().and_then(|r| r.to_str()).map(str::to_string) else {
                continue;
            };
            match copy_one(&ctx, &e.path.display().to_string(), &*to, None, Some(rel)).await {
                Ok(c) if c.copied => {
                    out.copied += 1;
                    out.bytes += c.size;
                }
                Ok(_) => out.present += 1,
                Err(err) => failed.push(format!("{}: {}", e.name, err.message())),
            }
        }
        ctx.log(format!(
            "{} copied ({}), {} already at {}, {} failed",
            out.copied,
            crate::util::human_bytes(out.bytes),
            out.present,
            to.url(),
            failed.len()
        ));
        if !failed.is_empty() {
            return Err(StepError::failed(format!(
                "{} of {} backups were not copied (run again to copy them: those already there are kept): {}",
                failed.len(),
                entries.len(),
                failed.join("; ")
            )));
        }
        Ok(out)
    }
}
