//! pgBackRest backups of a PostgreSQL 17 server (issue 39), past the first recovery in its
//! image (physical17.rs): a machine with no pgbackrest of its own, a team whose repository
//! settings live in a `config-include-path` folder or whose configuration is named by
//! PGBACKREST_CONFIG or a configuration folder, a repository in S3 read by the image's
//! pgbackrest, and the shipped `pitr` runbook (`pitr.restore`) rather than `verify-physical`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::common::*;
use crate::physical17::{containers_of, image_with_tools, spawned, Team17};
use crate::physical_tools::{shipped, work_dir};

/// A team's PostgreSQL 17 server in the image, archiving with pgBackRest (stanza `demo`)
/// into a local repository: a full backup taken under writes, then 110 rows at the restore
/// point `pgdrill_mark` (the marking run's run.json in `mark`), then 7 rows and a table after
/// it, archived.
struct Backed {
    work: tempfile::TempDir,
    team: Team17,
    config: PathBuf,
    /// The team's folder of included `*.conf` files, when the repository's settings are there
    /// and not in `config`.
    include: Option<PathBuf>,
    label: String,
    mark: PathBuf,
}

impl Backed {
    /// The source as a team writes it (the include folder named when there is one).
    fn source(&self) -> String {
        let include = self.include.as_ref().map(|i| format!("&config-include-path={}", i.display()));
        format!("pgbackrest://demo?config={}{}", self.config.display(), include.unwrap_or_default())
    }
}

/// `Backed`, its repository settings in `conf.d/repo.conf` beside pgbackrest.conf when
/// `include` (pgBackRest then reads them only when given `--config-include-path`).
fn backed_up(include: bool) -> Backed {
    let work = work_dir();
    let dir = work.path().join("team");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.display();
    let repo_lines = format!("repo1-path={d}/repo\nrepo1-retention-full=2\n");
    let (in_config, include) = if include {
        let folder = dir.join("conf.d");
        std::fs::create_dir_all(&folder).expect("mkdir conf.d");
        let file = folder.join("repo.conf");
        std::fs::write(&file, format!("[global]\n{repo_lines}")).expect("repo.conf");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        (String::new(), Some(folder))
    } else {
        (repo_lines, None)
    };
    let config = dir.join("pgbackrest.conf");
    std::fs::write(
        &config,
        format!(
            "[global]\n{in_config}log-path={d}\nlock-path={d}/lock\nlog-level-file=off\nstart-fast=y\narchive-timeout=60\n\n\
             [demo]\npg1-path={d}/pg/data\npg1-socket-path={d}/pg\npg1-user=postgres\n"
        ),
    )
    .expect("pgbackrest.conf");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let team = Team17::start(&dir, false);
    let included = include.as_ref().map(|i| format!(" --config-include-path={}", i.display()));
    let pgbr = format!("pgbackrest --config={d}/pgbackrest.conf{} --stanza=demo", included.unwrap_or_default());
    let (mark, label, info, _) = team.pgbackrest_full_backup(&pgbr, &dir, work.path());
    assert_eq!(info[0]["db"][0]["version"], "17", "{info}");
    Backed { work, team, config, include, label, mark }
}

/// Recover `source` to the mark with the shipped runbook and `env`, proven against the mark:
/// it must pass, leave no container, and be served by the image's pgBackRest. The recover
/// step's outputs and log.
fn recovered_at_mark(
    b: &Backed,
    source: &str,
    name: &str,
    env: &[(&str, &std::ffi::OsStr)],
) -> (serde_json::Value, String) {
    let report = b.work.path().join(name);
    let run = shipped(source, 110).var("expect", b.mark.display()).var("target_name", "pgdrill_mark").report(&report);
    let (pid, code, all) = spawned(env.iter().fold(run, |r, (k, v)| r.env(k, v)));
    assert_eq!(code, Some(0), "{name}: a 17 backup recovered in its image must pass with proof:\n{all}");
    assert!(containers_of(pid).is_empty(), "{name}: the run left containers: {:?}", containers_of(pid));
    let rj = RunJson::read(&report);
    let rec = rj.step("recover");
    let o = rec.outputs.clone();
    assert_eq!((o["tool"].as_str(), o["backup"].as_str()), (Some("pgbackrest"), Some(b.label.as_str())), "{o}");
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    let served = o["tool_version"].as_str().unwrap_or_default();
    assert!(served.starts_with("pgBackRest 2.5") && served.ends_with(" in pgdrill/postgres-local:17"), "{o}");
    (o, rec.log.join("\n"))
}

/// Regression (issue 39): a machine with no pgbackrest of its own was exit 3 ("pgbackrest not
/// found on PATH") for a pgBackRest 17 backup although the image of 17 holds pgBackRest 2.55:
/// even `backups list` needed the local binary. Now the repository is listed by the
/// image's pgbackrest and the backup restored and recovered there, the log and
/// `tool_version` saying so; with no image either, exit 3 naming the Debian package. The
/// local binary is hidden from pgdrill's PATH, not uninstalled.
#[test]
fn a_machine_without_pgbackrest_lists_and_restores_with_the_pgbackrest_of_an_image() {
    if !image_with_tools() {
        return;
    }
    let b = backed_up(false);
    let source = b.source();
    let (_links, path) = path_without("pgbackrest");
    let listed = Run::cli(["backups", "list", "--json", "--storage", &source]).env("PATH", &path).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["pg_major"].as_u64()),
        (Some(b.label.as_str()), Some(17)),
        "{}",
        listed.stdout
    );

    let (o, log) = recovered_at_mark(&b, &source, "no_local", &[("PATH", &path)]);
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL through the image's archive-get: {o}");
    assert!(log.contains("this machine has no pgbackrest"), "the log says why the image:\n{log}");
    assert!(log.contains(&format!("served by pgbackrest {}", o["tool_version"].as_str().unwrap_or("?"))), "{log}");

    // Neither here nor in Docker (unreachable): the environment's failure naming the package.
    let ran = shipped(&source, 110).env("PATH", &path).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output();
    assert_eq!(ran.code, Some(3), "{}", ran.all());
    assert!(ran.all().contains("apt-get install pgbackrest"), "{}", ran.all());
    assert!(ran.all().contains("nor has Docker an image of PostgreSQL with pgbackrest"), "{}", ran.all());
    drop(b.team);
}

/// Regression (issue 39): a team keeping its repository settings in a `config-include-path`
/// folder beside pgbackrest.conf could not be verified on 17: the location had no way to
/// name the folder (an unknown option, exit 2), and named by pgBackRest's own
/// PGBACKREST_CONFIG_INCLUDE_PATH it was read here but never mounted into the image that
/// restores, so the restore failed there as if the backup were broken (exit 1). Now the
/// folder and the repository its files name are mounted read-only, as the main
/// configuration is, both ways of naming it.
#[test]
fn a_repository_named_only_in_an_included_config_file_is_restored_in_the_image() {
    if !image_with_tools() {
        return;
    }
    let b = backed_up(true);
    let include = b.include.clone().expect("an include folder");
    let plain = format!("pgbackrest://demo?config={}", b.config.display());
    recovered_at_mark(&b, &plain, "env", &[("PGBACKREST_CONFIG_INCLUDE_PATH", include.as_os_str())]);

    let source = b.source();
    let listed = Run::cli(["backups", "list", "--json", "--storage", &source]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(v[0]["id"].as_str(), Some(b.label.as_str()), "{}", listed.stdout);
    let (o, _) = recovered_at_mark(&b, &source, "option", &[]);
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL through the image's archive-get: {o}");
    drop(b.team);
}

/// Regression (issue 39): only `physical.verify` had recovered a pgBackRest 17 backup; the
/// shipped `pitr` runbook (`pitr.restore`, `source: pgbackrest`) had never run one. It
/// recovers the backup in the image to the restore point, proven against the mark
/// (`expect`), and the end of the archive against the same mark fails naming the rows.
#[test]
fn the_pitr_runbook_recovers_a_postgresql_17_pgbackrest_backup_to_a_restore_point_against_its_mark() {
    if !image_with_tools() {
        return;
    }
    let b = backed_up(false);
    let pitr = |target: &str, report: &str| {
        let run = Run::new("pitr")
            .var("source", "pgbackrest")
            .var("storage", b.source())
            .var("expect", b.mark.display())
            .report(b.work.path().join(report));
        if target.is_empty() {
            run
        } else {
            run.var("target_name", target)
        }
    };
    let (pid, code, all) = spawned(pitr("pgdrill_mark", "at_mark"));
    assert_eq!(code, Some(0), "pitr.restore of a 17 pgBackRest backup to the mark:\n{all}");
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let rj = RunJson::read(&b.work.path().join("at_mark"));
    let o = &rj.step("recover").outputs;
    assert_eq!(o["backup"].as_str(), Some(b.label.as_str()), "{o}");
    assert!(o["tool"].as_str().is_some_and(|t| t.contains("in pgdrill/postgres-local:17")), "{o}");
    assert!(o["server_version"].as_str().is_some_and(|v| v.starts_with("17.")), "{o}");
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    // `tables` is skipped by the runbook when the recovery was proven against the mark.
    for id in ["amcheck", "rto"] {
        assert_eq!(rj.step(id).outcome, "passed", "{id}: {:?}", rj.step(id).message);
    }

    let (_, code, all) = spawned(pitr("", "latest"));
    assert_eq!(code, Some(1), "the end of the archive differs from the mark:\n{all}");
    assert!(all.contains("public.drill: 117 rows, expected 110"), "{all}");
    drop(b.team);
}

/// Regression (issue 39): a team whose pgBackRest finds its configuration through
/// PGBACKREST_CONFIG, or a configuration folder (PGBACKREST_CONFIG_PATH, pgBackRest's
/// `--config-path`), had it read here but never mounted into the image that restores a 17
/// backup: pgBackRest there read a configuration that was not there and the restore failed as
/// if the backup were broken (exit 1); `config-path=` was an unknown option of the location
/// (exit 2). Now the file, and the repository it names, are mounted read-only whichever way
/// it is named.
#[test]
fn a_configuration_named_by_pgbackrest_config_or_a_config_path_is_mounted_into_the_image() {
    if !image_with_tools() {
        return;
    }
    let b = backed_up(false);
    let folder = b.config.parent().expect("the team's folder").to_path_buf();
    let (o, _) =
        recovered_at_mark(&b, "pgbackrest://demo", "by_variable", &[("PGBACKREST_CONFIG", b.config.as_os_str())]);
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL through the image's archive-get: {o}");
    recovered_at_mark(&b, "pgbackrest://demo", "by_folder_variable", &[("PGBACKREST_CONFIG_PATH", folder.as_os_str())]);
    let source = format!("pgbackrest://demo?config-path={}", folder.display());
    let listed = Run::cli(["backups", "list", "--json", "--storage", &source]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(v[0]["id"].as_str(), Some(b.label.as_str()), "{}", listed.stdout);
    recovered_at_mark(&b, &source, "by_option", &[]);
    drop(b.team);
}

/// Regression (issue 39): a repository in S3 had been proven only with this machine's
/// pgbackrest; a machine without one reads and restores it with the pgBackRest of the 17
/// image. The team's configuration names the bucket (`repo1-type=s3`, its own endpoint on
/// this host, a TLS relay to moto) and the keys come from pgdrill's environment: they reach
/// the image's pgbackrest through its env file and the throwaway's restore_command script,
/// never argv, a log or run.json. The containers share the host's network (what pgdrill does
/// for any repository reached over the network, `Repo::remote`): the bucket's endpoint is
/// 127.0.0.1 here, as a team's machine reaches its own.
#[test]
fn an_s3_repository_is_listed_and_restored_with_the_pgbackrest_of_an_image() {
    if !require(on_path("openssl"), "openssl") || !image_with_tools() {
        return;
    }
    let Some(moto) = moto() else { return };
    crate::physical_tools::put(moto.port, "drill-pgbr17");
    let work = work_dir();
    let relay = crate::physical_tools::tls_relay(moto.port, work.path());
    const SECRET: &str = "pgbackrest-17-s3-secret-never-shown-c4f1";
    let keys = [("PGBACKREST_REPO1_S3_KEY", "testing"), ("PGBACKREST_REPO1_S3_KEY_SECRET", SECRET)];
    let dir = work.path().join("team");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.display();
    let settings = format!(
        "[global]\nrepo1-type=s3\nrepo1-path=/pgbackrest\nrepo1-s3-bucket=drill-pgbr17\nrepo1-s3-endpoint=127.0.0.1\n\
         repo1-storage-port={}\nrepo1-s3-region=us-east-1\nrepo1-s3-uri-style=path\nrepo1-storage-verify-tls=n\n\
         repo1-retention-full=2\nlog-path={d}\nlock-path={d}/lock\nlog-level-file=off\nstart-fast=y\narchive-timeout=60\n\n\
         [demo]\npg1-path={d}/pg/data\npg1-socket-path={d}/pg\npg1-user=postgres\n",
        relay.port
    );
    // pgdrill is given the configuration without keys; the team's own server and backups use
    // a copy with them (its machine, not pgdrill's business).
    let config = dir.join("pgbackrest.conf");
    std::fs::write(&config, &settings).expect("pgbackrest.conf");
    let keyed =
        settings.replacen("[global]\n", &format!("[global]\nrepo1-s3-key=testing\nrepo1-s3-key-secret={SECRET}\n"), 1);
    std::fs::write(dir.join("team.conf"), keyed).expect("team.conf");
    for f in [&config, &dir.join("team.conf")] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let team = Team17::start(&dir, true);
    let (mark, label, info, _) =
        team.pgbackrest_full_backup(&format!("pgbackrest --config={d}/team.conf --stanza=demo"), &dir, work.path());
    assert_eq!(info[0]["db"][0]["version"], "17", "{info}");
    let source = format!("pgbackrest://demo?config={}", config.display());
    let (_links, path) = path_without("pgbackrest");
    let with_keys = |r: Run| keys.iter().fold(r.env("PATH", &path), |r, (k, v)| r.env(k, v));

    let listed = with_keys(Run::cli(["backups", "list", "--json", "--storage", &source])).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(v[0]["id"].as_str(), Some(label.as_str()), "{}", listed.stdout);
    assert!(!listed.all().contains(SECRET), "the S3 secret was shown:\n{}", listed.all());

    let report = work.path().join("s3");
    let run = shipped(&source, 110).var("expect", mark.display()).var("target_name", "pgdrill_mark").report(&report);
    let (pid, code, all) = spawned(with_keys(run));
    assert_eq!(code, Some(0), "an S3 repository restored with the image's pgbackrest must pass with proof:\n{all}");
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let rj = RunJson::read(&report);
    let o = &rj.step("recover").outputs;
    assert_eq!(o["backup"].as_str(), Some(label.as_str()), "{o}");
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL from S3 through the image: {o}");
    let served = o["tool_version"].as_str().unwrap_or_default();
    assert!(served.starts_with("pgBackRest 2.5") && served.ends_with(" in pgdrill/postgres-local:17"), "{o}");
    let log = rj.step("recover").log.join("\n");
    assert!(log.contains("this machine has no pgbackrest"), "{log}");
    let run_json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    for (what, text) in [("output", &all), ("run.json", &run_json)] {
        assert!(!text.contains(SECRET), "the S3 secret was in the {what}:\n{text}");
    }

    // Without the keys the image's pgbackrest cannot read the bucket: the environment's.
    let ran = shipped(&source, 110).env("PATH", &path).output();
    assert_eq!(ran.code, Some(3), "{}", ran.all());
    drop(team);
}
