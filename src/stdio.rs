//! The process's own standard streams, as saferun writes to them: a duplicate of fd 1
//! or 2 for each writer, and writes that wait out a full pipe.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;

use crate::event::Stream;

/// A duplicate of the process's own stdout or stderr (or /dev/null if it is closed).
pub(crate) fn own_stream(stream: Stream) -> io::Result<File> {
    let fd = match stream {
        Stream::Stdout => io::stdout().as_fd().try_clone_to_owned(),
        Stream::Stderr => io::stderr().as_fd().try_clone_to_owned(),
    };
    match fd {
        Ok(fd) => Ok(File::from(fd)),
        Err(_) => OpenOptions::new().write(true).open("/dev/null"),
    }
}

/// Whether the process's stdout and stderr are the same file (a terminal, `2>&1`).
pub(crate) fn own_streams_are_one_file() -> bool {
    let id = |fd: std::os::fd::BorrowedFd<'_>| {
        nix::sys::stat::fstat(fd).map(|s| (s.st_dev, s.st_ino)).ok()
    };
    let out = id(io::stdout().as_fd());
    out.is_some() && out == id(io::stderr().as_fd())
}

/// `write_all`, also when whoever opened the descriptor left it non-blocking: a full
/// pipe (EAGAIN) is waited for, not taken for a failure.
pub(crate) fn write_all_waiting(out: &mut File, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match out.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut fds = [nix::poll::PollFd::new(
                    out.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
