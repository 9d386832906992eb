//! The backup folders teams already have, made by the classic runbooks' own commands: listed,
//! picked by the time in their names (never their mtime), verified (gzip, custom, openssl
//! with and without -pbkdf2, gpg --symmetric), and pruned by age, dry run first.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;
use crate::common::{junit_cases, last_json_line, made_dir, pgdrill, status_of, text, tmp_backups, written, Run};

const PASS: &str = "classic runbook passphrase";

fn pg_bin(tool: &str) -> String {
    format!("/usr/lib/postgresql/15/bin/{tool}")
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Set a file's modification time to `days` days ago (or ahead, when negative).
fn set_mtime(p: &Path, days_ago: i64) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs((days_ago.max(0) as u64) * 86_400);
    let f = std::fs::File::options().write(true).open(p).expect("open for mtime");
    f.set_modified(t).expect("set mtime");
}

/// Run a shell pipeline with the source server in the libpq environment, as the seeds do.
fn sh(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, script: &str, gnupghome: &Path) {
    bash_on(src, "auth_db", script, &format!("set -euo pipefail; {script}"), gnupghome);
}

/// Run `bash -c RUN` with database `database` of `src` in the libpq environment, the backup
/// passphrase and `gnupghome`; it must succeed (a failure names `script`).
fn bash_on(
    src: &pgdrill::testkit::pg::ephemeral::Ephemeral,
    database: &str,
    script: &str,
    run: &str,
    gnupghome: &Path,
) {
    let out = common::libpq_bash(src, database)
        .args(["-c", run])
        .env("BACKUP_PASS", PASS)
        .env("GNUPGHOME", gnupghome)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{script}: {}", text(&out.stderr));
}

struct Folder {
    _dir: tempfile::TempDir,
    storage: PathBuf,
    _src: pgdrill::testkit::pg::ephemeral::Ephemeral,
}

/// `/opt/backups/postgres-a/auth_db_<stamp>.<ext>` as the payment-system runbook writes them,
/// plus a second server's folder, a LATEST symlink and a log file.
async fn classic_folder() -> Option<Folder> {
    if !common::require(have("gpg", "--version") && have("openssl", "version"), "gpg and openssl") {
        return None;
    }
    let src = common::native_server("auth_db").await?;
    let client = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    client
        .batch_execute(
            "create table users (id serial primary key, email text unique not null);
             insert into users (email) select 'u' || g || '@example.com' from generate_series(1, 1500) g;
             create table sessions (id bigserial primary key, user_id int references users, started timestamptz default '2024-01-01');
             insert into sessions (user_id) select 1 + g % 1500 from generate_series(1, 4000) g;",
        )
        .await
        .expect("load");
    let (dir, storage, a, b) = server_folders();
    let gnupg = made_dir(dir.path().join("gnupg"));
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let dump = pg_bin("pg_dump");
    let a_ = a.display();
    let scripts = [
        format!("{dump} | gzip > {a_}/auth_db_20240113_020000.sql.gz"),
        format!("{dump} -Fc -f {a_}/auth_db_20240114_020000.dump"),
        // `openssl enc` as it was run before -pbkdf2 existed: EVP_BytesToKey with md5.
        format!(
            "{dump} | gzip | openssl enc -aes-256-cbc -salt -md md5 -pass env:BACKUP_PASS > {a_}/auth_db_20240115_020000.sql.gz.enc"
        ),
        format!(
            "{dump} | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass env:BACKUP_PASS > {a_}/auth_db_20240116_020000.sql.gz.enc"
        ),
        format!(
            "{dump} | gzip | gpg --batch --pinentry-mode loopback --passphrase-fd 3 --symmetric --cipher-algo AES256 \
             -o {a_}/auth_db_20240117_020000.sql.gz.gpg 3<<<\"$BACKUP_PASS\"; gpgconf --kill gpg-agent"
        ),
        format!("{dump} | gzip > {}/payment_db_20240115_020000.sql.gz", b.display()),
    ];
    for s in &scripts {
        sh(&src, s, &gnupg);
    }
    // Old mtimes, newest by name has the oldest mtime; the oldest by name was "downloaded" today.
    for (name, days) in [
        ("auth_db_20240114_020000.dump", 300),
        ("auth_db_20240115_020000.sql.gz.enc", 400),
        ("auth_db_20240116_020000.sql.gz.enc", 500),
        ("auth_db_20240117_020000.sql.gz.gpg", 600),
    ] {
        set_mtime(&a.join(name), days);
    }
    std::os::unix::fs::symlink("auth_db_20240117_020000.sql.gz.gpg", a.join("auth_db_LATEST.sql.gz.gpg")).expect("ln");
    std::fs::write(a.join("backup.log"), "Backup completed\n").expect("log");
    Some(Folder { _dir: dir, storage, _src: src })
}

/// A temporary storage folder with one folder per server in it, as the classic scripts
/// leave them: (the temporary directory, the storage, `postgres-a`, `postgres-b`).
fn server_folders() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let (dir, storage) = tmp_backups();
    let (a, b) = (storage.join("postgres-a"), storage.join("postgres-b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    (dir, storage, a, b)
}

fn verify(storage: &Path, vars: &[&str], junit: &Path) -> (Option<i32>, String) {
    let run = Run::new("verify").var("storage", storage.display()).var("database", "auth_db");
    // These runs are about folders; ground truth is the test below's.
    natively(run.var("accept_unproven", true), vars, junit)
}

/// `run` on a native throwaway, forced (no cached verdict), with `vars`, the JUnit file and
/// the key: its exit code and its output.
fn natively(run: Run, vars: &[&str], junit: &Path) -> (Option<i32>, String) {
    let ran = run.var("provider", "native").var("force", true).junit(junit).vars(vars).key(PASS).output();
    (ran.code, ran.all())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_classic_folder_is_listed_picked_by_name_time_and_verified_in_every_format() {
    let Some(f) = classic_folder().await else { return };

    // Listed: every backup in both server folders, newest by name first; no symlink, no log.
    let out = pgdrill(&["backups", "list", "--storage", f.storage.to_str().unwrap_or_default(), "--json"])
        .output()
        .expect("list");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    let names: Vec<&str> =
        list.iter().map(|b| b["path"].as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default()).collect();
    assert_eq!(
        names,
        [
            "auth_db_20240117_020000.sql.gz.gpg",
            "auth_db_20240116_020000.sql.gz.enc",
            "payment_db_20240115_020000.sql.gz",
            "auth_db_20240115_020000.sql.gz.enc",
            "auth_db_20240114_020000.dump",
            "auth_db_20240113_020000.sql.gz",
        ]
    );
    let kinds: Vec<&str> = list.iter().map(|b| b["format"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["gpg", "openssl", "gzip/plain", "openssl", "custom", "gzip/plain"]);
    assert!(list.iter().all(|b| b["origin"] == "foreign" && b["created_from"] == "name"), "{list:?}");
    assert_eq!(list[2]["database"], "payment_db");

    // `pgdrill decrypt` gives the plain dump of another tool's encrypted file too.
    let gpg = f.storage.join("postgres-a/auth_db_20240117_020000.sql.gz.gpg");
    let out = pgdrill(&["decrypt", gpg.to_str().unwrap_or_default()])
        .env("PGDRILL_BACKUP_KEY", PASS)
        .output()
        .expect("decrypt");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("PostgreSQL database dump"), "{}", text(&out.stderr));

    // `latest` of auth_db is the newest by name (gpg), although its mtime is the oldest.
    let dir = tempfile::tempdir().expect("tmp");
    let junit = dir.path().join("latest.xml");
    let (code, all) = verify(&f.storage, &["max_age=36000d"], &junit);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("auth_db_20240117_020000.sql.gz.gpg"), "{all}");
    assert!(all.contains("made at 2024-01-17T02:00:00Z (from its name)"), "{all}");
    let cases = junit_cases(&junit);
    for check in ["integrity", "restore", "freshness"] {
        assert_eq!(status_of(&cases, check), "passed", "{check}: {cases:?}");
    }
    assert!(all.contains("the restored copy has 2 tables, 5500 rows"), "{all}");
    assert!(!all.contains(PASS), "the passphrase never shows: {all}");

    // A file named in storage by its name: the legacy openssl one (no -pbkdf2), reported so.
    for name in
        ["auth_db_20240115_020000.sql.gz.enc", "auth_db_20240116_020000.sql.gz.enc", "auth_db_20240114_020000.dump"]
    {
        let junit = dir.path().join(format!("{name}.xml"));
        let (code, all) = verify(&f.storage, &[&format!("backup={name}"), "max_age=36000d"], &junit);
        assert_eq!(code, Some(0), "{name}: {all}");
        assert_eq!(status_of(&junit_cases(&junit), "restore"), "passed", "{name}");
        if name == "auth_db_20240115_020000.sql.gz.enc" {
            assert!(all.contains("legacy key derivation: EVP_BytesToKey, md5"), "{all}");
        }
    }

    // A downloaded copy is as old as its name says, not "0s old": freshness fails.
    let junit = dir.path().join("stale.xml");
    let (code, all) = verify(&f.storage, &["backup=auth_db_20240113_020000.sql.gz"], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "freshness"), "failure", "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "restore"), "passed", "{all}");

    // The wrong passphrase for gpg is a failure naming the cause, never a restore.
    let junit = dir.path().join("wrong.xml");
    let out = Run::verify_native(f.storage.display(), "auth_db")
        .var("max_age", "36000d")
        .var("force", "true")
        .junit(&junit)
        .command()
        .env("PGDRILL_BACKUP_KEY", "not the passphrase at all")
        .output()
        .expect("verify");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("gpg could not decrypt"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "restore"), "skipped", "{all}");
}

/// A folder of `backup_<stamp>.sql.gz` names no database: it is the asked one's, and the
/// pick says so.
#[tokio::test(flavor = "multi_thread")]
async fn unnamed_backups_in_a_folder_of_one_database_are_taken_as_the_asked_ones() {
    let Some(f) = classic_folder().await else { return };
    let flat = made_dir(f.storage.parent().expect("parent").join("crm-backups"));
    std::fs::copy(
        f.storage.join("postgres-a/auth_db_20240113_020000.sql.gz"),
        flat.join("backup_20240315_143022.sql.gz"),
    )
    .expect("copy");
    let dir = tempfile::tempdir().expect("tmp");
    let junit = dir.path().join("flat.xml");
    let (code, all) = verify(&flat, &["max_age=36000d"], &junit);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("backup_20240315_143022.sql.gz"), "{all}");
    assert!(all.contains("nothing in its folder names another one, so it is taken as `auth_db`'s"), "{all}");
}

fn stamp(days_ago: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    format!("{}_020000", &common::dump_stamp(t)[..8])
}

/// What a file pg_dump wrote through gzip starts with.
fn sql_gz() -> Vec<u8> {
    gzip(b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n")
}

fn gzip(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).expect("gzip");
    e.finish().expect("gzip")
}

#[test]
fn prune_keep_within_deletes_exactly_the_older_files_after_a_dry_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = made_dir(dir.path().join("backups"));
    let mut expect_deleted = Vec::new();
    let mut expect_kept = Vec::new();
    for days in [1, 10, 29, 31, 40, 100] {
        let name = format!("billing_{}.sql.gz", stamp(days));
        // The mtime is today for all (a fresh copy); the content is a dump's opening.
        std::fs::write(storage.join(&name), sql_gz()).expect("write");
        if days < 30 {
            expect_kept.push(name);
        } else {
            expect_deleted.push(name);
        }
    }
    // No time in the name: judged by its mtime (200 days), and the log says so.
    std::fs::write(storage.join("billing.sql.gz"), sql_gz()).expect("write");
    set_mtime(&storage.join("billing.sql.gz"), 200);
    expect_deleted.push("billing.sql.gz".into());
    // Another database's old file is not touched.
    std::fs::write(storage.join(format!("other_{}.sql.gz", stamp(300))), sql_gz()).expect("write");

    let prune = |apply: bool| {
        Run::new("prune")
            .var("storage", storage.display())
            .vars(&["database=billing", "keep_within=30d", "keep_daily=0", "keep_weekly=0", "keep_monthly=0"])
            .var("apply", apply)
            .expect(0)
            .all()
    };
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(&storage)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let before = files();
    let dry = prune(false);
    assert_eq!(files(), before, "a dry run deletes nothing");
    for n in &expect_deleted {
        assert!(dry.contains(&format!("would delete {n}")), "{n}: {dry}");
    }
    for n in &expect_kept {
        assert!(dry.contains(&format!("keep   {n}")), "{n}: {dry}");
    }
    assert!(dry.contains("billing.sql.gz: no time in its name, judged by its modification time"), "{dry}");

    prune(true);
    let after = files();
    let mut want: Vec<String> = before.into_iter().filter(|n| !expect_deleted.contains(n)).collect();
    want.sort();
    assert_eq!(after, want);
    assert!(after.iter().any(|n| n.starts_with("other_")), "another database's file stays");
}

/// The `backups list` table, golden: human sizes, aligned columns, one level of per-server
/// folders, kinds from the first bytes, mtime fallback marked. Files are made byte for byte
/// here so the output is the same on every machine.
#[test]
fn backups_list_table_is_golden() {
    let (_dir, storage, a, b) = server_folders();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n")
        .expect("gz");
    let gz = gz.finish().expect("gz");
    let mut custom = b"PGDMP\x01\x0e\x00".to_vec();
    custom.resize(2_500_000, 0);
    let files: Vec<(PathBuf, Vec<u8>)> = vec![
        (a.join("auth_db_20240115_020000.sql.gz"), gz.clone()),
        (a.join("auth_db_20240116_020000.dump"), custom),
        (a.join("auth_db_20240117_020000.sql.gz.enc"), [b"Salted__".as_slice(), &[7u8; 4000]].concat()),
        (b.join("payment_db_20240115_020000.sql.gz.gpg"), [&[0x8cu8, 0x0d, 0x04, 0x09][..], &[1u8; 900]].concat()),
        (storage.join("backup_20240301_000000.sql"), b"-- PostgreSQL database dump\n".to_vec()),
        (storage.join("db.sql.gz"), gz),
    ];
    for (p, bytes) in &files {
        std::fs::write(p, bytes).expect("write");
    }
    // 2024-02-01 00:00:00 UTC
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_706_745_600);
    std::fs::File::options().write(true).open(storage.join("db.sql.gz")).expect("open").set_modified(t).expect("mtime");
    std::fs::write(a.join("backup.log"), "done\n").expect("log");

    let out = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default()]).output().expect("list");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let got = text(&out.stdout).replace(&storage.display().to_string(), "STORAGE");
    let golden = common::root().join("fixtures/golden/backups-list.txt");
    if std::env::var_os("PGDRILL_BLESS").is_some() {
        std::fs::write(&golden, &got).expect("bless");
    }
    let want = std::fs::read_to_string(&golden).expect("golden file (PGDRILL_BLESS=1 writes it)");
    assert_eq!(got, want, "\n--- got ---\n{got}\n--- want ---\n{want}");

    // A directory that does not exist is an error naming it (exit 2), not an empty table.
    let missing = storage.join("no-such-dir");
    let out = pgdrill(&["backups", "list", "--storage", missing.to_str().unwrap_or_default()]).output().expect("list");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stderr).contains("no-such-dir does not exist"), "{}", text(&out.stderr));
}

/// A three-table source (`app`), and a runner of shell pipelines against it as the classic
/// runbooks run them: without pipefail, so a pg_dump that dies still leaves a file.
async fn three_tables() -> Option<pgdrill::testkit::pg::ephemeral::Ephemeral> {
    let src = common::native_server("app").await?;
    let client = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    client
        .batch_execute(
            "create table accounts (id int primary key, name text not null);
             insert into accounts select g, repeat('n', 40) || g from generate_series(1, 1000) g;
             create table payments (id int primary key, account int references accounts, amount numeric);
             insert into payments select g, 1 + g % 1000, g * 0.5 from generate_series(1, 1000) g;
             create table audit (id int, what text);
             insert into audit select g, 'x' from generate_series(1, 500) g;
             create index audit_id on audit (id);",
        )
        .await
        .expect("load");
    client.batch_execute("create database empty_db").await.expect("create database");
    Some(src)
}

fn field_sh(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, script: &str, gnupghome: &Path) {
    // No pipefail: `pg_dump | head | gzip` exits 0 although pg_dump died of SIGPIPE.
    bash_on(src, "app", script, script, gnupghome);
}

fn verify_app(backup: &Path, vars: &[&str], junit: &Path) -> (Option<i32>, String) {
    natively(Run::new("verify").var("backup", backup.display()).var("max_age", "36000d"), vars, junit)
}

/// Issue 35, cases 1 and 2: `gzip -c </dev/null`, a 0-byte `.sql`, a pg_dump killed half-way
/// with its output piped into gzip (and on into `openssl enc` and `gpg`), a custom dump cut
/// at several points and a directory dump missing a file all verified green ("the restored
/// copy has 1 tables"), and so did a complete dump of an empty database.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_cut_dump_without_a_manifest_verified_green() {
    if !common::require(have("gpg", "--version") && have("openssl", "version"), "gpg and openssl") {
        return;
    }
    let Some(src) = three_tables().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let gnupg = made_dir(t.path().join("gnupg"));
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    let dump = pg_bin("pg_dump");
    let full = d.join("app-full.sql");
    field_sh(&src, &format!("{dump} > {}", full.display()), &gnupg);
    let sql = std::fs::read_to_string(&full).expect("dump");
    // Cut inside the second table's data: the first table whole, the rest and every index
    // missing, as pg_dump leaves it when it dies there.
    let inside_second = sql.find("COPY public.payments").expect("payments data") + 2000;
    let after_first = sql.find("-- Data for Name: payments").expect("payments header");
    let gpg =
        "gpg --batch --pinentry-mode loopback --passphrase-fd 3 --symmetric --cipher-algo AES256 3<<<\"$BACKUP_PASS\"";
    let cases: Vec<(&str, String, &str)> = vec![
        ("app-20240105T130000.sql.gz", "gzip -c </dev/null > {f}".into(), "holds nothing inside its gzip layer"),
        ("app-20240105T130100.sql", ": > {f}".into(), "the file is empty (0 bytes)"),
        (
            "app-20240105T130200.sql.gz",
            format!("{dump} | head -c {inside_second} | gzip > {{f}}"),
            "cut inside the data of public.payments",
        ),
        (
            "app-20240105T130300.sql.gz",
            format!("{dump} | head -c {after_first} | gzip > {{f}}"),
            "no `-- PostgreSQL database dump complete` line",
        ),
        (
            "app-20240105T130400.sql.gz.enc",
            format!(
                "{dump} | head -c {inside_second} | gzip | openssl enc -aes-256-cbc -salt -pbkdf2 -pass env:BACKUP_PASS > {{f}}"
            ),
            "cut inside the data of public.payments",
        ),
        (
            "app-20240105T130500.sql.gz.gpg",
            format!("{dump} | head -c {inside_second} | gzip | {gpg} -o {{f}}; gpgconf --kill gpg-agent"),
            "cut inside the data of public.payments",
        ),
    ];
    for (name, script, says) in &cases {
        let f = d.join(name);
        field_sh(&src, &script.replace("{f}", &f.display().to_string()), &gnupg);
        let junit = t.path().join(format!("{name}.xml"));
        let (code, all) = verify_app(&f, &[], &junit);
        assert_eq!(code, Some(1), "{name}: {all}");
        assert!(all.contains(says), "{name}: expected `{says}`: {all}");
        let cases = junit_cases(&junit);
        assert_eq!(status_of(&cases, "integrity"), "failure", "{name}: {cases:?}");
        assert_ne!(status_of(&cases, "restore"), "passed", "{name}: {cases:?}");
    }

    // A custom dump cut at several points: in its header, in its TOC, inside each table's
    // data block, and one byte short of its end.
    let custom = d.join("app-full.dump");
    field_sh(&src, &format!("{dump} -Fc -Z0 -f {}", custom.display()), &gnupg);
    let bytes = std::fs::read(&custom).expect("custom");
    std::fs::remove_file(&custom).expect("rm");
    let at = |needle: &[u8]| bytes.windows(needle.len()).rposition(|w| w == needle).expect("in the dump");
    let name_end = at(b"nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn1000");
    for (i, cut) in [3usize, 200, name_end - 30_000, name_end, bytes.len() - 1].into_iter().enumerate() {
        let f = written(d.join(format!("app-2024010{}T140000.dump", i + 1)), &bytes[..cut]);
        let junit = t.path().join(format!("custom-{cut}.xml"));
        let (code, all) = verify_app(&f, &[], &junit);
        assert_eq!(code, Some(1), "custom cut at {cut} of {}: {all}", bytes.len());
        assert_eq!(status_of(&junit_cases(&junit), "integrity"), "failure", "cut at {cut}: {all}");
        assert!(all.contains("incomplete dump") || all.contains("cut inside its header"), "cut at {cut}: {all}");
    }

    // A directory dump missing one table's data file.
    let dir = d.join("app-20240106T150000");
    field_sh(&src, &format!("{dump} -Fd -f {}", dir.display()), &gnupg);
    let data: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".dat.")))
        .collect();
    assert_eq!(data.len(), 3, "{data:?}");
    std::fs::remove_file(&data[1]).expect("rm");
    let missing = data[1].file_name().map(|n| n.to_string_lossy().replace(".gz", "")).unwrap_or_default();
    let junit = t.path().join("dir.xml");
    let (code, all) = verify_app(&dir, &[], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains(&missing), "names the missing file {missing}: {all}");

    // A complete dump of a database without tables: failed unless expected to be empty.
    let empty = d.join("empty_db-20240106T160000.sql.gz");
    field_sh(&src, &format!("{dump} -d empty_db | gzip > {}", empty.display()), &gnupg);
    let junit = t.path().join("empty.xml");
    let (code, all) = verify_app(&empty, &[], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("defines no table") && all.contains("expect_empty"), "{all}");
    let (_, all) = verify_app(&empty, &["expect_empty=true"], &junit);
    assert_eq!(status_of(&junit_cases(&junit), "integrity"), "passed", "{all}");

    // The complete dump still passes its integrity check and restores.
    let junit = t.path().join("full.xml");
    let (_, all) = verify_app(&full, &[], &junit);
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "integrity"), "passed", "{all}");
    assert_eq!(status_of(&cases, "restore"), "passed", "{all}");
    src.stop().await;
}

/// Issue 35, "no green without ground truth": another tool's complete dump verified with
/// exit 0 while `tables` and `schema` said "skipped: no source fingerprint", and the ledger
/// recorded it as passed. Now the verdict is "restorable, content unproven" (exit 1, its own
/// result in JUnit, the ledger and `backups list`) unless the run accepts it, and the live
/// source or declared expectations are ground truth that can fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_without_ground_truth_verified_green() {
    let Some(src) = three_tables().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let f = d.join("app-20240105T130000.sql.gz");
    field_sh(&src, &format!("{} | gzip > {}", pg_bin("pg_dump"), f.display()), t.path());
    let junit = t.path().join("j.xml");

    // No ground truth: unproven, exit 1, recorded as such.
    let (code, all) = verify_app(&f, &[], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("restorable, content unproven"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "restore"), "passed", "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "tables"), "failure", "{all}");
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["result"].as_str(), e["content"].as_str()), (Some("unproven"), Some("unproven")), "{e}");
    let out = pgdrill(&["backups", "list", "--storage", d.to_str().unwrap_or_default()]).output().expect("list");
    assert!(text(&out.stdout).contains("unproven"), "{}", text(&out.stdout));

    // Accepted explicitly: exit 0, but still unproven, never passed.
    let (code, all) = verify_app(&f, &["accept_unproven=true"], &junit);
    assert_eq!(code, Some(0), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "tables"), "skipped", "{all}");
    assert_eq!(last_json_line(&d.join("ledger.jsonl"))["result"], "unproven");

    // Declared expectations: they hold, or they name what is missing.
    let (code, all) = verify_app(&f, &["expect_tables=public.accounts>=1000, payments>=1000, audit"], &junit);
    assert_eq!(code, Some(0), "{all}");
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["content"].as_str(), e["ground_truth"].as_str()), (Some("proven"), Some("expectations")), "{e}");
    let (code, all) = verify_app(&f, &["expect_tables=accounts>=5000, invoices"], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(
        all.contains("public.accounts: 1000 rows restored, at least 5000") && all.contains("public.invoices: missing")
    );

    // The live source: its table set and row counts now, within the tolerance.
    let run_with_source = |vars: &[&str]| {
        let ran = Run::new("verify")
            .var("backup", f.display())
            .vars(&["provider=native", "max_age=36000d", "force=true"])
            .junit(&junit)
            .vars(vars)
            .env("PGDRILL_SOURCE_URL", src.url())
            .output();
        (ran.code, ran.all())
    };
    let (code, all) = run_with_source(&[]);
    assert_eq!(code, Some(0), "{all}");
    assert!(!all.contains(&src.password), "the source's password never shows");
    assert_eq!(last_json_line(&d.join("ledger.jsonl"))["ground_truth"], "source");
    // Half of a table deleted since: beyond 10 %, named.
    common::exec(&src.url(), "delete from audit where id > 250").await;
    let (code, all) = run_with_source(&[]);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("public.audit: 500 rows restored, the source has 250 now"), "{all}");
    let (code, all) = run_with_source(&["tolerance_pct=60"]);
    assert_eq!(code, Some(0), "{all}");
    src.stop().await;
}

fn stamp_at(t: time::OffsetDateTime) -> String {
    common::dump_stamp(t)
}

/// Issue 35, case 6: a file dated in the future (a host with a skewed clock, another tool's
/// file) was picked as `latest`, shown as "0s old", and passed an rpo of one hour while the
/// real newest backup was 16 days old.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_dated_in_the_future_was_latest_and_0s_old() {
    let Some(src) = three_tables().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let now = time::OffsetDateTime::now_utc();
    let old = d.join(format!("app_{}.sql.gz", stamp_at(now - std::time::Duration::from_secs(16 * 86_400))));
    field_sh(&src, &format!("{} | gzip > {}", pg_bin("pg_dump"), old.display()), t.path());
    let ahead = d.join(format!("app_{}.sql.gz", stamp_at(now + std::time::Duration::from_secs(3 * 3600))));
    std::fs::copy(&old, &ahead).expect("copy");
    let ahead_name = ahead.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();

    let out = pgdrill(&["backups", "list", "--storage", d.to_str().unwrap_or_default()]).output().expect("list");
    let listing = text(&out.stdout);
    let row = listing.lines().find(|l| l.contains(&ahead_name)).unwrap_or_default();
    assert!(row.contains("IN THE FUTURE by 2h 59m") || row.contains("IN THE FUTURE by 3h"), "{listing}");

    let run = |vars: &[&str], junit: &Path| {
        let ran = Run::new("verify")
            .var("storage", d.display())
            .vars(&["database=app", "provider=native", "accept_unproven=true", "rpo=1h"])
            .junit(junit)
            .vars(vars)
            .output();
        (ran.code, ran.all())
    };
    // `latest` names the future file with its skew and takes the real newest, which is stale.
    let junit = t.path().join("latest.xml");
    let (code, all) = run(&[], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains(&format!("not picking {ahead_name}")) && all.contains("in the future"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "freshness"), "failure", "{all}");
    assert!(all.contains("RPO 16days"), "{all}");
    // Asked for by name: its age is unknown, and freshness fails closed.
    let junit = t.path().join("named.xml");
    let (code, all) = run(&[&format!("backup={ahead_name}")], &junit);
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("age is unknown"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "freshness"), "failure", "{all}");
    src.stop().await;
}

/// Issue 35, case 5: prune deleted `DB-2020-01-05.log.gz` and `DB_2019-01-01.csv.gz` from a
/// backup folder: a name with a date and `.gz` was enough. Now only files whose content is
/// recognisably a dump (or an encryption envelope whose name reads as one) are judged; the
/// rest are listed as "not a backup, left alone" and never deleted.
#[test]
fn prune_deleted_a_log_and_a_csv_whose_names_had_a_date_and_gz() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = made_dir(dir.path().join("backups"));
    let mut salted = b"Salted__".to_vec();
    salted.extend((0u8..64).map(|i| i.wrapping_mul(37)));
    let files: Vec<(&str, Vec<u8>, bool)> = vec![
        ("DB-2020-01-05.log.gz", gzip(b"2020-01-05 02:00:01 backup started\n"), false),
        ("DB_2019-01-01.csv.gz", gzip(b"id,amount\n1,2\n"), false),
        ("DB_2019-01-06.csv.gz.enc", salted.clone(), false),
        ("DB_2019-01-02.sql.gz", sql_gz(), true),
        ("DB_2019-01-03.dump", b"PGDMP\x01\x0e\x00\x04\x08\x01".to_vec(), true),
        ("DB_2019-01-04.sql.gz.enc", salted, true),
    ];
    // The newest dump is always kept; it makes the ones above deletable.
    std::fs::write(storage.join("DB_2019-01-09.sql.gz"), sql_gz()).expect("write");
    for (name, bytes, _) in &files {
        std::fs::write(storage.join(name), bytes).expect("write");
    }
    let out = Run::new("prune")
        .var("storage", storage.display())
        .var("database", "DB")
        .var("keep_within", "30d")
        .var("keep_daily", "0")
        .var("keep_weekly", "0")
        .var("keep_monthly", "0")
        .var("min_keep", "0")
        .var("apply", "true")
        .command()
        .output()
        .expect("prune");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    for (name, _, backup) in &files {
        let exists = storage.join(name).exists();
        if *backup {
            assert!(!exists, "{name}: a recognised dump outside the policy is deleted: {all}");
        } else {
            assert!(exists, "{name} was deleted: {all}");
            assert!(all.contains(&format!("not a backup, left alone: {name}")), "{name}: {all}");
        }
    }
    assert!(storage.join("DB_2019-01-09.sql.gz").exists(), "{all}");
}
