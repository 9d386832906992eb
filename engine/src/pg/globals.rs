//! The cluster-level objects a database depends on, which pg_dump of the database leaves
//! out and `pg_dumpall --globals-only` holds for the whole cluster: the roles it references
//! (owners, grantees, policy roles, the database's owner and grantees, roles with settings
//! in it), their members and the groups they belong to, with memberships, attributes,
//! connection limits and role settings; the tablespaces it uses; the database's own owner
//! and settings. A backup captures them in its snapshot's transaction (`capture`) and
//! keeps them in its manifest; a restore creates what is missing on the target first
//! (`apply`), so pg_restore can keep owners and grants.
//!
//! Password verifiers (SCRAM) are secrets: they are kept only sealed under an encrypted
//! archive's key, and left out of an unencrypted backup (the caller warns).
//!
//! Every name and value reaches SQL quoted: names are data. An existing role is never
//! altered: it is reported, and its memberships and settings are left as they are.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio_postgres::Client;

use super::dbsettings::{self, DatabaseSettings};
use super::native::quote_ident;
use super::native::quote_literal as literal;

/// The roles a database references and the roles around them, by oid (a SQL fragment
/// selecting `oid`). Referenced: the database's owner, grantees of the database, roles with
/// settings in it, and every role an object of the database depends on (`pg_shdepend`:
/// owners, grantees, policy roles, default privileges), plus the bootstrap superuser, whose
/// objects are pinned and so have no such entries. Then their members, transitively (a login
/// role reads through a group), and the groups all of those belong to, transitively.
/// Predefined roles (`pg_*`) take part in memberships but are never created.
pub const ROLES_OF_DATABASE: &str = "with recursive db as (select oid, datdba, datacl from pg_database where datname = current_database()), \
     referenced(oid) as (select datdba from db union select 10::oid \
       union select refobjid from pg_shdepend where dbid = (select oid from db) and refclassid = 'pg_authid'::regclass \
       union select a.grantee from db, aclexplode(db.datacl) a where a.grantee <> 0 \
       union select setrole from pg_db_role_setting where setdatabase = (select oid from db) and setrole <> 0), \
     down(oid) as (select oid from referenced union select m.member from pg_auth_members m join down on m.roleid = down.oid), \
     up(oid) as (select oid from down union select m.roleid from pg_auth_members m join up on m.member = up.oid) \
     select oid from up";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    #[serde(default)]
    pub superuser: bool,
    #[serde(default)]
    pub inherit: bool,
    #[serde(default)]
    pub createrole: bool,
    #[serde(default)]
    pub createdb: bool,
    #[serde(default)]
    pub login: bool,
    #[serde(default)]
    pub replication: bool,
    #[serde(default)]
    pub bypassrls: bool,
    /// -1: no limit.
    pub connection_limit: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// The source's bootstrap superuser (it owns what nobody else does).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub bootstrap: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Membership {
    /// The group.
    pub role: String,
    pub member: String,
    pub admin: bool,
    /// PostgreSQL 16 and later: per membership (before, the member's `inherit` attribute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit: Option<bool>,
    /// PostgreSQL 16 and later: whether the member may SET ROLE to the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<bool>,
}

/// `ALTER ROLE ... SET` for every database (role-in-database settings are in the database's
/// settings).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RoleSetting {
    pub role: String,
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    pub name: String,
    pub owner: String,
    /// Empty for pg_default and pg_global.
    pub location: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseGlobals {
    pub owner: String,
    pub tablespace: String,
    /// `ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`, grants on the
    /// database, its comment and connection limit.
    pub settings: DatabaseSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Globals {
    pub roles: Vec<Role>,
    pub memberships: Vec<Membership>,
    pub role_settings: Vec<RoleSetting>,
    pub tablespaces: Vec<Tablespace>,
    pub database: DatabaseGlobals,
    /// Password verifiers (role -> SCRAM verifier) sealed under the archive's key
    /// (`Key::seal` with `VERIFIERS`): encrypted backups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifiers: Option<String>,
    /// Why the verifiers are not here, when they are not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifiers_left_out: Option<String>,
}

/// The label verifiers are sealed under.
pub const VERIFIERS: &str = "password verifiers";

/// What `capture` read, with the verifiers still in the clear: the caller seals them or
/// drops them.
pub struct Captured {
    pub globals: Globals,
    /// role -> verifier; None when this connection may not read them (not a superuser).
    pub verifiers: Option<BTreeMap<String, String>>,
}

async fn major(client: &Client) -> Result<u32, tokio_postgres::Error> {
    Ok((client.query_one("select current_setting('server_version_num')::int", &[]).await?.get::<_, i32>(0) / 10000)
        as u32)
}

/// A role from a row whose first ten columns are, in order, `rolname::text, rolsuper,
/// rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls,
/// rolconnlimit, rolvaliduntil::text`: the column list `capture` and `plan` both select.
fn role_of(r: &tokio_postgres::Row, bootstrap: bool) -> Role {
    Role {
        name: r.get(0),
        superuser: r.get(1),
        inherit: r.get(2),
        createrole: r.get(3),
        createdb: r.get(4),
        login: r.get(5),
        replication: r.get(6),
        bypassrls: r.get(7),
        connection_limit: r.get(8),
        valid_until: r.get(9),
        bootstrap,
    }
}

/// Read the globals of the connected database, in the caller's transaction.
pub async fn capture(client: &Client) -> Result<Captured, tokio_postgres::Error> {
    let major = major(client).await?;
    let rows = client
        .query(
            format!(
                "select r.rolname::text, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin, r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text, r.oid = 10 \
                 from pg_roles r where r.oid in ({ROLES_OF_DATABASE}) and not (r.oid < 16384 and r.oid <> 10) order by 1"
            )
            .as_str(),
            &[],
        )
        .await?;
    let roles: Vec<Role> = rows.iter().map(|r| role_of(r, r.get(10))).collect();
    let options = if major >= 16 { "m.inherit_option, m.set_option" } else { "null::bool, null::bool" };
    let rows = client
        .query(
            format!(
                "select distinct g.rolname::text, u.rolname::text, m.admin_option, {options} from pg_auth_members m \
                 join pg_roles g on g.oid = m.roleid join pg_roles u on u.oid = m.member \
                 where m.member in ({ROLES_OF_DATABASE}) order by 1, 2"
            )
            .as_str(),
            &[],
        )
        .await?;
    let mut memberships: Vec<Membership> = rows
        .iter()
        .map(|r| Membership { role: r.get(0), member: r.get(1), admin: r.get(2), inherit: r.get(3), set: r.get(4) })
        .collect();
    // Granted twice by two grantors: one membership here, with the widest options.
    memberships.dedup_by(|b, a| {
        let same = a.role == b.role && a.member == b.member;
        if same {
            a.admin |= b.admin;
            a.inherit = a.inherit.max(b.inherit);
            a.set = a.set.max(b.set);
        }
        same
    });
    let rows = client
        .query(
            format!(
                "select r.rolname::text, c.setting from pg_db_role_setting s join pg_roles r on r.oid = s.setrole \
                 cross join lateral unnest(s.setconfig) c(setting) where s.setdatabase = 0 and s.setrole in ({ROLES_OF_DATABASE})"
            )
            .as_str(),
            &[],
        )
        .await?;
    let role_settings: Vec<RoleSetting> = dbsettings::role_settings(&rows)
        .into_iter()
        .map(|(role, name, value)| RoleSetting { role, name, value })
        .collect();
    let rows = client
        .query(
            "select t.spcname::text, pg_get_userbyid(t.spcowner)::text, pg_tablespace_location(t.oid) from pg_tablespace t \
             where t.oid in (select reltablespace from pg_class where reltablespace <> 0 \
               union select dattablespace from pg_database where datname = current_database()) order by 1",
            &[],
        )
        .await?;
    let tablespaces = rows.iter().map(|r| Tablespace { name: r.get(0), owner: r.get(1), location: r.get(2) }).collect();
    let row = client
        .query_one(
            "select current_database()::text, pg_get_userbyid(d.datdba)::text, t.spcname::text from pg_database d \
             join pg_tablespace t on t.oid = d.dattablespace where d.datname = current_database()",
            &[],
        )
        .await?;
    let (name, owner, tablespace): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    let settings = dbsettings::capture(client, &name).await?.unwrap_or_default();
    // Only a superuser reads pg_authid; without it there is nothing to keep.
    let readable: bool =
        client.query_one("select has_table_privilege('pg_catalog.pg_authid', 'select')", &[]).await?.get(0);
    let verifiers = if readable {
        let rows = client
            .query(
                format!(
                    "select rolname::text, rolpassword from pg_authid where rolpassword is not null and oid in ({ROLES_OF_DATABASE})"
                )
                .as_str(),
                &[],
            )
            .await?;
        Some(rows.iter().map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))).collect())
    } else {
        None
    };
    Ok(Captured {
        globals: Globals {
            roles,
            memberships,
            role_settings,
            tablespaces,
            database: DatabaseGlobals { owner, tablespace, settings },
            verifiers: None,
            verifiers_left_out: None,
        },
        verifiers,
    })
}

impl Globals {
    /// "4 roles, 2 memberships, 3 role settings, 1 tablespace".
    pub fn summary(&self) -> String {
        let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
        format!(
            "{}, {}, {}, {}",
            n(self.roles.len(), "role"),
            n(self.memberships.len(), "membership"),
            n(self.role_settings.len(), "role setting"),
            n(self.tablespaces.len(), "tablespace")
        )
    }
}

/// What `apply` did.
#[derive(Debug, Default)]
pub struct Applied {
    pub created: Vec<String>,
    /// Roles that were there already: left as they are.
    pub existing: Vec<String>,
    /// Roles created with their password verifier.
    pub with_password: usize,
    /// Lines for the log: what could not be brought over, and why.
    pub notes: Vec<String>,
}

/// `CREATE ROLE` for `r`, with its verifier when there is one.
pub fn create_role_sql(r: &Role, verifier: Option<&str>) -> String {
    let yes = |b: bool, w: &str| if b { w.to_string() } else { format!("no{w}") };
    let mut sql = format!(
        "create role {} with {} {} {} {} {} {} {} connection limit {}",
        quote_ident(&r.name),
        yes(r.superuser, "superuser"),
        yes(r.inherit, "inherit"),
        yes(r.createrole, "createrole"),
        yes(r.createdb, "createdb"),
        yes(r.login, "login"),
        yes(r.replication, "replication"),
        yes(r.bypassrls, "bypassrls"),
        r.connection_limit
    );
    if let Some(v) = &r.valid_until {
        sql.push_str(&format!(" valid until {}", literal(v)));
    }
    if let Some(v) = verifier {
        sql.push_str(&format!(" password {}", literal(v)));
    }
    sql
}

/// `GRANT role TO member` with the options the target server has.
pub fn grant_sql(m: &Membership, target_major: u32) -> String {
    let mut opts = Vec::new();
    if m.admin {
        opts.push("admin true".to_string());
    }
    if target_major >= 16 {
        if let Some(i) = m.inherit {
            opts.push(format!("inherit {i}"));
        }
        if let Some(s) = m.set {
            opts.push(format!("set {s}"));
        }
    }
    let with = if opts.is_empty() {
        String::new()
    } else if target_major >= 16 {
        format!(" with {}", opts.join(", "))
    } else {
        " with admin option".to_string()
    };
    format!("grant {} to {}{with}", quote_ident(&m.role), quote_ident(&m.member))
}

/// Bring `g` to the server of `client` for the database `database` (just restored into, or
/// about to be): create the roles it lacks (with their verifiers when given), their
/// memberships and role settings, then give the database its owner and settings. Roles that
/// exist are left untouched. Predefined roles are never created.
///
/// Without `database_settings`, the database's own settings (`ALTER DATABASE ... SET`) and
/// superusers' settings in it are left out: before a restore they would bind its sessions
/// (a read-only default stops pg_restore), and on a throwaway server the checks' own (a
/// preload library the server lacks). Applied again with them once the restore is done.
pub async fn apply(
    client: &Client,
    database: &str,
    g: &Globals,
    verifiers: &BTreeMap<String, String>,
    database_settings: bool,
) -> Result<Applied, String> {
    let mut out = apply_roles(client, g, verifiers).await?;
    apply_database(client, database, g, database_settings, &mut out).await?;
    Ok(out)
}

/// A verifier never reaches a message.
fn describe_sql(sql: &str, e: tokio_postgres::Error) -> String {
    let shown = match sql.find(" password '") {
        Some(i) => format!("{} password ...", &sql[..i]),
        None => sql.to_string(),
    };
    format!("`{shown}`: {}", super::describe(&e))
}

/// The roles part of `apply` alone: the roles the server lacks, with their memberships and
/// role settings; nothing of any database (an operator restore keeps the target's own owner
/// and settings, and may run this connected to the maintenance database).
pub async fn apply_roles(
    client: &Client,
    g: &Globals,
    verifiers: &BTreeMap<String, String>,
) -> Result<Applied, String> {
    apply_roles_recorded(client, g, verifiers, &mut |_, _| Ok(())).await
}

/// `apply_roles`, telling `record` each role's name and OID after its CREATE ROLE and before
/// that commits: an operator restore writes it to its journal there, so a crash leaves no
/// role it created unrecorded (a journal naming a role whose CREATE never committed names an
/// OID no role has, and a rollback leaves whatever holds that name alone).
pub async fn apply_roles_recorded(
    client: &Client,
    g: &Globals,
    verifiers: &BTreeMap<String, String>,
    record: &mut (dyn FnMut(&str, u32) -> Result<(), String> + Send),
) -> Result<Applied, String> {
    let describe = describe_sql;
    let target_major = major(client).await.map_err(|e| super::describe(&e))?;
    let existing: Vec<String> = client
        .query("select rolname::text from pg_roles", &[])
        .await
        .map_err(|e| super::describe(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Applied::default();
    for r in &g.roles {
        if existing.contains(&r.name) {
            out.existing.push(r.name.clone());
            continue;
        }
        let v = verifiers.get(&r.name).map(String::as_str);
        let sql = create_role_sql(r, v);
        client.batch_execute("begin").await.map_err(|e| super::describe(&e))?;
        let created = async {
            client.batch_execute(&sql).await.map_err(|e| describe(&sql, e))?;
            let oid: u32 = client
                .query_one("select oid from pg_roles where rolname = $1", &[&r.name])
                .await
                .map_err(|e| super::describe(&e))?
                .get(0);
            record(&r.name, oid)?;
            client.batch_execute("commit").await.map_err(|e| super::describe(&e))
        }
        .await;
        if let Err(e) = created {
            let _ = client.batch_execute("rollback").await;
            return Err(e);
        }
        out.with_password += usize::from(v.is_some());
        out.created.push(r.name.clone());
    }
    // Memberships and settings only for roles created here: an existing role is never
    // changed.
    let ours = |name: &str| out.created.iter().any(|c| c == name);
    for m in &g.memberships {
        if !ours(&m.member) {
            continue;
        }
        let sql = grant_sql(m, target_major);
        if let Err(e) = client.batch_execute(&sql).await {
            out.notes.push(describe(&sql, e));
        }
    }
    for s in &g.role_settings {
        if !ours(&s.role) {
            continue;
        }
        let sql = format!(
            "alter role {} set {} = {}",
            quote_ident(&s.role),
            quote_ident(&s.name),
            dbsettings::value_sql(&s.name, &s.value)
        );
        if let Err(e) = client.batch_execute(&sql).await {
            out.notes.push(describe(&sql, e));
        }
    }
    Ok(out)
}

/// The database part of `apply`: its owner and settings, and the tablespaces it used, named.
async fn apply_database(
    client: &Client,
    database: &str,
    g: &Globals,
    database_settings: bool,
    out: &mut Applied,
) -> Result<(), String> {
    let describe = describe_sql;
    let sql = format!("alter database {} owner to {}", quote_ident(database), quote_ident(&g.database.owner));
    client.batch_execute(&sql).await.map_err(|e| describe(&sql, e))?;
    // Settings the target has already (an earlier run, a template) are replaced.
    let current = dbsettings::capture(client, database).await.map_err(|e| super::describe(&e))?.unwrap_or_default();
    for s in &current.settings {
        let sql = if s.role.is_empty() {
            format!("alter database {} reset {}", quote_ident(database), quote_ident(&s.name))
        } else {
            format!(
                "alter role {} in database {} reset {}",
                quote_ident(&s.role),
                quote_ident(database),
                quote_ident(&s.name)
            )
        };
        client.batch_execute(&sql).await.map_err(|e| describe(&sql, e))?;
    }
    let mut settings = g.database.settings.clone();
    if !database_settings {
        let superuser = |name: &str| g.roles.iter().any(|r| r.name == name && r.superuser);
        let before = settings.settings.len();
        settings.settings.retain(|s| !s.role.is_empty() && !superuser(&s.role));
        if settings.settings.len() < before {
            out.notes.push(format!(
                "{} setting{} of the database itself or of a superuser in it not applied (database_settings: false; apply them after the restore)",
                before - settings.settings.len(),
                if before - settings.settings.len() == 1 { "" } else { "s" }
            ));
        }
    }
    dbsettings::apply(client, database, &settings).await?;
    for t in &g.tablespaces {
        if t.name != "pg_default" && t.name != "pg_global" {
            out.notes.push(format!(
                "tablespace {} (at {}) is not created here: a restore puts its tables in the default tablespace only with --no-tablespaces",
                quote_ident(&t.name),
                t.location
            ));
        }
    }
    Ok(())
}

/// What bringing `g` to a server would do, before anything changes: the roles it lacks,
/// and how the roles it has differ from the backup's (attributes, memberships, role
/// settings), one line each. `apply` creates the missing ones and never alters the others.
#[derive(Debug, Default)]
pub struct Plan {
    pub missing: Vec<String>,
    pub differing: Vec<String>,
}

/// The rows of a two-column text query, as pairs.
async fn text_pairs(client: &Client, sql: &str) -> Result<Vec<(String, String)>, tokio_postgres::Error> {
    Ok(client.query(sql, &[]).await?.iter().map(|r| (r.get(0), r.get(1))).collect())
}

pub async fn plan(client: &Client, g: &Globals) -> Result<Plan, String> {
    let err = |e: tokio_postgres::Error| super::describe(&e);
    let rows = client
        .query(
            "select rolname::text, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil::text from pg_roles",
            &[],
        )
        .await
        .map_err(err)?;
    let here: BTreeMap<String, Role> = rows
        .iter()
        .map(|r| {
            let role = role_of(r, false);
            (role.name.clone(), role)
        })
        .collect();
    let memberships = text_pairs(
        client,
        "select g.rolname::text, u.rolname::text from pg_auth_members m join pg_roles g on g.oid = m.roleid join pg_roles u on u.oid = m.member",
    )
    .await
    .map_err(err)?;
    let settings = text_pairs(
        client,
        "select r.rolname::text, c.setting from pg_db_role_setting s join pg_roles r on r.oid = s.setrole cross join lateral unnest(s.setconfig) c(setting) where s.setdatabase = 0",
    )
    .await
    .map_err(err)?;
    let mut out = Plan::default();
    for want in &g.roles {
        let Some(have) = here.get(&want.name) else {
            out.missing.push(want.name.clone());
            continue;
        };
        let name = quote_ident(&want.name);
        for (what, w, h) in [
            ("superuser", want.superuser, have.superuser),
            ("inherit", want.inherit, have.inherit),
            ("createrole", want.createrole, have.createrole),
            ("createdb", want.createdb, have.createdb),
            ("login", want.login, have.login),
            ("replication", want.replication, have.replication),
            ("bypassrls", want.bypassrls, have.bypassrls),
        ] {
            if w != h {
                out.differing.push(format!("role {name}: {what} is {h} here, {w} in the backup"));
            }
        }
        if want.connection_limit != have.connection_limit {
            out.differing.push(format!(
                "role {name}: connection limit is {} here, {} in the backup",
                have.connection_limit, want.connection_limit
            ));
        }
        if want.valid_until != have.valid_until {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
            out.differing.push(format!(
                "role {name}: valid until {} here, {} in the backup",
                show(&have.valid_until),
                show(&want.valid_until)
            ));
        }
    }
    for m in &g.memberships {
        if here.contains_key(&m.member) && !memberships.iter().any(|(r, u)| *r == m.role && *u == m.member) {
            out.differing.push(format!(
                "role {}: not a member of {} here, as in the backup",
                quote_ident(&m.member),
                quote_ident(&m.role)
            ));
        }
    }
    for s in &g.role_settings {
        let line = format!("{}={}", s.name, s.value);
        if here.contains_key(&s.role) && !settings.iter().any(|(r, l)| *r == s.role && *l == line) {
            out.differing.push(format!("role {}: setting {line} of the backup is not set here", quote_ident(&s.role)));
        }
    }
    Ok(out)
}

/// The globals a manifest keeps: the verifiers sealed under `key` (an encrypted backup), or
/// left out with the reason (returned for the caller's warning too).
pub fn keep(captured: Captured, key: Option<&crate::archive::Key>) -> (Globals, Option<String>) {
    let Captured { mut globals, verifiers } = captured;
    let warning = match (verifiers, key) {
        (Some(v), _) if v.is_empty() => None,
        (Some(v), Some(k)) => match serde_json::to_vec(&v).map_err(|e| e.to_string()).and_then(|j| k.seal(VERIFIERS, &j)) {
            Ok(sealed) => {
                globals.verifiers = Some(sealed);
                None
            }
            Err(e) => Some(format!("the password verifiers of {} roles are not kept: {e}", v.len())),
        },
        (Some(v), None) => Some(format!(
            "the password verifiers of {} role{} are not kept: this backup is not encrypted, and a verifier is a secret; restored roles will have no password (encrypt the backup to keep them)",
            v.len(),
            if v.len() == 1 { "" } else { "s" }
        )),
        (None, _) => Some(
            "the password verifiers are not kept: the backup's connection is not a superuser and cannot read them; restored roles will have no password".to_string(),
        ),
    };
    globals.verifiers_left_out = warning.clone();
    (globals, warning)
}

/// Parse the verifiers `seal`ed in a manifest.
pub fn verifiers_from(json: &[u8]) -> Result<BTreeMap<String, String>, String> {
    serde_json::from_slice(json).map_err(|e| format!("sealed verifiers unreadable: {e}"))
}

/// The statements of a `pg_dumpall --globals-only` script, one by one: psql's meta-commands
/// (`\connect`, `\restrict`) and comments left out; a `;` inside a quoted literal or
/// identifier does not end a statement.
pub fn script_statements(script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for line in script.lines() {
        if quote.is_none() && cur.trim().is_empty() {
            let t = line.trim_start();
            if t.starts_with('\\') || t.starts_with("--") {
                continue;
            }
        }
        for c in line.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == ';' => {
                    let stmt = cur.trim().to_string();
                    if !stmt.is_empty() {
                        out.push(stmt);
                    }
                    cur.clear();
                    continue;
                }
                None => {}
            }
            cur.push(c);
        }
        cur.push('\n');
    }
    let rest = cur.trim();
    if !rest.is_empty() && !rest.starts_with("--") {
        out.push(rest.to_string());
    }
    out
}

/// Run a `pg_dumpall --globals-only` script on the server of `client`, statement by
/// statement: a role or tablespace that exists already (the server's own superuser) or
/// cannot be made here (a tablespace's directory) is a note, not a failure. Returns the
/// roles it created and the notes.
pub async fn apply_script(client: &Client, script: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let before: Vec<String> = role_names(client).await?;
    let mut notes = Vec::new();
    let mut left = BTreeMap::<String, usize>::new();
    for stmt in script_statements(script) {
        // An existing role is never altered: the script would give this server's own
        // superuser the source's password, and the restore could no longer connect.
        if let Some(r) = role_changed(&stmt).filter(|r| before.contains(r)) {
            *left.entry(r).or_default() += 1;
            continue;
        }
        if let Err(e) = client.batch_execute(&stmt).await {
            // A statement with a password is never shown.
            let shown = match stmt.to_ascii_lowercase().find("password") {
                Some(i) => format!("{} password ...", &stmt[..i].trim_end()),
                None => stmt.clone(),
            };
            notes.push(format!("`{shown}`: {}", super::describe(&e)));
        }
    }
    for (r, n) in left {
        notes.push(format!(
            "role {} exists here: its {n} statement{} in the script left out (an existing role is never altered)",
            quote_ident(&r),
            if n == 1 { "" } else { "s" }
        ));
    }
    let created = role_names(client).await?.into_iter().filter(|r| !before.contains(r)).collect();
    Ok((created, notes))
}

/// The role a globals script's statement creates or changes: `CREATE ROLE r`, `ALTER ROLE
/// r`, `COMMENT ON ROLE r`, and the member of `GRANT g TO r`.
fn role_changed(stmt: &str) -> Option<String> {
    let lower = stmt.to_ascii_lowercase();
    let rest = ["create role ", "alter role ", "alter user ", "comment on role "]
        .iter()
        .find_map(|p| lower.starts_with(p).then(|| &stmt[p.len()..]))
        .or_else(|| {
            // `GRANT g TO r [WITH ...] [GRANTED BY ...]`; privileges on objects are not in a
            // globals script.
            lower.starts_with("grant ").then(|| lower.rfind(" to ").map(|i| &stmt[i + 4..]))?
        })?;
    let rest = rest.trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = q.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    name.push('"');
                    chars.next();
                }
                '"' => return Some(name),
                c => name.push(c),
            }
        }
        None
    } else {
        let name: String = rest.chars().take_while(|c| !c.is_whitespace() && *c != ';').collect();
        (!name.is_empty()).then(|| name.to_lowercase())
    }
}

async fn role_names(client: &Client) -> Result<Vec<String>, String> {
    Ok(client
        .query("select rolname::text from pg_roles order by 1", &[])
        .await
        .map_err(|e| super::describe(&e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_quoted_and_options_follow_the_target() {
        let r = Role {
            name: "app\"x".into(),
            superuser: false,
            inherit: true,
            createrole: false,
            createdb: false,
            login: true,
            replication: false,
            bypassrls: false,
            connection_limit: 5,
            valid_until: Some("2030-01-01 00:00:00+00".into()),
            bootstrap: false,
        };
        assert_eq!(
            create_role_sql(&r, Some("SCRAM'x")),
            "create role \"app\"\"x\" with nosuperuser inherit nocreaterole nocreatedb login noreplication nobypassrls connection limit 5 valid until '2030-01-01 00:00:00+00' password 'SCRAM''x'"
        );
        let m =
            Membership { role: "ro".into(), member: "a b".into(), admin: true, inherit: Some(false), set: Some(true) };
        assert_eq!(grant_sql(&m, 17), "grant \"ro\" to \"a b\" with admin true, inherit false, set true");
        assert_eq!(grant_sql(&m, 15), "grant \"ro\" to \"a b\" with admin option");
        let plain = Membership { admin: false, inherit: None, set: None, ..m };
        assert_eq!(grant_sql(&plain, 17), "grant \"ro\" to \"a b\"");
    }

    #[test]
    fn the_role_a_globals_statement_changes_is_found() {
        assert_eq!(role_changed("ALTER ROLE postgres WITH SUPERUSER PASSWORD 'x'").as_deref(), Some("postgres"));
        assert_eq!(role_changed("CREATE ROLE \"erp \"\"r\"").as_deref(), Some("erp \"r"));
        assert_eq!(
            role_changed("GRANT erp_readonly TO \"erp reader\" WITH INHERIT TRUE GRANTED BY postgres").as_deref(),
            Some("erp reader")
        );
        assert_eq!(role_changed("GRANT erp_readonly TO app GRANTED BY postgres").as_deref(), Some("app"));
        assert_eq!(role_changed("SET default_transaction_read_only = off"), None);
    }

    #[test]
    fn a_globals_script_splits_into_statements_without_meta_commands() {
        let script = "--\n-- PostgreSQL database cluster dump\n--\n\\restrict abc\nSET default_transaction_read_only = off;\n\nCREATE ROLE \"a;b\";\nALTER ROLE \"a;b\" WITH LOGIN PASSWORD 'x;y''z';\n\\unrestrict abc\n";
        assert_eq!(
            script_statements(script),
            vec![
                "SET default_transaction_read_only = off",
                "CREATE ROLE \"a;b\"",
                "ALTER ROLE \"a;b\" WITH LOGIN PASSWORD 'x;y''z'",
            ]
        );
    }
}
