//! Drills: `fixtures.load`, `drill.workspace`, `drill.heartbeat`, `drill.disaster`,
//! `drill.rto` and `drill.rpo`.
//!
//! RTO is measured from the disaster to verified service; RPO from the data: the disaster
//! time minus the newest heartbeat row found in the restored database, never the backup's
//! age.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

use super::{pg_error, rfc3339, BoxFuture, Fields, step, StepCtx, StepError, Teardown, With, WithError};
use crate::error::Class;
use crate::pg::native::quote_ident;

fn now_epoch() -> f64 {
    OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9
}

fn secs(d: f64) -> String {
    format!("{d:.1} s")
}

/// A table name, optionally schema-qualified, quoted for SQL.
fn qualified(name: &str) -> String {
    name.split('.').map(quote_ident).collect::<Vec<_>>().join(".")
}

// ---------------------------------------------------------------------------------------
// fixtures.load

/// The fixtures shipped in the binary (fixtures/sql/*.sql), by name.
pub const FIXTURES: &[(&str, &str)] = &[
    ("erp", include_str!("../../../fixtures/sql/erp.sql")),
    ("crm", include_str!("../../../fixtures/sql/crm.sql")),
    ("payments", include_str!("../../../fixtures/sql/payments.sql")),
    ("types", include_str!("../../../fixtures/sql/types.sql")),
    // Not loaded by default: it needs contrib extensions (hstore, citext, pgcrypto, btree_gist).
    ("edge", include_str!("../../../fixtures/sql/edge.sql")),
];

/// What `fixtures.load` loads when `fixtures:` is not given.
const DEFAULT_FIXTURES: &[&str] = &["erp", "crm", "payments", "types"];

/// A fixture's SQL with psql's `:scale` replaced.
pub fn fixture_sql(text: &str, scale: u32) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(":scale") {
        let after = &rest[i + 6..];
        let prev = rest[..i].chars().last();
        let ident_follows = after.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_');
        out.push_str(&rest[..i]);
        if prev == Some(':') || ident_follows {
            out.push_str(":scale");
        } else {
            out.push_str(&scale.to_string());
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct FixturesWith {
    /// database to load into
    #[field(conninfo)]
    url: String,
    /// erp, crm, payments, types (the default), edge (objects dumps and fingerprints get
    /// wrong; needs contrib) or .sql paths using psql's :scale
    #[serde(default = "all_fixtures")]
    fixtures: Vec<String>,
    /// size multiplier (default 1)
    #[serde(default = "one", deserialize_with = "super::de::int")]
    scale: u32,
}

/// The largest fixture scale: about 100 GB of data.
const MAX_SCALE: u32 = 100_000;

fn all_fixtures() -> Vec<String> {
    DEFAULT_FIXTURES.iter().map(|n| n.to_string()).collect()
}
fn one() -> u32 {
    1
}

impl With for FixturesWith {
    fn check(&self) -> Result<(), WithError> {
        if self.scale == 0 {
            return Err(WithError::new("scale", "scale must be at least 1"));
        }
        // Scale 1 is about 1 MB: beyond this the load would fill any disk before it ended.
        if self.scale > MAX_SCALE {
            return Err(WithError::new(
                "scale",
                format!("scale {} is more than {MAX_SCALE} (about 1 MB each)", self.scale),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct FixturesOutputs {
    /// user tables afterwards
    tables: i64,
    /// rows in them (estimate from statistics)
    rows: i64,
    /// database size afterwards
    size_bytes: i64,
}

/// Load deterministic fixture data (ERP, CRM with mixed-case names, payments, one table per column type) at a scale;
/// scale 1 is about 1 MB.
#[step(kind = FixturesLoad, name = "fixtures.load")]
async fn load_fixtures(ctx: StepCtx, w: FixturesWith) -> Result<FixturesOutputs, StepError> {
    let client = crate::pg::connect(&w.url).await?;
    for f in &w.fixtures {
        let text = match FIXTURES.iter().find(|(n, _)| n == f) {
            Some((_, t)) => t.to_string(),
            None if f.ends_with(".sql") => {
                let p = ctx.local("fixtures", f)?;
                std::fs::read_to_string(&p).map_err(|e| StepError::invalid(format!("fixture {}: {e}", p.display())))?
            }
            None => {
                let names: Vec<&str> = FIXTURES.iter().map(|(n, _)| *n).collect();
                return Err(StepError::invalid(format!(
                    "no fixture `{f}`: the shipped ones are {}, or give a path ending in .sql",
                    names.join(", ")
                )));
            }
        };
        let started = std::time::Instant::now();
        client
            .batch_execute(&format!("begin;\n{}\ncommit;", fixture_sql(&text, w.scale)))
            .await
            .map_err(|e| StepError::failed(format!("fixture `{f}`: {}", crate::pg::describe(&e))))?;
        ctx.log(format!("loaded {f} at scale {} in {:.1}s", w.scale, started.elapsed().as_secs_f64()));
    }
    client.batch_execute("analyze").await.map_err(pg_error)?;
    let row = client
        .query_one(
            "select count(*), coalesce(sum(n_live_tup), 0)::bigint, pg_database_size(current_database()) \
                 from pg_stat_user_tables",
            &[],
        )
        .await
        .map_err(pg_error)?;
    Ok(FixturesOutputs { tables: row.get(0), rows: row.get(1), size_bytes: row.get(2) })
}

// ---------------------------------------------------------------------------------------
// drill.workspace

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceWith {
    /// use this directory (created; kept) instead of a temporary one
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    dir: Option<String>,
    /// keep the temporary directory afterwards
    #[serde(default, deserialize_with = "super::de::boolean")]
    keep: bool,
}

impl With for WorkspaceWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct WorkspaceOutputs {
    /// the directory
    #[field(ty = "path")]
    path: String,
    /// a random 256-bit key (hex), masked everywhere
    #[field(secret)]
    key: String,
}

struct RemoveDir(PathBuf);

impl Teardown for RemoveDir {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let _ = tokio::fs::remove_dir_all(&self.0).await;
        })
    }
}

/// A private directory for a drill's backups, removed when the runbook ends (unless `keep`), and a generated backup
/// key.
#[step(kind = Workspace, name = "drill.workspace")]
async fn workspace(ctx: StepCtx, w: WorkspaceWith) -> Result<WorkspaceOutputs, StepError> {
    let path = match &w.dir {
        Some(d) => {
            let p = ctx.local("dir", d)?;
            std::fs::create_dir_all(&p)
                .map_err(|e| StepError::environment(format!("creating {}: {e}", p.display())))?;
            p
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("pgdrill-drill-")
                .tempdir()
                .map_err(|e| StepError::environment(format!("creating a temporary directory: {e}")))?;
            let p = t.keep();
            if !w.keep {
                ctx.resources.push(format!("workspace {}", p.display()), Box::new(RemoveDir(p.clone())));
            }
            p
        }
    };
    let key: String = crate::archive::crypto::random::<32>().iter().map(|b| format!("{b:02x}")).collect();
    ctx.redactor.add(&key);
    ctx.log(format!("workspace {}", path.display()));
    Ok(WorkspaceOutputs { path: path.display().to_string(), key })
}

// ---------------------------------------------------------------------------------------
// drill.heartbeat

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatWith {
    /// database to write into
    #[field(conninfo)]
    url: String,
    /// time between rows (default 1s)
    #[serde(default = "second", deserialize_with = "super::de::duration")]
    interval: Duration,
    /// table to create and fill (default pgdrill_heartbeat)
    #[serde(default = "heartbeat_table")]
    table: String,
}

fn second() -> Duration {
    Duration::from_secs(1)
}
fn heartbeat_table() -> String {
    "pgdrill_heartbeat".into()
}

impl With for HeartbeatWith {
    fn check(&self) -> Result<(), WithError> {
        if self.interval < Duration::from_millis(10) {
            return Err(WithError::new("interval", "interval must be at least 10ms"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct HeartbeatOutputs {
    /// the table
    table: String,
    /// the interval in seconds
    interval_s: f64,
    /// when the first row was written
    started_at: String,
}

/// The writer task; stopped when the runbook ends.
struct HeartbeatWriter {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Teardown for HeartbeatWriter {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            self.stop.cancel();
            let _ = self.task.await;
        })
    }
}

/// Write a row with its commit timestamp at a fixed rate until the runbook ends: the marker RPO is measured with.
#[step(kind = Heartbeat, name = "drill.heartbeat")]
async fn heartbeat(ctx: StepCtx, w: HeartbeatWith) -> Result<HeartbeatOutputs, StepError> {
    let table = qualified(&w.table);
    let client = crate::pg::connect(&w.url).await?;
    client
            .batch_execute(&format!(
                "create table if not exists {table} (id bigserial primary key, at timestamptz not null default clock_timestamp()); \
                 insert into {table} default values"
            ))
            .await
            .map_err(pg_error)?;
    let started = OffsetDateTime::now_utc();
    let stop = CancellationToken::new();
    let (stop2, url, interval) = (stop.clone(), w.url.clone(), w.interval);
    let insert = format!("insert into {table} default values");
    let task = tokio::spawn(async move {
        let mut client = Some(client);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop2.cancelled() => break,
                _ = tick.tick() => {}
            }
            if client.as_ref().is_none_or(|c| c.is_closed()) {
                // After a disaster the database is gone; keep trying quietly until stopped.
                client = crate::pg::connect(&url).await.ok();
            }
            if let Some(c) = &client {
                let _ = c.batch_execute(&insert).await;
            }
        }
    });
    ctx.resources.push(format!("heartbeat writer ({table})"), Box::new(HeartbeatWriter { stop, task }));
    ctx.log(format!("writing a row into {table} every {}", humantime::format_duration(w.interval)));
    Ok(HeartbeatOutputs { table: w.table.clone(), interval_s: w.interval.as_secs_f64(), started_at: rfc3339(started) })
}

// ---------------------------------------------------------------------------------------
// drill.disaster

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct DisasterWith {
    /// what happens
    #[field(ty = "drop_database|destroy_server")]
    mode: String,
    /// the victim's URL
    #[field(conninfo)]
    url: String,
    /// drop_database: which (default: the URL's)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    /// destroy_server: the data directory (default: the server's data_directory setting)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    data_dir: Option<String>,
}

impl With for DisasterWith {
    fn check(&self) -> Result<(), WithError> {
        if !crate::template::is_template(&self.mode)
            && !["drop_database", "destroy_server"].contains(&self.mode.as_str())
        {
            return Err(WithError::new(
                "mode",
                format!("unknown mode `{}`: drop_database or destroy_server", self.mode),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct DisasterOutputs {
    /// when the disaster happened (RFC 3339)
    at: String,
    /// the same, as Unix seconds
    at_epoch: f64,
}

/// Inject a disaster and record when: drop the database, or stop the server (immediate) and delete its data directory.
#[step(kind = Disaster, name = "drill.disaster", report_log)]
async fn disaster(ctx: StepCtx, w: DisasterWith) -> Result<DisasterOutputs, StepError> {
    let cfg = crate::pg::config(&w.url).map_err(|e| e.in_class(Class::Invalid))?;
    let at = match w.mode.as_str() {
        "drop_database" => {
            let db = w.database.clone().or_else(|| cfg.get_dbname().map(str::to_string)).unwrap_or_default();
            let admin = crate::pg::connect_to(&w.url, "postgres").await?;
            let at = OffsetDateTime::now_utc();
            admin
                .batch_execute(&format!("drop database {} with (force)", quote_ident(&db)))
                .await
                .map_err(|e| StepError::failed(format!("dropping {db}: {}", crate::pg::describe(&e))))?;
            ctx.log(format!("dropped database {db} at {}", rfc3339(at)));
            at
        }
        _ => {
            let client = crate::pg::connect(&w.url).await?;
            let dir = match &w.data_dir {
                Some(d) => PathBuf::from(d),
                None => PathBuf::from(
                    client
                        .query_one("select setting from pg_settings where name = 'data_directory'", &[])
                        .await
                        .map_err(pg_error)?
                        .get::<_, String>(0),
                ),
            };
            std::fs::metadata(dir.join("postmaster.pid")).map_err(|e| {
                StepError::environment(format!(
                    "destroy_server needs the server's data directory on this machine: {}: {e}",
                    dir.display()
                ))
            })?;
            // The pid in postmaster.pid is signalled only when that process works in this
            // directory: a container's postmaster.pid names a pid of its own namespace.
            let Some(postmaster) = crate::pg::native::live_postmaster(&dir) else {
                return Err(StepError::environment(format!(
                    "no server of this machine runs in {} (its postmaster.pid names no process working there: a server in a container, or one already gone); destroy_server stops only a server whose data directory is on this machine",
                    dir.display()
                )));
            };
            let pid = postmaster.as_raw();
            let at = OffsetDateTime::now_utc();
            // An immediate stop, as a crash: no checkpoint, clients cut off.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGQUIT);
            let mut exited = false;
            for _ in 0..500 {
                if has_exited(pid) {
                    exited = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            std::fs::remove_dir_all(&dir)
                .map_err(|e| StepError::environment(format!("deleting {}: {e}", dir.display())))?;
            if exited {
                ctx.log(format!("stopped the server (pid {pid}) and deleted {} at {}", dir.display(), rfc3339(at)));
            } else {
                ctx.log(format!(
                    "the server (pid {pid}) had not exited 5 s after SIGQUIT; deleted {} anyway at {}",
                    dir.display(),
                    rfc3339(at)
                ));
            }
            at
        }
    };
    Ok(DisasterOutputs { at: rfc3339(at), at_epoch: at.unix_timestamp_nanos() as f64 / 1e9 })
}

/// Whether the process `pid` has ended. A server pgdrill started itself (the native
/// provider) is its child: once dead it stays a zombie that `kill(pid, 0)` still finds, which
/// made every `destroy_server` wait its full 5 s and put them into the RTO. So it is asked as
/// its parent, with `WNOWAIT`: that sees the death at once and leaves the zombie for the
/// server's own handle to reap at teardown, so its pid cannot be reused by another process
/// while that handle still holds it. A server another process started (not our child) is
/// gone when no signal reaches it.
fn has_exited(pid: i32) -> bool {
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        Err(_) => !crate::child::is_alive(pid),
    }
}

// ---------------------------------------------------------------------------------------
// drill.rto

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RtoWith {
    /// the disaster (drill.disaster's at_epoch)
    #[serde(deserialize_with = "super::de::number")]
    since: f64,
    /// the RTO target; exceeding it fails
    #[serde(deserialize_with = "super::de::duration")]
    target: Duration,
    /// phase name -> seconds (steps' duration_s)
    #[serde(default)]
    phases: BTreeMap<String, serde_json::Value>,
}

impl With for RtoWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RtoOutputs {
    /// measured RTO
    rto_s: f64,
    /// the target
    target_s: f64,
    /// the breakdown
    phases: BTreeMap<String, f64>,
}

fn phase_text(phases: &BTreeMap<String, f64>) -> String {
    phases.iter().map(|(k, v)| format!("{k} {}", secs(*v))).collect::<Vec<_>>().join(", ")
}

/// Recovery time: from the disaster to now (verified service), with a per-phase breakdown, against its target.
#[step(kind = Rto, name = "drill.rto", report_log, measures_rto)]
async fn rto(ctx: StepCtx, w: RtoWith) -> Result<RtoOutputs, StepError> {
    let rto = (now_epoch() - w.since).max(0.0);
    let phases: BTreeMap<String, f64> = w
        .phases
        .iter()
        .map(|(k, v)| {
            let s = v.as_f64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or(0.0);
            (k.clone(), s)
        })
        .collect();
    // `run --rto` is the drill's recovery objective: it replaces the step's own target.
    let target_d = ctx.rto_objective.unwrap_or(w.target);
    let target = target_d.as_secs_f64();
    let out = RtoOutputs { rto_s: (rto * 1000.0).round() / 1000.0, target_s: target, phases: phases.clone() };
    // Kept and reported even when the target is missed, so as the map later steps read.
    let o = super::outputs_of(&out)?;
    let msg = format!(
        "RTO {} (target {}){}",
        secs(rto),
        humantime::format_duration(target_d),
        if phases.is_empty() { String::new() } else { format!(": {}", phase_text(&phases)) }
    );
    ctx.log(msg.clone());
    for (k, v) in &o {
        ctx.keep(k, v.clone());
    }
    ctx.fact(crate::facts::Fact::Objective {
        objective: crate::facts::Objective::Rto,
        measured_s: o["rto_s"].clone(),
        target_s: o["target_s"].clone(),
        phases: Some(o["phases"].clone()),
    });
    if rto > target {
        return Err(StepError::failed(format!(
            "RTO {} exceeds the budget rto={} ({})",
            secs(rto),
            humantime::format_duration(target_d),
            phase_text(&phases)
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// drill.rpo

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct RpoWith {
    /// the restored database
    #[field(conninfo)]
    url: String,
    /// drill.disaster's at_epoch
    #[serde(deserialize_with = "super::de::number")]
    disaster_at: f64,
    /// the RPO target; exceeding it fails
    #[serde(deserialize_with = "super::de::duration")]
    target: Duration,
    /// heartbeat table (default pgdrill_heartbeat)
    #[serde(default = "heartbeat_table")]
    table: String,
}

impl With for RpoWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RpoOutputs {
    /// measured RPO
    rpo_s: f64,
    /// the newest heartbeat restored
    newest: String,
    /// the target
    target_s: f64,
}

/// Data loss measured from the data: the disaster time minus the newest heartbeat in the restored database, against its
/// target.
#[step(kind = Rpo, name = "drill.rpo", report_log)]
async fn rpo(ctx: StepCtx, w: RpoWith) -> Result<RpoOutputs, StepError> {
    let client = crate::pg::connect(&w.url).await?;
    let row = client
            .query_one(
                &format!(
                    "select extract(epoch from max(at))::float8, to_char(max(at) at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), count(*) from {}",
                    qualified(&w.table)
                ),
                &[],
            )
            .await
            .map_err(|e| StepError::failed(format!("reading heartbeats from {}: {}", w.table, crate::pg::describe(&e))))?;
    let (Some(newest), Some(newest_text)) = (row.get::<_, Option<f64>>(0), row.get::<_, Option<String>>(1)) else {
        return Err(StepError::failed(format!("no heartbeat row in the restored {}: RPO cannot be measured", w.table)));
    };
    let rpo = (w.disaster_at - newest).max(0.0);
    let target = w.target.as_secs_f64();
    ctx.log(format!(
        "RPO {} (target {}): newest heartbeat restored {newest_text}, {} rows",
        secs(rpo),
        humantime::format_duration(w.target),
        row.get::<_, i64>(2)
    ));
    let out = RpoOutputs { rpo_s: (rpo * 1000.0).round() / 1000.0, newest: newest_text, target_s: target };
    // Kept and reported even when the target is missed, so as the map later steps read.
    let o = super::outputs_of(&out)?;
    for (k, v) in &o {
        ctx.keep(k, v.clone());
    }
    ctx.fact(crate::facts::Fact::Objective {
        objective: crate::facts::Objective::Rpo,
        measured_s: o["rpo_s"].clone(),
        target_s: o["target_s"].clone(),
        phases: None,
    });
    if rpo > target {
        return Err(StepError::failed(format!(
            "RPO {} exceeds the budget rpo={} (newest heartbeat restored {})",
            secs(rpo),
            humantime::format_duration(w.target),
            o["newest"].as_str().unwrap_or_default()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::fixture_sql;

    #[test]
    fn scale_is_replaced_but_casts_and_longer_names_are_not() {
        assert_eq!(
            fixture_sql("generate_series(1, 10 * :scale) x::scale :scaled", 7),
            "generate_series(1, 10 * 7) x::scale :scaled"
        );
    }
}
