//! Evidence an auditor can trust: each run's facts as an in-toto statement in a DSSE
//! envelope signed with Ed25519 (`keys`, `dsse`, `statement`), appended to a hash-chained
//! log per location with signed checkpoints (`log`), checked by `pgdrill evidence verify`
//! (`verify`), and packed for an auditor with the openssl commands that check it without
//! pgdrill (`pack`).
//!
//! Below the reporters: the report layer builds a run's statement from its summary and
//! hands it here. Nothing here knows runs, steps or servers; it signs, chains and checks.

pub mod anchors;
pub mod controls;
pub mod dsse;
pub mod immutable;
pub mod keys;
pub mod log;
pub mod pack;
pub mod remote;
pub mod statement;
pub mod timestamp;
pub mod verify;
