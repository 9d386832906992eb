//! `sleep`: wait, for pacing drills and letting services settle.

use std::time::Duration;

use serde::Deserialize;

use super::{Fields, Step, StepCtx, StepError, With};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SleepWith {
    /// how long, e.g. `5s`
    #[serde(deserialize_with = "super::de::duration")]
    duration: Duration,
}

impl With for SleepWith {}

pub struct Sleep;

impl Step for Sleep {
    const NAME: &'static str = "sleep";
    const SUMMARY: &'static str = "Wait for a while.";
    type With = SleepWith;
    type Outputs = ();

    async fn run(ctx: StepCtx, w: SleepWith) -> Result<(), StepError> {
        ctx.log(format!("sleeping {}", humantime::format_duration(w.duration)));
        tokio::time::sleep(w.duration).await;
        Ok(())
    }
}
