//! Process control: the only file that sends signals, waits for processes or touches
//! the terminal's foreground group. Another platform's backend (Windows job objects)
//! would replace this module.
//!
//! The command's pid is never reaped until the main thread says so: on each SIGCHLD it
//! only peeks at the command's status (`waitid` with `WNOWAIT`), so the pid and
//! process-group id cannot be reused by an unrelated process while saferun may still
//! signal them.

use nix::errno::Errno;
use nix::sys::signal::{SigHandler, Signal, kill, killpg};
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
use nix::sys::wait::waitpid;
use nix::sys::wait::{WaitPidFlag, WaitStatus};
use nix::unistd::{Pid, getpgrp};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};

use crate::event::{ChildEnd, Event};

/// The command's process group (or the command alone under `--foreground`).
#[derive(Debug, Clone, Copy)]
pub struct Group {
    pid: Pid,
    own_group: bool,
}

impl Group {
    pub fn new(pid: Pid, own_group: bool) -> Group {
        if own_group {
            // The child calls setpgid too; doing it here as well closes the window in
            // which a signal for the group could arrive before the child ran.
            let _ = nix::unistd::setpgid(pid, pid);
        }
        Group { pid, own_group }
    }

    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The group id, or `None` when the command shares saferun's group.
    pub fn pgid(&self) -> Option<Pid> {
        self.own_group.then_some(self.pid)
    }

    /// Sends `signal` to the whole group (or the command alone). `false`: nothing was left.
    pub fn signal(&self, signal: Signal) -> bool {
        let result = if self.own_group {
            killpg(self.pid, signal)
        } else {
            kill(self.pid, signal)
        };
        result.is_ok()
    }

    /// Whether any process is left in the command's own group.
    pub fn has_members(&self) -> bool {
        self.own_group && killpg(self.pid, None::<Signal>).is_ok()
    }
}

/// Sends `signal` to one process; `false` if it is already gone.
pub fn signal_pid(pid: Pid, signal: Signal) -> bool {
    kill(pid, signal).is_ok()
}

/// Stops saferun itself (job control); returns once something sends it CONT.
pub fn stop_self() {
    let _ = kill(Pid::this(), Signal::SIGSTOP);
}

/// Makes saferun the reaper of every orphaned descendant, so that processes that leave
/// the group (`setsid`, double fork, `nohup … &`) are still found, signalled and reaped.
/// Returns whether that is in force (Linux only).
pub fn become_subreaper() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        nix::sys::prctl::set_child_subreaper(true).is_ok()
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        false
    }
}

/// What changed about the command since the last look, if anything. It peeks at an exit without reaping (`waitid` with `WNOWAIT`), so the main
/// thread decides when the pid is freed (see [`reap`]); stops and continues are consumed.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
pub fn child_change(pid: Pid) -> Option<Event> {
    use nix::sys::wait::{Id, waitid};
    let peek = WaitPidFlag::WEXITED
        | WaitPidFlag::WSTOPPED
        | WaitPidFlag::WCONTINUED
        | WaitPidFlag::WNOHANG
        | WaitPidFlag::WNOWAIT;
    loop {
        return match waitid(Id::Pid(pid), peek) {
            Err(Errno::EINTR) => continue,
            Err(_) | Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Stopped(_, signal)) => {
                // Consume the stop notice (but not an exit) so the next peek sees anew.
                let _ = waitid(Id::Pid(pid), WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG);
                Some(Event::Stopped(signal as i32))
            }
            Ok(WaitStatus::Continued(_)) => {
                let _ = waitid(Id::Pid(pid), WaitPidFlag::WCONTINUED | WaitPidFlag::WNOHANG);
                Some(Event::Continued)
            }
            Ok(other) => child_end(other).map(Event::Exited),
        };
    }
}

/// Platforms without `waitid(WNOWAIT)`: the command is reaped here. Its pid could then be
/// reused before saferun's last group signal; the window is a few microseconds.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
pub fn child_change(pid: Pid) -> Option<Event> {
    let flags = WaitPidFlag::WNOHANG | WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
    loop {
        return match waitpid(pid, Some(flags)) {
            Err(Errno::EINTR) => continue,
            Err(_) | Ok(WaitStatus::StillAlive) => None,
            Ok(WaitStatus::Stopped(_, signal)) => Some(Event::Stopped(signal as i32)),
            Ok(WaitStatus::Continued(_)) => Some(Event::Continued),
            Ok(other) => child_end(other).map(Event::Exited),
        };
    }
}

fn child_end(status: WaitStatus) -> Option<ChildEnd> {
    match status {
        WaitStatus::Exited(_, code) => Some(ChildEnd::Exited(code)),
        WaitStatus::Signaled(_, signal, core_dumped) => Some(ChildEnd::Signaled {
            signal: signal as i32,
            core_dumped,
        }),
        _ => None,
    }
}

/// Frees the command's pid once [`child_change`] reported its end, and returns what it
/// used: itself and the descendants it waited for (not the whole process's children:
/// other jobs may run at the same time).
pub fn reap(pid: Pid) -> Option<libc::rusage> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    loop {
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value for the kernel to overwrite.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are to live locals of the right types.
        let reaped = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut usage) };
        if reaped == pid.as_raw() {
            return Some(usage);
        }
        if reaped < 0 && Errno::last() == Errno::EINTR {
            continue;
        }
        return None;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        let _ = pid;
        None
    }
}

/// Whether saferun has any child at all (one system call; before the command starts,
/// any child is one the process that exec'd saferun left behind).
pub fn has_children() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    {
        use nix::sys::wait::{Id, waitid};
        let peek = WaitPidFlag::WEXITED
            | WaitPidFlag::WSTOPPED
            | WaitPidFlag::WCONTINUED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT;
        waitid(Id::All, peek) != Err(Errno::ECHILD)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    {
        true
    }
}

/// Watches the command from a thread of its own: each change of its state (stopped,
/// continued, exited) becomes an event. An exit is only peeked at (`waitid` with
/// `WNOWAIT`): the job reaps the pid itself, once it has sent its last signal to it, so
/// the pid and group id cannot be reused by an unrelated process meanwhile. The thread
/// ends with the command's exit.
pub(crate) fn watch(pid: Pid, events: crossbeam_channel::Sender<Event>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("waiter".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            while let Some(change) = wait_change(pid) {
                let exited = matches!(change, Event::Exited(_));
                if events.send(change).is_err() || exited {
                    return;
                }
            }
        })
        .map(drop)
}

/// Blocks until the command changes state; `None` if it cannot be waited for.
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn wait_change(pid: Pid) -> Option<Event> {
    use nix::sys::wait::{Id, waitid};
    let peek = WaitPidFlag::WEXITED
        | WaitPidFlag::WSTOPPED
        | WaitPidFlag::WCONTINUED
        | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::Pid(pid), peek) {
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(_) => {
                if let Some(change) = child_change(pid) {
                    return Some(change);
                }
            }
        }
    }
}

/// Platforms without `waitid(WNOWAIT)`: the command is reaped here. Its pid could then be
/// reused before saferun's last group signal; the window is a few microseconds.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn wait_change(pid: Pid) -> Option<Event> {
    let flags = WaitPidFlag::WUNTRACED | WaitPidFlag::WCONTINUED;
    loop {
        return match waitpid(pid, Some(flags)) {
            Err(Errno::EINTR) => continue,
            Err(_) => None,
            Ok(WaitStatus::Stopped(_, signal)) => Some(Event::Stopped(signal as i32)),
            Ok(WaitStatus::Continued(_)) => Some(Event::Continued),
            Ok(other) => child_end(other).map(Event::Exited),
        };
    }
}

/// Reaps those of `children` that have exited and that `reap` allows (orphans
/// re-parented to a subreaper), and says whether any of `children` is still alive.
pub(crate) fn reap_orphans(children: &[i32], reap: impl Fn(i32) -> bool) -> bool {
    let mut live = false;
    for &child in children {
        let mut flags = WaitPidFlag::WNOHANG;
        #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
        {
            flags |= WaitPidFlag::WEXITED;
        }
        if !reap(child) {
            flags |= WaitPidFlag::WNOWAIT;
        }
        loop {
            match peek_or_reap(Pid::from_raw(child), flags) {
                Err(Errno::EINTR) => continue,
                Ok(WaitStatus::StillAlive) => live = true,
                _ => {}
            }
            break;
        }
    }
    live
}

#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
fn peek_or_reap(pid: Pid, flags: WaitPidFlag) -> nix::Result<WaitStatus> {
    nix::sys::wait::waitid(nix::sys::wait::Id::Pid(pid), flags)
}

/// Without `waitid`, a child that must not be reaped is only asked whether it is alive.
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
fn peek_or_reap(pid: Pid, flags: WaitPidFlag) -> nix::Result<WaitStatus> {
    if flags.contains(WaitPidFlag::WNOWAIT) {
        return nix::sys::signal::kill(pid, None).map(|()| WaitStatus::StillAlive);
    }
    waitpid(pid, Some(WaitPidFlag::WNOHANG))
}

/// The terminal saferun hands to the command for the run, as a shell does for a job.
#[derive(Debug)]
pub struct Terminal {
    tty: File,
    saferun_group: Pid,
    /// TTIN and TTOU where saferun ignores them and its caller did not.
    ignored_here: Vec<Signal>,
}

impl Terminal {
    /// The controlling terminal, if saferun runs in its foreground and one of its standard
    /// streams is that terminal.
    pub fn if_foreground() -> Option<Terminal> {
        let any_std_tty = [
            std::io::stdin().as_fd(),
            std::io::stdout().as_fd(),
            std::io::stderr().as_fd(),
        ]
        .into_iter()
        .any(|fd| nix::unistd::isatty(fd).unwrap_or(false));
        if !any_std_tty {
            return None;
        }
        let tty = File::options()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        let saferun_group = getpgrp();
        if nix::unistd::tcgetpgrp(&tty).ok()? != saferun_group {
            return None;
        }
        // saferun must keep writing the command's output and take the terminal back from
        // the background, as a shell does.
        let mut ignored_here = Vec::new();
        for signal in [Signal::SIGTTIN, Signal::SIGTTOU] {
            // SAFETY: installs SIG_IGN, which runs no code in signal context.
            let before = unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) };
            if !matches!(before, Ok(SigHandler::SigIgn)) {
                ignored_here.push(signal);
            }
        }
        Some(Terminal {
            tty,
            saferun_group,
            ignored_here,
        })
    }

    /// The signals saferun ignores because it holds the terminal, which the command must
    /// get back at their default.
    pub fn ignored_here(&self) -> &[Signal] {
        &self.ignored_here
    }

    /// A descriptor of the terminal for the child to claim it before exec.
    pub fn clone_fd(&self) -> Option<OwnedFd> {
        self.tty.try_clone().ok().map(OwnedFd::from)
    }

    pub fn give_to(&self, group: Pid) {
        let _ = nix::unistd::tcsetpgrp(&self.tty, group);
    }

    /// Takes the terminal back for saferun's own group. saferun ignores SIGTTOU while it
    /// holds a [`Terminal`], so this works from the background.
    pub fn take_back(&self) {
        let _ = nix::unistd::tcsetpgrp(&self.tty, self.saferun_group);
    }

    /// Whether saferun's group is (again) the terminal's foreground group.
    pub fn saferun_in_foreground(&self) -> bool {
        nix::unistd::tcgetpgrp(&self.tty).is_ok_and(|g| g == self.saferun_group)
    }
}

/// Ends saferun by the same signal that ended the command, so that the caller sees the
/// same death (a shell reports 128+N and stops a loop on Ctrl-C). Core dumps are turned
/// off first: the command may have dumped core, saferun has nothing to dump.
pub fn die_of(signal: i32) -> ! {
    use nix::sys::resource::{Resource, setrlimit};
    use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
    let _ = setrlimit(Resource::RLIMIT_CORE, 0, 0);
    if let Ok(signal) = Signal::try_from(signal) {
        // SAFETY: installs SIG_DFL, which runs no code in signal context.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let mut set = SigSet::empty();
        set.add(signal);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = nix::sys::signal::raise(signal);
    }
    // A signal that does not end a process by default: the shell's convention instead.
    std::process::exit(128 + signal)
}
