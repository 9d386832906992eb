//! The pgdrill container image (image/Dockerfile, built by ci/image.sh): it builds from the
//! local Debian packages, runs as a non-root user, and its pgdrill runs the quickstart drill
//! inside a container with a read-only root filesystem, as a Kubernetes pod would.

mod common;

use common::*;
use std::path::PathBuf;

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

/// `ci/package.sh` builds a .deb that installs with apt on a Debian container that has only
/// Debian's own packages (no registry, no repository checkout), and the installed pgdrill
/// runs the quickstart as a non-root user on the local PostgreSQL binaries, with its manual
/// pages and completions where man and the shells look.
#[test]
fn the_debian_package_installs_with_apt_and_runs_the_quickstart_natively() {
    if !require(docker_ok(), "Docker with the local base image pgdrill/debian-postgresql:15 (bash ci/setup.sh)") {
        return;
    }
    let dist = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new("bash")
        .args(["ci/package.sh"])
        .arg(dist.path())
        .current_dir(root())
        .env("PGDRILL_BIN", bin())
        .output()
        .expect("ci/package.sh");
    assert!(out.status.success(), "package build: {}{}", text(&out.stdout), text(&out.stderr));
    let deb = PathBuf::from(text(&out.stdout).trim());
    assert!(deb.exists(), "ci/package.sh printed {deb:?}, which does not exist");
    let info = std::process::Command::new("dpkg-deb").arg("--field").arg(&deb).output().expect("dpkg-deb");
    let info = text(&info.stdout);
    assert!(info.contains("Package: pgdrill"), "{info}");
    assert!(info.contains("postgresql-client-15"), "the package does not depend on a PostgreSQL client: {info}");
    assert!(info.contains("libssl3"), "the package does not declare the shared libraries it links: {info}");
    assert!(info.contains("Recommends: docker.io"), "{info}");
    let listing = std::process::Command::new("dpkg-deb").arg("--contents").arg(&deb).output().expect("dpkg-deb");
    let listing = text(&listing.stdout);
    // One manual page per visible subcommand, read from the binary's own help.
    let help = text(&run(&["--help"]).stdout);
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 5, "could not read the subcommands from --help: {help}");
    for c in &commands {
        let page = format!("./usr/share/man/man1/pgdrill-{c}.1.gz");
        assert!(listing.contains(&page), "no manual page for `pgdrill {c}` ({page}) in:\n{listing}");
    }
    for path in [
        "./usr/bin/pgdrill",
        "./usr/share/man/man1/pgdrill.1.gz",
        "./usr/share/bash-completion/completions/pgdrill",
        "./usr/share/zsh/vendor-completions/_pgdrill",
        "./usr/share/fish/vendor_completions.d/pgdrill.fish",
        "./usr/share/doc/pgdrill/copyright",
        "./usr/share/doc/pgdrill/examples/runbooks/verify.yaml",
        "./usr/share/pgdrill/alerts/pgdrill.rules.yml",
        "./usr/share/doc/pgdrill/examples/systemd/pgdrill-nightly.timer",
    ] {
        assert!(listing.contains(path), "{path} is not in the package:\n{listing}");
    }
    let name = format!("pgdrill-test-package-{}", std::process::id());
    let script = "set -e
        apt-get install -y -q /pkg/$(basename \"$DEB\") >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; exit 9; }
        useradd --create-home drillop
        su drillop -c 'pgdrill run quickstart --quiet'
        bash -c '. /usr/share/bash-completion/completions/pgdrill && complete -p pgdrill'
        zcat /usr/share/man/man1/pgdrill-run.1.gz | grep -q -- junit && echo man-ok
        apt-get remove -y -q pgdrill >/dev/null 2>&1
        test ! -e /usr/bin/pgdrill && echo removed";
    let out = std::process::Command::new("docker")
        .args(["run", "--rm", "--name", &name, "-e"])
        .arg(format!("DEB={}", deb.display()))
        .arg("-v")
        .arg(format!("{}:/pkg:ro", dist.path().display()))
        .args(["pgdrill/debian-postgresql:15", "bash", "-c", script])
        .output()
        .expect("docker run");
    let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "in the container: {stdout}{}", text(&out.stderr));
    assert!(stdout.contains("runbook quickstart passed"), "{stdout}");
    assert!(stdout.contains("native"), "the installed pgdrill did not run its server natively: {stdout}");
    assert!(stdout.contains("-F _pgdrill pgdrill"), "the bash completion did not load: {stdout}");
    assert!(stdout.contains("man-ok"), "pgdrill-run(1) does not document --junit: {stdout}");
    assert!(stdout.contains("removed"), "apt-get remove left /usr/bin/pgdrill: {stdout}");
}
