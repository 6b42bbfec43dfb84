//! How a run ended: the public [`Outcome`], and the exit status that says so (one
//! function, one table test).

use std::borrow::Cow;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::event::ChildEnd;
use crate::policy::Reason;
use crate::record::Record;

/// The limit fired and the command ended on the first signal.
pub(crate) const TIMED_OUT: u8 = 124;
/// saferun itself failed: bad usage, a file it cannot open or write.
pub(crate) const SAFERUN_FAILED: u8 = 125;
/// The command was found but could not be executed.
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub(crate) const NOT_FOUND: u8 = 127;
/// The limit fired and the command had to be killed with KILL (128 + 9, as GNU reports).
pub(crate) const KILLED: u8 = 137;
/// `--leftovers=fail`: the command succeeded but left processes or open pipes behind.
pub(crate) const LEFTOVERS_STATUS: u8 = 122;

/// Everything the exit status depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    /// How the command ended; `None` when it never could be reaped (it survived KILL).
    pub child: Option<ChildEnd>,
    /// Why saferun stopped the command, if it did.
    pub reason: Option<Reason>,
    /// Whether KILL was sent to the command.
    pub killed: bool,
    pub preserve_status: bool,
    /// Something outlived the command and `--leftovers=fail` asked for a failure.
    pub fail_for_leftovers: bool,
}

/// What saferun does as its last act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    Code(u8),
    /// Die of this signal so that the caller sees the same death as the command's.
    Raise(i32),
}

impl Exit {
    /// The status a shell reports for this exit.
    pub fn shell_status(self) -> i32 {
        match self {
            Exit::Code(code) => i32::from(code),
            Exit::Raise(signal) => 128 + signal,
        }
    }
}

/// The exit-status table of the contract. Once a limit fired, the status says so (124,
/// or 137 if KILL was needed), whatever came after, as GNU `timeout` does; otherwise
/// saferun ends the way the command did: its exit code, or death by the signal it died
/// of (a forwarded TERM that had to be followed by KILL is a death by KILL).
pub(crate) fn exit_for(ending: Facts) -> Exit {
    let by_signal = |signal: i32| 128u8.saturating_add(u8::try_from(signal).unwrap_or(127));
    let kill = Signal::SIGKILL as i32;
    match (ending.reason, ending.child) {
        (Some(Reason::Failed), _) => Exit::Code(SAFERUN_FAILED),
        (Some(reason), child) if reason.is_limit() => match child {
            // It never died: it is stuck in the kernel even after KILL.
            None => Exit::Code(KILLED),
            Some(ChildEnd::Signaled { signal, .. }) if signal == kill && ending.killed => {
                Exit::Code(KILLED)
            }
            _ if !ending.preserve_status => Exit::Code(TIMED_OUT),
            Some(ChildEnd::Exited(code)) => Exit::Code(code as u8),
            Some(ChildEnd::Signaled { signal, .. }) => Exit::Code(by_signal(signal)),
        },
        (_, Some(ChildEnd::Exited(0))) if ending.fail_for_leftovers => Exit::Code(LEFTOVERS_STATUS),
        (_, Some(ChildEnd::Exited(code))) => Exit::Code(code as u8),
        (_, Some(ChildEnd::Signaled { signal, .. })) => Exit::Raise(signal),
        (_, None) => Exit::Code(KILLED),
    }
}

/// Whether a run counts as failed for `--quiet-unless-fail` (held output is printed):
/// a non-zero status, or a cancellation by a signal even if the command then exited 0.
pub(crate) fn is_failure(exit: Exit, cancelled: bool) -> bool {
    exit != Exit::Code(0) || cancelled
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// The command exited by itself, with this code.
    Exited(i32),
    /// The command was killed by this signal, which the job did not send (it may have
    /// killed itself, or been killed from outside).
    Signaled(i32),
    /// A limit fired and the job stopped the command: its signal, then KILL if it was
    /// still running after the grace.
    TimedOut {
        /// Which limit.
        limit: Limit,
        /// KILL was needed (or the command could not be killed at all).
        killed: bool,
    },
    /// The process running the job received this signal (through its [`crate::Host`]) and
    /// passed it on.
    Cancelled {
        /// The signal received.
        signal: Signal,
        /// It died of the KILL that followed.
        killed: bool,
    },
    /// The job's owner stopped it ([`crate::Handle::cancel`], a dropped handle).
    Stopped {
        /// It died of KILL (a dropped handle sends it at once).
        killed: bool,
    },
    /// The job itself failed while the command ran: a destination could not be written,
    /// or the command's input could not be read. The command was stopped.
    Failed,
}

/// Which limit fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The wall clock ([`crate::Command::timeout`]), or an enclosing saferun's deadline.
    Timeout,
    /// Silence ([`crate::Command::idle_timeout`]).
    Idle,
    /// The output cap, with [`crate::Output::kill_at_cap`].
    OutputCap,
}

/// What an output stream captured ([`crate::Output::capture`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    bytes: Vec<u8>,
    elided: u64,
    /// Where the middle was cut out, when it was.
    cut: Option<usize>,
}

impl Captured {
    pub(crate) fn new(bytes: Vec<u8>, elided: u64, cut: Option<usize>) -> Captured {
        let cut = cut.map(|at| at.min(bytes.len()));
        Captured { bytes, elided, cut }
    }

    /// Every byte kept: with a cap, the head and the tail, joined.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes kept, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.bytes)
    }

    /// The bytes kept, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// How many bytes the cap cut out of the middle (0: nothing was cut).
    pub fn elided(&self) -> u64 {
        self.elided
    }

    /// The bytes before the cut (all of them when nothing was cut).
    pub fn head(&self) -> &[u8] {
        &self.bytes[..self.cut.unwrap_or(self.bytes.len())]
    }

    /// The bytes after the cut (none when nothing was cut).
    pub fn tail(&self) -> &[u8] {
        &self.bytes[self.cut.unwrap_or(self.bytes.len())..]
    }
}

/// A process named in an outcome: one that outlived the command, or still held one of
/// its pipes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its command line, or `[name]` when that cannot be read.
    pub command: String,
    /// For a pipe holder: `stdout` or `stderr`.
    pub stream: Option<&'static str>,
}

/// What the command and its reaped descendants used.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Usage {
    /// CPU time in user mode.
    pub user_cpu: Duration,
    /// CPU time in the kernel.
    pub system_cpu: Duration,
    /// The largest resident set of any one of them, in KiB.
    pub max_rss_kib: u64,
}

/// How a run ended, with everything it left to know: returned by
/// [`crate::Command::run`] and [`crate::Handle::wait`].
///
/// ```
/// use std::time::Duration;
/// use saferun::{Command, Ending, Limit, Output};
///
/// let outcome = Command::new("sh")
///     .args(["-c", "echo started; sleep 10"])
///     .timeout(Duration::from_millis(200))
///     .stdout(Output::capture())
///     .run()?;
/// assert_eq!(outcome.ending(), &Ending::TimedOut { limit: Limit::Timeout, killed: false });
/// assert_eq!(outcome.code(), 124);
/// assert_eq!(outcome.stdout().text(), "started\n");
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outcome {
    ending: Ending,
    exit: Exit,
    record: Record,
    stdout: Captured,
    stderr: Captured,
    excerpts: [Captured; 2],
}

impl Outcome {
    pub(crate) fn new(
        exit: Exit,
        record: Record,
        [stdout, stderr]: [Captured; 2],
        excerpts: [Captured; 2],
    ) -> Outcome {
        // Died of KILL, or never died at all (stuck in the kernel after KILL).
        let killed = |s: Option<ChildEnd>| {
            matches!(s, Some(ChildEnd::Signaled { signal, .. }) if signal == Signal::SIGKILL as i32)
                || s.is_none()
        };
        let timed_out = |limit| Ending::TimedOut {
            limit,
            killed: exit == Exit::Code(KILLED),
        };
        let ending = match (record.reason, record.child) {
            (Some(Reason::Timeout), _) => timed_out(Limit::Timeout),
            (Some(Reason::Idle), _) => timed_out(Limit::Idle),
            (Some(Reason::Cap), _) => timed_out(Limit::OutputCap),
            (Some(Reason::Cancelled(signal)), child) => Ending::Cancelled {
                signal,
                killed: killed(child),
            },
            (Some(Reason::Stopped), child) => Ending::Stopped {
                killed: killed(child),
            },
            (Some(Reason::Failed), _) => Ending::Failed,
            (_, Some(ChildEnd::Exited(code))) => Ending::Exited(code),
            (_, Some(ChildEnd::Signaled { signal, .. })) => Ending::Signaled(signal),
            (_, None) => Ending::Failed,
        };
        Outcome {
            ending,
            exit,
            record,
            stdout,
            stderr,
            excerpts,
        }
    }

    /// How the run ended.
    pub fn ending(&self) -> &Ending {
        &self.ending
    }

    /// The exit code saferun's own command line would end with, as GNU `timeout` would:
    /// the command's own code; 124 when a limit fired; 137 when KILL was needed; 128+N
    /// when the command died of signal N; 122 for leftovers under
    /// [`crate::Leftovers::Fail`]; 125 when the job itself failed.
    pub fn code(&self) -> i32 {
        self.exit.shell_status()
    }

    /// Whether the run succeeded: the command exited 0 by itself, and nothing made the
    /// job fail.
    pub fn success(&self) -> bool {
        self.exit == Exit::Code(0)
    }

    /// How the command itself ended, as `wait` saw it (`None` if it could not be
    /// reaped: it survived KILL, stuck in the kernel).
    pub fn status(&self) -> Option<ExitStatus> {
        self.record.child.map(|child| match child {
            ChildEnd::Exited(code) => ExitStatus::from_raw((code & 0xff) << 8),
            ChildEnd::Signaled {
                signal,
                core_dumped,
            } => ExitStatus::from_raw(signal | if core_dumped { 0x80 } else { 0 }),
        })
    }

    /// The command's pid (`None` if it never started).
    pub fn pid(&self) -> Option<u32> {
        self.record.pid.map(|pid| pid as u32)
    }

    /// What stdout captured (empty unless it was [`crate::Output::capture`]).
    pub fn stdout(&self) -> &Captured {
        &self.stdout
    }

    /// What stderr captured (empty unless it was [`crate::Output::capture`]).
    pub fn stderr(&self) -> &Captured {
        &self.stderr
    }

    /// The head and tail of stdout kept by [`crate::Output::keep_excerpt`] (empty
    /// otherwise).
    pub fn stdout_excerpt(&self) -> &Captured {
        &self.excerpts[0]
    }

    /// The same for stderr.
    pub fn stderr_excerpt(&self) -> &Captured {
        &self.excerpts[1]
    }

    /// How the run ended, in a few words: `exited 0`, `killed by SEGV`, `timed out,
    /// killed`, `no output for too long (idle timeout)`, `cancelled by INT`, `stopped`, …
    pub fn describe(&self) -> String {
        let killed = |killed: bool| if killed { ", killed" } else { "" };
        match &self.ending {
            Ending::Exited(code) => format!("exited {code}"),
            Ending::Signaled(signal) => format!("killed by {}", crate::signal::describe(*signal)),
            Ending::TimedOut { limit, killed: k } => {
                let limit = match limit {
                    Limit::Timeout => "timed out",
                    Limit::Idle => "no output for too long (idle timeout)",
                    Limit::OutputCap => "output over --max-output",
                };
                format!("{limit}{}", killed(*k))
            }
            Ending::Cancelled { signal, killed: k } => {
                format!(
                    "cancelled by {}{}",
                    crate::signal::short_name(*signal),
                    killed(*k)
                )
            }
            Ending::Stopped { killed: k } => format!("stopped{}", killed(*k)),
            Ending::Failed => match self.record.errors.first() {
                Some(error) => format!("failed: {error}"),
                None => "failed".into(),
            },
        }
    }

    /// Processes that outlived the command (named, or killed, per
    /// [`crate::Command::leftovers`]).
    pub fn leftovers(&self) -> Vec<Process> {
        self.record
            .leftovers
            .iter()
            .map(|p| Process {
                pid: p.pid as u32,
                command: p.command.clone(),
                stream: None,
            })
            .collect()
    }

    /// Processes that still held one of the command's pipes when the linger ran out.
    pub fn pipe_holders(&self) -> Vec<Process> {
        self.record
            .pipe_holders
            .iter()
            .map(|h| Process {
                pid: h.pid as u32,
                command: h.command.clone(),
                stream: Some(h.stream),
            })
            .collect()
    }

    /// What the command's tree used.
    pub fn usage(&self) -> Usage {
        let usage = &self.record.rusage;
        Usage {
            user_cpu: Duration::from_secs_f64(usage.user_cpu_seconds.max(0.0)),
            system_cpu: Duration::from_secs_f64(usage.system_cpu_seconds.max(0.0)),
            max_rss_kib: usage.max_rss_kib.max(0) as u64,
        }
    }

    /// From the command's start to the end of the run.
    pub fn duration(&self) -> Duration {
        self.record.duration
    }

    /// saferun's own messages about the run (a destination it could not write, …).
    pub fn errors(&self) -> &[String] {
        &self.record.errors
    }

    /// The JSON report of the run (docs/report.md describes every field).
    pub fn report(&self) -> String {
        crate::report::to_json(&self.record, self.code())
    }

    /// Ends this process the way saferun's command line does: with [`Outcome::code`],
    /// or, when the command died of a signal that the job did not send, by that same
    /// signal (core dumps off), so that a calling shell sees that death.
    pub fn exit(&self) -> ! {
        match self.exit {
            Exit::Code(code) => std::process::exit(i32::from(code)),
            Exit::Raise(signal) => crate::group::die_of(signal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: i32 = Signal::SIGTERM as i32;

    fn ending(child: Option<ChildEnd>, reason: Option<Reason>, killed: bool) -> Facts {
        Facts {
            child,
            reason,
            killed,
            preserve_status: false,
            fail_for_leftovers: false,
        }
    }

    fn code(c: i32) -> Option<ChildEnd> {
        Some(ChildEnd::Exited(c))
    }

    fn sig(s: i32) -> Option<ChildEnd> {
        Some(ChildEnd::Signaled {
            signal: s,
            core_dumped: false,
        })
    }

    #[test]
    fn table() {
        let kill = Signal::SIGKILL as i32;
        let int = Signal::SIGINT;
        let rows: &[(Facts, Exit)] = &[
            (ending(code(0), None, false), Exit::Code(0)),
            (ending(code(3), None, false), Exit::Code(3)),
            (ending(code(255), None, false), Exit::Code(255)),
            (ending(sig(TERM), None, false), Exit::Raise(TERM)),
            (
                ending(sig(TERM), Some(Reason::Timeout), false),
                Exit::Code(124),
            ),
            (
                ending(code(0), Some(Reason::Timeout), false),
                Exit::Code(124),
            ),
            (ending(code(0), Some(Reason::Idle), false), Exit::Code(124)),
            (ending(sig(TERM), Some(Reason::Cap), false), Exit::Code(124)),
            (
                ending(sig(kill), Some(Reason::Timeout), true),
                Exit::Code(137),
            ),
            (ending(None, Some(Reason::Timeout), true), Exit::Code(137)),
            (
                ending(code(1), Some(Reason::Failed), false),
                Exit::Code(125),
            ),
            // Cancelled: death by the signal the command died of.
            (
                ending(sig(TERM), Some(Reason::Cancelled(int)), false),
                Exit::Raise(TERM),
            ),
            // A forwarded INT that had to be followed by KILL: death by KILL.
            (
                ending(sig(kill), Some(Reason::Cancelled(int)), true),
                Exit::Raise(kill),
            ),
            (
                ending(code(4), Some(Reason::Cancelled(int)), false),
                Exit::Code(4),
            ),
        ];
        for (input, want) in rows {
            assert_eq!(exit_for(*input), *want, "{input:?}");
        }
    }

    #[test]
    fn preserve_status() {
        let preserve = |child, killed| Facts {
            preserve_status: true,
            ..ending(child, Some(Reason::Timeout), killed)
        };
        assert_eq!(exit_for(preserve(code(7), false)), Exit::Code(7));
        assert_eq!(exit_for(preserve(sig(TERM), false)), Exit::Code(143));
        assert_eq!(
            exit_for(preserve(sig(Signal::SIGKILL as i32), true)),
            Exit::Code(137)
        );
    }

    #[test]
    fn a_cancellation_during_a_timeout_keeps_the_timeout_status() {
        // The limit's reason stays; the cancellation only made KILL come at once.
        let during = |child, killed| ending(child, Some(Reason::Timeout), killed);
        assert_eq!(
            exit_for(during(sig(Signal::SIGKILL as i32), true)),
            Exit::Code(KILLED)
        );
        assert_eq!(exit_for(during(sig(TERM), false)), Exit::Code(TIMED_OUT));
        assert!(is_failure(Exit::Code(0), true));
        assert!(!is_failure(Exit::Code(0), false));
    }

    #[test]
    fn leftovers_fail_only_turns_success_into_failure() {
        let with = |child| Facts {
            fail_for_leftovers: true,
            ..ending(child, None, false)
        };
        assert_eq!(exit_for(with(code(0))), Exit::Code(LEFTOVERS_STATUS));
        assert_eq!(exit_for(with(code(2))), Exit::Code(2));
    }
}
