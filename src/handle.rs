//! A running job, for [`crate::Command::spawn`].

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use nix::sys::signal::Signal;

use crate::config::Config;
use crate::error::Error;
use crate::event::Event;
use crate::host::Host;
use crate::job::Job;
use crate::outcome::Outcome;

/// A command started with [`crate::Command::spawn`], supervised on a thread of its own.
///
/// Dropping the handle before the job ended stops it: KILL to the command's whole tree,
/// then the usual end (pipes drained for the linger, leftovers named).
///
/// ```
/// use std::time::Duration;
/// use saferun::{Command, Ending};
///
/// let mut handle = Command::new("sleep").arg("10").spawn()?;
/// assert!(handle.wait_timeout(Duration::from_millis(100)).is_none(), "still running");
/// handle.cancel();
/// let outcome = handle.wait();
/// assert_eq!(outcome.ending(), &Ending::Stopped { killed: false });
/// # Ok::<(), saferun::Error>(())
/// ```
#[derive(Debug)]
pub struct Handle {
    pid: u32,
    control: Sender<Event>,
    done: Receiver<Outcome>,
    thread: Option<JoinHandle<()>>,
    outcome: Option<Outcome>,
}

impl Handle {
    pub(crate) fn start(config: &Config, host: Option<&Host>) -> Result<Handle, Error> {
        let mut job = Job::start(config, host)?;
        let pid = job.pid().as_raw() as u32;
        let control = job.control();
        let (finished, done) = crossbeam_channel::bounded(1);
        let thread = thread::Builder::new()
            .name(format!("job-{pid}"))
            .spawn(move || {
                job.supervise();
                let _ = finished.send(job.teardown());
            })
            .map_err(|source| {
                // The job was moved into the closure that never ran: its command has
                // lost its supervisor. Nothing reaches it any more but KILL.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid as i32),
                    Signal::SIGKILL,
                );
                Error::Io {
                    what: "cannot start a thread".into(),
                    source,
                }
            })?;
        Ok(Handle {
            pid,
            control,
            done,
            thread: Some(thread),
            outcome: None,
        })
    }

    /// The command's pid (also its process group's id, unless
    /// [`crate::Command::own_group`] said otherwise).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Passes `signal` on to the command's group, as the job does with a signal its
    /// host receives: INT, TERM and HUP stop it with the usual escalation (KILL after
    /// the grace; a second one sends KILL at once), others are forwarded as they are.
    pub fn signal(&self, signal: Signal) {
        let _ = self.control.try_send(Event::Signal {
            signal,
            from_kernel: false,
        });
    }

    /// Stops the job as a timeout would: the limit's signal, then KILL after the grace.
    /// The outcome says [`crate::Ending::Stopped`].
    pub fn cancel(&self) {
        let _ = self.control.try_send(Event::StopAsked);
    }

    /// Waits for the job's end.
    pub fn wait(mut self) -> Outcome {
        self.wait_until(None)
            .unwrap_or_else(|| unreachable!("waited without a deadline"))
    }

    /// Waits at most `timeout` for the job's end; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Outcome> {
        self.wait_until(Some(Instant::now() + timeout))
    }

    /// Waits until `deadline` at most; `None` if the job is still running.
    pub fn wait_deadline(&mut self, deadline: Instant) -> Option<Outcome> {
        self.wait_until(Some(deadline))
    }

    /// The outcome if the job has ended, without waiting.
    pub fn try_wait(&mut self) -> Option<Outcome> {
        self.wait_until(Some(Instant::now()))
    }

    /// Where the outcome arrives, for a [`crate::Batch`] waiting on many jobs at once;
    /// what it receives goes back through [`Handle::ended`].
    pub(crate) fn done(&self) -> &Receiver<Outcome> {
        &self.done
    }

    /// The job's outcome, received from [`Handle::done`].
    pub(crate) fn ended(mut self, outcome: Outcome) -> Outcome {
        self.outcome = Some(outcome.clone());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        outcome
    }

    fn wait_until(&mut self, deadline: Option<Instant>) -> Option<Outcome> {
        if self.outcome.is_none() {
            let received = match deadline {
                Some(deadline) => self.done.recv_deadline(deadline),
                None => self.done.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(outcome) => {
                    self.outcome = Some(outcome);
                    if let Some(thread) = self.thread.take() {
                        let _ = thread.join();
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    unreachable!("the job's thread ends by sending its outcome")
                }
            }
        }
        self.outcome.clone()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.outcome.is_none() {
            let _ = self.control.try_send(Event::KillAsked);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
