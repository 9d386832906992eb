//! The contract every physical backup source fulfils: pgdrill's own base backups (`backup/`
//! and `wal/`), pg_basebackup folders, pgBackRest, Barman and barman-cloud. A source lists
//! the base backups it holds, materializes one into an empty data directory, and says how
//! the throwaway server fetches the WAL that follows it (`restore_command`). Recovery itself
//! (settings, the throwaway server, the proof that the target was reached) is one shared
//! piece, `physical::recover`, so every source is judged the same way.
//!
//! The trait is blocking: a source runs other tools as children (tar, pgbackrest, barman) or
//! reads a store, and its callers run it off the async workers (`block_in_place`). It must
//! never start a server, nor write to the archive it reads.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::error::Failure;

/// A WAL location (`pg_lsn`): the WAL archive's type, so a source's locations and the
/// archive's are one kind of value with one parser.
pub use crate::wal::Lsn;

/// The default WAL segment size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// A WAL segment file name (`000000010000000000000003`) -> (timeline, start location of the
/// segment), for segments of `segment_size` bytes. History, backup-label and partial files
/// are `None`.
pub fn parse_segment_name(name: &str, segment_size: u64) -> Option<(u32, Lsn)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let tli = u32::from_str_radix(&name[..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..], 16).ok()?;
    let per_id = 0x1_0000_0000u64 / segment_size.max(1);
    Some((tli, Lsn((log * per_id + seg) * segment_size)))
}

/// The tool that made (and restores) a source's backups, as the log and reports name it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tool {
    /// `pg_basebackup`, `pgbackrest`, `barman`, `barman-cloud`, `pgdrill`.
    pub name: String,
    /// The version text of the binary that served (`pg_basebackup (PostgreSQL) 15.18`),
    /// empty when the source reads files only.
    pub version: String,
}

/// One base backup a source holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BaseBackup {
    /// The source's own id for it (pgBackRest's label, Barman's backup id, a folder name).
    pub id: String,
    /// When the backup started and ended (the end is the earliest point it can recover to).
    pub started: Option<OffsetDateTime>,
    pub ended: Option<OffsetDateTime>,
    /// WAL locations of the backup's start (its checkpoint's redo) and stop.
    pub start_lsn: Option<Lsn>,
    pub stop_lsn: Option<Lsn>,
    /// The source cluster's system identifier (pg_control), when the source records it.
    pub system_identifier: Option<u64>,
    /// The timeline the backup was taken on.
    pub timeline: Option<u32>,
    /// PostgreSQL major of the source cluster (`PG_VERSION`).
    pub pg_major: Option<u32>,
    /// Bytes of the backup as stored.
    pub size: Option<u64>,
    /// A `backup_manifest` exists, so `pg_verifybackup` can check the files (PostgreSQL 13+).
    pub has_manifest: bool,
    /// The WAL needed to make the backup consistent is inside the backup itself (`-X
    /// fetch|stream`): it restores without an archive, though only to its own end.
    pub wal_included: bool,
}

impl BaseBackup {
    /// `id (ended 2026-..., stop LSN 0/3000100)` for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(t) = self.ended {
            parts.push(format!("ended {}", crate::util::rfc3339(t)));
        }
        if let Some(l) = self.stop_lsn {
            parts.push(format!("stop LSN {l}"));
        }
        if parts.is_empty() {
            self.id.clone()
        } else {
            format!("{} ({})", self.id, parts.join(", "))
        }
    }
}

/// Where to materialize a backup.
#[derive(Debug, Clone)]
pub struct MaterializeInto {
    /// The data directory: exists and is empty.
    pub data_dir: PathBuf,
    /// A directory (exists, empty) under which each tablespace gets a directory of its own,
    /// named by its OID: a tablespace never lands where the source cluster had it.
    pub tablespaces_dir: PathBuf,
}

/// What materializing wrote.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Materialized {
    /// Bytes written into the data directory and tablespaces.
    pub bytes: u64,
    /// Each tablespace: its OID and where it now is.
    pub tablespaces: Vec<(u32, PathBuf)>,
}

/// The newest WAL an archive holds for a timeline: what "latest" must reach, and what an
/// unreachable target's failure names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEnd {
    /// The newest segment file's name.
    pub segment: String,
    /// The location where that segment starts.
    pub segment_start: Lsn,
    /// When that segment was archived (its file's time), if known.
    pub archived: Option<OffsetDateTime>,
}

/// A recovery to "latest" whose replay ended before the archive's newest segment: the source
/// of that failure (`recover::prove`), so that the source can look at its archive again
/// (`PhysicalSource::judge_fetch`) and tell a gap it held all along (the backup's failure)
/// from segments removed while the recovery ran (the environment's: no verdict).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortOfEnd {
    /// Where replay ended.
    pub replayed: Lsn,
    /// The archive's end as it was read before the recovery.
    pub end: ArchiveEnd,
}

impl std::fmt::Display for ShortOfEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "replay ended at {}, before the archive's newest segment {}", self.replayed, self.end.segment)
    }
}

impl std::error::Error for ShortOfEnd {}

/// A backup a source's tool serves from a Docker image of the backup's major rather than
/// from this machine (the major has no server binaries here, or the tool here is older than
/// the one that made the backup). The throwaway then runs in the same image: its
/// restore_command runs the tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InImage {
    pub image: String,
    /// The tool reaches its repository over the network (a bucket, a repository host): the
    /// throwaway's container shares the host's network instead of having none.
    pub network: bool,
    /// Why, for the log: `this machine has no PostgreSQL 17 server binaries`.
    pub why: String,
}

/// A physical backup source. Implementations own their state (paths, credentials in the
/// environment of their children only) and never print.
pub trait PhysicalSource: Send + Sync {
    /// The tool behind the source and its version.
    fn tool(&self) -> Tool;

    /// One line naming the source for logs and errors (`pg_basebackup folder /backups/x`),
    /// without secrets.
    fn describe(&self) -> String;

    /// The base backups the source holds, oldest first.
    fn list(&self) -> Result<Vec<BaseBackup>, Failure>;

    /// Check the backup's files before restoring it where the tool can (pg_verifybackup
    /// against a `backup_manifest`, `pgbackrest verify`): `Ok(Some(text))` says what ran and
    /// what it found, `Ok(None)` that there is nothing to check with; a damaged backup is a
    /// failed `Failure`. The default checks nothing.
    fn verify(&self, _backup: &BaseBackup) -> Result<Option<String>, Failure> {
        Ok(None)
    }

    /// Check the materialized copy where the backup's files can only be checked once
    /// extracted (pg_verifybackup of PostgreSQL 15-17 reads plain directories only): the
    /// same answers as `verify`, run after `materialize` and before recovery writes its
    /// settings. The default checks nothing.
    fn verify_materialized(&self, _backup: &BaseBackup, _into: &MaterializeInto) -> Result<Option<String>, Failure> {
        Ok(None)
    }

    /// Write the backup into `into.data_dir` (empty), tablespaces under
    /// `into.tablespaces_dir`, ready for `physical::recover` (no `recovery.signal`, no
    /// recovery settings: recover writes those).
    fn materialize(&self, backup: &BaseBackup, into: &MaterializeInto) -> Result<Materialized, Failure>;

    /// The `restore_command` that fetches the WAL following `backup` (PostgreSQL expands
    /// `%f` and `%p`); `None` when the source has no archive and the backup's own WAL is all
    /// there is. It must exit 1 only when a segment is truly absent and above 125 on any
    /// other failure, so recovery stops instead of ending early and promoting.
    fn restore_command(&self, backup: &BaseBackup) -> Result<Option<String>, Failure>;

    /// A recovery of `backup` that failed (`recovery`), judged again where its source is a
    /// `tools::FetchFailed`: the restore_command's tool failed fetching a segment, and what
    /// its error is about decides the class (a damaged segment is the backup's, an
    /// unreachable repository the environment's), or a [`ShortOfEnd`]: a "latest" whose
    /// replay ended before the archive's end, which a source that lists its archive asks
    /// again. Default: the failure as it is.
    fn judge_fetch(&self, _backup: &BaseBackup, recovery: Failure) -> Failure {
        recovery
    }

    /// Where the tool serves `backup`: `Ok(None)` on this machine, `Ok(Some(..))` in a Docker
    /// image (see `InImage`). Asked before anything is restored, so a backup that neither this
    /// machine nor an image here can serve is the environment's failure naming what to
    /// install or build, before any work. Default: this machine.
    fn placement(&self, _backup: &BaseBackup) -> Result<Option<InImage>, Failure> {
        Ok(None)
    }

    /// Local folders `restore_command` reads, mounted read-only at the same paths into a
    /// throwaway that runs in Docker (a major without local binaries). Default: none.
    fn paths(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// What an auditor can check the backup by: a name and the sha256 of what it names (the
    /// stored archive, or the tool's own manifest), where the source keeps one. Signed
    /// evidence makes it a subject of the run's statement. Default: none.
    fn digest(&self, _backup: &BaseBackup) -> Result<Option<(String, String)>, Failure> {
        Ok(None)
    }

    /// The sha256 of an archived WAL segment's content as the archive recorded it when it
    /// was pushed (and checked when it was fetched), for `backup`'s system. Default: none.
    fn wal_sha256(&self, _backup: &BaseBackup, _segment: &str) -> Result<Option<String>, Failure> {
        Ok(None)
    }

    /// The newest segment the archive holds on `timeline`, if the source can tell. Recovery
    /// to `latest` must reach it, or the archive has a gap.
    fn archive_end(&self, _timeline: u32) -> Result<Option<ArchiveEnd>, Failure> {
        Ok(None)
    }

    /// The schema fingerprint of `database` as it was when `backup` ended, if the source
    /// recorded one (pgdrill's own base backups do): the ground truth for the schema of a
    /// recovery to `immediate`, and of nothing later. Default: none.
    fn schema_at_end(
        &self,
        _backup: &BaseBackup,
        _database: &str,
    ) -> Result<Option<crate::pg::fingerprint::Fingerprint>, Failure> {
        Ok(None)
    }

    /// Whether the tool has expired the WAL that follows `backup` (its retention keeps only
    /// what newer backups need), so no point after `backup`'s end can be reached from it:
    /// `Some(what)` names the removed range. Asked before restoring for a target past the
    /// backup's end. Default: the source cannot tell.
    fn expired_wal_after(&self, _backup: &BaseBackup) -> Result<Option<String>, Failure> {
        Ok(None)
    }

    /// What ends the source's running tool call at once when the run is interrupted: the
    /// interrupt its step watches and gave `physical::open_with`. Default: none, the call
    /// runs to its end.
    fn interrupt(&self) -> Option<super::tools::Interrupt> {
        None
    }
}

/// A path for messages.
pub fn shown(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_segment_names_round_trip() {
        let l = Lsn::parse("16/B374D848").expect("lsn");
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(
            Lsn::parse("0/3000028").map(|l| l.segment_name(1, DEFAULT_SEGMENT_SIZE)).as_deref(),
            Some("000000010000000000000003")
        );
        assert_eq!(
            parse_segment_name("00000002000000010000000A", DEFAULT_SEGMENT_SIZE),
            Some((2, Lsn((1 << 32) | (0x0A * DEFAULT_SEGMENT_SIZE))))
        );
        assert_eq!(parse_segment_name("00000002.history", DEFAULT_SEGMENT_SIZE), None);
        assert_eq!(Lsn::parse("nonsense"), None);
        assert_eq!(Lsn::parse("1/"), None);
    }
}
