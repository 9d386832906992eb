//! `backup.create`, `backup.check`, `backup.list`, `backup.latest`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::archive::{Codec, Envelope, KeySource};
use crate::backup::layout::LocalStore;
use crate::backup::{self, CreateOptions, Format, Manifest};
use crate::pg::fingerprint::Mode;
use crate::template::is_template;

fn key_of(k: &Option<String>) -> Option<KeySource> {
    k.as_deref().filter(|s| !s.is_empty()).map(KeySource::from_secret)
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct CreateWith {
    /// source (password from the URL, PGPASSWORD or ~/.pgpass)
    #[field(conninfo)]
    database_url: String,
    /// backup directory; files go to <storage>/<database>/ (the name encoded: `%XX` for
    /// anything but letters, digits, `_`, `-` and a `.` not first)
    #[field(ty = "path")]
    storage: String,
    /// pg_dump format (default custom); directory dumps with `jobs` in parallel
    #[serde(default = "custom")]
    #[field(ty = "custom|directory|plain")]
    format: String,
    /// default zstd
    #[serde(default = "zstd")]
    #[field(ty = "zstd|gzip|none")]
    compression: String,
    /// compression level (default 3)
    #[serde(default = "three", deserialize_with = "super::de::int")]
    level: i32,
    /// zstd threads (default 2)
    #[serde(default = "two", deserialize_with = "super::de::threads")]
    threads: u32,
    /// pg_dump -j for format directory (default 2)
    #[serde(default = "two", deserialize_with = "super::de::jobs")]
    jobs: u32,
    /// 64 hex digits, base64 of 32 bytes, or a passphrase (Argon2id); absent: not encrypted
    #[field(key)]
    key: Option<String>,
    /// true: a key is required; false: not encrypted even with a key (a warning in the log
    /// and reports); unset: encrypted when a key is given
    #[serde(default, deserialize_with = "super::de::opt_bool")]
    encrypt: Option<bool>,
    /// source fingerprint in the dump's snapshot (default full)
    #[serde(default = "full")]
    #[field(ty = "full|counts|off")]
    fingerprint: String,
    /// pg_dump to use (default: found and version-checked)
    #[field(ty = "path")]
    pg_dump: Option<String>,
    /// storage directory name (default: the database name)
    name: Option<String>,
    /// what wraps the compressed dump: `pgdrill` (default: pgdrill's own AES-256-GCM
    /// archive, the only one whose manifest is authenticated), or a team's own format their
    /// own commands read: `none` (`gunzip -t`, `zcat | psql`), `openssl` (`openssl enc -d
    /// -aes-256-cbc -pbkdf2`) or `gpg` (`gpg --decrypt`), encrypted with `key` as passphrase
    #[serde(default = "pgdrill")]
    #[field(ty = "pgdrill|none|openssl|gpg")]
    envelope: String,
    /// a team's own file name, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (UTC): the
    /// file goes straight into `storage` under it, with `<name>.manifest.json` beside it;
    /// needed with an envelope other than pgdrill
    name_pattern: Option<String>,
    /// keep the backup and its manifest from deletion this long (e.g. `30d`) with S3 Object
    /// Lock; a storage that cannot keep it (a bucket without Object Lock, a local directory,
    /// Azure) is refused before the dump; empty: no retention
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    retain: Option<std::time::Duration>,
    /// the Object Lock mode with `retain` (default governance: users allowed to bypass it may
    /// still remove the backup; compliance: no one can until the date)
    #[serde(default = "super::de::governance")]
    #[field(ty = "governance|compliance")]
    lock_mode: String,
}

fn pgdrill() -> String {
    "pgdrill".into()
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
        if !is_template(&self.envelope) {
            Envelope::parse(&self.envelope).map_err(|m| WithError::new("envelope", m))?;
        }
        super::de::check_retention(self.retain, &self.lock_mode)?;
        if let Some(p) = self.name_pattern.as_deref().filter(|p| !p.is_empty() && !is_template(p)) {
            // Rendered once with a stand-in name and time, so a pattern that cannot be
            // written with is refused before the run.
            crate::backup::envelope::render_name(p, "db", time::OffsetDateTime::UNIX_EPOCH)
                .map_err(|m| WithError::new("name_pattern", m))?;
        }
        Ok(())
    }
}

/// Declares an outputs struct that starts with what a pgdrill backup's manifest says (the
/// outputs `backup.create` and `backup.latest` share, and `backup.list`'s entries), followed
/// by the struct's own fields, and `described`, which fills it from a backup and its manifest.
macro_rules! described {
    ($(#[$attr:meta])* $name:ident { $($(#[$fattr:meta])* $field:ident: $ty:ty,)* }) => {
        $(#[$attr])*
        #[derive(Debug, Default, Serialize, Fields)]
        #[fields(outputs)]
        pub struct $name {
            /// the backup file
            path: String,
            /// its manifest
            manifest: String,
            /// of the stored file
            sha256: String,
            /// stored bytes
            size: u64,
            /// pg_dump bytes
            raw_size: u64,
            /// source database
            database: String,
            /// source major version
            server_major: u32,
            /// source fingerprint
            #[field(ty = "map")]
            fingerprint: serde_json::Value,
            /// custom or plain
            format: String,
            /// whether it is encrypted
            encrypted: bool,
            /// `mac`, or why the manifest is not bound to the backup
            manifest_auth: String,
            /// when the dump finished (RFC 3339)
            created: String,
            /// when the dump's snapshot was taken (Unix seconds): what a drill's RPO is
            /// measured against
            started_epoch: f64,
            $($(#[$fattr])* $field: $ty,)*
        }

        impl $name {
            /// `path` and `manifest` as shown: an object's URL, a file's path.
            fn described(path: String, manifest: String, m: &Manifest, $($field: $ty),*) -> Self {
                $name {
                    path,
                    manifest,
                    sha256: m.sha256.clone(),
                    size: m.sizes.stored,
                    raw_size: m.sizes.raw,
                    database: m.database.clone(),
                    server_major: m.server_major,
                    fingerprint: serde_json::to_value(&m.fingerprint).unwrap_or_default(),
                    format: m.format.name().to_string(),
                    encrypted: m.cipher != "none",
                    manifest_auth: crate::backup::listing::manifest_auth(m).to_string(),
                    created: super::rfc3339(m.finished_at),
                    // When the dump's snapshot was taken (to the millisecond): what a drill's
                    // RPO is checked against.
                    started_epoch: m.started_at.unix_timestamp_nanos() as f64 / 1e9,
                    $($field,)*
                }
            }
        }
    };
}

described! {
    CreateOutputs {
        /// pgdrill's peak memory so far
        peak_rss_kib: u64,
        /// the archive storage class it went to (`GLACIER`, `DEEP_ARCHIVE`, Azure `Archive`),
        /// which nothing can read until it is restored; empty for a backup readable at once
        archived: String,
    }
}

/// pg_dump streamed through compression and AES-256-GCM into storage, with a manifest and source fingerprint.
#[step(kind = Create, name = "backup.create", report_log)]
async fn create(ctx: StepCtx, w: CreateWith) -> Result<CreateOutputs, StepError> {
    let envelope = Envelope::parse(&w.envelope).map_err(|m| StepError::field("envelope", m))?;
    // An outside tool encrypts with one passphrase: a keyring's newest (first) key.
    let passphrase = match (envelope.needs_passphrase(), w.encrypt) {
        (true, Some(false)) => {
            return Err(StepError::field(
                "encrypt",
                format!("envelope {} always encrypts: use envelope none for an unencrypted file", envelope.name()),
            ))
        }
        // As the reading side takes it (`KeySource::from_secret`): one key as given, a
        // keyring's first line.
        (true, _) => w.key.as_deref().filter(|k| !k.is_empty()).map(|k| {
            let lines = crate::archive::crypto::keyring_lines(k);
            if lines.len() > 1 {
                lines[0]
            } else {
                k
            }
        }),
        (false, _) => None,
    };
    if envelope == Envelope::None && w.encrypt == Some(true) {
        return Err(StepError::field("encrypt", "envelope none is not encrypted: say so with encrypt: false (--var encrypt=false), or use openssl, gpg or pgdrill"));
    }
    // What the name says against what the file will be, before anything connects.
    let codec = Codec::parse(&w.compression).map_err(StepError::invalid)?;
    match w.name_pattern.as_deref().filter(|p| !p.is_empty()) {
        Some(p) => {
            if let Some(why) = crate::backup::envelope::ending_disagrees(p, envelope, codec) {
                return Err(StepError::field("name_pattern", format!("name_pattern `{p}`: {why}")));
            }
        }
        None if envelope != Envelope::Pgdrill => {
            return Err(StepError::field(
                "name_pattern",
                format!(
                    "envelope {} writes a team's own file: give `name_pattern` too (e.g. `{{db}}_{{YYYY}}{{MM}}{{DD}}_{{hh}}{{mm}}{{ss}}.sql.gz`), the name their own commands and globs find",
                    envelope.name()
                ),
            ))
        }
        None => {}
    }
    let output = crate::backup::Output {
        envelope,
        name_pattern: w.name_pattern.clone().filter(|p| !p.is_empty()),
        passphrase: passphrase.map(|p| p.to_string()),
        retention: super::de::retention(w.retain, &w.lock_mode, &w.storage)?,
        evidence: ctx.evidence_head.clone(),
    };
    let opts = CreateOptions {
        url: w.database_url.clone(),
        storage: ctx.store(&w.storage)?,
        format: Format::parse(&w.format).map_err(StepError::invalid)?,
        codec,
        level: w.level,
        threads: w.threads,
        jobs: w.jobs,
        key: if w.encrypt == Some(false) || envelope != Envelope::Pgdrill { None } else { key_of(&w.key) },
        fingerprint: Mode::parse(&w.fingerprint).map_err(StepError::invalid)?,
        pg_dump: w.pg_dump.as_deref().map(PathBuf::from),
        name: w.name.clone(),
        meter: Some(crate::progress::Meter::default()),
    };
    // A store that does not answer is found before pg_dump takes its snapshot, not while
    // the snapshot is held open.
    opts.storage.probe().await.map_err(StepError::environment)?;
    match (w.encrypt, opts.key.is_some() || output.passphrase.is_some()) {
        (Some(true), false) => {
            return Err(StepError::invalid(
                "no key to encrypt with: set the key (PGDRILL_BACKUP_KEY for the shipped backup runbook), or --var encrypt=false for an unencrypted backup",
            ))
        }
        (Some(false), _) => ctx.warn(
            "this backup is NOT encrypted (encrypt: false): whoever can read the storage can read the data, and its manifest is bound to nothing (backups list shows UNAUTH)",
        ),
        (None, false) => ctx.warn("no key: this backup is NOT encrypted"),
        _ => {}
    }
    if envelope != Envelope::Pgdrill {
        ctx.log(format!(
            "envelope {}: a team's own file, read by their own commands; its manifest is a sidecar that no MAC binds to it (only pgdrill's own archive has that)",
            envelope.name()
        ));
    }
    let archived = opts.storage.archival_class().unwrap_or_default();
    let log_ctx = ctx.clone();
    let log = move |l: String| log_ctx.log(l);
    let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
    let source_url = opts.url.clone();
    let created = backup::create_as(opts, output, &log).await.map_err(StepError::from)?;
    for w in &created.warnings {
        ctx.warn(w.clone());
    }
    let out =
        // A store's backup is named by its URL already: shown as it is.
        CreateOutputs::described(
            created.path.display().to_string(),
            crate::backup::layout::manifest_path(&created.path).display().to_string(),
            &created.manifest,
            backup::peak_rss_kib().unwrap_or(0),
            archived,
        );
    ctx.backup_fact(crate::facts::BackupRole::Written, &super::outputs_of(&out)?);
    ctx.fact(crate::facts::Fact::Database { name: created.manifest.database.clone() });
    // The source's identity, for the evidence's segregation check of a restore in this run.
    let (system_identifier, host) = super::ephemeral::identity(&source_url).await;
    ctx.fact(crate::facts::Fact::Source { system_identifier, host });
    Ok(out)
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct CheckWith {
    /// backup file
    #[field(ty = "path")]
    path: String,
    /// key for an encrypted backup
    #[field(key)]
    key: Option<String>,
    /// keep the checked plaintext of a custom dump for a parallel restore (`backup.restore`
    /// field `staged`), removed when the runbook ends
    #[serde(default, deserialize_with = "super::de::boolean")]
    stage: bool,
    /// directory for the staged file (default, or empty: beside the backup; `memory`:
    /// /dev/shm when the plain dump fits there and in half the available memory, else beside
    /// the backup; `auto`: /dev/shm when the plain dump takes at most a quarter of the
    /// available memory and half of /dev/shm's free space, else beside the backup)
    #[field(ty = "path")]
    staging: Option<String>,
    /// with `staging: auto`, the most bytes staged in memory whatever the machine could spare
    /// (0, the default: no limit beyond the rule's)
    #[serde(default, deserialize_with = "super::de::int")]
    staging_memory_max: u64,
    /// the database is expected to be empty: a dump without a manifest that defines no table
    /// passes (by default it fails: an empty dump is what a backup job writes when it dumps
    /// the wrong database or fails before its first table)
    #[serde(default, deserialize_with = "super::de::boolean")]
    expect_empty: bool,
    /// with a key, accept a pgdrill backup whose manifest is not authenticated (by default
    /// refused)
    #[serde(default, deserialize_with = "super::de::boolean")]
    allow_unauthenticated: bool,
}

impl With for CheckWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct CheckOutputs {
    /// tables in the dump's table of contents
    tables: usize,
    /// verified checksum
    sha256: Option<String>,
    /// the staged plaintext dump, or empty when nothing was staged
    #[field(ty = "path")]
    staged: String,
    /// another tool's dump: its grants by object, read from its ACL entries (`TABLE
    /// public.payments: [GRANT SELECT TO reporting]`), which a restore without its roles
    /// leaves out; null for pgdrill's archives
    #[field(ty = "map|null")]
    privileges: Option<serde_json::Value>,
}

/// `staging: memory`: a tmpfs, when the plain dump fits.
const MEMORY: &str = "memory";
/// `staging: auto`: memory when the dump fits comfortably (`auto_share`), else disk.
const AUTO: &str = "auto";
use crate::util::memory::{InMemory, Reservation, TMPFS};

/// Where `staging: memory` stages: /dev/shm, when the plain dump (its size from the
/// manifest) fits there and in half of the memory available; else why not. Staged in
/// memory, the dump is never written to disk, where at 2.5 GB its write-back slowed the
/// restore beside it (README, "Verification by restore").
fn in_memory(raw: &Result<u64, String>) -> Result<(PathBuf, String, Reservation), String> {
    memory_room(raw, |raw, free, available| fits_in_memory(raw, free, available).map(|_| String::new()))
}

/// The choice of memory `rule` makes for the plain dump (`raw`, its size from the manifest)
/// given the tmpfs's free bytes and the available memory (`util::memory::room`), less what
/// runs still running have reserved there: made under the tmpfs's lock, and the dump's bytes
/// reserved there when it goes to memory, so two runs started together cannot both take
/// the same room. `Ok`: /dev/shm, what the rule said and what others reserved, and the
/// reservation; `Err`: why not.
fn memory_room(
    raw: &Result<u64, String>,
    rule: impl FnOnce(u64, u64, u64) -> Result<String, String>,
) -> Result<(PathBuf, String, Reservation), String> {
    let raw = raw.clone().map_err(|why| format!("the plain dump's size is not known ({why})"))?;
    let mut said = Err(String::new());
    let reservation = crate::util::memory::reserve(|room, reserved| {
        said = room.and_then(|room| {
            let (free, available) = reserved.left(room);
            rule(raw, free, available).map(|why| reserved.after(why)).map_err(|why| reserved.after(why))
        });
        said.is_ok().then_some(raw)
    })?;
    let why = said?;
    let reservation = reservation.ok_or("the room it takes was not reserved")?;
    Ok((PathBuf::from(TMPFS), why, reservation))
}

/// `staging: auto`'s choice for a backup whose plain dump is `raw` bytes: /dev/shm with the
/// line saying why, or why not (then the dump is staged on disk beside the backup).
fn auto_staging(raw: &Result<u64, String>, max: u64) -> Result<(PathBuf, String, Reservation), String> {
    memory_room(raw, |raw, free, available| auto_share(raw, free, available, max))
}

/// The rule of `staging: auto` (README, "Verification"): a plain dump of `raw` bytes is
/// staged in memory when it takes at most min(25% of `available` memory, 50% of the tmpfs's
/// `free` bytes, `max` when not 0): what is left serves the throwaway server, pg_restore's
/// workers and the page cache, and never less than half of the tmpfs stays free for
/// others. `Ok` and `Err` both say the numbers.
fn auto_share(raw: u64, free: u64, available: u64, max: u64) -> Result<String, String> {
    crate::util::memory::within_share("the plain dump", raw, free, available, max, "staging_memory_max")
}

/// Whether a plain dump of `raw` bytes may be staged in a tmpfs with `free` bytes, on a
/// machine with `available` bytes of memory: a quarter to spare in the tmpfs, and at most
/// half of the memory, the rest left to the throwaway server and the page cache.
fn fits_in_memory(raw: u64, free: u64, available: u64) -> Result<(), String> {
    crate::util::memory::fits("the plain dump", raw, free, available).map(|_| ())
}

/// Verify a backup without restoring: manifest, sha256, every encrypted chunk, decompression, pg_restore --list.
#[step(kind = Check, name = "backup.check")]
async fn check(ctx: StepCtx, w: CheckWith) -> Result<CheckOutputs, StepError> {
    // A backup in an object store is read as a stream: checked (and staged) in one pass,
    // with no local copy of it, nor of its header or manifest (asked of its store).
    let object = ctx.object(&w.path)?;
    let streamed = super::stream_of(&object).await?;
    if streamed.is_some() {
        ctx.log(format!("reading {} from the store as a stream (no local copy)", object.shown()));
    }
    let path = match &streamed {
        Some(_) => None,
        None => Some(object.local_file().await.map_err(StepError::environment)?),
    };
    let secret = w.key.clone();
    // The plain dump's size, from the manifest: staging in memory needs it.
    let raw = match (&streamed, &path) {
        (Some(s), _) => s.manifest().map(|m| m.sizes.raw).ok_or_else(|| "no manifest beside it".to_string()),
        (None, Some(p)) => Manifest::read(p).map(|m| m.sizes.raw).map_err(|e| e.message),
        (None, None) => Err("no manifest".to_string()),
    };
    // Beside a file here; an object in a store has nothing local beside it: the system's
    // temporary directory, as its mirror was.
    let beside = match &path {
        Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::temp_dir(),
    };
    // A folder given to stage in is a local one.
    let staging = match w.staging.as_deref().filter(|d| !d.is_empty() && *d != MEMORY && *d != AUTO) {
        Some(d) => Some(ctx.local("staging", d)?),
        None => None,
    };
    // The room a dump staged in memory takes there, reserved until the staged dump is removed.
    let mut reservation = None;
    let stage = w.stage.then(|| match w.staging.as_deref().filter(|d| !d.is_empty()) {
        Some(MEMORY) => match in_memory(&raw) {
            Ok((dir, why, r)) => {
                reservation = Some(r);
                match why.strip_prefix(", ") {
                    Some(reserved) => ctx.log(format!("staging in memory ({}): {reserved}", dir.display())),
                    None => ctx.log(format!("staging in memory ({})", dir.display())),
                }
                dir
            }
            Err(why) => {
                ctx.log(format!("staging beside the backup, not in memory: {why}"));
                beside.clone()
            }
        },
        Some(AUTO) => match auto_staging(&raw, w.staging_memory_max) {
            Ok((dir, why, r)) => {
                reservation = Some(r);
                ctx.log(format!("staging auto: in memory ({}): {why}", dir.display()));
                dir
            }
            Err(why) => {
                ctx.log(format!("staging auto: on disk, beside the backup: {why}"));
                beside.clone()
            }
        },
        Some(_) => staging.clone().unwrap_or_else(|| beside.clone()),
        None => beside.clone(),
    });
    let meter = crate::progress::Meter::default();
    let _watch = ctx.watch(&meter);
    // A pgdrill archive's manifest is judged against its header before its stream is read.
    let judged = match &streamed {
        Some(s) if s.origin == crate::backup::source::Origin::Pgdrill => Some(s.judged(key_of(&w.key).as_ref()).await?),
        _ => None,
    };
    let stream = match &streamed {
        Some(s) => Some((s.shown(), s.stream().await?, s.sidecar()?)),
        None => None,
    };
    let (checked, staged) = tokio::task::spawn_blocking(move || match (stream, judged, path) {
        (Some((shown, backup::restore::Streamed::Archive(reader), _)), Some(judged), _) => backup::check_stream(
            &shown,
            judged,
            reader,
            secret.as_deref(),
            stage.as_deref(),
            &beside,
            Some(&meter),
        ),
        (Some((shown, backup::restore::Streamed::Foreign(opener), sidecar)), _, _) => {
            backup::check_foreign_stream(Path::new(&shown), &opener, sidecar, secret.as_deref(), stage.as_deref())
        }
        (None, _, Some(path)) => backup::check_and_stage(&path, secret.as_deref(), stage.as_deref(), Some(&meter)),
        _ => Err(crate::error::Failure::environment("backup.check: nothing to read")),
    })
    .await
    .map_err(|e| StepError::environment(e.to_string()))?
    .map_err(|mut f| {
        // The dump staged in memory filled the tmpfs: say the remedy.
        if reservation.is_some() && crate::util::memory::says_full(&f.message) {
            f.message = format!("{}; {}", f.message, crate::util::memory::full_remedy(InMemory::Staging));
        }
        StepError::from(f)
    })?;
    let staged = match staged {
        Some(st) => {
            let p = st.file.0.display().to_string();
            let size = std::fs::metadata(&st.file.0).map(|m| m.len()).unwrap_or(0);
            ctx.log(format!("staged the checked dump ({size} bytes) in {p} for the restore"));
            match &st.offsets {
                Ok(n) => ctx.log(format!("recorded where the data of {n} entries starts, for parallel restore")),
                Err(why) => ctx.log(format!("data offsets not recorded ({why}): pg_restore will scan for them")),
            }
            ctx.resources.push(format!("staged dump {p}"), Box::new(StagedWithRoom(st.file, reservation)));
            p
        }
        None => {
            if w.stage {
                ctx.log("nothing to stage: the restore reads this backup as it is");
            }
            String::new()
        }
    };
    let sha256 = match &checked.manifest {
        Some(m) => {
            if let Some(t) = checked.trust {
                ctx.log(t.describe());
                // The MAC held under the key that wrote the backup: the manifest names it.
                if let (backup::ManifestTrust::Authenticated, Some(fp)) = (t, &m.key_fingerprint) {
                    ctx.log(format!("read with key {fp}"));
                }
                let key_given = w.key.as_deref().is_some_and(|k| !k.is_empty());
                backup::require_authenticated(&w.path, t, key_given, w.allow_unauthenticated)?;
            }
            ctx.log(format!("{} tables, sha256 {}", checked.tables, m.sha256));
            Some(m.sha256.clone())
        }
        None => {
            if let Some(l) = checked.layers.iter().find(|l| l.contains("legacy key derivation")) {
                ctx.warn(format!(
                    "{l}: one round of a fast hash turns the passphrase into the key, which makes guessing it cheap; new backups should use `openssl enc -pbkdf2` or pgdrill's own encryption"
                ));
            }
            ctx.log(format!(
                "not a pgdrill backup: read through {} to pg_dump's completion line and found {} tables; without a manifest there is no checksum to compare",
                if checked.layers.is_empty() { "the file".to_string() } else { checked.layers.join(", ") },
                checked.tables
            ));
            if checked.tables == 0 {
                if !w.expect_empty {
                    return Err(StepError::failed(format!(
                        "{}: a complete dump that defines no table: nothing says the database it claims to hold was empty (a job that dumped the wrong database, or an empty one, writes exactly this); if that database is expected to be empty, say so with `expect_empty: true` (verify: --var expect_empty=true)",
                        w.path
                    )));
                }
                ctx.log("no tables, as expected (expect_empty)");
            }
            None
        }
    };
    let privileges = checked.privileges.as_ref().and_then(|p| serde_json::to_value(p).ok());
    Ok(CheckOutputs { tables: checked.tables, sha256, staged, privileges })
}

/// A staged dump, and the reservation of the tmpfs's room it takes when staged in memory:
/// the reservation ends after the dump is removed, never before.
struct StagedWithRoom(backup::Staged, Option<Reservation>);

/// A staged dump lives until the runbook ends (the restore that reads it may come later).
impl super::Teardown for StagedWithRoom {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        let StagedWithRoom(staged, reservation) = *self;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || drop(staged)).await.unwrap_or_default();
            drop(reservation);
        })
    }

    /// Its own private directory: no server or file of the run is inside it.
    fn ends_beside_others(&self) -> bool {
        true
    }
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct ListWith {
    /// backup directory
    #[field(ty = "path")]
    storage: String,
    /// only this database
    database: Option<String>,
    /// other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the
    /// classic schemes)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
}

/// A `name_pattern:` field, checked.
pub(super) fn name_pattern(p: Option<&str>) -> Result<Option<crate::backup::names::NamePattern>, StepError> {
    p.map(crate::backup::names::NamePattern::parse).transpose().map_err(StepError::invalid)
}

impl With for ListWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct ListOutputs {
    /// path, database, created, size, sha256 of each
    backups: Vec<serde_json::Value>,
    /// how many
    count: usize,
}

/// List backups in storage, newest first.
#[step(name = "backup.list")]
impl List {
    async fn run(ctx: StepCtx, w: ListWith) -> Result<ListOutputs, StepError> {
        let pattern = name_pattern(w.name_pattern.as_deref())?;
        let listed =
            backup::listing::list(&ctx.view(&*ctx.store(&w.storage)?).await?, w.database.as_deref(), pattern.as_ref())?;
        Ok(ListOutputs { count: listed.len(), backups: backup::listing::to_json(&listed) })
    }
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct LatestWith {
    /// backup directory
    #[field(ty = "path")]
    storage: String,
    /// database (default: any)
    database: Option<String>,
    /// other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the
    /// classic schemes)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
}

impl With for LatestWith {}

described! {
    /// `backup.latest`'s outputs for a pgdrill backup: what its manifest says.
    LatestBackup {
        /// seconds since the backup finished
        age_s: i64,
    }
}

/// `backup.latest`'s outputs for another tool's file: what its name (or, failing that, its
/// modification time) says. Fewer than a pgdrill backup's: a later step that reads one this
/// file cannot have (its sha256, say) fails as undefined rather than reading an empty value.
#[derive(Debug, Serialize)]
pub struct LatestForeign {
    path: String,
    /// Always null: nothing says which server wrote it.
    server_major: Option<u32>,
    /// Always null: there is no fingerprint without a manifest.
    fingerprint: Option<serde_json::Value>,
    created_from: crate::backup::layout::MadeFrom,
    age_s: i64,
}

super::one_of_outputs! {
    /// What `backup.latest` hands on: a pgdrill backup's manifest outputs, or the fewer of
    /// another tool's file.
    LatestOutputs { Pgdrill(LatestBackup), Foreign(LatestForeign) }
}

/// The newest backup of a database (an error when its manifest cannot be read).
#[step(kind = Latest, name = "backup.latest")]
async fn latest(ctx: StepCtx, w: LatestWith) -> Result<LatestOutputs, StepError> {
    let storage = ctx.view(&*ctx.store(&w.storage)?).await?;
    let pattern = name_pattern(w.name_pattern.as_deref())?;
    let survey = LocalStore::new(&storage)
        .survey(pattern.as_ref())
        .map_err(|e| StepError::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    let mut entries = survey.select(w.database.as_deref());
    let unfinished = say_unfinished(&ctx, &storage, w.database.as_deref());
    // Dated in the future (a skewed clock): never the latest in silence, as in backup.pick.
    entries.retain(|e| match backup::dated_ahead(e.made) {
        Some(s) => {
            ctx.log(format!(
                "not taking {} as the latest: dated {s} s in the future (a skewed clock?); its age is unknown",
                e.name
            ));
            false
        }
        None => true,
    });
    if let Some(e) = entries.first() {
        for line in crate::backup::resolve::pointer_notes(&survey, e) {
            ctx.log(line);
        }
    }
    if let Some(e) = entries.first().filter(|e| e.foreign) {
        // Another tool's file: what its name (or, failing that, its mtime) says.
        let age = (time::OffsetDateTime::now_utc() - e.made).whole_seconds().max(0);
        return Ok(LatestOutputs::Foreign(LatestForeign {
            path: storage.display(&e.path),
            server_major: None,
            fingerprint: None,
            created_from: e.made_from,
            age_s: age,
        }));
    }
    if let Some(e) = entries.first() {
        // The newest backup's manifest, or a loud error: an older backup in its place would
        // make a stale database look backed up.
        // Read through the store the listing was of, never a file of its local mirror.
        let m = crate::backup::manifest_listed(&storage, &e.path).await.map(|l| l.manifest).map_err(|err| {
            // The store failed to give the manifest (read now, not when listed): no verdict.
            if err.class == crate::error::Class::Environment {
                return StepError::from(err);
            }
            StepError::failed(format!(
                "{err}; refusing to report an older backup as the latest: repair it, or move {} and its manifest away",
                e.name
            ))
        })?;
        let age = (time::OffsetDateTime::now_utc() - m.finished_at).whole_seconds().max(0);
        ctx.fact(crate::facts::Fact::Database { name: m.database.clone() });
        let (path, manifest) = (storage.display(&e.path), storage.display(&e.manifest));
        return Ok(LatestOutputs::Pgdrill(LatestBackup::described(path, manifest, &m, age)));
    }
    Err(StepError::failed(format!(
        "no backup{} in {}{unfinished}{}",
        w.database.as_deref().map(|d| format!(" of `{d}`")).unwrap_or_default(),
        storage.shown(),
        crate::backup::resolve::explain(&survey, w.database.as_deref(), &crate::backup::resolve::Asked::Latest)
    )))
}

/// Name each archive left without its manifest (the commit marker): never taken as a
/// backup, and the operator should know why the newest file in the folder was passed over.
/// Returns what to add to a "no backup" error: the unfinished ones, named.
pub(super) fn say_unfinished(ctx: &StepCtx, storage: &crate::storage::tree::Tree, database: Option<&str>) -> String {
    let left = LocalStore::new(storage).unfinished(database).unwrap_or_default();
    for e in &left {
        let why = match crate::backup::layout::is_lone_sidecar(e) {
            true => "a team's sidecar manifest whose file (published after it) is missing",
            false => "its manifest (written last) is missing",
        };
        ctx.log(format!(
            "not taking {}: unfinished, {why}: a backup killed before it finished, or one still finishing; retention.prune removes it",
            storage.display(&e.path)
        ));
    }
    if left.is_empty() {
        return String::new();
    }
    let names: Vec<String> = left.iter().map(|e| storage.display(&e.path)).collect();
    format!(
        "; not taken: {} unfinished (no manifest, the commit marker written last): {}",
        left.len(),
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    /// `staging: auto` (the verify runbook's default) stages in memory within its documented
    /// share, names the numbers either way, and obeys a set limit.
    #[test]
    fn staging_auto_takes_at_most_a_quarter_of_memory_and_half_the_tmpfs() {
        const MIB: u64 = 1 << 20;
        const GIB: u64 = 1 << 30;
        // 2 GiB of 12 GiB available and 8 GiB free in /dev/shm: within min(3 GiB, 4 GiB).
        let ok = super::auto_share(2 * GIB, 8 * GIB, 12 * GIB, 0).expect("fits");
        assert!(ok.contains("(2048 MiB) is within 3072 MiB = min(25% of 12288 MiB available, 50% of 8192 MiB free in /dev/shm)"), "{ok}");
        // Memory binds: 3 GiB over a quarter of 8 GiB.
        let mem = super::auto_share(3 * GIB, 64 * GIB, 8 * GIB, 0).expect_err("over a quarter");
        assert!(mem.contains("(3072 MiB) is over 2048 MiB = min(25% of 8192 MiB"), "{mem}");
        // The tmpfs binds: 1 GiB over half of 1.5 GiB free.
        let tmpfs = super::auto_share(GIB, 3 * GIB / 2, 64 * GIB, 0).expect_err("over half the tmpfs");
        assert!(tmpfs.contains("is over 768 MiB"), "{tmpfs}");
        // Exactly the share fits; a byte more does not.
        assert!(super::auto_share(GIB, 2 * GIB, 64 * GIB, 0).is_ok());
        assert!(super::auto_share(GIB + 1, 2 * GIB, 64 * GIB, 0).is_err());
        // A set limit below the rule's share binds, and is named; one above it changes nothing.
        let capped = super::auto_share(2 * MIB, 8 * GIB, 12 * GIB, MIB).expect_err("over the limit");
        assert!(capped.contains("is over 1 MiB = staging_memory_max 1 MiB"), "{capped}");
        assert!(super::auto_share(2 * MIB, 8 * GIB, 12 * GIB, 100 * GIB).is_ok());
        // No memory or no tmpfs: never in memory.
        assert!(super::auto_share(1, 0, 12 * GIB, 0).is_err());
        assert!(super::auto_share(1, 8 * GIB, 0, 0).is_err());
    }

    /// `staging: memory` stages in /dev/shm only with room to spare there and half the
    /// memory left; otherwise it says why, and the dump is staged beside the backup.
    #[test]
    fn a_dump_is_staged_in_memory_only_when_it_fits_with_room_to_spare() {
        const GIB: u64 = 1 << 30;
        assert_eq!(super::fits_in_memory(2 * GIB, 12 * GIB, 23 * GIB), Ok(()));
        let tmpfs = super::fits_in_memory(2 * GIB, 2 * GIB, 23 * GIB).expect_err("no quarter to spare");
        assert!(tmpfs.contains("does not fit in /dev/shm (2048 MiB free)"), "{tmpfs}");
        let memory = super::fits_in_memory(2 * GIB, 12 * GIB, 3 * GIB).expect_err("over half the memory");
        assert!(memory.contains("more than half of the available memory (3072 MiB)"), "{memory}");
    }
}
