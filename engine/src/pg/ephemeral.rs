//! One API for throwaway servers, whatever provides them: `docker` (testcontainers),
//! `native` (local binaries) or `auto`. The `postgres.ephemeral` step, verification and
//! drills all start servers through here, and this is the one place that chooses.
//!
//! `auto` uses Docker when an engine answers and an image can be had: the one asked for, or,
//! when the default official image cannot be pulled (no registry), a local image of the same
//! major (`ci/setup.sh` builds one); otherwise the local binaries. The choice and why are in
//! `reason`. When nothing can serve, the error is one line naming the remedies.

use std::path::PathBuf;
use std::time::Duration;

use super::docker::{self, DockerOptions, DockerServer};
use super::native::{self, NativeOptions, NativeServer, ServerError};
use crate::error::Class;

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
                let help = crate::diag::suggest::help(other, ["auto", "docker", "native"])
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default();
                Err(ServerError::invalid(format!("unknown provider `{other}`: use auto, docker or native{help}")))
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
    /// A native server's directory is made here (`None`: the temp directory); a container
    /// keeps its files in the container.
    pub parent: Option<PathBuf>,
}

/// `15`, `"15"`, `15.4` -> 15. Anything else is invalid input.
pub fn parse_major(text: &str) -> Result<u32, ServerError> {
    let t = text.trim();
    let major = t.split('.').next().unwrap_or_default();
    match major.parse::<u32>() {
        Ok(m) if (9..=99).contains(&m) && t.split('.').skip(1).all(|p| p.parse::<u32>().is_ok()) => Ok(m),
        _ => Err(ServerError::invalid(format!("`{t}` is not a PostgreSQL major version (write 15, 16, 17 ...)"))),
    }
}

enum Inner {
    Native(Box<NativeServer>),
    Docker(Box<DockerServer>),
}

/// A running throwaway server.
pub struct Ephemeral {
    inner: Option<Inner>,
    pub provider: &'static str,
    /// Why this provider was chosen (recorded in outputs and logs).
    pub reason: String,
    /// The image the container runs (docker only).
    pub image: Option<String>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub server_version: String,
    pub major: u32,
    /// The container id (docker) or the server's directory (native).
    pub instance: String,
    /// Its system identifier, when the start read it (native).
    pub system_identifier: Option<String>,
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ephemeral").field("provider", &self.provider).field("port", &self.port).finish()
    }
}

/// What `choose` settled on.
enum Choice {
    Docker {
        engine: bollard::Docker,
        image: String,
        major: u32,
        reason: String,
    },
    /// `docker_problem`: why Docker could not serve, for the error if native cannot either.
    Native {
        reason: String,
        docker_problem: Option<String>,
    },
}

/// The remedies, in one clause, for a machine where no image can be had.
fn image_remedies(major: u32) -> String {
    format!(
        "run `bash ci/setup.sh` (it builds the local image {}), or use the local PostgreSQL binaries \
         (`provider: native`, `--var provider=native` for the shipped runbooks), or set {} or `image:` \
         to an image this machine has or can pull",
        docker::LOCAL_IMAGE.replace("{major}", &major.to_string()),
        docker::IMAGE_ENV
    )
}

/// Pick the provider and image. `auto`: Docker when an engine answers and an image can be
/// had (the one asked for; else, for the default official image, a local image of the same
/// major); otherwise native. `docker`: the same images, but no fallback to native.
async fn choose(opts: &Options) -> Result<Choice, ServerError> {
    let engine = match opts.provider {
        Provider::Native => return Ok(Choice::Native { reason: "native: requested".into(), docker_problem: None }),
        Provider::Docker => {
            docker::engine().await.map_err(|e| ServerError::environment(format!("provider docker: {e}")))?
        }
        Provider::Auto => match docker::engine().await {
            Ok(d) => d,
            Err(e) => return Ok(Choice::Native { reason: format!("native: auto, {e}"), docker_problem: Some(e) }),
        },
    };
    let how = if opts.provider == Provider::Docker { "docker: requested" } else { "docker: auto" };
    let major = opts.major.unwrap_or_else(|| default_major(true));
    let wanted = docker::image_for(major, opts.image.as_deref());
    let pull_error = match docker::ensure_image(&engine, &wanted).await {
        Ok(source) => {
            let reason = format!("{how}, image {wanted} {source}");
            return Ok(Choice::Docker { engine, image: wanted, major, reason });
        }
        Err(e) => e,
    };
    // Only the default image is replaced: an image the user named is what they meant.
    if !docker::image_is_explicit(opts.image.as_deref()) {
        if let Some(local) = docker::local_image_for(&engine, major).await {
            let reason = format!("{how}, {wanted} cannot be pulled ({pull_error}); using the local image {local}");
            return Ok(Choice::Docker { engine, image: local, major, reason });
        }
    }
    let problem = if docker::image_is_explicit(opts.image.as_deref()) {
        format!("image {wanted} cannot be pulled ({pull_error}; {})", docker::local_tags_of(&engine, &wanted).await)
    } else {
        format!(
            "image {wanted} cannot be pulled ({pull_error}) and there is no local image of PostgreSQL {major} ({} or postgres:{major}*)",
            docker::LOCAL_IMAGE.replace("{major}", &major.to_string())
        )
    };
    if opts.provider == Provider::Docker {
        return Err(ServerError::environment(format!("provider docker: {problem}; {}", image_remedies(major))));
    }
    Ok(Choice::Native { reason: format!("native: auto, Docker {problem}"), docker_problem: Some(problem) })
}

impl Ephemeral {
    pub async fn start(opts: Options) -> Result<Ephemeral, ServerError> {
        match choose(&opts).await? {
            Choice::Docker { engine, image, major, reason } => {
                Self::start_docker(&opts, &engine, image, major, reason).await
            }
            Choice::Native { reason, docker_problem } => {
                let major = opts.major.unwrap_or_else(|| default_major(false));
                match Self::start_native(&opts, major, reason).await {
                    // auto found neither: one line with both reasons and what to do.
                    Err(ServerError { class: Class::Environment, message: native, .. }) if docker_problem.is_some() => {
                        Err(ServerError::environment(format!(
                            "no throwaway PostgreSQL {major} server: Docker: {}; native: {native}; {}",
                            docker_problem.unwrap_or_default(),
                            remedies_without_docker(major)
                        )))
                    }
                    other => other,
                }
            }
        }
    }

    async fn start_docker(
        opts: &Options,
        engine: &bollard::Docker,
        image: String,
        major: u32,
        reason: String,
    ) -> Result<Ephemeral, ServerError> {
        let s = DockerServer::start(
            engine,
            DockerOptions {
                major,
                image: Some(image),
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
            return Err(ServerError::environment(msg));
        }
        Ok(Ephemeral::of(Inner::Docker(Box::new(s)), found, reason))
    }

    async fn start_native(opts: &Options, major: u32, reason: String) -> Result<Ephemeral, ServerError> {
        let s = NativeServer::start(NativeOptions {
            major: Some(major),
            bin_dir: opts.bin_dir.clone(),
            user: opts.user.clone(),
            database: opts.database.clone(),
            ready_timeout: opts.ready_timeout,
            parent: opts.parent.clone(),
        })
        .await?;
        let major = s.major;
        Ok(Ephemeral::of(Inner::Native(Box::new(s)), major, reason))
    }

    /// The handle of a server a provider started: where to reach it, which both providers'
    /// servers name alike, and what only one of them has (an image, a system identifier).
    fn of(inner: Inner, major: u32, reason: String) -> Ephemeral {
        let (host, port, user, password, database, server_version) = match &inner {
            Inner::Docker(s) => (&s.host, s.port, &s.user, &s.password, &s.database, &s.server_version),
            Inner::Native(s) => (&s.host, s.port, &s.user, &s.password, &s.database, &s.server_version),
        };
        let (provider, image, instance, system_identifier) = match &inner {
            Inner::Docker(s) => ("docker", Some(s.image.clone()), s.container_id.clone(), None),
            Inner::Native(s) => ("native", None, s.dir().display().to_string(), s.system_identifier.clone()),
        };
        Ephemeral {
            provider,
            reason,
            image,
            host: host.clone(),
            port,
            user: user.clone(),
            password: password.clone(),
            database: database.clone(),
            server_version: server_version.clone(),
            major,
            instance,
            system_identifier,
            inner: Some(inner),
        }
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

/// What to do when auto found neither provider.
fn remedies_without_docker(major: u32) -> String {
    format!(
        "install the PostgreSQL {major} server binaries (or `bash ci/setup.sh`, which also builds the local image {}), \
         or set {} or `image:` to an image this machine has or can pull",
        docker::LOCAL_IMAGE.replace("{major}", &major.to_string()),
        docker::IMAGE_ENV
    )
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
