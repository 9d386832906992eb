//! The command line: parse arguments, call the library, map the result to an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::backup::listing::{LastVerification, Listed};
use crate::error::ExitCode;
use crate::exec::{self, Executor, Sink};
use crate::redact::Redactor;
use crate::report::{JsonRecord, Junit, ReportSink, Terminal};
use crate::{plan, runbook, shipped, steps, Error};

// Output goes through these instead of `print!`, which panics (exit 101) when the reader
// went away (`pgdrill backups list | head -2`): a closed pipe ends the output quietly.
macro_rules! out {
    ($($t:tt)*) => { write_quietly(&mut std::io::stdout().lock(), &format!($($t)*)) };
}
macro_rules! outln {
    ($($t:tt)*) => { out!("{}\n", format_args!($($t)*)) };
}
macro_rules! err {
    ($($t:tt)*) => { write_quietly(&mut std::io::stderr().lock(), &format!($($t)*)) };
}
macro_rules! errln {
    ($($t:tt)*) => { err!("{}\n", format_args!($($t)*)) };
}

/// Write `text`; a write error (a closed pipe) is not worth a panic or an exit code of its
/// own: whoever closed it stopped reading.
fn write_quietly(w: &mut dyn std::io::Write, text: &str) {
    let _ = w.write_all(text.as_bytes()).and_then(|_| w.flush());
}

/// A writer that remembers whether its reader went away (a broken pipe).
struct PipeWatch<W> {
    inner: W,
    closed: bool,
}

impl<W: std::io::Write> PipeWatch<W> {
    fn seen<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &r {
            self.closed |= e.kind() == std::io::ErrorKind::BrokenPipe;
        }
        r
    }
}

impl<W: std::io::Write> std::io::Write for PipeWatch<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.seen(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.seen(r)
    }
}

/// Prove PostgreSQL backups restore: runbooks as code, verification by restore, drills with
/// measured RTO and RPO.
#[derive(Debug, Parser)]
#[command(name = "pgdrill", version = crate::doctor::VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check runbooks; prints file:line:col for every problem and exits 2 if there are any.
    Validate {
        /// Runbook files or shipped runbook names.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the steps a run would take, with the values known before running. No side effects.
    Plan {
        /// Runbook file or shipped runbook name.
        runbook: PathBuf,
        /// Set a runbook variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Run a runbook.
    Run {
        /// Runbook file or shipped runbook name.
        runbook: PathBuf,
        /// Set a runbook variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "PATH", env = "PGDRILL_JUNIT")]
        junit: Option<PathBuf>,
        /// Write run.json (and later compliance reports) into this directory.
        #[arg(long, value_name = "DIR", env = "PGDRILL_REPORT")]
        report: Option<PathBuf>,
        /// Plain lines instead of a progress spinner.
        #[arg(long, short)]
        quiet: bool,
        /// Confirm destructive steps (operator.confirm) without asking; required when stdin
        /// is not a terminal.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Keep only the newest N dated reports (report-YYYYMMDDhhmmss-NNNNNNNNN.html) in
        /// --report DIR (default: all of them, one per run); this run's page always stays.
        #[arg(long, value_name = "N", env = "PGDRILL_REPORT_KEEP")]
        keep: Option<usize>,
        /// Alerts and metrics after the run: webhooks, a node_exporter textfile, a Pushgateway
        /// (see the README's "Alerts and metrics").
        #[arg(long, value_name = "FILE", env = "PGDRILL_NOTIFY")]
        notify: Option<PathBuf>,
        /// The drill's recovery time objective: every `drill.rto` step (disaster to verified
        /// service) is held to it instead of its own `target`. A runbook that measures no
        /// recovery time (no `drill.rto`) holds its whole run to it instead, as `--budget`
        /// (a fleet passes each database's own).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        rto: Option<std::time::Duration>,
        /// The whole run's wall-clock budget (server start, fixtures, backup and waits
        /// included), instead of the runbook's `targets.rto`; reported as its own testcase.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        budget: Option<std::time::Duration>,
        /// Sign the run's statement (pass or fail) and append it to the evidence log in this
        /// directory (default with a signing key: the --report directory's `evidence/`).
        #[arg(long, value_name = "DIR", env = "PGDRILL_EVIDENCE")]
        evidence: Option<PathBuf>,
        /// The Ed25519 private key (PEM, from `pgdrill keygen`) that signs the run's evidence;
        /// or its text in the PGDRILL_SIGNING_KEY variable.
        #[arg(long, value_name = "FILE", env = "PGDRILL_SIGNING_KEY_FILE")]
        signing_key: Option<PathBuf>,
        /// An RFC 3161 time-stamping authority: each evidence record's sha256 is timestamped
        /// there, the answer kept beside the record (RECORD.tsr).
        #[arg(long, value_name = "URL", env = "PGDRILL_TSA_URL")]
        tsa: Option<String>,
        /// Evidence in an S3 bucket with Object Lock: each record and checkpoint is written
        /// retained this long from now (e.g. 400d); refused unless the bucket locks.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg, env = "PGDRILL_EVIDENCE_RETAIN")]
        evidence_retain: Option<std::time::Duration>,
        /// With --evidence-retain: governance (a special permission may still lift it) or
        /// compliance (no one can, until the date).
        #[arg(long, value_parser = ["governance", "compliance"], default_value = "governance", env = "PGDRILL_EVIDENCE_LOCK_MODE")]
        evidence_lock_mode: String,
    },
    /// Write a new Ed25519 signing key for evidence to FILE (0600) and its public key to
    /// FILE.pub; print the public key.
    Keygen {
        /// Where the private key goes; refused if it exists.
        out: PathBuf,
    },
    /// Signed evidence: check a log, pack a period for an auditor.
    Evidence {
        #[command(subcommand)]
        command: EvidenceCommand,
    },
    /// Many databases from one fleet file: plan or run a runbook once per target.
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Print a fleet's cadences as crontab lines, systemd units or Kubernetes manifests.
    Schedule {
        /// cron, systemd or kubernetes.
        #[arg(value_parser = ["cron", "systemd", "kubernetes"])]
        format: String,
        /// The fleet file.
        file: PathBuf,
        /// The pgdrill binary the schedule runs (cron, systemd); the Debian package installs it
        /// in /usr/bin.
        #[arg(long, default_value = "/usr/bin/pgdrill")]
        binary: String,
        /// The fleet file's path where the schedule runs (default: its absolute path here;
        /// Kubernetes mounts it at /etc/pgdrill).
        #[arg(long)]
        fleet_path: Option<String>,
        /// Reports go to DIR/<schedule> (cron, systemd).
        #[arg(long, default_value = "/var/lib/pgdrill/reports")]
        reports: String,
        /// A file of NAME=value lines with the secrets the fleet file names (cron, systemd).
        #[arg(long, default_value = "/etc/pgdrill/secrets.env")]
        env_file: String,
        /// Kubernetes: the image that runs pgdrill.
        #[arg(long, default_value = concat!("pgdrill:", env!("CARGO_PKG_VERSION")))]
        image: String,
        /// Kubernetes: the namespace.
        #[arg(long, default_value = "pgdrill")]
        namespace: String,
        /// Kubernetes: the Secret whose keys become the pods' environment.
        #[arg(long, default_value = "pgdrill-secrets")]
        secret: String,
        /// Kubernetes: the PersistentVolumeClaim mounted at /var/lib/pgdrill (reports, local
        /// backups).
        #[arg(long, default_value = "pgdrill-data")]
        claim: String,
        /// systemd: write the units into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Backups in storage.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// The WAL archive: `push` is PostgreSQL's archive_command, `fetch` its restore_command
    /// (exit 1 only when the file is not archived; any other failure exits 200, so recovery
    /// stops instead of ending early), `list` shows each timeline and recoverable window.
    Wal {
        #[command(subcommand)]
        command: WalCommand,
    },
    /// Write an archive's plain pg_dump stream to stdout (for an emergency pipe into
    /// pg_restore). Refuses to write to a terminal.
    Decrypt {
        /// The backup file.
        file: PathBuf,
        /// Environment variable holding the key or passphrase.
        #[arg(long, value_name = "VAR", default_value = "PGDRILL_BACKUP_KEY")]
        key_env: String,
        /// File holding the key or passphrase (instead of --key-env).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Move encrypted backups to the newest key of a keyring (after a key rotation), each
    /// re-encrypted as it streams, proved to decrypt to the same content under the new key
    /// alone, then published beside the old one, which is removed. Local storage only.
    Rekey {
        /// Backup files to move (default: every pgdrill backup in --storage).
        files: Vec<PathBuf>,
        /// A local backup directory: every pgdrill backup in it (or of --database).
        #[arg(long, value_name = "DIR")]
        storage: Option<PathBuf>,
        /// Only the backups of this database.
        #[arg(long)]
        database: Option<String>,
        /// Environment variable holding the keyring: one key per line, the newest first.
        #[arg(long, value_name = "VAR", default_value = "PGDRILL_BACKUP_KEY")]
        key_env: String,
        /// File holding the keyring (instead of --key-env).
        #[arg(long, value_name = "PATH")]
        key_file: Option<PathBuf>,
    },
    /// Summarise the drill history in a report directory: pass rate, RTO and RPO trend, days
    /// since the last successful drill. Exits 1 when that is longer than --stale-after.
    Report {
        /// The --report directory of earlier runs (holds history.jsonl).
        dir: PathBuf,
        /// How many of the latest runs to summarise.
        #[arg(long, default_value_t = 12)]
        last: usize,
        /// Only runs of this runbook.
        #[arg(long)]
        runbook: Option<String>,
        /// Warn (and exit 1) when the last successful drill is older than this.
        #[arg(long, default_value = "35d", value_parser = parse_duration_arg)]
        stale_after: std::time::Duration,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write the history as a page of SVG charts (RTO, RPO, duration, size, with
        /// their targets) to this file.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
    },
    /// Check what a run needs (Docker, tools, key, storage, clock); exits 3 if a run would fail.
    Doctor(crate::doctor::Args),
    /// Print shell completions: bash, zsh or fish.
    Completions { shell: clap_complete::Shell },
    /// Write the manual pages (pgdrill.1 and one pgdrill-COMMAND.1 per subcommand) into DIR;
    /// the package build uses it.
    #[command(hide = true)]
    Man {
        /// The directory to write the pages into (created if missing).
        dir: PathBuf,
    },
    /// Run another tool's command for pgdrill, killing the tool's process group when pgdrill
    /// is gone (`child::guard`); started by pgdrill itself, never by hand.
    #[command(name = crate::child::GUARD, hide = true)]
    Guard {
        /// The tool and its arguments, after `--`.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// List the step kinds with their fields and outputs.
    Steps {
        /// Show only this step kind.
        name: Option<String>,
        /// JSON instead of text: a list of {name, summary, with, outputs}, each field with
        /// name, type, required and doc.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
struct FleetSelect {
    /// The fleet file.
    file: PathBuf,
    /// A runbook file or shipped runbook name.
    runbook: PathBuf,
    /// Only these targets: project, project/environment or project/environment/database
    /// (repeatable).
    #[arg(long, value_name = "TARGET")]
    only: Vec<String>,
    /// Only the targets on this cadence (a name under `schedules:`); its vars apply.
    #[arg(long, value_name = "NAME")]
    schedule: Option<String>,
    /// Only the N-th selected target, counted from 0 in file order (a Kubernetes Indexed
    /// Job's JOB_COMPLETION_INDEX).
    #[arg(long, value_name = "N")]
    index: Option<usize>,
    /// Set a runbook variable for every target (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// At most this many runs at a time (default: the schedule's `parallel`, else 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    parallel: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// What would run for each target, with resolved values. No side effects.
    Plan {
        #[command(flatten)]
        select: FleetSelect,
    },
    /// Run the runbook once per target; exit 1 if any target did not pass.
    Run {
        #[command(flatten)]
        select: FleetSelect,
        /// Each target's run.json, JUnit and output go to DIR/<project>/<environment>/<database>/,
        /// the summary to DIR/fleet.json.
        #[arg(long, value_name = "DIR", env = "PGDRILL_REPORT")]
        report: Option<PathBuf>,
        /// One JUnit file with every target's suite.
        #[arg(long, value_name = "PATH", env = "PGDRILL_JUNIT")]
        junit: Option<PathBuf>,
        /// Confirm destructive steps without asking (passed to each run).
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

fn fleet_options(fleet: &crate::fleet::Fleet, s: FleetSelect) -> crate::fleet::run::Options {
    let parallel = s
        .parallel
        .map(usize::from)
        .or_else(|| s.schedule.as_deref().and_then(|n| fleet.schedule(n)).and_then(|x| x.parallel))
        .unwrap_or(1);
    crate::fleet::run::Options {
        runbook: s.runbook,
        only: s.only,
        schedule: s.schedule,
        index: s.index,
        parallel,
        vars: s.vars,
        ..Default::default()
    }
}

/// Where the WAL archive is and where its key comes from (README, "WAL archive").
#[derive(Debug, clap::Args)]
struct WalConf {
    /// A small file of `name = value` lines: storage, key_file, key_env, level.
    #[arg(long, value_name = "FILE", env = "PGDRILL_WAL_CONFIG")]
    config: Option<PathBuf>,
    /// The archive's location (a directory, s3://, gs://, az://); overrides the file's.
    #[arg(long, value_name = "LOCATION", env = "PGDRILL_WAL_STORAGE")]
    storage: Option<String>,
    /// File holding the key or passphrase; overrides the file's.
    #[arg(long, value_name = "PATH", env = "PGDRILL_WAL_KEY_FILE")]
    key_file: Option<PathBuf>,
    /// Variable holding the key or passphrase when no key file is named (default
    /// PGDRILL_BACKUP_KEY).
    #[arg(long, value_name = "VAR")]
    key_env: Option<String>,
}

impl WalConf {
    fn given(self) -> crate::wal::Given {
        crate::wal::Given { config: self.config, storage: self.storage, key_file: self.key_file, key_env: self.key_env }
    }
}

#[derive(Debug, Subcommand)]
enum WalCommand {
    /// Archive one WAL file: archive_command = 'pgdrill wal push --config FILE %p'.
    Push {
        /// The file, relative to the data directory (PostgreSQL's %p).
        path: PathBuf,
        #[command(flatten)]
        conf: WalConf,
    },
    /// Restore one archived file: restore_command = 'pgdrill wal fetch --config FILE %f %p'.
    Fetch {
        /// The file's name (PostgreSQL's %f).
        name: String,
        /// Where to write it, relative to the data directory (PostgreSQL's %p).
        dest: PathBuf,
        /// The system whose archive to read (default: the data directory's, from
        /// global/pg_control).
        #[arg(long, value_name = "ID")]
        system_identifier: Option<u64>,
        #[command(flatten)]
        conf: WalConf,
    },
    /// Each system's timelines, gaps and recoverable windows.
    List {
        #[command(flatten)]
        conf: WalConf,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also write them as a node_exporter textfile (replaced atomically):
        /// pgdrill_wal_last_archived_timestamp_seconds, the windows' ends, pgdrill_wal_gaps.
        #[arg(long, value_name = "FILE")]
        metrics: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum EvidenceCommand {
    /// Check every signature, the chain and the signed checkpoint of an evidence log; names
    /// every record missing, edited, signed by another key or replayed. Exits 1 on any.
    Verify {
        /// The evidence directory (a run's --evidence, or REPORT/evidence).
        location: PathBuf,
        /// The public key to trust (PEM); default: the one stored beside the evidence, which
        /// proves nothing against someone who could replace it.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Also check every record's RFC 3161 timestamp against this TSA's CA certificates
        /// (PEM); a record without one is a problem.
        #[arg(long, value_name = "FILE")]
        tsa_ca: Option<PathBuf>,
        /// A checkpoint.dsse.json kept elsewhere (an earlier pack's, a published copy): every
        /// record it counts must still be in the log, so records cut off the end with an
        /// older checkpoint put back are named. May be given more than once.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// Where this log lived before (it was moved, or this is a copy: a published bucket,
        /// an unpacked pack): its records may name that location too. Every record must have
        /// been appended here or at one of these, else another location's log was put here.
        #[arg(long = "location", value_name = "LOCATION")]
        earlier_location: Vec<String>,
        /// A history.jsonl whose runs anchored this log's head (read by default from beside
        /// a --report's evidence/): its newest anchor of this log must still be in it, so a
        /// log cut at its end is named. May be given more than once.
        #[arg(long, value_name = "FILE")]
        ledger: Vec<PathBuf>,
        /// A run.json whose run anchored the head it appended (read by default from beside a
        /// --report's evidence/): that record must still be in the log. The manifests of the
        /// backups the records name are read too (authenticated with PGDRILL_BACKUP_KEY when
        /// set): the newest head they anchor must be there. May be given more than once.
        #[arg(long, value_name = "FILE")]
        run_json: Vec<PathBuf>,
        /// The database this is the log of: a record of a run of another database is a
        /// problem (a per-database log swapped for another's).
        #[arg(long, value_name = "NAME")]
        database: Option<String>,
    },
    /// One tar for an auditor: the log's signed statements and checkpoint (the chain proof),
    /// the public key, the period's compliance report, the auditor's text and the openssl
    /// commands that check it all. Refused when `evidence verify` finds a problem.
    Pack {
        /// The evidence directory, or the log's object-store location (s3://BUCKET/PREFIX, an
        /// object-store --report's evidence/), read into a private local copy.
        #[arg(long, value_name = "DIR|URL", env = "PGDRILL_EVIDENCE")]
        evidence: PathBuf,
        /// First day of the period (YYYY-MM-DD, UTC) or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        from: String,
        /// Last day of the period (inclusive) or an RFC 3339 time.
        #[arg(long, value_name = "DATE")]
        to: String,
        /// The public key to check the log with before packing (default: the stored one).
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// Where this log lived before (as `evidence verify --location`): every record must
        /// have been appended at --evidence or one of these, else another location's log was
        /// put in its place and nothing is packed.
        #[arg(long = "location", value_name = "LOCATION")]
        earlier_location: Vec<String>,
        /// The database this is the log of (as `evidence verify --database`).
        #[arg(long, value_name = "NAME")]
        database: Option<String>,
        /// A checkpoint.dsse.json kept elsewhere (as `evidence verify --checkpoint`).
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
        /// A history.jsonl whose runs anchored this log's head (as `evidence verify --ledger`;
        /// default: the one beside a --report's evidence/).
        #[arg(long, value_name = "FILE")]
        ledger: Vec<PathBuf>,
        /// A run.json whose run anchored the head it appended (as `evidence verify
        /// --run-json`; default: the one beside a --report's evidence/). The backups'
        /// manifests the records name are read too, as verify reads them: a log cut at its end
        /// is named against the anchor that shows it and not packed.
        #[arg(long, value_name = "FILE")]
        run_json: Vec<PathBuf>,
        /// The tar file to write.
        out: PathBuf,
    },
    /// Copy an evidence log into an S3 bucket with Object Lock: every object written with a
    /// retention, so no one can delete or overwrite it before the date. Refused when the
    /// bucket has no Object Lock configuration. Credentials from AWS_* variables.
    Publish {
        /// The evidence directory.
        location: PathBuf,
        /// Where: s3://BUCKET/PREFIX.
        #[arg(long, value_name = "URL")]
        to: String,
        /// How long each object is retained from now (e.g. 400d).
        #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
        retain: std::time::Duration,
        /// governance (users with a special permission may still lift it) or compliance
        /// (no one can, until the date).
        #[arg(long, value_parser = ["governance", "compliance"], default_value = "governance")]
        mode: String,
    },
}

#[derive(Debug, Subcommand)]
enum BackupsCommand {
    /// What is there, newest first.
    List {
        /// Backup directory, or an object store: s3://BUCKET/PREFIX, gs://..., az://...; or
        /// another tool's physical backups: pgbackrest://STANZA?config=PATH,
        /// barman://SERVER?config=PATH, barman-cloud:s3://BUCKET/PATH?server=NAME
        #[arg(long, env = "PGDRILL_STORAGE")]
        storage: String,
        /// Only this database.
        #[arg(long)]
        database: Option<String>,
        /// How other tools' files are named, e.g. '{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz'
        /// (default: the classic schemes, see the README).
        #[arg(long)]
        name_pattern: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    crate::runbook::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write `35d`, `720h`)"))
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Entry point used by `main`: returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // A `restore_command` with a mistyped argument must stop recovery, never read as
        // "segment absent" (clap's 2 is below PostgreSQL's fatal threshold of 125).
        Err(e)
            if !matches!(e.kind(), clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion)
                && std::env::args().nth(1).as_deref() == Some("wal")
                && std::env::args().nth(2).as_deref() == Some("fetch") =>
        {
            let _ = e.print();
            return crate::wal::FETCH_FATAL;
        }
        Err(e) => e.exit(),
    };
    // A guard answers before anything else: no runtime, no reaping, no reports.
    if let Command::Guard { command } = &cli.command {
        return crate::child::guard(command);
    }
    // This process is pgdrill: the tools it runs run under guards.
    crate::child::serve_guards();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::Environment.code();
        }
    };
    let redactor = Redactor::default();
    // Object stores read their keys from the environment: masked like any other secret.
    for v in crate::storage::credential_values() {
        redactor.add(&v);
    }
    // A panic is a bug: its message goes through the redactor like any other text, and the
    // process still ends with a documented code (3), never Rust's 101.
    let hook_redactor = redactor.clone();
    std::panic::set_hook(Box::new(move |info| {
        let text = crate::report::visible(&hook_redactor.redact(&info.to_string())).into_owned();
        errln!("internal error (a bug in pgdrill, please report it): {text}");
    }));
    // The object stores this command opens: its own, whose uploads in flight it aborts
    // before it exits (no process-wide table of opened stores).
    let stores = crate::storage::Opened::default();
    // `wal` answers PostgreSQL, whose exit codes mean other things than a run's.
    let cli = match cli.command {
        Command::Wal { command } => {
            let fatal = if matches!(command, WalCommand::Fetch { .. }) { crate::wal::FETCH_FATAL } else { 3 };
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(wal_command(command, redactor.clone(), &stores))
            }))
            .unwrap_or(fatal);
            rt.block_on(stores.abort_uploads());
            rt.shutdown_timeout(std::time::Duration::from_secs(2));
            crate::on_exit::remove_all();
            return code;
        }
        command => Cli { command },
    };
    // What a killed pgdrill left in the temporary directory (gpg's home, a staged dump) is
    // removed by the next command, whatever it is, once its owner is gone (`storage::reap`).
    crate::storage::reap(&std::env::temp_dir());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(dispatch(cli, redactor.clone(), stores.clone()))
    }))
    .unwrap_or_else(|_| Ok(ExitCode::Environment));
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            // Names from data (a database, a file) may hold control characters: shown, not sent.
            let text = crate::report::visible(&redactor.redact(&e.to_string())).into_owned();
            match &e {
                Error::Runbook(_) => err!("{text}"),
                _ => errln!("error: {text}"),
            }
            e.exit_code()
        }
    };
    // A stopped upload leaves no parts behind in the store.
    rt.block_on(stores.abort_uploads());
    // Spawned helpers (log pumps, connections) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    // A cancelled backup's writer may not have finished: no partial file survives us.
    crate::on_exit::remove_all();
    code.code()
}

async fn dispatch(cli: Cli, redactor: Redactor, stores: crate::storage::Opened) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Validate { files } => validate(&files),
        // Answered before dispatch (`main`), with PostgreSQL's exit codes.
        Command::Wal { .. } => Err(Error::environment("`pgdrill wal` is not a run")),
        Command::Guard { .. } => Err(Error::environment("`pgdrill guard` is not a run")),
        Command::Doctor(args) => {
            let (text, code) = crate::doctor::run(args, &redactor, &stores).await;
            out!("{text}");
            Ok(code)
        }
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "pgdrill", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            Ok(ExitCode::Passed)
        }
        Command::Man { dir } => {
            let written = crate::manpages::write_all(<Cli as clap::CommandFactory>::command(), &dir)
                .map_err(|e| Error::io(format!("writing manual pages into {}", dir.display()), e))?;
            outln!("{written} manual pages in {}", dir.display());
            Ok(ExitCode::Passed)
        }
        Command::Plan { runbook, vars } => {
            let rb = runbook::load_runbook_ref(&runbook)?;
            let env: serde_json::Map<String, serde_json::Value> =
                std::env::vars().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            let vars = runbook::resolve_vars(&rb, &runbook::overrides_from_pairs(&vars), &env)?;
            out!("{}", plan::render(&rb, &vars));
            Ok(ExitCode::Passed)
        }
        Command::Run {
            runbook,
            vars,
            junit,
            report,
            quiet,
            yes,
            rto,
            budget,
            notify,
            keep,
            evidence,
            signing_key,
            tsa,
            evidence_retain,
            evidence_lock_mode,
        } => {
            let mut rb = runbook::load_checked(&runbook)?;
            let lock = evidence_retain.map(|r| (evidence_mode(&evidence_lock_mode), r));
            let evidence = evidence_sink(
                evidence,
                signing_key.as_deref(),
                report.as_deref(),
                &redactor,
                &rb.source,
                lock,
                &stores,
            )
            .await?;
            if let Some(url) = &tsa {
                redactor.add_credentials_in(url);
                if evidence.is_none() {
                    return Err(Error::invalid(
                        "--tsa timestamps signed evidence: give a signing key too (--signing-key)",
                    ));
                }
                if !url.starts_with("http://") && !url.starts_with("https://") {
                    return Err(Error::invalid("--tsa takes the time-stamping authority's http:// or https:// URL"));
                }
            }
            let operator = notify.map(|p| crate::runbook::notify::load(&p)).transpose()?;
            // The runbook's own sinks, and the operator file's for every run on this host.
            let notify = match (rb.notify.clone(), operator) {
                (None, None) => None,
                (Some(n), None) | (None, Some(n)) => Some(n),
                (Some(mut r), Some(o)) => {
                    r.notify.extend(o.notify);
                    r.metrics = o.metrics.or(r.metrics);
                    r.state = o.state.or(r.state);
                    r.tsa = o.tsa.or(r.tsa);
                    Some(r)
                }
            };
            // The flag's TSA, else the notify file's (unused by a run that signs nothing).
            let tsa = tsa.or_else(|| notify.as_ref().and_then(|n| n.tsa.clone()));
            if let Some(url) = &tsa {
                redactor.add_credentials_in(url);
            }
            let evidence = evidence.map(|e| e.tsa(tsa));
            // `--rto` means one thing: the recovery objective of the runbook's `drill.rto`
            // steps, measured from the disaster. A runbook that measures no recovery time
            // refuses it rather than quietly taking it as its wall-clock budget (`--budget`).
            let rto_objective = match rto {
                Some(r) if !crate::fleet::run::measures_rto(&rb) => {
                    return Err(Error::invalid(format!(
                        "--rto {}: runbook {} measures no recovery time (it has no drill.rto step), so it has no recovery objective to set; its whole run's wall-clock budget is --budget {}",
                        humantime::format_duration(r),
                        rb.name,
                        humantime::format_duration(r)
                    )));
                }
                r => r,
            };
            if budget.is_some() {
                rb.targets.rto = budget;
            }
            // Where the evidence goes is proven writable, and the report directory is this
            // run's alone, before any step changes anything.
            // A lock needs a directory on this machine; a store's report is one object per run.
            let _report_lock = match report.as_ref().and_then(|d| crate::storage::local_dir(&d.to_string_lossy())) {
                Some(d) => Some(crate::report::lock::lock_dir(&d, "--report")?),
                None => None,
            };
            if let Some(j) = &junit {
                crate::report::lock::check_writable(j, "--junit")?;
            }
            let mut reporters: Vec<Box<dyn ReportSink>> =
                vec![Box::new(Terminal::new(!quiet && std::io::stdout().is_terminal()))];
            if let Some(p) = junit {
                reporters.push(Box::new(Junit::new(p)));
            }
            // The evidence before the reports: the run's history line carries the head it
            // appended (an anchor of the log's end outside the log).
            let anchor = evidence.as_ref().map(|e| e.anchor());
            let head = evidence.as_ref().and_then(|e| e.head());
            if let Some(e) = evidence {
                reporters.push(Box::new(e));
            }
            if let Some(d) = report {
                let text = d.to_string_lossy().into_owned();
                let record = match crate::storage::local_dir(&text) {
                    Some(dir) => JsonRecord::new(dir),
                    None => JsonRecord::remote(crate::report::remote::RemoteReport::open(&text, &stores).await?),
                };
                reporters.push(Box::new(record.keep(keep).anchored(anchor)));
            }
            if let Some(n) = notify {
                reporters.push(Box::new(crate::report::notify::Notifier::new(n, redactor.clone())));
            }
            // What the run is about, as it was asked: its `database` variable, else the
            // database of its `database_url`.
            let var = |k: &str| vars.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let database = var("database").filter(|d| !d.is_empty()).unwrap_or_else(|| {
                var("database_url")
                    .and_then(|u| crate::pg::conninfo::parse(&u).ok())
                    .and_then(|p| p.into_iter().rev().find(|(k, _)| k == "dbname").map(|(_, v)| v))
                    .unwrap_or_default()
            });
            let reports = crate::report::Reports::new(redactor.clone(), database, reporters);
            let sink = Sink::new(redactor.clone(), vec![Box::new(reports)]);
            let cancel = CancellationToken::new();
            let cause = Arc::new(Mutex::new(None));
            exec::signal::install(cancel.clone(), cause.clone())
                .map_err(|e| Error::environment(format!("cannot install signal handlers: {e}")))?;
            let executor = Executor::new(sink.clone(), redactor, cancel, cause, stores);
            executor.assume_yes(yes);
            executor.rto_objective(rto_objective);
            executor.evidence_head(head);
            let res = executor.run(&rb, &runbook::overrides_from_pairs(&vars), None).await;
            // Reports are written whatever happened, so a failed run still leaves evidence.
            let finished = sink.finish();
            let res = res?;
            finished?;
            Ok(res.exit)
        }
        Command::Keygen { out } => keygen(&out),
        Command::Evidence {
            command:
                EvidenceCommand::Verify {
                    location,
                    public_key,
                    tsa_ca,
                    checkpoint,
                    earlier_location,
                    database,
                    ledger,
                    run_json,
                },
        } => {
            // A log in an object store is checked in a private local copy of it.
            let shown_location = location.display().to_string();
            let mut here = vec![crate::evidence::log::location_name(&shown_location)];
            here.extend(earlier_location.iter().map(|l| crate::evidence::log::location_name(l)));
            let (location, _copy) = evidence_here(location, &stores).await?;
            let key = match &public_key {
                Some(p) => crate::evidence::keys::PublicKey::from_file(p)?,
                None => {
                    errln!("warning: no --public-key: trusting the key stored beside the evidence, which whoever could edit the evidence could also replace");
                    crate::evidence::keys::PublicKey::from_file(&location.join(crate::evidence::log::PUBLIC_KEY))?
                }
            };
            let v = match &tsa_ca {
                Some(ca) => crate::evidence::verify::verify_with_timestamps(&location, &key, ca)?,
                None => crate::evidence::verify::verify(&location, &key)?,
            };
            let mut v = v;
            crate::evidence::verify::against_location(&mut v, &here, database.as_deref());
            let anchors = Anchors { checkpoint, ledger, run_json };
            hold_to_anchors(&mut v, &location, &shown_location, &here, &key, &anchors, &stores).await?;
            out!("{}", v.text(&shown_location));
            Ok(if v.ok() { ExitCode::Passed } else { ExitCode::Failed })
        }
        Command::Evidence { command: EvidenceCommand::Publish { location, to, retain, mode } } => {
            use crate::evidence::immutable::{publish, Mode};
            let mode = if mode == "compliance" { Mode::Compliance } else { Mode::Governance };
            let p = publish(&location, &to, mode, retain).await?;
            outln!(
                "published to {}: {} objects written, {} already there; retained ({}) until {}",
                crate::report::visible(&to),
                p.written.len(),
                p.already.len(),
                if mode == Mode::Compliance { "compliance" } else { "governance" },
                p.retain_until
            );
            Ok(ExitCode::Passed)
        }
        Command::Evidence {
            command:
                EvidenceCommand::Pack {
                    evidence,
                    from,
                    to,
                    public_key,
                    earlier_location,
                    database,
                    checkpoint,
                    ledger,
                    run_json,
                    out,
                },
        } => {
            // A log in an object store is packed from a private local copy, checked first as
            // `evidence verify` checks it.
            let shown = evidence.display().to_string();
            let (evidence, _copy) = evidence_here(evidence, &stores).await?;
            let mut here = vec![crate::evidence::log::location_name(&shown)];
            here.extend(earlier_location.iter().map(|l| crate::evidence::log::location_name(l)));
            let anchors = Anchors { checkpoint, ledger, run_json };
            let held = Held { here: &here, database: database.as_deref(), anchors: &anchors, stores: &stores };
            evidence_pack(&evidence, &shown, &from, &to, public_key.as_deref(), held, &out).await
        }
        Command::Fleet { command: FleetCommand::Plan { select } } => {
            let fleet = crate::fleet::load(&select.file)?;
            let o = fleet_options(&fleet, select);
            out!("{}", crate::fleet::run::plan(&fleet, &o)?);
            Ok(ExitCode::Passed)
        }
        Command::Fleet { command: FleetCommand::Run { select, report, junit, yes } } => {
            let fleet = crate::fleet::load(&select.file)?;
            let mut o = fleet_options(&fleet, select);
            if let Some(r) = report.as_ref().map(|r| r.to_string_lossy().into_owned()) {
                if crate::storage::local_dir(&r).is_none() {
                    return Err(Error::invalid(format!(
                        "fleet run --report {}: a fleet's reports (each target's run, JUnit and output, and fleet.json) go to a local directory; `pgdrill run --report URL` publishes one run's reports to a store",
                        crate::report::visible(&r)
                    )));
                }
            }
            o.report = report;
            o.junit = junit;
            o.yes = yes;
            let cancel = CancellationToken::new();
            let cause = Arc::new(Mutex::new(None));
            exec::signal::install(cancel.clone(), cause)
                .map_err(|e| Error::environment(format!("cannot install signal handlers: {e}")))?;
            crate::fleet::run::run(&fleet, &o, cancel).await
        }
        Command::Schedule {
            format,
            file,
            binary,
            fleet_path,
            reports,
            env_file,
            image,
            namespace,
            secret,
            claim,
            out,
        } => {
            let fleet = crate::fleet::load(&file)?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
            let fleet_path = fleet_path
                .unwrap_or_else(|| std::fs::canonicalize(&file).unwrap_or(file.clone()).display().to_string());
            let o = crate::fleet::schedule::Options {
                binary,
                image,
                fleet_path,
                reports,
                env_file,
                namespace,
                secret,
                claim,
            };
            o.check().map_err(Error::invalid)?;
            match format.as_str() {
                "cron" => out!("{}", crate::fleet::schedule::crontab(&fleet, &o)),
                "kubernetes" => {
                    out!("{}", crate::fleet::schedule::kubernetes(&fleet, &text, &o).map_err(Error::invalid)?)
                }
                _ => {
                    let units = crate::fleet::schedule::systemd(&fleet, &o);
                    match out {
                        Some(dir) => {
                            std::fs::create_dir_all(&dir)
                                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
                            for (name, body) in &units {
                                crate::report::write_atomic(&dir.join(name), |w| w.write_all(body.as_bytes()))?;
                                outln!("wrote {}", dir.join(name).display());
                            }
                        }
                        None => {
                            for (name, body) in &units {
                                outln!("# {name}\n{body}");
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::Passed)
        }
        Command::Backups { command: BackupsCommand::List { storage, database, name_pattern, json } } => {
            // Another tool's physical backups (pgBackRest, barman-cloud), as the tool lists them.
            if crate::physical::is_tool_location(&storage) {
                return physical_backups(&storage, json, &stores).await;
            }
            let store = stores.open_in(&storage, std::path::Path::new("")).map_err(Error::invalid)?;
            let (storage, warnings) = crate::backup::ledger::view(&*store).await.map_err(Error::environment)?;
            for w in warnings {
                errln!("warning: {w}");
            }
            // A directory that is not there is a typo or an unmounted volume, never "no backups".
            if !storage.root().is_dir() {
                return Err(Error::invalid(format!(
                    "backup storage {} {}: give the directory your backups are written to (--storage or PGDRILL_STORAGE)",
                    crate::report::visible(&storage.root().display().to_string()),
                    if storage.root().exists() { "is not a directory" } else { "does not exist" }
                )));
            }
            let pattern = name_pattern
                .as_deref()
                .map(crate::backup::names::NamePattern::parse)
                .transpose()
                .map_err(Error::invalid)?;
            let list = crate::backup::listing::list(&storage, database.as_deref(), pattern.as_ref())?;
            let unfinished = crate::backup::listing::unfinished(&storage, database.as_deref())?;
            let symlinks = crate::backup::listing::symlinks(&storage, database.as_deref(), pattern.as_ref())?;
            // Base backups are of a whole cluster, not of a database: each holds every
            // database, the one asked for included, so they are listed with a note whatever
            // --database says, with what the WAL archive lets each reach.
            let physical = physical_of(&*store, &redactor).await?;
            let note = database.as_deref().map(|d| {
                format!("a base backup holds every database of its cluster, {} included", crate::report::visible(d))
            });
            if json {
                let mut all = crate::backup::listing::to_json(&list);
                for s in &physical {
                    for b in &s.base_backups {
                        let mut v = serde_json::to_value(b).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("kind".into(), "base".into());
                            o.insert("origin".into(), "pgdrill".into());
                            o.insert("system_identifier".into(), s.system_identifier.clone().into());
                            if let Some(n) = &note {
                                o.insert("note".into(), n.clone().into());
                            }
                        }
                        all.push(v);
                    }
                }
                outln!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
                // The JSON lists backups only; what is not one is said beside it.
                for line in unfinished_lines(&unfinished) {
                    errln!("warning: {line}");
                }
                for line in symlink_lines(&symlinks) {
                    errln!("note: {line}");
                }
            } else {
                for line in backups_table(&list, &physical) {
                    outln!("{line}");
                }
                if let Some(n) = note.as_ref().filter(|_| physical.iter().any(|s| !s.base_backups.is_empty())) {
                    outln!("note: {n}");
                }
                for line in unfinished_lines(&unfinished) {
                    outln!("{line}");
                }
                for line in symlink_lines(&symlinks) {
                    outln!("{line}");
                }
                for s in &physical {
                    for w in &s.windows {
                        outln!(
                            "system {} timeline {}: recoverable from {} ({}) to {} ({})",
                            s.system_identifier,
                            w.timeline,
                            w.earliest_time,
                            w.earliest_lsn,
                            w.latest_time,
                            w.latest_lsn
                        );
                    }
                }
            }
            Ok(ExitCode::Passed)
        }
        Command::Decrypt { file, key_env, key_file } => {
            if std::io::stdout().is_terminal() {
                return Err(Error::invalid("refusing to write a database dump to a terminal: pipe it, e.g. `pgdrill decrypt FILE | pg_restore -d URL`"));
            }
            let secret = match key_file {
                Some(p) => Some(
                    std::fs::read_to_string(&p)
                        .map_err(|e| Error::invalid(format!("cannot read key file {}: {e}", p.display())))?
                        .trim_end_matches(['\n', '\r'])
                        .to_string(),
                ),
                None => std::env::var(&key_env).ok().filter(|s| !s.is_empty()),
            };
            if let Some(s) = &secret {
                redactor.add(s);
                for k in crate::archive::crypto::keyring_lines(s) {
                    redactor.add(k);
                }
            }
            let key = secret.as_deref().map(crate::archive::KeySource::from_secret);
            let mut out = PipeWatch {
                inner: std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock()),
                closed: false,
            };
            let r = tokio::task::block_in_place(|| {
                crate::backup::decrypt_to(&file, key.as_ref(), secret.as_deref(), &mut out)
            });
            let flushed = std::io::Write::flush(&mut out);
            // The reader stopped reading (`| head`, a pager quit): what it wanted it has, and
            // there is no one to tell. Quiet, as `backups list | head` is.
            if out.closed {
                return Ok(ExitCode::Passed);
            }
            // A damaged archive is a failed check (exit 1), with its class like any error.
            r?;
            flushed.map_err(|e| Error::environment(format!("writing stdout: {e}")))?;
            Ok(ExitCode::Passed)
        }
        Command::Rekey { files, storage, database, key_env, key_file } => {
            let secret = match &key_file {
                Some(p) => std::fs::read_to_string(p)
                    .map_err(|e| Error::invalid(format!("cannot read key file {}: {e}", p.display())))?,
                None => std::env::var(&key_env).map_err(|_| {
                    Error::invalid(format!("{key_env} is not set: rekey needs the keyring, the newest key first and the keys it replaces after it, one per line (or --key-file)"))
                })?,
            };
            redactor.add(&secret);
            for k in crate::archive::crypto::keyring_lines(&secret) {
                redactor.add(k);
            }
            crate::redact::check_key(&secret).map_err(Error::invalid)?;
            let ring = crate::archive::KeySource::from_secret(&secret);
            let mut paths = files;
            if let Some(dir) = &storage {
                let Some(dir) = crate::storage::local_dir(&dir.to_string_lossy()) else {
                    return Err(Error::invalid("rekey works on a local backup directory; for an object store, rekey a local copy and upload it with `pgdrill run offsite`"));
                };
                let listed = crate::backup::layout::LocalStore::new(&dir)
                    .list(database.as_deref())
                    .map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
                paths.extend(listed.into_iter().filter(|e| !e.foreign).map(|e| e.path));
            }
            if paths.is_empty() {
                return Err(Error::invalid("nothing to rekey: name backup files or --storage DIR"));
            }
            let (mut moved, mut failed) = (0, 0);
            for p in &paths {
                let r = tokio::task::block_in_place(|| crate::backup::rekey::rekey(p, &ring));
                match r {
                    Ok(crate::backup::rekey::Rekeyed::Moved { from, to, path, plain_sha256 }) => {
                        moved += 1;
                        outln!(
                            "{}: moved from key {from} to key {to} as {}; the new file decrypts under key {to} alone to the same content (sha256 {plain_sha256})",
                            p.display(),
                            path.display()
                        );
                    }
                    Ok(crate::backup::rekey::Rekeyed::Already(fp)) => {
                        outln!("{}: already under key {fp}", p.display())
                    }
                    Ok(crate::backup::rekey::Rekeyed::Finished(new)) => {
                        moved += 1;
                        outln!(
                            "{}: an interrupted rekey had published {}; the old file was removed",
                            p.display(),
                            new.display()
                        );
                    }
                    Ok(crate::backup::rekey::Rekeyed::NotEncrypted) => {
                        outln!("{}: not encrypted, no key to move from", p.display())
                    }
                    Err(e) => {
                        failed += 1;
                        errln!("{}", redactor.redact(&e.to_string()));
                    }
                }
            }
            outln!("{moved} moved, {failed} failed, of {} backups", paths.len());
            if failed > 0 {
                return Err(Error::new(
                    crate::error::Class::Failed,
                    format!("{failed} of {} backups were not moved to the new key", paths.len()),
                ));
            }
            Ok(ExitCode::Passed)
        }
        Command::Report { dir, last, runbook, stale_after, json, html } => {
            let text = dir.to_string_lossy().into_owned();
            let history = if crate::storage::local_dir(&text).is_none() {
                let h = crate::report::remote::read_history(&text, &stores).await?;
                if h.is_empty() {
                    return Err(Error::invalid(format!(
                        "{text} holds no history of runs; runs write it with `pgdrill run ... --report {text}`"
                    )));
                }
                h
            } else {
                let path = dir.join("history.jsonl");
                std::fs::read_to_string(&path).map_err(|e| {
                    Error::invalid(format!(
                        "cannot read {}: {e}; runs write it with `pgdrill run ... --report {}`",
                        path.display(),
                        dir.display()
                    ))
                })?
            };
            if let Some(out) = &html {
                let page = crate::report::charts::page(&history, runbook.as_deref(), last);
                crate::report::write_atomic(out, |w| w.write_all(page.as_bytes()))?;
            }
            let s = crate::report::compliance::summarize(
                &history,
                last,
                runbook.as_deref(),
                stale_after,
                time::OffsetDateTime::now_utc(),
            );
            if json {
                outln!("{}", serde_json::to_string_pretty(&s.json()).unwrap_or_default());
            } else {
                out!("{}", s.text(stale_after));
            }
            // The evidence log beside the history, held to the heads the history's runs
            // anchored: a log cut at its end is named here too.
            // A report in an object store: its evidence/ read into a private copy first (an
            // error reading it is the environment's, never a pass).
            let cut = match crate::storage::local_dir(&text) {
                Some(d) => {
                    let dir = d.join("evidence");
                    evidence_cut_against_history(&dir, &dir.display().to_string(), &history)
                }
                None => {
                    let at = format!("{}/evidence", text.trim_end_matches('/'));
                    let (dir, _copy) = evidence_here(PathBuf::from(&at), &stores).await?;
                    evidence_cut_against_history(&dir, &at, &history)
                }
            };
            if let Some(problems) = &cut {
                errln!("{problems}");
            }
            Ok(if s.stale || cut.is_some() { ExitCode::Failed } else { ExitCode::Passed })
        }
        Command::Steps { name, json } => {
            if let Some(n) = &name {
                if steps::find(n).is_none() {
                    let help = runbook::suggest::help(n, steps::names()).map(|h| format!(" ({h})")).unwrap_or_default();
                    return Err(Error::invalid(format!("no step kind `{n}`{help}")));
                }
            }
            if json {
                outln!("{}", serde_json::to_string_pretty(&steps::catalogue_json(name.as_deref())).unwrap_or_default());
                return Ok(ExitCode::Passed);
            }
            out!("{}", steps::describe_catalogue(name.as_deref()));
            if name.is_none() {
                outln!("shipped runbooks: {}", shipped::names().collect::<Vec<_>>().join(", "));
            }
            Ok(ExitCode::Passed)
        }
    }
}

/// The signing key of a run's evidence: from `--signing-key FILE`, else from the
/// PGDRILL_SIGNING_KEY variable; registered as a secret either way.
fn signing_key(
    file: Option<&std::path::Path>,
    redactor: &Redactor,
) -> Result<Option<crate::evidence::keys::SigningKey>, Error> {
    use crate::evidence::keys::{SigningKey, KEY_ENV};
    let key = match file {
        Some(p) => Some(SigningKey::from_file(p)?),
        None => match std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty()) {
            Some(pem) => {
                redactor.add(&pem);
                Some(SigningKey::from_pem(&pem, KEY_ENV)?)
            }
            None => None,
        },
    };
    if let Some(k) = &key {
        redactor.add(k.pem());
        // The PEM's base64 lines too: a log that shows one line of it leaks part of the key.
        for line in k.pem().lines().filter(|l| !l.starts_with("-----")) {
            redactor.add(line);
        }
    }
    Ok(key)
}

/// The run's signed-evidence sink, if asked for: a key and where its log is. Checked before
/// the run changes anything (the key reads, the location takes it).
/// The ledger a `--report DIR` keeps beside its `evidence/` (DIR/history.jsonl, in a
/// directory or a store), where the runs anchored the log's head: `(where, its text)`.
async fn ledger_beside(evidence: &str, stores: &crate::storage::Opened) -> Option<(String, String)> {
    beside_evidence(evidence, "history.jsonl", stores).await
}

/// The file `name` a `--report DIR` keeps beside its `evidence/` (DIR/NAME, in a directory
/// or a store, opened among the command's `stores`): `(where, its text)`.
async fn beside_evidence(evidence: &str, name: &str, stores: &crate::storage::Opened) -> Option<(String, String)> {
    let trimmed = evidence.trim_end_matches('/');
    let parent = trimmed.strip_suffix("/evidence").or_else(|| (trimmed == "evidence").then_some("."))?;
    let shown = format!("{parent}/{name}");
    match crate::storage::local_dir(&shown) {
        Some(p) => std::fs::read_to_string(&p).ok().map(|t| (shown, t)),
        None => {
            let store = stores.open_in(parent, std::path::Path::new("")).ok()?;
            let bytes = store.read(name).await.ok()?;
            Some((shown, String::from_utf8_lossy(&bytes).into_owned()))
        }
    }
}

/// What `pgdrill report` says of the evidence log `dir` beside a history: the records the
/// history's runs anchored, or the newest head the log's appends published, that it no
/// longer holds (or holds changed), if any. Its own signatures and links are `evidence
/// verify`'s to judge, with the key the operator trusts. `location`: where the log lives (the
/// directory, or the store's URL of a copy in `dir`).
fn evidence_cut_against_history(dir: &std::path::Path, location: &str, history: &str) -> Option<String> {
    use crate::evidence::{anchors, keys::PublicKey, log, verify};
    let key = PublicKey::from_file(&dir.join(log::PUBLIC_KEY)).ok()?;
    let good = verify::verify(dir, &key).ok()?.good;
    let mut v = verify::Verified { good, keyid: key.keyid(), ..Default::default() };
    let here = [log::location_name(location)];
    let head = anchors::against_heads(&mut v, dir, &key, &here);
    let ledger = verify::against_ledger(&mut v, dir, &here, history, "history.jsonl");
    head.or(ledger)?;
    (!v.ok()).then(|| v.text(location).trim_end().to_string())
}

/// A private copy removed when dropped.
struct RemoveOnDrop(PathBuf);

/// An evidence log where it can be read: a local directory as it is, a log in an object
/// store (`s3://...`) copied into a private local directory, removed when the guard drops.
async fn evidence_here(
    location: PathBuf,
    stores: &crate::storage::Opened,
) -> Result<(PathBuf, Option<RemoveOnDrop>), Error> {
    let shown = location.display().to_string();
    if let Some(dir) = crate::storage::local_dir(&shown) {
        return Ok((dir, None));
    }
    let parent = std::env::temp_dir().join("pgdrill-mirror");
    let dir = crate::storage::private_dir(&parent, "evidence")
        .map_err(|e| Error::io(format!("creating a private directory in {}", parent.display()), e))?;
    let guard = RemoveOnDrop(dir.clone());
    crate::evidence::remote::download(&shown, &dir, stores).await?;
    Ok((dir, Some(guard)))
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn evidence_mode(text: &str) -> crate::evidence::immutable::Mode {
    match text {
        "compliance" => crate::evidence::immutable::Mode::Compliance,
        _ => crate::evidence::immutable::Mode::Governance,
    }
}

async fn evidence_sink(
    evidence: Option<PathBuf>,
    key_file: Option<&std::path::Path>,
    report: Option<&std::path::Path>,
    redactor: &Redactor,
    runbook_source: &str,
    lock: Option<(crate::evidence::immutable::Mode, std::time::Duration)>,
    stores: &crate::storage::Opened,
) -> Result<Option<crate::report::signed::SignedEvidence>, Error> {
    let key = signing_key(key_file, redactor)?;
    let (key, dir) = match (key, evidence) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(Error::invalid(
                "--evidence needs a signing key: --signing-key FILE (PGDRILL_SIGNING_KEY_FILE) or the key's text in PGDRILL_SIGNING_KEY; write one with `pgdrill keygen FILE`",
            ))
        }
        (Some(k), Some(d)) => (k, d),
        (Some(k), None) => match report {
            Some(r) if crate::storage::local_dir(&r.to_string_lossy()).is_some() => (k, r.join("evidence")),
            // An object-store report keeps its evidence under its own `evidence/`.
            Some(r) => (k, PathBuf::from(format!("{}/evidence", r.to_string_lossy().trim_end_matches('/')))),
            None => {
                return Err(Error::invalid(
                    "a signing key is set but the evidence has nowhere to go: give --evidence DIR (a directory or s3://, gs://, az:// location), or --report DIR (evidence goes to DIR/evidence)",
                ))
            }
        },
    };
    let text = dir.to_string_lossy().into_owned();
    if crate::storage::local_dir(&text).is_none() {
        // Staged before the run: a store that cannot be read, a bucket without Object Lock
        // when retention is asked, or another key's log stop the run before it starts.
        let log = crate::evidence::remote::RemoteLog::open(&text, &key, lock, stores).await?;
        return Ok(Some(crate::report::signed::SignedEvidence::remote(log, Arc::new(key), runbook_source)));
    }
    if lock.is_some() {
        return Err(Error::invalid(format!(
            "--evidence-retain: Object Lock is an S3 bucket's; {} is a local directory (give --evidence s3://BUCKET/PREFIX, or publish it with `pgdrill evidence publish`)",
            crate::report::visible(&text)
        )));
    }
    crate::evidence::log::prepare(&dir, &key)?;
    Ok(Some(crate::report::signed::SignedEvidence::new(dir, Arc::new(key), runbook_source)))
}

/// The anchors of a log's head kept outside it that `evidence verify` and `evidence pack`
/// hold it to: checkpoints kept elsewhere, ledgers, run.json files (each, when none is given,
/// read from beside a `--report`'s evidence/), and the manifests of the backups its records
/// name.
struct Anchors {
    checkpoint: Vec<PathBuf>,
    ledger: Vec<PathBuf>,
    run_json: Vec<PathBuf>,
}

/// Hold the verified log `v` (its copy in `location`, shown as `shown`, appended at one of
/// `here`) to every anchor of it (`a`), and say plainly which of its newest records no anchor
/// names yet: a cut of those cannot be told.
async fn hold_to_anchors(
    v: &mut crate::evidence::verify::Verified,
    location: &std::path::Path,
    shown: &str,
    here: &[String],
    key: &crate::evidence::keys::PublicKey,
    a: &Anchors,
    stores: &crate::storage::Opened,
) -> Result<(), Error> {
    use crate::evidence::{anchors, verify};
    let mut anchored: Vec<u64> = Vec::new();
    // Anchors without a key's proof (ledger lines, run.json files, manifests without a MAC):
    // compared, never counted as proof that nothing was cut.
    let mut unsigned: Vec<u64> = Vec::new();
    // A versioned bucket keeps what a DELETE without a version id hid from the listing.
    if shown.starts_with("s3://") {
        crate::evidence::immutable::against_delete_markers(v, shown).await;
    }
    // The newest head the log's appends published (never replaced): a cut of the newest
    // record is named against it.
    anchored.extend(anchors::against_heads(v, location, key, here));
    for kept in &a.checkpoint {
        let bytes = std::fs::read(kept).map_err(|e| Error::io(format!("reading {}", kept.display()), e))?;
        anchored.extend(verify::against_kept_checkpoint(v, location, key, &bytes, &kept.display().to_string()));
    }
    let mut ledgers = Vec::new();
    for l in &a.ledger {
        let text = std::fs::read_to_string(l).map_err(|e| Error::io(format!("reading {}", l.display()), e))?;
        ledgers.push((l.display().to_string(), text));
    }
    if a.ledger.is_empty() {
        ledgers.extend(ledger_beside(shown, stores).await);
    }
    for (at, text) in &ledgers {
        unsigned.extend(verify::against_ledger(v, location, here, text, at));
    }
    // The anchors of runs with `--evidence` and no ledger: their run.json, and the manifests
    // of the backups they wrote.
    let mut runs = Vec::new();
    for r in &a.run_json {
        let text = std::fs::read_to_string(r).map_err(|e| Error::io(format!("reading {}", r.display()), e))?;
        runs.push((r.display().to_string(), text));
    }
    if a.run_json.is_empty() {
        runs.extend(beside_evidence(shown, "run.json", stores).await);
    }
    for (at, text) in &runs {
        unsigned.extend(anchors::against_run_json(v, location, here, text, at));
    }
    let backup_key = std::env::var("PGDRILL_BACKUP_KEY")
        .ok()
        .filter(|k| !k.is_empty())
        .map(|k| crate::archive::KeySource::from_secret(&k));
    let folders = anchors::folders_named(v);
    let newest = v.good.last().map(|g| g.sequence).unwrap_or(0);
    let manifests = anchors::manifests_named(&folders, backup_key.as_ref(), here, newest, stores, &mut v.notes).await;
    let (proven, unproven) = anchors::against_manifests(v, location, here, &manifests);
    anchored.extend(proven);
    unsigned.extend(unproven);
    anchors::unanchored(v, anchored.into_iter().max(), unsigned.into_iter().max());
    Ok(())
}

/// What a pack's log is held to beside itself: the locations it may have been appended at,
/// and the database it is the log of.
struct Held<'a> {
    here: &'a [String],
    database: Option<&'a str>,
    anchors: &'a Anchors,
    stores: &'a crate::storage::Opened,
}

/// `pgdrill evidence pack`: verified first (its location too, as `evidence verify` holds
/// it); a log with a problem is not packed as if it were whole.
async fn evidence_pack(
    location: &std::path::Path,
    shown: &str,
    from: &str,
    to: &str,
    public_key: Option<&std::path::Path>,
    held: Held<'_>,
    out: &std::path::Path,
) -> Result<ExitCode, Error> {
    use crate::evidence::{keys::PublicKey, log::PUBLIC_KEY, pack, verify};
    let period = pack::Period::parse(from, to)?;
    let key = match public_key {
        Some(p) => PublicKey::from_file(p)?,
        None => PublicKey::from_file(&location.join(PUBLIC_KEY))?,
    };
    let mut v = verify::verify(location, &key)?;
    // A swapped-in log (another location's, signed with the same key) is as whole as this
    // one's by its chain alone: held to where it was read, it is named, not packed.
    verify::against_location(&mut v, held.here, held.database);
    // A log cut at its end with an older checkpoint put back is whole by itself: held to the
    // anchors `evidence verify` uses, the cut is named with the anchor that shows it.
    hold_to_anchors(&mut v, location, shown, held.here, &key, held.anchors, held.stores).await?;
    if !v.ok() {
        out!("{}", v.text(shown));
        errln!("error: the evidence log has problems (above): not packed");
        return Ok(ExitCode::Failed);
    }
    let mut extra = crate::report::compliance::period_files(&v, &period)?;
    // What verify.sh finds in each record's signed chain when it was appended at one of
    // these locations (its statement's compact JSON, keys in order).
    let mut locations = String::new();
    for h in held.here {
        locations.push_str(&format!("\"location\":{},\"previous\":\n", serde_json::Value::from(h.as_str())));
    }
    extra.push((pack::LOCATIONS.to_string(), locations.into_bytes()));
    // What the log was held to beside itself, and what no anchor covers: verify.sh prints it.
    extra.push((pack::ANCHORS.to_string(), pack::anchors_text(&v).into_bytes()));
    pack::write(out, location, &v, from, to, &|t| period.contains(t), &extra)?;
    let n =
        v.good.iter().filter(|g| period.contains(g.statement.predicate["finished_at"].as_str().unwrap_or(""))).count();
    outln!(
        "wrote {}: {n} records in the period, {} in the log, head sha256 {}",
        crate::report::visible(&out.display().to_string()),
        v.good.len(),
        v.good.last().map(|g| g.sha256.as_str()).unwrap_or("-")
    );
    Ok(ExitCode::Passed)
}

/// `pgdrill keygen OUT`: the private key, 0600, never replacing a file; the public key
/// beside it and on stdout.
fn keygen(out: &std::path::Path) -> Result<ExitCode, Error> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let shown = crate::report::visible(&out.display().to_string()).into_owned();
    let key = crate::evidence::keys::SigningKey::generate()?;
    let public = key.public().pem();
    let pub_path = PathBuf::from(format!("{}.pub", out.display()));
    if pub_path.exists() {
        return Err(Error::invalid(format!("{}.pub exists: keygen never replaces a key", shown)));
    }
    // A temporary file (0600 from the start) renamed into place without replacing anything:
    // a crash never leaves half a key under its name.
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".pgdrill-key-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(|e| Error::io(format!("writing {shown}"), e))?;
    tmp.as_file_mut()
        .write_all(key.pem().as_bytes())
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| Error::io(format!("writing {shown}"), e))?;
    tmp.persist_noclobber(out).map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => Error::invalid(format!("{shown} exists: keygen never replaces a key")),
        _ => Error::io(format!("writing {shown}"), e.error),
    })?;
    crate::report::write_atomic(&pub_path, |w| w.write_all(public.as_bytes()))?;
    errln!("private key: {shown} (0600; keep it secret, give it to runs with --signing-key or PGDRILL_SIGNING_KEY)");
    errln!("public key: {shown}.pub (keyid {}); give it to auditors:", key.public().keyid());
    out!("{public}");
    Ok(ExitCode::Passed)
}

fn validate(files: &[PathBuf]) -> Result<ExitCode, Error> {
    let mut all = runbook::Diagnostics::default();
    let mut other: Vec<String> = Vec::new();
    for f in files {
        if std::fs::read_to_string(f).is_ok_and(|t| crate::fleet::is_fleet(&t)) {
            match crate::fleet::load(f) {
                Ok(fl) => outln!(
                    "ok: {} (fleet, {} databases, {} schedules)",
                    f.display(),
                    fl.targets.len(),
                    fl.schedules.len()
                ),
                Err(Error::Runbook(d)) => all.0.extend(d.0),
                Err(e) => other.push(e.to_string()),
            }
            continue;
        }
        match runbook::load_checked(f) {
            Ok(rb) => {
                // Deprecated forms are shown, but the runbook is valid: exit 0.
                for w in &rb.warnings {
                    errln!("{w}");
                }
                outln!("ok: {} ({}, {} steps)", rb.file, rb.name, rb.steps.len())
            }
            Err(Error::Runbook(d)) => all.0.extend(d.0),
            Err(e) => other.push(e.to_string()),
        }
    }
    if all.is_empty() && other.is_empty() {
        return Ok(ExitCode::Passed);
    }
    for o in &other {
        errln!("error: {}", crate::report::visible(o));
    }
    if !all.is_empty() {
        return Err(Error::Runbook(all));
    }
    Ok(ExitCode::Invalid)
}

/// The `backups list` table: one header, columns as wide as their widest cell, sizes right
/// aligned, the path last. Names and paths are data: control characters are shown, not sent.
/// `backups list` of another tool's physical backups, newest first, listed by the tool itself.
async fn physical_backups(location: &str, json: bool, stores: &crate::storage::Opened) -> Result<ExitCode, Error> {
    // Ctrl-C (or SIGTERM) ends the tool's running call at once, its version probes included,
    // through the interrupt a step would watch: before, nothing watched it here, and a tool
    // that hung (a repository on a mount that stopped answering) held the command.
    let cancel = CancellationToken::new();
    let cause = Arc::new(Mutex::new(None));
    exec::signal::install(cancel.clone(), cause.clone())
        .map_err(|e| Error::environment(format!("cannot install signal handlers: {e}")))?;
    let stop = crate::physical::tools::Interrupt::default();
    let _watch = stop.watch(cancel.clone());
    let read = async {
        let source = crate::physical::open_with(location, stores, stop.clone())?;
        let tool = source.tool();
        let list = source.list()?;
        // The source's ledger, by the tool's backup id: which backup was proven.
        let last = crate::physical::tools::last_verifications(location, stores).await?;
        Ok::<_, Error>((source, tool, list, last))
    };
    // A listing read whole is printed, whenever the signal came (`biased`: a read that has
    // completed wins over a signal that came with it).
    let read = tokio::select! {
        biased;
        r = read => r,
        _ = cancel.cancelled() => Err(Error::environment("interrupted")),
    };
    let by = || cause.lock().ok().and_then(|c| c.clone()).unwrap_or_else(|| "a signal".into());
    // What a call the interrupt ended said is not the tool's answer: the command stopped,
    // printing nothing (a listing is whole or not printed).
    if read.is_err() && cancel.is_cancelled() {
        errln!("error: `backups list` was interrupted by {}; no tool call of it is left running", by());
        return Ok(ExitCode::Interrupted);
    }
    // A signal after the listing was read (while it is printed, too): the listing, whole,
    // then the interruption. Before, a signal that came once the read had completed ended
    // the command with nothing printed.
    let ended = || {
        if !cancel.is_cancelled() {
            return ExitCode::Passed;
        }
        errln!(
            "error: `backups list` was interrupted by {} once its listing was read; the listing above is whole",
            by()
        );
        ExitCode::Interrupted
    };
    let (source, tool, mut list, last) = read?;
    list.reverse();
    let time = |t: Option<time::OffsetDateTime>| t.map(crate::util::rfc3339);
    // The source's ledger (`&ledger=FOLDER`), by the tool's backup id: which backup was proven.
    let ledger = crate::physical::tools::ledger_of(location)?;
    let last_json = |id: &str| {
        last.get(id).map(|e| {
            serde_json::json!({
                "result": e.result,
                "verified_at": e.verified_at,
                "content": e.content,
                "ground_truth": e.ground_truth,
                "age": e.age,
                "sha256": e.sha256,
            })
        })
    };
    if json {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|b| {
                serde_json::json!({
                    "id": b.id,
                    "started": time(b.started),
                    "ended": time(b.ended),
                    "start_lsn": b.start_lsn.map(|l| l.to_string()),
                    "stop_lsn": b.stop_lsn.map(|l| l.to_string()),
                    "timeline": b.timeline,
                    "system_identifier": b.system_identifier.map(|s| s.to_string()),
                    "pg_major": b.pg_major,
                    "size": b.size,
                    "tool": tool.name,
                    "tool_version": tool.version,
                    "last_verification": last_json(&b.id),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ended());
    }
    outln!("{} ({} {})", crate::report::visible(&source.describe()), tool.name, tool.version);
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|b| {
            [
                time(b.ended).unwrap_or_else(|| "?".into()),
                crate::report::visible(&b.id).into_owned(),
                b.stop_lsn.map(|l| l.to_string()).unwrap_or_default(),
                b.timeline.map(|t| t.to_string()).unwrap_or_default(),
                b.size.map(crate::report::human_bytes).unwrap_or_default(),
                verification_cell(last.get(&b.id)),
            ]
        })
        .collect();
    let header = ["ended", "backup", "stop LSN", "timeline", "size", "last verified"].map(String::from);
    // Without a ledger the column says nothing: left out.
    let columns = if ledger.is_some() { 6 } else { 5 };
    let widths: Vec<usize> = (0..columns)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    for r in std::iter::once(&header).chain(rows.iter()) {
        let cells: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        outln!("{}", cells.join("  ").trim_end());
    }
    if list.is_empty() {
        outln!("(no backups)");
    }
    Ok(ended())
}

/// The `backups list` cell of a tool's backup's last verification in its source's ledger:
/// when, the result (passed, failed, unproven, error), and what its content was proven
/// against; `never` when the ledger holds none for it.
fn verification_cell(e: Option<&crate::backup::ledger::Entry>) -> String {
    let Some(e) = e else { return "never".into() };
    // To the second; by characters, so a damaged line cannot cut a character in two.
    let when: String = crate::report::visible(&e.verified_at).replace('T', " ").chars().take(19).collect();
    let mut cell = format!("{when} {}", crate::report::visible(&e.result));
    if let Some(g) = &e.ground_truth {
        cell.push_str(&format!(" (against the {})", crate::report::visible(g)));
    }
    cell
}

/// Unfinished archives (no manifest), apart from the backups: never a row of the table, so
/// never read as a backup.
/// `symlink  PATH -> TARGET`, one line per symlink named like a backup (issue 40): a pointer
/// a team's runbook names (`auth_db_LATEST.sql.gz`), shown apart from the backups.
fn symlink_lines(symlinks: &[crate::backup::listing::Symlink]) -> Vec<String> {
    let v = |t: &str| crate::report::visible(t).into_owned();
    symlinks
        .iter()
        .map(|l| {
            format!(
                "symlink  {} -> {}",
                v(&l.path),
                l.target.as_deref().map(v).unwrap_or_else(|| "nowhere (it leads to no file)".into())
            )
        })
        .collect()
}

fn unfinished_lines(unfinished: &[crate::backup::listing::UnfinishedArchive]) -> Vec<String> {
    if unfinished.is_empty() {
        return Vec::new();
    }
    let mut out = vec![format!(
        "NOT BACKUPS: {} unfinished archive{} (no manifest, the commit marker written last: a backup killed before it finished, or one still finishing; never picked; retention.prune removes each once older than abandoned_uploads_after):",
        unfinished.len(),
        if unfinished.len() == 1 { "" } else { "s" }
    )];
    for u in unfinished {
        let v = |t: &str| crate::report::visible(t).into_owned();
        out.push(format!(
            "  unfinished  {}  {}  {}  {}",
            v(&u.written).replace('T', " ").get(..19).unwrap_or("?"),
            if u.database.is_empty() { "-".into() } else { v(&u.database) },
            crate::report::human_bytes(u.size),
            v(&u.path)
        ));
        // A team's sidecar, published before its file (issue 40): the file never came.
        if u.path.ends_with(".manifest.json") {
            out.push(
                "              (a sidecar manifest without its file: the backup was killed before publishing it)"
                    .into(),
            );
        }
    }
    out
}

fn backups_table(list: &[Listed], physical: &[crate::steps::wal::SystemView]) -> Vec<String> {
    let header = ["created", "database", "size", "kind", "encrypted", "manifest", "last verified", "path"];
    let shown = |t: &str| crate::report::visible(t).into_owned();
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
    // The time to the second, and `(mtime)` where it is only the file's modification time.
    let created = |t: &str, from_mtime: bool, ahead: Option<i64>| {
        let mut c = shown(t).replace('T', " ");
        c.truncate(19);
        if from_mtime {
            c.push_str(" (mtime)");
        }
        // Dated in the future: never "0 s old"; the skew is named.
        if let Some(s) = ahead {
            c.push_str(&format!(
                " (IN THE FUTURE by {})",
                humantime::format_duration(std::time::Duration::from_secs(s.max(0) as u64 / 60 * 60))
            ));
        }
        c
    };
    let verified = |v: &Option<LastVerification>| match v {
        None => "never".to_string(),
        Some(LastVerification::Recorded { result, verified_at, age, .. }) => {
            // The age verdict beside the content's: a stale backup is not a failed one.
            let stale = if age.as_deref() == Some("stale") { " (stale)" } else { "" };
            format!("{result}{stale} {}", verified_at.get(..16).unwrap_or("?").replace('T', " "))
        }
        Some(LastVerification::Unknown { result, .. }) => format!("{result} ?"),
    };
    let mut rows: Vec<[String; 8]> = Vec::new();
    for b in list {
        let database = match b {
            _ if b.database().is_empty() => "-".to_string(),
            Listed::Foreign(f) if f.database_assumed => format!("{}?", shown(&f.database)),
            _ => shown(b.database()),
        };
        rows.push(match b {
            Listed::Unreadable(u) => {
                let q = || "?".to_string();
                [q(), database, q(), q(), q(), q(), q(), format!("{} ({})", shown(&u.path), shown(&u.error))]
            }
            Listed::Foreign(f) => [
                created(&f.created, f.created_from == crate::backup::layout::MadeFrom::Mtime, f.future_s),
                database,
                crate::report::human_bytes(f.size),
                if f.format_from.is_some() { format!("{}*", shown(&f.format)) } else { shown(&f.format) },
                if f.format_from.is_some() && !f.encrypted { "?".into() } else { yes_no(f.encrypted) },
                // Other tools' files have no manifest; a team's own file has its sidecar,
                // which nothing authenticates.
                if f.manifest_auth == crate::backup::listing::TEAM_SIDECAR { "sidecar UNAUTH" } else { "none" }.into(),
                verified(&f.last_verification),
                shown(&f.path),
            ],
            // Listed from an object store by name (issue 41): what only the manifest says is `?`.
            Listed::Named(n) => [
                created(&n.created, false, n.future_s),
                database,
                crate::report::human_bytes(n.size),
                format!("pgdrill/{}*", shown(&n.format)),
                "?".into(),
                "not read".into(),
                verified(&n.last_verification),
                shown(&n.path),
            ],
            Listed::Pgdrill(p) => [
                created(&p.created, false, p.future_s),
                database,
                crate::report::human_bytes(p.size),
                format!("pgdrill/{}", shown(&p.format)),
                yes_no(p.encrypted),
                // An unencrypted backup's manifest is bound to nothing: say so.
                if p.manifest_auth == "mac" { "mac" } else { "UNAUTH" }.into(),
                verified(&p.last_verification),
                shown(&p.path),
            ],
        });
    }
    for s in physical {
        for b in &s.base_backups {
            rows.push([
                created(&b.created, false, None),
                format!("(cluster {})", s.system_identifier),
                crate::report::human_bytes(b.size),
                "base".into(),
                yes_no(b.encrypted),
                if b.encrypted { "mac" } else { "UNAUTH" }.into(),
                match &b.window {
                    Some(w) => format!("WAL to {}", w.latest_time.get(..19).unwrap_or("?").replace('T', " ")),
                    None => "WAL incomplete".into(),
                },
                shown(&b.path),
            ]);
        }
    }
    let mut width = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 8]| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == 7 {
                out.push_str(c);
            } else if i == 2 {
                out.push_str(&format!("{c:>w$}  ", w = width[i]));
            } else {
                out.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = vec![line(header)];
    for r in &rows {
        out.push(line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6], &r[7]]));
    }
    if rows.is_empty() {
        out.push("(no backups)".into());
    }
    let named = list.iter().filter(|b| b.taken_from_names()).count();
    if named > 0 {
        out.push(format!(
            "* {named} kind(s) taken from names and the listing, no file or object read; a command that uses a backup reads its manifest or first bytes"
        ));
    }
    out
}

/// `pgdrill wal ...`: its own exit codes (PostgreSQL reads them), messages on stderr through
/// the redactor.
/// Stores are opened among the command's (`stores`), whose uploads `main` aborts at exit.
async fn wal_command(command: WalCommand, redactor: Redactor, stores: &crate::storage::Opened) -> i32 {
    let say = |text: &str| errln!("{}", crate::report::visible(&redactor.redact(text)));
    match command {
        WalCommand::Push { path, conf } => {
            let (cfg, secret) = match crate::wal::Config::load(&conf.given()) {
                Ok(c) => c,
                Err(e) => {
                    say(&format!("error: wal push: {e}"));
                    return crate::wal::push_exit(&e);
                }
            };
            redactor.add(&secret);
            for v in crate::storage::credential_values_of(&cfg.credentials) {
                redactor.add(&v);
            }
            match crate::wal::push(stores, &cfg, &path, std::path::Path::new(".")).await {
                Ok(crate::wal::Pushed::Stored { .. }) => 0,
                Ok(crate::wal::Pushed::AlreadyThere { key }) => {
                    say(&format!("wal push: {key} is already archived with the same content"));
                    0
                }
                Err(e) => {
                    say(&format!("error: wal push {}: {e}", path.display()));
                    crate::wal::push_exit(&e)
                }
            }
        }
        WalCommand::Fetch { name, dest, system_identifier, conf } => {
            let (cfg, secret) = match crate::wal::Config::load(&conf.given()) {
                Ok(c) => c,
                Err(e) => {
                    say(&format!("error: wal fetch: {e}"));
                    return crate::wal::FETCH_FATAL;
                }
            };
            redactor.add(&secret);
            // Credentials a credentials_file gave are masked like the environment's.
            for v in crate::storage::credential_values_of(&cfg.credentials) {
                redactor.add(&v);
            }
            match crate::wal::fetch(stores, &cfg, &name, &dest, std::path::Path::new("."), system_identifier).await {
                Ok(_) => 0,
                // PostgreSQL asks for files past the archive's end: its normal way to stop.
                Err(crate::wal::FetchError::Absent) => 1,
                Err(crate::wal::FetchError::Fatal(e)) => {
                    say(&format!("error: wal fetch {name}: {e} (exit {}: recovery stops)", crate::wal::FETCH_FATAL));
                    crate::wal::FETCH_FATAL
                }
            }
        }
        WalCommand::List { conf, json, metrics } => match wal_list(conf, json, metrics, &redactor, stores).await {
            Ok(()) => 0,
            Err(e) => {
                say(&format!("error: wal list: {e}"));
                crate::wal::push_exit(&e)
            }
        },
    }
}

async fn wal_list(
    conf: WalConf,
    json: bool,
    metrics: Option<PathBuf>,
    redactor: &Redactor,
    stores: &crate::storage::Opened,
) -> Result<(), crate::error::Failure> {
    let (cfg, secret) = crate::wal::Config::load(&conf.given())?;
    redactor.add(&secret);
    for v in crate::storage::credential_values_of(&cfg.credentials) {
        redactor.add(&v);
    }
    let store = stores.open_with(&cfg.storage, &cfg.credentials).map_err(crate::error::Failure::invalid)?;
    let systems = crate::steps::wal::system_views(store.as_ref(), &cfg.key).await?;
    if let Some(path) = &metrics {
        let text = crate::steps::wal::metrics(&systems);
        crate::report::write_atomic(path, |w| w.write_all(text.as_bytes()))
            .map_err(|e| crate::error::Failure::environment(format!("metrics {}: {e}", path.display())))?;
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&systems).unwrap_or_default());
        return Ok(());
    }
    if systems.is_empty() {
        outln!("{}: no WAL archive and no base backups", crate::report::visible(&store.url()));
    }
    for s in &systems {
        for line in crate::steps::wal::lines(s) {
            outln!("{}", crate::report::visible(&line));
        }
    }
    Ok(())
}

/// The physical backups in `location`: each system's base backups and recoverable windows.
/// The WAL archive's history files open with the key in PGDRILL_BACKUP_KEY when set; without
/// it a window that crosses a timeline switch is shown as unknown.
/// The base backups in `store` (opened once by `backups list` for everything it lists: a
/// second opening of the same object store fetched a second token, issue 37).
async fn physical_of(
    store: &dyn crate::storage::Store,
    redactor: &Redactor,
) -> Result<Vec<crate::steps::wal::SystemView>, Error> {
    let secret = std::env::var("PGDRILL_BACKUP_KEY").unwrap_or_default();
    redactor.add(&secret);
    let key = crate::archive::KeySource::from_secret(if secret.is_empty() {
        "no key given to backups list"
    } else {
        &secret
    });
    crate::steps::wal::system_views(store, &key).await.map_err(Error::from)
}

#[cfg(test)]
mod manpage_tests {
    use crate::manpages::write_all;

    #[test]
    fn every_visible_subcommand_gets_a_page_that_names_its_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = write_all(<super::Cli as clap::CommandFactory>::command(), dir.path()).expect("pages");
        assert!(n > 10, "only {n} pages");
        let run = std::fs::read_to_string(dir.path().join("pgdrill-run.1")).expect("pgdrill-run.1");
        assert!(run.contains("junit"), "pgdrill-run.1 does not document --junit:\n{run}");
        assert!(dir.path().join("pgdrill-backups-list.1").exists(), "no page for a nested subcommand");
        assert!(!dir.path().join("pgdrill-man.1").exists(), "the hidden subcommand got a page");
        let top = std::fs::read_to_string(dir.path().join("pgdrill.1")).expect("pgdrill.1");
        assert!(top.contains("doctor"), "pgdrill.1 does not list doctor");
    }
}
