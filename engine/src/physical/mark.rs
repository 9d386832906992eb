//! The ground truth a recovery is held against, as a runbook's variable can name it: a
//! `pitr.mark` fingerprint given inline, or a file holding one. A file is what a team keeps
//! between the run that marks its server and the run that recovers (`--var expect=FILE`
//! of the shipped `verify-physical`), so the forms a mark leaves behind are all read: the
//! fingerprint itself, `pitr.mark`'s outputs (`{"fingerprint": ...}`), or the `run.json`
//! of the run that marked.
//!
//! This module reads and checks; it never judges a recovered copy (`pitr::differences`).

use std::path::Path;

use crate::pg::fingerprint::Fingerprint;

/// A mark as read: its fingerprint, and the restore point it was taken at when the file
/// says (pitr.mark's outputs and run.json do; a bare fingerprint does not).
#[derive(Debug, Clone)]
pub struct Mark {
    pub fingerprint: Fingerprint,
    pub restore_point: Option<String>,
}

/// What an `expect` value names: `None` for no ground truth (null, empty, `none`); a map
/// is the fingerprint itself; a text starting with `{` is one as JSON; any other text is a
/// file (relative to `base`, the runbook's directory). Every other value, or a file that
/// holds no mark, is an error saying what was found and what to give.
pub fn read(value: &serde_json::Value, base: &Path) -> Result<Option<Mark>, String> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s.trim().is_empty() || s.trim() == "none" => Ok(None),
        serde_json::Value::String(s) if s.trim_start().starts_with('{') => {
            let v: serde_json::Value =
                serde_json::from_str(s).map_err(|e| format!("the text given is not JSON ({e}): {FORMS}"))?;
            of_json(&v).map(Some).map_err(|why| format!("the JSON given {why}"))
        }
        serde_json::Value::String(s) => {
            let path = base.join(s.trim());
            let bytes = std::fs::read(&path).map_err(|e| {
                format!(
                    "cannot read the mark file {} ({e}): give the file pitr.mark's fingerprint was saved to",
                    path.display()
                )
            })?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| format!("the mark file {}: not JSON ({e}): {FORMS}", path.display()))?;
            of_json(&v).map(Some).map_err(|why| format!("the mark file {} {why}", path.display()))
        }
        v => of_json(v).map(Some).map_err(|why| format!("the value given {why}")),
    }
}

const FORMS: &str =
    "give pitr.mark's `fingerprint`, its outputs, the run.json of the run that marked, or a file holding one of them";

/// A mark from any of its forms (see the module docs).
fn of_json(v: &serde_json::Value) -> Result<Mark, String> {
    if let Ok(fingerprint) = serde_json::from_value::<Fingerprint>(v.clone()) {
        return Ok(Mark { fingerprint, restore_point: None });
    }
    if let Some(f) = v.get("fingerprint") {
        return outputs(v, f);
    }
    // A run.json (its suites, each with its steps): the one `pitr.mark` step that finished
    // with a fingerprint; two marks in one run are ambiguous, named rather than guessed between.
    if let Some(suites) = v.get("suites").and_then(|s| s.as_array()) {
        let steps: Vec<&serde_json::Value> =
            suites.iter().filter_map(|s| s.get("steps")?.as_array()).flatten().collect();
        let marks: Vec<&serde_json::Value> = steps
            .into_iter()
            .filter(|s| s.get("uses").and_then(|u| u.as_str()) == Some("pitr.mark"))
            .filter(|s| s.get("outputs").and_then(|o| o.get("fingerprint")).is_some_and(|f| !f.is_null()))
            .collect();
        return match marks.as_slice() {
            [one] => outputs(&one["outputs"], &one["outputs"]["fingerprint"])
                .map_err(|why| format!("(a run.json, step `{}`): {why}", one["id"].as_str().unwrap_or("?"))),
            [] => Err("is a run.json without a pitr.mark step that finished: mark the source first (a runbook with `uses: pitr.mark`)".into()),
            many => Err(format!(
                "is a run.json with {} pitr.mark steps ({}): save the fingerprint of the one to recover to in a file of its own",
                many.len(),
                many.iter().filter_map(|s| s["id"].as_str()).collect::<Vec<_>>().join(", ")
            )),
        };
    }
    Err(format!("holds no pgdrill fingerprint: {FORMS}"))
}

/// pitr.mark's outputs: the fingerprint and the restore point beside it.
fn outputs(v: &serde_json::Value, f: &serde_json::Value) -> Result<Mark, String> {
    let fingerprint = serde_json::from_value::<Fingerprint>(f.clone())
        .map_err(|e| format!("has a `fingerprint` that is not a pgdrill fingerprint ({e})"))?;
    let restore_point = v.get("restore_point").and_then(|r| r.as_str()).filter(|r| !r.is_empty()).map(str::to_string);
    Ok(Mark { fingerprint, restore_point })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint() -> serde_json::Value {
        serde_json::json!({
            "mode": "counts",
            "schema_hash": "ab",
            "schema": { "tables": ["public.drill r"] },
            "tables": { "public.drill": { "rows": 310 } },
        })
    }

    /// Regression (issue 39): the shipped `verify-physical` took no ground truth, so a team
    /// could prove its recovery but never what it held without writing a runbook of its own.
    /// `expect` is now a variable naming the mark as the team keeps it: inline, or a file
    /// holding the fingerprint, pitr.mark's outputs, or the marking run's run.json.
    #[test]
    fn a_mark_is_read_from_each_form_a_team_keeps_it_in() {
        let t = tempfile::tempdir().expect("tmp");
        let base = t.path();
        let rows = |m: Mark| m.fingerprint.tables.get("public.drill").map(|t| t.rows);
        assert!(read(&serde_json::Value::Null, base).expect("none").is_none());
        assert!(read(&serde_json::json!(""), base).expect("none").is_none());
        assert!(read(&serde_json::json!("none"), base).expect("none").is_none());
        let inline = read(&fingerprint(), base).expect("read").expect("a mark");
        assert_eq!((rows(inline.clone()), inline.restore_point), (Some(310), None));
        let text = read(&serde_json::json!(fingerprint().to_string()), base).expect("read").expect("a mark");
        assert_eq!(rows(text), Some(310));

        std::fs::write(base.join("fp.json"), fingerprint().to_string()).expect("write");
        assert_eq!(rows(read(&serde_json::json!("fp.json"), base).expect("read").expect("a mark")), Some(310));
        let outputs = serde_json::json!({ "fingerprint": fingerprint(), "restore_point": "pgdrill_mark", "rows": 310 });
        std::fs::write(base.join("outputs.json"), outputs.to_string()).expect("write");
        let m = read(&serde_json::json!("outputs.json"), base).expect("read").expect("a mark");
        assert_eq!(m.restore_point.as_deref(), Some("pgdrill_mark"));
        let run = serde_json::json!({ "schema": "pgdrill.run/1", "suites": [{ "steps": [
            { "id": "before", "uses": "sql.exec", "outputs": {} },
            { "id": "mark", "uses": "pitr.mark", "outputs": outputs },
        ]}]});
        std::fs::write(base.join("run.json"), run.to_string()).expect("write");
        let m = read(&serde_json::json!(base.join("run.json").display().to_string()), Path::new("/")).expect("read");
        assert_eq!(m.and_then(|m| m.restore_point).as_deref(), Some("pgdrill_mark"));

        // What is not a mark is named, never read as "no ground truth".
        let e = read(&serde_json::json!("missing.json"), base).expect_err("no file");
        assert!(e.contains("missing.json"), "{e}");
        std::fs::write(base.join("other.json"), r#"{"tables": 3}"#).expect("write");
        let e = read(&serde_json::json!("other.json"), base).expect_err("not a mark");
        assert!(e.contains("other.json") && e.contains("no pgdrill fingerprint"), "{e}");
        let two = serde_json::json!({ "suites": [
            { "steps": [{ "id": "a", "uses": "pitr.mark", "outputs": outputs }] },
            { "steps": [{ "id": "b", "uses": "pitr.mark", "outputs": outputs }] },
        ]});
        let e = read(&two, base).expect_err("two marks");
        assert!(e.contains("a, b"), "{e}");
        let e = read(&serde_json::json!({ "suites": [{ "steps": [] }] }), base).expect_err("no mark");
        assert!(e.contains("without a pitr.mark step"), "{e}");
        let e = read(&serde_json::json!(7), base).expect_err("a number");
        assert!(e.contains("no pgdrill fingerprint"), "{e}");
    }
}
