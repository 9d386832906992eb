//! The verification ledger: `ledger.jsonl` beside the backups, one JSON line per
//! verification, appended and never rewritten, so it doubles as audit evidence.
//!
//! A line names the backup by file name (`backup`), its sha256, when it was verified, the
//! result (`passed`, `failed`, `interrupted`) and durations. `pgdrill backups list` shows the
//! last verification of each backup; `retention.prune` keeps the newest verified one; a
//! verify run skips backups already verified unless forced.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const FILE: &str = "ledger.jsonl";

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
}

/// The ledger that covers a backup: in its directory.
pub fn path_for(backup: &Path) -> PathBuf {
    backup.parent().unwrap_or(Path::new(".")).join(FILE)
}

/// The file name a backup is recorded under.
pub fn name_of(backup: &Path) -> String {
    backup.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| backup.display().to_string())
}

/// Append one line (O_APPEND, fsync): concurrent verifies never interleave within a line.
pub fn append(ledger: &Path, entry: &Entry) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(ledger)?;
    f.write_all(&line)?;
    f.sync_all()
}

/// Every readable line of a ledger (unreadable lines are skipped: the ledger is evidence,
/// not configuration, and one bad line must not hide the rest).
pub fn read(ledger: &Path) -> Vec<Entry> {
    std::fs::read_to_string(ledger)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .collect()
}

/// The last verification of each backup, by file name.
pub fn last_by_backup(ledger: &Path) -> HashMap<String, Entry> {
    let mut out = HashMap::new();
    for e in read(ledger) {
        out.insert(e.backup.clone(), e);
    }
    out
}

/// The last passed verification of a backup whose sha256 still matches.
pub fn passed(ledger: &Path, backup: &str, sha256: Option<&str>) -> Option<Entry> {
    read(ledger)
        .into_iter()
        .rev()
        .find(|e| e.backup == backup && e.result == "passed" && (sha256.is_none() || e.sha256.as_deref() == sha256))
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
        }
    }

    #[test]
    fn appends_and_finds_the_last_passed_verification_with_a_matching_hash() {
        let dir = tempfile::tempdir().expect("test");
        let l = dir.path().join(FILE);
        append(&l, &entry("a", "passed", "h1")).expect("test");
        append(&l, &entry("a", "failed", "h1")).expect("test");
        append(&l, &entry("b", "failed", "h2")).expect("test");
        std::fs::OpenOptions::new().append(true).open(&l).expect("test").write_all(b"not json\n").expect("test");
        assert_eq!(read(&l).len(), 3);
        assert!(passed(&l, "a", Some("h1")).is_some());
        // A file replaced under the same name is not "already verified".
        assert!(passed(&l, "a", Some("other")).is_none());
        assert!(passed(&l, "b", None).is_none());
        assert_eq!(last_by_backup(&l)["a"].result, "failed");
    }
}
