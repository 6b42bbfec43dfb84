//! What the runner needs to know, as plain data: no clap types, no I/O.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

/// One run of one command, fully decided.
#[derive(Debug, Clone)]
pub struct Config {
    /// The command word and its arguments, exactly as given.
    pub argv: Vec<OsString>,
    pub limits: Limits,
    /// Keep the command in saferun's own process group (`--foreground`).
    pub share_group: bool,
    pub leftovers: Leftovers,
    pub verbose: bool,
    pub stdin: StdinSource,
    pub output: OutputConfig,
    pub report: Option<ReportTarget>,
    /// `--on-timeout`: a shell command run before the first signal of a timeout.
    pub on_timeout: Option<OnTimeout>,
    /// A deadline inherited from an enclosing saferun (`SAFERUN_DEADLINE`).
    pub outer_deadline: Option<SystemTime>,
    /// What saferun's caller gave it that the command inherits as from a plain exec.
    pub inherited: Inherited,
}

/// What saferun's caller gave it that the command must get as from a plain exec. A
/// closed standard stream stays closed for the command (`seq 10 >&-` fails the same way
/// through saferun as without it, instead of its output vanishing), and an ignored
/// SIGPIPE stays ignored (saferun ignores it for itself either way).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inherited {
    pub stdin_closed: bool,
    pub stdout_closed: bool,
    pub stderr_closed: bool,
    pub sigpipe_ignored: bool,
}

/// Clocks and signals.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall-clock limit; `None` means none.
    pub timeout: Option<Duration>,
    /// Longest silence on stdout and stderr together.
    pub idle_timeout: Option<Duration>,
    /// Signal sent when a limit fires.
    pub signal: Signal,
    /// Grace between that signal and KILL; `None` never escalates.
    pub kill_after: Option<Duration>,
    /// After a timeout, exit with the command's own status instead of 124.
    pub preserve_status: bool,
    /// How long to keep draining after the command exits while something holds its pipes.
    pub linger: Duration,
}

/// What to do about processes that outlive the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Name them on stderr and leave them running.
    Warn,
    /// Name them and exit with [`crate::outcome::LEFTOVERS_STATUS`] if the run was otherwise a success.
    Fail,
    /// Signal them when the command exits, then KILL what is left.
    Kill,
}

/// Where the command's standard input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdinSource {
    /// saferun's own stdin: inherited when it is a terminal or a regular file, fed otherwise.
    Inherit,
    /// `--stdin-file`.
    File(PathBuf),
    /// `--input`: these bytes exactly.
    Bytes(Vec<u8>),
    /// `--no-stdin`: /dev/null.
    Null,
}

/// How the command's stdout and stderr are shaped on their way out.
#[derive(Debug, Clone, Default)]
pub struct OutputConfig {
    /// `-o`: stdout to this file instead of saferun's own stdout.
    pub stdout_file: Option<PathBuf>,
    /// `-e`: stderr to this file.
    pub stderr_file: Option<PathBuf>,
    /// `--append` to those files instead of truncating them.
    pub append: bool,
    /// `--tee`: a stream written to a file also passes through.
    pub tee: bool,
    /// `--merge`: stderr goes into the stdout pipe.
    pub merge: bool,
    /// `--max-output`: per-stream cap in bytes.
    pub max_output: Option<u64>,
    pub on_max_output: CapAction,
    /// `--prefix` template.
    pub prefix: Option<String>,
    pub timestamps: Option<Timestamps>,
    /// `--quiet-unless-fail`.
    pub quiet_unless_fail: bool,
}

/// What reaching `--max-output` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CapAction {
    /// Keep draining and drop the middle.
    #[default]
    Drop,
    /// Treat it like a timeout.
    Kill,
}

/// The clock in `--timestamps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// Seconds since the command started.
    Elapsed,
    /// RFC 3339 in UTC.
    Utc,
    /// Local time of day.
    Local,
}

/// Where `--report` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportTarget {
    Stderr,
    File(PathBuf),
}

/// `--on-timeout` and its own bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnTimeout {
    pub command: String,
    pub limit: Duration,
}
