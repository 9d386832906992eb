//! Alerts and metrics as configured: the operator's `--notify FILE` (env `PGDRILL_NOTIFY`) and a
//! runbook's `notify:` section, typed and checked. The model only: sending is
//! `report::notify`'s job, which reads these types.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::spans::SpanIndex;
use super::Diagnostic;

/// The operator file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    #[serde(default)]
    pub metrics: Option<Metrics>,
    #[serde(default)]
    pub notify: Vec<Notification>,
    /// Where the last outcome of each runbook and database is kept (for `when: recovered`);
    /// default `$HOME/.local/state/pgdrill/outcomes.json`.
    #[serde(default)]
    pub state: Option<PathBuf>,
    /// An RFC 3161 time-stamping authority's URL: a run that signs its evidence has each
    /// record timestamped there (as `--tsa` does; the flag wins).
    #[serde(default)]
    pub tsa: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metrics {
    /// A `.prom` file in node_exporter's textfile directory; written atomically, shared by
    /// every runbook and database (each run replaces only its own samples).
    pub textfile: Option<PathBuf>,
    pub pushgateway: Option<Pushgateway>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pushgateway {
    pub url: String,
    #[serde(default = "default_job")]
    pub job: String,
}

fn default_job() -> String {
    "pgdrill".into()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Failure,
    Success,
    Always,
    /// A pass right after a failure of the same runbook and database.
    Recovered,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    #[serde(default)]
    pub name: Option<String>,
    pub when: When,
    #[serde(default)]
    pub webhook: Option<Webhook>,
    #[serde(default)]
    pub sentry: Option<Sentry>,
    #[serde(default)]
    pub email: Option<Email>,
    #[serde(default)]
    pub pagerduty: Option<PagerDuty>,
    #[serde(default)]
    pub opsgenie: Option<Opsgenie>,
    #[serde(default)]
    pub teams: Option<Teams>,
    #[serde(default)]
    pub syslog: Option<Syslog>,
    #[serde(default)]
    pub signed_webhook: Option<SignedWebhook>,
}

/// A JSON webhook signed as Standard Webhooks specify (www.standardwebhooks.com): headers
/// `webhook-id`, `webhook-timestamp` and `webhook-signature` (`v1,` and the base64 of an
/// HMAC-SHA256 of `ID.TIMESTAMP.BODY` under the shared secret), so the receiver can tell
/// pgdrill's alert from a request by anyone who learned the URL, and refuse a replay.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedWebhook {
    /// The URL (a secret: it may carry a token).
    pub url: Option<String>,
    /// Or the environment variable holding it.
    pub url_env: Option<String>,
    /// The variable holding the signing secret as the receiver's library makes it: `whsec_`
    /// and base64 (a secret).
    pub secret_env: String,
}

/// PagerDuty Events API v2: a failed run triggers an incident, a passed one resolves it
/// (one incident per runbook and database: the dedup key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDuty {
    /// The variable holding the integration's routing key (a secret).
    pub routing_key_env: String,
    /// The events endpoint (default https://events.pagerduty.com/v2/enqueue; EU:
    /// https://events.eu.pagerduty.com/v2/enqueue).
    pub url: Option<String>,
    /// critical, error, warning or info (default critical).
    pub severity: Option<String>,
}

/// Opsgenie Alert API: a failed run creates an alert, a passed one closes it (by alias).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Opsgenie {
    /// The variable holding the API integration key (a secret).
    pub api_key_env: String,
    /// The alerts endpoint (default https://api.opsgenie.com/v2/alerts; EU:
    /// https://api.eu.opsgenie.com/v2/alerts).
    pub url: Option<String>,
    /// P1 to P5 (default P2).
    pub priority: Option<String>,
}

/// A Microsoft Teams incoming webhook (a Workflows "post to a channel when a webhook request
/// is received" URL): an Adaptive Card.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Teams {
    /// The URL (a secret: it carries the token).
    pub url: Option<String>,
    /// Or the environment variable holding it.
    pub url_env: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyslogTransport {
    #[default]
    Udp,
    /// Octet-counted frames (RFC 6587).
    Tcp,
}

/// A syslog collector, RFC 5424 messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Syslog {
    /// `host:port` (514 is the usual port).
    pub address: String,
    #[serde(default)]
    pub transport: SyslogTransport,
    /// The facility number, 0-23 (default 16, local0).
    pub facility: Option<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// Upgrade the connection with STARTTLS (port 587); refused if the server cannot.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS (a relay on localhost).
    None,
}

/// An email through an SMTP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Email {
    /// `host:port`.
    pub smtp: String,
    #[serde(default)]
    pub tls: TlsMode,
    /// A CA certificate file for a private CA (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    pub user: Option<String>,
    /// The variable holding the password.
    pub password_env: Option<String>,
    pub from: String,
    pub to: Vec<String>,
}

/// A Sentry project: events go to its envelope endpoint, tagged runbook, database, step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sentry {
    /// `https://PUBLIC_KEY@HOST/PROJECT_ID` (a secret: masked everywhere).
    pub dsn: Option<String>,
    /// Or the environment variable holding it (SENTRY_DSN).
    pub dsn_env: Option<String>,
    /// Sentry's `environment` of the event (production, staging).
    pub environment: Option<String>,
}

/// The envelope endpoint and the auth header of a DSN.
pub fn sentry_target(dsn: &str) -> Result<(String, String), String> {
    let u = reqwest::Url::parse(dsn).map_err(|_| "the DSN is not a URL".to_string())?;
    let key = u.username();
    if key.is_empty() {
        return Err("the DSN has no public key (https://KEY@host/PROJECT)".into());
    }
    let path = u.path().trim_end_matches('/');
    let (prefix, project) = path.rsplit_once('/').ok_or("the DSN has no project id")?;
    if project.is_empty() {
        return Err("the DSN has no project id".into());
    }
    let host = u.host_str().ok_or("the DSN has no host")?;
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let url = format!("{}://{host}{port}{prefix}/api/{project}/envelope/", u.scheme());
    let auth =
        format!("Sentry sentry_version=7, sentry_client=pgdrill/{}, sentry_key={key}", env!("CARGO_PKG_VERSION"));
    Ok((url, auth))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `{"text": ...}`: Slack, Mattermost, Rocket.Chat, Teams' Slack-compatible hooks.
    Slack,
    /// The run's facts as JSON.
    #[default]
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The URL (its path and query are treated as a secret: hooks carry their token there).
    pub url: Option<String>,
    /// Or the environment variable holding it.
    pub url_env: Option<String>,
    #[serde(default)]
    pub format: Format,
}

/// Read and check a notify file; problems come with file:line:col.
pub fn load(path: &Path) -> Result<NotifyFile, crate::Error> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::Error::invalid(format!("cannot read notify file {file}: {e} (--notify or PGDRILL_NOTIFY)"))
    })?;
    let located = |p: &str, msg: String| {
        let pos = SpanIndex::build(&text).key(p);
        let mut d = super::Diagnostics::default();
        d.push(Diagnostic::new(&file, &text, pos, msg));
        crate::Error::Runbook(d)
    };
    let n: NotifyFile = serde_path_to_error::deserialize(serde_yaml::Deserializer::from_str(&text)).map_err(|e| {
        let p = e.path().to_string();
        let mut msg = e.into_inner().to_string();
        if let Some(i) = msg.find(" at line ") {
            msg.truncate(i);
        }
        located(if p == "." { "" } else { &p }, format!("notify file: {msg}"))
    })?;
    validate(&n).map_err(|(p, m)| located(&p, m))?;
    Ok(n)
}

fn validate_oncall(i: usize, s: &Notification) -> Result<(), (String, String)> {
    let http = |key: &str, u: &Option<String>| match u {
        Some(u) if reqwest::Url::parse(u).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) => {
            Err((format!("notify[{i}].{key}.url"), format!("{key} url must be an http(s) URL")))
        }
        _ => Ok(()),
    };
    if let Some(p) = &s.pagerduty {
        http("pagerduty", &p.url)?;
        if let Some(sev) = p.severity.as_deref().filter(|v| !["critical", "error", "warning", "info"].contains(v)) {
            return Err((
                format!("notify[{i}].pagerduty.severity"),
                format!("severity `{sev}`: one of critical, error, warning, info"),
            ));
        }
    }
    if let Some(o) = &s.opsgenie {
        http("opsgenie", &o.url)?;
        if let Some(p) = o.priority.as_deref().filter(|v| !["P1", "P2", "P3", "P4", "P5"].contains(v)) {
            return Err((format!("notify[{i}].opsgenie.priority"), format!("priority `{p}`: one of P1 to P5")));
        }
    }
    if let Some(t) = &s.teams {
        if t.url.is_some() == t.url_env.is_some() {
            return Err((
                format!("notify[{i}].teams"),
                "teams takes `url` or `url_env` (the variable holding it), one of them".into(),
            ));
        }
        http("teams", &t.url)?;
    }
    if let Some(h) = &s.signed_webhook {
        if h.url.is_some() == h.url_env.is_some() {
            return Err((
                format!("notify[{i}].signed_webhook"),
                "signed_webhook takes `url` or `url_env` (the variable holding it), one of them".into(),
            ));
        }
        http("signed_webhook", &h.url)?;
        if h.secret_env.is_empty() || !h.secret_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err((
                format!("notify[{i}].signed_webhook.secret_env"),
                "secret_env names the environment variable holding the signing secret, e.g. PGDRILL_HOOK_SECRET".into(),
            ));
        }
    }
    if let Some(l) = &s.syslog {
        if l.address.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
            return Err((
                format!("notify[{i}].syslog.address"),
                "syslog address is host:port, e.g. logs.example.com:514".into(),
            ));
        }
        if l.facility.is_some_and(|f| f > 23) {
            return Err((format!("notify[{i}].syslog.facility"), "facility is 0 to 23 (16 is local0)".into()));
        }
    }
    Ok(())
}

/// Checks beyond types, for the operator file and a runbook's `notify:` section alike:
/// `(key path, message)` of the first problem.
pub fn validate(n: &NotifyFile) -> Result<(), (String, String)> {
    for (i, s) in n.notify.iter().enumerate() {
        // The on-call sinks: each alone in its notification.
        let oncall = [
            s.pagerduty.is_some(),
            s.opsgenie.is_some(),
            s.teams.is_some(),
            s.syslog.is_some(),
            s.signed_webhook.is_some(),
        ];
        if oncall.iter().any(|b| *b) {
            if oncall.iter().filter(|b| **b).count() > 1
                || s.webhook.is_some()
                || s.sentry.is_some()
                || s.email.is_some()
            {
                return Err((
                    format!("notify[{i}]"),
                    "each notification has one sink: `webhook:`, `sentry:`, `email:`, `pagerduty:`, `opsgenie:`, `teams:`, `syslog:` or `signed_webhook:`".into(),
                ));
            }
            validate_oncall(i, s)?;
            continue;
        }
        match (&s.webhook, &s.sentry, &s.email) {
            (None, None, Some(e)) => {
                let bad_addr = |a: &str| a.is_empty() || a.contains(['<', '>', '\r', '\n', ' ']) || !a.contains('@');
                if !e.smtp.contains(':') {
                    return Err((
                        format!("notify[{i}].email.smtp"),
                        "smtp is host:port, e.g. smtp.example.com:587".into(),
                    ));
                }
                if bad_addr(&e.from) || e.to.is_empty() || e.to.iter().any(|t| bad_addr(t)) {
                    return Err((
                        format!("notify[{i}].email"),
                        "email needs `from` and `to` (a list) of plain addresses".into(),
                    ));
                }
                continue;
            }
            (Some(_), None, None) => {}
            (None, Some(sentry), None) => {
                match (&sentry.dsn, &sentry.dsn_env) {
                    (Some(d), None) => {
                        if let Err(e) = sentry_target(d) {
                            return Err((format!("notify[{i}].sentry.dsn"), format!("sentry: {e}")));
                        }
                    }
                    (None, Some(_)) => {}
                    _ => {
                        return Err((
                            format!("notify[{i}].sentry"),
                            "sentry takes `dsn` or `dsn_env` (the variable holding it), one of them".into(),
                        ))
                    }
                }
                continue;
            }
            _ => {
                return Err((
                    format!("notify[{i}]"),
                    "each notification has one sink: `webhook:`, `sentry:` or `email:`".into(),
                ))
            }
        }
        let Some(webhook) = &s.webhook else { continue };
        match (&webhook.url, &webhook.url_env) {
            (Some(u), None) => {
                if reqwest::Url::parse(u).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
                    return Err((format!("notify[{i}].webhook.url"), "webhook url must be an http(s) URL".into()));
                }
            }
            (None, Some(_)) => {}
            _ => {
                return Err((
                    format!("notify[{i}].webhook"),
                    "a webhook takes `url` or `url_env` (the variable holding it), one of them".into(),
                ))
            }
        }
    }
    if let Some(u) = &n.tsa {
        if reqwest::Url::parse(u).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true) {
            return Err(("tsa".to_string(), "tsa is the time-stamping authority's http(s) URL".into()));
        }
    }
    if let Some(p) = n.metrics.as_ref().and_then(|m| m.pushgateway.as_ref()) {
        if reqwest::Url::parse(&p.url).is_err() {
            return Err(("metrics.pushgateway.url".to_string(), format!("`{}` is not a URL", p.url)));
        }
    }
    Ok(())
}
