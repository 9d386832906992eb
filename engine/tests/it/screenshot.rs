//! The HTML report as people see it (issue 40): headless chromium renders a drill's
//! report.html and the history page (`pgdrill report DIR --html`), a screenshot of each is
//! kept under target/ (its path printed), and the rendered DOM is measured by a small script
//! added to a test-only copy of each page: every chart is drawn with one point per run inside
//! its frame and, for RTO and RPO, its dashed target line; no table and no chart is wider
//! than the page; no number in a table carries float noise.
//!
//! Chromium runs with a private profile directory in its own process group, which is killed
//! when it has written its output or overrun its bound, so no browser outlives the test.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::*;

/// The page widths the report is judged at: a laptop's browser window (also the
/// screenshots'), and half of it (a window beside another, a phone held sideways).
const WIDTH: u32 = 1024;
const NARROW: u32 = 600;

/// Measures the rendered page and writes the result, as JSON, into `<pre id="pgdrill-measure">`
/// (measured before that element is added, so it cannot widen the page it measures).
const MEASURE: &str = r#"<script>
(function () {
  var root = document.documentElement;
  var out = { viewport: root.clientWidth, scroll_width: root.scrollWidth, tables: [], charts: [], numbers: [] };
  var box = function (e) { var r = e.getBoundingClientRect(); return { left: r.left, top: r.top, right: r.right, bottom: r.bottom, width: r.width, height: r.height }; };
  document.querySelectorAll('table').forEach(function (t) {
    var b = box(t);
    out.tables.push({ first: (t.rows[0] ? t.rows[0].textContent : '').slice(0, 60), left: b.left, right: b.right });
    t.querySelectorAll('td').forEach(function (td) {
      var s = td.textContent.trim();
      if (/^-?[0-9]+\.[0-9]+( s)?$/.test(s)) { out.numbers.push(s); }
    });
  });
  document.querySelectorAll('figure.chart').forEach(function (f) {
    var cap = f.querySelector('figcaption');
    var svg = f.querySelector('svg');
    var c = { title: cap ? cap.textContent : '', svg: null };
    if (svg) {
      var s = box(svg);
      var inside = function (b) { return b.left >= s.left - 0.5 && b.right <= s.right + 0.5 && b.top >= s.top - 0.5 && b.bottom <= s.bottom + 0.5; };
      c.svg = s;
      c.points = 0; c.points_inside = 0; c.red_points = 0;
      svg.querySelectorAll('circle').forEach(function (p) {
        var b = box(p);
        c.points += 1;
        if (b.width > 0 && inside(b)) { c.points_inside += 1; }
        if (getComputedStyle(p).fill === 'rgb(204, 0, 0)') { c.red_points += 1; }
      });
      var line = svg.querySelector('polyline:not(.target)');
      c.line = line ? { vertices: line.points.numberOfItems, inside: inside(box(line)) } : null;
      var t = svg.querySelector('polyline.target');
      c.target = t ? { length: t.getTotalLength(), inside: inside(box(t)), dashed: getComputedStyle(t).strokeDasharray !== 'none', stroke: getComputedStyle(t).stroke } : null;
    }
    out.charts.push(c);
  });
  var pre = document.createElement('pre');
  pre.id = 'pgdrill-measure';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"#;

/// A chromium child in a process group of its own, killed with the whole group on drop.
struct Browser {
    child: std::process::Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id() as i32;
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        // The browser's helpers, orphaned, came to this process (a subreaper): reap every
        // one of the group, so none lingers even as a zombie where PID 1 does not reap.
        while nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(-pgid), None).is_ok() {}
    }
}

/// Run headless chromium on `page` with `args` (`--screenshot=...`, `--dump-dom`), a private
/// profile and a bound of two minutes; its stdout. The browser's whole process group is gone
/// when this returns, which is checked.
fn chromium(page: &Path, width: u32, args: &[String]) -> String {
    let profile = tempfile::tempdir().expect("a profile directory");
    let mut cmd = std::process::Command::new("chromium");
    cmd.args(["--headless", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},2400"))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .process_group(0);
    // Chromium's sandbox refuses to start as root, where CI containers run the tests.
    if nix::unistd::geteuid().is_root() {
        cmd.arg("--no-sandbox");
    }
    // Chromium's helper processes outlive its main one for a moment; as a subreaper this
    // process inherits them and can wait for each (nextest runs each test in a process of
    // its own).
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let child = cmd.spawn().expect("chromium starts");
    let pgid = child.id() as i32;
    let mut browser = Browser { child };
    let mut stdout = browser.child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        s
    });
    let started = Instant::now();
    let status = loop {
        if let Some(s) = browser.child.try_wait().expect("wait for chromium") {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(120) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(browser);
    let out = reader.join().expect("reader");
    assert!(status.is_some_and(|s| s.success()), "chromium on {} ended {status:?}", page.display());
    // Nothing of the browser's group outlived it (a renderer or a crash handler).
    let left = std::process::Command::new("pgrep").args(["-g", &pgid.to_string()]).output().expect("pgrep");
    assert!(text(&left.stdout).trim().is_empty(), "chromium left processes behind: {}", text(&left.stdout));
    out
}

/// The page's measurements: the page copied beside itself with the measuring script added
/// before `</body>` (the report itself runs no script), rendered, its DOM read back.
fn measure(page: &Path, width: u32) -> serde_json::Value {
    let html = std::fs::read_to_string(page).expect("page");
    assert!(!html.contains("<script"), "{} runs a script of its own", page.display());
    let probe = page.with_extension("measure.html");
    std::fs::write(&probe, html.replacen("</body>", &format!("{MEASURE}</body>"), 1)).expect("probe page");
    let dom = chromium(&probe, width, &["--dump-dom".into()]);
    let json = dom
        .split("<pre id=\"pgdrill-measure\">")
        .nth(1)
        .and_then(|s| s.split("</pre>").next())
        .unwrap_or_else(|| panic!("the measuring script did not run on {}:\n{dom}", page.display()));
    let json = json.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// A screenshot of `page` kept under target/ (where CI keeps the test output), its path
/// printed; checked to be a PNG of the page's width.
fn screenshot(page: &Path, name: &str) -> PathBuf {
    let dir = made_dir(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots"));
    let png = dir.join(name);
    let _ = std::fs::remove_file(&png);
    chromium(page, WIDTH, &[format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("no screenshot at {}: {e}", png.display()));
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 24, "{} is not a PNG", png.display());
    let width = u32::from_be_bytes(bytes[16..20].try_into().expect("IHDR width"));
    assert_eq!(width, WIDTH, "{}: the screenshot is not the window's width", png.display());
    println!("screenshot of {}: {}", page.display(), png.display());
    png
}

/// What every page must show: no horizontal scrolling, no table or chart past the page's
/// right edge, every chart drawn with `runs` points inside its frame and a line through them,
/// RTO's and RPO's with their red dashed target line inside the frame, and numbers in tables
/// without float noise (at most three decimals).
fn check_page(what: &str, m: &serde_json::Value, runs: u64, red: &[(&str, u64)]) {
    let viewport = m["viewport"].as_f64().expect("viewport");
    assert!(
        m["scroll_width"].as_f64().expect("scroll width") <= viewport,
        "{what}: the page scrolls sideways ({} px wide in {viewport} px): {m}",
        m["scroll_width"]
    );
    for t in m["tables"].as_array().expect("tables") {
        assert!(t["right"].as_f64().expect("right") <= viewport, "{what}: a table is wider than the page: {t}");
    }
    for n in m["numbers"].as_array().expect("numbers") {
        let n = n.as_str().expect("a number").trim_end_matches(" s");
        let decimals = n.split('.').nth(1).map_or(0, str::len);
        assert!(decimals <= 3, "{what}: a table shows float noise: {n}");
    }
    let charts = m["charts"].as_array().expect("charts");
    assert_eq!(charts.len(), 4, "{what}: RTO, RPO, duration and size charts: {m}");
    for c in charts {
        let title = c["title"].as_str().expect("title");
        assert!(c["svg"].is_object(), "{what}: {title} is not drawn: {c}");
        assert!(c["svg"]["right"].as_f64().expect("right") <= viewport, "{what}: {title} is wider than the page: {c}");
        assert_eq!(c["points"].as_u64(), Some(runs), "{what}: {title}: one point per run: {c}");
        assert_eq!(c["points_inside"].as_u64(), Some(runs), "{what}: {title}: a point is outside its frame: {c}");
        assert_eq!(c["line"]["vertices"].as_u64(), Some(runs), "{what}: {title}: the line misses a run: {c}");
        assert_eq!(c["line"]["inside"].as_bool(), Some(true), "{what}: {title}: the line leaves its frame: {c}");
        let expected_red = red.iter().find(|(t, _)| title.starts_with(t)).map_or(0, |(_, n)| *n);
        assert_eq!(c["red_points"].as_u64(), Some(expected_red), "{what}: {title}: runs over their target: {c}");
        if title.starts_with("RTO") || title.starts_with("RPO") {
            let t = &c["target"];
            assert!(t.is_object(), "{what}: {title} has no target line: {c}");
            assert!(t["length"].as_f64().expect("length") > 0.0, "{what}: {title}: the target line is empty: {c}");
            assert_eq!(t["inside"].as_bool(), Some(true), "{what}: {title}: the target line leaves its frame: {c}");
            assert_eq!(t["dashed"].as_bool(), Some(true), "{what}: {title}: the target line is not dashed: {c}");
            assert_eq!(t["stroke"].as_str(), Some("rgb(204, 0, 0)"), "{what}: {title}: the target is not red: {c}");
        }
    }
}

/// One earlier run's line of history.jsonl, as pgdrill writes it.
fn history_line(at: &str, rto: f64, rto_target: f64, rpo: f64, size: u64) -> String {
    serde_json::json!({
        "backup_age_s": null, "backup_age_target_s": null,
        "backup_sha256": "39d486231b94495dd854793863e5379bfb583f6fbc42a28cf536fd50d4850a50",
        "backup_size_bytes": size, "duration_s": rto + 20.0, "exit_code": 0, "finished_at": at,
        "kind": "drill", "outcome": "passed", "rpo_s": rpo, "rpo_target_s": 86400.0, "rto_s": rto,
        "rto_target_s": rto_target, "runbook": "disaster-recovery", "schema": "pgdrill.history/1",
    })
    .to_string()
}

/// A drill's report.html and the history page, rendered by chromium and measured at a
/// laptop's width and at half of it, screenshots kept: six earlier runs (one over the RTO
/// target it had then, the target lowered since) and this run make seven points per chart.
#[test]
fn the_report_and_history_pages_render_in_chromium_with_every_chart_drawn_and_no_table_past_the_page() {
    if !require(on_path("chromium"), "chromium (Debian package, bash ci/setup.sh)")
        || !require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let report = made_dir(dir.path().join("report"));
    let earlier: Vec<String> = [
        ("2026-06-01T04:47:00Z", 41.0, 900.0, 3.1, 300_000),
        ("2026-07-01T04:47:00Z", 45.5, 900.0, 2.7, 310_000),
        ("2026-08-01T04:47:00Z", 1020.0, 900.0, 4.0, 320_000),
        ("2026-09-01T04:47:00Z", 38.2, 600.0, 3.3, 325_000),
        ("2026-10-01T04:47:00Z", 36.9, 600.0, 2.9, 327_000),
        ("2026-11-01T04:47:00Z", 39.4, 600.0, 3.0, 328_000),
    ]
    .iter()
    .map(|(at, rto, t, rpo, size)| history_line(at, *rto, *t, *rpo, *size))
    .collect();
    std::fs::write(report.join("history.jsonl"), earlier.join("\n") + "\n").expect("history");
    let rep = report.to_str().expect("utf-8");
    let out = Run::new("disaster-recovery")
        .arg("--quiet")
        .vars(&["provider=native", "scale=2"])
        .arg("--report")
        .arg(rep)
        .raw();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let history_page = dir.path().join("history.html");
    let out = run(&["report", rep, "--html", history_page.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));

    let red = [("RTO", 1)];
    for (what, page, png) in
        [("report.html", report.join("report.html"), "report.png"), ("the history page", history_page, "history.png")]
    {
        screenshot(&page, png);
        for width in [WIDTH, NARROW] {
            let m = measure(&page, width);
            check_page(&format!("{what} at {width} px"), &m, 7, &red);
        }
    }
}
