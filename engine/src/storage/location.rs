//! Locations: which backend a location string names (`s3://...`, `gs://...`, `az://...`, or a
//! local directory) and opening it as a `Store`. The one table of backends is here, apart
//! from the `Store` contract (store.rs) that each backend implements, so that no backend's
//! file and the contract import each other.
//!
//! Adding a backend: one file implementing `Store`, its `pub mod` line in storage/mod.rs and
//! one line in `BACKENDS` below.

use std::sync::Arc;

use super::store::{Result, Store};

/// How a location with a scheme is opened: the text as given (options included), and
/// settings given for it instead of the environment (see `open_with`).
type Opener = fn(&str, &[(String, String)]) -> Result<Arc<dyn Store>>;

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

/// Open `location`: an object store by its scheme, else the local directory it names
/// (`file://` stripped; a relative path is taken as it is, see `open_in`).
pub fn open(location: &str) -> Result<Arc<dyn Store>> {
    open_in(location, std::path::Path::new(""))
}

/// As `open`, a relative local path taken relative to `base` (a runbook's directory).
pub fn open_in(location: &str, base: &std::path::Path) -> Result<Arc<dyn Store>> {
    match backend(location) {
        Some(open) => open(location.trim(), &[]),
        None => Ok(Arc::new(super::local::FsStore::new(base.join(super::remote::local_path(location))))),
    }
}

/// As `open`, an object store built with `settings` (`NAME`, value: AWS_*, AZURE_*,
/// GOOGLE_*) over the environment's: the store's own, for a process started without them
/// in its environment (`wal fetch` as a throwaway server's restore_command).
pub fn open_with(location: &str, settings: &[(String, String)]) -> Result<Arc<dyn Store>> {
    match backend(location) {
        Some(open) => open(location.trim(), settings),
        None => open(location),
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

/// The local directory `location` names (relative paths as they are), or `None` for a store
/// that is not one: for what only a directory on this machine can do (a lock, a fleet's
/// folder of reports, rekeying files in place).
pub fn local_dir(location: &str) -> Option<std::path::PathBuf> {
    local_dir_in(location, std::path::Path::new(""))
}

/// How an object is named for good (a deployment record): an object's URL as it is, a local
/// file's canonical path (an error when it is not there).
pub fn canonical_in(location: &str, base: &std::path::Path) -> std::io::Result<String> {
    match local_dir_in(location, base) {
        None => Ok(location.trim().to_string()),
        Some(p) => std::fs::canonicalize(p).map(|p| p.display().to_string()),
    }
}

/// The one object a step's text names (a backup): a file here, or an object in a store,
/// named by its URL or by the path of its stand-in in its store's local view. Callers ask
/// it for what they need (its whole bytes as a file, its header, a stream, its folder's
/// store); none asks which it is.
#[derive(Clone)]
pub struct Named {
    /// How it is shown: the URL as given, the object's URL for a stand-in, else the path.
    shown: String,
    at: At,
}

#[derive(Clone)]
enum At {
    File(std::path::PathBuf),
    Object(super::remote::Remote, String),
}

impl std::fmt::Debug for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// What `text` names, a relative path taken relative to `base` (a runbook's directory). An
/// object's URL that names no object is an error.
pub fn named_in(text: &str, base: &std::path::Path) -> Result<Named> {
    if backend(text).is_some() {
        let (r, key) = super::remote::locate(text)?;
        return Ok(Named { shown: text.trim().to_string(), at: At::Object(r, key) });
    }
    let path = base.join(super::remote::local_path(text));
    Ok(match super::remote::for_mirror(&path) {
        Some((r, key)) if !key.is_empty() => Named { shown: r.url_of(&key), at: At::Object(r, key) },
        _ => Named { shown: path.display().to_string(), at: At::File(path) },
    })
}

impl Named {
    /// How it is shown (never a credential: a location holds none).
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The whole of it as a local file: an object is downloaded into its store's private
    /// view, once per run; a file is itself.
    pub async fn local_file(&self) -> Result<std::path::PathBuf> {
        match &self.at {
            At::File(p) => Ok(p.clone()),
            At::Object(r, key) => r.fetch(key).await,
        }
    }

    /// Its first `head` bytes with its manifest beside it, as a local file: what a step
    /// that reads only an archive's header and manifest needs (an object not downloaded
    /// yet becomes a stand-in holding them; else `local_file`).
    pub async fn header_file(&self, head: u64) -> Result<std::path::PathBuf> {
        match &self.at {
            At::Object(r, key) if !r.is_fetched(key) => r.stand_in(key, head).await,
            _ => self.local_file().await,
        }
    }

    /// Where it is seen locally, reading nothing: the file, or its place in its store's local
    /// view (beside its folder's gathered ledger).
    pub fn view_path(&self) -> std::path::PathBuf {
        match &self.at {
            At::File(p) => p.clone(),
            At::Object(r, key) => r.mirror_root().join(key),
        }
    }

    /// The view its local file (`view_path`, `header_file`) is in: its store's mirror, with
    /// the store in hand, or the file's own directory.
    pub fn tree(&self) -> super::tree::Tree {
        match &self.at {
            At::File(p) => super::tree::Tree::local(p.parent().unwrap_or(std::path::Path::new("."))),
            At::Object(r, _) => super::tree::Tree::mirrored(Arc::new(r.clone())),
        }
    }

    /// The store holding it, and its folder's key there (`""` at the store's root): where
    /// what is written beside it goes (a ledger's record).
    pub fn folder(&self) -> (Arc<dyn Store>, String) {
        match &self.at {
            At::File(p) => {
                let dir = p.parent().unwrap_or(std::path::Path::new("."));
                let store: Arc<dyn Store> = Arc::new(super::local::FsStore::new(dir));
                (store, String::new())
            }
            At::Object(r, key) => {
                let store: Arc<dyn Store> = Arc::new(r.clone());
                (store, key.rsplit_once('/').map(|(f, _)| f.to_string()).unwrap_or_default())
            }
        }
    }

    /// It, read as a stream rather than downloaded: its local stand-in (its first `head`
    /// bytes, its manifest beside it) and readers of the object. `None` for a file here,
    /// and for an object already downloaded (read where it is).
    pub async fn streamed(&self, head: u64) -> Result<Option<Streamed>> {
        match &self.at {
            At::Object(r, key) if !r.is_fetched(key) => {
                let stand_in = r.stand_in(key, head).await?;
                Ok(Some(Streamed { stand_in, remote: r.clone(), key: key.clone() }))
            }
            _ => Ok(None),
        }
    }
}

/// An object to be read as a stream (`Named::streamed`).
pub struct Streamed {
    /// The object's size and first bytes, its manifest beside it.
    pub stand_in: std::path::PathBuf,
    remote: super::remote::Remote,
    key: String,
}

impl Streamed {
    /// Relative to its location.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// A blocking reader of the whole object (ranges a few at a time: memory stays bounded).
    pub async fn reader(&self) -> Result<Box<dyn std::io::Read + Send>> {
        self.remote.reader(&self.key).await.map(|(r, _)| r)
    }

    /// The object to be read from the start as often as needed (another tool's file, whose
    /// key derivations are each tried from the start).
    pub fn opener(&self) -> super::remote::StoreOpener {
        self.remote.opener(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a location names a backend by its scheme: what nothing outside these tests
    /// asks any more (see the scan below).
    fn is_remote(location: &str) -> bool {
        backend(location).is_some()
    }

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

    /// What a step's text names is asked for what the step needs, never whether it is
    /// remote: a local backup is its own file, header and view, in a folder whose store
    /// appends; a bad object URL is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_local_backup_named_by_its_path_is_its_own_file_header_and_view() {
        let t = tempfile::tempdir().expect("tmp");
        let base = t.path();
        std::fs::create_dir_all(base.join("app")).expect("dir");
        std::fs::write(base.join("app/x.dump"), b"x").expect("file");
        let n = named_in("app/x.dump", base).expect("named");
        let path = base.join("app/x.dump");
        assert_eq!(n.shown(), path.display().to_string());
        assert_eq!(n.local_file().await.expect("file"), path);
        assert_eq!(n.header_file(64).await.expect("header"), path);
        assert_eq!(n.view_path(), path);
        assert!(n.streamed(64).await.expect("streamed").is_none(), "a local file is read where it is");
        let (store, folder) = n.folder();
        assert_eq!(folder, "");
        assert_eq!(store.local_path("ledger.jsonl"), Some(base.join("app/ledger.jsonl")));
        assert_eq!(
            named_in("file:///srv/b/x.dump", base).expect("named").view_path(),
            std::path::Path::new("/srv/b/x.dump")
        );
        assert!(named_in("s3://", base).is_err(), "a URL naming no object");
        assert_eq!(local_dir("s3://b/p"), None);
        assert_eq!(local_dir("file:///srv"), Some(std::path::PathBuf::from("/srv")));
    }

    /// Issue 37: 15 to 19 places outside storage/ branched on `is_remote` (steps, the
    /// command line, doctor, physical), each choosing a backend's code path by hand. They
    /// ask a store or a location for what they need instead; this scan fails naming any file
    /// and line of engine/src outside storage/ that asks again.
    #[test]
    fn nothing_outside_storage_asks_whether_a_location_is_remote() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).expect("engine/src is readable").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        walk(&src, &mut files);
        let asked = ["is_", "remote("].concat();
        let mut found = Vec::new();
        for f in files.iter().filter(|f| !f.starts_with(src.join("storage"))) {
            let text = std::fs::read_to_string(f).expect("a source file");
            for (i, line) in text.lines().enumerate() {
                if line.contains(&asked) {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(files.iter().any(|f| f.ends_with("steps/mod.rs")), "the scan found no sources in {}", src.display());
        assert!(found.is_empty(), "ask the store or the location instead:\n{}", found.join("\n"));
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
