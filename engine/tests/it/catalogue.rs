//! The catalogue holds what steps really emit: every shipped drill and a runbook covering
//! the rest run with PGDRILL_RECORD_OUTPUTS, and each kind's emitted output names are held
//! against the outputs `pgdrill steps --json` documents, both ways.

use std::collections::{BTreeMap, BTreeSet};

use crate::common::*;

/// Kinds no runbook here runs, each with the reason. A new kind must be run or listed.
const NOT_RUN: &[(&str, &str)] = &[
    // backup.base and wal.check are run by the pitr-drill (it archives through `pgdrill wal
    // push`); wal.prune needs base backups to keep and delete: wal_archive.rs runs it.
    ("wal.prune", "run by wal_archive.rs"),
    (
        "database.restore_snapshot",
        "runs only as the rollback of a failed restore; restore.rs's rollback tests cover it",
    ),
    (
        "physical.verify",
        "needs pgBackRest or barman-cloud and a server archiving into them; physical_tools.rs runs it and holds its outputs against the catalogue",
    ),
];

#[test]
fn every_step_emits_exactly_its_documented_outputs() {
    let Some(_) = std::process::Command::new("/usr/lib/postgresql/15/bin/initdb").arg("--version").output().ok() else {
        require(false, "PostgreSQL 15 server binaries");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let record = dir.path().join("emitted.jsonl");
    // A real HTTP server for http.check.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let mut http = std::process::Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    let url = format!("http://127.0.0.1:{port}/");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut failed = Vec::new();
    let http_url = format!("http_url={url}");
    let runs: [(&str, &[&str]); 5] = [
        ("quickstart", &["provider=native"]),
        ("disaster-recovery", &["provider=native", "scale=2"]),
        ("ab", &["provider=native"]),
        ("pitr-drill", &["version=15"]),
        ("fixtures/runbooks/catalogue.yaml", &[http_url.as_str()]),
    ];
    for (runbook, vars) in runs {
        let out = Run::new(runbook).arg("--quiet").arg("--yes").vars(vars).env("PGDRILL_RECORD_OUTPUTS", &record).raw();
        if !out.status.success() {
            failed.push(format!("{runbook}: {}{}", text(&out.stdout), text(&out.stderr)));
        }
    }
    let _ = http.kill();
    let _ = http.wait();
    assert!(failed.is_empty(), "runs failed:\n{}", failed.join("\n"));

    let mut emitted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in std::fs::read_to_string(&record).expect("record").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json line");
        let names = v["outputs"].as_array().expect("outputs").iter().filter_map(|n| n.as_str().map(str::to_string));
        emitted.entry(v["kind"].as_str().expect("kind").to_string()).or_default().extend(names);
    }
    let catalogue: serde_json::Value = serde_json::from_slice(&run(&["steps", "--json"]).stdout).expect("steps --json");
    let mut problems = Vec::new();
    let mut not_run = Vec::new();
    for k in catalogue.as_array().expect("list") {
        let name = k["name"].as_str().expect("name");
        let documented: BTreeSet<String> = k["outputs"]
            .as_array()
            .expect("outputs")
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_string))
            .collect();
        match emitted.get(name) {
            None if name == "runbook" => {} // its output is the nested suite, recorded by the executor
            None => not_run.push(name.to_string()),
            Some(e) => {
                let undocumented: Vec<_> = e.difference(&documented).collect();
                let never: Vec<_> = documented.difference(e).collect();
                if !undocumented.is_empty() || !never.is_empty() {
                    problems.push(format!(
                        "{name}: emits undocumented {undocumented:?}; documents but never emits {never:?}"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "the catalogue and the steps disagree:\n{}", problems.join("\n"));
    let expected: Vec<&str> = NOT_RUN.iter().map(|(k, _)| *k).collect();
    assert_eq!(not_run, expected, "kinds no runbook here ran (run them, or list them in NOT_RUN with why)");
}
