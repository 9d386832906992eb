//! The operator restore against the environment it runs in (issue 35, case 7): the server's
//! disk filling while pg_restore writes, and a tool this machine lacks, are the
//! environment's failures (exit 3, a JUnit `<error>`), never a verdict on the backup; and the
//! operator restore on PostgreSQL 17, a second real major, in its Docker image (issue 34).

use std::path::Path;

use crate::common::{self, fingerprint_of, scalar, tmp_backups, Run, SmallDisk};
use pgdrill::testkit::pg::ephemeral::Ephemeral;

const KEY: &str = "restore-environment passphrase";

/// `pgdrill run restore --yes` of the latest backup of `shop` in `storage` into the server of
/// `s`, one job, its JUnit file in `junit`.
fn restore(s: &Ephemeral, storage: &Path, junit: &Path, vars: &[&str]) -> Run {
    common::restore_shop(s, storage, KEY).arg("--yes").var("jobs", 1).junit(junit).vars(vars)
}

/// Issue 35, case 7, for the operator restore: the server's disk filling while pg_restore
/// wrote (SQLSTATE 53100) ended like a failed check of the backup. Database `shop` lives in
/// a tablespace on a 24 MB tmpfs, and the backup (taken when its table was ~45 MB, in the
/// default tablespace) does not fit there: the restore fails as the environment's (exit 3,
/// JUnit `error`, "the environment failed, not the backup"), and the rollback puts the
/// original back in the room the dropped copy freed.
#[tokio::test(flavor = "multi_thread")]
async fn the_servers_disk_filling_during_an_operator_restore_was_a_verdict_on_the_backup() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(s) = common::native_server("postgres").await else { return };
    let admin = s.url_for("postgres");
    let dir = tempfile::tempdir().expect("tmp");
    // The server's user must reach the tablespace through the test's folder.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let storage = dir.path().join("backups");
    common::exec(&admin, "create database shop").await;
    common::exec(
        &s.url_for("shop"),
        "create table t (id int, pad text); insert into t select g, repeat('x', 1000) from generate_series(1, 40000) g",
    )
    .await;
    common::backup_to(&s.url_for("shop"), &storage, KEY, "shop");

    let data = std::fs::metadata(Path::new(&s.instance).join("data")).expect("data directory");
    let Some(disk) = SmallDisk::mount_owned(&dir.path().join("small"), "24m", data.uid(), data.gid()) else { return };
    common::exec(&admin, &format!("create tablespace small location '{}'", disk.0.display())).await;
    common::exec(&admin, "drop database shop").await;
    common::exec(&admin, "create database shop tablespace small").await;
    common::exec(&s.url_for("shop"), "create table t (id int, pad text); insert into t values (1, 'the original')")
        .await;
    let before = fingerprint_of(&s.url_for("shop")).await;

    let junit = dir.path().join("restore.xml");
    let ran = restore(&s, &storage, &junit, &[]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(3), "{all}");
    assert!(
        all.contains("the server's disk is full (SQLSTATE 53100): the environment failed, not the backup"),
        "{all}"
    );
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    let cases = common::junit_cases(&junit);
    assert_eq!(common::status_of(&cases, "restore"), "error", "{cases:?}");
    assert_eq!(common::status_of(&cases, "rollback of drop: put_back"), "passed", "{cases:?}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, before, "the original is not back");
    assert_eq!(
        scalar(&admin, "select t.spcname from pg_database d join pg_tablespace t on t.oid = d.dattablespace where d.datname = 'shop'")
            .await,
        "small"
    );
    assert_eq!(
        scalar(&admin, "select count(*) from pg_database where datname like 'pgdrill\\_restoring\\_%'").await,
        "0"
    );
    s.stop().await;
    drop(disk);
}

/// Issue 35, case 7, for the operator restore: a pg_restore this machine lacks (the backup
/// was written by a pg_dump newer than any installed, and no image has it) was refused in
/// preflight as a failed check (exit 1), as if the backup were at fault. It is the
/// environment's (exit 3), still with nothing changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pg_restore_was_refused_as_a_failed_check() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (n int); insert into t values (1)").await;
    let (dir, storage) = tmp_backups();
    let backup = common::backup_to(&s.url(), &storage, KEY, "shop");
    let manifest = pgdrill::testkit::backup::layout::manifest_path(&backup);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    m["pg_dump_version"] = "pg_dump (PostgreSQL) 99.0".into();
    common::write_rebound_manifest(&backup, m, KEY);
    let before = fingerprint_of(&s.url()).await;

    let junit = dir.path().join("restore.xml");
    let ran = restore(&s, &storage, &junit, &[]).env("PGDRILL_DOCKER_IMAGE", "pgdrill/no-such-image:{major}").output();
    let all = ran.all();
    assert_eq!(ran.code, Some(3), "{all}");
    assert!(all.contains("the backup was written by pg_dump (PostgreSQL) 99.0") && all.contains("pg_restore"), "{all}");
    assert!(all.contains("nothing was changed"), "{all}");
    assert_eq!(common::status_of(&common::junit_cases(&junit), "preflight"), "error");
    assert!(common::snapshots(&storage).is_empty(), "a snapshot was taken");
    assert_eq!(fingerprint_of(&s.url()).await, before);
    s.stop().await;
}

/// `pg_dumpall --globals-only` and `pg_dump --create` of `shop`, run by PostgreSQL 17's own
/// tools inside the server's container (this machine's are 15): what must be byte-identical.
fn dumps_in_container(s: &Ephemeral) -> (String, String) {
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new("docker")
            .args(["exec", "-e", &format!("PGPASSWORD={}", s.password), &s.instance, tool])
            .args(["-h", "127.0.0.1", "-p", "5432", "-U", &s.user])
            .args(args)
            .output()
            .expect("docker exec");
        assert!(out.status.success(), "{tool}: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    // A fixed \restrict key where the tools draw a random one per run (`--help` is read only
    // as the first argument).
    let help = std::process::Command::new("docker")
        .args(["exec", &s.instance, "pg_dump", "--help"])
        .output()
        .map(|o| common::text(&o.stdout))
        .unwrap_or_default();
    let key: &[&str] = if help.contains("--restrict-key") { &["--restrict-key=pgdrilltest"] } else { &[] };
    let globals = run("pg_dumpall", &[&["--globals-only", "-l", "postgres"], key].concat());
    let database = run("pg_dump", &[&["--create", "-d", "shop"], key].concat());
    (globals, database)
}

/// Issue 34: the operator restore was tested on PostgreSQL 15 only. On 17 (its Docker image,
/// its own pg_dump and pg_restore from it): a restore of `shop` (an owner, a connection
/// limit, a comment, a setting, grants) and then a restore whose smoke check fails and rolls
/// back each leave `pg_dumpall --globals-only` and `pg_dump --create` byte-identical to before.
#[tokio::test(flavor = "multi_thread")]
async fn an_operator_restore_on_17_and_its_rollback_leave_the_database_byte_identical() {
    let Some(s) = common::docker_server(17, "postgres").await else { return };
    let admin = s.url_for("postgres");
    common::exec(&admin, "create role shop_owner login; create role shop_reader").await;
    for sql in [
        "create database shop owner shop_owner connection limit 7",
        "comment on database shop is 'kept across the recreate'",
        "alter database shop set work_mem = '3MB'",
        "revoke all on database shop from public",
        "grant connect on database shop to shop_reader",
    ] {
        common::exec(&admin, sql).await;
    }
    common::exec(
        &s.url_for("shop"),
        "create table words (w text primary key); insert into words values ('b'), ('B'), ('a'), ('A');
         alter table words owner to shop_owner; grant select on words to shop_reader",
    )
    .await;
    let (dir, storage) = tmp_backups();
    let images = [("PGDRILL_DOCKER_IMAGE", "pgdrill/postgres-local:{major}")];
    common::backup_to_with_env(&s.url_for("shop"), &storage, KEY, "shop", &images);
    let before = dumps_in_container(&s);

    let ran = restore(&s, &storage, &dir.path().join("restore.xml"), &[]).env(images[0].0, images[0].1).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(ran.all().contains("PostgreSQL 17"), "{}", ran.all());
    assert!(
        dumps_in_container(&s) == before,
        "pg_dumpall --globals-only or pg_dump --create differs after the restore"
    );

    let ran = restore(&s, &storage, &dir.path().join("rollback.xml"), &["smoke_sql=select 0"])
        .env(images[0].0, images[0].1)
        .output();
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert!(ran.all().contains("was rolled back to the safety snapshot"), "{}", ran.all());
    assert!(
        dumps_in_container(&s) == before,
        "pg_dumpall --globals-only or pg_dump --create differs after the rollback"
    );
    assert_eq!(
        scalar(&admin, "select count(*) from pg_database where datname like 'pgdrill\\_restoring\\_%'").await,
        "0"
    );
    s.stop().await;
}
