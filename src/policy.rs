//! The run's decisions as a pure state machine: an event or a deadline goes in, actions
//! come out. No clock is read and no signal is sent here, so every rule is unit-tested
//! with made-up instants.
//!
//! The run moves through its [`Phase`]s in this order:
//!
//! ```text
//! Running ──limit fires / INT,TERM,HUP / asked to stop──▶ Stopping ──kill-after over──▶ (KILL)
//!    │                                                       │
//!    └──────────────────── command exits ────────────────────┤
//!                                                            ▼
//!   Exited: drain what is still written; while a stop is under way (or --kill-leftovers
//!   signalled what was left) also wait for the rest of the tree to die, or KILL it
//!                                                            │
//!  pipes closed (and tree gone) / linger ran out with a holder / bound after KILL
//!                                                            ▼
//!                                                        Finished
//! ```
//!
//! A job-control stop (Ctrl-Z) pauses every clock; CONT shifts every deadline by the
//! time spent stopped.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::config::Limits;
use crate::event::Event;

/// Why saferun started stopping the command (or, after it exited, what it left).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `--timeout` ran out.
    Timeout,
    /// `--idle-timeout`: no output for too long.
    Idle,
    /// `--max-output` was reached under `--on-max-output=kill`.
    Cap,
    /// saferun received this signal (a cancelled job).
    Cancelled(Signal),
    /// The job's owner asked it to stop (a handle's `cancel`, `--fail-fast`, `--until`).
    Stopped,
    /// saferun itself failed (a destination could not be written, stdin could not be
    /// read).
    Failed,
    /// The command exited under `--kill-leftovers`: what it left is being stopped.
    Leftovers,
}

impl Reason {
    /// The stable word for it: in the report's `end_reason` and `signals_sent`, and in
    /// `SAFERUN_REASON` for `--on-timeout`.
    pub fn word(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Idle => "idle",
            Reason::Cap => "cap",
            Reason::Cancelled(_) => "cancelled",
            Reason::Stopped => "stopped",
            Reason::Failed => "failed",
            Reason::Leftovers => "leftovers",
        }
    }

    /// Limits that fire on their own (as opposed to being asked to stop).
    pub fn is_limit(self) -> bool {
        matches!(self, Reason::Timeout | Reason::Idle | Reason::Cap)
    }
}

/// What the main thread must do next, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Record why the command is stuck (and run `--on-timeout`) before the first signal.
    Diagnose(Reason),
    /// Send this signal to the command's group and every escaped descendant, then CONT
    /// so that a stopped command can act on it.
    Signal(Signal),
    /// Pass a signal saferun received on to the command's group, as it is.
    Forward(Signal),
    /// KILL the command's group and every descendant.
    Kill,
    /// The command exited under `--kill-leftovers`: signal what is left of its tree.
    SignalLeftovers(Signal),
    /// Job control: take the terminal back and stop saferun itself until CONT.
    PauseSelf,
    /// Continued after a pause: give the terminal back to the command and CONT it.
    Resume,
    /// `--linger` ran out with streams open: find out whether anyone still holds them
    /// and answer with [`Policy::linger_verdict`].
    CheckHolders,
    /// Stop draining: close the read ends of the command's pipes.
    StopStreams,
    /// The run is over.
    Finish,
}

/// A stop under way: its first signal went out, KILL may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    pub reason: Reason,
    pub began: Instant,
    /// When KILL follows the first signal, if it does.
    kill_at: Option<Instant>,
    /// When KILL was sent.
    pub killed_at: Option<Instant>,
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The command runs and nothing is being stopped.
    Running,
    /// A stop is under way and the command still runs.
    Stopping(Stop),
    /// The command exited; its pipes and the rest of its tree may not have.
    Exited(AfterExit),
    /// Nothing more happens. What is kept is what the exit status needs.
    Finished { stop: Option<Stop>, exited: bool },
}

/// The run after the command exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AfterExit {
    at: Instant,
    /// The stop under way when it exited, one begun after (a failure, a cancellation), or
    /// the stop of what it left under `--kill-leftovers`.
    stop: Option<Stop>,
    /// Whether the rest of the tree was seen gone (it is waited for only while a KILL is
    /// scheduled: see [`Policy::waiting_for_tree`]).
    tree_gone: bool,
    pipes: Pipes,
}

/// What is known about the command's pipes after it exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pipes {
    /// `--linger` has not run out yet.
    Lingering,
    /// It ran out and some process still holds a pipe.
    Held,
    /// Nobody holds them any more: what is left is being delivered, however slowly.
    Delivering,
}

/// Switches that change how the policy reads events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mode {
    pub kill_leftovers: bool,
    pub share_group: bool,
    pub job_control: bool,
}

/// The state machine. Build one per run with [`Policy::new`].
#[derive(Debug)]
pub struct Policy {
    limits: Limits,
    mode: Mode,
    phase: Phase,
    wall_deadline: Option<Instant>,
    /// saferun ends by then whatever happens: timeout + kill-after + linger (none when
    /// there is no timeout, or escalation is off).
    hard_end: Option<Instant>,
    /// Silence is counted from here at the earliest (start, or the end of a pause).
    quiet_since: Instant,
    /// Job control: every clock stands still since then.
    paused_since: Option<Instant>,
    /// The signal that cancelled the run, even if a limit had fired first.
    cancelled: Option<Signal>,
    open_streams: usize,
}

impl Policy {
    pub fn new(limits: Limits, mode: Mode, open_streams: usize, start: Instant) -> Policy {
        let wall_deadline = limits.timeout.and_then(|t| start.checked_add(t));
        let hard_end = match (wall_deadline, limits.kill_after) {
            (Some(wall), Some(kill)) => wall
                .checked_add(kill)
                .and_then(|t| t.checked_add(limits.linger)),
            _ => None,
        };
        Policy {
            limits,
            mode,
            phase: Phase::Running,
            wall_deadline,
            hard_end,
            quiet_since: start,
            paused_since: None,
            cancelled: None,
            open_streams,
        }
    }

    /// The stop under way or done, if any (of the command, or of what it left).
    pub fn stopping(&self) -> Option<Stop> {
        match self.phase {
            Phase::Running => None,
            Phase::Stopping(stop) => Some(stop),
            Phase::Exited(after) => after.stop,
            Phase::Finished { stop, .. } => stop,
        }
    }

    /// The signal that cancelled the run, if one did.
    pub fn cancelled(&self) -> Option<Signal> {
        self.cancelled
    }

    pub fn exited(&self) -> bool {
        matches!(
            self.phase,
            Phase::Exited(_) | Phase::Finished { exited: true, .. }
        )
    }

    pub fn finished(&self) -> bool {
        matches!(self.phase, Phase::Finished { .. })
    }

    /// When saferun ends whatever happens, if a timeout sets such a bound.
    pub fn hard_end(&self) -> Option<Instant> {
        self.hard_end
    }

    /// Whether KILL was sent (to the command, or to what it left).
    pub fn killed(&self) -> bool {
        self.stopping().is_some_and(|s| s.killed_at.is_some())
    }

    /// Whether the run waits for the rest of the command's tree to die: the command
    /// exited while saferun was stopping it (or under `--kill-leftovers`), and KILL has
    /// not been sent yet. The caller then reports [`Policy::tree_gone`] when it is.
    /// Only while a KILL is scheduled: with `-k 0`, or after a failure that sent no
    /// signal, nothing would ever end the wait. Under `--foreground` a stop is the
    /// command's alone, so only leftovers are waited for.
    pub fn waiting_for_tree(&self) -> bool {
        let Phase::Exited(after) = self.phase else {
            return false;
        };
        let Some(stop) = after.stop else {
            return false;
        };
        let ours = !self.mode.share_group || stop.reason == Reason::Leftovers;
        ours && !after.tree_gone && stop.killed_at.is_none() && stop.kill_at.is_some()
    }

    /// Reacts to one event.
    pub fn handle(&mut self, event: &Event, now: Instant) -> Vec<Action> {
        match (event, self.phase) {
            (_, Phase::Finished { .. }) => Vec::new(),
            (Event::Exited(_), _) => self.on_exit(now),
            (Event::StreamClosed { .. }, _) => {
                self.open_streams = self.open_streams.saturating_sub(1);
                self.finish_if_done()
            }
            (Event::WriteFailed { .. } | Event::InputFailed { .. }, Phase::Running) => {
                self.begin_stop(Reason::Failed, self.limits.signal, now)
            }
            (Event::WriteFailed { .. } | Event::InputFailed { .. }, Phase::Exited(after))
                if after.stop.is_none() =>
            {
                // Nothing to stop: the status only has to say that saferun failed.
                self.set_stop(Stop {
                    reason: Reason::Failed,
                    began: now,
                    kill_at: None,
                    killed_at: None,
                });
                Vec::new()
            }
            (Event::CapReached, Phase::Running) => {
                self.begin_stop(Reason::Cap, self.limits.signal, now)
            }
            (Event::StopAsked, Phase::Running) => {
                self.begin_stop(Reason::Stopped, self.limits.signal, now)
            }
            (Event::KillAsked, Phase::Running) => {
                self.begin_stop(Reason::Stopped, Signal::SIGKILL, now)
            }
            (Event::KillAsked, Phase::Stopping(mut stop)) if stop.killed_at.is_none() => {
                stop.killed_at = Some(now);
                self.phase = Phase::Stopping(stop);
                vec![Action::Kill]
            }
            (Event::KillAsked | Event::StopAsked, Phase::Exited(_)) => {
                // Only leftovers remain: stop waiting for them.
                self.finish_now()
            }
            (Event::Stopped(signal), Phase::Running | Phase::Stopping(_)) => {
                let keyboard_stop = [Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU]
                    .iter()
                    .any(|s| *s as i32 == *signal);
                if keyboard_stop && self.mode.job_control {
                    self.pause(now);
                    vec![Action::PauseSelf]
                } else {
                    Vec::new()
                }
            }
            (
                Event::Signal {
                    signal,
                    from_kernel,
                },
                _,
            ) => self.on_signal(*signal, *from_kernel, now),
            _ => Vec::new(),
        }
    }

    fn on_exit(&mut self, now: Instant) -> Vec<Action> {
        self.resume(now);
        let stop = match self.phase {
            Phase::Stopping(stop) => Some(stop),
            _ => None,
        };
        self.phase = Phase::Exited(AfterExit {
            at: now,
            stop,
            tree_gone: false,
            pipes: Pipes::Lingering,
        });
        let mut actions = Vec::new();
        if self.mode.kill_leftovers && stop.is_none() {
            self.set_stop(Stop {
                reason: Reason::Leftovers,
                began: now,
                kill_at: self.limits.kill_after.and_then(|k| now.checked_add(k)),
                killed_at: None,
            });
            actions.push(Action::SignalLeftovers(self.limits.signal));
        }
        actions.extend(self.finish_if_done());
        actions
    }

    fn on_signal(&mut self, signal: Signal, from_kernel: bool, now: Instant) -> Vec<Action> {
        let already_delivered = from_kernel && self.mode.share_group;
        match signal {
            Signal::SIGCHLD => Vec::new(),
            Signal::SIGTSTP => {
                self.pause(now);
                let mut actions = Vec::new();
                if !already_delivered {
                    actions.push(Action::Forward(Signal::SIGTSTP));
                }
                actions.push(Action::PauseSelf);
                actions
            }
            Signal::SIGCONT => {
                if self.paused_since.is_some() {
                    self.resume(now);
                    vec![Action::Resume]
                } else {
                    vec![Action::Forward(Signal::SIGCONT)]
                }
            }
            Signal::SIGINT | Signal::SIGTERM | Signal::SIGHUP => {
                self.resume(now);
                // A cancellation counts unless the command already ended under a limit:
                // then the limit's status stands.
                let ended_under_limit = matches!(
                    self.phase,
                    Phase::Exited(AfterExit { stop: Some(stop), .. }) if stop.reason != Reason::Leftovers
                );
                if self.cancelled.is_none() && !ended_under_limit {
                    self.cancelled = Some(signal);
                }
                match self.phase {
                    Phase::Exited(after) => {
                        // Only leftovers remain: stop waiting for them.
                        if after.stop.is_none_or(|s| s.reason == Reason::Leftovers) {
                            self.set_stop(Stop {
                                reason: Reason::Cancelled(signal),
                                began: now,
                                kill_at: None,
                                killed_at: None,
                            });
                        }
                        self.finish_now()
                    }
                    Phase::Stopping(mut stop)
                        if stop.killed_at.is_none() && signal != Signal::SIGHUP =>
                    {
                        // A second INT or TERM (or one during a timeout): the user means it.
                        stop.killed_at = Some(now);
                        self.phase = Phase::Stopping(stop);
                        vec![Action::Kill]
                    }
                    Phase::Stopping(_) => vec![Action::Forward(signal)],
                    Phase::Running => {
                        let actions = self.begin_stop(Reason::Cancelled(signal), signal, now);
                        if already_delivered {
                            Vec::new()
                        } else {
                            actions
                        }
                    }
                    Phase::Finished { .. } => Vec::new(),
                }
            }
            _ if already_delivered => Vec::new(),
            other => vec![Action::Forward(other)],
        }
    }

    /// Reacts to the clock; call it whenever [`Policy::next_deadline`] has passed.
    /// `last_output` is when a drain last saw or delivered a byte.
    pub fn tick(&mut self, now: Instant, last_output: Instant) -> Vec<Action> {
        if self.finished() || self.paused_since.is_some() {
            return Vec::new();
        }
        let mut actions = Vec::new();
        if self.phase == Phase::Running {
            if self.wall_deadline.is_some_and(|d| d <= now) {
                actions.extend(self.begin_stop(Reason::Timeout, self.limits.signal, now));
            } else if self.idle_deadline(last_output).is_some_and(|d| d <= now) {
                actions.extend(self.begin_stop(Reason::Idle, self.limits.signal, now));
            }
        }
        if self.kill_deadline().is_some_and(|k| k <= now) {
            self.mark_killed(now);
            actions.push(Action::Kill);
            actions.extend(self.finish_if_done());
        }
        if self.hard_end.is_some_and(|end| end <= now) {
            // Past the hard end nothing more is waited for. What fell due by then went
            // out above, also when all of it fell due at once (an outer deadline
            // already past).
            if !self.finished() {
                actions.extend(self.finish_now());
            }
            return actions;
        }
        if let Some(killed) = self.stopping().and_then(|s| s.killed_at)
            && killed
                .checked_add(self.limits.linger)
                .is_some_and(|end| end <= now)
        {
            // KILL was sent a linger ago: whatever is still there cannot be helped.
            actions.extend(self.finish_now());
        } else if self.linger_deadline().is_some_and(|end| end <= now) {
            actions.push(Action::CheckHolders);
        }
        actions
    }

    /// The answer to [`Action::CheckHolders`]: if some process still holds a pipe, stop
    /// reading and end; if nobody does, the drains are only delivering what is left, so
    /// wait for them (bounded by the hard end, if any).
    /// While the tree must still die (a stop in progress), the pipes stay open until it
    /// has or KILL went out, so that it dies of the signal and not of SIGPIPE.
    pub fn linger_verdict(&mut self, held: bool) -> Vec<Action> {
        let Phase::Exited(mut after) = self.phase else {
            return Vec::new();
        };
        after.pipes = if held { Pipes::Held } else { Pipes::Delivering };
        self.phase = Phase::Exited(after);
        if !held || self.waiting_for_tree() {
            self.finish_if_done()
        } else {
            self.finish_now()
        }
    }

    /// The rest of the command's tree has died (see [`Policy::waiting_for_tree`]).
    pub fn tree_gone(&mut self) -> Vec<Action> {
        if let Phase::Exited(mut after) = self.phase {
            after.tree_gone = true;
            self.phase = Phase::Exited(after);
        }
        self.finish_if_done()
    }

    /// The next instant at which [`Policy::tick`] has something to do.
    pub fn next_deadline(&self, last_output: Instant) -> Option<Instant> {
        if self.finished() || self.paused_since.is_some() {
            return None;
        }
        let running = if self.phase == Phase::Running {
            [self.wall_deadline, self.idle_deadline(last_output)]
        } else {
            [None, None]
        };
        let after_kill = self
            .stopping()
            .and_then(|s| s.killed_at)
            .and_then(|k| k.checked_add(self.limits.linger));
        running
            .into_iter()
            .chain([
                self.kill_deadline(),
                after_kill,
                self.linger_deadline(),
                self.hard_end,
            ])
            .flatten()
            .min()
    }

    fn idle_deadline(&self, last_output: Instant) -> Option<Instant> {
        let idle = self.limits.idle_timeout?;
        last_output.max(self.quiet_since).checked_add(idle)
    }

    /// When KILL is due: `--kill-after` after the first signal (a stop, or leftovers
    /// signalled at exit), unless it went out already or the tree is gone.
    fn kill_deadline(&self) -> Option<Instant> {
        let stop = self.stopping()?;
        if stop.killed_at.is_some() {
            return None;
        }
        match self.phase {
            Phase::Exited(after) if after.tree_gone => return None,
            // Under --foreground KILL is for the command alone, and it is gone.
            Phase::Exited(_) if self.mode.share_group && stop.reason != Reason::Leftovers => {
                return None;
            }
            _ => {}
        }
        // Due at the hard end at the latest: a stop that began late (every stage fell
        // due at once) still ends with KILL, never with the tree running.
        match (stop.kill_at, self.hard_end) {
            (Some(kill), Some(end)) => Some(kill.min(end)),
            (kill, _) => kill,
        }
    }

    /// After the command exited, when to look at who still holds its pipes.
    fn linger_deadline(&self) -> Option<Instant> {
        let Phase::Exited(after) = self.phase else {
            return None;
        };
        if self.open_streams == 0 || after.pipes != Pipes::Lingering || self.killed() {
            return None;
        }
        after.at.checked_add(self.limits.linger)
    }

    fn set_stop(&mut self, stop: Stop) {
        match &mut self.phase {
            Phase::Exited(after) => after.stop = Some(stop),
            phase => *phase = Phase::Stopping(stop),
        }
    }

    fn mark_killed(&mut self, now: Instant) {
        if let Some(mut stop) = self.stopping() {
            stop.killed_at = Some(now);
            self.set_stop(stop);
        }
    }

    fn begin_stop(&mut self, reason: Reason, signal: Signal, now: Instant) -> Vec<Action> {
        let kill_at = match signal {
            Signal::SIGKILL => None,
            _ => self.limits.kill_after.and_then(|k| now.checked_add(k)),
        };
        self.phase = Phase::Stopping(Stop {
            reason,
            began: now,
            kill_at,
            killed_at: (signal == Signal::SIGKILL).then_some(now),
        });
        let mut actions = Vec::new();
        if reason.is_limit() {
            actions.push(Action::Diagnose(reason));
        }
        actions.push(Action::Signal(signal));
        actions
    }

    fn finish_if_done(&mut self) -> Vec<Action> {
        let done = matches!(self.phase, Phase::Exited(_))
            && self.open_streams == 0
            && !self.waiting_for_tree();
        if done { self.finish_now() } else { Vec::new() }
    }

    fn finish_now(&mut self) -> Vec<Action> {
        self.phase = Phase::Finished {
            stop: self.stopping(),
            exited: self.exited(),
        };
        if self.open_streams > 0 {
            vec![Action::StopStreams, Action::Finish]
        } else {
            vec![Action::Finish]
        }
    }

    fn pause(&mut self, now: Instant) {
        if self.paused_since.is_none() {
            self.paused_since = Some(now);
        }
    }

    /// Ends a pause, shifting every stored instant by its length.
    fn resume(&mut self, now: Instant) {
        let Some(since) = self.paused_since.take() else {
            return;
        };
        let paused: Duration = now.saturating_duration_since(since);
        let shift = |t: Instant| t.checked_add(paused).unwrap_or(t);
        let shift_stop = |stop: &mut Stop| {
            stop.kill_at = stop.kill_at.map(shift);
            stop.killed_at = stop.killed_at.map(shift);
        };
        self.wall_deadline = self.wall_deadline.map(shift);
        self.hard_end = self.hard_end.map(shift);
        match &mut self.phase {
            Phase::Stopping(stop) => shift_stop(stop),
            Phase::Exited(after) => {
                after.at = shift(after.at);
                if let Some(stop) = &mut after.stop {
                    shift_stop(stop);
                }
            }
            _ => {}
        }
        self.quiet_since = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChildEnd, Stream, StreamEnd};

    fn limits() -> Limits {
        // The defaults (TERM, 5s grace, 1s linger) with a 10s timeout.
        Limits {
            timeout: Some(Duration::from_secs(10)),
            ..Limits::default()
        }
    }

    fn secs(t0: Instant, s: f64) -> Instant {
        t0 + Duration::from_secs_f64(s)
    }

    fn exited() -> Event {
        Event::Exited(ChildEnd::Exited(0))
    }

    fn closed() -> Event {
        Event::StreamClosed {
            stream: Stream::Stdout,
            end: StreamEnd::Eof,
        }
    }

    fn signal(signal: Signal) -> Event {
        Event::Signal {
            signal,
            from_kernel: false,
        }
    }

    #[test]
    fn clean_exit_finishes_when_streams_close() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 10.0)));
        assert!(p.handle(&closed(), secs(t0, 1.0)).is_empty());
        assert!(p.handle(&exited(), secs(t0, 1.0)).is_empty());
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 2.0)), "linger");
        assert_eq!(p.handle(&closed(), secs(t0, 1.5)), vec![Action::Finish]);
        assert!(p.finished());
    }

    #[test]
    fn every_stage_due_at_once_still_signals_and_kills() {
        // An outer deadline already past: timeout, kill-after and linger are all zero.
        let t0 = Instant::now();
        let now_limits = Limits {
            timeout: Some(Duration::ZERO),
            kill_after: Some(Duration::ZERO),
            linger: Duration::ZERO,
            ..limits()
        };
        let mut p = Policy::new(now_limits, Mode::default(), 2, t0);
        assert_eq!(
            p.tick(secs(t0, 0.001), t0),
            vec![
                Action::Diagnose(Reason::Timeout),
                Action::Signal(Signal::SIGTERM),
                Action::Kill,
                Action::StopStreams,
                Action::Finish
            ]
        );
        assert!(p.killed());
    }

    #[test]
    fn timeout_diagnoses_signals_then_kills() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert!(p.tick(secs(t0, 9.9), t0).is_empty());
        assert_eq!(
            p.tick(secs(t0, 10.0), t0),
            vec![
                Action::Diagnose(Reason::Timeout),
                Action::Signal(Signal::SIGTERM)
            ]
        );
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 15.0)));
        assert_eq!(p.tick(secs(t0, 15.0), t0), vec![Action::Kill]);
        // A command that survives KILL (uninterruptible sleep) is given up after linger.
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 16.0)));
        assert_eq!(
            p.tick(secs(t0, 16.0), t0),
            vec![Action::StopStreams, Action::Finish]
        );
        assert!(!p.exited());
    }

    #[test]
    fn kill_after_zero_never_escalates() {
        let t0 = Instant::now();
        let mut l = limits();
        l.kill_after = None;
        let mut p = Policy::new(l, Mode::default(), 0, t0);
        p.tick(secs(t0, 10.0), t0);
        assert_eq!(p.next_deadline(t0), None);
        // No KILL can come, so saferun does not wait for the rest of the tree.
        assert!(!p.waiting_for_tree());
        assert_eq!(p.handle(&exited(), secs(t0, 100.0)), vec![Action::Finish]);
    }

    #[test]
    fn kill_signal_needs_no_escalation() {
        let t0 = Instant::now();
        let mut l = limits();
        l.signal = Signal::SIGKILL;
        let mut p = Policy::new(l, Mode::default(), 0, t0);
        p.tick(secs(t0, 10.0), t0);
        assert!(p.stopping().unwrap().killed_at.is_some());
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 11.0)));
    }

    #[test]
    fn idle_counts_from_last_output() {
        let t0 = Instant::now();
        let mut l = limits();
        l.timeout = None;
        l.idle_timeout = Some(Duration::from_secs(2));
        let mut p = Policy::new(l, Mode::default(), 1, t0);
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 2.0)));
        let chatty = secs(t0, 1.5);
        assert!(p.tick(secs(t0, 2.0), chatty).is_empty());
        assert_eq!(p.next_deadline(chatty), Some(secs(t0, 3.5)));
        assert_eq!(
            p.tick(secs(t0, 3.5), chatty),
            vec![
                Action::Diagnose(Reason::Idle),
                Action::Signal(Signal::SIGTERM)
            ]
        );
    }

    #[test]
    fn linger_runs_out() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 1, t0);
        p.handle(&exited(), secs(t0, 1.0));
        assert_eq!(p.tick(secs(t0, 2.0), t0), vec![Action::CheckHolders]);
        assert_eq!(
            p.linger_verdict(true),
            vec![Action::StopStreams, Action::Finish]
        );
    }

    #[test]
    fn a_slow_reader_is_not_cut_off_when_nobody_holds_the_pipe() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 1, t0);
        p.handle(&exited(), secs(t0, 1.0));
        assert_eq!(p.tick(secs(t0, 2.0), t0), vec![Action::CheckHolders]);
        assert!(p.linger_verdict(false).is_empty());
        // Still delivering: only the hard end (timeout + kill-after + linger) is left.
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 16.0)));
        assert_eq!(p.handle(&closed(), secs(t0, 5.0)), vec![Action::Finish]);
    }

    #[test]
    fn after_a_timeout_the_tree_gets_its_grace_then_kill() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 1, t0);
        p.tick(secs(t0, 10.0), t0);
        // The leader dies of TERM; a group member that ignores TERM holds stdout.
        p.handle(
            &Event::Exited(ChildEnd::Signaled {
                signal: 15,
                core_dumped: false,
            }),
            secs(t0, 10.1),
        );
        assert_eq!(p.tick(secs(t0, 11.1), t0), vec![Action::CheckHolders]);
        assert!(
            p.linger_verdict(true).is_empty(),
            "pipes stay open until KILL"
        );
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 15.0)));
        assert_eq!(p.tick(secs(t0, 15.0), t0), vec![Action::Kill]);
        assert_eq!(p.handle(&closed(), secs(t0, 15.01)), vec![Action::Finish]);
    }

    #[test]
    fn cancelling_during_a_timeout_is_remembered() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 1, t0);
        p.tick(secs(t0, 10.0), t0);
        assert_eq!(
            p.handle(&signal(Signal::SIGINT), secs(t0, 11.0)),
            vec![Action::Kill]
        );
        assert_eq!(p.cancelled(), Some(Signal::SIGINT));
        assert_eq!(p.stopping().unwrap().reason, Reason::Timeout);
    }

    #[test]
    fn cancelling_after_the_command_ended_under_a_limit_keeps_the_limit() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 1, t0);
        p.tick(secs(t0, 10.0), t0);
        p.handle(&exited(), secs(t0, 10.1));
        p.handle(&signal(Signal::SIGTERM), secs(t0, 11.0));
        assert_eq!(p.cancelled(), None);
    }

    #[test]
    fn leftovers_signalled_at_exit() {
        let t0 = Instant::now();
        let mode = Mode {
            kill_leftovers: true,
            ..Mode::default()
        };
        let mut p = Policy::new(limits(), mode, 1, t0);
        assert_eq!(
            p.handle(&exited(), t0),
            vec![Action::SignalLeftovers(Signal::SIGTERM)]
        );
        assert!(p.waiting_for_tree());
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 1.0)), "linger first");
        assert_eq!(p.tick(secs(t0, 1.0), t0), vec![Action::CheckHolders]);
        assert!(p.linger_verdict(true).is_empty());
        assert_eq!(p.tick(secs(t0, 5.0), t0), vec![Action::Kill]);
        assert!(p.tick(secs(t0, 5.5), t0).is_empty(), "KILL goes out once");
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 6.0)), "bound after KILL");
        assert_eq!(p.handle(&closed(), secs(t0, 5.6)), vec![Action::Finish]);
    }

    #[test]
    fn forwarded_term_escalates_and_second_int_kills() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert_eq!(
            p.handle(&signal(Signal::SIGTERM), secs(t0, 1.0)),
            vec![Action::Signal(Signal::SIGTERM)]
        );
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 6.0)));
        assert_eq!(
            p.handle(&signal(Signal::SIGINT), secs(t0, 2.0)),
            vec![Action::Kill]
        );
        assert_eq!(
            p.stopping().unwrap().reason,
            Reason::Cancelled(Signal::SIGTERM)
        );
    }

    #[test]
    fn other_signals_are_forwarded_only() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert_eq!(
            p.handle(&signal(Signal::SIGUSR1), t0),
            vec![Action::Forward(Signal::SIGUSR1)]
        );
        assert!(p.stopping().is_none());
    }

    #[test]
    fn terminal_signal_not_delivered_twice_in_shared_group() {
        let t0 = Instant::now();
        let mode = Mode {
            share_group: true,
            ..Mode::default()
        };
        let mut p = Policy::new(limits(), mode, 2, t0);
        let ctrl_c = Event::Signal {
            signal: Signal::SIGINT,
            from_kernel: true,
        };
        assert!(p.handle(&ctrl_c, t0).is_empty());
        assert!(p.stopping().is_some(), "escalation still applies");
    }

    #[test]
    fn stop_pauses_every_clock() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert_eq!(
            p.handle(&signal(Signal::SIGTSTP), secs(t0, 4.0)),
            vec![Action::Forward(Signal::SIGTSTP), Action::PauseSelf]
        );
        assert_eq!(p.next_deadline(t0), None);
        assert!(p.tick(secs(t0, 50.0), t0).is_empty());
        assert_eq!(
            p.handle(&signal(Signal::SIGCONT), secs(t0, 64.0)),
            vec![Action::Resume]
        );
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 70.0)));
        // The command exits; its linger is counted from then, not shifted twice.
        p.handle(&exited(), secs(t0, 65.0));
        assert_eq!(p.next_deadline(t0), Some(secs(t0, 66.0)));
    }

    #[test]
    fn keyboard_stop_of_command_pauses_under_job_control() {
        let t0 = Instant::now();
        let mode = Mode {
            job_control: true,
            ..Mode::default()
        };
        let mut p = Policy::new(limits(), mode, 2, t0);
        let stopped = Event::Stopped(Signal::SIGTSTP as i32);
        assert_eq!(p.handle(&stopped, t0), vec![Action::PauseSelf]);
        let mut plain = Policy::new(limits(), Mode::default(), 2, t0);
        assert!(plain.handle(&stopped, t0).is_empty());
    }

    #[test]
    fn write_failure_stops_the_command() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        let failed = Event::WriteFailed {
            what: "/dev/full".into(),
            error: std::io::Error::other("full"),
        };
        assert_eq!(p.handle(&failed, t0), vec![Action::Signal(Signal::SIGTERM)]);
        assert_eq!(p.stopping().unwrap().reason, Reason::Failed);
    }

    #[test]
    fn cap_behaves_like_a_timeout() {
        let t0 = Instant::now();
        let mut p = Policy::new(limits(), Mode::default(), 2, t0);
        assert_eq!(
            p.handle(&Event::CapReached, t0),
            vec![
                Action::Diagnose(Reason::Cap),
                Action::Signal(Signal::SIGTERM)
            ]
        );
    }

    #[test]
    fn huge_timeout_never_overflows() {
        let t0 = Instant::now();
        let mut l = limits();
        l.timeout = Some(Duration::from_secs(100 * 365 * 24 * 3600));
        l.kill_after = Some(Duration::from_secs(100 * 365 * 24 * 3600));
        let mut p = Policy::new(l, Mode::default(), 0, t0);
        assert!(p.tick(secs(t0, 1e6), t0).is_empty());
    }
}
