//! `physical.verify`: prove that another tool's physical backup (a pgBackRest stanza, a
//! Barman server, a barman-cloud server) restores to a point in time. The tool restores its own backup into a
//! throwaway data directory, the throwaway server replays the tool's WAL archive up to the
//! target, and `physical::recover` proves the target was reached before the step passes.
//!
//! The step never changes the team's backup setup: it reads the tool's configuration as it
//! is, never writes into its repository, and its throwaway never archives.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With, WithError};
use crate::pg::fingerprint::Fingerprint;
use crate::physical::mark::Mark;
use crate::physical::pitr::{self, PitrOptions, Truth};
use crate::physical::recover::{self, RecoverOptions, Target, TargetKind};
use crate::physical::source::{Lsn, PhysicalSource};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct VerifyWith {
    /// the backups: `pgbackrest://STANZA?config=PATH`, `barman://SERVER?config=PATH` or `barman-cloud:s3://BUCKET/PATH?server=NAME` (secrets from the environment)
    source: String,
    /// the tool's backup id (pgBackRest label, Barman or barman-cloud backup id); default: the newest that can reach the target
    #[serde(default, deserialize_with = "super::de::opt_text")]
    backup: Option<String>,
    /// recover to this time (`2026-12-06 06:55:00+00`, RFC 3339 too); at most one target, none: the end of the archive
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_time: Option<String>,
    /// recover to this WAL location (`0/5000028`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_lsn: Option<String>,
    /// recover to this transaction id
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_xid: Option<String>,
    /// recover to this restore point (`pg_create_restore_point`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_name: Option<String>,
    /// recover only to the end of the base backup
    #[serde(default, deserialize_with = "super::de::boolean")]
    target_immediate: bool,
    /// stop just after the target (true, PostgreSQL's default) or just before it
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    inclusive: bool,
    /// a query that must return true on the recovered server (a row the target should have brought back)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    marker: Option<String>,
    /// database the marker query runs in (default `postgres`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    /// a superuser of the restored cluster (default `postgres`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    user: Option<String>,
    /// directory of the PostgreSQL server binaries (default: the backup's major under /usr/lib/postgresql)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    bin_dir: Option<String>,
    /// how long recovery may take, server start to promotion (default 10m)
    #[serde(default = "ten_minutes", deserialize_with = "super::de::duration")]
    timeout: Duration,
    /// fail when the archive's newest WAL segment was archived longer ago than this (e.g. 1h); an age the tool cannot tell fails too
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    max_wal_age: Option<Duration>,
    /// the ground truth at the target: a fingerprint of the source taken there (`pitr.mark`'s
    /// `fingerprint`, on the team's server), or a file holding it (the fingerprint, pitr.mark's
    /// outputs or the marking run's run.json; relative to the runbook); the recovered
    /// `database`'s schema and per-table rows must equal it, each difference named. Without
    /// one the content is unproven (`ground_truth: none`): the recovery is proven, what it
    /// holds is not
    #[serde(default)]
    #[field(ty = "map|path|null")]
    expect: Option<serde_json::Value>,
    /// without `expect` (no ground truth for the recovered content): false (the default)
    /// fails the step as "restorable, content unproven", exit 1, as verify of a dump without
    /// ground truth does; true accepts that and skips it; never a pass (the recovery itself
    /// is proven either way, and its outputs stay readable)
    #[serde(default, deserialize_with = "super::de::opt_bool")]
    #[field(ty = "boolean")]
    accept_unproven: Option<bool>,
}

fn yes() -> bool {
    true
}

fn ten_minutes() -> Duration {
    Duration::from_secs(600)
}

/// Which of the targets are given; a templated value counts only once rendered (empty: not given).
fn targets_given(w: &VerifyWith, rendered: bool) -> usize {
    let given = |v: &Option<String>| v.as_deref().is_some_and(|v| rendered || !v.contains("{{"));
    [given(&w.target_time), given(&w.target_lsn), given(&w.target_xid), given(&w.target_name), w.target_immediate]
        .iter()
        .filter(|g| **g)
        .count()
}

const ONE_TARGET: &str = "give at most one of target_time, target_lsn, target_xid, target_name, target_immediate";

impl With for VerifyWith {
    fn check(&self) -> Result<(), WithError> {
        if targets_given(self, false) > 1 {
            return Err(WithError::new("target_time", ONE_TARGET));
        }
        Ok(())
    }
}

impl VerifyWith {
    /// The ground truth `expect` holds (pitr.mark's fingerprint, inline or in a file
    /// relative to `base`), read before anything is restored: a value or a file that holds
    /// no fingerprint is the runbook's mistake, never "unproven".
    fn expected(&self, base: &std::path::Path) -> Result<Option<Mark>, StepError> {
        let Some(v) = self.expect.as_ref() else { return Ok(None) };
        crate::physical::mark::read(v, base).map_err(|why| StepError::field("expect", why))
    }

    fn target(&self) -> Result<Target, StepError> {
        if targets_given(self, true) > 1 {
            return Err(StepError::invalid(ONE_TARGET));
        }
        let kind = if let Some(t) = &self.target_time {
            // RFC 3339 is read as PostgreSQL's form: `T` -> space, `Z` -> +00.
            let pgform = t.trim().replacen('T', " ", 1).replace('Z', "+00");
            TargetKind::Time(recover::parse_pg_time(&pgform).ok_or_else(|| {
                StepError::invalid(format!("target_time `{}` is not a time with its zone (2026-12-06 06:55:00+00)", crate::util::visible(t)))
            })?)
        } else if let Some(l) = &self.target_lsn {
            TargetKind::Lsn(Lsn::parse(l).ok_or_else(|| {
                StepError::invalid(format!("target_lsn `{}` is not a WAL location (0/5000028)", crate::util::visible(l)))
            })?)
        } else if let Some(x) = &self.target_xid {
            TargetKind::Xid(x.trim().parse().map_err(|_| {
                StepError::invalid(format!("target_xid `{}` is not a transaction id", crate::util::visible(x)))
            })?)
        } else if let Some(n) = &self.target_name {
            TargetKind::Name(n.clone())
        } else if self.target_immediate {
            TargetKind::Immediate
        } else {
            TargetKind::Latest
        };
        Ok(Target { kind, inclusive: self.inclusive })
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct VerifyOutputs {
    /// the recovered server (a unix socket, no password), up until the runbook ends, for checks
    url: String,
    /// the database `url` names
    database: String,
    /// Unix time the step started (the RTO's start)
    started_epoch: f64,
    /// seconds listing, picking and checking the backup
    check_backup_s: f64,
    /// for a time target: seconds between the target and the last transaction replayed
    rpo_s: Option<f64>,
    /// the age in seconds of the source's newest backup (whichever was recovered): its freshness
    newest_age_s: u64,
    /// how far the newest backup is dated in the future (clock skew): its age is then unknown
    newest_future_s: u64,
    /// the archive's newest WAL segment on the backup's timeline, when the tool can tell
    newest_wal: Option<String>,
    /// seconds since that segment was archived (its time in the tool's repository), when the tool can tell
    newest_wal_age_s: Option<u64>,
    /// the tool that restored the backup (`pgbackrest`, `barman`, `barman-cloud`)
    tool: String,
    /// the tool's version and the binary that served
    tool_version: String,
    /// the source, without secrets
    source: String,
    /// the tool's id of the backup recovered
    backup: String,
    /// when that backup ended (RFC 3339)
    backup_ended: Option<String>,
    /// the target, as recovered to
    target: String,
    /// the server's own line saying where recovery stopped (none for the end of the archive)
    stop_line: Option<String>,
    /// the commit time of the last transaction replayed: the point the data now reflects (RFC 3339)
    achieved_time: Option<String>,
    /// the last WAL location replayed
    replay_lsn: String,
    /// the restored cluster's system identifier
    system_identifier: String,
    /// WAL segments the tool fetched for the recovery
    segments_restored: u32,
    /// seconds the tool took to restore the base backup
    restore_s: f64,
    /// seconds from server start to promotion
    replay_s: f64,
    /// the throwaway's `server_version`
    server_version: String,
    /// the marker query's answer, when one was given
    marker: Option<bool>,
    /// what the recovered copy's schema and rows were compared with: the source at the
    /// target (`expect`), or none (content unproven)
    #[field(ty = "source at the target|none")]
    ground_truth: String,
    /// the sha256 of what names the backup (pgBackRest's backup.manifest, barman-cloud's
    /// backup.info), when the tool keeps one
    backup_sha256: Option<String>,
    /// the folder of this source's ledger (`&ledger=FOLDER` in `source`), empty without one:
    /// `verify.record` keeps the verification there, keyed by the tool's backup id
    ledger: String,
}

/// Prove another tool's physical backup (pgBackRest, Barman, barman-cloud) restores to a point in time: the tool
/// restores it into a throwaway, its WAL is replayed to the target, and the target is proven reached. A missing tool:
/// exit 3.
#[step(name = "physical.verify")]
impl Verify {
    async fn run(ctx: StepCtx, w: VerifyWith) -> Result<VerifyOutputs, StepError> {
        let started = time::OffsetDateTime::now_utc();
        let target = w.target()?;
        let expect = w.expected(&ctx.base_dir)?;
        // A mark names the restore point it was taken at: a recovery to another target is
        // compared with it all the same (the runbook's choice), but said, since rows written
        // after the mark then differ.
        if let Some(point) = expect.as_ref().and_then(|m| m.restore_point.as_deref()) {
            if !matches!(&target.kind, TargetKind::Name(n) if n == point) {
                ctx.log(format!(
                    "the mark was taken at restore point {point:?}; recovering to {target} instead (give target_name={point} to recover to the mark)"
                ));
            }
        }
        let expect = expect.map(|m| m.fingerprint);
        let location = w.source.clone();
        let ledger = crate::physical::tools::ledger_of(&location)
            .map_err(|e| e.at_field("source"))?
            .map(|d| ctx.resolve(&d).to_string())
            .unwrap_or_default();
        // A ledger that cannot be written would fail the run's record only after a whole
        // recovery: its store is asked first (a local folder must exist, a bucket answer).
        if !ledger.is_empty() {
            use crate::error::Failure;
            match crate::storage::local_dir(&ledger) {
                Some(dir) if !dir.is_dir() => {
                    return Err(Failure::invalid(format!(
                        "the ledger folder {ledger} does not exist: create it (pgdrill never creates a ledger where a typo put it)"
                    ))
                    .at_field("source")
                    .into())
                }
                Some(_) => {}
                None => {
                    let store = ctx
                        .stores
                        .open_in(&ledger, std::path::Path::new(""))
                        .map_err(|e| Failure::invalid(e).at_field("source"))?;
                    store.probe().await.map_err(|e| {
                        Failure::environment(format!("the ledger {ledger} cannot be reached: {e}")).at_field("source")
                    })?;
                }
            }
        }
        // Watched before the source opens: its tool's version probes run through it too.
        let stop = crate::physical::tools::Interrupt::default();
        let _watch = stop.watch(ctx.cancel.clone());
        let source: Box<dyn PhysicalSource> =
            tokio::task::block_in_place(|| crate::physical::open_with(&location, &ctx.stores, stop))
                .map_err(|e| e.at_field("source"))?;
        ctx.log(format!("recovering {} to {target}", source.describe()));
        // The backup this run judges, by the tool's id, kept even if the step fails: the
        // ledger records a failed verification under the backup it failed (verify.record).
        let list = tokio::task::block_in_place(|| source.list())?;
        if let Ok(b) = pitr::pick(&list, &target, w.backup.as_deref()) {
            ctx.keep("backup", serde_json::json!(b.id));
            ctx.keep("ledger", serde_json::json!(ledger));
        }
        // The tool's restore_command runs where the tool does: on this machine, or in the
        // Docker image of the backup's major that the source chose (PostgreSQL 17's pgBackRest
        // on a machine with 15's), which then runs the throwaway too. A major without local
        // server binaries that no image serves is the environment's failure, named, before
        // anything is restored.
        let picked = pitr::pick(&list, &target, w.backup.as_deref()).ok();
        let placed = match picked {
            Some(b) => tokio::task::block_in_place(|| source.placement(b))?,
            None => None,
        };
        if let Some(p) = &placed {
            let tool = source.tool();
            ctx.log(format!("{} {} serves this backup: {}", tool.name, tool.version, p.why));
        }
        if w.bin_dir.is_none() && placed.is_none() {
            let major = picked.and_then(|b| b.pg_major);
            if let Some(m) = major.filter(|m| crate::pg::native::find_bin_dir(None, Some(*m)).is_err()) {
                return Err(StepError::environment(format!(
                    "the backup is of PostgreSQL {m}, whose server binaries are not installed here: install postgresql-{m} (apt-get install postgresql-{m}) or set bin_dir; {}'s WAL command runs on this machine, so the recovery cannot run in a Docker image",
                    source.tool().name
                )));
            }
        }
        // A target past the picked backup's end needs the WAL after it: a tool whose
        // retention expired that range is named as such before anything is restored (replay
        // would only stop short of the target, for no stated reason).
        if !matches!(target.kind, TargetKind::Latest | TargetKind::Immediate) {
            let expired = tokio::task::block_in_place(|| -> Result<Option<String>, crate::error::Failure> {
                match pitr::pick(&list, &target, w.backup.as_deref()) {
                    Ok(b) => source.expired_wal_after(b),
                    Err(_) => Ok(None),
                }
            })?;
            if let Some(why) = expired {
                return Err(StepError::failed(why));
            }
        }
        // The same recovery and proof as pitr.restore: pick, the tool's own check, restore,
        // replay through the tool's WAL command, prove the target.
        let opts = PitrOptions {
            backup: w.backup.clone(),
            // Listed above: `pgbackrest info` and its like run once per verification.
            listed: Some(list.clone()),
            recover: RecoverOptions {
                target: target.clone(),
                bin_dir: w.bin_dir.as_ref().map(Into::into),
                user: w.user.clone(),
                database: w.database.clone(),
                timeout: w.timeout,
                marker: w.marker.clone(),
                ..Default::default()
            },
        };
        let p = pitr::run(source.as_ref(), opts).await?;
        let tool = p.tool.clone();
        ctx.log(format!("served by {} {}", tool.name, tool.version));
        ctx.log(format!(
            "base backup {}: {} restored by {} in {:.1}s",
            p.backup.describe(),
            crate::util::human_bytes(p.base_bytes),
            tool.name,
            p.phases.base_restore.as_secs_f64()
        ));
        if let Some(found) = &p.backup_check {
            ctx.log(found.clone());
        }
        let backup_sha256 = super::pitr::recovery_evidence(&ctx, source.as_ref(), &p);
        let picked = p.backup.clone();
        let archive_end = p.archive_end.clone();
        let restore_s = p.phases.base_restore.as_secs_f64();
        let p_check_s = p.phases.check_backup.as_secs_f64();
        let recovered = p.server;
        let f = recovered.facts.clone();
        for line in &f.evidence {
            ctx.log(format!("server: {line}"));
        }
        ctx.fact(crate::facts::Fact::Server { version: f.server_version.clone() });
        // The backup this recovery proved, for the report's backups tested: the tool's source
        // and its id (a physical backup has no single file), its end as its time.
        let age = picked.ended.map(|e| ((time::OffsetDateTime::now_utc() - e).as_seconds_f64() * 1000.0).round() / 1000.0);
        ctx.fact(crate::facts::Fact::Backup {
            role: crate::facts::BackupRole::Picked,
            path: format!("{} {}", source.describe(), picked.id).into(),
            sha256: serde_json::Value::Null,
            size: picked.size.into(),
            created: picked.ended.map(crate::util::rfc3339).into(),
            age_s: age.into(),
        });
        ctx.fact(crate::facts::Fact::Verified);
        let ground_truth = judge_content(&ctx, &recovered, &target, expect).await?;
        let rpo_s = match &target.kind {
            TargetKind::Time(t) => pitr::rpo_seconds(*t, f.achieved_time).map(|r| (r * 1000.0).round() / 1000.0),
            _ => None,
        };
        // Freshness is the source's newest backup, not the one a past target picked, as the
        // source listed its backups when this verification began (never fresher than it was).
        let now = time::OffsetDateTime::now_utc();
        let newest = list.iter().filter_map(|b| b.ended).max();
        let (newest_age_s, newest_future_s) = match newest {
            Some(e) if e <= now => ((now - e).whole_seconds().max(0) as u64, 0),
            Some(e) => (0, (e - now).whole_seconds().max(1) as u64),
            None => (0, 0),
        };
        // Freshness of the WAL: a backup from last night recovers, but an archive that stopped
        // receiving WAL hours ago loses everything since. Judged by when the tool's repository
        // received the newest segment, never by the throwaway's copy of it: as the archive was
        // listed before the recovery, which the recovery was held to (one listing, not two).
        let end = archive_end;
        let newest_wal = end.as_ref().map(|e| e.segment.clone());
        let archived = end.as_ref().and_then(|e| e.archived);
        let newest_wal_age_s = archived.filter(|a| *a <= now).map(|a| (now - a).whole_seconds().max(0) as u64);
        if let Some(max) = w.max_wal_age {
            let shown = |s: u64| humantime::format_duration(Duration::from_secs(s / 60 * 60)).to_string();
            let max_shown = humantime::format_duration(max);
            match (&newest_wal, archived, newest_wal_age_s) {
                (Some(seg), _, Some(age)) if age > max.as_secs() => {
                    return Err(StepError::failed(format!(
                        "the archive's newest WAL segment {seg} was archived {} ago, longer than max_wal_age {max_shown}: WAL archiving has stopped or lags (the recovery itself was proven)",
                        shown(age)
                    )))
                }
                (Some(seg), _, Some(age)) => ctx.log(format!("newest WAL {seg} archived {} ago, within max_wal_age {max_shown}", shown(age))),
                (Some(seg), Some(_), None) => {
                    return Err(StepError::failed(format!(
                        "the archive's newest WAL segment {seg} is dated in the future (a skewed clock): its age, and max_wal_age {max_shown}, cannot be judged"
                    )))
                }
                _ => {
                    return Err(StepError::failed(format!(
                        "{} does not say when its newest WAL segment was archived: max_wal_age {max_shown} cannot be judged",
                        source.describe()
                    )))
                }
            }
        }
        ctx.fact(crate::facts::Fact::Database { name: recovered.database.clone() });
        let out = VerifyOutputs {
            newest_wal,
            newest_wal_age_s,
            newest_age_s,
            newest_future_s,
            url: recovered.url(),
            database: recovered.database.clone(),
            started_epoch: started.unix_timestamp_nanos() as f64 / 1e9,
            check_backup_s: p_check_s,
            rpo_s,
            tool: tool.name,
            tool_version: tool.version,
            source: source.describe(),
            backup: picked.id.clone(),
            backup_ended: picked.ended.map(crate::util::rfc3339),
            target: f.target.clone(),
            stop_line: f.stop_line.clone(),
            achieved_time: f.achieved_time.map(crate::util::rfc3339),
            replay_lsn: f.replay_lsn.to_string(),
            system_identifier: f.system_identifier.to_string(),
            segments_restored: f.segments_restored,
            restore_s,
            replay_s: f.replay.as_secs_f64(),
            server_version: f.server_version.clone(),
            marker: f.marker,
            ground_truth,
            backup_sha256,
            ledger,
        };
        let unproven = (out.ground_truth == "none").then(|| (target.to_string(), out.database.clone()));
        super::pitr::hand_over(
            &ctx,
            recovered,
            out,
            unproven,
            "Give `expect:` (pitr.mark's fingerprint taken on the source at the target, or a file holding it: --var expect=FILE of the shipped verify-physical), or accept unproven content explicitly (accept_unproven: true; --var accept_unproven=true)",
            w.accept_unproven,
        )
    }
}

/// Judge what the recovered copy holds: against the source at the target (`expect`), each
/// difference named (in the log, and the first of them in the failure); without one the
/// content is unproven, said in the log, the evidence (`ground_truth: none`) and the ledger
/// (`unproven`, never `passed`). Returns the ground truth's name.
async fn judge_content(
    ctx: &StepCtx,
    recovered: &crate::physical::recover::Recovered,
    target: &Target,
    expect: Option<Fingerprint>,
) -> Result<String, StepError> {
    let database = &recovered.database;
    let Some(expect) = expect else {
        ctx.fact(crate::facts::Fact::GroundTruth { basis: "none".into() });
        ctx.log(format!(
            "content unproven: the recovery to {target} is proven, but database {database:?}'s schema and rows were compared with nothing (give `expect:`, pitr.mark's fingerprint taken on the source at the target)"
        ));
        return Ok("none".into());
    };
    let tables = expect.tables.len();
    let truth = Truth::SourceAtTarget(expect);
    ctx.fact(crate::facts::Fact::GroundTruth { basis: truth.name().into() });
    ctx.keep("ground_truth", serde_json::json!(truth.name()));
    let diffs = pitr::differences(&recovered.url(), &truth).await?;
    if diffs.is_empty() {
        ctx.log(format!("ground truth: the source at the target: the schema and {tables} tables' rows of {database:?} match"));
        return Ok(truth.name().into());
    }
    for d in &diffs {
        ctx.log(format!("differs from the source at the target: {d}"));
    }
    const SHOWN: usize = 20;
    let shown: Vec<&str> = diffs.iter().take(SHOWN).map(String::as_str).collect();
    Err(StepError::failed(format!(
        "recovered to {target}, but database {database:?} differs from the source at the target in {} place{}: {}{}",
        diffs.len(),
        if diffs.len() == 1 { "" } else { "s" },
        shown.join("; "),
        if diffs.len() > SHOWN { format!("; and {} more (each in the log)", diffs.len() - SHOWN) } else { String::new() }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_postgresql_times_are_both_read() {
        let w = |t: &str| VerifyWith {
            source: "x".into(),
            backup: None,
            target_time: Some(t.into()),
            target_lsn: None,
            target_xid: None,
            target_name: None,
            target_immediate: false,
            inclusive: true,
            marker: None,
            database: None,
            user: None,
            bin_dir: None,
            timeout: ten_minutes(),
            max_wal_age: None,
            expect: None,
            accept_unproven: None,
        };
        let a = w("2026-12-06T06:55:00Z").target().expect("parsed");
        let b = w("2026-12-06 06:55:00+00").target().expect("parsed");
        assert_eq!(a, b);
        assert!(w("yesterday").target().is_err());
    }
}
