//! On-call sinks (issue 42): PagerDuty Events API v2, Opsgenie, Microsoft Teams and syslog
//! (RFC 5424, UDP and TCP), each against a loopback receiver that checks what arrived
//! against the service's documented schema, with secrets masked and names kept as data.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

use crate::common::Run;

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
}

/// An HTTP server that records every request and answers 202, as the services do.
fn http_receiver() -> (u16, Arc<Mutex<Vec<Got>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let mut headers = Vec::new();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    let k = k.trim().to_ascii_lowercase();
                    if k == "content-length" {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k, v.trim().to_string()));
                }
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let path = first.split(' ').nth(1).unwrap_or_default().to_string();
            let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            g.lock().expect("lock").push(Got { path, headers, body });
            let mut c = conn;
            let _ = c.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
        }
    });
    (port, got)
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
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("tcp");
    let t = tempfile::tempdir().expect("tmp");
    let notify = t.path().join("notify.yaml");
    std::fs::write(
        &notify,
        format!(
            "notify:
  - {{ when: always, pagerduty: {{ routing_key_env: PD_KEY, url: \"http://127.0.0.1:{port}/v2/enqueue\", severity: error }} }}
  - {{ when: always, opsgenie: {{ api_key_env: GENIE_KEY, url: \"http://127.0.0.1:{port}/v2/alerts\", priority: P1 }} }}
  - {{ when: always, teams: {{ url_env: TEAMS_URL }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{}\" }} }}
  - {{ when: always, syslog: {{ address: \"127.0.0.1:{}\", transport: tcp, facility: 1 }} }}
",
            udp.local_addr().expect("addr").port(),
            tcp.local_addr().expect("addr").port()
        ),
    )
    .expect("notify");
    let runbook = t.path().join("oncall.yaml");
    let write = |code: i32| {
        std::fs::write(
            &runbook,
            format!("name: oncall\nvars:\n  database: \"\"\nsteps:\n  - id: s\n    uses: shell.run\n    with: {{ script: \"exit {code}\" }}\n"),
        )
        .expect("runbook")
    };
    let tcp_messages = Arc::new(Mutex::new(Vec::<String>::new()));
    let tm = tcp_messages.clone();
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            let mut s = String::new();
            let _ = BufReader::new(conn).read_to_string(&mut s);
            tm.lock().expect("lock").push(s);
        }
    });
    let run = || {
        Run::new(&runbook)
            .var("database", HOSTILE)
            .arg("--notify")
            .arg(&notify)
            .env("PD_KEY", ROUTING_KEY)
            .env("GENIE_KEY", GENIE_KEY)
            .env("TEAMS_URL", format!("http://127.0.0.1:{port}/workflows/teams-hook"))
    };
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
    assert_eq!(og[1].path, format!("/v2/alerts/{}/close?identifierType=alias", pgdrill::util::percent_encode(alias)));

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
        let notify = t.path().join("notify.yaml");
        std::fs::write(&notify, yaml).expect("write");
        let r = Run::new("quickstart").arg("--notify").arg(&notify).expect(2);
        assert!(r.all().contains(at) && r.all().contains(says), "{yaml}\n{}", r.all());
    }
}
