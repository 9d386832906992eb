//! The `Store` seam: what pgdrill asks of any place that holds objects (a local directory, an
//! S3 bucket, an Azure container, a GCS bucket). Keys are `/`-separated and relative to the
//! location (`app/20261121T154500.123Z.dump.pgdrill`); what a key means (an archive, its
//! manifest, a ledger record) is backup/'s business, never the store's.
//!
//! Every implementation owns its state (its root, its client, the versions it has seen) and
//! promises the same things:
//! - nothing appears under a key until a writer publishes it; an aborted or dropped writer
//!   leaves nothing under it;
//! - `put_new` never replaces an object;
//! - a read may be pinned to the version a listing or `head` saw (where the backend has
//!   versions), so an object replaced mid-run fails to read instead of mixing two versions;
//! - errors are one line that names the object and what to change, never a credential.
//!
//! Adding a backend: one file implementing `Store`, and one line in `BACKENDS` below.

use std::sync::Arc;

/// An object as a listing or `head` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Relative to the location.
    pub key: String,
    pub size: u64,
    pub modified: std::time::SystemTime,
    /// The backend's version of the object (an ETag), when it has one: pass it to `open`
    /// to read that version and no other.
    pub version: Option<String>,
}

/// Free and total bytes of where a store writes, where that is knowable (a filesystem).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub free: u64,
    pub total: u64,
}

/// The result of a store call: the error is one line for a person (see the module docs).
pub type Result<T> = std::result::Result<T, String>;

/// An object being written. Bytes go in through `Write` (from a blocking thread: a remote
/// writer hands its parts to the runtime); nothing is visible under the key until `publish`.
/// Dropped without `publish`, it is aborted.
#[async_trait::async_trait]
pub trait Writer: std::io::Write + Send {
    /// Make the object visible under its key. Returns the bytes written. A key that is
    /// already taken is an error where the backend can tell (a local file is never replaced).
    async fn publish(self: Box<Self>) -> Result<u64>;
    /// Drop what was written: nothing stays under the key, nor in the backend's parts.
    async fn abort(self: Box<Self>);
}

/// A place that holds objects. See the module docs for what every implementation promises.
#[async_trait::async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// How the location is shown (`s3://bucket/prefix`, `/srv/backups`): never a credential,
    /// never options.
    fn url(&self) -> String;

    /// How an object is shown.
    fn url_of(&self, key: &str) -> String {
        let base = self.url();
        if key.is_empty() {
            base
        } else {
            format!("{}/{key}", base.trim_end_matches('/'))
        }
    }

    /// Whether the store answers within its timeout (the bucket exists, the credentials are
    /// taken). Called before anything that holds a resource while it waits.
    async fn probe(&self) -> Result<()>;

    /// Every object whose key starts with `prefix` (`""`: all), in no particular order.
    /// Working files of pgdrill's own (`.pgdrill-*`) are not objects and are left out.
    async fn list(&self, prefix: &str) -> Result<Vec<Meta>>;

    /// The object under `key`, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<Meta>>;

    /// A blocking reader of `key` (for a thread off the runtime), of `range` when given,
    /// of the version `version` when given (where the backend has versions). Memory stays
    /// bounded whatever the object's size.
    async fn open(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        version: Option<&str>,
    ) -> Result<Box<dyn std::io::Read + Send>>;

    /// The whole of a small object (a manifest, a ledger record).
    async fn read(&self, key: &str) -> Result<Vec<u8>>;

    /// Start writing `key`: see `Writer`.
    async fn create(&self, key: &str) -> Result<Box<dyn Writer>>;

    /// Create a small object; never replaces one (an error names the taken key).
    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<()>;

    /// Write a small object, replacing what is there: only for views meant to be the
    /// latest (a report's `report.html`), never for backups, manifests or ledger records.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()>;

    /// Delete `key`; a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Copy `from` to `to` inside the store, whole or not at all.
    async fn copy(&self, from: &str, to: &str) -> Result<()>;

    /// Free and total bytes where the store writes: `None` when the backend has no such
    /// thing (an object store), an error when it has but cannot say.
    fn space(&self) -> Option<Result<Space>> {
        None
    }
}

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
}
