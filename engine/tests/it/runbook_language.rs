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

/// (label, outcome, message) of every step of the first suite in run.json.
fn steps_of(run_json: &serde_json::Value) -> Vec<(String, String, String)> {
    steps_in(run_json, 0).into_iter().map(|s| (s.label, s.outcome, s.message.unwrap_or_default())).collect()
}

fn step<'a>(steps: &'a [(String, String, String)], label: &str) -> &'a (String, String, String) {
    steps.iter().find(|s| s.0 == label).unwrap_or_else(|| panic!("step `{label}` in {steps:?}"))
}

const GROUP: &str = r#"
name: group-when
vars:
  go: false
  log: ~
steps:
  - id: first
    uses: shell.run
    with: { script: "echo first >> '{{ vars.log }}'" }
  - parallel:
      - id: a
        uses: shell.run
        with: { script: "echo a >> '{{ vars.log }}'" }
      - id: b
        uses: shell.run
        with: { script: "echo b >> '{{ vars.log }}'" }
    when: vars.go and steps.first.outcome == 'passed'
  - id: after
    uses: shell.run
    with: { script: "echo after-{{ steps.a.outcome }}-{{ steps.b.outcome }} >> '{{ vars.log }}'" }
"#;

#[test]
fn parallel_group_when_false_skips_every_member_with_the_reason() {
    let t = tmp();
    let rb = write(t.path(), "group.yaml", GROUP);
    let log = t.path().join("log");
    let report = t.path().join("report");
    let junit = t.path().join("junit.xml");
    let out = Run::new(&rb).var("log", log.display()).report(&report).junit(&junit).raw();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["first", "after-skipped-skipped"]);
    let steps = steps_of(&read_json(&report.join("run.json")));
    for member in ["a", "b"] {
        let (_, outcome, message) = step(&steps, member);
        assert_eq!(outcome, "skipped", "{steps:?}");
        assert!(message.contains("of its `parallel` group is false"), "{message}");
        assert!(message.contains("vars.go and steps.first.outcome == 'passed'"), "{message}");
    }
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "a"), "skipped", "{cases:?}");
    assert_eq!(status_of(&cases, "b"), "skipped", "{cases:?}");

    // True: the group runs, both members pass.
    std::fs::remove_file(&log).ok();
    let out =
        run(&["run", rb.to_str().unwrap_or_default(), "--var", &format!("log={}", log.display()), "--var", "go=true"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    let mut lines: Vec<&str> = ran.lines().collect();
    lines[1..3].sort_unstable();
    assert_eq!(lines, ["first", "a", "b", "after-passed-passed"]);
}

#[test]
fn parallel_group_when_is_shown_by_plan() {
    let t = tmp();
    let rb = write(t.path(), "group.yaml", GROUP);
    let out = run(&["plan", rb.to_str().unwrap_or_default(), "--var", "log=/dev/null"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let at = stdout.find("parallel (at the same time)").unwrap_or_else(|| panic!("{stdout}"));
    assert!(stdout[at..].contains("when: vars.go and steps.first.outcome == 'passed'"), "{stdout}");
}

const LETS: &str = r#"
name: lets
vars:
  database: ~
  target: ""
  jobs: 2
  log: ~
let:
  target: "{{ vars.target or vars.database }}"
  label: "db-{{ let.target }}"
  twice: "{{ vars.jobs * 2 }}"
steps:
  - id: show
    when: let.target != ''
    uses: shell.run
    with: { script: "echo {{ let.label }} {{ let.twice }} >> '{{ vars.log }}'" }
  - id: typed
    uses: shell.run
    # One expression keeps its type: `let.twice` is a number, not the text "4".
    with: { script: "echo {{ let.twice is number }} {{ (let.twice + 1) }} >> '{{ vars.log }}'" }
"#;

#[test]
fn let_values_are_computed_once_from_vars_and_read_everywhere() {
    let t = tmp();
    let rb = write(t.path(), "lets.yaml", LETS);
    let log = t.path().join("log");
    let logv = format!("log={}", log.display());
    let out = run(&["run", rb.to_str().unwrap_or_default(), "--var", "database=erp", "--var", &logv]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let out =
        Run::new(&rb).var("database", "erp").var("target", "erp_copy").var("jobs", "3").arg("--var").arg(&logv).raw();
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["db-erp 4", "True 5", "db-erp_copy 6", "True 7"]);

    // plan shows the computed values and renders fields with them.
    let out = run(&["plan", rb.to_str().unwrap_or_default(), "--var", "database=erp", "--var", &logv]);
    let stdout = text(&out.stdout);
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
    let out = run(&["validate", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
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
        &format!(
            r#"
name: late
vars: {{ log: "{}" }}
let:
  word: "{{{{ steps.first.outputs.stdout }}}}"
  shout: "{{{{ let.word | upper }}}}"
  code: "{{{{ steps.first.outputs.exit_code }}}}"
  never: "{{{{ steps.skipped.outputs.stdout }}}}"
steps:
  - id: first
    uses: shell.run
    with: {{ script: "echo hello" }}
  - id: skipped
    when: false
    uses: shell.run
    with: {{ script: "echo never" }}
  - id: second
    when: let.code == 0 and let.code is number
    uses: shell.run
    with: {{ script: "echo {{{{ let.word }}}} {{{{ let.shout }}}} >> '{{{{ vars.log }}}}'" }}
  - id: guarded
    when: let.never is defined
    uses: shell.run
    with: {{ script: "echo {{{{ let.never }}}} >> '{{{{ vars.log }}}}'" }}
finally:
  - uses: shell.run
    with: {{ script: "echo finally {{{{ let.word }}}} >> '{{{{ vars.log }}}}'" }}
"#,
            log.display()
        ),
    );
    let out = run(&["validate", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = run(&["run", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let ran = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["hello HELLO", "finally hello"]);
    // plan shows such a value as written: it is known only during the run.
    let out = run(&["plan", rb.to_str().unwrap_or_default()]);
    assert!(
        text(&out.stdout).contains("let:\n  word: \"{{ steps.first.outputs.stdout }}\"\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_whole_expression_keeps_its_type_and_text_fields_still_take_numbers() {
    let t = tmp();
    let rb = write(
        t.path(),
        "typed.yaml",
        r#"
name: typed
vars:
  port: 5433
  argv: [sh, -c, "echo $PORTNUM $FLAG"]
steps:
  - id: list
    uses: shell.run
    with:
      # A list stays a list; a number and a boolean reach text fields as their text.
      argv: "{{ vars.argv }}"
      env: { PORTNUM: "{{ vars.port + 1 }}", FLAG: "{{ vars.port > 1 }}" }
    assert: { stdout: "== 5434 true" }
"#,
    );
    let out = run(&["run", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
}

const ASSERTS: &str = r#"
name: asserts
vars:
  rows: 12
steps:
  - id: count
    uses: shell.run
    with: { script: "echo {{ vars.rows }}" }
    assert: { stdout: ">= 10", exit_code: "== 0", outcome: "== passed" }
  - id: check
    uses: shell.run
    with: { script: "echo {{ steps.count.outputs.stdout }}" }
    assert: { stdout: ">= 1000" }
  - id: never
    uses: shell.run
    with: { script: "true" }
"#;

#[test]
fn a_failed_assert_fails_the_step_naming_output_expected_and_actual() {
    let t = tmp();
    let rb = write(t.path(), "asserts.yaml", ASSERTS);
    let junit = t.path().join("junit.xml");
    let report = t.path().join("report");
    let out = Run::new(&rb).junit(&junit).report(&report).raw();
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let steps = steps_of(&read_json(&report.join("run.json")));
    assert_eq!(step(&steps, "count").1, "passed", "{steps:?}");
    let (_, outcome, message) = step(&steps, "check");
    assert_eq!(outcome, "failed");
    assert!(message.contains("assert `stdout` >= 1000 failed: the output is `12`"), "{message}");
    assert_eq!(step(&steps, "never").1, "skipped");
    let cases = junit_cases(&junit);
    assert_eq!(status_of(&cases, "check"), "failure", "{cases:?}");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(xml.contains("assert `stdout` &gt;= 1000 failed: the output is `12`"), "{xml}");

    // With enough rows it passes.
    let out = run(&["run", rb.to_str().unwrap_or_default(), "--var", "rows=1200"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn an_assert_on_an_output_the_step_does_not_have_is_invalid_with_a_suggestion() {
    let t = tmp();
    let rb = write(t.path(), "bad.yaml", &ASSERTS.replace("exit_code: \"== 0\"", "exit_cod: \"== 0\""));
    let out = run(&["validate", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("step kind `shell.run` has no output `exit_cod` to assert on"), "{stderr}");
    assert!(stderr.contains("did you mean `exit_code`?"), "{stderr}");
}

#[test]
fn outputs_and_outcome_are_kept_apart_and_the_old_form_still_works_with_a_warning() {
    let t = tmp();
    let rb = write(
        t.path(),
        "outputs.yaml",
        r#"
name: outputs
steps:
  - id: a
    uses: shell.run
    with: { script: "echo hello" }
  - id: b
    uses: shell.run
    with: { script: "echo {{ steps.a.outputs.stdout }} {{ steps.a.outcome }} {{ steps.a.stdout }}" }
    assert: { stdout: "== hello passed hello" }
"#,
    );
    let out = run(&["run", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));

    let out = run(&["validate", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(0), "a deprecated form is a warning: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
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
    let rb = write(
        t.path(),
        "let-key.yaml",
        r#"
name: let-key
vars:
  passphrase: ~
let:
  key: "{{ vars.passphrase }}"
steps:
  - id: check
    uses: backup.check
    with: { path: x.pgdrill, key: "{{ let.key }}" }
"#,
    );
    let secret = "correct-horse-battery-staple-42";
    let out = run(&["plan", rb.to_str().unwrap_or_default(), "--var", &format!("passphrase={secret}")]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("key:"), "{stdout}");
    assert!(!stdout.contains(secret), "the key reached the plan through `let`:\n{stdout}");
}

#[test]
fn a_parallel_group_when_that_cannot_be_evaluated_is_an_error_of_each_member_not_a_skip() {
    let t = tmp();
    let rb = write(
        t.path(),
        "bad-when.yaml",
        r#"
name: bad-when
steps:
  - id: first
    uses: shell.run
    with: { script: "true" }
  - when: steps.first.outputs.no_such_output > 1
    parallel:
      - id: a
        uses: shell.run
        with: { script: "true" }
      - id: b
        uses: shell.run
        with: { script: "true" }
"#,
    );
    let report = t.path().join("report");
    let out = run(&["run", rb.to_str().unwrap_or_default(), "--report", report.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2), "stderr: {}", text(&out.stderr));
    let steps = steps_of(&read_json(&report.join("run.json")));
    for member in ["a", "b"] {
        let (_, outcome, message) = step(&steps, member);
        assert_eq!(outcome, "errored", "{steps:?}");
        assert!(message.contains("step 2, field `when`"), "{message}");
    }
}

const AFTER: &str = r#"
name: after-and-fail-fast
vars:
  log: ~
  broken: false
  fail_fast: true
steps:
  - fail_fast: false
    parallel:
      - id: slow
        uses: shell.run
        with: { script: "sleep 1; echo slow >> '{{ vars.log }}'" }
      - id: waits
        after: slow
        uses: shell.run
        with: { script: "echo waits >> '{{ vars.log }}'" }
      - id: broken
        uses: shell.run
        with: { script: "{% if vars.broken %}exit 4{% else %}true{% endif %}" }
      - id: on_broken
        after: [broken, slow]
        uses: shell.run
        with: { script: "echo on_broken >> '{{ vars.log }}'" }
  - id: next
    uses: shell.run
    with: { script: "echo next >> '{{ vars.log }}'" }
"#;

/// `after:` waits for a sibling's end (its order in the file does not matter), a failed
/// sibling skips the steps waiting for it with the reason, and `fail_fast: false` lets the
/// rest of the group finish while the group, and the run, still fail.
#[test]
fn after_waits_for_a_sibling_and_fail_fast_false_lets_the_group_finish_but_still_fails() {
    let t = tmp();
    let rb = write(t.path(), "after.yaml", AFTER);
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
    let fast = AFTER.replace("  - fail_fast: false\n    parallel:", "  - parallel:");
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
    let out = run(&["run", "disaster-recovery", "--var", "scale=abc"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--var scale: `abc` is not a number"), "{stderr}");

    let out = run(&["run", "disaster-recovery", "--var", "disaster=flood", "--quiet"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The drill declares the values `disaster` takes: refused at its declaration (var_types).
    assert!(stderr.contains("--var disaster: `flood` is not one of drop_database, destroy_server"), "{stderr}");
    assert!(!text(&out.stdout).contains("workspace"), "no step ran: {}", text(&out.stdout));
}
