//! The process-wide part of running commands: what a process can do only once, for all
//! the jobs it runs.

use std::sync::{Arc, Mutex, MutexGuard};

use crossbeam_channel::{Receiver, Sender};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::error::Error;
use crate::event::Event;
use crate::forward::{self, ContWatch};
use crate::group::{self, Terminal};
use crate::procfs;

/// The process-wide parts of supervising commands, installed once per process.
///
/// A [`Command`](crate::Command) runs as a job that owns its own process group, pipes
/// and threads, and touches nothing else: it installs no signal handler, and reaps and
/// signals no process but its own. What only a whole process can do lives here, for the
/// jobs that opt in with [`Command::host`](crate::Command::host):
///
/// - **Signals.** INT, TERM, HUP, QUIT, USR1, USR2, ALRM and every other signal that
///   would end the process (but those it ignored when the host was installed) are
///   caught and passed on to every job, which forwards them to its command's group; INT,
///   TERM and HUP stop the job with its usual escalation (grace, then KILL), and a second
///   one sends KILL at once. A CI runner that cancels the process thus stops every
///   command, and nothing is left running.
/// - **Orphans.** On Linux the process becomes a *subreaper*: descendants that leave
///   their command's process group (`setsid`, a double fork) are re-parented to it, so
///   they are still found, signalled with their job and named as leftovers. The host
///   reaps them when they exit: children that are no job's command and are not in the
///   process's own process group. The program's own children (spawned with
///   `std::process`, in its group) keep their exit statuses for it.
/// - **The terminal** ([`Host::install_with_terminal`]): a job whose command may use the
///   terminal gets its foreground process group for the run, as a shell gives it to a
///   job, and Ctrl-Z stops the command and the process together.
///
/// The handlers are installed when the first job starts its command, and stay for the
/// rest of the process's life: install a host in a program whose signals are its own,
/// such as a supervisor or a command-line tool.
///
/// ```no_run
/// use std::time::Duration;
///
/// let host = saferun::Host::install()?;
/// let outcome = saferun::Command::new("make")
///     .arg("test")
///     .timeout(Duration::from_secs(600))
///     .host(&host)
///     .run()?;
/// std::process::exit(outcome.code());
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    jobs: Mutex<Registry>,
    /// Who else wants to know of the signals the process receives (a batch, which
    /// starts no more jobs once one asks to stop).
    listeners: Mutex<Vec<Sender<Signal>>>,
    /// Whether the signal handlers are in place: they are installed when the first job
    /// starts its command, so that until then (its files may take long to open: a FIFO
    /// waits for its reader) a signal ends the process as it would any other.
    catching: Mutex<bool>,
    subreaper: bool,
    /// A container's init ([`Host::install_init`]).
    init: bool,
    /// The process's children from before the host: never any job's.
    not_ours: Vec<i32>,
    terminal: Option<Terminal>,
    cont_watch: ContWatch,
}

/// The live jobs, each with where its events go.
#[derive(Default)]
struct Registry {
    next_id: u64,
    jobs: Vec<Registered>,
    /// How many jobs' commands were ever started: while it is one, every orphan is
    /// that job's; past one, orphans are told apart by their mark.
    started: u64,
}

struct Registered {
    id: u64,
    pid: Pid,
    /// Its exit was reported (it stays unreaped until the job reaps it).
    exited: bool,
    /// Where the job's events go; `None` for a helper process (`--on-timeout`), which
    /// is only kept from the reaper.
    events: Option<Sender<Event>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("subreaper", &self.inner.subreaper)
            .field("init", &self.inner.init)
            .field("terminal", &self.inner.terminal.is_some())
            .finish()
    }
}

impl Host {
    /// Installs the signal handlers and, on Linux, makes the process a subreaper.
    pub fn install() -> Result<Host, Error> {
        Host::setup(None, false)
    }

    /// As [`Host::install`], and when the process runs in the foreground of a terminal
    /// (one of its standard streams is it), holds that terminal for jobs that take it:
    /// TTIN and TTOU are ignored by the process from now on, as a shell does.
    pub fn install_with_terminal() -> Result<Host, Error> {
        Host::setup(Terminal::if_foreground(), false)
    }

    /// As [`Host::install_with_terminal`], for a container's first process (PID 1) or
    /// any process that must act as an init: every orphan is reaped, whatever its
    /// group (none stays a zombie), and the signals PID 1 would drop unless caught
    /// (WINCH, URG, TTIN, TTOU) are passed on too. Commands should then stop their
    /// leftovers ([`crate::Leftovers::Kill`]), so that a graceful stop reaches every
    /// process before the namespace goes.
    pub fn install_init() -> Result<Host, Error> {
        Host::setup(Terminal::if_foreground(), true)
    }

    fn setup(terminal: Option<Terminal>, init: bool) -> Result<Host, Error> {
        let subreaper = group::become_subreaper();
        let not_ours = if group::has_children() {
            procfs::own_children()
        } else {
            Vec::new()
        };
        Ok(Host {
            inner: Arc::new(Inner {
                jobs: Mutex::new(Registry::default()),
                listeners: Mutex::new(Vec::new()),
                catching: Mutex::new(false),
                subreaper,
                init,
                not_ours,
                terminal,
                cont_watch: ContWatch::default(),
            }),
        })
    }

    /// Installs the signal handlers, once: before the first job's command starts, so
    /// that no signal (and no SIGCHLD) is missed from then on.
    fn catch_signals(&self) -> Result<(), std::io::Error> {
        let mut catching = self
            .inner
            .catching
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *catching {
            return Ok(());
        }
        let handlers = forward::install(&self.inner.cont_watch, self.inner.init)?;
        let dispatch = self.clone();
        handlers.start(move |signal, from_kernel| dispatch.dispatch(signal, from_kernel))?;
        *catching = true;
        Ok(())
    }

    /// One signal the process received. SIGCHLD: each job's command that changed state
    /// is told to its job (peeked at, never reaped: see [`group::child_change`]), and
    /// orphans are reaped; every signal goes to every job (SIGCHLD too: a job waiting for
    /// its tree to die looks again).
    fn dispatch(&self, signal: Signal, from_kernel: bool) {
        // Sent once the registry is let go: a job whose events wait may be asking it.
        let mut outbox: Vec<(Sender<Event>, Event)> = Vec::new();
        let mut registry = self.registry();
        for job in &mut registry.jobs {
            let Some(events) = &job.events else { continue };
            while signal == Signal::SIGCHLD && !job.exited {
                let Some(change) = group::child_change(job.pid) else {
                    break;
                };
                job.exited = matches!(change, Event::Exited(_));
                outbox.push((events.clone(), change));
            }
            outbox.push((
                events.clone(),
                Event::Signal {
                    signal,
                    from_kernel,
                },
            ));
        }
        drop(registry);
        if signal != Signal::SIGCHLD {
            let mut listeners = self
                .inner
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            listeners.retain(|listener| {
                !matches!(
                    listener.try_send(signal),
                    Err(crossbeam_channel::TrySendError::Disconnected(_))
                )
            });
        }
        for (events, event) in outbox {
            match event {
                // A SIGCHLD a busy job misses is only a hint to look at its tree again.
                Event::Signal {
                    signal: Signal::SIGCHLD,
                    ..
                } => drop(events.try_send(event)),
                // The rest must arrive, unless the job has stopped listening (it ended,
                // and leaves the registry).
                _ => drop(events.send_timeout(event, std::time::Duration::from_secs(1))),
            }
        }
        if signal == Signal::SIGCHLD && self.inner.subreaper {
            self.reap_orphans();
        }
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The signals the process receives from now on (but SIGCHLD), as they come; the
    /// listening ends when the receiver is dropped.
    pub(crate) fn listen(&self) -> Receiver<Signal> {
        let (listener, signals) = crossbeam_channel::bounded(16);
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(listener);
        signals
    }

    /// A place in the registry for a job about to start, and the mark its command's
    /// environment carries ([`MARK`]): orphans that carry it are that job's.
    pub(crate) fn reserve(&self) -> (JobId, String) {
        let mut registry = self.registry();
        registry.next_id += 1;
        let id = registry.next_id;
        (JobId(id), format!("{}.{id}", std::process::id()))
    }

    /// Starts a job's command with `spawn` and registers it, under the registry's lock,
    /// so that the reaper never takes the command for an orphan (were it to exit at
    /// once).
    pub(crate) fn spawn_job<E: From<std::io::Error>>(
        &self,
        id: JobId,
        events: Sender<Event>,
        spawn: impl FnOnce() -> Result<Pid, E>,
    ) -> Result<Pid, E> {
        self.catch_signals()?;
        let pid = self.register(id, Some(events), spawn)?;
        self.registry().started += 1;
        Ok(pid)
    }

    fn register<E>(
        &self,
        id: JobId,
        events: Option<Sender<Event>>,
        spawn: impl FnOnce() -> Result<Pid, E>,
    ) -> Result<Pid, E> {
        let mut registry = self.registry();
        let pid = spawn()?;
        registry.jobs.push(Registered {
            id: id.0,
            pid,
            exited: false,
            events,
        });
        Ok(pid)
    }

    /// Starts a helper process (`--on-timeout`) under the registry's lock and keeps it
    /// from the reaper until `done` returns.
    pub(crate) fn spawn_helper<T>(
        &self,
        spawn: impl FnOnce() -> std::io::Result<Pid>,
        done: impl FnOnce(Option<Pid>) -> T,
    ) -> T {
        let (id, _) = self.reserve();
        match self.register(id, None, spawn) {
            Ok(pid) => {
                let result = done(Some(pid));
                self.leave(id);
                result
            }
            Err(_) => done(None),
        }
    }

    /// The job is over: no more signals for it.
    pub(crate) fn leave(&self, id: JobId) {
        self.registry().jobs.retain(|job| job.id != id.0);
    }

    /// Reaps exited orphans; says whether any child but the jobs' commands is alive. An
    /// orphan is a child that is no job's command (nor a helper's), and not in the
    /// process's own group: the process's own children (a program's other
    /// `std::process` children, those it had before) are left to whoever waits for them.
    pub(crate) fn reap_orphans(&self) -> bool {
        let own_group = nix::unistd::getpgrp();
        let registry = self.registry();
        let orphans: Vec<i32> = procfs::own_children()
            .into_iter()
            .filter(|pid| {
                !registry.jobs.iter().any(|job| job.pid.as_raw() == *pid)
                    && !self.inner.not_ours.contains(pid)
            })
            .collect();
        drop(registry);
        let init = self.inner.init;
        group::reap_orphans(&orphans, |pid| {
            init || nix::unistd::getpgid(Some(Pid::from_raw(pid))).is_ok_and(|g| g != own_group)
        })
    }

    /// Whether the process is a container's init.
    pub(crate) fn init(&self) -> bool {
        self.inner.init
    }

    /// Whether the process had children before the host (some of their descendants may
    /// be orphaned to it later).
    pub(crate) fn had_children(&self) -> bool {
        !self.inner.not_ours.is_empty()
    }

    pub(crate) fn subreaper(&self) -> bool {
        self.inner.subreaper
    }

    /// The process's children that are not the job `pid`'s to count: those from before
    /// the host, and the other jobs' commands.
    pub(crate) fn not_ours(&self, pid: Pid) -> Vec<i32> {
        let registry = self.registry();
        self.inner
            .not_ours
            .iter()
            .copied()
            .chain(
                registry
                    .jobs
                    .iter()
                    .filter(|job| job.pid != pid)
                    .map(|job| job.pid.as_raw()),
            )
            .collect()
    }

    /// Whether the orphans re-parented to the process are this job's: they are when it
    /// is the only job the host ever started (once there were others, an orphan may be
    /// one of theirs, even after they ended).
    pub(crate) fn orphans_are_of(&self, pid: Pid) -> bool {
        let registry = self.registry();
        let mut jobs = registry.jobs.iter().filter(|job| job.events.is_some());
        registry.started <= 1
            && jobs.next().is_some_and(|job| job.pid == pid)
            && jobs.next().is_none()
    }

    pub(crate) fn terminal(&self) -> Option<&Terminal> {
        self.inner.terminal.as_ref()
    }

    pub(crate) fn cont_watch(&self) -> &ContWatch {
        &self.inner.cont_watch
    }
}

/// The environment variable that marks a job's processes: `PID.ID` of each enclosing
/// job, outermost first, separated by spaces. It is how an orphan re-parented to the
/// subreaper is told to be one job's rather than another's when several run at once.
pub(crate) const MARK: &str = "SAFERUN_JOB";

/// A job's place in the host's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JobId(u64);
