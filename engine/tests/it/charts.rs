//! The history as charts: every run's report.html carries inline SVG charts of RTO, RPO,
//! duration and size with their targets, is kept under its date (bounded by --keep), and
//! `pgdrill report DIR --html OUT` writes the same charts on a page of their own.

use crate::common::*;

/// Every `<svg>...</svg>` of a page, each checked as well-formed XML by Python's parser.
fn svgs_parse(html: &str) -> usize {
    let py = "import sys, re, xml.etree.ElementTree as ET\nh = open(sys.argv[1]).read()\nsvgs = re.findall(r'<svg.*?</svg>', h, re.S)\nfor s in svgs: ET.fromstring(s)\nprint(len(svgs))";
    let f = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(f.path(), html).expect("write");
    let out = std::process::Command::new("python3").args(["-c", py]).arg(f.path()).output().expect("python3");
    assert!(out.status.success(), "an SVG chart is not well-formed XML: {}", text(&out.stderr));
    text(&out.stdout).trim().parse().expect("count")
}

#[test]
fn reports_carry_svg_charts_of_the_history_and_dated_copies_are_bounded() {
    if !require(std::path::Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().to_str().expect("utf-8");
    for _ in 0..2 {
        let out = Run::new("disaster-recovery")
            .arg("--quiet")
            .var("provider", "native")
            .var("scale", "2")
            .arg("--report")
            .arg(report)
            .arg("--keep")
            .arg("1")
            .raw();
        assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(1100)); // dated names are to the second
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
    assert!(html.contains("History: the last 2 run(s) of disaster-recovery"), "{html}");
    assert_eq!(svgs_parse(&html), 4, "RTO, RPO, duration and size charts");
    assert!(!html.contains("<script"), "the page runs no script");
    let rto = html.split("<figure").find(|f| f.contains("RTO (recovery time)")).expect("RTO chart");
    let points = rto.split("stroke-width=\"2\" points=\"").nth(1).and_then(|p| p.split('"').next()).expect("polyline");
    assert_eq!(points.split(' ').count(), 2, "one point per run: {rto}");
    assert!(rto.contains("class=\"target\""), "the RTO target is drawn: {rto}");
    let dated: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report-") && n.ends_with(".html"))
        .collect();
    assert_eq!(dated.len(), 1, "--keep 1 keeps one dated report: {dated:?}");

    let page = dir.path().join("history.html");
    let out = run(&["report", report, "--html", page.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let page = std::fs::read_to_string(&page).expect("page");
    assert_eq!(svgs_parse(&page), 4);
}

fn dated_pages(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("report-") && n.ends_with(".html"))
        .collect();
    names.sort();
    names
}

/// Regression: dated copies were named to the second, so three runs in one second left one
/// page and the failed run's page, the auditor's file, was lost; and `--keep 0` deleted the
/// current run's page too. Names now carry the nanoseconds, and the current page stays.
#[test]
fn dated_reports_are_unique_per_run_and_keep_0_keeps_the_current_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = nightly_runbook(dir.path());
    let report = dir.path().join("report");
    let (rb, rep) = (rb.to_str().expect("utf-8"), report.to_str().expect("utf-8"));
    for fail in ["no", "yes", "no"] {
        let out = Run::new(rb).arg("--quiet").var("fail", fail).arg("--report").arg(rep).raw();
        assert_eq!(out.status.code(), Some(if fail == "no" { 0 } else { 1 }), "{}", text(&out.stdout));
    }
    let pages = dated_pages(&report);
    assert_eq!(pages.len(), 3, "one page per run: {pages:?}");
    let failed: Vec<&String> = pages
        .iter()
        .filter(|p| std::fs::read_to_string(report.join(p)).unwrap_or_default().contains("FAILED"))
        .collect();
    assert_eq!(failed.len(), 1, "the failed run's page is kept: {pages:?}");

    let out = run(&["run", rb, "--quiet", "--report", rep, "--keep", "0"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let pages = dated_pages(&report);
    assert_eq!(pages.len(), 1, "--keep 0 keeps only the current run's page: {pages:?}");
    let current = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert_eq!(std::fs::read_to_string(report.join(&pages[0])).expect("page"), current, "it is this run's page");
}

/// Regression: a run that ended with an environment error (exit 3: a server unreachable)
/// was recorded in the history as `failed`, a verdict on the backup it never reached. It is
/// `errored`, with its exit code, in the history and the compliance record.
#[test]
fn an_environment_error_is_recorded_in_the_history_as_errored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report");
    let out = Run::new("fixtures/runbooks/unreachable.yaml")
        .arg("--quiet")
        .var("url", "postgres://nobody@127.0.0.1:1/postgres?connect_timeout=2")
        .report(&report)
        .raw();
    assert_eq!(out.status.code(), Some(3), "{}{}", text(&out.stdout), text(&out.stderr));
    let history = std::fs::read_to_string(report.join("history.jsonl")).expect("history");
    let line: serde_json::Value = serde_json::from_str(history.lines().last().expect("a line")).expect("json");
    assert_eq!(line["outcome"], "errored", "{line}");
    assert_eq!(line["exit_code"], 3, "{line}");
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).expect("report.json")).expect("json");
    assert_eq!(c["outcome"], "errored", "{c}");
}

/// Regression: every point was coloured against the newest run's target, so a run that met
/// its 600 s target was drawn red against a later 0.1 s one. Each point is judged against
/// its own run's target.
#[test]
fn each_chart_point_is_coloured_against_its_own_runs_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = |at: &str, outcome: &str, rto: f64, target: f64| {
        serde_json::json!({"schema": "pgdrill.history/1", "kind": "drill", "finished_at": at, "runbook": "dr",
            "outcome": outcome, "duration_s": 10.0, "rto_s": rto, "rto_target_s": target, "rpo_s": 1.0, "rpo_target_s": 60.0})
        .to_string()
    };
    let history =
        [line("2026-12-01T00:00:00Z", "passed", 5.0, 600.0), line("2026-12-02T00:00:00Z", "failed", 0.5, 0.1)]
            .join("\n");
    std::fs::write(dir.path().join("history.jsonl"), history + "\n").expect("history");
    let page = dir.path().join("history.html");
    let out = run(&["report", dir.path().to_str().expect("utf-8"), "--html", page.to_str().expect("utf-8")]);
    assert!(page.exists(), "{}{}", text(&out.stdout), text(&out.stderr));
    let html = std::fs::read_to_string(&page).expect("page");
    let rto = html.split("<figure").find(|f| f.contains("RTO (recovery time)")).expect("RTO chart");
    let fills: Vec<&str> =
        rto.split("<circle").skip(1).filter_map(|c| c.split("fill=\"").nth(1)?.split('"').next()).collect();
    assert_eq!(fills, ["#036", "#c00"], "the first run met its own 600 s target, the second missed 0.1 s: {rto}");
    assert!(rto.contains("(target 10.0 min)") && rto.contains("(target 0.1 s)"), "{rto}");
}

/// Regression: the budget objective had `target_s: null`; the JUnit suite time counted the
/// run twice (the budget testcase carried the whole run's time); `<skipped/>` said nothing.
#[test]
fn budgets_carry_their_target_junit_counts_time_once_and_skips_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = written(dir.path().join("b.yaml"), "name: b\ntargets: { rto: 1h }\nsteps:\n  - id: work\n    uses: sleep\n    with: { duration: 200ms }\n  - id: never\n    when: false\n    uses: sleep\n    with: { duration: 1s }\n");
    let (report, junit) = (dir.path().join("report"), dir.path().join("j.xml"));
    let out = Run::new(&rb).arg("--quiet").report(&report).junit(&junit).raw();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).expect("report.json")).expect("json");
    let budget = c["objectives"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["name"].as_str().is_some_and(|n| n.contains("budget"))))
        .cloned()
        .expect("budget objective");
    assert_eq!(budget["target_s"].as_f64(), Some(3600.0), "{budget}");

    let xml = std::fs::read_to_string(&junit).expect("junit");
    let parsed = Junit::read(&junit);
    assert_eq!(parsed.suites.len(), 1, "{xml}");
    let sum: f64 = parsed.cases.iter().map(|c| c.time).sum();
    assert!((parsed.suites[0].1 - sum).abs() < 1e-6, "the suite's time is its testcases' sum: {xml}");
    let budget_case = parsed.cases.iter().find(|c| c.name.contains("rto ")).expect("budget testcase");
    assert_eq!(budget_case.time, 0.0, "the budget's testcase does not count the run again: {budget_case:?}");
    assert!(xml.contains("<skipped message=\"skipped: `when: false` is false\"/>"), "{xml}");
}
