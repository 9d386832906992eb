//! Every child process pgdrill starts (pg_dump, pg_restore, psql, openssl, initdb and
//! postgres of the native throwaway server, `--version` probes, `shell.run` programs) is
//! built with [`command`] or [`user_command`] and started with [`spawn`], [`output`] or
//! [`spawn_async`]. Two promises hold for all of them:
//!
//! - A child sees none of pgdrill's secrets. [`command`] starts from an empty environment
//!   and passes only what any program needs (PATH, HOME, USER, LOGNAME, LANG, LANGUAGE,
//!   LC_*, TZ, TMPDIR); the caller adds what this one child needs (for example PGPASSWORD
//!   for the pg_dump of one database, never for the throwaway server). [`user_command`]
//!   is for the user's own programs: the user's environment minus pgdrill's settings
//!   (`PGDRILL_*`, which hold the backup key) and minus every variable holding a secret
//!   value the run knows.
//! - A child dies with pgdrill, even after `kill -9`: the kernel sends it SIGKILL when its
//!   parent goes (PR_SET_PDEATHSIG). So a killed pgdrill never leaves a pg_restore writing
//!   into a database that the next run would take for the original.
//!
//! This module must not decide what a child does; it only decides what it inherits and
//! how long it may live. Nothing else in the crate may call `Command::new` (a test below
//! checks the sources).

use std::ffi::OsStr;
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;

/// Variables every child gets from pgdrill's environment (plus `LC_*`): where programs
/// are, whose home and locale, where temp files go. None of them holds a secret.
const PASSED: &[&str] = &["PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR"];

/// The prefix of pgdrill's own settings; the backup key is one of them.
const OWN_PREFIX: &str = "PGDRILL_";

fn passes(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else { return false };
    PASSED.contains(&name) || name.starts_with("LC_")
}

/// A command for `program` with a clean environment (only the variables in `PASSED`) that
/// dies when pgdrill dies. Add what this child needs with `.env(...)`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear();
    for (k, v) in std::env::vars_os() {
        if passes(&k) {
            cmd.env(k, v);
        }
    }
    die_with_parent(&mut cmd);
    cmd
}

/// A command for a program the user asked for (`shell.run`): the user's environment, minus
/// pgdrill's own settings (`PGDRILL_*`) and minus every variable whose value contains a
/// secret (`holds_secret` says which, usually the run's redactor). A step passes one of
/// them on purpose with its `env:`.
pub fn user_command(program: impl AsRef<OsStr>, holds_secret: impl Fn(&str) -> bool) -> Command {
    let mut cmd = command(program);
    for (k, v) in std::env::vars_os() {
        let own = k.to_str().is_some_and(|k| k.starts_with(OWN_PREFIX));
        if own || holds_secret(&v.to_string_lossy()) {
            cmd.env_remove(&k);
        } else {
            cmd.env(k, v);
        }
    }
    cmd
}

/// pgdrill itself as a child (a fleet's run of one target): pgdrill's environment minus the
/// variables in `remove` (the other targets' secrets), which the caller replaces with this
/// run's own. It gets SIGTERM, not SIGKILL, when its parent dies, so it still rolls back
/// what it changed and stops its own children.
pub fn own_command(program: impl AsRef<OsStr>, remove: &[String]) -> Command {
    let mut cmd = Command::new(program);
    for k in remove {
        cmd.env_remove(k);
    }
    die_with_parent_by(&mut cmd, nix::sys::signal::Signal::SIGTERM);
    cmd
}

fn die_with_parent(cmd: &mut Command) {
    die_with_parent_by(cmd, nix::sys::signal::Signal::SIGKILL);
}

/// Ask the kernel to send `signal` to the child when its parent thread ends, and close the
/// race where pgdrill died between fork and this call.
// The crate's only unsafe code: arming the signal has to happen in the child between fork
// and exec, which std exposes only as the unsafe `pre_exec`.
#[allow(unsafe_code)]
fn die_with_parent_by(cmd: &mut Command, signal: nix::sys::signal::Signal) {
    let parent = std::process::id() as i32;
    // SAFETY: the closure runs between fork and exec and only makes two system calls
    // (prctl, getppid), both async-signal-safe; it allocates nothing (errors are errno
    // values).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(io::Error::from)?;
            // Reparented already: pgdrill died before the signal was armed.
            // An error without a message: allocating here could deadlock on a lock another
            // thread held at fork time.
            if nix::unistd::getppid().as_raw() != parent {
                return Err(io::Error::from(nix::errno::Errno::ESRCH));
            }
            Ok(())
        });
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread that forks every child.
///
/// PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, not the process.
/// Children are started from tokio workers, `spawn_blocking` threads (which end after ten
/// seconds idle) and plain threads; a child forked from one of those would be killed when
/// that thread retires, in the middle of a long pg_restore. This thread never ends while
/// the process lives: its receiver waits forever because the sender is a static, and a
/// panicking job is caught. So the signal fires exactly when pgdrill dies.
fn spawner() -> io::Result<&'static mpsc::Sender<Job>> {
    static SPAWNER: OnceLock<Result<mpsc::Sender<Job>, String>> = OnceLock::new();
    let s = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pgdrill-spawner".into())
            .spawn(move || {
                for job in rx {
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .map(|_| tx)
            .map_err(|e| e.to_string())
    });
    s.as_ref().map_err(|e| io::Error::other(format!("cannot start the process spawner thread: {e}")))
}

/// Run `f` on the spawner thread and wait for its result.
fn on_spawner<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
    let (tx, rx) = mpsc::sync_channel(1);
    spawner()?
        .send(Box::new(move || {
            let _ = tx.send(f());
        }))
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?;
    rx.recv().map_err(|_| io::Error::other("the process spawner thread failed to start the process"))
}

/// `cmd.spawn()`, forked from the spawner thread. `cmd` stays usable afterwards.
pub fn spawn(cmd: &mut Command) -> io::Result<Child> {
    let taken = std::mem::replace(cmd, placeholder());
    let (back, result) = on_spawner(move || {
        let mut taken = taken;
        let r = taken.spawn();
        (taken, r)
    })?;
    *cmd = back;
    result
}

/// `cmd.output()`, forked from the spawner thread: stdin is empty, stdout and stderr are
/// captured.
pub fn output(cmd: &mut Command) -> io::Result<Output> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    spawn(cmd)?.wait_with_output()
}

/// The tokio form of [`spawn`], for steps that await their child. Must be called inside a
/// tokio runtime (the child is registered with it for `wait`).
pub fn spawn_async(cmd: &mut tokio::process::Command) -> io::Result<tokio::process::Child> {
    let handle = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
    let taken = std::mem::replace(cmd, tokio::process::Command::new("/"));
    let (back, result) = on_spawner(move || {
        let _in_runtime = handle.enter();
        let mut taken = taken;
        let r = taken.spawn();
        (taken, r)
    })?;
    *cmd = back;
    result
}

/// Stands in for a command while the spawner thread holds it; never started.
fn placeholder() -> Command {
    Command::new("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alive(pid: u32) -> bool {
        // A zombie still has a /proc entry; only a running or sleeping child counts.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
            .unwrap_or(false)
    }

    #[test]
    fn child_outlives_the_short_lived_thread_that_started_it() {
        // Started from a thread that ends at once, as a retired spawn_blocking thread does:
        // with the signal tied to that thread, the child would be killed here.
        let mut child =
            std::thread::spawn(|| spawn(command("sleep").arg("600"))).join().expect("thread").expect("sleep starts");
        let pid = child.id();
        std::thread::sleep(Duration::from_millis(300));
        let survived = alive(pid);
        let _ = child.kill();
        let _ = child.wait();
        assert!(survived, "the child was killed when the thread that asked for it ended");
    }

    #[test]
    fn clean_environment_passes_only_the_allowlist() {
        let cmd = command("env");
        let names: Vec<String> = cmd.get_envs().map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        for n in &names {
            assert!(PASSED.contains(&n.as_str()) || n.starts_with("LC_"), "{n} reaches children");
        }
        // env_clear then the allowlist: nothing else is inherited when it runs.
        let out = output(&mut command("env")).expect("env runs");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(PASSED.contains(&name) || name.starts_with("LC_") || name == "PWD", "{line} reached a child");
        }
    }

    #[test]
    fn user_command_drops_pgdrill_settings_and_secret_values() {
        let path = std::env::var("PATH").unwrap_or_default();
        let cmd = user_command("env", |v| !path.is_empty() && v == path);
        let passed: Vec<String> =
            cmd.get_envs().filter(|(_, v)| v.is_some()).map(|(k, _)| k.to_string_lossy().into_owned()).collect();
        assert!(!passed.contains(&"PATH".to_string()), "a variable holding a secret value is passed: {passed:?}");
        assert!(!passed.is_empty(), "the user's environment is not passed at all");
        for (k, v) in cmd.get_envs() {
            if k.to_string_lossy().starts_with(OWN_PREFIX) {
                assert!(v.is_none(), "{k:?} reaches a user's program");
            }
        }
    }

    #[test]
    fn spawned_command_is_still_usable_afterwards() {
        let mut cmd = command("true");
        let status = spawn(&mut cmd).expect("true runs").wait().expect("wait");
        assert!(status.success());
        assert_eq!(cmd.get_program(), "true", "spawn must hand the command back");
    }

    /// A word quoted by `util::shell_quote` (the cron lines and the operator's restore
    /// commands) reaches `sh` as itself, whatever it holds. Here, where children are started.
    #[test]
    fn shell_quoted_words_reach_the_shell_unchanged() {
        use crate::util::shell_quote;
        for w in [
            "",
            "a b",
            "it's",
            "'",
            "''",
            "$(touch /nonexistent)",
            "`id`",
            "a\nb",
            "*",
            "~",
            "-n",
            "x;y|z&",
            "é ç",
            "50%",
        ] {
            let out = output(command("sh").arg("-c").arg(format!("printf %s {}", shell_quote(w)))).expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), w, "{w:?} quoted as {}", shell_quote(w));
        }
    }

    /// Every child goes through this module: no other source file builds a Command itself.
    #[test]
    fn no_command_is_built_outside_this_module() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut dirs = vec![src];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).expect("src readable").flatten() {
                let p = e.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "rs") && !p.ends_with("child.rs") {
                    let text = std::fs::read_to_string(&p).expect("source readable");
                    for (i, line) in text.lines().enumerate() {
                        if line.contains("Command::new(") && !line.trim_start().starts_with("//") {
                            offenders.push(format!("{}:{}: {}", p.display(), i + 1, line.trim()));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "start children through crate::child:\n{}", offenders.join("\n"));
    }
}

/// Whether a process with this pid exists: signal 0 reaches it, or it exists but belongs to
/// another user (EPERM). Treating EPERM as gone let one user's pgdrill reap another user's
/// running throwaway server or container. A pid can be reused, so "alive" may be a
/// stranger: callers use it only to keep things, never to signal.
pub fn is_alive(pid: i32) -> bool {
    pid > 0
        && match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
            Ok(()) => true,
            Err(e) => e == nix::errno::Errno::EPERM,
        }
}

#[cfg(test)]
mod alive_tests {
    /// Another user's process exists: pid 1 is root's, seen here as an unprivileged user (the
    /// test reruns itself as `nobody` when it runs as root). Found in review: reapers took
    /// EPERM for "gone" and could remove another user's running server.
    #[test]
    fn another_users_process_is_alive() {
        if std::env::var_os("PGDRILL_TEST_AS_NOBODY").is_some() || !nix::unistd::Uid::effective().is_root() {
            assert!(super::is_alive(1), "pid 1 exists, whoever owns it");
            assert!(!super::is_alive(0) && !super::is_alive(-1), "no pid to signal");
            return;
        }
        let me = std::env::current_exe().expect("the test binary");
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(me)
            .args(["--exact", "child::alive_tests::another_users_process_is_alive", "--nocapture"])
            .env("PGDRILL_TEST_AS_NOBODY", "1")
            .output()
            .expect("setpriv runs");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && all.contains("1 passed"), "as nobody: {all}");
    }
}
