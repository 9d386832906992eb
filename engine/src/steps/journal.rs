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

use super::{pg_error, BoxFuture, Fields, step, StepCtx, StepError, With, WithError};
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
    let Some(path) = path.filter(|p| !p.is_empty()).map(|p| ctx.local("journal", p)).transpose()? else {
        return Ok(());
    };
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
    let path = path.filter(|p| !p.is_empty()).and_then(|p| ctx.local("journal", p).ok())?;
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
    if !journal.changed {
        return format!(
            "The database was never dropped; once the server answers, run the same `pgdrill run restore` command with `--var recover=reopen` (it lets connections in again and closes the journal {journal_path}; it loses nothing), or by hand: {}",
            restore::manual_commands(journal, &user, &host, port)
        );
    }
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

/// The database as the server has it now: what it would be created again with (owner,
/// encoding, locale), its OID and whether it takes connections.
#[derive(Debug, Clone)]
pub(super) struct Current {
    pub(super) oid: u32,
    pub(super) owner: String,
    pub(super) encoding: String,
    pub(super) collate: String,
    pub(super) ctype: String,
    pub(super) allow: bool,
}

/// A database that does not exist: nothing to create it again with, nothing refusing
/// connections.
impl Default for Current {
    fn default() -> Self {
        Current {
            oid: 0,
            owner: String::new(),
            encoding: String::new(),
            collate: String::new(),
            ctype: String::new(),
            allow: true,
        }
    }
}

async fn current(client: &Client, database: &str) -> Result<Option<Current>, StepError> {
    Ok(current_with(client, database, "").await?.map(|(c, _)| c))
}

/// `current`, and in the same row the columns `more` adds (`, expression` over pg_database
/// `d`, from column 6 on): one read of pg_database for the journal and for database.drop.
/// `more` is the caller's SQL, never a name; the database's name is a parameter.
pub(super) async fn current_with(
    client: &Client,
    database: &str,
    more: &'static str,
) -> Result<Option<(Current, tokio_postgres::Row)>, StepError> {
    let sql = format!(
        "select pg_get_userbyid(d.datdba)::text, pg_encoding_to_char(d.encoding)::text, d.datcollate::text, \
         d.datctype::text, d.datallowconn, d.oid{more} from pg_database d where d.datname = $1"
    );
    let row = client.query_opt(&sql, &[&database]).await.map_err(super::pg_error)?;
    Ok(row.map(|r| {
        let c =
            Current { owner: r.get(0), encoding: r.get(1), collate: r.get(2), ctype: r.get(3), allow: r.get(4), oid: r.get(5) };
        (c, r)
    }))
}

// ---------------------------------------------------------------------------------------
// restore.lock

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct LockWith {
    /// any database URL of the target server
    #[field(conninfo)]
    url: String,
    /// the database to restore into
    database: String,
    /// safety location; the journal is <safety>/.journal/
    #[field(ty = "path")]
    safety: String,
    /// finish an unfinished restore: put the original back, restore its backup again, or (when
    /// it never dropped the database) let connections in again
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "rollback|forward|reopen")]
    recover: Option<String>,
    /// database the lock's session connects to (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
}

impl With for LockWith {
    fn check(&self) -> Result<(), WithError> {
        match self.recover.as_deref() {
            None | Some("rollback" | "forward" | "reopen") => Ok(()),
            Some(r) if crate::template::is_template(r) => Ok(()),
            Some(r) => Err(WithError::new("recover", format!("`{r}` is not `rollback`, `forward` or `reopen`"))),
        }
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct LockOutputs {
    /// the journal file of this database
    #[field(ty = "path")]
    journal: String,
    /// `rollback`, `forward`, `reopen` (done by the lock itself: every later step is skipped)
    /// or empty
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
    /// how to create the original again: locale provider, ICU locale and rules, collation
    /// version, tablespace (null when it did not exist)
    #[field(ty = "map")]
    properties: serde_json::Value,
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

/// Take the exclusive restore lock of a database (held until the runbook ends) and read its journal: refuse when
/// another restore holds it or an unfinished restore is found, unless `recover` says how to finish that one.
#[step(kind = Lock, name = "restore.lock", report_log)]
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
    let id = restore::Identity::of(&held.client, &server).await;
    let now = current(&held.client, &w.database).await?;
    let properties = restore::Properties::capture(&held.client, &w.database).await.map_err(super::pg_error)?;
    let key = held.key;
    ctx.resources.push(format!("restore lock of `{}`", w.database), Box::new(HeldLock(held)));
    ctx.log(format!("took the restore lock of database {} on {} (advisory lock {key})", w.database, id.describe()));

    let safety = ctx.local_only(&w.safety, "the safety location")?;
    let mut path = restore::journal_path(&safety, &id, &w.database);
    refuse_legacy_journal(&safety, &id, &w.database)?;
    // Keyed by the server's identity, so another server's journal is never read here; the
    // identity inside is checked too (a file copied or renamed by hand).
    let mut found = Journal::read(&path).map_err(StepError::from)?.filter(Journal::unfinished);
    if found.is_none() {
        if let Some((p, j)) = restore::journal_under_other_key(&safety, &id, &w.database) {
            (path, found) = (p, Some(j));
        }
    }
    if let Some(j) = found.as_ref().filter(|j| !id.owns(j)) {
        return Err(StepError::failed(format!(
            "the restore journal {} belongs to {}, not to {} that this run connects to: it is never acted on here. Nothing was changed",
            path.display(),
            j.describe_server(),
            id.describe()
        )));
    }
    // A run killed between a DROP that went through and its record: the server says which.
    if let Some(j) = found.as_mut().filter(|j| !j.changed && j.existed && j.phase == Phase::Dropping) {
        if now.as_ref().map(|c| c.oid) != j.database_oid {
            j.changed = true;
            j.mark(
                &path,
                Phase::Dropping,
                "the recorded database is gone: the drop went through before it was recorded",
            )
            .map_err(StepError::from)?;
        }
    }
    let recover = w.recover.clone().unwrap_or_default();
    let journal = path.display().to_string();
    match (found, recover.as_str()) {
        (None, "") => {
            let existed = now.is_some();
            let c = now.unwrap_or_default();
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
                properties: serde_json::to_value(&properties).unwrap_or_default(),
            })
        }
        (None, r) => {
            let others: Vec<String> = restore::journals_of_others(&safety, &id, &w.database)
                .iter()
                .map(|j| format!("{} (stopped at phase `{}`)", j.describe_server(), j.phase.as_str()))
                .collect();
            let elsewhere = if others.is_empty() {
                String::new()
            } else {
                format!(
                    "; the safety folder holds an unfinished restore of `{}` on {}: that journal belongs to that server and is never acted on from {}; run recover={r} with that server's database_url",
                    w.database,
                    others.join(" and "),
                    id.describe()
                )
            };
            Err(StepError::invalid(format!(
                "--var recover={r}: there is no unfinished restore of database `{}` on {} in {}: nothing to recover{elsewhere}. Nothing was changed",
                w.database,
                id.describe(),
                path.display()
            )))
        }
        (Some(j), "") if !j.changed => Err(StepError::failed(format!(
            "preflight: {}. Nothing was changed. That restore dropped and created nothing: finish it first with the same command and `--var recover=reopen`, which lets connections in again and closes the journal (it loses nothing); then run the restore again if it is still wanted. (Journal: {})",
            j.describe(),
            path.display()
        ))),
        (Some(j), "") => {
            let ways = match &j.snapshot {
                Some(s) => format!(
                    "`--var recover=rollback` puts back the original from the safety snapshot {s} and verifies it against the snapshot's fingerprint (it loses nothing)"
                ),
                None => "`--var recover=rollback` removes the half-made database (it did not exist before)".into(),
            };
            Err(StepError::failed(format!(
                "preflight: {}. A new restore now would take its safety snapshot of a database that is not the original, so it refuses. Nothing was changed. Finish that restore first with the same command and: {ways}; or, to finish it as planned instead, `--var recover=forward` restores {} again. (Journal: {})",
                j.describe(),
                j.backup,
                path.display()
            )))
        }
        (Some(j), "reopen") if !j.changed => {
            let client = crate::pg::connect_to(&w.url, &w.maintenance_db).await?;
            reopen(&ctx, &client, &w.database, j, &path, now.as_ref()).await
        }
        (Some(j), "reopen") => Err(StepError::failed(format!(
            "recover=reopen: {}; letting connections in now would let them into a database that is not the original. Nothing was changed. Use `--var recover=rollback` instead{}. (Journal: {})",
            j.describe(),
            j.snapshot.as_deref().map(|s| format!(", which puts back the original from the safety snapshot {s}")).unwrap_or_default(),
            path.display()
        ))),
        (Some(j), r) if !j.changed => Err(StepError::failed(format!(
            "recover={r}: {}. That restore never dropped the database, so there is nothing to {}: it would replace the database as it is now, with whatever was written since, and lose that. Nothing was changed. Run the same command with `--var recover=reopen` instead: it lets connections in again and closes the journal. (Journal: {})",
            j.describe(),
            if r == "rollback" { "roll back" } else { "finish" },
            path.display()
        ))),
        (Some(j), "rollback") if j.snapshot.is_none() => {
            // It did not exist before: rolling back means removing what this restore made,
            // and only that (its OID, as the journal recorded it).
            let admin = crate::pg::connect_to(&w.url, &w.maintenance_db).await?;
            let found_oid = now.as_ref().map(|c| c.oid);
            if found_oid.is_some() && found_oid != j.created_oid {
                return Err(StepError::failed(format!(
                    "recover=rollback: database `{}` (OID {}) is not the one the unfinished restore created ({}): it is never dropped. Nothing was changed. Look at it; when it is the half-made one, drop it by hand and remove the journal {}",
                    w.database,
                    found_oid.unwrap_or_default(),
                    j.created_oid.map(|o| format!("OID {o}")).unwrap_or_else(|| "its OID was not recorded".into()),
                    path.display()
                )));
            }
            if found_oid.is_some() {
                admin
                    .batch_execute(&format!("drop database if exists {} with (force)", quote_ident(&w.database)))
                    .await
                    .map_err(|e| {
                        StepError::failed(format!("dropping database `{}`: {}", w.database, crate::pg::describe(&e)))
                    })?;
            }
            // And its copy still under the private name, if it never took the name.
            drop_leftover_private(&ctx, &admin, Some(&j)).await?;
            let mut j = j;
            j.private_name = None;
            drop_roles_created(&ctx, &admin, &mut j).await;
            j.mark(&path, Phase::Finished, "recover=rollback: the half-made database was dropped").map_err(StepError::from)?;
            Err(StepError::failed(format!(
                "recover=rollback: database `{}` did not exist before the unfinished restore, so there is nothing to put back: the half-made database was dropped and the journal {} is closed; it is as before that restore",
                w.database,
                path.display()
            )))
        }
        (Some(j), r) => {
            let what = if r == "rollback" { j.snapshot.clone().unwrap_or_default() } else { j.backup.clone() };
            // Its manifest is all this needs: read through its store, nothing of the backup
            // itself read nor a stand-in of it made. A store that fails stays the environment's.
            let object = ctx.object(&what)?;
            // The backup itself must still be there: a manifest left beside a deleted
            // backup would let the recovery drop what it then cannot restore.
            let (store, key) = object.object();
            if store.head(&key).await.map_err(StepError::environment)?.is_none() {
                return Err(StepError::failed(format!(
                    "recover={r}: {what} from the journal {} is not usable: it does not exist (any more)",
                    path.display()
                )));
            }
            let m = Manifest::of(&object).await.map_err(|e| {
                if e.class == crate::error::Class::Environment {
                    return StepError::from(e);
                }
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
            // What the original was created with must still be there to create it again.
            if let Some(ts) = j.properties.as_ref().map(|p| p.tablespace.clone()).filter(|t| !t.is_empty()) {
                let admin = crate::pg::connect_to(&w.url, &w.maintenance_db).await?;
                let there: bool = admin
                    .query_one("select exists (select 1 from pg_tablespace where spcname = $1)", &[&ts])
                    .await
                    .map_err(super::pg_error)?
                    .get(0);
                if !there {
                    return Err(StepError::failed(format!(
                        "recover={r}: database `{}` was in tablespace {ts}, which no longer exists on {}: create it again first. Nothing was changed",
                        w.database,
                        id.describe()
                    )));
                }
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
                properties: serde_json::to_value(&j.properties).unwrap_or_default(),
            })
        }
    }
}

/// A journal an earlier pgdrill keyed by the database's name alone: it cannot say which
/// server it belongs to, so one that names this server's address stops the run rather than
/// being ignored (a half-restored database must not be snapshotted as the original).
fn refuse_legacy_journal(safety: &Path, id: &restore::Identity, database: &str) -> Result<(), StepError> {
    let legacy = restore::legacy_journal_path(safety, database);
    match Journal::read(&legacy).map_err(StepError::from)?.filter(Journal::unfinished) {
        Some(old) if old.server == id.address && old.system_id.is_empty() => Err(StepError::failed(format!(
            "preflight: {} (journal {}, written by an earlier pgdrill that did not record the server's system identifier, so it cannot prove it belongs to {}). Nothing was changed. Check database `{database}` on that server by hand; when it is as it should be, move that file out of {}",
            old.describe(),
            legacy.display(),
            id.describe(),
            legacy.parent().map(Path::display).map(|d| d.to_string()).unwrap_or_default()
        ))),
        _ => Ok(()),
    }
}

/// Drop the roles `j` says its restore created (the database is as it was before that
/// restore), saying which went and which stay and why; the caller writes the journal.
async fn drop_roles_created(ctx: &StepCtx, client: &Client, j: &mut Journal) {
    if j.created_roles.is_empty() {
        return;
    }
    let (dropped, notes) = restore::drop_created_roles(client, j).await;
    if !dropped.is_empty() {
        ctx.log(format!(
            "dropped again the roles this restore created: {}",
            dropped.iter().map(|r| quote_ident(r)).collect::<Vec<_>>().join(", ")
        ));
    }
    for n in notes {
        ctx.warn(n);
    }
}

/// `recover=reopen`: the unfinished restore never dropped the database, so the one safe
/// action is to let connections in again (as they were before it) and close the journal.
async fn reopen(
    ctx: &StepCtx,
    client: &Client,
    database: &str,
    mut j: Journal,
    path: &Path,
    now: Option<&Current>,
) -> Result<LockOutputs, StepError> {
    let allowed_before = j.allowed_connections.unwrap_or(true);
    let done = match now {
        Some(c) if Some(c.oid) == j.database_oid => {
            if allowed_before && !c.allow {
                client
                    .batch_execute(&format!("alter database {} allow_connections true", quote_ident(database)))
                    .await
                    .map_err(|e| {
                        StepError::failed(format!(
                            "recover=reopen: allowing connections to `{database}` again: {}",
                            crate::pg::describe(&e)
                        ))
                    })?;
                "new connections are allowed again".to_string()
            } else {
                "it accepts connections as it did before".to_string()
            }
        }
        Some(c) => format!("it (OID {}) is not the database the journal recorded, so it was left as it is", c.oid),
        None => "it does not exist, as before that restore".to_string(),
    };
    drop_roles_created(ctx, client, &mut j).await;
    j.recovering = "reopen".into();
    j.mark(path, Phase::Finished, format!("recover=reopen: {done}")).map_err(StepError::from)?;
    let msg = format!(
        "recover=reopen: database `{database}` was never changed by the unfinished restore; {done}, and the journal {} is closed. Nothing else was changed; run the restore again if it is still wanted",
        path.display()
    );
    ctx.log(msg.clone());
    ctx.notice(msg);
    Ok(LockOutputs {
        journal: path.display().to_string(),
        recovering: "reopen".into(),
        existed: now.is_some(),
        ..Default::default()
    })
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
    #[field(conninfo)]
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

/// Write the restore journal (fsynced) before anything changes: target, backup, who and since; or mark a later phase
/// (`verified`). Recovering runs keep the original's record.
#[step(kind = WriteJournal, name = "restore.journal", report_log)]
async fn journal(ctx: StepCtx, w: JournalWith) -> Result<JournalOutputs, StepError> {
    let path = ctx.local("journal", &w.journal)?;
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
    let id = restore::Identity::of(&client, &server).await;
    let mut j = Journal {
        version: 1,
        server,
        system_id: id.system_id,
        database: database.clone(),
        database_oid: now.as_ref().map(|c| c.oid),
        created_oid: None,
        private_name: None,
        pid,
        host,
        started_at: OffsetDateTime::now_utc(),
        backup: ctx.resolve(&backup).to_string(),
        snapshot: None,
        snapshot_sha256: None,
        existed: now.is_some(),
        owner: now.as_ref().map(|c| c.owner.clone()).unwrap_or_default(),
        encoding: now.as_ref().map(|c| c.encoding.clone()).unwrap_or_default(),
        lc_collate: now.as_ref().map(|c| c.collate.clone()).unwrap_or_default(),
        lc_ctype: now.as_ref().map(|c| c.ctype.clone()).unwrap_or_default(),
        properties: restore::Properties::capture(&client, &database).await.map_err(super::pg_error)?,
        settings: w.settings.filter(|v| !v.is_null()),
        allowed_connections: None,
        changed: false,
        recovering: String::new(),
        created_roles: Vec::new(),
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
    #[field(conninfo)]
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

/// When an operator restore ends: let connections in again unless the database was restored and verified, close the
/// journal when the database is restored or as it was, and otherwise keep it and say plainly how to put the original
/// back.
#[step(kind = Finish, name = "restore.finish", report_log)]
async fn finish(ctx: StepCtx, w: FinishWith) -> Result<FinishOutputs, StepError> {
    let path = ctx.local("journal", &w.journal)?;
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
                // Only the database the journal recorded: one that appeared under its name
                // later is not pgdrill's to change.
                Ok(Some(c)) if !c.allow && Some(c.oid) == j.database_oid => {
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
    } else if j.phase == Phase::RolledBack && !j.existed {
        ("rolled back", "dropped again: it did not exist before this restore".to_string())
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
    // The database is as it was before this restore (or, after recover=rollback, put back):
    // the roles it created for the backup go again. A restored database keeps them.
    if (state != "restored" || recovering == "rollback") && !j.created_roles.is_empty() {
        match crate::pg::connect_to(&w.url, &w.maintenance_db).await {
            Ok(client) => drop_roles_created(&ctx, &client, &mut j).await,
            Err(e) => ctx.warn(format!(
                "the roles this restore created, {}, could not be dropped again ({}): drop them by hand",
                j.created_role_names(),
                e.message
            )),
        }
    }
    j.recovering.clear();
    j.mark(&path, Phase::Finished, note.clone()).map_err(StepError::from)?;
    ctx.log(format!("journal {} closed: database {} {note}", path.display(), w.database));
    Ok(FinishOutputs { state: state.into() })
}

/// Drop `database` (its sessions ended): the one DROP the restore's steps run, each after
/// checking the database is the one the journal recorded.
pub(super) async fn drop_database(client: &Client, database: &str) -> Result<(), StepError> {
    client
        .batch_execute(&format!("drop database if exists {} with (force)", quote_ident(database)))
        .await
        .map_err(|e| StepError::failed(format!("dropping database `{database}`: {}", crate::pg::describe(&e))))
}

/// The OID of `database` now, if it exists.
pub(super) async fn oid_of(client: &Client, database: &str) -> Result<Option<u32>, StepError> {
    Ok(client
        .query_opt("select oid from pg_database where datname = $1", &[&database])
        .await
        .map_err(pg_error)?
        .map(|r| r.get(0)))
}

/// Drop the half-restored copy an earlier run of this restore left under its private name
/// (killed, or interrupted before its rollback ended): only while a database of that name
/// has the OID the journal recorded for it. Whether one was dropped.
pub(super) async fn drop_leftover_private(
    ctx: &StepCtx,
    client: &Client,
    j: Option<&crate::restore::Journal>,
) -> Result<bool, StepError> {
    let Some((name, j)) = j.and_then(|j| j.private_name.as_deref().map(|n| (n, j))) else { return Ok(false) };
    match oid_of(client, name).await? {
        Some(oid) if Some(oid) == j.created_oid => {
            drop_database(client, name).await?;
            ctx.log(format!("dropped database {name}, the half-restored copy this restore made"));
            Ok(true)
        }
        Some(oid) => {
            ctx.warn(format!(
                "database {name} (OID {oid}) is not the copy this restore made: left as it is"
            ));
            Ok(false)
        }
        None => Ok(false),
    }
}
