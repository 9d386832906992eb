//! Base backups and the WAL archive against a real PostgreSQL 15 server started here with
//! `archive_mode=on` and `archive_command = 'pgdrill wal push ...'` (the built binary), and
//! the object store case against moto: the archive keeps up under a pgbench load, the base
//! backup's WAL is proven whole by wal.check, and each field failure is made to happen and
//! shown to fail (a missing segment named, 0-byte, short and wrong-key objects and an
//! unreadable store fatal to recovery, an absent segment the only exit 1, different content
//! refused, a killed push leaving nothing visible).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;

// A raw key: a passphrase costs an Argon2id derivation per segment pushed and fetched.
const KEY: &str = "6b1f3c2a9d8e7f60112233445566778899aabbccddeeff00112233445566aa77";
const SEG: u64 = 16 << 20;

/// The user the server runs as: `nobody` when the tests run as root (PostgreSQL refuses root).
fn as_server(program: &Path) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A new folder the server's user can enter, and the archive's folder `store` in it, owned
/// by that user, 0700.
fn root_and_store() -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let store = root.path().join("store");
    std::fs::create_dir(&store).expect("store");
    give(&store, 0o700);
    (root, store)
}

/// Hand `p` to the server's user (root only), with `mode`.
fn give(p: &Path, mode: u32) {
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("a nobody user");
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A PostgreSQL 15 server archiving through `archive_command`; stopped (immediate) on drop.
struct Cluster {
    child: Child,
    port: u16,
    bin: PathBuf,
}

impl Cluster {
    fn start(bin: &Path, dir: &Path, archive_command: &str) -> Cluster {
        std::fs::create_dir_all(dir).expect("dir");
        give(dir, 0o700);
        let data = dir.join("data");
        let out = as_server(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(out.status.success(), "initdb: {}", text(&out.stderr));
        let port = free_port();
        let log = std::fs::File::create(dir.join("server.log")).expect("log");
        let child = as_server(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.display()))
            .args(["-c", "wal_level=replica", "-c", "archive_mode=on", "-c", "archive_timeout=1", "-c", "fsync=off"])
            .arg("-c")
            .arg(format!("archive_command={archive_command}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("postgres starts");
        let c = Cluster { child, port, bin: bin.to_path_buf() };
        let ready = wait_for(Duration::from_secs(60), || {
            let out = Command::new(bin.join("pg_isready")).args(["-h", "127.0.0.1", "-p", &port.to_string()]).output();
            out.ok().filter(|o| o.status.success())
        });
        assert!(
            ready.is_some(),
            "the server did not start: {}",
            std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
        );
        c
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres", "-AtX", "-c", sql])
            .output()
            .expect("psql runs");
        assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// Switch to a new WAL segment and wait (90 s at most) for the archiver to archive it;
    /// the test fails when the archiver failed or fell behind.
    fn switch_and_wait_archived(&self) {
        let switched = self.psql("select pg_walfile_name(pg_switch_wal())");
        let caught_up = wait_for(Duration::from_secs(90), || {
            let s = self.psql("select coalesce(last_archived_wal, ''), failed_count from pg_stat_archiver");
            (s.split('|').next() >= Some(switched.as_str())).then_some(s)
        });
        let archiver = caught_up.unwrap_or_else(|| self.psql("select * from pg_stat_archiver"));
        assert!(archiver.ends_with("|0"), "the archiver failed or fell behind: {archiver}");
    }

    fn pgbench(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.bin.join("pgbench"));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "postgres"]).args(args).arg("postgres");
        c
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGQUIT: an immediate shutdown; nothing here needs to survive.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGQUIT,
        );
        if wait_for(Duration::from_secs(10), || self.child.try_wait().ok().flatten()).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pg15() -> Option<PathBuf> {
    let found =
        pgdrill::testkit::pg::native::find_bin_dir(None, Some(15)).ok().filter(|b| b.join("pg_basebackup").exists());
    require(found.is_some(), "PostgreSQL 15 server binaries and pg_basebackup").then(|| found.expect("checked"))
}

/// `pgdrill wal ARGS` run in `cwd` (a data directory, as PostgreSQL runs it).
fn wal(cwd: &Path, args: &[&str]) -> Ran {
    let mut run = Run::cli(["wal"]).current_dir(cwd).env_remove("PGDRILL_WAL_CONFIG").env_remove("PGDRILL_BACKUP_KEY");
    for a in args {
        run = run.arg(a);
    }
    run.output()
}

fn config(dir: &Path, name: &str, storage: &Path, key: &str) -> PathBuf {
    let key_file = written(dir.join(format!("{name}.key")), format!("{key}\n"));
    give(&key_file, 0o600);
    let conf = written(
        dir.join(format!("{name}.conf")),
        format!("# the test's WAL archive\nstorage = {}\nkey_file = {}\n", storage.display(), key_file.display()),
    );
    give(&conf, 0o600);
    conf
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_tree(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

fn first_segment(start: pgdrill::testkit::wal::Lsn) -> String {
    segment_name(1, start.segno(SEG))
}

fn segment_name(tli: u32, segno: u64) -> String {
    pgdrill::testkit::wal::segment_name(tli, segno, SEG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_backup_under_load_and_its_archive_are_proven_whole_and_every_broken_archive_fails() {
    let Some(pgbin) = pg15() else { return };
    let (root, store) = root_and_store();
    let conf = config(root.path(), "wal", &store, KEY);
    let archive_command = format!("{} wal push --config {} %p", bin().display(), conf.display());
    let pg = Cluster::start(&pgbin, &root.path().join("pg"), &archive_command);

    // A tablespace: pg_basebackup then writes one tar per tablespace, staged and streamed.
    let ts = root.path().join("ts");
    std::fs::create_dir(&ts).expect("ts");
    give(&ts, 0o700);
    pg.psql(&format!("create tablespace ts location '{}'", ts.display()));
    pg.psql("create table in_ts tablespace ts as select generate_series(1, 1000) as g");

    // The base backup runs while pgbench writes.
    let init = pg.pgbench(&["-i", "-s", "1", "-q"]).output().expect("pgbench -i");
    assert!(init.status.success(), "{}", text(&init.stderr));
    let load = pg
        .pgbench(&["-n", "-T", "4", "-c", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pgbench");
    let junit = root.path().join("base.xml");
    let record = root.path().join("emitted.jsonl");
    let ran = Run::new("base-backup")
        .var("database_url", pg.url())
        .var("storage", store.display())
        .var("wait", "90s")
        .env("PGDRILL_BACKUP_KEY", KEY)
        .junit(&junit)
        .report(root.path().join("report"))
        .env("PGDRILL_RECORD_OUTPUTS", &record)
        .expect(0);
    let checked = ran.run_json();
    let segments = checked.step("wal").outputs["segments"].as_u64().unwrap_or_default();
    assert!(segments >= 1, "{:?}", checked.step("wal").outputs);
    let loaded = load.wait_with_output().expect("pgbench ends");
    assert!(loaded.status.success(), "pgbench: {}", text(&loaded.stderr));
    assert_eq!(Junit::read(&junit).status("wal"), "passed");

    // The archive keeps up: after a switch, the archiver catches up with no failure.
    // Two more segments after the backup's end, archived: the chain goes on past it.
    pg.psql("create table after_one as select 1 as x");
    pg.psql("select pg_switch_wal()");
    pg.psql("create table after_two as select 2 as x");
    pg.switch_and_wait_archived();

    let s: std::sync::Arc<dyn pgdrill::testkit::storage::Store> =
        std::sync::Arc::new(pgdrill::testkit::storage::local::FsStore::new(&store));
    let bases = pgdrill::testkit::backup::base::list(s.as_ref(), None).await.expect("list");
    assert_eq!(bases.len(), 1, "{bases:?}");
    let base = &bases[0];
    let m = &base.manifest;
    assert_eq!((m.server_major, m.timeline, m.wal_method.as_str(), m.cipher.as_str()), (15, 1, "fetch", "aes-256-gcm"));
    let system = m.system().expect("system identifier");
    assert_eq!(system.to_string(), pg.psql("select system_identifier from pg_control_system()"));
    let start = pgdrill::testkit::wal::Lsn::parse(&m.start_lsn).expect("start");
    let stop = pgdrill::testkit::wal::Lsn::parse(&m.stop_lsn).expect("stop");
    assert!(start < stop && m.authentication.is_some(), "{m:?}");
    assert_eq!((m.tablespaces.len(), m.layout.as_deref()), (1, Some("tars")), "{m:?}");

    let prom = root.path().join("wal.prom");
    let listed = wal(
        root.path(),
        &["list", "--config", conf.to_str().expect("utf-8"), "--metrics", prom.to_str().expect("utf-8")],
    );
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    let metrics = std::fs::read_to_string(&prom).expect("metrics");
    assert!(
        metrics.contains(&format!("pgdrill_wal_last_archived_timestamp_seconds{{system=\"{system}\"}} ")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("pgdrill_wal_gaps{{system=\"{system}\"}} 0\n")), "{metrics}");
    assert!(
        metrics.contains(&format!("pgdrill_wal_window_end_timestamp_seconds{{system=\"{system}\",timeline=\"1\"}} ")),
        "{metrics}"
    );
    assert!(listed.stdout.contains(&format!("system {system}")), "{}", listed.stdout);
    assert!(
        listed
            .stdout
            .contains(&format!("recoverable window, timeline 1: {}", pgdrill::testkit::util::rfc3339(m.finished_at))),
        "{}",
        listed.stdout
    );

    let beside = Run::cli(["backups", "list", "--storage"]).arg(&store).env("PGDRILL_BACKUP_KEY", KEY).expect(0);
    assert!(
        beside.stdout.contains(&format!("(cluster {system})")) && beside.stdout.contains(" base "),
        "{}",
        beside.stdout
    );
    assert!(beside.stdout.contains(&format!("system {system} timeline 1: recoverable from ")), "{}", beside.stdout);

    // Retention's dry run: the WAL before the (kept) base backup's start would go, nothing goes.
    let prune = written(
        root.path().join("prune.yaml"),
        format!(
            "name: prune\nsteps:\n  - id: prune\n    uses: wal.prune\n    with: {{ storage: \"{}\", min_keep: 1 }}\n",
            store.display()
        ),
    );
    let before = walk(&store).len();
    let pruned = Run::new(&prune).env("PGDRILL_RECORD_OUTPUTS", &record).report(root.path().join("prune")).expect(0);
    let would: Vec<String> = pruned.run_json().step("prune").outputs["deleted_wal"]
        .as_array()
        .expect("deleted_wal")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert!(!would.is_empty() && would.iter().all(|n| n.as_str() < first_segment(start).as_str()), "{would:?}");
    assert_eq!(walk(&store).len(), before, "a dry run deleted something");
    assert!(pruned.all().contains("would delete"), "{}", pruned.all());
    // What the three kinds emitted is what the catalogue documents (catalogue.rs lists them as
    // run here).
    let catalogue: serde_json::Value = serde_json::from_slice(&run(&["steps", "--json"]).stdout).expect("steps --json");
    let emitted = std::fs::read_to_string(&record).expect("record");
    for kind in ["backup.base", "wal.check", "wal.prune"] {
        let documented: std::collections::BTreeSet<String> = catalogue
            .as_array()
            .expect("list")
            .iter()
            .find(|k| k["name"] == kind)
            .and_then(|k| k["outputs"].as_array())
            .expect(kind)
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect();
        let got: std::collections::BTreeSet<String> = emitted
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == kind)
            .flat_map(|v| v["outputs"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        assert_eq!(got, documented, "{kind}: emitted outputs against the catalogue's");
    }

    // The same into an object store (moto): streamed as a multipart upload, listed there.
    if let Some(s3) = moto() {
        let port = s3.port;
        let made = Command::new("curl").args(["-s", "-X", "PUT", &format!("http://127.0.0.1:{port}/bkt")]).status();
        assert!(made.is_ok_and(|s| s.success()), "bucket");
        let aws = |run: Run| run.moto(port, "testing-secret").key(KEY);
        aws(Run::new("base-backup")
            .var("database_url", pg.url())
            .var("storage", "s3://bkt/p")
            .var("check_wal", "false"))
        .expect(0);
        let listed = aws(Run::cli(["backups", "list", "--storage", "s3://bkt/p", "--json"])).expect(0);
        let all: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
        let remote = all.as_array().expect("list").iter().find(|b| b["kind"] == "base").expect("a base backup in s3");
        assert_eq!(remote["system_identifier"], system.to_string());
        assert!(remote["path"].as_str().is_some_and(|p| p.starts_with("s3://bkt/p/.cluster/")), "{remote}");
    }

    // And into gs:// on the GCS emulator (the JSON API store): the same base backup streamed
    // there, listed with its system, its objects in the bucket (issue 38 named gs:// among the
    // stores a base backup goes to; none had been written there).
    if let Some(gcs) = crate::gcs_emulator::gcs_emulator() {
        let loc = crate::gcs_emulator::location(gcs.port, "base");
        let gs = |run: Run| run.key(KEY).env_remove("GOOGLE_APPLICATION_CREDENTIALS");
        gs(Run::new("base-backup").var("database_url", pg.url()).var("storage", &loc).var("check_wal", "false"))
            .expect(0);
        let listed = gs(Run::cli(["backups", "list", "--storage", &loc, "--json"])).expect(0);
        let all: serde_json::Value = serde_json::from_str(&listed.stdout).expect("json");
        let in_gcs =
            all.as_array().expect("list").iter().find(|b| b["kind"] == "base").expect("a base backup in gs://");
        assert_eq!(in_gcs["system_identifier"], system.to_string());
        let bucket = crate::gcs_emulator::BUCKET;
        assert!(
            in_gcs["path"].as_str().is_some_and(|p| p.starts_with(&format!("gs://{bucket}/base/.cluster/"))),
            "{in_gcs}"
        );
        let objects = crate::gcs_emulator::objects(gcs.port);
        assert!(
            objects.iter().filter(|o| o.starts_with("base/.cluster/")).count() >= 2,
            "archive and manifest: {objects:?}"
        );
    }

    // Put back into an empty directory: every byte authenticated, pg_verifybackup agrees.
    let data = root.path().join("restored");
    let spaces = root.path().join("spaces");
    let key = pgdrill::testkit::archive::KeySource::from_secret(KEY);
    let got = pgdrill::testkit::backup::base::materialize(s.clone(), &base.key, Some(&key), &data, Some(&spaces))
        .await
        .expect("materialize");
    assert!(got.verified.as_ref().is_ok_and(|v| v.contains("verified every file")), "{:?}", got.verified);
    assert!(data.join("PG_VERSION").is_file() && got.files > 900, "{got:?}");
    let oid = &m.tablespaces[0].oid;
    assert_eq!(got.tablespaces, vec![(*oid, spaces.join(oid.to_string()))]);
    let moved = std::fs::read_dir(spaces.join(oid.to_string())).expect("the tablespace's place").count();
    assert!(
        moved > 0
            && !std::fs::read_to_string(data.join("tablespace_map")).expect("map").contains(&ts.display().to_string())
    );
    let taken = pgdrill::testkit::backup::base::materialize(s.clone(), &base.key, Some(&key), &data, Some(&spaces))
        .await
        .expect_err("not empty");
    assert!(taken.message.contains("not empty"), "{}", taken.message);

    // The same backup and archive as a PhysicalSource: recovered to the archive's end in a
    // throwaway server through `wal fetch`, with the rows written after the backup back.
    let source = pgdrill::testkit::physical::own::OwnSource::new(
        &store.display().to_string(),
        root.path(),
        KEY,
        None,
        &pgdrill::testkit::storage::Opened::default(),
    )
    .expect("source")
    .with_exe(bin());
    let opts = pgdrill::testkit::physical::pitr::PitrOptions {
        backup: None,
        listed: None,
        recover: pgdrill::testkit::physical::recover::RecoverOptions {
            target: pgdrill::testkit::physical::recover::Target::latest(),
            marker: Some("select (select count(*) from after_two) = 1 and (select count(*) from in_ts) = 1000".into()),
            ..Default::default()
        },
    };
    let p = pgdrill::testkit::physical::pitr::run(&source, opts)
        .await
        .expect("recovered to the archive's end through wal fetch");
    assert_eq!(p.server.facts.marker, Some(true), "{:?}", p.server.facts);
    assert!(p.server.facts.segments_restored >= 2, "{:?}", p.server.facts);
    assert!(p.backup_check.as_deref().is_some_and(|c| c.contains("manifest authenticated")), "{:?}", p.backup_check);
    p.server.stop();

    let conf_s = conf.to_str().expect("utf-8");
    let first = segment_name(1, start.segno(SEG));
    // Absent: exit 1, PostgreSQL's end of the archive. Present: restored whole.
    let absent = wal(&data, &["fetch", "--config", conf_s, "0000000100000000000000FE", "pg_wal/RECOVERYXLOG"]);
    assert_eq!(absent.code, Some(1), "{}", absent.all());
    assert_eq!(wal(&data, &["fetch", "--config", conf_s, &first, "pg_wal/RECOVERYXLOG"]).code, Some(0));
    let fetched = std::fs::read(data.join("pg_wal/RECOVERYXLOG")).expect("fetched");
    assert_eq!(fetched.len() as u64, SEG);

    // Pushed again with the same bytes: success; with other bytes: refused, nothing replaced.
    let object = store.join(pgdrill::testkit::wal::wal_key(system, &first));
    let stored = std::fs::read(&object).expect("object");
    let again = written(data.join("pg_wal").join(&first), &fetched);
    let same = wal(&data, &["push", "--config", conf_s, &format!("pg_wal/{first}")]);
    assert_eq!(same.code, Some(0), "{}", same.all());
    assert!(same.stderr.contains("already archived with the same content"), "{}", same.all());
    let mut changed = fetched.clone();
    changed[1 << 20] ^= 0xFF;
    std::fs::write(&again, &changed).expect("write");
    let refused = wal(&data, &["push", "--config", conf_s, &format!("pg_wal/{first}")]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        refused.stderr.contains("different content") && refused.stderr.contains("nothing was replaced"),
        "{}",
        refused.all()
    );
    assert_eq!(std::fs::read(&object).expect("object"), stored, "the archived segment was replaced");

    // Damage, on a copy: each is fatal to recovery (above 125), never "absent".
    let damaged = root.path().join("damaged");
    copy_tree(&store, &damaged);
    let dconf = config(root.path(), "damaged", &damaged, KEY);
    let dconf_s = dconf.to_str().expect("utf-8");
    let last = stop.segno(SEG) + 1;
    let zero = segment_name(1, start.segno(SEG));
    let short = segment_name(1, last + 1);
    let dkey = |n: &str| damaged.join(pgdrill::testkit::wal::wal_key(system, n));
    std::fs::write(dkey(&zero), b"").expect("0-byte");
    let whole = std::fs::read(dkey(&short)).expect("a second segment after the backup's end is archived");
    std::fs::write(dkey(&short), &whole[..whole.len() / 2]).expect("short");
    for (name, why) in [(&zero, "0 bytes"), (&short, "")] {
        let r = wal(&data, &["fetch", "--config", dconf_s, name, "pg_wal/RECOVERYXLOG"]);
        assert_eq!(r.code, Some(200), "{}", r.all());
        assert!(r.stderr.contains(why) && r.stderr.contains("recovery stops"), "{}", r.all());
    }
    let wrong = config(root.path(), "wrong", &store, "another-passphrase-entirely-0123456789");
    let r = wal(&data, &["fetch", "--config", wrong.to_str().expect("utf-8"), &first, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    assert!(r.stderr.contains("wrong key"), "{}", r.all());
    // A store that cannot be read (here a file where the directory should be).
    let unreadable = config(root.path(), "unreadable", &conf, KEY);
    let r = wal(&data, &["fetch", "--config", unreadable.to_str().expect("utf-8"), &first, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    // A missing segment in the middle is named by wal.check, with the damaged ones.
    let missing = segment_name(1, last);
    std::fs::remove_file(dkey(&missing)).expect("the segment after the backup's end is archived");
    let check = written(
        root.path().join("check.yaml"),
        format!(
            "name: check\nsecrets:\n  key: {{ env: PGDRILL_BACKUP_KEY }}\nsteps:\n  - id: wal\n    uses: wal.check\n    with: {{ storage: \"{}\", key: \"{{{{ secrets.key }}}}\", wait: 1s }}\n",
            damaged.display()
        ),
    );
    let failed = Run::new(&check).env("PGDRILL_BACKUP_KEY", KEY).expect(1);
    let gapped = wal(root.path(), &["list", "--config", dconf_s, "--metrics", prom.to_str().expect("utf-8")]);
    assert!(gapped.stdout.contains(&format!("GAP: segment {missing} is missing")), "{}", gapped.all());
    let metrics = std::fs::read_to_string(&prom).expect("metrics");
    assert!(metrics.contains(&format!("pgdrill_wal_gaps{{system=\"{system}\"}} 1\n")), "{metrics}");
    let said = failed.all();
    let before = segment_name(1, stop.segno(SEG));
    assert!(said.contains(&format!("segment {missing} is missing after {before} (archived ")), "{said}");
    assert!(
        said.contains(&format!("{zero} does not open")) && said.contains(&format!("{short} does not open")),
        "{said}"
    );

    // kill -9 of a push mid-way leaves nothing visible under the final name; the retry works.
    let killed = root.path().join("killed");
    copy_tree(&store, &killed);
    let kconf = config(root.path(), "killed", &killed, KEY);
    let kconf_s = kconf.to_str().expect("utf-8");
    let name = segment_name(1, 0xF0);
    let mut seg = fetched.clone();
    seg[8..16].copy_from_slice(&(0xF0 * SEG).to_ne_bytes());
    std::fs::write(data.join("pg_wal").join(&name), &seg).expect("write");
    let wal_dir = killed.join(pgdrill::testkit::wal::wal_prefix(system));
    let mut push = Run::cli(["wal", "push", "--config", kconf_s, &format!("pg_wal/{name}")])
        .current_dir(&data)
        .command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("push");
    // Killed as soon as its partial file exists (or at once when it is already done).
    wait_for(Duration::from_secs(30), || {
        let partial = std::fs::read_dir(&wal_dir)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".pgdrill-partial-"));
        (partial || push.try_wait().ok().flatten().is_some()).then_some(())
    });
    let _ = push.kill();
    let _ = push.wait();
    let after = wal(&data, &["fetch", "--config", kconf_s, &name, "pg_wal/RECOVERYXLOG"]);
    assert!(matches!(after.code, Some(0 | 1)), "a killed push left a damaged object: {}", after.all());
    let retry = wal(&data, &["push", "--config", kconf_s, &format!("pg_wal/{name}")]);
    assert_eq!(retry.code, Some(0), "{}", retry.all());
    assert_eq!(wal(&data, &["fetch", "--config", kconf_s, &name, "pg_wal/RECOVERYXLOG"]).code, Some(0));
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG")).expect("fetched"), seg);
    let leftovers: Vec<_> =
        walk(&killed).into_iter().filter(|p| p.to_string_lossy().contains(".pgdrill-partial-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A segment of 16 MiB whose long page header names `system` and `segno`.
fn fake_segment(system: u64, segno: u64) -> Vec<u8> {
    let mut b = vec![0u8; SEG as usize];
    b[2..4].copy_from_slice(&0x0006u16.to_ne_bytes());
    b[4..8].copy_from_slice(&1u32.to_ne_bytes());
    b[8..16].copy_from_slice(&(segno * SEG).to_ne_bytes());
    b[24..32].copy_from_slice(&system.to_ne_bytes());
    b[32..36].copy_from_slice(&(SEG as u32).to_ne_bytes());
    b
}

/// A data directory that `wal push` and `wal fetch` take for `system`'s (its `pg_control`
/// names it), with segment 3 of timeline 1 in `pg_wal/`; and a key file beside it.
fn fake_data_dir(dir: &Path, system: u64) -> (PathBuf, PathBuf) {
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("global")).expect("global");
    std::fs::create_dir_all(data.join("pg_wal")).expect("pg_wal");
    let mut control = system.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    std::fs::write(data.join("global/pg_control"), control).expect("pg_control");
    std::fs::write(data.join("pg_wal").join(segment_name(1, 3)), fake_segment(system, 3)).expect("segment");
    let key_file = written(dir.join("k"), KEY);
    (data, key_file)
}

#[test]
fn an_object_store_archive_restores_what_was_pushed_says_absent_and_stops_on_a_0_byte_object() {
    let Some(s3) = moto() else { return };
    let port = s3.port;
    let created = Command::new("curl").args(["-sf", "-X", "PUT", &format!("http://127.0.0.1:{port}/bkt")]).status();
    assert!(created.is_ok_and(|s| s.success()), "bucket");
    let dir = tempfile::tempdir().expect("tmp");
    let system: u64 = 7_000_000_000_000_000_123;
    let (data, key_file) = fake_data_dir(dir.path(), system);
    let name = segment_name(1, 3);
    let aws = |args: &[&str]| {
        let mut run = Run::cli(["wal"]).current_dir(&data);
        for a in args {
            run = run.arg(a);
        }
        run.arg("--storage")
            .arg("s3://bkt/wal")
            .arg("--key-file")
            .arg(&key_file)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("AWS_PROFILE")
            .output()
    };
    let pushed = aws(&["push", &format!("pg_wal/{name}")]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.all());
    assert_eq!(aws(&["push", &format!("pg_wal/{name}")]).code, Some(0), "the same segment again");
    let back = aws(&["fetch", &name, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(back.code, Some(0), "{}", back.all());
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG")).expect("fetched"), fake_segment(system, 3));
    assert_eq!(aws(&["fetch", &segment_name(1, 4), "pg_wal/RECOVERYXLOG"]).code, Some(1));
    // A 0-byte object where the segment was.
    let key = pgdrill::testkit::wal::wal_key(system, &name);
    let emptied = Command::new("curl")
        .args(["-s", "-w", "%{http_code}", "-X", "PUT", "--data-binary", ""])
        .arg("-H")
        .arg("Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0")
        .arg(format!("http://127.0.0.1:{port}/bkt/wal/{key}"))
        .output()
        .expect("curl");
    assert_eq!(text(&emptied.stdout), "200", "0-byte object: {}", text(&emptied.stderr));
    let r = aws(&["fetch", &name, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    assert!(r.stderr.contains("0 bytes"), "{}", r.all());
}

/// The WAL archive in Azure Blob storage (Azurite): what was pushed comes back, the same
/// segment again is success and other content under its name is refused, an absent segment
/// is the only exit 1, a container that is not there stops recovery (exit 200), and `wal
/// list` shows the system. (gs:// on an emulator: the test after this one.)
#[test]
fn an_azure_blob_archive_restores_what_was_pushed_refuses_other_content_and_says_absent() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(az) = crate::object_store::azurite(dir.path()) else { return };
    assert_eq!(crate::object_store::azure_create_container(az.port, "wal"), 201);
    let system: u64 = 7_000_000_000_000_000_456;
    let (data, key_file) = fake_data_dir(dir.path(), system);
    let name = segment_name(1, 3);
    let connection = format!(
        "DefaultEndpointsProtocol=http;AccountName={a};AccountKey={k};BlobEndpoint=http://127.0.0.1:{p}/{a};",
        a = crate::object_store::AZURITE_ACCOUNT,
        k = crate::object_store::AZURITE_KEY,
        p = az.port
    );
    let az_wal = |storage: &str, args: &[&str]| {
        let mut run = Run::cli(["wal"]).current_dir(&data);
        for a in args {
            run = run.arg(a);
        }
        run.arg("--storage")
            .arg(storage)
            .arg("--key-file")
            .arg(&key_file)
            .env("AZURE_STORAGE_CONNECTION_STRING", &connection)
            .env_remove("PGDRILL_WAL_CONFIG")
            .output()
    };
    let loc = "az://wal/pg";
    let pushed = az_wal(loc, &["push", &format!("pg_wal/{name}")]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.all());
    assert_eq!(az_wal(loc, &["push", &format!("pg_wal/{name}")]).code, Some(0), "the same segment again");
    let back = az_wal(loc, &["fetch", &name, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(back.code, Some(0), "{}", back.all());
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG")).expect("fetched"), fake_segment(system, 3));
    let absent = az_wal(loc, &["fetch", &segment_name(1, 4), "pg_wal/RECOVERYXLOG"]);
    assert_eq!(absent.code, Some(1), "{}", absent.all());
    // Other bytes under the archived name: refused, the archived object left as it was.
    let mut other = fake_segment(system, 3);
    other[100] = 1;
    std::fs::write(data.join("pg_wal").join(&name), &other).expect("segment");
    let refused = az_wal(loc, &["push", &format!("pg_wal/{name}")]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(refused.all().contains("different content"), "{}", refused.all());
    let again = az_wal(loc, &["fetch", &name, "pg_wal/RECOVERYXLOG2"]);
    assert_eq!(again.code, Some(0), "{}", again.all());
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG2")).expect("fetched"), fake_segment(system, 3));
    // A container that is not there: never "absent", recovery stops.
    let missing = az_wal("az://nowhere/pg", &["fetch", &name, "pg_wal/RECOVERYXLOG3"]);
    assert_eq!(missing.code, Some(200), "{}", missing.all());
    let listed = az_wal(loc, &["list"]);
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert!(listed.stdout.contains(&format!("system {system}")), "{}", listed.all());
    assert!(listed.stdout.contains("1 segments"), "{}", listed.all());
    assert!(!listed.all().contains(crate::object_store::AZURITE_KEY), "the account key was shown");
}

/// The WAL archive in gs:// through a Google Cloud Storage emulator (gcp-storage-emulator),
/// reached through its JSON API (storage/gcs.rs): what was pushed comes back, the same segment
/// again is success and other content under its name is refused (the archived object left as
/// it was), an absent segment is the only exit 1, `wal list` shows the system; once the
/// emulator is stopped, `wal push` exits 3 (PostgreSQL keeps the segment and retries), `wal
/// fetch` exits 200 (recovery stops: never "absent") and `wal list` exits 3. Through
/// object_store's XML client every command stopped at the emulator's 501 and nothing was ever
/// written (`wal push` exit 3 where this one asserts 0).
#[test]
fn a_gcs_archive_on_an_emulator_restores_what_was_pushed_refuses_other_content_and_a_stopped_one_is_never_absent() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(gcs) = crate::gcs_emulator::gcs_emulator() else { return };
    let system: u64 = 7_000_000_000_000_000_789;
    let (data, key_file) = fake_data_dir(dir.path(), system);
    let name = segment_name(1, 3);
    let loc = crate::gcs_emulator::location(gcs.port, "pg");
    let gs_wal = |args: &[&str]| {
        let mut run = Run::cli(["wal"]).current_dir(&data);
        for a in args {
            run = run.arg(a);
        }
        run.arg("--storage")
            .arg(&loc)
            .arg("--key-file")
            .arg(&key_file)
            .env_remove("PGDRILL_WAL_CONFIG")
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .output()
    };
    let pushed = gs_wal(&["push", &format!("pg_wal/{name}")]);
    assert_eq!(pushed.code, Some(0), "{}", pushed.all());
    let key = pgdrill::testkit::wal::wal_key(system, &name);
    assert!(
        crate::gcs_emulator::objects(gcs.port).contains(&format!("pg/{key}")),
        "the segment is in the bucket under its key: {:?}",
        crate::gcs_emulator::objects(gcs.port)
    );
    let same = gs_wal(&["push", &format!("pg_wal/{name}")]);
    assert_eq!(same.code, Some(0), "the same segment again: {}", same.all());
    assert!(same.stderr.contains("already archived with the same content"), "{}", same.all());
    let back = gs_wal(&["fetch", &name, "pg_wal/RECOVERYXLOG"]);
    assert_eq!(back.code, Some(0), "{}", back.all());
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG")).expect("fetched"), fake_segment(system, 3));
    let absent = gs_wal(&["fetch", &segment_name(1, 4), "pg_wal/RECOVERYXLOG"]);
    assert_eq!(absent.code, Some(1), "{}", absent.all());
    // Other bytes under the archived name: refused, the archived object left as it was.
    let mut other = fake_segment(system, 3);
    other[100] = 1;
    std::fs::write(data.join("pg_wal").join(&name), &other).expect("segment");
    let refused = gs_wal(&["push", &format!("pg_wal/{name}")]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(refused.all().contains("different content"), "{}", refused.all());
    let again = gs_wal(&["fetch", &name, "pg_wal/RECOVERYXLOG2"]);
    assert_eq!(again.code, Some(0), "{}", again.all());
    assert_eq!(std::fs::read(data.join("pg_wal/RECOVERYXLOG2")).expect("fetched"), fake_segment(system, 3));
    let listed = gs_wal(&["list"]);
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert!(listed.stdout.contains(&format!("system {system}")), "{}", listed.all());
    assert!(listed.stdout.contains("1 segments"), "{}", listed.all());
    // The emulator stopped: every command fails, none says "absent".
    drop(gcs);
    let pushed = gs_wal(&["push", &format!("pg_wal/{name}")]);
    assert_eq!(pushed.code, Some(3), "{}", pushed.all());
    let fetched = gs_wal(&["fetch", &name, "pg_wal/RECOVERYXLOG3"]);
    assert!(
        fetched.code.is_some_and(|c| c > 125),
        "an unreachable store is never an absent segment: {}",
        fetched.all()
    );
    assert!(!data.join("pg_wal/RECOVERYXLOG3").exists(), "nothing fetched");
    assert!(fetched.all().contains("cannot be reached"), "{}", fetched.all());
    let listed = gs_wal(&["list"]);
    assert_eq!(listed.code, Some(3), "{}", listed.all());
}

/// A PostgreSQL 17 server in the image, allowing replication connections (a base backup is
/// one); removed on drop.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.0]).output();
    }
}

impl Container {
    /// Let replication connections in with a password and reload: the image's entrypoint
    /// allows `all` databases from anywhere, which excludes replication.
    fn allow_replication(&self) {
        let hba = Command::new("docker")
            .args(["exec", &self.0, "sh", "-c", "echo 'host replication all all scram-sha-256' >> \"$PGDATA/pg_hba.conf\" && psql -U postgres -c 'select pg_reload_conf()'"])
            .output()
            .expect("docker exec");
        assert!(hba.status.success(), "{}", text(&hba.stderr));
    }

    /// The port on 127.0.0.1 Docker published the server's 5432 on.
    fn host_port(&self) -> String {
        text(&Command::new("docker").args(["port", &self.0, "5432/tcp"]).output().expect("docker port").stdout)
            .trim()
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string()
    }
}

/// `pgdrill run base-backup` of the server in a container that answers on `port` (as
/// `postgres` with `password`) into `store`, with the backup key, its tools from no image
/// but the one the caller chose.
fn container_base_backup(password: &str, port: &str, store: &Path) -> Run {
    Run::new("base-backup")
        .var("database_url", format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"))
        .var("storage", store.display())
        .key(KEY)
        .env_remove("PGDRILL_DOCKER_IMAGE")
}

/// A PostgreSQL 17 server's base backup takes pg_basebackup 17 from a Docker image, the
/// local ones being 15: without PGDRILL_DOCKER_IMAGE and without `postgres:17`, from
/// `ci/setup.sh`'s `pgdrill/postgres-local:17`, as `pitr.source` already did (one lookup,
/// `pg::image_tools::image_of`). Before, `backup.base` looked for `postgres:17` only and
/// failed (exit 3) where the local image was all there was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_17_base_backup_took_its_tools_from_postgres_17_only_never_the_local_image() {
    let image = "pgdrill/postgres-local:17";
    if !docker_ready(image) {
        return;
    }
    let password = "base-backup-test-password-17";
    let name = format!("pgdrill-test-base17-{}", std::process::id());
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "-e",
            &format!("POSTGRES_PASSWORD={password}"),
            "-p",
            "127.0.0.1::5432",
            image,
        ])
        .args(["postgres", "-c", "wal_level=replica", "-c", "max_wal_senders=4"])
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = Container(name.clone());
    let ready = wait_for(Duration::from_secs(60), || {
        let o = Command::new("docker")
            .args(["exec", &c.0, "pg_isready", "-U", "postgres", "-h", "127.0.0.1"])
            .output()
            .ok()?;
        o.status.success().then_some(())
    });
    assert!(ready.is_some(), "the container's server did not start");
    c.allow_replication();
    let port = c.host_port();
    let root = tempfile::tempdir().expect("tmp");
    let store = root.path().join("store");
    let ran = container_base_backup(password, &port, &store).var("check_wal", "false").expect(0);
    let s: std::sync::Arc<dyn pgdrill::testkit::storage::Store> =
        std::sync::Arc::new(pgdrill::testkit::storage::local::FsStore::new(&store));
    let bases = pgdrill::testkit::backup::base::list(s.as_ref(), None).await.expect("list");
    let m = &bases.first().expect("a base backup").manifest;
    assert_eq!(m.server_major, 17, "{m:?}");
    assert!(
        m.pg_basebackup_version.contains("17") && m.pg_basebackup_version.contains("from the image"),
        "{}",
        ran.all()
    );
    // Where the official image is not here (as on CI), the local one was taken.
    let official = Command::new("docker").args(["image", "inspect", "postgres:17"]).output().expect("docker");
    if !official.status.success() {
        assert!(m.pg_basebackup_version.contains(image), "{}: {}", m.pg_basebackup_version, ran.all());
    }
    let data = root.path().join("data");
    let key = pgdrill::testkit::archive::KeySource::from_secret(KEY);
    let got = pgdrill::testkit::backup::base::materialize(s.clone(), &bases[0].key, Some(&key), &data, None)
        .await
        .expect("materialize");
    assert_eq!(std::fs::read_to_string(data.join("PG_VERSION")).expect("PG_VERSION").trim(), "17");
    assert!(got.files > 900 && data.join("backup_manifest").is_file(), "{got:?}");
    assert!(!ran.all().contains(password), "the password was shown");
    // Regression: `backups list --database` hid base backups, which hold every database.
    let listed = Run::cli(["backups", "list", "--database", "postgres", "--storage"])
        .arg(&store)
        .env("PGDRILL_BACKUP_KEY", KEY)
        .expect(0);
    assert!(listed.stdout.contains(" base "), "{}", listed.stdout);
    assert!(
        listed.stdout.contains("note: a base backup holds every database of its cluster, postgres included"),
        "{}",
        listed.stdout
    );
    let json = Run::cli(["backups", "list", "--json", "--database", "postgres", "--storage"])
        .arg(&store)
        .env("PGDRILL_BACKUP_KEY", KEY)
        .expect(0);
    let all: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let base = all.as_array().and_then(|l| l.iter().find(|b| b["kind"] == "base")).expect("the base backup listed");
    assert!(base["note"].as_str().is_some_and(|n| n.contains("every database")), "{base}");
    // Its manifest recorded the schema of the database it connected to: the ground truth of
    // a recovery to its end.
    assert_eq!(m.database_schema.as_ref().map(|s| s.database.as_str()), Some("postgres"), "{m:?}");
}

#[test]
fn a_mistyped_restore_command_stops_recovery_instead_of_reading_as_absent() {
    let dir = tempfile::tempdir().expect("tmp");
    let r = wal(dir.path(), &["fetch", "--no-such-option", "000000010000000000000003", "pg_wal/RECOVERYXLOG"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    let r = wal(dir.path(), &["fetch", "000000010000000000000003"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    // No settings at all is fatal too, naming what to set.
    let r = wal(dir.path(), &["fetch", "000000010000000000000003", "pg_wal/RECOVERYXLOG"]);
    assert_eq!(r.code, Some(200), "{}", r.all());
    assert!(r.stderr.contains("PGDRILL_WAL_CONFIG"), "{}", r.all());
}

/// The monthly drill as the README gives it, against a source archiving with `pgdrill wal
/// push` into a folder and into an object store (moto) at once: base backups by the shipped
/// base-backup runbook, a restore point, then `pgdrill run pitr --var source=pgdrill` to it
/// from each. Recovery from the object store stopped at the first `wal fetch` (exit 200)
/// while the throwaway's clean environment kept the store's credentials from it.
#[test]
fn a_pitr_drill_from_pgdrills_own_backups_in_a_folder_and_an_object_store_reaches_the_restore_point() {
    let Some(pgbin) = pg15() else { return };
    let Some(s3) = moto() else { return };
    // Distinctive, to be searched for in every output file.
    const SECRET: &str = "moto-secret-7f3e9a1c5b";
    let port = s3.port;
    let made = Command::new("curl").args(["-s", "-X", "PUT", &format!("http://127.0.0.1:{port}/drill")]).status();
    assert!(made.is_ok_and(|s| s.success()), "bucket");
    let (root, store) = root_and_store();
    let local = config(root.path(), "local", &store, KEY);
    // The object store's archive_command gets its credentials from a 0600 file its config
    // names, not from the server's environment.
    let remote = "s3://drill/pg";
    let creds = written(
        root.path().join("s3.env"),
        format!(
            "AWS_ACCESS_KEY_ID=moto-id\nAWS_SECRET_ACCESS_KEY={SECRET}\nAWS_REGION=us-east-1\nAWS_ENDPOINT_URL=http://127.0.0.1:{port}\nAWS_ALLOW_HTTP=true\n"
        ),
    );
    give(&creds, 0o600);
    let s3conf = written(
        root.path().join("s3.conf"),
        format!(
            "storage = {remote}\nkey_file = {}\ncredentials_file = {}\n",
            root.path().join("local.key").display(),
            creds.display()
        ),
    );
    give(&s3conf, 0o600);
    let push = |c: &Path| format!("{} wal push --config {} %p", bin().display(), c.display());
    let pg = Cluster::start(&pgbin, &root.path().join("pg"), &format!("{} && {}", push(&local), push(&s3conf)));
    let aws = |run: Run| run.moto_as(port, "moto-id", SECRET).key(KEY);

    pg.psql("create table kept as select generate_series(1, 100) as g");
    // Both archives take the first segment before any backup (the server's log tells why not).
    let first = pg.psql("select pg_walfile_name(pg_switch_wal())");
    let archived = wait_for(Duration::from_secs(60), || {
        let s = pg.psql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        (s >= first).then_some(s)
    });
    assert!(archived.is_some(), "{}", std::fs::read_to_string(root.path().join("pg/server.log")).unwrap_or_default());
    let reports = root.path().join("reports");
    for storage in [store.display().to_string(), remote.to_string()] {
        let ran =
            aws(Run::new("base-backup").var("database_url", pg.url()).var("storage", &storage).var("wait", "60s"))
                .report(&reports)
                .expect(0);
        // The object in the bucket was read back and hashed before its manifest was written;
        // the local file is proven by what was written to it and its fsync (a read-back would
        // read the page cache those writes filled).
        let json = ran.run_json();
        let log = &json.step("base").log;
        let proof = match storage.starts_with("s3://") {
            true => "size and sha256 match what was written",
            false => "hashed as it was written and fsynced before its rename",
        };
        assert!(log.iter().any(|l| l.contains(proof)), "{storage}: {log:?}");
    }
    pg.psql("insert into kept values (101)");
    pg.psql("select pg_create_restore_point('before_incident')");
    pg.psql("insert into kept values (102)");
    pg.psql("create table lost as select 1 as x");
    pg.switch_and_wait_archived();

    let marker = "select (select count(*) from kept) = 101 and to_regclass('lost') is null";
    for storage in [store.display().to_string(), remote.to_string()] {
        let ran = aws(Run::new("pitr")
            .var("source", "pgdrill")
            .var("storage", &storage)
            .var("target_name", "before_incident")
            .var("marker", marker)
            // No mark at the restore point: unproven content, accepted (unset, it fails).
            .var("accept_unproven", true))
        .report(&reports)
        .expect(0);
        let json = ran.run_json();
        let out = &json.step("recover").outputs;
        assert!(
            out["stop_line"]
                .as_str()
                .is_some_and(|l| l.contains("recovery stopping at restore point \"before_incident\"")),
            "{storage}: {out}"
        );
        assert!(out["segments_restored"].as_u64().is_some_and(|n| n >= 1), "{storage}: {out}");
        assert!(out["tool"].as_str().is_some_and(|t| t.starts_with("pgdrill")), "{storage}: {out}");
        assert!(!ran.all().contains(SECRET), "{storage}: the store's secret in the run's output");
        // No fingerprint of the source at a restore point: the content is unproven, said so.
        assert_eq!(out["ground_truth"], "none", "{storage}: {out}");
    }
    // To the base backup's end (immediate), the schema backup.base recorded then is the
    // ground truth, read through the key.
    let ran = aws(Run::new("pitr").var("source", "pgdrill").var("storage", store.display()).var("target", "immediate"))
        .var("accept_unproven", "true")
        .report(root.path().join("immediate"))
        .expect(0);
    let json = ran.run_json();
    let out = &json.step("recover").outputs;
    assert_eq!(out["ground_truth"], "base backup schema", "{out}");
    // The marker proved the rows before the restore point back and those after absent; the
    // store's secret is in no file the runs wrote.
    let files = walk(&reports);
    assert!(files.len() > 4, "{files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(SECRET), "the store's secret in {}", f.display());
    }
}

/// PostgreSQL 17, which this machine has only as a Docker image, archiving through pgdrill
/// itself: `archive_command = 'pgdrill wal push --config ... %p'` inside the image's server
/// (the built binary mounted), a base backup by the shipped runbook (whose wal.check proves
/// the archive holds the backup's WAL), the pitr-drill's mark (`pitr.mark`: the source's
/// schema and rows and a restore point), then the shipped `pitr` runbook (`source=pgdrill`)
/// recovering in a throwaway of the same image, its `restore_command` being `pgdrill wal
/// fetch`, judged against the mark: the rows before it are back, those after are not.
#[test]
fn a_postgresql_17_server_archives_through_wal_push_and_recovers_to_a_restore_point_through_wal_fetch() {
    let image = "pgdrill/postgres-local:17";
    if !docker_ready(image) {
        return;
    }
    let (root, store) = root_and_store();
    let conf = config(root.path(), "wal", &store, KEY);
    // The source runs as the user the throwaway will (`nobody` when the tests run as root),
    // so what `wal push` writes is what `wal fetch` can read.
    let user = if nix::unistd::geteuid().is_root() {
        "65534:65534".to_string()
    } else {
        format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid())
    };
    let exe = bin();
    let sock = root.path().join("sock");
    std::fs::create_dir(&sock).expect("sock");
    give(&sock, 0o700);
    let password = "wal-archive-test-password-17";
    let name = format!("pgdrill-test-wal17-{}", std::process::id());
    let mount = |p: &Path, ro: &str| format!("{}:{}{ro}", p.display(), p.display());
    let out = Command::new("docker")
        .args(["run", "-d", "--name", &name, "--user", &user, "-e", "PGDATA=/tmp/pgdata"])
        // The image's socket folder is its `postgres` user's: one of the source's own.
        .args(["-v", &format!("{}:/var/run/postgresql", sock.display())])
        .args(["-e", &format!("POSTGRES_PASSWORD={password}"), "-p", "127.0.0.1::5432"])
        .args(["-v", &mount(&exe, ":ro"), "-v", &mount(root.path(), "")])
        .args([image, "postgres", "-c", "wal_level=replica", "-c", "max_wal_senders=4"])
        .args(["-c", "archive_mode=on", "-c", "archive_timeout=1"])
        .arg("-c")
        .arg(format!("archive_command={} wal push --config {} %p", exe.display(), conf.display()))
        .output()
        .expect("docker run");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let c = Container(name.clone());
    let psql = |sql: &str| {
        let o = Command::new("docker")
            .args(["exec", "-e", &format!("PGPASSWORD={password}"), &c.0])
            .args(["psql", "-h", "127.0.0.1", "-U", "postgres", "-AtXc", sql])
            .output()
            .expect("docker exec");
        (o.status.success(), text(&o.stdout).trim().to_string(), text(&o.stderr))
    };
    let psql_ok = |sql: &str| {
        let (ok, out, err) = psql(sql);
        assert!(ok, "{sql}: {err}");
        out
    };
    let ready = wait_for(Duration::from_secs(60), || psql("select 1").0.then_some(()));
    let logs = || text(&Command::new("docker").args(["logs", &c.0]).output().expect("docker logs").stderr);
    assert!(ready.is_some(), "the PostgreSQL 17 source did not start: {}", logs());
    c.allow_replication();
    let port = c.host_port();
    // The first segment through `wal push` before any backup: the archive's folders are the
    // server's user's.
    let archived_to = |seg: &str| {
        wait_for(Duration::from_secs(60), || {
            let s = psql_ok("select coalesce(last_archived_wal, '') || '|' || failed_count from pg_stat_archiver");
            (s.split('|').next() >= Some(seg)).then_some(s)
        })
    };
    psql_ok("create table kept as select generate_series(1, 100) as g");
    let first = psql_ok("select pg_walfile_name(pg_switch_wal())");
    assert!(archived_to(&first).is_some(), "wal push did not archive {first}: {}", logs());
    container_base_backup(password, &port, &store).var("wait", "60s").expect(0);
    psql_ok("insert into kept values (101); create table other as select 1 as y");
    // The mark on 17, as the pitr-drill takes it: with every table locked against writes, the
    // source's schema and per-table rows and a restore point, in one transaction.
    let mark = written(root.path().join("mark.yaml"), "name: mark17\nvars:\n  url: ~\nsteps:\n  - id: mark\n    uses: pitr.mark\n    with: { url: \"{{ vars.url }}\", restore_point: before_incident }\n");
    let marked = Run::new(&mark)
        .var("url", format!("postgres://postgres:{password}@127.0.0.1:{port}/postgres"))
        .report(root.path().join("mark"))
        .expect(0);
    let fingerprint = marked.run_json().step("mark").outputs["fingerprint"].clone();
    assert!(
        fingerprint["tables"].get("public.kept").is_some() && fingerprint["tables"].get("public.other").is_some(),
        "{fingerprint}"
    );
    psql_ok("insert into kept values (102); create table lost as select 1 as x");
    let switched = psql_ok("select pg_walfile_name(pg_switch_wal())");
    let archiver = archived_to(&switched).unwrap_or_else(|| psql_ok("select * from pg_stat_archiver"));
    assert!(archiver.ends_with("|0"), "the archiver failed or fell behind: {archiver}");
    drop(c);

    // The shipped `pitr` runbook, its recovery judged against the mark (`--var expect=FILE`,
    // the fingerprint as a team keeps it; the pitr-drill's inline): the recovered copy's
    // schema and rows must be the source's there.
    let mark_file = written(root.path().join("mark.json"), fingerprint.to_string());
    let report = root.path().join("report");
    let ran = Run::new("pitr")
        .var("expect", mark_file.display())
        .var("source", "pgdrill")
        .var("storage", store.display())
        .var("target_name", "before_incident")
        .var("marker", "select (select count(*) from kept) = 101 and to_regclass('lost') is null")
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env("PGDRILL_DOCKER_IMAGE", "pgdrill/postgres-local:{major}")
        .report(&report)
        .expect(0);
    let json = ran.run_json();
    let out = &json.step("recover").outputs;
    assert_eq!(out["ground_truth"], "source at the target", "{out}");
    assert!(out["server_version"].as_str().is_some_and(|v| v.starts_with("17.")), "{out}");
    assert!(
        out["stop_line"].as_str().is_some_and(|l| l.contains("recovery stopping at restore point \"before_incident\"")),
        "{out}"
    );
    assert!(out["segments_restored"].as_u64().is_some_and(|n| n >= 1), "fetched through wal fetch: {out}");
    assert!(out["tool"].as_str().is_some_and(|t| t.starts_with("pgdrill")), "{out}");
    assert!(!ran.all().contains(password), "the password was shown");
}
