//! The `saferun` binary: parse the command line, run, exit as the run decided.
//!
//! saferun is started once per command it wraps, so its own start-up is on every
//! caller's clock. It skips std's runtime set-up (which reads /proc/self/maps to find
//! the main thread's stack and gives every thread a signal stack of its own: a fifth of
//! saferun's start-up) and does the two parts of it that matter here itself, in
//! [`prepare_process`].
#![cfg_attr(not(test), no_main)]

mod cli;

use std::os::fd::{BorrowedFd, IntoRawFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl, open};
use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::stat::Mode;
use saferun::{Exit, group, outcome};

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    prepare_process();
    start()
}

#[cfg_attr(test, allow(dead_code))]
fn start() -> ! {
    let config = match cli::parse() {
        Ok(config) => config,
        Err(exit) => std::process::exit(exit),
    };
    match saferun::run(&config) {
        Ok(Exit::Code(code)) => std::process::exit(i32::from(code)),
        Ok(Exit::Raise(signal)) => group::die_of(signal),
        Err(error) => {
            // One write(2), without std's stderr lock: a writer thread stuck on a full
            // stderr may hold it.
            let line = format!("saferun: {error:#}\n");
            let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
            std::process::exit(i32::from(outcome::SAFERUN_FAILED));
        }
    }
}

/// What std's runtime would have done and saferun relies on.
#[cfg_attr(test, allow(dead_code))]
fn prepare_process() {
    // A closed 0, 1 or 2 would be taken by the first pipe saferun opens, and its own
    // messages would go into the command's stdin. Fill the gap with /dev/null.
    for fd in 0..=2 {
        // SAFETY: only asks whether the descriptor is open.
        let probe = unsafe { BorrowedFd::borrow_raw(fd) };
        if fcntl(probe, FcntlArg::F_GETFD).is_err() {
            // The lowest free descriptor: this one. Kept open for the process's life.
            if let Ok(null) = open("/dev/null", OFlag::O_RDWR, Mode::empty()) {
                let _ = null.into_raw_fd();
            }
        }
    }
    // A reader that goes away must show as EPIPE on the write, not kill saferun.
    // SAFETY: SIG_IGN installs no handler code.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
    // One malloc arena, not one per thread: saferun's threads allocate almost nothing,
    // and each new arena costs a 64 MiB reservation and its page faults at start-up.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: a plain tuning call, made before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
