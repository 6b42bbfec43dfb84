//! The process's stdout and stderr shared by the jobs of a [`crate::Batch`]. One writer
//! at a time holds the console, and each write is whole lines of one job, so lines of
//! different jobs never cut into each other, however long. On a terminal a live status
//! line (`saferun: 3 running, 5 done, 1 failed`) stays at the bottom of stderr: it is
//! cleared before anything else goes out and drawn again after.

use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::Stream;
use crate::stdio::{own_stream, own_streams_are_one_file, write_all_waiting};

/// The shared console of a batch.
#[derive(Clone)]
pub(crate) struct Console {
    inner: Arc<Mutex<Screen>>,
}

struct Screen {
    stdout: Out,
    stderr: Out,
    /// The status line to keep at the bottom of stderr (a terminal's), if any.
    status: Option<String>,
    /// It is on the screen now.
    shown: bool,
    /// stdout is the same file as stderr: the status line must be cleared for it too,
    /// and a line left open on one is open on the other.
    one_file: bool,
}

struct Out {
    file: File,
    /// The seat whose last write did not end its line, and from which of its streams:
    /// any other write starts on a new line.
    open_line: Option<(usize, Stream)>,
}

impl Console {
    /// The process's own streams; `status_line` when a live status line is wanted (it is
    /// shown only if stderr is a terminal).
    pub(crate) fn new(status_line: bool) -> io::Result<Console> {
        let stderr = own_stream(Stream::Stderr)?;
        let on_terminal = nix::unistd::isatty(&stderr).unwrap_or(false);
        let out = |file| Out {
            file,
            open_line: None,
        };
        Ok(Console {
            inner: Arc::new(Mutex::new(Screen {
                stdout: out(own_stream(Stream::Stdout)?),
                stderr: out(stderr),
                status: (status_line && on_terminal).then(String::new),
                shown: false,
                one_file: own_streams_are_one_file(),
            })),
        })
    }

    /// A job's place at the console: `seat` tells its writes from other jobs'.
    pub(crate) fn seat(&self, seat: usize, name: &str) -> Seat {
        Seat {
            console: self.clone(),
            seat,
            name: name.to_string(),
        }
    }

    fn screen(&self) -> MutexGuard<'_, Screen> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes saferun's own lines (the summary) to stderr.
    pub(crate) fn say(&self, bytes: &[u8]) {
        let _ = self.write_with(usize::MAX, Stream::Stderr, |out| {
            write_all_waiting(out, bytes)?;
            Ok(bytes.to_vec())
        });
    }

    /// Holds the console for one writer: `write` gets the stream and returns what it
    /// wrote (its last byte is enough), so that the next writer knows whether a line was
    /// left open.
    fn write_with(
        &self,
        seat: usize,
        stream: Stream,
        write: impl FnOnce(&mut File) -> io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        let mut guard = self.screen();
        let screen = &mut *guard;
        screen.clear_status(stream);
        let one_file = screen.one_file;
        let (out, other) = match stream {
            Stream::Stdout => (&mut screen.stdout, &mut screen.stderr),
            Stream::Stderr => (&mut screen.stderr, &mut screen.stdout),
        };
        let open = if one_file {
            out.open_line.or(other.open_line)
        } else {
            out.open_line
        };
        if open.is_some_and(|open| open != (seat, stream)) {
            write_all_waiting(&mut out.file, b"\n")?;
            out.open_line = None;
            other.open_line = other.open_line.filter(|_| !one_file);
        }
        let written = write(&mut out.file);
        if let Ok(bytes) = &written
            && let Some(last) = bytes.last()
        {
            out.open_line = (*last != b'\n').then_some((seat, stream));
            if one_file {
                other.open_line = None;
            }
        }
        screen.draw_status();
        written.map(drop)
    }

    /// Sets the live status line (nothing happens off a terminal).
    pub(crate) fn set_status(&self, text: String) {
        let mut screen = self.screen();
        if screen.status.is_none() {
            return;
        }
        screen.clear_status(Stream::Stderr);
        screen.status = Some(text);
        screen.draw_status();
    }

    /// Takes the status line away for good.
    pub(crate) fn end_status(&self) {
        let mut screen = self.screen();
        screen.clear_status(Stream::Stderr);
        screen.status = None;
    }
}

impl Screen {
    fn clear_status(&mut self, before: Stream) {
        if self.shown && (before == Stream::Stderr || self.one_file) {
            let _ = write_all_waiting(&mut self.stderr.file, b"\r\x1b[K");
            self.shown = false;
        }
    }

    fn draw_status(&mut self) {
        // A line left open stays open: the status line would be glued to it.
        let open =
            self.stderr.open_line.is_some() || (self.one_file && self.stdout.open_line.is_some());
        if let Some(status) = &self.status
            && !self.shown
            && !open
            && !status.is_empty()
        {
            self.shown = write_all_waiting(&mut self.stderr.file, status.as_bytes()).is_ok();
        }
    }
}

/// A job's place at a batch's console.
#[derive(Clone)]
pub(crate) struct Seat {
    console: Console,
    seat: usize,
    name: String,
}

impl std::fmt::Debug for Seat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seat").field("name", &self.name).finish()
    }
}

impl Seat {
    /// The job's name in the batch.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Writes `bytes` to `stream` in one go.
    pub(crate) fn write(&self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        self.console.write_with(self.seat, stream, |out| {
            write_all_waiting(out, bytes)?;
            Ok(bytes[bytes.len().saturating_sub(1)..].to_vec())
        })
    }

    /// Writes a whole block (held output) to `stream`, holding the console throughout.
    pub(crate) fn write_block(
        &self,
        stream: Stream,
        write: impl FnOnce(&mut File) -> io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        self.console.write_with(self.seat, stream, write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek};

    fn console_on(file: &File) -> Console {
        let out = |file: &File| Out {
            file: file.try_clone().unwrap(),
            open_line: None,
        };
        Console {
            inner: Arc::new(Mutex::new(Screen {
                stdout: out(file),
                stderr: out(file),
                status: None,
                shown: false,
                one_file: true,
            })),
        }
    }

    fn contents(file: &mut File) -> String {
        let mut text = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut text).unwrap();
        text
    }

    #[test]
    fn another_seat_never_continues_an_open_line() {
        let mut file = tempfile::tempfile().unwrap();
        let console = console_on(&file);
        let (a, b) = (console.seat(0, "a"), console.seat(1, "b"));
        a.write(Stream::Stdout, b"[a] partial").unwrap();
        b.write(Stream::Stderr, b"[b] whole\n").unwrap();
        a.write(Stream::Stdout, b" rest\n").unwrap();
        b.write(Stream::Stdout, b"[b] next\n").unwrap();
        assert_eq!(
            contents(&mut file),
            "[a] partial\n[b] whole\n rest\n[b] next\n"
        );
    }

    #[test]
    fn one_seats_two_streams_never_share_a_line() {
        let mut file = tempfile::tempfile().unwrap();
        let console = console_on(&file);
        let a = console.seat(0, "a");
        a.write(Stream::Stdout, b"[a] out").unwrap();
        a.write(Stream::Stderr, b"[a] err").unwrap();
        assert_eq!(contents(&mut file), "[a] out\n[a] err");
    }

    #[test]
    fn the_same_seat_continues_its_own_line() {
        let mut file = tempfile::tempfile().unwrap();
        let console = console_on(&file);
        let a = console.seat(0, "a");
        a.write(Stream::Stdout, b"[a] one").unwrap();
        a.write(Stream::Stdout, b" line\n").unwrap();
        console.say(b"saferun: done\n");
        assert_eq!(contents(&mut file), "[a] one line\nsaferun: done\n");
    }
}
