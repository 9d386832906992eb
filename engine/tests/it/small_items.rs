//! The smaller items of issue 40 (item 7), each against the real binary: templates in
//! `assert:` are accepted by `validate` as the README says and judged once rendered;
//! `pgdrill decrypt ... | head` ends quietly.

use std::process::Command;

use crate::common::{self, written, Run};

/// Regression: the README said `assert:` takes templates and `validate` refused them.
#[test]
fn a_templated_assert_passes_validate_and_is_judged_once_rendered() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = written(dir.path().join("assert.yaml"), "name: templated-assert\nvars: { min: 3 }\nsteps:\n  - id: count\n    uses: shell.run\n    with: { script: echo 5 }\n    assert: { stdout: \">= {{ vars.min }}\" }\n");
    Run::cli(["validate"]).arg(&file).expect(0);
    Run::new(&file).expect(0);
    let ran = Run::new(&file).var("min", 9).expect(1);
    assert!(ran.all().contains("assert `stdout` >= 9 failed: the output is `5`"), "{}", ran.all());
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    assert!(readme.contains("`is not null`; templates allowed"), "the README no longer says so");
}

/// Regression: `pgdrill decrypt FILE | head` printed "Broken pipe" and exited 1.
#[test]
fn decrypt_into_a_pipe_closed_early_ends_quietly() {
    if !common::require(common::on_path("bash") && common::on_path("head"), "bash and head") {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let key = "decrypt-pipe test passphrase";
    // Several MiB of plain text, far more than a pipe holds once `head` has gone.
    let plain: Vec<u8> = (0..400_000).flat_map(|i| format!("line {i} of the dump\n").into_bytes()).collect();
    let opts = pgdrill::testkit::archive::WriteOptions {
        codec: pgdrill::testkit::archive::Codec::Gzip,
        level: 1,
        threads: 1,
        key: Some(pgdrill::testkit::archive::KeySource::from_secret(key).derive_new().expect("key")),
    };
    let file = dir.path().join("x.dump.pgdrill");
    let out = std::fs::File::create(&file).expect("create");
    pgdrill::testkit::archive::write(plain.as_slice(), out, &opts).expect("write");
    let err = dir.path().join("stderr");
    let status = Command::new("bash")
        .arg("-c")
        .arg("\"$BIN\" decrypt \"$FILE\" 2>\"$ERR\" | head -c 100 >/dev/null; exit ${PIPESTATUS[0]}")
        .env("BIN", common::bin())
        .env("FILE", &file)
        .env("ERR", &err)
        .env("PGDRILL_BACKUP_KEY", key)
        .status()
        .expect("bash");
    let said = std::fs::read_to_string(&err).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{said}");
    assert_eq!(said, "", "nothing on stderr");
}

/// Regression: `storage.space` had no absolute threshold ("alert below 10 GB").
#[test]
fn storage_space_takes_an_absolute_min_free() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = written(dir.path().join("space.yaml"), "name: space\nvars: { min_free: 1kB }\nsteps:\n  - id: space\n    uses: storage.space\n    with: { storage: \".\", min_free: \"{{ vars.min_free }}\" }\n");
    Run::new(&file).expect(0);
    // More than any disk of this machine has: the step fails, naming what is needed.
    let ran = Run::new(&file).var("min_free", "100000TB").expect(1);
    assert!(ran.all().contains("is needed"), "{}", ran.all());
    let ran = Run::new(&file).var("min_free", "10 furlongs").expect(2);
    assert!(ran.all().contains("unknown unit `furlongs`"), "{}", ran.all());
}

/// What the little HTTP server received: each request's path and body.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>;

/// A little HTTP server that keeps every request's path and body.
fn receiver() -> (u16, Received) {
    common::http_recorder(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok", |r| {
        (r.path, String::from_utf8_lossy(&r.body).into_owned())
    })
}

/// Regression: the success email (and webhooks, Sentry) said "passed in 12.3 s" and nothing
/// of the backup: its size, how long it took, how old it is, the objectives.
#[tokio::test(flavor = "multi_thread")]
async fn success_messages_carry_the_backup_s_size_duration_age_and_the_objectives() {
    if !common::aiosmtpd_ready() {
        return;
    }
    let Some(srv) = common::native_server("app").await else { return };
    common::exec(&srv.url(), "create table t (id int primary key); insert into t select generate_series(1, 500)").await;
    let dir = tempfile::tempdir().expect("tmp");
    let (port, got) = receiver();
    let smtp_port = common::free_port();
    let maildir = dir.path().join("maildir");
    let _smtp = common::Smtp::mailbox(smtp_port, &maildir, &[]);
    let notify = written(
        dir.path().join("notify.yaml"),
        format!(
            "notify:\n  - {{ name: hook, when: success, webhook: {{ url: http://127.0.0.1:{port}/json, format: json }} }}\n  - {{ name: chat, when: success, webhook: {{ url: http://127.0.0.1:{port}/slack, format: slack }} }}\n  - {{ name: sentry, when: success, sentry: {{ dsn: \"http://sentrykey@127.0.0.1:{port}/42\" }} }}\n  - {{ name: mail, when: success, email: {{ smtp: \"127.0.0.1:{smtp_port}\", tls: none, from: pgdrill@example.com, to: [ops@example.com] }} }}\n"
        ),
    );
    let storage = dir.path().join("backups");
    let key = "success-message passphrase";
    Run::new("backup")
        .arg("--notify")
        .arg(&notify)
        .var("database_url", srv.url())
        .var("storage", storage.display())
        .key(key)
        .expect(0);
    let sent = std::mem::take(&mut *got.lock().expect("lock"));
    let body = |path: &str, sent: &[(String, String)]| {
        sent.iter().find(|(p, _)| p.starts_with(path)).map(|(_, b)| b.clone()).unwrap_or_default()
    };
    let json: serde_json::Value = serde_json::from_str(&body("/json", &sent)).expect("json webhook");
    let b = &json["backups"][0];
    assert_eq!(b["role"], "written", "{json}");
    assert!(b["size_bytes"].as_u64().is_some_and(|n| n > 0), "{json}");
    assert!(b["duration_s"].as_f64().is_some(), "{json}");
    assert!(b["path"].as_str().is_some_and(|p| p.ends_with(".dump.pgdrill")), "{json}");
    let slack = body("/slack", &sent);
    assert!(slack.contains("backup written: ") && slack.contains("written in"), "{slack}");
    let sentry = body("/api/42/envelope", &sent);
    assert!(sentry.contains("\"backups\"") && sentry.contains("\"size_bytes\""), "{sentry}");
    let mails: Vec<_> = std::fs::read_dir(maildir.join("new")).expect("maildir").flatten().collect();
    let mail = std::fs::read_to_string(mails[0].path()).expect("mail");
    assert!(mail.contains("backup written: ") && mail.contains("written in"), "{mail}");

    // A verify's messages: the backup it proved, how old it is, and the objectives.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    Run::new("verify")
        .arg("--notify")
        .arg(&notify)
        .var("storage", storage.display())
        .var("database", "app")
        .var("provider", "native")
        .var("rpo", "7d")
        .key(key)
        .expect(0);
    let sent = std::mem::take(&mut *got.lock().expect("lock"));
    let json: serde_json::Value = serde_json::from_str(&body("/json", &sent)).expect("json webhook");
    let b = &json["backups"][0];
    assert_eq!(b["role"], "picked", "{json}");
    assert!(b["age_s"].as_f64().is_some_and(|a| a > 0.0), "{json}");
    assert!(b["size_bytes"].as_u64().is_some_and(|n| n > 0), "{json}");
    let objectives = json["objectives"].as_array().cloned().unwrap_or_default();
    assert!(objectives.iter().any(|o| o["name"] == "RPO (backup age)" && o["target_s"].is_number()), "{json}");
    let slack = body("/slack", &sent);
    assert!(
        slack.contains("backup picked: ") && slack.contains(" old") && slack.contains("RPO (backup age)"),
        "{slack}"
    );
    let mails = std::fs::read_dir(maildir.join("new")).expect("maildir").count();
    assert_eq!(mails, 2, "one mail per run");
}

/// Regression: GFS ignored `_daily/_weekly/_monthly` in names. A team's folder, its files
/// made by its own command (`pg_dump | gzip`, named by tier), pruned with 3 daily, 2 weekly
/// and 1 monthly: each tier keeps its own newest files, a weekly never counts as a day.
#[tokio::test(flavor = "multi_thread")]
async fn prune_keeps_each_labelled_tier_on_its_own_terms() {
    let Some(s) = common::native_server("erp").await else { return };
    common::exec(&s.url(), "create table ledger (id int primary key); insert into ledger values (1)").await;
    let dump = Command::new("sh")
        .arg("-c")
        .arg("pg_dump -d \"$U\" | gzip")
        .env("U", s.url())
        .env("PATH", format!("/usr/lib/postgresql/15/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("pg_dump");
    assert!(dump.status.success() && dump.stdout.len() > 100, "{}", common::text(&dump.stderr));
    let dir = tempfile::tempdir().expect("tmp");
    let mut names = Vec::new();
    // Dailies on 1-10 January, weeklies on the Sundays (4 and 11), a monthly on the 1st.
    for d in 1..=10 {
        names.push(format!("erp_202601{d:02}_020000_daily.sql.gz"));
    }
    names.extend(["erp_20260104_030000_weekly.sql.gz".into(), "erp_20260111_030000_weekly.sql.gz".into()]);
    names.extend(["erp_20251201_040000_monthly.sql.gz".into(), "erp_20260101_040000_monthly.sql.gz".into()]);
    for n in &names {
        std::fs::write(dir.path().join(n), &dump.stdout).expect("write");
    }
    let ran = Run::new("prune")
        .var("storage", dir.path().display())
        .var("database", "erp")
        .var("keep_daily", 3)
        .var("keep_weekly", 2)
        .var("keep_monthly", 1)
        .expect(0);
    let out = ran.all();
    let kept = |n: &str| out.lines().any(|l| l.contains(&format!("keep   {n} (")));
    for n in
        ["erp_20260110_020000_daily.sql.gz", "erp_20260109_020000_daily.sql.gz", "erp_20260108_020000_daily.sql.gz"]
    {
        assert!(kept(n), "{n}: {out}");
    }
    assert!(!kept("erp_20260107_020000_daily.sql.gz"), "only three days: {out}");
    for n in ["erp_20260111_030000_weekly.sql.gz", "erp_20260104_030000_weekly.sql.gz"] {
        assert!(kept(n), "{n}: {out}");
    }
    assert!(out.contains("erp_20260111_030000_weekly.sql.gz (kept: weekly 1/2 (labelled in its name)"), "{out}");
    assert!(kept("erp_20260101_040000_monthly.sql.gz") && !kept("erp_20251201_040000_monthly.sql.gz"), "{out}");
    assert!(out.contains("would delete erp_20251201_040000_monthly.sql.gz"), "{out}");
}
