//! Ground truth for another tool's dump from the nearest earlier backup of its folder whose
//! content pgdrill proved (issue 35, "no green without ground truth", third in the order).

use std::path::Path;

use crate::common::*;

/// `pg_dump ARGS` of database `app` on `src` gzipped into `file`, then verified without the
/// source ([`verify`]): it must exit `code`.
fn dumped_and_verified(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, file: &Path, args: &str, code: i32) -> Ran {
    pg_dump_gzip(src, "app", args, file);
    let ran = verify(file, None);
    assert_eq!(ran.code, Some(code), "{}", ran.all());
    ran
}

fn verify(backup: &Path, source: Option<&str>) -> Ran {
    let mut run = Run::new("verify")
        .var("backup", backup.display())
        .var("provider", "native")
        .var("max_age", "36000d")
        .var("force", true)
        .env_remove("PGDRILL_SOURCE_URL");
    if let Some(s) = source {
        run = run.env("PGDRILL_SOURCE_URL", s);
    }
    run.output()
}

/// Before: the nearest earlier verified backup was not a ground truth, so a complete later
/// dump of a folder whose earlier dump had been proven against the live source was
/// "restorable, content unproven" (exit 1), and a later dump missing a table, or with a
/// table shrunk to half, said only that too, never what it lacked. Now the ledger keeps the
/// rows per table of each proven verification, and a later dump is held against the
/// nearest earlier proven one: complete, it is proven (`ground_truth: earlier`); a table
/// missing or shrunk beyond the tolerance fails, named.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_whose_earlier_dump_was_proven_stayed_unproven_and_a_missing_table_was_not_named() {
    let data = "create table accounts (id int primary key, name text);
         insert into accounts select g, 'n' || g from generate_series(1, 1000) g;
         create table payments (id int primary key, amount numeric);
         insert into payments select g, g * 0.5 from generate_series(1, 400) g;";
    let Some(src) = native_server_with("app", data).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));

    // 1. Proven against the live source: the ledger keeps its tables' rows.
    let first = d.join("app-20240105T130000.sql.gz");
    pg_dump_gzip(&src, "app", "", &first);
    let ran = verify(&first, Some(&src.url()));
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["content"].as_str(), e["ground_truth"].as_str()), (Some("proven"), Some("source")), "{e}");
    assert_eq!(e["tables"]["public.accounts"], 1000, "{e}");
    assert_eq!(e["tables"]["public.payments"], 400, "{e}");

    // 2. A later complete dump (rows grew), no source: proven against the earlier one.
    exec(&src.url(), "insert into payments select g, 1 from generate_series(401, 450) g").await;
    let second = d.join("app-20240107T130000.sql.gz");
    dumped_and_verified(&src, &second, "", 0);
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["content"].as_str(), e["ground_truth"].as_str()), (Some("proven"), Some("earlier")), "{e}");
    assert_eq!(e["tables"]["public.payments"], 450, "{e}");

    // 3. A complete dump that left a table out (dated between the two): held against the
    // first, the one before it, and the missing table named.
    let partial = d.join("app-20240106T130000.sql.gz");
    let all = dumped_and_verified(&src, &partial, "-T payments", 1).all();
    let said =
        "public.payments: missing from the restore (the earlier verified backup app-20240105T130000.sql.gz had it)";
    assert!(all.contains(said), "{all}");
    assert_eq!(last_json_line(&d.join("ledger.jsonl"))["content"], "failed");

    // 4. A table shrunk to half since the nearest earlier proven dump: named; within a
    // declared tolerance it holds.
    exec(&src.url(), "delete from accounts where id > 500").await;
    let shrunk = d.join("app-20240108T130000.sql.gz");
    let all = dumped_and_verified(&src, &shrunk, "", 1).all();
    let said = "public.accounts: 500 rows restored, the earlier verified backup app-20240107T130000.sql.gz had 1000";
    assert!(all.contains(said), "{all}");
    let ran = Run::new("verify")
        .var("backup", shrunk.display())
        .var("provider", "native")
        .var("max_age", "36000d")
        .var("force", true)
        .var("tolerance_pct", 60)
        .env_remove("PGDRILL_SOURCE_URL")
        .output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    src.stop().await;
}

/// Before: a verify that accepted unproven content (`accept_unproven=true`, exit 0) moved
/// `pgdrill_verify_last_success_timestamp_seconds` like a proven one, so an alert on stale
/// verification never fired for a backup whose content nothing had proven, and no metric
/// said "unproven". Now such a run leaves the verified-success time alone and sets
/// `pgdrill_verify_content_unproven` to 1; a proven run sets it to 0 and moves the time.
#[tokio::test(flavor = "multi_thread")]
async fn an_accepted_unproven_verify_moved_the_verified_success_metric() {
    let data = "create table accounts (id int primary key); insert into accounts select generate_series(1, 100)";
    let Some(src) = native_server_with("app", data).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let f = d.join("app-20240105T130000.sql.gz");
    pg_dump_gzip(&src, "app", "", &f);
    let textfile = t.path().join("pgdrill.prom");
    let notify = written(t.path().join("notify.yaml"), format!("metrics:\n  textfile: {}\n", textfile.display()));
    let run = |var: &str| {
        Run::new("verify")
            .var("backup", f.display())
            .var("provider", "native")
            .var("max_age", "36000d")
            .var("force", true)
            .vars(&[var])
            .arg("--notify")
            .arg(&notify)
            .env_remove("PGDRILL_SOURCE_URL")
            .expect(0)
    };
    let sample = |name: &str| -> Option<String> {
        let text = std::fs::read_to_string(&textfile).expect("textfile");
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
    };
    run("accept_unproven=true");
    assert_eq!(sample("pgdrill_verify_content_unproven").as_deref(), Some("1"));
    assert_eq!(sample("pgdrill_verify_last_success_timestamp_seconds"), None, "an unproven run is no verified success");
    assert_eq!(sample("pgdrill_run_success").as_deref(), Some("1"), "the run itself passed, as accepted");
    run("expect_tables=public.accounts>=100");
    assert_eq!(sample("pgdrill_verify_content_unproven").as_deref(), Some("0"));
    assert!(sample("pgdrill_verify_last_success_timestamp_seconds").is_some(), "a proven run is a verified success");
    src.stop().await;
}
