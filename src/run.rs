//! One run, wired up: spawn the command and its helper threads, then the main loop that
//! owns the clock. Decisions come from [`Policy`]; this file only carries them out.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::{Config, Leftovers, ReportTarget, StdinSource};
use crate::deadline;
use crate::diagnose;
use crate::drain::{Activity, Drain, Shared, StopSender, StreamStats, stop_channel};
use crate::event::{Event, Stream, StreamEnd};
use crate::feed;
use crate::files::{self, Named, Refusal, Use};
use crate::forward;
use crate::group::{self, Group, Terminal};
use crate::notices::Notices;
use crate::outcome::{self, Ending, Exit};
use crate::output::{self, StreamSetup};
use crate::policy::{Action, Mode, Policy, Reason};
use crate::procfs;
use crate::record::{self, PipeHolder, ProcessInfo, Record, SentSignal, StreamEnding, human};
use crate::report;
use crate::signal::short_name;
use crate::sink::CapStats;
use crate::spawn::{self, Setup, Wiring};

/// After the drains are told to stop, how long saferun waits for them to deliver what
/// they hold before ending anyway (a stalled reader downstream cannot hold it longer).
const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// While the rest of a stopped tree is awaited, how often /proc is looked at.
const TREE_CHECK: Duration = Duration::from_millis(10);

/// How long a KILL just sent to the command may take to land before saferun calls the
/// command unkillable.
const KILL_LANDING: Duration = Duration::from_millis(100);

/// After the final KILL of leftovers, how long saferun waits to reap them.
const REAP_GRACE: Duration = Duration::from_millis(500);

/// Runs the command as `config` says and returns how saferun must exit. Every way it
/// can end, refusals included, is said on stderr and written to the report.
pub fn run(config: &Config) -> Exit {
    let notices = Notices::new(config.verbose);
    let files = match open_files(config) {
        Ok(files) => files,
        Err(refusal) => {
            let exit = refuse_with(config, &refusal, &notices);
            notices.flush(Some(Instant::now() + FLUSH_GRACE));
            return exit;
        }
    };
    let mut record = Record::new(config);
    let (exit, bound) = match run_with(config, files.run, &notices, &mut record) {
        Ok(ended) => ended,
        Err(error) => {
            let message = format!("{error:#}");
            notices.say(&message);
            record.errors.push(message);
            (Exit::Code(outcome::SAFERUN_FAILED), None)
        }
    };
    finish_report(files.report, &record, exit, &notices);
    // What saferun itself still has to write may wait for a slow reader, but never past
    // the bound a timeout sets.
    notices.flush(Some(bound.map_or(Instant::now() + FLUSH_GRACE, |end| {
        end.max(Instant::now() + FLUSH_GRACE)
    })));
    exit
}

/// Refuses a run before anything was started or touched: one `saferun:` line, and the
/// report, unless the report itself is the problem or names a file the run would have
/// written. `config` is what could be read of the command line, if anything.
pub fn refuse(config: Option<&Config>, message: &str) -> u8 {
    let notices = Notices::new(false);
    let exit = match config {
        Some(config) => {
            let report_writable = files::check_identities(&named_files(config)).is_ok();
            let refusal = Refusal {
                message: message.to_string(),
                report_writable,
            };
            refuse_with(config, &refusal, &notices)
        }
        None => {
            notices.say(message);
            Exit::Code(outcome::SAFERUN_FAILED)
        }
    };
    notices.flush(Some(Instant::now() + FLUSH_GRACE));
    exit.shell_status() as u8
}

fn refuse_with(config: &Config, refusal: &Refusal, notices: &Notices) -> Exit {
    notices.say(&refusal.message);
    let exit = Exit::Code(outcome::SAFERUN_FAILED);
    if refusal.report_writable {
        let mut record = Record::new(config);
        record.errors.push(refusal.message.clone());
        let target = match &config.report {
            Some(ReportTarget::File(path)) => std::fs::File::create(path).ok().map(ReportOut::File),
            Some(ReportTarget::Stderr) => Some(ReportOut::Stderr),
            None => None,
        };
        finish_report(target, &record, exit, notices);
    }
    exit
}

/// Where the report goes, opened before the run.
enum ReportOut {
    File(File),
    Stderr,
}

/// The files of a run, opened and checked.
struct Files {
    run: RunFiles,
    report: Option<ReportOut>,
}

/// The files the command's streams use.
struct RunFiles {
    stdin: Option<File>,
    stdout: Option<(File, String)>,
    stderr: Option<(File, String)>,
}

fn named_files(config: &Config) -> Vec<Named<'_>> {
    let write = Use::Write {
        append: config.output.append,
    };
    let mut named = Vec::new();
    if let StdinSource::File(path) = &config.stdin {
        named.push(Named {
            option: "--stdin-file",
            path,
            use_: Use::Read,
        });
    }
    if let Some(path) = &config.output.stdout_file {
        named.push(Named {
            option: "--stdout-file",
            path,
            use_: write,
        });
    }
    if let Some(path) = &config.output.stderr_file {
        named.push(Named {
            option: "--stderr-file",
            path,
            use_: write,
        });
    }
    if let Some(ReportTarget::File(path)) = &config.report {
        named.push(Named {
            option: "--report",
            path,
            use_: Use::Write { append: false },
        });
    }
    named
}

/// Opens every file the run names, once all of them (and the temporary directory, when
/// an option needs it) passed their checks.
fn open_files(config: &Config) -> Result<Files, Refusal> {
    let named = named_files(config);
    let needs_temporary =
        config.output.quiet_unless_fail || config.output.max_output.is_some_and(output::cap_spills);
    let opened = files::open_all(&named, || {
        if needs_temporary {
            tempfile::tempfile().map(drop).map_err(|error| {
                format!(
                    "cannot create a temporary file in {} ({}), which --quiet-unless-fail and \
                     a large --max-output need; set TMPDIR to a writable directory",
                    std::env::temp_dir().display(),
                    files::describe(&error)
                )
            })?;
        }
        Ok(())
    })?;
    let mut files = Files {
        run: RunFiles {
            stdin: None,
            stdout: None,
            stderr: None,
        },
        report: matches!(config.report, Some(ReportTarget::Stderr)).then_some(ReportOut::Stderr),
    };
    for (opened, entry) in opened.into_iter().zip(&named) {
        let what = format!("{} '{}'", entry.option, entry.path.display());
        match opened.option {
            "--stdin-file" => files.run.stdin = Some(opened.file),
            "--stdout-file" => files.run.stdout = Some((opened.file, what)),
            "--stderr-file" => files.run.stderr = Some((opened.file, what)),
            _ => files.report = Some(ReportOut::File(opened.file)),
        }
    }
    Ok(files)
}

/// Starts the command and supervises it to the end. Returns how saferun must exit and
/// the bound on saferun's own last writes.
fn run_with(
    config: &Config,
    files: RunFiles,
    notices: &Notices,
    record: &mut Record,
) -> Result<(Exit, Option<Instant>)> {
    let stdin = feed::plan(&config.stdin, files.stdin, config.inherited.stdin_closed)?;
    let mut files = output::OpenFiles::new(files.stdout, files.stderr);

    let start = Instant::now();
    let started_at = SystemTime::now();
    let effective = deadline::apply(config.limits.clone(), config.outer_deadline, started_at);
    let limits = effective.limits.clone();
    record.started_at = Some(started_at);
    record.capped_by_outer_deadline = effective.capped;

    // Bounded, so that no helper thread allocates to send; senders wait if the loop
    // falls 256 events behind, which only delays them.
    let (events_tx, events) = crossbeam_channel::bounded(256);
    let cont_watch = forward::ContWatch::default();
    let handlers = forward::install(&cont_watch).context("cannot install signal handlers")?;
    let subreaper = group::become_subreaper();
    let not_ours = if group::has_children() {
        procfs::own_children()
    } else {
        Vec::new()
    };
    let terminal = if config.share_group {
        None
    } else {
        Terminal::if_foreground()
    };
    // A stream whose destination is saferun's own, closed, stream is closed for the
    // command too; under --merge stderr follows stdout.
    let stdout_closed = config.inherited.stdout_closed && config.output.stdout_file.is_none();
    let stderr_closed = if config.output.merge {
        stdout_closed
    } else {
        config.inherited.stderr_closed && config.output.stderr_file.is_none()
    };
    let (out_reader, out_writer) = if stdout_closed {
        (None, None)
    } else {
        let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
        (Some(reader), Some(writer))
    };
    let (err_reader, err_writer) = match (&out_writer, config.output.merge) {
        // One pipe for both: the order the kernel saw.
        (Some(out), true) => (None, Some(out.try_clone().context("cannot create a pipe")?)),
        (None, true) => (None, None),
        _ if stderr_closed => (None, None),
        _ => {
            let (reader, writer) = std::io::pipe().context("cannot create a pipe")?;
            (Some(reader), Some(writer))
        }
    };

    let fed = Arc::new(AtomicU64::new(0));
    let activity = Arc::new(Activity::new(start));
    let (stop_tx, stop_rx) = stop_channel().context("cannot create a pipe")?;
    let mut env = Vec::new();
    if let Some(export) = effective.export {
        env.push((deadline::ENV.into(), deadline::format(export).into()));
    }
    let wiring = Wiring {
        stdin: stdin.fd,
        stdout: out_writer.map(OwnedFd::from),
        stderr: err_writer.map(OwnedFd::from),
    };
    let setup = Setup {
        own_group: !config.share_group,
        terminal: terminal.as_ref().and_then(Terminal::clone_fd),
        to_default: terminal
            .as_ref()
            .map(|t| t.ignored_here().to_vec())
            .unwrap_or_default(),
        env,
        sigpipe_ignored: config.inherited.sigpipe_ignored,
    };
    let pid = match spawn::spawn(&config.argv, wiring, setup) {
        Ok(pid) => pid,
        Err(error) => {
            notices.say(&error.message);
            record.errors.push(error.message);
            record.duration = start.elapsed();
            return Ok((Exit::Code(error.status), None));
        }
    };
    let group = Group::new(pid, !config.share_group);
    if let Some(terminal) = &terminal {
        terminal.give_to(pid);
    }
    record.pid = Some(pid.as_raw());
    record.pgid = group.pgid().map(Pid::as_raw);
    let mut streams = Vec::new();
    let mut held = Vec::new();
    // From here on the command runs: a failure must not leave it behind.
    let started = (|| -> Result<()> {
        handlers
            .start(events_tx.clone())
            .context("cannot start a thread")?;
        if let Some((source, pipe)) = stdin.feed {
            let feeder = feed::Feeder {
                source,
                pipe,
                fed: fed.clone(),
                stop: stop_rx.clone(),
                events: events_tx.clone(),
            };
            feeder.spawn().context("cannot start a thread")?;
            record.stdin.end = StreamEnding::Eof;
        }
        let command_word = record.argv.first().cloned().unwrap_or_default();
        let pipes = [(Stream::Stdout, out_reader), (Stream::Stderr, err_reader)];
        for (stream, reader) in pipes {
            let Some(reader) = reader else {
                let closed = match stream {
                    Stream::Stdout => stdout_closed,
                    Stream::Stderr => stderr_closed,
                };
                record.stream_mut(stream).end = if closed {
                    StreamEnding::Closed
                } else {
                    StreamEnding::None
                };
                continue;
            };
            let pipe = OwnedFd::from(reader);
            let inode = nix::sys::stat::fstat(&pipe).map(|s| s.st_ino).unwrap_or(0);
            let stats = Arc::new(StreamStats::default());
            let built = files.build(StreamSetup {
                stream,
                config: &config.output,
                inherited: &config.inherited,
                pid: pid.as_raw(),
                command: &command_word,
                start,
                notices: notices.clone(),
                events: events_tx.clone(),
            })?;
            if let Some(output) = built.held {
                held.push((stream, output));
            }
            let shared = Shared {
                stop: stop_rx.clone(),
                activity: activity.clone(),
                stats: stats.clone(),
                events: events_tx.clone(),
            };
            Drain::new(stream, pipe, built.sink, shared)
                .spawn()
                .context("cannot start a thread")?;
            streams.push(OpenStream {
                stream,
                inode,
                stats,
                cap: built.cap,
                closed: false,
            });
        }
        Ok(())
    })();
    if let Err(error) = started {
        group.signal(Signal::SIGKILL);
        group::reap(pid);
        if let Some(terminal) = &terminal {
            terminal.take_back();
        }
        record.duration = start.elapsed();
        return Err(error.context("the command was killed"));
    }
    drop(events_tx);

    let mode = Mode {
        kill_leftovers: config.leftovers == Leftovers::Kill,
        share_group: config.share_group,
        job_control: terminal.is_some(),
    };
    let mut runner = Runner {
        config,
        notices: notices.clone(),
        limits: limits.clone(),
        policy: Policy::new(limits, mode, streams.len(), start),
        group,
        terminal,
        subreaper,
        not_ours,
        start,
        streams,
        stop: Some(stop_tx),
        cont_watch,
        holders_named: false,
        record,
    };
    runner.main_loop(&events, &activity);
    let exit = runner.finish(&events, stdin.file.as_ref(), &fed);
    output::release_held(
        held,
        outcome::is_failure(exit, runner.policy.cancelled().is_some()),
        notices,
    );
    Ok((exit, runner.policy.hard_end()))
}

fn finish_report(target: Option<ReportOut>, record: &Record, exit: Exit, notices: &Notices) {
    let Some(target) = target else {
        return;
    };
    let text = report::to_json(record, exit.shell_status());
    match target {
        ReportOut::Stderr => notices.raw(text.into_bytes()),
        ReportOut::File(mut file) => {
            if let Err(error) = file.write_all(text.as_bytes()) {
                notices.say(&format!("cannot write the report: {error}"));
            }
        }
    }
}

struct OpenStream {
    stream: Stream,
    /// The pipe's inode, to find who else holds it.
    inode: u64,
    stats: Arc<StreamStats>,
    cap: Option<Arc<CapStats>>,
    closed: bool,
}

/// The main thread's state during the loop and the teardown.
struct Runner<'a> {
    config: &'a Config,
    record: &'a mut Record,
    notices: Notices,
    limits: crate::config::Limits,
    policy: Policy,
    group: Group,
    terminal: Option<Terminal>,
    subreaper: bool,
    /// saferun's children from before the run (the process that exec'd saferun may
    /// have left some): never counted, signalled or named as the command's.
    not_ours: Vec<i32>,
    start: Instant,
    streams: Vec<OpenStream>,
    /// Dropping it tells the drains to stop.
    stop: Option<StopSender>,
    /// Whether the pipe holders were already looked up and named.
    holders_named: bool,
    cont_watch: forward::ContWatch,
}

impl Runner<'_> {
    fn main_loop(&mut self, events: &Receiver<Event>, activity: &Activity) {
        // The tree check reads /proc: after events (a SIGCHLD may mean the tree died), at
        // most every TREE_CHECK however many come, and once more after the last of them.
        let mut tree_check_due: Option<Instant> = None;
        let mut tree_dirty = true;
        while !self.policy.finished() {
            let now = Instant::now();
            let recheck = tree_check_due.filter(|_| tree_dirty);
            let next = [
                self.policy.next_deadline(activity.last_output(now)),
                recheck,
            ]
            .into_iter()
            .flatten()
            .min();
            let received = match next {
                Some(deadline) => events.recv_deadline(deadline),
                None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            let now = Instant::now();
            let mut actions = match received {
                Ok(event) => {
                    tree_dirty = true;
                    self.handle(&event, now)
                }
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                // Every helper thread is gone; nothing more can happen.
                Err(RecvTimeoutError::Disconnected) => vec![Action::Finish],
            };
            // A flood of events must not stop the clock: deadlines are looked at after
            // every event, not only when the channel is quiet.
            let last_output = activity.last_output(now);
            if self
                .policy
                .next_deadline(last_output)
                .is_some_and(|deadline| deadline <= now)
            {
                actions.extend(self.policy.tick(now, last_output));
            }
            if self.policy.waiting_for_tree()
                && tree_dirty
                && tree_check_due.is_none_or(|due| due <= now)
            {
                tree_check_due = Some(now + TREE_CHECK);
                tree_dirty = false;
                if !self.tree_alive() {
                    actions.extend(self.policy.tree_gone());
                }
            } else if !self.policy.waiting_for_tree() {
                tree_check_due = None;
            }
            let mut queue: VecDeque<Action> = actions.into();
            while let Some(action) = queue.pop_front() {
                if action == Action::Finish {
                    return;
                }
                for (i, follow_up) in self.execute(action).into_iter().enumerate() {
                    queue.insert(i, follow_up);
                }
            }
        }
    }

    /// Whether any process of the command's tree (other than the command itself, which
    /// exited and waits to be reaped) is still alive. Without /proc, nothing is known and
    /// saferun does not wait.
    fn tree_alive(&self) -> bool {
        !self.live_tree().is_empty()
    }

    /// Live processes below saferun or in the command's group, but the command itself
    /// (alive or waiting to be reaped), from one scan of /proc. Only short names: callers
    /// read the command lines of those they keep ([`procfs::with_command`]).
    fn live_tree(&self) -> Vec<procfs::Proc> {
        let me = std::process::id() as i32;
        let table = procfs::table(me, self.subreaper, &self.not_ours);
        procfs::below(me, self.group.pgid().map(Pid::as_raw), &table)
            .into_iter()
            .filter(|p| p.pid != self.group.pid().as_raw() && p.state != 'Z')
            .collect()
    }

    /// Records an event and asks the policy about it. A SIGCHLD is turned into the
    /// command's own change of state.
    fn handle(&mut self, event: &Event, now: Instant) -> Vec<Action> {
        self.note(event);
        let mut actions = self.policy.handle(event, now);
        if let Event::Signal {
            signal: Signal::SIGCHLD,
            ..
        } = event
            && !self.policy.exited()
            && let Some(change) = group::child_change(self.group.pid())
        {
            self.note(&change);
            actions.extend(self.policy.handle(&change, now));
        }
        actions
    }

    /// Records what an event tells about the run.
    fn note(&mut self, event: &Event) {
        match event {
            Event::Exited(end) => self.record.child = Some(*end),
            // A keyboard stop of the command: saferun will stop itself next.
            Event::Stopped(_) => self.cont_watch.mark_stop(),
            Event::Signal {
                signal: Signal::SIGCHLD,
                ..
            } if self.subreaper => group::reap_exited_orphans(self.group.pid()),
            Event::StreamClosed { stream, end } => {
                if let Some(open) = self.streams.iter_mut().find(|s| s.stream == *stream) {
                    open.closed = true;
                }
                let word = match end {
                    StreamEnd::Eof => StreamEnding::Eof,
                    StreamEnd::ReaderGone => StreamEnding::ReaderGone,
                    StreamEnd::Stopped => StreamEnding::Stopped,
                    StreamEnd::WriteFailed => StreamEnding::WriteFailed,
                };
                if matches!(end, StreamEnd::ReaderGone) {
                    self.notices.detail(&format!(
                        "{} was closed by its reader; stopped reading the command's {}",
                        stream.name(),
                        stream.name()
                    ));
                }
                self.record.stream_mut(*stream).end = word;
            }
            Event::WriteFailed { what, error, .. } => {
                let message = format!("cannot write {what}: {}", files::describe(error));
                self.notices.say(&message);
                self.record.errors.push(message);
            }
            Event::InputFailed { what, error } => {
                let message = format!(
                    "cannot read {what}: {}; stopping the command",
                    files::describe(error)
                );
                self.notices.say(&message);
                self.record.errors.push(message);
            }
            _ => {}
        }
    }

    /// Carries out one action; returns what must follow it at once.
    fn execute(&mut self, action: Action) -> Vec<Action> {
        match action {
            Action::Diagnose(reason) => self.diagnose(reason),
            Action::Signal(signal) => {
                let why = self.why();
                self.signal_tree(signal, why);
            }
            Action::Forward(signal) => {
                self.group.signal(signal);
                self.log_signal(signal, "forwarded");
            }
            Action::Kill => {
                match self.policy.stopping() {
                    Some(stopping) if stopping.reason != Reason::Leftovers => {
                        let waited = human(Instant::now() - stopping.began);
                        let who = if self.policy.exited() {
                            "processes of the command's tree"
                        } else {
                            "command"
                        };
                        self.notices.say(&format!(
                            "{who} still running {waited} after {}; sending KILL",
                            short_name(self.signal_for(stopping.reason))
                        ));
                    }
                    _ => self.notices.say(&format!(
                        "leftovers still running {} after {}; sending KILL",
                        human(self.limits.kill_after.unwrap_or_default()),
                        short_name(self.limits.signal)
                    )),
                }
                self.signal_tree(Signal::SIGKILL, "escalation");
            }
            Action::SignalLeftovers(signal) => self.signal_tree(signal, "leftovers"),
            Action::PauseSelf => {
                self.notices.detail("command stopped; pausing every timer");
                if let Some(terminal) = &self.terminal {
                    terminal.take_back();
                }
                // A CONT that came already (its event is queued) must not find saferun
                // stopping itself afterwards, with nobody left to continue it.
                if !self.cont_watch.continued_since_stop() {
                    group::stop_self();
                }
            }
            Action::Resume => {
                self.notices
                    .detail("continued; resuming the command and every timer");
                if let Some(terminal) = &self.terminal
                    && terminal.saferun_in_foreground()
                {
                    terminal.give_to(self.group.pid());
                }
                self.group.signal(Signal::SIGCONT);
                self.log_signal(Signal::SIGCONT, "job-control");
            }
            Action::CheckHolders => {
                let held = self.name_pipe_holders();
                return self.policy.linger_verdict(held);
            }
            Action::StopStreams => {
                if !self.holders_named {
                    self.name_pipe_holders();
                }
                self.stop = None;
            }
            Action::Finish => {}
        }
        Vec::new()
    }

    fn signal_for(&self, reason: Reason) -> Signal {
        match reason {
            Reason::Cancelled(signal) => signal,
            _ => self.limits.signal,
        }
    }

    fn why(&self) -> &'static str {
        self.policy
            .stopping()
            .map_or("leftovers", |s| s.reason.word())
    }

    /// A limit fired: say so, record the tree and what each process waits on, and run
    /// `--on-timeout`, all before the first signal.
    fn diagnose(&mut self, reason: Reason) {
        let signal = short_name(self.limits.signal);
        let message = match reason {
            Reason::Idle => format!(
                "no output for {} (--idle-timeout); sending {signal}",
                human(self.limits.idle_timeout.unwrap_or_default())
            ),
            Reason::Cap => format!("output reached --max-output; sending {signal}"),
            _ if self.record.capped_by_outer_deadline => format!(
                "timed out after {} (the enclosing saferun's deadline); sending {signal}",
                human(self.limits.timeout.unwrap_or_default())
            ),
            _ => format!(
                "timed out after {} (--timeout); sending {signal}",
                human(self.limits.timeout.unwrap_or_default())
            ),
        };
        self.notices.say(&message);
        if !self.notices.verbose && self.config.report.is_none() && self.config.on_timeout.is_none()
        {
            // Nobody would read the tree: do not delay the signal for it.
            return;
        }
        let tree = diagnose::tree(
            self.group.pgid().map(Pid::as_raw),
            self.subreaper,
            &self.not_ours,
        );
        if self.notices.verbose && !tree.is_empty() {
            let mut text = String::from("saferun: process tree at the timeout:\n");
            for line in diagnose::render_tree(&tree) {
                text.push_str(&line);
                text.push('\n');
            }
            self.notices.raw(text.into_bytes());
        }
        self.record.diagnosis = tree;
        if let Some(hook) = &self.config.on_timeout {
            self.notices
                .detail(&format!("running --on-timeout: {}", hook.command));
            let ran = diagnose::run_on_timeout(
                hook,
                self.group.pid(),
                self.group.pgid(),
                reason.word(),
                &self.notices,
            );
            if ran.timed_out {
                self.notices.say(&format!(
                    "--on-timeout did not finish within {}; killed it",
                    human(hook.limit)
                ));
            }
            self.record.on_timeout = Some(ran);
        }
    }

    /// Signals the command's group at once, then every descendant that left it (found
    /// by one scan of the process table); then, unless the signal is KILL or CONT,
    /// continues them all so that a stopped process can act on it.
    /// Under `--foreground` a stop (a limit, a forwarded signal) reaches the command
    /// alone, as with GNU `timeout`; what outlives it is the leftovers policy's.
    fn signal_tree(&mut self, signal: Signal, why: &'static str) {
        let and_continue = signal != Signal::SIGKILL && signal != Signal::SIGCONT;
        if self.group.signal(signal) {
            self.log_signal(signal, why);
        }
        if and_continue && self.group.signal(Signal::SIGCONT) {
            self.log_signal(Signal::SIGCONT, why);
        }
        let stopping_the_command = self
            .policy
            .stopping()
            .is_some_and(|s| s.reason != Reason::Leftovers);
        if self.config.share_group && stopping_the_command {
            return;
        }
        for escapee in self.escapees() {
            if !group::signal_pid(Pid::from_raw(escapee.pid), signal) {
                continue;
            }
            if and_continue {
                group::signal_pid(Pid::from_raw(escapee.pid), Signal::SIGCONT);
            }
            self.notices.detail(&format!(
                "sent {} to pid {} ({}), which left the process group",
                short_name(signal),
                escapee.pid,
                escapee.command
            ));
            if !self.record.escaped.iter().any(|e| e.pid == escapee.pid) {
                self.record.escaped.push(ProcessInfo {
                    pid: escapee.pid,
                    command: escapee.command,
                    state: None,
                });
            }
        }
    }

    fn log_signal(&mut self, signal: Signal, why: &'static str) {
        let (to, target) = match self.group.pgid() {
            Some(_) => ("group", "process group"),
            None => ("process", "pid"),
        };
        if signal != Signal::SIGCONT || why == "job-control" {
            self.notices.detail(&format!(
                "sent {} to {target} {} ({why})",
                short_name(signal),
                self.group.pid()
            ));
        }
        self.record.signals.push(SentSignal {
            signal: short_name(signal).to_string(),
            at: record::round_us(self.start.elapsed().as_secs_f64()),
            to,
            why,
        });
    }

    /// Live descendants outside the command's group (re-parented to saferun as its
    /// subreaper, or under `--foreground` every descendant but the command).
    fn escapees(&self) -> Vec<procfs::Proc> {
        if !self.subreaper && self.group.pgid().is_some() {
            return Vec::new();
        }
        self.live_tree()
            .into_iter()
            .filter(|p| Some(p.pgid) != self.group.pgid().map(Pid::as_raw))
            .map(procfs::with_command)
            .collect()
    }

    /// Everything after the loop: name who holds the pipes, stop the drains, reap, deal
    /// with leftovers, give the terminal back, and decide the exit status.
    fn finish(
        &mut self,
        events: &Receiver<Event>,
        stdin_file: Option<&(File, u64)>,
        fed: &AtomicU64,
    ) -> Exit {
        self.stop = None;
        self.await_drains(events);
        for open in &self.streams {
            let record = self.record.stream_mut(open.stream);
            record.bytes = open.stats.read.load(Ordering::Relaxed);
            if let Some(cap) = &open.cap {
                record.elided = cap.elided.load(Ordering::Relaxed);
                record.truncated = record.elided > 0;
            }
            if !open.closed {
                record.end = StreamEnding::Unfinished;
            }
        }
        if self.streams.iter().any(|s| !s.closed) {
            self.notices.say(
                "output not fully delivered: the reader downstream stopped reading; ending anyway",
            );
        }
        self.record.stdin.bytes = match stdin_file {
            Some(file) => feed::file_bytes_consumed(file),
            None => fed.load(Ordering::Relaxed),
        };

        // A SIGCHLD that was late, or that the signal mask held back; or a KILL sent an
        // instant ago (every stage due at once) that has not landed yet.
        let landed_by = Instant::now()
            + if self.policy.killed() {
                KILL_LANDING
            } else {
                Duration::ZERO
            };
        let mut exited = self.policy.exited();
        while !exited {
            if let Some(change @ Event::Exited(_)) = group::child_change(self.group.pid()) {
                self.note(&change);
                // A policy that has already finished takes no more events.
                self.policy.handle(&change, Instant::now());
                exited = true;
            } else if Instant::now() < landed_by {
                thread::sleep(Duration::from_millis(1));
            } else {
                break;
            }
        }
        let kill_leftovers = self.config.leftovers == Leftovers::Kill
            || (self.policy.stopping().is_some() && !self.config.share_group);
        // (A stop of the command, or of its leftovers: either way what is left goes.)
        if exited {
            if kill_leftovers && self.group.pgid().is_some() {
                // Before the reap: while the command is unreaped its group id cannot
                // have been reused by anyone else.
                self.group.signal(Signal::SIGKILL);
            }
            group::reap(self.group.pid());
        } else if let Some(proc) = procfs::read(self.group.pid().as_raw()) {
            self.unkillable(proc, "the command");
        }
        self.handle_leftovers(exited, kill_leftovers);
        if let Some(terminal) = &self.terminal {
            terminal.take_back();
        }
        self.record.reason = self
            .policy
            .stopping()
            .map(|s| s.reason)
            .filter(|r| *r != Reason::Leftovers);
        self.record.duration = self.start.elapsed();
        self.record.rusage = children_rusage();
        let ending = Ending {
            child: self.record.child,
            reason: self.record.reason,
            killed: self.policy.killed(),
            preserve_status: self.limits.preserve_status,
            fail_for_leftovers: self.config.leftovers == Leftovers::Fail
                && (!self.record.leftovers.is_empty() || !self.record.pipe_holders.is_empty()),
        };
        let exit = outcome::exit_for(ending);
        if ending.fail_for_leftovers && exit == Exit::Code(outcome::LEFTOVERS_STATUS) {
            self.notices.say(&format!(
                "exiting {} because processes outlived the command (--leftovers=fail)",
                outcome::LEFTOVERS_STATUS
            ));
        }
        exit
    }

    /// A process that survived KILL (uninterruptible sleep): say so and give up on it.
    fn unkillable(&mut self, proc: procfs::Proc, what: &str) {
        self.notices.say(&format!(
            "{what} pid {} ({}) did not die after KILL ({}); giving up on it",
            proc.pid,
            proc.command,
            procfs::blocked_on(&proc)
        ));
        self.record.unkillable.push(ProcessInfo {
            pid: proc.pid,
            command: proc.command,
            state: Some(proc.state.to_string()),
        });
    }

    /// `--linger` ran out with pipes still open: say who holds them, before anything is
    /// closed. Returns whether anyone does (unknown without /proc: assume so).
    fn name_pipe_holders(&mut self) -> bool {
        self.holders_named = true;
        let linger = human(self.limits.linger);
        // While a stop is under way the pipes stay open until the tree dies or is KILLed.
        let then = if self.policy.waiting_for_tree() {
            "reading on until it ends or gets KILL"
        } else {
            "stopped reading"
        };
        let mut held = false;
        let proc_readable = std::path::Path::new("/proc/self/fd").exists();
        for open in self.streams.iter().filter(|s| !s.closed) {
            let holders = procfs::pipe_writers(open.inode);
            if holders.is_empty() && !proc_readable {
                held = true;
                self.notices.say(&format!(
                    "{} still held open {linger} after the command exited; {then}",
                    open.stream.name()
                ));
            }
            held |= !holders.is_empty();
            for holder in holders {
                self.notices.say(&format!(
                    "{} still held by pid {} ({}) {linger} after the command exited; {then}",
                    open.stream.name(),
                    holder.pid,
                    holder.command
                ));
                self.record.pipe_holders.push(PipeHolder {
                    stream: open.stream.name(),
                    pid: holder.pid,
                    command: holder.command,
                });
            }
        }
        held
    }

    /// Waits (bounded) for every drain to deliver what it holds and close.
    fn await_drains(&mut self, events: &Receiver<Event>) {
        let deadline = Instant::now() + FLUSH_GRACE;
        while self.streams.iter().any(|s| !s.closed) {
            match events.recv_deadline(deadline) {
                Ok(event) => {
                    // The command may end during teardown (it was being killed).
                    self.handle(&event, Instant::now());
                }
                Err(_) => break,
            }
        }
    }

    /// Finds processes that outlived the command and warns about them, or kills them
    /// (timeouts, cancellation, `--leftovers=kill`), reaping all.
    fn handle_leftovers(&mut self, command_reaped: bool, kill: bool) {
        // Cheap before /proc: reaping orphans tells of live children, a signal 0 of group
        // members.
        let (subreaper, command_group) = (self.subreaper, self.group);
        let anything_left = move || {
            (command_reaped && subreaper && group::reap_orphans()) || command_group.has_members()
        };
        if !anything_left() {
            return;
        }
        let left: Vec<procfs::Proc> = self
            .live_tree()
            .into_iter()
            .map(procfs::with_command)
            .collect();
        if kill {
            for proc in &left {
                group::signal_pid(Pid::from_raw(proc.pid), Signal::SIGKILL);
            }
            if !left.is_empty() {
                self.log_signal(Signal::SIGKILL, "leftovers");
            }
            let deadline = Instant::now() + REAP_GRACE;
            while Instant::now() < deadline && anything_left() {
                thread::sleep(Duration::from_millis(2));
            }
        }
        for proc in left {
            if kill {
                self.notices.detail(&format!(
                    "killed leftover pid {} ({})",
                    proc.pid, proc.command
                ));
                if let Some(stuck) = procfs::read(proc.pid).filter(|p| p.state != 'Z') {
                    self.unkillable(stuck, "leftover");
                }
            } else {
                self.notices.say(&format!(
                    "pid {} ({}) outlived the command and is still running",
                    proc.pid, proc.command
                ));
            }
            self.record.leftovers.push(ProcessInfo {
                pid: proc.pid,
                command: proc.command,
                state: Some(proc.state.to_string()),
            });
        }
    }
}

fn children_rusage() -> record::Rusage {
    use nix::sys::resource::{UsageWho, getrusage};
    let Ok(usage) = getrusage(UsageWho::RUSAGE_CHILDREN) else {
        return record::Rusage::default();
    };
    let seconds = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    record::Rusage {
        user_cpu_seconds: record::round_ms(seconds(usage.user_time())),
        system_cpu_seconds: record::round_ms(seconds(usage.system_time())),
        max_rss_kib: usage.max_rss(),
    }
}
