//! The command's standard input: what it is given, and the feeder thread that copies
//! saferun's stdin (or `--input`) into the command's pipe.
//!
//! A command that stops reading is normal, not an error: the feeder's write then fails
//! with EPIPE (saferun ignores SIGPIPE), and the feeder just ends. Nobody ever waits for
//! the feeder: it may be blocked reading a terminal or a producer that never closes.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use crossbeam_channel::Sender;
use nix::errno::Errno;
use nix::sys::stat::SFlag;

use crate::config::StdinSource;
use crate::drain::StopReceiver;
use crate::event::Event;
use crate::pipes;
#[cfg(any(target_os = "linux", target_os = "android"))]
use crate::splice::{self, Step};

/// Where the feeder reads from.
pub(crate) enum FeedSource {
    Fd(OwnedFd),
    Bytes(Vec<u8>),
    Reader(Box<dyn io::Read + Send>),
}

/// The command's stdin as decided before spawning.
pub(crate) struct StdinPlan {
    /// What the command gets as its stdin (`None`: closed, as saferun's own was).
    pub fd: Option<OwnedFd>,
    /// If saferun feeds the command: what to copy, and the write end of its stdin pipe.
    pub feed: Option<(FeedSource, OwnedFd)>,
    /// A regular file handed over directly: its offset before the run, to count bytes.
    pub file: Option<(File, u64)>,
}

/// Decides the command's stdin. `file` is `--stdin-file`, already opened and checked
/// (see [`crate::files`]).
pub(crate) fn plan(source: &StdinSource, file: Option<File>) -> io::Result<StdinPlan> {
    match source {
        StdinSource::Null => Ok(direct(null()?)),
        StdinSource::Reader(reader) => {
            let taken = reader.lock().unwrap_or_else(|e| e.into_inner()).take();
            match taken {
                Some(reader) => fed(FeedSource::Reader(reader)),
                // A reader serves one run; the next ones get nothing.
                None => Ok(direct(null()?)),
            }
        }
        StdinSource::Bytes(bytes) => fed(FeedSource::Bytes(bytes.clone())),
        StdinSource::File(path) => {
            let file = match file {
                Some(file) => file,
                None => File::open(path)?,
            };
            from_fd(file.into())
        }
        StdinSource::Closed => Ok(StdinPlan {
            fd: None,
            feed: None,
            file: None,
        }),
        StdinSource::Inherit => match io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => from_fd(fd),
            Err(_) => Ok(direct(null()?)),
        },
    }
}

fn null() -> io::Result<OwnedFd> {
    Ok(File::open("/dev/null")?.into())
}

fn direct(fd: OwnedFd) -> StdinPlan {
    StdinPlan {
        fd: Some(fd),
        feed: None,
        file: None,
    }
}

fn fed(source: FeedSource) -> io::Result<StdinPlan> {
    let (reader, writer) = io::pipe()?;
    Ok(StdinPlan {
        fd: Some(reader.into()),
        feed: Some((source, writer.into())),
        file: None,
    })
}

/// Terminals, regular files, devices and directories are given to the command as they
/// are (a file stays seekable, a terminal stays interactive); pipes and sockets are fed.
fn from_fd(fd: OwnedFd) -> io::Result<StdinPlan> {
    let kind = crate::pipes::file_type(&fd).unwrap_or(SFlag::S_IFIFO);
    if kind == SFlag::S_IFREG {
        let file = File::from(fd);
        let offset = nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekCur).unwrap_or(0);
        return Ok(StdinPlan {
            fd: Some(file.try_clone()?.into()),
            feed: None,
            file: Some((file, offset as u64)),
        });
    }
    // A device is given as it is; so is a directory, which the command then finds as it
    // would without saferun (reading it fails), rather than a stdin that breaks off.
    if matches!(kind, SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFDIR) {
        return Ok(direct(fd));
    }
    fed(FeedSource::Fd(fd))
}

/// Bytes the command consumed from a regular file given as its stdin.
pub fn file_bytes_consumed(file: &(File, u64)) -> u64 {
    let end = nix::unistd::lseek(&file.0, 0, nix::unistd::Whence::SeekCur).unwrap_or(0);
    (end as u64).saturating_sub(file.1)
}

const BUFFER_SIZE: usize = 128 * 1024;

/// The feeder thread's work: copy `source` into the command's stdin `pipe`.
pub(crate) struct Feeder {
    pub source: FeedSource,
    pub pipe: OwnedFd,
    /// Counts the bytes the command accepted.
    pub fed: Arc<AtomicU64>,
    /// Told when the run ends: a feeder whose input failed keeps the pipe open until then.
    pub stop: StopReceiver,
    pub events: Sender<Event>,
    /// Written after the whole input (a terminal's end-of-input characters).
    pub end_with: &'static [u8],
}

impl Feeder {
    pub fn spawn(self) -> io::Result<()> {
        thread::Builder::new()
            .name("feeder".into())
            .stack_size(256 * 1024)
            .spawn(move || self.run())
            .map(drop)
    }

    fn run(mut self) {
        let failed = match &mut self.source {
            FeedSource::Bytes(bytes) => {
                let _ = write_all(&self.pipe, bytes, &self.fed);
                None
            }
            FeedSource::Fd(input) => copy(input, &self.pipe, &self.fed).err(),
            FeedSource::Reader(reader) => copy_reader(reader, &self.pipe, &self.fed).err(),
        };
        let Some(error) = failed else {
            // Dropping the pipe gives the command end-of-file; a terminal needs its
            // end-of-input characters first.
            if !self.end_with.is_empty() {
                let _ = write_all(&self.pipe, self.end_with, &AtomicU64::new(0));
            }
            return;
        };
        // The input broke off: an end of file now would pass a truncated input for a
        // complete one. saferun stops the command instead, and the pipe stays open until
        // it has.
        let what = match self.source {
            FeedSource::Reader(_) => "the command's stdin reader",
            _ => "saferun's stdin",
        };
        let _ = self.events.send(Event::InputFailed {
            what: what.into(),
            error,
        });
        self.stop.wait();
    }
}

/// Copies `input` into `pipe` until the input ends or the command stops reading; `Err`
/// when reading the input fails. After one look at how much is queued, that much is
/// spliced when there is enough of it, and copied otherwise (see [`crate::splice`]).
fn copy(input: &OwnedFd, pipe: &OwnedFd, fed: &AtomicU64) -> io::Result<()> {
    let mut busy = pipes::Busy::of(input);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let mut splicing = true;
    let mut buffer = Vec::new();
    loop {
        let queued = match pipes::queued(input) {
            Some(0) | None => {
                wait_readable(input);
                pipes::queued(input)
            }
            some => some,
        };
        if busy.filled(queued) {
            // A busy stream: bigger pipes, fewer wake-ups (see crate::pipes).
            pipes::grow(pipe);
            pipes::grow(input);
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if splicing && let Some(n) = queued.filter(|n| *n > 0 && splice::worth_splicing(*n, true)) {
            match splice::splice(input, pipe, n, true) {
                Step::Moved(moved) => {
                    fed.fetch_add(moved as u64, Ordering::Relaxed);
                    continue;
                }
                Step::End | Step::ReaderGone => return Ok(()),
                // The caller's stdin is non-blocking, which makes the splice so too: the
                // command's pipe is full.
                Step::WouldBlock => {
                    pipes::wait_writable(pipe, None);
                    continue;
                }
                // An input that refuses splice: read/write takes over.
                Step::Refused(_) => splicing = false,
            }
        }
        let want = queued.unwrap_or(BUFFER_SIZE).clamp(1, BUFFER_SIZE);
        if buffer.len() < want {
            buffer.resize(want, 0);
        }
        match nix::unistd::read(input, &mut buffer[..want]) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if write_all(pipe, &buffer[..n], fed).is_err() {
                    return Ok(());
                }
            }
            Err(Errno::EINTR | Errno::EAGAIN) => {}
            Err(error) => return Err(error.into()),
        }
    }
}

/// Copies what a reader gives into `pipe`, until it ends or the command stops reading.
fn copy_reader(
    reader: &mut (dyn io::Read + Send),
    pipe: &OwnedFd,
    fed: &AtomicU64,
) -> io::Result<()> {
    let mut buffer = vec![0u8; BUFFER_SIZE];
    loop {
        match reader.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                if write_all(pipe, &buffer[..n], fed).is_err() {
                    return Ok(());
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
}

/// saferun's caller may have left its stdin non-blocking (Node.js does): "nothing yet"
/// is then EAGAIN, not the end. The flag belongs to the caller's open file, so saferun
/// waits instead of changing it.
fn wait_readable(input: &OwnedFd) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let mut fds = [PollFd::new(input.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::NONE);
}

/// Writes everything, or stops quietly when the command stopped reading (EPIPE).
fn write_all(pipe: &OwnedFd, mut bytes: &[u8], fed: &AtomicU64) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(pipe, bytes) {
            Ok(n) => {
                fed.fetch_add(n as u64, Ordering::Relaxed);
                bytes = &bytes[n..];
            }
            Err(Errno::EINTR) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}
