//! Every secret-bearing field of the step contract, enumerated from the catalogue itself
//! (`pgdrill steps --json`, fields typed `secret`), proven absent from every output and from
//! a child's environment (issue 36, case 1). A field added later is covered without a test
//! change.

use std::path::Path;

use crate::common::*;

/// A value for a required field of `ty` that passes the runbook's checks and fails fast at
/// run time (nothing listens on port 1, nothing is under /nonexistent).
fn dummy(name: &str, ty: &str) -> String {
    if name.contains("url") || name == "source" {
        return "\"postgres://nobody@127.0.0.1:1/nothing\"".into();
    }
    match ty {
        "integer" | "number" => "1".into(),
        "boolean" => "false".into(),
        "duration" => "1s".into(),
        "map" | "map|null" => "{}".into(),
        "list of strings" => "[]".into(),
        "path" => "\"/nonexistent/pgdrill-secret-fields\"".into(),
        t if t.contains('|') => t.split('|').next().unwrap_or("x").to_string(),
        _ => "\"/nonexistent/x\"".into(),
    }
}

fn everything_written(stdout: &str, stderr: &str, junit: &Path, report: &Path, env: &Path) -> Vec<(String, String)> {
    let mut seen = vec![("stdout".to_string(), stdout.to_string()), ("stderr".into(), stderr.to_string())];
    seen.push(("junit".into(), std::fs::read_to_string(junit).unwrap_or_default()));
    for f in walk(report) {
        seen.push((f.display().to_string(), String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into()));
    }
    seen.push(("shell.run's environment".into(), std::fs::read_to_string(env).unwrap_or_default()));
    seen
}

/// Before: no test held every secret field at once; the register of a run's secrets was
/// proven field by field where a test happened to look. Here each field typed `secret` in
/// the catalogue is given a value a step prints before the field's own step runs: the value
/// is masked in the terminal, JUnit, run.json and the reports, and no child gets it.
#[test]
fn every_secret_field_of_the_catalogue_is_masked_from_the_first_step() {
    let out = run(&["steps", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kinds: serde_json::Value = serde_json::from_slice(&out.stdout).expect("catalogue json");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut covered = 0;
    for kind in kinds.as_array().expect("kinds") {
        let name = kind["name"].as_str().expect("name");
        let fields = kind["with"].as_array().cloned().unwrap_or_default();
        for (i, f) in fields.iter().enumerate().filter(|(_, f)| f["type"] == "secret") {
            let field = f["name"].as_str().expect("field");
            let secret = format!("Sx{i}-{}-{field}-7f3a9c1e5b2d4680", name.replace('.', "-"));
            let mut with = vec![format!("{field}: \"{secret}\"")];
            for other in &fields {
                let (o, ty) = (other["name"].as_str().unwrap_or(""), other["type"].as_str().unwrap_or(""));
                if o != field && other["required"] == true {
                    with.push(format!(
                        "{o}: {}",
                        if ty == "secret" { format!("\"other-{secret}\"") } else { dummy(o, ty) }
                    ));
                }
            }
            // What a kind's own check needs beside its required fields (one of several).
            if name == "pitr.source" {
                with.push(format!("archive: \"{}\"", dir.path().join("wal-archive").display()));
            }
            let env = dir.path().join(format!("env-{name}-{field}"));
            let rb = dir.path().join(format!("{name}-{field}.yaml"));
            std::fs::write(
                &rb,
                format!(
                    "name: secret-fields\nsteps:\n  - id: leak\n    uses: shell.run\n    with: {{ argv: [sh, -c, 'echo \"MARKER $0\"; echo \"MARKER $0\" >&2; env > \"$1\"', \"{secret}\", \"{}\"] }}\n  - id: holder\n    uses: {name}\n    with: {{ {} }}\n",
                    env.display(),
                    with.join(", ")
                ),
            )
            .expect("runbook");
            let (junit, report) =
                (dir.path().join(format!("{name}-{field}.xml")), dir.path().join(format!("r-{name}-{field}")));
            let out = pgdrill(&[
                "run",
                rb.to_str().expect("utf-8"),
                "--junit",
                junit.to_str().expect("utf-8"),
                "--report",
                report.to_str().expect("utf-8"),
            ])
            .env_remove("PGDRILL_BACKUP_KEY")
            .env_remove("PGDRILL_SOURCE_URL")
            .output()
            .expect("pgdrill");
            let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
            let case = format!("{name}.{field}");
            // The printing step ran (the run was not refused before it), then the holder.
            assert!(matches!(out.status.code(), Some(0..=3)), "{case}: {stdout}{stderr}");
            let run_json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
            assert!(run_json.contains("MARKER"), "{case}: the printing step's output was recorded: {stdout}{stderr}");
            assert!(env.exists(), "{case}: the child's environment was written");
            for (what, t) in everything_written(&stdout, &stderr, &junit, &report, &env) {
                assert!(!t.contains(&secret), "{case}: the secret appears in {what}:\n{t}");
            }
            covered += 1;
        }
    }
    // The catalogue names secret fields (keys, the source's connection): none was missed
    // because the catalogue stopped saying so.
    assert!(covered >= 10, "only {covered} secret fields in the catalogue");
}
