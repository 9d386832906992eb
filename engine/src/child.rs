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
//! - Another tool's own children go too (barman's hooks, rsync, pgBackRest's processes),
//!   which the parent-death signal of the tool alone does not reach: [`spawn_guarded`]
//!   runs the tool under a guard, pgdrill itself in its hidden `guard` mode ([`guard`]),
//!   which leads a process group holding the tool and everything it starts, and kills that
//!   group when pgdrill, which holds the guard's standard input open, is gone.
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

/// The hidden subcommand of the pgdrill binary that runs a tool under a guard:
/// `pgdrill guard -- PROGRAM ARGS...`.
pub const GUARD: &str = "guard";

/// pgdrill's own executable, as the kernel knows it: still the running binary when the file
/// was replaced since (a package upgrade during a run).
const SELF_EXE: &str = "/proc/self/exe";

/// Whether this process is the pgdrill binary, which answers [`GUARD`]: set by the command
/// line ([`serve_guards`]). A program that only links the library (its tests) has no such
/// subcommand, so its tools run as children of their own, as before guards.
static GUARDS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// How a guard says it could not start the tool, on its stderr with exit 127 and nothing on
/// its stdout: `pgdrill guard: cannot start the tool: ERRNO: MESSAGE`, read back as the
/// spawn error it was ([`Guarded::wait_with_output`]).
const GUARD_FAILED: &str = "pgdrill guard: cannot start the tool: ";
const GUARD_FAILED_EXIT: i32 = 127;

/// Declare this process the pgdrill binary: from now on [`spawn_guarded`] runs each tool
/// under a guard (pgdrill re-executed as `pgdrill guard`). Called by the command line
/// before any work; without /proc there is no way back to this binary, and tools run
/// unguarded.
pub fn serve_guards() {
    if std::path::Path::new(SELF_EXE).exists() {
        GUARDS.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// A tool child started with [`spawn_guarded`]: the guard (or, unguarded, the tool itself)
/// and the write end of the guard's standard input, held open until the guard is waited
/// for. pgdrill never writes to it: its closing, when pgdrill dies however it dies, is the
/// guard's signal to kill the tool's process group.
pub struct Guarded {
    child: Child,
    lifeline: Option<std::process::ChildStdin>,
}

impl Guarded {
    /// The guard's pid, which is also its process group's id: killing that group ends the
    /// tool and everything it started, and the guard.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Wait for the tool and collect its stdout and stderr: what the tool wrote, and its
    /// exit code or the signal that ended it, as the guard passes them on unchanged. A
    /// guard that could not start the tool gives the spawn's error, as an unguarded start
    /// would.
    pub fn wait_with_output(self) -> io::Result<Output> {
        let Guarded { child, lifeline } = self;
        let out = child.wait_with_output();
        let guarded = lifeline.is_some();
        drop(lifeline);
        let out = out?;
        if guarded && out.status.code() == Some(GUARD_FAILED_EXIT) && out.stdout.is_empty() {
            if let Some(e) = guard_failure(&out.stderr) {
                return Err(e);
            }
        }
        Ok(out)
    }
}

/// The spawn error a guard reported on `stderr`, if that is what it wrote.
fn guard_failure(stderr: &[u8]) -> Option<io::Error> {
    let text = std::str::from_utf8(stderr).ok()?.strip_prefix(GUARD_FAILED)?;
    let (errno, message) = text.trim_end().split_once(": ")?;
    Some(match errno.parse::<i32>() {
        Ok(n) if n > 0 => io::Error::from_raw_os_error(n),
        _ => io::Error::other(message.to_string()),
    })
}

/// Start a tool (`cmd`, built with [`command`]: a clean environment and what the tool
/// needs) under a guard, stdin empty, stdout and stderr captured: the guard runs `cmd`
/// with the same program, arguments, environment and folder, in a process group the guard
/// leads, and kills that group (SIGKILL) when pgdrill is gone, so a pgdrill killed with
/// `kill -9` leaves none of the tool's own children running. The tool's secrets stay in
/// its environment (the guard's), never in argv. Without a guard ([`serve_guards`] not
/// called: the library's tests), `cmd` is started as [`spawn`] does.
pub fn spawn_guarded(cmd: &mut Command) -> io::Result<Guarded> {
    if !GUARDS.load(std::sync::atomic::Ordering::SeqCst) {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        return Ok(Guarded { child: spawn(cmd)?, lifeline: None });
    }
    let mut guard = guard_command(cmd);
    let mut child = spawn(&mut guard)?;
    let lifeline = child.stdin.take();
    Ok(Guarded { child, lifeline })
}

/// [`output`] of a tool under a guard ([`spawn_guarded`]).
pub fn output_guarded(cmd: &mut Command) -> io::Result<Output> {
    spawn_guarded(cmd)?.wait_with_output()
}

/// How a caller's tool calls run, each to its end with stdout and stderr captured: the
/// caller decides. A module below the one that holds the run's interrupt (`backup::base`'s
/// pg_verifybackup, `pg::image_tools`' probe in an image) takes one of these, so a caller
/// that holds an interrupt (a physical source's, `physical::tools::Interrupt`) ends the
/// call at once when the run is interrupted or its step times out; [`ToEnd`] otherwise.
pub trait Calls: Send + Sync {
    /// Run `cmd` to its end (`what` names it in an error). A call the caller's interrupt
    /// ended or refused is the environment's failure saying so.
    fn run(&self, cmd: &mut Command, what: &str) -> Result<Output, crate::error::Failure>;

    /// Whether the caller's run was interrupted: a call that failed then was stopped, and
    /// its failure is never read as the tool's answer (a tool missing, a verdict).
    fn interrupted(&self) -> bool;
}

/// Calls nothing interrupts: each runs under a guard ([`output_guarded`]) to its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct ToEnd;

impl Calls for ToEnd {
    fn run(&self, cmd: &mut Command, what: &str) -> Result<Output, crate::error::Failure> {
        output_guarded(cmd)
            .map_err(|e| crate::error::Failure::environment(format!("cannot run {what}: {e}")).with_source(e))
    }

    fn interrupted(&self) -> bool {
        false
    }
}

/// The guard's command for `cmd`: pgdrill's own binary in its [`GUARD`] mode, `cmd`'s
/// program and arguments after `--`, `cmd`'s environment (built from a clean one, as
/// [`command`] builds it) and folder, a process group of its own, its stdin the pipe pgdrill
/// holds. No parent-death signal: the guard must outlive pgdrill long enough to kill the
/// group, and ends with it.
fn guard_command(cmd: &Command) -> Command {
    let mut g = Command::new(SELF_EXE);
    g.arg0("pgdrill").arg(GUARD).arg("--").arg(cmd.get_program()).args(cmd.get_args());
    g.env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            g.env(k, v);
        }
    }
    if let Some(dir) = cmd.get_current_dir() {
        g.current_dir(dir);
    }
    g.process_group(0);
    g.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    g
}

/// `pgdrill guard -- PROGRAM ARGS...`, run by pgdrill only ([`spawn_guarded`]): start the
/// tool with this process's environment, stdout and stderr, an empty stdin, in this
/// process's group (which the guard leads); when its stdin reaches its end (pgdrill, which
/// holds the other end and never writes, is gone), kill the group, the guard with it.
/// Otherwise end as the tool ended: its exit code, or the signal that killed it raised
/// again (no core file of the guard's). The guard's only words are its own failure to start
/// the tool ([`GUARD_FAILED`]).
pub fn guard(command: &[std::ffi::OsString]) -> i32 {
    use nix::sys::signal::{killpg, Signal};
    use nix::unistd::{getpgrp, getpid, setpgid, Pid};
    use std::io::Read;
    use std::os::unix::process::ExitStatusExt;
    let Some((program, args)) = command.split_first() else {
        return guard_failed(&io::Error::other("no program to run"));
    };
    let me = getpid();
    if getpgrp() != me {
        if let Err(e) = setpgid(Pid::from_raw(0), Pid::from_raw(0)) {
            return guard_failed(&io::Error::from(e));
        }
    }
    let mut tool = Command::new(program);
    tool.args(args).stdin(Stdio::null());
    // Killed with the guard too (a guard killed alone), though not its own children then.
    die_with_parent(&mut tool);
    let mut child = match tool.spawn() {
        Ok(c) => c,
        Err(e) => return guard_failed(&e),
    };
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut stdin = io::stdin().lock();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = killpg(me, Signal::SIGKILL);
    });
    let status = match child.wait() {
        Ok(s) => s,
        Err(e) => {
            let _ = killpg(me, Signal::SIGKILL);
            return guard_failed(&e);
        }
    };
    if let Some(code) = status.code() {
        return code;
    }
    let signal = status.signal().unwrap_or(nix::libc::SIGKILL);
    if let Ok(s) = Signal::try_from(signal) {
        // The same ending for pgdrill to read; a core file is the tool's to write, not ours.
        let _ = nix::sys::prctl::set_dumpable(false);
        let _ = nix::sys::signal::raise(s);
    }
    // A signal this process ignores (SIGPIPE): the shell's way of saying it.
    128 + signal
}

fn guard_failed(e: &io::Error) -> i32 {
    use std::io::Write;
    let _ = writeln!(io::stderr(), "{GUARD_FAILED}{}: {e}", e.raw_os_error().unwrap_or(0));
    GUARD_FAILED_EXIT
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

    /// The guard runs the tool as pgdrill would have: the same program, arguments (after
    /// `--`, so none is read as the guard's), environment and folder; a secret of the tool's
    /// stays in the environment, never in argv; the guard leads a process group of its own
    /// and its stdin is the pipe pgdrill holds.
    #[test]
    fn the_guard_runs_the_tool_with_its_arguments_environment_and_folder() {
        let mut tool = command("/usr/bin/pgbackrest");
        tool.args(["--stanza=main", "--", "restore"]).env("PGBACKREST_REPO1_CIPHER_PASS", "s3cr3t-pass");
        tool.current_dir("/tmp");
        let guard = guard_command(&tool);
        assert_eq!(guard.get_program(), SELF_EXE);
        let args: Vec<_> = guard.get_args().collect();
        assert_eq!(args, [GUARD, "--", "/usr/bin/pgbackrest", "--stanza=main", "--", "restore"]);
        let envs: Vec<_> = guard.get_envs().collect();
        assert_eq!(envs, tool.get_envs().collect::<Vec<_>>(), "the tool's environment, nothing else");
        assert!(envs.iter().any(|(k, _)| *k == "PGBACKREST_REPO1_CIPHER_PASS"));
        assert!(!args.iter().any(|a| a.to_string_lossy().contains("s3cr3t")), "a secret in argv: {args:?}");
        assert_eq!(guard.get_current_dir(), Some(std::path::Path::new("/tmp")));
    }

    /// A guard that could not start the tool is read back as the spawn's error, by its
    /// errno; anything else on stderr is the tool's.
    #[test]
    fn a_guards_failure_to_start_the_tool_is_read_back_as_the_spawns_error() {
        let e = guard_failure(format!("{GUARD_FAILED}2: No such file or directory (os error 2)\n").as_bytes());
        assert_eq!(e.map(|e| e.kind()), Some(io::ErrorKind::NotFound));
        let e = guard_failure(format!("{GUARD_FAILED}0: no program to run\n").as_bytes()).expect("read");
        assert_eq!(e.to_string(), "no program to run");
        assert!(guard_failure(b"ERROR: [055]: unable to open file").is_none());
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
