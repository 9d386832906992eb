//! run.json (`--report DIR`) read into types: suites and their steps, each step found by its
//! `id` (or its place in the file), never by a label two steps may share. Fields the tests
//! do not look at stay in `raw`; fields a run may leave out are optional, so a report that
//! grows stays readable.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Deserialize)]
pub struct RunJson {
    pub schema: String,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    pub suites: Vec<Suite>,
    /// The whole document, for what the types above leave out.
    #[serde(skip)]
    pub raw: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Suite {
    pub id: usize,
    pub parent: Option<usize>,
    pub name: String,
    #[serde(default)]
    pub file: Option<String>,
    pub kind: Value,
    pub outcome: Option<String>,
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub message: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    /// Its place in the file (`steps[2]`, `finally[0]`): unique within a suite.
    pub path: String,
    pub label: String,
    pub id: Option<String>,
    pub uses: String,
    #[serde(default)]
    pub location: Option<String>,
    /// `{"kind": "main"}`, `{"kind": "rollback", "of": ...}`, `finally`, `budget`.
    pub phase: Value,
    pub outcome: String,
    #[serde(default)]
    pub error_kind: Option<String>,
    pub attempts: u32,
    /// Seconds.
    #[serde(default)]
    pub duration: f64,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub outputs: Value,
    #[serde(default)]
    pub log: Vec<String>,
    #[serde(default)]
    pub rollback: Option<String>,
    #[serde(default)]
    pub facts: Vec<Value>,
}

impl RunJson {
    /// `DIR/run.json`; a missing file or one that does not read as a run fails the test.
    pub fn read(dir: &Path) -> RunJson {
        let path = dir.join("run.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut run: RunJson = serde_json::from_value(raw.clone())
            .unwrap_or_else(|e| panic!("{}: not a run: {e}\n{text}", path.display()));
        run.raw = raw;
        run
    }

    /// The top suite (the runbook run, before any nested one).
    pub fn main(&self) -> &Suite {
        self.suites.first().expect("run.json has a suite")
    }

    /// The top suite's step with `id`; the test fails, listing the ids there are, when none has it.
    pub fn step(&self, id: &str) -> &Step {
        self.main().step(id)
    }
}

impl Suite {
    /// The step with `id` (its `id:` in the runbook); the test fails when there is none.
    pub fn step(&self, id: &str) -> &Step {
        self.steps.iter().find(|s| s.id.as_deref() == Some(id)).unwrap_or_else(|| {
            let ids: Vec<_> = self.steps.iter().map(|s| s.id.as_deref().unwrap_or(&s.path)).collect();
            panic!("no step {id:?} in suite {:?}; there are {ids:?}", self.name)
        })
    }

    /// The steps in the part of the runbook `phase` (`main`, `rollback`, `finally`, `budget`).
    pub fn in_phase<'a>(&'a self, phase: &'a str) -> impl Iterator<Item = &'a Step> + 'a {
        self.steps.iter().filter(move |s| s.phase["kind"] == phase)
    }
}

/// The steps of suite `n` of a run.json a test has read as JSON itself, typed; steps that
/// do not read as run.json's steps fail the test.
pub fn steps_in(run_json: &Value, n: usize) -> Vec<Step> {
    serde_json::from_value(run_json["suites"][n]["steps"].clone())
        .unwrap_or_else(|e| panic!("suite {n}'s steps in run.json: {e}"))
}

impl Step {
    /// The output `name` as text (empty when absent or not text).
    pub fn output(&self, name: &str) -> &str {
        self.outputs[name].as_str().unwrap_or_default()
    }
}
