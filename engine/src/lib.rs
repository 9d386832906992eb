//! pgdrill: prove PostgreSQL backups restore.
//!
//! Data flows one way: runbook file -> model (`runbook`) -> execution (`exec`, with `steps`
//! and `template`) -> events -> reporters (`report`). The binary in `main.rs` only calls
//! `cli::main`.

pub mod archive;
pub mod backup;
pub(crate) mod child;
pub mod cli;
pub(crate) mod diag;
pub(crate) mod doctor;
pub mod error;
pub mod evidence;
pub(crate) mod exec;
pub(crate) mod facts;
pub(crate) mod fleet;
#[cfg(test)]
mod layers;
pub(crate) mod manpages;
pub(crate) mod on_exit;
pub mod pg;
pub mod physical;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod redact;
pub(crate) mod report;
pub(crate) mod restore;
pub mod runbook;
pub mod shipped;
pub mod steps;
pub mod storage;
pub(crate) mod template;
pub mod util;
pub mod wal;

pub use error::{Error, ExitCode, Result};
