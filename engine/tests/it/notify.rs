//! Alerts and metrics (`--notify FILE`) against real servers: a Pushgateway, promtool, and
//! an HTTP listener that receives webhooks.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::common::*;

const KEY: &str = "notify-test-backup-key-0123456789";
const TOKEN: &str = "T0KEN-s3cret-hook-9f8e7d";

/// An HTTP server that records every request's path and body and answers 200.
struct Listener {
    port: u16,
    got: Arc<Mutex<Vec<(String, String)>>>,
}

fn listener() -> Listener {
    let (port, got) = http_recorder(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", |r| {
        let mut body = String::from_utf8_lossy(&r.body).into_owned();
        // Sentry's credentials come in a header: kept in front of the body for the checks.
        if let Some(auth) = r.lines.iter().rev().find(|h| h.to_ascii_lowercase().starts_with("x-sentry-auth:")) {
            body = format!("{auth}\n{body}");
        }
        (r.path, body)
    });
    Listener { port, got }
}

/// A [`listener`] and, in a new folder, the runbook `name` that `yaml` writes for the
/// listener's port: the listener, the folder and the runbook's path.
fn listened_runbook(name: &str, yaml: impl FnOnce(u16) -> String) -> (Listener, tempfile::TempDir, std::path::PathBuf) {
    let hooks = listener();
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = written(dir.path().join(name), yaml(hooks.port));
    (hooks, dir, rb)
}

struct Gateway(std::process::Child, u16);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn pushgateway() -> Option<Gateway> {
    let port = free_port();
    let child = std::process::Command::new("prometheus-pushgateway")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(child) = child else {
        require(false, "prometheus-pushgateway (Debian package, ci/setup.sh)");
        return None;
    };
    let g = Gateway(child, port);
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(g);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the Pushgateway did not start");
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

/// `pgdrill run backup --notify NOTIFY` of `url` into `storage` with the key, not run yet.
fn backup_run(notify: &Path, url: &str, storage: &Path) -> Run {
    Run::new("backup").arg("--notify").arg(notify).var("database_url", url).var("storage", storage.display()).key(KEY)
}

fn backup(notify: &Path, url: &str, storage: &Path, report: &Path) -> std::process::Output {
    backup_run(notify, url, storage).report(report).var("fingerprint", "counts").command().output().expect("pgdrill")
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_reach_the_textfile_and_the_pushgateway_and_webhooks_fire_when_asked() {
    let Some(gw) = pushgateway() else { return };
    if !require(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool (Debian package prometheus, ci/setup.sh)",
    ) {
        return;
    }
    let Some(srv) = native_server("app").await else { return };
    exec(&srv.url(), "create table t(id int primary key); insert into t select generate_series(1, 1000)").await;
    let hooks = listener();
    let dead = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let textfile = dir.path().join("textfile/pgdrill.prom");
    std::fs::create_dir_all(textfile.parent().expect("dir")).expect("dir");
    // Another job's sample in the same file must survive.
    std::fs::write(&textfile, "# HELP pgdrill_run_success x\n# TYPE pgdrill_run_success gauge\npgdrill_run_success{runbook=\"prune\",database=\"other\"} 1\n").expect("seed");
    let notify = written(
        dir.path().join("notify.yaml"),
        format!(
            "metrics:\n  textfile: {tf}\n  pushgateway: {{ url: http://127.0.0.1:{gw} }}\nstate: {state}\nnotify:\n  - {{ name: dead, when: always, webhook: {{ url: http://127.0.0.1:{dead}/hooks/{TOKEN} }} }}\n  - {{ name: on-failure, when: failure, webhook: {{ url: http://127.0.0.1:{hp}/fail/{TOKEN}, format: json }} }}\n  - {{ name: always, when: always, webhook: {{ url_env: HOOK_URL, format: slack }} }}\n  - {{ name: recovered, when: recovered, webhook: {{ url: http://127.0.0.1:{hp}/recovered }} }}\n  - {{ name: sentry, when: failure, sentry: {{ dsn: \"http://SENTRYKEY{TOKEN}@127.0.0.1:{hp}/42\", environment: test }} }}\n",
            tf = textfile.display(),
            gw = gw.1,
            hp = hooks.port,
            state = dir.path().join("state.json").display(),
        ),
    );
    let storage = dir.path().join("backups");
    let report = dir.path().join("r1");

    // 1. A passing backup, with one webhook that cannot be reached.
    let out = backup_run(&notify, &srv.url(), &storage)
        .report(&report)
        .var("fingerprint", "counts")
        .env("HOOK_URL", format!("http://127.0.0.1:{}/always/{TOKEN}", hooks.port))
        .command()
        .output()
        .expect("pgdrill");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "a failing sink changed the verdict: {stdout}{stderr}");
    assert!(
        stderr.contains("warning: dead to http://127.0.0.1: could not be reached; the run's result is unchanged"),
        "{stderr}"
    );
    for t in [&stdout, &stderr, &std::fs::read_to_string(report.join("run.json")).expect("run.json")] {
        assert!(!t.contains(TOKEN), "the webhook's token leaked: {t}");
    }
    let got = hooks.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "only the `always` hook fires on a pass that follows nothing: {got:?}");
    assert!(got[0].0.starts_with("/always/"));
    let slack: serde_json::Value = serde_json::from_str(&got[0].1).expect("slack json");
    assert!(slack["text"].as_str().expect("text").contains("runbook backup (app) passed"), "{slack}");

    let prom = std::fs::read_to_string(&textfile).expect("textfile");
    assert!(prom.contains("pgdrill_run_success{runbook=\"backup\",database=\"app\"} 1"), "{prom}");
    assert!(
        prom.contains("pgdrill_run_success{runbook=\"prune\",database=\"other\"} 1"),
        "another job's sample was lost: {prom}"
    );
    assert!(prom.contains("pgdrill_backup_size_bytes{runbook=\"backup\",database=\"app\",location="), "{prom}");
    let checked = std::process::Command::new("sh")
        .args(["-c", "promtool check metrics < \"$0\"", textfile.to_str().expect("utf-8")])
        .output()
        .expect("promtool");
    assert!(checked.status.success(), "promtool check metrics: {}{}", text(&checked.stdout), text(&checked.stderr));
    let last_success = |p: &str| {
        p.lines()
            .find(|l| {
                l.starts_with("pgdrill_backup_last_success_timestamp_seconds{runbook=\"backup\",database=\"app\"")
            })
            .map(str::to_string)
    };
    let first_success = last_success(&prom).expect("backup last success");

    let pushed = http_get(gw.1, "/metrics");
    let line = pushed
        .lines()
        .find(|l| {
            l.starts_with("pgdrill_run_success{") && l.contains("runbook=\"backup\"") && l.contains("database=\"app\"")
        })
        .unwrap_or_default()
        .to_string();
    assert!(line.contains("job=\"pgdrill\"") && line.ends_with(" 1"), "{pushed}");
    assert!(pushed.contains("pgdrill_backup_size_bytes{"), "{pushed}");

    // 2. The same backup fails (its database is gone): success 0, the last success stays.
    exec(&srv.url_for("postgres"), "drop database app with (force)").await;
    let out = backup_run(&notify, &srv.url(), &storage)
        .env("HOOK_URL", format!("http://127.0.0.1:{}/always/{TOKEN}", hooks.port))
        .command()
        .output()
        .expect("pgdrill");
    assert!(!out.status.success());
    let prom = std::fs::read_to_string(&textfile).expect("textfile");
    // On the database's own series, though no step got far enough to name it.
    assert!(prom.contains("pgdrill_run_success{runbook=\"backup\",database=\"app\"} 0"), "{prom}");
    assert!(!prom.contains("database=\"\""), "a failed run's metrics went to a series without its database: {prom}");
    assert_eq!(last_success(&prom), Some(first_success), "a failed run moved or dropped the last success time");
    let got = hooks.got.lock().expect("lock").clone();
    let fail = got.iter().find(|(p, _)| p.starts_with("/fail/")).expect("the failure hook fired");
    let body: serde_json::Value = serde_json::from_str(&fail.1).expect("json");
    assert_eq!(body["outcome"], "failed");
    assert!(body["failed_checks"].as_array().is_some_and(|a| !a.is_empty()), "{body}");
    // Sentry: an envelope at the DSN's project endpoint, authenticated by its key, tagged.
    let sentry = got.iter().find(|(p, _)| p == "/api/42/envelope/").expect("the sentry event");
    let mut lines = sentry.1.lines();
    assert!(lines.next().is_some_and(|h| h.contains(&format!("sentry_key=SENTRYKEY{TOKEN}"))), "{}", sentry.1);
    let _envelope_header = lines.next();
    assert_eq!(lines.next(), Some("{\"type\":\"event\"}"), "{}", sentry.1);
    let event: serde_json::Value = serde_json::from_str(lines.next().expect("event")).expect("event json");
    assert_eq!(event["tags"]["runbook"], "backup");
    assert_eq!(event["tags"]["database"], "app");
    assert_eq!(event["tags"]["step"], "dump");
    assert_eq!(event["level"], "error");
    assert_eq!(event["environment"], "test");
    assert!(!text(&out.stdout).contains(TOKEN) && !text(&out.stderr).contains(TOKEN), "the DSN's key leaked");

    // 3. It works again: the `recovered` hook fires once.
    exec(&srv.url_for("postgres"), "create database app").await;
    let out = backup(&notify, &srv.url(), &storage, &dir.path().join("r3"));
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let got = hooks.got.lock().expect("lock").clone();
    assert_eq!(got.iter().filter(|(p, _)| p == "/recovered").count(), 1, "{got:?}");
    srv.stop().await;
}

#[test]
fn a_bad_notify_file_is_shown_at_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = written(dir.path().join("n.yaml"), "notify:\n  - when: sometimes\n    webhook: { url: http://x }\n");
    let out = Run::new("smoke")
        .arg("--notify")
        .arg(f.to_str().expect("utf-8"))
        .var("database_url", "postgres://x@127.0.0.1:1/x")
        .raw();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("n.yaml:2:") && err.contains("sometimes"), "{err}");
}

#[test]
fn the_shipped_alert_rules_pass_promtool_and_their_unit_tests() {
    if !require(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool (Debian package prometheus, ci/setup.sh)",
    ) {
        return;
    }
    let rules = root().join("alerts/pgdrill.rules.yml");
    let out = std::process::Command::new("promtool").arg("check").arg("rules").arg(&rules).output().expect("promtool");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let out = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(root().join("alerts/pgdrill.rules.test.yml"))
        .output()
        .expect("promtool");
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn an_email_goes_out_over_starttls_and_a_wrong_ca_is_a_warning_not_a_verdict() {
    if !aiosmtpd_ready() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{}", text(&made.stderr));
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let _smtp =
        Smtp::mailbox(port, &maildir, &["--tlscert".as_ref(), cert.as_os_str(), "--tlskey".as_ref(), key.as_os_str()]);
    let rb = dir.path().join("fails.yaml");
    std::fs::write(&rb, "name: nightly\nsteps:\n  - id: gate\n    uses: shell.run\n    with: { argv: [\"false\"] }\n")
        .expect("runbook");
    let notify = dir.path().join("notify.yaml");
    let email = |ca: &str| {
        format!(
            "notify:\n  - {{ name: ops-mail, when: failure, email: {{ smtp: \"localhost:{port}\", tls: starttls, {ca} from: pgdrill@example.com, to: [ops@example.com, dba@example.com] }} }}\n"
        )
    };
    std::fs::write(&notify, email(&format!("ca_file: \"{}\",", cert.display()))).expect("notify");
    let out = Run::new(&rb).arg("--notify").arg(&notify).output();
    assert_eq!(out.code, Some(1), "{}", out.all());
    assert!(!out.stderr.contains("warning:"), "{}", out.stderr);
    let mails: Vec<_> = std::fs::read_dir(maildir.join("new")).expect("maildir").flatten().collect();
    assert_eq!(mails.len(), 1, "one message for both recipients");
    let mail = std::fs::read_to_string(mails[0].path()).expect("mail");
    assert!(mail.contains("Subject: pgdrill: nightly failed"), "{mail}");
    assert!(mail.contains("Failed checks:") && mail.contains("- gate [shell.run]"), "{mail}");

    // Without the private CA the server's certificate is not trusted: a warning, nothing sent,
    // the run's verdict unchanged.
    std::fs::write(&notify, email("")).expect("notify");
    let out = Run::new(&rb).arg("--notify").arg(&notify).output();
    assert_eq!(out.code, Some(1));
    let err = out.stderr;
    assert!(err.contains("warning: ops-mail via localhost:") && err.contains("TLS with localhost"), "{err}");
    assert_eq!(std::fs::read_dir(maildir.join("new")).expect("maildir").count(), 1);
}

#[test]
fn a_runbook_s_own_notify_section_fires_and_a_bad_one_is_shown_at_its_line() {
    let (hooks, _dir, rb) = listened_runbook("r.yaml", |port| {
        format!("name: nightly-check\nnotify:\n  - {{ when: always, webhook: {{ url: \"http://127.0.0.1:{port}/own\", format: json }} }}\nsteps:\n  - uses: sleep\n    with: {{ duration: 1ms }}\n")
    });
    let out = run(&["run", rb.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let got = hooks.got.lock().expect("lock").clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let body: serde_json::Value = serde_json::from_str(&got[0].1).expect("json");
    assert_eq!(body["runbook"], "nightly-check");
    assert_eq!(body["outcome"], "passed");

    std::fs::write(&rb, "name: bad\nnotify:\n  - { when: always, webhook: { url: \"ftp://x/y\" } }\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n").expect("runbook");
    let out = run(&["validate", rb.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("r.yaml:3:") && err.contains("webhook url must be an http(s) URL"), "{err}");
}

/// Before: the SMTP password named by an email sink's `password_env` was known to the
/// redactor only when the alert went out, and stayed in `shell.run`'s environment: a step
/// that printed it put it in clear in the terminal, JUnit, run.json, the reports, the
/// webhook bodies, the Sentry event and the email itself. Here a step prints it (read from
/// a file, as a misconfigured script would) and dumps its environment; the password is in
/// none of them, the mail still went out with it. The same holds for a password of the
/// libpq password file a fleet target names (PGPASSFILE).
#[test]
fn the_smtp_password_is_a_secret_from_the_first_step() {
    if !aiosmtpd_ready() {
        return;
    }
    const PASSWORD: &str = "smtp-S3cret-pass-71c4e2";
    // A fleet target's libpq password file: its passwords are secrets of the run too.
    const PASSFILE_PW: &str = "passfile-Pw-0042-9d1e";
    let dir = tempfile::tempdir().expect("tempdir");
    let passfile = written(dir.path().join("pgpass"), format!("db.example:5432:*:app:{PASSFILE_PW}\n"));
    std::fs::set_permissions(&passfile, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod");
    let maildir = dir.path().join("maildir");
    let port = free_port();
    let _smtp = smtp_with_auth(port, &maildir, PASSWORD);
    let hooks = listener();
    let pwfile = written(dir.path().join("pw.txt"), format!("{PASSWORD}\n{PASSFILE_PW}\n"));
    let envdump = dir.path().join("env.txt");
    let rb = written(
        dir.path().join("leaky.yaml"),
        format!(
            "name: leaky\nsteps:\n  - id: leak\n    uses: shell.run\n    with: {{ argv: [sh, -c, 'cat \"$0\"; cat \"$0\" >&2; env > \"$1\"; exit 1', \"{}\", \"{}\"] }}\n",
            pwfile.display(),
            envdump.display()
        ),
    );
    let notify = written(
        dir.path().join("notify.yaml"),
        format!(
            "notify:\n  - {{ name: mail, when: failure, email: {{ smtp: \"127.0.0.1:{port}\", tls: none, user: pgdrill, password_env: SMTP_PW, from: pgdrill@example.com, to: [ops@example.com] }} }}\n  - {{ name: slack, when: always, webhook: {{ url: \"http://127.0.0.1:{hp}/slack\", format: slack }} }}\n  - {{ name: json, when: always, webhook: {{ url: \"http://127.0.0.1:{hp}/json\", format: json }} }}\n  - {{ name: sentry, when: failure, sentry: {{ dsn: \"http://sentrykey@127.0.0.1:{hp}/7\" }} }}\n",
            hp = hooks.port
        ),
    );
    let report = dir.path().join("report");
    let junit = dir.path().join("junit.xml");
    let out = Run::new(&rb)
        .arg("--notify")
        .arg(&notify)
        .report(&report)
        .junit(&junit)
        .env("SMTP_PW", PASSWORD)
        .env("PGPASSFILE", &passfile)
        .output();
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert_eq!(out.code, Some(1), "{stdout}{stderr}");
    assert!(!stderr.contains("warning:"), "a sink failed: {stderr}");

    let mut seen: Vec<(String, String)> = vec![("stdout".into(), stdout), ("stderr".into(), stderr)];
    let env = std::fs::read_to_string(&envdump).expect("the step ran");
    assert!(env.contains("PATH="), "not an environment: {env}");
    seen.push(("shell.run's environment".into(), env));
    seen.push(("junit".into(), std::fs::read_to_string(&junit).expect("junit")));
    let mut reports = 0;
    for e in std::fs::read_dir(&report).expect("report dir").flatten() {
        if e.path().is_file() {
            reports += 1;
            seen.push((
                e.path().display().to_string(),
                String::from_utf8_lossy(&std::fs::read(e.path()).expect("read")).into(),
            ));
        }
    }
    assert!(reports >= 2, "run.json and the reports were written");
    let run = std::fs::read_to_string(report.join("run.json")).expect("run.json");
    assert!(run.contains("********"), "the step's output was recorded, masked: {run}");
    let got = hooks.got.lock().expect("lock").clone();
    for p in ["/slack", "/json", "/api/7/envelope/"] {
        assert!(got.iter().any(|(path, _)| path == p), "{p} got nothing: {got:?}");
    }
    for (p, body) in got {
        seen.push((format!("the body sent to {p}"), body));
    }
    let mails: Vec<_> = std::fs::read_dir(maildir.join("new")).expect("maildir").flatten().collect();
    assert_eq!(mails.len(), 1, "the mail went out, authenticated with the password");
    seen.push(("the email".into(), std::fs::read_to_string(mails[0].path()).expect("mail")));
    for (what, t) in &seen {
        assert!(!t.contains(PASSWORD), "the SMTP password appears in {what}:\n{t}");
        assert!(!t.contains(PASSFILE_PW), "the passfile's password appears in {what}:\n{t}");
    }
}

/// The rows of report.md's checks table, its header and rule included.
fn check_rows(md: &str) -> Vec<&str> {
    md.split("## Checks").nth(1).expect("checks section").lines().filter(|l| l.starts_with('|')).collect()
}

/// The cell borders of a Markdown table row: its `|` that are not escaped.
fn unescaped_pipes(l: &str) -> usize {
    let b = l.as_bytes();
    (0..b.len()).filter(|&i| b[i] == b'|' && (i == 0 || b[i - 1] != b'\\')).count()
}

/// Before: report.md broke its tables on a newline or `|` in a name and passed `<script>`
/// through; a newline in `--var database` forged whole terminal lines; Slack messages passed
/// `<!channel>` and `<https://evil|text>` unescaped; `http.check` logged `?api_key=` tokens.
#[test]
fn hostile_names_are_escaped_for_markdown_the_terminal_and_slack_and_query_tokens_are_masked() {
    let (hooks, dir, rb) = listened_runbook("hostile.yaml", |p| {
        format!("name: hostile\nvars:\n  database: \"\"\nsteps:\n  - name: \"a|b <script>alert(1)</script> [x](http://evil)\"\n    uses: sleep\n    with: {{ duration: 1ms }}\n  - name: health\n    uses: http.check\n    with: {{ url: \"http://127.0.0.1:{p}/health?api_key=QueryT0ken-77aa&page=2\", body_contains: \"{{{{ vars.database }}}}\" }}\n")
    });
    let p = hooks.port;
    let notify = written(
        dir.path().join("notify.yaml"),
        format!("notify:\n  - {{ when: always, webhook: {{ url: \"http://127.0.0.1:{p}/slack\", format: slack }} }}\n"),
    );
    let report = dir.path().join("report");
    let forged = "  passed       forged step [shell.run] 0.00s";
    let out = Run::new(&rb)
        .var("database", format!("db1 <!channel> <https://evil|text>\n{forged}"))
        .arg("--notify")
        .arg(&notify)
        .report(&report)
        .output();
    let (stdout, stderr) = (out.stdout, out.stderr);
    assert_eq!(out.code, Some(1), "{stdout}{stderr}");

    // The terminal: one line per event, the newline shown as `\n`.
    assert!(!stdout.lines().any(|l| l == forged), "a forged line: {stdout}");
    assert!(stdout.contains(&format!("<https://evil|text>\\n{forged}")), "{stdout}");
    assert!(!stdout.contains("QueryT0ken-77aa") && !stderr.contains("QueryT0ken-77aa"), "{stdout}{stderr}");
    let run = std::fs::read_to_string(report.join("run.json")).expect("run.json");
    assert!(run.contains("?api_key=********&page=2"), "http.check's log line is kept, its token masked: {run}");
    assert!(!run.contains("QueryT0ken-77aa"), "{run}");

    // report.md: every row of the checks table has its six cells; no HTML, no link.
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    let checks = check_rows(&md);
    assert_eq!(checks.len(), 4, "header, rule and two checks: {md}");
    for l in &checks {
        assert_eq!(unescaped_pipes(l), 7, "a row with other than six cells: {l}\n{md}");
    }
    assert!(!md.lines().any(|l| l.starts_with(forged.trim_start())), "{md}");
    assert!(!md.contains("<script>") && !md.contains("[x](http://evil)"), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(!html.contains("<script>alert"), "{html}");

    // Slack: no mention, no link from data.
    let got = hooks.got.lock().expect("lock").clone();
    let slack = got.iter().find(|(p, _)| p == "/slack").expect("the slack hook fired");
    let body: serde_json::Value = serde_json::from_str(&slack.1).expect("json");
    let t = body["text"].as_str().expect("text");
    assert!(!t.contains("<!channel>") && !t.contains("<https://evil|text>") && !t.contains('<'), "{t}");
    assert!(t.contains("&lt;!channel&gt;"), "{t}");
}

/// The hostile texts of issue 36, as YAML double-quoted escapes (they reach a runbook as the
/// characters themselves): quotes, `=`, `..`, line breaks, `%`, control characters, bidi
/// overrides, multibyte, markup. Shared by every output format's property test.
pub(crate) const HOSTILE_TEXTS: [&str; 12] = [
    r#"it's \"quoted\" 'twice'"#,
    "a=b&c=d; k==v",
    "../../etc/passwd/..",
    r"line one\nline two\r\nthree",
    "100% %s %n %x %%",
    r"\e[31mred\e[0m \e]0;title\a",
    r"bell\a back\b nul\0 tab\t vt\v del\x7f",
    r"\u202Eevil\u202C \u200Bzero",
    "Grüße 東京 🚀 ǅ",
    "a|b|c <script>alert(1)</script> [x](http://evil) `code`",
    r"back\\slash \\n",
    r"\x85next\u2028line\u2029para",
];

/// Issue 36: hostile names were tested one output format at a time. Here each hostile text
/// (quotes, `=`, `..`, newlines, `%`, control characters, bidi overrides, multibyte) goes,
/// as a step's name and as a value in a failing step's message, through every output of one
/// run: the terminal, JUnit, run.json, report.md/html/json and the JSON and Slack webhook
/// bodies. Each must stay well-formed (parses; a table row keeps its cells), carry no raw
/// control character where one can do harm, and never forge a line or markup.
#[test]
fn hostile_names_never_break_any_output_format() {
    // YAML double-quoted escapes reach the runbook as the characters themselves.
    let hostile = HOSTILE_TEXTS;
    let hooks = listener();
    let dir = tempfile::tempdir().expect("tempdir");
    // The email as delivered (a real SMTP server's mailbox) and the Sentry event (the local
    // listener) are outputs too.
    if !aiosmtpd_ready() {
        return;
    }
    const SMTP_PW: &str = "hostile-smtp-pw-5e1f";
    let maildir = dir.path().join("maildir");
    let smtp_port = free_port();
    let _smtp = smtp_with_auth(smtp_port, &maildir, SMTP_PW);
    let notify = written(
        dir.path().join("notify.yaml"),
        format!(
            "notify:\n  - {{ when: always, webhook: {{ url: \"http://127.0.0.1:{p}/slack\", format: slack }} }}\n  - {{ when: always, webhook: {{ url: \"http://127.0.0.1:{p}/json\", format: json }} }}\n  - {{ when: failure, email: {{ smtp: \"127.0.0.1:{smtp_port}\", tls: none, user: pgdrill, password_env: SMTP_PW, from: pgdrill@example.com, to: [ops@example.com] }} }}\n  - {{ when: failure, sentry: {{ dsn: \"http://sentrykey@127.0.0.1:{p}/9\" }} }}\n",
            p = hooks.port
        ),
    );
    // Python's own email parser reads the delivered message: its headers as a mail client
    // sees them (encoded words decoded) and its body.
    let parse_mail = |path: &Path| -> serde_json::Value {
        let script = "import email, json, sys\nfrom email import policy\nm = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=policy.default)\nprint(json.dumps({'headers': [[k, str(v)] for k, v in m.items()], 'defects': [str(d) for d in m.defects], 'body': m.get_content()}))\n";
        let out =
            std::process::Command::new("/usr/bin/python3").args(["-c", script]).arg(path).output().expect("python3");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("json")
    };
    // Characters no output may carry raw: C0 controls but newline and tab, DEL, C1, and the
    // bidi overrides that reorder what a reader sees.
    let harmful = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || ('\u{202A}'..='\u{202E}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    for (i, h) in hostile.iter().enumerate() {
        let rb = written(
            dir.path().join(format!("hostile-{i}.yaml")),
            format!(
                "name: \"RB{i} {h}\"\nvars:\n  database: app\nsteps:\n  - name: \"MARK{i} {h}\"\n    uses: sleep\n    with: {{ duration: 1ms }}\n  - name: \"FAIL{i} {h}\"\n    uses: http.check\n    with: {{ url: \"http://127.0.0.1:{p}/health\", body_contains: \"NEEDLE{i} {h}\" }}\n",
                p = hooks.port
            ),
        );
        let report = dir.path().join(format!("report-{i}"));
        let junit = dir.path().join(format!("junit-{i}.xml"));
        // The same text as the run's database (the subject of an email, a Sentry tag), its
        // escapes read as YAML reads them; an argument cannot hold a NUL.
        let db: String = serde_yaml::from_str::<String>(&format!("\"DB{i} {h}\"")).expect("yaml").replace('\0', "");
        let out = Run::new(&rb)
            .var("database", db)
            .arg("--notify")
            .arg(&notify)
            .report(&report)
            .junit(&junit)
            .env("SMTP_PW", SMTP_PW)
            .output();
        let (stdout, stderr) = (out.stdout, out.stderr);
        let case = format!("hostile #{i} {h:?}");
        assert!(!stderr.contains("warning:"), "{case}: a sink failed: {stderr}");
        assert_eq!(out.code, Some(1), "{case}: {stdout}{stderr}");

        // The terminal: nothing raw, and each hostile text stays on its step's line.
        for (what, t) in [("stdout", &stdout), ("stderr", &stderr)] {
            assert!(!t.chars().any(harmful), "{case}: a raw control character on {what}: {t:?}");
        }
        for l in stdout.lines().chain(stderr.lines()) {
            for part in ["line two", "three", "next"] {
                assert!(!l.trim_start().starts_with(part), "{case}: a forged line: {l:?}");
            }
        }
        assert!(stdout.contains(&format!("MARK{i}")), "{case}: {stdout}");

        // JUnit: well-formed (parsed), no character XML 1.0 forbids, both steps as cases.
        let raw = std::fs::read_to_string(&junit).expect("junit");
        assert!(!raw.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\t' | '\r')), "{case}: {raw:?}");
        let cases = junit_cases(&junit);
        // The runbook's own name (the suite's) is data too: the suite is named by it, whole.
        let suites = Junit::read(&junit).suites;
        assert!(suites.len() == 1 && suites[0].0.starts_with(&format!("RB{i} ")), "{case}: {suites:?}");
        assert!(cases.iter().any(|(n, s)| n.starts_with(&format!("MARK{i}")) && s == "passed"), "{case}: {cases:?}");
        assert!(cases.iter().any(|(n, s)| n.starts_with(&format!("FAIL{i}")) && s == "failure"), "{case}: {cases:?}");

        // run.json and report.json: JSON, which carries any text; the step's name survives.
        let run: serde_json::Value = read_json(&report.join("run.json"));
        let labels = run.to_string();
        assert!(labels.contains(&format!("MARK{i}")), "{case}: {labels}");
        let _: serde_json::Value = read_json(&report.join("report.json"));

        // report.md: every row of the checks table keeps its six cells; no raw control
        // character, no markup from data.
        let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
        assert!(!md.chars().any(harmful), "{case}: {md:?}");
        assert!(md.starts_with(&format!("# pgdrill report: RB{i} ")), "{case}: the title: {md}");
        assert!(md.lines().next().is_some_and(|l| l.ends_with("FAILED")), "{case}: the title on one line: {md}");
        let rows = check_rows(&md);
        assert_eq!(rows.len(), 4, "{case}: header, rule and two checks: {md}");
        for l in &rows {
            assert_eq!(unescaped_pipes(l), 7, "{case}: a row with other than six cells: {l}");
        }
        assert!(!md.contains("<script>") && !md.contains("[x](http"), "{case}: {md}");

        // report.html: no markup or raw control character from data.
        let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
        assert!(!html.contains("<script>alert"), "{case}");
        // A carriage return is whitespace to HTML, as to XML: normalised, never shown.
        let raw_in_html: Vec<char> = html.chars().filter(|c| harmful(*c) && *c != '\r').collect();
        assert!(raw_in_html.is_empty(), "{case}: raw control characters in report.html: {raw_in_html:?}");
        assert_eq!(html.matches("<tr").count(), html.matches("</tr>").count(), "{case}: table rows");

        // Webhooks: JSON bodies that parse; Slack text with no markup and nothing raw.
        let got: Vec<(String, String)> = std::mem::take(&mut *hooks.got.lock().expect("lock"));
        for path in ["/slack", "/json"] {
            let body =
                &got.iter().find(|(p, _)| p == path).unwrap_or_else(|| panic!("{case}: {path} fired: {got:?}")).1;
            let v: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|e| panic!("{case}: {path} body is not JSON ({e}): {body}"));
            if path == "/slack" {
                let t = v["text"].as_str().expect("text");
                assert!(!t.contains("<script") && !t.contains("<http"), "{case}: {t}");
                assert!(!t.chars().any(harmful), "{case}: {t:?}");
            }
        }
        let forged = |t: &str| {
            t.lines().any(|l| ["line two", "three", "next", "para"].iter().any(|p| l.trim_start().starts_with(p)))
        };

        // Sentry: an envelope of three JSON lines; the event's message keeps its lines and
        // shows nothing raw; tag values are single lines of at most 200 characters (Sentry
        // drops others).
        let body =
            &got.iter().find(|(p, _)| p == "/api/9/envelope/").unwrap_or_else(|| panic!("{case}: sentry: {got:?}")).1;
        let lines: Vec<&str> = body.lines().skip(1).collect();
        assert_eq!(lines.len(), 3, "{case}: an envelope header, an item header and the event: {body}");
        let event: serde_json::Value = serde_json::from_str(lines[2]).unwrap_or_else(|e| panic!("{case}: {e}: {body}"));
        let message = event["message"]["formatted"].as_str().expect("message");
        assert!(message.contains(&format!("DB{i}")), "{case}: {message}");
        assert!(!message.chars().any(harmful) && !forged(message), "{case}: the Sentry message: {message:?}");
        for (k, v) in event["tags"].as_object().expect("tags") {
            let v = v.as_str().unwrap_or_default();
            assert!(!v.chars().any(|c| c.is_control() || harmful(c)), "{case}: Sentry tag {k}: {v:?}");
            assert!(v.chars().count() <= 200, "{case}: Sentry tag {k} is longer than 200: {v:?}");
        }
        assert!(event["tags"]["step"].as_str().is_some_and(|s| s.starts_with(&format!("FAIL{i}"))), "{case}: {event}");

        // The email, as delivered: only pgdrill's headers (and the server's own), one each;
        // the subject decodes to one line with the database in it; the body keeps its lines.
        let mails: Vec<_> =
            std::fs::read_dir(maildir.join("new")).expect("maildir").flatten().map(|e| e.path()).collect();
        assert_eq!(mails.len(), 1, "{case}: one email");
        let mail = parse_mail(&mails[0]);
        std::fs::remove_file(&mails[0]).expect("rm mail");
        assert_eq!(mail["defects"], serde_json::json!([]), "{case}: {mail}");
        let headers: Vec<(String, String)> = mail["headers"]
            .as_array()
            .expect("headers")
            .iter()
            .map(|h| (h[0].as_str().unwrap_or_default().to_string(), h[1].as_str().unwrap_or_default().to_string()))
            .collect();
        let known = [
            "subject",
            "date",
            "mime-version",
            "content-type",
            "content-transfer-encoding",
            "from",
            "to",
            "x-peer",
            "x-mailfrom",
            "x-rcptto",
        ];
        for (k, _) in &headers {
            assert!(known.contains(&k.to_ascii_lowercase().as_str()), "{case}: a forged header {k:?}: {headers:?}");
            assert_eq!(headers.iter().filter(|(o, _)| o.eq_ignore_ascii_case(k)).count(), 1, "{case}: {k} twice");
        }
        let subject = &headers.iter().find(|(k, _)| k == "Subject").expect("subject").1;
        assert!(subject.contains(&format!("DB{i}")) && subject.ends_with("failed"), "{case}: {subject:?}");
        assert!(!subject.chars().any(|c| c.is_control() || harmful(c)), "{case}: the subject: {subject:?}");
        let mail_body = mail["body"].as_str().expect("body");
        assert!(mail_body.contains(&format!("FAIL{i}")), "{case}: {mail_body}");
        assert!(!mail_body.chars().any(harmful) && !forged(mail_body), "{case}: the email's body: {mail_body:?}");
    }
}
