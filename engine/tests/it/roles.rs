//! Disaster recovery the application can use (issue 43): every backup carries the roles,
//! memberships and settings its database depends on; a restore that recreates them first
//! keeps owners and grants; the fingerprint names a lost grant, a changed owner and a
//! removed membership; the disaster-recovery drill passes only when the application's own
//! role can read and write. Real servers: PostgreSQL 15 (native) and 17 (Docker image).

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::{made_dir, require, root, text, Run};
use pgdrill::testkit::archive::{Codec, KeySource};
use pgdrill::testkit::backup::{self, Format, Manifest};
use pgdrill::testkit::pg::ephemeral::Ephemeral;

const KEY: &str = "roles-test passphrase";
const APP_PASSWORD: &str = "app secret 'quoted'";

/// erp.sql at scale 1, then roles.sql, then the application's password.
async fn load(url: &str) {
    let erp = std::fs::read_to_string(root().join("fixtures/sql/erp.sql")).expect("erp.sql").replace(":scale", "1");
    let roles = std::fs::read_to_string(root().join("fixtures/sql/roles.sql")).expect("roles.sql");
    common::exec(url, &erp).await;
    common::exec(url, &roles).await;
    common::exec(url, &format!("alter role erp_app password '{}'", APP_PASSWORD.replace('\'', "''"))).await;
}

/// A backup of `url` with `key` (None: unencrypted), and what it warned of (the step that
/// asks for it warns of each: `warning: ...` in its log, a warning in the reports).
async fn backup_of(url: &str, storage: &Path, key: Option<&str>) -> (PathBuf, Manifest, Vec<String>) {
    let created =
        backup::create(common::create_options(url, storage, Format::Custom, Codec::Zstd, key), &|_: String| {})
            .await
            .expect("backup");
    (created.path, created.manifest, created.warnings)
}

/// `pgdrill run backup` of the database `erp` at `url` into `storage`: a server in a
/// container is dumped with its major's tools.
fn backup_run(url: &str, storage: &Path) -> PathBuf {
    common::backup_to_with_env(
        url,
        storage,
        KEY,
        "erp",
        &[(pgdrill::testkit::pg::docker::IMAGE_ENV, "pgdrill/postgres-local:{major}")],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_keeps_the_roles_grants_and_settings_its_database_depends_on() {
    let Some(src) = common::native_server("erp").await else { return };
    load(&src.url()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let (path, m, _) = backup_of(&src.url(), &dir.path().join("enc"), Some(KEY)).await;
    let (plain_path, plain, warned) = backup_of(&src.url(), &dir.path().join("plain"), None).await;
    src.stop().await;

    let g = m.globals.as_ref().expect("the manifest has the globals");
    let role = |n: &str| g.roles.iter().find(|r| r.name == n).unwrap_or_else(|| panic!("role {n} in {:?}", g.roles));
    for n in ["erp_owner", "erp_app", "erp_readonly", "erp reader"] {
        role(n);
    }
    assert!(role("erp_app").login && role("erp_app").connection_limit == 20, "{:?}", role("erp_app"));
    assert!(!role("erp_owner").login);
    assert!(role("postgres").bootstrap && role("postgres").superuser);
    assert!(
        g.memberships.iter().any(|m| m.role == "erp_readonly" && m.member == "erp reader" && !m.admin),
        "the read-only role through membership: {:?}",
        g.memberships
    );
    let setting =
        |r: &str, n: &str| g.role_settings.iter().find(|s| s.role == r && s.name == n).map(|s| s.value.clone());
    assert_eq!(setting("erp_app", "statement_timeout").as_deref(), Some("30s"));
    assert_eq!(setting("erp_app", "search_path").as_deref(), Some("erp, public"));
    assert_eq!(setting("erp reader", "default_transaction_read_only").as_deref(), Some("on"));
    let db = &g.database.settings.settings;
    assert!(db.iter().any(|s| s.role == "erp_app" && s.name == "work_mem" && s.value == "8MB"), "{db:?}");
    assert!(db.iter().any(|s| s.role.is_empty() && s.name == "application_name" && s.value == "erp"), "{db:?}");
    assert_eq!(g.database.owner, "postgres");
    assert!(g.tablespaces.iter().any(|t| t.name == "pg_default"), "{:?}", g.tablespaces);

    // Column-level grants and default privileges are in the fingerprint, to be compared.
    let fp = m.fingerprint.as_ref().expect("fingerprint");
    let lines = |k: &str| fp.schema.get(k).cloned().unwrap_or_default();
    assert!(
        lines("privileges").iter().any(|l| l == "column erp.users.full_name erp_app=SELECT"),
        "{:?}",
        lines("privileges")
    );
    assert!(lines("privileges").iter().any(|l| l.starts_with("relation erp.orders ") && l.contains("erp_app=INSERT")));
    assert!(lines("ownership").contains(&"relation erp.orders erp_owner".to_string()), "{:?}", lines("ownership"));
    assert!(
        lines("default_privileges")
            .iter()
            .any(|l| l.starts_with("for erp_owner in erp on r: ") && l.contains("erp_readonly=SELECT")),
        "{:?}",
        lines("default_privileges")
    );
    assert!(lines("memberships").iter().any(|l| l == "\"erp reader\" in erp_readonly admin=f"));

    // Encrypted: the verifiers are kept, sealed; nothing of them is readable in the manifest.
    let text_of =
        |p: &Path| std::fs::read_to_string(pgdrill::testkit::backup::layout::manifest_path(p)).expect("manifest");
    let sealed = g.verifiers.as_deref().expect("sealed verifiers in an encrypted backup");
    assert!(!text_of(&path).contains("SCRAM-SHA-256"), "a verifier in the clear");
    let k = KeySource::from_secret(KEY).derive_for(m.kdf.as_ref().expect("kdf")).expect("key");
    let open: std::collections::BTreeMap<String, String> =
        serde_json::from_slice(&k.unseal(pgdrill::testkit::pg::globals::VERIFIERS, sealed).expect("unseal"))
            .expect("json");
    assert!(open.get("erp_app").is_some_and(|v| v.starts_with("SCRAM-SHA-256$")), "{open:?}");
    let mut tampered = sealed.to_string();
    tampered.replace_range(30..32, if &sealed[30..32] == "00" { "01" } else { "00" });
    assert!(k.unseal(pgdrill::testkit::pg::globals::VERIFIERS, &tampered).is_err(), "a changed seal must not open");

    // Unencrypted: roles kept, verifiers left out, with the warning.
    let pg = plain.globals.as_ref().expect("globals in an unencrypted backup too");
    assert_eq!(pg.roles.len(), g.roles.len());
    assert!(pg.verifiers.is_none());
    assert!(!text_of(&plain_path).contains("SCRAM-SHA-256"), "a verifier in an unencrypted manifest");
    assert!(pg.verifiers_left_out.as_deref().is_some_and(|w| w.contains("not encrypted")), "{pg:?}");
    assert!(
        warned.iter().any(|l| l.starts_with("the password verifiers of") && l.contains("not encrypted")),
        "{warned:?}"
    );
}

/// Restore the backup at `path` with its roles into a new database `db` of `scratch`,
/// change it with `mutate`, and compare ownership and privileges: exit code and output.
fn verify_roles(path: &Path, scratch: &Ephemeral, db: &str, mutate: &str) -> (Option<i32>, String) {
    let out = Run::new("fixtures/runbooks/verify-roles.yaml")
        .var("backup", path.display())
        .var("url", scratch.url_for(db))
        .var("mutate", mutate)
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env(pgdrill::testkit::pg::docker::IMAGE_ENV, "pgdrill/postgres-local:{major}")
        .output()
        .expect("verify-roles runs");
    (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

async fn deliberate_changes_are_named(src: Ephemeral, scratch: Ephemeral) {
    load(&src.url()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = backup_run(&src.url(), dir.path());
    // PostgreSQL 16 made inherit and set options of each membership: kept where they exist.
    let manifest: Manifest = serde_json::from_slice(
        &std::fs::read(pgdrill::testkit::backup::layout::manifest_path(&path)).expect("manifest"),
    )
    .expect("json");
    let m = manifest.globals.expect("globals").memberships;
    let reader = m.iter().find(|m| m.member == "erp reader" && m.role == "erp_readonly").expect("membership");
    if src.major >= 16 {
        assert_eq!((reader.inherit, reader.set), (Some(true), Some(true)), "{m:?}");
    } else {
        assert_eq!((reader.inherit, reader.set), (None, None), "{m:?}");
    }
    src.stop().await;
    let admin = pgdrill::testkit::pg::connect(&scratch.url_for("postgres")).await.expect("connect");
    let fresh = |db: &str| format!("create database {db}");

    admin.batch_execute(&fresh("unchanged")).await.expect("create");
    let (code, all) = verify_roles(&path, &scratch, "unchanged", "");
    assert_eq!(code, Some(0), "a faithful restore with its roles: {all}");
    // The application's role came back with its password, settings and grants.
    let app = pgdrill::testkit::pg::server_url("erp_app", APP_PASSWORD, &scratch.host, scratch.port, "unchanged");
    assert_eq!(common::scalar(&app, "select count(*) > 0 from erp.orders").await, "true");
    assert_eq!(common::scalar(&app, "current_setting('statement_timeout')").await, "30s");
    assert_eq!(common::scalar(&app, "current_setting('work_mem')").await, "8MB");

    // Each change on its own restored copy; the membership is the cluster's, so it goes last.
    let mut cases: Vec<(&str, &str, &str)> = vec![
        ("revoked_grant", "revoke insert on erp.orders from erp_app", "privileges: missing relation erp.orders"),
        (
            "revoked_column_grant",
            "revoke select (full_name) on erp.users from erp_app",
            "privileges: missing column erp.users.full_name erp_app=SELECT",
        ),
        (
            "changed_owner",
            "alter table erp.orders owner to postgres",
            "ownership: missing relation erp.orders erp_owner",
        ),
        (
            "default_privileges_dropped",
            "alter default privileges for role erp_owner in schema erp revoke select on tables from erp_readonly",
            "default_privileges: missing for erp_owner in erp on r",
        ),
    ];
    if scratch.major >= 16 {
        cases.push((
            "membership_no_longer_inherits",
            "grant erp_readonly to \"erp reader\" with inherit false",
            "memberships: missing \"erp reader\" in erp_readonly admin=f inherit=true set=true",
        ));
    }
    if scratch.major >= 17 {
        // PostgreSQL 17's MAINTAIN, compared within one major (an owner has it by default).
        cases.push((
            "revoked_maintain",
            "revoke maintain on erp.orders from erp_owner",
            "maintain: missing relation erp.orders",
        ));
    }
    // The database's own setting (roles.sql: application_name), applied after the restore.
    cases.push((
        "removed_database_setting",
        "alter database m_removed_database_setting reset application_name",
        "database_settings: missing application_name=erp",
    ));
    cases.extend([(
        "removed_membership",
        "revoke erp_readonly from \"erp reader\"",
        "memberships: missing \"erp reader\" in erp_readonly admin=f",
    )]);
    for (name, sql, expected) in cases {
        let db = format!("m_{name}");
        admin.batch_execute(&fresh(&db)).await.expect("create");
        let (code, all) = verify_roles(&path, &scratch, &db, sql);
        assert_eq!(code, Some(1), "{name} ({sql}) was not caught: {all}");
        assert!(all.contains(expected), "{name} ({sql}): expected `{expected}` in\n{all}");
    }
    scratch.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_revoked_grant_a_changed_owner_and_a_removed_membership_on_15() {
    let Some(src) = common::native_server("erp").await else { return };
    let Some(scratch) = common::native_server("postgres").await else { return };
    deliberate_changes_are_named(src, scratch).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_names_a_revoked_grant_a_changed_owner_and_a_removed_membership_on_17() {
    let Some(src) = common::docker_server(17, "erp").await else { return };
    let Some(scratch) = common::docker_server(17, "postgres").await else { return };
    deliberate_changes_are_named(src, scratch).await;
}

/// `pgdrill run verify` of `backup` with `vars`, its run.json written into `report`.
fn verify_run(backup: &Path, report: &Path, vars: &[&str]) -> (Option<i32>, String, String) {
    let ran = Run::new("verify")
        .var("backup", backup.display())
        .vars(&["provider=native", "force=true"])
        .report(report)
        .vars(vars)
        .key(KEY)
        .output();
    let json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    (ran.code, ran.all(), json)
}

/// Server `erp` loaded, with `default_transaction_read_only = on` set on the database (kept in
/// the backup), and a backup of it in a new folder: the server, the folder and the backup.
pub(crate) async fn read_only_erp_backed_up() -> Option<(Ephemeral, tempfile::TempDir, PathBuf)> {
    let src = common::native_server("erp").await?;
    load(&src.url()).await;
    common::exec(&src.url(), "alter database erp set default_transaction_read_only = on").await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = backup_run(&src.url(), dir.path());
    Some((src, dir, path))
}

/// [`read_only_erp_backed_up`] with its server stopped, and a rebuilt server (a new one with
/// an empty `erp`) to restore it onto: the backup's folder and the rebuilt server.
pub(crate) async fn erp_backed_up_and_a_rebuilt_server() -> Option<(tempfile::TempDir, PathBuf, Ephemeral)> {
    let (src, dir, path) = read_only_erp_backed_up().await?;
    src.stop().await;
    let target = common::native_server("erp").await?;
    Some((dir, path, target))
}

/// The roles named `erp...` on the server at `url`, sorted, comma-separated.
pub(crate) async fn erp_roles(url: &str) -> String {
    common::scalar(
        url,
        "select coalesce(string_agg(rolname, ',' order by rolname), '') from pg_roles where rolname like 'erp%'",
    )
    .await
}

/// What a restore of [`read_only_erp_backed_up`] that had its roles keeps in `erp` at `url`:
/// `orders` owned by `erp_owner`, and `erp_app` granted `full_name` of `erp.users`, not `email`.
async fn owners_and_grants_kept(url: &str) {
    assert_eq!(common::scalar(url, "select tableowner from pg_tables where tablename = 'orders'").await, "erp_owner");
    let column = |c: &str| format!("has_column_privilege('erp_app', 'erp.users', '{c}', 'select')");
    assert_eq!(common::scalar(url, &column("email")).await, "false");
    assert_eq!(common::scalar(url, &column("full_name")).await, "true");
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_keeps_owners_by_default_and_calls_no_owner_the_weaker_proof() {
    // Kept in the backup, and applied on verify's throwaway server only after the checks
    // that open sessions of their own (read-only, amcheck could not create its extension),
    // then compared by `schema`.
    let Some((src, dir, path)) = read_only_erp_backed_up().await else { return };
    src.stop().await;

    let (code, all, json) = verify_run(&path, &dir.path().join("owned"), &[]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("passed       roles [globals.restore]"), "{all}");
    assert!(all.contains("passed       database_settings [globals.restore]"), "{all}");
    assert!(json.contains("5 roles, 1 membership"), "the roles created first: {json}");
    assert!(
        json.contains("ownership, privileges (tables, columns, schemas, sequences, routines), default privileges, roles, memberships and role settings match the source"),
        "{json}"
    );

    let (code, all, json) = verify_run(&path, &dir.path().join("no_owner"), &["no_owner=true"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("skipped      roles"), "{all}");
    assert!(all.contains("skipped      database_settings"), "{all}");
    assert!(json.contains("NOT compared (restored without owners and grants, no_owner): a weaker proof"), "{json}");
}

/// The shipped disaster-recovery drill with the source server destroyed: `vars` added.
fn dr_drill(report: &Path, vars: &[&str]) -> (Option<i32>, String) {
    let ran = Run::new("disaster-recovery")
        .arg("--quiet")
        .arg("--report")
        .arg(report)
        .vars(&["provider=native", "disaster=destroy_server", "scale=1", "keep_writing=0s", "jobs=1"])
        .vars(vars)
        .output();
    (ran.code, ran.all())
}

#[test]
fn the_disaster_recovery_drill_passes_only_when_the_application_role_reads_and_writes() {
    if !require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let report = dir.path().join("ok");
    let (code, all) = dr_drill(&report, &[]);
    assert_eq!(code, Some(0), "{all}");
    let run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("run.json")).expect("run.json")).expect("json");
    let steps = run["suites"][0]["steps"].as_array().expect("steps");
    let step = |id: &str| steps.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("no step {id}"));
    for id in ["create_db", "recreate_roles", "restore", "verify", "app_read", "app_write"] {
        assert_eq!(step(id)["outcome"], "passed", "{id}: {}", step(id));
    }
    // The recovered database is created as the backup's source was (its manifest's
    // database_properties), not with the throwaway server's defaults.
    assert!(
        step("create_db")["log"].to_string().contains("created as the backup's source database"),
        "{}",
        step("create_db")
    );
    assert!(step("recreate_roles")["outputs"]["created"].as_array().is_some_and(|c| c.iter().any(|r| r == "erp_app")));
    assert_eq!(step("recreate_roles")["outputs"]["passwords"], 1, "the application's password came back");
    let phases = &step("rto")["outputs"]["phases"];
    for phase in ["provision", "fetch_decrypt_decompress", "roles", "restore", "verify", "first_app_query"] {
        assert!(phases[phase].is_number(), "phase {phase} in {phases}");
    }

    // The application's INSERT grant lost on the source: every superuser check still
    // passes, and the drill fails on the application's own write.
    let (code, all) = dr_drill(
        &dir.path().join("no_insert"),
        &["app_grants=grant usage on schema erp to erp_app; grant select, update on all tables in schema erp to erp_app"],
    );
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("app_write") && all.contains("permission denied for table orders"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
/// Its content is unproven too (no manifest, no live source): the run accepts that
/// explicitly, so the roles verdict is what this test reads.
async fn another_tools_dump_is_unproven_for_roles_unless_a_globals_file_is_beside_it() {
    let Some(src) = common::native_server("erp").await else { return };
    load(&src.url()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let folder = made_dir(dir.path().join("foreign"));
    // Named as of now: a fixed date in the name aged past verify's default max_age a day
    // after this test was written, and the run failed on freshness instead of roles.
    let t = time::OffsetDateTime::now_utc();
    let stamp = common::dump_stamp(t);
    let dump = folder.join(format!("erp_{stamp}.dump"));
    let tool = |name: &str, args: &[&str]| {
        let out = std::process::Command::new(format!("/usr/lib/postgresql/15/bin/{name}"))
            .args(["-h", &src.host, "-p", &src.port.to_string(), "-U", &src.user])
            .args(args)
            .env("PGPASSWORD", &src.password)
            .output()
            .expect("the PostgreSQL 15 client tools");
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
    };
    tool("pg_dump", &["-Fc", "-d", "erp", "-f", dump.to_str().unwrap_or_default()]);

    let (code, all, json) = verify_run(&dump, &dir.path().join("alone"), &["accept_unproven=true"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("skipped      roles"), "{all}");
    assert!(json.contains("roles, ownership and privileges are unproven for it"), "{json}");

    // The classic runbooks' pattern: the cluster's globals beside the per-database dumps.
    tool("pg_dumpall", &["--globals-only", "-f", folder.join("globals.sql").to_str().unwrap_or_default()]);
    src.stop().await;
    let (code, all, json) = verify_run(&dump, &dir.path().join("with_globals"), &["accept_unproven=true"]);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("passed       roles [globals.restore]"), "{all}");
    assert!(all.contains("passed       restore"), "{all}");
    let run: serde_json::Value = serde_json::from_str(&json).expect("run.json");
    let roles = run["suites"][0]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "roles"))
        .map(|s| s["outputs"]["created"].clone())
        .unwrap_or_default();
    for r in ["erp_app", "erp_owner", "erp reader"] {
        assert!(roles.as_array().is_some_and(|c| c.iter().any(|x| x == r)), "{r} in {roles}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restore_onto_a_rebuilt_server_lists_missing_roles_and_creates_them_only_when_confirmed() {
    // Applied after the restore, never before it (it would stop pg_restore).
    // The rebuilt server: the database is there again, empty; one role was recreated by
    // hand, differently (no login).
    let Some((dir, path, target)) = erp_backed_up_and_a_rebuilt_server().await else { return };
    common::exec(&target.url_for("postgres"), "create role erp_app nologin").await;
    let run = |report: &str, yes: bool| {
        let mut run = Run::new("fixtures/runbooks/restore-rebuilt.yaml")
            .var("backup", path.display())
            .var("url", target.url())
            .report(dir.path().join(report));
        if yes {
            run = run.arg("--yes");
        }
        let ran = run.key(KEY).output();
        let json = std::fs::read_to_string(dir.path().join(report).join("run.json")).unwrap_or_default();
        (ran.code, ran.all(), json)
    };

    let (code, all, json) = run("refused", false);
    assert_eq!(code, Some(2), "no confirmation, nothing changes: {all}");
    assert!(all.contains("create the roles erp reader, erp_owner, erp_readonly from the backup (existing roles are left as they are: 4 differences"), "{all}");
    assert!(json.contains("role \\\"erp_app\\\": login is false here, true in the backup"), "{json}");
    assert_eq!(erp_roles(&target.url()).await, "erp_app", "nothing created without confirmation");

    let (code, all, _) = run("confirmed", true);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(erp_roles(&target.url()).await, "erp reader,erp_app,erp_owner,erp_readonly");
    assert_eq!(
        common::scalar(&target.url(), "select rolcanlogin from pg_roles where rolname = 'erp_app'").await,
        "false",
        "an existing role is never altered"
    );
    owners_and_grants_kept(&target.url()).await;
    assert_eq!(
        common::scalar(
            &target.url(),
            "select array_to_string(setconfig, ',') from pg_db_role_setting where setrole = 0 and setdatabase = (select oid from pg_database where datname = 'erp')"
        )
        .await,
        "application_name=erp,default_transaction_read_only=on",
        "the database's own settings, after the restore"
    );
    target.stop().await;
}

/// Issue 43, case 4: the shipped `restore` runbook restored onto a rebuilt server that lacks
/// the backup's roles without a word about them (pg_restore then failed on every owner and
/// grant, or the operator had to know `no_owner`). Its preflight now lists the roles the
/// restore needs; a run confirmed by `--yes` stops before changing anything unless
/// `create_roles=true`, and with it creates them (existing roles never altered), keeping
/// the target's own database owner and settings.
#[tokio::test(flavor = "multi_thread")]
async fn the_shipped_restore_onto_a_rebuilt_server_did_not_create_or_name_the_missing_roles() {
    let Some((dir, _path, target)) = erp_backed_up_and_a_rebuilt_server().await else { return };
    common::exec(&target.url(), "create table before_restore(x int)").await;
    let run = |vars: &[&str]| {
        let ran = Run::new("restore")
            .arg("--yes")
            .var("database_url", target.url())
            .var("storage", dir.path().display())
            .vars(&["database=erp", "jobs=1"])
            .vars(vars)
            .key(KEY)
            .output();
        (ran.code, ran.all())
    };
    let kept = || async {
        common::scalar(&target.url(), "select count(*) from pg_tables where tablename = 'before_restore'").await
    };

    // --yes alone: the roles are named, nothing is created, nothing dropped.
    let (code, all) = run(&[]);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("missing here: erp reader, erp_app, erp_owner, erp_readonly"),
        "the preflight names them: {all}"
    );
    assert!(
        all.contains("lacks the backup's roles \"erp reader\", \"erp_app\", \"erp_owner\", \"erp_readonly\", which its owners and grants name: nothing was changed"),
        "{all}"
    );
    assert!(all.contains("--var create_roles=true"), "the remedy: {all}");
    assert_eq!(erp_roles(&target.url()).await, "", "no role created");
    assert_eq!(kept().await, "1", "the target was not touched");

    // create_roles=false says so in its own words.
    let (code, all) = run(&["create_roles=false"]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("create_roles=false: create them by hand"), "{all}");
    assert_eq!(kept().await, "1", "the target was not touched");

    // create_roles=true: created, then the restore keeps owners and grants.
    let (code, all) = run(&["create_roles=true"]);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(erp_roles(&target.url()).await, "erp reader,erp_app,erp_owner,erp_readonly");
    assert_eq!(kept().await, "0", "restored");
    owners_and_grants_kept(&target.url()).await;
    // A second restore finds every role there: nothing to confirm, nothing refused.
    let (code, all) = run(&[]);
    assert_eq!(code, Some(0), "{all}");
    target.stop().await;
}
