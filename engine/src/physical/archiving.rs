//! A throwaway source cluster that archives its WAL: what a PITR drill (and its tests)
//! recover from. Native binaries, or, for a major this machine has none of (PostgreSQL 17
//! beside 15), that major's Docker image run on the same folders (see `Runner`); initdb into
//! a temp directory with the native servers' prefix (reaped after a crash), `wal_level=replica`, `archive_mode=on`, a short
//! `archive_timeout`, and an `archive_command` that copies each segment into a folder
//! (written under a temporary name, then renamed: a reader never sees half a segment; an
//! existing segment is never overwritten), pgdrill's own archive (`pgdrill wal push`, its
//! settings and key in 0600 files of the server's folder, never its argv), or a command of
//! the caller's. Dropped, it is stopped and its files removed; the archive is the caller's
//! and stays.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::error::Failure;
use crate::pg::native::{self, RunAs};

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct ArchivingOptions {
    /// The folder segments are copied into (created if missing). Ignored when
    /// `archive_command` is given.
    pub archive_dir: Option<PathBuf>,
    /// An `archive_command` of the caller's instead of the copy into `archive_dir`.
    pub archive_command: Option<String>,
    /// pgdrill's own WAL archive (`pgdrill wal push`) instead of the copy into `archive_dir`;
    /// an `archive_command` still wins.
    pub wal_archive: Option<WalArchive>,
    /// `archive_timeout` (default 1s: a segment at least every second under load, so the
    /// archive is never far behind the data).
    pub archive_timeout: Option<Duration>,
    /// PostgreSQL major (default: the newest installed).
    pub major: Option<u32>,
    pub bin_dir: Option<PathBuf>,
    /// Database created besides `postgres`.
    pub database: Option<String>,
}

/// pgdrill's WAL archive as a source pushes into it: what a drill proves is then the archive
/// teams run (`archive_command = pgdrill wal push`), not a copy standing in for it.
#[derive(Clone, Default)]
pub struct WalArchive {
    /// A folder (absolute: the server runs in its data directory) or an object store's URL.
    pub location: String,
    /// The key or passphrase the archive is sealed with; written to a 0600 file the config
    /// names, never an argument.
    pub secret: String,
    /// The pgdrill binary `archive_command` runs (default: this process's).
    pub exe: Option<PathBuf>,
}

impl std::fmt::Debug for WalArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalArchive").field("location", &self.location).field("exe", &self.exe).finish_non_exhaustive()
    }
}

/// The pgdrill binary `archive_command` runs.
fn pgdrill_exe(w: &WalArchive) -> Result<PathBuf, Failure> {
    match &w.exe {
        Some(e) => Ok(e.clone()),
        None => std::env::current_exe()
            .map_err(|e| Failure::environment(format!("cannot find the pgdrill binary for archive_command: {e}"))),
    }
}

/// Write `push`'s settings into `conf_dir` (handed to the server's user) and the
/// `archive_command` that reads them.
fn push_command(w: &WalArchive, conf_dir: &Path, run_as: &RunAs) -> Result<String, Failure> {
    let exe = pgdrill_exe(w)?;
    let conf = crate::wal::write_private_config(conf_dir, &w.location, &w.secret)?;
    run_as.own_tree(conf_dir)?;
    // `%` is PostgreSQL's escape in the command: a `%` of a path is written `%%`.
    let q = |p: &Path| crate::util::shell_quote(&p.display().to_string()).replace('%', "%%");
    Ok(format!("{} wal push --config {} %p", q(&exe), q(&conf)))
}

/// A local archive: the system's own folders (`.cluster/<system>/wal/`) made now and handed
/// to the server's user, who pushes into them; a base backup written beside them by pgdrill
/// first would otherwise leave `.cluster/<system>/` to a user the server is not. Folders
/// above it stay whoever's they are (they only need to be passable).
fn hand_over_wal_tree(location: &Path, system: u64, run_as: &RunAs) -> Result<(), Failure> {
    let wal = location.join(crate::wal::wal_prefix(system));
    fs::create_dir_all(&wal).map_err(|e| Failure::environment(format!("creating {}: {e}", wal.display())))?;
    if let Some(own) = wal.parent() {
        run_as.own(own)?;
    }
    run_as.own(&wal)?;
    Ok(())
}

/// Where the source's server binaries come from.
#[derive(Debug, Clone)]
enum Runner {
    /// The local binaries of the major.
    Native(PathBuf),
    /// That major's Docker image, when this machine has no binaries of it: initdb and
    /// postgres from the image, as the user the native server would run as, on the folders
    /// of a native source mounted at the same paths, so everything else (the data directory,
    /// the log, `wal push`'s config, a local archive) is the same for both.
    Docker(String),
}

/// The local binaries of `major`, else an image of it Docker has here (a `bin_dir` given,
/// or no major asked for, is never replaced by an image).
fn choose_runner(bin_dir: Option<&Path>, major: u32, asked: bool) -> Result<Runner, Failure> {
    match native::find_bin_dir(bin_dir, Some(major)) {
        Ok(b) => Ok(Runner::Native(b)),
        Err(e) if bin_dir.is_some() || !asked => Err(e),
        Err(e) => match super::recover::docker_image_for(major) {
            Some(image) => Ok(Runner::Docker(image)),
            None => Err(e.context(format!(
                "starting a PostgreSQL {major} source (and Docker has no image of {major} here: `bash ci/setup.sh` builds one)"
            ))),
        },
    }
}

/// `docker run` of the image's `tool` (initdb, postgres) as `run_as`'s user, with `dir`
/// mounted read-write and `ro` read-only at the same paths, labelled as pgdrill's so the
/// container of a pgdrill killed with -9 is removed by the next one. postgres runs on the
/// host's network: it listens on 127.0.0.1 as a native source does, and `wal push` inside
/// it reaches the object store this machine reaches.
fn docker_command(
    image: &str,
    tool: &str,
    major: u32,
    name: &str,
    rw: &[PathBuf],
    ro: &[PathBuf],
    run_as: &RunAs,
) -> std::process::Command {
    let (uid, gid) = match run_as {
        RunAs::User { uid, gid, .. } => (*uid, *gid),
        RunAs::Me => (run_as.uid(), nix::unistd::getegid().as_raw()),
    };
    let owner = format!("{}:{}", crate::util::hostname().unwrap_or_default(), std::process::id());
    let network = if tool == "postgres" { "host" } else { "none" };
    let mut d = crate::pg::image_tools::docker();
    d.args(["run", "--rm", "--name", name, "--network", network, "--user", &format!("{uid}:{gid}")])
        .args(["--label", &format!("{}=1", crate::pg::docker::LABEL)])
        .args(["--label", &format!("{}={owner}", crate::pg::docker::OWNER_LABEL)]);
    for m in rw {
        d.arg("--volume").arg(format!("{}:{}", m.display(), m.display()));
    }
    for m in ro {
        d.arg("--volume").arg(format!("{}:{}:ro", m.display(), m.display()));
    }
    d.args(["--entrypoint", &format!("/usr/lib/postgresql/{major}/bin/{tool}"), image]);
    d
}

/// A running archiving server.
#[derive(Debug)]
pub struct ArchivingServer {
    child: Option<Child>,
    /// The container's name when the server runs in Docker (the child is its docker CLI,
    /// whose end does not stop the container).
    container: Option<String>,
    /// The image it runs in, when in Docker.
    pub image: Option<String>,
    dir: PathBuf,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub major: u32,
    /// The server's binaries (inside its image when it runs in Docker).
    pub bin_dir: PathBuf,
    /// The `archive_command` in force.
    pub archive_command: String,
}

/// `archive_command` that copies `%p` into `dir` as `%f`: never over an existing file (the
/// copy fails and PostgreSQL retries, so a conflict is seen, not hidden), through a
/// temporary name renamed at the end.
pub fn copy_archive_command(dir: &Path) -> String {
    // PostgreSQL expands `%` sequences first: a `%` of the path is written `%%`. Then the
    // shell reads the path as one quoted word.
    let d = crate::util::shell_quote(&dir.display().to_string()).replace('%', "%%");
    format!("test ! -f {d}/%f && cp %p {d}/%f.part && mv {d}/%f.part {d}/%f")
}

impl ArchivingServer {
    /// initdb and start.
    pub async fn start(opts: ArchivingOptions) -> Result<ArchivingServer, Failure> {
        native::reap_stale();
        let major = match opts.major {
            Some(m) => m,
            None => *native::installed_majors()
                .last()
                .ok_or_else(|| Failure::environment("no PostgreSQL server binaries under /usr/lib/postgresql"))?,
        };
        let runner = choose_runner(opts.bin_dir.as_deref(), major, opts.major.is_some())?;
        let bin_dir = match &runner {
            Runner::Native(b) => b.clone(),
            Runner::Docker(_) => PathBuf::from(format!("/usr/lib/postgresql/{major}/bin")),
        };
        let run_as = RunAs::detect()?;
        if let Runner::Docker(_) = runner {
            // A source container outlives a pgdrill killed with -9: remove those whose
            // owner is gone before starting another.
            if let Ok(engine) = crate::pg::docker::engine().await {
                crate::pg::docker::reap_stale(&engine).await;
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("{}{}-", native::DIR_PREFIX, std::process::id()))
            .tempdir()
            .map_err(|e| Failure::environment(format!("cannot create a temp directory: {e}")))?
            .keep();
        let archive_command = match (&opts.archive_command, &opts.wal_archive, &opts.archive_dir) {
            (Some(c), _, _) => c.clone(),
            (None, Some(w), _) => match push_command(w, &dir.join("wal-archive"), &run_as) {
                Ok(c) => c,
                Err(e) => {
                    // Nothing owns the folder yet: the key file in it goes now.
                    let _ = fs::remove_dir_all(&dir);
                    return Err(e);
                }
            },
            (None, None, Some(d)) => {
                fs::create_dir_all(d).map_err(|e| Failure::environment(format!("creating {}: {e}", d.display())))?;
                // The server (as `nobody` when pgdrill is root) writes there.
                run_as.own(d)?;
                copy_archive_command(d)
            }
            (None, None, None) => {
                return Err(Failure::invalid(
                    "an archiving server needs an archive folder, pgdrill's WAL archive or a command",
                ))
            }
        };
        // What a server in Docker must see besides its folder: the archive folder it copies
        // into, or pgdrill's binary and a local WAL archive it pushes into.
        let (mut rw, mut ro) = (vec![dir.clone()], Vec::new());
        if let (None, Some(d)) = (&opts.archive_command, &opts.archive_dir) {
            rw.push(d.clone());
        }
        if let (None, Some(w)) = (&opts.archive_command, &opts.wal_archive) {
            ro.push(pgdrill_exe(w)?);
            if let Some(local) = crate::storage::local_dir_in(&w.location, Path::new("/")) {
                fs::create_dir_all(&local)
                    .map_err(|e| Failure::environment(format!("creating {}: {e}", local.display())))?;
                rw.push(local);
            }
        }
        let image = match &runner {
            Runner::Docker(i) => Some(i.clone()),
            Runner::Native(_) => None,
        };
        let name =
            format!("pgdrill-source-{}-{}", std::process::id(), native::generate_password().get(..8).unwrap_or("0"));
        let tool = |t: &str, suffix: &str| match &image {
            Some(i) => docker_command(i, t, major, &format!("{name}{suffix}"), &rw, &ro, &run_as),
            None => run_as.command(&bin_dir.join(t)),
        };
        let mut server = ArchivingServer {
            child: None,
            container: None,
            image: image.clone(),
            dir: dir.clone(),
            port: 0,
            user: "postgres".into(),
            password: native::generate_password(),
            database: opts.database.clone().unwrap_or_else(|| "postgres".into()),
            major,
            bin_dir: bin_dir.clone(),
            archive_command: archive_command.clone(),
        };
        let io = |what: &Path, e: std::io::Error| Failure::environment(format!("writing {}: {e}", what.display()));
        fs::write(dir.join("owner.pid"), std::process::id().to_string()).map_err(|e| io(&dir, e))?;
        run_as.own(&dir)?;
        let pwfile = dir.join("pwfile");
        fs::write(&pwfile, &server.password).map_err(|e| io(&pwfile, e))?;
        run_as.own(&pwfile)?;
        let data = dir.join("data");
        let mut initdb = tool("initdb", "-initdb");
        initdb
            .arg("-D")
            .arg(&data)
            .arg("-U")
            .arg(&server.user)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args(["-A", "scram-sha-256", "-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"])
            .stdin(Stdio::null());
        let out = tokio::task::block_in_place(|| crate::child::output(&mut initdb))
            .map_err(|e| Failure::environment(format!("cannot run initdb: {e}")))?;
        let _ = fs::remove_file(&pwfile);
        if !out.status.success() {
            return Err(Failure::environment(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        if let Some(w) = opts.wal_archive.as_ref().filter(|_| opts.archive_command.is_none()) {
            if let Some(local) = crate::storage::local_dir_in(&w.location, Path::new("/")) {
                hand_over_wal_tree(&local, crate::wal::system_of_data_dir(&data)?, &run_as)?;
            }
        }
        // pg_basebackup connects for replication over TCP.
        let hba = data.join("pg_hba.conf");
        let mut text = fs::read_to_string(&hba).unwrap_or_default();
        text.push_str("\nhost replication all 127.0.0.1/32 scram-sha-256\n");
        fs::write(&hba, text).map_err(|e| io(&hba, e))?;
        let sock = dir.join("sock");
        fs::create_dir(&sock).map_err(|e| io(&sock, e))?;
        run_as.own(&sock)?;
        let timeout = opts.archive_timeout.unwrap_or(Duration::from_secs(1));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| Failure::environment(format!("no free port on 127.0.0.1: {e}")))?;
            l.local_addr().map_err(|e| Failure::environment(format!("no free port: {e}")))?.port()
        };
        server.port = port;
        let log = fs::File::create(dir.join("server.log")).map_err(|e| io(&dir, e))?;
        run_as.own(&dir.join("server.log"))?;
        let settings: Vec<(&str, String)> = vec![
            ("listen_addresses", "127.0.0.1".into()),
            ("unix_socket_directories", sock.display().to_string()),
            ("wal_level", "replica".into()),
            ("archive_mode", "on".into()),
            ("archive_command", archive_command),
            ("archive_timeout", format!("{}s", timeout.as_secs().max(1))),
            ("max_wal_senders", "4".into()),
            ("fsync", "off".into()),
            ("lc_messages", "C".into()),
            ("timezone", "UTC".into()),
            ("log_timezone", "UTC".into()),
        ];
        let mut cmd = tool("postgres", "");
        cmd.arg("-D").arg(&data).arg("-p").arg(port.to_string());
        for (k, v) in settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::from(log));
        server.child = Some(
            crate::child::spawn(&mut cmd).map_err(|e| Failure::environment(format!("cannot start postgres: {e}")))?,
        );
        if image.is_some() {
            server.container = Some(name);
        }
        let started = Instant::now();
        loop {
            if let Some(Ok(Some(status))) = server.child.as_mut().map(Child::try_wait) {
                server.child = None;
                return Err(Failure::environment(format!(
                    "the archiving server exited ({status}): {}",
                    fs::read_to_string(dir.join("server.log")).unwrap_or_default().trim()
                )));
            }
            if crate::pg::connect(&server.url_for("postgres")).await.is_ok() {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err(Failure::environment("the archiving server did not accept connections within 60s"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if server.database != "postgres" {
            let c = crate::pg::connect(&server.url_for("postgres")).await?;
            c.batch_execute(&format!("create database {}", native::quote_ident(&server.database)))
                .await
                .map_err(|e| Failure::environment(format!("creating the database: {}", crate::pg::describe(&e))))?;
        }
        Ok(server)
    }

    pub fn url(&self) -> String {
        self.url_for(&self.database)
    }

    pub fn url_for(&self, database: &str) -> String {
        crate::pg::server_url(&self.user, &self.password, "127.0.0.1", self.port, database)
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The server's log.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Stop the server and remove its files.
    pub fn stop(mut self) {
        self.teardown();
    }

    fn teardown(&mut self) {
        super::recover::stop_child(&mut self.child);
        if let Some(name) = self.container.take() {
            crate::pg::image_tools::remove(&name);
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
            self.dir = PathBuf::new();
        }
    }
}

impl Drop for ArchivingServer {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// The ground truth of a PITR drill: the source's schema fingerprint and per-table row
/// counts at one instant, and that instant as a recovery target (a time, a restore point,
/// a WAL location). Taken while every user table is locked against writes (`SHARE`), so no
/// commit that changes a table can fall between the snapshot the fingerprint reads and the
/// target: a writer that committed before the lock is in the snapshot and before the
/// target; one that waits for the lock commits after the target. Recovery to `time`
/// (exclusive) or to `restore_point` therefore brings back exactly what `fingerprint` holds.
/// DDL is not blocked: a drill's source must not create tables while it is marked.
#[derive(Debug, Clone)]
pub struct Mark {
    /// `clock_timestamp()` inside the locked window, as PostgreSQL writes it.
    pub time: String,
    pub epoch: f64,
    /// `pg_current_wal_insert_lsn()` inside the window.
    pub lsn: String,
    /// The restore point created inside the window, if one was asked for.
    pub restore_point: Option<String>,
    pub fingerprint: crate::pg::fingerprint::Fingerprint,
    /// Unlogged tables: recovery brings them back empty, so they are left out of the
    /// fingerprint's tables.
    pub unlogged: Vec<String>,
}

/// Mark the database `url` names (see `Mark`). `restore_point`: also create one, named so,
/// inside the window (superuser or `pg_create_restore_point` granted).
pub async fn mark(url: &str, restore_point: Option<&str>, mode: crate::pg::fingerprint::Mode) -> Result<Mark, Failure> {
    use crate::pg::fingerprint;
    let pg = |what: &str, e: tokio_postgres::Error| {
        Failure::environment(format!("marking the source ({what}): {}", crate::pg::describe(&e)))
    };
    let c = crate::pg::connect(url).await?;
    let user_tables = "from pg_class c join pg_namespace n on n.oid = c.relnamespace where c.relkind = 'r' \
         and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%' \
         and n.nspname not like 'pg_temp%'";
    // Listed before the transaction: a query inside it would fix its snapshot before the lock.
    let tables: Vec<String> = c
        .query(format!("select format('%I.%I', n.nspname, c.relname) {user_tables} order by 1").as_str(), &[])
        .await
        .map_err(|e| pg("listing tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute("begin isolation level repeatable read; set local lock_timeout = '60s'")
        .await
        .map_err(|e| pg("begin", e))?;
    if !tables.is_empty() {
        // LOCK fixes no snapshot: the first query after it does, so the snapshot holds every
        // commit made before the lock was granted and none made after.
        c.batch_execute(&format!("lock table {} in share mode", tables.join(", ")))
            .await
            .map_err(|e| pg("locking the tables against writes", e))?;
    }
    let (schema_hash, schema) = fingerprint::compute_schema(&c).await.map_err(|e| pg("schema", e))?;
    let content = fingerprint::Content::for_server(&c).await.map_err(|e| pg("server", e))?;
    let mut counted = fingerprint::compute_tables(&c, mode, content).await.map_err(|e| pg("tables", e))?;
    let unlogged: Vec<String> = c
        .query(
            format!("select format('%I.%I', n.nspname, c.relname) {user_tables} and c.relpersistence = 'u' order by 1")
                .as_str(),
            &[],
        )
        .await
        .map_err(|e| pg("unlogged tables", e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for t in &unlogged {
        counted.remove(t);
    }
    if let Some(new) = counted.keys().find(|t| !tables.contains(t)) {
        return Err(Failure::environment(format!(
            "table {new} was created while the source was being marked: mark it again when no DDL runs"
        )));
    }
    let row = c
        .query_one(
            "select clock_timestamp()::text, extract(epoch from clock_timestamp())::float8, \
             pg_current_wal_insert_lsn()::text",
            &[],
        )
        .await
        .map_err(|e| pg("time", e))?;
    let (time, epoch, mut lsn): (String, f64, String) = (row.get(0), row.get(1), row.get(2));
    if let Some(name) = restore_point {
        let r = c
            .query_one("select pg_create_restore_point($1)::text", &[&name])
            .await
            .map_err(|e| pg("pg_create_restore_point", e))?;
        lsn = r.get(0);
    }
    c.batch_execute("commit").await.map_err(|e| pg("commit", e))?;
    Ok(Mark {
        time,
        epoch,
        lsn,
        restore_point: restore_point.map(str::to_string),
        fingerprint: fingerprint::Fingerprint { mode, schema_hash, schema, tables: counted },
        unlogged,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_copy_command_quotes_the_folder_and_doubles_its_percent_signs() {
        let c = super::copy_archive_command(std::path::Path::new("/tmp/a b%c"));
        assert_eq!(
            c,
            "test ! -f '/tmp/a b%%c'/%f && cp %p '/tmp/a b%%c'/%f.part && mv '/tmp/a b%%c'/%f.part '/tmp/a b%%c'/%f"
        );
    }
}
