//! Backups: pg_dump streamed through compression and encryption into storage, with a
//! manifest holding the source fingerprint taken in pg_dump's own snapshot; and checks of
//! stored backups without restoring them.

use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::archive::{self, Codec, Envelope, Kdf, KeySource, Sizes, WriteOptions};
use crate::error::{Class, Failure};
use crate::pg::fingerprint::{self, Fingerprint, Mode};
// Found by pg/ (it also runs the tools from an image); named here for the pipeline.
pub use crate::pg::native::find_tool;
use layout::LocalStore;

pub mod base;
pub mod complete;
pub mod envelope;
pub mod layout;
pub mod ledger;
pub mod listing;
pub mod names;
pub mod offsets;
pub mod rekey;
pub mod resolve;
pub mod restore;
pub mod retention;
pub mod source;

pub const MANIFEST_SCHEMA: &str = "pgdrill.manifest/1";

/// Whether an I/O error is the machine's (a full disk, a quota, a read-only or failing
/// disk, no permission, no memory or file descriptors) rather than the backup's.
pub(crate) fn is_environment(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    // A store that failed mid-read.
    if crate::storage::store_failure(e).is_some() {
        return true;
    }
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::ENOSPC
                | Errno::EDQUOT
                | Errno::EROFS
                | Errno::EIO
                | Errno::EACCES
                | Errno::EPERM
                | Errno::ENOMEM
                | Errno::EMFILE
                | Errno::ENFILE
        )
    )
}

/// An I/O error met while reading a backup through its layers: the environment's when
/// `is_environment`, otherwise a failed check (authentication, truncation, decompression).
pub(crate) fn io_error(context: &str, e: std::io::Error) -> Failure {
    if is_environment(&e) {
        Failure::environment(format!("{context}: {e}")).with_source(e)
    } else {
        Failure::failed(format!("{context}: {}", io_message(&e))).with_source(e)
    }
}

/// How far in the future a backup's time may be before its age is unknown: the clocks of
/// the machines that write and read backups differ by a little, never by hours.
pub const FUTURE_TOLERANCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Seconds a backup made at `t` is dated in the future beyond `FUTURE_TOLERANCE`, if it is.
pub fn dated_ahead(t: OffsetDateTime) -> Option<i64> {
    let now = OffsetDateTime::now_utc();
    (t > now + FUTURE_TOLERANCE).then(|| (t - now).whole_seconds())
}

/// What in a PostgreSQL client tool's stderr (pg_restore, psql) says the server's
/// environment failed rather than the backup: SQLSTATE class 53 (insufficient resources:
/// disk full 53100, out of memory 53200, too many connections 53300), an administrator's or
/// a crash's shutdown (57P01-57P03), and a lost connection. The tools print the server's
/// message, not its SQLSTATE (psql prints it only with VERBOSITY verbose), so the
/// server's own words are matched; each is phrased by PostgreSQL itself, never by a dump.
/// A failure's message that holds stderr's last lines joined by ` | ` (`stderr_tail`) is
/// split back into its lines by the caller first.
pub fn environment_in_stderr(stderr: &str) -> Option<&'static str> {
    const SIGNS: &[(&str, &str)] = &[
        ("No space left on device", "the server's disk is full (SQLSTATE 53100)"),
        ("could not extend file", "the server's disk is full (SQLSTATE 53100)"),
        ("Disk quota exceeded", "the server's disk quota is exhausted (SQLSTATE 53100)"),
        ("out of memory", "the server ran out of memory (SQLSTATE 53200)"),
        ("too many connections", "the server has no connection left (SQLSTATE 53300)"),
        ("remaining connection slots are reserved", "the server has no connection left (SQLSTATE 53300)"),
        ("terminating connection due to administrator command", "the server was shut down (SQLSTATE 57P01)"),
        ("the database system is shutting down", "the server was shut down (SQLSTATE 57P03)"),
        ("the database system is in recovery mode", "the server crashed and is recovering (SQLSTATE 57P03)"),
        ("terminating connection because of crash of another server process", "the server crashed (SQLSTATE 57P02)"),
        ("server closed the connection unexpectedly", "the connection to the server was lost"),
        ("could not receive data from server", "the connection to the server was lost"),
        ("could not send data to server", "the connection to the server was lost"),
        ("no connection to the server", "the connection to the server was lost"),
        ("connection to server was lost", "the connection to the server was lost"),
        ("SSL SYSCALL error", "the connection to the server was lost"),
    ];
    // Only the tools' and the server's own lines: a failing statement's text (`Command
    // was: ...`, a function body) is the dump's and may hold any words.
    let said = |l: &&str| {
        !l.trim_start().starts_with("Command was:")
            && ["error:", "ERROR:", "FATAL:", "PANIC:", "server closed", "connection to server", "SSL SYSCALL"]
                .iter()
                .any(|m| l.contains(m))
    };
    let lines: Vec<&str> = stderr.lines().filter(said).collect();
    SIGNS.iter().find(|(sign, _)| lines.iter().any(|l| l.contains(sign))).map(|(_, what)| *what)
}

#[cfg(test)]
mod environment_tests {
    #[test]
    fn a_full_disk_is_the_environment_and_a_statement_text_is_not() {
        let full = "pg_restore: error: could not execute query: ERROR:  could not extend file \"base/16384/16390\": No space left on device\nHINT:  Check free disk space.\nCommand was: COPY public.t (id, pad) FROM stdin;";
        assert_eq!(super::environment_in_stderr(full), Some("the server's disk is full (SQLSTATE 53100)"));
        let syntax = "pg_restore: error: could not execute query: ERROR:  syntax error at or near \"x\"\nCommand was: CREATE FUNCTION f() RETURNS text AS 'select ''out of memory''';";
        assert_eq!(super::environment_in_stderr(syntax), None);
    }
}

#[cfg(test)]
mod manifest_tests {
    use crate::error::Class;

    /// `Manifest::of` reads beside the backup through its store: a manifest that is not there
    /// or does not parse is the backup's failure (exit 1) naming the manifest, never the
    /// environment's.
    #[tokio::test]
    async fn a_manifest_read_through_the_store_that_is_missing_or_unreadable_is_the_backups_failure() {
        let dir = tempfile::tempdir().expect("dir");
        let backup = dir.path().join("x.dump.pgdrill");
        std::fs::write(&backup, b"not read").expect("backup");
        let named = crate::storage::Opened::default()
            .named_in(&backup.display().to_string(), std::path::Path::new(""))
            .expect("named");
        let e = super::Manifest::of(&named).await.expect_err("no manifest");
        assert_eq!(e.class, Class::Failed, "{}", e.message);
        let want = format!("missing manifest {}.manifest.json", backup.display());
        assert_eq!(e.message, want);
        std::fs::write(super::layout::manifest_path(&backup), b"{ not json").expect("manifest");
        let e = super::Manifest::of(&named).await.expect_err("unreadable");
        assert_eq!(e.class, Class::Failed, "{}", e.message);
        assert!(
            e.message.starts_with(&format!("unreadable manifest {}.manifest.json: ", backup.display())),
            "{}",
            e.message
        );
    }

    /// A manifest as pgdrill writes it (`to_vec_pretty`), every field set: a key derivation,
    /// a MAC, a team's envelope, the source's locale, an evidence head. Backups on disk carry
    /// this JSON, so it must read and write back byte for byte whatever its parts are declared
    /// as (issue 37: the fields every stored object's manifest has, and the source's locale,
    /// each declared once).
    const WRITTEN: &str = r#"{
  "schema": "pgdrill.manifest/1",
  "pgdrill_version": "0.1.0",
  "database": "shop",
  "server_version": "15.10",
  "server_major": 15,
  "pg_dump_version": "15.10",
  "format": "custom",
  "codec": "zstd",
  "level": 3,
  "cipher": "aes-256-gcm",
  "kdf": {
    "alg": "argon2id",
    "salt": "c2FsdHNhbHRzYWx0c2FsdA",
    "m_cost": 65536,
    "t_cost": 3,
    "p_cost": 1
  },
  "sizes": {
    "raw": 4096,
    "compressed": 1024,
    "stored": 1200
  },
  "sha256": "0f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f",
  "started_at": "2026-11-21T15:45:00.123Z",
  "finished_at": "2026-11-21T15:45:02Z",
  "snapshot": "00000003-00000002-1",
  "fingerprint": {
    "mode": "full",
    "schema_hash": "ab12",
    "schema": {
      "columns": [
        "public.t id integer"
      ],
      "tables": [
        "public.t r"
      ]
    },
    "tables": {
      "public.t": {
        "rows": 2,
        "hash": "cd34",
        "field_hash": "ef56"
      }
    }
  },
  "stored_as": "shop_copy",
  "authentication": {
    "alg": "hmac-sha256",
    "mac": "9f9e"
  },
  "key_fingerprint": "sha256:1a2b",
  "database_properties": {
    "encoding": "UTF8",
    "lc_collate": "C",
    "lc_ctype": "C",
    "locale_provider": "icu",
    "locale": "sv-SE",
    "icu_rules": "&a < b",
    "source_collation_version": "153.120"
  },
  "envelope": "openssl",
  "evidence": {
    "location": "s3://evidence/prod",
    "chain": "c0ffee",
    "sequence": 7,
    "record_sha256": "77"
  }
}"#;

    #[test]
    fn a_manifest_as_written_on_disk_reads_and_writes_back_byte_for_byte() {
        let m: super::Manifest = serde_json::from_str(WRITTEN).expect("a written manifest parses");
        assert_eq!(serde_json::to_string_pretty(&m).expect("json"), WRITTEN);
        // Read as before, whatever part declares them.
        assert_eq!((m.sizes.stored, m.level, m.sha256.len()), (1200, 3, 64));
        assert_eq!(m.started_at.unix_timestamp_nanos(), 1_795_275_900_123_000_000);
        let p = m.database_properties.as_ref().expect("properties");
        assert_eq!(p.summary(), "UTF8, icu sv-SE (lc_collate C, lc_ctype C)");
        // The oldest form: no optional part at all.
        let mut v: serde_json::Value = serde_json::from_str(WRITTEN).expect("json");
        for k in
            ["kdf", "stored_as", "authentication", "key_fingerprint", "database_properties", "envelope", "evidence"]
        {
            v.as_object_mut().expect("object").remove(k);
        }
        let m: super::Manifest = serde_json::from_value(v.clone()).expect("an older manifest parses");
        assert!(m.kdf.is_none() && m.database_properties.is_none());
        assert_eq!(serde_json::to_value(&m).expect("json"), v, "written back without them");
    }
}

/// pg_dump output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Custom,
    Plain,
    /// pg_dump -Fd -j: dumped in parallel into a staging directory on the storage disk, then
    /// stored as a tar stream through the same compression and encryption.
    Directory,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "custom" => Ok(Format::Custom),
            "plain" => Ok(Format::Plain),
            "directory" => Ok(Format::Directory),
            o => Err(format!("unknown format `{o}`: use custom, directory or plain")),
        }
    }
    /// The word a manifest stores and `parse` reads (`custom`, `plain`, `directory`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Custom => "custom",
            Format::Plain => "plain",
            Format::Directory => "directory",
        }
    }
    fn ext(self) -> &'static str {
        match self {
            Format::Custom => "dump.pgdrill",
            Format::Plain => "sql.pgdrill",
            Format::Directory => "dir.tar.pgdrill",
        }
    }
}

/// What is recorded beside every backup. Never contains key material.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub pgdrill_version: String,
    pub database: String,
    pub server_version: String,
    pub server_major: u32,
    pub pg_dump_version: String,
    pub format: Format,
    /// How the stored object was written, and when (read as the manifest's own fields).
    #[serde(flatten)]
    pub stored: Stored,
    pub snapshot: String,
    pub fingerprint: Option<Fingerprint>,
    /// The name the backup is stored under (`name:` of backup.create) when it is not the
    /// database's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<String>,
    /// For encrypted backups: the MAC binding this manifest to its archive under the key
    /// (see `authenticate_manifest`). Absent for unencrypted backups and for encrypted ones
    /// written before manifests were bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<ManifestAuth>,
    /// The cluster-level objects the database depends on (roles, memberships, settings,
    /// tablespaces), read in the dump's snapshot; absent in backups from before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub globals: Option<crate::pg::globals::Globals>,
    /// For encrypted backups: the fingerprint of the key they are written with
    /// (`KeySource::fingerprint`, never the key), so an operator holding a keyring knows which
    /// key a backup needs; absent in backups from before keyrings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
    /// What CREATE DATABASE gave the source database (encoding, locale, provider), read in
    /// the dump's snapshot: verify creates its throwaway database with them, so an ICU
    /// database is verified under its own collation. Absent in backups from before them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_properties: Option<DatabaseProperties>,
    /// What wraps the compressed stream when it is a team's own format (`none`, `openssl`,
    /// `gpg`; see `Output`): this manifest is then the file's sidecar, bound to it by its
    /// sha256 only. Absent for pgdrill's own archive.
    #[serde(default, skip_serializing_if = "is_pgdrill")]
    pub envelope: Envelope,
    /// The head of the run's signed evidence log when the backup was made (`--evidence`),
    /// under the manifest's MAC: an anchor of the log outside it, which whoever edits the
    /// evidence folder cannot rewrite without the backup key. Absent without evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<EvidenceHead>,
}

/// A record of an evidence log, as an anchor kept outside the log names it: the log's
/// location, its chain's id, the record's sequence and the sha256 of its file. Plain data
/// handed down by the evidence layer (above this one), which alone reads and judges logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceHead {
    pub location: String,
    pub chain: String,
    pub sequence: u64,
    pub record_sha256: String,
}

/// How a stored backup's object was written, and when: the fields every manifest pgdrill
/// writes beside one has (a dump's `Manifest`, a base backup's `base::BaseManifest`), in the
/// same place among their others. Declared once and flattened into both
/// (`#[serde(flatten)]`), so their JSON is what it always was; each manifest reads them as
/// its own fields (`Deref`), as its readers always did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored {
    pub codec: Codec,
    pub level: i32,
    pub cipher: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    pub sizes: Sizes,
    /// SHA-256 of the stored object.
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

impl std::ops::Deref for Manifest {
    type Target = Stored;
    fn deref(&self) -> &Stored {
        &self.stored
    }
}

impl std::ops::DerefMut for Manifest {
    fn deref_mut(&mut self) -> &mut Stored {
        &mut self.stored
    }
}

fn is_pgdrill(e: &Envelope) -> bool {
    *e == Envelope::Pgdrill
}

/// A database's CREATE DATABASE properties, as pg_database holds them. Empty fields are
/// what the server does not have (a provider before 15, ICU rules before 16). The names
/// are those `database.create`'s `properties` reads (with `encoding`, `lc_collate` and
/// `lc_ctype` as its own fields), so a step hands them on as they are; the source's
/// collation version is kept apart (`source_collation_version`): a throwaway server's
/// library has its own, and claiming the source's would hide a difference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseProperties {
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
    /// Its provider, ICU (or builtin) locale and ICU rules.
    #[serde(flatten)]
    pub locale: crate::pg::Locale,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_collation_version: String,
}

impl DatabaseProperties {
    /// The current database's, read as a JSON row so one query serves every major (columns
    /// appear and are renamed between them).
    pub async fn capture(client: &tokio_postgres::Client) -> Result<DatabaseProperties, tokio_postgres::Error> {
        let row = client
            .query_one(
                "select to_jsonb(d)::text, pg_encoding_to_char(d.encoding)::text from pg_database d \
                 where d.datname = current_database()",
                &[],
            )
            .await?;
        let d = crate::pg::DatabaseRow::parse(&row.get::<_, String>(0));
        Ok(DatabaseProperties {
            encoding: row.get(1),
            lc_collate: d.text("datcollate"),
            lc_ctype: d.text("datctype"),
            locale: crate::pg::Locale::of(&d),
            source_collation_version: d.text("datcollversion"),
        })
    }

    /// One line for a log: `UTF8, icu de-DE (lc_collate C, lc_ctype C)`.
    pub fn summary(&self) -> String {
        let provider = match (self.locale.provider.as_str(), self.locale.name.as_str()) {
            ("", _) => String::new(),
            (p, "") => format!(", {p}"),
            (p, l) => format!(", {p} {l}"),
        };
        format!("{}{provider} (lc_collate {}, lc_ctype {})", self.encoding, self.lc_collate, self.lc_ctype)
    }
}

/// A manifest's MAC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestAuth {
    pub alg: String,
    pub mac: String,
}

/// What is known of a manifest's authenticity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestTrust {
    /// Its MAC under the archive's key holds, and the archive's header is authentic.
    Authenticated,
    /// An unencrypted backup: there is no key, so nothing binds the manifest to the archive.
    Unencrypted,
    /// Encrypted before manifests were bound (the authentic header says so): unauthenticated.
    Legacy,
    /// Encrypted, but no key was given here to check it with.
    NoKey,
    /// The sidecar of a team's own format (`Manifest::envelope`: bare, openssl or gpg): only
    /// the sha256 in it ties it to the file, and whoever can write the storage can write both.
    Sidecar,
}

impl ManifestTrust {
    /// A line for the step's log and the reports.
    pub fn describe(self) -> &'static str {
        match self {
            ManifestTrust::Authenticated => "manifest authenticated (MAC under the backup's key)",
            ManifestTrust::Unencrypted => {
                "manifest UNAUTHENTICATED: the backup is not encrypted, so nothing binds its dates, database and fingerprint to it"
            }
            ManifestTrust::Legacy => {
                "manifest UNAUTHENTICATED: written before pgdrill bound manifests to encrypted backups"
            }
            ManifestTrust::NoKey => "manifest not authenticated here: no key given",
            ManifestTrust::Sidecar => {
                "manifest UNAUTHENTICATED: the sidecar of a team's own format, which has no place for pgdrill's MAC: only its sha256 ties it to the file"
            }
        }
    }
}

/// With a key given, only authenticated pgdrill backups are accepted: anyone who can write
/// to the storage can plant an unencrypted backup with a manifest of their own (or one
/// claiming to predate manifest binding), and it would be picked as the newest, verified
/// and restored. `allow` (the run's `allow_unauthenticated`) lets them through, logged.
pub fn require_authenticated(shown: &str, trust: ManifestTrust, key_given: bool, allow: bool) -> Result<(), Failure> {
    let unauthenticated = matches!(trust, ManifestTrust::Unencrypted | ManifestTrust::Legacy | ManifestTrust::Sidecar);
    if !key_given || !unauthenticated || allow {
        return Ok(());
    }
    Err(Failure::failed(format!(
        "{shown}: refused: {}; a key was given, so only backups whose manifest is authenticated under it are accepted (an unencrypted backup with its own manifest is what anyone who can write to the storage can plant); to use it anyway, allow unauthenticated backups explicitly (`allow_unauthenticated: true`, verify: --var allow_unauthenticated=true)",
        trust.describe()
    )))
}

/// The bytes a manifest's MAC covers: its JSON with `authentication` taken out, compact and
/// with sorted keys, so the file's formatting does not matter but every value does.
pub fn manifest_bytes(mut v: serde_json::Value) -> Vec<u8> {
    if let Some(o) = v.as_object_mut() {
        o.remove("authentication");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// Decide whether the manifest beside `backup` can be trusted, before anything in it is
/// used. A manifest with a MAC must verify under the key and this archive's nonce prefix:
/// an edited manifest (a date moved, a database renamed, a fingerprint changed, a manifest
/// moved from another backup) fails here. One without a MAC is accepted (as unauthenticated)
/// only when the archive's header, proved authentic by opening its first chunk, says it was
/// written before manifests were bound. The manifest's cipher must agree with the
/// archive's, so an edit cannot claim "not encrypted" to escape the check.
pub fn authenticate_manifest(backup: &Path, key: Option<&KeySource>) -> Result<ManifestTrust, Failure> {
    // A path handed over without its view: its store is looked up by path.
    authenticate_manifest_in(&crate::storage::tree::Tree::from(backup), backup, key)
}

/// `authenticate_manifest`, the manifest read through `tree`, the view `backup` was found in.
pub fn authenticate_manifest_in(
    tree: &crate::storage::tree::Tree,
    backup: &Path,
    key: Option<&KeySource>,
) -> Result<ManifestTrust, Failure> {
    let mp = layout::manifest_path(backup);
    let failed = |m: String| Failure::failed(format!("{}: {m}", mp.display()));
    // Listed from a store without its bytes (issue 41): read them now, once.
    tree.materialize(&mp).map_err(Failure::environment)?;
    let text = std::fs::read(&mp).map_err(|e| failed(format!("cannot read: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    let manifest: Manifest =
        serde_json::from_value(value.clone()).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    let f =
        std::fs::File::open(backup).map_err(|e| Failure::failed(format!("cannot open {}: {e}", backup.display())))?;
    let mut input = BufReader::new(f);
    let (header, _) = archive::read_header(&mut input)
        .map_err(|e| Failure::from(e).context(format!("{}: its backup", mp.display())))?;
    let first_chunk = |key: &KeySource| {
        let f = std::fs::File::open(backup)
            .map_err(|e| Failure::failed(format!("cannot open {}: {e}", backup.display())))?;
        archive::authenticate_header(BufReader::new(f), key).map_err(|e| Failure::from(e).context(backup.display()))?;
        Ok(())
    };
    judge_manifest(&mp.display().to_string(), &backup.display().to_string(), value, manifest, &header, key, first_chunk)
}

/// `authenticate_manifest`, for a backup in a store (`archive`: its key there) whose
/// manifest was read already (`text`): the archive's header is read with a ranged read of
/// its first bytes, never the whole object; the archive's first chunk only for a manifest
/// without a MAC (a backup written before manifests were bound). What a caller that reads
/// manifests straight from a store (the evidence anchors) uses instead of a local view.
pub async fn authenticate_manifest_at(
    store: &dyn crate::storage::Store,
    archive: &str,
    text: &[u8],
    key: Option<&KeySource>,
) -> Result<ManifestTrust, Failure> {
    let shown = store.url_of(&layout::manifest_key(archive));
    // The version seen here only.
    let meta = store
        .head(archive)
        .await
        .map_err(Failure::environment)?
        .ok_or_else(|| Failure::failed(format!("{shown}: its backup {} is not there", store.url_of(archive))))?;
    authenticate_manifest_seen(store, archive, &meta, text, key).await
}

/// `authenticate_manifest_at`, the archive's header read from the version `meta` of it (what
/// the caller's `head` saw, and its stream of the archive reads).
pub async fn authenticate_manifest_seen(
    store: &dyn crate::storage::Store,
    archive: &str,
    meta: &crate::storage::Meta,
    text: &[u8],
    key: Option<&KeySource>,
) -> Result<ManifestTrust, Failure> {
    let shown = store.url_of(&layout::manifest_key(archive));
    let failed = |m: String| Failure::failed(format!("{shown}: {m}"));
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    let manifest: Manifest =
        serde_json::from_value(value.clone()).map_err(|e| failed(format!("unreadable manifest: {e}")))?;
    // The header (at most MAX_HEADER bytes after its magic and length) and, where it must be
    // authenticated by opening it, the first chunk (its length, at most CHUNK_SIZE, its tag).
    let first_chunk = manifest.authentication.is_none() && manifest.cipher != "none" && key.is_some();
    let mut end = u64::from(archive::MAX_HEADER) + 64;
    if first_chunk {
        end += archive::CHUNK_SIZE as u64 + 64;
    }
    // No further than the object's end (a store reads a range it was given whole, or fails).
    let head = {
        let range = 0..end.min(meta.size);
        let mut r = store.open(archive, Some(range), meta.version.as_deref()).await.map_err(Failure::environment)?;
        let mut v = Vec::new();
        tokio::task::block_in_place(|| r.read_to_end(&mut v))
            .map_err(|e| Failure::environment(format!("reading {}: {e}", store.url_of(archive))))?;
        v
    };
    let backup_shown = store.url_of(archive);
    let (header, _) = archive::read_header(&mut std::io::Cursor::new(&head))
        .map_err(|e| Failure::from(e).context(format!("{shown}: its backup")))?;
    let first_chunk = |key: &KeySource| {
        archive::authenticate_header(std::io::Cursor::new(&head), key)
            .map_err(|e| Failure::from(e).context(&backup_shown))?;
        Ok(())
    };
    judge_manifest(&shown, &backup_shown, value, manifest, &header, key, first_chunk)
}

/// The judgement of a manifest (`value`, read as `manifest`, shown as `shown`) against its
/// archive's header, wherever both were read: see `authenticate_manifest_in`. `first_chunk`
/// authenticates the archive's header by opening its first chunk, asked only of a manifest
/// without a MAC.
fn judge_manifest(
    shown: &str,
    backup: &str,
    value: serde_json::Value,
    manifest: Manifest,
    header: &archive::Header,
    key: Option<&KeySource>,
    first_chunk: impl FnOnce(&KeySource) -> Result<(), Failure>,
) -> Result<ManifestTrust, Failure> {
    let failed = |m: String| Failure::failed(format!("{shown}: {m}"));
    if header.cipher == "none" {
        if manifest.cipher != "none" {
            return Err(failed(format!(
                "says cipher `{}` but the backup is not encrypted: the manifest was changed",
                manifest.cipher
            )));
        }
        return Ok(ManifestTrust::Unencrypted);
    }
    if manifest.cipher != header.cipher {
        return Err(failed(format!(
            "says cipher `{}` but the backup is encrypted ({}): the manifest was changed",
            manifest.cipher, header.cipher
        )));
    }
    let Some(key) = key else { return Ok(ManifestTrust::NoKey) };
    let kdf = header.kdf.clone().ok_or_else(|| failed("its backup's header names no key derivation".into()))?;
    let (k, _) = key.unlock(&kdf, header.key_check.as_deref()).map_err(|e| match e {
        archive::ArchiveError::BadHeader(e) => failed(format!("its backup: {e}")),
        e => Failure::from(e).context(backup),
    })?;
    match &manifest.authentication {
        // The MAC's key comes from the archive key: only a key holder can make it hold, and
        // the nonce prefix in it ties it to this archive's header.
        Some(a) => {
            let prefix = header.nonce_prefix.as_deref().unwrap_or_default();
            let expected = k.manifest_mac(prefix, &manifest_bytes(value));
            if a.alg == archive::MANIFEST_MAC && archive::crypto::same_mac(&a.mac, &expected) {
                Ok(ManifestTrust::Authenticated)
            } else {
                Err(failed(
                    "fails authentication: it was changed after the backup was written, or belongs to another backup; nothing in it is used".into(),
                ))
            }
        }
        None if header.manifest.is_some() => Err(failed(
            "has no MAC although its backup was written with one: the manifest was replaced; nothing in it is used"
                .into(),
        )),
        // No MAC, and a header that says none was made: true of a backup written before
        // manifests were bound, unless the header was edited to say so. The first chunk
        // (whose associated data is the header) settles that.
        None => {
            first_chunk(key)?;
            Ok(ManifestTrust::Legacy)
        }
    }
}

/// The manifest pgdrill wrote beside a backup in a team's own format (`<file>.manifest.json`,
/// `envelope` other than pgdrill), when `path` is such a file: `None` for pgdrill's own
/// archives and for files with no manifest (another tool's). A sidecar that is there but
/// unreadable is a failed check, never a reason to treat the file as manifest-less.
pub fn sidecar(path: &Path) -> Result<Option<Manifest>, Failure> {
    // A path handed over without its view: its store is looked up by path.
    sidecar_in(&crate::storage::tree::Tree::from(path), path)
}

/// `sidecar`, for a path of `tree` (the view it was found in).
pub fn sidecar_in(tree: &crate::storage::tree::Tree, path: &Path) -> Result<Option<Manifest>, Failure> {
    let mp = layout::manifest_path(path);
    // Through `tree`: an object store's listed sidecar has no file until it is read.
    if tree.is_dir(path) || !tree.is_file(&mp) || source::origin_in(tree, path) == source::Origin::Pgdrill {
        return Ok(None);
    }
    let m = Manifest::read_in(tree, path)?;
    if m.envelope == Envelope::Pgdrill {
        return Err(Failure::failed(format!(
            "{}: says it is the manifest of a pgdrill archive, but {} is not one: the manifest belongs to another file",
            mp.display(),
            path.display()
        )));
    }
    Ok(Some(m))
}

/// `sidecar`, for a file `named` names that is not a pgdrill archive (`source::origin_of`),
/// read through its store: the manifest beside it asked for and read there, no local stand-in
/// made of either. A store that cannot answer is the environment's failure.
pub async fn sidecar_of(named: &crate::storage::Named) -> Result<Option<Manifest>, Failure> {
    let (store, key) = named.object();
    if store.head(&layout::manifest_key(&key)).await.map_err(Failure::environment)?.is_none() {
        return Ok(None);
    }
    let m = Manifest::of(named).await?;
    if m.envelope == Envelope::Pgdrill {
        return Err(Failure::failed(format!(
            "{}: says it is the manifest of a pgdrill archive, but {} is not one: the manifest belongs to another file",
            store.url_of(&layout::manifest_key(&key)),
            named.shown()
        )));
    }
    Ok(Some(m))
}

/// The manifest the layout puts beside the backup `archive` of `store`, read there, with the
/// bytes it was read from (what its MAC covers): `None` when there is none. A manifest that
/// does not parse is the backup's failure; a store that cannot answer, the environment's.
pub async fn manifest_at(
    store: &dyn crate::storage::Store,
    archive: &str,
) -> Result<Option<(Manifest, Vec<u8>)>, Failure> {
    let key = layout::manifest_key(archive);
    // As the run first saw it (a listing's answer, with no request of its own), and read as
    // that version: a manifest replaced since fails to read, never judged with the archive
    // the other one was written for.
    let Some(seen) = store.head_pinned(&key).await.map_err(Failure::environment)? else {
        return Ok(None);
    };
    let shown = store.url_of(&key);
    let r = store.open(&key, Some(0..seen.size), seen.version.as_deref()).await.map_err(Failure::environment)?;
    let bytes = tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        r.take(seen.size).read_to_end(&mut v).map(|_| v)
    })
    .await
    .map_err(|e| Failure::environment(e.to_string()))?
    .map_err(|e| Failure::environment(format!("reading {shown}: {e}")))?;
    let m = serde_json::from_slice(&bytes).map_err(|e| Failure::failed(format!("unreadable manifest {shown}: {e}")))?;
    Ok(Some((m, bytes)))
}

/// The manifest of a backup a listing found (`archive`, a path of the view `tree` it was
/// listed in), read once through the store the view is of (an object store's, for a path
/// of its mirror; a local directory's, for a file under the tree's root), never as a file of
/// a store's mirror, as `manifest_at` reads it: what a caller judges and hands on, so that
/// nothing reads it a second time. A manifest that is not there or does not parse is the
/// backup's failure; a store that cannot answer, the environment's.
pub async fn manifest_listed(tree: &crate::storage::tree::Tree, archive: &Path) -> Result<ListedManifest, Failure> {
    let local = || -> Option<(Arc<dyn crate::storage::Store>, String)> {
        let key = archive.strip_prefix(tree.root()).ok()?.to_str()?.to_string();
        Some((Arc::new(crate::storage::local::FsStore::new(tree.root())), key))
    };
    let (store, key) = tree.object(archive).or_else(local).ok_or_else(|| {
        Failure::failed(format!("missing manifest {}", tree.display(&layout::manifest_path(archive))))
    })?;
    match manifest_at(&*store, &key).await? {
        Some((manifest, text)) => Ok(ListedManifest { store, archive: key, manifest, text }),
        None => Err(Failure::failed(format!("missing manifest {}", store.url_of(&layout::manifest_key(&key))))),
    }
}

/// A listed backup's manifest read through its store (`manifest_listed`).
#[derive(Clone)]
pub struct ListedManifest {
    /// The store holding the backup, and the archive's key there.
    pub store: Arc<dyn crate::storage::Store>,
    pub archive: String,
    pub manifest: Manifest,
    /// The bytes it was read from (what its MAC covers).
    pub text: Vec<u8>,
}

impl ListedManifest {
    /// The manifest judged against its archive's header (see `authenticate_manifest_in`),
    /// the header read through the store from the version the run first saw, the manifest
    /// not read again.
    pub async fn judged(&self, key: Option<&KeySource>) -> Result<ManifestTrust, Failure> {
        let shown = self.store.url_of(&layout::manifest_key(&self.archive));
        let meta = self.store.head_pinned(&self.archive).await.map_err(Failure::environment)?.ok_or_else(|| {
            Failure::failed(format!("{shown}: its backup {} is not there", self.store.url_of(&self.archive)))
        })?;
        authenticate_manifest_seen(&*self.store, &self.archive, &meta, &self.text, key).await
    }
}

impl Manifest {
    /// The name whose folder holds this backup.
    pub fn stored_as(&self) -> &str {
        self.stored_as.as_deref().unwrap_or(&self.database)
    }

    pub fn read(backup: &Path) -> Result<Manifest, Failure> {
        // A path handed over without its view: its store is looked up by path.
        Manifest::read_in(&crate::storage::tree::Tree::default(), backup)
    }

    /// `read`, the manifest found through `tree`, the view `backup` was listed in.
    pub fn read_in(tree: &crate::storage::tree::Tree, backup: &Path) -> Result<Manifest, Failure> {
        let p = layout::manifest_path(backup);
        // Listed from a store without its bytes (issue 41): read them now, once.
        tree.materialize(&p).map_err(Failure::environment)?;
        let text = std::fs::read_to_string(&p)
            .map_err(|e| Failure::failed(format!("missing manifest {}: {e}", p.display())))?;
        serde_json::from_str(&text).map_err(|e| Failure::failed(format!("unreadable manifest {}: {e}", p.display())))
    }

    /// The manifest of the backup `named` names, read through its store (the object the
    /// layout puts beside it): nothing of the backup itself is read, no local stand-in made.
    /// A manifest that is not there or does not parse is the backup's failure; a store that
    /// cannot answer, the environment's.
    pub async fn of(named: &crate::storage::Named) -> Result<Manifest, Failure> {
        let (store, key) = named.object();
        match manifest_at(&*store, &key).await? {
            Some((m, _)) => Ok(m),
            None => Err(Failure::failed(format!("missing manifest {}", store.url_of(&layout::manifest_key(&key))))),
        }
    }

    /// Tables (ordinary and partitioned) the schema fingerprint lists.
    pub fn table_count(&self) -> Option<usize> {
        let fp = self.fingerprint.as_ref()?;
        Some(fp.schema.get("tables")?.iter().filter(|l| l.ends_with(" r") || l.ends_with(" p")).count())
    }
}

/// Options for `create`.
#[derive(Debug, Clone)]
pub struct CreateOptions {
    pub url: String,
    /// Where the backup goes (`storage::open`: a local directory or an object store): written
    /// through its `Writer`, so nothing is under the final name until it is published.
    pub storage: Arc<dyn crate::storage::Store>,
    pub format: Format,
    pub codec: Codec,
    pub level: i32,
    pub threads: u32,
    /// pg_dump -j for the directory format.
    pub jobs: u32,
    pub key: Option<KeySource>,
    pub fingerprint: Mode,
    pub pg_dump: Option<PathBuf>,
    /// Name of the storage directory (default: the database name).
    pub name: Option<String>,
    /// Counts pg_dump's bytes as they stream (its total estimated from the previous backup
    /// of the same database).
    pub meter: Option<crate::progress::Meter>,
}

/// A team's own name and format for a backup (issue 40, item 2); the default is pgdrill's
/// archive under pgdrill's layout.
#[derive(Clone, Default)]
pub struct Output {
    pub envelope: Envelope,
    /// A writing name pattern (`envelope::render_name`): the file goes straight into the
    /// storage folder under that name, never beside another (no `-N`).
    pub name_pattern: Option<String>,
    /// The passphrase `openssl` and `gpg` encrypt with.
    pub passphrase: Option<String>,
    /// Keep the backup and its manifest from deletion (S3 Object Lock), checked before the
    /// dump starts.
    pub retention: Option<Retention>,
    /// The run's evidence log head, written into the manifest (`Manifest::evidence`).
    pub evidence: Option<EvidenceHead>,
}

/// An Object Lock retention asked for a backup: the storage location as given (with the
/// options that say where its bucket is), the mode and how long from the backup.
#[derive(Debug, Clone)]
pub struct Retention {
    pub location: String,
    pub mode: crate::storage::lock::Mode,
    pub retain: std::time::Duration,
}

impl Retention {
    /// The bucket's lock, opened before anything is written: a store that cannot keep the
    /// retention (no Object Lock, a directory, Azure, GCS) is refused (exit 2) before the dump
    /// or the base backup starts, nothing written.
    pub(crate) async fn open(&self) -> Result<crate::storage::lock::Locked, Failure> {
        crate::storage::lock::Locked::open(&self.location).await.map_err(crate::Error::into_failure)
    }

    /// Lock the published backup `key` (still the version with `etag`, when known), said as
    /// `shown`: the date it is retained until.
    pub(crate) async fn retain_backup(
        &self,
        l: &crate::storage::lock::Locked,
        key: &str,
        etag: Option<&str>,
        shown: &str,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, crate::Error> {
        let until = crate::storage::lock::retain_until(self.retain);
        let (version, until) = l.retain(key, etag, self.mode, &until).await?;
        log(format!(
            "retained {shown} (version {version}) in {} mode until {until}",
            self.mode.header().to_ascii_lowercase()
        ));
        Ok(until)
    }

    /// Lock the manifest `key` of the backup `backup` (retained until `until` already) as long
    /// as its backup: without it the backup cannot be verified.
    pub(crate) async fn retain_manifest(
        &self,
        l: &crate::storage::lock::Locked,
        key: &str,
        until: &str,
        backup: &str,
        shown: &str,
        log: &(dyn Fn(String) + Send + Sync),
    ) -> Result<(), Failure> {
        let (version, _) = l.retain(key, None, self.mode, until).await.map_err(|e| {
            Failure::environment(format!(
                "{e}; the backup {backup} is whole and retained, its manifest is not: set its retention by hand"
            ))
        })?;
        log(format!("retained {shown} (version {version}) until {until}"));
        Ok(())
    }
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("envelope", &self.envelope)
            .field("name_pattern", &self.name_pattern)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "(secret)"))
            .field("retention", &self.retention)
            .field("evidence", &self.evidence)
            .finish()
    }
}

/// What the dump's pipeline hands back: the writer, still to be published, the sizes, the
/// archive's sha256 and its first bytes (its header, for the manifest).
type Piped = (Box<dyn crate::storage::Writer>, Sizes, String, Vec<u8>);

/// The result of `create`.
#[derive(Debug, Clone)]
pub struct Created {
    pub path: PathBuf,
    pub manifest: Manifest,
    /// What the operator must act on about this backup (its database's locale unread,
    /// password verifiers left out): the step that asked for it warns of each.
    pub warnings: Vec<String>,
}

/// A staged file or directory (`.0`, not yet created), inside a private directory of its
/// own (`storage::private_dir`: mode 0700, owner recorded in its name, reaped after a
/// crash); both are removed on drop and at process exit. Plaintext only ever lives here.
pub(crate) struct Staged(pub(crate) PathBuf, PathBuf);

impl Staged {
    pub(crate) fn new(dir: &Path, suffix: &str) -> Result<Staged, Failure> {
        let private = crate::storage::private_dir(dir, "stage")
            .map_err(|e| Failure::environment(format!("cannot stage in {}: {e}", dir.display())))?;
        crate::on_exit::track(&private);
        Ok(Staged(private.join(format!("staged{suffix}")), private))
    }

    /// Create the staged file, readable by its owner only.
    pub(crate) fn create_file(&self) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&self.0)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.1);
        crate::on_exit::untrack(&self.1);
    }
}

/// A dump staged by `check_and_stage`, and how many data offsets were written into it (or
/// why none were).
pub(crate) struct StagedDump {
    pub(crate) file: Staged,
    pub(crate) offsets: Result<usize, String>,
}

/// Passes writes on, keeping the first `MAX_HEADER` + 13 bytes (an archive's magic, header
/// length and header): what a manifest's MAC is bound to. Dumps and base backups both
/// write through it.
pub(super) struct HeadTee<W> {
    pub(super) inner: W,
    pub(super) head: Vec<u8>,
}

impl<W: Write> Write for HeadTee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let room = (archive::MAX_HEADER as usize + 13).saturating_sub(self.head.len());
        self.head.extend_from_slice(&buf[..n.min(room)]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Kills pg_dump if the backup is abandoned (error, cancellation).
struct ChildGuard {
    pid: u32,
    done: Arc<AtomicBool>,
    cancelled: Arc<AtomicBool>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.done.load(Ordering::SeqCst) {
            self.cancelled.store(true, Ordering::SeqCst);
            // pg_dump runs in its own process group: kill the group, so a wrapper script's
            // children (or pg_dump's) do not keep the pipe open.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The time a backup's name starts with (`20261121T154500.123Z`): dumps and base backups
/// alike, so one reader (`names::pgdrill_stamp`) dates both.
fn stamp(t: OffsetDateTime) -> String {
    crate::util::compact_utc(t, true)
}

/// The PostgreSQL `major` tools' image holding `tool` (the image, the tool's version), asked
/// once the local `tool` was not found (`local`); when Docker has none either, one
/// environment error says both.
fn tool_from_image(tool: &str, major: u32, local: Failure) -> Result<(String, String), Failure> {
    crate::pg::image_tools::find(tool, major).map_err(|why| {
        Failure::environment(format!("{local}; the tools of PostgreSQL {major} cannot come from Docker either: {why}"))
    })
}

/// Take a backup.
pub async fn create(opts: CreateOptions, log: &(dyn Fn(String) + Send + Sync)) -> Result<Created, Failure> {
    create_as(opts, Output::default(), log).await
}

/// Take a backup in `output`'s name and format.
pub async fn create_as(
    opts: CreateOptions,
    output: Output,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<Created, Failure> {
    let envelope = output.envelope;
    if envelope != Envelope::Pgdrill {
        if opts.format == Format::Directory {
            return Err(Failure::invalid(format!(
                "format directory is stored in pgdrill's own archive only (a bare tar of a directory dump is no file pg_restore reads): use format custom or plain with envelope {}",
                envelope.name()
            )));
        }
        if envelope.needs_passphrase() && output.passphrase.as_deref().is_none_or(str::is_empty) {
            return Err(Failure::invalid(format!(
                "envelope {} encrypts with a passphrase: give `key:` (PGDRILL_BACKUP_KEY for the shipped backup runbook)",
                envelope.name()
            )));
        }
    }
    // A retention the store cannot keep is refused before pg_dump takes its snapshot: a
    // backup written where it can be deleted, when the runbook asked otherwise, is a promise
    // broken silently.
    let locked = match &output.retention {
        Some(r) => Some(r.open().await?),
        None => None,
    };
    let started_at = OffsetDateTime::now_utc();
    let started = Instant::now();
    crate::pg::config(&opts.url).map_err(|e| e.in_class(Class::Invalid))?;
    let client = crate::pg::connect(&opts.url).await?;
    let env_err = |e: tokio_postgres::Error| Failure::environment(crate::pg::describe(&e));
    let row = client
        .query_one(
            "select current_setting('server_version'), current_setting('server_version_num')::int, current_database()",
            &[],
        )
        .await
        .map_err(env_err)?;
    let server_version: String = row.get(0);
    let server_major = (row.get::<_, i32>(1) / 10000) as u32;
    let database: String = row.get(2);

    // A pg_dump older than the server cannot dump it: fail before anything is written.
    // Without tools of the server's major here, that major's image runs them.
    let container = crate::pg::container_of(&opts.url);
    let local = match &container {
        Some(_) => Err(Failure::environment(String::new())),
        None => find_tool("pg_dump", opts.pg_dump.as_deref(), server_major),
    };
    let (pg_dump, pg_dump_version, dump_image) = match (&container, local) {
        // A database in a container is dumped by the container's own pg_dump.
        (Some(t), _) => {
            let t = t.clone();
            let v = tokio::task::spawn_blocking(move || {
                t.tool_version("pg_dump").map(|v| format!("{v} (in {})", t.label()))
            })
            .await
            .map_err(|e| Failure::environment(e.to_string()))?
            .map_err(Failure::environment)?;
            (PathBuf::from("pg_dump"), v, None)
        }
        (None, Ok((p, v, _))) => (p, v, None),
        (None, Err(local)) if local.class == Class::Environment && opts.pg_dump.is_none() => {
            let (image, version) = tool_from_image("pg_dump", server_major, local)?;
            (PathBuf::from("pg_dump"), format!("{version} (from the image {image})"), Some(image))
        }
        (None, Err(e)) => return Err(e),
    };
    if container.is_some() && opts.format == Format::Directory {
        return Err(Failure::invalid(
            "format directory needs pg_dump's workers writing files on this machine, and a container target dumps inside its container: use format custom"
        ));
    }
    if dump_image.is_some() && opts.format == Format::Directory {
        return Err(Failure::invalid(format!(
            "format directory needs a local pg_dump {server_major} (its parallel workers write files here); use format custom, or install the PostgreSQL {server_major} client tools"
        )));
    }
    let key = match (&opts.key, envelope) {
        (Some(k), Envelope::Pgdrill) => Some(k.derive_new().map_err(Failure::invalid)?),
        _ => None,
    };
    // Beside the derivation above (a passphrase's fingerprint is one more Argon2id): on the
    // same thread, so its memory is the same arena's. An outside tool's passphrase is named
    // the same way, so an operator knows which one a file needs.
    let key_fingerprint = match envelope {
        Envelope::Pgdrill => opts.key.as_ref().map(KeySource::fingerprint),
        e if e.needs_passphrase() => output.passphrase.as_deref().map(|p| KeySource::from_secret(p).fingerprint()),
        _ => None,
    };

    // One snapshot for pg_dump and the fingerprint.
    client.batch_execute("begin isolation level repeatable read read only").await.map_err(env_err)?;
    let snapshot: String = client.query_one("select pg_export_snapshot()", &[]).await.map_err(env_err)?.get(0);
    // Before pg_dump reads them: see `fingerprint::sequence_positions`.
    let sequences = fingerprint::sequence_positions(&client).await.map_err(env_err)?;
    log(format!("{pg_dump_version}; server {server_version}; snapshot {snapshot}"));

    let store = opts.storage.clone();
    let dir_name = opts.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| database.clone());
    if dir_name.is_empty() {
        return Err(Failure::environment(format!(
            "cannot write to {}: an empty database name has no folder",
            store.url()
        )));
    }
    let folder = layout::folder_name(&dir_name);
    // pg_dump says nothing of how much is left: the previous backup's plain size is the
    // estimate (none for a first backup: bytes and throughput only), where the store is a
    // directory here (an object store's would cost a listing).
    if let (Some(m), Some(root)) = (&opts.meter, store.local_path("")) {
        let previous = LocalStore::new(root)
            .list(Some(&dir_name))
            .ok()
            .and_then(|l| l.into_iter().find(|e| !e.foreign))
            .and_then(|e| Manifest::read(&e.path).ok());
        m.set_total(previous.map(|p| p.sizes.raw));
    }
    let meter = opts.meter.clone();
    let stored_as = (dir_name != database).then(|| dir_name.clone());
    // The directory format is written by pg_dump's parallel workers into a staging directory
    // beside the final file where the store is a directory here (same disk), else in the
    // temporary directory; then streamed as tar; it is removed whatever happens.
    let stage = match opts.format {
        Format::Directory => Some(Staged::new(&store.local_path(&folder).unwrap_or_else(std::env::temp_dir), ".dir")?),
        _ => None,
    };
    let name_stamp = stamp(started_at);
    let ext = opts.format.ext();
    // A team's own name: straight into the storage folder, checked before pg_dump starts.
    let own_name = match &output.name_pattern {
        Some(p) => {
            let n = envelope::render_name(p, &dir_name, started_at).map_err(Failure::invalid)?;
            if let Some(why) = envelope::ending_disagrees(&n, envelope, opts.codec) {
                return Err(Failure::invalid(format!("name_pattern `{p}` gives `{n}`: {why}")));
            }
            Some(n)
        }
        None if envelope != Envelope::Pgdrill => {
            return Err(Failure::invalid(format!(
                "envelope {} writes a team's own file: give `name_pattern` too (e.g. `{{db}}_{{YYYY}}{{MM}}{{DD}}_{{hh}}{{mm}}{{ss}}.sql.gz`), the name their own commands and globs find",
                envelope.name()
            )))
        }
        None => None,
    };
    // Under a name no backup (nor manifest) has yet: the stamp, then `-1`, `-2`... The writer
    // starts now: nothing is visible under the name until it is published, and an error or a
    // cancellation drops it, which aborts it.
    let key_of = |n: usize| match n {
        0 => format!("{folder}/{name_stamp}.{ext}"),
        n => format!("{folder}/{name_stamp}-{n}.{ext}"),
    };
    let taken = |object: String| {
        let store = store.clone();
        async move {
            Ok::<bool, Failure>(
                store.head(&object).await.map_err(Failure::environment)?.is_some()
                    || store.head(&layout::manifest_key(&object)).await.map_err(Failure::environment)?.is_some(),
            )
        }
    };
    let (object, others) = match &own_name {
        // A team's name goes straight into the location, where their listing looks; it is
        // that name or nothing: a second backup in the same second is refused.
        Some(own) => {
            if taken(own.clone()).await? {
                return Err(Failure::failed(format!(
                    "{} exists already: the name pattern gives no other name to this backup (add {{ss}}, or wait)",
                    store.url_of(own)
                )));
            }
            (own.clone(), Vec::new())
        }
        None => {
            let mut n = 0;
            let object = loop {
                let object = key_of(n);
                if !taken(object.clone()).await? {
                    break object;
                }
                n += 1;
            };
            // Where another backup of the same millisecond takes the name meanwhile, the next ones.
            let others: Vec<String> = (n + 1..n + 1000).map(key_of).collect();
            (object, others)
        }
    };
    let writer = store.create(&object).await.map_err(Failure::environment)?;
    let mut cmd = crate::child::command(&pg_dump);
    // The database as data, never connection syntax (see `dbname_arg`).
    cmd.arg(format!("--snapshot={snapshot}")).arg("--no-password").arg("-d").arg(crate::pg::dbname_arg(&database));
    match (&opts.format, &stage) {
        // Compression happens in our pipeline, with zstd and in parallel.
        (Format::Custom, _) => cmd.args(["-Fc", "-Z0"]),
        (Format::Plain, _) => cmd.args(["-Fp"]),
        (Format::Directory, Some(st)) => {
            cmd.args(["-Fd", "-Z0", "-j", &opts.jobs.max(1).to_string(), "-f"]).arg(&st.0).stdout(Stdio::null())
        }
        (Format::Directory, None) => unreachable!("a directory dump always has a staging directory"),
    };
    // Connection through the environment, never argv (visible in ps).
    crate::pg::libpq_env(&mut cmd, &opts.url, &database);
    // Kept until pg_dump ends: docker reads it when the container starts.
    let mut _env_file = None;
    if let Some(image) = &dump_image {
        let (c, f) = crate::pg::image_tools::in_image(&cmd, image, &[]).map_err(Failure::environment)?;
        cmd = c;
        _env_file = Some(f);
    }
    if let Some(c) = crate::pg::in_container(&cmd, &opts.url, &database).map_err(Failure::environment)? {
        cmd = c;
    }
    cmd.stdin(Stdio::null()).stderr(Stdio::piped()).process_group(0);
    if stage.is_none() {
        cmd.stdout(Stdio::piped());
    }
    let mut child = crate::child::spawn(&mut cmd)
        .map_err(|e| Failure::environment(format!("cannot run {}: {e}", pg_dump.display())))?;
    let done = Arc::new(AtomicBool::new(false));
    let cancelled = Arc::new(AtomicBool::new(false));
    let guard = ChildGuard { pid: child.id(), done: done.clone(), cancelled: cancelled.clone() };

    let stdout = child.stdout.take();
    let stderr_thread = stderr_of(&mut child);
    let stage_path = stage.as_ref().map(|s| s.0.clone());
    let mac_key = key.clone();
    let wopts = WriteOptions { codec: opts.codec, level: opts.level, threads: opts.threads, key };
    let passphrase = output.passphrase.clone();
    let cancel_flag = cancelled.clone();
    let pipeline = tokio::task::spawn_blocking(move || -> Result<Piped, Failure> {
        // The archive's first bytes are kept: its header, for the manifest, without asking
        // a store for what was just sent (an archive class would refuse the read).
        let out =
            HeadTee { inner: archive::HashWriter::new(BufWriter::with_capacity(1 << 20, writer)), head: Vec::new() };
        let written = match (stdout, stage_path) {
            (Some(stdout), _) => {
                let pass = passphrase.as_deref();
                match meter {
                    Some(m) => envelope::write(crate::progress::Counted::new(stdout, m), out, &wopts, envelope, pass),
                    None => envelope::write(stdout, out, &wopts, envelope, pass),
                }
            }
            (None, Some(dir)) => {
                let status = child.wait().map_err(|e| Failure::environment(format!("waiting for pg_dump: {e}")))?;
                if !status.success() || cancel_flag.load(Ordering::SeqCst) {
                    let errors = stderr_thread.join().unwrap_or_default();
                    return Err(pg_dump_failed(status, &errors));
                }
                tar_stream(&dir, out, &wopts)
            }
            (None, None) => return Err(Failure::environment("pg_dump has no stdout")),
        };
        let status = child.wait();
        let errors = stderr_thread.join().unwrap_or_default();
        let status = status.map_err(|e| Failure::environment(format!("waiting for pg_dump: {e}")))?;
        // A failed write (disk full) kills pg_dump with SIGPIPE: report the cause, not that.
        let (hw, sizes) = written.map_err(|e| Failure::environment(format!("writing the backup: {e}")))?;
        if !status.success() || cancel_flag.load(Ordering::SeqCst) {
            return Err(pg_dump_failed(status, &errors));
        }
        let HeadTee { inner: hw, head } = hw;
        let (bw, sha, _) = hw.finish();
        let writer = bw.into_inner().map_err(|e| Failure::environment(format!("writing the backup: {}", e.error())))?;
        // Written whole (a local file in its private partial file; an upload's last part
        // not sent yet), nothing under its final name.
        crate::util::test_pause("backup-written");
        Ok((writer, sizes, sha, head))
    });

    let fp = fingerprint::compute_with(&client, opts.fingerprint, Some(sequences)).await;
    // In the same snapshot: the roles and settings the dump's owners and grants name.
    let globals = crate::pg::globals::capture(&client).await;
    let properties = DatabaseProperties::capture(&client).await;
    let piped = pipeline.await.map_err(|e| Failure::environment(format!("backup pipeline: {e}")))?;
    drop(stage);
    done.store(true, Ordering::SeqCst);
    drop(guard);
    let _ = client.batch_execute("commit").await;
    let fingerprint = fp.map_err(|e| Failure::environment(format!("fingerprint: {}", crate::pg::describe(&e))));
    let globals = globals.map_err(|e| Failure::environment(format!("roles and settings: {}", crate::pg::describe(&e))));
    let (writer, sizes, sha256, head, fingerprint, globals) = match (piped, fingerprint, globals) {
        (Ok((w, s, h, head)), Ok(f), Ok(g)) => (w, s, h, head, f, g),
        (Ok((w, ..)), Err(e), _) | (Ok((w, ..)), _, Err(e)) => {
            // Nothing under the final name: an upload's parts are dropped by the store.
            w.abort().await;
            return Err(e);
        }
        // The writer was dropped in the pipeline, which aborts it (an upload that failed
        // first names itself in the write error: the writer only saw it stop).
        (Err(e), _, _) => return Err(e),
    };

    let mut warnings = Vec::new();
    let database_properties = match properties {
        Ok(p) => {
            log(format!("database properties: {}", p.summary()));
            Some(p)
        }
        Err(e) => {
            warnings.push(format!(
                "the database's encoding and locale could not be read ({}): verify will use its server's defaults",
                crate::pg::describe(&e)
            ));
            None
        }
    };
    let (globals, left_out) = crate::pg::globals::keep(globals, mac_key.as_ref());
    log(format!("globals: {}", globals.summary()));
    warnings.extend(left_out);
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        pgdrill_version: env!("CARGO_PKG_VERSION").into(),
        database,
        server_version,
        server_major,
        pg_dump_version,
        format: opts.format,
        stored: Stored {
            codec: opts.codec,
            level: opts.level,
            cipher: envelope.cipher(opts.key.is_some()).into(),
            kdf: None,
            sizes,
            sha256: sha256.clone(),
            started_at,
            finished_at: OffsetDateTime::now_utc(),
        },
        snapshot,
        fingerprint,
        stored_as,
        authentication: None,
        globals: Some(globals),
        key_fingerprint,
        database_properties,
        envelope,
        evidence: output.evidence.clone(),
    };
    // The manifest is whole before anything is published: pgdrill's archive's MAC binds the
    // header, whose bytes the pipeline kept; a team's file has neither.
    let header = archive::read_header(&mut std::io::Cursor::new(head)).ok().map(|(h, _)| h);
    let mut manifest = manifest;
    manifest.kdf = header.as_ref().and_then(|h| h.kdf.clone());
    if let (Some(k), Some(prefix)) = (&mac_key, header.as_ref().and_then(|h| h.nonce_prefix.clone())) {
        let value = serde_json::to_value(&manifest).map_err(|e| Failure::environment(e.to_string()))?;
        manifest.authentication = Some(ManifestAuth {
            alg: archive::MANIFEST_MAC.into(),
            mac: k.manifest_mac(&prefix, &manifest_bytes(value)),
        });
    }
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Failure::environment(e.to_string()))?;
    // A team's file is read by the team's own commands and globs, which know nothing of
    // commit markers: published before its sidecar, a kill in between left a whole file
    // that verify took for another tool's. Its sidecar goes first (its name is fixed, and
    // taken only when neither exists): a sidecar without its file is no backup, listed as
    // unfinished and removed by prune, so no team file is ever under its name alone.
    let sidecar_first = own_name.is_some();
    let manifest_key = layout::manifest_key(&object);
    if sidecar_first {
        if let Err(e) = store.put_new(&manifest_key, json.clone()).await {
            writer.abort().await;
            return Err(Failure::environment(format!("writing the sidecar manifest: {e}")));
        }
        crate::util::test_pause("backup-sidecar-written");
    }
    // Published under its name (a rename that never replaces a file, a completed upload),
    // then proven to hold what was written before its manifest makes it a backup: a store
    // that corrupts or truncates is caught here, not at the restore that needs it.
    let published = match writer.publish_new(&others).await {
        Ok(p) => p,
        Err(e) => {
            if sidecar_first {
                let _ = store.delete(&manifest_key).await;
            }
            return Err(Failure::environment(e));
        }
    };
    crate::util::test_pause("backup-uploaded");
    match store.check_published(&published, sizes.stored, &sha256).await {
        Ok(Some(line)) => log(line),
        Ok(None) => {}
        // Left without its manifest: unfinished, never a backup (prune removes it). A team's
        // file has its sidecar already: the file goes, then the sidecar, never the other
        // way round (a file that cannot be removed keeps the sidecar verify checks it by).
        Err(crate::storage::Unproven::Unread(e)) => {
            if sidecar_first && store.delete(&published.key).await.is_ok() {
                let _ = store.delete(&manifest_key).await;
            }
            return Err(Failure::environment(e));
        }
        Err(crate::storage::Unproven::Differs(e)) => {
            if store.delete(&published.key).await.is_ok() && sidecar_first {
                let _ = store.delete(&manifest_key).await;
            }
            return Err(Failure::environment(format!("{e}: the object was removed")));
        }
    }
    crate::util::test_pause("backup-read-back");
    // Locked before its manifest makes it a backup: one that cannot be locked is removed
    // (it has no manifest yet), never left looking kept.
    let retained = match (&locked, &output.retention) {
        (Some(l), Some(r)) => {
            let shown = store.url_of(&published.key);
            match r.retain_backup(l, &published.key, published.etag.as_deref(), &shown, log).await {
                Ok(until) => Some((l, r, until)),
                Err(e) => {
                    if store.delete(&published.key).await.is_ok() && sidecar_first {
                        let _ = store.delete(&manifest_key).await;
                    }
                    return Err(e.into_failure());
                }
            }
        }
        _ => None,
    };
    let object = published.key;
    let path = PathBuf::from(store.url_of(&object));
    // Created, never replacing an object; without it the backup is removed (a backup
    // without its manifest cannot be verified: it must not look complete).
    if !sidecar_first {
        if let Err(e) = store.put_new(&layout::manifest_key(&object), json).await {
            let _ = store.delete(&object).await;
            return Err(Failure::environment(format!("writing the manifest: {e}")));
        }
    }
    // The manifest kept as long as its backup: without it the backup cannot be verified.
    if let Some((l, r, until)) = retained {
        let key = layout::manifest_key(&object);
        r.retain_manifest(l, &key, &until, &path.display().to_string(), &store.url_of(&key), log).await?;
    }
    crate::util::test_pause("backup-committed");
    // Where it went and what it cost, in the units people read.
    let ratio = if manifest.sizes.stored > 0 { manifest.sizes.raw as f64 / manifest.sizes.stored as f64 } else { 0.0 };
    log(format!(
        "wrote {} ({}; pg_dump produced {}, {ratio:.1}x smaller) in {:.1} s, {}; peak RSS {}",
        path.display(),
        crate::util::human_bytes(manifest.sizes.stored),
        crate::util::human_bytes(manifest.sizes.raw),
        started.elapsed().as_secs_f64(),
        match (&manifest.key_fingerprint, envelope) {
            (Some(fp), Envelope::Pgdrill) if manifest.cipher != "none" => format!("encrypted with key {fp}"),
            (Some(fp), e) if e.needs_passphrase() => {
                format!("encrypted by {} with passphrase {fp}; its manifest is a sidecar no MAC binds", e.name())
            }
            _ => "NOT encrypted".to_string(),
        },
        crate::util::human_bytes(peak_rss_kib().unwrap_or(0) * 1024),
    ));
    Ok(Created { path, manifest, warnings })
}

fn pg_dump_failed(status: std::process::ExitStatus, errors: &str) -> Failure {
    Failure::failed(format!("pg_dump failed ({status}): {}", stderr_tail(errors, 5)))
}

/// The last `n` non-blank lines of a tool's stderr, on one line, for a step's message.
pub(crate) fn stderr_tail(stderr: &str, n: usize) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// Collect a child's stderr on a thread, so a chatty tool never blocks on a full pipe.
pub(crate) fn stderr_of(child: &mut std::process::Child) -> std::thread::JoinHandle<String> {
    let err = child.stderr.take();
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = err {
            let _ = e.read_to_string(&mut s);
        }
        s
    })
}

/// A directory dump as a tar stream through the archive pipeline; memory stays flat (the
/// tar writer and the archive writer meet at a pipe).
fn tar_stream<W: Write>(dir: &Path, out: W, wopts: &WriteOptions) -> std::io::Result<(W, Sizes)> {
    let dir = dir.to_path_buf();
    piped_tar(out, wopts, move |b| {
        b.follow_symlinks(false);
        b.append_dir_all(".", &dir)
    })
}

/// A tar that `fill` writes on a thread of its own, through the archive pipeline: the tar
/// writer and the archive writer meet at a pipe, so memory stays flat whatever the size.
/// The archive's error comes first; a tar writer that failed fails it too.
fn piped_tar<W: Write>(
    out: W,
    wopts: &WriteOptions,
    fill: impl FnOnce(&mut tar::Builder<std::io::PipeWriter>) -> std::io::Result<()> + Send + 'static,
) -> std::io::Result<(W, Sizes)> {
    let (reader, writer) = std::io::pipe()?;
    let tarrer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut b = tar::Builder::new(writer);
        fill(&mut b)?;
        b.into_inner()?.flush()
    });
    let written = archive::write(reader, out, wopts);
    let tarred = tarrer.join().map_err(|_| std::io::Error::other("the tar writer panicked"))?;
    let written = written?;
    tarred?;
    Ok(written)
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct Checked {
    /// None for a backup made by another tool.
    pub manifest: Option<Manifest>,
    pub tables: usize,
    /// Layers read through (`openssl`, `gzip` ...), for foreign backups.
    pub layers: Vec<&'static str>,
    /// How far the manifest could be authenticated (pgdrill backups).
    pub trust: Option<ManifestTrust>,
    /// The dump's own grants by object, read from its ACL entries (another tool's dump, whose
    /// script is read whole); None for pgdrill's archives, whose manifest is the ground truth.
    pub privileges: Option<complete::Privileges>,
}

/// Check any backup: a pgdrill archive fully (`check`), another tool's dump as far as it
/// can be without a manifest: every byte read through its compression and encryption, and
/// its table of contents readable. `secret` is the pgdrill key or the openssl passphrase.
/// With `stage` (a directory) the plaintext of a custom-format dump is kept
/// there while it is checked, so a parallel restore can start from it without reading and
/// decrypting the backup a second time. Nothing is staged for a file pg_restore can read as
/// it is (an unencrypted, uncompressed custom dump), nor for SQL scripts (psql streams
/// them) and directory dumps. The staged file is removed when the returned guard drops.
pub(crate) fn check_and_stage(
    path: &Path,
    secret: Option<&str>,
    stage: Option<&Path>,
    meter: Option<&crate::progress::Meter>,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    let secret = secret.filter(|s| !s.is_empty());
    let key = secret.map(KeySource::from_secret);
    if source::origin(path) == source::Origin::Pgdrill {
        return check_inner(path, key.as_ref(), stage, meter);
    }
    if let Some(m) = sidecar(path)? {
        return check_sidecar(path, m, key.as_ref(), secret, stage, meter);
    }
    if let source::Located::Directory(dir) = source::locate(path)? {
        let (pg_restore, _, _) = find_tool("pg_restore", None, 0)?;
        let mut cmd = crate::child::command(&pg_restore);
        cmd.arg(&dir);
        let (tables, privileges) = script_tables(cmd, None).map_err(|e| e.context(path.display()))?;
        let privileges = Some(privileges);
        return Ok((Checked { manifest: None, tables, layers: vec!["directory"], trust: None, privileges }, None));
    }
    check_opened(path, source::open(path, key.as_ref(), secret)?, stage, true)
}

/// A team's own format written by pgdrill (`sidecar`), checked as far as pgdrill's own: the
/// stored bytes against the manifest's sha256 (a cut or altered file fails here, whatever
/// its envelope), every layer read to its end (`check_opened`: gzip's and zstd's checksums,
/// openssl's padding, gpg's MDC, pg_dump's completion line), and the dump's tables against
/// the manifest's count.
fn check_sidecar(
    path: &Path,
    manifest: Manifest,
    key: Option<&KeySource>,
    secret: Option<&str>,
    stage: Option<&Path>,
    meter: Option<&crate::progress::Meter>,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    let failed = |m: String| Failure::failed(format!("{}: {m}", path.display()));
    let meter = meter.cloned().unwrap_or_default();
    meter.set_total(std::fs::metadata(path).ok().map(|m| 2 * m.len()));
    let f = std::fs::File::open(path).map_err(|e| failed(format!("cannot open: {e}")))?;
    matches_sidecar(path, &manifest, crate::progress::Counted::new(f, meter))?;
    let (checked, staged) = check_opened(path, source::open(path, key, secret)?, stage, true)?;
    tables_match(&manifest, checked.tables, &path.display().to_string())?;
    Ok((Checked { manifest: Some(manifest), trust: Some(ManifestTrust::Sidecar), ..checked }, staged))
}

/// The stored bytes `stored` reads (a team's own format's, `shown`) against the sha256 its
/// sidecar `manifest` holds: a cut or altered file, or another file under its name, fails
/// here whatever its envelope.
fn matches_sidecar(shown: &Path, manifest: &Manifest, stored: impl Read) -> Result<(), Failure> {
    let mut hr = archive::HashReader::new(BufReader::with_capacity(1 << 20, stored));
    std::io::copy(&mut hr, &mut std::io::sink()).map_err(|e| io_error(&format!("reading {}", shown.display()), e))?;
    let (sha, _) = hr.finish();
    if sha != manifest.sha256 {
        return Err(Failure::failed(format!(
            "{}: sha256 {sha} does not match its manifest's {}: corrupted backup (cut short, altered, or not the file the manifest was written for)",
            shown.display(),
            manifest.sha256
        )));
    }
    Ok(())
}

/// Check another tool's file in an object store, read as a stream (twice or more only for
/// openssl's legacy key derivations); `shown` names it. A team's own format pgdrill wrote
/// (`sidecar`, its manifest read through the store) is checked as far as `check_sidecar`
/// checks one here: its stored bytes read once more for their sha256, its tables against
/// the manifest's count. Nothing of it is written locally except what `stage` asks. A
/// store that fails mid-read is an environment error.
pub(crate) fn check_foreign_stream(
    shown: &Path,
    opener: &crate::storage::StoreOpener,
    sidecar: Option<Manifest>,
    secret: Option<&str>,
    stage: Option<&Path>,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    let secret = secret.filter(|s| !s.is_empty());
    let key = secret.map(KeySource::from_secret);
    let open = || opener.open().map_err(Failure::environment);
    let r = (|| {
        if let Some(m) = &sidecar {
            matches_sidecar(shown, m, open()?)?;
        }
        let (checked, staged) =
            check_opened(shown, source::open_from(shown, &open, key.as_ref(), secret)?, stage, false)?;
        let Some(m) = sidecar else { return Ok((checked, staged)) };
        tables_match(&m, checked.tables, &shown.display().to_string())?;
        Ok((Checked { manifest: Some(m), trust: Some(ManifestTrust::Sidecar), ..checked }, staged))
    })();
    match (r, opener.store_failed()) {
        (Err(_), Some(m)) => Err(Failure::environment(format!("reading {}: {m}", shown.display()))),
        (r, _) => r,
    }
}

/// Count the tables of another tool's opened dump, staging a custom one when asked (unless
/// it is a plain custom-format file here, which pg_restore reads in place).
fn check_opened(
    path: &Path,
    mut opened: source::Opened,
    stage: Option<&Path>,
    local: bool,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    let failed = |m: String| Failure::failed(format!("{}: {m}", path.display()));
    let layers = opened.layers.clone();
    let mut staged = None;
    let (tables, privileges) = match opened.content {
        source::Content::Custom => {
            let stage = stage.filter(|_| !layers.is_empty() || !local);
            // Without a manifest nothing says the dump is whole: it is read through
            // `pg_restore -f -`, every data block to its end, not only its TOC.
            let (tables, privileges, s) =
                toc_tables_staged(&mut opened.reader, 0, stage, true).map_err(|e| e.context(path.display()))?;
            staged = s;
            (tables, privileges)
        }
        source::Content::Plain => {
            let (tables, privileges) = count_create_table(opened.reader).map_err(|e| e.context(path.display()))?;
            (tables, Some(privileges))
        }
        source::Content::Tar => {
            return Err(failed("a tar stream without a pgdrill manifest is not a backup pgdrill can check".into()))
        }
    };
    Ok((Checked { manifest: None, tables, layers, trust: None, privileges }, staged))
}

/// Everything read through it is also written to `copy`. A failed write is kept: it is
/// the staging disk's problem, not the backup's, and the caller reports it as such.
struct Tee<'a, W: Write> {
    inner: &'a mut dyn Read,
    copy: W,
    failed: Option<std::io::Error>,
}

impl<W: Write> Read for Tee<'_, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if let Some(e) = &self.failed {
            return Err(std::io::Error::new(e.kind(), e.to_string()));
        }
        let n = self.inner.read(buf)?;
        if let Err(e) = self.copy.write_all(&buf[..n]) {
            let again = std::io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(again);
        }
        Ok(n)
    }
}

/// `toc_tables` (with `whole`, `script_tables`, which reads the grants too), keeping the
/// plaintext in a staged file in `stage` when given.
fn toc_tables_staged(
    plain: &mut (dyn Read + Send + '_),
    server_major: u32,
    stage: Option<&Path>,
    whole: bool,
) -> Result<(usize, Option<complete::Privileges>, Option<StagedDump>), Failure> {
    let tables_of = |r: &mut dyn Read| {
        if whole {
            let (cmd, _env) =
                crate::pg::image_tools::tool_command("pg_restore", server_major, &[]).map_err(Failure::environment)?;
            script_tables(cmd, Some(r)).map(|(t, p)| (t, Some(p)))
        } else {
            toc_tables(r, server_major).map(|t| (t, None))
        }
    };
    let Some(dir) = stage else {
        return tables_of(plain).map(|(t, p)| (t, p, None));
    };
    let staged = Staged::new(dir, ".dump")?;
    let file =
        staged.create_file().map_err(|e| Failure::environment(format!("cannot stage in {}: {e}", dir.display())))?;
    // Written on a thread of its own: this one decrypts and decompresses.
    let copy = crate::util::Behind::new(offsets::OffsetRecorder::new(BufWriter::with_capacity(1 << 20, file)));
    let mut tee = Tee { inner: plain, copy, failed: None };
    let listed = tables_of(&mut tee);
    let written = tee.copy.finish();
    let staging =
        |e: &std::io::Error| Failure::environment(format!("staging the checked dump in {}: {e}", dir.display()));
    if let Some(e) = &tee.failed {
        return Err(staging(e));
    }
    let (tables, privileges) = listed?;
    let recorder = written.map_err(|e| staging(&e))?;
    // Written by pg_dump into a pipe, the dump has no data offsets; with them, pg_restore's
    // parallel workers go straight to each table's data instead of scanning for it.
    let offsets = recorder.finish().and_then(|o| o.patch(&staged.0));
    Ok((tables, privileges, Some(StagedDump { file: staged, offsets })))
}

/// A directory dump's tar stream: every entry is read (so every chunk authenticates and
/// decompresses); toc.dat is staged beside the backup for `pg_restore --list`.
fn tar_toc_tables(plain: Box<dyn Read + Send + '_>, beside: &Path, server_major: u32) -> Result<usize, Failure> {
    let dir = Staged::new(beside, ".toc")?;
    std::fs::create_dir(&dir.0)
        .map_err(|e| Failure::environment(format!("cannot stage the table of contents: {e}")))?;
    let mut archive = tar::Archive::new(plain);
    let mut found = false;
    for entry in archive.entries().map_err(|e| io_error("reading the backup", e))? {
        let mut entry = entry.map_err(|e| io_error("reading the backup", e))?;
        let name = entry.path().map_err(|e| Failure::failed(e.to_string()))?.into_owned();
        if name.file_name().is_some_and(|n| n == "toc.dat") {
            let toc = dir.0.join("toc.dat");
            let mut f = {
                use std::os::unix::fs::OpenOptionsExt;
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&toc)
            }
            .map_err(|e| Failure::environment(format!("cannot stage the table of contents: {e}")))?;
            std::io::copy(&mut entry, &mut f).map_err(|e| io_error("staging the table of contents", e))?;
            found = true;
        } else {
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(|e| io_error("reading the backup", e))?;
        }
    }
    if !found {
        return Err(Failure::failed("the directory dump has no toc.dat"));
    }
    let parent = dir.0.parent().map(Path::to_path_buf).unwrap_or_default();
    let (mut cmd, _env) =
        crate::pg::image_tools::tool_command("pg_restore", server_major, &[&parent]).map_err(Failure::environment)?;
    let out = crate::child::output(cmd.arg("--list").arg(&dir.0))
        .map_err(|e| Failure::environment(format!("cannot run pg_restore: {e}")))?;
    if !out.status.success() {
        return Err(Failure::failed(format!(
            "pg_restore --list cannot read the dump ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(count_toc_tables(&String::from_utf8_lossy(&out.stdout)))
}

/// Tables in a plain dump: the `-- Name: ...; Type: TABLE; Schema: ...` header pg_dump writes
/// before each table's definition, counted outside COPY data. Not `CREATE TABLE` lines: that
/// misses `CREATE UNLOGGED TABLE` and counts data rows and function bodies that begin with
/// those words (a migrations table holding DDL). A dump without pg_dump's completion line,
/// or cut inside a table's data, is a failed check naming where it stops (`complete`). The
/// dump's grants come with the count.
fn count_create_table(plain: Box<dyn Read + Send + '_>) -> Result<(usize, complete::Privileges), Failure> {
    let mut r = plain;
    let mut scan = complete::PlainScan::default();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match r.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("reading the backup", e)),
        };
        if n == 0 {
            let privileges = scan.privileges();
            return scan.finish().map(|t| (t, privileges)).map_err(Failure::failed);
        }
        scan.feed(&buf[..n]);
    }
}

/// Tables in `pg_restore --list` output: entries `ID; 1259 OID TABLE schema name owner`.
/// The catalog (1259, pg_class) tells a table's own entry from `TABLE DATA` and `TABLE
/// ATTACH` (catalog 0), which the words cannot: a partition has a `TABLE ATTACH` entry too,
/// and a table in a schema named `DATA` reads `TABLE DATA name owner`.
fn count_toc_tables(list: &str) -> usize {
    list.lines()
        .filter(|l| !l.starts_with(';'))
        .filter(|l| {
            let mut t = l.split(' ');
            t.nth(1) == Some("1259") && t.nth(1) == Some("TABLE")
        })
        .count()
}

/// Verify a stored backup without restoring it: manifest, sha256, every chunk, the
/// decompressed stream, and the dump's table of contents against the manifest.
pub fn check(path: &Path, key: Option<&KeySource>) -> Result<Checked, Failure> {
    check_inner(path, key, None, None).map(|(c, _)| c)
}

fn check_inner(
    path: &Path,
    key: Option<&KeySource>,
    stage: Option<&Path>,
    meter: Option<&crate::progress::Meter>,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    // One pass over the stored bytes: hashed on a thread of their own while this one
    // authenticates the chunks, decompresses and stages (`HashedFile`).
    let meter = meter.cloned().unwrap_or_default();
    meter.set_total(std::fs::metadata(path).ok().map(|m| m.len()));
    let manifest = Manifest::read(path)?;
    // 0. The manifest is the one written with this archive, before anything in it is used.
    let trust = authenticate_manifest(path, key)?;
    let failed = |m: String| Failure::failed(format!("{}: {m}", path.display()));
    let f = std::fs::File::open(path).map_err(|e| failed(format!("cannot open: {e}")))?;
    let (stored, hashing) = HashedFile::start(crate::progress::Counted::new(f, meter.clone()));
    // 2. Every chunk authenticates and the stream decompresses; 3. the TOC is readable.
    let listed = archive::open(BufReader::with_capacity(1 << 20, stored), key)
        .map_err(|e| Failure::from(e).context(path.display()))
        .and_then(|(_, plain)| {
            let beside = path.parent().unwrap_or(Path::new("."));
            list_archive(plain, &manifest, (&path.display().to_string(), beside), stage)
        });
    // 1. The stored bytes are the ones written, judged first, as when it was a pass of its
    // own before the others: a damaged archive is named by its checksum whatever the chunk
    // that failed; a mismatch drops what was staged (the guard in `listed` removes it), and
    // nothing is restored from an archive whose checksum was not compared.
    let (sha, _) = hashing
        .join()
        .map_err(|_| Failure::environment(format!("{}: the reader of the archive panicked", path.display())))?
        .map_err(|e| failed(format!("read error: {e}")))?;
    if sha != manifest.sha256 {
        return Err(failed(format!(
            "sha256 {sha} does not match the manifest's {}: corrupted backup",
            manifest.sha256
        )));
    }
    let (tables, staged) = listed?;
    tables_match(&manifest, tables, &path.display().to_string())?;
    Ok((
        Checked { manifest: Some(manifest), tables, layers: vec!["pgdrill"], trust: Some(trust), privileges: None },
        staged,
    ))
}

/// A stored archive read once, on a thread of its own that hashes every byte (to its end,
/// whatever the reader takes) and passes the blocks on. The checksum was a pass of its own
/// before the chunks were read: every byte read twice, one pass after the other, while
/// the other core waited (issue 41: the check is the part of verify before the restore).
struct HashedFile {
    blocks: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    block: Vec<u8>,
    at: usize,
}

/// Blocks in flight between the hashing thread and the reader: a few MiB of memory at most.
const HASHED_BLOCKS: usize = 4;

impl HashedFile {
    /// The reader, and the thread's sha256 and byte count of everything `input` held.
    fn start<R: Read + Send + 'static>(
        mut input: R,
    ) -> (HashedFile, std::thread::JoinHandle<std::io::Result<(String, u64)>>) {
        use sha2::Digest;
        let (tx, blocks) = std::sync::mpsc::sync_channel(HASHED_BLOCKS);
        let hashing = std::thread::spawn(move || {
            let mut hasher = sha2::Sha256::new();
            let mut bytes = 0u64;
            // Once the reader is gone (it failed, or read what it needs), the rest is still
            // hashed: the checksum covers every stored byte.
            let mut passing = true;
            loop {
                let mut block = vec![0u8; 1 << 20];
                let n = match input.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        if passing {
                            let _ = tx.send(Err(std::io::Error::new(e.kind(), e.to_string())));
                        }
                        return Err(e);
                    }
                };
                block.truncate(n);
                hasher.update(&block);
                bytes += n as u64;
                if passing && tx.send(Ok(block)).is_err() {
                    passing = false;
                }
            }
            Ok((archive::hex(&hasher.finalize()), bytes))
        });
        (HashedFile { blocks, block: Vec::new(), at: 0 }, hashing)
    }
}

impl Read for HashedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            match self.blocks.recv() {
                Ok(Ok(block)) => {
                    self.block = block;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The thread ended: everything was passed on.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.block.len() - self.at);
        buf[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// 2 and 3 of a check: every chunk of the archive's plaintext `plain` is read (so it
/// authenticates and decompresses), its table of contents listed and its tables counted
/// (with `stage`, a custom dump's plaintext kept there). `shown` names the archive in
/// messages; `beside` is the local directory a directory dump's table of contents is
/// staged in.
fn list_archive(
    mut plain: Box<dyn Read + Send + '_>,
    manifest: &Manifest,
    (shown, beside): (&str, &Path),
    stage: Option<&Path>,
) -> Result<(usize, Option<StagedDump>), Failure> {
    let (tables, staged) = match manifest.format {
        Format::Custom => {
            let (tables, _, staged) =
                toc_tables_staged(&mut plain, manifest.server_major, stage, false).map_err(|e| e.context(shown))?;
            (tables, staged)
        }
        Format::Plain => (count_create_table(plain).map_err(|e| e.context(shown))?.0, None),
        Format::Directory => {
            (tar_toc_tables(plain, beside, manifest.server_major).map_err(|e| e.context(shown))?, None)
        }
    };
    Ok((tables, staged))
}

/// The tables a check counted against the manifest's count.
fn tables_match(manifest: &Manifest, tables: usize, shown: &str) -> Result<(), Failure> {
    match manifest.table_count() {
        Some(expected) if expected != tables => {
            Err(Failure::failed(format!("{shown}: the dump lists {tables} tables, the manifest {expected}")))
        }
        _ => Ok(()),
    }
}

/// `check_inner` for a pgdrill archive read as a stream from an object store: one pass
/// hashes the stored bytes while the chunks authenticate and the dump is listed (and, with
/// `stage`, its plaintext staged), so nothing but the staged plaintext is written locally;
/// the sha256 is compared at the end, and a mismatch removes what was staged. `shown` names
/// it (its URL); `manifest` was read through its store and judged (`trust`) against the
/// archive's header before the stream starts; `beside` is the local directory a directory
/// dump's table of contents is staged in. A store that fails mid-read is an environment
/// error.
pub(crate) fn check_stream(
    shown: &str,
    (manifest, trust): (Manifest, ManifestTrust),
    stream: Box<dyn Read + Send>,
    secret: Option<&str>,
    stage: Option<&Path>,
    beside: &Path,
    meter: Option<&crate::progress::Meter>,
) -> Result<(Checked, Option<StagedDump>), Failure> {
    // Layers may turn a read error into "corrupted" (a header cut short): what the store
    // said is kept aside, and decides.
    let store_failed: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let watched = crate::storage::Watched { inner: stream, failed: store_failed.clone() };
    let r = (|| {
        let stream: Box<dyn Read + Send> = Box::new(watched);
        let key = secret.filter(|s| !s.is_empty()).map(KeySource::from_secret);
        let key = key.as_ref();
        let meter = meter.cloned().unwrap_or_default();
        meter.set_total(Some(manifest.sizes.stored));
        let failed = |m: String| Failure::failed(format!("{shown}: {m}"));
        let mut hr =
            archive::HashReader::new(BufReader::with_capacity(1 << 20, crate::progress::Counted::new(stream, meter)));
        let (tables, staged) = {
            let (_, plain) = archive::open(&mut hr, key).map_err(|e| Failure::from(e).context(shown))?;
            list_archive(plain, &manifest, (shown, beside), stage)?
        };
        // Whatever the archive's reader left (its end) is hashed too.
        std::io::copy(&mut hr, &mut std::io::sink()).map_err(|e| io_error(&format!("reading {shown}"), e))?;
        let (sha, _) = hr.finish();
        if sha != manifest.sha256 {
            return Err(failed(format!(
                "sha256 {sha} does not match the manifest's {}: corrupted backup",
                manifest.sha256
            )));
        }
        tables_match(&manifest, tables, shown)?;
        Ok((
            Checked { manifest: Some(manifest), tables, layers: vec!["pgdrill"], trust: Some(trust), privileges: None },
            staged,
        ))
    })();
    match (r, store_failed.lock().ok().and_then(|f| f.clone())) {
        (Err(_), Some(m)) => Err(Failure::environment(format!("reading {shown}: {m}"))),
        (r, _) => r,
    }
}

fn io_message(e: &std::io::Error) -> String {
    match archive::archive_error(e) {
        Some(a) => a.to_string(),
        None => e.to_string(),
    }
}

/// All a child's pipe (stdout or stderr) says, read on a thread of its own so that the
/// child never blocks on a full pipe while its stdin is fed.
fn read_in_thread(pipe: Option<impl Read + Send + 'static>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_string(&mut s);
        }
        s
    })
}

/// `plain` copied into the child's stdin, which is closed after. When the read side fails
/// (the backup, or the disk a copy is staged on) that is the error, and the child is
/// stopped; false when the write side failed: the child stopped reading (a broken pipe).
/// `std::io::copy` in 1 MiB reads instead of its 8 KiB: a checked dump's plaintext passes
/// through decryption, decompression and the staged copy's offset recorder once per read
/// (issue 41; with the fixed buffer in `offsets`, the check of a 2.5 GB dump took 2.25 s
/// against 2.42 s, medians of three, within the machine's noise). With `cancelled`, it is
/// checked between pieces (a restore's Ctrl-C).
fn copy_large(
    r: &mut dyn Read,
    w: &mut dyn Write,
    cancelled: Option<&std::sync::atomic::AtomicBool>,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        if cancelled.is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst)) {
            return Err(std::io::Error::other("cancelled"));
        }
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

fn feed(child: &mut std::process::Child, plain: &mut dyn Read) -> Result<bool, Failure> {
    let copied = match child.stdin.take() {
        Some(mut stdin) => copy_large(plain, &mut stdin, None),
        None => Ok(0),
    };
    match copied {
        Ok(_) => Ok(true),
        Err(e) if archive::archive_error(&e).is_some() || is_environment(&e) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(io_error("reading the backup", e))
        }
        Err(_) => Ok(false),
    }
}

/// Feed a custom-format dump to `pg_restore --list` and count its TABLE entries.
fn toc_tables(plain: &mut dyn Read, server_major: u32) -> Result<usize, Failure> {
    let (mut cmd, _env) =
        crate::pg::image_tools::tool_command("pg_restore", server_major, &[]).map_err(Failure::environment)?;
    let mut child =
        crate::child::spawn(cmd.arg("--list").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()))
            .map_err(|e| Failure::environment(format!("cannot run pg_restore: {e}")))?;
    let reader = read_in_thread(child.stdout.take());
    // pg_restore --list may stop reading once it has the TOC; a broken pipe then is fine,
    // but an archive error is not.
    feed(&mut child, plain)?;
    // Whatever pg_restore did not read must still authenticate and decompress.
    copy_large(plain, &mut std::io::sink(), None).map_err(|e| io_error("reading the backup", e))?;
    let status = child.wait().map_err(|e| Failure::environment(format!("waiting for pg_restore: {e}")))?;
    let list = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(Failure::failed(format!("pg_restore --list cannot read the dump ({status})")));
    }
    Ok(count_toc_tables(&list))
}

/// A custom-format dump (fed from `input`) or a directory dump (`cmd` names it) written out
/// by `pg_restore -f -` as the script it holds, and that script scanned (`complete`): every
/// TOC entry's data block, or every file a directory's TOC names, is read to its end, so a
/// dump cut after its TOC, inside a data block or missing a file fails here, naming the
/// entry pg_restore stopped at. `pg_restore --list` reads only the TOC and passed them all.
fn script_tables(
    mut cmd: std::process::Command,
    input: Option<&mut dyn Read>,
) -> Result<(usize, complete::Privileges), Failure> {
    cmd.args(["-f", "-"]).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child =
        crate::child::spawn(&mut cmd).map_err(|e| Failure::environment(format!("cannot run pg_restore: {e}")))?;
    let stdout = child.stdout.take();
    let scanner = std::thread::spawn(move || {
        let mut scan = complete::PlainScan::default();
        let mut buf = vec![0u8; 1 << 16];
        if let Some(mut o) = stdout {
            loop {
                match o.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => scan.feed(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
        }
        scan
    });
    let errors = read_in_thread(child.stderr.take());
    if let Some(plain) = input {
        // A broken pipe is pg_restore giving up, which its status says.
        if !feed(&mut child, plain)? {
            // The rest must still decompress and decrypt, for the staged copy.
            copy_large(plain, &mut std::io::sink(), None).map_err(|e| io_error("reading the backup", e))?;
        }
    }
    let status = child.wait().map_err(|e| Failure::environment(format!("waiting for pg_restore: {e}")))?;
    let scan = scanner.join().unwrap_or_default();
    let stderr = errors.join().unwrap_or_default();
    if !status.success() {
        let said = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; ");
        let at = match scan.last_entry() {
            Some(e) => {
                format!(" It stopped at `{e}`: that entry's data and every entry after it are missing or unreadable.")
            }
            None => " It stopped before the first entry.".into(),
        };
        return Err(Failure::failed(format!("incomplete dump: pg_restore cannot read it to its end ({said}).{at}")));
    }
    let privileges = scan.privileges();
    scan.finish().map(|t| (t, privileges)).map_err(Failure::failed)
}

/// Decrypt and decompress a backup to `out` (for `pgdrill decrypt`): a pgdrill archive with
/// `key`, another tool's file (openssl, gpg, gzip, zstd) with `secret` as its passphrase.
pub fn decrypt_to(
    path: &Path,
    key: Option<&KeySource>,
    secret: Option<&str>,
    out: &mut dyn Write,
) -> Result<u64, Failure> {
    if source::origin(path) == source::Origin::Foreign {
        if path.is_dir() {
            return Err(Failure::invalid(format!(
                "{} is a directory dump: pg_restore reads it as it is",
                path.display()
            )));
        }
        let mut opened = source::open(path, key, secret)?;
        if opened.content != source::Content::Plain {
            return std::io::copy(&mut opened.reader, out).map_err(|e| Failure::failed(io_message(&e)));
        }
        // An SQL script is checked as it passes: a cut one is written out (the pipe is
        // already running) but the exit says it was not complete.
        let mut scan = complete::PlainScan::default();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match opened.reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(&path.display().to_string(), e)),
            };
            scan.feed(&buf[..n]);
            out.write_all(&buf[..n]).map_err(|e| Failure::environment(format!("writing stdout: {e}")))?;
            total += n as u64;
        }
        scan.finish().map_err(|m| Failure::failed(format!("{}: {m}", path.display())))?;
        return Ok(total);
    }
    let f = std::fs::File::open(path).map_err(|e| Failure::invalid(format!("cannot open {}: {e}", path.display())))?;
    let (_, mut plain) = archive::open(BufReader::with_capacity(1 << 20, f), key)?;
    std::io::copy(&mut plain, out).map_err(|e| Failure::failed(io_message(&e)))
}

/// This process's peak resident set size (VmHWM), for the log and benchmarks.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
