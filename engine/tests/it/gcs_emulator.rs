//! gs:// against a real Google Cloud Storage emulator (PyPI `gcp-storage-emulator`, started
//! on 127.0.0.1), reached through the location's `endpoint=...&use_emulator=true`.
//!
//! object_store's GCS client speaks GCS's XML API: HEAD for an object's existence, `GET
//! /BUCKET?list-type=2` to list, `POST ?uploads` for uploads in parts, `x-goog-if-generation-match:
//! 0` for a create that never replaces, `x-goog-copy-source` to copy. The emulator serves
//! only GET and PUT of an object there (the rest is its JSON API) and answers the others 501;
//! a PUT that must not replace replaces anyway (it ignores the precondition). So nothing of
//! pgdrill's can be written or listed through it: these tests prove that every command
//! stops at the first call the emulator cannot serve, says which (the method and the 501),
//! and leaves nothing in the bucket, instead of answering "absent" or "no backups".

use std::process::{Command, Stdio};

use crate::common::*;

const KEY: &str = "a-key-for-the-gcs-emulator-test";

/// The bucket the emulator is started with.
pub(crate) const BUCKET: &str = "pgdrill";

/// A gcp-storage-emulator on a port of its own, in memory, with `BUCKET` made; `None` (a
/// printed skip, or a failure in CI) when it is not installed.
pub(crate) fn gcs_emulator() -> Option<Server> {
    if !require(on_path("gcp-storage-emulator"), "gcp-storage-emulator (PyPI gcp-storage-emulator)") {
        return None;
    }
    let port = free_port();
    let (log, out, err) = server_log();
    let child = Command::new("gcp-storage-emulator")
        .args(["start", "-H", "127.0.0.1", "--port", &port.to_string(), "--default-bucket", BUCKET, "--in-memory"])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("gcp-storage-emulator starts");
    let s = Server { child, port, log: Some(log) };
    wait_listening(port, "gcp-storage-emulator");
    Some(s)
}

/// A gs:// location in the emulator's bucket under `prefix`.
pub(crate) fn location(port: u16, prefix: &str) -> String {
    format!("gs://{BUCKET}/{prefix}?endpoint=http://127.0.0.1:{port}&use_emulator=true")
}

/// The names of the objects in the emulator's bucket, through its JSON API (which it does
/// serve), as another tool would look.
pub(crate) fn objects(port: u16) -> Vec<String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10"])
        .arg(format!("http://127.0.0.1:{port}/storage/v1/b/{BUCKET}/o"))
        .output()
        .expect("curl");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the emulator's listing is JSON ({e}): {}", text(&out.stdout)));
    body["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// A backup to gs:// through the emulator, its listing and a verify of it: each exit 3 at the
/// first request the emulator does not implement (listing the location, which `backup.create`
/// does before pg_dump starts), naming it and the 501, and nothing written; a gs:// endpoint
/// without `use_emulator` is refused (exit 2), since it would send unsigned requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_a_gcs_emulator_without_the_xml_api_stops_at_its_first_501_and_writes_nothing() {
    let Some(gcs) = gcs_emulator() else { return };
    let Some(srv) = native_server("shop").await else { return };
    let loc = location(gcs.port, "prod");
    // The emulator is there and serves its JSON API: an empty bucket.
    assert_eq!(objects(gcs.port), Vec::<String>::new());
    let backup = Run::new("backup")
        .var("database_url", srv.url())
        .var("storage", &loc)
        .key(KEY)
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .output();
    assert_eq!(backup.code, Some(3), "{}", backup.all());
    assert!(backup.all().contains("501 Not Implemented"), "the emulator's own answer is named: {}", backup.all());
    assert!(backup.all().contains("list"), "the call that failed is named: {}", backup.all());
    assert_eq!(objects(gcs.port), Vec::<String>::new(), "nothing written");
    let listed = Run::cli(["backups", "list", "--storage", &loc]).output();
    assert_eq!(listed.code, Some(3), "never `(no backups)`: {}", listed.all());
    assert_eq!(listed.all().trim().lines().count(), 1, "one line: {}", listed.all());
    assert!(listed.all().contains("501"), "{}", listed.all());
    let verify = Run::new("verify").var("storage", &loc).var("database", "shop").key(KEY).output();
    assert_eq!(verify.code, Some(3), "never a verdict on a backup: {}", verify.all());
    let plain = Run::cli([
        "backups",
        "list",
        "--storage",
        &format!("gs://{BUCKET}/prod?endpoint=http://127.0.0.1:{}", gcs.port),
    ])
    .output();
    assert_eq!(plain.code, Some(2), "{}", plain.all());
    assert!(plain.all().contains("use_emulator=true"), "{}", plain.all());
    srv.stop().await;
}
