//! Secrets reach only the process that needs them, and no child outlives pgdrill. On real
//! servers: a restored dump that runs `COPY ... TO PROGRAM 'env'` inside the throwaway
//! server finds no backup key there; a `shell.run` script gets the user's environment minus
//! pgdrill's settings and secrets; after `kill -9` of pgdrill, no pg_restore or pg_dump it
//! started keeps running.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{pgdrill, text, wait_for, written, Run};

const KEY: &str = "secrets-test passphrase 7f3a";

/// Pids of running processes named `comm` whose parent is `parent`.
fn children_named(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "pid (comm) state ppid ..."; comm may hold spaces, so split at the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map(|(_, n)| n).unwrap_or_default();
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if name == comm && ppid == parent && state != "Z" {
            out.push(pid);
        }
    }
    out
}

/// `run` with the backup key, spawned with its output discarded.
fn spawn_quiet(run: Run) -> std::process::Child {
    run.key(KEY).command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("run")
}

/// Whether process `pid` is gone within 30 s; one still running then is killed (SIGKILL), so
/// that no test leaves it behind.
fn gone_or_killed(pid: u32) -> bool {
    let gone = wait_for(Duration::from_secs(30), || (!running(pid)).then_some(())).is_some();
    if !gone {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
    gone
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

/// A directory the throwaway server (which runs as `nobody` when the tests run as root)
/// can write into.
fn world_writable_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// SQL for a table `t` whose check constraint calls a function that writes the server's
/// environment into `file` (`redirect`: `>` or `>>`) through `COPY ... TO PROGRAM`: run again
/// wherever the table's data is loaded, so a restore shows what the throwaway server's
/// processes hold. The program reads its input, so the server never writes into a closed pipe.
fn leak_env(file: &Path, redirect: &str) -> String {
    format!(
        "create function leak(i int) returns int language plpgsql as $f$
         begin
           execute format('copy (select 1) to program %L', 'cat > /dev/null; env {redirect} {file}');
           return i;
         end $f$;
         create table t (id int check (leak(id) > 0));
         insert into t values (1);",
        file = file.display()
    )
}

/// A restored dump can run programs inside the throwaway server (`COPY ... TO PROGRAM` in a
/// function a check constraint calls while the data loads). The key pgdrill holds must not be in that server's
/// environment: it used to inherit PGDRILL_BACKUP_KEY.
#[tokio::test(flavor = "multi_thread")]
async fn backup_key_never_reaches_the_throwaway_server() {
    let Some(src) = common::native_server("leak").await else { return };
    let storage = tempfile::tempdir().expect("storage");
    let out_dir = world_writable_dir();
    let env_file = out_dir.path().join("server-env.txt");
    common::exec(&src.url(), &leak_env(&env_file, ">")).await;
    assert!(env_file.exists(), "the function did not run on the source: the test proves nothing");
    std::fs::remove_file(&env_file).expect("remove the source's env");

    common::backup_to(&src.url(), storage.path(), KEY, "leak");
    let junit = storage.path().join("junit.xml");
    let out = Run::verify_native(storage.path().display(), "leak")
        .arg("--junit")
        .arg(junit.display().to_string())
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .output()
        .expect("verify runs");
    let seen = std::fs::read_to_string(&env_file).unwrap_or_else(|e| {
        panic!(
            "the restored index did not run its function in the throwaway server ({e}): {}{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    });
    assert!(seen.contains("PATH="), "not an environment: {seen}");
    assert!(!seen.contains(KEY), "the backup key reached the throwaway server:\n{seen}");
    assert!(!seen.contains("PGDRILL_"), "pgdrill's settings reached the throwaway server:\n{seen}");
    assert!(!seen.contains("PGPASSWORD"), "a password reached the throwaway server:\n{seen}");
    assert!(out.status.success(), "verify: {}{}", text(&out.stdout), text(&out.stderr));
}

/// A user's script gets the user's environment, but neither pgdrill's settings (the backup
/// key) nor a variable holding a declared secret, unless the step's `env:` passes it.
#[test]
fn shell_scripts_see_the_user_environment_without_pgdrill_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = dir.path().join("plain.txt");
    let passed = dir.path().join("passed.txt");
    let rb = dir.path().join("env.yaml");
    std::fs::write(
        &rb,
        format!(
            "name: env-check
secrets:
  token: {{ env: APP_DEPLOY_TOKEN }}
steps:
  - id: plain
    uses: shell.run
    with:
      script: env > '{plain}'
  - id: passed
    uses: shell.run
    with:
      script: env > '{passed}'
      env:
        GIVEN_TOKEN: \"{{{{ secrets.token }}}}\"
",
            plain = plain.display(),
            passed = passed.display()
        ),
    )
    .expect("runbook");
    let token = "deploy-token-5b1e9c0d2a";
    let out = pgdrill(&["run", &rb.display().to_string()])
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env("APP_DEPLOY_TOKEN", token)
        .env("SOME_SETTING", "visible-to-scripts")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let plain = std::fs::read_to_string(&plain).expect("plain env");
    assert!(plain.contains("SOME_SETTING=visible-to-scripts"), "the user's environment is lost:\n{plain}");
    assert!(!plain.contains(KEY), "the backup key reached a script:\n{plain}");
    assert!(!plain.contains("PGDRILL_BACKUP_KEY"), "pgdrill's settings reached a script:\n{plain}");
    assert!(!plain.contains(token), "a declared secret reached a script that did not ask for it:\n{plain}");
    let passed = std::fs::read_to_string(&passed).expect("passed env");
    assert!(passed.contains(&format!("GIVEN_TOKEN={token}")), "`env:` did not pass the secret:\n{passed}");
    assert!(!passed.contains("APP_DEPLOY_TOKEN="), "the secret's own variable is inherited:\n{passed}");
}

/// Before: pgdrill killed with `kill -9` during a restore left pg_restore writing into the
/// target, which the next run took for the original database.
#[tokio::test(flavor = "multi_thread")]
async fn pg_restore_dies_with_a_killed_pgdrill() {
    let Some(src) = common::native_server("slow").await else { return };
    let storage = tempfile::tempdir().expect("storage");
    // An index whose function sleeps unless the session says otherwise: creating it here is
    // quick, rebuilding it during the restore hangs pg_restore.
    common::exec(
        &src.url(),
        "create function slow(i int) returns int language plpgsql immutable as $f$
         begin
           if current_setting('drill.fast', true) is distinct from 'on' then perform pg_sleep(600); end if;
           return i;
         end $f$;
         create table t (id int);
         insert into t values (1);
         set drill.fast = on;
         create index t_slow on t (slow(id));",
    )
    .await;
    common::exec(&src.url(), "create database target").await;
    let backup = common::backup_to(&src.url(), storage.path(), KEY, "slow");
    let target = src.url().replacen("/slow", "/target", 1);
    assert!(target.ends_with("/target") || target.contains("/target?"), "{target}");
    let rb = storage.path().join("restore.yaml");
    std::fs::write(
        &rb,
        "name: slow-restore
vars: { backup: '', into: '' }
secrets:
  key: { env: PGDRILL_BACKUP_KEY }
steps:
  - id: restore
    uses: backup.restore
    with: { backup: '{{ vars.backup }}', into: '{{ vars.into }}', key: '{{ secrets.key }}', jobs: 1 }
",
    )
    .expect("runbook");
    let mut run = spawn_quiet(Run::new(&rb).var("backup", backup.display()).var("into", &target));
    let pid = run.id();
    let restore = wait_for(Duration::from_secs(120), || children_named(pid, "pg_restore").first().copied());
    let _ = run.kill();
    let _ = run.wait();
    let restore = restore.expect("pg_restore never started");
    let gone = gone_or_killed(restore);
    assert!(gone, "pg_restore {restore} kept running after pgdrill was killed");
}

/// Before: pg_dump outlived a killed pgdrill (here it waits for a lock another session
/// holds, as it would behind a long migration).
#[tokio::test(flavor = "multi_thread")]
async fn pg_dump_dies_with_a_killed_pgdrill() {
    let Some(src) = common::native_server("locked").await else { return };
    let storage = tempfile::tempdir().expect("storage");
    common::exec(&src.url(), "create table t (id int); insert into t values (1);").await;
    let holder = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    holder.batch_execute("begin; lock table t in access exclusive mode;").await.expect("lock");
    let mut run =
        spawn_quiet(Run::new("backup").var("database_url", src.url()).var("storage", storage.path().display()));
    let pid = run.id();
    let dump = wait_for(Duration::from_secs(120), || children_named(pid, "pg_dump").first().copied());
    // Kill only once pg_dump waits for the lock with the snapshot imported: killed earlier,
    // it fails on its own because the snapshot's exporter is gone, and proves nothing.
    // A separate connection: inside the holder's transaction, pg_stat_activity is a frozen
    // snapshot.
    let watcher = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    let mut blocked = false;
    let started = Instant::now();
    while dump.is_some() && !blocked && started.elapsed() < Duration::from_secs(120) {
        let row = watcher
            .query_one(
                "select count(*) from pg_stat_activity where application_name = 'pg_dump' and wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity");
        blocked = row.get::<_, i64>(0) > 0;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = run.kill();
    let _ = run.wait();
    let dump = dump.expect("pg_dump never started");
    assert!(blocked, "pg_dump never waited for the lock");
    let gone = gone_or_killed(dump);
    let _ = holder.batch_execute("rollback").await;
    assert!(gone, "pg_dump {dump} kept running after pgdrill was killed");
    assert!(
        !Path::new(&storage.path().join("locked")).exists()
            || std::fs::read_dir(storage.path().join("locked"))
                .expect("dir")
                .flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".dump.pgdrill")),
        "a backup was published by a killed run"
    );
}

/// Assert that none of `secrets` appears in `what` (output text or a file's bytes).
fn assert_clean(what: &str, data: &[u8], secrets: &[&str]) {
    let text = String::from_utf8_lossy(data);
    for s in secrets {
        assert!(!text.contains(s), "secret {s:?} appears in {what}:\n{text}");
    }
}

/// A runbook that takes its key from `--var` (not a declared secret) into every field that
/// takes a key, and a script that prints the key and the URL.
const VAR_KEYS: &str = r#"name: var-keys
vars:
  database_url: ""
  storage: ""
  key: ""
steps:
  - id: backup
    uses: backup.create
    with: { database_url: "{{ vars.database_url }}", storage: "{{ vars.storage }}", key: "{{ vars.key }}" }
  - id: check
    uses: backup.check
    with: { path: "{{ steps.backup.path }}", key: "{{ vars.key }}" }
  - id: scratch
    uses: postgres.ephemeral
    with: { provider: native }
  - id: restore
    uses: backup.restore
    with: { backup: "{{ steps.backup.path }}", into: "{{ steps.scratch.url }}", key: "{{ vars.key }}", no_owner: true }
  - id: show
    uses: shell.run
    with: { script: "echo using {{ vars.key }} for {{ vars.database_url }}" }
"#;

/// Before: a key given with `--var` was printed in the terminal, JUnit, run.json and `plan`,
/// and `plan` printed the password of `--var database_url`. Here the key comes by env (the
/// shipped runbooks), by `--var` (a runbook's key fields), and the source password inside a
/// URL; none of them appears in stdout, stderr, JUnit, the report directory, the storage
/// directory, `plan`, or the environment of the throwaway server (a restored function
/// writes it to a file).
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_given_any_way_appears_in_no_output_file_or_child_environment() {
    let Some(src) = common::native_server("grep").await else { return };
    let out_dir = world_writable_dir();
    let env_file = out_dir.path().join("server-env.txt");
    // A short password, masked by its place in URLs; a role that can dump everything.
    let url_password = "Zq7pw";
    common::exec(
        &src.url(),
        &format!("create role dumper login superuser password '{url_password}'; {}", leak_env(&env_file, ">>")),
    )
    .await;
    let _ = std::fs::remove_file(&env_file);
    let url = src.url();
    let (_, after_scheme) = url.split_once("://").expect("url");
    let (_, host_part) = after_scheme.split_once('@').expect("url with userinfo");
    let source = format!("postgres://dumper:{url_password}@{host_part}");
    let env_key = "env-given passphrase 9d2c";
    let var_key = "var-given passphrase 4e8b";
    let secrets = [env_key, var_key, url_password];

    let work = tempfile::tempdir().expect("work");
    let storage = work.path().join("storage");
    let report = work.path().join("report");
    std::fs::create_dir(&storage).expect("storage");
    let rb = written(work.path().join("var-keys.yaml"), VAR_KEYS);

    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut run = |name: &str, cmd: Run| {
        let out = cmd.key(env_key).raw();
        assert!(out.status.success(), "{name}: {}{}", text(&out.stdout), text(&out.stderr));
        outputs.push((format!("{name} stdout"), out.stdout));
        outputs.push((format!("{name} stderr"), out.stderr));
    };
    // A run writes its JUnit file and report directory beside the others, searched below.
    let recorded = |name: &str, cmd: Run| cmd.junit(work.path().join(format!("{name}.xml"))).report(report.join(name));
    let given = |cmd: Run| cmd.var("database_url", &source).var("storage", storage.display());
    let rb_s = rb.display().to_string();
    run("plan-backup", given(Run::cli(["plan", "backup"])));
    run("plan-var-keys", given(Run::cli(["plan", rb_s.as_str()])).var("key", var_key));
    run("backup", recorded("backup", given(Run::new("backup"))));
    let verify = Run::new("verify").var("storage", storage.display()).vars(&["database=grep", "provider=native"]);
    run("verify", recorded("verify", verify));
    run("var-keys", recorded("var-keys", given(Run::new(&rb)).var("key", var_key)));

    // The checks ran where the secrets were: the script echoed them, plan rendered them.
    let shown = std::fs::read_to_string(report.join("var-keys").join("run.json")).expect("run.json");
    assert!(shown.contains("using ******** for postgres://dumper:********@"), "{shown}");
    let plan = outputs.iter().find(|(n, _)| n == "plan-var-keys stdout").map(|(_, o)| text(o)).unwrap_or_default();
    assert!(plan.contains("key: '********'") || plan.contains("key: ********"), "{plan}");

    for (what, data) in &outputs {
        assert_clean(what, data, &secrets);
    }
    let files: Vec<_> = common::walk(work.path());
    assert!(files.iter().any(|f| f.ends_with("run.json")), "no run.json written: {files:?}");
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "xml")), "no JUnit written");
    for f in files {
        let data = std::fs::read(&f).expect("readable");
        assert_clean(&f.display().to_string(), &data, &secrets);
    }
    let server_env = std::fs::read(&env_file).expect("the throwaway servers ran the restored function");
    assert!(String::from_utf8_lossy(&server_env).contains("PATH="), "not an environment");
    assert_clean("the throwaway servers' environment", &server_env, &secrets);
}

/// Keys and passphrases shorter than 12 characters are refused before anything runs.
#[test]
fn short_keys_are_refused_with_exit_2_before_anything_runs() {
    let work = tempfile::tempdir().expect("work");
    let rb = written(work.path().join("var-keys.yaml"), VAR_KEYS);
    let storage = work.path().join("storage");
    let all = Run::new(rb.display().to_string())
        .var("database_url", "postgres://nobody@127.0.0.1:1/none")
        .var("storage", storage.display())
        .var("key", "tooshort")
        .expect(2)
        .all();
    assert!(all.contains("at least 12") && all.contains("with.key"), "{all}");
    assert!(!all.contains("tooshort"), "the refused key is printed: {all}");
    assert!(!storage.exists(), "something ran");
}
