//! The provider test suite, run against both providers (and native with its files in memory,
//! `data: memory`): a throwaway server starts, answers, and is gone afterwards whether the
//! run passed, failed, timed out, was interrupted by SIGINT, or pgdrill itself was killed
//! (then the next start reaps it) or panicked.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{pgdrill, run, text, written, Run};

const DOCKER_IMAGE: &str = "pgdrill/postgres-local:{major}";

#[derive(Debug)]
struct Record {
    provider: String,
    instance: String,
    port: u16,
    major: u32,
}

/// `native-memory`: the native provider with `data: memory`.
const NATIVE_IN_MEMORY: &str = "native-memory";

fn ready(provider: &str) -> bool {
    match provider {
        "docker" => common::docker_ready(&DOCKER_IMAGE.replace("{major}", "15")),
        _ => common::require(Path::new("/usr/lib/postgresql/15/bin/initdb").exists(), "PostgreSQL 15 server binaries"),
    }
}

/// A new temporary folder, when `provider` is ready (else a printed skip, or a failure in CI).
fn ready_in(provider: &str) -> Option<tempfile::TempDir> {
    ready(provider).then(|| tempfile::tempdir().expect("tmp"))
}

/// The ephemeral fixture on `provider` in `mode`, recording into `out`.
fn fixture(provider: &str, mode: &str, out: &Path) -> Run {
    let (provider, data) = match provider {
        NATIVE_IN_MEMORY => ("native", "memory"),
        p => (p, "disk"),
    };
    Run::new("fixtures/runbooks/ephemeral.yaml")
        .var("provider", provider)
        .var("data", data)
        .var("mode", mode)
        .var("out", out.display())
        .env("PGDRILL_DOCKER_IMAGE", DOCKER_IMAGE)
}

fn command(provider: &str, mode: &str, out: &Path) -> std::process::Command {
    fixture(provider, mode, out).command()
}

/// The fixture in mode `pass` on `provider` with an image that cannot be pulled
/// (`PGDRILL_DOCKER_IMAGE`), recording into `r` in a new temporary folder; `None` (a printed
/// skip, a failure in CI) without Docker and the local image; `vars` added.
fn with_an_unpullable_image(provider: &str, vars: &[&str]) -> Option<(tempfile::TempDir, std::process::Command)> {
    let t = ready_in("docker")?;
    let c = fixture(provider, "pass", &t.path().join("r"))
        .vars(vars)
        .env("PGDRILL_DOCKER_IMAGE", "pgdrill-test/no-such-image:{major}")
        .command();
    Some((t, c))
}

/// The line of a run's output that says ERROR; the run must have exited 3 (the environment's).
#[track_caller]
fn environment_error(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    stdout.lines().find(|l| l.contains("ERROR")).unwrap_or_default().to_string()
}

fn record(out: &Path) -> Record {
    let s = std::fs::read_to_string(out).unwrap_or_else(|e| panic!("record {}: {e}", out.display()));
    let l: Vec<&str> = s.lines().collect();
    Record {
        provider: l[0].to_string(),
        instance: l[1].to_string(),
        port: l[2].parse().unwrap_or(0),
        major: l[3].parse().unwrap_or(0),
    }
}

/// The fixture run once in `mode`, when `provider` is ready (else a printed skip, or a
/// failure in CI): its output and the server it recorded.
fn ready_run(provider: &str, mode: &str) -> Option<(Output, Record)> {
    if !ready(provider) {
        return None;
    }
    Some(run_mode(provider, mode))
}

fn run_mode(provider: &str, mode: &str) -> (Output, Record) {
    let t = tempfile::tempdir().expect("tmp");
    let out_file = t.path().join("record");
    let out = command(provider, mode, &out_file).output().expect("run");
    let rec = record(&out_file);
    (out, rec)
}

/// Nothing of the server is left: no container, no process, no files, no listener.
fn assert_gone(rec: &Record) {
    if rec.provider == "docker" {
        let inspect = std::process::Command::new("docker").args(["inspect", &rec.instance]).output().expect("docker");
        assert!(!inspect.status.success(), "container {} still exists", rec.instance);
    } else {
        assert!(!Path::new(&rec.instance).exists(), "{} still exists", rec.instance);
        assert!(!common::process_running(&rec.instance), "a postgres process for {} is still running", rec.instance);
    }
    assert!(std::net::TcpStream::connect(("127.0.0.1", rec.port)).is_err(), "port {} still answers", rec.port);
}

fn passes_and_leaves_nothing(provider: &str) {
    let Some((out, rec)) = ready_run(provider, "pass") else { return };
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(rec.provider, provider.trim_end_matches("-memory"));
    assert_eq!(rec.major, 15);
    // Its files where `data` put them: in memory, or in the temp folder.
    if rec.provider == "native" {
        let in_memory = rec.instance.starts_with("/dev/shm/pgdrill-native-");
        assert_eq!(in_memory, provider == NATIVE_IN_MEMORY, "{}: {}", rec.instance, text(&out.stdout));
    }
    if provider == NATIVE_IN_MEMORY {
        assert!(text(&out.stdout).contains("data memory: in memory (/dev/shm)"), "{}", text(&out.stdout));
    }
    assert_gone(&rec);
}

fn failure_leaves_nothing(provider: &str) {
    let Some((out, rec)) = ready_run(provider, "fail") else { return };
    assert_eq!(out.status.code(), Some(1));
    assert_gone(&rec);
}

fn timeout_leaves_nothing(provider: &str) {
    let Some((out, rec)) = ready_run(provider, "timeout") else { return };
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("timed out after 1s"));
    assert_gone(&rec);
}

fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(path).map(|s| s.lines().count() < 4).unwrap_or(true) {
        assert!(Instant::now() < deadline, "the server never came up");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The fixture started in `sleep` mode once `provider` is ready (else a printed skip, or a
/// failure in CI), returned once its server is up: the folder of its record, the running
/// pgdrill and the server it recorded.
fn sleeping(provider: &str) -> Option<(tempfile::TempDir, std::process::Child, Record)> {
    let t = ready_in(provider)?;
    let out_file = t.path().join("record");
    let child = command(provider, "sleep", &out_file).stdout(Stdio::null()).spawn().expect("spawn");
    wait_for(&out_file);
    let rec = record(&out_file);
    Some((t, child, rec))
}

fn sigint_leaves_nothing(provider: &str) {
    let Some((_t, mut child, rec)) = sleeping(provider) else { return };
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert_gone(&rec);
}

/// pgdrill killed outright: native servers die with their parent; docker containers are
/// removed by the next start, which reaps everything whose owner is gone.
fn crash_is_cleaned_up(provider: &str) {
    let Some((_t, mut child, rec)) = sleeping(provider) else { return };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
        .expect("kill");
    let _ = child.wait();
    if rec.provider == "native" {
        // Its dynamic shared memory is in its own folder, which the reaper removes: a killed
        // server's segments were left in /dev/shm/PostgreSQL.* for good before.
        let segments: Vec<_> = common::walk(Path::new(&rec.instance))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("mmap.")))
            .collect();
        assert!(!segments.is_empty(), "no dynamic shared memory segment under {}", rec.instance);
    }
    if provider == "native" {
        let deadline = Instant::now() + Duration::from_secs(10);
        while common::process_running(&rec.instance) {
            assert!(Instant::now() < deadline, "the postmaster outlived its parent");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // The next start reaps what is left (the directory; the container).
    let (out, rec2) = run_mode(provider, "pass");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_gone(&rec);
    assert_gone(&rec2);
}

fn panic_leaves_nothing(provider: &str) {
    if !ready(provider) {
        return;
    }
    let instance = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = instance.clone();
    let p = provider.to_string();
    let joined = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            // SAFETY of env: this test binary sets the variable before any server starts.
            let opts = pgdrill::testkit::pg::ephemeral::Options {
                provider: p.trim_end_matches("-memory").parse().expect("provider"),
                parent: (p == NATIVE_IN_MEMORY).then(|| "/dev/shm".into()),
                major: Some(15),
                image: Some(DOCKER_IMAGE.replace("{major}", "15")),
                ..Default::default()
            };
            let server = pgdrill::testkit::pg::ephemeral::Ephemeral::start(opts).await.expect("server starts");
            if let Ok(mut s) = seen.lock() {
                *s = server.instance.clone();
            }
            panic!("deliberate panic while the server {} runs", server.port);
        })
    })
    .join();
    assert!(joined.is_err(), "the thread panicked");
    let instance = instance.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(!instance.is_empty());
    let rec = Record { provider: provider.to_string(), instance, port: 1, major: 15 };
    assert_gone(&rec);
}

macro_rules! provider_suite {
    ($name:ident, $provider:literal) => {
        provider_suite!(@tests $name, $provider, passes_and_leaves_nothing, failure_leaves_nothing,
            timeout_leaves_nothing, sigint_leaves_nothing, crash_is_cleaned_up, panic_leaves_nothing);
    };
    (@tests $name:ident, $provider:literal, $($test:ident),*) => {
        mod $name {
            $(
                #[test]
                fn $test() {
                    super::$test($provider);
                }
            )*
        }
    };
}

provider_suite!(docker, "docker");
provider_suite!(native, "native");
provider_suite!(native_in_memory, "native-memory");

#[test]
fn docker_provider_without_an_engine_fails_with_exit_3_and_one_line() {
    let t = tempfile::tempdir().expect("tmp");
    let out = command("docker", "pass", &t.path().join("r"))
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .expect("run");
    let line = environment_error(&out);
    assert!(line.contains("provider docker: no Docker engine configured: Socket not found"), "{line}");
    let stdout = text(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains("Socket not found")).count(),
        2,
        "one line in the step, one in the summary"
    );
}

#[test]
fn auto_falls_back_to_native_and_says_why() {
    let Some(t) = ready_in("native") else { return };
    let out_file = t.path().join("r");
    let report = t.path().join("rep");
    let out = command("auto", "pass", &out_file)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["--report", report.to_str().unwrap_or_default()])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(record(&out_file).provider, "native");
    let json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    assert!(json.contains("native: auto, no Docker engine configured"), "{json}");
    assert!(!json.contains(&format!(":{}@", "postgres")), "no password-bearing URL in clear");
}

#[test]
fn a_major_the_provider_cannot_supply_says_what_is_available() {
    let Some(t) = ready_in("native") else { return };
    let out = fixture("native", "pass", &t.path().join("r")).var("version", 11).raw();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("PostgreSQL 11 server binaries not found; available: 15"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_bin_dir_without_initdb_is_invalid_input() {
    let t = tempfile::tempdir().expect("tmp");
    let rb = written(t.path().join("rb.yaml"), "name: bad-bin-dir\nsteps:\n  - id: db\n    uses: postgres.ephemeral\n    with: { provider: native, bin_dir: /usr/bin }\n");
    let out = run(&["run", rb.to_str().unwrap_or_default()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("bin_dir /usr/bin has no initdb and postgres"), "{}", text(&out.stdout));
}

/// Containers a finished pgdrill process (by pid) still owns.
fn containers_owned_by(pid: u32) -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    let out = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label=pgdrill.owner={host}:{pid}")])
        .output()
        .expect("docker ps");
    text(&out.stdout).trim().to_string()
}

fn image_present(image: &str) -> bool {
    std::process::Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success())
}

/// The README's main job on a machine where Docker runs but no registry answers: it used to
/// pick Docker, fail to pull postgres:15 and exit 3. Now it uses the local image setup.sh
/// builds (or the local binaries), says so, and leaves nothing behind.
#[test]
fn quickstart_works_without_an_image_registry() {
    if !common::docker_ready(&DOCKER_IMAGE.replace("{major}", "15")) {
        return;
    }
    let official_was_here = image_present("postgres:15");
    let t = tempfile::tempdir().expect("tmp");
    let report = t.path().join("rep");
    let child = pgdrill(&["run", "quickstart", "--report", report.to_str().unwrap_or_default()])
        .env_remove("PGDRILL_DOCKER_IMAGE")
        .env_remove("PGDRILL_TEST_IMAGE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    if !official_was_here && !image_present("postgres:15") {
        // The official image could not be had, so the local one served, and the log says why.
        assert!(
            stdout.contains("postgres:15 cannot be pulled")
                && stdout.contains("using the local image pgdrill/postgres-local:15"),
            "{stdout}"
        );
        let json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
        assert!(json.contains("\"image\": \"pgdrill/postgres-local:15\""), "{json}");
    }
    assert_eq!(containers_owned_by(pid), "", "containers left behind");
}

/// The README's main job on a machine where no Docker engine answers (here: DOCKER_HOST
/// names a socket that does not exist, so the tests beside it keep their Docker): the
/// throwaway servers are the local binaries, and each server's line says why.
#[test]
fn quickstart_works_without_a_docker_engine_on_native_binaries() {
    let Some(t) = ready_in("native") else { return };
    let report = t.path().join("rep");
    let out = pgdrill(&["run", "quickstart", "--report", report.to_str().unwrap_or_default()])
        .env_remove("PGDRILL_DOCKER_IMAGE")
        .env_remove("PGDRILL_TEST_IMAGE")
        .env("DOCKER_HOST", format!("unix://{}/no-docker.sock", t.path().display()))
        .output()
        .expect("run");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    let servers: Vec<&str> =
        stdout.lines().filter(|l| l.contains("PostgreSQL 15") && l.contains(" on 127.0.0.1:")).collect();
    assert_eq!(servers.len(), 2, "source and scratch: {stdout}");
    assert!(servers.iter().all(|l| l.trim_start().starts_with("native (native: auto")), "{servers:?}");
    let json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    assert!(!json.contains("\"provider\": \"docker\""), "{json}");
}

/// An image named explicitly that cannot be pulled, with provider docker: exit 3, one line
/// naming the remedies, no container.
#[test]
fn docker_with_an_unpullable_image_fails_with_exit_3_naming_the_remedy() {
    let Some((_t, mut c)) = with_an_unpullable_image("docker", &[]) else { return };
    let child = c.stdout(Stdio::piped()).spawn().expect("spawn");
    let pid = child.id();
    let line = environment_error(&child.wait_with_output().expect("wait"));
    assert!(line.contains("provider docker: image pgdrill-test/no-such-image:15 cannot be pulled"), "{line}");
    assert!(line.contains("bash ci/setup.sh"), "{line}");
    assert!(line.contains("--var provider=native"), "{line}");
    assert!(line.contains("PGDRILL_DOCKER_IMAGE"), "{line}");
    assert_eq!(containers_owned_by(pid), "", "containers left behind");
}

/// auto with an image that cannot be had falls back to the local binaries and says why.
#[test]
fn auto_with_an_unpullable_image_falls_back_to_native_and_says_why() {
    let Some((t, mut c)) = with_an_unpullable_image("auto", &[]) else { return };
    if !ready("native") {
        return;
    }
    let out_file = t.path().join("r");
    let out = c.output().expect("run");
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let rec = record(&out_file);
    assert_eq!(rec.provider, "native");
    assert!(stdout.contains("native: auto, Docker image pgdrill-test/no-such-image:15 cannot be pulled"), "{stdout}");
    assert_gone(&rec);
}

/// auto where neither Docker nor the binaries can serve: exit 3, one line with both reasons
/// and the remedies.
#[test]
fn auto_with_nothing_to_serve_names_the_remedies() {
    let Some((_t, mut c)) = with_an_unpullable_image("auto", &["version=11"]) else { return };
    let line = environment_error(&c.output().expect("run"));
    assert!(line.contains("no throwaway PostgreSQL 11 server"), "{line}");
    assert!(line.contains("pgdrill-test/no-such-image:11 cannot be pulled"), "{line}");
    assert!(line.contains("install the PostgreSQL 11 server binaries"), "{line}");
    assert!(line.contains("PGDRILL_DOCKER_IMAGE"), "{line}");
}

/// The first native server keeps its initdb output; the next is a copy of it with a password
/// of its own (the template's no longer opens it); a damaged template is replaced by the
/// output of the initdb that then serves the start.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_from_the_initdb_template_has_its_own_password_and_a_damaged_template_is_replaced() {
    use pgdrill::testkit::pg::native::{NativeOptions, NativeServer};
    let Some(tmp) = ready_in("native") else { return };
    let cache = tmp.path().join("cache");
    // nextest runs each test in a process of its own: this reaches only this test's servers.
    std::env::set_var("PGDRILL_INITDB_CACHE", &cache);
    let opts = || NativeOptions { major: Some(15), ..Default::default() };
    let templates = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&cache).map(|rd| rd.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };

    let first = NativeServer::start(opts()).await.expect("first server");
    let kept = templates();
    assert_eq!(kept.len(), 1, "one template: {kept:?}");
    let kept_password = std::fs::read_to_string(kept[0].join("password")).expect("password");
    assert_eq!(kept_password.trim(), first.password, "the template is the first server's initdb output");
    first.stop();

    let second = NativeServer::start(opts()).await.expect("second server");
    assert_ne!(second.password, kept_password.trim(), "a password of its own");
    let c = pgdrill::testkit::pg::connect(&second.url()).await.expect("its own password opens it");
    let one: i32 = c.query_one("select 1", &[]).await.expect("query").get(0);
    assert_eq!(one, 1);
    let old = second.url().replace(&second.password, kept_password.trim());
    let refused = pgdrill::testkit::pg::connect(&old).await.expect_err("the template's password is refused");
    assert!(format!("{refused}").contains("password"), "{refused}");
    second.stop();

    // Damaged: pg_control overwritten. The server does not start from it; it is removed and
    // initdb serves this start.
    std::fs::write(kept[0].join("data/global/pg_control"), vec![0u8; 8192]).expect("damage");
    let third = NativeServer::start(opts()).await.expect("third server, by initdb");
    let c = pgdrill::testkit::pg::connect(&third.url()).await.expect("connect");
    let one: i32 = c.query_one("select 1", &[]).await.expect("query").get(0);
    assert_eq!(one, 1);
    let now = templates();
    assert_eq!(now.len(), 1, "the damaged template was replaced, and nothing else is left: {now:?}");
    let replaced = std::fs::read_to_string(now[0].join("password")).expect("password");
    assert_eq!(replaced.trim(), third.password, "kept from this start's initdb");
    third.stop();
}
