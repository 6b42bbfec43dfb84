//! The process's own signals, caught for the host to pass on to its jobs.
//!
//! Every signal that would end saferun is caught so it can be passed on to the command
//! (and escalated) instead, except those ignored when saferun started: a background job
//! ignores INT and QUIT, and the command must inherit that, as from a plain exec.
//! Handlers are reset to the default by `exec`, so the command starts with default
//! dispositions for all of them.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;
use signal_hook::low_level::siginfo::Cause;

/// The signals saferun forwards: all that would end it and that a handler may catch,
/// plus job control (TSTP, CONT).
pub(crate) const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGXCPU,
    Signal::SIGXFSZ,
    Signal::SIGVTALRM,
    Signal::SIGPROF,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Signal::SIGPWR,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Signal::SIGSTKFLT,
    Signal::SIGIO,
    Signal::SIGTSTP,
    Signal::SIGCONT,
    // A terminal's new size: a job whose command writes to a pseudo-terminal of
    // saferun's follows it (see crate::pty); the command already got it otherwise.
    Signal::SIGWINCH,
    // Not forwarded: it tells saferun that the command (or, as subreaper, an orphan)
    // changed state.
    Signal::SIGCHLD,
];

/// What a container's init also passes on: the signals whose default is to be ignored
/// or to stop, which PID 1 would otherwise drop (WINCH is caught anyway).
pub(crate) const ALSO_AS_INIT: &[Signal] = &[Signal::SIGURG, Signal::SIGTTIN, Signal::SIGTTOU];

/// Installed handlers; signals that arrive before [`Handlers::start`] wait in its pipe.
pub(crate) struct Handlers(SignalsInfo<WithOrigin>);

/// Tells whether saferun was continued since it was last told to stop, counted in the
/// signal handlers themselves: a TSTP quickly followed by CONT must not leave saferun
/// stopping itself after the CONT already came (nobody would send another).
#[derive(Clone, Default)]
pub(crate) struct ContWatch {
    conts: Arc<AtomicUsize>,
    at_stop: Arc<AtomicUsize>,
}

impl ContWatch {
    /// Notes "saferun is about to stop" (for a stop that did not come as TSTP).
    pub(crate) fn mark_stop(&self) {
        self.at_stop
            .store(self.conts.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Whether a CONT arrived since the last TSTP (or [`ContWatch::mark_stop`]).
    pub(crate) fn continued_since_stop(&self) -> bool {
        self.conts.load(Ordering::SeqCst) != self.at_stop.load(Ordering::SeqCst)
    }

    /// `catch_tstp`: false when TSTP was ignored at start, which must stay so.
    fn install(&self, catch_tstp: bool) -> io::Result<()> {
        let conts = self.conts.clone();
        let seen = self.conts.clone();
        let at_stop = self.at_stop.clone();
        // SAFETY: both actions only load and store atomics, which is async-signal-safe;
        // they allocate nothing and take no lock.
        unsafe {
            signal_hook::low_level::register(Signal::SIGCONT as i32, move || {
                conts.fetch_add(1, Ordering::SeqCst);
            })?;
            if catch_tstp {
                signal_hook::low_level::register(Signal::SIGTSTP as i32, move || {
                    at_stop.store(seen.load(Ordering::SeqCst), Ordering::SeqCst);
                })?;
            }
        }
        Ok(())
    }
}

/// Installs the handlers (`init`: for [`ALSO_AS_INIT`] too). Done before the command
/// starts, so that no signal (and no SIGCHLD) is missed.
pub(crate) fn install(watch: &ContWatch, init: bool) -> io::Result<Handlers> {
    let also: &[Signal] = if init { ALSO_AS_INIT } else { &[] };
    let wanted: Vec<i32> = FORWARDED
        .iter()
        .filter(|signal| {
            matches!(signal, Signal::SIGCONT | Signal::SIGCHLD | Signal::SIGWINCH)
                || !ignored(**signal)
        })
        .chain(also)
        .map(|signal| *signal as i32)
        .collect();
    // A mask inherited from the caller could hold these back forever (a blocked SIGCHLD
    // would hide the command's exit). Threads started later inherit the cleared mask.
    let mut unblock = SigSet::empty();
    for signal in FORWARDED {
        unblock.add(*signal);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&unblock), None);
    let handlers = SignalsInfo::<WithOrigin>::new(&wanted).map(Handlers)?;
    watch.install(wanted.contains(&(Signal::SIGTSTP as i32)))?;
    Ok(handlers)
}

impl Handlers {
    /// Starts the thread that hands each signal to `dispatch`, with whether the kernel
    /// (the terminal) sent it rather than a process with `kill`.
    pub(crate) fn start(self, dispatch: impl Fn(Signal, bool) + Send + 'static) -> io::Result<()> {
        let mut signals = self.0;
        thread::Builder::new()
            .name("signals".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                for origin in signals.forever() {
                    if let Ok(signal) = Signal::try_from(origin.signal) {
                        dispatch(signal, matches!(origin.cause, Cause::Kernel));
                    }
                }
            })
            .map(drop)
    }
}

/// Whether `signal` is set to SIG_IGN: before saferun installs its handlers, by
/// whoever started saferun. Only a system call, so the spawned child may ask too.
pub(crate) fn ignored(signal: Signal) -> bool {
    let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action makes sigaction a pure query; `current` is valid,
    // zero-initialised storage for the kernel to fill.
    let queried =
        unsafe { libc::sigaction(signal as i32, std::ptr::null(), current.as_mut_ptr()) } == 0;
    // SAFETY: zeroed is a valid sigaction, and the kernel filled it on success.
    let current = unsafe { current.assume_init() };
    queried && current.sa_sigaction == libc::SIG_IGN
}
