//! Point-in-time recovery in a throwaway server, shared by every physical source: on a data
//! directory a source has materialized, write the recovery settings, start a native server
//! that only this process can reach, wait for recovery to end, and PROVE the target was
//! reached before anyone reads the data.
//!
//! A recovery that "worked" is not taken on trust, because that is where PITR drills pass
//! wrongly in the field: a gap in the archive ends recovery early and the server promotes
//! anyway; a time target with no later commit is never confirmed; the default
//! `recovery_target_action` leaves a paused, read-only server; a throwaway clone archives
//! into the production archive. So:
//!
//! - the throwaway never archives: `archive_mode=off` and an empty `archive_command` (and
//!   `archive_library`), written last in `postgresql.auto.conf` and given on the command
//!   line, which wins over every file the backup brought;
//! - `recovery_target_action=promote`, and the server must have left recovery;
//! - the server's own log must say it stopped at the target (`recovery stopping ...`), the
//!   replayed LSN must be at or past an LSN target, the last completed transaction must not
//!   be later than a time target, and "latest" must have replayed the archive's newest
//!   segment (a gap ends recovery silently before it);
//! - WAL of another cluster ("from different database system"), a FATAL or PANIC, and
//!   PostgreSQL 14+'s "recovery ended before configured recovery target was reached" are
//!   failures naming the archive's end.
//!
//! The server listens on a unix socket only, in a 0700 directory of its own, with `trust`
//! for local connections: the restored cluster's passwords are not ours to know, and no
//! other user of the machine can reach it. It dies with pgdrill (parent-death signal), is
//! stopped on drop, and its directory has the native servers' prefix, so `pg::native`'s
//! reaper removes what a killed pgdrill left.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use time::OffsetDateTime;

use super::source::{parse_segment_name, ArchiveEnd, Lsn, MaterializeInto, ShortOfEnd, DEFAULT_SEGMENT_SIZE};
use crate::error::Failure;
use crate::pg::native::{self, RunAs};

/// Where recovery should stop.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    /// `recovery_target_time`.
    Time(OffsetDateTime),
    /// `recovery_target_lsn`.
    Lsn(Lsn),
    /// `recovery_target_xid`.
    Xid(u64),
    /// `recovery_target_name`: a restore point made with `pg_create_restore_point`.
    Name(String),
    /// `recovery_target = 'immediate'`: the end of the base backup.
    Immediate,
    /// No target: replay all the archive holds.
    Latest,
}

/// A recovery target and whether it is inclusive (`recovery_target_inclusive`).
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub kind: TargetKind,
    /// Stop just after the target (true, PostgreSQL's default) or just before it.
    pub inclusive: bool,
}

impl Target {
    pub fn latest() -> Target {
        Target { kind: TargetKind::Latest, inclusive: true }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = if self.inclusive { "" } else { " (exclusive)" };
        match &self.kind {
            TargetKind::Time(t) => write!(f, "time {}{how}", pg_time(*t)),
            TargetKind::Lsn(l) => write!(f, "LSN {l}{how}"),
            TargetKind::Xid(x) => write!(f, "transaction {x}{how}"),
            TargetKind::Name(n) => write!(f, "restore point {n:?}"),
            TargetKind::Immediate => write!(f, "the end of the base backup (immediate)"),
            TargetKind::Latest => write!(f, "the end of the archive (latest)"),
        }
    }
}

/// `2026-12-06 06:55:00.123456+00`: a time as PostgreSQL reads and (with `timezone=UTC`)
/// writes it.
pub fn pg_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// PostgreSQL's `2026-12-06 06:55:00.123456+00` (fraction and minutes of the offset
/// optional) -> the time.
pub fn parse_pg_time(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    // The offset starts at the last `+` or at a `-` after the time of day.
    let cut = text.rfind(['+', '-']).filter(|i| *i > 10)?;
    let (stamp, offset) = text.split_at(cut);
    let sign: i32 = if offset.starts_with('-') { -1 } else { 1 };
    let mut parts = offset[1..].split(':');
    let oh: i32 = parts.next()?.parse().ok()?;
    let om: i32 = parts.next().map(str::parse).transpose().ok()?.unwrap_or(0);
    let (date, clock) = stamp.split_once(' ')?;
    let mut d = date.split('-');
    let (y, mo, da): (i32, u8, u8) = (d.next()?.parse().ok()?, d.next()?.parse().ok()?, d.next()?.parse().ok()?);
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut c = hms.split(':');
    let (h, mi, se): (u8, u8, u8) = (c.next()?.parse().ok()?, c.next()?.parse().ok()?, c.next()?.parse().ok()?);
    if d.next().is_some() || c.next().is_some() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let nanos: u32 = if frac.is_empty() { 0 } else { format!("{frac:0<9}").parse().ok()? };
    let date = time::Date::from_calendar_date(y, time::Month::try_from(mo).ok()?, da).ok()?;
    let local = time::PrimitiveDateTime::new(date, time::Time::from_hms_nano(h, mi, se, nanos).ok()?);
    let offset = time::UtcOffset::from_whole_seconds(sign * (oh * 3600 + om * 60)).ok()?;
    Some(local.assume_offset(offset).to_offset(time::UtcOffset::UTC))
}

/// The directory a recovery works in: the data directory, the tablespaces, the socket and
/// the server's log, all under one temp directory with the native servers' prefix. Dropped,
/// it is removed.
#[derive(Debug)]
pub struct Workspace {
    dir: PathBuf,
}

impl Workspace {
    /// A new, empty workspace under the temp directory.
    pub fn new() -> Result<Workspace, Failure> {
        native::reap_stale();
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{}-", native::DIR_PREFIX, std::process::id()))
            .tempdir()
            .map_err(|e| Failure::environment(format!("cannot create a temp directory: {e}")))?
            .keep();
        let ws = Workspace { dir };
        fs::write(ws.dir.join("owner.pid"), std::process::id().to_string())
            .map_err(|e| Failure::environment(format!("writing {}: {e}", ws.dir.display())))?;
        for d in [ws.data_dir(), ws.tablespaces_dir(), ws.socket_dir()] {
            fs::create_dir(&d).map_err(|e| Failure::environment(format!("creating {}: {e}", d.display())))?;
            let _ = fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o700));
        }
        Ok(ws)
    }

    /// The workspace's top directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The (empty until materialized) data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Where tablespaces go, one directory per OID.
    pub fn tablespaces_dir(&self) -> PathBuf {
        self.dir.join("tablespaces")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.join("sock")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Where a source materializes into.
    pub fn materialize_into(&self) -> MaterializeInto {
        MaterializeInto { data_dir: self.data_dir(), tablespaces_dir: self.tablespaces_dir() }
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// How to recover.
#[derive(Debug, Clone)]
pub struct RecoverOptions {
    /// The `restore_command` (`PhysicalSource::restore_command`); `None`: the backup's own
    /// WAL (pg_wal) is all there is.
    pub restore_command: Option<String>,
    pub target: Target,
    /// `recovery_target_timeline` (default `latest`).
    pub timeline: Option<String>,
    /// Directory of the server binaries; default: the backup's major under
    /// /usr/lib/postgresql, pg_config, PATH.
    pub bin_dir: Option<PathBuf>,
    /// A superuser of the restored cluster to connect as (default `postgres`).
    pub user: Option<String>,
    /// Database the marker query runs in (default `postgres`).
    pub database: Option<String>,
    /// How long recovery may take, server start to promotion.
    pub timeout: Duration,
    /// A query that must return one row whose first column is true once recovered (a
    /// marker row the target should have brought back).
    pub marker: Option<String>,
    /// The archive's newest segment: "latest" must reach it, and an unreachable target's
    /// failure names it.
    pub archive_end: Option<ArchiveEnd>,
    /// The system identifier the backup should have (the source's), if known.
    pub system_identifier: Option<u64>,
    /// Local folders `restore_command` reads (`PhysicalSource::paths`): mounted read-only,
    /// at the same paths, into a throwaway that runs in Docker.
    pub mounts: Vec<PathBuf>,
    /// The Docker image the throwaway must run in, local binaries or not: the one the
    /// source's tool served in (`PhysicalSource::placement`), since its restore_command runs
    /// that tool.
    pub image: Option<String>,
    /// A throwaway in Docker shares the host's network (its restore_command reaches a
    /// repository over it) instead of having none. It listens on its socket only either way.
    pub network: bool,
}

impl Default for RecoverOptions {
    fn default() -> Self {
        RecoverOptions {
            restore_command: None,
            target: Target::latest(),
            timeline: None,
            bin_dir: None,
            user: None,
            database: None,
            timeout: Duration::from_secs(600),
            marker: None,
            archive_end: None,
            system_identifier: None,
            mounts: Vec::new(),
            image: None,
            network: false,
        }
    }
}

/// What the recovery proved, for reports (RTO phases, the achieved point, RPO).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryFacts {
    /// The target as asked.
    pub target: String,
    /// The server's own line saying where it stopped (`recovery stopping before commit of
    /// transaction 812, time ...`); `None` for "latest", which has no stop.
    pub stop_line: Option<String>,
    /// The commit time of the last transaction replayed ("last completed transaction was
    /// at log time"): the point in time the data now reflects.
    pub achieved_time: Option<OffsetDateTime>,
    /// Where replay started (the backup's checkpoint redo) and became consistent.
    pub redo_start: Option<Lsn>,
    pub consistent_at: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` after promotion: the end of the last record replayed.
    pub replay_lsn: Lsn,
    /// The timeline the server promoted to (`selected new timeline ID`).
    pub new_timeline: Option<u32>,
    /// The restored cluster's system identifier (`pg_control_system()`).
    pub system_identifier: u64,
    /// Segments fetched with restore_command, and the last of them.
    pub segments_restored: u32,
    pub last_segment: Option<String>,
    /// The first WAL segment (not a history file) restored from the archive.
    pub first_segment: Option<String>,
    /// Bytes of WAL replayed (replay LSN minus redo start).
    pub replayed_bytes: u64,
    /// Server start to promotion.
    pub replay: Duration,
    /// Replay rate in MB/s (10^6 bytes).
    pub replay_mb_s: f64,
    /// The marker query's answer, when one was given.
    pub marker: Option<bool>,
    /// `server_version` of the throwaway.
    pub server_version: String,
    /// The log lines the proof rests on, in order.
    pub evidence: Vec<String>,
}

/// A recovered, promoted throwaway server. Dropped or stopped, the server is shut down and
/// the workspace removed.
#[derive(Debug)]
pub struct Recovered {
    child: Option<Child>,
    /// The container's name when the server runs in Docker (the child is its docker CLI).
    container: Option<String>,
    ws: Workspace,
    pub user: String,
    pub database: String,
    /// The socket's port number (the server has no TCP listener).
    pub port: u16,
    pub major: u32,
    pub facts: RecoveryFacts,
}

/// The socket port every recovered server uses: its socket lives in a directory of its
/// own, so no two servers share a socket path.
const PORT: u16 = 5432;

impl Recovered {
    /// A libpq key=value connection string for `database` over the server's socket.
    pub fn url_for(&self, database: &str) -> String {
        conn_string(&self.ws.socket_dir(), PORT, &self.user, database)
    }

    /// The connection string for the options' database.
    pub fn url(&self) -> String {
        self.url_for(&self.database)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.ws.log_path())
    }

    /// The workspace (data directory, log).
    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }

    /// Shut the server down and remove its files.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        stop_child(&mut self.child);
        // Killing the docker CLI does not stop its container.
        if let Some(name) = self.container.take() {
            crate::pg::image_tools::remove(&name);
        }
    }
}

impl Drop for Recovered {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn conn_string(socket: &Path, port: u16, user: &str, database: &str) -> String {
    use crate::util::conninfo_quote as q;
    format!(
        "host={} port={port} user={} dbname={} sslmode=disable",
        q(&socket.display().to_string()),
        q(user),
        q(database)
    )
}

/// Immediate shutdown (SIGQUIT), then SIGKILL; waits for the postmaster.
pub(super) fn stop_child(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGQUIT);
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > until => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }
}

fn read_log(path: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// The 32-bit transaction id of `x`. `txid_current()` and `pg_current_xact_id()` give the
/// epoch too (`epoch << 32 | xid`: 4294968108 is xid 812 after one wraparound); the server
/// keeps the low 32 bits of `recovery_target_xid` and logs those, so the setting and the
/// proof use them (the proof compared 4294968108 with the log's 812 and failed a recovery
/// that had stopped right there).
fn xid32(x: u64) -> u64 {
    x & 0xFFFF_FFFF
}

/// A configuration file value: single-quoted, quotes doubled. PostgreSQL reads a backslash
/// in a quoted value as an escape (`\t` is a tab) and a raw newline as a syntax error, so
/// backslashes are doubled and line breaks written as escapes: a restore point's name or an
/// archive folder's path reaches the server as given, whatever it holds.
fn conf_quote(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('\'');
    for c in v.chars() {
        match c {
            '\'' => s.push_str("''"),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            c => s.push(c),
        }
    }
    s.push('\'');
    s
}

/// The lines appended to `postgresql.auto.conf`. They come last in the last file read, so
/// they win over anything the backup brought (an `ALTER SYSTEM SET archive_command` of the
/// source included).
pub fn recovery_settings(opts: &RecoverOptions, major: u32) -> String {
    let mut s = String::from("\n# pgdrill: point-in-time recovery in a throwaway server. Never archive.\n");
    let mut set = |k: &str, v: &str| s.push_str(&format!("{k} = {}\n", conf_quote(v)));
    // Without an archive the backup's own pg_wal is read; `false` says "absent" for every
    // segment, so recovery still runs (and is proven) the same way.
    set("restore_command", opts.restore_command.as_deref().unwrap_or("false"));
    set("archive_mode", "off");
    set("archive_command", "");
    // A standby's configuration (a base backup taken from one) often cleans the archive
    // at each restartpoint (`pg_archivecleanup`) or runs a command at recovery's end: in the
    // throwaway, those would delete from, or write to, the production archive.
    set("archive_cleanup_command", "");
    set("recovery_end_command", "");
    if major >= 15 {
        set("archive_library", "");
    }
    set("recovery_target_action", "promote");
    set("recovery_target_timeline", opts.timeline.as_deref().unwrap_or("latest"));
    set("recovery_target_inclusive", if opts.target.inclusive { "on" } else { "off" });
    match &opts.target.kind {
        TargetKind::Time(t) => set("recovery_target_time", &pg_time(*t)),
        TargetKind::Lsn(l) => set("recovery_target_lsn", &l.to_string()),
        TargetKind::Xid(x) => set("recovery_target_xid", &xid32(*x).to_string()),
        TargetKind::Name(n) => set("recovery_target_name", n),
        TargetKind::Immediate => set("recovery_target", "immediate"),
        TargetKind::Latest => {}
    }
    s
}

/// Settings given on the command line: they beat every configuration file. Where the
/// server listens (a socket in our directory, no TCP), where it logs and in which words,
/// and that it never archives.
fn command_line(ws: &Workspace, hba: &Path, ident: &Path, major: u32) -> Vec<String> {
    let mut v: Vec<(&str, String)> = vec![
        ("listen_addresses", String::new()),
        ("unix_socket_directories", ws.socket_dir().display().to_string()),
        ("hba_file", hba.display().to_string()),
        ("ident_file", ident.display().to_string()),
        // The proof reads the server's own words: in English, in UTC, on stderr (our file).
        ("lc_messages", "C".into()),
        ("log_timezone", "UTC".into()),
        ("timezone", "UTC".into()),
        ("log_destination", "stderr".into()),
        ("logging_collector", "off".into()),
        ("log_min_messages", "warning".into()),
        ("log_line_prefix", "%m [%p] ".into()),
        // No connection before recovery ended: whoever connects sees the promoted server.
        ("hot_standby", "off".into()),
        ("archive_mode", "off".into()),
        ("archive_command", String::new()),
        ("archive_cleanup_command", String::new()),
        ("recovery_end_command", String::new()),
        // Speed over durability: the server is deleted afterwards.
        ("fsync", "off".into()),
        ("synchronous_commit", "off".into()),
        ("autovacuum", "off".into()),
        ("ssl", "off".into()),
        // Dynamic shared memory in the workspace's data directory (pg_dynshmem/), removed
        // with it, never left in /dev/shm by a server killed outright (pg::THROWAWAY_SETTINGS).
        ("dynamic_shared_memory_type", "mmap".into()),
    ];
    if major >= 15 {
        v.push(("archive_library", String::new()));
    }
    // Paths the backed-up configuration may name outside the workspace: `data_directory`
    // (the server would open that cluster, the production one, instead of ours), a pid file
    // and, before PostgreSQL 15, the statistics' temp folder (both where the source's
    // server keeps its own).
    v.push(("data_directory", ws.data_dir().display().to_string()));
    v.push(("external_pid_file", String::new()));
    if major < 15 {
        v.push(("stats_temp_directory", ws.data_dir().join("pg_stat_tmp").display().to_string()));
    }
    v.into_iter().flat_map(|(k, val)| ["-c".to_string(), format!("{k}={val}")]).collect()
}

/// Recover the backup materialized in `ws` and prove the target was reached. On success the
/// server runs (promoted) for the caller's checks; on failure it is stopped and the message
/// says what the server reported and where the archive ends.
pub async fn recover(ws: Workspace, opts: RecoverOptions) -> Result<Recovered, Failure> {
    let data = ws.data_dir();
    let major: u32 = fs::read_to_string(data.join("PG_VERSION"))
        .ok()
        .and_then(|v| v.trim().split('.').next().and_then(|m| m.parse().ok()))
        .ok_or_else(|| {
            Failure::failed(format!(
                "{} has no readable PG_VERSION: the base backup was not materialized completely",
                data.display()
            ))
        })?;
    // recovery.signal and the recovery_target_* settings in postgresql.conf are
    // PostgreSQL 12's; older servers read recovery.conf, which this does not write.
    if major < 12 {
        return Err(Failure::invalid(format!(
            "the base backup is of PostgreSQL {major}: point-in-time recovery here needs PostgreSQL 12 or later"
        )));
    }
    let runner = match &opts.image {
        Some(_) if opts.bin_dir.is_some() => {
            return Err(Failure::invalid(
                "bin_dir names local server binaries, but the source's tool serves this backup in a Docker image, where its restore_command runs: leave bin_dir unset",
            ))
        }
        Some(image) => Runner::Docker(image.clone()),
        None => choose_runner(opts.bin_dir.as_deref(), major)?,
    };
    let run_as = RunAs::detect()?;
    prepare(&ws, &opts, major)?;
    tokio::task::block_in_place(|| run_as.own_tree(ws.dir()))?;

    let user = opts.user.clone().unwrap_or_else(|| "postgres".into());
    let database = opts.database.clone().unwrap_or_else(|| "postgres".into());
    let log = fs::File::create(ws.log_path())
        .map_err(|e| Failure::environment(format!("creating {}: {e}", ws.log_path().display())))?;
    run_as.own(&ws.log_path())?;
    if matches!(runner, Runner::Docker(_)) {
        // A throwaway container outlives a pgdrill killed with -9 (`docker run`'s client
        // dies, the container does not): the next recovery removes those whose owner is gone.
        if let Ok(engine) = crate::pg::docker::engine().await {
            crate::pg::docker::reap_stale(&engine).await;
        }
    }
    let (mut cmd, container) = match &runner {
        Runner::Native(bin_dir) => (run_as.command(&bin_dir.join("postgres")), None),
        Runner::Docker(image) => {
            let (c, name) = docker_command(image, major, &ws, &opts.mounts, opts.network, &run_as);
            (c, Some(name))
        }
    };
    cmd.arg("-D")
        .arg(&data)
        .arg("-p")
        .arg(PORT.to_string())
        .args(command_line(&ws, &ws.dir().join("pgdrill_hba.conf"), &ws.dir().join("pgdrill_ident.conf"), major))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    let started = Instant::now();
    let child =
        crate::child::spawn(&mut cmd).map_err(|e| Failure::environment(format!("cannot start postgres: {e}")))?;
    let mut server = Recovered {
        child: Some(child),
        container,
        ws,
        user,
        database,
        port: PORT,
        major,
        facts: RecoveryFacts { target: opts.target.to_string(), ..Default::default() },
    };
    // A restore_command that recorded its tool's failure (`tools::FETCH_FAILED`) stopped
    // the recovery: the record rides along as the failure's source, for the source to
    // judge, read before the workspace goes with the server.
    let client = wait_promoted(&mut server, &opts, started).await.map_err(|e| {
        match super::tools::fetch_failed(server.ws.dir()) {
            Some(f) => e.with_source(f),
            None => e,
        }
    })?;
    let replay = started.elapsed();
    let row = client
        .query_one(
            "select pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, ''), \
             (select system_identifier from pg_control_system())::text, current_setting('server_version')",
            &[],
        )
        .await
        .map_err(|e| Failure::environment(format!("querying the recovered server: {}", crate::pg::describe(&e))))?;
    let queried = Queried {
        in_recovery: row.get(0),
        replay_lsn: Lsn::parse(row.get::<_, &str>(1)),
        system_identifier: row.get::<_, &str>(2).parse().unwrap_or_default(),
    };
    server.facts.server_version = row.get(3);
    let log_text = server.log();
    let mut facts = prove(&opts, &log_text, &queried)?;
    facts.server_version = std::mem::take(&mut server.facts.server_version);
    facts.replay = replay;
    facts.replay_mb_s = mb_per_s(facts.replayed_bytes, replay);
    if let Some(sql) = &opts.marker {
        let marker_client = crate::pg::connect(&server.url()).await?;
        let found = marker_client.query_opt(sql.as_str(), &[]).await.map_err(|e| {
            Failure::failed(format!("the marker query failed on the recovered server: {}", crate::pg::describe(&e)))
        })?;
        let ok = found.and_then(|r| r.try_get::<_, bool>(0).ok()).unwrap_or(false);
        facts.marker = Some(ok);
        if !ok {
            return Err(Failure::failed(format!(
                "recovered to {} but the marker query did not return true: the data is not at the target",
                opts.target
            )));
        }
    }
    server.facts = facts;
    Ok(server)
}

/// Where the throwaway's server binary comes from.
enum Runner {
    /// The local binaries of the backup's major.
    Native(PathBuf),
    /// That major's Docker image, when this machine has no such binaries (PostgreSQL 17 on a
    /// machine with 15 only).
    Docker(String),
}

/// The local binaries of `major`, else an image of that major Docker has here (the
/// configured or official one, else `ci/setup.sh`'s local one). A `bin_dir` given is
/// never replaced.
fn choose_runner(bin_dir: Option<&Path>, major: u32) -> Result<Runner, Failure> {
    let native = match native::find_bin_dir(bin_dir, Some(major)) {
        Ok(b) => return Ok(Runner::Native(b)),
        Err(e) if bin_dir.is_some() => return Err(e),
        Err(e) => e,
    };
    match docker_image_for(major) {
        Some(image) => Ok(Runner::Docker(image)),
        None => {
            Err(native
                .context(format!("recovering a PostgreSQL {major} backup (and Docker has no image of {major} here)")))
        }
    }
}

/// An image of PostgreSQL `major` Docker has here (`pg::image_tools::image_of`, shared with
/// the client tools' lookup).
pub fn docker_image_for(major: u32) -> Option<String> {
    crate::pg::image_tools::image_of(major)
}

/// Every image of PostgreSQL `major` Docker has here, in `docker_image_for`'s order.
pub fn docker_images_for(major: u32) -> Vec<String> {
    crate::pg::image_tools::images_of(major)
}

/// `docker run` of the image's own postgres on the workspace, mounted at the same path, as
/// the user that owns it, without a network (it listens on the socket in the workspace)
/// unless its restore_command needs the host's (`network`), labelled as pgdrill's so a
/// crashed pgdrill's container is removed by the next one.
fn docker_command(
    image: &str,
    major: u32,
    ws: &Workspace,
    mounts: &[PathBuf],
    network: bool,
    run_as: &RunAs,
) -> (std::process::Command, String) {
    let name =
        format!("pgdrill-recover-{}-{}", std::process::id(), native::generate_password().get(..8).unwrap_or("0"));
    let (uid, gid) = match run_as {
        RunAs::User { uid, gid, .. } => (*uid, *gid),
        RunAs::Me => (run_as.uid(), nix::unistd::getegid().as_raw()),
    };
    let owner = format!("{}:{}", crate::util::hostname().unwrap_or_default(), std::process::id());
    let mut d = crate::pg::image_tools::docker();
    let network = if network { "host" } else { "none" };
    d.args(["run", "--rm", "--name", &name, "--network", network, "--user", &format!("{uid}:{gid}")])
        .args(["--label", &format!("{}=1", crate::pg::docker::LABEL)])
        .args(["--label", &format!("{}={owner}", crate::pg::docker::OWNER_LABEL)])
        .arg("--volume")
        .arg(format!("{}:{}", ws.dir().display(), ws.dir().display()));
    for m in mounts {
        d.arg("--volume").arg(format!("{}:{}:ro", m.display(), m.display()));
    }
    d.args(["--entrypoint", &format!("/usr/lib/postgresql/{major}/bin/postgres"), image]);
    (d, name)
}

fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s <= 0.0 {
        0.0
    } else {
        bytes as f64 / 1e6 / s
    }
}

/// Files and settings in the data directory before the start.
fn prepare(ws: &Workspace, opts: &RecoverOptions, major: u32) -> Result<(), Failure> {
    let data = ws.data_dir();
    let write = |p: PathBuf, text: &str| {
        fs::write(&p, text).map_err(|e| Failure::environment(format!("writing {}: {e}", p.display())))
    };
    // Left by the source's server or a standby: they would stop the start or change the mode.
    for f in ["postmaster.pid", "postmaster.opts", "standby.signal", "recovery.conf"] {
        let _ = fs::remove_file(data.join(f));
    }
    // Clusters laid out the Debian way keep their configuration outside the data directory,
    // so a backup of one has none; postgres needs the file to exist.
    if !data.join("postgresql.conf").exists() {
        write(data.join("postgresql.conf"), "# pgdrill: the base backup had no postgresql.conf\n")?;
    }
    // Only local connections, over a socket in a 0700 directory: trust is safe, and the
    // restored cluster's passwords are not needed.
    write(ws.dir().join("pgdrill_hba.conf"), "local all all trust\n")?;
    write(ws.dir().join("pgdrill_ident.conf"), "")?;
    let auto = data.join("postgresql.auto.conf");
    let mut text = fs::read_to_string(&auto).unwrap_or_default();
    text.push_str(&recovery_settings(opts, major));
    write(auto, &text)?;
    write(data.join("recovery.signal"), "")?;
    Ok(())
}

/// How often the wait looks at `postmaster.pid` (a file read; the server is not disturbed).
const READY_POLL: Duration = Duration::from_millis(10);

/// How long `postmaster.pid` may give no status before the wait connects blind.
const BLIND_AFTER: Duration = Duration::from_secs(1);
/// How often it tries a connection when `postmaster.pid` says nothing it can use.
const CONNECT_POLL: Duration = Duration::from_millis(100);

/// Wait until the server accepts a connection (with `hot_standby=off`, only after recovery
/// ended and it promoted), it exits, or the timeout passes. It watches `postmaster.pid`
/// and connects once that says `ready`: a connection tried every 100 ms while the WAL
/// replays cost a backend's fork and a FATAL line each, on the cores the replay needs, and
/// up to 100 ms after the promotion. Where the file gives no status, it connects every
/// 100 ms as before.
async fn wait_promoted(
    server: &mut Recovered,
    opts: &RecoverOptions,
    started: Instant,
) -> Result<tokio_postgres::Client, Failure> {
    let url = server.url_for("postgres");
    let data = server.ws.data_dir();
    let mut last = String::from("not started yet");
    let mut last_try: Option<Instant> = None;
    let waiting = Instant::now();
    let mut status_seen = false;
    loop {
        if let Some(child) = server.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                server.child = None;
                let log = server.log();
                return Err(failure_from_log(opts, &log, &format!("the server exited ({status})")));
            }
        }
        // `starting` while it recovers, `ready` once it accepts connections: with
        // `hot_standby=off` only after recovery ended and it promoted.
        let status = native::postmaster_status(&data);
        let ready = status.as_deref() == Some("ready");
        let known = matches!(status.as_deref(), Some("starting" | "ready" | "stopping" | "standby"));
        status_seen |= known;
        // A file that gives no status (a server in a container, whose file this user may not
        // read) is answered by connecting. One that has not got its status line yet is the
        // server's first moments, when its socket may already take a connection and refuse
        // it ("the database system is starting up", a FATAL in the log): it is given
        // `BLIND_AFTER` to write it.
        let blind = !known && !status_seen && waiting.elapsed() >= BLIND_AFTER;
        if ready || blind && last_try.is_none_or(|t| t.elapsed() >= CONNECT_POLL) {
            last_try = Some(Instant::now());
            match crate::pg::connect(&url).await {
                Ok(c) => match c.query_one("select pg_is_in_recovery()", &[]).await {
                    Ok(r) if !r.get::<_, bool>(0) => return Ok(c),
                    Ok(_) => last = "still in recovery".into(),
                    Err(e) => last = crate::pg::describe(&e),
                },
                Err(e) => {
                    last = e.to_string();
                    // A role the restored cluster lacks is no reason to wait for the timeout.
                    if last.contains("does not exist") && last.contains("role") {
                        return Err(Failure::invalid(format!(
                            "recovery ended, but {last}: set `user:` to a superuser of the backed-up cluster"
                        )));
                    }
                }
            }
        } else if let Some(s) = status {
            last = format!("postmaster.pid says `{s}`");
        }
        if started.elapsed() > opts.timeout {
            let log = server.log();
            return Err(failure_from_log(
                opts,
                &log,
                &format!("recovery did not finish within {}s ({last})", opts.timeout.as_secs()),
            ));
        }
        // Ready but not yet connectable (the socket's first moments): the 100 ms of before.
        tokio::time::sleep(if ready { CONNECT_POLL } else { READY_POLL }).await;
    }
}

/// What the server said, read from its log.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct LogFacts {
    pub stop_line: Option<String>,
    pub last_commit: Option<OffsetDateTime>,
    pub redo_start: Option<Lsn>,
    pub consistent_at: Option<Lsn>,
    pub redo_done: Option<Lsn>,
    pub new_timeline: Option<u32>,
    pub restored: u32,
    pub last_segment: Option<String>,
    /// The first WAL segment (24 hex digits, not a history file) restored.
    pub first_segment: Option<String>,
    /// FATAL and PANIC lines, and WAL from another cluster.
    pub fatal: Vec<String>,
    pub evidence: Vec<String>,
}

/// The text after `LOG:  `, `FATAL:  ` ... of a log line, and its severity.
fn message_of(line: &str) -> Option<(&str, &str)> {
    for sev in ["LOG:  ", "FATAL:  ", "PANIC:  ", "WARNING:  ", "DETAIL:  ", "HINT:  "] {
        if let Some(i) = line.find(sev) {
            return Some((sev.trim_end().trim_end_matches(':'), &line[i + sev.len()..]));
        }
    }
    None
}

/// The first `"..."`-quoted word after `key`.
fn quoted_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let rest = &text[text.find(key)? + key.len()..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')?;
    Some(&rest[start..start + end])
}

/// Read the server log's recovery lines.
pub fn read_recovery_log(log: &str) -> LogFacts {
    let mut f = LogFacts::default();
    for line in log.lines() {
        let Some((sev, msg)) = message_of(line) else { continue };
        // Our own connection attempts while recovery runs are refused with a FATAL of
        // their own ("the database system is starting up"): not the server's verdict.
        if sev == "FATAL" && msg.starts_with("the database system is ") {
            continue;
        }
        if sev == "FATAL" || sev == "PANIC" {
            f.fatal.push(msg.to_string());
            f.evidence.push(format!("{sev}: {msg}"));
            continue;
        }
        if msg.contains("from different database system") {
            f.fatal.push(msg.to_string());
            f.evidence.push(msg.to_string());
        } else if msg.starts_with("restored log file ") {
            f.restored += 1;
            f.last_segment = quoted_after(msg, "restored log file").map(str::to_string);
            if f.first_segment.is_none() {
                f.first_segment =
                    f.last_segment.clone().filter(|s| parse_segment_name(s, DEFAULT_SEGMENT_SIZE).is_some());
            }
        } else if let Some(rest) = msg.strip_prefix("redo starts at ") {
            f.redo_start = Lsn::parse(rest.split_whitespace().next().unwrap_or_default());
            f.evidence.push(msg.to_string());
        } else if let Some(rest) = msg.strip_prefix("consistent recovery state reached at ") {
            f.consistent_at = Lsn::parse(rest.split_whitespace().next().unwrap_or_default());
            f.evidence.push(msg.to_string());
        } else if msg.starts_with("recovery stopping ") {
            f.stop_line = Some(msg.to_string());
            f.evidence.push(msg.to_string());
        } else if let Some(rest) = msg.strip_prefix("redo done at ") {
            f.redo_done = Lsn::parse(rest.split_whitespace().next().unwrap_or_default());
            f.evidence.push(msg.to_string());
        } else if let Some(rest) = msg.strip_prefix("last completed transaction was at log time ") {
            f.last_commit = parse_pg_time(rest);
            f.evidence.push(msg.to_string());
        } else if let Some(rest) = msg.strip_prefix("selected new timeline ID: ") {
            f.new_timeline = rest.trim().parse().ok();
            f.evidence.push(msg.to_string());
        } else if msg.starts_with("starting point-in-time recovery") || msg.starts_with("archive recovery complete") {
            f.evidence.push(msg.to_string());
        }
    }
    f
}

/// Where the archive ends, for messages.
fn archive_end_text(opts: &RecoverOptions, log: &LogFacts) -> String {
    let mut parts = Vec::new();
    if let Some(end) = &opts.archive_end {
        parts.push(format!("the archive's newest segment is {}", end.segment));
    }
    match &log.last_segment {
        Some(s) => parts.push(format!("the last segment restored was {s}")),
        None => parts.push("no segment was restored from the archive".into()),
    }
    if let Some(l) = log.redo_done {
        parts.push(format!("redo ended at {l}"));
    }
    parts.join("; ")
}

/// The failure for a server that stopped (or did not finish) without reaching the target.
fn failure_from_log(opts: &RecoverOptions, log: &str, what: &str) -> Failure {
    let facts = read_recovery_log(log);
    let fatal = facts.fatal.last().cloned().unwrap_or_default();
    let end = archive_end_text(opts, &facts);
    // The restore_command stopped recovery because the workspace could not keep its tool's
    // words, without which its exit 1 cannot be read: this machine's failure, not the backup's.
    if let Some(line) = log.lines().find(|l| l.contains(super::tools::UNKEPT)) {
        return Failure::environment(format!(
            "recovery did not reach {}: {} ({end}); no verdict on the backup",
            opts.target,
            crate::util::visible(line.trim())
        ));
    }
    if fatal.contains("recovery ended before configured recovery target was reached") {
        return Failure::failed(format!("recovery did not reach {}: the server says \"{fatal}\" ({end})", opts.target));
    }
    // WAL of another cluster is logged before the FATAL it leads to ("could not locate
    // required checkpoint record"): it is the cause to name.
    if let Some(other) = facts.fatal.iter().find(|m| m.contains("from different database system")) {
        return Failure::failed(format!(
            "recovery did not reach {}: the archive holds WAL of another cluster (\"{other}\"; {end})",
            opts.target
        ));
    }
    let said = if fatal.is_empty() { tail(log, 5) } else { fatal };
    Failure::failed(format!("recovery did not reach {}: {what}; the server says \"{said}\" ({end})", opts.target))
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// What the promoted server answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queried {
    pub in_recovery: bool,
    pub replay_lsn: Option<Lsn>,
    pub system_identifier: u64,
}

/// The proof that the target was reached, from the server's log and answers. Every check
/// that fails is a failed `Failure` naming what the server said.
pub fn prove(opts: &RecoverOptions, log: &str, q: &Queried) -> Result<RecoveryFacts, Failure> {
    let lf = read_recovery_log(log);
    let target = &opts.target;
    let end = archive_end_text(opts, &lf);
    let fail = |why: String| Failure::failed(format!("recovery did not reach {target}: {why} ({end})"));
    if q.in_recovery {
        return Err(fail("the server is still in recovery (not promoted)".into()));
    }
    if let Some(bad) = lf.fatal.iter().find(|m| m.contains("from different database system")) {
        return Err(fail(format!("the archive holds WAL of another cluster: \"{bad}\"")));
    }
    if let Some(want) = opts.system_identifier {
        if want != q.system_identifier {
            return Err(fail(format!(
                "the base backup is of system {} but the source is system {want}",
                q.system_identifier
            )));
        }
    }
    let replay = q.replay_lsn.or(lf.redo_done).unwrap_or_default();
    let stop = lf.stop_line.clone().unwrap_or_default();
    let no_stop =
        || fail("the server never logged \"recovery stopping\" at the target: it ran out of WAL and promoted".into());
    match &target.kind {
        TargetKind::Latest => {
            if !stop.is_empty() {
                return Err(fail(format!("the server stopped early: \"{stop}\"")));
            }
            if let Some(end) = &opts.archive_end {
                // At the newest segment's very start is before it too: a segment switch
                // (`pg_switch_wal`, `archive_timeout`) ends the one before it exactly there,
                // so a server that never read the newest segment stops at its first byte.
                if replay <= end.segment_start {
                    // Typed, so the source can list its archive again: a segment removed
                    // while this recovery ran is no gap of the backup's.
                    let short = ShortOfEnd { replayed: replay, end: end.clone() };
                    return Err(fail(format!(
                        "replay ended at {replay}, before the archive's newest segment {} (starts at {}): a segment \
                         in between is missing or unreadable",
                        end.segment, end.segment_start
                    ))
                    .with_source(short));
                }
            }
        }
        TargetKind::Immediate => {
            if !stop.contains("reaching consistency") {
                return Err(no_stop());
            }
        }
        TargetKind::Name(n) => {
            // The name is printed as it is, quotes and all: `at restore point "a"b", time`.
            if !stop.starts_with(&format!("recovery stopping at restore point \"{n}\", time ")) {
                return Err(no_stop());
            }
        }
        TargetKind::Xid(x) => {
            // `transaction 81,` is not `transaction 812,`.
            if !stop.contains(&format!(" of transaction {}, ", xid32(*x))) {
                return Err(no_stop());
            }
        }
        TargetKind::Lsn(l) => {
            if !stop.contains("WAL location") {
                return Err(no_stop());
            }
            if target.inclusive && replay < *l {
                return Err(fail(format!("the replayed LSN {replay} is before the target {l}")));
            }
        }
        TargetKind::Time(t) => {
            // PostgreSQL stops before the first commit later than the target (at or later
            // when exclusive): that commit's time must be past the target, and the last one
            // replayed must not be.
            if !stop.starts_with("recovery stopping before") {
                return Err(no_stop());
            }
            let stopped_at = stop.rsplit_once(", time ").and_then(|(_, t)| parse_pg_time(t));
            match stopped_at {
                Some(s) if s > *t || (!target.inclusive && s >= *t) => {}
                _ => return Err(fail(format!("the stop is not past the target: \"{stop}\""))),
            }
            if let Some(last) = lf.last_commit {
                if last > *t {
                    return Err(fail(format!("a transaction of {} was replayed, after the target", pg_time(last))));
                }
            }
        }
    }
    Ok(RecoveryFacts {
        target: target.to_string(),
        stop_line: lf.stop_line.clone(),
        achieved_time: lf.last_commit,
        redo_start: lf.redo_start,
        consistent_at: lf.consistent_at,
        replay_lsn: replay,
        new_timeline: lf.new_timeline,
        system_identifier: q.system_identifier,
        segments_restored: lf.restored,
        last_segment: lf.last_segment.clone(),
        first_segment: lf.first_segment.clone(),
        replayed_bytes: lf.redo_start.map(|s| replay.0.saturating_sub(s.0)).unwrap_or_default(),
        evidence: lf.evidence,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIME_LOG: &str = "\
2026-12-06 07:00:00.000 UTC [10] LOG:  starting point-in-time recovery to 2026-12-06 06:59:30.000000+00
2026-12-06 07:00:00.010 UTC [10] LOG:  restored log file \"000000010000000000000002\" from archive
2026-12-06 07:00:00.020 UTC [10] LOG:  redo starts at 0/2000028
2026-12-06 07:00:00.030 UTC [10] LOG:  consistent recovery state reached at 0/2000100
2026-12-06 07:00:00.040 UTC [10] LOG:  restored log file \"000000010000000000000003\" from archive
2026-12-06 07:00:00.050 UTC [10] LOG:  recovery stopping before commit of transaction 812, time 2026-12-06 06:59:30.5+00
2026-12-06 07:00:00.060 UTC [10] LOG:  redo done at 0/3000200 system usage: CPU: user: 0.00 s
2026-12-06 07:00:00.070 UTC [10] LOG:  last completed transaction was at log time 2026-12-06 06:59:29.9+00
2026-12-06 07:00:00.080 UTC [10] LOG:  selected new timeline ID: 2
";

    fn opts(kind: TargetKind) -> RecoverOptions {
        RecoverOptions { target: Target { kind, inclusive: true }, ..Default::default() }
    }

    fn at(text: &str) -> OffsetDateTime {
        parse_pg_time(text).expect("time")
    }

    #[test]
    fn times_read_and_written_as_postgresql_does() {
        let t = at("2026-12-06 06:59:30.5+00");
        assert_eq!(pg_time(t), "2026-12-06 06:59:30.500000+00");
        assert_eq!(at("2026-12-06 08:59:30+02"), t - Duration::from_millis(500));
        assert_eq!(at("2026-12-06 01:29:30.5-05:30"), t);
        assert_eq!(parse_pg_time("yesterday"), None);
    }

    #[test]
    fn a_time_target_is_proven_by_the_servers_stop_line_and_last_commit() {
        let q = Queried { replay_lsn: Lsn::parse("0/3000200"), system_identifier: 7, ..Default::default() };
        let f = prove(&opts(TargetKind::Time(at("2026-12-06 06:59:30+00"))), TIME_LOG, &q).expect("proven");
        assert_eq!(f.achieved_time, Some(at("2026-12-06 06:59:29.9+00")));
        assert_eq!(f.segments_restored, 2);
        // The range replayed from the archive, for the signed evidence (issue 42).
        assert_eq!(f.first_segment.as_deref(), Some("000000010000000000000002"));
        assert_eq!(f.last_segment.as_deref(), Some("000000010000000000000003"));
        assert_eq!(f.new_timeline, Some(2));
        assert_eq!(f.replayed_bytes, 0x3000200 - 0x2000028);
        // A target after the stop line's commit: that commit should have been replayed.
        let e = prove(&opts(TargetKind::Time(at("2026-12-06 06:59:31+00"))), TIME_LOG, &q).expect_err("refused");
        assert!(e.message.contains("not past the target"), "{}", e.message);
    }

    #[test]
    fn latest_that_stopped_before_the_archives_end_is_a_gap() {
        let log = TIME_LOG.replace("recovery stopping", "ignored");
        let mut o = opts(TargetKind::Latest);
        o.archive_end = Some(ArchiveEnd {
            segment: "000000010000000000000005".into(),
            segment_start: Lsn(0x5000000),
            archived: None,
        });
        let q = Queried { replay_lsn: Lsn::parse("0/3000200"), ..Default::default() };
        let e = prove(&o, &log, &q).expect_err("a gap");
        assert!(e.message.contains("000000010000000000000005"), "{}", e.message);
        assert!(e.message.contains("last segment restored was 000000010000000000000003"), "{}", e.message);
        // The source judges it again by this (issue 39: a segment removed during recovery).
        let short = e.source.as_deref().and_then(|s| s.downcast_ref::<ShortOfEnd>());
        assert_eq!(
            short.map(|s| (s.replayed, s.end.segment.as_str())),
            Some((Lsn(0x3000200), "000000010000000000000005"))
        );
        // Issue 39: the segment before the newest ended in a switch, and the server that
        // never read the newest stopped exactly at its start: not past it, a gap too.
        let at_start = Queried { replay_lsn: Lsn::parse("0/5000000"), ..Default::default() };
        let e = prove(&o, &log, &at_start).expect_err("nothing of the newest segment replayed");
        assert!(e.message.contains("before the archive's newest segment 000000010000000000000005"), "{}", e.message);
        let into = Queried { replay_lsn: Lsn::parse("0/5000060"), ..Default::default() };
        assert!(prove(&o, &log, &into).is_ok(), "a record of the newest segment replayed");
        o.archive_end = None;
        assert!(prove(&o, &log, &q).is_ok());
    }

    /// Issue 39: a restore_command that stopped recovery because its workspace could not
    /// keep the tool's words (`tools::UNKEPT`) is this machine's failure, never the backup's;
    /// the same FATAL without that line stays a failed recovery.
    #[test]
    fn a_restore_command_that_could_not_keep_its_tools_words_is_no_verdict() {
        let fatal = "2026-12-06 07:00:00.050 UTC [10] FATAL:  could not restore file \"000000010000000000000004\" from archive: child process exited with exit code 126\n";
        let unkept = format!(
            "{}{} (barman-cloud-wal-restore's exit 1 fetching a segment cannot be read without its words): recovery stops here\n{fatal}",
            &TIME_LOG[..TIME_LOG.find("2026-12-06 07:00:00.050").expect("line")],
            super::super::tools::UNKEPT
        );
        let e = failure_from_log(&opts(TargetKind::Latest), &unkept, "the server exited (exit status: 1)");
        assert_eq!(e.class, crate::error::Class::Environment, "{}", e.message);
        assert!(e.message.contains("cannot keep the restore_command's stderr"), "{}", e.message);
        assert!(e.message.contains("no verdict on the backup"), "{}", e.message);
        let plain = unkept.replace(super::super::tools::UNKEPT, "something else");
        let e = failure_from_log(&opts(TargetKind::Latest), &plain, "the server exited (exit status: 1)");
        assert_eq!(e.class, crate::error::Class::Failed, "{}", e.message);
    }

    #[test]
    fn no_stop_line_is_no_proof_and_another_clusters_wal_fails() {
        let log = TIME_LOG.replace("recovery stopping before commit of transaction 812", "something else");
        let q = Queried::default();
        let e = prove(&opts(TargetKind::Name("before".into())), &log, &q).expect_err("no stop");
        assert!(e.message.contains("never logged"), "{}", e.message);
        let other = format!(
            "{TIME_LOG}2026-12-06 07:00:00.100 UTC [10] LOG:  WAL file is from different database system: WAL file database system identifier is 1, pg_control database system identifier is 2\n"
        );
        let e = prove(&opts(TargetKind::Latest), &other, &q).expect_err("other cluster");
        assert!(e.message.contains("another cluster"), "{}", e.message);
    }

    /// A stop at another restore point or transaction whose text starts like the target's
    /// is no proof.
    #[test]
    fn a_stop_at_a_similar_name_or_a_longer_xid_is_no_proof() {
        let log = |stop: &str| {
            TIME_LOG.replace("recovery stopping before commit of transaction 812, time 2026-12-06 06:59:30.5+00", stop)
        };
        let q = Queried::default();
        let named = log("recovery stopping at restore point \"a\"b\", time 2026-12-06 06:59:30.5+00");
        assert!(prove(&opts(TargetKind::Name("a\"b".into())), &named, &q).is_ok(), "quotes in a name");
        assert!(prove(&opts(TargetKind::Name("a".into())), &named, &q).is_err(), "another restore point");
        let xid = log("recovery stopping after commit of transaction 812, time 2026-12-06 06:59:30.5+00");
        assert!(prove(&opts(TargetKind::Xid(812)), &xid, &q).is_ok());
        assert!(prove(&opts(TargetKind::Xid(81)), &xid, &q).is_err(), "81 is not 812");
    }

    #[test]
    fn settings_never_archive_and_always_promote() {
        let mut o = opts(TargetKind::Name("it's".into()));
        o.restore_command = Some("cp '/a b/%f' \"%p\"".into());
        let s = recovery_settings(&o, 15);
        assert!(s.contains("archive_mode = 'off'\n"));
        assert!(s.contains("archive_command = ''\n"));
        assert!(s.contains("archive_library = ''\n"));
        assert!(s.contains("recovery_target_action = 'promote'\n"));
        assert!(s.contains("recovery_target_name = 'it''s'\n"), "{s}");
        assert!(s.contains("restore_command = 'cp ''/a b/%f'' \"%p\"'\n"), "{s}");
        assert!(!recovery_settings(&o, 14).contains("archive_library"));
    }

    /// Regression: a backslash in a restore point's name or an archive folder's path was
    /// read by PostgreSQL as an escape (`a\tb` became a tab), and a newline made the
    /// configuration unreadable. The server itself reads the settings back here.
    #[test]
    fn hostile_names_and_paths_reach_the_server_as_given() {
        let Ok((postgres, _, _)) = crate::pg::native::find_tool("postgres", None, 15) else {
            assert!(std::env::var_os("CI").is_none(), "CI: no PostgreSQL 15 postgres binary");
            eprintln!("skipped: no PostgreSQL 15 postgres binary");
            return;
        };
        let name = "it's a\\tb\\'; c\nrestore_command = 'rm -rf /' %p \u{e9}\u{6f22}\r";
        let mut o = opts(TargetKind::Name(name.into()));
        o.restore_command = Some(super::super::basebackup::folder_restore_command(Path::new("/wal\\n it's %f\n")));
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("postgresql.conf");
        fs::write(&conf, recovery_settings(&o, 15)).expect("conf");
        let run_as = RunAs::detect().expect("run as");
        run_as.own_tree(dir.path()).expect("own");
        for (key, want) in [
            ("recovery_target_name", name),
            ("restore_command", o.restore_command.as_deref().expect("a restore_command")),
        ] {
            let out = crate::child::output(run_as.command(&postgres).arg("-D").arg(dir.path()).arg("-C").arg(key))
                .expect("postgres -C");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let got = String::from_utf8_lossy(&out.stdout);
            assert_eq!(got.strip_suffix('\n').unwrap_or(&got), want, "{key}");
        }
    }

    /// Regression: an xid as `txid_current()` gives it after a wraparound (epoch 1, xid
    /// 812) failed the proof of a recovery that stopped at 812.
    #[test]
    fn an_xid_with_its_epoch_is_proven_by_its_low_32_bits() {
        let stop = "recovery stopping after commit of transaction 812, time 2026-12-06 06:59:30.5+00";
        let log =
            TIME_LOG.replace("recovery stopping before commit of transaction 812, time 2026-12-06 06:59:30.5+00", stop);
        let o = opts(TargetKind::Xid((1 << 32) + 812));
        assert!(prove(&o, &log, &Queried::default()).is_ok());
        assert!(recovery_settings(&o, 15).contains("recovery_target_xid = '812'\n"));
        assert!(prove(&opts(TargetKind::Xid((1 << 32) + 81)), &log, &Queried::default()).is_err());
    }

    /// Regression: a base backup of a standby brings its `archive_cleanup_command`
    /// (`pg_archivecleanup` on the archive) and `recovery_end_command`; the throwaway ran
    /// them, deleting from the production archive. The server reads the settings back.
    #[test]
    fn a_standbys_archive_cleanup_and_end_commands_never_run_in_the_throwaway() {
        let Ok((postgres, _, _)) = crate::pg::native::find_tool("postgres", None, 15) else {
            assert!(std::env::var_os("CI").is_none(), "CI: no PostgreSQL 15 postgres binary");
            eprintln!("skipped: no PostgreSQL 15 postgres binary");
            return;
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let backed_up =
            "archive_cleanup_command = 'pg_archivecleanup /archive %r'\nrecovery_end_command = 'touch /archive/x'\n";
        let text = format!("{backed_up}{}", recovery_settings(&opts(TargetKind::Latest), 15));
        fs::write(dir.path().join("postgresql.conf"), text).expect("conf");
        let run_as = RunAs::detect().expect("run as");
        run_as.own_tree(dir.path()).expect("own");
        for key in ["archive_cleanup_command", "recovery_end_command", "archive_command", "archive_mode"] {
            let out = crate::child::output(run_as.command(&postgres).arg("-D").arg(dir.path()).arg("-C").arg(key))
                .expect("postgres -C");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(got.is_empty() || got == "off", "{key} = {got}");
        }
    }

    /// Regression: a backed-up postgresql.conf naming `data_directory` (its own cluster's)
    /// or an `external_pid_file` had the throwaway open that cluster and write that file.
    #[test]
    fn the_backups_paths_never_lead_the_throwaway_out_of_its_workspace() {
        let Ok((postgres, _, _)) = crate::pg::native::find_tool("postgres", None, 15) else {
            assert!(std::env::var_os("CI").is_none(), "CI: no PostgreSQL 15 postgres binary");
            eprintln!("skipped: no PostgreSQL 15 postgres binary");
            return;
        };
        let ws = Workspace::new().expect("workspace");
        let conf =
            "data_directory = '/var/lib/postgresql/15/main'\nexternal_pid_file = '/run/postgresql/15-main.pid'\n";
        fs::write(ws.data_dir().join("postgresql.conf"), conf).expect("conf");
        let run_as = RunAs::detect().expect("run as");
        run_as.own_tree(ws.dir()).expect("own");
        let args = command_line(&ws, &ws.dir().join("hba"), &ws.dir().join("ident"), 15);
        for (key, want) in
            [("data_directory", ws.data_dir().display().to_string()), ("external_pid_file", String::new())]
        {
            let out = crate::child::output(
                run_as.command(&postgres).arg("-D").arg(ws.data_dir()).args(&args).arg("-C").arg(key),
            )
            .expect("postgres -C");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), want, "{key}");
        }
        assert!(command_line(&ws, Path::new("h"), Path::new("i"), 14)
            .iter()
            .any(|a| a.starts_with("stats_temp_directory=")));
    }

    /// Regression: the Docker throwaway of a pgdrill killed with -9 kept running, and no
    /// later recovery removed it (only Docker-server steps reaped labelled containers).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_docker_recovery_removes_the_throwaway_of_a_killed_pgdrill() {
        let Some(image) = docker_image_for(17) else {
            assert!(std::env::var_os("CI").is_none(), "CI: no Docker image of PostgreSQL 17");
            eprintln!("skipped: no Docker image of PostgreSQL 17");
            return;
        };
        let mut gone = crate::child::command("true").spawn().expect("true");
        let dead = gone.id();
        gone.wait().expect("wait");
        let owner = format!("{}:{dead}", crate::util::hostname().unwrap_or_default());
        let name = format!("pgdrill-test-orphan-{}", std::process::id());
        let run = crate::child::output(crate::pg::image_tools::docker().args([
            "run",
            "-d",
            "--rm",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            &format!("{}=1", crate::pg::docker::LABEL),
            "--label",
            &format!("{}={owner}", crate::pg::docker::OWNER_LABEL),
            "--entrypoint",
            "sleep",
            &image,
            "300",
        ]))
        .expect("docker run");
        assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
        let running = |n: &str| {
            let o = crate::child::output(crate::pg::image_tools::docker().args([
                "ps",
                "-q",
                "--filter",
                &format!("name=^{n}$"),
            ]))
            .expect("docker ps");
            !o.stdout.is_empty()
        };
        assert!(running(&name));
        // A recovery in PostgreSQL 17's image (of a data directory that is no backup: it fails).
        let ws = Workspace::new().expect("workspace");
        fs::write(ws.data_dir().join("PG_VERSION"), "17\n").expect("version");
        let mut o = opts(TargetKind::Latest);
        o.timeout = Duration::from_secs(20);
        assert!(recover(ws, o).await.is_err());
        let left = running(&name);
        let _ = crate::child::output(crate::pg::image_tools::docker().args(["rm", "-f", &name]));
        assert!(!left, "the orphan throwaway was not removed");
    }
}
