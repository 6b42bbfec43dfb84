//! One command, supervised from start to end: a job. It owns the command's process
//! group, its pipes, the threads that move the bytes, the clock and the record of the
//! run, and nothing else: every pid it signals, waits for or counts is its own (what is
//! process-wide belongs to the [`Host`]).
//!
//! ```text
//! launch     files checked and opened → pipes → the command spawned → waiter, drains, feeder
//! supervise  one loop: events and deadlines → the policy → actions (signals, stops)
//! teardown   pipe holders named → drains stopped → reaped → leftovers → the outcome
//! ```
//! [`tree`] answers which processes are the job's.

mod launch;
mod supervise;
mod teardown;
mod tree;

use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};

use crate::config::{Config, Limits};
use crate::drain::{Activity, StopSender, StreamStats};
use crate::error::Error;
use crate::event::{Event, Stream};
use crate::group::Group;
use crate::host::{Host, JobId};
use crate::notices::Notices;
use crate::outcome::Outcome;
use crate::policy::Policy;
use crate::record::Record;
use crate::sink::{CapStats, HeldOutput};

pub(crate) use launch::{ReportOut, refuse, report_writable};

/// Runs `config` to its end on this thread.
pub(crate) fn run(config: &Config, host: Option<&Host>) -> Result<Outcome, Error> {
    let mut job = Job::start(config, host)?;
    job.supervise();
    Ok(job.teardown())
}

/// A job whose command is running: the loop and the teardown are still to come, on
/// whichever thread calls them.
pub(crate) struct Job {
    config: Arc<Config>,
    host: Option<Host>,
    /// Its place in the host's registry.
    host_id: Option<JobId>,
    /// The mark its command's environment carries (under a subreaper host).
    mark: Option<String>,
    notices: Notices,
    /// The limits in force (an enclosing deadline may have shortened them).
    limits: Limits,
    policy: Policy,
    group: Group,
    /// The command was given the terminal's foreground.
    has_terminal: bool,
    /// The command's stdout is this pseudo-terminal (saferun's side), and whether it
    /// is the command's controlling terminal.
    pty: Option<(std::os::fd::OwnedFd, bool)>,
    /// When the command started (ticks since boot): read while it can be, to tell the
    /// tree's orphans from older ones.
    command_started: Option<u64>,
    start: Instant,
    /// The last `--heartbeat` notice.
    last_beat: Instant,
    events: Receiver<Event>,
    /// Where the job's owner sends its requests (a handle's `cancel`).
    control: Sender<Event>,
    activity: Arc<Activity>,
    streams: Vec<OpenStream>,
    /// Dropping it tells the drains (and the feeder) to stop.
    stop: Option<StopSender>,
    /// Whether the pipe holders were already looked up and named.
    holders_named: bool,
    /// A regular file given to the command as its stdin, and where it started.
    stdin_file: Option<(File, u64)>,
    /// Bytes the feeder gave the command.
    fed: Arc<AtomicU64>,
    /// Output held back (`--quiet-unless-fail`, `--group`), released at the end.
    held: Vec<(Stream, crate::config::Hold, HeldOutput)>,
    report: Option<ReportOut>,
    record: Record,
}

/// One of the command's output pipes, as the job follows it.
struct OpenStream {
    stream: Stream,
    /// What /proc shows for its write end (`pipe:[inode]`, or the terminal's path), to
    /// find who else holds it.
    writers: String,
    stats: Arc<StreamStats>,
    cap: Option<Arc<CapStats>>,
    captured: Option<Arc<Mutex<Vec<u8>>>>,
    excerpt: Option<Arc<Mutex<crate::sink::ExcerptBytes>>>,
    closed: bool,
}

impl Job {
    pub(crate) fn pid(&self) -> nix::unistd::Pid {
        self.group.pid()
    }

    /// Where requests from the job's owner go.
    pub(crate) fn control(&self) -> Sender<Event> {
        self.control.clone()
    }
}
