//! `Run`: a pgdrill command line built a part at a time, then run, its exit code checked,
//! and its output, JUnit file and run.json read back typed:
//!
//! ```ignore
//! let ran = Run::new("verify").var("storage", storage.display()).key(KEY).junit(&xml).expect(0);
//! assert_eq!(ran.junit().status("restore"), "passed", "{}", ran.all());
//! ```

use std::ffi::OsStr;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::junit::Junit;
use super::report::RunJson;

/// The environment variable the runbooks read the backup key from.
pub const KEY_ENV: &str = "PGDRILL_BACKUP_KEY";

#[must_use = "a Run does nothing until `expect` or `output`"]
pub struct Run {
    cmd: Command,
    shown: Vec<String>,
    junit: Option<PathBuf>,
    report: Option<PathBuf>,
}

impl Run {
    /// `pgdrill run RUNBOOK`: a shipped runbook's name (`verify`) or a file.
    pub fn new(runbook: impl AsRef<OsStr>) -> Run {
        Run::cli(["run".as_ref(), runbook.as_ref()])
    }

    /// `pgdrill run verify` of `database`'s newest backup in `storage`, restored into a
    /// throwaway server started natively: the tests' usual verify run, to add to.
    pub fn verify_native(storage: impl Display, database: impl Display) -> Run {
        Run::new("verify").var("storage", storage).var("database", database).var("provider", "native")
    }

    /// Any other pgdrill command line: `Run::cli(["backups", "list"])`.
    pub fn cli<I, S>(args: I) -> Run
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut run = Run { cmd: super::pgdrill(&[]), shown: Vec::new(), junit: None, report: None };
        for a in args {
            run = run.arg(a);
        }
        run
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.shown.push(arg.as_ref().to_string_lossy().into_owned());
        self.cmd.arg(arg);
        self
    }

    /// `--var NAME=VALUE`.
    pub fn var(self, name: &str, value: impl Display) -> Run {
        self.arg("--var").arg(format!("{name}={value}"))
    }

    /// `--var` for each `NAME=VALUE` in `pairs`.
    pub fn vars(mut self, pairs: &[&str]) -> Run {
        for p in pairs {
            self = self.arg("--var").arg(p);
        }
        self
    }

    /// `--junit FILE`, read back by [`Ran::junit`].
    pub fn junit(mut self, file: impl AsRef<Path>) -> Run {
        self.junit = Some(file.as_ref().to_path_buf());
        self.arg("--junit").arg(file.as_ref())
    }

    /// `--report DIR`, read back by [`Ran::run_json`].
    pub fn report(mut self, dir: impl AsRef<Path>) -> Run {
        self.report = Some(dir.as_ref().to_path_buf());
        self.arg("--report").arg(dir.as_ref())
    }

    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Run {
        self.cmd.env(name, value);
        self
    }

    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Run {
        self.cmd.env_remove(name);
        self
    }

    /// `--signing-key KEY --evidence LOG`: the run signs its evidence into the log at LOG (a
    /// folder or an object store's location).
    pub fn signed(self, key: impl AsRef<OsStr>, evidence: impl AsRef<OsStr>) -> Run {
        self.arg("--signing-key").arg(key).arg("--evidence").arg(evidence)
    }

    /// The backup key, in the environment the runbooks read it from (never in argv).
    pub fn key(self, key: &str) -> Run {
        self.env(KEY_ENV, key)
    }

    /// A moto S3 server on loopback `port` as the store, signed as account `testing` with
    /// `secret` (a test's own, to look for in what pgdrill shows), over plain HTTP; the
    /// caller's own AWS profile and session are left out, so they can never be used instead.
    pub fn moto(self, port: u16, secret: &str) -> Run {
        self.moto_as(port, "testing", secret)
    }

    /// [`Run::moto`] signed with the access key id `key_id` (moto takes any as its one account).
    pub fn moto_as(self, port: u16, key_id: &str, secret: &str) -> Run {
        self.env("AWS_ACCESS_KEY_ID", key_id)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Run {
        self.cmd.current_dir(dir);
        self
    }

    /// The command as built, for a test that spawns it and acts while it runs.
    pub fn command(self) -> Command {
        self.cmd
    }

    /// Start it with its output dropped, for a test that acts while it runs (a signal).
    pub fn spawn_quietly(mut self) -> std::process::Child {
        let (out, err) = (std::process::Stdio::null(), std::process::Stdio::null());
        self.cmd.stdout(out).stderr(err).spawn().unwrap_or_else(|e| panic!("pgdrill {}: {e}", self.shown.join(" ")))
    }

    /// Start it with stdin closed and its output kept, for a test that acts while it runs
    /// (a signal, a server stopped under it) and then reads what it said.
    pub fn spawn_piped(mut self) -> std::process::Child {
        use std::process::Stdio;
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("pgdrill {}: {e}", self.shown.join(" ")))
    }

    /// Run it to the end (stdin closed) and return what it did, whatever its exit code.
    pub fn output(mut self) -> Ran {
        let out = self.cmd.output().unwrap_or_else(|e| panic!("pgdrill {}: {e}", self.shown.join(" ")));
        Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            args: self.shown.join(" "),
            junit: self.junit,
            report: self.report,
        }
    }

    /// Run it to the end (stdin closed) and return the process's own output, for a test that
    /// reads its status and bytes as they are.
    pub fn raw(mut self) -> std::process::Output {
        self.cmd.output().unwrap_or_else(|e| panic!("pgdrill {}: {e}", self.shown.join(" ")))
    }

    /// Run it and fail the test, showing the command and its output, unless it exits `code`.
    #[track_caller]
    pub fn expect(self, code: i32) -> Ran {
        let ran = self.output();
        assert_eq!(ran.code, Some(code), "pgdrill {}\n{}", ran.args, ran.all());
        ran
    }
}

/// What a [`Run`] did.
#[derive(Debug)]
pub struct Ran {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// The command line, for messages.
    pub args: String,
    junit: Option<PathBuf>,
    report: Option<PathBuf>,
}

impl Ran {
    /// Stdout then stderr: what a user saw.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Fail the test, showing what the run printed, unless it exited `code` and its stdout
    /// holds every one of `parts`.
    #[track_caller]
    pub fn says(&self, code: i32, parts: &[&str]) {
        assert_eq!(self.code, Some(code), "pgdrill {}\n{}", self.args, self.all());
        for part in parts {
            assert!(self.stdout.contains(part), "no {part:?} in what pgdrill {} printed:\n{}", self.args, self.all());
        }
    }

    /// The JUnit file the run was given with [`Run::junit`], parsed.
    #[track_caller]
    pub fn junit(&self) -> Junit {
        Junit::read(self.junit.as_deref().expect("the run was given --junit"))
    }

    /// The run.json in the directory the run was given with [`Run::report`].
    #[track_caller]
    pub fn run_json(&self) -> RunJson {
        RunJson::read(self.report.as_deref().expect("the run was given --report"))
    }
}
