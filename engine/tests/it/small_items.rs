//! The smaller items of issue 40 (item 7), each against the real binary: templates in
//! `assert:` are accepted by `validate` as the README says and judged once rendered;
//! `pgdrill decrypt ... | head` ends quietly.

use std::process::Command;

use crate::common::{self, Run};

/// Regression: the README said `assert:` takes templates and `validate` refused them.
#[test]
fn a_templated_assert_passes_validate_and_is_judged_once_rendered() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("assert.yaml");
    std::fs::write(
        &file,
        "name: templated-assert\nvars: { min: 3 }\nsteps:\n  - id: count\n    uses: shell.run\n    with: { script: echo 5 }\n    assert: { stdout: \">= {{ vars.min }}\" }\n",
    )
    .expect("runbook");
    Run::cli(["validate"]).arg(&file).expect(0);
    Run::new(&file).expect(0);
    let ran = Run::new(&file).var("min", 9).expect(1);
    assert!(ran.all().contains("assert `stdout` >= 9 failed: the output is `5`"), "{}", ran.all());
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    assert!(readme.contains("`is not null`; templates allowed"), "the README no longer says so");
}

/// Regression: `pgdrill decrypt FILE | head` printed "Broken pipe" and exited 1.
#[test]
fn decrypt_into_a_pipe_closed_early_ends_quietly() {
    if !common::require(common::on_path("bash") && common::on_path("head"), "bash and head") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let key = "decrypt-pipe test passphrase";
    // Several MiB of plain text, far more than a pipe holds once `head` has gone.
    let plain: Vec<u8> = (0..400_000).flat_map(|i| format!("line {i} of the dump\n").into_bytes()).collect();
    let opts = pgdrill::archive::WriteOptions {
        codec: pgdrill::archive::Codec::Gzip,
        level: 1,
        threads: 1,
        key: Some(pgdrill::archive::KeySource::from_secret(key).derive_new().expect("key")),
    };
    let file = dir.path().join("x.dump.pgdrill");
    let out = std::fs::File::create(&file).expect("create");
    pgdrill::archive::write(plain.as_slice(), out, &opts).expect("write");
    let err = dir.path().join("stderr");
    let status = Command::new("bash")
        .arg("-c")
        .arg("\"$BIN\" decrypt \"$FILE\" 2>\"$ERR\" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}")
        .env("BIN", common::bin())
        .env("FILE", &file)
        .env("ERR", &err)
        .env("PGDRILL_BACKUP_KEY", key)
        .status()
        .expect("bash");
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(said, "", "nothing on stderr");
}

/// Regression: `storage.space` had no absolute threshold ("alert below 10 GB").
#[test]
fn storage_space_takes_an_absolute_min_free() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("space.yaml");
    std::fs::write(
        &file,
        "name: space\nvars: { min_free: 1kB }\nsteps:\n  - id: space\n    uses: storage.space\n    with: { storage: \".\", min_free: \"{{ vars.min_free }}\" }\n",
    )
    .expect("runbook");
    Run::new(&file).expect(0);
    // More than any disk of this machine has: the step fails, naming what is needed.
    let ran = Run::new(&file).var("min_free", "100000TB").expect(1);
    assert!(ran.all().contains("is needed"), "{}", ran.all());
    let ran = Run::new(&file).var("min_free", "10 furlongs").expect(2);
    assert!(ran.all().contains("unknown unit `furlongs`"), "{}", ran.all());
}
