//! The control mapping (`engine/controls.yaml`, embedded): which signed statements answer
//! which control of which framework, at what cadence; and the verdict of each control over
//! a reporting period, from the verified records of an evidence log.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::pack::Period;
use super::verify::Good;

/// The mapping, as shipped.
pub const MAPPING: &str = include_str!("../../controls.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    pub frameworks: Vec<Framework>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
    pub controls: Vec<Control>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    /// The document and clause the text was reviewed against.
    pub source: String,
    pub text: String,
    pub why: String,
    pub requires: Vec<Requirement>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    pub kind: String,
    /// The cadence, as written (`35d`).
    pub every: String,
    #[serde(default)]
    pub content_proven: bool,
    #[serde(default)]
    pub segregated: bool,
    #[serde(default)]
    pub objectives: Vec<String>,
    #[serde(default)]
    pub per_database: bool,
    #[serde(default)]
    pub if_any: bool,
}

/// The shipped mapping, parsed; an error names the file and what is wrong (a test holds
/// the shipped one to it, so a broken edit never ships).
pub fn mapping() -> Result<Mapping, String> {
    let m: Mapping = serde_yaml::from_str(MAPPING).map_err(|e| format!("engine/controls.yaml: {e}"))?;
    for f in &m.frameworks {
        for c in &f.controls {
            for r in &c.requires {
                crate::util::parse_duration(&r.every)
                    .map_err(|e| format!("engine/controls.yaml: {} {}: every `{}`: {e}", f.id, c.id, r.every))?;
                if !["backup", "verify", "restore", "drill"].contains(&r.kind.as_str()) {
                    return Err(format!("engine/controls.yaml: {} {}: unknown kind `{}`", f.id, c.id, r.kind));
                }
            }
        }
    }
    Ok(m)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Met,
    NotMet,
    NotApplicable,
}

/// One requirement judged for one database (or the whole log).
#[derive(Debug, Clone, Serialize)]
pub struct Judged {
    pub requirement: String,
    pub database: Option<String>,
    pub verdict: Verdict,
    /// The cadence asked, in seconds, and the longest stretch observed without a qualifying
    /// run (seconds; over the period).
    pub every_s: u64,
    pub longest_gap_s: u64,
    /// Qualifying runs in the period (and the last one before it), by sequence.
    pub supporting: Vec<u64>,
    pub missing: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ControlVerdict {
    pub framework: String,
    pub framework_name: String,
    pub control: String,
    pub source: String,
    pub text: String,
    pub why: String,
    pub verdict: Verdict,
    pub judged: Vec<Judged>,
}

fn at(g: &Good) -> Option<OffsetDateTime> {
    let s = g.statement.predicate["finished_at"].as_str()?;
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// Whether a record is a qualifying run for `r` (of `database`, when asked per database).
fn qualifies(g: &Good, r: &Requirement, database: Option<&str>) -> bool {
    let p = &g.statement.predicate;
    if p["kind"] != r.kind.as_str() || p["outcome"] != "passed" {
        return false;
    }
    if database.is_some_and(|d| p["database"] != d) {
        return false;
    }
    let checks = p["checks"].as_array().map(Vec::as_slice).unwrap_or_default();
    if r.content_proven
        && !checks.iter().any(|c| {
            c["verdict"] == "passed"
                && ["manifest", "source", "expectations", "earlier"].iter().any(|t| c["ground_truth"] == *t)
        })
    {
        return false;
    }
    if r.segregated && p["target"]["segregated_from_source"] != true {
        return false;
    }
    let objectives = p["objectives"].as_array().map(Vec::as_slice).unwrap_or_default();
    r.objectives.iter().all(|name| {
        objectives.iter().any(|o| o["name"] == name.as_str() && o["verdict"] == "passed" && !o["target_s"].is_null())
    })
}

fn describe(r: &Requirement) -> String {
    let mut what = match r.kind.as_str() {
        "verify" => "restore test (verify)".to_string(),
        "drill" => "recovery drill".to_string(),
        "restore" => "operator restore".to_string(),
        k => k.to_string(),
    };
    let mut with = Vec::new();
    if r.content_proven {
        with.push("content proven against a ground truth".to_string());
    }
    if r.segregated {
        with.push("into a segregated throwaway server".to_string());
    }
    if !r.objectives.is_empty() {
        with.push(format!("{} met", r.objectives.join(" and ")));
    }
    if !with.is_empty() {
        what = format!("{what} ({})", with.join(", "));
    }
    format!("passed {what}")
}

fn days(s: u64) -> String {
    format!("{:.1} days", s as f64 / 86400.0)
}

/// Judge `r` over `period` from the verified records `log` (all of them: a run before the
/// period starts the first stretch).
fn judge(r: &Requirement, database: Option<&str>, log: &[Good], period: &Period) -> Judged {
    let every = crate::util::parse_duration(&r.every).unwrap_or(Duration::MAX);
    let runs: Vec<(u64, OffsetDateTime)> = log
        .iter()
        .filter(|g| qualifies(g, r, database))
        .filter_map(|g| at(g).map(|t| (g.sequence, t)))
        .filter(|(_, t)| *t < period.to)
        .collect();
    let before = runs.iter().filter(|(_, t)| *t < period.from).max_by_key(|(_, t)| *t).copied();
    let within: Vec<(u64, OffsetDateTime)> = runs.iter().filter(|(_, t)| period.contains_time(*t)).copied().collect();
    let any_of_kind = log.iter().any(|g| {
        g.statement.predicate["kind"] == r.kind.as_str()
            && database.is_none_or(|d| g.statement.predicate["database"] == d)
            && at(g).is_some_and(|t| period.contains_time(t))
    });
    let mut supporting: Vec<u64> = before.iter().chain(within.iter()).map(|(n, _)| *n).collect();
    supporting.sort_unstable();
    // The stretches without a qualifying run, over the period.
    let mut start = before.map(|(_, t)| t).unwrap_or(period.from);
    let mut longest = (Duration::ZERO, start, start);
    let mut times: Vec<OffsetDateTime> = within.iter().map(|(_, t)| *t).collect();
    times.sort();
    for t in times.into_iter().chain(std::iter::once(period.to)) {
        let gap = Duration::try_from(t - start).unwrap_or(Duration::ZERO);
        if gap > longest.0 {
            longest = (gap, start, t);
        }
        start = t;
    }
    let what = describe(r);
    let of = database.map(|d| format!(" of `{}`", crate::util::one_line(d))).unwrap_or_default();
    let rfc = |t: OffsetDateTime| crate::util::rfc3339(t);
    let (verdict, missing) = if r.if_any && !any_of_kind {
        (Verdict::NotApplicable, Some(format!("no {} run{of} in the period", r.kind)))
    } else if before.is_none() && within.is_empty() {
        // No such run at all: a period shorter than the cadence is no excuse.
        (Verdict::NotMet, Some(format!("no {what}{of} in the period or before it")))
    } else if longest.0 <= every {
        (Verdict::Met, None)
    } else {
        (
            Verdict::NotMet,
            Some(format!(
                "no {what}{of} from {} to {} ({}; the policy asks every {})",
                rfc(longest.1),
                rfc(longest.2),
                days(longest.0.as_secs()),
                r.every
            )),
        )
    };
    Judged {
        requirement: format!("a {what}, every {}", r.every),
        database: database.map(String::from),
        verdict,
        every_s: every.as_secs(),
        longest_gap_s: longest.0.as_secs(),
        supporting,
        missing,
    }
}

/// Every control's verdict over `period`, from `log` (the verified records of one log).
pub fn evaluate(mapping: &Mapping, log: &[Good], period: &Period) -> Vec<ControlVerdict> {
    // The databases the log names (a run of none, such as a drill on throwaway servers,
    // names none).
    let databases: BTreeSet<String> = log
        .iter()
        .filter_map(|g| g.statement.predicate["database"].as_str())
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    let mut out = Vec::new();
    for f in &mapping.frameworks {
        for c in &f.controls {
            let mut judged = Vec::new();
            for r in &c.requires {
                if r.per_database && !databases.is_empty() {
                    for d in &databases {
                        judged.push(judge(r, Some(d), log, period));
                    }
                } else {
                    judged.push(judge(r, None, log, period));
                }
            }
            let verdict = if judged.iter().any(|j| j.verdict == Verdict::NotMet) {
                Verdict::NotMet
            } else if judged.iter().all(|j| j.verdict == Verdict::NotApplicable) {
                Verdict::NotApplicable
            } else {
                Verdict::Met
            };
            out.push(ControlVerdict {
                framework: f.id.clone(),
                framework_name: f.name.clone(),
                control: c.id.clone(),
                source: c.source.clone(),
                text: c.text.clone(),
                why: c.why.clone(),
                verdict,
                judged,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::statement::{Statement, Subject};
    use serde_json::json;

    #[test]
    fn the_shipped_mapping_reads_and_names_every_framework_asked_for() {
        let m = mapping().expect("engine/controls.yaml");
        let ids: Vec<(String, String)> =
            m.frameworks.iter().flat_map(|f| f.controls.iter().map(|c| (f.id.clone(), c.id.clone()))).collect();
        for (f, c) in [
            ("soc2", "A1.2"),
            ("soc2", "A1.3"),
            ("soc2", "CC7.5"),
            ("iso27001", "A.8.13"),
            ("dora", "Art. 12"),
            ("nis2", "Art. 21(2)(c)"),
            ("hipaa", "164.308(a)(7)(ii)(D)"),
            ("nist-800-53", "CP-4"),
            ("nist-800-53", "CP-9"),
        ] {
            assert!(ids.contains(&(f.into(), c.into())), "{f} {c} is not mapped");
        }
    }

    /// Regression (issue 42 item 5): no control said which document and clause its text was
    /// checked against, and three summaries claimed more than their controls (PCI DSS
    /// 12.10.2's test covers every element of 12.10.1, not only recovery and backup; DORA
    /// Art. 12's integrity checks of 12(7) and RTO/RPO of 12(6) were unplaced; CP-4's review
    /// and corrective actions were left out). Each control now names its source, and where a
    /// run can answer only part of a control, its `why` says what is outside.
    #[test]
    fn each_control_names_its_source_clause_and_the_part_a_run_cannot_show() {
        let m = mapping().expect("mapping");
        for f in &m.frameworks {
            for c in &f.controls {
                assert!(!c.source.trim().is_empty(), "{} {}: no source", f.id, c.id);
                // The clause itself is named in the source (`A1.3`, `12.10.2`, `Article 12`).
                let clause = c.id.trim_start_matches("Art. ").trim_start_matches("A.");
                assert!(
                    c.source.contains(clause),
                    "{} {}: the source does not name the clause: {}",
                    f.id,
                    c.id,
                    c.source
                );
            }
        }
        let control = |f: &str, id: &str| {
            m.frameworks
                .iter()
                .find(|x| x.id == f)
                .and_then(|x| x.controls.iter().find(|c| c.id == id))
                .expect("mapped")
        };
        let pci = control("pci-dss", "12.10.2");
        assert!(pci.text.contains("every element Requirement 12.10.1 lists"), "{}", pci.text);
        assert!(pci.why.contains("outside"), "{}", pci.why);
        let dora = control("dora", "Art. 12");
        for part in ["12(2)", "12(3)", "12(6)", "12(7)"] {
            assert!(dora.text.contains(part), "DORA Art. 12 text lacks {part}: {}", dora.text);
        }
        assert!(control("nist-800-53", "CP-4").why.contains("corrective actions"));
        assert!(control("hipaa", "164.308(a)(7)(ii)(D)").why.contains("revising the plan is outside"));
    }

    fn run(seq: u64, kind: &str, db: &str, day: u8, proven: bool) -> Good {
        let checks = if proven { json!([{"verdict": "passed", "ground_truth": "manifest"}]) } else { json!([]) };
        let objectives = if kind == "drill" {
            json!([{"name": "RTO", "verdict": "passed", "target_s": 600}, {"name": "RPO", "verdict": "passed", "target_s": 86400}])
        } else {
            json!([])
        };
        let statement = Statement::run(
            vec![Subject::sha256("x", "00")],
            json!({
                "kind": kind, "outcome": "passed", "database": db,
                "finished_at": format!("2026-11-{day:02}T12:00:00Z"),
                "checks": checks, "objectives": objectives,
                "target": {"segregated_from_source": true},
            }),
        );
        Good { sequence: seq, sha256: String::new(), bytes: Vec::new(), statement, timestamp: None }
    }

    /// A month of runs: daily backups, weekly verifies, a drill. Every control is met; each
    /// flips to not met when its evidence is taken out of the period, naming what is missing.
    #[test]
    fn each_control_s_verdict_flips_when_its_evidence_is_removed() {
        let m = mapping().expect("mapping");
        let period = Period::parse("2026-11-01", "2026-11-30").expect("period");
        let mut log = Vec::new();
        let mut n = 0;
        for day in 1..=30u8 {
            n += 1;
            log.push(run(n, "backup", "payments_db", day, false));
            if day % 7 == 1 {
                n += 1;
                log.push(run(n, "verify", "payments_db", day, true));
            }
        }
        n += 1;
        log.push(run(n, "drill", "", 15, false));
        let all = evaluate(&m, &log, &period);
        for c in &all {
            assert_eq!(c.verdict, Verdict::Met, "{} {}: {:?}", c.framework, c.control, c.judged);
        }
        // CC7.5's operator restores: none in the period, not applicable (the control is met
        // by its drill).
        let cc75 = all.iter().find(|c| c.control == "CC7.5").expect("CC7.5");
        assert!(cc75.judged.iter().any(|j| j.verdict == Verdict::NotApplicable));

        for kind in ["backup", "verify", "drill"] {
            let without: Vec<Good> = log.iter().filter(|g| g.statement.predicate["kind"] != kind).cloned().collect();
            let judged = evaluate(&m, &without, &period);
            for (before, after) in all.iter().zip(&judged) {
                let uses = m
                    .frameworks
                    .iter()
                    .find(|f| f.id == before.framework)
                    .and_then(|f| f.controls.iter().find(|c| c.id == before.control))
                    .is_some_and(|c| c.requires.iter().any(|r| r.kind == kind && !r.if_any));
                if uses {
                    assert_eq!(after.verdict, Verdict::NotMet, "{} {} without {kind}", after.framework, after.control);
                    let missing: Vec<&str> = after.judged.iter().filter_map(|j| j.missing.as_deref()).collect();
                    assert!(!missing.is_empty(), "{} {}: nothing named missing", after.framework, after.control);
                    if kind == "verify" {
                        assert!(
                            missing.iter().any(|m| m.contains("restore test (verify)") && m.contains("`payments_db`")),
                            "{missing:?}"
                        );
                    }
                } else {
                    assert_eq!(
                        after.verdict, before.verdict,
                        "{} {} changed without {kind}",
                        after.framework, after.control
                    );
                }
            }
        }
        // A month-long gap in the verifies: named with its dates.
        let sparse: Vec<Good> =
            log.iter().filter(|g| g.statement.predicate["kind"] != "verify" || g.sequence < 3).cloned().collect();
        let a813 = evaluate(&m, &sparse, &Period::parse("2026-11-01", "2026-12-31").expect("period"))
            .into_iter()
            .find(|c| c.control == "A.8.13")
            .expect("A.8.13");
        assert_eq!(a813.verdict, Verdict::NotMet);
        let text = a813.judged.iter().filter_map(|j| j.missing.clone()).collect::<Vec<_>>().join("; ");
        assert!(
            text.contains("no passed restore test (verify) (content proven against a ground truth) of `payments_db` from 2026-11-01T12:00:00Z to 2027-01-01T00:00:00Z (60.5 days; the policy asks every 35d)"),
            "{text}"
        );
    }
}
