//! Other tools' physical backups as sources: where they are (a location string, named in
//! runbooks and `backups list` the way a storage is), the tool's binary and version, and how
//! its child processes are run. The tools restore their own backups: pgdrill runs them as
//! children and never reads their repository formats itself.
//!
//! This module must not start servers nor judge a recovery (recover.rs does both); it only
//! turns a location into a source and a tool's failure into an error of the right class.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use std::sync::Mutex;

use crate::error::Failure;
use crate::pg::native::{RunAs, DIR_PREFIX};

/// The restore_command scripts a source wrote, one per recovery, removed with the source
/// (their directories have the native servers' prefix, so `pg::native::reap_stale` removes
/// what a killed pgdrill left).
#[derive(Debug, Default)]
pub struct Scripts(Mutex<Vec<tempfile::TempDir>>);

impl Scripts {
    /// Write a restore_command script that runs `words` (the tool and its options) with the
    /// segment's name and path appended, and return the restore_command that calls it.
    ///
    /// A script rather than a command line, for two reasons. The throwaway server starts
    /// with a clean environment, so the tool's secrets (a cipher passphrase, S3 keys) reach
    /// it only through this file, which is the server user's alone (0700 in a 0700
    /// directory) and deleted after the recovery, never through argv. And PostgreSQL reads
    /// any exit code up to 125 as "this segment does not exist", which ends recovery early
    /// and promotes: the tools exit 1 for a missing segment, so every other failure (a wrong
    /// passphrase, an unreachable bucket) becomes 126, which stops recovery instead.
    pub fn restore_command(&self, tool: &str, words: &[String]) -> Result<String, Failure> {
        self.script(tool, words, None, Reading::default())
    }

    /// `restore_command`, whose script also records the tool's failure (any exit other than
    /// 0 or 1) in `workspace`'s [`FETCH_FAILED`]: its exit code, the segment and the last
    /// lines of its stderr (which still reach the server's log), so recovery's verdict can
    /// say why it stopped (`fetch_failed`). The tool's variables are never written there.
    pub fn restore_command_reporting(&self, tool: &str, words: &[String], workspace: &Path) -> Result<String, Failure> {
        self.script(tool, words, Some(workspace), Reading::default())
    }

    /// `restore_command_reporting`, the tool's exit 1 and environment read as `how` says.
    pub fn restore_command_read(
        &self,
        tool: &str,
        words: &[String],
        workspace: &Path,
        how: Reading<'_>,
    ) -> Result<String, Failure> {
        self.script(tool, words, Some(workspace), how)
    }

    fn script(&self, tool: &str, words: &[String], report: Option<&Path>, how: Reading<'_>) -> Result<String, Failure> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .map_err(|e| Failure::environment(format!("cannot create a temp directory: {e}")))?;
        let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700));
        let path = dir.path().join("restore_command.sh");
        let mut text =
            String::from("#!/bin/sh\n# pgdrill: the restore_command of one throwaway recovery; deleted after it.\n");
        let env = if how.local { Vec::new() } else { tool_env() };
        for (k, v) in env {
            let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else { continue };
            if k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                text.push_str(&format!("export {k}={}\n", crate::util::shell_quote(v)));
            }
        }
        let quoted: Vec<String> = words.iter().map(|w| crate::util::shell_quote(w)).collect();
        let call = format!("{} \"$1\" \"$2\"", quoted.join(" "));
        match report {
            None => text.push_str(&format!("{call}\nrc=$?\ncase $rc in 0|1) exit $rc ;; esac\n")),
            Some(ws) => {
                let q = |name: &str| crate::util::shell_quote(&ws.join(name).display().to_string());
                let (err, done) = (q(FETCH_STDERR), q(FETCH_FAILED));
                // An exit 1 whose stderr holds one of `not_absent`'s words is not the segment's
                // absence: it goes on to be recorded and stops recovery like any other failure.
                let passed = if how.not_absent.is_empty() {
                    format!("0|1) rm -f {err}; exit $rc ;;")
                } else {
                    let words: Vec<String> =
                        how.not_absent.iter().map(|w| format!("*{}*", crate::util::shell_quote(w))).collect();
                    format!(
                        "0) rm -f {err}; exit 0 ;;\n  1) case \"$(cat {err} 2>/dev/null)\" in {}) ;; *) rm -f {err}; exit 1 ;; esac ;;",
                        words.join("|")
                    )
                };
                // Where stderr cannot be kept, the tool runs as before: a redirection that
                // fails would make the shell exit without running it (2: `sh` ends on a
                // special builtin's failed redirection, hence the subshell), which the server
                // reads as "no such segment". Without its words an exit 1 whose reading needs
                // them (`not_absent`) cannot be told from a store that is gone: it stops
                // recovery, never read as the end of the WAL (issue 39), and says why in the
                // server's log, where recovery's verdict finds it (`UNKEPT`).
                let unkept = if how.not_absent.is_empty() {
                    String::new()
                } else {
                    let why = crate::util::shell_quote(&format!(
                        "{UNKEPT} ({tool}'s exit 1 fetching a segment cannot be read without its words): recovery stops here"
                    ));
                    format!("  if [ $rc -eq 1 ]; then echo {why} >&2; exit 126; fi\n")
                };
                text.push_str(&format!(
                    "if ( : >{err} ) 2>/dev/null; then\n  {call} 2>{err}\n  rc=$?\n  cat {err} >&2\nelse\n  {call}\n  rc=$?\n{unkept}fi\n\
                     case $rc in\n  {passed}\nesac\n\
                     {{ echo \"$rc\"; echo \"$1\"; tail -n 20 {err} 2>/dev/null; }} >{err}.new 2>/dev/null && mv {err}.new {done}\n\
                     rm -f {err}\n"
                ));
            }
        }
        text.push_str(&format!(
            "echo \"pgdrill: {tool} failed (exit $rc) fetching $1: recovery stops here\" >&2\nexit 126\n"
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)
            .map_err(|e| Failure::environment(format!("writing {}: {e}", path.display())))?;
        f.write_all(text.as_bytes()).map_err(|e| Failure::environment(format!("writing {}: {e}", path.display())))?;
        drop(f);
        run_as.own(dir.path())?;
        run_as.own(&path)?;
        // Handing a file over leaves it readable and writable only: the server must run it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Failure::environment(format!("making {} executable: {e}", path.display())))?;
        let command = format!("{} %f \"%p\"", server_escape(&crate::util::shell_quote(&path.display().to_string())));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(dir);
        Ok(command)
    }

    /// The scripts' folders: a throwaway in Docker mounts them to run its restore_command.
    pub fn dirs(&self) -> Vec<PathBuf> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|d| d.path().to_path_buf()).collect()
    }
}

/// The file of a throwaway's workspace where a restore_command script
/// (`Scripts::restore_command_reporting`) records the tool's last failure: its exit code,
/// the segment it was fetching and the last lines of its stderr, one to a line.
pub const FETCH_FAILED: &str = "restore_command.failed";

/// How a reporting restore_command script reads its tool (`Scripts::restore_command_read`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Reading<'a> {
    /// Words that, in the stderr of a tool that exited 1, say the failure is not the
    /// segment's absence (its store is gone, the tool itself crashed): PostgreSQL would read
    /// that 1 as the archive's end and promote, so the script records it and stops recovery.
    pub not_absent: &'a [&'a str],
    /// The tool reads local files only: none of the tools' variables (`tool_env`: secrets)
    /// is written into its script.
    pub local: bool,
}

/// What a reporting restore_command script writes to the server's log when it stopped
/// recovery because the workspace could not keep its tool's stderr, where an exit 1 needs
/// the tool's words to be read (`Reading::not_absent`): this machine's failure, which
/// recovery's verdict names as such (`recover`), never a verdict on the backup.
pub const UNKEPT: &str = "pgdrill: the throwaway's workspace cannot keep the restore_command's stderr";

/// The tool's stderr while it runs, in the same workspace (removed after each call).
const FETCH_STDERR: &str = "restore_command.stderr";

/// A restore_command's tool that failed fetching a segment, as its script recorded it: the
/// source of a recovery's failure, for the source to judge (`PhysicalSource::judge_fetch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchFailed {
    /// The tool's exit code.
    pub code: i32,
    /// The file the server asked for (`000000010000000000000005`, `00000002.history`).
    pub segment: String,
    /// The last lines of the tool's stderr.
    pub said: String,
}

impl std::fmt::Display for FetchFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {} fetching {}: {}", self.code, self.segment, self.said)
    }
}

impl std::error::Error for FetchFailed {}

/// What the restore_command's tool recorded in `workspace` (`FETCH_FAILED`) when it failed
/// with a code other than 0 or 1; `None` when it never did or the record is unreadable.
pub fn fetch_failed(workspace: &Path) -> Option<FetchFailed> {
    let text = std::fs::read_to_string(workspace.join(FETCH_FAILED)).ok()?;
    let mut lines = text.lines();
    let code = lines.next()?.trim().parse().ok()?;
    let segment = lines.next()?.trim().to_string();
    let said = lines.map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n");
    Some(FetchFailed { code, segment, said })
}

/// A tool's binary as found, with the version it reported (the log and the report say
/// which binary served).
#[derive(Debug, Clone)]
pub struct Binary {
    pub path: PathBuf,
    /// As the tool printed it, e.g. `pgBackRest 2.45`.
    pub version: String,
}

/// Environment variables a tool child gets from pgdrill's environment, by prefix: the
/// tool's own settings (`PGBACKREST_REPO1_CIPHER_PASS`, S3 keys) and the cloud SDKs'
/// credentials. Secrets reach the tool through these, never through argv. STORAGE_EMULATOR_HOST
/// is where Google's clients (barman-cloud's) find a GCS emulator, as pgdrill's gs:// does.
pub const TOOL_ENV_PREFIXES: &[&str] = &[
    "PGBACKREST_",
    "AWS_",
    "AZURE_",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "BOTO_",
    "STORAGE_EMULATOR_HOST",
];

/// The variables of pgdrill's environment a tool child gets (names and values).
pub fn tool_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| TOOL_ENV_PREFIXES.iter().any(|p| k.starts_with(p))))
        .collect()
}

/// A command for a tool: a clean environment (`child::command`) plus the tool's variables.
/// Python's FutureWarnings are silenced: the google-api-core barman-cloud loads for Google
/// Cloud Storage prints one about the interpreter's version on every run, and it took two of
/// the three lines of the tool's output an error quotes.
pub fn tool_command(program: &Path) -> Command {
    let mut cmd = crate::child::command(program);
    cmd.envs(tool_env());
    cmd.env("PYTHONWARNINGS", "ignore::FutureWarning");
    cmd
}

/// Find `program` (`explicit`, else on PATH) and ask its version with `version_args`. A
/// missing tool is the environment's failure naming the Debian package that holds it. The
/// version probe runs through `stop`, as the source's other calls do: under a guard, and
/// ended at once when the run is interrupted or the step times out (a tool whose start
/// hangs, on a mount that stopped answering, held the step before).
pub fn find(
    program: &str,
    explicit: Option<&Path>,
    version_args: &[&str],
    package: &str,
    stop: &Interrupt,
) -> Result<Binary, Failure> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => on_path(program).ok_or_else(|| {
            Failure::environment(format!(
                "{program} not found on PATH: install the Debian package `{package}` (apt-get install {package}) or give the binary's path"
            ))
        })?,
    };
    let what = format!("{} {}", path.display(), version_args.join(" "));
    let out = stop.run(tool_command(&path).args(version_args), &what).map_err(|e| {
        if stop.interrupted() {
            return e;
        }
        let cause = e.source.as_deref().map(|s| s.to_string()).unwrap_or_else(|| e.message.clone());
        let mut f = Failure::environment(format!(
            "cannot run {} ({cause}): install the Debian package `{package}` or give the binary's path",
            path.display()
        ));
        f.source = e.source;
        f
    })?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    if !out.status.success() || version.is_empty() {
        return Err(Failure::environment(format!(
            "{} {} did not report its version ({}): check the installation of `{package}`",
            path.display(),
            version_args.join(" "),
            last_lines(&text, 3)
        )));
    }
    Ok(Binary { path, version })
}

/// `program` in the Docker image `image`, with the version it reported (`version_args`):
/// the tool's binary there (its path is the image's PATH's business). `None` when the image
/// lacks it or Docker cannot run it. The probe runs through `stop` in a container named and
/// labelled as pgdrill's, so an interrupted probe removes it and a killed pgdrill's is reaped.
pub fn find_in_image(program: &str, version_args: &[&str], image: &str, stop: &Interrupt) -> Option<Binary> {
    let name = container_name();
    let how =
        crate::pg::image_tools::InImage { name: Some(&name), network: false, labelled: true, ..Default::default() };
    let mut probe = crate::child::command(program);
    probe.args(version_args);
    let (mut cmd, _env) = crate::pg::image_tools::in_image_with(&probe, image, &how).ok()?;
    let what = format!("{program} {} in {image}", version_args.join(" "));
    let out = stop.run(&mut cmd, &what).ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().map(str::trim).find(|l| !l.is_empty())?.to_string();
    Some(Binary { path: PathBuf::from(program), version })
}

/// The name of a tool's container, `pgdrill-tool-PID-RANDOM`: what an interrupted call
/// removes (`container_of`).
pub fn container_name() -> String {
    format!("pgdrill-tool-{}-{}", std::process::id(), crate::pg::native::generate_password().get(..8).unwrap_or("0"))
}

/// `program` in the image of the newest PostgreSQL major Docker has here that holds it, for
/// a machine without the tool: the image's name and the tool's binary there. Only what a
/// repository's listing needs (any major's tool reads the repository); restoring a backup
/// still takes an image of the backup's own major. `None` when no image has it.
pub fn find_in_any_image(program: &str, version_args: &[&str], stop: &Interrupt) -> Option<(String, Binary)> {
    let mut images: Vec<String> = (12..=18).rev().flat_map(crate::pg::image_tools::images_of).collect();
    // PGDRILL_DOCKER_IMAGE names one image for every major: asked once.
    let mut seen = std::collections::HashSet::new();
    images.retain(|i| seen.insert(i.clone()));
    images.into_iter().find_map(|image| find_in_image(program, version_args, &image, stop).map(|bin| (image, bin)))
}

/// PostgreSQL's own `tool` (pg_verifybackup) of `major` or newer on this machine (`explicit`,
/// else as `pg::native::find_tool` looks for it), its `--version` probes run through `stop`
/// as the source's other calls are: under a guard, and ended at once by Ctrl-C or the step's
/// timeout (said so, never read as the tool missing). A candidate path that is not there is
/// not probed.
pub fn find_pg_tool(
    tool: &str,
    explicit: Option<&Path>,
    major: u32,
    stop: &Interrupt,
) -> Result<(PathBuf, String, u32), Failure> {
    crate::pg::native::find_tool_with(tool, explicit, major, &mut |cmd| {
        let program = Path::new(cmd.get_program()).to_path_buf();
        if program.is_absolute() && !program.is_file() {
            return Ok(None);
        }
        match stop.run(cmd, &format!("{} --version", program.display())) {
            Ok(out) => Ok(Some(out)),
            Err(e) if stop.interrupted() => Err(e),
            Err(_) => Ok(None),
        }
    })
}

/// A tool child run in a Docker image rather than on this machine: the tool's environment
/// reaches it through an env file readable by its owner only (never argv), `ro` folders and
/// files are mounted read-only and `rw` folders read-write at their own paths, it runs as
/// the user the throwaway server runs as (so what it writes, the server reads), and it is
/// labelled as pgdrill's: a container a killed pgdrill left is removed by the next
/// recovery. The env file must live until the child ends.
pub fn image_command(
    program: &str,
    image: &str,
    ro: &[PathBuf],
    rw: &[PathBuf],
    network: bool,
) -> Result<(Command, crate::pg::image_tools::EnvFile), Failure> {
    let ids = RunAs::detect()?.ids();
    let name = container_name();
    let ro: Vec<&Path> = ro.iter().map(PathBuf::as_path).collect();
    let rw: Vec<&Path> = rw.iter().map(PathBuf::as_path).collect();
    let how = crate::pg::image_tools::InImage {
        ro: &ro,
        rw: &rw,
        name: Some(&name),
        user: Some(ids),
        network,
        labelled: true,
    };
    crate::pg::image_tools::in_image_with(&tool_command(Path::new(program)), image, &how)
        .map_err(|e| Failure::environment(format!("cannot run {program} in {image}: {e}")))
}

/// A tool's version as numbers (`pgBackRest 2.55.1` -> [2, 55, 1]): the first word that
/// starts with a digit; empty when there is none. Compared as numbers, so 2.100 > 2.55.
pub fn version_numbers(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .map(|w| w.split('.').map_while(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// The first `program` in PATH's directories that is an executable file.
fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// A source's children that a signal must end at once. A blocking tool call (a `barman
/// recover`, a `docker exec` of it) holds the step until it returns, and the run's
/// cancellation is only seen then: pgdrill's Ctrl-C waited for the copy to finish. A source
/// runs its tool through [`Interrupt::run`], and the step that uses it calls
/// [`Interrupt::interrupt`] when the run is cancelled: each child's process group is killed
/// (the tool's own children, rsync or a hook script, with it) and each hook registered with
/// [`Interrupt::on_interrupt`] runs (a container removed), and no call starts after it.
/// Shared by clones; owned by the source, never process-wide.
#[derive(Clone, Default)]
pub struct Interrupt(std::sync::Arc<Interrupted>);

#[derive(Default)]
struct Interrupted {
    done: std::sync::atomic::AtomicBool,
    /// The process groups of the children running now.
    groups: Mutex<Vec<i32>>,
    hooks: Mutex<Vec<Box<dyn Fn() + Send + Sync>>>,
}

impl std::fmt::Debug for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interrupt").field("interrupted", &self.interrupted()).finish()
    }
}

impl Interrupt {
    /// Whether the run was interrupted.
    pub fn interrupted(&self) -> bool {
        self.0.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Run `f` when the run is interrupted (at once if it already was).
    pub fn on_interrupt(&self, f: impl Fn() + Send + Sync + 'static) {
        if self.interrupted() {
            return f();
        }
        self.0.hooks.lock().unwrap_or_else(|e| e.into_inner()).push(Box::new(f));
    }

    /// End every child running now (SIGKILL to its process group) and run the hooks.
    pub fn interrupt(&self) {
        self.0.done.store(true, std::sync::atomic::Ordering::SeqCst);
        for g in self.0.groups.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(*g), nix::sys::signal::Signal::SIGKILL);
        }
        let hooks = std::mem::take(&mut *self.0.hooks.lock().unwrap_or_else(|e| e.into_inner()));
        for h in hooks {
            h();
        }
    }

    /// `Err` saying `what` was stopped when the run was interrupted, else `Ok`: what a caller
    /// returns rather than read a call the interrupt ended (a probe in an image that gave
    /// nothing) as the tool's own answer ("no image has it").
    pub fn check(&self, what: &str) -> Result<(), Failure> {
        if self.interrupted() {
            return Err(stopped(what));
        }
        Ok(())
    }

    /// Interrupt when `cancel` is cancelled (the step's token: a signal, or the step's own
    /// `timeout:`), from a task of its own, since the step itself is blocked in the call;
    /// stops watching when the returned [`Watch`] is dropped, with the step.
    pub fn watch(&self, cancel: tokio_util::sync::CancellationToken) -> Watch {
        let me = self.clone();
        Watch(tokio::spawn(async move {
            cancel.cancelled().await;
            let _ = tokio::task::spawn_blocking(move || me.interrupt()).await;
        }))
    }

    /// [`run`], in a process group of its own that [`Interrupt::interrupt`] kills. A call
    /// made or ended by an interruption is the environment's failure saying so, never the
    /// tool's verdict on a backup. A tool run in an image (`image_command`: `docker run
    /// --name`) is removed with its container before the call returns: killing the docker
    /// client leaves the container running the tool.
    pub fn run(&self, cmd: &mut Command, what: &str) -> Result<Output, Failure> {
        use std::os::unix::process::CommandExt;
        if self.interrupted() {
            return Err(stopped(what));
        }
        cmd.process_group(0);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Under a guard (whose group holds the tool's): killed with pgdrill, even by kill -9.
        let child = crate::child::spawn_guarded(cmd)
            .map_err(|e| Failure::environment(format!("cannot run {what}: {e}")).with_source(e))?;
        let group = child.id() as i32;
        self.0.groups.lock().unwrap_or_else(|e| e.into_inner()).push(group);
        // Interrupted between the check above and the group's record: it was not killed.
        if self.interrupted() {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(group), nix::sys::signal::Signal::SIGKILL);
        }
        let out = child.wait_with_output();
        self.0.groups.lock().unwrap_or_else(|e| e.into_inner()).retain(|g| *g != group);
        if self.interrupted() {
            if let Some(name) = container_of(cmd) {
                crate::pg::image_tools::remove(&name);
            }
            return Err(stopped(what));
        }
        out.map_err(|e| Failure::environment(format!("cannot run {what}: {e}")).with_source(e))
    }

    /// `pg_verifybackup` (`cmd`, ready to run) through the interrupt: on a large backup it
    /// reads every file for minutes, and Ctrl-C or the step's timeout must not wait for it.
    /// Its complaint is the backup's failure, naming `backup` and its first five lines.
    pub fn verify_backup(&self, cmd: &mut Command, backup: &str) -> Result<(), Failure> {
        let out = self.run(cmd, "pg_verifybackup")?;
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr);
        let first: Vec<&str> = text.lines().take(5).collect();
        Err(Failure::failed(format!(
            "pg_verifybackup found {backup} damaged: {}",
            crate::util::visible(&first.join("; "))
        )))
    }
}

/// The interrupt as the lower layers take it: their tool calls (`backup::base`'s
/// pg_verifybackup and the probes that find it, `pg::image_tools`' probe) run through
/// [`Interrupt::run`].
impl crate::child::Calls for Interrupt {
    fn run(&self, cmd: &mut Command, what: &str) -> Result<Output, Failure> {
        Interrupt::run(self, cmd, what)
    }

    fn interrupted(&self) -> bool {
        Interrupt::interrupted(self)
    }
}

/// What a call the interrupt ended or refused says: the environment's failure, never the
/// tool's verdict. The step's timeout ends calls through the same interrupt (and the step
/// then says it timed out).
fn stopped(what: &str) -> Failure {
    Failure::environment(format!("{what} was stopped: the run was interrupted"))
}

/// The container a `docker run` command names (`--name`, as `image_command` gives it).
fn container_of(cmd: &Command) -> Option<String> {
    let docker = Path::new(cmd.get_program()).file_name().is_some_and(|n| n == "docker");
    let args: Vec<&std::ffi::OsStr> = cmd.get_args().collect();
    if !docker || args.first().is_none_or(|a| *a != "run") {
        return None;
    }
    args.windows(2).find(|w| w[0] == "--name").and_then(|w| w[1].to_str()).map(str::to_string)
}

/// A running [`Interrupt::watch`]; dropped, it stops watching.
pub struct Watch(tokio::task::JoinHandle<()>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The last `n` non-empty lines of a tool's output, joined with " / ": what a one-line
/// message quotes of a failure.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    crate::util::visible(&lines[from..].join(" / ")).into_owned()
}

/// Both streams of a finished child, as text.
pub fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// pgdrill's own option in every tool's location, `ledger=FOLDER`: the folder where pgdrill
/// keeps the ledger of this source's verifications (`ledger.jsonl`, one line per run, keyed
/// by the tool's backup id). Never the tool's repository, which pgdrill does not write; so a
/// ledger is where the team says, and the location that names the source names it too
/// (`backups list` and `verify-physical` read the same string).
pub const LEDGER: &str = "ledger";

/// Options after `?` in a location: `k=v` pairs separated by `&`, values percent-decoded
/// strictly. An unknown option or a bad encoding is invalid input naming it. `ledger` is
/// pgdrill's, known to every tool's location and never handed to the tool (`ledger_of`).
pub fn options(query: &str, known: &[&str], location: &str) -> Result<Vec<(String, String)>, Failure> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == LEDGER {
            continue;
        }
        if !known.contains(&k) {
            return Err(Failure::invalid(format!(
                "unknown option `{}` in the source `{}` (known: {})",
                crate::util::visible(k),
                crate::util::visible(location),
                known.join(", ")
            )));
        }
        let v = crate::util::percent_decode_strict(v).ok_or_else(|| {
            Failure::invalid(format!(
                "the option `{k}` of the source `{}` is not valid percent-encoding",
                crate::util::visible(location)
            ))
        })?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

/// The ledger a tool's location names (`&ledger=FOLDER`, or `&ledger=s3://BUCKET/PATH` and
/// the other object stores' URLs), if any: the text as given, decoded. A store's URL takes no
/// options of its own (`?endpoint=...`): the runbook appends the backup's id to it, so its
/// endpoint and credentials come from the environment (`AWS_ENDPOINT_URL`, ...).
pub fn ledger_of(location: &str) -> Result<Option<String>, Failure> {
    let query = location.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut found = None;
    for pair in query.split('&') {
        let Some(v) = pair.strip_prefix(LEDGER).and_then(|r| r.strip_prefix('=')) else { continue };
        let v = crate::util::percent_decode_strict(v).ok_or_else(|| {
            Failure::invalid(format!(
                "the option `ledger` of the source `{}` is not valid percent-encoding",
                crate::util::visible(location)
            ))
        })?;
        let in_store = crate::storage::local_dir(&v).is_none();
        if v.trim().is_empty() || v.chars().any(char::is_control) || (!in_store && v.contains("://")) {
            return Err(Failure::invalid(format!(
                "the option `ledger` of the source `{}` must name a local folder (`&ledger=/var/lib/pgdrill/ledger/main`) or a folder in an object store (`&ledger=s3://BUCKET/ledger/main`)",
                crate::util::visible(location)
            )));
        }
        if in_store && v.contains('?') {
            return Err(Failure::invalid(format!(
                "the option `ledger` of the source `{}` names a store with options of its own: give the store's settings through the environment (AWS_ENDPOINT_URL, AWS_REGION, ...) and its URL alone",
                crate::util::visible(location)
            )));
        }
        // `s3://bkt/l/` and `s3://bkt/l` are one folder (the runbook appends `/ID`).
        let trimmed = v.trim();
        let folder = if trimmed.len() > 1 { trimmed.trim_end_matches('/') } else { trimmed };
        if found.replace(folder.to_string()).is_some() {
            return Err(Failure::invalid(format!(
                "the source `{}` names `ledger` twice: give one folder",
                crate::util::visible(location)
            )));
        }
    }
    Ok(found)
}

/// The newest verification of each of a source's backups its ledger records, by the tool's
/// backup id; empty when the location names no ledger or nothing was recorded yet. A ledger
/// that cannot be read is an error naming its line or object (the ledger fails closed).
/// Its store is opened among the command's `stores`.
pub async fn last_verifications(
    location: &str,
    stores: &crate::storage::Opened,
) -> Result<std::collections::HashMap<String, crate::backup::ledger::Entry>, Failure> {
    let Some(ledger) = ledger_of(location)? else { return Ok(Default::default()) };
    let store = stores.open_in(&ledger, Path::new("")).map_err(Failure::invalid)?;
    // A folder here keeps one appended file; an object store one record per verification
    // (`verify.record` writes them, `.ledger/<time>-<random>.json`), read through the store.
    if let Some(file) = store.local_path(crate::backup::ledger::FILE) {
        return Ok(crate::backup::ledger::last_by_backup(&file)?);
    }
    let mut out = std::collections::HashMap::new();
    for entry in store_records(&*store).await? {
        out.insert(entry.backup.clone(), entry);
    }
    Ok(out)
}

/// An object store's ledger records under its root, oldest first (their names begin with
/// the time of the verification). A record that is not a ledger entry is an error naming
/// it: never skipped, so a lost "passed" cannot make a proven backup look unproven.
async fn store_records(store: &dyn crate::storage::Store) -> Result<Vec<crate::backup::ledger::Entry>, Failure> {
    let prefix = format!("{}/", crate::backup::ledger::RECORDS);
    let mut keys: Vec<String> = store
        .list(&prefix)
        .await
        .map_err(Failure::environment)?
        .into_iter()
        .map(|m| m.key)
        .filter(|k| k.strip_prefix(&prefix).is_some_and(|n| !n.contains('/') && n.ends_with(".json")))
        .collect();
    keys.sort();
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        let bytes = store.read(&key).await.map_err(Failure::environment)?;
        let entry = serde_json::from_slice(&bytes).map_err(|e| {
            Failure::failed(format!(
                "{}: not a ledger entry ({e}); the ledger is evidence and is not read past a damaged record: fix or remove that object (keep a copy), then run again",
                store.url_of(&key)
            ))
        })?;
        out.push(entry);
    }
    Ok(out)
}

/// Bytes of the regular files under `dir` (symbolic links not followed).
pub fn tree_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// The tablespaces of a materialized data directory: each `pg_tblspc/<oid>` link and where
/// it points.
pub fn tablespaces(data: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(data.join("pg_tblspc")) else { return Vec::new() };
    let mut v: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, std::fs::read_link(e.path()).ok()?)))
        .collect();
    v.sort();
    v
}

/// A word of a restore_command as the server reads it: `%` is the server's escape (`%f`,
/// `%p`), so a `%` of a path or a name is written `%%`.
pub fn server_escape(word: &str) -> String {
    word.replace('%', "%%")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `pid` runs (a zombie or a gone pid does not).
    fn running(pid: i32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().and_then(|r| r.trim_start().chars().next());
        state.is_some_and(|c| c != 'Z' && c != 'X')
    }

    /// Regression (issue 39): a signal waited for the running tool call to return (a `barman
    /// recover` whose hook hangs: forever). The call's process group, the tool's own children
    /// with it, ends at once, the call is the environment's failure saying so, and no call
    /// starts after it.
    #[test]
    fn an_interrupt_ends_the_running_call_with_its_children_and_starts_none_after_it() {
        let dir = tempfile::tempdir().expect("a folder");
        let started = dir.path().join("started");
        let mut cmd = crate::child::command("sh");
        cmd.arg("-c").arg(format!("sleep 3598 & echo $! > {}.part && mv {0}.part {0}; wait", started.display()));
        let interrupt = Interrupt::default();
        let (tx, call) = std::sync::mpsc::channel();
        {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || tx.send(interrupt.run(&mut cmd, "a hanging tool")));
        }
        // A bound for a broken build only, never a measure of speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let grandchild = loop {
            if let Some(pid) = std::fs::read_to_string(&started).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
                break pid;
            }
            assert!(std::time::Instant::now() < deadline, "the tool never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        assert!(!interrupt.interrupted());
        interrupt.interrupt();
        let e =
            call.recv_timeout(std::time::Duration::from_secs(60)).expect("the call returned").expect_err("interrupted");
        assert_eq!(e.class, crate::error::Class::Environment, "{e}");
        assert!(e.to_string().contains("a hanging tool was stopped: the run was interrupted"), "{e}");
        while running(grandchild) {
            assert!(std::time::Instant::now() < deadline, "the tool's own child {grandchild} outlived the interrupt");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let after = interrupt.run(&mut crate::child::command("true"), "a later call").expect_err("refused");
        assert!(after.to_string().contains("a later call was stopped"), "{after}");
        let hooked = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let h = hooked.clone();
        interrupt.on_interrupt(move || h.store(true, std::sync::atomic::Ordering::SeqCst));
        assert!(hooked.load(std::sync::atomic::Ordering::SeqCst), "a hook registered after the interrupt runs at once");
    }

    /// Waits for a probe to have started (it touches `started`), interrupts it, and returns
    /// what the probe's call answered: an environment failure.
    fn interrupted_once_started<T: std::fmt::Debug>(
        started: &Path,
        interrupt: &Interrupt,
        call: &std::sync::mpsc::Receiver<Result<T, Failure>>,
    ) -> Failure {
        // A bound for a broken build only, never a measure of speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !started.exists() {
            assert!(std::time::Instant::now() < deadline, "the probe never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        interrupt.interrupt();
        let e = call
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the probe returned")
            .expect_err("interrupted");
        assert_eq!(e.class, crate::error::Class::Environment, "{e}");
        e
    }

    /// Regression (issue 39): a tool's version probe (`find`, run when a source opens) was
    /// outside the interrupt: a tool whose start hangs (a mount that stopped answering) held
    /// the step past Ctrl-C and its timeout. It runs through the source's interrupt now:
    /// ended at once, said so, and not blamed on the tool's installation.
    #[test]
    fn a_version_probe_that_hangs_is_ended_by_the_interrupt() {
        let dir = tempfile::tempdir().expect("a folder");
        let started = dir.path().join("started");
        let body = format!("touch {}; exec sleep 3593", started.display());
        let interrupt = Interrupt::default();
        let (tx, call) = std::sync::mpsc::channel();
        {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || {
                tx.send(find("sh", Some(Path::new("/bin/sh")), &["-c", &body], "dash", &interrupt))
            });
        }
        let e = interrupted_once_started(&started, &interrupt, &call);
        assert!(e.to_string().contains("was stopped: the run was interrupted"), "{e}");
        assert!(!e.to_string().contains("install"), "{e}");
    }

    /// Regression (issue 39): the `--version` probes that find pg_verifybackup (run by a
    /// pg_basebackup folder and a Barman server after the restore) were outside the
    /// interrupt: one that hangs held Ctrl-C and the step's timeout. Ended at once now, said
    /// so, never read as the tool missing; and once interrupted, a search that found nothing
    /// says it was stopped (a probe in an image read back as "no image has it").
    #[test]
    fn a_pg_tools_version_probe_that_hangs_is_ended_by_the_interrupt() {
        let dir = tempfile::tempdir().expect("a folder");
        let started = dir.path().join("started");
        let probe = dir.path().join("pg_verifybackup");
        std::fs::write(&probe, format!("#!/bin/sh\ntouch {}\nexec sleep 3589\n", started.display())).expect("write");
        std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        let interrupt = Interrupt::default();
        let (tx, call) = std::sync::mpsc::channel();
        {
            let (interrupt, probe) = (interrupt.clone(), probe.clone());
            std::thread::spawn(move || tx.send(find_pg_tool("pg_verifybackup", Some(&probe), 15, &interrupt)));
        }
        assert!(interrupt.check("a search").is_ok(), "not interrupted yet");
        let e = interrupted_once_started(&started, &interrupt, &call);
        assert!(e.to_string().contains("--version was stopped: the run was interrupted"), "{e}");
        assert!(!e.to_string().contains("not found"), "{e}");
        let e = interrupt.check("the search for pgbackrest in Docker's images").expect_err("stopped");
        assert_eq!(e.to_string(), "the search for pgbackrest in Docker's images was stopped: the run was interrupted");
    }

    /// Regression (issue 39): an interrupt killed the docker client of a tool run in an
    /// image (`image_command`: pgBackRest's or barman-cloud's restore in the image of the
    /// backup's major), which leaves the container running the tool. The interrupted call
    /// now removes its container before it returns.
    #[test]
    fn an_interrupted_call_in_an_image_removes_its_container() {
        let Some(image) = (12..=18).rev().flat_map(crate::pg::image_tools::images_of).next() else {
            assert!(std::env::var_os("CI").is_none(), "no PostgreSQL image in Docker (bash ci/setup.sh builds one)");
            eprintln!("skipped: no PostgreSQL image in Docker");
            return;
        };
        let (mut cmd, _env) = image_command("sleep", &image, &[], &[], false).expect("a command");
        cmd.arg("3596");
        let name = container_of(&cmd).expect("the command names its container");
        assert_eq!(container_of(crate::child::command("sleep").args(["--name", "x"])), None, "docker run only");
        let interrupt = Interrupt::default();
        let (tx, call) = std::sync::mpsc::channel();
        {
            let interrupt = interrupt.clone();
            std::thread::spawn(move || tx.send(interrupt.run(&mut cmd, "a tool in an image")));
        }
        let state = |name: &str| {
            let mut d = crate::pg::image_tools::docker();
            d.args(["inspect", "--format", "{{.State.Running}}", name]);
            crate::child::output(&mut d)
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        // A bound for a broken build only, never a measure of speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while state(&name).as_deref() != Some("true") {
            assert!(std::time::Instant::now() < deadline, "the tool's container {name} never ran");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        interrupt.interrupt();
        let e = call
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("the call returned")
            .expect_err("interrupted");
        assert!(e.to_string().contains("a tool in an image was stopped"), "{e}");
        assert_eq!(state(&name), None, "the container {name} outlived the interrupted call");
    }

    /// Issue 39: the probe of a major's tools in its image (`pg::image_tools::find_with`)
    /// runs through its caller's interrupt: once the run is interrupted it is not started,
    /// and that is said, never read as Docker failing or the image lacking the tool.
    #[test]
    fn a_tools_probe_in_an_image_is_stopped_by_the_interrupt() {
        let Some(major) = [17, 15].into_iter().find(|m| crate::pg::image_tools::image_of(*m).is_some()) else {
            assert!(std::env::var_os("CI").is_none(), "no PostgreSQL image in Docker (bash ci/setup.sh builds one)");
            eprintln!("skipped: no PostgreSQL image in Docker");
            return;
        };
        let interrupt = Interrupt::default();
        interrupt.interrupt();
        let e = crate::pg::image_tools::find_with("pg_restore", major, &interrupt).expect_err("stopped");
        assert!(e.starts_with("pg_restore --version in "), "{e}");
        assert!(e.ends_with(" was stopped: the run was interrupted"), "{e}");
    }

    #[test]
    fn an_unknown_option_in_a_source_is_named() {
        let e = options("stanza=a&colour=red", &["stanza"], "pgbackrest://a?colour=red").expect_err("an error");
        assert!(e.to_string().contains("`colour`"), "{e}");
        let ok = options("config=%2Fetc%2Fp.conf", &["config"], "x").expect("parsed");
        assert_eq!(ok, vec![("config".to_string(), "/etc/p.conf".to_string())]);
    }

    /// The script keeps PostgreSQL's contract: 0 and 1 (no such segment) pass through, any
    /// other failure of the tool becomes 126, which stops recovery instead of ending it.
    #[test]
    fn a_tools_failure_other_than_a_missing_segment_stops_recovery() {
        let scripts = Scripts::default();
        let run = |code: &str| {
            let cmd = scripts
                .restore_command("test", &["/bin/sh".into(), "-c".into(), format!("exit {code}"), "sh".into()])
                .expect("a script");
            assert!(!cmd.contains("exit"), "the restore_command names the script, not the tool's words: {cmd}");
            let cmd = cmd.replace("%f", "000000010000000000000001").replace("%p", "pg_wal/RECOVERYXLOG");
            crate::child::output(crate::child::command("/bin/sh").args(["-c", &cmd])).expect("sh").status.code()
        };
        assert_eq!(run("0"), Some(0));
        assert_eq!(run("1"), Some(1));
        assert_eq!(run("3"), Some(126));
        assert_eq!(run("55"), Some(126));
    }

    /// Regression (issue 39): the tool's failure inside the restore_command reached only the
    /// server's log, as "exit code 126": the script now records its exit code, the segment
    /// and its stderr in the workspace for the verdict, and still keeps PostgreSQL's
    /// contract (0 and 1 pass through, nothing recorded; a workspace it cannot write in
    /// never turns a failure into "no such segment").
    #[test]
    fn a_tools_failure_in_the_restore_command_is_recorded_for_the_verdict() {
        let ws = tempfile::tempdir().expect("tmp");
        let scripts = Scripts::default();
        let run = |code: &str, workspace: &Path| {
            let words =
                ["/bin/sh".into(), "-c".into(), format!("echo 'ERROR: [0{code}]: said' >&2; exit {code}"), "sh".into()];
            let cmd = scripts.restore_command_reporting("test", &words, workspace).expect("a script");
            let cmd = cmd.replace("%f", "000000010000000000000007").replace("%p", "pg_wal/RECOVERYXLOG");
            let out = crate::child::output(crate::child::command("/bin/sh").args(["-c", &cmd])).expect("sh");
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("said"),
                "stderr still reaches the server's log: {out:?}"
            );
            out.status.code()
        };
        assert_eq!(run("0", ws.path()), Some(0));
        assert_eq!(run("1", ws.path()), Some(1));
        assert_eq!(fetch_failed(ws.path()), None, "0 and 1 are not failures");
        assert_eq!(run("42", ws.path()), Some(126));
        let f = fetch_failed(ws.path()).expect("recorded");
        assert_eq!(
            (f.code, f.segment.as_str(), f.said.as_str()),
            (42, "000000010000000000000007", "ERROR: [042]: said")
        );
        let nowhere = ws.path().join("gone");
        assert_eq!(run("1", &nowhere), Some(1));
        assert_eq!(run("55", &nowhere), Some(126));
        let names: Vec<_> = std::fs::read_dir(ws.path()).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FETCH_FAILED)], "no stderr file is left");
    }

    /// Regression (issue 39): barman-cloud-wal-restore exits 1 both for a segment the store
    /// lacks and for a bucket that is gone ("Bucket X does not exist"), and PostgreSQL read
    /// both as the archive's end and promoted. An exit 1 whose stderr holds one of the
    /// source's words now stops recovery and is recorded; a bare exit 1 stays the end.
    #[test]
    fn an_exit_1_whose_words_say_the_store_is_gone_stops_recovery() {
        let ws = tempfile::tempdir().expect("tmp");
        let scripts = Scripts::default();
        let how = Reading { not_absent: &["ERROR: Bucket ", "it's gone"], local: true };
        let run = |said: &str, code: &str| {
            let words = ["/bin/sh".into(), "-c".into(), format!("echo \"{said}\" >&2; exit {code}"), "sh".into()];
            let cmd = scripts.restore_command_read("test", &words, ws.path(), how).expect("a script");
            let cmd = cmd.replace("%f", "000000010000000000000009").replace("%p", "pg_wal/RECOVERYXLOG");
            crate::child::output(crate::child::command("/bin/sh").args(["-c", &cmd])).expect("sh").status.code()
        };
        assert_eq!(run("INFO: WAL file 000000010000000000000009 does not exists", "1"), Some(1));
        assert_eq!(run("", "1"), Some(1));
        assert_eq!(run("", "0"), Some(0));
        assert_eq!(fetch_failed(ws.path()), None, "an absent segment is not a failure");
        assert_eq!(run("2026-12-07 13:00:00,000 [77] ERROR: Bucket drill-bkt does not exist", "1"), Some(126));
        let f = fetch_failed(ws.path()).expect("recorded");
        assert_eq!((f.code, f.segment.as_str()), (1, "000000010000000000000009"));
        assert!(f.said.contains("ERROR: Bucket drill-bkt does not exist"), "{f:?}");
        assert_eq!(run("and it's gone", "1"), Some(126), "a word with a quote in it");
        assert_eq!(run("ERROR: Bucket x does not exist", "0"), Some(0), "a fetch that worked passes whatever it said");
    }

    /// Regression (issue 39): where the workspace could not keep the tool's stderr, the
    /// script ran the tool as before and passed its exit 1 on as "no such segment", so a
    /// barman-cloud bucket gone during recovery was read as the end of the WAL again. An exit
    /// 1 whose reading needs the tool's words now stops recovery there (126, with a line
    /// saying why, which recovery's verdict finds); 0 still passes, and a tool whose exit 1
    /// needs no words (a folder's copy) keeps PostgreSQL's contract.
    #[test]
    fn an_exit_1_that_needs_the_tools_words_stops_recovery_where_they_cannot_be_kept() {
        let ws = tempfile::tempdir().expect("tmp");
        let tool = ws.path().join("fake-wal-restore");
        std::fs::write(&tool, "#!/bin/sh\necho \"fetching $1\" >&2\nexit \"$(cat \"$0.rc\")\"\n").expect("tool");
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
        // A workspace that is not there: nothing can be kept in it.
        let nowhere = ws.path().join("gone");
        let scripts = Scripts::default();
        let run = |code: &str, not_absent: &[&str]| {
            std::fs::write(ws.path().join("fake-wal-restore.rc"), code).expect("rc");
            let how = Reading { not_absent, local: true };
            let words = [tool.display().to_string()];
            let cmd = scripts.restore_command_read("fake-wal-restore", &words, &nowhere, how).expect("a script");
            let cmd = cmd.replace("%f", "00000001000000000000000B").replace("%p", "pg_wal/RECOVERYXLOG");
            let out = crate::child::output(crate::child::command("/bin/sh").args(["-c", &cmd])).expect("sh");
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        };
        let words: &[&str] = &["ERROR: Bucket "];
        let (code, said) = run("1", words);
        assert_eq!(code, Some(126), "an exit 1 that cannot be read passed as the end of the WAL: {said}");
        assert!(said.contains("fetching 00000001000000000000000B"), "the tool ran and its words reach the log: {said}");
        assert!(said.contains(UNKEPT) && said.contains("fake-wal-restore's exit 1"), "{said}");
        assert_eq!(run("0", words).0, Some(0));
        assert_eq!(run("4", words).0, Some(126));
        assert_eq!(run("1", &[]).0, Some(1), "no words needed: the tool's 1 is the segment's absence");
        assert!(!nowhere.exists(), "the script made the workspace it could not write in");
    }

    /// Regression (issue 39): a tool's source had no ledger, so nothing said which of its
    /// backups was proven. `ledger=FOLDER` is pgdrill's own option in any tool's location:
    /// never handed to the tool, a local folder only, given once.
    #[test]
    fn the_ledger_option_is_pgdrills_own_in_every_tools_location() {
        let loc = "pgbackrest://main?config=%2Fetc%2Fp.conf&ledger=%2Fvar%2Flib%2Fpgdrill%2Fl%20main";
        assert_eq!(ledger_of(loc).expect("parsed").as_deref(), Some("/var/lib/pgdrill/l main"));
        let tool = options(loc.split_once('?').map(|(_, q)| q).unwrap_or(""), &["config"], loc).expect("parsed");
        assert_eq!(tool, vec![("config".to_string(), "/etc/p.conf".to_string())], "ledger is not the tool's");
        assert_eq!(ledger_of("barman://main?config=/etc/barman.conf").expect("parsed"), None);
        // An object store's folder is a ledger too (issue 39), its URL alone.
        assert_eq!(ledger_of("x://a?ledger=s3://bkt/l/").expect("parsed").as_deref(), Some("s3://bkt/l"));
        for bad in [
            "x://a?ledger=",
            "x://a?ledger=%zz",
            "x://a?ledger=/a&ledger=/b",
            "x://a?ledger=http://host/l",
            "x://a?ledger=s3://bkt/l%3Fendpoint%3Dhttp://h",
        ] {
            let e = ledger_of(bad).expect_err(bad);
            assert_eq!(e.class, crate::error::Class::Invalid, "{bad}");
            assert!(e.to_string().contains("ledger"), "{e}");
        }
    }

    /// A local ledger is read from its folder's `ledger.jsonl`, and a location without one
    /// has none.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_local_ledger_gives_each_backups_last_verification() {
        let t = tempfile::tempdir().expect("tmp");
        let stores = crate::storage::Opened::default();
        assert!(last_verifications("x://a?config=/c", &stores).await.expect("no ledger").is_empty());
        let line = |id: &str, result: &str| {
            format!("{{\"backup\":\"{id}\",\"verified_at\":\"2026-12-06T10:00:00Z\",\"result\":\"{result}\"}}\n")
        };
        let text = line("20261206-101500F", "failed") + &line("20261206-101500F", "passed") + &line("b2", "unproven");
        std::fs::write(t.path().join(crate::backup::ledger::FILE), text).expect("ledger");
        let loc = format!("pgbackrest://main?config=/c&ledger={}", t.path().display());
        let last = last_verifications(&loc, &stores).await.expect("read");
        assert_eq!(last["20261206-101500F"].result, "passed");
        assert_eq!(last["b2"].result, "unproven");
    }

    #[test]
    fn tool_versions_compare_as_numbers() {
        assert_eq!(version_numbers("pgBackRest 2.55.1"), vec![2, 55, 1]);
        assert_eq!(version_numbers("2.45"), vec![2, 45]);
        assert_eq!(version_numbers("barman-cloud-backup 3.13.3"), vec![3, 13, 3]);
        assert!(version_numbers("pgBackRest 2.45") < version_numbers("2.55.1"));
        assert!(version_numbers("2.100") > version_numbers("2.55.1"));
        assert!(version_numbers("2.55") < version_numbers("2.55.1"));
        assert!(version_numbers("unknown").is_empty());
    }

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        let e = find("pgdrill-no-such-tool", None, &["version"], "pgbackrest", &Interrupt::default())
            .expect_err("an error");
        assert_eq!(e.class, crate::error::Class::Environment);
        assert!(e.to_string().contains("apt-get install pgbackrest"), "{e}");
    }
}
