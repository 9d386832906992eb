//! Alerts and metrics for every run, from an operator file (`--notify FILE`, env
//! `PGDRILL_NOTIFY`): Prometheus metrics as a node_exporter textfile and/or a Pushgateway
//! push, and webhooks (Slack-compatible or a generic JSON body) sent on failure, success,
//! always, or when a run passes after a failure.
//!
//! This is a reporter like JUnit and run.json: it reads the run's (already redacted) summary
//! and acts once at the end. What it may send is configured in the runbook model
//! (`runbook::notify`). A sink that fails is a warning on stderr; it never changes the
//! run's exit code and never keeps another sink from being tried.

pub(super) mod signed_webhook;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use super::summary::Measure;
use super::{write_atomic, ReportSink, RunSummary};
use crate::exec::{BackupRole, Objective, Outcome, SuiteOutcome};
use crate::runbook::notify::{sentry_target, Email, Format, NotifyFile, Sentry, Webhook, When};

/// One HTTP POST of a sink: what it is (for warnings), URL, content type, body, headers.
type Post = (String, String, Option<&'static str>, String, Vec<(String, String)>);

/// The services' default endpoints, where an alert goes and `doctor` looks.
pub(super) const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";
pub(super) const OPSGENIE_ALERTS: &str = "https://api.opsgenie.com/v2/alerts";

pub(super) fn sentry_dsn(s: &Sentry) -> Option<String> {
    s.dsn.clone().or_else(|| s.dsn_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|d| !d.is_empty()))
}

/// The reporter. The database that labels the run's metrics and alerts is the summary's
/// (`RunSummary::database`).
pub struct Notifier {
    cfg: NotifyFile,
    redactor: crate::redact::Redactor,
}

impl Notifier {
    pub fn new(cfg: NotifyFile, redactor: crate::redact::Redactor) -> Self {
        // Registered before the first step, not when the alert goes out: a step that prints
        // one must find it masked, and `shell.run` children must not inherit its variable.
        for s in secret_values(&cfg) {
            redactor.add(&s);
        }
        if let Some(p) = cfg.metrics.as_ref().and_then(|m| m.pushgateway.as_ref()) {
            redactor.add_credentials_in(&p.url);
        }
        Notifier { cfg, redactor }
    }
}

/// Every secret a notify file names: webhook URLs (they carry tokens), Sentry DSNs and the
/// SMTP passwords of its `password_env` variables.
pub fn secret_values(cfg: &NotifyFile) -> Vec<String> {
    let mut out = Vec::new();
    for n in &cfg.notify {
        out.extend(n.webhook.as_ref().and_then(webhook_url));
        out.extend(n.sentry.as_ref().and_then(sentry_dsn));
        let pw = n.email.as_ref().and_then(|e| e.password_env.as_ref()).and_then(|v| std::env::var(v).ok());
        out.extend(pw.filter(|p| !p.is_empty()));
        let var = |v: &String| std::env::var(v).ok().filter(|s| !s.is_empty());
        out.extend(n.pagerduty.as_ref().and_then(|p| var(&p.routing_key_env)));
        out.extend(n.opsgenie.as_ref().and_then(|o| var(&o.api_key_env)));
        out.extend(n.teams.as_ref().and_then(|t| t.url.clone().or_else(|| t.url_env.as_ref().and_then(var))));
        if let Some(h) = &n.signed_webhook {
            out.extend(h.url.clone().or_else(|| h.url_env.as_ref().and_then(var)));
            out.extend(var(&h.secret_env));
        }
    }
    out
}

pub(super) fn webhook_url(w: &Webhook) -> Option<String> {
    w.url.clone().or_else(|| w.url_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|s| !s.is_empty()))
}

/// A JSON body POSTed to `url` with `headers`, shown in the log as `what`.
fn json_post(what: String, url: String, body: &serde_json::Value, headers: Vec<(String, String)>) -> Post {
    (what, url, Some("application/json"), body.to_string(), headers)
}

/// Where a URL points, without what identifies the caller (path, query, credentials).
fn shown(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| format!("{}://{}", u.scheme(), u.host_str().unwrap_or("?")))
        .unwrap_or_else(|_| "an invalid URL".into())
}

/// The facts of one finished run.
#[derive(Debug, Clone, Default)]
struct Facts {
    runbook: String,
    database: String,
    passed: bool,
    outcome: String,
    duration_s: f64,
    message: Option<String>,
    finished_epoch: f64,
    backup: Option<(f64, u64, String)>,
    verified: bool,
    /// A content check ran with no ground truth ("restorable, content unproven"): never
    /// a verified success, even when the run accepted it.
    unproven: Option<bool>,
    rto_s: Option<f64>,
    rpo_s: Option<f64>,
    /// The run proved a point-in-time recovery: its RTO and RPO are a PITR's too.
    pitr: bool,
    objectives: Vec<serde_json::Value>,
    failed: Vec<serde_json::Value>,
    /// The backups the run wrote or picked (a verify's), as a success message promises them:
    /// where, how big, how long the writing took, how old.
    backups: Vec<serde_json::Value>,
}

/// What the alerts and metrics say of a run: a view of its summary in their words.
fn facts(s: &RunSummary) -> Option<Facts> {
    let top = s.top()?;
    let mut f = Facts {
        runbook: top.name.clone(),
        database: s.database.clone(),
        passed: s.passed(),
        outcome: match top.outcome {
            Some(SuiteOutcome::Passed) => "passed",
            Some(SuiteOutcome::Interrupted) => "interrupted",
            _ => "failed",
        }
        .into(),
        duration_s: top.duration.as_secs_f64(),
        message: top.message.clone(),
        finished_epoch: s.finished.unix_timestamp_nanos() as f64 / 1e9,
        ..Default::default()
    };
    // The last backup a passed step wrote.
    if let Some(b) = s.backups.iter().rev().find(|b| b.role == BackupRole::Written && b.outcome == Outcome::Passed) {
        let location = b
            .path
            .as_str()
            .and_then(|p| Path::new(p).parent().and_then(Path::parent))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        f.backup = Some((b.duration.as_secs_f64(), b.size.as_u64().unwrap_or(0), location));
    }
    for b in s.backups.iter().filter(|b| b.outcome == Outcome::Passed && b.role != BackupRole::Snapshot) {
        let role = match b.role {
            BackupRole::Written => "written",
            _ => "picked",
        };
        let mut v = json!({ "role": role, "path": b.path, "size_bytes": b.size, "created": b.created });
        if b.role == BackupRole::Written {
            v["duration_s"] = json!((b.duration.as_secs_f64() * 1000.0).round() / 1000.0);
        }
        if b.age_s.as_f64().is_some_and(|a| a > 0.0) {
            v["age_s"] = b.age_s.clone();
        }
        f.backups.push(v);
    }
    f.pitr = s.point_in_time.iter().any(|(_, o)| *o == Outcome::Passed);
    for o in &s.objectives {
        let Measure::Objective(objective) = o.what else { continue };
        let Some(m) = o.measured_s.as_f64() else { continue };
        let name = match objective {
            Objective::Rto => {
                f.rto_s = Some(m);
                "RTO"
            }
            Objective::Rpo => {
                f.rpo_s = Some(m);
                "RPO"
            }
            Objective::BackupAge => "RPO (backup age)",
        };
        let passed = o.outcome == Outcome::Passed;
        f.objectives.push(json!({ "name": name, "measured_s": m, "target_s": o.target_s, "passed": passed }));
    }
    for c in &s.failed {
        f.failed.push(json!({ "step": c.step.label, "kind": c.uses, "message": c.message }));
    }
    let verify_steps = s.verified.iter().filter(|(_, o)| *o == Outcome::Passed).count();
    // Whether the content was proven, for runs that judged it against a ground truth.
    f.unproven = (!s.ground_truths.is_empty()).then(|| s.ground_truths.iter().any(|(_, b)| b == "none"));
    f.verified = f.passed && verify_steps > 0 && f.backup.is_none() && f.unproven != Some(true);
    Some(f)
}

/// A label's value as Prometheus shows it: a name from data on one line (`util::one_line`:
/// line breaks, control characters and bidi overrides shown escaped), so no series carries a
/// raw one into a graph's legend or an alert's text.
fn label_text(s: &str) -> String {
    crate::util::one_line(s).into_owned()
}

/// `label_text` escaped for the text format: `\\` and `\"` (`\n` is never needed).
fn label_value(s: &str) -> String {
    label_text(s).replace('\\', "\\\\").replace('"', "\\\"")
}

/// `(name, help, value, only when the run passed)` for this run.
fn samples(f: &Facts) -> Vec<(&'static str, &'static str, f64, Option<String>)> {
    let mut v: Vec<(&'static str, &'static str, f64, Option<String>)> = vec![
        ("pgdrill_run_success", "Whether the last run passed (1) or not (0).", if f.passed { 1.0 } else { 0.0 }, None),
        ("pgdrill_run_duration_seconds", "How long the last run took.", f.duration_s, None),
    ];
    if f.passed {
        v.push((
            "pgdrill_run_last_success_timestamp_seconds",
            "When a run last passed (Unix time).",
            f.finished_epoch,
            None,
        ));
    }
    if let Some((secs, size, location)) = &f.backup {
        let loc = Some(location.clone());
        v.push((
            "pgdrill_backup_last_success_timestamp_seconds",
            "When a backup last succeeded (Unix time).",
            f.finished_epoch,
            loc.clone(),
        ));
        v.push(("pgdrill_backup_duration_seconds", "How long the last successful backup took.", *secs, loc.clone()));
        v.push(("pgdrill_backup_size_bytes", "Stored size of the last successful backup.", *size as f64, loc));
    }
    if f.verified {
        v.push((
            "pgdrill_verify_last_success_timestamp_seconds",
            "When a verification by restore last passed (Unix time).",
            f.finished_epoch,
            None,
        ));
    }
    if let Some(u) = f.unproven {
        v.push((
            "pgdrill_verify_content_unproven",
            "Whether the last verification's content check had no ground truth (1: restorable, content unproven).",
            if u { 1.0 } else { 0.0 },
            None,
        ));
    }
    if let Some(r) = f.rto_s {
        v.push(("pgdrill_drill_rto_seconds", "Recovery time measured by the last drill.", r, None));
    }
    if let Some(r) = f.rpo_s {
        v.push(("pgdrill_drill_rpo_seconds", "Recovery point measured by the last drill.", r, None));
    }
    // A PITR drill's own names, so its alerts do not fire on a logical restore's figures.
    if f.pitr {
        if let Some(r) = f.rto_s {
            v.push(("pgdrill_pitr_rto_seconds", "Recovery time of the last point-in-time recovery drill.", r, None));
        }
        if let Some(r) = f.rpo_s {
            v.push(("pgdrill_pitr_rpo_seconds", "Data loss of the last point-in-time recovery drill.", r, None));
        }
    }
    v
}

fn labels(f: &Facts, location: &Option<String>) -> String {
    let mut l = format!("runbook=\"{}\",database=\"{}\"", label_value(&f.runbook), label_value(&f.database));
    if let Some(loc) = location {
        l.push_str(&format!(",location=\"{}\"", label_value(loc)));
    }
    l
}

/// Merge this run's samples into the textfile: other runbooks' and databases' samples stay,
/// and so does this one's last-success time when it failed.
fn write_textfile(path: &Path, f: &Facts) -> Result<(), String> {
    let lock_path = path.with_extension("prom.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // Runs of a fleet finish together: one at a time reads, merges and replaces the file.
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", lock_path.display()))?;
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let mut series: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut help: BTreeMap<String, String> = BTreeMap::new();
    for line in old.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if let Some((n, h)) = rest.split_once(' ') {
                help.insert(n.into(), h.into());
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let (key, value) = match line.rfind(' ') {
                Some(i) => (&line[..i], &line[i + 1..]),
                None => continue,
            };
            let name = key.split('{').next().unwrap_or(key).to_string();
            series.entry(name).or_default().insert(key.to_string(), value.to_string());
        }
    }
    let own = format!("runbook=\"{}\",database=\"{}\"", label_value(&f.runbook), label_value(&f.database));
    // This run's series are replaced; a failed run's last-success samples stay as they were.
    for (name, s) in series.iter_mut() {
        if name.ends_with("_last_success_timestamp_seconds") {
            continue;
        }
        s.retain(|k, _| !k.contains(&format!("{{{own}")));
    }
    for (name, h, value, loc) in samples(f) {
        help.insert(name.into(), h.into());
        let key = format!("{name}{{{}}}", labels(f, &loc));
        let s = series.entry(name.into()).or_default();
        if loc.is_some() {
            s.retain(|k, _| !k.starts_with(&format!("{name}{{{own},location=")));
        }
        s.insert(key, format!("{value}"));
    }
    let mut out = String::from("# Written by pgdrill after every run (--notify); do not edit.\n");
    for (name, s) in &series {
        if s.is_empty() {
            continue;
        }
        if let Some(h) = help.get(name) {
            out.push_str(&format!("# HELP {name} {h}\n"));
        }
        out.push_str(&format!("# TYPE {name} gauge\n"));
        for (k, v) in s {
            out.push_str(&format!("{k} {v}\n"));
        }
    }
    write_atomic(path, |w| w.write_all(out.as_bytes())).map_err(|e| e.to_string())
}

fn b64(s: &str) -> String {
    use base64::Engine;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s.as_bytes());
    if e.is_empty() {
        "=".into()
    } else {
        e
    }
}

fn push_body(f: &Facts) -> String {
    let mut out = String::new();
    for (name, h, value, loc) in samples(f) {
        out.push_str(&format!("# HELP {name} {h}\n# TYPE {name} gauge\n"));
        let l = loc.map(|l| format!("{{location=\"{}\"}}", label_value(&l))).unwrap_or_default();
        out.push_str(&format!("{name}{l} {value}\n"));
    }
    out
}

fn text_of(f: &Facts) -> String {
    text_with(f, &one_line)
}

/// A value from data (a name, a message) inside a text message whose lines are pgdrill's:
/// a line break in it would forge a line of its own (a "passed" line in an alert email), so
/// it is shown as the terminal shows it (`util::one_line`).
fn one_line(s: &str) -> String {
    crate::util::one_line(s).into_owned()
}

/// Slack's mrkdwn reads `<...>` as a link or a mention (`<!channel>`, `<https://x|text>`) and
/// `&` as the start of an entity: names and messages come from data, so those three are
/// escaped as Slack asks (after `one_line`).
fn slack_escape(s: &str) -> String {
    one_line(s).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn text_with(f: &Facts, esc: &dyn Fn(&str) -> String) -> String {
    let db = if f.database.is_empty() { String::new() } else { format!(" ({})", esc(&f.database)) };
    let mut t = format!("pgdrill: runbook {}{db} {} in {:.1} s", esc(&f.runbook), f.outcome, f.duration_s);
    if let Some(m) = f.message.as_deref().filter(|_| !f.passed) {
        t.push_str(&format!("\n{}", esc(m)));
    }
    for b in &f.backups {
        let mut line = format!(
            "\nbackup {}: {}, {}",
            b["role"].as_str().unwrap_or(""),
            esc(b["path"].as_str().unwrap_or("")),
            crate::util::human_bytes(b["size_bytes"].as_u64().unwrap_or(0))
        );
        if let Some(d) = b["duration_s"].as_f64() {
            line.push_str(&format!(", written in {d:.1} s"));
        }
        if let Some(a) = b["age_s"].as_f64() {
            let age = humantime::format_duration(Duration::from_secs(a.round() as u64));
            line.push_str(&format!(", {age} old"));
        }
        t.push_str(&line);
    }
    for o in &f.objectives {
        t.push_str(&format!(
            "\n{}: {} s (target {})",
            esc(o["name"].as_str().unwrap_or("")),
            o["measured_s"],
            o["target_s"]
        ));
    }
    t
}

impl Notifier {
    /// An on-call sink's request (PagerDuty, Opsgenie, Teams), or a syslog message sent
    /// here; problems go to `warnings` like every sink's.
    fn oncall(&self, n: &crate::runbook::notify::Notification, f: &Facts, warnings: &mut Vec<String>) -> Option<Post> {
        use super::oncall;
        // Names and messages from data go into single-line fields (a dedup key, an alias, a
        // component, structured data): every string is shown on one line (`util::one_line`).
        let (runbook, database) = (crate::util::one_line(&f.runbook), crate::util::one_line(&f.database));
        let alert = oncall::Alert {
            runbook: &runbook,
            database: &database,
            passed: f.passed,
            outcome: &f.outcome,
            summary: text_of(f).lines().next().unwrap_or_default().to_string(),
            text: text_of(f),
            details: oncall::one_line_strings(json!({
                "runbook": f.runbook,
                "database": f.database,
                "outcome": f.outcome,
                "duration_s": (f.duration_s * 1000.0).round() / 1000.0,
                "message": f.message,
                "objectives": f.objectives,
                "failed_checks": f.failed,
                "pgdrill_version": env!("CARGO_PKG_VERSION"),
            })),
        };
        let secret = |var: &str, what: &str, warnings: &mut Vec<String>| match std::env::var(var) {
            Ok(v) if !v.is_empty() => {
                self.redactor.add(&v);
                Some(v)
            }
            _ => {
                warnings.push(format!("{what}: {var} is not set"));
                None
            }
        };
        if let Some(p) = &n.pagerduty {
            let what = n.name.clone().unwrap_or_else(|| "pagerduty".into());
            let key = secret(&p.routing_key_env, &what, warnings)?;
            let url = p.url.clone().unwrap_or_else(|| PAGERDUTY_EVENTS.into());
            let body = oncall::pagerduty(&alert, &key, p.severity.as_deref().unwrap_or("critical"));
            return Some(json_post(format!("{what} to {}", shown(&url)), url, &body, vec![]));
        }
        if let Some(o) = &n.opsgenie {
            let what = n.name.clone().unwrap_or_else(|| "opsgenie".into());
            let key = secret(&o.api_key_env, &what, warnings)?;
            let base = o.url.clone().unwrap_or_else(|| OPSGENIE_ALERTS.into());
            let (path, body) = oncall::opsgenie(&alert, o.priority.as_deref().unwrap_or("P2"));
            let url = format!("{}{path}", base.trim_end_matches('/'));
            let auth = vec![("Authorization".into(), format!("GenieKey {key}"))];
            return Some(json_post(format!("{what} to {}", shown(&base)), url, &body, auth));
        }
        if let Some(t) = &n.teams {
            let what = n.name.clone().unwrap_or_else(|| "teams".into());
            let Some(url) = t
                .url
                .clone()
                .or_else(|| t.url_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|s| !s.is_empty()))
            else {
                warnings.push(format!("{what}: {} is not set", t.url_env.as_deref().unwrap_or("its URL")));
                return None;
            };
            let body = oncall::teams(&alert);
            return Some(json_post(format!("{what} to {}", shown(&url)), url, &body, vec![]));
        }
        if let Some(l) = &n.syslog {
            let what = n.name.clone().unwrap_or_else(|| "syslog".into());
            let message = oncall::syslog_message(&alert, l.facility.unwrap_or(16), time::OffsetDateTime::now_utc());
            let tcp = l.transport == crate::runbook::notify::SyslogTransport::Tcp;
            if let Err(e) = oncall::send_syslog(&l.address, tcp, &self.redactor.redact(&message)) {
                warnings.push(format!("{what} to {}: {e}", super::visible(&l.address)));
            }
        }
        None
    }
}

impl ReportSink for Notifier {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        let Some(f) = facts(summary) else { return Ok(()) };
        let mut warnings = Vec::new();
        if let Some(p) = self.cfg.metrics.as_ref().and_then(|m| m.textfile.as_ref()) {
            if let Err(e) = write_textfile(p, &f) {
                warnings.push(format!("metrics textfile {}: {e}", p.display()));
            }
        }
        let wants_state = self.cfg.notify.iter().any(|n| n.when == When::Recovered);
        let previous = if wants_state { remember(self.cfg.state.clone(), &f) } else { None };
        let recovered = f.passed && previous.as_deref().is_some_and(|p| p != "passed");
        let mut posts: Vec<Post> = Vec::new();
        let mut mails: Vec<(String, Email, Option<String>)> = Vec::new();
        if let Some(p) = self.cfg.metrics.as_ref().and_then(|m| m.pushgateway.as_ref()) {
            let url = format!(
                "{}/metrics/job@base64/{}/runbook@base64/{}/database@base64/{}",
                p.url.trim_end_matches('/'),
                b64(&p.job),
                b64(&label_text(&f.runbook)),
                b64(&label_text(&f.database))
            );
            posts.push((
                format!("Pushgateway {}", shown(&p.url)),
                url,
                Some("text/plain; version=0.0.4"),
                push_body(&f),
                vec![],
            ));
        }
        for n in &self.cfg.notify {
            let send = match n.when {
                When::Always => true,
                When::Failure => !f.passed,
                When::Success => f.passed,
                When::Recovered => recovered,
            };
            if !send {
                continue;
            }
            if let Some(post) = self.oncall(n, &f, &mut warnings) {
                posts.push(post);
                continue;
            }
            if n.syslog.is_some() {
                continue;
            }
            if let Some(h) = &n.signed_webhook {
                let what = n.name.clone().unwrap_or_else(|| "signed webhook".into());
                let now = time::OffsetDateTime::now_utc();
                let signed = signed_webhook::target(h).and_then(|(url, key)| {
                    Ok((url, signed_webhook::message(json_body(&f, recovered), &f.outcome, &key, now)?))
                });
                match signed {
                    Ok((url, m)) => posts.push((format!("{what} to {}", shown(&url)), url, None, m.body, m.headers)),
                    Err(e) => warnings.push(format!("{what}: {e}")),
                }
                continue;
            }
            if let Some(e) = &n.email {
                let what = n.name.clone().unwrap_or_else(|| "email".into());
                let password = e.password_env.as_ref().and_then(|v| std::env::var(v).ok());
                if let Some(p) = &password {
                    self.redactor.add(p);
                }
                mails.push((format!("{what} via {}", e.smtp), e.clone(), password));
                continue;
            }
            if let Some(sentry) = &n.sentry {
                let what = n.name.clone().unwrap_or_else(|| "sentry".into());
                let Some(dsn) = sentry_dsn(sentry) else {
                    warnings.push(format!("{what}: {} is not set", sentry.dsn_env.as_deref().unwrap_or("its DSN")));
                    continue;
                };
                match sentry_target(&dsn) {
                    Ok((url, auth)) => posts.push((
                        format!("{what} to {}", shown(&url)),
                        url,
                        Some("application/x-sentry-envelope"),
                        sentry_envelope(&f, sentry.environment.as_deref()),
                        vec![("X-Sentry-Auth".into(), auth)],
                    )),
                    Err(e) => warnings.push(format!("{what}: {e}")),
                }
                continue;
            }
            let Some(webhook) = &n.webhook else { continue };
            let what = n.name.clone().unwrap_or_else(|| "webhook".into());
            let Some(url) = webhook_url(webhook) else {
                warnings.push(format!("{what}: {} is not set", webhook.url_env.as_deref().unwrap_or("its URL")));
                continue;
            };
            let body = match webhook.format {
                Format::Slack => json!({ "text": text_with(&f, &slack_escape) }),
                Format::Json => json_body(&f, recovered),
            };
            posts.push((format!("{what} to {}", shown(&url)), url, None, body.to_string(), vec![]));
        }
        if !mails.is_empty() {
            let message = mail_text(&f);
            let sent = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let mut out = Vec::new();
                    for (_, e, pw) in &mails {
                        let m = format!("From: {}\nTo: {}\n{message}", e.from, e.to.join(", "));
                        out.push(super::smtp::send(e, pw.as_deref(), &m).await.err());
                    }
                    out
                })
            });
            for ((what, ..), err) in mails.iter().zip(sent) {
                if let Some(e) = err {
                    warnings.push(format!("{what}: {e}"));
                }
            }
        }
        if !posts.is_empty() {
            let sent = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    let client = reqwest::Client::builder().timeout(Duration::from_secs(15)).build();
                    let Ok(client) = client else { return vec![Some("cannot build an HTTP client".to_string())] };
                    let mut out = Vec::new();
                    // One after another: each sink has its own timeout, none hides another.
                    for (_, url, ctype, body, headers) in &posts {
                        let mut req = client.post(url.as_str()).body(body.clone());
                        req = req.header(reqwest::header::CONTENT_TYPE, ctype.unwrap_or("application/json"));
                        for (k, v) in headers {
                            req = req.header(k.as_str(), v.as_str());
                        }
                        out.push(match req.send().await {
                            Ok(r) if r.status().is_success() => None,
                            Ok(r) => Some(format!("answered HTTP {}", r.status().as_u16())),
                            Err(e) => {
                                Some(if e.is_timeout() { "timed out".into() } else { "could not be reached".into() })
                            }
                        });
                    }
                    out
                })
            });
            for ((what, ..), err) in posts.iter().zip(sent) {
                if let Some(e) = err {
                    warnings.push(format!("{what}: {e}"));
                }
            }
        }
        for w in warnings {
            let w = self.redactor.redact(&w);
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("warning: {}; the run's result is unchanged\n", super::visible(&w)).as_bytes(),
            );
        }
        Ok(())
    }
}

/// The run's facts as the JSON webhook sends them (and the signed one, as its `data`).
fn json_body(f: &Facts, recovered: bool) -> serde_json::Value {
    json!({
        "runbook": f.runbook,
        "database": f.database,
        "outcome": f.outcome,
        "recovered": recovered,
        "duration_s": (f.duration_s * 1000.0).round() / 1000.0,
        "message": f.message,
        "objectives": f.objectives,
        "backups": f.backups,
        "failed_checks": f.failed,
        "host": crate::util::hostname(),
        "pgdrill_version": env!("CARGO_PKG_VERSION"),
    })
}

/// A header's value from text that holds data (the subject): one line (`one_line`), as
/// RFC 2047 encoded words when it is not plain ASCII, each at most 75 characters and on a
/// folded line of its own, so no byte of a name can end the header or start another.
fn header_value(s: &str) -> String {
    use base64::Engine;
    let line = one_line(s).replace('\t', " ");
    if line.is_ascii() && line.len() <= 900 {
        return line;
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in line.chars() {
        // 45 bytes of UTF-8 are 60 of base64: with `=?UTF-8?B?` and `?=`, 72 per word.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    words.push(chunk);
    words
        .iter()
        .map(|w| format!("=?UTF-8?B?{}?=", base64::engine::general_purpose::STANDARD.encode(w.as_bytes())))
        .collect::<Vec<_>>()
        .join("\n ")
}

/// Subject, headers and a readable body with the run's facts.
fn mail_text(f: &Facts) -> String {
    let db = if f.database.is_empty() { String::new() } else { format!(" ({})", f.database) };
    let date =
        time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc2822).unwrap_or_default();
    let mut body = text_of(f);
    if !f.failed.is_empty() {
        body.push_str("\n\nFailed checks:");
        for c in &f.failed {
            // Names and messages are data: each stays on its check's line.
            body.push_str(&format!(
                "\n- {} [{}]: {}",
                one_line(c["step"].as_str().unwrap_or("")),
                one_line(c["kind"].as_str().unwrap_or("")),
                one_line(c["message"].as_str().unwrap_or(""))
            ));
        }
    }
    let host = crate::util::hostname().unwrap_or_default();
    body.push_str(&format!("\n\nhost {host}, pgdrill {}", env!("CARGO_PKG_VERSION")));
    let subject = header_value(&format!("pgdrill: {}{db} {}", f.runbook, f.outcome));
    format!("Subject: {subject}\nDate: {date}\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n{}\n", crate::report::visible(&body))
}

/// A Sentry envelope with one event: the run's outcome as its message, tagged runbook,
/// database and the first failed step.
fn sentry_envelope(f: &Facts, environment: Option<&str>) -> String {
    use sha2::Digest;
    let now = time::OffsetDateTime::now_utc();
    let seed = format!("{}{}{}", now.unix_timestamp_nanos(), std::process::id(), f.runbook);
    let id: String = sha2::Sha256::digest(seed.as_bytes()).iter().take(16).map(|b| format!("{b:02x}")).collect();
    let ts = crate::util::rfc3339(now);
    let step = f.failed.first().and_then(|s| s["step"].as_str()).unwrap_or("");
    // Sentry keeps a tag only when its value is one line of at most 200 characters; names
    // are data, so each is shown escaped and cut to fit.
    let tag = |v: &str| -> String {
        let v = one_line(v).replace('\t', " ");
        if v.chars().count() <= 200 {
            return v;
        }
        let mut cut: String = v.chars().take(199).collect();
        cut.push('…');
        cut
    };
    let event = json!({
        "event_id": id,
        "timestamp": ts,
        "platform": "other",
        "logger": "pgdrill",
        "level": if f.passed { "info" } else { "error" },
        "environment": environment,
        "message": { "formatted": text_of(f) },
        "tags": { "runbook": tag(&f.runbook), "database": tag(&f.database), "step": tag(step), "outcome": f.outcome },
        "extra": { "duration_s": f.duration_s, "objectives": f.objectives, "backups": f.backups, "failed_checks": f.failed },
        "release": format!("pgdrill@{}", env!("CARGO_PKG_VERSION")),
    });
    format!("{}\n{}\n{}\n", json!({ "event_id": id, "sent_at": ts }), json!({ "type": "event" }), event)
}

/// Record this run's outcome; returns the previous one of the same runbook and database.
fn remember(state: Option<PathBuf>, f: &Facts) -> Option<String> {
    let path = state
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/pgdrill/outcomes.json")))?;
    let key = format!("{}\u{1f}{}", f.runbook, f.database);
    let mut all: BTreeMap<String, String> =
        std::fs::read_to_string(&path).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default();
    let previous = all.insert(key, f.outcome.clone());
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let body = serde_json::to_string(&all).unwrap_or_default();
    let _ = write_atomic(&path, |w| w.write_all(body.as_bytes()));
    previous
}
