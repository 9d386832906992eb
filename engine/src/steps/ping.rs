//! `pg.ping`: connect to a server and report what it is, changing nothing: a cheap first
//! step that says "the server is there" apart from whatever a later step finds wrong.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{pg_error, Fields, step, StepCtx, StepError, With};
use crate::pg;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct PingWith {
    /// connection URL (password from the URL or PGPASSWORD)
    #[field(conninfo)]
    url: String,
    /// how long to wait for the connection and the answer (default 5s)
    #[serde(default = "five_seconds", deserialize_with = "super::de::duration")]
    timeout: Duration,
}

fn five_seconds() -> Duration {
    Duration::from_secs(5)
}

impl With for PingWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct PingOutputs {
    /// the server's `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`
    server_version: String,
    /// its major version, e.g. 15
    server_major: u32,
    /// whether it is a standby (`pg_is_in_recovery()`)
    in_recovery: bool,
}

/// Connect to a server and report its version and whether it is a standby; nothing is changed. Unreachable within
/// `timeout`: exit 3.
#[step(name = "pg.ping")]
impl Ping {
    async fn run(ctx: StepCtx, w: PingWith) -> Result<PingOutputs, StepError> {
        let asked = async {
            let client = pg::connect(&w.url).await?;
            let row = client
                .query_one(
                    "select current_setting('server_version'), \
                     current_setting('server_version_num')::int / 10000, pg_is_in_recovery()",
                    &[],
                )
                .await
                .map_err(pg_error)?;
            let major: i32 = row.get(1);
            Ok::<_, StepError>(PingOutputs {
                server_version: row.get(0),
                server_major: u32::try_from(major).unwrap_or_default(),
                in_recovery: row.get(2),
            })
        };
        let out = tokio::time::timeout(w.timeout, asked).await.map_err(|_| {
            StepError::environment(format!(
                "no answer from {} within {}: is the server running and reachable from here?",
                pg::display_url(&w.url),
                humantime::format_duration(w.timeout)
            ))
        })??;
        ctx.log(format!(
            "{} answers: PostgreSQL {}{}",
            pg::display_url(&w.url),
            out.server_version,
            if out.in_recovery { " (standby)" } else { "" }
        ));
        Ok(out)
    }
}
