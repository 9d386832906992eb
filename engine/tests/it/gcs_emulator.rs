//! gs:// against a real Google Cloud Storage emulator (PyPI `gcp-storage-emulator`, started
//! on 127.0.0.1), reached through the location's `endpoint=...&use_emulator=true`.
//!
//! gs:// speaks GCS's JSON API (storage/gcs.rs), which the emulator serves: list, the object's
//! resource, ranged reads, resumable uploads, delete, rewrite. Before, gs:// went through
//! object_store's XML client, which the emulator answers 501 for HEAD, listing and uploads in
//! parts: every command below stopped at its first call and nothing was ever written. What
//! the emulator does not do, and so is not proven here: it ignores `ifGenerationMatch` (a
//! create that must not replace, a read pinned to a generation) and answers every listing in
//! one page.

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

/// The backup, list, verify and prune runbooks with gs:// on the emulator: the backup and
/// its manifest are objects in the bucket (no upload record left), `backups list` names the
/// object, verify restores it and passes against its manifest (its ledger record an object
/// too), prune's dry run deletes nothing and its apply deletes the older unverified backup
/// with its manifest. Then the emulator stops: list, backup and verify are exit 3 in the
/// store's words, never "(no backups)" nor a verdict. A gs:// endpoint without
/// `use_emulator` is refused (exit 2): it would send unsigned requests. Through object_store's
/// XML client the first backup was exit 3 at the emulator's 501 (the listing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_to_a_gcs_emulator_was_refused_with_501_and_now_is_listed_verified_and_pruned() {
    let Some(gcs) = gcs_emulator() else { return };
    let Some(srv) = native_server_with("shop", "create table orders(id int primary key, total numeric); insert into orders select g, g * 1.5 from generate_series(1, 2000) g").await else { return };
    let loc = location(gcs.port, "prod");
    assert_eq!(objects(gcs.port), Vec::<String>::new(), "an empty bucket");
    let backup = || {
        Run::new("backup")
            .var("database_url", srv.url())
            .var("storage", &loc)
            .key(KEY)
            .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
            .output()
    };
    let first = backup();
    assert_eq!(first.code, Some(0), "{}", first.all());
    let keys = objects(gcs.port);
    let archive = keys.iter().find(|k| k.ends_with(".dump.pgdrill")).expect("the backup is in the bucket").clone();
    assert!(archive.starts_with("prod/shop/"), "{keys:?}");
    assert!(keys.contains(&format!("{archive}.manifest.json")), "its manifest: {keys:?}");
    assert!(!keys.iter().any(|k| k.contains(".pgdrill-uploads/")), "no upload record left: {keys:?}");
    let url = format!("gs://{BUCKET}/{archive}");
    assert!(first.all().contains(&url), "the log names the object: {}", first.all());

    let listed = Run::cli(["backups", "list", "--storage", &loc, "--json"]).output();
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    let v: serde_json::Value = serde_json::from_str(listed.stdout.trim()).expect("json");
    assert_eq!(v[0]["path"], url.as_str(), "{}", listed.all());
    assert_eq!(v[0]["database"], "shop", "{}", listed.all());

    let verify = || Run::verify_native(&loc, "shop").key(KEY);
    let verified = verify().output();
    assert_eq!(verified.code, Some(0), "restored and proven against its manifest: {}", verified.all());
    assert!(
        objects(gcs.port).iter().any(|k| k.starts_with("prod/shop/.ledger/") && k.ends_with(".json")),
        "the verification is recorded in the bucket: {:?}",
        objects(gcs.port)
    );

    // Two more backups; prune keeping one: the newest and the newest verified stay.
    for _ in 0..2 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = backup();
        assert_eq!(b.code, Some(0), "{}", b.all());
    }
    let archives = || objects(gcs.port).into_iter().filter(|k| k.ends_with(".dump.pgdrill")).collect::<Vec<_>>();
    assert_eq!(archives().len(), 3, "{:?}", objects(gcs.port));
    let prune = |apply: &str| {
        let keep = ["database=shop", "keep_daily=0", "keep_weekly=0", "keep_monthly=0", "min_keep=1"];
        Run::new("prune").var("storage", &loc).vars(&keep).var("apply", apply).key(KEY).output()
    };
    let dry = prune("false");
    assert_eq!(dry.code, Some(0), "{}", dry.all());
    assert!(dry.all().contains("would delete"), "{}", dry.all());
    assert_eq!(archives().len(), 3, "a dry run deletes nothing");
    let applied = prune("true");
    assert_eq!(applied.code, Some(0), "{}", applied.all());
    let left = objects(gcs.port);
    assert_eq!(archives().len(), 2, "{left:?}\n{}", applied.all());
    assert!(left.contains(&archive), "the verified backup is kept: {left:?}");
    assert_eq!(
        left.iter().filter(|k| k.ends_with(".manifest.json")).count(),
        2,
        "manifests go with their backups: {left:?}"
    );

    // The emulator stopped: never "(no backups)", never a verdict on a backup.
    drop(gcs);
    let listed = Run::cli(["backups", "list", "--storage", &loc]).output();
    assert_eq!(listed.code, Some(3), "{}", listed.all());
    assert_eq!(listed.all().trim().lines().count(), 1, "one line: {}", listed.all());
    assert!(listed.all().contains("cannot be reached"), "{}", listed.all());
    let b = backup();
    assert_eq!(b.code, Some(3), "{}", b.all());
    let v = verify().output();
    assert_eq!(v.code, Some(3), "{}", v.all());
    let plain =
        Run::cli(["backups", "list", "--storage", &format!("gs://{BUCKET}/prod?endpoint=http://127.0.0.1:1")]).output();
    assert_eq!(plain.code, Some(2), "{}", plain.all());
    assert!(plain.all().contains("use_emulator=true"), "{}", plain.all());
    srv.stop().await;
}

/// The gs:// `Store` on the emulator, by its contract (as `object_store::the_s3_store_…`
/// for S3): an upload in parts (two of 8 MiB, then ended by a request that only states the
/// total) shows nothing until published; a range across the parts reads back; an aborted
/// upload leaves nothing; `put_new` asks the store not to replace (`ifGenerationMatch=0`)
/// and a read pinned to the generation a head saw asks for that generation: the emulator
/// ignores both preconditions (a real bucket answers 412), so what is checked here is that
/// they are sent, in the emulator's own request log; copy, list and delete.
#[tokio::test(flavor = "multi_thread")]
async fn the_gcs_store_shows_an_object_only_once_published_and_asks_the_store_never_to_replace() {
    let Some(gcs) = gcs_emulator() else { return };
    let loc = location(gcs.port, "t");
    let store = pgdrill::testkit::storage::open(&loc).expect("the location opens");
    assert_eq!(store.url(), format!("gs://{BUCKET}/t"));
    store.probe().await.expect("the store answers");

    let size: usize = 16 << 20;
    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let w = write_unpublished(&*store, "app/a.bin", body).await;
    assert!(!objects(gcs.port).iter().any(|k| k == "t/app/a.bin"), "an object is visible before publish");
    assert_eq!(w.publish().await.expect("publish"), size as u64);
    let meta = store.head("app/a.bin").await.expect("head").expect("published");
    assert_eq!(meta.size, size as u64);
    let generation = meta.version.clone().expect("the object's generation");
    let across = (8 << 20) - 5..(8 << 20) + 5;
    let got = read_back(&*store, "app/a.bin", Some(across.clone()), Some(&generation)).await;
    assert_eq!(got, across.map(|i| (i % 251) as u8).collect::<Vec<u8>>());

    abort_a_write(&*store).await;

    store.put_new("app/m.json", b"one".to_vec()).await.expect("put_new");
    read_copy_list_delete(&*store).await;
    assert!(!objects(gcs.port).iter().any(|k| k.contains(".pgdrill-uploads/")), "no upload record left");

    let log = std::fs::read_to_string(gcs.log.as_ref().expect("the emulator's log").path()).expect("log");
    let asked = |what: &str| log.lines().any(|l| l.contains(what));
    assert!(asked("name=t%2Fapp%2Fm.json&ifGenerationMatch=0"), "put_new never asked not to replace:\n{log}");
    assert!(asked(&format!("alt=media&ifGenerationMatch={generation}")), "the read was not pinned:\n{log}");
    assert!(asked("uploadType=resumable"), "no resumable upload:\n{log}");
}

/// A real bucket's credentials, against two recorders standing in for Google's token
/// endpoint and storage: a service-account key (GOOGLE_APPLICATION_CREDENTIALS) is exchanged
/// for a token with a JWT signed by its key (RS256, verified here with the public half), and
/// the token goes to the store as a bearer header, never into the output; the key's
/// `gcs_base_url` names the store's address. A missing key file is exit 2 naming it; a store
/// that cannot be reached is exit 3 in one line. (Before, object_store's client read this
/// file for the XML API; a key without a private key was taken as "no credentials".)
#[test]
fn a_service_account_key_is_exchanged_for_a_bearer_token_and_a_missing_key_or_dead_store_is_named() {
    use base64::Engine;
    const TOKEN: &str = "ya29.a-token-only-the-store-may-see";
    let token_body = format!(r#"{{"access_token":"{TOKEN}","expires_in":3600}}"#);
    let token_reply: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{token_body}",
            token_body.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let listing = r#"{"kind":"storage#objects","items":[]}"#;
    let store_reply: &'static [u8] = Box::leak(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{listing}",
            listing.len()
        )
        .into_bytes()
        .into_boxed_slice(),
    );
    let (token_port, asked) = http_recorder(token_reply, |r| String::from_utf8_lossy(&r.body).into_owned());
    let (store_port, sent) = http_recorder(store_reply, |r| {
        let auth = r.headers.iter().find(|(k, _)| k == "authorization").map(|(_, v)| v.clone());
        (r.path, auth)
    });
    let rsa = openssl::rsa::Rsa::generate(2048).expect("a key");
    let pem = String::from_utf8(rsa.private_key_to_pem().expect("pem")).expect("utf-8");
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = |name: &str, base: &str| {
        let p = dir.path().join(name);
        let k = serde_json::json!({
            "type": "service_account",
            "client_email": "drill@project.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": format!("http://127.0.0.1:{token_port}/token"),
            "gcs_base_url": base,
        });
        std::fs::write(&p, k.to_string()).expect("key file");
        p
    };
    let list = |key: &std::path::Path| {
        Run::cli(["backups", "list", "--storage", "gs://bkt/p"])
            .env("GOOGLE_APPLICATION_CREDENTIALS", key)
            .env_remove("GOOGLE_OAUTH_ACCESS_TOKEN")
            .env_remove("GOOGLE_SERVICE_ACCOUNT_PATH")
            .output()
    };
    let listed = list(&key_file("sa.json", &format!("http://127.0.0.1:{store_port}")));
    assert_eq!(listed.code, Some(0), "{}", listed.all());
    assert!(listed.all().contains("(no backups)"), "{}", listed.all());
    assert!(!listed.all().contains(TOKEN) && !listed.all().contains("PRIVATE KEY"), "{}", listed.all());
    let asked = asked.lock().expect("lock").clone();
    assert_eq!(asked.len(), 1, "one token for the run: {asked:?}");
    assert!(asked[0].contains("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"), "{}", asked[0]);
    let jwt = asked[0].split("assertion=").nth(1).expect("an assertion").to_string();
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "{jwt}");
    let d = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s).expect("base64url");
    let claims: serde_json::Value = serde_json::from_slice(&d(parts[1])).expect("claims");
    assert_eq!(claims["iss"], "drill@project.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], format!("http://127.0.0.1:{token_port}/token"));
    let public = openssl::pkey::PKey::public_key_from_pem(&rsa.public_key_to_pem().expect("pem")).expect("public");
    let mut v = openssl::sign::Verifier::new(openssl::hash::MessageDigest::sha256(), &public).expect("verifier");
    v.update(format!("{}.{}", parts[0], parts[1]).as_bytes()).expect("update");
    assert!(v.verify(&d(parts[2])).expect("verify"), "the assertion is signed by the account's key");
    let sent = sent.lock().expect("lock").clone();
    assert!(!sent.is_empty(), "the store was asked");
    for (path, auth) in &sent {
        assert!(path.starts_with("/storage/v1/b/bkt/o?"), "{path}");
        assert_eq!(auth.as_deref(), Some(format!("Bearer {TOKEN}").as_str()), "{path}");
    }

    let missing = list(&dir.path().join("missing.json"));
    assert_eq!(missing.code, Some(2), "{}", missing.all());
    assert!(missing.all().contains("missing.json"), "the key file is named: {}", missing.all());
    let dead = list(&key_file("dead.json", &format!("http://127.0.0.1:{}", free_port())));
    assert_eq!(dead.code, Some(3), "{}", dead.all());
    assert_eq!(dead.all().trim().lines().count(), 1, "one line: {}", dead.all());
    assert!(dead.all().contains("cannot be reached"), "{}", dead.all());
}
