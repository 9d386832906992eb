//! `pgdrill run prune` over a synthetic calendar of backups: the dry run deletes nothing and
//! says why each would go; `apply=true` deletes exactly those; the newest and the newest
//! verified backups survive any policy.

use std::path::Path;

use crate::common::{made_dir, names_in, text, Run};

fn fake_backup(dir: &Path, stamp: &str, at: &str) {
    let name = format!("{stamp}.dump.pgdrill");
    std::fs::write(dir.join(&name), b"not a real archive").expect("write");
    let manifest = serde_json::json!({
        "schema": "pgdrill.manifest/1", "pgdrill_version": "0.1.0", "database": "erp",
        "server_version": "15.18", "server_major": 15, "pg_dump_version": "pg_dump (PostgreSQL) 15.18",
        "format": "custom", "codec": "zstd", "level": 3, "cipher": "none",
        "sizes": { "raw": 1, "compressed": 1, "stored": 1 }, "sha256": "00",
        "started_at": at, "finished_at": at, "snapshot": "x", "fingerprint": null
    });
    std::fs::write(dir.join(format!("{name}.manifest.json")), manifest.to_string()).expect("write");
}

#[test]
fn prune_is_a_dry_run_until_applied_and_keeps_newest_and_verified() {
    let t = tempfile::tempdir().expect("tmp");
    let dir = made_dir(t.path().join("erp"));
    // 40 daily backups, 2026-10-01 .. 2026-11-09.
    let mut names = Vec::new();
    for d in 0..40 {
        let day =
            time::Date::from_calendar_date(2026, time::Month::October, 1).expect("date") + time::Duration::days(d);
        let made = day.with_hms(2, 0, 0).expect("02:00").assume_utc();
        let (stamp, at) = (pgdrill::testkit::util::compact_utc(made, true), pgdrill::testkit::util::rfc3339(made));
        fake_backup(&dir, &stamp, &at);
        names.push(format!("{stamp}.dump.pgdrill"));
    }
    // An old backup was the last one verified.
    std::fs::write(
        dir.join("ledger.jsonl"),
        format!("{{\"backup\":\"{}\",\"verified_at\":\"2026-10-04T00:00:00Z\",\"result\":\"passed\"}}\n", names[2]),
    )
    .expect("ledger");
    let storage = t.path().to_str().unwrap_or_default().to_string();
    let prune = |apply: &str| {
        Run::new("prune")
            .var("storage", &storage)
            .vars(&["database=erp", "keep_daily=3", "keep_weekly=2", "keep_monthly=0"])
            .var("apply", apply)
            .raw()
    };
    let out = prune("false");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 81, "a dry run deletes nothing");
    let would: Vec<&str> = stdout.lines().filter(|l| l.trim_start().starts_with("would delete")).collect();
    assert!(stdout.contains("would delete 20261001T020000.000Z.dump.pgdrill (outside what the policy keeps (daily 3, weekly 2, monthly 0, yearly 0, min_keep 1))"), "{stdout}");
    assert!(stdout.contains(&format!("keep   {} (kept: newest verified backup)", names[2])), "{stdout}");
    assert!(
        stdout.contains(
            "keep   20261109T020000.000Z.dump.pgdrill (kept: daily 1/3, weekly 1/2, newest backup, min_keep)"
        ),
        "{stdout}"
    );

    let out = prune("true");
    assert_eq!(out.status.code(), Some(0));
    let left = names_in(&dir, |n| n.ends_with(".pgdrill"));
    assert_eq!(left.len(), 40 - would.len());
    assert!(left.contains(&names[2]) && left.contains(&names[39]), "{left:?}");
    // Daily 3: Nov 9, 8, 7. Weekly 2: Nov 9 (Monday, its week's newest) and Nov 8 (the
    // previous week's newest), already kept. Plus the verified Oct 3.
    assert_eq!(left.len(), 4, "{left:?}");
}
