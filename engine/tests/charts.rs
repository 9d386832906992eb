//! The history as charts: every run's report.html carries inline SVG charts of RTO, RPO,
//! duration and size with their targets, is kept under its date (bounded by --keep), and
//! `pgdrill report DIR --html OUT` writes the same charts on a page of their own.

mod common;

use common::*;

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
        let out = run(&[
            "run",
            "disaster-recovery",
            "--quiet",
            "--var",
            "provider=native",
            "--var",
            "scale=2",
            "--report",
            report,
            "--keep",
            "1",
        ]);
        assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        std::thread::sleep(std::time::Duration::from_millis(1100)); // dated names are to the second
    }
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("report.html");
    assert!(html.contains("History: the last 2 run(s) of disaster-recovery"), "{html}");
    assert_eq!(svgs_parse(&html), 4, "RTO, RPO, duration and size charts");
    assert!(!html.contains("<script"), "the page runs no script");
    let rto = html.split("<figure").find(|f| f.contains("RTO (recovery time)")).expect("RTO chart");
    let points = rto.split("points=\"").nth(1).and_then(|p| p.split('"').next()).expect("polyline");
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
