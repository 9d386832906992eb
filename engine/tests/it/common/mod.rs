//! Helpers shared by the integration tests: run the real binary from the repository root
//! ([`Run`]), read what it wrote ([`Junit`], [`RunJson`]), and the fixtures, servers and
//! small helpers more than one area uses: one copy each.
#![allow(dead_code)]

mod builder;
mod certs;
mod disk;
mod dumps;
mod fields;
mod http;
mod junit;
mod relay;
mod report;
mod servers;
mod stores;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

pub use builder::{Ran, Run, KEY_ENV};
pub use certs::ca_sign;
pub use disk::SmallDisk;
pub use dumps::{last_json_line, libpq_bash, pg_dump_gzip};
pub use fields::{catalogue_fields_typed, dummy, leak_then, required_others};
pub use http::http_recorder;
pub use junit::{Junit, Status};
pub use relay::stalling_relay;
pub use report::{steps_in, RunJson};
pub use servers::{
    azurite_blob, moto, moto_with_env, on_path, path_without, s3_request, server_log, wait_listening, Server,
};
pub use stores::{abort_a_write, read_back, read_copy_list_delete, write_unpublished};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgdrill"))
}

/// `pgdrill ARGS` run in the repository root, with a clean environment for our own vars.
pub fn pgdrill(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).current_dir(root()).env_remove("PGDRILL_JUNIT").env_remove("PGDRILL_REPORT");
    c
}

pub fn run(args: &[&str]) -> Output {
    pgdrill(args).output().expect("the pgdrill binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True under CI, where a missing prerequisite must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Skip (outside CI) or fail (in CI) when a prerequisite is missing.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "{what} is required in CI (CI is set) but missing");
    eprintln!("SKIPPED: {what} is missing (set up with ci/setup.sh); CI fails instead of skipping");
    false
}

/// A throwaway PostgreSQL 15 server (native provider) with database `db`; `None` (a printed
/// skip) when the server binaries are missing outside CI, a failure in CI.
pub async fn native_server(db: &str) -> Option<pgdrill::testkit::pg::ephemeral::Ephemeral> {
    use pgdrill::testkit::pg::ephemeral::{Ephemeral, Options, Provider};
    let opts = Options { provider: Provider::Native, major: Some(15), database: Some(db.into()), ..Default::default() };
    match Ephemeral::start(opts).await {
        Ok(s) => Some(s),
        Err(e) => {
            require(false, &format!("PostgreSQL 15 server binaries ({e})"));
            None
        }
    }
}

/// [`native_server`] with `sql` run in its database `db`.
pub async fn native_server_with(db: &str, sql: &str) -> Option<pgdrill::testkit::pg::ephemeral::Ephemeral> {
    let s = native_server(db).await?;
    exec(&s.url(), sql).await;
    Some(s)
}

/// `name -> (failure/error/skipped or "passed")` from a JUnit file, parsed ([`Junit`]).
pub fn junit_cases(path: &Path) -> Vec<(String, String)> {
    Junit::read(path).cases.into_iter().map(|c| (c.name, c.status.as_str().to_string())).collect()
}

pub fn status_of<'a>(cases: &'a [(String, String)], name: &str) -> &'a str {
    cases.iter().find(|(n, _)| n.starts_with(name)).map(|(_, s)| s.as_str()).unwrap_or("absent")
}

/// `pgdrill run backup` of `url` into `storage` with `key`; the path of the backup of `db`.
pub fn backup_to(url: &str, storage: &std::path::Path, key: &str, db: &str) -> PathBuf {
    backup_to_with_env(url, storage, key, db, &[])
}

/// [`backup_to`] with `env` set for pgdrill (such as the image for a server in a container).
pub fn backup_to_with_env(url: &str, storage: &Path, key: &str, db: &str, env: &[(&str, &str)]) -> PathBuf {
    let mut backup = Run::new("backup").var("database_url", url).var("storage", storage.display()).key(key);
    for (k, v) in env {
        backup = backup.env(k, v);
    }
    let out = backup.raw();
    assert!(out.status.success(), "backup: {}{}", text(&out.stdout), text(&out.stderr));
    backup_in(&storage.join(db))
}

/// The backup (`*.dump.pgdrill`) in `folder`, a database's folder of a storage; the test
/// fails when there is none.
pub fn backup_in(folder: &Path) -> PathBuf {
    std::fs::read_dir(folder)
        .expect("storage")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dump.pgdrill"))
        .expect("a backup")
}

/// The names of the files in `folder` that `keep` takes, sorted; the test fails when the
/// folder cannot be read.
pub fn names_in(folder: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| keep(n))
        .collect();
    names.sort();
    names
}

/// The files in `folder` whose names end with `suffix` (`.dump.pgdrill`), sorted by name;
/// the test fails when the folder cannot be read.
pub fn files_ending(folder: &Path, suffix: &str) -> Vec<PathBuf> {
    names_in(folder, |n| n.ends_with(suffix)).into_iter().map(|n| folder.join(n)).collect()
}

/// How the library tests make a backup: custom format, zstd level 3, two threads and jobs,
/// a full fingerprint, encrypted with `key` (None: not encrypted).
pub fn create_options(
    url: &str,
    storage: &Path,
    format: pgdrill::testkit::backup::Format,
    codec: pgdrill::testkit::archive::Codec,
    key: Option<&str>,
) -> pgdrill::testkit::backup::CreateOptions {
    pgdrill::testkit::backup::CreateOptions {
        url: url.to_string(),
        storage: std::sync::Arc::new(pgdrill::testkit::storage::local::FsStore::new(storage)),
        format,
        codec,
        level: 3,
        threads: 2,
        jobs: 2,
        key: key.map(pgdrill::testkit::archive::KeySource::from_secret),
        fingerprint: pgdrill::testkit::pg::fingerprint::Mode::Full,
        pg_dump: None,
        name: None,
        meter: None,
    }
}

/// `pgdrill run restore` of database `shop` from `storage` on the server `s` (reached through
/// its `postgres` database), with the backup key `key`; not run yet.
pub fn restore_shop(s: &pgdrill::testkit::pg::ephemeral::Ephemeral, storage: &Path, key: &str) -> Run {
    Run::new("restore")
        .var("database_url", s.url_for("postgres"))
        .var("storage", storage.display())
        .var("database", "shop")
        .key(key)
}

/// Runbook `nightly.yaml` in `dir`: one step that passes, or fails when `--var fail=yes`.
pub fn nightly_runbook(dir: &Path) -> PathBuf {
    let rb = dir.join("nightly.yaml");
    std::fs::write(
        &rb,
        "name: nightly\nvars: { fail: 'no' }\nsteps:\n  - uses: shell.run\n    with: { script: \"test '{{ vars.fail }}' = no\" }\n",
    )
    .expect("runbook");
    rb
}

/// Run SQL in the database at `url`.
pub async fn exec(url: &str, sql: &str) {
    pgdrill::testkit::pg::connect(url).await.expect("connect").batch_execute(sql).await.expect("sql");
}

/// Staged dumps (`.pgdrill-stage-*`) still in `dir`: there must be none once a run ended.
pub fn staged_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with(".pgdrill-stage"))
                .collect()
        })
        .unwrap_or_default()
}

/// Write manifest `m` beside the encrypted backup at `backup`, bound again with `key` as only
/// a key holder can: a test that edits a manifest on purpose (to reach a later check) must
/// not be stopped by the manifest's MAC.
pub fn write_rebound_manifest(backup: &Path, mut m: serde_json::Value, key: &str) {
    let archive = std::fs::read(backup).expect("backup");
    let (h, _) = pgdrill::testkit::archive::read_header(&mut &archive[..]).expect("header");
    let k =
        pgdrill::testkit::archive::KeySource::from_secret(key).derive_for(h.kdf.as_ref().expect("kdf")).expect("key");
    m["authentication"]["mac"] = k
        .manifest_mac(h.nonce_prefix.as_deref().expect("prefix"), &pgdrill::testkit::backup::manifest_bytes(m.clone()))
        .into();
    std::fs::write(pgdrill::testkit::backup::layout::manifest_path(backup), serde_json::to_vec(&m).expect("json"))
        .expect("write");
}

/// The full fingerprint of a database, read in one repeatable-read snapshot.
pub async fn fingerprint_of(url: &str) -> pgdrill::testkit::pg::fingerprint::Fingerprint {
    use pgdrill::testkit::pg::fingerprint::{compute, Mode};
    let c = pgdrill::testkit::pg::connect(url).await.expect("connect");
    c.batch_execute("begin isolation level repeatable read read only").await.expect("begin");
    let f = compute(&c, Mode::Full).await.expect("fingerprint").expect("full");
    c.batch_execute("commit").await.expect("commit");
    f
}

/// One value from the server as text (empty for NULL).
pub async fn scalar(url: &str, sql: &str) -> String {
    let c = pgdrill::testkit::pg::connect(url).await.expect("connect");
    c.query_one(&format!("select ({sql})::text"), &[])
        .await
        .expect("query")
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

/// The safety snapshots an operator restore of database `shop` left in `storage`.
pub fn snapshots(storage: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(storage.join(".safety/shop"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".pgdrill")).collect())
        .unwrap_or_default()
}

/// Python's aiosmtpd, the mail server the notify tests start: skipped (outside CI) or
/// failed (in CI) when missing.
pub fn aiosmtpd_ready() -> bool {
    let ok =
        Command::new("/usr/bin/python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
    require(ok, "python3-aiosmtpd (Debian package, ci/setup.sh)")
}

/// A mail server child process, killed on drop.
pub struct Smtp(pub std::process::Child);

impl Smtp {
    /// aiosmtpd on 127.0.0.1:`port` with `options` (its TLS ones), delivering to the mailbox
    /// `maildir`; returned once it listens ([`Smtp::wait_listening`]).
    pub fn mailbox(port: u16, maildir: &Path, options: &[&std::ffi::OsStr]) -> Smtp {
        let mut python = Command::new("/usr/bin/python3");
        python.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")]).args(options);
        python.args(["-c", "aiosmtpd.handlers.Mailbox"]).arg(maildir);
        Smtp::start(python, port)
    }

    /// `python` (an aiosmtpd of its own) started on 127.0.0.1:`port`, its output dropped;
    /// returned once it listens.
    fn start(mut python: Command, port: u16) -> Smtp {
        let smtp = Smtp(
            python.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("aiosmtpd"),
        );
        smtp.wait_listening(port);
        smtp
    }

    /// Give the server (at most five seconds) to listen on 127.0.0.1:`port`; a server that is
    /// not listening by then is left for the test's own check to find.
    pub fn wait_listening(&self, port: u16) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An SMTP server (aiosmtpd) that delivers to `maildir` and takes AUTH PLAIN with the
/// password in its SMTP_TEST_PASSWORD variable, without TLS (a relay on localhost).
pub fn smtp_with_auth(port: u16, maildir: &std::path::Path, password: &str) -> Smtp {
    let script = r#"
import os, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
want = os.environ["SMTP_TEST_PASSWORD"].encode()
def check(server, session, envelope, mechanism, data):
    return AuthResult(success=isinstance(data, LoginPassword) and data.password == want)
c = Controller(Mailbox(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]), authenticator=check,
               auth_require_tls=False)
c.start()
while True:
    time.sleep(3600)
"#;
    let mut python = Command::new("/usr/bin/python3");
    python.args(["-c", script, &port.to_string()]).arg(maildir).env("SMTP_TEST_PASSWORD", password);
    Smtp::start(python, port)
}

/// Every file under `dir`, at any depth (none when it does not exist).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Run `cmd` (a pgdrill) until it pauses at `phase` (its test hook writes `flag` there),
/// then kill it with SIGKILL: what a crash at that moment leaves behind. It must reach the
/// phase within two minutes and still be running there.
pub fn kill_paused_at(mut cmd: Command, phase: &str, flag: &Path) {
    let mut child = cmd
        .env("PGDRILL_TEST_PAUSE_AT", phase)
        .env("PGDRILL_TEST_PAUSE_FLAG", flag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("pgdrill");
    let t = Instant::now();
    while !flag.exists() {
        assert!(t.elapsed() < Duration::from_secs(120), "{phase}: never reached");
        assert!(child.try_wait().expect("wait").is_none(), "{phase}: pgdrill ended before it");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
}

/// A TCP port on 127.0.0.1 that was free a moment ago, for a server a test starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

/// A new temporary folder and the path of `backups` in it (not created yet): where a test's
/// backups go.
pub fn tmp_backups() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = dir.path().join("backups");
    (dir, storage)
}

/// The file at `path`, written with `content` (a runbook, a script, a notify file); a write
/// that fails fails the test, naming the file.
pub fn written(path: PathBuf, content: impl AsRef<[u8]>) -> PathBuf {
    std::fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// The folder at `path`, created with its parents; a failure fails the test, naming it.
pub fn made_dir(path: PathBuf) -> PathBuf {
    std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// A JSON file, parsed; a missing or invalid file fails the test, naming it.
pub fn read_json(path: &Path) -> serde_json::Value {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The PostgreSQL 15 image the Docker tests use: `PGDRILL_TEST_IMAGE`, else the one
/// ci/setup.sh builds.
pub fn test_image() -> String {
    std::env::var("PGDRILL_TEST_IMAGE").unwrap_or_else(|_| "pgdrill/postgres-local:15".into())
}

/// A Docker engine with `image` present locally: skipped (outside CI) or failed (in CI) when not.
pub fn docker_ready(image: &str) -> bool {
    let ok = |args: &[&str]| Command::new("docker").args(args).output().is_ok_and(|o| o.status.success());
    require(
        ok(&["info"]) && ok(&["image", "inspect", image]),
        "a Docker engine with the local image pgdrill/postgres-local:15 (ci/setup.sh builds it)",
    )
}

/// Poll `f` until it gives a value or `limit` has passed (a test's bound on waiting for a
/// server or a file, never a timing it asserts).
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `shop` database of the restore tests, owned by the login role `app_owner`, on a new
/// native server: `customers` and `orders` with `rows` rows each, plus `more_sql` run in it,
/// then backed up into `storage` with `key`. The server and the backup's path.
pub async fn shop_backed_up(
    storage: &Path,
    key: &str,
    rows: (u32, u32),
    more_sql: &str,
) -> Option<(pgdrill::testkit::pg::ephemeral::Ephemeral, PathBuf)> {
    let s = native_server("postgres").await?;
    exec(&s.url_for("postgres"), "create role app_owner login").await;
    exec(&s.url_for("postgres"), "create database shop owner app_owner").await;
    let (customers, orders) = rows;
    exec(
        &s.url_for("shop"),
        &format!(
            "create table customers (id serial primary key, name text not null);
             insert into customers (name) select 'c' || g from generate_series(1, {customers}) g;
             create table orders (id bigserial primary key, customer int references customers, total numeric(12,2));
             insert into orders (customer, total) select 1 + g % {customers}, g * 0.25 from generate_series(1, {orders}) g;
             alter table orders owner to app_owner;
             {more_sql}"
        ),
    )
    .await;
    let path = backup_to(&s.url_for("shop"), storage, key, "shop");
    Some((s, path))
}

/// A throwaway server of PostgreSQL `major` in a container of the local image
/// pgdrill/postgres-local:MAJOR (ci/setup.sh builds 15 and 17), with database `db`; `None`
/// (a printed skip) when the image is missing outside CI, a failure in CI.
pub async fn docker_server(major: u32, db: &str) -> Option<pgdrill::testkit::pg::ephemeral::Ephemeral> {
    use pgdrill::testkit::pg::ephemeral::{Ephemeral, Options, Provider};
    let present = std::process::Command::new("docker")
        .args(["image", "inspect", &format!("pgdrill/postgres-local:{major}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(present, &format!("Docker with the image pgdrill/postgres-local:{major} (bash ci/setup.sh)")) {
        return None;
    }
    let opts = Options {
        provider: Provider::Docker,
        major: Some(major),
        image: Some(format!("pgdrill/postgres-local:{major}")),
        database: Some(db.into()),
        ..Default::default()
    };
    Some(Ephemeral::start(opts).await.expect("a server in a container"))
}

/// [`native_server_with`] (database `db` holding `sql`'s data) and [`tmp_backups`]: the
/// opening of a test that backs a database up. The server, the folder and where backups go.
pub async fn source_and_storage(
    db: &str,
    sql: &str,
) -> Option<(pgdrill::testkit::pg::ephemeral::Ephemeral, tempfile::TempDir, PathBuf)> {
    let s = native_server_with(db, sql).await?;
    let (dir, storage) = tmp_backups();
    Some((s, dir, storage))
}

/// An RFC 3339 time (a report's or a step output's) as seconds since the epoch, with its
/// fraction; text that is not one fails the test.
pub fn unix_seconds(rfc3339: &str) -> f64 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?} is not RFC 3339: {e}"))
        .unix_timestamp_nanos() as f64
        / 1e9
}

/// `date -u +%Y%m%d_%H%M%S` at `t` (`20240315_143022`): the stamp other tools' dump scripts
/// put in file names, made by pgdrill's one formatter of compact UTC times.
pub fn dump_stamp(t: time::OffsetDateTime) -> String {
    pgdrill::testkit::util::compact_utc(t, false).trim_end_matches('Z').replacen('T', "_", 1)
}

/// A throwaway PostgreSQL 15 server archiving its WAL as `opts` say (a folder or a command),
/// with a one-second archive_timeout; `None` (a printed skip, a failure in CI) without the
/// server binaries.
pub async fn archiving_15(
    opts: pgdrill::testkit::physical::archiving::ArchivingOptions,
) -> Option<pgdrill::testkit::physical::archiving::ArchivingServer> {
    use pgdrill::testkit::physical::archiving::{ArchivingOptions, ArchivingServer};
    let opts = ArchivingOptions { archive_timeout: Some(Duration::from_secs(1)), major: Some(15), ..opts };
    match ArchivingServer::start(opts).await {
        Ok(s) => Some(s),
        Err(e) => {
            require(false, &format!("PostgreSQL 15 server binaries ({e})"));
            None
        }
    }
}

/// Whether a process on this machine has `cmdline_part` in its command line (arguments
/// joined by spaces): a child a test expects to be gone.
pub fn process_running(cmdline_part: &str) -> bool {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(cmdline_part))
}

/// `pgdrill evidence verify LOG --public-key PUBLIC`, not run yet: LOG is a folder or an
/// object store's location.
pub fn verifying(log: impl AsRef<std::ffi::OsStr>, public: impl AsRef<std::ffi::OsStr>) -> Run {
    Run::cli(["evidence", "verify"]).arg(log).arg("--public-key").arg(public)
}

/// `pgdrill run prune` applied to database `shop` in `storage`, an unfinished upload counted
/// abandoned once older than `after`; it must exit 0.
pub fn prune_abandoned(storage: &Path, after: &str) -> Ran {
    Run::new("prune")
        .var("storage", storage.display())
        .var("database", "shop")
        .var("abandoned_uploads_after", after)
        .var("apply", "true")
        .expect(0)
}
