//! The runbook model: YAML as the user wrote it, checked and turned into typed structs.
//!
//! Parsing is strict but kind: unknown step kinds and fields, wrong types, duplicate ids and
//! references to steps that do not exist (or have not run yet) are all errors that name
//! `file:line:col`, and a misspelt name gets the nearest valid one. Nothing here does I/O
//! beyond reading runbook files (`load.rs`, which also follows written-out nestings);
//! `with:` blocks stay as YAML trees and are typed by each step kind, after templating, at
//! execution time. `vars.rs` types `--var` values and computes defaults and `let:` values.

mod load;
pub mod notify;
mod secrets;
mod vars;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value as Yaml;

// Diagnostics live below the error type (which carries them); named here too, where
// runbooks' readers have always found them.
pub use crate::diag::{spans, suggest, Diagnostic, Diagnostics};
pub use load::{load_checked, load_runbook_ref, MAX_NESTING};
pub use secrets::{register_run_inputs, secret_fields};
use spans::{Pos, SpanIndex};
pub use vars::{overrides_from_pairs, resolve_lets, resolve_vars, VarType};

use crate::steps;
use crate::template;

/// What a run is, for the compliance report and `pgdrill report`, which judge drills apart
/// from the daily backup and verify runs (a fresh backup is no evidence that a drill was run).
/// A runbook declares it with a top-level `kind:`; a runbook that does not is classified
/// from what its steps established (`report::compliance::run_kind`), never from the names of
/// the step kinds it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunKind {
    /// A rehearsal of a recovery: measures RTO and RPO against targets.
    Drill,
    /// Writes backups.
    Backup,
    /// Restores into a database that people use.
    Restore,
    /// Proves a backup restores, on a throwaway server.
    Verify,
    /// Anything else (pruning, copying, smoke checks).
    Other,
}

impl RunKind {
    pub const ALL: [RunKind; 5] = [RunKind::Drill, RunKind::Backup, RunKind::Restore, RunKind::Verify, RunKind::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            RunKind::Drill => "drill",
            RunKind::Backup => "backup",
            RunKind::Restore => "restore",
            RunKind::Verify => "verify",
            RunKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<RunKind> {
        RunKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A runbook ready to plan or run.
#[derive(Debug, Clone)]
pub struct Runbook {
    pub name: String,
    pub description: Option<String>,
    /// What the run is, as the runbook declares it (`kind:`); `None` when it does not, and
    /// the compliance report then tells from the run's facts (see [`RunKind`]).
    pub kind: Option<RunKind>,
    /// Declared variables with their defaults (`None`: must be given with `--var`).
    pub vars: BTreeMap<String, Option<Yaml>>,
    /// What each variable of `vars` takes (see [`VarType`]).
    pub var_types: BTreeMap<String, VarType>,
    /// `let:` values, in the order written: computed once per run from vars, env, the values
    /// above them and the outputs of steps (once those have run), and read as `let.NAME`
    /// wherever a var can be read.
    pub lets: Vec<(String, Yaml)>,
    pub secrets: BTreeMap<String, SecretSource>,
    pub targets: Targets,
    /// `steps:` with the steps of each `parallel` group in place, marked with their group.
    pub steps: Vec<StepDef>,
    /// The `parallel` groups of `steps:`, each with its own `when` and `fail_fast`.
    pub groups: Vec<GroupDef>,
    pub finally: Vec<StepDef>,
    /// For each `let` value that reads step outputs (itself or through the `let` values above
    /// it): the ids of the steps it reads. It is computed once they have run; validate refuses a
    /// read of it where one of them has not.
    pub let_reads: BTreeMap<String, BTreeSet<String>>,
    /// Where the file came from, as the user named it (for messages).
    pub file: String,
    /// Directory that relative paths in the runbook resolve against.
    pub base_dir: PathBuf,
    /// The text it was parsed from, for diagnostics found after parsing (a nesting cycle).
    pub source: std::sync::Arc<str>,
    /// Forms that still work but are on their way out (`steps.x.y` for an output), for
    /// `validate` to show; they never make the runbook invalid.
    pub warnings: Vec<Diagnostic>,
    /// Alerts and metrics for runs of this runbook (the same form as a `--notify` file).
    pub notify: Option<notify::NotifyFile>,
}

impl Runbook {
    /// Every step, with the rollbacks and `finally` steps.
    pub fn all_steps(&self) -> impl Iterator<Item = &StepDef> {
        self.steps.iter().flat_map(|s| std::iter::once(s).chain(s.rollback.iter())).chain(self.finally.iter())
    }

    /// A diagnostic at the value of `path` (a key path such as `steps[1].with.path`).
    pub fn diagnostic_at(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let pos = SpanIndex::build(&self.source).value(path);
        Diagnostic::new(&self.file, &self.source, pos, message)
    }

    /// Where the value of `path` is, as `file:line:col`.
    pub fn location(&self, path: &str) -> String {
        let pos = SpanIndex::build(&self.source).value(path);
        format!("{}:{}:{}", self.file, pos.line, pos.col)
    }

    /// The `parallel` group a step of `steps:` belongs to.
    pub fn group_of(&self, step: &StepDef) -> Option<&GroupDef> {
        let g = step.group?;
        self.groups.iter().find(|d| d.index == g)
    }
}

/// A `parallel:` entry of `steps:`, a node of its own: its `when:` is evaluated once for the
/// group, before any of its steps (false skips them all), and its `fail_fast:` (default true)
/// says whether a failing step stops its siblings (false lets them finish; the group still
/// fails).
#[derive(Debug, Clone)]
pub struct GroupDef {
    /// Its index in `steps:` as written, which its steps carry as their `group`.
    pub index: usize,
    pub when: Option<String>,
    pub fail_fast: bool,
    /// Key path in the file (`steps[2]`), for messages.
    pub path: String,
}

/// Where a declared secret's value comes from.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// An environment variable holding the value, or a list of them (a keyring: the first
    /// set is the newest key, the others older ones, joined one per line).
    pub env: Option<EnvNames>,
    /// A file holding the value (trailing newline trimmed).
    pub file: Option<String>,
    /// An optional secret that is not set renders as an empty string (for example the key of
    /// a verify run, which unencrypted backups do not need).
    #[serde(default)]
    pub optional: bool,
}

/// The variables of a secret's `env:`: one name, or a list whose set values are joined one
/// per line (a keyring, newest first).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum EnvNames {
    One(String),
    Many(Vec<String>),
}

/// Budgets the whole run is held to.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    /// Wall-clock budget for the run, reported as its own testcase.
    pub rto: Option<Duration>,
}

/// One step of a runbook (also used for `rollback:` and `finally:` entries).
#[derive(Debug, Clone)]
pub struct StepDef {
    pub id: Option<String>,
    pub name: Option<String>,
    pub uses: String,
    pub with: Yaml,
    pub when: Option<String>,
    /// In a `parallel` group: the ids of siblings this step waits for; the step runs when
    /// they have passed (or were skipped), and is skipped when one did not.
    pub after: Vec<String>,
    /// `assert:` on the step's outputs: each must hold for the step to pass.
    pub assert: Vec<Assertion>,
    pub timeout: Option<Duration>,
    pub retry: Retry,
    pub continue_on_error: bool,
    pub rollback: Vec<StepDef>,
    /// Steps of one `parallel:` group share a number (their group's index in `steps`) and
    /// run at the same time; `None` for a step of its own.
    pub group: Option<usize>,
    /// Key path in the file (`steps[2]`), for messages.
    pub path: String,
    /// Position of the step in the file.
    pub pos: Pos,
}

impl StepDef {
    /// The name shown in reports: the `name:` the author wrote for people, else the id,
    /// else the kind and position. Only a label: reports tell steps apart by `path`.
    pub fn label(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(id) = &self.id {
            return id.clone();
        }
        format!("{} (line {})", self.uses, self.pos.line)
    }
}

/// One `assert:` entry: an output of the step and the expectation it must meet, written as
/// in `sql.assert` (`>= 1000`, `== passed`, `between 1 and 10`, `is not null`).
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub output: String,
    pub expect: String,
}

/// Names every step has besides its own outputs, kept apart as GitHub Actions does:
/// `steps.x.outcome`, `steps.x.duration_s`, and the step's outputs under `steps.x.outputs`.
pub const STEP_FIELDS: [&str; 3] = ["outcome", "duration_s", "outputs"];

/// How often a failing step is tried again.
#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    /// Additional attempts after the first.
    pub count: u32,
    pub delay: Duration,
    /// Factor applied to the delay after each attempt.
    pub backoff: f64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry { count: 0, delay: Duration::from_secs(1), backoff: 1.0 }
    }
}

// ---- as written -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    vars: BTreeMap<String, Yaml>,
    #[serde(default, rename = "let")]
    lets: serde_yaml::Mapping,
    #[serde(default)]
    secrets: BTreeMap<String, SecretSource>,
    #[serde(default)]
    targets: Option<RawTargets>,
    steps: Vec<RawStep>,
    #[serde(default)]
    finally: Vec<RawStep>,
    #[serde(default)]
    notify: Option<Yaml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTargets {
    rto: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: Option<String>,
    name: Option<String>,
    // Optional only because a `parallel:` entry has none; every step needs one.
    uses: Option<String>,
    #[serde(default)]
    with: Option<Yaml>,
    when: Option<Yaml>,
    #[serde(default)]
    assert: Option<serde_yaml::Mapping>,
    timeout: Option<String>,
    retry: Option<RawRetry>,
    #[serde(default)]
    continue_on_error: bool,
    #[serde(default)]
    rollback: Vec<RawStep>,
    /// In a `parallel` group: wait for these siblings (see `StepDef::after`).
    after: Option<OneOrMany>,
    /// Steps that run at the same time (only in `steps:`, only this field in the entry, with
    /// `when` and `fail_fast`).
    #[serde(default)]
    parallel: Vec<RawStep>,
    /// Of a `parallel` group (see `GroupDef::fail_fast`).
    fail_fast: Option<bool>,
}

/// Whether waiting for `after` leads back to `me` through the group's other `after`s.
fn waits_in_a_circle(group: &[RawStep], me: Option<&str>, after: &str) -> bool {
    let Some(me) = me else { return false };
    let mut todo = vec![after.to_string()];
    let mut seen: Vec<String> = Vec::new();
    while let Some(id) = todo.pop() {
        if id == me {
            return true;
        }
        if seen.contains(&id) {
            continue;
        }
        seen.push(id.clone());
        if let Some(step) = group.iter().find(|p| p.id.as_deref() == Some(id.as_str())) {
            todo.extend(step.after.as_ref().map(OneOrMany::list).unwrap_or_default());
        }
    }
    false
}

/// A name, or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn list(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRetry {
    Count(u32),
    Full(RawRetryFull),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetryFull {
    count: u32,
    delay: Option<String>,
    backoff: Option<f64>,
}

const RUNBOOK_FIELDS: &[&str] =
    &["name", "description", "kind", "vars", "let", "secrets", "targets", "steps", "finally", "notify"];

// ---- loading ----------------------------------------------------------------------------

/// How deep mappings and sequences may nest in a runbook file. Real runbooks use under ten
/// levels (a `with:` block of a step in a `parallel` group is six).
pub const MAX_YAML_DEPTH: usize = 64;

/// Parse and check runbook text.
pub fn parse(file: &str, text: &str, base_dir: PathBuf) -> Result<Runbook, Diagnostics> {
    // Before anything else: a deeply nested file is rejected in time linear in its size.
    if let Some(pos) = SpanIndex::too_deep(text, MAX_YAML_DEPTH) {
        let d = Diagnostic::new(file, text, pos, format!("YAML nested deeper than {MAX_YAML_DEPTH} levels"));
        let mut diags = Diagnostics::default();
        diags.push(d.with_help(Some("a runbook needs a handful of levels; this file is not a runbook".into())));
        return Err(diags);
    }
    let spans = SpanIndex::build(text);
    let mut cx = Checker { file, text, spans: &spans, diags: Diagnostics::default() };

    // Syntax first: a tree that does not parse has no paths to point at.
    if let Err(e) = serde_yaml::from_str::<Yaml>(text) {
        let pos = e.location().map(|l| Pos { line: l.line(), col: l.column() }).unwrap_or(Pos { line: 1, col: 1 });
        cx.diags.push(cx.diag(pos, format!("invalid YAML: {}", strip_location(&e.to_string()))));
        return Err(cx.diags);
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let raw: RawRunbook = match serde_path_to_error::deserialize(de) {
        Ok(r) => r,
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            cx.diags.push(cx.serde_error(&path, &inner, RUNBOOK_FIELDS));
            return Err(cx.diags);
        }
    };

    let rb = cx.build(raw, base_dir);
    if cx.diags.is_empty() {
        Ok(rb)
    } else {
        Err(cx.diags)
    }
}

/// The step ids a template may read at one point of `steps:`: the first `n` ids in the order
/// written (the steps before it, or before its `parallel` group), found through an index
/// built once.
#[derive(Clone, Copy)]
struct Visible<'a> {
    ids: &'a [&'a str],
    index: &'a HashMap<&'a str, usize>,
    n: usize,
    /// A step of a `parallel` group also sees the siblings it runs `after:` (theirs too):
    /// they have ended before it starts.
    after: &'a [&'a str],
}

impl<'a> Visible<'a> {
    fn contains(&self, id: &str) -> bool {
        self.index.get(id).is_some_and(|&i| i < self.n) || self.after.contains(&id)
    }

    fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let ids: &'a [&'a str] = self.ids;
        ids[..self.n.min(ids.len())].iter().copied()
    }
}

/// The siblings a step of a `parallel` group runs after, directly or through theirs.
fn siblings_before<'r>(rb: &'r Runbook, step: &StepDef) -> Vec<&'r str> {
    let sibling = |id: &str| rb.steps.iter().find(|s| s.group == step.group && s.id.as_deref() == Some(id));
    let mut found: Vec<&'r str> = Vec::new();
    let mut todo: Vec<&'r StepDef> = step.after.iter().filter_map(|id| sibling(id)).collect();
    while let Some(s) = todo.pop() {
        let Some(id) = s.id.as_deref() else { continue };
        if found.contains(&id) {
            continue;
        }
        found.push(id);
        todo.extend(s.after.iter().filter_map(|id| sibling(id)));
    }
    found
}

struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    spans: &'a SpanIndex,
    diags: Diagnostics,
}

impl Checker<'_> {
    fn diag(&self, pos: Pos, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.file, self.text, pos, msg)
    }

    /// Turn a serde error at `path` into a located diagnostic with a suggestion.
    fn serde_error(&self, path: &str, e: &serde_yaml::Error, default_fields: &[&str]) -> Diagnostic {
        let mut msg = strip_location(&e.to_string());
        // serde_yaml prefixes data errors with the path of the enclosing node; we show
        // paths our own way.
        if let Some((prefix, rest)) = msg.split_once(": ") {
            if !prefix.contains(' ') && path.starts_with(prefix) {
                msg = rest.to_string();
            }
        }
        let path = if path == "?" || path == "." { "" } else { path };
        self.data_error(path, &msg, default_fields)
    }

    fn data_error(&self, path: &str, msg: &str, default_fields: &[&str]) -> Diagnostic {
        if let Some((field, expected)) = parse_unknown_field(msg) {
            let candidates: Vec<&str> = if expected.is_empty() {
                default_fields.to_vec()
            } else {
                expected.iter().map(String::as_str).collect()
            };
            let where_ = describe_path(&spans::parent(path).unwrap_or_default());
            let d = self.diag(self.spans.key(path), format!("unknown field `{field}` in {where_}"));
            let help = suggest::help(&field, candidates.iter().copied())
                .or_else(|| Some(format!("valid fields: {}", candidates.join(", "))));
            return d.with_help(help);
        }
        if let Some(field) = msg.strip_prefix("missing field `").and_then(|r| r.split('`').next()) {
            return self.diag(self.spans.value(path), format!("missing field `{field}` in {}", describe_path(path)));
        }
        self.diag(self.spans.value(path), format!("{}: {msg}", describe_path(path)))
    }

    fn build(&mut self, raw: RawRunbook, base_dir: PathBuf) -> Runbook {
        let kind = raw.kind.as_deref().and_then(|k| {
            let kind = RunKind::parse(k);
            if kind.is_none() {
                let names = RunKind::ALL.map(RunKind::as_str);
                let d = self.diag(self.spans.value("kind"), format!("unknown runbook kind `{k}`"));
                let help = suggest::help(k, names).unwrap_or_else(|| format!("the kinds are {}", names.join(", ")));
                self.diags.push(d.with_help(Some(help)));
            }
            kind
        });
        let targets = Targets {
            rto: raw.targets.as_ref().and_then(|t| t.rto.as_deref()).and_then(|s| self.duration(s, "targets.rto")),
        };
        for (name, src) in &raw.secrets {
            let path = format!("secrets.{name}");
            match (&src.env, &src.file) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    let d = self
                        .diag(self.spans.key(&path), format!("secret `{name}` needs exactly one of `env` or `file`"));
                    self.diags.push(d.with_help(Some(format!("for example: `{name}: {{ env: MY_SECRET }}`"))));
                }
            }
        }

        let mut lets = Vec::new();
        for (k, v) in raw.lets {
            match k.as_str() {
                Some(name) if is_identifier(name) => lets.push((name.to_string(), v)),
                _ => {
                    let name = k.as_str().map(str::to_string).unwrap_or_else(|| format!("{k:?}"));
                    let d = self.diag(
                        self.spans.key(&format!("let.{name}")),
                        format!("`let` name `{name}` is not an identifier"),
                    );
                    self.diags.push(d.with_help(Some("use letters, digits and `_`, starting with a letter or `_`, so templates can say `let.<name>`".into())));
                }
            }
        }

        // A list of notifications, as under `notify:` in a --notify file.
        let notify = raw.notify.and_then(|y| {
            let checked = serde_path_to_error::deserialize::<_, Vec<notify::Notification>>(y)
                .map_err(|e| {
                    let p = e.path().to_string();
                    let p = if p == "." || p == "?" { String::new() } else { p };
                    let sep = if p.is_empty() || p.starts_with('[') { "" } else { "." };
                    (format!("notify{sep}{p}"), strip_location(&e.into_inner().to_string()))
                })
                .and_then(|list| {
                    let n = notify::NotifyFile { notify: list, ..Default::default() };
                    notify::validate(&n)?;
                    Ok(n)
                });
            match checked {
                Ok(n) => Some(n),
                Err((path, msg)) => {
                    let d = self.diag(self.spans.key(&path), format!("notify: {msg}"));
                    self.diags.push(d.with_help(Some("a list of `- when: ... webhook:|sentry:|email: ...`, see the README's \"Alerts and metrics\"".into())));
                    None
                }
            }
        });

        let mut ids: HashMap<String, String> = HashMap::new();
        let mut groups = Vec::new();
        let steps = self.main_steps(raw.steps, &mut ids, &mut groups);
        let finally = self.steps(raw.finally, "finally", &mut ids);

        let (vars, var_types) = self.vars(raw.vars);
        let rb = Runbook {
            name: raw.name,
            description: raw.description,
            kind,
            vars,
            var_types,
            lets,
            secrets: raw.secrets,
            targets,
            steps,
            groups,
            finally,
            let_reads: BTreeMap::new(),
            file: self.file.to_string(),
            base_dir,
            source: self.text.into(),
            warnings: Vec::new(),
            notify,
        };
        let mut rb = rb;
        rb.let_reads = self.check_lets(&rb);
        rb.warnings = self.check_references(&rb);
        rb
    }

    fn steps(&mut self, raw: Vec<RawStep>, base: &str, ids: &mut HashMap<String, String>) -> Vec<StepDef> {
        let mut out = Vec::new();
        for (i, s) in raw.into_iter().enumerate() {
            let path = format!("{base}[{i}]");
            if !s.parallel.is_empty() {
                let d = self.diag(
                    self.spans.key(&format!("{path}.parallel")),
                    "`parallel` groups are allowed in `steps:` only",
                );
                self.diags.push(d.with_help(Some("rollback and `finally` steps run one after the other".into())));
                continue;
            }
            self.not_in_a_group(&s, &path);
            out.push(self.step(s, path, ids));
        }
        out
    }

    /// `after` and `fail_fast` mean something only in and next to a `parallel` group.
    fn not_in_a_group(&mut self, s: &RawStep, path: &str) {
        for (field, set) in [("after", s.after.is_some()), ("fail_fast", s.fail_fast.is_some())] {
            if set {
                let d = self.diag(
                    self.spans.key(&format!("{path}.{field}")),
                    format!("`{field}` outside a `parallel` group in {}", describe_path(path)),
                );
                self.diags.push(d.with_help(Some(if field == "after" {
                    "`after` names a sibling in the same `parallel` group; steps of a sequence already run in order"
                        .into()
                } else {
                    "`fail_fast` belongs next to `parallel:`, for the whole group".into()
                })));
            }
        }
    }

    /// `steps:`, where an entry may be a `parallel:` group: its steps are flattened into the
    /// list, marked with the group they belong to.
    fn main_steps(
        &mut self,
        raw: Vec<RawStep>,
        ids: &mut HashMap<String, String>,
        groups: &mut Vec<GroupDef>,
    ) -> Vec<StepDef> {
        let mut out = Vec::new();
        for (i, s) in raw.into_iter().enumerate() {
            let path = format!("steps[{i}]");
            if s.parallel.is_empty() {
                self.not_in_a_group(&s, &path);
                out.push(self.step(s, path, ids));
                continue;
            }
            let extra = [
                ("id", s.id.is_some()),
                ("name", s.name.is_some()),
                ("uses", s.uses.is_some()),
                ("with", s.with.is_some()),
                ("assert", s.assert.is_some()),
                ("timeout", s.timeout.is_some()),
                ("retry", s.retry.is_some()),
                ("continue_on_error", s.continue_on_error),
                ("rollback", !s.rollback.is_empty()),
                ("after", s.after.is_some()),
            ];
            if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
                let d = self.diag(
                    self.spans.key(&format!("{path}.{field}")),
                    format!("`{field}` next to `parallel` in {}", describe_path(&path)),
                );
                self.diags.push(d.with_help(Some(format!(
                    "a `parallel` entry holds only its steps, a `when` and `fail_fast`: move `{field}` into the steps it applies to"
                ))));
            }
            groups.push(GroupDef {
                index: i,
                when: s.when.map(condition_text),
                fail_fast: s.fail_fast.unwrap_or(true),
                path: path.clone(),
            });
            let siblings: Vec<Option<String>> = s.parallel.iter().map(|p| p.id.clone()).collect();
            for (j, inner) in s.parallel.iter().enumerate() {
                let at = self.spans.value(&format!("{path}.parallel[{j}].after"));
                for after in inner.after.as_ref().map(OneOrMany::list).unwrap_or_default() {
                    if inner.id.as_deref() == Some(after.as_str()) {
                        let d = self.diag(at, format!("step `{after}` waits for itself"));
                        self.diags.push(d.with_help(Some("`after` names other steps of the same group".into())));
                    } else if !siblings.iter().any(|id| id.as_deref() == Some(after.as_str())) {
                        let d =
                            self.diag(at, format!("`after: {after}`: no step of this `parallel` group has that id"));
                        let help = match suggest::nearest(&after, siblings.iter().flatten().map(String::as_str)) {
                            Some(id) => format!("did you mean `{id}`?"),
                            None => "`after` names siblings in the same group, by their `id`".into(),
                        };
                        self.diags.push(d.with_help(Some(help)));
                    } else if waits_in_a_circle(&s.parallel, inner.id.as_deref(), &after) {
                        let d = self.diag(at, format!("`after: {after}` waits in a circle"));
                        self.diags.push(d.with_help(Some("break the circle: one step of it must not wait".into())));
                    }
                }
            }
            for (j, inner) in s.parallel.into_iter().enumerate() {
                let inner_path = format!("{path}.parallel[{j}]");
                if !inner.parallel.is_empty() {
                    let d =
                        self.diag(self.spans.key(&format!("{inner_path}.parallel")), "`parallel` groups do not nest");
                    self.diags
                        .push(d.with_help(Some("list every step of the group directly under one `parallel:`".into())));
                    continue;
                }
                let mut step = self.step(inner, inner_path, ids);
                step.group = Some(i);
                out.push(step);
            }
        }
        out
    }

    fn step(&mut self, raw: RawStep, path: String, ids: &mut HashMap<String, String>) -> StepDef {
        if let Some(id) = &raw.id {
            let id_path = format!("{path}.id");
            if !is_identifier(id) {
                let d = self.diag(self.spans.value(&id_path), format!("step id `{id}` is not an identifier"));
                self.diags.push(d.with_help(Some("use letters, digits and `_`, starting with a letter or `_`, so templates can say `steps.<id>.<output>`".into())));
            } else if let Some(first) = ids.get(id) {
                let first_line = self.spans.value(first).line;
                let d = self.diag(self.spans.value(&id_path), format!("duplicate step id `{id}`"));
                self.diags.push(d.with_help(Some(format!(
                    "`{id}` is already the id of the step on line {first_line}; step ids must be unique"
                ))));
            } else {
                ids.insert(id.clone(), id_path);
            }
        }

        let uses_path = format!("{path}.uses");
        let Some(uses) = raw.uses.clone() else {
            self.diags
                .push(self.diag(self.spans.value(&path), format!("missing field `uses` in {}", describe_path(&path))));
            return self.step_def(raw, String::new(), path, ids);
        };
        match steps::find(&uses) {
            None => {
                let d = self.diag(self.spans.value(&uses_path), format!("unknown step kind `{uses}`"));
                let help = suggest::help(&uses, steps::names())
                    .or_else(|| Some("`pgdrill steps` lists every step kind".into()));
                self.diags.push(d.with_help(help));
            }
            Some(kind) => {
                let with = raw.with.clone().unwrap_or(Yaml::Mapping(Default::default()));
                if let Err(e) = (kind.check)(&with) {
                    let with_path = format!("{path}.with");
                    let full = if e.path.is_empty() { with_path.clone() } else { template::join(&with_path, &e.path) };
                    let fields: Vec<&str> = kind.fields.iter().map(|f| f.name).collect();
                    let d = if parse_unknown_field(&e.message).is_some() {
                        let d = self.data_error(&full, &e.message, &fields);
                        Diagnostic { message: format!("{} (step kind `{}`)", d.message, kind.name), ..d }
                    } else {
                        let pos = if e.path.is_empty() && raw.with.is_none() {
                            self.spans.value(&path)
                        } else {
                            self.spans.value(&full)
                        };
                        self.diag(pos, format!("{}: {}", describe_path(&full), e.message)).with_help(e.help)
                    };
                    self.diags.push(d);
                }
            }
        }
        self.step_def(raw, uses, path, ids)
    }

    /// The typed step; `uses` is checked by the caller.
    fn step_def(&mut self, raw: RawStep, uses: String, path: String, ids: &mut HashMap<String, String>) -> StepDef {
        let timeout_path = format!("{path}.timeout");
        let timeout = raw.timeout.as_deref().and_then(|t| self.duration(t, &timeout_path));
        // A zero timeout races the step's first poll: its verdict would be chance.
        if timeout == Some(Duration::ZERO) {
            let d = self.diag(
                self.spans.value(&timeout_path),
                format!("{}: a timeout of 0 ends the step before it can start", describe_path(&timeout_path)),
            );
            self.diags.push(
                d.with_help(Some("give the longest the step may take (`90s`, `15m`), or remove `timeout`".into())),
            );
        }
        let retry = match raw.retry {
            None => Retry::default(),
            Some(RawRetry::Count(n)) => {
                Retry { count: self.retry_count(n, &format!("{path}.retry")), ..Retry::default() }
            }
            Some(RawRetry::Full(f)) => Retry {
                count: self.retry_count(f.count, &format!("{path}.retry.count")),
                delay: f
                    .delay
                    .as_deref()
                    .and_then(|d| self.duration(d, &format!("{path}.retry.delay")))
                    .unwrap_or(Duration::from_secs(1)),
                backoff: match f.backoff {
                    Some(b) if (1.0..=MAX_BACKOFF).contains(&b) => b,
                    Some(b) => {
                        let d = self.diag(
                            self.spans.value(&format!("{path}.retry.backoff")),
                            format!(
                                "{}: retry backoff {} must be a number from 1 to {MAX_BACKOFF}",
                                describe_path(&format!("{path}.retry.backoff")),
                                steps::de::float_text(b)
                            ),
                        );
                        self.diags.push(d.with_help(Some(
                            "each retry waits `backoff` times longer than the one before: 2 doubles the wait".into(),
                        )));
                        1.0
                    }
                    None => 1.0,
                },
            },
        };
        let when = raw.when.map(condition_text);
        let assert = raw.assert.map(|m| self.assertions(m, &format!("{path}.assert"), &uses)).unwrap_or_default();
        let pos = self.spans.value(&path);
        let rollback = self.steps(raw.rollback, &format!("{path}.rollback"), ids);
        StepDef {
            id: raw.id,
            name: raw.name,
            uses,
            with: raw.with.unwrap_or(Yaml::Mapping(Default::default())),
            when,
            after: raw.after.as_ref().map(OneOrMany::list).unwrap_or_default(),
            assert,
            timeout,
            retry,
            continue_on_error: raw.continue_on_error,
            rollback,
            group: None,
            path,
            pos,
        }
    }

    /// `assert:` entries: output names and expectations in `sql.assert`'s syntax, each
    /// checked here so a typo is found by `validate`, not half-way through a run.
    fn assertions(&mut self, raw: serde_yaml::Mapping, path: &str, uses: &str) -> Vec<Assertion> {
        let documented: Vec<&str> =
            steps::find(uses).map(|k| k.outputs.iter().map(|f| f.name).collect()).unwrap_or_default();
        let mut out = Vec::new();
        for (k, v) in raw {
            let Some(output) = k.as_str().map(str::to_string) else { continue };
            let at = format!("{path}.{output}");
            let expect = match v {
                Yaml::String(s) => s,
                Yaml::Number(n) => n.to_string(),
                Yaml::Bool(b) => b.to_string(),
                _ => {
                    let d = self.diag(
                        self.spans.value(&at),
                        format!("{}: an expectation is text like `>= 1000` or `== passed`", describe_path(&at)),
                    );
                    self.diags.push(d);
                    continue;
                }
            };
            // A templated expectation (`>= {{ vars.min_rows }}`) is parsed once rendered, when the
            // step has run (as the README says); its template is checked with the others.
            let parsed =
                if template::is_template(&expect) { Ok(()) } else { steps::sql::Expect::parse(&expect).map(|_| ()) };
            if let Err(e) = parsed {
                let d = self.diag(self.spans.value(&at), format!("{}: {e}", describe_path(&at)));
                self.diags.push(d.with_help(Some("write `== VALUE`, `!= VALUE`, `> N`, `>= N`, `< N`, `<= N`, `between LOW and HIGH`, `is null` or `is not null`".into())));
                continue;
            }
            // An output the kind does not document is a typo until the catalogue says otherwise;
            // `outcome` and `duration_s` are the engine's and every step has them.
            let known = output == "outcome" || output == "duration_s" || documented.contains(&output.as_str());
            if !known && !documented.is_empty() {
                let d =
                    self.diag(self.spans.key(&at), format!("step kind `{uses}` has no output `{output}` to assert on"));
                let names: Vec<&str> = documented.iter().copied().chain(["outcome", "duration_s"]).collect();
                let help = suggest::help(&output, names.iter().copied())
                    .or_else(|| Some(format!("its outputs: {}", names.join(", "))));
                self.diags.push(d.with_help(help));
                continue;
            }
            out.push(Assertion { output, expect });
        }
        out
    }

    fn duration(&mut self, s: &str, path: &str) -> Option<Duration> {
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                let d =
                    self.diag(self.spans.value(path), format!("{}: invalid duration `{s}`: {e}", describe_path(path)));
                self.diags.push(d.with_help(Some("write durations like `90s`, `15m`, `1h 30m`".into())));
                None
            }
        }
    }

    /// Where reference `r` appears in the value at `path` (the value's start if not found
    /// on its first line, as in a block scalar).
    fn ref_pos(&self, path: &str, r: &str) -> Pos {
        let pos = self.spans.value(path);
        let needle: String = r.split('.').take(2).collect::<Vec<_>>().join(".");
        if let Some(line) = self.text.lines().nth(pos.line.saturating_sub(1)) {
            let start: usize = line.char_indices().nth(pos.col.saturating_sub(1)).map(|(i, _)| i).unwrap_or(0);
            if let Some(off) = line[start..].find(&needle) {
                return Pos { line: pos.line, col: line[..start + off].chars().count() + 1 };
            }
        }
        pos
    }

    /// `let` values are computed in the order written, from vars, env, the `let` values above
    /// them and the outputs of steps of `steps:`; one that reads steps is computed once they
    /// have run. Returns, for each `let` value that reads steps (itself or through the values
    /// above it), the ids of those steps.
    fn check_lets(&mut self, rb: &Runbook) -> BTreeMap<String, BTreeSet<String>> {
        let env = template::environment();
        let main_ids: Vec<&str> = rb.steps.iter().filter_map(|s| s.id.as_deref()).collect();
        let mut let_reads: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (i, (name, value)) in rb.lets.iter().enumerate() {
            let mut reads = BTreeSet::new();
            let mut found = Vec::new();
            template::templated_strings(value, &format!("let.{name}"), &mut found);
            for (path, src) in found {
                let Some(refs) = self.refs_of(&env, &path, src, false) else { continue };
                for r in refs {
                    let pos = self.ref_pos(&path, &r);
                    let mut parts = r.split('.');
                    match (parts.next().unwrap_or_default(), parts.next()) {
                        ("env", _) | ("vars" | "let", None) => {}
                        ("vars", Some(v)) => self.check_var(rb, v, pos),
                        ("let", Some(v)) => {
                            if rb.lets[..i].iter().any(|(n, _)| n == v) {
                                reads.extend(let_reads.get(v).into_iter().flatten().cloned());
                                continue;
                            }
                            let d = if rb.lets[i..].iter().any(|(n, _)| n == v) {
                                self.diag(pos, format!("`let.{v}` is defined at or after `let.{name}`")).with_help(
                                    Some(format!(
                                        "`let` values are computed in the order written: move `{v}` above `{name}`"
                                    )),
                                )
                            } else {
                                self.unknown_let(rb, v, pos)
                            };
                            self.diags.push(d);
                        }
                        ("steps", Some(id)) if main_ids.contains(&id) => {
                            reads.insert(id.to_string());
                        }
                        ("steps", Some(id)) => {
                            let d = if rb.all_steps().any(|s| s.id.as_deref() == Some(id)) {
                                self.diag(pos, format!("`let.{name}` reads `steps.{id}`, a rollback or `finally` step"))
                                    .with_help(Some(
                                        "a `let` value reads the steps of `steps:`; read this one where it is used"
                                            .into(),
                                    ))
                            } else {
                                self.diag(pos, format!("`steps.{id}` refers to a step id that does not exist"))
                                    .with_help(suggest::help(id, main_ids.iter().copied()))
                            };
                            self.diags.push(d);
                        }
                        (other, _) => {
                            let d = self.diag(pos, format!("`let.{name}` cannot read `{other}`"));
                            let help = if other == "steps" {
                                "name the step a `let` value reads: `steps.<id>.outputs.<name>`"
                            } else {
                                "a `let` value reads `vars`, `env`, the `let` values above it and the outputs of steps (`steps.<id>.outputs.<name>`)"
                            };
                            self.diags.push(d.with_help(Some(help.into())));
                        }
                    }
                }
            }
            if !reads.is_empty() {
                let_reads.insert(name.clone(), reads);
            }
        }
        let_reads
    }

    /// Templates may only read declared vars, `let` values and secrets, and outputs of steps
    /// that ran before (themselves, or through a `let` value that reads them). Returns the
    /// warnings (deprecated forms) found on the way.
    fn check_references(&mut self, rb: &Runbook) -> Vec<Diagnostic> {
        let env = template::environment();
        let mut warnings = Vec::new();
        let main_ids: Vec<&str> = rb.steps.iter().filter_map(|s| s.id.as_deref()).collect();
        let index: HashMap<&str, usize> = main_ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
        let visible = |n: usize| Visible { ids: &main_ids, index: &index, n, after: &[] };
        // What each step sees is always the ids of the steps before some point, so it is a
        // count, not a list: building the list per step was n² (issue 36 case 11).
        let (mut ids_before, mut group_start) = (0, 0);
        for (i, step) in rb.steps.iter().enumerate() {
            let first_of_group = step.group.is_some() && (i == 0 || rb.steps[i - 1].group != step.group);
            if first_of_group {
                group_start = ids_before;
            }
            // A step of a `parallel` group sees the steps before the group, and of its
            // siblings only those it runs after.
            let after = if step.group.is_some() { siblings_before(rb, step) } else { Vec::new() };
            let before =
                Visible { after: &after, ..visible(if step.group.is_some() { group_start } else { ids_before }) };
            // The group's own `when`, once, at its first step.
            if let Some(GroupDef { index: g, when: Some(cond), .. }) = rb.group_of(step) {
                if first_of_group {
                    let sources = vec![(format!("steps[{g}].when"), cond.clone(), true)];
                    self.check_sources(&env, rb, None, sources, before, &main_ids, &mut warnings);
                }
            }
            self.check_step_refs(&env, rb, step, before, &main_ids, &mut warnings);
            ids_before += usize::from(step.id.is_some());
            for rbk in &step.rollback {
                self.check_step_refs(&env, rb, rbk, visible(ids_before), &main_ids, &mut warnings);
            }
        }
        for step in &rb.finally {
            self.check_step_refs(&env, rb, step, visible(main_ids.len()), &main_ids, &mut warnings);
        }
        warnings
    }

    fn refs_of(
        &mut self,
        env: &minijinja::Environment<'_>,
        path: &str,
        src: &str,
        is_condition: bool,
    ) -> Option<std::collections::BTreeSet<String>> {
        let refs = if is_condition { template::condition_references(env, src) } else { template::references(env, src) };
        match refs {
            Ok(r) => Some(r),
            Err(e) => {
                let d = self.diag(
                    self.spans.value(path),
                    format!("template error in {}: {}", describe_path(path), template::describe(&e)),
                );
                self.diags.push(d);
                None
            }
        }
    }

    /// A `when:` that reads an output of step `id`, which its own `when:` (or its group's)
    /// may skip: a skipped step has no outputs, so the condition would fail at run time,
    /// after the steps before it ran. Written guards (`steps.x.outcome == 'passed' and ...`,
    /// `... is defined`) make it safe.
    fn check_maybe_skipped(&mut self, rb: &Runbook, id: &str, r: &str, src: &str, pos: Pos) {
        let Some(target) = rb.all_steps().find(|s| s.id.as_deref() == Some(id)) else { return };
        if target.when.is_none() && rb.group_of(target).is_none_or(|g| g.when.is_none()) {
            return;
        }
        let squeezed: String = src.split_whitespace().collect::<Vec<_>>().join(" ");
        let guarded = squeezed.contains(&format!("steps.{id}.outcome"))
            || squeezed.contains(&format!("steps.{id} is defined"))
            || squeezed.contains(&format!("{r} is defined"));
        if guarded {
            return;
        }
        let d = self.diag(
            pos,
            format!("`when:` reads `{r}`, but step `{id}` may be skipped (it has a `when:`), and a skipped step has no outputs"),
        );
        self.diags.push(d.with_help(Some(format!("test `steps.{id}.outcome == 'passed'` first, or `{r} is defined`"))));
    }

    /// A retry count up to [`MAX_RETRIES`]; a larger one is refused at `at` (u32::MAX retries
    /// overflowed the attempt count: a panic, or in a release build no attempt at all).
    fn retry_count(&mut self, n: u32, at: &str) -> u32 {
        if n <= MAX_RETRIES {
            return n;
        }
        let d = self.diag(self.spans.value(at), format!("{}: {n} retries: at most {MAX_RETRIES}", describe_path(at)));
        self.diags.push(d.with_help(Some(
            "for a long wait, give a longer `delay` (and a `backoff`) rather than more retries".into(),
        )));
        MAX_RETRIES
    }

    fn check_var(&mut self, rb: &Runbook, v: &str, pos: Pos) {
        if rb.vars.contains_key(v) {
            return;
        }
        let d = self.diag(pos, format!("`vars.{v}` is not declared"));
        let help = suggest::help(v, rb.vars.keys().map(String::as_str))
            .or_else(|| Some(format!("declare it under `vars:` (with `{v}: ~` if it has no default)")));
        self.diags.push(d.with_help(help));
    }

    fn unknown_let(&self, rb: &Runbook, v: &str, pos: Pos) -> Diagnostic {
        let d = self.diag(pos, format!("`let.{v}` is not defined"));
        let help = suggest::help(v, rb.lets.iter().map(|(n, _)| n.as_str()))
            .or_else(|| Some(format!("define it under `let:`, for example `{v}: \"{{{{ vars.{v} }}}}\"`")));
        d.with_help(help)
    }

    fn check_step_refs(
        &mut self,
        env: &minijinja::Environment<'_>,
        rb: &Runbook,
        step: &StepDef,
        visible: Visible<'_>,
        all: &[&str],
        warnings: &mut Vec<Diagnostic>,
    ) {
        let mut sources: Vec<(String, String, bool)> = Vec::new();
        let mut found = Vec::new();
        template::templated_strings(&step.with, &format!("{}.with", step.path), &mut found);
        sources.extend(found.into_iter().map(|(p, s)| (p, s.to_string(), false)));
        if let Some(w) = &step.when {
            sources.push((format!("{}.when", step.path), w.clone(), true));
        }
        for a in step.assert.iter().filter(|a| template::is_template(&a.expect)) {
            sources.push((format!("{}.assert.{}", step.path, a.output), a.expect.clone(), false));
        }
        self.check_sources(env, rb, Some(step), sources, visible, all, warnings);
    }

    /// Check the names templates read. `step` is `None` for a `parallel` group's `when`.
    #[allow(clippy::too_many_arguments)]
    fn check_sources(
        &mut self,
        env: &minijinja::Environment<'_>,
        rb: &Runbook,
        step: Option<&StepDef>,
        sources: Vec<(String, String, bool)>,
        visible: Visible<'_>,
        all: &[&str],
        warnings: &mut Vec<Diagnostic>,
    ) {
        for (path, src, is_condition) in sources {
            let Some(refs) = self.refs_of(env, &path, &src, is_condition) else { continue };
            for r in refs {
                let mut parts = r.split('.');
                let root = parts.next().unwrap_or_default();
                let name = parts.next();
                let field = parts.next();
                let pos = self.ref_pos(&path, &r);
                match (root, name) {
                    ("env" | "run", _) => {}
                    ("vars", Some(v)) => self.check_var(rb, v, pos),
                    ("let", Some(v)) if !rb.lets.iter().any(|(n, _)| n == v) => {
                        let d = self.unknown_let(rb, v, pos);
                        self.diags.push(d);
                    }
                    ("let", Some(v)) => {
                        for id in rb.let_reads.get(v).into_iter().flatten() {
                            if visible.contains(id) {
                                if is_condition {
                                    self.check_maybe_skipped(rb, id, &r, &src, pos);
                                }
                                continue;
                            }
                            let what = if step.is_some() { "this step" } else { "this `parallel` group" };
                            let d = self.diag(
                                pos,
                                format!("`let.{v}` reads `steps.{id}`, which has not run yet at this point"),
                            );
                            self.diags.push(d.with_help(Some(format!(
                                "a `let` value that reads a step is there once the step has run: move `{id}` before {what}"
                            ))));
                        }
                    }
                    ("secrets", Some(v)) if !rb.secrets.contains_key(v) => {
                        let d = self.diag(pos, format!("`secrets.{v}` is not declared"));
                        let help = suggest::help(v, rb.secrets.keys().map(String::as_str)).or_else(|| {
                            Some(format!("declare it under `secrets:`, for example `{v}: {{ env: MY_VAR }}`"))
                        });
                        self.diags.push(d.with_help(help));
                    }
                    ("steps", Some(id)) if !visible.contains(id) => {
                        let group = step.and_then(|s| s.group);
                        let sibling =
                            group.is_some() && rb.steps.iter().any(|s| s.group == group && s.id.as_deref() == Some(id));
                        let (msg, help) = if sibling {
                            (
                                format!("`steps.{id}` runs in parallel with this step: its outputs are not there yet"),
                                Some(format!("move `{id}` out of the `parallel` group, before this step")),
                            )
                        } else if all.contains(&id) {
                            let what = if step.is_some() { "this step" } else { "this `parallel` group" };
                            (
                                format!("`steps.{id}` refers to a step that has not run yet at this point"),
                                Some(format!("move `{id}` before {what}, or read it in `finally:`")),
                            )
                        } else {
                            (
                                format!("`steps.{id}` refers to a step id that does not exist"),
                                suggest::help(id, visible.iter()),
                            )
                        };
                        self.diags.push(self.diag(pos, msg).with_help(help));
                    }
                    ("steps", Some(id)) => {
                        if is_condition
                            && (field == Some("outputs") || field.is_some_and(|f| !STEP_FIELDS.contains(&f)))
                        {
                            self.check_maybe_skipped(rb, id, &r, &src, pos);
                        }
                        if let Some(out) = field.filter(|f| !STEP_FIELDS.contains(f)) {
                            let d =
                                self.diag(pos, format!("`steps.{id}.{out}` reads an output the old way (deprecated)"));
                            warnings.push(d.into_warning().with_help(Some(format!(
                                "write `steps.{id}.outputs.{out}`: a step's outputs are kept apart from its `outcome` and `duration_s`"
                            ))));
                        }
                    }
                    ("vars" | "secrets" | "steps" | "let", _) => {}
                    (other, _) => {
                        let d = self.diag(pos, format!("unknown name `{other}` in template"));
                        let help = suggest::help(other, template::ROOTS).or_else(|| {
                            Some("templates can read `vars`, `let`, `env`, `secrets`, `steps` and `run`".into())
                        });
                        self.diags.push(d.with_help(help));
                    }
                }
            }
        }
    }
}

/// A `when:` as written: text, or a YAML boolean.
fn condition_text(w: Yaml) -> String {
    match w {
        Yaml::Bool(b) => b.to_string(),
        Yaml::String(s) => s,
        other => serde_yaml::to_string(&other).unwrap_or_default().trim().to_string(),
    }
}

pub use crate::util::{parse_duration, MAX_DURATION};

/// The delay before the next retry: `delay` times `backoff`, held at [`MAX_DURATION`] so that
/// many retries of a large backoff grow the wait, never overflow it.
pub fn next_delay(delay: Duration, backoff: f64) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * backoff).unwrap_or(MAX_DURATION).min(MAX_DURATION)
}

/// The most retries of a step: with the longest `delay` and any `backoff` that is more waiting
/// than any run; past it a count only risks overflow.
pub const MAX_RETRIES: u32 = 10_000;

/// The largest `retry.backoff`: each retry waits at most this many times the one before.
pub const MAX_BACKOFF: f64 = 100.0;

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `steps[2].with.jobs` -> "step 3, field `with.jobs`".
pub fn describe_path(path: &str) -> String {
    if path.is_empty() {
        return "the runbook".into();
    }
    for list in ["steps", "finally"] {
        if let Some(rest) = path.strip_prefix(&format!("{list}[")) {
            if let Some((n, tail)) = rest.split_once(']') {
                let n: usize = n.parse().unwrap_or(0);
                let mut what =
                    if list == "steps" { format!("step {}", n + 1) } else { format!("finally step {}", n + 1) };
                let mut tail = tail.trim_start_matches('.');
                if let Some((k, rest)) = tail.strip_prefix("parallel[").and_then(|r| r.split_once(']')) {
                    let k: usize = k.parse().unwrap_or(0);
                    what = format!("{what}, parallel step {}", k + 1);
                    tail = rest.trim_start_matches('.');
                }
                return if tail.is_empty() { what } else { format!("{what}, field `{tail}`") };
            }
        }
    }
    format!("`{path}`")
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" -> ("x", ["a", "b"]).
fn parse_unknown_field(msg: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix("unknown field `")?;
    let (field, tail) = rest.split_once('`')?;
    let expected = tail.split('`').skip(1).step_by(2).map(str::to_string).collect();
    Some((field.to_string(), expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of a `parallel` group reads the outputs of the siblings it runs `after:`
    /// (directly or through theirs): they have ended before it starts. Any other sibling's
    /// are not there yet, and validate says so.
    #[test]
    fn a_parallel_step_reads_the_siblings_it_runs_after_and_no_other() {
        let rb = |reads: &str| {
            let text = format!(
                "name: p\nsteps:\n  - parallel:\n      - id: a\n        uses: sleep\n        with: {{ duration: 1ms }}\n      - id: b\n        after: a\n        uses: sleep\n        with: {{ duration: 1ms }}\n      - id: c\n        after: b\n        uses: sleep\n        with: {{ duration: \"{{{{ steps.{reads}.outputs.slept or '1ms' }}}}\" }}\n      - id: d\n        uses: sleep\n        with: {{ duration: 1ms }}\n"
            );
            parse("p.yaml", &text, PathBuf::new()).map(|_| ()).map_err(|d| d.to_string())
        };
        assert_eq!(rb("b"), Ok(()), "the sibling it runs after");
        assert_eq!(rb("a"), Ok(()), "the sibling its sibling runs after");
        let d = rb("d").expect_err("a sibling it does not wait for");
        assert!(d.contains("`steps.d` runs in parallel with this step: its outputs are not there yet"), "{d}");
    }

    #[test]
    fn unknown_field_message_is_split() {
        let (f, e) = parse_unknown_field("unknown field `timout`, expected one of `id`, `timeout`").unwrap_or_default();
        assert_eq!(f, "timout");
        assert_eq!(e, vec!["id".to_string(), "timeout".to_string()]);
    }

    #[test]
    fn paths_read_like_prose() {
        assert_eq!(describe_path("steps[2].with.jobs"), "step 3, field `with.jobs`");
        assert_eq!(describe_path("finally[0]"), "finally step 1");
        assert_eq!(describe_path("steps[1].parallel[0].with.jobs"), "step 2, parallel step 1, field `with.jobs`");
    }

    #[test]
    fn a_declared_kind_is_parsed_and_every_shipped_runbook_declares_one() {
        let steps = "steps:\n  - uses: sleep\n    with: { duration: 1s }\n";
        let rb = parse("k.yaml", &format!("name: k\nkind: verify\n{steps}"), PathBuf::new());
        assert_eq!(rb.ok().and_then(|r| r.kind), Some(RunKind::Verify));
        let rb = parse("k.yaml", &format!("name: k\n{steps}"), PathBuf::new());
        assert_eq!(rb.map(|r| r.kind).ok(), Some(None));
        for s in crate::shipped::all() {
            let rb = parse(s.path, s.text, PathBuf::new()).map_err(|d| d.to_string());
            assert!(rb.as_ref().is_ok_and(|r| r.kind.is_some()), "{} declares no kind: {:?}", s.path, rb.err());
        }
    }

    /// Regression: `1e300` as a duration panicked (`Duration::from_secs_f64`). A generated
    /// table over the duration grammar (numbers in every form, every unit, combinations):
    /// no entry panics, and whatever parses is at most `MAX_DURATION`.
    #[test]
    fn no_duration_text_panics_or_exceeds_the_bound() {
        let numbers = [
            "0",
            "1",
            "1.5",
            "-1",
            "-0",
            "0.000000001",
            "1e-300",
            "1e300",
            "1e19",
            "18446744073709551615",
            "18446744073709551616",
            "99999999999999999999999",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "infinity",
            "1_000",
            "0x10",
            ".",
            "",
            " ",
            "5.",
            ".5",
            "1e",
            "e5",
            "3153600000",
            "3153600001",
            "3153600000.5",
        ];
        let units = ["", "s", "sec", "ns", "ms", "m", "min", "h", "d", "days", "w", "M", "y", "years", " parsecs"];
        let mut seen = 0;
        for n in numbers {
            for u in units {
                for text in [format!("{n}{u}"), format!("{n}{u} {n}{u}"), format!("1h {n}{u}")] {
                    seen += 1;
                    if let Ok(d) = parse_duration(&text) {
                        assert!(d <= MAX_DURATION, "`{text}` gave {d:?}");
                    }
                }
            }
        }
        assert!(seen > 1000);
        assert!(parse_duration("1e300").is_err());
        assert!(parse_duration("101y").is_err());
        assert_eq!(parse_duration("100y").map(|d| d <= MAX_DURATION), Ok(true));
        // Growing delays saturate.
        let mut d = Duration::from_secs(1);
        for _ in 0..100 {
            d = next_delay(d, MAX_BACKOFF);
        }
        assert_eq!(d, MAX_DURATION);
        assert_eq!(next_delay(Duration::from_secs(2), 1.5), Duration::from_secs(3));
    }

    /// A value that fits a field of type `ty`, for the fields a kind needs besides the one
    /// under test.
    fn placeholder(ty: &str) -> Yaml {
        let first = ty.split('|').next().unwrap_or_default();
        match ty {
            "boolean" => Yaml::Bool(false),
            "integer" | "number" | "integer or list" => Yaml::Number(1.into()),
            "duration" => Yaml::String("1s".into()),
            "major version" => Yaml::String("15".into()),
            "map" | "map|null" => Yaml::Mapping(Default::default()),
            "list of strings" => serde_yaml::from_str("[x]").unwrap_or(Yaml::Null),
            "path" => Yaml::String("/tmp/pgdrill-audit".into()),
            _ if ty.contains('|') => Yaml::String(first.into()),
            _ => Yaml::String("postgres://127.0.0.1:1/app".into()),
        }
    }

    /// Issue 45 case 9, "other sizes were not audited": every number a runbook or a step kind
    /// takes, from the catalogue (so a new field is covered the day it is added), given the
    /// values that overflowed or panicked elsewhere. None panics, and each is refused or held
    /// within its bound: integers beyond i64 and non-finite or huge numbers are refused (they
    /// were held at i64::MAX or passed as NaN), durations are within 100 years, `jobs` and
    /// `threads` within their caps (4e9 `jobs` of verify.amcheck started 4e9 tasks), and a
    /// `retry` count past `MAX_RETRIES` is refused (u32::MAX overflowed the attempt count).
    #[test]
    fn no_number_of_any_step_kind_or_runbook_setting_panics_or_passes_unbounded() {
        let hostile = [
            "-1",
            "0",
            "4294967296",
            "18446744073709551615",
            "18446744073709551616",
            "9223372036854775808",
            "-9223372036854775809",
            "1e300",
            "-1e300",
            "1e16",
            ".nan",
            ".inf",
            "-.inf",
            "\"NaN\"",
            "\"inf\"",
            "\"1e300\"",
            "\"99999999999999999999\"",
            "\"101y\"",
            "\"1e300s\"",
            "1.5",
            "\"\"",
        ];
        let numeric = ["integer", "number", "duration", "integer or list", "major version"];
        let (mut fields, mut refused) = (0, 0);
        for kind in steps::catalogue() {
            for field in kind.fields.iter().filter(|f| numeric.contains(&f.ty)) {
                let mut base = serde_yaml::Mapping::new();
                for f in kind.fields.iter().filter(|f| f.required && f.name != field.name) {
                    base.insert(Yaml::String(f.name.into()), placeholder(f.ty));
                }
                let with = |v: Yaml| {
                    let mut m = base.clone();
                    m.insert(Yaml::String(field.name.into()), v);
                    Yaml::Mapping(m)
                };
                // A kind whose placeholders its own check refuses says nothing about the field.
                if (kind.check)(&with(placeholder(field.ty))).is_err() {
                    continue;
                }
                fields += 1;
                for text in hostile {
                    let v: Yaml = serde_yaml::from_str(text).unwrap_or(Yaml::Null);
                    let y = with(v.clone());
                    let r = std::panic::catch_unwind(|| (kind.check)(&y));
                    let Ok(r) = r else { panic!("{}.{} = {text} panicked", kind.name, field.name) };
                    let as_f64 = match &v {
                        Yaml::Number(n) => n.as_f64(),
                        Yaml::String(s) => s.trim().parse::<f64>().ok(),
                        _ => None,
                    };
                    // Past each type's bound: an integer beyond i64 (a count such as
                    // `keep_daily` may be any i64: it is only ever compared), a number beyond
                    // `MAX_NUMBER`, a number of seconds beyond `MAX_DURATION`.
                    let bound = match field.ty {
                        "number" => steps::de::MAX_NUMBER,
                        "duration" => MAX_DURATION.as_secs_f64(),
                        _ => 9.2e18,
                    };
                    let huge = as_f64.is_some_and(|f| !f.is_finite() || f.abs() > bound);
                    let capped = match field.name {
                        "jobs" => Some(steps::de::MAX_JOBS as f64),
                        "threads" => Some(steps::de::MAX_THREADS as f64),
                        _ => None,
                    };
                    let over_cap = capped.zip(as_f64).is_some_and(|(c, f)| f > c);
                    if field.ty == "major version" {
                        continue; // text, checked against the versions installed at run time
                    }
                    // A JSON value: NaN and the infinities arrive as null, "no major given".
                    if field.name == "source_major" && as_f64.is_some_and(|f| !f.is_finite()) {
                        continue;
                    }
                    if huge || over_cap || text.contains("101y") || text.contains("1e300s") {
                        assert!(r.is_err(), "{}.{} = {text} was taken", kind.name, field.name);
                        refused += 1;
                    }
                }
            }
        }
        assert!(fields >= 40, "only {fields} numeric fields were reachable");
        assert!(refused > 300, "{refused}");

        // The runbook's own numbers: retry counts, delays, backoffs, timeouts, targets.
        let step = "  - uses: sleep\n    with: { duration: 1ms }\n";
        for (extra, ok) in [
            ("    retry: 4294967295\n", false),
            ("    retry: { count: 4294967295 }\n", false),
            ("    retry: { count: 10001 }\n", false),
            ("    retry: { count: 10000, delay: 1ms }\n", true),
            ("    retry: -1\n", false),
            ("    retry: { count: 1, delay: 1e300 }\n", false),
            ("    retry: { count: 1, backoff: .nan }\n", false),
            ("    retry: { count: 1, backoff: .inf }\n", false),
            ("    timeout: 1e300\n", false),
            ("    timeout: \"-1s\"\n", false),
            ("    timeout: 100y\n", true),
        ] {
            let text = format!("name: n\nsteps:\n{step}{extra}");
            let r = std::panic::catch_unwind(|| parse("n.yaml", &text, PathBuf::new()).map(|_| ()));
            assert_eq!(
                r.as_ref().map(Result::is_ok).ok(),
                Some(ok),
                "{extra}: {:?}",
                r.map(|r| r.err().map(|d| d.to_string()))
            );
        }
        let text = "name: n\ntargets: { rto: 1e300 }\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n";
        assert!(parse("n.yaml", text, PathBuf::new()).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
    }
}
