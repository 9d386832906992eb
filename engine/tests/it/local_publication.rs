//! A backup to a local folder killed at each phase of its publication (issue 35, case 4 on
//! local storage): nothing half-written under a final name, and what a killed backup leaves
//! is never listed, picked or verified as a backup; the next run and prune clear it.

use std::path::{Path, PathBuf};

use crate::common::*;

const KEY: &str = "local-publication-backup-key-0123456789";

/// Every file under `storage/shop` (hidden ones too), by name relative to it.
fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> =
        walk(dir).iter().map(|p| p.strip_prefix(dir).unwrap_or(p).display().to_string()).collect();
    out.sort();
    out
}

fn archives(dir: &Path) -> Vec<String> {
    files(dir).into_iter().filter(|f| !f.starts_with('.') && f.ends_with(".dump.pgdrill")).collect()
}

/// Before: the kill -9 of a backup was tested on S3 only (a unit test for local folders),
/// and `backups list` showed nothing of an archive without its manifest, so an operator
/// could not see the debris prune would remove. Killed (by the debug build's pause hook, not
/// by a timing) with its archive written whole in its private partial file, after its
/// rename to the final name, and after its manifest: the partial is hidden and the next
/// backup removes it; the orphan is listed apart as unfinished, never as a backup, never
/// picked, and prune removes it; the committed backup is listed, verified and kept.
#[tokio::test(flavor = "multi_thread")]
async fn a_local_backup_killed_at_each_phase_left_an_orphan_that_backups_list_did_not_show() {
    let data = "create table t(id int primary key); insert into t select generate_series(1, 500)";
    let Some((srv, tmp, storage)) = source_and_storage("shop", data).await else { return };
    let url = srv.url();
    let folder = storage.join("shop");
    let backup = || Run::new("backup").var("database_url", &url).var("storage", storage.display()).key(KEY);
    let kill_at = |phase: &str| -> Vec<String> {
        let before = files(&folder);
        kill_paused_at(backup().command(), phase, &tmp.path().join(phase));
        files(&folder).into_iter().filter(|f| !before.contains(f)).collect()
    };

    // 1. Killed with the archive written whole, before its rename: nothing under a final
    // name, only a hidden partial file.
    let new = kill_at("backup-written");
    assert!(!new.is_empty(), "the partial file is on disk: {new:?}");
    for f in &new {
        assert!(f.starts_with(".pgdrill-partial-"), "only hidden partial files: {new:?}");
    }
    assert!(archives(&folder).is_empty(), "nothing under a final name: {:?}", files(&folder));
    let partial = new.clone();

    // 2. A committed backup; 3. one killed after its rename, before its manifest.
    let committed: Vec<String> = kill_at("backup-committed").into_iter().filter(|f| !f.starts_with('.')).collect();
    assert_eq!(committed.len(), 2, "archive and manifest: {committed:?}");
    let complete = committed.iter().find(|f| f.ends_with(".dump.pgdrill")).expect("archive").clone();
    // The committed run made its own partial directory and removed the dead one's.
    for p in &partial {
        assert!(!folder.join(p).exists(), "the killed backup's partial file was reaped: {p}");
    }
    let orphan: Vec<String> = kill_at("backup-uploaded").into_iter().filter(|f| !f.starts_with('.')).collect();
    assert_eq!(orphan.len(), 1, "the archive alone, no manifest: {orphan:?}");
    let orphan = orphan[0].clone();
    assert!(orphan.ends_with(".dump.pgdrill"), "{orphan}");
    assert!(!folder.join(format!("{orphan}.manifest.json")).exists());

    // Listed: the complete backup as a row; the orphan only apart, marked unfinished.
    let list = Run::cli(["backups", "list", "--storage"]).arg(&storage).expect(0);
    let (table, apart) = list.stdout.split_once("NOT BACKUPS: 1 unfinished archive").unwrap_or_else(|| {
        panic!("the orphan is shown apart: {}", list.stdout);
    });
    assert!(table.contains(&complete), "{}", list.stdout);
    assert!(!table.contains(&orphan), "the orphan is never a row of the table: {}", list.stdout);
    let line = apart.lines().find(|l| l.contains(&orphan)).unwrap_or_else(|| panic!("{}", list.stdout));
    assert!(line.trim_start().starts_with("unfinished") && line.contains("shop"), "{line}");
    let json = Run::cli(["backups", "list", "--json", "--storage"]).arg(&storage).expect(0);
    let listed: serde_json::Value = serde_json::from_str(json.stdout.trim()).expect("json");
    let paths: Vec<PathBuf> =
        listed.as_array().expect("array").iter().filter_map(|e| e["path"].as_str()).map(PathBuf::from).collect();
    assert_eq!(paths, [folder.join(&complete)], "{}", json.stdout);
    assert!(
        json.stderr.contains("warning: NOT BACKUPS: 1 unfinished archive") && json.stderr.contains(&orphan),
        "{}",
        json.stderr
    );

    // Picked and verified: the complete backup; the orphan named as passed over.
    let verify = Run::verify_native(storage.display(), "shop").key(KEY);
    let ran = verify.expect(0);
    assert!(ran.all().contains(&complete), "verified the complete backup: {}", ran.all());
    assert!(ran.all().contains(&format!("not taking {}: unfinished", folder.join(&orphan).display())), "{}", ran.all());

    // Pruned: kept while young, removed once old enough; the backup stays.
    let prune = |after: &str| prune_abandoned(&storage, after);
    let ran = prune("24h");
    assert!(ran.all().contains(&format!("keep   {orphan} (unfinished: no manifest")), "{}", ran.all());
    assert!(folder.join(&orphan).exists());
    prune("0s");
    assert_eq!(archives(&folder), [complete], "only the complete backup is left: {:?}", files(&folder));
    let list = Run::cli(["backups", "list", "--storage"]).arg(&storage).expect(0);
    assert!(!list.stdout.contains("NOT BACKUPS"), "{}", list.stdout);
    srv.stop().await;
}
