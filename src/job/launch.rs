//! Starting a job: every file it names is checked and opened before anything else (a
//! refused run touches nothing), then its pipes, the command itself, and the threads
//! around it. Every way this can fail is reported as the run's end.

use std::ffi::OsString;
use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Instant, SystemTime};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::{Job, OpenStream};
use crate::config::{Config, Leftovers, Pty, ReportTarget, StdinSource, Target};
use crate::deadline;
use crate::drain::{Activity, Drain, Shared, StreamStats, stop_channel};
use crate::error::Error;
use crate::event::Stream;
use crate::feed::{self, FeedSource, Feeder};
use crate::files::{self, Named, Refusal, Use};
use crate::group::{self, Group};
use crate::host::Host;
use crate::notices::Notices;
use crate::outcome::{Exit, SAFERUN_FAILED};
use crate::output::{self, StreamSetup};
use crate::policy::{Mode, Policy};
use crate::record::{Record, StreamEnding};
use crate::report;
use crate::spawn::{self, Setup, SpawnError, Wiring};

/// Where the report goes, opened before the run.
pub(crate) enum ReportOut {
    File(File),
    Stderr,
}

impl ReportOut {
    /// Writes the report of `record`, ended with `exit`.
    pub(crate) fn write(self, record: &Record, exit: Exit, notices: &Notices) {
        let text = report::to_json(record, exit.shell_status());
        match self {
            ReportOut::Stderr => notices.raw(text.into_bytes()),
            ReportOut::File(mut file) => {
                if let Err(error) = file.write_all(text.as_bytes()) {
                    notices.say(&format!("cannot write the report: {error}"));
                }
            }
        }
    }
}

/// The files of a run, opened and checked.
struct Files {
    stdin: Option<File>,
    stdout: Option<(File, String)>,
    stderr: Option<(File, String)>,
    report: Option<ReportOut>,
}

impl Job {
    /// Checks and opens what the run needs, then starts the command and its threads.
    pub(crate) fn start(config: &Config, host: Option<&Host>) -> Result<Job, Error> {
        let notices = Notices::new(config.print_notices, config.verbose).at(config.seat.clone());
        if config.argv.is_empty() {
            let refusal = Refusal {
                message: "missing command".into(),
                report_writable: report_writable(config),
            };
            return Err(refuse(config, refusal, &notices));
        }
        let files = match open_files(config) {
            Ok(files) => files,
            Err(refusal) => return Err(refuse(config, refusal, &notices)),
        };
        let mut record = Record::new(config);
        let report = files.report;
        let launched = Launch {
            config: Arc::new(config.clone()),
            host: host.cloned(),
            notices: notices.clone(),
        }
        .launch(
            files.stdin,
            [
                (Stream::Stdout, files.stdout),
                (Stream::Stderr, files.stderr),
            ],
            &mut record,
        );
        match launched {
            Ok(mut job) => {
                job.record = record;
                job.report = report;
                Ok(job)
            }
            Err((error, exit)) => {
                record.errors.push(error.to_string());
                if let Some(report) = report {
                    report.write(&record, exit, &notices);
                }
                notices.flush(Some(Instant::now() + super::teardown::FLUSH_GRACE));
                Err(error)
            }
        }
    }
}

/// Says why a run was refused, in the report too when that may be written. `config` is
/// what could be read of the run.
pub(crate) fn refuse(config: &Config, refusal: Refusal, notices: &Notices) -> Error {
    if refusal.report_writable {
        let mut record = Record::new(config);
        record.errors.push(refusal.message.clone());
        let target = match &config.report {
            Some(ReportTarget::File(path)) => File::create(path).ok().map(ReportOut::File),
            Some(ReportTarget::Stderr) => Some(ReportOut::Stderr),
            None => None,
        };
        if let Some(target) = target {
            target.write(&record, Exit::Code(SAFERUN_FAILED), notices);
            notices.flush(Some(Instant::now() + super::teardown::FLUSH_GRACE));
        }
    }
    Error::Refused {
        message: refusal.message,
    }
}

/// Whether the report may be written for a refusal of `config`: not when the report
/// path is the problem, or names the same file as another of the run's files.
pub(crate) fn report_writable(config: &Config) -> bool {
    match files::check_identities(&named_files(config)) {
        Ok(_) => true,
        Err(refusal) => refusal.report_writable,
    }
}

fn named_files(config: &Config) -> Vec<Named<'_>> {
    let mut named = Vec::new();
    if let StdinSource::File(path) = &config.stdin {
        named.push(Named {
            option: "--stdin-file",
            path,
            use_: Use::Read,
        });
    }
    let outputs = [
        ("--stdout-file", Some(&config.stdout)),
        ("--stderr-file", (!config.merge).then_some(&config.stderr)),
    ];
    for (option, stream) in outputs {
        if let Some(Target::File { path, append }) = stream.map(|s| &s.to) {
            named.push(Named {
                option,
                path,
                use_: Use::Write { append: *append },
            });
        }
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
    let needs_temporary = [&config.stdout, &config.stderr].iter().any(|stream| {
        (stream.passes_through() && stream.hold != crate::config::Hold::No)
            || stream.cap.is_some_and(output::cap_spills)
    });
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
        stdin: None,
        stdout: None,
        stderr: None,
        report: matches!(config.report, Some(ReportTarget::Stderr)).then_some(ReportOut::Stderr),
    };
    for (opened, entry) in opened.into_iter().zip(&named) {
        let what = format!("{} '{}'", entry.option, entry.path.display());
        match opened.option {
            "--stdin-file" => files.stdin = Some(opened.file),
            "--stdout-file" => files.stdout = Some((opened.file, what)),
            "--stderr-file" => files.stderr = Some((opened.file, what)),
            _ => files.report = Some(ReportOut::File(opened.file)),
        }
    }
    Ok(files)
}

/// What a launch shares with the job it makes.
struct Launch {
    config: Arc<Config>,
    host: Option<Host>,
    notices: Notices,
}

impl Launch {
    /// Starts the command and its threads. On failure, the error and the status it
    /// means; nothing of the command is left running.
    fn launch(
        self,
        stdin_file: Option<File>,
        files: [(Stream, Option<(File, String)>); 2],
        record: &mut Record,
    ) -> Result<Job, (Error, Exit)> {
        let config = &self.config;
        let io = |what: &str| {
            let what = what.to_string();
            let failed = Exit::Code(SAFERUN_FAILED);
            move |source| (Error::Io { what, source }, failed)
        };
        let stdin = feed::plan(&config.stdin, stdin_file).map_err(io("cannot set up stdin"))?;

        let start = Instant::now();
        let started_at = SystemTime::now();
        let effective = deadline::apply(config.limits.clone(), config.outer_deadline, started_at);
        record.started_at = Some(started_at);
        record.capped_by_outer_deadline = effective.capped;

        // Bounded, so that no helper thread allocates to send; senders wait if the loop
        // falls 256 events behind, which only delays them.
        let (events_tx, events) = crossbeam_channel::bounded(256);
        let host = self.host.clone();
        let terminal = host
            .as_ref()
            .filter(|_| config.take_terminal && !config.share_group)
            .and_then(Host::terminal);
        let mut pipes = Pipes::new(config).map_err(|(what, source)| io(what)(source))?;
        // `--pty-stdin`: the command reads the terminal, and the feeder writes there
        // whatever its stdin would have been, then an end of input.
        let (stdin_fd, stdin_feed, stdin_file) = match (&pipes.pty, config.pty_stdin) {
            (Some(pty), true) => {
                let dup = |fd: &OwnedFd| fd.try_clone().map_err(io("cannot set up stdin"));
                let source = match (stdin.feed, stdin.fd) {
                    (Some((source, _)), _) => source,
                    (None, Some(fd)) => FeedSource::Fd(fd),
                    (None, None) => FeedSource::Bytes(Vec::new()),
                };
                (
                    Some(dup(&pty.slave)?),
                    Some((source, dup(&pty.master)?, crate::pty::END_OF_INPUT)),
                    None,
                )
            }
            _ => (
                stdin.fd,
                stdin.feed.map(|(source, pipe)| (source, pipe, &[][..])),
                stdin.file,
            ),
        };
        // On its own terminal (none handed over by the host), the command leads a
        // session with it as its controlling terminal; otherwise it stays in the host's
        // session, where the keyboard and /dev/tty still reach it.
        let controlling_pty = pipes.pty.is_some() && terminal.is_none() && !config.share_group;
        let (stop_tx, stop_rx) = stop_channel().map_err(io("cannot create a pipe"))?;
        let wiring = Wiring {
            stdin: stdin_fd,
            stdout: pipes.out_writer.take(),
            stderr: pipes.err_writer.take(),
        };
        // Under a subreaper the command's environment carries the job's mark, which
        // tells its orphans from other jobs'.
        let reserved = self
            .host
            .as_ref()
            .filter(|host| host.subreaper())
            .map(Host::reserve);
        let mut env = environment(config, effective.export);
        if let Some((_, mark)) = &reserved {
            add_mark(&mut env, mark);
        }
        let setup = Setup {
            own_group: !config.share_group,
            controlling_terminal: controlling_pty,
            nofile_soft: config.nofile_soft,
            terminal: terminal.and_then(|t| t.clone_fd()),
            to_default: terminal
                .map(|t| t.ignored_here().to_vec())
                .unwrap_or_default(),
            env,
            cwd: config.cwd.clone(),
            sigpipe_ignored: config.sigpipe_ignored,
        };
        let spawn = || spawn::spawn(&config.argv, wiring, setup);
        let spawned = match &self.host {
            Some(host) => {
                let id = reserved
                    .as_ref()
                    .map_or_else(|| host.reserve().0, |(id, _)| *id);
                host.spawn_job(id, events_tx.clone(), spawn)
                    .map(|pid| (pid, Some(id)))
            }
            None => spawn().map(|pid| (pid, None)),
        };
        let (pid, host_id) = match spawned {
            Ok(spawned) => spawned,
            Err(error) => {
                record.duration = start.elapsed();
                return Err(spawn_failure(error));
            }
        };
        let group = Group::new(pid, !config.share_group);
        if let Some(terminal) = terminal {
            terminal.give_to(pid);
        }
        record.pid = Some(pid.as_raw());
        record.pgid = group.pgid().map(Pid::as_raw);

        let fed = Arc::new(AtomicU64::new(0));
        let activity = Arc::new(Activity::new(start));
        let mut held = Vec::new();
        // From here on the command runs: a failure must not leave it behind.
        let started = (|| -> std::io::Result<Vec<OpenStream>> {
            // Under a host its SIGCHLD tells the job of its command's changes; alone, a
            // thread of its own waits for them.
            if self.host.is_none() {
                group::watch(pid, events_tx.clone())?;
            }
            if let Some((source, pipe, end_with)) = stdin_feed {
                Feeder {
                    source,
                    pipe,
                    end_with,
                    fed: fed.clone(),
                    stop: stop_rx.clone(),
                    events: events_tx.clone(),
                }
                .spawn()?;
                record.stdin.end = StreamEnding::Eof;
            }
            let command_word = record.argv.first().cloned().unwrap_or_default();
            let mut streams = Vec::new();
            for ((stream, file), reader) in files.into_iter().zip(pipes.readers()) {
                let on_pty = stream == Stream::Stdout && pipes.pty.is_some();
                let Some(reader) = reader else {
                    record.stream_mut(stream).end = match config.stream(stream).to {
                        Target::Closed => StreamEnding::Closed,
                        _ => StreamEnding::None,
                    };
                    continue;
                };
                let pipe = reader;
                let writers = match &pipes.pty {
                    Some(pty) if on_pty => pty.path.clone(),
                    _ => {
                        let inode = nix::sys::stat::fstat(&pipe).map(|s| s.st_ino).unwrap_or(0);
                        format!("pipe:[{inode}]")
                    }
                };
                let stats = Arc::new(StreamStats::default());
                let built = output::build(StreamSetup {
                    stream,
                    label: match stream {
                        Stream::Stdout => "out",
                        Stream::Stderr => "err",
                    },
                    config: config.stream(stream),
                    file,
                    pid: pid.as_raw(),
                    command: &command_word,
                    start: config.clock_start.unwrap_or(start),
                    notices: self.notices.clone(),
                    events: events_tx.clone(),
                });
                if let Some((until, output)) = built.held {
                    held.push((stream, until, output));
                }
                let shared = Shared {
                    stop: stop_rx.clone(),
                    activity: activity.clone(),
                    stats: stats.clone(),
                    events: events_tx.clone(),
                };
                Drain::new(stream, pipe, built.sink, shared).spawn()?;
                streams.push(OpenStream {
                    stream,
                    writers,
                    stats,
                    cap: built.cap,
                    captured: built.captured,
                    excerpt: built.excerpt,
                    closed: false,
                });
            }
            Ok(streams)
        })();
        let streams = match started {
            Ok(streams) => streams,
            Err(source) => {
                group.signal(Signal::SIGKILL);
                group::reap(pid);
                if let Some(terminal) = terminal {
                    terminal.take_back();
                }
                if let (Some(host), Some(id)) = (&self.host, host_id) {
                    host.leave(id);
                }
                record.duration = start.elapsed();
                return Err(io("cannot start a thread (the command was killed)")(source));
            }
        };

        let mode = Mode {
            kill_leftovers: config.leftovers == Leftovers::Kill,
            share_group: config.share_group,
            job_control: terminal.is_some(),
        };
        let limits = effective.limits;
        Ok(Job {
            policy: Policy::new(limits.clone(), mode, streams.len(), start),
            limits,
            config: self.config.clone(),
            host: self.host,
            host_id,
            mark: reserved.map(|(_, mark)| mark),
            notices: self.notices,
            group,
            has_terminal: terminal.is_some(),
            pty: pipes.pty.take().map(|pty| (pty.master, controlling_pty)),
            // Only a process that had children before can meet their orphans: only then
            // is it worth a look now.
            command_started: host
                .as_ref()
                .filter(|h| h.had_children())
                .and_then(|_| crate::procfs::started(pid.as_raw())),
            start,
            last_beat: start,
            events,
            control: events_tx,
            activity,
            streams,
            stop: Some(stop_tx),
            holders_named: false,
            stdin_file,
            fed,
            held,
            report: None,
            record: Record::default(),
        })
    }
}

/// The command's output pipes: one per stream, or one for both under `--merge`, and
/// none for a stream that is closed for the command.
struct Pipes {
    out_reader: Option<OwnedFd>,
    out_writer: Option<OwnedFd>,
    err_reader: Option<OwnedFd>,
    err_writer: Option<OwnedFd>,
    /// The command's stdout is this pseudo-terminal (`--pty`).
    pty: Option<PtyEnds>,
}

/// What the job keeps of a pseudo-terminal besides the end it reads.
struct PtyEnds {
    /// For the feeder (`--pty-stdin`) and for following the caller's size.
    master: OwnedFd,
    /// The command's side, for its stdin (`--pty-stdin`).
    slave: OwnedFd,
    /// How /proc shows its holders (`/dev/pts/N`).
    path: String,
}

impl Pipes {
    fn new(config: &Config) -> Result<Pipes, (&'static str, std::io::Error)> {
        let open = |target: &Target| !matches!(target, Target::Closed);
        let pipe = || -> Result<(OwnedFd, OwnedFd), (&'static str, std::io::Error)> {
            let (reader, writer) = std::io::pipe().map_err(|e| ("cannot create a pipe", e))?;
            Ok((reader.into(), writer.into()))
        };
        let mut pty = None;
        let (out_reader, out_writer) = if !open(&config.stdout.to) {
            (None, None)
        } else if config.pty == Pty::Never {
            let (reader, writer) = pipe()?;
            (Some(reader), Some(writer))
        } else {
            match crate::pty::Pair::open() {
                Ok(pair) => {
                    let dup = |fd: &OwnedFd| {
                        fd.try_clone()
                            .map_err(|e| ("cannot open a pseudo-terminal for --pty", e))
                    };
                    pty = Some(PtyEnds {
                        master: dup(&pair.master)?,
                        slave: dup(&pair.slave)?,
                        path: pair.path,
                    });
                    (Some(pair.master), Some(pair.slave))
                }
                Err(error) if config.pty == Pty::Always => {
                    return Err(("cannot open a pseudo-terminal for --pty", error));
                }
                Err(_) => {
                    let (reader, writer) = pipe()?;
                    (Some(reader), Some(writer))
                }
            }
        };
        let (err_reader, err_writer) = match &out_writer {
            // One pipe for both: the order the kernel saw.
            Some(out) if config.merge => (
                None,
                Some(out.try_clone().map_err(|e| ("cannot create a pipe", e))?),
            ),
            None if config.merge => (None, None),
            _ if !open(&config.stderr.to) => (None, None),
            _ => {
                let (reader, writer) = pipe()?;
                (Some(reader), Some(writer))
            }
        };
        Ok(Pipes {
            out_reader,
            out_writer,
            err_reader,
            err_writer,
            pty,
        })
    }

    fn readers(&mut self) -> [Option<OwnedFd>; 2] {
        [self.out_reader.take(), self.err_reader.take()]
    }
}

/// The command's environment: the process's (unless cleared), the changes asked for,
/// and the deadline saferun exports for a saferun inside the command.
fn environment(config: &Config, export: Option<SystemTime>) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = if config.env.clear {
        Vec::new()
    } else {
        std::env::vars_os().collect()
    };
    let mut set = |name: &OsString, value: Option<&OsString>| {
        env.retain(|(existing, _)| existing != name);
        if let Some(value) = value {
            env.push((name.clone(), value.clone()));
        }
    };
    for (name, value) in &config.env.changes {
        set(name, value.as_ref());
    }
    if let Some(export) = export {
        set(
            &deadline::ENV.into(),
            Some(&deadline::format(export).into()),
        );
    }
    env
}

/// Appends `mark` to the environment's [`crate::host::MARK`] (an enclosing saferun's
/// job keeps its own mark in front).
fn add_mark(env: &mut Vec<(OsString, OsString)>, mark: &str) {
    let name = OsString::from(crate::host::MARK);
    let value = match env.iter().position(|(n, _)| *n == name) {
        Some(at) => {
            let (_, mut value) = env.remove(at);
            value.push(" ");
            value.push(mark);
            value
        }
        None => mark.into(),
    };
    env.push((name, value));
}

fn spawn_failure(error: SpawnError) -> (Error, Exit) {
    use crate::outcome::{CANNOT_EXECUTE, NOT_FOUND};
    match error {
        SpawnError::NotFound(message) => (Error::NotFound { message }, Exit::Code(NOT_FOUND)),
        SpawnError::NotExecutable(message) => {
            (Error::NotExecutable { message }, Exit::Code(CANNOT_EXECUTE))
        }
        SpawnError::Failed(message) => (Error::CannotStart { message }, Exit::Code(SAFERUN_FAILED)),
    }
}
