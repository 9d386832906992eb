//! A second real major: PostgreSQL 17 in a container from the local image (ci/setup.sh
//! builds it from Debian trixie), while this machine's client tools are 15.

use crate::common::*;
use pgdrill::testkit::pg::ephemeral::Ephemeral;

const KEY: &str = "cross-version-key-0123456789abcdef";
const IMAGES: &str = "pgdrill/postgres-local:{major}";

fn image_17_present() -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", "pgdrill/postgres-local:17"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A server of `major` in a container; the tests that use one also need the image of 17.
async fn server(major: u32, db: &str) -> Option<Ephemeral> {
    if !require(image_17_present(), "Docker with the image pgdrill/postgres-local:17 (bash ci/setup.sh)") {
        return None;
    }
    docker_server(major, db).await
}

/// A native PostgreSQL 15 server with database `db` and `sql` run in it, for a test that also
/// needs the image of 17 (a printed skip, or a failure in CI, when either is missing).
async fn native_15(db: &str, sql: &str) -> Option<Ephemeral> {
    let s = native_server(db).await?;
    if !require(image_17_present(), "Docker with the image pgdrill/postgres-local:17 (bash ci/setup.sh)") {
        return None;
    }
    exec(&s.url(), sql).await;
    Some(s)
}

fn pgdrill_with_images(run: Run) -> std::process::Output {
    run.env("PGDRILL_DOCKER_IMAGE", IMAGES).key(KEY).raw()
}

/// `pgdrill run verify` of `database` in `storage` on a throwaway server in Docker (the
/// local images), its JUnit to `junit`, with `extra` (`NAME=VALUE`) vars.
fn verify_in_docker(
    storage: impl std::fmt::Display,
    database: &str,
    junit: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    Run::new("verify")
        .var("storage", storage)
        .var("database", database)
        .var("provider", "docker")
        .vars(extra)
        .junit(junit)
        .env("PGDRILL_DOCKER_IMAGE", IMAGES)
        .env("PGDRILL_BACKUP_KEY", KEY)
        .raw()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_17_server_is_backed_up_with_the_17_tools_from_its_image_and_never_restored_into_15() {
    let Some(pg17) = server(17, "app").await else { return };
    exec(&pg17.url(), "create table t(id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g").await;
    let (dir, storage) = tmp_backups();
    let st = storage.to_str().expect("utf-8");
    let url = pg17.url();

    let out = pgdrill_with_images(Run::new("backup").var("database_url", &url).var("storage", st));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("pg_dump (PostgreSQL) 17") && stdout.contains("from the image pgdrill/postgres-local:17"),
        "{stdout}"
    );
    assert!(!stdout.contains(&pg17.password), "the password reached the log: {stdout}");
    let backup = backup_in(&storage.join("app"));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(pgdrill::testkit::backup::layout::manifest_path(&backup)).expect("manifest"),
    )
    .expect("json");
    assert!(
        manifest["pg_dump_version"].as_str().is_some_and(|v| v.contains("17") && v.contains("from the image")),
        "{manifest}"
    );
    assert_eq!(manifest["server_major"], 17);

    // Verified on a 17 throwaway: the local pg_restore 15 cannot read a 17 archive, so the
    // restore runs pg_restore 17 from the image, and says so.
    let junit = dir.path().join("verify.xml");
    let out = verify_in_docker(st, "app", &junit, &[]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let evidence = std::fs::read_to_string(&junit).expect("junit");
    assert!(
        evidence.contains("pg_restore (PostgreSQL) 17")
            && evidence.contains("from the image pgdrill/postgres-local:17: the local pg_restore cannot read"),
        "{evidence}"
    );
    let leftover = std::process::Command::new("docker")
        .args(["ps", "-a", "--filter", "name=pgdrill-restore-", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    assert!(text(&leftover.stdout).trim().is_empty(), "tool containers left: {}", text(&leftover.stdout));

    // A plain SQL backup of 17 goes through psql: 17's, from the image.
    let plain = dir.path().join("plain");
    let out = pgdrill_with_images(
        Run::new("backup").var("database_url", &url).var("storage", plain.display()).var("format", "plain"),
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let junit_plain = dir.path().join("verify-plain.xml");
    let out = verify_in_docker(plain.display(), "app", &junit_plain, &[]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let evidence = std::fs::read_to_string(&junit_plain).expect("junit");
    assert!(
        evidence.contains("psql (PostgreSQL) 17") && evidence.contains("the local psql is older than the dump"),
        "{evidence}"
    );

    // An operator restore of the 17 backup into the 17 server, under a new name: preflight
    // finds pg_restore 17 in the image, and the restore uses it.
    let safety = dir.path().join("safety");
    let out = pgdrill_with_images(
        Run::cli(["run", "restore", "--yes"])
            .var("database_url", &url)
            .var("storage", st)
            .vars(&["database=app", "target=app_copy"])
            .var("safety", safety.display()),
    );
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(scalar(&url.replace("/app", "/app_copy"), "select count(*) from t").await, "2000");

    // Without the image: exit 3, one line naming the missing major's tools.
    let out = Run::new("backup")
        .var("database_url", &url)
        .var("storage", st)
        .env("PGDRILL_DOCKER_IMAGE", "pgdrill/no-such-image:{major}")
        .key(KEY)
        .raw();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("cannot come from Docker either"), "{}", text(&out.stdout));

    // Into an older major: refused in preflight, the target untouched.
    let Some(pg15) = server(15, "app").await else { return };
    exec(&pg15.url(), "create table keep(id int); insert into keep values (42)").await;
    let out = pgdrill_with_images(
        Run::cli(["run", "restore", "--yes"]).var("database_url", pg15.url()).var("storage", st).var("database", "app"),
    );
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "a 17 backup was restored into 15: {stdout}");
    assert!(stdout.contains("preflight") && stdout.contains("17"), "{stdout}");
    assert_eq!(scalar(&pg15.url(), "select id from keep").await, "42", "the 15 database was changed");
    pg15.stop().await;
    pg17.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_15_backup_verifies_on_a_17_throwaway_and_a_difference_is_still_caught() {
    let Some(pg15) = native_15(
        "shop",
        "create table customers(id int primary key, name text, meta jsonb, created timestamptz default '2026-01-01');
         insert into customers(id, name, meta) select g, 'c' || g, jsonb_build_object('n', g) from generate_series(1, 3000) g;
         create index on customers using btree (name);
         create view big_customers as select * from customers where id > 100;",
    )
    .await
    else {
        return;
    };
    let (dir, storage) = tmp_backups();
    let backup = backup_to(&pg15.url(), &storage, KEY, "shop");
    let verify =
        |junit: &std::path::Path| verify_in_docker(storage.display(), "shop", junit, &["version=17", "force=true"]);
    let junit = dir.path().join("v1.xml");
    let out = verify(&junit);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("PostgreSQL 17"), "the throwaway was not 17: {stdout}");
    for case in ["restore", "schema", "tables", "amcheck"] {
        assert_eq!(status_of(&junit_cases(&junit), case), "passed", "{case}: {stdout}");
    }

    // A real difference between source and restored copy is still caught across majors.
    let mut m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(pgdrill::testkit::backup::layout::manifest_path(&backup)).expect("manifest"),
    )
    .expect("json");
    m["fingerprint"]["tables"]["public.customers"]["field_hash"] = serde_json::json!("12345");
    write_rebound_manifest(&backup, m, KEY);
    let junit = dir.path().join("v2.xml");
    let out = verify(&junit);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("public.customers: content differs"), "{stdout}");
    assert_eq!(status_of(&junit_cases(&junit), "tables"), "failure");
    pg15.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_drill_rehearses_15_to_17_and_reports_its_rto() {
    let Some(pg15) = native_15(
        "erp",
        "create table orders(id int primary key, total numeric); insert into orders select g, g * 2 from generate_series(1, 1000) g;
         create view big_orders as select * from orders where total > 100;",
    )
    .await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let out = pgdrill_with_images(
        Run::new("upgrade")
            .var("database_url", pg15.url())
            .vars(&["provider=docker", "smoke_sql=select count(*) from big_orders"])
            .arg("--report")
            .arg(dir.path()),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("PostgreSQL 17"), "{stdout}");
    for step in ["schema", "tables", "amcheck", "smoke"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with("passed") && l.contains(&format!(" {step} "))),
            "{step}: {stdout}"
        );
    }
    let run = RunJson::read(dir.path());
    let rto = run.step("rto");
    assert!(rto.outputs["rto_s"].as_f64().is_some_and(|s| s > 0.0), "{rto:?}");
    pg15.stop().await;
}
