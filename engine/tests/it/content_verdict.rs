//! What a verify proved of a backup's content, as every output says it (issue 35, case 2):
//! "restorable, content unproven" is its own outcome in JUnit, run.json and the compliance
//! report, and the earlier verified backup's schema is a ground truth too.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::*;

/// `pg_dump ARGS | gzip > FILE` of database app, as the classic runbooks write it.
fn dump(src: &pgdrill::pg::ephemeral::Ephemeral, args: &str, file: &Path) {
    let out = Command::new("bash")
        .args(["-c", &format!("set -euo pipefail; /usr/lib/postgresql/15/bin/pg_dump {args} | gzip > \"$1\""), "-"])
        .arg(file)
        .env("PGHOST", &src.host)
        .env("PGPORT", src.port.to_string())
        .env("PGUSER", &src.user)
        .env("PGPASSWORD", &src.password)
        .env("PGDATABASE", "app")
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(out.status.success(), "pg_dump {args}: {}", text(&out.stderr));
}

/// A verify of `backup` (no live source) with `vars`, writing JUnit and a report.
fn verify(backup: &Path, vars: &[&str], out: &Path) -> Ran {
    Run::new("verify")
        .var("backup", backup.display())
        .var("provider", "native")
        .var("max_age", "36000d")
        .var("force", true)
        .vars(vars)
        .junit(out.join("junit.xml"))
        .report(out.join("report"))
        .env_remove("PGDRILL_SOURCE_URL")
        .output()
}

/// The last line of the report directory's history.
fn last_history(report: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(report.join("history.jsonl")).expect("history");
    serde_json::from_str(text.lines().last().expect("a line")).expect("json")
}

/// Before: a verify of another tool's dump with no ground truth was, in JUnit, a plain
/// `<failure type="failed">` (or, accepted, a plain `<skipped>`) like any other check, and
/// run.json and the compliance report said only "failed" or "passed": an accepted unproven
/// run read as a plain pass everywhere but the ledger. Now the check's failure or skip has
/// type `unproven`, the suite says `content: unproven`, run.json, report.json and the history
/// carry `content: unproven` beside the outcome, and report.md's title says CONTENT
/// UNPROVEN; a ground truth that holds says `proven`.
#[tokio::test(flavor = "multi_thread")]
async fn a_verify_without_ground_truth_was_a_plain_failure_or_a_plain_pass_in_junit_and_run_json() {
    let Some(src) = native_server("app").await else { return };
    exec(
        &src.url(),
        "create table accounts (id int primary key, name text);
         insert into accounts select g, 'n' || g from generate_series(1, 300) g;",
    )
    .await;
    let t = tempfile::tempdir().expect("tmp");
    let d = t.path().join("backups");
    std::fs::create_dir_all(&d).expect("mkdir");
    let f = d.join("app-20240105T130000.sql.gz");
    dump(&src, "", &f);

    // Not accepted: exit 1, the check's failure is of type unproven.
    let out = t.path().join("refused");
    let ran = verify(&f, &[], &out);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let j = ran.junit();
    let tables = j.case("tables").expect("a tables case");
    assert_eq!((tables.status, tables.kind.as_str()), (Status::Failure, "unproven"), "{tables:?}");
    assert!(tables.message.contains("restorable, content unproven"), "{tables:?}");
    assert_eq!(j.case("restore").map(|c| (c.status, c.kind.as_str())), Some((Status::Passed, "")));
    assert!(j.suite_out.iter().any(|o| o == "content: unproven"), "{:?}", j.suite_out);
    let run = ran.run_json();
    assert_eq!((run.outcome.as_deref(), run.raw["content"].as_str()), (Some("failed"), Some("unproven")));
    assert_eq!(
        run.main().steps.iter().find(|s| s.id.as_deref() == Some("tables")).map(|s| s.outcome.as_str()),
        Some("failed")
    );
    assert_eq!(run.raw["suites"][0]["content"], "unproven");
    let report = out.join("report");
    let c = read_json(&report.join("report.json"));
    assert_eq!((c["outcome"].as_str(), c["content"].as_str()), (Some("failed"), Some("unproven")), "{c}");
    let check = c["checks"].as_array().and_then(|l| l.iter().find(|x| x["name"] == "tables")).expect("tables check");
    assert_eq!(check["content"], "unproven", "{check}");
    assert_eq!(last_history(&report)["content"], "unproven");

    // Accepted: exit 0, yet no plain pass anywhere: a skip of type unproven, content unproven.
    let out = t.path().join("accepted");
    let ran = verify(&f, &["accept_unproven=true"], &out);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let j = ran.junit();
    let tables = j.case("tables").expect("a tables case");
    assert_eq!((tables.status, tables.kind.as_str()), (Status::Skipped, "unproven"), "{tables:?}");
    assert!(tables.message.contains("content unproven") && tables.message.contains("accept_unproven"), "{tables:?}");
    assert!(j.suite_out.iter().any(|o| o == "content: unproven"), "{:?}", j.suite_out);
    let run = ran.run_json();
    assert_eq!((run.outcome.as_deref(), run.raw["content"].as_str()), (Some("passed"), Some("unproven")));
    let report = out.join("report");
    let c = read_json(&report.join("report.json"));
    assert_eq!((c["outcome"].as_str(), c["content"].as_str()), (Some("passed"), Some("unproven")), "{c}");
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    assert!(md.lines().next().is_some_and(|l| l.ends_with("PASSED, CONTENT UNPROVEN")), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("CONTENT UNPROVEN"), "{html}");
    assert_eq!(last_history(&report)["content"], "unproven");

    // A ground truth that holds: proven, and nothing says unproven.
    let out = t.path().join("proven");
    let ran = verify(&f, &["expect_tables=public.accounts>=300"], &out);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let j = ran.junit();
    assert_eq!(j.case("tables").map(|c| (c.status, c.kind.as_str())), Some((Status::Passed, "")));
    assert!(j.suite_out.iter().any(|o| o == "content: proven"), "{:?}", j.suite_out);
    assert!(!j.cases.iter().any(|c| c.kind == "unproven"), "{:?}", j.cases);
    assert_eq!(ran.run_json().raw["content"], "proven");
    let md = std::fs::read_to_string(out.join("report").join("report.md")).expect("report.md");
    assert!(!md.contains("UNPROVEN"), "{md}");
    src.stop().await;
}
