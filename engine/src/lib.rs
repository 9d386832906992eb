//! pgdrill: prove PostgreSQL backups restore.
//!
//! Data flows one way: runbook file -> model (`runbook`) -> execution (`exec`, with `steps`
//! and `template`) -> events -> reporters (`report`). The binary in `main.rs` only calls
//! `cli::main`.

pub(crate) mod archive;
pub(crate) mod backup;
pub(crate) mod child;
pub mod cli;
pub(crate) mod diag;
pub(crate) mod doctor;
pub(crate) mod error;
pub(crate) mod evidence;
pub(crate) mod exec;
pub(crate) mod facts;
pub(crate) mod fleet;
#[cfg(test)]
mod layers;
pub(crate) mod manpages;
pub(crate) mod on_exit;
pub(crate) mod pg;
pub(crate) mod physical;
pub(crate) mod plan;
pub(crate) mod progress;
pub(crate) mod redact;
pub(crate) mod report;
pub(crate) mod restore;
pub(crate) mod runbook;
pub(crate) mod shipped;
pub(crate) mod steps;
pub(crate) mod storage;
pub(crate) mod template;
#[doc(hidden)]
pub mod testkit;
pub(crate) mod util;
pub(crate) mod wal;

pub use error::{Error, ExitCode, Result};
