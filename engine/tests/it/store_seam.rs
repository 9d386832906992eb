//! The `Store` seam from outside (issue 37, part 1): `backup::create` writes into whatever
//! store it is given, through that store's `Writer`, and asks the store to prove what it
//! published; it never takes a local path of its own nor asks which backend it has.

use std::io::Write;
use std::sync::{Arc, Mutex};

use pgdrill::testkit::storage::local::FsStore;
use pgdrill::testkit::storage::{Meta, Published, Store, Unproven, Writer};

use crate::common::*;

/// A real local directory whose calls are written down. It offers no local path (the
/// default `local_path`): what reaches it can only come through the trait's calls, as to
/// an object store. `differs` makes it say that what it published is not what was written.
#[derive(Debug)]
struct Recorded {
    inner: FsStore,
    calls: Arc<Mutex<Vec<String>>>,
    differs: bool,
}

impl Recorded {
    fn note(&self, call: String) {
        self.calls.lock().expect("calls").push(call);
    }
}

struct RecordedWriter {
    inner: Box<dyn Writer>,
    calls: Arc<Mutex<Vec<String>>>,
    written: u64,
}

impl Write for RecordedWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(b)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[async_trait::async_trait]
impl Writer for RecordedWriter {
    async fn publish(self: Box<Self>) -> Result<u64, String> {
        self.calls.lock().expect("calls").push("publish".into());
        self.inner.publish().await
    }
    async fn abort(self: Box<Self>) {
        self.calls.lock().expect("calls").push("abort".into());
        self.inner.abort().await
    }
    async fn publish_new(self: Box<Self>, others: &[String]) -> Result<Published, String> {
        let (calls, written) = (self.calls.clone(), self.written);
        let p = self.inner.publish_new(others).await?;
        calls.lock().expect("calls").push(format!("publish_new {} {written}", p.key));
        Ok(p)
    }
}

#[async_trait::async_trait]
impl Store for Recorded {
    fn url(&self) -> String {
        self.inner.url()
    }
    fn url_of(&self, key: &str) -> String {
        self.inner.url_of(key)
    }
    async fn probe(&self) -> Result<(), String> {
        self.inner.probe().await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<Meta>, String> {
        self.inner.list(prefix).await
    }
    async fn head(&self, key: &str) -> Result<Option<Meta>, String> {
        self.inner.head(key).await
    }
    async fn open(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        version: Option<&str>,
    ) -> Result<Box<dyn std::io::Read + Send>, String> {
        self.inner.open(key, range, version).await
    }
    async fn read(&self, key: &str) -> Result<Vec<u8>, String> {
        self.inner.read(key).await
    }
    async fn create(&self, key: &str) -> Result<Box<dyn Writer>, String> {
        self.note(format!("create {key}"));
        let inner = self.inner.create(key).await?;
        Ok(Box::new(RecordedWriter { inner, calls: self.calls.clone(), written: 0 }))
    }
    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.note(format!("put_new {key}"));
        self.inner.put_new(key, bytes).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), String> {
        self.note(format!("put {key}"));
        self.inner.put(key, bytes).await
    }
    async fn delete(&self, key: &str) -> Result<(), String> {
        self.note(format!("delete {key}"));
        self.inner.delete(key).await
    }
    async fn copy(&self, from: &str, to: &str) -> Result<(), String> {
        self.inner.copy(from, to).await
    }
    async fn check_published(&self, p: &Published, size: u64, sha256: &str) -> Result<Option<String>, Unproven> {
        self.note(format!("check_published {} {size}", p.key));
        if self.differs {
            return Err(Unproven::Differs(format!("{} is not what was written", self.url_of(&p.key))));
        }
        self.inner.check_published(p, size, sha256).await.map(|_| Some(format!("checked {sha256}")))
    }
}

/// Before: `backup::create` took a local path (`storage`) or an object store's own type
/// (`remote`) and wrote each its own way (a `LocalStore` partial file renamed, or
/// `Remote::upload`), so a store could not be added without adding a third path there. It
/// now writes into the `Store` it is given: the archive through the store's `Writer`
/// (created, written, published under a new name), proven by the store, then the manifest
/// created beside it; and a store that says its object differs from what was written gets
/// it deleted, with no manifest and nothing left under a final name.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_is_written_through_the_store_it_is_given_and_only_through_it() {
    let data = "create table t(id int primary key, v text); insert into t select g, md5(g::text) from generate_series(1, 2000) g";
    let Some((srv, _tmp, root)) = source_and_storage("shop", data).await else { return };
    let url = srv.url();
    let calls: Arc<Mutex<Vec<String>>> = Arc::default();
    let store = Arc::new(Recorded { inner: FsStore::new(&root), calls: calls.clone(), differs: false });
    let mut opts = create_options(
        &url,
        &root,
        pgdrill::testkit::backup::Format::Custom,
        pgdrill::testkit::archive::Codec::Zstd,
        None,
    );
    opts.storage = store.clone();
    let created = pgdrill::testkit::backup::create(opts.clone(), &|_: String| {}).await.expect("backup");

    let calls_made = calls.lock().expect("calls").clone();
    let key = calls_made
        .iter()
        .find_map(|c| c.strip_prefix("create "))
        .unwrap_or_else(|| panic!("the archive was created through the store: {calls_made:?}"))
        .to_string();
    assert!(key.starts_with("shop/") && key.ends_with(".dump.pgdrill"), "{key}");
    let archive = root.join(&key);
    let bytes = std::fs::read(&archive).expect("the archive is where the store put it");
    assert_eq!(created.path, archive, "the backup is named by the store's name for it");
    assert_eq!(created.manifest.sizes.stored, bytes.len() as u64);
    use sha2::Digest;
    assert_eq!(created.manifest.sha256, pgdrill::testkit::archive::hex(&sha2::Sha256::digest(&bytes)));
    let n = bytes.len();
    assert_eq!(
        calls_made,
        [
            format!("create {key}"),
            format!("publish_new {key} {n}"),
            format!("check_published {key} {n}"),
            format!("put_new {key}.manifest.json"),
        ],
        "written, published, proven, then committed by its manifest: nothing else"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(format!("{key}.manifest.json"))).expect("manifest"))
            .expect("json");
    assert_eq!(manifest["sha256"], created.manifest.sha256.as_str());
    let listed = pgdrill::testkit::backup::layout::LocalStore::new(&root).list(Some("shop")).expect("list");
    assert_eq!(listed.iter().map(|e| e.path.clone()).collect::<Vec<_>>(), [archive]);

    // A store that cannot prove what it holds: the object goes, and no manifest is written.
    calls.lock().expect("calls").clear();
    let liar = Arc::new(Recorded { inner: FsStore::new(&root), calls: calls.clone(), differs: true });
    let mut opts = opts;
    opts.storage = liar;
    let e = pgdrill::testkit::backup::create(opts, &|_: String| {}).await.map(|_| ()).expect_err("refused");
    assert_eq!(e.class, pgdrill::testkit::error::Class::Environment, "{e}");
    assert!(e.to_string().contains("is not what was written: the object was removed"), "{e}");
    let calls_made = calls.lock().expect("calls").clone();
    let second = calls_made.iter().find_map(|c| c.strip_prefix("create ")).expect("created").to_string();
    assert_ne!(second, key, "a new name, never the first backup's");
    assert_eq!(calls_made.last(), Some(&format!("delete {second}")), "{calls_made:?}");
    assert!(!calls_made.iter().any(|c| c.starts_with("put_new")), "no manifest: {calls_made:?}");
    assert!(!root.join(&second).exists() && !root.join(format!("{second}.manifest.json")).exists());
    let listed = pgdrill::testkit::backup::layout::LocalStore::new(&root).list(Some("shop")).expect("list");
    assert_eq!(listed.len(), 1, "the first backup alone: {listed:?}");
    srv.stop().await;
}

/// Issue 37: `backup.pick` with `backup: latest` read the newest backup's manifest from its
/// bucket twice: into a file of the run's local mirror when it chose the backup (to fail
/// closed on an unreadable one), and again through the store when it judged it against the
/// archive's header. It reads it once now, through the store, as the version the listing
/// saw, and that read is what is judged and handed on: moto's log holds exactly one GET of
/// the manifest for the pick, and the mirror, listed by the next step, holds no file of it.
#[tokio::test(flavor = "multi_thread")]
async fn latest_reads_the_newest_manifest_once_and_never_through_the_mirror() {
    let Some((s3, srv, archive, _)) = crate::object_store::shop_backed_up_to_bkt().await else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let runbook = crate::object_store::then_mirror_listed(
        dir.path(),
        "pick-latest-once",
        "  - id: latest\n    uses: backup.pick\n    with: { storage: \"s3://bkt/p\", database: shop, backup: latest, key: \"{{ secrets.key }}\", force: true }\n",
    );
    let manifest = format!("{archive}.manifest.json");
    let log = s3.log.as_ref().expect("moto's log").path().to_path_buf();
    let request = format!("\"GET /bkt/{manifest} HTTP/1.1\"");
    let gets = || std::fs::read_to_string(&log).expect("moto's log").matches(&request).count();
    let before = gets();
    let (run, listed) = crate::object_store::mirror_after(&runbook, &[], s3.port, dir.path(), "report");
    let latest = run.main().step("latest");
    assert_eq!(latest.outputs["path"], format!("s3://bkt/{archive}").as_str(), "{latest:?}");
    assert_eq!(latest.outputs["manifest_authenticated"], true, "judged under the key: {latest:?}");
    assert_eq!(gets() - before, 1, "the pick did not read the newest manifest exactly once ({request}): {latest:?}");
    let name = manifest.rsplit('/').next().unwrap_or_default();
    assert!(!listed.lines().any(|l| l.ends_with(name)), "a local file of {name} in the mirror: {listed}");
    srv.stop().await;
}
