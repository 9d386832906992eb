//! The backup layout: where archives, manifests and ledgers live in a location, and which
//! name is the manifest of which archive. Another tool's files are recognized by `names`;
//! the ledger's records are `ledger`'s.
//!
//! Layout: `<root>/<folder>/<UTC timestamp>.<ext>` with `<same>.manifest.json` beside it, where
//! `<folder>` is the database name encoded by `folder_name`: letters, digits, `_`, `-` and a
//! `.` that is not the first character stay as they are (so `app` is `app`); every other
//! byte, and `%` itself, becomes `%XX`. The encoding is injective, so no two databases share
//! a folder (`acct` and `.acct`, `a/b` and `a_b` used to), and no name escapes the root.
//! Writes are atomic: data goes to a hidden temp file (mode 0600) in the same directory, is
//! fsynced, renamed without replacing anything (two backups in the same millisecond get
//! distinct names), and the directory is fsynced. A write that is not committed (error,
//! Ctrl-C, panic) removes its temp file on drop.
//!
//! Publication is two writes, in this order: the archive under its final name (a rename
//! here, a completed multipart upload in an object store), then its manifest. The manifest
//! is the commit marker: an archive without one is unfinished (`LocalStore::unfinished`),
//! never listed nor picked as a backup, and `retention.prune` removes it once it is older
//! than `abandoned_uploads_after`. A kill -9 at any instant thus leaves a complete backup or
//! debris that prune names, never a half-written backup that looks like one.
//!
//! A team's own file (issue 40: `<name>.sql.gz` with `<name>.sql.gz.manifest.json`) is
//! published the other way round, sidecar first: the team's globs and commands see the file
//! itself, so it must never be there without its sidecar. A sidecar without its file is the
//! debris then (unfinished, shown and pruned the same way).

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
use time::OffsetDateTime;

use super::names::{self, NamePattern};
use crate::on_exit::{track, untrack};
use crate::storage::private_dir;
use crate::storage::tree::{self, Tree};

/// One stored backup, found by listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The database it is of: its folder for pgdrill's files, its name for other tools'
    /// (empty when the name does not say).
    pub database: String,
    /// File name, e.g. `20261121T154500.123Z.dump.pgdrill` or `auth_db_20240115_020000.sql.gz`.
    pub name: String,
    pub path: PathBuf,
    pub manifest: PathBuf,
    /// Made by another tool: no manifest; `made` comes from its name (or its mtime).
    pub foreign: bool,
    /// When it was made: the stamp in its name, else the file's mtime (`made_from`).
    pub made: OffsetDateTime,
    pub made_from: MadeFrom,
    /// A foreign file whose name names no database, taken as the asked database's because
    /// nothing in storage names any database.
    pub database_assumed: bool,
}

/// Where an entry's time comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MadeFrom {
    Name,
    /// The name has no time: the file's modification time, which a copy or download resets.
    Mtime,
}

fn mtime(t: &Tree, p: &Path) -> OffsetDateTime {
    // Through `tree`: an object store's listed object has no file until something reads it.
    t.stat(p).map(|s| OffsetDateTime::from(s.modified)).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// A local directory of backups.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
    /// The same root as a view: an object store's mirror answers for its paths with the
    /// store in hand (see `storage::tree`).
    tree: Tree,
}

/// A file being written; `commit` publishes it under its final name.
pub struct Pending {
    file: Option<File>,
    tmp: PathBuf,
    /// The private directory `tmp` is in (see `private_dir`).
    private: PathBuf,
    dir: PathBuf,
    stem: String,
    ext: String,
    /// A team's own name (`begin_named`): published under exactly `stem` or not at all.
    exact: bool,
}

impl LocalStore {
    pub fn new(root: impl Into<Tree>) -> Self {
        let tree = root.into();
        LocalStore { root: tree.root().to_path_buf(), tree }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of `database`'s backups.
    pub fn folder(&self, database: &str) -> PathBuf {
        self.root.join(folder_name(database))
    }

    /// The folder the old lossy scheme would have used for `database`, when it differs from
    /// the current one and exists: backups written there before the change.
    pub fn legacy_folder(&self, database: &str) -> Option<PathBuf> {
        let old = legacy_folder_name(database);
        (old != folder_name(database) && !old.is_empty()).then(|| self.root.join(old)).filter(|p| p.is_dir())
    }

    /// Start writing a backup of `database` named after `stamp` with extension `ext`.
    pub fn begin(&self, database: &str, stamp: &str, ext: &str) -> io::Result<Pending> {
        if database.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty database name has no folder"));
        }
        let dir = self.folder(database);
        let private = private_dir(&dir, "partial")?;
        track(&private);
        // tempfile creates with mode 0600 and a random suffix.
        let (file, tmp) = tempfile::Builder::new()
            .prefix(&format!("{stamp}.{ext}."))
            .suffix(".partial")
            .tempfile_in(&private)?
            .into_parts();
        let tmp = tmp.keep().map_err(|e| e.error)?;
        Ok(Pending { file: Some(file), tmp, private, dir, stem: stamp.to_string(), ext: ext.to_string(), exact: false })
    }

    /// Start writing a backup under a team's own file name, straight in the root (their
    /// folder, where their `ls *.sql.gz` looks). `commit` never gives it another name: one
    /// that exists already is an `AlreadyExists` error, the existing file untouched.
    pub fn begin_named(&self, name: &str) -> io::Result<Pending> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("`{name}` is not a file name to publish")));
        }
        fs::create_dir_all(&self.root)?;
        let private = private_dir(&self.root, "partial")?;
        track(&private);
        let (file, tmp) =
            tempfile::Builder::new().prefix(&format!("{name}.")).suffix(".partial").tempfile_in(&private)?.into_parts();
        let tmp = tmp.keep().map_err(|e| e.error)?;
        Ok(Pending {
            file: Some(file),
            tmp,
            private,
            dir: self.root.clone(),
            stem: name.to_string(),
            ext: String::new(),
            exact: true,
        })
    }

    /// Backups of `database` (or of every database), newest first. A pgdrill archive without
    /// its manifest is not one (see `unfinished`); one whose manifest cannot be read is
    /// listed, and `backup.check` reports it.
    pub fn list(&self, database: Option<&str>) -> io::Result<Vec<Entry>> {
        self.list_with(database, None)
    }

    /// pgdrill archives of `database` (or of every database) with no manifest beside them,
    /// newest first: a backup is published in two steps (its archive, then its manifest as
    /// the commit marker), so one a killed pgdrill left half-published, or one still being
    /// written, is this. Never a backup to pick; prune removes them once old enough (their
    /// `made` here is the archive's modification time: when its upload completed, not when
    /// its dump started).
    pub fn unfinished(&self, database: Option<&str>) -> io::Result<Vec<Entry>> {
        let (_, mut out) = self.scan(database, None)?;
        out.retain(|e| database.is_none_or(|d| e.database == d));
        Ok(out)
    }

    /// As `list`, with other tools' files too: at any depth below the root up to
    /// `MAX_DEPTH` (per database, per server, per project and environment, as teams keep
    /// them), recognized by `pattern` when given, else by the default naming rules (`names`).
    /// A directory dump (`toc.dat`) is one entry; symlinks (`auth_db_LATEST.sql.gz`) are
    /// pointers to backups, never backups (`Survey::pointers`).
    pub fn list_with(&self, database: Option<&str>, pattern: Option<&NamePattern>) -> io::Result<Vec<Entry>> {
        Ok(self.scan(database, pattern)?.0)
    }

    /// The backups `list_with` returns, and every unfinished archive (`unfinished`).
    fn scan(&self, database: Option<&str>, pattern: Option<&NamePattern>) -> io::Result<(Vec<Entry>, Vec<Entry>)> {
        let survey = self.survey(pattern)?;
        let mine = survey.select(database);
        let unfinished = survey.unfinished;
        Ok((mine, unfinished))
    }

    /// Everything in storage, before any database is asked for: every backup at any depth
    /// (pgdrill's archives in their database's folder, other tools' files wherever they are,
    /// recognized by `pattern` when given, else by `names`), the unfinished archives, the
    /// symlinks named like backups (`auth_db_LATEST.sql.gz`) and the files named like backups
    /// that are none (a tar of WAL files). The one walk every command's choice of a backup
    /// starts from (`resolve`), so `backups list`, verify, restore, offsite and prune see the
    /// same backups.
    pub fn survey(&self, pattern: Option<&NamePattern>) -> io::Result<Survey> {
        let mut s = Survey { root: self.root.clone(), tree: self.tree.clone(), ..Survey::default() };
        let tree = self.tree.clone();
        walk(&tree, &self.root, 0, pattern, &mut s)?;
        s.backups.sort_by(|a, b| b.made.cmp(&a.made).then(b.name.cmp(&a.name)).then(a.database.cmp(&b.database)));
        s.unfinished.sort_by(|a, b| b.made.cmp(&a.made).then(b.name.cmp(&a.name)));
        Ok(s)
    }
}

/// How deep below the storage's root backups are looked for: the multi-tenant runbook's
/// `{project}/{environment}/database/` is three; past eight levels a folder is not a
/// backup folder but a tree someone pointed storage at by mistake.
pub const MAX_DEPTH: usize = 8;

/// A symlink named like a backup (`auth_db_LATEST.sql.gz`): a pointer to a backup, never a
/// second copy of one. Followed when named, and named in the log when `latest` differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pointer {
    pub name: String,
    pub path: PathBuf,
    /// Where it leads (canonical), or None when it leads nowhere.
    pub target: Option<PathBuf>,
}

/// A file named like a backup that is not one, and why (for "no backup" messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassedOver {
    pub name: String,
    pub path: PathBuf,
    pub why: String,
}

/// What a walk of storage found (`LocalStore::survey`).
#[derive(Debug, Clone, Default)]
pub struct Survey {
    pub root: PathBuf,
    /// The view the walk went through: how its paths are shown and read.
    pub tree: Tree,
    /// Every backup of every database, newest first; `database` is empty where another
    /// tool's name does not say.
    pub backups: Vec<Entry>,
    pub unfinished: Vec<Entry>,
    pub pointers: Vec<Pointer>,
    pub passed_over: Vec<PassedOver>,
}

impl Survey {
    /// The backups of `database` (all when None), newest first: those that name it, and the
    /// nameless ones `assumable` gives it, marked `database_assumed`.
    pub fn select(&self, database: Option<&str>) -> Vec<Entry> {
        let Some(want) = database else { return self.backups.clone() };
        self.backups
            .iter()
            .filter_map(|e| {
                if e.database == want {
                    Some(e.clone())
                } else if e.foreign && e.database.is_empty() && self.assumable(e, want).is_ok() {
                    let mut e = e.clone();
                    e.database = want.to_string();
                    e.database_assumed = true;
                    Some(e)
                } else {
                    None
                }
            })
            .collect()
    }

    /// Whether a file whose name names no database (`backup_20240315_143022.sql.gz`,
    /// `db_20250106_020000.sql.gz`) may be taken as `want`'s, or why not. It may when
    /// nothing in its folder names another database (another tool's name, or pgdrill's
    /// folder of another database inside it) and no other folder holds nameless files too:
    /// then the folder is one database's, as the classic runbooks keep them. A file that is no
    /// dump (a tar of WAL files) and pgdrill's own folder of `want` beside them do not count.
    pub fn assumable(&self, e: &Entry, want: &str) -> Result<(), String> {
        let dir = e.path.parent().unwrap_or(Path::new(""));
        let mut others: Vec<&str> = self
            .backups
            .iter()
            .filter(|o| !o.database.is_empty() && o.database != want)
            .filter(|o| {
                let parent = o.path.parent();
                parent == Some(dir) || (!o.foreign && parent.and_then(Path::parent) == Some(dir))
            })
            .map(|o| o.database.as_str())
            .collect();
        others.sort_unstable();
        others.dedup();
        if !others.is_empty() {
            let names: Vec<String> = others.iter().take(5).map(|d| format!("`{d}`")).collect();
            return Err(format!(
                "its name says no database, and its folder also holds backups of {}{}",
                names.join(", "),
                if others.len() > 5 { ", ..." } else { "" }
            ));
        }
        let mut folders: Vec<&Path> = self
            .backups
            .iter()
            .filter(|o| o.foreign && o.database.is_empty())
            .filter_map(|o| o.path.parent())
            .collect();
        folders.sort_unstable();
        folders.dedup();
        if folders.len() > 1 {
            let shown: Vec<String> = folders.iter().take(4).map(|f| self.tree.display(f)).collect();
            return Err(format!(
                "its name says no database, and {} folders hold such files ({}{}): give the folder of `{want}`'s as storage",
                folders.len(),
                shown.join(", "),
                if folders.len() > 4 { ", ..." } else { "" }
            ));
        }
        Ok(())
    }
}

/// The database a file's name says, with a time, when its extension is neither a dump's
/// nor a log's, a checksum's or a note's: a candidate worth naming when nothing is found.
fn kind_unknown(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    const NOT: &[&str] =
        &[".log", ".txt", ".json", ".jsonl", ".meta", ".sha256", ".md5", ".csv", ".yml", ".yaml", ".lock", ".pid"];
    if NOT.iter().any(|x| lower.ends_with(x)) {
        return None;
    }
    let info = names::parse(name);
    info.at.and(info.database)
}

/// One directory of a survey, and those below it up to `MAX_DEPTH`.
fn walk(t: &Tree, dir: &Path, depth: usize, pattern: Option<&NamePattern>, s: &mut Survey) -> io::Result<()> {
    let rd = match t.read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // pgdrill's archives are in their database's folder: this one, its name decoded.
    let dir_name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let folder_db = database_of_folder(&dir_name).unwrap_or_else(|| dir_name.clone());
    let mut subdirs = Vec::new();
    for e in rd {
        let (name, kind) = (e.name, e.kind);
        // Hidden entries are pgdrill's own (staging, safety snapshots, the WAL archive) or
        // the user's, never backups; lost+found is the file system's.
        if name.starts_with('.') || name == "lost+found" {
            continue;
        }
        let path = e.path;
        // A manifest is read with its backup, never as one. A team's sidecar without its
        // file is a backup killed between the two (its sidecar is published first): debris
        // to show and prune, like an archive without its manifest.
        if let Some(base) = name.strip_suffix(".manifest.json").filter(|_| kind == tree::Kind::File) {
            let named_like_backup =
                names::looks_like_backup(base) || pattern.is_some_and(|p| p.matches(base).is_some());
            if named_like_backup && !base.ends_with(".pgdrill") && t.stat(&dir.join(base)).is_none() {
                let database = match pattern {
                    Some(p) => p.matches(base).and_then(|i| i.database),
                    None => names::parse(base).database,
                };
                s.unfinished.push(Entry {
                    database: database.unwrap_or_default(),
                    manifest: path.clone(),
                    made: mtime(t, &path),
                    name,
                    path,
                    foreign: true,
                    made_from: MadeFrom::Mtime,
                    database_assumed: false,
                });
            }
            continue;
        }
        if kind == tree::Kind::Symlink {
            if names::looks_like_backup(&name) || pattern.is_some_and(|p| p.matches(&name).is_some()) {
                s.pointers.push(Pointer { target: fs::canonicalize(&path).ok(), name, path });
            }
            continue;
        }
        if kind == tree::Kind::Dir && !t.is_file(&path.join("toc.dat")) {
            if depth < MAX_DEPTH {
                subdirs.push(path);
            }
            continue;
        }
        if name.ends_with(".pgdrill") && kind == tree::Kind::File {
            let manifest = manifest_path(&path);
            if t.stat(&manifest).is_none() {
                // Not committed: its manifest, written last, is missing.
                s.unfinished.push(Entry {
                    database: folder_db.clone(),
                    manifest,
                    made: mtime(t, &path),
                    name,
                    path,
                    foreign: false,
                    made_from: MadeFrom::Mtime,
                    database_assumed: false,
                });
                continue;
            }
            let (made, made_from) = match names::pgdrill_stamp(&name) {
                Some(t) => (t, MadeFrom::Name),
                None => (mtime(t, &path), MadeFrom::Mtime),
            };
            s.backups.push(Entry {
                database: folder_db.clone(),
                manifest,
                name,
                path,
                foreign: false,
                made,
                made_from,
                database_assumed: false,
            });
            continue;
        }
        if !matches!(kind, tree::Kind::File | tree::Kind::Dir) {
            continue;
        }
        // A tar of WAL files named like a dump is no backup of a database `wal` (under the
        // default rules; a team's own pattern says what its files are).
        if pattern.is_none() {
            if let Some(why) = names::not_a_dump(&name).filter(|_| names::looks_like_backup(&name)) {
                s.passed_over.push(PassedOver { name, path, why: why.to_string() });
                continue;
            }
        }
        match foreign_entry(t, &path, &name, kind == tree::Kind::Dir, pattern) {
            Some(entry) => s.backups.push(entry),
            None => {
                if let Some(p) = pattern.filter(|_| names::looks_like_backup(&name)) {
                    s.passed_over.push(PassedOver {
                        why: format!("named like a dump, but not as name_pattern `{}` says", p.as_str()),
                        name,
                        path,
                    });
                } else if let Some(db) = pattern.is_none().then(|| kind_unknown(&name)).flatten() {
                    // `crm_20240101.bak`: a database and a time, but no dump's extension.
                    s.passed_over.push(PassedOver {
                        why: format!("its name says database `{db}` and a time, but its extension is no dump's: kind unknown (give name_pattern to take it)"),
                        name,
                        path,
                    });
                }
            }
        }
    }
    subdirs.sort();
    for d in subdirs {
        walk(t, &d, depth + 1, pattern, s)?;
    }
    Ok(())
}

/// Another tool's backup at `path`, when its name says it is one.
fn foreign_entry(t: &Tree, path: &Path, name: &str, is_dir: bool, pattern: Option<&NamePattern>) -> Option<Entry> {
    let info = match pattern {
        Some(p) => p.matches(name)?,
        None if is_dir || names::looks_like_backup(name) => names::parse(name),
        None => return None,
    };
    let (made, made_from) = match info.at {
        Some(t) => (t, MadeFrom::Name),
        None => (mtime(t, path), MadeFrom::Mtime),
    };
    Some(Entry {
        database: info.database.unwrap_or_default(),
        name: name.to_string(),
        path: path.to_path_buf(),
        manifest: manifest_path(path),
        foreign: true,
        made,
        made_from,
        database_assumed: false,
    })
}

/// Whether an unfinished entry is a team's sidecar whose file was never published (else it
/// is an archive whose manifest was never written): what to call it in messages.
pub fn is_lone_sidecar(e: &Entry) -> bool {
    e.name.ends_with(".manifest.json")
}

/// Why an unfinished entry is not a backup, in a few words for messages.
pub fn why_unfinished(e: &Entry) -> &'static str {
    if is_lone_sidecar(e) {
        "a sidecar manifest whose file was never published (the sidecar goes first)"
    } else {
        "its manifest was never written"
    }
}

/// The key of a backup's manifest in a store: `app/x.dump.pgdrill` ->
/// `app/x.dump.pgdrill.manifest.json`.
pub fn manifest_key(backup: &str) -> String {
    format!("{backup}.manifest.json")
}

/// `x.dump.pgdrill` -> `x.dump.pgdrill.manifest.json`
pub fn manifest_path(backup: &Path) -> PathBuf {
    let mut s = backup.as_os_str().to_owned();
    s.push(".manifest.json");
    PathBuf::from(s)
}

/// The folder of a database: an injective encoding (see the module docs). Decoding is
/// unambiguous because kept characters never include `%` and `%` is always followed by
/// exactly two hex digits.
pub fn folder_name(database: &str) -> String {
    let mut out = String::with_capacity(database.len());
    for (i, c) in database.char_indices() {
        let keep = c.is_alphanumeric() || c == '_' || c == '-' || (c == '.' && i > 0);
        if keep {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// The database a folder holds, when the folder name is an encoding `folder_name` makes.
pub fn database_of_folder(folder: &str) -> Option<String> {
    let name = crate::util::percent_decode_strict(folder)?;
    (folder_name(&name) == folder).then_some(name)
}

/// The folder pgdrill before the injective encoding used: `/`, `\` and NUL replaced by `_`,
/// leading dots dropped. Only used to point at backups written there.
pub fn legacy_folder_name(database: &str) -> String {
    let cleaned: String = database.chars().map(|c| if c == '/' || c == '\\' || c == '\0' { '_' } else { c }).collect();
    cleaned.trim_start_matches('.').to_string()
}

impl Pending {
    pub fn file(&mut self) -> &mut File {
        // Present until commit consumes self.
        self.file.as_mut().unwrap_or_else(|| unreachable_file())
    }

    /// fsync, rename to a name no other backup has, fsync the directory. Returns the path.
    pub fn commit(mut self) -> io::Result<PathBuf> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let mut n = 0;
        loop {
            let name = match (self.exact, n) {
                (true, _) => self.stem.clone(),
                (false, 0) => format!("{}.{}", self.stem, self.ext),
                (false, _) => format!("{}-{n}.{}", self.stem, self.ext),
            };
            let target = self.dir.join(&name);
            match renameat2(AT_FDCWD, &self.tmp, AT_FDCWD, &target, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => {
                    self.tmp = PathBuf::new();
                    let _ = fs::remove_dir(&self.private);
                    untrack(&self.private);
                    File::open(&self.dir)?.sync_all()?;
                    return Ok(target);
                }
                Err(nix::errno::Errno::EEXIST) if self.exact => {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("{} exists already", target.display()),
                    ))
                }
                Err(nix::errno::Errno::EEXIST) if n < 1000 => n += 1,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
}

fn unreachable_file() -> &'static mut File {
    panic!("Pending used after commit")
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.private);
            untrack(&self.private);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn commit_is_atomic_private_and_never_replaces() {
        let t = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(t.path());
        let mut a = store.begin("app", "20261121T000000.000Z", "dump.pgdrill").expect("begin");
        a.file().write_all(b"one").expect("write");
        let mut b = store.begin("app", "20261121T000000.000Z", "dump.pgdrill").expect("begin");
        b.file().write_all(b"two").expect("write");
        let pa = a.commit().expect("commit");
        let pb = b.commit().expect("commit");
        assert_ne!(pa, pb);
        assert_eq!(fs::read(&pa).expect("read"), b"one");
        assert_eq!(fs::read(&pb).expect("read"), b"two");
        assert_eq!(fs::metadata(&pa).expect("meta").permissions().mode() & 0o777, 0o600);
        // Their manifests, the commit markers, are not written yet: not backups.
        assert_eq!(store.list(Some("app")).expect("list").len(), 0);
        assert_eq!(store.unfinished(Some("app")).expect("unfinished").len(), 2);
        for p in [&pa, &pb] {
            crate::storage::write_small(&manifest_path(p), b"{}").expect("manifest");
        }
        assert_eq!(store.list(Some("app")).expect("list").len(), 2);
        assert!(store.unfinished(None).expect("unfinished").is_empty());
    }

    /// Issue 35, case 4: an archive whose manifest was never written (pgdrill killed between
    /// the two) was listed as a backup (a `?` row) and could be taken as the latest. It is
    /// unfinished: never listed, found by `unfinished` with its own time, not its name's.
    #[test]
    fn an_archive_whose_manifest_was_never_written_is_unfinished_never_a_backup() {
        let t = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(t.path());
        let dir = store.folder("app");
        fs::create_dir_all(&dir).expect("dir");
        fs::write(dir.join("20261120T000000.000Z.dump.pgdrill"), b"old").expect("write");
        crate::storage::write_small(&dir.join("20261120T000000.000Z.dump.pgdrill.manifest.json"), b"{}").expect("m");
        fs::write(dir.join("20261121T000000.000Z.dump.pgdrill"), b"orphan").expect("write");
        let listed: Vec<String> = store.list(Some("app")).expect("list").into_iter().map(|e| e.name).collect();
        assert_eq!(listed, ["20261120T000000.000Z.dump.pgdrill"]);
        let left = store.unfinished(Some("app")).expect("unfinished");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "20261121T000000.000Z.dump.pgdrill");
        assert_eq!(left[0].made_from, MadeFrom::Mtime);
        assert!(OffsetDateTime::now_utc() - left[0].made < time::Duration::minutes(5), "its mtime, not its name");
        assert!(store.unfinished(Some("other")).expect("unfinished").is_empty());
    }

    #[test]
    fn folder_names_are_injective_readable_and_never_escape() {
        let names =
            ["app", "acct", ".acct", "a/b", "a_b", "a%2Fb", "..", ".", "a.b", "Grüße", "a b", "a\\b", "-x", "%"];
        let folders: Vec<String> = names.iter().map(|n| folder_name(n)).collect();
        let unique: std::collections::HashSet<&String> = folders.iter().collect();
        assert_eq!(unique.len(), names.len(), "{folders:?}");
        assert_eq!(folder_name("app"), "app");
        assert_eq!(folder_name("shop_eu-2.old"), "shop_eu-2.old");
        assert_eq!(folder_name(".acct"), "%2Eacct");
        assert_eq!(folder_name("a/b"), "a%2Fb");
        for (n, f) in names.iter().zip(&folders) {
            assert!(!f.contains('/') && !f.starts_with('.') && !f.is_empty(), "{n} -> {f}");
            assert_eq!(database_of_folder(f).as_deref(), Some(*n));
        }
        // Not an encoding this scheme makes: listed under its own name.
        assert_eq!(database_of_folder("a%2fb"), None);
    }

    /// A team's own name (issue 40, item 2) is published as it is, straight in the root,
    /// never as `-1`: a second file of that name is refused and the first left untouched.
    #[test]
    fn a_team_name_is_published_exactly_and_never_replaces_or_renames() {
        let t = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(t.path());
        let mut a = store.begin_named("shop_20261206_140509.sql.gz").expect("begin");
        a.file().write_all(b"one").expect("write");
        let mut b = store.begin_named("shop_20261206_140509.sql.gz").expect("begin");
        b.file().write_all(b"two").expect("write");
        let pa = a.commit().expect("commit");
        assert_eq!(pa, t.path().join("shop_20261206_140509.sql.gz"));
        let e = b.commit().expect_err("the name is taken");
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&pa).expect("read"), b"one");
        let visible: Vec<String> = fs::read_dir(t.path())
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(visible, ["shop_20261206_140509.sql.gz"]);
        for bad in ["", "a/b.sql", ".hidden.sql"] {
            assert!(store.begin_named(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_uncommitted_write_leaves_nothing() {
        let t = tempfile::tempdir().expect("tmp");
        let store = LocalStore::new(t.path());
        {
            let mut p = store.begin("app", "20261121T000000.000Z", "dump.pgdrill").expect("begin");
            p.file().write_all(b"partial").expect("write");
        }
        assert_eq!(fs::read_dir(t.path().join("app")).expect("dir").count(), 0);
    }

    /// No parser of the layout panics on hostile names (see `storage::remote`'s), and every
    /// name's folder decodes back to it.
    #[test]
    fn hostile_names_never_panic_any_layout_parser() {
        use super::names;
        for t in &crate::storage::tests::hostile_inputs() {
            let _ = names::parse(t);
            let _ = names::looks_like_backup(t);
            let _ = names::pgdrill_stamp(t);
            if let Some(p) = t.contains('{').then(|| names::NamePattern::parse(t).ok()).flatten() {
                let _ = p.matches(t);
            }
            let folder = folder_name(t);
            assert_eq!(database_of_folder(&folder).as_deref(), Some(t.as_str()), "{t:?}");
            let _ = database_of_folder(t);
            let _ = legacy_folder_name(t);
        }
        use std::os::unix::ffi::OsStrExt;
        for bytes in [&b"/tmp/\xff\xfe"[..], b"\xc3", b"s3://b/\xe2\x82", b"/tmp/\xc3\xa7\xc3"] {
            let _ = manifest_path(Path::new(std::ffi::OsStr::from_bytes(bytes)));
        }
    }
}
