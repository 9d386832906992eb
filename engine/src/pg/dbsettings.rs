//! What a database carries outside its contents, which DROP DATABASE loses and pg_dump
//! (without --create) does not write: `ALTER DATABASE ... SET` and `ALTER ROLE ... IN
//! DATABASE ... SET` settings, the grants on the database (`GRANT CONNECT ON DATABASE`),
//! its comment and its connection limit. The operator restore captures them before the
//! drop, applies them again after the create (and after a rollback's put-back), and
//! compares them after the restore.
//!
//! Every name and value reaches SQL quoted: names are data.

use serde::{Deserialize, Deserializer, Serialize};
use tokio_postgres::Client;

use super::native::quote_ident;
use super::native::quote_literal as literal;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Setting {
    /// The role of `ALTER ROLE ... IN DATABASE`; empty for `ALTER DATABASE ... SET`.
    #[serde(default)]
    pub role: String,
    pub name: String,
    /// As the catalogue stores it (a list setting such as search_path in its list syntax).
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Grant {
    /// The role granted to; empty for PUBLIC.
    #[serde(default)]
    pub grantee: String,
    pub privilege: String,
    #[serde(default)]
    pub grantable: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseSettings {
    #[serde(default)]
    pub settings: Vec<Setting>,
    /// None: the default privileges (no grant or revoke was ever made).
    #[serde(default)]
    pub grants: Option<Vec<Grant>>,
    #[serde(default)]
    pub comment: Option<String>,
    /// -1: no limit.
    #[serde(default = "no_limit")]
    pub connection_limit: i32,
}

fn no_limit() -> i32 {
    -1
}

/// For a step's `with:`: the settings as a map, or nothing (null or "").
pub fn opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DatabaseSettings>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Settings(DatabaseSettings),
        Text(String),
    }
    match Option::<Given>::deserialize(d)? {
        None => Ok(None),
        Some(Given::Settings(s)) => Ok(Some(s)),
        Some(Given::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Given::Text(t)) => Err(serde::de::Error::custom(format!(
            "`settings` is the map restore.preflight outputs as `settings`, not the text `{t}`"
        ))),
    }
}

impl DatabaseSettings {
    /// A short account for logs: "2 settings, 3 grants, a comment, connection limit 5".
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let n = self.settings.len();
        parts.push(format!("{n} setting{}", if n == 1 { "" } else { "s" }));
        match &self.grants {
            Some(g) => parts.push(format!("{} grant{}", g.len(), if g.len() == 1 { "" } else { "s" })),
            None => parts.push("default grants".into()),
        }
        if self.comment.is_some() {
            parts.push("a comment".into());
        }
        if self.connection_limit >= 0 {
            parts.push(format!("connection limit {}", self.connection_limit));
        }
        parts.join(", ")
    }
}

/// The settings of `database`, or None when it does not exist.
pub async fn capture(client: &Client, database: &str) -> Result<Option<DatabaseSettings>, tokio_postgres::Error> {
    let Some(row) = client
        .query_opt(
            "select datconnlimit, shobj_description(oid, 'pg_database'), datacl is null from pg_database where datname = $1",
            &[&database],
        )
        .await?
    else {
        return Ok(None);
    };
    let connection_limit: i32 = row.get(0);
    let comment: Option<String> = row.get(1);
    let default_acl: bool = row.get(2);
    let grants = if default_acl {
        None
    } else {
        let rows = client
            .query(
                "select distinct coalesce(r.rolname::text, ''), a.privilege_type::text, a.is_grantable \
                 from pg_database d cross join lateral aclexplode(d.datacl) a left join pg_roles r on r.oid = a.grantee \
                 where d.datname = $1 order by 1, 2, 3",
                &[&database],
            )
            .await?;
        let mut g: Vec<Grant> =
            rows.iter().map(|r| Grant { grantee: r.get(0), privilege: r.get(1), grantable: r.get(2) }).collect();
        // The same privilege from two grantors is one grant here.
        g.dedup_by(|a, b| a.grantee == b.grantee && a.privilege == b.privilege);
        Some(g)
    };
    let rows = client
        .query(
            "select coalesce(r.rolname::text, ''), c.setting from pg_db_role_setting s \
             join pg_database d on d.oid = s.setdatabase left join pg_roles r on r.oid = s.setrole \
             cross join lateral unnest(s.setconfig) c(setting) where d.datname = $1",
            &[&database],
        )
        .await?;
    let settings = role_settings(&rows).into_iter().map(|(role, name, value)| Setting { role, name, value }).collect();
    Ok(Some(DatabaseSettings { settings, grants, comment, connection_limit }))
}

/// Rows of `(role, setting)` read from pg_db_role_setting as `(role, name, value)`, sorted;
/// an entry without `=` is passed over. Also what `globals` reads a role's own settings with.
pub(super) fn role_settings(rows: &[tokio_postgres::Row]) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = rows
        .iter()
        .filter_map(|r| {
            let text: String = r.get(1);
            let (name, value) = text.split_once('=')?;
            Some((r.get(0), name.to_string(), value.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Settings whose stored value is a list of (possibly double-quoted) names, which SET takes
/// as a list of literals; every other value is one literal.
const LIST_SETTINGS: &[&str] = &[
    "search_path",
    "temp_tablespaces",
    "session_preload_libraries",
    "local_preload_libraries",
    "shared_preload_libraries",
    "unix_socket_directories",
];

/// `"$user", public` -> `'$user', 'public'`.
fn list_value(stored: &str) -> String {
    let mut items = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = stored.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => items.push(std::mem::take(&mut cur)),
            c if c.is_whitespace() && !quoted => {}
            c => cur.push(c),
        }
    }
    items.push(cur);
    items.iter().map(|i| literal(i)).collect::<Vec<_>>().join(", ")
}

pub(crate) fn value_sql(name: &str, value: &str) -> String {
    if LIST_SETTINGS.contains(&name.to_ascii_lowercase().as_str()) {
        list_value(value)
    } else {
        literal(value)
    }
}

/// The statements that give `database` these settings, assuming it was just created (so it
/// has none of them yet): connection limit, comment, settings, and its grants replaced.
pub fn statements(database: &str, owner: &str, s: &DatabaseSettings) -> Vec<String> {
    let db = quote_ident(database);
    let mut out = Vec::new();
    if s.connection_limit >= 0 {
        out.push(format!("alter database {db} connection limit {}", s.connection_limit));
    }
    if let Some(c) = &s.comment {
        out.push(format!("comment on database {db} is {}", literal(c)));
    }
    for set in &s.settings {
        let value = value_sql(&set.name, &set.value);
        out.push(if set.role.is_empty() {
            format!("alter database {db} set {} = {value}", quote_ident(&set.name))
        } else {
            format!("alter role {} in database {db} set {} = {value}", quote_ident(&set.role), quote_ident(&set.name))
        });
    }
    if let Some(grants) = &s.grants {
        // From the defaults (owner: all; PUBLIC: CONNECT, TEMPORARY) to exactly these.
        out.push(format!("revoke all on database {db} from public"));
        if !owner.is_empty() {
            out.push(format!("revoke all on database {db} from {}", quote_ident(owner)));
        }
        for g in grants {
            let to = if g.grantee.is_empty() { "public".to_string() } else { quote_ident(&g.grantee) };
            let option = if g.grantable && !g.grantee.is_empty() { " with grant option" } else { "" };
            out.push(format!("grant {} on database {db} to {to}{option}", g.privilege.to_ascii_lowercase()));
        }
    }
    out
}

/// Give the just-created `database` these settings.
pub async fn apply(client: &Client, database: &str, s: &DatabaseSettings) -> Result<(), String> {
    let owner: String = client
        .query_opt("select pg_get_userbyid(datdba)::text from pg_database where datname = $1", &[&database])
        .await
        .map_err(|e| super::describe(&e))?
        .map(|r| r.get(0))
        .unwrap_or_default();
    for sql in statements(database, &owner, s) {
        client.batch_execute(&sql).await.map_err(|e| format!("`{sql}`: {}", super::describe(&e)))?;
    }
    Ok(())
}

/// What differs between the settings expected and those found, one line each.
pub fn differences(expected: &DatabaseSettings, actual: &DatabaseSettings) -> Vec<String> {
    let mut out = Vec::new();
    let who = |s: &Setting| if s.role.is_empty() { String::new() } else { format!(" for role {}", s.role) };
    for s in &expected.settings {
        if !actual.settings.contains(s) {
            out.push(format!("setting {} = {}{} is missing", s.name, s.value, who(s)));
        }
    }
    for s in &actual.settings {
        if !expected.settings.contains(s) {
            out.push(format!("setting {} = {}{} was not there before", s.name, s.value, who(s)));
        }
    }
    if expected.grants != actual.grants {
        let show = |g: &Option<Vec<Grant>>| match g {
            None => "the defaults".to_string(),
            Some(g) => g
                .iter()
                .map(|g| {
                    format!(
                        "{} to {}{}",
                        g.privilege,
                        if g.grantee.is_empty() { "PUBLIC" } else { &g.grantee },
                        if g.grantable { " with grant option" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        };
        out.push(format!("grants are {}, expected {}", show(&actual.grants), show(&expected.grants)));
    }
    if expected.comment != actual.comment {
        out.push(format!("comment is {:?}, expected {:?}", actual.comment, expected.comment));
    }
    if expected.connection_limit != actual.connection_limit {
        out.push(format!("connection limit is {}, expected {}", actual.connection_limit, expected.connection_limit));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_settings_become_lists_of_literals_and_names_are_quoted() {
        assert_eq!(list_value("\"$user\", public"), "'$user', 'public'");
        assert_eq!(list_value("\"we\"\"ird, one\", b"), "'we\"ird, one', 'b'");
        let s = DatabaseSettings {
            settings: vec![
                Setting { role: String::new(), name: "search_path".into(), value: "app, public".into() },
                Setting { role: "it's".into(), name: "app.tenant".into(), value: "o'neil".into() },
            ],
            grants: Some(vec![Grant { grantee: String::new(), privilege: "CONNECT".into(), grantable: true }]),
            comment: Some("a 'c'".into()),
            connection_limit: 3,
        };
        assert_eq!(
            statements("x\"y", "own", &s),
            vec![
                "alter database \"x\"\"y\" connection limit 3",
                "comment on database \"x\"\"y\" is 'a ''c'''",
                "alter database \"x\"\"y\" set \"search_path\" = 'app', 'public'",
                "alter role \"it's\" in database \"x\"\"y\" set \"app.tenant\" = 'o''neil'",
                "revoke all on database \"x\"\"y\" from public",
                "revoke all on database \"x\"\"y\" from \"own\"",
                "grant connect on database \"x\"\"y\" to public",
            ]
        );
    }
}
