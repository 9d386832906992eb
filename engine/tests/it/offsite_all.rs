//! `offsite` of a whole folder (issue 40 item 6): `--var copy=all` copies every backup of
//! every database that the destination does not have yet, in the folder's own layout, each
//! checked as one copy is; run again after a copy stopped half-way, it copies only what is
//! missing (and the manifest a copy stopped before), keeping what is there.

use std::path::{Path, PathBuf};

use crate::common::{self, tmp_backups, Run};

const KEY: &str = "offsite-all passphrase";

/// Every file under `dir`, relative to it, hidden ones included, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = common::walk(dir)
        .into_iter()
        .filter_map(|p| p.strip_prefix(dir).ok().map(|r| r.display().to_string()))
        .collect();
    v.sort();
    v
}

fn offsite(storage: &Path, to: &Path) -> Run {
    Run::new("offsite").var("storage", storage.display()).var("offsite", to.display()).var("copy", "all").key(KEY)
}

/// Regression: `offsite` copied only the newest backup of one database, where teams sync
/// whole folders.
#[tokio::test(flavor = "multi_thread")]
async fn offsite_copies_every_backup_not_there_yet_and_a_second_run_resumes_a_stopped_one() {
    let Some(s) = common::native_server("app").await else { return };
    common::exec(&s.url_for("app"), "create table t (id int primary key); insert into t select generate_series(1, 50)")
        .await;
    common::exec(&s.url_for("app"), "create database crm").await;
    common::exec(&s.url_for("crm"), "create table c (id int primary key); insert into c values (1)").await;
    let (dir, storage) = tmp_backups();
    for db in ["app", "crm", "app"] {
        Run::new("backup").var("database_url", s.url_for(db)).var("storage", storage.display()).key(KEY).expect(0);
    }
    let source = files(&storage);
    let archives: Vec<&String> = source.iter().filter(|f| f.ends_with(".dump.pgdrill")).collect();
    assert_eq!(archives.len(), 3, "{source:?}");

    let to = dir.path().join("offsite");
    let report = dir.path().join("r1");
    let ran = offsite(&storage, &to).report(&report).expect(0);
    let copy = ran.run_json().main().step("copy_all").clone();
    assert_eq!(copy.outputs["copied"], 3, "{}", ran.all());
    assert_eq!(copy.outputs["present"], 0);
    let copied = files(&to);
    for f in &source {
        let (a, b) = (std::fs::read(storage.join(f)).expect("source"), std::fs::read(to.join(f)).expect(f));
        assert!(a == b, "{f} differs at the destination");
    }
    assert_eq!(copied, source, "the same layout, nothing else (no staging left)");

    // A copy stopped half-way: one backup never went, another went without its manifest.
    let gone: PathBuf = to.join(archives[0]);
    std::fs::remove_file(&gone).expect("rm");
    std::fs::remove_file(format!("{}.manifest.json", gone.display())).expect("rm");
    let half = to.join(archives[1]);
    std::fs::remove_file(format!("{}.manifest.json", half.display())).expect("rm");
    let report = dir.path().join("r2");
    let ran = offsite(&storage, &to).report(&report).expect(0);
    let copy = ran.run_json().main().step("copy_all").clone();
    assert_eq!(copy.outputs["copied"], 1, "only the missing one: {}", ran.all());
    assert_eq!(copy.outputs["present"], 2, "{}", ran.all());
    assert_eq!(files(&to), source, "complete again, the missing manifest written");
    assert!(
        copy.log.iter().any(|l| l.contains("and the same manifest (read back when it was copied, not read again)")),
        "{:?}",
        copy.log
    );
}

/// Regression: `offsite --var copy=all --var offsite_retain=30d` copied every backup and locked
/// none (`backup.sync` took no retention and the runbook dropped the variable), so the copies
/// looked kept while any of them could be deleted. Now it is refused before anything moves.
#[test]
fn offsite_copy_all_silently_ignored_the_retention_it_was_asked_for() {
    let (dir, storage) = tmp_backups();
    std::fs::create_dir_all(storage.join("app")).expect("mkdir");
    std::fs::write(storage.join("app/app-20260101T000000Z.pgdrill"), b"not copied").expect("write");
    let to = dir.path().join("offsite");
    let ran = offsite(&storage, &to).var("offsite_retain", "30d").output();
    assert_eq!(ran.code, Some(2), "{}", ran.all());
    assert!(ran.all().contains("does not set Object Lock retention"), "{}", ran.all());
    assert!(!to.exists() || files(&to).is_empty(), "nothing copied: {:?}", files(&to));
}
