//! The error model: one [`Class`] (failed, invalid, environment) that every error of the
//! library has, the one mapping from a class to an exit code ([`Class::exit_code`]),
//! [`Failure`] (a class, a message and the field it is about), and [`Error`], the error that
//! reaches the command line (a [`Failure`], a runbook's diagnostics or an I/O error).
//!
//! Errors of the layers below the steps that are not a [`Failure`] yet (the backup
//! pipeline's, a connection's) state their class through [`Classified`], and convert into a
//! step's error or into [`Error`] through that class alone (`?`), never through a
//! hand-written match. Messages must
//! never contain secret values: callers pass them through the run's redactor before they are
//! shown.

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

    /// The class of a run that ended with this code (`None` for passed and interrupted).
    pub fn class(self) -> Option<Class> {
        Class::ALL.into_iter().find(|c| c.exit_code() == self)
    }
}

/// What an error says about the run. Every error type of the library has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// A check did not hold: a verdict (exit 1, a JUnit `<failure>`).
    Failed,
    /// The input is invalid: a runbook, a field, a variable, an argument (exit 2). Trying
    /// again cannot change it, so it is never retried.
    Invalid,
    /// The environment failed: a server unreachable, a tool missing, a disk full (exit 3);
    /// never a verdict on a backup.
    Environment,
}

impl Class {
    pub const ALL: [Class; 3] = [Class::Failed, Class::Invalid, Class::Environment];

    /// The one mapping from an error's class to the process exit code.
    pub fn exit_code(self) -> ExitCode {
        match self {
            Class::Failed => ExitCode::Failed,
            Class::Invalid => ExitCode::Invalid,
            Class::Environment => ExitCode::Environment,
        }
    }
}

/// An error that knows its class and can give up its message: what lets it become a step's
/// error or an [`Error`] with `?`, keeping its class.
pub trait Classified: std::error::Error {
    fn class(&self) -> Class;
    fn into_message(self) -> String;
    /// The field of the input it is about, if any (a step's error then names it).
    fn field(&self) -> Option<&str> {
        None
    }
}

/// An error with its class and a message safe to show, and where it points when it is about
/// a field of the input (`retry.attempts`). The shape every error of the library is moving
/// to (issue 16): the PostgreSQL servers' (`pg::native::ServerError`) and the restore
/// journal's (`restore::JournalError`) errors are this type already, and the command line's
/// [`Error`] holds one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub class: Class,
    pub message: String,
    /// Dotted path of the field it is about, if any.
    pub field: Option<String>,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Failure { class, message: message.into(), field: None }
    }

    pub fn failed(message: impl Into<String>) -> Self {
        Failure::new(Class::Failed, message)
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Failure::new(Class::Invalid, message)
    }

    pub fn environment(message: impl Into<String>) -> Self {
        Failure::new(Class::Environment, message)
    }

    /// The same error, about the field at `path`.
    pub fn at_field(self, path: impl Into<String>) -> Self {
        Failure { field: Some(path.into()), ..self }
    }
}

impl Classified for Failure {
    fn class(&self) -> Class {
        self.class
    }

    fn into_message(self) -> String {
        self.message
    }

    fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

/// What reaches the command line: a runbook's located diagnostics, an I/O error with its
/// cause, or any other [`Failure`] with its class.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems in a runbook file, each with file:line:col.
    #[error("{0}")]
    Runbook(Diagnostics),
    /// Invalid arguments or variables, an environment that could not do what was asked, or a
    /// check the command made that did not hold (`pgdrill decrypt` of a damaged archive).
    #[error(transparent)]
    Failure(Failure),
    /// An I/O error while writing a report or reading a file.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An error of `class` with `message`.
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Error::Failure(Failure::new(class, message))
    }

    /// Invalid arguments or variables (exit 2).
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::new(Class::Invalid, message)
    }

    /// The environment could not do what was asked (exit 3).
    pub fn environment(message: impl Into<String>) -> Self {
        Error::new(Class::Environment, message)
    }

    pub fn class(&self) -> Class {
        match self {
            Error::Runbook(_) => Class::Invalid,
            Error::Failure(f) => f.class,
            Error::Io { .. } => Class::Environment,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        self.class().exit_code()
    }

    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { context: context.to_string(), source }
    }
}

/// A lower layer's error reaches the command line with its class.
impl<E: Classified> From<E> for Error {
    fn from(e: E) -> Self {
        let class = e.class();
        Error::new(class, e.into_message())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_has_its_own_exit_code_and_back() {
        let codes: Vec<ExitCode> = Class::ALL.iter().map(|c| c.exit_code()).collect();
        assert_eq!(codes, [ExitCode::Failed, ExitCode::Invalid, ExitCode::Environment]);
        for c in Class::ALL {
            assert_eq!(c.exit_code().class(), Some(c));
            assert_eq!(Error::new(c, "m").class(), c);
        }
        assert_eq!(ExitCode::Passed.class(), None);
        assert_eq!(ExitCode::Interrupted.class(), None);
    }
}
