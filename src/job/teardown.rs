//! After the loop: name who holds the pipes, stop the drains, reap the command, deal
//! with what it left, give the terminal back, and say how the run ended.

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::Job;
use crate::config::Leftovers;
use crate::event::Event;
use crate::feed;
use crate::group;
use crate::outcome::{self, Captured, Facts, Outcome};
use crate::output;
use crate::policy::Reason;
use crate::procfs;
use crate::record::{self, StreamEnding};

/// After the drains are told to stop, how long the job waits for them to deliver what
/// they hold before ending anyway (a stalled reader downstream cannot hold it longer).
pub(crate) const FLUSH_GRACE: Duration = Duration::from_millis(200);

/// How long a KILL just sent to the command may take to land before the job calls the
/// command unkillable.
const KILL_LANDING: Duration = Duration::from_millis(100);

impl Job {
    /// Ends the run and says how it ended: the report is written, held output released,
    /// and saferun's own last words flushed (bounded).
    pub(crate) fn teardown(mut self) -> Outcome {
        self.stop = None;
        self.await_drains();
        self.count_streams();
        let (exited, usage) = self.reap();
        let kill_leftovers = self.config.leftovers == Leftovers::Kill
            || (self.policy.stopping().is_some() && !self.config.share_group);
        self.handle_leftovers(exited, kill_leftovers);
        if self.has_terminal
            && let Some(terminal) = self.host.as_ref().and_then(|h| h.terminal())
        {
            terminal.take_back();
        }
        if let (Some(host), Some(id)) = (&self.host, self.host_id) {
            host.leave(id);
        }
        self.record.reason = self
            .policy
            .stopping()
            .map(|s| s.reason)
            .filter(|r| *r != Reason::Leftovers);
        self.record.duration = self.start.elapsed();
        self.record.rusage = usage.map(rusage).unwrap_or_else(children_rusage);
        let facts = Facts {
            child: self.record.child,
            reason: self.record.reason,
            killed: self.policy.killed(),
            preserve_status: self.limits.preserve_status,
            fail_for_leftovers: self.config.leftovers == Leftovers::Fail
                && (!self.record.leftovers.is_empty() || !self.record.pipe_holders.is_empty()),
        };
        let exit = outcome::exit_for(facts);
        if facts.fail_for_leftovers && exit == outcome::Exit::Code(outcome::LEFTOVERS_STATUS) {
            self.notices.say(&format!(
                "exiting {} because processes outlived the command (--leftovers=fail)",
                outcome::LEFTOVERS_STATUS
            ));
        }
        // A job its owner stopped (a batch stopping the rest) did not fail.
        let stopped_by_owner = self.record.reason == Some(Reason::Stopped);
        output::release_held(
            std::mem::take(&mut self.held),
            outcome::is_failure(exit, self.policy.cancelled().is_some()) && !stopped_by_owner,
            &self.notices,
        );
        if let Some(report) = self.report.take() {
            report.write(&self.record, exit, &self.notices);
        }
        // What saferun itself still has to write may wait for a slow reader, but never
        // past the bound a timeout sets.
        let soon = Instant::now() + FLUSH_GRACE;
        self.notices.flush(Some(
            self.policy.hard_end().map_or(soon, |end| end.max(soon)),
        ));
        let [stdout, stderr] = self.captures();
        let excerpts = self.excerpts();
        Outcome::new(exit, self.record, [stdout, stderr], excerpts)
    }

    /// Waits (bounded) for every drain to deliver what it holds and close.
    fn await_drains(&mut self) {
        let deadline = Instant::now() + FLUSH_GRACE;
        while self.streams.iter().any(|s| !s.closed) {
            match self.events.recv_deadline(deadline) {
                // The command may end during teardown (it was being killed).
                Ok(event) => {
                    self.handle(&event, Instant::now());
                }
                Err(_) => break,
            }
        }
    }

    /// Bytes, cuts and ends of each stream, into the record.
    fn count_streams(&mut self) {
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
        self.record.stdin.bytes = match &self.stdin_file {
            Some(file) => feed::file_bytes_consumed(file),
            None => self.fed.load(Ordering::Relaxed),
        };
    }

    /// Reaps the command, after a last KILL to its group if the tree must go. Returns
    /// whether it had exited (a command that survived KILL cannot be reaped), and what
    /// it used.
    fn reap(&mut self) -> (bool, Option<libc::rusage>) {
        // An exit whose event is late; or a KILL sent an instant ago (every stage due at
        // once) that has not landed yet.
        let landed_by = Instant::now()
            + if self.policy.killed() {
                KILL_LANDING
            } else {
                Duration::ZERO
            };
        let mut exited = self.policy.exited();
        while !exited {
            if let Some(change @ Event::Exited(_)) = group::child_change(self.group.pid()) {
                self.handle(&change, Instant::now());
                exited = true;
            } else if Instant::now() < landed_by {
                thread::sleep(Duration::from_millis(1));
            } else {
                break;
            }
        }
        let kill_group = self.config.leftovers == Leftovers::Kill
            || (self.policy.stopping().is_some() && !self.config.share_group);
        if exited {
            if kill_group && self.group.pgid().is_some() {
                // Before the reap: while the command is unreaped its group id cannot
                // have been reused by anyone else.
                self.group.signal(Signal::SIGKILL);
            }
            return (true, group::reap(self.group.pid()));
        }
        if let Some(proc) = procfs::read(self.group.pid().as_raw()) {
            self.unkillable(proc, "the command");
        }
        (false, None)
    }

    /// What the streams that keep an excerpt kept.
    fn excerpts(&self) -> [Captured; 2] {
        [crate::event::Stream::Stdout, crate::event::Stream::Stderr].map(|stream| {
            self.streams
                .iter()
                .find(|s| s.stream == stream)
                .and_then(|open| open.excerpt.as_ref())
                .map(|kept| {
                    let (bytes, elided, cut) =
                        kept.lock().unwrap_or_else(|e| e.into_inner()).take();
                    Captured::new(bytes, elided, cut)
                })
                .unwrap_or_default()
        })
    }

    /// What the capturing streams kept.
    fn captures(&self) -> [Captured; 2] {
        let captured = |stream| {
            self.streams
                .iter()
                .find(|s| s.stream == stream)
                .and_then(|open| {
                    let bytes = open.captured.as_ref()?;
                    let bytes =
                        std::mem::take(&mut *bytes.lock().unwrap_or_else(|e| e.into_inner()));
                    let elided = open
                        .cap
                        .as_ref()
                        .map_or(0, |cap| cap.elided.load(Ordering::Relaxed));
                    let cut = (elided > 0)
                        .then(|| self.config.stream(stream).cap.unwrap_or(0).div_ceil(2) as usize);
                    Some(Captured::new(bytes, elided, cut))
                })
                .unwrap_or_default()
        };
        [
            captured(crate::event::Stream::Stdout),
            captured(crate::event::Stream::Stderr),
        ]
    }
}

/// The command's usage as `wait4` gave it (itself and the descendants it waited for).
fn rusage(usage: libc::rusage) -> record::Rusage {
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    record::Rusage {
        user_cpu_seconds: record::round_ms(seconds(usage.ru_utime)),
        system_cpu_seconds: record::round_ms(seconds(usage.ru_stime)),
        // A c_long: i64 here, i32 on 32-bit targets.
        #[allow(clippy::useless_conversion)]
        max_rss_kib: i64::from(usage.ru_maxrss),
    }
}

/// Where `wait4` gives no usage: all the process's reaped children (the only job's).
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
