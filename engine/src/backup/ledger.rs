//! The verification ledger: `ledger.jsonl` beside the backups, one JSON line per
//! verification, appended and never rewritten, so it doubles as audit evidence.
//!
//! A line names the backup by file name (`backup`), its sha256, when it was verified, the
//! result (`passed`, `failed`, `interrupted`, or `error` when the environment failed and
//! nothing was learnt about the backup) and durations. `pgdrill backups list` shows the last
//! verification of each backup; `retention.prune` keeps the newest verified one; a verify
//! run skips backups already verified unless forced.
//!
//! The ledger fails closed: a line that is not a ledger entry (a stray byte, a BOM, an edit
//! gone wrong) is an error naming the file and line, never skipped, because a skipped
//! "passed" line makes the newest verified backup look unverified and retention deletes it.
//! The one exception is an unterminated last line that does not parse: every complete
//! line ends in a newline and is fsynced before the run reports it recorded, so such a
//! line is what a crash in the middle of an append leaves, a record nobody was ever told
//! was written. Readers ignore it (and say so); the next append cuts it off under the
//! ledger's lock before writing, so it never ends up in the middle of the file.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Class, Classified};

pub const FILE: &str = "ledger.jsonl";

/// A ledger that cannot be trusted, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {why}; the ledger is evidence and is not read past a damaged line: fix or remove that line (keep a copy), then run again", file.display())]
pub struct LedgerError {
    pub file: PathBuf,
    /// 1-based; 0 when the file as a whole cannot be read.
    pub line: usize,
    pub why: String,
}

/// A ledger that cannot be trusted fails the check that reads it (fail closed: a lost
/// "passed" line must not make a verified backup look unverified, nor the reverse).
impl Classified for LedgerError {
    fn class(&self) -> Class {
        Class::Failed
    }
}

/// One verification.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// File name of the backup.
    pub backup: String,
    #[serde(default)]
    pub sha256: Option<String>,
    pub verified_at: String,
    pub result: String,
    #[serde(default)]
    pub duration_s: Option<f64>,
    /// Outcome and duration of each check, by name.
    #[serde(default)]
    pub checks: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub pgdrill_version: Option<String>,
    /// Why a run that did not pass ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The content's verdict apart from the age's: proven, unproven, failed, error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// What the content was proven against: manifest, source, expectations, earlier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ground_truth: Option<String>,
    /// The age's verdict when verified: fresh, stale, unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<String>,
    /// Rows per table of the restored copy, kept when its content was proven: the ground
    /// truth a later backup of the folder without a manifest is held against
    /// (`verify.fingerprint`'s `earlier_than`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<std::collections::BTreeMap<String, i64>>,
    /// The restored copy's schema objects by kind, by name only (tables, columns,
    /// constraints, indexes, functions...), kept when its content was proven: a later backup
    /// of the folder without a manifest must still have every one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objects: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// The same objects' definitions, by kind then object, each as a digest (sha256, 16 hex
    /// digits) of the schema line that defines it: a column's type, nullability and default,
    /// an index's `pg_get_indexdef`, a constraint's `pg_get_constraintdef`, a function's
    /// arguments and body, a view's `pg_get_viewdef`. A later backup's object of the same name
    /// must have the same definition. Absent in records written before pgdrill kept them:
    /// those compare by name only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>>,
    /// The backup's own grants, by object, as its dump's ACL entries state them, one privilege
    /// per item (`TABLE public.payments: [GRANT SELECT TO reporting]`; see
    /// `complete::Privileges`), kept when its content was proven: a later backup of the
    /// folder without a manifest must still grant each of them. Kept as text, not digests,
    /// so a lost grant is named with its privilege and role. Absent for pgdrill's archives
    /// and in records written before pgdrill kept them: those compare without privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileges: Option<super::complete::Privileges>,
}

/// Where an object store keeps a folder's ledger: an object store has no append, so each
/// verification is one object, `<folder>/.ledger/<time>-<random>.json`, never a rewrite.
pub const RECORDS: &str = ".ledger";

/// Record one verification in `store`: a new object in `folder`'s `.ledger/`. Returns its URL.
pub async fn record(store: &dyn crate::storage::Store, folder: &str, entry: &Entry) -> Result<String, String> {
    let mut bytes = serde_json::to_vec(entry).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let stamp: String = entry.verified_at.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let rand = crate::archive::hex(&crate::archive::crypto::random::<6>());
    let key = if folder.is_empty() {
        format!("{RECORDS}/{stamp}-{rand}.json")
    } else {
        format!("{folder}/{RECORDS}/{stamp}-{rand}.json")
    };
    store.put_new(&key, bytes).await?;
    Ok(store.url_of(&key))
}

/// How many ledger records are read at once: a year of daily verifications is hundreds of
/// small objects, each a request that mostly waits.
const RECORDS_IN_FLIGHT: usize = 16;

/// The records a mirror folder already holds, by key, with the version (ETag) they were
/// read at: hidden beside the gathered `ledger.jsonl` (a mirror's hidden files stay for the
/// run), so each later step of the run reads only records that are new or changed, never
/// the whole ledger again (issue 41).
const READ_RECORDS: &str = ".ledger-records.json";

/// Gather `store`'s ledger records into one `ledger.jsonl` per folder under `root` (the
/// store's local mirror), in the order they were made, so the mirror reads as a local
/// location; a record that is not a ledger entry stops it (the ledger fails closed). From a
/// listing already made (the mirror's one pass, `Remote::listed`). A record
/// read earlier in this run at the ETag the listing shows is taken from the mirror; every
/// other one is read (a store without versions: every one).
async fn gather_from(
    store: &dyn crate::storage::Store,
    root: &Path,
    listed: Vec<crate::storage::Meta>,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut folders: std::collections::BTreeMap<String, Vec<(String, Option<String>)>> =
        std::collections::BTreeMap::new();
    for m in listed {
        let parts: Vec<&str> = m.key.split('/').collect();
        if parts.len() == 3 && parts[1] == RECORDS && parts[2].ends_with(".json") {
            folders.entry(parts[0].to_string()).or_default().push((parts[2].to_string(), m.version.clone()));
        }
    }
    for (folder, mut names) in folders {
        // Names begin with the time of the verification: in order.
        names.sort();
        let local = root.join(&folder).join(FILE);
        let seen_file = root.join(&folder).join(READ_RECORDS);
        // key -> (version, line); unreadable or absent: nothing known, everything is read.
        let seen: HashMap<String, (String, String)> =
            std::fs::read(&seen_file).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
        let keys: Vec<(String, Option<String>)> =
            names.iter().map(|(name, v)| (format!("{folder}/{RECORDS}/{name}"), v.clone())).collect();
        let known = |key: &str, v: &Option<String>| {
            let (at, line) = seen.get(key)?;
            (v.as_deref() == Some(at.as_str())).then(|| line.clone())
        };
        // Read a few at a time: only what this run has not read at this version.
        let unread: Vec<String> = keys.iter().filter(|(k, v)| known(k, v).is_none()).map(|(k, _)| k.clone()).collect();
        let mut read: HashMap<String, String> = HashMap::new();
        let mut reads = futures_util::stream::iter(unread)
            .map(|key| async move { store.read(&key).await.map(|b| (key, b)) })
            .buffered(RECORDS_IN_FLIGHT);
        while let Some(got) = reads.next().await {
            let (key, bytes) = got?;
            let line: Vec<u8> = bytes.iter().copied().filter(|b| *b != b'\n').collect();
            if serde_json::from_slice::<Entry>(&line).is_err() {
                return Err(format!(
                    "{}: not a ledger entry; the ledger is evidence and is not read past a damaged record: fix or remove that object (keep a copy), then run again",
                    store.url_of(&key)
                ));
            }
            // A valid entry is JSON, so UTF-8.
            read.insert(key, String::from_utf8_lossy(&line).into_owned());
        }
        let mut text = String::new();
        let mut now_seen: HashMap<String, (String, String)> = HashMap::new();
        for (key, v) in &keys {
            let line = match read.remove(key) {
                Some(l) => l,
                None => known(key, v).ok_or_else(|| format!("{}: read neither now nor earlier", store.url_of(key)))?,
            };
            text.push_str(&line);
            text.push('\n');
            if let Some(v) = v {
                now_seen.insert(key.clone(), (v.clone(), line));
            }
        }
        crate::storage::write_replace(&local, text.as_bytes())
            .map_err(|e| format!("mirroring {}: {e}", local.display()))?;
        // A cache only: when it cannot be written, the next step reads the records again.
        if let Ok(bytes) = serde_json::to_vec(&now_seen) {
            let _ = crate::storage::write_replace(&seen_file, &bytes);
        }
    }
    Ok(())
}

/// A location as a local directory tree to list (`Store::local_view`: a local directory,
/// or an object store's view of it), with an object store's ledger records gathered into
/// one `ledger.jsonl` per folder, as a local location keeps them: the tree to list, which
/// holds the store its paths stand for, and the listing's warnings (`View::warnings`) for
/// the caller to tell (a step's, through its context).
pub async fn view(store: &dyn crate::storage::Store) -> Result<(crate::storage::tree::Tree, Vec<String>), String> {
    let view = store.local_view().await?;
    // The records are in the listing the view was made from: no second pass. A local
    // directory's view lists nothing: its ledgers are files already.
    gather_from(store, &view.root, view.listed).await?;
    Ok((view.tree, view.warnings))
}

/// The ledger that covers a backup: in its directory.
pub fn path_for(backup: &Path) -> PathBuf {
    backup.parent().unwrap_or(Path::new(".")).join(FILE)
}

/// The file name a backup is recorded under.
pub fn name_of(backup: &Path) -> String {
    backup.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| backup.display().to_string())
}

/// Append one line (O_APPEND, fsync) under an exclusive lock: concurrent verifies never
/// interleave, and a torn line a crash left at the end is cut off first (see the module
/// docs) instead of having the new line glued to it.
pub fn append(ledger: &Path, entry: &Entry) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let f = std::fs::OpenOptions::new().create(true).read(true).append(true).mode(0o600).open(ledger)?;
    let mut f =
        nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| std::io::Error::from(e))?;
    let len = f.metadata()?.len();
    if len > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::Start(len - 1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            let mut all = Vec::new();
            f.seek(SeekFrom::Start(0))?;
            f.read_to_end(&mut all)?;
            let cut = all.iter().rposition(|b| *b == b'\n').map(|i| i + 1).unwrap_or(0);
            if serde_json::from_slice::<Entry>(&all[cut..]).is_ok() {
                // A complete entry that only lacks its newline (edited by hand): keep it.
                f.write_all(b"\n")?;
            } else {
                f.set_len(cut as u64)?;
            }
        }
    }
    f.write_all(&line)?;
    f.sync_all()
}

/// A readable ledger's entries, in order, and a note when a torn last line was left out.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    pub entries: Vec<Entry>,
    pub torn_tail: Option<String>,
}

/// Read a ledger, failing closed on any damaged line. A missing ledger is an empty one (no
/// verification yet).
pub fn read(ledger: &Path) -> Result<Ledger, LedgerError> {
    let err = |line: usize, why: String| LedgerError { file: ledger.to_path_buf(), line, why };
    let bytes = match std::fs::read(ledger) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ledger::default()),
        Err(e) => return Err(err(0, format!("cannot read: {e}"))),
    };
    let mut out = Ledger::default();
    let terminated = bytes.last().is_none_or(|b| *b == b'\n');
    let lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    // split leaves one empty piece after a final newline.
    let n = if terminated { lines.len().saturating_sub(1) } else { lines.len() };
    for (i, raw) in lines[..n].iter().enumerate() {
        let no = i + 1;
        if raw.is_empty() {
            continue;
        }
        if raw.starts_with(b"\xEF\xBB\xBF") {
            return Err(err(no, "starts with a byte order mark (saved by an editor as UTF-8 with BOM)".into()));
        }
        let text = std::str::from_utf8(raw).map_err(|e| err(no, format!("not UTF-8 ({e})")))?;
        match serde_json::from_str::<Entry>(text) {
            Ok(e) => out.entries.push(e),
            Err(_) if !terminated && no == n => {
                out.torn_tail = Some(format!(
                    "{}:{no}: an unterminated last line that is not an entry was ignored (a crash while recording leaves one; the next record removes it)",
                    ledger.display()
                ));
            }
            Err(e) => return Err(err(no, format!("not a ledger entry ({e})"))),
        }
    }
    Ok(out)
}

/// The last verification of each backup, by file name.
pub fn last_by_backup(ledger: &Path) -> Result<HashMap<String, Entry>, LedgerError> {
    let mut out = HashMap::new();
    for e in read(ledger)?.entries {
        out.insert(e.backup.clone(), e);
    }
    Ok(out)
}

/// The last passed verification of a backup whose sha256 still matches.
pub fn passed(ledger: &Path, backup: &str, sha256: Option<&str>) -> Result<Option<Entry>, LedgerError> {
    Ok(read(ledger)?
        .entries
        .into_iter()
        .rev()
        .find(|e| e.backup == backup && e.result == "passed" && (sha256.is_none() || e.sha256.as_deref() == sha256)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(b: &str, result: &str, sha: &str) -> Entry {
        Entry {
            backup: b.into(),
            sha256: Some(sha.into()),
            verified_at: "2026-11-21T00:00:00Z".into(),
            result: result.into(),
            duration_s: Some(1.0),
            checks: Default::default(),
            pgdrill_version: None,
            error: None,
            content: None,
            ground_truth: None,
            age: None,
            tables: None,
            objects: None,
            definitions: None,
            privileges: None,
        }
    }

    #[test]
    fn appends_and_finds_the_last_passed_verification_with_a_matching_hash() {
        let dir = tempfile::tempdir().expect("test");
        let l = dir.path().join(FILE);
        append(&l, &entry("a", "passed", "h1")).expect("test");
        append(&l, &entry("a", "failed", "h1")).expect("test");
        append(&l, &entry("b", "failed", "h2")).expect("test");
        assert_eq!(read(&l).expect("read").entries.len(), 3);
        assert!(passed(&l, "a", Some("h1")).expect("read").is_some());
        // A file replaced under the same name is not "already verified".
        assert!(passed(&l, "a", Some("other")).expect("read").is_none());
        assert!(passed(&l, "b", None).expect("read").is_none());
        assert_eq!(last_by_backup(&l).expect("read")["a"].result, "failed");
    }

    #[test]
    fn a_bad_line_anywhere_is_an_error_naming_the_file_and_line() {
        let dir = tempfile::tempdir().expect("test");
        let l = dir.path().join(FILE);
        let good = serde_json::to_string(&entry("a", "passed", "h")).expect("json");
        for (content, line) in [
            (format!("{good}\nnot json\n{good}\n"), 2),
            (format!("\u{feff}{good}\n"), 1),
            (format!("{good}\n{}\x01\n", &good[..good.len() - 1]), 2),
            (format!("{good}\n{}\n", &good[..20]), 2),
        ] {
            std::fs::write(&l, &content).expect("write");
            let e = read(&l).expect_err(&content);
            assert_eq!(e.line, line, "{content:?}: {e}");
            assert!(e.to_string().starts_with(&format!("{}:{line}: ", l.display())), "{e}");
        }
    }

    #[test]
    fn a_torn_last_line_from_a_crash_is_ignored_and_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().expect("test");
        let l = dir.path().join(FILE);
        append(&l, &entry("a", "passed", "h1")).expect("append");
        let whole = serde_json::to_string(&entry("b", "passed", "h2")).expect("json");
        std::fs::OpenOptions::new().append(true).open(&l).expect("open").write_all(&whole.as_bytes()[..30]).expect("w");
        let r = read(&l).expect("a torn tail is not an error");
        assert_eq!(r.entries.len(), 1);
        assert!(r.torn_tail.as_deref().is_some_and(|t| t.contains(":2: ")), "{:?}", r.torn_tail);
        append(&l, &entry("c", "passed", "h3")).expect("append");
        let r = read(&l).expect("read");
        assert_eq!(r.entries.iter().map(|e| e.backup.as_str()).collect::<Vec<_>>(), ["a", "c"]);
        assert!(r.torn_tail.is_none());
        // A complete last entry without its newline is kept.
        std::fs::OpenOptions::new().append(true).open(&l).expect("open").write_all(whole.as_bytes()).expect("w");
        append(&l, &entry("d", "passed", "h4")).expect("append");
        assert_eq!(read(&l).expect("read").entries.len(), 4);
    }
}
