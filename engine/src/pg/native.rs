//! Throwaway PostgreSQL servers from local binaries: initdb into a temp directory, then the
//! postmaster on a free 127.0.0.1 port with its unix socket inside that directory.
//!
//! Teardown is not optional: `stop` (or `Drop`) shuts the server down and removes the
//! directory. If pgdrill itself dies, the kernel kills the postmaster (parent-death signal
//! through `setpriv --pdeathsig`), and the next start reaps directories whose owner is gone.
//! initdb refuses to run as root, so as root the server runs as the unprivileged `nobody`.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Pid, User};

use crate::error::Failure;

/// initdb's arguments besides the data directory, superuser and password file.
const INITDB_ARGS: &[&str] = &["-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"];

/// Prefix of every temp directory a native server lives in (used to reap stale ones).
pub const DIR_PREFIX: &str = "pgdrill-native-";

/// Why a server could not be provided: the request itself is wrong (a bad version, a
/// bin_dir without initdb: invalid, exit 2), or the machine cannot do it (no binaries, a
/// server that failed to start: environment, exit 3).
pub type ServerError = crate::error::Failure;

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct NativeOptions {
    /// Major version wanted; `None` takes what is found.
    pub major: Option<u32>,
    /// Directory holding initdb and postgres.
    pub bin_dir: Option<PathBuf>,
    /// Superuser name (default `postgres`).
    pub user: Option<String>,
    /// Database created for the caller (default `postgres`).
    pub database: Option<String>,
    /// How long to wait for the first successful connection.
    pub ready_timeout: Option<Duration>,
    /// Where the server's directory (its data directory and socket) is made: `None`, the
    /// temp directory; `util::memory::TMPFS` keeps the server's files in memory.
    pub parent: Option<PathBuf>,
}

/// A running server. Dropping it stops the server and deletes its files.
#[derive(Debug)]
pub struct NativeServer {
    child: Option<Child>,
    dir: PathBuf,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub bin_dir: PathBuf,
    /// `server_version` as the server reports it, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub server_version: String,
    pub major: u32,
    /// `pg_control_system()`'s system identifier, read by the start's one session.
    pub system_identifier: Option<String>,
}

impl NativeServer {
    /// `postgres://user:password@127.0.0.1:port/database`
    pub fn url(&self) -> String {
        super::server_url(&self.user, &self.password, &self.host, self.port, &self.database)
    }

    /// URL of another database on the same server.
    pub fn url_for(&self, database: &str) -> String {
        super::server_url(&self.user, &self.password, &self.host, self.port, database)
    }

    /// The directory holding the data directory and socket.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Start a server.
    pub async fn start(opts: NativeOptions) -> Result<NativeServer, ServerError> {
        reap_stale();
        let bin_dir = find_bin_dir(opts.bin_dir.as_deref(), opts.major)?;
        let major = binary_major(&bin_dir)?;
        if let Some(want) = opts.major {
            if want != major {
                return Err(ServerError::environment(format!(
                    "PostgreSQL {want} binaries not found ({} has {major}); available: {}",
                    bin_dir.display(),
                    describe_available()
                )));
            }
        }
        let user = opts.user.clone().unwrap_or_else(|| "postgres".into());
        let database = opts.database.clone().unwrap_or_else(|| "postgres".into());
        let password = generate_password();
        let run_as = RunAs::detect()?;

        // The owner's pid in the name: another pgdrill's `reap_stale` can tell whose it is
        // before `owner.pid` is written (it used to remove such a directory as stale).
        let parent = opts.parent.clone().unwrap_or_else(std::env::temp_dir);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
            .tempdir_in(&parent)
            .map_err(|e| ServerError::environment(format!("cannot create a directory in {}: {e}", parent.display())))?
            .keep();
        let mut server = NativeServer {
            child: None,
            dir: dir.clone(),
            host: "127.0.0.1".into(),
            port: 0,
            user,
            password,
            database,
            bin_dir: bin_dir.clone(),
            server_version: String::new(),
            major,
            system_identifier: None,
        };
        // From here on, Drop cleans up whatever exists.
        fs::write(dir.join("owner.pid"), std::process::id().to_string())
            .map_err(|e| ServerError::environment(format!("writing {}: {e}", dir.display())))?;
        run_as.own(&dir)?;
        let sock = dir.join("sock");
        fs::create_dir(&sock).map_err(|e| ServerError::environment(format!("creating {}: {e}", sock.display())))?;
        run_as.own(&sock)?;
        let data = dir.join("data");
        // A copy of a kept initdb output when there is one (initdb_cache); else initdb, whose
        // output is then kept for the next server.
        let cache = super::initdb_cache::root()
            .map(|root| (super::initdb_cache::key(&bin_dir, &server.user, run_as.uid(), INITDB_ARGS), root));
        let mut from_template = None;
        if let Some((key, root)) = &cache {
            if let Some(t) = super::initdb_cache::find(root, key, major) {
                // A thousand files: off the async worker, as initdb is.
                let copied = tokio::task::block_in_place(|| {
                    super::initdb_cache::copy_tree_owned(&t.data, &data, run_as.owner()).map_err(|e| e.to_string())
                });
                match copied {
                    Ok(()) => {
                        server.password = t.password;
                        from_template = Some((key.clone(), root.clone()));
                    }
                    Err(_) => {
                        let _ = fs::remove_dir_all(&data);
                    }
                }
            }
        }
        if from_template.is_none() {
            server.initdb_and_keep(&run_as, &data, cache.as_ref())?;
        }

        let deadline = opts.ready_timeout.unwrap_or(Duration::from_secs(60));
        let mut last_err = String::new();
        // A free port can be taken between our probe and the server's bind; try a few.
        for _ in 0..3 {
            let port = free_port()?;
            server.port = port;
            let log = fs::File::create(dir.join("server.log"))
                .map_err(|e| ServerError::environment(format!("creating server.log: {e}")))?;
            run_as.own(&dir.join("server.log"))?;
            let mut cmd = run_as.command(&bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&data)
                .arg("-p")
                .arg(port.to_string())
                .arg("-c")
                .arg("listen_addresses=127.0.0.1")
                .arg("-c")
                .arg(format!("unix_socket_directories={}", sock.display()))
                // Each session's line in server.log: what a run opens on its throwaway server
                // can be counted (issue 41), at one line per session.
                .arg("-c")
                .arg("log_connections=on")
                .args(super::throwaway_args())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::from(log));
            let child = crate::child::spawn(&mut cmd)
                .map_err(|e| ServerError::environment(format!("cannot start postgres: {e}")))?;
            server.child = Some(child);
            match server.wait_ready(deadline).await {
                // The session that found the server ready also sets its password and creates
                // its database: one session where there were three, each a backend and a
                // SCRAM exchange on the cores the caller's own work needs.
                Ok((version, system_identifier, client)) => {
                    server.server_version = version;
                    server.system_identifier = system_identifier;
                    if from_template.is_some() {
                        server.new_password(&client).await?;
                    }
                    if server.database != "postgres" {
                        server.create_database(&client).await?;
                    }
                    return Ok(server);
                }
                Err(e) => {
                    last_err = e;
                    server.kill_server();
                    if let Some((key, root)) = from_template.take() {
                        // Not this machine's fault, perhaps, but the template's: remove it and
                        // initialize this server the slow way.
                        super::initdb_cache::discard(&root, &key);
                        let _ = fs::remove_dir_all(&data);
                        server.password = generate_password();
                        server.initdb_and_keep(&run_as, &data, Some(&(key, root)))?;
                        continue;
                    }
                    if !last_err.contains("could not bind") && !last_err.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        Err(ServerError::environment(format!("postgres did not start: {last_err}")))
    }

    /// initdb into `data`, as `run_as`, with this server's superuser and password.
    fn initdb(&self, run_as: &RunAs, data: &Path) -> Result<(), ServerError> {
        let pwfile = self.dir.join("pwfile");
        fs::write(&pwfile, &self.password)
            .map_err(|e| ServerError::environment(format!("writing {}: {e}", pwfile.display())))?;
        run_as.own(&pwfile)?;
        let mut initdb = run_as.command(&self.bin_dir.join("initdb"));
        initdb
            .arg("-D")
            .arg(data)
            .arg("-U")
            .arg(&self.user)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(INITDB_ARGS)
            .stdin(Stdio::null());
        let out = tokio::task::block_in_place(|| crate::child::output(&mut initdb))
            .map_err(|e| ServerError::environment(format!("cannot run initdb: {e}")));
        let _ = fs::remove_file(&pwfile);
        let out = out?;
        if !out.status.success() {
            return Err(ServerError::environment(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    /// `initdb`, then keep its output as the template under `cache` (key, root) when there is
    /// a cache. Keeping is best effort: without it the next server runs initdb again.
    fn initdb_and_keep(
        &self,
        run_as: &RunAs,
        data: &Path,
        cache: Option<&(String, PathBuf)>,
    ) -> Result<(), ServerError> {
        self.initdb(run_as, data)?;
        if let Some((key, root)) = cache {
            let _ = tokio::task::block_in_place(|| super::initdb_cache::store(root, key, data, &self.password));
        }
        Ok(())
    }

    /// A server started from a kept template has the template's password: give it one of its
    /// own, sent as a SCRAM verifier so the password itself never reaches the server.
    async fn new_password(&mut self, client: &tokio_postgres::Client) -> Result<(), ServerError> {
        let password = generate_password();
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        client.batch_execute(&format!("alter role {} password '{verifier}'", quote_ident(&self.user))).await.map_err(
            |e| ServerError::environment(format!("setting the server's password: {}", crate::pg::describe(&e))),
        )?;
        self.password = password;
        Ok(())
    }

    /// The server's version and a session on `postgres`, once it accepts connections. It
    /// watches `postmaster.pid` (what `pg_ctl -w` waits on) and connects once that says
    /// `ready`: a connection tried every 25 ms while the server started forked a backend that
    /// refused it ("the database system is starting up") each time. Before PostgreSQL 10,
    /// whose file says nothing of it, it connects every 25 ms as before.
    async fn wait_ready(
        &mut self,
        deadline: Duration,
    ) -> Result<(String, Option<String>, tokio_postgres::Client), String> {
        let started = Instant::now();
        let url = self.url_for("postgres");
        let data = self.dir.join("data");
        let mut last_try: Option<Instant> = None;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("the server exited ({status}): {}", self.log_tail()));
                }
            }
            let ready = postmaster_status(&data).as_deref() == Some("ready");
            // The file has no status line before PostgreSQL 10, and none either in the first
            // moments of a newer server, which already listens then: only the major tells.
            let blind = self.major < 10;
            if ready || blind && last_try.is_none_or(|t| t.elapsed() >= CONNECT_POLL) {
                last_try = Some(Instant::now());
                if let Ok(client) = crate::pg::connect(&url).await {
                    // The identity too, which the step reports (a session fewer there).
                    let q = "select current_setting('server_version'), \
                             (select system_identifier::text from pg_control_system())";
                    if let Ok(row) = client.query_one(q, &[]).await {
                        let id = row.get::<_, Option<String>>(1).filter(|s| !s.is_empty());
                        return Ok((row.get::<_, String>(0), id, client));
                    }
                }
            }
            if started.elapsed() > deadline {
                return Err(format!("no connection after {}s: {}", deadline.as_secs(), self.log_tail()));
            }
            // Ready but not connectable yet (the socket's first moments): the 25 ms of before.
            tokio::time::sleep(if ready { CONNECT_POLL } else { READY_POLL }).await;
        }
    }

    async fn create_database(&self, client: &tokio_postgres::Client) -> Result<(), ServerError> {
        let q = format!("create database {}", quote_ident(&self.database));
        client.batch_execute(&q).await.map_err(|e| {
            ServerError::environment(format!("creating database {}: {}", self.database, crate::pg::describe(&e)))
        })
    }

    fn log_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(self.dir.join("server.log")) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().rev().take(5).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Immediate shutdown, escalating to SIGKILL; waits for the postmaster to exit.
    fn kill_server(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = Pid::from_raw(child.id() as i32);
            // SIGQUIT: immediate shutdown. Nothing here needs to survive.
            let _ = kill(pid, Signal::SIGQUIT);
            let until = Instant::now() + Duration::from_secs(5);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > until => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        }
    }

    /// Stop the server and remove its files.
    pub fn stop(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        self.kill_server();
        if !self.dir.as_os_str().is_empty() {
            remove_dir_unlinking_in_parallel(&self.dir);
            self.dir = PathBuf::new();
        }
    }
}

/// Threads unlinking a throwaway's files at once.
const UNLINKERS: usize = 8;

/// Remove `dir` and everything in it, its files unlinked from several threads at once. A
/// restored database leaves a thousand files and more, and the run ends only once they are
/// gone; on a busy disk each unlink waits on the filesystem (freeing its blocks), not on
/// the CPU, so one after another they wait in turn (a 180 MB data directory: 2.4 s, eight
/// at a time 0.6 s; README, the verify rounds of the bench). Symbolic links are removed,
/// never followed; what is left (the directories) goes as before.
fn remove_dir_unlinking_in_parallel(dir: &Path) {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => dirs.push(e.path()),
                Ok(_) => files.push(e.path()),
                Err(_) => {}
            }
        }
    }
    // Interleaved, so the large files (listed together, in the database's directory) are
    // spread over the threads.
    std::thread::scope(|s| {
        for i in 0..UNLINKERS.min(files.len()) {
            let files = &files;
            s.spawn(move || {
                for f in files.iter().skip(i).step_by(UNLINKERS) {
                    let _ = fs::remove_file(f);
                }
            });
        }
    });
    let _ = fs::remove_dir_all(dir);
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Who the server processes run as (`physical::recover` starts its servers the same way).
pub enum RunAs {
    /// Not root: run as ourselves.
    Me,
    /// Root: drop to an unprivileged user, because initdb and postgres refuse root.
    User { uid: u32, gid: u32, name: String },
}

impl RunAs {
    pub fn detect() -> Result<RunAs, ServerError> {
        if !nix::unistd::geteuid().is_root() {
            return Ok(RunAs::Me);
        }
        let user = User::from_name("nobody").ok().flatten().ok_or_else(|| {
            ServerError::environment("running as root, but there is no `nobody` user to run postgres as")
        })?;
        Ok(RunAs::User { uid: user.uid.as_raw(), gid: user.gid.as_raw(), name: user.name })
    }

    pub fn own(&self, path: &Path) -> Result<(), ServerError> {
        if let RunAs::User { uid, gid, name } = self {
            nix::unistd::chown(path, Some((*uid).into()), Some((*gid).into()))
                .map_err(|e| ServerError::environment(format!("cannot hand {} to {name}: {e}", path.display())))?;
        }
        let mode = if path.is_dir() { 0o700 } else { 0o600 };
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(mode));
        Ok(())
    }

    /// The user and group files are handed to, when not ourselves.
    pub fn owner(&self) -> Option<(u32, u32)> {
        match self {
            RunAs::Me => None,
            RunAs::User { uid, gid, .. } => Some((*uid, *gid)),
        }
    }

    /// The user id the server runs as.
    pub fn uid(&self) -> u32 {
        match self {
            RunAs::Me => nix::unistd::geteuid().as_raw(),
            RunAs::User { uid, .. } => *uid,
        }
    }

    /// The user and group ids the server runs as (a container of a tool that writes what
    /// the server reads runs as them too).
    pub fn ids(&self) -> (u32, u32) {
        match self {
            RunAs::Me => (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()),
            RunAs::User { uid, gid, .. } => (*uid, *gid),
        }
    }

    /// `own` for a directory and everything in it.
    pub fn own_tree(&self, dir: &Path) -> Result<(), ServerError> {
        self.own(dir)?;
        let entries =
            fs::read_dir(dir).map_err(|e| ServerError::environment(format!("reading {}: {e}", dir.display())))?;
        for e in entries {
            let e = e.map_err(|e| ServerError::environment(format!("reading {}: {e}", dir.display())))?;
            match e.file_type() {
                Ok(t) if t.is_dir() => self.own_tree(&e.path())?,
                Ok(t) if t.is_symlink() => {}
                _ => match e.metadata() {
                    // A file a tool already wrote as the server's user, readable by it alone
                    // (pgBackRest restores each file's owner and mode from its manifest), is
                    // left as it is: one lstat, not a chown, a stat and a chmod per file.
                    Ok(m) if self.holds(&m, 0o600) => {}
                    _ => self.own(&e.path())?,
                },
            }
        }
        Ok(())
    }

    /// Whether a file of metadata `m` is already the server's user's with `mode`.
    fn holds(&self, m: &fs::Metadata, mode: u32) -> bool {
        use std::os::unix::fs::MetadataExt;
        let owner = match self {
            RunAs::Me => true,
            RunAs::User { uid, gid, .. } => m.uid() == *uid && m.gid() == *gid,
        };
        owner && m.mode() & 0o7777 == mode
    }

    /// A command for `program` (through crate::child, so it dies with pgdrill), dropping
    /// privileges if root.
    pub fn command(&self, program: &Path) -> Command {
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut args: Vec<String> = Vec::new();
        if let RunAs::User { uid, gid, .. } = self {
            args.extend([format!("--reuid={uid}"), format!("--regid={gid}"), "--clear-groups".into()]);
            // Changing the user clears the death signal crate::child armed, so setpriv
            // arms it again after the switch.
            args.extend(["--pdeathsig".into(), "KILL".into()]);
        }
        if args.is_empty() || !setpriv.exists() {
            return crate::child::command(program);
        }
        let mut c = crate::child::command(setpriv);
        c.args(args).arg("--").arg(program);
        c
    }
}

/// How often a starting server's `postmaster.pid` is read (a file read; the server is not
/// disturbed).
const READY_POLL: Duration = Duration::from_millis(5);
/// How often a connection is tried when `postmaster.pid` gives no status it knows.
const CONNECT_POLL: Duration = Duration::from_millis(25);

/// What the postmaster of the data directory `data` says of itself in the 8th line of its
/// `postmaster.pid` (PostgreSQL 10 and later; what `pg_ctl -w` waits on): `starting` (also
/// while it recovers), `ready` once it accepts connections (with `hot_standby=off`, only once
/// recovery ended and it promoted), `stopping`, `standby`. None when there is no file or no
/// such line yet (an older server, or a newer one's first moments). A plain file read, for
/// any data directory: a throwaway's here, a recovery's in `physical`.
pub fn postmaster_status(data: &Path) -> Option<String> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    text.lines().nth(7).map(|l| l.trim().to_string())
}

fn free_port() -> Result<u16, ServerError> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| ServerError::environment(format!("no free port on 127.0.0.1: {e}")))?;
    l.local_addr().map(|a| a.port()).map_err(|e| ServerError::environment(format!("no free port on 127.0.0.1: {e}")))
}

/// A random password for a throwaway server (hex, URL-safe).
pub fn generate_password() -> String {
    use std::fmt::Write;
    let mut bytes = [0u8; 18];
    if getrandom(&mut bytes).is_err() {
        // Fall back to time and pid; the server only listens on loopback anyway.
        let seed = format!("{:?}{}", Instant::now(), std::process::id());
        for (i, b) in seed.bytes().enumerate() {
            bytes[i % bytes.len()] ^= b;
        }
    }
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn getrandom(buf: &mut [u8]) -> std::io::Result<()> {
    let mut f = fs::File::open("/dev/urandom")?;
    f.read_exact(buf)
}

/// `"name"` with embedded quotes doubled.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// `'text'` with embedded quotes doubled: a string literal under `standard_conforming_strings`
/// (on since PostgreSQL 9.1), where a backslash is an ordinary character.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Find the directory with initdb and postgres: bin_dir, pg_config, Debian's layout, PATH.
pub fn find_bin_dir(bin_dir: Option<&Path>, major: Option<u32>) -> Result<PathBuf, ServerError> {
    if let Some(d) = bin_dir {
        if d.join("initdb").is_file() && d.join("postgres").is_file() {
            return Ok(d.to_path_buf());
        }
        return Err(ServerError::invalid(format!(
            "bin_dir {} has no initdb and postgres; point it at a PostgreSQL bin directory (available: {})",
            d.display(),
            describe_available()
        )));
    }
    if let Some(m) = major {
        let d = PathBuf::from(format!("/usr/lib/postgresql/{m}/bin"));
        if d.join("initdb").is_file() {
            return Ok(d);
        }
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Ok(out) = crate::child::output(crate::child::command("pg_config").arg("--bindir")) {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    candidates
        .extend(installed_majors().into_iter().rev().map(|m| PathBuf::from(format!("/usr/lib/postgresql/{m}/bin"))));
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    for d in candidates {
        if d.join("initdb").is_file() && d.join("postgres").is_file() {
            if let Some(m) = major {
                if binary_major(&d).ok() != Some(m) {
                    continue;
                }
            }
            return Ok(d);
        }
    }
    match major {
        Some(m) => Err(ServerError::environment(format!(
            "PostgreSQL {m} server binaries not found; available: {}",
            describe_available()
        ))),
        None => Err(ServerError::environment(
            "PostgreSQL server binaries (initdb, postgres) not found: install them or set bin_dir",
        )),
    }
}

/// Majors under /usr/lib/postgresql (Debian and Ubuntu layout), ascending.
pub fn installed_majors() -> Vec<u32> {
    let mut v: Vec<u32> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
        .filter(|m: &u32| Path::new(&format!("/usr/lib/postgresql/{m}/bin/initdb")).is_file())
        .collect();
    v.sort_unstable();
    v
}

/// Find pg_dump (or pg_restore): explicit, the server's major under /usr/lib/postgresql, the
/// newest there, then PATH.
pub fn find_tool(tool: &str, explicit: Option<&Path>, server_major: u32) -> Result<(PathBuf, String, u32), Failure> {
    find_tool_with(tool, explicit, server_major, &mut |cmd| Ok(crate::child::output(cmd).ok()))
}

/// [`find_tool`], each candidate's `--version` run by `run`: `Ok(None)` when that candidate
/// cannot be run (the next is asked), an error ends the search with it. The caller decides
/// how a probe runs: a physical source runs it through its interrupt (a probe on a mount
/// that stopped answering held Ctrl-C and the step's timeout), which lives above this layer.
pub fn find_tool_with(
    tool: &str,
    explicit: Option<&Path>,
    server_major: u32,
    run: &mut dyn FnMut(&mut Command) -> Result<Option<std::process::Output>, Failure>,
) -> Result<(PathBuf, String, u32), Failure> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    } else {
        candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{server_major}/bin/{tool}")));
        for m in installed_majors().into_iter().rev() {
            candidates.push(PathBuf::from(format!("/usr/lib/postgresql/{m}/bin/{tool}")));
        }
        candidates.push(PathBuf::from(tool));
    }
    let mut best: Option<(PathBuf, String, u32)> = None;
    for c in candidates {
        let Some(out) = run(crate::child::command(&c).arg("--version"))? else { continue };
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let Some(major) = parse_major(&text) else { continue };
        if major >= server_major {
            return Ok((c, text, major));
        }
        if best.is_none() {
            best = Some((c, text, major));
        }
    }
    match best {
        Some((p, text, major)) => Err(Failure::environment(format!(
            "{tool} {major} ({}, `{text}`) is older than the server (PostgreSQL {server_major}); install the {server_major} client tools or set `{tool}:`",
            p.display()
        ))),
        None => Err(Failure::environment(format!("{tool} not found: install the PostgreSQL client tools or set `{tool}:`"))),
    }
}

fn describe_available() -> String {
    let v = installed_majors();
    if v.is_empty() {
        "none found under /usr/lib/postgresql".into()
    } else {
        v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    }
}

/// The major version of the postgres binary in `dir`.
pub fn binary_major(dir: &Path) -> Result<u32, ServerError> {
    let out = crate::child::output(crate::child::command(dir.join("postgres")).arg("--version"))
        .map_err(|e| ServerError::environment(format!("cannot run {}/postgres: {e}", dir.display())))?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_major(&text)
        .ok_or_else(|| ServerError::environment(format!("cannot read the version from `{}`", text.trim())))
}

/// `postgres (PostgreSQL) 15.18 (Debian ...)` -> 15; `9.6.24` -> 9.
pub fn parse_major(version_text: &str) -> Option<u32> {
    let v = version_text.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))?;
    v.split(['.', '-', 'b', 'r']).next()?.parse().ok()
}

/// The postmaster running in the data directory `data`, if one is: the pid that
/// `postmaster.pid` names, only when that process's working directory is `data` (a postmaster
/// works in its data directory). A postmaster.pid left by a server that was killed names a
/// pid the system may have given to any other process since; one written in a container
/// names a pid of the container's namespace. Neither is this server, and signalling it
/// would hit an unrelated process.
pub fn live_postmaster(data: &Path) -> Option<Pid> {
    let text = fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok().filter(|p| *p > 1)?;
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let data = fs::canonicalize(data).ok()?;
    (cwd == data).then(|| Pid::from_raw(pid))
}

/// Whether a server this process started with its directory in `parent` said in its log
/// that its disk was full ("No space left on device": a relation or its WAL that could not
/// be written). A client sees only part of it (a failed COPY, or a lost connection when the
/// WAL's write took the server down); the server's log says where.
pub fn filled_in(parent: &Path) -> bool {
    let mine = format!("{DIR_PREFIX}{}-", std::process::id());
    let Ok(entries) = fs::read_dir(parent) else { return false };
    entries.flatten().filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(&mine))).any(|e| {
        fs::read(e.path().join("server.log"))
            .is_ok_and(|log| crate::util::memory::says_full(&String::from_utf8_lossy(&log)))
    })
}

/// Remove temp directories of servers whose pgdrill process is gone, killing their
/// postmaster if it somehow survived: in the temp directory and in the tmpfs a server's
/// files may be kept in.
pub fn reap_stale() {
    reap_stale_in(&std::env::temp_dir());
    reap_stale_in(Path::new(crate::util::memory::TMPFS));
}

/// `reap_stale` in `tmp`. The owner is `owner.pid`, else the pid in the directory's name
/// (`pgdrill-native-<pid>-XXXXXX`); a directory that names neither is left alone while it is
/// young, because its owner may be writing `owner.pid` this very moment.
fn reap_stale_in(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else { continue };
        let dir = e.path();
        let named: Option<i32> = rest.split_once('-').and_then(|(pid, _)| pid.parse().ok()).filter(|p: &i32| *p > 0);
        let owner: Option<i32> =
            fs::read_to_string(dir.join("owner.pid")).ok().and_then(|s| s.trim().parse().ok()).or(named);
        match owner {
            Some(p) if crate::child::is_alive(p) => continue,
            Some(_) => {}
            None => {
                let age = fs::metadata(&dir).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                if age.is_none_or(|a| a < std::time::Duration::from_secs(600)) {
                    continue;
                }
            }
        }
        // Only a postmaster still running in this directory is killed: the pid in a stale
        // postmaster.pid may belong to any process by now (pids wrap at 32768 here).
        if let Some(pm) = live_postmaster(&dir.join("data")) {
            let _ = kill(pm, Signal::SIGKILL);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_major;

    #[test]
    fn the_postmaster_status_is_the_eighth_line_of_its_pid_file_or_none() {
        let dir = tempfile::tempdir().expect("tmp");
        assert_eq!(super::postmaster_status(dir.path()), None, "no file");
        let pid = dir.path().join("postmaster.pid");
        std::fs::write(&pid, "4242\n/data\n1700000000\n5432\n/tmp\n*\n").expect("write");
        assert_eq!(super::postmaster_status(dir.path()), None, "no status line yet");
        std::fs::write(&pid, "4242\n/data\n1700000000\n5432\n/tmp\n*\n  5432001 0\nready   \n").expect("write");
        assert_eq!(super::postmaster_status(dir.path()).as_deref(), Some("ready"));
    }

    #[test]
    fn names_and_literals_are_quoted_with_their_quotes_doubled() {
        assert_eq!(super::quote_ident(r#"a "b""#), r#""a ""b""""#);
        assert_eq!(super::quote_literal("it's"), "'it''s'");
        assert_eq!(super::quote_literal(r"a\b"), r"'a\b'", "a backslash is an ordinary character");
    }

    /// Issue 41: a throwaway whose files are in the tmpfs fills it; whether it did is read in
    /// the log of this process's own servers there, never in another process's.
    #[test]
    fn a_full_disk_is_read_in_this_processs_own_servers_logs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let me = std::process::id();
        let full = "ERROR:  could not extend file \"base/16384/16390\": No space left on device\n";
        let other = tmp.path().join(format!("{}1-abcdef", super::DIR_PREFIX));
        std::fs::create_dir(&other).expect("dir");
        std::fs::write(other.join("server.log"), full).expect("log");
        assert!(!super::filled_in(tmp.path()), "another process's server");
        let mine = tmp.path().join(format!("{}{me}-ghijkl", super::DIR_PREFIX));
        std::fs::create_dir(&mine).expect("dir");
        std::fs::write(mine.join("server.log"), "LOG:  database system is ready to accept connections\n").expect("log");
        assert!(!super::filled_in(tmp.path()), "a log that says nothing of it");
        std::fs::write(mine.join("server.log"), format!("LOG:  ready\n{full}")).expect("log");
        assert!(super::filled_in(tmp.path()));
        assert!(!super::filled_in(&tmp.path().join("missing")));
    }

    /// Found as a flake: a directory another pgdrill had just made (before its `owner.pid`)
    /// was removed as stale, and that server's start failed with ENOENT.
    #[test]
    fn a_directory_being_made_is_not_reaped_but_a_dead_owners_is() {
        let tmp = tempfile::tempdir().expect("tmp");
        let me = std::process::id();
        let being_made = tmp.path().join(format!("{}{me}-abcdef", super::DIR_PREFIX));
        let no_owner_yet = tmp.path().join(format!("{}uCzAK6", super::DIR_PREFIX));
        // A pid far above pid_max: no such process.
        let dead = tmp.path().join(format!("{}999999999-abcdef", super::DIR_PREFIX));
        let dead_by_file = tmp.path().join(format!("{}{me}-ghijkl", super::DIR_PREFIX));
        for d in [&being_made, &no_owner_yet, &dead, &dead_by_file] {
            std::fs::create_dir(d).expect("dir");
        }
        std::fs::write(dead_by_file.join("owner.pid"), "999999999").expect("owner");
        super::reap_stale_in(tmp.path());
        assert!(being_made.is_dir(), "its owner is alive (the name says so)");
        assert!(no_owner_yet.is_dir(), "young, and no owner known yet");
        assert!(!dead.exists(), "its owner (by name) is gone");
        assert!(!dead_by_file.exists(), "owner.pid decides over the name");
    }

    /// Found as a flake (a test's S3 server vanished mid-test): a postmaster.pid left by a
    /// server killed with its pgdrill named a pid that the system had given to another
    /// process since, and the reaper of the next pgdrill sent that process SIGKILL.
    #[test]
    fn a_stale_postmaster_pid_that_names_another_process_never_kills_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join(format!("{}999999999-abcdef", super::DIR_PREFIX));
        std::fs::create_dir_all(dir.join("data")).expect("dir");
        let mut bystander = crate::child::spawn(crate::child::command("sleep").arg("60")).expect("sleep");
        std::fs::write(dir.join("data/postmaster.pid"), format!("{}\n{}\n", bystander.id(), dir.display()))
            .expect("pid file");
        assert_eq!(super::live_postmaster(&dir.join("data")), None, "sleep is not a server in that directory");
        super::reap_stale_in(tmp.path());
        assert!(!dir.exists(), "the dead owner's directory is removed");
        assert!(bystander.try_wait().expect("wait").is_none(), "the process the stale pid named was killed");
        let _ = bystander.kill();
        let _ = bystander.wait();
    }

    /// A process working in the data directory is its postmaster, and is found.
    #[test]
    fn a_process_working_in_the_data_directory_is_its_postmaster() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = tmp.path().join("data");
        std::fs::create_dir(&data).expect("dir");
        let mut server =
            crate::child::spawn(crate::child::command("sleep").arg("60").current_dir(&data)).expect("sleep");
        std::fs::write(data.join("postmaster.pid"), format!("{}\n", server.id())).expect("pid file");
        assert_eq!(super::live_postmaster(&data), Some(nix::unistd::Pid::from_raw(server.id() as i32)));
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(super::live_postmaster(&data), None, "gone once it has exited");
    }

    /// The teardown unlinks a data directory's files from several threads: every file and
    /// directory goes, however deep and however many, and a link inside is removed, never
    /// followed (what it points at outside the directory stays).
    #[test]
    fn the_parallel_removal_leaves_nothing_and_follows_no_link() {
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("dir");
        std::fs::write(outside.join("keep"), "kept").expect("write");
        let dir = tmp.path().join("server");
        for sub in ["data/base/16384", "data/global", "data/pg_wal/archive_status", "data/pg_tblspc"] {
            std::fs::create_dir_all(dir.join(sub)).expect("dirs");
        }
        for i in 0..50 {
            std::fs::write(dir.join(format!("data/base/16384/{i}")), vec![0u8; 1024 * (i % 7)]).expect("file");
        }
        std::fs::write(dir.join("data/global/pg_control"), "control").expect("file");
        std::os::unix::fs::symlink(&outside, dir.join("data/pg_tblspc/16500")).expect("link to a directory");
        std::os::unix::fs::symlink(outside.join("keep"), dir.join("data/link")).expect("link to a file");
        super::remove_dir_unlinking_in_parallel(&dir);
        assert!(!dir.exists(), "the directory is gone");
        assert_eq!(std::fs::read_to_string(outside.join("keep")).expect("kept"), "kept", "links are not followed");
        // An empty directory, and one that is not there, are no errors.
        std::fs::create_dir(&dir).expect("dir");
        super::remove_dir_unlinking_in_parallel(&dir);
        assert!(!dir.exists());
        super::remove_dir_unlinking_in_parallel(&dir);
    }

    #[test]
    fn majors_from_version_text() {
        assert_eq!(parse_major("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("nothing"), None);
    }
}
