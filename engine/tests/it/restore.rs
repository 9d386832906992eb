//! Operator restore (runbooks/restore.yaml) on a real PostgreSQL 15 with the real pg_dump,
//! pg_restore and psql: a restore succeeds and the content equals the backup; a failure
//! after the drop, and SIGINT during the restore, put the database back as it was
//! (fingerprints equal) and say where the snapshot is; without confirmation nothing changes;
//! open connections are terminated; a backup the target cannot take fails in preflight.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{fingerprint_of, junit_cases, scalar, snapshots, status_of, text, tmp_backups, Run};
use pgdrill::testkit::pg::ephemeral::Ephemeral;
use pgdrill::testkit::pg::fingerprint::Fingerprint;

const KEY: &str = "restore-test passphrase";

/// A server with database `shop` (owned by `app_owner`, a table owned by it too), backed up
/// into `storage`; `extra_rows` large rows are added first to make the restore take a while.
async fn backed_up(storage: &Path, extra_rows: u32) -> Option<(Ephemeral, PathBuf)> {
    let bulk = format!(
        "create table bulk (id int, payload text);
         insert into bulk select g, repeat(md5(g::text), 8) from generate_series(1, {extra_rows}) g;
         create index bulk_id on bulk (id); create index bulk_payload on bulk (payload);"
    );
    common::shop_backed_up(storage, KEY, (500, 5000), &bulk).await
}

/// [`backed_up`] into a new folder, then changed since (one customer more): what a restore
/// that must leave the database as it was starts from.
struct Changed {
    dir: tempfile::TempDir,
    storage: PathBuf,
    s: Ephemeral,
    backup: PathBuf,
    /// `shop`'s URL.
    shop: String,
    /// `shop`'s fingerprint after the change.
    before: Fingerprint,
    /// `restore.xml` in the folder, for the restore's JUnit.
    junit: PathBuf,
}

async fn changed_since_its_backup(extra_rows: u32) -> Option<Changed> {
    let (dir, storage) = tmp_backups();
    let (s, backup) = backed_up(&storage, extra_rows).await?;
    let shop = s.url_for("shop");
    common::exec(&shop, "insert into customers (name) values ('newer')").await;
    let before = fingerprint_of(&shop).await;
    let junit = dir.path().join("restore.xml");
    Some(Changed { dir, storage, s, backup, shop, before, junit })
}

/// A restore of `shop` with `junit`; each of `extra` is a flag when it starts with `--`,
/// else a `--var`.
fn restore_args(s: &Ephemeral, storage: &Path, junit: &Path, extra: &[&str]) -> Run {
    let mut run = common::restore_shop(s, storage, KEY).junit(junit);
    for e in extra {
        run = if e.starts_with("--") { run.arg(e) } else { run.vars(&[e]) };
    }
    run
}

fn restore(s: &Ephemeral, storage: &Path, junit: &Path, extra: &[&str]) -> Output {
    restore_args(s, storage, junit, extra).command().stdin(Stdio::null()).output().expect("restore runs")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_terminates_sessions_and_brings_back_exactly_the_backup() {
    let (dir, storage) = tmp_backups();
    let Some((s, backup)) = backed_up(&storage, 100).await else { return };
    let shop = s.url_for("shop");
    // Work done after the backup, and an application session that stays connected.
    let app = pgdrill::testkit::pg::connect(&shop).await.expect("app session");
    app.batch_execute("insert into customers (name) values ('after the backup')").await.expect("insert");

    let junit = dir.path().join("restore.xml");
    let out =
        restore(&s, &storage, &junit, &["--yes", "smoke_sql=select count(*) from customers", "smoke_expect=== 500"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains(KEY), "the key leaked: {all}");

    // The content is the backup's: its manifest fingerprint equals the database's now.
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.manifest.json", backup.display())).expect("manifest"),
    )
    .expect("json");
    let expected: Fingerprint = serde_json::from_value(manifest["fingerprint"].clone()).expect("fingerprint");
    assert_eq!(fingerprint_of(&shop).await, expected);
    assert_eq!(scalar(&shop, "select count(*) from customers").await, "500");
    // Ownership kept: the database's and the table's.
    assert_eq!(
        scalar(&shop, "select pg_get_userbyid(datdba) from pg_database where datname = 'shop'").await,
        "app_owner"
    );
    assert_eq!(scalar(&shop, "select tableowner from pg_tables where tablename = 'orders'").await, "app_owner");
    // The open session was terminated, and said so.
    assert!(app.simple_query("select 1").await.is_err(), "the application session survived the drop");
    assert!(all.contains("terminated postgres"), "{all}");
    // A safety snapshot of the state before, listed.
    assert_eq!(snapshots(&storage).len(), 1);
    let left = common::staged_leftovers(&storage.join("shop"));
    assert!(left.is_empty(), "the dump staged by `check` is removed when the run ends: {left:?}");
    assert!(text(&out.stdout).contains("passed       check"), "{}", text(&out.stdout));
    let listed =
        common::run(&["backups", "list", "--storage", &storage.join(".safety").display().to_string(), "--json"]);
    assert!(text(&listed.stdout).contains(".safety/shop/"), "{}", text(&listed.stdout));
    let cases = junit_cases(&junit);
    for step in ["preflight", "confirm", "snapshot", "terminate", "drop", "create", "restore", "verify", "smoke_sql"] {
        assert_eq!(status_of(&cases, step), "passed", "{step} in {cases:?}");
    }

    // Into another name: the original stays as it is, nothing is dropped or snapshotted.
    let before = fingerprint_of(&shop).await;
    let again = pgdrill::testkit::pg::connect(&shop).await.expect("reconnect");
    again.batch_execute("insert into customers (name) values ('kept')").await.expect("insert");
    let before_kept = fingerprint_of(&shop).await;
    assert_ne!(before, before_kept);
    let out = restore(&s, &storage, &junit, &["--yes", "target=shop_restore"]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(fingerprint_of(&s.url_for("shop_restore")).await, expected);
    assert_eq!(fingerprint_of(&shop).await, before_kept);
    assert_eq!(snapshots(&storage).len(), 1, "a new database needs no snapshot");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failure_after_the_drop_rolls_back_to_the_snapshot() {
    let (dir, storage) = tmp_backups();
    let Some((s, _)) = backed_up(&storage, 100).await else { return };
    let shop = s.url_for("shop");
    common::exec(
        &shop,
        "insert into customers (name) values ('newer than the backup'); delete from orders where id < 10",
    )
    .await;
    let before = fingerprint_of(&shop).await;

    let junit = dir.path().join("restore.xml");
    let started = dir.path().join("started");
    let start = format!("start_command=echo started > {}", started.display());
    let out = restore(
        &s,
        &storage,
        &junit,
        &["--yes", "smoke_sql=select count(*) from customers", "smoke_expect=> 100000", &start],
    );
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    let snaps = snapshots(&storage);
    assert_eq!(snaps.len(), 1);
    let last = all.lines().last().unwrap_or_default();
    assert!(last.contains("step `smoke_sql` failed"), "{last}");
    assert!(
        last.contains(&format!("database `shop` was rolled back to the safety snapshot {}", snaps[0].display())),
        "{last}"
    );
    assert!(last.contains("its fingerprint matches the snapshot's"), "{last}");
    assert_eq!(fingerprint_of(&shop).await, before, "the database is not what it was before the restore");
    // New connections are allowed again, and the application was started again.
    assert_eq!(scalar(&shop, "select datallowconn from pg_database where datname = 'shop'").await, "true");
    assert!(started.exists(), "start hook did not run");
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "smoke_sql"), "failure", "{cases:?}");
    assert_eq!(status_of(&cases, "rollback of drop: put_back"), "passed", "{cases:?}");
    assert_eq!(status_of(&cases, "rollback of terminate: allow_connections"), "passed", "{cases:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_confirmation_nothing_changes_and_an_incompatible_backup_stops_in_preflight() {
    let Some(Changed { dir: _dir, storage, s, backup, shop, before, junit }) = changed_since_its_backup(100).await
    else {
        return;
    };

    // No --yes and no terminal: refused, exit 2.
    let out = restore(&s, &storage, &junit, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("refusing without confirmation") && all.contains("pass --yes"), "{all}");
    assert!(all.contains("Nothing was changed"), "{all}");
    assert!(snapshots(&storage).is_empty());
    assert_eq!(fingerprint_of(&shop).await, before);
    assert_eq!(status_of(&junit_cases(&junit), "drop"), "skipped");

    // A backup from a newer major than the target's: pg_restore 15 cannot read it, and the
    // server could not take it. The manifest says so; preflight stops before anything changes.
    let mpath = format!("{}.manifest.json", backup.display());
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&mpath).expect("manifest")).expect("json");
    m["server_major"] = 16.into();
    m["server_version"] = "16.4".into();
    m["pg_dump_version"] = "pg_dump (PostgreSQL) 16.4".into();
    // Edited without the key, the manifest is refused before anything in it is used.
    std::fs::write(&mpath, serde_json::to_string(&m).expect("json")).expect("write");
    let out = restore(&s, &storage, &junit, &["--yes"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("fails authentication"), "{all}");
    assert!(snapshots(&storage).is_empty());
    assert_eq!(fingerprint_of(&shop).await, before);
    // Bound again by a key holder, it reaches preflight, which stops on the version.
    common::write_rebound_manifest(&backup, m, KEY);
    let out = restore(&s, &storage, &junit, &["--yes"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("preflight [restore.preflight]"), "{all}");
    assert!(all.contains("the backup comes from PostgreSQL 16"), "{all}");
    assert!(all.contains("nothing was changed"), "{all}");
    assert!(snapshots(&storage).is_empty());
    assert_eq!(fingerprint_of(&shop).await, before);
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "preflight"), "failure", "{cases:?}");
    assert_eq!(status_of(&cases, "confirm"), "skipped", "{cases:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_during_the_restore_rolls_back() {
    // Enough data that pg_restore runs for a second or more (the poll below takes ~20 ms).
    let Some(Changed { dir: _dir, storage, s, shop, before, junit, .. }) = changed_since_its_backup(300_000).await
    else {
        return;
    };

    let child = restore_args(&s, &storage, &junit, &["--yes", "--quiet"]).spawn_piped();
    // Wait until pg_restore is writing into the recreated database (under its private name), then interrupt.
    let admin = pgdrill::testkit::pg::connect(&s.url_for("postgres")).await.expect("admin");
    // A bound on a hang, not a timing: lock, pick, check and snapshot come first, and take
    // longer on a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let n: i64 = admin
            .query_one("select count(*) from pg_stat_activity where application_name = 'pg_restore'", &[])
            .await
            .expect("poll")
            .get(0);
        if n > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "pg_restore never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("signal");
    let out = child.wait_with_output().expect("wait");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(all.contains("interrupted by SIGINT"), "{all}");
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    assert_eq!(fingerprint_of(&shop).await, before, "the database is not what it was before the restore");
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "restore"), "error", "{cases:?}");
    assert_eq!(status_of(&cases, "rollback of drop: put_back"), "passed", "{cases:?}");
    // No pg_restore left behind.
    let left: i64 = admin
        .query_one("select count(*) from pg_stat_activity where application_name = 'pg_restore'", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(left, 0);
}

/// Regression: restore.yaml told a local storage from an object store by `'://'` in its
/// text, so the safety snapshots of a `file://` storage (a directory here) went to
/// ~/.local/state instead of beside it. The runbook asks storage now (`is local`); the plan
/// shows the value (nothing runs).
#[test]
fn a_file_url_storage_keeps_its_safety_snapshots_beside_it_not_at_home() {
    let safety_of = |storage: &str| {
        let ran = Run::cli(["plan", "restore"])
            .var("database_url", "postgres://admin@db1:5432/postgres")
            .var("storage", storage)
            .var("database", "shop")
            .env("HOME", "/home/operator")
            .expect(0);
        let lets = ran.stdout.split_once("\nlet:\n").map(|(_, l)| l).unwrap_or_default();
        let line = lets.lines().find_map(|l| l.strip_prefix("  safety: "));
        line.map(str::to_string).unwrap_or_else(|| panic!("no let.safety in the plan:\n{}", ran.all()))
    };
    let home = "\"/home/operator/.local/state/pgdrill/safety\"";
    assert_eq!(safety_of("file:///srv/backups"), "\"file:///srv/backups/.safety\"");
    assert_eq!(safety_of("/srv/backups"), "\"/srv/backups/.safety\"");
    assert_eq!(safety_of("s3://bkt/app?region=eu-west-1"), home);
    assert_eq!(safety_of("az://container/app"), home);
}
