//! What the shipped backup and verify runbooks tell an operator: where a backup went and its
//! size, an unencrypted backup on request (with a warning everywhere it is reported), and the
//! RPO a verified backup implies against an `rpo` target.

use std::path::Path;

use crate::common;
use crate::common::{junit_cases, made_dir, pgdrill, status_of, text, tmp_backups, Run};

/// `cmd` run with the backup key `key` (none: unset): its exit code and all it printed.
fn run(cmd: Run, key: Option<&str>) -> (Option<i32>, String) {
    let ran = match key {
        Some(k) => cmd.key(k),
        None => cmd.env_remove(common::KEY_ENV),
    }
    .output();
    (ran.code, ran.all())
}

fn files_under(dir: &Path) -> Vec<String> {
    common::walk(dir).iter().map(|p| p.display().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unencrypted_backup_round_trips_with_a_warning_and_a_missing_key_is_named() {
    let Some(src) = common::native_server_with("ledger", "create table entries (id int primary key, amount numeric); insert into entries select g, g * 1.5 from generate_series(1, 3000) g;").await else { return };
    let (dir, storage) = tmp_backups();
    let url = src.url();
    let backup = || Run::new("backup").var("database_url", &url).var("storage", storage.display());

    // The default asks for a key and names where to put it; nothing is written.
    let (code, all) = run(backup(), None);
    assert_eq!(code, Some(2), "{all}");
    assert!(all.contains("PGDRILL_BACKUP_KEY") && all.contains("encrypt=false"), "{all}");
    assert!(files_under(&storage).iter().all(|f| !f.ends_with(".pgdrill")), "{:?}", files_under(&storage));

    // encrypt=false: written, said where and how big, warned about in the terminal and JUnit.
    let junit = dir.path().join("backup.xml");
    let (code, all) = run(backup().var("encrypt", false).junit(&junit), None);
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("warning: this backup is NOT encrypted (encrypt: false)"), "{all}");
    let wrote = all.lines().find(|l| l.contains("wrote ")).unwrap_or_default().to_string();
    assert!(wrote.contains(&storage.display().to_string()) && wrote.contains(".dump.pgdrill"), "{all}");
    assert!(wrote.contains("KiB") && wrote.contains("x smaller") && wrote.contains("NOT encrypted"), "{wrote}");
    let xml = std::fs::read_to_string(&junit).expect("junit");
    assert!(xml.contains("this backup is NOT encrypted"), "{xml}");
    assert!(!all.contains(&src.password), "no password in the output");

    // The same with a key set: encrypt=false wins, and the key never shows.
    let (code, all) = run(backup().var("encrypt", false), Some("a key that is not used"));
    assert_eq!(code, Some(0), "{all}");
    assert!(all.contains("NOT encrypted") && !all.contains("a key that is not used"), "{all}");

    // It lists as unencrypted with an unauthenticated manifest, and verifies with no key.
    let out = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default(), "--json"])
        .output()
        .expect("list");
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|b| b["encrypted"] == false), "{list:?}");
    let vjunit = dir.path().join("verify.xml");
    let verify = Run::new("verify")
        .var("storage", storage.display())
        .vars(&["database=ledger", "provider=native", "rpo=1000d"])
        .junit(&vjunit)
        .report(dir.path().join("report"));
    let (code, all) = run(verify, None);
    assert_eq!(code, Some(0), "{all}");
    let cases = junit_cases(&vjunit);
    for check in ["integrity", "restore", "tables", "freshness"] {
        assert_eq!(status_of(&cases, check), "passed", "{check}: {cases:?}");
    }
    // The backup's age (what `rpo=` holds it to) is reported as an objective with its target,
    // under its own name: RPO is only measured from data found in a recovered copy.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report/report.json")).expect("report"))
            .expect("json");
    // An RPO measured by a verify does not make it a drill: the runbook says what it is.
    assert_eq!(report["kind"], "verify");
    let rpo = report["objectives"].as_array().and_then(|o| o.iter().find(|o| o["name"] == "Backup age")).cloned();
    let rpo = rpo.unwrap_or_else(|| panic!("an RPO objective: {report}"));
    assert_eq!(rpo["target_s"], 1000 * 86_400, "{rpo}");
    assert_eq!(rpo["outcome"], "passed", "{rpo}");
    assert!(rpo["measured_s"].as_u64().is_some_and(|s| s < 86_400), "{rpo}");
}

/// A backup older than the `rpo` target fails `freshness` naming the RPO; the measurement is
/// in the report even though the check failed.
#[test]
fn a_backup_older_than_the_rpo_target_fails_and_the_rpo_is_still_reported() {
    let dir = tempfile::tempdir().expect("tmp");
    let storage = made_dir(dir.path().join("backups"));
    // A plain SQL dump made on 2024-01-15: restorable, and old by its name.
    std::fs::write(
        storage.join("shop_20240115_020000.sql"),
        "--\n-- PostgreSQL database dump\n--\n\n--\n-- Name: t; Type: TABLE; Schema: public; Owner: -\n--\n\nCREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n\n--\n-- PostgreSQL database dump complete\n--\n\n",
    )
    .expect("write");
    let report_dir = dir.path().join("report");
    let junit = dir.path().join("v.xml");
    let ran = Run::new("verify")
        .var("storage", storage.display())
        .vars(&["database=shop", "provider=native", "max_age=36000d", "rpo=24h"])
        // Another tool's dump with no ground truth: its content is accepted as unproven so
        // that the age verdict is what this test reads.
        .var("accept_unproven", true)
        .junit(&junit)
        .report(&report_dir)
        .env_remove(common::KEY_ENV)
        .output();
    let (code, all) = (ran.code, ran.all());
    if !common::require(!all.contains("no PostgreSQL server binaries"), "PostgreSQL 15 server binaries") {
        return;
    }
    assert_eq!(code, Some(1), "{all}");
    assert!(all.contains("exceeds the target rpo=1day"), "{all}");
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "freshness"), "failure", "{cases:?}");
    assert_eq!(status_of(&cases, "restore"), "passed", "{cases:?}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).expect("report")).expect("json");
    let rpo = report["objectives"].as_array().and_then(|o| o.iter().find(|o| o["name"] == "Backup age")).cloned();
    let rpo = rpo.unwrap_or_else(|| panic!("an RPO objective: {report}"));
    assert_eq!(rpo["outcome"], "failed", "{rpo}");
    assert!(rpo["measured_s"].as_u64().is_some_and(|s| s > 300 * 86_400), "{rpo}");
}

/// Off a TTY a long step prints a plain progress line every PGDRILL_PROGRESS_INTERVAL:
/// bytes so far, the estimate from the previous backup, throughput and time left; the
/// bytes only grow, and the lines stop when the step ends.
#[tokio::test(flavor = "multi_thread")]
async fn off_a_tty_a_dump_prints_plain_progress_lines_that_grow_and_end() {
    let Some(src) = common::native_server("big").await else { return };
    // About 6 MiB of incompressible data: long enough to stream for several intervals.
    common::exec(
        &src.url(),
        "create table blobs (id int primary key, data bytea);
         insert into blobs select g, decode(string_agg(md5(random()::text || g2), ''), 'hex')
           from generate_series(1, 6) g, generate_series(1, 65536) g2 group by g;",
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let backup = || {
        let out = Run::new("backup")
            .var("database_url", src.url())
            .var("storage", dir.path().join("b").display())
            .var("fingerprint", "off")
            .key("progress test passphrase")
            .env("PGDRILL_PROGRESS_INTERVAL", "1ms")
            .raw();
        let all = text(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{all}{}", text(&out.stderr));
        all
    };
    backup();
    // The second backup knows the first one's size: an estimate and a time left.
    let all = backup();
    let lines: Vec<&str> = all.lines().filter(|l| l.trim_start().starts_with("progress     dump: ")).collect();
    assert!(!lines.is_empty(), "progress lines off a TTY: {all}");
    let mut last = 0.0;
    for l in &lines {
        assert!(l.contains(" of ~") && l.contains("/s, about ") && l.ends_with(" left"), "{l}");
        let done = l.split("dump: ").nth(1).and_then(|r| r.split(" of ").next()).unwrap_or_default();
        let (n, unit) = done.split_once(' ').unwrap_or_default();
        let n: f64 = n.parse().unwrap_or(-1.0);
        let bytes = n * match unit {
            "B" => 1.0,
            "KiB" => 1024.0,
            "MiB" => 1048576.0,
            _ => 1073741824.0,
        };
        assert!(bytes >= last, "bytes only grow: {lines:?}");
        last = bytes;
    }
    // They end with the step: nothing after its result line.
    let pos_done = all.find("passed       dump [backup.create]").expect("dump result");
    let pos_last = all.rfind("progress     dump: ").expect("a line");
    assert!(pos_last < pos_done, "{all}");
}
