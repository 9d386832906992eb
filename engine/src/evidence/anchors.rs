//! Anchors of a log's head kept outside the log, where whoever edits the evidence folder
//! cannot follow without a key: the ledger's history lines (`verify::against_ledger`), a
//! run's own run.json, and the manifests of the backups the runs wrote (under the backup
//! key's MAC). A log cut at its end with an older checkpoint put back verifies by itself;
//! held to the newest anchor of its location, the cut is named with the anchor that shows it.
//!
//! What still escapes: a cut that also removes every anchor of the records cut (the history
//! lines, the run.json files, the backups whose manifests anchor them), or rewrites them
//! with the keys (the backup key re-MACs a manifest). The manifests a run writes anchor the
//! head it found, not its own record: the newest run's record is anchored by its run.json
//! and its ledger line only, and by the next run's manifests.

use std::path::Path;

use serde_json::Value;

use super::verify::{hold, Verified};

/// An anchor's `{location, sequence, record_sha256}` when it names this log (`here`).
fn of_here(e: &Value, here: &[String]) -> Option<(u64, String)> {
    let at = e["location"].as_str()?;
    let (n, sha) = (e["sequence"].as_u64()?, e["record_sha256"].as_str()?);
    here.iter().any(|h| h == at).then(|| (n, sha.to_string()))
}

/// Hold the log to a run's run.json (`text`, read at `shown`): the run wrote, beside its
/// report, the head it appended. Returns the anchored sequence when it names this log.
pub fn against_run_json(v: &mut Verified, dir: &Path, here: &[String], text: &str, shown: &str) -> Option<u64> {
    let shown = crate::util::one_line(shown).into_owned();
    let run: Value = serde_json::from_str(text).ok()?;
    let (n, sha) = of_here(&run["evidence"], here)?;
    let top = &run["suites"][0];
    let s = |v: &Value| v.as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_else(|| "?".into());
    let what = format!(
        "the run.json {shown} (the {} {} `{}` that finished at {})",
        s(&run["outcome"]),
        s(&top["kind"]),
        s(&top["name"]),
        s(&run["finished_at"])
    );
    v.held.push(format!("the run.json {shown}: its anchor of this log, record {n}, is there unchanged"));
    hold(v, dir, n, &sha, &what);
    Some(n)
}

/// A backup's manifest read for its anchor: where it is, its JSON, and what is known of its
/// authenticity (said with the anchor it holds).
pub struct ManifestRead {
    pub shown: String,
    pub manifest: Value,
    pub trust: String,
}

/// Hold the log to the newest anchor of it among the backups' manifests (`manifests`, as
/// [`manifests_named`] reads them): a backup written after the records cut names the head
/// its run found. Returns the anchored sequence, if a manifest anchors this log.
pub fn against_manifests(v: &mut Verified, dir: &Path, here: &[String], manifests: &[ManifestRead]) -> Option<u64> {
    let mut newest: Option<(u64, String, &ManifestRead)> = None;
    for m in manifests {
        if let Some((n, sha)) = of_here(&m.manifest["evidence"], here) {
            if newest.as_ref().is_none_or(|(k, ..)| n > *k) {
                newest = Some((n, sha, m));
            }
        }
    }
    let (n, sha, m) = newest?;
    let s = |k: &str| m.manifest[k].as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_default();
    let shown = crate::util::one_line(&m.shown).into_owned();
    let what = format!(
        "the manifest {shown} (a backup of database `{}` finished at {}, {})",
        s("database"),
        s("finished_at"),
        m.trust
    );
    v.held.push(format!(
        "the backup manifests: the newest anchor of this log, record {n} ({shown}, {}), is there unchanged",
        m.trust
    ));
    hold(v, dir, n, &sha, &what);
    Some(n)
}

/// The folders of the backups the log's records name (each record's `backups[].path`): where
/// a backup written after a cut keeps its manifest.
pub fn folders_named(v: &Verified) -> Vec<String> {
    let mut folders: Vec<String> = Vec::new();
    for g in &v.good {
        let Some(backups) = g.statement.predicate["backups"].as_array() else { continue };
        for b in backups {
            let Some(path) = b["path"].as_str() else { continue };
            let Some((folder, _)) = path.trim_end_matches('/').rsplit_once('/') else { continue };
            // A location, never a name read relative to wherever verify runs (another tool's
            // backup id, a relative path).
            let located = folder.starts_with('/') || folder.contains("://");
            if located && !folders.iter().any(|f| f == folder) {
                folders.push(folder.to_string());
            }
        }
    }
    folders
}

/// Read every pgdrill manifest in `folders` (a directory or an object store's folder, through
/// its `Store`) that carries an evidence anchor. With the backup key (`key`), a manifest in a
/// directory is authenticated first, and one that fails is not used (said in `notes`); without
/// it, or in an object store, it is used and said unauthenticated.
pub async fn manifests_named(
    folders: &[String],
    key: Option<&crate::archive::KeySource>,
    notes: &mut Vec<String>,
) -> Vec<ManifestRead> {
    let mut out = Vec::new();
    for folder in folders {
        let Ok(store) = crate::storage::open(folder) else { continue };
        let Ok(listed) = store.list("").await else {
            notes.push(format!(
                "the backups' folder {} could not be listed: its manifests' anchors were not read",
                crate::util::one_line(folder)
            ));
            continue;
        };
        for meta in listed.iter().filter(|m| m.key.ends_with(".manifest.json")) {
            let Ok(bytes) = store.read(&meta.key).await else { continue };
            let Ok(manifest) = serde_json::from_slice::<Value>(&bytes) else { continue };
            if manifest["evidence"].is_null() {
                continue;
            }
            let shown = store.url_of(&meta.key);
            let trust = match (key, store.local_path(&meta.key)) {
                (Some(k), Some(path)) => {
                    let backup = path.with_file_name(
                        path.file_name().and_then(|n| n.to_str()).unwrap_or("").trim_end_matches(".manifest.json"),
                    );
                    match crate::backup::authenticate_manifest(&backup, Some(k)) {
                        Ok(crate::backup::ManifestTrust::Authenticated) => "authenticated under the backup key".into(),
                        Ok(t) => t.describe().to_string(),
                        Err(e) => {
                            notes.push(format!(
                                "{}: its evidence anchor is not used",
                                crate::util::one_line(&e.to_string())
                            ));
                            continue;
                        }
                    }
                }
                (Some(_), None) => "its MAC not checked here: in an object store".into(),
                (None, _) => "its MAC not checked here: no backup key given".into(),
            };
            out.push(ManifestRead { shown, manifest, trust });
        }
    }
    out
}
