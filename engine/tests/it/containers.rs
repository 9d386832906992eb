//! Databases inside containers (`docker://CONTAINER/DATABASE?user=U`): a real container started
//! from the local PostgreSQL image with no published port, reached only through `docker exec`.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{docker_ready, test_image, text, Run};

const KEY: &str = "container-test-key-0123456789";

fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().expect("docker runs")
}

/// A PostgreSQL container of the test's own, removed on drop.
struct Container {
    name: String,
}

impl Container {
    /// Started (no published port) with database `app`; `None` when Docker is missing
    /// outside CI.
    fn start(tag: &str) -> Option<Container> {
        if !docker_ready(&test_image()) {
            return None;
        }
        let name = format!("pgdrill-test-ctr-{}-{tag}", std::process::id());
        let _ = docker(&["rm", "-f", "-v", &name]);
        let out = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "-e",
            "POSTGRES_PASSWORD=unused-in-container",
            "-e",
            "POSTGRES_DB=app",
            &test_image(),
        ]);
        assert!(out.status.success(), "docker run: {}", text(&out.stderr));
        let c = Container { name };
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let logs = docker(&["logs", &c.name]);
            let logs = format!("{}{}", text(&logs.stdout), text(&logs.stderr));
            if logs.contains("init process complete") && docker(&["exec", &c.name, "pg_isready", "-q"]).status.success()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the container did not become ready: {logs}");
            std::thread::sleep(Duration::from_millis(300));
        }
        Some(c)
    }

    fn url(&self, db: &str) -> String {
        format!("docker://{}/{db}?user=postgres", self.name)
    }

    fn psql(&self, sql: &str) -> String {
        let out =
            docker(&["exec", &self.name, "psql", "-U", "postgres", "-d", "app", "-v", "ON_ERROR_STOP=1", "-Atc", sql]);
        assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    }

    /// The PostgreSQL tools and relays pgdrill started in the container and that still run.
    fn pgdrill_processes(&self) -> Vec<String> {
        let out = docker(&["top", &self.name, "-eo", "pid,args"]);
        text(&out.stdout)
            .lines()
            .filter(|l| ["pg_dump", "pg_restore", "psql", "perl -e"].iter().any(|t| l.contains(t)))
            .map(str::to_string)
            .collect()
    }

    /// Waits until nothing pgdrill started runs in the container (or fails naming it).
    fn assert_nothing_left_running(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let left = self.pgdrill_processes();
            if left.is_empty() {
                return;
            }
            assert!(Instant::now() < deadline, "still running in the container: {left:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.name]);
    }
}

fn pgdrill(run: Run) -> Command {
    let mut c = run.key(KEY).command();
    c.stdin(Stdio::null());
    c
}

fn all(out: &Output) -> String {
    format!("{}{}", text(&out.stdout), text(&out.stderr))
}

/// The shipped restore of database `app` from `storage` into the server at `url`.
fn restore_args(url: &str, storage: &str) -> Run {
    Run::new("restore").var("database_url", url).var("storage", storage).var("database", "app").arg("--yes")
}

/// `pgdrill run backup` of the container's database `app` into a new folder, which must
/// succeed: the folder, its location, and what pgdrill did.
fn backup_app(c: &Container) -> (tempfile::TempDir, String, std::process::Output) {
    let dir = tempfile::tempdir().expect("tempdir");
    let st = dir.path().join("backups").display().to_string();
    let out = pgdrill(Run::new("backup").var("database_url", c.url("app")).var("storage", &st))
        .output()
        .expect("backup runs");
    assert_eq!(out.status.code(), Some(0), "backup: {}", all(&out));
    (dir, st, out)
}

#[test]
fn a_database_in_a_container_with_no_published_port_is_backed_up_verified_and_restored_through_docker() {
    let Some(c) = Container::start("roundtrip") else { return };
    assert_eq!(text(&docker(&["port", &c.name]).stdout).trim(), "", "the container publishes no port");
    c.psql("create table t as select g as id, md5(g::text) as v from generate_series(1, 1000) g; create table \"we'ird = 🐘\" (x int); insert into \"we'ird = 🐘\" values (1)");
    // Backup with the container's own pg_dump.
    let (_dir, st, out) = backup_app(&c);
    assert!(all(&out).contains(&format!("(in docker://{})", c.name)), "the container's pg_dump: {}", all(&out));
    c.assert_nothing_left_running(Duration::from_secs(10));

    // Verify by restoring into a throwaway server (its fingerprint matched the source's).
    let out = pgdrill(Run::verify_native(&st, "app")).output().expect("verify");
    assert_eq!(out.status.code(), Some(0), "verify: {}", all(&out));

    // An operator restore into the container brings the deleted rows back.
    c.psql("delete from t where id > 10; drop table \"we'ird = 🐘\"");
    let url = c.url("postgres");
    let out = pgdrill(restore_args(&url, &st)).output().expect("restore runs");
    assert_eq!(out.status.code(), Some(0), "restore: {}", all(&out));
    assert!(all(&out).contains("1 job"), "a container restore streams with one job: {}", all(&out));
    assert_eq!(c.psql("select count(*) from t"), "1000");
    assert_eq!(c.psql("select x from \"we'ird = 🐘\""), "1");
    c.assert_nothing_left_running(Duration::from_secs(10));
}

/// Two restores at once into one container: the second is refused. kill -9 of pgdrill in the middle of pg_restore inside the container: the exec'd processes
/// end with their streams (nothing keeps running inside), the next restore finds the journal,
/// and the rollback through the container puts the database back as it was.
#[test]
fn kill_9_during_a_container_restore_leaves_nothing_running_inside_and_is_found_and_rolled_back() {
    let Some(c) = Container::start("kill9") else { return };
    // An index whose build takes seconds keeps pg_restore busy long enough to be killed in it.
    c.psql(
        "create function slow(i int) returns int language plpgsql immutable as $$ begin perform pg_sleep(0.004); return i; end $$;
         create table t as select g as id from generate_series(1, 1500) g; create index t_slow on t (slow(id))",
    );
    let (dir, st, _) = backup_app(&c);
    c.psql("delete from t where id > 5");

    let url = c.url("postgres");
    let mut child =
        pgdrill(restore_args(&url, &st)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let journal = dir.path().join("backups/.safety/.journal");
    loop {
        let restoring = c.pgdrill_processes().iter().any(|p| p.contains("pg_restore") && !p.contains("--version"));
        if restoring && phase(&journal) == "restoring" {
            break;
        }
        assert!(Instant::now() < deadline, "pg_restore never started in the container");
        assert!(child.try_wait().expect("wait").is_none(), "the restore ended before pg_restore ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A second restore of the same container's database meanwhile is refused, naming the first.
    let out = pgdrill(restore_args(&url, &st)).output().expect("restore runs");
    assert_eq!(out.status.code(), Some(1), "a second restore at once: {}", all(&out));
    assert!(all(&out).contains(&format!("is being restored by pgdrill pid {}", child.id())), "{}", all(&out));
    assert!(all(&out).contains("Nothing was changed"), "{}", all(&out));
    child.kill().expect("kill -9");
    let _ = child.wait();
    // pg_restore ends when its statement is done and its input closed: seconds, not forever.
    c.assert_nothing_left_running(Duration::from_secs(30));

    // The next restore finds the journal and changes nothing until told which way to go.
    let out = pgdrill(restore_args(&url, &st)).output().expect("restore runs");
    assert_eq!(out.status.code(), Some(1), "the next restore: {}", all(&out));
    assert!(all(&out).contains("an unfinished restore of database `app`"), "{}", all(&out));
    assert!(all(&out).contains("stopped at phase `restoring`"), "{}", all(&out));
    // Rolled back through the container from the safety snapshot: the database as it was.
    let out = pgdrill(restore_args(&url, &st).var("recover", "rollback")).output().expect("restore runs");
    assert_eq!(out.status.code(), Some(0), "recover=rollback: {}", all(&out));
    assert_eq!(c.psql("select count(*) from t"), "5");
    // And an ordinary restore runs again.
    let out = pgdrill(restore_args(&url, &st)).output().expect("restore runs");
    assert_eq!(out.status.code(), Some(0), "the restore after the rollback: {}", all(&out));
    assert_eq!(c.psql("select count(*) from t"), "1500");
    assert_eq!(c.psql("select count(*) from pg_indexes where indexname = 't_slow'"), "1");
    c.assert_nothing_left_running(Duration::from_secs(10));
}

/// The phase in the one restore journal under `dir` ("" while there is none).
fn phase(dir: &std::path::Path) -> String {
    common::walk(dir)
        .iter()
        .map(|p| p.display().to_string())
        .filter(|p| p.ends_with(".json"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .find_map(|j| j["phase"].as_str().map(str::to_string))
        .unwrap_or_default()
}

#[test]
fn a_missing_or_stopped_container_or_one_without_perl_or_pg_dump_is_exit_3_with_one_line() {
    let Some(c) = Container::start("broken") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let st = dir.path().join("backups").display().to_string();
    let backup = |url: &str| -> (Option<i32>, String) {
        let out = pgdrill(Run::new("backup").var("database_url", url).var("storage", &st)).output().expect("runs");
        let last = text(&out.stdout).lines().last().unwrap_or_default().to_string();
        (out.status.code(), last)
    };
    let expect = |got: (Option<i32>, String), code: i32, says: &str| {
        assert_eq!(got.0, Some(code), "{}", got.1);
        assert!(got.1.contains(says), "expected `{says}` in: {}", got.1);
    };
    let missing = format!("pgdrill-test-ctr-{}-absent", std::process::id());
    expect(
        backup(&format!("docker://{missing}/app?user=postgres")),
        3,
        &format!("there is no container docker://{missing}"),
    );
    expect(backup("docker://-rm/app?user=postgres"), 2, "is not a container name");

    // No perl: pgdrill's own SQL connection cannot be relayed.
    assert!(docker(&["exec", &c.name, "mv", "/usr/bin/perl", "/usr/bin/perl.off"]).status.success());
    expect(backup(&c.url("app")), 3, "has no perl");
    assert!(docker(&["exec", &c.name, "mv", "/usr/bin/perl.off", "/usr/bin/perl"]).status.success());

    // No pg_dump on the container's PATH.
    assert!(docker(&["exec", &c.name, "mv", "/usr/bin/pg_dump", "/usr/bin/pg_dump.off"]).status.success());
    expect(backup(&c.url("app")), 3, "has no pg_dump on its PATH");
    assert!(docker(&["exec", &c.name, "mv", "/usr/bin/pg_dump.off", "/usr/bin/pg_dump"]).status.success());

    // Stopped.
    assert!(docker(&["stop", "-t", "5", &c.name]).status.success());
    expect(backup(&c.url("app")), 3, &format!("the container docker://{} is not running", c.name));

    // Nothing was written under a final name.
    let written: Vec<_> = common::walk(&dir.path().join("backups")).iter().map(|p| p.display().to_string()).collect();
    assert!(written.iter().all(|p| !p.ends_with(".dump.pgdrill")), "a backup was written: {written:?}");
}

/// Before: a `docker://` target with an `exec_user` the container does not have failed after
/// 31 s of retries with "the container has no perl": docker's own words went to stdout,
/// where the relay's protocol read them. The error now quotes the engine, and it is the
/// URL's mistake (exit 2, no retries).
#[test]
fn a_docker_exec_failure_names_the_engine_s_cause() {
    let Some(c) = Container::start("execuser") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("docker://{}/app?user=postgres&exec_user=nosuchuser", c.name);
    let out = pgdrill(Run::new("backup").var("database_url", url).var("storage", dir.path().join("backups").display()))
        .output()
        .expect("runs");
    let log = all(&out);
    assert_eq!(out.status.code(), Some(2), "{log}");
    assert!(log.contains("docker said: unable to find user nosuchuser"), "{log}");
    assert!(!log.contains("has no perl") && !log.contains("attempts"), "{log}");
}
