//! On-call sinks (issue 42): PagerDuty Events API v2, Opsgenie, Microsoft Teams and syslog
//! (RFC 5424, UDP and TCP), each against a loopback receiver that checks what arrived
//! against the service's documented schema, with secrets masked and names kept as data.

use std::io::{BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use crate::common::{http_recorder, written, Run};

const ROUTING_KEY: &str = "R0UTING-key-pagerduty-5e3c9a1d0b7f";
const GENIE_KEY: &str = "G3NIE-key-opsgenie-0c1d2e3f4a5b";
/// A database name that would be a link in Markdown and end a structured-data value.
const HOSTILE: &str = "pay\"]ments [x](http://evil.example)";

/// One received HTTP request.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: serde_json::Value,
    /// The body as sent (a Pushgateway's is text).
    raw: String,
}

/// An HTTP server that records every request and answers 202, as the services do.
fn http_receiver() -> (u16, Arc<Mutex<Vec<Got>>>) {
    http_recorder(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}", |r| Got {
        body: serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null),
        raw: String::from_utf8_lossy(&r.body).into_owned(),
        path: r.path,
        headers: r.headers,
    })
}

/// The RFC 5424 header and structured data of `m`: (PRI, timestamp, hostname, app, msgid,
/// structured data, message), or why it is not one.
fn rfc5424(m: &str) -> (u16, String, String, String, String, String, String) {
    let re =
        regex::Regex::new(r#"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (\[(?:[^"\]]|"(?:[^"\\]|\\.)*")*\]) (.*)$"#)
            .expect("regex");
    let c = re.captures(m).unwrap_or_else(|| panic!("not an RFC 5424 message: {m}"));
    let s = |i: usize| c[i].to_string();
    (s(1).parse().expect("pri"), s(2), s(3), s(4), s(6), s(7), s(8))
}

#[test]
fn pagerduty_opsgenie_teams_and_syslog_receive_what_their_schemas_document() {
    let (port, got) = http_receiver();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let (tcp_port, tcp_messages) = tcp_syslog();
    let t = tempfile::tempdir().expect("tmp");
    let notify = written(
        t.path().join("notify.yaml"),
        format!(
            "notify:
  - {{ when: always, pagerduty: {{ routing_key_env: PD_KEY, url: \"http://127.0.0.1:{port}/v2/enqueue\", severity: error }} }}
  - {{ when: always, opsgenie: {{ api_key_env: GENIE_KEY, url: \"http://127.0.0.1:{port}/v2/alerts\", priority: P1 }} }}
  - {{ when: always, teams: {{ url_env: TEAMS_URL }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{}\" }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{}\", transport: tcp, facility: 1 }} }}
",
            udp.local_addr().expect("addr").port(),
            tcp_port
        ),
    );
    let runbook = t.path().join("oncall.yaml");
    let write = |code: i32| {
        std::fs::write(
            &runbook,
            format!("name: oncall\nvars:\n  database: \"\"\nsteps:\n  - id: s\n    uses: shell.run\n    with: {{ script: \"exit {code}\" }}\n"),
        )
        .expect("runbook")
    };
    let run =
        || paged(&runbook, HOSTILE, &notify).env("TEAMS_URL", format!("http://127.0.0.1:{port}/workflows/teams-hook"));
    // A failure, then a pass.
    write(3);
    let failed = run().expect(1);
    write(0);
    let passed = run().expect(0);
    for r in [&failed, &passed] {
        assert!(!r.all().contains(ROUTING_KEY) && !r.all().contains(GENIE_KEY), "a key was shown: {}", r.all());
        assert!(!r.all().contains("warning"), "a sink failed: {}", r.all());
    }
    let got = got.lock().expect("lock").clone();
    let to = |p: &str| got.iter().filter(|g| g.path.starts_with(p)).cloned().collect::<Vec<_>>();

    // PagerDuty Events API v2: trigger with a payload, then resolve under the same dedup key.
    let pd = to("/v2/enqueue");
    assert_eq!(pd.len(), 2, "{got:?}");
    let (trigger, resolve) = (&pd[0].body, &pd[1].body);
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["event_action"], "trigger");
    let summary = trigger["payload"]["summary"].as_str().expect("summary");
    assert!(!summary.is_empty() && summary.chars().count() <= 1024 && summary.contains("oncall"), "{trigger}");
    assert!(trigger["payload"]["source"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(trigger["payload"]["severity"], "error");
    assert_eq!(trigger["payload"]["component"], HOSTILE);
    assert!(trigger["dedup_key"].as_str().is_some_and(|k| k.len() <= 255));
    assert_eq!(resolve["event_action"], "resolve");
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert!(pd[0].headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));

    // Opsgenie: create (message <= 130, GenieKey header), then close by alias.
    let og = to("/v2/alerts");
    assert_eq!(og.len(), 2, "{got:?}");
    assert!(og[0].headers.iter().any(|(k, v)| k == "authorization" && v == &format!("GenieKey {GENIE_KEY}")));
    assert_eq!(og[0].path, "/v2/alerts");
    let create = &og[0].body;
    assert!(create["message"].as_str().is_some_and(|m| !m.is_empty() && m.chars().count() <= 130), "{create}");
    assert_eq!(create["priority"], "P1");
    assert!(create["alias"].as_str().is_some_and(|a| a.len() <= 512));
    let alias = create["alias"].as_str().expect("alias");
    assert_eq!(
        og[1].path,
        format!("/v2/alerts/{}/close?identifierType=alias", pgdrill::testkit::util::percent_encode(alias))
    );

    // Teams: a message with one Adaptive Card; the name is Markdown-escaped text.
    let teams = to("/workflows/teams-hook");
    assert_eq!(teams.len(), 2);
    let card = &teams[0].body;
    assert_eq!(card["type"], "message");
    assert_eq!(card["attachments"][0]["contentType"], "application/vnd.microsoft.card.adaptive");
    let content = &card["attachments"][0]["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert!(content["version"].as_str().is_some());
    let body = content["body"].as_array().expect("body");
    assert!(body.iter().all(|b| b["type"] == "TextBlock" || b["type"] == "FactSet"), "{content}");
    let shown = content.to_string();
    assert!(!shown.contains("[x](http://evil.example)"), "a name became a link: {shown}");
    // Escaped as Markdown asks (a backslash before each bracket; JSON doubles it).
    assert!(shown.contains(r"\\[x\\](http://evil.example)"), "{shown}");

    // Syslog over UDP: one datagram per run, RFC 5424, local0 (16): err (131) then info (134).
    let mut buf = [0u8; 8192];
    let mut pris = Vec::new();
    for _ in 0..2 {
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (pri, ts, host, app, msgid, sd, msg) = rfc5424(&m);
        pris.push(pri);
        assert!(time::OffsetDateTime::parse(&ts, &time::format_description::well_known::Rfc3339).is_ok(), "{ts}");
        assert!(!host.is_empty() && app == "pgdrill" && msgid == "run", "{m}");
        assert!(sd.starts_with("[pgdrill@32473 runbook=\"oncall\" database=\"pay\\\"\\]ments"), "{sd}");
        assert!(msg.contains("oncall"), "{m}");
    }
    assert_eq!(pris, vec![16 * 8 + 3, 16 * 8 + 6]);
    // Over TCP: octet-counted frames (RFC 6587), facility 1 (user).
    let tcp = crate::common::wait_for(std::time::Duration::from_secs(10), || {
        let m = tcp_messages.lock().expect("lock").clone();
        (m.len() == 2).then_some(m)
    })
    .expect("two syslog connections");
    for (frame, want) in tcp.iter().zip([8 + 3, 8 + 6]) {
        let (len, m) = frame.split_once(' ').expect("LEN SP MSG");
        assert_eq!(len.parse::<usize>().expect("length"), m.len(), "{frame}");
        assert_eq!(rfc5424(m).0, want, "{m}");
    }
}

#[test]
fn a_notification_with_two_sinks_or_a_bad_severity_is_shown_at_its_line() {
    let t = tempfile::tempdir().expect("tmp");
    let cases = [
        (
            "notify:\n  - when: failure\n    pagerduty: { routing_key_env: K }\n    teams: { url_env: U }\n",
            "notify.yaml:2:",
            "one sink",
        ),
        (
            "notify:\n  - when: failure\n    pagerduty: { routing_key_env: K, severity: loud }\n",
            "notify.yaml:3:",
            "one of critical, error, warning, info",
        ),
        ("notify:\n  - when: failure\n    syslog: { address: \"nohost\" }\n", "notify.yaml:3:", "host:port"),
    ];
    for (yaml, at, says) in cases {
        let notify = written(t.path().join("notify.yaml"), yaml);
        let r = Run::new("quickstart").arg("--notify").arg(&notify).expect(2);
        assert!(r.all().contains(at) && r.all().contains(says), "{yaml}\n{}", r.all());
    }
}

/// Issue 36, case 9, continued: the hostile texts of `notify::hostile_names_never_break_any_output_format`
/// as a run's database and step names, through the on-call sinks (PagerDuty, Opsgenie, Teams,
/// syslog over UDP and TCP) and the metrics (textfile, Pushgateway). Every payload keeps its
/// framing (JSON, RFC 5424, octet counting, the Prometheus text format as promtool reads it),
/// no field carries a raw line break, control character or bidi override, and the text is
/// still there, shown escaped.
#[test]
fn hostile_names_never_break_the_oncall_sinks_or_the_metric_labels() {
    let (tcp_port, tcp_messages) = tcp_syslog();
    let Sinks { port, got, udp, dir: t, textfile, notify } = sinks(&format!(
        "  - {{ when: always, teams: {{ url: \"http://127.0.0.1:{{port}}/teams\" }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{tcp_port}\", transport: tcp }} }}
"
    ));
    // Characters no field may carry raw: C0 and C1 controls (but tab), DEL, bidi overrides.
    let harmful = |c: char| (c.is_control() && c != '\t') || pgdrill::testkit::util::is_bidi_control(c);
    // Every word (three or more letters or digits) of the text, as a reader would look for it.
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric()).filter(|w| w.chars().count() >= 3).map(String::from).collect()
    };
    let strings = |v: &serde_json::Value| -> Vec<(String, String)> {
        fn walk(k: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
            match v {
                serde_json::Value::String(s) => out.push((k.to_string(), s.clone())),
                serde_json::Value::Array(a) => a.iter().for_each(|v| walk(k, v, out)),
                serde_json::Value::Object(o) => o.iter().for_each(|(k, v)| walk(k, v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk("", v, &mut out);
        out
    };
    // The database's SD-PARAM in a syslog message's structured data.
    let database = regex::Regex::new(r#" database="((?:[^"\\]|\\.)*)""#).expect("regex");
    let mut dbs = Vec::new();
    for (i, h) in crate::notify::HOSTILE_TEXTS.iter().enumerate() {
        let runbook = written(
            t.path().join(format!("hostile-{i}.yaml")),
            format!(
                "name: \"RB{i} {h}\"\nvars:\n  database: app\nsteps:\n  - name: \"FAIL{i} {h}\"\n    uses: http.check\n    with: {{ url: \"http://127.0.0.1:{port}/health\", body_contains: \"NEEDLE{i} {h}\" }}\n"
            ),
        );
        let db: String = serde_yaml::from_str::<String>(&format!("\"DB{i} {h}\"")).expect("yaml").replace('\0', "");
        let case = format!("hostile #{i} {h:?}");
        let r = Run::new(&runbook)
            .var("database", &db)
            .arg("--notify")
            .arg(&notify)
            .env("PD_KEY", ROUTING_KEY)
            .env("GENIE_KEY", GENIE_KEY)
            .expect(1);
        assert!(!r.all().contains("warning"), "{case}: a sink failed: {}", r.all());
        let got: Vec<Got> = std::mem::take(&mut *got.lock().expect("lock"));
        let to = |p: &str| got.iter().filter(|g| g.path.starts_with(p)).cloned().collect::<Vec<_>>();
        let recognisable = |field: &str, what: &str| {
            for w in words(&db) {
                assert!(field.contains(&w), "{case}: {what} lost {w:?}: {field:?}");
            }
        };

        // The JSON sinks: bodies that parse; no string with a raw control character or bidi
        // override, nor a line break but in Opsgenie's description (lines of pgdrill's own);
        // the database recognisable where it is a field of its own.
        for (path, db_fields) in [
            ("/v2/enqueue", &["component", "dedup_key", "database"][..]),
            ("/v2/alerts", &["alias", "database"][..]),
            ("/teams", &["value"][..]),
        ] {
            let sent = to(path);
            assert_eq!(sent.len(), 1, "{case}: {path}: {got:?}");
            let body = &sent[0].body;
            assert!(body.is_object(), "{case}: {path} is not JSON: {}", sent[0].raw);
            let fields = strings(body);
            for (k, v) in &fields {
                assert!(
                    !v.chars().any(harmful) || (k == "description" && !v.chars().any(|c| harmful(c) && c != '\n')),
                    "{case}: {path} {k}: {v:?}"
                );
                for l in v.lines().skip(1) {
                    for part in ["line two", "three", "next"] {
                        assert!(!l.trim_start().starts_with(part), "{case}: {path} {k}: a forged line: {v:?}");
                    }
                }
            }
            for want in db_fields {
                let v = fields
                    .iter()
                    .filter(|(k, _)| k == want)
                    .map(|(_, v)| v.as_str())
                    .find(|v| v.contains(&format!("DB{i}")))
                    .unwrap_or_else(|| panic!("{case}: {path} has no {want} with the database: {body}"));
                recognisable(v, &format!("{path} {want}"));
            }
        }

        // Syslog: one RFC 5424 message per run, over UDP and in an octet-counted TCP frame,
        // on one line; the database is its structured-data value, escaped.
        let mut buf = [0u8; 8192];
        let n = udp.recv(&mut buf).expect("a syslog datagram");
        let datagram = String::from_utf8(buf[..n].to_vec()).expect("UTF-8");
        let frames = crate::common::wait_for(std::time::Duration::from_secs(10), || {
            let m = std::mem::take(&mut *tcp_messages.lock().expect("lock"));
            (!m.is_empty()).then_some(m)
        })
        .expect("a syslog connection");
        assert_eq!(frames.len(), 1, "{case}: {frames:?}");
        let (len, framed) = frames[0].split_once(' ').expect("LEN SP MSG");
        assert_eq!(len.parse::<usize>().expect("length"), framed.len(), "{case}: {:?}", frames[0]);
        for m in [datagram.as_str(), framed] {
            assert!(!m.chars().any(harmful), "{case}: a raw control character in a syslog message: {m:?}");
            let (_, _, _, app, msgid, sd, msg) = rfc5424(m);
            assert!(app == "pgdrill" && msgid == "run", "{case}: {m:?}");
            let v = database.captures(&sd).unwrap_or_else(|| panic!("{case}: no database in {sd:?}"))[1].to_string();
            recognisable(&v, "syslog database");
            assert!(msg.contains(&format!("FAIL{i}")) || msg.contains(&format!("DB{i}")), "{case}: {m:?}");
        }

        // The Pushgateway: a grouping path whose labels decode to text with nothing raw, and a
        // body promtool accepts.
        let push = to("/gw/metrics/");
        assert_eq!(push.len(), 1, "{case}: {got:?}");
        let seg = push[0].path.split("/database@base64/").nth(1).expect("database label");
        use base64::Engine as _;
        let label = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).expect("base64");
        let label = String::from_utf8(label).expect("UTF-8");
        assert!(!label.chars().any(harmful), "{case}: the Pushgateway's database label: {label:?}");
        recognisable(&label, "Pushgateway database");
        promtool(&push[0].raw, &case);
        dbs.push(db);
    }

    // The textfile, after every run: promtool accepts it, no line carries a raw control
    // character, and each database has its own series, its label value escaped as the text
    // format asks (`\\`, `\"`, `\n`) and recognisable.
    let prom = std::fs::read_to_string(&textfile).expect("textfile");
    promtool(&prom, "the textfile");
    assert!(!prom.chars().any(|c| harmful(c) && c != '\n'), "{prom:?}");
    // The runbook's own name is a hostile text too (`RB{i} ...`), escaped the same way.
    let label = regex::Regex::new(
        r#"^pgdrill_run_success\{runbook="((?:[^"\\\n]|\\["\\n])*)",database="((?:[^"\\\n]|\\["\\n])*)"\} 0$"#,
    )
    .expect("regex");
    let pairs: Vec<(String, String)> =
        prom.lines().filter_map(|l| label.captures(l)).map(|c| (c[1].to_string(), c[2].to_string())).collect();
    for (runbook, database) in &pairs {
        let n = database.strip_prefix("DB").and_then(|d| d.split(' ').next()).unwrap_or_default();
        assert!(runbook.starts_with(&format!("RB{n} ")), "the series of {database:?} has runbook {runbook:?}: {prom}");
    }
    let values: Vec<String> = pairs.into_iter().map(|(_, d)| d).collect();
    assert_eq!(values.len(), dbs.len(), "one series per database: {prom}");
    for (i, db) in dbs.iter().enumerate() {
        let v = values
            .iter()
            .find(|v| v.starts_with(&format!("DB{i} ")))
            .unwrap_or_else(|| panic!("no series for DB{i}: {prom}"));
        for w in words(db) {
            assert!(v.contains(&w), "DB{i}: the label value lost {w:?}: {v:?}");
        }
    }
}

/// `promtool check metrics` on `text`, which must pass.
fn promtool(text: &str, what: &str) {
    if !crate::common::require(
        std::process::Command::new("promtool").arg("--version").output().is_ok_and(|o| o.status.success()),
        "promtool (Debian package prometheus, ci/setup.sh)",
    ) {
        return;
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{what}: promtool check metrics: {said}\n{text:?}");
}

/// A TCP syslog receiver: its port, and each connection's text once it closes.
fn tcp_syslog() -> (u16, Arc<Mutex<Vec<String>>>) {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let port = tcp.local_addr().expect("addr").port();
    let tcp_messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let tm = tcp_messages.clone();
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            let mut s = String::new();
            let _ = BufReader::new(conn).read_to_string(&mut s);
            tm.lock().expect("lock").push(s);
        }
    });
    (port, tcp_messages)
}

/// An HTTP receiver, a UDP syslog socket and, in a tempdir of its own, a notify file that
/// sends a run to PagerDuty, Opsgenie and syslog over UDP on them, with the metrics in a
/// textfile and a Pushgateway, then the sinks in `more` (`{port}` in it: the HTTP receiver's
/// port).
struct Sinks {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
    udp: std::net::UdpSocket,
    dir: tempfile::TempDir,
    textfile: std::path::PathBuf,
    notify: std::path::PathBuf,
}

fn sinks(more: &str) -> Sinks {
    let (port, got) = http_receiver();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    udp.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let dir = tempfile::tempdir().expect("tmp");
    let textfile = dir.path().join("pgdrill.prom");
    let notify = dir.path().join("notify.yaml");
    std::fs::write(
        &notify,
        format!(
            "metrics:
  textfile: {}
  pushgateway: {{ url: \"http://127.0.0.1:{port}/gw\" }}
notify:
  - {{ when: always, pagerduty: {{ routing_key_env: PD_KEY, url: \"http://127.0.0.1:{port}/v2/enqueue\" }} }}
  - {{ when: always, opsgenie: {{ api_key_env: GENIE_KEY, url: \"http://127.0.0.1:{port}/v2/alerts\" }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{}\" }} }}
{}",
            textfile.display(),
            udp.local_addr().expect("addr").port(),
            more.replace("{port}", &port.to_string()),
        ),
    )
    .expect("notify");
    Sinks { port, got, udp, dir, textfile, notify }
}

/// `runbook` run for `database` with the alerts of `notify`, the on-call keys in the
/// environment the notify files name; not run yet.
fn paged(runbook: &std::path::Path, database: &str, notify: &std::path::Path) -> Run {
    Run::new(runbook)
        .var("database", database)
        .arg("--notify")
        .arg(notify)
        .env("PD_KEY", ROUTING_KEY)
        .env("GENIE_KEY", GENIE_KEY)
}

/// One failed run with `database` as its database, every on-call sink and the metrics
/// configured: (HTTP requests received, the UDP syslog message, the textfile).
fn one_failed_run(database: &str) -> (Vec<Got>, String, String) {
    let Sinks { got, udp, dir: t, textfile, notify, .. } = sinks("");
    let runbook = written(
        t.path().join("r.yaml"),
        "name: r\nvars:\n  database: \"\"\nsteps:\n  - id: s\n    uses: shell.run\n    with: { script: \"exit 3\" }\n",
    );
    paged(&runbook, database, &notify).expect(1);
    let mut buf = [0u8; 8192];
    let n = udp.recv(&mut buf).expect("a syslog datagram");
    let got = got.lock().expect("lock").clone();
    (got, String::from_utf8_lossy(&buf[..n]).into_owned(), std::fs::read_to_string(&textfile).expect("textfile"))
}

/// Before: a database name's line break went raw into PagerDuty's `dedup_key` and
/// `component`, Opsgenie's `alias` and details, and the syslog message's structured data (a
/// second line, which a line-based collector reads as another message).
#[test]
fn a_line_break_in_a_database_name_was_raw_in_the_pagerduty_dedup_key_opsgenie_alias_and_syslog_structured_data() {
    let (got, syslog, _) = one_failed_run("app\nline two\r\u{1b}[31m");
    let body =
        |p: &str| got.iter().find(|g| g.path.starts_with(p)).unwrap_or_else(|| panic!("{p}: {got:?}")).body.clone();
    let pd = body("/v2/enqueue");
    assert_eq!(pd["dedup_key"], r"pgdrill/r/app\nline two\r\x1b[31m", "{pd}");
    assert_eq!(pd["payload"]["component"], r"app\nline two\r\x1b[31m", "{pd}");
    assert_eq!(pd["payload"]["custom_details"]["database"], r"app\nline two\r\x1b[31m", "{pd}");
    let og = body("/v2/alerts");
    assert_eq!(og["alias"], r"pgdrill/r/app\nline two\r\x1b[31m", "{og}");
    assert_eq!(og["details"]["database"], r"app\nline two\r\x1b[31m", "{og}");
    assert!(!syslog.contains('\n') && !syslog.contains('\r') && !syslog.contains('\u{1b}'), "{syslog:?}");
    assert!(rfc5424(&syslog).5.contains(r#"database="app\\nline two\\r\\x1b[31m""#), "{syslog:?}");
}

/// Before: metric label values escaped `\`, `"` and the line feed only: a carriage return,
/// ESC or bidi override went raw into the textfile, and every control character raw into
/// the Pushgateway's grouping labels.
#[test]
fn a_carriage_return_escape_or_bidi_override_in_a_database_name_was_raw_in_the_metric_labels() {
    let (got, _, prom) = one_failed_run("app\r\u{1b}[31m\u{202e}x\ny");
    assert!(prom.contains(r#"pgdrill_run_success{runbook="r",database="app\\r\\x1b[31m\\u{202e}x\\ny"} 0"#), "{prom}");
    assert!(
        !prom.chars().any(|c| c != '\n' && (c.is_control() || pgdrill::testkit::util::is_bidi_control(c))),
        "{prom:?}"
    );
    promtool(&prom, "the textfile");
    let push = got.iter().find(|g| g.path.starts_with("/gw/metrics/")).expect("a push");
    use base64::Engine as _;
    let seg = push.path.split("/database@base64/").nth(1).expect("database label");
    let label = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(seg).expect("base64");
    assert_eq!(String::from_utf8(label).expect("UTF-8"), r"app\r\x1b[31m\u{202e}x\ny");
}
