//! `postgres.ephemeral`: a throwaway server for the rest of the runbook, torn down when the
//! runbook ends (after `finally`), whether it passed, failed, timed out or was interrupted.

use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With, WithError};
use crate::pg::ephemeral::{parse_major, Ephemeral, Options, Provider};
use crate::pg::native::ServerError;
use crate::template::is_template;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EphemeralWith {
    #[serde(default = "auto")]
    provider: String,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    version: Option<String>,
    image: Option<String>,
    bin_dir: Option<String>,
    user: Option<String>,
    database: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    ready_timeout: Option<Duration>,
}

fn auto() -> String {
    "auto".into()
}

impl With for EphemeralWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.provider) {
            self.provider.parse::<Provider>().map_err(|e| WithError::new("provider", e.to_string()))?;
        }
        if let Some(v) = self.version.as_deref().filter(|v| !is_template(v)) {
            parse_major(v).map_err(|e| WithError::new("version", e.to_string()))?;
        }
        Ok(())
    }
}

pub const EPHEMERAL: StepKind = StepKind {
    name: "postgres.ephemeral",
    summary: "Start a throwaway PostgreSQL server (Docker or local binaries) for the rest of the runbook.",
    fields: &[
        Field {
            name: "provider",
            ty: "auto|docker|native",
            required: false,
            doc: "auto (default): docker when an engine answers and an image can be had (else a local image of the same major, e.g. pgdrill/postgres-local:15), else native",
        },
        Field {
            name: "version",
            ty: "major version",
            required: false,
            doc: "e.g. 15 (default: the local pg_dump's major, else 17)",
        },
        Field {
            name: "image",
            ty: "string",
            required: false,
            doc: "docker image (default $PGDRILL_DOCKER_IMAGE or postgres:<major>; a pull silent for 20 s is abandoned)",
        },
        Field { name: "bin_dir", ty: "path", required: false, doc: "native: directory with initdb and postgres" },
        Field { name: "user", ty: "string", required: false, doc: "superuser name (default postgres)" },
        Field { name: "database", ty: "string", required: false, doc: "database to create (default postgres)" },
        Field {
            name: "ready_timeout",
            ty: "duration",
            required: false,
            doc: "how long to wait for the first connection",
        },
    ],
    outputs: &[
        Field {
            name: "url",
            ty: "string",
            required: false,
            doc: "connection URL (contains the password; redacted in reports)",
        },
        Field { name: "host", ty: "string", required: false, doc: "127.0.0.1" },
        Field { name: "port", ty: "integer", required: false, doc: "published port" },
        Field { name: "user", ty: "string", required: false, doc: "superuser" },
        Field { name: "password", ty: "secret", required: false, doc: "generated per instance, redacted everywhere" },
        Field { name: "database", ty: "string", required: false, doc: "database name" },
        Field { name: "provider", ty: "string", required: false, doc: "docker or native" },
        Field {
            name: "provider_reason",
            ty: "string",
            required: false,
            doc: "why that provider (and image) was chosen",
        },
        Field { name: "image", ty: "string", required: false, doc: "docker: the image the container runs; native: empty" },
        Field { name: "server_version", ty: "string", required: false, doc: "server_version as reported" },
        Field { name: "major", ty: "integer", required: false, doc: "major version" },
        Field { name: "instance", ty: "string", required: false, doc: "docker: the container id; native: the data directory" },
        Field {
            name: "startup_ms",
            ty: "integer",
            required: false,
            doc: "from the step's start to the first successful query",
        },
    ],
    check: check_with::<EphemeralWith>,
    // Which provider and image served, and why (a fallback must be visible where it happened).
    report_log: true,
    interactive: false,
    run,
};

fn to_step_error(e: ServerError) -> StepError {
    match e {
        ServerError::Invalid(m) => StepError::Invalid(m),
        ServerError::Environment(m) => StepError::Environment(m),
    }
}

fn run(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let w: EphemeralWith = typed(with)?;
        let provider: Provider = w.provider.parse().map_err(to_step_error)?;
        let major = w.version.as_deref().map(parse_major).transpose().map_err(to_step_error)?;
        let opts = Options {
            provider,
            major,
            image: w.image.clone(),
            bin_dir: w.bin_dir.as_deref().map(|d| ctx.resolve(d)),
            user: w.user.clone(),
            database: w.database.clone(),
            ready_timeout: w.ready_timeout,
        };
        let server = Ephemeral::start(opts).await.map_err(to_step_error)?;
        ctx.redactor.add(&server.password);
        let startup = started.elapsed();
        ctx.log(format!(
            "{} ({}); PostgreSQL {} on {}:{}, ready in {} ms",
            server.provider,
            server.reason,
            server.server_version,
            server.host,
            server.port,
            startup.as_millis()
        ));
        let mut o = Outputs::new();
        o.insert("url".into(), server.url().into());
        o.insert("host".into(), server.host.clone().into());
        o.insert("port".into(), server.port.into());
        o.insert("user".into(), server.user.clone().into());
        o.insert("password".into(), server.password.clone().into());
        o.insert("database".into(), server.database.clone().into());
        o.insert("provider".into(), server.provider.into());
        o.insert("provider_reason".into(), server.reason.clone().into());
        o.insert("image".into(), server.image.clone().unwrap_or_default().into());
        o.insert("server_version".into(), server.server_version.clone().into());
        o.insert("major".into(), server.major.into());
        o.insert("instance".into(), server.instance.clone().into());
        o.insert("startup_ms".into(), (startup.as_millis() as u64).into());
        ctx.fact(crate::exec::Fact::Server { version: server.server_version.clone() });
        ctx.resources.push(format!("{} server of step `{}`", server.provider, ctx.step), Box::new(server));
        Ok(o)
    })
}

impl super::Teardown for Ephemeral {
    fn teardown(self: Box<Self>) -> super::BoxFuture<'static, ()> {
        Box::pin(async move { self.stop().await })
    }
}
