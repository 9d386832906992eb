//! Before a suite's first step: each step's `with:` with what is known at the start (vars,
//! `let` values, the environment) filled in, and checked as its step kind checks it. A
//! value that only a step can reject (`--var disaster=flood` for `drill.disaster`'s `mode`)
//! is then refused before servers are started and fixtures loaded, not found half-way. A
//! field that reads a step's outputs or a secret stays as written, as `validate` sees it.

use serde_json::{json, Map, Value as Json};

use super::attempt::{text_where_text_is_wanted, value_at};
use crate::plan::{Condition, Node, Plan, PlanStep};
use crate::runbook::describe_path;
use crate::{template, Error};

pub(super) fn check(
    plan: &Plan<'_>,
    vars: &Map<String, Json>,
    lets: &Map<String, Json>,
    env: &Map<String, Json>,
) -> Result<(), Error> {
    let tenv = template::environment();
    let ctx = minijinja::Value::from_serialize(json!({ "vars": vars, "let": lets, "env": env }));
    let rb = plan.runbook;
    // Every step in the order written (each main step followed by its rollbacks), with its
    // group's `when` for a step of a `parallel` group.
    let mut todo: Vec<(&PlanStep<'_>, Option<&Condition>)> = Vec::new();
    for node in &plan.nodes {
        let group_when = match node {
            Node::Group(g) => g.when.as_ref(),
            Node::Step(_) => None,
        };
        for s in node.steps() {
            todo.push((s, group_when));
            todo.extend(s.rollback.iter().map(|r| (r, None)));
        }
    }
    todo.extend(plan.finally.iter().map(|s| (s, None)));
    for (planned, group_when) in todo {
        let (step, kind) = (planned.def, planned.kind);
        // Only a step known to run is held to its fields now: one whose `when:` is false
        // (`when: vars.health_url != ""`) never reads them, and one whose `when:` reads other
        // steps is judged when it runs.
        let runs = [planned.when.as_ref(), group_when]
            .into_iter()
            .flatten()
            .all(|cond| matches!(cond.eval(&tenv, &ctx), Ok(true)));
        if !runs {
            continue;
        }
        let mut found = Vec::new();
        template::templated_strings(&step.with, "", &mut found);
        let mut with = step.with.clone();
        let mut filled = false;
        for (path, src) in found {
            let Ok(refs) = template::references(&tenv, src) else { continue };
            let known = refs.iter().all(|r| matches!(r.split('.').next(), Some("vars" | "let" | "env")));
            if !known || refs.is_empty() {
                continue;
            }
            let Ok(value) = template::render_str(&tenv, src, &ctx) else { continue };
            if let Some(slot) = value_at(&mut with, &path) {
                *slot = value;
                filled = true;
            }
        }
        if !filled {
            continue;
        }
        text_where_text_is_wanted(kind, &step.with, &mut with);
        if let Err(e) = (kind.check)(&with) {
            let with_path = format!("{}.with", step.path);
            let full = if e.path.is_empty() { with_path } else { template::join(&with_path, &e.path) };
            let help = e.help.map(|h| format!("; {h}")).unwrap_or_default();
            return Err(Error::invalid(format!(
                "{}: {}: {} (with this run's variables; no step was started){help}",
                rb.location(&full),
                describe_path(&full),
                e.message
            )));
        }
    }
    Ok(())
}
