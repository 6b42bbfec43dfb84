//! Starts the command: direct exec with PATH lookup (never a shell), a process group of
//! its own, the terminal handed over when saferun has it, and a clean signal state.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::Pid;

use crate::outcome;

/// The command's three standard streams as saferun wires them.
pub struct Wiring {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// What to set up in the child between fork and exec.
pub struct Setup {
    /// Give the command a process group of its own.
    pub own_group: bool,
    /// Make that group the terminal's foreground group (saferun holds the terminal).
    pub terminal: Option<OwnedFd>,
    /// Environment additions (`SAFERUN_DEADLINE`).
    pub env: Vec<(OsString, OsString)>,
}

/// Why the command could not be started, with the status the contract gives it.
#[derive(Debug)]
pub struct SpawnError {
    pub status: u8,
    pub message: String,
}

/// Starts `argv` and returns its pid.
pub fn spawn(argv: &[OsString], wiring: Wiring, setup: Setup) -> Result<Pid, SpawnError> {
    let (program, args) = argv.split_first().ok_or_else(|| SpawnError {
        status: outcome::SAFERUN_FAILED,
        message: "missing command".into(),
    })?;
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(wiring.stdin)
        .stdout(wiring.stdout)
        .stderr(wiring.stderr)
        .envs(setup.env);
    if setup.own_group {
        command.process_group(0);
    }
    let parent = Pid::this();
    let terminal = setup.terminal;
    let own_group = setup.own_group;
    // SAFETY: the hook runs in the forked child before exec and only makes
    // async-signal-safe system calls (setpgid, tcsetpgrp, sigaction, prctl, getppid, kill);
    // it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            if let Some(tty) = &terminal {
                if own_group {
                    let _ = nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0));
                }
                let _ = nix::unistd::tcsetpgrp(tty, nix::unistd::getpgrp());
                // saferun ignores these while it holds the terminal; the command must not.
                for signal in [Signal::SIGTTIN, Signal::SIGTTOU] {
                    let _ = nix::sys::signal::signal(signal, SigHandler::SigDfl);
                }
            }
            die_with_parent(parent);
            Ok(())
        });
    }
    match command.spawn() {
        Ok(child) => Ok(Pid::from_raw(child.id() as i32)),
        Err(error) => Err(spawn_error(program, &error)),
    }
}

/// If saferun is killed with KILL, the command gets KILL too.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn die_with_parent(parent: Pid) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
    if nix::unistd::getppid() != parent {
        let _ = nix::sys::signal::kill(Pid::this(), Signal::SIGKILL);
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn die_with_parent(_parent: Pid) {}

/// GNU `timeout`'s rule: "not found" is 127, every other exec failure 126.
fn spawn_error(program: &OsString, error: &io::Error) -> SpawnError {
    let shown = program.to_string_lossy();
    let reason = error
        .raw_os_error()
        .map(|code| Errno::from_raw(code).desc().to_string())
        .unwrap_or_else(|| error.to_string());
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => SpawnError {
            status: outcome::NOT_FOUND,
            message: format!("{shown}: command not found"),
        },
        Some(Errno::EAGAIN | Errno::ENOMEM | Errno::EMFILE | Errno::ENFILE) => SpawnError {
            status: outcome::SAFERUN_FAILED,
            message: format!("cannot start {shown}: {reason}"),
        },
        _ => SpawnError {
            status: outcome::CANNOT_EXECUTE,
            message: format!("cannot execute {shown}: {reason}"),
        },
    }
}
