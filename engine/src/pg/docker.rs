//! Throwaway PostgreSQL servers in Docker containers, through testcontainers.
//!
//! The image follows the official `postgres` image's contract (POSTGRES_* variables and its
//! readiness lines). The container port is published on 127.0.0.1 only, the superuser
//! password is generated per instance, and every container carries labels naming the
//! pgdrill process that owns it, so containers orphaned by a crash are removed at the next
//! start. `stop` removes the container; `Drop` does too (testcontainers' drop), for panics.
//!
//! Images are made present before a container is created (`ensure_image`), so a pull is
//! bounded: a registry that cannot be reached fails in seconds, not at testcontainers' pace,
//! and the caller can choose another image or provider. This module never chooses: that is
//! `ephemeral`'s job.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use bollard::query_parameters::{
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use testcontainers::core::{IntoContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use super::native::ServerError;

/// Label on every container pgdrill starts.
pub const LABEL: &str = "pgdrill.ephemeral";
/// Label holding `<hostname>:<pid>` of the owning pgdrill process.
pub const OWNER_LABEL: &str = "pgdrill.owner";
/// Label unique to one start, so an interrupted start can remove exactly its container.
pub const INSTANCE_LABEL: &str = "pgdrill.instance";
/// Environment variable overriding the default image; `{major}` is replaced.
pub const IMAGE_ENV: &str = "PGDRILL_DOCKER_IMAGE";
/// The local image `ci/setup.sh` builds from Debian's packages (`{major}` is replaced). It
/// honours the official image's POSTGRES_* contract, so it stands in for `postgres:<major>`
/// when that cannot be pulled.
pub const LOCAL_IMAGE: &str = "pgdrill/postgres-local:{major}";
/// A pull that goes this long without a word from the daemon is abandoned. An unreachable
/// registry either fails at once (no DNS) or hangs on connect; a pull that makes progress
/// reports every layer and may take as long as it needs.
pub const PULL_STALL: Duration = Duration::from_secs(20);

/// A running container. Call `stop`; dropping also removes it, in the background.
pub struct DockerServer {
    container: Option<ContainerAsync<GenericImage>>,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub image: String,
    pub server_version: String,
    pub container_id: String,
}

impl std::fmt::Debug for DockerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerServer").field("image", &self.image).field("port", &self.port).finish()
    }
}

/// Options for a container.
#[derive(Debug, Clone, Default)]
pub struct DockerOptions {
    pub major: u32,
    pub image: Option<String>,
    pub user: Option<String>,
    pub database: Option<String>,
    pub ready_timeout: Option<Duration>,
}

/// Connect to the Docker engine and check that it answers.
pub async fn engine() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|e| format!("no Docker engine configured: {e}"))?;
    match tokio::time::timeout(Duration::from_secs(3), docker.ping()).await {
        Ok(Ok(_)) => Ok(docker),
        Ok(Err(e)) => Err(format!("the Docker engine does not answer: {e}")),
        Err(_) => Err("the Docker engine did not answer within 3 s".into()),
    }
}

/// The image to use: `image:` from the runbook, else $PGDRILL_DOCKER_IMAGE, else the
/// official `postgres:<major>`.
pub fn image_for(major: u32, explicit: Option<&str>) -> String {
    if let Some(i) = explicit {
        return i.to_string();
    }
    match std::env::var(IMAGE_ENV) {
        Ok(t) if !t.trim().is_empty() => t.replace("{major}", &major.to_string()),
        _ => format!("postgres:{major}"),
    }
}

/// True when the image was named by the runbook or $PGDRILL_DOCKER_IMAGE, not defaulted.
pub fn image_is_explicit(explicit: Option<&str>) -> bool {
    explicit.is_some() || std::env::var(IMAGE_ENV).is_ok_and(|t| !t.trim().is_empty())
}

/// How an image came to be present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    Local,
    Pulled,
}

impl std::fmt::Display for ImageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ImageSource::Local => "present locally",
            ImageSource::Pulled => "pulled",
        })
    }
}

/// Pulls that failed in this process, with why: the second server of a run does not knock
/// on the same closed door (a drill starts two or more).
static UNPULLABLE: LazyLock<Mutex<HashMap<String, String>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Make `image` present: already local, or pulled with `PULL_STALL` as the bound on silence.
/// The error is the daemon's reason in one line.
pub async fn ensure_image(docker: &Docker, image: &str) -> Result<ImageSource, String> {
    if docker.inspect_image(image).await.is_ok() {
        return Ok(ImageSource::Local);
    }
    if let Some(why) = UNPULLABLE.lock().ok().and_then(|m| m.get(image).cloned()) {
        return Err(why);
    }
    let result = pull(docker, image).await;
    if let Err(why) = &result {
        if let Ok(mut m) = UNPULLABLE.lock() {
            m.insert(image.to_string(), why.clone());
        }
    }
    result.map(|()| ImageSource::Pulled)
}

async fn pull(docker: &Docker, image: &str) -> Result<(), String> {
    let (repo, tag) = split_image(image);
    let opts = CreateImageOptionsBuilder::default().from_image(&repo).tag(&tag).build();
    let mut stream = docker.create_image(Some(opts), None, None);
    loop {
        match tokio::time::timeout(PULL_STALL, stream.next()).await {
            Err(_) => return Err(format!("the pull made no progress for {} s", PULL_STALL.as_secs())),
            Ok(None) => break,
            Ok(Some(Err(bollard::errors::Error::DockerResponseServerError { message, .. }))) => {
                return Err(one_line(&message))
            }
            Ok(Some(Err(e))) => return Err(one_line(&e.to_string())),
            Ok(Some(Ok(_))) => {}
        }
    }
    // A stream that ends without an error should have left the image; check rather than trust.
    match docker.inspect_image(image).await {
        Ok(_) => Ok(()),
        Err(e) => Err(format!("the pull ended but the image is not there: {}", one_line(&e.to_string()))),
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A local image of PostgreSQL `major` known to honour the POSTGRES_* contract: the one
/// `ci/setup.sh` builds (`LOCAL_IMAGE`), else an official `postgres` tag of that major
/// (`15`, `15.4`, `15-alpine`, `15.4-bookworm`). Never pulls.
pub async fn local_image_for(docker: &Docker, major: u32) -> Option<String> {
    let local = LOCAL_IMAGE.replace("{major}", &major.to_string());
    if docker.inspect_image(&local).await.is_ok() {
        return Some(local);
    }
    let m = major.to_string();
    local_tags(docker, "postgres").await.into_iter().find(|t| {
        let tag = t.strip_prefix("postgres:").or_else(|| t.strip_prefix("docker.io/library/postgres:"));
        tag.is_some_and(|tag| {
            tag == m || tag.strip_prefix(m.as_str()).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
        })
    })
}

/// Local tags of an image's repository, for messages ("local images of postgres: ...").
pub async fn local_tags_of(docker: &Docker, image: &str) -> String {
    let (repo, _) = split_image(image);
    let tags = local_tags(docker, &repo).await;
    if tags.is_empty() {
        format!("no local images of {repo}")
    } else {
        format!("local images of {repo}: {}", tags.join(", "))
    }
}

/// `<hostname>:<pid>` of this process, as the owner label gives it.
pub(crate) fn owner() -> String {
    let host = crate::util::hostname().unwrap_or_default();
    format!("{host}:{}", std::process::id())
}

/// Remove labelled containers whose owning pgdrill process (on this host) is gone.
pub async fn reap_stale(docker: &Docker) -> usize {
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![LABEL])]);
    let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
    let Ok(list) = docker.list_containers(Some(opts)).await else { return 0 };
    let me_host = owner().split(':').next().unwrap_or_default().to_string();
    let mut removed = 0;
    for c in list {
        let Some(id) = c.id.as_deref() else { continue };
        let owner = c.labels.as_ref().and_then(|l| l.get(OWNER_LABEL)).cloned().unwrap_or_default();
        let (host, pid) = owner.rsplit_once(':').unwrap_or(("", ""));
        if host != me_host {
            continue;
        }
        let alive = pid.parse::<i32>().ok().is_some_and(crate::child::is_alive);
        if alive {
            continue;
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        if docker.remove_container(id, Some(rm)).await.is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Local tags of an image repository, for "what is available" messages.
async fn local_tags(docker: &Docker, repo: &str) -> Vec<String> {
    let filters: HashMap<&str, Vec<&str>> = HashMap::from([("reference", vec![repo])]);
    let opts = ListImagesOptionsBuilder::default().filters(&filters).build();
    let mut tags: Vec<String> =
        docker.list_images(Some(opts)).await.unwrap_or_default().into_iter().flat_map(|i| i.repo_tags).collect();
    tags.sort();
    tags
}

fn split_image(image: &str) -> (String, String) {
    // A colon after the last slash separates the tag (a registry port has a slash after it).
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => (image[..i].to_string(), image[i + 1..].to_string()),
        _ => (image.to_string(), "latest".to_string()),
    }
}

struct StartGuard {
    docker: Docker,
    instance: String,
    armed: bool,
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let docker = self.docker.clone();
        let label = format!("{INSTANCE_LABEL}={}", self.instance);
        let sweep = async move {
            let filters: HashMap<&str, Vec<&str>> = HashMap::from([("label", vec![label.as_str()])]);
            let opts = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
            for c in docker.list_containers(Some(opts)).await.unwrap_or_default() {
                if let Some(id) = c.id {
                    let rm = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                    let _ = docker.remove_container(&id, Some(rm)).await;
                }
            }
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
                tokio::task::block_in_place(|| handle.block_on(sweep));
            }
        }
    }
}

impl DockerServer {
    pub async fn start(docker: &Docker, opts: DockerOptions) -> Result<DockerServer, ServerError> {
        reap_stale(docker).await;
        let image = image_for(opts.major, opts.image.as_deref());
        let (repo, tag) = split_image(&image);
        let user = opts.user.clone().unwrap_or_else(|| "postgres".into());
        let database = opts.database.clone().unwrap_or_else(|| "postgres".into());
        let password = super::native::generate_password();
        let ready = opts.ready_timeout.unwrap_or(Duration::from_secs(120));

        let instance = super::native::generate_password();
        // If this future is dropped half-way (Ctrl-C, timeout), the container may exist before
        // testcontainers hands us its handle; the guard removes it by its instance label.
        let mut guard = StartGuard { docker: docker.clone(), instance: instance.clone(), armed: true };
        let request = GenericImage::new(repo.clone(), tag.clone())
            .with_exposed_port(5432.tcp())
            .with_wait_for(WaitFor::message_on_stdout("PostgreSQL init process complete; ready for start up."))
            .with_env_var("POSTGRES_PASSWORD", &password)
            .with_env_var("POSTGRES_USER", &user)
            .with_env_var("POSTGRES_DB", &database)
            .with_cmd(std::iter::once("postgres".to_string()).chain(super::throwaway_args()))
            .with_label(LABEL, "1")
            .with_label(OWNER_LABEL, owner())
            .with_label(INSTANCE_LABEL, &instance)
            .with_startup_timeout(ready)
            // Publish on loopback only: a throwaway server with a restored production copy
            // must not be reachable from the network.
            .with_host_config_modifier(|hc| {
                hc.publish_all_ports = Some(false);
                hc.port_bindings = Some(HashMap::from([(
                    "5432/tcp".to_string(),
                    Some(vec![bollard::models::PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(String::new()),
                    }]),
                )]));
            });
        let container = request.start().await.map_err(|e| {
            let text = e.to_string();
            ServerError::environment(format!("cannot start a container from {image}: {text}"))
        });
        let container = match container {
            Ok(c) => c,
            Err(e) => {
                let tags = local_tags(docker, &repo).await;
                let available = if tags.is_empty() { "no local tags".into() } else { tags.join(", ") };
                return Err(ServerError::environment(format!("{e} (local images of {repo}: {available})")));
            }
        };
        let port = container
            .get_host_port_ipv4(5432)
            .await
            .map_err(|e| ServerError::environment(format!("container {image}: no published port: {e}")))?;
        let mut server = DockerServer {
            container_id: container.id().to_string(),
            container: Some(container),
            host: "127.0.0.1".into(),
            port,
            user,
            password,
            database,
            image,
            server_version: String::new(),
        };
        // From here on the handle owns the container (its Drop removes it).
        guard.armed = false;
        server.server_version = server.wait_connectable(ready).await?;
        Ok(server)
    }

    pub fn url(&self) -> String {
        super::server_url(&self.user, &self.password, &self.host, self.port, &self.database)
    }

    /// The readiness line can precede the final server's socket by a moment; a real
    /// connection is the proof.
    async fn wait_connectable(&self, deadline: Duration) -> Result<String, ServerError> {
        let started = Instant::now();
        let url = self.url();
        loop {
            let last = match crate::pg::connect(&url).await {
                Ok(client) => match client.query_one("show server_version", &[]).await {
                    Ok(row) => return Ok(row.get::<_, String>(0)),
                    Err(e) => crate::pg::describe(&e),
                },
                Err(e) => e.message,
            };
            if started.elapsed() > deadline {
                return Err(ServerError::environment(format!(
                    "container {} never accepted a connection: {last}",
                    self.image
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Remove the container and wait until it is gone.
    pub async fn stop(mut self) {
        if let Some(c) = self.container.take() {
            let _ = c.rm().await;
        }
    }
}
