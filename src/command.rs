//! The public builder: what to run, where its streams go, and its limits.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::sys::signal::Signal;

use crate::config::{
    CapAction, Config, Hold, Leftovers, OnTimeout, Pty, ReportTarget, StdinSource, StreamConfig,
    Target, Timestamps,
};
use crate::error::Error;
use crate::handle::Handle;
use crate::host::Host;
use crate::outcome::Outcome;

/// A command to run, and how: the builder of the library, as
/// [`std::process::Command`] is std's.
///
/// Unlike std's `output()`, a run never waits for the end of a pipe that a grandchild
/// still holds (it drains for a [`linger`](Command::linger), then names the holder and
/// ends), can have a [`timeout`](Command::timeout) that stops the command's whole
/// process group (its signal, then KILL after a grace), and keeps memory bounded
/// whatever the volume: output goes where [`Output`] says as it arrives.
///
/// ```
/// use std::time::Duration;
/// use saferun::{Command, Output};
///
/// let outcome = Command::new("sh")
///     .args(["-c", "echo hello; echo oops >&2; exit 3"])
///     .timeout(Duration::from_secs(10))
///     .stdout(Output::capture())
///     .stderr(Output::capture())
///     .run()?;
/// assert_eq!(outcome.code(), 3);
/// assert_eq!(outcome.stdout().text(), "hello\n");
/// assert_eq!(outcome.stderr().text(), "oops\n");
/// # Ok::<(), saferun::Error>(())
/// ```
///
/// By default the command inherits stdin (fed through a pipe unless it is a terminal, a
/// regular file or a device), stdout and stderr pass through to the process's own, it
/// gets a process group of its own, and nothing is printed by the library itself.
#[derive(Debug, Clone)]
pub struct Command {
    config: Config,
    host: Option<Host>,
}

impl Command {
    /// A command running `program`, looked up in `PATH` (a file without `#!` runs
    /// through /bin/sh), never through a shell.
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command::from_argv([program])
    }

    /// A command from a whole argument vector, the program first (an empty one is
    /// refused when run).
    pub fn from_argv<I, S>(argv: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut config = Config::new(argv.into_iter().map(|a| a.as_ref().into()).collect());
        config.outer_deadline = crate::deadline::from_env();
        Command { config, host: None }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.config.argv.push(arg.as_ref().into());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.config
            .argv
            .extend(args.into_iter().map(|a| a.as_ref().into()));
        self
    }

    /// Sets a variable in the command's environment.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.config
            .env
            .changes
            .push((key.as_ref().into(), Some(value.as_ref().into())));
        self
    }

    /// Removes a variable from the command's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.config.env.changes.push((key.as_ref().into(), None));
        self
    }

    /// Starts the command's environment empty (the variables set after this stay).
    pub fn env_clear(&mut self) -> &mut Command {
        self.config.env.clear = true;
        self.config.env.changes.clear();
        self
    }

    /// The command's working directory.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.config.cwd = Some(dir.as_ref().into());
        self
    }

    /// Where the command's stdin comes from (the process's own, by default).
    pub fn stdin(&mut self, stdin: Stdin) -> &mut Command {
        self.config.stdin = stdin.0;
        self
    }

    /// Where the command's stdout goes (the process's own, by default).
    pub fn stdout(&mut self, output: Output) -> &mut Command {
        self.config.stdout = output.0;
        self
    }

    /// Where the command's stderr goes (the process's own, by default).
    pub fn stderr(&mut self, output: Output) -> &mut Command {
        self.config.stderr = output.0;
        self
    }

    /// Sends the command's stderr into its stdout: one pipe, in the order the kernel saw
    /// the writes, shaped as [`Command::stdout`] says.
    pub fn merge_stderr(&mut self) -> &mut Command {
        self.config.merge = true;
        self
    }

    /// A wall-clock limit: when it runs out, the command's group gets
    /// [`Command::signal`] (TERM), then KILL after [`Command::kill_after`]. What the
    /// command wrote until then is kept.
    ///
    /// ```
    /// use std::time::Duration;
    /// use saferun::{Command, Ending, Limit, Output};
    ///
    /// // A command that ignores TERM: KILL follows after the grace.
    /// let outcome = Command::new("sh")
    ///     .args(["-c", "trap '' TERM; echo partial; sleep 60"])
    ///     .timeout(Duration::from_millis(200))
    ///     .kill_after(Some(Duration::from_millis(200)))
    ///     .stdout(Output::capture())
    ///     .run()?;
    /// assert_eq!(outcome.ending(), &Ending::TimedOut { limit: Limit::Timeout, killed: true });
    /// assert_eq!(outcome.code(), 137);
    /// assert_eq!(outcome.stdout().text(), "partial\n");
    /// # Ok::<(), saferun::Error>(())
    /// ```
    pub fn timeout(&mut self, limit: Duration) -> &mut Command {
        self.config.limits.timeout = Some(limit);
        self
    }

    /// A limit on silence: no byte on stdout or stderr for this long counts as a
    /// timeout. Time the job spends blocked writing to a slow reader is not silence.
    pub fn idle_timeout(&mut self, limit: Duration) -> &mut Command {
        self.config.limits.idle_timeout = Some(limit);
        self
    }

    /// The signal a limit sends first (TERM by default); a stopped command gets CONT
    /// right after it.
    pub fn signal(&mut self, signal: Signal) -> &mut Command {
        self.config.limits.signal = signal;
        self
    }

    /// How long after the first signal KILL follows if anything is still running (5 s
    /// by default; `None`: never).
    pub fn kill_after(&mut self, grace: Option<Duration>) -> &mut Command {
        self.config.limits.kill_after = grace;
        self
    }

    /// After the command exits, how long output that its background children still
    /// hold open is drained (1 s by default); then the pipes are closed and the holders
    /// named in the outcome.
    pub fn linger(&mut self, linger: Duration) -> &mut Command {
        self.config.limits.linger = linger;
        self
    }

    /// After a timeout, make [`Outcome::code`] the command's own status instead of 124
    /// (as GNU `timeout --preserve-status`).
    pub fn preserve_status(&mut self, preserve: bool) -> &mut Command {
        self.config.limits.preserve_status = preserve;
        self
    }

    /// What to do about processes that outlive the command (name them, by default).
    ///
    /// ```
    /// use std::time::Duration;
    /// use saferun::{Command, Leftovers, Output};
    ///
    /// let outcome = Command::new("sh")
    ///     .args(["-c", "sleep 60 >/dev/null 2>&1 & echo started"])
    ///     .leftovers(Leftovers::Kill)
    ///     .kill_after(Some(Duration::from_millis(100)))
    ///     .stdout(Output::capture())
    ///     .run()?;
    /// assert!(outcome.success());
    /// assert_eq!(outcome.leftovers()[0].command, "sleep 60");
    /// # Ok::<(), saferun::Error>(())
    /// ```
    pub fn leftovers(&mut self, leftovers: Leftovers) -> &mut Command {
        self.config.leftovers = leftovers;
        self
    }

    /// Whether the command gets a process group of its own (the default): a timeout then
    /// stops its whole group. Without one (GNU `timeout --foreground`) a limit signals
    /// the command alone.
    pub fn own_group(&mut self, own: bool) -> &mut Command {
        self.config.share_group = !own;
        self
    }

    /// Before the first signal of a limit, run `shell_command` with `/bin/sh -c` (with
    /// `SAFERUN_PID`, `SAFERUN_PGID` and `SAFERUN_REASON` set), for at most `limit`.
    pub fn on_timeout(
        &mut self,
        shell_command: impl Into<String>,
        limit: Duration,
    ) -> &mut Command {
        self.config.on_timeout = Some(OnTimeout {
            command: shell_command.into(),
            limit,
        });
        self
    }

    /// Write the JSON report of the run to this file when it ends, however it ends
    /// (docs/report.md).
    pub fn report(&mut self, path: impl AsRef<Path>) -> &mut Command {
        self.config.report = Some(ReportTarget::File(path.as_ref().into()));
        self
    }

    /// Write the JSON report to the process's stderr.
    pub fn report_to_stderr(&mut self) -> &mut Command {
        self.config.report = Some(ReportTarget::Stderr);
        self
    }

    /// Print the job's notices (`saferun: timed out after 5s …`) on the process's
    /// stderr, each on a line of its own, as saferun's command line does; `verbose` adds
    /// a line for each signal sent and the process tree when a limit fires.
    pub fn print_notices(&mut self, print: bool, verbose: bool) -> &mut Command {
        self.config.print_notices = print;
        self.config.verbose = verbose;
        self
    }

    /// An enclosing deadline: the limits are fitted so that the command is stopped, and
    /// reported, before it. By default the `SAFERUN_DEADLINE` an enclosing saferun set.
    pub fn deadline(&mut self, deadline: SystemTime) -> &mut Command {
        self.config.outer_deadline = Some(deadline);
        self
    }

    /// Keep SIGPIPE ignored in the command (as when the process's own caller ignored
    /// it) instead of at its default.
    pub fn keep_sigpipe_ignored(&mut self, keep: bool) -> &mut Command {
        self.config.sigpipe_ignored = keep;
        self
    }

    /// While the command writes nothing, print a notice this often (`saferun: still
    /// running after 12m, last output 5m ago`), so that a CI runner that kills silent
    /// jobs sees life; the command's own output is never held back for it. Needs
    /// [`Command::print_notices`].
    pub fn heartbeat(&mut self, every: Duration) -> &mut Command {
        self.config.heartbeat = Some(every).filter(|every| !every.is_zero());
        self
    }

    /// Make the command's stdout a pseudo-terminal, so that it line-buffers (C stdio,
    /// Python and most runtimes block-buffer a pipe) and keeps its colours and progress
    /// bars; its stderr stays a stream of its own. What it writes is read as from a
    /// pipe: every option works the same. Without a terminal handed over by the host,
    /// the command leads a session of its own with this terminal as its controlling
    /// terminal; with one, it stays in the host's session, so that the keyboard and
    /// `/dev/tty` still reach it.
    ///
    /// ```
    /// use saferun::{Command, Output, Pty};
    ///
    /// let outcome = Command::new("sh")
    ///     .args(["-c", "[ -t 1 ] && echo terminal"])
    ///     .pty(Pty::Always)
    ///     .stdout(Output::capture())
    ///     .run()?;
    /// assert_eq!(outcome.stdout().text(), "terminal\n");
    /// # Ok::<(), saferun::Error>(())
    /// ```
    pub fn pty(&mut self, pty: Pty) -> &mut Command {
        self.config.pty = pty;
        self
    }

    /// With [`Command::pty`], the command's stdin is that terminal too, and saferun
    /// feeds it what the command's stdin would have been, line by line (canonical
    /// mode, lines of up to 4095 bytes), ending with an end-of-file character.
    pub fn pty_stdin(&mut self, on: bool) -> &mut Command {
        self.config.pty_stdin = on;
        self
    }

    /// Give the command the terminal's foreground for the run, when the host holds the
    /// terminal ([`Host::install_with_terminal`]).
    pub fn take_terminal(&mut self, take: bool) -> &mut Command {
        self.config.take_terminal = take;
        self
    }

    /// Run under `host`: the process's signals reach the command, and descendants that
    /// leave its group are still found (see [`Host`]).
    pub fn host(&mut self, host: &Host) -> &mut Command {
        self.host = Some(host.clone());
        self
    }

    /// The settings, for a [`crate::Batch`] to fit the command into its run.
    pub(crate) fn config_mut(&mut self) -> &mut Config {
        &mut self.config
    }

    /// The command and its arguments.
    pub fn argv(&self) -> &[OsString] {
        &self.config.argv
    }

    /// Runs the command to its end on this thread.
    ///
    /// `Err` when nothing could be started (and nothing was touched); a run that
    /// started always ends in an [`Outcome`], a timeout or a signal included.
    pub fn run(&mut self) -> Result<Outcome, Error> {
        crate::job::run(&self.config, self.host.as_ref())
    }

    /// Starts the command and returns at once; the job runs on a thread of its own.
    /// Dropping the [`Handle`] stops the job (KILL to its whole tree).
    pub fn spawn(&mut self) -> Result<Handle, Error> {
        Handle::start(&self.config, self.host.as_ref())
    }

    /// Refuses this command without running it, as [`Command::run`] refuses one whose
    /// settings cannot work: the report is written (unless it would overwrite another
    /// file the command names), and the error returned. For front ends that check more
    /// than the builder can (saferun's command line checks its options this way).
    pub fn refuse(&self, message: impl Into<String>) -> Error {
        let notices = crate::notices::Notices::new(false, false);
        let refusal = crate::files::Refusal {
            message: message.into(),
            report_writable: crate::job::report_writable(&self.config),
        };
        crate::job::refuse(&self.config, refusal, &notices)
    }
}

/// Where the command's stdin comes from.
///
/// ```
/// use saferun::{Command, Output, Stdin};
///
/// let outcome = Command::new("tr")
///     .args(["a-z", "A-Z"])
///     .stdin(Stdin::bytes("shout\n"))
///     .stdout(Output::capture())
///     .run()?;
/// assert_eq!(outcome.stdout().text(), "SHOUT\n");
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Stdin(StdinSource);

impl Stdin {
    /// The process's own stdin: given to the command as it is when it is a terminal, a
    /// regular file or a device; fed through a pipe otherwise.
    pub fn inherit() -> Stdin {
        Stdin(StdinSource::Inherit)
    }

    /// /dev/null.
    pub fn null() -> Stdin {
        Stdin(StdinSource::Null)
    }

    /// Closed, as a plain exec with a closed descriptor 0 would leave it.
    pub fn closed() -> Stdin {
        Stdin(StdinSource::Closed)
    }

    /// These bytes, exactly; then end of file.
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Stdin {
        Stdin(StdinSource::Bytes(bytes.into()))
    }

    /// This file (given to the command as it is: seekable). Opened when the run starts;
    /// a file that cannot be opened refuses the run.
    pub fn file(path: impl Into<PathBuf>) -> Stdin {
        Stdin(StdinSource::File(path.into()))
    }

    /// Whatever this reader gives, fed by a thread; a read error stops the command (the
    /// outcome is [`crate::Ending::Failed`]) rather than passing a truncated input for a
    /// whole one. A reader serves one run; later runs of the same command get nothing.
    pub fn reader(reader: impl Read + Send + 'static) -> Stdin {
        Stdin(StdinSource::Reader(Arc::new(Mutex::new(Some(Box::new(
            reader,
        ))))))
    }
}

/// Where one of the command's output streams goes, and how it is shaped on the way.
///
/// ```
/// use saferun::{Command, Output};
///
/// // At most 1 KiB kept, the first and the last half: the command is never blocked,
/// // the middle is dropped and counted.
/// let outcome = Command::new("seq")
///     .arg("100000")
///     .stdout(Output::capture().cap(1024))
///     .run()?;
/// let stdout = outcome.stdout();
/// assert!(stdout.head().starts_with(b"1\n2\n3\n"));
/// assert!(stdout.tail().ends_with(b"99999\n100000\n"));
/// assert_eq!(stdout.bytes().len(), 1024);
/// assert_eq!(stdout.elided(), 588_895 - 1024);
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Output(StreamConfig);

impl Output {
    fn to(target: Target) -> Output {
        Output(StreamConfig {
            to: target,
            ..StreamConfig::default()
        })
    }

    /// The process's own stdout (or stderr), as the command wrote it.
    pub fn inherit() -> Output {
        Output::to(Target::Inherit)
    }

    /// Read and dropped: still counted, and still watched by the idle timeout.
    pub fn null() -> Output {
        Output::to(Target::Null)
    }

    /// Closed for the command, as a plain exec with a closed descriptor would leave it.
    pub fn closed() -> Output {
        Output::to(Target::Closed)
    }

    /// A file, created or truncated when the run starts (a file that cannot be opened
    /// refuses the run).
    pub fn file(path: impl Into<PathBuf>) -> Output {
        Output::to(Target::File {
            path: path.into(),
            append: false,
        })
    }

    /// A file, appended to.
    pub fn append(path: impl Into<PathBuf>) -> Output {
        Output::to(Target::File {
            path: path.into(),
            append: true,
        })
    }

    /// Kept in memory and handed back in the [`Outcome`] (see [`Outcome::stdout`]).
    /// Every byte, unless a [`cap`](Output::cap) bounds it.
    pub fn capture() -> Output {
        Output::to(Target::Capture)
    }

    /// Each line handed to `callback` as it arrives, without its line ending, from the
    /// stream's own thread.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use saferun::{Command, Output};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let lines = seen.clone();
    /// Command::new("printf")
    ///     .arg("one\ntwo\n")
    ///     .stdout(Output::lines(move |line| {
    ///         lines.lock().unwrap().push(String::from_utf8_lossy(line).into_owned())
    ///     }))
    ///     .run()?;
    /// assert_eq!(*seen.lock().unwrap(), ["one", "two"]);
    /// # Ok::<(), saferun::Error>(())
    /// ```
    pub fn lines(callback: impl FnMut(&[u8]) + Send + 'static) -> Output {
        Output::to(Target::Lines(Arc::new(Mutex::new(Box::new(callback)))))
    }

    /// Also pass the stream through to the process's own (for a file, a capture or a
    /// callback).
    pub fn tee(mut self) -> Output {
        self.0.tee = true;
        self
    }

    /// Keep at most `bytes`: the first half as it comes, the last half at the end (after
    /// a `[saferun: N bytes elided]` line, except in a capture, which says where it cut).
    /// The rest is still read, so the command never blocks.
    pub fn cap(mut self, bytes: u64) -> Output {
        self.0.cap = Some(bytes);
        self
    }

    /// Reaching the cap stops the command, as a timeout does.
    pub fn kill_at_cap(mut self) -> Output {
        self.0.on_cap = CapAction::Kill;
        self
    }

    /// Prefix every line with `template`, where `{stream}` is `out` or `err`, `{pid}` the
    /// command's pid and `{command}` its first word. Every line is written whole, with
    /// one write, so that writers sharing a pipe never cut each other's lines.
    pub fn prefix(mut self, template: impl Into<String>) -> Output {
        self.0.prefix = Some(template.into());
        self
    }

    /// Start every line with a time.
    pub fn timestamps(mut self, clock: Timestamps) -> Output {
        self.0.timestamps = Some(clock);
        self
    }

    /// Wherever the stream goes, also keep its first and last `bytes / 2` bytes in
    /// memory, for [`crate::Outcome::stdout_excerpt`] (a test report's excerpt of
    /// output that went to the terminal). The stream is then copied, never spliced.
    pub fn keep_excerpt(mut self, bytes: u64) -> Output {
        self.0.excerpt = Some(bytes);
        self
    }

    /// Hold what passes through to the process's own stream, and print it only if the
    /// run fails, as `chronic` does (spilling to an unnamed temporary file past 1 MiB).
    pub fn hold_unless_failure(mut self) -> Output {
        self.0.hold = Hold::UnlessSuccess;
        self
    }

    /// Hold what passes through to the process's own stream until the run ends, then
    /// print it as one block.
    pub fn hold_until_end(mut self) -> Output {
        self.0.hold = Hold::UntilEnd;
        self
    }
}
