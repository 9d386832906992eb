//! `pgdrill plan`: the steps a run would take, as the [`Plan`] orders them, with every value
//! rendered that can be known before running (vars, env, the `let` values that read no step);
//! values that depend on steps' outputs stay as written.
//! Secrets are never read for a plan: they show as a mask, and so do values that reach key
//! and password fields from `--var` or env, and passwords inside URLs. No side effects.

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::{Node, Plan};
use crate::redact::{Redactor, MASK};
use crate::runbook::{Runbook, StepDef};
use crate::template;

/// Render the plan as text.
pub fn render(rb: &Runbook, vars: &Map<String, Json>) -> String {
    let env: Map<String, Json> = std::env::vars().map(|(k, v)| (k, Json::String(v))).collect();
    let secrets: Map<String, Json> = rb.secrets.keys().map(|k| (k.clone(), Json::String(MASK.into()))).collect();
    // `let` values are known before any step runs; one that cannot be computed yet shows as
    // written (the run itself reports why).
    let lets = crate::runbook::resolve_lets(rb, vars, &env).unwrap_or_else(|_| {
        rb.lets.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Json::Null))).collect()
    });
    let ctx = minijinja::Value::from_serialize(
        json!({ "vars": vars, "let": lets, "env": env, "secrets": secrets, "steps": {}, "run": { "status": "running" } }),
    );
    let tenv = template::environment();
    let redactor = Redactor::default();
    crate::runbook::register_run_inputs(&redactor, rb, vars, &env, &secrets);

    let mut out = format!("plan for runbook {} ({})\n", rb.name, rb.file);
    if let Some(d) = &rb.description {
        out.push_str(&format!("  {}\n", d.trim()));
    }
    if !vars.is_empty() {
        out.push_str("vars:\n");
        // With what each takes, so an operator sees the allowed values before a run.
        for (k, v) in vars {
            let ty = rb.var_types.get(k).map(|t| t.describe()).unwrap_or_else(|| "text".into());
            out.push_str(&format!("  {k}: {v} ({ty})\n"));
        }
    }
    if !rb.lets.is_empty() {
        out.push_str("let:\n");
        // In the order written: each may read the ones above it. One that reads step outputs
        // is computed during the run, and shows as written.
        for (k, v) in &rb.lets {
            let shown = lets.get(k).cloned().unwrap_or_else(|| serde_json::to_value(v).unwrap_or(Json::Null));
            out.push_str(&format!("  {k}: {shown}\n"));
        }
    }
    if let Some(rto) = rb.targets.rto {
        out.push_str(&format!("targets:\n  rto: {}\n", humantime::format_duration(rto)));
    }
    out.push_str("steps:\n");
    // Numbered as written: a `parallel` group is one entry, its steps listed under it.
    match Plan::build(rb) {
        Ok(plan) => {
            for (i, node) in plan.nodes.iter().enumerate() {
                let n = i + 1;
                match node {
                    Node::Step(s) => step(&mut out, &tenv, &ctx, s.def, &format!("{n}."), 1),
                    Node::Group(g) => {
                        out.push_str(&format!("  {n}. parallel (at the same time):\n"));
                        if let Some(w) = &g.def.when {
                            out.push_str(&format!("       when: {w}\n"));
                        }
                        for s in &g.steps {
                            step(&mut out, &tenv, &ctx, s.def, "-", 3);
                        }
                    }
                }
            }
        }
        Err(e) => out.push_str(&format!("  {e}\n")),
    }
    if !rb.finally.is_empty() {
        out.push_str("finally:\n");
        for s in &rb.finally {
            step(&mut out, &tenv, &ctx, s, "-", 1);
        }
    }
    redactor.redact(&out)
}

fn step(
    out: &mut String,
    env: &minijinja::Environment<'_>,
    ctx: &minijinja::Value,
    s: &StepDef,
    bullet: &str,
    depth: usize,
) {
    let pad = "  ".repeat(depth);
    out.push_str(&format!("{pad}{bullet} {} [{}]\n", s.label(), s.uses));
    let mut extras = Vec::new();
    if let Some(w) = &s.when {
        extras.push(format!("when: {w}"));
    }
    if let Some(t) = s.timeout {
        extras.push(format!("timeout: {}", humantime::format_duration(t)));
    }
    if s.retry.count > 0 {
        extras.push(format!(
            "retry: {} more, delay {}, backoff {}",
            s.retry.count,
            humantime::format_duration(s.retry.delay),
            s.retry.backoff
        ));
    }
    if s.continue_on_error {
        extras.push("continue_on_error".into());
    }
    for a in &s.assert {
        extras.push(format!("assert: {} {}", a.output, a.expect));
    }
    for e in extras {
        out.push_str(&format!("{pad}     {e}\n"));
    }
    let rendered = render_known(env, &s.with, ctx);
    if let Yaml::Mapping(m) = &rendered {
        if !m.is_empty() {
            let text = serde_yaml::to_string(&rendered).unwrap_or_default();
            for l in text.lines() {
                out.push_str(&format!("{pad}     {l}\n"));
            }
        }
    }
    connections(out, &pad, &rendered);
    if !s.rollback.is_empty() {
        out.push_str(&format!("{pad}     rollback:\n"));
        for r in &s.rollback {
            step(out, env, ctx, r, "-", depth + 3);
        }
    }
}

/// For each connection field known now, what the connection string, the service file, the
/// environment, the defaults and the password file each contributed (secrets masked).
fn connections(out: &mut String, pad: &str, with: &Yaml) {
    let Yaml::Mapping(m) = with else { return };
    for key in ["url", "database_url", "into", "target", "source"] {
        let Some(Yaml::String(v)) = m.get(key) else { continue };
        if v.contains("{{") || !(v.contains("://") || v.contains('=')) {
            continue;
        }
        // physical.verify's `source` names another tool's backups, not a server.
        if crate::physical::is_tool_location(v) {
            continue;
        }
        match crate::pg::conninfo(v) {
            Ok(ci) => {
                out.push_str(&format!("{pad}     connection ({key}):\n"));
                for l in ci.describe() {
                    out.push_str(&format!("{pad}       {l}\n"));
                }
            }
            Err(e) => out.push_str(&format!("{pad}     connection ({key}): {}\n", e.message)),
        }
    }
}

/// Render each string that can be rendered now; keep the others as written.
fn render_known(env: &minijinja::Environment<'_>, v: &Yaml, ctx: &minijinja::Value) -> Yaml {
    match v {
        Yaml::String(s) => template::render_str(env, s, ctx).unwrap_or_else(|_| Yaml::String(s.clone())),
        Yaml::Sequence(items) => Yaml::Sequence(items.iter().map(|i| render_known(env, i, ctx)).collect()),
        Yaml::Mapping(m) => Yaml::Mapping(m.iter().map(|(k, v)| (k.clone(), render_known(env, v, ctx))).collect()),
        other => other.clone(),
    }
}
