//! Reading the process table (Linux /proc): who is left, who holds a pipe, and what a
//! stuck process is blocked on. Read-only; on other systems every answer is empty.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;

/// One process as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// The one-letter state: R running, S sleeping, D uninterruptible, T stopped, Z zombie.
    pub state: char,
    /// The command line, or `[comm]` when it is not readable.
    pub command: String,
    /// When it started, in clock ticks since boot.
    pub started: u64,
}

/// The processes that can matter to the run saferun (`root`) started, from
/// `/proc/PID/stat` only (so `command` is the short `[comm]` name; [`descendants`] and
/// [`read`] fill in full command lines). As subreaper saferun inherits every orphan
/// below it, so its descendants are all of them, found by following
/// `/proc/PID/task/TID/children` down from `root`: work in proportion to the tree, not
/// to the machine. Otherwise, or without those files, every process on the machine.
/// `skip` are children of `root` that are not the run's (they were there before it
/// started); they and theirs are left out.
pub fn table(root: i32, subreaper: bool, skip: &[i32]) -> Vec<Proc> {
    if !ours() {
        return Vec::new();
    }
    if subreaper && let Some(family) = family(root, skip) {
        return family;
    }
    let mut all = all();
    all.retain(|p| !skip.contains(&p.pid));
    all
}

/// Whether /proc shows this process's own view: in a new PID namespace with the parent's
/// /proc still mounted, every pid there is somebody else's, and nothing may be read as
/// saferun's.
fn ours() -> bool {
    fs::read_link("/proc/self")
        .ok()
        .and_then(|target| target.to_str()?.parse::<u32>().ok())
        == Some(std::process::id())
}

/// The children saferun already had when it started (the process that exec'd saferun
/// may have left some): not the run's.
pub fn own_children() -> Vec<i32> {
    if !ours() {
        return Vec::new();
    }
    let me = std::process::id();
    let mut buffer = vec![0u8; 16 * 1024];
    read_at_once(
        Path::new(&format!("/proc/{me}/task/{me}/children")),
        &mut buffer,
    )
    .split(u8::is_ascii_whitespace)
    .filter_map(|word| std::str::from_utf8(word).ok()?.parse().ok())
    .collect()
}

/// Whether `pid`'s environment (as it was at its exec) has `name` with `word` among
/// its space-separated words.
pub fn env_has_word(pid: i32, name: &str, word: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .find_map(|entry| entry.strip_prefix(prefix.as_bytes()))
        .is_some_and(|value| value.split(|b| *b == b' ').any(|w| w == word.as_bytes()))
}

/// Every process below `root` but `skip` and theirs, or `None` if the kernel has no
/// `children` files.
fn family(root: i32, skip: &[i32]) -> Option<Vec<Proc>> {
    if !Path::new(&format!("/proc/{root}/task/{root}/children")).exists() {
        return None;
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let mut found = Vec::new();
    let mut seen = HashSet::from([root]);
    // A process whose parent exits while the walk is under way is not in the list of
    // that parent when it is read, but is then in `root`'s (every orphan below a
    // subreaper becomes its child): so walk again from `root` until nobody new turns
    // up. The bound only matters for a tree that forks without end.
    for _ in 0..8 {
        let before = found.len();
        let mut parents = vec![root];
        while let Some(parent) = parents.pop() {
            for pid in children(parent, &mut buffer) {
                if !skip.contains(&pid)
                    && seen.insert(pid)
                    && let Some(proc) = read_stat(pid)
                {
                    parents.push(pid);
                    found.push(proc);
                }
            }
        }
        if found.len() == before {
            break;
        }
    }
    Some(found)
}

/// The children of `pid`: each of its threads has its own list, of those it forked.
fn children(pid: i32, buffer: &mut [u8]) -> Vec<i32> {
    let Ok(threads) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut pids = Vec::new();
    for thread in threads.flatten() {
        let list = read_at_once(&thread.path().join("children"), buffer);
        pids.extend(
            list.split(u8::is_ascii_whitespace)
                .filter_map(|word| std::str::from_utf8(word).ok()?.parse::<i32>().ok()),
        );
    }
    pids
}

/// A /proc list, in one `read` when it fits `buffer`: the kernel resumes a list read in
/// pieces by position, so a sibling exiting between two pieces would hide the next one.
fn read_at_once<'a>(path: &Path, buffer: &'a mut [u8]) -> &'a [u8] {
    let Ok(mut file) = fs::File::open(path) else {
        return &[];
    };
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    &buffer[..filled]
}

/// Every process saferun can see.
fn all() -> Vec<Proc> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .collect()
}

/// One process with its command line, if it still exists.
pub fn read(pid: i32) -> Option<Proc> {
    if !ours() {
        return None;
    }
    let mut proc = read_stat(pid)?;
    if let Some(command) = command_line(pid) {
        proc.command = command;
    }
    Some(proc)
}

/// When a process started, in clock ticks since boot.
pub fn started(pid: i32) -> Option<u64> {
    if !ours() {
        return None;
    }
    read_stat(pid).map(|p| p.started)
}

fn read_stat(pid: i32) -> Option<Proc> {
    parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) S ppid pgrp …`: the command name may hold spaces and parentheses, so it
/// runs to the last `)`.
fn parse_stat(pid: i32, stat: &str) -> Option<Proc> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    let mut rest = stat.get(close + 1..)?.split_ascii_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    let pgid = rest.next()?.parse().ok()?;
    // starttime: the 22nd field, the 17th after the group.
    let started = rest.nth(16).and_then(|t| t.parse().ok()).unwrap_or(0);
    Some(Proc {
        pid,
        ppid,
        pgid,
        state,
        command: format!("[{comm}]"),
        started,
    })
}

fn command_line(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    (!words.is_empty()).then(|| shorten(&words.join(" "), 200))
}

fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max).collect();
    format!("{cut}…")
}

/// A process with its depth below the root, for printing a tree.
#[derive(Debug, Clone)]
pub struct TreeEntry {
    pub depth: usize,
    pub proc: Proc,
}

/// Every descendant of `root` (not `root` itself), parents before children, plus any
/// member of `group` that is not one (it cannot be, under a subreaper, but be sure).
pub fn descendants(root: i32, group: Option<i32>, table: &[Proc]) -> Vec<TreeEntry> {
    tree(root, group, table)
        .into_iter()
        .map(|entry| TreeEntry {
            depth: entry.depth,
            proc: with_command(entry.proc),
        })
        .collect()
}

/// The same processes as [`descendants`], without reading their command lines (each
/// keeps its short `[comm]`): for deciding, not for showing. See [`with_command`].
pub fn below(root: i32, group: Option<i32>, table: &[Proc]) -> Vec<Proc> {
    tree(root, group, table)
        .into_iter()
        .map(|e| e.proc)
        .collect()
}

/// `proc` with its full command line, if it can still be read.
pub fn with_command(mut proc: Proc) -> Proc {
    if let Some(command) = command_line(proc.pid) {
        proc.command = command;
    }
    proc
}

fn tree(root: i32, group: Option<i32>, table: &[Proc]) -> Vec<TreeEntry> {
    let mut ordered = Vec::new();
    visit(root, 0, table, &mut ordered);
    if let Some(group) = group {
        for proc in table.iter().filter(|p| p.pgid == group && p.pid != root) {
            if !ordered.iter().any(|e| e.proc.pid == proc.pid) {
                ordered.push(TreeEntry {
                    depth: 0,
                    proc: proc.clone(),
                });
            }
        }
    }
    ordered
}

fn visit(parent: i32, depth: usize, table: &[Proc], out: &mut Vec<TreeEntry>) {
    let mut children: Vec<&Proc> = table.iter().filter(|p| p.ppid == parent).collect();
    children.sort_by_key(|p| p.pid);
    for child in children {
        if out.iter().any(|e| e.proc.pid == child.pid) {
            continue;
        }
        out.push(TreeEntry {
            depth,
            proc: child.clone(),
        });
        visit(child.pid, depth + 1, table, out);
    }
}

/// What a process is doing, in words: "blocked writing a full pipe", "sleeping", …
pub fn blocked_on(proc: &Proc) -> String {
    let wchan = fs::read_to_string(format!("/proc/{}/wchan", proc.pid))
        .unwrap_or_default()
        .trim()
        .to_string();
    let syscall = fs::read_to_string(format!("/proc/{}/syscall", proc.pid)).unwrap_or_default();
    let target = syscall_fd_target(proc.pid, &syscall);
    let what = describe_state(proc.state, &wchan, syscall_number(&syscall));
    match target {
        Some(target) => format!("{what} (fd {target})"),
        None => what,
    }
}

fn describe_state(state: char, wchan: &str, syscall: Option<i64>) -> String {
    match state {
        'R' => return "running".into(),
        'T' => return "stopped".into(),
        't' => return "stopped by a debugger".into(),
        'Z' => return "exited, not yet reaped (zombie)".into(),
        'D' if wchan.is_empty() || wchan == "0" => {
            return "in uninterruptible I/O".into();
        }
        'D' => return format!("in uninterruptible I/O ({wchan})"),
        _ => {}
    }
    let known = [
        ("pipe_write", "blocked writing a full pipe"),
        ("pipe_read", "waiting to read a pipe"),
        ("do_wait", "waiting on a child"),
        ("kernel_wait", "waiting on a child"),
        ("nanosleep", "sleeping"),
        ("do_sys_poll", "waiting in poll"),
        ("do_select", "waiting in select"),
        ("ep_poll", "waiting in epoll"),
        ("futex", "waiting on a lock (futex)"),
        ("n_tty_read", "waiting to read a terminal"),
        ("tty_write", "blocked writing a terminal"),
        ("unix_stream", "waiting on a socket"),
        ("sk_wait", "waiting on a socket"),
        ("inet_csk_accept", "waiting to accept a connection"),
        ("sigsuspend", "waiting for a signal"),
        ("do_sigtimedwait", "waiting for a signal"),
        ("pause", "waiting for a signal"),
    ];
    if let Some((_, words)) = known.iter().find(|(needle, _)| wchan.contains(needle)) {
        return (*words).to_string();
    }
    if let Some(words) = syscall.and_then(syscall_words) {
        return words.to_string();
    }
    if wchan.is_empty() || wchan == "0" {
        "sleeping".into()
    } else {
        format!("sleeping in {wchan}")
    }
}

fn syscall_number(syscall: &str) -> Option<i64> {
    syscall.split_ascii_whitespace().next()?.parse().ok()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn syscall_words(number: i64) -> Option<&'static str> {
    let table: &[(i64, &str)] = &[
        (libc::SYS_read, "waiting in read()"),
        (libc::SYS_write, "blocked in write()"),
        (libc::SYS_wait4, "waiting on a child"),
        (libc::SYS_waitid, "waiting on a child"),
        (libc::SYS_nanosleep, "sleeping"),
        (libc::SYS_clock_nanosleep, "sleeping"),
        (libc::SYS_futex, "waiting on a lock (futex)"),
        (libc::SYS_ppoll, "waiting in poll"),
        (libc::SYS_pselect6, "waiting in select"),
        (libc::SYS_epoll_pwait, "waiting in epoll"),
        (libc::SYS_accept4, "waiting to accept a connection"),
        (libc::SYS_recvfrom, "waiting on a socket"),
        (libc::SYS_connect, "waiting to connect"),
        (libc::SYS_flock, "waiting for a file lock"),
    ];
    table.iter().find(|(n, _)| *n == number).map(|(_, w)| *w)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn syscall_words(_number: i64) -> Option<&'static str> {
    None
}

/// For a process blocked in read/write, the descriptor and what it points at:
/// `1 → pipe:[1234]`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn syscall_fd_target(pid: i32, syscall: &str) -> Option<String> {
    let mut fields = syscall.split_ascii_whitespace();
    let number: i64 = fields.next()?.parse().ok()?;
    if number != libc::SYS_read && number != libc::SYS_write {
        return None;
    }
    let fd = i64::from_str_radix(fields.next()?.trim_start_matches("0x"), 16).ok()?;
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    Some(format!("{fd} → {}", target.display()))
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn syscall_fd_target(_pid: i32, _syscall: &str) -> Option<String> {
    None
}

/// Processes (other than saferun) holding the write end of the pipe with this inode.
pub fn pipe_writers(wanted: &str) -> Vec<Proc> {
    if !ours() {
        return Vec::new();
    }
    let me = std::process::id() as i32;
    let mut holders = Vec::new();
    for proc in all() {
        if proc.pid == me {
            continue;
        }
        let dir = format!("/proc/{}/fd", proc.pid);
        let Ok(fds) = fs::read_dir(&dir) else {
            continue;
        };
        let holds = fds.filter_map(|e| e.ok()).any(|entry| {
            fs::read_link(entry.path()).is_ok_and(|t| t.as_os_str() == wanted)
                && opened_for_writing(proc.pid, &entry.file_name().to_string_lossy())
        });
        if holds && let Some(holder) = read(proc.pid) {
            holders.push(holder);
        }
    }
    holders
}

fn opened_for_writing(pid: i32, fd: &str) -> bool {
    let info = fs::read_to_string(Path::new(&format!("/proc/{pid}/fdinfo/{fd}")));
    let Ok(info) = info else {
        return true;
    };
    info.lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_none_or(|flags| flags & 0o3 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn table_holds_children_and_grandchildren_with_their_parents() {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new("sh")
            .args(["-c", "sleep 30 & echo $!; wait"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let grandchild: i32 = line.trim().parse().unwrap();
        let me = std::process::id() as i32;
        let shell = child.id() as i32;
        let table = table(me, true, &[]);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(grandchild),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
        let parent_of = |pid: i32| table.iter().find(|p| p.pid == pid).map(|p| p.ppid);
        assert_eq!(parent_of(shell), Some(me), "{table:?}");
        assert_eq!(parent_of(grandchild), Some(shell), "{table:?}");
    }

    #[test]
    fn stat_with_odd_command_name() {
        let odd = parse_stat(42, "42 (a (b) c) S 7 42 1 0 -1").unwrap();
        assert_eq!(
            (odd.command.as_str(), odd.state, odd.ppid, odd.pgid),
            ("[a (b) c]", 'S', 7, 42)
        );
        let full = "42 (x) S 7 42 1 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 12345 0";
        assert_eq!(parse_stat(42, full).unwrap().started, 12345);
    }

    #[test]
    fn states_in_words() {
        assert_eq!(
            describe_state('S', "anon_pipe_write", None),
            "blocked writing a full pipe"
        );
        assert_eq!(
            describe_state('S', "pipe_write", None),
            "blocked writing a full pipe"
        );
        assert_eq!(describe_state('S', "hrtimer_nanosleep", None), "sleeping");
        assert_eq!(describe_state('S', "do_wait", None), "waiting on a child");
        assert_eq!(describe_state('D', "0", None), "in uninterruptible I/O");
        assert_eq!(describe_state('R', "", None), "running");
        #[cfg(target_os = "linux")]
        assert_eq!(
            describe_state('S', "0", Some(libc::SYS_wait4)),
            "waiting on a child"
        );
    }

    #[test]
    fn tree_orders_parents_first() {
        let p = |pid, ppid| Proc {
            pid,
            ppid,
            pgid: 10,
            state: 'S',
            command: format!("p{pid}"),
            started: 0,
        };
        let table = vec![p(12, 11), p(11, 10), p(10, 1), p(13, 10), p(99, 1)];
        let tree = tree(1, None, &table);
        let shape: Vec<(i32, usize)> = tree.iter().map(|e| (e.proc.pid, e.depth)).collect();
        assert_eq!(shape, vec![(10, 0), (11, 1), (12, 2), (13, 1), (99, 0)]);
    }
}
