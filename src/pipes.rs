//! Pipe sizes, and what kind of file a descriptor is.
//!
//! A bigger pipe means fewer wake-ups per byte for the command, saferun and the reader
//! downstream; but pipe memory counts against a per-user quota
//! (`pipe-user-pages-soft`, 64 MiB by default), and once it is used up every new pipe of
//! that user gets a single page. So pipes start at the kernel's default and only a
//! stream that actually fills its pipe grows it (and the pipe it is moved into) to
//! [`GROWN`]. Failure to grow is ignored: a default pipe still works.

use std::os::fd::AsFd;

use nix::sys::stat::SFlag;

/// What a busy stream's pipes grow to.
pub const GROWN: usize = 1 << 20;

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

/// What kind of file `fd` is: `S_IFIFO` for a pipe, `S_IFREG` for a regular file, …
pub fn file_type(fd: impl AsFd) -> Option<SFlag> {
    let mode = nix::sys::stat::fstat(fd.as_fd()).ok()?.st_mode;
    Some(SFlag::from_bits_truncate(mode) & SFlag::S_IFMT)
}
