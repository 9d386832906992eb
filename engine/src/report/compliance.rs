//! Compliance evidence for every run with `--report DIR`: `report.json` (schema
//! `pgdrill.compliance/1`), the same as `report.md` and `report.html` rendered with minijinja
//! templates, and one line per run appended to `history.jsonl`, which `pgdrill report DIR`
//! summarises. Everything is built from the run's (already redacted) summary.

use std::io::Write;
use std::path::Path;

use serde_json::{json, Value};
use time::OffsetDateTime;

use super::summary::{secs, Content, Measure};
use super::{write_atomic, RunSummary};
use crate::exec::{Objective, Rollback};
use crate::Error;

pub const SCHEMA: &str = "pgdrill.compliance/1";
pub const HISTORY_SCHEMA: &str = "pgdrill.history/1";

const MARKDOWN: &str = r#"# pgdrill report: {{ r.runbook }} — {{ r.outcome | upper }}{% if r.content == "unproven" %}, CONTENT UNPROVEN{% endif %}

| | |
|---|---|
| runbook | {{ r.runbook }} ({{ r.file }}) |
| started | {{ r.started_at }} |
| finished | {{ r.finished_at }} ({{ r.duration_s }} s) |
| host | {{ r.host }} |
| pgdrill | {{ r.pgdrill_version }} |
| PostgreSQL | {% for v in r.versions.servers %}{{ v }}{% if not loop.last %}; {% endif %}{% else %}none started{% endfor %} |
{% if r.message %}| result | {{ r.message }} |
{% endif %}{% if r.content %}| content | {{ r.content }}{% if r.content == "unproven" %}: restorable, but nothing to compare its content with{% endif %} |
{% endif %}
## Backups tested
{% for b in r.backups %}
- {{ b.path }} sha256 {{ b.sha256 or "n/a" }}{% if b.age_s is not none %}, {{ b.age_s }} s old{% endif %}{% if b.created %}, created {{ b.created }}{% endif %} ({{ b.step }})
{%- else %}
- none
{%- endfor %}

## Objectives
| objective | measured | target | result |
|---|---|---|---|
{% for o in r.objectives %}| {{ o.name }} | {% if o.measured_s is not none %}{{ o.measured_s }} s{% else %}-{% endif %} | {% if o.target_s is not none %}{{ o.target_s }} s{% else %}-{% endif %} | {{ o.outcome }} |
{% else %}| none measured | | | |
{% endfor %}
{% if r.phases %}
## Recovery phases
| phase | seconds |
|---|---|
{% for k, v in r.phases | items %}| {{ k }} | {{ v }} |
{% endfor %}{% endif %}
{% if r.warnings %}
## Warnings
{% for w in r.warnings %}
- {{ w.suite }} / {{ w.name }}: {{ w.warning }}
{%- endfor %}
{% endif %}
## Checks
| suite | check | step | result | seconds | detail |
|---|---|---|---|---|---|
{% for c in r.checks %}| {{ c.suite }} | {{ c.name }} | {{ c.uses }} | {{ c.outcome }}{% if c.content == "unproven" %} (content unproven){% endif %}{% if c.rollback %}, {{ c.rollback }}{% endif %} | {{ c.duration_s }} | {{ c.message or "" }} |
{% endfor %}"#;

const HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgdrill report: {{ r.runbook }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;overflow-wrap:anywhere}code{overflow-wrap:anywhere}.passed{color:#070}.failed,.errored,.timed_out,.failure{color:#b00}
.skipped{color:#777}</style></head><body>
<h1>pgdrill report: {{ r.runbook }} — <span class="{{ r.outcome }}">{{ r.outcome | upper }}</span>{% if r.content == "unproven" %}, <span class="failure">CONTENT UNPROVEN</span>{% endif %}</h1>
<table>
<tr><th>runbook</th><td>{{ r.runbook }} ({{ r.file }})</td></tr>
<tr><th>started</th><td>{{ r.started_at }}</td></tr>
<tr><th>finished</th><td>{{ r.finished_at }} ({{ r.duration_s }} s)</td></tr>
<tr><th>host</th><td>{{ r.host }}</td></tr>
<tr><th>pgdrill</th><td>{{ r.pgdrill_version }}</td></tr>
<tr><th>PostgreSQL</th><td>{% for v in r.versions.servers %}{{ v }}<br>{% else %}none started{% endfor %}</td></tr>
{% if r.message %}<tr><th>result</th><td>{{ r.message }}</td></tr>{% endif %}
{% if r.content %}<tr><th>content</th><td class="{% if r.content == "proven" %}passed{% else %}failure{% endif %}">{{ r.content }}{% if r.content == "unproven" %}: restorable, but nothing to compare its content with{% endif %}</td></tr>{% endif %}
</table>
<h2>Backups tested</h2><ul>
{% for b in r.backups %}<li><code>{{ b.path }}</code> sha256 <code>{{ b.sha256 or "n/a" }}</code>{% if b.age_s is not none %}, {{ b.age_s }} s old{% endif %}{% if b.created %}, created {{ b.created }}{% endif %} ({{ b.step }})</li>
{% else %}<li>none</li>{% endfor %}</ul>
<h2>Objectives</h2><table><tr><th>objective</th><th>measured</th><th>target</th><th>result</th></tr>
{% for o in r.objectives %}<tr><td>{{ o.name }}</td><td>{% if o.measured_s is not none %}{{ o.measured_s }} s{% else %}-{% endif %}</td><td>{% if o.target_s is not none %}{{ o.target_s }} s{% else %}-{% endif %}</td><td class="{{ o.outcome }}">{{ o.outcome }}</td></tr>
{% else %}<tr><td colspan="4">none measured</td></tr>{% endfor %}</table>
{% if r.phases %}<h2>Recovery phases</h2><table><tr><th>phase</th><th>seconds</th></tr>
{% for k, v in r.phases | items %}<tr><td>{{ k }}</td><td>{{ v }}</td></tr>{% endfor %}</table>{% endif %}
{% if r.warnings %}<h2>Warnings</h2><ul>
{% for w in r.warnings %}<li class="failure">{{ w.suite }} / {{ w.name }}: {{ w.warning }}</li>
{% endfor %}</ul>{% endif %}
<h2>Checks</h2><table><tr><th>suite</th><th>check</th><th>step</th><th>result</th><th>seconds</th><th>detail</th></tr>
{% for c in r.checks %}<tr><td>{{ c.suite }}</td><td>{{ c.name }}</td><td><code>{{ c.uses }}</code></td><td class="{{ c.outcome }}">{{ c.outcome }}{% if c.content == "unproven" %} (content unproven){% endif %}{% if c.rollback %}, {{ c.rollback }}{% endif %}</td><td>{{ c.duration_s }}</td><td>{{ c.message or "" }}</td></tr>
{% endfor %}</table>
</body></html>
"#;

/// The compliance record of one run, from its summary.
pub fn build(run: &RunSummary) -> Value {
    let record = &run.record;
    let top = run.top();
    // What a step warned of (`Fact::Warning`: a backup not encrypted, a certificate not
    // verified) is part of the record, whatever the step's outcome.
    let warnings: Vec<Value> =
        run.warnings.iter().map(|w| json!({ "suite": w.suite, "name": w.name, "warning": w.text })).collect();
    let checks = super::checks(run, |s| {
        json!({
            "outcome": s.outcome,
            // What the check proved of the content (unproven: it had no ground truth).
            "content": Content::of_step(s),
            // An added fact: the outcome stays what the step did.
            "rollback": s.rollback.map(Rollback::as_str),
        })
    });
    let mut servers: Vec<String> = Vec::new();
    for s in &run.servers {
        let v = format!("{} ({})", s.version, s.step.label);
        if !servers.contains(&v) {
            servers.push(v);
        }
    }
    let backups: Vec<Value> = run
        .backups
        .iter()
        .map(|b| {
            json!({
                "step": format!("{} {}", b.suite, b.step.label),
                "path": b.path,
                "sha256": b.sha256,
                "age_s": b.age_s,
                "created": b.created,
                "size": b.size,
            })
        })
        .collect();
    let mut objectives = Vec::new();
    let mut phases = Value::Null;
    for o in &run.objectives {
        let name = match &o.what {
            // RPO is only ever measured from the data a drill found in the recovered copy;
            // the age of the backup a verify proved restorable is filed under its own name
            // (it once went in as "RPO", and a quickstart among drills made the RPO trend
            // "fall" to 0 s).
            Measure::Objective(Objective::Rto) => "RTO".to_string(),
            Measure::Objective(Objective::Rpo) => "RPO".to_string(),
            Measure::Objective(Objective::BackupAge) => "Backup age".to_string(),
            Measure::Budget { label, suite } => format!("{label} budget of {suite}"),
        };
        objectives.push(json!({
            "name": name,
            "measured_s": o.measured_s,
            "target_s": o.target_s,
            "outcome": o.outcome,
            "message": o.message,
        }));
        if let Some(Value::Object(p)) = o.phases.as_ref() {
            // A phase is a sum of measured seconds: to the millisecond, as every other time
            // in the report (`2.5389999999999997` in report.html was float noise).
            let ms = |v: &Value| v.as_f64().map_or_else(|| v.clone(), |s| json!((s * 1000.0).round() / 1000.0));
            phases = Value::Object(p.iter().map(|(k, v)| (k.clone(), ms(v))).collect());
        }
    }
    json!({
        "schema": SCHEMA,
        "kind": run.kind().as_str(),
        "runbook": top.map(|t| t.name.as_str()),
        "file": top.map(|t| t.file.as_str()),
        "outcome": run_outcome(run),
        // Apart from the outcome: a run that passed having accepted unproven content says so.
        "content": run.content(),
        "exit_code": record.exit_code,
        "message": top.and_then(|t| t.message.as_deref()),
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "duration_s": top.map(|t| secs(t.duration)),
        "host": crate::util::hostname().unwrap_or_default(),
        "pgdrill_version": record.pgdrill_version,
        "versions": { "servers": servers },
        "backups": backups,
        "objectives": objectives,
        "phases": phases,
        "checks": checks,
        "warnings": warnings,
    })
}

/// The run's outcome for the compliance record and the history: `errored` when it ended
/// with an environment error (exit 3) or invalid input (exit 2), which are no verdict on a
/// backup; else what the run record says (`passed`, `failed`, `interrupted`).
fn run_outcome(run: &RunSummary) -> Value {
    match run.record.exit_code {
        Some(2 | 3) => Value::from("errored"),
        _ => json!(run.record.outcome),
    }
}

/// The kind of a history line; lines written before kinds were recorded are drills when they
/// measured an objective.
fn kind_of(line: &Value) -> &str {
    match line["kind"].as_str() {
        Some(k) => k,
        None if line["rto_s"].is_number() || line["rpo_s"].is_number() => "drill",
        None => "other",
    }
}

/// Every string in `v` as valid XML text, for the HTML and Markdown renderings (JSON escapes
/// control characters itself).
fn clean_strings(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(super::xml_text(s)),
        Value::Array(a) => Value::Array(a.iter().map(clean_strings).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (super::xml_text(k), clean_strings(v))).collect()),
        other => other.clone(),
    }
}

/// `s` as literal Markdown text on one line (GFM tables included): line breaks become
/// spaces, the punctuation Markdown and HTML act on is backslash-escaped.
pub fn markdown_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '~' | '&' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if crate::util::is_bidi_control(c) => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn render(template: &str, report: &Value) -> Result<String, Error> {
    let report = &clean_strings(report);
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    let name = if template == HTML { "report.html" } else { "report.md" };
    if name == "report.md" {
        // Every value printed into the Markdown is text: it cannot end a table cell or row,
        // open a link or emphasis, or carry HTML.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(s) => out
                .write_str(&markdown_text(s))
                .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "writing report.md")),
            None => minijinja::escape_formatter(out, state, value),
        });
    }
    env.add_template(name, template).map_err(|e| Error::invalid(format!("report template: {e}")))?;
    env.get_template(name)
        .and_then(|t| t.render(minijinja::context! { r => minijinja::Value::from_serialize(report) }))
        .map_err(|e| Error::invalid(format!("rendering {name}: {e}")))
}

fn objective(run: &RunSummary, which: Objective) -> (Value, Value) {
    run.objectives
        .iter()
        .find(|o| o.what == Measure::Objective(which))
        .map(|o| (o.measured_s.clone(), o.target_s.clone()))
        .unwrap_or((Value::Null, Value::Null))
}

/// Write report.json, report.md, report.html and append to history.jsonl in `dir`. Returns
/// the dated copy of this run's page (`report-YYYYMMDDhhmmss-NNNNNNNNN.html`), which
/// `prune_dated` never removes.
///
/// `evidence`: the head of the evidence log the run appended to (location, chain id,
/// sequence, sha256), carried by the run's history line so that a log cut at its end is seen
/// against the ledger (`evidence verify`) without anyone keeping a checkpoint.
pub fn write_anchored(
    dir: &Path,
    run: &RunSummary,
    evidence: Option<&serde_json::Value>,
) -> Result<Option<std::path::PathBuf>, Error> {
    let report = build(run);
    write_atomic(&dir.join("report.json"), |w| {
        serde_json::to_writer_pretty(&mut *w, &report).map_err(std::io::Error::other)?;
        w.write_all(b"\n")
    })?;
    let md = render(MARKDOWN, &report)?;
    write_atomic(&dir.join("report.md"), |w| w.write_all(md.as_bytes()))?;
    let html = render(HTML, &report)?;
    write_atomic(&dir.join("report.html"), |w| w.write_all(html.as_bytes()))?;

    // From the typed summary, never from the report's own JSON read back by its labels.
    let (rto, rto_target) = objective(run, Objective::Rto);
    let (rpo, rpo_target) = objective(run, Objective::Rpo);
    let (backup_age, backup_age_target) = objective(run, Objective::BackupAge);
    let first = run.backups.first();
    let mut line = json!({
        "schema": HISTORY_SCHEMA,
        "kind": report["kind"],
        "finished_at": report["finished_at"],
        "runbook": report["runbook"],
        "outcome": report["outcome"],
        "content": report["content"],
        "exit_code": report["exit_code"],
        "duration_s": report["duration_s"],
        "rto_s": rto,
        "rto_target_s": rto_target,
        "rpo_s": rpo,
        "rpo_target_s": rpo_target,
        "backup_age_s": backup_age,
        "backup_age_target_s": backup_age_target,
        "backup_sha256": first.map(|b| b.sha256.clone()),
        "backup_size_bytes": first.map(|b| b.size.clone()),
        // Which backup the run proved, by name: another tool's physical backup has no sha256
        // of its own here, only its source and the tool's backup id.
        "backup": first.map(|b| b.path.clone()),
    });
    if let Some(e) = evidence {
        line["evidence"] = e.clone();
    }
    let path = dir.join("history.jsonl");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    writeln!(f, "{line}")
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io(format!("appending to {}", path.display()), e))?;
    drop(f);
    // The history so far, as charts, in this run's page; and the page kept under its date.
    let history = std::fs::read_to_string(&path).unwrap_or_default();
    let charts = super::charts::section(&history, report["runbook"].as_str(), 50);
    let html = html.replacen("</body>", &format!("{charts}</body>"), 1);
    write_atomic(&dir.join("report.html"), |w| w.write_all(html.as_bytes()))?;
    let Some(dated) = dated_name(dir, report["finished_at"].as_str().unwrap_or_default()) else { return Ok(None) };
    write_atomic(&dated, |w| w.write_all(html.as_bytes()))?;
    Ok(Some(dated))
}

/// A dated page's name for a run that finished at `finished_at` (RFC 3339): to the
/// nanosecond, so runs in the same second keep a page each (one-second names let three runs
/// leave one page, and the failed run's page, the auditor's evidence, was lost); a name
/// already taken gets `-2`, `-3`... rather than replacing another run's page.
fn dated_name(dir: &Path, finished_at: &str) -> Option<std::path::PathBuf> {
    let (date, rest) = finished_at.split_once('T')?;
    let secs: String = date.chars().chain(rest.chars().take(8)).filter(|c| c.is_ascii_digit()).collect();
    if secs.len() != 14 {
        return None;
    }
    let frac: String =
        rest.split_once('.').map(|(_, f)| f.chars().take_while(char::is_ascii_digit).collect()).unwrap_or_default();
    let stamp = format!("{secs}-{frac:0<9}");
    (1..)
        .map(|n| if n == 1 { format!("report-{stamp}.html") } else { format!("report-{stamp}-{n}.html") })
        .map(|name| dir.join(name))
        .take(1000)
        .find(|p| !p.exists())
}

/// The sort key of a dated page's file name: (`YYYYMMDDhhmmss`, nanoseconds, `-N`), or
/// `None` for any other file. One-second names of earlier versions sort before the
/// sub-second names of the same second.
pub(super) fn dated_key(name: &str) -> Option<(String, u32, u32)> {
    let stamp = name.strip_prefix("report-")?.strip_suffix(".html")?;
    let mut parts = stamp.split('-');
    let secs = parts.next().filter(|d| d.len() == 14 && d.bytes().all(|b| b.is_ascii_digit()))?;
    let nanos = match parts.next() {
        None => 0,
        Some(n) if n.len() == 9 && n.bytes().all(|b| b.is_ascii_digit()) => n.parse().ok()?,
        Some(_) => return None,
    };
    let nth = match parts.next() {
        None => 1,
        Some(n) => n.parse().ok().filter(|n| *n >= 2)?,
    };
    if parts.next().is_some() {
        return None;
    }
    Some((secs.to_string(), nanos, nth))
}

/// Keep the newest `keep` dated reports (`report-YYYYMMDDhhmmss-NNNNNNNNN.html`) in `dir`.
/// `current`, this run's own page, is never removed and counts as one of them: `--keep 0`
/// keeps it alone.
pub fn prune_dated(dir: &Path, keep: usize, current: Option<&Path>) -> Result<usize, Error> {
    let mut dated: Vec<((String, u32, u32), std::path::PathBuf)> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading {}", dir.display()), e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| current.is_none_or(|c| c.file_name() != p.file_name()))
        .filter_map(|p| p.file_name().and_then(|n| n.to_str()).and_then(dated_key).map(|k| (k, p.clone())))
        .collect();
    dated.sort();
    let keep_others = keep.saturating_sub(usize::from(current.is_some()));
    let extra = dated.len().saturating_sub(keep_others);
    for (_, p) in &dated[..extra] {
        std::fs::remove_file(p).map_err(|e| Error::io(format!("removing {}", p.display()), e))?;
    }
    Ok(extra)
}

/// The schema of the period's compliance report (`compliance.json` in an evidence pack).
pub const PERIOD_SCHEMA: &str = "pgdrill.compliance-period/1";

const PERIOD_HTML: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgdrill compliance report {{ r.period.from }} to {{ r.period.to }}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:75em}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}.met,.passed{color:#070}.not_met,.failed,.errored{color:#b00}
.not_applicable{color:#777}</style></head><body>
<h1>pgdrill compliance report</h1>
<table>
<tr><th>period</th><td>{{ r.period.from }} to {{ r.period.to }} (UTC, end exclusive)</td></tr>
<tr><th>records in the period</th><td>{{ r.records | length }}</td></tr>
<tr><th>passed</th><td>{{ r.runs.passed }}; passed with content unproven (never counted as passed): {{ r.runs.unproven }}</td></tr>
<tr><th>signing key id</th><td><code>{{ r.keyid }}</code></td></tr>
<tr><th>log head</th><td>{% if r.head %}record {{ r.head.sequence }}, sha256 <code>{{ r.head.sha256 }}</code>{% else %}empty{% endif %}</td></tr>
</table>
<h2>Controls</h2>
<table><tr><th>framework</th><th>control</th><th>verdict</th><th>evidence asked, cadence asked / longest gap observed</th><th>supporting records</th><th>missing</th></tr>
{% for c in r.controls %}{% for j in c.judged %}<tr>{% if loop.first %}<td rowspan="{{ c.judged | length }}">{{ c.framework_name }}</td><td rowspan="{{ c.judged | length }}"><b>{{ c.control }}</b><br><small>{{ c.text }}</small><br><small>source: {{ c.source }}</small><br><i>{{ c.why }}</i></td><td rowspan="{{ c.judged | length }}" class="{{ c.verdict }}">{{ c.verdict | replace("_", " ") }}</td>{% endif %}
<td>{{ j.requirement }}{% if j.database %} (<code>{{ j.database }}</code>){% endif %}<br>every {{ (j.every_s / 86400) | round(1) }} d / longest gap {{ (j.longest_gap_s / 86400) | round(1) }} d</td>
<td>{% for n in j.supporting %}{{ n }}{% if not loop.last %}, {% endif %}{% else %}none{% endfor %}</td><td>{{ j.missing or "" }}</td></tr>
{% endfor %}{% endfor %}</table>
<h2>Records in the period</h2>
<table><tr><th>record</th><th>finished</th><th>kind</th><th>runbook</th><th>database</th><th>outcome</th><th>sha256</th></tr>
{% for x in r.records %}<tr><td>{{ x.sequence }}</td><td>{{ x.finished_at }}</td><td>{{ x.kind }}</td><td>{{ x.runbook }}</td><td>{{ x.database }}</td><td class="{{ x.outcome }}">{{ x.outcome }}{% if x.content == "unproven" %}, content unproven{% endif %}</td><td><code>{{ x.sha256 }}</code></td></tr>
{% else %}<tr><td colspan="7">none</td></tr>{% endfor %}</table>
</body></html>
"#;

/// The period's compliance report: every control of the mapping judged from the verified
/// records, and the period's records.
pub fn period_report(
    v: &crate::evidence::verify::Verified,
    period: &crate::evidence::pack::Period,
) -> Result<Value, Error> {
    let mapping = crate::evidence::controls::mapping().map_err(Error::invalid)?;
    let controls = crate::evidence::controls::evaluate(&mapping, &v.good, period);
    let s = |g: &crate::evidence::verify::Good, k: &str| g.statement.predicate[k].clone();
    let records: Vec<Value> = v
        .good
        .iter()
        .filter(|g| period.contains(g.statement.predicate["finished_at"].as_str().unwrap_or("")))
        .map(|g| {
            json!({
                "sequence": g.sequence,
                "finished_at": s(g, "finished_at"),
                "kind": s(g, "kind"),
                "runbook": g.statement.predicate["runbook"]["name"],
                "database": s(g, "database"),
                "outcome": s(g, "outcome"),
                "content": content_of_checks(&g.statement.predicate["checks"]),
                "sha256": g.sha256,
            })
        })
        .collect();
    // The period's runs by outcome: one that passed with its content unproven is apart.
    let passed = |unproven: bool| {
        records.iter().filter(|r| r["outcome"] == "passed" && (r["content"] == "unproven") == unproven).count()
    };
    let runs = json!({ "records": records.len(), "passed": passed(false), "unproven": passed(true) });
    let rfc = |t| crate::util::rfc3339(t);
    Ok(json!({
        "schema": PERIOD_SCHEMA,
        "period": { "from": rfc(period.from), "to": rfc(period.to) },
        "keyid": v.keyid,
        "head": v.good.last().map(|g| json!({ "sequence": g.sequence, "sha256": g.sha256 })),
        "runs": runs,
        "records": records,
        "controls": controls,
    }))
}

/// What a signed record's checks proved of the content, as the run's `content` says it
/// (`Content::of_all`): failed over unproven over proven, from each check's ground truth and
/// verdict; null when none judged content.
fn content_of_checks(checks: &Value) -> Value {
    let all = checks.as_array().map(Vec::as_slice).unwrap_or_default().iter().filter_map(|c| {
        match (c["ground_truth"].as_str()?, c["verdict"].as_str()?) {
            (_, "errored") => None,
            ("none", _) => Some(Content::Unproven),
            (_, "failed" | "timed_out") => Some(Content::Failed),
            (_, "passed") => Some(Content::Proven),
            _ => None,
        }
    });
    Content::of_all(all).map(|c| json!(c.as_str())).unwrap_or(Value::Null)
}

/// The period report as lines of text (the PDF's content).
fn period_lines(r: &Value) -> Vec<String> {
    let t = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut out = vec![
        "pgdrill compliance report".to_string(),
        String::new(),
        format!("Period: {} to {} (UTC, end exclusive)", t(&r["period"]["from"]), t(&r["period"]["to"])),
        format!("Signing key id: {}", t(&r["keyid"])),
        format!("Log head: record {} sha256 {}", t(&r["head"]["sequence"]), t(&r["head"]["sha256"])),
        format!("Records in the period: {}", r["records"].as_array().map(Vec::len).unwrap_or(0)),
        format!(
            "Passed: {}; passed with content unproven (never counted as passed): {}",
            t(&r["runs"]["passed"]),
            t(&r["runs"]["unproven"])
        ),
        String::new(),
        "CONTROLS".to_string(),
    ];
    for c in r["controls"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(String::new());
        out.push(format!(
            "{} {}: {}",
            t(&c["framework_name"]),
            t(&c["control"]),
            t(&c["verdict"]).replace('_', " ").to_uppercase()
        ));
        out.push(format!("  Control: {}", t(&c["text"])));
        out.push(format!("  Answered by: {}", t(&c["why"])));
        for j in c["judged"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let db = j["database"].as_str().map(|d| format!(" ({d})")).unwrap_or_default();
            let records: Vec<String> =
                j["supporting"].as_array().map(Vec::as_slice).unwrap_or_default().iter().map(t).collect();
            out.push(format!(
                "  - {}{db}: {}; cadence asked {:.1} d, longest gap observed {:.1} d; records: {}",
                t(&j["requirement"]),
                t(&j["verdict"]).replace('_', " "),
                j["every_s"].as_f64().unwrap_or(0.0) / 86400.0,
                j["longest_gap_s"].as_f64().unwrap_or(0.0) / 86400.0,
                if records.is_empty() { "none".to_string() } else { records.join(", ") }
            ));
            if let Some(m) = j["missing"].as_str() {
                out.push(format!("    missing: {m}"));
            }
        }
    }
    out.push(String::new());
    out.push("RECORDS IN THE PERIOD".to_string());
    for x in r["records"].as_array().map(Vec::as_slice).unwrap_or_default() {
        out.push(format!(
            "{:>6}  {}  {} {} {} {}  sha256 {}",
            t(&x["sequence"]),
            t(&x["finished_at"]),
            t(&x["kind"]),
            t(&x["runbook"]),
            t(&x["database"]),
            if x["content"] == "unproven" {
                format!("{}, content unproven", t(&x["outcome"]))
            } else {
                t(&x["outcome"])
            },
            t(&x["sha256"])
        ));
    }
    out
}

/// The period's compliance report for an evidence pack, as files (name, bytes):
/// compliance.json, compliance.html and compliance.pdf.
pub fn period_files(
    v: &crate::evidence::verify::Verified,
    period: &crate::evidence::pack::Period,
) -> Result<Vec<(String, Vec<u8>)>, Error> {
    let report = period_report(v, period)?;
    let mut json_bytes =
        serde_json::to_vec_pretty(&report).map_err(|e| Error::invalid(format!("compliance.json: {e}")))?;
    json_bytes.push(b'\n');
    let clean = clean_strings(&report);
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template("compliance.html", PERIOD_HTML).map_err(|e| Error::invalid(format!("report template: {e}")))?;
    let html = env
        .get_template("compliance.html")
        .and_then(|t| t.render(minijinja::context! { r => minijinja::Value::from_serialize(&clean) }))
        .map_err(|e| Error::invalid(format!("rendering compliance.html: {e}")))?;
    let title = format!(
        "pgdrill compliance report {} to {}",
        report["period"]["from"].as_str().unwrap_or(""),
        report["period"]["to"].as_str().unwrap_or("")
    );
    let pdf = super::pdf::render(&title, &period_lines(&clean));
    Ok(vec![
        ("compliance.json".into(), json_bytes),
        ("compliance.html".into(), html.into_bytes()),
        ("compliance.pdf".into(), pdf),
    ])
}

/// What `pgdrill report DIR` prints, and whether the drills are stale.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub runs: usize,
    /// Runs that passed with their content proven (or judged by no check).
    pub passed: usize,
    /// Runs that passed having accepted content with no ground truth ("restorable, content
    /// unproven"): counted apart, never as passed, and never a successful drill.
    pub unproven: usize,
    /// `passed` over `runs`: an accepted unproven run lowers it.
    pub pass_rate: f64,
    pub rto: Vec<f64>,
    pub rpo: Vec<f64>,
    pub days_since_success: Option<f64>,
    pub stale: bool,
    pub skipped_lines: usize,
    /// Runs that are not drills (backup, verify, restore, other), counted apart as
    /// kind -> (runs, passed, unproven), in the same window. Empty when one runbook was asked for.
    pub others: std::collections::BTreeMap<String, (usize, usize, usize)>,
}

fn trend(values: &[f64]) -> String {
    if values.is_empty() {
        return "not measured".into();
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let first = values[0];
    let last = values[values.len() - 1];
    let arrow = if values.len() < 2 || (last - first).abs() < 0.05 * first.abs().max(0.001) {
        "steady"
    } else if last > first {
        "rising"
    } else {
        "falling"
    };
    format!(
        "last {last:.1} s, median {median:.1} s, min {:.1} s, max {:.1} s, {arrow} (oldest to newest: {})",
        sorted[0],
        sorted[sorted.len() - 1],
        values.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(" ")
    )
}

/// How a history line counts in the pass rate: a run that passed with its content unproven
/// (`"content": "unproven"`, the run accepted a check with no ground truth) is apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Passed,
    Unproven,
    Other,
}

fn verdict_of(v: &Value) -> Verdict {
    match (v["outcome"].as_str(), v["content"].as_str()) {
        (Some("passed"), Some("unproven")) => Verdict::Unproven,
        (Some("passed"), _) => Verdict::Passed,
        _ => Verdict::Other,
    }
}

/// Summarise the last `last` runs of `history.jsonl` (optionally of one runbook) as of `now`.
pub fn summarize(
    history: &str,
    last: usize,
    runbook: Option<&str>,
    stale_after: std::time::Duration,
    now: OffsetDateTime,
) -> Summary {
    let fmt = &time::format_description::well_known::Rfc3339;
    let mut skipped_lines = 0;
    let mut entries: Vec<Value> = Vec::new();
    for l in history.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Value>(l) {
            Ok(v) if runbook.is_none_or(|r| v["runbook"] == r) => entries.push(v),
            Ok(_) => {}
            Err(_) => skipped_lines += 1,
        }
    }
    entries.sort_by_key(|v| v["finished_at"].as_str().unwrap_or_default().to_string());
    // Without `--runbook`, the pass rate and staleness are about drills only: a daily backup
    // that passed says nothing about whether a restore drill was run.
    let mut others = std::collections::BTreeMap::new();
    if runbook.is_none() {
        for v in entries.iter().filter(|v| kind_of(v) != "drill").rev().take(last) {
            let e = others.entry(kind_of(v).to_string()).or_insert((0, 0, 0));
            e.0 += 1;
            match verdict_of(v) {
                Verdict::Passed => e.1 += 1,
                Verdict::Unproven => e.2 += 1,
                Verdict::Other => {}
            }
        }
        entries.retain(|v| kind_of(v) == "drill");
    }
    let last_success = entries
        .iter()
        .filter(|v| verdict_of(v) == Verdict::Passed)
        .filter_map(|v| OffsetDateTime::parse(v["finished_at"].as_str().unwrap_or_default(), fmt).ok())
        .max();
    let window: Vec<&Value> = entries.iter().rev().take(last).rev().collect();
    let passed = window.iter().filter(|v| verdict_of(v) == Verdict::Passed).count();
    let unproven = window.iter().filter(|v| verdict_of(v) == Verdict::Unproven).count();
    let days_since_success = last_success.map(|t| (now - t).as_seconds_f64() / 86400.0);
    Summary {
        runs: window.len(),
        passed,
        unproven,
        pass_rate: if window.is_empty() { 0.0 } else { passed as f64 / window.len() as f64 },
        rto: window.iter().filter_map(|v| v["rto_s"].as_f64()).collect(),
        rpo: window.iter().filter_map(|v| v["rpo_s"].as_f64()).collect(),
        days_since_success,
        stale: days_since_success.is_none_or(|d| d > stale_after.as_secs_f64() / 86400.0),
        skipped_lines,
        others,
    }
}

impl Summary {
    pub fn text(&self, stale_after: std::time::Duration) -> String {
        let what = if self.others.is_empty() { "runs" } else { "drills" };
        let mut out = format!(
            "{what}: {} (last {}), passed {} ({:.0}%){}\nRTO: {}\nRPO: {}\n",
            self.runs,
            self.runs,
            self.passed,
            self.pass_rate * 100.0,
            if self.unproven > 0 {
                format!(", passed with content unproven {} (never counted as passed)", self.unproven)
            } else {
                String::new()
            },
            trend(&self.rto),
            trend(&self.rpo)
        );
        if !self.others.is_empty() {
            let list: Vec<String> = self
                .others
                .iter()
                .map(|(k, (n, p, u))| match u {
                    0 => format!("{k} {n} (passed {p})"),
                    u => format!("{k} {n} (passed {p}, content unproven {u})"),
                })
                .collect();
            out.push_str(&format!("not drills, counted apart: {}\n", list.join(", ")));
        }
        match self.days_since_success {
            Some(d) => out.push_str(&format!("last successful drill: {d:.1} days ago\n")),
            None => out.push_str("last successful drill: never\n"),
        }
        if self.stale {
            out.push_str(&format!(
                "STALE: no successful drill within {}; run one (`pgdrill run disaster-recovery --report DIR`)\n",
                humantime::format_duration(stale_after)
            ));
        }
        if self.skipped_lines > 0 {
            out.push_str(&format!("({} unreadable history lines skipped)\n", self.skipped_lines));
        }
        out
    }

    pub fn json(&self) -> Value {
        json!({
            "runs": self.runs,
            "passed": self.passed,
            "unproven": self.unproven,
            "pass_rate": self.pass_rate,
            "rto_s": self.rto,
            "rpo_s": self.rpo,
            "days_since_success": self.days_since_success,
            "stale": self.stale,
            "others": self.others.iter().map(|(k, (n, p, u))| (k.clone(), json!({"runs": n, "passed": p, "unproven": u}))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{BackupRole, Fact};
    use crate::runbook::RunKind;

    fn line(at: &str, outcome: &str, rto: f64, rpo: f64) -> String {
        json!({"schema": HISTORY_SCHEMA, "finished_at": at, "runbook": "disaster-recovery", "outcome": outcome,
               "rto_s": rto, "rpo_s": rpo})
        .to_string()
    }

    #[test]
    fn daily_backup_runs_do_not_make_a_stale_drill_look_fresh() {
        let fmt = &time::format_description::well_known::Rfc3339;
        let now = OffsetDateTime::parse("2026-11-21T00:00:00Z", fmt).expect("time");
        let mut lines = vec![line("2026-08-01T00:00:00Z", "passed", 60.0, 5.0)];
        for day in 1..=20 {
            lines.push(
                json!({"schema": HISTORY_SCHEMA, "kind": "backup", "finished_at": format!("2026-11-{day:02}T00:00:00Z"),
                       "runbook": "backup", "outcome": "passed"})
                .to_string(),
            );
        }
        lines.push(
            json!({"schema": HISTORY_SCHEMA, "kind": "verify", "finished_at": "2026-11-20T01:00:00Z",
                   "runbook": "verify", "outcome": "failed"})
            .to_string(),
        );
        let month = std::time::Duration::from_secs(35 * 86400);
        let s = summarize(&lines.join("\n"), 12, None, month, now);
        assert_eq!((s.runs, s.passed), (1, 1), "one drill");
        assert!(s.stale, "the last drill is 112 days old whatever the backups did");
        assert_eq!(s.others.get("backup"), Some(&(11, 11, 0)));
        assert_eq!(s.others.get("verify"), Some(&(1, 0, 0)));
        let text = s.text(month);
        assert!(text.contains("drills: 1 (last 1), passed 1 (100%)"), "{text}");
        assert!(text.contains("not drills, counted apart: backup 11 (passed 11), verify 1 (passed 0)"), "{text}");
        assert!(text.contains("STALE"), "{text}");
    }

    /// The summary of a run of one suite whose one step established `facts`, declaring
    /// `kind` if given.
    fn record(kind: Option<RunKind>, uses: &str, facts: Vec<Fact>) -> RunSummary {
        crate::report::summary::of_steps(kind, vec![(uses, facts)])
    }

    fn backup(role: BackupRole) -> Fact {
        Fact::Backup {
            role,
            path: Value::Null,
            sha256: Value::Null,
            size: Value::Null,
            created: Value::Null,
            age_s: Value::Null,
        }
    }

    fn objective(objective: Objective) -> Fact {
        Fact::Objective { objective, measured_s: json!(1.0), target_s: Value::Null, phases: None }
    }

    #[test]
    fn a_declared_kind_wins_over_what_the_steps_did() {
        assert_eq!(
            build(&record(Some(RunKind::Drill), "backup.create", vec![backup(BackupRole::Written)]))["kind"],
            "drill"
        );
        assert_eq!(build(&record(None, "backup.create", vec![backup(BackupRole::Written)]))["kind"], "backup");
    }

    #[test]
    fn an_undeclared_kind_is_told_from_facts_not_step_kind_names() {
        let cases = [
            (vec![objective(Objective::Rto), backup(BackupRole::Written)], "drill"),
            (vec![objective(Objective::BackupAge), Fact::Verified], "verify"),
            (vec![backup(BackupRole::Picked), backup(BackupRole::Snapshot)], "restore"),
            (vec![Fact::Server { version: "17.2".into() }], "other"),
        ];
        for (facts, kind) in cases {
            assert_eq!(build(&record(None, "shell.run", facts.clone()))["kind"], kind, "{facts:?}");
        }
        // A step named like a drill establishes nothing by its name.
        assert_eq!(build(&record(None, "drill.workspace", vec![]))["kind"], "other");
    }

    /// Issue 37: the history line was made by reading the report's own JSON back and
    /// finding objectives by their shown names ("RTO", "Backup age"); it reads the typed
    /// summary now. Each objective lands in its own columns, and the first backup's facts
    /// in the backup columns.
    #[test]
    fn the_history_line_takes_objectives_and_the_backup_from_the_typed_summary() {
        let rto =
            Fact::Objective { objective: Objective::Rto, measured_s: json!(12.5), target_s: json!(60), phases: None };
        let age = Fact::Objective {
            objective: Objective::BackupAge,
            measured_s: json!(3600),
            target_s: json!(86400),
            phases: None,
        };
        let written = Fact::Backup {
            role: BackupRole::Written,
            path: json!("/srv/backups/app/20261121T083000.123Z.dump.pgdrill"),
            sha256: json!("ab".repeat(32)),
            size: json!(4096),
            created: Value::Null,
            age_s: Value::Null,
        };
        let run = record(None, "drill.rto", vec![rto, age, written]);
        let dir = tempfile::tempdir().expect("tmp");
        write_anchored(dir.path(), &run, None).expect("written");
        let text = std::fs::read_to_string(dir.path().join("history.jsonl")).expect("history");
        let line: Value = serde_json::from_str(text.trim()).expect("one line");
        assert_eq!((&line["rto_s"], &line["rto_target_s"]), (&json!(12.5), &json!(60)), "{line}");
        assert_eq!((&line["rpo_s"], &line["rpo_target_s"]), (&Value::Null, &Value::Null), "{line}");
        assert_eq!((&line["backup_age_s"], &line["backup_age_target_s"]), (&json!(3600), &json!(86400)), "{line}");
        assert_eq!(line["backup_sha256"], json!("ab".repeat(32)), "{line}");
        assert_eq!(line["backup_size_bytes"], json!(4096), "{line}");
        assert_eq!(line["backup"], json!("/srv/backups/app/20261121T083000.123Z.dump.pgdrill"), "{line}");
    }

    #[test]
    fn a_synthetic_history_is_summarised() {
        let history = [
            line("2026-08-01T00:00:00Z", "passed", 60.0, 5.0),
            line("2026-09-01T00:00:00Z", "failed", 90.0, 7.0),
            "not json".to_string(),
            line("2026-10-01T00:00:00Z", "passed", 120.0, 6.0),
            json!({"finished_at": "2026-10-02T00:00:00Z", "runbook": "quickstart", "outcome": "failed"}).to_string(),
        ]
        .join("\n");
        let now = OffsetDateTime::parse("2026-11-21T00:00:00Z", &time::format_description::well_known::Rfc3339)
            .expect("time");
        let month = std::time::Duration::from_secs(35 * 86400);
        let s = summarize(&history, 12, Some("disaster-recovery"), month, now);
        assert_eq!((s.runs, s.passed, s.skipped_lines), (3, 2, 1));
        assert!((s.pass_rate - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.rto, vec![60.0, 90.0, 120.0]);
        assert_eq!(s.days_since_success.map(|d| d.round()), Some(51.0));
        assert!(s.stale);
        let text = s.text(month);
        assert!(text.contains("passed 2 (67%)"), "{text}");
        assert!(text.contains("RTO: last 120.0 s, median 90.0 s, min 60.0 s, max 120.0 s, rising"), "{text}");
        assert!(text.contains("STALE"), "{text}");

        // The last two runs only, all runbooks, a longer threshold.
        let s = summarize(&history, 2, None, std::time::Duration::from_secs(60 * 86400), now);
        assert_eq!((s.runs, s.passed), (2, 1));
        assert!(!s.stale);
        // Nothing ever passed: stale, never.
        let s = summarize(&line("2026-11-20T00:00:00Z", "failed", 1.0, 1.0), 12, None, month, now);
        assert!(s.stale && s.days_since_success.is_none());
        assert!(s.text(month).contains("never"));
    }

    /// Issue 35: `pgdrill report` counted a run that passed having accepted content with no
    /// ground truth (`"content": "unproven"` in its history line) as passed, in the pass rate
    /// and as the last successful drill. It is counted apart now, for drills and for the
    /// other kinds, in the text and the JSON.
    #[test]
    fn an_accepted_unproven_run_was_counted_as_passed() {
        let with = |at: &str, kind: &str, content: Option<&str>| {
            let mut v = json!({"schema": HISTORY_SCHEMA, "finished_at": at, "runbook": kind, "kind": kind,
                               "outcome": "passed"});
            if let Some(c) = content {
                v["content"] = json!(c);
            }
            v.to_string()
        };
        let history = [
            with("2026-11-01T00:00:00Z", "drill", Some("proven")),
            with("2026-11-10T00:00:00Z", "drill", Some("unproven")),
            with("2026-11-11T00:00:00Z", "drill", None),
            with("2026-11-19T00:00:00Z", "drill", Some("unproven")),
            with("2026-11-20T00:00:00Z", "verify", Some("unproven")),
            with("2026-11-20T01:00:00Z", "verify", Some("proven")),
        ]
        .join("\n");
        let now = OffsetDateTime::parse("2026-11-21T00:00:00Z", &time::format_description::well_known::Rfc3339)
            .expect("time");
        let month = std::time::Duration::from_secs(35 * 86400);
        let s = summarize(&history, 12, None, month, now);
        assert_eq!((s.runs, s.passed, s.unproven), (4, 2, 2));
        assert!((s.pass_rate - 0.5).abs() < 1e-9, "{}", s.pass_rate);
        // The newest successful drill is the one of the 11th, not the unproven one of the 19th.
        assert_eq!(s.days_since_success.map(|d| d.round()), Some(10.0));
        assert_eq!(s.others.get("verify"), Some(&(2, 1, 1)));
        let text = s.text(month);
        assert!(text.contains("passed 2 (50%), passed with content unproven 2 (never counted as passed)"), "{text}");
        assert!(text.contains("verify 2 (passed 1, content unproven 1)"), "{text}");
        let j = s.json();
        assert_eq!((j["passed"].as_u64(), j["unproven"].as_u64()), (Some(2), Some(2)), "{j}");
        assert_eq!(j["others"]["verify"]["unproven"], 1, "{j}");
    }

    /// The period's compliance report read each signed record's outcome alone: a run that
    /// passed with a check of no ground truth read as a plain pass. Its content is told from
    /// the record's checks, as run.json tells it from the run's.
    #[test]
    fn a_signed_record_that_passed_unproven_says_so_in_the_period_report() {
        let check = |truth: &str, verdict: &str| json!({"ground_truth": truth, "verdict": verdict});
        let of = |checks: Vec<Value>| content_of_checks(&Value::Array(checks));
        assert_eq!(of(vec![check("none", "skipped"), check("manifest", "passed")]), "unproven");
        assert_eq!(of(vec![check("none", "skipped"), check("source", "failed")]), "failed");
        assert_eq!(of(vec![check("source at the target", "passed")]), "proven");
        assert_eq!(of(vec![check("none", "errored")]), Value::Null);
        assert_eq!(of(vec![json!({"ground_truth": null, "verdict": "passed"})]), Value::Null);
    }
}
