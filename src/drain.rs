//! One thread per output pipe, moving what the command writes into a sink as it arrives.
//!
//! Each pipe gets its own thread so that the command can never block on a full pipe
//! while saferun is busy with the other stream or with a slow reader downstream. A drain
//! holds one fixed buffer; memory does not grow with the volume of output.
//!
//! The loop waits once per chunk (`poll` on the pipe and the stop signal), asks how
//! much is queued, and moves it: copied through the sink, or, when the sink only passes
//! bytes on to plain descriptors and enough is queued (see [`crate::splice`]), spliced
//! inside the kernel.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::event::{Event, Stream, StreamEnd};
use crate::pipes;
#[cfg(any(target_os = "linux", target_os = "android"))]
use crate::sink::PlainTarget;
use crate::sink::{Sink, SinkError};
#[cfg(any(target_os = "linux", target_os = "android"))]
use crate::splice::{self, Step};

const BUFFER_SIZE: usize = 128 * 1024;

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

/// Tells every drain (and the feeder) to stop. Dropping the [`StopSender`] is the signal.
pub struct StopSender {
    #[cfg_attr(
        not(any(target_os = "linux", target_os = "android")),
        expect(dead_code, reason = "a pipe's write end, held only to be dropped")
    )]
    wake: OwnedFd,
    given: Arc<AtomicBool>,
}

/// Where the stop is seen: a flag a busy drain reads between chunks, and a descriptor
/// that becomes readable for one that waits in `poll`. On Linux an eventfd, which costs
/// no pipe memory (a pipe would take 64 KiB of the per-user pipe quota for one bit).
#[derive(Clone)]
pub struct StopReceiver {
    wake: Arc<OwnedFd>,
    given: Arc<AtomicBool>,
}

pub fn stop_channel() -> std::io::Result<(StopSender, StopReceiver)> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let (wake, seen) = {
        use rustix::event::{EventfdFlags, eventfd};
        let fd = eventfd(0, EventfdFlags::CLOEXEC)?;
        let seen = fd.try_clone()?;
        (fd, seen)
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let (seen, wake) = {
        let (read, write) = std::io::pipe()?;
        (OwnedFd::from(read), OwnedFd::from(write))
    };
    let given = Arc::new(AtomicBool::new(false));
    Ok((
        StopSender {
            wake,
            given: given.clone(),
        },
        StopReceiver {
            wake: Arc::new(seen),
            given,
        },
    ))
}

impl Drop for StopSender {
    fn drop(&mut self) {
        self.given.store(true, Ordering::SeqCst);
        // An eventfd becomes readable once written; a pipe once its write end closes
        // (which dropping the descriptor does).
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }
}

impl StopReceiver {
    /// Whether the stop was given.
    pub fn given(&self) -> bool {
        self.given.load(Ordering::SeqCst)
    }

    /// Blocks until the stop is given.
    pub fn wait(&self) {
        loop {
            let mut fds = [PollFd::new(self.wake.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::NONE) {
                Err(Errno::EINTR) => continue,
                _ => return,
            }
        }
    }
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
    /// When the pipe first filled up (then it and its destinations grow).
    busy: pipes::Busy,
    /// A write to the destination failed: what comes next is read and dropped, so the
    /// command never blocks while saferun stops it.
    failed: bool,
    buffer: Vec<u8>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    epoll: Option<nix::sys::epoll::Epoll>,
}

/// How a stream's bytes reach their destination.
enum Route {
    /// Read into the buffer and handed to the sink (which shapes them, or holds them).
    Copy,
    /// Spliced into the one plain destination (when enough is queued).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Splice(PlainTarget),
    /// `--tee`: duplicated into `teed` (a pipe) with `tee(2)`, then spliced into `other`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Tee {
        teed: PlainTarget,
        other: PlainTarget,
    },
}

/// What one round of the loop came to.
enum Round {
    Go,
    End(StreamEnd),
    /// The zero-copy route no longer applies (refused, or one `--tee` reader left).
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Reroute(Route),
}

/// What woke a drain waiting for data.
enum Wake {
    Readable,
    Stop,
    Pause,
}

impl Drain {
    pub fn new(stream: Stream, pipe: OwnedFd, sink: Box<dyn Sink>, shared: Shared) -> Drain {
        let busy = pipes::Busy::of(&pipe);
        Drain {
            stream,
            pipe,
            sink,
            stop: shared.stop,
            activity: shared.activity,
            stats: shared.stats,
            events: shared.events,
            busy,
            failed: false,
            buffer: Vec::new(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            epoll: None,
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

    fn pump(&mut self) -> StreamEnd {
        // Reads and splices follow a look at what is queued, so they never wait for the
        // command: the loop waits in `poll`, where a stop request is seen too. (The pipe
        // stays blocking: a non-blocking one would make every splice from it so, and a
        // full destination a round of `poll` per chunk.)
        #[cfg_attr(
            not(any(target_os = "linux", target_os = "android")),
            expect(unused_mut, reason = "only the zero-copy routes change")
        )]
        let mut route = self.route();
        loop {
            // A busy stream is not waited for: while something is queued the loop goes
            // on at once, one question (how much?) and one move per chunk. A stop request
            // still wins over more data: a leftover that keeps writing must not keep
            // saferun reading forever.
            if self.stop.given() {
                return self.drain_buffered();
            }
            let mut queued = self.queued();
            if queued.unwrap_or(0) == 0 {
                match self.wait() {
                    Wake::Readable => queued = self.queued(),
                    Wake::Pause => {
                        if let Err(error) = self.sink.flush_partial()
                            && let Some(end) = self.on_sink_error(error)
                        {
                            return end;
                        }
                        continue;
                    }
                    Wake::Stop => return self.drain_buffered(),
                }
            }
            let round = match &route {
                Route::Copy => self.copy(queued),
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Route::Splice(target) => self.splice_round(target, queued),
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Route::Tee { teed, other } => self.tee_round(teed, other, queued),
            };
            match round {
                Round::Go => {}
                Round::End(end) => return end,
                #[cfg(any(target_os = "linux", target_os = "android"))]
                Round::Reroute(next) => route = next,
            }
        }
    }

    /// The zero-copy route when the sink allows one (see [`Sink::plain_targets`]).
    fn route(&self) -> Route {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            let mut targets = self.sink.plain_targets();
            match targets.len() {
                1 => return Route::Splice(targets.remove(0)),
                2 => {
                    let (teed, other) = match (targets[0].is_pipe(), targets[1].is_pipe()) {
                        (true, _) => (targets.remove(0), targets.remove(0)),
                        (false, true) => {
                            let teed = targets.remove(1);
                            (teed, targets.remove(0))
                        }
                        _ => return Route::Copy,
                    };
                    // Checked before any byte is duplicated: refusing later would leave
                    // bytes that one destination already has and the other does not.
                    if other.takes_splice() {
                        return Route::Tee { teed, other };
                    }
                }
                _ => {}
            }
        }
        Route::Copy
    }

    /// How much waits in the command's pipe; grows it (and the pipes it flows into)
    /// the first time it was full: a busy stream (see [`crate::pipes`]).
    fn queued(&mut self) -> Option<usize> {
        let queued = pipes::queued(&self.pipe);
        if self.busy.filled(queued) {
            pipes::grow(&self.pipe);
            for target in self.sink.plain_targets() {
                pipes::grow(&target.fd);
            }
        }
        queued
    }

    /// Reads what is queued (at most the buffer) and hands it to the sink.
    fn copy(&mut self, queued: Option<usize>) -> Round {
        let want = queued.unwrap_or(BUFFER_SIZE).clamp(1, BUFFER_SIZE);
        match self.read_some(want) {
            Ok(0) => Round::End(self.eof()),
            Ok(n) => self.deliver_buffer(n),
            Err(Errno::EINTR | Errno::EAGAIN) => Round::Go,
            Err(_) => Round::End(self.eof()),
        }
    }

    fn read_some(&mut self, want: usize) -> nix::Result<usize> {
        if self.buffer.len() < want {
            self.buffer.resize(want.max(4096), 0);
        }
        nix::unistd::read(&self.pipe, &mut self.buffer[..want])
    }

    fn deliver_buffer(&mut self, n: usize) -> Round {
        let mut buffer = std::mem::take(&mut self.buffer);
        let result = self.deliver(&buffer[..n]);
        std::mem::swap(&mut self.buffer, &mut buffer);
        match result {
            Err(error) => match self.on_sink_error(error) {
                Some(end) => Round::End(end),
                None => Round::Go,
            },
            Ok(()) => Round::Go,
        }
    }

    /// Splices what is queued into the one destination, or copies it when that is the
    /// better move (see [`crate::splice`]). A full destination is waited for inside the
    /// splice: one system call per chunk, as a plain relay makes. A reader downstream
    /// that never reads again then holds the drain there; saferun's end does not wait
    /// for it (see `FLUSH_GRACE` in run.rs), as with any blocked write.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn splice_round(&mut self, target: &PlainTarget, queued: Option<usize>) -> Round {
        // Into a file saferun's notices share (`2> log`), little is copied too: it is
        // seen, and the notices know how the last line ended.
        let like_pipe = target.is_pipe() || target.tracks_line_end();
        let worth = |n: &usize| *n > 0 && splice::worth_splicing(*n, like_pipe);
        let Some(queued) = queued.filter(worth) else {
            return self.copy(queued);
        };
        self.activity.writing.fetch_add(1, Ordering::Relaxed);
        let step = splice::splice(&self.pipe, &target.fd, queued, true);
        self.activity.writing.fetch_sub(1, Ordering::Relaxed);
        match step {
            Step::Moved(n) => {
                self.count(n);
                target.unseen();
                Round::Go
            }
            Step::End => Round::End(self.eof()),
            // saferun's caller left its output non-blocking.
            Step::WouldBlock => match self.wait_downstream(&target.fd) {
                Wake::Stop => Round::End(self.drain_buffered()),
                _ => Round::Go,
            },
            Step::ReaderGone => match target.failure(Errno::EPIPE.into()) {
                SinkError::ReaderGone => Round::End(StreamEnd::ReaderGone),
                // A file that is a FIFO whose reader left: read/write reports it.
                SinkError::Failed { .. } => Round::Reroute(Route::Copy),
            },
            // Refused (EINVAL for a terminal or an O_APPEND file) or failed: read/write
            // takes over and reports any real error with the destination's name.
            Step::Refused(_) => Round::Reroute(Route::Copy),
        }
    }

    /// `--tee` without copies: `tee(2)` duplicates what is queued into `teed` (a pipe),
    /// then `splice(2)` moves the same bytes into `other`. Little queued is copied to
    /// both through the sink instead.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn tee_round(
        &mut self,
        teed: &PlainTarget,
        other: &PlainTarget,
        queued: Option<usize>,
    ) -> Round {
        let Some(queued) = queued.filter(|n| splice::worth_splicing(*n, true)) else {
            // (Nothing queued is the end of the stream, or nothing yet: read says which.)
            return self.copy(queued);
        };
        match splice::tee(&self.pipe, &teed.fd, queued) {
            Step::Moved(n) => {
                self.count(n);
                teed.unseen();
                other.unseen();
                match self.move_teed(n, other) {
                    Ok(()) => Round::Go,
                    Err(Moved::Stopped) => Round::End(StreamEnd::Stopped),
                    Err(Moved::HandedOver) => Round::Reroute(Route::Copy),
                    // The other reader left: the teed destination goes on alone.
                    Err(Moved::Failed(SinkError::ReaderGone)) => alone(teed),
                    Err(Moved::Failed(failed)) => {
                        self.on_sink_error(failed);
                        Round::Reroute(Route::Copy)
                    }
                }
            }
            Step::End => Round::End(self.eof()),
            Step::WouldBlock => match self.wait_downstream(&teed.fd) {
                Wake::Stop => Round::End(self.drain_buffered()),
                _ => Round::Go,
            },
            Step::ReaderGone => match teed.failure(Errno::EPIPE.into()) {
                SinkError::ReaderGone => alone(other),
                failed => {
                    self.on_sink_error(failed);
                    Round::Reroute(Route::Copy)
                }
            },
            Step::Refused(_) => Round::Reroute(Route::Copy),
        }
    }

    /// Moves exactly the `n` bytes just duplicated by `tee` into `other`. The teed
    /// destination already has them: whatever happens, they leave the pipe here and
    /// never reach it a second time.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn move_teed(&mut self, n: usize, other: &PlainTarget) -> Result<(), Moved> {
        let mut left = n;
        while left > 0 {
            match splice::splice(&self.pipe, &other.fd, left, false) {
                Step::Moved(moved) => left -= moved,
                Step::WouldBlock => {
                    if let Wake::Stop = self.wait_downstream(&other.fd) {
                        // saferun is ending and `other`'s reader is stalled: `other` ends
                        // here, cut short, rather than going on after a hole.
                        self.discard(left);
                        return Err(Moved::Stopped);
                    }
                }
                Step::ReaderGone => {
                    self.discard(left);
                    return Err(Moved::Failed(other.failure(Errno::EPIPE.into())));
                }
                // Refused (a file system that cannot splice) or failed: write(2) takes
                // over for these bytes, and names the destination if it fails too.
                Step::End | Step::Refused(_) => return Err(self.hand_over(left, other)),
            }
        }
        Ok(())
    }

    /// Reads `n` bytes from the command's pipe and writes them to `other` alone.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn hand_over(&mut self, mut n: usize, other: &PlainTarget) -> Moved {
        let mut out = match other.fd.try_clone() {
            Ok(fd) => std::fs::File::from(fd),
            Err(error) => {
                self.discard(n);
                return Moved::Failed(other.failure(error));
            }
        };
        while n > 0 {
            match self.read_some(n.min(BUFFER_SIZE)) {
                Ok(0) => break,
                Ok(got) => {
                    n -= got;
                    if let Err(error) =
                        crate::stdio::write_all_waiting(&mut out, &self.buffer[..got])
                    {
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
    fn discard(&mut self, mut n: usize) {
        while n > 0 {
            match self.read_some(n.min(BUFFER_SIZE)) {
                Ok(0) => return,
                Ok(read) => n -= read,
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    /// Waits until `out` can take more bytes or saferun asks to stop. That time is the
    /// reader's, not the command's silence.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wait_downstream(&self, out: &OwnedFd) -> Wake {
        self.activity.writing.fetch_add(1, Ordering::Relaxed);
        let wake = if pipes::wait_writable(out, Some(self.stop.wake.as_fd())) {
            Wake::Stop
        } else {
            Wake::Readable
        };
        self.activity.writing.fetch_sub(1, Ordering::Relaxed);
        self.activity.touch();
        wake
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
                    let _ = self.events.send(Event::WriteFailed { what, error });
                }
                None
            }
        }
    }

    /// Blocks until the pipe has data or hang-up, saferun asks to stop, or a partial line
    /// has waited long enough.
    fn wait(&mut self) -> Wake {
        let pause = self.sink.partial_pending().then_some(PARTIAL_LINE_PAUSE);
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(wake) = self.wait_epoll(pause) {
            return wake;
        }
        let timeout = pause.map_or(PollTimeout::NONE, |p| {
            PollTimeout::try_from(p).unwrap_or(PollTimeout::NONE)
        });
        loop {
            let mut fds = [
                PollFd::new(self.pipe.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.stop.wake.as_fd(), PollFlags::POLLIN),
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

    /// [`Drain::wait`] with an epoll set made once: each wait then registers nothing,
    /// where `poll` registers with both descriptors, and removes itself again, for every
    /// chunk of a busy stream. `None` if no epoll set can be made.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn wait_epoll(&mut self, pause: Option<Duration>) -> Option<Wake> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
        if self.epoll.is_none() {
            let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).ok()?;
            epoll
                .add(&self.pipe, EpollEvent::new(EpollFlags::EPOLLIN, 0))
                .ok()?;
            epoll
                .add(&*self.stop.wake, EpollEvent::new(EpollFlags::EPOLLIN, 1))
                .ok()?;
            self.epoll = Some(epoll);
        }
        let epoll = self.epoll.as_ref()?;
        let timeout = pause.map_or(EpollTimeout::NONE, |p| {
            EpollTimeout::try_from(p).unwrap_or(EpollTimeout::NONE)
        });
        let mut events = [EpollEvent::empty(); 2];
        loop {
            return match epoll.wait(&mut events, timeout) {
                Err(Errno::EINTR) => continue,
                Err(_) => None,
                Ok(0) => Some(Wake::Pause),
                // A stop request wins over more data.
                Ok(n) if events[..n].iter().any(|e| e.data() == 1) => Some(Wake::Stop),
                Ok(_) => Some(Wake::Readable),
            };
        }
    }

    /// On a stop request, delivers what is already in the pipe (bounded), then gives up.
    fn drain_buffered(&mut self) -> StreamEnd {
        // Whoever still holds the pipe may write no more: an empty pipe is the end here.
        let _ = nix::fcntl::fcntl(
            &self.pipe,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        );
        for _ in 0..16 {
            match self.read_some(BUFFER_SIZE) {
                Ok(0) => return self.eof(),
                Ok(n) => {
                    if let Round::End(end) = self.deliver_buffer(n) {
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

/// `--tee` goes on into one destination alone (the other's reader left).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn alone(target: &PlainTarget) -> Round {
    Round::Reroute(target.duplicate().map_or(Route::Copy, Route::Splice))
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
