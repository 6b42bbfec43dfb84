//! Which processes are the job's, and what is done to them: signals to the whole tree,
//! escapees that left the command's group, who still holds a pipe, what was left behind.
//!
//! The tree is the command, its descendants and the members of its process group.
//! Under a host that is the process's subreaper, descendants that left the group and
//! were re-parented (`setsid`, a double fork) are found too, when they can only be this
//! job's; without one, nothing outside the command's own line of descent is counted.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Job;
use crate::group;
use crate::host::{Host, MARK};
use crate::policy::Reason;
use crate::procfs::{self, Proc, TreeEntry};
use crate::record::{self, PipeHolder, ProcessInfo, SentSignal, Why, human};
use crate::signal::short_name;

/// After the final KILL of leftovers, how long the job waits to see them gone.
const REAP_GRACE: Duration = Duration::from_millis(500);

/// A job's processes, as /proc shows them now.
pub(super) struct Tree<'a> {
    pid: Pid,
    pgid: Option<Pid>,
    host: Option<&'a Host>,
    /// When the command started (ticks since boot), if known.
    started: Option<u64>,
    /// The mark in its command's environment.
    mark: Option<&'a str>,
}

impl Tree<'_> {
    /// The table to look in and the process to look below: the command, or, under a
    /// subreaper, the whole process's family less what is not this job's.
    fn scope(&self) -> (Vec<Proc>, i32) {
        let me = std::process::id() as i32;
        let Some(host) = self.host.filter(|host| host.subreaper()) else {
            return (procfs::table(me, false, &[]), self.pid.as_raw());
        };
        let mut table = procfs::table(me, true, &host.not_ours(self.pid));
        if !host.orphans_are_of(self.pid) {
            // Other jobs run: of the orphans, those that carry this job's mark are its.
            let Some(mark) = self.mark else {
                return (table, self.pid.as_raw());
            };
            let command = self.pid.as_raw();
            table.retain(|p| {
                p.ppid != me || p.pid == command || procfs::env_has_word(p.pid, MARK, mark)
            });
        }
        // Not a descendant of a child the process had before (orphaned later, it came
        // to the subreaper too): one that started before the command, or that is still
        // in the process's own group, where nothing of a command with a group of its own
        // goes.
        let own_group = nix::unistd::getpgrp().as_raw();
        table.retain(|p| {
            self.started.is_none_or(|start| p.started >= start)
                && (self.pgid.is_none() || p.pgid != own_group)
        });
        (table, me)
    }

    /// Every live process of the tree but the command itself (alive or waiting to be
    /// reaped). Only short names: callers read the command lines of those they keep
    /// ([`procfs::with_command`]).
    pub(super) fn live(&self) -> Vec<Proc> {
        let (table, root) = self.scope();
        procfs::below(root, self.pgid.map(Pid::as_raw), &table)
            .into_iter()
            .filter(|p| p.pid != self.pid.as_raw() && p.state != 'Z')
            .collect()
    }

    /// The whole tree, the command first, parents before children, with command lines.
    pub(super) fn entries(&self) -> Vec<TreeEntry> {
        let (table, root) = self.scope();
        let group = self.pgid.map(Pid::as_raw);
        if root != self.pid.as_raw() {
            return procfs::descendants(root, group, &table);
        }
        let Some(command) = procfs::read(root) else {
            return procfs::descendants(root, group, &table);
        };
        let mut entries = vec![TreeEntry {
            depth: 0,
            proc: command,
        }];
        entries.extend(
            procfs::descendants(root, group, &table)
                .into_iter()
                .map(|e| TreeEntry {
                    depth: e.depth + 1,
                    ..e
                }),
        );
        entries
    }
}

impl Job {
    pub(super) fn tree(&self) -> Tree<'_> {
        Tree {
            pid: self.group.pid(),
            pgid: self.group.pgid(),
            host: self.host.as_ref(),
            started: self.command_started,
            mark: self.mark.as_deref(),
        }
    }

    /// Signals the command's group at once, then every descendant that left it; then,
    /// unless the signal is KILL or CONT, continues them all so that a stopped process
    /// can act on it. Under `--foreground` a stop (a limit, a forwarded signal) reaches
    /// the command alone, as with GNU `timeout`; what outlives it is the leftovers
    /// policy's.
    pub(super) fn signal_tree(&mut self, signal: Signal, why: Why) {
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

    pub(super) fn log_signal(&mut self, signal: Signal, why: Why) {
        let (to, target) = match self.group.pgid() {
            Some(_) => ("group", "process group"),
            None => ("process", "pid"),
        };
        if signal != Signal::SIGCONT || why == Why::JobControl {
            self.notices.detail(&format!(
                "sent {} to {target} {} ({})",
                short_name(signal),
                self.group.pid(),
                why.word()
            ));
        }
        self.record.signals.push(SentSignal {
            signal: short_name(signal).to_string(),
            at: record::round_us(self.start.elapsed().as_secs_f64()),
            to,
            why,
        });
    }

    /// Live processes of the tree outside the command's group (re-parented to a
    /// subreaper, or under `--foreground` every descendant but the command).
    fn escapees(&self) -> Vec<Proc> {
        let pgid = self.group.pgid().map(Pid::as_raw);
        self.tree()
            .live()
            .into_iter()
            .filter(|p| Some(p.pgid) != pgid)
            .map(procfs::with_command)
            .collect()
    }

    /// A process that survived KILL (uninterruptible sleep): say so and give up on it.
    pub(super) fn unkillable(&mut self, proc: Proc, what: &str) {
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
    pub(super) fn name_pipe_holders(&mut self) -> bool {
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
        let open: Vec<_> = self
            .streams
            .iter()
            .filter(|s| !s.closed)
            .map(|s| (s.stream, s.writers.clone()))
            .collect();
        for (stream, writers) in open {
            let holders = procfs::pipe_writers(&writers);
            if holders.is_empty() && !proc_readable {
                held = true;
                self.notices.say(&format!(
                    "{} still held open {linger} after the command exited; {then}",
                    stream.name()
                ));
            }
            held |= !holders.is_empty();
            for holder in holders {
                self.notices.say(&format!(
                    "{} still held by pid {} ({}) {linger} after the command exited; {then}",
                    stream.name(),
                    holder.pid,
                    holder.command
                ));
                self.record.pipe_holders.push(PipeHolder {
                    stream: stream.name(),
                    pid: holder.pid,
                    command: holder.command,
                });
            }
        }
        held
    }

    /// Records what is left of the tree as the command's leftovers (before they are
    /// signalled and gone).
    pub(super) fn name_leftovers(&mut self) {
        // A container's init says what it stops on its way out: the log may be all
        // that is left of the container.
        let init = self.host.as_ref().is_some_and(Host::init);
        for proc in self.tree().live().into_iter().map(procfs::with_command) {
            let line = format!(
                "pid {} ({}) outlived the command; stopping it (--kill-leftovers)",
                proc.pid, proc.command
            );
            if init {
                self.notices.say(&line);
            } else {
                self.notices.detail(&line);
            }
            self.note_leftover(proc);
        }
    }

    fn note_leftover(&mut self, proc: Proc) {
        if !self.record.leftovers.iter().any(|p| p.pid == proc.pid) {
            self.record.leftovers.push(ProcessInfo {
                pid: proc.pid,
                command: proc.command,
                state: Some(proc.state.to_string()),
            });
        }
    }

    /// Finds processes that outlived the command and names them, or kills them
    /// (timeouts, cancellation, `--leftovers=kill`).
    pub(super) fn handle_leftovers(&mut self, command_reaped: bool, kill: bool) {
        // Cheap before /proc: reaping orphans tells of live ones, a signal 0 of group
        // members.
        let command_group = self.group;
        let host = self.host.clone();
        let anything_left = move || {
            let orphans = command_reaped
                && host
                    .as_ref()
                    .is_some_and(|h| h.subreaper() && h.reap_orphans());
            orphans || command_group.has_members()
        };
        if !anything_left() && self.host.as_ref().is_some_and(Host::subreaper) {
            return;
        }
        let left: Vec<Proc> = self
            .tree()
            .live()
            .into_iter()
            .map(procfs::with_command)
            .collect();
        if kill {
            for proc in &left {
                group::signal_pid(Pid::from_raw(proc.pid), Signal::SIGKILL);
            }
            if !left.is_empty() {
                self.log_signal(Signal::SIGKILL, Why::Leftovers);
            }
            let deadline = Instant::now() + REAP_GRACE;
            while Instant::now() < deadline
                && left
                    .iter()
                    .any(|p| procfs::read(p.pid).is_some_and(|p| p.state != 'Z'))
            {
                if let Some(host) = &self.host {
                    host.reap_orphans();
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        for proc in left {
            if kill {
                let line = format!("killed leftover pid {} ({})", proc.pid, proc.command);
                if self.host.as_ref().is_some_and(Host::init) {
                    self.notices.say(&line);
                } else {
                    self.notices.detail(&line);
                }
                if let Some(stuck) = procfs::read(proc.pid).filter(|p| p.state != 'Z') {
                    self.unkillable(stuck, "leftover");
                }
            } else {
                self.notices.say(&format!(
                    "pid {} ({}) outlived the command and is still running",
                    proc.pid, proc.command
                ));
            }
            self.note_leftover(proc);
        }
    }
}
