//! Drills on real PostgreSQL 15 servers (native provider): the disaster-recovery drill
//! measures RPO from the data (it lies between the disaster less the backup's end and the
//! disaster less the backup's start); an RTO target below the real
//! time fails with exit 1 and names the budget; the compliance report and history are
//! written; the A/B drill passes, and fails when its restore is skipped; the quickstart runs.

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::{junit_cases, pgdrill, read_json, status_of, text, written, Run, RunJson};
use serde_json::Value;

/// `pgdrill run NAME` on the native provider with `--report`, `--junit`, `vars` and `extra`
/// arguments; fails the test unless it exits `code`. What it printed.
fn drill(name: &str, report: &Path, junit: &Path, vars: &[&str], extra: &[&str], code: i32) -> String {
    let mut run = Run::new(name).arg("--quiet").report(report).junit(junit).var("provider", "native").vars(vars);
    for a in extra {
        run = run.arg(a);
    }
    run.expect(code).all()
}

/// The shipped disaster-recovery drill at scale 1 with one job and `vars`, which must pass
/// ([`drill`]): its run.json.
fn disaster_recovery(report: &Path, junit: &Path, vars: &[&str]) -> RunJson {
    drill("disaster-recovery", report, junit, &[&["scale=1"], vars, &["jobs=1"]].concat(), &[], 0);
    RunJson::read(report)
}

/// Skip (outside CI) or fail (in CI) when the PostgreSQL server binaries are missing.
fn have_server() -> bool {
    common::require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries")
}

/// A temporary folder with the paths of a drill's report folder and JUnit file in it; `None`
/// (a printed skip, a failure in CI) when the PostgreSQL server binaries are missing.
fn drill_paths() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !have_server() {
        return None;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let (report, junit) = (dir.path().join("report"), dir.path().join("junit.xml"));
    Some((dir, report, junit))
}

#[test]
fn rpo_is_measured_from_the_data_and_the_report_is_written() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    let interval = 0.1;
    let run = disaster_recovery(&report, &junit, &["heartbeat=100ms", "keep_writing=1500ms"]);
    let disaster = run.step("disaster").outputs["at_epoch"].as_f64().expect("disaster time");
    let backup = &run.step("backup").outputs;
    let started = backup["started_epoch"].as_f64().expect("snapshot time");
    let finished = common::unix_seconds(backup["created"].as_str().expect("backup's end"));
    let rpo = run.step("rpo").outputs["rpo_s"].as_f64().expect("rpo");
    // Bounds that hold however loaded the machine is (no timing tolerance): the dump's
    // snapshot is taken between the backup's recorded start and its end, so the newest
    // heartbeat it holds is no later than the end, and no earlier than the start less the
    // heartbeat interval; a heartbeat writer delayed by a busy machine may leave an older
    // newest row, which the upper bound allows 1 s for (it only guards against nonsense).
    let (low, high) = (disaster - finished - 0.001, disaster - started + interval + 0.001);
    assert!(low <= high, "disaster {disaster}, backup {started}..{finished}");
    assert!(
        rpo >= low,
        "RPO {rpo:.3} s is less than disaster - end of backup ({low:.3} s): it was not measured from the data"
    );
    assert!(rpo <= high + 1.0, "RPO {rpo:.3} s is more than disaster - start of backup ({high:.3} s) plus 1 s");
    assert!(rpo >= 1.5, "the source kept writing 1.5 s after the backup: RPO {rpo}");
    let rto = run.step("rto").outputs["rto_s"].as_f64().expect("rto");
    assert!(rto > 0.0);

    // Compliance evidence: JSON with a schema version, Markdown, HTML, and history.
    let c = read_json(&report.join("report.json"));
    assert_eq!(c["schema"], "pgdrill.compliance/1");
    assert_eq!(c["outcome"], "passed");
    // The drill declares its kind (`kind: drill`), which the record carries and the report reads.
    assert_eq!(c["kind"], "drill");
    assert_eq!(run.main().kind, "drill");
    let names: Vec<&str> =
        c["objectives"].as_array().expect("objectives").iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(names.contains(&"RTO") && names.contains(&"RPO"), "{names:?}");
    assert!(c["backups"][0]["sha256"].as_str().is_some_and(|s| s.len() == 64), "{}", c["backups"]);
    assert!(c["versions"]["servers"][0].as_str().is_some_and(|v| v.starts_with("15.")), "{}", c["versions"]);
    for phase in ["provision", "fetch_decrypt_decompress", "restore", "verify"] {
        assert!(c["phases"][phase].is_number(), "phase {phase} in {}", c["phases"]);
    }
    let md = std::fs::read_to_string(report.join("report.md")).expect("md");
    assert!(md.contains("| RPO |") && md.contains("## Recovery phases"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("html");
    assert!(html.starts_with("<!doctype html>") && html.contains("<td>RTO</td>"), "{html}");
    let history = std::fs::read_to_string(report.join("history.jsonl")).expect("history");
    let line: Value = serde_json::from_str(history.lines().last().expect("a line")).expect("json");
    assert_eq!(line["outcome"], "passed");
    assert_eq!(line["rpo_s"].as_f64(), Some(rpo));
    // No secret (the generated key) reaches any report.
    let key = run.step("workspace").outputs["key"].as_str().expect("key").to_string();
    assert_eq!(key, "********", "the key is masked in run.json");

    let summary = pgdrill(&["report", &report.display().to_string()]).output().expect("report");
    let s = text(&summary.stdout);
    assert_eq!(summary.status.code(), Some(0), "{s}");
    assert!(s.contains("passed 1 (100%)") && s.contains("last successful drill: 0.0 days ago"), "{s}");
}

#[test]
fn an_rto_target_below_the_real_time_fails_and_names_the_budget() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    let all = drill("disaster-recovery", &report, &junit, &["scale=1", "keep_writing=0s", "rto_target=10ms"], &[], 1);
    assert!(all.contains("exceeds the budget rto=10ms"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "rto"), "failure");
    assert_eq!(status_of(&junit_cases(&junit), "rpo"), "passed");
    // The measurement still reaches the report, and the history records the failure.
    let c = read_json(&report.join("report.json"));
    let rto = c["objectives"].as_array().and_then(|o| o.iter().find(|o| o["name"] == "RTO")).cloned().expect("RTO");
    assert!(rto["measured_s"].as_f64().is_some_and(|v| v > 0.01), "{rto}");
    assert_eq!(rto["outcome"], "failed");
    let summary = pgdrill(&["report", &report.display().to_string()]).output().expect("report");
    assert_eq!(summary.status.code(), Some(1), "no successful drill yet: stale");
    assert!(text(&summary.stdout).contains("STALE"));
}

#[test]
fn the_ab_drill_passes_and_fails_when_the_restore_is_skipped() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    drill("ab", &report, &junit, &[], &["--yes"], 0);
    let cases = junit_cases(&junit);
    for case in ["a_exists", "b_absent", "restore", "drop", "snapshot"] {
        assert_eq!(status_of(&cases, case), "passed", "{case} in {cases:?}");
    }

    let all = drill("ab", &report, &junit, &["skip_restore=true"], &["--yes"], 1);
    assert!(all.contains("step `b_absent` failed"), "{all}");
    assert_eq!(status_of(&junit_cases(&junit), "a_exists"), "passed");
}

#[test]
fn the_quickstart_drill_runs_end_to_end() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    drill("quickstart", &report, &junit, &["scale=2"], &[], 0);
    let cases = junit_cases(&junit);
    for case in ["load", "backup", "integrity", "restore", "schema", "tables", "amcheck"] {
        assert_eq!(status_of(&cases, case), "passed", "{case} in {cases:?}");
    }
    // Regression: the backup's age was filed as the quickstart's "RPO" (0 s), which RPO is
    // not: it is only measured from the data a drill recovers. It has its own name.
    let c = read_json(&report.join("report.json"));
    let names: Vec<&str> =
        c["objectives"].as_array().expect("objectives").iter().filter_map(|o| o["name"].as_str()).collect();
    assert!(names.contains(&"Backup age") && !names.contains(&"RPO"), "{names:?}");
    let history = std::fs::read_to_string(report.join("history.jsonl")).expect("history");
    let line: Value = serde_json::from_str(history.lines().last().expect("a line")).expect("json");
    assert!(line["rpo_s"].is_null() && line["backup_age_s"].is_number(), "{line}");
    // The workspace (backups, key) is gone afterwards.
    let ws = RunJson::read(&report).step("workspace").outputs["path"].as_str().expect("path").to_string();
    assert!(!Path::new(&ws).exists(), "{ws} left behind");
}

/// Regression: the postmaster `destroy_server` killed stayed a zombie child of pgdrill, which
/// `kill(pid, 0)` kept finding, so the disaster step waited its full 5 s and every such RTO
/// was 5 s too long. The server dies at once on SIGQUIT; the step now sees it and says so (a
/// fact the step logs, not a timing: it bounded a loaded machine's step at 2 s and failed
/// at 2.04 s with the server seen dead.)
#[test]
fn destroy_server_sees_the_killed_postmaster_die_at_once() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    let run = disaster_recovery(&report, &junit, &["keep_writing=0s", "disaster=destroy_server"]);
    let disaster = run.step("disaster");
    let log = disaster.log.join("\n");
    assert!(log.contains("stopped the server (pid"), "it did not see the server die\n{disaster:?}");
    assert!(!log.contains("had not exited"), "{disaster:?}");
}

/// A drill's verdict is its checks' verdict: no shipped drill or runbook lets a step fail
/// without failing the run. (The upgrade drill's `schema` and `tables` did, so no difference
/// could ever fail an upgrade rehearsal.)
#[test]
fn no_shipped_drill_or_runbook_lets_a_step_fail_quietly() {
    for s in pgdrill::testkit::shipped::all() {
        let rb = pgdrill::testkit::runbook::parse(s.path, s.text, std::path::PathBuf::new())
            .unwrap_or_else(|d| panic!("{} does not parse: {d}", s.path));
        for step in rb.all_steps() {
            assert!(!step.continue_on_error, "{}: step `{}` is continue_on_error", s.path, step.label());
        }
    }
}

/// The shipped drill `name` written as `NAME-injected.yaml` into `dir`, with `injected`
/// (steps, indented as top-level steps) inserted right after the step with id `after`.
fn injected_after(dir: &Path, name: &str, after: &str, injected: &str) -> PathBuf {
    written(dir.join(format!("{name}-injected.yaml")), inject_after(name, after, injected))
}

/// The shipped drill `name`'s text with `injected` (steps, indented as top-level steps)
/// inserted right after the step with id `after`.
fn inject_after(name: &str, after: &str, injected: &str) -> String {
    let shipped = pgdrill::testkit::shipped::all().iter().find(|s| s.name == name).expect("a shipped drill");
    let marker = format!("  - id: {after}\n");
    let start = shipped.text.find(&marker).unwrap_or_else(|| panic!("{name} has no step {after}")) + marker.len();
    // The next top-level entry of `steps:` after that one.
    let next = shipped.text[start..].find("\n  - ").map(|i| start + i + 1).expect("a step after it");
    format!("{}{injected}{}", &shipped.text[..next], &shipped.text[next..])
}

/// Regression: the upgrade drill passed (exit 0) with its schema and tables checks failed,
/// because both were `continue_on_error`. With a row deleted from the upgraded copy after
/// the restore, the drill must fail (exit 1) and say which check did. Run to the same major
/// here (native servers), so the test needs no container.
#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_drill_fails_when_the_upgraded_copy_differs() {
    let data = "create table orders(id int primary key, total numeric); insert into orders select g, g * 2 from generate_series(1, 100) g";
    let Some(pg) = common::native_server_with("app", data).await else { return };
    let Some((dir, report, junit)) = drill_paths() else { return };
    let injected = "  - id: injected\n    uses: sql.exec\n    with: { url: \"{{ steps.create_db.outputs.url }}\", sql: delete from orders where id = 1 }\n";
    let rb = injected_after(dir.path(), "upgrade", "restore", injected);
    let all = drill(
        rb.to_str().unwrap_or_default(),
        &report,
        &junit,
        &[&format!("database_url={}", pg.url()), "version=15"],
        &[],
        1,
    );
    assert_eq!(status_of(&junit_cases(&junit), "tables"), "failure", "{all}");
    assert!(all.contains("public.orders"), "the difference is named: {all}");
    let c = read_json(&report.join("report.json"));
    assert_eq!(c["outcome"], "failed", "{c}");
    pg.stop().await;
}

/// Every shipped drill fails when its proof fails: the disaster-recovery drill with a row
/// deleted from the recovered copy after the restore exits 1 at its fingerprint check.
#[test]
fn the_disaster_recovery_drill_fails_when_the_recovered_copy_differs() {
    let Some((dir, report, junit)) = drill_paths() else { return };
    let injected = "  - id: injected\n    uses: sql.exec\n    with: { url: \"{{ steps.create_db.outputs.url }}\", sql: \"delete from erp.orders where ctid in (select ctid from erp.orders limit 1)\" }\n";
    let rb = injected_after(dir.path(), "disaster-recovery", "restore", injected);
    let all =
        drill(rb.to_str().unwrap_or_default(), &report, &junit, &["scale=1", "keep_writing=0s", "jobs=1"], &[], 1);
    assert_eq!(status_of(&junit_cases(&junit), "verify"), "failure", "{all}");
}

/// The one difference expected across majors, extension versions, is compared as such: a
/// source on 15 with the contrib extensions the edge fixture uses, upgraded into 17 (a
/// container from the local image; fuzzystrmatch 1.1 -> 1.2, ltree 1.2 -> 1.3 there), passes its
/// schema check with every extension present.
#[tokio::test(flavor = "multi_thread")]
async fn the_upgrade_drill_across_majors_expects_new_extension_versions_only() {
    let image = std::process::Command::new("docker")
        .args(["image", "inspect", "pgdrill/postgres-local:17"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require(image, "Docker with the image pgdrill/postgres-local:17 (bash ci/setup.sh)") {
        return;
    }
    let Some(pg) = common::native_server("app").await else { return };
    let client = pgdrill::testkit::pg::connect(&pg.url()).await.expect("connect");
    client
        .batch_execute(
            "create extension hstore; create extension citext; create extension pgcrypto; create extension btree_gist; create extension pg_trgm; create extension fuzzystrmatch; create extension ltree;
             create table notes(id int primary key, body citext, tags hstore); insert into notes select g, 'n' || g, 'a=>1' from generate_series(1, 50) g",
        )
        .await
        .expect("source with extensions");
    let dir = tempfile::tempdir().expect("tmp");
    let (report, junit) = (dir.path().join("report"), dir.path().join("junit.xml"));
    let all = Run::new("upgrade")
        .arg("--quiet")
        .report(&report)
        .junit(&junit)
        .var("database_url", pg.url())
        .var("provider", "docker")
        .env("PGDRILL_DOCKER_IMAGE", "pgdrill/postgres-local:{major}")
        .expect(0)
        .all();
    assert_eq!(status_of(&junit_cases(&junit), "schema"), "passed", "{all}");
    pg.stop().await;
}

/// Regression: `run --rto D` on a drill changed only the whole run's wall-clock budget while
/// the drill's own RTO kept its 600 s target, so report.json held two contradictory RTOs. It
/// now sets the drill's recovery objective; the run's budget has its own flag, `--budget`.
#[test]
fn run_rto_sets_the_drills_recovery_objective_and_budget_the_runs() {
    let Some((_dir, report, junit)) = drill_paths() else { return };
    drill(
        "disaster-recovery",
        &report,
        &junit,
        &["scale=1", "keep_writing=0s", "jobs=1"],
        &["--rto", "7m", "--budget", "2h"],
        0,
    );
    let c = read_json(&report.join("report.json"));
    let objectives = c["objectives"].as_array().cloned().unwrap_or_default();
    let target = |pred: &dyn Fn(&str) -> bool| {
        objectives.iter().find(|o| o["name"].as_str().is_some_and(pred)).map(|o| o["target_s"].clone())
    };
    assert_eq!(target(&|n| n == "RTO").and_then(|t| t.as_f64()), Some(420.0), "{objectives:?}");
    assert_eq!(target(&|n| n.contains("budget")).and_then(|t| t.as_f64()), Some(7200.0), "{objectives:?}");
}

/// Issue 45, case 5: `--rto` had two meanings: a drill's recovery objective, and on a
/// runbook without a `drill.rto` step (verify, backup) the whole run's budget. It has one:
/// such a runbook refuses `--rto` (exit 2, naming `--budget`), and a fleet's `rto` reaches
/// each run as the flag its runbook means: `--rto` for a drill, `--budget` for the others.
#[test]
fn run_rto_on_a_runbook_without_a_recovery_objective_silently_became_its_budget() {
    let out = Run::new("verify").arg("--rto").arg("10m").var("storage", "/nonexistent").var("database", "app").raw();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--rto 10m: runbook verify measures no recovery time (it has no drill.rto step)")
            && text(&out.stderr).contains("its whole run's wall-clock budget is --budget 10m"),
        "{}",
        text(&out.stderr)
    );
    let plan = |runbook: &str| {
        let out = pgdrill(&["fleet", "plan", "fixtures/fleet/pgdrill.fleet.yaml", runbook, "--index", "1"])
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(plan("verify").contains("pgdrill run verify --budget 30m"), "{}", plan("verify"));
    assert!(
        plan("disaster-recovery").contains("pgdrill run disaster-recovery --rto 30m"),
        "{}",
        plan("disaster-recovery")
    );
}

/// Issue 45, case 1: every shipped drill fails when its proof fails. The quickstart's proof
/// is its nested verify: a row deleted from the restored copy (a step injected into that
/// verify, before its `tables` check) must fail the quickstart (exit 1) naming the table,
/// not pass it with the nested runbook's failure inside.
#[test]
fn the_quickstart_drill_fails_when_the_restored_copy_differs() {
    let Some((dir, report, junit)) = drill_paths() else { return };
    let verify = pgdrill::testkit::shipped::all().iter().find(|s| s.name == "verify").expect("verify").text;
    let tables = "      - id: tables\n        after: restore\n";
    assert!(verify.contains(tables), "verify's tables check follows its restore");
    let injected = "      - id: injected\n        after: restore\n        uses: sql.exec\n        with: { url: \"{{ let.scratch }}\", sql: \"delete from erp.orders where ctid in (select ctid from erp.orders limit 1)\" }\n      - id: tables\n        after: injected\n";
    let verify_rb = written(dir.path().join("verify-injected.yaml"), verify.replace(tables, injected));
    let quickstart = pgdrill::testkit::shipped::all().iter().find(|s| s.name == "quickstart").expect("quickstart").text;
    assert!(quickstart.contains("      path: verify\n"));
    let rb = dir.path().join("quickstart-injected.yaml");
    std::fs::write(&rb, quickstart.replace("      path: verify\n", &format!("      path: {}\n", verify_rb.display())))
        .expect("write");
    let all = drill(rb.to_str().unwrap_or_default(), &report, &junit, &["scale=1", "jobs=1"], &[], 1);
    assert_eq!(status_of(&junit_cases(&junit), "tables"), "failure", "{all}");
    assert!(all.contains("erp.orders"), "the difference is named: {all}");
    assert_eq!(read_json(&report.join("report.json"))["outcome"], "failed");
}

/// Issue 45, case 1, for the A/B drill: record A removed after the restore (a restore that
/// lost data) fails `a_exists` and the drill (exit 1).
#[test]
fn the_ab_drill_fails_when_the_restored_copy_differs() {
    let Some((dir, report, junit)) = drill_paths() else { return };
    let injected = "  - id: injected\n    uses: sql.exec\n    with: { url: \"{{ steps.server.outputs.url }}\", sql: \"delete from records where name = 'A'\" }\n";
    let rb = injected_after(dir.path(), "ab", "restore", injected);
    let all = drill(rb.to_str().unwrap_or_default(), &report, &junit, &[], &["--yes"], 1);
    assert!(all.contains("step `a_exists` failed"), "{all}");
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "a_exists"), "failure", "{cases:?}");
    assert_eq!(read_json(&report.join("report.json"))["outcome"], "failed");
}
