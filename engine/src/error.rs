//! Errors that reach the command line, each knowing its exit code.
//!
//! Library code returns these; only `cli` turns them into text on stderr and a process exit
//! status. Messages must never contain secret values: callers pass them through the run's
//! redactor before they are shown.

use std::fmt;

use crate::runbook::Diagnostics;

/// Process exit codes, documented in the README and tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitCode {
    /// Every step and budget passed.
    Passed = 0,
    /// A step, an assertion or a budget failed.
    Failed = 1,
    /// The input is invalid: a runbook, a variable, an argument.
    Invalid = 2,
    /// The environment failed: server unreachable, tool missing, Docker absent.
    Environment = 3,
    /// Stopped by SIGINT or SIGTERM, after rollbacks and `finally` ran.
    Interrupted = 130,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// What went wrong, with the exit code it maps to.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems in a runbook file, each with file:line:col.
    #[error("{0}")]
    Runbook(Diagnostics),
    /// Invalid arguments or variables.
    #[error("{0}")]
    Invalid(String),
    /// The environment could not do what was asked.
    #[error("{0}")]
    Environment(String),
    /// An I/O error while writing a report or reading a file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Runbook(_) | Error::Invalid(_) => ExitCode::Invalid,
            Error::Environment(_) | Error::Io { .. } => ExitCode::Environment,
        }
    }

    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { context: context.to_string(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
