//! Regression tests for state beside the backups that must fail closed (issue 14): folders
//! no two databases share and a picked backup of the database asked for; an unreadable
//! newest manifest and a damaged ledger stop the run loudly instead of choosing or deleting
//! silently; freshness runs even when the restore is skipped; a hostile archive header
//! cannot make pgdrill allocate or spin without bound.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::{junit_cases, pgdrill, status_of, text};

const KEY: &str = "evidence-test passphrase";

fn run_verify(storage: &Path, database: &str, extra: &[&str], junit: &Path) -> std::process::Output {
    let mut args = vec![
        "run".to_string(),
        "verify".into(),
        "--var".into(),
        format!("storage={}", storage.display()),
        "--var".into(),
        format!("database={database}"),
        "--var".into(),
        "provider=native".into(),
        "--junit".into(),
        junit.display().to_string(),
    ];
    for e in extra {
        args.push("--var".into());
        args.push(e.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pgdrill(&args).env("PGDRILL_BACKUP_KEY", KEY).output().expect("verify runs")
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".pgdrill")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn all(out: &std::process::Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_acct_and_dot_acct_shared_a_folder_and_pick_restored_the_wrong_one() {
    let Some(s) = common::native_server("acct").await else { return };
    common::exec(&s.url(), "create database \".acct\"").await;
    common::exec(&s.url(), "create table only_in_acct (id int); insert into only_in_acct values (1)").await;
    common::exec(
        &s.url_for(".acct"),
        "create table only_in_dot_acct (id int); insert into only_in_dot_acct values (2)",
    )
    .await;
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("backups");
    let acct = common::backup_to(&s.url(), &storage, KEY, "acct");
    let dot = common::backup_to(&s.url_for(".acct"), &storage, KEY, "%2Eacct");
    assert_ne!(acct.parent(), dot.parent(), "one folder per database");
    assert_eq!(backups_in(&storage.join("acct")).len(), 1, "`acct` keeps its readable folder name");

    // `backups list` names each database by its real name.
    let listed = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default(), "--json"])
        .output()
        .expect("list");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    let mut dbs: Vec<&str> = listed.as_array().expect("list").iter().filter_map(|b| b["database"].as_str()).collect();
    dbs.sort();
    assert_eq!(dbs, [".acct", "acct"]);

    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "acct", &[], &junit);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(all(&out).contains(&acct.display().to_string()), "{}", all(&out));

    // Storage written by the old scheme: `.acct`'s backup, newer, in `acct`'s folder.
    let planted = acct.with_file_name("29990101T000000.000Z.dump.pgdrill");
    std::fs::copy(&dot, &planted).expect("copy");
    std::fs::copy(pgdrill::storage::manifest_path(&dot), pgdrill::storage::manifest_path(&planted)).expect("copy");
    let out = run_verify(&storage, "acct", &[], &junit);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains("is a backup of database `.acct`, not `acct`"), "{}", all(&out));
    assert_ne!(status_of(&junit_cases(&junit), "restore"), "passed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_newest_manifest_made_latest_pick_an_older_backup() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("backups");
    common::backup_to(&s.url(), &storage, KEY, "shop");
    // A second, newer backup whose manifest is cut short.
    let out = pgdrill(&[
        "run",
        "backup",
        "--var",
        &format!("database_url={}", s.url()),
        "--var",
        &format!("storage={}", storage.display()),
    ])
    .env("PGDRILL_BACKUP_KEY", KEY)
    .output()
    .expect("backup");
    assert!(out.status.success(), "{}", all(&out));
    let newest = backups_in(&storage.join("shop")).pop().expect("two backups");
    let manifest = pgdrill::storage::manifest_path(&newest);
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).expect("truncate");

    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains(&format!("unreadable manifest {}", manifest.display())), "{}", all(&out));
    assert_ne!(status_of(&junit_cases(&junit), "restore"), "passed", "nothing else was verified in its place");

    // An unreadable one (permissions do not stop root: a directory in its place).
    std::fs::remove_file(&manifest).expect("rm");
    std::fs::create_dir(&manifest).expect("dir");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    assert!(all(&out).contains(&manifest.display().to_string()), "{}", all(&out));
    s.stop().await;
}

fn prune(storage: &Path, database: &str) -> std::process::Output {
    pgdrill(&[
        "run",
        "prune",
        "--var",
        &format!("storage={}", storage.display()),
        "--var",
        &format!("database={database}"),
        "--var",
        "keep_daily=0",
        "--var",
        "keep_weekly=0",
        "--var",
        "keep_monthly=0",
        "--var",
        "min_keep=1",
        "--var",
        "apply=true",
    ])
    .output()
    .expect("prune")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_ledger_line_made_prune_delete_the_newest_verified_backup() {
    let Some(s) = common::native_server("erp").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("backups");
    common::backup_to(&s.url(), &storage, KEY, "erp");
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "erp", &[], &junit);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    // Two newer, never verified backups: the verified one is kept only as "newest verified".
    for _ in 0..2 {
        let out = pgdrill(&[
            "run",
            "backup",
            "--var",
            &format!("database_url={}", s.url()),
            "--var",
            &format!("storage={}", storage.display()),
        ])
        .env("PGDRILL_BACKUP_KEY", KEY)
        .output()
        .expect("backup");
        assert!(out.status.success(), "{}", all(&out));
    }
    let dir = storage.join("erp");
    let ledger = dir.join("ledger.jsonl");
    let good = std::fs::read(&ledger).expect("ledger");
    for (what, damaged) in [
        ("a stray byte", [&b"\x00"[..], &good].concat()),
        ("a BOM", [&b"\xEF\xBB\xBF"[..], &good].concat()),
        ("a line cut in the middle", [&good[..good.len() / 2], b"\n", &good].concat()),
    ] {
        std::fs::write(&ledger, &damaged).expect("damage");
        let out = prune(&storage, "erp");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", all(&out));
        assert!(all(&out).contains(&format!("{}:1: ", ledger.display())), "{what}: {}", all(&out));
        assert_eq!(backups_in(&dir).len(), 3, "{what}: nothing deleted");
        // Nor does verify take it as "never verified" silently.
        let out = run_verify(&storage, "erp", &[], &junit);
        assert_eq!(out.status.code(), Some(1), "{what}: {}", all(&out));
    }

    // A torn last line (a crash while appending) is the one damage that is recoverable.
    let oldest = backups_in(&dir).remove(0);
    std::fs::write(&ledger, [&good[..], &good[..good.len() / 2]].concat()).expect("torn");
    let out = prune(&storage, "erp");
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    let left = backups_in(&dir);
    assert!(left.contains(&oldest), "the newest verified backup survives: {left:?}");
    assert_eq!(left.len(), 2, "{}", all(&out));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn freshness_was_skipped_with_the_restore_of_an_already_verified_backup() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("backups");
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    // Verified, and then no new backup: the next run skips the restore but not max_age (the
    // pause only makes the backup at least a second old, so max_age 0s is exceeded).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run_verify(&storage, "shop", &["max_age=0s"], &junit);
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "restore"), "skipped", "{cases:?}");
    assert_eq!(status_of(&cases, "freshness"), "failure", "{cases:?}");
    assert_eq!(out.status.code(), Some(1), "{}", all(&out));
    s.stop().await;
}

#[test]
fn a_huge_argon2_cost_in_an_archive_header_aborted_or_hung_the_process() {
    let t = tempfile::tempdir().expect("tmp");
    for (m, tc, what) in [(u32::MAX, 2, "m_cost"), (19 * 1024, u32::MAX, "t_cost")] {
        let header = serde_json::json!({
            "codec": "zstd", "cipher": "aes-256-gcm",
            "kdf": { "alg": "argon2id", "salt": "00112233445566778899aabbccddeeff", "m_cost": m, "t_cost": tc, "p_cost": 1 },
            "chunk_size": 1048576, "nonce_prefix": "00000000000000", "key_check": "00000000000000000000000000000000"
        })
        .to_string();
        let path = t.path().join(format!("{what}.dump.pgdrill"));
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(b"PGDRILL\x00\x01").expect("w");
        f.write_all(&(header.len() as u32).to_be_bytes()).expect("w");
        f.write_all(header.as_bytes()).expect("w");
        drop(f);
        let out = pgdrill(&["decrypt", path.to_str().unwrap_or_default()])
            .env("PGDRILL_BACKUP_KEY", KEY)
            .stdout(std::process::Stdio::piped())
            .output()
            .expect("decrypt");
        assert_eq!(out.status.code(), Some(1), "{what}: {}", all(&out));
        assert!(text(&out.stderr).contains(&format!("Argon2id {what}")), "{what}: {}", all(&out));
        assert!(text(&out.stderr).contains("corrupted or hostile archive header"), "{}", all(&out));
    }
}
