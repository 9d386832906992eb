//! Fleets: one file, many databases on real servers, each run its own pgdrill process.

use std::path::Path;

use crate::common::*;

const KEY: &str = "fleet-test-backup-key-0123456789";

struct Setup {
    dir: tempfile::TempDir,
    a: pgdrill::testkit::pg::ephemeral::Ephemeral,
    b: pgdrill::testkit::pg::ephemeral::Ephemeral,
}

impl Setup {
    fn fleet(&self) -> std::path::PathBuf {
        self.dir.path().join("pgdrill.fleet.yaml")
    }
    fn storage(&self) -> std::path::PathBuf {
        self.dir.path().join("backups")
    }
    /// `pgdrill ARGS` with the secrets the fleet file names in the environment.
    fn pgdrill(&self, args: &[&str]) -> std::process::Output {
        pgdrill(args)
            .env("SHOP_DB_PASSWORD", &self.a.password)
            .env("BILLING_DB_PASSWORD", &self.b.password)
            .env("FLEET_KEY", KEY)
            .env_remove("PGPASSWORD")
            .env_remove("PGDRILL_BACKUP_KEY")
            .output()
            .expect("pgdrill runs")
    }
    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

/// Two servers, three databases (the third, `ghost_db`, does not exist on its server, so
/// its backup fails), two cadences.
async fn setup() -> Option<Setup> {
    let a = native_server("auth_db").await?;
    let b = native_server("ledger").await?;
    exec(&a.url(), "create table users(id int primary key, name text); insert into users select g, 'u' || g from generate_series(1, 500) g").await;
    exec(&a.url(), "create database payment_db").await;
    exec(&a.url_for("payment_db"), "create table payments(id int primary key, amount numeric); insert into payments select g, g * 1.5 from generate_series(1, 300) g").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "\
defaults:
  storage: {storage}/{{project}}/{{environment}}
  key_env: FLEET_KEY
  retention: {{ daily: 7, weekly: 4, monthly: 12 }}
  rpo: 26h
  rto: 30m
  schedules: [nightly, nightly-prune]
  vars: {{ fingerprint: counts }}
schedules:
  nightly: {{ runbook: backup, cron: '0 2 * * *', parallel: 2 }}
  weekly-verify: {{ runbook: verify, cron: '0 5 * * 0' }}
  nightly-prune: {{ runbook: prune, cron: '30 3 * * *' }}
projects:
  shop:
    defaults:
      connection: postgres://{ua}@127.0.0.1:{pa}/postgres
      password_env: SHOP_DB_PASSWORD
    environments:
      prod:
        databases:
          auth_db:
            schedules: [nightly, weekly-verify, nightly-prune]
          payment_db: {{}}
  billing:
    defaults:
      connection: host=127.0.0.1 port={pb} user={ub}
      password_env: BILLING_DB_PASSWORD
    environments:
      prod:
        databases:
          ghost_db: {{}}
",
        storage = dir.path().join("backups").display(),
        ua = a.user,
        pa = a.port,
        ub = b.user,
        pb = b.port,
    );
    std::fs::write(dir.path().join("pgdrill.fleet.yaml"), text).expect("fleet file");
    Some(Setup { dir, a, b })
}

fn backups_of(storage: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in walk(storage) {
        let s = e.to_string_lossy().to_string();
        if s.ends_with(".dump.pgdrill") {
            out.push(s);
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn fleet_of_two_servers_backs_up_in_parallel_and_one_failure_stops_no_other() {
    let Some(s) = setup().await else { return };
    let fleet = s.fleet();
    let f = fleet.to_str().expect("ok");

    // validate: the fleet file is checked like a runbook.
    let out = s.pgdrill(&["validate", f]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("fleet, 3 databases, 3 schedules"), "{}", text(&out.stdout));

    // plan: resolved values, no side effects.
    let out = s.pgdrill(&["fleet", "plan", f, "backup", "--schedule", "nightly"]);
    let plan = text(&out.stdout);
    assert!(out.status.success(), "{plan}{}", text(&out.stderr));
    assert!(plan.contains("shop/prod/payment_db") && plan.contains("billing/prod/ghost_db"), "{plan}");
    assert!(plan.contains("dbname='ghost_db'"), "{plan}");
    assert!(plan.contains("password: from $SHOP_DB_PASSWORD as PGPASSWORD (set)"), "{plan}");
    assert!(plan.contains("fingerprint = counts"), "{plan}");
    assert!(!plan.contains(&s.a.password) && !plan.contains(KEY), "plan shows a secret: {plan}");
    assert!(!s.storage().exists(), "fleet plan created the storage");

    // run: three targets two at a time; ghost_db fails, the others pass.
    let report = s.dir.path().join("report");
    let junit = report.join("all.xml");
    let out = s.pgdrill(&[
        "fleet",
        "run",
        f,
        "backup",
        "--schedule",
        "nightly",
        "--report",
        report.to_str().expect("utf-8 path"),
        "--junit",
        junit.to_str().expect("utf-8 path"),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("at most 2 at a time"), "{stdout}");
    assert!(stdout.contains("2 of 3 passed"), "{stdout}");
    let row = |id: &str| stdout.lines().find(|l| l.starts_with(id)).unwrap_or_default().to_string();
    assert!(row("shop/prod/auth_db").contains("passed"), "{stdout}");
    assert!(row("shop/prod/payment_db").contains("passed"), "{stdout}");
    assert!(!row("billing/prod/ghost_db").contains("passed"), "{stdout}");
    assert!(stdout.contains("ghost_db"), "{stdout}");
    let backups = backups_of(&s.storage());
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups[0].contains("/shop/prod/auth_db/") && backups[1].contains("/shop/prod/payment_db/"), "{backups:?}");

    // Each target has its own report; the combined JUnit holds all three suites.
    for t in ["shop/prod/auth_db", "shop/prod/payment_db", "billing/prod/ghost_db"] {
        assert!(report.join(t).join("junit.xml").is_file(), "{t} has no junit");
        assert!(report.join(t).join("output.log").is_file(), "{t} has no log");
    }
    assert!(report.join("shop/prod/auth_db/run.json").is_file());
    let xml = std::fs::read_to_string(&junit).expect("combined junit");
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert!(xml.contains("name=\"shop/prod/auth_db: "), "{xml}");
    let parsed = Junit::read(&junit);
    let failed_in = |target: &str| -> Vec<&str> {
        assert!(parsed.suites.iter().any(|(n, _)| n.contains(target)), "no suite of {target}: {xml}");
        let cases = parsed.cases.iter().filter(|c| c.suite.contains(target));
        cases.filter(|c| matches!(c.status, Status::Failure | Status::Error)).map(|c| c.name.as_str()).collect()
    };
    assert!(!failed_in("billing/prod/ghost_db").is_empty(), "the failed target shows no failure: {xml}");
    assert!(failed_in("shop/prod/auth_db").is_empty(), "{xml}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("fleet.json")).expect("fleet.json")).expect("json");
    assert_eq!(summary["targets"].as_array().map(Vec::len), Some(3));

    // No secret in anything written.
    for p in walk(&report) {
        let body = std::fs::read(&p).unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        for secret in [s.a.password.as_str(), s.b.password.as_str(), KEY] {
            assert!(!body.contains(secret), "{} holds a secret", p.display());
        }
    }

    // --only selects; the shipped verify and prune run on the fleet too.
    let out = s.pgdrill(&["fleet", "run", f, "verify", "--only", "shop/prod/auth_db"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("1 of 1 passed") && !stdout.contains("payment_db"), "{stdout}");
    let out = s.pgdrill(&["fleet", "run", f, "prune", "--only", "shop"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("2 of 2 passed"), "{}", text(&out.stdout));
    assert_eq!(backups_of(&s.storage()).len(), 2, "a dry-run prune removed a backup");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_target_run_sees_only_its_own_secrets() {
    let Some(s) = setup().await else { return };
    let rb = s.dir.path().join("env.yaml");
    let seen = made_dir(s.dir.path().join("seen"));
    std::fs::write(
        &rb,
        format!(
            "name: env\nvars:\n  database: ~\nsteps:\n  - uses: shell.run\n    with:\n      script: 'echo \"shop=${{SHOP_DB_PASSWORD:-absent}} billing=${{BILLING_DB_PASSWORD:-absent}} key=${{FLEET_KEY:-absent}}\" > {}/{{{{ vars.database }}}}'\n",
            seen.display()
        ),
    )
    .expect("runbook");
    let report = s.dir.path().join("r");
    let out = s.pgdrill(&[
        "fleet",
        "run",
        s.fleet().to_str().expect("utf-8 path"),
        rb.to_str().expect("utf-8 path"),
        "--parallel",
        "3",
        "--report",
        report.to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    for db in ["auth_db", "payment_db", "ghost_db"] {
        let got = std::fs::read_to_string(seen.join(db)).expect("the run wrote what it saw");
        assert_eq!(got.trim(), "shop=absent billing=absent key=absent", "{db} saw the fleet's secret variables");
    }
    s.stop().await;
}

/// Fleet file `f.yaml` in `dir`, holding `text`.
fn fleet_file(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    written(dir.join("f.yaml"), text)
}

#[test]
fn a_restore_runs_for_exactly_one_named_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet_file(dir.path(), "defaults: { storage: /nonexistent, connection: 'host=127.0.0.1 port=1 user=x' }\nprojects:\n  p:\n    environments:\n      e:\n        databases:\n          a: {}\n          b: {}\n");
    let f = fleet.to_str().expect("ok");
    for args in
        [vec!["fleet", "run", f, "restore", "--yes"], vec!["fleet", "run", f, "restore", "--only", "p/e", "--yes"]]
    {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stderr).contains("name exactly one target with --only"), "{}", text(&out.stderr));
    }
    // --index picks one: a Kubernetes pod's target; out of range is an error naming the count.
    let out = run(&["fleet", "plan", f, "backup", "--index", "1"]);
    assert!(out.status.success() && text(&out.stdout).contains("p/e/b") && !text(&out.stdout).contains("p/e/a\n"));
    let out = run(&["fleet", "plan", f, "backup", "--index", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("has 2 target(s)"), "{}", text(&out.stderr));
}

#[test]
fn an_invalid_fleet_file_is_shown_at_its_line_by_validate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = fleet_file(dir.path(), "defaults: { storage: /b }\nprojects:\n  p:\n    defaults:\n      connection: postgres://u:s3cret@h/db\n    environments:\n      e:\n        databases:\n          a: {}\n");
    let out = run(&["validate", fleet.to_str().expect("utf-8 path")]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("f.yaml:5:19") && err.contains("password_env"), "{err}");
    assert!(!err.contains("s3cret"), "the error shows the password: {err}");
}

/// Before: a target's `vars.database_url` with a password, or a `storage` with credentials in
/// its query, passed `validate`; `fleet plan` printed them and `fleet run` put them in argv.
/// Each is refused at its line by both, and the credential shows nowhere in the output.
#[test]
fn credentials_anywhere_in_a_fleet_file_are_refused_at_their_line_without_showing_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = dir.path().join("f.yaml");
    let cases: &[(&str, &str, &str)] = &[
        ("      vars: { database_url: \"postgres://u:Pw-in-var-1@h/db\" }\n", "Pw-in-var-1", "user info"),
        ("      storage: \"s3://b/x?X-Amz-Signature=Sig0123abc&X-Amz-Date=1\"\n", "Sig0123abc", "X-Amz-Signature"),
        ("      storage: \"https://acct.blob.core.windows.net/c?sv=2024&sig=Az%2Bsig99\"\n", "Az%2Bsig99", "sig"),
        ("      connection: \"postgres://u@h/db?sslpassword=Ssl-pw-77\"\n", "Ssl-pw-77", "sslpassword"),
        ("      connection: \"host=h user=u password=kv-pw-55\"\n", "kv-pw-55", "password"),
        ("      vars: { hook: \"https://h/x?api_key=Api-k3y-0\" }\n", "Api-k3y-0", "api_key"),
    ];
    for (line, secret, what) in cases {
        std::fs::write(
            &fleet,
            format!(
                "defaults: {{ storage: /b, connection: \"postgres://u@h/db\" }}\nprojects:\n  p:\n    defaults:\n{line}    environments:\n      e:\n        databases:\n          a: {{}}\n"
            ),
        )
        .expect("fleet");
        let f = fleet.to_str().expect("utf-8 path");
        for args in [vec!["validate", f], vec!["fleet", "plan", f, "backup"]] {
            let out = run(&args);
            let (stdout, err) = (text(&out.stdout), text(&out.stderr));
            assert_eq!(out.status.code(), Some(2), "{args:?} accepted {line}: {stdout}{err}");
            assert!(err.contains("f.yaml:5:") && err.contains(what), "{args:?} {line}: {err}");
            assert!(!stdout.contains(secret) && !err.contains(secret), "{args:?} shows the credential: {stdout}{err}");
        }
    }
}

fn have(cmd: &str, args: &[&str]) -> bool {
    std::process::Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

/// The next five times a cron expression fires after 2026-01-01 00:00 UTC, by croniter.
fn cron_next(expr: &str) -> Vec<String> {
    let py = "import sys, datetime\nfrom croniter import croniter\nit = croniter(sys.argv[1], datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))\nfor _ in range(5): print(it.get_next(datetime.datetime).strftime('%Y-%m-%d %H:%M:%S'))";
    let out = std::process::Command::new("python3").args(["-c", py, expr]).output().expect("python3");
    assert!(out.status.success(), "croniter refuses `{expr}`: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// The same from systemd's calendar parser.
fn systemd_next(on_calendar: &str) -> Vec<String> {
    let out = std::process::Command::new("systemd-analyze")
        .args(["calendar", "--iterations=5", "--base-time=2026-01-01 00:00:00 UTC", on_calendar])
        .env("TZ", "UTC")
        .output()
        .expect("systemd-analyze");
    assert!(out.status.success(), "systemd refuses `{on_calendar}`: {}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .filter(|l| l.contains("Next elapse:") || l.contains("Iter. #"))
        .filter_map(|l| {
            l.split_once(": ").map(|(_, t)| t.trim().split(' ').skip(1).take(2).collect::<Vec<_>>().join(" "))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_schedules_parse_and_each_pod_runs_its_own_target() {
    let tools = have("systemd-analyze", &["--version"])
        && have("python3", &["-c", "import croniter"])
        && have("kubernetes-validate", &["--version"]);
    if !require(tools, "systemd-analyze, croniter and kubernetes-validate (ci/setup.sh installs them)") {
        return;
    }
    let Some(s) = setup().await else { return };
    let fleet = s.fleet();
    let f = fleet.to_str().expect("utf-8 path");
    let dir = s.dir.path();

    // cron: every line croniter reads fires when the systemd timer of the same cadence does.
    let out = s.pgdrill(&["schedule", "cron", f, "--binary", bin().to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crontab = text(&out.stdout);
    let lines: Vec<&str> = crontab.lines().filter(|l| !l.starts_with('#') && l.contains(" fleet run ")).collect();
    assert_eq!(lines.len(), 3, "one line per cadence with targets: {crontab}");
    let units = dir.join("units");
    let out = s.pgdrill(&[
        "schedule",
        "systemd",
        f,
        "--binary",
        bin().to_str().expect("utf-8"),
        "--out",
        units.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for line in &lines {
        let expr: Vec<&str> = line.split_whitespace().take(5).collect();
        let name = line.split("--schedule ").nth(1).and_then(|r| r.split(' ').next()).expect("schedule name");
        let timer = std::fs::read_to_string(units.join(format!("pgdrill-{name}.timer"))).expect("timer");
        let cal = timer.lines().find_map(|l| l.strip_prefix("OnCalendar=")).expect("OnCalendar");
        assert_eq!(cron_next(&expr.join(" ")), systemd_next(cal), "cadence {name}: cron and systemd disagree");
    }
    let mut files: Vec<String> =
        std::fs::read_dir(&units).expect("units").flatten().map(|e| e.path().display().to_string()).collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let out = std::process::Command::new("systemd-analyze").arg("verify").args(&files).output().expect("verify");
    assert!(out.status.success(), "systemd-analyze verify: {}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stderr).trim().is_empty(), "systemd-analyze verify warns: {}", text(&out.stderr));

    // Kubernetes: strict schema validation, then the exact command of pods 0 and 1.
    let out = s.pgdrill(&["schedule", "kubernetes", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifests = written(dir.join("k8s.yaml"), &out.stdout);
    let v = std::process::Command::new("kubernetes-validate")
        .args(["--strict", manifests.to_str().expect("utf-8")])
        .output()
        .expect("kubernetes-validate");
    assert!(v.status.success(), "{}{}", text(&v.stdout), text(&v.stderr));
    let nightly = serde_yaml::Deserializer::from_str(&text(&out.stdout))
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .find(|d: &serde_yaml::Value| d["metadata"]["name"] == "pgdrill-nightly")
        .expect("the nightly CronJob");
    let job = &nightly["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["completionMode"], "Indexed");
    assert_eq!(job["completions"].as_u64(), Some(3));
    assert_eq!(nightly["spec"]["concurrencyPolicy"], "Forbid");
    let args: Vec<String> = job["template"]["spec"]["containers"][0]["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string").to_string())
        .collect();
    for (index, db) in [(0, "shop/prod/auth_db"), (1, "shop/prod/payment_db")] {
        let report = dir.join(format!("pod{index}"));
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("$(JOB_COMPLETION_INDEX)", &index.to_string())
                    .replace("/etc/pgdrill/pgdrill.fleet.yaml", f)
                    .replace("/var/lib/pgdrill/reports/nightly", report.to_str().expect("utf-8"))
            })
            .collect();
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = s.pgdrill(&argv);
        let stdout = text(&out.stdout);
        assert!(out.status.success(), "pod {index}: {argv:?}\n{stdout}{}", text(&out.stderr));
        assert!(stdout.contains(&format!("{db} ")) && stdout.contains("1 of 1 passed"), "pod {index}: {stdout}");
        assert!(report.join(db).join("run.json").is_file());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_predeployment_manifest_rolls_the_database_back_to_exactly_its_backup() {
    let data = "create table orders(id int primary key); insert into orders select generate_series(1, 100)";
    let Some((srv, _dir, storage)) = source_and_storage("app", data).await else { return };
    let st = storage.to_str().expect("utf-8");
    let url = srv.url();
    let given = |runbook: &str| Run::new(runbook).var("database_url", &url).var("storage", st);
    let predeploy = || given("predeploy").var("label", "v2.14.0").key(KEY).raw();
    let out = predeploy();
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let manifest = storage.join("deployments/app/v2.14.0.json");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("json");
    assert_eq!(m["label"], "v2.14.0");
    assert_eq!(m["database"], "app");
    assert_eq!(m["sha256"].as_str().map(str::len), Some(64));
    assert!(Path::new(m["backup"].as_str().expect("backup")).is_file());
    // The same label again never replaces the first manifest.
    let out = predeploy();
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).expect("manifest")).expect("json");
    assert_eq!(again, m, "the second predeploy replaced the manifest");

    // The deployment goes wrong.
    exec(&srv.url(), "delete from orders where id > 10; alter table orders add column oops int").await;
    let restore = |database: &str| {
        Run::cli(["run", "restore", "--yes"])
            .var("database_url", &url)
            .var("storage", st)
            .var("database", database)
            .var("deployment", manifest.display())
            .key(KEY)
            .raw()
    };
    // A manifest for another database changes nothing.
    let out = restore("postgres");
    assert_eq!(out.status.code(), Some(2), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("is for database `app`"), "{}", text(&out.stdout));
    assert_eq!(scalar(&srv.url(), "select count(*) from orders").await, "10");

    let out = restore("app");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(scalar(&srv.url(), "select count(*) from orders").await, "100");
    assert_eq!(
        scalar(&srv.url(), "select count(*) from information_schema.columns where column_name = 'oops'").await,
        "0"
    );

    // A backup changed after it was recorded is refused before anything is touched.
    exec(&srv.url(), "delete from orders where id > 50").await;
    let backup = m["backup"].as_str().expect("backup");
    let mut bytes = std::fs::read(backup).expect("backup");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    std::fs::write(backup, bytes).expect("tamper");
    let out = restore("app");
    assert_eq!(out.status.code(), Some(1), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("changed since deployment v2.14.0 was recorded"), "{}", text(&out.stdout));
    assert_eq!(scalar(&srv.url(), "select count(*) from orders").await, "50");
    srv.stop().await;
}

#[test]
fn the_readme_fleet_example_is_valid_and_is_the_readme_s() {
    let fixture = std::fs::read_to_string(root().join("fixtures/fleet/pgdrill.fleet.yaml")).expect("fixture");
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README");
    let body = fixture.split_once('\n').map(|(_, b)| b).unwrap_or_default();
    assert!(readme.contains(body), "fixtures/fleet/pgdrill.fleet.yaml is no longer the README's example");
    let out = run(&["validate", "fixtures/fleet/pgdrill.fleet.yaml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("fleet, 4 databases, 3 schedules"), "{}", text(&out.stdout));
}

/// A fleet of three databases whose runbook waits a minute and then, in `finally`, leaves a
/// mark per database: what a stopped fleet run does to the runs it started.
fn sleepy_fleet(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let marks = made_dir(dir.join("marks"));
    let rb = written(
        dir.join("slow.yaml"),
        format!(
            "name: slow\nvars:\n  database: ~\nsteps:\n  - uses: shell.run\n    with:\n      script: 'echo began > {m}/began-{{{{ vars.database }}}}'\n  - uses: sleep\n    with: {{ duration: 60s }}\nfinally:\n  - uses: shell.run\n    with:\n      script: 'echo stopped > {m}/{{{{ vars.database }}}}; sleep 1'\n",
            m = marks.display()
        ),
    );
    let fleet = written(dir.join("f.yaml"), "defaults: { storage: /nonexistent, connection: 'host=127.0.0.1 port=1 user=x' }\nprojects:\n  p:\n    environments:\n      e:\n        databases: { a: {}, b: {}, c: {} }\n");
    (fleet, rb)
}

fn start_sleepy(dir: &Path) -> (std::process::Child, std::path::PathBuf) {
    let (fleet, rb) = sleepy_fleet(dir);
    let out = dir.join("out.txt");
    // Its own temporary directory, so what a fleet run leaves there is seen.
    std::fs::create_dir_all(dir.join("tmp")).expect("tmp");
    let child =
        pgdrill(&["fleet", "run", fleet.to_str().expect("utf-8"), rb.to_str().expect("utf-8"), "--parallel", "2"])
            .env("TMPDIR", dir.join("tmp"))
            .stdout(std::fs::File::create(&out).expect("out"))
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("fleet run");
    // Both runs are inside their runbook (their signal handlers are installed): each has
    // written its first mark. Under load that can take a while.
    for _ in 0..600 {
        if dir.join("marks/began-a").is_file() && dir.join("marks/began-b").is_file() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        dir.join("marks/began-b").is_file(),
        "the runs did not start: {}",
        std::fs::read_to_string(&out).unwrap_or_default()
    );
    (child, out)
}

fn wait_for_marks(dir: &Path, want: &[&str]) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..600 {
        seen = want.iter().filter(|m| dir.join("marks").join(m).is_file()).map(|m| m.to_string()).collect();
        if seen.len() == want.len() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    seen
}

#[test]
fn sigterm_to_a_fleet_run_stops_its_runs_through_their_finally_and_starts_no_more() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, out) = start_sleepy(dir.path());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .expect("kill");
    let status = child.wait().expect("wait");
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    assert_eq!(status.code(), Some(130), "{stdout}");
    assert_eq!(wait_for_marks(dir.path(), &["a", "b"]), ["a", "b"], "a run's finally did not run: {stdout}");
    assert!(!dir.path().join("marks/c").exists(), "a run started after the fleet was stopped: {stdout}");
    assert!(stdout.contains("not started: the fleet run was interrupted"), "{stdout}");
}

#[test]
fn kill_9_of_a_fleet_run_still_stops_its_runs_through_their_finally_and_its_scratch_directory_is_reaped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, _) = start_sleepy(dir.path());
    child.kill().expect("kill -9");
    let _ = child.wait();
    // The kernel sends the orphaned runs SIGTERM: they run their finally and exit.
    assert_eq!(wait_for_marks(dir.path(), &["a", "b"]), ["a", "b"], "a run outlived its fleet without its finally");
    // Its scratch directory (the runs' reports) is left behind, named after its pid...
    let scratch = |pid: u32| -> Vec<String> {
        std::fs::read_dir(dir.path().join("tmp"))
            .expect("tmp")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!("pgdrill-fleet-{pid}-")))
            .collect()
    };
    assert_eq!(scratch(child.id()).len(), 1, "the killed fleet run's scratch directory");
    // ...and the next fleet run removes it (and its own), once the orphaned runs, still
    // ending (their finally sleeps a second after its mark), have written their last
    // report. Regression (found by CI under load): it was removed under them, a run's last
    // report made it again, and it was left behind.
    let fast = written(
        dir.path().join("fast.yaml"),
        "name: fast\nvars:\n  database: ~\nsteps:\n  - uses: shell.run\n    with:\n      script: 'true'\n",
    );
    let out = pgdrill(&[
        "fleet",
        "run",
        dir.path().join("f.yaml").to_str().expect("utf-8"),
        fast.to_str().expect("utf-8"),
        "--only",
        "p/e/a",
    ])
    .env("TMPDIR", dir.path().join("tmp"))
    .output()
    .expect("fleet run");
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // What is left is judged once the killed fleet's runs have ended (no process names its
    // scratch directory any more): a directory one of them made again after the removal
    // would be there then.
    let killed = format!("pgdrill-fleet-{}-", child.id());
    let running = || {
        std::fs::read_dir("/proc").expect("/proc").flatten().any(|p| {
            std::fs::read(p.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(&killed))
        })
    };
    for _ in 0..600 {
        if !running() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!running(), "the killed fleet's runs did not end");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("tmp"))
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("pgdrill-fleet-"))
        .collect();
    assert!(left.is_empty(), "fleet scratch directories left: {left:?}");
}

/// The next `n` times a cron expression fires after 2026-01-01 00:00 UTC, by croniter.
fn cron_next_n(expr: &str, n: usize) -> Vec<String> {
    let py = "import sys, datetime\nfrom croniter import croniter\nit = croniter(sys.argv[1], datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc))\nfor _ in range(int(sys.argv[2])): print(it.get_next(datetime.datetime).strftime('%Y-%m-%d %H:%M:%S'))";
    let out = std::process::Command::new("python3").args(["-c", py, expr, &n.to_string()]).output().expect("python3");
    assert!(out.status.success(), "croniter refuses `{expr}`: {}", text(&out.stderr));
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// The next `n` times a timer with these `OnCalendar=` lines elapses, by systemd's parser.
fn timer_next_n(on_calendar: &[&str], n: usize) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for cal in on_calendar {
        let out = std::process::Command::new("systemd-analyze")
            .args(["calendar", &format!("--iterations={n}"), "--base-time=2026-01-01 00:00:00 UTC", cal])
            .env("TZ", "UTC")
            .output()
            .expect("systemd-analyze");
        assert!(out.status.success(), "systemd refuses `{cal}`: {}", text(&out.stderr));
        all.extend(
            text(&out.stdout).lines().filter(|l| l.contains("Next elapse:") || l.contains("Iter. #")).filter_map(|l| {
                l.split_once(": ").map(|(_, t)| t.trim().split(' ').skip(1).take(2).collect::<Vec<_>>().join(" "))
            }),
        );
    }
    all.sort();
    all.dedup();
    all.truncate(n);
    all
}

/// Before: `0 6 1 * 0-6` fires daily in cron (day of month OR day of week) and monthly in
/// the systemd timer pgdrill wrote. For expressions with ranges, steps, lists and both day
/// fields, the next 50 firings of the crontab line (croniter) and of the timer (systemd)
/// are the same.
#[test]
fn cron_lines_and_systemd_timers_fire_at_the_same_50_next_times() {
    if !require(
        have("systemd-analyze", &["--version"]) && have("python3", &["-c", "import croniter"]),
        "systemd-analyze and croniter (ci/setup.sh installs them)",
    ) {
        return;
    }
    let exprs = [
        "0 6 1 * 0-6",
        "0 2 1,15 * 1",
        "30 4 1-7 * 0",
        "*/15 8-17 * * 1-5",
        "0 */6 * * *",
        "5 0-23/5 * * *",
        "0 12 10-20/3 * *",
        "0 0 * jan,jul 7",
        "45 23 * 2-11/3 fri",
        "0 3 13 * 5",
        "@weekly",
        "@monthly",
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = dir.path().join("f.yaml");
    let names: Vec<String> = (0..exprs.len()).map(|i| format!("s{i}")).collect();
    let mut text_ = format!(
        "defaults: {{ storage: /b, connection: \"postgres://u@h/db\", schedules: [{}] }}\nschedules:\n",
        names.join(", ")
    );
    for (n, e) in names.iter().zip(exprs) {
        text_.push_str(&format!("  {n}: {{ runbook: backup, cron: \"{e}\" }}\n"));
    }
    text_.push_str("projects: { p: { environments: { e: { databases: { a: {} } } } } }\n");
    std::fs::write(&fleet, text_).expect("fleet");
    let f = fleet.to_str().expect("utf-8");
    let out = run(&["schedule", "cron", f]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crontab = text(&out.stdout);
    let units = dir.path().join("units");
    let out = run(&["schedule", "systemd", f, "--out", units.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for (n, e) in names.iter().zip(exprs) {
        let line = crontab.lines().find(|l| l.contains(&format!("--schedule {n} "))).expect("a crontab line");
        let expr: String = if line.starts_with('@') {
            line.split_whitespace().next().expect("shortcut").to_string()
        } else {
            line.split_whitespace().take(5).collect::<Vec<_>>().join(" ")
        };
        let timer = std::fs::read_to_string(units.join(format!("pgdrill-{n}.timer"))).expect("timer");
        let cals: Vec<&str> = timer.lines().filter_map(|l| l.strip_prefix("OnCalendar=")).collect();
        assert_eq!(cron_next_n(&expr, 50), timer_next_n(&cals, 50), "`{e}`: cron and systemd disagree ({cals:?})");
    }
}

/// Before: a newline in a schedule's runbook name wrote extra crontab entries and an
/// `ExecStartPre=` into the unit, `%` specifiers were expanded and a space split the name
/// into two arguments. A runbook file named with a quote, `$`, `%` and spaces reaches the
/// command as one argument from the crontab line (run by sh as cron would) and from the
/// unit (systemd-analyze verify, and its quoting); a newline is refused by `validate`.
#[test]
fn hostile_runbook_and_path_names_reach_cron_and_systemd_as_one_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb_name = "it's $HOME %h `x`.yaml";
    std::fs::write(dir.path().join(rb_name), "name: x\nsteps: []\n").expect("runbook");
    let fleet = written(
        dir.path().join("f.yaml"),
        format!("defaults: {{ storage: /b, connection: \"postgres://u@h/db\", schedules: [nightly] }}\nschedules:\n  nightly: {{ runbook: \"{}\", cron: \"0 2 * * *\" }}\nprojects: {{ p: {{ environments: {{ e: {{ databases: {{ a: {{}} }} }} }} }} }}\n", rb_name.replace('\\', "\\\\")),
    );
    let f = fleet.to_str().expect("utf-8");
    // The "binary" prints its arguments one per line.
    let bin = written(dir.path().join("args bin"), "#!/bin/sh\nprintf '%s\\n' \"$@\"\n");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let env_file = written(dir.path().join("env %n file"), "");
    let reports = dir.path().join("rep %d $x");
    let (bin_s, env_s, rep_s) = (
        bin.to_str().expect("utf-8").to_string(),
        env_file.to_str().expect("utf-8").to_string(),
        reports.to_str().expect("utf-8").to_string(),
    );
    let common_args = ["--binary", &bin_s, "--env-file", &env_s, "--reports", &rep_s];
    let fleet_path = std::fs::canonicalize(&fleet).expect("canonical").display().to_string();
    let want = |rep: &str| {
        vec![
            "fleet".to_string(),
            "run".into(),
            fleet_path.clone(),
            rb_name.into(),
            "--schedule".into(),
            "nightly".into(),
            "--parallel".into(),
            "1".into(),
            "--yes".into(),
            "--report".into(),
            format!("{rep}/nightly"),
            "--junit".into(),
            format!("{rep}/nightly/junit.xml"),
        ]
    };

    let mut args = vec!["schedule", "cron", f];
    args.extend(common_args);
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crontab = text(&out.stdout);
    let entries: Vec<&str> = crontab.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(entries.len(), 2, "SHELL= and one entry: {crontab}");
    let line = entries[1];
    if have("python3", &["-c", "import croniter"]) {
        let expr = line.split_whitespace().take(5).collect::<Vec<_>>().join(" ");
        assert_eq!(expr, "0 2 * * *");
        assert_eq!(cron_next_n(&expr, 2).len(), 2);
    }
    // What cron does with the command: `\%` is a `%`, an unescaped `%` would end it.
    let command = line.splitn(6, ' ').nth(5).expect("command");
    assert!(!command.replace("\\%", "").contains('%'), "an unescaped % in {command}");
    let command = command.replace("\\%", "%");
    // The line takes cron's lock in /tmp, as it would on a server; the test removes the lock
    // file it made, so that nothing of the run is left behind.
    let lock = std::path::Path::new("/tmp/pgdrill-nightly.lock");
    let lock_was_there = lock.exists();
    let ran = std::process::Command::new("/bin/sh").args(["-c", &command]).output().expect("sh");
    if !lock_was_there {
        let _ = std::fs::remove_file(lock);
    }
    assert!(ran.status.success(), "{command}: {}", text(&ran.stderr));
    let log = std::fs::read_to_string(reports.join("nightly.log")).expect("the command's log");
    assert_eq!(log.lines().map(str::to_string).collect::<Vec<_>>(), want(&rep_s), "{command}");

    let units = dir.path().join("units");
    let mut args = vec!["schedule", "systemd", f, "--out", units.to_str().expect("utf-8")];
    args.extend(common_args);
    let out = run(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let service = std::fs::read_to_string(units.join("pgdrill-nightly.service")).expect("service");
    let exec = service.lines().find(|l| l.starts_with("ExecStart=")).expect("ExecStart");
    assert!(exec.contains(" \"it's $$HOME %%h `x`.yaml\" "), "{exec}");
    assert!(!service.lines().any(|l| l.starts_with("ExecStartPre")), "{service}");
    if require(have("systemd-analyze", &["--version"]), "systemd-analyze (ci/setup.sh)") {
        let files: Vec<String> =
            std::fs::read_dir(&units).expect("units").flatten().map(|e| e.path().display().to_string()).collect();
        let out = std::process::Command::new("systemd-analyze").arg("verify").args(&files).output().expect("verify");
        assert!(out.status.success(), "systemd-analyze verify: {}{}", text(&out.stdout), text(&out.stderr));
    }

    // A newline in the runbook name is refused where it is written.
    std::fs::write(
        &fleet,
        "defaults: { storage: /b, connection: \"postgres://u@h/db\", schedules: [nightly] }\nschedules:\n  nightly: { runbook: \"backup\\n* * * * * evil\", cron: \"0 2 * * *\" }\nprojects: { p: { environments: { e: { databases: { a: {} } } } } }\n",
    )
    .expect("fleet");
    for args in [vec!["validate", f], vec!["schedule", "cron", f]] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("f.yaml:3:") && err.contains("control character"), "{err}");
        assert!(!text(&out.stdout).contains("evil"), "{}", text(&out.stdout));
    }
}

/// Before: a fleet file whose first line is indented gave an invalid ConfigMap with exit 0;
/// pods lacked `seccompProfile: RuntimeDefault` (Pod Security "restricted" refuses them) and
/// `resources`; a runbook given as a file beside the fleet file was not shipped into the
/// pod. The manifests parse back (the ConfigMap holds both files byte for byte), pass
/// `kubernetes-validate --strict`, and each pod meets "restricted" with the fleet's
/// requests and limits.
#[test]
fn kubernetes_manifests_ship_the_exact_files_and_meet_pod_security_restricted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rb_text = "name: nightly-own\n# a runbook of our own: with  # and : inside\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n";
    std::fs::write(dir.path().join("own runbook %h.yaml"), rb_text).expect("runbook");
    // Indented from its first line, a trailing space, a `|` and a `---` inside a value.
    let fleet_text = "  defaults:\n    storage: /var/lib/pgdrill/backups/{project} \n    connection: \"postgres://u@h/db\"\n    resources: { requests: { cpu: 300m, memory: 384Mi }, limits: { cpu: \"1\", memory: 1Gi } }\n    vars: { note: \"a | b --- c: d\" }\n  schedules:\n    nightly: { runbook: \"own runbook %h.yaml\", cron: \"0 2 * * *\" }\n    weekly: { runbook: verify, cron: \"0 5 * * 0\" }\n  projects:\n    p: { defaults: { schedules: [nightly, weekly] }, environments: { e: { databases: { a: {}, b: {} } } } }\n\n";
    let fleet = written(dir.path().join("pgdrill.fleet.yaml"), fleet_text);
    let out = run(&["schedule", "kubernetes", fleet.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let manifests = text(&out.stdout);
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&manifests)
        .map(|d| serde::Deserialize::deserialize(d).expect("each document parses"))
        .collect();
    let cm = docs.iter().find(|d| d["kind"] == "ConfigMap").expect("the ConfigMap");
    assert_eq!(cm["data"]["pgdrill.fleet.yaml"].as_str(), Some(fleet_text), "{manifests}");
    assert_eq!(cm["data"]["runbook.nightly.yaml"].as_str(), Some(rb_text), "{manifests}");
    let jobs: Vec<&serde_yaml::Value> = docs.iter().filter(|d| d["kind"] == "CronJob").collect();
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], serde_yaml::Value::Bool(true));
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
        let c = &pod["containers"][0];
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], serde_yaml::Value::Bool(false));
        assert_eq!(sc["readOnlyRootFilesystem"], serde_yaml::Value::Bool(true));
        assert_eq!(sc["capabilities"]["drop"][0], "ALL");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        assert_eq!(c["resources"]["requests"]["cpu"], "300m");
        assert_eq!(c["resources"]["requests"]["memory"], "384Mi");
        assert_eq!(c["resources"]["limits"]["cpu"], "1");
        assert_eq!(c["resources"]["limits"]["memory"], "1Gi");
        let runbook = c["args"][3].as_str().expect("runbook arg");
        if job["metadata"]["name"] == "pgdrill-nightly" {
            assert_eq!(runbook, "/etc/pgdrill/runbook.nightly.yaml", "the file runbook is shipped and named");
        } else {
            assert_eq!(runbook, "verify", "a shipped runbook is in the image");
        }
    }
    if require(have("kubernetes-validate", &["--version"]), "kubernetes-validate (ci/setup.sh installs it)") {
        let path = written(dir.path().join("k8s.yaml"), &manifests);
        let v = std::process::Command::new("kubernetes-validate")
            .args(["--strict", path.to_str().expect("utf-8")])
            .output()
            .expect("kubernetes-validate");
        assert!(v.status.success(), "{}{}\n{manifests}", text(&v.stdout), text(&v.stderr));
    }
    // A quantity Kubernetes would refuse is refused at its line.
    std::fs::write(&fleet, fleet_text.replace("memory: 1Gi", "memory: lots")).expect("fleet");
    let out = run(&["validate", fleet.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("pgdrill.fleet.yaml:4:") && text(&out.stderr).contains("quantity"),
        "{}",
        text(&out.stderr)
    );
}

/// Before: two `fleet run`s with the same `--report` directory overwrote each other's
/// per-target files with no lock, and a read-only `--report`/`--junit` location was found
/// only after every step, with its side effects, had run. A second fleet run (or run) on a
/// directory a fleet run holds is refused naming the holder, and an unwritable location is
/// refused before the first step (its mark is never made).
#[test]
fn a_report_directory_is_one_run_s_and_an_unwritable_one_is_refused_before_any_step() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (fleet, rb) = sleepy_fleet(dir.path());
    let (f, r) = (fleet.to_str().expect("utf-8"), rb.to_str().expect("utf-8"));
    let report = dir.path().join("reports");
    let rep = report.to_str().expect("utf-8");
    std::fs::create_dir_all(dir.path().join("tmp")).expect("tmp");
    let mut first = pgdrill(&["fleet", "run", f, r, "--only", "p/e/a", "--report", rep])
        .env("TMPDIR", dir.path().join("tmp"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("fleet run");
    for _ in 0..600 {
        if dir.path().join("marks/began-a").is_file() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(dir.path().join("marks/began-a").is_file(), "the first fleet run did not start");
    let second = run(&["fleet", "run", f, r, "--only", "p/e/b", "--report", rep]);
    let third = Run::new(r).var("database", "c").arg("--report").arg(rep).raw();
    // Stop the first run (it rolls back through its `finally`).
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(first.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let _ = first.wait();
    for (what, out) in [("fleet run", &second), ("run", &third)] {
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{what}: {}{err}", text(&out.stdout));
        assert!(err.contains(&format!("is in use by another pgdrill run (pid {})", first.id())), "{what}: {err}");
    }
    assert!(!dir.path().join("marks/began-b").exists() && !dir.path().join("marks/began-c").exists());

    // A location that cannot be written (under a regular file: refused even for root).
    let file = written(dir.path().join("a-file"), "x");
    let bad = file.join("sub");
    let bad_s = bad.to_str().expect("utf-8");
    let junit_s = bad.join("junit.xml").display().to_string();
    for cmd in [
        Run::new(r).var("database", "d").arg("--report").arg(bad_s),
        Run::new(r).var("database", "d").arg("--junit").arg(&junit_s),
        Run::cli(["fleet", "run", f, r, "--only", "p/e/c", "--report", bad_s]),
        Run::cli(["fleet", "run", f, r, "--only", "p/e/c", "--junit", &junit_s]),
    ] {
        let ran = cmd.output();
        let args = &ran.args;
        assert_eq!(ran.code, Some(3), "{args}: {}", ran.all());
        assert!(ran.stderr.contains("a-file/sub"), "{args}: {}", ran.stderr);
        for m in ["began-d", "began-c"] {
            assert!(!dir.path().join("marks").join(m).exists(), "{args} ran a step before refusing");
        }
    }
}
