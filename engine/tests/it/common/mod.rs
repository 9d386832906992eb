//! Helpers shared by the integration tests: run the real binary from the repository root.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pgdrill"))
}

/// `pgdrill ARGS` run in the repository root, with a clean environment for our own vars.
pub fn pgdrill(args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(args).current_dir(root()).env_remove("PGDRILL_JUNIT").env_remove("PGDRILL_REPORT");
    c
}

pub fn run(args: &[&str]) -> Output {
    pgdrill(args).output().expect("the pgdrill binary runs")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// True under CI, where a missing prerequisite must fail rather than skip.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Skip (outside CI) or fail (in CI) when a prerequisite is missing.
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!in_ci(), "{what} is required in CI (CI is set) but missing");
    eprintln!("SKIPPED: {what} is missing (set up with ci/setup.sh); CI fails instead of skipping");
    false
}

/// A throwaway PostgreSQL 15 server (native provider) with database `db`; `None` (a printed
/// skip) when the server binaries are missing outside CI, a failure in CI.
pub async fn native_server(db: &str) -> Option<pgdrill::pg::ephemeral::Ephemeral> {
    use pgdrill::pg::ephemeral::{Ephemeral, Options, Provider};
    let opts = Options { provider: Provider::Native, major: Some(15), database: Some(db.into()), ..Default::default() };
    match Ephemeral::start(opts).await {
        Ok(s) => Some(s),
        Err(e) => {
            require(false, &format!("PostgreSQL 15 server binaries ({e})"));
            None
        }
    }
}

/// `name -> (failure/error/skipped or "passed")` from a JUnit file.
pub fn junit_cases(path: &Path) -> Vec<(String, String)> {
    let xml = std::fs::read_to_string(path).expect("junit");
    let mut out = Vec::new();
    for part in xml.split("<testcase ").skip(1) {
        let name = part.split("name=\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_string();
        let body = part.split("</testcase>").next().unwrap_or_default();
        let status = if body.contains("<failure") {
            "failure"
        } else if body.contains("<error") {
            "error"
        } else if body.contains("<skipped") {
            "skipped"
        } else {
            "passed"
        };
        out.push((name, status.to_string()));
    }
    out
}

pub fn status_of<'a>(cases: &'a [(String, String)], name: &str) -> &'a str {
    cases.iter().find(|(n, _)| n.starts_with(name)).map(|(_, s)| s.as_str()).unwrap_or("absent")
}

/// `pgdrill run backup` of `url` into `storage` with `key`; the path of the backup of `db`.
pub fn backup_to(url: &str, storage: &std::path::Path, key: &str, db: &str) -> PathBuf {
    let out = pgdrill(&[
        "run",
        "backup",
        "--var",
        &format!("database_url={url}"),
        "--var",
        &format!("storage={}", storage.display()),
    ])
    .env("PGDRILL_BACKUP_KEY", key)
    .output()
    .expect("backup");
    assert!(out.status.success(), "backup: {}{}", text(&out.stdout), text(&out.stderr));
    std::fs::read_dir(storage.join(db))
        .expect("storage")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".dump.pgdrill"))
        .expect("a backup")
}

/// Run SQL in the database at `url`.
pub async fn exec(url: &str, sql: &str) {
    pgdrill::pg::connect(url).await.expect("connect").batch_execute(sql).await.expect("sql");
}

/// Staged dumps (`.pgdrill-stage-*`) still in `dir`: there must be none once a run ended.
pub fn staged_leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .filter(|n| n.starts_with(".pgdrill-stage"))
                .collect()
        })
        .unwrap_or_default()
}

/// Write manifest `m` beside the encrypted backup at `backup`, bound again with `key` as only
/// a key holder can: a test that edits a manifest on purpose (to reach a later check) must
/// not be stopped by the manifest's MAC.
pub fn write_rebound_manifest(backup: &Path, mut m: serde_json::Value, key: &str) {
    let archive = std::fs::read(backup).expect("backup");
    let (h, _) = pgdrill::archive::read_header(&mut &archive[..]).expect("header");
    let k = pgdrill::archive::KeySource::from_secret(key).derive_for(h.kdf.as_ref().expect("kdf")).expect("key");
    m["authentication"]["mac"] =
        k.manifest_mac(h.nonce_prefix.as_deref().expect("prefix"), &pgdrill::backup::manifest_bytes(m.clone())).into();
    std::fs::write(pgdrill::storage::manifest_path(backup), serde_json::to_vec(&m).expect("json")).expect("write");
}

/// The full fingerprint of a database, read in one repeatable-read snapshot.
pub async fn fingerprint_of(url: &str) -> pgdrill::pg::fingerprint::Fingerprint {
    use pgdrill::pg::fingerprint::{compute, Mode};
    let c = pgdrill::pg::connect(url).await.expect("connect");
    c.batch_execute("begin isolation level repeatable read read only").await.expect("begin");
    let f = compute(&c, Mode::Full).await.expect("fingerprint").expect("full");
    c.batch_execute("commit").await.expect("commit");
    f
}

/// One value from the server as text (empty for NULL).
pub async fn scalar(url: &str, sql: &str) -> String {
    let c = pgdrill::pg::connect(url).await.expect("connect");
    c.query_one(&format!("select ({sql})::text"), &[])
        .await
        .expect("query")
        .get::<_, Option<String>>(0)
        .unwrap_or_default()
}

/// The safety snapshots an operator restore of database `shop` left in `storage`.
pub fn snapshots(storage: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(storage.join(".safety/shop"))
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(".pgdrill")).collect())
        .unwrap_or_default()
}
