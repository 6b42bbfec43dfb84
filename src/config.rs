//! What a job needs to know, as plain data: no clap types, no I/O. The public
//! [`crate::Command`] builder fills one in.

use std::ffi::OsString;
use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

/// One run of one command, fully decided.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// The command word and its arguments, exactly as given.
    pub argv: Vec<OsString>,
    pub env: Env,
    pub cwd: Option<PathBuf>,
    pub limits: Limits,
    /// Keep the command in saferun's own process group (`--foreground`).
    pub share_group: bool,
    pub leftovers: Leftovers,
    /// Print saferun's notices (`saferun: …`) on the process's stderr.
    pub print_notices: bool,
    /// And the `--verbose` ones.
    pub verbose: bool,
    pub stdin: StdinSource,
    pub stdout: StreamConfig,
    pub stderr: StreamConfig,
    /// `--merge`: stderr goes into the stdout pipe (and `stderr` is not used).
    pub merge: bool,
    pub report: Option<ReportTarget>,
    /// `--on-timeout`: a shell command run before the first signal of a timeout.
    pub on_timeout: Option<OnTimeout>,
    /// A deadline inherited from an enclosing saferun (`SAFERUN_DEADLINE`).
    pub outer_deadline: Option<SystemTime>,
    /// The command keeps SIGPIPE ignored (as saferun's caller had it).
    pub sigpipe_ignored: bool,
    /// Hand the terminal's foreground to the command when the host holds it.
    pub take_terminal: bool,
    /// While the command is silent, a notice this often (`--heartbeat`).
    pub heartbeat: Option<Duration>,
    /// Whether the command's stdout is a pseudo-terminal (`--pty`).
    pub pty: Pty,
    /// Its stdin is that terminal too (`--pty-stdin`), fed by saferun.
    pub pty_stdin: bool,
    /// Where `--timestamps`' elapsed clock starts (a batch's start), if not at the
    /// command's.
    pub clock_start: Option<std::time::Instant>,
    /// The open-file soft limit the command gets back (a batch raised its own).
    pub nofile_soft: Option<u64>,
    /// The job's place in a batch: its name, and the shared console that what passes
    /// through and its notices go to instead of the process's own streams.
    pub seat: Option<crate::console::Seat>,
}

impl Config {
    pub fn new(argv: Vec<OsString>) -> Config {
        Config {
            argv,
            env: Env::default(),
            cwd: None,
            limits: Limits::default(),
            share_group: false,
            leftovers: Leftovers::Warn,
            print_notices: false,
            verbose: false,
            stdin: StdinSource::Inherit,
            stdout: StreamConfig::default(),
            stderr: StreamConfig::default(),
            merge: false,
            report: None,
            on_timeout: None,
            outer_deadline: None,
            sigpipe_ignored: false,
            take_terminal: false,
            heartbeat: None,
            pty: Pty::Never,
            pty_stdin: false,
            clock_start: None,
            nofile_soft: None,
            seat: None,
        }
    }

    /// The configuration of one of the command's output streams.
    pub fn stream(&self, stream: crate::event::Stream) -> &StreamConfig {
        match stream {
            crate::event::Stream::Stdout => &self.stdout,
            crate::event::Stream::Stderr => &self.stderr,
        }
    }
}

/// Changes to the environment the command inherits.
#[derive(Debug, Clone, Default)]
pub(crate) struct Env {
    /// Start from an empty environment instead of the process's.
    pub clear: bool,
    /// Set (`Some`) or removed (`None`), in order.
    pub changes: Vec<(OsString, Option<OsString>)>,
}

/// Clocks and signals.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// Wall-clock limit; `None` means none.
    pub timeout: Option<Duration>,
    /// The wall-clock limit is what a batch's total timeout left (for messages).
    pub timeout_is_total: bool,
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

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: None,
            timeout_is_total: false,
            idle_timeout: None,
            signal: Signal::SIGTERM,
            kill_after: Some(Duration::from_secs(5)),
            preserve_status: false,
            linger: Duration::from_secs(1),
        }
    }
}

/// Whether the command's stdout is a pseudo-terminal, so that it line-buffers (see
/// [`crate::Command::pty`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pty {
    /// A pipe, as usual.
    #[default]
    Never,
    /// A pseudo-terminal; the run is refused if none can be opened.
    Always,
    /// A pseudo-terminal if one can be opened, else a pipe.
    IfAvailable,
}

/// What to do about processes that outlive the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Leftovers {
    /// Name them (on stderr, in the report) and leave them running.
    #[default]
    Warn,
    /// Name them, and make a run that otherwise succeeded fail with status 122.
    Fail,
    /// Signal them when the command exits (the limit's signal, then KILL after the
    /// grace), and name them.
    Kill,
}

/// Where the command's standard input comes from.
#[derive(Clone, Default)]
pub(crate) enum StdinSource {
    /// The process's own stdin: inherited when it is a terminal, a regular file or a
    /// device, fed otherwise.
    #[default]
    Inherit,
    /// `--stdin-file`.
    File(PathBuf),
    /// `--input`: these bytes exactly.
    Bytes(Vec<u8>),
    /// Whatever this reader gives (taken by the first run).
    Reader(SharedReader),
    /// `--no-stdin`: /dev/null.
    Null,
    /// Closed, as saferun's own was.
    Closed,
}

/// A reader for the command's stdin, taken by the run that uses it.
pub(crate) type SharedReader = Arc<Mutex<Option<Box<dyn Read + Send>>>>;

impl fmt::Debug for StdinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StdinSource::Inherit => f.write_str("Inherit"),
            StdinSource::File(path) => f.debug_tuple("File").field(path).finish(),
            StdinSource::Bytes(bytes) => write!(f, "Bytes({} bytes)", bytes.len()),
            StdinSource::Reader(_) => f.write_str("Reader"),
            StdinSource::Null => f.write_str("Null"),
            StdinSource::Closed => f.write_str("Closed"),
        }
    }
}

/// How one output stream of the command is shaped on its way out.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamConfig {
    pub to: Target,
    /// A stream that goes to a file, a capture or a callback also passes through to the
    /// process's own stream (`--tee`).
    pub tee: bool,
    /// What passes through to the process's own stream is held, and printed only if
    /// the run fails (`--quiet-unless-fail`), or when it ends (`--group`).
    pub hold: Hold,
    /// Keep at most this many bytes: the first half, and the last half at the end.
    pub cap: Option<u64>,
    /// Also keep in memory the first and last bytes of what the stream delivers, at
    /// most this many (for an excerpt in the outcome).
    pub excerpt: Option<u64>,
    pub on_cap: CapAction,
    /// Prefix every line (`{stream}`, `{pid}`, `{command}` filled in).
    pub prefix: Option<String>,
    pub timestamps: Option<Timestamps>,
}

impl StreamConfig {
    /// Whether lines are reshaped (which needs the bytes in saferun's hands).
    pub fn line_mode(&self) -> bool {
        self.prefix.is_some() || self.timestamps.is_some()
    }

    /// Whether anything of it reaches the process's own stream.
    pub fn passes_through(&self) -> bool {
        matches!(self.to, Target::Inherit) || self.tee
    }
}

/// Whether, and until when, output that passes through is held back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Passed on as it comes.
    #[default]
    No,
    /// Printed when the run ends, if it failed (`--quiet-unless-fail`, as `chronic`).
    UnlessSuccess,
    /// Printed when the run ends, as one block (`--group`).
    UntilEnd,
}

/// Where an output stream goes.
#[derive(Clone, Default)]
pub(crate) enum Target {
    /// The process's own stdout or stderr.
    #[default]
    Inherit,
    /// Read and dropped (still counted, still watched by `--idle-timeout`).
    Null,
    /// Closed for the command, as saferun's own was.
    Closed,
    /// A file, created or truncated (or appended to).
    File { path: PathBuf, append: bool },
    /// Kept in memory and handed back in the outcome.
    Capture,
    /// Each line handed to a callback.
    Lines(LineCallback),
}

/// A callback for each line of output.
pub(crate) type LineCallback = Arc<Mutex<Box<dyn FnMut(&[u8]) + Send>>>;

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Inherit => f.write_str("Inherit"),
            Target::Null => f.write_str("Null"),
            Target::Closed => f.write_str("Closed"),
            Target::File { path, append } => f
                .debug_struct("File")
                .field("path", path)
                .field("append", append)
                .finish(),
            Target::Capture => f.write_str("Capture"),
            Target::Lines(_) => f.write_str("Lines"),
        }
    }
}

/// What reaching `--max-output` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum CapAction {
    /// Keep draining and drop the middle.
    #[default]
    Drop,
    /// Treat it like a timeout.
    Kill,
}

/// The clock in front of each line (`--timestamps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamps {
    /// Seconds since the command started.
    Elapsed,
    /// RFC 3339 in UTC.
    Utc,
    /// Local time of day.
    Local,
}

/// Where the JSON report goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReportTarget {
    Stderr,
    File(PathBuf),
}

/// `--on-timeout` and its own bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnTimeout {
    pub command: String,
    pub limit: Duration,
}
