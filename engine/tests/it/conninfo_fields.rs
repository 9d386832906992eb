//! Every connection-string field of the step contract (`pgdrill steps --json`, fields typed
//! `conninfo`), given a URL with a password: the password is masked everywhere from the
//! run's first step, and no child gets it (issue 36, case 1).

use crate::common::*;

/// Fields a kind's own check asks for beside its connection string, which no dummy of the
/// required fields gives.
fn extra(kind: &str) -> &'static [&'static str] {
    match kind {
        "sql.exec" => &["sql: select 1"],
        "storage.space" => &["database_size_multiple: 1"],
        "restore.journal" => &["database: app", "backup: /nonexistent/x"],
        _ => &[],
    }
}

/// Before: a connection string's password was known to the redactor only once the step
/// holding it rendered its fields, and the catalogue typed the field a plain `string`. A step
/// before it that printed the password (or a child that inherited it from an environment
/// variable) put it in clear on the terminal and in the child's environment. Now every
/// field the catalogue types `conninfo` has its password registered before the first step:
/// masked in the terminal, JUnit, run.json and the reports, filtered from a child's
/// environment; the URL around it stays readable in the catalogue's own words.
#[test]
fn a_password_in_a_connection_string_was_shown_by_a_step_that_ran_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut covered, mut refused) = (Vec::new(), Vec::new());
    for f in catalogue_fields_typed("conninfo") {
        let (name, field) = (f.kind.as_str(), f.name.as_str());
        let password = f.unique("Pw", "9d2e7b41c6a3f805");
        let mut with = vec![format!("{field}: \"postgres://nobody:{password}@127.0.0.1:1/nothing\"")];
        with.extend(required_others(&f.fields, field, dummy));
        with.extend(extra(name).iter().map(|e| e.to_string()));
        // The same password in the environment pgdrill was started with: a child must
        // not inherit it.
        let leaked =
            leak_then(dir.path(), "conninfo-fields", name, field, &password, &with, &[("APP_DB_PASSWORD", &password)]);
        let (stdout, stderr) = (&leaked.ran.stdout, &leaked.ran.stderr);
        let case = format!("{name}.{field}");
        if !leaked.report.join("run.json").exists() {
            // Refused before the first step (the kind's own check wants fields a dummy
            // cannot give): the diagnostic that quotes the field masks the password too.
            assert_eq!(leaked.ran.code, Some(2), "{case}: {stdout}{stderr}");
            for t in [stdout, stderr] {
                assert!(!t.contains(&password), "{case}: the password in the diagnostic:\n{t}");
            }
            refused.push(case);
            continue;
        }
        // The printing step ran (the run was not refused before it), then the holder.
        assert!(matches!(leaked.ran.code, Some(0..=3)), "{case}: {stdout}{stderr}");
        let run_json = std::fs::read_to_string(leaked.report.join("run.json")).unwrap_or_default();
        assert!(run_json.contains("MARKER ********"), "{case}: the printing step's output, masked: {run_json}");
        let child_env = std::fs::read_to_string(&leaked.env).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(!child_env.contains("APP_DB_PASSWORD="), "{case}: the child inherited the password's variable");
        for (what, t) in leaked.everything_written() {
            assert!(!t.contains(&password), "{case}: the password appears in {what}:\n{t}");
        }
        covered.push(case);
    }
    // The connection strings the contract knows (servers to connect to, restore targets):
    // none was missed because the catalogue stopped typing it so.
    for must in ["backup.create.database_url", "backup.restore.into", "verify.fingerprint.url", "pg.ping.url"] {
        assert!(covered.iter().any(|c| c == must), "{must} is not typed conninfo: {covered:?}");
    }
    assert!(
        covered.len() >= 20,
        "only {} connection-string fields ran: {covered:?}; refused {refused:?}",
        covered.len()
    );
    eprintln!(
        "ran {} connection-string fields, {} refused before the first step: {refused:?}",
        covered.len(),
        refused.len()
    );
}

/// The catalogue's text says which fields are connection strings, and the JSON keeps every
/// key it had (`name`, `type`, `required`, `doc`) for each field.
#[test]
fn connection_string_fields_are_typed_conninfo_in_the_catalogue() {
    let out = run(&["steps", "sql.exec", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let kinds: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let url = kinds[0]["with"].as_array().and_then(|w| w.iter().find(|f| f["name"] == "url")).expect("url field");
    for key in ["name", "type", "required", "doc"] {
        assert!(url.get(key).is_some(), "{key} is gone: {url}");
    }
    assert_eq!(url["type"], "conninfo", "{url}");
    let plain = run(&["steps", "sql.exec"]);
    assert!(text(&plain.stdout).contains("conninfo"), "{}", text(&plain.stdout));
}
