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
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use nix::fcntl::{FcntlArg, fcntl};
        if capacity(&fd).is_some_and(|current| current < GROWN) {
            let _ = fcntl(&fd, FcntlArg::F_SETPIPE_SZ(GROWN as i32));
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = fd;
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
