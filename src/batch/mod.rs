//! Several commands at once: a batch of jobs with one console, one status and one
//! report.
//!
//! ```text
//! start   jobs in order, at most N at once, each a Handle with its own limits and tree
//! wait    the first job to end, a signal to the process, or the total deadline
//! decide  --fail-fast and --until stop the rest; a stop signal starts no more
//! end     summary and report; the status of the first job that failed
//! ```

mod summary;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select};
use nix::sys::signal::Signal;

use crate::command::{Command, Stdin};
use crate::config::StdinSource;
use crate::console::Console;
use crate::error::Error;
use crate::event::Stream;
use crate::handle::Handle;
use crate::host::Host;
use crate::outcome::{Ending, Outcome};

/// Several commands run at once, each a job with its own limits, process tree and
/// leftovers, sharing the process's stdout and stderr line by line.
///
/// What passes through to the process's own streams is written in whole lines, each
/// with the job's name in front (`[{name}] ` unless the stream has a prefix of its own,
/// where `{name}` may be used too), and lines of different jobs never cut into each
/// other. Jobs whose stdin is inherited get /dev/null instead, but the one
/// [`Batch::stdin_to`] names.
///
/// ```
/// use std::time::Duration;
/// use saferun::{Batch, Command};
///
/// let mut server = Command::new("sleep");
/// server.arg("30");
/// let mut tests = Command::new("true");
/// tests.timeout(Duration::from_secs(10));
/// let outcome = Batch::new()
///     .add("server", server)
///     .add("tests", tests)
///     .until("tests")
///     .run()?;
/// assert_eq!(outcome.code(), 0, "the tests' status");
/// assert!(outcome.jobs()[0].stopped_by().is_some(), "the server was stopped");
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Batch {
    jobs: Vec<(String, Command)>,
    parallel: Option<usize>,
    fail_fast: bool,
    until: Option<String>,
    stdin_to: Option<String>,
    total_timeout: Option<Duration>,
    host: Option<Host>,
    color: Color,
    summary: bool,
    status_line: bool,
    report: Option<ReportTo>,
}

#[derive(Debug, Clone)]
enum ReportTo {
    File(PathBuf),
    Stderr,
}

/// Whether the name in front of each line is coloured (each job its own colour).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Color {
    /// Where the stream is a terminal, and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Why the batch stopped a job, or never started it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopCause {
    /// [`Batch::fail_fast`]: this job failed.
    FailFast {
        /// The job that failed.
        failed: String,
    },
    /// [`Batch::until`]: this job ended.
    Until {
        /// The job that ended.
        ended: String,
    },
    /// The process received this signal ([`Batch::host`]).
    Signal(Signal),
    /// [`Batch::total_timeout`] ran out.
    TotalTimeout,
}

/// How one job of a batch ended.
#[derive(Debug)]
#[non_exhaustive]
// One per job, made once: the outcome is not worth a box.
#[allow(clippy::large_enum_variant)]
pub enum JobEnd {
    /// It ran: its outcome.
    Ran(Outcome),
    /// It could not be started (not found, not executable, a file it could not open).
    NotRun(Error),
    /// It was never started: the batch was stopping (see [`JobOutcome::stopped_by`]).
    NotStarted,
}

impl JobEnd {
    fn failed(&self) -> bool {
        match self {
            JobEnd::Ran(outcome) => {
                !outcome.success()
                    && !matches!(
                        outcome.ending(),
                        Ending::Stopped { .. } | Ending::Cancelled { .. }
                    )
            }
            JobEnd::NotRun(_) => true,
            JobEnd::NotStarted => false,
        }
    }
}

/// One job of a finished batch.
#[derive(Debug)]
pub struct JobOutcome {
    name: String,
    argv: Vec<std::ffi::OsString>,
    end: JobEnd,
    stopped_by: Option<StopCause>,
    /// When it started, from the batch's start.
    started: Option<Duration>,
}

impl JobOutcome {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its command and arguments.
    pub fn argv(&self) -> &[std::ffi::OsString] {
        &self.argv
    }

    /// How it ended.
    pub fn end(&self) -> &JobEnd {
        &self.end
    }

    /// Its outcome, if it ran.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.end {
            JobEnd::Ran(outcome) => Some(outcome),
            _ => None,
        }
    }

    /// Why the batch stopped it (or never started it), if it did.
    pub fn stopped_by(&self) -> Option<&StopCause> {
        self.stopped_by.as_ref()
    }

    /// Whether it failed: it could not be started, or it ran and did not succeed, and
    /// it was not stopped by the batch or by a signal to the process (those never count
    /// as failures).
    pub fn failed(&self) -> bool {
        self.end.failed() && !matches!(self.stopped_by, Some(StopCause::Signal(_)))
    }

    /// How it ended, in a few words (`exited 1`, `stopped (--fail-fast: lint failed)`,
    /// `not started (--until: tests ended)`, …), as the summary says it.
    pub fn describe(&self) -> String {
        summary::how_it_ended(self)
    }

    /// The exit status saferun's command line gives this job, as for one command
    /// (`None` if it never started).
    pub fn code(&self) -> Option<i32> {
        match &self.end {
            JobEnd::Ran(outcome) => Some(outcome.code()),
            JobEnd::NotRun(error) => Some(error.code()),
            JobEnd::NotStarted => None,
        }
    }
}

/// What decides a batch's exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Every job succeeded.
    Success,
    /// This job's status: the one [`Batch::until`] named, or the first that failed.
    Job(usize),
    /// A signal stopped the batch before anything failed: die of it.
    Signal(Signal),
    /// The total timeout left jobs unstarted, and none failed.
    TimedOut,
}

/// A finished batch.
#[derive(Debug)]
pub struct BatchOutcome {
    jobs: Vec<JobOutcome>,
    verdict: Verdict,
    duration: Duration,
}

impl BatchOutcome {
    /// Every job, in the order they were added.
    pub fn jobs(&self) -> &[JobOutcome] {
        &self.jobs
    }

    /// The job of this name.
    pub fn job(&self, name: &str) -> Option<&JobOutcome> {
        self.jobs.iter().find(|job| job.name == name)
    }

    /// Whether every job succeeded (or [`Batch::until`]'s job did).
    pub fn success(&self) -> bool {
        self.code() == 0
    }

    /// The exit status saferun's command line ends with: 0 if every job succeeded;
    /// the status of the job [`Batch::until`] named, when it ended by itself; else that
    /// of the first job that failed (as for one command: 124 for a timeout, …); 128+N
    /// when signal N stopped the batch; 124 when the total timeout left jobs unstarted.
    pub fn code(&self) -> i32 {
        match self.verdict {
            Verdict::Success => 0,
            Verdict::Job(index) => self.jobs[index].code().unwrap_or(0),
            Verdict::Signal(signal) => 128 + signal as i32,
            Verdict::TimedOut => i32::from(crate::outcome::TIMED_OUT),
        }
    }

    /// From the first job's start to the last one's end.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The JSON report of the batch: a `jobs` array (each the report of one command,
    /// with its `name`) and the totals (docs/report.md).
    pub fn report(&self) -> String {
        summary::report(self)
    }

    /// Ends this process as saferun's command line does: with [`BatchOutcome::code`],
    /// or by the same death as the job that decides it died of (or the signal that
    /// stopped the batch).
    pub fn exit(&self) -> ! {
        match self.verdict {
            Verdict::Job(index) => match &self.jobs[index].end {
                JobEnd::Ran(outcome) => outcome.exit(),
                _ => std::process::exit(self.code()),
            },
            Verdict::Signal(signal) => crate::group::die_of(signal as i32),
            _ => std::process::exit(self.code()),
        }
    }
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// The jobs' names, in the order they were added.
    pub fn names(&self) -> Vec<&str> {
        self.jobs.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// Adds a job (names must be unique and not empty).
    pub fn add(&mut self, name: impl Into<String>, command: Command) -> &mut Batch {
        self.jobs.push((name.into(), command));
        self
    }

    /// At most `jobs` at once (0: all); the rest start in order as jobs end.
    pub fn parallel(&mut self, jobs: usize) -> &mut Batch {
        self.parallel = (jobs > 0).then_some(jobs);
        self
    }

    /// The first job that fails stops the others (their signal, their grace, KILL, as a
    /// timeout does) and no more start.
    pub fn fail_fast(&mut self, fail_fast: bool) -> &mut Batch {
        self.fail_fast = fail_fast;
        self
    }

    /// When the job `name` ends, the others are stopped, and the batch's status is
    /// that job's (a server and its tests).
    pub fn until(&mut self, name: impl Into<String>) -> &mut Batch {
        self.until = Some(name.into());
        self
    }

    /// The job `name` keeps the stdin it was given (and the terminal, under a host that
    /// holds it); every other job whose stdin is inherited reads /dev/null.
    pub fn stdin_to(&mut self, name: impl Into<String>) -> &mut Batch {
        self.stdin_to = Some(name.into());
        self
    }

    /// A limit for the whole batch: every job is stopped by then (as by its own
    /// timeout), and none starts after it.
    pub fn total_timeout(&mut self, limit: Duration) -> &mut Batch {
        self.total_timeout = Some(limit);
        self
    }

    /// Runs every job under `host`: a signal to the process reaches every job, and
    /// each job's escapees are found (see [`Host`]).
    pub fn host(&mut self, host: &Host) -> &mut Batch {
        self.host = Some(host.clone());
        self
    }

    /// Whether the names in front of lines are coloured.
    pub fn color(&mut self, color: Color) -> &mut Batch {
        self.color = color;
        self
    }

    /// At the end, print a summary on the process's stderr, one line per job; and while
    /// it runs, on a terminal, a live status line.
    pub fn print_summary(&mut self, print: bool) -> &mut Batch {
        self.summary = print;
        self.status_line = print;
        self
    }

    /// Write the batch's JSON report to `path` when it ends.
    pub fn report(&mut self, path: impl Into<PathBuf>) -> &mut Batch {
        self.report = Some(ReportTo::File(path.into()));
        self
    }

    /// Write the batch's JSON report to the process's stderr when it ends.
    pub fn report_to_stderr(&mut self) -> &mut Batch {
        self.report = Some(ReportTo::Stderr);
        self
    }

    /// Refuses the batch as [`Batch::run`] refuses one whose settings cannot work:
    /// nothing starts. `Ok` when it is fine.
    pub fn check(&self) -> Result<(), Error> {
        let refuse = |message: String| Err(Error::Refused { message });
        if self.jobs.is_empty() {
            return refuse("no command to run".into());
        }
        let mut seen = std::collections::HashSet::with_capacity(self.jobs.len());
        for (at, (name, _)) in self.jobs.iter().enumerate() {
            if name.is_empty() {
                return refuse(format!("command {} has an empty name", at + 1));
            }
            if !seen.insert(name.as_str()) {
                return refuse(format!("two commands are named {name:?}"));
            }
        }
        for (option, name) in [("--until", &self.until), ("--stdin-to", &self.stdin_to)] {
            if let Some(name) = name
                && !self.jobs.iter().any(|(job, _)| job == name)
            {
                return refuse(format!("{option} {name:?} names no command"));
            }
        }
        Ok(())
    }

    /// Refuses the batch without running it: the report (if one is asked for) says
    /// so, and the error is returned. For front ends that check more than the builder
    /// can.
    pub fn refuse(&self, message: impl Into<String>) -> Error {
        let message = message.into();
        if let Ok(Some(report)) = self.open_report() {
            report.write_text(&summary::refusal(&message), None);
        }
        Error::Refused { message }
    }

    /// Runs every job to its end.
    ///
    /// `Err` when nothing could be started (the settings were refused: see
    /// [`Batch::check`]); a job that cannot start is that job's end, and the batch goes
    /// on.
    pub fn run(&mut self) -> Result<BatchOutcome, Error> {
        self.check()?;
        let report = self.open_report()?;
        let console = Console::new(self.status_line).map_err(|source| Error::Io {
            what: "cannot use the process's stdout and stderr".into(),
            source,
        })?;
        let jobs = std::mem::take(&mut self.jobs);
        let mut run = Run::new(self, jobs, console.clone());
        run.run_to_end();
        console.end_status();
        let outcome = run.outcome();
        if self.summary {
            console.say(summary::lines(&outcome).as_bytes());
        }
        if let Some(report) = report {
            report.write(&outcome, &console);
        }
        Ok(outcome)
    }

    /// Opens the report's file now: a batch whose report cannot be written is refused
    /// before anything starts.
    fn open_report(&self) -> Result<Option<ReportOut>, Error> {
        Ok(match &self.report {
            None => None,
            Some(ReportTo::Stderr) => Some(ReportOut::Stderr),
            Some(ReportTo::File(path)) => Some(ReportOut::File(
                File::create(path).map_err(|error| Error::Refused {
                    message: format!(
                        "cannot write the report {}: {}",
                        path.display(),
                        crate::files::describe(&error)
                    ),
                })?,
                path.clone(),
            )),
        })
    }
}

enum ReportOut {
    File(File, PathBuf),
    Stderr,
}

impl ReportOut {
    fn write(self, outcome: &BatchOutcome, console: &Console) {
        self.write_text(&outcome.report(), Some(console));
    }

    fn write_text(self, text: &str, console: Option<&Console>) {
        let say = |bytes: &[u8]| match console {
            Some(console) => console.say(bytes),
            None => drop(
                crate::stdio::own_stream(Stream::Stderr)
                    .map(|mut stderr| crate::stdio::write_all_waiting(&mut stderr, bytes)),
            ),
        };
        match self {
            ReportOut::Stderr => say(text.as_bytes()),
            ReportOut::File(mut file, path) => {
                if let Err(error) = std::io::Write::write_all(&mut file, text.as_bytes()) {
                    say(format!(
                        "saferun: cannot write the report {}: {}\n",
                        path.display(),
                        crate::files::describe(&error)
                    )
                    .as_bytes());
                }
            }
        }
    }
}

/// One job's place in the run.
enum Slot {
    Waiting(Command),
    Running(Handle),
    Done(JobEnd),
    /// Between states, never seen outside [`Run`]'s methods.
    Moving,
}

/// A batch under way.
struct Run {
    names: Vec<String>,
    argvs: Vec<Vec<std::ffi::OsString>>,
    slots: Vec<Slot>,
    stopped_by: Vec<Option<StopCause>>,
    started: Vec<Option<Duration>>,
    console: Console,
    signals: Option<Receiver<Signal>>,
    parallel: usize,
    fail_fast: bool,
    until: Option<usize>,
    /// When the batch ends at the latest (the total timeout).
    deadline: Option<Instant>,
    next: usize,
    running: usize,
    /// The batch stops: no more jobs start.
    stopping: Option<StopCause>,
    /// The first job that failed.
    first_failure: Option<usize>,
    /// The job `until` names ended by itself.
    until_ended: bool,
    /// The job that keeps the process's stdin (and the terminal).
    stdin_to: Option<usize>,
    /// The open-file limit the process had, when the batch raised it for itself.
    nofile_soft: Option<u64>,
    start: Instant,
    end: Option<Instant>,
    colors: [bool; 2],
}

impl Run {
    fn new(batch: &Batch, jobs: Vec<(String, Command)>, console: Console) -> Run {
        let index_of = |name: &Option<String>| {
            name.as_ref()
                .and_then(|name| jobs.iter().position(|(job, _)| job == name))
        };
        let until = index_of(&batch.until);
        let stdin_to = index_of(&batch.stdin_to);
        let count = jobs.len();
        let start = Instant::now();
        let colors = [Stream::Stdout, Stream::Stderr].map(|stream| colored(batch.color, stream));
        let mut names = Vec::with_capacity(count);
        let mut argvs = Vec::with_capacity(count);
        let mut slots = Vec::with_capacity(count);
        for (at, (name, mut command)) in jobs.into_iter().enumerate() {
            let config = command.config_mut();
            if Some(at) != stdin_to {
                if matches!(config.stdin, StdinSource::Inherit) {
                    command.stdin(Stdin::null());
                }
                command.take_terminal(false);
            }
            if let Some(host) = &batch.host {
                command.host(host);
            }
            names.push(name);
            argvs.push(command.argv().to_vec());
            slots.push(Slot::Waiting(command));
        }
        Run {
            names,
            argvs,
            slots,
            stopped_by: vec![None; count],
            started: vec![None; count],
            console,
            signals: batch.host.as_ref().map(Host::listen),
            parallel: batch.parallel.unwrap_or(count),
            fail_fast: batch.fail_fast,
            until,
            deadline: batch.total_timeout.map(|limit| start + limit),
            next: 0,
            running: 0,
            stopping: None,
            first_failure: None,
            until_ended: false,
            stdin_to,
            nofile_soft: raise_open_file_limit(batch.parallel.unwrap_or(count)),
            start,
            end: None,
            colors,
        }
    }

    fn run_to_end(&mut self) {
        loop {
            self.start_what_may();
            self.show_status();
            if self.running == 0 {
                break;
            }
            self.wait_for_something();
        }
        for at in self.next..self.slots.len() {
            self.slots[at] = Slot::Done(JobEnd::NotStarted);
            self.stopped_by[at] = self.stopping.clone();
        }
        self.end = Some(Instant::now());
    }

    fn start_what_may(&mut self) {
        while self.running < self.parallel
            && self.next < self.slots.len()
            && self.stopping.is_none()
        {
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                self.stopping = Some(StopCause::TotalTimeout);
                break;
            }
            let at = self.next;
            self.next += 1;
            let Slot::Waiting(mut command) = std::mem::replace(&mut self.slots[at], Slot::Moving)
            else {
                unreachable!("jobs start in order, once");
            };
            self.seat(at, &mut command);
            self.started[at] = Some(self.start.elapsed());
            match command.spawn() {
                Ok(handle) => {
                    self.slots[at] = Slot::Running(handle);
                    self.running += 1;
                }
                Err(error) => {
                    let name = &self.names[at];
                    if command.config_mut().print_notices {
                        self.console
                            .say(format!("saferun: [{name}] {error}\n").as_bytes());
                    }
                    self.slots[at] = Slot::Done(JobEnd::NotRun(error));
                    self.ended(at);
                }
            }
        }
    }

    /// Fits job `at`'s command into the batch: its place at the console, its name in
    /// its prefixes, the total deadline.
    fn seat(&self, at: usize, command: &mut Command) {
        let name = &self.names[at];
        let config = command.config_mut();
        config.seat = Some(self.console.seat(at, name));
        // One clock for every job's --timestamps: lines of different jobs compare.
        config.clock_start = Some(self.start);
        config.nofile_soft = self.nofile_soft;
        for (stream, colored) in [
            (&mut config.stdout, self.colors[0]),
            (&mut config.stderr, self.colors[1]),
        ] {
            let passes_through = stream.passes_through();
            let prefix = match stream.prefix.take() {
                Some(prefix) => prefix.replace("{name}", name),
                None if passes_through => format!("[{name}] "),
                None => continue,
            };
            stream.prefix = Some(if colored && passes_through && !prefix.is_empty() {
                let color = COLORS[at % COLORS.len()];
                format!("\x1b[{color}m{prefix}\x1b[0m")
            } else {
                prefix
            });
        }
        // The total timeout is each job's own timeout, cut to what is left of it: the
        // job is stopped on time with its own signal and grace, and says why.
        if let Some(deadline) = self.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if config.limits.timeout.is_none_or(|own| own > left) {
                config.limits.timeout = Some(left.max(Duration::from_millis(1)));
                config.limits.timeout_is_total = true;
            }
        }
    }

    /// Waits for a job to end, a signal, or the total deadline, and acts on it.
    fn wait_for_something(&mut self) {
        let (running, done): (Vec<usize>, Vec<Receiver<Outcome>>) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(at, slot)| match slot {
                Slot::Running(handle) => Some((at, handle.done().clone())),
                _ => None,
            })
            .unzip();
        let mut select = Select::new();
        for receiver in &done {
            select.recv(receiver);
        }
        let signals = self.signals.clone();
        if let Some(signals) = &signals {
            select.recv(signals);
        }
        // Only jobs still waiting to start care about the total deadline: running ones
        // have it as their own.
        let wake = self
            .deadline
            .filter(|_| self.next < self.slots.len() && self.stopping.is_none());
        let operation = match wake {
            Some(deadline) => match select.select_deadline(deadline) {
                Ok(operation) => operation,
                Err(_) => return,
            },
            None => select.select(),
        };
        let index = operation.index();
        if index < running.len() {
            let at = running[index];
            let received = operation.recv(&done[index]);
            let Slot::Running(handle) = std::mem::replace(&mut self.slots[at], Slot::Moving) else {
                unreachable!("selected among running jobs");
            };
            match received {
                Ok(outcome) => {
                    let outcome = handle.ended(outcome);
                    self.running -= 1;
                    self.slots[at] = Slot::Done(JobEnd::Ran(outcome));
                    self.ended(at);
                }
                Err(_) => unreachable!("a job's thread ends by sending its outcome"),
            }
        } else if let Some(signals) = &signals
            && let Ok(signal) = operation.recv(signals)
            && matches!(signal, Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP)
            && self.stopping.is_none()
        {
            // Every job got the signal from the host already: just start no more.
            self.stopping = Some(StopCause::Signal(signal));
            for (at, slot) in self.slots.iter().enumerate() {
                if matches!(slot, Slot::Running(_)) {
                    self.stopped_by[at].get_or_insert(StopCause::Signal(signal));
                }
            }
        }
    }

    /// Job `at` just ended: what that means for the others.
    fn ended(&mut self, at: usize) {
        let Slot::Done(end) = &self.slots[at] else {
            return;
        };
        let ending = match end {
            JobEnd::Ran(outcome) => Some(outcome.ending().clone()),
            _ => None,
        };
        // Asked to stop, but it had ended on its own already: it was not stopped.
        let was_stopped = matches!(
            ending,
            Some(Ending::Stopped { .. } | Ending::Cancelled { .. })
        );
        if !was_stopped
            && matches!(
                self.stopped_by[at],
                Some(StopCause::FailFast { .. } | StopCause::Until { .. })
            )
        {
            self.stopped_by[at] = None;
        }
        // The job that holds the terminal got the keyboard's INT itself (the others,
        // and saferun, did not): a Ctrl-C, as a shell reads it, not a failure.
        if Some(at) == self.stdin_to
            && self.stopping.is_none()
            && matches!(ending, Some(Ending::Signaled(signal)) if signal == Signal::SIGINT as i32)
        {
            self.stopped_by[at] = Some(StopCause::Signal(Signal::SIGINT));
            self.stop_all(StopCause::Signal(Signal::SIGINT));
            return;
        }
        let failed = end.failed();
        let stopped = self.stopped_by[at].is_some();
        if failed && !stopped && self.first_failure.is_none() {
            self.first_failure = Some(at);
        }
        let cancelled = matches!(ending, Some(Ending::Cancelled { .. }));
        if Some(at) == self.until && !stopped && !cancelled {
            self.until_ended = true;
            self.stop_all(StopCause::Until {
                ended: self.names[at].clone(),
            });
        } else if failed && !stopped && self.fail_fast {
            self.stop_all(StopCause::FailFast {
                failed: self.names[at].clone(),
            });
        }
    }

    /// Stops every running job, and starts no more.
    fn stop_all(&mut self, cause: StopCause) {
        for (at, slot) in self.slots.iter().enumerate() {
            if let Slot::Running(handle) = slot {
                handle.cancel();
                self.stopped_by[at].get_or_insert_with(|| cause.clone());
            }
        }
        self.stopping.get_or_insert(cause);
    }

    fn show_status(&self) {
        let (mut done, mut failed) = (0, 0);
        for slot in &self.slots {
            if let Slot::Done(end) = slot {
                done += 1;
                failed += usize::from(end.failed());
            }
        }
        let waiting = self.slots.len() - done - self.running;
        let mut text = format!("saferun: {} running, {done} done", self.running);
        if failed > 0 {
            text.push_str(&format!(", {failed} failed"));
        }
        if waiting > 0 {
            text.push_str(&format!(", {waiting} waiting"));
        }
        self.console.set_status(text);
    }

    fn outcome(&mut self) -> BatchOutcome {
        let verdict = match (self.until_ended, self.until, self.first_failure) {
            (true, Some(until), _) => Verdict::Job(until),
            (_, _, Some(first)) => Verdict::Job(first),
            _ => match &self.stopping {
                Some(StopCause::Signal(signal)) => Verdict::Signal(*signal),
                Some(StopCause::TotalTimeout) => Verdict::TimedOut,
                _ => Verdict::Success,
            },
        };
        let slots = std::mem::take(&mut self.slots);
        let jobs = slots
            .into_iter()
            .enumerate()
            .map(|(at, slot)| JobOutcome {
                name: std::mem::take(&mut self.names[at]),
                argv: std::mem::take(&mut self.argvs[at]),
                end: match slot {
                    Slot::Done(end) => end,
                    _ => JobEnd::NotStarted,
                },
                stopped_by: self.stopped_by[at].take(),
                started: self.started[at],
            })
            .collect();
        BatchOutcome {
            jobs,
            verdict,
            duration: self.end.unwrap_or_else(Instant::now) - self.start,
        }
    }
}

/// Each running job holds a few descriptors (its pipes' read ends, a stop pipe, its
/// own streams): the usual soft limit of 1024 would stop a batch at about 170 jobs at
/// once. Raises the soft limit toward the hard one when `running` jobs need more, and
/// returns the old soft limit, which the commands get back.
fn raise_open_file_limit(running: usize) -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let wanted = (running as u64).saturating_mul(8).saturating_add(64);
    if soft >= wanted {
        return None;
    }
    let raised = wanted.max(soft.saturating_mul(2)).min(hard);
    (raised > soft && setrlimit(Resource::RLIMIT_NOFILE, raised, hard).is_ok()).then_some(soft)
}

/// Foreground colours for the jobs' names, in turn: cyan, yellow, green, magenta,
/// blue, and their bright forms (no red: that reads as an error).
const COLORS: [&str; 10] = ["36", "33", "32", "35", "34", "96", "93", "92", "95", "94"];

/// Whether names on `stream` are coloured.
fn colored(color: Color, stream: Stream) -> bool {
    match color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            let terminal = match stream {
                Stream::Stdout => nix::unistd::isatty(std::io::stdout().as_fd()),
                Stream::Stderr => nix::unistd::isatty(std::io::stderr().as_fd()),
            };
            !no_color && terminal.unwrap_or(false)
        }
    }
}
