//! One API for throwaway servers, whatever provides them: `docker` (testcontainers),
//! `native` (local binaries) or `auto` (docker when an engine answers, else native). The
//! `postgres.ephemeral` step, verification and drills all start servers through here.

use std::path::PathBuf;
use std::time::Duration;

use super::docker::{self, DockerOptions, DockerServer};
use super::native::{self, NativeOptions, NativeServer, ServerError};

/// Who provides the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Auto,
    Docker,
    Native,
}

impl std::str::FromStr for Provider {
    type Err = ServerError;
    fn from_str(s: &str) -> Result<Self, ServerError> {
        match s.trim() {
            "auto" | "" => Ok(Provider::Auto),
            "docker" => Ok(Provider::Docker),
            "native" => Ok(Provider::Native),
            other => {
                let help = crate::runbook::suggest::help(other, ["auto", "docker", "native"])
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                Err(ServerError::Invalid(format!("unknown provider `{other}`: use auto, docker or native{help}")))
            }
        }
    }
}

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub provider: Provider,
    /// Major version; `None`: the local client tools' major (so dumps and restores match),
    /// else 17.
    pub major: Option<u32>,
    pub image: Option<String>,
    pub bin_dir: Option<PathBuf>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub ready_timeout: Option<Duration>,
}

/// `15`, `"15"`, `15.4` -> 15. Anything else is invalid input.
pub fn parse_major(text: &str) -> Result<u32, ServerError> {
    let t = text.trim();
    let major = t.split('.').next().unwrap_or_default();
    match major.parse::<u32>() {
        Ok(m) if (9..=99).contains(&m) && t.split('.').skip(1).all(|p| p.parse::<u32>().is_ok()) => Ok(m),
        _ => Err(ServerError::Invalid(format!("`{t}` is not a PostgreSQL major version (write 15, 16, 17 ...)"))),
    }
}

enum Inner {
    Native(NativeServer),
    Docker(Box<DockerServer>),
}

/// A running throwaway server.
pub struct Ephemeral {
    inner: Option<Inner>,
    pub provider: &'static str,
    /// Why this provider was chosen (recorded in outputs and logs).
    pub reason: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub server_version: String,
    pub major: u32,
    /// The container id (docker) or the server's directory (native).
    pub instance: String,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral").field("provider", &self.provider).field("port", &self.port).finish()
    }
}

impl Ephemeral {
    pub async fn start(opts: Options) -> Result<Ephemeral, ServerError> {
        let (use_docker, reason, engine) = match opts.provider {
            Provider::Native => (false, "native: requested".to_string(), None),
            Provider::Docker => match docker::engine().await {
                Ok(d) => (true, "docker: requested".to_string(), Some(d)),
                Err(e) => return Err(ServerError::Environment(format!("provider docker: {e}"))),
            },
            Provider::Auto => match docker::engine().await {
                Ok(d) => (true, "docker: auto, a Docker engine answered".to_string(), Some(d)),
                Err(e) => (false, format!("native: auto, {e}"), None),
            },
        };
        let major = match opts.major {
            Some(m) => m,
            None => default_major(use_docker),
        };
        if let (true, Some(engine)) = (use_docker, engine) {
            let s = DockerServer::start(
                &engine,
                DockerOptions {
                    major,
                    image: opts.image.clone(),
                    user: opts.user.clone(),
                    database: opts.database.clone(),
                    ready_timeout: opts.ready_timeout,
                },
            )
            .await?;
            let found = native::parse_major(&s.server_version).unwrap_or(major);
            if found != major {
                let msg = format!("image {} runs PostgreSQL {found}, not the {major} asked for", s.image);
                s.stop().await;
                return Err(ServerError::Environment(msg));
            }
            return Ok(Ephemeral {
                provider: "docker",
                reason,
                host: s.host.clone(),
                port: s.port,
                user: s.user.clone(),
                password: s.password.clone(),
                database: s.database.clone(),
                server_version: s.server_version.clone(),
                major: found,
                instance: s.container_id.clone(),
                inner: Some(Inner::Docker(Box::new(s))),
            });
        }
        let s = NativeServer::start(NativeOptions {
            major: Some(major),
            bin_dir: opts.bin_dir.clone(),
            user: opts.user.clone(),
            database: opts.database.clone(),
            ready_timeout: opts.ready_timeout,
        })
        .await?;
        Ok(Ephemeral {
            provider: "native",
            reason,
            host: s.host.clone(),
            port: s.port,
            user: s.user.clone(),
            password: s.password.clone(),
            database: s.database.clone(),
            server_version: s.server_version.clone(),
            major: s.major,
            instance: s.dir().display().to_string(),
            inner: Some(Inner::Native(s)),
        })
    }

    pub fn url(&self) -> String {
        super::server_url(&self.user, &self.password, &self.host, self.port, &self.database)
    }

    pub fn url_for(&self, database: &str) -> String {
        super::server_url(&self.user, &self.password, &self.host, self.port, database)
    }

    /// Stop the server and remove everything it had.
    pub async fn stop(mut self) {
        match self.inner.take() {
            Some(Inner::Docker(d)) => d.stop().await,
            Some(Inner::Native(n)) => tokio::task::block_in_place(|| n.stop()),
            None => {}
        }
    }
}

/// The major of the local pg_dump when there is one (dumps made here then restore), else 17.
fn default_major(docker: bool) -> u32 {
    if !docker {
        if let Some(m) = native::installed_majors().last() {
            return *m;
        }
    }
    crate::child::output(crate::child::command("pg_dump").arg("--version"))
        .ok()
        .and_then(|o| native::parse_major(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or(17)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_providers_parse() {
        assert_eq!(parse_major("15").ok(), Some(15));
        assert_eq!(parse_major("16.2").ok(), Some(16));
        assert!(parse_major("latest").is_err());
        assert!(parse_major("15.x").is_err());
        assert_eq!("docker".parse::<Provider>().ok(), Some(Provider::Docker));
        let e = "dokcer".parse::<Provider>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("did you mean `docker`?"), "{e}");
    }
}
