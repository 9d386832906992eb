//! The runbook language through the real binary: `when` on a `parallel` group, `let:`
//! values, fields that keep the type of their one expression, a generic `assert:` on any
//! step's outputs, and `steps.x.outputs.y` kept apart from `steps.x.outcome` (with the old
//! `steps.x.y` still working and reported as deprecated by `validate`).

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::{junit_cases, read_json, run, status_of, steps_in, text, written, Run};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    written(dir.join(name), body)
}

/// The runbook `fixtures/runbook_language/NAME`, written as NAME into the test's folder `t`.
macro_rules! fixture {
    ($t:expr, $name:literal) => {
        write($t.path(), $name, include_str!(concat!("fixtures/runbook_language/", $name)))
    };
}

/// (label, outcome, message) of steps of run.json.
type Steps = Vec<(String, String, String)>;

/// (label, outcome, message) of every step of the first suite in run.json.
fn steps_of(run_json: &serde_json::Value) -> Vec<(String, String, String)> {
    steps_in(run_json, 0).into_iter().map(|s| (s.label, s.outcome, s.message.unwrap_or_default())).collect()
}

/// `run` given `--report` and `--junit` in `t`, which must exit `code`: (label, outcome,
/// message) of run.json's steps, and the JUnit cases.
#[track_caller]
fn reported(t: &tempfile::TempDir, run: Run, code: i32) -> (Steps, Vec<(String, String)>) {
    let (report, junit) = (t.path().join("report"), t.path().join("junit.xml"));
    let out = run.report(&report).junit(&junit).raw();
    assert_eq!(out.status.code(), Some(code), "stderr: {}", text(&out.stderr));
    (steps_of(&read_json(&report.join("run.json"))), junit_cases(&junit))
}

fn step<'a>(steps: &'a [(String, String, String)], label: &str) -> &'a (String, String, String) {
    steps.iter().find(|s| s.0 == label).unwrap_or_else(|| panic!("step `{label}` in {steps:?}"))
}

#[test]
fn parallel_group_when_false_skips_every_member_with_the_reason() {
    let t = tmp();
    let rb = fixture!(t, "group.yaml");
    let log = t.path().join("log");
    let (steps, cases) = reported(&t, Run::new(&rb).var("log", log.display()), 0);
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["first", "after-skipped-skipped"]);
    for member in ["a", "b"] {
        let (_, outcome, message) = step(&steps, member);
        assert_eq!(outcome, "skipped", "{steps:?}");
        assert!(message.contains("of its `parallel` group is false"), "{message}");
        assert!(message.contains("vars.go and steps.first.outcome == 'passed'"), "{message}");
    }
    assert_eq!(status_of(&cases, "a"), "skipped", "{cases:?}");
    assert_eq!(status_of(&cases, "b"), "skipped", "{cases:?}");

    // True: the group runs, both members pass.
    std::fs::remove_file(&log).ok();
    Run::new(&rb).var("log", log.display()).var("go", true).expect(0);
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines[1..3].sort_unstable();
    assert_eq!(lines, ["first", "a", "b", "after-passed-passed"]);
}

#[test]
fn parallel_group_when_is_shown_by_plan() {
    let t = tmp();
    let rb = fixture!(t, "group.yaml");
    let stdout = Run::cli(["plan"]).arg(&rb).var("log", "/dev/null").expect(0).stdout;
    let at = stdout.find("parallel (at the same time)").unwrap_or_else(|| panic!("{stdout}"));
    assert!(stdout[at..].contains("when: vars.go and steps.first.outcome == 'passed'"), "{stdout}");
}

const LETS: &str = include_str!("fixtures/runbook_language/lets.yaml");

#[test]
fn let_values_are_computed_once_from_vars_and_read_everywhere() {
    let t = tmp();
    let rb = fixture!(t, "lets.yaml");
    let log = t.path().join("log");
    Run::new(&rb).var("database", "erp").var("log", log.display()).expect(0);
    Run::new(&rb).var("database", "erp").var("target", "erp_copy").var("jobs", "3").var("log", log.display()).expect(0);
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["db-erp 4", "True 5", "db-erp_copy 6", "True 7"]);

    // plan shows the computed values and renders fields with them.
    let stdout = Run::cli(["plan"]).arg(&rb).var("database", "erp").var("log", log.display()).output().stdout;
    assert!(stdout.contains("let:\n  target: \"erp\"\n  label: \"db-erp\"\n  twice: 4\n"), "{stdout}");
    assert!(stdout.contains("echo db-erp 4 >>"), "{stdout}");
}

#[test]
fn let_errors_name_the_place_with_a_suggestion() {
    let t = tmp();
    let bad = LETS
        .replace("echo {{ let.label }}", "echo {{ let.lable }}")
        .replace("  label: \"db-{{ let.target }}\"", "  label: \"db-{{ let.twice }}\"");
    let rb = write(t.path(), "bad.yaml", &bad);
    let stderr = Run::cli(["validate"]).arg(&rb).expect(2).stderr;
    assert!(stderr.contains("error: `let.twice` is defined at or after `let.label`"), "{stderr}");
    assert!(stderr.contains("error: `let.lable` is not defined"), "{stderr}");
    assert!(stderr.contains("did you mean `label`?"), "{stderr}");
    assert!(stderr.contains("bad.yaml:10:"), "{stderr}");
}

/// The `let:` extension: a value that reads a step's outputs is computed once that step has
/// run, keeps its type, and is read by the steps after it, their `when:`, a rollback and
/// `finally`; one that reads a skipped step is undefined, and a guarded `when:` skips on it.
#[test]
fn a_let_reading_a_step_output_is_computed_once_the_step_has_run() {
    let t = tmp();
    let log = t.path().join("log");
    let rb = write(
        t.path(),
        "late.yaml",
        &include_str!("fixtures/runbook_language/late.yaml").replace("{log}", &log.display().to_string()),
    );
    Run::cli(["validate"]).arg(&rb).expect(0);
    Run::new(&rb).expect(0);
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["hello HELLO", "finally hello"]);
    // plan shows such a value as written: it is known only during the run.
    let stdout = Run::cli(["plan"]).arg(&rb).output().stdout;
    assert!(stdout.contains("let:\n  word: \"{{ steps.first.outputs.stdout }}\"\n"), "{stdout}");
}

#[test]
fn a_whole_expression_keeps_its_type_and_text_fields_still_take_numbers() {
    let t = tmp();
    Run::new(fixture!(t, "typed.yaml")).expect(0);
}

const ASSERTS: &str = include_str!("fixtures/runbook_language/asserts.yaml");

#[test]
fn a_failed_assert_fails_the_step_naming_output_expected_and_actual() {
    let t = tmp();
    let rb = write(t.path(), "asserts.yaml", ASSERTS);
    let (steps, cases) = reported(&t, Run::new(&rb), 1);
    assert_eq!(step(&steps, "count").1, "passed", "{steps:?}");
    let (_, outcome, message) = step(&steps, "check");
    assert_eq!(outcome, "failed");
    assert!(message.contains("assert `stdout` >= 1000 failed: the output is `12`"), "{message}");
    assert_eq!(step(&steps, "never").1, "skipped");
    assert_eq!(status_of(&cases, "check"), "failure", "{cases:?}");
    let xml = std::fs::read_to_string(t.path().join("junit.xml")).unwrap_or_default();
    assert!(xml.contains("assert `stdout` &gt;= 1000 failed: the output is `12`"), "{xml}");

    // With enough rows it passes.
    Run::new(&rb).var("rows", 1200).expect(0);
}

#[test]
fn an_assert_on_an_output_the_step_does_not_have_is_invalid_with_a_suggestion() {
    let t = tmp();
    let rb = write(t.path(), "bad.yaml", &ASSERTS.replace("exit_code: \"== 0\"", "exit_cod: \"== 0\""));
    let stderr = Run::cli(["validate"]).arg(&rb).expect(2).stderr;
    assert!(stderr.contains("step kind `shell.run` has no output `exit_cod` to assert on"), "{stderr}");
    assert!(stderr.contains("did you mean `exit_code`?"), "{stderr}");
}

#[test]
fn outputs_and_outcome_are_kept_apart_and_the_old_form_still_works_with_a_warning() {
    let t = tmp();
    let rb = fixture!(t, "outputs.yaml");
    Run::new(&rb).expect(0);

    // A deprecated form is a warning: validate passes.
    let stderr = Run::cli(["validate"]).arg(&rb).expect(0).stderr;
    assert!(stderr.contains("warning: `steps.a.stdout` reads an output the old way (deprecated)"), "{stderr}");
    assert!(stderr.contains("outputs.yaml:9:"), "{stderr}");
    assert!(stderr.contains("write `steps.a.outputs.stdout`"), "{stderr}");
    assert_eq!(stderr.matches("warning:").count(), 1, "the new forms are not warned about: {stderr}");
}

#[test]
fn shipped_runbooks_and_drills_validate_without_deprecated_forms() {
    let root = common::root();
    let mut files = Vec::new();
    for dir in ["runbooks", "drills"] {
        for e in std::fs::read_dir(root.join(dir)).expect("dir").flatten() {
            if e.path().extension().is_some_and(|x| x == "yaml") {
                files.push(format!("{dir}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    files.sort();
    let mut args = vec!["validate"];
    args.extend(files.iter().map(String::as_str));
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains("warning:"), "{}", text(&out.stderr));
}

#[test]
fn plan_masks_a_key_that_reaches_a_key_field_through_let() {
    let t = tmp();
    let rb = fixture!(t, "let-key.yaml");
    let secret = "correct-horse-battery-staple-42";
    let stdout = Run::cli(["plan"]).arg(&rb).var("passphrase", secret).expect(0).stdout;
    assert!(stdout.contains("key:"), "{stdout}");
    assert!(!stdout.contains(secret), "the key reached the plan through `let`:\n{stdout}");
}

#[test]
fn a_parallel_group_when_that_cannot_be_evaluated_is_an_error_of_each_member_not_a_skip() {
    let t = tmp();
    let (steps, _) = reported(&t, Run::new(fixture!(t, "bad-when.yaml")), 2);
    for member in ["a", "b"] {
        let (_, outcome, message) = step(&steps, member);
        assert_eq!(outcome, "errored", "{steps:?}");
        assert!(message.contains("step 2, field `when`"), "{message}");
    }
}

/// `after:` waits for a sibling's end (its order in the file does not matter), a failed
/// sibling skips the steps waiting for it with the reason, and `fail_fast: false` lets the
/// rest of the group finish while the group, and the run, still fail.
#[test]
fn after_waits_for_a_sibling_and_fail_fast_false_lets_the_group_finish_but_still_fails() {
    let t = tmp();
    let rb = fixture!(t, "after.yaml");
    let log = t.path().join("log");
    let report = t.path().join("report");
    let go = |broken: bool| {
        std::fs::remove_file(&log).ok();
        let out = Run::new(&rb).var("log", log.display()).var("broken", broken).report(&report).raw();
        let lines: Vec<String> =
            std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect();
        (out, lines, steps_of(&read_json(&report.join("run.json"))))
    };

    let (out, lines, _) = go(false);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let at = |l: &str| lines.iter().position(|x| x == l).unwrap_or_else(|| panic!("{l} in {lines:?}"));
    assert!(at("slow") < at("waits"), "waits ran after slow ended: {lines:?}");
    assert!(at("slow") < at("on_broken"), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("next"), "{lines:?}");

    let (out, lines, steps) = go(true);
    assert_eq!(out.status.code(), Some(1), "a failed step fails the group and the run: {}", text(&out.stderr));
    assert_eq!(lines, ["slow", "waits"], "fail_fast: false let slow and waits finish; nothing after the group ran");
    assert_eq!(step(&steps, "slow").1, "passed", "{steps:?}");
    assert_eq!(step(&steps, "broken").1, "failed", "{steps:?}");
    let (_, outcome, message) = step(&steps, "on_broken");
    assert_eq!(outcome, "skipped", "{steps:?}");
    assert!(message.contains("`after: broken`, and `broken` failed"), "{message}");
    assert_eq!(step(&steps, "next").1, "skipped", "{steps:?}");

    // Without `fail_fast: false`, the failure stops the siblings still running.
    let fast = include_str!("fixtures/runbook_language/after.yaml")
        .replace("  - fail_fast: false\n    parallel:", "  - parallel:");
    std::fs::write(&rb, fast).expect("write");
    let (out, lines, steps) = go(true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(lines.is_empty(), "slow was stopped, waits never started: {lines:?}");
    for s in ["slow", "waits", "on_broken"] {
        assert_ne!(step(&steps, s).1, "passed", "{s}: {steps:?}");
    }
    // Regression (a CI flake): `waits` started once `slow` had been cancelled, and could run
    // before the cancellation reached it. A step still waiting when the group stops never starts.
    let (_, outcome, message) = step(&steps, "waits");
    assert_eq!(outcome, "skipped", "{steps:?}");
    assert!(message.contains("step `broken` failed") && message.contains("before it started"), "{message}");
}

/// Regression: a variable the README says takes a number accepted `abc`, and a value only a
/// step kind can reject (`disaster=flood` for `drill.disaster`'s mode) was found by that step,
/// after servers were started and fixtures loaded. Both are exit 2 before any step starts,
/// naming the field's file:line:col.
#[test]
fn bad_variable_values_are_refused_before_any_step_starts() {
    let out = Run::new("disaster-recovery").var("scale", "abc").raw();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--var scale: `abc` is not a number"), "{stderr}");

    let out = Run::new("disaster-recovery").var("disaster", "flood").arg("--quiet").raw();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The drill declares the values `disaster` takes: refused at its declaration (var_types).
    assert!(stderr.contains("--var disaster: `flood` is not one of drop_database, destroy_server"), "{stderr}");
    assert!(!text(&out.stdout).contains("workspace"), "no step ran: {}", text(&out.stdout));
}
