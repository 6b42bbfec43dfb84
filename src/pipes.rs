//! Pipe sizes, and what kind of file a descriptor is.
//!
//! A bigger pipe means fewer wake-ups per byte for the command, saferun and the reader
//! downstream; but pipe memory counts against a per-user quota
//! (`pipe-user-pages-soft`, 64 MiB by default), and once it is used up every new pipe of
//! that user gets a single page. So pipes start at the kernel's default and only a
//! stream that actually fills its pipe grows it (and the pipe it is moved into) to
//! [`GROWN`]. Failure to grow is ignored: a default pipe still works.
//!
//! [`GROWN`] comes from a sweep on the reference machine (docs/performance.md,
//! "Pipe sizes"): 256 KiB on both sides of saferun comes within a few percent of a bare
//! splice relay, larger gains a little more but 16 busy runs would then hold half the
//! default quota instead of a quarter, and 1 MiB is slower again (the data in flight
//! no longer fits the cache).

use std::os::fd::AsFd;

use nix::sys::stat::SFlag;

/// What a busy stream's pipes grow to.
pub const GROWN: usize = 256 * 1024;

/// The pipe's capacity in bytes, if `fd` is a pipe.
pub fn capacity(fd: impl AsFd) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::fcntl::{FcntlArg, fcntl};
        fcntl(&fd, FcntlArg::F_GETPIPE_SZ)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = fd;
        None
    }
}

/// Grows a pipe to [`GROWN`] if it is a pipe and smaller (never shrinks one).
pub fn grow(fd: impl AsFd) {
    grow_to(fd, GROWN);
}

/// Grows a pipe to `size` if it is a pipe and smaller; its capacity afterwards (`None`
/// if it is not a pipe). The kernel may refuse (the per-user pipe quota, the most a
/// user may ask for): the pipe then stays as it was.
pub fn grow_to(fd: impl AsFd, size: usize) -> Option<usize> {
    let current = capacity(&fd)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if current < size {
        use nix::fcntl::{FcntlArg, fcntl};
        if let Ok(grown) = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(size as i32)) {
            return usize::try_from(grown).ok();
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = size;
    Some(current)
}

/// Tells when a pipe that a stream reads from first filled up: it is a busy stream, whose
/// pipes are then grown.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Busy {
    /// Its capacity, until it filled up once.
    capacity: Option<usize>,
}

impl Busy {
    pub(crate) fn of(fd: impl AsFd) -> Busy {
        Busy {
            capacity: capacity(fd),
        }
    }

    /// Whether `queued` bytes in it mean it just filled up for the first time. Full is
    /// within a page of its capacity: writes of lines rarely fill the last page whole.
    pub(crate) fn filled(&mut self, queued: Option<usize>) -> bool {
        let full = matches!((self.capacity, queued), (Some(c), Some(n)) if n + 4096 > c);
        if full {
            self.capacity = None;
        }
        full
    }
}

/// Blocks until `fd` can take more bytes; with `stop`, until that is readable first
/// (returns `true` then).
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn wait_writable(fd: impl AsFd, stop: Option<std::os::fd::BorrowedFd<'_>>) -> bool {
    use nix::errno::Errno;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    loop {
        let mut fds = vec![PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
        if let Some(stop) = stop {
            fds.push(PollFd::new(stop, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            _ => {
                return fds
                    .get(1)
                    .is_some_and(|f| f.revents().is_some_and(|r| !r.is_empty()));
            }
        }
    }
}

/// Bytes waiting to be read in a pipe (or socket); `None` if it cannot tell.
pub fn queued(fd: impl AsFd) -> Option<usize> {
    rustix::io::ioctl_fionread(fd)
        .ok()
        .and_then(|n| usize::try_from(n).ok())
}

/// What kind of file `fd` is: `S_IFIFO` for a pipe, `S_IFREG` for a regular file, …
pub fn file_type(fd: impl AsFd) -> Option<SFlag> {
    let mode = nix::sys::stat::fstat(fd.as_fd()).ok()?.st_mode;
    Some(SFlag::from_bits_truncate(mode) & SFlag::S_IFMT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn queued_counts_what_waits_in_a_pipe() {
        let (reader, mut writer) = std::io::pipe().unwrap();
        assert_eq!(queued(&reader), Some(0));
        writer.write_all(&[7u8; 1000]).unwrap();
        assert_eq!(queued(&reader), Some(1000));
    }
}
