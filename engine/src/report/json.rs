//! The JSON run record: `run.json` in the report directory, with every step's outcome,
//! timings and outputs. Its `schema` field versions the format for tools that read it.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use super::summary::{RunRecord, SuiteRecord};
use super::{write_atomic, ReportSink, RunSummary};

pub struct JsonRecord {
    dir: PathBuf,
    /// How many dated reports (`report-YYYYMMDDhhmmss.html`) to keep; `None`: all.
    keep: Option<usize>,
    /// `--report` in an object store: `dir` is its local working copy, published at the end.
    remote: Option<super::remote::RemoteReport>,
    /// The head the run's signed evidence appended, once it has (the evidence sink finishes
    /// first): written into the run's history line.
    anchor: Option<super::signed::Anchor>,
}

impl JsonRecord {
    pub fn new(dir: PathBuf) -> Self {
        JsonRecord { dir, keep: None, remote: None, anchor: None }
    }

    /// Write the evidence head `anchor` holds into the run's history line.
    pub fn anchored(mut self, anchor: Option<super::signed::Anchor>) -> Self {
        self.anchor = anchor;
        self
    }

    /// Keep only the newest `keep` dated reports.
    pub fn keep(mut self, keep: Option<usize>) -> Self {
        self.keep = keep;
        self
    }

    /// Write into the object-store location `r` (through its local working copy).
    pub fn remote(r: super::remote::RemoteReport) -> Self {
        let mut j = JsonRecord::new(r.dir().to_path_buf());
        j.remote = Some(r);
        j
    }
}

impl ReportSink for JsonRecord {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        // The evidence sink finished first: the head it appended is this run's anchor, in
        // run.json as in the history line.
        let head = self.anchor.as_ref().and_then(|a| a.lock().ok().and_then(|h| h.clone()));
        write_atomic(&self.dir.join("run.json"), |w| {
            write_record(w, &summary.record, head.as_ref())?;
            w.write_all(b"\n")
        })?;
        let dated = super::compliance::write_anchored(&self.dir, summary, head.as_ref())?;
        if let Some(r) = &self.remote {
            let handle = tokio::runtime::Handle::current();
            let current = dated.as_deref().and_then(|p| p.file_name()).and_then(|n| n.to_str());
            return tokio::task::block_in_place(|| handle.block_on(r.publish(self.keep, current)));
        }
        if let Some(k) = self.keep {
            super::compliance::prune_dated(&self.dir, k, dated.as_deref())?;
        }
        Ok(())
    }
}

/// run.json as it always was (each object's keys sorted, as a JSON value has them, pretty
/// printed), written a step at a time: the whole record as one `serde_json::Value` was the
/// largest thing a 10,000-step run held at its end (issue 36 case 11). Only one step's value
/// exists at once; the rest is the record itself. `evidence`: the head of the evidence log
/// the run appended to (location, chain, sequence, record_sha256), kept as `evidence`.
pub fn write_record(w: &mut dyn Write, r: &RunRecord, evidence: Option<&serde_json::Value>) -> io::Result<()> {
    // Every field but the list, named one by one: a field added to the record is a compile
    // error here until it is written too.
    let head = RunRecord {
        schema: r.schema.clone(),
        pgdrill_version: r.pgdrill_version.clone(),
        started_at: r.started_at.clone(),
        finished_at: r.finished_at.clone(),
        outcome: r.outcome,
        exit_code: r.exit_code,
        content: r.content,
        suites: Vec::new(),
    };
    #[derive(Serialize)]
    struct Anchored<'a> {
        #[serde(flatten)]
        record: &'a RunRecord,
        #[serde(skip_serializing_if = "Option::is_none")]
        evidence: Option<&'a serde_json::Value>,
    }
    let head = Anchored { record: &head, evidence };
    with_list(w, &head, "suites", 0, &r.suites, &mut |w, s: &SuiteRecord, level| {
        let head = SuiteRecord {
            id: s.id,
            parent: s.parent,
            name: s.name.clone(),
            file: s.file.clone(),
            kind: s.kind,
            started_at: s.started_at,
            duration: s.duration,
            outcome: s.outcome,
            exit_code: s.exit_code,
            message: s.message.clone(),
            content: s.content,
            steps: Vec::new(),
        };
        with_list(w, &head, "steps", level, &s.steps, &mut |w, step, level| pretty_at(w, step, level))
    })
}

/// Where a list goes in the text of its object while the object is written.
const LIST_MARK: &str = "\u{1}pgdrill:list\u{1}";

/// `head` (an object, its list `key` empty) pretty printed at nesting `level`, with `items` as
/// its `key`, each written by `item` at the level below the list.
fn with_list<T>(
    w: &mut dyn Write,
    head: &impl Serialize,
    key: &str,
    level: usize,
    items: &[T],
    item: &mut dyn FnMut(&mut dyn Write, &T, usize) -> io::Result<()>,
) -> io::Result<()> {
    let mut v = serde_json::to_value(head).map_err(io::Error::other)?;
    if let Some(m) = v.as_object_mut() {
        m.insert(key.to_string(), serde_json::Value::String(LIST_MARK.into()));
    }
    let text = indented(&serde_json::to_string_pretty(&v).map_err(io::Error::other)?, level);
    // Quotes inside a value are escaped, so the key with its quotes is found only as the key.
    let mark = format!("\"{key}\": {}", serde_json::to_string(LIST_MARK).map_err(io::Error::other)?);
    let Some(at) = text.find(&mark) else {
        return Err(io::Error::other(format!("run.json: no `{key}` in its object")));
    };
    w.write_all(&text.as_bytes()[..at + key.len() + 4])?;
    if items.is_empty() {
        w.write_all(b"[]")?;
    } else {
        w.write_all(b"[")?;
        for (i, it) in items.iter().enumerate() {
            w.write_all(b"\n")?;
            w.write_all(pad(level + 2).as_bytes())?;
            item(w, it, level + 2)?;
            if i + 1 < items.len() {
                w.write_all(b",")?;
            }
        }
        w.write_all(b"\n")?;
        w.write_all(pad(level + 1).as_bytes())?;
        w.write_all(b"]")?;
    }
    w.write_all(&text.as_bytes()[at + mark.len()..])
}

/// `v` as a JSON value (keys sorted), pretty printed at nesting `level`.
fn pretty_at(w: &mut dyn Write, v: &impl Serialize, level: usize) -> io::Result<()> {
    let v = serde_json::to_value(v).map_err(io::Error::other)?;
    w.write_all(indented(&serde_json::to_string_pretty(&v).map_err(io::Error::other)?, level).as_bytes())
}

/// Pretty JSON text moved in by `level` levels: a line break only ever stands between tokens
/// (one inside a string is written `\n`), so every line after the first gets the padding.
fn indented(text: &str, level: usize) -> String {
    if level == 0 {
        return text.to_string();
    }
    text.replace('\n', &format!("\n{}", pad(level)))
}

fn pad(level: usize) -> String {
    "  ".repeat(level)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: &str = r#"{"attempts": 1, "duration": 0.001, "id": "s0", "label": "s \"quoted\"\nline", "location": "a.yaml:3:5", "log": ["sleeping 0s", "\"steps\": \"x\""], "outcome": "passed", "outputs": {"b": {"c": [1, 2, {}], "d": []}, "a": "\u0001pgdrill:list\u0001"}, "path": "steps[0]", "phase": {"kind": "main"}, "started_at": "2026-12-06T10:30:35.490535562Z", "suite": 0, "uses": "sleep"}"#;

    fn suite(id: usize, steps: usize) -> String {
        let steps = vec![STEP; steps].join(", ");
        format!(
            r#"{{"duration": 0.142, "exit_code": 0, "file": "x.yaml", "id": {id}, "kind": null, "message": "a \"steps\": [] message", "name": "n", "outcome": "passed", "parent": null, "started_at": "2026-12-06T10:30:35.490479959Z", "steps": [{steps}]}}"#
        )
    }

    /// The streamed run.json is, byte for byte, what the whole record as one JSON value
    /// printed (the form run.json always had): nested suites, an empty one, hostile text.
    #[test]
    fn run_json_written_a_step_at_a_time_is_the_record_as_it_always_was() {
        for suites in [vec![], vec![suite(0, 0)], vec![suite(0, 3), suite(1, 0), suite(2, 1)]] {
            let text = format!(
                r#"{{"schema": "pgdrill.run/1", "pgdrill_version": "0", "started_at": "s", "finished_at": "f", "outcome": "passed", "exit_code": 0, "suites": [{}]}}"#,
                suites.join(", ")
            );
            let record: RunRecord = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
            let mut old = Vec::new();
            let v = serde_json::to_value(&record).unwrap_or_default();
            serde_json::to_writer_pretty(&mut old, &v).unwrap_or_default();
            let mut new = Vec::new();
            write_record(&mut new, &record, None).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(String::from_utf8_lossy(&new), String::from_utf8_lossy(&old));
        }
    }
}
