//! How the run ended, and the exit status that says so. One function, one table test.

use nix::sys::signal::Signal;

use crate::event::ChildEnd;
use crate::policy::Reason;

/// The limit fired and the command ended on the first signal.
pub const TIMED_OUT: u8 = 124;
/// saferun itself failed: bad usage, a file it cannot open or write.
pub const SAFERUN_FAILED: u8 = 125;
/// The command was found but could not be executed.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found.
pub const NOT_FOUND: u8 = 127;
/// The limit fired and the command had to be killed with KILL (128 + 9, as GNU reports).
pub const KILLED: u8 = 137;
/// `--leftovers=fail`: the command succeeded but left processes or open pipes behind.
pub const LEFTOVERS_STATUS: u8 = 122;

/// Everything the exit status depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
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
pub enum Exit {
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
pub fn exit_for(ending: Ending) -> Exit {
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
pub fn is_failure(exit: Exit, cancelled: bool) -> bool {
    exit != Exit::Code(0) || cancelled
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERM: i32 = Signal::SIGTERM as i32;

    fn ending(child: Option<ChildEnd>, reason: Option<Reason>, killed: bool) -> Ending {
        Ending {
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
        let rows: &[(Ending, Exit)] = &[
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
        let preserve = |child, killed| Ending {
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
        let with = |child| Ending {
            fail_for_leftovers: true,
            ..ending(child, None, false)
        };
        assert_eq!(exit_for(with(code(0))), Exit::Code(LEFTOVERS_STATUS));
        assert_eq!(exit_for(with(code(2))), Exit::Code(2));
    }
}
