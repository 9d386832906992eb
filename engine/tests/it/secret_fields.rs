//! Every secret-bearing field of the step contract, enumerated from the catalogue itself
//! (`pgdrill steps --json`, fields typed `secret`), proven absent from every output and from
//! a child's environment (issue 36, case 1). A field added later is covered without a test
//! change.

use crate::common::*;

/// Before: no test held every secret field at once; the register of a run's secrets was
/// proven field by field where a test happened to look. Here each field typed `secret` in
/// the catalogue is given a value a step prints before the field's own step runs: the value
/// is masked in the terminal, JUnit, run.json and the reports, and no child gets it.
#[test]
fn every_secret_field_of_the_catalogue_is_masked_from_the_first_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut covered = 0;
    for f in catalogue_fields_typed("secret") {
        let (name, field) = (f.kind.as_str(), f.name.as_str());
        let secret = f.unique("Sx", "7f3a9c1e5b2d4680");
        let mut with = vec![format!("{field}: \"{secret}\"")];
        with.extend(required_others(&f.fields, field, |o, ty| {
            if ty == "secret" {
                format!("\"other-{secret}\"")
            } else {
                dummy(o, ty)
            }
        }));
        // What a kind's own check needs beside its required fields (one of several).
        if name == "pitr.source" {
            with.push(format!("archive: \"{}\"", dir.path().join("wal-archive").display()));
        }
        let leaked = leak_then(dir.path(), "secret-fields", name, field, &secret, &with, &[]);
        let (stdout, stderr) = (&leaked.ran.stdout, &leaked.ran.stderr);
        let case = format!("{name}.{field}");
        // The printing step ran (the run was not refused before it), then the holder.
        assert!(matches!(leaked.ran.code, Some(0..=3)), "{case}: {stdout}{stderr}");
        let run_json = std::fs::read_to_string(leaked.report.join("run.json")).unwrap_or_default();
        assert!(run_json.contains("MARKER"), "{case}: the printing step's output was recorded: {stdout}{stderr}");
        assert!(leaked.env.exists(), "{case}: the child's environment was written");
        for (what, t) in leaked.everything_written() {
            assert!(!t.contains(&secret), "{case}: the secret appears in {what}:\n{t}");
        }
        covered += 1;
    }
    // The catalogue names secret fields (keys, the source's connection): none was missed
    // because the catalogue stopped saying so.
    assert!(covered >= 10, "only {covered} secret fields in the catalogue");
}
