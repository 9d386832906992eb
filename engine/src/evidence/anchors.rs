//! Anchors of a log's head kept outside the log, where whoever edits the evidence folder
//! cannot follow without a key: the ledger's history lines (`verify::against_ledger`), a
//! run's own run.json, and the manifests of the backups the runs wrote (under the backup
//! key's MAC). A log cut at its end with an older checkpoint put back verifies by itself;
//! held to the newest anchor of its location, the cut is named with the anchor that shows it.
//!
//! What still escapes: a cut that also removes every anchor of the records cut (the history
//! lines, the run.json files, the backups whose manifests anchor them), or rewrites them
//! with the keys (the backup key re-MACs a manifest). The manifests a run writes (a dump's,
//! a base backup's) anchor the head it found, not its own record: the newest run's record is
//! anchored by its run.json and its ledger line only, and by the next run's manifests; when
//! none of those names it, the result says so (`unanchored`) rather than a bare "ok".

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
    let of = match m.manifest["kind"].as_str() {
        Some("base") => format!("a base backup of system {}", s("system_identifier")),
        _ => format!("a backup of database `{}`", s("database")),
    };
    let what = format!("the manifest {shown} ({of} finished at {}, {})", s("finished_at"), m.trust);
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
/// its `Store`) that carries an evidence anchor. With the backup key (`key`), each manifest is
/// authenticated first, in a directory or an object store alike (its archive's header read
/// with a ranged read through the store), and one that fails is not used (said in `notes`);
/// without the key it is used and said unauthenticated.
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
            let Ok(mut manifest) = serde_json::from_slice::<Value>(&bytes) else { continue };
            if manifest["evidence"].is_null() {
                continue;
            }
            let shown = store.url_of(&meta.key);
            // Authenticated where it is, a directory or an object store alike: the archive's
            // header read with a ranged read of its first bytes through the store.
            let archive = meta.key.trim_end_matches(".manifest.json");
            let judged = match key {
                // A base backup's manifest (`backup.base`): its MAC, when it is encrypted; the
                // anchor taken from the manifest that was authenticated.
                Some(k) if manifest["kind"] == "base" => {
                    crate::backup::base::read_manifest(store.as_ref(), archive, Some(k)).await.map(|(m, authentic)| {
                        manifest = serde_json::to_value(m).unwrap_or(Value::Null);
                        match authentic {
                            true => "authenticated under the backup key".to_string(),
                            false => {
                                "manifest UNAUTHENTICATED: the base backup is not encrypted, so it has no MAC".into()
                            }
                        }
                    })
                }
                Some(k) => {
                    crate::backup::authenticate_manifest_at(store.as_ref(), archive, &bytes, Some(k)).await.map(|t| {
                        match t {
                            crate::backup::ManifestTrust::Authenticated => "authenticated under the backup key".into(),
                            t => t.describe().to_string(),
                        }
                    })
                }
                None => Ok("its MAC not checked here: no backup key given".into()),
            };
            let trust = match judged {
                Ok(t) => t,
                Err(e) => {
                    notes.push(format!("{}: its evidence anchor is not used", crate::util::one_line(&e.to_string())));
                    continue;
                }
            };
            out.push(ManifestRead { shown, manifest, trust });
        }
    }
    out
}

/// Say plainly which of the log's newest records no anchor outside it names (`anchored`: the
/// newest sequence any anchor named, if one did). A run's backup manifests anchor the head it
/// found, not its own record: without a ledger line, a run.json or a kept checkpoint naming
/// it, the newest record is anchored by nothing until a later run writes a manifest, and
/// a cut of it (with an older checkpoint put back) cannot be told. Said in the result line,
/// never a bare "ok".
pub fn unanchored(v: &mut Verified, anchored: Option<u64>) {
    let Some(newest) = v.good.last().map(|g| g.sequence) else { return };
    let line = match anchored {
        Some(a) if a >= newest => return,
        Some(a) if a + 1 == newest => format!(
            "record {newest} (the newest) is anchored by nothing yet (no ledger line, run.json, backup manifest or kept checkpoint names it): a cut of it cannot be told until a later run anchors it"
        ),
        Some(a) => format!(
            "records {} to {newest} (the newest) are anchored by nothing yet (no ledger line, run.json, backup manifest or kept checkpoint names them): a cut of them cannot be told until a later run anchors them",
            a + 1
        ),
        None => format!(
            "none of its {newest} records is anchored outside the log (no ledger line, run.json, backup manifest or kept checkpoint names this log): records cut off its end cannot be told"
        ),
    };
    v.unproven.push(line);
}
