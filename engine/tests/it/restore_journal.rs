//! The operator restore's journal and lock on a real PostgreSQL 15: pgdrill killed with
//! SIGKILL at four phases, then a new run that finds the journal and refuses, and both ways
//! out (`recover=rollback` gives back the original, `recover=forward` the backup); two
//! restores of one database (the second refused, naming the first); a backend that does not
//! die during terminate (connections allowed again afterwards); the server stopped during
//! the restore (said plainly, then `recover=rollback` once it is back).
//!
//! Each phase is reached by something the test holds on the server, never by timing: a
//! stopped backend (terminate waits), a lock on template0 (CREATE DATABASE waits), pg_restore
//! seen running, and a lock on a restored table (the fingerprint compare waits).

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{fingerprint_of, snapshots, text, tmp_backups, written, Run};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pgdrill::testkit::pg::ephemeral::Ephemeral;
use pgdrill::testkit::pg::fingerprint::Fingerprint;
use serde_json::Value;

const KEY: &str = "journal-test passphrase";

/// A server with database `shop` backed up into `storage`, then changed (so the original
/// and the backup differ). `zz_last` has no index, constraint or grant: once its rows are
/// in, pg_restore does not touch it again. Returns the backup's fingerprint.
async fn shop(storage: &Path, bulk_rows: u32) -> Option<(Ephemeral, Fingerprint)> {
    let s = common::native_server("postgres").await?;
    common::exec(&s.url_for("postgres"), "create role app_owner login").await;
    common::exec(&s.url_for("postgres"), "create database shop owner app_owner").await;
    // A database-level setting: lost by a drop unless the journal keeps it for a recovery.
    common::exec(&s.url_for("postgres"), "alter database shop set work_mem = '7MB'").await;
    common::exec(
        &s.url_for("shop"),
        &format!(
            "create table customers (id serial primary key, name text not null);
             insert into customers (name) select 'c' || g from generate_series(1, 300) g;
             alter table customers owner to app_owner;
             create table bulk (id int, payload text);
             insert into bulk select g, repeat(md5(g::text), 8) from generate_series(1, {bulk_rows}) g;
             create index bulk_id on bulk (id);
             create table zz_last (n int);
             insert into zz_last select generate_series(1, 1000);"
        ),
    )
    .await;
    let backup = common::backup_to(&s.url_for("shop"), storage, KEY, "shop");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.manifest.json", backup.display())).expect("manifest"),
    )
    .expect("json");
    let expected: Fingerprint = serde_json::from_value(manifest["fingerprint"].clone()).expect("fingerprint");
    common::exec(&s.url_for("shop"), "insert into customers (name) values ('newer than the backup')").await;
    Some((s, expected))
}

/// [`shop`] backed up into `backups/` of a new folder: the folder, the storage, the server and
/// the backup's fingerprint.
async fn shop_in_a_new_folder(bulk_rows: u32) -> Option<(tempfile::TempDir, PathBuf, Ephemeral, Fingerprint)> {
    let (dir, storage) = tmp_backups();
    let (s, backup) = shop(&storage, bulk_rows).await?;
    Some((dir, storage, s, backup))
}

fn args(s: &Ephemeral, storage: &Path, extra: &[&str]) -> Run {
    common::restore_shop(s, storage, KEY).arg("--yes").vars(extra)
}

fn restore(s: &Ephemeral, storage: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let out: Output = args(s, storage, extra).command().stdin(Stdio::null()).output().expect("runs");
    (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

fn spawn(s: &Ephemeral, storage: &Path) -> Child {
    spawn_with(s, storage, &[])
}

fn spawn_with(s: &Ephemeral, storage: &Path, extra: &[&str]) -> Child {
    args(s, storage, extra)
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn")
}

fn journal(storage: &Path) -> Option<Value> {
    journal_of(storage, "shop")
}

fn journal_of(storage: &Path, database: &str) -> Option<Value> {
    let dir = storage.join(".safety/.journal");
    let file = std::fs::read_dir(dir).ok()?.flatten().map(|e| e.path()).find(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        name.starts_with(&format!("{database}.")) && name.ends_with(".json")
    })?;
    serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()
}

fn phase(storage: &Path) -> String {
    phase_of(storage, "shop")
}

fn phase_of(storage: &Path, database: &str) -> String {
    journal_of(storage, database).and_then(|j| j["phase"].as_str().map(str::to_string)).unwrap_or_default()
}

/// One value from the server, or None when the query cannot run yet (database missing).
async fn value(url: &str, sql: &str) -> Option<String> {
    let c = pgdrill::testkit::pg::connect(url).await.ok()?;
    c.query_one(&format!("select ({sql})::text"), &[]).await.ok()?.get::<_, Option<String>>(0)
}

/// A session holding a lock CREATE DATABASE waits for (template0 commented on in an open
/// transaction), so a restore can be stopped while its CREATE DATABASE waits.
async fn hold_create_database(postgres: &str) -> tokio_postgres::Client {
    let holder = pgdrill::testkit::pg::connect(postgres).await.expect("holder");
    holder.batch_execute("begin; comment on database template0 is 'held by the test'").await.expect("hold");
    holder
}

/// Whether one CREATE DATABASE on the server at `postgres` waits for a lock.
async fn create_database_waits(postgres: &str) -> bool {
    value(
        postgres,
        "select count(*) from pg_stat_activity where wait_event_type = 'Lock' and query ilike 'create database%'",
    )
    .await
        == Some("1".into())
}

/// Release the [`hold_create_database`] lock; the orphaned CREATE DATABASE then finishes on
/// its own: wait until it has.
async fn release_create_database(holder: tokio_postgres::Client, postgres: &str) {
    holder.batch_execute("rollback").await.expect("release");
    until("the orphaned create to end", || async {
        value(
            postgres,
            "select count(*) from pg_stat_activity where query ilike 'create database%' and state = 'active'",
        )
        .await
            == Some("0".into())
    })
    .await;
}

/// Poll until `cond` holds; fails the test after 90 s (a hang, not a timing assertion),
/// showing what the server was doing.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(90);
    while !cond().await {
        if Instant::now() >= deadline {
            let seen = match ACTIVITY.lock().ok().and_then(|u| u.clone()) {
                Some(url) => value(
                    &url,
                    "select string_agg(format('%s %s %s %s %s', pid, datname, application_name, wait_event_type, left(query, 60)), E'\n') from pg_stat_activity where backend_type = 'client backend'",
                )
                .await
                .unwrap_or_default(),
                None => String::new(),
            };
            panic!("never happened: {what}; sessions:\n{seen}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the boolean query `sql` holds, asked through a session kept open for the
/// polling: a new connection per poll could take longer than pg_restore's whole run on a
/// loaded machine, and miss it.
async fn holds(watch: &tokio_postgres::Client, sql: &str) -> bool {
    watch.query_one(sql, &[]).await.map(|r| r.get::<_, bool>(0)).unwrap_or(false)
}

/// Wait until the restore of `shop` is in its `restoring` phase with pg_restore connected,
/// asked through `watch`, a session opened before the restore started (see [`holds`]).
async fn until_pg_restore_writes(watch: &tokio_postgres::Client, storage: &Path) {
    until("pg_restore writing", || async {
        phase(storage) == "restoring"
            && holds(watch, "select count(*) > 0 from pg_stat_activity where application_name = 'pg_restore'").await
    })
    .await;
}

/// The server whose sessions a hang reports.
static ACTIVITY: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn sigkill(child: &mut Child) {
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    let _ = child.wait();
}

#[derive(Clone, Copy, Debug)]
enum At {
    /// After the snapshot, with connections blocked: terminate waits for a stopped backend.
    AfterSnapshot,
    /// After the drop: CREATE DATABASE waits for the test's lock on template0.
    AfterDrop,
    /// pg_restore is writing into the recreated database.
    DuringRestore,
    /// The fingerprint compare waits for the test's lock on a restored table.
    DuringCompare,
}

/// Start a restore and kill it with SIGKILL at `at`; returns the journal's phase then.
async fn kill_at(s: &Ephemeral, storage: &Path, at: At) -> String {
    let postgres = s.url_for("postgres");
    let shop = s.url_for("shop");
    match at {
        At::AfterSnapshot => {
            let app = pgdrill::testkit::pg::connect(&shop).await.expect("app session");
            let pid: i32 = app.query_one("select pg_backend_pid()", &[]).await.expect("pid").get(0);
            kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("stop backend");
            let mut child = spawn(s, storage);
            until("connections blocked", || async {
                phase(storage) == "blocking"
                    && value(&postgres, "select datallowconn from pg_database where datname = 'shop'").await
                        == Some("false".into())
            })
            .await;
            sigkill(&mut child);
            kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue backend");
            drop(app);
        }
        At::AfterDrop => {
            let holder = hold_create_database(&postgres).await;
            let mut child = spawn(s, storage);
            until("create database waiting", || async {
                phase(storage) == "creating" && create_database_waits(&postgres).await
            })
            .await;
            sigkill(&mut child);
            release_create_database(holder, &postgres).await;
        }
        At::DuringRestore => {
            // One session kept open for the polling: a new connection per poll could take
            // longer than pg_restore's whole run on a loaded machine, and miss it.
            let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");
            let mut child = spawn(s, storage);
            until_pg_restore_writes(&watch, storage).await;
            sigkill(&mut child);
        }
        At::DuringCompare => {
            // pgdrill is stopped while pg_restore (reading the staged file on its own) ends,
            // so the lock is in place before the compare can start.
            let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");
            let mut child = spawn(s, storage);
            until_pg_restore_writes(&watch, storage).await;
            let me = Pid::from_raw(child.id() as i32);
            kill(me, Signal::SIGSTOP).expect("stop pgdrill");
            until("pg_restore done", || async {
                value(&postgres, "select count(*) from pg_stat_activity where application_name = 'pg_restore'").await
                    == Some("0".into())
            })
            .await;
            // The restore writes into its private copy: the lock is taken there.
            let copy = s.url_for(&private_name(storage));
            let holder = pgdrill::testkit::pg::connect(&copy).await.expect("holder");
            holder.batch_execute("begin; lock table zz_last in access exclusive mode").await.expect("lock");
            kill(me, Signal::SIGCONT).expect("continue pgdrill");
            until("the compare waiting", || async {
                value(
                    &postgres,
                    "select count(*) from pg_stat_activity where datname like 'pgdrill\\_restoring\\_%' \
                     and wait_event_type = 'Lock' and backend_type = 'client backend'",
                )
                .await
                    == Some("1".into())
            })
            .await;
            sigkill(&mut child);
            holder.batch_execute("rollback").await.expect("release");
        }
    }
    phase(storage)
}

/// The private name the journal of `shop` says the restore writes into.
fn private_name(storage: &Path) -> String {
    journal(storage)
        .and_then(|j| j["private_name"].as_str().map(str::to_string))
        .expect("a private name in the journal")
}

/// How many databases are under a restore's private name (`pgdrill_restoring_...`).
async fn private_copies(s: &Ephemeral) -> Option<String> {
    value(&s.url_for("postgres"), "select count(*) from pg_database where datname like 'pgdrill\\_restoring\\_%'").await
}

async fn allowed(s: &Ephemeral) -> Option<String> {
    value(&s.url_for("postgres"), "select datallowconn from pg_database where datname = 'shop'").await
}

/// pg_restore, pg_dump and psql sessions left on the server.
async fn tool_sessions(s: &Ephemeral) -> String {
    value(
        &s.url_for("postgres"),
        "select count(*) from pg_stat_activity where application_name in ('pg_restore', 'pg_dump', 'psql')",
    )
    .await
    .unwrap_or_default()
}

async fn killed_then_recovered(at: At, bulk_rows: u32, expect_phase: &str) {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(bulk_rows).await else { return };
    let shop_url = s.url_for("shop");
    if let Ok(mut a) = ACTIVITY.lock() {
        *a = Some(s.url_for("postgres"));
    }
    let original = fingerprint_of(&shop_url).await;
    assert_ne!(original, backup);

    for (round, recover) in ["rollback", "forward"].into_iter().enumerate() {
        let stopped = kill_at(&s, &storage, at).await;
        assert_eq!(stopped, expect_phase, "{at:?}, round {round}");
        let snaps = snapshots(&storage);

        // A new restore finds the journal and refuses, changing nothing and taking no
        // snapshot of a database that is not the original.
        let (code, all) = restore(&s, &storage, &[]);
        assert_eq!(code, Some(1), "{all}");
        assert!(all.contains("an unfinished restore of database `shop`"), "{all}");
        let shown = if expect_phase == "blocking" { "connections blocked" } else { expect_phase };
        assert!(all.contains(&format!("stopped at phase `{shown}`")), "{all}");
        assert!(all.contains("--var recover=rollback") && all.contains("--var recover=forward"), "{all}");
        assert!(all.contains("Nothing was changed"), "{all}");
        assert_eq!(snapshots(&storage), snaps, "a snapshot was taken of a half-restored database");
        assert_eq!(phase(&storage), expect_phase, "the refusal changed the journal");

        let (code, all) = restore(&s, &storage, &[&format!("recover={recover}")]);
        assert_eq!(code, Some(0), "{at:?} recover={recover}: {all}");
        assert_eq!(snapshots(&storage), snaps, "a recovery takes no new snapshot");
        let want = if recover == "rollback" { &original } else { &backup };
        assert_eq!(&fingerprint_of(&shop_url).await, want, "{at:?} recover={recover}");
        assert_eq!(allowed(&s).await.as_deref(), Some("true"), "{at:?} recover={recover}");
        assert_eq!(phase(&storage), "finished", "{at:?} recover={recover}");
        assert_eq!(private_copies(&s).await.as_deref(), Some("0"), "{at:?} recover={recover} left a private copy");
        assert_eq!(
            value(
                &shop_url,
                "select array_to_string(s.setconfig, ',') from pg_db_role_setting s \
                 join pg_database d on d.oid = s.setdatabase where d.datname = 'shop' and s.setrole = 0"
            )
            .await
            .as_deref(),
            Some("work_mem=7MB"),
            "{at:?} recover={recover}: the database setting was lost"
        );
        if recover == "rollback" {
            assert_eq!(
                value(&shop_url, "select pg_get_userbyid(datdba) from pg_database where datname = 'shop'").await,
                Some("app_owner".into())
            );
        }
    }
    // Recovered: an ordinary restore runs again.
    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&shop_url).await, backup);
    until("no tool sessions left", || async { tool_sessions(&s).await == "0" }).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_after_the_drop_is_found_and_recovered_both_ways() {
    killed_then_recovered(At::AfterDrop, 100, "creating").await;
}

/// A forward recovery whose backup was deleted since the kill, its manifest left beside it:
/// reading the manifest alone through the store, the recovery went on past what it could not
/// restore. It is refused before anything changes, naming the backup.
#[tokio::test(flavor = "multi_thread")]
async fn a_forward_recovery_whose_backup_was_deleted_is_refused_before_anything_changes() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100).await else { return };
    if let Ok(mut a) = ACTIVITY.lock() {
        *a = Some(s.url_for("postgres"));
    }
    assert_eq!(kill_at(&s, &storage, At::AfterDrop).await, "creating");
    let named = journal(&storage).and_then(|j| j["backup"].as_str().map(PathBuf::from)).expect("the journal's backup");
    let file = if named.is_absolute() { named } else { storage.join(named) };
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).expect("move the backup away");
    let (code, all) = restore(&s, &storage, &["recover=forward"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("is not usable: it does not exist"), "{all}");
    assert_eq!(phase(&storage), "creating", "the refused recovery changed the journal");
    std::fs::rename(&aside, &file).expect("put the backup back");
    let (code, all) = restore(&s, &storage, &["recover=forward"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, backup);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_pg_restore_is_found_and_recovered_both_ways() {
    killed_then_recovered(At::DuringRestore, 100_000, "restoring").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_the_fingerprint_compare_is_found_and_recovered_both_ways() {
    killed_then_recovered(At::DuringCompare, 100_000, "restoring").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_restore_of_the_same_database_is_refused_naming_the_first() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100).await else { return };
    let postgres = s.url_for("postgres");
    // The first restore waits in CREATE DATABASE (after its drop) while the second starts.
    let holder = pgdrill::testkit::pg::connect(&postgres).await.expect("holder");
    holder.batch_execute("begin; comment on database template0 is 'held by the test'").await.expect("hold");
    let mut first = spawn(&s, &storage);
    until("the first restore in create", || async {
        phase(&storage) == "creating"
            && value(&postgres, "select count(*) from pg_stat_activity where wait_event_type = 'Lock'").await
                == Some("1".into())
    })
    .await;

    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(1), "{all}");
    let host = nix::unistd::gethostname().expect("hostname").into_string().expect("utf-8");
    let who = format!("is being restored by pgdrill pid {} on host {host}, since 20", first.id());
    assert!(all.contains(&who), "expected `{who}` in: {all}");
    assert!(all.contains("Nothing was changed"), "{all}");
    assert_eq!(snapshots(&storage).len(), 1, "the second restore took a snapshot");
    let j = journal(&storage).expect("journal");
    assert_eq!(j["pid"], first.id(), "the second restore wrote the journal");
    assert_eq!(j["phase"], "creating");

    holder.batch_execute("rollback").await.expect("release");
    let status = first.wait().expect("first ends");
    assert_eq!(status.code(), Some(0), "the first restore did not complete");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, backup);
    assert_eq!(phase(&storage), "finished");
    assert_eq!(allowed(&s).await.as_deref(), Some("true"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_that_does_not_die_during_terminate_leaves_connections_allowed() {
    let Some((_dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let shop_url = s.url_for("shop");
    let original = fingerprint_of(&shop_url).await;

    // A backend that cannot act on pg_terminate_backend: terminate gives up after its wait.
    let app = pgdrill::testkit::pg::connect(&shop_url).await.expect("app session");
    let pid: i32 = app.query_one("select pg_backend_pid()", &[]).await.expect("pid").get(0);
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("stop backend");
    let (code, all) = restore(&s, &storage, &[]);
    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue backend");
    drop(app);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("1 session still connected to shop"), "{all}");
    assert!(all.contains("new connections to shop are allowed again"), "{all}");
    assert_eq!(allowed(&s).await.as_deref(), Some("true"), "{all}");
    assert_eq!(fingerprint_of(&shop_url).await, original);
    assert_eq!(phase(&storage), "finished", "nothing was dropped: the journal is closed");

    // Interrupted while terminate waits: connections are allowed again too.
    let app = pgdrill::testkit::pg::connect(&shop_url).await.expect("app session");
    let pid: i32 = app.query_one("select pg_backend_pid()", &[]).await.expect("pid").get(0);
    kill(Pid::from_raw(pid), Signal::SIGSTOP).expect("stop backend");
    let mut child = spawn(&s, &storage);
    until("connections blocked", || async { allowed(&s).await.as_deref() == Some("false") }).await;
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("interrupt");
    let status = child.wait().expect("wait");
    kill(Pid::from_raw(pid), Signal::SIGCONT).expect("continue backend");
    drop(app);
    assert_eq!(status.code(), Some(130));
    assert_eq!(allowed(&s).await.as_deref(), Some("true"));
    assert_eq!(fingerprint_of(&shop_url).await, original);
    assert_eq!(phase(&storage), "finished");
}

/// The server's postmaster: its pid, and the command line it was started with.
pub(crate) fn postmaster(s: &Ephemeral) -> (i32, Vec<String>) {
    let data = Path::new(&s.instance).join("data");
    let pid = std::fs::read_to_string(data.join("postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("pid");
    let opts = std::fs::read_to_string(data.join("postmaster.opts")).expect("postmaster.opts");
    let (program, rest) = opts.trim().split_once(' ').expect("program and arguments");
    let mut argv = vec![program.to_string()];
    argv.extend(rest.split('"').skip(1).step_by(2).map(str::to_string));
    (pid, argv)
}

/// Start the stopped server of `s` again as its data directory's owner, with the command
/// line `argv` (`postmaster`'s); it answers when this returns. The caller stops it (SIGINT).
pub(crate) async fn start_again(s: &Ephemeral, argv: &[String]) -> Child {
    use std::os::unix::fs::MetadataExt;
    let data = Path::new(&s.instance).join("data");
    let meta = std::fs::metadata(&data).expect("data");
    let server = std::process::Command::new("/usr/bin/setpriv")
        .args([format!("--reuid={}", meta.uid()), format!("--regid={}", meta.gid()), "--clear-groups".into()])
        .args(["--pdeathsig", "KILL", "--"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server again");
    let postgres = s.url_for("postgres");
    until("the server answers", || async { value(&postgres, "select 1").await.is_some() }).await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_stopped_during_the_restore_is_said_plainly_then_recover_rollback_puts_it_back() {
    let Some((_dir, storage, s, _)) = shop_in_a_new_folder(100_000).await else { return };
    let postgres = s.url_for("postgres");
    let shop_url = s.url_for("shop");
    let original = fingerprint_of(&shop_url).await;
    let (pm, argv) = postmaster(&s);

    let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");
    let child = args(&s, &storage, &[]).spawn_piped();
    until_pg_restore_writes(&watch, &storage).await;
    // Fast shutdown, as an operator's `pg_ctl stop` or a failover would do.
    kill(Pid::from_raw(pm), Signal::SIGINT).expect("stop the server");
    let data = Path::new(&s.instance).join("data");
    until("the server stopped", || async { !data.join("postmaster.pid").exists() }).await;
    let out = child.wait_with_output().expect("wait");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    // Issue 35, case 7: a server that went away is the environment's failure (exit 3),
    // never a verdict on the backup.
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(!all.contains("does not match"), "{all}");
    let snaps = snapshots(&storage);
    assert_eq!(snaps.len(), 1);
    let last = all.lines().last().unwrap_or_default();
    assert!(last.contains("database `shop` was NOT rolled back"), "{last}");
    assert!(last.contains(&format!("safety snapshot {}", snaps[0].display())), "{last}");
    assert!(last.contains("--var recover=rollback"), "{last}");
    assert!(last.contains(&format!("pgdrill decrypt {}", snaps[0].display())), "{last}");
    assert!(last.contains("| pg_restore"), "{last}");
    assert!(!all.contains("rolled back  drop"), "a failed rollback shown as rolled back: {all}");
    assert!(all.contains("ROLLBACK FAILED drop"), "{all}");
    assert!(!all.contains("was rolled back to"), "{all}");
    assert_eq!(phase(&storage), "restoring", "the journal must keep the state");

    // The server comes back (same data directory, same settings).
    let mut server = start_again(&s, &argv).await;

    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("an unfinished restore of database `shop`"), "{all}");
    let (code, all) = restore(&s, &storage, &["recover=rollback"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&shop_url).await, original);
    assert_eq!(allowed(&s).await.as_deref(), Some("true"));
    assert_eq!(phase(&storage), "finished");
    assert_eq!(snapshots(&storage), snaps, "recover=rollback took a snapshot");

    kill(Pid::from_raw(server.id() as i32), Signal::SIGINT).expect("stop");
    let _ = server.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_restore_into_a_new_name_is_removed_by_rollback_and_finished_by_forward() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100_000).await else { return };
    let postgres = s.url_for("postgres");
    let original = fingerprint_of(&s.url_for("shop")).await;
    // The half-made database: under its private name until it is verified, then shop_copy.
    let exists = || async {
        value(
            &postgres,
            "select count(*) from pg_database where datname = 'shop_copy' or datname like 'pgdrill\\_restoring\\_%'",
        )
        .await
            == Some("1".into())
    };

    for recover in ["rollback", "forward"] {
        let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");
        let mut child = spawn_with(&s, &storage, &["target=shop_copy"]);
        until("pg_restore writing into the copy of shop_copy", || async {
            phase_of(&storage, "shop_copy") == "restoring"
                && holds(&watch, "select count(*) > 0 from pg_stat_activity where application_name = 'pg_restore'")
                    .await
        })
        .await;
        sigkill(&mut child);
        let j = journal_of(&storage, "shop_copy").expect("journal");
        assert_eq!(j["existed"], false);
        // Written into under its private name: shop_copy itself does not exist yet.
        let private = j["private_name"].as_str().unwrap_or_default().to_string();
        assert!(private.starts_with("pgdrill_restoring_"), "{j}");
        assert_eq!(
            value(&postgres, "select count(*) from pg_database where datname = 'shop_copy'").await.as_deref(),
            Some("0")
        );

        let (code, all) = restore(&s, &storage, &["target=shop_copy"]);
        assert_eq!(code, Some(1), "{all}");
        assert!(all.contains("removes the half-made database (it did not exist before)"), "{all}");
        assert!(exists().await, "the refusal removed something");

        let (code, all) = restore(&s, &storage, &["target=shop_copy", &format!("recover={recover}")]);
        if recover == "rollback" {
            // Nothing to restore: the half-made database is removed, and the run says so.
            assert_eq!(code, Some(1), "{all}");
            assert!(all.contains("the half-made database was dropped and the journal"), "{all}");
            assert!(!exists().await, "the half-made database is still there");
        } else {
            assert_eq!(code, Some(0), "{all}");
            // Every kind equal, the database's own settings (`ALTER DATABASE ... SET`)
            // included: a database new here gets the backup's copy of them (they were lost,
            // there being no database of that name to take them from).
            assert_eq!(fingerprint_of(&s.url_for("shop_copy")).await, backup);
        }
        assert_eq!(phase_of(&storage, "shop_copy"), "finished", "recover={recover}");
        assert_eq!(private_copies(&s).await.as_deref(), Some("0"), "recover={recover} left a private copy");
        assert!(snapshots(&storage).is_empty(), "a new database needs no snapshot");
    }
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, original, "the original was touched");
}

/// The unfinished journals of `shop` in a shared safety folder, as (server, phase).
fn journals_in(safety: &Path) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(safety.join(".journal")) else { return Vec::new() };
    let mut all: Vec<(String, String)> = dir
        .flatten()
        .filter_map(|e| serde_json::from_str::<Value>(&std::fs::read_to_string(e.path()).ok()?).ok())
        .filter(|j| j["database"] == "shop")
        .map(|j| {
            (j["server"].as_str().unwrap_or_default().to_string(), j["phase"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    all.sort();
    all
}

fn address(s: &Ephemeral) -> String {
    pgdrill::testkit::pg::server_id(&s.url_for("postgres")).expect("server id")
}

/// Regression: the journal was keyed by the database's name alone, so two servers sharing a
/// safety folder shared it: a restore killed on server A blocked every restore of `shop` on
/// server B, and `recover=rollback` on B dropped B's `shop` and put A's snapshot in its
/// place. Now the journal is the server's own: B restores, and a recovery on B finds nothing
/// of its own and names A's journal as A's; A's journal, untouched, still recovers A.
#[tokio::test(flavor = "multi_thread")]
async fn a_journal_of_another_server_sharing_the_safety_folder_never_blocks_nor_is_acted_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let (storage_a, storage_b, shared) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("shared-safety"));
    let Some((a, _)) = shop(&storage_a, 100).await else { return };
    let Some((b, backup_b)) = shop(&storage_b, 100).await else { return };
    let safety = format!("safety={}", shared.display());
    let original_a = fingerprint_of(&a.url_for("shop")).await;
    let original_b = fingerprint_of(&b.url_for("shop")).await;
    let a_postgres = a.url_for("postgres");
    if let Ok(mut act) = ACTIVITY.lock() {
        *act = Some(a_postgres.clone());
    }

    // A restore on A killed after its drop (CREATE DATABASE waits for the test's lock).
    let holder = hold_create_database(&a_postgres).await;
    let mut child = spawn_with(&a, &storage_a, &[&safety]);
    until("A's restore waiting in create database", || async {
        journals_in(&shared) == vec![(address(&a), "creating".to_string())] && create_database_waits(&a_postgres).await
    })
    .await;
    sigkill(&mut child);
    release_create_database(holder, &a_postgres).await;

    // recover=rollback on B: nothing of B's to recover, and A's journal named as A's.
    let (code, all) = restore(&b, &storage_b, &[&safety, "recover=rollback"]);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("there is no unfinished restore of database `shop` on server"), "{all}");
    assert!(all.contains(&address(&a)) && all.contains(&address(&b)), "both servers named: {all}");
    assert!(all.contains("never acted on from"), "{all}");
    assert_eq!(fingerprint_of(&b.url_for("shop")).await, original_b, "B's database was touched");

    // A plain restore on B is not blocked by A's journal.
    let (code, all) = restore(&b, &storage_b, &[&safety]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&b.url_for("shop")).await, backup_b);
    assert_eq!(
        journals_in(&shared),
        {
            let mut v = vec![(address(&a), "creating".to_string()), (address(&b), "finished".to_string())];
            v.sort();
            v
        },
        "the journals of the two servers live side by side"
    );

    // A's journal still recovers A.
    let (code, all) = restore(&a, &storage_a, &[&safety, "recover=rollback"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&a.url_for("shop")).await, original_a);
    assert_eq!(fingerprint_of(&b.url_for("shop")).await, backup_b, "A's rollback touched B");
}

/// Regression: a restore into a new name (`target`) whose database someone else created
/// after the journal was written (here during `stop_command`) dropped that database without
/// a snapshot, because the journal said it did not exist. Now every destructive statement
/// checks the database is the one the journal recorded (its OID): the stranger is left as it
/// is, connections to it were never blocked, and the journal is closed (nothing changed).
#[tokio::test(flavor = "multi_thread")]
async fn a_target_created_during_stop_command_is_never_dropped() {
    let Some((dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let postgres = s.url_for("postgres");
    let copy = s.url_for("shop_copy");
    let script = written(
        dir.path().join("stop.sh"),
        format!(
            "set -e\npsql -q -X -v ON_ERROR_STOP=1 '{postgres}' -c 'create database shop_copy'\n\
             psql -q -X -v ON_ERROR_STOP=1 '{copy}' -c \"create table theirs (note text); insert into theirs values ('made during stop_command')\"\n"
        ),
    );
    let stop = format!("stop_command=sh {}", script.display());
    let (code, all) = restore(&s, &storage, &["target=shop_copy", &stop]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("refusing to block connections to and terminate the sessions of database `shop_copy`"),
        "{all}"
    );
    assert!(all.contains("it did not exist when the restore began"), "{all}");
    assert_eq!(
        value(&copy, "select string_agg(note, ',') from theirs").await.as_deref(),
        Some("made during stop_command"),
        "the database made during stop_command was dropped or changed: {all}"
    );
    assert_eq!(
        value(&postgres, "select datallowconn from pg_database where datname = 'shop_copy'").await.as_deref(),
        Some("true")
    );
    // Open (never advanced) or finished: nothing unfinished blocks the next run.
    assert!(["open", "finished"].contains(&phase_of(&storage, "shop_copy").as_str()), "{all}");
}

/// A restore refused in preflight: exit 1, "nothing was changed" and the remedy, no journal
/// left open, no snapshot, and the database exactly as it was.
async fn refused_in_preflight(s: &Ephemeral, storage: &Path, target: &str, why: &str, remedy: &str) {
    let url = s.url_for(target);
    let before = fingerprint_of(&url).await;
    let row = "select format('%s %s %s %s', oid, datistemplate, datallowconn, datconnlimit) from pg_database where datname = current_database()";
    let shape = value(&url, row).await;
    let (code, all) = restore(s, storage, &[&format!("target={target}")]);
    assert_eq!(code, Some(1), "{target}: {all}");
    assert!(all.contains(why), "{target}: expected `{why}` in: {all}");
    assert!(all.contains(remedy), "{target}: expected `{remedy}` in: {all}");
    assert!(all.contains("nothing was changed"), "{target}: {all}");
    assert_eq!(fingerprint_of(&url).await, before, "{target} was changed");
    assert_eq!(value(&url, row).await, shape, "{target}'s pg_database row changed");
    assert!(
        std::fs::read_dir(storage.join(".safety").join(target)).map(|d| d.count()).unwrap_or(0) == 0,
        "{target}: a snapshot was taken"
    );
    assert_ne!(phase_of(storage, target), "dropping", "{target}: {all}");
}

/// Regression: a template database, a database with a subscription, and the maintenance
/// database pgdrill connects through passed preflight; the DROP then failed after the
/// journal had recorded `changed`, and the journal said the database was neither restored
/// nor put back, blocking every later run. Now preflight refuses each, naming the remedy,
/// with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn template_subscription_and_maintenance_databases_are_refused_in_preflight() {
    let Some((_dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let postgres = s.url_for("postgres");
    common::exec(&postgres, "create database shop_template is_template true").await;
    common::exec(&s.url_for("shop_template"), "create table t (n int); insert into t values (1)").await;
    common::exec(&postgres, "create database shop_subscriber").await;
    common::exec(
        &s.url_for("shop_subscriber"),
        "create table t (n int); insert into t values (1);
         create subscription shop_sub connection 'host=/nonexistent dbname=nowhere' publication p
           with (connect = false, slot_name = none, enabled = false)",
    )
    .await;

    refused_in_preflight(&s, &storage, "shop_template", "is a template database", "is_template false").await;
    refused_in_preflight(&s, &storage, "shop_subscriber", "subscription shop_sub", "drop subscription").await;
    refused_in_preflight(&s, &storage, "postgres", "the maintenance database", "target=").await;
}

/// Regression: a restore killed while connections were blocked (nothing dropped) was
/// followed by advice to run `recover=rollback`; after the operator let connections in and
/// the application wrote rows, that rollback dropped the never-changed database and put the
/// older snapshot in its place, losing the rows, exit 0. Now the advice is `recover=reopen`,
/// a rollback or forward of a never-dropped database is refused naming it, and reopen lets
/// connections in and closes the journal with every row kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_the_drop_is_recovered_by_reopen_and_loses_nothing() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100).await else { return };
    let shop_url = s.url_for("shop");
    if let Ok(mut a) = ACTIVITY.lock() {
        *a = Some(s.url_for("postgres"));
    }
    assert_eq!(kill_at(&s, &storage, At::AfterSnapshot).await, "blocking");
    assert_eq!(allowed(&s).await.as_deref(), Some("false"));

    // The advice names the recovery that loses nothing, and only that one.
    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("an unfinished restore of database `shop`"), "{all}");
    assert!(all.contains("--var recover=reopen"), "{all}");
    assert!(!all.contains("recover=rollback") && !all.contains("recover=forward"), "{all}");

    // The operator lets connections in by hand; the application writes.
    common::exec(&s.url_for("postgres"), "alter database shop allow_connections true").await;
    common::exec(&shop_url, "insert into customers (name) values ('written after the crash')").await;
    let written = fingerprint_of(&shop_url).await;
    let count = "select count(*) from customers where name = 'written after the crash'";

    for r in ["rollback", "forward"] {
        let (code, all) = restore(&s, &storage, &[&format!("recover={r}")]);
        assert_eq!(code, Some(1), "recover={r}: {all}");
        assert!(all.contains("never dropped the database") && all.contains("--var recover=reopen"), "{all}");
        assert!(all.contains("Nothing was changed"), "{all}");
        assert_eq!(fingerprint_of(&shop_url).await, written, "recover={r} changed the database");
    }

    let (code, all) = restore(&s, &storage, &["recover=reopen"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("recover=reopen: database `shop` was never changed by the unfinished restore"), "{all}");
    assert!(!all.contains("passed       drop") && !all.contains("passed       snapshot"), "{all}");
    assert_eq!(phase(&storage), "finished", "{all}");
    assert_eq!(value(&shop_url, count).await.as_deref(), Some("1"), "the rows written were lost");
    assert_eq!(fingerprint_of(&shop_url).await, written);
    assert_eq!(allowed(&s).await.as_deref(), Some("true"));

    // Recovered: a restore runs again.
    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&shop_url).await, backup);
}

/// Reopen also lets connections in when the operator did not: the blocked database is
/// opened again and the journal closed.
#[tokio::test(flavor = "multi_thread")]
async fn recover_reopen_lets_connections_in_again_after_a_crash_while_blocked() {
    let Some((_dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let original = fingerprint_of(&s.url_for("shop")).await;
    assert_eq!(kill_at(&s, &storage, At::AfterSnapshot).await, "blocking");
    assert_eq!(allowed(&s).await.as_deref(), Some("false"));
    let (code, all) = restore(&s, &storage, &["recover=reopen"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("new connections are allowed again"), "{all}");
    assert_eq!(allowed(&s).await.as_deref(), Some("true"));
    assert_eq!(phase(&storage), "finished");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, original);
}

/// Try, `tries` times over, to connect to `url` and write; how many got in.
async fn app_writes(url: &str, tries: u32) -> u32 {
    let mut got_in = 0;
    for _ in 0..tries {
        if let Ok(c) = pgdrill::testkit::pg::connect(url).await {
            if c.batch_execute("create table if not exists intruder (n int); insert into intruder values (1)")
                .await
                .is_ok()
            {
                got_in += 1;
            }
        }
    }
    got_in
}

/// Start a restore with `extra`, wait until it recreated `shop` (the database there has the
/// OID the journal recorded for it) in `phase`, stop pgdrill, let the application try to
/// reconnect and write, continue; returns how many of its tries got in, and the run's end.
async fn app_during(
    s: &Ephemeral,
    storage: &Path,
    extra: &[&str],
    phase_now: &str,
    apps: &[&str],
) -> (u32, Option<i32>, String) {
    let postgres = s.url_for("postgres");
    let child = args(s, storage, extra).spawn_piped();
    let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");
    until("shop recreated", || async {
        let Some(j) = journal(storage) else { return false };
        // Under its private name: the database with the OID the journal recorded.
        let Some(oid) = j["created_oid"].as_i64() else { return false };
        // In a rollback, the database it created again (not the restore's, dropped first).
        let again = j["history"].as_array().is_some_and(|h| h.iter().any(|e| e["note"] == "created again"));
        j["phase"] == phase_now
            && (phase_now != "rolling_back" || again)
            && holds(&watch, &format!("select exists (select 1 from pg_database where oid = {oid})")).await
    })
    .await;
    let me = Pid::from_raw(child.id() as i32);
    kill(me, Signal::SIGSTOP).expect("stop pgdrill");
    let mut got_in = 0;
    for app in apps {
        got_in += app_writes(app, 10).await;
    }
    kill(me, Signal::SIGCONT).expect("continue pgdrill");
    let out = child.wait_with_output().expect("wait");
    (got_in, out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// Regression: an application reconnecting in a loop as the database's owner (no
/// stop_command) wrote into the recreated database while it was restored, and while a
/// rollback put it back: both failed and the database was left as neither; one connecting
/// as a superuser was never stopped. Now the recreated database is restored under a private
/// name and renamed into place once verified, so neither reaches it by its name, and it is
/// born refusing every connection but a superuser's (connection limit 0, which binds the
/// owner) until it is verified, in the restore and in the rollback; its own connection limit
/// is put back at the end.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_application_cannot_write_into_the_recreated_database_until_verified() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100_000).await else { return };
    if let Ok(mut a) = ACTIVITY.lock() {
        *a = Some(s.url_for("postgres"));
    }
    let postgres = s.url_for("postgres");
    common::exec(&postgres, "alter role app_owner password 'app-secret'; alter database shop connection limit 50")
        .await;
    let app = pgdrill::testkit::pg::server_url("app_owner", "app-secret", &s.host, s.port, "shop");
    assert_eq!(app_writes(&app, 1).await, 1, "the application cannot write at all");
    common::exec(&s.url_for("shop"), "drop table intruder").await;
    let limit = "select datconnlimit from pg_database where datname = 'shop'";

    // The restore: refused while pg_restore writes; the backup, verified, then open.
    let superuser = s.url_for("shop");
    let (got_in, code, all) = app_during(&s, &storage, &[], "restoring", &[&app, &superuser]).await;
    assert_eq!(got_in, 0, "the application wrote into the database being restored: {all}");
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, backup);
    assert_eq!(value(&postgres, limit).await.as_deref(), Some("50"), "{all}");
    let restored = fingerprint_of(&s.url_for("shop")).await;

    // A restore whose smoke check fails rolls back: refused while the snapshot goes back.
    let (got_in, code, all) =
        app_during(&s, &storage, &["smoke_sql=select 0"], "rolling_back", &[&app, &superuser]).await;
    assert_eq!(got_in, 0, "the application wrote into the database being put back: {all}");
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, restored);
    assert_eq!(value(&postgres, limit).await.as_deref(), Some("50"), "{all}");
    assert_eq!(app_writes(&app, 1).await, 1, "the application cannot write after the rollback");
}

/// Regression: the journal recorded `changed` before the DROP ran, so a DROP that failed
/// (here: a subscription created during `stop_command`, after preflight) left a journal
/// saying the database was "NOT restored and NOT put back", and every later run, a rollback
/// included, was stuck on it. Now `changed` is recorded only once the DROP succeeded: the
/// run says the database was not changed, lets connections in again and closes the journal.
#[tokio::test(flavor = "multi_thread")]
async fn a_drop_that_fails_changes_nothing_and_leaves_no_unfinished_journal() {
    let Some((dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let shop_url = s.url_for("shop");
    let original = fingerprint_of(&shop_url).await;
    let script = written(
        dir.path().join("stop.sh"),
        format!(
            "psql -q -X -v ON_ERROR_STOP=1 '{shop_url}' -c \"create subscription late_sub connection 'host=/nonexistent dbname=nowhere' \
             publication p with (connect = false, slot_name = none, enabled = false)\"\n"
        ),
    );
    let (code, all) = restore(&s, &storage, &[&format!("stop_command=sh {}", script.display())]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("FAILED       drop"), "{all}");
    assert!(!all.contains("NOT restored"), "{all}");
    assert_eq!(phase(&storage), "finished", "{all}");
    assert_eq!(journal(&storage).expect("journal")["changed"], false, "{all}");
    assert_eq!(allowed(&s).await.as_deref(), Some("true"), "{all}");
    assert_eq!(fingerprint_of(&shop_url).await, original);

    // The next run is not stuck on a journal: preflight names the subscription.
    let (code, all) = restore(&s, &storage, &[]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("subscription late_sub") && !all.contains("an unfinished restore"), "{all}");
}

/// Regression (issue 34, case 5): the restore wrote into the database under its own name, so
/// an application reconnecting by that name reached it half-restored, and one connecting as
/// a superuser was not even held off by its connection limit. Now the restore writes into a
/// copy under a private name and renames it into place once verified: while it is restored,
/// neither the owner nor a superuser reaches the database by its name (and the owner not the
/// copy by its private name either). pgdrill killed while it renames the copy into place (a
/// session the test holds on the copy, its backend stopped, keeps the rename waiting) leaves
/// the journal at `renaming`; `recover=rollback` puts the original back and `recover=forward`
/// restores the backup, each dropping the private copy.
#[tokio::test(flavor = "multi_thread")]
async fn an_application_never_reaches_a_half_restored_database_by_its_name() {
    let Some((_dir, storage, s, backup)) = shop_in_a_new_folder(100_000).await else { return };
    let postgres = s.url_for("postgres");
    if let Ok(mut a) = ACTIVITY.lock() {
        *a = Some(postgres.clone());
    }
    common::exec(&postgres, "alter role app_owner password 'app-secret'").await;
    let owner = pgdrill::testkit::pg::server_url("app_owner", "app-secret", &s.host, s.port, "shop");
    let superuser = s.url_for("shop");
    let original = fingerprint_of(&superuser).await;
    let watch = pgdrill::testkit::pg::connect(&postgres).await.expect("watch session");

    for recover in ["rollback", "forward"] {
        let mut child = spawn(&s, &storage);
        until("pg_restore writing into the private copy", || async {
            phase(&storage) == "restoring"
                && holds(&watch, "select count(*) > 0 from pg_stat_activity where application_name = 'pg_restore'")
                    .await
        })
        .await;
        let me = Pid::from_raw(child.id() as i32);
        kill(me, Signal::SIGSTOP).expect("stop pgdrill");
        let private = private_name(&storage);
        assert_eq!(phase(&storage), "restoring", "{recover}");
        // By its name: there is no such database while it is restored.
        let by_name = app_writes(&owner, 3).await + app_writes(&superuser, 3).await;
        assert_eq!(by_name, 0, "{recover}: an application reached the half-restored database by its name");
        // By its private name, as the owner: held off by the connection limit.
        let copy_as_owner = pgdrill::testkit::pg::server_url("app_owner", "app-secret", &s.host, s.port, &private);
        assert_eq!(app_writes(&copy_as_owner, 3).await, 0, "{recover}: the owner wrote into the private copy");
        // A superuser's idle session on the copy whose backend does not act on a terminate:
        // the rename waits for it.
        let stuck = pgdrill::testkit::pg::connect(&s.url_for(&private)).await.expect("session on the copy");
        let backend: i32 = stuck.query_one("select pg_backend_pid()", &[]).await.expect("pid").get(0);
        kill(Pid::from_raw(backend), Signal::SIGSTOP).expect("stop backend");
        kill(me, Signal::SIGCONT).expect("continue pgdrill");
        until("renaming into place", || async { phase(&storage) == "renaming" }).await;
        sigkill(&mut child);
        kill(Pid::from_raw(backend), Signal::SIGCONT).expect("continue backend");
        drop(stuck);
        assert_eq!(
            value(&postgres, "select count(*) from pg_database where datname = 'shop'").await.as_deref(),
            Some("0"),
            "{recover}: the copy took the name before it was renamed"
        );
        assert_eq!(private_copies(&s).await.as_deref(), Some("1"), "{recover}");

        let (code, all) = restore(&s, &storage, &[]);
        assert_eq!(code, Some(1), "{all}");
        assert!(all.contains("stopped at phase `renaming`"), "{all}");
        assert!(all.contains(&format!("its half-restored copy may be database `{private}`")), "{all}");
        assert!(all.contains("--var recover=rollback") && all.contains("--var recover=forward"), "{all}");

        let (code, all) = restore(&s, &storage, &[&format!("recover={recover}")]);
        assert_eq!(code, Some(0), "recover={recover}: {all}");
        let want = if recover == "rollback" { &original } else { &backup };
        assert_eq!(&fingerprint_of(&superuser).await, want, "recover={recover}");
        assert_eq!(private_copies(&s).await.as_deref(), Some("0"), "recover={recover} left the private copy");
        assert_eq!(phase(&storage), "finished", "recover={recover}");
        assert_eq!(allowed(&s).await.as_deref(), Some("true"), "recover={recover}");
        assert_eq!(app_writes(&owner, 1).await, 1, "recover={recover}: the application cannot write afterwards");
        common::exec(&superuser, "drop table intruder").await;
    }
    until("no tool sessions left", || async { tool_sessions(&s).await == "0" }).await;
}

/// Prepared transactions and logical replication slots make DROP DATABASE fail; preflight
/// refuses both, naming the remedy, with nothing changed. (They were refused without a test:
/// the test servers ran with `max_prepared_transactions = 0` and `wal_level = replica`, where
/// neither can exist; this one is restarted with both allowed.)
#[tokio::test(flavor = "multi_thread")]
async fn prepared_transactions_and_logical_slots_are_refused_in_preflight() {
    let Some((_dir, storage, s, _)) = shop_in_a_new_folder(100).await else { return };
    let postgres = s.url_for("postgres");
    let (pm, argv) = postmaster(&s);
    kill(Pid::from_raw(pm), Signal::SIGINT).expect("stop the server");
    let data = Path::new(&s.instance).join("data");
    until("the server stopped", || async { !data.join("postmaster.pid").exists() }).await;
    // The throwaway's own `-c wal_level=minimal` and `max_wal_senders=0` go; these come in.
    let ours = ["wal_level=", "max_wal_senders=", "max_replication_slots=", "max_prepared_transactions="];
    let mut args: Vec<String> = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        if argv[i] == "-c" && argv.get(i + 1).is_some_and(|a| ours.iter().any(|o| a.starts_with(o))) {
            i += 2;
            continue;
        }
        args.push(argv[i].clone());
        i += 1;
    }
    for setting in ["wal_level=logical", "max_wal_senders=2", "max_replication_slots=2", "max_prepared_transactions=2"]
    {
        args.extend(["-c".to_string(), setting.to_string()]);
    }
    let mut server = start_again(&s, &args).await;
    assert_eq!(value(&postgres, "current_setting('wal_level')").await.as_deref(), Some("logical"));

    // The slot first: creating a logical slot waits for every open transaction, a prepared
    // one included.
    common::exec(&postgres, "create database shop_slot").await;
    common::exec(&s.url_for("shop_slot"), "select pg_create_logical_replication_slot('shop_slot_1', 'pgoutput')").await;
    common::exec(&postgres, "create database shop_prepared").await;
    common::exec(&s.url_for("shop_prepared"), "create table t (n int)").await;
    common::exec(
        &s.url_for("shop_prepared"),
        "begin; insert into t values (1); prepare transaction 'pgdrill_test_xact'",
    )
    .await;

    refused_in_preflight(&s, &storage, "shop_prepared", "has 1 prepared transaction(s)", "rollback prepared").await;
    refused_in_preflight(
        &s,
        &storage,
        "shop_slot",
        "logical replication slot(s) shop_slot_1",
        "pg_drop_replication_slot",
    )
    .await;
    // Still there, as they were.
    assert_eq!(value(&postgres, "(select count(*) from pg_prepared_xacts)").await.as_deref(), Some("1"));
    assert_eq!(value(&postgres, "(select count(*) from pg_replication_slots)").await.as_deref(), Some("1"));

    common::exec(&s.url_for("shop_prepared"), "rollback prepared 'pgdrill_test_xact'").await;
    common::exec(&postgres, "select pg_drop_replication_slot('shop_slot_1')").await;
    kill(Pid::from_raw(server.id() as i32), Signal::SIGINT).expect("stop");
    let _ = server.wait();
}
