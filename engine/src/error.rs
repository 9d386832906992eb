//! The error model: one [`Class`] (failed, invalid, environment) that every error of the
//! library has, the one mapping from a class to an exit code ([`Class::exit_code`]), and one
//! error type, [`Failure`]: a class, a message, the field of the input it is about if any,
//! and the error that caused it as its `source`. The backup pipeline, connections, the
//! PostgreSQL servers and the restore journal return a `Failure`; a step's error is a
//! `Failure` or a skip (`steps::StepError`); the command line's [`Error`] is a `Failure` or
//! a runbook's diagnostics.
//!
//! A lower layer keeps a typed error only where its callers match on its variants (a held
//! restore lock, a damaged archive's reason, a ledger's line); such a type states its class
//! through [`Classified`] and becomes a `Failure`, a step's error or an [`Error`] with `?`,
//! never through a hand-written match from one set of classes onto another. Messages must
//! never contain secret values: callers pass them through the run's redactor before they
//! are shown.

use std::fmt;
use std::sync::Arc;

use crate::diag::Diagnostics;

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

/// A typed error of a lower layer, kept because its callers match on its variants (a held
/// restore lock, a damaged archive's reason, a ledger's line), that states its class: `?`
/// turns it into a [`Failure`], a step's error or an [`Error`] through that class alone.
pub trait Classified: std::error::Error + Send + Sync + Sized + 'static {
    fn class(&self) -> Class;

    /// The [`Failure`] it becomes: its class and message, and itself as the source (a caller
    /// can still find it with `downcast_ref`).
    fn into_failure(self) -> Failure {
        Failure::new(self.class(), self.to_string()).with_source(self)
    }
}

/// The cause an error keeps: shared, so that an error can be cloned (a step's error is
/// recorded and reported more than once).
pub type Source = Arc<dyn std::error::Error + Send + Sync>;

/// The error of the library: a class, a message safe to show, where it points when it is
/// about a field of the input (`retry.attempts`), and the error that caused it, if any.
///
/// The message is what users see (terminal, JUnit, run.json) and says everything they need,
/// the cause's text included where it matters; the source is kept for a program that looks
/// for a particular cause (`std::error::Error::source`, then `downcast_ref`), not shown
/// again. Two failures are equal when class, message and field are: a source has no
/// equality.
#[derive(Debug, Clone)]
pub struct Failure {
    pub class: Class,
    pub message: String,
    /// Dotted path of the field it is about, if any.
    pub field: Option<String>,
    pub source: Option<Source>,
}

impl Failure {
    pub fn new(class: Class, message: impl Into<String>) -> Self {
        Failure { class, message: message.into(), field: None, source: None }
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

    /// The same error, caused by `source`.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Failure { source: Some(Arc::new(source)), ..self }
    }

    /// The same error, its message prefixed with `context: ` (class, field and source kept).
    pub fn context(self, context: impl fmt::Display) -> Self {
        Failure { message: format!("{context}: {}", self.message), ..self }
    }

    /// The same error in another class, for a caller that knows better than the layer that
    /// made it what it means here (a connection string that does not parse is the input's
    /// fault when it comes from a step's `with:`).
    pub fn in_class(self, class: Class) -> Self {
        Failure { class, ..self }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Failure {
    fn eq(&self, other: &Self) -> bool {
        (self.class, &self.message, &self.field) == (other.class, &other.message, &other.field)
    }
}

impl Eq for Failure {}

/// A typed error becomes a failure with its class.
impl<E: Classified> From<E> for Failure {
    fn from(e: E) -> Self {
        e.into_failure()
    }
}

/// What reaches the command line: a runbook's located diagnostics, or any other [`Failure`]
/// with its class.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Problems in a runbook file, each with file:line:col.
    #[error("{0}")]
    Runbook(Diagnostics),
    /// Invalid arguments or variables, an environment that could not do what was asked (an
    /// I/O error while writing a report or reading a file, with its cause), or a check the
    /// command made that did not hold (`pgdrill decrypt` of a damaged archive).
    #[error(transparent)]
    Failure(Failure),
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
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        self.class().exit_code()
    }

    /// An I/O error while doing `context` (the environment's), with the error as its source.
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Failure(Failure::environment(format!("{context}: {source}")).with_source(source))
    }

    /// As a [`Failure`] (a runbook's diagnostics are invalid input, their text the message),
    /// for a nested runbook's step.
    pub fn into_failure(self) -> Failure {
        match self {
            Error::Runbook(d) => Failure::invalid(d.to_string()),
            Error::Failure(f) => f,
        }
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Failure(f)
    }
}

/// A lower layer's typed error reaches the command line with its class.
impl<E: Classified> From<E> for Error {
    fn from(e: E) -> Self {
        Error::Failure(e.into_failure())
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

    /// A typed error of a lower layer, for the tests below.
    #[derive(Debug, thiserror::Error)]
    #[error("typed")]
    struct Typed;

    impl Classified for Typed {
        fn class(&self) -> Class {
            Class::Environment
        }
    }

    /// The cause is kept for a program to find, the message stays what users see, and
    /// context, field and class changes keep the rest.
    #[test]
    fn a_failure_keeps_its_source_through_context_and_compares_without_it() {
        use std::error::Error as _;
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let f = Failure::environment("reading x: denied").with_source(io).context("backup").at_field("key");
        assert_eq!(f.to_string(), "backup: reading x: denied");
        assert_eq!(f.field.as_deref(), Some("key"));
        let cause = f.source().and_then(|s| s.downcast_ref::<std::io::Error>()).expect("the io::Error");
        assert_eq!(cause.kind(), std::io::ErrorKind::PermissionDenied);
        assert_eq!(f, Failure::environment("backup: reading x: denied").at_field("key"));
        assert_ne!(f, f.clone().in_class(Class::Invalid));
        assert_eq!(f.clone().in_class(Class::Invalid).source().map(|s| s.to_string()), Some("denied".into()));

        let typed = Failure::from(Typed);
        assert_eq!((typed.class, typed.message.as_str()), (Class::Environment, "typed"));
        assert!(typed.source().is_some_and(|s| s.is::<Typed>()));
        let cli = Error::from(Typed);
        assert_eq!((cli.class(), cli.to_string()), (Class::Environment, "typed".to_string()));
        let io = Error::io("cannot write r.xml", std::io::Error::other("disk full"));
        assert_eq!((io.class(), io.to_string()), (Class::Environment, "cannot write r.xml: disk full".to_string()));
    }
}
