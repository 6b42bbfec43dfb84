//! What saferun says itself, on its own stderr: one-line notices (`saferun: …`), the
//! extra lines of `--verbose`, and whatever else must reach saferun's own streams
//! without holding up the job (held output, `--on-timeout` output, a report to stderr).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;

use crate::console::Seat;
use crate::event::Stream;
use crate::stdio::{own_stream, write_all_waiting};

/// What saferun itself writes to its own stdout and stderr: `saferun:` lines, the
/// `--verbose` tree, `--on-timeout` output, held `--quiet-unless-fail` output, a report
/// to stderr. All of it goes through one writer thread, started on first use, so that a
/// reader downstream that stops reading can never block the main thread (and with it the
/// clock); at the end [`Notices::flush`] waits for the writer only as long as allowed.
/// Each line is written with one `write`, so it is never torn by the command's own
/// stderr passing through at the same time.
#[derive(Clone)]
pub(crate) struct Notices {
    /// Notices are printed at all (saferun's command line; a library says nothing unless
    /// asked).
    print: bool,
    verbose: bool,
    writer: Arc<OnceLock<Sender<Job>>>,
    /// How the last line on saferun's stderr ended: a notice after a partial line starts
    /// with a newline.
    line_end: Arc<LineEnd>,
    /// In a batch: the job's name starts each notice, and they go to the shared console.
    seat: Option<Seat>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Notices {
    pub fn new(print: bool, verbose: bool) -> Notices {
        Notices {
            print,
            verbose: print && verbose,
            writer: Arc::new(OnceLock::new()),
            line_end: Arc::new(LineEnd::default()),
            seat: None,
        }
    }

    /// The notices of one job of a batch.
    pub fn at(mut self, seat: Option<Seat>) -> Notices {
        self.seat = seat;
        self
    }

    /// The job's place in a batch, if it has one.
    pub fn seat(&self) -> Option<&Seat> {
        self.seat.as_ref()
    }

    /// What a destination that shares saferun's stderr reports its last byte to.
    pub fn line_end(&self) -> Arc<LineEnd> {
        self.line_end.clone()
    }

    /// Whether notices are printed.
    pub fn printing(&self) -> bool {
        self.print
    }

    /// Whether the `--verbose` ones are too.
    pub fn verbose(&self) -> bool {
        self.verbose
    }

    /// A line that is always printed (when notices are printed at all).
    pub fn say(&self, message: &str) {
        if self.print {
            let line = match &self.seat {
                Some(seat) => format!("saferun: [{}] {message}\n", seat.name()),
                None => format!("saferun: {message}\n"),
            };
            self.raw(line.into_bytes());
        }
    }

    /// A line printed only with `--verbose`.
    pub fn detail(&self, message: &str) {
        if self.verbose {
            self.say(message);
        }
    }

    /// Bytes for saferun's stderr, as they are, on a line of their own.
    pub fn raw(&self, mut bytes: Vec<u8>) {
        if let Some(seat) = self.seat.clone() {
            // The console starts it on a line of its own.
            self.run(move || drop(seat.write(Stream::Stderr, &bytes)));
            return;
        }
        let line_end = self.line_end.clone();
        self.run(move || {
            if line_end.mid_line() {
                bytes.insert(0, b'\n');
            }
            if let Ok(mut stderr) = own_stream(Stream::Stderr)
                && write_all_waiting(&mut stderr, &bytes).is_ok()
            {
                line_end.note(&bytes);
            }
        });
    }

    /// Runs `job` on the writer thread, after everything queued before it.
    pub fn run(&self, job: impl FnOnce() + Send + 'static) {
        let writer = self.writer.get_or_init(|| {
            let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
            let started = std::thread::Builder::new()
                .name("notices".into())
                .spawn(move || {
                    for job in queue {
                        job();
                    }
                });
            if started.is_err() {
                // No thread: write in place rather than lose the message.
                let (direct, queue) = crossbeam_channel::unbounded::<Job>();
                drop(queue);
                return direct;
            }
            jobs
        });
        if let Err(unsent) = writer.send(Box::new(job)) {
            (unsent.into_inner())();
        }
    }

    /// Waits until everything queued has been written, or until `deadline` (`None`: as
    /// long as it takes); past it, what is left is not written.
    pub fn flush(&self, deadline: Option<std::time::Instant>) {
        if self.writer.get().is_none() {
            return;
        }
        let (done, finished) = crossbeam_channel::bounded::<()>(1);
        self.run(move || {
            let _ = done.send(());
        });
        let _ = match deadline {
            Some(deadline) => finished.recv_deadline(deadline),
            None => finished
                .recv()
                .map_err(|_| crossbeam_channel::RecvTimeoutError::Disconnected),
        };
    }
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("print", &self.print)
            .field("verbose", &self.verbose)
            .finish()
    }
}

/// Whether the last byte written to a stream that saferun's own notices share ended a
/// line. A notice that follows a partial line (a progress bar, a prompt) starts with a
/// newline of its own, so that `grep '^saferun:'` finds every notice.
///
/// Bytes spliced inside the kernel are never seen: after them the end is unknown, and a
/// notice starts with a newline to be sure. Only a busy stream is spliced, so at worst a
/// notice after a large burst of output follows an empty line.
#[derive(Debug, Default)]
pub(crate) struct LineEnd {
    /// 0: at the start of a line; 1: in the middle of one; 2: unknown.
    state: AtomicU8,
}

impl LineEnd {
    /// Notes bytes just written.
    pub fn note(&self, bytes: &[u8]) {
        if let Some(last) = bytes.last() {
            self.state
                .store(u8::from(*last != b'\n'), Ordering::Relaxed);
        }
    }

    /// Notes bytes written without being seen.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    pub fn unseen(&self) {
        self.state.store(2, Ordering::Relaxed);
    }

    /// Whether the next line must begin with a newline.
    pub fn mid_line(&self) -> bool {
        self.state.load(Ordering::Relaxed) != 0
    }
}
