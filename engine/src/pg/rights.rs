//! What the connecting role may do to one database, asked before an operator restore changes
//! anything: an operator restore drops the database, creates it again with its owner,
//! encoding and locale, and, should anything fail, restores the safety snapshot of what was
//! there. If the role can do the first but not the rest, the database is lost; so every
//! missing right is found here, with the privilege named and the remedy to give it.
//!
//! Only catalogue queries: nothing here changes the server.

use tokio_postgres::Client;

use super::native::quote_ident;

/// The connecting role and what it may do server-wide.
#[derive(Debug, Clone)]
pub struct Role {
    pub name: String,
    pub superuser: bool,
    pub createdb: bool,
    pub createrole: bool,
}

pub async fn role(client: &Client) -> Result<Role, tokio_postgres::Error> {
    let r = client
        .query_one("select current_user::text, rolsuper, rolcreatedb, rolcreaterole from pg_roles where rolname = current_user", &[])
        .await?;
    Ok(Role { name: r.get(0), superuser: r.get(1), createdb: r.get(2), createrole: r.get(3) })
}

/// Problems with dropping `database` and creating it again owned by `owner` (None: it does
/// not exist yet, and is created owned by the connecting role). `client` is connected to
/// any database of the server.
pub async fn drop_and_create(
    client: &Client,
    role: &Role,
    database: &str,
    owner: Option<&str>,
) -> Result<Vec<String>, tokio_postgres::Error> {
    if role.superuser {
        return Ok(Vec::new());
    }
    let me = &role.name;
    let mut problems = Vec::new();
    let what = if owner.is_some() { "recreates" } else { "creates" };
    if !role.createdb {
        problems.push(format!(
            "role {me} cannot create databases (CREATEDB), and the restore {what} database `{database}`{}: connect as a superuser or grant CREATEDB to {me} (ALTER ROLE {} CREATEDB)",
            if owner.is_some() { " after dropping it, and again to put it back if anything fails" } else { "" },
            quote_ident(me)
        ));
    }
    if let Some(owner) = owner {
        // DROP DATABASE and ALTER DATABASE need the owner's privileges (membership with
        // INHERIT); CREATE DATABASE ... OWNER needs membership in the owner role.
        let r = client
            .query_one(
                "select pg_has_role(current_user, $1::text::name, 'USAGE'), pg_has_role(current_user, $1::text::name, 'MEMBER')",
                &[&owner],
            )
            .await?;
        let (usage, member): (bool, bool) = (r.get(0), r.get(1));
        if !usage {
            problems.push(format!(
                "role {me} does not own database `{database}` (its owner is {owner}), so it can neither block connections to it nor drop it: connect as {owner} or as a superuser, or grant {owner} to {me} (GRANT {} TO {})",
                quote_ident(owner),
                quote_ident(me)
            ));
        } else if !member {
            problems.push(format!(
                "role {me} is not a member of {owner}, so it cannot recreate database `{database}` owned by {owner}: connect as a superuser or grant {owner} to {me} (GRANT {} TO {})",
                quote_ident(owner),
                quote_ident(me)
            ));
        }
    }
    Ok(problems)
}

/// Problems with restoring the safety snapshot of the database `client` is connected to:
/// pg_restore sets every object's owner back (membership in each owner role needed), and
/// creates its extensions and event triggers (untrusted extensions and event triggers need
/// a superuser).
pub async fn put_back(client: &Client, role: &Role, database: &str) -> Result<Vec<String>, tokio_postgres::Error> {
    if role.superuser {
        return Ok(Vec::new());
    }
    let me = &role.name;
    let mut problems = Vec::new();
    // Owners of what pg_dump writes into the snapshot: user objects (not the system's, not
    // members of an extension, which the extension recreates) and default privileges.
    let rows = client
        .query(
            "with user_ns as (select oid from pg_namespace where nspname not in ('pg_catalog', 'information_schema') \
                 and nspname not like 'pg_toast%' and nspname not like 'pg_temp%'), \
             ext_members as (select classid, objid from pg_depend where deptype = 'e'), \
             owners(o) as ( \
               select relowner from pg_class where relnamespace in (select oid from user_ns) \
                 and (oid) not in (select objid from ext_members where classid = 'pg_class'::regclass) \
               union select nspowner from pg_namespace where oid in (select oid from user_ns) \
                 and oid not in (select objid from ext_members where classid = 'pg_namespace'::regclass) \
               union select proowner from pg_proc where pronamespace in (select oid from user_ns) \
                 and oid not in (select objid from ext_members where classid = 'pg_proc'::regclass) \
               union select typowner from pg_type where typnamespace in (select oid from user_ns) \
                 and oid not in (select objid from ext_members where classid = 'pg_type'::regclass) \
               union select lomowner from pg_largeobject_metadata \
               union select defaclrole from pg_default_acl) \
             select r.rolname::text from owners join pg_roles r on r.oid = owners.o \
             where not pg_has_role(current_user, r.oid, 'MEMBER') order by 1",
            &[],
        )
        .await?;
    let missing: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if !missing.is_empty() {
        let grants: Vec<String> = missing.iter().map(|o| quote_ident(o)).collect();
        problems.push(format!(
            "database `{database}` has objects owned by {}, and role {me} is not a member, so the safety snapshot could not be restored with their owners: connect as a superuser or grant {} to {me} (GRANT {} TO {})",
            missing.join(", "),
            missing.join(", "),
            grants.join(", "),
            quote_ident(me)
        ));
    }
    let rows = client
        .query(
            "select e.extname::text from pg_extension e where e.oid >= 16384 and not coalesce( \
               (select bool_or(v.trusted) from pg_available_extension_versions v \
                where v.name = e.extname and v.version = e.extversion), false) order by 1",
            &[],
        )
        .await?;
    let untrusted: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    if !untrusted.is_empty() {
        problems.push(format!(
            "database `{database}` uses extension{} {}, which only a superuser can create again: connect as a superuser",
            if untrusted.len() == 1 { "" } else { "s" },
            untrusted.join(", ")
        ));
    }
    let triggers: i64 = client.query_one("select count(*) from pg_event_trigger", &[]).await?.get(0);
    if triggers > 0 {
        problems.push(format!(
            "database `{database}` has {triggers} event trigger{}, which only a superuser can create again: connect as a superuser",
            if triggers == 1 { "" } else { "s" }
        ));
    }
    Ok(problems)
}

/// Problems with applying `settings` to the recreated database: another role's
/// `ALTER ROLE ... IN DATABASE ... SET` needs CREATEROLE, a superuser-only setting a superuser.
pub async fn settings(
    client: &Client,
    role: &Role,
    database: &str,
    settings: &super::dbsettings::DatabaseSettings,
) -> Result<Vec<String>, tokio_postgres::Error> {
    if role.superuser {
        return Ok(Vec::new());
    }
    let me = &role.name;
    let mut problems = Vec::new();
    for s in &settings.settings {
        if !s.role.is_empty() && s.role != *me && !role.createrole {
            problems.push(format!(
                "database `{database}` has a setting for role {} ({} = {}) that role {me} cannot set again without CREATEROLE: connect as a superuser or grant CREATEROLE to {me}",
                s.role, s.name, s.value
            ));
        }
        let context: Option<String> = client
            .query_opt("select context::text from pg_settings where name = $1", &[&s.name.to_ascii_lowercase()])
            .await?
            .map(|r| r.get(0));
        if context.as_deref() == Some("superuser") {
            problems.push(format!(
                "database `{database}` sets {} = {}, which only a superuser can set: connect as a superuser",
                s.name, s.value
            ));
        }
    }
    Ok(problems)
}
