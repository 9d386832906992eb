//! The operator restore's journal and lock: what makes a crashed or concurrent restore safe.
//!
//! - The lock: a session-level advisory lock on the target server, keyed on the database
//!   name and held by one connection (to the maintenance database) for the whole run. A
//!   second restore of the same database refuses before anything changes; the holder is
//!   named from its connection's `application_name` (pgdrill pid, host, start). When the
//!   process dies, even by `kill -9`, the server ends its session and the lock is free.
//! - The journal: one small JSON file per database in `<safety>/.journal/`, written
//!   atomically and fsynced before each destructive phase. A run that finds one unfinished
//!   (the lock is free, so its writer is gone) refuses a new restore and offers
//!   `recover=rollback` or `recover=forward`, or `recover=reopen` when the database was never
//!   dropped. The file is keyed by the server's identity (system identifier and address) and
//!   the database, so servers sharing a safety folder never see each other's journals.
//!
//! This module knows nothing about steps or runbooks; `steps/database.rs` drives it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio_postgres::Client;

use crate::error::{Class, Classified, Failure};
use crate::util::{conninfo_quote, rfc3339, shell_quote};

/// The phases of an operator restore, in order. Each is written before the step it names
/// starts changing anything (after, for `SnapshotTaken`, `Restoring` and `Verified`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Locked and confirmed; nothing changed yet.
    Open,
    /// The safety snapshot of the original is on disk (its path is recorded).
    SnapshotTaken,
    /// New connections are about to be refused and sessions terminated.
    Blocking,
    /// The database is about to be dropped: from here on it may be gone or half-restored.
    Dropping,
    Creating,
    /// Created again (under a private name); pg_restore is writing into it.
    Restoring,
    /// The verified copy is being renamed from its private name into place.
    Renaming,
    /// The restored content matched the backup's fingerprint.
    Verified,
    /// Putting the original back from the snapshot.
    RollingBack,
    /// The original is back and matched the snapshot's fingerprint.
    RolledBack,
    /// The run ended and nothing is left to do.
    Finished,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Open => "open",
            Phase::SnapshotTaken => "snapshot taken",
            Phase::Blocking => "connections blocked",
            Phase::Dropping => "dropping",
            Phase::Creating => "creating",
            Phase::Restoring => "restoring",
            Phase::Renaming => "renaming",
            Phase::Verified => "verified",
            Phase::RollingBack => "rolling back",
            Phase::RolledBack => "rolled back",
            Phase::Finished => "finished",
        }
    }
}

/// One line of the journal's history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub phase: Phase,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub pid: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// What CREATE DATABASE sets beyond owner, encoding and lc_*, as the original had it: lost
/// by a DROP and not in a dump without `--create`, so the journal keeps them and the
/// restore, the rollback and a recovery create the database with them again. Empty fields
/// are the server's defaults (or a server too old to have them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Properties {
    /// Its provider, ICU (or builtin) locale and ICU rules.
    #[serde(flatten)]
    pub locale: crate::pg::Locale,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub collation_version: String,
    /// Its default tablespace, when not `pg_default`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tablespace: String,
}

impl Properties {
    /// Read from pg_database as a JSON row, so one query serves every server version
    /// (columns appear and are renamed between majors).
    pub async fn capture(client: &Client, database: &str) -> Result<Option<Properties>, tokio_postgres::Error> {
        let row = client
            .query_opt(
                "select to_jsonb(d)::text, t.spcname::text from pg_database d \
                 join pg_tablespace t on t.oid = d.dattablespace where d.datname = $1",
                &[&database],
            )
            .await?;
        Ok(row.map(|r| {
            let d = crate::pg::DatabaseRow::parse(&r.get::<_, String>(0));
            let tablespace: String = r.get(1);
            Properties {
                locale: crate::pg::Locale::of(&d),
                collation_version: d.text("datcollversion"),
                tablespace: if tablespace == "pg_default" { String::new() } else { tablespace },
            }
        }))
    }

    /// The CREATE DATABASE options that give them again (names and values quoted).
    pub fn create_options(&self) -> String {
        use crate::pg::native::quote_ident;
        let lit = crate::pg::native::quote_literal;
        let mut sql = String::new();
        let l = &self.locale;
        if !l.provider.is_empty() {
            sql.push_str(&format!(" locale_provider {}", quote_ident(&l.provider)));
        }
        if !l.name.is_empty() {
            match l.provider.as_str() {
                "icu" => sql.push_str(&format!(" icu_locale {}", lit(&l.name))),
                "builtin" => sql.push_str(&format!(" builtin_locale {}", lit(&l.name))),
                _ => {}
            }
        }
        if !l.icu_rules.is_empty() {
            sql.push_str(&format!(" icu_rules {}", lit(&l.icu_rules)));
        }
        if !self.collation_version.is_empty() {
            sql.push_str(&format!(" collation_version {}", lit(&self.collation_version)));
        }
        if !self.tablespace.is_empty() {
            sql.push_str(&format!(" tablespace {}", quote_ident(&self.tablespace)));
        }
        sql
    }

    /// A short account for logs and messages.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if !self.locale.provider.is_empty() {
            parts.push(format!("locale provider {}", self.locale.provider));
        }
        if !self.locale.name.is_empty() {
            parts.push(format!("locale {}", self.locale.name));
        }
        if !self.locale.icu_rules.is_empty() {
            parts.push("ICU rules".to_string());
        }
        if !self.collation_version.is_empty() {
            parts.push(format!("collation version {}", self.collation_version));
        }
        if !self.tablespace.is_empty() {
            parts.push(format!("tablespace {}", self.tablespace));
        }
        if parts.is_empty() {
            "the server's defaults".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The durable record of one restore of one database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    pub version: u32,
    /// host:port of the server as the operator named it.
    pub server: String,
    /// The server's `system_identifier` (pg_control_system()): with `server`, the server
    /// this journal belongs to. Empty in journals of earlier versions.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub system_id: String,
    pub database: String,
    /// The database's OID when the journal was written (None: it did not exist): a drop
    /// checks it, so a database that appeared later under the same name is never dropped.
    #[serde(default)]
    pub database_oid: Option<u32>,
    /// The OID of the database this restore created (from `creating` on).
    #[serde(default)]
    pub created_oid: Option<u32>,
    /// The private name that database is created and restored under, recorded before its
    /// CREATE: no application knows it, so none connects to a half-restored database; once
    /// verified it is renamed to `database` (and this is cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_name: Option<String>,
    /// Who runs it now: process id, machine, and when it started.
    pub pid: u32,
    pub host: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// The backup being restored (what `recover=forward` restores again).
    pub backup: String,
    /// The safety snapshot of the original (what `recover=rollback` restores), and its sha256.
    #[serde(default)]
    pub snapshot: Option<String>,
    #[serde(default)]
    pub snapshot_sha256: Option<String>,
    /// Whether the database existed before this restore, and how to create it again.
    pub existed: bool,
    pub owner: String,
    pub encoding: String,
    pub lc_collate: String,
    pub lc_ctype: String,
    /// Locale provider, ICU locale and rules, collation version, tablespace.
    #[serde(default)]
    pub properties: Option<Properties>,
    /// Database-level settings, grants, comment and connection limit as preflight captured
    /// them (opaque here), so a recovery after the drop can give them back.
    #[serde(default)]
    pub settings: Option<serde_json::Value>,
    /// `datallowconn` before pgdrill blocked connections (recorded once).
    #[serde(default)]
    pub allowed_connections: Option<bool>,
    /// Set once the drop began: from then on the original exists only in the snapshot.
    #[serde(default)]
    pub changed: bool,
    /// `rollback` or `forward` while a run recovers this journal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub recovering: String,
    /// Roles this restore created (a rebuilt server lacked them), each recorded before its
    /// CREATE ROLE committed: what a rollback drops again, and nothing else.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_roles: Vec<CreatedRole>,
    pub phase: Phase,
    pub history: Vec<Entry>,
}

/// A role an operator restore created, as the server numbered it: dropped on rollback only
/// while a role of that name still has that OID (one made again by someone else is not ours).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRole {
    pub name: String,
    pub oid: u32,
}

/// A journal that cannot be read or written is the machine's problem (environment); one
/// that exists but cannot be trusted fails the step (failed: fail closed).
pub type JournalError = crate::error::Failure;

impl Journal {
    /// Whether a run that left this journal ended before the database was safe again.
    pub fn unfinished(&self) -> bool {
        // Open with roles created: a crash left roles behind that a recovery drops again.
        match self.phase {
            Phase::Finished => false,
            Phase::Open => !self.created_roles.is_empty(),
            _ => true,
        }
    }

    /// The roles this restore created, quoted, for messages.
    pub fn created_role_names(&self) -> String {
        self.created_roles.iter().map(|r| crate::pg::native::quote_ident(&r.name)).collect::<Vec<_>>().join(", ")
    }

    /// Where the database stands, in words, for the message of a run that finds it.
    pub fn describe(&self) -> String {
        let last = self.history.last().map(|e| rfc3339(e.at)).unwrap_or_default();
        let state = match self.phase {
            _ if !self.changed && self.existed => {
                "the database was not dropped, nothing in it was changed (it may refuse connections)".to_string()
            }
            _ if !self.changed => "the database did not exist before and was not created".to_string(),
            Phase::Verified => "the restore was verified but the run did not finish".to_string(),
            Phase::Dropping if !self.existed => "it did not exist before; it may be half-created".to_string(),
            _ if self.existed => "the database may be gone or half-restored".to_string(),
            _ => "the database did not exist before and may be half-restored".to_string(),
        };
        let copy = match &self.private_name {
            Some(p) if self.changed => format!("; its half-restored copy may be database `{p}`"),
            _ => String::new(),
        };
        let roles = if self.created_roles.is_empty() {
            String::new()
        } else {
            format!("; it created the roles {}", self.created_role_names())
        };
        format!(
            "an unfinished restore of database `{}` on {}: pgdrill pid {} on host {} started {} restoring {}, and stopped at phase `{}` at {last}; {state}{copy}{roles}",
            self.database,
            self.server,
            self.pid,
            self.host,
            rfc3339(self.started_at),
            self.backup,
            self.phase.as_str(),
        )
    }

    /// Record a phase and write the journal durably before the caller goes on.
    pub fn mark(&mut self, path: &Path, phase: Phase, note: impl Into<String>) -> Result<(), JournalError> {
        // `changed` is set by the drop once it succeeded (a failed DROP changed nothing);
        // every phase after it implies it.
        if matches!(
            phase,
            Phase::Creating | Phase::Restoring | Phase::Renaming | Phase::RollingBack | Phase::RolledBack
        ) {
            self.changed = true;
        }
        self.phase = phase;
        self.history.push(Entry { phase, at: OffsetDateTime::now_utc(), pid: std::process::id(), note: note.into() });
        self.write(path)
    }

    /// Atomic replace (temp file, fsync, rename, fsync of the directory), mode 0600.
    pub fn write(&self, path: &Path) -> Result<(), JournalError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| {
            JournalError::environment(format!("cannot create the journal folder {}: {e}", dir.display()))
        })?;
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| JournalError::environment(e.to_string()))?;
        crate::storage::write_small(path, &bytes)
            .map_err(|e| JournalError::environment(format!("cannot write the restore journal {}: {e}", path.display())))
    }

    /// The journal at `path`, if there is one.
    pub fn read(path: &Path) -> Result<Option<Journal>, JournalError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(JournalError::environment(format!(
                    "cannot read the restore journal {}: {e}",
                    path.display()
                )))
            }
        };
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            JournalError::failed(format!(
                "the restore journal {} is damaged ({e}); look at it, put the database right by hand, then remove the file",
                path.display()
            ))
        })
    }
}

/// Drop the roles `journal` says its restore created, now that the database is as it was
/// before that restore (rolled back, never dropped, or removed): each only while a role of
/// that name still has the recorded OID, checked in the transaction that drops it. A role
/// something now depends on is left, with the reason. Returns the roles dropped and lines
/// for the log; `journal.created_roles` is emptied (the caller writes it).
pub async fn drop_created_roles(client: &Client, journal: &mut Journal) -> (Vec<String>, Vec<String>) {
    use crate::pg::native::quote_ident;
    let (mut dropped, mut notes) = (Vec::new(), Vec::new());
    for r in std::mem::take(&mut journal.created_roles) {
        let ident = quote_ident(&r.name);
        let result: Result<Option<u32>, tokio_postgres::Error> = async {
            client.batch_execute("begin").await?;
            let now: Option<u32> = client
                .query_opt("select oid from pg_roles where rolname = $1", &[&r.name])
                .await?
                .map(|row| row.get(0));
            if now == Some(r.oid) {
                client.batch_execute(&format!("drop role {ident}")).await?;
            }
            client.batch_execute("commit").await?;
            Ok(now)
        }
        .await;
        match result {
            Ok(Some(oid)) if oid == r.oid => dropped.push(r.name.clone()),
            Ok(Some(oid)) => notes.push(format!(
                "role {ident} (OID {oid}) is not the one this restore created (OID {}): left as it is",
                r.oid
            )),
            Ok(None) => notes.push(format!("role {ident}, created by this restore, is gone already")),
            Err(e) => {
                let _ = client.batch_execute("rollback").await;
                notes.push(format!(
                    "role {ident} was created by this restore but could not be dropped again ({}): drop it by hand once nothing depends on it (`drop owned by {ident}; drop role {ident}` in each database that uses it)",
                    crate::pg::describe(&e)
                ));
            }
        }
    }
    (dropped, notes)
}

/// Which server a journal belongs to: its system identifier and its address. Servers made
/// from one initdb (or a copy of one data directory) share a system identifier, so the
/// address is part of it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub system_id: String,
    pub address: String,
}

impl Identity {
    /// The identity of the server `client` is connected to, reached at `address`. A role
    /// that may not call pg_control_system() gets an empty system identifier: the address
    /// alone then tells servers apart.
    pub async fn of(client: &Client, address: &str) -> Identity {
        let system_id = client
            .query_one("select system_identifier::text from pg_control_system()", &[])
            .await
            .ok()
            .and_then(|r| r.get::<_, Option<String>>(0))
            .unwrap_or_default();
        Identity { system_id, address: address.to_string() }
    }

    /// Whether `journal` was written for this server. A system identifier one side could not
    /// read does not tell servers apart: the address decides then, so a journal is never
    /// lost to a run whose role may not call pg_control_system().
    pub fn owns(&self, journal: &Journal) -> bool {
        journal.server == self.address
            && (journal.system_id.is_empty() || self.system_id.is_empty() || journal.system_id == self.system_id)
    }

    /// For messages: "server 127.0.0.1:5432 (system identifier 7381...)".
    pub fn describe(&self) -> String {
        describe_server(&self.address, &self.system_id)
    }
}

fn describe_server(address: &str, system_id: &str) -> String {
    match system_id {
        "" => format!("server {address} (system identifier unknown)"),
        id => format!("server {address} (system identifier {id})"),
    }
}

impl Journal {
    /// The server this journal belongs to, for messages.
    pub fn describe_server(&self) -> String {
        describe_server(&self.server, &self.system_id)
    }
}

/// `<safety>/.journal/<name>.<hash>.json`: the visible part keeps only letters, digits, `-`
/// and `_` of the database name, and the hash of the server's identity and the whole name
/// keeps distinct names, and the same name on servers sharing a safety folder, apart: no
/// database name can leave the folder or share another's journal.
pub fn journal_path(safety: &Path, server: &Identity, database: &str) -> PathBuf {
    let key = format!("{}\0{}\0{database}", server.system_id, server.address);
    named_path(safety, database, key.as_bytes())
}

/// Where pgdrill before server-keyed journals kept the journal of `database`.
pub fn legacy_journal_path(safety: &Path, database: &str) -> PathBuf {
    named_path(safety, database, database.as_bytes())
}

fn named_path(safety: &Path, database: &str, key: &[u8]) -> PathBuf {
    let visible: String =
        database.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(40).collect();
    let hash = Sha256::digest(key);
    let hex: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    safety.join(".journal").join(format!("{}.{hex}.json", if visible.is_empty() { "db" } else { &visible }))
}

/// An unfinished journal of `database` on `server` kept under another key than `journal_path`
/// gives now: written by a run that could, or could not, read the system identifier.
pub fn journal_under_other_key(safety: &Path, server: &Identity, database: &str) -> Option<(PathBuf, Journal)> {
    let dir = std::fs::read_dir(safety.join(".journal")).ok()?;
    dir.flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| Journal::read(&p).ok().flatten().map(|j| (p, j)))
        .find(|(_, j)| j.database == database && j.unfinished() && server.owns(j))
}

/// Unfinished journals of `database` in the safety folder that belong to other servers than
/// `server` (for saying where a journal the operator looks for really is).
pub fn journals_of_others(safety: &Path, server: &Identity, database: &str) -> Vec<Journal> {
    let Ok(dir) = std::fs::read_dir(safety.join(".journal")) else { return Vec::new() };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| Journal::read(&e.path()).ok().flatten())
        .filter(|j| j.database == database && j.unfinished() && !server.owns(j))
        .collect()
}

/// This machine's name, for "who holds the lock".
pub fn hostname() -> String {
    crate::util::hostname().unwrap_or_else(|| "unknown".into())
}

/// The advisory lock key of a database: the first 8 bytes of a hash of a fixed prefix and
/// the name, so it is the same for every pgdrill version and cannot meet another tool's key
/// by accident.
pub fn lock_key(database: &str) -> i64 {
    let h = Sha256::digest(format!("pgdrill restore\0{database}").as_bytes());
    i64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
}

const APP_PREFIX: &str = "pgdrill restore ";

/// `application_name` of the lock's connection: what a refused second run shows.
fn app_name(started: OffsetDateTime) -> String {
    let stamp = crate::util::compact_utc(started, false);
    let mut s = format!("{APP_PREFIX}{} {stamp} {}", std::process::id(), hostname());
    // The server truncates at 63 bytes; cut on a character boundary ourselves.
    while s.len() > 63 {
        s.pop();
    }
    s
}

/// Who holds a lock, from its connection's `application_name`.
fn holder(app: &str, backend_pid: i32) -> String {
    let Some(rest) = app.strip_prefix(APP_PREFIX) else {
        return format!("a session of server process {backend_pid} (application `{app}`)");
    };
    let mut parts = rest.splitn(3, ' ');
    let (pid, stamp, host) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("?"), parts.next().unwrap_or("?"));
    let since = if stamp.len() == 16 {
        format!(
            "{}-{}-{}T{}:{}:{}Z",
            &stamp[0..4],
            &stamp[4..6],
            &stamp[6..8],
            &stamp[9..11],
            &stamp[11..13],
            &stamp[13..15]
        )
    } else {
        stamp.to_string()
    };
    format!("pgdrill pid {pid} on host {host}, since {since}")
}

/// The held lock: its connection stays open until the run ends.
pub struct Lock {
    pub client: Client,
    pub key: i64,
}

/// Take the restore lock of `database` on the server of `url`, connecting to
/// `maintenance_db`. `Err(Held(who))` when another session holds it.
pub async fn lock(url: &str, maintenance_db: &str, database: &str) -> Result<Lock, LockError> {
    let mut cfg = crate::pg::config(url)?;
    cfg.dbname(maintenance_db);
    cfg.application_name(app_name(OffsetDateTime::now_utc()));
    let client = crate::pg::open(url, &cfg).await.map_err(|e| {
        e.context(format!("cannot connect to database `{maintenance_db}` of {}", crate::pg::display_url(url)))
    })?;
    let key = lock_key(database);
    let got: bool = client.query_one("select pg_try_advisory_lock($1)", &[&key]).await.map_err(server_error)?.get(0);
    if got {
        return Ok(Lock { client, key });
    }
    // A bigint key shows in pg_locks as classid (high half), objid (low half), objsubid 1.
    let (hi, lo) = ((key as u64 >> 32) as i64, (key as u64 & 0xffff_ffff) as i64);
    let row = client
        .query_opt(
            "select coalesce(a.application_name, ''), l.pid from pg_locks l \
             left join pg_stat_activity a on a.pid = l.pid \
             where l.locktype = 'advisory' and l.granted and l.objsubid = 1 \
             and l.classid::bigint = $1 and l.objid::bigint = $2 \
             and l.database = (select oid from pg_database where datname = current_database()) limit 1",
            &[&hi, &lo],
        )
        .await
        .map_err(server_error)?;
    let who = match row {
        Some(r) => holder(&r.get::<_, String>(0), r.get(1)),
        None => "another session (it ended while we looked: try again)".to_string(),
    };
    Err(LockError::Held(who))
}

/// Why the restore lock was not taken: a caller reports a held lock in its own words.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another session holds it (who, as `holder` names it): a check that did not hold.
    #[error("the restore lock is held by {0}")]
    Held(String),
    /// The server could not be reached or answered with an error: the environment's, with
    /// the connection's error as its source.
    #[error(transparent)]
    Unreachable(Failure),
}

impl From<Failure> for LockError {
    fn from(f: Failure) -> Self {
        LockError::Unreachable(f)
    }
}

impl Classified for LockError {
    fn class(&self) -> Class {
        match self {
            LockError::Held(_) => Class::Failed,
            LockError::Unreachable(f) => f.class,
        }
    }

    fn into_failure(self) -> Failure {
        match self {
            LockError::Unreachable(f) => f,
            held => Failure::new(held.class(), held.to_string()).with_source(held),
        }
    }
}

/// A server's error while taking or looking at the lock.
fn server_error(e: tokio_postgres::Error) -> LockError {
    LockError::Unreachable(Failure::environment(crate::pg::describe(&e)).with_source(e))
}

/// The commands that put the original back by hand, for when the server or pgdrill cannot:
/// names travel as data (a `dbname='…'` connection string, quoted identifiers).
pub fn manual_commands(journal: &Journal, user: &str, host: &str, port: u16) -> String {
    use crate::pg::native::quote_ident;
    if !journal.changed {
        // Never dropped: letting connections in again is all there is to do.
        return format!(
            "psql -h {h} -p {port} -U {u} -d postgres -c {allow}, then move the journal away",
            h = shell_quote(host),
            u = shell_quote(user),
            allow = shell_quote(&format!("alter database {} allow_connections true", quote_ident(&journal.database)))
        );
    }
    // The half-restored copy under its private name goes too.
    let drop_copy = match &journal.private_name {
        Some(p) => format!(" -c {}", shell_quote(&format!("drop database if exists {} with (force)", quote_ident(p)))),
        None => String::new(),
    };
    let Some(snap) = &journal.snapshot else {
        return format!(
            "psql -h {h} -p {port} -U {u} -d postgres -c {drop}{drop_copy}",
            h = shell_quote(host),
            u = shell_quote(user),
            drop = shell_quote(&format!("drop database if exists {} with (force)", quote_ident(&journal.database)))
        );
    };
    let lit = crate::pg::native::quote_literal;
    let mut create = format!("create database {} template template0", quote_ident(&journal.database));
    if !journal.owner.is_empty() {
        create.push_str(&format!(" owner {}", quote_ident(&journal.owner)));
    }
    for (k, v) in
        [("encoding", &journal.encoding), ("lc_collate", &journal.lc_collate), ("lc_ctype", &journal.lc_ctype)]
    {
        if !v.is_empty() {
            create.push_str(&format!(" {k} {}", lit(v)));
        }
    }
    if let Some(p) = &journal.properties {
        create.push_str(&p.create_options());
    }
    let conninfo = format!(
        "host={} port={port} user={} dbname={}",
        conninfo_quote(host),
        conninfo_quote(user),
        conninfo_quote(&journal.database)
    );
    format!(
        "psql -h {h} -p {port} -U {u} -d postgres -c {drop}{drop_copy} -c {create}; pgdrill decrypt {snap} | pg_restore --no-password -d {conninfo}",
        h = shell_quote(host),
        u = shell_quote(user),
        drop = shell_quote(&format!("drop database if exists {} with (force)", quote_ident(&journal.database))),
        create = shell_quote(&create),
        snap = shell_quote(snap),
        conninfo = shell_quote(&conninfo),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_database_names_stay_inside_the_journal_folder() {
        let safety = Path::new("/safe");
        for name in ["../../etc/passwd", "/abs", ".journal", "a/b", "a_b", "", "..", "dbname=victim port=1"] {
            let id = Identity { system_id: "1".into(), address: "h:5432".into() };
            let p = journal_path(safety, &id, name);
            assert_eq!(p.parent(), Some(Path::new("/safe/.journal")), "{name}: {}", p.display());
            let file = p.file_name().and_then(|f| f.to_str()).unwrap_or_default();
            assert!(!file.starts_with('.') && file.ends_with(".json"), "{file}");
        }
        let id = Identity { system_id: "1".into(), address: "h:5432".into() };
        assert_ne!(journal_path(safety, &id, "a/b"), journal_path(safety, &id, "a_b"));
        assert_ne!(journal_path(safety, &id, "shop"), journal_path(safety, &id, "Shop"));
        let other = Identity { system_id: "1".into(), address: "h:5433".into() };
        assert_ne!(journal_path(safety, &id, "shop"), journal_path(safety, &other, "shop"));
    }

    #[test]
    fn a_journal_is_found_whether_or_not_its_writer_could_read_the_system_identifier() {
        let dir = tempfile::tempdir().expect("tmp");
        let journal = |system_id: &str, server: &str| Journal {
            version: 1,
            server: server.into(),
            system_id: system_id.into(),
            database: "shop".into(),
            database_oid: Some(16384),
            created_oid: None,
            private_name: None,
            pid: 1,
            host: "m".into(),
            started_at: OffsetDateTime::now_utc(),
            backup: "/b".into(),
            snapshot: None,
            snapshot_sha256: None,
            existed: true,
            owner: String::new(),
            encoding: String::new(),
            lc_collate: String::new(),
            lc_ctype: String::new(),
            properties: None,
            settings: None,
            allowed_connections: Some(true),
            changed: false,
            recovering: String::new(),
            created_roles: vec![],
            phase: Phase::Blocking,
            history: vec![],
        };
        let known = Identity { system_id: "7".into(), address: "h:5432".into() };
        let unknown = Identity { system_id: String::new(), address: "h:5432".into() };
        let elsewhere = Identity { system_id: "7".into(), address: "h:5433".into() };
        let other = Identity { system_id: "8".into(), address: "h:5432".into() };
        let j = journal("", "h:5432");
        j.write(&journal_path(dir.path(), &unknown, "shop")).expect("write");
        assert!(journal_under_other_key(dir.path(), &known, "shop").is_some());
        assert!(journal_under_other_key(dir.path(), &elsewhere, "shop").is_none());
        assert!(journals_of_others(dir.path(), &elsewhere, "shop").len() == 1);
        let j = journal("7", "h:5432");
        assert!(unknown.owns(&j) && known.owns(&j) && !other.owns(&j) && !elsewhere.owns(&j));
    }

    /// A journal left `open` by a run killed after it created roles was read as finished:
    /// the next restore went ahead and the roles stayed with no record.
    #[test]
    fn an_open_journal_with_roles_created_is_unfinished_and_names_them() {
        let mut j: Journal = serde_json::from_value(serde_json::json!({
            "version": 1, "server": "h:5432", "database": "shop", "pid": 1, "host": "ops",
            "started_at": "2026-12-06T10:00:00Z", "backup": "b", "existed": true, "owner": "o",
            "encoding": "UTF8", "lc_collate": "C", "lc_ctype": "C", "phase": "open", "history": []
        }))
        .expect("journal");
        assert!(!j.unfinished(), "open with nothing done is not unfinished");
        j.created_roles.push(CreatedRole { name: "app \"x\"".into(), oid: 16384 });
        assert!(j.unfinished());
        assert!(j.describe().contains(r#"it created the roles "app ""x""""#), "{}", j.describe());
        j.phase = Phase::Finished;
        assert!(!j.unfinished());
    }

    /// A journal's `properties` as pgdrill writes them (`to_vec_pretty`): journals on disk
    /// carry this JSON, so it reads and writes back byte for byte whatever part declares the
    /// locale (issue 37: declared once with the backup manifest's `database_properties`);
    /// the server's defaults (empty) are left out.
    #[test]
    fn journal_properties_as_written_read_and_write_back_byte_for_byte() {
        let written = "{\n  \"locale_provider\": \"icu\",\n  \"locale\": \"de-DE\",\n  \"icu_rules\": \"&a < b\",\n  \"collation_version\": \"153.120\",\n  \"tablespace\": \"fast\"\n}";
        let p: Properties = serde_json::from_str(written).expect("parses");
        assert_eq!(serde_json::to_string_pretty(&p).expect("json"), written);
        assert!(p.summary().contains("de-DE"), "{}", p.summary());
        let defaults: Properties = serde_json::from_str("{}").expect("parses");
        assert_eq!(defaults, Properties::default());
        assert_eq!(serde_json::to_string(&defaults).expect("json"), "{}");
        let libc = "{\"collation_version\":\"2.36\"}";
        let p: Properties = serde_json::from_str(libc).expect("parses");
        assert_eq!(serde_json::to_string(&p).expect("json"), libc);
    }

    #[test]
    fn database_properties_reach_create_database_as_data() {
        let locale =
            crate::pg::Locale { provider: "icu".into(), name: "en-US-u-co-x'y".into(), icu_rules: "&a < b".into() };
        let p = Properties { locale, collation_version: "153.120".into(), tablespace: "fast \"disk\"".into() };
        assert_eq!(
            p.create_options(),
            r#" locale_provider "icu" icu_locale 'en-US-u-co-x''y' icu_rules '&a < b' collation_version '153.120' tablespace "fast ""disk""""#
        );
        assert_eq!(Properties::default().create_options(), "");
        let locale = crate::pg::Locale { provider: "builtin".into(), name: "C.UTF-8".into(), ..Default::default() };
        let builtin = Properties { locale, ..Default::default() };
        assert_eq!(builtin.create_options(), r#" locale_provider "builtin" builtin_locale 'C.UTF-8'"#);
    }

    #[test]
    fn the_lock_holder_is_named_from_its_application_name() {
        let t = time::macros::datetime!(2026-11-22 06:18:03 UTC);
        let name = app_name(t);
        assert!(name.len() <= 63);
        let who = holder(&name, 42);
        assert!(who.starts_with(&format!("pgdrill pid {} on host ", std::process::id())), "{who}");
        assert!(who.ends_with("since 2026-11-22T06:18:03Z"), "{who}");
        assert!(holder("psql", 7).contains("server process 7"));
    }

    #[test]
    fn manual_commands_keep_names_as_data() {
        let j = Journal {
            version: 1,
            server: "h:5432".into(),
            system_id: String::new(),
            database: "dbname=victim port=1'x".into(),
            database_oid: Some(16384),
            created_oid: None,
            private_name: None,
            pid: 1,
            host: "m".into(),
            started_at: OffsetDateTime::now_utc(),
            backup: "/b".into(),
            snapshot: Some("/s/snap shot.pgdrill".into()),
            snapshot_sha256: None,
            existed: true,
            owner: "o\"wner".into(),
            settings: None,
            encoding: "UTF8".into(),
            lc_collate: "C".into(),
            lc_ctype: "C".into(),
            properties: None,
            allowed_connections: Some(true),
            changed: true,
            recovering: String::new(),
            created_roles: vec![],
            phase: Phase::Restoring,
            history: vec![],
        };
        let c = manual_commands(&j, "admin", "127.0.0.1", 5432);
        assert!(c.contains("'/s/snap shot.pgdrill'"), "{c}");
        assert!(c.contains(r#"drop database if exists "dbname=victim port=1'\''x" with (force)"#), "{c}");
        assert!(c.contains(r#"dbname='\''dbname=victim port=1\'\''x'\''"#), "{c}");
        assert!(c.contains(r#"owner "o""wner""#), "{c}");
    }
}
