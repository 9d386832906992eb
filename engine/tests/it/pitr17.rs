//! The shipped `pitr-drill` on PostgreSQL 17, which this machine has only as a Docker image
//! (`pgdrill/postgres-local:17`, built by ci/setup.sh): the source runs in the image,
//! archiving through the host's pgdrill binary (`wal push`, mounted read-only), and the
//! recovery runs in a throwaway of the same image, fetching through `wal fetch`.

use std::process::Command;

use crate::common::*;

/// Names of the drill's source containers (`pgdrill-source-PID-...`) Docker has, running or not.
fn source_containers() -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", "name=pgdrill-source-", "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// Regression: `pitr.source` ran local server binaries only, so the shipped drill could not
/// run on PostgreSQL 17 here (15 only). Now a major without local binaries runs in its image:
/// the drill passes end to end on 17 (source, base backup by the image's pg_basebackup, the
/// archive proven by `wal.check`, recovery judged against the source at the mark), reports
/// RPO and RTO with their targets in JUnit and the compliance report, and leaves no
/// container behind.
#[test]
fn the_pitr_drill_on_postgresql_17_runs_its_source_in_the_image_and_reports_rpo_and_rto() {
    if !docker_ready("pgdrill/postgres-local:17") {
        return;
    }
    let before = source_containers();
    let dir = tempfile::tempdir().expect("tmp");
    let (report, junit) = (dir.path().join("report"), dir.path().join("junit.xml"));
    let ran = Run::new("pitr-drill")
        .var("version", 17)
        // No image named: backup.base takes pg_basebackup 17 from the image `pitr.source`
        // runs in (it once looked for `postgres:17` only, and the drill needed this set).
        .env_remove("PGDRILL_DOCKER_IMAGE")
        .junit(&junit)
        .report(&report)
        .expect(0);
    let j = ran.junit();
    for case in
        ["source", "base_backup", "wal_check", "recover", "table_back", "rows_back", "nothing_after", "rpo", "rto"]
    {
        assert_eq!(j.status(case), "passed", "{case}: {}", ran.all());
    }
    let run = ran.run_json();
    let src = &run.step("source").outputs;
    assert_eq!(src["major"], 17, "{src}");
    assert!(src["archive_command"].as_str().is_some_and(|c| c.contains(" wal push --config ")), "{src}");
    let said = run.step("source").log.join("\n");
    assert!(said.contains("(in Docker, image pgdrill/postgres-local:17)"), "{said}");
    let official = std::process::Command::new("docker").args(["image", "inspect", "postgres:17"]).output();
    if official.is_ok_and(|o| !o.status.success()) {
        let base = run.step("base_backup").log.join("\n");
        assert!(base.contains("(from the image pgdrill/postgres-local:17)"), "{base}");
    }
    let wal = &run.step("wal_check").outputs;
    assert_eq!((wal["gaps"].as_u64(), wal["damaged"].as_u64()), (Some(0), Some(0)), "{wal}");
    let rec = &run.step("recover").outputs;
    assert!(rec["server_version"].as_str().is_some_and(|v| v.starts_with("17.")), "{rec}");
    assert_eq!(rec["ground_truth"], "source at the target", "{rec}");
    assert!(rec["stop_line"].as_str().is_some_and(|l| l.starts_with("recovery stopping before commit")), "{rec}");
    assert!(rec["tool"].as_str().is_some_and(|t| t.starts_with("pgdrill")), "{rec}");
    assert!(rec["segments_restored"].as_u64().is_some_and(|n| n >= 1), "segments through wal fetch: {rec}");
    let incident: f64 = run.step("incident").outputs["value"].as_str().and_then(|v| v.parse().ok()).expect("incident");
    assert!(
        rec["achieved_epoch"].as_f64().is_some_and(|a| a < incident),
        "the data is from before the incident: {rec}"
    );
    let rpo_s = run.step("rpo").outputs["rpo_s"].as_f64().expect("rpo_s");
    assert!(rpo_s > 0.0, "RPO {rpo_s}");
    let c = read_json(&report.join("report.json"));
    let objective = |name: &str| {
        c["objectives"].as_array().and_then(|o| o.iter().find(|o| o["name"] == name)).cloned().expect("objective")
    };
    assert_eq!(objective("RPO")["target_s"].as_f64(), Some(5.0), "{c}");
    assert_eq!(objective("RPO")["measured_s"].as_f64(), Some(rpo_s), "{c}");
    assert_eq!(objective("RTO")["target_s"].as_f64(), Some(600.0), "{c}");
    assert!(objective("RTO")["measured_s"].as_f64().is_some_and(|s| s > 0.0), "{c}");
    let left: Vec<String> = source_containers().into_iter().filter(|n| !before.contains(n)).collect();
    assert!(left.is_empty(), "the drill left its source container behind: {left:?}");
}
