//! Object stores that take a request and never answer it (issue 36, case 7), one kind of
//! request at a time: every request has a bound, retries included, not only ranged reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use crate::common::*;

const KEY: &str = "store-timeouts-backup-key-0123456789";

fn with_aws(mut c: Command, port: u16) -> Command {
    c.env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing-secret")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
        .env("AWS_ALLOW_HTTP", "true")
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env_remove("PGDRILL_STORE_TIMEOUT")
        .env_remove("AWS_PROFILE");
    c
}

fn out_of(c: &mut Command) -> (i32, String) {
    let o = c.output().expect("pgdrill runs");
    (o.status.code().unwrap_or(-1), format!("{}{}", text(&o.stdout), text(&o.stderr)))
}

/// One request to moto (no credentials checked): status and body.
fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let status = out.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, out)
}

fn keys(port: u16) -> Vec<String> {
    let (status, body) = http(port, "GET", "/bkt?list-type=2&prefix=p/");
    assert_eq!(status, 200, "{body}");
    body.split("<Key>").skip(1).filter_map(|p| p.split("</Key>").next()).map(str::to_string).collect()
}

/// Before: only a ranged read had a first-byte timeout. A store that took a listing, a HEAD,
/// a whole-object read (a manifest) or an upload's part and never answered held the run for
/// the request timeout times object_store's retries (minutes). Now each ends at its bound,
/// retries included, with exit 3 naming the bound: the first-byte timeout (2 s here) for
/// requests that await only an answer, the request timeout (8 s here) for an upload's part.
/// A stalled upload leaves nothing under a final name and no upload open.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_that_takes_a_listing_a_head_a_whole_read_or_an_upload_and_never_answers_held_the_run() {
    let Some(s3) = moto() else { return };
    let Some(srv) = native_server("shop").await else { return };
    let url = srv.url();
    exec(&url, "create table t(id int); insert into t select generate_series(1, 1000)").await;
    assert_eq!(http(s3.port, "PUT", "/bkt").0, 200, "bucket created");
    let (code, log) = out_of(&mut with_aws(
        Run::new("backup").var("database_url", &url).var("storage", "s3://bkt/p").command(),
        s3.port,
    ));
    assert_eq!(code, 0, "{log}");
    let before = keys(s3.port);
    assert!(before.iter().any(|k| k.ends_with(".manifest.json")), "{before:?}");
    let storage = "storage=s3://bkt/p?first_byte_timeout=2s&timeout=8s";
    let first_byte = "no answer began within the first-byte timeout of 2s";

    // A listing: the probe before anything else.
    let relay = stalling_relay(s3.port, |l| l.starts_with("GET ") && l.contains("list-type=2"));
    let (code, log) = out_of(&mut with_aws(pgdrill(&["backups", "list", "--storage", &storage[8..]]), relay));
    assert_eq!(code, 3, "{log}");
    assert!(log.contains("s3://bkt/p did not answer within 2s"), "a stalled listing: {log}");

    // A whole-object read: the manifest `backup.latest` reads of the backup it picks
    // (`backups list` takes kinds from names and reads no manifest).
    let relay = stalling_relay(s3.port, |l| l.starts_with("GET ") && l.contains(".manifest.json"));
    let dir = tempfile::tempdir().expect("tmp");
    let runbook = written(
        dir.path().join("latest.yaml"),
        format!(
    "name: latest\nsteps:\n  - id: latest\n    uses: backup.latest\n    with: {{ storage: \"{}\", database: shop }}\n",
    &storage[8..]
),
    );
    let (code, log) = out_of(&mut with_aws(pgdrill(&["run", runbook.to_str().expect("utf-8")]), relay));
    assert_eq!(code, 3, "{log}");
    assert!(log.contains(first_byte) && log.contains(".manifest.json"), "a stalled manifest read: {log}");

    // A HEAD: a backup asks whether its name is free before it uploads.
    let relay = stalling_relay(s3.port, |l| l.starts_with("HEAD "));
    let (code, log) =
        out_of(&mut with_aws(Run::new("backup").var("database_url", &url).vars(&[storage]).command(), relay));
    assert_eq!(code, 3, "{log}");
    assert!(log.contains(first_byte), "a stalled HEAD: {log}");

    // An upload's part: the backup stops at the request timeout and aborts its upload.
    let relay = stalling_relay(s3.port, |l| l.starts_with("PUT ") && l.contains("partNumber="));
    let (code, log) =
        out_of(&mut with_aws(Run::new("backup").var("database_url", &url).vars(&[storage]).command(), relay));
    assert_eq!(code, 3, "{log}");
    // Ended by the bound, or by the client's own request timeout once retries stopped (half
    // the first-byte timeout): either way within the request timeout, never minutes.
    assert!(
        log.contains("no answer within the request timeout of 8s, retries included")
            || (log.contains("the store cannot be reached") && log.contains("in 8.0")),
        "a stalled part: {log}"
    );
    assert!(log.contains("uploading s3://bkt/p/shop/"), "names the upload: {log}");
    let after = keys(s3.port);
    let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
    assert!(new.is_empty(), "nothing new under a final name, no upload record left: {new:?}");
    let (_, uploads) = http(s3.port, "GET", "/bkt?uploads");
    assert!(!uploads.contains("<UploadId>"), "the stalled upload was aborted: {uploads}");
    srv.stop().await;
}
