//! Base backups: `pg_basebackup` of a whole cluster (tar format, with PostgreSQL's SHA-256
//! backup manifest) streamed through pgdrill's archive writer (zstd, AES-256-GCM) into any
//! store, with a manifest of pgdrill's own bound to the archive by the key like a dump's;
//! their listing; and `materialize`, which puts one back into an empty data directory (what a
//! point-in-time recovery starts from).
//!
//! Layout: `.cluster/<system identifier>/base/<UTC stamp>.base.tar.pgdrill` with
//! `<same>.manifest.json` beside it (the WAL archive is `.cluster/<system>/wal/`, see `wal`).
//! Streamed: `pg_basebackup -D - -Ft` writes one tar to stdout, which goes through the
//! pipeline to the store's writer and appears under its key only when whole. A cluster with
//! extra tablespaces cannot be written to stdout; that is refused with the reason (see
//! `create`).
//!
//! What this module must not do: read the WAL archive (the caller checks continuity with
//! `wal::check`, handing it the LSNs recorded here).

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::archive::{self, Codec, KeySource, Sizes, WriteOptions};
use crate::error::{Class, Failure};
use crate::storage::{Meta, Store};

pub const BASE_SCHEMA: &str = "pgdrill.base/1";
/// The top of pgdrill's physical tree (the same as `wal::ROOT`).
pub const ROOT: &str = ".cluster";
const EXT: &str = "base.tar.pgdrill";

/// The key prefix of a system's base backups.
pub fn base_prefix(system: u64) -> String {
    format!("{ROOT}/{system}/base/")
}

/// A tablespace other than the two built-in ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    pub oid: u32,
    pub name: String,
    pub location: String,
}

/// What is recorded beside every base backup. Never key material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseManifest {
    pub schema: String,
    pub kind: String,
    pub pgdrill_version: String,
    /// As text: JSON numbers lose digits past 2^53 in many readers.
    pub system_identifier: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub server_version: String,
    pub server_major: u32,
    pub pg_basebackup_version: String,
    pub wal_segment_size: u64,
    /// `fetch`: the WAL from start to stop is inside (restorable alone); `none`: it is in the
    /// WAL archive only.
    pub wal_method: String,
    pub tablespaces: Vec<Tablespace>,
    /// `tars`: a tar of pg_basebackup's tars (`base.tar`, one `<oid>.tar` per tablespace,
    /// `backup_manifest`), written when the cluster has tablespaces; absent: one tar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layout: Option<String>,
    /// Files in the tar (PostgreSQL's backup_manifest lists them with their SHA-256).
    pub files: u64,
    /// SHA-256 of PostgreSQL's own backup_manifest inside the tar.
    pub backup_manifest_sha256: String,
    /// How the stored object was written, and when (read as the manifest's own fields).
    #[serde(flatten)]
    pub stored: super::Stored,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<super::ManifestAuth>,
    /// The schema of the database the backup connected to, read before pg_basebackup started
    /// and again after it ended, kept only when both agree (no DDL ran in between): the
    /// ground truth for the schema of a recovery to the backup's end (`immediate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_schema: Option<DatabaseSchema>,
    /// The head of the run's signed evidence log when the base backup was made, as a dump's
    /// manifest carries it (`Manifest::evidence`): inside the MAC of an encrypted base
    /// backup; an unencrypted one has no MAC, so its anchor is plain data anyone who can
    /// write the storage can change (said where it is read). Absent without evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<super::EvidenceHead>,
}

/// A database's schema fingerprint (`pg::fingerprint`'s schema part).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSchema {
    pub database: String,
    pub schema_hash: String,
    pub schema: std::collections::BTreeMap<String, Vec<String>>,
}

/// The schema of the database `c` is connected to, in one read-only snapshot.
async fn database_schema(c: &tokio_postgres::Client, database: &str) -> Result<DatabaseSchema, Failure> {
    let env = |e: tokio_postgres::Error| Failure::environment(crate::pg::describe(&e));
    c.batch_execute("begin isolation level repeatable read read only").await.map_err(env)?;
    let (schema_hash, schema) = crate::pg::fingerprint::compute_schema(c).await.map_err(env)?;
    c.batch_execute("commit").await.map_err(env)?;
    Ok(DatabaseSchema { database: database.to_string(), schema_hash, schema })
}

impl std::ops::Deref for BaseManifest {
    type Target = super::Stored;
    fn deref(&self) -> &super::Stored {
        &self.stored
    }
}

impl std::ops::DerefMut for BaseManifest {
    fn deref_mut(&mut self) -> &mut super::Stored {
        &mut self.stored
    }
}

impl BaseManifest {
    pub fn system(&self) -> Option<u64> {
        self.system_identifier.parse().ok()
    }
}

/// Options for `create`.
#[derive(Debug, Clone)]
pub struct BaseOptions {
    pub url: String,
    /// Where it goes (a directory, s3://, gs://, az://), opened by the caller: the run that
    /// owns the store aborts its upload if the run is stopped.
    pub store: Arc<dyn Store>,
    pub key: Option<KeySource>,
    pub level: i32,
    pub threads: u32,
    /// `fetch` (default) or `none`.
    pub wal_method: String,
    /// `fast` (default: an immediate checkpoint) or `spread`.
    pub checkpoint: String,
    pub pg_basebackup: Option<PathBuf>,
    /// Keep the archive and its manifest from deletion (S3 Object Lock), as `backup.create`
    /// does; a store that cannot is refused before pg_basebackup starts.
    pub retention: Option<super::Retention>,
    /// The run's evidence log head, kept in the manifest (`BaseManifest::evidence`).
    pub evidence: Option<super::EvidenceHead>,
}

/// A base backup written.
#[derive(Debug, Clone)]
pub struct BaseCreated {
    pub key: String,
    pub url: String,
    pub manifest: BaseManifest,
}

mod tarscan;

/// What the tar stream held (`tarscan`).
#[derive(Debug, Default)]
struct TarSeen {
    files: u64,
    backup_manifest: Option<Vec<u8>>,
    backup_label: Option<String>,
    error: Option<String>,
}

/// Hands every byte it reads to the tar scanner on its way: the stream is looked at where it
/// already is, never copied for a second reader.
struct Scanned<'a, R> {
    inner: R,
    scan: &'a mut tarscan::TarScan,
}

impl<R: Read> Read for Scanned<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.feed(&buf[..n]);
        Ok(n)
    }
}

/// How much of pg_basebackup's stream is taken per read: a BufReader this size makes
/// `io::copy` read through it instead of its 8 KiB stack buffer (the profile of the bench's
/// backup: 44,000 reads of 8 KiB, each a wake-up of one side of the pipe).
const STREAM_READ: usize = 1 << 20;

/// The tar files pg_basebackup wrote into a directory (`base.tar`, `<oid>.tar`,
/// `backup_manifest`), each read once.
fn seen_on_disk(dir: &Path) -> TarSeen {
    let mut seen = TarSeen { backup_manifest: std::fs::read(dir.join("backup_manifest")).ok(), ..Default::default() };
    let Ok(rd) = std::fs::read_dir(dir) else {
        seen.error = Some(format!("cannot read {}", dir.display()));
        return seen;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".tar") {
            continue;
        }
        let mut scan = tarscan::TarScan::default();
        let read = std::fs::File::open(e.path()).and_then(|f| {
            let mut r = std::io::BufReader::with_capacity(STREAM_READ, Scanned { inner: f, scan: &mut scan });
            std::io::copy(&mut r, &mut std::io::sink())
        });
        let inner = match read {
            Ok(_) => scan.finish(),
            Err(err) => TarSeen { error: Some(err.to_string()), ..Default::default() },
        };
        seen.files += inner.files;
        if name == "base.tar" {
            seen.backup_label = inner.backup_label;
        }
        seen.error = seen.error.or(inner.error);
    }
    seen
}

/// The staged tars as one tar through the archive pipeline (the tar writer and the archive
/// writer meet at a pipe: memory stays flat).
fn tars_stream<W: Write>(dir: &Path, out: W, wopts: &WriteOptions) -> std::io::Result<(W, Sizes)> {
    let dir = dir.to_path_buf();
    super::piped_tar(out, wopts, move |b| {
        let mut names: Vec<String> =
            std::fs::read_dir(&dir)?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        for n in names {
            b.append_path_with_name(dir.join(&n), &n)?;
        }
        Ok(())
    })
}

/// The WAL range PostgreSQL's backup_manifest records.
fn wal_range(manifest: &[u8]) -> Result<(u32, String, String), String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).map_err(|e| format!("unreadable: {e}"))?;
    let r = v.get("WAL-Ranges").and_then(|r| r.as_array()).and_then(|r| r.last()).ok_or("it has no WAL-Ranges")?;
    let tli = r.get("Timeline").and_then(|t| t.as_u64()).ok_or("no Timeline")? as u32;
    let start = r.get("Start-LSN").and_then(|t| t.as_str()).ok_or("no Start-LSN")?.to_string();
    let end = r.get("End-LSN").and_then(|t| t.as_str()).ok_or("no End-LSN")?.to_string();
    Ok((tli, start, end))
}

/// A task that is stopped when its handle is dropped (an error or a stopped step returns
/// before it is awaited).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Kills a child (by pid) when dropped armed.
struct KillOnDrop(Option<u32>);

impl KillOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// Take a base backup of the server at `opts.url` into `opts.storage`.
pub async fn create(opts: BaseOptions, log: &(dyn Fn(String) + Send + Sync)) -> Result<BaseCreated, Failure> {
    let started_at = OffsetDateTime::now_utc();
    let env_err = |e: tokio_postgres::Error| Failure::environment(crate::pg::describe(&e));
    crate::pg::config(&opts.url).map_err(|e| e.in_class(Class::Invalid))?;
    if !matches!(opts.wal_method.as_str(), "fetch" | "none") {
        return Err(Failure::invalid(format!("wal `{}`: use fetch or none", opts.wal_method)));
    }
    if !matches!(opts.checkpoint.as_str(), "fast" | "spread") {
        return Err(Failure::invalid(format!("checkpoint `{}`: use fast or spread", opts.checkpoint)));
    }
    // A retention the store cannot keep is refused before the server is asked for anything.
    let locked = match &opts.retention {
        Some(r) => Some((r.open().await?, r)),
        None => None,
    };
    // One connection for everything this asks the server (its identity, its tablespaces, the
    // schema before and after): each connection costs a TLS context (the system's CA file
    // parsed again) and a backend.
    let client = crate::pg::connect(&opts.url).await?;
    let (row, spaces) = tokio::try_join!(
        client.query_one(
            "select current_setting('server_version'), current_setting('server_version_num')::int, \
             (select system_identifier::text from pg_control_system()), current_database(), \
             (select setting::bigint * case unit when 'B' then 1 when 'kB' then 1024 when '8kB' then 8192 when 'MB' then 1048576 else 1 end \
                from pg_settings where name = 'wal_segment_size')",
            &[],
        ),
        client.query(
            "select oid::int8, spcname::text, pg_tablespace_location(oid) from pg_tablespace \
             where spcname not in ('pg_default', 'pg_global') order by oid",
            &[],
        )
    )
    .map_err(env_err)?;
    let server_version: String = row.get(0);
    let server_major = (row.get::<_, i32>(1) / 10000) as u32;
    let system: String = row.get(2);
    let database: String = row.get(3);
    let seg_size = row.get::<_, i64>(4) as u64;
    let tablespaces: Vec<Tablespace> = spaces
        .iter()
        .map(|r| Tablespace { oid: r.get::<_, i64>(0) as u32, name: r.get(1), location: r.get(2) })
        .collect();
    // Read before the backup starts, compared with a second read after it ends: see
    // `BaseManifest::database_schema`. A failure to read it costs the ground truth only.
    let schema_before = database_schema(&client, &database).await.ok();
    // With tablespaces pg_basebackup writes one tar per tablespace, and only into a
    // directory: they are staged (a private 0700 directory, removed whatever happens) and
    // streamed as one tar of tars. Without, its one tar streams from stdout, never on disk.
    let staged = if tablespaces.is_empty() { None } else { Some(super::Staged::new(&std::env::temp_dir(), ".base")?) };
    let (tool, tool_version, image) =
        match crate::pg::native::find_tool("pg_basebackup", opts.pg_basebackup.as_deref(), server_major) {
            Ok((p, v, _)) => (p, v, None),
            Err(local) if local.class == Class::Environment && opts.pg_basebackup.is_none() => {
                let (image, v) = super::tool_from_image("pg_basebackup", server_major, local)?;
                (PathBuf::from("pg_basebackup"), format!("{v} (from the image {image})"), Some(image))
            }
            Err(e) => return Err(e),
        };
    let key = match &opts.key {
        Some(k) => Some(k.derive_new().map_err(Failure::invalid)?),
        None => None,
    };
    let store = opts.store.clone();
    store.probe().await.map_err(Failure::environment)?;
    let prefix = base_prefix(system.parse().unwrap_or_default());
    let name_stamp = super::stamp(started_at);
    let mut n = 0;
    let object = loop {
        let k = if n == 0 { format!("{prefix}{name_stamp}.{EXT}") } else { format!("{prefix}{name_stamp}-{n}.{EXT}") };
        if store.head(&k).await.map_err(Failure::environment)?.is_none()
            && store.head(&super::layout::manifest_key(&k)).await.map_err(Failure::environment)?.is_none()
        {
            break k;
        }
        n += 1;
    };
    log(format!(
        "{tool_version}; server {server_version}, system {system}; streaming a base backup (wal {}, checkpoint {}) to {}",
        opts.wal_method,
        opts.checkpoint,
        store.url_of(&object)
    ));

    if staged.is_some() && image.is_some() {
        return Err(Failure::invalid(format!(
            "the cluster has tablespaces, so pg_basebackup must write files here, and PostgreSQL {server_major}'s pg_basebackup is only in its image: install the PostgreSQL {server_major} client tools"
        )));
    }
    let mut cmd = crate::child::command(&tool);
    match &staged {
        None => cmd.args(["-D", "-"]),
        Some(st) => cmd.arg("-D").arg(&st.0),
    };
    cmd.args(["-Ft", "--manifest-checksums=SHA256", "--no-password"])
        .arg(format!("--wal-method={}", opts.wal_method))
        .arg(format!("--checkpoint={}", opts.checkpoint))
        .arg(format!("--label=pgdrill {name_stamp}"))
        .env("LC_ALL", "C");
    // Connection through the environment, never argv (visible in ps).
    crate::pg::libpq_env(&mut cmd, &opts.url, &database);
    let mut _env_file = None;
    if let Some(image) = &image {
        let (c, f) = crate::pg::image_tools::in_image(&cmd, image, &[]).map_err(Failure::environment)?;
        cmd = c;
        _env_file = Some(f);
    }
    cmd.stdin(Stdio::null())
        .stdout(if staged.is_some() { Stdio::null() } else { Stdio::piped() })
        .stderr(Stdio::piped());
    let mut child = crate::child::spawn(&mut cmd)
        .map_err(|e| Failure::environment(format!("cannot run {}: {e}", tool.display())))?;
    let stdout = child.stdout.take();
    let stderr = super::stderr_of(&mut child);
    let stage_dir = staged.as_ref().map(|s| s.0.clone());
    // A step stopped (timeout, signal) drops this future: pg_basebackup is killed with it,
    // rather than left running to its end (its writer then publishes nothing).
    let guard = KillOnDrop(Some(child.id()));
    let writer = store.create(&object).await.map_err(Failure::environment)?;
    let mac_key = key.clone();
    let wopts = WriteOptions { codec: Codec::Zstd, level: opts.level, threads: opts.threads, key };
    let piped = tokio::task::spawn_blocking(move || {
        let out = archive::HashWriter::new(super::HeadTee {
            inner: BufWriter::with_capacity(1 << 20, writer),
            head: Vec::new(),
        });
        match (stdout, stage_dir) {
            (Some(stdout), _) => {
                // A larger pipe lets pg_basebackup write on while the compressor works, and
                // each read take more at once (fewer wake-ups of either side). Linux allows
                // up to /proc/sys/fs/pipe-max-size (1 MiB by default); where it refuses, the
                // default 64 KiB pipe works the same, only more often.
                let _ = nix::fcntl::fcntl(&stdout, nix::fcntl::FcntlArg::F_SETPIPE_SZ(STREAM_READ as i32));
                let mut scan = tarscan::TarScan::default();
                let written = archive::write(
                    std::io::BufReader::with_capacity(STREAM_READ, Scanned { inner: stdout, scan: &mut scan }),
                    out,
                    &wopts,
                );
                let status = child.wait().ok();
                (written, scan.finish(), status, child)
            }
            (None, Some(dir)) => {
                let status = child.wait().ok();
                if !status.is_some_and(|s| s.success()) {
                    return (Err(std::io::Error::other("pg_basebackup failed")), TarSeen::default(), status, child);
                }
                let seen = seen_on_disk(&dir);
                let written = tars_stream(&dir, out, &wopts);
                (written, seen, status, child)
            }
            (None, None) => {
                (Err(std::io::Error::other("pg_basebackup has no output")), TarSeen::default(), None, child)
            }
        }
    })
    .await
    .map_err(|e| Failure::environment(format!("base backup pipeline: {e}")))?;
    let (written, seen, status, _child) = piped;
    guard.disarm();
    drop(staged);
    let errors = stderr.join().unwrap_or_default();
    let ok = status.is_some_and(|s| s.success());
    let written = match written {
        Ok(w) if ok => w,
        Ok(_) | Err(_) => {
            let why = match (&written, ok) {
                (Err(e), true) => format!("writing the base backup: {e}"),
                _ => format!("pg_basebackup failed: {}", super::stderr_tail(&errors, 5)),
            };
            // The writer is dropped unpublished: nothing appears under the key.
            return Err(Failure::environment(why));
        }
    };
    let (hw, sizes) = written;
    let (capture, sha256, _) = hw.finish();
    let head = capture.head;
    let writer = capture
        .inner
        .into_inner()
        .map_err(|e| Failure::environment(format!("writing the base backup: {}", e.error())))?;
    if let Some(e) = &seen.error {
        return Err(Failure::failed(format!("pg_basebackup's output is not a readable tar ({e}): nothing was kept")));
    }
    let pg_manifest = seen.backup_manifest.ok_or_else(|| {
        Failure::failed(
            "pg_basebackup's tar holds no backup_manifest (PostgreSQL 13 or later writes one): nothing was kept",
        )
    })?;
    if seen.backup_label.is_none() {
        return Err(Failure::failed("pg_basebackup's tar holds no backup_label: nothing was kept"));
    }
    let (timeline, start_lsn, stop_lsn) = wal_range(&pg_manifest)
        .map_err(|m| Failure::failed(format!("the tar's backup_manifest: {m}: nothing was kept")))?;
    // The schema is read again now that pg_basebackup has ended, while the backup is
    // published and checked (an fsync here, a read-back from an object store): nothing of one
    // waits for the other.
    let schema_after = AbortOnDrop(tokio::spawn({
        let (url, database) = (opts.url.clone(), database.clone());
        async move {
            match database_schema(&client, &database).await {
                Ok(s) => Some(s),
                // The server may have closed a connection idle through the whole backup
                // (idle_session_timeout): one new connection.
                Err(_) => match crate::pg::connect(&url).await {
                    Ok(c) => database_schema(&c, &database).await.ok(),
                    Err(_) => None,
                },
            }
        }
    }));
    let published = writer.publish_new(&[]).await.map_err(Failure::environment)?;
    if published.size != sizes.stored {
        let _ = store.delete(&object).await;
        return Err(Failure::environment(format!(
            "{} took {} bytes but {} were written: removed",
            store.url_of(&object),
            published.size,
            sizes.stored
        )));
    }
    // What the store holds is what was written, before the manifest makes the backup visible
    // (a store that corrupts or truncates is caught here, not at the recovery that needs
    // it). An object store reads the object back and hashes it (or, in an archive class
    // nothing reads back, compares its metadata). A local file is not read back: the sha256
    // is of exactly the bytes handed to it, in order, every write(2) took all of its bytes
    // (a short or failed one is an error, and the count the file took is the one compared
    // above), and it was fsynced before the rename that gives it its name; reading it back
    // would read the page cache those writes filled, which proves nothing the fsync did not.
    // What the disk does to it later is caught by the sha256 in its manifest, which every
    // recovery checks.
    match store.check_published(&published, sizes.stored, &sha256).await {
        Ok(Some(line)) => log(line),
        Ok(None) => log(format!(
            "published {} ({}): hashed as it was written and fsynced before its rename, sha256 {sha256}",
            store.url_of(&object),
            crate::util::human_bytes(sizes.stored)
        )),
        // Left without its manifest: not a base backup (listings read manifests).
        Err(crate::storage::Unproven::Unread(e)) => return Err(Failure::environment(e)),
        Err(crate::storage::Unproven::Differs(e)) => {
            let _ = store.delete(&object).await;
            return Err(Failure::environment(format!("{e}: removed")));
        }
    }
    // Locked before its manifest makes it a base backup: one that cannot be locked is
    // removed (it has no manifest yet), never left looking kept.
    let retained = match &locked {
        Some((l, r)) => {
            match r.retain_backup(l, &object, published.etag.as_deref(), &store.url_of(&object), log).await {
                Ok(until) => Some((l, *r, until)),
                Err(e) => {
                    let _ = store.delete(&object).await;
                    return Err(e.into_failure());
                }
            }
        }
        None => None,
    };
    let header = archive::read_header(&mut std::io::Cursor::new(&head)).ok().map(|(h, _)| h);
    // The first read is kept: sequences only move forward, and the recovered copy's must not
    // stand behind what it records (the second read may be later than the backup's end).
    let schema_after = schema_after.join().await.flatten();
    let database_schema = match (schema_before, schema_after) {
        (Some(b), Some(a)) if crate::pg::fingerprint::schema_differences(&b.schema, &a.schema).is_empty() => Some(b),
        (Some(_), Some(_)) => {
            log("the schema changed while the backup ran (DDL): no schema is recorded to prove a recovery against"
                .into());
            None
        }
        _ => None,
    };
    let mut manifest = BaseManifest {
        schema: BASE_SCHEMA.into(),
        kind: "base".into(),
        pgdrill_version: env!("CARGO_PKG_VERSION").into(),
        system_identifier: system.clone(),
        timeline,
        start_lsn,
        stop_lsn,
        server_version,
        server_major,
        pg_basebackup_version: tool_version,
        wal_segment_size: seg_size,
        wal_method: opts.wal_method.clone(),
        layout: (!tablespaces.is_empty()).then(|| "tars".to_string()),
        tablespaces,
        files: seen.files,
        backup_manifest_sha256: archive::hex(&<sha2::Sha256 as sha2::Digest>::digest(&pg_manifest)),
        stored: super::Stored {
            codec: Codec::Zstd,
            level: opts.level,
            cipher: if mac_key.is_some() { "aes-256-gcm".into() } else { "none".into() },
            kdf: header.as_ref().and_then(|h| h.kdf.clone()),
            sizes,
            sha256,
            started_at,
            finished_at: OffsetDateTime::now_utc(),
        },
        authentication: None,
        database_schema,
        evidence: opts.evidence.clone(),
    };
    if let (Some(k), Some(prefix)) = (&mac_key, header.as_ref().and_then(|h| h.nonce_prefix.clone())) {
        let value = serde_json::to_value(&manifest).map_err(|e| Failure::environment(e.to_string()))?;
        manifest.authentication = Some(super::ManifestAuth {
            alg: archive::MANIFEST_MAC.into(),
            mac: k.manifest_mac(&prefix, &super::manifest_bytes(value)),
        });
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Failure::environment(e.to_string()))?;
    if let Err(e) = store.put_new(&super::layout::manifest_key(&object), json).await {
        // A base backup without its manifest cannot be trusted: do not leave it looking whole.
        let _ = store.delete(&object).await;
        return Err(Failure::environment(format!("writing the manifest: {e}")));
    }
    if let Some((l, r, until)) = retained {
        let key = super::layout::manifest_key(&object);
        r.retain_manifest(l, &key, &until, &store.url_of(&object), &store.url_of(&key), log).await?;
    }
    log(format!(
        "wrote {} ({}, {} files, timeline {}, WAL {}..{}; {})",
        store.url_of(&object),
        crate::util::human_bytes(manifest.sizes.stored),
        manifest.files,
        manifest.timeline,
        manifest.start_lsn,
        manifest.stop_lsn,
        if manifest.cipher == "none" { "NOT encrypted" } else { "encrypted" }
    ));
    Ok(BaseCreated { url: store.url_of(&object), key: object, manifest })
}

/// A base backup found in a store.
#[derive(Debug, Clone, Serialize)]
pub struct ListedBase {
    pub key: String,
    pub url: String,
    pub manifest: BaseManifest,
}

/// Every base backup in `store` (of `system` when given), newest first. A manifest that
/// does not parse is an error naming it (state beside backups fails closed).
pub async fn list(store: &dyn Store, system: Option<u64>) -> Result<Vec<ListedBase>, Failure> {
    let prefix = match system {
        Some(s) => base_prefix(s),
        None => format!("{ROOT}/"),
    };
    let listed = store.list(&prefix).await.map_err(Failure::environment)?;
    list_from(store, &listed, system).await
}

/// `list` over objects already listed (a WAL `Tree`'s, which lists `.cluster/` once for a
/// whole command): only the manifests are read.
pub async fn list_from(store: &dyn Store, listed: &[Meta], system: Option<u64>) -> Result<Vec<ListedBase>, Failure> {
    let prefix = match system {
        Some(s) => base_prefix(s),
        None => format!("{ROOT}/"),
    };
    let mut out = Vec::new();
    for m in listed.iter().filter(|m| m.key.starts_with(&prefix)) {
        let Some(object) = m.key.strip_suffix(".manifest.json") else { continue };
        if !object.ends_with(EXT) || !object.contains("/base/") {
            continue;
        }
        let bytes = store.read(&m.key).await.map_err(Failure::environment)?;
        let manifest: BaseManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Failure::failed(format!("{}: unreadable manifest: {e}", store.url_of(&m.key))))?;
        out.push(ListedBase { key: object.to_string(), url: store.url_of(object), manifest });
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.manifest.finished_at));
    Ok(out)
}

/// Read `object`'s manifest and prove it belongs to the archive under `key`: the MAC over
/// its bytes and the archive's nonce prefix must hold. Without a key, or for an unencrypted
/// base backup, it is returned with `false` (unauthenticated).
pub async fn read_manifest(
    store: &dyn Store,
    object: &str,
    key: Option<&KeySource>,
) -> Result<(BaseManifest, bool), Failure> {
    let mk = super::layout::manifest_key(object);
    let failed = |m: String| Failure::failed(format!("{}: {m}", store.url_of(&mk)));
    let bytes = store.read(&mk).await.map_err(Failure::environment)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    let manifest: BaseManifest =
        serde_json::from_value(value.clone()).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    let head = {
        let mut r = store
            .open(object, Some(0..u64::from(archive::MAX_HEADER) + 64), None)
            .await
            .map_err(Failure::environment)?;
        let mut v = Vec::new();
        tokio::task::block_in_place(|| r.read_to_end(&mut v))
            .map_err(|e| Failure::environment(format!("reading {}: {e}", store.url_of(object))))?;
        v
    };
    let (header, _) = archive::read_header(&mut std::io::Cursor::new(head))
        .map_err(|e| Failure::from(e).context(store.url_of(object)))?;
    if header.cipher != manifest.cipher {
        return Err(failed(format!(
            "says cipher `{}` but the backup's is `{}`: the manifest was changed",
            manifest.cipher, header.cipher
        )));
    }
    let Some(key) = key.filter(|_| header.cipher != "none") else { return Ok((manifest, false)) };
    let kdf = header.kdf.clone().ok_or_else(|| failed("its backup's header names no key derivation".into()))?;
    let k = key.derive_for(&kdf).map_err(|e| failed(format!("its backup: {e}")))?;
    if header.key_check.as_deref() != Some(k.check().as_str()) {
        return Err(Failure::from(archive::ArchiveError::WrongKey).context(store.url_of(object)));
    }
    let expected = k.manifest_mac(header.nonce_prefix.as_deref().unwrap_or_default(), &super::manifest_bytes(value));
    match &manifest.authentication {
        Some(a) if a.alg == archive::MANIFEST_MAC && archive::crypto::same_mac(&a.mac, &expected) => {
            Ok((manifest, true))
        }
        _ => Err(failed(
            "fails authentication: changed after the backup was written, or another backup's; nothing in it is used"
                .into(),
        )),
    }
}

/// What `materialize` put back.
#[derive(Debug, Clone)]
pub struct Materialized {
    pub manifest: BaseManifest,
    pub files: u64,
    pub bytes: u64,
    /// Each tablespace: its OID and where it now is.
    pub tablespaces: Vec<(u32, PathBuf)>,
    /// `pg_verifybackup`'s verdict on the files against PostgreSQL's backup_manifest, or why
    /// it did not run.
    pub verified: Result<String, String>,
}

/// Decrypt and extract the base backup `object` into `dest`, an empty or absent directory
/// (made with mode 0700): the data directory a recovery starts from. Its manifest is
/// authenticated first when a key is given; every byte of the archive is authenticated as it
/// is read; the stored object's SHA-256 must be the manifest's; then `pg_verifybackup` (of
/// the backup's major, when it is installed) checks every file against PostgreSQL's own
/// manifest. On any failure what was extracted is removed.
pub async fn materialize(
    store: Arc<dyn Store>,
    object: &str,
    key: Option<&KeySource>,
    dest: &Path,
    tablespaces_dir: Option<&Path>,
) -> Result<Materialized, Failure> {
    materialize_with(store, object, key, dest, tablespaces_dir, &crate::child::ToEnd).await
}

/// [`materialize`], its tool calls (pg_verifybackup, which reads every file of the backup:
/// minutes on a large one, and the `--version` probes that find it) run through `calls`: a
/// caller that holds the run's interrupt (a physical source's) has them ended at once by
/// Ctrl-C or the step's timeout, which then waited for them. A call so ended is the
/// environment's failure saying so, never pg_verifybackup's verdict nor "not run".
pub async fn materialize_with(
    store: Arc<dyn Store>,
    object: &str,
    key: Option<&KeySource>,
    dest: &Path,
    tablespaces_dir: Option<&Path>,
    calls: &dyn crate::child::Calls,
) -> Result<Materialized, Failure> {
    let (manifest, _) = read_manifest(store.as_ref(), object, key).await?;
    match std::fs::read_dir(dest) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Failure::invalid(format!(
                    "{} is not empty: a base backup goes into an empty directory",
                    dest.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dest)
                .map_err(|e| Failure::environment(format!("cannot create {}: {e}", dest.display())))?;
        }
        Err(e) => return Err(Failure::environment(format!("cannot read {}: {e}", dest.display()))),
    }
    let reader = store.open(object, None, None).await.map_err(Failure::environment)?;
    let key = key.cloned();
    let to = dest.to_path_buf();
    let expected_sha = manifest.sha256.clone();
    let shown = store.url_of(object);
    let tars = manifest.layout.as_deref() == Some("tars");
    let ts_dir = tablespaces_dir.map(Path::to_path_buf);
    if tars && ts_dir.is_none() {
        return Err(Failure::invalid(format!("{object} holds tablespaces: give a directory to put them in")));
    }
    let extracted = tokio::task::spawn_blocking(move || -> Result<Extracted, Failure> {
        let mut hashed = archive::HashReader::new(std::io::BufReader::with_capacity(1 << 20, reader));
        let (n, bytes, spaces) = {
            let (_, plain) = archive::open(&mut hashed, key.as_ref()).map_err(|e| Failure::from(e).context(&shown))?;
            let mut a = tar::Archive::new(plain);
            let mut n = 0u64;
            let mut bytes = 0u64;
            let mut spaces = Vec::new();
            let entries = a.entries().map_err(|e| extract_error(&shown, &e))?;
            for e in entries {
                let mut e = e.map_err(|e| extract_error(&shown, &e))?;
                let name = e.path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
                // A tar of tars: each inner tar goes where it belongs.
                let place = match (tars, name.strip_suffix(".tar")) {
                    (true, Some("base")) => Some(to.clone()),
                    (true, Some(oid)) => {
                        let oid: u32 = oid.parse().map_err(|_| {
                            Failure::failed(format!("{shown}: `{}` is no tablespace's tar", name.escape_debug()))
                        })?;
                        let d = ts_dir.as_deref().unwrap_or(&to).join(oid.to_string());
                        spaces.push((oid, d.clone()));
                        Some(d)
                    }
                    _ => None,
                };
                match place {
                    Some(d) => {
                        std::fs::create_dir_all(&d).map_err(|err| extract_error(&shown, &err))?;
                        let (k, b) = unpack_all(tar::Archive::new(&mut e), &d, &shown)?;
                        n += k;
                        bytes += b;
                    }
                    None => {
                        bytes += e.header().size().unwrap_or(0);
                        n += u64::from(e.header().entry_type().is_file());
                        // unpack_in refuses paths that would leave `to`.
                        e.set_preserve_permissions(true);
                        if !e.unpack_in(&to).map_err(|err| extract_error(&shown, &err))? {
                            return Err(Failure::failed(format!(
                                "{shown}: an entry would be written outside the data directory"
                            )));
                        }
                    }
                }
            }
            // The rest (tar padding, the last chunk) is read, so every byte is authenticated.
            let mut rest = a.into_inner();
            std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| extract_error(&shown, &e))?;
            (n, bytes, spaces)
        };
        if !spaces.is_empty() {
            // The server makes pg_tblspc's links from tablespace_map when recovery starts:
            // point it (and the links, which pg_verifybackup follows) at the new places, never
            // where the source cluster had them.
            // (The map is rewritten after pg_verifybackup, which checks it against the
            // manifest and follows the links.)
            let links = to.join("pg_tblspc");
            std::fs::create_dir_all(&links).map_err(|e| extract_error(&shown, &e))?;
            for (oid, p) in &spaces {
                let link = links.join(oid.to_string());
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(p, &link).map_err(|e| extract_error(&shown, &e))?;
            }
        }
        let (sha, _) = hashed.finish();
        if sha != expected_sha {
            return Err(Failure::failed(format!(
                "{shown}: the stored object's sha256 is {sha}, its manifest says {expected_sha}"
            )));
        }
        Ok((n, bytes, spaces))
    })
    .await
    .map_err(|e| Failure::environment(format!("extracting: {e}")))?;
    let (files, bytes, tablespaces) = match extracted {
        Ok(v) => v,
        Err(e) => {
            remove_contents(dest);
            return Err(e);
        }
    };
    if !dest.join("backup_manifest").is_file() || !dest.join("global/pg_control").is_file() {
        remove_contents(dest);
        return Err(Failure::failed(format!("{object}: extracted, but it holds no backup_manifest or pg_control")));
    }
    let verified = match verify_files(dest, manifest.server_major, manifest.wal_method == "fetch", calls) {
        Ok(v) => v,
        Err(stopped) => {
            remove_contents(dest);
            return Err(stopped);
        }
    };
    if let Err(why) = &verified {
        if why.starts_with("FAILED") {
            remove_contents(dest);
            return Err(Failure::failed(format!("{object}: pg_verifybackup: {why}")));
        }
    }
    if !tablespaces.is_empty() {
        let map: String = tablespaces.iter().map(|(oid, p)| format!("{oid} {}\n", p.display())).collect();
        let m = dest.join("tablespace_map");
        let _ = std::fs::remove_file(&m);
        if let Err(e) = std::fs::write(&m, map) {
            remove_contents(dest);
            return Err(Failure::environment(format!("writing {}: {e}", m.display())));
        }
    }
    Ok(Materialized { manifest, files, bytes, tablespaces, verified })
}

/// Every entry of an inner tar into `dir` (never outside it): files and bytes.
fn unpack_all<R: Read>(mut a: tar::Archive<R>, dir: &Path, shown: &str) -> Result<(u64, u64), Failure> {
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in a.entries().map_err(|e| extract_error(shown, &e))? {
        let mut e = e.map_err(|e| extract_error(shown, &e))?;
        bytes += e.header().size().unwrap_or(0);
        n += u64::from(e.header().entry_type().is_file());
        e.set_preserve_permissions(true);
        if !e.unpack_in(dir).map_err(|err| extract_error(shown, &err))? {
            return Err(Failure::failed(format!("{shown}: an entry would be written outside {}", dir.display())));
        }
    }
    Ok((n, bytes))
}

/// Files, bytes, and each tablespace's OID and new place.
type Extracted = (u64, u64, Vec<(u32, PathBuf)>);

fn extract_error(shown: &str, e: &std::io::Error) -> Failure {
    match archive::archive_error(e) {
        Some(a) => Failure::from(a.clone()).context(shown),
        None if super::is_environment(e) => Failure::environment(format!("{shown}: {e}")),
        None => Failure::failed(format!("{shown}: {e}")),
    }
}

fn remove_contents(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            let _ = if p.is_dir() && !p.is_symlink() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// `pg_verifybackup` (of `major` or newer) on an extracted base backup, its WAL parsed when
/// it is inside (`parse_wal`: `wal: fetch`; else it is in the archive only), it and the
/// probes that find it run through `calls`. Ok(Ok): what it said; Ok(Err("FAILED ...")) when
/// it found a difference, Ok(Err(other)) when it could not run here; Err when the caller's
/// run was interrupted during it (the call ended at once, said so).
pub(crate) fn verify_files(
    dest: &Path,
    major: u32,
    parse_wal: bool,
    calls: &dyn crate::child::Calls,
) -> Result<Result<String, String>, Failure> {
    let found = tokio::task::block_in_place(|| {
        crate::pg::native::find_tool_with("pg_verifybackup", None, major, &mut |cmd| {
            let program = Path::new(cmd.get_program()).to_path_buf();
            // A candidate that is not there is not started (under a guard, a process each).
            if program.is_absolute() && !program.is_file() {
                return Ok(None);
            }
            match calls.run(cmd, &format!("{} --version", program.display())) {
                Ok(out) => Ok(Some(out)),
                Err(e) if calls.interrupted() => Err(e),
                Err(_) => Ok(None),
            }
        })
    });
    let tool = match found {
        Ok((tool, _, _)) => tool,
        Err(e) if calls.interrupted() => return Err(e),
        Err(e) => return Ok(Err(format!("not run: {e}"))),
    };
    let mut cmd = crate::child::command(&tool);
    if !parse_wal {
        cmd.arg("--no-parse-wal");
    }
    cmd.arg("--quiet").arg(dest).env("LC_ALL", "C").stdin(Stdio::null());
    let out = match tokio::task::block_in_place(|| calls.run(&mut cmd, "pg_verifybackup")) {
        Ok(out) => out,
        Err(e) if calls.interrupted() => return Err(e),
        Err(e) => return Ok(Err(format!("not run: {e}"))),
    };
    Ok(if out.status.success() {
        Ok(format!("{} verified every file against the backup's manifest", tool.display()))
    } else {
        Err(format!("FAILED: {}", super::stderr_tail(&String::from_utf8_lossy(&out.stderr), 5)))
    })
}

#[cfg(test)]
mod tests {
    /// A base backup's manifest as pgdrill writes it (`to_vec_pretty`), every field set: base
    /// backups on disk carry this JSON, so it must read and write back byte for byte whatever
    /// its parts are declared as (issue 37: the fields every stored object's manifest has,
    /// declared once).
    const WRITTEN: &str = r#"{
  "schema": "pgdrill.base/1",
  "kind": "base",
  "pgdrill_version": "0.1.0",
  "system_identifier": "7312345678901234567",
  "timeline": 1,
  "start_lsn": "0/2000028",
  "stop_lsn": "0/2000100",
  "server_version": "17.2",
  "server_major": 17,
  "pg_basebackup_version": "17.2",
  "wal_segment_size": 16777216,
  "wal_method": "fetch",
  "tablespaces": [
    {
      "oid": 16390,
      "name": "fast",
      "location": "/srv/fast"
    }
  ],
  "layout": "tars",
  "files": 1234,
  "backup_manifest_sha256": "aa55",
  "codec": "zstd",
  "level": 3,
  "cipher": "aes-256-gcm",
  "kdf": {
    "alg": "raw"
  },
  "sizes": {
    "raw": 33554432,
    "compressed": 4194304,
    "stored": 4200000
  },
  "sha256": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
  "started_at": "2026-12-01T02:00:00Z",
  "finished_at": "2026-12-01T02:00:09.5Z",
  "authentication": {
    "alg": "hmac-sha256",
    "mac": "beef"
  },
  "database_schema": {
    "database": "shop",
    "schema_hash": "ab",
    "schema": {
      "tables": [
        "public.t r"
      ]
    }
  },
  "evidence": {
    "location": "/srv/evidence",
    "chain": "c0ffee",
    "sequence": 3,
    "record_sha256": "33"
  }
}"#;

    #[test]
    fn a_base_manifest_as_written_on_disk_reads_and_writes_back_byte_for_byte() {
        let m: super::BaseManifest = serde_json::from_str(WRITTEN).expect("a written manifest parses");
        assert_eq!(serde_json::to_string_pretty(&m).expect("json"), WRITTEN);
        assert_eq!(
            (m.sizes.stored, m.cipher.as_str(), m.system()),
            (4_200_000, "aes-256-gcm", Some(7312345678901234567))
        );
        // Without what is optional (one tar, no key derivation, no MAC, schema or evidence).
        let mut v: serde_json::Value = serde_json::from_str(WRITTEN).expect("json");
        for k in ["layout", "kdf", "authentication", "database_schema", "evidence"] {
            v.as_object_mut().expect("object").remove(k);
        }
        let m: super::BaseManifest = serde_json::from_value(v.clone()).expect("parses");
        assert!(m.kdf.is_none() && m.layout.is_none());
        assert_eq!(serde_json::to_value(&m).expect("json"), v, "written back without them");
    }
}
