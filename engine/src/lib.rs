//! pgdrill: prove PostgreSQL backups restore.
//!
//! Data flows one way: runbook file -> model (`runbook`) -> execution (`exec`, with `steps`
//! and `template`) -> events -> reporters (`report`). The binary in `main.rs` only calls
//! `cli::main`.

pub mod archive;
pub mod backup;
pub mod child;
pub mod cli;
pub mod diag;
pub mod doctor;
pub mod error;
pub mod evidence;
pub mod exec;
pub mod facts;
pub mod fleet;
#[cfg(test)]
mod layers;
pub mod manpages;
pub mod pg;
pub mod plan;
pub mod progress;
pub mod redact;
pub mod report;
pub mod restore;
pub mod runbook;
pub mod shipped;
pub mod steps;
pub mod storage;
pub mod template;
pub mod util;

pub use error::{Error, ExitCode, Result};
