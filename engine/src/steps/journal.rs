//! The operator restore's lock and journal as steps: `restore.lock` (first: the exclusive
//! lock of the target and what an unfinished journal says), `restore.journal` (the record
//! written before anything changes, and later phase marks), and `restore.finish` (in
//! `finally`: close the journal, or keep it and say plainly how to recover).
//!
//! The `database.*` steps mark their own phases through `mark` when given `journal:`; the
//! lock and the journal themselves live in `crate::restore`, which knows nothing of steps.

use std::path::Path;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::{BoxFuture, Fields, Step, StepCtx, StepError, With, WithError};
use crate::backup::Manifest;
use crate::pg::native::quote_ident;
use crate::restore::{self, Journal, LockError, Phase};

fn postgres() -> String {
    "postgres".into()
}

/// Record `phase` in the journal at `path` (when the step was given one) and fsync it
/// before the caller changes anything. A journal that was given but is missing or damaged
/// stops the step: the record is what makes the next phase safe.
pub(crate) fn mark(
    ctx: &StepCtx,
    path: Option<&str>,
    phase: Phase,
    note: &str,
    edit: impl FnOnce(&mut Journal),
) -> Result<(), StepError> {
    let Some(path) = path.filter(|p| !p.is_empty()).map(|p| ctx.resolve(p)) else { return Ok(()) };
    let mut j = read_required(&path)?;
    edit(&mut j);
    j.mark(&path, phase, note).map_err(StepError::from)
}

pub(crate) fn read_required(path: &Path) -> Result<Journal, StepError> {
    Journal::read(path).map_err(StepError::from)?.ok_or_else(|| {
        StepError::failed(format!(
            "the restore journal {} is missing: refusing to go on without the record of this restore",
            path.display()
        ))
    })
}

/// The journal at `path`, if a step was given one (for messages).
pub(crate) fn read_optional(ctx: &StepCtx, path: Option<&str>) -> Option<Journal> {
    let path = path.filter(|p| !p.is_empty()).map(|p| ctx.resolve(p))?;
    Journal::read(&path).ok().flatten()
}

/// What an operator does when pgdrill could not put the original back: one pgdrill command
/// once the server answers, or the same by hand.
pub(crate) fn how_to_recover(url: &str, journal: &Journal, journal_path: &str) -> String {
    let (user, host, port) = match crate::pg::config(url) {
        Ok(cfg) => {
            let host = match cfg.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            (cfg.get_user().unwrap_or("postgres").to_string(), host, cfg.get_ports().first().copied().unwrap_or(5432))
        }
        Err(_) => ("postgres".into(), "localhost".into(), 5432),
    };
    let what = match &journal.snapshot {
        Some(s) => format!("The original is in the safety snapshot {s}"),
        None => "The database did not exist before this restore".to_string(),
    };
    format!(
        "{what}; once the server answers, run the same `pgdrill run restore` command with `--var recover=rollback` \
         (the journal {journal_path} keeps what it needs), or by hand: {}",
        restore::manual_commands(journal, &user, &host, port)
    )
}

/// The database as the server has it now.
struct Current {
    owner: String,
    encoding: String,
    collate: String,
    ctype: String,
    allow: bool,
}

async fn current(client: &Client, database: &str) -> Result<Option<Current>, StepError> {
    let row = client
        .query_opt(
            "select pg_get_userbyid(datdba)::text, pg_encoding_to_char(encoding)::text, datcollate::text, \
             datctype::text, datallowconn from pg_database where datname = $1",
            &[&database],
        )
        .await
        .map_err(super::pg_error)?;
    Ok(row.map(|r| Current {
        owner: r.get(0),
        encoding: r.get(1),
        collate: r.get(2),
        ctype: r.get(3),
        allow: r.get(4),
    }))
}

// ---------------------------------------------------------------------------------------
// restore.lock

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct LockWith {
    /// any database URL of the target server
    url: String,
    /// the database to restore into
    database: String,
    /// safety location; the journal is <safety>/.journal/
    #[field(ty = "path")]
    safety: String,
    /// finish an unfinished restore: put the original back, or restore its backup again
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "rollback|forward")]
    recover: Option<String>,
    /// database the lock's session connects to (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
}

impl With for LockWith {
    fn check(&self) -> Result<(), WithError> {
        match self.recover.as_deref() {
            None | Some("rollback" | "forward") => Ok(()),
            Some(r) if crate::template::is_template(r) => Ok(()),
            Some(r) => Err(WithError::new("recover", format!("`{r}` is not `rollback` or `forward`"))),
        }
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct LockOutputs {
    /// the journal file of this database
    #[field(ty = "path")]
    journal: String,
    /// `rollback`, `forward` or empty
    recovering: String,
    /// what a recovery restores: the journal's snapshot (rollback) or backup (forward); empty
    /// otherwise
    #[field(ty = "path")]
    backup: String,
    /// the journal's safety snapshot of the original (recovery only)
    #[field(ty = "path")]
    snapshot: String,
    /// whether the original database existed
    existed: bool,
    /// how to create the original again
    owner: String,
    /// how to create the original again
    encoding: String,
    /// how to create the original again
    lc_collate: String,
    /// how to create the original again
    lc_ctype: String,
    /// the original's settings from the journal (recovery only; null otherwise)
    #[field(ty = "map")]
    settings: serde_json::Value,
}

pub struct Lock;

impl Step for Lock {
    const NAME: &'static str = "restore.lock";
    const SUMMARY: &'static str = "Take the exclusive restore lock of a database (held until the runbook ends) and read its journal: refuse when another restore holds it or an unfinished restore is found, unless `recover` says how to finish that one.";
    const REPORT_LOG: bool = true;
    type With = LockWith;
    type Outputs = LockOutputs;

    fn run(ctx: StepCtx, w: LockWith) -> impl std::future::Future<Output = Result<LockOutputs, StepError>> + Send {
        lock(ctx, w)
    }
}

struct HeldLock(restore::Lock);

impl super::Teardown for HeldLock {
    fn teardown(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Closing the session releases the lock; unlock first so it is free at once.
            let _ = self.0.client.query_one("select pg_advisory_unlock($1)", &[&self.0.key]).await;
        })
    }
}

async fn lock(ctx: StepCtx, w: LockWith) -> Result<LockOutputs, StepError> {
    let server = crate::pg::server_id(&w.url)?;
    let held = match restore::lock(&w.url, &w.maintenance_db, &w.database).await {
        Ok(l) => l,
        Err(LockError::Held(who)) => {
            return Err(StepError::failed(format!(
                "preflight: database `{}` on {server} is being restored by {who}; two restores of one database never overlap, so wait until it ends. Nothing was changed",
                w.database
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let now = current(&held.client, &w.database).await?;
    let key = held.key;
    ctx.resources.push(format!("restore lock of `{}`", w.database), Box::new(HeldLock(held)));
    ctx.log(format!("took the restore lock of database {} on {server} (advisory lock {key})", w.database));

    let safety = ctx.local_only(&w.safety, "the safety location")?;
    let path = restore::journal_path(&safety, &w.database);
    let found = Journal::read(&path).map_err(StepError::from)?.filter(Journal::unfinished);
    let recover = w.recover.clone().unwrap_or_default();
    let journal = path.display().to_string();
    match (found, recover.as_str()) {
        (None, "") => {
            let existed = now.is_some();
            let c = now.unwrap_or(Current {
                owner: String::new(),
                encoding: String::new(),
                collate: String::new(),
                ctype: String::new(),
                allow: true,
            });
            Ok(LockOutputs {
                journal,
                recovering: String::new(),
                backup: String::new(),
                snapshot: String::new(),
                existed,
                owner: c.owner,
                encoding: c.encoding,
                lc_collate: c.collate,
                lc_ctype: c.ctype,
                settings: serde_json::Value::Null,
            })
        }
        (None, r) => Err(StepError::invalid(format!(
            "--var recover={r}: there is no unfinished restore of database `{}` in {}: nothing to recover. Nothing was changed",
            w.database,
            path.display()
        ))),
        (Some(j), "") => {
            let ways = match &j.snapshot {
                Some(s) => format!(
                    "`--var recover=rollback` puts back the original from the safety snapshot {s} and verifies it against the snapshot's fingerprint"
                ),
                None => "`--var recover=rollback` removes the half-made database (it did not exist before)".into(),
            };
            Err(StepError::failed(format!(
                "preflight: {}. A new restore now would take its safety snapshot of a database that is not the original, so it refuses. Nothing was changed. Finish that restore first with the same command and: {ways}; or `--var recover=forward` restores {} again. (Journal: {})",
                j.describe(),
                j.backup,
                path.display()
            )))
        }
        (Some(j), "rollback") if j.snapshot.is_none() => {
            // It did not exist before: rolling back means removing what was made.
            let client = crate::pg::connect_to(&w.url, &w.maintenance_db).await?;
            client
                .batch_execute(&format!("drop database if exists {} with (force)", quote_ident(&w.database)))
                .await
                .map_err(|e| StepError::failed(format!("dropping database `{}`: {}", w.database, crate::pg::describe(&e))))?;
            let mut j = j;
            j.mark(&path, Phase::Finished, "recover=rollback: the half-made database was dropped").map_err(StepError::from)?;
            Err(StepError::failed(format!(
                "recover=rollback: database `{}` did not exist before the unfinished restore, so there is nothing to put back: the half-made database was dropped and the journal {} is closed; it is as before that restore",
                w.database,
                path.display()
            )))
        }
        (Some(j), r) => {
            let what = if r == "rollback" { j.snapshot.clone().unwrap_or_default() } else { j.backup.clone() };
            let m = Manifest::read(&ctx.backup_header(&what).await?).map_err(|e| {
                StepError::failed(format!(
                    "recover={r}: {what} from the journal {} is not usable: {}",
                    path.display(),
                    StepError::from(e).message()
                ))
            })?;
            if r == "rollback" && j.snapshot_sha256.as_deref().is_some_and(|s| s != m.sha256) {
                return Err(StepError::failed(format!(
                    "recover=rollback: the snapshot {what} is not the one the journal {} recorded (sha256 differs)",
                    path.display()
                )));
            }
            ctx.log(format!("recover={r}: {}", j.describe()));
            Ok(LockOutputs {
                journal,
                recovering: r.to_string(),
                backup: what,
                snapshot: j.snapshot.clone().unwrap_or_default(),
                existed: j.existed,
                owner: j.owner.clone(),
                encoding: j.encoding.clone(),
                lc_collate: j.lc_collate.clone(),
                lc_ctype: j.lc_ctype.clone(),
                settings: j.settings.clone().unwrap_or_default(),
            })
        }
    }
}

// ---------------------------------------------------------------------------------------
// restore.journal

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct JournalWith {
    /// restore.lock's journal
    #[field(ty = "path")]
    journal: String,
    /// default open
    #[serde(default = "open")]
    #[field(ty = "open|verified")]
    phase: String,
    /// open: any database URL of the server
    #[serde(default, deserialize_with = "super::de::opt_text")]
    url: Option<String>,
    /// open: the database
    #[serde(default, deserialize_with = "super::de::opt_text")]
    database: Option<String>,
    /// open: the backup to restore
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    backup: Option<String>,
    /// open: restore.lock's `recovering`
    #[serde(default, deserialize_with = "super::de::opt_text")]
    recovering: Option<String>,
    /// open: restore.preflight's `settings`, kept for a recovery
    #[serde(default)]
    #[field(ty = "map")]
    settings: Option<serde_json::Value>,
    /// default postgres
    #[serde(default = "postgres")]
    maintenance_db: String,
}

fn open() -> String {
    "open".into()
}

impl With for JournalWith {
    fn check(&self) -> Result<(), WithError> {
        match self.phase.as_str() {
            "open" => {
                for (name, v) in [("url", &self.url), ("database", &self.database), ("backup", &self.backup)] {
                    if v.is_none() {
                        return Err(WithError::new(name, format!("`phase: open` needs `{name}`")));
                    }
                }
                Ok(())
            }
            "verified" => Ok(()),
            p if crate::template::is_template(p) => Ok(()),
            p => Err(WithError::new("phase", format!("`{p}` is not `open` or `verified`"))),
        }
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct JournalOutputs {
    /// the journal file
    #[field(ty = "path")]
    journal: String,
}

pub struct WriteJournal;

impl Step for WriteJournal {
    const NAME: &'static str = "restore.journal";
    const SUMMARY: &'static str = "Write the restore journal (fsynced) before anything changes: target, backup, who and since; or mark a later phase (`verified`). Recovering runs keep the original's record.";
    const REPORT_LOG: bool = true;
    type With = JournalWith;
    type Outputs = JournalOutputs;

    fn run(
        ctx: StepCtx,
        w: JournalWith,
    ) -> impl std::future::Future<Output = Result<JournalOutputs, StepError>> + Send {
        journal(ctx, w)
    }
}

async fn journal(ctx: StepCtx, w: JournalWith) -> Result<JournalOutputs, StepError> {
    let path = ctx.resolve(&w.journal);
    let o = JournalOutputs { journal: path.display().to_string() };
    if w.phase == "verified" {
        mark(
            &ctx,
            Some(&w.journal),
            Phase::Verified,
            "the restored database matched the backup's fingerprint",
            |_| {},
        )?;
        ctx.log(format!("journal {}: verified", path.display()));
        return Ok(o);
    }
    let (url, database, backup) =
        (w.url.unwrap_or_default(), w.database.unwrap_or_default(), w.backup.unwrap_or_default());
    let recovering = w.recovering.unwrap_or_default();
    let pid = std::process::id();
    let host = restore::hostname();
    if !recovering.is_empty() {
        let mut j = read_required(&path)?;
        let note = format!("recover={recovering} by pgdrill pid {pid} on host {host}");
        j.recovering = recovering;
        j.pid = pid;
        j.host = host;
        let phase = j.phase;
        j.mark(&path, phase, note.clone()).map_err(StepError::from)?;
        ctx.log(format!("journal {}: {note}", path.display()));
        return Ok(o);
    }
    let client = crate::pg::connect_to(&url, &w.maintenance_db).await?;
    let now = current(&client, &database).await?;
    let server = crate::pg::server_id(&url)?;
    let mut j = Journal {
        version: 1,
        server,
        database: database.clone(),
        pid,
        host,
        started_at: OffsetDateTime::now_utc(),
        backup: ctx.resolve(&backup).display().to_string(),
        snapshot: None,
        snapshot_sha256: None,
        existed: now.is_some(),
        owner: now.as_ref().map(|c| c.owner.clone()).unwrap_or_default(),
        encoding: now.as_ref().map(|c| c.encoding.clone()).unwrap_or_default(),
        lc_collate: now.as_ref().map(|c| c.collate.clone()).unwrap_or_default(),
        lc_ctype: now.as_ref().map(|c| c.ctype.clone()).unwrap_or_default(),
        settings: w.settings.filter(|v| !v.is_null()),
        allowed_connections: None,
        changed: false,
        recovering: String::new(),
        phase: Phase::Open,
        history: Vec::new(),
    };
    j.mark(&path, Phase::Open, "").map_err(StepError::from)?;
    ctx.log(format!("journal {}: restore of {} into {database} begins", path.display(), j.backup));
    Ok(o)
}

// ---------------------------------------------------------------------------------------
// restore.finish

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct FinishWith {
    /// restore.lock's journal
    #[field(ty = "path")]
    journal: String,
    /// any database URL of the server
    url: String,
    /// the database
    database: String,
    /// whether the run's steps passed (`run.status == 'passed'`)
    #[serde(deserialize_with = "super::de::boolean")]
    passed: bool,
    /// default postgres
    #[serde(default = "postgres")]
    maintenance_db: String,
}

impl With for FinishWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct FinishOutputs {
    /// restored, rolled back, unchanged or unfinished
    state: String,
}

pub struct Finish;

impl Step for Finish {
    const NAME: &'static str = "restore.finish";
    const SUMMARY: &'static str = "When an operator restore ends: let connections in again unless the database was restored and verified, close the journal when the database is restored or as it was, and otherwise keep it and say plainly how to put the original back.";
    const REPORT_LOG: bool = true;
    type With = FinishWith;
    type Outputs = FinishOutputs;

    fn run(ctx: StepCtx, w: FinishWith) -> impl std::future::Future<Output = Result<FinishOutputs, StepError>> + Send {
        finish(ctx, w)
    }
}

async fn finish(ctx: StepCtx, w: FinishWith) -> Result<FinishOutputs, StepError> {
    let path = ctx.resolve(&w.journal);
    let Some(mut j) = Journal::read(&path).map_err(StepError::from)?.filter(Journal::unfinished) else {
        ctx.log("the run stopped before anything changed: no journal to close".to_string());
        return Ok(FinishOutputs { state: "unchanged".into() });
    };

    // Connections come back whenever the database is not known restored: pgdrill
    // refused them, so pgdrill lets them in again, even if terminate itself failed.
    let mut allow_problem = None;
    if !w.passed && j.allowed_connections == Some(true) {
        match crate::pg::connect_to(&w.url, &w.maintenance_db).await {
            Ok(client) => match current(&client, &w.database).await {
                Ok(Some(c)) if !c.allow => {
                    match client
                        .batch_execute(&format!("alter database {} allow_connections true", quote_ident(&w.database)))
                        .await
                    {
                        Ok(()) => ctx.log(format!("new connections to {} are allowed again", w.database)),
                        Err(e) => allow_problem = Some(crate::pg::describe(&e)),
                    }
                }
                Ok(_) => {}
                Err(e) => allow_problem = Some(e.message().to_string()),
            },
            Err(e) => allow_problem = Some(e.message),
        }
    }

    let recovering = j.recovering.clone();
    let (state, note) = if w.passed {
        let what = match recovering.as_str() {
            "rollback" => "put back from the safety snapshot (recover=rollback) and verified",
            _ => "restored and verified",
        };
        ("restored", what.to_string())
    } else if j.phase == Phase::RolledBack {
        ("rolled back", "put back from the safety snapshot and verified".to_string())
    } else if !j.changed && allow_problem.is_none() {
        (
            "unchanged",
            format!("the run stopped at phase `{}`, before the drop: the database was not changed", j.phase.as_str()),
        )
    } else {
        // Keep the journal as it is: the next run refuses and recover=... finishes it.
        let phase = j.phase;
        j.mark(&path, phase, "the run ended; the database is not restored and the original not put back")
            .map_err(StepError::from)?;
        let connections = match &allow_problem {
            Some(p) if j.changed => format!(" Whether it accepts connections could not be checked ({p})."),
            Some(p) => format!(" New connections to it are still refused ({p})."),
            None => String::new(),
        };
        let head = if j.changed {
            format!(
                "database `{}` is NOT restored and was NOT put back: the run ended at phase `{}`.{connections}",
                w.database,
                j.phase.as_str()
            )
        } else {
            format!("database `{}` was not dropped, but{connections}", w.database)
        };
        let msg = format!("{head} {}", how_to_recover(&w.url, &j, &path.display().to_string()));
        ctx.notice(msg.clone());
        ctx.keep("notice", msg.clone().into());
        ctx.keep("state", "unfinished".into());
        return Err(StepError::failed(msg));
    };
    j.recovering.clear();
    j.mark(&path, Phase::Finished, note.clone()).map_err(StepError::from)?;
    ctx.log(format!("journal {} closed: database {} {note}", path.display(), w.database));
    Ok(FinishOutputs { state: state.into() })
}
