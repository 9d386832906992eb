//! Servers the tests start on 127.0.0.1 and stop when they end: moto (S3), and the process
//! guard the others use.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, require};

/// A server process killed when the test ends. When the test failed, whether the server was
/// still running and the end of its log are printed: a store that stopped answering in the
/// middle of a test must be told apart from pgdrill misreading it.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub log: Option<tempfile::NamedTempFile>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let state = match self.child.try_wait() {
                Ok(Some(status)) => format!("had exited ({status})"),
                Ok(None) => "was still running".to_string(),
                Err(e) => format!("could not be asked ({e})"),
            };
            let log = self.log.as_ref().and_then(|f| std::fs::read_to_string(f.path()).ok()).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "the server on port {} {state}; its log ends:\n{}",
                self.port,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `cmd` started as the server on 127.0.0.1:`port`, its output kept for a failing test
    /// ([`server_log`]); returned once it listens ([`wait_listening`]).
    pub fn start(mut cmd: Command, port: u16, what: &str) -> Server {
        let (log, out, err) = server_log();
        let child = cmd.stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("{what} does not start: {e}"));
        let server = Server { child, port, log: Some(log) };
        wait_listening(port, what);
        server
    }
}

/// A file for a server's output, read back when a test fails.
pub fn server_log() -> (tempfile::NamedTempFile, Stdio, Stdio) {
    let f = tempfile::NamedTempFile::new().expect("a log file");
    let (out, err) = (f.reopen().expect("log"), f.reopen().expect("log"));
    (f, Stdio::from(out), Stdio::from(err))
}

/// Wait (at most a minute) until something listens on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, what: &str) {
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < Duration::from_secs(60), "{what} did not start listening on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether `cmd` is a command on the PATH.
pub fn on_path(cmd: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {cmd}")]).output().map(|o| o.status.success()).unwrap_or(false)
}

/// A PATH for a pgdrill child on which `program` is not found while every other command of
/// this PATH is: one folder of links to the others (the machine keeps its installation).
/// The folder lives as long as the returned TempDir.
pub fn path_without(program: &str) -> (tempfile::TempDir, std::ffi::OsString) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for folder in std::env::split_paths(&path) {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let link = dir.path().join(&name);
            if name != program && !link.exists() {
                let _ = std::os::unix::fs::symlink(entry.path(), link);
            }
        }
    }
    assert!(!dir.path().join(program).exists(), "{program} is hidden");
    let hidden = dir.path().as_os_str().to_os_string();
    (dir, hidden)
}

/// A moto S3 server on a port of its own (it takes unsigned requests); `None` (a printed
/// skip, or a failure in CI) when moto_server is not installed.
pub fn moto() -> Option<Server> {
    moto_with_env(&[])
}

/// One request to a moto S3 server on loopback as the account `testing` (moto reads the
/// account from the credential and checks no signature while its access control is off):
/// the status and the response's head and body as text.
pub fn s3_request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("response");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

/// [`moto`] with `env` in its environment (its settings, such as when its access control starts).
pub fn moto_with_env(env: &[(&str, &str)]) -> Option<Server> {
    if !require(on_path("moto_server"), "moto_server (PyPI moto[server])") {
        return None;
    }
    let port = free_port();
    let (log, out, err) = server_log();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .envs(env.iter().copied())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("moto_server starts");
    let s = Server { child, port, log: Some(log) };
    wait_listening(port, "moto_server");
    Some(s)
}

/// `azurite-blob` (Azure Blob) to listen on 127.0.0.1:`port` with its data in `location`;
/// not started yet.
pub fn azurite_blob(port: u16, location: &std::path::Path) -> Command {
    let mut c = Command::new("azurite-blob");
    c.args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--skipApiVersionCheck", "--disableTelemetry"])
        .arg("--location")
        .arg(location);
    c
}
