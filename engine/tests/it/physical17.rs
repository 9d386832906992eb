//! Other tools' physical backups of PostgreSQL 17, which this machine has only as a Docker
//! image (`pgdrill/postgres-local:17`, built by ci/setup.sh with the tools from its Debian):
//! the team's server runs in that image with the tool's own archive_command and backups, and
//! `physical.verify` restores the backup with the image's tool and recovers it in a
//! throwaway of the same image. This machine's pgBackRest (2.45) refuses to restore a 17
//! backup ("invalid PostgreSQL version 170000") and its server binaries are 15's.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use crate::physical_tools::{
    folders_left_by, ledger_lines, ok, segments_after, server_user, service_account_key, shipped, work_dir,
};

/// What every recovery of a 17 backup to the mark `pgdrill_mark` in the image shows: the
/// `recover` step of `rj` passed, proven against the source at the mark, its backup `backup`
/// restored by `tool` (a version starting `version`) of the image and its WAL replayed in a
/// throwaway of PostgreSQL 17, the log naming what served and why the image. The outputs
/// and the log.
fn recovered_to_the_mark_in_the_image(
    rj: &RunJson,
    tool: &str,
    version: &str,
    backup: &str,
) -> (serde_json::Value, String) {
    let rec = rj.step("recover");
    assert_eq!(rec.outcome, "passed", "{:?}", rec.message);
    let o = &rec.outputs;
    assert_eq!((o["tool"].as_str(), o["backup"].as_str()), (Some(tool), Some(backup)), "{o}");
    let served = o["tool_version"].as_str().unwrap_or_default();
    assert!(served.starts_with(version) && served.ends_with(" in pgdrill/postgres-local:17"), "{o}");
    assert!(o["server_version"].as_str().is_some_and(|v| v.starts_with("17.")), "{o}");
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert_eq!(o["marker"], true, "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL through the image's {tool}: {o}");
    let log = rec.log.join("\n");
    assert!(log.contains(&format!("served by {tool} {served}")), "the log names what served:\n{log}");
    assert!(log.contains("no PostgreSQL 17 server binaries"), "and why the image:\n{log}");
    (o.clone(), log)
}

/// The outputs of the `recover` step in the run.json under `report`, which passed, its copy
/// equal to the source at the target and holding the marker rows.
fn equal_to_the_target(report: &Path) -> serde_json::Value {
    let rec = RunJson::read(report).step("recover").clone();
    assert_eq!(rec.outcome, "passed", "{:?}", rec.message);
    let o = rec.outputs;
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert_eq!(o["marker"], true, "{o}");
    o
}

/// The PostgreSQL 17 image ci/setup.sh builds, with the tools' Debian packages in it.
pub(crate) const IMAGE_17: &str = "pgdrill/postgres-local:17";
const BIN: &str = "/usr/lib/postgresql/17/bin";

/// The user the team's server runs as: the one pgdrill's throwaway runs as (`nobody` when
/// the tests run as root), so what the tool writes, the throwaway reads.
fn ids() -> (u32, u32) {
    server_user().unwrap_or((nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw()))
}

/// The team's PostgreSQL 17 machine: a container of the 17 image with `dir` mounted at its
/// own path (the server's socket, the tool's configuration and repository are there), where
/// each command runs as `ids()`. Removed, with all it runs, when dropped.
pub(crate) struct Team17 {
    name: String,
    dir: PathBuf,
}

impl Team17 {
    /// The team's pgBackRest setup run by `pgbr` (its command with config and stanza): the
    /// server archiving with it, a full backup under writes, 100 rows, a `pitr.mark` (its
    /// run.json in `work`), 7 rows and a table after the mark, the last segment archived
    /// (`check`); the mark, the backup's label, `pgbackrest info` as JSON and a time read
    /// from the server between the mark and the next commit.
    pub(crate) fn pgbackrest_full_backup(
        &self,
        pgbr: &str,
        dir: &Path,
        work: &Path,
    ) -> (PathBuf, String, serde_json::Value, String) {
        self.sh(&format!("mkdir -p {}/repo", dir.display()));
        self.start_server(&format!("{pgbr} archive-push %p"));
        self.sh(&format!("{pgbr} stanza-create >/dev/null"));
        self.sql("create table drill(id serial primary key, batch int not null)");
        self.sql("insert into drill(batch) select 0 from generate_series(1, 10)");
        self.under_load(3, &format!("{pgbr} --type=full backup >/dev/null"));
        self.sql("insert into drill(batch) select 1 from generate_series(1, 100)");
        let mark_file = mark(&self.url(), work);
        // The server's own clock after the mark's commit and before the next one.
        let between =
            self.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
        // After the mark: rows and a table the end of the archive has and the mark has not.
        self.sql("insert into drill(batch) select 2 from generate_series(1, 7)");
        self.sql("create table after_mark(id int)");
        // `check` switches WAL and waits until the segment is archived.
        self.sh(&format!("{pgbr} --log-level-console=error check"));
        let info: serde_json::Value =
            serde_json::from_str(self.sh(&format!("{pgbr} --output=json info")).trim()).expect("pgbackrest info json");
        let label = info[0]["backup"][0]["label"].as_str().expect("a backup label").to_string();
        (mark_file, label, info, between)
    }

    /// `network`: the host's (a bucket to reach) or none.
    pub(crate) fn start(dir: &Path, network: bool) -> Team17 {
        let name = format!("pgdrill-test-team17-{}-{}", std::process::id(), free_port());
        let (uid, gid) = ids();
        let mount = format!("{}:{}", dir.display(), dir.display());
        ok(
            Command::new("docker").args([
                "run",
                "-d",
                "--init",
                "--name",
                &name,
                "--network",
                if network { "host" } else { "none" },
                "--user",
                &format!("{uid}:{gid}"),
                "--volume",
                &mount,
                "--entrypoint",
                "sleep",
                IMAGE_17,
                "infinity",
            ]),
            "docker run the team's 17 machine",
        );
        Team17 { name, dir: dir.to_path_buf() }
    }

    /// `sh -c script` in the container, which must succeed: its stdout.
    #[track_caller]
    pub(crate) fn sh(&self, script: &str) -> String {
        let (uid, gid) = ids();
        ok(
            Command::new("docker").args(["exec", "-u", &format!("{uid}:{gid}"), &self.name, "sh", "-c", script]),
            "a script on the team's 17 machine",
        )
    }

    /// initdb and start a server archiving with `archive_command`, on a socket in `dir/pg`.
    pub(crate) fn start_server(&self, archive_command: &str) {
        let d = self.dir.display();
        self.sh(&format!(
            "set -e\nmkdir -p {d}/pg\n{BIN}/initdb -U postgres -A trust --no-sync -D {d}/pg/data >/dev/null\n\
             cat >> {d}/pg/data/postgresql.auto.conf <<'EOF'\nlisten_addresses = ''\nunix_socket_directories = '{d}/pg'\n\
             wal_level = replica\narchive_mode = on\narchive_command = '{}'\nfsync = off\nlc_messages = 'C'\nEOF\n\
             {BIN}/pg_ctl -w -D {d}/pg/data -l {d}/pg/log start >/dev/null\n",
            archive_command.replace('\'', "''")
        ));
    }

    /// One query's answer, unaligned.
    #[track_caller]
    pub(crate) fn sql(&self, sql: &str) -> String {
        let (uid, gid) = ids();
        ok(
            Command::new("docker")
                .args(["exec", "-u", &format!("{uid}:{gid}"), &self.name, "psql", "-X", "-q", "-At"])
                .args(["-v", "ON_ERROR_STOP=1", "-U", "postgres", "-d", "postgres", "-h"])
                .arg(self.dir.join("pg"))
                .args(["-c", sql]),
            sql,
        )
        .trim()
        .to_string()
    }

    /// A write load in the background for about `seconds`, then `script` (the tool's backup)
    /// while it runs: the backup is taken under writes.
    pub(crate) fn under_load(&self, seconds: u32, script: &str) -> String {
        let d = self.dir.display();
        let load = format!(
            "do $$ begin for i in 1..{} loop insert into load(pad) select repeat('x', 200) from generate_series(1, 50); commit; perform pg_sleep(0.1); end loop; end $$",
            seconds * 10
        );
        self.sql("create table load(id bigserial, pad text)");
        // `$$` inside sh's double quotes is sh's pid: the block is quoted for sh, or the load
        // never ran (psql said "syntax error at or near \"79\"" and the backup had no writes).
        let load = load.replace('$', "\\$");
        self.sh(&format!("set -e\npsql -X -q -h {d}/pg -U postgres -c \"{load}\" &\n{script}\nwait $!\n"))
    }

    /// The server's connection string, over its socket.
    pub(crate) fn url(&self) -> String {
        format!("host={} port=5432 user=postgres dbname=postgres", self.dir.join("pg").display())
    }
}

impl Drop for Team17 {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.name]).stdout(Stdio::null()).status();
    }
}

/// Containers Docker has (running or not) labelled as those of the pgdrill process `pid`.
pub(crate) fn containers_of(pid: u32) -> Vec<String> {
    let owner = format!("pgdrill.owner={}:{pid}", pgdrill::testkit::util::hostname().unwrap_or_default());
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={owner}"), "--format", "{{.Names}}"])
        .output()
        .expect("docker ps");
    text(&out.stdout).lines().map(str::to_string).collect()
}

/// `run` to its end, spawned so its pid (the owner its containers are labelled with) is
/// known: the pid, the exit code and both streams.
pub(crate) fn spawned(run: Run) -> (u32, Option<i32>, String) {
    let child = run.command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn pgdrill");
    let pid = child.id();
    let out = child.wait_with_output().expect("wait");
    (pid, out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
}

/// pitr.mark on the team's server: its schema and rows and a restore point `pgdrill_mark`,
/// kept in `report/run.json` as a team keeps it.
pub(crate) fn mark(url: &str, work: &Path) -> PathBuf {
    mark_at(url, work, "pgdrill_mark")
}

/// `mark` with a restore point of another name (its run's report in `work/<point>`).
pub(crate) fn mark_at(url: &str, work: &Path, point: &str) -> PathBuf {
    let book = work.join(format!("{point}.yaml"));
    std::fs::write(
        &book,
        format!("name: mark\nvars:\n  url: \"\"\nsteps:\n  - id: mark\n    uses: pitr.mark\n    with:\n      url: \"{{{{ vars.url }}}}\"\n      restore_point: {point}\n"),
    )
    .expect("mark runbook");
    let report = work.join(point);
    let marked = Run::new(&book).var("url", url).report(&report).output();
    assert_eq!(marked.code, Some(0), "{}", marked.all());
    report.join("run.json")
}

/// Whether Docker has the 17 image with the tools in it (a missing image fails in CI).
pub(crate) fn image_with_tools() -> bool {
    if !docker_ready(IMAGE_17) {
        return false;
    }
    let tools = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE_17, "-c"])
        .arg("command -v pgbackrest >/dev/null && command -v barman-cloud-backup >/dev/null && command -v barman-cloud-restore >/dev/null && command -v barman")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(tools, "the 17 image lacks pgbackrest, barman-cloud or barman: run bash ci/setup.sh");
    true
}

/// Regression (issue 39): a pgBackRest backup of a PostgreSQL 17 server was never recovered
/// here: this machine's pgBackRest (2.45) refuses to restore it and its server binaries are
/// 15's, so `verify-physical` ended with exit 3. Now the backup is restored by the pgBackRest
/// of the 17 image (2.55.1) and recovered in a throwaway of that image, with the verdicts of
/// 15: the restore point reached, the copy equal to the source at the mark (`expect`),
/// amcheck, freshness, RTO with its phases, the ledger keyed by pgBackRest's label; the end
/// of the archive, past the mark, differs from it and fails naming the rows; a time target
/// at the mark stops before the next commit and equals the mark; a machine
/// without the image is exit 3 naming what to build; and no container is left after a
/// success, a failure or a pgdrill killed with -9 (removed by the next recovery).
#[test]
fn a_postgresql_17_pgbackrest_backup_is_restored_and_recovered_in_its_image_with_the_verdicts_of_15() {
    if !require(on_path("pgbackrest"), "pgbackrest (Debian package pgbackrest)") || !image_with_tools() {
        return;
    }
    let work = work_dir();
    let dir = made_dir(work.path().join("team"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.display();
    let config = written(
        dir.join("pgbackrest.conf"),
        format!(
            "[global]\nrepo1-path={d}/repo\nlog-path={d}\nlock-path={d}/lock\nlog-level-file=off\nstart-fast=y\n\
             archive-timeout=60\nrepo1-retention-full=2\n\n[demo]\npg1-path={d}/pg/data\npg1-socket-path={d}/pg\npg1-user=postgres\n"
        ),
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    // The team's setup, all in the image: its server archives with pgBackRest, which takes a
    // full backup under writes.
    let team = Team17::start(&dir, false);
    let pgbr = format!("pgbackrest --config={d}/pgbackrest.conf --stanza=demo");
    let (mark_file, label, info, between) = team.pgbackrest_full_backup(&pgbr, &dir, work.path());
    assert!(info[0]["backup"][0]["backrest"]["version"].as_str().is_some_and(|v| v.starts_with("2.5")), "{info}");
    assert_eq!(info[0]["db"][0]["version"], "17", "{info}");

    let source = format!("pgbackrest://demo?config={}", config.display());
    let listed = Run::cli(["backups", "list", "--json", "--storage", &source]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!((v[0]["id"].as_str(), v[0]["pg_major"].as_u64()), (Some(label.as_str()), Some(17)), "{}", listed.stdout);

    // A pgdrill killed with -9 while its throwaway runs in Docker: the container stays until
    // the next recovery removes it (asserted after the next run).
    let mut killed =
        shipped(&source, 117).command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let killed_pid = killed.id();
    let seen = wait_for(Duration::from_secs(180), || {
        let names = containers_of(killed_pid);
        names.iter().any(|n| n.starts_with("pgdrill-recover-")).then_some(names)
    });
    let _ = killed.kill();
    let _ = killed.wait();
    assert!(seen.is_some(), "the throwaway of PostgreSQL 17 never ran in Docker");

    // At the mark: the copy equals the source there, and every verdict of 15 holds.
    let ledger = made_dir(work.path().join("ledger"));
    let with_ledger = format!("{source}&ledger={}", ledger.display());
    let report = work.path().join("at_mark");
    let (pid, code, all) = spawned(
        shipped(&with_ledger, 110)
            .var("expect", mark_file.display())
            .var("target_name", "pgdrill_mark")
            .report(&report)
            .junit(work.path().join("at_mark.xml")),
    );
    assert_eq!(code, Some(0), "a 17 backup recovered in its image must pass with proof:\n{all}");
    assert!(containers_of(pid).is_empty(), "a passed run left containers: {:?}", containers_of(pid));
    assert!(containers_of(killed_pid).is_empty(), "the killed run's containers: {:?}", containers_of(killed_pid));
    let rj = RunJson::read(&report);
    let (o, _) = recovered_to_the_mark_in_the_image(&rj, "pgbackrest", "pgBackRest 2.5", &label);
    assert!(o["backup_sha256"].as_str().is_some_and(|s| s.len() == 64), "{o}");
    for id in ["amcheck", "freshness", "rto", "record"] {
        assert_eq!(rj.step(id).outcome, "passed", "{id}: {:?}", rj.step(id).message);
    }
    let rto = &rj.step("rto").outputs;
    assert!(rto["phases"]["base_restore"].as_f64().is_some_and(|s| s > 0.0), "{rto}");
    assert!(rto["phases"]["wal_replay"].as_f64().is_some_and(|s| s > 0.0), "{rto}");
    let lines = ledger_lines(&ledger);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0]["backup"].as_str(), lines[0]["result"].as_str()), (Some(label.as_str()), Some("passed")));
    let listed = Run::cli(["backups", "list", "--json", "--storage", &with_ledger]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(v[0]["last_verification"]["result"], "passed", "{}", listed.stdout);

    // The end of the archive against the same mark: the rows and the table written after it
    // are named, a failure; and its throwaway is gone too.
    let (pid, code, all) = spawned(shipped(&with_ledger, 117).var("expect", mark_file.display()));
    assert_eq!(code, Some(1), "the end of the archive differs from the mark:\n{all}");
    assert!(all.contains("public.drill: 117 rows, expected 110"), "{all}");
    assert!(all.contains("public.after_mark: not in the source"), "{all}");
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));
    assert_eq!(ledger_lines(&ledger).last().map(|l| l["result"].clone()), Some("failed".into()));

    // A time target between two commits: read from the server after the mark's rows and
    // before the next commit (it was the mark's own instant). The copy equals the source at
    // the mark, the server stopped before that commit.
    let report = work.path().join("at_time");
    let (pid, code, all) =
        spawned(shipped(&source, 110).var("expect", mark_file.display()).var("target_time", &between).report(&report));
    assert_eq!(code, Some(0), "a time between the mark and the next commit equals the mark:\n{all}");
    assert!(containers_of(pid).is_empty(), "a passed run left containers: {:?}", containers_of(pid));
    let o = &equal_to_the_target(&report);
    assert_eq!(o["backup"].as_str(), Some(label.as_str()), "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("recovery stopping before commit")), "{o}");

    // A WAL segment after the backup damaged in the repository: the image's archive-get
    // (2.55) refuses it inside the throwaway's container, and its record in the workspace
    // makes the verdict the archive's damage naming the segment (it was "command not
    // executable", nothing of pgBackRest's).
    let stop = info[0]["backup"][0]["archive"]["stop"].as_str().expect("stop segment").to_string();
    let after = segments_after(&dir.join("repo/archive/demo"), &stop);
    let file = after.first().expect("a segment archived after the backup").clone();
    let segment = file.file_name().and_then(|n| n.to_str()).map(|n| n[..24].to_string()).expect("a name");
    let original = std::fs::read(&file).expect("read");
    let damaged: Vec<u8> =
        original.iter().enumerate().map(|(i, b)| if (40..104).contains(&i) { b ^ 0x5a } else { *b }).collect();
    std::fs::write(&file, &damaged).expect("damage");
    let (pid, code, all) = spawned(shipped(&source, 117));
    std::fs::write(&file, &original).expect("put back");
    assert_eq!(code, Some(1), "a damaged segment fails the verification:\n{all}");
    assert!(all.contains(&format!("the WAL segment {segment} does not read back")), "{all}");
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));

    // No image of 17 (Docker unreachable here): the environment's failure naming what to
    // build, before anything is restored; never a pass.
    let ran = shipped(&source, 117).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output();
    assert_eq!(ran.code, Some(3), "{}", ran.all());
    assert!(ran.all().contains("build the image pgdrill/postgres-local:17"), "{}", ran.all());
    assert!(ran.all().contains("ci/setup.sh"), "{}", ran.all());
    drop(team);
}

/// Regression (issue 39): barman-cloud's backups of a PostgreSQL 17 server were never
/// recovered here (15's binaries only: `verify-physical` was exit 3). A 17 server in the
/// image archives with `barman-cloud-wal-archive` into S3 (moto) and into Google Cloud
/// Storage (the GCS emulator), and `barman-cloud-backup` takes a backup into each under
/// writes; pgdrill restores them with the image's barman-cloud-restore and recovers them in a
/// throwaway of the image, fetching WAL with the image's barman-cloud-wal-restore over the
/// host's network. Each recovery is judged against a `pitr.mark` taken on the team's server
/// (`expect`, content compared): the restore point and a time between the mark and the next
/// commit equal the mark, the end of the archive equals a second mark taken there and differs
/// from the first, naming the rows and the table written after it. The GCS backup (before:
/// the image had no google-cloud-storage, and barman-cloud failed with "Missing required
/// python module") recovers to the mark too, named by its backup.info's sha256 as Google's
/// client reads it. The S3 secret and the service account's key are never shown, and no
/// container is left behind.
#[test]
fn a_postgresql_17_barman_cloud_backup_is_restored_and_recovered_in_its_image() {
    if !require(on_path("barman-cloud-backup"), "barman-cloud (Debian package barman-cli-cloud)") || !image_with_tools()
    {
        return;
    }
    let google_in_image = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--entrypoint", "/usr/bin/python3", IMAGE_17, "-c"])
        .arg("from google.cloud import storage")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        google_in_image,
        "the 17 image lacks google-cloud-storage (barman-cloud's Google provider): run bash ci/setup.sh"
    );
    let Some(moto) = moto() else { return };
    let Some(gcs) = crate::gcs_emulator::gcs_emulator() else { return };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    let emulator = format!("http://127.0.0.1:{}", gcs.port);
    let secret = "barman-cloud-17-secret-never-shown";
    let work = work_dir();
    let dir = made_dir(work.path().join("team"));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.display();
    // A service account's key file, as a team names it; Google's client sends no credentials
    // to an emulator, so it proves only that the key is never shown.
    let key_file = dir.join("sa.json");
    let key_line = service_account_key(&key_file);
    let key_path = key_file.display().to_string();
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("STORAGE_EMULATOR_HOST", emulator.as_str()),
        ("GOOGLE_APPLICATION_CREDENTIALS", key_path.as_str()),
    ];
    let exports: String = env.iter().map(|(k, v)| format!("export {k}={v}\n")).collect();
    let team = Team17::start(&dir, true);
    team.sh(&format!(
        "{exports}python3 -c \"import boto3; boto3.client('s3', endpoint_url='{endpoint}').create_bucket(Bucket='drill-bkt')\""
    ));
    // The server archives every segment into both stores; its archive_command gets the keys
    // from the environment pg_ctl started it with.
    let gs = format!("gs://{}/pg", crate::gcs_emulator::BUCKET);
    let archive = format!(
        "barman-cloud-wal-archive --endpoint-url {endpoint} s3://drill-bkt/pg demo %p && barman-cloud-wal-archive --cloud-provider google-cloud-storage {gs} demo %p"
    );
    let start = format!(
        "set -e\nmkdir -p {d}/pg\n{BIN}/initdb -U postgres -A trust --no-sync -D {d}/pg/data >/dev/null\n\
         cat >> {d}/pg/data/postgresql.auto.conf <<'EOF'\nlisten_addresses = ''\nunix_socket_directories = '{d}/pg'\n\
         wal_level = replica\narchive_mode = on\narchive_command = '{archive}'\nfsync = off\nlc_messages = 'C'\nEOF\n\
         {exports}{BIN}/pg_ctl -w -D {d}/pg/data -l {d}/pg/log start >/dev/null\n"
    );
    team.sh(&start);
    team.sql("create table drill(id serial primary key, batch int not null)");
    team.sql("insert into drill(batch) select 0 from generate_series(1, 10)");
    team.under_load(
        3,
        &format!(
            "{exports}barman-cloud-backup --endpoint-url {endpoint} -U postgres -h {d}/pg s3://drill-bkt/pg demo\n\
             barman-cloud-backup --cloud-provider google-cloud-storage -U postgres -h {d}/pg {gs} demo"
        ),
    );
    team.sql("insert into drill(batch) select 1 from generate_series(1, 100)");
    // The mark: the source's schema and rows at its restore point `pgdrill_mark`.
    let mark_file = mark(&team.url(), work.path());
    // A time after the mark and before the next commit: recovery to it equals the mark.
    let between = team.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    // After the mark: rows and a table the end of the archive has and the mark has not; a
    // second mark there is what the end of the archive must equal.
    team.sql("insert into drill(batch) select 2 from generate_series(1, 7)");
    team.sql("create table after_mark(id int)");
    let end_file = mark_at(&team.url(), work.path(), "pgdrill_end");
    let seg = team.sql("select pg_walfile_name(pg_switch_wal())");
    let archived = wait_for(Duration::from_secs(60), || {
        let last = team.sql("select coalesce(last_archived_wal, '') from pg_stat_archiver");
        (last.as_str() >= seg.as_str()).then_some(())
    });
    assert!(archived.is_some(), "{seg} was not archived within a minute");

    let with_keys = |mut run: Run| {
        for (k, v) in env {
            run = run.env(k, v);
        }
        run
    };
    let never_shown = |out: &str| {
        assert!(!out.contains(secret), "the S3 secret was shown:\n{out}");
        assert!(!out.contains(&key_line), "the service account's key was shown:\n{out}");
    };
    let source = format!("barman-cloud:s3://drill-bkt/pg?server=demo&endpoint={endpoint}");
    let expect = mark_file.display().to_string();

    // At the mark's restore point: the copy equals the source there.
    let report = work.path().join("at_mark");
    let (pid, code, all) = spawned(with_keys(
        shipped(&source, 110).var("expect", &expect).var("target_name", "pgdrill_mark").report(&report),
    ));
    assert_eq!(code, Some(0), "a 17 barman-cloud backup recovered in its image, equal to the mark:\n{all}");
    never_shown(&all);
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let rj = RunJson::read(&report);
    let rec = rj.step("recover");
    assert_eq!(rec.outcome, "passed", "{:?}", rec.message);
    let o = &rec.outputs;
    assert_eq!(o["tool"], "barman-cloud", "{o}");
    let served = o["tool_version"].as_str().unwrap_or_default();
    assert!(served.starts_with("barman-cloud-restore 3.") && served.ends_with(" in pgdrill/postgres-local:17"), "{o}");
    assert!(o["server_version"].as_str().is_some_and(|v| v.starts_with("17.")), "{o}");
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert_eq!(o["marker"], true, "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL through the image's wal-restore: {o}");
    assert!(rec.log.iter().any(|l| l.contains("ground truth: the source at the target")), "{:?}", rec.log);
    never_shown(&std::fs::read_to_string(report.join("run.json")).unwrap_or_default());
    assert_eq!(rj.step("amcheck").outcome, "passed", "{:?}", rj.step("amcheck").message);

    // The end of the archive: every row, the newest archived segment replayed, no stop; equal
    // to the mark taken there.
    let report = work.path().join("at_end");
    let end_expect = end_file.display().to_string();
    let (pid, code, all) = spawned(with_keys(shipped(&source, 117).var("expect", &end_expect).report(&report)));
    assert_eq!(code, Some(0), "the end of a 17 barman-cloud archive, equal to the mark there:\n{all}");
    never_shown(&all);
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let o = &equal_to_the_target(&report);
    assert!(o["stop_line"].is_null(), "the end of the archive stops nowhere: {o}");
    // The same end against the first mark: what was written after it is named, a failure.
    let (pid, code, all) = spawned(with_keys(shipped(&source, 117).var("expect", &expect)));
    assert_eq!(code, Some(1), "the end of the archive differs from the mark:\n{all}");
    assert!(all.contains("public.drill: 117 rows, expected 110"), "{all}");
    assert!(all.contains("public.after_mark: not in the source"), "{all}");
    never_shown(&all);
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));

    // A time between the mark and the next commit: the server stopped before that commit,
    // and the copy equals the mark.
    let report = work.path().join("at_time");
    let (pid, code, all) =
        spawned(with_keys(shipped(&source, 110).var("expect", &expect).var("target_time", &between).report(&report)));
    assert_eq!(code, Some(0), "a time before the next commit of a 17 barman-cloud archive equals the mark:\n{all}");
    never_shown(&all);
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let o = &equal_to_the_target(&report);
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("recovery stopping before commit")), "{o}");

    // The same server's backup in Google Cloud Storage (`provider=` left out: a gs://
    // destination is Google's), restored and its WAL fetched by the image's barman-cloud.
    let source = format!("barman-cloud:{gs}?server=demo");
    let report = work.path().join("gcs_at_mark");
    let (pid, code, all) = spawned(with_keys(
        shipped(&source, 110).var("expect", &expect).var("target_name", "pgdrill_mark").report(&report),
    ));
    assert_eq!(code, Some(0), "a 17 barman-cloud backup in GCS recovered in its image, equal to the mark:\n{all}");
    never_shown(&all);
    assert!(containers_of(pid).is_empty(), "the run left containers: {:?}", containers_of(pid));
    let run_json = std::fs::read_to_string(report.join("run.json")).unwrap_or_default();
    never_shown(&run_json);
    let o = &equal_to_the_target(&report);
    let served = o["tool_version"].as_str().unwrap_or_default();
    assert!(served.starts_with("barman-cloud-restore 3.") && served.ends_with(" in pgdrill/postgres-local:17"), "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("restore point \"pgdrill_mark\"")), "{o}");
    assert!(o["segments_restored"].as_u64().is_some_and(|n| n >= 1), "WAL from GCS through the image: {o}");
    // Named by its backup.info as the bucket holds it, hashed again with Google's client.
    let id = o["backup"].as_str().expect("the backup's id");
    let info_sha = team
        .sh(&format!(
            "STORAGE_EMULATOR_HOST={emulator} python3 -W ignore -c \"import hashlib; from google.cloud import storage; \
             print(hashlib.sha256(storage.Client().bucket('{}').blob('pg/demo/base/{id}/backup.info').download_as_bytes()).hexdigest())\"",
            crate::gcs_emulator::BUCKET
        ))
        .trim()
        .to_string();
    assert_eq!(info_sha.len(), 64, "{info_sha}");
    assert_eq!(o["backup_sha256"], info_sha.as_str(), "{o}");
    drop(team);
    drop(gcs);
}

/// Regression (issue 39): a Barman server's backups of a PostgreSQL 17 server were never
/// recovered here: this machine's barman (3.4) lists none of the backups Barman 3.13 takes
/// (it keeps their backup.info in `meta/`, where 3.4 does not look, and says nothing), and
/// `physical.verify` refused a 17 backup as exit 3 ("barman's WAL command runs on this
/// machine"). A real Barman server in the 17 image (`backup_method = postgres`, all WAL
/// streamed: `streaming_archiver = on` with a slot, `barman receive-wal`) backs up a 17
/// server under writes; the catalogue is then this machine's `barman` user's, whose uid the
/// image gives to no `barman` (before: exit 3, barman refused to run as that uid). pgdrill
/// lists and recovers its backups with the image's barman, every call of a command in one
/// container (before: a `docker run` per call), and replays them in a throwaway of the
/// image: a restore point, a time between two marks and the end of the archive each equal
/// their `pitr.mark` (`expect`), `pitr.restore` reaches the restore point too, the newest
/// streamed segment's age (the image's `list-files`) passes max_wal_age and, dated back,
/// fails it; a backup marked FAILED and a WAL segment missing from Barman's archive each fail
/// (exit 1, named), no container is left after a pass, a failure, an interrupt (exit 130) or
/// a pgdrill killed with -9, the password in Barman's conninfo is never shown, and a machine
/// without the image is exit 3 naming what to build.
#[test]
fn a_postgresql_17_barman_servers_backups_are_served_by_the_images_barman_and_recovered_in_its_image() {
    if !require(on_path("barman"), "barman (Debian package barman)") || !image_with_tools() {
        return;
    }
    // The team's Barman (in the image) runs as the server's user; the catalogue is then handed
    // to this machine's `barman` (below), whose uid the image gives to no `barman`.
    let (uid, _) = ids();
    let user = nix::unistd::User::from_uid(uid.into()).ok().flatten().expect("the server's user").name;
    let work = work_dir();
    let dir = work.path().join("team");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let d = dir.display();
    let secret = "barman-17-conninfo-secret-never-shown";
    let config = dir.join("barman.conf");
    std::fs::write(
        &config,
        format!(
            "[barman]\nbarman_user = {user}\nbarman_home = {d}/barman\nlog_file = {d}/barman/barman.log\nlog_level = INFO\n\
             compression = gzip\nimmediate_checkpoint = true\n\n[demo]\ndescription = the team's PostgreSQL 17\n\
             conninfo = host={d}/pg port=5432 user=postgres dbname=postgres password={secret}\n\
             streaming_conninfo = host={d}/pg port=5432 user=postgres\nbackup_method = postgres\narchiver = off\n\
             streaming_archiver = on\nslot_name = barman\n"
        ),
    )
    .expect("barman.conf");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let team = Team17::start(&dir, false);
    let barman = |args: &str| team.sh(&format!("barman -c {d}/barman.conf {args}"));
    // All WAL reaches Barman by streaming (`barman receive-wal`, pg_receivewal through a
    // replication slot): the server's own archive_command keeps nothing.
    team.sh(&format!("mkdir -p {d}/barman"));
    team.start_server("true");
    // `check` creates the server's folders (it fails until a segment is archived).
    team.sh(&format!("barman -c {d}/barman.conf check demo >/dev/null || true"));
    barman("receive-wal --create-slot demo");
    team.sh(&format!("nohup barman -c {d}/barman.conf receive-wal demo >{d}/receive-wal.log 2>&1 &"));
    // Streaming before the first switch: under load `barman receive-wal` took longer to
    // connect than `switch-wal --archive` waits, and the segment was never received.
    let streaming = || team.sql("select active from pg_replication_slots where slot_name = 'barman'") == "t";
    for _ in 0..600 {
        if streaming() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(streaming(), "barman receive-wal never streamed: {}", team.sh(&format!("cat {d}/receive-wal.log")));
    team.sql("create table drill(id serial primary key, batch int not null)");
    team.sql("insert into drill(batch) select 0 from generate_series(1, 10)");
    // Barman takes no first backup before a segment reached its archive; the backup's last
    // segment is closed and archived afterwards, and `check-backup` marks the backup DONE.
    let archive =
        format!("barman -c {d}/barman.conf switch-wal --force --archive --archive-timeout 60 demo >/dev/null");
    team.sh(&archive);
    team.under_load(3, &format!("barman -c {d}/barman.conf backup demo >/dev/null 2>&1"));
    team.sh(&archive);
    barman("check-backup demo latest");
    team.sql("insert into drill(batch) select 1 from generate_series(1, 100)");
    let at_mark = mark(&team.url(), work.path());
    // A time after the mark and before the next commit: recovery to it equals the mark.
    let between = team.sql("select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'");
    team.sql("insert into drill(batch) select 2 from generate_series(1, 7)");
    team.sql("create table after_mark(id int)");
    let at_end = mark_at(&team.url(), work.path(), "pgdrill_end");
    // The segment of the last mark, closed and streamed into Barman's archive.
    team.sh(&archive);
    barman("receive-wal --stop demo");
    let streamed = walk(&dir.join("barman/demo/streaming"));
    assert!(walk(&dir.join("barman/demo/incoming")).is_empty(), "no WAL came by archive_command: {streamed:?}");
    let listed: serde_json::Value =
        serde_json::from_str(&barman("-f json list-backups demo")).expect("barman list-backups json");
    let id = listed["demo"][0]["backup_id"].as_str().expect("a backup id").to_string();
    assert_eq!(listed["demo"][0]["status"], "DONE", "{listed}");
    let info = dir.join("barman/demo/meta").join(format!("{id}-backup.info"));
    assert!(info.is_file(), "Barman 3.13 keeps backup.info in meta/: {}", info.display());

    // The catalogue now belongs to this machine's `barman` (as on the team's Barman machine),
    // whose uid the image gives to another user or none (its `barman` package's is another):
    // barman refused to run in the image as that uid (exit 3, "barman list-backups cannot
    // read the server").
    if nix::unistd::geteuid().is_root() {
        let here = nix::unistd::User::from_name("barman").ok().flatten().expect("the Debian package barman's user");
        let there = Command::new("docker")
            .args(["run", "--rm", "--network", "none", "--entrypoint", "id", IMAGE_17, "-u", "barman"])
            .output()
            .map(|o| text(&o.stdout).trim().to_string())
            .unwrap_or_default();
        eprintln!("barman's uid: {} here, {there} in {IMAGE_17}", here.uid);
        ok(Command::new("chown").args(["-R", "barman:barman"]).arg(dir.join("barman")), "chown the catalogue");
        let conf = std::fs::read_to_string(&config).expect("barman.conf");
        std::fs::write(&config, conf.replace(&format!("barman_user = {user}\n"), "barman_user = barman\n"))
            .expect("conf");
    }

    let source = format!("barman://demo?config={}", config.display());
    let listed = Run::cli(["backups", "list", "--json", "--storage", &source]).expect(0);
    let v: serde_json::Value = serde_json::from_str(&listed.stdout).expect("backups list --json");
    assert_eq!(
        (v[0]["id"].as_str(), v[0]["pg_major"].as_u64(), v[0]["tool"].as_str()),
        (Some(id.as_str()), Some(17), Some("barman")),
        "{}",
        listed.stdout
    );
    assert!(!listed.stdout.contains(secret), "{}", listed.stdout);

    // Every barman call of a command runs in one container of the image; it never outlives
    // pgdrill: killed with -9, its container ends with it (no later run needed); interrupted,
    // pgdrill removes it before it exits 130.
    let barman_container = |pid: u32| containers_of(pid).iter().any(|n| n.starts_with("pgdrill-barman-"));
    let mut killed =
        shipped(&source, 117).command().stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    let killed_pid = killed.id();
    let seen = wait_for(Duration::from_secs(180), || barman_container(killed_pid).then_some(()));
    let _ = killed.kill();
    let _ = killed.wait();
    assert!(seen.is_some(), "barman never ran in a container of the image");
    let gone = wait_for(Duration::from_secs(60), || containers_of(killed_pid).is_empty().then_some(()));
    assert!(gone.is_some(), "a pgdrill killed with -9 left containers: {:?}", containers_of(killed_pid));
    // Regression (issue 39): interrupted during `barman recover` in the container, pgdrill
    // removed the container only once the `docker exec` returned (about 30 s here; forever
    // with a hook that hangs). The team's pre_recovery_script never ends: pgdrill must remove
    // the container at once, with the recover and its hook, and exit 130.
    let hook_ran = dir.join("barman/recover-hook-ran");
    let plain = std::fs::read_to_string(&config).expect("barman.conf");
    let hook = format!("pre_recovery_script = touch {} && sleep 3617\n", hook_ran.display());
    std::fs::write(&config, format!("{plain}{hook}")).expect("barman.conf");
    let interrupted =
        shipped(&source, 117).command().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let interrupted_pid = interrupted.id();
    let hanging = wait_for(Duration::from_secs(240), || hook_ran.exists().then_some(()));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(interrupted_pid as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(interrupted.wait_with_output()));
    // A bound for a broken build only (the hook sleeps an hour): never a measure of speed.
    let out = rx.recv_timeout(Duration::from_secs(300)).ok().and_then(Result::ok);
    if out.is_none() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(interrupted_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    std::fs::write(&config, plain).expect("barman.conf without the hook");
    assert!(hanging.is_some(), "barman recover in the image never ran the team's pre_recovery_script");
    let out = out.expect("pgdrill interrupted during barman recover in its container still waited for it");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(130), "{all}");
    assert!(containers_of(interrupted_pid).is_empty(), "an interrupted run left: {:?}", containers_of(interrupted_pid));
    assert!(!process_running("sleep 3617"), "barman's hook outlived the interrupted pgdrill");
    let left = folders_left_by(interrupted_pid);
    assert!(left.is_empty(), "the interrupted run's folders stayed: {left:?}");
    let _ = std::fs::remove_file(&hook_ran);

    // The restore point of the mark: the copy equals the source there.
    let report = work.path().join("at_mark");
    let junit = work.path().join("at_mark.xml");
    let (pid, code, all) = spawned(
        shipped(&source, 110)
            .var("expect", at_mark.display())
            .var("target_name", "pgdrill_mark")
            .report(&report)
            .junit(&junit),
    );
    assert_eq!(code, Some(0), "a 17 Barman backup recovered in its image must pass with proof:\n{all}");
    assert!(containers_of(pid).is_empty(), "a passed run left containers: {:?}", containers_of(pid));
    // The killed run's own folder (its container's passwd and env file) is reaped by this one
    // (before, it was named for no reaper and stayed).
    let left = folders_left_by(killed_pid);
    assert!(left.is_empty(), "the killed run's folders stayed: {left:?}");
    let rj = RunJson::read(&report);
    let (_, log) = recovered_to_the_mark_in_the_image(&rj, "barman", "barman 3.13", &id);
    assert!(log.contains("does not list the backups"), "and why the image's barman:\n{log}");
    assert!(
        log.contains(
            "pg_verifybackup of PostgreSQL 17 in pgdrill/postgres-local:17: the files barman recover restored match"
        ),
        "the manifest checked by 17's pg_verifybackup:\n{log}"
    );
    assert_eq!(rj.step("amcheck").outcome, "passed", "{:?}", rj.step("amcheck").message);
    for f in [report.join("run.json"), junit] {
        assert!(!std::fs::read_to_string(&f).unwrap_or_default().contains(secret), "{}", f.display());
    }
    assert!(!all.contains(secret), "{all}");

    // A time between the two marks: the copy equals the source at the first one, the server
    // stopped before the next commit; Barman's newest streamed segment, dated by the image's
    // `list-files`, is within max_wal_age.
    let report = work.path().join("at_time");
    let (pid, code, all) = spawned(
        shipped(&source, 110)
            .var("expect", at_mark.display())
            .var("target_time", &between)
            .var("max_wal_age", "1h")
            .report(&report),
    );
    assert_eq!(code, Some(0), "a time between the marks equals the first mark:\n{all}");
    assert!(containers_of(pid).is_empty(), "a passed run left containers: {:?}", containers_of(pid));
    let rj = RunJson::read(&report);
    let rec = rj.step("recover");
    let o = &rec.outputs;
    assert_eq!(o["ground_truth"], "source at the target", "{o}");
    assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("recovery stopping before commit")), "{o}");
    let newest = o["newest_wal"].as_str().unwrap_or_default().to_string();
    assert!(newest.len() == 24 && o["newest_wal_age_s"].as_u64().is_some_and(|a| a < 3600), "{o}");
    assert!(rec.log.join("\n").contains(&format!("newest WAL {newest} archived")), "{:?}", rec.log);

    // The end of the archive: the copy equals the source at its last mark. Barman's newest
    // segment dated three days back: older than max_wal_age 1d, a failure naming it, after
    // the recovery and the comparison held.
    let newest_file = walk(&dir.join("barman/demo/wals"))
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&newest)))
        .expect("the newest segment in Barman's archive");
    ok(Command::new("touch").args(["-d", "3 days ago"]).arg(&newest_file), "date the segment back");
    let report = work.path().join("at_end");
    let (pid, code, all) =
        spawned(shipped(&source, 117).var("expect", at_end.display()).var("max_wal_age", "1d").report(&report));
    assert_eq!(code, Some(1), "WAL older than max_wal_age must fail:\n{all}");
    let rj = RunJson::read(&report);
    let rec = rj.step("recover");
    let why = rec.message.clone().unwrap_or_default();
    assert!(
        why.contains(&format!("the archive's newest WAL segment {newest} was archived 3days"))
            && why.contains("longer than max_wal_age 1day"),
        "{why}"
    );
    let log = rec.log.join("\n");
    assert!(log.contains("ground truth: the source at the target"), "the end equals the last mark:\n{log}");
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));

    // pitr.restore reads the same source the same way.
    let pitr_book = work.path().join("pitr.yaml");
    std::fs::write(
        &pitr_book,
        format!(
            "name: barman17-pitr\nsteps:\n  - id: restore\n    uses: pitr.restore\n    with:\n      source: barman\n      storage: \"{source}\"\n      target_name: pgdrill_mark\n      marker: \"select count(*) = 110 from drill\"\n      accept_unproven: true\n      timeout: 3m\n"
        ),
    )
    .expect("pitr runbook");
    let (pid, code, all) = spawned(Run::new(&pitr_book).report(work.path().join("pitr")));
    assert_eq!(code, Some(0), "{all}");
    assert!(containers_of(pid).is_empty(), "pitr.restore left containers: {:?}", containers_of(pid));
    let pj = RunJson::read(&work.path().join("pitr"));
    let s = &pj.step("restore").outputs;
    assert_eq!(s["backup"], id.as_str(), "{s}");
    assert!(
        s["tool"]
            .as_str()
            .is_some_and(|t| t.starts_with("barman 3.13") && t.ends_with(" in pgdrill/postgres-local:17")),
        "{s}"
    );
    assert!(s["stop_line"].as_str().is_some_and(|l| l.contains("pgdrill_mark")), "{s}");

    // Issue 39: the path of a pgdrill not run as root had no test. Run as the catalogue's
    // owner (`barman`: uid 103 here, 101 in the image) with Docker's group, pgdrill runs the
    // image's barman with its own ids, the backup recovers to the mark, and nothing in the
    // catalogue changes owner.
    if nix::unistd::geteuid().is_root() {
        use std::os::unix::fs::MetadataExt;
        let owner = nix::unistd::User::from_name("barman").ok().flatten().expect("the Debian package barman's user");
        let docker = nix::unistd::Group::from_name("docker").ok().flatten().expect("Docker's group");
        let catalogue = dir.join("barman");
        let owners = || {
            let mut o: Vec<(u32, u32)> = walk(&catalogue)
                .into_iter()
                .chain([catalogue.clone()])
                .filter_map(|p| std::fs::symlink_metadata(p).ok())
                .map(|m| (m.uid(), m.gid()))
                .collect();
            o.sort();
            o.dedup();
            o
        };
        let theirs = vec![(owner.uid.as_raw(), owner.gid.as_raw())];
        assert_eq!(owners(), theirs, "the catalogue is barman's before the run");
        let report = work.path().join("as_barman");
        std::fs::create_dir_all(&report).expect("mkdir");
        nix::unistd::chown(&report, Some(owner.uid), Some(owner.gid)).expect("chown");
        let run = shipped(&source, 110).var("target_name", "pgdrill_mark").report(&report).command();
        let mut as_barman = Command::new("setpriv");
        as_barman.args([
            format!("--reuid={}", owner.uid),
            format!("--regid={}", owner.gid),
            format!("--groups={}", docker.gid),
            "--".into(),
        ]);
        as_barman.arg(run.get_program()).args(run.get_args()).env("HOME", "/tmp");
        for (k, v) in run.get_envs() {
            match v {
                Some(v) => as_barman.env(k, v),
                None => as_barman.env_remove(k),
            };
        }
        if let Some(d) = run.get_current_dir() {
            as_barman.current_dir(d);
        }
        let out = as_barman.output().expect("pgdrill as barman");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "pgdrill run as barman, not root:\n{all}");
        let rec = RunJson::read(&report);
        let o = &rec.step("recover").outputs;
        assert!(o["tool_version"].as_str().is_some_and(|t| t.ends_with(" in pgdrill/postgres-local:17")), "{o}");
        assert!(o["stop_line"].as_str().is_some_and(|l| l.contains("pgdrill_mark")), "{o}");
        assert_eq!(owners(), theirs, "a pgdrill run as barman changed owners in the catalogue");
    }

    // A WAL segment after the backup missing from Barman's archive: never a pass.
    let mut wals: Vec<PathBuf> = walk(&dir.join("barman/demo/wals"))
        .into_iter()
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.len() == 24))
        .collect();
    wals.sort();
    let victim = wals.last().expect("Barman's archive holds WAL").clone();
    let aside = work.path().join("aside");
    std::fs::rename(&victim, &aside).expect("take a segment out");
    let (pid, code, all) = spawned(shipped(&source, 117));
    std::fs::rename(&aside, &victim).expect("put the segment back");
    assert_eq!(code, Some(1), "a segment missing from Barman's archive must fail:\n{all}");
    let missing = victim.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    assert!(all.contains(missing), "the failure names the missing segment {missing}:\n{all}");
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));

    // The backup marked FAILED by Barman: never a pass, and nothing is restored.
    let text = std::fs::read_to_string(&info).expect("backup.info");
    assert!(text.contains("status=DONE"), "{text}");
    std::fs::write(&info, text.replace("status=DONE", "status=FAILED")).expect("mark FAILED");
    let (pid, code, all) = spawned(shipped(&source, 117));
    std::fs::write(&info, &text).expect("put back");
    assert_eq!(code, Some(1), "a backup Barman marks FAILED must fail:\n{all}");
    assert!(all.contains(&format!("Barman marks the backup `{id}` of the server `demo` FAILED")), "{all}");
    assert!(!all.contains("restored by"), "nothing is restored from a FAILED backup:\n{all}");
    assert!(containers_of(pid).is_empty(), "a failed run left containers: {:?}", containers_of(pid));

    // No Docker here: this machine's barman lists none of the backups, so no list at all:
    // the environment's failure naming what to build.
    let ran = shipped(&source, 117).env("DOCKER_HOST", "unix:///nonexistent/docker.sock").output();
    assert_eq!(ran.code, Some(3), "{}", ran.all());
    assert!(
        ran.all().contains("pgdrill/postgres-local:17 with barman") && ran.all().contains("ci/setup.sh"),
        "{}",
        ran.all()
    );
    assert!(!ran.all().contains(secret), "{}", ran.all());
    drop(team);
}
