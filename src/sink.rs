//! Where a stream's bytes go. A drain writes every chunk into one [`Sink`]; each output
//! option is a sink wrapping another, so they compose without special cases:
//!
//! ```text
//! drain ─▶ Cap (--max-output) ─▶ Lines (--prefix/--timestamps) ─▶ Fanout ─┬▶ file (-o/-e)
//!                                                                          └▶ [Hold (--quiet-unless-fail)] ─▶ saferun's own stream
//! ```
//!
//! Every sink holds a fixed amount of memory whatever the volume: the cap's tail ring is
//! bounded by the cap (and moves to an unnamed temporary file past 8 MiB), held output
//! spills to an unnamed temporary file past 1 MiB.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crossbeam_channel::Sender;
use nix::sys::stat::SFlag;

use crate::config::Timestamps;
use crate::event::{Event, Stream};
use crate::notices::{LineEnd, Notices};
use crate::spill::Spill;
use crate::stdio::write_all_waiting;

/// Why a sink refused bytes.
#[derive(Debug)]
pub enum SinkError {
    /// saferun's own output was closed by its reader (EPIPE): stop draining this stream.
    ReaderGone,
    /// Writing failed (disk full, …). `what` names the destination.
    Failed { what: String, error: io::Error },
}

pub trait Sink: Send {
    /// Takes the next chunk of the command's output.
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError>;

    /// The stream ended: write whatever was held back.
    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Whether a partial line is waiting for its end; the drain then calls
    /// [`Sink::flush_partial`] after a short pause without input.
    fn partial_pending(&self) -> bool {
        false
    }

    fn flush_partial(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// When this sink only copies bytes unchanged to plain descriptors (one, or two for
    /// `--tee`), those: the drain may then move data into them with `splice(2)` and
    /// `tee(2)` instead of through its buffer. Empty otherwise.
    fn plain_targets(&self) -> Vec<PlainTarget> {
        Vec::new()
    }
}

/// A [`Destination`]'s descriptor, for the drain's zero-copy path, with what an error
/// on it means.
pub struct PlainTarget {
    pub fd: OwnedFd,
    what: String,
    reader_may_leave: bool,
    kind: Option<SFlag>,
    line_end: Option<Arc<LineEnd>>,
}

#[cfg_attr(
    not(any(target_os = "linux", target_os = "android")),
    expect(dead_code, reason = "the zero-copy path is Linux's")
)]
impl PlainTarget {
    /// What a failed `splice` or `tee` into this target means, as a write to it would.
    pub fn failure(&self, error: io::Error) -> SinkError {
        failure(&self.what, self.reader_may_leave, error)
    }

    pub fn is_pipe(&self) -> bool {
        self.kind == Some(SFlag::S_IFIFO)
    }

    /// Whether `splice(2)` into it will be accepted: a pipe, or a regular file not
    /// opened for appending.
    pub fn takes_splice(&self) -> bool {
        use nix::fcntl::{FcntlArg, OFlag, fcntl};
        let appending = fcntl(&self.fd, FcntlArg::F_GETFL)
            .is_ok_and(|flags| OFlag::from_bits_truncate(flags).contains(OFlag::O_APPEND));
        match self.kind {
            Some(SFlag::S_IFIFO) => true,
            Some(SFlag::S_IFREG) => !appending,
            _ => false,
        }
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    /// Notes that bytes went into it unseen (see [`LineEnd`]): from a regular file the
    /// last byte is read back; into a pipe it is gone, and the end of the line unknown.
    pub fn unseen(&self) {
        let Some(line_end) = &self.line_end else {
            return;
        };
        if self.kind == Some(SFlag::S_IFREG) {
            use std::os::fd::AsRawFd;
            use std::os::unix::fs::FileExt;
            let at = nix::unistd::lseek(&self.fd, 0, nix::unistd::Whence::SeekCur).unwrap_or(0);
            // The descriptor may be write-only (`2> log`): read through another one.
            let reader = File::open(format!("/proc/self/fd/{}", self.fd.as_raw_fd()));
            let mut last = [0u8; 1];
            if at > 0
                && let Ok(reader) = reader
                && reader.read_exact_at(&mut last, at as u64 - 1).is_ok()
            {
                return line_end.note(&last);
            }
        }
        line_end.unseen();
    }

    /// Whether saferun's notices share it, so that the bytes written are worth seeing.
    pub fn tracks_line_end(&self) -> bool {
        self.line_end.is_some()
    }

    /// Another handle on the same destination.
    pub fn duplicate(&self) -> Option<PlainTarget> {
        Some(PlainTarget {
            fd: self.fd.try_clone().ok()?,
            what: self.what.clone(),
            reader_may_leave: self.reader_may_leave,
            kind: self.kind,
            line_end: self.line_end.clone(),
        })
    }
}

fn failure(what: &str, reader_may_leave: bool, error: io::Error) -> SinkError {
    if reader_may_leave && error.kind() == io::ErrorKind::BrokenPipe {
        SinkError::ReaderGone
    } else {
        SinkError::Failed {
            what: what.to_string(),
            error,
        }
    }
}

/// A file or one of saferun's own streams, written with plain `write(2)` calls (no
/// buffering, so output appears as soon as the command wrote it).
pub struct Destination {
    out: File,
    what: String,
    /// EPIPE means "the reader went away" (saferun's own stdout/stderr), not a failure.
    reader_may_leave: bool,
    /// Where saferun's notices go too: how the last line written ended.
    line_end: Option<Arc<LineEnd>>,
    /// A pipe, and how it is kept from holding less than a plain pipe would.
    room: Option<PipeRoom>,
}

impl Destination {
    /// saferun's own stdout or stderr (`out` is a duplicate of it). `line_end` when
    /// saferun's notices share it.
    pub fn own_stream(out: File, stream: Stream, line_end: Option<Arc<LineEnd>>) -> Destination {
        Destination {
            room: PipeRoom::of(&out),
            out,
            what: format!("saferun's {}", stream.name()),
            reader_may_leave: true,
            line_end,
        }
    }

    /// A file named with `-o`/`-e`; `what` names it in errors. `line_end` when it is
    /// saferun's own stderr after all (`-e /dev/stderr`).
    pub fn file(out: File, what: String, line_end: Option<Arc<LineEnd>>) -> Destination {
        Destination {
            room: PipeRoom::of(&out),
            out,
            what,
            reader_may_leave: false,
            line_end,
        }
    }

    /// Writes that must each stay whole (lines, which several writers may share a pipe
    /// with): never split to pack a pipe's pages.
    pub fn whole_writes(mut self) -> Destination {
        if let Some(room) = &mut self.room {
            room.packing = false;
        }
        self
    }
}

/// Keeps a destination pipe from holding less than a plain pipe would, for a parent
/// that reads only after saferun has ended. Through saferun it could: shaped output
/// (prefixes, timestamps) is larger than what the command wrote, and a write merges into
/// a pipe's last page only when it fits there whole, so chunks of another size than
/// the command's leave pages part empty. So a pipe that fills up is grown, doubling: up
/// to what a busy stream's pipes grow to ([`crate::pipes::GROWN`]) for the command's own
/// bytes (more would take more of the per-user quota than 16 busy runs may), up to
/// 1 MiB for shaped lines (a prefix can make an empty line seven times its size); and
/// until it has grown past a plain pipe's 64 KiB (the per-user pipe quota
/// may forbid it), plain bytes are written page by page: first what fills the last
/// page exactly, then the rest (one more write for each page boundary crossed).
struct PipeRoom {
    capacity: usize,
    /// Growing was refused (or reached the most).
    grown_out: bool,
    /// Bytes in the pipe's last page, as far as saferun knows (`None`: unknown).
    tail: Option<usize>,
    packing: bool,
}

const PAGE: usize = 4096;
const PLAIN_PIPE: usize = 64 * 1024;
/// The most a pipe of shaped lines grows to.
const MOST_GROWN_SHAPED: usize = 1 << 20;

impl PipeRoom {
    fn of(out: &File) -> Option<PipeRoom> {
        Some(PipeRoom {
            capacity: crate::pipes::capacity(out)?,
            grown_out: false,
            tail: None,
            packing: true,
        })
    }

    /// Writes `bytes` into the pipe `out`, grown or packed as needed.
    fn write(&mut self, out: &mut File, bytes: &[u8]) -> io::Result<()> {
        let queued = crate::pipes::queued(&*out).unwrap_or(0);
        if queued == 0 {
            // An empty pipe takes the next write on a fresh page.
            self.tail = Some(0);
        }
        while !self.grown_out && queued + bytes.len() > self.capacity / 2 {
            let most = if self.packing {
                crate::pipes::GROWN
            } else {
                MOST_GROWN_SHAPED
            };
            let wanted = (self.capacity * 2).min(most);
            match crate::pipes::grow_to(&*out, wanted) {
                Some(grown) if grown > self.capacity => self.capacity = grown,
                _ => self.grown_out = true,
            }
        }
        if !self.packing || self.capacity > PLAIN_PIPE {
            self.tail = None;
            return write_all_waiting(out, bytes);
        }
        let room = match self.tail {
            Some(tail) if tail > 0 && tail < PAGE => PAGE - tail,
            _ => 0,
        };
        let (first, rest) = bytes.split_at(room.min(bytes.len()));
        if !first.is_empty() {
            write_all_waiting(out, first)?;
        }
        if !rest.is_empty() {
            write_all_waiting(out, rest)?;
        }
        self.tail = Some(match (self.tail, rest.len()) {
            (Some(tail), 0) => tail + first.len(),
            (_, n) if n % PAGE == 0 => PAGE,
            (_, n) => n % PAGE,
        });
        Ok(())
    }
}

impl Sink for Destination {
    fn plain_targets(&self) -> Vec<PlainTarget> {
        self.out
            .as_fd()
            .try_clone_to_owned()
            .map(|fd| PlainTarget {
                kind: crate::pipes::file_type(&fd),
                fd,
                what: self.what.clone(),
                reader_may_leave: self.reader_may_leave,
                line_end: self.line_end.clone(),
            })
            .into_iter()
            .collect()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if let Some(line_end) = &self.line_end {
            line_end.note(bytes);
        }
        let written = match &mut self.room {
            Some(room) => room.write(&mut self.out, bytes),
            None => write_all_waiting(&mut self.out, bytes),
        };
        written.map_err(|error| failure(&self.what, self.reader_may_leave, error))
    }
}

/// One stream of a batch's job, passing through to the batch's shared console.
pub struct ToSeat {
    seat: crate::console::Seat,
    stream: Stream,
}

impl ToSeat {
    pub fn new(seat: crate::console::Seat, stream: Stream) -> ToSeat {
        ToSeat { seat, stream }
    }
}

impl Sink for ToSeat {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.seat
            .write(self.stream, bytes)
            .map_err(|error| SinkError::Failed {
                what: format!("saferun's {}", self.stream.name()),
                error,
            })
    }
}

/// The same bytes to several destinations (`--tee`). One whose reader left is dropped;
/// the stream counts as gone only when every destination is.
pub struct Fanout {
    sinks: Vec<Box<dyn Sink>>,
}

impl Fanout {
    pub fn new(sinks: Vec<Box<dyn Sink>>) -> Fanout {
        Fanout { sinks }
    }

    fn each(
        &mut self,
        mut f: impl FnMut(&mut Box<dyn Sink>) -> Result<(), SinkError>,
    ) -> Result<(), SinkError> {
        let mut index = 0;
        while index < self.sinks.len() {
            match f(&mut self.sinks[index]) {
                Ok(()) => index += 1,
                Err(SinkError::ReaderGone) => {
                    self.sinks.remove(index);
                }
                Err(failed) => return Err(failed),
            }
        }
        if self.sinks.is_empty() {
            Err(SinkError::ReaderGone)
        } else {
            Ok(())
        }
    }
}

impl Sink for Fanout {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.each(|s| s.write(bytes))
    }

    fn plain_targets(&self) -> Vec<PlainTarget> {
        let mut targets = Vec::new();
        for sink in &self.sinks {
            let mut plain = sink.plain_targets();
            if plain.len() != 1 {
                return Vec::new();
            }
            targets.append(&mut plain);
        }
        targets
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.each(|s| s.finish())
    }
}

/// Output read and dropped: still counted, still seen by `--idle-timeout`.
pub struct Discard;

impl Sink for Discard {
    fn write(&mut self, _: &[u8]) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Output kept in memory for the outcome (a library's `Output::capture`). Unbounded
/// unless a cap (`Cap`) sits in front of it.
pub struct Capture {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    pub fn new(bytes: Arc<Mutex<Vec<u8>>>) -> Capture {
        Capture { bytes }
    }
}

impl Sink for Capture {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.bytes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(bytes);
        Ok(())
    }
}

/// The first and the last bytes of what passes, kept in memory on the way to the
/// next sink (a report's excerpt of output that goes elsewhere, such as JUnit's
/// `system-out`). It sees the command's own bytes, before any cap or prefix.
pub struct Excerpt {
    inner: Box<dyn Sink>,
    kept: Arc<Mutex<ExcerptBytes>>,
}

/// What an [`Excerpt`] keeps.
#[derive(Debug, Default)]
pub struct ExcerptBytes {
    half: usize,
    head: Vec<u8>,
    /// The latest bytes: at most twice `half`, cut back to `half` when full.
    tail: Vec<u8>,
    total: u64,
}

impl ExcerptBytes {
    /// The head and the tail joined, with how much was left out between them.
    pub fn take(&mut self) -> (Vec<u8>, u64, Option<usize>) {
        let tail_start = self.tail.len().saturating_sub(self.half);
        let tail = &self.tail[tail_start..];
        let kept = self.head.len() + tail.len();
        let elided = self.total - kept as u64;
        let cut = (elided > 0).then_some(self.head.len());
        let mut bytes = std::mem::take(&mut self.head);
        bytes.extend_from_slice(tail);
        (bytes, elided, cut)
    }

    fn keep(&mut self, mut bytes: &[u8]) {
        self.total += bytes.len() as u64;
        let room = self.half - self.head.len();
        if room > 0 {
            let take = room.min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
        }
        if bytes.len() >= self.half {
            self.tail.clear();
            self.tail
                .extend_from_slice(&bytes[bytes.len() - self.half..]);
        } else {
            self.tail.extend_from_slice(bytes);
            if self.tail.len() > 2 * self.half {
                let cut = self.tail.len() - self.half;
                self.tail.drain(..cut);
            }
        }
    }
}

impl Excerpt {
    /// Keeps at most `limit` bytes of what goes to `inner`: the first half and the
    /// last half.
    pub fn new(inner: Box<dyn Sink>, limit: u64) -> (Excerpt, Arc<Mutex<ExcerptBytes>>) {
        let kept = Arc::new(Mutex::new(ExcerptBytes {
            half: usize::try_from(limit / 2).unwrap_or(usize::MAX / 4),
            ..ExcerptBytes::default()
        }));
        (
            Excerpt {
                inner,
                kept: kept.clone(),
            },
            kept,
        )
    }
}

impl Sink for Excerpt {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keep(bytes);
        self.inner.write(bytes)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish()
    }

    fn partial_pending(&self) -> bool {
        self.inner.partial_pending()
    }

    fn flush_partial(&mut self) -> Result<(), SinkError> {
        self.inner.flush_partial()
    }
}

/// Each line handed to a callback, without its line ending (`\n` or `\r\n`); a line
/// longer than the line buffer is handed over in pieces, and a last line without an
/// ending at the end.
pub struct LineCalls {
    callback: crate::config::LineCallback,
    partial: Vec<u8>,
}

impl LineCalls {
    pub fn new(callback: crate::config::LineCallback) -> LineCalls {
        LineCalls {
            callback,
            partial: Vec::new(),
        }
    }

    fn call(&self, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        (self.callback.lock().unwrap_or_else(|e| e.into_inner()))(line);
    }
}

impl Sink for LineCalls {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            let (line, after) = rest.split_at(at + 1);
            if self.partial.is_empty() {
                self.call(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.call(&whole);
            }
            rest = after;
        }
        self.partial.extend_from_slice(rest);
        if self.partial.len() >= LINE_BUFFER {
            let piece = std::mem::take(&mut self.partial);
            self.call(&piece);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            self.call(&last);
        }
        Ok(())
    }
}

/// Output held back for `--quiet-unless-fail`, kept aside ([`Spill`]: memory up to a
/// small bound, then an unnamed temporary file). The job releases or discards it when
/// the exit status is known.
#[derive(Debug)]
pub struct Held {
    store: Spill,
    len: u64,
}

/// Shared handle to held output.
pub type HeldOutput = Arc<Mutex<Held>>;

const HOLD_IN_MEMORY: usize = 1 << 20;

impl Held {
    pub fn new() -> HeldOutput {
        Arc::new(Mutex::new(Held {
            store: Spill::new(HOLD_IN_MEMORY),
            len: 0,
        }))
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.store.write_at(self.len, bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes held so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Writes everything held to `out`; returns the last byte written (if any).
    pub fn release(&mut self, out: &mut File) -> io::Result<Vec<u8>> {
        let mut last = Vec::new();
        self.store.read_range(0, self.len, |chunk: &[u8]| {
            write_all_waiting(out, chunk)?;
            if let Some(byte) = chunk.last() {
                last = vec![*byte];
            }
            Ok::<(), io::Error>(())
        })?;
        Ok(last)
    }
}

/// Keeps output for `--quiet-unless-fail` instead of passing it on.
pub struct Hold {
    held: HeldOutput,
}

impl Hold {
    pub fn new(held: HeldOutput) -> Hold {
        Hold { held }
    }
}

impl Sink for Hold {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.push(bytes).map_err(|error| SinkError::Failed {
            what: "a temporary file for --quiet-unless-fail".into(),
            error,
        })
    }
}

/// Per-stream figures a cap reports.
#[derive(Debug, Default)]
pub struct CapStats {
    pub elided: AtomicU64,
}

/// `--max-output`: the first half passes as it comes, the last half is held in a ring
/// and written at the end after one `[saferun: N bytes elided]` line.
pub struct Cap {
    inner: Box<dyn Sink>,
    head_left: u64,
    ring: Ring,
    limit: u64,
    total: u64,
    last_head_byte: Option<u8>,
    stats: Arc<CapStats>,
    stream: Stream,
    notices: Notices,
    /// Under `--on-max-output=kill`: where to say the cap was reached.
    kill: Option<Sender<Event>>,
    reached: bool,
    /// Write the `[saferun: N bytes elided]` line where the middle was cut.
    marker: bool,
}

impl Cap {
    pub fn new(
        inner: Box<dyn Sink>,
        limit: u64,
        stream: Stream,
        stats: Arc<CapStats>,
        notices: Notices,
        kill: Option<Sender<Event>>,
        marker: bool,
    ) -> Cap {
        let head = limit.div_ceil(2);
        Cap {
            inner,
            head_left: head,
            ring: Ring::new(limit - head),
            limit,
            total: 0,
            last_head_byte: None,
            stats,
            stream,
            notices,
            kill,
            reached: false,
            marker,
        }
    }
}

impl Sink for Cap {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        self.total += bytes.len() as u64;
        let head_len = (bytes.len() as u64).min(self.head_left) as usize;
        let (head, tail) = bytes.split_at(head_len);
        if !head.is_empty() {
            self.head_left -= head.len() as u64;
            self.last_head_byte = head.last().copied();
            self.inner.write(head)?;
        }
        if !tail.is_empty() {
            self.ring.push(tail).map_err(|error| SinkError::Failed {
                what: "a temporary file for --max-output".into(),
                error,
            })?;
        }
        if self.total > self.limit {
            self.stats
                .elided
                .store(self.total - self.limit, Ordering::Relaxed);
            if !self.reached {
                self.reached = true;
                self.notices.detail(&format!(
                    "{} passed --max-output ({} bytes); keeping the first and last halves",
                    self.stream.name(),
                    self.limit
                ));
                if let Some(events) = &self.kill {
                    let _ = events.send(Event::CapReached);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if self.total > self.limit && self.marker {
            let elided = self.total - self.limit;
            let newline = if matches!(self.last_head_byte, Some(b'\n') | None) {
                ""
            } else {
                "\n"
            };
            let marker = format!("{newline}[saferun: {elided} bytes elided]\n");
            self.inner.write(marker.as_bytes())?;
        }
        let inner = &mut self.inner;
        self.ring
            .drain(|chunk| inner.write(chunk))
            .map_err(|e| match e {
                RingError::Io(error) => SinkError::Failed {
                    what: "a temporary file for --max-output".into(),
                    error,
                },
                RingError::Sink(e) => e,
            })?;
        self.inner.finish()
    }

    fn partial_pending(&self) -> bool {
        self.inner.partial_pending()
    }

    fn flush_partial(&mut self) -> Result<(), SinkError> {
        self.inner.flush_partial()
    }
}

/// The last `capacity` bytes of a stream, kept aside ([`Spill`]: in memory for small
/// caps, in an unnamed temporary file past 8 MiB, so that a large cap does not mean a
/// large process).
struct Ring {
    capacity: u64,
    /// Total bytes pushed; the ring holds the last `min(written, capacity)`.
    written: u64,
    store: Spill,
}

enum RingError {
    Io(io::Error),
    Sink(SinkError),
}

impl From<io::Error> for RingError {
    fn from(error: io::Error) -> RingError {
        RingError::Io(error)
    }
}

/// Past this, a `--max-output` tail is kept in a temporary file.
pub const RING_IN_MEMORY: u64 = 8 << 20;

impl Ring {
    fn new(capacity: u64) -> Ring {
        Ring {
            capacity,
            written: 0,
            store: Spill::new(RING_IN_MEMORY as usize),
        }
    }

    fn push(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.capacity == 0 {
            self.written += bytes.len() as u64;
            return Ok(());
        }
        if bytes.len() as u64 > self.capacity {
            let skip = bytes.len() - self.capacity as usize;
            self.written += skip as u64;
            bytes = &bytes[skip..];
        }
        while !bytes.is_empty() {
            let at = self.written % self.capacity;
            let room = (self.capacity - at) as usize;
            let (now, rest) = bytes.split_at(bytes.len().min(room));
            self.store.write_at(at, now)?;
            self.written += now.len() as u64;
            bytes = rest;
        }
        Ok(())
    }

    /// Hands the held bytes, oldest first, to `out`.
    fn drain(
        &mut self,
        mut out: impl FnMut(&[u8]) -> Result<(), SinkError>,
    ) -> Result<(), RingError> {
        if self.capacity == 0 || self.written == 0 {
            return Ok(());
        }
        let held = self.written.min(self.capacity);
        let start = if self.written > self.capacity {
            self.written % self.capacity
        } else {
            0
        };
        let mut emit = |chunk: &[u8]| out(chunk).map_err(RingError::Sink);
        let first = (self.capacity - start).min(held);
        self.store.read_range(start, start + first, &mut emit)?;
        if held > first {
            self.store.read_range(0, held - first, &mut emit)?;
        }
        Ok(())
    }
}

/// `--prefix` / `--timestamps`: every line gets a prefix and is written whole with one
/// `write`, several whole lines batched up to the pipe's atomic size, so that saferuns
/// sharing a pipe never cut each other's lines. `\r` ends a line too (progress bars), and
/// `\r\n` is one ending. A partial line is flushed after a pause; a line longer than the
/// buffer goes out in pieces.
pub struct Lines {
    inner: Box<dyn Sink>,
    /// The constant part of the prefix (`{stream}`, `{pid}`, `{command}` filled in).
    prefix: Vec<u8>,
    timestamps: Option<Timestamps>,
    start: Instant,
    /// Formatted whole lines waiting for one write.
    out: Vec<u8>,
    /// The current line's bytes when it has not ended yet.
    partial: Vec<u8>,
    /// The current line was already started on the output (flushed partially), so its
    /// continuation gets no second prefix.
    continuing: bool,
    /// A partial line goes out after a pause (one command on its own stream: a prompt,
    /// a progress bar), or waits for its end (a batch's shared console, where another
    /// job's line would cut into it).
    flush_on_pause: bool,
}

/// Lines batched into one write stay under this, the size a pipe writes atomically.
const ATOMIC_WRITE: usize = 4096;
/// A line longer than this is written in pieces instead of being held.
const LINE_BUFFER: usize = 64 * 1024;

impl Lines {
    pub fn new(
        inner: Box<dyn Sink>,
        prefix: String,
        timestamps: Option<Timestamps>,
        start: Instant,
    ) -> Lines {
        Lines {
            inner,
            prefix: prefix.into_bytes(),
            timestamps,
            start,
            out: Vec::with_capacity(ATOMIC_WRITE * 2),
            partial: Vec::new(),
            continuing: false,
            flush_on_pause: true,
        }
    }

    /// A partial line waits for its end (or the 64 KiB line buffer to fill), whatever
    /// the pause.
    pub fn whole_lines_only(mut self) -> Lines {
        self.flush_on_pause = false;
        self
    }

    /// Renders `--prefix`'s template for one stream.
    pub fn render_prefix(template: &str, stream: &str, pid: i32, command: &str) -> String {
        template
            .replace("{stream}", stream)
            .replace("{pid}", &pid.to_string())
            .replace("{command}", command)
    }

    fn push_prefix(&mut self) {
        if let Some(kind) = self.timestamps {
            let stamp = match kind {
                Timestamps::Elapsed => format!("{:>9.3}", self.start.elapsed().as_secs_f64()),
                Timestamps::Utc => humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                Timestamps::Local => chrono::Local::now().format("%H:%M:%S%.3f").to_string(),
            };
            self.out.extend_from_slice(stamp.as_bytes());
            self.out.push(b' ');
        }
        self.out.extend_from_slice(&self.prefix);
    }

    /// Appends one piece of a line (with its ending if it has one) to the batch.
    fn emit(&mut self, piece: &[u8], ends_line: bool) -> Result<(), SinkError> {
        let needed = piece.len() + self.prefix.len() + 40;
        if !self.out.is_empty() && self.out.len() + needed > ATOMIC_WRITE {
            self.flush_out()?;
        }
        if !self.continuing {
            self.push_prefix();
        }
        self.out.extend_from_slice(piece);
        self.continuing = !ends_line;
        Ok(())
    }

    fn flush_out(&mut self) -> Result<(), SinkError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self.inner.write(&self.out);
        self.out.clear();
        result
    }
}

/// The end of the first line in `bytes`: the index just past `\n`, `\r\n` or a lone `\r`.
/// A `\r` at the very end is not decided yet (`\n` may follow in the next chunk).
fn line_end(bytes: &[u8]) -> Option<usize> {
    let at = bytes.iter().position(|b| *b == b'\n' || *b == b'\r')?;
    if bytes[at] == b'\n' {
        return Some(at + 1);
    }
    match bytes.get(at + 1) {
        Some(b'\n') => Some(at + 2),
        Some(_) => Some(at + 1),
        None => None,
    }
}

impl Lines {
    /// Emits the held partial line, now complete (or flushed), reusing its allocation.
    fn emit_partial(&mut self) -> Result<(), SinkError> {
        let line = std::mem::take(&mut self.partial);
        let ends_line = matches!(line.last(), Some(b'\n' | b'\r'));
        let result = self.emit(&line, ends_line);
        self.partial = line;
        self.partial.clear();
        result
    }
}

impl Sink for Lines {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let mut rest = bytes;
        if !self.partial.is_empty() {
            if self.partial.last() == Some(&b'\r') {
                // A `\r` ended the last chunk: this chunk decides whether it was `\r\n`.
                let take = usize::from(rest.first() == Some(&b'\n'));
                self.partial.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                self.emit_partial()?;
            } else if let Some(end) = line_end(rest) {
                self.partial.extend_from_slice(&rest[..end]);
                rest = &rest[end..];
                self.emit_partial()?;
            } else {
                self.partial.extend_from_slice(rest);
                rest = &[];
            }
        }
        while !rest.is_empty() {
            match line_end(rest) {
                Some(end) => {
                    let (line, after) = rest.split_at(end);
                    self.emit(line, true)?;
                    rest = after;
                }
                None => {
                    self.partial.extend_from_slice(rest);
                    break;
                }
            }
        }
        self.flush_out()?;
        if self.partial.len() >= LINE_BUFFER {
            if !self.flush_on_pause {
                // On a shared console another job's line may come between the pieces:
                // each piece is a labelled line of its own.
                self.partial.push(b'\n');
            }
            self.emit_partial()?;
            self.flush_out()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_partial()?;
        self.inner.finish()
    }

    fn partial_pending(&self) -> bool {
        self.flush_on_pause && !self.partial.is_empty()
    }

    fn flush_partial(&mut self) -> Result<(), SinkError> {
        if self.partial.is_empty() {
            return Ok(());
        }
        self.emit_partial()?;
        self.flush_out()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// Collects writes, each one as a separate record.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Sink for Recorder {
        fn write(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
            self.0.lock().unwrap().push(bytes.to_vec());
            Ok(())
        }
    }

    impl Recorder {
        fn all(&self) -> Vec<u8> {
            self.0.lock().unwrap().concat()
        }
        fn writes(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    fn cap(limit: u64) -> (Cap, Recorder, Arc<CapStats>) {
        let recorder = Recorder::default();
        let stats = Arc::new(CapStats::default());
        let cap = Cap::new(
            Box::new(recorder.clone()),
            limit,
            Stream::Stdout,
            stats.clone(),
            Notices::new(false, false),
            None,
            true,
        );
        (cap, recorder, stats)
    }

    #[test]
    fn cap_under_the_limit_passes_everything() {
        let (mut c, r, stats) = cap(10);
        c.write(b"hello").unwrap();
        c.write(b"abcde").unwrap();
        c.finish().unwrap();
        assert_eq!(r.all(), b"helloabcde");
        assert_eq!(stats.elided.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn cap_keeps_head_and_tail() {
        let (mut c, r, stats) = cap(10);
        for chunk in [&b"0123"[..], b"456789abcdef", b"ghij"] {
            c.write(chunk).unwrap();
        }
        c.finish().unwrap();
        assert_eq!(
            String::from_utf8(r.all()).unwrap(),
            "01234\n[saferun: 10 bytes elided]\nfghij"
        );
        assert_eq!(stats.elided.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn ring_in_a_file_behaves_like_memory() {
        let mut ring = Ring::new(RING_IN_MEMORY + 3);
        let data: Vec<u8> = (0..(RING_IN_MEMORY as usize * 2 + 17))
            .map(|i| (i % 251) as u8)
            .collect();
        for chunk in data.chunks(100_003) {
            ring.push(chunk).unwrap();
        }
        let mut out = Vec::new();
        let _ = ring.drain(|c| {
            out.extend_from_slice(c);
            Ok(())
        });
        assert_eq!(out, &data[data.len() - (RING_IN_MEMORY as usize + 3)..]);
    }

    #[test]
    fn lines_get_prefixes_and_batches_stay_whole() {
        let r = Recorder::default();
        let mut lines = Lines::new(Box::new(r.clone()), "p: ".into(), None, Instant::now());
        lines.write(b"one\ntw").unwrap();
        lines.write(b"o\nthree\n").unwrap();
        lines.finish().unwrap();
        assert_eq!(
            String::from_utf8(r.all()).unwrap(),
            "p: one\np: two\np: three\n"
        );
        for write in r.writes() {
            assert_eq!(write.last(), Some(&b'\n'), "every write ends a line");
        }
    }

    #[test]
    fn partial_line_flush_continues_without_second_prefix() {
        let r = Recorder::default();
        let mut lines = Lines::new(Box::new(r.clone()), "p: ".into(), None, Instant::now());
        lines.write(b"Password: ").unwrap();
        assert!(lines.partial_pending());
        lines.flush_partial().unwrap();
        lines.write(b"ok\nnext\n").unwrap();
        assert_eq!(
            String::from_utf8(r.all()).unwrap(),
            "p: Password: ok\np: next\n"
        );
    }

    #[test]
    fn carriage_returns_end_lines_but_crlf_is_one_ending() {
        let r = Recorder::default();
        let mut lines = Lines::new(Box::new(r.clone()), "> ".into(), None, Instant::now());
        lines.write(b"10%\r20%\rdone\r\nnext\r").unwrap();
        lines.write(b"\n").unwrap();
        lines.finish().unwrap();
        assert_eq!(
            String::from_utf8(r.all()).unwrap(),
            "> 10%\r> 20%\r> done\r\n> next\r\n"
        );
    }

    #[test]
    fn very_long_line_goes_out_in_pieces() {
        let r = Recorder::default();
        let mut lines = Lines::new(Box::new(r.clone()), "p: ".into(), None, Instant::now());
        let long = vec![b'x'; LINE_BUFFER * 3];
        for chunk in long.chunks(10_000) {
            lines.write(chunk).unwrap();
        }
        lines.write(b"\n").unwrap();
        let all = r.all();
        assert_eq!(&all[..3], b"p: ");
        assert_eq!(all.len(), 3 + long.len() + 1);
        assert_eq!(all.iter().filter(|b| **b == b'p').count(), 1);
    }

    #[test]
    fn prefix_template() {
        assert_eq!(
            Lines::render_prefix("[{stream} {pid} {command}] ", "err", 42, "make"),
            "[err 42 make] "
        );
    }

    #[test]
    fn held_output_spills_and_releases_in_order() {
        let held = Held::new();
        let mut hold = Hold::new(held.clone());
        let data: Vec<u8> = (0..3_000_000).map(|i| (i % 253) as u8).collect();
        for chunk in data.chunks(65536) {
            hold.write(chunk).unwrap();
        }
        let mut file = tempfile::tempfile().unwrap();
        held.lock().unwrap().release(&mut file).unwrap();
        let mut out = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        io::Read::read_to_end(&mut file, &mut out).unwrap();
        assert_eq!(out, data);
        assert!(held.lock().unwrap().store.spilled(), "spilled to a file");
    }

    #[test]
    fn line_calls_get_whole_lines_without_their_endings() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let callback: crate::config::LineCallback =
            Arc::new(Mutex::new(Box::new(move |line: &[u8]| {
                into.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(line).into_owned());
            })));
        let mut calls = LineCalls::new(callback);
        calls.write(b"one\ntw").unwrap();
        calls.write(b"o\r\nthree").unwrap();
        calls.finish().unwrap();
        assert_eq!(*seen.lock().unwrap(), ["one", "two", "three"]);
    }

    #[test]
    fn fanout_survives_one_reader_leaving() {
        struct Gone;
        impl Sink for Gone {
            fn write(&mut self, _: &[u8]) -> Result<(), SinkError> {
                Err(SinkError::ReaderGone)
            }
        }
        let r = Recorder::default();
        let mut fan = Fanout::new(vec![Box::new(Gone), Box::new(r.clone())]);
        fan.write(b"a").unwrap();
        fan.write(b"b").unwrap();
        assert_eq!(r.all(), b"ab");
        let mut alone = Fanout::new(vec![Box::new(Gone)]);
        assert!(matches!(alone.write(b"a"), Err(SinkError::ReaderGone)));
    }
}
