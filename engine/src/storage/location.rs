//! Locations: which backend a location string names (`s3://...`, `gs://...`, `az://...`, or a
//! local directory) and opening it as a `Store`. The one table of backends is here, apart
//! from the `Store` contract (store.rs) that each backend implements, so that no backend's
//! file and the contract import each other.
//!
//! Adding a backend: one file implementing `Store`, its `pub mod` line in storage/mod.rs and
//! one line in `BACKENDS` below.

use std::sync::{Arc, Mutex};

use super::store::{Result, Store, Watched};
use super::tree::Mirror;

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
    /// An object: its store's mirror (which reads it), and where it stands there.
    Object(Object),
}

/// An object of a store with a local mirror (`Store::local_mirror`): any backend that has
/// one, never a particular backend's type.
#[derive(Clone)]
struct Object {
    mirror: Arc<dyn Mirror>,
    store: Arc<dyn Store>,
    key: String,
}

impl Object {
    /// The object `key` of `store`, which must offer a local mirror to be read by a step.
    fn of(store: Arc<dyn Store>, key: String) -> Result<Object> {
        let mirror = store.local_mirror().ok_or_else(|| {
            format!("{} cannot be read by a step: its store offers no local view", store.url_of(&key))
        })?;
        Ok(Object { mirror, store, key })
    }

    /// Its place in the mirror (its stand-in's or its download's path).
    fn path(&self) -> std::path::PathBuf {
        self.mirror.root().join(&self.key)
    }
}

impl std::fmt::Debug for Named {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// The object stores one run (or one command) opened, each once, by the text that named
/// it (and the settings given for it): what keeps a run's reads of an object pinned to the
/// version it first saw across steps, lets a later step name an object by its URL or by
/// its stand-in's path in a view an earlier step listed, and whose uploads in flight the
/// run aborts when it is stopped (`abort_uploads`). The run owns it (the executor hands it
/// to every step's context, the command line to its own openers), so nothing of it is
/// process-wide: two runs in one process, or two stores of one URL given different
/// settings, keep apart. Clones share the set.
#[derive(Clone, Default)]
pub struct Opened(Arc<std::sync::Mutex<Vec<Entry>>>);

/// One opened store: the text and settings that named it, and the store.
struct Entry {
    location: String,
    settings: Vec<(String, String)>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries().iter().map(|e| e.store.url())).finish()
    }
}

impl Opened {
    fn entries(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store `location` names by its scheme (`open`), with `settings`: the one this run
    /// opened for the same text and settings, else opened now and kept.
    fn opened(&self, open: Opener, location: &str, settings: &[(String, String)]) -> Result<Arc<dyn Store>> {
        let location = location.trim();
        let same = |e: &Entry| e.location == location && e.settings == settings;
        if let Some(e) = self.entries().iter().find(|e| same(e)) {
            return Ok(e.store.clone());
        }
        let store = open(location, settings)?;
        let mut entries = self.entries();
        // Opened meanwhile by another step: that one, so both share one view.
        if let Some(e) = entries.iter().find(|e| same(e)) {
            return Ok(e.store.clone());
        }
        entries.push(Entry { location: location.to_string(), settings: settings.to_vec(), store: store.clone() });
        Ok(store)
    }

    /// As `storage::open_in`, an object store opened once per run (see the type's docs).
    pub fn open_in(&self, location: &str, base: &std::path::Path) -> Result<Arc<dyn Store>> {
        self.open_with_in(location, &[], base)
    }

    /// As `storage::open_with`, an object store opened once per run for these settings.
    pub fn open_with(&self, location: &str, settings: &[(String, String)]) -> Result<Arc<dyn Store>> {
        self.open_with_in(location, settings, std::path::Path::new(""))
    }

    fn open_with_in(
        &self,
        location: &str,
        settings: &[(String, String)],
        base: &std::path::Path,
    ) -> Result<Arc<dyn Store>> {
        match backend(location) {
            Some(open) => self.opened(open, location, settings),
            None => open_in(location, base),
        }
    }

    /// What `text` names, a relative path taken relative to `base` (a runbook's directory):
    /// an object by its URL (in a location this run opened that holds it, else its folder
    /// opened now), an object by its stand-in's path in the view of a location this run
    /// opened, else a file. An object's URL that names no object is an error.
    pub fn named_in(&self, text: &str, base: &std::path::Path) -> Result<Named> {
        if backend(text).is_some() {
            let (store, key) = self.locate(text)?;
            return Ok(Named { shown: text.trim().to_string(), at: At::Object(Object::of(store, key)?) });
        }
        let path = base.join(super::remote::local_path(text));
        let found = self.entries().iter().find_map(|e| {
            let mirror = e.store.local_mirror()?;
            let (store, key) = mirror.object_of(&path)?;
            Some(Object { mirror, store, key })
        });
        Ok(match found {
            Some(o) if !o.key.is_empty() => Named { shown: o.store.url_of(&o.key), at: At::Object(o) },
            _ => Named { shown: path.display().to_string(), at: At::File(path) },
        })
    }

    /// The location and key of an object's URL: the longest location this run opened that
    /// holds it, else its folder opened now (options and credentials from the environment).
    fn locate(&self, url: &str) -> Result<(Arc<dyn Store>, String)> {
        let url = url.trim();
        let held = self
            .entries()
            .iter()
            // A store given settings of its own is its caller's alone.
            .filter(|e| e.settings.is_empty() && url.starts_with(&format!("{}/", e.store.url())))
            .max_by_key(|e| e.store.url().len())
            .map(|e| e.store.clone());
        if let Some(s) = held {
            let key = url[s.url().len() + 1..].to_string();
            return Ok((s, key));
        }
        let (folder, name) = url.rsplit_once('/').ok_or_else(|| format!("`{url}` names no object"))?;
        if name.is_empty() || folder.ends_with(':') || folder.ends_with("//") {
            return Err(format!("`{url}` names no object: give the URL of a backup"));
        }
        let open = backend(folder).ok_or_else(|| format!("`{url}` names no object"))?;
        Ok((self.opened(open, folder, &[])?, name.to_string()))
    }

    /// Abort the multipart uploads still in flight in every store this run opened (a
    /// stopped run, before the process exits): nothing it started stays in a bucket.
    pub async fn abort_uploads(&self) {
        let stores: Vec<Arc<dyn Store>> = self.entries().iter().map(|e| e.store.clone()).collect();
        for s in stores {
            s.abort_uploads().await;
        }
    }
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
            At::Object(o) => o.mirror.fetch(&o.path()).await,
        }
    }

    /// Its first `head` bytes with its manifest beside it, as a local file: what a step
    /// that reads only an archive's header and manifest needs (an object not downloaded
    /// yet becomes a stand-in holding them; else `local_file`).
    pub async fn header_file(&self, head: u64) -> Result<std::path::PathBuf> {
        match &self.at {
            At::Object(o) if !o.mirror.is_fetched(&o.path()) => o.mirror.stand_in(&o.path(), head).await,
            _ => self.local_file().await,
        }
    }

    /// Where it is seen locally, reading nothing: the file, or its place in its store's local
    /// view (beside its folder's gathered ledger).
    pub fn view_path(&self) -> std::path::PathBuf {
        match &self.at {
            At::File(p) => p.clone(),
            At::Object(o) => o.path(),
        }
    }

    /// Where a parallel restore of it stages the plaintext when no `staging` is given: beside a
    /// file here; for an object in a store, the system's temporary directory (a streamed
    /// object is staged there by `backup::restore`, a downloaded one beside its copy in the
    /// store's mirror, which is there too). What `restore.preflight` measures the free space
    /// of, so the check is of the disk the restore will fill.
    pub fn staging_dir(&self) -> std::path::PathBuf {
        match &self.at {
            At::File(p) => p.parent().map(std::path::Path::to_path_buf).unwrap_or_else(|| ".".into()),
            At::Object(_) => std::env::temp_dir(),
        }
    }

    /// The view its local file (`view_path`, `header_file`) is in: its store's mirror, with
    /// the store in hand, or the file's own directory.
    pub fn tree(&self) -> super::tree::Tree {
        match &self.at {
            At::File(p) => super::tree::Tree::local(p.parent().unwrap_or(std::path::Path::new("."))),
            At::Object(o) => super::tree::Tree::mirrored(o.mirror.clone()),
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
            At::Object(o) => (o.store.clone(), o.key.rsplit_once('/').map(|(f, _)| f.to_string()).unwrap_or_default()),
        }
    }

    /// The store holding it and its key there (a file here: a name in its own directory):
    /// for what is read through the `Store` alone, with no local file made (an object beside
    /// it, named by the caller's layout: its manifest).
    pub fn object(&self) -> (Arc<dyn Store>, String) {
        match &self.at {
            At::File(p) => {
                let dir = p.parent().unwrap_or(std::path::Path::new("."));
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let store: Arc<dyn Store> = Arc::new(super::local::FsStore::new(dir));
                (store, name)
            }
            At::Object(o) => (o.store.clone(), o.key.clone()),
        }
    }

    /// Its first `n` bytes (fewer when it is shorter), read through its store with nothing
    /// written locally: what tells a backup's format. A file here that cannot be read as one
    /// (a directory dump, a missing file) has none, and is told apart by what reads it
    /// next; an object that is not there, or a store that cannot answer, is an error.
    pub async fn first_bytes(&self, n: u64) -> Result<Vec<u8>> {
        use std::io::Read;
        let (store, key) = match &self.at {
            At::File(p) => {
                let mut head = Vec::new();
                let _ = std::fs::File::open(p).and_then(|f| f.take(n).read_to_end(&mut head));
                return Ok(head);
            }
            At::Object(o) => (o.store.clone(), o.key.clone()),
        };
        let seen = seen_in(&*store, &key).await?;
        first_of(&*store, &key, &seen, n).await
    }

    /// It, read as a stream rather than downloaded: what its store says of it (its size,
    /// time and the version this run first saw) and its first `head` bytes, read by a range
    /// of that version, with nothing written locally; every later read of it is of that
    /// version too. `None` for a file here, and for an object already downloaded (read
    /// where it is).
    pub async fn streamed(&self, head: u64) -> Result<Option<Streamed>> {
        match &self.at {
            At::Object(o) if !o.mirror.is_fetched(&o.path()) => {
                let seen = seen_in(&*o.store, &o.key).await?;
                let first = first_of(&*o.store, &o.key, &seen, head).await?;
                Ok(Some(Streamed { store: o.store.clone(), key: o.key.clone(), seen, first }))
            }
            _ => Ok(None),
        }
    }
}

/// What `store` says of the object `key`, its version the one this run first saw
/// (`Store::head_pinned`); an object that is not there is an error.
async fn seen_in(store: &dyn Store, key: &str) -> Result<super::Meta> {
    store.head_pinned(key).await?.ok_or_else(|| format!("{} does not exist", store.url_of(key)))
}

/// The first `n` bytes of the version `seen` of `key` (fewer when it is shorter): a range of
/// that version, so a replaced object fails to read, never mixes.
async fn first_of(store: &dyn Store, key: &str, seen: &super::Meta, n: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    let shown = store.url_of(key);
    let r = store.open(key, Some(0..n.min(seen.size)), seen.version.as_deref()).await?;
    tokio::task::spawn_blocking(move || {
        let mut head = Vec::new();
        r.take(n).read_to_end(&mut head).map(|_| head)
    })
    .await
    .map_err(|e| format!("reading {shown}: {e}"))?
    .map_err(|e| format!("reading {shown}: {e}"))
}

/// An object to be read as a stream (`Named::streamed`): what its store said of it and its
/// first bytes, never a local file.
pub struct Streamed {
    store: Arc<dyn Store>,
    key: String,
    /// Its size, time and version as its store gave them: every read of it is of that version.
    pub seen: super::Meta,
    /// Its first bytes (as many as `Named::streamed` was asked for, fewer when it is shorter).
    pub first: Vec<u8>,
}

impl Streamed {
    /// Relative to its location.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Its store: what is beside it (its manifest) is read there.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// How it is shown: its URL.
    pub fn shown(&self) -> String {
        self.store.url_of(&self.key)
    }

    /// A blocking reader of the whole object (ranges a few at a time: memory stays bounded).
    pub async fn reader(&self) -> Result<Box<dyn std::io::Read + Send>> {
        self.store.open(&self.key, Some(0..self.seen.size), self.seen.version.as_deref()).await
    }

    /// The object to be read from the start as often as needed (another tool's file, whose
    /// key derivations are each tried from the start).
    pub fn opener(&self) -> StoreOpener {
        StoreOpener {
            store: self.store.clone(),
            key: self.key.clone(),
            seen: self.seen.clone(),
            handle: tokio::runtime::Handle::current(),
            failed: Arc::default(),
        }
    }
}

/// Another tool's file in a store, read as a stream as many times as its layers need
/// (openssl's key derivations are each tried from the start): each `open` is a new read of
/// the version first seen (`Streamed::opener`). For a blocking thread; a store's failure in
/// any of them is kept in `failed`.
#[derive(Clone)]
pub struct StoreOpener {
    store: Arc<dyn Store>,
    key: String,
    seen: super::Meta,
    handle: tokio::runtime::Handle,
    pub failed: Arc<Mutex<Option<String>>>,
}

impl StoreOpener {
    pub fn open(&self) -> Result<Box<dyn std::io::Read + Send>> {
        let opened = self.store.open(&self.key, Some(0..self.seen.size), self.seen.version.as_deref());
        let r = self.handle.block_on(opened)?;
        Ok(Box::new(Watched { inner: r, failed: self.failed.clone() }))
    }

    /// What the store said, if a read failed.
    pub fn store_failed(&self) -> Option<String> {
        self.failed.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
        let opened = Opened::default();
        let n = opened.named_in("app/x.dump", base).expect("named");
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
            opened.named_in("file:///srv/b/x.dump", base).expect("named").view_path(),
            std::path::Path::new("/srv/b/x.dump")
        );
        assert!(opened.named_in("s3://", base).is_err(), "a URL naming no object");
        assert_eq!(local_dir("s3://b/p"), None);
        assert_eq!(local_dir("file:///srv"), Some(std::path::PathBuf::from("/srv")));
    }

    /// Issue 37: the opened object stores sat in one process-wide table (`OPEN`), found again
    /// by the text that named them: a store opened with settings given for it (`wal fetch`'s
    /// credentials file) was handed to any later opening of the same URL, whatever its
    /// settings, and a path of one run's view was resolved through whichever store of the
    /// process held it. Each run owns the stores it opened (`Opened`); nothing is found
    /// through another run's, another setting's, or a bare path.
    #[test]
    fn stores_opened_for_one_url_stay_apart_across_runs_and_settings_and_a_view_path_resolves_only_in_its_run() {
        let location = "s3://opened-apart/p?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1";
        let (run, other) = (Opened::default(), Opened::default());
        let mirror_of = |s: Arc<dyn Store>| s.local_mirror().expect("an object store's mirror").root().to_path_buf();
        let a = mirror_of(run.open_with(location, &[]).expect("opens without a request"));
        // One run, one text, no settings: one store (one view, one set of pinned versions).
        assert_eq!(mirror_of(run.open_with(location, &[]).expect("opens")), a);
        let given = vec![("AWS_REGION".to_string(), "eu-west-1".to_string())];
        let b = mirror_of(run.open_with(location, &given).expect("opens"));
        assert_ne!(b, a, "a store given its own settings was handed another's");
        let c = mirror_of(other.open_with(location, &[]).expect("opens"));
        assert_ne!(c, a, "another run was handed this run's store");
        // A stand-in's path in this run's view names its object here, and only here.
        let p = a.join("app/x.dump.pgdrill");
        let text = p.display().to_string();
        let root = std::path::Path::new("/");
        assert_eq!(run.named_in(&text, root).expect("named").shown(), "s3://opened-apart/p/app/x.dump.pgdrill");
        assert_eq!(other.named_in(&text, root).expect("named").shown(), text, "resolved through another run's store");
        let bare = super::super::tree::Tree::from(p.clone());
        assert!(!bare.is_mirror() && bare.display(&p) == text, "a bare path found a store");
        // An object's URL is found in the store this run opened for its location.
        let n = run.named_in("s3://opened-apart/p/app/x.dump.pgdrill", root).expect("named");
        assert_eq!(n.view_path(), p, "the URL was not found in the run's own view");
    }

    /// Issue 37: `restore.preflight` measured the free space of an object's place in the
    /// store's mirror while the restore stages a streamed object in the temporary directory:
    /// the check and the restore now name the same directory.
    #[test]
    fn an_objects_staging_directory_is_the_temporary_directory_a_files_is_beside_it() {
        let run = Opened::default();
        let root = std::path::Path::new("/srv/backups");
        run.open_with("s3://staging-dir/p?endpoint=http://127.0.0.1:9&allow_http=true&region=us-east-1", &[])
            .expect("opens without a request");
        let object = run.named_in("s3://staging-dir/p/app/x.dump.pgdrill", root).expect("named");
        assert_eq!(object.staging_dir(), std::env::temp_dir());
        assert_ne!(object.staging_dir(), object.view_path().parent().expect("a folder"), "the mirror's folder");
        let file = run.named_in("app/x.dump.pgdrill", root).expect("named");
        assert_eq!(file.staging_dir(), root.join("app"));
    }

    /// Issue 37: 15 to 19 places outside storage/ branched on `is_remote` (steps, the
    /// command line, doctor, physical), each choosing a backend's code path by hand. They
    /// ask a store or a location for what they need instead; this scan fails naming any file
    /// and line of engine/src outside storage/ that asks again.
    #[test]
    fn nothing_outside_storage_asks_whether_a_location_is_remote() {
        let found = outside_storage_lines_with(&["is_", "remote("].concat());
        assert!(found.is_empty(), "ask the store or the location instead:\n{}", found.join("\n"));
    }

    /// Issue 37: report/remote.rs (its pages and history) and doctor's storage check held
    /// remote.rs's `Remote` to list one level (`names_in`), which the `Store` trait lacked,
    /// so a new backend could not be reported to or checked. They list through the trait
    /// (`Store::children`) now; this scan fails naming any file and line of engine/src
    /// outside storage/ that reaches into remote.rs again.
    #[test]
    fn nothing_outside_storage_reaches_into_the_object_store_backend() {
        let found = outside_storage_lines_with(&["storage::", "remote::"].concat());
        assert!(found.is_empty(), "open a location through `storage` and use the `Store` trait:\n{}", found.join("\n"));
    }

    /// Every line of engine/src outside storage/ that holds `needle`, as `file:line: text`.
    fn outside_storage_lines_with(needle: &str) -> Vec<String> {
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
        assert!(files.iter().any(|f| f.ends_with("steps/mod.rs")), "the scan found no sources in {}", src.display());
        let mut found = Vec::new();
        for f in files.iter().filter(|f| !f.starts_with(src.join("storage"))) {
            let text = std::fs::read_to_string(f).expect("a source file");
            for (i, line) in text.lines().enumerate() {
                if line.contains(needle) {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
        found
    }

    /// Issue 37: storage/ kept the process's list of partial files to remove at exit
    /// (`storage::PARTIALS`), a global beside stores that each own their state. The list is
    /// the process's (`on_exit`); this scan fails naming any file and line of storage/ that
    /// declares process-wide state again.
    #[test]
    fn storage_holds_no_process_wide_state() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/storage");
        // Split, so that this file does not find itself.
        let item = ["sta", "tic "].concat();
        let anywhere = [["Once", "Lock"].concat(), ["Lazy", "Lock"].concat(), ["thread_", "local!"].concat()];
        let mut found = Vec::new();
        let mut files = 0;
        for e in std::fs::read_dir(&dir).expect("storage/ is readable").flatten() {
            let f = e.path();
            if f.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&f).expect("a source file");
            for (i, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or_default();
                let declared = code.trim_start().trim_start_matches("pub(crate) ").trim_start_matches("pub ");
                if declared.starts_with(item.as_str()) || anywhere.iter().any(|n| code.contains(n.as_str())) {
                    found.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
                }
            }
        }
        assert!(files > 5, "the scan found no sources in {}", dir.display());
        assert!(
            found.is_empty(),
            "a store owns its state, the process's exit list is `on_exit`:\n{}",
            found.join("\n")
        );
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
        for t in &super::super::tests::hostile_inputs() {
            let _ = is_remote(t);
            let _ = local_dir_in(t, std::path::Path::new("/srv"));
        }
    }
}
