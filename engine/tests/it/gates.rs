//! The gate steps on real filesystems and real backups: storage.space and backup.size_change.

use crate::common::*;

const KEY: &str = "gates-test-backup-key-0123456789";

fn run_gate(dir: &std::path::Path, body: &str) -> std::process::Output {
    let rb = written(dir.join("gate.yaml"), format!("name: gate\nsteps:\n{body}"));
    pgdrill(&["run", rb.to_str().expect("utf-8")]).output().expect("pgdrill")
}

#[test]
fn storage_space_measures_the_real_filesystem_and_fails_below_the_ratio() {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = dir.path().display().to_string();
    let ok = run_gate(
        dir.path(),
        &format!("  - uses: storage.space\n    with: {{ storage: \"{st}\", min_free_ratio: 0.0001 }}\n"),
    );
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    // No filesystem here is 99.9999 % free.
    let full = run_gate(
        dir.path(),
        &format!("  - uses: storage.space\n    with: {{ storage: \"{st}\", min_free_ratio: 0.999999 }}\n"),
    );
    assert_eq!(full.status.code(), Some(1), "{}", text(&full.stdout));
    assert!(text(&full.stdout).contains("is needed: free space or move the backups"), "{}", text(&full.stdout));
    // A storage that is not there is the environment, not a verdict.
    let gone = run_gate(
        dir.path(),
        "  - uses: storage.space\n    with: { storage: /nonexistent/backups, min_free_ratio: 0.1 }\n",
    );
    assert_eq!(gone.status.code(), Some(3), "{}", text(&gone.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn storage_space_holds_free_space_against_a_multiple_of_the_database_size() {
    let Some(srv) = native_server("app").await else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let st = dir.path().display().to_string();
    let url = srv.url();
    let ok = run_gate(dir.path(), &format!("  - uses: storage.space\n    with: {{ storage: \"{st}\", database_size_multiple: 1, database_url: \"{url}\" }}\n"));
    assert!(ok.status.success(), "{}", text(&ok.stdout));
    let huge = run_gate(dir.path(), &format!("  - uses: storage.space\n    with: {{ storage: \"{st}\", database_size_multiple: 1000000000, database_url: \"{url}\" }}\n"));
    assert_eq!(huge.status.code(), Some(1), "{}", text(&huge.stdout));
    assert!(text(&huge.stdout).contains("(the database is"), "{}", text(&huge.stdout));
    assert!(!text(&huge.stdout).contains(&srv.password), "the password reached the log");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_size_change_fails_a_backup_much_larger_than_the_one_before() {
    let Some(srv) = native_server_with("app", "create table t(id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 1000) g").await else { return };
    let (dir, storage) = tmp_backups();
    let st = storage.display().to_string();
    let gate = |max: &str| {
        run_gate(dir.path(), &format!("  - uses: backup.size_change\n    with: {{ storage: \"{st}\", database: app, max_growth: {max}, max_shrink: 0.9 }}\n"))
    };
    backup_to(&srv.url(), &storage, KEY, "app");
    let first = gate("0.5");
    assert!(
        text(&first.stdout).contains("skipped") && first.status.success(),
        "one backup: nothing to compare: {}",
        text(&first.stdout)
    );
    exec(&srv.url(), "insert into t select g, md5(g::text) || md5((g * 7)::text) from generate_series(1001, 60000) g")
        .await;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = Run::new("backup").var("database_url", srv.url()).var("storage", &st).key(KEY).raw();
    assert!(out.status.success(), "{}", text(&out.stdout));
    let grew = gate("0.5");
    assert_eq!(grew.status.code(), Some(1), "{}", text(&grew.stdout));
    assert!(text(&grew.stdout).contains("more than the allowed +50 %"), "{}", text(&grew.stdout));
    let allowed = gate("1000");
    assert!(allowed.status.success(), "{}", text(&allowed.stdout));
    srv.stop().await;
}
