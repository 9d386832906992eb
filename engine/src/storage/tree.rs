//! A location's view as a directory tree (`Store::local_view`), asked path by path: a local
//! directory's files, and an object store's mirror, where a listed object has no file until
//! something reads it (issue 41: a listing made a stand-in file per object, most of its
//! cost). The survey of backups (`backup::layout`) and the listing's columns ask here
//! instead of the filesystem, so both kinds of view answer the same. Reading an object's
//! bytes goes through `Tree::materialize`, which makes its file.
//!
//! A `Tree` is the view as a value: its root and, for an object store, the store whose
//! mirror it is (`Mirror`). A path found in it is shown, read and asked about through the
//! tree, which holds the store: no lookup of the store by path in a process-wide table. A
//! bare path (`Tree::from(path)`, the free functions below) is a local path: a caller with
//! a path of a store's view holds that view's tree (or asks the run's `storage::Opened`,
//! which owns the stores it opened).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What a store whose objects are elsewhere keeps of them locally (an object store's sparse
/// mirror, remote.rs): implemented by the store over its own state, so a `Tree` asks the
/// store it holds, never a registry.
#[async_trait::async_trait]
pub trait Mirror: Send + Sync {
    /// The local directory the mirror lives in.
    fn root(&self) -> &Path;
    /// The store and the object's key a path under `root` stands for.
    fn object_of(&self, path: &Path) -> Option<(Arc<dyn super::Store>, String)>;
    /// Read from the store what the mirror file at `path` still lacks before it is read (a
    /// manifest's bytes, another tool's file's first bytes; the stand-in of a listed
    /// object); whether anything was read.
    fn materialize(&self, path: &Path) -> Result<bool, String>;
    /// Whether `path` is a file a listing made without reading its object.
    fn is_lazy(&self, path: &Path) -> bool;
    /// Write the object's first `n` bytes into its stand-in at `path` (an archive's header),
    /// `beside` the file a check of that head reads with it (its manifest, as the caller's
    /// layout names it: storage knows no backup's names).
    async fn fill_head(&self, path: &Path, n: u64, beside: &Path) -> Result<(), String>;
    /// Download the whole object at `path` into the mirror; its local file.
    async fn fetch(&self, path: &Path) -> Result<PathBuf, String>;
    /// Whether the whole object at `path` was downloaded into the mirror in this run.
    fn is_fetched(&self, path: &Path) -> bool;
    /// The object at `path` as a stand-in holding its first `head` bytes (an archive's
    /// header), its manifest beside it: what a streamed read needs locally.
    async fn stand_in(&self, path: &Path, head: u64) -> Result<PathBuf, String>;
    /// The object at `path` as a blocking reader of the whole of it (for a thread off the
    /// runtime), of the version this run first saw: memory stays bounded, nothing is
    /// written locally, a failed read is the store's (`store_failure`).
    async fn reader(&self, path: &Path) -> Result<Box<dyn io::Read + Send>, String>;
    /// The sha256 (hex) of the object at `path`, read from the store as a stream.
    async fn digest(&self, path: &Path) -> Result<String, String>;
    /// Whether `path` is a stand-in whose contents were not downloaded.
    fn is_stand_in(&self, path: &Path) -> bool;
    /// What the last listing said of a path no file stands in for yet: size and time.
    fn unmade(&self, path: &Path) -> Option<(u64, SystemTime)>;
    /// The names right below `dir` only the last listing knows, each with whether it is a
    /// folder.
    fn unmade_children(&self, dir: &Path) -> Vec<(String, bool)>;
}

/// A location's view to list and read (see the module docs): a local directory, or an
/// object store's mirror together with the store.
#[derive(Clone)]
pub struct Tree {
    root: PathBuf,
    backing: Backing,
}

#[derive(Clone)]
enum Backing {
    /// A directory on this machine: the filesystem answers.
    Local,
    /// An object store's mirror: the store answers for it.
    Mirror(Arc<dyn Mirror>),
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.display(&self.root))
    }
}

impl PartialEq for Tree {
    fn eq(&self, other: &Tree) -> bool {
        self.root == other.root
    }
}

impl Eq for Tree {}

impl Default for Tree {
    fn default() -> Tree {
        Tree::from(PathBuf::new())
    }
}

/// A path handed over without its store: a directory on this machine.
impl From<PathBuf> for Tree {
    fn from(root: PathBuf) -> Tree {
        Tree::local(root)
    }
}

impl From<&PathBuf> for Tree {
    fn from(root: &PathBuf) -> Tree {
        Tree::from(root.clone())
    }
}

impl From<&Path> for Tree {
    fn from(root: &Path) -> Tree {
        Tree::from(root.to_path_buf())
    }
}

impl From<&Tree> for Tree {
    fn from(t: &Tree) -> Tree {
        t.clone()
    }
}

/// What answers for one path of a tree.
enum Answer {
    Files,
    Mirror(Arc<dyn Mirror>),
}

impl Tree {
    /// A directory on this machine.
    pub fn local(root: impl Into<PathBuf>) -> Tree {
        Tree { root: root.into(), backing: Backing::Local }
    }

    /// An object store's mirror, answered for by the store itself.
    pub fn mirrored(mirror: Arc<dyn Mirror>) -> Tree {
        Tree { root: mirror.root().to_path_buf(), backing: Backing::Mirror(mirror) }
    }

    /// The directory to list.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How the view itself is shown: its location (a store's URL, a directory's path).
    pub fn shown(&self) -> String {
        self.display(&self.root)
    }

    /// The same view rooted at `dir` below it (a folder of it).
    pub fn at(&self, dir: impl Into<PathBuf>) -> Tree {
        Tree { root: dir.into(), backing: self.backing.clone() }
    }

    /// Who answers for `path`: the mirror when it is in it, the filesystem for anything
    /// else of a tree that has its store in hand.
    fn answer(&self, path: &Path) -> Answer {
        match &self.backing {
            Backing::Local => Answer::Files,
            Backing::Mirror(m) if path.starts_with(m.root()) => Answer::Mirror(m.clone()),
            Backing::Mirror(_) => Answer::Files,
        }
    }

    /// How `path` is shown: the object's URL for a path in an object store's mirror (the
    /// store's own for its root), else the path.
    pub fn display(&self, path: &Path) -> String {
        match self.answer(path) {
            Answer::Mirror(m) => match m.object_of(path) {
                Some((store, key)) => store.url_of(&key),
                None => path.display().to_string(),
            },
            Answer::Files => path.display().to_string(),
        }
    }

    /// The store and key `path` stands for, when it is an object's place in a store's mirror.
    pub fn object(&self, path: &Path) -> Option<(Arc<dyn super::Store>, String)> {
        match self.answer(path) {
            Answer::Mirror(m) => m.object_of(path),
            Answer::Files => None,
        }
    }

    /// Whether the tree is an object store's mirror (its paths stand for objects).
    pub fn is_mirror(&self) -> bool {
        matches!(self.backing, Backing::Mirror(_))
    }

    /// Make `path` ready to be read as a file (see `Mirror::materialize`); nothing to do for
    /// a local file. Blocking: from a thread of the multi-threaded runtime or one of its
    /// blocking threads.
    pub fn materialize(&self, path: &Path) -> Result<bool, String> {
        match self.answer(path) {
            Answer::Mirror(m) => m.materialize(path),
            Answer::Files => Ok(false),
        }
    }

    /// Whether `path` is a mirror file a listing made without reading its object.
    pub fn is_lazy(&self, path: &Path) -> bool {
        match self.answer(path) {
            Answer::Mirror(m) => m.is_lazy(path),
            Answer::Files => false,
        }
    }

    /// Whether `path` is a mirror stand-in whose contents were not downloaded.
    pub fn is_stand_in(&self, path: &Path) -> bool {
        match self.answer(path) {
            Answer::Mirror(m) => m.is_stand_in(path),
            Answer::Files => false,
        }
    }

    /// Write the first `n` bytes of the object `path` stands for into its stand-in (an
    /// archive's header, `beside` the file read with it: see `Mirror::fill_head`); nothing
    /// for a local file.
    pub async fn fill_head(&self, path: &Path, n: u64, beside: &Path) -> Result<(), String> {
        match self.answer(path) {
            Answer::Mirror(m) => m.fill_head(path, n, beside).await,
            Answer::Files => Ok(()),
        }
    }

    /// The whole of `path` as a local file: the object downloaded into the mirror, or the
    /// file itself.
    pub async fn fetch(&self, path: &Path) -> Result<PathBuf, String> {
        match self.answer(path) {
            Answer::Mirror(m) => m.fetch(path).await,
            Answer::Files => Ok(path.to_path_buf()),
        }
    }

    /// The sha256 of the object `path` stands for, read as a stream from its store; `None`
    /// for a local file.
    pub async fn digest(&self, path: &Path) -> Option<Result<String, String>> {
        match self.answer(path) {
            Answer::Mirror(m) => Some(m.digest(path).await),
            Answer::Files => None,
        }
    }

    fn unmade(&self, path: &Path) -> Option<(u64, SystemTime)> {
        match self.answer(path) {
            Answer::Mirror(m) => m.unmade(path),
            Answer::Files => None,
        }
    }

    fn unmade_children(&self, dir: &Path) -> Vec<(String, bool)> {
        match self.answer(dir) {
            Answer::Mirror(m) => m.unmade_children(dir),
            Answer::Files => Vec::new(),
        }
    }

    /// The entries of `dir`: see the free `read_dir`.
    pub fn read_dir(&self, dir: &Path) -> io::Result<Vec<Node>> {
        read_dir_with(dir, self.unmade_children(dir))
    }

    /// `path`'s size, time and kind: see the free `stat`.
    pub fn stat(&self, path: &Path) -> Option<Stat> {
        stat_with(path, self.unmade(path), || self.unmade_children(path))
    }

    /// Whether `path` is a file: see the free `is_file`.
    pub fn is_file(&self, path: &Path) -> bool {
        self.unmade(path).is_some() || path.is_file()
    }

    /// Whether `path` is a directory: see the free `is_dir`.
    pub fn is_dir(&self, path: &Path) -> bool {
        path.is_dir() || (!path.exists() && !self.unmade_children(path).is_empty())
    }

    /// `path`'s size in bytes: see the free `size`.
    pub fn size(&self, path: &Path) -> u64 {
        match self.unmade(path) {
            Some((n, _)) => n,
            None => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        }
    }
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// A socket, a device...: never a backup.
    Other,
}

/// One entry of a directory.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub path: PathBuf,
    pub kind: Kind,
}

/// A path's size, time and kind, without following a symlink.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    pub size: u64,
    pub modified: SystemTime,
    pub kind: Kind,
}

fn kind_of(ft: std::fs::FileType) -> Kind {
    if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_dir() {
        Kind::Dir
    } else if ft.is_file() {
        Kind::File
    } else {
        Kind::Other
    }
}

/// The entries of `dir` (its files, and the listed objects no file stands in for yet), in
/// no particular order. A missing directory is `NotFound`, as `fs::read_dir` says.
pub fn read_dir(dir: &Path) -> io::Result<Vec<Node>> {
    read_dir_with(dir, Tree::from(dir).unmade_children(dir))
}

/// `read_dir`, given what the listing knows below `dir`.
fn read_dir_with(dir: &Path, listed: Vec<(String, bool)>) -> io::Result<Vec<Node>> {
    let mut out = Vec::new();
    match std::fs::read_dir(dir) {
        Ok(rd) => {
            for e in rd.flatten() {
                let Ok(ft) = e.file_type() else { continue };
                out.push(Node {
                    name: e.file_name().to_string_lossy().into_owned(),
                    path: e.path(),
                    kind: kind_of(ft),
                });
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !listed.is_empty() => {}
        Err(e) => return Err(e),
    }
    for (name, is_dir) in listed {
        if out.iter().any(|n| n.name == name) {
            continue;
        }
        let kind = if is_dir { Kind::Dir } else { Kind::File };
        out.push(Node { path: dir.join(&name), name, kind });
    }
    Ok(out)
}

/// `path`'s size, time and kind (a symlink is not followed), or None when nothing is there.
pub fn stat(path: &Path) -> Option<Stat> {
    stat_with(path, Tree::from(path).unmade(path), || Tree::from(path).unmade_children(path))
}

/// `stat`, given what the listing said of `path` and, asked only when needed, below it.
fn stat_with(
    path: &Path,
    unmade: Option<(u64, SystemTime)>,
    children: impl FnOnce() -> Vec<(String, bool)>,
) -> Option<Stat> {
    // A listed object without its file first: a lookup, where the filesystem would be asked
    // in vain once per listed object.
    if let Some((size, modified)) = unmade {
        return Some(Stat { size, modified, kind: Kind::File });
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        return Some(Stat {
            size: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            kind: kind_of(m.file_type()),
        });
    }
    (!children().is_empty()).then_some(Stat { size: 0, modified: SystemTime::UNIX_EPOCH, kind: Kind::Dir })
}

/// Whether `path` is a file, a symlink followed (as `Path::is_file`).
pub fn is_file(path: &Path) -> bool {
    Tree::from(path).unmade(path).is_some() || path.is_file()
}

/// Whether `path` is a directory, a symlink followed (as `Path::is_dir`).
pub fn is_dir(path: &Path) -> bool {
    path.is_dir() || (!path.exists() && !Tree::from(path).unmade_children(path).is_empty())
}

/// `path`'s size in bytes, a symlink followed; 0 when nothing is there.
pub fn size(path: &Path) -> u64 {
    match Tree::from(path).unmade(path) {
        Some((n, _)) => n,
        None => std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_is_answered_by_the_filesystem() {
        let t = tempfile::tempdir().expect("tmp");
        std::fs::create_dir(t.path().join("app")).expect("mkdir");
        std::fs::write(t.path().join("app/a.sql.gz"), b"12345").expect("write");
        let mut names: Vec<(String, Kind)> =
            read_dir(t.path()).expect("dir").into_iter().map(|n| (n.name, n.kind)).collect();
        names.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(names, vec![("app".to_string(), Kind::Dir)]);
        assert!(is_dir(&t.path().join("app")) && is_file(&t.path().join("app/a.sql.gz")));
        assert_eq!(size(&t.path().join("app/a.sql.gz")), 5);
        assert!(stat(&t.path().join("app/missing")).is_none());
        assert_eq!(read_dir(&t.path().join("missing")).map_err(|e| e.kind()).err(), Some(io::ErrorKind::NotFound));
    }
}
