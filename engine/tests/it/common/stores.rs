//! A `Store` driven as the backup pipeline drives it: its writers and readers block, so
//! they run on a blocking thread, off the runtime.

use std::io::{Read, Write};
use std::ops::Range;

use pgdrill::storage::{Store, Writer};

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
/// not an error).
pub async fn read_copy_list_delete(store: &dyn Store) {
    assert_eq!(store.read("app/m.json").await.expect("read"), b"one");
    store.copy("app/m.json", "app/n.json").await.expect("copy");
    let mut keys: Vec<String> = store.list("app/").await.expect("list").into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, ["app/a.bin", "app/m.json", "app/n.json"]);
    store.delete("app/n.json").await.expect("delete");
    store.delete("app/n.json").await.expect("a missing object is not an error");
}
