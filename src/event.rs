//! The one message type that the helper threads send to the main thread.
//!
//! Only small notifications cross the channel; the bytes themselves never do. Progress
//! that happens per chunk (byte counts, the time of the last output) travels through
//! atomics in [`crate::drain::StreamStats`] instead, so a fast stream cannot flood the loop.

use nix::sys::signal::Signal;

/// One of the command's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How the command itself ended, as `wait` saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

/// Why a drain stopped reading.
#[derive(Debug)]
pub enum StreamEnd {
    /// Every writer closed the pipe.
    Eof,
    /// saferun's own output was closed by its reader; the command gets SIGPIPE.
    ReaderGone,
    /// The main thread told the drain to stop (linger ran out or the run is ending).
    Stopped,
    /// Writing to the destination failed earlier (see [`Event::WriteFailed`]); the drain
    /// went on reading and discarding so the command never blocked.
    WriteFailed,
}

/// Everything the main thread reacts to.
#[derive(Debug)]
pub enum Event {
    /// The command ended (it is not reaped yet, so its pid stays safe to signal).
    Exited(ChildEnd),
    /// The command was stopped by this signal (job control).
    Stopped(i32),
    /// The command was continued.
    Continued,
    /// A drain finished.
    StreamClosed { stream: Stream, end: StreamEnd },
    /// A stream reached `--max-output` under `--on-max-output=kill`.
    CapReached,
    /// Writing a stream to its destination failed (disk full, …): saferun's own failure.
    WriteFailed { what: String, error: std::io::Error },
    /// Reading the input saferun feeds to the command failed: saferun's own failure, and
    /// the command must not take the break for the end of its input.
    InputFailed { what: String, error: std::io::Error },
    /// The job's owner asks it to stop (the limit's signal, grace, KILL), as a
    /// cancellation does.
    StopAsked,
    /// The job's owner asks for KILL at once (a dropped handle).
    KillAsked,
    /// saferun itself received a signal. `from_kernel` marks one the terminal generated
    /// (Ctrl-C and friends) rather than one sent with `kill`.
    Signal { signal: Signal, from_kernel: bool },
}
