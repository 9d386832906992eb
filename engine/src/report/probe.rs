//! Dry connections to a notify file's sinks, for `pgdrill doctor --notify`: each says whether
//! the alert would get through, without sending one. Webhooks and Sentry: the variable that
//! holds the URL is set and its host answers on its port (a POST would post a message);
//! email: the SMTP server takes EHLO, TLS as configured, AUTH and the sender and every
//! recipient, then the envelope is reset; metrics: the textfile's directory is writable and
//! the Pushgateway answers `/-/ready`; on-call sinks (PagerDuty, Opsgenie, Teams): the
//! variable holding the key or URL is set and the endpoint's host answers on its port (an
//! event would page someone); syslog over TCP: the collector takes a connection, closed
//! before a byte is written; over UDP: the address resolves (UDP has no answer to wait for
//! short of sending a message); a signed webhook: its secret decodes and its host answers.
//! Nothing here prints a URL's path or query, a DSN's key, a routing key, a signing secret
//! or a password: hosts and ports only.

use std::time::Duration;

use super::notify::{sentry_dsn, webhook_url, OPSGENIE_ALERTS, PAGERDUTY_EVENTS};
use crate::runbook::notify::NotifyFile;

const TIMEOUT: Duration = Duration::from_secs(5);

/// One sink's finding: what it is, and `Ok(what was checked)` or `Err(what to do)`.
pub struct Probe {
    pub what: String,
    pub result: Result<String, String>,
}

/// Check every sink and the metrics of `cfg`.
pub async fn all(cfg: &NotifyFile) -> Vec<Probe> {
    let mut out = Vec::new();
    if let Some(m) = &cfg.metrics {
        if let Some(file) = &m.textfile {
            out.push(Probe { what: "metrics textfile".into(), result: textfile(file) });
        }
        if let Some(p) = &m.pushgateway {
            out.push(Probe { what: "Pushgateway".into(), result: pushgateway(&p.url).await });
        }
    }
    for (i, n) in cfg.notify.iter().enumerate() {
        let name = n.name.clone().unwrap_or_else(|| format!("notify #{}", i + 1));
        if let Some(w) = &n.webhook {
            let result = url_sink(webhook_url(w), w.url_env.as_deref(), "the webhook's URL").await;
            out.push(Probe { what: format!("{name} (webhook)"), result });
        }
        if let Some(s) = &n.sentry {
            let result = url_sink(sentry_dsn(s), s.dsn_env.as_deref(), "the project's DSN").await;
            out.push(Probe { what: format!("{name} (Sentry)"), result });
        }
        if let Some(e) = &n.email {
            let password = e.password_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|p| !p.is_empty());
            let result = match (&e.user, &e.password_env, &password) {
                (Some(_), Some(v), None) => {
                    Err(format!("{v} is not set: the SMTP user needs its password where the run starts"))
                }
                _ => super::smtp::probe(e, password.as_deref())
                    .await
                    .map(|()| {
                        format!(
                            "{} took the sender and {} recipient(s){} (no message sent)",
                            e.smtp,
                            e.to.len(),
                            if password.is_some() { " after AUTH" } else { "" }
                        )
                    })
                    .map_err(|err| format!("{}: {err}", e.smtp)),
            };
            out.push(Probe { what: format!("{name} (email)"), result });
        }
        if let Some(p) = &n.pagerduty {
            let url = p.url.as_deref().unwrap_or(PAGERDUTY_EVENTS);
            let result = keyed_sink(&p.routing_key_env, "the integration's routing key", url).await;
            out.push(Probe { what: format!("{name} (PagerDuty)"), result });
        }
        if let Some(o) = &n.opsgenie {
            let url = o.url.as_deref().unwrap_or(OPSGENIE_ALERTS);
            let result = keyed_sink(&o.api_key_env, "the API integration's key", url).await;
            out.push(Probe { what: format!("{name} (Opsgenie)"), result });
        }
        if let Some(t) = &n.teams {
            let url = t
                .url
                .clone()
                .or_else(|| t.url_env.as_ref().and_then(|v| std::env::var(v).ok()).filter(|s| !s.is_empty()));
            let result = url_sink(url, t.url_env.as_deref(), "the channel's webhook URL").await;
            out.push(Probe { what: format!("{name} (Teams)"), result });
        }
        if let Some(h) = &n.signed_webhook {
            let result = match super::notify::signed_webhook::target(h) {
                Ok((url, _)) => reachable(&url).await.map(|r| format!("{} holds a signing secret; {r}", h.secret_env)),
                Err(e) => Err(format!("{e}: set it where the run starts")),
            };
            out.push(Probe { what: format!("{name} (signed webhook)"), result });
        }
        if let Some(l) = &n.syslog {
            let tcp = l.transport == crate::runbook::notify::SyslogTransport::Tcp;
            let result = syslog(&l.address, tcp).await;
            out.push(Probe { what: format!("{name} (syslog)"), result });
        }
    }
    out
}

/// An on-call service reached with a key from the variable `env`: the key is there (never
/// shown) and the endpoint's host answers.
async fn keyed_sink(env: &str, what: &str, url: &str) -> Result<String, String> {
    if std::env::var(env).map_or(true, |k| k.is_empty()) {
        return Err(format!("{env} is not set: set it to {what} where the run starts"));
    }
    reachable(url).await.map(|r| format!("{env} is set; {r}"))
}

/// A syslog collector at `host:port`: over TCP it takes a connection (closed before anything
/// is written, so no message reaches it); over UDP the address resolves, which is all UDP
/// can show without sending a message.
async fn syslog(address: &str, tcp: bool) -> Result<String, String> {
    let resolved = match tokio::time::timeout(TIMEOUT, tokio::net::lookup_host(address)).await {
        Ok(Ok(mut addrs)) => addrs.next(),
        Ok(Err(e)) => return Err(format!("{address} does not resolve: {e}")),
        Err(_) => return Err(format!("{address} did not resolve in {} s", TIMEOUT.as_secs())),
    };
    let Some(to) = resolved else { return Err(format!("{address} resolves to no address")) };
    if !tcp {
        return Ok(format!("udp {address} resolves to {to} (UDP has no answer to check without sending a message)"));
    }
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(to)).await {
        Ok(Ok(_)) => Ok(format!("tcp {address} takes a connection (no message sent)")),
        Ok(Err(e)) => Err(format!("tcp {address}: {e}")),
        Err(_) => Err(format!("tcp {address} did not answer in {} s", TIMEOUT.as_secs())),
    }
}

/// A sink reached at a URL (a webhook, Sentry): its host answers, or what is missing, the
/// variable `env` that should hold `what` named.
async fn url_sink(url: Option<String>, env: Option<&str>, what: &str) -> Result<String, String> {
    match (url, env) {
        (Some(url), _) => reachable(&url).await,
        (None, Some(v)) => Err(format!("{v} is not set: set it to {what} where the run starts")),
        (None, None) => Err(format!("no {}", what.trim_start_matches("the "))),
    }
}

/// The host and port of a URL answer a TCP connection.
async fn reachable(url: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(url).map_err(|_| "the URL does not parse".to_string())?;
    let host = u.host_str().ok_or("the URL has no host")?.to_string();
    let port = u.port_or_known_default().ok_or("the URL has no port")?;
    let shown = format!("{}://{host}:{port}", u.scheme());
    match tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(format!("{shown} answers")),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Err(_) => Err(format!("{shown} did not answer in {} s", TIMEOUT.as_secs())),
    }
}

async fn pushgateway(url: &str) -> Result<String, String> {
    let base = reqwest::Url::parse(url).map_err(|_| "the Pushgateway URL does not parse".to_string())?;
    let shown =
        format!("{}://{}:{}", base.scheme(), base.host_str().unwrap_or(""), base.port_or_known_default().unwrap_or(0));
    let ready = base.join("/-/ready").map_err(|_| "the Pushgateway URL does not parse".to_string())?;
    let client = reqwest::Client::builder().timeout(TIMEOUT).build().map_err(|e| e.to_string())?;
    match client.get(ready).send().await {
        Ok(r) if r.status().is_success() => Ok(format!("{shown} is ready")),
        Ok(r) => Err(format!("{shown} answered {} to /-/ready", r.status())),
        Err(e) if e.is_timeout() => Err(format!("{shown} did not answer in {} s", TIMEOUT.as_secs())),
        Err(_) => Err(format!("{shown} does not answer")),
    }
}

fn textfile(file: &std::path::Path) -> Result<String, String> {
    let dir = file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if !dir.is_dir() {
        return Err(format!("{} does not exist: create node_exporter's textfile directory", dir.display()));
    }
    match tempfile::NamedTempFile::new_in(dir) {
        Ok(_) => Ok(format!("{} is writable", dir.display())),
        Err(e) => Err(format!("{} is not writable: {e}", dir.display())),
    }
}
