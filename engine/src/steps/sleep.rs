//! `sleep`: wait, for pacing drills and letting services settle.

use std::time::Duration;

use serde::Deserialize;

use super::{Fields, step, StepCtx, StepError, With};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SleepWith {
    /// how long, e.g. `5s`
    #[serde(deserialize_with = "super::de::duration")]
    duration: Duration,
}

impl With for SleepWith {}

/// Wait for a while.
#[step(name = "sleep")]
impl Sleep {
    async fn run(ctx: StepCtx, w: SleepWith) -> Result<(), StepError> {
        ctx.log(format!("sleeping {}", humantime::format_duration(w.duration)));
        // A timer fires on the timer wheel's next millisecond at the earliest: `sleep 0s`
        // waited about 1 ms, most of a 10,000-step runbook's time (issue 36 case 11). A zero
        // wait yields once instead, so the other tasks still get their turn.
        if w.duration.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(w.duration).await;
        }
        Ok(())
    }
}
