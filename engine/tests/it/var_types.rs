//! Variables that say what they take (issue 45 case 10): `type:` and `values:` under `vars:`,
//! refused at the declaration before any step runs, and shown by `pgdrill plan`.

use crate::common::{run, text, Run};

/// Regression: `disaster=flood` and `create_roles=yes` could not be refused by the runbook
/// itself; the first was found by the step that read it, the second acted as `ask`.
#[test]
fn a_value_outside_a_variables_fixed_set_was_found_only_by_the_step_that_read_it() {
    let out = Run::new("disaster-recovery").var("disaster", "flood").arg("--quiet").raw();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--var disaster: `flood` is not one of drop_database, destroy_server"), "{stderr}");
    assert!(stderr.contains("drills/disaster-recovery.yaml:20:"), "at the declaration: {stderr}");
    assert!(text(&out.stdout).trim().is_empty(), "no step ran: {}", text(&out.stdout));

    let out = Run::new("restore")
        .var("database_url", "postgres://127.0.0.1:1/postgres")
        .var("storage", "/nonexistent")
        .var("database", "app")
        .var("create_roles", "yes")
        .arg("--yes")
        .arg("--quiet")
        .raw();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--var create_roles: `yes` is not one of ask, true, false"), "{stderr}");
    assert!(stderr.contains("runbooks/restore.yaml:"), "{stderr}");

    // A value in the set is taken: the run gets past the variables (and stops later, at the
    // step that cannot reach the server, never at the variable).
    let out = Run::cli(["plan", "disaster-recovery"]).var("disaster", "destroy_server").raw();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn plan_shows_each_variables_type_and_allowed_values() {
    let out = run(&["plan", "disaster-recovery"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    for line in [
        "  disaster: \"drop_database\" (one of: drop_database, destroy_server)",
        "  provider: \"auto\" (one of: auto, docker, native)",
        "  scale: 10 (number)",
        "  keep_writing: \"2s\" (text)",
    ] {
        assert!(s.lines().any(|l| l == line), "`{line}` missing:\n{s}");
    }
    let out = Run::cli(["plan", "restore"])
        .var("database_url", "postgres://h/db")
        .var("storage", "/b")
        .var("database", "a")
        .raw();
    let s = text(&out.stdout);
    assert!(s.contains("  recover: \"\" (one of: \"\", rollback, forward, reopen)"), "{s}");
    assert!(s.contains("  no_owner: false (boolean)"), "{s}");
}
