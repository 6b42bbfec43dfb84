//! Run a command so that it never hangs on a full pipe, never outlives its time limit,
//! never eats unbounded memory, and always says how it ended.
//!
//! `std::process::Command::output()` reads until end of file, so a grandchild that
//! keeps the pipe open hangs it; it has no timeout, no way to stop a whole process tree,
//! and holds all output in memory. [`Command`] does all of that right:
//!
//! ```
//! use std::time::Duration;
//! use saferun::{Command, Ending, Output};
//!
//! // A grandchild keeps stdout open for a minute: the run still ends, a linger after
//! // the command, and says who held the pipe.
//! let outcome = Command::new("sh")
//!     .args(["-c", "sleep 60 & echo done"])
//!     .timeout(Duration::from_secs(30))
//!     .linger(Duration::from_millis(200))
//!     .stdout(Output::capture())
//!     .run()?;
//! assert_eq!(outcome.ending(), &Ending::Exited(0));
//! assert_eq!(outcome.stdout().text(), "done\n");
//! assert_eq!(outcome.pipe_holders()[0].command, "sleep 60");
//! # for p in outcome.pipe_holders() { unsafe { libc::kill(p.pid as i32, 9); } }
//! # Ok::<(), saferun::Error>(())
//! ```
//!
//! A run that starts always ends in an [`Outcome`] (exited, killed by a signal, timed
//! out, …, with the exit code GNU `timeout` would give it); an [`Error`] means nothing
//! could be started. [`Command::spawn`] returns a [`Handle`] instead, to wait with a
//! deadline or stop the job; many jobs may run at once, from many threads.
//!
//! A job touches nothing outside its own command: no signal handler, no other process.
//! What only a whole process can do (pass its signals on to every job, find
//! descendants that left their command's group, hand over the terminal) is the
//! [`Host`]'s, which a program installs once and its commands opt into.
//!
//! Linux is the main platform; elsewhere on Unix the library builds and runs without
//! the Linux-only parts (no subreaper, no `/proc` to name leftovers, no `splice`).
//!
//! The data flow of one job, from its command to its outcome, in the modules' own
//! words: [`Command`] fills a `config`; the job (`job`) opens its `files`, `spawn`s the
//! command, and starts a `drain` per output pipe (moving bytes into `sink`s built by
//! `output`, with `splice` where it pays) and a `feed`er for stdin; the `group` waiter
//! and the drains send `event`s to the job's loop, which asks the `policy` what to do;
//! at the end the `record` becomes the [`Outcome`] and the `report`.

#![warn(missing_docs)]

mod batch;
mod command;
mod config;
mod console;
mod deadline;
mod diagnose;
mod drain;
mod error;
mod event;
mod feed;
mod files;
mod forward;
mod group;
mod handle;
mod host;
mod job;
mod notices;
mod outcome;
mod output;
mod pipes;
mod policy;
mod procfs;
mod pty;
mod record;
mod report;
mod signal;
mod sink;
mod spawn;
mod spill;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod splice;
mod stdio;

pub use batch::{Batch, BatchOutcome, Color, JobEnd, JobOutcome, StopCause};
pub use command::{Command, Output, Stdin};
pub use config::{Leftovers, Pty, Timestamps};
pub use error::Error;
pub use handle::Handle;
pub use host::Host;
pub use nix::sys::signal::Signal;
pub use outcome::{Captured, Ending, Limit, Outcome, Process, Usage};
