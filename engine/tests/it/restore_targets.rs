//! Operator restore (runbooks/restore.yaml) against targets that test what the restore may
//! assume about them, each on real PostgreSQL 15 servers with the real client tools:
//! hostile database names (names are data: a `dbname=... port=...` name restores into
//! itself, never into another server), a role without the rights to put the database back
//! (refused in preflight, nothing changed), database-level settings, grants and comments
//! (kept across drop and recreate), and health checks after the application restarted.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common;
use crate::common::{fingerprint_of, scalar, text, tmp_backups, Run};
use pgdrill::testkit::pg::ephemeral::Ephemeral;
use pgdrill::testkit::pg::fingerprint::Fingerprint;

const KEY: &str = "restore-targets passphrase";

/// A server with database `shop` (owner `app_owner`), backed up into `storage`.
async fn backed_up(storage: &Path) -> Option<(Ephemeral, PathBuf)> {
    common::shop_backed_up(storage, KEY, (300, 2000), "").await
}

/// `pgdrill run restore` of `shop`'s latest backup, with `--var` for every `k=v` in `extra`.
fn restore(url: &str, storage: &Path, extra: &[&str]) -> Output {
    Run::new("restore")
        .var("database_url", url)
        .var("storage", storage.display())
        .var("database", "shop")
        .arg("--yes")
        .vars(extra)
        .key(KEY)
        .raw()
}

fn manifest_fingerprint(backup: &Path) -> Fingerprint {
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{}.manifest.json", backup.display())).expect("manifest"),
    )
    .expect("json");
    serde_json::from_value(m["fingerprint"].clone()).expect("fingerprint")
}

/// A fingerprint without its cluster-level kinds (roles, memberships, role settings): those
/// describe the server's roles, which these tests change after the backup on purpose (a role
/// given CREATEDB, a role's setting in the database), while what is compared here is the
/// database the restore put back.
fn database_part(mut f: Fingerprint) -> Fingerprint {
    // The database's own settings are the live database's (the restore puts back what the
    // journal captured, which may postdate the backup): `settings_of` compares them.
    for kind in ["roles", "memberships", "role_settings", "database_settings"] {
        f.schema.remove(kind);
    }
    f.schema_hash.clear();
    f
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Regression: a database named `dbname=victim port=N` reached pg_restore as `-d NAME`,
/// libpq expanded it into connection parameters, and the restore went into database
/// `victim` on the server at port N (with the operator's password). Now every name reaches
/// the tools as data: the restore lands in the database of that name, on the target server,
/// with one job and with two; the safety snapshot (pg_dump) and a backup of such a database
/// dump the database itself. Names with quotes, backslashes, spaces and emoji too.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_named_like_a_connection_string_restores_into_itself() {
    let (dir, storage) = tmp_backups();
    let Some((s, backup)) = backed_up(&storage).await else { return };
    let Some(victim_server) = common::native_server("victim").await else { return };
    common::exec(
        &victim_server.url_for("victim"),
        "create table precious (id int); insert into precious values (1), (2)",
    )
    .await;
    let victim_before = fingerprint_of(&victim_server.url_for("victim")).await;
    let expected = manifest_fingerprint(&backup);

    let hostile = format!("dbname=victim port={}", victim_server.port);
    // A role map restores through psql (pg_restore writes SQL, psql runs it).
    let psql = "role_map=app_owner=app_owner";
    let cases: Vec<(String, u32, &str)> = vec![
        (hostile.clone(), 1, ""),
        (hostile.clone(), 2, ""),
        (hostile.clone(), 1, psql),
        ("it's \"quoted\" \\ back".to_string(), 2, ""),
        ("spaced out 🐘 émoji".to_string(), 1, psql),
        ("postgres://victim/victim".to_string(), 2, ""),
    ];
    for (name, jobs, extra) in cases {
        // The target exists with other content, so the snapshot, drop and recreate run too.
        let admin = s.url_for("postgres");
        common::exec(&admin, &format!("drop database if exists {}", quote(&name))).await;
        common::exec(&admin, &format!("create database {} owner app_owner", quote(&name))).await;
        common::exec(&s.url_for(&name), "create table before_restore (x int); insert into before_restore values (7)")
            .await;
        let before = fingerprint_of(&s.url_for(&name)).await;

        let mut vars = vec![format!("target={name}"), format!("jobs={jobs}")];
        if !extra.is_empty() {
            vars.push(extra.to_string());
        }
        let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
        let out = restore(&s.url_for("postgres"), &storage, &vars);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{name} (jobs={jobs} {extra}): {all}");
        assert_eq!(fingerprint_of(&s.url_for(&name)).await, expected, "{name} (jobs={jobs} {extra}) holds the backup");
        assert_eq!(
            fingerprint_of(&victim_server.url_for("victim")).await,
            victim_before,
            "{name} (jobs={jobs} {extra}) reached the other server"
        );
        assert_eq!(
            scalar(
                &s.url_for(&name),
                "select pg_get_userbyid(datdba) from pg_database where datname = current_database()"
            )
            .await,
            "app_owner",
            "{name}: recreated with its owner"
        );
        // The safety snapshot is of this database: it holds what was there before.
        let safety = storage.join(".safety").join(pgdrill::testkit::backup::layout::folder_name(&name));
        let snaps = common::files_ending(&safety, ".pgdrill");
        let newest = snaps.last().expect("a snapshot");
        assert_eq!(manifest_fingerprint(newest), before, "{name}: the snapshot is of another database");
    }

    // A backup of such a database (pg_dump) dumps the database itself.
    let name = hostile;
    common::exec(&s.url_for(&name), "create table only_here (x int); insert into only_here values (42)").await;
    let now = fingerprint_of(&s.url_for(&name)).await;
    let backups = dir.path().join("hostile-backups");
    let out = Run::new("backup")
        .var("database_url", s.url_for(&name))
        .var("storage", backups.display())
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .output()
        .expect("backup");
    assert!(out.status.success(), "backup: {}{}", text(&out.stdout), text(&out.stderr));
    let dumped =
        common::files_ending(&backups.join(pgdrill::testkit::backup::layout::folder_name(&name)), ".dump.pgdrill");
    assert_eq!(dumped.len(), 1, "{dumped:?}");
    assert_eq!(manifest_fingerprint(&dumped[0]), now);
    assert_eq!(fingerprint_of(&victim_server.url_for("victim")).await, victim_before);
}

fn safety_snapshots(storage: &Path) -> usize {
    std::fs::read_dir(storage.join(".safety").join("shop"))
        .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".pgdrill")).count())
        .unwrap_or(0)
}

/// Regression: connected as the database's owner without CREATEDB, preflight passed, the
/// database was dropped, `create` failed with "permission denied to create database", the
/// rollback could not create it either, and the database was gone. Now preflight proves the
/// role can drop, recreate (with the owner) and put back, and refuses otherwise, naming the
/// privilege and the remedy, with the database untouched. Also: a role that does not own the
/// database, and objects owned by a role the operator is not a member of (the snapshot could
/// not be restored with their owners). With the rights granted, the owner restores.
#[tokio::test(flavor = "multi_thread")]
async fn an_owner_without_createdb_is_refused_in_preflight_and_nothing_changes() {
    let (_dir, storage) = tmp_backups();
    let Some(s) = common::native_server("postgres").await else { return };
    let admin = s.url_for("postgres");
    common::exec(&admin, "create role app_owner login password 'app-pass'").await;
    common::exec(&admin, "create role ops login createdb password 'ops-pass'").await;
    common::exec(&admin, "create role bob").await;
    common::exec(&admin, "create database shop owner app_owner").await;
    let as_owner = |db: &str| pgdrill::testkit::pg::server_url("app_owner", "app-pass", &s.host, s.port, db);
    common::exec(
        &as_owner("shop"),
        "create table customers (id serial primary key, name text not null);
         insert into customers (name) select 'c' || g from generate_series(1, 300) g;",
    )
    .await;
    let backup = common::backup_to(&s.url_for("shop"), &storage, KEY, "shop");
    common::exec(&s.url_for("shop"), "insert into customers (name) values ('after the backup')").await;
    let before = fingerprint_of(&s.url_for("shop")).await;

    let refused = |url: String, expect: Vec<&'static str>| {
        let out = restore(&url, &storage, &[]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{all}");
        assert!(all.contains("FAILED       preflight"), "{all}");
        assert!(all.contains("nothing was changed"), "{all}");
        for e in expect {
            assert!(all.contains(e), "`{e}` missing in: {all}");
        }
        assert!(!all.contains("app-pass") && !all.contains("ops-pass"), "a password leaked: {all}");
        assert_eq!(safety_snapshots(&storage), 0, "a snapshot was taken: {all}");
    };
    refused(
        as_owner("postgres"),
        vec![
            "role app_owner cannot create databases (CREATEDB)",
            "connect as a superuser or grant CREATEDB to app_owner",
        ],
    );
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, before, "refused, yet the database changed");
    assert_eq!(scalar(&s.url_for("shop"), "select datallowconn from pg_database where datname = 'shop'").await, "true");

    refused(
        pgdrill::testkit::pg::server_url("ops", "ops-pass", &s.host, s.port, "postgres"),
        vec!["role ops does not own database `shop` (its owner is app_owner)", "grant app_owner to ops"],
    );
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, before);

    common::exec(&admin, "alter role app_owner createdb").await;
    common::exec(&s.url_for("shop"), "create table audit (at timestamptz); alter table audit owner to bob").await;
    let with_bob = fingerprint_of(&s.url_for("shop")).await;
    refused(as_owner("postgres"), vec!["objects owned by bob", "grant bob to app_owner"]);
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, with_bob);

    // With the rights it needs, the owner restores, and the content is the backup's.
    common::exec(&s.url_for("shop"), "drop table audit").await;
    let out = restore(&as_owner("postgres"), &storage, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("rights: app_owner may drop `shop`"), "{all}");
    assert_eq!(database_part(fingerprint_of(&s.url_for("shop")).await), database_part(manifest_fingerprint(&backup)));
    assert_eq!(safety_snapshots(&storage), 1);
}

async fn settings_of(url: &str, db: &str) -> pgdrill::testkit::pg::dbsettings::DatabaseSettings {
    let c = pgdrill::testkit::pg::connect(url).await.expect("connect");
    pgdrill::testkit::pg::dbsettings::capture(&c, db).await.expect("capture").expect("the database exists")
}

/// Regression: drop and recreate lost what a database carries outside its contents
/// (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`, grants on the database,
/// its comment and connection limit); pg_dump without --create does not hold them. Now they
/// are captured in preflight, applied again after the create and after a rollback's
/// put-back, and compared after the restore.
#[tokio::test(flavor = "multi_thread")]
async fn database_settings_and_grants_are_kept_by_a_restore_and_by_a_rollback() {
    let (_dir, storage) = tmp_backups();
    let Some((s, backup)) = backed_up(&storage).await else { return };
    let admin = s.url_for("postgres");
    common::exec(&admin, "create role reader").await;
    for sql in [
        "alter database shop set work_mem = '8MB'",
        "alter database shop set search_path = \"$user\", public, \"Odd Schema\"",
        "alter database shop set app.tenant = 'o''neil'",
        "alter role app_owner in database shop set statement_timeout = '5s'",
        "revoke all on database shop from public",
        "grant connect on database shop to reader",
        "grant create on database shop to reader with grant option",
        "comment on database shop is 'the shop''s data'",
        "alter database shop connection limit 20",
    ] {
        common::exec(&admin, sql).await;
    }
    let before = settings_of(&admin, "shop").await;
    assert_eq!(before.settings.len(), 4, "{before:?}");
    assert!(before.grants.is_some(), "{before:?}");

    let out = restore(&admin, &storage, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("passed       settings"), "{all}");
    assert!(
        all.contains("database settings applied again: 4 settings, 5 grants, a comment, connection limit 20"),
        "{all}"
    );
    assert_eq!(settings_of(&admin, "shop").await, before);
    assert_eq!(database_part(fingerprint_of(&s.url_for("shop")).await), database_part(manifest_fingerprint(&backup)));
    // The role-specific setting works as the application sees it.
    let owner_url = {
        common::exec(&admin, "alter role app_owner password 'app-pass'").await;
        pgdrill::testkit::pg::server_url("app_owner", "app-pass", &s.host, s.port, "shop")
    };
    assert_eq!(scalar(&owner_url, "current_setting('statement_timeout')").await, "5s");

    // A failed smoke check rolls back: the put-back gives the settings again, and says so.
    common::exec(&s.url_for("shop"), "insert into customers (name) values ('after the restore')").await;
    let content = fingerprint_of(&s.url_for("shop")).await;
    let out = restore(&admin, &storage, &["smoke_sql=select count(*) from customers", "smoke_expect=> 100000"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("its settings and grants are as they were"), "{all}");
    assert_eq!(settings_of(&admin, "shop").await, before);
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, content);
}

/// The application of the restore's hooks: a real HTTP server (python3 -m http.server) that
/// `start` starts in the background and `stop` stops, each writing a line to `log`.
struct App {
    dir: PathBuf,
    port: u16,
}

impl App {
    fn new(dir: &Path) -> Option<App> {
        let python = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| text(&o.stdout).trim().to_string());
        if !common::require(python.is_some(), "python3 (the test's little HTTP application)") {
            return None;
        }
        let dir = dir.join("app");
        std::fs::create_dir_all(dir.join("www")).expect("app dir");
        std::fs::write(dir.join("www/health"), "healthy\n").expect("health page");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        std::fs::write(
            dir.join("start.sh"),
            format!(
                "echo start >> {d}/log\n{py} -m http.server {port} --bind 127.0.0.1 --directory {d}/www >/dev/null 2>&1 &\necho $! > {d}/pid\n",
                d = dir.display(),
                py = python.unwrap_or_default()
            ),
        )
        .expect("start.sh");
        std::fs::write(
            dir.join("stop.sh"),
            format!("echo stop >> {d}/log\nkill $(cat {d}/pid) 2>/dev/null; rm -f {d}/pid\n", d = dir.display()),
        )
        .expect("stop.sh");
        Some(App { dir, port })
    }

    fn vars(&self, health_path: &str) -> Vec<String> {
        vec![
            format!("stop_command=sh {}/stop.sh", self.dir.display()),
            format!("start_command=sh {}/start.sh", self.dir.display()),
            format!("health_url=http://127.0.0.1:{}/{health_path}", self.port),
        ]
    }

    /// A restore of `shop` through `admin` with the application's hooks, its health check
    /// asking for `health_path`: its exit code and what it printed.
    fn restore(&self, admin: &str, storage: &Path, health_path: &str) -> (Option<i32>, String) {
        let vars = self.vars(health_path);
        let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
        let out = restore(admin, storage, &vars);
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // The server the last start hook left running.
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Regression: the shipped restore.yaml ran its health check (`smoke_http`) before the start
/// hook, which ran in `finally`, so the README's own example (stop_command, start_command,
/// health_url) failed every restore and rolled it back; and a smoke check that failed after
/// the application restarted had no rollback. Now the application starts, then the checks
/// run against it; a failing one stops it again, puts the original back, and starts it.
#[tokio::test(flavor = "multi_thread")]
async fn the_health_check_runs_after_the_restart_and_a_failing_one_rolls_back() {
    let (dir, storage) = tmp_backups();
    let Some((s, backup)) = backed_up(&storage).await else { return };
    let Some(app) = App::new(dir.path()) else { return };
    let admin = s.url_for("postgres");

    // The README's example: stop, restore, start, health check.
    let (code, all) = app.restore(&admin, &storage, "health");
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("passed       smoke_http"), "{all}");
    assert_eq!(app.log(), "stop\nstart\n", "{all}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, manifest_fingerprint(&backup));

    // A health check that fails after the restart: stopped again, put back, started again.
    common::exec(&s.url_for("shop"), "insert into customers (name) values ('after the restore')").await;
    let before = fingerprint_of(&s.url_for("shop")).await;
    std::fs::remove_file(app.dir.join("log")).expect("log");
    let (code, all) = app.restore(&admin, &storage, "missing-page");
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("FAILED       smoke_http"), "{all}");
    assert!(all.contains("answered 404"), "{all}");
    assert!(all.contains("passed       rollback of start_app: stop_app_again"), "{all}");
    assert!(all.contains("passed       rollback of drop: put_back"), "{all}");
    assert!(all.contains("passed       finally: restart_app"), "{all}");
    let last = all.lines().last().unwrap_or_default();
    assert!(
        last.contains("step `smoke_http` failed") && last.contains("was rolled back to the safety snapshot"),
        "{last}"
    );
    assert_eq!(app.log(), "stop\nstart\nstop\nstart\n", "{all}");
    assert_eq!(fingerprint_of(&s.url_for("shop")).await, before, "not put back");
}

/// `shop`'s row in pg_database as CREATE/ALTER DATABASE set it (everything but its OID and
/// the counters the server keeps), and its words as ORDER BY sorts them.
async fn shape_of(admin: &str, shop: &str) -> (String, String) {
    let row = scalar(
        admin,
        "select concat_ws(' | ', datname, pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datlocprovider, \
         datistemplate, datallowconn, datconnlimit, datcollate, datctype, daticulocale, datcollversion, \
         (select spcname from pg_tablespace t where t.oid = dattablespace), datacl::text) \
         from pg_database where datname = 'shop'",
    )
    .await;
    (row, scalar(shop, "select string_agg(w, ',' order by w) from words").await)
}

/// Regression: the restore and its rollback created the database again with owner,
/// encoding and lc_* only: an ICU database in its own tablespace came back with the libc
/// provider in pg_default (sorting changed, the data moved to another disk), and both said
/// it was as it was. Now the journal keeps its locale provider, ICU locale, collation
/// version and tablespace, and the restore and the rollback create it with them: its
/// pg_database row and its ORDER BY are unchanged.
#[tokio::test(flavor = "multi_thread")]
async fn an_icu_database_in_its_own_tablespace_is_restored_and_rolled_back_as_it_was() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, storage) = tmp_backups();
    let Some(s) = common::native_server("postgres").await else { return };
    let admin = s.url_for("postgres");
    // The tablespace's folder belongs to the user the server runs as.
    let data = Path::new(&s.instance).join("data");
    let meta = std::fs::metadata(&data).expect("data directory");
    let ts = Path::new(&s.instance).join("tablespace_shop");
    std::fs::create_dir(&ts).expect("tablespace folder");
    std::os::unix::fs::chown(&ts, Some(meta.uid()), Some(meta.gid())).expect("chown");
    common::exec(&admin, "create role app_owner login").await;
    common::exec(&admin, &format!("create tablespace fast_disk location '{}'", ts.display())).await;
    common::exec(
        &admin,
        "create database shop owner app_owner template template0 encoding 'UTF8' lc_collate 'C' lc_ctype 'C' \
         locale_provider icu icu_locale 'en-US' tablespace fast_disk",
    )
    .await;
    let shop = s.url_for("shop");
    common::exec(&shop, "create table words (w text); insert into words values ('b'), ('B'), ('a'), ('A')").await;
    common::exec(&admin, "comment on database shop is 'sorted the ICU way'").await;
    let backup = common::backup_to(&shop, &storage, KEY, "shop");
    let before = shape_of(&admin, &shop).await;
    let dumped = dumps(&admin, &shop);
    assert!(before.0.contains(" | i | ") && before.0.contains("fast_disk"), "{before:?}");
    assert_eq!(before.1, "a,A,b,B", "ICU order");

    let out = restore(&admin, &storage, &[]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("database properties as before: locale provider icu, locale en-US"), "{all}");
    assert_eq!(shape_of(&admin, &shop).await, before, "restored: {all}");
    assert!(dumps(&admin, &shop) == dumped, "pg_dumpall --globals-only and pg_dump --create differ after the restore");
    assert_eq!(fingerprint_of(&shop).await, manifest_fingerprint(&backup));

    // A smoke check that fails rolls back: the put-back database is as it was too.
    let out = restore(&admin, &storage, &["smoke_sql=select 0"]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    assert!(all.contains("created as it was (locale provider icu"), "{all}");
    assert_eq!(shape_of(&admin, &shop).await, before, "rolled back: {all}");
    assert!(dumps(&admin, &shop) == dumped, "pg_dumpall --globals-only and pg_dump --create differ after the rollback");
}

/// `pg_dumpall --globals-only` and `pg_dump --create` of `shop` (the system's client tools):
/// what must be byte-identical after a restore and after its rollback.
fn dumps(admin: &str, shop: &str) -> (String, String) {
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).output().expect("dump tool runs");
        assert!(out.status.success(), "{tool}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    // A fixed \restrict key: pg_dump draws a random one per run otherwise.
    let key = "--restrict-key=pgdrilltest";
    (run("pg_dumpall", &["--globals-only", key, "-d", admin]), run("pg_dump", &["--create", key, "-d", shop]))
}
