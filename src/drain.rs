//! One thread per output pipe, moving what the command writes into a sink as it arrives.
//!
//! Each pipe gets its own thread so that the command can never block on a full pipe
//! while saferun is busy with the other stream or with a slow reader downstream. A drain
//! holds one fixed buffer; memory does not grow with the volume of output.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
#[cfg(any(target_os = "linux", target_os = "android"))]
use nix::fcntl::{SpliceFFlags, splice, tee};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
#[cfg(any(target_os = "linux", target_os = "android"))]
use nix::sys::stat::SFlag;

use crate::event::{Event, Stream, StreamEnd};
use crate::pipes;
#[cfg(any(target_os = "linux", target_os = "android"))]
use crate::sink::{PlainTarget, write_all_waiting};
use crate::sink::{Sink, SinkError};

const BUFFER_SIZE: usize = 128 * 1024;

/// Most bytes one `splice` moves.
#[cfg(any(target_os = "linux", target_os = "android"))]
const SPLICE_CHUNK: usize = 1 << 20;

/// How long a partial line waits for its end before it is written as it is.
const PARTIAL_LINE_PAUSE: Duration = Duration::from_millis(100);

/// When the command last produced output, shared by every drain and read by the main
/// thread for `--idle-timeout`.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    last_nanos: AtomicU64,
    /// Drains currently blocked writing downstream: that time is not silence.
    writing: AtomicUsize,
}

impl Activity {
    pub fn new(start: Instant) -> Activity {
        Activity {
            start,
            last_nanos: AtomicU64::new(0),
            writing: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.start.elapsed().as_nanos() as u64;
        self.last_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// The last moment of output; `now` while a drain is still delivering.
    pub fn last_output(&self, now: Instant) -> Instant {
        if self.writing.load(Ordering::Relaxed) > 0 {
            return now;
        }
        self.start + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed))
    }
}

/// Byte counts of one stream, readable at any time (even while its drain is stuck).
#[derive(Debug, Default)]
pub struct StreamStats {
    /// Bytes read from the command.
    pub read: AtomicU64,
}

/// Tells every drain to stop reading. Dropping the [`StopSender`] is the signal.
pub struct StopSender(#[expect(dead_code, reason = "held only to be dropped")] OwnedFd);

#[derive(Clone)]
pub struct StopReceiver(Arc<OwnedFd>);

impl StopReceiver {
    /// Blocks until the stop is given.
    pub fn wait(&self) {
        loop {
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                _ => return,
            }
        }
    }
}

pub fn stop_channel() -> std::io::Result<(StopSender, StopReceiver)> {
    let (read, write) = std::io::pipe()?;
    Ok((
        StopSender(OwnedFd::from(write)),
        StopReceiver(Arc::new(OwnedFd::from(read))),
    ))
}

/// What a drain shares with the main thread.
pub struct Shared {
    pub stop: StopReceiver,
    pub activity: Arc<Activity>,
    pub stats: Arc<StreamStats>,
    pub events: Sender<Event>,
}

/// Everything a drain thread needs.
pub struct Drain {
    stream: Stream,
    pipe: OwnedFd,
    sink: Box<dyn Sink>,
    stop: StopReceiver,
    activity: Arc<Activity>,
    stats: Arc<StreamStats>,
    events: Sender<Event>,
    /// The pipe's size when the drain started, and whether it was grown since.
    capacity: usize,
    grown: bool,
    /// A write to the destination failed: what comes next is read and dropped, so the
    /// command never blocks while saferun stops it.
    failed: bool,
}

/// How the `--tee` path ended.
#[cfg(any(target_os = "linux", target_os = "android"))]
enum Teed {
    End(StreamEnd),
    /// One destination's reader left: go on with the other alone.
    OnlyTo(PlainTarget),
    /// Read/write takes over (nothing is owed to either destination, or a write failed).
    Refused,
}

/// Why teed bytes could not all be spliced into the second destination.
#[cfg(any(target_os = "linux", target_os = "android"))]
enum Moved {
    /// saferun asked to stop while the destination was full.
    Stopped,
    /// It refused splice; the bytes were written to it instead.
    HandedOver,
    Failed(SinkError),
}

/// What woke a drain waiting for data.
enum Wake {
    Readable,
    Stop,
    Pause,
}

impl Drain {
    pub fn new(stream: Stream, pipe: OwnedFd, sink: Box<dyn Sink>, shared: Shared) -> Drain {
        let capacity = pipes::capacity(&pipe).unwrap_or(64 * 1024);
        Drain {
            stream,
            pipe,
            sink,
            stop: shared.stop,
            activity: shared.activity,
            stats: shared.stats,
            events: shared.events,
            capacity,
            grown: false,
            failed: false,
        }
    }

    pub fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        thread::Builder::new()
            .name(format!("drain-{}", self.stream.name()))
            .stack_size(256 * 1024)
            .spawn(move || self.run())
    }

    fn run(mut self) {
        let mut end = self.pump();
        if !self.failed
            && let Err(error) = self.sink.finish()
        {
            end = self.on_sink_error(error).unwrap_or(StreamEnd::WriteFailed);
        }
        let Drain {
            stream,
            pipe,
            events,
            ..
        } = self;
        // Closing the read end is what lets a writer get SIGPIPE (reader gone) or lets
        // leftovers notice saferun stopped listening.
        drop(pipe);
        let _ = events.send(Event::StreamClosed { stream, end });
    }

    /// Once a chunk as big as the pipe arrives, the pipe was full: this is a busy
    /// stream, so grow its pipe and the one it flows into (see [`crate::pipes`]).
    fn grow_if_full(&mut self, moved: usize, outs: &[&OwnedFd]) {
        if self.grown || moved < self.capacity {
            return;
        }
        self.grown = true;
        pipes::grow(&self.pipe);
        for out in outs {
            pipes::grow(out);
        }
    }

    fn pump(&mut self) -> StreamEnd {
        // Non-blocking reads, so that a stop request is seen even while the pipe is
        // silent; the command's own end of the pipe is unaffected.
        let _ = fcntl(&self.pipe, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(end) = self.splice_all() {
            return end;
        }
        let mut buffer = vec![0u8; BUFFER_SIZE];
        loop {
            match nix::unistd::read(&self.pipe, &mut buffer) {
                Ok(0) => return self.eof(),
                Ok(n) => {
                    self.grow_if_full(n, &[]);
                    if let Err(error) = self.deliver(&buffer[..n])
                        && let Some(end) = self.on_sink_error(error)
                    {
                        return end;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => match self.wait() {
                    Wake::Readable => continue,
                    Wake::Pause => {
                        if let Err(error) = self.sink.flush_partial()
                            && let Some(end) = self.on_sink_error(error)
                        {
                            return end;
                        }
                    }
                    Wake::Stop => return self.drain_buffered(&mut buffer),
                },
                Err(_) => return self.eof(),
            }
        }
    }

    /// The zero-copy path: when the sink only copies bytes to plain descriptors, pages
    /// move from the command's pipe into them inside the kernel and never through
    /// saferun's memory: `splice(2)` into one, or for `--tee` `tee(2)` into one and
    /// `splice(2)` into the other. Returns `None` to fall back to read/write (a
    /// destination that refuses: a terminal, an append-mode file), having lost nothing
    /// and duplicated nothing, since a refused call moves no byte.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn splice_all(&mut self) -> Option<StreamEnd> {
        let mut targets = self.sink.plain_targets();
        let out = match targets.len() {
            1 => targets.pop()?,
            2 => {
                let second = targets.pop()?;
                let first = targets.pop()?;
                match self.tee_all(first, second) {
                    Teed::End(end) => return Some(end),
                    Teed::OnlyTo(rest) => rest,
                    Teed::Refused => return None,
                }
            }
            _ => return None,
        };
        self.splice_into(&out)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn splice_into(&mut self, out: &PlainTarget) -> Option<StreamEnd> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        loop {
            match splice(&self.pipe, None, &out.fd, None, SPLICE_CHUNK, flags) {
                Ok(0) => return Some(StreamEnd::Eof),
                Ok(n) => {
                    self.count(n);
                    self.grow_if_full(n, &[&out.fd]);
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    if let Wake::Stop = self.wait_either(&out.fd) {
                        let mut buffer = vec![0u8; BUFFER_SIZE];
                        return Some(self.drain_buffered(&mut buffer));
                    }
                }
                Err(Errno::EPIPE) => match out.failure(Errno::EPIPE.into()) {
                    SinkError::ReaderGone => return Some(StreamEnd::ReaderGone),
                    // A file that is a FIFO whose reader left: read/write reports it.
                    SinkError::Failed { .. } => return None,
                },
                // Refused (EINVAL for a terminal or O_APPEND file) or failed: read/write
                // takes over and reports any real error with the destination's name.
                Err(_) => return None,
            }
        }
    }

    /// `--tee` without copies: `tee(2)` duplicates what is in the command's pipe into
    /// the target that is a pipe, then `splice(2)` moves the same bytes into the other.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn tee_all(&mut self, first: PlainTarget, second: PlainTarget) -> Teed {
        let (teed, other) = if is_pipe(&first.fd) {
            (first, second)
        } else if is_pipe(&second.fd) {
            (second, first)
        } else {
            return Teed::Refused;
        };
        // Checked before any byte is duplicated: refusing later would leave bytes that
        // one destination already has and the other does not.
        if !takes_splice(&other.fd) {
            return Teed::Refused;
        }
        loop {
            match tee(
                &self.pipe,
                &teed.fd,
                SPLICE_CHUNK,
                SpliceFFlags::SPLICE_F_NONBLOCK,
            ) {
                Ok(0) => return Teed::End(StreamEnd::Eof),
                Ok(n) => {
                    self.count(n);
                    self.grow_if_full(n, &[&teed.fd, &other.fd]);
                    match self.move_teed(n, &other) {
                        Ok(()) => {}
                        Err(Moved::Stopped) => return Teed::End(StreamEnd::Stopped),
                        Err(Moved::HandedOver) => return Teed::Refused,
                        Err(Moved::Failed(SinkError::ReaderGone)) => return Teed::OnlyTo(teed),
                        Err(Moved::Failed(failed)) => {
                            self.on_sink_error(failed);
                            return Teed::Refused;
                        }
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    if let Wake::Stop = self.wait_either(&teed.fd) {
                        let mut buffer = vec![0u8; BUFFER_SIZE];
                        return Teed::End(self.drain_buffered(&mut buffer));
                    }
                }
                Err(Errno::EPIPE) => match teed.failure(Errno::EPIPE.into()) {
                    SinkError::ReaderGone => return Teed::OnlyTo(other),
                    failed => {
                        self.on_sink_error(failed);
                        return Teed::Refused;
                    }
                },
                Err(_) => return Teed::Refused,
            }
        }
    }

    /// Moves exactly the `n` bytes just duplicated by `tee` into `other`. The teed
    /// destination already has them: whatever happens, they leave the pipe here and
    /// never reach it a second time.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn move_teed(&mut self, n: usize, other: &PlainTarget) -> Result<(), Moved> {
        let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
        let mut left = n;
        while left > 0 {
            match splice(&self.pipe, None, &other.fd, None, left, flags) {
                Ok(0) => return Err(self.hand_over(left, other)),
                Ok(moved) => left -= moved,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => {
                    if let Wake::Stop = self.wait_downstream(&other.fd) {
                        // saferun is ending and `other`'s reader is stalled: `other` ends
                        // here, cut short, rather than going on after a hole.
                        self.discard(left);
                        return Err(Moved::Stopped);
                    }
                }
                // Refused (a file system that cannot splice) or failed: write(2) takes
                // over for these bytes, and names the destination if it fails too.
                Err(_) => return Err(self.hand_over(left, other)),
            }
        }
        Ok(())
    }

    /// Reads `n` bytes from the command's pipe and writes them to `other` alone.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn hand_over(&self, mut n: usize, other: &PlainTarget) -> Moved {
        let mut out = match other.fd.try_clone() {
            Ok(fd) => std::fs::File::from(fd),
            Err(error) => {
                self.discard(n);
                return Moved::Failed(other.failure(error));
            }
        };
        let mut chunk = vec![0u8; n.min(BUFFER_SIZE)];
        while n > 0 {
            let want = n.min(chunk.len());
            match nix::unistd::read(&self.pipe, &mut chunk[..want]) {
                Ok(0) => break,
                Ok(got) => {
                    n -= got;
                    if let Err(error) = write_all_waiting(&mut out, &chunk[..got]) {
                        self.discard(n);
                        return Moved::Failed(other.failure(error));
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        Moved::HandedOver
    }

    /// Reads and drops `n` bytes that are already in the command's pipe.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn discard(&self, mut n: usize) {
        let mut scrap = [0u8; 4096];
        while n > 0 {
            let want = n.min(scrap.len());
            match nix::unistd::read(&self.pipe, &mut scrap[..want]) {
                Ok(0) => return,
                Ok(read) => n -= read,
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// The destination `out` took nothing: if the command's pipe has data, `out` is full,
    /// so wait for the reader downstream (that time is not the command's silence);
    /// otherwise wait for data.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wait_either(&self, out: &OwnedFd) -> Wake {
        if self.input_ready() {
            self.wait_downstream(out)
        } else {
            self.wait()
        }
    }

    /// Waits until `out` can take more bytes or saferun asks to stop.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wait_downstream(&self, out: &OwnedFd) -> Wake {
        self.activity.writing.fetch_add(1, Ordering::Relaxed);
        let wake = wait_writable(out, &self.stop.0);
        self.activity.writing.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
        wake
    }

    /// Whether the command's pipe has data (or hang-up) right now.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn input_ready(&self) -> bool {
        let mut fds = [PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
    }

    fn eof(&self) -> StreamEnd {
        if self.failed {
            StreamEnd::WriteFailed
        } else {
            StreamEnd::Eof
        }
    }

    /// Counts `n` bytes read from the command: its output, so not silence.
    fn count(&self, n: usize) {
        self.stats.read.fetch_add(n as u64, Ordering::Relaxed);
        self.activity.touch();
    }

    /// Counts a chunk and hands it to the sink (unless an earlier write failed: then the
    /// chunk is dropped).
    fn deliver(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.count(bytes.len());
        if self.failed {
            return Ok(());
        }
        self.activity.writing.fetch_add(1, Ordering::Relaxed);
        let result = self.sink.write(bytes);
        self.activity.touch();
        self.activity.writing.fetch_sub(1, Ordering::Relaxed);
        result
    }

    /// A reader that left ends the drain at once; a failed write is reported and the
    /// drain goes on discarding (`None`).
    fn on_sink_error(&mut self, error: SinkError) -> Option<StreamEnd> {
        match error {
            SinkError::ReaderGone => Some(StreamEnd::ReaderGone),
            SinkError::Failed { what, error } => {
                if !self.failed {
                    self.failed = true;
                    let _ = self.events.send(Event::WriteFailed {
                        stream: self.stream,
                        what,
                        error,
                    });
                }
                None
            }
        }
    }

    /// Blocks until the pipe has data or hang-up, saferun asks to stop, or a partial line
    /// has waited long enough.
    fn wait(&self) -> Wake {
        let timeout = if self.sink.partial_pending() {
            PollTimeout::try_from(PARTIAL_LINE_PAUSE).unwrap_or(PollTimeout::NONE)
        } else {
            PollTimeout::NONE
        };
        loop {
            let mut fds = [
                PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.stop.0.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Err(Errno::EINTR) => continue,
                Err(_) => return Wake::Readable,
                Ok(0) => return Wake::Pause,
                Ok(_) => {
                    // A stop request wins over more data: a leftover that keeps writing
                    // must not keep saferun reading forever.
                    return if fds[1].revents().is_none_or(|r| r.is_empty()) {
                        Wake::Readable
                    } else {
                        Wake::Stop
                    };
                }
            }
        }
    }

    /// On a stop request, delivers what is already in the pipe (bounded), then gives up.
    fn drain_buffered(&mut self, buffer: &mut [u8]) -> StreamEnd {
        for _ in 0..16 {
            match nix::unistd::read(&self.pipe, buffer) {
                Ok(0) => return self.eof(),
                Ok(n) => {
                    if let Err(error) = self.deliver(&buffer[..n])
                        && let Some(end) = self.on_sink_error(error)
                    {
                        return end;
                    }
                }
                Err(Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
        if self.failed {
            StreamEnd::WriteFailed
        } else {
            StreamEnd::Stopped
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn is_pipe(fd: &OwnedFd) -> bool {
    pipes::file_type(fd) == Some(SFlag::S_IFIFO)
}

/// Whether `splice(2)` into `fd` will be accepted: a pipe, or a regular file not opened
/// for appending.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn takes_splice(fd: &OwnedFd) -> bool {
    let appending = fcntl(fd, FcntlArg::F_GETFL)
        .is_ok_and(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_APPEND));
    match pipes::file_type(fd) {
        Some(SFlag::S_IFIFO) => true,
        Some(SFlag::S_IFREG) => !appending,
        _ => false,
    }
}

/// Blocks until `out` can take more bytes (`Readable`) or saferun asks to stop.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wait_writable(out: &OwnedFd, stop: &OwnedFd) -> Wake {
    loop {
        let mut fds = [
            PollFd::new(out.as_fd(), PollFlags::POLLOUT),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            _ if fds[1].revents().is_some_and(|r| !r.is_empty()) => return Wake::Stop,
            _ => return Wake::Readable,
        }
    }
}
