//! `retention.prune`: grandfather-father-son retention over a storage directory. A dry run
//! unless `apply: true`.

use serde::Deserialize;
use serde_yaml::Value as Yaml;

use super::{check_with, typed, Field, Outputs, StepCtx, StepError, StepKind, With};
use crate::backup::retention::{decide, Item, Policy};
use crate::backup::Manifest;
use crate::storage::{manifest_path, LocalStore};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PruneWith {
    storage: String,
    database: String,
    #[serde(default, deserialize_with = "super::de::int")]
    keep_daily: usize,
    #[serde(default, deserialize_with = "super::de::int")]
    keep_weekly: usize,
    #[serde(default, deserialize_with = "super::de::int")]
    keep_monthly: usize,
    #[serde(default, deserialize_with = "super::de::int")]
    keep_yearly: usize,
    #[serde(default = "one", deserialize_with = "super::de::int")]
    min_keep: usize,
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    keep_within: Option<std::time::Duration>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    name_pattern: Option<String>,
    #[serde(default, deserialize_with = "super::de::boolean")]
    apply: bool,
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    abandoned_uploads_after: Option<std::time::Duration>,
}

fn one() -> usize {
    1
}

impl With for PruneWith {}

pub const PRUNE: StepKind = StepKind {
    name: "retention.prune",
    summary: "Grandfather-father-son retention; prints what it would delete and why; deletes only with apply: true.",
    fields: &[
        Field { name: "storage", ty: "path", required: true, doc: "backup directory" },
        Field { name: "database", ty: "string", required: true, doc: "database whose backups are pruned" },
        Field { name: "keep_daily", ty: "integer", required: false, doc: "newest backup of each of the last N days" },
        Field { name: "keep_weekly", ty: "integer", required: false, doc: "... of the last N ISO weeks" },
        Field { name: "keep_monthly", ty: "integer", required: false, doc: "... of the last N months" },
        Field { name: "keep_yearly", ty: "integer", required: false, doc: "... of the last N years" },
        Field {
            name: "keep_within",
            ty: "duration",
            required: false,
            doc: "keep every backup younger than this, e.g. `30d` (with or without the counts)",
        },
        Field { name: "min_keep", ty: "integer", required: false, doc: "always keep this many newest (default 1)" },
        Field {
            name: "name_pattern",
            ty: "string",
            required: false,
            doc:
                "other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the classic schemes)",
        },
        Field { name: "apply", ty: "boolean", required: false, doc: "really delete (default false: dry run)" },
        Field {
            name: "abandoned_uploads_after",
            ty: "duration",
            required: false,
            doc: "object stores: abort pgdrill's unfinished uploads started longer ago than this (default 24h; a killed pgdrill leaves them)",
        },
    ],
    outputs: &[
        Field { name: "kept", ty: "integer", required: false, doc: "backups kept" },
        Field { name: "deleted", ty: "list", required: false, doc: "paths deleted (apply) or that would be" },
        Field { name: "applied", ty: "boolean", required: false, doc: "whether anything was really deleted" },
        Field {
            name: "aborted_uploads",
            ty: "list",
            required: false,
            doc: "object stores: unfinished uploads aborted (apply) or that would be",
        },
    ],
    check: check_with::<PruneWith>,
    report_log: true,
    interactive: false,
    run,
};

/// Backup names the verification ledger beside the backups records as passed. A ledger
/// that cannot be read stops the prune: a lost "passed" line would make the newest
/// verified backup look unverified, and it would be deleted.
fn verified(dir: &std::path::Path) -> Result<std::collections::HashSet<String>, StepError> {
    let ledger = crate::backup::ledger::read(&dir.join(crate::backup::ledger::FILE))
        .map_err(|e| StepError::Failed(format!("nothing deleted: {e}")))?;
    Ok(ledger
        .entries
        .into_iter()
        .filter(|e| e.result == "passed")
        .map(|e| e.backup.rsplit('/').next().unwrap_or(&e.backup).to_string())
        .collect())
}

fn run(ctx: StepCtx, with: Yaml) -> super::BoxFuture<'static, Result<Outputs, StepError>> {
    Box::pin(async move {
        let w: PruneWith = typed(with)?;
        let storage = ctx.storage_root(&w.storage).await?;
        let pattern = super::backup::name_pattern(w.name_pattern.as_deref())?;
        let entries = LocalStore::new(&storage)
            .list_with(Some(&w.database), pattern.as_ref())
            .map_err(|e| StepError::Environment(format!("cannot list {}: {e}", storage.display())))?;
        // Each folder has its own ledger (pgdrill's per database; other tools' files may sit
        // in several folders).
        let mut ok_verified = std::collections::HashSet::new();
        let mut dirs: Vec<&std::path::Path> = entries.iter().filter_map(|e| e.path.parent()).collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs {
            ok_verified.extend(verified(d)?.into_iter().map(|n| d.join(n)));
        }
        let mut items = Vec::new();
        for e in &entries {
            if e.foreign {
                if e.made_from == crate::storage::MadeFrom::Mtime {
                    ctx.log(format!("{}: no time in its name, judged by its modification time", e.name));
                }
                items.push(Item { name: e.name.clone(), at: e.made, verified: ok_verified.contains(&e.path) });
                continue;
            }
            // Without a readable manifest a file's age is unknown: keep it and say so.
            match Manifest::read(&e.path) {
                Ok(m) => {
                    items.push(Item { name: e.name.clone(), at: m.started_at, verified: ok_verified.contains(&e.path) })
                }
                Err(err) => ctx.log(format!("keep {} (not judged: {err})", e.name)),
            }
        }
        let policy = Policy {
            daily: w.keep_daily,
            weekly: w.keep_weekly,
            monthly: w.keep_monthly,
            yearly: w.keep_yearly,
            min_keep: w.min_keep,
            within: w.keep_within.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
        };
        let decisions = decide(&items, policy);
        let mut deleted = Vec::new();
        let mut kept = 0usize;
        for d in &decisions {
            let Some(e) = entries.iter().find(|e| e.name == d.name) else { continue };
            if d.keep {
                kept += 1;
                ctx.log(format!("keep   {} ({})", d.name, d.reason));
                continue;
            }
            let shown = crate::storage::remote::display(&e.path);
            if let (true, Some((r, rel))) = (w.apply, crate::storage::remote::for_mirror(&e.path)) {
                // The backup first: a manifest without its backup is reported, never used.
                r.delete(&rel).await.map_err(StepError::Environment)?;
                r.delete(&format!("{rel}.manifest.json")).await.map_err(StepError::Environment)?;
                ctx.log(format!("delete {} ({})", d.name, d.reason));
            } else if w.apply {
                // A directory-format dump is one backup: the directory goes as a whole.
                let removed =
                    if e.path.is_dir() { std::fs::remove_dir_all(&e.path) } else { std::fs::remove_file(&e.path) };
                removed.map_err(|err| StepError::Environment(format!("deleting {}: {err}", e.path.display())))?;
                let _ = std::fs::remove_file(manifest_path(&e.path));
                ctx.log(format!("delete {} ({})", d.name, d.reason));
            } else {
                ctx.log(format!("would delete {} ({})", d.name, d.reason));
            }
            deleted.push(serde_json::Value::String(shown));
        }
        // Uploads a killed pgdrill left open in an object store: invisible to listings, but
        // paid for until aborted.
        let mut aborted = Vec::new();
        if let Some((r, _)) = crate::storage::remote::for_mirror(&storage) {
            let after = w.abandoned_uploads_after.unwrap_or(std::time::Duration::from_secs(24 * 3600));
            for a in r.abandoned(after).await.map_err(StepError::Environment)? {
                if w.apply {
                    r.abort_abandoned(&a).await.map_err(StepError::Environment)?;
                    ctx.log(format!(
                        "aborted an unfinished upload of {} started at {} (left by a stopped pgdrill)",
                        a.url, a.started
                    ));
                } else {
                    ctx.log(format!("would abort an unfinished upload of {} started at {}", a.url, a.started));
                }
                aborted.push(serde_json::Value::String(a.url));
            }
        }
        if !w.apply && !deleted.is_empty() {
            ctx.log(format!("dry run: {} backup(s) would be deleted; set apply: true to delete", deleted.len()));
        }
        let mut o = Outputs::new();
        o.insert("kept".into(), (kept + entries.len() - items.len()).into());
        o.insert("deleted".into(), deleted.into());
        o.insert("applied".into(), w.apply.into());
        o.insert("aborted_uploads".into(), aborted.into());
        Ok(o)
    })
}
