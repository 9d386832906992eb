//! `pgdrill evidence publish`: copy an evidence log into an S3 bucket with Object Lock, each
//! object written with a retention (governance or compliance mode, until a date), so that no
//! one, pgdrill included, can delete or overwrite a record before the period ends. Refused
//! when the bucket has no Object Lock configuration: a copy that can be deleted is no
//! better than the local one.
//!
//! The S3 client that writes with retention is `storage::lock`'s (backups use it too);
//! credentials come from the environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL` for an S3-compatible server).

use std::path::Path;
use std::time::Duration;

use super::log::{record_name, CHECKPOINT, PUBLIC_KEY, RECORDS};
pub use crate::storage::lock::Mode;
pub(crate) use crate::storage::lock::{retain_until, Locked, Put};
use crate::Error;

/// What a publish did.
#[derive(Debug, Default)]
pub struct Published {
    pub written: Vec<String>,
    pub already: Vec<String>,
    pub retain_until: String,
}

fn shown_path(p: &Path) -> String {
    crate::util::one_line(&p.display().to_string()).into_owned()
}

/// Copy the log in `dir` to `s3://BUCKET/PREFIX` (`location`) with Object Lock retention
/// `mode` for `retain` from now. Records and timestamps already there are left as they are
/// (they cannot change); one that differs from the local copy is an error naming it. The
/// checkpoint is written again (a new version; the old ones stay locked).
pub async fn publish(dir: &Path, location: &str, mode: Mode, retain: Duration) -> Result<Published, Error> {
    let shown = crate::util::one_line(location).into_owned();
    let rest = location
        .strip_prefix("s3://")
        .ok_or_else(|| Error::invalid(format!("{shown}: Object Lock is an S3 feature: give s3://BUCKET/PREFIX")))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    if bucket.is_empty() || rest.contains('?') || prefix.split('/').any(|c| c == "." || c == "..") {
        return Err(Error::invalid(format!("{shown}: write s3://BUCKET/PREFIX (no options, no `.` or `..`)")));
    }
    // What is published is one verified state of the log, read under its lock: a log with
    // a problem is not made undeletable as if it were whole, and a run appending meanwhile
    // cannot leave the store a checkpoint that counts a record it never got (which would
    // read there as a removed record, kept for the whole retention).
    let snapshot = {
        let key_path = dir.join(PUBLIC_KEY);
        let key = super::keys::PublicKey::from_file(&key_path)?;
        let _lock = super::log::lock(dir)?;
        let v = super::verify::verify(dir, &key)?;
        if !v.ok() {
            return Err(Error::new(
                crate::error::Class::Failed,
                format!(
                    "{}the evidence log has problems: not published (check it with `pgdrill evidence verify`)",
                    v.text(&dir.display().to_string())
                ),
            ));
        }
        let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
        let public =
            std::fs::read(&key_path).map_err(|e| Error::io(format!("reading {}", shown_path(&key_path)), e))?;
        files.push((PUBLIC_KEY.into(), public, false));
        for g in &v.good {
            files.push((format!("{RECORDS}/{}", record_name(g.sequence)), g.bytes.clone(), false));
            let tsr = super::timestamp::tsr_name(g.sequence);
            if let Ok(b) = std::fs::read(dir.join(RECORDS).join(&tsr)) {
                files.push((format!("{RECORDS}/{tsr}"), b, false));
            }
        }
        // The heads its appends published, as they are (each never replaced).
        let heads = std::fs::read_dir(dir.join(super::log::HEADS)).into_iter().flatten().flatten();
        for name in heads.filter_map(|e| e.file_name().to_str().map(str::to_string)) {
            if super::log::parse_head_name(&name).is_some() {
                let path = dir.join(super::log::HEADS).join(&name);
                let b = std::fs::read(&path).map_err(|e| Error::io(format!("reading {}", shown_path(&path)), e))?;
                files.push((format!("{}/{name}", super::log::HEADS), b, false));
            }
        }
        if let Some(c) = v.checkpoint {
            files.push((CHECKPOINT.into(), c, true));
        }
        files
    };
    let locked = Locked::open(location).await?;
    let until = retain_until(retain);
    let mut out = Published { retain_until: until.clone(), ..Default::default() };
    for (name, body, again) in snapshot {
        if !again {
            if let Some(there) = locked.get(&name).await? {
                if there != body {
                    return Err(Error::new(crate::error::Class::Failed, format!(
                        "s3://{bucket}/{} differs from the local {name}: one of the two copies was changed; check both with `pgdrill evidence verify`",
                        locked.key(&name)
                    )));
                }
                out.already.push(name);
                continue;
            }
        }
        locked.put(&name, body, mode, &until, false).await?;
        out.written.push(name);
    }
    Ok(out)
}

/// Name each object of the log at `location` (`s3://BUCKET/PREFIX`) hidden by a delete
/// marker. In a versioned (Object Lock) bucket a DELETE without a version id removes
/// nothing locked: it adds a delete marker that hides the object from the listing the log
/// is read from, so a record or head cut that way would go unseen. Each is a finding naming
/// the version that still holds it; where the versions cannot be read, a note says so.
pub async fn against_delete_markers(v: &mut super::verify::Verified, location: &str) {
    let one = |s: &str| crate::util::one_line(s).into_owned();
    let hidden = match crate::storage::lock::hidden_by_delete_markers(location).await {
        Ok(Some(h)) => h,
        Ok(None) => return,
        Err(e) => {
            v.notes.push(format!(
                "the object versions of {} were not read, so a record or head hidden by a delete marker could not be told: {}",
                one(location),
                one(&e.to_string())
            ));
            return;
        }
    };
    for h in hidden {
        let in_dir = |d: &str| h.name.strip_prefix(&format!("{d}/")).is_some_and(|r| !r.contains('/'));
        if !(h.name == CHECKPOINT || h.name == PUBLIC_KEY || in_dir(RECORDS) || in_dir(super::log::HEADS)) {
            continue;
        }
        let record = h.name.strip_prefix(&format!("{RECORDS}/")).and_then(super::log::parse_record_name);
        v.findings.push(super::verify::Finding {
            record,
            problem: format!(
                "{} is hidden by a delete marker (a DELETE without a version id): its version {} still holds it",
                one(&h.name),
                one(&h.version)
            ),
        });
    }
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `evidence publish` uploaded whatever the directory held, unchecked: a log with a
    /// removed record was made undeletable as if it were whole. It is now verified first
    /// (before any store is asked) and refused, naming the problem.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_log_with_a_problem_is_not_published() {
        use crate::evidence::{keys::SigningKey, log, statement::Statement, statement::Subject};
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        for outcome in ["failed", "passed"] {
            let s = Statement::run(
                vec![Subject::sha256("x", "00")],
                serde_json::json!({"runbook": {"name": "dr"}, "kind": "drill", "outcome": outcome, "finished_at": "2026-12-01T00:00:00Z"}),
            );
            log::append(dir.path(), &key, s).expect("append");
        }
        std::fs::remove_file(dir.path().join(RECORDS).join(record_name(1))).expect("rm");
        let e = publish(dir.path(), "s3://bucket/evidence", Mode::Governance, Duration::from_secs(60))
            .await
            .expect_err("a log with a removed record was published");
        let e = e.to_string();
        assert!(e.contains("record 1: missing: the failed drill") && e.contains("not published"), "{e}");
    }
}
