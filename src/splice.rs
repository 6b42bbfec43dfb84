//! Moving bytes from a pipe without copying them (`splice(2)`, `tee(2)`), and deciding
//! when that pays: shared by the drains and the feeder.
//!
//! A `write(2)` into a pipe merges small writes into the pipe's last page. A page that
//! arrives by `splice(2)` or `tee(2)` cannot be merged into, so every spliced chunk takes
//! one of the pipe's slots (16 in a default pipe), however small. Spliced one line at a
//! time, a few hundred bytes would fill a pipe, and a parent that waits for saferun
//! before it reads would hang where a plain pipe holds 64 KiB. So what is queued, up to
//! what a default pipe holds ([`COPY_UP_TO`]), is copied: read and written, merging
//! as the command's own writes did. Only more than that, which only a busy stream has
//! and only once its pipe has grown, is spliced.

#[cfg(any(target_os = "linux", target_os = "android"))]
use std::os::fd::AsFd;

use nix::errno::Errno;

/// Queued bytes up to this are copied into a pipe rather than spliced: what a default
/// pipe holds. A command has written at least this much before saferun splices, so
/// saferun never holds less than a plain pipe would have before the command blocks.
pub const COPY_UP_TO: usize = 64 * 1024;

/// Whether `queued` bytes should be spliced into a destination rather than copied. Into
/// a regular file a splice strands nothing (the file system copies the bytes anyway).
pub fn worth_splicing(queued: usize, into_pipe: bool) -> bool {
    !into_pipe || queued > COPY_UP_TO
}

/// What one `splice` or `tee` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Moved(usize),
    /// Nothing to move: every writer closed the pipe.
    End,
    /// The destination is full (or, without data queued, the source empty).
    WouldBlock,
    /// The destination's reader left (EPIPE).
    ReaderGone,
    /// The destination refuses (a terminal, an `O_APPEND` file: EINVAL) or failed.
    Refused(Errno),
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Step {
    fn of(result: nix::Result<usize>) -> Step {
        match result {
            Ok(0) => Step::End,
            Ok(n) => Step::Moved(n),
            Err(Errno::EAGAIN) => Step::WouldBlock,
            Err(Errno::EPIPE) => Step::ReaderGone,
            Err(error) => Step::Refused(error),
        }
    }
}

/// Moves up to `len` bytes from the pipe `from` into `to`. With `wait`, a full
/// destination is waited for inside the call (one system call per chunk, as a plain
/// relay makes); without it, it is [`Step::WouldBlock`]. Neither waits for the source:
/// call it with data queued.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn splice(from: impl AsFd, to: impl AsFd, len: usize, wait: bool) -> Step {
    use nix::fcntl::SpliceFFlags;
    let flags = if wait {
        SpliceFFlags::SPLICE_F_MOVE
    } else {
        SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
    };
    loop {
        match nix::fcntl::splice(&from, None, &to, None, len, flags) {
            Err(Errno::EINTR) => continue,
            result => return Step::of(result),
        }
    }
}

/// Duplicates up to `len` bytes of the pipe `from` into the pipe `to`, leaving them in
/// `from`, without blocking.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn tee(from: impl AsFd, to: impl AsFd, len: usize) -> Step {
    use nix::fcntl::SpliceFFlags;
    loop {
        match nix::fcntl::tee(&from, &to, len, SpliceFFlags::SPLICE_F_NONBLOCK) {
            Err(Errno::EINTR) => continue,
            result => return Step::of(result),
        }
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn small_writes_copied_merge_where_spliced_ones_each_take_a_slot() {
        // What the rule is for: into a default pipe, 200 spliced 5-byte chunks do not
        // fit (16 slots), 200 copied ones do.
        let fill = |splice_each: bool| {
            let (mut src_r, mut src_w) = std::io::pipe().unwrap();
            let (_dst_r, dst_w) = std::io::pipe().unwrap();
            nix::fcntl::fcntl(
                &dst_w,
                nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
            )
            .unwrap();
            let mut dst_w = std::fs::File::from(std::os::fd::OwnedFd::from(dst_w));
            let mut delivered = 0;
            for _ in 0..200 {
                src_w.write_all(b"line\n").unwrap();
                let fits = if splice_each {
                    matches!(splice(&src_r, &dst_w, 5, false), Step::Moved(5))
                } else {
                    let mut chunk = [0u8; 5];
                    src_r.read_exact(&mut chunk).unwrap();
                    dst_w.write(&chunk).is_ok_and(|n| n == 5)
                };
                if !fits {
                    break;
                }
                delivered += 1;
            }
            delivered
        };
        assert!(fill(true) < 200, "spliced chunks should run out of slots");
        assert_eq!(fill(false), 200);
        assert!(!worth_splicing(COPY_UP_TO, true));
        assert!(worth_splicing(COPY_UP_TO + 1, true));
        assert!(worth_splicing(1, false));
    }
}
