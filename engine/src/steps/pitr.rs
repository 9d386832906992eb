//! `pitr.restore`: recover a physical backup to a point in time in a throwaway server and
//! prove the target was reached (`physical::pitr`); the server stays up for the runbook's
//! checks and is torn down with it. `pitr.source`: a throwaway source cluster that archives
//! its WAL, for PITR drills.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{rfc3339, BoxFuture, Fields, step, StepCtx, StepError, Teardown, With, WithError};
use crate::physical::archiving::{ArchivingOptions, ArchivingServer, WalArchive};
use crate::physical::basebackup::BasebackupFolder;
use crate::pg::fingerprint::{Fingerprint, Mode};
use crate::physical::pitr::{self, PitrOptions, Truth};
use crate::physical::recover::{parse_pg_time, RecoverOptions, Recovered, Target, TargetKind};
use crate::physical::source::{Lsn, PhysicalSource};
use crate::template::is_template;

// ---------------------------------------------------------------------------------------
// pitr.restore

/// The kinds of source `pitr.restore` reads.
const SOURCES: &[&str] = &["pg_basebackup", "pgdrill", "pgbackrest", "barman", "barman-cloud"];

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RestoreWith {
    /// where the base backups come from: pg_basebackup (a folder of pg_basebackup output),
    /// pgdrill (`backup.base` and `pgdrill wal push`, in `storage`), or another tool's
    /// (pgbackrest, barman, barman-cloud: `storage` is its location, as physical.verify's `source`)
    #[serde(default = "basebackup_source")]
    #[field(ty = "pg_basebackup|pgdrill|pgbackrest|barman|barman-cloud")]
    source: String,
    /// pg_basebackup: the folder of one backup, or a folder of backups (one sub-folder each)
    #[serde(default)]
    #[field(ty = "path")]
    backups: String,
    /// pgdrill: the storage holding the base backups and the WAL archive (folder, s3://...)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    storage: Option<String>,
    /// pgdrill: the key or passphrase the base backups and the archive are sealed with
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(key)]
    key: Option<String>,
    /// pgdrill: the system identifier whose backups to use (when the storage holds several)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    system_identifier: Option<String>,
    /// the WAL archive folder (plain or gzip'd segments); empty: only the backups' own WAL
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    wal: Option<String>,
    /// latest (default: the archive's end) or immediate (the base backup's end)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "latest|immediate")]
    target: Option<String>,
    /// recover to this time (RFC 3339, `2026-12-06 07:00:00+00`, or Unix seconds)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_time: Option<String>,
    /// recover to this WAL location (`0/3000028`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_lsn: Option<String>,
    /// recover to this transaction id
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_xid: Option<String>,
    /// recover to this restore point (`pg_create_restore_point`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    target_name: Option<String>,
    /// stop just after the target (default true) or just before it
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    inclusive: bool,
    /// the base backup's id; default: the newest that ends before the target
    #[serde(default, deserialize_with = "super::de::opt_text")]
    backup: Option<String>,
    /// a superuser of the backed-up cluster to connect as (default postgres)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    user: Option<String>,
    /// the database the output `url` names, and the marker query runs in (default postgres)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    /// a query that must return true on the recovered server (a row the target brings back)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    marker: Option<String>,
    /// the ground truth at the target: a fingerprint of the source taken there (`pitr.mark`'s
    /// `fingerprint`), or a file holding it (the fingerprint, pitr.mark's outputs or the
    /// marking run's run.json; relative to the runbook); the recovered `database`'s schema
    /// and per-table rows must equal it. Without one, a recovery to `immediate` of pgdrill's
    /// own base backup is compared with the schema recorded when the backup ended; anything
    /// else is "unproven"
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
    /// how long recovery may take, server start to promotion (default 30m)
    #[serde(default = "half_hour", deserialize_with = "super::de::duration")]
    timeout: Duration,
    /// directory with the server binaries of the backup's major (default: found)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    bin_dir: Option<String>,
}

fn basebackup_source() -> String {
    "pg_basebackup".into()
}
fn yes() -> bool {
    true
}
fn half_hour() -> Duration {
    Duration::from_secs(1800)
}

/// Unix seconds, RFC 3339 (`2026-12-06T07:00:00Z`) or PostgreSQL's `2026-12-06 07:00:00+00`.
pub fn parse_time(text: &str) -> Option<OffsetDateTime> {
    let t = text.trim();
    // `NaN` and `inf` parse as numbers too: NaN became 1970-01-01.
    if let Some(secs) = t.parse::<f64>().ok().filter(|s| s.is_finite()) {
        return OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok();
    }
    let t = t.replacen('T', " ", 1);
    let t = match t.strip_suffix('Z') {
        Some(s) => format!("{s}+00"),
        None => t,
    };
    parse_pg_time(&t)
}

impl RestoreWith {
    /// The one target the fields name.
    fn target(&self) -> Result<Target, WithError> {
        let set: Vec<&str> = [
            ("target", &self.target),
            ("target_time", &self.target_time),
            ("target_lsn", &self.target_lsn),
            ("target_xid", &self.target_xid),
            ("target_name", &self.target_name),
        ]
        .into_iter()
        .filter(|(_, v)| v.as_deref().is_some_and(|v| !v.is_empty()))
        .map(|(k, _)| k)
        .collect();
        if set.len() > 1 {
            return Err(WithError::new(set[1], format!("give one target, not {}", set.join(" and "))));
        }
        let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        let kind = if let Some(t) = nonempty(&self.target_time) {
            TargetKind::Time(parse_time(&t).ok_or_else(|| {
                WithError::new("target_time", format!("`{t}` is not a time: write 2026-12-06T07:00:00Z or Unix seconds"))
            })?)
        } else if let Some(l) = nonempty(&self.target_lsn) {
            TargetKind::Lsn(
                Lsn::parse(&l)
                    .ok_or_else(|| WithError::new("target_lsn", format!("`{l}` is not a WAL location (0/3000028)")))?,
            )
        } else if let Some(x) = nonempty(&self.target_xid) {
            TargetKind::Xid(
                x.trim()
                    .parse()
                    .map_err(|_| WithError::new("target_xid", format!("`{x}` is not a transaction id")))?,
            )
        } else if let Some(n) = nonempty(&self.target_name) {
            TargetKind::Name(n)
        } else {
            match nonempty(&self.target).as_deref() {
                None | Some("latest") => TargetKind::Latest,
                Some("immediate") => TargetKind::Immediate,
                Some(other) => {
                    return Err(WithError::new(
                        "target",
                        format!("unknown target `{other}`: latest or immediate (or target_time, target_lsn, target_xid, target_name)"),
                    ))
                }
            }
        };
        Ok(Target { kind, inclusive: self.inclusive })
    }
}

impl With for RestoreWith {
    fn check(&self) -> Result<(), WithError> {
        if !is_template(&self.source) && !SOURCES.contains(&self.source.as_str()) {
            return Err(WithError::new("source", format!("unknown source `{}`: {}", self.source, SOURCES.join(", "))));
        }
        let templated = [&self.target, &self.target_time, &self.target_lsn, &self.target_xid, &self.target_name]
            .iter()
            .any(|v| v.as_deref().is_some_and(is_template));
        if !templated {
            self.target()?;
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RestoreOutputs {
    /// libpq connection string of the recovered server (a unix socket; no password)
    url: String,
    /// the database `url` names
    database: String,
    /// the base backup used (the source's id)
    backup: String,
    /// when that backup ended (RFC 3339)
    backup_ended: Option<String>,
    /// the tool behind the source and its version
    tool: String,
    /// what checking the backup's files said (pg_verifybackup), if they could be checked
    backup_check: Option<String>,
    /// the target as asked
    target: String,
    /// the server's own line saying where it stopped (none for latest)
    stop_line: Option<String>,
    /// the commit time of the last transaction replayed (RFC 3339): the point in time reached
    achieved_time: Option<String>,
    /// the same, as Unix seconds
    achieved_epoch: Option<f64>,
    /// the target time minus the achieved time, in seconds (time targets only)
    rpo_s: Option<f64>,
    /// pg_last_wal_replay_lsn() after promotion
    replay_lsn: String,
    /// the timeline the server promoted to
    new_timeline: Option<u32>,
    /// WAL segments fetched with restore_command
    segments_restored: u32,
    /// the last of them
    last_segment: Option<String>,
    /// MB (10^6 bytes) of WAL replayed
    replayed_mb: f64,
    /// replay rate, MB/s
    replay_mb_s: f64,
    /// seconds checking the backup (listing, pg_verifybackup)
    check_backup_s: f64,
    /// seconds writing the base backup into the data directory
    base_restore_s: f64,
    /// seconds from server start to promotion (WAL replay)
    replay_s: f64,
    /// when this step started, as Unix seconds (the start of the recovery time)
    started_epoch: f64,
    /// the recovered cluster's system identifier
    system_identifier: String,
    /// server_version of the throwaway
    server_version: String,
    /// what the recovered copy was compared with: source at the target (`expect`), base
    /// backup schema (`immediate`), or none (content unproven)
    #[field(ty = "source at the target|base backup schema|none")]
    ground_truth: String,
}

/// The source `w` names.
/// Another tool's source runs its calls, its version probes first, through `stop`; a
/// pg_basebackup folder and pgdrill's own base backups their pg_verifybackup and the probes
/// before it.
fn open_source(
    ctx: &StepCtx,
    w: &RestoreWith,
    stop: &crate::physical::tools::Interrupt,
) -> Result<Box<dyn PhysicalSource>, StepError> {
    match w.source.as_str() {
        "pg_basebackup" => Ok(Box::new(
            BasebackupFolder::new(
                ctx.local("backups", &w.backups)?,
                w.wal.as_deref().filter(|d| !d.is_empty()).map(|d| ctx.local("wal", d)).transpose()?,
            )
            .map_err(|e| e.at_field("backups"))?
            .interrupted_by(stop.clone()),
        )),
        "pgdrill" => {
            let storage = w.storage.as_deref().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                StepError::field("storage", "source pgdrill needs `storage`: where backup.base and `pgdrill wal push` write")
            })?;
            let key = w.key.as_deref().unwrap_or("");
            let system = match w.system_identifier.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => Some(s.parse::<u64>().map_err(|_| {
                    StepError::field("system_identifier", format!("`{s}` is not a system identifier (a number)"))
                })?),
                None => None,
            };
            let own = crate::physical::own::OwnSource::new(storage, &ctx.base_dir, key, system, &ctx.stores)
                .map_err(|e| e.at_field("storage"))?
                .interrupted_by(stop.clone());
            Ok(Box::new(own))
        }
        // Another tool's backups: `storage` is the location physical.verify takes, and must
        // name that tool (a pgBackRest location under `source: barman` is a mistake).
        tool @ ("pgbackrest" | "barman" | "barman-cloud") => {
            let location = w.storage.as_deref().map(str::trim).filter(|s| !s.is_empty()).ok_or_else(|| {
                StepError::field("storage", format!("source {tool} needs `storage`: the location of its backups (see physical.verify's `source`)"))
            })?;
            let scheme = match tool {
                "pgbackrest" => crate::physical::pgbackrest::SCHEME,
                "barman" => crate::physical::barman::SERVER_SCHEME,
                _ => crate::physical::barman::CLOUD_SCHEME,
            };
            if !location.starts_with(scheme) {
                return Err(StepError::field("storage", format!("source {tool} reads a location that starts with `{scheme}`")));
            }
            Ok(crate::physical::open_with(location, &ctx.stores, stop.clone()).map_err(|e| e.at_field("storage"))?)
        }
        other => Err(StepError::field("source", format!("unknown source `{other}`: {}", SOURCES.join(", ")))),
    }
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// Recover a physical backup to a point in time (time, LSN, xid, restore point, immediate, latest) in a throwaway
/// server and prove the target was reached.
#[step(kind = Restore, name = "pitr.restore", report_log)]
async fn restore(ctx: StepCtx, w: RestoreWith) -> Result<RestoreOutputs, StepError> {
    let started = OffsetDateTime::now_utc();
    let target = w.target().map_err(|e| StepError::field(e.path.clone(), e.message.clone()))?;
    // Read before anything is restored: a value or a file that holds no mark is the
    // runbook's mistake, never "unproven". A file is how the shipped `pitr` takes a mark
    // kept between the marking run and this one (`--var expect=FILE`).
    let expect: Option<Fingerprint> = match w.expect.as_ref() {
        None => None,
        Some(v) => crate::physical::mark::read(v, &ctx.base_dir)
            .map_err(|why| StepError::field("expect", why))?
            .map(|m| m.fingerprint),
    };
    // Watched before the source opens: a tool's version probes run through it too.
    let stop = crate::physical::tools::Interrupt::default();
    let _watch = stop.watch(ctx.cancel.clone());
    let source = open_source(&ctx, &w, &stop)?;
    ctx.log(format!("recovering {} to {target}", source.describe()));
    let opts = PitrOptions {
        backup: w.backup.clone().filter(|b| !b.is_empty()),
        listed: None,
        recover: RecoverOptions {
            target: target.clone(),
            bin_dir: w.bin_dir.as_deref().map(|d| ctx.local("bin_dir", d)).transpose()?,
            user: w.user.clone(),
            database: w.database.clone(),
            timeout: w.timeout,
            marker: w.marker.clone().filter(|m| !m.is_empty()),
            ..Default::default()
        },
    };
    let p = pitr::run(source.as_ref(), opts).await?;
    let f = &p.server.facts;
    // A version text usually names its tool already (`pg_basebackup (PostgreSQL) 15.18`).
    let tool = if p.tool.version.starts_with(&p.tool.name) {
        p.tool.version.clone()
    } else {
        format!("{} {}", p.tool.name, p.tool.version).trim().to_string()
    };
    ctx.log(format!("base backup {} ({tool}), {} restored in {:.1} s", p.backup.describe(), crate::util::human_bytes(p.base_bytes), p.phases.base_restore.as_secs_f64()));
    if let Some(c) = &p.backup_check {
        ctx.log(c.clone());
    }
    for line in &f.evidence {
        ctx.log(format!("server: {line}"));
    }
    let achieved = f.achieved_time;
    let rpo = match &target.kind {
        TargetKind::Time(t) => pitr::rpo_seconds(*t, achieved),
        _ => None,
    };
    ctx.log(format!(
        "target reached: {}; replayed to {} ({} segments, {:.1} MB at {:.1} MB/s in {:.1} s){}",
        f.stop_line.as_deref().unwrap_or("end of the archive"),
        f.replay_lsn,
        f.segments_restored,
        f.replayed_bytes as f64 / 1e6,
        f.replay_mb_s,
        f.replay.as_secs_f64(),
        achieved.map(|a| format!("; the data is as of {}", rfc3339(a))).unwrap_or_default()
    ));
    ctx.fact(crate::facts::Fact::Server { version: f.server_version.clone() });
    let database = p.server.database.clone();
    let truth = match (expect, &target.kind) {
        (Some(f), _) => Some(Truth::SourceAtTarget(f)),
        (None, TargetKind::Immediate) => {
            tokio::task::block_in_place(|| source.schema_at_end(&p.backup, &database))?.map(Truth::BackupSchema)
        }
        (None, _) => None,
    };
    let ground_truth = match &truth {
        Some(t) => {
            ctx.fact(crate::facts::Fact::GroundTruth { basis: t.name().into() });
            let diffs = pitr::differences(&p.server.url(), t).await?;
            if !diffs.is_empty() {
                let shown: Vec<&str> = diffs.iter().take(10).map(String::as_str).collect();
                return Err(StepError::failed(format!(
                    "recovered to {target}, but database {database:?} differs from the {}: {} difference{}: {}{}",
                    t.name(),
                    diffs.len(),
                    if diffs.len() == 1 { "" } else { "s" },
                    shown.join("; "),
                    if diffs.len() > 10 { "; ..." } else { "" }
                )));
            }
            ctx.log(match t {
                Truth::SourceAtTarget(f) => format!(
                    "ground truth: the source at the target: schema and {} tables' rows of {database:?} match",
                    f.tables.len()
                ),
                Truth::BackupSchema(_) => {
                    format!("ground truth: the base backup's schema of {database:?} when it ended: it matches")
                }
            });
            t.name().to_string()
        }
        None => {
            ctx.fact(crate::facts::Fact::GroundTruth { basis: "none".into() });
            ctx.log(
                "schema unproven: no fingerprint of the source at this target (give `expect:`, pitr.mark's \
                 fingerprint), and only a recovery to `immediate` has the base backup's own schema to compare with",
            );
            "none".to_string()
        }
    };
    ctx.fact(crate::facts::Fact::PointInTime { target: f.target.clone() });
    // The base backup this recovery proved, for the report's backups tested: by the source
    // and its id (other tools' backups have no single file), with its end as its time.
    let age = p.backup.ended.map(|e| ((OffsetDateTime::now_utc() - e).as_seconds_f64() * 1000.0).round() / 1000.0);
    ctx.fact(crate::facts::Fact::Backup {
        role: crate::facts::BackupRole::Picked,
        path: format!("{} {}", source.describe(), p.backup.id).into(),
        sha256: serde_json::Value::Null,
        size: p.backup.size.into(),
        created: p.backup.ended.map(rfc3339).into(),
        age_s: age.into(),
    });
    ctx.fact(crate::facts::Fact::Verified);
    recovery_evidence(&ctx, source.as_ref(), &p);
    ctx.fact(crate::facts::Fact::Database { name: p.server.database.clone() });
    let out = RestoreOutputs {
        url: p.server.url(),
        database: p.server.database.clone(),
        backup: p.backup.id.clone(),
        backup_ended: p.backup.ended.map(rfc3339),
        tool,
        backup_check: p.backup_check.clone(),
        target: f.target.clone(),
        stop_line: f.stop_line.clone(),
        achieved_time: achieved.map(rfc3339),
        achieved_epoch: achieved.map(|a| a.unix_timestamp_nanos() as f64 / 1e9),
        rpo_s: rpo.map(|r| (r * 1000.0).round() / 1000.0),
        replay_lsn: f.replay_lsn.to_string(),
        new_timeline: f.new_timeline,
        segments_restored: f.segments_restored,
        last_segment: f.last_segment.clone(),
        replayed_mb: (f.replayed_bytes as f64 / 1e3).round() / 1e3,
        replay_mb_s: (f.replay_mb_s * 1000.0).round() / 1000.0,
        check_backup_s: secs(p.phases.check_backup),
        base_restore_s: secs(p.phases.base_restore),
        replay_s: secs(p.phases.replay),
        started_epoch: started.unix_timestamp_nanos() as f64 / 1e9,
        system_identifier: f.system_identifier.to_string(),
        server_version: f.server_version.clone(),
        ground_truth,
    };
    let unproven = (out.ground_truth == "none").then(|| (target.to_string(), out.database.clone()));
    hand_over(
        &ctx,
        p.server,
        out,
        unproven,
        "Give `expect:` (pitr.mark's fingerprint taken on the source at the target, or a file holding it: --var expect=FILE of the shipped pitr), recover to `immediate` (the base backup's own schema), or accept unproven content explicitly (accept_unproven: true; --var accept_unproven=true)",
        w.accept_unproven,
    )
}

/// How a recovery step ends (pitr.restore, physical.verify): the recovered server is handed
/// to the run, up for the runbook's checks (amcheck, counts) and stopped and removed when
/// the run ends; then its content is judged. `unproven` (the target and the database) when
/// nothing to compare it with was given (`ground_truth: none`): the recovery is proven, what
/// the database holds is not, "restorable, content unproven", a failure unless the run
/// accepted it (unset is a refusal: a green run needs a ground truth or the run's word) and
/// never a pass; `remedy` says how to give one.
pub(super) fn hand_over<O: Serialize>(
    ctx: &StepCtx,
    server: Recovered,
    out: O,
    unproven: Option<(String, String)>,
    remedy: &str,
    accept_unproven: Option<bool>,
) -> Result<O, StepError> {
    ctx.resources.push(format!("recovered server of step `{}`", ctx.step), Box::new(Stopped(server, Recovered::stop)));
    let Some((target, database)) = unproven else {
        return Ok(out);
    };
    let why = format!(
        "restorable, content unproven: the recovery to {target} is proven, but database {database:?}'s schema and rows were compared with nothing"
    );
    Err(super::verify::unproven(ctx, Some(&out), why, remedy, Some(accept_unproven.unwrap_or(false))))
}

/// Tell the evidence what a recovery proved (`Fact::Physical`), that its server was a
/// throwaway this run started, and what the backup says of its source: the base backup and
/// the WAL range replayed by their sha256 where the source records one, and the target with
/// the server's own word that it was reached. A digest that cannot be read costs only the
/// digest (said in the log): the recovery's proof stands on its own. Returns the base
/// backup's sha256, when the source keeps one.
pub(crate) fn recovery_evidence(ctx: &StepCtx, source: &dyn PhysicalSource, p: &pitr::Pitr) -> Option<String> {
    use crate::facts::{Artefact, Fact, PhysicalFact, RecoveryProof};
    let f = &p.server.facts;
    let base = match tokio::task::block_in_place(|| source.digest(&p.backup)) {
        Ok(Some((name, sha))) => Artefact { name, sha256: Some(sha) },
        Ok(None) => Artefact { name: format!("{} {}", source.describe(), p.backup.id), sha256: None },
        Err(e) => {
            ctx.log(format!("evidence: no sha256 of base backup {}: {}", p.backup.id, e.message));
            Artefact { name: format!("{} {}", source.describe(), p.backup.id), sha256: None }
        }
    };
    let segment = |name: Option<&String>| -> Option<Artefact> {
        let name = name.filter(|n| crate::physical::source::parse_segment_name(n, 1 << 24).is_some())?;
        let sha256 = match tokio::task::block_in_place(|| source.wal_sha256(&p.backup, name)) {
            Ok(s) => s,
            Err(e) => {
                ctx.log(format!("evidence: no sha256 of WAL segment {name}: {}", e.message));
                None
            }
        };
        Some(Artefact { name: name.clone(), sha256 })
    };
    let wal_first = segment(f.first_segment.as_ref());
    let wal_last = segment(f.last_segment.as_ref());
    let recorded = [&wal_first, &wal_last].iter().any(|a| a.as_ref().is_some_and(|a| a.sha256.is_some()));
    let tool = if p.tool.version.is_empty() { p.tool.name.clone() } else { p.tool.version.clone() };
    let system = p.backup.system_identifier.map(|s| s.to_string());
    let base_sha256 = base.sha256.clone();
    ctx.fact(Fact::Physical(Box::new(PhysicalFact {
        tool,
        base,
        system_identifier: system.clone(),
        wal_first,
        wal_last,
        wal_segments: Some(f.segments_restored),
        wal_from_lsn: f.redo_start.or(p.backup.start_lsn).map(|l| l.to_string()),
        wal_to_lsn: Some(f.replay_lsn.to_string()),
        wal_basis: match (recorded, p.tool.name.as_str()) {
            (true, "pgdrill") => "pgdrill archive",
            (true, _) => "archive folder",
            (false, _) => "server log",
        }
        .into(),
        recovery: Some(RecoveryProof {
            target: f.target.clone(),
            // Recovery returns only once the proof held (`physical::recover`).
            reached: true,
            stop_line: f.stop_line.clone(),
            achieved_time: f.achieved_time.map(rfc3339),
            replay_lsn: f.replay_lsn.to_string(),
            new_timeline: f.new_timeline,
            marker: f.marker,
            server_log: f.evidence.clone(),
        }),
    })));
    // The recovered server is a copy of the source's data directory, so it shares the
    // source's system identifier: what sets it apart is where it runs (a socket of its own
    // in a workspace this run made, no TCP listener).
    ctx.fact(Fact::Throwaway {
        provider: "recovery".into(),
        version: f.server_version.clone(),
        system_identifier: Some(f.system_identifier.to_string()),
        host: crate::pg::server_id(&p.server.url()).ok(),
    });
    if system.is_some() {
        ctx.fact(Fact::Source { system_identifier: system, host: None });
    }
    base_sha256
}

/// A server whose `stop` blocks (a fast shutdown, then its workspace removed), torn down off
/// the async workers: `Stopped(server, Server::stop)`, for a recovered server and an
/// archiving source alike.
struct Stopped<T>(T, fn(T));

impl<T: Send + 'static> Teardown for Stopped<T> {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        let Stopped(server, stop) = *self;
        Box::pin(async move { tokio::task::block_in_place(move || stop(server)) })
    }
}

// ---------------------------------------------------------------------------------------
// pitr.source

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SourceWith {
    /// the folder each WAL segment is copied into (archive_command = cp)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    archive: Option<String>,
    /// an archive_command instead of the copy into `archive` (e.g. `pgdrill wal push %p`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    archive_command: Option<String>,
    /// pgdrill's own WAL archive to push into (`pgdrill wal push` as archive_command): a
    /// folder, s3://, gs://, az://; instead of the copy into `archive`
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    storage: Option<String>,
    /// with `storage`: the key or passphrase the WAL archive is sealed with
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(key)]
    key: Option<String>,
    /// archive_timeout: a segment at least this often under load (default 1s)
    #[serde(default, deserialize_with = "super::de::opt_duration")]
    archive_timeout: Option<Duration>,
    /// PostgreSQL major, e.g. 15 (default: the newest installed); a major without local binaries runs in its Docker image
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "major version")]
    version: Option<String>,
    /// database to create (default postgres)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
}

impl With for SourceWith {
    fn check(&self) -> Result<(), WithError> {
        let none = |v: &Option<String>| v.as_deref().is_none_or(str::is_empty);
        if none(&self.archive) && none(&self.archive_command) && none(&self.storage) {
            return Err(WithError::new(
                "archive",
                "give `archive` (a folder), `storage` (pgdrill's WAL archive) or `archive_command`",
            ));
        }
        if !none(&self.storage) && none(&self.key) {
            return Err(WithError::new("key", "pgdrill's WAL archive is always encrypted: give `key` with `storage`"));
        }
        Ok(())
    }
}

super::ephemeral::serving! {
    /// its port
    port,
    pub struct SourceOutputs {
        /// the archive_command in force
        archive_command: String,
        /// major version
        major: u32,
        /// directory with the server's binaries (pg_basebackup is there; inside its image when it runs in Docker)
        bin_dir: String,
    }
}

/// Start a throwaway source server (local binaries, or its major's Docker image) that archives its WAL, for point-in-time recovery drills.
#[step(kind = Source, name = "pitr.source")]
async fn source(ctx: StepCtx, w: SourceWith) -> Result<SourceOutputs, StepError> {
    let major = w
        .version
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(crate::pg::ephemeral::parse_major)
        .transpose()
        .map_err(|e| e.at_field("version"))?;
    let opts = ArchivingOptions {
        archive_dir: w.archive.as_deref().filter(|a| !a.is_empty()).map(|a| ctx.local("archive", a)).transpose()?,
        archive_command: w.archive_command.clone().filter(|c| !c.is_empty()),
        // A folder made absolute: the server runs `wal push` in its data directory.
        wal_archive: w.storage.as_deref().filter(|l| !l.is_empty()).map(|l| WalArchive {
            location: match crate::storage::local_dir_in(l, &ctx.base_dir) {
                Some(p) => std::path::absolute(&p).unwrap_or(p).display().to_string(),
                None => l.trim().to_string(),
            },
            secret: w.key.clone().unwrap_or_default(),
            exe: None,
        }),
        archive_timeout: w.archive_timeout,
        major,
        bin_dir: None,
        database: w.database.clone(),
    };
    let s = ArchivingServer::start(opts).await?;
    ctx.redactor.add(&s.password);
    let image = s.image.as_deref().map(|i| format!(" (in Docker, image {i})")).unwrap_or_default();
    ctx.log(format!("PostgreSQL {} on 127.0.0.1:{}{image}, archive_command {}", s.major, s.port, s.archive_command));
    // The drill's source, for the evidence's segregation check of the recovery.
    let (system_identifier, host) = super::ephemeral::identity(&s.url()).await;
    ctx.fact(crate::facts::Fact::Source { system_identifier, host });
    ctx.fact(crate::facts::Fact::Database { name: s.database.clone() });
    let out = SourceOutputs {
        url: s.url(),
        host: "127.0.0.1".into(),
        port: s.port,
        user: s.user.clone(),
        password: s.password.clone(),
        database: s.database.clone(),
        archive_command: s.archive_command.clone(),
        major: s.major,
        bin_dir: s.bin_dir.display().to_string(),
    };
    ctx.resources.push(format!("archiving source server of step `{}`", ctx.step), Box::new(Stopped(s, ArchivingServer::stop)));
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// pitr.mark

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct MarkWith {
    /// connection URL of the source database to mark (a superuser's, for the restore point)
    #[field(secret)]
    url: String,
    /// also create a restore point of this name at the mark (empty: none)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    restore_point: Option<String>,
    /// per-table row counts only (default) or content hashes too
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "counts|full")]
    mode: Option<String>,
}

impl With for MarkWith {
    fn check(&self) -> Result<(), WithError> {
        match self.mode.as_deref().filter(|m| !m.is_empty() && !is_template(m)) {
            None | Some("counts" | "full") => Ok(()),
            Some(m) => Err(WithError::new("mode", format!("unknown mode `{m}`: counts or full"))),
        }
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct MarkOutputs {
    /// the marked instant, as PostgreSQL writes it: a `target_time` (exclusive) for pitr.restore
    time: String,
    /// the same, as Unix seconds
    epoch: f64,
    /// the WAL location of the mark (the restore point's, when one was made)
    lsn: String,
    /// the restore point made at the mark, if any
    restore_point: Option<String>,
    /// the source's schema and per-table rows at the mark: pitr.restore's `expect`
    #[field(ty = "map")]
    fingerprint: serde_json::Value,
    /// tables counted
    tables: usize,
    /// rows in them
    rows: i64,
    /// unlogged tables, left out (recovery brings them back empty)
    unlogged: Vec<String>,
}

/// Mark a point to recover to on a source: its time, WAL location and restore point, with the schema and per-table rows
/// there (the ground truth for pitr.restore's expect).
#[step(kind = MarkStep, name = "pitr.mark")]
async fn mark(ctx: StepCtx, w: MarkWith) -> Result<MarkOutputs, StepError> {
    let mode = match w.mode.as_deref().filter(|m| !m.is_empty()) {
        None | Some("counts") => Mode::Counts,
        Some("full") => Mode::Full,
        Some(m) => return Err(StepError::field("mode", format!("unknown mode `{m}`: counts or full"))),
    };
    let name = w.restore_point.as_deref().filter(|n| !n.is_empty());
    let m = crate::physical::archiving::mark(&w.url, name, mode).await?;
    let rows: i64 = m.fingerprint.tables.values().map(|t| t.rows).sum();
    ctx.log(format!(
        "marked at {} (WAL {}){}: {} tables, {rows} rows, schema {}",
        m.time,
        m.lsn,
        name.map(|n| format!(", restore point {n:?}")).unwrap_or_default(),
        m.fingerprint.tables.len(),
        &m.fingerprint.schema_hash[..12.min(m.fingerprint.schema_hash.len())]
    ));
    if !m.unlogged.is_empty() {
        ctx.log(format!("unlogged, not counted (recovery empties them): {}", m.unlogged.join(", ")));
    }
    Ok(MarkOutputs {
        time: m.time,
        epoch: m.epoch,
        lsn: m.lsn,
        restore_point: m.restore_point,
        tables: m.fingerprint.tables.len(),
        rows,
        fingerprint: serde_json::to_value(&m.fingerprint).unwrap_or_default(),
        unlogged: m.unlogged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_times_are_read_in_three_spellings() {
        let a = parse_time("2026-12-06T07:00:00Z");
        assert!(a.is_some());
        assert_eq!(parse_time("2026-12-06 07:00:00+00"), a);
        assert_eq!(parse_time("1796540400"), a);
        assert_eq!(parse_time("yesterday"), None);
    }

    /// Regression: `target_time: NaN` was read as Unix second 0 (1970), and a time without
    /// its zone must be refused, never guessed.
    #[test]
    fn a_target_time_that_is_no_time_or_has_no_zone_is_refused() {
        for t in ["NaN", "nan", "inf", "-inf", "1e400", "2026-12-06 07:00:00", "2026-12-06T07:00:00", "07:00:00+00"] {
            assert_eq!(parse_time(t), None, "{t}");
        }
        let a = parse_time("2026-12-06T07:00:00Z");
        assert_eq!(parse_time("2026-12-06T09:00:00+02:00"), a);
        assert_eq!(parse_time("2026-12-06 01:30:00-05:30"), a);
    }
}
