//! The barman of a Docker image serving a Barman catalogue that lives on this machine (a
//! newer Barman wrote it, `barman::BarmanServer::list_all`): one container per source, started
//! once and reused by every barman call of the command (`docker exec`), so that a command
//! pays one container start, not one per call (listing, show-backup per backup, list-files,
//! the listing again for freshness: each `docker run` cost about 3 s on a loaded machine).
//! A call that needs a folder the container does not mount (`barman recover` writes the
//! throwaway's directories) restarts it once with that folder added.
//!
//! The container runs as the catalogue's owner here, by number, and its passwd names
//! `barman_user` with those ids: barman refuses to run unless the uid of `barman_user` in
//! its passwd is its own, and the image's `barman` package gives that name another uid
//! than this machine's (101 in the 17 image, 103 here). Running as the image's uid instead
//! would write the catalogue's locks and logs as another user of this machine.
//!
//! The container never outlives pgdrill: its `docker run -i` client is pgdrill's child (it
//! dies with pgdrill, `child::command`), the container's only process reads that client's
//! stdin and ends at its end, and `--rm` removes it; dropped, the session removes it at once;
//! labelled as pgdrill's, the reaper of the next recovery removes any that remained.
//!
//! This module runs barman only; it must not read the catalogue, nor know a server's
//! configuration beyond the folders and the identity it is handed.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::Failure;

/// Who barman runs as: `barman_user` with the ids of the catalogue's owner here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's home in the container's passwd (barman_home).
    pub home: PathBuf,
}

/// A container of `image` where barman runs, started at its first call.
#[derive(Debug)]
pub struct Session {
    image: String,
    identity: Identity,
    /// Files and folders barman reads (the configuration), read-only at their own paths.
    ro: Vec<PathBuf>,
    /// Folders barman writes (barman_home, a server's backup_directory), at their own paths.
    rw: Vec<PathBuf>,
    /// The passwd, group and env files handed to the container (a private directory).
    files: tempfile::TempDir,
    running: Mutex<Option<Running>>,
    /// Ended for good by an interruption (`stop_now`): no container starts again.
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Running {
    name: String,
    /// The `docker run -i` client: its stdin is the container's, kept open while it runs.
    client: Child,
    /// The extra folders it mounts read-write beyond the session's own.
    extra: Vec<PathBuf>,
}

/// How long a container may take to start before its start is the environment's failure.
const START_WITHIN: Duration = Duration::from_secs(120);

impl Session {
    /// A session of `image` (nothing runs yet). `env`: the tool's variables, handed to each
    /// call through a file readable by its owner only, never argv.
    pub fn new(
        image: &str,
        identity: Identity,
        ro: Vec<PathBuf>,
        rw: Vec<PathBuf>,
        env: &[(std::ffi::OsString, std::ffi::OsString)],
    ) -> Result<Session, Failure> {
        let u = &identity.user;
        // A name the passwd format cannot hold is refused rather than written into it.
        if u.is_empty() || u.contains([':', '\n', '/']) || u.chars().any(char::is_control) {
            return Err(Failure::environment(format!(
                "Barman's barman_user `{}` is not a user name barman can run as",
                crate::util::visible(u)
            )));
        }
        // Named as the throwaways' folders are (`pgdrill-native-<pid>-`): a pgdrill killed
        // with -9 leaves this folder (and its env file of the tool's variables) behind, and
        // the next pgdrill's `native::reap_stale` removes it once that pid is gone.
        let files = tempfile::Builder::new()
            .prefix(&format!("{}{}-barman-", crate::pg::native::DIR_PREFIX, std::process::id()))
            .tempdir()
            .map_err(|e| Failure::environment(format!("a private folder for barman's container: {e}")))?;
        let home = identity.home.display().to_string().replace([':', '\n'], "_");
        let (uid, gid) = (identity.uid, identity.gid);
        let mut passwd = String::new();
        let mut group = String::new();
        if uid != 0 {
            passwd.push_str("root:x:0:0:root:/root:/bin/sh\n");
        }
        if gid != 0 {
            group.push_str("root:x:0:\n");
        }
        passwd.push_str(&format!("{u}:x:{uid}:{gid}:Barman:{home}:/bin/sh\n"));
        group.push_str(&format!("{u}:x:{gid}:\n"));
        let mut envs = String::new();
        for (k, v) in env {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else { continue };
            if v.contains('\n') {
                return Err(Failure::environment(format!("{k} holds a line break, which an env file cannot pass")));
            }
            envs.push_str(&format!("{k}={v}\n"));
        }
        for (name, text, mode) in [("passwd", passwd, 0o644), ("group", group, 0o644), ("env", envs, 0o600)] {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let path = files.path().join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(&path)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .map_err(|e| Failure::environment(format!("writing {}: {e}", path.display())))?;
        }
        Ok(Session {
            image: image.to_string(),
            identity,
            ro,
            rw,
            files,
            running: Mutex::new(None),
            closed: Default::default(),
        })
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// `barman` run in the container (started, or restarted with `rw` added, when needed);
    /// the caller adds barman's arguments.
    pub fn command(&self, rw: &[PathBuf]) -> Result<Command, Failure> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Failure::environment("barman's container was removed: the run was interrupted"));
        }
        let covered = running.as_ref().is_some_and(|r| rw.iter().all(|p| self.rw.contains(p) || r.extra.contains(p)));
        if !covered {
            let mut extra: Vec<PathBuf> = running.take().map(stop).unwrap_or_default();
            extra.extend(rw.iter().filter(|p| !self.rw.contains(p)).cloned());
            extra.sort();
            extra.dedup();
            *running = Some(self.start(extra)?);
        }
        let name = running.as_ref().map(|r| r.name.clone()).unwrap_or_default();
        let mut d = crate::pg::image_tools::docker();
        d.args(["exec", "--workdir", "/", "--env-file"]).arg(self.files.path().join("env"));
        d.args([name.as_str(), "barman"]);
        Ok(d)
    }

    /// `docker run -i --rm` of the image with `cat` reading the client's stdin: it runs
    /// until pgdrill removes it or the client (pgdrill's child) ends. Ready when a call runs.
    fn start(&self, extra: Vec<PathBuf>) -> Result<Running, Failure> {
        let name = format!(
            "pgdrill-barman-{}-{}",
            std::process::id(),
            crate::pg::native::generate_password().get(..8).unwrap_or("0")
        );
        let Identity { uid, gid, .. } = self.identity;
        let mut d = crate::pg::image_tools::docker();
        d.args(["run", "--rm", "-i", "--name", &name, "--network", "none", "--log-driver", "none"]);
        d.args(["--user", &format!("{uid}:{gid}")]);
        d.args(["--label", &format!("{}=1", crate::pg::docker::LABEL)]);
        d.args(["--label", &format!("{}={}", crate::pg::docker::OWNER_LABEL, crate::pg::docker::owner())]);
        for f in ["passwd", "group"] {
            d.arg("--volume").arg(format!("{}:/etc/{f}:ro", self.files.path().join(f).display()));
        }
        for m in &self.ro {
            d.arg("--volume").arg(format!("{}:{}:ro", m.display(), m.display()));
        }
        for m in self.rw.iter().chain(&extra) {
            d.arg("--volume").arg(format!("{}:{}", m.display(), m.display()));
        }
        d.args(["--entrypoint", "cat", &self.image]);
        d.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
        let client = crate::child::spawn(&mut d)
            .map_err(|e| Failure::environment(format!("cannot run docker for barman in {}: {e}", self.image)))?;
        let mut r = Running { name, client, extra };
        let since = Instant::now();
        loop {
            if let Ok(Some(status)) = r.client.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = r.client.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(Failure::environment(format!(
                    "barman's container of {} did not start ({status}): {}",
                    self.image,
                    super::tools::last_lines(&err, 3)
                )));
            }
            let mut probe = crate::pg::image_tools::docker();
            probe.args(["exec", &r.name, "true"]);
            if crate::child::output(&mut probe).is_ok_and(|o| o.status.success()) {
                return Ok(r);
            }
            if since.elapsed() > START_WITHIN {
                let _ = stop(r);
                return Err(Failure::environment(format!(
                    "barman's container of {} did not start within {}s",
                    self.image,
                    START_WITHIN.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Remove the container now, whatever runs in it (a `barman recover` its `docker exec`
    /// waits for ends with it), and start none again: the run was interrupted.
    pub fn stop_now(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop(r);
        }
    }

    /// The container's name while it runs (for tests and messages).
    pub fn container(&self) -> Option<String> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|r| r.name.clone())
    }
}

/// Remove the container and reap its client; the extra folders it mounted.
fn stop(mut r: Running) -> Vec<PathBuf> {
    crate::pg::image_tools::remove(&r.name);
    drop(r.client.stdin.take());
    let _ = r.client.kill();
    let _ = r.client.wait();
    r.extra
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(r) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = stop(r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 39): barman in the 17 image refused to run as this machine's
    /// `barman` (uid 103 here, 101 in the image: "barman list-backups cannot read the
    /// server", exit 3). The container's passwd names barman_user with this machine's ids.
    #[test]
    fn the_containers_passwd_names_barman_user_with_the_catalogues_owner_ids() {
        let identity = Identity { user: "barman".into(), uid: 103, gid: 106, home: "/srv/barman".into() };
        let s = Session::new("img", identity, vec![], vec![], &[("AWS_REGION".into(), "x".into())]).expect("session");
        let read = |f: &str| std::fs::read_to_string(s.files.path().join(f)).expect(f);
        assert_eq!(read("passwd"), "root:x:0:0:root:/root:/bin/sh\nbarman:x:103:106:Barman:/srv/barman:/bin/sh\n");
        assert_eq!(read("group"), "root:x:0:\nbarman:x:106:\n");
        assert_eq!(read("env"), "AWS_REGION=x\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.files.path().join("env")).expect("env").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing runs before the first call.
        assert_eq!(s.container(), None);
    }

    /// Regression: the session's folder (passwd, group and a 0600 env file of the tool's
    /// variables) was named `pgdrill-barman-…`, which no reaper knew: a pgdrill killed with
    /// -9 left it in the temp folder for good. It is now named for the native reaper, which
    /// removes it once the pid in its name is gone.
    #[test]
    fn a_session_folder_left_by_a_killed_pgdrill_is_named_for_the_reaper() {
        let identity = Identity { user: "barman".into(), uid: 103, gid: 106, home: "/srv/barman".into() };
        let s = Session::new("img", identity, vec![], vec![], &[]).expect("session");
        let name = s.files.path().file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let mine = format!("{}{}-", crate::pg::native::DIR_PREFIX, std::process::id());
        assert!(name.starts_with(&mine), "{name} is not named for native::reap_stale ({mine}…)");
    }

    #[test]
    fn a_barman_user_the_passwd_format_cannot_hold_is_refused() {
        for user in ["", "a:b", "a\nroot", "../x"] {
            let identity = Identity { user: user.into(), uid: 103, gid: 106, home: "/h".into() };
            let e = Session::new("img", identity, vec![], vec![], &[]).expect_err(user);
            assert!(e.to_string().contains("is not a user name barman can run as"), "{e}");
        }
    }
}
