//! `http.check` against HTTPS endpoints as teams run them (issue 40 item 4): a private CA
//! made here with openssl signs the server's certificate and a client certificate, and a
//! little python3 server asks for the client certificate (mutual TLS). Without the CA the
//! check fails saying what to give; with `ca_file` and the client certificate it passes for
//! several URLs; without the client certificate the server refuses; `insecure: true` passes
//! with a warning in the terminal, JUnit and run.json.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{self, written, Run};

const SERVER: &str = r#"
import ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        body = {"/api": b"api ok", "/worker": b"worker ok", "/dashboard": b"dashboard ok"}.get(self.path)
        self.send_response(200 if body else 404)
        body = body or b"not here"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

port, cert, key, client_ca = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if client_ca != "-":
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(client_ca)
srv = HTTPServer(("127.0.0.1", int(port)), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
"#;

/// An HTTPS server on 127.0.0.1 whose certificate a private CA signed, requiring a client
/// certificate from the same CA when asked to; with the CA's file and the client's
/// certificate and key.
pub struct TlsEndpoint {
    pub port: u16,
    pub ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    _server: common::Server,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", common::text(&out.stderr));
}

/// Start one in `dir`; `None` (a printed skip, a failure in CI) without python3 or openssl.
pub fn tls_endpoint(dir: &Path, require_client: bool) -> Option<TlsEndpoint> {
    let ok = common::on_path("python3") && common::on_path("openssl");
    if !common::require(ok, "python3 and openssl (the test's HTTPS server and its certificates)") {
        return None;
    }
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=pgdrill test CA"],
        ]
        .concat(),
    );
    for (name, cn, ext) in [
        ("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "ops", "extendedKeyUsage=clientAuth\n"),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext");
        let (key, csr, pem) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"));
        openssl(dir, &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]].concat());
        common::ca_sign(dir, &csr, &pem, &format!("{name}.ext"));
    }
    std::fs::write(dir.join("server.py"), SERVER).expect("server");
    let port = common::free_port();
    let mut server = Command::new("python3");
    server
        .arg(dir.join("server.py"))
        .arg(port.to_string())
        .args([dir.join("server.pem"), dir.join("server.key")])
        .arg(if require_client { dir.join("ca.pem") } else { PathBuf::from("-") });
    let server = common::Server::start(server, port, "the HTTPS test server");
    Some(TlsEndpoint {
        port,
        ca: dir.join("ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
        _server: server,
    })
}

const RUNBOOK: &str = r#"name: tls-health
vars: { urls: "", ca_file: "", client_cert: "", client_key: "", insecure: false }
steps:
  - id: health
    uses: http.check
    with:
      url: "{{ vars.urls }}"
      ca_file: "{{ vars.ca_file }}"
      client_cert: "{{ vars.client_cert }}"
      client_key: "{{ vars.client_key }}"
      insecure: "{{ vars.insecure }}"
"#;

#[test]
fn a_private_ca_and_client_certificate_endpoint_is_checked_as_curl_cacert_and_cert_would() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(tls) = tls_endpoint(dir.path(), true) else { return };
    let file = written(dir.path().join("tls-health.yaml"), RUNBOOK);
    let base = format!("https://127.0.0.1:{}", tls.port);
    let urls = format!("{base}/api {base}/worker {base}/dashboard");
    let run = |vars: &[String]| Run::new(&file).vars(&vars.iter().map(String::as_str).collect::<Vec<_>>());
    let ca = format!("ca_file={}", tls.ca.display());
    let cert = format!("client_cert={}", tls.client_cert.display());
    let key = format!("client_key={}", tls.client_key.display());

    // The system's CAs do not know this one: a failure that says what to give.
    let ran = run(&[format!("urls={base}/api"), cert.clone(), key.clone()]).expect(1);
    assert!(ran.all().contains("ca_file") && ran.all().contains("curl -k"), "{}", ran.all());

    // Its CA and the client certificate: every URL answers, each checked.
    let report = dir.path().join("report-ok");
    let ran = run(&[format!("urls={urls}"), ca.clone(), cert.clone(), key.clone()]).report(&report).expect(0);
    let log = ran.run_json().main().step("health").log.join("\n");
    for path in ["/api", "/worker", "/dashboard"] {
        assert!(log.contains(&format!("GET {base}{path} -> 200")), "{log}");
    }
    assert!(!ran.all().contains("warning"), "{}", ran.all());

    // The client certificate is what the server let in.
    let ran = run(&[format!("urls={base}/api"), ca.clone()]).expect(1);
    assert!(ran.all().contains(&format!("GET {base}/api: ")) && !ran.all().contains("-> 200"), "{}", ran.all());

    // One URL of several that fails fails the check, naming it.
    let ran = run(&[format!("urls={base}/api {base}/missing"), ca.clone(), cert.clone(), key.clone()]).expect(1);
    assert!(ran.all().contains(&format!("GET {base}/missing answered 404")), "{}", ran.all());

    // insecure: true passes without the CA, and says so in every report.
    let report = dir.path().join("report-insecure");
    let junit = dir.path().join("insecure.xml");
    let ran =
        run(&[format!("urls={base}/api"), cert, key, "insecure=true".into()]).report(&report).junit(&junit).expect(0);
    let warning = "warning: insecure: true: the endpoint's TLS certificate is NOT verified";
    assert!(ran.stdout.contains(warning), "terminal: {}", ran.stdout);
    assert!(ran.junit().all_text().contains(warning), "junit");
    assert!(ran.run_json().main().step("health").log.iter().any(|l| l.starts_with(warning)), "run.json");
    // The compliance report too: its JSON, Markdown and HTML.
    let compliance = common::read_json(&report.join("report.json"));
    let listed = compliance["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        listed.iter().any(|w| w["warning"].as_str().is_some_and(|t| t.starts_with("insecure: true"))),
        "{compliance}"
    );
    for page in ["report.md", "report.html"] {
        let text = std::fs::read_to_string(report.join(page)).expect(page);
        assert!(text.contains("Warnings") && text.contains("is NOT verified"), "{page}: {text}");
    }
}

/// Regression (issue 37): the terminal and the compliance report took every log line that
/// began with `warning: ` for a warning of the run, so a script's own output became one (and a
/// step's warning was known only by its wording). Now only what a step warns of through its
/// context is a warning: the script's line stays in the step's log, is not shown under a
/// passing step, and is not listed in report.json.
#[test]
fn a_script_line_beginning_with_warning_was_listed_as_a_warning_of_the_run() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = written(
        dir.path().join("echo.yaml"),
        "name: echo\nsteps:\n  - id: say\n    uses: shell.run\n    with: { script: \"echo 'warning: from the script'\" }\n",
    );
    let report = dir.path().join("report");
    let ran = Run::new(&file).report(&report).expect(0);
    assert!(!ran.stdout.contains("warning: from the script"), "shown as a warning: {}", ran.stdout);
    let log = ran.run_json().main().step("say").log.clone();
    assert!(log.iter().any(|l| l == "warning: from the script"), "the step's log keeps it: {log:?}");
    let compliance = common::read_json(&report.join("report.json"));
    assert_eq!(compliance["warnings"], serde_json::json!([]), "{compliance}");
}
