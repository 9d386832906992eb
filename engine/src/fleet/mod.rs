//! Fleets: many databases from one file.
//!
//! A fleet file groups targets as project -> environment -> database. Every level may carry
//! `defaults:` (connection, storage, retention, objectives, schedules, vars, and the names of
//! the environment variables that hold secrets); the nearest level wins, `vars` and
//! `retention` merge key by key. `fleet run` runs one runbook once per target, each as its
//! own pgdrill process (its own report, signals and secrets); `schedule` turns the file's
//! cadences into cron, systemd or Kubernetes files.
//!
//! Secrets are referenced, never written: a connection string with a password is refused,
//! and `password_env` / `key_env` name the variables a target's run takes them from.

pub mod run;
pub mod schedule;

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use crate::runbook::spans::{Pos, SpanIndex};
use crate::runbook::{Diagnostic, Diagnostics};

/// A map that keeps the order of the file (targets run and are listed in that order, and
/// a Kubernetes pod's index must mean the same target every time) and refuses a key given
/// twice.
#[derive(Debug, Clone)]
pub struct Ordered<V>(pub Vec<(String, V)>);

impl<V> Default for Ordered<V> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V2<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V2<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
                Ok(Ordered(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    if out.iter().any(|(have, _)| *have == k) {
                        return Err(serde::de::Error::custom(format!("`{k}` is given twice")));
                    }
                    let v = m.next_value::<V>()?;
                    out.push((k, v));
                }
                Ok(Ordered(out))
            }
        }
        d.deserialize_any(V2(PhantomData))
    }
}

/// Retention counts, merged key by key from the outer levels (prune's `keep_*` vars).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub daily: Option<u32>,
    pub weekly: Option<u32>,
    pub monthly: Option<u32>,
    pub yearly: Option<u32>,
    pub min_keep: Option<u32>,
    /// Keep everything younger than this (`30d`).
    pub within: Option<String>,
}

impl Retention {
    fn over(&mut self, inner: &Retention) {
        macro_rules! take {
            ($($f:ident),*) => { $( if inner.$f.is_some() { self.$f = inner.$f.clone(); } )* };
        }
        take!(daily, weekly, monthly, yearly, min_keep, within);
    }
}

/// What any level may set.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The server: a URL or key=value string (any form pgdrill accepts), without a password.
    pub connection: Option<String>,
    /// The database's real name, when it differs from its key (database entries only).
    pub database: Option<String>,
    /// The environment variable holding the password (given to the run as PGPASSWORD).
    pub password_env: Option<String>,
    /// A libpq password file (given to the run as PGPASSFILE).
    pub passfile: Option<String>,
    /// The environment variable holding the backup key (given to the run as
    /// PGDRILL_BACKUP_KEY).
    pub key_env: Option<String>,
    /// Backup location; `{project}`, `{environment}` and `{database}` are replaced.
    pub storage: Option<String>,
    pub retention: Option<Retention>,
    /// Recovery time objective of a restore of this database (`30m`).
    pub rto: Option<String>,
    /// Recovery point objective: the newest backup may be this old (`26h`).
    pub rpo: Option<String>,
    /// The cadences (names under `schedules:`) this database is on.
    pub schedules: Option<Vec<String>>,
    /// Extra runbook variables.
    pub vars: Option<Ordered<serde_yaml::Value>>,
    /// Kubernetes pods' requests and limits (top-level `defaults:` only: one CronJob runs
    /// every target of a cadence).
    pub resources: Option<Resources>,
}

/// A container's CPU and memory requests and limits, as Kubernetes quantities.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    pub requests: Option<Quantities>,
    pub limits: Option<Quantities>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quantities {
    pub cpu: Option<String>,
    pub memory: Option<String>,
}

/// Whether `q` is a Kubernetes quantity (`500m`, `2`, `1.5`, `512Mi`, `1G`, `1e3`).
fn valid_quantity(q: &str) -> bool {
    let num_end = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, suffix) = q.split_at(num_end);
    let num_ok = !num.is_empty() && num.matches('.').count() <= 1 && num != ".";
    let suffix_ok = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"].contains(&suffix)
        || suffix.strip_prefix(['e', 'E']).is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_digit()));
    num_ok && suffix_ok
}

/// A cadence: which runbook, when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// A shipped runbook name or a file (relative to the fleet file).
    pub runbook: String,
    /// Five-field cron expression, in the machine's time zone (`0 2 * * *`).
    pub cron: String,
    /// Variables for this cadence only (prune's `apply: true`).
    pub vars: Option<Ordered<serde_yaml::Value>>,
    /// How many targets run at once.
    pub parallel: Option<usize>,
    /// The longest one run of the cadence may take (`6h`); Kubernetes' activeDeadlineSeconds
    /// and systemd's RuntimeMaxSec.
    pub deadline: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvironment {
    #[serde(default)]
    defaults: Option<Settings>,
    #[serde(default)]
    databases: Ordered<Option<Settings>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    #[serde(default)]
    defaults: Option<Settings>,
    #[serde(default)]
    environments: Ordered<RawEnvironment>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    #[serde(default)]
    defaults: Option<Settings>,
    #[serde(default)]
    schedules: Ordered<Schedule>,
    #[serde(default)]
    projects: Ordered<RawProject>,
}

const FLEET_FIELDS: &[&str] = &["defaults", "schedules", "projects"];

/// One database of the fleet with every value resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// `project/environment/database` (the keys of the file).
    pub id: String,
    pub project: String,
    pub environment: String,
    /// The database's key in the file.
    pub key: String,
    /// Its real name.
    pub database: String,
    /// The connection string pointed at this database.
    pub database_url: String,
    pub password_env: Option<String>,
    pub passfile: Option<String>,
    pub key_env: Option<String>,
    pub storage: String,
    pub retention: Retention,
    pub rto: Option<String>,
    pub rpo: Option<String>,
    pub schedules: Vec<String>,
    pub vars: Vec<(String, String)>,
}

/// A checked fleet file.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub file: PathBuf,
    pub base_dir: PathBuf,
    pub schedules: Vec<(String, Schedule)>,
    pub targets: Vec<Target>,
    /// Requests and limits of Kubernetes pods (top-level `defaults.resources`).
    pub resources: Resources,
}

impl Fleet {
    /// Every environment variable the file names as a secret's source (a run gets only its
    /// own).
    pub fn secret_envs(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.targets.iter().flat_map(|t| [t.password_env.clone(), t.key_env.clone()]).flatten().collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn schedule(&self, name: &str) -> Option<&Schedule> {
        self.schedules.iter().find(|(n, _)| n == name).map(|(_, s)| s)
    }
}

/// Whether `text` is a fleet file rather than a runbook: it has `projects:` at the top.
/// A file nested deeper than a runbook may be is neither: serde_yaml scans deep flow
/// brackets in time quadratic in their depth (minutes for 100,000 `[`), so the linear
/// depth check answers first and the runbook parser rejects the file with its position.
pub fn is_fleet(text: &str) -> bool {
    SpanIndex::too_deep(text, crate::runbook::MAX_YAML_DEPTH).is_none()
        && matches!(serde_yaml::from_str::<serde_yaml::Value>(text), Ok(serde_yaml::Value::Mapping(m)) if m.contains_key("projects"))
}

/// Read and check a fleet file.
pub fn load(path: &Path) -> Result<Fleet, crate::Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::Error::invalid(format!("cannot read fleet file {}: {e}", path.display())))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&path.display().to_string(), &text, base).map_err(crate::Error::Runbook)
}

/// A name used in report directories, unit names and `--only`: letters, digits, `_`, `-`,
/// `.`, not starting with `.` or `-`.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && !s.starts_with(['.', '-'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn valid_env_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

struct Cx<'a> {
    file: &'a str,
    text: &'a str,
    spans: SpanIndex,
    diags: Diagnostics,
}

impl Cx<'_> {
    fn at_value(&mut self, path: &str, msg: impl Into<String>, help: Option<String>) {
        let pos = self.spans.value(path);
        self.diags.push(Diagnostic::new(self.file, self.text, pos, msg).with_help(help));
    }
    fn at_key(&mut self, path: &str, msg: impl Into<String>, help: Option<String>) {
        let pos = self.spans.key(path);
        self.diags.push(Diagnostic::new(self.file, self.text, pos, msg).with_help(help));
    }

    /// A project, environment or database key becomes part of paths and `--only` filters:
    /// one that cannot is refused at the key.
    fn name_at(&mut self, path: &str, what: &str, name: &str, help: String) {
        if !valid_name(name) {
            self.at_key(path, format!("{what} `{name}` cannot be used in paths and --only"), Some(help));
        }
    }
}

/// Parse and check fleet text; `base_dir` is where relative runbook files are found.
pub fn parse(file: &str, text: &str, base_dir: PathBuf) -> Result<Fleet, Diagnostics> {
    let mut cx = Cx { file, text, spans: SpanIndex::default(), diags: Diagnostics::default() };
    if let Some(pos) = SpanIndex::too_deep(text, crate::runbook::MAX_YAML_DEPTH) {
        cx.diags.push(Diagnostic::new(file, text, pos, "YAML nested too deep for a fleet file"));
        return Err(cx.diags);
    }
    if let Err(e) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        let pos = e.location().map(|l| Pos { line: l.line(), col: l.column() }).unwrap_or(Pos { line: 1, col: 1 });
        cx.diags.push(Diagnostic::new(file, text, pos, format!("invalid YAML: {e}")));
        return Err(cx.diags);
    }
    cx.spans = SpanIndex::build(text);
    let raw: RawFleet = match serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(text)) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." || path == "?" { String::new() } else { path };
            let mut msg = e.into_inner().to_string();
            // serde_yaml appends its own location; ours is in the diagnostic.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            // serde_yaml puts the node's path first; the diagnostic shows where it is.
            if let Some((prefix, rest)) = msg.split_once(": ") {
                if !prefix.contains(' ') && path.starts_with(prefix) {
                    msg = rest.to_string();
                }
            }
            let help =
                if path.is_empty() { Some(format!("a fleet file has {}", FLEET_FIELDS.join(", "))) } else { None };
            cx.at_key(&path, msg, help);
            return Err(cx.diags);
        }
    };

    let mut schedules = Vec::new();
    for (name, s) in &raw.schedules.0 {
        let path = format!("schedules.{name}");
        if !valid_name(name) {
            cx.at_key(
                &path,
                format!("schedule name `{name}` is not usable in unit and file names"),
                Some(NAME_HELP.into()),
            );
        }
        if let Some(why) = schedule::unsafe_name(&s.runbook) {
            cx.at_value(
                &format!("{path}.runbook"),
                format!("runbook `{}` {why}", schedule::one_line(&s.runbook)),
                Some(
                    "rename the runbook file: its name becomes part of crontab lines, unit files and arguments".into(),
                ),
            );
        } else if crate::shipped::find(&s.runbook).is_none() && !base_dir.join(&s.runbook).is_file() {
            cx.at_value(
                &format!("{path}.runbook"),
                format!("no shipped runbook or file `{}`", s.runbook),
                Some(format!(
                    "shipped runbooks: {}; a file is found relative to the fleet file",
                    crate::shipped::names().collect::<Vec<_>>().join(", ")
                )),
            );
        }
        if let Err(e) = schedule::Cron::parse(&s.cron) {
            cx.at_value(&format!("{path}.cron"), format!("cron `{}`: {e}", s.cron), Some(schedule::CRON_HELP.into()));
        }
        if let Some(d) = &s.deadline {
            if let Err(e) = crate::runbook::parse_duration(d) {
                cx.at_value(&format!("{path}.deadline"), format!("`{d}`: {e}"), Some("write `6h`, `90m`".into()));
            }
        }
        if s.parallel == Some(0) {
            cx.at_value(&format!("{path}.parallel"), "parallel must be at least 1", None);
        }
        check_vars(&mut cx, &format!("{path}.vars"), s.vars.as_ref());
        schedules.push((name.clone(), s.clone()));
    }

    let root = raw.defaults.clone().unwrap_or_default();
    check_settings(&mut cx, "defaults", &root, false, &schedules);
    let mut targets = Vec::new();
    for (p, project) in &raw.projects.0 {
        let ppath = format!("projects.{p}");
        cx.name_at(&ppath, "project name", p, NAME_HELP.into());
        let pset = level_defaults(&mut cx, &ppath, project.defaults.as_ref(), &schedules);
        for (e, env) in &project.environments.0 {
            let epath = format!("{ppath}.environments.{e}");
            cx.name_at(&epath, "environment name", e, NAME_HELP.into());
            let eset = level_defaults(&mut cx, &epath, env.defaults.as_ref(), &schedules);
            for (d, dset) in &env.databases.0 {
                let dpath = format!("{epath}.databases.{d}");
                let help = format!("{NAME_HELP}; give the real name with `database:` inside the entry");
                cx.name_at(&dpath, "database key", d, help);
                let dset = dset.clone().unwrap_or_default();
                check_settings(&mut cx, &dpath, &dset, true, &schedules);
                if let Some(t) = resolve(&mut cx, [&root, &pset, &eset, &dset], (p, e, d), &dpath) {
                    targets.push(t);
                }
            }
        }
    }
    if raw.projects.0.is_empty() {
        cx.at_key(
            "projects",
            "the fleet has no projects",
            Some("projects: NAME: environments: NAME: databases: NAME: {}".into()),
        );
    } else if targets.is_empty() && cx.diags.is_empty() {
        cx.at_key("projects", "the fleet has no databases", Some("each environment lists its `databases:`".into()));
    }
    if cx.diags.is_empty() {
        let resources = root.resources.clone().unwrap_or_default();
        Ok(Fleet { file: PathBuf::from(file), base_dir, schedules, targets, resources })
    } else {
        Err(cx.diags)
    }
}

const NAME_HELP: &str = "use letters, digits, `_`, `-` and `.` (not first), at most 63";

fn check_vars(cx: &mut Cx<'_>, path: &str, vars: Option<&Ordered<serde_yaml::Value>>) {
    for (k, v) in vars.map(|v| v.0.as_slice()).unwrap_or_default() {
        if matches!(v, serde_yaml::Value::Mapping(_) | serde_yaml::Value::Sequence(_)) {
            cx.at_value(&format!("{path}.{k}"), format!("var `{k}` must be a single value"), None);
        }
        if let serde_yaml::Value::String(v) = v {
            refuse_credentials(cx, &format!("{path}.{k}"), v);
        }
    }
}

/// The `defaults:` of a project or an environment at `path`, checked (empty when absent).
fn level_defaults(cx: &mut Cx<'_>, path: &str, d: Option<&Settings>, schedules: &[(String, Schedule)]) -> Settings {
    let set = d.cloned().unwrap_or_default();
    check_settings(cx, &format!("{path}.defaults"), &set, false, schedules);
    set
}

fn check_settings(cx: &mut Cx<'_>, path: &str, s: &Settings, database_level: bool, schedules: &[(String, Schedule)]) {
    if s.database.is_some() && !database_level {
        cx.at_key(&format!("{path}.database"), "`database` names one database: set it on the database entry", None);
    }
    if let Some(c) = &s.connection {
        if let Err(e) = crate::pg::conninfo::parse(c) {
            cx.at_value(&format!("{path}.connection"), format!("connection: {e}"), None);
        }
    }
    // Any value may be a URL or a connection string: none may carry a credential.
    let mut values: Vec<(String, &str)> = Vec::new();
    values.extend(s.connection.as_deref().map(|c| (format!("{path}.connection"), c)));
    values.extend(s.storage.as_deref().map(|c| (format!("{path}.storage"), c)));
    values.extend(s.passfile.as_deref().map(|c| (format!("{path}.passfile"), c)));
    for (at, v) in values {
        refuse_credentials(cx, &at, v);
    }
    for (field, v) in [("password_env", &s.password_env), ("key_env", &s.key_env)] {
        if let Some(v) = v {
            if !valid_env_name(v) {
                cx.at_value(
                    &format!("{path}.{field}"),
                    format!("`{v}` is not an environment variable name"),
                    Some("name the variable that holds the secret, e.g. AUTH_DB_PASSWORD".into()),
                );
            }
        }
    }
    for (field, v) in [("rto", &s.rto), ("rpo", &s.rpo)] {
        if let Some(v) = v {
            if let Err(e) = crate::runbook::parse_duration(v) {
                cx.at_value(&format!("{path}.{field}"), format!("`{v}`: {e}"), Some("write `30m`, `26h`, `7d`".into()));
            }
        }
    }
    if let Some(w) = s.retention.as_ref().and_then(|r| r.within.as_ref()) {
        if let Err(e) = crate::runbook::parse_duration(w) {
            cx.at_value(&format!("{path}.retention.within"), format!("`{w}`: {e}"), Some("write `30d`".into()));
        }
    }
    for (i, name) in s.schedules.iter().flatten().enumerate() {
        if !schedules.iter().any(|(n, _)| n == name) {
            let known: Vec<&str> = schedules.iter().map(|(n, _)| n.as_str()).collect();
            let help = crate::runbook::suggest::help(name, known.iter().copied()).or_else(|| {
                Some(format!("schedules defined: {}", if known.is_empty() { "none".into() } else { known.join(", ") }))
            });
            cx.at_value(&format!("{path}.schedules[{i}]"), format!("no schedule `{name}`"), help);
        }
    }
    if let Some(st) = &s.storage {
        let rest = st.replace("{project}", "").replace("{environment}", "").replace("{database}", "");
        if rest.contains('{') || rest.contains('}') {
            cx.at_value(
                &format!("{path}.storage"),
                format!("storage `{st}` has an unknown placeholder"),
                Some("placeholders: {project}, {environment}, {database}".into()),
            );
        }
    }
    check_vars(cx, &format!("{path}.vars"), s.vars.as_ref());
    if let Some(r) = &s.resources {
        if path != "defaults" {
            cx.at_key(
                &format!("{path}.resources"),
                "`resources` are the Kubernetes pods' of a whole cadence: set them in the top-level `defaults:`",
                None,
            );
        }
        for (kind, q) in [("requests", &r.requests), ("limits", &r.limits)] {
            for (what, v) in q.iter().flat_map(|q| [("cpu", &q.cpu), ("memory", &q.memory)]) {
                if let Some(v) = v.as_ref().filter(|v| !valid_quantity(v)) {
                    cx.at_value(
                        &format!("{path}.resources.{kind}.{what}"),
                        format!("`{}` is not a Kubernetes quantity", schedule::one_line(v)),
                        Some("write `500m` or `2` for CPU, `512Mi` or `2Gi` for memory".into()),
                    );
                }
            }
        }
    }
}

/// The credentials a value holds, each as (what it is, its text as written): the password of
/// a URL's user info, the values of credential query parameters, and the `password` and
/// `sslpassword` of a `key=value` connection string.
pub fn credentials_in(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let ends = |c: char| c.is_whitespace() || "\"'<>`".contains(c);
    if value.contains("://") {
        let mut from = 0;
        while let Some(at) = value[from..].find("://") {
            let start = from + at + 3;
            let end = value[start..].find(ends).map_or(value.len(), |e| start + e);
            let url = &value[start..end];
            let auth_end = url.find(['/', '?', '#']).unwrap_or(url.len());
            if let Some((userinfo, _)) = url[..auth_end].rsplit_once('@') {
                if let Some((_, pw)) = userinfo.split_once(':').filter(|(_, p)| !p.is_empty()) {
                    out.push(("a password in a URL's user info".to_string(), pw.to_string()));
                }
            }
            if let Some(q) = url.split_once('?').map(|(_, q)| q.split('#').next().unwrap_or_default()) {
                for pair in q.split(['&', ';']) {
                    if let Some((k, v)) =
                        pair.split_once('=').filter(|(k, v)| !v.is_empty() && crate::redact::is_credential_param(k))
                    {
                        out.push((
                            format!("a credential in the query parameter `{}`", crate::report::visible(k)),
                            v.to_string(),
                        ));
                    }
                }
            }
            from = end.max(start);
        }
    } else if value.contains('=') {
        if let Ok(pairs) = crate::pg::conninfo::parse(value) {
            for (k, v) in pairs {
                if (k == "password" || k == "sslpassword") && !v.is_empty() {
                    out.push((format!("a `{k}` setting"), v));
                }
            }
        }
    }
    out
}

/// Refuse a value holding a credential, at its line, showing neither the credential nor its
/// encoded forms on the quoted line.
fn refuse_credentials(cx: &mut Cx<'_>, path: &str, value: &str) {
    let found = credentials_in(value);
    let Some((what, _)) = found.first() else { return };
    cx.at_value(
        path,
        format!("`{path}` holds {what}; a fleet file names where secrets are, never the secrets"),
        Some("remove it: set `password_env: VARIABLE` (or `passfile:`) for database passwords, and give stores their keys through their environment variables".into()),
    );
    if let Some(d) = cx.diags.0.last_mut() {
        d.source_line = d.source_line.take().map(|mut l| {
            for (_, secret) in &found {
                for form in [secret.clone(), crate::util::percent_encode(secret), crate::util::percent_decode(secret)] {
                    if !form.is_empty() {
                        l = l.replace(&form, "****");
                    }
                }
            }
            l
        });
    }
}

fn scalar(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::String(s) => s.clone(),
        serde_yaml::Value::Null => String::new(),
        other => serde_yaml::to_string(other).map(|s| s.trim_end().to_string()).unwrap_or_default(),
    }
}

fn resolve(cx: &mut Cx<'_>, levels: [&Settings; 4], (p, e, d): (&str, &str, &str), path: &str) -> Option<Target> {
    macro_rules! nearest {
        ($f:ident) => {
            levels.iter().rev().find_map(|l| l.$f.clone())
        };
    }
    let id = format!("{p}/{e}/{d}");
    let database = levels[3].database.clone().unwrap_or_else(|| d.to_string());
    let Some(connection) = nearest!(connection) else {
        cx.at_key(
            path,
            format!("{id} has no connection"),
            Some("set `connection:` on it or in a `defaults:` above it".into()),
        );
        return None;
    };
    let Some(storage) = nearest!(storage) else {
        cx.at_key(
            path,
            format!("{id} has no storage"),
            Some("set `storage:` on it or in a `defaults:` above it".into()),
        );
        return None;
    };
    let storage = storage.replace("{project}", p).replace("{environment}", e).replace("{database}", d);
    let database_url = match crate::pg::with_database(&connection, &database) {
        Ok(u) => u,
        Err(err) => {
            cx.at_key(path, format!("{id}: connection: {err}"), None);
            return None;
        }
    };
    let mut retention = Retention::default();
    let mut vars: Vec<(String, String)> = Vec::new();
    for l in levels {
        if let Some(r) = &l.retention {
            retention.over(r);
        }
        for (k, v) in l.vars.as_ref().map(|v| v.0.as_slice()).unwrap_or_default() {
            vars.retain(|(have, _)| have != k);
            vars.push((k.clone(), scalar(v)));
        }
    }
    Some(Target {
        id,
        project: p.into(),
        environment: e.into(),
        key: d.into(),
        database,
        database_url,
        password_env: nearest!(password_env),
        passfile: nearest!(passfile),
        key_env: nearest!(key_env),
        storage,
        retention,
        rto: nearest!(rto),
        rpo: nearest!(rpo),
        schedules: nearest!(schedules).unwrap_or_default(),
        vars,
    })
}

/// The variables a runbook gets for a target: what the fleet knows (connection, storage,
/// database, objectives, retention), then the target's `vars`, then the cadence's, then the
/// command line's; only those the runbook declares.
pub fn vars_for(
    rb: &crate::runbook::Runbook,
    t: &Target,
    schedule: Option<&Schedule>,
    cli: &[(String, String)],
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = vec![
        ("database_url".into(), t.database_url.clone()),
        ("storage".into(), t.storage.clone()),
        ("database".into(), t.database.clone()),
    ];
    if let Some(r) = &t.rpo {
        all.push(("rpo".into(), r.clone()));
    }
    let r = &t.retention;
    for (k, v) in [
        ("keep_daily", r.daily),
        ("keep_weekly", r.weekly),
        ("keep_monthly", r.monthly),
        ("keep_yearly", r.yearly),
        ("min_keep", r.min_keep),
    ] {
        if let Some(v) = v {
            all.push((k.into(), v.to_string()));
        }
    }
    if let Some(w) = &r.within {
        all.push(("keep_within".into(), w.clone()));
    }
    let sched: Vec<(String, String)> = schedule
        .and_then(|s| s.vars.as_ref())
        .map(|v| v.0.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default();
    for (k, v) in t.vars.iter().chain(&sched).chain(cli) {
        all.retain(|(have, _)| have != k);
        all.push((k.clone(), v.clone()));
    }
    let declared: BTreeMap<&str, ()> = rb.vars.keys().map(|k| (k.as_str(), ())).collect();
    all.retain(|(k, _)| declared.contains_key(k.as_str()));
    all
}

/// The targets `--only` and `--schedule` select, in file order. `--only` takes
/// `project`, `project/environment` or `project/environment/database`.
pub fn select<'a>(fleet: &'a Fleet, only: &[String], schedule: Option<&str>) -> Result<Vec<&'a Target>, String> {
    for o in only {
        let parts: Vec<&str> = o.split('/').collect();
        let known = fleet.targets.iter().any(|t| matches_only(t, &parts));
        if !known {
            let ids: Vec<&str> = fleet.targets.iter().map(|t| t.id.as_str()).collect();
            let help =
                crate::runbook::suggest::help(o, ids.iter().copied()).map(|h| format!(" ({h})")).unwrap_or_default();
            return Err(format!("--only {o}: no such target in {}{help}", fleet.file.display()));
        }
    }
    if let Some(s) = schedule {
        if fleet.schedule(s).is_none() {
            return Err(format!("--schedule {s}: {} defines no such schedule", fleet.file.display()));
        }
    }
    Ok(fleet
        .targets
        .iter()
        .filter(|t| only.is_empty() || only.iter().any(|o| matches_only(t, &o.split('/').collect::<Vec<_>>())))
        .filter(|t| schedule.is_none_or(|s| t.schedules.iter().any(|x| x == s)))
        .collect())
}

fn matches_only(t: &Target, parts: &[&str]) -> bool {
    match parts {
        [p] => t.project == *p,
        [p, e] => t.project == *p && t.environment == *e,
        [p, e, d] => t.project == *p && t.environment == *e && t.key == *d,
        _ => false,
    }
}

#[cfg(test)]
mod tests;
