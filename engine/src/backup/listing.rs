//! What is in a backup directory, as a typed value: pgdrill's backups with what their
//! manifests say, other tools' files with what their names say (no file is opened), and a
//! manifest that cannot be read as an entry of its own. `backup.list` hands it on as outputs
//! and `pgdrill backups list` formats it (a table, or JSON); neither is done here.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::layout::{self, LocalStore, MadeFrom};
use super::{ledger, source, Manifest};
use crate::backup::names::NamePattern;
use crate::error::Failure;
use crate::storage::tree::Tree;
use crate::util::rfc3339;

/// One backup in storage. The JSON of each case is what `backup.list` and `backups list
/// --json` have always shown, so the cases are untagged; `origin` tells them apart.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Listed {
    Pgdrill(Box<PgdrillBackup>),
    Foreign(Box<ForeignBackup>),
    /// A pgdrill backup whose manifest cannot be read.
    Unreadable(UnreadableBackup),
    /// A pgdrill backup in an object store, listed from its name and the LIST answer alone
    /// (issue 41: a listing costs one pass of LIST pages, no request per backup); what only
    /// its manifest says (sha256, encryption, binding) is read by the command that uses it.
    Named(Box<NamedBackup>),
}

/// A pgdrill backup as its name and the store's listing show it: its manifest not read.
#[derive(Debug, Clone, Serialize)]
pub struct NamedBackup {
    pub path: String,
    pub manifest: String,
    /// The archive's size, from the listing.
    pub size: u64,
    /// From its folder.
    pub database: String,
    /// From its name's extension (`dump.pgdrill`: custom).
    pub format: String,
    /// When its dump started, from its name (RFC 3339).
    pub created: String,
    pub origin: Origin,
    /// Always `name`: what this entry says was taken from the name and the listing.
    pub taken_from: &'static str,
    pub last_verification: Option<LastVerification>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub future_s: Option<i64>,
}

/// Who wrote a listed backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Pgdrill,
    Foreign,
}

/// A pgdrill backup, from its manifest (without the source fingerprint, which is long and
/// which `backup.latest` and `backup.pick` hand on when a run needs it).
#[derive(Debug, Clone, Serialize)]
pub struct PgdrillBackup {
    pub path: String,
    pub manifest: String,
    pub sha256: String,
    pub size: u64,
    pub raw_size: u64,
    pub database: String,
    pub server_major: u32,
    pub format: String,
    pub encrypted: bool,
    /// `mac`, or why the manifest is not bound to the backup ([`manifest_auth`]).
    pub manifest_auth: &'static str,
    /// When the dump finished (RFC 3339).
    pub created: String,
    /// When the dump's snapshot was taken (Unix seconds).
    pub started_epoch: f64,
    pub origin: Origin,
    pub last_verification: Option<LastVerification>,
    /// Seconds it is dated in the future (a skewed clock): its age is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub future_s: Option<i64>,
}

/// Another tool's backup file (or directory).
#[derive(Debug, Clone, Serialize)]
pub struct ForeignBackup {
    pub path: String,
    /// Empty when its name does not say.
    pub database: String,
    /// Taken as the asked database's because nothing in storage names any database.
    pub database_assumed: bool,
    pub origin: Origin,
    pub created: String,
    /// Whether `created` is from the name or, less reliably, the file's mtime.
    pub created_from: MadeFrom,
    pub size: u64,
    /// What its name says (`custom`, `gzip/plain`, `openssl` ...; `format_from: name`), or
    /// `directory` for a directory dump (its `toc.dat`). A listing opens no file: the
    /// command that uses one reads its first bytes.
    pub format: String,
    /// `name` when `format` is read from the name (a listing reads no file's bytes); absent
    /// for a directory dump.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format_from: Option<&'static str>,
    pub encrypted: bool,
    /// `none`: another tool's file has no manifest; a team's own file pgdrill wrote has
    /// its sidecar (`foreign_manifest_auth`).
    pub manifest_auth: &'static str,
    pub last_verification: Option<LastVerification>,
    /// Seconds it is dated in the future (a skewed clock, a misnamed file): its age is
    /// unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub future_s: Option<i64>,
}

/// A pgdrill backup whose manifest cannot be read, and why.
#[derive(Debug, Clone, Serialize)]
pub struct UnreadableBackup {
    pub path: String,
    pub database: String,
    pub origin: Origin,
    pub error: String,
}

/// The newest verification the ledger beside a backup records.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum LastVerification {
    Recorded {
        result: String,
        verified_at: String,
        sha256: Option<String>,
        /// The content's verdict (proven, unproven, failed, error), apart from its age's.
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<String>,
        /// What the content was proven against (manifest, source, expectations, earlier).
        #[serde(skip_serializing_if = "Option::is_none")]
        ground_truth: Option<String>,
        /// fresh, stale or unknown when it was verified.
        #[serde(skip_serializing_if = "Option::is_none")]
        age: Option<String>,
    },
    /// The ledger cannot be read: unknown is not "never", so say why.
    Unknown { result: &'static str, error: String },
}

impl Listed {
    pub fn database(&self) -> &str {
        match self {
            Listed::Pgdrill(b) => &b.database,
            Listed::Foreign(b) => &b.database,
            Listed::Unreadable(b) => &b.database,
            Listed::Named(b) => &b.database,
        }
    }

    /// Whether what it says was taken from names and the listing, not read from the object.
    pub fn taken_from_names(&self) -> bool {
        match self {
            Listed::Named(_) => true,
            Listed::Foreign(f) => f.format_from.is_some(),
            _ => false,
        }
    }
}

/// What binds a manifest to its backup, as written (checked with the key by `backup.pick`
/// and `backup.check`): `mac`, or why there is none.
pub fn manifest_auth(m: &Manifest) -> &'static str {
    match (&m.authentication, m.cipher.as_str()) {
        (Some(_), _) => "mac",
        (None, _) if m.envelope != crate::archive::Envelope::Pgdrill => TEAM_SIDECAR,
        (None, "none") => "unauthenticated (not encrypted)",
        (None, _) => "unauthenticated (written before binding)",
    }
}

/// What a file listed by its name has beside it: the sidecar manifest pgdrill writes with a
/// team's own format (`<file>.manifest.json`; issue 40), which nothing authenticates, or
/// `none`. Known from the listing (a stat, or the object store's LIST answer): the sidecar
/// is read by the command that uses the file.
pub fn foreign_manifest_auth(tree: &Tree, path: &Path) -> &'static str {
    // Through `tree`: in an object store's view a listed sidecar has no file until read.
    match !tree.is_dir(path) && tree.stat(&layout::manifest_path(path)).is_some() {
        true => TEAM_SIDECAR,
        false => "none",
    }
}

/// `manifest_auth` of a team's own file with its sidecar.
pub const TEAM_SIDECAR: &str = "unauthenticated (sidecar of a team's own format)";

/// Backups in `storage`, newest first, of `database` if given, other tools' files read with
/// `pattern` if given (else the classic naming schemes).
pub fn list(storage: &Tree, database: Option<&str>, pattern: Option<&NamePattern>) -> Result<Vec<Listed>, Failure> {
    let store = LocalStore::new(storage);
    let entries = store
        .list_with(database, pattern)
        .map_err(|e| Failure::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    // One ledger per database folder, read once however many backups it covers.
    let mut ledgers: HashMap<PathBuf, _> = HashMap::new();
    let mut last_of = |e: &layout::Entry| {
        let ledger_path = ledger::path_for(&e.path);
        match ledgers.entry(ledger_path.clone()).or_insert_with(|| ledger::last_by_backup(&ledger_path)) {
            Ok(by_name) => by_name.get(&e.name).map(|l| LastVerification::Recorded {
                result: l.result.clone(),
                verified_at: l.verified_at.clone(),
                sha256: l.sha256.clone(),
                content: l.content.clone(),
                ground_truth: l.ground_truth.clone(),
                age: l.age.clone(),
            }),
            Err(err) => Some(LastVerification::Unknown { result: "unknown", error: err.to_string() }),
        }
    };
    Ok(entries
        .iter()
        .map(|e| {
            if e.foreign {
                // What its name says, locally as in an object store (issue 41: a listing of
                // 10,000 files opens none of them); a directory dump is known by its
                // `toc.dat`, a stat. The first bytes are read by the command that uses it.
                let from_name = !storage.is_dir(&e.path);
                let kind = if from_name { kind_from_name(&e.name) } else { source::sniff_in(storage, &e.path) };
                let size = if from_name {
                    storage.size(&e.path)
                } else {
                    storage
                        .read_dir(&e.path)
                        .map(|rd| rd.iter().filter_map(|f| storage.stat(&f.path)).map(|m| m.size).sum())
                        .unwrap_or(0)
                };
                return Listed::Foreign(Box::new(ForeignBackup {
                    path: storage.display(&e.path),
                    database: e.database.clone(),
                    database_assumed: e.database_assumed,
                    origin: Origin::Foreign,
                    created: rfc3339(e.made),
                    created_from: e.made_from,
                    size,
                    encrypted: kind.starts_with("openssl") || kind.starts_with("gpg"),
                    format: kind,
                    format_from: from_name.then_some("name"),
                    manifest_auth: foreign_manifest_auth(storage, &e.path),
                    last_verification: last_of(e),
                    future_s: super::dated_ahead(e.made),
                }));
            }
            let manifest = layout::manifest_path(&e.path);
            if storage.is_lazy(&manifest) && e.made_from == layout::MadeFrom::Name {
                return Listed::Named(Box::new(NamedBackup {
                    path: storage.display(&e.path),
                    manifest: storage.display(&manifest),
                    size: storage.size(&e.path),
                    database: e.database.clone(),
                    format: pgdrill_format_of(&e.name).to_string(),
                    created: rfc3339(e.made),
                    origin: Origin::Pgdrill,
                    taken_from: "name",
                    last_verification: last_of(e),
                    future_s: super::dated_ahead(e.made),
                }));
            }
            match Manifest::read_in(storage, &e.path) {
                Ok(m) => Listed::Pgdrill(Box::new(PgdrillBackup {
                    path: storage.display(&e.path),
                    manifest: storage.display(&layout::manifest_path(&e.path)),
                    sha256: m.sha256.clone(),
                    size: m.sizes.stored,
                    raw_size: m.sizes.raw,
                    database: m.database.clone(),
                    server_major: m.server_major,
                    format: m.format.name().to_string(),
                    encrypted: m.cipher != "none",
                    manifest_auth: manifest_auth(&m),
                    created: rfc3339(m.finished_at),
                    started_epoch: m.started_at.unix_timestamp_nanos() as f64 / 1e9,
                    origin: Origin::Pgdrill,
                    last_verification: last_of(e),
                    future_s: super::dated_ahead(m.finished_at),
                })),
                Err(err) => Listed::Unreadable(UnreadableBackup {
                    path: storage.display(&e.path),
                    database: e.database.clone(),
                    origin: Origin::Pgdrill,
                    error: err.to_string(),
                }),
            }
        })
        .collect())
}

/// The dump format a pgdrill archive's name says (its extension, `Format::ext`).
pub fn pgdrill_format_of(name: &str) -> &'static str {
    let stem = name.strip_suffix(".pgdrill").unwrap_or(name);
    if stem.ends_with(".dump") {
        "custom"
    } else if stem.ends_with(".sql") {
        "plain"
    } else if stem.ends_with(".dir.tar") {
        "directory"
    } else {
        "?"
    }
}

/// What another tool's file is by its name's extensions, in `source::sniff`'s words
/// (outer layer first): what a listing of an object store shows without reading the file.
/// `?` where the name does not say.
pub fn kind_from_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let mut layers = Vec::new();
    let mut rest = lower.as_str();
    loop {
        let (next, layer) = if let Some(r) = rest.strip_suffix(".gz") {
            (r, "gzip")
        } else if let Some(r) = rest.strip_suffix(".zst") {
            (r, "zstd")
        } else if let Some(r) = rest.strip_suffix(".enc") {
            (r, "openssl")
        } else if let Some(r) = rest.strip_suffix(".gpg").or_else(|| rest.strip_suffix(".pgp")) {
            (r, "gpg")
        } else {
            break;
        };
        layers.push(layer);
        rest = next;
        // An envelope hides what is inside.
        if matches!(layer, "openssl" | "gpg") {
            return layers.join("/");
        }
    }
    let inner = if rest.ends_with(".sql") {
        "plain"
    } else if [".dump", ".backup", ".pgdump", ".custom"].iter().any(|x| rest.ends_with(x)) {
        "custom"
    } else if rest.ends_with(".tar") {
        "tar"
    } else {
        "?"
    };
    layers.push(inner);
    layers.join("/")
}

/// A pgdrill archive with no manifest beside it: not a backup (the manifest is the commit
/// marker, written last), but a backup killed before it finished or one still finishing.
/// `backups list` shows it apart from the backups so an operator sees the debris that
/// `retention.prune` will remove (after `abandoned_uploads_after`).
#[derive(Debug, Clone, Serialize)]
pub struct UnfinishedArchive {
    pub path: String,
    pub database: String,
    /// When its archive was last written (the file's or object's time, RFC 3339).
    pub written: String,
    pub size: u64,
}

/// The unfinished archives in `storage` (of `database` if given), newest first.
pub fn unfinished(storage: &Tree, database: Option<&str>) -> Result<Vec<UnfinishedArchive>, Failure> {
    let entries = LocalStore::new(storage)
        .unfinished(database)
        .map_err(|e| Failure::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    Ok(entries
        .iter()
        .map(|e| UnfinishedArchive {
            path: storage.display(&e.path),
            database: e.database.clone(),
            written: rfc3339(e.made),
            size: storage.size(&e.path),
        })
        .collect())
}

/// A symlink named like a backup (`auth_db_LATEST.sql.gz`) and where it leads: `backups
/// list` names each below the table, never as a backup of its own.
#[derive(Debug, Clone, Serialize)]
pub struct Symlink {
    pub path: String,
    /// The file it points to, or None when it leads nowhere.
    pub target: Option<String>,
}

/// The symlinks named like backups in `storage` (of `database`, by their names, if given).
pub fn symlinks(
    storage: &Tree,
    database: Option<&str>,
    pattern: Option<&NamePattern>,
) -> Result<Vec<Symlink>, Failure> {
    let survey = LocalStore::new(storage)
        .survey(pattern)
        .map_err(|e| Failure::environment(format!("cannot list {}: {e}", storage.root().display())))?;
    Ok(survey
        .pointers
        .iter()
        .filter(|p| {
            let named = match pattern {
                Some(pat) => pat.matches(&p.name).and_then(|i| i.database),
                None => super::names::parse(&p.name).database,
            };
            database.is_none() || named.is_none() || named.as_deref() == database
        })
        .map(|p| Symlink { path: storage.display(&p.path), target: p.target.as_deref().map(|t| storage.display(t)) })
        .collect())
}

/// A listing as JSON values, each entry's keys in the order `backups list --json` has always
/// printed them (sorted).
pub fn to_json(list: &[Listed]) -> Vec<serde_json::Value> {
    list.iter().map(|b| serde_json::to_value(b).unwrap_or_default()).collect()
}

#[cfg(test)]
mod tests {
    use super::{kind_from_name, pgdrill_format_of};
    use crate::backup::Format;

    /// A listing, backup.pick and backup.create name a dump's format in the word its
    /// manifest stores (one `Format::name` for the three).
    #[test]
    fn a_format_is_named_as_its_manifest_stores_it() {
        for f in [Format::Custom, Format::Plain, Format::Directory] {
            assert_eq!(serde_json::to_value(f).expect("format"), f.name());
            assert_eq!(Format::parse(f.name()), Ok(f));
        }
    }

    /// An object store's listing reads no object (issue 41): the kinds it shows are its
    /// names', in `source::sniff`'s words, and `?` where a name does not say.
    #[test]
    fn kinds_from_names_read_extensions_outer_layer_first() {
        assert_eq!(pgdrill_format_of("20261121T154500.123Z.dump.pgdrill"), "custom");
        assert_eq!(pgdrill_format_of("20261121T154500.123Z-1.sql.pgdrill"), "plain");
        assert_eq!(pgdrill_format_of("20261121T154500.123Z.dir.tar.pgdrill"), "directory");
        assert_eq!(pgdrill_format_of("x.pgdrill"), "?");
        assert_eq!(kind_from_name("auth_db_20240115_020000.sql.gz"), "gzip/plain");
        assert_eq!(kind_from_name("app-2024-01-15.dump"), "custom");
        assert_eq!(kind_from_name("APP.SQL.ZST"), "zstd/plain");
        assert_eq!(kind_from_name("app.sql.gz.enc"), "openssl");
        assert_eq!(kind_from_name("app.dump.gpg"), "gpg");
        assert_eq!(kind_from_name("app.tar.gz"), "gzip/tar");
        assert_eq!(kind_from_name("app_20240115.gz"), "gzip/?");
        assert_eq!(kind_from_name("notes.txt"), "?");
        for t in &crate::storage::tests::hostile_inputs() {
            let _ = (kind_from_name(t), pgdrill_format_of(t));
        }
    }
}
