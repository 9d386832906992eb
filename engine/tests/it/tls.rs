//! TLS and libpq conventions against a real PostgreSQL with `ssl=on`, certificates from a CA
//! each test creates with the openssl CLI. pg_hba refuses every TCP connection without TLS,
//! so a success proves that pgdrill and the tools it started both used TLS.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::{free_port, text, written};

const BIN: &str = "/usr/lib/postgresql/15/bin";
const PASSWORD: &str = "tls-secret-pw-4711";

struct TlsServer {
    dir: tempfile::TempDir,
    port: u16,
}

impl TlsServer {
    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }
    fn socket(&self) -> PathBuf {
        self.dir.path().join("sock")
    }
    fn url(&self, host: &str, mode: &str) -> String {
        format!(
            "postgresql://postgres:{PASSWORD}@{host}:{}/app?sslmode={mode}&sslrootcert={}",
            self.port,
            self.ca().display()
        )
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = pg("pg_ctl").args(["stop", "-m", "immediate", "-w", "-D"]).arg(self.dir.path().join("data")).output();
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("runs");
    assert!(out.status.success(), "{cmd:?}: {}{}", text(&out.stdout), text(&out.stderr));
}

/// A self-signed CA (`ca.key`, `ca.crt`, two days) named `subject`, made in `dir`.
fn make_ca(dir: &std::path::Path, subject: &str) {
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
            "-subj", subject,
        ],
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    sh(Command::new("openssl").current_dir(dir).args(args));
}

/// A certificate `name` for `cn` with `san`, signed by the test CA in `dir`.
fn signed(dir: &Path, name: &str, cn: &str, san: Option<&str>) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &format!("{name}.crt"),
    ]
    .into_iter()
    .map(str::to_string)
    .collect::<Vec<_>>();
    if let Some(san) = san {
        std::fs::write(dir.join(format!("{name}.ext")), format!("subjectAltName={san}\n")).expect("ext");
        args.extend(["-extfile".to_string(), format!("{name}.ext")]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    openssl(dir, &refs);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.join(format!("{name}.key")), std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A PostgreSQL program, as `nobody` when the test runs as root (initdb refuses root).
fn pg(program: &str) -> Command {
    if nix::unistd::geteuid().is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(format!("{BIN}/{program}"));
        c
    } else {
        Command::new(format!("{BIN}/{program}"))
    }
}

/// A server with ssl=on, a CA, a server certificate for `localhost` only, a client
/// certificate for the role `certuser`, and pg_hba: TLS required on TCP, `cert` for
/// certuser, password for postgres, trust on the socket.
fn tls_server() -> Option<TlsServer> {
    let ok = Path::new(BIN).join("initdb").exists()
        && Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success());
    if !common::require(ok, "PostgreSQL 15 binaries and the openssl CLI") {
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    make_ca(d, "/CN=pgdrill test CA");
    signed(d, "server", "localhost", Some("DNS:localhost"));
    signed(d, "client", "certuser", None);
    std::fs::write(d.join("pw"), PASSWORD).expect("pw");
    if nix::unistd::geteuid().is_root() {
        sh(Command::new("chown").args(["-R", "nobody:nogroup"]).arg(d));
        // The client key stays the client's (libpq wants it owned by the user or root).
        sh(Command::new("chown").arg("root:root").arg(d.join("client.key")));
    }
    sh(pg("initdb")
        .args(["-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", "--pwfile"])
        .arg(d.join("pw"))
        .arg("-D")
        .arg(d.join("data")));
    std::fs::write(
        d.join("data/pg_hba.conf"),
        "local all all trust\nhostssl all certuser 127.0.0.1/32 cert\nhostssl all all 127.0.0.1/32 scram-sha-256\n",
    )
    .expect("hba");
    let port = free_port();
    let opts = format!(
        "-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file={d}/server.crt -c ssl_key_file={d}/server.key -c ssl_ca_file={d}/ca.crt",
        sock = d.join("sock").display(),
        d = d.display()
    );
    std::fs::create_dir(d.join("sock")).expect("sock");
    if nix::unistd::geteuid().is_root() {
        sh(Command::new("chown").arg("nobody:nogroup").arg(d.join("sock")));
    }
    sh(pg("pg_ctl").args(["start", "-w", "-l"]).arg(d.join("log")).arg("-D").arg(d.join("data")).args(["-o", &opts]));
    let server = TlsServer { dir, port };
    sh(Command::new(format!("{BIN}/psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(server.socket())
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-c"])
        .arg("create database app")
        .env_remove("PGPASSWORD"));
    sh(Command::new(format!("{BIN}/psql"))
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(server.socket())
        .args(["-p", &port.to_string(), "-U", "postgres", "-d", "app", "-c"])
        .arg("create role certuser login; create table t(id int primary key, v text); insert into t select g, 'row ' || g from generate_series(1, 100) g; grant select on t to certuser;"));
    Some(server)
}

/// What a run printed (stdout then stderr); it must have exited 3, the environment's failure.
#[track_caller]
fn environment_error(out: &std::process::Output) -> String {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(3), "{all}");
    all
}

/// A one-step runbook that counts the rows of `t` through `url` (from the environment
/// variable URL so the test controls the process environment too).
fn count_rows(dir: &Path, url: &str, env: &[(&str, String)]) -> std::process::Output {
    let rb = written(dir.join("count.yaml"), "name: count\nvars: { url: ~ }\nsteps:\n  - id: q\n    uses: sql.assert\n    with: { url: \"{{ vars.url }}\", query: select count(*) from t, expect: \"== 100\" }\n");
    let mut run = common::Run::new(&rb).var("url", url);
    for (k, v) in env {
        run = run.env(k, v);
    }
    run.raw()
}

#[test]
fn backup_verify_and_operator_restore_over_verify_full_with_sslrootcert() {
    let Some(s) = tls_server() else { return };
    let storage = s.dir.path().join("backups");
    let url = s.url("localhost", "verify-full");
    let backup = common::backup_to(&url, &storage, "tls-test-key-0123456789", "app");
    assert!(backup.exists());
    // The backup taken over TLS verifies (restored into a throwaway server).
    let out = common::Run::verify_native(storage.display(), "app").key("tls-test-key-0123456789").raw();
    assert_eq!(out.status.code(), Some(0), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    // An operator restore over verify-full: snapshot, drop, create and pg_restore all over TLS
    // (pg_hba refuses anything else on TCP).
    let admin = format!(
        "postgresql://postgres:{PASSWORD}@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        s.port,
        s.ca().display()
    );
    let out = common::Run::new("restore")
        .var("database_url", admin)
        .var("storage", storage.display())
        .var("database", "app")
        .arg("--yes")
        .command()
        .env("PGDRILL_BACKUP_KEY", "tls-test-key-0123456789")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("restore runs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "restore: {all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
    // verify-ca accepts the same server by IP (the host name is not checked).
    let out = count_rows(s.dir.path(), &s.url("127.0.0.1", "verify-ca"), &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn verify_full_against_a_name_the_certificate_lacks_is_exit_3_naming_sslmode() {
    let Some(s) = tls_server() else { return };
    let all = environment_error(&count_rows(s.dir.path(), &s.url("127.0.0.1", "verify-full"), &[]));
    assert!(all.contains("does not name host `127.0.0.1`") && all.contains("sslmode=verify-ca"), "{all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
}

#[test]
fn an_unknown_ca_is_exit_3_naming_sslrootcert() {
    let Some(s) = tls_server() else { return };
    let other = tempfile::tempdir().expect("tempdir");
    make_ca(other.path(), "/CN=another CA");
    let url = format!(
        "host=localhost port={} dbname=app user=postgres sslmode=verify-ca sslrootcert={}",
        s.port,
        other.path().join("ca.crt").display()
    );
    let all = environment_error(&count_rows(s.dir.path(), &url, &[("PGPASSWORD", PASSWORD.to_string())]));
    assert!(all.contains("not signed by a CA in sslrootcert="), "{all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn require_against_a_server_without_tls_is_exit_3_naming_sslmode() {
    let Some(pg) = common::native_server("app").await else { return };
    let base = pg.url();
    let url = format!("{base}{}sslmode=require", if base.contains('?') { "&" } else { "?" });
    let dir = tempfile::tempdir().expect("tempdir");
    let all = environment_error(&count_rows(dir.path(), &url, &[]));
    assert!(all.contains("does not offer TLS") && all.contains("sslmode=require"), "{all}");
}

#[test]
fn client_certificate_authentication_works_and_a_missing_one_is_refused_by_name() {
    let Some(s) = tls_server() else { return };
    let d = s.dir.path();
    let base = format!(
        "host=localhost port={} dbname=app user=certuser sslmode=verify-full sslrootcert={}",
        s.port,
        s.ca().display()
    );
    let with_cert =
        format!("{base} sslcert={} sslkey={}", d.join("client.crt").display(), d.join("client.key").display());
    let out = count_rows(d, &with_cert, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    let all = environment_error(&count_rows(d, &base, &[("HOME", d.join("nohome").display().to_string())]));
    assert!(all.contains("client certificate") && all.contains("sslcert="), "{all}");
}

#[test]
fn a_service_file_entry_and_a_unix_socket_work() {
    let Some(s) = tls_server() else { return };
    let d = s.dir.path();
    let services = written(
        d.join("services.conf"),
        format!(
            "[tlsapp]\nhost=localhost\nport={}\ndbname=app\nuser=postgres\nsslmode=verify-full\nsslrootcert={}\n",
            s.port,
            s.ca().display()
        ),
    );
    let env = [("PGSERVICEFILE", services.display().to_string()), ("PGPASSWORD", PASSWORD.to_string())];
    let out = count_rows(d, "service=tlsapp", &env);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // The socket: no TLS there (as in libpq), trust in pg_hba.
    let url = format!("postgresql:///app?host={}&port={}&user=postgres", s.socket().display(), s.port);
    let out = count_rows(d, &url, &[]);
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    // And a backup through the socket, where pg_dump gets the socket too.
    let storage = d.join("sock-backups");
    let backup = common::backup_to(&url, &storage, "tls-test-key-0123456789", "app");
    assert!(backup.exists());
}

#[test]
fn plan_shows_what_the_string_the_service_file_and_the_environment_contributed() {
    let d = tempfile::tempdir().expect("tempdir");
    let services = written(d.path().join("services.conf"), "[erp]\nhost=db.internal\nport=6432\nuser=svc\n");
    let rb = written(d.path().join("plan.yaml"), "name: plan\nsteps:\n  - id: q\n    uses: sql.assert\n    with: { url: \"service=erp dbname=erp\", query: select 1, expect: \"== 1\" }\n");
    let out = common::pgdrill(&["plan", rb.to_str().unwrap_or_default()])
        .env("PGSERVICEFILE", &services)
        .env("PGSSLMODE", "verify-full")
        .env("PGPASSWORD", PASSWORD)
        .output()
        .expect("plan runs");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    let from_file = format!("(service erp in {})", services.display());
    assert!(all.contains(&format!("host=db.internal {from_file}")), "{all}");
    assert!(all.contains(&format!("port=6432 {from_file}")), "{all}");
    assert!(all.contains("dbname=erp (connection string)"), "{all}");
    assert!(all.contains("sslmode=verify-full (PGSSLMODE)"), "{all}");
    assert!(all.contains("password=******** (PGPASSWORD)"), "{all}");
    assert!(!all.contains(PASSWORD), "the password is shown: {all}");
}
