//! pg_basebackup output as a physical source: a folder holding one backup, or a folder of
//! backups (one sub-folder each), in tar format (`base.tar`, `base.tar.gz`, `<oid>.tar`
//! per tablespace, `pg_wal.tar` with `-X stream`) or plain, with or without a
//! `backup_manifest`, its WAL included (`-X fetch|stream`) or in a separate archive folder
//! of plain or gzip'd segments (what an `archive_command` of `cp` or `gzip` writes).
//!
//! Nothing here is reimplemented from PostgreSQL beyond reading the text files pg_basebackup
//! writes (`backup_label`, the backup history file, `backup_manifest`) and the first field of
//! `global/pg_control` (the system identifier): the files are checked by `pg_verifybackup`
//! and the WAL replayed by the server.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::source::{
    parse_segment_name, ArchiveEnd, BaseBackup, Lsn, MaterializeInto, Materialized, PhysicalSource, Tool,
    DEFAULT_SEGMENT_SIZE,
};
use crate::error::Failure;

/// A folder of pg_basebackup output, and where its WAL archive is (if apart).
#[derive(Debug, Clone)]
pub struct BasebackupFolder {
    root: PathBuf,
    wal_dir: Option<PathBuf>,
    /// Ends the running pg_verifybackup (and the version probes before it) when the run is
    /// interrupted or the step times out: on a large backup it reads every file for minutes.
    interrupt: super::tools::Interrupt,
}

/// The two layouts pg_basebackup writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Plain,
    /// `base.tar` or `base.tar.gz`.
    Tar {
        gz: bool,
    },
}

fn format_of(dir: &Path) -> Option<Format> {
    if dir.join("base.tar").is_file() {
        Some(Format::Tar { gz: false })
    } else if dir.join("base.tar.gz").is_file() {
        Some(Format::Tar { gz: true })
    } else if dir.join("PG_VERSION").is_file() {
        Some(Format::Plain)
    } else {
        None
    }
}

fn io_err(what: &Path, e: std::io::Error) -> Failure {
    Failure::environment(format!("{}: {e}", what.display()))
}

/// The fields of a `backup_label` or a backup history file (`KEY: value` lines).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Label {
    pub start_lsn: Option<Lsn>,
    pub stop_lsn: Option<Lsn>,
    pub start_time: Option<OffsetDateTime>,
    pub stop_time: Option<OffsetDateTime>,
    pub timeline: Option<u32>,
    /// The segment holding the start (the history file's name starts with it).
    pub start_segment: Option<String>,
}

/// `2026-12-06 07:00:00 UTC` (the zone PostgreSQL's log_timezone wrote; UTC and numeric
/// offsets are read, a named zone is not).
fn label_time(text: &str) -> Option<OffsetDateTime> {
    let t = text.trim();
    let t = t.strip_suffix(" UTC").or_else(|| t.strip_suffix(" GMT")).map(|s| format!("{s}+00"));
    super::recover::parse_pg_time(t.as_deref().unwrap_or(text))
}

/// Read a `backup_label` or backup history file.
pub fn parse_label(text: &str) -> Label {
    let mut l = Label::default();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(": ") else { continue };
        let first = v.split_whitespace().next().unwrap_or_default();
        match k {
            "START WAL LOCATION" => {
                l.start_lsn = Lsn::parse(first);
                l.start_segment = v.split("(file ").nth(1).map(|s| s.trim_end_matches(')').to_string());
            }
            "STOP WAL LOCATION" => l.stop_lsn = Lsn::parse(first),
            "START TIME" => l.start_time = label_time(v),
            "STOP TIME" => l.stop_time = label_time(v),
            "START TIMELINE" => l.timeline = first.parse().ok(),
            _ => {}
        }
    }
    l
}

/// From a `backup_manifest`: the WAL range (timeline, start, end) and, PostgreSQL 17+, the
/// system identifier.
fn manifest_facts(text: &str) -> (Option<(u32, Lsn, Lsn)>, Option<u64>) {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else { return (None, None) };
    let range = v["WAL-Ranges"].as_array().and_then(|a| a.last()).and_then(|r| {
        Some((
            r["Timeline"].as_u64()? as u32,
            Lsn::parse(r["Start-LSN"].as_str()?)?,
            Lsn::parse(r["End-LSN"].as_str()?)?,
        ))
    });
    (range, v["System-Identifier"].as_u64())
}

/// The system identifier: the first 8 bytes of `global/pg_control` (little-endian here).
fn system_identifier(pg_control: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(pg_control.get(..8)?.try_into().ok()?))
}

/// A tar, gzip'd or not. pg_basebackup writes `pg_wal.tar.gz` as several gzip members one
/// after the other: a reader of the first member only saw an empty pg_wal.
fn open_tar(path: &Path, gz: bool) -> Result<tar::Archive<Box<dyn Read>>, Failure> {
    let f = fs::File::open(path).map_err(|e| io_err(path, e))?;
    let r: Box<dyn Read> =
        if gz { Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f))) } else { Box::new(f) };
    Ok(tar::Archive::new(r))
}

/// A reader that counts the bytes read through it.
struct Counted<R> {
    inner: R,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// `open_tar`, counting into `read` the tar's bytes read (after decompression).
fn open_tar_counted(
    path: &Path,
    gz: bool,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
) -> Result<tar::Archive<Counted<Box<dyn Read>>>, Failure> {
    let inner = open_tar(path, gz)?.into_inner();
    Ok(tar::Archive::new(Counted { inner, read }))
}

/// Files of a base tar by name, read without extracting: `backup_label`, `PG_VERSION`,
/// `global/pg_control`.
fn tar_files(path: &Path, gz: bool, want: &[&str]) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let mut a = open_tar(path, gz)?;
    let mut out = Vec::new();
    let bad = |e: std::io::Error| Failure::failed(format!("{} is not a readable tar: {e}", path.display()));
    for entry in a.entries().map_err(bad)? {
        let mut e = entry.map_err(bad)?;
        let name = e.path().map_err(bad)?.to_string_lossy().trim_start_matches("./").to_string();
        if want.contains(&name.as_str()) {
            let mut buf = Vec::new();
            e.read_to_end(&mut buf).map_err(bad)?;
            out.push((name, buf));
            if out.len() == want.len() {
                break;
            }
        }
    }
    Ok(out)
}

fn tree_size(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else { return 0 };
    if m.is_dir() {
        fs::read_dir(p).into_iter().flatten().flatten().map(|e| tree_size(&e.path())).sum()
    } else {
        m.len()
    }
}

/// A segment file in the archive folder: plain or gzip'd.
/// The sha256 (hex) of what `r` reads from `path`.
fn sha256_of(r: &mut dyn Read, path: &Path) -> Result<String, Failure> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    std::io::copy(r, &mut h).map_err(|e| io_err(path, e))?;
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn archived(dir: &Path, segment: &str) -> Option<PathBuf> {
    [dir.join(segment), dir.join(format!("{segment}.gz"))].into_iter().find(|p| p.is_file())
}

impl BasebackupFolder {
    /// `root`: one backup's folder, or a folder of them; `wal_dir`: the WAL archive folder,
    /// if the WAL is kept apart.
    pub fn new(root: PathBuf, wal_dir: Option<PathBuf>) -> Result<BasebackupFolder, Failure> {
        if !root.is_dir() {
            return Err(Failure::invalid(format!("{} is not a folder of pg_basebackup output", root.display())));
        }
        if let Some(w) = &wal_dir {
            if !w.is_dir() {
                return Err(Failure::invalid(format!("the WAL archive folder {} does not exist", w.display())));
            }
        }
        Ok(BasebackupFolder { root, wal_dir, interrupt: Default::default() })
    }

    /// The folder, its calls run through `stop` (the interrupt its step watches).
    pub fn interrupted_by(self, stop: super::tools::Interrupt) -> BasebackupFolder {
        BasebackupFolder { interrupt: stop, ..self }
    }

    fn backup_dirs(&self) -> Vec<PathBuf> {
        if format_of(&self.root).is_some() {
            return vec![self.root.clone()];
        }
        let mut v: Vec<PathBuf> = fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir() && format_of(p).is_some())
            .collect();
        v.sort();
        v
    }

    fn dir_of(&self, b: &BaseBackup) -> Result<PathBuf, Failure> {
        self.backup_dirs()
            .into_iter()
            .find(|d| d.file_name().is_some_and(|n| n.to_string_lossy() == b.id))
            .ok_or_else(|| Failure::invalid(format!("no backup `{}` in {}", b.id, self.root.display())))
    }

    /// The backup history file (`<segment>.<offset>.backup`) the archive holds for a backup
    /// that started in `start_segment`: it has the stop LSN and time.
    fn history_label(&self, start: &Label) -> Option<Label> {
        let (dir, seg, lsn) = (self.wal_dir.as_ref()?, start.start_segment.as_ref()?, start.start_lsn?);
        let offset = lsn.0 % DEFAULT_SEGMENT_SIZE;
        let name = format!("{seg}.{offset:08X}.backup");
        let text = fs::read_to_string(archived(dir, &name)?).ok()?;
        Some(parse_label(&text))
    }

    fn read_backup(&self, dir: &Path) -> Result<BaseBackup, Failure> {
        let format =
            format_of(dir).ok_or_else(|| Failure::invalid(format!("{} holds no base backup", dir.display())))?;
        let (label, version, control) = match format {
            Format::Plain => (
                fs::read_to_string(dir.join("backup_label")).unwrap_or_default(),
                fs::read_to_string(dir.join("PG_VERSION")).unwrap_or_default(),
                fs::read(dir.join("global/pg_control")).unwrap_or_default(),
            ),
            Format::Tar { gz } => {
                let name = if gz { "base.tar.gz" } else { "base.tar" };
                let files = tar_files(&dir.join(name), gz, &["backup_label", "PG_VERSION", "global/pg_control"])?;
                let get = |n: &str| files.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap_or_default();
                (
                    String::from_utf8_lossy(&get("backup_label")).into_owned(),
                    String::from_utf8_lossy(&get("PG_VERSION")).into_owned(),
                    get("global/pg_control"),
                )
            }
        };
        if label.is_empty() {
            return Err(Failure::failed(format!(
                "{} has no backup_label: it is not pg_basebackup output, or it is damaged",
                dir.display()
            )));
        }
        let start = parse_label(&label);
        let manifest = fs::read_to_string(dir.join("backup_manifest")).ok();
        let (range, manifest_sysid) = manifest.as_deref().map(manifest_facts).unwrap_or((None, None));
        let history = self.history_label(&start);
        // The stop: the archive's history file says when; else the manifest, written last,
        // says by its time (never earlier than the true end: a backup is refused rather
        // than used for a target it does not reach).
        let ended = history.as_ref().and_then(|h| h.stop_time).or_else(|| {
            fs::metadata(dir.join("backup_manifest"))
                .or_else(|_| fs::metadata(dir))
                .and_then(|m| m.modified())
                .ok()
                .map(OffsetDateTime::from)
        });
        let wal_included = match format {
            Format::Plain => fs::read_dir(dir.join("pg_wal"))
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| parse_segment_name(&e.file_name().to_string_lossy(), DEFAULT_SEGMENT_SIZE).is_some()),
            Format::Tar { .. } => dir.join("pg_wal.tar").is_file() || dir.join("pg_wal.tar.gz").is_file(),
        };
        Ok(BaseBackup {
            id: dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            started: start.start_time,
            ended,
            start_lsn: start.start_lsn,
            stop_lsn: history.as_ref().and_then(|h| h.stop_lsn).or(range.map(|r| r.2)),
            system_identifier: manifest_sysid.or_else(|| system_identifier(&control)),
            timeline: start.timeline.or(range.map(|r| r.0)),
            pg_major: version.trim().split('.').next().and_then(|m| m.parse().ok()),
            size: Some(tree_size(dir)),
            has_manifest: manifest.is_some(),
            wal_included,
        })
    }
}

/// Copy `from` into `to` (a new directory), following no symlink but those the caller
/// resolves: pg_tblspc's links become directories under `tablespaces`.
fn copy_tree(from: &Path, to: &Path, tablespaces: Option<&Path>, out: &mut Materialized) -> Result<(), Failure> {
    copy_tree_in(from, from, to, tablespaces, out)
}

/// `copy_tree` of `from`, a folder within the backup folder `root`. Only pg_basebackup's own
/// links are followed: `pg_tblspc/<oid>` (a tablespace) and a top-level `pg_wal` (`--waldir`),
/// and never to a folder holding the backup (`..`: a copy without end). Any other link is
/// refused by name: followed, it copied whatever folder it named (`/`, a home) into a data
/// directory handed to the server's user.
fn copy_tree_in(
    root: &Path,
    from: &Path,
    to: &Path,
    tablespaces: Option<&Path>,
    out: &mut Materialized,
) -> Result<(), Failure> {
    fs::create_dir_all(to).map_err(|e| io_err(to, e))?;
    for e in fs::read_dir(from).map_err(|e| io_err(from, e))? {
        let e = e.map_err(|e| io_err(from, e))?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let meta = fs::symlink_metadata(&src).map_err(|e| io_err(&src, e))?;
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&src).map_err(|e| io_err(&src, e))?;
            let target = if target.is_relative() { from.join(target) } else { target };
            let oid = e.file_name().to_string_lossy().parse::<u32>().ok();
            let refuse = |why: &str| {
                Failure::failed(format!(
                    "{} is a link to {}: {why}; copy what it names into the backup folder, or remove the link",
                    src.display(),
                    target.display()
                ))
            };
            let wal = from == root && e.file_name() == "pg_wal";
            if !(wal || (tablespaces.is_some() && oid.is_some())) {
                return Err(refuse("pg_basebackup makes no such link (only pg_wal and pg_tblspc's)"));
            }
            let real = fs::canonicalize(&target).map_err(|e| io_err(&target, e))?;
            if !real.is_dir() {
                return Err(refuse("it is not a folder"));
            }
            if fs::canonicalize(root).is_ok_and(|r| r.starts_with(&real)) {
                return Err(refuse("that folder holds the backup itself"));
            }
            match (tablespaces, oid) {
                // A tablespace: its files go under our tablespaces folder, never back where
                // the source cluster had them.
                (Some(ts), Some(oid)) if !wal => {
                    let place = ts.join(oid.to_string());
                    copy_tree_in(&real, &real, &place, None, out)?;
                    std::os::unix::fs::symlink(&place, &dst).map_err(|e| io_err(&dst, e))?;
                    out.tablespaces.push((oid, place));
                }
                // pg_wal kept elsewhere (`--waldir`): a directory of its own here.
                _ => copy_tree_in(&real, &real, &dst, None, out)?,
            }
        } else if meta.is_dir() {
            let ts = (e.file_name() == "pg_tblspc").then_some(tablespaces).flatten();
            copy_tree_in(root, &src, &dst, ts, out)?;
        } else {
            out.bytes += fs::copy(&src, &dst).map_err(|e| io_err(&src, e))?;
        }
    }
    Ok(())
}

/// Extract a tar of pg_basebackup into `into`, entry by entry. pg_basebackup writes no hard
/// link and no link pointing out of the data directory (tablespaces come with
/// `tablespace_map`; pg_tblspc's links, from older servers, are made here anew), so such an
/// entry is refused by name: a link to a file outside is where pgdrill would then write
/// `postgresql.auto.conf` and the throwaway server its files, as root or as its user. An
/// entry that would land outside (`..`, an absolute path) is refused too, never skipped.
fn unpack(tar_path: &Path, gz: bool, into: &Path) -> Result<u64, Failure> {
    fs::create_dir_all(into).map_err(|e| io_err(into, e))?;
    // Bytes read from the (decompressed) tar: a tar cut at an entry's end reads as a shorter
    // whole one (its end-of-archive blocks are what says it is whole), so they are required.
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut a = open_tar_counted(tar_path, gz, read.clone())?;
    a.set_preserve_permissions(false);
    let mut last_end = 0u64;
    let bad = |what: String| {
        Failure::failed(format!(
            "extracting {}: {what}; pg_basebackup writes no such entry: the tar is damaged or not the backup's",
            tar_path.display()
        ))
    };
    let entries = a.entries().map_err(|e| bad(e.to_string()))?;
    for entry in entries {
        let mut e = entry.map_err(|e| bad(e.to_string()))?;
        let path = e.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let shown = format!("{:?}", path.display().to_string());
        let kind = e.header().entry_type();
        if kind.is_hard_link() {
            return Err(bad(format!("the entry {shown} is a hard link")));
        }
        if kind.is_symlink() {
            let in_tblspc =
                path.components().find(|c| c.as_os_str() != ".").is_some_and(|c| c.as_os_str() == "pg_tblspc");
            if in_tblspc {
                continue;
            }
            let target = e.link_name().map_err(|e| bad(e.to_string()))?.unwrap_or_default().into_owned();
            if !stays_inside(&path, &target) {
                return Err(bad(format!(
                    "the entry {shown} is a link to {:?}, outside the data directory",
                    target.display().to_string()
                )));
            }
        }
        last_end = e.raw_file_position() + e.size().div_ceil(512) * 512;
        // A tar that ends inside an entry is damaged; any other failure here is a write
        // (a full disk), said as it is, not as a damaged tar.
        let placed = e.unpack_in(into).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad(format!("{shown}: {e}")),
            _ => {
                let why = error_chain(&e);
                Failure::environment(format!(
                    "extracting {} into {}: {shown}: {why}",
                    tar_path.display(),
                    into.display()
                ))
            }
        })?;
        if !placed {
            return Err(bad(format!("the entry {shown} would land outside the data directory")));
        }
    }
    if read.load(std::sync::atomic::Ordering::Relaxed) < last_end + 512 {
        return Err(Failure::failed(format!(
            "{} is truncated: it ends without tar's end-of-archive blocks (copy it again from where the backup was written)",
            tar_path.display()
        )));
    }
    Ok(tree_size(into))
}

/// An error and its causes: the tar crate's says "failed to unpack" and keeps the reason
/// (no space left on device) as its source.
fn error_chain(e: &std::io::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.get_ref().and_then(|inner| inner.source());
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Whether a relative link at `at` (a path inside the tar) to `target` resolves inside the
/// tar's root, lexically (no `..` above the root, not absolute).
fn stays_inside(at: &Path, target: &Path) -> bool {
    use std::path::Component;
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = 0;
    let parent = at.parent().unwrap_or(Path::new(""));
    for c in parent.components().chain(target.components()) {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

impl PhysicalSource for BasebackupFolder {
    fn tool(&self) -> Tool {
        let version = self
            .interrupt
            .run(crate::child::command("pg_basebackup").arg("--version"), "pg_basebackup --version")
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        Tool { name: "pg_basebackup".into(), version }
    }

    fn describe(&self) -> String {
        match &self.wal_dir {
            Some(w) => format!("pg_basebackup folder {} (WAL archive {})", self.root.display(), w.display()),
            None => format!("pg_basebackup folder {}", self.root.display()),
        }
    }

    fn list(&self) -> Result<Vec<BaseBackup>, Failure> {
        let mut v = Vec::new();
        for d in self.backup_dirs() {
            v.push(self.read_backup(&d)?);
        }
        v.sort_by(|a, b| a.ended.cmp(&b.ended).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    /// PostgreSQL's own `backup_manifest` (it lists every file with its checksum), by its
    /// path and the sha256 of its bytes; a backup without one has nothing to name.
    fn digest(&self, backup: &BaseBackup) -> Result<Option<(String, String)>, Failure> {
        let manifest = self.dir_of(backup)?.join("backup_manifest");
        match fs::read(&manifest) {
            Ok(bytes) => Ok(Some((manifest.display().to_string(), sha256_of(&mut bytes.as_slice(), &manifest)?))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&manifest, e)),
        }
    }

    /// The segment's content as the archive folder holds it (gunzipped when it is `.gz`).
    fn wal_sha256(&self, _backup: &BaseBackup, segment: &str) -> Result<Option<String>, Failure> {
        let Some(path) = self.wal_dir.as_deref().and_then(|d| archived(d, segment)) else { return Ok(None) };
        let f = fs::File::open(&path).map_err(|e| io_err(&path, e))?;
        let mut r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(f)))
        } else {
            Box::new(f)
        };
        sha256_of(&mut r, &path).map(Some)
    }

    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure> {
        let dir = self.dir_of(backup)?;
        let mut out = Materialized::default();
        match format_of(&dir) {
            Some(Format::Plain) => copy_tree(&dir, &into.data_dir, Some(&into.tablespaces_dir), &mut out)?,
            Some(Format::Tar { gz }) => {
                let base = dir.join(if gz { "base.tar.gz" } else { "base.tar" });
                out.bytes += unpack(&base, gz, &into.data_dir)?;
                for e in fs::read_dir(&dir).map_err(|e| io_err(&dir, e))?.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let (stem, gz) = match name.strip_suffix(".tar.gz") {
                        Some(s) => (s.to_string(), true),
                        None => (name.strip_suffix(".tar").unwrap_or_default().to_string(), false),
                    };
                    if stem == "pg_wal" {
                        out.bytes += unpack(&e.path(), gz, &into.data_dir.join("pg_wal"))?;
                    } else if let Ok(oid) = stem.parse::<u32>() {
                        let place = into.tablespaces_dir.join(oid.to_string());
                        out.bytes += unpack(&e.path(), gz, &place)?;
                        out.tablespaces.push((oid, place));
                    }
                }
                if !out.tablespaces.is_empty() {
                    // The server makes pg_tblspc's links from tablespace_map when recovery
                    // starts: point it at our folders (the links too, for pg_verifybackup).
                    let map: String =
                        out.tablespaces.iter().map(|(oid, p)| format!("{oid} {}\n", p.display())).collect();
                    let path = into.data_dir.join("tablespace_map");
                    fs::write(&path, map).map_err(|e| io_err(&path, e))?;
                    let links = into.data_dir.join("pg_tblspc");
                    fs::create_dir_all(&links).map_err(|e| io_err(&links, e))?;
                    for (oid, p) in &out.tablespaces {
                        let link = links.join(oid.to_string());
                        std::os::unix::fs::symlink(p, &link).map_err(|e| io_err(&link, e))?;
                    }
                }
            }
            None => return Err(Failure::invalid(format!("{} holds no base backup", dir.display()))),
        }
        Ok(out)
    }

    fn verify_materialized(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Option<String>, Failure> {
        let dir = self.dir_of(backup)?;
        let manifest = dir.join("backup_manifest");
        if !manifest.is_file() {
            return Ok(None);
        }
        let major = backup.pg_major.unwrap_or(15);
        // The local pg_verifybackup when it is of the backup's major or newer, else the one
        // in that major's image, reading the files at the same paths: in a container named
        // and labelled as pgdrill's, which an interrupted call removes (killing the docker
        // client leaves it running) and the reaper knows. Debian's wrapper puts none on the
        // image's PATH, so `env` runs it by its path.
        let (mut cmd, _env, version) = match super::tools::find_pg_tool("pg_verifybackup", None, major, &self.interrupt)
        {
            Ok((path, text, _)) => (crate::child::command(path), None, text),
            Err(e) if self.interrupt.interrupted() => return Err(e),
            Err(local) => {
                let image = super::recover::docker_image_for(major).ok_or_else(|| {
                    local.context(format!("checking a PostgreSQL {major} backup (and Docker has no image of {major})"))
                })?;
                let mut c = crate::child::command("env");
                c.arg(format!("/usr/lib/postgresql/{major}/bin/pg_verifybackup"));
                let ro: Vec<&Path> = [&dir, &into.data_dir, &into.tablespaces_dir]
                    .into_iter()
                    .chain(self.wal_dir.as_ref())
                    .map(PathBuf::as_path)
                    .collect();
                let name = super::tools::container_name();
                let how = crate::pg::image_tools::InImage {
                    ro: &ro,
                    name: Some(&name),
                    network: false,
                    labelled: true,
                    ..Default::default()
                };
                let (d, env) = crate::pg::image_tools::in_image_with(&c, &image, &how)
                    .map_err(|e| Failure::environment(format!("cannot run pg_verifybackup in {image}: {e}")))?;
                (d, Some(env), format!("pg_verifybackup of PostgreSQL {major} ({image})"))
            }
        };
        cmd.arg("--quiet").arg("-m").arg(&manifest);
        if into.data_dir.join("tablespace_map").is_file() && !dir.join("tablespace_map").is_file() {
            // Rewritten by materialize to point at our tablespace folders.
            cmd.arg("-i").arg("tablespace_map");
        }
        // The WAL of the backup's range: inside it, or in the archive folder. pg_waldump
        // reads plain segments only: gzip'd ones are not parsed (-n), and that is said.
        let wal = if backup.wal_included {
            Some(into.data_dir.join("pg_wal"))
        } else {
            let start = backup.start_lsn.map(|l| l.segment_name(backup.timeline.unwrap_or(1), DEFAULT_SEGMENT_SIZE));
            match (&self.wal_dir, start) {
                (Some(w), Some(s)) if w.join(&s).is_file() => Some(w.clone()),
                _ => None,
            }
        };
        let how = match &wal {
            Some(w) => {
                cmd.arg("-w").arg(w);
                format!("WAL parsed from {}", w.display())
            }
            None => {
                cmd.arg("-n");
                "WAL not parsed (gzip'd or absent here; recovery replays it)".to_string()
            }
        };
        cmd.arg(&into.data_dir);
        self.interrupt.verify_backup(&mut cmd, &format!("the backup {}", backup.id))?;
        Ok(Some(format!("{version}: the files match backup_manifest; {how}")))
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.wal_dir.iter().cloned().collect()
    }

    fn restore_command(&self, _backup: &BaseBackup) -> Result<Option<String>, Failure> {
        Ok(self.wal_dir.as_deref().map(folder_restore_command))
    }

    fn archive_end(&self, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        let Some(dir) = &self.wal_dir else { return Ok(None) };
        archive_end_in(dir, timeline)
    }

    fn interrupt(&self) -> Option<super::tools::Interrupt> {
        Some(self.interrupt.clone())
    }
}

/// The newest segment of the newest timeline (at or after `timeline`) in an archive folder:
/// recovery follows the newest timeline (`recovery_target_timeline=latest`), so segments an
/// old primary kept archiving on its own timeline after a failover are not its end.
fn archive_end_in(dir: &Path, timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
    let mut best: Option<(u32, ArchiveEnd)> = None;
    for e in fs::read_dir(dir).map_err(|e| io_err(dir, e))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let seg = name.strip_suffix(".gz").unwrap_or(&name);
        let Some((tli, start)) = parse_segment_name(seg, DEFAULT_SEGMENT_SIZE) else { continue };
        if tli < timeline || best.as_ref().is_some_and(|(t, b)| (*t, b.segment_start) >= (tli, start)) {
            continue;
        }
        let archived = e.metadata().and_then(|m| m.modified()).ok().map(OffsetDateTime::from);
        best = Some((tli, ArchiveEnd { segment: seg.to_string(), segment_start: start, archived }));
    }
    Ok(best.map(|(_, end)| end))
}

/// `restore_command` for a folder of plain or gzip'd segments. Exit 1 only when the
/// segment is in neither form; a copy or decompression that fails exits 200 (above 125), so
/// the server stops recovery rather than take the failure for the archive's end.
pub fn folder_restore_command(dir: &Path) -> String {
    // `%` is PostgreSQL's escape in the command: a `%` of the path is written `%%`.
    let d = crate::util::shell_quote(&dir.display().to_string()).replace('%', "%%");
    format!(
        "if [ -f {d}/%f ]; then cp {d}/%f %p || exit 200; \
         elif [ -f {d}/%f.gz ]; then gzip -dc {d}/%f.gz > %p.part && mv %p.part %p || exit 200; \
         else exit 1; fi"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Signed evidence (issue 42) names a pg_basebackup backup by its `backup_manifest`'s
    /// sha256, and each WAL segment by the sha256 of its content, the same whether the
    /// archive keeps it plain or gzip'd.
    #[test]
    fn a_folder_backup_is_named_by_its_manifest_and_a_segment_by_its_content_plain_or_gzipped() {
        use sha2::Digest as _;
        let hex = |b: &[u8]| -> String { sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect() };
        let d = tempfile::tempdir().expect("tmp");
        let backup = d.path().join("base").join("nightly");
        let wal = d.path().join("wal");
        fs::create_dir_all(&backup).expect("mkdir");
        fs::create_dir_all(&wal).expect("mkdir");
        fs::write(backup.join("base.tar"), b"").expect("tar");
        fs::write(backup.join("backup_manifest"), b"{\"PostgreSQL-Backup-Manifest-Version\": 1}\n").expect("manifest");
        let segment = vec![7u8; 4096];
        fs::write(wal.join("000000010000000000000003"), &segment).expect("plain");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &segment).expect("gzip");
        fs::write(wal.join("000000010000000000000004.gz"), gz.finish().expect("gzip")).expect("gz");
        let src = BasebackupFolder::new(d.path().join("base"), Some(wal)).expect("folder");
        let b = BaseBackup { id: "nightly".into(), ..Default::default() };
        let (name, sha) = src.digest(&b).expect("digest").expect("a manifest");
        assert!(name.ends_with("nightly/backup_manifest"), "{name}");
        assert_eq!(sha, hex(&fs::read(backup.join("backup_manifest")).expect("read")));
        let want = Some(hex(&segment));
        assert_eq!(src.wal_sha256(&b, "000000010000000000000003").expect("plain"), want);
        assert_eq!(src.wal_sha256(&b, "000000010000000000000004").expect("gz"), want);
        assert_eq!(src.wal_sha256(&b, "000000010000000000000005").expect("absent"), None);
        fs::remove_file(backup.join("backup_manifest")).expect("rm");
        assert_eq!(src.digest(&b).expect("no manifest"), None);
    }

    #[test]
    fn labels_and_history_files_are_read() {
        let l = parse_label(
            "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTOP WAL LOCATION: 0/2000100 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\nSTART TIME: 2026-12-06 07:00:00 UTC\nSTOP TIME: 2026-12-06 07:00:01 UTC\nSTART TIMELINE: 1\n",
        );
        assert_eq!(l.start_lsn, Lsn::parse("0/2000028"));
        assert_eq!(l.stop_lsn, Lsn::parse("0/2000100"));
        assert_eq!(l.start_segment.as_deref(), Some("000000010000000000000002"));
        assert_eq!(l.timeline, Some(1));
        assert_eq!(l.stop_time.map(|t| t.unix_timestamp()), l.start_time.map(|t| t.unix_timestamp() + 1));
    }

    #[test]
    fn the_archives_end_is_on_its_newest_timeline() {
        let d = tempfile::tempdir().expect("tmp");
        for f in [
            "000000010000000000000003",
            "000000010000000000000009.gz",
            "00000002.history",
            "000000020000000000000005",
            "000000020000000000000004.gz",
            "000000010000000000000002.00000028.backup",
        ] {
            fs::write(d.path().join(f), b"").expect("file");
        }
        let end = archive_end_in(d.path(), 1).expect("read").expect("an end");
        assert_eq!(end.segment, "000000020000000000000005");
        assert_eq!(archive_end_in(d.path(), 3).expect("read"), None);
    }

    #[test]
    fn the_folder_restore_command_quotes_the_folder_and_fails_hard_on_a_bad_copy() {
        let c = folder_restore_command(Path::new("/wal it's%"));
        assert!(c.starts_with("if [ -f '/wal it'\\''s%%'/%f ]; then cp '/wal it'\\''s%%'/%f %p || exit 200;"), "{c}");
        assert!(c.ends_with("else exit 1; fi"));
    }

    /// A base.tar made by hand: `PG_VERSION`, `backup_label`, then `extra`.
    fn hostile_backup(root: &Path, extra: impl FnOnce(&mut tar::Builder<fs::File>)) -> BasebackupFolder {
        let dir = root.join("b1");
        fs::create_dir_all(&dir).expect("dir");
        let mut t = tar::Builder::new(fs::File::create(dir.join("base.tar")).expect("tar"));
        let label = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nSTART TIMELINE: 1\n";
        for (name, body) in [("PG_VERSION", "15\n"), ("backup_label", label)] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            t.append_data(&mut h, name, body.as_bytes()).expect("append");
        }
        extra(&mut t);
        t.finish().expect("finish");
        BasebackupFolder::new(dir, None).expect("folder")
    }

    fn link(t: &mut tar::Builder<fs::File>, kind: tar::EntryType, name: &str, target: &str) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_mode(0o777);
        t.append_link(&mut h, name, target).expect("link");
    }

    fn materialize_into(src: &BasebackupFolder, root: &Path) -> Result<Materialized, Failure> {
        let backup = src.list().expect("list").pop().expect("a backup");
        let into = MaterializeInto { data_dir: root.join("data"), tablespaces_dir: root.join("ts") };
        fs::create_dir_all(&into.data_dir).expect("data");
        fs::create_dir_all(&into.tablespaces_dir).expect("ts");
        src.materialize(&backup, &into)
    }

    /// Regression: a base.tar whose `postgresql.auto.conf` was a link to a file outside was
    /// extracted as is, and pgdrill then appended its recovery settings to that file.
    #[test]
    fn a_tar_with_links_out_of_the_data_directory_is_refused_by_name() {
        let d = tempfile::tempdir().expect("tmp");
        let outside = d.path().join("outside.conf");
        fs::write(&outside, "precious\n").expect("outside");
        for (kind, name, target) in [
            (tar::EntryType::Symlink, "postgresql.auto.conf", outside.display().to_string()),
            (tar::EntryType::Symlink, "global", "../../..".to_string()),
            (tar::EntryType::Link, "postgresql.auto.conf", outside.display().to_string()),
        ] {
            let case = tempfile::tempdir_in(d.path()).expect("case");
            let src = hostile_backup(case.path(), |t| link(t, kind, name, &target));
            let err = materialize_into(&src, case.path()).expect_err("a link out is refused");
            assert!(err.to_string().contains(&format!("{name:?}")), "{name}: {err}");
            assert!(!case.path().join("data").join(name).exists(), "{name} was made");
        }
        assert_eq!(fs::read_to_string(&outside).expect("outside"), "precious\n");
        // A link inside the data directory, and pg_tblspc's links (made anew), are fine.
        let case = tempfile::tempdir_in(d.path()).expect("case");
        let src = hostile_backup(case.path(), |t| {
            link(t, tar::EntryType::Symlink, "conf/postgresql.conf", "../PG_VERSION");
            link(t, tar::EntryType::Symlink, "pg_tblspc/16384", "/srv/ts");
        });
        materialize_into(&src, case.path()).expect("inside links are fine");
        assert!(!case.path().join("data/pg_tblspc/16384").exists());
    }

    /// Regression: an entry `../x` was skipped without a word (the tar crate's `unpack`),
    /// so a damaged tar came out incomplete but "extracted".
    #[test]
    fn a_tar_entry_that_climbs_out_is_refused_not_skipped() {
        let d = tempfile::tempdir().expect("tmp");
        let src = hostile_backup(d.path(), |t| {
            let mut h = tar::Header::new_gnu();
            let body = b"x";
            h.as_gnu_mut().expect("gnu").name[..12].copy_from_slice(b"../escape.tx");
            h.set_size(1);
            h.set_mode(0o600);
            h.set_cksum();
            t.append(&h, &body[..]).expect("append");
        });
        let err = materialize_into(&src, d.path()).expect_err("refused");
        assert!(err.to_string().contains("escape.tx"), "{err}");
        assert!(!d.path().join("escape.tx").exists());
    }

    /// Regression: a plain backup's links were all followed: `base/loop -> ..` copied the
    /// backup into itself without end, and a link to a folder outside copied that folder.
    #[test]
    fn a_plain_backup_with_a_link_out_or_a_loop_is_refused_by_name() {
        let d = tempfile::tempdir().expect("tmp");
        let secret = d.path().join("home");
        fs::create_dir_all(&secret).expect("home");
        fs::write(secret.join("id_rsa"), "secret").expect("secret");
        for (name, target) in [
            ("base/loop", PathBuf::from("..")),
            ("pg_wal", PathBuf::from("..")),
            ("base/home", secret.clone()),
            ("pg_tblspc/16384", d.path().to_path_buf()),
        ] {
            let case = tempfile::tempdir_in(d.path()).expect("case");
            let dir = case.path().join("b1");
            fs::create_dir_all(dir.join("base")).expect("base");
            fs::create_dir_all(dir.join("pg_tblspc")).expect("pg_tblspc");
            fs::write(dir.join("PG_VERSION"), "15\n").expect("version");
            fs::write(dir.join("backup_label"), "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n")
                .expect("label");
            std::os::unix::fs::symlink(&target, dir.join(name)).expect("link");
            let src = BasebackupFolder::new(dir.clone(), None).expect("folder");
            let err = materialize_into(&src, case.path()).expect_err("refused");
            assert!(err.to_string().contains(&format!("{} is a link", dir.join(name).display())), "{name}: {err}");
            let copied = walk(&case.path().join("data"));
            assert!(copied.iter().all(|p| !p.ends_with("id_rsa")), "{name}: {copied:?}");
            assert!(copied.len() < 20, "{name}: {copied:?}");
        }
    }

    fn walk(p: &Path) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            v.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                v.extend(walk(&e.path()));
            }
        }
        v
    }

    /// Regression: a base.tar cut at an entry's end (a copy that stopped) was extracted as
    /// a whole one, files missing.
    #[test]
    fn a_tar_cut_at_an_entrys_end_is_refused_as_truncated() {
        let d = tempfile::tempdir().expect("tmp");
        let src = hostile_backup(d.path(), |t| {
            let mut h = tar::Header::new_gnu();
            h.set_size(3);
            h.set_mode(0o600);
            h.set_cksum();
            t.append_data(&mut h, "global/pg_control", &b"abc"[..]).expect("append");
        });
        let tar = d.path().join("b1/base.tar");
        let whole = fs::read(&tar).expect("tar");
        materialize_into(&src, &d.path().join("whole")).expect("a whole tar extracts");
        // Without the end-of-archive blocks (1024 zero bytes) and the last entry.
        fs::write(&tar, &whole[..whole.len() - 1024 - 1024]).expect("cut");
        let err = materialize_into(&src, &d.path().join("cut")).expect_err("refused");
        assert!(err.to_string().contains("truncated"), "{err}");
        fs::write(&tar, b"").expect("empty");
        assert!(src.list().is_err(), "an empty base.tar");
    }

    /// Regression: a disk that filled during extraction was reported as a damaged tar
    /// ("pg_basebackup writes no such entry"), sending the operator after the backup.
    #[test]
    fn a_disk_that_fills_during_extraction_is_said_as_such_not_as_a_damaged_backup() {
        let d = tempfile::tempdir().expect("tmp");
        let src = hostile_backup(d.path(), |t| {
            let body = vec![7u8; 1 << 20];
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o600);
            h.set_cksum();
            t.append_data(&mut h, "base/1/16384", &body[..]).expect("append");
        });
        let full = d.path().join("full");
        fs::create_dir_all(&full).expect("mount point");
        let mounted = crate::child::command("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&full)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(std::env::var_os("CI").is_none(), "CI: cannot mount a small tmpfs (root needed)");
            eprintln!("skipped: cannot mount a small tmpfs (not root?)");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = crate::child::command("umount").arg(&self.0).status();
            }
        }
        let _guard = Unmount(full.clone());
        let err = materialize_into(&src, &full).expect_err("the disk is full");
        let text = err.to_string();
        assert!(text.contains("base/1/16384") && !text.contains("damaged"), "{text}");
        assert!(text.to_lowercase().contains("no space"), "{text}");
    }
}
