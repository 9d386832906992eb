//! `pgdrill doctor`, `pgdrill completions` and `pgdrill --version`, run as the binary on this
//! machine's real Docker engine, PostgreSQL binaries and file systems; each missing piece is
//! taken away for real (the variable removed, a dead Docker socket, an empty PATH).

use std::process::{Command, Output};

use crate::common;
use crate::common::{free_port, pgdrill, require, text, written};

/// A passphrase long enough to pass; it must never appear in doctor's output.
const KEY: &str = "doctor test passphrase Never-Shown 42";

/// `pgdrill doctor ARGS` with the key set and no storage or database from the environment.
fn doctor(args: &[&str]) -> Command {
    let mut all = vec!["doctor"];
    all.extend_from_slice(args);
    let mut c = pgdrill(&all);
    c.env("PGDRILL_BACKUP_KEY", KEY).env_remove("PGDRILL_STORAGE");
    c
}

fn output(mut c: impl std::borrow::BorrowMut<Command>) -> (Output, String) {
    let c: &mut Command = c.borrow_mut();
    let out = c.output().expect("pgdrill doctor runs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!all.contains(KEY), "the key's value was printed:\n{all}");
    (out, all)
}

/// The line doctor printed about `what`.
fn line<'a>(all: &'a str, what: &str) -> &'a str {
    all.lines().find(|l| l.contains(what)).unwrap_or_else(|| panic!("no line about {what}:\n{all}"))
}

/// Whether this machine can run at all (Docker or local binaries): else the passing cases
/// cannot pass, and say so.
fn can_run(all: &str) -> bool {
    require(!all.contains("neither Docker nor local"), "Docker or local PostgreSQL binaries")
}

#[test]
fn doctor_passes_with_a_writable_local_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, all) = output(doctor(&["--storage", &dir.path().to_string_lossy()]));
    if !can_run(&all) {
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("a run can proceed"), "{all}");
    assert!(!all.contains("FAIL"), "{all}");
    assert!(line(&all, "storage ").starts_with("ok"), "{all}");
    assert!(line(&all, "backup key (PGDRILL_BACKUP_KEY)").contains("passphrase of"), "{all}");
    assert!(line(&all, "initdb cache").starts_with("ok"), "{all}");
    // The check's file is gone again.
    assert_eq!(std::fs::read_dir(dir.path()).expect("read").count(), 0, "doctor left a file in the storage");
}

#[test]
fn doctor_names_a_missing_key_and_exits_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, all) = output(doctor(&["--storage", &dir.path().to_string_lossy()]).env_remove("PGDRILL_BACKUP_KEY"));
    assert_eq!(out.status.code(), Some(3), "{all}");
    let l = line(&all, "backup key");
    assert!(
        l.starts_with("FAIL") && l.contains("PGDRILL_BACKUP_KEY is not set") && l.contains("openssl rand"),
        "{all}"
    );
}

#[test]
fn doctor_refuses_a_short_key_without_printing_it() {
    let short = "tiny-key9";
    let (out, all) = output(doctor(&[]).env("PGDRILL_BACKUP_KEY", short));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(line(&all, "backup key").contains("9 characters long"), "{all}");
    assert!(!all.contains(short), "the short key was printed:\n{all}");
}

#[test]
fn doctor_names_a_storage_folder_that_is_not_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("not-mounted");
    let (out, all) = output(doctor(&["--storage", &missing.to_string_lossy()]));
    assert_eq!(out.status.code(), Some(3), "{all}");
    let l = line(&all, "storage ");
    assert!(l.starts_with("FAIL") && l.contains("not-mounted") && l.contains("mkdir"), "{all}");
    assert!(!missing.exists(), "doctor created the storage folder");
}

#[test]
fn doctor_names_an_unwritable_storage_folder() {
    // sysfs takes no new files, for root too (chmod would not stop root).
    let (out, all) = output(doctor(&["--storage", "/sys"]));
    assert_eq!(out.status.code(), Some(3), "{all}");
    let l = line(&all, "storage /sys");
    assert!(l.starts_with("FAIL") && l.contains("not writable"), "{all}");
    // A file where a folder should be.
    let f = tempfile::NamedTempFile::new().expect("file");
    let (out, all) = output(doctor(&["--storage", &f.path().to_string_lossy()]));
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(line(&all, "storage ").contains("is not a directory"), "{all}");
}

#[test]
fn doctor_names_an_unreachable_database_without_its_password() {
    let password = "Sekrit-Doctor-Pw-77";
    let url = format!("postgres://drill:{password}@127.0.0.1:1/app");
    let (out, all) = output(doctor(&["--database-url", &url]));
    assert_eq!(out.status.code(), Some(3), "{all}");
    let l = line(&all, "database ");
    assert!(l.starts_with("FAIL") && l.contains("127.0.0.1"), "{all}");
    assert!(!all.contains(password), "the password was printed:\n{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_reads_the_clock_of_a_reachable_database() {
    let Some(server) = common::native_server("doctor").await else { return };
    let url = server.url();
    let (out, all) = output(doctor(&["--database-url", &url]));
    server.stop().await;
    if !can_run(&all) {
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{all}");
    let l = line(&all, "database ");
    assert!(l.starts_with("ok") && l.contains("PostgreSQL 15") && l.contains("its clock is"), "{all}");
    let pw = pgdrill::testkit::pg::conninfo::parse(&url)
        .ok()
        .and_then(|p| p.into_iter().find(|(k, _)| k == "password").map(|(_, v)| v))
        .expect("the server's URL holds a password");
    assert!(!all.contains(&pw), "the password was printed:\n{all}");
}

#[test]
fn doctor_names_a_dead_docker_engine() {
    let (_, all) = output(doctor(&[]).env("DOCKER_HOST", "unix:///nonexistent/pgdrill-doctor/docker.sock"));
    let l = line(&all, "Docker engine");
    assert!(!l.starts_with("ok") && l.contains("start Docker"), "{all}");
    assert!(!all.contains("Docker image for"), "images were checked without an engine:\n{all}");
}

#[test]
fn doctor_names_postgresql_tools_missing_from_path() {
    let empty = tempfile::tempdir().expect("tempdir");
    let (_, all) = output(doctor(&[]).env("PATH", empty.path()));
    let l = line(&all, "tools on PATH");
    assert!(l.starts_with("warn") && l.contains("pg_dump") && l.contains("psql") && l.contains("not on PATH"), "{all}");
}

#[test]
fn completions_for_bash_parse_and_fish_and_zsh_name_the_subcommands() {
    let out = pgdrill(&["completions", "bash"]).output().expect("completions");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let path = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(path.path(), &out.stdout).expect("write");
    let check = Command::new("bash").arg("-n").arg(path.path()).output().expect("bash -n");
    assert!(check.status.success(), "bash -n: {}", text(&check.stderr));
    for shell in ["fish", "zsh"] {
        let out = pgdrill(&["completions", shell]).output().expect("completions");
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        let body = text(&out.stdout);
        for sub in ["run", "validate", "doctor", "completions", "backups", "fleet"] {
            assert!(body.contains(sub), "{shell} completions do not name {sub}");
        }
    }
    let bad = pgdrill(&["completions", "cmd.exe"]).output().expect("completions");
    assert_eq!(bad.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn version_names_the_commit_and_the_tested_majors() {
    let out = pgdrill(&["--version"]).output().expect("--version");
    assert!(out.status.success());
    let v = text(&out.stdout);
    assert!(v.contains("tested with PostgreSQL 15 and 17"), "{v}");
    assert!(v.contains(", built 20"), "{v}");
    match Command::new("git").args(["rev-parse", "--short", "HEAD"]).current_dir(common::root()).output() {
        Ok(g) if g.status.success() => {
            let commit = text(&g.stdout).trim().to_string();
            assert!(v.contains(&format!("(commit {commit},")), "--version does not name HEAD {commit}: {v}");
        }
        _ => assert!(v.contains("(commit unknown,"), "{v}"),
    }
}

const AWS_SECRET: &str = "doctor-aws-secret-never-shown";

fn doctor_s3(location: &str, port: u16) -> (Output, String) {
    let (out, all) = output(
        doctor(&["--storage", location])
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"))
            .env("AWS_ALLOW_HTTP", "true")
            .env_remove("AWS_PROFILE"),
    );
    assert!(!all.contains(AWS_SECRET), "the secret access key was printed:\n{all}");
    (out, all)
}

#[test]
fn doctor_lists_an_object_store_and_names_a_missing_bucket_or_a_dead_endpoint() {
    let Some(moto) = common::moto() else { return };
    let (status, reply) = common::s3_request(moto.port, "PUT", "/doctor-bkt", &[]);
    assert_eq!(status, 200, "{reply}");
    let (out, all) = doctor_s3("s3://doctor-bkt/backups", moto.port);
    if can_run(&all) {
        assert_eq!(out.status.code(), Some(0), "{all}");
    }
    assert!(line(&all, "storage s3://doctor-bkt/backups").starts_with("ok"), "{all}");
    let (out, all) = doctor_s3("s3://no-such-bucket/backups", moto.port);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(line(&all, "storage s3://no-such-bucket").starts_with("FAIL"), "{all}");
    let dead = moto.port;
    drop(moto);
    let (out, all) = doctor_s3("s3://doctor-bkt/backups", dead);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(line(&all, "storage s3://doctor-bkt").starts_with("FAIL"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_a_clock_skewed_against_the_database() {
    let found = Command::new("sh").args(["-c", "command -v faketime"]).output().is_ok_and(|o| o.status.success());
    if !require(found, "faketime (apt faketime)") {
        return;
    }
    let Some(server) = common::native_server("doctor_skew").await else { return };
    let url = server.url();
    // pgdrill's wall clock 10 minutes ahead of the server's (timers keep the real monotonic clock).
    let run = |offset: &str| {
        let mut c = Command::new("faketime");
        c.args(["-f", offset]).arg(common::bin()).args(["doctor", "--database-url", &url]);
        c.current_dir(common::root())
            .env("PGDRILL_BACKUP_KEY", KEY)
            .env("DONT_FAKE_MONOTONIC", "1")
            .env_remove("PGDRILL_STORAGE");
        output(c)
    };
    let (out, all) = run("+10m");
    let (_, slight) = run("-5s");
    server.stop().await;
    assert_eq!(out.status.code(), Some(3), "{all}");
    let l = line(&all, "database ");
    assert!(l.starts_with("FAIL") && l.contains("behind ours") && l.contains("NTP"), "{all}");
    let l = line(&slight, "database ");
    assert!(l.starts_with("warn") && l.contains("ahead of ours"), "{slight}");
}

fn aiosmtpd_ok() -> bool {
    Command::new("/usr/bin/python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success())
}

/// `doctor --notify` tries every sink without sending anything: the SMTP server takes the
/// login, the sender and the recipient (the mailbox stays empty); a webhook whose variable
/// is unset and one whose host does not answer are each named, with what to do; neither the
/// SMTP password nor a webhook's token is printed; a wrong SMTP password is a failure too.
#[test]
fn doctor_tries_the_notify_sinks_without_sending_and_names_each_one_that_would_fail() {
    if !require(aiosmtpd_ok(), "python3-aiosmtpd (Debian package, ci/setup.sh)") {
        return;
    }
    const PASSWORD: &str = "doctor-smtp-Pw-5e0c1a";
    const TOKEN: &str = "T0KEN-doctor-hook-77";
    let dir = tempfile::tempdir().expect("tempdir");
    let maildir = dir.path().join("maildir");
    let smtp_port = free_port();
    let _smtp = common::smtp_with_auth(smtp_port, &maildir, PASSWORD);
    let dead_port = free_port();
    let file = written(
        dir.path().join("notify.yaml"),
        format!(
            "notify:
  - name: oncall-mail
    when: failure
    email: {{ smtp: '127.0.0.1:{smtp_port}', tls: none, user: pgdrill, password_env: DOCTOR_SMTP_PW,
             from: pgdrill@example.org, to: [dba@example.org] }}
  - name: \"chat\\e[2J\"
    when: failure
    webhook: {{ url_env: DOCTOR_HOOK_URL, format: slack }}
  - name: dead-hook
    when: always
    webhook: {{ url: 'http://127.0.0.1:{dead_port}/hooks/{TOKEN}' }}
"
        ),
    );
    let (out, all) = output(
        doctor(&["--notify", &file.to_string_lossy()]).env("DOCTOR_SMTP_PW", PASSWORD).env_remove("DOCTOR_HOOK_URL"),
    );
    assert!(!all.contains(PASSWORD) && !all.contains(TOKEN), "a notify secret was printed:\n{all}");
    let mail = line(&all, "oncall-mail (email)");
    assert!(mail.starts_with("ok") && mail.contains("after AUTH") && mail.contains("1 recipient"), "{mail}");
    let delivered = std::fs::read_dir(maildir.join("new")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(delivered, 0, "doctor sent a message");
    // A sink's name is the user's text: shown, never sent to the terminal as a control.
    assert!(!all.contains('\u{1b}'), "an escape from a sink's name reached the terminal:\n{all}");
    let chat = line(&all, "(webhook)");
    assert!(chat.starts_with("FAIL") && chat.contains("DOCTOR_HOOK_URL is not set"), "{chat}");
    let dead = line(&all, "dead-hook (webhook)");
    assert!(dead.starts_with("FAIL") && dead.contains(&format!("127.0.0.1:{dead_port}")), "{dead}");
    assert_eq!(out.status.code(), Some(3), "{all}");

    let (_, all) = output(
        doctor(&["--notify", &file.to_string_lossy()])
            .env("DOCTOR_SMTP_PW", "not-the-password")
            .env("DOCTOR_HOOK_URL", format!("http://127.0.0.1:{smtp_port}/x")),
    );
    let mail = line(&all, "oncall-mail (email)");
    assert!(mail.starts_with("FAIL") && mail.contains("authentication refused"), "{mail}");
    assert!(line(&all, "2J (webhook)").starts_with("ok"), "{all}");
}

/// A notify file that does not parse is named with its line, and stops the run (exit 3).
#[test]
fn doctor_names_a_notify_file_that_does_not_parse() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = written(dir.path().join("notify.yaml"), "notify:\n  - when: sometimes\n");
    let (out, all) = output(doctor(&["--notify", &file.to_string_lossy()]));
    let l = line(&all, "notify file");
    assert!(l.starts_with("FAIL") && l.contains("notify.yaml:2"), "{all}");
    assert_eq!(out.status.code(), Some(3), "{all}");
}

/// A small file system mounted for one test and unmounted on drop.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A storage folder on a nearly full file system (a 16 MiB tmpfs, under the 64 MiB a backup
/// needs at least) is named before a backup would fail on it, with the free space.
#[test]
fn doctor_names_a_storage_folder_on_a_full_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "pgdrill-doctor-test"])
        .arg(dir.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !require(mounted, "mounting a tmpfs (root)") {
        return;
    }
    let _guard = Mounted(dir.path().to_path_buf());
    let (out, all) = output(doctor(&["--storage", &dir.path().to_string_lossy()]));
    let l = line(&all, "storage");
    assert!(l.starts_with("FAIL") && l.contains("free"), "{all}");
    assert_eq!(out.status.code(), Some(3), "{all}");
}

/// A TCP receiver on loopback that counts the connections it took and the bytes that came
/// over them, so a test can prove a probe connected and sent nothing.
fn counting_listener() -> (u16, std::sync::Arc<(std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicUsize)>) {
    use std::io::Read as _;
    use std::sync::atomic::Ordering;
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new((std::sync::atomic::AtomicUsize::new(0), std::sync::atomic::AtomicUsize::new(0)));
    let s = seen.clone();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut got = Vec::new();
            let _ = conn.read_to_end(&mut got);
            s.1.fetch_add(got.len(), Ordering::SeqCst);
            s.0.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, seen)
}

/// `doctor --notify` probes the on-call sinks (issue 42's PagerDuty, Opsgenie, Teams and
/// syslog) without sending an event: a set routing key and an answering endpoint are ok, an
/// unset key variable, a dead Teams host and a syslog collector that refuses TCP are each a
/// FAIL naming what to do; the TCP collector and the PagerDuty endpoint take a connection
/// and receive no byte, the UDP collector no datagram; no key or token is printed.
#[test]
fn doctor_probes_the_on_call_sinks_without_sending_an_event() {
    use std::sync::atomic::Ordering;
    const ROUTING_KEY: &str = "R0UTING-doctor-pagerduty-9f8e7d";
    const TEAMS_TOKEN: &str = "T3AMS-doctor-token-1a2b3c";
    let (pd_port, pd_seen) = counting_listener();
    let (syslog_port, syslog_seen) = counting_listener();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp bind");
    let udp_port = udp.local_addr().expect("addr").port();
    let dead_port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("notify.yaml");
    std::fs::write(
        &file,
        format!(
            "notify:
  - name: pager
    when: failure
    pagerduty: {{ routing_key_env: DOCTOR_PD_KEY, url: 'http://127.0.0.1:{pd_port}/v2/enqueue' }}
  - name: genie
    when: failure
    opsgenie: {{ api_key_env: DOCTOR_GENIE_KEY, url: 'http://127.0.0.1:{pd_port}/v2/alerts' }}
  - name: channel
    when: always
    teams: {{ url: 'http://127.0.0.1:{dead_port}/webhookb2/{TEAMS_TOKEN}' }}
  - name: collector-tcp
    when: always
    syslog: {{ address: '127.0.0.1:{syslog_port}', transport: tcp }}
  - name: collector-udp
    when: always
    syslog: {{ address: '127.0.0.1:{udp_port}' }}
  - name: collector-gone
    when: always
    syslog: {{ address: '127.0.0.1:{dead_port}', transport: tcp }}
"
        ),
    )
    .expect("notify file");
    let (out, all) = output(
        doctor(&["--notify", &file.to_string_lossy()]).env("DOCTOR_PD_KEY", ROUTING_KEY).env_remove("DOCTOR_GENIE_KEY"),
    );
    assert!(!all.contains(ROUTING_KEY) && !all.contains(TEAMS_TOKEN), "an on-call secret was printed:\n{all}");
    let pager = line(&all, "pager (PagerDuty)");
    assert!(pager.starts_with("ok") && pager.contains("DOCTOR_PD_KEY is set"), "{pager}");
    assert!(pager.contains(&format!("127.0.0.1:{pd_port} answers")), "{pager}");
    let genie = line(&all, "genie (Opsgenie)");
    assert!(genie.starts_with("FAIL") && genie.contains("DOCTOR_GENIE_KEY is not set"), "{genie}");
    let teams = line(&all, "channel (Teams)");
    assert!(teams.starts_with("FAIL") && teams.contains(&format!("127.0.0.1:{dead_port}")), "{teams}");
    let tcp = line(&all, "collector-tcp (syslog)");
    assert!(tcp.starts_with("ok") && tcp.contains("takes a connection"), "{tcp}");
    let udp_line = line(&all, "collector-udp (syslog)");
    assert!(udp_line.starts_with("ok") && udp_line.contains("resolves"), "{udp_line}");
    let gone = line(&all, "collector-gone (syslog)");
    assert!(gone.starts_with("FAIL") && gone.contains(&format!("127.0.0.1:{dead_port}")), "{gone}");
    assert_eq!(out.status.code(), Some(3), "{all}");

    // Connected, and nothing sent: no event, no syslog line.
    let took = |seen: &std::sync::Arc<(std::sync::atomic::AtomicUsize, std::sync::atomic::AtomicUsize)>| {
        common::wait_for(std::time::Duration::from_secs(15), || (seen.0.load(Ordering::SeqCst) > 0).then_some(()))
    };
    assert!(took(&pd_seen).is_some(), "doctor did not connect to the PagerDuty endpoint");
    assert!(took(&syslog_seen).is_some(), "doctor did not connect to the syslog collector");
    assert_eq!(pd_seen.1.load(Ordering::SeqCst), 0, "doctor sent bytes to the PagerDuty endpoint");
    assert_eq!(syslog_seen.1.load(Ordering::SeqCst), 0, "doctor sent a syslog message over TCP");
    udp.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 64];
    assert!(udp.recv_from(&mut buf).is_err(), "doctor sent a syslog datagram over UDP");
}

/// Regression (issue 39): `pgdrill doctor` said nothing about pgBackRest, although a
/// `pgbackrest://` source needs one: this machine's, or (none here) the image's pgdrill then
/// reads the repository with. Doctor names the one a run will use, with its version, and what
/// to do when there is none; a `--storage` naming a pgBackRest source makes none a failure.
#[test]
fn doctor_names_the_pgbackrest_a_pgbackrest_source_is_read_with() {
    let here = Command::new("pgbackrest").arg("version").output().ok().filter(|o| o.status.success());
    if let Some(v) = &here {
        let (_, all) = output(doctor(&[]));
        let version = text(&v.stdout).trim().to_string();
        let l = line(&all, "pgBackRest:");
        assert!(l.starts_with("ok") && l.contains(&version) && l.contains("this machine's"), "{all}");
    }
    // This machine's hidden: the image's, named with its version.
    let (_links, path) = common::path_without("pgbackrest");
    let image = crate::physical17::image_with_tools();
    if image {
        let (_, all) = output(doctor(&[]).env("PATH", &path));
        let l = line(&all, "pgBackRest:");
        assert!(l.starts_with("ok") && l.contains("this machine has none"), "{all}");
        assert!(l.contains("pgBackRest 2.") && l.contains(" in pgdrill/postgres-local:"), "{all}");
    }
    // Neither: what to do, a warning; a failure when the storage is a pgBackRest source.
    let dead = "unix:///nonexistent/pgdrill-doctor/docker.sock";
    let (_, all) = output(doctor(&[]).env("PATH", &path).env("DOCKER_HOST", dead));
    let l = line(&all, "pgBackRest:");
    assert!(l.starts_with("warn") && l.contains("apt-get install pgbackrest"), "{all}");
    assert!(l.contains("bash ci/setup.sh") && l.contains("needed only for pgbackrest:// sources"), "{all}");
    let (out, all) = output(doctor(&["--storage", "pgbackrest://demo"]).env("PATH", &path).env("DOCKER_HOST", dead));
    assert!(line(&all, "pgBackRest:").starts_with("FAIL"), "{all}");
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(here.is_some() || image || std::env::var_os("CI").is_none(), "no pgbackrest here nor in an image");
}
