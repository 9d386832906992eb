//! Signed evidence of physical runs (issue 42 item 1) against a real PostgreSQL 15 server
//! archiving through `pgdrill wal push`: the base backup's statement names its archive by the
//! sha256 its manifest records and the WAL range it holds; the point-in-time recovery's
//! statement names the same archive, the first and last WAL segment replayed with their
//! sha256 (each equal to what `pgdrill wal fetch` gives back), the target and the server's
//! own line that it was reached, and says the throwaway was apart from its source.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use pgdrill::testkit::physical::archiving::{ArchivingOptions, ArchivingServer};
use sha2::Digest as _;

use crate::common::{self, Run};

// A raw key: a passphrase costs an Argon2id derivation per segment pushed and fetched.
const KEY: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0";

/// Hand `p` to the server's user (`nobody` when the tests run as root), with `mode`.
fn give(p: &Path, mode: u32) {
    if nix::unistd::geteuid().is_root() {
        let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("a nobody user");
        nix::unistd::chown(p, Some(nobody.uid), Some(nobody.gid)).expect("chown");
    }
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The signed statement of evidence record `n`.
fn statement(evidence: &Path, n: u64) -> serde_json::Value {
    let env = common::read_json(&evidence.join("records").join(format!("{n:08}.dsse.json")));
    let payload =
        base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str().expect("payload")).expect("b64");
    serde_json::from_slice(&payload).expect("statement")
}

/// The sha256 a statement gives the subject named `name`.
fn subject(st: &serde_json::Value, name: &str) -> Option<String> {
    st["subject"].as_array()?.iter().find(|s| s["name"] == name)?["digest"]["sha256"].as_str().map(str::to_string)
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Wait until the archiver has archived `segment` (or a later one) without failing.
async fn archived(s: &ArchivingServer, segment: &str) {
    let ok = common::wait_for(Duration::from_secs(60), || {
        let row = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(common::scalar(
                &s.url(),
                "select coalesce(last_archived_wal, '') || '|' || failed_count from pg_stat_archiver",
            ))
        });
        let (last, failed) = row.split_once('|').unwrap_or_default();
        assert_eq!(failed, "0", "the archiver failed: {}", s.log());
        (last >= segment).then_some(())
    });
    assert!(ok.is_some(), "{segment} was not archived: {}", s.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pitr_run_signs_its_base_backup_and_wal_range_by_sha256_and_the_proof_its_target_was_reached() {
    let root = tempfile::tempdir().expect("tmp");
    std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let store = root.path().join("store");
    std::fs::create_dir(&store).expect("store");
    give(&store, 0o700);
    let key_file = root.path().join("wal.key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("key");
    give(&key_file, 0o600);
    let conf = root.path().join("wal.conf");
    std::fs::write(&conf, format!("storage = {}\nkey_file = {}\n", store.display(), key_file.display())).expect("conf");
    give(&conf, 0o600);
    let opts = ArchivingOptions {
        archive_command: Some(format!("{} wal push --config {} %p", common::bin().display(), conf.display())),
        ..Default::default()
    };
    let Some(s) = common::archiving_15(opts).await else { return };
    let signing = root.path().join("signing.pem");
    Run::cli(["keygen"]).arg(&signing).expect(0);
    let public = root.path().join("signing.pem.pub");
    let evidence = root.path().join("evidence");
    let signed = |r: Run| r.signed(&signing, &evidence).env("PGDRILL_BACKUP_KEY", KEY);

    common::exec(&s.url(), "create table kept as select generate_series(1, 100) as g").await;
    let first = common::scalar(&s.url(), "pg_walfile_name(pg_switch_wal())").await;
    archived(&s, &first).await;
    let storage = store.display().to_string();
    signed(Run::new("base-backup").var("database_url", s.url()).var("storage", &storage).var("wait", "60s")).expect(0);
    common::exec(&s.url(), "insert into kept values (101)").await;
    common::exec(&s.url(), "select pg_create_restore_point('before_incident')").await;
    common::exec(&s.url(), "insert into kept values (102); create table lost as select 1 as x").await;
    let switched = common::scalar(&s.url(), "pg_walfile_name(pg_switch_wal())").await;
    archived(&s, &switched).await;
    let marker = "select (select count(*) from kept) = 101 and to_regclass('lost') is null";
    signed(
        Run::new("pitr")
            .var("source", "pgdrill")
            .var("storage", &storage)
            .var("target_name", "before_incident")
            .var("marker", marker)
            // No mark at the restore point: unproven content, accepted (unset, it fails).
            .var("accept_unproven", true),
    )
    .expect(0);

    // The base backup's statement: its archive by the sha256 of the stored object (which
    // its manifest records), and the WAL range inside it.
    let base = statement(&evidence, 1);
    let ph = &base["predicate"]["physical"][0];
    let archive = ph["base"]["name"].as_str().expect("the archive's name").to_string();
    let bytes = std::fs::read(&archive).expect("the archive is a local file");
    assert_eq!(subject(&base, &archive), Some(sha256_hex(&bytes)), "{base}");
    let manifest = common::read_json(&PathBuf::from(format!("{archive}.manifest.json")));
    assert_eq!(ph["base"]["sha256"], manifest["sha256"], "{ph}");
    assert_eq!(ph["wal_from_lsn"], manifest["start_lsn"], "{ph}");
    assert_eq!(ph["wal_to_lsn"], manifest["stop_lsn"], "{ph}");
    assert!(ph["wal_first"]["name"].as_str().is_some_and(|n| n.len() == 24), "{ph}");
    assert_eq!(ph["system_identifier"], manifest["system_identifier"], "{ph}");

    // The recovery's statement: the same archive, the WAL replayed by first and last segment
    // with their sha256, the target and the server's word that it stopped there.
    let pitr = statement(&evidence, 2);
    let ph = &pitr["predicate"]["physical"][0];
    assert_eq!(subject(&pitr, &archive), Some(sha256_hex(&bytes)), "{pitr}");
    assert_eq!(ph["wal_basis"], "pgdrill archive", "{ph}");
    let system = manifest["system_identifier"].as_str().expect("system");
    let fetched = root.path().join("fetched");
    std::fs::create_dir(&fetched).expect("mkdir");
    for end in ["wal_first", "wal_last"] {
        let name = ph[end]["name"].as_str().unwrap_or_else(|| panic!("{end} named: {ph}")).to_string();
        let sha = ph[end]["sha256"].as_str().unwrap_or_else(|| panic!("{end} has a sha256: {ph}")).to_string();
        assert_eq!(subject(&pitr, &name).as_deref(), Some(sha.as_str()), "{end} is a subject: {pitr}");
        // Independently: what `wal fetch` gives back hashes to the same.
        let dest = fetched.join(&name);
        Run::cli(["wal", "fetch", "--config"])
            .arg(&conf)
            .arg("--system-identifier")
            .arg(system)
            .arg(&name)
            .arg(&dest)
            .env_remove("PGDRILL_BACKUP_KEY")
            .expect(0);
        assert_eq!(sha256_hex(&std::fs::read(&dest).expect("fetched")), sha, "{end} {name}");
    }
    assert!(ph["wal_first"]["name"].as_str() <= ph["wal_last"]["name"].as_str(), "{ph}");
    let rec = &ph["recovery"];
    assert_eq!(rec["reached"], true, "{rec}");
    assert!(rec["target"].as_str().is_some_and(|t| t.contains("before_incident")), "{rec}");
    assert!(
        rec["stop_line"].as_str().is_some_and(|l| l.contains("recovery stopping at restore point \"before_incident\"")),
        "{rec}"
    );
    assert_eq!(rec["marker"], true, "{rec}");
    assert!(rec["server_log"].as_array().is_some_and(|l| !l.is_empty()), "{rec}");
    // Segregated: the recovered copy shares its source's system identifier (it is a copy),
    // and that is said rather than judged.
    let target = &pitr["predicate"]["target"];
    assert_eq!(target["segregated_from_source"], true, "{target}");
    assert!(
        target["segregation_compared"]
            .as_array()
            .is_some_and(|c| c.iter().any(|l| l.as_str().is_some_and(|l| l.contains("physical copy")))),
        "{target}"
    );
    // And the log with both records checks out.
    common::verifying(&evidence, &public).expect(0);
}
