//! Operator restore building blocks: `restore.preflight`, `operator.confirm`,
//! `database.snapshot`, `database.terminate`, `database.drop`, `database.create` and
//! `database.restore_snapshot`, the rollback that puts a dropped database back.
//!
//! The rule these steps keep between them: no database is dropped without a safety
//! snapshot of it on disk (`database.drop` checks), and nothing changes before the operator
//! confirmed (`operator.confirm`, or `pgdrill run --yes`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio_postgres::Client;

use super::{pg_error, rfc3339, Fields, step, StepCtx, StepError, With, WithError};
use crate::archive::{Codec, KeySource};
use crate::backup::layout::LocalStore;
use crate::backup::restore::{self, RestoreOptions};
use crate::backup::{self, find_tool, CreateOptions, Format, Manifest};
use crate::error::Class;
use crate::pg::fingerprint::{Fingerprint, Mode};
use crate::pg::native::{parse_major, quote_ident};
use crate::pg::{dbsettings, rights};
use crate::restore::Phase as JPhase;
use super::journal::{drop_database, drop_leftover_private, oid_of};

fn postgres() -> String {
    "postgres".into()
}

fn mib(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

/// A connection to the server's maintenance database, for CREATE/DROP DATABASE.
async fn admin(url: &str, maintenance_db: &str) -> Result<Client, StepError> {
    Ok(crate::pg::connect_to(url, maintenance_db).await?)
}

/// What the server knows about one database: as the journal reads it, with its size and the
/// other sessions connected to it.
#[derive(Debug, Clone, Default)]
struct DbInfo {
    db: super::journal::Current,
    size: u64,
    sessions: i64,
}

async fn db_info(client: &Client, database: &str) -> Result<Option<DbInfo>, StepError> {
    let more = ", pg_database_size(d.oid), \
                (select count(*) from pg_stat_activity a where a.datname = d.datname and a.pid <> pg_backend_pid())";
    let found = super::journal::current_with(client, database, more).await?;
    Ok(found.map(|(db, r)| DbInfo { db, size: r.get::<_, i64>(6).max(0) as u64, sessions: r.get(7) }))
}

/// How to create a database again: owner, encoding and locale kept.
#[derive(Debug, Clone, Default)]
struct Shape {
    owner: Option<String>,
    encoding: Option<String>,
    lc_collate: Option<String>,
    lc_ctype: Option<String>,
    /// Born refusing connections (CONNECTION LIMIT 0) until it is verified.
    blocked: bool,
    /// Locale provider, ICU locale, collation version, tablespace of the original.
    properties: Option<crate::restore::Properties>,
}

fn create_sql(database: &str, shape: &Shape, oid: Option<u32>) -> String {
    let lit = crate::pg::native::quote_literal;
    let mut sql = format!("create database {} template template0", quote_ident(database));
    if let Some(oid) = oid {
        sql.push_str(&format!(" oid {oid}"));
    }
    if let Some(o) = &shape.owner {
        sql.push_str(&format!(" owner {}", quote_ident(o)));
    }
    if let Some(e) = &shape.encoding {
        sql.push_str(&format!(" encoding {}", lit(e)));
    }
    if let Some(c) = &shape.lc_collate {
        sql.push_str(&format!(" lc_collate {}", lit(c)));
    }
    if let Some(c) = &shape.lc_ctype {
        sql.push_str(&format!(" lc_ctype {}", lit(c)));
    }
    if let Some(p) = &shape.properties {
        sql.push_str(&p.create_options());
    }
    if shape.blocked {
        sql.push_str(" connection limit 0");
    }
    sql
}

/// For a step's `with:`: restore.lock's `properties`, or nothing (null, "").
fn opt_properties<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<crate::restore::Properties>, D::Error> {
    map_or_nothing(d, "`properties` is the map restore.lock outputs as `properties`")
}

/// A map another step outputs (`T`), or nothing: null or blank text (the output of a step
/// that had none); other text is refused, saying what the field is (`is_what`).
fn map_or_nothing<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
    is_what: &str,
) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given<T> {
        Map(T),
        Text(String),
    }
    match Option::<Given<T>>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Map(p)) => Ok(Some(p)),
        Some(Given::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Given::Text(t)) => Err(serde::de::Error::custom(format!("{is_what}, not the text `{t}`"))),
    }
}

/// Whether a database pgdrill recreates can be born refusing connections: CONNECTION LIMIT 0
/// binds every role but superusers (the owner included), so it works when pgdrill itself
/// connects as a superuser, and pg_restore and the checks still get in. (ALLOW_CONNECTIONS
/// false would lock out pg_restore too.) A role that is not a superuser would lock itself
/// out, so its database is recreated open, as before.
async fn can_block(ctx: &StepCtx, client: &Client, database: &str) -> Result<bool, StepError> {
    let superuser: bool = client
        .query_one("select rolsuper from pg_roles where rolname = current_user", &[])
        .await
        .map_err(pg_error)?
        .get(0);
    if !superuser {
        ctx.log(format!(
            "the connecting role is not a superuser: database {database} accepts connections while it is restored (stop the application with stop_command)"
        ));
    }
    Ok(superuser)
}

/// The settings to give a database just created: without its connection limit when it is
/// born blocked, and, when `defer`, without the settings that bind sessions (`ALTER
/// DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`: a read-only default would stop
/// pg_restore). `open_connections` gives both once it is verified.
fn while_blocked(
    settings: Option<&dbsettings::DatabaseSettings>,
    blocked: bool,
    defer: bool,
) -> Option<dbsettings::DatabaseSettings> {
    settings.cloned().map(|mut s| {
        if blocked {
            s.connection_limit = -1;
        }
        if defer {
            s.settings.clear();
        }
        s
    })
}

/// Give a restored database the settings that bind sessions, held back by `while_blocked`
/// until pg_restore is done (setting one again is harmless).
async fn give_session_settings(
    client: &Client,
    database: &str,
    settings: Option<&dbsettings::DatabaseSettings>,
) -> Result<(), StepError> {
    let Some(st) = settings.filter(|s| !s.settings.is_empty()) else { return Ok(()) };
    let own =
        dbsettings::DatabaseSettings { settings: st.settings.clone(), grants: None, comment: None, connection_limit: -1 };
    dbsettings::apply(client, database, &own)
        .await
        .map_err(|e| StepError::failed(format!("giving database `{database}` its settings again: {e}")))
}

/// Once a recreated database is verified: give it the settings that bind sessions
/// (`give_session_settings`), then let connections in: its connection limit as captured
/// (none when nothing was captured).
async fn open_connections(
    ctx: &StepCtx,
    client: &Client,
    database: &str,
    settings: Option<&dbsettings::DatabaseSettings>,
) -> Result<(), StepError> {
    give_session_settings(client, database, settings).await?;
    let want = settings.map(|s| s.connection_limit).unwrap_or(-1);
    let now: Option<i32> = client
        .query_opt("select datconnlimit from pg_database where datname = $1", &[&database])
        .await
        .map_err(pg_error)?
        .map(|r| r.get(0));
    if now.is_some_and(|n| n != want) {
        client
            .batch_execute(&format!("alter database {} connection limit {want}", quote_ident(database)))
            .await
            .map_err(|e| {
                StepError::failed(format!("letting connections into `{database}` again: {}", crate::pg::describe(&e)))
            })?;
        ctx.log(format!("database {database} accepts connections again (connection limit {want})"));
    }
    Ok(())
}

/// The journal a step was given, read (a given journal that is missing stops the step).
fn given_journal(ctx: &StepCtx, path: Option<&str>) -> Result<Option<crate::restore::Journal>, StepError> {
    match path.filter(|p| !p.is_empty()) {
        Some(p) => super::journal::read_required(&ctx.local("journal", p)?).map(Some),
        None => Ok(None),
    }
}

/// Refuse to `what` database `database` (OID `found`, looked up immediately before) unless it
/// is one this restore's journal recorded: the original, as it was before anything changed,
/// or the one this restore created. A database that appeared under the name later (created
/// by someone else during `stop_command`, say) is never dropped or blocked. Without a
/// journal there is nothing to compare with.
fn recorded(j: Option<&crate::restore::Journal>, database: &str, found: u32, what: &str) -> Result<(), StepError> {
    let Some(j) = j else { return Ok(()) };
    if (j.existed && j.database_oid == Some(found)) || j.created_oid == Some(found) {
        return Ok(());
    }
    let mut known = Vec::new();
    match (j.existed, j.database_oid) {
        (true, Some(o)) => known.push(format!("the original had OID {o}")),
        (true, None) => known.push("the original's OID was not recorded".to_string()),
        (false, _) => known.push("it did not exist when the restore began".to_string()),
    }
    if let Some(o) = j.created_oid {
        known.push(format!("this restore created OID {o}"));
    }
    Err(StepError::failed(format!(
        "refusing to {what} database `{database}` (OID {found}): it is not the database this restore's journal recorded ({}), so it appeared after the restore began; it was left as it is",
        known.join(", ")
    )))
}

/// An OID for a database this restore is about to create, chosen before the CREATE so the
/// journal records it first (PostgreSQL 15 and later take `OID` in CREATE DATABASE): a run
/// killed while its CREATE DATABASE still runs on the server leaves a database whose OID the
/// journal knows, and one someone else creates meanwhile never matches it. Drawn from far
/// above the OIDs the server hands out. None before 15: the OID is recorded right after the
/// CREATE then.
async fn planned_oid(client: &Client) -> Result<Option<u32>, StepError> {
    for _ in 0..5 {
        let row = client
            .query_one(
                "select current_setting('server_version_num')::int >= 150000, c.oid, \
                 exists (select 1 from pg_database d where d.oid::bigint = c.oid) \
                 from (select (1073741824 + floor(random() * 3000000000))::bigint as oid) c",
                &[],
            )
            .await
            .map_err(pg_error)?;
        let (takes_oid, oid, taken): (bool, i64, bool) = (row.get(0), row.get(1), row.get(2));
        if !takes_oid {
            return Ok(None);
        }
        if !taken {
            return Ok(u32::try_from(oid).ok());
        }
    }
    Ok(None)
}

/// What the private names of databases being restored begin with.
const PRIVATE_PREFIX: &str = "pgdrill_restoring_";

/// A name no application knows, for a database while it is restored: nobody (a superuser
/// included) reaches a half-restored database by its real name, which it takes only once
/// verified (`rename_into_place`).
async fn private_name(client: &Client) -> Result<String, StepError> {
    for _ in 0..5 {
        let hex: String = client
            .query_one("select lpad(to_hex((random() * 4294967295)::bigint), 8, '0')", &[])
            .await
            .map_err(pg_error)?
            .get(0);
        let name = format!("{PRIVATE_PREFIX}{hex}");
        if oid_of(client, &name).await?.is_none() {
            return Ok(name);
        }
    }
    Err(StepError::environment("no free private name for the database to restore into after 5 tries"))
}

/// Put the verified copy `private` in place as `database`: connections to it refused
/// (superusers too), its sessions ended (pgdrill's own checks may still linger), renamed,
/// then let in again: its connection limit still keeps every role but superusers out until
/// `open_connections`. A database that appeared under the name meanwhile is never touched.
async fn rename_into_place(
    client: &Client,
    private: &str,
    database: &str,
    j: Option<&crate::restore::Journal>,
) -> Result<(), StepError> {
    let Some(oid) = oid_of(client, private).await? else {
        return Err(StepError::failed(format!("database `{private}`, the verified copy of `{database}`, is gone")));
    };
    recorded(j, private, oid, "rename")?;
    if let Some(other) = oid_of(client, database).await? {
        return Err(StepError::failed(format!(
            "cannot rename the verified copy `{private}` to `{database}`: a database `{database}` (OID {other}) is there, which appeared after the original was dropped; it was left as it is"
        )));
    }
    let (p, d) = (quote_ident(private), quote_ident(database));
    let sql_failed = |what: &str, e: tokio_postgres::Error| {
        StepError::failed(format!("{what} `{private}`: {}", crate::pg::describe(&e)))
    };
    client
        .batch_execute(&format!("alter database {p} allow_connections false"))
        .await
        .map_err(|e| sql_failed("refusing connections to", e))?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // Each session left is told to end; the count is of those still there.
        let left = client
            .query(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
                &[&private],
            )
            .await
            .map_err(pg_error)?
            .len();
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::failed(format!(
                "{left} session{} still connected to `{private}`, the verified copy of `{database}`, after 10s: it cannot be renamed into place",
                if left == 1 { "" } else { "s" }
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client.batch_execute(&format!("alter database {p} rename to {d}")).await.map_err(|e| sql_failed("renaming", e))?;
    client
        .batch_execute(&format!("alter database {d} allow_connections true"))
        .await
        .map_err(|e| sql_failed("letting connections in again after renaming", e))?;
    Ok(())
}

async fn create_database(client: &Client, database: &str, shape: &Shape, oid: Option<u32>) -> Result<(), StepError> {
    client
        .batch_execute(&create_sql(database, shape, oid))
        .await
        .map_err(|e| StepError::failed(format!("creating database `{database}`: {}", crate::pg::describe(&e))))
}

/// The locales of `src` the server of `client` lacks, each named: a libc locale is tried
/// as a temporary collation (rolled back), an ICU locale must be one of the server's ICU
/// collations' (ICU itself accepts any name, falling back to its root collation, which is
/// not the source's order).
async fn lacking_locales(client: &Client, src: &crate::backup::DatabaseProperties) -> Result<Vec<String>, tokio_postgres::Error> {
    let mut out = Vec::new();
    let mut libc: Vec<&str> = vec![&src.lc_collate, &src.lc_ctype];
    libc.dedup();
    for l in libc {
        if l.is_empty() || ["C", "POSIX", "C.UTF-8", "C.utf8"].contains(&l) {
            continue;
        }
        let probe = format!(
            "begin; create collation pg_temp.pgdrill_locale_probe (provider = libc, locale = {}); rollback",
            crate::pg::native::quote_literal(l)
        );
        if client.batch_execute(&probe).await.is_err() {
            let _ = client.batch_execute("rollback").await;
            out.push(format!("the operating system locale {}", crate::pg::native::quote_literal(l)));
        }
    }
    if src.locale.provider == "icu" && !src.locale.name.is_empty() {
        let known: bool = client
            .query_one(
                "select exists (select 1 from pg_collation c where c.collprovider = 'i' \
                 and coalesce(to_jsonb(c)->>'colllocale', to_jsonb(c)->>'colliculocale') = $1)",
                &[&src.locale.name],
            )
            .await?
            .get(0);
        if !known {
            out.push(format!("the ICU locale {}", crate::pg::native::quote_literal(&src.locale.name)));
        }
    }
    Ok(out)
}

fn target_url(url: &str, database: &str) -> Result<String, StepError> {
    crate::pg::with_database(url, database).map_err(|e| e.in_class(Class::Invalid).into())
}

/// Free bytes for unprivileged users on the filesystem holding `path` (or its nearest
/// existing ancestor), and that filesystem's device id.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut p = path.to_path_buf();
    loop {
        if let Ok(meta) = std::fs::metadata(&p) {
            let st = nix::sys::statvfs::statvfs(&p).ok()?;
            return Some((st.blocks_available() as u64 * st.fragment_size() as u64, meta.dev()));
        }
        if !p.pop() {
            return None;
        }
    }
}

// ---------------------------------------------------------------------------------------
// restore.preflight

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct PreflightWith {
    /// any database URL of the target server
    #[field(conninfo)]
    url: String,
    /// the database to restore into
    database: String,
    /// the backup to restore
    #[field(ty = "path")]
    backup: String,
    /// where the safety snapshot goes (disk checked)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    safety: Option<String>,
    /// where a parallel restore stages (default: beside the backup)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    staging: Option<String>,
    /// parallel restore jobs planned (default 1)
    #[serde(default = "one", deserialize_with = "super::de::jobs")]
    jobs: u32,
    /// database to connect to for checks (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
    /// directory of pg_restore
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    bin_dir: Option<String>,
    /// what happens to roles of the backup the server lacks: `ask` (created once the operator
    /// confirms), `true` (created) or `false` (never: preflight refuses); default ask
    #[serde(default = "ask")]
    #[field(ty = "ask|true|false")]
    create_roles: String,
    /// the restore drops owners and grants (`no_owner`): it needs no roles (default false)
    #[serde(default, deserialize_with = "super::de::boolean")]
    no_owner: bool,
}

fn one() -> u32 {
    1
}

fn ask() -> String {
    "ask".into()
}

impl With for PreflightWith {
    fn check(&self) -> Result<(), WithError> {
        // A mistyped value once acted as `ask`: refused instead, before anything runs (the
        // executor checks a field that reads only variables before the first step).
        match self.create_roles.as_str() {
            "ask" | "true" | "false" => Ok(()),
            v if crate::template::is_template(v) => Ok(()),
            v => Err(WithError::new("create_roles", format!("`{v}` is not `ask`, `true` or `false`"))),
        }
    }
}

/// `restore.preflight`'s outputs. A database that does not exist yet has an empty owner,
/// encoding and locale, size and sessions 0, and null settings.
#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct PreflightOutputs {
    /// the URL with the target database
    target_url: String,
    /// the URL with the maintenance database
    admin_url: String,
    /// server host and port
    host: String,
    /// the target server's version
    server_version: String,
    /// the pg_restore that will be used
    pg_restore: String,
    /// whether the database exists now
    target_exists: bool,
    /// the target server's major version
    server_major: u32,
    /// its owner (kept when it is recreated)
    owner: String,
    /// kept when recreated
    encoding: String,
    /// kept when recreated
    lc_collate: String,
    /// kept when recreated
    lc_ctype: String,
    /// its size now
    size_bytes: u64,
    /// sessions connected to it now
    sessions: i64,
    /// the database name quoted for SQL
    target_ident: String,
    /// its settings, grants, comment and connection limit (for database.create and
    /// database.settings)
    #[field(ty = "map|null")]
    settings: Option<dbsettings::DatabaseSettings>,
    /// roles the backup's owners and grants name that the server lacks (empty with no_owner
    /// or for a backup that records no roles)
    missing_roles: Vec<String>,
    /// how the server's roles differ from the backup's, one line each (never altered)
    differing_roles: Vec<String>,
}

/// Before an operator restore changes anything: the target is reachable, its version and pg_restore can take the
/// backup, the role may drop the database, create it again with its owner and restore its snapshot, and there is disk
/// for the snapshot and the restore; prints the plan.
#[step(kind = Preflight, name = "restore.preflight", report_log)]
async fn preflight(ctx: StepCtx, w: PreflightWith) -> Result<PreflightOutputs, StepError> {
    let cfg = crate::pg::config(&w.url).map_err(|e| e.in_class(Class::Invalid))?;
    if let Some(pw) = cfg.get_password() {
        ctx.redactor.add(&String::from_utf8_lossy(pw));
    }
    let host = crate::pg::server_id(&w.url).map_err(|e| e.in_class(Class::Invalid))?;
    let client = admin(&w.url, &w.maintenance_db).await?;
    let row = client
        .query_one("select current_setting('server_version'), current_setting('server_version_num')::int", &[])
        .await
        .map_err(pg_error)?;
    let server_version: String = row.get(0);
    let major = (row.get::<_, i32>(1) / 10000) as u32;

    // Its manifest and size are enough here, asked of its store (a backup in a store is
    // read once, later, by `backup.check` as a stream): no stand-in of it is made.
    let object = ctx.object(&w.backup)?;
    let (store, key) = object.object();
    let backup_size = store.head(&key).await.map_err(StepError::environment)?.map(|m| m.size).unwrap_or(0);
    let manifest = Manifest::of(&object).await.ok();
    let mut problems: Vec<String> = Vec::new();
    // How many of them are what this machine or the server lacks (a tool, disk): when those
    // are all there is, the refusal is the environment's (exit 3), never a verdict on the
    // backup.
    let mut lacking = 0;

    // Versions: pg_restore must read the archive, the server must take what it replays.
    let dump_major = manifest.as_ref().and_then(|m| parse_major(&m.pg_dump_version)).unwrap_or(0);
    if let Some(m) = &manifest {
        if m.server_major > major {
            problems.push(format!(
                    "the backup comes from PostgreSQL {} and the target runs {server_version}: restoring into an older major version is not supported; restore into a server of version {} or newer",
                    m.server_major, m.server_major
                ));
        }
    }
    let explicit = w.bin_dir.as_ref().map(|d| PathBuf::from(d).join("pg_restore"));
    let need = major.max(dump_major);
    // The probe in the image ends at once with the step (Ctrl-C, its timeout), its container
    // removed: it waited for Docker before.
    let stop = crate::physical::tools::Interrupt::default();
    let _watch = stop.watch(ctx.cancel.clone());
    let from_image = || crate::pg::image_tools::find_with("pg_restore", need, &stop);
    let in_container = crate::pg::container_of(&w.url);
    let pg_restore = match &in_container {
        // A container target restores with the container's own tools.
        Some(t) => {
            let t = t.clone();
            match tokio::task::block_in_place(|| t.tool_version("pg_restore")) {
                Ok(text) if parse_major(&text).unwrap_or(0) >= dump_major => format!("{text} (in {})", t.label()),
                Ok(text) => {
                    problems.push(format!(
                            "the backup was written by PostgreSQL {dump_major}'s pg_dump and the container {} has {text}, which cannot read it",
                            t.label()
                        ));
                    lacking += 1;
                    String::new()
                }
                Err(why) => return Err(StepError::environment(why)),
            }
        }
        None => match find_tool("pg_restore", explicit.as_deref(), need) {
            Ok((p, text, _)) => format!("{} ({text})", p.display()),
            // The tools of that major from its image, as the restore itself will use them.
            Err(_) if explicit.is_none() && tokio::task::block_in_place(|| from_image().is_ok()) => {
                let (image, text) = tokio::task::block_in_place(from_image).unwrap_or_default();
                format!("{text} (from the image {image})")
            }
            Err(e) => {
                let why = match &manifest {
                    Some(m) => format!("the backup was written by {}", m.pg_dump_version),
                    None => format!("the target runs PostgreSQL {major}"),
                };
                problems.push(format!("{why}; {}", StepError::from(e).message()));
                lacking += 1;
                String::new()
            }
        },
    };

    let info = db_info(&client, &w.database).await?;
    let ident = quote_ident(&w.database);
    if info.is_some() {
        problems.extend(undroppable(&client, &w.database, &w.maintenance_db).await?);
    }

    // Rights: every step, the rollback included, before anything changes.
    let role = rights::role(&client).await.map_err(pg_error)?;
    let owner = info.as_ref().map(|i| i.db.owner.as_str());
    let mut missing = rights::drop_and_create(&client, &role, &w.database, owner).await.map_err(pg_error)?;
    if info.is_some() && !role.superuser {
        match crate::pg::connect_to(&w.url, &w.database).await {
                Ok(c) => missing.extend(rights::put_back(&c, &role, &w.database).await.map_err(pg_error)?),
                Err(e) => missing.push(format!(
                    "role {} cannot look into database `{}` to prove its safety snapshot could be restored ({}): connect as a superuser",
                    role.name, w.database, e.message
                )),
            }
    }
    if missing.is_empty() {
        ctx.log(match (role.superuser, owner) {
            (true, _) => format!("rights: {} is a superuser", role.name),
            (false, Some(o)) => format!(
                "rights: {} may drop `{}`, create it again owned by {o} (CREATEDB) and restore its snapshot",
                role.name, w.database
            ),
            (false, None) => format!("rights: {} may create `{}` (CREATEDB)", role.name, w.database),
        });
    }
    problems.extend(missing);

    // Database-level settings, grants, comment and connection limit: DROP loses them and
    // the dump does not hold them, so they are applied again after the create.
    let settings = match dbsettings::capture(&client, &w.database).await.map_err(pg_error)? {
        Some(st) => {
            ctx.log(format!("database settings kept across the recreate: {}", st.summary()));
            Some(st)
        }
        // A database new here (a restore into another name) has none of its own: it gets
        // the backup's source's, as its manifest recorded them, or it would come back
        // without its `ALTER DATABASE ... SET`.
        None => {
            let st = backup_settings(manifest.as_ref(), w.no_owner);
            if let Some(st) = &st {
                ctx.log(format!("database settings of the backup's source, given to the new `{}`: {}", w.database, st.summary()));
            }
            st
        }
    };
    if let Some(st) = &settings {
        problems.extend(rights::settings(&client, &role, &w.database, st).await.map_err(pg_error)?);
    }

    // What CREATE DATABASE carries beyond owner, encoding and lc_*: created again with it, so
    // the role must be able to (a tablespace needs CREATE on it).
    if let Some(p) = crate::restore::Properties::capture(&client, &w.database).await.map_err(pg_error)? {
        ctx.log(format!("database properties kept across the recreate: {}", p.summary()));
        if !p.tablespace.is_empty() && !role.superuser {
            let may: bool = client
                .query_one("select has_tablespace_privilege(current_user, $1, 'CREATE')", &[&p.tablespace])
                .await
                .map_err(pg_error)?
                .get(0);
            if !may {
                problems.push(format!(
                    "role {} cannot create database `{}` again in its tablespace {} (CREATE on it): connect as a superuser or `grant create on tablespace {} to {}`",
                    role.name,
                    w.database,
                    p.tablespace,
                    quote_ident(&p.tablespace),
                    quote_ident(&role.name)
                ));
            }
        }
    }

    // A database created here for the first time is created as the backup's source was
    // (database.create's `like_source`): the server must have its locales.
    if let (None, Some(src)) = (&info, manifest.as_ref().and_then(|m| m.database_properties.as_ref())) {
        let lacking = lacking_locales(&client, src).await.map_err(pg_error)?;
        if lacking.is_empty() {
            ctx.log(format!("`{}` will be created as the backup's source database: {}", w.database, src.summary()));
        }
        for l in lacking {
            problems.push(format!(
                "`{}` does not exist here and is created as the backup's source database ({}), but this server lacks {l}: install it on the server (and run `pg_import_system_collations` / restart), or create `{}` yourself first with the locale you want (a restore keeps an existing database's properties)",
                w.database,
                src.summary(),
                w.database
            ));
        }
    }

    // Roles: a rebuilt server lacks the roles the backup's owners and grants name, and
    // pg_restore would fail on each of them after the drop. Named here, before anything
    // changes, with what will happen to them and whether this role may create them.
    let (missing_roles, differing_roles) =
        roles_needed(&ctx, &client, &w, &role, manifest.as_ref(), &mut problems).await?;

    // Disk: the snapshot, and the staged plaintext of a parallel restore.
    let raw = manifest.as_ref().map(|m| m.sizes.raw).unwrap_or(backup_size);
    let snapshot_need = if info.is_some() { backup_size + backup_size / 4 } else { 0 };
    // A container target restores from a stream with one job (backup/restore.rs).
    let jobs = if in_container.is_some() { 1 } else { w.jobs };
    let stage_need = if jobs > 1 { raw } else { 0 };
    let mut needs: Vec<(PathBuf, u64, &str)> = Vec::new();
    if let Some(s) = &w.safety {
        needs.push((ctx.local_only(s, "the safety location")?, snapshot_need, "the safety snapshot"));
    }
    let staging = w
        .staging
        .as_deref()
        .map(|s| ctx.local("staging", s))
        .transpose()?
        .unwrap_or_else(|| object.staging_dir());
    needs.push((staging, stage_need, "the staged restore file"));
    let mut by_fs: Vec<(u64, u64, u64, Vec<String>)> = Vec::new();
    for (dir, need, what) in &needs {
        if *need == 0 {
            continue;
        }
        let Some((free, dev)) = free_space(dir) else {
            problems.push(format!("cannot read free space of {}", dir.display()));
            lacking += 1;
            continue;
        };
        match by_fs.iter_mut().find(|f| f.0 == dev) {
            Some(f) => {
                f.2 += need;
                f.3.push(format!("{what} in {}", dir.display()));
            }
            None => by_fs.push((dev, free, *need, vec![format!("{what} in {}", dir.display())])),
        }
    }
    for (_, free, need, whats) in &by_fs {
        if free < need {
            problems.push(format!(
                "not enough free disk for {}: about {} needed, {} free",
                whats.join(" and "),
                mib(*need),
                mib(*free)
            ));
            lacking += 1;
        } else {
            ctx.log(format!("disk: {} for {} ({} free)", mib(*need), whats.join(" and "), mib(*free)));
        }
    }
    // The server's own disk, when it is on this machine and we may see its data directory.
    let data_dir: Option<String> = client
        .query_opt("select setting from pg_settings where name = 'data_directory'", &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0));
    let server_need = (raw * 2).saturating_sub(info.as_ref().map(|i| i.size).unwrap_or(0));
    // A container's socket is not this machine's: its data directory is not here either.
    let local = crate::pg::container_of(&w.url).is_none()
        && matches!(cfg.get_hosts().first(), Some(tokio_postgres::config::Host::Unix(_)))
        || host.starts_with("127.")
        || host.starts_with("localhost")
        || host.starts_with("::1:");
    match data_dir.filter(|d| local && Path::new(d).is_dir()).and_then(|d| free_space(Path::new(&d)).map(|f| (d, f.0))) {
            Some((d, free)) if free < server_need => {
                problems.push(format!(
                    "not enough free disk on the server's data directory {d}: about {} needed for the restored database, {} free",
                    mib(server_need),
                    mib(free)
                ));
                lacking += 1;
            }
            Some((d, free)) => ctx.log(format!("disk: about {} for the restored database in {d} ({} free)", mib(server_need), mib(free))),
            None => ctx.log("disk: the server's data directory is not on this machine; its free space is not checked".to_string()),
        }

    // The plan, as the operator will confirm it.
    match &manifest {
        Some(m) => ctx.log(format!(
            "backup: {} (database {}, PostgreSQL {}, {}, {}, sha256 {})",
            object.shown(),
            m.database,
            m.server_version,
            rfc3339(m.finished_at),
            mib(backup_size),
            &m.sha256[..12.min(m.sha256.len())]
        )),
        None => ctx.log(format!("backup: {} ({}, made by another tool)", object.shown(), mib(backup_size))),
    }
    match &info {
            Some(i) => ctx.log(format!(
                "target: database {} on {host} (PostgreSQL {server_version}), owner {}, {}, {} session{} connected: it will be snapshotted, dropped and recreated",
                w.database,
                i.db.owner,
                mib(i.size),
                i.sessions,
                if i.sessions == 1 { "" } else { "s" }
            )),
            None => ctx.log(format!(
                "target: database {} on {host} (PostgreSQL {server_version}) does not exist: it will be created",
                w.database
            )),
        }
    if !pg_restore.is_empty() {
        ctx.log(format!("restore with {pg_restore}, {jobs} job{}", if jobs == 1 { "" } else { "s" }));
    }
    if !problems.is_empty() {
        let message = format!("preflight: {}; nothing was changed", problems.join("; "));
        return Err(if lacking == problems.len() { StepError::environment(message) } else { StepError::failed(message) });
    }

    let (url, admin_url) = (target_url(&w.url, &w.database)?, target_url(&w.url, &w.maintenance_db)?);
    let exists = info.is_some();
    let i = info.unwrap_or_default();
    ctx.fact(crate::facts::Fact::Server { version: server_version.clone() });
    Ok(PreflightOutputs {
        target_url: url,
        admin_url,
        host,
        server_version,
        pg_restore,
        target_exists: exists,
        server_major: major,
        owner: i.db.owner,
        encoding: i.db.encoding,
        lc_collate: i.db.collate,
        lc_ctype: i.db.ctype,
        size_bytes: i.size,
        sessions: i.sessions,
        target_ident: ident,
        settings,
        missing_roles,
        differing_roles,
    })
}

/// The database's own settings as the backup's manifest recorded them (None: another tool's
/// dump, or a pgdrill backup from before they were kept). With `no_owner` the restore keeps
/// no owners or grants, so only what names no role: its own settings, comment and
/// connection limit.
fn backup_settings(manifest: Option<&Manifest>, no_owner: bool) -> Option<dbsettings::DatabaseSettings> {
    let mut st = manifest?.globals.as_ref()?.database.settings.clone();
    if no_owner {
        st.settings.retain(|s| s.role.is_empty());
        st.grants = None;
    }
    Some(st)
}

/// The roles of the backup the server lacks and how its roles differ (logged), with the
/// problems that stop the restore here: `create_roles=false` with roles missing, or a role
/// that may not create them.
async fn roles_needed(
    ctx: &StepCtx,
    client: &Client,
    w: &PreflightWith,
    role: &rights::Role,
    manifest: Option<&Manifest>,
    problems: &mut Vec<String>,
) -> Result<(Vec<String>, Vec<String>), StepError> {
    if w.no_owner {
        ctx.log("roles: none needed (no_owner: owners and grants are not restored)");
        return Ok((Vec::new(), Vec::new()));
    }
    let Some(g) = manifest.and_then(|m| m.globals.as_ref()) else {
        ctx.log("roles: the backup records none (another tool's dump, or an older pgdrill backup): the roles its owners and grants name must exist here");
        return Ok((Vec::new(), Vec::new()));
    };
    let plan = crate::pg::globals::plan(client, g).await.map_err(StepError::environment)?;
    for d in &plan.differing {
        ctx.log(format!("roles: differs (left as it is): {d}"));
    }
    if plan.missing.is_empty() {
        ctx.log(format!("roles: all {} roles the backup names exist here", g.roles.len()));
        return Ok((plan.missing, plan.differing));
    }
    let named = plan.missing.iter().map(|r| quote_ident(r)).collect::<Vec<_>>().join(", ");
    if w.create_roles == "false" {
        problems.push(format!(
            "this server lacks the backup's roles {named}, which its owners and grants name; create_roles=false: create them by hand, or restore with no_owner=true or role_map"
        ));
        return Ok((plan.missing, plan.differing));
    }
    ctx.log(format!(
        "roles: this server lacks the backup's roles {named}: {} (create_roles={}); a rollback drops them again",
        if w.create_roles == "true" { "they will be created from the backup" } else { "they are created from the backup once the operator confirms" },
        w.create_roles
    ));
    // Creating them takes CREATEROLE, and a superuser for the attributes only a superuser
    // may give (PostgreSQL 15: SUPERUSER, REPLICATION, BYPASSRLS).
    if !role.superuser {
        if !role.createrole {
            problems.push(format!(
                "role {} may not create the missing roles {named} (CREATEROLE): connect as a superuser, or create them by hand",
                role.name
            ));
        }
        let privileged: Vec<String> = g
            .roles
            .iter()
            .filter(|r| plan.missing.contains(&r.name) && (r.superuser || r.replication || r.bypassrls))
            .map(|r| quote_ident(&r.name))
            .collect();
        if !privileged.is_empty() {
            problems.push(format!(
                "the missing roles {} have SUPERUSER, REPLICATION or BYPASSRLS, which only a superuser may give: connect as a superuser, or create them by hand",
                privileged.join(", ")
            ));
        }
    }
    Ok((plan.missing, plan.differing))
}

/// Why DROP DATABASE would fail on `database`, each with its remedy. `WITH (FORCE)` helps
/// with none of them, so they are found here, before anything changes, rather than by a
/// DROP that fails with connections blocked and a snapshot taken.
async fn undroppable(client: &Client, database: &str, maintenance_db: &str) -> Result<Vec<String>, StepError> {
    let mut out = Vec::new();
    let ident = quote_ident(database);
    let elsewhere = format!("or restore into another name (`--var target={database}_restore`)");
    if database == maintenance_db {
        out.push(format!(
            "database `{database}` is the maintenance database pgdrill connects through to drop and create databases, and no database can be dropped from its own session: restore into another name (`--var target={database}_restore`)"
        ));
    }
    let row = client
        .query_one(
            "select d.datistemplate, \
             coalesce((select string_agg(s.subname::text, ', ' order by s.subname) from pg_subscription s where s.subdbid = d.oid), ''), \
             coalesce((select string_agg(r.slot_name::text, ', ' order by r.slot_name) from pg_replication_slots r where r.database = d.datname), ''), \
             (select count(*) from pg_prepared_xacts p where p.database = d.datname), \
             d.datallowconn, \
             coalesce((select string_agg(distinct l.provider, ', ') from pg_shseclabel l \
                       where l.classoid = 'pg_database'::regclass and l.objoid = d.oid), '') \
             from pg_database d where d.datname = $1",
            &[&database],
        )
        .await
        .map_err(pg_error)?;
    let (template, subs, slots, prepared): (bool, String, String, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (allows, labels): (bool, String) = (row.get(4), row.get(5));
    // A database that refuses connections cannot be snapshotted (pg_dump must connect), and
    // a crashed restore's blocked database is the lock's to find, not a new restore's.
    if !allows {
        out.push(format!(
            "database `{database}` does not allow connections (datallowconn false): pg_dump cannot take its safety snapshot, so it cannot be put back; run `alter database {ident} allow_connections true` first (and `allow_connections false` after the restore), {elsewhere}"
        ));
    }
    // Labels on the database itself live in a shared catalog that neither the backup nor the
    // safety snapshot (pg_dump without --create) holds: the recreated database would lose
    // them, so this is refused rather than done silently.
    if !labels.is_empty() {
        out.push(format!(
            "database `{database}` has security labels of provider {labels} on itself, which pgdrill does not capture (a recreated database would lose them): remove them first (`security label for PROVIDER on database {ident} is null`) and label it again after the restore, {elsewhere}"
        ));
    }
    if template {
        out.push(format!(
            "database `{database}` is a template database (datistemplate), which DROP DATABASE refuses: run `alter database {ident} is_template false` first (and `is_template true` after the restore), {elsewhere}"
        ));
    }
    if !subs.is_empty() {
        let many = subs.contains(", ");
        out.push(format!(
            "database `{database}` has logical replication subscription{} {subs}, which DROP DATABASE refuses: in that database, `alter subscription NAME disable; alter subscription NAME set (slot_name = none); drop subscription NAME` for {} (and create {} again after the restore), {elsewhere}",
            if many { "s" } else { "" },
            if many { "each" } else { "it" },
            if many { "them" } else { "it" },
        ));
    }
    if !slots.is_empty() {
        out.push(format!(
            "database `{database}` is used by logical replication slot(s) {slots}, which DROP DATABASE refuses: drop them first (`select pg_drop_replication_slot('NAME')`), {elsewhere}"
        ));
    }
    if prepared > 0 {
        out.push(format!(
            "database `{database}` has {prepared} prepared transaction(s), which DROP DATABASE refuses: finish them first (`commit prepared` or `rollback prepared`; pg_prepared_xacts lists them), {elsewhere}"
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// operator.confirm

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct ConfirmWith {
    /// what is about to happen (name the database and host)
    message: String,
    /// what the operator must type (default yes)
    #[serde(default = "yes_word")]
    answer: String,
}

fn yes_word() -> String {
    "yes".into()
}

impl With for ConfirmWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct ConfirmOutputs {
    /// `--yes` or `terminal`
    confirmed_by: String,
}

/// Ask the operator to confirm by typing an answer on the terminal; `pgdrill run --yes` confirms in advance; without
/// either it refuses (exit 2).
#[step(kind = Confirm, name = "operator.confirm", report_log, destructive, interactive)]
async fn confirm(ctx: StepCtx, w: ConfirmWith) -> Result<ConfirmOutputs, StepError> {
    if ctx.assume_yes {
        ctx.log(format!("{} (confirmed by --yes)", w.message.trim()));
        return Ok(ConfirmOutputs { confirmed_by: "--yes".into() });
    }
    let prompt = format!("\n{}\nType `{}` to continue: ", w.message.trim(), w.answer);
    let Some(typed_answer) = ctx.ask(prompt).await? else {
        return Err(StepError::invalid(format!(
            "refusing without confirmation: {}; stdin is not a terminal, so pass --yes to confirm. Nothing was changed",
            w.message.trim()
        )));
    };
    if typed_answer.trim() != w.answer {
        return Err(StepError::failed(format!("not confirmed (expected `{}`): nothing was changed", w.answer)));
    }
    ctx.log("confirmed on the terminal".to_string());
    Ok(ConfirmOutputs { confirmed_by: "terminal".into() })
}

// ---------------------------------------------------------------------------------------
// database.snapshot

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SnapshotWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database to snapshot
    database: String,
    /// safety location; snapshots go to <safety>/<database>/
    #[field(ty = "path")]
    safety: String,
    /// encrypt the snapshot with this key or passphrase
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(key)]
    key: Option<String>,
    /// older snapshots of this database are pruned (default 7d)
    #[serde(default = "week", deserialize_with = "super::de::duration")]
    keep: Duration,
    /// default zstd
    #[serde(default = "zstd")]
    #[field(ty = "zstd|gzip|none")]
    compression: String,
    /// restore.lock's journal: records the snapshot
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    journal: Option<String>,
}

fn week() -> Duration {
    Duration::from_secs(7 * 86400)
}
fn zstd() -> String {
    "zstd".into()
}

impl With for SnapshotWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SnapshotOutputs {
    /// the snapshot file
    #[field(ty = "path")]
    path: String,
    /// its sha256
    sha256: String,
    /// the database's fingerprint at the snapshot
    #[field(ty = "map")]
    fingerprint: serde_json::Value,
    /// when it may be pruned
    kept_until: String,
    /// older snapshots removed
    pruned: Vec<String>,
}

/// A safety snapshot of a database before it is changed: a real pgdrill backup with its own fingerprint, kept for
/// `keep` and then pruned.
#[step(kind = Snapshot, name = "database.snapshot", report_log)]
async fn snapshot(ctx: StepCtx, w: SnapshotWith) -> Result<SnapshotOutputs, StepError> {
    let safety = ctx.local_only(&w.safety, "the safety location")?;
    let opts = CreateOptions {
        url: target_url(&w.url, &w.database)?,
        storage: std::sync::Arc::new(crate::storage::local::FsStore::new(&safety)),
        format: Format::Custom,
        codec: Codec::parse(&w.compression).map_err(StepError::invalid)?,
        level: 3,
        threads: 2,
        jobs: 1,
        key: w.key.as_deref().filter(|k| !k.is_empty()).map(KeySource::from_secret),
        fingerprint: Mode::Full,
        pg_dump: None,
        name: Some(w.database.clone()),
        meter: Some(crate::progress::Meter::default()),
    };
    let log_ctx = ctx.clone();
    let log = move |l: String| log_ctx.log(l);
    let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
    let created = backup::create(opts, &log).await.map_err(StepError::from)?;
    for w in &created.warnings {
        ctx.warn(w.clone());
    }
    let (snap, sha) = (created.path.display().to_string(), created.manifest.sha256.clone());
    super::journal::mark(&ctx, w.journal.as_deref(), JPhase::SnapshotTaken, &snap, |j| {
        j.snapshot = Some(snap.clone());
        j.snapshot_sha256 = Some(sha);
    })?;
    let now = OffsetDateTime::now_utc();
    let kept_until = now + w.keep;

    // Prune this database's older snapshots past `keep`; never the one just made.
    let mut pruned = Vec::new();
    let store = LocalStore::new(&safety);
    for e in store.list(Some(&w.database)).unwrap_or_default() {
        // Only pgdrill's own snapshots: another tool's file in the safety folder is not ours.
        if e.path == created.path || e.foreign {
            continue;
        }
        let when = Manifest::read(&e.path)
            .map(|m| m.finished_at)
            .ok()
            .or_else(|| std::fs::metadata(&e.path).and_then(|m| m.modified()).ok().map(OffsetDateTime::from));
        if when.is_some_and(|t| now - t > w.keep) {
            let _ = std::fs::remove_file(&e.manifest);
            if std::fs::remove_file(&e.path).is_ok() {
                pruned.push(e.path.display().to_string());
            }
        }
    }
    ctx.log(format!(
        "safety snapshot {} ({}), kept until {}; `pgdrill backups list --storage {}` lists them",
        created.path.display(),
        mib(created.manifest.sizes.stored),
        rfc3339(kept_until),
        safety.display()
    ));
    for p in &pruned {
        ctx.log(format!("pruned older snapshot {p}"));
    }
    let out = SnapshotOutputs {
        path: created.path.display().to_string(),
        sha256: created.manifest.sha256.clone(),
        fingerprint: serde_json::to_value(&created.manifest.fingerprint).unwrap_or_default(),
        kept_until: rfc3339(kept_until),
        pruned,
    };
    ctx.backup_fact(crate::facts::BackupRole::Snapshot, &super::outputs_of(&out)?);
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// database.terminate

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct TerminateWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database
    database: String,
    /// ALLOW_CONNECTIONS false first (default true)
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    block: bool,
    /// how long sessions may take to end (default 10s)
    #[serde(default = "ten_s", deserialize_with = "super::de::duration")]
    wait: Duration,
    /// database to connect to (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
    /// restore.lock's journal: records that connections were allowed
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    journal: Option<String>,
}

fn yes() -> bool {
    true
}
fn ten_s() -> Duration {
    Duration::from_secs(10)
}

impl With for TerminateWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct TerminateOutputs {
    /// sessions terminated
    terminated: usize,
    /// who they were (user, application, client)
    sessions: Vec<String>,
}

/// Block new connections to a database and terminate the open ones, waiting until none is left.
#[step(kind = Terminate, name = "database.terminate", report_log)]
async fn terminate(ctx: StepCtx, w: TerminateWith) -> Result<TerminateOutputs, StepError> {
    let client = admin(&w.url, &w.maintenance_db).await?;
    let Some(oid) = oid_of(&client, &w.database).await? else {
        ctx.log(format!("database {} does not exist: no sessions", w.database));
        return Ok(TerminateOutputs::default());
    };
    let j = given_journal(&ctx, w.journal.as_deref())?;
    recorded(j.as_ref(), &w.database, oid, "block connections to and terminate the sessions of")?;
    if w.block {
        let allowed: bool = client
            .query_one("select datallowconn from pg_database where datname = $1", &[&w.database])
            .await
            .map_err(pg_error)?
            .get(0);
        super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Blocking, "", |j| {
            // The first run's value: a recovering run finds its own blocks.
            j.allowed_connections.get_or_insert(allowed);
        })?;
        client
            .batch_execute(&format!("alter database {} allow_connections false", quote_ident(&w.database)))
            .await
            .map_err(|e| StepError::failed(format!("blocking new connections: {}", crate::pg::describe(&e))))?;
        ctx.log(format!("new connections to {} are refused", w.database));
    }
    let rows = client
        .query(
            "select format('%s (%s, %s)', usename, coalesce(nullif(application_name, ''), 'no application name'), \
                 coalesce(client_addr::text, 'local')), pg_terminate_backend(pid) \
                 from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
            &[&w.database],
        )
        .await
        .map_err(pg_error)?;
    let sessions: Vec<String> = rows.iter().map(|r| r.get::<_, Option<String>>(0).unwrap_or_default()).collect();
    for s in &sessions {
        ctx.log(format!("terminated {s}"));
    }
    let deadline = tokio::time::Instant::now() + w.wait;
    loop {
        let left: i64 = client
            .query_one(
                "select count(*) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()",
                &[&w.database],
            )
            .await
            .map_err(pg_error)?
            .get(0);
        if left == 0 {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StepError::failed(format!(
                "{left} session{} still connected to {} after {}",
                if left == 1 { "" } else { "s" },
                w.database,
                humantime::format_duration(w.wait)
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(TerminateOutputs { terminated: sessions.len(), sessions })
}

// ---------------------------------------------------------------------------------------
// database.drop

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct DropWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database
    database: String,
    /// its safety snapshot (required when it exists)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    snapshot: Option<String>,
    /// drop without a snapshot (scratch databases only)
    #[serde(default, deserialize_with = "super::de::boolean")]
    without_snapshot: bool,
    /// database to connect to (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
    /// restore.lock's journal: records the drop first; a database it says this restore made
    /// needs no snapshot
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    journal: Option<String>,
}

impl With for DropWith {}

/// `database.drop`'s outputs when there was a database to drop: what to create it again with.
#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct Dropped {
    /// whether there was anything to drop
    existed: bool,
    /// what it was created with
    owner: String,
    /// what it was created with
    encoding: String,
    /// what it was created with
    lc_collate: String,
    /// what it was created with
    lc_ctype: String,
}

/// `database.drop`'s outputs when the database did not exist: `existed` (false) only, so a
/// later step reading its owner fails as undefined rather than reading an empty value.
#[derive(Debug, Serialize)]
pub struct NothingDropped {
    existed: bool,
}

super::one_of_outputs! {
    /// What `database.drop` hands on: what the dropped database was created with, or that there
    /// was none.
    DropOutputs { Dropped(Dropped), Nothing(NothingDropped) }
}

/// Drop a database, only once a safety snapshot of it is on disk; outputs its owner, encoding and locale to recreate
/// it.
#[step(kind = DropDatabase, name = "database.drop", report_log, destructive)]
async fn drop_step(ctx: StepCtx, w: DropWith) -> Result<DropOutputs, StepError> {
    let client = admin(&w.url, &w.maintenance_db).await?;
    let j = given_journal(&ctx, w.journal.as_deref())?;
    // Removing what a restore into a new name made (its rollback): the copy still under
    // its private name goes first.
    let copy_dropped = w.without_snapshot && drop_leftover_private(&ctx, &client, j.as_ref()).await?;
    let Some(info) = db_info(&client, &w.database).await? else {
        if copy_dropped && j.as_ref().is_some_and(|j| !j.existed) {
            // As before the restore: the target absent. Left `creating` or `restoring`,
            // the journal would block every later restore of the name.
            super::journal::mark(
                &ctx,
                w.journal.as_deref(),
                JPhase::RolledBack,
                "the half-restored copy this restore created was dropped: the database does not exist, as before",
                |j| {
                    j.changed = true;
                    j.private_name = None;
                },
            )?;
        }
        ctx.log(format!("database {} does not exist: nothing to drop", w.database));
        return Ok(DropOutputs::Nothing(NothingDropped { existed: false }));
    };
    // A database that did not exist before this restore (its journal says so) is our own
    // half-made one: there is no original to keep.
    let ours = j.as_ref().is_some_and(|j| !j.existed && w.snapshot.is_none());
    if !w.without_snapshot && !ours {
        let Some(snap) = w.snapshot.as_deref().map(|s| ctx.local("snapshot", s)).transpose()? else {
            return Err(StepError::invalid(format!(
                "refusing to drop database `{}` without a safety snapshot: set `snapshot:` to database.snapshot's path",
                w.database
            )));
        };
        let m = Manifest::read(&snap).map_err(|e| {
            StepError::failed(format!(
                "refusing to drop database `{}`: its snapshot {} is not usable ({})",
                w.database,
                snap.display(),
                StepError::from(e).message()
            ))
        })?;
        if m.database != w.database || !snap.is_file() {
            return Err(StepError::failed(format!(
                "refusing to drop database `{}`: {} is a snapshot of `{}`",
                w.database,
                snap.display(),
                m.database
            )));
        }
    }
    super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Dropping, "", |_| {})?;
    // Checked again immediately before the DROP (the snapshot took a while).
    let Some(oid) = oid_of(&client, &w.database).await? else {
        return Err(StepError::failed(format!(
            "database `{}` disappeared while its snapshot was taken: someone else dropped it",
            w.database
        )));
    };
    recorded(j.as_ref(), &w.database, oid, "drop")?;
    drop_database(&client, &w.database).await?;
    // Only now is anything changed: a DROP that failed left the database as it was.
    if w.without_snapshot && j.as_ref().is_some_and(|j| !j.existed) {
        // The database this restore created, dropped by its rollback: the target is as it
        // was before (absent), so the journal says rolled back and `finish` closes it.
        // Marked `dropping`, it stayed unfinished and refused every later restore.
        super::journal::mark(
            &ctx,
            w.journal.as_deref(),
            JPhase::RolledBack,
            "the database this restore created was dropped: it does not exist, as before",
            |j| j.changed = true,
        )?;
    } else {
        super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Dropping, "dropped", |j| j.changed = true)?;
    }
    ctx.log(format!("dropped database {} (owner {}, {})", w.database, info.db.owner, mib(info.size)));
    Ok(DropOutputs::Dropped(Dropped {
        existed: true,
        owner: info.db.owner,
        encoding: info.db.encoding,
        lc_collate: info.db.collate,
        lc_ctype: info.db.ctype,
    }))
}

/// Give a just-created database the settings, grants, comment and connection limit it had.
async fn reapply_settings(
    ctx: &StepCtx,
    client: &Client,
    database: &str,
    settings: Option<&dbsettings::DatabaseSettings>,
    blocked: bool,
    defer: bool,
) -> Result<(), StepError> {
    let Some(st) = settings else { return Ok(()) };
    let now = while_blocked(Some(st), blocked, defer).unwrap_or_default();
    dbsettings::apply(client, database, &now)
        .await
        .map_err(|e| StepError::failed(format!("giving database `{database}` its settings and grants again: {e}")))?;
    let later = match (blocked && st.connection_limit >= 0, defer && !st.settings.is_empty()) {
        (true, true) => " (its settings and connection limit once it is verified)",
        (true, false) => " (the connection limit once it is verified)",
        (false, true) => " (its settings once it is verified)",
        (false, false) => "",
    };
    ctx.log(format!("database settings applied again: {}{later}", st.summary()));
    Ok(())
}

/// Fail, naming each difference, unless `database` was created with the `expected`
/// locale provider, locale, ICU rules, collation version and tablespace.
async fn compare_properties(
    client: &Client,
    database: &str,
    expected: &crate::restore::Properties,
) -> Result<(), StepError> {
    let actual = crate::restore::Properties::capture(client, database)
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StepError::failed(format!("database `{database}` does not exist")))?;
    let shown = |v: &str| if v.is_empty() { "the default".to_string() } else { format!("`{v}`") };
    let diff: Vec<String> = [
        ("locale provider", &expected.locale.provider, &actual.locale.provider),
        ("locale", &expected.locale.name, &actual.locale.name),
        ("ICU rules", &expected.locale.icu_rules, &actual.locale.icu_rules),
        ("collation version", &expected.collation_version, &actual.collation_version),
        ("tablespace", &expected.tablespace, &actual.tablespace),
    ]
    .into_iter()
    .filter(|(_, e, a)| e != a)
    .map(|(what, e, a)| format!("{what} is {}, expected {}", shown(a), shown(e)))
    .collect();
    if diff.is_empty() {
        Ok(())
    } else {
        Err(StepError::failed(format!("database `{database}` was not created as it was: {}", diff.join("; "))))
    }
}

/// Fail, naming each difference, unless `database` has exactly the `expected` settings.
async fn compare_settings(
    client: &Client,
    database: &str,
    expected: &dbsettings::DatabaseSettings,
) -> Result<(), StepError> {
    let actual = dbsettings::capture(client, database)
        .await
        .map_err(pg_error)?
        .ok_or_else(|| StepError::failed(format!("database `{database}` does not exist")))?;
    let diff = dbsettings::differences(expected, &actual);
    if diff.is_empty() {
        Ok(())
    } else {
        Err(StepError::failed(format!("database `{database}`'s settings differ: {}", diff.join("; "))))
    }
}

// ---------------------------------------------------------------------------------------
// database.settings

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct SettingsWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database
    database: String,
    /// restore.preflight's `settings`
    #[serde(default, deserialize_with = "dbsettings::opt")]
    #[field(ty = "map")]
    expect: Option<dbsettings::DatabaseSettings>,
    /// restore.lock's `properties`: locale provider, ICU locale and rules, collation version,
    /// tablespace, compared too
    #[serde(default, deserialize_with = "opt_properties")]
    #[field(ty = "map")]
    properties: Option<crate::restore::Properties>,
    /// database.create's `name` when it created the database under a private name: that
    /// verified copy is renamed to `database` first (only the one the journal says this
    /// restore created, and never over a database that appeared under the name)
    #[serde(default, deserialize_with = "super::de::opt_text")]
    from: Option<String>,
    /// restore.lock's journal: records the rename
    #[serde(default, deserialize_with = "super::de::opt_text")]
    #[field(ty = "path")]
    journal: Option<String>,
    /// database to connect to (default postgres)
    #[serde(default = "postgres")]
    maintenance_db: String,
}

impl With for SettingsWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct SettingsOutputs {
    /// what was compared
    summary: String,
}

/// Once a recreated database is verified: rename it into place from the private name it was restored under (`from`),
/// let connections in again (its captured connection limit, or none), then compare its settings (ALTER DATABASE / ALTER
/// ROLE IN DATABASE ... SET), grants, comment and connection limit with those restore.preflight captured.
#[step(kind = Settings, name = "database.settings", report_log)]
async fn settings(ctx: StepCtx, w: SettingsWith) -> Result<SettingsOutputs, StepError> {
    let client = admin(&w.url, &w.maintenance_db).await?;
    // Verified by now: the copy restored under a private name takes the database's.
    if let Some(from) = w.from.as_deref().filter(|f| *f != w.database) {
        super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Renaming, &format!("{from} to {}", w.database), |_| {})?;
        let j = given_journal(&ctx, w.journal.as_deref())?;
        rename_into_place(&client, from, &w.database, j.as_ref()).await?;
        super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Renaming, "renamed into place", |j| {
            j.private_name = None
        })?;
        ctx.log(format!("the verified copy {from} is now database {}", w.database));
    }
    // A database born refusing connections lets them in again.
    open_connections(&ctx, &client, &w.database, w.expect.as_ref()).await?;
    if let Some(p) = &w.properties {
        compare_properties(&client, &w.database, p).await?;
        ctx.log(format!("database properties as before: {}", p.summary()));
    }
    let Some(expected) = w.expect else {
        return Ok(SettingsOutputs { summary: "no settings to compare: the database did not exist before".into() });
    };
    compare_settings(&client, &w.database, &expected).await?;
    ctx.log(format!("database settings as before: {}", expected.summary()));
    Ok(SettingsOutputs { summary: expected.summary() })
}

// ---------------------------------------------------------------------------------------
// database.create

/// How `database.create` and `database.restore_snapshot` read a `with:` block: one shape, so
/// both accept, refuse and locate the same keys with the same messages (`database.create`
/// refuses `snapshot` and `key` by its check). Each kind documents its own fields below.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecreateWith {
    url: String,
    database: String,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    snapshot: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    key: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    owner: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    encoding: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    lc_collate: Option<String>,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    lc_ctype: Option<String>,
    #[serde(default = "one", deserialize_with = "super::de::jobs")]
    jobs: u32,
    #[serde(default = "postgres")]
    maintenance_db: String,
    #[serde(default, deserialize_with = "super::de::opt_text")]
    journal: Option<String>,
    #[serde(default, deserialize_with = "dbsettings::opt")]
    settings: Option<dbsettings::DatabaseSettings>,
    #[serde(default, deserialize_with = "opt_properties")]
    properties: Option<crate::restore::Properties>,
    #[serde(default, deserialize_with = "opt_like_source")]
    like_source: Option<crate::backup::DatabaseProperties>,
    #[serde(default, deserialize_with = "super::de::boolean")]
    private: bool,
}

/// For a step's `with:`: backup.pick's `database_properties`, or nothing (null, "": another
/// tool's dump, or a backup from before they were recorded).
fn opt_like_source<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<crate::backup::DatabaseProperties>, D::Error> {
    map_or_nothing(d, "`like_source` is the map backup.pick outputs as `database_properties`")
}

/// `database.create`'s `with:` block, read as a `RecreateWith`.
#[derive(Debug, Deserialize, Fields)]
#[serde(from = "RecreateWith")]
pub struct CreateWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database
    database: String,
    /// owner (default: the connecting user)
    owner: Option<String>,
    /// default: the server's
    encoding: Option<String>,
    /// default: the server's
    lc_collate: Option<String>,
    /// default: the server's
    lc_ctype: Option<String>,
    /// restore.lock's journal: records the create and the restore that follows
    #[field(ty = "path")]
    journal: Option<String>,
    /// database to connect to (default postgres)
    #[serde(default)]
    maintenance_db: String,
    /// restore.preflight's `settings`: applied again once it is created
    #[field(ty = "map")]
    settings: Option<dbsettings::DatabaseSettings>,
    /// restore.lock's `properties`: locale provider, ICU locale and rules, collation version,
    /// tablespace
    #[field(ty = "map")]
    properties: Option<crate::restore::Properties>,
    /// backup.pick's `database_properties`: create it as the backup's source was (encoding,
    /// locale, locale provider, ICU locale and rules), for a throwaway copy; on a server
    /// that lacks that locale it is created with the server's defaults, and the log says
    /// what stays unproven
    #[field(ty = "map")]
    like_source: Option<crate::backup::DatabaseProperties>,
    /// create it under a private name (output `name`), which database.settings' `from`
    /// renames to `database` once it is verified: no application, superuser or not, reaches
    /// it by its name while it is restored; a copy an earlier run of the journal left under
    /// its private name is dropped first (default false)
    #[serde(default)]
    private: bool,
    /// `snapshot` or `key` was given, which belong to database.restore_snapshot.
    #[serde(skip)]
    restores: bool,
}

impl From<RecreateWith> for CreateWith {
    fn from(w: RecreateWith) -> Self {
        CreateWith {
            restores: w.snapshot.is_some() || w.key.is_some(),
            url: w.url,
            database: w.database,
            owner: w.owner,
            encoding: w.encoding,
            lc_collate: w.lc_collate,
            lc_ctype: w.lc_ctype,
            journal: w.journal,
            maintenance_db: w.maintenance_db,
            settings: w.settings,
            properties: w.properties,
            like_source: w.like_source,
            private: w.private,
        }
    }
}

impl With for CreateWith {
    fn check(&self) -> Result<(), WithError> {
        if self.restores {
            return Err(WithError::new(
                "snapshot",
                "database.create restores nothing: `snapshot` and `key` belong to database.restore_snapshot",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct CreateOutputs {
    /// the new database's URL (under its private name with `private`)
    url: String,
    /// its name: `database`, or with `private` the private name it is restored under
    name: String,
}

/// Create a database from template0 with the given owner, encoding and locale.
#[step(kind = Create, name = "database.create", report_log)]
async fn create(ctx: StepCtx, w: CreateWith) -> Result<CreateOutputs, StepError> {
    let client = admin(&w.url, &w.maintenance_db).await?;
    let name = if w.private {
        // A recovery that restores forward: the copy the killed run left goes first.
        drop_leftover_private(&ctx, &client, given_journal(&ctx, w.journal.as_deref())?.as_ref()).await?;
        private_name(&client).await?
    } else {
        w.database.clone()
    };
    let planned = planned_oid(&client).await?;
    let note = if w.private { format!("as {name}") } else { String::new() };
    super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Creating, &note, |j| {
        j.created_oid = planned;
        j.private_name = w.private.then(|| name.clone());
    })?;
    let blocked = w.journal.is_some() && can_block(&ctx, &client, &w.database).await?;
    let shape = Shape {
        owner: w.owner.clone(),
        encoding: w.encoding.clone(),
        lc_collate: w.lc_collate.clone(),
        lc_ctype: w.lc_ctype.clone(),
        blocked,
        properties: w.properties.clone(),
    };
    match &w.like_source {
        Some(src) => {
            // The source's shape, where the step does not say otherwise.
            let like = Shape {
                encoding: shape.encoding.clone().or_else(|| Some(src.encoding.clone()).filter(|e| !e.is_empty())),
                lc_collate: shape.lc_collate.clone().or_else(|| Some(src.lc_collate.clone()).filter(|e| !e.is_empty())),
                lc_ctype: shape.lc_ctype.clone().or_else(|| Some(src.lc_ctype.clone()).filter(|e| !e.is_empty())),
                properties: shape.properties.clone().or_else(|| {
                    Some(crate::restore::Properties { locale: src.locale.clone(), ..Default::default() })
                }),
                ..shape.clone()
            };
            match client.batch_execute(&create_sql(&name, &like, planned)).await {
                Ok(()) => ctx.log(format!("created as the backup's source database: {}", src.summary())),
                // An operator restore (journaled) never settles for another collation: its
                // preflight checked the locales, so this is a failure to look at.
                Err(e) if w.journal.is_some() => {
                    return Err(StepError::failed(format!(
                        "creating database `{}` as the backup's source ({}): {}",
                        w.database,
                        src.summary(),
                        crate::pg::describe(&e)
                    )))
                }
                Err(e) => {
                    // A throwaway server without the source's locale (an OS or ICU library
                    // that lacks it): still a restore test, but not of its collation.
                    ctx.warn(format!(
                        "this server cannot create the database as the source's ({}): {}; created with the server's defaults instead, so collation-dependent behaviour (sort order, unique indexes on text) is not proven as the source's",
                        src.summary(),
                        crate::pg::describe(&e)
                    ));
                    create_database(&client, &name, &shape, planned).await?;
                }
            }
        }
        None => create_database(&client, &name, &shape, planned).await?,
    }
    let oid = oid_of(&client, &name).await?;
    let note = if blocked { "created, refusing connections until verified" } else { "created" };
    super::journal::mark(&ctx, w.journal.as_deref(), JPhase::Creating, note, |j| j.created_oid = oid)?;
    reapply_settings(&ctx, &client, &name, w.settings.as_ref(), blocked, w.journal.is_some()).await?;
    super::journal::mark(
        &ctx,
        w.journal.as_deref(),
        JPhase::Restoring,
        "created; the restore writes into it next",
        |_| {},
    )?;
    ctx.log(format!(
        "created database {}{}{}",
        w.database,
        if w.private { format!(" under the private name {name} until it is verified") } else { String::new() },
        w.owner.as_deref().map(|o| format!(" owned by {o}")).unwrap_or_default()
    ));
    Ok(CreateOutputs { url: target_url(&w.url, &name)?, name })
}

// ---------------------------------------------------------------------------------------
// database.restore_snapshot

/// `database.restore_snapshot`'s `with:` block, read as a `RecreateWith`.
#[derive(Debug, Deserialize, Fields)]
#[serde(from = "RecreateWith")]
pub struct RestoreSnapshotWith {
    /// any database URL of the server
    #[field(conninfo)]
    url: String,
    /// the database
    database: String,
    /// database.snapshot's path
    #[field(ty = "path", required)]
    snapshot: Option<String>,
    /// the snapshot's key
    #[field(key)]
    key: Option<String>,
    /// as database.drop reported them
    owner: Option<String>,
    /// as database.drop reported them
    encoding: Option<String>,
    /// as database.drop reported them
    lc_collate: Option<String>,
    /// as database.drop reported them
    lc_ctype: Option<String>,
    /// parallel pg_restore jobs (default 1)
    #[serde(default, deserialize_with = "super::de::jobs")]
    jobs: u32,
    /// database to connect to (default postgres)
    #[serde(default)]
    maintenance_db: String,
    /// restore.lock's journal: records the rollback; kept when it fails
    #[field(ty = "path")]
    journal: Option<String>,
    /// restore.preflight's `settings`: applied again and compared after the restore
    #[field(ty = "map")]
    settings: Option<dbsettings::DatabaseSettings>,
    /// restore.lock's `properties`: locale provider, ICU locale and rules, collation version,
    /// tablespace
    #[field(ty = "map")]
    properties: Option<crate::restore::Properties>,
    /// `like_source` was given, which belongs to database.create (a snapshot is put back as
    /// the original was).
    #[serde(skip)]
    likes_source: bool,
}

impl From<RecreateWith> for RestoreSnapshotWith {
    fn from(w: RecreateWith) -> Self {
        RestoreSnapshotWith {
            url: w.url,
            database: w.database,
            snapshot: w.snapshot,
            key: w.key,
            owner: w.owner,
            encoding: w.encoding,
            lc_collate: w.lc_collate,
            lc_ctype: w.lc_ctype,
            jobs: w.jobs,
            maintenance_db: w.maintenance_db,
            journal: w.journal,
            settings: w.settings,
            properties: w.properties,
            likes_source: w.like_source.is_some(),
        }
    }
}

impl With for RestoreSnapshotWith {
    fn check(&self) -> Result<(), WithError> {
        if self.snapshot.is_none() {
            return Err(WithError::new("snapshot", "the safety snapshot to restore is required"));
        }
        if self.likes_source {
            return Err(WithError::new(
                "like_source",
                "database.restore_snapshot puts the original back as it was: `like_source` belongs to database.create",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct RestoreSnapshotOutputs {
    /// what happened, added to the run's final message
    notice: String,
}

/// Put a database back from its safety snapshot: drop what is there, recreate it (owner kept) under a private name,
/// restore, prove its fingerprint equals the snapshot's, and rename it into place.
#[step(kind = RestoreSnapshot, name = "database.restore_snapshot", report_log, destructive)]
async fn restore_snapshot(ctx: StepCtx, w: RestoreSnapshotWith) -> Result<RestoreSnapshotOutputs, StepError> {
    let result = put_back(&ctx, &w).await;
    if let Err(e) = &result {
        // Said plainly, in the run's final message: not rolled back, where the original
        // is, and how to put it back once the server answers.
        let snap = w.snapshot.as_deref().unwrap_or_default();
        let how = match (w.journal.as_deref(), super::journal::read_optional(&ctx, w.journal.as_deref())) {
            (Some(path), Some(j)) => super::journal::how_to_recover(&w.url, &j, path),
            _ => format!("The original is in the safety snapshot {snap}; restore it by hand with `pgdrill decrypt {snap} | pg_restore -d ...`"),
        };
        let notice = format!("database `{}` was NOT rolled back: {}. {how}", w.database, e.message());
        ctx.notice(notice.clone());
        ctx.keep("notice", notice.into());
    }
    result
}

async fn put_back(ctx: &StepCtx, w: &RestoreSnapshotWith) -> Result<RestoreSnapshotOutputs, StepError> {
    {
        let snap = ctx.local("snapshot", w.snapshot.as_deref().unwrap_or_default())?;
        let manifest = Manifest::read(&snap).map_err(StepError::from)?;
        let client = admin(&w.url, &w.maintenance_db).await?;
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RollingBack, "", |_| {})?;
        let j = given_journal(ctx, w.journal.as_deref())?;
        if let Some(oid) = oid_of(&client, &w.database).await? {
            recorded(j.as_ref(), &w.database, oid, "drop")?;
            drop_database(&client, &w.database).await?;
        }
        // The restore's copy, when it never took the name.
        drop_leftover_private(ctx, &client, j.as_ref()).await?;
        let blocked = can_block(ctx, &client, &w.database).await?;
        let shape = Shape {
            owner: w.owner.clone(),
            encoding: w.encoding.clone(),
            lc_collate: w.lc_collate.clone(),
            lc_ctype: w.lc_ctype.clone(),
            blocked,
            properties: w.properties.clone(),
        };
        // Put back under a private name too, renamed once it matches the snapshot: no one
        // reaches a half-restored original by its name either.
        let private = private_name(&client).await?;
        let planned = planned_oid(&client).await?;
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RollingBack, &format!("creating as {private}"), |j| {
            j.created_oid = planned;
            j.private_name = Some(private.clone());
        })?;
        create_database(&client, &private, &shape, planned).await?;
        let oid = oid_of(&client, &private).await?;
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RollingBack, "created again", |j| j.created_oid = oid)?;
        reapply_settings(ctx, &client, &private, w.settings.as_ref(), blocked, true).await?;
        let url = target_url(&w.url, &private)?;
        let opts = RestoreOptions {
            // A safety snapshot is a local file (`local_only`): its own folder is its view.
            backup: crate::backup::restore::RestoreFrom::File {
                path: snap.clone(),
                tree: crate::storage::tree::Tree::local(snap.parent().unwrap_or(std::path::Path::new("."))),
            },
            into: url.clone(),
            key: w.key.clone(),
            jobs: w.jobs,
            create: false,
            clean: false,
            no_owner: false,
            role_map: Default::default(),
            staging: None,
            staged: None,
            bin_dir: None,
            meter: Some(crate::progress::Meter::default()),
            sections: Default::default(),
        };
        let log_ctx = ctx.clone();
        let log = move |l: String| log_ctx.log(l);
        let _watch = opts.meter.as_ref().map(|m| ctx.watch(m));
        // The restore's own class is kept: a server that went away or a missing tool is the
        // environment (exit 3), not a verdict on the snapshot; and so is a pg_restore whose
        // server ran out of disk or memory, crashed or was shut down (its own words).
        restore::restore(opts, &log).await.map_err(|e| {
            let e = match crate::backup::environment_in_stderr(&e.message.replace(" | ", "\n")).filter(|_| e.class == Class::Failed) {
                Some(what) => e.context(format!("{what}: the environment failed, not the snapshot")).in_class(Class::Environment),
                None => e,
            };
            StepError::Failure(e.context(format!("restoring the safety snapshot {} failed", snap.display())))
        })?;
        // pg_restore is done: the settings held back go on now, before the compare (the
        // snapshot's fingerprint holds the database's own settings).
        give_session_settings(&client, &private, w.settings.as_ref()).await?;
        let expect: Option<Fingerprint> = manifest.fingerprint.clone();
        let proof = match &expect {
            Some(fp) => {
                let (tables, rows) = super::verify::compare_database(&url, fp).await.map_err(|e| match e {
                    StepError::Failure(f) if f.class == Class::Failed => StepError::failed(format!(
                        "database `{}` was restored from the safety snapshot {} but does not match it: {}",
                        w.database,
                        snap.display(),
                        f.message
                    )),
                    other => other,
                })?;
                format!("its fingerprint matches the snapshot's ({tables} tables, {rows} rows)")
            }
            None => "the snapshot has no fingerprint to compare with".to_string(),
        };
        let made_as = match &w.properties {
            Some(p) => {
                compare_properties(&client, &private, p).await?;
                format!("; created as it was ({})", p.summary())
            }
            None => String::new(),
        };
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RollingBack, "renaming into place", |_| {})?;
        let j = given_journal(ctx, w.journal.as_deref())?;
        rename_into_place(&client, &private, &w.database, j.as_ref()).await?;
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RollingBack, "renamed into place", |j| {
            j.private_name = None
        })?;
        // Verified: connections come in again, with the limit it had.
        open_connections(ctx, &client, &w.database, w.settings.as_ref()).await?;
        let proof = match &w.settings {
            Some(expected) => {
                compare_settings(&client, &w.database, expected).await?;
                format!("{proof}; its settings and grants are as they were")
            }
            None => proof,
        };
        let notice = format!(
            "database `{}` was rolled back to the safety snapshot {}; {proof}{made_as}",
            w.database,
            snap.display()
        );
        super::journal::mark(ctx, w.journal.as_deref(), JPhase::RolledBack, &proof, |_| {})?;
        ctx.log(notice.clone());
        ctx.notice(notice.clone());
        Ok(RestoreSnapshotOutputs { notice })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::error::Failure;
    use crate::steps::{test_ctx, BoxFuture, Operator};

    /// An operator who answers from a script and remembers what they were asked.
    struct Scripted(Option<&'static str>, Mutex<Vec<String>>);

    impl Operator for Scripted {
        fn ask(&self, prompt: String) -> BoxFuture<'static, Result<Option<String>, Failure>> {
            if let Ok(mut asked) = self.1.lock() {
                asked.push(prompt);
            }
            let answer = self.0.map(|a| format!("{a}\n"));
            Box::pin(async move { Ok(answer) })
        }
    }

    fn confirm_with(answer: &str) -> ConfirmWith {
        ConfirmWith { message: "drop database `shop` on db1 ".into(), answer: answer.into() }
    }

    /// `operator.confirm` asks through its context, which the executor answers from the
    /// terminal: the step itself never reads stdin (it used to, so it could not be driven by
    /// anything but a terminal).
    #[tokio::test]
    async fn confirm_asks_the_operator_through_its_context() {
        let operator = Arc::new(Scripted(Some("yes"), Mutex::new(Vec::new())));
        let (ctx, log) = test_ctx(operator.clone());
        let out = confirm(ctx, confirm_with("yes")).await.map_err(|e| e.message().to_string());
        assert_eq!(out.map(|o| o.confirmed_by), Ok("terminal".to_string()));
        let asked = operator.1.lock().map(|a| a.clone()).unwrap_or_default();
        assert_eq!(asked, ["\ndrop database `shop` on db1\nType `yes` to continue: "]);
        assert_eq!(log.lock().map(|l| l.clone()).unwrap_or_default(), ["confirmed on the terminal"]);

        let (ctx, _) = test_ctx(Arc::new(Scripted(Some("no"), Mutex::new(Vec::new()))));
        let e = confirm(ctx, confirm_with("yes")).await.err();
        assert_eq!(e.as_ref().and_then(StepError::class), Some(Class::Failed), "{e:?}");
        assert_eq!(e.map(|e| e.message().to_string()).as_deref(), Some("not confirmed (expected `yes`): nothing was changed"));
    }

    /// Without anyone to answer, nothing is asked for twice and nothing changes: invalid
    /// input (exit 2), naming `--yes`; with `--yes` the operator is not asked at all.
    #[tokio::test]
    async fn confirm_without_a_terminal_refuses_and_with_yes_does_not_ask() {
        let (ctx, _) = test_ctx(Arc::new(Scripted(None, Mutex::new(Vec::new()))));
        let e = confirm(ctx, confirm_with("yes")).await.err();
        assert_eq!(e.as_ref().and_then(StepError::class), Some(Class::Invalid), "{e:?}");
        assert!(e.is_some_and(|e| e.message().contains("pass --yes")));

        let operator = Arc::new(Scripted(Some("no"), Mutex::new(Vec::new())));
        let (mut ctx, _) = test_ctx(operator.clone());
        ctx.assume_yes = true;
        let out = confirm(ctx, confirm_with("yes")).await.map_err(|e| e.message().to_string());
        assert_eq!(out.map(|o| o.confirmed_by), Ok("--yes".to_string()));
        assert!(operator.1.lock().map(|a| a.is_empty()).unwrap_or(false), "asked despite --yes");
    }
}
