//! The one answer to "which backup": what `backup:` says (`latest`, `random`, a time, a
//! `label:`, an exact file name, a path under the storage, or a `LATEST`-style symlink's
//! name) turned into one of the backups a survey of the storage found (`layout::Survey`), the
//! same for `backup.pick` (verify, restore), `backup.latest` (offsite) and, through the same
//! survey, `retention.prune` and `backups list`. When nothing fits, `explain` names the
//! nearest candidates and why each was not taken, so "no backup of `crm`" is never the
//! whole message.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::layout::{Entry, Survey};
use super::names;
use crate::storage::tree::{self, Tree};
use crate::util::rfc3339;

/// What a user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The newest.
    Latest,
    /// One at random within a window (`backup.pick` draws it).
    Random,
    /// The newest made at or before `until` (a date alone: by the end of that day).
    At { until: OffsetDateTime, written: String },
    /// The newest whose name holds the word (`label:daily`, `label:manual`).
    Label(String),
    /// A file name, a path under the storage, a symlink's name, or the start of a name.
    Named(String),
}

impl Asked {
    pub fn parse(s: &str) -> Asked {
        let t = s.trim();
        match t {
            "latest" => return Asked::Latest,
            "random" => return Asked::Random,
            _ => {}
        }
        if let Some(l) = t.strip_prefix("label:").map(str::trim).filter(|l| !l.is_empty()) {
            return Asked::Label(l.to_string());
        }
        if let Some(until) = time_asked(t) {
            return Asked::At { until, written: t.to_string() };
        }
        Asked::Named(s.to_string())
    }
}

/// `2024-01-15`, `20240115`, `2024-01-15T02:00`, `2024-01-15 02:00:00Z`, `20240115_020000`: a
/// time written the ways backup names write it, and nothing else (a file name has letters).
/// A date alone means the end of that day.
fn time_asked(s: &str) -> Option<OffsetDateTime> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b"-:_ TZ.".contains(&b)) {
        return None;
    }
    let info = names::parse(s);
    let at = info.at?;
    let digits = s.bytes().filter(u8::is_ascii_digit).count();
    Some(if digits <= 8 { at + time::Duration::days(1) - time::Duration::seconds(1) } else { at })
}

/// The newest of `entries` (newest first) that `asked` selects, for `At` and `Label`.
pub fn choose<'a>(entries: &'a [Entry], asked: &Asked) -> Option<&'a Entry> {
    match asked {
        Asked::At { until, .. } => entries.iter().find(|e| e.made <= *until),
        Asked::Label(l) => entries.iter().find(|e| has_word(&e.name, l)),
        Asked::Latest | Asked::Random => entries.first(),
        Asked::Named(_) => None,
    }
}

/// The backup a deployment record names for `label:LABEL`, when one does, with the line
/// the log shows: `label:` means first what the teams' pre-deployment backups mean by it.
/// pgdrill's predeploy runbook records `<storage>/deployments/<database>/<label>.json`
/// (`label`, `backup`); the multi-tenant runbook's own deployment manifests are
/// `{env}/backup_<stamp>.meta` beside its `database/` folder (`"backup": "backup_<stamp>"`,
/// `"database_backup": PATH`), in the storage folder or the one above it. The recorded
/// backup is the listed one at that path, else the one listed under that file name (the
/// record may have been written on another machine or mount). `Err` when a record names a
/// backup that is not there: never another backup in its place.
pub fn deployed<'a>(
    survey: &Survey,
    entries: &'a [Entry],
    database: Option<&str>,
    label: &str,
) -> Result<Option<(&'a Entry, String)>, String> {
    let Some((record, backup)) = deployment_records(&survey.tree, &survey.root, database, label).into_iter().next()
    else {
        return Ok(None);
    };
    let canonical = |p: &Path| std::fs::canonicalize(p).ok();
    let at_path = entries.iter().find(|e| {
        survey.tree.display(&e.path) == backup
            || e.path == Path::new(&backup)
            || canonical(&e.path).is_some_and(|c| Some(c) == canonical(Path::new(&backup)))
    });
    let file_name = Path::new(&backup).file_name().map(|n| n.to_string_lossy().into_owned());
    let by_name: Vec<&Entry> = entries.iter().filter(|e| Some(&e.name) == file_name.as_ref()).collect();
    let chosen = at_path.or(match by_name.as_slice() {
        [one] => Some(*one),
        _ => None,
    });
    let shown = survey.tree.display(&record);
    match chosen {
        Some(e) => Ok(Some((e, format!("`label:{label}`: the backup the deployment record {shown} names ({backup})")))),
        None => Err(format!(
            "`label:{label}`: the deployment record {shown} names {backup}, which is not among the backups{} here: it was pruned or moved; put it back, or pick another backup",
            database.map(|d| format!(" of `{d}`")).unwrap_or_default()
        )),
    }
}

/// The deployment records for `label` under `root` (see `deployed`): each record's file and
/// the backup it names, pgdrill's first.
fn deployment_records(tree: &Tree, root: &Path, database: Option<&str>, label: &str) -> Vec<(PathBuf, String)> {
    // Small JSON files only: a record is a few lines.
    let read = |p: &Path| -> Option<serde_json::Value> {
        // An object store's record is read now (listed without its bytes).
        let _ = tree.materialize(p);
        std::fs::metadata(p).ok().filter(|m| m.is_file() && m.len() < 1 << 20)?;
        serde_json::from_slice(&std::fs::read(p).ok()?).ok()
    };
    let files = |dir: &Path, exts: &[&str]| -> Vec<PathBuf> {
        // Through `tree`: an object store's listed records have no file until one is read.
        let mut v: Vec<PathBuf> = tree
            .read_dir(dir)
            .into_iter()
            .flatten()
            .map(|e| e.path)
            .filter(|p| p.extension().and_then(|x| x.to_str()).is_some_and(|x| exts.contains(&x)))
            .collect();
        v.sort();
        v
    };
    let mut out = Vec::new();
    let deployments = root.join("deployments");
    let dirs: Vec<PathBuf> = match database {
        // The runbook joins the database's name as it is: a name is a path component there.
        Some(d) if !d.is_empty() && !d.contains('/') && d != "." && d != ".." => vec![deployments.join(d)],
        Some(_) => Vec::new(),
        None => {
            let mut v: Vec<PathBuf> = tree
                .read_dir(&deployments)
                .into_iter()
                .flatten()
                .filter(|e| e.kind == tree::Kind::Dir)
                .map(|e| e.path)
                .collect();
            v.sort();
            v
        }
    };
    for dir in dirs {
        for f in files(&dir, &["json"]) {
            if let Some(v) = read(&f) {
                if let (Some(l), Some(b)) = (v["label"].as_str(), v["backup"].as_str()) {
                    if l == label {
                        out.push((f, b.to_string()));
                    }
                }
            }
        }
    }
    // The team's own records, in the storage folder or above it (a local folder's parent).
    let mut team_dirs = vec![root.to_path_buf()];
    if !tree.is_mirror() {
        team_dirs.extend(root.parent().map(Path::to_path_buf));
    }
    for dir in team_dirs {
        for f in files(&dir, &["meta", "json"]) {
            let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
            if let Some(v) = read(&f) {
                if let Some(b) = v["database_backup"].as_str() {
                    if v["backup"].as_str() == Some(label) || stem.as_deref() == Some(label) {
                        out.push((f, b.to_string()));
                    }
                }
            }
        }
    }
    out
}

/// Whether `word` is one of the name's words (split on `_`, `-` and `.`), in any case.
fn has_word(name: &str, word: &str) -> bool {
    name.split(['_', '-', '.']).any(|w| w.eq_ignore_ascii_case(word))
}

/// What a named backup resolved to.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// A backup the survey lists.
    Listed(Entry),
    /// A path outside what the survey lists (a symlink leading out of the storage).
    Path(PathBuf),
}

/// A backup named exactly: a path relative to the storage, a file name (of whichever
/// database: a name the user typed is not hidden by what another file is called), a
/// symlink's name (followed), or else the start of a name of `database`'s backups. With the
/// lines the log should show. `Err` when the name is ambiguous or a symlink leads nowhere.
pub fn named(survey: &Survey, database: Option<&str>, name: &str) -> Result<Option<(Resolved, Vec<String>)>, String> {
    let rel = |e: &Path| e.strip_prefix(&survey.root).ok().map(|r| r.to_string_lossy().into_owned());
    let mut notes = Vec::new();
    // A symlink first: `auth_db_LATEST.sql.gz` names the file it points to.
    if let Some(p) = survey.pointers.iter().find(|p| p.name == name || rel(&p.path).as_deref() == Some(name)) {
        let Some(target) = &p.target else {
            return Err(format!(
                "`{name}` is a symlink that leads nowhere ({}): point it at a backup, or name the backup",
                survey.tree.display(&p.path)
            ));
        };
        notes.push(format!("followed the symlink {name} to {}", survey.tree.display(target)));
        let listed = survey.backups.iter().find(|e| {
            e.path.file_name() == target.file_name() && std::fs::canonicalize(&e.path).ok().as_ref() == Some(target)
        });
        return Ok(Some(match listed {
            Some(e) => (Resolved::Listed(of_database(survey, e, database, &mut notes)), notes),
            None => (Resolved::Path(target.clone()), notes),
        }));
    }
    let exact: Vec<&Entry> =
        survey.backups.iter().filter(|e| e.name == name || rel(&e.path).as_deref() == Some(name)).collect();
    let mine = database.map(|d| survey.select(Some(d))).unwrap_or_default();
    let chosen = match exact.as_slice() {
        [] => None,
        [one] => Some(*one),
        several => {
            // The same name in several folders: the asked database's, when that decides.
            let of_mine: Vec<&&Entry> = several.iter().filter(|e| mine.iter().any(|m| m.path == e.path)).collect();
            match of_mine.as_slice() {
                [one] => Some(**one),
                _ => {
                    let paths: Vec<String> = several.iter().map(|e| survey.tree.display(&e.path)).collect();
                    return Err(format!(
                        "`{name}` is in {} folders ({}): name it by its path under the storage",
                        several.len(),
                        paths.join(", ")
                    ));
                }
            }
        }
    };
    if let Some(e) = chosen {
        return Ok(Some((Resolved::Listed(of_database(survey, e, database, &mut notes)), notes)));
    }
    // The start of a name, among the asked database's backups (newest first), as before.
    let pool = if database.is_some() { mine } else { survey.backups.clone() };
    Ok(pool.into_iter().find(|e| e.name.starts_with(name)).map(|e| (Resolved::Listed(e), notes)))
}

/// `e` as a backup of `database`: as the survey selects it for that database (a nameless
/// file taken as its), else as it is, with a line saying its name says another database.
fn of_database(survey: &Survey, e: &Entry, database: Option<&str>, notes: &mut Vec<String>) -> Entry {
    let Some(want) = database else { return e.clone() };
    if let Some(m) = survey.select(Some(want)).into_iter().find(|m| m.path == e.path) {
        return m;
    }
    if e.foreign {
        notes.push(format!(
            "its name says {}, not `{want}`: taken because it was named exactly",
            if e.database.is_empty() { "no database".to_string() } else { format!("database `{}`", e.database) }
        ));
    }
    e.clone()
}

/// Symlinks named like `latest` beside the chosen backup that point elsewhere, or to it: a
/// team's `auth_db_LATEST.sql.gz` is named either way, so an operator who trusts it knows.
pub fn pointer_notes(survey: &Survey, chosen: &Entry) -> Vec<String> {
    let chosen_real = std::fs::canonicalize(&chosen.path).ok();
    survey
        .pointers
        .iter()
        .filter(|p| p.path.parent() == chosen.path.parent() && p.name.to_ascii_lowercase().contains("latest"))
        .map(|p| match &p.target {
            Some(t) if Some(t) == chosen_real.as_ref() => format!("the symlink {} points to it too", p.name),
            Some(t) => format!(
                "the symlink {} points to {}, not to the newest backup by the time in its name ({} is taken; name the symlink as `backup` to take its target)",
                p.name,
                survey.tree.display(t),
                chosen.name
            ),
            None => format!("the symlink {} leads nowhere", p.name),
        })
        .collect()
}

/// Why nothing fits: the nearest candidates and why each was not taken (another database,
/// a name that says none, not a dump, a symlink, made after the time asked), and the
/// `database=`/`target=` form when a backup of another name may be the one. Empty when the
/// storage holds nothing named like a backup at all.
pub fn explain(survey: &Survey, database: Option<&str>, asked: &Asked) -> String {
    const SHOWN: usize = 8;
    let mine = database.map(|d| survey.select(Some(d))).unwrap_or_else(|| survey.backups.clone());
    let mut lines: Vec<String> = Vec::new();
    let shown = |p: &Path| survey.tree.display(p);
    // The asked database's own backups, when the form asked for excluded them.
    for e in &mine {
        let why = match asked {
            Asked::At { until, written } => {
                format!("made at {}, after {written} ({})", rfc3339(e.made), rfc3339(*until))
            }
            Asked::Label(l) => format!("its name holds no word `{l}`"),
            Asked::Named(n) => format!("not named `{n}`"),
            Asked::Latest | Asked::Random => {
                if super::dated_ahead(e.made).is_some() {
                    format!("dated {} (in the future)", rfc3339(e.made))
                } else {
                    continue;
                }
            }
        };
        lines.push(format!("{}: {why}", shown(&e.path)));
    }
    let mut other_dbs: Vec<String> = Vec::new();
    if let Some(want) = database {
        for e in survey.backups.iter().filter(|e| !mine.iter().any(|m| m.path == e.path)) {
            let why = if e.database.is_empty() {
                survey.assumable(e, want).err().unwrap_or_else(|| "its name says no database".into())
            } else {
                if !other_dbs.contains(&e.database) {
                    other_dbs.push(e.database.clone());
                }
                if e.foreign {
                    format!("its name says database `{}`", e.database)
                } else {
                    format!("pgdrill's backup of database `{}`", e.database)
                }
            };
            lines.push(format!("{}: {why}", shown(&e.path)));
        }
    }
    for p in &survey.passed_over {
        lines.push(format!("{}: {}", shown(&p.path), p.why));
    }
    for p in &survey.pointers {
        let to = p.target.as_deref().map(|t| format!("to {}", shown(t))).unwrap_or_else(|| "leading nowhere".into());
        lines.push(format!(
            "{}: a symlink {to}, not a backup itself (name it as `backup` to take its target)",
            shown(&p.path)
        ));
    }
    if lines.is_empty() {
        return String::new();
    }
    let more = lines.len().saturating_sub(SHOWN);
    lines.truncate(SHOWN);
    let mut out = format!("\nnearest candidates, and why each was not taken:\n  - {}", lines.join("\n  - "));
    if more > 0 {
        out.push_str(&format!("\n  - ... and {more} more (`pgdrill backups list` shows them all)"));
    }
    if let (Some(want), Some(first)) = (database, other_dbs.first()) {
        let others: Vec<String> = other_dbs.iter().take(3).map(|d| format!("`{d}`")).collect();
        out.push_str(&format!(
            "\nif a backup of {} is the one of `{want}` (named after another database), take it with database={first}; the restore runbook restores it into `{want}` with database={first} target={want}",
            others.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::layout::LocalStore;
    use std::fs;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, b"x").expect("write");
    }

    /// A pgdrill archive with its manifest (the commit marker), as the layout has it.
    fn archive(dir: &Path, stamp: &str) -> PathBuf {
        let p = dir.join(format!("{stamp}.dump.pgdrill"));
        touch(&p);
        fs::write(crate::backup::layout::manifest_path(&p), b"{}").expect("manifest");
        p
    }

    #[test]
    fn the_forms_of_backup() {
        assert_eq!(Asked::parse("latest"), Asked::Latest);
        assert_eq!(Asked::parse("label:daily"), Asked::Label("daily".into()));
        assert_eq!(Asked::parse("backup_20240315_143022.sql.gz"), Asked::Named("backup_20240315_143022.sql.gz".into()));
        let Asked::At { until, .. } = Asked::parse("2024-01-15") else { panic!("a date") };
        assert_eq!(rfc3339(until), "2024-01-15T23:59:59Z", "a date alone: by the end of that day");
        let Asked::At { until, .. } = Asked::parse("20240115_020000") else { panic!("a time") };
        assert_eq!(rfc3339(until), "2024-01-15T02:00:00Z");
        let Asked::At { until, .. } = Asked::parse("2024-01-15T02:00Z") else { panic!("a time") };
        assert_eq!(rfc3339(until), "2024-01-15T02:00:00Z");
        for t in &crate::storage::tests::hostile_inputs() {
            let _ = Asked::parse(t);
        }
    }

    /// Issue 40, item 1: `wal_20261204.tar.gz` beside `backup_*.sql.gz` (the CRM runbook's
    /// folder) read as a backup of database `wal`, so the nameless dumps were nobody's and
    /// not found even by their exact names.
    #[test]
    fn a_wal_tar_beside_nameless_dumps_hid_them_even_by_exact_name() {
        let t = tempfile::tempdir().expect("tmp");
        for n in ["backup_20261203_020000.sql.gz", "backup_20261204_020000.sql.gz", "wal_20261204_020000.tar.gz"] {
            touch(&t.path().join(n));
        }
        touch(&t.path().join("backup.log"));
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        let crm: Vec<String> = s.select(Some("crm")).into_iter().map(|e| e.name).collect();
        assert_eq!(crm, ["backup_20261204_020000.sql.gz", "backup_20261203_020000.sql.gz"]);
        assert!(s.select(Some("crm")).iter().all(|e| e.database_assumed));
        assert_eq!(s.passed_over.len(), 1, "{:?}", s.passed_over);
        assert!(s.passed_over[0].why.contains("WAL"), "{:?}", s.passed_over);
        let (r, _) = named(&s, Some("crm"), "backup_20261203_020000.sql.gz").expect("ok").expect("found");
        assert!(matches!(r, Resolved::Listed(e) if e.name == "backup_20261203_020000.sql.gz" && e.database == "crm"));
    }

    /// Issue 40, item 1: pgdrill's own folder beside nameless dumps made them unfindable,
    /// and `latest` missed pgdrill's newer backups one folder down. Both are `crm`'s now,
    /// newest first, whatever the depth.
    #[test]
    fn pgdrills_own_folder_beside_nameless_dumps_hid_them_and_latest_missed_its_newer_backups() {
        let t = tempfile::tempdir().expect("tmp");
        touch(&t.path().join("backup_20261201_020000.sql.gz"));
        archive(&t.path().join("crm"), "20261205T020000.000Z");
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        let crm: Vec<String> = s.select(Some("crm")).into_iter().map(|e| e.name).collect();
        assert_eq!(crm, ["20261205T020000.000Z.dump.pgdrill", "backup_20261201_020000.sql.gz"]);
        // Another database asked for: the nameless dump is not taken, and the message says why.
        assert!(s.select(Some("erp")).is_empty());
        let why = explain(&s, Some("erp"), &Asked::Latest);
        assert!(
            why.contains(
                "backup_20261201_020000.sql.gz: its name says no database, and its folder also holds backups of `crm`"
            ),
            "{why}"
        );
        assert!(why.contains("database=crm target=erp"), "{why}");
    }

    /// The multi-tenant layout, `{project}/{env}/database/db_<stamp>.sql.gz`: several folders
    /// of nameless dumps are nobody's in particular until storage names one of them.
    #[test]
    fn nameless_dumps_in_several_folders_are_taken_only_when_storage_names_one() {
        let t = tempfile::tempdir().expect("tmp");
        let prod = t.path().join("filter-ical/production/database");
        let stag = t.path().join("filter-ical/staging/database");
        touch(&prod.join("db_20250106_020000.sql.gz"));
        touch(&stag.join("db_20250107_020000.sql.gz"));
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        assert_eq!(s.backups.len(), 2, "found three levels down");
        assert!(s.select(Some("filterical_production")).is_empty());
        let why = explain(&s, Some("filterical_production"), &Asked::Latest);
        assert!(why.contains("2 folders hold such files"), "{why}");
        let s = LocalStore::new(&prod).survey(None).expect("survey");
        assert_eq!(s.select(Some("filterical_production")).len(), 1);
    }

    /// A backup named after another database (`himalytix_production_*` restored into
    /// `erpdb`): not `erpdb`'s, and the message says how to take it.
    #[test]
    fn a_backup_named_after_another_database_is_explained_with_the_database_target_form() {
        let t = tempfile::tempdir().expect("tmp");
        touch(&t.path().join("backups/production/himalytix_production_20251018_020000.sql.gz.enc"));
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        assert!(s.select(Some("erpdb")).is_empty());
        let why = explain(&s, Some("erpdb"), &Asked::Latest);
        assert!(why.contains("its name says database `himalytix_production`"), "{why}");
        assert!(why.contains("database=himalytix_production target=erpdb"), "{why}");
        // Named exactly, it is taken, and the log says its name says otherwise.
        let (r, notes) =
            named(&s, Some("erpdb"), "himalytix_production_20251018_020000.sql.gz.enc").expect("ok").expect("found");
        assert!(matches!(r, Resolved::Listed(_)));
        assert!(notes.iter().any(|n| n.contains("taken because it was named exactly")), "{notes:?}");
    }

    /// A `LATEST` symlink is followed when named, named when `latest` is asked, and never a
    /// second backup.
    #[test]
    fn a_latest_symlink_is_followed_and_named() {
        let t = tempfile::tempdir().expect("tmp");
        let dir = t.path().join("postgres-a");
        touch(&dir.join("auth_db_20240115_020000.sql.gz"));
        touch(&dir.join("auth_db_20240116_020000.sql.gz"));
        std::os::unix::fs::symlink("auth_db_20240115_020000.sql.gz", dir.join("auth_db_LATEST.sql.gz")).expect("ln");
        std::os::unix::fs::symlink("gone.sql.gz", dir.join("auth_db_OLD.sql.gz")).expect("ln");
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        assert_eq!(s.select(Some("auth_db")).len(), 2, "a symlink is no backup");
        let (r, notes) = named(&s, Some("auth_db"), "auth_db_LATEST.sql.gz").expect("ok").expect("found");
        assert!(matches!(&r, Resolved::Listed(e) if e.name == "auth_db_20240115_020000.sql.gz"), "{r:?}");
        assert!(notes[0].starts_with("followed the symlink auth_db_LATEST.sql.gz to "), "{notes:?}");
        let newest = &s.select(Some("auth_db"))[0];
        let said = pointer_notes(&s, newest);
        assert!(
            said.iter().any(|l| l.contains("auth_db_LATEST.sql.gz points to") && l.contains("not to the newest")),
            "{said:?}"
        );
        assert!(named(&s, Some("auth_db"), "auth_db_OLD.sql.gz").expect_err("nowhere").contains("leads nowhere"));
    }

    #[test]
    fn a_time_or_a_label_takes_the_newest_that_fits() {
        let t = tempfile::tempdir().expect("tmp");
        for n in [
            "erp_20240110_000000_daily.sql.gz",
            "erp_20240114_000000_weekly.sql.gz",
            "erp_20240115_120000_daily.sql.gz",
            "erp_20240116_000000_daily.sql.gz",
        ] {
            touch(&t.path().join(n));
        }
        let s = LocalStore::new(t.path()).survey(None).expect("survey");
        let erp = s.select(Some("erp"));
        let at = |w: &str| choose(&erp, &Asked::parse(w)).map(|e| e.name.clone());
        assert_eq!(at("2024-01-15").as_deref(), Some("erp_20240115_120000_daily.sql.gz"));
        assert_eq!(at("2024-01-15T11:00").as_deref(), Some("erp_20240114_000000_weekly.sql.gz"));
        assert_eq!(at("label:weekly").as_deref(), Some("erp_20240114_000000_weekly.sql.gz"));
        assert_eq!(at("2023-01-01"), None);
        let why = explain(&s, Some("erp"), &Asked::parse("2023-01-01"));
        assert!(why.contains("made at 2024-01-10T00:00:00Z, after 2023-01-01"), "{why}");
    }

    /// Before: `label:v2.3.1` looked for the word in file names only, so the backup the
    /// predeploy runbook recorded for a deployment (and the multi-tenant runbook's
    /// `backup_<stamp>.meta` records) could not be named by its label. The record's backup is
    /// taken, never another in its place, and a record naming a missing backup is an error.
    #[test]
    fn a_deployment_label_names_the_backup_its_record_holds() {
        let t = tempfile::tempdir().expect("tmp");
        let root = t.path().join("backups");
        let old = archive(&root.join("app"), "20240110T000000.000Z");
        archive(&root.join("app"), "20240111T000000.000Z");
        let record = |label: &str, backup: &Path| {
            let p = root.join("deployments/app").join(format!("{label}.json"));
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            let v = serde_json::json!({ "label": label, "database": "app", "backup": backup, "sha256": "00" });
            fs::write(p, v.to_string()).expect("record");
        };
        record("v2.3.1", &old);
        record("v2.4.0", &root.join("app/gone.dump.pgdrill"));
        let s = LocalStore::new(&root).survey(None).expect("survey");
        let app = s.select(Some("app"));
        let (e, note) = deployed(&s, &app, Some("app"), "v2.3.1").expect("ok").expect("a record");
        assert_eq!(e.path, old);
        assert!(note.contains("deployments/app/v2.3.1.json"), "{note}");
        assert!(deployed(&s, &app, Some("app"), "v9").expect("ok").is_none(), "no record: the words of names");
        let err = deployed(&s, &app, Some("app"), "v2.4.0").expect_err("pruned");
        assert!(err.contains("gone.dump.pgdrill") && err.contains("not among the backups"), "{err}");

        // The multi-tenant runbook's own record, above its `database/` folder, naming the
        // file by a path on the team's server: found by its file name.
        let env = t.path().join("filter-ical/production");
        touch(&env.join("database/db_20250106_120000.sql.gz"));
        touch(&env.join("database/db_20250107_020000.sql.gz"));
        let meta = serde_json::json!({
            "backup": "backup_20250106_120000",
            "database_backup": "/opt/backups/filter-ical/production/database/db_20250106_120000.sql.gz"
        });
        fs::write(env.join("backup_20250106_120000.meta"), meta.to_string()).expect("meta");
        let s = LocalStore::new(env.join("database")).survey(None).expect("survey");
        let mine = s.select(Some("filterical_production"));
        let (e, _) = deployed(&s, &mine, None, "backup_20250106_120000").expect("ok").expect("the team's record");
        assert_eq!(e.name, "db_20250106_120000.sql.gz");
    }
}
