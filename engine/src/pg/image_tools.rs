//! PostgreSQL client tools from a Docker image: when the tools on this machine are older
//! than the server (pg_dump refuses a newer server), pgdrill runs the server's own major's
//! tools with `docker run --rm -i` from the image of that major, streams piped through
//! pgdrill as usual. The connection settings (password included) reach the container
//! through an env file readable by its owner only and removed as soon as the container has
//! started, never through argv.

use std::ffi::OsStr;
use std::io::Write;
use std::process::Command;

/// Variables of the local command that say nothing about the connection (the container has
/// its own PATH, HOME and locale).
const LOCAL_ONLY: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"];

/// The image of `major`'s tools and their `--version`, when Docker has that image here (see
/// `image_of`).
pub fn find(tool: &str, major: u32) -> Result<(String, String), String> {
    find_with(tool, major, &crate::child::ToEnd)
}

/// [`find`], the `--version` probe run through `calls` (a caller that holds the run's
/// interrupt has it ended at once, and its container removed). The probe's container is
/// named and labelled as pgdrill's (`probe_command`): a pgdrill killed during it leaves a
/// container the next one's `docker::reap_stale` finds and removes, as it does the others.
pub fn find_with(tool: &str, major: u32, calls: &dyn crate::child::Calls) -> Result<(String, String), String> {
    let Some(image) = image_of(major) else {
        let named = super::docker::image_for(major, None);
        if super::docker::image_is_explicit(None) {
            return Err(format!(
                "Docker has no image {named} (named by PGDRILL_DOCKER_IMAGE: `docker pull {named}`, or unset it)"
            ));
        }
        let local = super::docker::LOCAL_IMAGE.replace("{major}", &major.to_string());
        return Err(format!(
            "Docker has neither {named} nor {local} (set PGDRILL_DOCKER_IMAGE, `docker pull {named}`, or `bash ci/setup.sh` to build {local})"
        ));
    };
    let (mut v, _env) = probe_command(tool, &image)?;
    match calls.run(&mut v, &format!("{tool} --version in {image}")) {
        Ok(o) if o.status.success() => Ok((image, String::from_utf8_lossy(&o.stdout).trim().to_string())),
        Ok(o) => Err(format!("{tool} in {image} does not run: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) if calls.interrupted() => Err(e.message),
        Err(e) => Err(format!("Docker cannot be run ({e})")),
    }
}

/// `tool --version` in `image`, in a container named `pgdrill-probe-PID-RANDOM` (so an
/// interrupted call removes it: killing the docker client leaves the container) and
/// labelled as pgdrill's with this process as its owner (so `docker::reap_stale` removes
/// it once this process is gone), without a network. The env file must live until it ends.
fn probe_command(tool: &str, image: &str) -> Result<(Command, EnvFile), String> {
    let name =
        format!("pgdrill-probe-{}-{}", std::process::id(), super::native::generate_password().get(..8).unwrap_or("0"));
    let how = InImage { name: Some(&name), network: false, labelled: true, ..Default::default() };
    let mut probe = crate::child::command(tool);
    probe.arg("--version");
    in_image_with(&probe, image, &how)
}

/// An image of PostgreSQL `major` Docker has here: the one `PGDRILL_DOCKER_IMAGE` names
/// (that one only: an operator who names an image means it), else the official
/// `postgres:<major>`, else `ci/setup.sh`'s local one. Its binaries are under
/// /usr/lib/postgresql/<major>/bin. The one lookup for every use of a major's image (its
/// client tools here, `pitr.source` and recovery in physical/): a machine with only the
/// local image takes it for each, never only for some. `None` when Docker has none of them,
/// or cannot be run.
pub fn image_of(major: u32) -> Option<String> {
    images_of(major).into_iter().next()
}

/// Every image of PostgreSQL `major` Docker has here, in `image_of`'s order (a tool's source
/// takes the first that holds its tool: the official image has none).
pub fn images_of(major: u32) -> Vec<String> {
    let mut candidates = vec![super::docker::image_for(major, None)];
    if !super::docker::image_is_explicit(None) {
        candidates.push(super::docker::LOCAL_IMAGE.replace("{major}", &major.to_string()));
    }
    candidates.dedup();
    candidates
        .into_iter()
        .filter(|image| {
            let mut inspect = docker();
            inspect.args(["image", "inspect", "--format", "{{.Id}}", image]);
            crate::child::output(&mut inspect).is_ok_and(|o| o.status.success())
        })
        .collect()
}

/// The docker CLI with the variables that say which engine to talk to (`physical::recover`
/// runs a throwaway of a major without local binaries with it).
pub fn docker() -> Command {
    let mut c = crate::child::command("docker");
    for k in ["DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"] {
        if let Some(v) = std::env::var_os(k) {
            c.env(k, v);
        }
    }
    c
}

/// An env file (in a private directory) that removes itself.
pub struct EnvFile(#[allow(dead_code)] tempfile::TempDir);

/// `cmd` (a local tool command with its arguments and connection environment) as the same
/// tool run in `image` on the host's network. Stdio is set by the caller afterwards.
pub fn in_image(cmd: &Command, image: &str, mounts: &[&std::path::Path]) -> Result<(Command, EnvFile), String> {
    in_image_named(cmd, image, mounts, None)
}

/// As `in_image`, with the container named (so `remove` can stop it: killing the docker CLI
/// does not stop its container).
pub fn in_image_named(
    cmd: &Command,
    image: &str,
    mounts: &[&std::path::Path],
    name: Option<&str>,
) -> Result<(Command, EnvFile), String> {
    in_image_with(cmd, image, &InImage { ro: mounts, name, ..Default::default() })
}

/// How `in_image_with` runs a tool's container, beyond `in_image_named`'s read-only mounts
/// and name.
#[derive(Debug, Clone, Copy)]
pub struct InImage<'a> {
    /// Files and folders the tool reads, at the same path inside, read-only.
    pub ro: &'a [&'a std::path::Path],
    /// Folders the tool writes, at the same path inside.
    pub rw: &'a [&'a std::path::Path],
    pub name: Option<&'a str>,
    /// The user (uid, gid) it runs as: the owner of what it writes (default: the image's).
    pub user: Option<(u32, u32)>,
    /// The host's network (true) or none.
    pub network: bool,
    /// Labelled as pgdrill's with this process as owner, so a container a killed pgdrill
    /// left is removed by the next one (`docker::reap_stale`).
    pub labelled: bool,
}

impl Default for InImage<'_> {
    fn default() -> Self {
        InImage { ro: &[], rw: &[], name: None, user: None, network: true, labelled: false }
    }
}

/// `cmd` run in `image` as `how` says; the environment through an env file, never argv.
pub fn in_image_with(cmd: &Command, image: &str, how: &InImage<'_>) -> Result<(Command, EnvFile), String> {
    let tool = std::path::Path::new(cmd.get_program())
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or("the tool has no name")?
        .to_string();
    let dir = tempfile::Builder::new().prefix("pgdrill-env-").tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("env");
    let mut body = String::new();
    for (k, v) in cmd.get_envs() {
        let (Some(k), Some(v)) = (k.to_str(), v.and_then(OsStr::to_str)) else { continue };
        if LOCAL_ONLY.contains(&k) || k.starts_with("LC_") {
            continue;
        }
        if v.contains('\n') {
            return Err(format!("{k} holds a line break, which an env file cannot pass"));
        }
        body.push_str(&format!("{k}={v}\n"));
    }
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        f.write_all(body.as_bytes()).map_err(|e| e.to_string())?;
    }
    let mut d = docker();
    let network = if how.network { "host" } else { "none" };
    d.args(["run", "--rm", "-i", "--network", network, "--log-driver", "none", "--env-file"]).arg(&path);
    if let Some(n) = how.name {
        d.args(["--name", n]);
    }
    if let Some((uid, gid)) = how.user {
        d.args(["--user", &format!("{uid}:{gid}")]);
    }
    if how.labelled {
        d.args(["--label", &format!("{}=1", super::docker::LABEL)]);
        d.args(["--label", &format!("{}={}", super::docker::OWNER_LABEL, super::docker::owner())]);
    }
    // Files the tool reads, at the same path inside, read-only.
    for m in how.ro {
        d.arg("--volume").arg(format!("{}:{}:ro", m.display(), m.display()));
    }
    for m in how.rw {
        d.arg("--volume").arg(format!("{}:{}", m.display(), m.display()));
    }
    d.args(["--entrypoint", &tool, image]).args(cmd.get_args());
    Ok((d, EnvFile(dir)))
}

/// A command for `tool` (pg_restore, psql) able to read what PostgreSQL `major` wrote: the
/// local one when it is new enough, else the one in that major's image (`mounts`: the
/// directories of the files it reads). The env file, if any, must live until it ends.
pub fn tool_command(tool: &str, major: u32, mounts: &[&std::path::Path]) -> Result<(Command, Option<EnvFile>), String> {
    match super::native::find_tool(tool, None, major) {
        Ok((p, _, _)) => Ok((crate::child::command(p), None)),
        Err(local) => {
            let (image, _) = find(tool, major).map_err(|why| {
                format!("{local}; the tools of PostgreSQL {major} cannot come from Docker either: {why}")
            })?;
            let (c, f) = in_image(&crate::child::command(tool), &image, mounts)?;
            Ok((c, Some(f)))
        }
    }
}

/// Stop and remove a named tool container (a cancelled restore's), waiting for it.
pub fn remove(name: &str) {
    let mut d = docker();
    d.args(["rm", "--force", name]);
    let _ = crate::child::output(&mut d);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::child::Calls;

    /// The values that follow `flag` in `args`.
    fn after(args: &[String], flag: &str) -> Vec<String> {
        args.windows(2).filter(|w| w[0] == flag).map(|w| w[1].clone()).collect()
    }

    /// Calls run to their end, each command's arguments kept.
    #[derive(Default)]
    struct Kept(std::sync::Mutex<Vec<Vec<String>>>);

    impl Calls for Kept {
        fn run(&self, cmd: &mut Command, what: &str) -> Result<std::process::Output, crate::error::Failure> {
            let args = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(args);
            crate::child::ToEnd.run(cmd, what)
        }

        fn interrupted(&self) -> bool {
            false
        }
    }

    /// Regression (issue 39): the `--version` probe of a major's tools in its image ran as an
    /// unnamed, unlabelled `docker run --rm`: a pgdrill killed during it left a container
    /// nothing could find (the reaper removes what carries pgdrill's label and a dead owner),
    /// and an interrupt could not remove it by name. It is named for this process and
    /// labelled as pgdrill's, its owner this process, without a network; run for real, it
    /// answers the tool's version and is gone once it has.
    #[test]
    fn a_tools_probe_in_an_image_is_a_container_named_and_labelled_as_pgdrills() {
        let (cmd, _env) = probe_command("pg_restore", "pgdrill/postgres-local:15").expect("a command");
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
        let names = after(&args, "--name");
        assert_eq!(names.len(), 1, "{args:?}");
        assert!(names[0].starts_with(&format!("pgdrill-probe-{}-", std::process::id())), "{args:?}");
        let labels = after(&args, "--label");
        assert!(labels.contains(&format!("{}=1", super::super::docker::LABEL)), "{args:?}");
        assert!(labels.contains(&format!("{}={}", super::super::docker::OWNER_LABEL, super::super::docker::owner())));
        assert_eq!(after(&args, "--network"), ["none"], "{args:?}");
        assert!(args.ends_with(&["pg_restore".into(), "pgdrill/postgres-local:15".into(), "--version".into()]));

        let Some(image) = image_of(15) else {
            assert!(std::env::var_os("CI").is_none(), "no PostgreSQL 15 image in Docker (bash ci/setup.sh builds one)");
            eprintln!("skipped the run in Docker: no PostgreSQL 15 image");
            return;
        };
        let kept = Kept::default();
        let (found, version) = find_with("pg_restore", 15, &kept).expect("pg_restore in the image");
        assert_eq!(found, image);
        assert!(version.starts_with("pg_restore (PostgreSQL) 15"), "{version}");
        let ran = kept.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        assert_eq!(ran.len(), 1, "one probe: {ran:?}");
        let name = after(&ran[0], "--name").pop().expect("the probe's container is named");
        let mut inspect = docker();
        inspect.args(["container", "inspect", &name]);
        let out = crate::child::output(&mut inspect).expect("docker runs");
        assert!(!out.status.success(), "the probe's container {name} outlived it");
    }
}
