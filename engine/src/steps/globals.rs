//! `globals.restore`: before a restore that keeps owners and grants, give the target server
//! the roles, memberships, role settings and database settings the backup's manifest
//! recorded (`pg::globals`), so the restored copy is owned and granted as the source was
//! and the application's roles can log in. A backup without them (another tool's dump, a
//! pgdrill backup from before them) is skipped with the reason: its roles and privileges
//! stay unproven.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Fields, Step, StepCtx, StepError, With};
use crate::backup::source::{self, Origin};
use crate::backup::Manifest;
use crate::pg::fingerprint::PRIVILEGE_KINDS;
use crate::pg::globals;

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct GlobalsWith {
    /// the backup whose manifest holds the roles (backup.pick's path)
    #[field(ty = "path")]
    backup: String,
    /// the database about to be restored into (a superuser's URL)
    into: String,
    /// the backup's key: its sealed password verifiers open under it
    #[field(ty = "secret")]
    key: Option<String>,
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
}

pub struct Restore;

impl Step for Restore {
    const NAME: &'static str = "globals.restore";
    const SUMMARY: &'static str = "Create the backup's roles (with memberships, role settings and, from an encrypted backup, passwords) and the database's owner and settings on the target, before a restore that keeps owners and grants.";
    type With = GlobalsWith;
    type Outputs = GlobalsOutputs;

    fn run(
        ctx: StepCtx,
        w: GlobalsWith,
    ) -> impl std::future::Future<Output = Result<GlobalsOutputs, StepError>> + Send {
        restore(ctx, w)
    }
}

const UNPROVEN: &str = "roles, ownership and privileges are unproven for it: restore with no_owner";

async fn restore(ctx: StepCtx, w: GlobalsWith) -> Result<GlobalsOutputs, StepError> {
    let path = ctx.backup_header(&w.backup).await?;
    let shown = crate::storage::remote::display(&path);
    if source::origin(&path) == Origin::Foreign {
        return Err(StepError::Skipped(format!(
            "{shown} was not made by pgdrill: it carries no roles (a dump of one database never does); {UNPROVEN}"
        )));
    }
    let m = Manifest::read(&path).map_err(StepError::from)?;
    let Some(g) = m.globals.as_ref() else {
        return Err(StepError::Skipped(format!(
            "{shown} was made before pgdrill kept roles in its manifest; {UNPROVEN}"
        )));
    };
    let verifiers = match (&g.verifiers, w.key.as_deref().filter(|k| !k.is_empty()), &m.kdf) {
        (Some(sealed), Some(secret), Some(kdf)) => {
            let (sealed, secret, kdf) = (sealed.clone(), secret.to_string(), kdf.clone());
            tokio::task::spawn_blocking(move || -> Result<BTreeMap<String, String>, String> {
                let k = crate::archive::KeySource::from_secret(&secret).derive_for(&kdf)?;
                globals::verifiers_from(&k.unseal(globals::VERIFIERS, &sealed)?)
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
    let client = crate::pg::connect(&w.into).await?;
    let database: String =
        client.query_one("select current_database()::text", &[]).await.map_err(super::pg_error)?.get(0);
    let applied = globals::apply(&client, &database, g, &verifiers).await.map_err(StepError::failed)?;
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
        ctx.log(format!("warning: {n}"));
    }
    Ok(GlobalsOutputs {
        restored: true,
        created: applied.created,
        existing: applied.existing,
        passwords: applied.with_password,
    })
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
