//! Databases inside containers: `docker://CONTAINER/DATABASE?user=U` (and `podman://`), for
//! servers whose port is not published, as the classic runbooks reach them with
//! `docker exec CONTAINER pg_dump -U user db`.
//!
//! - pg_dump, pg_restore and psql run inside the container with `<engine> exec -i`: the
//!   container's own tools, so the server's version decides them. Their streams are piped
//!   through pgdrill as usual; the connection settings reach them through the engine CLI's
//!   environment (`-e NAME` without a value), never argv.
//! - pgdrill's own SQL connections (fingerprints, checks, the restore's steps) speak the
//!   protocol through a small relay run in the container with `exec -i`: a Perl one-liner
//!   (Perl is part of every Debian-based PostgreSQL image: Debian's PostgreSQL packages are
//!   driven by it) that joins its stdin and stdout to the server's Unix socket. The relay
//!   ends when its stdin closes, so a killed pgdrill leaves nothing running in the container.
//!
//! The connection inside is the server's local socket (default `/var/run/postgresql`, port
//! 5432, user `postgres`): nothing of the host's libpq environment, service file or password
//! file applies, since those describe this machine's view, not the container's.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio_postgres::{Client, Config, NoTls};

use super::conninfo::Conninfo;
use crate::error::Failure;

/// Which container, through which engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `docker` or `podman`.
    pub engine: String,
    pub name: String,
    /// `exec_user`: the OS user the tools run as inside (for `peer` authentication).
    pub exec_user: Option<String>,
}

impl Target {
    pub fn of(ci: &Conninfo) -> Option<Target> {
        let name = ci.get("container")?.to_string();
        Some(Target {
            engine: ci.get("container_engine").unwrap_or("docker").to_string(),
            name,
            exec_user: ci.get("exec_user").map(str::to_string),
        })
    }

    /// `docker://NAME` (for messages).
    pub fn label(&self) -> String {
        format!("{}://{}", self.engine, self.name)
    }

    /// The engine's CLI, with the variables that say which engine to talk to.
    fn cli(&self) -> std::process::Command {
        let mut c = crate::child::command(&self.engine);
        for k in [
            "DOCKER_HOST",
            "DOCKER_CONTEXT",
            "DOCKER_CONFIG",
            "DOCKER_CERT_PATH",
            "DOCKER_TLS_VERIFY",
            "CONTAINER_HOST",
            "CONTAINER_CONNECTION",
            "XDG_RUNTIME_DIR",
        ] {
            if let Some(v) = std::env::var_os(k) {
                c.env(k, v);
            }
        }
        c
    }

    /// `exec -i [--user U]` up to (not including) the container's name.
    fn exec(&self) -> std::process::Command {
        let mut c = self.cli();
        c.args(["exec", "-i"]);
        if let Some(u) = &self.exec_user {
            c.arg("--user").arg(u);
        }
        c
    }

    /// The container exists and runs: one line saying which of these does not hold.
    pub fn check(&self) -> Result<(), String> {
        let mut c = self.cli();
        c.args(["inspect", "--type", "container", "--format", "{{.State.Running}}", "--"]).arg(&self.name);
        let o = crate::child::output(&mut c).map_err(|e| format!("{} cannot be run ({e})", self.engine))?;
        let out = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
        if o.status.success() && out == "true" {
            return Ok(());
        }
        if o.status.success() {
            return Err(format!(
                "the container {} is not running: start it (`{} start {}`)",
                self.label(),
                self.engine,
                self.name
            ));
        }
        if err.to_lowercase().contains("no such") {
            return Err(format!("there is no container {} (`{} ps -a` lists them)", self.label(), self.engine));
        }
        Err(format!("{} cannot inspect the container {}: {}", self.engine, self.label(), first_line(&err)))
    }

    /// `tool --version` inside the container: "pg_dump (PostgreSQL) 15.10".
    pub fn tool_version(&self, tool: &str) -> Result<String, String> {
        self.check()?;
        let mut c = self.exec();
        c.arg(&self.name).args([tool, "--version"]);
        let o = crate::child::output(&mut c).map_err(|e| format!("{} cannot be run ({e})", self.engine))?;
        if o.status.success() {
            return Ok(String::from_utf8_lossy(&o.stdout).trim().to_string());
        }
        // The engine reports a command it cannot start on stdout ("OCI runtime exec failed"),
        // the tool its own failure on stderr: both are read.
        let err = format!("{}\n{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout));
        Err(missing_tool(self, tool, &err))
    }
}

/// A reader that keeps the first bytes that pass through it.
struct Recorded<R> {
    inner: R,
    head: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// How much of the relay's output `Recorded` keeps: an engine's message fits.
const HEAD_KEPT: usize = 512;

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Recorded<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Ok(mut h) = self.head.lock() {
            let room = HEAD_KEPT.saturating_sub(h.len());
            let new = &buf.filled()[before..];
            h.extend_from_slice(&new[..new.len().min(room)]);
        }
        r
    }
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim()
}

fn missing_tool(t: &Target, tool: &str, err: &str) -> String {
    if err.contains("executable file not found") || err.contains("no such file") || err.contains("not found") {
        format!("the container {} has no {tool} on its PATH: run a PostgreSQL image there, or publish its port and use a postgres:// URL", t.label())
    } else {
        format!("{tool} cannot run in the container {}: {}", t.label(), first_line(err))
    }
}

/// The relay: stdin to the socket, the socket to stdout, until the socket closes (stdin's
/// end only half-closes it, so the server's last words still come through).
const RELAY: &str = r#"use strict; use Socket; use IO::Socket::UNIX; use IO::Select;
my $s = IO::Socket::UNIX->new(Type => SOCK_STREAM, Peer => $ARGV[0]) or do { print STDERR "cannot connect to the server's socket $ARGV[0]: $!\n"; exit 3 };
binmode STDIN; binmode STDOUT; binmode $s;
my $sel = IO::Select->new(\*STDIN, $s);
while ($sel->count) { for my $h ($sel->can_read) { my $n = sysread($h, my $buf, 65536);
 if (!$n) { exit 0 if fileno($h) == fileno($s); $sel->remove($h); shutdown($s, 1); next }
 my $to = fileno($h) == fileno($s) ? \*STDOUT : $s; my $off = 0;
 while ($off < $n) { my $w = syswrite($to, $buf, $n - $off, $off); exit 0 if !defined $w; $off += $w } } }"#;

/// The socket of the server inside: `<host>/.s.PGSQL.<port>`.
fn socket_path(ci: &Conninfo) -> String {
    let host = ci.hosts().into_iter().next().filter(|h| !h.is_empty()).unwrap_or_else(|| DEFAULT_SOCKET_DIR.into());
    let port = ci.get("port").and_then(|p| p.split(',').next()).filter(|p| !p.is_empty()).unwrap_or("5432");
    format!("{host}/.s.PGSQL.{port}")
}

// Defined with the connection parameters, which default to it inside a container.
pub use super::conninfo::DEFAULT_SOCKET_DIR;

/// Open `cfg` on the server inside the container, through the relay.
pub async fn open(t: &Target, ci: &Conninfo, cfg: &Config) -> Result<Client, Failure> {
    let t2 = t.clone();
    tokio::task::spawn_blocking(move || t2.check())
        .await
        .map_err(|e| Failure::environment(e.to_string()))?
        .map_err(Failure::environment)?;
    let mut c = t.exec();
    c.arg(&t.name).args(["perl", "-e", RELAY, "--", &socket_path(ci)]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut cmd = tokio::process::Command::from(c);
    cmd.kill_on_drop(true);
    let mut child = crate::child::spawn_async(&mut cmd)
        .map_err(|e| Failure::environment(format!("{} cannot be run ({e})", t.engine)))?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(Failure::environment("the relay has no stdio"));
    };
    // The engine's own complaints (an unknown `exec_user`, no perl) come on stdout, where
    // the protocol reads them as garbage: its first bytes are kept to tell the cause.
    let head = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let stream = tokio::io::join(Recorded { inner: stdout, head: head.clone() }, stdin);
    let timeout = cfg.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10));
    let connected = tokio::time::timeout(timeout, cfg.connect_raw(stream, NoTls)).await;
    let (client, conn) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) if e.as_db_error().is_some() => {
            let _ = child.start_kill();
            return Err(Failure::environment(super::describe(&e)).with_source(e));
        }
        Ok(Err(e)) => return Err(relay_failed(t, child, stderr, &head, super::describe(&e)).await),
        Err(_) => {
            return Err(relay_failed(t, child, stderr, &head, format!("no answer within {} s", timeout.as_secs())).await)
        }
    };
    tokio::spawn(async move {
        let _ = conn.await;
        // The client is gone: stdin closes, and the relay inside ends with it.
        drop(child);
    });
    Ok(client)
}

/// Why the relay did not carry a connection: its own words (no perl, no socket) say it
/// better than a closed stream.
async fn relay_failed(
    t: &Target,
    mut child: tokio::process::Child,
    mut stderr: tokio::process::ChildStderr,
    head: &std::sync::Mutex<Vec<u8>>,
    why: String,
) -> Failure {
    let status = tokio::time::timeout(Duration::from_secs(2), child.wait()).await.ok().and_then(Result::ok);
    let _ = child.start_kill();
    // What the engine printed instead of the server's first message: text, not protocol.
    let said = head.lock().map(|h| String::from_utf8_lossy(&h).into_owned()).unwrap_or_default();
    let engine_said = status.and_then(|s| s.code()).is_some_and(|c| c == 126 || c == 127)
        && !said.trim().is_empty()
        && said.chars().all(|c| !c.is_control() || c == '\n' || c == '\r' || c == '\t');
    if engine_said && !said.contains("\"perl\"") {
        let line = crate::util::visible(first_line(&said)).into_owned();
        let msg = format!("cannot run in the container {} ({} said: {line})", t.label(), t.engine);
        // A user the container does not have is the URL's mistake: no retry mends it.
        return if said.contains("unable to find user") {
            Failure::invalid(format!("{msg}; check the URL's exec_user"))
        } else {
            Failure::environment(msg)
        };
    }
    // 126 and 127: the engine could not start perl (its message went to stdout, which the
    // protocol already consumed).
    if status.and_then(|s| s.code()).is_some_and(|c| c == 126 || c == 127) {
        return Failure::environment(format!(
            "the container {} has no perl, which pgdrill uses to reach the server's socket: publish the port and use a postgres:// URL",
            t.label()
        ));
    }
    let mut err = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), stderr.read_to_string(&mut err)).await;
    let err = err.trim();
    if err.contains("perl") && (err.contains("not found") || err.contains("no such file")) {
        return Failure::environment(format!(
            "the container {} has no perl, which pgdrill uses to reach the server's socket: publish the port and use a postgres:// URL",
            t.label()
        ));
    }
    if err.is_empty() {
        Failure::environment(format!("cannot connect in the container {}: {why}", t.label()))
    } else {
        Failure::environment(format!("cannot connect in the container {}: {}", t.label(), first_line(err)))
    }
}

/// `cmd` (a local pg_dump, pg_restore or psql with its arguments) as the same tool run in
/// the container with `exec -i`, connected through `ci`'s settings for `database`. Stdio
/// and the process group are set by the caller afterwards.
pub fn tool(
    t: &Target,
    ci: &Conninfo,
    cmd: &std::process::Command,
    database: &str,
) -> Result<std::process::Command, String> {
    let tool = std::path::Path::new(cmd.get_program())
        .file_name()
        .and_then(|s| s.to_str())
        .ok_or("the tool has no name")?
        .to_string();
    let mut c = t.exec();
    for (k, v) in ci.env_vars(database) {
        // Only the name in argv: the engine's CLI reads the value from its environment.
        c.arg("-e").arg(k);
        c.env(k, v);
    }
    c.arg("--").arg(&t.name).arg(&tool).args(cmd.get_args());
    Ok(c)
}
