//! `runbook`: run another runbook as its own suite (its own JUnit testsuite).

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NestedWith {
    path: String,
    #[serde(default)]
    vars: serde_yaml::Mapping,
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, String>,
}

impl With for NestedWith {}

pub const RUNBOOK: StepKind = StepKind {
    name: "runbook",
    summary: "Run another runbook as a sub-suite, passing variables.",
    fields: &[
        Field {
            name: "path",
            ty: "path",
            required: true,
            doc: "runbook file (relative to this runbook) or shipped runbook name",
        },
        Field { name: "vars", ty: "map", required: false, doc: "variables for the nested runbook" },
        Field {
            name: "secrets",
            ty: "map",
            required: false,
            doc: "values for the nested runbook's secrets (instead of their env/file sources)",
        },
    ],
    outputs: &[Field {
        name: "steps",
        ty: "map",
        required: false,
        doc: "outputs of the nested runbook's steps, by id",
    }],
    check: check_with::<NestedWith>,
    report_log: false,
    interactive: false,
    run,
};

fn run(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: NestedWith = typed(with)?;
        let path = ctx.resolve(&w.path);
        let nested = ctx.nested.clone();
        let secrets = w.secrets.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
        nested.run_nested(ctx, path, w.vars, secrets).await
    })
}
