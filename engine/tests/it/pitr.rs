//! Point-in-time recovery against real PostgreSQL 15 (native binaries): a source cluster
//! archiving with its own `archive_command` into a folder, real `pg_basebackup`, recovery
//! in a throwaway server by `pgdrill::testkit::physical`, and each target proven. Every field
//! failure is made to happen and must fail, never pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pgdrill::testkit::physical::archiving::{ArchivingOptions, ArchivingServer};
use pgdrill::testkit::physical::basebackup::BasebackupFolder;
use pgdrill::testkit::physical::pitr::{self, PitrOptions};
use pgdrill::testkit::physical::recover::{RecoverOptions, Target, TargetKind};
use pgdrill::testkit::physical::source::Lsn;
use time::OffsetDateTime;

use crate::common::{self, written};

/// A source cluster archiving into `<tmp>/archive`, base backups under `<tmp>/backups`.
pub(crate) struct Source {
    pub(crate) tmp: tempfile::TempDir,
    pub(crate) server: ArchivingServer,
}

impl Source {
    pub(crate) fn archive(&self) -> PathBuf {
        self.tmp.path().join("archive")
    }
    pub(crate) fn backups(&self) -> PathBuf {
        self.tmp.path().join("backups")
    }
}

pub(crate) async fn source() -> Option<Source> {
    let tmp = tempfile::tempdir().expect("tmp");
    let opts = ArchivingOptions { archive_dir: Some(tmp.path().join("archive")), ..Default::default() };
    let server = common::archiving_15(opts).await?;
    common::exec(
        &server.url(),
        "create table t (id bigserial primary key, phase text not null, at timestamptz default clock_timestamp())",
    )
    .await;
    Some(Source { tmp, server })
}

/// A [`source`] with a base backup `b1` taken before any row: the source and its URL.
pub(crate) async fn source_with_a_base_backup() -> Option<(Source, String)> {
    let src = source().await?;
    let url = src.server.url();
    basebackup(&src.server, &src.backups().join("b1"));
    Some((src, url))
}

/// `pg_basebackup -Ft -X none` (with its backup_manifest) into `<backups>/<name>`.
pub(crate) fn basebackup(s: &ArchivingServer, into: &Path) {
    let out = std::process::Command::new(s.bin_dir.join("pg_basebackup"))
        .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "-U", &s.user, "-Ft", "-X", "none", "-c", "fast", "-D"])
        .arg(into)
        .env("PGPASSWORD", &s.password)
        .output()
        .expect("pg_basebackup");
    assert!(out.status.success(), "pg_basebackup: {}", common::text(&out.stderr));
}

pub(crate) async fn insert(url: &str, phase: &str, n: u32) {
    common::exec(url, &format!("insert into t (phase) select '{phase}' from generate_series(1, {n})")).await;
}

/// Switch to a new segment and wait until the finished one is in the archive.
pub(crate) async fn switch_and_archive(s: &ArchivingServer, archive: &Path) {
    // The segment holding the last byte written: pg_switch_wal() completes it, unless
    // archive_timeout already did (then pg_switch_wal's own answer would name the next,
    // empty segment, never archived).
    let seg = common::scalar(&s.url(), "pg_walfile_name(pg_current_wal_lsn() - 1)").await;
    common::exec(&s.url(), "select pg_switch_wal()").await;
    let found = common::wait_for(Duration::from_secs(30), || archive.join(&seg).is_file().then_some(()));
    assert!(found.is_some(), "segment {seg} was not archived: {}", s.log());
}

/// Names, sizes and modification times of the archive's files.
fn listing(dir: &Path) -> BTreeMap<String, (u64, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .expect("archive")
        .flatten()
        .map(|e| {
            let m = e.metadata().expect("meta");
            (e.file_name().to_string_lossy().into_owned(), (m.len(), m.modified().expect("mtime")))
        })
        .collect()
}

fn target(kind: TargetKind) -> Target {
    Target { kind, inclusive: true }
}

fn options(kind: TargetKind, marker: &str) -> PitrOptions {
    PitrOptions {
        backup: None,
        listed: None,
        recover: RecoverOptions {
            target: target(kind),
            marker: Some(marker.to_string()),
            timeout: Duration::from_secs(120),
            ..Default::default()
        },
    }
}

/// A moment between two commits, with some space either side.
async fn moment() -> OffsetDateTime {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = OffsetDateTime::now_utc();
    tokio::time::sleep(Duration::from_millis(300)).await;
    t
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_to_a_time_an_lsn_a_restore_point_and_latest_is_each_proven_and_never_writes_the_archive() {
    let Some((src, url)) = source_with_a_base_backup().await else { return };
    insert(&url, "a", 100).await;
    let t_a = moment().await;
    insert(&url, "b", 100).await;
    let lsn_b = Lsn::parse(&common::scalar(&url, "pg_current_wal_insert_lsn()").await).expect("lsn");
    // Phase c in one transaction whose id is the xid target.
    let c = pgdrill::testkit::pg::connect(&url).await.expect("connect");
    let xid_c: String = c
        .query_one(
            "with i as (insert into t (phase) select 'c' from generate_series(1, 100) returning 1) \
             select txid_current()::text from (select count(*) from i) n",
            &[],
        )
        .await
        .expect("insert c")
        .get(0);
    drop(c);
    common::exec(&url, "select pg_create_restore_point('before d')").await;
    insert(&url, "d", 100).await;
    switch_and_archive(&src.server, &src.archive()).await;
    // The source stops, so nothing but a recovery could change the archive from here on.
    let archive = src.archive();
    let Source { tmp, server } = src;
    server.stop();
    let before = listing(&archive);
    let folder = BasebackupFolder::new(tmp.path().join("backups"), Some(archive.clone())).expect("folder");

    let count = |phases: &str, n: u32| format!("select count(*) = {n} and bool_and(phase in ({phases})) from t");
    // To a time: phase a in, b (committed after the time) not.
    let p = pitr::run(&folder, options(TargetKind::Time(t_a), &count("'a'", 100))).await.expect("time target");
    let f = &p.server.facts;
    assert!(f.stop_line.as_deref().is_some_and(|l| l.starts_with("recovery stopping before commit")), "{f:?}");
    assert!(f.achieved_time.is_some_and(|a| a <= t_a && t_a - a < time::Duration::seconds(5)), "{f:?}");
    assert_eq!(f.new_timeline, Some(2), "promoted to a new timeline: {f:?}");
    assert!(f.segments_restored >= 1, "{f:?}");
    assert!(p.backup_check.as_deref().is_some_and(|c| c.contains("match backup_manifest")), "{:?}", p.backup_check);
    assert!(pitr::rpo_seconds(t_a, f.achieved_time).is_some_and(|r| r < 5.0));
    let dir = p.server.workspace().dir().to_path_buf();
    assert!(dir.is_dir());
    p.server.stop();
    assert!(!dir.exists(), "the throwaway's files are removed when it stops");

    // To an LSN: b in (committed before the LSN), c not.
    let p = pitr::run(&folder, options(TargetKind::Lsn(lsn_b), &count("'a','b'", 200))).await.expect("lsn target");
    assert!(p.server.facts.replay_lsn >= lsn_b, "{:?}", p.server.facts);
    assert!(p.server.facts.stop_line.as_deref().is_some_and(|l| l.contains("WAL location")), "{:?}", p.server.facts);
    drop(p);

    // To transaction c, exclusive: a and b in, c not.
    let mut o = options(TargetKind::Xid(xid_c.parse().expect("xid")), &count("'a','b'", 200));
    o.recover.target.inclusive = false;
    let p = pitr::run(&folder, o).await.expect("xid target");
    let stop = p.server.facts.stop_line.clone().unwrap_or_default();
    assert!(stop.starts_with(&format!("recovery stopping before commit of transaction {xid_c},")), "{stop}");
    drop(p);

    // To the restore point: c in, d not.
    let p = pitr::run(&folder, options(TargetKind::Name("before d".into()), &count("'a','b','c'", 300)))
        .await
        .expect("restore point");
    assert!(p.server.facts.stop_line.as_deref().is_some_and(|l| l.contains("\"before d\"")), "{:?}", p.server.facts);
    drop(p);

    // Latest: everything, through the archive's newest segment.
    let p = pitr::run(&folder, options(TargetKind::Latest, &count("'a','b','c','d'", 400))).await.expect("latest");
    let end = p.server.facts.last_segment.clone().expect("segments restored");
    assert_eq!(Some(end.as_str()), before.keys().filter(|k| k.len() == 24).max().map(String::as_str));
    drop(p);

    // A marker that is not there fails the recovery, whatever the server said.
    let e = pitr::run(&folder, options(TargetKind::Time(t_a), &count("'a','b'", 200))).await.expect_err("marker");
    assert!(e.message.contains("marker"), "{}", e.message);

    // The shipped runbook: the same recovery, then verify's checks and RTO with its phases.
    let junit = tmp.path().join("junit.xml");
    let ran = common::Run::new("pitr")
        .var("backups", tmp.path().join("backups").display())
        .var("wal", archive.display())
        .var("target_name", "before d")
        .var("marker", count("'a','b','c'", 300))
        .var("expect_tables", "public.t>=300")
        .junit(&junit)
        .expect(0);
    for case in ["amcheck", "tables", "rto"] {
        assert_eq!(ran.junit().status(case), "passed", "{case}: {}", ran.all());
    }
    // No `expect`: the recovery is proven, its content compared with nothing (issue 35).
    let recover = ran.junit().case("recover").cloned().expect("a recover case");
    assert_eq!((recover.status, recover.kind.as_str()), (common::Status::Skipped, "unproven"), "{recover:?}");
    assert!(ran.all().contains("recovery stopping at restore point \"before d\""), "{}", ran.all());

    assert_eq!(listing(&archive), before, "a throwaway recovery wrote to the archive");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_field_failure_fails_the_recovery_never_passes_it() {
    let Some(src) = source().await else { return };
    let url = src.server.url();
    basebackup(&src.server, &src.backups().join("b1"));
    let backup_done = OffsetDateTime::now_utc();
    for phase in ["a", "b", "c"] {
        insert(&url, phase, 50).await;
        switch_and_archive(&src.server, &src.archive()).await;
    }
    // No commit after this moment: a time target here cannot be confirmed.
    let after_last_commit = moment().await;
    switch_and_archive(&src.server, &src.archive()).await;
    let archive = src.archive();
    let folder = BasebackupFolder::new(src.backups(), Some(archive.clone())).expect("folder");
    let newest = listing(&archive).into_keys().filter(|k| k.len() == 24).max().expect("segments");
    let any = "select true";

    // A target beyond the archive's end: PostgreSQL 14+ stops with a FATAL; the failure
    // names the archive's end.
    let beyond = OffsetDateTime::now_utc() + time::Duration::hours(1);
    let e = pitr::run(&folder, options(TargetKind::Time(beyond), any)).await.expect_err("beyond the end");
    assert!(e.message.contains("recovery ended before configured recovery target was reached"), "{}", e.message);
    assert!(e.message.contains(&newest), "names the archive's end {newest}: {}", e.message);
    assert_eq!(e.class, pgdrill::testkit::error::Class::Failed);

    // The same through the shipped runbook: exit 1, the recovery a JUnit failure, and the
    // checks after it not run (never passed).
    let junit = src.tmp.path().join("beyond.xml");
    let ran = common::Run::new("pitr")
        .var("backups", src.backups().display())
        .var("wal", archive.display())
        .var("target_time", "2099-01-01T00:00:00Z")
        .junit(&junit)
        .expect(1);
    assert_eq!(ran.junit().status("recover"), "failure", "{}", ran.all());
    assert_eq!(ran.junit().status("amcheck"), "skipped", "{}", ran.all());
    assert!(ran.all().contains(&newest), "{}", ran.all());

    // A time target with no later commit is never confirmed.
    let e = pitr::run(&folder, options(TargetKind::Time(after_last_commit), any)).await.expect_err("no later commit");
    assert!(e.message.contains("recovery ended before configured recovery target was reached"), "{}", e.message);

    // A base backup that ends after the target is refused, never used.
    let before_backup = backup_done - time::Duration::minutes(10);
    let mut o = options(TargetKind::Time(before_backup), any);
    let e = pitr::run(&folder, o.clone()).await.expect_err("ends after");
    assert!(e.message.contains("no base backup ends before"), "{}", e.message);
    o.backup = Some("b1".into());
    let e = pitr::run(&folder, o).await.expect_err("ends after");
    assert!(e.message.contains("after the target"), "{}", e.message);

    // A segment missing in the middle: "latest" stops at the gap and the server promotes,
    // which is caught by the archive's end not being reached.
    let holey = src.tmp.path().join("holey");
    std::fs::create_dir(&holey).expect("dir");
    let mut segments: Vec<String> = listing(&archive).into_keys().collect();
    segments.sort();
    // Readable by the server, which runs as `nobody` when the tests run as root.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&holey, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for s in &segments {
        std::fs::copy(archive.join(s), holey.join(s)).expect("copy");
        std::fs::set_permissions(holey.join(s), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let wal: Vec<&String> = segments.iter().filter(|s| s.len() == 24).collect();
    let middle = wal[wal.len() - 2];
    std::fs::remove_file(holey.join(middle)).expect("remove");
    let gap = BasebackupFolder::new(src.backups(), Some(holey.clone())).expect("folder");
    let e = pitr::run(&gap, options(TargetKind::Latest, any)).await.expect_err("a gap");
    assert!(e.message.contains("missing or unreadable"), "{}", e.message);
    assert!(e.message.contains(&newest), "{}", e.message);

    // A short segment (half written) is no segment.
    let full = std::fs::read(archive.join(middle)).expect("segment");
    std::fs::write(holey.join(middle), &full[..full.len() / 2]).expect("short");
    // Found by pg_verifybackup (pg_waldump reads the folder) or by the server ("has wrong
    // size"), whichever reads it first: either way named.
    let e = pitr::run(&gap, options(TargetKind::Latest, any)).await.expect_err("short segment");
    assert!(e.message.contains(middle.as_str()), "{}", e.message);

    // A 0-byte segment is no segment.
    std::fs::write(holey.join(middle), b"").expect("empty");
    let e = pitr::run(&gap, options(TargetKind::Latest, any)).await.expect_err("0-byte segment");
    assert!(e.message.contains(middle.as_str()), "{}", e.message);

    // A base backup of another cluster, recovered with this cluster's WAL.
    let tmp2 = tempfile::tempdir().expect("tmp");
    let other = ArchivingServer::start(ArchivingOptions {
        archive_dir: Some(tmp2.path().join("archive")),
        major: Some(15),
        ..Default::default()
    })
    .await
    .expect("second cluster");
    basebackup(&other, &tmp2.path().join("backups").join("other"));
    other.stop();
    let foreign = BasebackupFolder::new(tmp2.path().join("backups"), Some(archive.clone())).expect("folder");
    let e = pitr::run(&foreign, options(TargetKind::Latest, any)).await.expect_err("another cluster's WAL");
    assert!(e.message.contains("WAL of another cluster"), "{}", e.message);
}

/// The shipped PITR drill end to end: the incident undone, RPO measured from the data and
/// RTO with its phases, both against their targets, in JUnit and the compliance report.
/// Regression: the drill archived with `cp` into a folder and recovered from pg_basebackup
/// output, so it proved an archive no team runs; now the source archives with `pgdrill wal
/// push`, the base backup is pgdrill's (without its WAL), and every segment of the recovery
/// comes back through `pgdrill wal fetch`.
#[test]
fn the_pitr_drill_archives_with_wal_push_recovers_through_wal_fetch_and_reports_rpo_and_rto() {
    if !common::require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (report, junit) = (dir.path().join("report"), dir.path().join("junit.xml"));
    let (notify, textfile) = (dir.path().join("notify.yaml"), dir.path().join("pgdrill.prom"));
    std::fs::write(&notify, format!("metrics:\n  textfile: {}\n", textfile.display())).expect("notify file");
    let ran = common::Run::new("pitr-drill")
        .var("version", 15)
        .junit(&junit)
        .report(&report)
        .arg("--notify")
        .arg(&notify)
        .expect(0);
    let j = ran.junit();
    for case in ["recover", "table_back", "rows_back", "nothing_after", "amcheck", "rpo", "rto"] {
        assert_eq!(j.status(case), "passed", "{case}: {}", ran.all());
    }
    let run = ran.run_json();
    let incident: f64 = run.step("incident").outputs["value"].as_str().and_then(|v| v.parse().ok()).expect("incident");
    let rec = &run.step("recover").outputs;
    assert!(rec["stop_line"].as_str().is_some_and(|l| l.starts_with("recovery stopping before commit")), "{rec}");
    let achieved = rec["achieved_epoch"].as_f64().expect("achieved");
    assert!(achieved < incident, "the data is from before the incident: {rec}");
    assert_eq!(rec["new_timeline"], 2, "{rec}");
    // The recovered copy was judged against the source's schema and rows at the mark.
    assert_eq!(rec["ground_truth"], "source at the target", "{rec}");
    let mark = &run.step("mark").outputs;
    assert!(mark["tables"].as_u64().is_some_and(|n| n >= 2), "{mark}");
    assert!(mark["epoch"].as_f64().is_some_and(|m| m < incident), "the mark precedes the incident: {mark}");
    assert!(ran.all().contains("schema and "), "{}", ran.all());
    // pgdrill's own archive end to end: pushed by the source's archive_command, proven whole
    // from the base backup on by wal.check, fetched by the throwaway's restore_command.
    let src = &run.step("source").outputs;
    assert!(src["archive_command"].as_str().is_some_and(|c| c.contains(" wal push --config ")), "{src}");
    assert!(!src["archive_command"].as_str().unwrap_or_default().contains("cp "), "{src}");
    let wal = &run.step("wal_check").outputs;
    assert_eq!((wal["gaps"].as_u64(), wal["damaged"].as_u64()), (Some(0), Some(0)), "{wal}");
    assert!(wal["segments"].as_u64().is_some_and(|n| n >= 1), "{wal}");
    assert!(rec["tool"].as_str().is_some_and(|t| t.starts_with("pgdrill")), "{rec}");
    assert!(
        rec["backup_check"].as_str().is_some_and(|c| c.starts_with("manifest authenticated; the archive holds")),
        "{rec}"
    );
    assert!(rec["segments_restored"].as_u64().is_some_and(|n| n >= 1), "segments through wal fetch: {rec}");
    // RPO is the incident minus the newest heartbeat recovered, which committed no later
    // than the last transaction replayed.
    let rpo = &run.step("rpo").outputs;
    let newest = common::unix_seconds(rpo["newest"].as_str().expect("newest"));
    assert!(newest <= achieved + 0.001, "heartbeat {newest} after the point reached {achieved}");
    let rpo_s = rpo["rpo_s"].as_f64().expect("rpo_s");
    assert!((rpo_s - (incident - newest)).abs() < 0.002, "RPO {rpo_s} is not incident - newest heartbeat");
    let c = common::read_json(&report.join("report.json"));
    let objective = |name: &str| {
        c["objectives"].as_array().and_then(|o| o.iter().find(|o| o["name"] == name)).cloned().expect("objective")
    };
    // The base backup the drill wrote, and the same one as the recovery picked it.
    let backups = c["backups"].as_array().cloned().unwrap_or_default();
    let by_step =
        |step: &str| backups.iter().find(|b| b["step"] == step).and_then(|b| b["path"].as_str()).unwrap_or("");
    let (written, tested) = (by_step("pitr-drill base_backup"), by_step("pitr-drill recover"));
    assert!(written.contains("/.cluster/") && written.ends_with(".base.tar.pgdrill"), "{}", c["backups"]);
    assert!(
        tested.starts_with("pgdrill base backups and WAL archive in ") && tested.ends_with(".base.tar.pgdrill"),
        "{}",
        c["backups"]
    );
    assert_eq!(objective("RPO")["target_s"].as_f64(), Some(5.0), "{c}");
    assert_eq!(objective("RPO")["outcome"], "passed");
    assert_eq!(objective("RTO")["target_s"].as_f64(), Some(600.0), "{c}");
    for phase in ["base_restore", "wal_replay", "check_backup", "checks"] {
        assert!(c["phases"][phase].is_number(), "phase {phase} in {}", c["phases"]);
    }
    // The PITR's own metrics, with the RPO the drill measured, for the alert rules
    // (alerts/pgdrill.rules.yml: PgdrillPitrRpoHigh, unit-tested with promtool by notify.rs).
    let prom = std::fs::read_to_string(&textfile).expect("textfile");
    let sample = |name: &str| {
        prom.lines()
            .find(|l| l.starts_with(&format!("{name}{{runbook=\"pitr-drill\",database=\"erp\"}} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(sample("pgdrill_pitr_rpo_seconds"), Some(rpo_s), "{prom}");
    assert!(sample("pgdrill_pitr_rto_seconds").is_some_and(|r| r > 0.0), "{prom}");
    if common::require(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool",
    ) {
        let checked = std::process::Command::new("sh")
            .args(["-c", "promtool check metrics < \"$0\"", textfile.to_str().expect("utf-8")])
            .output()
            .expect("promtool");
        assert!(checked.status.success(), "{}{}", common::text(&checked.stdout), common::text(&checked.stderr));
    }
}

/// Regression: the drill compared the recovered copy with nothing but the counts it read
/// itself, so a recovery that brought back more (or other) than the source held at the
/// target passed. Here the target is moved past a table created after the mark: the
/// recovered copy differs from the source's fingerprint at the mark, and the drill fails on
/// it (the marker and the incident's absence still hold, so nothing else catches it).
#[test]
fn a_pitr_drill_whose_recovered_copy_differs_from_the_source_at_the_target_fails() {
    if !common::require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../drills/pitr-drill.yaml"))
        .expect("the shipped drill");
    let drift = "  - id: drift\n    uses: sql.exec\n    with:\n      url: \"{{ steps.source.outputs.url }}\"\n      sql: create table public.drift as select 1 as x\n  - id: after_drift\n    uses: sql.exec\n    with:\n      url: \"{{ steps.source.outputs.url }}\"\n      sql: select clock_timestamp()::text\n";
    let at = shipped.find("  # What the incident destroys").expect("the incident's comment");
    let mut text = format!("{}{drift}{}", &shipped[..at], &shipped[at..]);
    let target = "target_time: \"{{ steps.mark.outputs.time }}\"";
    assert!(text.contains(target), "the drill recovers to the mark's time");
    text = text.replace(target, "target_time: \"{{ steps.after_drift.outputs.value }}\"");
    let file = written(dir.path().join("drifted.yaml"), text);
    let junit = dir.path().join("junit.xml");
    let ran = common::Run::new(&file).var("version", 15).junit(&junit).expect(1);
    assert_eq!(ran.junit().status("recover"), "failure", "{}", ran.all());
    assert_eq!(ran.junit().status("table_back"), "skipped", "{}", ran.all());
    let all = ran.all();
    assert!(all.contains("differs from the source at the target"), "{all}");
    assert!(all.contains("public.drift"), "the difference is named: {all}");
}

/// Hand `dir` to the user the server runs as (`nobody` when the tests run as root).
fn server_owns(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).expect("dir");
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").expect("users").expect("nobody");
        nix::unistd::chown(dir, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
}

/// pg_basebackup's other shapes: plain with its WAL inside and no manifest, and tar with a
/// tablespace and the WAL apart as gzip'd segments; the tablespace lands in the throwaway's
/// own folder, never where the source had it.
#[tokio::test(flavor = "multi_thread")]
async fn plain_and_tar_folders_with_wal_inside_or_gzipped_apart_and_a_tablespace_recover() {
    let Some(src) = source().await else { return };
    let url = src.server.url();
    let ts = src.tmp.path().join("ts");
    server_owns(&ts);
    common::exec(&url, &format!("create tablespace ts location '{}'", ts.display())).await;
    common::exec(
        &url,
        "create table u (id int primary key) tablespace ts; insert into u select generate_series(1, 10)",
    )
    .await;
    let s = &src.server;
    let run = |args: &[&str]| {
        let out = std::process::Command::new(s.bin_dir.join("pg_basebackup"))
            .args(["-h", "127.0.0.1", "-p", &s.port.to_string(), "-U", &s.user, "-c", "fast"])
            .args(args)
            .env("PGPASSWORD", &s.password)
            .output()
            .expect("pg_basebackup");
        assert!(out.status.success(), "pg_basebackup {args:?}: {}", common::text(&out.stderr));
    };
    let plain = src.tmp.path().join("plain");
    let ts_copy = src.tmp.path().join("ts_copy");
    run(&[
        "-Fp",
        "-X",
        "stream",
        "--no-manifest",
        &format!("--tablespace-mapping={}={}", ts.display(), ts_copy.display()),
        "-D",
        plain.to_str().expect("utf-8"),
    ]);
    basebackup(s, &src.backups().join("tar"));
    let tar_gz = src.tmp.path().join("tar_gz");
    run(&["-Ft", "-z", "-X", "stream", "-D", tar_gz.to_str().expect("utf-8")]);
    common::exec(&url, "insert into u select generate_series(11, 20)").await;
    // The source now: the same schema as at the backups, 10 more rows in u.
    let now = pgdrill::testkit::physical::archiving::mark(&url, None, pgdrill::testkit::pg::fingerprint::Mode::Counts)
        .await
        .expect("mark")
        .fingerprint;
    switch_and_archive(s, &src.archive()).await;
    let Source { tmp, server } = src;
    server.stop();
    // The archive again, each segment gzip'd (what `archive_command = gzip ...` keeps).
    let gz = tmp.path().join("gz");
    std::fs::create_dir(&gz).expect("dir");
    for (name, _) in listing(&tmp.path().join("archive")) {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg("gzip -c \"$1\" > \"$2\"")
            .arg("sh")
            .arg(tmp.path().join("archive").join(&name))
            .arg(gz.join(format!("{name}.gz")))
            .output()
            .expect("gzip");
        assert!(out.status.success());
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&gz, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (name, _) in listing(&gz) {
        std::fs::set_permissions(gz.join(name), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let elsewhere = "select pg_tablespace_location(oid) not like '/tmp/pgdrill-native-%/tablespaces/%' from pg_tablespace where spcname = 'ts'";

    // Plain, WAL inside, no archive: recovered to its own end.
    let folder = BasebackupFolder::new(plain.clone(), None).expect("folder");
    let p = pitr::run(&folder, options(TargetKind::Immediate, "select count(*) = 10 from u")).await.expect("plain");
    assert!(p.server.facts.stop_line.as_deref().is_some_and(|l| l.contains("consistency")), "{:?}", p.server.facts);
    assert_eq!(p.backup_check, None, "no manifest, nothing to check with");
    let c = pgdrill::testkit::pg::connect(&p.server.url()).await.expect("connect");
    let moved: bool = c.query_one(elsewhere, &[]).await.expect("location").get(0);
    assert!(!moved, "the tablespace is in the throwaway's folder");
    // The ground truths a recovered copy is judged against: the schema agrees; the rows of
    // the source at a later point do not; a schema with one table more does not either.
    use pgdrill::testkit::physical::pitr::{differences, Truth};
    let same = differences(&p.server.url(), &Truth::BackupSchema(now.clone())).await.expect("compare");
    assert!(same.is_empty(), "{same:?}");
    let later = differences(&p.server.url(), &Truth::SourceAtTarget(now.clone())).await.expect("compare");
    assert_eq!(later, vec!["public.u: 10 rows, expected 20".to_string()]);
    let mut ghost = now.clone();
    ghost.schema.get_mut("tables").expect("tables").push("public.ghost r".into());
    let d = differences(&p.server.url(), &Truth::BackupSchema(ghost)).await.expect("compare");
    assert!(d.iter().any(|l| l.contains("missing public.ghost")), "{d:?}");
    drop(p);

    // Tar, gzip'd, WAL inside (pg_wal.tar.gz), manifest checked with that WAL.
    let folder = BasebackupFolder::new(tar_gz, None).expect("folder");
    let p = pitr::run(&folder, options(TargetKind::Immediate, "select count(*) = 10 from u")).await.expect("tar.gz");
    assert!(p.backup_check.as_deref().is_some_and(|c| c.contains("WAL parsed from")), "{:?}", p.backup_check);
    drop(p);

    // Tar with a tablespace, WAL apart and gzip'd: latest brings the later rows.
    let folder = BasebackupFolder::new(tmp.path().join("backups"), Some(gz.clone())).expect("folder");
    let p = pitr::run(&folder, options(TargetKind::Latest, "select count(*) = 20 from u")).await.expect("tar");
    assert!(p.backup_check.as_deref().is_some_and(|c| c.contains("WAL not parsed")), "{:?}", p.backup_check);
    let c = pgdrill::testkit::pg::connect(&p.server.url()).await.expect("connect");
    let moved: bool = c.query_one(elsewhere, &[]).await.expect("location").get(0);
    assert!(!moved, "the tablespace is in the throwaway's folder");
    drop(p);
}

/// A source whose WAL fetch hangs (a store that stops answering), around a real folder.
struct Hanging(BasebackupFolder);

impl pgdrill::testkit::physical::source::PhysicalSource for Hanging {
    fn tool(&self) -> pgdrill::testkit::physical::source::Tool {
        self.0.tool()
    }
    fn describe(&self) -> String {
        self.0.describe()
    }
    fn list(&self) -> Result<Vec<pgdrill::testkit::physical::source::BaseBackup>, pgdrill::testkit::error::Failure> {
        self.0.list()
    }
    fn materialize(
        &self,
        b: &pgdrill::testkit::physical::source::BaseBackup,
        into: &pgdrill::testkit::physical::source::MaterializeInto,
    ) -> Result<pgdrill::testkit::physical::source::Materialized, pgdrill::testkit::error::Failure> {
        self.0.materialize(b, into)
    }
    fn restore_command(
        &self,
        _: &pgdrill::testkit::physical::source::BaseBackup,
    ) -> Result<Option<String>, pgdrill::testkit::error::Failure> {
        Ok(Some("sleep 600".into()))
    }
}

/// This process's throwaway directories (`pgdrill-native-<pid>-*`) still in the temp dir.
fn my_server_dirs() -> Vec<PathBuf> {
    let prefix = format!("pgdrill-native-{}-", std::process::id());
    std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect()
}

/// Processes whose command line holds `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle))
        .collect()
}

/// A recovery whose WAL never comes times out as a failure, and one abandoned midway (the
/// run interrupted: its future dropped) leaves no server, no restore_command and no files.
#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_recovery_times_out_and_an_abandoned_one_leaves_no_server_behind() {
    let Some(src) = source().await else { return };
    basebackup(&src.server, &src.backups().join("b1"));
    let Source { tmp, server } = src;
    server.stop();
    let hanging =
        Hanging(BasebackupFolder::new(tmp.path().join("backups"), Some(tmp.path().join("archive"))).expect("folder"));
    let before = my_server_dirs();

    let mut o = options(TargetKind::Latest, "select true");
    o.recover.timeout = Duration::from_secs(3);
    let e = pitr::run(&hanging, o.clone()).await.expect_err("times out");
    assert!(e.message.contains("did not finish within 3s"), "{}", e.message);
    assert_eq!(e.class, pgdrill::testkit::error::Class::Failed);
    assert_eq!(my_server_dirs(), before, "the timed-out server's files are removed");

    o.recover.timeout = Duration::from_secs(600);
    let abandoned = tokio::time::timeout(Duration::from_secs(3), pitr::run(&hanging, o)).await;
    assert!(abandoned.is_err(), "still recovering when abandoned");
    assert_eq!(my_server_dirs(), before, "the abandoned server's files are removed");
    let left = common::wait_for(Duration::from_secs(10), || processes_with("sleep 600").is_empty().then_some(()));
    assert!(left.is_some(), "restore_command left running: {:?}", processes_with("sleep 600"));
    let servers = processes_with(&format!("pgdrill-native-{}-", std::process::id()));
    assert!(servers.is_empty(), "servers left running: {servers:?}");
}

/// `docker` with `args`; its stdout, or the test fails with its stderr.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", common::text(&out.stderr));
    common::text(&out.stdout).trim().to_string()
}

/// Removes the test's source container however the test ends.
struct Container(String);
impl Drop for Container {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "--force", &self.0]).output();
    }
}

/// PostgreSQL 17, which this machine has only as a Docker image: a source archiving with
/// its own `cp` into a folder, pg_basebackup 17, then recovery to a restore point, a time
/// between two phases and the end of the archive, each in a throwaway running the image's own
/// server (and pg_verifybackup 17), proven the same way.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgresql_17_backup_recovers_to_a_restore_point_in_its_docker_image() {
    let image = "pgdrill/postgres-local:17";
    let have = std::process::Command::new("docker")
        .args(["image", "inspect", image])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require(have, &format!("Docker with the image {image}")) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let (arch, bk) = (tmp.path().join("archive"), tmp.path().join("backups"));
    use std::os::unix::fs::PermissionsExt;
    for d in [tmp.path(), &arch, &bk] {
        std::fs::create_dir_all(d).expect("dir");
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    }
    let name = format!("pgdrill-test-pitr17-{}", std::process::id());
    let (a, b) = (arch.display().to_string(), bk.display().to_string());
    docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--label",
        "pgdrill.ephemeral=1",
        "--label",
        &format!("pgdrill.owner={}:{}", pgdrill::testkit::util::hostname().unwrap_or_default(), std::process::id()),
        "-e",
        "POSTGRES_PASSWORD=pitr17",
        "-v",
        &format!("{a}:{a}"),
        "-v",
        &format!("{b}:{b}"),
        image,
        "-c",
        "wal_level=replica",
        "-c",
        "archive_mode=on",
        "-c",
        "archive_timeout=1",
        "-c",
        &format!("archive_command=cp %p {a}/%f"),
    ]);
    let _guard = Container(name.clone());
    // The final server listens on TCP; the entrypoint's initdb-time server does not.
    let psql = |sql: &str| {
        docker(&["exec", "-e", "PGPASSWORD=pitr17", &name, "psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", sql])
    };
    let up = common::wait_for(Duration::from_secs(60), || {
        std::process::Command::new("docker")
            .args([
                "exec",
                "-e",
                "PGPASSWORD=pitr17",
                &name,
                "psql",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-Atc",
                "select 1",
            ])
            .output()
            .ok()
            .filter(|o| o.status.success())
    });
    assert!(up.is_some(), "the PostgreSQL 17 source did not start");
    psql("create table t (id serial primary key, phase text); insert into t (phase) select 'a' from generate_series(1, 10)");
    docker(&[
        "exec",
        "-e",
        "PGPASSWORD=pitr17",
        &name,
        "pg_basebackup",
        "-h",
        "127.0.0.1",
        "-U",
        "postgres",
        "-Ft",
        "-X",
        "none",
        "-c",
        "fast",
        "-D",
        &format!("{b}/b17"),
    ]);
    psql("insert into t (phase) select 'b' from generate_series(1, 10)");
    psql("select pg_create_restore_point('before c')");
    let t_b = moment().await;
    psql("insert into t (phase) select 'c' from generate_series(1, 10)");
    let seg = psql("select pg_walfile_name(pg_current_wal_lsn() - 1)");
    psql("select pg_switch_wal()");
    assert!(
        // Whole, not just there: the source's `cp` is not atomic, and stopping the source
        // mid-copy left a 12 MiB segment that recovery rightly refused (a flake).
        common::wait_for(Duration::from_secs(30), || {
            std::fs::metadata(arch.join(&seg)).ok().filter(|m| m.len() == 16 * 1024 * 1024).map(|_| ())
        })
        .is_some(),
        "not archived"
    );
    drop(_guard);
    // What the container's postgres wrote (0600) is read by the throwaway's user too.
    let _ = std::process::Command::new("chmod").args(["-R", "a+rX", &a, &b]).output();

    let folder = BasebackupFolder::new(bk, Some(arch)).expect("folder");
    let p = pitr::run(
        &folder,
        options(TargetKind::Name("before c".into()), "select count(*) = 20 and bool_and(phase in ('a', 'b')) from t"),
    )
    .await
    .expect("PostgreSQL 17 recovered to the restore point");
    assert!(p.server.facts.server_version.starts_with("17."), "{:?}", p.server.facts);
    assert!(p.server.facts.stop_line.as_deref().is_some_and(|l| l.contains("\"before c\"")), "{:?}", p.server.facts);
    assert!(p.backup_check.as_deref().is_some_and(|c| c.contains("match backup_manifest")), "{:?}", p.backup_check);
    p.server.stop();
    // A time between the restore point and phase c, and the end of the archive, on 17 too
    // (issue 39: latest, a time target and a restore point on 15 and 17).
    let p = pitr::run(
        &folder,
        options(TargetKind::Time(t_b), "select count(*) = 20 and bool_and(phase in ('a', 'b')) from t"),
    )
    .await
    .expect("PostgreSQL 17 recovered to a time between phases b and c");
    assert!(p.server.facts.stop_line.as_deref().is_some_and(|l| l.contains("before commit")), "{:?}", p.server.facts);
    p.server.stop();
    let p = pitr::run(&folder, options(TargetKind::Latest, "select count(*) = 30 from t"))
        .await
        .expect("PostgreSQL 17 recovered to the end of the archive");
    assert!(p.server.facts.server_version.starts_with("17."), "{:?}", p.server.facts);
    p.server.stop();
    let container = format!("pgdrill-recover-{}-", std::process::id());
    let left = docker(&["ps", "-a", "--filter", &format!("name={container}"), "--format", "{{.Names}}"]);
    assert!(left.is_empty(), "the throwaway's container is removed: {left}");
}

/// The fleet file of the README's "Physical backups from a fleet file": nightly base
/// backups, a monthly `pitr` of pgdrill's own archive and a monthly `pitr-drill`, exported
/// as cron lines, systemd units (verified by systemd-analyze) and Kubernetes CronJobs
/// (validated strictly), each running `fleet run` of its runbook for its schedule, and
/// `fleet plan` handing the runbooks their storage, database and `source`.
#[test]
fn a_fleet_file_schedules_base_backups_pitr_and_the_pitr_drill_for_cron_systemd_and_kubernetes() {
    let have = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
    };
    if !common::require(
        have("systemd-analyze", &["--version"]) && have("kubernetes-validate", &["--version"]),
        "systemd-analyze and kubernetes-validate (ci/setup.sh installs them)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let fleet = dir.path().join("pgdrill.fleet.yaml");
    std::fs::write(
        &fleet,
        "\
defaults:
  storage: /var/lib/pgdrill/backups/{project}/{environment}
  key_env: PGDRILL_BACKUP_KEY
  schedules: [nightly-base, monthly-pitr, monthly-pitr-drill]
schedules:
  nightly-base: { runbook: base-backup, cron: '0 1 * * *' }
  monthly-pitr: { runbook: pitr, cron: '0 4 1 * *' }
  monthly-pitr-drill: { runbook: pitr-drill, cron: '0 5 1 * *' }
projects:
  shop:
    defaults:
      connection: postgres://backup@db.internal:5432/postgres
      password_env: SHOP_DB_PASSWORD
      vars: { source: pgdrill }
    environments:
      prod:
        databases:
          app: {}
",
    )
    .expect("fleet file");
    let f = fleet.to_str().expect("utf-8");
    let run = |args: &[&str]| {
        let out = common::pgdrill(args).output().expect("pgdrill");
        assert!(out.status.success(), "{args:?}: {}{}", common::text(&out.stdout), common::text(&out.stderr));
        common::text(&out.stdout)
    };
    assert!(run(&["validate", f]).contains("3 schedules"));
    let cron = run(&["schedule", "cron", f]);
    for (cadence, name, runbook) in [
        ("0 1 * * * ", "nightly-base", "base-backup"),
        ("0 4 1 * * ", "monthly-pitr", "pitr"),
        ("0 5 1 * * ", "monthly-pitr-drill", "pitr-drill"),
    ] {
        let line = cron.lines().find(|l| l.contains(&format!("--schedule {name} "))).expect("a crontab line");
        assert!(line.starts_with(cadence), "{line}");
        assert!(line.contains(&format!(" fleet run {f} {runbook} --schedule {name} ")), "{line}");
    }
    let units = dir.path().join("units");
    let exe = common::bin();
    run(&["schedule", "systemd", f, "--binary", exe.to_str().expect("utf-8"), "--out", units.to_str().expect("utf-8")]);
    let mut files: Vec<String> =
        std::fs::read_dir(&units).expect("units").flatten().map(|e| e.path().display().to_string()).collect();
    files.sort();
    assert_eq!(files.len(), 6, "a service and a timer per schedule: {files:?}");
    let service = std::fs::read_to_string(units.join("pgdrill-monthly-pitr.service")).expect("service");
    assert!(service.contains(&format!("fleet run {f} pitr --schedule monthly-pitr ")), "{service}");
    let timer = std::fs::read_to_string(units.join("pgdrill-nightly-base.timer")).expect("timer");
    assert!(timer.contains("OnCalendar="), "{timer}");
    let v = std::process::Command::new("systemd-analyze").arg("verify").args(&files).output().expect("verify");
    assert!(v.status.success(), "systemd-analyze verify: {}{}", common::text(&v.stdout), common::text(&v.stderr));
    let k8s = run(&["schedule", "kubernetes", f]);
    let manifests = written(dir.path().join("k8s.yaml"), &k8s);
    let v = std::process::Command::new("kubernetes-validate")
        .args(["--strict", manifests.to_str().expect("utf-8")])
        .output()
        .expect("kubernetes-validate");
    assert!(v.status.success(), "{}{}", common::text(&v.stdout), common::text(&v.stderr));
    for (name, runbook, cron) in [
        ("nightly-base", "base-backup", "0 1 * * *"),
        ("monthly-pitr", "pitr", "0 4 1 * *"),
        ("monthly-pitr-drill", "pitr-drill", "0 5 1 * *"),
    ] {
        let job = serde_yaml::Deserializer::from_str(&k8s)
            .filter_map(|d| serde::Deserialize::deserialize(d).ok())
            .find(|d: &serde_yaml::Value| d["metadata"]["name"] == format!("pgdrill-{name}").as_str())
            .unwrap_or_else(|| panic!("the CronJob of {name}: {k8s}"));
        assert_eq!(job["spec"]["schedule"], cron, "{name}");
        let args: Vec<&str> = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_sequence()
            .expect("args")
            .iter()
            .filter_map(|a| a.as_str())
            .collect();
        assert_eq!(
            args[..6],
            ["fleet", "run", "/etc/pgdrill/pgdrill.fleet.yaml", runbook, "--schedule", name],
            "{args:?}"
        );
    }
    let plan = run(&["fleet", "plan", f, "pitr"]);
    for want in
        ["pgdrill run pitr", "storage = /var/lib/pgdrill/backups/shop/prod", "database = app", "source = pgdrill"]
    {
        assert!(plan.contains(want), "{want}: {plan}");
    }
    let plan = run(&["fleet", "plan", f, "base-backup"]);
    assert!(plan.contains("database_url = postgres://backup@db.internal:5432/app"), "{plan}");
}

/// `pgdrill run pitr` of the test's folder and archive.
fn pitr_run(backups: &Path, wal: &Path, junit: &Path) -> std::process::Command {
    let mut c = common::Run::new("pitr")
        .var("backups", backups.display())
        .var("wal", wal.display())
        .vars(&["marker=select count(*) = 300 from t", "expect_tables=public.t>=300"])
        .junit(junit)
        .command();
    c.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    c
}

/// kill -9 of pgdrill while its throwaway server recovers: the server dies with it (the
/// parent-death signal), its directory is reaped by the next recovery, which passes, and the
/// archive is untouched. Then two recoveries of the same folder at once: both pass, each in
/// its own throwaway, and the archive is still untouched.
#[tokio::test(flavor = "multi_thread")]
async fn a_pgdrill_killed_during_wal_replay_leaves_no_server_and_two_recoveries_of_one_folder_both_pass() {
    let Some(src) = source().await else { return };
    let url = src.server.url();
    basebackup(&src.server, &src.backups().join("b1"));
    for phase in ["a", "b", "c"] {
        insert(&url, phase, 100).await;
        switch_and_archive(&src.server, &src.archive()).await;
    }
    let Source { tmp, server } = src;
    server.stop();
    let (backups, archive) = (tmp.path().join("backups"), tmp.path().join("archive"));
    let before = listing(&archive);

    let mut killed = pitr_run(&backups, &archive, &tmp.path().join("killed.xml")).spawn().expect("pgdrill");
    let pid = killed.id();
    let prefix = format!("pgdrill-native-{pid}-");
    // The throwaway postgres of that run, started on the restored data directory.
    let recovering = common::wait_for(Duration::from_secs(120), || {
        processes_with(&prefix).into_iter().find(|c| c.contains("postgres") && c.contains("/data"))
    });
    assert!(recovering.is_some(), "no throwaway server appeared: {:?}", killed.try_wait());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL).expect("kill");
    let _ = killed.wait();
    let gone = common::wait_for(Duration::from_secs(30), || processes_with(&prefix).is_empty().then_some(()));
    assert!(gone.is_some(), "the killed run's server is still running: {:?}", processes_with(&prefix));
    let left = |p: &str| {
        std::fs::read_dir(std::env::temp_dir())
            .expect("tmp")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(p))
            .count()
    };
    assert!(left(&prefix) > 0, "the killed run's workspace is there until the next run reaps it");

    let next = pitr_run(&backups, &archive, &tmp.path().join("next.xml")).output().expect("pgdrill");
    assert!(next.status.success(), "{}{}", common::text(&next.stdout), common::text(&next.stderr));
    assert_eq!(left(&prefix), 0, "the next recovery reaped the killed run's workspace");
    assert_eq!(listing(&archive), before, "the archive changed");

    // Two at once on one folder: each extracts into its own workspace; neither refuses.
    let one = pitr_run(&backups, &archive, &tmp.path().join("one.xml")).spawn().expect("pgdrill");
    let two = pitr_run(&backups, &archive, &tmp.path().join("two.xml")).spawn().expect("pgdrill");
    for (n, c) in [("first", one), ("second", two)] {
        let out = c.wait_with_output().expect("wait");
        assert!(out.status.success(), "{n}: {}{}", common::text(&out.stdout), common::text(&out.stderr));
    }
    assert_eq!(listing(&archive), before, "the archive changed");
}
