//! What a backup file's name says: the database and the time it was made.
//!
//! pgdrill's own files are named by their UTC timestamp (`20261121T154500.123Z.dump.pgdrill`).
//! Other tools' files follow the classic runbooks' schemes: `auth_db_20240115_020000.sql.gz`,
//! `backup_20240315_143022.sql.gz`, `automated_full_backup_20231215_120000_daily.sql.gz.enc`,
//! `db_2024-01-15T02:00:00Z.dump.gpg`. The default rules read a stamp (`YYYYMMDD_HHMMSS`,
//! `YYYYMMDDTHHMMSS`, `YYYYMMDD_HHMM`, `YYYY-MM-DD[T_ ]HH:MM[:SS][Z]`, or a date alone) and
//! take what precedes it as the database, without words that name the job rather than the
//! database (`backup`, `daily`, `manual`...). A name that is only such words (`backup_...`,
//! `db_...`) names no database. A `NamePattern` replaces the rules when a team's names are
//! different. Stamps are read as UTC: `date +%Y%m%d_%H%M%S` on a UTC host.

use regex::Regex;
use std::sync::OnceLock;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// What a name says. Either part may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NameInfo {
    pub database: Option<String>,
    pub at: Option<OffsetDateTime>,
}

/// Extensions of files that may hold a dump, outermost layer last. Anything else in a
/// backup folder (logs, checksums, manifests, the ledger) is not listed.
const BACKUP_SUFFIXES: &[&str] = &[
    ".sql", ".sql.gz", ".sql.zst", ".dump", ".backup", ".pgdump", ".custom", ".gz", ".zst", ".enc", ".gpg", ".pgp",
    ".asc", ".tar",
];

/// Words that describe the job, not the database, at either end of a name's prefix.
const JOB_WORDS: &[&str] = &[
    "backup",
    "backups",
    "dump",
    "pgdump",
    "daily",
    "weekly",
    "monthly",
    "hourly",
    "yearly",
    "nightly",
    "manual",
    "full",
    "auto",
    "automated",
    "scheduled",
    "latest",
];

/// Prefixes that name no particular database.
const GENERIC: &[&str] = &["db", "database", "pg", "sql"];

/// Could this file (by its name) be a backup made by another tool?
pub fn looks_like_backup(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with('.') || lower.ends_with(".manifest.json") || lower.ends_with(".partial") {
        return false;
    }
    BACKUP_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Why a file named like a backup is not a dump of a database, when its name says so: the
/// tar of WAL files the CRM runbook writes beside each dump (`wal_20240315_143022.tar.gz`),
/// and pg_basebackup's `base.tar.gz` and `pg_wal.tar.gz`. Read as database names they made
/// a folder look as if it held another database's backups (issue 40), so nameless dumps
/// beside them were no longer taken as the asked database's.
pub fn not_a_dump(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let stem = strip_suffixes(&lower);
    let first = stem.split(['_', '-', '.']).next().unwrap_or_default();
    if matches!(stem, "base" | "pg_wal" | "pg_xlog") {
        return Some("a base backup's tar (pg_basebackup), not a dump of one database");
    }
    if matches!(first, "wal" | "xlog" | "walarchive") || stem.starts_with("pg_wal") || stem.starts_with("wal_archive") {
        return Some("an archive of WAL files (its name starts with `wal`), not a dump");
    }
    None
}

fn stamp_re() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(
            r"(?x)
            (?:^|[^0-9])
            (?P<y>(?:19|20)\d{2})(?P<s1>-?)(?P<m>\d{2})(?P<s2>-?)(?P<d>\d{2})
            (?:
              [T_\ -]?
              (?P<H>\d{2})[:-]?(?P<M>\d{2})(?:[:-]?(?P<S>\d{2}))?(?:\.\d{1,9})?
            )?
            Z?
            (?:[^0-9]|$)",
        )
        .expect("stamp regex")
    })
}

fn num(c: &regex::Captures<'_>, k: &str) -> Option<u32> {
    c.name(k).map(|m| m.as_str().parse().unwrap_or(u32::MAX))
}

fn datetime(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<OffsetDateTime> {
    let month = Month::try_from(u8::try_from(mo).ok()?).ok()?;
    let date = Date::from_calendar_date(i32::try_from(y).ok()?, month, u8::try_from(d).ok()?).ok()?;
    let t = Time::from_hms(u8::try_from(h).ok()?, u8::try_from(mi).ok()?, u8::try_from(s).ok()?).ok()?;
    Some(PrimitiveDateTime::new(date, t).assume_utc())
}

/// pgdrill's own name: `YYYYMMDDTHHMMSS.mmmZ...`.
pub fn pgdrill_stamp(name: &str) -> Option<OffsetDateTime> {
    let b = name.as_bytes();
    if b.len() < 20 || b[8] != b'T' || b[15] != b'.' || b[19] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| name.get(r)?.parse::<u32>().ok();
    let t = datetime(n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?)?;
    Some(t + time::Duration::milliseconds(i64::from(n(16..19)?)))
}

/// The default rules (see the module docs).
pub fn parse(name: &str) -> NameInfo {
    let re = stamp_re();
    let mut at = None;
    let mut prefix_end = None;
    let mut from = 0;
    // The first stamp that is a real date and time wins; `db_9999...` is not one.
    while let Some(c) = re.captures_at(name, from) {
        let y = c.name("y").map(|m| m.start()).unwrap_or(0);
        // Separators must agree: 2024-0115 is not a date.
        let dashed = c.name("s1").is_some_and(|m| !m.as_str().is_empty());
        let dashed2 = c.name("s2").is_some_and(|m| !m.as_str().is_empty());
        if dashed == dashed2 {
            let t = datetime(
                num(&c, "y").unwrap_or(0),
                num(&c, "m").unwrap_or(0),
                num(&c, "d").unwrap_or(0),
                num(&c, "H").unwrap_or(0),
                num(&c, "M").unwrap_or(0),
                num(&c, "S").unwrap_or(0),
            );
            if t.is_some() {
                at = t;
                prefix_end = Some(y);
                break;
            }
        }
        from = y + 1;
        if from >= name.len() {
            break;
        }
    }
    let prefix = match prefix_end {
        Some(end) => &name[..end],
        None => strip_suffixes(name),
    };
    NameInfo { database: database_from_prefix(prefix), at }
}

/// `auth_db.sql.gz` -> `auth_db`.
fn strip_suffixes(name: &str) -> &str {
    let mut s = name;
    loop {
        let lower = s.to_ascii_lowercase();
        match BACKUP_SUFFIXES.iter().find(|suf| lower.ends_with(*suf) && lower.len() > suf.len()) {
            Some(suf) => s = &s[..s.len() - suf.len()],
            None => return s,
        }
    }
}

fn database_from_prefix(prefix: &str) -> Option<String> {
    let trimmed = prefix.trim_end_matches(['_', '-', '.', ' ']);
    // Tokens split on `_` and `-`; job words are dropped from the end only, so a database
    // called `daily_sales` keeps its name.
    let start = 0;
    let mut end = trimmed.len();
    let is_job = |t: &str| JOB_WORDS.contains(&t.to_ascii_lowercase().as_str());
    loop {
        let s = &trimmed[start..end];
        match s.rfind(['_', '-']) {
            Some(i) if is_job(&s[i + 1..]) => end = start + i,
            None if is_job(s) => end = start,
            _ => break,
        }
    }
    let db = &trimmed[start..end];
    (!db.is_empty() && !GENERIC.contains(&db.to_ascii_lowercase().as_str())).then(|| db.to_string())
}

/// A user's naming scheme: literal text with `{db}`, `{YYYY}`, `{MM}`, `{DD}`, `{hh}`, `{mm}`,
/// `{ss}` and `*` (any text), matched against the whole file name, for example
/// `{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz`. Files that do not match are not backups.
#[derive(Debug, Clone)]
pub struct NamePattern {
    source: String,
    re: Regex,
}

impl NamePattern {
    pub fn parse(pattern: &str) -> Result<NamePattern, String> {
        let mut re = String::from("^");
        let mut rest = pattern;
        let mut seen = Vec::new();
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('*') {
                re.push_str(".*?");
                rest = r;
            } else if let Some(r) = rest.strip_prefix('{') {
                let close = r.find('}').ok_or_else(|| format!("name_pattern `{pattern}`: `{{` without `}}`"))?;
                let field = &r[..close];
                let group = match field {
                    "db" => r"(?P<db>.+?)",
                    "YYYY" => r"(?P<y>\d{4})",
                    "MM" => r"(?P<m>\d{2})",
                    "DD" => r"(?P<d>\d{2})",
                    "hh" => r"(?P<H>\d{2})",
                    "mm" => r"(?P<M>\d{2})",
                    "ss" => r"(?P<S>\d{2})",
                    other => {
                        return Err(format!(
                            "name_pattern `{pattern}`: unknown field `{{{other}}}`; known: {{db}} {{YYYY}} {{MM}} {{DD}} {{hh}} {{mm}} {{ss}} and *"
                        ))
                    }
                };
                if seen.contains(&field) {
                    return Err(format!("name_pattern `{pattern}`: `{{{field}}}` appears twice"));
                }
                seen.push(field);
                re.push_str(group);
                rest = &r[close + 1..];
            } else {
                let next = rest.find(['*', '{']).unwrap_or(rest.len());
                re.push_str(&regex::escape(&rest[..next]));
                rest = &rest[next..];
            }
        }
        re.push('$');
        let has_date = seen.contains(&"YYYY") && seen.contains(&"MM") && seen.contains(&"DD");
        if !has_date && seen.iter().any(|f| *f != "db") {
            return Err(format!("name_pattern `{pattern}`: a time needs at least {{YYYY}}, {{MM}} and {{DD}}"));
        }
        let re = Regex::new(&re).map_err(|e| format!("name_pattern `{pattern}`: {e}"))?;
        Ok(NamePattern { source: pattern.to_string(), re })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// What the name says, or None when it does not match the pattern.
    pub fn matches(&self, name: &str) -> Option<NameInfo> {
        let c = self.re.captures(name)?;
        let at = match (num(&c, "y"), num(&c, "m"), num(&c, "d")) {
            (Some(y), Some(m), Some(d)) => {
                datetime(y, m, d, num(&c, "H").unwrap_or(0), num(&c, "M").unwrap_or(0), num(&c, "S").unwrap_or(0))
            }
            _ => None,
        };
        Some(NameInfo { database: c.name("db").map(|m| m.as_str().to_string()), at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Option<OffsetDateTime> {
        Some(
            PrimitiveDateTime::parse(s, &time::format_description::well_known::Iso8601::DEFAULT)
                .expect("test time")
                .assume_utc(),
        )
    }

    #[test]
    fn classic_runbook_names() {
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("auth_db_20240115_020000.sql.gz", Some("auth_db"), "2024-01-15T02:00:00"),
            ("payment_db_20240115_020000.sql.gz", Some("payment_db"), "2024-01-15T02:00:00"),
            ("auth_db_manual_20240116_093000.sql.gz", Some("auth_db"), "2024-01-16T09:30:00"),
            ("backup_20240315_143022.sql.gz", None, "2024-03-15T14:30:22"),
            ("automated_full_backup_20231215_120000_daily.sql.gz.enc", None, "2023-12-15T12:00:00"),
            ("db_20240101_000000.sql.gz.gpg", None, "2024-01-01T00:00:00"),
            ("crm-2024-03-15T14:30:22Z.dump", Some("crm"), "2024-03-15T14:30:22"),
            ("crm_2024-03-15_1430.sql", Some("crm"), "2024-03-15T14:30:00"),
            ("daily_sales_20240102.dump", Some("daily_sales"), "2024-01-02T00:00:00"),
            ("app_v2_20240102T030405.sql.zst", Some("app_v2"), "2024-01-02T03:04:05"),
        ];
        for (name, db, when) in cases {
            let info = parse(name);
            assert_eq!(info.database.as_deref(), *db, "{name}");
            assert_eq!(info.at, at(when), "{name}");
        }
    }

    #[test]
    fn names_without_a_real_time_have_none() {
        assert_eq!(parse("auth_db_LATEST.sql.gz"), NameInfo { database: Some("auth_db".into()), at: None });
        assert_eq!(parse("app_20241399_000000.sql").at, None, "month 13");
        assert_eq!(parse("app_2024-0115.sql").at, None, "mixed separators");
        assert_eq!(parse("backup.sql.gz").database, None);
    }

    /// The name a dump or a base backup is written under reads back as the time it was
    /// given, to the millisecond (written by `backup::stamp`, one copy for both kinds).
    #[test]
    fn a_written_stamp_reads_back_to_the_millisecond() {
        let t = time::macros::datetime!(2026-11-21 15:45:00.123456 UTC);
        let name = format!("{}.dump.pgdrill", crate::backup::stamp(t));
        assert_eq!(name, "20261121T154500.123Z.dump.pgdrill");
        assert_eq!(pgdrill_stamp(&name), at("2026-11-21T15:45:00.123"));
        let early = time::macros::datetime!(0999-01-02 03:04:05 UTC);
        assert_eq!(crate::backup::stamp(early), "09990102T030405.000Z");
    }

    #[test]
    fn pgdrill_names() {
        assert_eq!(pgdrill_stamp("20261121T154500.123Z.dump.pgdrill"), at("2026-11-21T15:45:00.123"));
        assert_eq!(pgdrill_stamp("backup.dump.pgdrill"), None);
    }

    #[test]
    fn only_dump_like_files_are_backups() {
        for n in ["a.sql.gz", "b.dump", "c.sql.gz.enc", "d.gpg", "e.SQL"] {
            assert!(looks_like_backup(n), "{n}");
        }
        for n in ["ledger.jsonl", "x.dump.pgdrill.manifest.json", "backup.log", ".hidden.sql", "x.sha256"] {
            assert!(!looks_like_backup(n), "{n}");
        }
    }

    /// Issue 40: `wal_20261204.tar.gz` beside `backup_*.sql.gz` read as a backup of
    /// database `wal`, and hid the nameless dumps.
    #[test]
    fn wal_tars_and_base_backup_tars_are_not_dumps() {
        for n in ["wal_20261204.tar.gz", "wal_20240315_143022.tar.gz", "WAL-2024.tgz", "base.tar.gz", "pg_wal.tar"] {
            assert!(not_a_dump(n).is_some(), "{n}");
        }
        for n in
            ["backup_20240315_143022.sql.gz", "walrus_20240101.sql", "auth_db_20240115_020000.sql.gz", "db_base.dump"]
        {
            assert_eq!(not_a_dump(n), None, "{n}");
        }
    }

    #[test]
    fn user_patterns() {
        let p = NamePattern::parse("pg-{db}.{DD}{MM}{YYYY}-{hh}{mm}.sql.gz").expect("pattern");
        let i = p.matches("pg-billing.15012024-0230.sql.gz").expect("matches");
        assert_eq!(i.database.as_deref(), Some("billing"));
        assert_eq!(i.at, at("2024-01-15T02:30:00"));
        assert!(p.matches("billing_20240115.sql.gz").is_none());
        let star = NamePattern::parse("{db}_*_{YYYY}{MM}{DD}.sql.gz").expect("pattern");
        assert_eq!(star.matches("auth_manual_20240115.sql.gz").and_then(|i| i.database).as_deref(), Some("auth"));
        assert!(NamePattern::parse("{db}_{YYYYY}.sql").expect_err("refused").contains("unknown field `{YYYYY}`"));
        assert!(NamePattern::parse("{db}_{hh}.sql").expect_err("refused").contains("needs at least"));
        assert!(NamePattern::parse("{db}_{db}.sql").expect_err("refused").contains("twice"));
    }
}
