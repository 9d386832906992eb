//! `runbook`: run another runbook as its own suite (its own JUnit testsuite).

use serde::{Deserialize, Serialize};

use super::{Fields, Outputs, step, StepCtx, StepError, With};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct NestedWith {
    /// runbook file (relative to this runbook) or shipped runbook name
    #[field(ty = "path")]
    path: String,
    /// variables for the nested runbook
    #[serde(default)]
    vars: serde_yaml::Mapping,
    /// values for the nested runbook's secrets (instead of their env/file sources)
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
}

impl With for NestedWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct NestedOutputs {
    /// outputs of the nested runbook's steps, by id
    steps: serde_json::Map<String, serde_json::Value>,
}

/// Run another runbook as a sub-suite, passing variables.
// finishes_itself: its rollbacks and `finally` must run; it is told to stop, never dropped.
// nests: the loader follows its `path:` (a cycle, the `vars:` it hands down) by this flag.
#[step(name = "runbook", finishes_itself, nests)]
impl Runbook {
    async fn run(ctx: StepCtx, w: NestedWith) -> Result<NestedOutputs, StepError> {
        let path = ctx.local("path", &w.path)?;
        let nested = ctx.nested.clone();
        let secrets = w.secrets.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        let mut o = nested.run_nested(ctx, path, w.vars, secrets).await?;
        // The runner hands the nested suite's outputs back under `steps`.
        let steps = match o.remove("steps") {
            Some(serde_json::Value::Object(m)) => m,
            _ => Outputs::new(),
        };
        Ok(NestedOutputs { steps })
    }
}
