//! Point-in-time recovery from any source, start to end: pick the base backup for the
//! target, check it, materialize it into a throwaway workspace, recover and prove the
//! target (`recover`), timing each phase for RTO. `pitr.restore` and the tests call this;
//! every source is recovered and judged the same way.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use super::recover::{self, RecoverOptions, Recovered, Target, TargetKind, Workspace};
use super::source::{ArchiveEnd, BaseBackup, PhysicalSource, Tool};
use crate::error::Failure;

/// The base backup for `target`: the newest that ended before it. A backup that ends after
/// the target cannot be recovered to it (its data is already past the target), so it is
/// never used: when `id` names one, the answer is an error saying so.
pub fn pick<'a>(backups: &'a [BaseBackup], target: &Target, id: Option<&str>) -> Result<&'a BaseBackup, Failure> {
    let usable = |b: &BaseBackup| -> Result<(), String> {
        match &target.kind {
            TargetKind::Time(t) => match b.ended {
                Some(end) if end < *t => Ok(()),
                Some(end) => Err(format!(
                    "it ended at {}, after the target {}",
                    crate::util::rfc3339(end),
                    crate::util::rfc3339(*t)
                )),
                None => Err("its end time is unknown".into()),
            },
            TargetKind::Lsn(l) => match b.stop_lsn {
                Some(stop) if stop <= *l => Ok(()),
                Some(stop) => Err(format!("it stops at LSN {stop}, after the target {l}")),
                None => Err("its stop LSN is unknown".into()),
            },
            // A restore point or a transaction is found in the WAL after the backup; which
            // backup precedes it cannot be known beforehand, so the newest is tried and
            // recovery proves (or refutes) the stop.
            _ => Ok(()),
        }
    };
    if let Some(id) = id {
        let b = backups.iter().find(|b| b.id == id).ok_or_else(|| {
            let ids: Vec<&str> = backups.iter().map(|b| b.id.as_str()).collect();
            Failure::invalid(format!("no base backup `{id}` (there are: {})", ids.join(", ")))
        })?;
        return usable(b).map(|()| b).map_err(|why| {
            Failure::failed(format!("base backup {} cannot be recovered to {target}: {why}", b.describe()))
        });
    }
    let mut reasons = Vec::new();
    for b in backups.iter().rev() {
        match usable(b) {
            Ok(()) => return Ok(b),
            Err(why) => reasons.push(format!("{}: {why}", b.id)),
        }
    }
    if backups.is_empty() {
        return Err(Failure::failed("the source holds no base backup"));
    }
    Err(Failure::failed(format!("no base backup ends before {target} ({})", reasons.join("; "))))
}

/// What to recover and how.
#[derive(Debug, Clone, Default)]
pub struct PitrOptions {
    /// The backup to use (the source's id); default: picked for the target.
    pub backup: Option<String>,
    /// The source's backups as the caller already listed them: not listed again (each
    /// listing is a call of the tool, `pgbackrest info`); `None`, listed here.
    pub listed: Option<Vec<BaseBackup>>,
    /// Everything `recover` takes except the restore command, archive end and system
    /// identifier, which come from the source.
    pub recover: RecoverOptions,
}

/// The times RTO is made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Phases {
    /// Listing, picking and checking the backup (pg_verifybackup).
    pub check_backup: Duration,
    /// Writing the base backup into the data directory.
    pub base_restore: Duration,
    /// Server start to promotion (WAL replay).
    pub replay: Duration,
}

/// A recovered server and what it took.
#[derive(Debug)]
pub struct Pitr {
    pub server: Recovered,
    pub backup: BaseBackup,
    pub tool: Tool,
    /// What checking the backup's files said, if it could be checked.
    pub backup_check: Option<String>,
    pub base_bytes: u64,
    pub phases: Phases,
    /// The archive's newest segment as the source listed it before the recovery (what a
    /// "latest" was held to, and the age of the newest WAL).
    pub archive_end: Option<ArchiveEnd>,
}

/// Recover `source` to `target` in a throwaway server and prove it. Blocking parts (the
/// source's tools, file copies) run with `block_in_place`.
pub async fn run(source: &dyn PhysicalSource, opts: PitrOptions) -> Result<Pitr, Failure> {
    let t0 = Instant::now();
    let target = opts.recover.target.clone();
    let (backup, mut check, placed) = tokio::task::block_in_place(|| -> Result<_, Failure> {
        let list = match opts.listed {
            Some(list) => list,
            None => source.list()?,
        };
        let b = pick(&list, &target, opts.backup.as_deref())?.clone();
        // Where the tool serves it is settled before its files are checked or restored.
        let placed = source.placement(&b)?;
        let check = source.verify(&b)?;
        Ok((b, check, placed))
    })?;
    let check_time = t0.elapsed();
    let ws = Workspace::new()?;
    let t1 = Instant::now();
    let into = ws.materialize_into();
    let materialized = tokio::task::block_in_place(|| source.materialize(&backup, &into))
        .map_err(|e| e.context(format!("restoring base backup {} from {}", backup.id, source.describe())))?;
    let base_restore = t1.elapsed();
    let t2 = Instant::now();
    if let Some(more) = tokio::task::block_in_place(|| source.verify_materialized(&backup, &into))? {
        check = Some(more);
    }
    let check_time = check_time + t2.elapsed();
    let mut ro = opts.recover.clone();
    ro.restore_command = source.restore_command(&backup)?;
    ro.mounts.extend(source.paths());
    if let Some(p) = placed {
        ro.image = Some(p.image);
        ro.network = p.network;
    }
    ro.archive_end = tokio::task::block_in_place(|| source.archive_end(backup.timeline.unwrap_or(1)))?;
    if ro.system_identifier.is_none() {
        ro.system_identifier = backup.system_identifier;
    }
    // A source may read its store again to judge the failure (barman-cloud's WAL listing).
    let archive_end = ro.archive_end.clone();
    let server =
        recover::recover(ws, ro).await.map_err(|e| tokio::task::block_in_place(|| source.judge_fetch(&backup, e)))?;
    let replay = server.facts.replay;
    Ok(Pitr {
        server,
        tool: source.tool(),
        backup,
        backup_check: check,
        base_bytes: materialized.bytes,
        phases: Phases { check_backup: check_time, base_restore, replay },
        archive_end,
    })
}

/// The RPO of a recovery to a point: the target time minus the point in time the data now
/// reflects (the last transaction replayed), in seconds; `None` when either is unknown.
pub fn rpo_seconds(target: OffsetDateTime, achieved: Option<OffsetDateTime>) -> Option<f64> {
    achieved.map(|a| ((target - a).as_seconds_f64()).max(0.0))
}

/// What a recovered copy was compared with.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// The source's fingerprint at the target (schema and per-table rows; `pitr.mark`).
    SourceAtTarget(crate::pg::fingerprint::Fingerprint),
    /// The base backup's own schema fingerprint, taken when the backup ended: the truth for
    /// the schema of a recovery to `immediate` only.
    BackupSchema(crate::pg::fingerprint::Fingerprint),
}

impl Truth {
    /// The name reports give it.
    pub fn name(&self) -> &'static str {
        match self {
            Truth::SourceAtTarget(_) => "source at the target",
            Truth::BackupSchema(_) => "base backup schema",
        }
    }
}

/// The differences between the database `url` names (a recovered copy) and `truth`: the
/// schema always, the per-table rows (and content hashes where the truth has them) when the
/// truth holds tables. Empty: they agree.
pub async fn differences(url: &str, truth: &Truth) -> Result<Vec<String>, Failure> {
    use crate::pg::fingerprint;
    let pg = |e: tokio_postgres::Error| {
        Failure::environment(format!("fingerprinting the recovered copy: {}", crate::pg::describe(&e)))
    };
    let (expect, tables) = match truth {
        Truth::SourceAtTarget(f) => (f, true),
        Truth::BackupSchema(f) => (f, false),
    };
    let c = crate::pg::connect(url).await?;
    c.batch_execute("begin isolation level repeatable read read only").await.map_err(pg)?;
    let (_, schema) = fingerprint::compute_schema(&c).await.map_err(pg)?;
    // A physical copy is the same cluster: privileges and owners are compared too. Only
    // sequence positions may stand ahead (they are WAL-logged in advance), never behind.
    // The lines are compared, never the hashes alone (equal lines may hash apart when only
    // sequence positions moved).
    let mut out = fingerprint::schema_differences(&expect.schema, &schema);
    if tables {
        let mut got = fingerprint::compute_tables(&c, expect.mode, expect.content()).await.map_err(pg)?;
        // Unlogged tables come back empty from any recovery; `mark` leaves them out too.
        let unlogged = c
            .query(
                "select format('%I.%I', n.nspname, c.relname) from pg_class c join pg_namespace n \
                 on n.oid = c.relnamespace where c.relkind = 'r' and c.relpersistence = 'u'",
                &[],
            )
            .await
            .map_err(pg)?;
        for r in unlogged {
            got.remove(&r.get::<_, String>(0));
        }
        out.extend(fingerprint::table_differences(&expect.tables, &got));
    }
    c.batch_execute("commit").await.map_err(pg)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physical::source::Lsn;

    fn backup(id: &str, ended_s: i64, stop: u64) -> BaseBackup {
        BaseBackup {
            id: id.into(),
            ended: OffsetDateTime::from_unix_timestamp(ended_s).ok(),
            stop_lsn: Some(Lsn(stop)),
            ..Default::default()
        }
    }

    fn at(s: i64) -> Target {
        Target { kind: TargetKind::Time(OffsetDateTime::from_unix_timestamp(s).expect("time")), inclusive: true }
    }

    #[test]
    fn the_newest_backup_that_ends_before_the_target_is_picked_and_a_later_one_refused() {
        let list = vec![backup("a", 100, 10), backup("b", 200, 20), backup("c", 300, 30)];
        assert_eq!(pick(&list, &at(250), None).map(|b| b.id.as_str()).ok(), Some("b"));
        assert_eq!(pick(&list, &Target::latest(), None).map(|b| b.id.as_str()).ok(), Some("c"));
        let lsn = Target { kind: TargetKind::Lsn(Lsn(25)), inclusive: true };
        assert_eq!(pick(&list, &lsn, None).map(|b| b.id.as_str()).ok(), Some("b"));
        let e = pick(&list, &at(250), Some("c")).expect_err("c ends after the target");
        assert!(e.message.contains("after the target"), "{}", e.message);
        let e = pick(&list, &at(50), None).expect_err("none before");
        assert!(e.message.contains("no base backup ends before"), "{}", e.message);
    }
}
