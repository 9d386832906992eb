//! `http.check` against a real little HTTP server (python3) the test starts: a login with a
//! form, answered by a redirect that sets the session cookie, then a health page that needs
//! that cookie, a header and a JSON body, as the classic runbooks' `curl -c jar -b jar`
//! smoke tests do.

use std::process::Command;

use crate::common;
use crate::common::{pgdrill, text, written};

const SERVER: &str = r#"
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def answer(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/login":
            form = parse_qs(data.decode())
            if form.get("user") == ["ops"] and form.get("password") == ["s3cret pass"]:
                self.answer(302, headers=[("Location", "/home"), ("Set-Cookie", "session=tok42; Path=/; HttpOnly")])
            else:
                self.answer(403, b"bad login")
        elif self.path == "/api/echo":
            ok = self.headers.get("X-Check") == "yes" and data == b'{"ping": 1}'
            self.answer(200 if ok else 400, data)
        else:
            self.answer(404)
    def do_GET(self):
        logged_in = "session=tok42" in (self.headers.get("Cookie") or "")
        if self.path == "/home":
            self.answer(200 if logged_in else 401, b"home")
        elif self.path == "/health":
            self.answer(200, b"healthy") if logged_in else self.answer(401, b"login first")
        else:
            self.answer(404)

HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

fn runbook(port: u16, cookies: bool) -> String {
    format!(
        r#"name: login-then-health
steps:
  - id: login
    uses: http.check
    with:
      url: http://127.0.0.1:{port}/login
      method: POST
      form: {{ user: ops, password: "s3cret pass" }}
      cookies: {cookies}
  - id: echo
    uses: http.check
    with:
      url: http://127.0.0.1:{port}/api/echo
      method: POST
      headers: {{ X-Check: "yes", Content-Type: application/json }}
      body: '{{"ping": 1}}'
      body_contains: ping
  - id: health
    uses: http.check
    retry: {{ count: 3, delay: 1s }}
    with:
      url: http://127.0.0.1:{port}/health
      body_contains: healthy
      cookies: {cookies}
"#
    )
}

#[test]
fn a_login_then_health_sequence_shares_the_cookie_jar() {
    let python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    if !common::require(python, "python3 (the test's little HTTP server)") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("server.py"), SERVER).expect("server");
    let port = common::free_port();
    let mut server = Command::new("python3");
    server.arg(dir.path().join("server.py")).arg(port.to_string());
    // Started once it listens (connect, not a sleep).
    let _server = common::Server::start(server, port, "the test server");

    let file = written(dir.path().join("smoke.yaml"), runbook(port, true));
    let out = pgdrill(&["run", &file.display().to_string()]).output().expect("run");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(!all.contains("tok42"), "the session cookie was logged: {all}");

    // Without the jar, the health page is refused: the cookie is what made it pass.
    std::fs::write(&file, runbook(port, false)).expect("runbook");
    let out = pgdrill(&["run", &file.display().to_string()]).output().expect("run");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("answered 401"), "{all}");
}
