//! What the speed work on the hot paths (issue 41: backup.base, physical.verify, verify)
//! must keep, counted rather than timed (timings live in ci/bench.sh): how many sessions a
//! step opens on the server it reads, how many queries it sends, and that every check a
//! faster path replaced still fails what it failed. Real PostgreSQL 15 (native binaries),
//! real pg_basebackup and pg_restore.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use pgdrill::testkit::physical::archiving::{ArchivingOptions, ArchivingServer};

use crate::common::*;

/// A source server archiving into `<tmp>/archive`, with `log_connections` on so the
/// sessions a step opens are counted from the server's own log.
async fn counted_source(tmp: &Path) -> Option<ArchivingServer> {
    let server =
        archiving_15(ArchivingOptions { archive_dir: Some(tmp.join("archive")), ..Default::default() }).await?;
    exec(
        &server.url(),
        "create table accounts (id bigserial primary key, name text not null); \
         insert into accounts (name) select 'a' || g from generate_series(1, 5000) g",
    )
    .await;
    // (ALTER SYSTEM cannot run in the implicit transaction of a multi-statement query.)
    exec(&server.url(), "alter system set log_connections = on").await;
    exec(&server.url(), "select pg_reload_conf()").await;
    Some(server)
}

/// Sessions opened on a database (not replication connections) in `log` after `from` bytes.
fn sessions_in(log: &str, from: usize, database: &str) -> usize {
    log[from..]
        .lines()
        .filter(|l| l.contains("connection authorized:") && !l.contains("replication connection"))
        .filter(|l| l.contains(&format!("database={database}")))
        .count()
}

fn base_runbook(dir: &Path, pg_basebackup: Option<&Path>) -> std::path::PathBuf {
    let tool = pg_basebackup.map(|p| format!("      pg_basebackup: {}\n", p.display())).unwrap_or_default();
    let p = written(
        dir.join(format!("base-{}.yaml", pg_basebackup.is_some())),
        format!(
            "name: base\nkind: backup\nvars: {{ url: ~, storage: ~ }}\nsecrets:\n  key: {{ env: {KEY_ENV} }}\nsteps:\n  - id: base\n    uses: backup.base\n    with:\n      database_url: \"{{{{ vars.url }}}}\"\n      storage: \"{{{{ vars.storage }}}}\"\n      key: \"{{{{ secrets.key }}}}\"\n      wal: fetch\n{tool}"
        ),
    );
    p
}

// A raw key: a passphrase would cost an Argon2id derivation the test does not need.
const KEY: &str = "6b1f3c2a9d8e7f60112233445566778899aabbccddeeff00112233445566aa77";

fn stored(storage: &Path) -> Vec<String> {
    walk(storage)
        .into_iter()
        .map(|p| p.strip_prefix(storage).unwrap_or(&p).display().to_string())
        .filter(|p| !p.contains("/wal/"))
        .collect()
}

/// A base backup asked its server three times through three sessions (each a TLS context
/// made from the system's CA file and a backend): one now, for the server's identity, its
/// tablespaces and both schema reads. And with pg_basebackup's tar read as it passes
/// instead of by a reader of its own, a stream cut before its end-of-archive block (the tool
/// still exiting 0) is refused: the earlier reader took it for a whole tar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_opens_one_session_and_a_tar_cut_before_its_end_publishes_nothing() {
    let tmp = tempfile::tempdir().expect("tmp");
    let Some(source) = counted_source(tmp.path()).await else { return };
    let storage = tmp.path().join("store");
    let reports = tmp.path().join("reports");

    // A base backup of `source` into `storage` (through `pg_basebackup` when given), which
    // must exit `code`.
    let base = |pg_basebackup: Option<&Path>, code: i32| {
        Run::new(base_runbook(tmp.path(), pg_basebackup))
            .var("url", source.url())
            .var("storage", storage.display())
            .key(KEY)
            .report(&reports)
            .expect(code)
    };
    let from = source.log().len();
    let ran = base(None, 0);
    let log = source.log();
    assert_eq!(sessions_in(&log, from, &source.database), 1, "{}", &log[from..]);
    let json = ran.run_json();
    let step = json.step("base");
    assert!(
        step.log.iter().any(|l| l.contains("hashed as it was written and fsynced before its rename")),
        "{:?}",
        step.log
    );
    let manifest = walk(&storage)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with(".base.tar.pgdrill.manifest.json"))
        .expect("a manifest");
    let m = read_json(&manifest);
    // The files the tar held were counted, PostgreSQL's manifest found in it, and the schema
    // read before and after through the one session agreed.
    assert!(m["files"].as_u64().is_some_and(|n| n > 900), "{m}");
    assert_eq!(m["backup_manifest_sha256"].as_str().map(str::len), Some(64), "{m}");
    assert!(
        m["database_schema"]["schema"]["tables"].as_array().is_some_and(|t| t.iter().any(|l| l == "public.accounts r")),
        "{m}"
    );

    // pg_basebackup itself, its output cut by the 1,024 bytes of the end-of-archive blocks,
    // and an exit status of 0 (a pipe's last command's).
    let cut = written(
        tmp.path().join("pg_basebackup-cut"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} \"$@\" | head -c -1024\n",
            real = source.bin_dir.join("pg_basebackup").display()
        ),
    );
    std::fs::set_permissions(&cut, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let before = stored(&storage);
    let ran = base(Some(&cut), 1);
    let all = ran.all();
    assert!(all.contains("not a readable tar") && all.contains("cut short"), "{all}");
    assert_eq!(stored(&storage), before, "the cut stream left something in the store");
    let _ = source;
}

/// A recovery waited for its promotion by connecting every 100 ms: each attempt during the
/// replay forked a backend the server refused with a FATAL line ("the database system is
/// starting up"), on the cores the replay needs. It now watches postmaster.pid and connects
/// once the server says it is ready: no refused attempt, and the recovery is still proven.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_waits_for_its_promotion_without_a_refused_connection() {
    use pgdrill::testkit::physical::basebackup::BasebackupFolder;
    use pgdrill::testkit::physical::pitr::{self, PitrOptions};
    use pgdrill::testkit::physical::recover::{RecoverOptions, Target, TargetKind};

    let tmp = tempfile::tempdir().expect("tmp");
    let Some(source) = counted_source(tmp.path()).await else { return };
    let backups = tmp.path().join("backups");
    let out = std::process::Command::new(source.bin_dir.join("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &source.port.to_string(), "-U", &source.user])
        .args(["-Ft", "-X", "none", "-c", "fast"])
        .arg("-D")
        .arg(backups.join("b1"))
        .env("PGPASSWORD", &source.password)
        .output()
        .expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", text(&out.stderr));
    // WAL enough that the replay outlasts a few of the old wait's 100 ms steps.
    exec(&source.url(), "insert into accounts (name) select 'b' || g from generate_series(1, 300000) g").await;
    let seg = scalar(&source.url(), "pg_walfile_name(pg_current_wal_lsn() - 1)").await;
    exec(&source.url(), "select pg_switch_wal()").await;
    let archive = tmp.path().join("archive");
    let found = wait_for(Duration::from_secs(60), || archive.join(&seg).is_file().then_some(()));
    assert!(found.is_some(), "segment {seg} was not archived: {}", source.log());
    source.stop();

    let folder = BasebackupFolder::new(backups, Some(archive)).expect("folder");
    let opts = PitrOptions {
        backup: None,
        listed: None,
        recover: RecoverOptions {
            target: Target { kind: TargetKind::Latest, inclusive: true },
            marker: Some("select count(*) = 305000 from accounts".into()),
            timeout: Duration::from_secs(300),
            ..Default::default()
        },
    };
    let p = pitr::run(&folder, opts).await.expect("recovered to latest");
    assert_eq!(p.server.facts.marker, Some(true), "{:?}", p.server.facts);
    assert!(p.server.facts.segments_restored >= 2, "{:?}", p.server.facts);
    let log = p.server.log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("FATAL:  the database system is ")).collect();
    assert!(refused.is_empty(), "connections tried while the server was not ready: {refused:?}");
    p.server.stop();
}
