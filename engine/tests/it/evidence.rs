//! Regression tests for state beside the backups that must fail closed (issue 14): folders
//! no two databases share and a picked backup of the database asked for; an unreadable
//! newest manifest and a damaged ledger stop the run loudly instead of choosing or deleting
//! silently; freshness runs even when the restore is skipped; a hostile archive header
//! cannot make pgdrill allocate or spin without bound.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::common;
use crate::common::{junit_cases, pgdrill, status_of, text, tmp_backups, written, Ran, Run, SmallDisk, KEY_ENV};

const KEY: &str = "evidence-test passphrase";

fn run_verify(storage: &Path, database: &str, extra: &[&str], junit: &Path) -> Ran {
    verify_run(storage, database, extra, junit).output()
}

/// `pgdrill run verify` of `database` in `storage` on the native provider, with the key, not run yet.
fn verify_run(storage: &Path, database: &str, extra: &[&str], junit: &Path) -> Run {
    Run::verify_native(storage.display(), database).junit(junit).vars(extra).key(KEY)
}

/// A server with database `shop` holding table `t` with one row, a temporary folder, and a
/// backup of `shop` (with [`KEY`]) in its `backups` folder: the storage and the backup.
async fn shop_backed_up() -> Option<(pgdrill::testkit::pg::ephemeral::Ephemeral, tempfile::TempDir, PathBuf, PathBuf)> {
    let s = common::native_server("shop").await?;
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let (t, storage) = tmp_backups();
    let backup = common::backup_to(&s.url(), &storage, KEY, "shop");
    Some((s, t, storage, backup))
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

/// The runbook file `rb` run with the key: it must fail (exit 1) saying `expect` (`what`
/// names the case in a failure).
fn fails_saying(rb: &Path, expect: &str, what: &str) {
    let out = pgdrill(&["run", rb.to_str().unwrap_or_default()]).env("PGDRILL_BACKUP_KEY", KEY).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{what}: {}", all(&out));
    assert!(all(&out).contains(expect), "{what}: {}", all(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn databases_acct_and_dot_acct_shared_a_folder_and_pick_restored_the_wrong_one() {
    let Some(s) = common::native_server_with("acct", "create database \".acct\"").await else { return };
    common::exec(&s.url(), "create table only_in_acct (id int); insert into only_in_acct values (1)").await;
    common::exec(
        &s.url_for(".acct"),
        "create table only_in_dot_acct (id int); insert into only_in_dot_acct values (2)",
    )
    .await;
    let (t, storage) = tmp_backups();
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
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.all().contains(&acct.display().to_string()), "{}", out.all());

    // Storage written by the old scheme: `.acct`'s backup, newer, in `acct`'s folder (a
    // minute ahead: within the clock tolerance, so it is the latest).
    let soon = time::OffsetDateTime::now_utc() + std::time::Duration::from_secs(60);
    let stamp = pgdrill::testkit::util::compact_utc(soon.replace_millisecond(0).expect("a whole second"), true);
    let planted = acct.with_file_name(format!("{stamp}.dump.pgdrill"));
    std::fs::copy(&dot, &planted).expect("copy");
    std::fs::copy(
        pgdrill::testkit::backup::layout::manifest_path(&dot),
        pgdrill::testkit::backup::layout::manifest_path(&planted),
    )
    .expect("copy");
    let out = run_verify(&storage, "acct", &[], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("is a backup of database `.acct`, not `acct`"), "{}", out.all());
    assert_ne!(status_of(&junit_cases(&junit), "restore"), "passed");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_newest_manifest_made_latest_pick_an_older_backup() {
    let Some((s, t, storage, _)) = shop_backed_up().await else { return };
    // A second, newer backup whose manifest is cut short.
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let newest = backups_in(&storage.join("shop")).pop().expect("two backups");
    let manifest = pgdrill::testkit::backup::layout::manifest_path(&newest);
    let bytes = std::fs::read(&manifest).expect("manifest");
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).expect("truncate");

    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains(&format!("unreadable manifest {}", manifest.display())), "{}", out.all());
    assert_ne!(status_of(&junit_cases(&junit), "restore"), "passed", "nothing else was verified in its place");

    // An unreadable one (permissions do not stop root: a directory in its place).
    std::fs::remove_file(&manifest).expect("rm");
    std::fs::create_dir(&manifest).expect("dir");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains(&manifest.display().to_string()), "{}", out.all());
    s.stop().await;
}

fn prune(storage: &Path, database: &str) -> std::process::Output {
    Run::new("prune")
        .var("storage", storage.display())
        .var("database", database)
        .vars(&["keep_daily=0", "keep_weekly=0", "keep_monthly=0", "min_keep=1", "apply=true"])
        .command()
        .output()
        .expect("prune")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_ledger_line_made_prune_delete_the_newest_verified_backup() {
    let Some(s) = common::native_server("erp").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let (t, storage) = tmp_backups();
    common::backup_to(&s.url(), &storage, KEY, "erp");
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "erp", &[], &junit);
    assert_eq!(out.code, Some(0), "{}", out.all());
    // Two newer, never verified backups: the verified one is kept only as "newest verified".
    for _ in 0..2 {
        common::backup_to(&s.url(), &storage, KEY, "erp");
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
        assert_eq!(out.code, Some(1), "{what}: {}", out.all());
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
    let Some((s, t, storage, _)) = shop_backed_up().await else { return };
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.code, Some(0), "{}", out.all());
    // Verified, and then no new backup: the next run skips the restore but not max_age (the
    // pause only makes the backup at least a second old, so max_age 0s is exceeded).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = run_verify(&storage, "shop", &["max_age=0s"], &junit);
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "restore"), "skipped", "{cases:?}");
    assert_eq!(status_of(&cases, "freshness"), "failure", "{cases:?}");
    assert_eq!(out.code, Some(1), "{}", out.all());
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

#[tokio::test(flavor = "multi_thread")]
async fn a_disk_full_while_verify_staged_was_recorded_as_a_failed_backup() {
    // ~40 MB of plaintext that compresses to almost nothing: the backup fits on the small
    // disk, the plaintext staged for a parallel restore does not.
    let data =
        "create table t (id int, pad text); insert into t select g, repeat('x', 1000) from generate_series(1, 40000) g";
    let Some(s) = common::native_server_with("shop", data).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let Some(disk) = SmallDisk::mount(&t.path().join("small"), "8m") else { return };
    let storage = disk.0.join("backups");
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let junit = t.path().join("v.xml");
    // Staged beside the backup (`staging=""`): `auto` would stage so small a dump in memory.
    let out = run_verify(&storage, "shop", &["jobs=2", "staging="], &junit);
    assert_eq!(out.code, Some(3), "{}", out.all());
    assert!(out.all().contains("No space left on device"), "{}", out.all());
    assert_eq!(status_of(&junit_cases(&junit), "integrity"), "error");
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let line: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap_or("{}")).expect("json");
    assert_eq!(line["result"], "error", "{ledger}");
    assert!(line["error"].as_str().unwrap_or_default().contains("No space left"), "{ledger}");
    assert!(common::staged_leftovers(&storage.join("shop")).is_empty());
    drop(disk);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_openssl_binary_was_recorded_as_a_failed_backup() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let t = tempfile::tempdir().expect("tmp");
    let file = t.path().join("shop.sql.enc");
    let pg_dump =
        std::process::Command::new("/usr/lib/postgresql/15/bin/pg_dump").arg(s.url()).output().expect("pg_dump");
    assert!(pg_dump.status.success());
    let mut enc = std::process::Command::new("openssl")
        .args(["enc", "-aes-256-cbc", "-pbkdf2", "-pass", "env:P", "-out"])
        .arg(&file)
        .env("P", KEY)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    enc.stdin.take().expect("stdin").write_all(&pg_dump.stdout).expect("write");
    assert!(enc.wait().expect("openssl").success());
    // Everything on PATH but openssl.
    let bin = t.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    for dir in ["/usr/local/bin", "/usr/bin", "/bin"] {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if name != "openssl" && !bin.join(&name).exists() {
                let _ = std::os::unix::fs::symlink(e.path(), bin.join(&name));
            }
        }
    }
    let junit = t.path().join("v.xml");
    let out = Run::new("verify")
        .var("backup", file.display())
        .var("provider", "native")
        .junit(&junit)
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env("PATH", &bin)
        .output()
        .expect("verify");
    assert_eq!(out.status.code(), Some(3), "{}", all(&out));
    assert!(all(&out).contains("cannot run openssl"), "{}", all(&out));
    assert_eq!(status_of(&junit_cases(&junit), "integrity"), "error");
    let ledger = std::fs::read_to_string(t.path().join("ledger.jsonl")).expect("ledger");
    assert!(ledger.contains("\"result\":\"error\""), "{ledger}");
    s.stop().await;
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// The private directories (`.pgdrill-<kind>-*`) in `dir`.
fn private_dirs(dir: &Path, kind: &str) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!(".pgdrill-{kind}-")))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Wait (without a deadline of our own: nextest's timeout ends a hang) until `f` holds.
fn wait_for(mut f: impl FnMut() -> bool) {
    while !f() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn staged_plaintext_and_partial_backups_were_world_readable_and_survived_a_kill_9() {
    let data =
        "create table t (id int, pad text); insert into t select g, md5(g::text) from generate_series(1, 20000) g";
    let Some((s, t, storage)) = common::source_and_storage("shop", data).await else { return };
    let backup = common::backup_to(&s.url(), &storage, KEY, "shop");
    let folder = storage.join("shop");

    // Staged plaintext: backup.check keeps it for the rest of the runbook; kill -9 then.
    let runbook = written(
        t.path().join("stage.yaml"),
        format!(
            "name: stage\nvars:\n  pause: 0s\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - id: check\n    uses: backup.check\n    with: {{ path: \"{}\", key: \"{{{{ secrets.key }}}}\", stage: true }}\n  - uses: sleep\n    with: {{ duration: \"{{{{ vars.pause }}}}\" }}\n",
            backup.display()
        ),
    );
    let mut child = Run::new(&runbook)
        .var("pause", "10m")
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    wait_for(|| private_dirs(&folder, "stage").iter().any(|d| d.join("staged.dump").exists()));
    let staged = private_dirs(&folder, "stage").remove(0);
    assert_eq!(mode(&staged), 0o700, "{}", staged.display());
    assert_eq!(mode(&staged.join("staged.dump")), 0o600);
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    assert!(staged.exists(), "a kill -9 leaves it behind");
    // The next start that stages there reaps it (its owner is gone) and cleans up after itself.
    let out =
        pgdrill(&["run", runbook.to_str().unwrap_or_default()]).env("PGDRILL_BACKUP_KEY", KEY).output().expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", all(&out));
    assert!(!staged.exists(), "reaped");
    assert!(common::staged_leftovers(&folder).is_empty(), "{:?}", common::staged_leftovers(&folder));

    // A partial backup: pg_dump stalls after some output (it never ends by itself: the
    // test kills it); kill -9 pgdrill while the partial file exists.
    let real = "/usr/lib/postgresql/15/bin/pg_dump";
    let pidfile = t.path().join("pg_dump.pid");
    let fake = written(
        t.path().join("pg_dump"),
        format!("#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\necho $$ > {}\nhead -c 200000 /dev/urandom\nexec sleep 600\n", pidfile.display()),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let create = written(
        t.path().join("create.yaml"),
        format!(
            "name: create\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - uses: backup.create\n    with: {{ database_url: \"{}\", storage: \"{}\", key: \"{{{{ secrets.key }}}}\", pg_dump: \"{}\" }}\n",
            s.url(),
            storage.display(),
            fake.display()
        ),
    );
    let mut child = pgdrill(&["run", create.to_str().unwrap_or_default()])
        .env("PGDRILL_BACKUP_KEY", KEY)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run");
    wait_for(|| {
        pidfile.exists()
            && private_dirs(&folder, "partial")
                .iter()
                .any(|d| std::fs::read_dir(d).into_iter().flatten().flatten().next().is_some())
    });
    let partial = private_dirs(&folder, "partial").remove(0);
    assert_eq!(mode(&partial), 0o700);
    for f in std::fs::read_dir(&partial).expect("partial").flatten() {
        assert_eq!(mode(&f.path()), 0o600, "{}", f.path().display());
        assert!(f.file_name().to_string_lossy().ends_with(".partial"));
    }
    child.kill().expect("kill -9");
    child.wait().expect("wait");
    // pg_dump runs in its own process group: it outlives a kill -9 of pgdrill; end it here.
    let pid: i32 = std::fs::read_to_string(&pidfile).expect("pid").trim().parse().expect("pid");
    let _ = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(partial.exists(), "a kill -9 leaves it behind");
    common::backup_to(&s.url(), &storage, KEY, "shop");
    assert!(!partial.exists(), "the next backup into the folder reaped it");
    assert!(private_dirs(&folder, "partial").is_empty());
    s.stop().await;
}

fn edit_manifest(backup: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = pgdrill::testkit::backup::layout::manifest_path(backup);
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).expect("manifest")).expect("json");
    f(v.as_object_mut().expect("object"));
    std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_manifest_of_an_encrypted_backup_was_trusted() {
    let Some((s, t, storage, backup)) = shop_backed_up().await else { return };
    let original = std::fs::read(pgdrill::testkit::backup::layout::manifest_path(&backup)).expect("manifest");
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.code, Some(0), "{}", out.all());
    assert!(out.all().contains("manifest authenticated"), "{}", out.all());
    let listed = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default(), "--json"])
        .output()
        .expect("list");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(listed[0]["manifest_auth"], "mac", "{listed}");

    type Edit = fn(&mut serde_json::Map<String, serde_json::Value>);
    let edits: [(&str, Edit, &str); 5] = [
        // A stale backup made to look fresh: the skip path (already verified) trusted it.
        (
            "finished_at in the future",
            |m| {
                m.insert("finished_at".into(), "2999-01-01T00:00:00Z".into());
            },
            "fails authentication",
        ),
        (
            "database renamed",
            |m| {
                m.insert("database".into(), "other".into());
            },
            "fails authentication",
        ),
        (
            "MAC removed",
            |m| {
                m.remove("authentication");
            },
            "has no MAC",
        ),
        (
            "claims not encrypted",
            |m| {
                m.remove("authentication");
                m.insert("cipher".into(), "none".into());
            },
            "the manifest was changed",
        ),
        (
            "fingerprint changed",
            |m| {
                m["fingerprint"]["schema_hash"] = "0".repeat(64).into();
            },
            "fails authentication",
        ),
    ];
    for (what, edit, expect) in edits {
        std::fs::write(pgdrill::testkit::backup::layout::manifest_path(&backup), &original).expect("restore manifest");
        edit_manifest(&backup, edit);
        let out = run_verify(&storage, "shop", &[], &junit);
        assert_eq!(out.code, Some(1), "{what}: {}", out.all());
        assert!(out.all().contains(expect), "{what}: {}", out.all());
        let cases = junit_cases(&junit);
        assert_eq!(status_of(&cases, "pick"), "failure", "{what}: {cases:?}");
        assert_ne!(status_of(&cases, "freshness"), "passed", "{what}: {cases:?}");
        // backup.check (the backup runbook's own check) refuses it too.
        let check = written(
            t.path().join("check.yaml"),
            format!(
                "name: check\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - uses: backup.check\n    with: {{ path: \"{}\", key: \"{{{{ secrets.key }}}}\" }}\n",
                backup.display()
            ),
        );
        fails_saying(&check, expect, what);
    }
    // A manifest moved from another backup of the same database does not fit this archive.
    std::fs::write(pgdrill::testkit::backup::layout::manifest_path(&backup), &original).expect("restore manifest");
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let newest = backups_in(&storage.join("shop")).pop().expect("newest");
    std::fs::copy(
        pgdrill::testkit::backup::layout::manifest_path(&backup),
        pgdrill::testkit::backup::layout::manifest_path(&newest),
    )
    .expect("copy");
    let out = run_verify(&storage, "shop", &[], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("fails authentication"), "{}", out.all());
    s.stop().await;
}

/// How these tests make an unencrypted backup through the library: custom format, zstd, one
/// thread and one job.
fn unencrypted(url: &str, storage: &std::path::Path) -> pgdrill::testkit::backup::CreateOptions {
    let (format, codec) = (pgdrill::testkit::backup::Format::Custom, pgdrill::testkit::archive::Codec::Zstd);
    pgdrill::testkit::backup::CreateOptions {
        threads: 1,
        jobs: 1,
        ..common::create_options(url, storage, format, codec, None)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unencrypted_backup_did_not_say_its_manifest_is_unauthenticated() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (id int); insert into t values (1)").await;
    let (t, storage) = tmp_backups();
    let opts = unencrypted(&s.url(), &storage);
    let created = pgdrill::testkit::backup::create(opts, &|_| {}).await.expect("backup");
    assert!(created.manifest.authentication.is_none());
    let out = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default()]).output().expect("list");
    let listing = text(&out.stdout);
    assert!(listing.lines().next().unwrap_or_default().contains("manifest"), "{listing}");
    assert!(listing.lines().nth(1).unwrap_or_default().contains(" UNAUTH "), "{listing}");
    let junit = t.path().join("v.xml");
    let out = verify_run(&storage, "shop", &[], &junit).env_remove(KEY_ENV).output();
    assert_eq!(out.code, Some(0), "{}", out.all());
    let report = std::fs::read_to_string(&junit).expect("junit");
    assert!(report.contains("manifest UNAUTHENTICATED: the backup is not encrypted"), "{report}");
    s.stop().await;
}

/// Issue 35, case 3: with a key set, a backup planted unencrypted with its own manifest
/// (anyone who can write to the storage can) was picked as the newest, logged "manifest
/// UNAUTHENTICATED", verified with exit 0 and recorded as passed; `backup.check` and
/// `backup.restore` took it too. Now pick, check and restore refuse it unless the run
/// allows unauthenticated backups, and `latest` names what it refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_unencrypted_backup_planted_beside_encrypted_ones_was_verified_with_the_key() {
    let Some((s, t, storage, _)) = shop_backed_up().await else { return };
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let planted = unencrypted(&s.url(), &storage);
    let planted = pgdrill::testkit::backup::create(planted, &|_| {}).await.expect("backup").path;
    let name = planted.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    assert_eq!(backups_in(&storage.join("shop")).pop().as_ref(), Some(&planted), "the planted one is the newest");

    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &["force=true"], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(out.all().contains("the latest backup") && out.all().contains(&name), "{}", out.all());
    assert!(out.all().contains("refused: manifest UNAUTHENTICATED"), "{}", out.all());
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "pick"), "failure", "{cases:?}");
    assert_ne!(status_of(&cases, "restore"), "passed", "{cases:?}");

    // backup.check and backup.restore refuse it too, given the key.
    let rb = written(
        t.path().join("check.yaml"),
        format!(
            "name: check\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - uses: backup.check\n    with: {{ path: \"{p}\", key: \"{{{{ secrets.key }}}}\" }}\n  - uses: backup.restore\n    continue_on_error: true\n    with: {{ backup: \"{p}\", into: \"{u}\", key: \"{{{{ secrets.key }}}}\" }}\n",
            p = planted.display(),
            u = s.url_for("shop"),
        ),
    );
    fails_saying(&rb, "refused: manifest UNAUTHENTICATED", "backup.check");
    let rb2 = written(
        t.path().join("restore.yaml"),
        format!(
            "name: restore\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - uses: backup.restore\n    with: {{ backup: \"{}\", into: \"postgresql://127.0.0.1:1/nowhere\", key: \"{{{{ secrets.key }}}}\" }}\n",
            planted.display()
        ),
    );
    fails_saying(&rb2, "refused: manifest UNAUTHENTICATED", "backup.restore");

    // Allowed explicitly: verified, and the log says it was unauthenticated.
    let out = run_verify(&storage, "shop", &["force=true", "allow_unauthenticated=true"], &junit);
    assert_eq!(out.code, Some(0), "{}", out.all());
    let report = std::fs::read_to_string(&junit).expect("junit");
    assert!(report.contains("accepted although unauthenticated"), "{report}");
    s.stop().await;
}

/// Issue 35, case 7: the throwaway server's disk filling during verify's restore (SQLSTATE
/// 53100) was recorded as a failed backup (exit 1, JUnit failure, ledger `failed`), and
/// `backups list` then showed a good backup as failed. The throwaway's data directory is
/// put on a small tmpfs (its TMPDIR), as a full disk happens in the field.
#[tokio::test(flavor = "multi_thread")]
async fn a_throwaway_disk_filling_during_restore_was_recorded_as_a_failed_backup() {
    // ~80 MB of heap once restored (rows under the TOAST threshold stay uncompressed); the
    // backup compresses to almost nothing.
    let data =
        "create table t (id int, pad text); insert into t select g, repeat('x', 1000) from generate_series(1, 80000) g";
    let Some((s, t, storage)) = common::source_and_storage("shop", data).await else { return };
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let Some(disk) = SmallDisk::mount(&t.path().join("small"), "64m") else { return };
    std::fs::set_permissions(&disk.0, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).expect("chmod");
    let junit = t.path().join("v.xml");
    // The server's files on that disk (`data=auto`, verify's default, would put them in
    // /dev/shm, where this restore fits).
    let out = verify_run(&storage, "shop", &["data=disk"], &junit).env("TMPDIR", &disk.0).output();
    assert_eq!(out.code, Some(3), "{}", out.all());
    assert!(out.all().contains("disk is full"), "{}", out.all());
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "scratch"), "passed", "{cases:?}");
    assert_eq!(status_of(&cases, "restore"), "error", "{cases:?}");
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let line: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap_or("{}")).expect("json");
    assert_eq!(line["result"], "error", "{ledger}");
    let listed = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default()]).output().expect("ls");
    assert!(!text(&listed.stdout).contains("failed"), "{}", text(&listed.stdout));
    drop(disk);
    s.stop().await;
}

/// Issue 35, case 7: a freshness or RPO failure marked the backup itself "failed" in the
/// ledger and `backups list`, though its content was proven. Content and age are separate
/// verdicts now: the run still fails (exit 1), the backup stays proven, shown as stale.
#[tokio::test(flavor = "multi_thread")]
async fn a_stale_backup_whose_content_was_proven_was_recorded_as_failed() {
    let Some((s, t, storage, _)) = shop_backed_up().await else { return };
    std::thread::sleep(std::time::Duration::from_secs(2));
    let junit = t.path().join("v.xml");
    let out = run_verify(&storage, "shop", &["max_age=1s"], &junit);
    assert_eq!(out.code, Some(1), "{}", out.all());
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "freshness"), "failure", "{cases:?}");
    assert_eq!(status_of(&cases, "tables"), "passed", "{cases:?}");
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let line: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap_or("{}")).expect("json");
    assert_eq!(
        (line["result"].as_str(), line["content"].as_str(), line["ground_truth"].as_str(), line["age"].as_str()),
        (Some("passed"), Some("proven"), Some("manifest"), Some("stale")),
        "{ledger}"
    );
    let listed = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default()]).output().expect("ls");
    assert!(text(&listed.stdout).contains("passed (stale)"), "{}", text(&listed.stdout));
    s.stop().await;
}

/// A mount namespace of its own whose /dev/shm is a fresh tmpfs, held by a sleeping process:
/// the tmpfs pgdrill chooses memory in, small enough to fill, with nothing else of the
/// machine's in it, shared by the commands run in it (`command`). Ends when dropped.
struct OwnDevShm(std::process::Child);

impl OwnDevShm {
    /// A /dev/shm of `size`. None (a printed skip, a failure in CI) without the right to
    /// make one.
    fn new(size: &str, dir: &Path) -> Option<OwnDevShm> {
        let ready = dir.join("dev-shm-mounted");
        let script =
            format!("mount -t tmpfs -o size={size},mode=1777 tmpfs /dev/shm && touch \"$0\" && exec sleep 3600");
        let child = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c", &script])
            .arg(&ready)
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            common::require(false, &format!("unshare ({child:?})"));
            return None;
        };
        while !ready.exists() {
            if let Ok(Some(status)) = child.try_wait() {
                common::require(false, &format!("a mount namespace with a tmpfs of its own ({status})"));
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(OwnDevShm(child))
    }

    /// `cmd` run in the namespace (nsenter execs it: its pid is the command's).
    fn command(&self, cmd: std::process::Command) -> std::process::Command {
        let mut own = std::process::Command::new("nsenter");
        own.args(["-t", &self.0.id().to_string(), "-m", "--"]).arg(cmd.get_program()).args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => own.env(k, v),
                None => own.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            own.current_dir(d);
        }
        own
    }

    /// The names in its /dev/shm.
    fn names(&self) -> String {
        let mut ls = std::process::Command::new("ls");
        ls.arg("-a").arg("/dev/shm");
        text(&self.command(ls).output().expect("ls").stdout)
    }
}

impl Drop for OwnDevShm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Issue 41: a throwaway whose files were put in /dev/shm (`data=memory`: twice the plain
/// dump and the cluster's own files fit) outgrew the estimate (forty indexes, which a dump
/// holds as one line each) and filled it; the run ended as exit 3 naming the full disk, but
/// nothing said the remedy. Now the message names it, from the server's own log.
#[tokio::test(flavor = "multi_thread")]
async fn a_throwaway_that_filled_dev_shm_did_not_say_to_run_again_with_data_disk() {
    let mut data = "create table t (id int); insert into t select g from generate_series(1, 200000) g;".to_string();
    for i in 0..40 {
        data.push_str(&format!("create index i{i} on t (id);"));
    }
    let Some((s, t, storage)) = common::source_and_storage("shop", &data).await else { return };
    common::backup_to(&s.url(), &storage, KEY, "shop");
    let junit = t.path().join("v.xml");
    // The dump staged beside the backup: the server alone fills the tmpfs.
    let Some(shm) = OwnDevShm::new("200m", t.path()) else { return };
    let out = shm
        .command(verify_run(&storage, "shop", &["data=memory", "staging="], &junit).command())
        .output()
        .expect("run");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(all.contains("data memory: in memory (/dev/shm)"), "{all}");
    assert!(all.contains("/dev/shm is full: run again with `--var data=disk`"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "restore"), "error");
    s.stop().await;
}

/// Issue 41: two verifies started together both saw /dev/shm empty and both chose memory for
/// their throwaways, which together could fill it. The first holds its room (paused once
/// its server's files are reserved); the second chooses with that reservation taken from
/// the room and stays on disk, saying so; once the first is killed (its reservation left
/// behind), the next run ignores and removes the dead run's reservation and takes memory.
#[tokio::test(flavor = "multi_thread")]
async fn two_verifies_started_together_cannot_both_take_the_same_memory() {
    let data = "create table t (id int); insert into t select g from generate_series(1, 1000) g";
    let Some((s, t, storage)) = common::source_and_storage("shop", data).await else { return };
    common::backup_to(&s.url(), &storage, KEY, "shop");
    // 400 MiB: 128 MiB of server files is within half of it, not within half of what is left
    // once they are reserved (and the first server has written its own).
    let Some(shm) = OwnDevShm::new("400m", t.path()) else { return };
    let verify = |n: usize| {
        verify_run(&storage, "shop", &["data=auto", "staging=", "force=true"], &t.path().join(format!("{n}.xml")))
    };
    let flag = t.path().join("first-reserved");
    let mut first = shm
        .command(verify(1).command())
        .env("PGDRILL_TEST_PAUSE_AT", "memory-reserved")
        .env("PGDRILL_TEST_PAUSE_FLAG", &flag)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("first verify");
    while !flag.exists() {
        assert!(first.try_wait().expect("wait").is_none(), "the first verify ended before it reserved memory");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let second = shm.command(verify(2).command()).output().expect("second verify");
    let said = format!("{}{}", text(&second.stdout), text(&second.stderr));
    assert_eq!(second.status.code(), Some(0), "{said}");
    assert!(said.contains("data auto: on disk, not in memory: twice the plain dump"), "{said}");
    assert!(said.contains("after 128 MiB reserved by 1 other run"), "{said}");
    // Killed, the first leaves its reservation: a run that is gone takes no room.
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");
    assert!(shm.names().contains(&format!("pgdrill-reserved-{}-", first.id())), "{}", shm.names());
    let third = shm.command(verify(3).command()).output().expect("third verify");
    let said = format!("{}{}", text(&third.stdout), text(&third.stderr));
    assert_eq!(third.status.code(), Some(0), "{said}");
    assert!(said.contains("data auto: in memory (/dev/shm)") && !said.contains("reserved by"), "{said}");
    assert!(!shm.names().contains("pgdrill-reserved-"), "every reservation gone: {}", shm.names());
    s.stop().await;
}
