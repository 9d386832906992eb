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
//! Adding a backend: one file implementing `Store`, and one line in `storage::location`'s
//! `BACKENDS`.

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

/// An object a writer published (`Writer::publish_new`): under which key, how many bytes
/// were sent, and the version the store gives it as computed from what was sent (S3's
/// multipart ETag), where there is one: what `Store::check_published` compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// Why a published object is not proven to hold what was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unproven {
    /// It could not be read back (the store's failure, not the object's): it stays, without
    /// its commit marker, for the caller's layout to name as unfinished.
    Unread(String),
    /// It differs from what was written: the caller removes it.
    Differs(String),
}

/// What lies directly under a folder of a store (`Store::children`): names, not keys,
/// each list sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Children {
    /// Folders: names that keys go on below (a directory of a local store; in an object
    /// store, which has no folders of its own, the part of keys before their next `/`).
    pub folders: Vec<String>,
    /// Objects right in the folder.
    pub objects: Vec<String>,
}

/// A location as a local directory tree, for the code that still lists and reads files
/// (`Store::local_view`).
#[derive(Debug, Clone)]
pub struct View {
    /// The directory to list.
    pub root: std::path::PathBuf,
    /// What the one listing that made the view saw, pgdrill's hidden objects included (a
    /// folder's ledger records), keys relative to the location: empty when the view is the
    /// location itself (a local directory, whose files are read where they are).
    pub listed: Vec<Meta>,
    /// The same root as a `Tree`: what a path found in it is shown as and read through,
    /// with the store in hand.
    pub tree: super::tree::Tree,
    /// What the operator must hear of the listing (an object left out of the view because
    /// no local file can have its name), for the caller to tell as its warnings: a store
    /// never prints.
    pub warnings: Vec<String>,
}

/// An unfinished upload found in the store.
#[derive(Debug, Clone)]
pub struct Abandoned {
    pub url: String,
    pub started: String,
    /// The upload had completed (its object is in the store) before its record was removed:
    /// a pgdrill killed between the two. Nothing is left to abort; the object is what the
    /// layout says it is (a backup, or an unfinished one without its manifest).
    pub completed: bool,
    pub(super) marker: String,
    pub(super) key: String,
    pub(super) id: String,
}

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
    /// As `publish`, for a name that must be new (a backup's, stamped to the millisecond,
    /// which another backup of the same millisecond may have taken meanwhile): where the key
    /// is taken, under the first free one of `others` instead. A store whose key is fixed
    /// once writing starts (an upload) publishes under its key, which the caller checked
    /// was free. Returns what was published, for `Store::check_published`.
    async fn publish_new(self: Box<Self>, others: &[String]) -> Result<Published>;
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

    /// The names directly under the folder `dir` (`""`: the location's root), one level:
    /// its folders and its objects (a report's dated pages, a history's records), without
    /// listing what lies deeper where the backend can tell (a delimiter, a directory). A
    /// folder that is not there holds nothing. pgdrill's working files are left out, as by
    /// `list`. The default gathers them from `list`.
    async fn children(&self, dir: &str) -> Result<Children> {
        Ok(children_of(self.list(&folder_prefix(dir)).await?, dir))
    }

    /// The object under `key`, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<Meta>>;

    /// `head`, as this run first saw `key` where the store keeps what it saw (an object
    /// store pins each object's version the first time a listing or a read sees it, and
    /// answers from its last listing without a request): what a read that must not mix two
    /// versions passes to `open`, so that an object replaced since it was first seen fails
    /// to read ("changed") instead of being judged under a manifest written for the other.
    /// The default is `head`.
    async fn head_pinned(&self, key: &str) -> Result<Option<Meta>> {
        self.head(key).await
    }

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

    /// The local file that is `key` itself (the store's root for `""`), where the store is
    /// a directory on this machine: for what needs a filesystem (a lock, an append under a
    /// lock, staging on the same disk). `None` for a store whose objects are elsewhere.
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        let _ = key;
        None
    }

    /// The location as a local directory tree to list and read files in: a local directory
    /// itself, or an object store's private view of it (sparse stand-ins made from one pass
    /// of LIST pages, their bytes read when something reads them: see remote.rs), with what
    /// that pass listed. What still reads backups as files reads them through this.
    async fn local_view(&self) -> Result<View> {
        Err(format!("{} cannot be read as a local directory", self.url()))
    }

    /// The local mirror of a store whose objects are elsewhere (an object store's private
    /// view, which `local_view` lists): what a run finds an object named by its URL or by its
    /// stand-in's path in (`storage::Opened::named_in`). `None` for a store that is itself
    /// local, or that offers no such view.
    fn local_mirror(&self) -> Option<std::sync::Arc<dyn super::tree::Mirror>> {
        None
    }

    /// Abort the uploads of this store still in flight (a stopped command, before the
    /// process exits: `storage::Opened::abort_uploads`). Nothing to do where an unpublished
    /// write leaves nothing behind (a local directory).
    async fn abort_uploads(&self) {}

    /// Prove that `p`, just published, holds what was written (`size` bytes whose sha256
    /// is `sha256`, hex): `None` where publishing is the proof (a local file, fsynced
    /// before its rename), else a line saying what was compared (an object read back, or,
    /// in an archive class nothing reads back, the store's metadata).
    async fn check_published(
        &self,
        p: &Published,
        size: u64,
        sha256: &str,
    ) -> std::result::Result<Option<String>, Unproven> {
        let _ = sha256;
        match p.size == size {
            true => Ok(None),
            false => Err(Unproven::Differs(format!(
                "{} holds {} bytes, but {size} bytes were written",
                self.url_of(&p.key),
                p.size
            ))),
        }
    }

    /// Uploads pgdrill started here more than `older_than` ago and never finished (a killed
    /// run's), which the store keeps (and bills) until they are aborted: none where a
    /// stopped write leaves nothing the store keeps (a local directory's private files are
    /// reaped by the next run).
    async fn abandoned(&self, older_than: std::time::Duration) -> Result<Vec<Abandoned>> {
        let _ = older_than;
        Ok(Vec::new())
    }

    /// End an upload `abandoned` returned: the store drops its parts, and its record goes.
    async fn abort_abandoned(&self, a: &Abandoned) -> Result<()> {
        Err(format!("{}: no upload of {} to abort here", self.url(), a.url))
    }

    /// Free and total bytes where the store writes: `None` when the backend has no such
    /// thing (an object store), an error when it has but cannot say.
    fn space(&self) -> Option<Result<Space>> {
        None
    }

    /// The archive storage class new objects go to when nothing can read them back until
    /// they are restored (S3 GLACIER, DEEP_ARCHIVE, Azure Archive): what is published there
    /// is checked from the store's metadata against what its writer sent (`check_published`)
    /// instead of a read-back. `None` for a store whose objects read back at once.
    fn archival_class(&self) -> Option<String> {
        None
    }
}

/// The prefix of the keys in the folder `dir` (`app` and `app/`: `app/`; the root: `""`).
pub(super) fn folder_prefix(dir: &str) -> String {
    match dir.trim_end_matches('/') {
        "" => String::new(),
        d => format!("{d}/"),
    }
}

/// What is right under the folder `dir`, from a listing of the keys below it (`list`).
pub(super) fn children_of(listed: Vec<Meta>, dir: &str) -> Children {
    let prefix = folder_prefix(dir);
    let mut out = Children::default();
    for m in listed {
        let Some(rest) = m.key.strip_prefix(&prefix) else { continue };
        match rest.split_once('/') {
            Some((folder, _)) => out.folders.push(folder.to_string()),
            None => out.objects.push(rest.to_string()),
        }
    }
    out.folders.sort();
    out.folders.dedup();
    out.objects.sort();
    out
}

/// The store's failure inside an I/O error from a store's reader (an object store's
/// `Remote::reader`): a read from an object store that failed is an environment
/// [`Failure`](crate::error::Failure) (the store's problem, not the backup's), carried
/// through the layers above as the I/O error's inner error.
pub fn store_failure(e: &std::io::Error) -> Option<&crate::error::Failure> {
    e.get_ref()
        .and_then(|i| i.downcast_ref::<crate::error::Failure>())
        .filter(|f| f.class == crate::error::Class::Environment)
}

/// Keeps the message of a store's read error, whatever the layers above make of it (they
/// turn a short read into "corrupted"): the caller asks it afterwards and reports the
/// store's failure instead.
pub struct Watched {
    pub inner: Box<dyn std::io::Read + Send>,
    pub failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl std::io::Read for Watched {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            if let Some(f) = store_failure(e) {
                *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(f.message.clone());
            }
        })
    }
}
