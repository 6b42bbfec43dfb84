//! A pseudo-terminal for the command's stdout (`--pty`): a command whose stdout is a
//! terminal line-buffers it, so its output arrives as it is written, not 4 KiB at a
//! time when stdio's buffer fills. saferun reads the other side as it reads a pipe.
//!
//! The terminal passes bytes as they are: no `\n` → `\r\n` on output, no echo, and
//! (for `--pty-stdin`) no signal characters, no flow control and no `\r` → `\n` on
//! input. Its size is the caller's terminal's, or 80x24.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::pty::OpenptFlags;
use rustix::termios::{self, InputModes, LocalModes, OptionalActions, OutputModes, Winsize};

/// End of input on a terminal in canonical mode: a first one ends a partial line, a
/// second (or one at the start of a line) makes the reader's `read` return 0.
pub(crate) const END_OF_INPUT: &[u8] = b"\x04\x04";

/// An open pseudo-terminal.
pub(crate) struct Pair {
    /// saferun's side: what the command writes is read here, its input written here.
    pub master: OwnedFd,
    /// The command's side: its stdout (and stdin with `--pty-stdin`).
    pub slave: OwnedFd,
    /// The slave's path (`/dev/pts/N`), how /proc shows who holds it.
    pub path: String,
}

impl Pair {
    /// Opens a terminal pair, sized as the caller's terminal.
    pub(crate) fn open() -> io::Result<Pair> {
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | cloexec())?;
        rustix::pty::grantpt(&master)?;
        rustix::pty::unlockpt(&master)?;
        let path = rustix::pty::ptsname(&master, Vec::new())?
            .into_string()
            .unwrap_or_default();
        let slave = open_slave(&master, &path)?;
        let mut modes = termios::tcgetattr(&slave)?;
        modes
            .output_modes
            .remove(OutputModes::OPOST | OutputModes::ONLCR);
        modes
            .local_modes
            .remove(LocalModes::ECHO | LocalModes::ECHONL | LocalModes::ISIG);
        modes
            .input_modes
            .remove(InputModes::ICRNL | InputModes::IXON);
        termios::tcsetattr(&slave, OptionalActions::Now, &modes)?;
        termios::tcsetwinsize(&master, caller_size())?;
        Ok(Pair {
            master,
            slave,
            path,
        })
    }
}

/// Close-on-exec where the platform's `posix_openpt` takes it (elsewhere the command
/// gets only the slave, which saferun wires itself).
#[cfg(any(target_os = "linux", target_os = "freebsd"))]
fn cloexec() -> OpenptFlags {
    OpenptFlags::CLOEXEC
}

#[cfg(not(any(target_os = "linux", target_os = "freebsd")))]
fn cloexec() -> OpenptFlags {
    OpenptFlags::empty()
}

#[cfg(target_os = "linux")]
fn open_slave(master: &OwnedFd, _path: &str) -> io::Result<OwnedFd> {
    // By the master itself, not by path: nobody can swap the node in between.
    let flags = OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC;
    Ok(rustix::pty::ioctl_tiocgptpeer(master, flags)?)
}

#[cfg(not(target_os = "linux"))]
fn open_slave(_master: &OwnedFd, path: &str) -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// The size of the terminal saferun runs in (its stdout's, stderr's or stdin's), or
/// 80x24 when none is one.
pub(crate) fn caller_size() -> Winsize {
    let own = [
        io::stdout().as_fd().try_clone_to_owned(),
        io::stderr().as_fd().try_clone_to_owned(),
        io::stdin().as_fd().try_clone_to_owned(),
    ];
    own.into_iter()
        .flatten()
        .find_map(|fd| termios::tcgetwinsize(&fd).ok().filter(|w| w.ws_col > 0))
        .unwrap_or(Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        })
}

/// Gives the terminal behind `master` the caller's current size (after a SIGWINCH);
/// the kernel tells the terminal's foreground group.
pub(crate) fn follow_caller(master: BorrowedFd<'_>) {
    let _ = termios::tcsetwinsize(master, caller_size());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn bytes_pass_as_they_are() {
        let pty = Pair::open().expect("a pseudo-terminal");
        let mut slave = std::fs::File::from(pty.slave);
        slave.write_all(b"one\ntwo\r\n\x03").unwrap();
        drop(slave);
        let mut master = std::fs::File::from(pty.master);
        let mut got = Vec::new();
        // The end of a terminal reads as EIO once its other side is closed.
        let mut chunk = [0u8; 64];
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, b"one\ntwo\r\n\x03");
        assert!(pty.path.starts_with("/dev/"), "{}", pty.path);
    }
}
