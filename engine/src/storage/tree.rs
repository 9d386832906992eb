//! A location's view as a directory tree (`Store::local_view`), asked path by path: a local
//! directory's files, and an object store's mirror, where a listed object has no file until
//! something reads it (issue 41: a listing made a stand-in file per object, most of its
//! cost). The survey of backups (`backup::layout`) and the listing's columns ask here
//! instead of the filesystem, so both kinds of view answer the same. Reading an object's
//! bytes still goes through `remote::materialize`, which makes its file.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

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
    let listed = super::remote::unmade_children(dir);
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
    // A listed object without its file first: a lookup, where the filesystem would be asked
    // in vain once per listed object.
    if let Some((size, modified)) = super::remote::unmade(path) {
        return Some(Stat { size, modified, kind: Kind::File });
    }
    if let Ok(m) = std::fs::symlink_metadata(path) {
        return Some(Stat {
            size: m.len(),
            modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            kind: kind_of(m.file_type()),
        });
    }
    (!super::remote::unmade_children(path).is_empty()).then_some(Stat {
        size: 0,
        modified: SystemTime::UNIX_EPOCH,
        kind: Kind::Dir,
    })
}

/// Whether `path` is a file, a symlink followed (as `Path::is_file`).
pub fn is_file(path: &Path) -> bool {
    super::remote::unmade(path).is_some() || path.is_file()
}

/// Whether `path` is a directory, a symlink followed (as `Path::is_dir`).
pub fn is_dir(path: &Path) -> bool {
    path.is_dir() || (!path.exists() && !super::remote::unmade_children(path).is_empty())
}

/// `path`'s size in bytes, a symlink followed; 0 when nothing is there.
pub fn size(path: &Path) -> u64 {
    match super::remote::unmade(path) {
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
