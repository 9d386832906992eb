//! Every file in fixtures/invalid/ is a mistake a user can make; `pgdrill validate` must exit 2
//! and print exactly the diagnostic stored beside it (`NAME.expected`). Set
//! PGDRILL_BLESS=1 to rewrite the expected files after an intended change.

use crate::common::{root, run, text};

#[test]
fn each_invalid_fixture_prints_its_expected_diagnostic() {
    let dir = root().join("fixtures/invalid");
    let mut yamls: Vec<_> = std::fs::read_dir(&dir)
        .expect("fixtures/invalid exists")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    yamls.sort();
    assert!(yamls.len() >= 10, "at least 10 kinds of mistakes, found {}", yamls.len());
    let bless = std::env::var_os("PGDRILL_BLESS").is_some();
    let mut failures = Vec::new();
    for y in &yamls {
        let rel = format!("fixtures/invalid/{}", y.file_name().and_then(|n| n.to_str()).unwrap_or_default());
        let out = run(&["validate", &rel]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{rel}: exit code; stderr:\n{stderr}");
        assert!(stderr.contains(&format!("--> {rel}:")), "{rel}: diagnostic names file:line:col:\n{stderr}");
        let expected_path = y.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &stderr).expect("write expected");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != stderr {
            failures.push(format!("{rel}\n--- expected\n{expected}--- got\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "diagnostics differ:\n{}", failures.join("\n"));
}

#[test]
fn valid_runbooks_validate() {
    let out = run(&["validate", "fixtures/runbooks/rollback-order.yaml", "runbooks/smoke.yaml", "smoke"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().filter(|l| l.starts_with("ok: ")).count(), 3);
}

#[test]
fn a_missing_file_is_invalid_input() {
    let out = run(&["validate", "fixtures/runbooks/no-such-file.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no runbook file"), "{}", text(&out.stderr));
}
