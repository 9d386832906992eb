//! Anchors of a log's head kept outside the log, where whoever edits the evidence folder
//! cannot follow without a key: the ledger's history lines (`verify::against_ledger`), a
//! run's own run.json, and the manifests of the backups the runs wrote (under the backup
//! key's MAC). A log cut at its end with an older checkpoint put back verifies by itself;
//! held to the newest anchor of its location, the cut is named with the anchor that shows it.
//!
//! Each append also publishes the head it made under `heads/` (a file never replaced, the
//! checkpoint's signed payload): held to the newest one (`against_heads`), a cut of the
//! newest record is named with no later run needed. Only anchors authenticated by a key (a
//! head or kept checkpoint under the evidence key, a manifest under the backup key's MAC)
//! count as proof that nothing was cut; the unsigned ones (ledger lines, run.json files, a
//! manifest without a MAC) are compared too (each can show a cut) but listed apart
//! (`Verified::unauthenticated`), never counted as proof.
//!
//! What still escapes: a cut that also removes every anchor of the records cut (the history
//! lines, the run.json files, the backups whose manifests anchor them), or rewrites them
//! with the keys (the backup key re-MACs a manifest). The manifests a run writes (a dump's,
//! a base backup's) anchor the head it found, not its own record: the newest run's record is
//! anchored by its run.json and its ledger line only, and by the next run's manifests; when
//! none of those names it, the result says so (`unanchored`) rather than a bare "ok".

use std::path::Path;

use serde_json::Value;

use super::dsse::Envelope;
use super::keys::PublicKey;
use super::log::{described, parse_head_name, HEADS};
use super::statement::CHECKPOINT_TYPE;
use super::verify::{hold, Finding, Verified};

/// Hold the log in `dir` to the newest head its appends published (`heads/`, each signed
/// with the evidence key `key` and never replaced): its record must be there, unchanged. An
/// older checkpoint put back after a cut names its own last record truly; the head of the
/// record cut still names it. A file there that is not a head this key signed is a finding
/// (and the next older head is used). Returns the sequence the newest head anchors.
pub fn against_heads(v: &mut Verified, dir: &Path, key: &PublicKey, here: &[String]) -> Option<u64> {
    let one = |s: &str| crate::util::one_line(s).into_owned();
    let rd = std::fs::read_dir(dir.join(HEADS)).ok()?;
    let mut heads: Vec<(u64, String, String)> = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        match parse_head_name(&name) {
            Some((n, sha)) => heads.push((n, sha, name)),
            None => v
                .findings
                .push(Finding { record: None, problem: format!("{HEADS}/{} is not a head of this log", one(&name)) }),
        }
    }
    // Newest first: the first that holds is the anchor. The older ones are read too, for the
    // pack (`Verified::heads`): one that does not check is left out, not judged.
    heads.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.2.cmp(&a.2)));
    let mut anchored = None;
    for (n, sha, name) in heads {
        let shown = format!("{HEADS}/{}", one(&name));
        let bytes = std::fs::read(dir.join(HEADS).join(&name)).map_err(|e| e.to_string());
        let judged = bytes.as_ref().map_err(Clone::clone).and_then(|b| {
            let e = Envelope::from_bytes(b)?;
            let p = e.verify(key)?;
            if e.payload_type != CHECKPOINT_TYPE {
                return Err(format!("its payload type is {}, not a head", e.payload_type));
            }
            serde_json::from_slice::<Value>(&p).map_err(|e| e.to_string())
        });
        if anchored.is_some() {
            // An older head: kept for the pack when it checks and its record is there unchanged.
            let fits = judged.as_ref().is_ok_and(|c| {
                c["sequence"].as_u64() == Some(n)
                    && c["record_sha256"].as_str() == Some(sha.as_str())
                    && c["location"].as_str().is_none_or(|at| here.iter().any(|h| h == at))
            });
            if let (true, Ok(b)) = (fits && v.good.iter().any(|g| g.sequence == n && g.sha256 == sha), bytes) {
                v.heads.push((name, b));
            }
            continue;
        }
        let c = match judged {
            Ok(c) => c,
            Err(e) => {
                v.findings.push(Finding { record: None, problem: format!("the head {shown}: {}", one(&e)) });
                continue;
            }
        };
        if c["sequence"].as_u64() != Some(n) || c["record_sha256"].as_str() != Some(sha.as_str()) {
            v.findings.push(Finding {
                record: None,
                problem: format!("the head {shown}: its signed payload names another record than its name"),
            });
            continue;
        }
        // A whole log of another location swapped in brings its heads: `against_location`
        // names that swap; its heads are not this log's to hold it to.
        if let Some(at) = c["location"].as_str().filter(|at| !here.iter().any(|h| h == at)) {
            v.notes.push(format!("the head {shown} was published at {}, not here: not held to", one(at)));
            continue;
        }
        let signed_at = c["signed_at"].as_str().map(one).unwrap_or_default();
        let what = format!(
            "the head {shown} (signed at {signed_at}, published when record {n}, {}, was appended)",
            described(&c["record"])
        );
        v.held.push(format!("the newest head its appends published, {shown}: record {n} is there unchanged"));
        hold(v, dir, n, &sha, &what);
        if let Ok(b) = bytes {
            v.heads.push((name, b));
        }
        anchored = Some(n);
    }
    anchored
}

/// An anchor's `{location, sequence, record_sha256}` when it names this log (`here`).
fn of_here(e: &Value, here: &[String]) -> Option<(u64, String)> {
    let at = e["location"].as_str()?;
    let (n, sha) = (e["sequence"].as_u64()?, e["record_sha256"].as_str()?);
    here.iter().any(|h| h == at).then(|| (n, sha.to_string()))
}

/// Hold the log to a run's run.json (`text`, read at `shown`): the run wrote, beside its
/// report, the head it appended. Unsigned: listed as `unauthenticated`. Returns the anchored
/// sequence when it names this log.
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
    // Unsigned, like a ledger line: compared, never proof that nothing was cut.
    v.unauthenticated.push(format!("the run.json {shown}: its anchor of this log, record {n}, is there unchanged"));
    hold(v, dir, n, &sha, &what);
    Some(n)
}

/// A backup's manifest read for its anchor: where it is, its JSON, and what is known of its
/// authenticity (said with the anchor it holds).
pub struct ManifestRead {
    pub shown: String,
    pub manifest: Value,
    pub trust: String,
    /// Its MAC held under the backup key: only then can its anchor prove that nothing was cut.
    pub authenticated: bool,
}

/// Hold the log to the newest anchor of it among the backups' manifests (`manifests`, as
/// [`manifests_named`] reads them): a backup written after the records cut names the head
/// its run found. The newest authenticated anchor is held to and counts; a newer one read
/// from a manifest without a MAC (an unencrypted backup, an old format, a team's sidecar, or
/// no key given) is held to as well, since it can show a cut, but listed apart
/// (`unauthenticated`): whoever cut the log could have written it. Returns the sequences
/// anchored: (by an authenticated manifest, by an unauthenticated one).
pub fn against_manifests(
    v: &mut Verified,
    dir: &Path,
    here: &[String],
    manifests: &[ManifestRead],
) -> (Option<u64>, Option<u64>) {
    let newest = |authenticated: bool| {
        manifests
            .iter()
            .filter(|m| m.authenticated == authenticated)
            .filter_map(|m| of_here(&m.manifest["evidence"], here).map(|(n, sha)| (n, sha, m)))
            .max_by_key(|(n, ..)| *n)
    };
    let proven = newest(true);
    let unproven = newest(false).filter(|(n, ..)| proven.as_ref().is_none_or(|(p, ..)| n > p));
    for (n, sha, m) in proven.iter().chain(unproven.iter()) {
        let s = |k: &str| m.manifest[k].as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_default();
        let shown = crate::util::one_line(&m.shown).into_owned();
        let of = match m.manifest["kind"].as_str() {
            Some("base") => format!("a base backup of system {}", s("system_identifier")),
            _ => format!("a backup of database `{}`", s("database")),
        };
        let what = format!("the manifest {shown} ({of} finished at {}, {})", s("finished_at"), m.trust);
        let line = format!(
            "the backup manifests: the newest {}anchor of this log, record {n} ({shown}, {}), is there unchanged",
            if m.authenticated { "" } else { "unauthenticated " },
            m.trust
        );
        match m.authenticated {
            true => v.held.push(line),
            false => v.unauthenticated.push(line),
        }
        hold(v, dir, *n, sha, &what);
    }
    (proven.map(|(n, ..)| n), unproven.map(|(n, ..)| n))
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

/// Read the pgdrill manifests in `folders` (a directory or an object store's folder, opened
/// among the command's `stores`) that anchor this log (`here`), newest first, and stop at the
/// first that anchors the record before the log's newest (`newest`) or later: a run's
/// manifests anchor the head it found, so none can anchor more of a whole log, and the
/// manifests of a cut log's lost records are newer still, read before it. With the backup key
/// (`key`), each is authenticated first, in a directory or an object store alike (its
/// archive's header read with a ranged read through the store), only one that holds stops the
/// reading, and one that fails is not used (said in `notes`); without the key each is used and
/// said unauthenticated.
pub async fn manifests_named(
    folders: &[String],
    key: Option<&crate::archive::KeySource>,
    here: &[String],
    newest: u64,
    stores: &crate::storage::Opened,
    notes: &mut Vec<String>,
) -> Vec<ManifestRead> {
    let enough = newest.saturating_sub(1);
    let mut out = Vec::new();
    for folder in folders {
        let Ok(store) = stores.open_in(folder, Path::new("")) else { continue };
        let Ok(mut listed) = store.list("").await else {
            notes.push(format!(
                "the backups' folder {} could not be listed: its manifests' anchors were not read",
                crate::util::one_line(folder)
            ));
            continue;
        };
        listed.retain(|m| m.key.ends_with(".manifest.json"));
        // Newest first (backup names carry their time: the name breaks a tie of times).
        listed.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.key.cmp(&a.key)));
        for meta in listed {
            let Ok(bytes) = store.read(&meta.key).await else { continue };
            let Ok(mut manifest) = serde_json::from_slice::<Value>(&bytes) else { continue };
            // Another log's anchor (or none) is not this log's business: not authenticated.
            if of_here(&manifest["evidence"], here).is_none() {
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
                            true => ("authenticated under the backup key".to_string(), true),
                            false => (
                                "manifest UNAUTHENTICATED: the base backup is not encrypted, so it has no MAC".into(),
                                false,
                            ),
                        }
                    })
                }
                Some(k) => {
                    crate::backup::authenticate_manifest_at(store.as_ref(), archive, &bytes, Some(k)).await.map(|t| {
                        match t {
                            crate::backup::ManifestTrust::Authenticated => {
                                ("authenticated under the backup key".into(), true)
                            }
                            t => (t.describe().to_string(), false),
                        }
                    })
                }
                None => Ok(("its MAC not checked here: no backup key given".into(), false)),
            };
            let (trust, authenticated) = match judged {
                Ok(t) => t,
                Err(e) => {
                    notes.push(format!("{}: its evidence anchor is not used", crate::util::one_line(&e.to_string())));
                    continue;
                }
            };
            let Some((n, _)) = of_here(&manifest["evidence"], here) else { continue };
            out.push(ManifestRead { shown, manifest, trust, authenticated });
            if n >= enough && (authenticated || key.is_none()) {
                break;
            }
        }
    }
    out
}

/// Say plainly which of the log's newest records no authenticated anchor outside it names
/// (`anchored`: the newest sequence one named, if one did; `unauthenticated`: the newest an
/// anchor without a key's proof named, a manifest without a MAC). A run's backup manifests
/// anchor the head it found, not its own record: without its published head (a log written
/// before heads were, or a run killed before it published it), a ledger line, a run.json or
/// a kept checkpoint naming it, the newest record is anchored by nothing until a later run
/// anchors it, and a cut of it (with an older checkpoint put back) cannot be told. Said in
/// the result line, never a bare "ok".
pub fn unanchored(v: &mut Verified, anchored: Option<u64>, unauthenticated: Option<u64>) {
    let Some(newest) = v.good.last().map(|g| g.sequence) else { return };
    let also = match unauthenticated.filter(|u| anchored.is_none_or(|a| u > &a)) {
        Some(u) => format!(
            "; record {u} is named by an UNAUTHENTICATED anchor (a ledger line, a run.json or a manifest without a MAC under the backup key: unsigned), which can show a cut but never prove there was none"
        ),
        None => String::new(),
    };
    let nothing = "no published head, authenticated backup manifest or kept checkpoint";
    let line = match anchored {
        Some(a) if a >= newest => return,
        Some(a) if a + 1 == newest => format!(
            "record {newest} (the newest) is anchored by nothing yet ({nothing} names it): a cut of it cannot be told until a later run anchors it{also}"
        ),
        Some(a) => format!(
            "records {} to {newest} (the newest) are anchored by nothing yet ({nothing} names them): a cut of them cannot be told until a later run anchors them{also}",
            a + 1
        ),
        None => format!(
            "none of its {newest} records is anchored outside the log ({nothing} names this log): records cut off its end cannot be told{also}"
        ),
    };
    v.unproven.push(line);
}
