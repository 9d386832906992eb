//! A physical recovery that compared its content with nothing (issue 35): `pitr.restore`
//! without `expect`, on a pg_basebackup folder and its WAL archive (PostgreSQL 15, native).
//! physical.verify's own case, on pgBackRest, is in physical_tools.rs.

use crate::common::*;
use crate::pitr::{insert, source_with_a_base_backup, switch_and_archive};

/// The runbook: the same recovery to the mark, proven against the mark (`expect`), then
/// without it (unset, which runs only when the run refuses; accepted; and `refused` unless
/// the run accepts), and a check on the accepted unproven copy's server.
fn book(dir: &std::path::Path, fingerprint: &serde_json::Value) -> std::path::PathBuf {
    let recover = |id: &str, extra: &str| {
        let when = match id {
            "refused" => "",
            // Reported failed, and the run goes on to `refused`.
            "unproven" => "    when: not vars.accept\n    continue_on_error: true\n",
            _ => "    when: vars.accept\n",
        };
        format!(
            "  - id: {id}\n{when}    uses: pitr.restore\n    with:\n      backups: \"{{{{ vars.backups }}}}\"\n      wal: \"{{{{ vars.wal }}}}\"\n      target_name: mark\n      timeout: 2m\n{extra}"
        )
    };
    let text = format!(
        "name: unproven-recovery\nvars:\n  backups: \"\"\n  wal: \"\"\n  accept: false\nsteps:\n{}{}{}  - id: rows\n    when: vars.accept\n    uses: sql.assert\n    with:\n      url: \"{{{{ steps.accepted.outputs.url }}}}\"\n      query: select count(*) from t\n      expect: \"== 50\"\n{}",
        recover("proven", &format!("      expect: {fingerprint}\n")),
        recover("unproven", ""),
        recover("accepted", "      accept_unproven: true\n"),
        recover("refused", "      accept_unproven: \"{{ vars.accept }}\"\n"),
    );
    written(dir.join("unproven-recovery.yaml"), text)
}

/// Before: pitr.restore (and physical.verify) without `expect` passed, a plain JUnit pass
/// and `passed` in run.json, though it compared the recovered copy's content with nothing
/// (only its `<system-out>` and the run's `content` said unproven). Now it has verify's
/// "restorable, content unproven" outcome, from the same fact: a `<skipped type="unproven">`
/// with the reason when the run accepts it (`accept_unproven: true`), else a `<failure
/// type="unproven">` naming the remedy, exit 1; the recovered server's outputs stay readable
/// by the steps after it. With `expect` (a pitr.mark of the source) the pass stays a pass.
///
/// Regression (issue 35): unset was a skip, so a recovery without ground truth still exited
/// 0, where verify of a dump without one exits 1; the shipped `pitr` with only a `marker`
/// (which proves the target, not the content) exited 0. Unset now fails as verify's does, and
/// the shipped runbook takes the mark as `--var expect=FILE`.
#[tokio::test(flavor = "multi_thread")]
async fn a_recovery_without_ground_truth_was_a_plain_pass_in_junit_and_run_json() {
    let Some((src, url)) = source_with_a_base_backup().await else { return };
    insert(&url, "a", 50).await;
    let dir = tempfile::tempdir().expect("tmp");
    let mark = written(dir.path().join("mark.yaml"), "name: mark\nvars:\n  url: \"\"\nsteps:\n  - id: mark\n    uses: pitr.mark\n    with:\n      url: \"{{ vars.url }}\"\n      restore_point: mark\n");
    let marked = Run::new(&mark).var("url", &url).report(dir.path().join("mark")).expect(0);
    let fingerprint = marked.run_json().step("mark").outputs["fingerprint"].clone();
    assert!(fingerprint["tables"]["public.t"]["rows"].as_i64() == Some(50), "{fingerprint}");
    // After the mark: rows the recovery must not bring back, then the mark's WAL archived.
    insert(&url, "b", 7).await;
    switch_and_archive(&src.server, &src.archive()).await;

    let book = book(dir.path(), &fingerprint);
    // Accepting: every case runs; refusing: only `refused` does (the others are `when: vars.accept`).
    let run = |accept: bool, out: &str| {
        Run::new(&book)
            .var("backups", src.backups().display())
            .var("wal", src.archive().display())
            .var("accept", accept)
            .junit(dir.path().join(out).join("junit.xml"))
            .report(dir.path().join(out).join("report"))
            .output()
    };

    let ran = run(true, "accepting");
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let j = ran.junit();
    let proven = j.case("proven").expect("a proven case");
    assert_eq!((proven.status, proven.kind.as_str()), (Status::Passed, ""), "{proven:?}");
    for id in ["accepted", "refused"] {
        let c = j.case(id).unwrap_or_else(|| panic!("a case {id}"));
        assert_eq!((c.status, c.kind.as_str()), (Status::Skipped, "unproven"), "{id}: {c:?}");
        assert!(c.message.contains("restorable, content unproven"), "{id}: {c:?}");
        assert!(c.message.contains("(accepted: accept_unproven)"), "{id}: {c:?}");
    }
    assert_eq!(j.status("rows"), "passed", "the unproven recovery's server stays readable: {}", ran.all());
    assert!(j.suite_out.iter().any(|o| o == "content: unproven"), "{:?}", j.suite_out);
    let rj = ran.run_json();
    assert_eq!(rj.step("proven").outcome, "passed");
    assert_eq!(rj.step("proven").outputs["ground_truth"], "source at the target");
    for id in ["accepted", "refused"] {
        let s = rj.step(id);
        assert_eq!(s.outcome, "skipped", "{id}: {:?}", s.message);
        assert_eq!(s.outputs["ground_truth"], "none", "{id}: {}", s.outputs);
        assert!(s.outputs["url"].as_str().is_some_and(|u| !u.is_empty()), "{id}: {}", s.outputs);
    }
    assert_eq!((rj.outcome.as_deref(), rj.raw["content"].as_str()), (Some("passed"), Some("unproven")));
    // `pgdrill report`: the run passed having accepted unproven content; it is counted apart,
    // never as passed (nor as a success: no successful run, so stale, exit 1).
    let report = Run::cli(["report", "--json", "--runbook", "unproven-recovery"])
        .arg(dir.path().join("accepting/report"))
        .output();
    assert_eq!(report.code, Some(1), "{}", report.all());
    let summary: serde_json::Value = serde_json::from_str(&report.stdout).expect("report --json");
    assert_eq!((summary["runs"].as_u64(), summary["passed"].as_u64()), (Some(1), Some(0)), "{summary}");
    assert_eq!((summary["unproven"].as_u64(), summary["stale"].as_bool()), (Some(1), Some(true)), "{summary}");

    // Refused, by the field unset (the default) or false: the recovery is a failure of type
    // unproven, naming the remedy, exit 1.
    let ran = run(false, "refusing");
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let j = ran.junit();
    for id in ["unproven", "refused"] {
        let c = j.case(id).unwrap_or_else(|| panic!("a case {id}"));
        assert_eq!((c.status, c.kind.as_str()), (Status::Failure, "unproven"), "{id}: {c:?}");
        assert!(c.message.contains("restorable, content unproven"), "{id}: {c:?}");
        assert!(c.message.contains("expect") && c.message.contains("accept_unproven: true"), "{id}: {c:?}");
    }
    let rj = ran.run_json();
    assert_eq!((rj.step("unproven").outcome.as_str(), rj.step("refused").outcome.as_str()), ("failed", "failed"));
    assert_eq!((rj.outcome.as_deref(), rj.raw["content"].as_str()), (Some("failed"), Some("unproven")));

    // The shipped `pitr` with a marker that holds and no ground truth: exit 1, the recovery a
    // failure of type unproven naming both remedies; the checks after it not run.
    let shipped = |out: &str| {
        Run::new("pitr")
            .var("backups", src.backups().display())
            .var("wal", src.archive().display())
            .var("target_name", "mark")
            .var("marker", "select count(*) = 50 from t")
            .junit(dir.path().join(out).join("junit.xml"))
            .report(dir.path().join(out).join("report"))
    };
    let ran = shipped("shipped").output();
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let j = ran.junit();
    let c = j.case("recover").expect("a recover case");
    assert_eq!((c.status, c.kind.as_str()), (Status::Failure, "unproven"), "{c:?}");
    assert!(c.message.contains("--var expect=FILE") && c.message.contains("--var accept_unproven=true"), "{c:?}");
    assert_eq!(j.status("tables"), "skipped", "{}", ran.all());
    assert_eq!(ran.run_json().raw["content"], "unproven");
    // The same with the mark the source was marked with, as the team keeps it (the marking
    // run's run.json): proven against it, exit 0.
    let ran = shipped("shipped_expect").var("expect", dir.path().join("mark/run.json").display()).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let rj = ran.run_json();
    assert_eq!(rj.step("recover").outcome, "passed", "{:?}", rj.step("recover").message);
    assert_eq!(rj.step("recover").outputs["ground_truth"], "source at the target");
    assert_eq!(rj.step("amcheck").outcome, "passed", "{:?}", rj.step("amcheck").message);
}
