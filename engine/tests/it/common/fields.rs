//! The catalogue-driven field tests (`secret_fields`, `conninfo_fields`): every field of a
//! type the step contract declares, given a value a step prints before the field's own step
//! runs, then everything the run wrote read back.

use std::path::{Path, PathBuf};

use super::builder::{Ran, Run};

/// Each kind of the step catalogue (`pgdrill steps --json`): its name and its `with` fields.
pub fn catalogue_kinds() -> Vec<(String, Vec<serde_json::Value>)> {
    let out = super::run(&["steps", "--json"]);
    assert!(out.status.success(), "{}", super::text(&out.stderr));
    let kinds: serde_json::Value = serde_json::from_slice(&out.stdout).expect("catalogue json");
    kinds
        .as_array()
        .expect("kinds")
        .iter()
        .map(|k| (k["name"].as_str().expect("name").to_string(), k["with"].as_array().cloned().unwrap_or_default()))
        .collect()
}

/// A field of a step kind in the catalogue: its kind's name, the kind's fields, its place
/// among them and its own name.
pub struct CatalogueField {
    pub kind: String,
    pub fields: Vec<serde_json::Value>,
    pub index: usize,
    pub name: String,
}

impl CatalogueField {
    /// A value no other field's test uses: `prefix`, the place, the kind and field names,
    /// then `suffix` (`Pw3-backup-create-database_url-9d2e`).
    pub fn unique(&self, prefix: &str, suffix: &str) -> String {
        format!("{prefix}{}-{}-{}-{suffix}", self.index, self.kind.replace('.', "-"), self.name)
    }
}

/// Every field the catalogue types `ty` (`secret`, `conninfo`), kind by kind: a field added
/// later is covered without a test change.
pub fn catalogue_fields_typed(ty: &str) -> Vec<CatalogueField> {
    let mut out = Vec::new();
    for (kind, fields) in catalogue_kinds() {
        for (index, f) in fields.iter().enumerate().filter(|(_, f)| f["type"] == ty) {
            let name = f["name"].as_str().expect("field").to_string();
            out.push(CatalogueField { kind: kind.clone(), fields: fields.clone(), index, name });
        }
    }
    out
}

/// A value for a required field of `ty` that passes the runbook's checks and fails fast at
/// run time (nothing listens on port 1, nothing is under /nonexistent).
pub fn dummy(name: &str, ty: &str) -> String {
    if ty == "conninfo" || name.contains("url") || name == "source" {
        return "\"postgres://nobody@127.0.0.1:1/nothing\"".into();
    }
    match ty {
        "integer" | "number" => "1".into(),
        "boolean" => "false".into(),
        "duration" => "1s".into(),
        "map" | "map|null" => "{}".into(),
        "list of strings" => "[]".into(),
        "path" => "\"/nonexistent/pgdrill-fields\"".into(),
        "secret" => "\"a-dummy-secret-of-some-length\"".into(),
        t if t.contains('|') => t.split('|').next().unwrap_or("x").to_string(),
        _ => "\"/nonexistent/x\"".into(),
    }
}

/// `field: value` for every required field of `fields` but `field`, each from `value_of(name,
/// type)`.
pub fn required_others(
    fields: &[serde_json::Value],
    field: &str,
    value_of: impl Fn(&str, &str) -> String,
) -> Vec<String> {
    let mut with = Vec::new();
    for other in fields {
        let (o, ty) = (other["name"].as_str().unwrap_or(""), other["type"].as_str().unwrap_or(""));
        if o != field && other["required"] == true {
            with.push(format!("{o}: {}", value_of(o, ty)));
        }
    }
    with
}

/// What a [`leak_then`] run did and where it wrote.
pub struct Leaked {
    pub ran: Ran,
    pub junit: PathBuf,
    pub report: PathBuf,
    /// The environment the printing step's child was given, as `env` wrote it.
    pub env: PathBuf,
}

impl Leaked {
    /// Everything the run wrote: terminal, JUnit, every report file, the child's environment.
    pub fn everything_written(&self) -> Vec<(String, String)> {
        let mut seen =
            vec![("stdout".to_string(), self.ran.stdout.clone()), ("stderr".into(), self.ran.stderr.clone())];
        seen.push(("junit".into(), std::fs::read_to_string(&self.junit).unwrap_or_default()));
        for f in super::walk(&self.report) {
            seen.push((
                f.display().to_string(),
                String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into(),
            ));
        }
        seen.push(("the child's environment".into(), std::fs::read_to_string(&self.env).unwrap_or_default()));
        seen
    }
}

/// Runbook `title` in `dir`: a `shell.run` step that prints `shown` (after `MARKER`) on its
/// stdout and stderr and writes its environment to a file, then step `kind` with `with`; run
/// with `--junit` and `--report`, without the backup key and source URL variables, and `env`
/// set for pgdrill.
pub fn leak_then(
    dir: &Path,
    title: &str,
    kind: &str,
    field: &str,
    shown: &str,
    with: &[String],
    env: &[(&str, &str)],
) -> Leaked {
    let env_file = dir.join(format!("env-{kind}-{field}"));
    let rb = dir.join(format!("{kind}-{field}.yaml"));
    std::fs::write(
        &rb,
        format!(
            "name: {title}\nsteps:\n  - id: leak\n    uses: shell.run\n    with: {{ argv: [sh, -c, 'echo \"MARKER $0\"; echo \"MARKER $0\" >&2; env > \"$1\"', \"{shown}\", \"{}\"] }}\n  - id: holder\n    uses: {kind}\n    with: {{ {} }}\n",
            env_file.display(),
            with.join(", ")
        ),
    )
    .expect("runbook");
    let (junit, report) = (dir.join(format!("{kind}-{field}.xml")), dir.join(format!("r-{kind}-{field}")));
    let mut run =
        Run::new(&rb).junit(&junit).report(&report).env_remove("PGDRILL_BACKUP_KEY").env_remove("PGDRILL_SOURCE_URL");
    for (k, v) in env {
        run = run.env(k, v);
    }
    Leaked { ran: run.output(), junit, report, env: env_file }
}
