//! Key rotation on a real server (issue 40 item 3): a backup written with key A, a rotation
//! to key B (the newest key first, the old one in a second variable), both backups verifying
//! with the keyring while the old one fails with B alone; the key used named by its
//! fingerprint in the log and the manifest, never the key; `pgdrill rekey` moving the old
//! backup to B (verified under B alone afterwards), and a rekey interrupted after publishing
//! finished by the next run.

use std::path::{Path, PathBuf};

use crate::common::{self, made_dir, Run, KEY_ENV};

const KEY_A: &str = "4f1c9a7e2b6d08c35e91a2b47d6f0c8e13a5b7d9f0e2c4a6b8d0f1e3a5c7b9d1";
const KEY_B: &str = "rotation key B, a passphrase of the new quarter";

fn fingerprint(key: &str) -> String {
    pgdrill::testkit::archive::KeySource::from_secret(key).fingerprint()
}

fn manifest(path: &Path) -> serde_json::Value {
    common::read_json(&PathBuf::from(format!("{}.manifest.json", path.display())))
}

/// The pgdrill backups in `folder`, by name.
fn archives(folder: &Path) -> Vec<PathBuf> {
    common::files_ending(folder, ".dump.pgdrill")
}

fn backup(url: &str, storage: &Path, env: &[(&str, &str)]) -> Run {
    let mut run = Run::new("backup").var("database_url", url).var("storage", storage.display());
    for (k, v) in env {
        run = run.env(k, v);
    }
    run
}

fn verify(storage: &Path, name: &str) -> Run {
    Run::verify_native(storage.display(), "shop").var("backup", name).env_remove("PGDRILL_BACKUP_KEY_PREVIOUS")
}

/// The log of a verify run's integrity check, from its run.json.
fn integrity_log(ran: &common::Ran) -> String {
    ran.run_json().main().step("integrity").log.join("\n")
}

fn name_of(p: &Path) -> String {
    p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_key_rotation_old_and_new_backups_verify_with_the_keyring_and_rekey_moves_the_old_ones() {
    let data = "create table marker (id int primary key, note text); insert into marker select g, 'row ' || g from generate_series(1, 200) g;";
    let Some((s, dir, storage)) = common::source_and_storage("shop", data).await else { return };
    let folder = storage.join("shop");
    let (fp_a, fp_b) = (fingerprint(KEY_A), fingerprint(KEY_B));
    assert_ne!(fp_a, fp_b);

    // Before the rotation: key A.
    let first = backup(&s.url(), &storage, &[(KEY_ENV, KEY_A)]).expect(0);
    assert!(first.all().contains(&format!("encrypted with key {fp_a}")), "{}", first.all());
    let old = archives(&folder).pop().expect("the first backup");
    assert_eq!(manifest(&old)["key_fingerprint"], fp_a.as_str());

    // After it: B writes, A (in the second variable the runbooks read) is kept for reading.
    common::exec(&s.url(), "insert into marker values (201, 'after the rotation')").await;
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = backup(&s.url(), &storage, &[(KEY_ENV, KEY_B), ("PGDRILL_BACKUP_KEY_PREVIOUS", KEY_A)]).expect(0);
    assert!(second.all().contains(&format!("encrypted with key {fp_b}")), "{}", second.all());
    let new = archives(&folder).into_iter().find(|p| *p != old).expect("the second backup");
    assert_eq!(manifest(&new)["key_fingerprint"], fp_b.as_str());
    for ran in [&first, &second] {
        assert!(!ran.all().contains(KEY_A) && !ran.all().contains(KEY_B), "a key leaked: {}", ran.all());
    }

    // The old backup with the new key alone: what every old backup did after a rotation.
    let alone = verify(&storage, &name_of(&old)).key(KEY_B).expect(1);
    assert!(alone.all().contains("wrong key"), "{}", alone.all());

    // With the keyring (a file of one key per line, newest first), both verify, each naming
    // the key that opened it.
    let ring = format!("# rotated 2026-12\n{KEY_B}\n\n{KEY_A}\n");
    for (i, (backup, fp)) in [(&old, &fp_a), (&new, &fp_b)].into_iter().enumerate() {
        let report = dir.path().join(format!("report-{i}"));
        let ran = verify(&storage, &name_of(backup)).key(&ring).report(&report).expect(0);
        assert!(integrity_log(&ran).contains(&format!("read with key {fp}")), "{}", integrity_log(&ran));
        let json = std::fs::read_to_string(report.join("run.json")).expect("run.json");
        for text in [ran.all(), json] {
            assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "a key leaked: {text}");
        }
    }

    // A copy of the old pair, to stage a rekey killed after it published the new file.
    let kept = made_dir(dir.path().join("kept"));
    for p in [old.clone(), PathBuf::from(format!("{}.manifest.json", old.display()))] {
        std::fs::copy(&p, kept.join(p.file_name().expect("name"))).expect("copy");
    }

    // rekey: the old backup moves to B; the new one is already there.
    let rekeyed = Run::cli(["rekey", "--storage"]).arg(&storage).key(&ring).expect(0);
    let out = rekeyed.all();
    assert!(out.contains(&format!("moved from key {fp_a} to key {fp_b}")), "{out}");
    assert!(out.contains(&format!("already under key {fp_b}")), "{out}");
    assert!(out.contains("1 moved, 0 failed, of 2 backups"), "{out}");
    assert!(!out.contains(KEY_A) && !out.contains(KEY_B), "a key leaked: {out}");
    assert!(!old.exists(), "the old file is replaced");
    let after = archives(&folder);
    assert_eq!(after.len(), 2, "{after:?}");
    let moved = after.iter().find(|p| **p != new).expect("the moved backup").clone();
    assert_eq!(manifest(&moved)["key_fingerprint"], fp_b.as_str());
    assert!(common::staged_leftovers(&storage).is_empty(), "{:?}", common::staged_leftovers(&storage));

    // Key A can be retired: the moved backup verifies with B alone.
    let ran = verify(&storage, &name_of(&moved)).key(KEY_B).report(dir.path().join("report-moved")).expect(0);
    assert!(integrity_log(&ran).contains(&format!("read with key {fp_b}")), "{}", integrity_log(&ran));

    // A rekey killed after publishing leaves both files whole; the next run removes the old.
    for f in std::fs::read_dir(&kept).expect("kept").flatten() {
        std::fs::copy(f.path(), folder.join(f.file_name())).expect("restore the copy");
    }
    assert_eq!(archives(&folder).len(), 3);
    let again = Run::cli(["rekey", "--storage"]).arg(&storage).key(&ring).expect(0);
    assert!(again.all().contains("an interrupted rekey had published"), "{}", again.all());
    assert_eq!(archives(&folder), after, "the old copy removed, nothing else");
    assert!(!PathBuf::from(format!("{}.manifest.json", old.display())).exists());
}

/// Copy every file of `from` into `to` (one folder level, as a backup folder is).
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

/// A rekey killed with SIGKILL at each point of its publishing (it sends itself the signal
/// there, in debug builds, when PGDRILL_REKEY_STOP names the point) leaves the old backup whole or the new one whole, never
/// a half-written file under a final name; the next rekey finishes, leaving one backup under
/// the new key and nothing else.
#[tokio::test(flavor = "multi_thread")]
async fn a_rekey_killed_at_any_point_leaves_a_whole_backup_and_the_next_one_finishes() {
    let data = "create table marker (id int primary key); insert into marker select generate_series(1, 100)";
    let Some(s) = common::native_server_with("shop", data).await else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let made = dir.path().join("made");
    backup(&s.url(), &made, &[(KEY_ENV, KEY_A)]).expect(0);
    let ring_text = format!("{KEY_B}\n{KEY_A}");
    let ring = pgdrill::testkit::archive::KeySource::from_secret(&ring_text);
    let newest = pgdrill::testkit::archive::KeySource::from_secret(KEY_B);
    for point in ["staged", "manifest", "published", "removed"] {
        let storage = dir.path().join(point);
        let folder = storage.join("shop");
        copy_folder(&made.join("shop"), &folder);
        let killed =
            Run::cli(["rekey", "--storage"]).arg(&storage).key(&ring_text).env("PGDRILL_REKEY_STOP", point).output();
        assert_eq!(killed.code, None, "{point}: it was not killed there: {}", killed.all());
        // Every archive under a final name that has its manifest is whole and opens.
        let whole: Vec<PathBuf> = archives(&folder)
            .into_iter()
            .filter(|p| PathBuf::from(format!("{}.manifest.json", p.display())).exists())
            .collect();
        assert!(!whole.is_empty(), "{point}: neither the old nor the new backup is whole: {:?}", archives(&folder));
        for p in &whole {
            pgdrill::testkit::backup::check(p, Some(&ring))
                .unwrap_or_else(|e| panic!("{point}: {} does not read: {e}", p.display()));
        }
        // The next rekey finishes the job: one backup, under the new key alone.
        let again = Run::cli(["rekey", "--storage"]).arg(&storage).key(&ring_text).expect(0);
        let left = archives(&folder);
        assert_eq!(left.len(), 1, "{point}: {left:?}\n{}", again.all());
        assert_eq!(manifest(&left[0])["key_fingerprint"], fingerprint(KEY_B).as_str(), "{point}");
        pgdrill::testkit::backup::check(&left[0], Some(&newest)).unwrap_or_else(|e| panic!("{point}: {e}"));
        let manifests = std::fs::read_dir(&folder)
            .expect("folder")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
            .count();
        assert_eq!(manifests, 1, "{point}: a manifest was left without its backup");
        assert!(common::staged_leftovers(&folder).is_empty(), "{point}: {:?}", common::staged_leftovers(&folder));
    }
}

/// `pgdrill doctor` names a keyring's keys by fingerprint, the writing one first, never by value.
#[test]
fn doctor_names_a_keyring_s_keys_by_fingerprint_never_by_value() {
    let ran = Run::cli(["doctor"]).key(&format!("{KEY_B}\n{KEY_A}")).env_remove("PGDRILL_STORAGE").output();
    let all = ran.all();
    let line = all.lines().find(|l| l.contains("backup key (PGDRILL_BACKUP_KEY)")).unwrap_or_default();
    assert!(line.starts_with("ok"), "{all}");
    let (b, a) = (fingerprint(KEY_B), fingerprint(KEY_A));
    assert!(
        line.contains(&format!(
            "a keyring of 2 keys; new backups are written with key {b}, older ones also read with {a}"
        )),
        "{all}"
    );
    assert!(!all.contains(KEY_A) && !all.contains(KEY_B), "a key was printed: {all}");
}
