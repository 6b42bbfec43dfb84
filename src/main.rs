//! The `saferun` binary: parse the command line, run, exit as the run decided.
//!
//! saferun is started once per command it wraps, so its own start-up is on every
//! caller's clock. It skips std's runtime set-up (which reads /proc/self/maps to find
//! the main thread's stack and gives every thread a signal stack of its own: a fifth of
//! saferun's start-up) and does the two parts of it that matter here itself, in
//! [`prepare_process`].
#![cfg_attr(not(test), no_main)]

mod cases;
mod ci;
mod cli;
mod junit;
mod units;

use std::ffi::OsString;
use std::os::fd::{BorrowedFd, IntoRawFd};

use cli::Inherited;
use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::stat::Mode;
use saferun::Host;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    let inherited = prepare_process();
    // std fills `args_os` only on some C libraries (glibc, Apple's) when it does not run
    // `main` itself: take the arguments from the C runtime, as given.
    let args = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the C runtime passes `argc` valid NUL-terminated strings in `argv`,
            // alive for the whole process.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(arg.to_bytes()).to_owned()
        })
        .collect();
    start(args, inherited)
}

/// parse → host → run (one command, or several) → exit as the run ended.
#[cfg_attr(test, allow(dead_code))]
fn start(args: Vec<OsString>, inherited: Inherited) -> ! {
    let parsed = match cli::parse(args, inherited) {
        Ok(parsed) => parsed,
        Err(status) => std::process::exit(status),
    };
    let host = match if parsed.init {
        Host::install_init()
    } else {
        Host::install_with_terminal()
    } {
        Ok(host) => host,
        Err(error) => {
            say(&error.to_string());
            std::process::exit(error.code());
        }
    };
    let ci = ci::Ci::detect(&parsed.ci);
    // Only CI markers and JUnit need the runs told as test cases.
    let reporting = ci != ci::Ci::None || parsed.junit.is_some();
    let (title, suite) = match &parsed.run {
        _ if !reporting => (String::new(), String::new()),
        cli::Run::One(command) => {
            let line = cases::command_line(command.argv());
            (line.clone(), line)
        }
        cli::Run::Several(batch) => {
            let names = batch.names().join(", ");
            (format!("{} commands: {names}", batch.names().len()), names)
        }
    };
    let group = ci::begin(ci, &title);
    let finished = match parsed.run {
        cli::Run::One(mut command) => command.host(&host).run().map(|outcome| {
            let cases = match reporting {
                true => vec![cases::of_one(command.argv(), &outcome)],
                false => Vec::new(),
            };
            (cases, Finished::One(outcome))
        }),
        cli::Run::Several(mut batch) => batch.host(&host).run().map(|outcome| {
            let cases = match reporting {
                true => cases::of_batch(&outcome),
                false => Vec::new(),
            };
            (cases, Finished::Several(outcome))
        }),
    };
    let (cases, finished) = match finished {
        Ok(finished) => finished,
        Err(error) => {
            group.end(&[]);
            say(&error.to_string());
            std::process::exit(remap(&parsed.remap_exit, error.code()).unwrap_or(error.code()));
        }
    };
    group.end(&cases);
    if let Some(junit) = parsed.junit {
        junit.write(&suite, &cases);
    }
    match remap(&parsed.remap_exit, finished.code()) {
        Some(code) => std::process::exit(code),
        None => finished.exit(),
    }
}

/// How the run ended: one command's outcome, or several's.
// Made once per process.
#[allow(clippy::large_enum_variant)]
enum Finished {
    One(saferun::Outcome),
    Several(saferun::BatchOutcome),
}

impl Finished {
    fn code(&self) -> i32 {
        match self {
            Finished::One(outcome) => outcome.code(),
            Finished::Several(outcome) => outcome.code(),
        }
    }

    fn exit(&self) -> ! {
        match self {
            Finished::One(outcome) => outcome.exit(),
            Finished::Several(outcome) => outcome.exit(),
        }
    }
}

/// `--remap-exit`: the status to exit with instead of `code`, if one is given.
fn remap(pairs: &[(i32, i32)], code: i32) -> Option<i32> {
    pairs
        .iter()
        .find(|(from, _)| *from == code)
        .map(|(_, to)| *to)
}

/// One `saferun:` line on stderr, with one write(2) and without std's stderr lock (which
/// a writer stuck on a full stderr may hold), and never a panic on a stderr that cannot
/// be written.
fn say(message: &str) {
    let line = format!("saferun: {message}\n");
    let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
}

/// What std's runtime would have done and saferun relies on. Returns what the command
/// must inherit of it: which standard streams were closed, and SIGPIPE ignored.
#[cfg_attr(test, allow(dead_code))]
fn prepare_process() -> Inherited {
    // A closed 0, 1 or 2 would be taken by the first pipe saferun opens, and its own
    // messages would go into the command's stdin. Fill the gap with /dev/null, and
    // remember it: the command gets that stream closed, as without saferun.
    let mut closed = [false; 3];
    for (fd, was_closed) in (0..=2).zip(&mut closed) {
        // SAFETY: only asks whether the descriptor is open.
        let probe = unsafe { BorrowedFd::borrow_raw(fd) };
        if fcntl(probe, FcntlArg::F_GETFD).is_err() {
            *was_closed = true;
            // The lowest free descriptor: this one. Kept open for the process's life.
            if let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
                let _ = null.into_raw_fd();
            }
        }
    }
    // A reader that goes away must show as EPIPE on the write, not kill saferun.
    // SAFETY: SIG_IGN installs no handler code.
    let before = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // One malloc arena, not one per thread: saferun's threads allocate almost nothing,
    // and each new arena costs a 64 MiB reservation and its page faults at start-up.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain tuning call, made before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    Inherited {
        stdin_closed: closed[0],
        stdout_closed: closed[1],
        stderr_closed: closed[2],
        sigpipe_ignored: matches!(before, Ok(SigHandler::SigIgn)),
    }
}
