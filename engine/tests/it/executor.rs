//! The executor's behaviour through the real binary: rollback order, finally, timeouts,
//! retries, signals, exit codes, nesting, and the reports that show them.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{pgdrill, read_json, root, run, steps_in, text, written, Run};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Steps of the first suite in run.json as (label, phase kind, outcome).
fn steps_of(run_json: &serde_json::Value, suite: usize) -> Vec<(String, String, String)> {
    steps_in(run_json, suite)
        .into_iter()
        .map(|s| (s.label, s.phase["kind"].as_str().unwrap_or_default().to_string(), s.outcome))
        .collect()
}

/// `run` given `--junit j.xml` and `--report r` in `t`, run to its end: its output, the JUnit
/// file and the report folder.
fn reported(t: &tempfile::TempDir, run: Run) -> (std::process::Output, std::path::PathBuf, std::path::PathBuf) {
    let (junit, report) = (t.path().join("j.xml"), t.path().join("r"));
    (run.junit(&junit).report(&report).raw(), junit, report)
}

/// Wait (at most 20 s, else fail with `never`) until the file `log` holds `text`.
#[track_caller]
fn wait_for_log(log: &std::path::Path, text: &str, never: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(log).unwrap_or_default().contains(text) {
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A step of run.json that came to `outcome` with a message that says `part`.
#[track_caller]
fn assert_step(step: &serde_json::Value, outcome: &str, part: &str) {
    assert_eq!(step["outcome"], outcome, "{step}");
    assert!(step["message"].as_str().unwrap_or_default().contains(part), "{step}");
}

/// JUnit with timings and timestamps masked, one element per line.
fn masked_junit(xml: &str) -> String {
    let time = regex::Regex::new(r#" time="[0-9.e-]+""#).expect("regex");
    let stamp = regex::Regex::new(r#" timestamp="[^"]+""#).expect("regex");
    let xml = time.replace_all(xml, r#" time="T""#);
    let xml = stamp.replace_all(&xml, r#" timestamp="TS""#);
    xml.replace("><", ">\n<") + "\n"
}

#[test]
fn third_step_failure_rolls_back_step_two_then_one_then_finally_everywhere() {
    let t = tmp();
    let log = t.path().join("order.log");
    let junit = t.path().join("junit.xml");
    let report = t.path().join("report");
    let out =
        Run::new("fixtures/runbooks/rollback-order.yaml").var("log", log.display()).junit(&junit).report(&report).raw();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));

    // What really ran, in order.
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["step1", "step2", "step3", "undo2", "undo1", "finally"]);

    // The terminal shows the same order.
    let stdout = text(&out.stdout);
    let pos = |needle: &str| stdout.find(needle).unwrap_or_else(|| panic!("`{needle}` in:\n{stdout}"));
    assert!(pos("FAILED       step3") < pos("rollback of step2: undo2"));
    assert!(pos("rollback of step2: undo2") < pos("rollback of step1: undo1"));
    assert!(pos("rollback of step1: undo1") < pos("finally: cleanup"));

    // run.json records every step with its outcome, in order.
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["schema"], "pgdrill.run/1");
    assert_eq!(rec["outcome"], "failed");
    let steps = steps_of(&rec, 0);
    let expect = [
        ("step1", "main", "passed"),
        ("step2", "main", "passed"),
        ("step3", "main", "failed"),
        ("step4", "main", "skipped"),
        ("undo2", "rollback", "passed"),
        ("undo1", "rollback", "passed"),
        ("cleanup", "finally", "passed"),
    ];
    let got: Vec<(&str, &str, &str)> = steps.iter().map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str())).collect();
    assert_eq!(got, expect);
    // Rolled back is a fact added to the steps that passed, not a replacement outcome.
    let facts: Vec<&str> =
        rec["suites"][0]["steps"].as_array().into_iter().flatten().filter_map(|s| s["rollback"].as_str()).collect();
    assert_eq!(facts, ["rolled_back", "rolled_back"]);

    // JUnit matches the checked-in expected file, timings masked.
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    let expected_path = root().join("fixtures/runbooks/rollback-order.junit.xml");
    let got = masked_junit(&xml);
    if std::env::var_os("PGDRILL_BLESS").is_some() {
        std::fs::write(&expected_path, &got).expect("bless");
    }
    assert_eq!(got, std::fs::read_to_string(&expected_path).unwrap_or_default());
}

#[test]
fn junit_is_read_back_by_junitparser() {
    let has_python = std::process::Command::new("python3")
        .args(["-c", "import junitparser"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require(has_python, "python3 with junitparser (pip install junitparser)") {
        return;
    }
    let t = tmp();
    let log = t.path().join("order.log");
    let junit = t.path().join("junit.xml");
    let out = Run::new("fixtures/runbooks/rollback-order.yaml").var("log", log.display()).junit(&junit).raw();
    assert_eq!(out.status.code(), Some(1));
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Skipped, Error
xml = JUnitXml.fromfile(sys.argv[1])
for suite in xml:
    for case in suite:
        kinds = [type(r).__name__ for r in case.result]
        print(f"{suite.name}|{case.classname}|{case.name}|{','.join(kinds) or 'pass'}")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, junit.to_str().unwrap_or_default()])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "junitparser failed: {}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert_eq!(
        lines,
        [
            "rollback-order|rollback-order|step1|pass",
            "rollback-order|rollback-order|step2|pass",
            "rollback-order|rollback-order|step3|Failure",
            "rollback-order|rollback-order|step4|Skipped",
            "rollback-order|rollback-order|rollback of step2: undo2|pass",
            "rollback-order|rollback-order|rollback of step1: undo1|pass",
            "rollback-order|rollback-order|finally: cleanup|pass",
        ]
    );
}

#[test]
fn a_step_past_its_timeout_is_stopped_and_its_processes_killed() {
    let t = tmp();
    let started = Instant::now();
    let out = run(&["run", "fixtures/runbooks/timeout.yaml", "--report", t.path().to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(20), "the timeout stopped the step");
    let rec = read_json(&t.path().join("run.json"));
    let steps = steps_of(&rec, 0);
    assert_eq!(steps[0], ("slow".into(), "main".into(), "timed_out".into()));
    assert_eq!(steps[1], ("after".into(), "finally".into(), "passed".into()));
    assert!(text(&out.stdout).contains("timed out after 1s"));
    assert!(!common::process_running("sleep 27.25"), "the timed-out step's child was killed");
}

#[test]
fn a_flaky_step_passes_on_retry_and_fails_when_retries_run_out() {
    let t = tmp();
    let counter = t.path().join("n");
    let report = t.path().join("r1");
    let out = Run::new("fixtures/runbooks/retry.yaml").var("counter", counter.display()).report(&report).raw();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["suites"][0]["steps"][0]["attempts"], 3);
    assert_eq!(
        text(&out.stdout).lines().filter(|l| l.trim_start().starts_with("retry ")).count(),
        2,
        "{}",
        text(&out.stdout)
    );

    let counter2 = t.path().join("m");
    let out = Run::new("fixtures/runbooks/retry.yaml").var("counter", counter2.display()).var("succeed_on", "10").raw();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("(after 4 attempts)"), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(&counter2).unwrap_or_default().trim(), "4");
}

#[test]
fn sigint_during_a_long_step_runs_rollbacks_and_finally_and_exits_non_zero() {
    let t = tmp();
    let log = t.path().join("log");
    let report = t.path().join("r");
    let mut child =
        Run::new("fixtures/runbooks/interrupt.yaml").var("log", log.display()).report(&report).spawn_quietly();
    wait_for_log(&log, "long", "the long step never started");
    std::thread::sleep(Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("signal");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["prepare", "long", "undo_prepare", "finally"]);
    assert!(!common::process_running("sleep 29.75"), "the interrupted step's child was killed");
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["outcome"], "interrupted");
    let long = &rec["suites"][0]["steps"][1];
    assert_eq!(long["error_kind"], "interrupted");
    assert!(long["message"].as_str().unwrap_or_default().contains("SIGINT"));
}

/// fixtures/runbooks/parallel.yaml run with its files in a new temporary folder and its
/// report in `r` there; `fail` makes its last group fail. The folder, the report and the output.
fn run_parallel_fixture(fail: bool) -> (tempfile::TempDir, std::path::PathBuf, std::process::Output) {
    let t = tmp();
    let report = t.path().join("r");
    let out = Run::new("fixtures/runbooks/parallel.yaml")
        .var("dir", t.path().display())
        .var("fail", fail)
        .report(&report)
        .raw();
    (t, report, out)
}

#[test]
fn steps_of_a_parallel_group_run_at_the_same_time_and_later_steps_read_their_outputs() {
    // Each of `left` and `right` waits for the other's file: in sequence the first would
    // give up and fail.
    let (t, report, out) = run_parallel_fixture(false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_to_string(t.path().join("both")).unwrap_or_default().trim(), "LR");
    let steps = steps_of(&read_json(&report.join("run.json")), 0);
    let outcome = |l: &str| steps.iter().find(|s| s.0 == l).map(|s| s.2.clone()).unwrap_or_default();
    assert_eq!(outcome("left"), "passed");
    assert_eq!(outcome("right"), "passed");
    assert_eq!(outcome("failing"), "skipped");
    assert_eq!(outcome("slow"), "passed");
}

#[test]
fn a_failing_step_cancels_its_running_siblings_and_rolls_back_the_group() {
    let (t, report, out) = run_parallel_fixture(true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("runbook parallel FAILED"), "{}", text(&out.stdout));
    let rec = read_json(&report.join("run.json"));
    let slow = rec["suites"][0]["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["label"] == "slow").cloned())
        .unwrap_or_default();
    assert_step(&slow, "skipped", "cancelled because step `failing` failed");
    assert!(!common::process_running("sleep 29.5"), "the cancelled sibling's process was killed");
    assert_eq!(std::fs::read_to_string(t.path().join("log")).unwrap_or_default().trim(), "undo_left");
}

#[test]
fn sigterm_is_handled_like_sigint() {
    let t = tmp();
    let log = t.path().join("log");
    let mut child = Run::new("fixtures/runbooks/interrupt.yaml")
        .var("log", log.display())
        .command()
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    wait_for_log(&log, "long", "the long step never started");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("signal");
    let status = child.wait().expect("wait");
    assert_ne!(status.code(), Some(0));
    assert!(std::fs::read_to_string(&log).unwrap_or_default().contains("undo_prepare\nfinally"));
}

#[test]
fn a_secret_never_appears_in_stdout_stderr_junit_or_run_json() {
    let secret = "s3cr3t V@lue/with:chars";
    let encoded = "s3cr3t%20V%40lue%2Fwith%3Achars";
    let t = tmp();
    let junit = t.path().join("j.xml");
    let report = t.path().join("r");
    let out = Run::new("fixtures/runbooks/secrets.yaml")
        .junit(&junit)
        .report(&report)
        .command()
        .env("PGDRILL_TEST_TOKEN", secret)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "the last step fails on purpose");
    let junit_text = std::fs::read_to_string(&junit).unwrap_or_default();
    let json_text = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    let plan =
        pgdrill(&["plan", "fixtures/runbooks/secrets.yaml"]).env("PGDRILL_TEST_TOKEN", secret).output().expect("plan");
    for (name, body) in [
        ("stdout", text(&out.stdout)),
        ("stderr", text(&out.stderr)),
        ("junit", junit_text.clone()),
        ("run.json", json_text.clone()),
        ("plan", text(&plan.stdout)),
    ] {
        assert!(!body.contains(secret), "{name} leaks the secret:\n{body}");
        assert!(!body.contains(encoded), "{name} leaks the URL-encoded secret:\n{body}");
    }
    // The steps really did use it: the masked form is there.
    assert!(junit_text.contains("token is ********"), "{junit_text}");
    assert!(json_text.contains("postgres://app:********@127.0.0.1:1/app"), "{json_text}");
}

#[test]
fn a_missing_secret_or_variable_is_invalid_input() {
    let out =
        pgdrill(&["run", "fixtures/runbooks/secrets.yaml"]).env_remove("PGDRILL_TEST_TOKEN").output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("environment variable PGDRILL_TEST_TOKEN is not set"), "{}", text(&out.stderr));

    let out = run(&["run", "fixtures/runbooks/rollback-order.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("pass --var log=VALUE"), "{}", text(&out.stderr));

    let out = Run::new("fixtures/runbooks/rollback-order.yaml").var("lg", "/tmp/x").raw();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `log`?"), "{}", text(&out.stderr));
}

#[test]
fn an_unreachable_server_is_an_environment_error() {
    let out = run(&["run", "fixtures/runbooks/unreachable.yaml"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("cannot connect to postgres://nobody@127.0.0.1:1/none"));
}

#[test]
fn a_nested_runbook_is_its_own_suite_and_its_outputs_are_readable() {
    let t = tmp();
    let (out, junit, report) = reported(&t, Run::new("fixtures/runbooks/nested-parent.yaml"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["suites"][1]["name"], "nested-child");
    assert_eq!(rec["suites"][1]["parent"], 0);
    assert_eq!(rec["suites"][0]["steps"][1]["outputs"]["stdout"], "child said hello from the child");
    assert_eq!(steps_of(&rec, 1)[1].2, "skipped");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert_eq!(xml.matches("<testsuite ").count(), 2);
    assert!(xml.contains(r#"<testsuite id="1" name="nested-child""#), "{xml}");
}

#[test]
fn plan_renders_known_values_and_keeps_later_ones_as_written() {
    let s = Run::cli(["plan", "fixtures/runbooks/nested-parent.yaml"]).expect(0).stdout;
    assert!(s.contains("child [runbook]"), "{s}");
    assert!(s.contains("{{ steps.child.steps.say.stdout }}"), "{s}");
    let out = Run::cli(["plan", "fixtures/runbooks/rollback-order.yaml"]).var("log", "/var/tmp/x.log").raw();
    assert!(text(&out.stdout).contains("/var/tmp/x.log"), "{}", text(&out.stdout));
    assert!(!std::path::Path::new("/var/tmp/x.log").exists(), "plan has no side effects");
}

#[test]
fn steps_lists_the_catalogue_with_fields() {
    let out = run(&["steps"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    for kind in ["sql.exec", "sql.assert", "shell.run", "http.check", "sleep", "runbook"] {
        assert!(s.lines().any(|l| l == kind), "{kind} listed:\n{s}");
    }
    assert!(s.contains("body_contains"));
    let out = run(&["steps", "sql.asert"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("did you mean `sql.assert`?"));
}

#[test]
fn steps_json_lists_every_kind_with_typed_fields_and_outputs() {
    let out = run(&["steps", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("steps --json is JSON");
    let kinds = list.as_array().expect("a list of kinds");
    let text_form = text(&run(&["steps"]).stdout);
    for k in kinds {
        let name = k["name"].as_str().expect("name");
        assert!(text_form.lines().any(|l| l == name), "{name} is in the text catalogue too");
        assert!(!k["summary"].as_str().unwrap_or_default().is_empty(), "{name} has a summary");
    }
    let shell = kinds.iter().find(|k| k["name"] == "shell.run").expect("shell.run listed");
    let argv = shell["with"].as_array().and_then(|w| w.iter().find(|f| f["name"] == "argv")).expect("argv field");
    assert_eq!(argv["type"], "list of strings");
    assert_eq!(argv["required"], false);
    let outputs: Vec<&str> =
        shell["outputs"].as_array().expect("outputs").iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(outputs, ["stdout", "stderr", "exit_code"]);
    let one = run(&["steps", "sleep", "--json"]);
    let one: serde_json::Value = serde_json::from_slice(&one.stdout).expect("JSON");
    assert_eq!(one.as_array().map(Vec::len), Some(1));
    assert_eq!(one[0]["with"][0]["name"], "duration");
}

/// A field that is wrong only once rendered is located by its path in the `with:` block (the
/// executor reads the error's path, not its text), and nothing is retried. (The value comes
/// from an earlier step's output: one from the variables is refused before any step runs.)
#[test]
fn rendered_field_error_names_runbook_step_and_field() {
    let dir = tmp();
    let rb = written(dir.path().join("late.yaml"), "name: late\nvars:\n  d: ~\nsteps:\n  - id: say\n    uses: shell.run\n    with: { argv: [echo, \"{{ vars.d }}\"] }\n  - id: nap\n    uses: sleep\n    with:\n      duration: \"{{ steps.say.outputs.stdout }}\"\n    retry: { count: 3, delay: 10ms }\n");
    let report = dir.path().join("r");
    let out = Run::new(&rb).var("d", "soon").report(&report).raw();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("runbook `late`, step `nap`, field `with`: field `duration`:"), "{all}");
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["suites"][0]["steps"][1]["attempts"], 1, "an invalid field is not retried");
}

/// fixtures/runbooks/nested-interrupt-parent.yaml in `mode`, logging to `log`.
fn nested_interrupt(mode: &str, log: &std::path::Path, report: &std::path::Path) -> std::process::Command {
    Run::new("fixtures/runbooks/nested-interrupt-parent.yaml")
        .var("log", log.display())
        .var("mode", mode)
        .report(report)
        .command()
}

/// The child's rollback and `finally` ran, then the parent's, and the child's suite says how
/// it ended.
fn assert_child_wound_down_first(log: &std::path::Path, report: &std::path::Path, child_outcome: &str) {
    let ran = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(
        ran.lines().collect::<Vec<_>>(),
        ["parent_before", "one", "undo_one", "child_finally", "undo_parent_before", "parent_finally"],
        "{ran}"
    );
    let rec = read_json(&report.join("run.json"));
    assert_eq!(rec["suites"][1]["name"], "nested-interrupt-child");
    assert_eq!(rec["suites"][1]["outcome"], child_outcome, "{}", rec["suites"][1]);
    let child = steps_of(&rec, 1);
    assert!(child.contains(&("undo_one".into(), "rollback".into(), "passed".into())), "{child:?}");
    assert!(child.contains(&("child_finally".into(), "finally".into(), "passed".into())), "{child:?}");
}

/// `signal` to a run of the nested fixture once the child's first step ran.
fn signal_during_a_nested_runbook(signal: nix::sys::signal::Signal, name: &str) {
    let t = tmp();
    let (log, report) = (t.path().join("log"), t.path().join("r"));
    let mut child = nested_interrupt("signal", &log, &report).stdout(Stdio::null()).spawn().expect("spawn");
    wait_for_log(&log, "one", "the child's first step never ran");
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).expect("signal");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert_child_wound_down_first(&log, &report, "interrupted");
    let rec = read_json(&report.join("run.json"));
    let nest = rec["suites"][0]["steps"].as_array().and_then(|a| a.iter().find(|s| s["label"] == "nest").cloned());
    let nest = nest.unwrap_or_default();
    assert_eq!(nest["error_kind"], "interrupted", "{nest}");
    let wait = &rec["suites"][1]["steps"][1];
    assert!(wait["message"].as_str().unwrap_or_default().contains(&format!("interrupted by {name}")), "{wait}");
}

#[test]
fn sigint_during_a_nested_runbook_runs_the_childs_rollbacks_and_finally_before_the_parents() {
    signal_during_a_nested_runbook(nix::sys::signal::Signal::SIGINT, "SIGINT");
}

#[test]
fn sigterm_during_a_nested_runbook_runs_the_childs_rollbacks_and_finally_before_the_parents() {
    signal_during_a_nested_runbook(nix::sys::signal::Signal::SIGTERM, "SIGTERM");
}

/// [`nested_interrupt`] `case` run to its end: exit 1, the child wound down first; its run.json.
fn nested_run_failed(case: &str) -> serde_json::Value {
    let t = tmp();
    let (log, report) = (t.path().join("log"), t.path().join("r"));
    let out = nested_interrupt(case, &log, &report).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert_child_wound_down_first(&log, &report, "interrupted");
    read_json(&report.join("run.json"))
}

/// The parent's step `label` in run.json `rec` (null when it has none).
fn parent_step(rec: &serde_json::Value, label: &str) -> serde_json::Value {
    rec["suites"][0]["steps"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["label"] == label).cloned())
        .unwrap_or_default()
}

#[test]
fn a_nested_runbook_past_its_steps_timeout_runs_its_rollbacks_and_finally_before_the_parents() {
    let rec = nested_run_failed("timeout");
    let timed = parent_step(&rec, "nest_timed");
    assert_eq!(timed["outcome"], "timed_out", "{timed}");
    let wait = &rec["suites"][1]["steps"][1];
    assert!(wait["message"].as_str().unwrap_or_default().contains("the timeout of step `nest_timed`"), "{wait}");
}

#[test]
fn a_failing_sibling_of_a_nested_runbook_lets_the_child_roll_back_and_finish_first() {
    let rec = nested_run_failed("sibling");
    let beside = parent_step(&rec, "nest_beside");
    assert_step(&beside, "skipped", "step `failing` failed");
}

#[test]
fn a_runbook_nesting_itself_through_a_template_stops_at_the_limit_and_every_level_unwinds() {
    let t = tmp();
    let log = t.path().join("log");
    let out = Run::new("fixtures/runbooks/nests-itself-templated.yaml").var("log", log.display()).raw();
    // Invalid input, not a crash (a stack overflow aborted with 134 and ran nothing after).
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("runbooks nest deeper than 16 levels"), "{}", text(&out.stdout));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    for what in ["level", "undo", "finally"] {
        assert_eq!(ran.lines().filter(|l| *l == what).count(), 16, "{what} at every level:\n{ran}");
    }
}

#[test]
fn a_runbook_that_nests_itself_is_refused_by_run_before_anything_runs() {
    let ran = Run::new("fixtures/invalid/nests-cycle-b.yaml").expect(2);
    let err = ran.stderr;
    assert!(err.contains("runbook `nests-cycle-b` nests itself"), "{err}");
    assert!(
        err.contains("fixtures/invalid/nests-cycle-b.yaml:5:19 -> fixtures/invalid/nests-cycle-a.yaml:10:13"),
        "{err}"
    );
    assert!(!ran.stdout.contains("runbook nests-cycle"), "nothing ran: {}", ran.stdout);
}

#[test]
fn deeply_nested_yaml_is_rejected_as_invalid_without_parsing_it() {
    // 200 KB each: flow brackets, compact block sequences, and indentation.
    let t = tmp();
    let cases = [
        ("flow", format!("name: x\nsteps: {}{}\n", "[".repeat(100_000), "]".repeat(100_000))),
        ("block", format!("name: x\nsteps:\n{}x\n", "- ".repeat(100_000))),
        (
            "indent",
            format!("name: x\nsteps:\n{}", (0..600).map(|i| format!("{}a:\n", " ".repeat(i))).collect::<String>()),
        ),
    ];
    for (what, yaml) in cases {
        let f = written(t.path().join(format!("{what}.yaml")), yaml);
        let out = run(&["validate", f.to_str().unwrap_or_default()]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains("YAML nested deeper than 64 levels"), "{what}: {err}");
        assert!(err.len() < 2000, "{what}: the diagnostic shows a window of the line, not all of it");
    }
}

/// `script` run by python3 on `args`; its stdout, or `None` (a printed skip outside CI) when
/// python3 with junitparser is missing.
fn python(script: &str, args: &[&str]) -> Option<String> {
    let has = std::process::Command::new("python3")
        .args(["-c", "import junitparser, xml.etree.ElementTree"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !common::require(has, "python3 with junitparser (pip install junitparser)") {
        return None;
    }
    let out = std::process::Command::new("python3").arg("-c").arg(script).args(args).output().expect("python3");
    assert!(out.status.success(), "python: {}", text(&out.stderr));
    Some(text(&out.stdout))
}

#[test]
fn a_failed_step_that_is_rolled_back_stays_failed_and_a_failed_or_skipped_rollback_says_so() {
    let t = tmp();
    let (out, junit, report) = reported(&t, Run::new("fixtures/runbooks/rollback-truth.yaml"));
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);

    // run.json: outcomes stay what the steps did; the rollback is an added fact; identity
    // is the position, so the two `Same name` steps stay apart.
    let rec = read_json(&report.join("run.json"));
    let steps = rec["suites"][0]["steps"].as_array().cloned().unwrap_or_default();
    let by_path = |p: &str| steps.iter().find(|s| s["path"] == p).cloned().unwrap_or_default();
    assert_eq!(
        (by_path("steps[0]")["outcome"].clone(), by_path("steps[0]")["rollback"].clone()),
        ("failed".into(), "rolled_back".into())
    );
    assert_eq!(by_path("steps[0]")["label"], "Tolerated failure", "`name:` is displayed");
    assert_eq!(
        (by_path("steps[1]")["outcome"].clone(), by_path("steps[1]")["rollback"].clone()),
        ("passed".into(), "failed".into())
    );
    assert_eq!(
        (by_path("steps[2]")["outcome"].clone(), by_path("steps[2]")["rollback"].clone()),
        ("passed".into(), "skipped".into())
    );

    // JUnit: the tolerated failure is a failure; the shared name carries the position.
    let cases = common::junit_cases(&junit);
    let status = |n: &str| {
        cases.iter().find(|(c, _)| c == n).map(|(_, s)| s.clone()).unwrap_or_else(|| format!("absent in {cases:?}"))
    };
    assert_eq!(status("Tolerated failure"), "failure");
    assert_eq!(status("Same name [steps[1]]"), "passed");
    assert_eq!(status("Same name [steps[2]]"), "passed");
    assert_eq!(status("rollback of Same name: undo that fails"), "failure");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(xml.contains("its rollback FAILED after a later failure"), "{xml}");
    assert!(xml.contains("its rollback was skipped after a later failure"), "{xml}");

    // Terminal and final message: never "rolled back" for a failed or skipped rollback.
    assert!(stdout.contains("ROLLBACK FAILED Same name"), "{stdout}");
    assert!(stdout.contains("rollback skipped Same name"), "{stdout}");
    assert!(!stdout.contains("rolled back  Same name"), "{stdout}");
    assert!(stdout.contains("rolled back  Tolerated failure"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains("the rollback of step `Same name` (step 2) FAILED (step `undo that fails` failed"), "{last}");
    assert!(last.contains("the rollback of step `Same name` (step 3) was skipped"), "{last}");

    // The compliance report says the same.
    let md = std::fs::read_to_string(report.join("report.md")).unwrap_or_default();
    assert!(md.contains("| failed, rolled back |"), "{md}");
    assert!(md.contains("| passed, rollback FAILED |"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_table_name_with_control_characters_and_cdata_end_keeps_every_report_well_formed() {
    let Some(pg) = common::native_server("hostile").await else { return };
    let url = pg.url();
    let evil = "evil\u{1b}[31mred\u{7}bell]]>end\u{1}";
    common::exec(&url, &format!("create table \"{evil}\" (id int)")).await;
    let t = tmp();
    let (out, junit, report) = reported(&t, Run::new("fixtures/runbooks/hostile-names.yaml").var("url", url));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    // The terminal never receives ESC or BEL from data; it shows them visibly.
    assert!(!out.stdout.iter().any(|b| matches!(b, 0x1b | 0x07 | 0x01)), "{:?}", text(&out.stdout));
    assert!(text(&out.stdout).contains(r"evil\x1b[31mred\x07bell]]>end\x01"), "{}", text(&out.stdout));
    // The data really reached every report (so this test can fail).
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(xml.contains("bell]]"), "{xml}");
    let script = r#"
import sys, json, xml.etree.ElementTree as ET
from html.parser import HTMLParser
from junitparser import JUnitXml
root = ET.parse(sys.argv[1]).getroot()
for suite in JUnitXml.fromfile(sys.argv[1]):
    for case in suite:
        print("case", case.name, [type(r).__name__ for r in case.result])
print("text", "".join(root.itertext()))
json.load(open(sys.argv[2] + "/run.json")); json.load(open(sys.argv[2] + "/report.json"))
html = open(sys.argv[2] + "/report.html", encoding="utf-8").read()
bad = [c for c in html if ord(c) < 32 and c not in "\t\n\r"]
assert not bad, bad
HTMLParser().feed(html)
print("html ok", "bell]]&gt;end" in html)
"#;
    let Some(parsed) = python(script, &[junit.to_str().unwrap_or_default(), report.to_str().unwrap_or_default()])
    else {
        return;
    };
    assert!(parsed.contains("case names ['Failure']"), "{parsed}");
    // `]]>` survived the CDATA split intact.
    assert!(parsed.contains(r"evil\x1b[31mred\x07bell]]>end\x01"), "{parsed}");
    assert!(parsed.contains("html ok True"), "{parsed}");
    pg.stop().await;
}

/// `pgdrill ARGS` with its stdout closed before it writes anything, as `| head` does.
fn with_stdout_closed(args: &[&str]) -> std::process::Output {
    let mut child = pgdrill(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_instead_of_panicking() {
    let t = tmp();
    let storage = t.path().to_str().unwrap_or_default();
    for args in [
        vec!["backups", "list", "--storage", storage],
        vec!["steps"],
        vec!["validate", "runbooks/smoke.yaml"],
        vec!["plan", "fixtures/runbooks/nested-parent.yaml"],
        vec!["run", "fixtures/runbooks/nested-parent.yaml"],
    ] {
        let out = with_stdout_closed(&args);
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn an_error_about_a_name_holding_escape_sequences_does_not_drive_the_terminal() {
    let t = tmp();
    let f = written(t.path().join("evil.yaml"), "name: evil\nsteps:\n  - uses: \"sql.\\e]0;owned\\aexec\"\n");
    let out = run(&["validate", f.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!out.stderr.iter().any(|b| matches!(b, 0x1b | 0x07)), "{:?}", text(&out.stderr));
    assert!(text(&out.stderr).contains(r"unknown step kind `sql.\x1b]0;owned\x07exec`"), "{}", text(&out.stderr));
}

/// A failure points at its runbook line: in the terminal (`at FILE:LINE:COL`), at the end of
/// the JUnit failure message, and as `location` in run.json; a failed rollback step and a
/// failed finally step each at their own line, not their parent's.
#[test]
fn a_failure_points_at_its_runbook_line_in_the_terminal_junit_and_run_json() {
    let dir = tmp();
    let rb = written(dir.path().join("lines.yaml"), "name: lines\nsteps:\n  - id: first\n    uses: shell.run\n    with: { script: \"true\" }\n    rollback:\n      - id: undo\n        uses: shell.run\n        with: { script: \"exit 5\" }\n  - id: second\n    uses: shell.run\n    with: { script: \"exit 4\" }\nfinally:\n  - id: tidy\n    uses: shell.run\n    with: { script: \"exit 6\" }\n");
    let (junit, report) = (dir.path().join("j.xml"), dir.path().join("rep"));
    let out = Run::new(&rb).junit(&junit).report(&report).raw();
    assert_eq!(out.status.code(), Some(1));
    let file = rb.display().to_string();
    let stdout = text(&out.stdout);
    for (label, line, col) in [("second", 10, 5), ("undo", 7, 9), ("tidy", 14, 5)] {
        let at = format!("{file}:{line}:{col}");
        let shown = stdout.lines().skip_while(|l| !l.contains(&format!(" {label} [shell.run]"))).nth(1).unwrap_or("");
        assert_eq!(shown.trim(), format!("at {at}"), "{label}:\n{stdout}");
        let xml = std::fs::read_to_string(&junit).expect("junit");
        assert!(xml.contains(&format!("(at {at})\"")), "{label} in JUnit:\n{xml}");
    }
    let v = read_json(&report.join("run.json"));
    let steps = v["suites"][0]["steps"].as_array().expect("steps");
    let at = |label: &str| steps.iter().find(|s| s["label"] == label).map(|s| s["location"].clone());
    assert_eq!(at("first"), Some(serde_json::json!(format!("{file}:3:5"))), "{v}");
    assert_eq!(at("undo"), Some(serde_json::json!(format!("{file}:7:9"))), "{v}");
}

/// Regression: a panic inside a step (here forced by the debug-build hook) used to end the
/// process with Rust's exit code 101, skipping rollbacks and `finally`. It is now the step's
/// error: the rollbacks of the steps before it run in reverse, then `finally`, and the run
/// exits with a documented code.
#[test]
fn a_panic_in_a_step_still_rolls_back_and_runs_finally_and_never_exits_101() {
    let t = tmp();
    let log = t.path().join("order.log");
    let report = t.path().join("report");
    let out = Run::new("fixtures/runbooks/rollback-order.yaml")
        .var("log", log.display())
        .report(&report)
        .command()
        .env("PGDRILL_PANIC_IN_STEP", "steps[2]")
        .output()
        .expect("run pgdrill");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "stdout: {}\nstderr: {stderr}", text(&out.stdout));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["step1", "step2", "undo2", "undo1", "finally"]);
    let rec = read_json(&report.join("run.json"));
    let step3 = rec["suites"][0]["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["label"] == "step3"))
        .cloned()
        .unwrap_or_default();
    assert_step(&step3, "errored", "internal error");
}

/// Regression: `retry.backoff: 1e300` passed validate and panicked when the delay grew after
/// the first failure (exit 101, no `finally`); it is now refused before anything runs.
#[test]
fn a_huge_retry_backoff_is_refused_before_the_run_not_a_panic() {
    let t = tmp();
    let log = t.path().join("ran.log");
    let ran = log.display();
    let rb = written(
        t.path().join("backoff.yaml"),
        format!("name: backoff\nsteps:\n  - id: fails\n    uses: shell.run\n    with: {{ argv: [sh, -c, 'echo ran >> {ran}; exit 1'] }}\n    retry: {{ count: 1, delay: 1ms, backoff: 1e300 }}\n"),
    );
    let stderr = Run::new(&rb).expect(2).stderr;
    assert!(stderr.contains("retry backoff 1e300 must be a number from 1 to 100"), "{stderr}");
    assert!(!log.exists(), "the step ran although the runbook is invalid");
}

/// Regression: `shell.run` waited for end of file on stdout, which a daemon the script
/// started without redirecting (`app &`, `pg_ctl start` without `-l`) holds open: the step
/// lasted as long as the daemon, and with a `timeout` a script that exited 0 was reported
/// TIMED OUT. The step now ends with its script, keeps what the script wrote, and leaves the
/// daemon running.
#[test]
fn shell_run_ends_when_its_script_exits_though_a_daemon_holds_stdout() {
    let t = tmp();
    let pidfile = t.path().join("daemon.pid");
    let report = t.path().join("report");
    let pid = pidfile.display();
    let rb = written(
        t.path().join("daemon.yaml"),
        format!("name: daemon\nsteps:\n  - id: start\n    uses: shell.run\n    with: {{ script: 'echo before; sleep 30 & echo $! > {pid}; echo after' }}\n    timeout: 5s\n"),
    );
    let out = Run::new(&rb).arg("--quiet").report(&report).raw();
    let daemon = std::fs::read_to_string(&pidfile).unwrap_or_default().trim().parse::<i32>().ok();
    let daemon_alive = daemon.is_some_and(|p| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok());
    // Leave nothing behind, whatever the verdict.
    if let Some(p) = daemon {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    let rec = read_json(&report.join("run.json"));
    let step = &rec["suites"][0]["steps"][0];
    assert_eq!(step["outcome"], "passed", "{step}");
    assert_eq!(step["outputs"]["stdout"], "before\nafter", "{step}");
    assert!(daemon_alive, "the daemon the script started keeps running after the step");
}
