//! What a run's inputs hold that must be masked, found from the runbook: the redactor
//! (`redact`, below the runbook) knows values; this walks the steps to give it them.

use serde_json::{Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::{resolve_lets, Runbook, StepDef};
use crate::redact::Redactor;
use crate::steps::StepKind;

/// The fields a kind declares secret (keys, passwords), each with whether it is a key:
/// registered with the redactor whatever they hold, and keys checked for length.
pub fn secret_fields(kind: &StepKind) -> impl Iterator<Item = (&'static str, bool)> {
    kind.fields.iter().filter(|f| f.secret).map(|f| (f.name, f.key))
}

/// The fields a kind declares connection strings (`#[field(conninfo)]`): the password inside
/// what they hold is registered, the rest of it stays readable.
pub fn conninfo_fields(kind: &StepKind) -> impl Iterator<Item = &'static str> {
    kind.fields.iter().filter(|f| f.conninfo).map(|f| f.name)
}

/// Register, before a run's first event, what its inputs hold that must be masked: the
/// passwords in its variables' URLs, the values that reach its steps' key and password
/// fields, and the passwords inside what reaches their connection strings, when those are
/// known from vars, env and secrets alone (`key: "{{ vars.key }}"`, a `url:` written out).
pub fn register_run_inputs(
    r: &Redactor,
    rb: &Runbook,
    vars: &Map<String, Json>,
    env: &Map<String, Json>,
    secrets: &Map<String, Json>,
) {
    let lets = resolve_lets(rb, vars, env).unwrap_or_default();
    crate::redact::register_run_values(r, vars, env, &lets);
    let ctx = minijinja::Value::from_serialize(serde_json::json!({
        "vars": vars, "let": lets, "env": env, "secrets": secrets, "steps": {}, "run": { "status": "running" }
    }));
    let tenv = crate::template::environment();
    let mut stack: Vec<&StepDef> = rb.steps.iter().chain(rb.finally.iter()).collect();
    while let Some(step) = stack.pop() {
        stack.extend(step.rollback.iter());
        let Some(kind) = crate::steps::find(&step.uses) else { continue };
        for (name, _) in secret_fields(kind) {
            let Some(Yaml::String(src)) = step.with.get(name) else { continue };
            // Fields that depend on step outputs are registered when the step renders them.
            if let Ok(Yaml::String(v)) = crate::template::render_str(&tenv, src, &ctx) {
                r.add(&v);
                r.add_credentials_in(&v);
            }
        }
        // A connection string's password, before any step runs: a step before the one that
        // connects may print it alone, or hand it to a child in its environment.
        for name in conninfo_fields(kind) {
            let Some(Yaml::String(src)) = step.with.get(name) else { continue };
            if let Ok(Yaml::String(v)) = crate::template::render_str(&tenv, src, &ctx) {
                r.add_credentials_in(&v);
            }
        }
    }
}
