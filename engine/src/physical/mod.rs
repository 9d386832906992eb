//! Physical backups restored and recovered to a point in time in a throwaway server, and
//! proven: the contract every source fulfils (`source`), the recovery and its proof shared by
//! all of them (`recover`), and the sources pgdrill reads other tools' backups from.
//!
//! This layer stands above `backup` and `wal` (it may use both) and below the step contract:
//! steps (`pitr.restore`) call it, it never knows about steps or runbooks.

pub mod archiving;
pub mod basebackup;
pub mod own;
pub mod pitr;
pub mod recover;
pub mod source;

pub mod barman;
pub mod pgbackrest;
pub mod tools;
