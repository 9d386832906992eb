//! The operator restore onto a rebuilt server (issues 34 and 43, second round): preflight
//! itself names the roles the server lacks, a mistyped `create_roles` is refused before
//! any step runs, and the roles a restore created are dropped again when it rolls back,
//! never a role that was there before, leaving `pg_dumpall --globals-only` and
//! `pg_dump --create` byte-identical to before. Real servers: PostgreSQL 15 (native).

use std::path::Path;

use crate::common::{self, scalar, tmp_backups, Run};
use crate::roles::erp_roles;

const KEY: &str = "roles-test passphrase";

/// `pgdrill run restore --yes` of the backed-up `erp` from `storage` into `admin`'s server.
fn restore(admin: &str, storage: &Path, report: &Path, vars: &[&str]) -> Run {
    restore_of("erp", admin, storage, report, vars)
}

/// `pgdrill run restore --yes` of the latest backup of `database` in `storage`.
fn restore_of(database: &str, admin: &str, storage: &Path, report: &Path, vars: &[&str]) -> Run {
    Run::new("restore")
        .arg("--yes")
        .var("database_url", admin)
        .var("storage", storage.display())
        .var("database", database)
        .var("jobs", 1)
        .vars(vars)
        .key(KEY)
        .report(report)
}

/// `pg_dumpall --globals-only` and `pg_dump --create` of `database` (the system's tools):
/// what must be byte-identical after a rollback.
fn dumps(admin: &str, database: &str) -> (String, String) {
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).output().expect("dump tool runs");
        assert!(out.status.success(), "{tool}: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    // A fixed \restrict key: pg_dump draws a random one per run otherwise.
    let key = "--restrict-key=pgdrilltest";
    (run("pg_dumpall", &["--globals-only", key, "-d", admin]), run("pg_dump", &["--create", key, "-d", database]))
}

/// Fails naming the first line where the dumps differ (the whole dumps are long).
#[track_caller]
fn same(now: &(String, String), before: &(String, String), when: &str) {
    for (what, a, b) in [("pg_dumpall --globals-only", &now.0, &before.0), ("pg_dump --create", &now.1, &before.1)] {
        if a != b {
            let first = a.lines().zip(b.lines()).find(|(x, y)| x != y);
            panic!("{when}: {what} is not byte-identical to before; first difference (now, before): {first:?}");
        }
    }
}

/// Regression (issue 43, case 4): the roles a restore created on a rebuilt server stayed
/// after its rollback, `restore.preflight` did not name them (only a later dry run did),
/// and `--var create_roles=flase` acted as `ask`. Now preflight lists the missing roles in
/// its own outputs, a mistyped value exits 2 naming restore.yaml's line before any step
/// runs, and a restore whose smoke check fails drops exactly the roles it created: the role
/// that was there before stays, and the globals and the database dump are as before.
#[tokio::test(flavor = "multi_thread")]
async fn roles_a_rolled_back_restore_created_stayed_and_a_mistyped_create_roles_acted_as_ask() {
    let Some((dir, _path, target)) = crate::roles::erp_backed_up_and_a_rebuilt_server().await else { return };
    let (admin, erp) = (target.url_for("postgres"), target.url());
    // A rebuilt server that has one of the backup's roles already (made by hand, with
    // another attribute than the backup's): it is never dropped nor altered.
    common::exec(&admin, "create role erp_readonly login").await;
    common::exec(&erp, "create table before_restore(x int); insert into before_restore values (1)").await;
    let before = dumps(&admin, &erp);
    let storage = dir.path();

    // A mistyped value: exit 2 with the field's place in restore.yaml, nothing run.
    let ran = restore(&admin, storage, &dir.path().join("typo"), &["create_roles=flase"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(2), "{all}");
    // The variable's declared set refuses it before any step (the runbook's `values:`).
    assert!(all.contains("`flase` is not one of ask, true, false"), "{all}");
    assert!(all.contains("restore.yaml:") && all.contains("create_roles"), "names the place: {all}");
    assert!(!all.contains("preflight"), "no step was started: {all}");
    assert_eq!(erp_roles(&admin).await, "erp_readonly", "nothing created");

    // create_roles=false: restore.preflight itself refuses, naming the roles.
    let ran = restore(&admin, storage, &dir.path().join("false"), &["create_roles=false"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(1), "{all}");
    let json = ran.run_json();
    let pre = json.step("preflight");
    assert_eq!(pre.outcome, "failed", "{all}");
    let msg = pre.message.clone().unwrap_or_default();
    assert!(
        msg.contains("lacks the backup's roles \"erp reader\", \"erp_app\", \"erp_owner\"")
            && msg.contains("create_roles=false: create them by hand")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(erp_roles(&admin).await, "erp_readonly");

    // create_roles=true with a smoke check that fails: the roles are created, the restore
    // rolls back, and the roles it created go again.
    let ran =
        restore(&admin, storage, &dir.path().join("rollback"), &["create_roles=true", "smoke_sql=select 0"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(1), "{all}");
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    let json = ran.run_json();
    let pre = json.step("preflight");
    assert_eq!(pre.outcome, "passed", "{all}");
    assert_eq!(
        pre.outputs["missing_roles"],
        serde_json::json!(["erp reader", "erp_app", "erp_owner"]),
        "preflight's own list: {all}"
    );
    let lines = |v: &serde_json::Value| -> Vec<String> {
        let mut l: Vec<String> =
            v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect();
        l.sort();
        l
    };
    assert!(
        lines(&pre.outputs["differing_roles"])
            .contains(&"role \"erp_readonly\": login is true here, false in the backup".to_string()),
        "{}",
        pre.outputs["differing_roles"]
    );
    assert!(pre.log.iter().any(|l| l.contains("a rollback drops them again")), "{:?}", pre.log);
    assert_eq!(lines(&json.step("roles").outputs["created"]), ["erp reader", "erp_app", "erp_owner"], "{all}");
    let finish = json.step("finish");
    let dropped = finish.log.iter().find(|l| l.starts_with("dropped again the roles this restore created: "));
    assert!(
        dropped.is_some_and(|l| ["\"erp reader\"", "\"erp_app\"", "\"erp_owner\""].iter().all(|r| l.contains(r))),
        "{:?}",
        finish.log
    );
    assert_eq!(erp_roles(&admin).await, "erp_readonly", "only the role that was there before stays");
    assert_eq!(scalar(&admin, "select rolcanlogin::text from pg_roles where rolname = 'erp_readonly'").await, "true");
    assert_eq!(scalar(&erp, "select count(*) from before_restore").await, "1", "put back");
    assert!(dumps(&admin, &erp) == before, "pg_dumpall --globals-only and pg_dump --create differ after the rollback");

    // The same restore without the failing check keeps them: the restored database uses them.
    let ran = restore(&admin, storage, &dir.path().join("restored"), &["create_roles=true"]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(erp_roles(&admin).await, "erp reader,erp_app,erp_owner,erp_readonly");
    target.stop().await;
}

/// Issue 34: "a restore followed by a rollback leaves `pg_dumpall --globals-only` plus
/// `pg_dump --create` of the database byte-identical to before on every database the tests
/// create". Only the ICU database in its own tablespace was checked so; this loops over the
/// other shapes the restore tests make (server defaults; an owner with a connection limit,
/// comment, settings, a role's setting in it and database grants; LATIN1 with the C locale;
/// an ICU locale; a restore into a new name that rolls back) and checks each after a restore
/// and after a rollback. Found on the way: a restore into a new name that rolled back left
/// its journal at `dropping`, and every later restore of that name was refused until a
/// `recover=rollback`; the rollback's drop of the database it created now closes it. A database that refuses connections, or a template, is refused in
/// preflight with nothing changed (pg_dump could not snapshot the one, DROP refuses the
/// other).
#[tokio::test(flavor = "multi_thread")]
async fn every_database_shape_is_byte_identical_after_a_restore_and_after_its_rollback() {
    let Some(s) = common::native_server("postgres").await else { return };
    let admin = s.url_for("postgres");
    let (dir, storage) = tmp_backups();
    common::exec(&admin, "create role shop_owner login; create role shop_reader").await;
    // One statement each: CREATE DATABASE runs outside a transaction block.
    let shapes: [(&str, &[&str]); 4] = [
        ("plain", &["create database plain"]),
        (
            "owned",
            &[
                "create database owned owner shop_owner connection limit 7",
                "comment on database owned is 'kept across the recreate'",
                "alter database owned set work_mem = '3MB'",
                "alter role shop_reader in database owned set search_path = 'app, public'",
                "revoke all on database owned from public",
                "grant connect, temporary on database owned to shop_reader",
            ],
        ),
        ("latin", &["create database latin template template0 encoding 'LATIN1' lc_collate 'C' lc_ctype 'C'"]),
        ("icu", &["create database icu template template0 encoding 'UTF8' locale_provider icu icu_locale 'de-DE'"]),
    ];
    for (db, statements) in shapes {
        for sql in statements {
            common::exec(&admin, sql).await;
        }
        let url = s.url_for(db);
        common::exec(&url, "create table words (w text); insert into words values ('b'), ('B'), ('a'), ('A')").await;
        common::backup_to(&url, &storage, KEY, db);
        let before = dumps(&admin, &url);
        let ran = restore_of(db, &admin, &storage, &dir.path().join(format!("{db}-restore")), &[]).output();
        assert_eq!(ran.code, Some(0), "{db}: {}", ran.all());
        same(&dumps(&admin, &url), &before, &format!("{db}, after the restore"));
        let ran = restore_of(db, &admin, &storage, &dir.path().join(format!("{db}-rollback")), &["smoke_sql=select 0"])
            .output();
        assert_eq!(ran.code, Some(1), "{db}: {}", ran.all());
        assert!(ran.all().contains("was rolled back to the safety snapshot"), "{db}: {}", ran.all());
        same(&dumps(&admin, &url), &before, &format!("{db}, after the rollback"));
    }

    // Into a new name that rolls back: the half-made database goes, the globals are as
    // before, and the journal is closed (the next restore is not refused).
    let globals = dumps(&admin, &s.url_for("plain")).0;
    let ran = restore_of(
        "plain",
        &admin,
        &storage,
        &dir.path().join("new-rollback"),
        &["target=plain_copy", "smoke_sql=select 0"],
    )
    .output();
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    assert_eq!(
        scalar(&admin, "select count(*) from pg_database where datname = 'plain_copy'").await,
        "0",
        "{}",
        ran.all()
    );
    assert!(dumps(&admin, &s.url_for("plain")).0 == globals, "pg_dumpall --globals-only differs after the rollback");
    let ran = restore_of("plain", &admin, &storage, &dir.path().join("new-again"), &["target=plain_copy"]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());

    // Refused in preflight, nothing changed: a database that refuses connections, a template.
    common::exec(&admin, "alter database latin allow_connections false").await;
    common::exec(&admin, "alter database icu is_template true").await;
    let row = "select string_agg(format('%s %s %s %s', oid, datname, datistemplate, datallowconn), ', ' order by datname) from pg_database where datname in ('latin', 'icu')";
    let rows = scalar(&admin, row).await;
    for (db, why) in [("latin", "does not allow connections (datallowconn false)"), ("icu", "is a template database")] {
        let ran = restore_of(db, &admin, &storage, &dir.path().join(format!("{db}-refused")), &[]).output();
        let all = ran.all();
        assert_eq!(ran.code, Some(1), "{db}: {all}");
        assert!(all.contains(why) && all.contains("nothing was changed"), "{db}: {all}");
    }
    assert_eq!(scalar(&admin, row).await, rows, "a refused database was changed");
    s.stop().await;
}

/// Regression (issue 34, case 4, the drills' half): the upgrade drill restored an ICU
/// database into one its throwaway server created with the server's default locale, so
/// sorting was rehearsed as it would not be, and its checks passed. It now creates the
/// database from the manifest's `database_properties`: the drill's own smoke check, run on
/// the upgraded copy, finds the source's locale provider and its ORDER BY, on 15 (native)
/// and on 17 (its Docker image).
#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_drill_rehearsed_an_icu_database_in_the_servers_default_locale() {
    let Some(s) = common::native_server("postgres").await else { return };
    let admin = s.url_for("postgres");
    common::exec(
        &admin,
        "create database app template template0 encoding 'UTF8' locale_provider icu icu_locale 'de-DE'",
    )
    .await;
    let app = s.url_for("app");
    common::exec(&app, "create table words (w text); insert into words values ('b'), ('B'), ('a'), ('A')").await;
    let dir = tempfile::tempdir().expect("tmp");
    // The upgraded copy is created with the ICU provider and sorts the ICU way (on 17 the
    // locale's column is datlocale, so the provider and the order are what is asked).
    let smoke = "select count(*) from pg_database where datname = current_database() and datlocprovider = 'i' \
                 and (select string_agg(w, ',' order by w) from words) = 'a,A,b,B'";
    let upgrade = |version: u32, provider: &str| {
        let report = dir.path().join(format!("report-{version}"));
        let ran = Run::new("upgrade")
            .arg("--quiet")
            .report(&report)
            .var("database_url", &app)
            .var("provider", provider)
            .var("version", version)
            .var("jobs", 1)
            .var("smoke_sql", smoke)
            .var("smoke_expect", "== 1")
            .env("PGDRILL_DOCKER_IMAGE", "pgdrill/postgres-local:{major}")
            .output();
        let all = ran.all();
        assert_eq!(ran.code, Some(0), "to {version}: {all}");
        let json = ran.run_json();
        assert_eq!(json.step("target").outputs["major"], version, "to {version}: {all}");
        assert_eq!(json.step("smoke").outcome, "passed", "to {version}: {all}");
        let created = json.step("create_db");
        assert!(
            created.log.iter().any(|l| l.contains("created as the backup's source database") && l.contains("de-DE")),
            "to {version}: {:?}",
            created.log
        );
    };
    upgrade(15, "native");
    // PostgreSQL 17 only in its image: the same rehearsal onto the next major.
    if common::docker_ready("pgdrill/postgres-local:17") {
        upgrade(17, "docker");
    }
    s.stop().await;
}

/// Regression (issue 43, case 4, a crash): a restore killed (SIGKILL) after it created the
/// backup's roles on a rebuilt server, while its `stop_command` ran and before anything was
/// dropped, left those roles behind with no record: its journal was still `open`, which no
/// later run counted as unfinished. Now the journal names them; the next restore refuses
/// and points to `recover=reopen`, which drops exactly those roles (the one that was there
/// before stays), closes the journal and leaves the globals as before.
#[tokio::test(flavor = "multi_thread")]
async fn roles_a_killed_restore_had_created_stayed_with_no_record() {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let Some((dir, _path, target)) = crate::roles::erp_backed_up_and_a_rebuilt_server().await else { return };
    let (admin, erp) = (target.url_for("postgres"), target.url());
    common::exec(&admin, "create role erp_readonly nologin").await;
    let before = dumps(&admin, &erp);
    let storage = dir.path();
    let (marker, pidfile) = (dir.path().join("stopping"), dir.path().join("stop.pid"));
    let stop = format!(
        "echo $$ > {}; touch {}; exec sleep 60",
        pgdrill::testkit::util::shell_quote(&pidfile.display().to_string()),
        pgdrill::testkit::util::shell_quote(&marker.display().to_string())
    );
    let mut child =
        restore(&admin, storage, &dir.path().join("killed"), &["create_roles=true", &format!("stop_command={stop}")])
            .command()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("restore starts");
    let stopping = common::wait_for(std::time::Duration::from_secs(120), || marker.exists().then_some(()));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill -9");
    let _ = child.wait();
    // The stop_command's sleep is the test's to end too.
    if let Some(pid) = std::fs::read_to_string(&pidfile).ok().and_then(|p| p.trim().parse::<i32>().ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    assert!(stopping.is_some(), "the restore never reached stop_command");
    assert_eq!(erp_roles(&admin).await, "erp reader,erp_app,erp_owner,erp_readonly", "created before the kill");

    // A new restore refuses and names the roles and the recovery that loses nothing.
    let ran = restore(&admin, storage, &dir.path().join("refused"), &["create_roles=true"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(1), "{all}");
    assert!(all.contains("--var recover=reopen") && all.contains("it created the roles"), "{all}");

    let ran = restore(&admin, storage, &dir.path().join("reopen"), &["recover=reopen"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(0), "{all}");
    assert!(all.contains("dropped again the roles this restore created"), "{all}");
    assert_eq!(erp_roles(&admin).await, "erp_readonly", "only the role that was there before stays");
    assert!(dumps(&admin, &erp) == before, "pg_dumpall --globals-only and pg_dump --create differ after the recovery");
    // Closed: a plain restore goes ahead.
    let ran = restore(&admin, storage, &dir.path().join("after"), &["create_roles=true"]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    target.stop().await;
}
