//! The on-call sinks' payloads (issue 42): PagerDuty Events API v2, the Opsgenie Alert API,
//! a Microsoft Teams Adaptive Card, and RFC 5424 syslog messages. Built from the same
//! masked facts as the other alerts; sending is `notify`'s (HTTP) or `send_syslog`'s.

use serde_json::{json, Value};

/// What an on-call alert says of a run.
pub struct Alert<'a> {
    pub runbook: &'a str,
    pub database: &'a str,
    pub passed: bool,
    pub outcome: &'a str,
    /// One line: "pgdrill: runbook verify (app) failed in 3.2 s".
    pub summary: String,
    /// The whole text (message, objectives).
    pub text: String,
    pub details: Value,
}

/// One incident per runbook and database: a pass resolves what a failure triggered.
fn dedup_key(a: &Alert<'_>) -> String {
    format!("pgdrill/{}/{}", a.runbook, a.database)
}

/// PagerDuty refuses a `dedup_key` longer than 255 characters (the whole event is lost).
const PAGERDUTY_KEY_MAX: usize = 255;

/// `key` in at most `max` characters, cut between characters, never inside one: a key too
/// long keeps its beginning and ends with `~` and 16 hex digits of its sha256, so two long
/// names that share their first characters stay two incidents, and a pass still resolves
/// the incident its failure opened (the same name gives the same key).
fn bounded_key(key: &str, max: usize) -> String {
    if key.chars().count() <= max {
        return key.to_string();
    }
    use sha2::Digest;
    let digest = crate::archive::hex(&sha2::Sha256::digest(key.as_bytes()));
    format!("{}~{}", cut(key, max.saturating_sub(17)), &digest[..16])
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Every string in `v` on one line (`util::one_line`): the details of an alert are fields
/// a console shows one to a cell.
pub fn one_line_strings(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(crate::util::one_line(&s).into_owned()),
        Value::Array(a) => Value::Array(a.into_iter().map(one_line_strings).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, one_line_strings(v))).collect()),
        v => v,
    }
}

/// The PagerDuty Events API v2 event: `trigger` on a failure, `resolve` on a pass.
pub fn pagerduty(a: &Alert<'_>, routing_key: &str, severity: &str) -> Value {
    if a.passed {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": bounded_key(&dedup_key(a), PAGERDUTY_KEY_MAX),
        });
    }
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": bounded_key(&dedup_key(a), PAGERDUTY_KEY_MAX),
        "payload": {
            // The API takes at most 1024 characters of summary.
            "summary": cut(&a.summary, 1024),
            "source": crate::util::hostname().unwrap_or_else(|| "pgdrill".into()),
            "severity": severity,
            "component": a.database,
            "group": a.runbook,
            "class": a.outcome,
            "custom_details": a.details,
        },
    })
}

/// The Opsgenie request: (path suffix under the alerts URL, body). A failure creates an
/// alert (message at most 130 characters, alias 512); a pass closes it by alias.
pub fn opsgenie(a: &Alert<'_>, priority: &str) -> (String, Value) {
    let alias = bounded_key(&dedup_key(a), 512);
    if a.passed {
        let path = format!("/{}/close?identifierType=alias", crate::util::percent_encode(&alias));
        return (path, json!({ "source": "pgdrill", "note": cut(&a.summary, 25000) }));
    }
    (
        String::new(),
        json!({
            "message": cut(&a.summary, 130),
            "alias": alias,
            "description": cut(&a.text, 15000),
            "priority": priority,
            "source": "pgdrill",
            "tags": ["pgdrill", a.outcome],
            "details": {
                "runbook": a.runbook,
                "database": a.database,
                "outcome": a.outcome,
                "host": crate::util::hostname().unwrap_or_default(),
            },
        }),
    )
}

/// A Teams message holding one Adaptive Card; every value from data is Markdown-escaped
/// (a name cannot become a link or emphasis).
pub fn teams(a: &Alert<'_>) -> Value {
    let md = |s: &str| super::compliance::markdown_text(s);
    let facts: Vec<Value> = [("runbook", a.runbook), ("database", a.database), ("outcome", a.outcome)]
        .iter()
        .map(|(k, v)| json!({ "title": k, "value": md(v) }))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [
                    { "type": "TextBlock", "size": "Medium", "weight": "Bolder", "wrap": true, "text": md(&a.summary),
                      "color": if a.passed { "Good" } else { "Attention" } },
                    { "type": "FactSet", "facts": facts },
                    { "type": "TextBlock", "wrap": true, "text": md(&a.text) },
                ],
            },
        }],
    })
}

/// An RFC 5424 SD-PARAM value: `"`, `\` and `]` escaped; control characters, line breaks
/// too, shown (`util::one_line`): a message is one line.
fn sd_value(s: &str) -> String {
    let mut out = String::new();
    for c in crate::util::one_line(s).chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An RFC 5424 header field (HOSTNAME, APP-NAME): printable ASCII without spaces, else `-`.
fn header_field(s: &str, max: usize) -> String {
    let f: String = s.chars().filter(|c| c.is_ascii_graphic()).take(max).collect();
    if f.is_empty() {
        "-".into()
    } else {
        f
    }
}

/// The RFC 5424 message: `<PRI>1 TIMESTAMP HOSTNAME pgdrill PROCID run [pgdrill@32473 ...] MSG`,
/// severity err (3) for a failure and info (6) for a pass.
pub fn syslog_message(a: &Alert<'_>, facility: u8, at: time::OffsetDateTime) -> String {
    let severity = if a.passed { 6 } else { 3 };
    let pri = u16::from(facility) * 8 + severity;
    let ts = at.replace_nanosecond(at.nanosecond() / 1000 * 1000).unwrap_or(at);
    // 32473 is the example enterprise number RFC 5612 reserves for documentation; a private
    // SD-ID must carry one.
    format!(
        "<{pri}>1 {} {} pgdrill {} run [pgdrill@32473 runbook=\"{}\" database=\"{}\" outcome=\"{}\"] {}",
        crate::util::rfc3339(ts),
        header_field(&crate::util::hostname().unwrap_or_default(), 255),
        std::process::id(),
        sd_value(a.runbook),
        sd_value(a.database),
        sd_value(a.outcome),
        crate::util::visible(&a.text.replace('\n', "; ")),
    )
}

/// Send `message` to `address` over UDP, or TCP with octet counting (RFC 6587).
pub fn send_syslog(address: &str, tcp: bool, message: &str) -> Result<(), String> {
    use std::io::Write as _;
    use std::net::ToSocketAddrs as _;
    let to = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", crate::util::visible(address)))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", crate::util::visible(address)))?;
    let timeout = std::time::Duration::from_secs(5);
    if tcp {
        let mut s = std::net::TcpStream::connect_timeout(&to, timeout).map_err(|e| format!("cannot connect: {e}"))?;
        s.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        s.write_all(format!("{} {message}", message.len()).as_bytes()).map_err(|e| format!("cannot send: {e}"))
    } else {
        let bind = if to.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
        let s = std::net::UdpSocket::bind(bind).map_err(|e| e.to_string())?;
        s.send_to(message.as_bytes(), to).map(|_| ()).map_err(|e| format!("cannot send: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert<'a>(runbook: &'a str, database: &'a str, passed: bool) -> Alert<'a> {
        Alert {
            runbook,
            database,
            passed,
            outcome: if passed { "passed" } else { "failed" },
            summary: "pgdrill: runbook failed".into(),
            text: String::new(),
            details: json!({}),
        }
    }

    /// Issue 36: the PagerDuty `dedup_key` was the runbook and database names whole, so a
    /// long name (multibyte ones reach 255 characters in a quarter of the bytes' count)
    /// made an event PagerDuty refuses. Now it is at most 255 characters, cut between
    /// characters; the resolve carries the trigger's key; two long names that differ only
    /// at their ends keep two keys; a short key is as it was.
    #[test]
    fn a_long_name_made_a_pagerduty_dedup_key_over_255_characters() {
        let long = "Grüße 東京 🚀 ǅ ".repeat(40);
        let other = format!("{long}2");
        for (runbook, database) in [("verify", long.as_str()), (long.as_str(), "app")] {
            let trigger = pagerduty(&alert(runbook, database, false), "k", "error");
            let resolve = pagerduty(&alert(runbook, database, true), "k", "error");
            let key = trigger["dedup_key"].as_str().unwrap_or_default();
            assert_eq!(key.chars().count(), 255, "{key}");
            assert!(key.starts_with("pgdrill/"), "{key}");
            assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
            let (alias_path, create) = opsgenie(&alert(runbook, database, false), "P1");
            assert!(alias_path.is_empty() && create["alias"].as_str().is_some_and(|a| a.chars().count() <= 512));
        }
        let a = pagerduty(&alert("verify", &long, false), "k", "error");
        let b = pagerduty(&alert("verify", &other, false), "k", "error");
        assert_ne!(a["dedup_key"], b["dedup_key"], "two names, two incidents");
        let short = pagerduty(&alert("verify", "app", false), "k", "error");
        assert_eq!(short["dedup_key"], "pgdrill/verify/app");
    }
}
