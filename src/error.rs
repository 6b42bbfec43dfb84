//! Why a command could not be run: the typed errors of the library.

use std::fmt;
use std::io;

/// Why a command could not be run. How a run that did start ended (a timeout, a
/// signal, an exit code) is never an error: that is its [`crate::Outcome`].
///
/// ```
/// use saferun::{Command, Error};
///
/// match Command::new("no-such-program-here").run() {
///     Err(error @ Error::NotFound { .. }) => {
///         assert_eq!(error.code(), 127);
///         assert_eq!(error.to_string(), "no-such-program-here: command not found");
///     }
///     other => panic!("{other:?}"),
/// }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The run was refused before anything was started or touched: settings that
    /// contradict each other, a file that cannot be opened, two settings naming the
    /// same file, a temporary directory that cannot be used.
    Refused {
        /// What was refused, and why, in one line.
        message: String,
    },
    /// No command of that name was found.
    NotFound {
        /// `PROGRAM: command not found`.
        message: String,
    },
    /// The command was found but cannot be executed (not executable, a directory, its
    /// `#!` interpreter missing).
    NotExecutable {
        /// `cannot execute PROGRAM: why`.
        message: String,
    },
    /// The command could not be started (out of processes, its working directory).
    CannotStart {
        /// `cannot start PROGRAM: why`, or the directory that could not be entered.
        message: String,
    },
    /// Setting the run up failed (a pipe, a thread).
    Io {
        /// What could not be done.
        what: String,
        /// Why.
        source: io::Error,
    },
}

impl Error {
    /// The exit status saferun's command line gives this error, as GNU `timeout` would:
    /// 127 when the command was not found, 126 when it cannot be executed, 125 for the
    /// rest (saferun's own failure).
    pub fn code(&self) -> i32 {
        match self {
            Error::NotFound { .. } => i32::from(crate::outcome::NOT_FOUND),
            Error::NotExecutable { .. } => i32::from(crate::outcome::CANNOT_EXECUTE),
            _ => i32::from(crate::outcome::SAFERUN_FAILED),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Refused { message }
            | Error::NotFound { message }
            | Error::NotExecutable { message }
            | Error::CannotStart { message } => f.write_str(message),
            Error::Io { what, source } => {
                write!(f, "{what}: {}", crate::files::describe(source))
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
