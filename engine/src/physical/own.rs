//! pgdrill's own physical backups as a `PhysicalSource`: the base backups `backup.base`
//! wrote (`backup::base`) and the WAL archive `pgdrill wal push` fills (`wal`), in one store.
//!
//! The WAL comes back through `pgdrill wal fetch` as the throwaway server's
//! `restore_command`. That command reads its settings from a small file written into the
//! recovery's workspace beside the data directory (mode 0600, the key in a file of its own,
//! removed with the workspace), never from its argv. The server runs with a clean
//! environment, so an object store's credentials (AWS_*, AZURE_*, GOOGLE_* of pgdrill's
//! environment) go into a third 0600 file of that workspace that the config names, deleted
//! with it after recovery. Credentials kept in files the variables only point to (AWS_PROFILE,
//! GOOGLE_APPLICATION_CREDENTIALS) must be readable by the server's user.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;

use super::source::{
    ArchiveEnd, BaseBackup, Lsn, MaterializeInto, Materialized, PhysicalSource, Tool, DEFAULT_SEGMENT_SIZE,
};
use crate::archive::KeySource;
use crate::backup::base;
use crate::error::Failure;
use crate::storage::Store;

/// A store holding pgdrill's base backups and WAL archive.
pub struct OwnSource {
    store: Arc<dyn Store>,
    /// The location as `wal fetch` opens it (absolute for a local directory).
    location: String,
    secret: String,
    key: KeySource,
    system: Option<u64>,
    /// The pgdrill binary `restore_command` runs (default: this process's).
    exe: PathBuf,
    handle: tokio::runtime::Handle,
    /// The fetch settings written by `materialize`.
    fetch_config: Mutex<Option<PathBuf>>,
    /// Ends the base backup's pg_verifybackup (and the probes that find it) at once when the
    /// run is interrupted or the step times out: it reads every file of the backup.
    interrupt: super::tools::Interrupt,
}

impl OwnSource {
    /// `location` (relative paths taken from `base_dir`), the key or passphrase, and the
    /// system whose backups to use (needed when the store holds several). Call from within
    /// the runtime: the blocking trait's methods run their store calls on it. The store is
    /// opened among the run's `stores` (one view and one pinned version per object a run).
    pub fn new(
        location: &str,
        base_dir: &Path,
        secret: &str,
        system: Option<u64>,
        stores: &crate::storage::Opened,
    ) -> Result<OwnSource, Failure> {
        let store = stores.open_in(location, base_dir).map_err(Failure::invalid)?;
        let location = match crate::storage::local_dir_in(location, base_dir) {
            Some(p) => std::path::absolute(&p).unwrap_or(p).display().to_string(),
            None => location.trim().to_string(),
        };
        if secret.is_empty() {
            return Err(Failure::invalid("no key: pgdrill's WAL archive is always encrypted"));
        }
        let exe = std::env::current_exe()
            .map_err(|e| Failure::environment(format!("cannot find the pgdrill binary for restore_command: {e}")))?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Failure::environment("OwnSource::new must be called within the runtime"))?;
        Ok(OwnSource {
            store,
            location,
            secret: secret.to_string(),
            key: KeySource::from_secret(secret),
            system,
            exe,
            handle,
            fetch_config: Mutex::new(None),
            interrupt: Default::default(),
        })
    }

    /// The source, its tool calls run through `stop` (the interrupt its step watches).
    pub fn interrupted_by(self, stop: super::tools::Interrupt) -> OwnSource {
        OwnSource { interrupt: stop, ..self }
    }

    /// Another pgdrill binary for `restore_command` (a test runs the built binary).
    pub fn with_exe(mut self, exe: PathBuf) -> OwnSource {
        self.exe = exe;
        self
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    fn listed(&self) -> Result<Vec<base::ListedBase>, Failure> {
        let all = self.block_on(base::list(self.store.as_ref(), self.system))?;
        let mut systems: Vec<&str> = all.iter().map(|b| b.manifest.system_identifier.as_str()).collect();
        systems.sort_unstable();
        systems.dedup();
        if self.system.is_none() && systems.len() > 1 {
            return Err(Failure::invalid(format!(
                "{} holds base backups of several systems ({}): name the one to recover",
                self.store.url(),
                systems.join(", ")
            )));
        }
        Ok(all)
    }
}

fn as_base_backup(b: &base::ListedBase) -> BaseBackup {
    let m = &b.manifest;
    BaseBackup {
        id: b.key.clone(),
        started: Some(m.started_at),
        ended: Some(m.finished_at),
        start_lsn: Lsn::parse(&m.start_lsn),
        stop_lsn: Lsn::parse(&m.stop_lsn),
        system_identifier: m.system(),
        timeline: Some(m.timeline),
        pg_major: Some(m.server_major),
        size: Some(m.sizes.stored),
        has_manifest: true,
        wal_included: m.wal_method == "fetch",
    }
}

impl PhysicalSource for OwnSource {
    fn tool(&self) -> Tool {
        Tool { name: "pgdrill".into(), version: format!("pgdrill {}", env!("CARGO_PKG_VERSION")) }
    }

    fn describe(&self) -> String {
        format!("pgdrill base backups and WAL archive in {}", self.store.url())
    }

    fn list(&self) -> Result<Vec<BaseBackup>, Failure> {
        let mut out: Vec<BaseBackup> = self.listed()?.iter().map(as_base_backup).collect();
        out.sort_by_key(|b| b.ended.unwrap_or(OffsetDateTime::UNIX_EPOCH));
        Ok(out)
    }

    /// The manifest authenticated under the key, and the archive's chain from the backup's
    /// start through its end present (a backup without its own WAL cannot be made
    /// consistent without it).
    fn verify(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let (m, authenticated) =
            self.block_on(base::read_manifest(self.store.as_ref(), &backup.id, Some(&self.key)))?;
        if !authenticated {
            return Err(Failure::failed(format!(
                "{}: not encrypted, so its manifest is bound to nothing; pgdrill's point-in-time recovery takes authenticated base backups only",
                self.store.url_of(&backup.id)
            )));
        }
        let (Some(system), Some(start), Some(stop)) = (m.system(), backup.start_lsn, backup.stop_lsn) else {
            return Err(Failure::failed(format!("{}: its manifest lacks the system or LSNs", backup.id)));
        };
        let c = self.block_on(crate::wal::check::continuity(
            self.store.as_ref(),
            system,
            &self.key,
            m.wal_segment_size,
            (m.timeline, crate::wal::Lsn(start.0)),
            crate::wal::Lsn(stop.0),
            false,
        ))?;
        if !c.reaches_stop && m.wal_method != "fetch" {
            return Err(Failure::failed(format!(
                "the WAL archive does not hold the base backup's own WAL ({}..{}), and the backup does not either (wal: none): {}",
                m.start_lsn,
                m.stop_lsn,
                c.gaps.first().map(|g| g.describe()).unwrap_or_else(|| "nothing archived".into())
            )));
        }
        let gaps = if c.gaps.is_empty() {
            String::new()
        } else {
            format!("; {} gap(s), the first: {}", c.gaps.len(), c.gaps[0].describe())
        };
        Ok(Some(format!(
            "manifest authenticated; the archive holds {} segments from its start to {} (archived {}){gaps}",
            c.segments,
            c.end_lsn,
            c.end_time.as_deref().unwrap_or("?")
        )))
    }

    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure> {
        // pg_verifybackup through the interrupt: Ctrl-C or the step's timeout waited for it.
        let got = self.block_on(base::materialize_with(
            self.store.clone(),
            &backup.id,
            Some(&self.key),
            &into.data_dir,
            Some(&into.tablespaces_dir),
            &self.interrupt,
        ))?;
        // The fetch settings beside the data directory, inside the workspace the recovery
        // hands to the server's user and removes afterwards.
        let dir = into.data_dir.parent().unwrap_or(&into.data_dir).join("pgdrill-wal");
        let conf = crate::wal::write_private_config(&dir, &self.location, &self.secret)?;
        *self.fetch_config.lock().unwrap_or_else(|e| e.into_inner()) = Some(conf);
        Ok(Materialized { bytes: got.bytes, tablespaces: got.tablespaces })
    }

    fn restore_command(&self, backup: &BaseBackup) -> Result<Option<String>, Failure> {
        let conf = self.fetch_config.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or_else(|| {
            Failure::environment(
                "the restore_command of pgdrill's archive is known once the base backup is materialized",
            )
        })?;
        let system = backup
            .system_identifier
            .ok_or_else(|| Failure::failed(format!("{}: its manifest names no system", backup.id)))?;
        // `%` is PostgreSQL's escape in the command: a `%` of a path is written `%%`.
        let q = |s: &str| crate::util::shell_quote(s).replace('%', "%%");
        Ok(Some(format!(
            "{} wal fetch --config {} --system-identifier {system} %f %p",
            q(&self.exe.display().to_string()),
            q(&conf.display().to_string())
        )))
    }

    /// The pgdrill binary `restore_command` runs and a local archive's directory, for a
    /// throwaway in Docker (PostgreSQL 17 in its image: `wal_archive`'s test of it).
    fn paths(&self) -> Vec<PathBuf> {
        let mut out = vec![self.exe.clone()];
        if let Some(dir) = crate::storage::local_dir(&self.location) {
            out.push(dir);
        }
        out
    }

    /// The stored archive by its URL and its sha256, from its manifest once authenticated
    /// under the key (an unauthenticated manifest's sha256 proves nothing).
    fn digest(&self, backup: &BaseBackup) -> Result<Option<(String, String)>, Failure> {
        let (m, authenticated) =
            self.block_on(base::read_manifest(self.store.as_ref(), &backup.id, Some(&self.key)))?;
        Ok(authenticated.then(|| (self.store.url_of(&backup.id), m.stored.sha256)))
    }

    /// The segment's sha256 from its authenticated preamble: the object is read and unsealed
    /// as `wal fetch` does, so a segment changed since it was pushed is an error, never a
    /// digest.
    fn wal_sha256(&self, backup: &BaseBackup, segment: &str) -> Result<Option<String>, Failure> {
        let Some(system) = backup.system_identifier.or(self.system) else { return Ok(None) };
        let key = crate::wal::wal_key(system, segment);
        if self.block_on(self.store.head(&key)).map_err(Failure::environment)?.is_none() {
            return Ok(None);
        }
        let object = self.block_on(self.store.read(&key)).map_err(Failure::environment)?;
        let (pre, _) = crate::wal::unseal(segment, &object, &self.key)?;
        Ok(Some(pre.sha256))
    }

    /// The schema the manifest recorded when the backup ended, read through the key (the
    /// MAC binds it), for the database it was taken in only.
    fn schema_at_end(
        &self,
        backup: &BaseBackup,
        database: &str,
    ) -> Result<Option<crate::pg::fingerprint::Fingerprint>, Failure> {
        let (m, authenticated) =
            self.block_on(base::read_manifest(self.store.as_ref(), &backup.id, Some(&self.key)))?;
        Ok(m.database_schema.filter(|s| authenticated && s.database == database).map(|s| {
            crate::pg::fingerprint::Fingerprint {
                mode: crate::pg::fingerprint::Mode::Counts,
                schema_hash: s.schema_hash,
                schema: s.schema,
                tables: Default::default(),
            }
        }))
    }

    fn interrupt(&self) -> Option<super::tools::Interrupt> {
        Some(self.interrupt.clone())
    }

    fn archive_end(&self, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        // One listing of the base backups gives both the system and the segment size.
        let listed = self.listed();
        let Some(system) = self.system.or_else(|| listed.as_ref().ok()?.first()?.manifest.system()) else {
            return Ok(None);
        };
        let seg = listed?.first().map(|b| b.manifest.wal_segment_size).unwrap_or(DEFAULT_SEGMENT_SIZE);
        let inv = self.block_on(crate::wal::check::inventory(self.store.as_ref(), system, seg))?;
        let newest = inv.segments.iter().filter(|((t, _), _)| *t >= timeline).max_by_key(|((t, s), _)| (*t, *s));
        Ok(newest.map(|((t, s), m)| ArchiveEnd {
            segment: crate::wal::segment_name(*t, *s, seg),
            segment_start: Lsn(s * seg),
            archived: Some(OffsetDateTime::from(m.modified)),
        }))
    }
}

#[cfg(test)]
mod tests {
    /// The command lines of running processes (not zombies) that hold every one of `parts`.
    fn running_with(parts: &[&str]) -> Vec<String> {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                stat.rsplit(')').next().and_then(|r| r.trim_start().chars().next()).is_some_and(|c| c != 'Z')
            })
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
            .filter(|c| parts.iter().all(|p| c.contains(p)))
            .collect()
    }

    /// Regression (issue 39): pgdrill's own base backups' pg_verifybackup (run by
    /// `backup::base::materialize` on the extracted backup, whose every file it reads:
    /// minutes on a large one) ran outside the interrupt, so Ctrl-C and the step's timeout
    /// waited for it. Here an extracted backup whose `backup_manifest` is a FIFO nobody
    /// writes holds it (pg_verifybackup opens the manifest first, without a timing). The
    /// source's interrupt, which Ctrl-C and the step's timeout fire, ends it at once: the
    /// environment's failure saying so (never pg_verifybackup's verdict, never "not run"),
    /// and no pg_verifybackup left.
    #[test]
    fn own_base_backups_pg_verifybackup_is_ended_by_the_interrupt() {
        if crate::pg::native::find_tool("pg_verifybackup", None, 13).is_err() {
            assert!(std::env::var_os("CI").is_none(), "no pg_verifybackup (the PostgreSQL client tools)");
            eprintln!("skipped: no pg_verifybackup");
            return;
        }
        let dir = tempfile::tempdir().expect("a folder");
        let dest = dir.path().join("held-base-backup");
        std::fs::create_dir(&dest).expect("the data directory");
        let manifest = dest.join("backup_manifest");
        nix::unistd::mkfifo(&manifest, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        let interrupt = super::super::tools::Interrupt::default();
        let (tx, call) = std::sync::mpsc::channel();
        {
            let (interrupt, dest) = (interrupt.clone(), dest.clone());
            std::thread::spawn(move || tx.send(crate::backup::base::verify_files(&dest, 13, false, &interrupt)));
        }
        let shown = dest.display().to_string();
        let held = [shown.as_str(), "pg_verifybackup"];
        // Bounds for a broken build only, never a measure of speed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while running_with(&held).is_empty() {
            assert!(std::time::Instant::now() < deadline, "pg_verifybackup never ran on {shown}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        interrupt.interrupt();
        let got = call.recv_timeout(std::time::Duration::from_secs(60)).expect("pg_verifybackup's call returned");
        let e = got.expect_err("an interrupted pg_verifybackup is no verdict and no `not run`");
        assert_eq!(e.class, crate::error::Class::Environment, "{e}");
        assert_eq!(e.to_string(), "pg_verifybackup was stopped: the run was interrupted");
        while !running_with(&held).is_empty() {
            assert!(std::time::Instant::now() < deadline, "pg_verifybackup outlived the interrupt");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
