//! `sleep`: wait, for pacing drills and letting services settle.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepWith {
    #[serde(deserialize_with = "super::de::duration")]
    duration: Duration,
}

impl With for SleepWith {}

pub const SLEEP: StepKind = StepKind {
    name: "sleep",
    summary: "Wait for a while.",
    fields: &[Field { name: "duration", ty: "duration", required: true, doc: "how long, e.g. `5s`" }],
    outputs: &[],
    check: check_with::<SleepWith>,
    report_log: false,
    run,
};

fn run(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: SleepWith = typed(with)?;
        ctx.log(format!("sleeping {}", humantime::format_duration(w.duration)));
        tokio::time::sleep(w.duration).await;
        Ok(Outputs::new())
    })
}
