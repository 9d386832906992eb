//! Grandfather-father-son retention: keep the newest backup of each of the last N days,
//! ISO weeks, months and years; never the newest backup nor the newest verified one; at
//! least `min_keep`. Pure decisions here; deleting is the caller's choice (dry run first).
//!
//! Teams that label their backups by tier in the name (`erp_20261201_daily.sql.gz`,
//! `erp_20261130_weekly.sql.gz`, `..._monthly...`) keep each tier on its own terms: a backup
//! whose name carries a label is judged by that label's rule only (a `_weekly` file is one of
//! the weeks kept, never one of the days), and one without a label by every rule, as before.

use std::collections::HashSet;

use time::OffsetDateTime;

/// How many of each period to keep.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
    pub min_keep: usize,
    /// Keep everything younger than this ("keep 30 days"), besides the counts.
    pub within: Option<time::Duration>,
}

/// One backup as retention sees it.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub at: OffsetDateTime,
    pub verified: bool,
}

/// What happens to one backup, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub name: String,
    pub keep: bool,
    pub reason: String,
}

type PeriodKey = fn(&OffsetDateTime) -> (i32, u32);

fn day(t: &OffsetDateTime) -> (i32, u32) {
    (t.year(), u32::from(t.ordinal()))
}
fn week(t: &OffsetDateTime) -> (i32, u32) {
    let (y, w, _) = t.to_iso_week_date();
    (y, u32::from(w))
}
fn month(t: &OffsetDateTime) -> (i32, u32) {
    (t.year(), u32::from(u8::from(t.month())))
}
fn year(t: &OffsetDateTime) -> (i32, u32) {
    (t.year(), 0)
}

/// The period a backup's name labels it with: a word `daily`, `weekly`, `monthly` or `yearly`
/// (any case) between separators, as in `db_20261201_daily.sql.gz` or `db-weekly-1.dump`.
pub fn label_of(name: &str) -> Option<&'static str> {
    name.rsplit(|c: char| !c.is_ascii_alphanumeric()).find_map(|w| match w.to_ascii_lowercase().as_str() {
        "daily" => Some("daily"),
        "weekly" => Some("weekly"),
        "monthly" => Some("monthly"),
        "yearly" => Some("yearly"),
        _ => None,
    })
}

/// Decide for every item (any order in, newest first out), as of now.
pub fn decide(items: &[Item], policy: Policy) -> Vec<Decision> {
    decide_at(items, policy, OffsetDateTime::now_utc())
}

/// `decide` as of `now` (what `within` counts back from).
pub fn decide_at(items: &[Item], policy: Policy, now: OffsetDateTime) -> Vec<Decision> {
    let mut sorted: Vec<&Item> = items.iter().collect();
    sorted.sort_by(|a, b| b.at.cmp(&a.at).then(b.name.cmp(&a.name)));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];

    let rules: [(&str, usize, PeriodKey); 4] = [
        ("daily", policy.daily, day),
        ("weekly", policy.weekly, week),
        ("monthly", policy.monthly, month),
        ("yearly", policy.yearly, year),
    ];
    for (rule, n, key) in rules {
        let mut seen: HashSet<(i32, u32)> = HashSet::new();
        for (i, it) in sorted.iter().enumerate() {
            if seen.len() >= n {
                break;
            }
            // A backup labelled for another period is not one of this rule's.
            let label = label_of(&it.name);
            if label.is_some_and(|l| l != rule) {
                continue;
            }
            // The newest backup of a period not seen yet represents it.
            if seen.insert(key(&it.at)) {
                let by = if label.is_some() { " (labelled in its name)" } else { "" };
                reasons[i].push(format!("{rule} {}/{n}{by}", seen.len()));
            }
        }
    }
    if let Some(r) = reasons.first_mut() {
        r.push("newest backup".into());
    }
    if let Some(i) = sorted.iter().position(|it| it.verified) {
        reasons[i].push("newest verified backup".into());
    }
    for r in reasons.iter_mut().take(policy.min_keep) {
        r.push("min_keep".into());
    }
    let within = policy.within.map(|w| (w, humantime::format_duration(w.unsigned_abs()).to_string()));
    if let Some((w, text)) = &within {
        for (it, r) in sorted.iter().zip(reasons.iter_mut()) {
            if now - it.at < *w {
                r.push(format!("within {text}"));
            }
        }
    }
    let kept_rules = format!(
        "outside what the policy keeps (daily {}, weekly {}, monthly {}, yearly {}, min_keep {}{})",
        policy.daily,
        policy.weekly,
        policy.monthly,
        policy.yearly,
        policy.min_keep,
        within.map(|(_, t)| format!(", within {t}")).unwrap_or_default()
    );
    sorted
        .iter()
        .zip(reasons)
        .map(|(it, r)| Decision {
            name: it.name.clone(),
            keep: !r.is_empty(),
            reason: if r.is_empty() { kept_rules.clone() } else { format!("kept: {}", r.join(", ")) },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;
    use time::Duration;

    use super::*;

    fn calendar(start: OffsetDateTime, days: i64, per_day: i64) -> Vec<Item> {
        let mut v = Vec::new();
        for d in 0..days {
            for h in 0..per_day {
                let at = start + Duration::days(d) + Duration::hours(h * 6);
                v.push(Item { name: at.to_string(), at, verified: false });
            }
        }
        v
    }

    fn kept(ds: &[Decision]) -> Vec<&str> {
        ds.iter().filter(|d| d.keep).map(|d| d.name.as_str()).collect()
    }

    /// Regression: GFS ignored `_daily/_weekly/_monthly` in names, so a team's weekly and
    /// monthly files were counted as days and deleted once seven newer dailies existed.
    #[test]
    fn labels_in_names_put_each_backup_in_its_own_tier() {
        assert_eq!(label_of("automated_full_backup_20231215_120000_daily.sql.gz.enc"), Some("daily"));
        assert_eq!(label_of("erp-Weekly-2026-11-29.dump"), Some("weekly"));
        assert_eq!(label_of("monthlyreport_20261201.sql.gz"), None, "a word, not a part of one");
        assert_eq!(label_of("20261201T020000.000Z.dump.pgdrill"), None);
        let start = datetime!(2026-01-01 02:00 UTC);
        let mut items = Vec::new();
        // 60 days of dailies; a weekly every Sunday; a monthly on the 1st: as the team's job writes them.
        for d in 0..60 {
            let at = start + Duration::days(d);
            items.push(Item { name: format!("erp_{}_daily.sql.gz", at.date()), at, verified: false });
            if at.weekday() == time::Weekday::Sunday {
                items.push(Item { name: format!("erp_{}_weekly.sql.gz", at.date()), at, verified: false });
            }
            if at.day() == 1 {
                items.push(Item { name: format!("erp_{}_monthly.sql.gz", at.date()), at, verified: false });
            }
        }
        let policy = Policy { daily: 7, weekly: 4, monthly: 12, ..Default::default() };
        let ds = decide_at(&items, policy, start + Duration::days(60));
        let kept = kept(&ds);
        let count = |l: &str| kept.iter().filter(|n| label_of(n) == Some(l)).count();
        assert_eq!(count("daily"), 7, "{kept:?}");
        assert_eq!(count("weekly"), 4, "the newest weekly files, not days: {kept:?}");
        assert_eq!(count("monthly"), 3, "every monthly file (three months so far): {kept:?}");
        assert!(kept.contains(&"erp_2026-01-01_monthly.sql.gz"), "{kept:?}");
        assert!(!kept.contains(&"erp_2026-01-04_weekly.sql.gz"), "only four weeks: {kept:?}");
        let why = ds.iter().find(|d| d.name == "erp_2026-01-01_monthly.sql.gz").map(|d| d.reason.clone());
        assert_eq!(why.as_deref(), Some("kept: monthly 3/12 (labelled in its name)"));
    }

    #[test]
    fn the_classic_7_4_12_policy_on_a_year_of_daily_backups() {
        // 400 days of one backup a day at 02:00.
        let items = calendar(datetime!(2025-10-18 02:00 UTC), 400, 1);
        let p = Policy { daily: 7, weekly: 4, monthly: 12, yearly: 0, min_keep: 0, within: None };
        let ds = decide(&items, p);
        let k = kept(&ds);
        // 7 days; weeks and months overlap with them for the newest ones.
        assert!(k.len() >= 7 + 12 && k.len() <= 7 + 4 + 12, "{}", k.len());
        assert_eq!(ds[0].reason, "kept: daily 1/7, weekly 1/4, monthly 1/12, newest backup");
        // Every kept month is represented by its newest backup (the last day of that month).
        assert!(k.contains(&"2026-10-31 2:00:00.0 +00:00:00"), "{k:?}");
        let dropped = ds.iter().find(|d| d.name == "2026-10-30 2:00:00.0 +00:00:00").map(|d| d.reason.clone());
        assert_eq!(
            dropped.as_deref(),
            Some("outside what the policy keeps (daily 7, weekly 4, monthly 12, yearly 0, min_keep 0)")
        );
    }

    #[test]
    fn table_of_policies() {
        let items = calendar(datetime!(2026-01-01 00:00 UTC), 60, 4); // 240 backups, 4 a day
        let cases: &[(Policy, usize)] = &[
            (Policy { daily: 1, ..Default::default() }, 1),
            (Policy { daily: 3, ..Default::default() }, 3),
            (Policy { daily: 0, weekly: 2, ..Default::default() }, 2),
            (Policy { monthly: 5, ..Default::default() }, 3), // January, February and 1 March exist
            (Policy { yearly: 3, ..Default::default() }, 1),
            (Policy { min_keep: 10, ..Default::default() }, 10),
            (Policy::default(), 1), // the newest is never deleted
        ];
        for (p, want) in cases {
            assert_eq!(kept(&decide(&items, *p)).len(), *want, "{p:?}");
        }
    }

    #[test]
    fn the_newest_verified_backup_is_never_deleted() {
        let mut items = calendar(datetime!(2026-03-01 00:00 UTC), 30, 1);
        items[3].verified = true; // an old one
        let ds = decide(&items, Policy { daily: 2, ..Default::default() });
        let d = ds.iter().find(|d| d.name == items[3].name).cloned();
        assert_eq!(d.map(|d| (d.keep, d.reason)), Some((true, "kept: newest verified backup".to_string())));
        assert_eq!(kept(&ds).len(), 3);
    }

    #[test]
    fn keep_within_keeps_everything_younger_and_nothing_older() {
        let items = calendar(datetime!(2026-03-01 02:00 UTC), 40, 1); // 2026-03-01 .. 2026-04-09
        let now = datetime!(2026-04-10 00:00 UTC);
        let p = Policy { within: Some(Duration::days(30)), min_keep: 0, ..Default::default() };
        let ds = decide_at(&items, p, now);
        let k = kept(&ds);
        // Younger than 30 days: 2026-03-11 02:00 and later, 30 backups.
        assert_eq!(k.len(), 30, "{k:?}");
        assert!(ds.iter().all(|d| d.keep == (d.name.as_str() >= "2026-03-11")), "{ds:?}");
        let old = ds.iter().find(|d| !d.keep).map(|d| d.reason.clone()).unwrap_or_default();
        assert!(old.ends_with("min_keep 0, within 30days)"), "{old}");
    }
}
