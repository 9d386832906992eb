//! A `Store` driven as the backup pipeline drives it: its writers and readers block, so
//! they run on a blocking thread, off the runtime.

use std::io::{Read, Write};
use std::ops::Range;

use pgdrill::testkit::storage::{Store, Writer};

/// `body` written to a new object `key` of `store`, not yet published (or aborted); a
/// failed write fails the test.
pub async fn write_unpublished(store: &dyn Store, key: &str, body: Vec<u8>) -> Box<dyn Writer> {
    let w = store.create(key).await.expect("create");
    let (w, wrote) = tokio::task::spawn_blocking(move || {
        let mut w = w;
        let r = w.write_all(&body);
        (w, r)
    })
    .await
    .expect("writer thread");
    wrote.expect("write");
    w
}

/// The bytes of object `key` of `store` (of `range` and at `version` when given).
pub async fn read_back(store: &dyn Store, key: &str, range: Option<Range<u64>>, version: Option<&str>) -> Vec<u8> {
    let mut r = store.open(key, range, version).await.expect("open");
    tokio::task::spawn_blocking(move || {
        let mut v = Vec::new();
        r.read_to_end(&mut v).map(|_| v)
    })
    .await
    .expect("reader thread")
    .expect("read")
}

/// A 9 MiB object `app/b.bin` written and aborted: `store` shows nothing under its name.
pub async fn abort_a_write(store: &dyn Store) {
    let w = write_unpublished(store, "app/b.bin", vec![1u8; 9 << 20]).await;
    w.abort().await;
    assert_eq!(store.head("app/b.bin").await.expect("head"), None, "an aborted object is there");
}

/// `app/m.json` (written `one`) read back and copied to `app/n.json`; a listing of `app/`
/// then holds `a.bin`, `m.json` and the copy; the copy deleted twice (a missing object is
/// not an error). One level of it (`children`) holds the objects and folders right under a
/// folder, nothing deeper.
pub async fn read_copy_list_delete(store: &dyn Store) {
    assert_eq!(store.read("app/m.json").await.expect("read"), b"one");
    store.copy("app/m.json", "app/n.json").await.expect("copy");
    let mut keys: Vec<String> = store.list("app/").await.expect("list").into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, ["app/a.bin", "app/m.json", "app/n.json"]);
    one_level(store).await;
    store.delete("app/n.json").await.expect("delete");
    store.delete("app/n.json").await.expect("a missing object is not an error");
}

/// Issue 37: the `Store` trait had no one-level listing, so the report's pages and history
/// and doctor's storage check listed through remote.rs's own type. `children` names what is
/// right under a folder: `app/sub/deep/x.json` is the folder `sub` of `app`, and the
/// location's root holds the folder `app` and no object (pgdrill's upload records, whose
/// folder is hidden, are not shown). A folder that is not there holds nothing.
pub async fn one_level(store: &dyn Store) {
    store.put_new("app/sub/deep/x.json", b"x".to_vec()).await.expect("put_new");
    let top = store.children("").await.expect("the root's children");
    assert_eq!((top.folders, top.objects), (vec!["app".to_string()], Vec::<String>::new()), "{}", store.url());
    let app = store.children("app").await.expect("app's children");
    assert_eq!(app.folders, ["sub"]);
    assert_eq!(app.objects, ["a.bin", "m.json", "n.json"]);
    assert_eq!(store.children("app/").await.expect("app/'s children"), app, "a trailing / named another folder");
    assert_eq!(store.children("app/sub").await.expect("sub's children").folders, ["deep"]);
    let none = store.children("none").await.expect("a folder that is not there");
    assert!(none.folders.is_empty() && none.objects.is_empty(), "{none:?}");
    store.delete("app/sub/deep/x.json").await.expect("delete");
}
