//! A run's variables: `--var` pairs typed like the declared default (`--var skip=false` is
//! false, not the text "false"), declared defaults rendered against the environment, and the
//! `let:` values computed once from them (those that read step outputs are the executor's).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::{suggest, Runbook};
use crate::{template, Error};

/// `--var k=v` pairs as a mapping of strings.
pub fn overrides_from_pairs(pairs: &[(String, String)]) -> serde_yaml::Mapping {
    let mut m = serde_yaml::Mapping::new();
    for (k, v) in pairs {
        m.insert(Yaml::String(k.clone()), Yaml::String(v.clone()));
    }
    m
}

/// A map for callers that want `BTreeMap` ordering.
pub type VarMap = BTreeMap<String, String>;

/// Declared defaults, overridden by `--var`; every declared variable must end with a value.
pub fn resolve_vars(
    rb: &Runbook,
    overrides: &serde_yaml::Mapping,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    for k in overrides.keys() {
        let k = k.as_str().unwrap_or_default();
        if !rb.vars.contains_key(k) {
            let help =
                suggest::help(k, rb.vars.keys().map(String::as_str)).map(|h| format!("; {h}")).unwrap_or_default();
            let declared = if rb.vars.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", rb.vars.keys().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "))
            };
            return Err(Error::invalid(format!(
                "--var {k}: runbook `{}` has no variable `{k}` ({declared}){help}",
                rb.name
            )));
        }
    }
    let tenv = template::environment();
    let ctx = minijinja::Value::from_serialize(json!({ "env": env }));
    let mut out = Map::new();
    for (name, default) in &rb.vars {
        let value: Yaml = match overrides.get(name.as_str()) {
            Some(v) => typed_like(v, default.as_ref()).map_err(|e| {
                Error::invalid(format!(
                    "--var {name}: {e} (runbook `{}`, the default is {})",
                    rb.name,
                    describe_yaml(default.as_ref())
                ))
            })?,
            None => match default {
                Some(d) => template::render_tree(&tenv, d, &ctx, &format!("vars.{name}")).map_err(|(_, e)| {
                    Error::invalid(format!(
                        "runbook `{}`, default of variable `{name}`: {}",
                        rb.name,
                        template::describe(&e)
                    ))
                })?,
                None => {
                    return Err(Error::invalid(format!(
                        "runbook `{}` needs a value for variable `{name}`: pass --var {name}=VALUE",
                        rb.name
                    )))
                }
            },
        };
        out.insert(name.clone(), serde_json::to_value(&value).unwrap_or(Json::Null));
    }
    Ok(out)
}

/// The `let:` values known before any step runs, in the order written, each from vars, env
/// and the values above it. A value that reads step outputs (`Runbook::let_reads`) is left
/// out: the executor computes it once the steps it reads have run. A value that is one
/// expression keeps its type, like any field.
pub fn resolve_lets(
    rb: &Runbook,
    vars: &Map<String, Json>,
    env: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    let tenv = template::environment();
    let mut lets = Map::new();
    for (name, value) in rb.lets.iter().filter(|(n, _)| !rb.let_reads.contains_key(n)) {
        let ctx = minijinja::Value::from_serialize(json!({ "vars": vars, "env": env, "let": lets }));
        let v = template::render_tree(&tenv, value, &ctx, &format!("let.{name}")).map_err(|(_, e)| {
            Error::invalid(format!(
                "runbook `{}`, `let.{name}` ({}): {}",
                rb.name,
                rb.location(&format!("let.{name}")),
                template::describe(&e)
            ))
        })?;
        lets.insert(name.clone(), serde_json::to_value(&v).unwrap_or(Json::Null));
    }
    Ok(lets)
}

/// A `--var` value is text; a variable whose default is a boolean or a number takes the
/// value as one, so `--var skip=false` is false (the text "false" would be true in `when:`).
fn typed_like(v: &Yaml, default: Option<&Yaml>) -> Result<Yaml, String> {
    let Yaml::String(text) = v else { return Ok(v.clone()) };
    let t = text.trim();
    match default {
        Some(Yaml::Bool(_)) => match t.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(Yaml::Bool(true)),
            "false" | "no" | "off" | "0" | "" => Ok(Yaml::Bool(false)),
            _ => Err(format!("`{text}` is not true or false")),
        },
        // The README promises a number: `abc` is refused here, before any step starts,
        // not found by the step that reads it after servers were started.
        Some(Yaml::Number(_)) => t
            .parse::<i64>()
            .map(|n| Yaml::Number(n.into()))
            .or_else(|_| t.parse::<f64>().ok().filter(|f| f.is_finite()).map(|f| Yaml::Number(f.into())).ok_or(()))
            .map_err(|_| format!("`{text}` is not a number")),
        _ => Ok(v.clone()),
    }
}

fn describe_yaml(v: Option<&Yaml>) -> &'static str {
    match v {
        Some(Yaml::Bool(_)) => "a boolean",
        Some(Yaml::Number(_)) => "a number",
        _ => "text",
    }
}
