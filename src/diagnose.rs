//! Saying why a command was stuck: the live process tree with what each process is
//! blocked on, and the user's own `--on-timeout` diagnostic command, bounded.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::config::OnTimeout;
use crate::host::Host;
use crate::notices::Notices;
use crate::procfs;
use crate::record::{OnTimeoutRun, TreeLine};

/// Output of `--on-timeout` kept for the report.
const KEPT_OUTPUT: usize = 64 * 1024;

/// The job's tree, with each process's state and what it waits on.
pub(crate) fn tree_lines(entries: &[procfs::TreeEntry]) -> Vec<TreeLine> {
    entries
        .iter()
        .cloned()
        .map(|entry| TreeLine {
            pid: entry.proc.pid,
            ppid: entry.proc.ppid,
            pgid: entry.proc.pgid,
            depth: entry.depth,
            state: entry.proc.state.to_string(),
            blocked_on: procfs::blocked_on(&entry.proc),
            command: entry.proc.command,
        })
        .collect()
}

/// The tree as indented lines for `--verbose`.
pub(crate) fn render_tree(lines: &[TreeLine]) -> Vec<String> {
    lines
        .iter()
        .map(|l| {
            format!(
                "  {}{} {}: {} [{}]",
                "  ".repeat(l.depth),
                l.pid,
                l.command,
                l.blocked_on,
                l.state
            )
        })
        .collect()
}

/// Runs `--on-timeout` through `/bin/sh -c`, passing its output to saferun's stderr as
/// it comes (when notices are printed), and kills it (its whole group) when its own
/// limit runs out. Under a host, the hook is kept from the host's reaper: its status is
/// read here.
pub(crate) fn run_on_timeout(
    hook: &OnTimeout,
    pid: Pid,
    pgid: Option<Pid>,
    reason: &str,
    notices: &Notices,
    host: Option<&Host>,
) -> OnTimeoutRun {
    let mut record = OnTimeoutRun {
        command: hook.command.clone(),
        exit_code: None,
        timed_out: false,
        output: String::new(),
    };
    let Ok((reader, writer)) = std::io::pipe() else {
        return record;
    };
    let Ok(writer_err) = writer.try_clone() else {
        return record;
    };
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&hook.command)
        .env("SAFERUN_PID", pid.to_string())
        .env(
            "SAFERUN_PGID",
            pgid.map(|g| g.to_string()).unwrap_or_default(),
        )
        .env("SAFERUN_REASON", reason)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer_err)
        .process_group(0);
    let reader: OwnedFd = reader.into();
    let mut failed = None;
    // The command (and with it this process's copies of the pipe's write end) is gone
    // once the hook runs, so that its end of output is seen.
    let spawn = || {
        let spawned = command.spawn();
        drop(command);
        spawned
            .map(|child| Pid::from_raw(child.id() as i32))
            .inspect_err(|error| failed = Some(error.to_string()))
    };
    let follow = |hook_pid: Option<Pid>| hook_pid.map(|p| follow(p, &reader, hook, notices));
    let followed = match host {
        Some(host) => host.spawn_helper(spawn, follow),
        None => follow(spawn().ok()),
    };
    match followed {
        Some((timed_out, exit_code, output)) => {
            record.timed_out = timed_out;
            record.exit_code = exit_code;
            record.output = output;
        }
        None => record.output = format!("cannot start /bin/sh: {}", failed.unwrap_or_default()),
    }
    record
}

/// Follows the started hook to its end (bounded): whether its limit ran out, its exit
/// code, and its output.
fn follow(
    hook_pid: Pid,
    reader: &OwnedFd,
    hook: &OnTimeout,
    notices: &Notices,
) -> (bool, Option<i32>, String) {
    let deadline = Instant::now() + hook.limit;
    let mut kept = Vec::new();
    let timed_out = !copy_until(reader, deadline, &mut kept, notices);
    if timed_out {
        let _ = nix::sys::signal::killpg(hook_pid, Signal::SIGKILL);
    }
    let exit_code = reap_bounded(
        hook_pid,
        deadline.max(Instant::now()) + Duration::from_secs(1),
    );
    // Whatever the hook started in the background goes with it.
    let _ = nix::sys::signal::killpg(hook_pid, Signal::SIGKILL);
    (
        timed_out,
        exit_code,
        String::from_utf8_lossy(&kept).into_owned(),
    )
}

/// Copies the hook's output to stderr until end of file (`true`) or the deadline (`false`).
fn copy_until(reader: &OwnedFd, deadline: Instant, kept: &mut Vec<u8>, notices: &Notices) -> bool {
    let _ = fcntl(reader, FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut buffer = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(reader.as_fd(), PollFlags::POLLIN)];
        let millis = left.as_millis().min(i32::MAX as u128) as i32;
        match poll(
            &mut fds,
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX),
        ) {
            Err(Errno::EINTR) | Ok(0) => continue,
            Err(_) => return true,
            Ok(_) => {}
        }
        match nix::unistd::read(reader, &mut buffer) {
            Ok(0) => return true,
            Ok(n) => {
                if notices.printing() {
                    notices.raw(buffer[..n].to_vec());
                }
                let room = KEPT_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
            Err(Errno::EINTR | Errno::EAGAIN) => continue,
            Err(_) => return true,
        }
    }
}

fn reap_bounded(pid: Pid, deadline: Instant) -> Option<i32> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Some(code),
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(WaitStatus::StillAlive) => {
                let _ = nix::sys::signal::killpg(pid, Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return None;
            }
            Err(Errno::EINTR) => continue,
            _ => return None,
        }
    }
}
