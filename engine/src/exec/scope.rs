//! What a suite's templates read (`vars`, `let`, `env`, `secrets`, `steps`, `run`) and the
//! resources its steps started, with the loading of secrets and the keeping of each step's
//! outputs for the steps after it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Map, Value as Json};
use serde_yaml::Value as Yaml;

use super::{StepRecord, SuiteCtx};
use crate::redact::Redactor;
use crate::runbook::{EnvNames, Runbook, StepDef};
use crate::steps::Resources;
use crate::{plan, template, Error};

/// A `let:` value that reads step outputs, waiting for them.
pub(super) struct LateLet {
    name: String,
    value: Yaml,
    reads: BTreeSet<String>,
}

impl From<&plan::LateLet<'_>> for LateLet {
    fn from(l: &plan::LateLet<'_>) -> Self {
        LateLet { name: l.name.to_string(), value: l.value.clone(), reads: l.reads.clone() }
    }
}

/// One suite's values for its templates, and the resources (servers) its steps started,
/// which end with the suite after `finally`.
pub(super) struct Scope {
    pub(super) cx: SuiteCtx,
    pub(super) resources: Resources,
    pub(super) vars: Map<String, Json>,
    /// `let:` values: those known at the start computed when the suite starts, the others
    /// added as they are computed (`late_lets`).
    pub(super) lets: Map<String, Json>,
    /// `let:` values that read step outputs and are not computed yet, in the order written.
    pub(super) late_lets: Vec<LateLet>,
    pub(super) env: Map<String, Json>,
    pub(super) secrets: Map<String, Json>,
    /// Shared with the template contexts of running steps (see [`StepsView`]); a finished
    /// step's outputs are added with `Arc::make_mut`, when no context holds it any more.
    pub(super) steps: Arc<Map<String, Json>>,
    /// `run.status` (`running`, then `passed`, `failed` or `interrupted` for `finally`),
    /// `run.message` and `run.elapsed_s`: what a `finally` step needs to record a result.
    pub(super) run: Map<String, Json>,
}

impl Scope {
    /// What a step's templates read. `steps` is a view of the map, not a copy: converting
    /// every earlier step's outputs for each step made a run of n steps cost n² (10,000
    /// trivial steps took minutes); a view converts only what a template reads.
    pub(super) fn context(&self) -> minijinja::Value {
        self.context_of(self.steps.clone())
    }

    /// `context`, with the `steps.<id>` entries of `more` (siblings of a `parallel` group
    /// that have ended) beside the suite's.
    pub(super) fn context_with(&self, more: Map<String, Json>) -> minijinja::Value {
        if more.is_empty() {
            return self.context();
        }
        let mut steps = (*self.steps).clone();
        steps.extend(more);
        self.context_of(Arc::new(steps))
    }

    fn context_of(&self, steps: Arc<Map<String, Json>>) -> minijinja::Value {
        use minijinja::Value;
        minijinja::context! {
            vars => Value::from_serialize(&self.vars),
            let => Value::from_serialize(&self.lets),
            env => Value::from_serialize(&self.env),
            secrets => Value::from_serialize(&self.secrets),
            steps => Value::from_object(StepsView(steps)),
            run => Value::from_serialize(&self.run),
        }
    }
}

/// The `steps` of a template context: each step's entry converted when a template reads it.
#[derive(Debug)]
struct StepsView(Arc<Map<String, Json>>);

impl minijinja::value::Object for StepsView {
    fn get_value(self: &Arc<Self>, key: &minijinja::Value) -> Option<minijinja::Value> {
        self.0.get(key.as_str()?).map(minijinja::Value::from_serialize)
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        minijinja::value::Enumerator::Values(self.0.keys().map(|k| minijinja::Value::from(k.as_str())).collect())
    }
}

/// The runbook's secrets: given by a parent runbook, else from their declared source; each
/// value is handed to the redactor before anything can print it.
pub(super) fn load_secrets(
    redactor: &Redactor,
    rb: &Runbook,
    given: &Map<String, Json>,
) -> Result<Map<String, Json>, Error> {
    let mut out = Map::new();
    for (name, src) in &rb.secrets {
        if let Some(v) = given.get(name).and_then(Json::as_str).filter(|v| !v.is_empty()) {
            redactor.add(v);
            out.insert(name.clone(), Json::String(v.to_string()));
            continue;
        }
        let value = match (&src.env, &src.file) {
            (Some(EnvNames::Many(vars)), _) => {
                let set: Vec<String> =
                    vars.iter().filter_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty())).collect();
                if set.is_empty() && src.optional {
                    out.insert(name.clone(), Json::String(String::new()));
                    continue;
                }
                if set.is_empty() {
                    return Err(Error::invalid(format!(
                        "secret `{name}` of runbook `{}`: none of the environment variables {} is set",
                        rb.name,
                        vars.join(", ")
                    )));
                }
                set.join("\n")
            }
            (Some(EnvNames::One(var)), _)
                if src.optional && std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) =>
            {
                out.insert(name.clone(), Json::String(String::new()));
                continue;
            }
            (Some(EnvNames::One(var)), _) => std::env::var(var).map_err(|_| {
                Error::invalid(format!(
                    "secret `{name}` of runbook `{}`: environment variable {var} is not set",
                    rb.name
                ))
            })?,
            (None, Some(file)) => {
                let path = if Path::new(file).is_absolute() { PathBuf::from(file) } else { rb.base_dir.join(file) };
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    Error::invalid(format!(
                        "secret `{name}` of runbook `{}`: cannot read {}: {e}",
                        rb.name,
                        path.display()
                    ))
                })?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            (None, None) => return Err(Error::invalid(format!("secret `{name}` has no source"))),
        };
        if value.is_empty() {
            return Err(Error::invalid(format!("secret `{name}` of runbook `{}` is empty", rb.name)));
        }
        redactor.add(&value);
        // Each key of a keyring (one per line) is masked on its own too.
        for line in crate::archive::crypto::keyring_lines(&value) {
            redactor.add(line);
        }
        out.insert(name.clone(), Json::String(value));
    }
    Ok(out)
}

/// Keep a step's outputs for the templates of later steps: `steps.<id>.outputs.<name>`, with
/// the engine's `outcome` and `duration_s` beside them, as GitHub Actions keeps `outputs` apart
/// from `outcome`. The outputs are also kept at `steps.<id>.<name>`, the older form (which
/// `validate` reports as deprecated); there the engine's two names win, as they always did.
pub(super) fn store_outputs(scope: &mut Scope, step: &StepDef, rec: &StepRecord) {
    let Some(id) = &step.id else { return };
    Arc::make_mut(&mut scope.steps).insert(id.clone(), entry(rec));
    compute_late_lets(scope);
}

/// A finished step's `steps.<id>` entry (`store_outputs`).
pub(super) fn entry(rec: &StepRecord) -> Json {
    let outputs = match &rec.outputs {
        Json::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut o = outputs.clone();
    o.insert("outputs".into(), Json::Object(outputs));
    o.insert(
        "outcome".into(),
        Json::String(
            serde_json::to_value(rec.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
        ),
    );
    o.insert("duration_s".into(), json!((rec.duration.as_secs_f64() * 1000.0).round() / 1000.0));
    Json::Object(o)
}

/// The `let` values that read step outputs, each computed once, as soon as every step it
/// reads has its record (passed, failed or skipped): in the order written, so one that reads
/// another is computed after it. One that cannot be computed (a step it reads was skipped and
/// has no outputs) stays undefined, and a field that reads it fails as a field reading that
/// missing output itself would; validate asks a `when:` that reads it to test it first.
fn compute_late_lets(scope: &mut Scope) {
    let mut i = 0;
    while i < scope.late_lets.len() {
        if !scope.late_lets[i].reads.iter().all(|id| scope.steps.contains_key(id)) {
            i += 1;
            continue;
        }
        let l = scope.late_lets.remove(i);
        let env = template::environment();
        if let Ok(v) = template::render_tree(&env, &l.value, &scope.context(), &format!("let.{}", l.name)) {
            scope.lets.insert(l.name, serde_json::to_value(&v).unwrap_or(Json::Null));
        }
    }
}
