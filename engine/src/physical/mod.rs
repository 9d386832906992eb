//! Physical backups restored and recovered to a point in time in a throwaway server, and
//! proven: the contract every source fulfils (`source`), the recovery and its proof shared by
//! all of them (`recover`), and the sources pgdrill reads other tools' backups from.
//!
//! This layer stands above `backup` and `wal` (it may use both) and below the step contract:
//! steps (`pitr.restore`) call it, it never knows about steps or runbooks.

pub mod archiving;
pub mod basebackup;
pub mod mark;
pub mod own;
pub mod pitr;
pub mod recover;
pub mod source;

pub mod barman;
pub mod barman_image;
pub mod pgbackrest;
pub mod tools;

// Which tool a location names is decided here, above the tools' own modules, so that
// tools.rs (what they share) never imports them back.
use crate::error::Failure;
use source::PhysicalSource;

/// The source a location names: `pgbackrest://STANZA?...`, `barman://SERVER?...` or
/// `barman-cloud:URL?server=...`.
/// The tool's binary is found (and its version asked) here, so a missing tool is the
/// environment's failure before anything else runs. What a source reads through pgdrill's
/// own stores (barman-cloud's backup.info) is opened among the command's `stores`. The
/// source's tool calls (its version probes first) run through `stop`: a step or command
/// watches it before opening, so Ctrl-C or the step's timeout ends any of them at once.
pub fn open_with(
    location: &str,
    stores: &crate::storage::Opened,
    stop: tools::Interrupt,
) -> Result<Box<dyn PhysicalSource>, Failure> {
    if location.starts_with(pgbackrest::SCHEME) {
        return Ok(Box::new(pgbackrest::PgBackRest::open(pgbackrest::Repo::parse(location)?, stop)?));
    }
    if location.starts_with(barman::CLOUD_SCHEME) {
        return Ok(Box::new(barman::BarmanCloud::open(barman::Cloud::parse(location)?, stores, stop)?));
    }
    if location.starts_with(barman::SERVER_SCHEME) {
        return Ok(Box::new(barman::BarmanServer::open(barman::Server::parse(location)?, stop)?));
    }
    Err(Failure::invalid(format!(
        "`{}` names no physical backup source: write pgbackrest://STANZA?config=PATH, barman://SERVER?config=PATH or barman-cloud:s3://BUCKET/PATH?server=NAME",
        crate::util::visible(location)
    )))
}

/// Whether the string names a source of another tool (rather than a pgdrill storage).
pub fn is_tool_location(location: &str) -> bool {
    location.starts_with(pgbackrest::SCHEME)
        || location.starts_with(barman::CLOUD_SCHEME)
        || location.starts_with(barman::SERVER_SCHEME)
}
