//! The job's loop: it owns the clock. Each event (or deadline) goes to the policy; the
//! actions that come back are carried out here, in order.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use nix::sys::signal::Signal;

use super::Job;
use crate::diagnose;
use crate::event::{Event, Stream, StreamEnd};
use crate::files;
use crate::group;
use crate::policy::{Action, Reason};
use crate::procfs;
use crate::record::{StreamEnding, Why, human};
use crate::signal::short_name;

/// While the rest of a stopped tree is awaited, how often /proc is looked at.
const TREE_CHECK: Duration = Duration::from_millis(10);

impl Job {
    /// Runs the loop until the policy says the run is over.
    pub(crate) fn supervise(&mut self) {
        let mut tree_check_due: Option<Instant> = None;
        while !self.policy.finished() {
            let now = Instant::now();
            let recheck = tree_check_due.filter(|_| self.policy.waiting_for_tree());
            let next = [
                self.policy.next_deadline(self.activity.last_output(now)),
                recheck,
                self.heartbeat_due(now),
            ]
            .into_iter()
            .flatten()
            .min();
            let received = match next {
                Some(deadline) => self.events.recv_deadline(deadline),
                None => self
                    .events
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            let now = Instant::now();
            let mut actions = match received {
                Ok(event) => self.handle(&event, now),
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                // Every helper thread is gone; nothing more can happen.
                Err(RecvTimeoutError::Disconnected) => vec![Action::Finish],
            };
            // A flood of events must not stop the clock: deadlines are looked at after
            // every event, not only when the channel is quiet.
            let last_output = self.activity.last_output(now);
            if self
                .policy
                .next_deadline(last_output)
                .is_some_and(|deadline| deadline <= now)
            {
                actions.extend(self.policy.tick(now, last_output));
            }
            if self.heartbeat_due(now).is_some_and(|due| due <= now) {
                self.heartbeat(now);
            }
            // The tree check reads /proc: at once when the wait begins, then at most
            // every TREE_CHECK.
            if self.policy.waiting_for_tree() {
                if tree_check_due.is_none_or(|due| due <= now) {
                    tree_check_due = Some(now + TREE_CHECK);
                    if self.tree().live().is_empty() {
                        actions.extend(self.policy.tree_gone());
                    }
                }
            } else {
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

    /// When the next `--heartbeat` notice is due: a whole interval after the last
    /// output and the last notice, while the command runs.
    fn heartbeat_due(&self, now: Instant) -> Option<Instant> {
        let every = self.config.heartbeat?;
        if self.policy.exited() {
            return None;
        }
        Some(self.activity.last_output(now).max(self.last_beat) + every)
    }

    /// `saferun: still running after 12m, last output 5m ago`.
    fn heartbeat(&mut self, now: Instant) {
        let whole_seconds = |d: Duration| human(Duration::from_secs(d.as_secs()));
        let running = whole_seconds(now - self.start);
        let wrote = self
            .streams
            .iter()
            .any(|s| s.stats.read.load(std::sync::atomic::Ordering::Relaxed) > 0);
        let last = if wrote {
            let silent = now - self.activity.last_output(now);
            format!("last output {} ago", whole_seconds(silent))
        } else {
            "no output yet".to_string()
        };
        self.notices
            .say(&format!("still running after {running}, {last}"));
        self.last_beat = now;
    }

    /// Records an event and asks the policy about it.
    pub(super) fn handle(&mut self, event: &Event, now: Instant) -> Vec<Action> {
        if let Event::Signal {
            signal: Signal::SIGWINCH,
            ..
        } = event
            && !self.follow_resize()
        {
            return Vec::new();
        }
        self.note(event);
        self.policy.handle(event, now)
    }

    /// The caller's terminal changed size: so does the command's pseudo-terminal. Says
    /// whether the command must be told with a forwarded WINCH: the kernel tells the
    /// foreground group of a controlling terminal itself, and a command on saferun's
    /// own terminal got it already; as a container's init, nobody else tells it.
    fn follow_resize(&self) -> bool {
        if let Some((master, _)) = &self.pty {
            crate::pty::follow_caller(std::os::fd::AsFd::as_fd(master));
        }
        let init = self.host.as_ref().is_some_and(crate::host::Host::init);
        init || self.pty.as_ref().is_some_and(|(_, controls)| !controls)
    }

    /// Records what an event tells about the run.
    fn note(&mut self, event: &Event) {
        match event {
            Event::Exited(end) => {
                // Still readable: the command waits to be reaped.
                if self.command_started.is_none() {
                    self.command_started = procfs::started(self.group.pid().as_raw());
                }
                self.record.child = Some(*end);
            }
            // A keyboard stop of the command: saferun will stop itself next.
            Event::Stopped(_) if self.has_terminal => {
                if let Some(host) = &self.host {
                    host.cont_watch().mark_stop();
                }
            }
            // Stopped for wanting a terminal it does not hold: it would wait silently
            // until a limit ends it.
            Event::Stopped(signal)
                if *signal == Signal::SIGTTIN as i32 || *signal == Signal::SIGTTOU as i32 =>
            {
                let hint = if self.notices.seat().is_some() {
                    " (--stdin-to gives one command the terminal)"
                } else {
                    ""
                };
                self.notices.say(&format!(
                    "the command was stopped by {}: it wants the terminal, which it does not \
                     hold; it stays stopped until a limit or a signal ends it{hint}",
                    crate::signal::describe(*signal)
                ));
            }
            Event::Stopped(_) => {
                if let Some(host) = &self.host {
                    host.cont_watch().mark_stop();
                }
            }
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
                self.log_signal(signal, Why::Forwarded);
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
                    _ => {
                        let names: Vec<String> = self
                            .tree()
                            .live()
                            .into_iter()
                            .map(procfs::with_command)
                            .map(|p| format!("pid {} ({})", p.pid, p.command))
                            .collect();
                        self.notices.say(&format!(
                            "leftovers still running {} after {}; sending KILL to {}",
                            human(self.limits.kill_after.unwrap_or_default()),
                            short_name(self.limits.signal),
                            if names.is_empty() {
                                "the group".to_string()
                            } else {
                                names.join(", ")
                            }
                        ));
                    }
                }
                self.signal_tree(Signal::SIGKILL, Why::Escalation);
            }
            Action::SignalLeftovers(signal) => {
                self.name_leftovers();
                self.signal_tree(signal, Why::Leftovers);
            }
            Action::PauseSelf => {
                self.notices.detail("command stopped; pausing every timer");
                if let Some(host) = &self.host {
                    if let Some(terminal) = host.terminal() {
                        terminal.take_back();
                    }
                    // A CONT that came already (its event is queued) must not find
                    // saferun stopping itself afterwards, with nobody left to continue it.
                    if !host.cont_watch().continued_since_stop() {
                        group::stop_self();
                    }
                }
            }
            Action::Resume => {
                self.notices
                    .detail("continued; resuming the command and every timer");
                if let Some(terminal) = self.host.as_ref().and_then(|h| h.terminal())
                    && self.has_terminal
                    && terminal.saferun_in_foreground()
                {
                    terminal.give_to(self.group.pid());
                }
                self.group.signal(Signal::SIGCONT);
                self.log_signal(Signal::SIGCONT, Why::JobControl);
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

    /// Why signals go out now.
    fn why(&self) -> Why {
        self.policy
            .stopping()
            .map_or(Why::Leftovers, |s| Why::Stop(s.reason))
    }

    /// A limit fired: say so, record the tree and what each process waits on, and run
    /// `--on-timeout`, all before the first signal.
    fn diagnose(&mut self, reason: Reason) {
        let signal = short_name(self.limits.signal);
        let message = match reason {
            Reason::Idle => {
                // A pipe makes most programs block-buffer: silence may be output that
                // waits in the command's own buffer.
                let hint = if self.pty.is_none()
                    && self.streams.iter().any(|s| s.stream == Stream::Stdout)
                {
                    " (its stdout is a pipe: a command that block-buffers it, as C stdio and \
                     Python without -u do, may have been writing all along; --pty gives it \
                     a terminal, and line buffering)"
                } else {
                    ""
                };
                format!(
                    "no output for {} (--idle-timeout); sending {signal}{hint}",
                    human(self.limits.idle_timeout.unwrap_or_default())
                )
            }
            Reason::Cap => format!("output reached --max-output; sending {signal}"),
            _ if self.record.capped_by_outer_deadline => format!(
                "timed out after {} (the enclosing saferun's deadline); sending {signal}",
                human(self.limits.timeout.unwrap_or_default())
            ),
            _ if self.limits.timeout_is_total => {
                format!("stopped by --total-timeout; sending {signal}")
            }
            _ => format!(
                "timed out after {} (--timeout); sending {signal}",
                human(self.limits.timeout.unwrap_or_default())
            ),
        };
        self.notices.say(&message);
        if !self.notices.verbose()
            && self.config.report.is_none()
            && self.config.on_timeout.is_none()
        {
            // Nobody would read the tree: do not delay the signal for it.
            return;
        }
        let tree = diagnose::tree_lines(&self.tree().entries());
        if self.notices.verbose() && !tree.is_empty() {
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
                self.host.as_ref(),
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
}
