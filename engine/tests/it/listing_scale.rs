//! Issue 41: listing at scale. A bucket of more than 10,000 objects of mixed kinds (pgdrill
//! backups and manifests, other tools' dumps, WAL segments, ledger records, foreign files),
//! made once with boto3, listed by `backups list`, `backup.latest` and a prune plan, each
//! counted by moto's own request recorder (the real server's log of what it was asked, no
//! mock): one pass of LIST pages, no HEAD, and a GET only for what a command reads. Pages
//! split a database's backups (moto answers 1,000 keys a page), and objects added and
//! deleted while pgdrill lists never crash it nor get a half-listed backup picked. No
//! timings: the bench (`ci/bench.sh`, BENCH=list) measures those.

use std::path::Path;
use std::process::Command;

use crate::common::{made_dir, moto_with_env, on_path, require, tmp_backups, written, Run};

/// Backups of `app`, one a day ending yesterday: with `erp`'s, their keys fill pages 1 to 4
/// of the listing, so page boundaries fall in the middle of `app`'s backups.
const APP: usize = 1500;
const ERP: usize = 500;
const LEGACY: usize = 1000;
const WAL: usize = 4500;
const MISC: usize = 500;
const RECORDS: usize = 5;
const PAGE: usize = 1000;

/// The bulk upload: plain HTTP PUTs, 4 in flight; the churner (boto3) adds and deletes
/// backups of `app` while pgdrill lists, until a file appears.
const SCRIPT: &str = r#"
import boto3, datetime, http.client, json, os, sys, threading, time, gzip
from concurrent.futures import ThreadPoolExecutor
port, mode = sys.argv[1], sys.argv[2]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
def manifest(db, at):
    t = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
    return json.dumps({"schema": "pgdrill.manifest/1", "pgdrill_version": "0.1.0", "database": db,
        "server_version": "15.18", "server_major": 15, "pg_dump_version": "pg_dump (PostgreSQL) 15.18",
        "format": "custom", "codec": "zstd", "level": 3, "cipher": "none",
        "sizes": {"raw": 1, "compressed": 1, "stored": 1}, "sha256": "00",
        "started_at": t, "finished_at": t, "snapshot": "x", "fingerprint": None}).encode()
def stamp(at):
    return at.strftime("%Y%m%dT%H%M%S.") + f"{at.microsecond // 1000:03d}Z"
def backup(db, at):
    name = f"p/{db}/{stamp(at)}.dump.pgdrill"
    return [(name, b"not a real archive"), (name + ".manifest.json", manifest(db, at))]
today = datetime.datetime.now(datetime.timezone.utc).replace(hour=2, minute=0, second=0, microsecond=0)
if mode == "fill":
    app, erp, legacy, wal, misc, records = (int(a) for a in sys.argv[3:9])
    s3.create_bucket(Bucket="scale")
    objs = []
    for i in range(1, app + 1):
        objs += backup("app", today - datetime.timedelta(days=i))
    for i in range(1, erp + 1):
        objs += backup("erp", today - datetime.timedelta(days=i, hours=1))
    gz = gzip.compress(b"-- PostgreSQL database dump\nselect 1;\n")
    for i in range(legacy):
        at = today - datetime.timedelta(days=i + 1)
        objs.append((f"p/legacy/legacy_db_{at.strftime('%Y%m%d_%H%M%S')}.sql.gz", gz))
    for i in range(wal):
        objs.append((f"p/.cluster/7300000000000000001/wal/{i + 1:024X}", b"w"))
    for i in range(misc):
        objs.append((f"p/misc/notes-{i:04d}.txt", b"notes"))
    for i in range(records):
        name = stamp(today - datetime.timedelta(days=i + 1)) + "-000000000000.json"
        rec = {"backup": f"{stamp(today - datetime.timedelta(days=i + 1, hours=1))}.dump.pgdrill",
               "verified_at": "2026-01-01T00:00:00Z", "result": "passed"}
        objs.append((f"p/erp/.ledger/{name}", json.dumps(rec).encode() + b"\n"))
    # Newer than every backup of app, without its manifest: unfinished, never picked.
    objs.append((f"p/app/{stamp(today + datetime.timedelta(minutes=1))}.dump.pgdrill", b"half"))
    # Plain PUTs (moto checks no signature): boto3's signing and checksums cost more CPU
    # than moto's own work (36 s against 49 s for these 10,006), and 16 threads fought
    # over moto's one interpreter; 4 keep it busy.
    local = threading.local()
    def put(kv):
        for _ in range(3):
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", int(port))
            local.conn = conn
            try:
                conn.request("PUT", "/scale/" + kv[0], body=kv[1])
                r = conn.getresponse()
                r.read()
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                local.conn = None
                continue
            if r.will_close:
                conn.close()
                local.conn = None
            assert r.status == 200, f"PUT {kv[0]}: {r.status}"
            return
        raise RuntimeError(f"PUT {kv[0]}: the connection failed three times")
    with ThreadPoolExecutor(4) as ex:
        list(ex.map(put, objs))
    print(len(objs))
else:
    stop = sys.argv[3]
    n = 0
    while not os.path.exists(stop):
        n += 1
        # A newer backup: its archive, then (later) its manifest, as pgdrill publishes.
        at = today + datetime.timedelta(hours=1, seconds=n)
        (a, ab), (m, mb) = backup("app", at)
        s3.put_object(Bucket="scale", Key=a, Body=ab)
        time.sleep(0.05)
        s3.put_object(Bucket="scale", Key=m, Body=mb)
        # An old one goes: its archive first, then its manifest, as prune deletes.
        old = today - datetime.timedelta(days=1000 + n)
        (a, _), (m, _) = backup("app", old)
        s3.delete_object(Bucket="scale", Key=a)
        s3.delete_object(Bucket="scale", Key=m)
    print(n)
"#;

/// What moto was asked since the recording started, by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Asked {
    /// LIST pages of the whole location (`GET /scale?list-type=2&prefix=p/...`).
    lists: usize,
    /// LIST pages of a folder inside it, by prefix.
    folder_lists: Vec<String>,
    /// GETs of objects, with their keys.
    gets: Vec<String>,
    heads: usize,
    other: Vec<String>,
}

fn moto_api(port: u16, what: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], method=sys.argv[2])); sys.stdout.write(r.read().decode())",
            &format!("http://127.0.0.1:{port}/moto-api/recorder/{what}"),
            if what == "download-recording" { "GET" } else { "POST" },
        ])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "moto recorder {what}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `run` with moto's recorder on, and what moto was asked while it ran.
fn asked(port: u16, run: Run) -> (crate::common::Ran, Asked) {
    moto_api(port, "reset-recording");
    moto_api(port, "start-recording");
    let ran = run.output();
    moto_api(port, "stop-recording");
    let mut a = Asked::default();
    for line in moto_api(port, "download-recording").lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).expect("a recorded request");
        let method = v["method"].as_str().unwrap_or_default();
        let url = v["url"].as_str().unwrap_or_default();
        let path = url.split("://").nth(1).and_then(|u| u.split_once('/')).map(|(_, p)| p).unwrap_or_default();
        match method {
            "GET" if path.contains("list-type=2") => {
                let prefix = path
                    .split(['?', '&'])
                    .find_map(|kv| kv.strip_prefix("prefix="))
                    .unwrap_or_default()
                    .replace("%2F", "/");
                if prefix == "p/" {
                    a.lists += 1
                } else {
                    a.folder_lists.push(prefix)
                }
            }
            "GET" if path.starts_with("scale/") => a.gets.push(path.trim_start_matches("scale/").to_string()),
            "HEAD" => a.heads += 1,
            _ => a.other.push(format!("{method} {path}")),
        }
    }
    (ran, a)
}

fn with_aws(run: Run, port: u16) -> Run {
    run.moto(port, "testing")
}

fn python(port: u16, args: &[&str]) -> Command {
    let mut c = Command::new("python3");
    c.args(["-c", SCRIPT, &port.to_string()]).args(args);
    c
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = written(dir.join(name), text);
    p.display().to_string()
}

/// One scenario, many assertions: filling the bucket is the slow part, done once.
#[test]
fn ten_thousand_objects_list_in_one_pass_of_pages_and_commands_read_only_what_they_use() {
    let boto3 = Command::new("python3").args(["-c", "import boto3"]).status().map(|s| s.success()).unwrap_or(false);
    if !require(on_path("python3") && boto3, "python3 with boto3 (to fill the bucket)") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let recording = tmp.path().join("moto-recording");
    let recording = recording.to_str().expect("utf-8 path");
    let Some(s3) = moto_with_env(&[("MOTO_RECORDER_FILEPATH", recording)]) else { return };
    let counts = [APP, ERP, LEGACY, WAL, MISC, RECORDS].map(|n| n.to_string());
    let mut fill = python(s3.port, &["fill"]);
    fill.args(&counts);
    let out = fill.output().expect("python3 fills the bucket");
    assert!(out.status.success(), "filling the bucket: {}", String::from_utf8_lossy(&out.stderr));
    let total: usize = String::from_utf8_lossy(&out.stdout).trim().parse().expect("the count");
    assert!(total > 10_000, "{total} objects");
    // One pass of LIST pages over the location: every object under `p/`.
    let pass = total.div_ceil(PAGE);
    // One pass of LIST pages over `.cluster/` alone (the WAL side: systems, base backups and
    // segments of every system from the same pages).
    let cluster_pass = vec!["p/.cluster/".to_string(); WAL.div_ceil(PAGE)];
    let loc = "s3://scale/p";

    // 1. `backups list` of one database: one pass, no HEAD, no GET but the ledger's records
    //    (small objects that only reading them tells apart). The 1,500 backups of app straddle
    //    page boundaries: every one is listed, none twice, the unfinished one not at all.
    let (ran, a) = asked(
        s3.port,
        with_aws(Run::cli(["backups", "list", "--storage", loc, "--database", "app", "--json"]), s3.port),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    // `--database` lists base backups too (each holds every database), so the WAL archive's
    // windows list `.cluster/` as in 2 below: never the location again.
    assert_eq!(a.lists, pass, "one pass of LIST pages over {total} objects: {a:?}");
    assert_eq!(a.folder_lists, cluster_pass, "`.cluster/` listed once: {a:?}");
    assert_eq!(a.heads, 0, "{a:?}");
    assert_eq!(a.gets.len(), RECORDS, "only the ledger's records are read: {:?}", a.gets);
    assert!(a.gets.iter().all(|k| k.contains("/.ledger/")), "{:?}", a.gets);
    let listed: Vec<serde_json::Value> = serde_json::from_str(ran.stdout.trim()).expect("json");
    assert_eq!(listed.len(), APP, "every backup of app across the page boundaries, once");
    let mut paths: Vec<&str> = listed.iter().filter_map(|b| b["path"].as_str()).collect();
    paths.sort_unstable();
    paths.dedup();
    assert_eq!(paths.len(), APP, "none listed twice");
    assert!(listed.iter().all(|b| b["taken_from"] == "name" && b["format"] == "custom"), "{}", listed[0]);
    assert!(listed.iter().all(|b| b["database"] == "app"), "{}", listed[0]);

    // 2. The whole location as a table: other tools' dumps with their kind from their names,
    //    said so; WAL segments and foreign files are no backups. The WAL archive's own
    //    listing (the base backups' windows) is one more pass over `.cluster/` alone.
    let (ran, a) = asked(s3.port, with_aws(Run::cli(["backups", "list", "--storage", loc]), s3.port));
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(a.lists, pass, "{a:?}");
    // Regression: the WAL archive's windows listed `.cluster/` three times (the systems, the
    // segment size, the inventory); now one pass of its own pages, never the location.
    assert_eq!(a.folder_lists, cluster_pass, "`.cluster/` listed once: {a:?}");
    assert_eq!((a.heads, a.gets.len()), (0, RECORDS), "{a:?}");
    // Backups only: the unfinished archive is a line of its own after the table.
    let rows =
        ran.stdout.lines().filter(|l| l.contains("s3://scale/p/") && !l.trim_start().starts_with("unfinished")).count();
    assert_eq!(rows, APP + ERP + LEGACY, "{}", ran.stdout.lines().take(5).collect::<Vec<_>>().join("\n"));
    assert!(ran.stdout.contains("gzip/plain*"), "{}", ran.stdout.lines().take(3).collect::<Vec<_>>().join("\n"));
    assert!(
        ran.stdout.contains("kind(s) taken from names and the listing, no file or object read"),
        "{}",
        ran.stdout.lines().last().unwrap_or_default()
    );
    assert!(!ran.stdout.contains("/misc/") && !ran.stdout.contains(".cluster"), "foreign files and WAL are no backups");

    // 3. The latest backup: one pass, and the one manifest it reports (plus the ledger).
    let runbook = write(
        tmp.path(),
        "latest.yaml",
        "name: latest\nsteps:\n  - id: latest\n    uses: backup.latest\n    with: { storage: \"s3://scale/p\", database: app }\n",
    );
    let report = tmp.path().join("latest-report");
    let (ran, a) = asked(s3.port, with_aws(Run::new(&runbook).report(&report), s3.port));
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(a.lists, pass, "{a:?}");
    assert_eq!(a.heads, 0, "{a:?}");
    let manifests: Vec<&String> = a.gets.iter().filter(|k| k.ends_with(".manifest.json")).collect();
    assert_eq!(manifests.len(), 1, "the newest backup's manifest only: {:?}", a.gets);
    let json = ran.run_json();
    let step = json.step("latest");
    let picked = step.output("path").to_string();
    assert!(manifests[0].starts_with(picked.trim_start_matches("s3://scale/")), "{picked} {manifests:?}");
    assert!(
        step.log.iter().any(|l| l.contains("unfinished, its manifest (written last) is missing")),
        "the half-published one is named, not taken: {:?}",
        step.log
    );

    // 4. A prune plan (dry run) keeping the last 1,490 days: planned from names, then the
    //    manifest of each backup it would delete is read, and nothing else.
    let (ran, a) = asked(
        s3.port,
        with_aws(
            Run::new("prune").vars(&[
                "storage=s3://scale/p",
                "database=app",
                "keep_within=1490d",
                "keep_daily=0",
                "keep_weekly=0",
                "keep_monthly=0",
            ]),
            s3.port,
        ),
    );
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let would = ran.stdout.lines().filter(|l| l.contains("would delete")).count();
    assert!((5..=15).contains(&would), "about ten past 1,490 days: {}", ran.stdout);
    assert_eq!(a.heads, 0, "{a:?}");
    // The location's pass, and the look for abandoned uploads (`GET ?uploads`, not a LIST page).
    assert_eq!(a.lists, pass, "{a:?}");
    let read: Vec<&String> = a.gets.iter().filter(|k| k.ends_with(".manifest.json")).collect();
    assert_eq!(read.len(), would, "one manifest per backup it would delete: {:?}", a.gets);

    // 6. Regression: each step that read the location gathered the ledger's records again, a
    //    GET per record per step; now a run reads each record once and later steps take it
    //    from the run's mirror while the listing shows the same ETag.
    let twice = write(
        tmp.path(),
        "twice.yaml",
        "name: twice\nsteps:\n  - id: app\n    uses: backup.latest\n    with: { storage: \"s3://scale/p\", database: app }\n  - id: erp\n    uses: backup.latest\n    with: { storage: \"s3://scale/p\", database: erp }\n",
    );
    let (ran, a) = asked(s3.port, with_aws(Run::new(&twice), s3.port));
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(a.lists, 2 * pass, "each step lists the location once: {a:?}");
    let records = a.gets.iter().filter(|k| k.contains("/.ledger/")).count();
    assert_eq!(records, RECORDS, "each ledger record read once in the run: {:?}", a.gets);

    // 7. Regression (issue 41): each listing made a sparse stand-in file in the local
    //    mirror for every listed object (about 5,500 here: openat, ftruncate, utimensat,
    //    then an unlink at exit), most of a listing's cost. Now the listing, a prune plan and
    //    a verify's pick answer from the LIST answer; a file is made only for what a step
    //    reads (the manifests prune checks, the picked backup's header and manifest). Counted
    //    from inside the run, before the mirror is removed at exit; the LIST pages stay one
    //    pass per step.
    let mirror = made_dir(tmp.path().join("mirror-tmp"));
    let count = write(
        tmp.path(),
        "count.yaml",
        "name: count\nsteps:\n  - id: list\n    uses: backup.list\n    with: { storage: \"s3://scale/p\", database: app }\n  - id: prune\n    uses: retention.prune\n    with: { storage: \"s3://scale/p\", database: app, keep_within: 1490d }\n  - id: pick\n    uses: backup.pick\n    continue_on_error: true\n    with: { storage: \"s3://scale/p\", database: app, force: true }\n  - id: files\n    uses: shell.run\n    with:\n      script: \"find \\\"$TMPDIR/pgdrill-mirror\\\" -type f ! -name ledger.jsonl ! -name .ledger-records.json | sort\"\n",
    );
    let report = tmp.path().join("count-report");
    let (ran, a) = asked(s3.port, with_aws(Run::new(&count).report(&report).env("TMPDIR", &mirror), s3.port));
    let json = ran.run_json();
    assert_eq!(json.step("list").outcome, "passed", "{}", ran.all());
    assert_eq!(json.step("prune").outcome, "passed", "{}", ran.all());
    assert_eq!(json.step("files").outcome, "passed", "{}", ran.all());
    assert_eq!(a.lists, 3 * pass, "one pass of LIST pages per step: {a:?}");
    assert_eq!(a.heads, 0, "{a:?}");
    let would = json.step("prune").log.iter().filter(|l| l.contains("would delete")).count();
    assert!(would >= 5, "the prune plan deletes some: {:?}", json.step("prune").log);
    let files: Vec<&str> = json.step("files").output("stdout").lines().filter(|l| !l.is_empty()).collect();
    // The picked backup (its stand-in and manifest) and the manifests prune read: nothing
    // for the thousands of objects only listed.
    assert!(
        files.len() <= would + 2,
        "{} files in the mirror after listing {total} objects: {:?}",
        files.len(),
        &files[..files.len().min(10)]
    );
    let picked = json.step("pick").log.join("\n");
    for f in &files {
        let app = f.contains("/app/");
        assert!(
            app && (f.ends_with(".manifest.json") || f.ends_with(".dump.pgdrill")),
            "{f} made in the mirror: {picked}"
        );
    }
    std::fs::remove_dir_all(&mirror).expect("rm");

    // 5. Objects added and deleted while pgdrill lists: a churner publishes newer backups
    //    (archive, then manifest) and deletes old ones while `backup.latest` runs, twice. Never a crash; the pick is always a backup whose manifest it read, never an
    //    archive listed without one.
    let stop = tmp.path().join("stop");
    let mut churn = python(s3.port, &["churn", stop.to_str().expect("utf-8")]).spawn().expect("the churner starts");
    for i in 0..2 {
        let report = tmp.path().join(format!("churn-{i}"));
        let ran = with_aws(Run::new(&runbook).report(&report), s3.port).output();
        assert_eq!(ran.code, Some(0), "never a crash nor a half-listed pick: {}", ran.all());
        let picked = ran.run_json().step("latest").output("path").to_string();
        assert!(picked.starts_with("s3://scale/p/app/") && picked.ends_with(".dump.pgdrill"), "{picked}");
    }
    std::fs::write(&stop, b"").expect("stop");
    let churned = churn.wait().expect("the churner ends");
    assert!(churned.success(), "the churner failed");
}

/// Regression (issue 41): a local `backups list` opened every other tool's file to read its
/// kind from its first bytes. Ten thousand such files whose bytes say something else than
/// their names (a custom-format header under `.sql.gz`): each is listed with what its name
/// says, marked as taken from the name, and the line under the table says so; none was
/// opened (their bytes would have said `custom`).
#[test]
fn ten_thousand_local_files_are_listed_from_their_names_without_opening_one() {
    const FILES: usize = 10_000;
    let (_tmp, storage) = tmp_backups();
    let legacy = made_dir(storage.join("legacy"));
    // 2024-01-01 00:00:00 UTC, one a minute.
    let start = time::OffsetDateTime::from_unix_timestamp(1_704_067_200).expect("time");
    for i in 0..FILES {
        let t = start + time::Duration::minutes(i as i64);
        let name = format!("legacy_db_{}.sql.gz", crate::common::dump_stamp(t));
        std::fs::write(legacy.join(name), b"PGDMP\x01\x0e\x00").expect("write");
    }
    let at = storage.to_str().expect("utf-8 path");
    let ran = Run::cli(["backups", "list", "--storage", at, "--json"]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let listed: Vec<serde_json::Value> = serde_json::from_str(ran.stdout.trim()).expect("json");
    assert_eq!(listed.len(), FILES);
    let off: Vec<&serde_json::Value> =
        listed.iter().filter(|b| b["format"] != "gzip/plain" || b["format_from"] != "name").collect();
    assert!(off.is_empty(), "{} entries not from their names, e.g. {}", off.len(), off[0]);
    let ran = Run::cli(["backups", "list", "--storage", at]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(ran.stdout.lines().filter(|l| l.contains(" gzip/plain* ")).count(), FILES);
    assert!(
        ran.stdout.contains(&format!("* {FILES} kind(s) taken from names and the listing, no file or object read")),
        "{}",
        ran.stdout.lines().last().unwrap_or_default()
    );
}

/// `staging=auto`, the verify runbook's default: a small dump is staged in memory, the log
/// saying why with its numbers; with a limit below its size (`staging_memory_max`) it is
/// staged on disk beside the backup, the log naming the limit. Both restore and pass.
#[tokio::test(flavor = "multi_thread")]
async fn staging_auto_puts_a_small_dump_in_memory_and_one_over_the_limit_on_disk() {
    const KEY: &str = "listing-scale test passphrase";
    let (dir, storage) = tmp_backups();
    let Some(s) = crate::common::native_server("shop").await else { return };
    let client = pgdrill::testkit::pg::connect(&s.url()).await.expect("connect");
    client
        .batch_execute("create table t (id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 60000) g;")
        .await
        .expect("load");
    crate::common::backup_to(&s.url(), &storage, KEY, "shop");
    let verify = |extra: &[&str], junit: &str| {
        Run::verify_native(storage.display(), "shop")
            .var("force", "true")
            .vars(extra)
            .junit(dir.path().join(junit))
            .key(KEY)
            .expect(0)
            .junit()
            .all_text()
    };
    let staged_in = |xml: &str| {
        xml.split("staged the checked dump (")
            .nth(1)
            .and_then(|r| r.split(" in ").nth(1))
            .and_then(|r| r.split(" for the restore").next())
            .unwrap_or_default()
            .to_string()
    };
    // No var: auto.
    let xml = verify(&[], "auto.xml");
    assert!(xml.contains("staging auto: in memory (/dev/shm): the plain dump ("), "{xml}");
    assert!(xml.contains("MiB available, 50% of") && xml.contains("free in /dev/shm)"), "the numbers: {xml}");
    assert!(staged_in(&xml).starts_with("/dev/shm/.pgdrill-stage-"), "{xml}");
    // A forced low limit: on disk, beside the backup.
    let xml = verify(&["staging_memory_max=1048576"], "limited.xml");
    assert!(xml.contains("staging auto: on disk, beside the backup: the plain dump ("), "{xml}");
    assert!(xml.contains("staging_memory_max 1 MiB"), "the limit is named: {xml}");
    let staged = staged_in(&xml);
    assert!(staged.starts_with(&storage.join("shop").display().to_string()), "{staged}");
    assert!(!Path::new(&staged).exists(), "the staged plaintext outlived the run: {staged}");
    s.stop().await;
}
