//! The signed webhook sink (`signed_webhook:` in a notify file or a runbook's `notify:`),
//! added by the sink recipe of ARCHITECTURE.md: a Standard Webhooks message against a real
//! HTTP listener on loopback, its signature checked as a receiver checks it, its secrets
//! (the URL's token, the signing secret) nowhere pgdrill writes or passes on.

use base64::Engine as _;

use crate::common::{http_recorder, written, Run};

/// What the hook's URL carries in its path, as chat and automation hooks do.
const TOKEN: &str = "T0KEN-signed-hook-4b1d9e";
/// A signing secret as the receivers' libraries make one: `whsec_` and base64.
const SECRET: &str = "whsec_qYCf4EI/oZt+uYxO4YVFcwI9hvkXZ86h";

/// A request as the listener kept it: path, headers (names in lower case), body.
type Got = (String, Vec<(String, String)>, Vec<u8>);

fn header<'a>(r: &'a Got, name: &str) -> &'a str {
    r.1.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

/// HMAC-SHA256 as the receiver computes it, through OpenSSL.
fn hmac(key: &[u8], message: &str) -> String {
    let k = openssl::pkey::PKey::hmac(key).expect("key");
    let mut s = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &k).expect("signer");
    s.update(message.as_bytes()).expect("update");
    base64::engine::general_purpose::STANDARD.encode(s.sign_to_vec().expect("sign"))
}

/// A failed run's alert arrives once, as a Standard Webhooks message whose signature a
/// receiver holding the secret accepts (and one without it could not forge: the key is
/// only in pgdrill's environment); the run's facts are its `data`. A step that prints the
/// secret (read from a file, as a careless script would) and looks for its variable finds
/// the variable gone and the printed value masked in the terminal, JUnit and run.json; the
/// token is in none of them either, nor on pgdrill's command line. Without the secret's
/// variable the alert is a warning, not a changed verdict; `doctor --notify` names a secret
/// that does not decode without sending anything; a hook with both `url` and `url_env` is
/// refused at its line.
#[test]
fn a_signed_webhook_carries_the_run_s_facts_signed_and_its_secrets_reach_no_output() {
    let (port, got) =
        http_recorder(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", |r| -> Got {
            (r.path, r.headers, r.body)
        });
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = written(dir.path().join("secret.txt"), SECRET);
    let notify = written(
        dir.path().join("notify.yaml"),
        "notify:\n  - { name: hook, when: failure, signed_webhook: { url_env: HOOK_URL, secret_env: HOOK_SECRET } }\n",
    );
    let runbook = dir.path().join("nightly.yaml");
    std::fs::write(
        &runbook,
        format!(
            "name: nightly
steps:
  - id: careless
    uses: shell.run
    with:
      script: |
        printf 'read=%s\\n' \"$(cat '{}')\"
        printf 'env=%s\\n' \"${{HOOK_SECRET:-unset}}\"
        exit 3
",
            secret_file.display()
        ),
    )
    .expect("runbook");
    let url = format!("http://127.0.0.1:{port}/hooks/{TOKEN}");
    let (junit, report) = (dir.path().join("junit.xml"), dir.path().join("report"));
    let sent = time::OffsetDateTime::now_utc().unix_timestamp();
    let ran = Run::new(&runbook)
        .arg("--notify")
        .arg(&notify)
        .junit(&junit)
        .report(&report)
        .env("HOOK_URL", &url)
        .env("HOOK_SECRET", SECRET)
        .expect(1);

    let requests = std::mem::take(&mut *got.lock().expect("lock"));
    assert_eq!(requests.len(), 1, "{}", ran.all());
    let r = &requests[0];
    assert_eq!(r.0, format!("/hooks/{TOKEN}"));
    assert_eq!(header(r, "content-type"), "application/json");
    let (id, timestamp, signature) =
        (header(r, "webhook-id"), header(r, "webhook-timestamp"), header(r, "webhook-signature"));
    assert!(id.starts_with("msg_") && id.len() > 10, "webhook-id {id}");
    let at: i64 = timestamp.parse().expect("webhook-timestamp is Unix seconds");
    // The receivers' libraries refuse a message more than five minutes off their clock.
    assert!((at - sent).abs() < 300, "webhook-timestamp {at}, sent about {sent}");
    let body = String::from_utf8(r.2.clone()).expect("utf-8 body");
    let key = base64::engine::general_purpose::STANDARD.decode(&SECRET["whsec_".len()..]).expect("base64");
    assert_eq!(signature, format!("v1,{}", hmac(&key, &format!("{id}.{timestamp}.{body}"))), "{body}");
    assert_ne!(signature, format!("v1,{}", hmac(b"another key", &format!("{id}.{timestamp}.{body}"))));
    let v: serde_json::Value = serde_json::from_str(&body).expect("json body");
    assert_eq!(v["type"], "pgdrill.run.failed", "{v}");
    assert!(v["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    let data = &v["data"];
    assert_eq!((data["runbook"].as_str(), data["outcome"].as_str()), (Some("nightly"), Some("failed")), "{v}");
    assert_eq!(data["failed_checks"][0]["step"], "careless", "{v}");
    assert_eq!(data["failed_checks"][0]["kind"], "shell.run", "{v}");

    let junit_text = std::fs::read_to_string(&junit).expect("junit");
    let run_json = std::fs::read_to_string(report.join("run.json")).expect("run.json");
    assert!(ran.all().contains("env=unset"), "the step's child got the secret's variable: {}", ran.all());
    assert!(junit_text.contains("read=********"), "the printed secret is not shown masked: {junit_text}");
    for (what, t) in [
        ("terminal", ran.all()),
        ("JUnit", junit_text),
        ("run.json", run_json),
        ("webhook body", body),
        ("argv", ran.args.clone()),
    ] {
        assert!(!t.contains(TOKEN), "the hook's token is in the {what}: {t}");
        assert!(!t.contains(&SECRET["whsec_".len()..]), "the signing secret is in the {what}: {t}");
    }

    // No secret: a warning naming the variable, the verdict unchanged, nothing sent.
    let ran = Run::new(&runbook).arg("--notify").arg(&notify).env("HOOK_URL", &url).env_remove("HOOK_SECRET").expect(1);
    assert!(
        ran.stderr.contains("warning: hook: HOOK_SECRET is not set; the run's result is unchanged"),
        "{}",
        ran.all()
    );
    assert!(got.lock().expect("lock").is_empty(), "an unsigned alert went out");

    // `doctor --notify` checks the secret decodes and the host answers, sending nothing and
    // showing neither secret: a good one is ok, a secret that is not base64 is named.
    let doctor = |secret: &str| {
        Run::cli(["doctor".as_ref(), "--notify".as_ref(), notify.as_os_str()])
            .env("HOOK_URL", &url)
            .env("HOOK_SECRET", secret)
            .output()
    };
    let good = doctor(SECRET);
    let hook = good.all().lines().find(|l| l.contains("hook (signed webhook)")).unwrap_or_default().to_string();
    assert!(hook.starts_with("ok") && hook.contains("HOOK_SECRET holds a signing secret"), "{}", good.all());
    let wrong = doctor("whsec_not base64!");
    let hook = wrong.all().lines().find(|l| l.contains("hook (signed webhook)")).unwrap_or_default().to_string();
    assert!(
        hook.starts_with("FAIL") && hook.contains("HOOK_SECRET does not hold a Standard Webhooks secret"),
        "{}",
        wrong.all()
    );
    for t in [good.all(), wrong.all()] {
        assert!(!t.contains(TOKEN) && !t.contains(&SECRET["whsec_".len()..]) && !t.contains("not base64!"), "{t}");
    }
    // Doctor connects to see the host answer and sends nothing: the listener saw no request
    // line (a connection without one is kept with an empty path).
    assert!(got.lock().expect("lock").iter().all(|r| r.0.is_empty() && r.2.is_empty()), "doctor sent a message");

    let bad = written(dir.path().join("bad.yaml"), "name: bad\nnotify:\n  - when: always\n    signed_webhook: { url: \"http://127.0.0.1:9/h\", url_env: HOOK_URL, secret_env: HOOK_SECRET }\nsteps:\n  - uses: sleep\n    with: { duration: 1ms }\n");
    let ran = Run::cli(["validate".as_ref(), bad.as_os_str()]).expect(2);
    assert!(
        ran.stderr.contains("bad.yaml:4:") && ran.stderr.contains("signed_webhook takes `url` or `url_env`"),
        "{}",
        ran.all()
    );
}
