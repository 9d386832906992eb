//! `globals.restore`: before a restore that keeps owners and grants, give the target server
//! the roles, memberships, role settings and database settings the backup's manifest
//! recorded (`pg::globals`), so the restored copy is owned and granted as the source was
//! and the application's roles can log in. A backup without them (another tool's dump, a
//! pgdrill backup from before them) is skipped with the reason: its roles and privileges
//! stay unproven.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With};
use crate::backup::source::{self, Origin};
use crate::backup::Manifest;
use crate::pg::fingerprint::PRIVILEGE_KINDS;
use crate::pg::globals;
use crate::storage::{Named, Store};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct GlobalsWith {
    /// the backup whose manifest holds the roles (backup.pick's path)
    #[field(ty = "path")]
    backup: String,
    /// the database about to be restored into (a superuser's URL)
    #[field(conninfo)]
    into: String,
    /// the backup's key: its sealed password verifiers open under it
    #[field(key)]
    key: Option<String>,
    /// for another tool's dump: a `pg_dumpall --globals-only` script (.sql or .sql.gz) to
    /// take its roles from (default: one beside the dump whose name holds `globals`)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    globals: Option<String>,
    /// change nothing: list the roles the target lacks (`missing`) and how the roles it has
    /// differ from the backup's (`differing`), for an operator to confirm first
    #[serde(default, deserialize_with = "super::de::boolean")]
    dry_run: bool,
    /// apply the database's own settings (`ALTER DATABASE ... SET`) and superusers' settings
    /// in it too (default false: before a restore they would bind its sessions, a read-only
    /// default stopping it; run this step again after the restore with true)
    #[serde(default, deserialize_with = "super::de::boolean")]
    database_settings: bool,
    /// create the missing roles (memberships, role settings) only, and leave every
    /// database's owner and settings alone: the operator restore keeps the target's own, and
    /// `into` may be the maintenance database (default false)
    #[serde(default, deserialize_with = "super::de::boolean")]
    roles_only: bool,
    /// change nothing and fail when the target lacks roles of the backup, naming them; this
    /// text is the remedy the error gives (a restore that may not create roles)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    refuse_missing: Option<String>,
    /// restore.lock's journal: each role created is recorded in it before its CREATE ROLE
    /// commits, so a rollback drops exactly the roles this restore made (never one that was
    /// there before)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    journal: Option<String>,
}

impl With for GlobalsWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct GlobalsOutputs {
    /// the backup's roles and settings are on the target: the restore can keep owners and
    /// grants
    restored: bool,
    /// roles created
    created: Vec<String>,
    /// roles that were there already, left as they are
    existing: Vec<String>,
    /// roles created with their password verifier
    passwords: usize,
    /// roles of the backup the target lacks (before anything was created)
    missing: Vec<String>,
    /// how the target's roles differ from the backup's, one line each (never altered)
    differing: Vec<String>,
}

const UNPROVEN: &str = "roles, ownership and privileges are unproven for it: restore with no_owner";

/// Create the backup's roles (with memberships, role settings and, from an encrypted backup, passwords) and the
/// database's owner and settings on the target, before a restore that keeps owners and grants.
#[step(kind = Restore, name = "globals.restore")]
async fn restore(ctx: StepCtx, w: GlobalsWith) -> Result<GlobalsOutputs, StepError> {
    let object = ctx.object(&w.backup)?;
    let shown = object.shown().to_string();
    // Read through the backup's store (its first bytes, the manifest and the globals file
    // beside it): no local stand-in of an object in a store is made for them (issue 37).
    let foreign = source::origin_of(&object).await? == Origin::Foreign;
    // A team's own format pgdrill wrote keeps the roles in its sidecar manifest, read below
    // as pgdrill's own manifest is.
    let sidecar = if foreign { crate::backup::sidecar_of(&object).await? } else { None };
    if foreign && sidecar.is_none() {
        let script = match w.globals.as_deref() {
            Some(g) => Some(Script::of(&ctx.object(g)?)),
            None => beside(&object).await?,
        };
        let Some(script) = script else {
            return Err(StepError::Skipped(format!(
                "{shown} was not made by pgdrill: it carries no roles (a dump of one database never does) and no `pg_dumpall --globals-only` file is beside it; {UNPROVEN}"
            )));
        };
        return from_script(&ctx, &w, &script).await;
    }
    let m = match sidecar {
        Some(m) => m,
        None => Manifest::of(&object).await?,
    };
    let Some(g) = m.globals.as_ref() else {
        return Err(StepError::Skipped(format!(
            "{shown} was made before pgdrill kept roles in its manifest; {UNPROVEN}"
        )));
    };
    let client = crate::pg::connect(&w.into).await?;
    let plan = globals::plan(&client, g).await.map_err(StepError::environment)?;
    if plan.missing.is_empty() {
        ctx.log("every role of the backup exists here");
    } else {
        ctx.log(format!("missing here: {}", plan.missing.join(", ")));
    }
    for d in &plan.differing {
        ctx.log(format!("differs (left as it is): {d}"));
    }
    if let (Some(remedy), false) = (w.refuse_missing.as_deref(), plan.missing.is_empty()) {
        return Err(StepError::failed(format!(
            "{} lacks the backup's roles {}, which its owners and grants name: nothing was changed; {remedy}",
            crate::pg::display_url(&w.into),
            plan.missing.iter().map(|r| crate::pg::native::quote_ident(r)).collect::<Vec<_>>().join(", ")
        )));
    }
    if w.dry_run {
        ctx.log("dry run: nothing created or changed");
        return Ok(GlobalsOutputs {
            restored: false,
            missing: plan.missing,
            differing: plan.differing,
            ..Default::default()
        });
    }
    let verifiers = match (&g.verifiers, w.key.as_deref().filter(|k| !k.is_empty()), &m.kdf) {
        (Some(sealed), Some(secret), Some(kdf)) => {
            let (sealed, secret, kdf) = (sealed.clone(), secret.to_string(), kdf.clone());
            tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, String>, String> {
                // Sealed under the backup's key: with a keyring, whichever of its keys opens them.
                let ring = crate::archive::KeySource::from_secret(&secret);
                let mut opened = Err(String::from("no key"));
                for k in ring.members() {
                    opened = k.derive_for(&kdf)?.unseal(globals::VERIFIERS, &sealed);
                    if opened.is_ok() {
                        break;
                    }
                }
                globals::verifiers_from(&opened?)
            })
            .await
            .map_err(|e| StepError::environment(e.to_string()))?
            .map_err(|e| StepError::failed(format!("{shown}: {e}")))?
        }
        (Some(_), _, _) => {
            ctx.log(
                "the backup's password verifiers are sealed and no key was given: roles are created without passwords",
            );
            BTreeMap::new()
        }
        (None, _, _) => {
            if let Some(why) = &g.verifiers_left_out {
                ctx.log(format!("roles are created without passwords: {why}"));
            }
            BTreeMap::new()
        }
    };
    let journal = w.journal.as_deref().filter(|j| !j.is_empty()).map(|j| ctx.local("journal", j)).transpose()?;
    let applied = if let Some(path) = journal {
        // The journal must exist before a role is made: a role no journal names would stay
        // after a rollback.
        super::journal::read_required(&path)?;
        let mut record = move |name: &str, oid: u32| -> Result<(), String> {
            let mut j = super::journal::read_required(&path).map_err(|e| e.message().to_string())?;
            j.created_roles.push(crate::restore::CreatedRole { name: name.to_string(), oid });
            let phase = j.phase;
            j.mark(&path, phase, format!("created role {}", crate::pg::native::quote_ident(name)))
                .map_err(|e| e.message)
        };
        globals::apply_roles_recorded(&client, g, &verifiers, &mut record).await.map_err(StepError::failed)?
    } else if w.roles_only {
        globals::apply_roles(&client, g, &verifiers).await.map_err(StepError::failed)?
    } else {
        let database: String =
            client.query_one("select current_database()::text", &[]).await.map_err(super::pg_error)?.get(0);
        globals::apply(&client, &database, g, &verifiers, w.database_settings).await.map_err(StepError::failed)?
    };
    ctx.log(format!(
        "{}: {} created ({} with their password), {} there already and left as they are",
        g.summary(),
        applied.created.len(),
        applied.with_password,
        applied.existing.len()
    ));
    if !applied.existing.is_empty() {
        ctx.log(format!("roles there already: {}", applied.existing.join(", ")));
    }
    for n in &applied.notes {
        ctx.warn(n.clone());
    }
    Ok(GlobalsOutputs {
        restored: true,
        created: applied.created,
        existing: applied.existing,
        passwords: applied.with_password,
        missing: plan.missing,
        differing: plan.differing,
    })
}

/// A `pg_dumpall --globals-only` script: an object of a store, or a file here (its own
/// directory's store), read through that store.
struct Script {
    store: Arc<dyn Store>,
    key: String,
    /// How it is shown: its URL, or its path.
    shown: String,
}

impl Script {
    fn of(named: &Named) -> Script {
        let (store, key) = named.object();
        Script { store, key, shown: named.shown().to_string() }
    }
}

/// A `pg_dumpall --globals-only` script beside another tool's dump: the newest object of the
/// same folder whose name holds `globals` and ends in `.sql` or `.sql.gz`, the classic
/// runbooks' pattern. The folder is listed one level through the dump's store, never through
/// a local mirror (which holds only what this run read); a store that cannot list it is the
/// environment's failure, not "no globals file".
async fn beside(dump: &Named) -> Result<Option<Script>, StepError> {
    let (store, folder) = dump.folder();
    let own = dump.object().1;
    let own = own.rsplit('/').next().unwrap_or_default().to_string();
    let names = store.children(&folder).await.map_err(StepError::environment)?.objects;
    let mut found = Vec::new();
    for name in names {
        let n = name.to_ascii_lowercase();
        if !n.contains("globals") || !(n.ends_with(".sql") || n.ends_with(".sql.gz")) || name == own {
            continue;
        }
        let key = if folder.is_empty() { name } else { format!("{folder}/{name}") };
        if let Some(m) = store.head(&key).await.map_err(StepError::environment)? {
            found.push((m.modified, key));
        }
    }
    Ok(found.into_iter().max().map(|(_, key)| Script { shown: store.url_of(&key), store: store.clone(), key }))
}

async fn from_script(ctx: &StepCtx, w: &GlobalsWith, script: &Script) -> Result<GlobalsOutputs, StepError> {
    let shown = script.shown.clone();
    if w.dry_run {
        ctx.log(format!("dry run: the roles of {shown} are not listed or created"));
        return Ok(GlobalsOutputs::default());
    }
    let Some(meta) = script.store.head(&script.key).await.map_err(StepError::environment)? else {
        return Err(StepError::invalid(format!("cannot read {shown}: no such file or object")));
    };
    // Streamed from its store, as pgdrill reads a backup: never copied here first.
    let reader = script
        .store
        .open(&script.key, Some(0..meta.size), meta.version.as_deref())
        .await
        .map_err(StepError::environment)?;
    let gz = script.key.ends_with(".gz");
    let text = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut text = String::new();
        if gz {
            flate2::read::GzDecoder::new(reader).read_to_string(&mut text)?;
        } else {
            std::io::BufReader::new(reader).read_to_string(&mut text)?;
        }
        Ok(text)
    })
    .await
    .map_err(|e| StepError::environment(e.to_string()))?
    .map_err(|e| match crate::storage::store_failure(&e) {
        // The store lost mid-read: the environment's, never a verdict on the file.
        Some(f) => StepError::environment(format!("cannot read {shown}: {}", f.message)),
        None => StepError::invalid(format!("cannot read {shown}: {e}")),
    })?;
    let client = crate::pg::connect(&w.into).await?;
    let (created, notes) = globals::apply_script(&client, &text).await.map_err(StepError::failed)?;
    ctx.log(format!(
        "roles from {shown} (pg_dumpall --globals-only): {} created; the dump's owners and grants can be restored, but with no source fingerprint they are not compared",
        created.len()
    ));
    for n in &notes {
        ctx.log(format!("note: {n}"));
    }
    Ok(GlobalsOutputs { restored: true, created, ..Default::default() })
}

/// What `verify.fingerprint` proved of ownership and privileges, in its log.
pub(super) fn log_ownership_proof(
    ctx: &StepCtx,
    compared: bool,
    expected: &std::collections::BTreeMap<String, Vec<String>>,
) {
    let recorded = PRIVILEGE_KINDS.iter().any(|k| expected.contains_key(*k));
    ctx.log(match (recorded, compared) {
        (true, true) => "ownership, privileges (tables, columns, schemas, sequences, routines), default privileges, roles, memberships and role settings match the source",
        (true, false) => "ownership, privileges, memberships and role settings NOT compared (restored without owners and grants, no_owner): a weaker proof, the application's roles and grants are unproven",
        (false, _) => "the source fingerprint predates ownership and privileges: they are not compared",
    });
}
