//! A `runbook` step's way back into the executor: the nested runbook runs as a suite of its
//! own under the step, inheriting what can cancel it and the chain of files that nest it.

use std::path::PathBuf;
use std::sync::Weak;

use serde_json::{Map, Value as Json};

use super::{Executor, SuiteCtx};
use crate::error::{Error, ExitCode};
use crate::runbook::{load_runbook_ref, MAX_NESTING};
use crate::steps::{self, NestedRunner, Outputs, StepCtx, StepError};

/// What a `runbook` step runs its runbook with: the executor, and what the nested suite
/// inherits (the cancellation that reaches it, the chain of files that nest it).
pub(super) struct NestedHandle {
    pub(super) exec: Weak<Executor>,
    pub(super) cx: SuiteCtx,
}

impl NestedRunner for NestedHandle {
    fn run_nested(
        &self,
        ctx: StepCtx,
        path: PathBuf,
        vars: serde_yaml::Mapping,
        secrets: Map<String, Json>,
    ) -> steps::BoxFuture<'static, Result<Outputs, StepError>> {
        let me = self.exec.upgrade();
        let mut cx = self.cx.clone();
        Box::pin(async move {
            let me = me.ok_or_else(|| StepError::environment("executor is gone"))?;
            let rb = load_runbook_ref(&path).map_err(Error::into_failure)?;
            if cx.chain.len() >= MAX_NESTING {
                let mut files: Vec<&str> = Vec::new();
                for f in cx.chain.iter().chain(std::iter::once(&rb.file)) {
                    if !files.contains(&f.as_str()) {
                        files.push(f);
                    }
                }
                return Err(StepError::invalid(format!(
                    "runbooks nest deeper than {MAX_NESTING} levels (through {}): a runbook that nests itself never ends",
                    files.join(", ")
                )));
            }
            cx.chain.push(rb.file.clone());
            let res = me.run_suite(&rb, &vars, &secrets, Some(ctx.suite), cx).await.map_err(Error::into_failure)?;
            let msg = || format!("runbook `{}` {}", rb.name, res.message.clone().unwrap_or_default());
            match res.exit.class() {
                _ if res.exit == ExitCode::Passed => {
                    let mut o = Outputs::new();
                    o.insert("steps".into(), Json::Object(res.outputs));
                    Ok(o)
                }
                // The nested run's class is the step's: a failed check fails it, a broken
                // environment or invalid input is an error of the same class.
                Some(class) => Err(StepError::new(class, msg())),
                // Interrupted (by a signal, the step's timeout or a failing sibling): the
                // step failed; what stopped it is reported by the step's own outcome.
                None => Err(StepError::failed(msg())),
            }
        })
    }
}
