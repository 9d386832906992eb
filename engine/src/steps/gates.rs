//! Gates a runbook can stop on before (or after) a backup, the classic runbooks' alerts as
//! steps: `storage.space` (free space where backups go) and `backup.size_change` (a backup
//! much larger or smaller than the one before it).

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SpaceWith {
    /// the backup directory (its filesystem is measured)
    #[field(ty = "path")]
    storage: String,
    /// free / size at least this, e.g. 0.2
    ///
    /// Free space / size of the filesystem must be at least this (0.2 = 20 %).
    #[serde(default, deserialize_with = "super::de::opt_number")]
    min_free_ratio: Option<f64>,
    /// free at least this much, e.g. `10GB` (powers of 1000), `10GiB` or `10G` (of 1024)
    ///
    /// An absolute floor ("alert below 10 GB"), besides or instead of the ratio.
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "string")]
    min_free: Option<String>,
    /// free at least this times the database's size, e.g. 2
    #[serde(default, deserialize_with = "super::de::opt_number")]
    database_size_multiple: Option<f64>,
    /// the database, for database_size_multiple
    #[serde(default)]
    #[field(conninfo)]
    database_url: Option<String>,
}

impl With for SpaceWith {
    fn check(&self) -> Result<(), WithError> {
        if self.min_free_ratio.is_none() && self.database_size_multiple.is_none() && self.min_free.is_none() {
            return Err(WithError::new(
                "",
                "give min_free (e.g. 10GB), min_free_ratio (e.g. 0.2) and/or database_size_multiple (e.g. 2)",
            ));
        }
        if let Some(t) = self.min_free.as_deref().filter(|t| !crate::template::is_template(t)) {
            crate::util::parse_bytes(t).map_err(|e| WithError::new("min_free", e))?;
        }
        if self.min_free_ratio.is_some_and(|r| !(0.0..=1.0).contains(&r)) {
            return Err(WithError::new("min_free_ratio", "a ratio between 0 and 1 (0.2 = 20 % free)"));
        }
        if self.database_size_multiple.is_some() && self.database_url.as_deref().is_none_or(str::is_empty) {
            return Err(WithError::new("database_url", "database_size_multiple needs the database's database_url"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SpaceOutputs {
    /// available to pgdrill's user
    free_bytes: u64,
    /// size of the filesystem
    total_bytes: u64,
    /// free_bytes / total_bytes
    free_ratio: f64,
    /// pg_database_size, when asked
    database_bytes: Option<u64>,
    /// the strictest requirement given
    needed_bytes: u64,
}

/// Fail when the storage location has too little free space: below an absolute size, a ratio, or a multiple of the
/// database's size.
#[step(name = "storage.space", report_log)]
impl Space {
    async fn run(ctx: StepCtx, w: SpaceWith) -> Result<SpaceOutputs, StepError> {
        let store = ctx.store(&w.storage)?;
        let crate::storage::Space { free, total } = match store.space() {
            Some(measured) => measured.map_err(StepError::environment)?,
            None => {
                return Err(StepError::invalid(format!(
                    "storage.space measures a filesystem: its storage must be a local directory, not `{}` (an object store has no free space to measure)",
                    w.storage.split('?').next().unwrap_or_default()
                )))
            }
        };
        let ratio = if total == 0 { 0.0 } else { free as f64 / total as f64 };
        let mut needed = w.min_free_ratio.map(|r| (r * total as f64).ceil() as u64).unwrap_or(0);
        if let Some(t) = &w.min_free {
            needed = needed.max(crate::util::parse_bytes(t).map_err(|e| StepError::field("with.min_free", e))?);
        }
        let mut database_bytes = None;
        if let (Some(m), Some(url)) = (w.database_size_multiple, w.database_url.as_deref()) {
            let client = crate::pg::connect(url).await?;
            let size: i64 = client
                .query_one("select pg_database_size(current_database())", &[])
                .await
                .map_err(|e| StepError::environment(crate::pg::describe(&e)))?
                .get(0);
            database_bytes = Some(size as u64);
            needed = needed.max((m * size as f64).ceil() as u64);
        }
        let out = SpaceOutputs {
            free_bytes: free,
            total_bytes: total,
            free_ratio: ratio,
            database_bytes,
            needed_bytes: needed,
        };
        let h = crate::util::human_bytes;
        ctx.log(format!(
            "{}: {} free of {} ({:.1} %), {} needed",
            store.url(),
            h(free),
            h(total),
            ratio * 100.0,
            h(needed)
        ));
        if free < needed {
            return Err(StepError::failed(format!(
                "{} has {} free ({:.1} %), {} is needed{}: free space or move the backups",
                store.url(),
                h(free),
                ratio * 100.0,
                h(needed),
                database_bytes.map(|d| format!(" (the database is {})", h(d))).unwrap_or_default()
            )));
        }
        Ok(out)
    }
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SizeChangeWith {
    /// backup directory
    #[field(ty = "path")]
    storage: String,
    /// whose backups
    database: String,
    /// e.g. 0.5: fail above +50 %
    ///
    /// Fail when the newest backup is more than this fraction larger than the one before.
    #[serde(default, deserialize_with = "super::de::opt_number")]
    max_growth: Option<f64>,
    /// e.g. 0.5: fail below -50 %
    ///
    /// Fail when it is more than this fraction smaller (0.5 = half): a table gone missing.
    #[serde(default, deserialize_with = "super::de::opt_number")]
    max_shrink: Option<f64>,
}

impl With for SizeChangeWith {
    fn check(&self) -> Result<(), WithError> {
        if self.max_growth.is_none() && self.max_shrink.is_none() {
            return Err(WithError::new("", "give max_growth (e.g. 0.5) and/or max_shrink (e.g. 0.5)"));
        }
        if self.max_shrink.is_some_and(|s| !(0.0..=1.0).contains(&s)) {
            return Err(WithError::new("max_shrink", "a fraction between 0 and 1"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SizeChangeOutputs {
    /// the newest backup
    path: String,
    /// its stored size
    size: u64,
    /// the one before it
    previous_path: String,
    /// its stored size
    previous_size: u64,
    /// (size - previous) / previous
    change: f64,
}

/// Compare the newest backup of a database with the one before it; fail when it grew or shrank more than allowed.
#[step(name = "backup.size_change", report_log)]
impl SizeChange {
    async fn run(ctx: StepCtx, w: SizeChangeWith) -> Result<SizeChangeOutputs, StepError> {
        let root = ctx.view(&*ctx.store(&w.storage)?).await?;
        let list = crate::backup::layout::LocalStore::new(&root)
            .list(Some(&w.database))
            .map_err(|e| StepError::environment(format!("cannot list {}: {e}", root.root().display())))?;
        let size_of = |p: &std::path::Path| root.size(p);
        let (Some(newest), Some(previous)) = (list.first(), list.get(1)) else {
            return Err(StepError::Skipped(format!(
                "{} backup(s) of {} in {}: nothing to compare with yet",
                list.len(),
                w.database,
                root.root().display()
            )));
        };
        let (size, prev) = (size_of(&newest.path), size_of(&previous.path));
        let change = if prev == 0 { f64::INFINITY } else { (size as f64 - prev as f64) / prev as f64 };
        let h = crate::util::human_bytes;
        ctx.log(format!(
            "{} ({}) against {} ({}): {:+.1} %",
            newest.name,
            h(size),
            previous.name,
            h(prev),
            change * 100.0
        ));
        let out = SizeChangeOutputs {
            path: newest.path.display().to_string(),
            size,
            previous_path: previous.path.display().to_string(),
            previous_size: prev,
            change: if change.is_finite() { change } else { 0.0 },
        };
        if let Some(g) = w.max_growth.filter(|g| change > *g) {
            return Err(StepError::failed(format!(
                "backup {} is {:+.1} % against the one before ({} -> {}), more than the allowed +{:.0} %",
                newest.name,
                change * 100.0,
                h(prev),
                h(size),
                g * 100.0
            )));
        }
        if let Some(s) = w.max_shrink.filter(|s| change < -*s) {
            return Err(StepError::failed(format!(
                "backup {} is {:+.1} % against the one before ({} -> {}), smaller than the allowed -{:.0} %",
                newest.name,
                change * 100.0,
                h(prev),
                h(size),
                s * 100.0
            )));
        }
        Ok(out)
    }
}
