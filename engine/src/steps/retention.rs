//! `retention.prune`: grandfather-father-son retention over a storage directory. A dry run
//! unless `apply: true`.

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With};
use crate::backup::layout::{manifest_path, LocalStore};
use crate::backup::retention::{decide, Item};
use crate::backup::Manifest;

/// Declares a step's `with:` block that takes grandfather-father-son retention's counts
/// (`keep_daily`, `keep_weekly`, `keep_monthly`, `keep_yearly`, `min_keep` and
/// `keep_within`, which `retention.prune` and `wal.prune` share) between its own fields,
/// and `policy`, the `Policy` they make. Each step keeps its own catalogue text for each
/// count (its docs, given in `@keep { .. }`), and the block stays one struct, so an unknown
/// field is still refused by name (`#[serde(flatten)]` would lose `deny_unknown_fields`).
macro_rules! keeping {
    (
        pub struct $name:ident {
            $($(#[$fattr:meta])* $field:ident: $ty:ty,)*
            @keep {
                $(#[$daily:meta])* daily,
                $(#[$weekly:meta])* weekly,
                $(#[$monthly:meta])* monthly,
                $(#[$yearly:meta])* yearly,
                $(#[$min_keep:meta])* min_keep,
                $(#[$within:meta])* within,
            }
            $($(#[$lattr:meta])* $last:ident: $lty:ty,)*
        }
    ) => {
        #[derive(Debug, Deserialize, Fields)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fattr])* $field: $ty,)*
            $(#[$daily])*
            #[serde(default, deserialize_with = "super::de::int")]
            keep_daily: usize,
            $(#[$weekly])*
            #[serde(default, deserialize_with = "super::de::int")]
            keep_weekly: usize,
            $(#[$monthly])*
            #[serde(default, deserialize_with = "super::de::int")]
            keep_monthly: usize,
            $(#[$yearly])*
            #[serde(default, deserialize_with = "super::de::int")]
            keep_yearly: usize,
            $(#[$min_keep])*
            #[serde(default = "super::retention::one", deserialize_with = "super::de::int")]
            min_keep: usize,
            $(#[$within])*
            #[serde(default, deserialize_with = "super::de::opt_duration")]
            keep_within: Option<std::time::Duration>,
            $($(#[$lattr])* $last: $lty,)*
        }

        impl $name {
            /// The counts as retention decides by them (a `keep_within` too long for
            /// `time::Duration` keeps everything).
            fn policy(&self) -> crate::backup::retention::Policy {
                crate::backup::retention::Policy {
                    daily: self.keep_daily,
                    weekly: self.keep_weekly,
                    monthly: self.keep_monthly,
                    yearly: self.keep_yearly,
                    min_keep: self.min_keep,
                    within: self.keep_within.map(|d| time::Duration::try_from(d).unwrap_or(time::Duration::MAX)),
                }
            }
        }

        impl With for $name {}
    };
}
pub(crate) use keeping;

keeping! {
    pub struct PruneWith {
        /// backup directory
        #[field(ty = "path")]
        storage: String,
        /// database whose backups are pruned
        database: String,
        @keep {
            /// newest backup of each of the last N days
            daily,
            /// ... of the last N ISO weeks
            weekly,
            /// ... of the last N months
            monthly,
            /// ... of the last N years
            yearly,
            /// always keep this many newest (default 1)
            min_keep,
            /// keep every backup younger than this, e.g. `30d` (with or without the counts)
            within,
        }
        /// other tools' file names, e.g. `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz` (default: the
        /// classic schemes)
        #[serde(default, deserialize_with = "super::de::opt_text")]
        name_pattern: Option<String>,
        /// really delete (default false: dry run)
        #[serde(default, deserialize_with = "super::de::boolean")]
        apply: bool,
        /// abort pgdrill's unfinished uploads (object stores) started longer ago than this, and
        /// delete its archives left without a manifest (unfinished backups) older than this
        /// (default 24h; a killed pgdrill leaves them)
        #[serde(default, deserialize_with = "super::de::opt_duration")]
        abandoned_uploads_after: Option<std::time::Duration>,
    }
}

/// `min_keep`'s default: the newest backup always stays.
pub(super) fn one() -> usize {
    1
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct PruneOutputs {
    /// backups kept
    kept: usize,
    /// paths deleted (apply) or that would be
    deleted: Vec<String>,
    /// whether anything was really deleted
    applied: bool,
    /// object stores: unfinished uploads aborted (apply) or that would be
    aborted_uploads: Vec<String>,
    /// pgdrill archives without a manifest (a backup killed before its manifest, the
    /// commit marker, was written) deleted (apply) or that would be
    unfinished_deleted: Vec<String>,
    /// files named like backups whose content is not recognisably a dump: never deleted
    left_alone: usize,
}

/// Backup names the verification ledger beside the backups records as passed. A ledger
/// that cannot be read stops the prune: a lost "passed" line would make the newest
/// verified backup look unverified, and it would be deleted.
fn verified(dir: &std::path::Path) -> Result<std::collections::HashSet<String>, StepError> {
    let ledger = crate::backup::ledger::read(&dir.join(crate::backup::ledger::FILE))
        .map_err(|e| crate::error::Failure::from(e).context("nothing deleted"))?;
    Ok(ledger
        .entries
        .into_iter()
        .filter(|e| e.result == "passed")
        .map(|e| e.backup.rsplit('/').next().unwrap_or(&e.backup).to_string())
        .collect())
}

/// The items a plan is made of, and how many files named like backups are not ones.
struct Planned {
    items: Vec<Item>,
    left_alone: usize,
}

/// Each entry as an item of the plan, saying in the log what is not judged: a pgdrill
/// backup by the stamp its name carries (`by_names`) or its manifest's start time; another
/// tool's file only when its first bytes are recognisably a dump.
async fn plan_items(
    ctx: &StepCtx,
    tree: &crate::storage::tree::Tree,
    entries: &[crate::backup::layout::Entry],
    ok_verified: &std::collections::HashSet<std::path::PathBuf>,
    by_names: bool,
) -> Result<Planned, StepError> {
    use crate::backup::layout::MadeFrom;
    let mut items = Vec::new();
    let mut left_alone = 0usize;
    for e in entries {
        let verified = ok_verified.contains(&e.path);
        // Another tool's file is always read: whether it is a backup at all decides which
        // backups keep a slot, so its name alone never counts.
        if by_names && !e.foreign && e.made_from == MadeFrom::Name {
            items.push(Item { name: e.name.clone(), at: e.made, verified });
            continue;
        }
        if e.foreign {
            // Only what is recognisably a dump is judged (and may be deleted): a name with
            // a date and `.gz` is not enough (`DB-2020-01-05.log.gz`, `DB_2019-01-01.csv.gz`).
            if let Err(why) = recognised(tree, &e.path).await? {
                ctx.log(format!("not a backup, left alone: {} ({why})", e.name));
                left_alone += 1;
                continue;
            }
            if e.made_from == MadeFrom::Mtime {
                ctx.log(format!("{}: no time in its name, judged by its modification time", e.name));
            }
            items.push(Item { name: e.name.clone(), at: e.made, verified });
            continue;
        }
        // Without a readable manifest a file's age is unknown: keep it and say so.
        match Manifest::read_in(tree, &e.path) {
            Ok(m) => items.push(Item { name: e.name.clone(), at: m.started_at, verified }),
            Err(err) => ctx.log(format!("keep {} (not judged: {err})", e.name)),
        }
    }
    Ok(Planned { items, left_alone })
}

/// Whether another tool's file is recognisably a dump (its first bytes), off the runtime.
async fn recognised(
    tree: &crate::storage::tree::Tree,
    path: &std::path::Path,
) -> Result<Result<String, String>, StepError> {
    let (tree, p) = (tree.clone(), path.to_path_buf());
    tokio::task::spawn_blocking(move || crate::backup::source::recognise_in(&tree, &p))
        .await
        .map_err(|err| StepError::environment(err.to_string()))
}

/// Why a pgdrill backup a plan from names would delete is not what its name says (`None`:
/// it is): its manifest cannot be read, or its start is not the time its name carries (`at`).
async fn read_disagrees(
    tree: &crate::storage::tree::Tree,
    e: &crate::backup::layout::Entry,
    at: time::OffsetDateTime,
) -> Result<Option<String>, StepError> {
    if e.foreign {
        // Recognised already by `plan_items`.
        return Ok(None);
    }
    let (tree, p) = (tree.clone(), e.path.clone());
    let read = tokio::task::spawn_blocking(move || Manifest::read_in(&tree, &p))
        .await
        .map_err(|err| StepError::environment(err.to_string()))?;
    Ok(match read {
        // The store failed to give it: stop, nothing deleted (no plan is made on a guess).
        Err(err) if err.class == crate::error::Class::Environment => {
            return Err(StepError::from(err.context("nothing deleted")))
        }
        Err(err) => Some(err.to_string()),
        // Names keep milliseconds.
        Ok(m) if (m.started_at - at).abs() >= time::Duration::milliseconds(1) => {
            Some(format!("its manifest says it started at {}", crate::util::rfc3339(m.started_at)))
        }
        Ok(_) => None,
    })
}

/// Grandfather-father-son retention; prints what it would delete and why; deletes only with apply: true.
#[step(kind = Prune, name = "retention.prune", report_log)]
async fn prune(ctx: StepCtx, w: PruneWith) -> Result<PruneOutputs, StepError> {
    let store = ctx.store(&w.storage)?;
    let storage = ctx.view(&*store).await?;
    let pattern = super::backup::name_pattern(w.name_pattern.as_deref())?;
    let entries = LocalStore::new(&storage)
        .list_with(Some(&w.database), pattern.as_ref())
        .map_err(|e| StepError::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    // Each folder has its own ledger (pgdrill's per database; other tools' files may sit
    // in several folders).
    let mut ok_verified = std::collections::HashSet::new();
    let mut dirs: Vec<&std::path::Path> = entries.iter().filter_map(|e| e.path.parent()).collect();
    dirs.sort();
    dirs.dedup();
    for d in dirs {
        ok_verified.extend(verified(d)?.into_iter().map(|n| d.join(n)));
    }
    let policy = w.policy();
    // Planned from names first (issue 41: no manifest read per backup), then the manifest of
    // each backup it would delete is read: when they all agree with their names, that plan is
    // the one reading every manifest makes. Otherwise every manifest is read and the plan
    // made again, so a misnamed or damaged backup is judged as before. (A kept backup whose
    // manifest is damaged holds its slot in a plan from names; verify is what finds it.)
    let by_names = plan_items(&ctx, &storage, &entries, &ok_verified, true).await?;
    let mut decisions = decide(&by_names.items, policy);
    let (mut left_alone, mut judged) = (by_names.left_alone, by_names.items.len());
    let mut disagree = None;
    for d in decisions.iter().filter(|d| !d.keep) {
        let Some(e) = entries.iter().find(|e| e.name == d.name) else { continue };
        let Some(at) = by_names.items.iter().find(|i| i.name == d.name).map(|i| i.at) else { continue };
        if let Some(why) = read_disagrees(&storage, e, at).await? {
            disagree = Some(format!("{}: {why}", e.name));
            break;
        }
    }
    if let Some(why) = disagree {
        ctx.log(format!("planned from names, but {why}: every backup is read and the plan made again"));
        let read = plan_items(&ctx, &storage, &entries, &ok_verified, false).await?;
        decisions = decide(&read.items, policy);
        (left_alone, judged) = (read.left_alone, read.items.len());
    }
    let mut deleted = Vec::new();
    let mut kept = 0usize;
    for d in &decisions {
        let Some(e) = entries.iter().find(|e| e.name == d.name) else { continue };
        if d.keep {
            kept += 1;
            ctx.log(format!("keep   {} ({})", d.name, d.reason));
            continue;
        }
        let shown = storage.display(&e.path);
        if let (true, Some((r, rel))) = (w.apply, storage.object(&e.path)) {
            // The backup first: a manifest without its backup is reported, never used.
            r.delete(&rel).await.map_err(StepError::environment)?;
            r.delete(&format!("{rel}.manifest.json")).await.map_err(StepError::environment)?;
            ctx.log(format!("delete {} ({})", d.name, d.reason));
        } else if w.apply {
            // A directory-format dump is one backup: the directory goes as a whole.
            let removed =
                if e.path.is_dir() { std::fs::remove_dir_all(&e.path) } else { std::fs::remove_file(&e.path) };
            removed.map_err(|err| StepError::environment(format!("deleting {}: {err}", e.path.display())))?;
            let _ = std::fs::remove_file(manifest_path(&e.path));
            ctx.log(format!("delete {} ({})", d.name, d.reason));
        } else {
            ctx.log(format!("would delete {} ({})", d.name, d.reason));
        }
        deleted.push(shown);
    }
    let after = w.abandoned_uploads_after.unwrap_or(std::time::Duration::from_secs(24 * 3600));
    // Archives whose manifest, the commit marker written last, never came: a killed backup's
    // debris, never a backup. A young one may be a backup still being committed elsewhere
    // (its upload read back before the manifest is written), so only old ones go.
    let mut unfinished = Vec::new();
    let cutoff = time::Duration::try_from(after)
        .ok()
        .and_then(|a| time::OffsetDateTime::now_utc().checked_sub(a))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let left = LocalStore::new(&storage)
        .unfinished(Some(&w.database))
        .map_err(|e| StepError::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    for e in left {
        let shown = storage.display(&e.path);
        let at = crate::util::rfc3339(e.made);
        if e.made > cutoff {
            ctx.log(format!(
                "keep   {} (unfinished: no manifest; written at {at}, a backup may still be committing it; removed once older than abandoned_uploads_after)",
                e.name
            ));
            continue;
        }
        if !w.apply {
            ctx.log(format!("would delete {} (unfinished: {}; written at {at})", e.name, crate::backup::layout::why_unfinished(&e)));
        } else if let Some((r, rel)) = storage.object(&e.path) {
            r.delete(&rel).await.map_err(StepError::environment)?;
            ctx.log(format!("delete {} (unfinished: {}; written at {at})", e.name, crate::backup::layout::why_unfinished(&e)));
        } else {
            std::fs::remove_file(&e.path)
                .map_err(|err| StepError::environment(format!("deleting {}: {err}", e.path.display())))?;
            ctx.log(format!("delete {} (unfinished: {}; written at {at})", e.name, crate::backup::layout::why_unfinished(&e)));
        }
        unfinished.push(shown);
    }
    // Uploads a killed pgdrill left open in an object store: invisible to listings, but
    // paid for until aborted.
    let mut aborted = Vec::new();
    // The store says what it keeps of them (none for a local directory).
    let r = &store;
        for a in r.abandoned(after).await.map_err(StepError::environment)? {
            if a.completed {
                // Killed after the upload completed, before its record went: nothing to
                // abort (the object itself is judged above, as a backup or unfinished).
                if w.apply {
                    r.abort_abandoned(&a).await.map_err(StepError::environment)?;
                }
                let done = if w.apply { "is removed" } else { "would be removed" };
                ctx.log(format!("the upload of {} started at {} had completed; its record {done}", a.url, a.started));
                continue;
            }
            if w.apply {
                r.abort_abandoned(&a).await.map_err(StepError::environment)?;
                ctx.log(format!(
                    "aborted an unfinished upload of {} started at {} (left by a stopped pgdrill)",
                    a.url, a.started
                ));
            } else {
                ctx.log(format!("would abort an unfinished upload of {} started at {}", a.url, a.started));
            }
            aborted.push(a.url);
        }
    if !w.apply && !deleted.is_empty() {
        ctx.log(format!("dry run: {} backup(s) would be deleted; set apply: true to delete", deleted.len()));
    }
    Ok(PruneOutputs {
        kept: kept + entries.len() - judged - left_alone,
        deleted,
        applied: w.apply,
        aborted_uploads: aborted,
        unfinished_deleted: unfinished,
        left_alone,
    })
}
