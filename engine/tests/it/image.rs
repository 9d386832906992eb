//! The pgdrill container image (image/Dockerfile, built by ci/image.sh): it builds from the
//! local Debian packages, runs as a non-root user, and its pgdrill runs the quickstart drill
//! inside a container with a read-only root filesystem, as a Kubernetes pod would.

use crate::common::*;

fn docker_ok() -> bool {
    std::process::Command::new("docker")
        .args(["image", "inspect", "pgdrill/debian-postgresql:15"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_image_builds_runs_as_non_root_and_runs_the_quickstart_inside_a_container() {
    if !require(docker_ok(), "Docker with the local base image pgdrill/debian-postgresql:15 (bash ci/setup.sh)") {
        return;
    }
    // A tag of this test's own, so a concurrent build elsewhere never swaps it underneath.
    let tag = format!("pgdrill-test/image:{}", std::process::id());
    let out = std::process::Command::new("bash")
        .args(["ci/image.sh", &tag])
        .current_dir(root())
        .env("PGDRILL_BIN", bin())
        .output()
        .expect("ci/image.sh");
    assert!(out.status.success(), "image build: {}{}", text(&out.stdout), text(&out.stderr));
    let run = |args: &[&str]| {
        std::process::Command::new("docker")
            .args(["run", "--rm", "--read-only", "--tmpfs", "/tmp"])
            .args(args)
            .output()
            .expect("docker run")
    };
    let id = run(&["--entrypoint", "id", &tag, "-u"]);
    let quick = run(&[&tag, "run", "quickstart", "--quiet"]);
    let _ = std::process::Command::new("docker").args(["image", "rm", "-f", &tag]).output();
    assert_eq!(text(&id.stdout).trim(), "10001", "the image runs as root: {}", text(&id.stderr));
    let stdout = text(&quick.stdout);
    assert!(quick.status.success(), "quickstart in the image: {stdout}{}", text(&quick.stderr));
    assert!(stdout.contains("runbook quickstart passed"), "{stdout}");
    assert!(stdout.contains("native"), "the throwaway server did not run natively in the container: {stdout}");
}
