//! The evidence log of one location: an append-only chain of signed statements.
//!
//! ```text
//! LOCATION/public-key.pem            the key that checks every signature here
//! LOCATION/records/00000001.dsse.json one DSSE envelope per run, numbered from 1
//! LOCATION/records/00000001.tsr       its RFC 3161 timestamp, when a TSA is configured
//! LOCATION/checkpoint.dsse.json      the signed head: last sequence and its digest
//! LOCATION/heads/00000001-SHA256.dsse.json the signed head each append published, never replaced
//! LOCATION/.evidence.lock            taken while appending
//! ```
//!
//! Each statement carries, inside what is signed, its own sequence number and its
//! predecessor's (sequence, sha256 of its file, and what run it was), so a record removed
//! from the middle is named by its successor, an edited one no longer matches the digest its
//! successor signed, and an old statement copied in as new carries the wrong sequence. The
//! checkpoint does the same for the last record. Appends hold an exclusive lock, so two runs
//! appending at once cannot both chain to the same predecessor (a fork); a record is never
//! replaced (`persist_noclobber`).
//!
//! The checkpoint is replaced by every append, so an older one put back after a cut names
//! its own last record truly. Each append therefore also publishes the head it made as a
//! file of its own under `heads/` (the same signed payload as a checkpoint, with the log's
//! location and chain id), created once and never replaced: a log shorter than its newest
//! head is named against it (`anchors::against_heads`), the newest record included, with no
//! later run needed. It is written last, whole or not at all: a run killed before it leaves
//! its record anchored by nothing yet, which `evidence verify` says, never a failure.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::dsse::{Envelope, IN_TOTO};
use super::keys::{sha256_hex, PublicKey, SigningKey};
use super::statement::{Statement, CHECKPOINT_TYPE};
use crate::Error;

pub const RECORDS: &str = "records";
pub const PUBLIC_KEY: &str = "public-key.pem";
pub const CHECKPOINT: &str = "checkpoint.dsse.json";
pub const HEADS: &str = "heads";
const LOCK: &str = ".evidence.lock";

/// A record's file name.
pub fn record_name(sequence: u64) -> String {
    format!("{sequence:08}.dsse.json")
}

/// The sequence of a record's file name.
pub fn parse_record_name(name: &str) -> Option<u64> {
    let n = name.strip_suffix(".dsse.json")?;
    (n.len() == 8 && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten().filter(|n| *n > 0)
}

/// A published head's file name: the record's sequence and sha256.
pub fn head_name(sequence: u64, sha256: &str) -> String {
    format!("{sequence:08}-{sha256}.dsse.json")
}

/// The sequence and sha256 of a head's file name.
pub fn parse_head_name(name: &str) -> Option<(u64, String)> {
    let (n, sha) = name.strip_suffix(".dsse.json")?.split_once('-')?;
    let n = parse_record_name(&format!("{n}.dsse.json"))?;
    (sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| (n, sha.to_string()))
}

/// What a link tells of the record it points to: enough to name a removed one.
pub fn describe(statement: &Statement) -> Value {
    let p = &statement.predicate;
    json!({
        "runbook": p["runbook"]["name"],
        "kind": p["kind"],
        "outcome": p["outcome"],
        "finished_at": p["finished_at"],
    })
}

/// A link's description as a phrase: "the failed drill `dr` that finished at ...".
pub fn described(d: &Value) -> String {
    let s = |k: &str| d[k].as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_else(|| "?".into());
    format!("the {} {} `{}` that finished at {}", s("outcome"), s("kind"), s("runbook"), s("finished_at"))
}

/// Where a run's evidence was appended.
#[derive(Debug, Clone)]
pub struct Appended {
    pub sequence: u64,
    pub path: PathBuf,
    pub sha256: String,
    /// The chain's id (its first record's choice).
    pub chain_id: String,
}

fn shown(p: &Path) -> String {
    crate::util::one_line(&p.display().to_string()).into_owned()
}

/// Make `dir` ready for `key`'s statements before a run changes anything: created, its
/// public key written on first use, and refused when it already holds another key's
/// evidence (one log is one key's; mixing keys would make every later check ambiguous).
pub fn prepare(dir: &Path, key: &SigningKey) -> Result<(), Error> {
    std::fs::create_dir_all(dir.join(RECORDS))
        .map_err(|e| Error::environment(format!("evidence location {}: cannot create it: {e}", shown(dir))))?;
    let path = dir.join(PUBLIC_KEY);
    let ours = key.public();
    match std::fs::read(&path) {
        Ok(bytes) => {
            let theirs = PublicKey::from_pem(&bytes, &format!("the evidence location's {}", shown(&path)))?;
            if theirs.keyid() != ours.keyid() {
                return Err(Error::invalid(format!(
                    "evidence location {} holds statements of another key (keyid {}), not of this signing key (keyid {}): give this key's own location, or the key that signed there",
                    shown(dir),
                    theirs.keyid(),
                    ours.keyid()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Another run may write it first: then it must be this same key's.
            match write_new(dir, &path, ours.pem().as_bytes(), false) {
                Err(_) if path.exists() => prepare(dir, key),
                r => r,
            }
        }
        Err(e) => Err(Error::environment(format!("evidence location: cannot read {}: {e}", shown(&path)))),
    }
}

/// Write `bytes` under `path` whole or not at all (a temporary file in `dir`, then a rename);
/// `replace` false never overwrites an existing file.
pub(crate) fn write_new(dir: &Path, path: &Path, bytes: &[u8], replace: bool) -> Result<(), Error> {
    use std::io::Write as _;
    let err = |e: std::io::Error| Error::environment(format!("evidence: writing {}: {e}", shown(path)));
    let mut tmp = tempfile::Builder::new().prefix(".evidence-").tempfile_in(dir).map_err(err)?;
    tmp.as_file_mut().write_all(bytes).and_then(|_| tmp.as_file().sync_all()).map_err(err)?;
    // Where a kill -9 during the checkpoint's write is tested: the new checkpoint whole in its
    // temporary, the old one still under the final name.
    if path.file_name().is_some_and(|n| n == CHECKPOINT) {
        crate::util::test_pause("evidence-checkpoint-temporary");
    }
    if replace {
        tmp.persist(path).map_err(|e| err(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| err(e.error))?;
    }
    // The rename itself survives a crash only once the directory is synced.
    if let Some(parent) = path.parent() {
        let _ = std::fs::File::open(parent).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// The records' sequence numbers in `dir`, ascending.
pub fn sequences(dir: &Path) -> Result<Vec<u64>, Error> {
    let records = dir.join(RECORDS);
    let rd = std::fs::read_dir(&records)
        .map_err(|e| Error::invalid(format!("{} holds no evidence log ({}: {e})", shown(dir), shown(&records))))?;
    let mut v: Vec<u64> = rd.flatten().filter_map(|e| e.file_name().to_str().and_then(parse_record_name)).collect();
    v.sort_unstable();
    Ok(v)
}

/// The statement inside an envelope's bytes (not checked: callers that judge use `verify`).
pub fn statement_of(bytes: &[u8]) -> Option<Statement> {
    let e = Envelope::from_bytes(bytes).ok()?;
    serde_json::from_slice(&e.payload_bytes().ok()?).ok()
}

/// Remove what a run killed mid-write left (`.evidence-*` temporaries, never under a final
/// name) once it is an hour old: a younger one may be a write that runs outside the lock
/// (the public key's, a timestamp's) still under way.
fn remove_stale_temporaries(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for e in rd.flatten() {
        let temporary = e.file_name().to_str().is_some_and(|n| n.starts_with(".evidence-"));
        if temporary && e.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The log's lock, held until dropped: appends take it, and so does whoever must read the
/// log as one consistent state (the checkpoint and the records it counts) while runs append.
pub fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, Error> {
    let lock_path = dir.join(LOCK);
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::environment(format!("evidence: cannot open {}: {e}", shown(&lock_path))))?;
    // Blocking: another run's append takes milliseconds, and its record must come first.
    nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::environment(format!("evidence: cannot lock {}: {e}", shown(&lock_path))))
}

/// How a log's location is written into its records and compared by `evidence verify`: a
/// local directory by its canonical path (a relative path, a symlink and `file://` name one
/// place once), a store's URL as given without a trailing `/`.
pub fn location_name(location: &str) -> String {
    let location = location.trim();
    match crate::storage::local_dir(location) {
        Some(p) => std::fs::canonicalize(&p)
            .or_else(|_| std::path::absolute(&p))
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| location.to_string()),
        None => location.trim_end_matches('/').to_string(),
    }
}

/// A new chain's id: 16 random bytes, hex. Two logs signed with one key never share one, so a
/// record (or a whole log) of another location is told from this log's own by its id.
fn new_chain_id() -> Result<String, Error> {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).map_err(|e| Error::environment(format!("evidence: no random chain id: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Append `statement` to the log in `dir`, signed with `key`: chained to the last record and
/// followed by a new signed checkpoint, under the log's lock. The record says it was
/// appended at `dir` (its canonical path).
pub fn append(dir: &Path, key: &SigningKey, statement: Statement) -> Result<Appended, Error> {
    // Created first: its canonical path is the one a later run and `evidence verify` see.
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::environment(format!("evidence location {}: cannot create it: {e}", shown(dir))))?;
    append_at(dir, &location_name(&dir.display().to_string()), key, statement)
}

/// [`append`] for a log that lives at `location` (a store's URL) and is staged in `dir`.
///
/// Each record carries, inside what is signed, its chain's id (random, chosen by the log's
/// first record and copied by every later one) and the location it was appended at: a whole
/// log of another location signed with the same key, put in this one's place, is then told
/// by `evidence verify` from this log's own (`verify::against_location`).
pub fn append_at(dir: &Path, location: &str, key: &SigningKey, mut statement: Statement) -> Result<Appended, Error> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::environment(format!("evidence location {}: cannot create it: {e}", shown(dir))))?;
    let _lock = lock(dir)?;
    prepare(dir, key)?;
    remove_stale_temporaries(dir);

    let last = sequences(dir)?.last().copied();
    let mut chain_id = None;
    let previous = match last {
        None => Value::Null,
        Some(n) => {
            let path = dir.join(RECORDS).join(record_name(n));
            let bytes = std::fs::read(&path)
                .map_err(|e| Error::environment(format!("evidence: reading {}: {e}", shown(&path))))?;
            let mut link = json!({ "sequence": n, "record_sha256": sha256_hex(&bytes) });
            if let Some(s) = statement_of(&bytes) {
                link["record"] = describe(&s);
                chain_id = s.predicate["chain"]["id"].as_str().map(str::to_string);
            }
            link
        }
    };
    let sequence = last.unwrap_or(0) + 1;
    // The first record (or the first of a log written before chains had ids) starts the
    // chain: it also names the database of its run, what the log was started for.
    let genesis = chain_id.is_none();
    let chain_id = match chain_id {
        Some(id) => id,
        None => new_chain_id()?,
    };
    if let Some(p) = statement.predicate.as_object_mut() {
        let mut chain = json!({ "sequence": sequence, "previous": previous, "id": &chain_id, "location": location });
        if genesis {
            chain["genesis"] =
                json!({ "location": location, "database": p.get("database").cloned().unwrap_or(Value::Null) });
        }
        p.insert("chain".into(), chain);
    }
    let payload = serde_json::to_vec(&statement).map_err(|e| Error::environment(format!("evidence: {e}")))?;
    let envelope = Envelope::sign(IN_TOTO, &payload, key)?.to_bytes();
    let path = dir.join(RECORDS).join(record_name(sequence));
    // Where a kill -9 is tested: the lock held, nothing written; then the record written,
    // its checkpoint not.
    crate::util::test_pause("evidence-chained");
    write_new(dir, &path, &envelope, false)?;
    crate::util::test_pause("evidence-record-written");
    let sha256 = sha256_hex(&envelope);

    let checkpoint = json!({
        "_type": CHECKPOINT_TYPE,
        "sequence": sequence,
        "record_sha256": sha256,
        "record": describe(&statement),
        "signed_at": crate::util::rfc3339(time::OffsetDateTime::now_utc()),
    });
    let payload = serde_json::to_vec(&checkpoint).map_err(|e| Error::environment(format!("evidence: {e}")))?;
    let signed = Envelope::sign(CHECKPOINT_TYPE, &payload, key)?.to_bytes();
    write_new(dir, &dir.join(CHECKPOINT), &signed, true)?;
    // The head again under a name of its own, never replaced: what an older checkpoint put
    // back cannot undo. Where a kill -9 before it is tested: the record and checkpoint in
    // place, no head (the record is then anchored by nothing yet, and said so).
    crate::util::test_pause("evidence-checkpoint-written");
    let mut head = checkpoint;
    head["location"] = json!(location);
    head["chain"] = json!(&chain_id);
    let payload = serde_json::to_vec(&head).map_err(|e| Error::environment(format!("evidence: {e}")))?;
    let signed = Envelope::sign(CHECKPOINT_TYPE, &payload, key)?.to_bytes();
    let heads = dir.join(HEADS);
    std::fs::create_dir_all(&heads)
        .map_err(|e| Error::environment(format!("evidence: cannot create {}: {e}", shown(&heads))))?;
    write_new(dir, &heads.join(head_name(sequence, &sha256)), &signed, false)?;
    Ok(Appended { sequence, path, sha256, chain_id })
}

/// The log's head as it is now (its newest record, named as an anchor names it), for the
/// manifests a run writes before its own record is appended; `None` for a log with no
/// record yet. `location`: where the log lives, as its records name it.
pub fn head(dir: &Path, location: &str) -> Option<crate::backup::EvidenceHead> {
    let n = sequences(dir).ok()?.last().copied()?;
    let bytes = std::fs::read(dir.join(RECORDS).join(record_name(n))).ok()?;
    let chain = statement_of(&bytes)?.predicate["chain"]["id"].as_str()?.to_string();
    Some(crate::backup::EvidenceHead {
        location: location_name(location),
        chain,
        sequence: n,
        record_sha256: sha256_hex(&bytes),
    })
}

/// Keep the TSA's timestamp `tsr` of record `sequence` beside it (never replacing one).
pub fn add_timestamp(dir: &Path, sequence: u64, tsr: &[u8]) -> Result<(), Error> {
    write_new(dir, &dir.join(RECORDS).join(super::timestamp::tsr_name(sequence)), tsr, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_eight_digits_from_one() {
        assert_eq!(record_name(7), "00000007.dsse.json");
        assert_eq!(parse_record_name("00000007.dsse.json"), Some(7));
        for bad in ["00000000.dsse.json", "7.dsse.json", "0000000a.dsse.json", "00000007.json", ".evidence-x"] {
            assert_eq!(parse_record_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn head_names_are_the_record_s_sequence_and_sha256() {
        let sha = "ab".repeat(32);
        assert_eq!(head_name(7, &sha), format!("00000007-{sha}.dsse.json"));
        assert_eq!(parse_head_name(&head_name(7, &sha)), Some((7, sha.clone())));
        for bad in [
            format!("00000000-{sha}.dsse.json"),
            format!("00000007-{}.dsse.json", "AB".repeat(32)),
            format!("00000007-{}.dsse.json", &sha[1..]),
            format!("00000007-{sha}.json"),
            "00000007.dsse.json".to_string(),
        ] {
            assert_eq!(parse_head_name(&bad), None, "{bad}");
        }
    }

    /// Each append publishes its head under `heads/`, signed like the checkpoint and naming
    /// the log's location and chain; an existing head is never replaced.
    #[test]
    fn each_append_publishes_its_head_once() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let s = || {
            Statement::run(
                vec![super::super::statement::Subject::sha256("x", "00")],
                json!({"runbook": {"name": "h"}, "kind": "verify", "outcome": "passed"}),
            )
        };
        let one = append(dir.path(), &key, s()).expect("append 1");
        let two = append(dir.path(), &key, s()).expect("append 2");
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join(HEADS))
            .expect("heads")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec![head_name(1, &one.sha256), head_name(2, &two.sha256)]);
        let bytes = std::fs::read(dir.path().join(HEADS).join(&names[1])).expect("head 2");
        let e = Envelope::from_bytes(&bytes).expect("envelope");
        let head: Value = serde_json::from_slice(&e.verify(&key.public()).expect("signed")).expect("json");
        assert_eq!(e.payload_type, CHECKPOINT_TYPE);
        assert_eq!((head["sequence"].as_u64(), head["record_sha256"].as_str()), (Some(2), Some(two.sha256.as_str())));
        assert_eq!(head["chain"].as_str(), Some(two.chain_id.as_str()));
        assert_eq!(head["location"].as_str(), Some(location_name(&dir.path().display().to_string()).as_str()));
        let path = dir.path().join(HEADS).join(&names[0]);
        assert!(write_new(dir.path(), &path, b"other", false).is_err(), "a head was replaced");
    }

    /// Two threads appending at once (as two runs would) make one chain of 2 x 10 records,
    /// never two records with the same predecessor.
    #[test]
    fn concurrent_appends_do_not_fork_the_chain() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = std::sync::Arc::new(SigningKey::generate().expect("key"));
        let handles: Vec<_> = (0..2)
            .map(|t| {
                let (dir, key) = (dir.path().to_path_buf(), key.clone());
                std::thread::spawn(move || {
                    for i in 0..10 {
                        let s = Statement::run(
                            vec![super::super::statement::Subject::sha256("x", "00")],
                            json!({"runbook": {"name": format!("t{t}-{i}")}, "kind": "verify", "outcome": "passed"}),
                        );
                        append(&dir, &key, s).expect("append");
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert_eq!(sequences(dir.path()).expect("list"), (1..=20).collect::<Vec<_>>());
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(v.findings.is_empty(), "{:?}", v.findings);
    }
}

#[cfg(test)]
mod interrupted {
    use super::*;

    fn passed(name: &str) -> Statement {
        Statement::run(
            vec![super::super::statement::Subject::sha256("x", "00")],
            json!({"runbook": {"name": name}, "kind": "verify", "outcome": "passed", "finished_at": "2026-12-01T00:00:00Z"}),
        )
    }

    /// A run killed (or out of disk) after its record was renamed into place but before the
    /// checkpoint was: the log then holds the same files as after the interruption. Its
    /// records are all signed and chained, so `evidence verify` must not call it tampered,
    /// and the next append must chain to the interrupted record and re-sign the checkpoint.
    #[test]
    fn an_append_interrupted_before_its_checkpoint_is_not_reported_as_tampering() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        append(dir.path(), &key, passed("one")).expect("append 1");
        let checkpoint_1 = std::fs::read(dir.path().join(CHECKPOINT)).expect("checkpoint");
        append(dir.path(), &key, passed("two")).expect("append 2");
        // The state a crash between the record's rename and the checkpoint's leaves.
        std::fs::write(dir.path().join(CHECKPOINT), &checkpoint_1).expect("interrupt");
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(v.ok(), "an interrupted append reads as tampering: {:?}", v.findings);
        assert_eq!(v.good.len(), 2);
        assert!(v.text("loc").contains("interrupted"), "{}", v.text("loc"));
        // The checkpoint still verifies and is packed: it covers records 1..=1.
        assert_eq!(v.checkpoint.as_deref(), Some(&checkpoint_1[..]));
        // The next run heals it: no fork, checkpoint at 3.
        append(dir.path(), &key, passed("three")).expect("append 3");
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(v.ok() && v.good.len() == 3, "{:?}", v.findings);
        assert!(!v.text("loc").contains("interrupted"), "{}", v.text("loc"));
        // A checkpoint that names another sha256 for its record is still an edit.
        std::fs::write(dir.path().join(RECORDS).join(record_name(1)), b"{}\n").expect("damage 1");
        std::fs::write(dir.path().join(CHECKPOINT), &checkpoint_1).expect("old checkpoint");
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(!v.ok(), "a damaged record 1 under an old checkpoint is accepted");
        assert!(v.findings.iter().any(|f| f.record == Some(1)), "{:?}", v.findings);
    }

    /// Two processes (two runs, not two threads of one) appending to one log at once: the
    /// lock is a file lock, so they take turns and the chain never forks. The test runs
    /// itself twice as the two appenders.
    #[test]
    fn two_processes_appending_at_once_do_not_fork_the_chain() {
        const CHILD: &str = "PGDRILL_TEST_APPEND_DIR";
        const NAME: &str = "evidence::log::interrupted::two_processes_appending_at_once_do_not_fork_the_chain";
        let key_pem = "PGDRILL_TEST_APPEND_KEY";
        if let Some(dir) = std::env::var_os(CHILD) {
            let key = SigningKey::from_pem(&std::env::var(key_pem).expect("key"), "test").expect("key");
            for i in 0..15 {
                append(std::path::Path::new(&dir), &key, passed(&format!("p{}-{i}", std::process::id())))
                    .expect("append");
            }
            return;
        }
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        let exe = std::env::current_exe().expect("the test binary");
        let children: Vec<_> = (0..2)
            .map(|_| {
                crate::child::command(&exe)
                    .args(["--exact", NAME, "--nocapture"])
                    .env(CHILD, dir.path())
                    .env(key_pem, key.pem())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        for mut c in children {
            assert!(c.wait().expect("wait").success(), "an appending process failed");
        }
        assert_eq!(sequences(dir.path()).expect("list"), (1..=30).collect::<Vec<_>>());
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(v.ok() && v.notes.is_empty(), "{}", v.text("two processes"));
        let runbooks: std::collections::BTreeSet<String> = v
            .good
            .iter()
            .filter_map(|g| g.statement.predicate["runbook"]["name"].as_str())
            .map(|n| n.split('-').next().unwrap_or("").to_string())
            .collect();
        assert_eq!(runbooks.len(), 2, "both processes appended: {runbooks:?}");
    }

    /// `evidence verify` (and so `evidence pack`) reading a log while a run appends to it,
    /// without the lock (an auditor's read-only copy has none to take): it listed the
    /// records, then read a checkpoint a newer append had written, and named a record it
    /// had not listed as removed. It reads the checkpoint first now: a record appended
    /// meanwhile is only one past the checkpoint, which is no finding.
    #[test]
    fn verifying_while_a_run_appends_never_reports_a_removed_record() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = std::sync::Arc::new(SigningKey::generate().expect("key"));
        for i in 0..20 {
            append(dir.path(), &key, passed(&format!("seed{i}"))).expect("append");
        }
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let (dir, key, done) = (dir.path().to_path_buf(), key.clone(), done.clone());
            std::thread::spawn(move || {
                let mut i = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) && i < 400 {
                    append(&dir, &key, passed(&format!("w{i}"))).expect("append");
                    i += 1;
                }
            })
        };
        let mut false_alarms = Vec::new();
        for _ in 0..20 {
            let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
            if !v.ok() {
                false_alarms.push(v.text("busy log"));
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("writer");
        assert!(false_alarms.is_empty(), "{} verifies saw tampering: {}", false_alarms.len(), false_alarms[0]);
    }

    /// A run killed while writing its record left `.evidence-XXXX` beside the log, and every
    /// such run one more, forever. The next append removes those an hour old.
    #[test]
    fn temporaries_a_killed_run_left_are_removed_by_the_next_append() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        append(dir.path(), &key, passed("one")).expect("append");
        let (old, young) = (dir.path().join(".evidence-old123"), dir.path().join(".evidence-new456"));
        for p in [&old, &young] {
            std::fs::write(p, b"half a rec").expect("write");
        }
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options().write(true).open(&old).and_then(|f| f.set_modified(two_hours_ago)).expect("age");
        append(dir.path(), &key, passed("two")).expect("append");
        assert!(!old.exists(), "a killed run's temporary is still there");
        assert!(young.exists(), "a write that may be under way was removed");
        let v = super::super::verify::verify(dir.path(), &key.public()).expect("verify");
        assert!(v.ok(), "{:?}", v.findings);
    }
}
