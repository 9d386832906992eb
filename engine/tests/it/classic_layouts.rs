//! Issue 40, item 1: the five classic runbooks' backup folders (`/work/shared/seeds`: an ERP,
//! a CRM, a payments system, a multi-tenant platform, an ERP restored from encrypted cloud
//! backups), each made by the document's own commands, driven through the shipped verify,
//! restore (into a database on this test's own native server) and prune (dry run) as the
//! README's "Coming from ..." sections say. Each holds one of the cases that stopped a team:
//! a tar of WAL files beside nameless dumps, pgdrill's own folder beside them, a backup named
//! after another database, a `LATEST` symlink, dumps three folders down.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{self, tmp_backups, Run};

/// The passphrase the documents keep in BACKUP_ENCRYPTION_KEY (pgdrill reads it as its key).
const KEY: &str = "classic layouts passphrase, rotated quarterly";

/// A throwaway PostgreSQL 15 server holding `dbs`, each with the same small schema: 300
/// users, 700 orders.
async fn source(dbs: &[&str]) -> Option<pgdrill::testkit::pg::ephemeral::Ephemeral> {
    if !common::require(common::on_path("openssl"), "openssl") {
        return None;
    }
    let s = common::native_server("postgres").await?;
    for db in dbs {
        common::exec(&s.url_for("postgres"), &format!("create database {db}")).await;
        common::exec(
            &s.url_for(db),
            "create table users (id serial primary key, email text not null);
             insert into users (email) select 'u' || g || '@example.com' from generate_series(1, 300) g;
             create table orders (id bigserial primary key, user_id int references users, total numeric(10,2));
             insert into orders (user_id, total) select 1 + g % 300, g * 0.5 from generate_series(1, 700) g;",
        )
        .await;
    }
    Some(s)
}

/// `bash -c SCRIPT` (with `set -euo pipefail`) in `cwd`, with database `db` of `s` in the
/// libpq environment and the passphrase in BACKUP_ENCRYPTION_KEY, as the documents run it.
fn sh(s: &pgdrill::testkit::pg::ephemeral::Ephemeral, db: &str, cwd: &Path, script: &str) {
    std::fs::create_dir_all(cwd).expect("mkdir");
    let out = common::libpq_bash(s, db)
        .args(["-c", &format!("set -euo pipefail; export PATH=/usr/lib/postgresql/15/bin:$PATH; {script}")])
        .current_dir(cwd)
        .env("BACKUP_ENCRYPTION_KEY", KEY)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{script}: {}", common::text(&out.stderr));
}

/// `date -u +%Y%m%d_%H%M%S` as it read `hours` hours ago.
fn stamp(hours: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::hours(hours);
    common::dump_stamp(t)
}

/// `pgdrill run verify` of `database`'s backup `backup` in `storage` on a native throwaway
/// server, its content judged against the live source database `source_db`.
fn verify(
    s: &pgdrill::testkit::pg::ephemeral::Ephemeral,
    storage: &Path,
    database: &str,
    backup: &str,
    source_db: &str,
) -> Run {
    Run::verify_native(storage.display(), database)
        .var("backup", backup)
        .var("jobs", 1)
        .var("max_age", "36500d")
        .env("PGDRILL_SOURCE_URL", s.url_for(source_db))
        .key(KEY)
}

/// `pgdrill run restore --yes` of `database`'s backup `backup` into `target` on `s`.
fn restore(
    s: &pgdrill::testkit::pg::ephemeral::Ephemeral,
    storage: &Path,
    database: &str,
    backup: &str,
    target: &str,
) -> Run {
    Run::new("restore")
        .arg("--yes")
        .var("database_url", s.url_for("postgres"))
        .var("storage", storage.display())
        .var("database", database)
        .var("backup", backup)
        .var("target", target)
        .var("jobs", 1)
        .key(KEY)
}

/// `pgdrill run prune` as a dry run: what it printed.
fn prune_dry(storage: &Path, database: &str, policy: &[&str]) -> String {
    let ran = Run::new("prune").var("storage", storage.display()).var("database", database).vars(policy).expect(0);
    let all = ran.all();
    assert!(!all.contains("delete ") || all.contains("would delete"), "a dry run deletes nothing: {all}");
    all
}

/// The rows a restore brought back into `db`.
async fn restored_rows(s: &pgdrill::testkit::pg::ephemeral::Ephemeral, db: &str) -> String {
    common::scalar(&s.url_for(db), "(select count(*) from users) || '/' || (select count(*) from orders)").await
}

/// A verify that passed on its own merits: restored, content proven against the source.
#[track_caller]
fn passed(ran: &common::Ran) {
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert!(!ran.all().contains(KEY), "the passphrase never shows");
}

/// 000, the ERP's backup operations runbook: `/backups/postgres/automated_full_backup_<stamp>_
/// {daily,weekly,monthly}.sql.gz.enc` (gzip, then `openssl enc -aes-256-cbc` without
/// -pbkdf2), a manual `full_backup_<stamp>.sql`, and `logs/`. Names that say no database:
/// the folder is `erp`'s. Verify the latest, restore the weekly into `erp_restore` ("Restore to
/// different database"), prune by the 7/4/12 policy.
#[tokio::test(flavor = "multi_thread")]
async fn erp_runbook_folder_of_nameless_encrypted_dumps_verifies_restores_a_label_and_prunes_by_its_policy() {
    let Some(s) = source(&["erp"]).await else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("backups/postgres");
    let enc = "pg_dump | gzip | openssl enc -aes-256-cbc -salt -pass env:BACKUP_ENCRYPTION_KEY";
    // A daily for each of the last seven days, a weekly, a monthly, and a daily of 20 days
    // ago that the policy no longer keeps. The weekly is ten days old: at eight days, run on a
    // Tuesday before 06:00 UTC, it fell in the ISO week of the manual dump below (30 hours
    // old, no label, so one of the weeks too), which as that week's newest took its place and
    // the weekly was pruned: the test's dates, not the policy, decided (CI, 2026-12-08).
    let dailies: Vec<String> =
        (0..7).map(|d| format!("automated_full_backup_{}_daily.sql.gz.enc", stamp(2 + 24 * d))).collect();
    let daily = dailies[0].clone();
    let (weekly, monthly, old_daily) = (
        format!("automated_full_backup_{}_weekly.sql.gz.enc", stamp(24 * 10)),
        format!("automated_full_backup_{}_monthly.sql.gz.enc", stamp(24 * 40)),
        format!("automated_full_backup_{}_daily.sql.gz.enc", stamp(24 * 20)),
    );
    for name in dailies.iter().chain([&weekly, &monthly, &old_daily]) {
        sh(&s, "erp", &dir, &format!("{enc} > {name}"));
    }
    let manual = format!("full_backup_{}.sql", stamp(30));
    sh(&s, "erp", &dir, &format!("pg_dump > {manual}"));
    sh(&s, "erp", &dir.join("logs"), "echo '[SUCCESS] Backup created' > backup_report.log; touch automated-backup.log");

    // `backups list`: eleven backups, all taken as `erp`'s, no log.
    let ran = Run::cli(["backups", "list", "--database", "erp", "--json", "--storage"]).arg(&dir).expect(0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout).expect("json");
    assert_eq!(list.len(), 11, "{}", ran.all());
    assert!(list.iter().all(|b| b["database"] == "erp" && b["database_assumed"] == true), "{list:?}");

    // Verify latest: the newest daily, decrypted with the legacy derivation, proven.
    let ran = verify(&s, &dir, "erp", "latest", "erp").junit(tmp.path().join("v.xml")).output();
    passed(&ran);
    assert!(ran.all().contains(&daily), "{}", ran.all());
    assert!(ran.all().contains("legacy key derivation: EVP_BytesToKey, sha256"), "{}", ran.all());
    assert_eq!(ran.junit().status("tables"), "passed", "{}", ran.all());

    // Restore by label into another database.
    let ran = restore(&s, &dir, "erp", "label:weekly", "erp_restore").expect(0);
    assert!(ran.all().contains(&weekly), "{}", ran.all());
    assert_eq!(restored_rows(&s, "erp_restore").await, "300/700");

    // The document's retention: daily 7, weekly 4, monthly 12, by the labels in the names.
    let dry = prune_dry(&dir, "erp", &["keep_daily=7", "keep_weekly=4", "keep_monthly=12"]);
    assert!(dry.contains(&format!("would delete {old_daily}")), "{dry}");
    for kept in [&daily, &weekly, &monthly] {
        assert!(!dry.contains(&format!("would delete {kept}")), "{kept}: {dry}");
    }
    assert!(dir.join(&old_daily).is_file(), "a dry run");
    s.stop().await;
}

/// 001, the CRM's backup strategy: `/backups/backup_<stamp>.sql.gz` beside
/// `wal_<stamp>.tar.gz`, `backup.log` and `cron.log`, and, once the team runs pgdrill,
/// pgdrill's own `crm/` folder. The WAL tar read as database `wal` and pgdrill's folder hid
/// the nameless dumps, even by exact name.
#[tokio::test(flavor = "multi_thread")]
async fn crm_folder_with_a_wal_tar_and_pgdrills_own_folder_finds_its_nameless_dumps() {
    let Some(s) = source(&["crm"]).await else { return };
    let (_tmp, dir) = tmp_backups();
    let (older, newer) = (format!("backup_{}.sql.gz", stamp(24 * 40)), format!("backup_{}.sql.gz", stamp(26)));
    for name in [&older, &newer] {
        sh(&s, "crm", &dir, &format!("pg_dump | gzip > {name}"));
    }
    let wal = format!("wal_{}.tar.gz", stamp(26));
    sh(&s, "crm", &dir, &format!("mkdir -p pg_wal_copy && echo segment > pg_wal_copy/000000010000000000000001 && tar czf {wal} pg_wal_copy && rm -r pg_wal_copy"));
    sh(&s, "crm", &dir, "echo 'Backup completed' > backup.log; touch cron.log");
    // pgdrill's own backup of crm, newest, one folder down.
    common::backup_to(&s.url_for("crm"), &dir, KEY, "crm");

    let ran = Run::cli(["backups", "list", "--database", "crm", "--json", "--storage"]).arg(&dir).expect(0);
    let list: Vec<serde_json::Value> = serde_json::from_str(&ran.stdout).expect("json");
    let names: Vec<&str> = list.iter().filter_map(|b| b["path"].as_str()?.rsplit('/').next()).collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names[0].ends_with(".dump.pgdrill"), "pgdrill's newer backup first: {names:?}");
    assert_eq!(&names[1..], [newer.as_str(), older.as_str()]);

    // The nameless dump by its exact name: found, taken as crm's, restored and proven.
    let ran = verify(&s, &dir, "crm", &newer, "crm").output();
    passed(&ran);
    assert!(ran.all().contains(&newer), "{}", ran.all());
    assert!(ran.all().contains("so it is taken as `crm`'s"), "{}", ran.all());

    // Restore latest: pgdrill's own, one folder down, not the older foreign file.
    let ran = restore(&s, &dir, "crm", "latest", "crm_restore").expect(0);
    assert!(ran.all().contains(".dump.pgdrill"), "{}", ran.all());
    assert_eq!(restored_rows(&s, "crm_restore").await, "300/700");

    // 30-day retention as the document has it (the verified dump is kept whatever its
    // age); the WAL tar is nobody's backup.
    let dry = prune_dry(&dir, "crm", &["keep_within=30d", "keep_daily=0", "keep_weekly=0", "keep_monthly=0"]);
    assert!(dry.contains(&format!("would delete {older}")), "{dry}");
    assert!(!dry.contains(&format!("would delete {newer}")), "{dry}");
    assert!(!dry.contains(&wal), "{dry}");
    s.stop().await;
}

/// 002, the payments system: `/opt/backups/postgres-a/auth_db_<stamp>.sql.gz` and
/// `postgres-b/payment_db_<stamp>.sql.gz`, a manual dump, and the `auth_db_LATEST.sql.gz` its
/// restore test names, a symlink. The symlink is followed and named; each database's files
/// are its own.
#[tokio::test(flavor = "multi_thread")]
async fn payments_folders_restore_through_the_latest_symlink_and_prune_one_database() {
    let Some(s) = source(&["auth_db", "payment_db"]).await else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("opt-backups");
    let (a, b) = (root.join("postgres-a"), root.join("postgres-b"));
    let old_auth = format!("auth_db_{}.sql.gz", stamp(72));
    for name in [&old_auth, &format!("auth_db_{}.sql.gz", stamp(1))] {
        sh(&s, "auth_db", &a, &format!("pg_dump | gzip > {name}"));
    }
    sh(&s, "auth_db", &a, "pg_dump | gzip > auth_db_manual_$(date -u -d '2 hours ago' +%Y%m%d_%H%M%S).sql.gz");
    let old_pay = format!("payment_db_{}.sql.gz", stamp(24 * 10));
    for name in [&old_pay, &format!("payment_db_{}.sql.gz", stamp(1))] {
        sh(&s, "payment_db", &b, &format!("pg_dump | gzip > {name}"));
    }
    std::os::unix::fs::symlink(&old_auth, a.join("auth_db_LATEST.sql.gz")).expect("ln");

    // Listed apart from the backups, with where it leads.
    let ran = Run::cli(["backups", "list", "--database", "auth_db", "--storage"]).arg(&root).expect(0);
    let line = format!("symlink  {} -> {}", a.join("auth_db_LATEST.sql.gz").display(), a.join(&old_auth).display());
    assert!(ran.stdout.contains(&line), "{line}\n{}", ran.all());
    assert_eq!(ran.stdout.matches("auth_db_LATEST").count(), 1, "never a row of its own: {}", ran.all());

    let ran = verify(&s, &root, "auth_db", "auth_db_LATEST.sql.gz", "auth_db").output();
    passed(&ran);
    assert!(ran.all().contains("followed the symlink auth_db_LATEST.sql.gz to "), "{}", ran.all());
    assert!(ran.all().contains(&old_auth), "{}", ran.all());

    let ran = restore(&s, &root, "payment_db", "latest", "payment_restore").expect(0);
    assert_eq!(restored_rows(&s, "payment_restore").await, "300/700", "{}", ran.all());

    // "Delete backups older than 7 days", for one database only.
    let dry = prune_dry(&root, "payment_db", &["keep_within=7d", "keep_daily=0", "keep_weekly=0", "keep_monthly=0"]);
    assert!(dry.contains(&format!("would delete {old_pay}")), "{dry}");
    assert!(!dry.contains("auth_db"), "another database's files are not touched: {dry}");
    s.stop().await;
}

/// 003, the multi-tenant platform: `/opt/backups/{project}/{env}/database/db_<stamp>.sql.gz`
/// (`pg_dump --format=custom --compress=9` under a `.sql.gz` name), `backup_<stamp>.meta`
/// beside. Nameless dumps in two environments' folders are nobody's in particular: the
/// message says so, and storage naming the folder takes them.
#[tokio::test(flavor = "multi_thread")]
async fn multi_tenant_dumps_three_folders_down_are_taken_from_the_folder_storage_names() {
    let Some(s) = source(&["filterical_production", "filterical_staging"]).await else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("opt-backups");
    let prod = root.join("filter-ical/production/database");
    let old = format!("db_{}.sql.gz", stamp(24 * 40));
    for name in [&old, &format!("db_{}.sql.gz", stamp(3))] {
        sh(&s, "filterical_production", &prod, &format!("pg_dump --format=custom --compress=9 > {name}"));
    }
    // The document's deployment manifest: the pre-deployment backup, by the label it gives it.
    let label = format!("backup_{}", stamp(24 * 40));
    let meta = serde_json::json!({
        "backup": label,
        "database_backup": format!("/opt/backups/filter-ical/production/database/{old}"),
    });
    std::fs::write(prod.join("..").join(format!("{label}.meta")), meta.to_string()).expect("meta");
    sh(
        &s,
        "filterical_staging",
        &root.join("filter-ical/staging/database"),
        &format!("pg_dump --format=custom --compress=9 > db_{}.sql.gz", stamp(4)),
    );

    // Storage at the top: which folder is production's is not guessed, and the error says so.
    let ran = verify(&s, &root, "filterical_production", "latest", "filterical_production").expect(1);
    assert!(ran.all().contains("2 folders hold such files"), "{}", ran.all());
    assert!(ran.all().contains("give the folder of `filterical_production`'s as storage"), "{}", ran.all());

    let ran = verify(&s, &prod, "filterical_production", "latest", "filterical_production").output();
    passed(&ran);

    // "Scenario 1: Bad Deployment": rolled back to the backup its deployment manifest names
    // (the older one), by its label; `label:` used to read only words in file names.
    let ran = restore(&s, &prod, "filterical_production", &format!("label:{label}"), "filterical_restore").expect(0);
    assert_eq!(restored_rows(&s, "filterical_restore").await, "300/700", "{}", ran.all());
    assert!(ran.all().contains(&format!("`label:{label}`: the backup the deployment record")), "{}", ran.all());
    assert!(ran.all().contains(&prod.join(&old).display().to_string()), "the older dump: {}", ran.all());

    let dry = prune_dry(
        &prod,
        "filterical_production",
        &["keep_within=30d", "keep_daily=0", "keep_weekly=0", "keep_monthly=0"],
    );
    assert!(dry.contains(&format!("would delete {old}")), "{dry}");
    s.stop().await;
}

/// 004, the ERP restore runbook from encrypted cloud backups: `backups/production/
/// himalytix_production_<stamp>.sql.gz.enc` (gzip, `openssl enc -aes-256-cbc -pbkdf2`),
/// restored into `erpdb`. Asked as `erpdb`'s, nothing is found, and the message names the
/// `database=`/`target=` form that restores it; with it, the restore replaces `erpdb`.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_named_himalytix_production_restores_into_erpdb_with_the_form_the_error_names() {
    let Some(s) = source(&["erpdb"]).await else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("bucket");
    let dir = root.join("backups/production");
    let enc = "pg_dump | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass env:BACKUP_ENCRYPTION_KEY";
    let old = format!("himalytix_production_{}.sql.gz.enc", stamp(24 * 9));
    let new_stamp = stamp(2);
    let new = format!("himalytix_production_{new_stamp}.sql.gz.enc");
    for name in [&old, &new] {
        sh(&s, "erpdb", &dir, &format!("{enc} > {name}"));
    }

    let ran = verify(&s, &root, "erpdb", "latest", "erpdb").expect(1);
    let all = ran.all();
    assert!(all.contains("no backup of `erpdb`"), "{all}");
    assert!(all.contains("its name says database `himalytix_production`"), "{all}");
    assert!(all.contains("database=himalytix_production target=erpdb"), "{all}");

    let ran = verify(&s, &root, "himalytix_production", "latest", "erpdb").output();
    passed(&ran);
    assert!(ran.all().contains(&new), "{}", ran.all());

    // The document's procedure: erpdb replaced by the backup (snapshot first, on this test's
    // own server), rows changed after the backup gone.
    common::exec(&s.url_for("erpdb"), "insert into users (email) values ('after the backup')").await;
    // `BACKUP_DATE="20251018_020000"`: the backup of that time.
    let ran = restore(&s, &root, "himalytix_production", &new_stamp, "erpdb").expect(0);
    assert!(ran.all().contains(&new), "{}", ran.all());
    assert_eq!(restored_rows(&s, "erpdb").await, "300/700", "{}", ran.all());

    let dry = prune_dry(
        &root,
        "himalytix_production",
        &["keep_within=7d", "keep_daily=0", "keep_weekly=0", "keep_monthly=0"],
    );
    assert!(dry.contains(&format!("would delete {old}")), "{dry}");
    s.stop().await;
}

/// The README's "Coming from ..." sections: every `pgdrill run` command there names the
/// shipped runbook's own variables with values it takes (`pgdrill plan` refuses a misspelt
/// variable or a value outside its choices), so the sections cannot drift from the runbooks
/// the tests above drive.
#[test]
fn the_readme_coming_from_sections_commands_plan_against_the_shipped_runbooks() {
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    let start = readme.find("\n## Coming from a shell runbook").expect("the section");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map(|i| i + 3).unwrap_or(section.len())];
    for doc in [
        "ERP backup operations",
        "CRM backup strategy",
        "payments system",
        "multi-tenant platform",
        "ERP restore runbook",
    ] {
        assert!(section.contains(&format!("### Coming from the {doc}")), "{doc}");
    }
    let commands: Vec<&str> =
        section.split('`').skip(1).step_by(2).filter(|c| c.starts_with("pgdrill run ") && !c.contains("...")).collect();
    assert!(commands.len() >= 15, "{commands:?}");
    for c in commands {
        let planned = c.replacen("pgdrill run ", "\"$BIN\" plan ", 1).replace(['[', ']'], "");
        let out = Command::new("bash")
            .args(["-c", &planned])
            .env("BIN", common::bin())
            .current_dir(common::root())
            .stdin(Stdio::null())
            .output()
            .expect("bash");
        assert!(out.status.success(), "{c}: {}", common::text(&out.stderr));
    }
}
