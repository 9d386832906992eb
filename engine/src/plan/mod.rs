//! The plan: a parsed runbook made ready to run, built once before its first step, as
//! ripgrep turns `LowArgs` into `HiArgs`. The parsed model (`runbook/`) is the file as written,
//! with its spans; the plan is what the executor runs: each step's kind resolved to its
//! handle (never looked up again by name), each `parallel` group a node holding its own
//! `when` and `fail_fast`, `when:` and `assert:` typed (an expectation is parsed once and its
//! numbers held as numbers), and the `let:` values that read step outputs set apart, to be
//! computed once the steps they read have run. `pgdrill plan` shows a runbook (`show.rs`).
//! Nothing here does I/O or runs a step.

mod show;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

pub use show::render;

use crate::runbook::{GroupDef, Runbook, StepDef};
use crate::steps::sql::Expect;
use crate::steps::{self, StepKind};
use crate::{template, Error};

/// A runbook ready to run.
pub struct Plan<'rb> {
    pub runbook: &'rb Runbook,
    /// `steps:` in order: a step, or a `parallel` group of them.
    pub nodes: Vec<Node<'rb>>,
    pub finally: Vec<PlanStep<'rb>>,
    /// The `let:` values that read step outputs, in the order written (the others are known
    /// before any step runs: `runbook::resolve_lets`).
    pub late_lets: Vec<LateLet<'rb>>,
}

/// One entry of `steps:`.
pub enum Node<'rb> {
    Step(PlanStep<'rb>),
    Group(Group<'rb>),
}

impl<'rb> Node<'rb> {
    /// The step, or the group's steps.
    pub fn steps(&self) -> &[PlanStep<'rb>] {
        match self {
            Node::Step(s) => std::slice::from_ref(s),
            Node::Group(g) => &g.steps,
        }
    }
}

/// A `parallel` group: its steps run at the same time, once its `when` holds.
pub struct Group<'rb> {
    pub def: &'rb GroupDef,
    /// Evaluated once, before any of its steps: false skips them all.
    pub when: Option<Condition>,
    /// A failing step stops its siblings (false: they finish, and the group still fails).
    pub fail_fast: bool,
    pub steps: Vec<PlanStep<'rb>>,
}

/// A step with what the plan resolved: its kind, its typed `when` and `assert:`, and its
/// rollback steps, planned the same way.
pub struct PlanStep<'rb> {
    pub def: &'rb StepDef,
    pub kind: &'static StepKind,
    pub when: Option<Condition>,
    pub checks: Vec<Check>,
    pub rollback: Vec<PlanStep<'rb>>,
}

/// A `let:` value that reads step outputs: computed once every step it reads has run.
pub struct LateLet<'rb> {
    pub name: &'rb str,
    pub value: &'rb Yaml,
    /// The ids of the steps it reads (through the `let` values above it too).
    pub reads: &'rb BTreeSet<String>,
}

/// A `when:` condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `when: true` or `when: false`, as written.
    Const(bool),
    /// An expression (bare, or in `{{ }}`), evaluated when its step or group is reached.
    Expr(String),
}

impl Condition {
    pub fn new(text: &str) -> Condition {
        match text.trim() {
            "true" => Condition::Const(true),
            "false" => Condition::Const(false),
            t => Condition::Expr(t.to_string()),
        }
    }

    /// As written, for messages.
    pub fn text(&self) -> &str {
        match self {
            Condition::Const(true) => "true",
            Condition::Const(false) => "false",
            Condition::Expr(t) => t,
        }
    }

    pub fn eval(&self, env: &minijinja::Environment<'_>, ctx: &minijinja::Value) -> Result<bool, minijinja::Error> {
        match self {
            Condition::Const(b) => Ok(*b),
            Condition::Expr(e) => template::eval_condition(env, e, ctx),
        }
    }
}

/// What an `assert:` entry judges.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    /// The step's `outcome` (passed, when its outputs are judged).
    Outcome,
    /// The step's `duration_s`.
    Duration,
    /// One of the step's outputs.
    Output(String),
}

/// An `assert:` expectation: parsed once when written out, or rendered (and then parsed) when
/// it reads templates.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    Fixed(Expect),
    Templated,
}

/// One `assert:` entry of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The name written (`rows`, `outcome`), for messages.
    pub name: String,
    pub subject: Subject,
    /// The expectation as written.
    pub written: String,
    pub expect: Expectation,
}

/// Why an `assert:` entry could not be judged: its template failed or rendered to no
/// expectation (the step's error, of the invalid class).
pub type CheckError = String;

impl Check {
    /// Judge the step's outputs (`took`: its attempt's duration): `Ok(None)` when the entry
    /// holds, `Ok(Some(why))` when it does not, `Err` when it cannot be judged. `label` names
    /// the step in an error.
    pub fn judge(
        &self,
        env: &minijinja::Environment<'_>,
        ctx: &minijinja::Value,
        label: &str,
        outputs: &Map<String, Json>,
        took: Duration,
    ) -> Result<Option<String>, CheckError> {
        let (expect, text) = match &self.expect {
            Expectation::Fixed(e) => (e.clone(), self.written.clone()),
            Expectation::Templated => {
                let text = match template::render_str(env, &self.written, ctx) {
                    Ok(Yaml::String(t)) => t,
                    Ok(other) => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
                    Err(e) => {
                        return Err(format!(
                            "template error in step `{label}`, `assert.{}`: {}",
                            self.name,
                            template::describe(&e)
                        ))
                    }
                };
                let e = Expect::parse(&text).map_err(|m| format!("step `{label}`, `assert.{}`: {m}", self.name))?;
                (e, text)
            }
        };
        let value = match &self.subject {
            Subject::Outcome => Json::String("passed".into()),
            Subject::Duration => json!((took.as_secs_f64() * 1000.0).round() / 1000.0),
            Subject::Output(name) => match outputs.get(name) {
                Some(v) => v.clone(),
                None => {
                    let mut names: Vec<&str> = outputs.keys().map(String::as_str).collect();
                    names.sort_unstable();
                    return Ok(Some(format!(
                        "assert `{name}` {text}: the step emitted no output `{name}` (it emitted: {})",
                        names.join(", ")
                    )));
                }
            },
        };
        let shown = scalar_text(&value);
        match expect.holds(shown.as_deref()) {
            Ok(()) => Ok(None),
            Err(why) => {
                let actual = shown.as_deref().map(|t| format!("`{t}`")).unwrap_or_else(|| "null".into());
                Ok(Some(format!("assert `{}` {text} failed: the output is {actual}{why}", self.name)))
            }
        }
    }
}

/// An output as an expectation reads it: null is no value, text is itself, a number its exact
/// decimal form (serde_json prints integers of any size in full, and floats in the shortest
/// form that reads back as the same float), which [`Expect`] compares as a number.
fn scalar_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(t) => Some(t.clone()),
        other => Some(other.to_string()),
    }
}

impl<'rb> Plan<'rb> {
    /// Plan a parsed runbook. Parsing already refused what cannot be planned (an unknown kind,
    /// an expectation that does not parse); a runbook that was not parsed from a file is held
    /// to the same rules here, as invalid input.
    pub fn build(rb: &'rb Runbook) -> Result<Plan<'rb>, Error> {
        let mut nodes: Vec<Node<'rb>> = Vec::new();
        for def in &rb.steps {
            let step = plan_step(rb, def)?;
            let Some(g) = rb.group_of(def) else {
                nodes.push(Node::Step(step));
                continue;
            };
            match nodes.last_mut() {
                Some(Node::Group(group)) if group.def.index == g.index => group.steps.push(step),
                _ => nodes.push(Node::Group(Group {
                    def: g,
                    when: g.when.as_deref().map(Condition::new),
                    fail_fast: g.fail_fast,
                    steps: vec![step],
                })),
            }
        }
        let finally = rb.finally.iter().map(|d| plan_step(rb, d)).collect::<Result<_, _>>()?;
        let late_lets = rb
            .lets
            .iter()
            .filter_map(|(name, value)| {
                rb.let_reads.get(name).map(|reads| LateLet { name: name.as_str(), value, reads })
            })
            .collect();
        Ok(Plan { runbook: rb, nodes, finally, late_lets })
    }

    /// Every step, with the rollbacks and `finally` steps (fleet asks their kinds' flags).
    pub fn all_steps(&self) -> impl Iterator<Item = &PlanStep<'rb>> {
        self.nodes
            .iter()
            .flat_map(Node::steps)
            .flat_map(|s| std::iter::once(s).chain(s.rollback.iter()))
            .chain(self.finally.iter())
    }
}

fn plan_step<'rb>(rb: &'rb Runbook, def: &'rb StepDef) -> Result<PlanStep<'rb>, Error> {
    let at = || rb.location(&def.path);
    let kind =
        steps::find(&def.uses).ok_or_else(|| Error::invalid(format!("{}: unknown step kind `{}`", at(), def.uses)))?;
    let mut checks = Vec::new();
    for a in &def.assert {
        let subject = match a.output.as_str() {
            "outcome" => Subject::Outcome,
            "duration_s" => Subject::Duration,
            name => Subject::Output(name.to_string()),
        };
        let expect = if template::is_template(&a.expect) {
            Expectation::Templated
        } else {
            Expectation::Fixed(
                Expect::parse(&a.expect)
                    .map_err(|m| Error::invalid(format!("{}: `assert.{}`: {m}", at(), a.output)))?,
            )
        };
        checks.push(Check { name: a.output.clone(), subject, written: a.expect.clone(), expect });
    }
    Ok(PlanStep {
        def,
        kind,
        when: def.when.as_deref().map(Condition::new),
        checks,
        rollback: def.rollback.iter().map(|r| plan_step(rb, r)).collect::<Result<_, _>>()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn parse(text: &str) -> Runbook {
        match crate::runbook::parse("t.yaml", text, PathBuf::new()) {
            Ok(rb) => rb,
            Err(d) => panic!("{d}"),
        }
    }

    const GROUPS: &str = r#"
name: groups
vars: { go: true }
steps:
  - id: first
    uses: sleep
    with: { duration: 0s }
  - when: vars.go
    fail_fast: false
    parallel:
      - id: a
        uses: sleep
        with: { duration: 0s }
      - id: b
        uses: sleep
        with: { duration: 0s }
  - parallel:
      - id: c
        uses: sleep
        with: { duration: 0s }
  - id: last
    uses: sleep
    when: true
    with: { duration: 0s }
"#;

    /// A group's `when` and `fail_fast` are the group node's, not copies on its members, and
    /// each step's kind is resolved once.
    #[test]
    fn group_when_and_fail_fast_are_held_by_the_group_node() {
        let rb = parse(GROUPS);
        let plan = Plan::build(&rb).map_err(|e| e.to_string());
        let Ok(plan) = plan else { panic!("{plan:?}", plan = plan.err()) };
        assert_eq!(plan.nodes.len(), 4);
        let Node::Group(g) = &plan.nodes[1] else { panic!("the second entry is a group") };
        assert_eq!(g.when, Some(Condition::Expr("vars.go".into())));
        assert!(!g.fail_fast);
        assert_eq!(g.def.path, "steps[1]");
        let ids: Vec<_> = g.steps.iter().map(|s| s.def.id.as_deref().unwrap_or_default()).collect();
        assert_eq!(ids, ["a", "b"]);
        assert!(g.steps.iter().all(|s| s.when.is_none()), "the group's `when` was copied onto a member");
        let Node::Group(g2) = &plan.nodes[2] else { panic!("the third entry is a group") };
        assert!(g2.when.is_none() && g2.fail_fast);
        let Node::Step(last) = &plan.nodes[3] else { panic!("the last entry is a step") };
        assert_eq!(last.when, Some(Condition::Const(true)));
        assert!(plan.all_steps().all(|s| s.kind.name == "sleep"));
    }

    fn check(expect: &str, output: Json) -> Result<Option<String>, CheckError> {
        let rb = parse(&format!(
            "name: a\nsteps:\n  - id: s\n    uses: sql.exec\n    with: {{ url: x, sql: select 1 }}\n    assert: {{ rows: \"{expect}\" }}\n"
        ));
        let plan = Plan::build(&rb).map_err(|e| e.to_string())?;
        let step = &plan.nodes[0].steps()[0];
        let env = template::environment();
        let ctx = minijinja::Value::from_serialize(json!({}));
        let mut outputs = Map::new();
        outputs.insert("rows".into(), output);
        step.checks[0].judge(&env, &ctx, "s", &outputs, Duration::ZERO)
    }

    /// `assert:` compares numbers as numbers, exactly: text order would put 10 below 9, a
    /// float would make 2^53 + 1 equal 2^53, and a written expectation is parsed once, into a
    /// number, when the plan is built.
    #[test]
    fn assert_compares_numbers_as_numbers() {
        assert_eq!(check("> 9", json!(10)), Ok(None));
        assert_eq!(check("< 9", json!(10)).map(|f| f.is_some()), Ok(true));
        assert_eq!(check("== 9007199254740992", json!(9007199254740993_u64)).map(|f| f.is_some()), Ok(true));
        assert_eq!(check("!= 9007199254740992", json!(9007199254740993_u64)), Ok(None));
        assert_eq!(check("> 9007199254740992", json!(9007199254740993_u64)), Ok(None));
        assert_eq!(check("== 18446744073709551615", json!(u64::MAX)), Ok(None));
        assert_eq!(check("== 1000", json!(1e3)), Ok(None));
        assert_eq!(check("== 10", json!("10.0")), Ok(None));
        assert_eq!(check("between 1 and 10", json!(10)), Ok(None));
        // NaN as PostgreSQL orders it: above every number, equal to itself.
        assert_eq!(check("> 1e300", json!("NaN")), Ok(None));
        assert_eq!(check("== NaN", json!("NaN")), Ok(None));
        assert_eq!(check("== erp", json!("erp")), Ok(None));
        assert_eq!(
            check("> 9", json!("nine")).ok().flatten().as_deref(),
            Some("assert `rows` > 9 failed: the output is `nine` (`nine` is not a number)")
        );
        let rb = parse("name: a\nsteps:\n  - id: s\n    uses: sql.exec\n    with: { url: x, sql: select 1 }\n    assert: { rows: \">= 12345678901234567890123\" }\n");
        let plan = Plan::build(&rb).map_err(|e| e.to_string());
        let held = plan.as_ref().ok().map(|p| p.nodes[0].steps()[0].checks[0].expect.clone());
        let Some(Expectation::Fixed(Expect::Cmp(_, operand))) = held else { panic!("{held:?}") };
        assert!(operand.num.is_some(), "the expectation's number was not parsed once");
    }

    /// A `let` that reads a step's outputs is set apart for the executor, with the steps it
    /// reads (through the `let` values above it too).
    #[test]
    fn a_let_reading_a_step_output_is_late_with_the_steps_it_reads() {
        let rb = parse(
            r#"
name: lets
vars: { database: erp }
let:
  target: "{{ vars.database }}"
  url: "{{ steps.server.outputs.url }}"
  conn: "{{ let.url }}/{{ let.target }}"
steps:
  - id: server
    uses: shell.run
    with: { script: "echo url=x" }
  - id: use
    uses: shell.run
    with: { script: "echo {{ let.conn }}" }
"#,
        );
        let plan = Plan::build(&rb).map_err(|e| e.to_string());
        let late: Vec<_> = plan
            .iter()
            .flat_map(|p| &p.late_lets)
            .map(|l| (l.name, l.reads.iter().cloned().collect::<Vec<_>>()))
            .collect();
        assert_eq!(late, [("url", vec!["server".to_string()]), ("conn", vec!["server".to_string()])]);
    }

    /// A `when:` that reads a `let` value of a step that may be skipped must test it first,
    /// as it must for the step's own outputs: a skipped step leaves the value undefined.
    #[test]
    fn a_when_reading_a_let_of_a_step_that_may_be_skipped_must_test_it_first() {
        let text = |cond: &str| {
            format!(
                "name: w\nvars: {{ go: true }}\nlet:\n  out: \"{{{{ steps.maybe.outputs.stdout }}}}\"\nsteps:\n  - id: maybe\n    when: vars.go\n    uses: shell.run\n    with: {{ script: \"echo x\" }}\n  - id: after\n    when: {cond}\n    uses: shell.run\n    with: {{ script: \"echo y\" }}\n"
            )
        };
        let err = crate::runbook::parse("t.yaml", &text("let.out == 'x'"), PathBuf::new()).err().map(|d| d.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("`when:` reads `let.out`, but step `maybe` may be skipped"), "{err}");
        assert!(err.contains("t.yaml:11:"), "{err}");
        let guarded = crate::runbook::parse("t.yaml", &text("let.out is defined and let.out == 'x'"), PathBuf::new());
        assert!(guarded.is_ok(), "{:?}", guarded.err().map(|d| d.to_string()));
    }

    /// Regression for the `let:` extension: a `let` reading a step that has not run yet at the
    /// point of use is refused by validate, at the line of the use.
    #[test]
    fn a_let_reading_a_later_step_is_refused_at_its_use() {
        let text = "name: lets\nlet:\n  url: \"{{ steps.server.outputs.url }}\"\nsteps:\n  - id: early\n    uses: shell.run\n    with: { script: \"echo {{ let.url }}\" }\n  - id: server\n    uses: shell.run\n    with: { script: \"echo url=x\" }\n";
        let err = crate::runbook::parse("t.yaml", text, PathBuf::new()).err().map(|d| d.to_string());
        let err = err.unwrap_or_default();
        assert!(err.contains("`let.url` reads `steps.server`, which has not run yet at this point"), "{err}");
        assert!(err.contains("t.yaml:7:"), "{err}");
    }
}
