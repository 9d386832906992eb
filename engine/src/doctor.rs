//! `pgdrill doctor`: check what a run will need before a run fails on it, and say per item
//! what is fine and what to do. Nothing is changed: the storage check writes one empty file
//! under a temporary name and removes it, the object store check lists, the database check
//! reads the server's clock.
//!
//! Each item is `ok`, `warn` (a run can proceed, but something will be slower, narrower or
//! less exact than it could be) or `FAIL` (a run would stop on it). The exit code is 0 when
//! nothing failed, 3 (the environment's code) otherwise.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::ExitCode;
use crate::redact::Redactor;

/// `pgdrill --version`: the package version, the commit and build date (engine/build.rs)
/// and the PostgreSQL majors the test suite runs against.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PGDRILL_GIT_COMMIT"),
    ", built ",
    env!("PGDRILL_BUILD_DATE"),
    "; tested with PostgreSQL 15 and 17)"
);

/// The majors the test suite runs against, checked for tools first.
const TESTED_MAJORS: [u32; 2] = [15, 17];

/// Tools pgdrill runs: the client tools of a backup and restore, the server's of a native
/// throwaway server.
const CLIENT_TOOLS: [&str; 3] = ["pg_dump", "pg_restore", "psql"];
const SERVER_TOOLS: [&str; 2] = ["initdb", "postgres"];

/// Below this much free space a backup or a restore would fail early; below `LOW_SPACE` a
/// large one may.
const NO_SPACE: u64 = 64 << 20;
const LOW_SPACE: u64 = 1 << 30;

/// A clock this far off the server's makes RPO figures (backup age) wrong by as much.
const SKEW_WARN: Duration = Duration::from_secs(2);
const SKEW_FAIL: Duration = Duration::from_secs(60);

/// How long a store's list or a database connection may take before it counts as unreachable.
const REACH_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A backup location to check: a directory, or s3://BUCKET/PREFIX, gs://..., az://...
    #[arg(long, value_name = "LOCATION", env = "PGDRILL_STORAGE")]
    storage: Option<String>,
    /// A database to check the connection and the clock against (select now()).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// The environment variable holding the backup key or passphrase.
    #[arg(long, value_name = "VAR", default_value = "PGDRILL_BACKUP_KEY")]
    key_env: String,
    /// A notify file whose sinks to try without sending anything: webhook and Sentry hosts
    /// answer, the SMTP server takes the login, sender and recipients, the Pushgateway is
    /// ready, the textfile directory is writable, PagerDuty's, Opsgenie's and Teams' keys or
    /// URLs are set and their hosts answer, a syslog collector takes a TCP connection (over
    /// UDP: its address resolves).
    #[arg(long, value_name = "FILE", env = "PGDRILL_NOTIFY")]
    notify: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ok,
    Warn,
    Fail,
}

struct Item {
    state: State,
    what: String,
    text: String,
}

#[derive(Default)]
struct Findings(Vec<Item>);

impl Findings {
    fn add(&mut self, state: State, what: impl Into<String>, text: impl Into<String>) {
        self.0.push(Item { state, what: what.into(), text: text.into() });
    }
}

/// Run every check; returns the text to print (already redacted) and the exit code.
/// Stores are opened among the command's (`stores`).
pub async fn run(args: Args, redactor: &Redactor, stores: &crate::storage::Opened) -> (String, ExitCode) {
    let mut f = Findings::default();
    let key = std::env::var(&args.key_env).ok();
    if let Some(k) = &key {
        redactor.add(k);
    }
    if let Some(u) = &args.database_url {
        redactor.add_credentials_in(u);
    }
    let images = docker(&mut f).await;
    tools(&mut f, images.as_deref());
    pgbackrest(&mut f, args.storage.as_deref().is_some_and(|s| s.starts_with(crate::physical::pgbackrest::SCHEME)));
    backup_key(&mut f, &args.key_env, key.as_deref());
    match &args.storage {
        // A directory here is checked as one (there, writable, its free space); any other
        // store is asked to list.
        Some(s) => match crate::storage::local_dir(s) {
            Some(dir) => local_storage(&mut f, &dir),
            None => remote_storage(&mut f, s, stores).await,
        },
        None => f.add(State::Ok, "storage", "not checked (give --storage LOCATION or set PGDRILL_STORAGE)"),
    }
    if let Some(u) = &args.database_url {
        database(&mut f, u).await;
    }
    if let Some(file) = &args.notify {
        notify(&mut f, file, redactor).await;
    }
    initdb_cache(&mut f);
    let mut out = format!("pgdrill {VERSION}\n");
    for i in &f.0 {
        let tag = match i.state {
            State::Ok => "ok  ",
            State::Warn => "warn",
            State::Fail => "FAIL",
        };
        let _ = writeln!(out, "{tag}  {}: {}", crate::report::visible(&i.what), crate::report::visible(&i.text));
    }
    let failed = f.0.iter().filter(|i| i.state == State::Fail).count();
    let code = if failed == 0 {
        out.push_str("a run can proceed\n");
        ExitCode::Passed
    } else {
        let _ = writeln!(out, "{failed} problem(s) above would stop a run");
        ExitCode::Environment
    };
    (redactor.redact(&out), code)
}

/// The notify file parses and each sink would get an alert through.
async fn notify(f: &mut Findings, file: &Path, redactor: &Redactor) {
    let cfg = match crate::runbook::notify::load(file) {
        Ok(cfg) => cfg,
        Err(e) => {
            // One line: where (file:line:col) and what, from the diagnostic's first lines.
            let text = e.to_string();
            let what = text.lines().next().unwrap_or("").trim_start_matches("error: ").trim();
            let at = text.lines().find_map(|l| l.trim().strip_prefix("--> ")).unwrap_or("");
            let line = if at.is_empty() { what.to_string() } else { format!("{at}: {what}") };
            f.add(State::Fail, "notify file", format!("{line}; fix the file or leave --notify out"));
            return;
        }
    };
    // Webhook URLs, DSNs and SMTP passwords are secrets: masked in anything doctor prints.
    for s in crate::report::notify::secret_values(&cfg) {
        redactor.add(&s);
    }
    if cfg.metrics.is_none() && cfg.notify.is_empty() {
        f.add(State::Warn, "notify file", format!("{} names no sink and no metrics", file.display()));
    }
    for p in crate::report::probe::all(&cfg).await {
        match p.result {
            Ok(text) => f.add(State::Ok, p.what, text),
            Err(text) => f.add(State::Fail, p.what, text),
        }
    }
}

/// The Docker engine and the local PostgreSQL images: `None` when the engine does not
/// answer, else the local image of each tested major that has one.
async fn docker(f: &mut Findings) -> Option<Vec<(u32, String)>> {
    let engine = match crate::pg::docker::engine().await {
        Ok(d) => d,
        Err(e) => {
            // Without Docker, `provider: auto` runs servers from local binaries; whether
            // those exist is the tools check's verdict.
            f.add(
                State::Warn,
                "Docker engine",
                format!(
                    "{e}: start Docker (or point DOCKER_HOST at a running engine); without it servers run natively from local PostgreSQL binaries"
                ),
            );
            return None;
        }
    };
    let version = engine.version().await.ok().and_then(|v| v.version).unwrap_or_else(|| "version unknown".into());
    f.add(State::Ok, "Docker engine", format!("answers ({version})"));
    let mut local = Vec::new();
    for m in TESTED_MAJORS {
        match crate::pg::docker::local_image_for(&engine, m).await {
            Some(img) => {
                f.add(State::Ok, format!("Docker image for PostgreSQL {m}"), format!("{img} present"));
                local.push((m, img));
            }
            None => f.add(
                State::Warn,
                format!("Docker image for PostgreSQL {m}"),
                format!(
                    "none here: the first run pulls {} (needs the registry), or build the local images with `bash ci/setup.sh`",
                    crate::pg::docker::image_for(m, None)
                ),
            ),
        }
    }
    Some(local)
}

/// The major of a tool's `--version`, if it runs.
fn tool_major(path: &Path) -> Option<u32> {
    let out = crate::child::output(crate::child::command(path).arg("--version")).ok()?;
    crate::pg::native::parse_major(&String::from_utf8_lossy(&out.stdout))
}

/// `tool` as found on PATH.
fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// PostgreSQL tools per major: Debian's /usr/lib/postgresql/N/bin, then PATH, then (for the
/// client tools) the images.
fn tools(f: &mut Findings, images: Option<&[(u32, String)]>) {
    let mut majors = crate::pg::native::installed_majors();
    let path_major = on_path("pg_dump").and_then(|p| tool_major(&p));
    majors.extend(path_major);
    majors.extend(TESTED_MAJORS);
    majors.sort_unstable();
    majors.dedup();
    let mut any_server = false;
    let mut any_client = false;
    for m in majors {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{m}/bin"));
        let find = |tool: &str| {
            let p = dir.join(tool);
            if p.is_file() {
                return Some(p);
            }
            on_path(tool).filter(|p| tool_major(p) == Some(m))
        };
        let missing = |tools: &[&'static str]| tools.iter().filter(|t| find(t).is_none()).copied().collect::<Vec<_>>();
        let (client, server) = (missing(&CLIENT_TOOLS), missing(&SERVER_TOOLS));
        any_client |= client.is_empty();
        any_server |= server.is_empty();
        let what = format!("PostgreSQL {m} tools");
        if client.is_empty() && server.is_empty() {
            f.add(State::Ok, what, format!("client and server tools found ({})", dir.display()));
            continue;
        }
        // Docker pulls the default image when there is no local one.
        let image = images.map(|l| {
            l.iter().find(|(im, _)| *im == m).map_or_else(|| crate::pg::docker::image_for(m, None), |(_, i)| i.clone())
        });
        let mut text = String::new();
        if !client.is_empty() {
            let _ = write!(text, "missing {}", client.join(", "));
        }
        if !server.is_empty() {
            let sep = if text.is_empty() { "" } else { "; " };
            let _ = write!(text, "{sep}no server binaries ({})", server.join(", "));
        }
        let _ = write!(
            text,
            ": install postgresql-{m} (apt) for native servers and local tools{}",
            match &image {
                Some(i) => format!("; with Docker, servers and client tools come from {i}"),
                None => String::new(),
            }
        );
        f.add(State::Warn, what, text);
    }
    let path_missing: Vec<&str> = CLIENT_TOOLS.iter().filter(|t| on_path(t).is_none()).copied().collect();
    if path_missing.is_empty() {
        f.add(State::Ok, "tools on PATH", format!("{} found", CLIENT_TOOLS.join(", ")));
    } else {
        f.add(
            State::Warn,
            "tools on PATH",
            format!(
                "{} not on PATH: pgdrill's own steps look under /usr/lib/postgresql, but `shell` steps that call them need them on PATH (add /usr/lib/postgresql/N/bin to PATH)",
                path_missing.join(", ")
            ),
        );
    }
    // A run needs somewhere to start servers and tools to dump and restore with: local
    // binaries, or Docker (whose images carry both).
    if images.is_none() && !(any_server && any_client) {
        f.add(
            State::Fail,
            "servers and tools",
            "neither Docker nor local PostgreSQL client and server binaries: install postgresql-15 or postgresql-17 (apt), or start Docker",
        );
    }
}

/// The pgbackrest a `pgbackrest://` source is read with (issue 39): this machine's, else an
/// image's (named, with its version), else what to install or build. Needed only for such
/// sources: a warning, unless `--storage` names one.
fn pgbackrest(f: &mut Findings, needed: bool) {
    use crate::physical::pgbackrest::serving;
    match serving(None, &Default::default()) {
        Ok((bin, None)) => f.add(State::Ok, "pgBackRest", format!("{} ({}), this machine's", bin.version, bin.path.display())),
        Ok((bin, Some(image))) => f.add(
            State::Ok,
            "pgBackRest",
            format!(
                "this machine has none; pgbackrest:// sources are read with {} in {image} (a backup is restored in an image of its own PostgreSQL major that has pgbackrest)",
                bin.version
            ),
        ),
        Err(e) => f.add(
            if needed { State::Fail } else { State::Warn },
            "pgBackRest",
            format!("{e}; needed only for pgbackrest:// sources"),
        ),
    }
}

/// The backup key's presence and strength, never its value.
fn backup_key(f: &mut Findings, var: &str, key: Option<&str>) {
    let what = format!("backup key ({var})");
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        f.add(
            State::Fail,
            what,
            format!("{var} is not set: encrypted backups and their verification need it; make one with `openssl rand -hex 32` and keep it where you keep secrets (or back up with --var encrypt=false)"),
        );
        return;
    };
    if let Err(e) = crate::redact::check_key(key) {
        f.add(State::Fail, what, e);
        return;
    }
    match crate::archive::crypto::KeySource::from_secret(key) {
        ring @ crate::archive::crypto::KeySource::Ring(_) => {
            // Fingerprints only: which key writes, which are kept for reading older backups.
            let prints: Vec<String> = ring.members().iter().map(|k| k.fingerprint()).collect();
            f.add(
                State::Ok,
                what,
                format!(
                    "set: a keyring of {} keys; new backups are written with key {}, older ones also read with {} (`pgdrill rekey` moves them to the newest)",
                    prints.len(),
                    prints[0],
                    prints[1..].join(", ")
                ),
            )
        }
        crate::archive::crypto::KeySource::Raw(_) => f.add(State::Ok, what, "set: a raw 256-bit key"),
        crate::archive::crypto::KeySource::Passphrase(p) => {
            let n = p.chars().count();
            let kinds = [char::is_lowercase, char::is_uppercase, char::is_numeric]
                .iter()
                .filter(|k| p.chars().any(**k))
                .count()
                + usize::from(p.chars().any(|c| !c.is_alphanumeric()));
            if n < 20 && kinds < 3 {
                f.add(State::Warn, what, format!("set: a passphrase of {n} characters with few kinds of characters; a longer one or a raw key (`openssl rand -hex 32`) resists guessing better"));
            } else {
                f.add(State::Ok, what, format!("set: a passphrase of {n} characters (stretched with Argon2id)"));
            }
        }
    }
}

/// A local backup directory: there, a directory, writable, with room.
fn local_storage(f: &mut Findings, dir: &Path) {
    let what = format!("storage {}", dir.display());
    match std::fs::metadata(dir) {
        Err(e) => {
            return f.add(
                State::Fail,
                what,
                format!("cannot be read ({e}): create it (mkdir -p) or mount the volume it lives on"),
            );
        }
        Ok(m) if !m.is_dir() => return f.add(State::Fail, what, "is not a directory: give the backup directory"),
        Ok(_) => {}
    }
    // The one way to know a directory is writable for this user (ACLs, read-only mounts,
    // root squash) is to write: an empty file under a temporary name, removed at once.
    if let Err(e) = tempfile::Builder::new().prefix(".pgdrill-doctor-").tempfile_in(dir) {
        return f.add(
            State::Fail,
            what,
            format!("is not writable by this user ({e}): fix its owner or mode, or remount it read-write"),
        );
    }
    let free = match nix::sys::statvfs::statvfs(dir) {
        Ok(s) => s.blocks_available().saturating_mul(s.fragment_size()),
        Err(e) => return f.add(State::Warn, what, format!("writable; free space unknown ({e})")),
    };
    let gib = free as f64 / f64::from(1u32 << 30);
    if free < NO_SPACE {
        f.add(
            State::Fail,
            what,
            format!("writable but only {} MiB free: free space or use another volume", free >> 20),
        );
    } else if free < LOW_SPACE {
        f.add(State::Warn, what, format!("writable, {} MiB free: a large backup may not fit", free >> 20));
    } else {
        f.add(State::Ok, what, format!("writable, {gib:.1} GiB free"));
    }
}

/// An object store: its credentials work for a list of the location.
async fn remote_storage(f: &mut Findings, location: &str, stores: &crate::storage::Opened) {
    let what = format!("storage {location}");
    let store = match stores.open_in(location, Path::new("")) {
        Ok(s) => s,
        Err(e) => return f.add(State::Fail, what, e),
    };
    match tokio::time::timeout(REACH_TIMEOUT, store.children("")).await {
        Ok(Ok(top)) => f.add(
            State::Ok,
            what,
            format!(
                "reachable, credentials can list it ({} objects and {} folders at the top)",
                top.objects.len(),
                top.folders.len()
            ),
        ),
        // The store's own reason already says what to do (a bucket to create, credentials).
        Ok(Err(e)) => f.add(State::Fail, what, e),
        Err(_) => f.add(
            State::Fail,
            what,
            format!("no answer within {} s: check the endpoint and the network", REACH_TIMEOUT.as_secs()),
        ),
    }
}

/// The database answers, and its clock agrees with ours.
async fn database(f: &mut Findings, url: &str) {
    let what = format!("database {}", crate::pg::display_url(url));
    let client = match tokio::time::timeout(REACH_TIMEOUT, crate::pg::connect(url)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return f.add(State::Fail, what, format!("{e}: check the host, port, credentials and pg_hba.conf"))
        }
        Err(_) => return f.add(State::Fail, what, format!("no answer within {} s", REACH_TIMEOUT.as_secs())),
    };
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let before = now();
    let row =
        client.query_one("select extract(epoch from now())::float8, current_setting('server_version')", &[]).await;
    let after = now();
    let (server, version): (f64, String) = match row {
        Ok(r) => (r.get(0), r.get(1)),
        Err(e) => {
            return f.add(
                State::Fail,
                what,
                format!("connected, but `select now()` failed: {}", crate::pg::describe(&e)),
            )
        }
    };
    // The server read its clock somewhere in the round trip: compare with its middle.
    let skew = server - (before + after) / 2.0;
    let text = format!(
        "reachable (PostgreSQL {version}); its clock is {:.1} s {} ours",
        skew.abs(),
        if skew >= 0.0 { "ahead of" } else { "behind" }
    );
    let off = Duration::from_secs_f64(skew.abs().min(1e9));
    if off >= SKEW_FAIL {
        f.add(
            State::Fail,
            what,
            format!("{text}: RPO figures would be wrong by as much; synchronise both clocks (NTP)"),
        );
    } else if off >= SKEW_WARN {
        f.add(State::Warn, what, format!("{text}: synchronise the clocks (NTP)"));
    } else {
        f.add(State::Ok, what, text);
    }
}

/// The initdb template cache of native servers.
fn initdb_cache(f: &mut Findings) {
    let what = "initdb cache";
    let Some(root) = crate::pg::initdb_cache::root() else {
        return f.add(
            State::Ok,
            what,
            "off (PGDRILL_INITDB_CACHE=off or no HOME): native servers run initdb every time",
        );
    };
    // The cache is made on first use: the nearest existing ancestor must take it.
    let existing = root.ancestors().find(|a| a.exists()).unwrap_or(Path::new("/"));
    let writable = nix::unistd::access(existing, nix::unistd::AccessFlags::W_OK).is_ok();
    match (root.is_dir(), writable) {
        (true, true) => f.add(State::Ok, what, format!("{} (writable)", root.display())),
        (false, true) => f.add(State::Ok, what, format!("{} (made on the first native server)", root.display())),
        (_, false) => f.add(
            State::Warn,
            what,
            format!(
                "{} cannot be written ({} is not writable): native servers run initdb every time; set PGDRILL_INITDB_CACHE to a writable directory",
                root.display(),
                existing.display()
            ),
        ),
    }
}
