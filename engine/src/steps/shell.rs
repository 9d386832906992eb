//! `shell.run`: run a program (argv form) or, only when asked, a shell script.
//!
//! Hooks that stop and start applications are the typical use. The child runs in its own
//! process group, and the whole group is killed when the step is cancelled or times out, so
//! `sh -c 'sleep 600'` does not outlive an interrupted run.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use super::{Fields, step, StepCtx, StepError, With, WithError};

/// The most of stdout or stderr kept as an output; the rest is dropped, not buffered.
const CAPTURE_LIMIT: usize = 1 << 20;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RunWith {
    /// program and arguments, run without a shell
    argv: Option<Vec<String>>,
    /// script run with `<shell> -c` (instead of argv)
    script: Option<String>,
    /// shell for `script` (default sh)
    #[serde(default = "default_shell")]
    shell: String,
    /// extra environment variables
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// working directory (relative to the runbook)
    #[field(ty = "path")]
    cwd: Option<String>,
    /// text written to standard input
    stdin: Option<String>,
    /// expected exit code (default 0)
    #[serde(default, deserialize_with = "super::de::int")]
    exit_code: i32,
}

fn default_shell() -> String {
    "sh".into()
}

impl With for RunWith {
    fn check(&self) -> Result<(), WithError> {
        match (&self.argv, &self.script) {
            (Some(a), None) if a.is_empty() => {
                Err(WithError::new("argv", "argv is empty: give the program and its arguments"))
            }
            (Some(_), None) | (None, Some(_)) => Ok(()),
            (Some(_), Some(_)) => Err(WithError::new("", "give either `argv` or `script`, not both")),
            (None, None) => Err(WithError {
                path: String::new(),
                message: "missing field `argv` (or `script` to run through a shell)".into(),
                help: Some("for example `argv: [systemctl, stop, app]`".into()),
            }),
        }
    }
}

/// What `shell.run` hands to later steps.
#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RunOutputs {
    /// standard output, trailing newline removed
    stdout: String,
    /// standard error
    stderr: String,
    /// the exit code
    exit_code: i32,
}

/// Kills the child's process group unless disarmed (the child exited on its own).
struct GroupGuard(Option<Pid>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

/// Run a program, or a script through a shell when asked; check its exit code.
#[step(kind = Run, name = "shell.run")]
async fn run(ctx: StepCtx, w: RunWith) -> Result<RunOutputs, StepError> {
    {
        let argv: Vec<String> = match (&w.argv, &w.script) {
            (Some(a), _) => a.clone(),
            (None, Some(s)) => vec![w.shell.clone(), "-c".into(), s.clone()],
            (None, None) => unreachable_argv()?,
        };
        let mut cmd = Command::from(crate::child::user_command(&argv[0], |v| ctx.redactor.holds_secret(v)));
        cmd.args(&argv[1..])
            .envs(&w.env)
            .stdin(if w.stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // Without `cwd`, the program runs where pgdrill was started, like any command.
        if let Some(dir) = &w.cwd {
            cmd.current_dir(ctx.local("cwd", dir)?);
        }
        let mut child = crate::child::spawn_async(&mut cmd)
            .map_err(|e| StepError::environment(format!("cannot run `{}`: {e}", argv[0])))?;
        let mut guard = GroupGuard(child.id().map(|p| Pid::from_raw(p as i32)));

        if let (Some(text), Some(mut stdin)) = (w.stdin.clone(), child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(text.as_bytes()).await;
            });
        }
        let exited = CancellationToken::new();
        let out = child.stdout.take().map(|s| tokio::spawn(pump(s, ctx.clone(), "", exited.clone())));
        let err = child.stderr.take().map(|s| tokio::spawn(pump(s, ctx.clone(), "stderr: ", exited.clone())));
        let status =
            child.wait().await.map_err(|e| StepError::environment(format!("waiting for `{}`: {e}", argv[0])))?;
        // The leader exited; leave any daemons it started alone.
        guard.0 = None;
        // The step ends with its script: what the script wrote is already in the pipes, and
        // a daemon that inherited them may hold them open for as long as it lives.
        exited.cancel();
        let stdout = match out {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        let stderr = match err {
            Some(h) => h.await.unwrap_or_default(),
            None => String::new(),
        };
        let code = status.code().unwrap_or(-1);
        if code != w.exit_code {
            let how = match status.code() {
                Some(c) => format!("exit code {c}"),
                None => "killed by a signal".into(),
            };
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
            let tail = if tail.is_empty() { String::new() } else { format!("; stderr: {}", tail.join(" | ")) };
            return Err(StepError::failed(format!("`{}` ended with {how}, expected {}{tail}", argv[0], w.exit_code)));
        }
        Ok(RunOutputs { stdout: stdout.trim_end_matches('\n').to_string(), stderr, exit_code: code })
    }
}

fn unreachable_argv() -> Result<Vec<String>, StepError> {
    Err(StepError::invalid("missing field `argv` (or `script`)"))
}

/// After the script exits, how long a pipe may stay silent before what it held is taken as
/// all there is: what the script wrote before exiting is already in the pipe and arrives in
/// microseconds; only a daemon's later output would take longer.
const DRAIN_QUIET: Duration = Duration::from_millis(100);

/// The longest the output is read after the script exits, for a daemon that never stops
/// writing to the pipe it inherited.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Forward lines to the step log and keep up to CAPTURE_LIMIT bytes, until end of file or,
/// once `exited` is cancelled, until the pipe has nothing more buffered. A daemon the script
/// left running may still hold the pipe: the rest is read and dropped in the background, so
/// its writes do not kill it with SIGPIPE.
async fn pump<R: AsyncRead + Unpin + Send + 'static>(
    mut r: R,
    ctx: StepCtx,
    prefix: &'static str,
    exited: CancellationToken,
) -> String {
    let mut kept = String::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    let mut quiet_after_exit = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        let read = if exited.is_cancelled() {
            let until = *drain_until.get_or_insert_with(|| Instant::now() + DRAIN_LIMIT);
            let wait = until.saturating_duration_since(Instant::now()).min(DRAIN_QUIET);
            match tokio::time::timeout(wait, r.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => {
                    quiet_after_exit = true;
                    break;
                }
            }
        } else {
            tokio::select! {
                r = r.read(&mut buf) => r,
                _ = exited.cancelled() => continue,
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    keep_line(&ctx, prefix, &line[..i], &mut kept);
                }
            }
        }
    }
    if !pending.is_empty() {
        keep_line(&ctx, prefix, &pending, &mut kept);
    }
    if quiet_after_exit {
        tokio::spawn(async move {
            let mut sink = tokio::io::sink();
            let _ = tokio::io::copy(&mut r, &mut sink).await;
        });
    }
    kept
}

fn keep_line(ctx: &StepCtx, prefix: &str, line: &[u8], kept: &mut String) {
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    ctx.log(format!("{prefix}{line}"));
    if kept.len() + line.len() < CAPTURE_LIMIT {
        kept.push_str(line);
        kept.push('\n');
    }
}
