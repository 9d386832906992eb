//! Locations: which backend a location string names (`s3://...`, `gs://...`, `az://...`, or a
//! local directory) and opening it as a `Store`. The one table of backends is here, apart
//! from the `Store` contract (store.rs) that each backend implements, so that no backend's
//! file and the contract import each other.
//!
//! Adding a backend: one file implementing `Store`, its `pub mod` line in storage/mod.rs and
//! one line in `BACKENDS` below.

use std::sync::Arc;

use super::store::{Result, Store};

/// How a location with a scheme is opened: the text as given (options included).
type Opener = fn(&str) -> Result<Arc<dyn Store>>;

/// The backends that a location names by scheme (`s3://...`): one line per backend. A
/// location without one of these schemes is a local directory (or `file://`).
const BACKENDS: &[(&str, Opener)] = &[
    ("s3://", super::remote::open_store),
    ("gs://", super::remote::open_store),
    ("az://", super::remote::open_store),
    ("azure://", super::remote::open_store),
];

/// The backend `location` names by its scheme, if any.
fn backend(location: &str) -> Option<Opener> {
    let l = location.trim_start();
    // Compared as bytes: the first bytes of `/tmp/çà` may end inside a character.
    BACKENDS
        .iter()
        .find(|(s, _)| l.as_bytes().get(..s.len()).is_some_and(|p| p.eq_ignore_ascii_case(s.as_bytes())))
        .map(|(_, open)| *open)
}

/// Whether `location` names a store other than a local directory.
pub fn is_remote(location: &str) -> bool {
    backend(location).is_some()
}

/// Open `location`: an object store by its scheme, else the local directory it names
/// (`file://` stripped; a relative path is taken as it is, see `open_in`).
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    open_in(location, std::path::Path::new(""))
}

/// As `open`, a relative local path taken relative to `base` (a runbook's directory).
pub fn open_in(location: &str, base: &std::path::Path) -> Result<Arc<dyn Store>> {
    match backend(location) {
        Some(open) => open(location.trim()),
        None => Ok(Arc::new(super::local::FsStore::new(base.join(super::remote::local_path(location))))),
    }
}

/// The local directory `location` names (relative to `base`), or `None` for a store that
/// is not one: for what needs a filesystem (a lock, a safety snapshot a rollback must not
/// download).
pub fn local_dir_in(location: &str, base: &std::path::Path) -> Option<std::path::PathBuf> {
    match backend(location) {
        Some(_) => None,
        None => Some(base.join(super::remote::local_path(location))),
    }
}

/// How an object is named for good (a deployment record): an object's URL as it is, a local
/// file's canonical path (an error when it is not there).
pub fn canonical_in(location: &str, base: &std::path::Path) -> std::io::Result<String> {
    match local_dir_in(location, base) {
        None => Ok(location.trim().to_string()),
        Some(p) => std::fs::canonicalize(p).map(|p| p.display().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_location_without_a_backend_scheme_is_a_local_directory_relative_to_its_base() {
        let base = std::path::Path::new("/srv/runbooks");
        assert_eq!(open_in("backups", base).expect("opens").url(), "/srv/runbooks/backups");
        assert_eq!(open_in("file:///var/b", base).expect("opens").url(), "/var/b");
        assert_eq!(local_dir_in("/tmp/çà", base).as_deref(), Some(std::path::Path::new("/tmp/çà")));
        for remote in ["s3://b/p", " S3://b", "gs://b", "az://c/p", "azure://c"] {
            assert!(is_remote(remote), "{remote}");
            assert_eq!(local_dir_in(remote, base), None, "{remote}");
            assert_eq!(canonical_in(remote, base).expect("named"), remote.trim());
        }
        assert!(canonical_in("no-such-backup.dump", base).is_err(), "a missing local file was named");
    }

    #[test]
    fn schemes_are_recognized_and_local_paths_are_not() {
        for s in ["s3://b/p", "S3://b", "gs://b/x", "az://c/p", "azure://c"] {
            assert!(is_remote(s), "{s}");
        }
        for s in ["/srv/backups", "backups", "file:///srv", "s3", "./s3://x"] {
            assert!(!is_remote(s), "{s}");
        }
        // Compared as bytes: a location whose first bytes end inside a character.
        assert!(!is_remote("/tmp/çà") && !is_remote("/tmpçà") && is_remote("S3://b"));
        for t in &super::super::remote::tests::hostile_inputs() {
            let _ = is_remote(t);
            let _ = local_dir_in(t, std::path::Path::new("/srv"));
        }
    }
}
