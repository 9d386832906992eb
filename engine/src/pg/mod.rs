//! PostgreSQL plumbing shared by steps: connections, server discovery, ephemeral servers.

pub mod conninfo;
pub mod container;
pub mod dbsettings;
pub mod docker;
pub mod ephemeral;
pub mod fingerprint;
pub mod globals;
pub mod image_tools;
pub mod initdb_cache;
pub mod native;
pub mod rights;
pub mod tls;

use std::str::FromStr;
use std::time::Duration;

use crate::error::Failure;
use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// Server settings of every throwaway server (native and Docker). Durability buys nothing on
/// a server that is deleted afterwards, and restore speed is part of every RTO: no fsync,
/// minimal WAL (pg_restore then skips WAL for COPY into tables it just created), few
/// checkpoints, more memory for index builds, and no autovacuum competing with the checks.
pub const THROWAWAY_SETTINGS: &[(&str, &str)] = &[
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("wal_level", "minimal"),
    ("max_wal_senders", "0"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "30min"),
    // B-tree indexes build in parallel (PostgreSQL 11+): the leader and two workers, each
    // needing at least 32MB of maintenance_work_mem, which they share. pg_restore -j 2 runs
    // two such builds at a time: 512MB at most, well within a CI machine.
    ("maintenance_work_mem", "256MB"),
    ("max_parallel_maintenance_workers", "2"),
    ("autovacuum", "off"),
    // Dynamic shared memory as files in the data directory (pg_dynshmem/) instead of
    // /dev/shm/PostgreSQL.*: a server killed outright (pgdrill killed with -9) leaves its
    // segments where the reaper removes its folder, never in /dev/shm for good.
    ("dynamic_shared_memory_type", "mmap"),
];

/// `-c name=value` arguments for `THROWAWAY_SETTINGS`.
pub fn throwaway_args() -> Vec<String> {
    THROWAWAY_SETTINGS.iter().flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")]).collect()
}

/// Resolve a connection string (URL or key=value) with libpq's conventions: service file,
/// environment, defaults and password file (see [`conninfo`]).
pub fn conninfo(url: &str) -> Result<conninfo::Conninfo, Failure> {
    conninfo::Conninfo::resolve(url)
}

/// The connection library's configuration for a resolved connection.
fn tokio_config(ci: &conninfo::Conninfo) -> Result<Config, Failure> {
    let mut cfg = Config::from_str(&ci.tokio_conninfo())
        .map_err(|e| Failure::invalid(format!("invalid connection parameters ({}): {e}", describe_ci(ci))))?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    Ok(cfg)
}

/// Parse a connection URL (or key=value string) as libpq would, completed from the service
/// file, the environment and the password file.
pub fn config(url: &str) -> Result<Config, Failure> {
    tokio_config(&conninfo(url)?)
}

/// Connect and drive the connection in the background.
pub async fn connect(url: &str) -> Result<Client, Failure> {
    let cfg = config(url)?;
    open(url, &cfg).await.map_err(|e| e.context(format!("cannot connect to {}", display_url(url))))
}

/// Connect to another database of the server a URL names (for CREATE/DROP DATABASE).
pub async fn connect_to(url: &str, database: &str) -> Result<Client, Failure> {
    let mut cfg = config(url)?;
    cfg.dbname(database);
    open(url, &cfg)
        .await
        .map_err(|e| e.context(format!("cannot connect to database `{database}` of {}", display_url(url))))
}

/// Open `cfg` (made from `url` by [`config`], perhaps changed) with the TLS settings of
/// `url`, and drive the connection in the background. The error is one line naming the
/// setting to change when TLS is the cause.
pub async fn open(url: &str, cfg: &Config) -> Result<Client, Failure> {
    let ci = conninfo(url)?;
    if let Some(t) = container::Target::of(&ci) {
        return container::open(&t, &ci, cfg).await;
    }
    let explain = |e: tokio_postgres::Error| {
        let text = describe(&e);
        Failure::environment(tls::explain(&ci, &text).unwrap_or(text)).with_source(e)
    };
    // TLS is never used on Unix sockets (as in libpq), so their settings are not needed.
    if ci.unix_only() || ci.ssl_mode() == conninfo::SslMode::Disable {
        let (client, conn) = cfg.connect(NoTls).await.map_err(explain)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(client);
    }
    let tls = tls::connector(&ci)?;
    let result = if ci.ssl_mode() == conninfo::SslMode::Allow {
        // `allow`: plain first, TLS only if the server insists.
        let mut plain = cfg.clone();
        plain.ssl_mode(tokio_postgres::config::SslMode::Disable);
        match plain.connect(tls.clone()).await {
            Ok(c) => Ok(c),
            Err(_) => {
                let mut secure = cfg.clone();
                secure.ssl_mode(tokio_postgres::config::SslMode::Require);
                secure.connect(tls).await
            }
        }
    } else {
        cfg.connect(tls).await
    };
    let (client, conn) = result.map_err(explain)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

fn describe_ci(ci: &conninfo::Conninfo) -> String {
    if let Some(t) = container::Target::of(ci) {
        return format!("{}/{}?user={}", t.label(), ci.dbname(), ci.user());
    }
    format!(
        "postgres://{}@{}:{}/{}",
        ci.user(),
        ci.get("host").unwrap_or(""),
        ci.get("port").unwrap_or(""),
        ci.dbname()
    )
}

/// `host:port` of the first server a configuration names (a socket directory for Unix hosts).
pub fn endpoint(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    format!("{host}:{}", cfg.get_ports().first().copied().unwrap_or(5432))
}

/// The URL without its password, for messages.
pub fn display_url(url: &str) -> String {
    match conninfo(url) {
        Ok(ci) => describe_ci(&ci),
        Err(_) => "(unparseable URL)".into(),
    }
}

/// A server error's message, detail and hint, or the transport error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// The same connection string pointed at another database of the same server: the path of
/// a `postgres://` URL is replaced, a key=value string gets its `dbname` replaced.
pub fn with_database(url: &str, database: &str) -> Result<String, Failure> {
    config(url)?;
    let enc = crate::util::percent_encode(database);
    for scheme in ["docker://", "podman://"] {
        if let Some(rest) = url.trim().strip_prefix(scheme) {
            let (main, query) = match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let name = main.split('/').next().unwrap_or_default();
            return Ok(format!("{scheme}{name}/{enc}{query}"));
        }
    }
    for scheme in ["postgres://", "postgresql://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let (before_query, query) = match rest.find('?') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            // The authority ends at the first `/` after the (possibly bracketed) host list.
            let at = before_query.rfind('@').map(|i| i + 1).unwrap_or(0);
            let authority_end = before_query[at..].find('/').map(|i| at + i).unwrap_or(before_query.len());
            return Ok(format!("{scheme}{}/{enc}{query}", &before_query[..authority_end]));
        }
    }
    // key=value: every pair but `dbname` kept, values quoted again (a quoted value may hold
    // spaces, so splitting on whitespace would cut it in two).
    let mut out: Vec<String> = conninfo_pairs(url)
        .into_iter()
        .filter(|(k, _)| k != "dbname")
        .map(|(k, v)| format!("{k}={}", crate::util::conninfo_quote(&v)))
        .collect();
    out.push(dbname_arg(database));
    Ok(out.join(" "))
}

/// The `key=value` pairs of a libpq keyword/value connection string, values unquoted as
/// libpq reads them (`'...'` with backslash escapes, or up to the next space).
pub(crate) fn conninfo_pairs(s: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            return pairs;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == '=') {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
}

/// `postgres://user:password@host:port/database`, each part percent-encoded.
pub fn server_url(user: &str, password: &str, host: &str, port: u16, database: &str) -> String {
    use crate::util::percent_encode as enc;
    format!("postgres://{}:{}@{host}:{port}/{}", enc(user), enc(password), enc(database))
}

/// Match one `host:port:database:user:password` line set.
pub fn pgpass_match(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        if fields.len() < 5 {
            continue;
        }
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if ok(&fields[0], host) && ok(&fields[1], port) && ok(&fields[2], db) && ok(&fields[3], user) {
            return Some(fields[4..].join(":"));
        }
    }
    None
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    if let Some(last) = out.last_mut() {
                        last.push(n);
                    }
                }
            }
            ':' => out.push(String::new()),
            c => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out
}

/// A database name as a client tool's `-d` value that libpq cannot expand. libpq reads a
/// `-d` value holding `=` or starting with `postgres://` as connection parameters, so a
/// database named `dbname=victim port=5433` would point pg_restore at another server; the
/// value of a quoted `dbname='...'` keyword is never expanded a second time.
pub fn dbname_arg(database: &str) -> String {
    format!("dbname={}", crate::util::conninfo_quote(database))
}

/// libpq environment variables that configure a connection without holding a secret.
/// PGPASSWORD is not among them: a tool gets the password of its own connection only.
const LIBPQ_SETTINGS: &[&str] = &[
    "PGSSLMODE",
    "PGSSLNEGOTIATION",
    "PGREQUIRESSL",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGSSLCOMPRESSION",
    "PGSSLCERTMODE",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGGSSDELEGATION",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "KRB5CCNAME",
    "PGREQUIREPEER",
    "PGREQUIREAUTH",
    "PGCHANNELBINDING",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGPASSFILE",
    "PGSERVICEFILE",
    "PGSYSCONFDIR",
    "PGAPPNAME",
    "PGDATESTYLE",
    "PGTZ",
];

/// Point a libpq client tool (pg_dump, pg_restore, psql) at a server through its
/// environment, never its argv, where the password would be visible in `ps`.
///
/// The command comes from `crate::child::command` with a clean environment. It gets the
/// connection `url` resolves to (service file, environment and password file already
/// merged, TLS settings included, so the tool and pgdrill's own connections agree), plus the
/// user's libpq settings that are not secrets and that no keyword carries (see
/// `LIBPQ_SETTINGS`).
pub fn libpq_env(cmd: &mut std::process::Command, url: &str, database: &str) {
    for (k, v) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| LIBPQ_SETTINGS.contains(&k)) {
            cmd.env(k, v);
        }
    }
    for k in ["PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGSERVICE", "PGOPTIONS"] {
        cmd.env_remove(k);
    }
    if let Ok(ci) = conninfo(url) {
        for (k, v) in ci.env_vars(database) {
            cmd.env(k, v);
        }
        // A container target's tools run inside it (`in_container`); run here, the socket
        // directory would be this machine's and reach another server. This one reaches none.
        if ci.get("container").is_some() {
            cmd.env("PGHOST", "/nonexistent/pgdrill-container-target-runs-its-tools-inside");
        }
    }
}

/// The container a connection string names (`docker://...`), if any.
pub fn container_of(url: &str) -> Option<container::Target> {
    conninfo(url).ok().as_ref().and_then(container::Target::of)
}

/// `cmd` (a local pg_dump, pg_restore or psql prepared with `libpq_env`) as the same tool
/// inside the container `url` names; `None` for any other connection.
pub fn in_container(
    cmd: &std::process::Command,
    url: &str,
    database: &str,
) -> Result<Option<std::process::Command>, String> {
    let ci = conninfo(url).map_err(|e| e.message)?;
    match container::Target::of(&ci) {
        Some(t) => container::tool(&t, &ci, cmd, database).map(Some),
        None => Ok(None),
    }
}

/// Which server a connection reaches, as a stable key (journals, locks): `host:port`, or
/// the container and its socket.
pub fn server_id(url: &str) -> Result<String, Failure> {
    let ci = conninfo(url)?;
    let cfg = tokio_config(&ci)?;
    Ok(match container::Target::of(&ci) {
        Some(t) => format!("{}:{}", t.label(), endpoint(&cfg)),
        None => endpoint(&cfg),
    })
}

/// A database's locale beyond its encoding and lc_* settings, as pg_database holds it: the
/// provider, the ICU (or builtin) locale and the ICU rules, each empty where the server has
/// none. Declared once for what a backup's manifest records of its source
/// (`backup::DatabaseProperties`) and what a restore's journal keeps across a recreate
/// (`restore::Properties`): both flatten it (`#[serde(flatten)]`) under the names they always
/// wrote, so their JSON is what it was.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Locale {
    /// `libc`, `icu` or `builtin`; empty before PostgreSQL 15.
    #[serde(rename = "locale_provider", default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
    /// The ICU (or builtin) locale.
    #[serde(rename = "locale", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// ICU tailoring rules (PostgreSQL 16 and later).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub icu_rules: String,
}

impl Locale {
    /// The locale of the database `row` is of.
    pub fn of(row: &DatabaseRow) -> Locale {
        Locale { provider: row.locale_provider(), name: row.locale(), icu_rules: row.text("daticurules") }
    }
}

/// A row of `pg_database` read as JSON (`to_jsonb(d)`), so that one query serves every
/// major (columns appear and are renamed between them); a column that is not there reads as
/// empty.
pub struct DatabaseRow(serde_json::Value);

impl DatabaseRow {
    pub fn parse(json: &str) -> DatabaseRow {
        DatabaseRow(serde_json::from_str(json).unwrap_or_default())
    }

    /// A text column's value.
    pub fn text(&self, column: &str) -> String {
        self.0.get(column).and_then(|v| v.as_str()).unwrap_or_default().to_string()
    }

    /// `libc`, `icu` or `builtin`; empty before PostgreSQL 15.
    pub fn locale_provider(&self) -> String {
        match self.text("datlocprovider").as_str() {
            "i" => "icu",
            "b" => "builtin",
            "c" => "libc",
            _ => "",
        }
        .to_string()
    }

    /// The ICU (or builtin) locale: `datlocale` from PostgreSQL 17, `daticulocale` before.
    pub fn locale(&self) -> String {
        match self.text("datlocale") {
            l if l.is_empty() => self.text("daticulocale"),
            l => l,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pgpass_match;

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\ndb.internal:5432:erp:app:s3cr\\:et\n*:*:*:app:fallback\n";
        assert_eq!(pgpass_match(text, "db.internal", "5432", "erp", "app").as_deref(), Some("s3cr:et"));
        assert_eq!(pgpass_match(text, "other", "5433", "crm", "app").as_deref(), Some("fallback"));
        assert_eq!(pgpass_match(text, "other", "5433", "crm", "root"), None);
    }
}

#[cfg(test)]
mod url_tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_database() {
        assert_eq!(
            with_database("postgres://u:p@h:5/a?sslmode=disable", "b c").expect("valid"),
            "postgres://u:p@h:5/b%20c?sslmode=disable"
        );
        assert_eq!(with_database("postgresql://u@h", "erp").expect("valid"), "postgresql://u@h/erp");
        assert_eq!(with_database("postgres://u:p%2Fx@h/a", "erp").expect("valid"), "postgres://u:p%2Fx@h/erp");
        assert_eq!(
            with_database("host=h user=u dbname=a", "it's").expect("valid"),
            "host='h' user='u' dbname='it\\'s'"
        );
        assert_eq!(
            with_database("host=h dbname = 'a b' application_name='x\\'y'", "c").expect("valid"),
            "host='h' application_name='x\\'y' dbname='c'"
        );
    }
}
