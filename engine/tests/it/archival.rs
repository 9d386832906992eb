//! Archive storage classes on the S3-compatible server (issue 40 item 6): a backup uploaded
//! with `storage_class=GLACIER` is checked from the store's metadata (size and the ETag the
//! parts make) instead of a read-back that S3 refuses, says so, and stays, and so is an
//! offsite copy into that class; verify refuses it with "restore it from the archive tier
//! first", never as a refused credential.

use std::io::{Read, Write};
use std::net::TcpStream;

use crate::common::{self, tmp_backups, Run};

const KEY: &str = "archival-test passphrase";

/// One plain request to the S3 server (bucket creation, listing): its status line and body.
fn http(port: u16, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn s3(run: Run, port: u16) -> Run {
    run.moto(port, "archival-test-secret").key(KEY)
}

/// Regression: a GLACIER upload's read-back failed as "the store refused the credentials"
/// and left the object; verify of it said the same.
#[tokio::test(flavor = "multi_thread")]
async fn a_glacier_upload_is_checked_by_metadata_and_verify_asks_for_a_restore_from_the_archive_tier() {
    let Some(moto) = common::moto() else { return };
    let Some(srv) = common::native_server("shop").await else { return };
    common::exec(
        &srv.url(),
        "create table orders (id int primary key); insert into orders select generate_series(1, 100)",
    )
    .await;
    assert!(http(moto.port, "PUT", "/cold").starts_with("HTTP/1.1 200"), "bucket created");

    let ran = s3(
        Run::new("backup").var("database_url", srv.url()).var("storage", "s3://cold/prod?storage_class=GLACIER"),
        moto.port,
    )
    .expect(0);
    let out = ran.all();
    assert!(out.contains("stored in GLACIER, which cannot be read back until restored"), "{out}");
    assert!(out.contains("checked by the store's metadata instead"), "{out}");
    assert!(out.contains("match; not read back"), "{out}");
    assert!(!out.contains("refused the credentials"), "{out}");
    // The object stays, in the class asked for, with its manifest beside it.
    let listing = http(moto.port, "GET", "/cold?list-type=2&prefix=prod/shop/");
    assert!(listing.contains(".dump.pgdrill</Key>") && listing.contains(".manifest.json</Key>"), "{listing}");
    assert!(listing.contains("<StorageClass>GLACIER</StorageClass>"), "{listing}");

    // The offsite copy of a local backup into the archive class: checked the same way.
    let (_dir, local) = tmp_backups();
    s3(Run::new("backup").var("database_url", srv.url()).var("storage", local.display()), moto.port).expect(0);
    let ran = s3(
        Run::new("offsite")
            .var("storage", local.display())
            .var("offsite", "s3://cold/off?storage_class=GLACIER")
            .var("database", "shop"),
        moto.port,
    )
    .expect(0);
    let out = ran.all();
    assert!(out.contains("stored in GLACIER, which cannot be read back until restored"), "{out}");
    assert!(!out.contains("read back and matched"), "{out}");
    let listing = http(moto.port, "GET", "/cold?list-type=2&prefix=off/shop/");
    assert!(listing.contains("<StorageClass>GLACIER</StorageClass>"), "{listing}");

    let ran = s3(Run::verify_native("s3://cold/prod", "shop"), moto.port).expect(3);
    let out = ran.all();
    assert!(out.contains("restore it from the archive tier first"), "{out}");
    assert!(!out.contains("refused the credentials"), "{out}");
    assert!(!out.contains("archival-test-secret") && !out.contains(KEY), "a secret was shown: {out}");
}
