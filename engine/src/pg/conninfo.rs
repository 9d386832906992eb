//! libpq's connection conventions, read the way libpq reads them, so a connection that works
//! with psql works with pgdrill and means the same server.
//!
//! A connection is given as a URL (`postgresql://user@host:port/db?sslmode=verify-full`) or a
//! key=value string (`host=/var/run/postgresql dbname=erp`). Every parameter the string leaves
//! out is taken, in libpq's order, from the service file entry it or PGSERVICE names
//! (`pg_service.conf`), then from the environment (PGHOST, PGSSLMODE, ...), then from libpq's
//! defaults. A missing password comes from the password file (`passfile`, PGPASSFILE or
//! ~/.pgpass). Each value remembers where it came from, for `plan` and for error messages.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::error::Failure;
// Strict: a `%` without two hex digits, or bytes that are not UTF-8, make the URL invalid.
use crate::util::{conninfo_quote as quote, percent_decode_strict as decode};

/// Where PostgreSQL's Debian packages and the official image put the socket.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Where a parameter's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The URL or key=value string itself.
    Given,
    /// A service file entry: (service name, file).
    Service(String, PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// The password file.
    Passfile(PathBuf),
    /// libpq's built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Given => write!(f, "connection string"),
            Origin::Service(name, file) => write!(f, "service {name} in {}", file.display()),
            Origin::Env(var) => write!(f, "{var}"),
            Origin::Passfile(p) => write!(f, "password file {}", p.display()),
            Origin::Default => write!(f, "default"),
        }
    }
}

/// libpq's connection keywords and the environment variable of each (None: no variable).
const KEYWORDS: &[(&str, Option<&str>)] = &[
    ("host", Some("PGHOST")),
    ("hostaddr", Some("PGHOSTADDR")),
    ("port", Some("PGPORT")),
    ("dbname", Some("PGDATABASE")),
    ("user", Some("PGUSER")),
    ("password", Some("PGPASSWORD")),
    ("passfile", Some("PGPASSFILE")),
    ("service", Some("PGSERVICE")),
    ("options", Some("PGOPTIONS")),
    ("application_name", Some("PGAPPNAME")),
    ("fallback_application_name", None),
    ("client_encoding", Some("PGCLIENTENCODING")),
    ("connect_timeout", Some("PGCONNECT_TIMEOUT")),
    ("keepalives", None),
    ("keepalives_idle", None),
    ("keepalives_interval", None),
    ("keepalives_count", None),
    ("tcp_user_timeout", None),
    ("target_session_attrs", Some("PGTARGETSESSIONATTRS")),
    ("load_balance_hosts", Some("PGLOADBALANCEHOSTS")),
    ("channel_binding", Some("PGCHANNELBINDING")),
    ("require_auth", Some("PGREQUIREAUTH")),
    ("sslmode", Some("PGSSLMODE")),
    ("sslnegotiation", Some("PGSSLNEGOTIATION")),
    ("sslcert", Some("PGSSLCERT")),
    ("sslkey", Some("PGSSLKEY")),
    ("sslpassword", None),
    ("sslrootcert", Some("PGSSLROOTCERT")),
    ("sslcrl", Some("PGSSLCRL")),
    ("sslcrldir", Some("PGSSLCRLDIR")),
    ("sslsni", Some("PGSSLSNI")),
    ("sslcompression", Some("PGSSLCOMPRESSION")),
    ("sslcertmode", Some("PGSSLCERTMODE")),
    ("ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION")),
    ("ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION")),
    ("requirepeer", Some("PGREQUIREPEER")),
    ("gssencmode", Some("PGGSSENCMODE")),
    ("krbsrvname", Some("PGKRBSRVNAME")),
    ("gsslib", Some("PGGSSLIB")),
    ("gssdelegation", Some("PGGSSDELEGATION")),
];

/// Keywords whose values are secrets: never shown.
const SECRET: &[&str] = &["password", "sslpassword"];

/// libpq's `sslmode` values, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<SslMode> {
        Some(match s {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// A connection's parameters after libpq's resolution, each with its origin.
#[derive(Debug, Clone, Default)]
pub struct Conninfo {
    params: BTreeMap<String, (String, Origin)>,
}

impl Conninfo {
    /// Read a connection string and complete it from the service file, the environment, the
    /// defaults and the password file, as libpq does.
    pub fn resolve(s: &str) -> Result<Conninfo, Failure> {
        Self::resolve_with(s, &|k| std::env::var(k).ok())
    }

    /// [`resolve`](Self::resolve) with the environment given (tests).
    pub fn resolve_with(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Conninfo, Failure> {
        let mut ci = Conninfo::default();
        for (k, v) in parse(s)? {
            ci.params.insert(k, (v, Origin::Given));
        }
        if ci.params.contains_key("container") {
            // Inside a container only its own socket counts: this machine's service file,
            // environment and password file describe other servers (see `super::container`).
            let defaults =
                [("host", DEFAULT_SOCKET_DIR), ("port", "5432"), ("user", "postgres"), ("sslmode", "disable")];
            for (k, v) in defaults {
                ci.params.entry(k.into()).or_insert_with(|| (v.into(), Origin::Default));
            }
            if !ci.params.contains_key("dbname") {
                let u = ci.user().to_string();
                ci.params.insert("dbname".into(), (u, Origin::Default));
            }
            if !ci.unix_only() {
                return Err(Failure::invalid(
                    "a container target connects to the server's Unix socket inside: `host` must be a socket directory (for a published port, use a postgres:// URL)"
                ));
            }
            return Ok(ci);
        }
        ci.add_service(env)?;
        for (k, var) in KEYWORDS {
            if let Some(var) = var {
                if !ci.params.contains_key(*k) {
                    if let Some(v) = env(var).filter(|v| !v.is_empty()) {
                        ci.params.insert((*k).into(), (v, Origin::Env(var)));
                    }
                }
            }
        }
        // PGREQUIRESSL=1 is libpq's old spelling of sslmode=require.
        if !ci.params.contains_key("sslmode") && env("PGREQUIRESSL").as_deref() == Some("1") {
            ci.params.insert("sslmode".into(), ("require".into(), Origin::Env("PGREQUIRESSL")));
        }
        ci.add_defaults(env);
        if let Some(m) = ci.get("sslmode") {
            if SslMode::parse(m).is_none() {
                return Err(Failure::invalid(format!(
                    "invalid sslmode `{m}` ({}): use disable, allow, prefer, require, verify-ca or verify-full",
                    ci.origin("sslmode").map(|o| o.to_string()).unwrap_or_default()
                )));
            }
        }
        if !ci.params.contains_key("password") {
            ci.add_passfile(env);
        }
        Ok(ci)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.params.get(key).map(|(v, _)| v.as_str())
    }

    pub fn origin(&self, key: &str) -> Option<&Origin> {
        self.params.get(key).map(|(_, o)| o)
    }

    /// Set a parameter as if the connection string had said it.
    pub fn set(&mut self, key: &str, value: impl Into<String>) {
        self.params.insert(key.into(), (value.into(), Origin::Given));
    }

    pub fn ssl_mode(&self) -> SslMode {
        self.get("sslmode").and_then(SslMode::parse).unwrap_or(SslMode::Prefer)
    }

    /// The hosts, in order (a host starting with `/` is a Unix socket directory).
    pub fn hosts(&self) -> Vec<String> {
        self.get("host").unwrap_or_default().split(',').map(str::to_string).collect()
    }

    /// True when every host is a Unix socket directory (TLS is never used on sockets).
    pub fn unix_only(&self) -> bool {
        self.hosts().iter().all(|h| h.starts_with('/') || h.starts_with('@'))
    }

    pub fn user(&self) -> &str {
        self.get("user").unwrap_or_default()
    }

    pub fn dbname(&self) -> &str {
        self.get("dbname").unwrap_or_default()
    }

    /// The parameters the connection library takes, as a key=value string: the TLS
    /// keywords it does not know are handled by pgdrill's own connector (see `super::tls`).
    pub fn tokio_conninfo(&self) -> String {
        const PASSED: &[&str] = &[
            "host",
            "hostaddr",
            "port",
            "dbname",
            "user",
            "password",
            "options",
            "application_name",
            "connect_timeout",
            "keepalives",
            "keepalives_idle",
            "keepalives_interval",
            "keepalives_retries",
            "tcp_user_timeout",
            "target_session_attrs",
            "load_balance_hosts",
            "channel_binding",
        ];
        let mut out: Vec<String> = self
            .params
            .iter()
            .filter(|(k, _)| PASSED.contains(&k.as_str()))
            .map(|(k, (v, _))| format!("{k}={}", quote(v)))
            .collect();
        // `allow` and `prefer` both try TLS and fall back (allow's order differs, see
        // `super::connect_config`); the verify modes are `require` plus certificate checks.
        let mode = match self.ssl_mode() {
            _ if self.unix_only() => "disable",
            SslMode::Disable => "disable",
            SslMode::Allow | SslMode::Prefer => "prefer",
            _ => "require",
        };
        out.push(format!("sslmode={mode}"));
        if let Some(v) = self.get("keepalives_count") {
            out.push(format!("keepalives_retries={}", quote(v)));
        }
        out.join(" ")
    }

    /// One line per parameter with its origin, secrets masked: what `plan` shows.
    pub fn describe(&self) -> Vec<String> {
        self.params
            .iter()
            .map(|(k, (v, o))| {
                let shown = if SECRET.contains(&k.as_str()) { "********" } else { v.as_str() };
                format!("{k}={shown} ({o})")
            })
            .collect()
    }

    /// The environment a libpq tool needs to make this same connection to `database`:
    /// every resolved parameter that has a variable (the service is already merged, so
    /// PGSERVICE is not passed). `sslpassword` has no variable: see `super::libpq_env`.
    pub fn env_vars(&self, database: &str) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        for (k, var) in KEYWORDS {
            let Some(var) = var else { continue };
            if matches!(*k, "service" | "dbname") {
                continue;
            }
            if let Some(v) = self.get(k) {
                out.push((*var, v.to_string()));
            }
        }
        out.push(("PGDATABASE", database.to_string()));
        out
    }

    fn add_service(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), Failure> {
        let Some((name, _)) = self
            .params
            .get("service")
            .cloned()
            .or_else(|| env("PGSERVICE").filter(|s| !s.is_empty()).map(|s| (s, Origin::Env("PGSERVICE"))))
        else {
            return Ok(());
        };
        let mut files = Vec::new();
        match env("PGSERVICEFILE") {
            Some(f) => files.push(PathBuf::from(f)),
            None => {
                if let Some(home) = env("HOME") {
                    files.push(Path::new(&home).join(".pg_service.conf"));
                }
            }
        }
        let sysconf = env("PGSYSCONFDIR").unwrap_or_else(|| "/etc/postgresql-common".into());
        files.push(Path::new(&sysconf).join("pg_service.conf"));
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            if let Some(entries) = service_entry(&text, &name, &file)? {
                for (k, v) in entries {
                    self.params.entry(k).or_insert((v, Origin::Service(name.clone(), file.clone())));
                }
                return Ok(());
            }
        }
        Err(Failure::environment(format!(
            "service `{name}` is not defined in PGSERVICEFILE, ~/.pg_service.conf or {sysconf}/pg_service.conf"
        )))
    }

    fn add_defaults(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        if !self.params.contains_key("host") && !self.params.contains_key("hostaddr") {
            // libpq's compiled-in socket directory (Debian's, else the upstream /tmp).
            let dir = if Path::new("/var/run/postgresql").is_dir() { "/var/run/postgresql" } else { "/tmp" };
            self.params.insert("host".into(), (dir.into(), Origin::Default));
        }
        if !self.params.contains_key("port") {
            self.params.insert("port".into(), ("5432".into(), Origin::Default));
        }
        if !self.params.contains_key("user") {
            if let Some(u) = env("USER").or_else(|| env("LOGNAME")) {
                self.params.insert("user".into(), (u, Origin::Default));
            }
        }
        if !self.params.contains_key("dbname") {
            let u = self.user().to_string();
            self.params.insert("dbname".into(), (u, Origin::Default));
        }
        if !self.params.contains_key("sslmode") {
            self.params.insert("sslmode".into(), ("prefer".into(), Origin::Default));
        }
    }

    fn add_passfile(&mut self, env: &dyn Fn(&str) -> Option<String>) {
        use std::os::unix::fs::PermissionsExt;
        let path = match self.get("passfile") {
            Some(p) => PathBuf::from(p),
            None => match env("HOME") {
                Some(h) => Path::new(&h).join(".pgpass"),
                None => return,
            },
        };
        let Ok(meta) = std::fs::metadata(&path) else { return };
        // libpq ignores a password file others can read.
        if meta.permissions().mode() & 0o077 != 0 {
            return;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { return };
        let host = self.hosts().into_iter().next().unwrap_or_default();
        // A socket directory matches `localhost`, as in libpq.
        let host = if host.starts_with('/') || host.is_empty() { "localhost".to_string() } else { host };
        let port = self.get("port").unwrap_or("5432").split(',').next().unwrap_or("5432").to_string();
        let (db, user) = (self.dbname().to_string(), self.user().to_string());
        if let Some(pw) = super::pgpass_match(&text, &host, &port, &db, &user) {
            self.params.insert("password".into(), (pw, Origin::Passfile(path)));
        }
    }
}

/// The `[name]` section of a service file, or None when the file has no such section.
fn service_entry(text: &str, name: &str, file: &Path) -> Result<Option<Vec<(String, String)>>, Failure> {
    let mut inside = false;
    let mut found = None::<Vec<(String, String)>>;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            if inside {
                break;
            }
            inside = section == name;
            if inside {
                found = Some(Vec::new());
            }
            continue;
        }
        if !inside {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(Failure::environment(format!(
                "{}:{}: expected key=value in service `{name}`",
                file.display(),
                i + 1
            )));
        };
        let k = k.trim();
        if k == "service" {
            return Err(Failure::environment(format!(
                "{}:{}: a service cannot name another service",
                file.display(),
                i + 1
            )));
        }
        known(k).map_err(|e| e.context(format!("{}:{}", file.display(), i + 1)))?;
        if let Some(f) = found.as_mut() {
            f.push((k.to_string(), v.trim().to_string()));
        }
    }
    Ok(found)
}

fn known(key: &str) -> Result<(), Failure> {
    if KEYWORDS.iter().any(|(k, _)| *k == key) || key == "ssl" {
        Ok(())
    } else {
        Err(Failure::invalid(format!("unknown connection parameter `{key}`")))
    }
}

/// The parameters a URL or key=value string gives, in order.
pub fn parse(s: &str) -> Result<Vec<(String, String)>, Failure> {
    let s = s.trim();
    for engine in ["docker", "podman"] {
        if let Some(rest) = s.strip_prefix(engine).and_then(|r| r.strip_prefix("://")) {
            return parse_container(engine, rest);
        }
    }
    let pairs = match ["postgresql://", "postgres://"].iter().find_map(|p| s.strip_prefix(p)) {
        Some(rest) => parse_url(rest)?,
        None => {
            let pairs = super::conninfo_pairs(s);
            if !s.is_empty() && (pairs.is_empty() || !s.contains('=')) {
                return Err(Failure::invalid(
                    "a connection is a postgresql:// URL or key=value pairs (host=... dbname=...)",
                ));
            }
            pairs
        }
    };
    let mut out = Vec::new();
    for (k, v) in pairs {
        known(&k)?;
        // `ssl=true` is the JDBC spelling libpq accepts in URLs.
        if k == "ssl" {
            if v == "true" {
                out.push(("sslmode".into(), "require".into()));
            }
            continue;
        }
        out.push((k, v));
    }
    Ok(out)
}

/// Keywords of a container target beyond libpq's (see `super::container`).
const CONTAINER_KEYS: &[&str] = &["exec_user"];

/// `docker://CONTAINER/DATABASE?user=U&...`: the container (a name or id, as the engine
/// takes it), the database, and libpq keywords for the socket connection inside.
fn parse_container(engine: &str, rest: &str) -> Result<Vec<(String, String)>, Failure> {
    let bad = |what: &str| Failure::invalid(format!("invalid container target: {what}"));
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, q),
        None => (rest, ""),
    };
    let (name, db) = match main.split_once('/') {
        Some((n, d)) => (n, d),
        None => (main, ""),
    };
    let name = decode(name).ok_or_else(|| bad("bad percent-encoding in the container's name"))?;
    // The engines' own rule for names; ids are hex, so they pass too. A leading `-` would be
    // an option to the engine's CLI.
    let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !valid {
        return Err(bad(&format!(
            "`{}` is not a container name (letters, digits, `_`, `.` and `-`, starting with a letter or digit): write {engine}://CONTAINER/DATABASE?user=USER",
            name.escape_debug()
        )));
    }
    let mut out = vec![("container".to_string(), name), ("container_engine".to_string(), engine.to_string())];
    if !db.is_empty() {
        out.push(("dbname".into(), decode(db).ok_or_else(|| bad("bad percent-encoding in the database"))?));
    }
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad(&format!("`{kv}` is not key=value")))?;
        let k = decode(k).ok_or_else(|| bad("bad percent-encoding in a parameter"))?;
        let v = decode(v).ok_or_else(|| bad(&format!("bad percent-encoding in `{k}`")))?;
        if !CONTAINER_KEYS.contains(&k.as_str()) {
            known(&k)?;
        }
        out.retain(|(old, _)| *old != k);
        out.push((k, v));
    }
    Ok(out)
}

/// `[user[:password]@][host[:port][,...]][/dbname][?key=value&...]`, percent-decoded.
fn parse_url(rest: &str) -> Result<Vec<(String, String)>, Failure> {
    let bad = |what: &str| Failure::invalid(format!("invalid connection URL: {what}"));
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    let mut out = Vec::new();
    let hostspec = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            let (u, p) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            if !u.is_empty() {
                out.push(("user".into(), decode(u).ok_or_else(|| bad("bad percent-encoding in the user"))?));
            }
            if let Some(p) = p {
                out.push(("password".into(), decode(p).ok_or_else(|| bad("bad percent-encoding in the password"))?));
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    if !hostspec.is_empty() {
        let (mut hosts, mut ports) = (Vec::new(), Vec::new());
        for part in hostspec.split(',') {
            let (h, p) = if let Some(r) = part.strip_prefix('[') {
                let end = r.find(']').ok_or_else(|| bad("unclosed [ in an IPv6 host"))?;
                let after = &r[end + 1..];
                (&r[..end], after.strip_prefix(':').unwrap_or(""))
            } else {
                match part.rsplit_once(':') {
                    Some((h, p)) => (h, p),
                    None => (part, ""),
                }
            };
            if !p.is_empty() && p.parse::<u16>().is_err() {
                return Err(bad(&format!("invalid port `{p}`")));
            }
            hosts.push(decode(h).ok_or_else(|| bad("bad percent-encoding in a host"))?);
            ports.push(p.to_string());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            out.push(("host".into(), hosts.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.push(("port".into(), ports.join(",")));
        }
    }
    if let Some(db) = path.filter(|d| !d.is_empty()) {
        out.push(("dbname".into(), decode(db).ok_or_else(|| bad("bad percent-encoding in the database"))?));
    }
    for kv in query.unwrap_or_default().split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| bad(&format!("`{kv}` is not key=value")))?;
        let k = decode(k).ok_or_else(|| bad("bad percent-encoding in a parameter"))?;
        let v = decode(v).ok_or_else(|| bad(&format!("bad percent-encoding in `{k}`")))?;
        out.retain(|(old, _)| *old != k);
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn url_parts_are_decoded_and_query_keys_are_libpq_keywords() {
        let p = parse("postgresql://app:p%40ss@db1:5433,[::1]:5434/erp%20x?sslmode=verify-full&sslrootcert=/ca.pem")
            .expect("valid");
        let m: BTreeMap<_, _> = p.into_iter().collect();
        assert_eq!(m["user"], "app");
        assert_eq!(m["password"], "p@ss");
        assert_eq!(m["host"], "db1,::1");
        assert_eq!(m["port"], "5433,5434");
        assert_eq!(m["dbname"], "erp x");
        assert_eq!(m["sslmode"], "verify-full");
        assert_eq!(m["sslrootcert"], "/ca.pem");
    }

    #[test]
    fn socket_hosts_in_urls_and_key_value_strings() {
        let m: BTreeMap<_, _> = parse("postgresql:///erp?host=/tmp").expect("valid").into_iter().collect();
        assert_eq!((m["host"].as_str(), m["dbname"].as_str()), ("/tmp", "erp"));
        let m: BTreeMap<_, _> =
            parse("postgresql://%2Fvar%2Frun%2Fpostgresql/erp").expect("valid").into_iter().collect();
        assert_eq!(m["host"], "/var/run/postgresql");
        let ci =
            Conninfo::resolve_with("host=/var/run/postgresql dbname=erp sslmode=require", &env_of(&[])).expect("valid");
        assert!(ci.unix_only());
        assert!(ci.tokio_conninfo().contains("sslmode=disable"), "{}", ci.tokio_conninfo());
    }

    #[test]
    fn unknown_keywords_and_sslmodes_are_refused_by_name() {
        let e = parse("host=h sslmod=require").expect_err("typo");
        assert!(e.message.contains("`sslmod`"), "{}", e.message);
        let e = Conninfo::resolve_with("host=h", &env_of(&[("PGSSLMODE", "verify")])).expect_err("bad mode");
        assert!(e.message.contains("verify") && e.message.contains("PGSSLMODE"), "{}", e.message);
        assert!(parse("just-a-name").is_err());
    }

    #[test]
    fn string_beats_service_beats_environment_beats_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("services.conf");
        std::fs::write(&file, "# ours\n[other]\nhost=wrong\n[erp]\nhost=db.internal\nport=6432\nuser=svc\n")
            .expect("write");
        let f = file.to_string_lossy().into_owned();
        let env = env_of(&[
            ("PGSERVICEFILE", &f),
            ("PGUSER", "envuser"),
            ("PGSSLMODE", "verify-full"),
            ("PGPORT", "7000"),
            ("PGPASSWORD", "hunter2"),
        ]);
        let ci = Conninfo::resolve_with("service=erp port=5999", &env).expect("resolves");
        assert_eq!(ci.get("host"), Some("db.internal"));
        assert_eq!(ci.get("port"), Some("5999"));
        assert_eq!(ci.origin("port"), Some(&Origin::Given));
        assert_eq!(ci.user(), "svc");
        assert_eq!(ci.origin("user"), Some(&Origin::Service("erp".into(), file.clone())));
        assert_eq!(ci.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(ci.dbname(), "svc", "dbname defaults to the user");
        let shown = ci.describe().join("\n");
        assert!(shown.contains("password=******** (PGPASSWORD)"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sslmode=verify-full (PGSSLMODE)"), "{shown}");
        assert!(shown.contains(&format!("host=db.internal (service erp in {f})")), "{shown}");

        let e = Conninfo::resolve_with("service=nope", &env).expect_err("missing service");
        assert!(e.message.contains("`nope`"), "{}", e.message);
    }

    #[test]
    fn password_file_fills_a_missing_password() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let pass = dir.path().join("pgpass");
        std::fs::write(&pass, "db:5432:erp:app:from-file\n").expect("write");
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let p = pass.to_string_lossy().into_owned();
        let ci = Conninfo::resolve_with("postgresql://app@db/erp", &env_of(&[("PGPASSFILE", &p)])).expect("ok");
        assert_eq!(ci.get("password"), Some("from-file"));
        assert_eq!(ci.origin("password"), Some(&Origin::Passfile(pass.clone())));
        std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let ci = Conninfo::resolve_with("postgresql://app@db/erp", &env_of(&[("PGPASSFILE", &p)])).expect("ok");
        assert_eq!(ci.get("password"), None, "a world-readable password file is ignored");
    }

    #[test]
    fn tools_get_the_resolved_settings_but_no_service() {
        let ci = Conninfo::resolve_with(
            "host=db user=app sslmode=verify-ca sslrootcert=/ca.pem",
            &env_of(&[("PGSERVICE", ""), ("PGAPPNAME", "x")]),
        )
        .expect("ok");
        let env: BTreeMap<_, _> = ci.env_vars("erp").into_iter().collect();
        assert_eq!(env["PGSSLMODE"], "verify-ca");
        assert_eq!(env["PGSSLROOTCERT"], "/ca.pem");
        assert_eq!(env["PGDATABASE"], "erp");
        assert_eq!(env["PGAPPNAME"], "x");
        assert!(!env.contains_key("PGSERVICE"));
    }
}
