//! Starts the command: direct exec with PATH lookup (never a shell), a process group of
//! its own, the terminal handed over when the host holds it, and a clean signal state.
//!
//! On Linux the child is made with `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn`
//! does: it borrows saferun's memory until its `exec`, so nothing is copied and nothing
//! is faulted back in afterwards (a `fork` costs saferun a tenth of its start-up). Unlike
//! `posix_spawn`, it can also arm the parent-death signal before the `exec`.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// The command's three standard streams as saferun wires them; `None` leaves that
/// stream closed in the command.
pub(crate) struct Wiring {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What to set up in the child between fork and exec.
pub(crate) struct Setup {
    /// Give the command a process group of its own.
    pub own_group: bool,
    /// Make it a session leader, with its stdout (a pseudo-terminal) as its controlling
    /// terminal (its group is then its session's: the same id, signalled the same way).
    pub controlling_terminal: bool,
    /// The open-file soft limit to give back to the command (the process raised its
    /// own).
    pub nofile_soft: Option<u64>,
    /// Make that group the terminal's foreground group (the host holds the terminal).
    pub terminal: Option<OwnedFd>,
    /// Signals the process ignores for itself that the command starts with at their
    /// default.
    pub to_default: Vec<Signal>,
    /// The command's whole environment.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory, if not the process's.
    pub cwd: Option<std::path::PathBuf>,
    /// saferun's caller ignored SIGPIPE: so does the command (otherwise it starts at
    /// the default, whatever saferun does with it for itself).
    pub sigpipe_ignored: bool,
}

/// Why the command could not be started.
#[derive(Debug)]
pub(crate) enum SpawnError {
    /// Nothing of that name was found (127).
    NotFound(String),
    /// It was found but cannot be executed (126).
    NotExecutable(String),
    /// saferun could not start it: resources, the working directory (125).
    Failed(String),
}

impl From<io::Error> for SpawnError {
    fn from(error: io::Error) -> SpawnError {
        SpawnError::Failed(format!(
            "cannot install signal handlers: {}",
            crate::files::describe(&error)
        ))
    }
}

/// Starts `argv` and returns its pid.
pub(crate) fn spawn(argv: &[OsString], wiring: Wiring, setup: Setup) -> Result<Pid, SpawnError> {
    let Some(program) = argv.first() else {
        return Err(SpawnError::Failed("missing command".into()));
    };
    let cwd = setup.cwd.clone();
    let path = path_of(&setup.env);
    start(argv, wiring, setup).map_err(|failure| match failure {
        Failure::Directory(error) => SpawnError::Failed(format!(
            "cannot change to directory '{}': {}",
            cwd.unwrap_or_default().display(),
            crate::files::describe(&error)
        )),
        Failure::Exec(error) => spawn_error(program, path.as_ref(), &error),
    })
}

/// What failed in the child.
#[derive(Debug)]
enum Failure {
    Directory(io::Error),
    Exec(io::Error),
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Failure {
        Failure::Exec(error)
    }
}

/// The `PATH` the command is looked up with: its own, as `execvp` would use it.
fn path_of(env: &[(OsString, OsString)]) -> Option<OsString> {
    env.iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.clone())
}

/// The signals this process has a handler for: the child resets them to the default
/// before anything can run in it (it shares this process's memory until its exec).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn caught_signals() -> Vec<i32> {
    let last = libc::SIGRTMAX();
    (1..=last)
        .filter(|&signal| {
            let mut current = std::mem::MaybeUninit::<libc::sigaction>::zeroed();
            // SAFETY: a null new action makes sigaction a pure query; `current` is
            // valid, zero-initialised storage for the kernel to fill.
            let queried =
                unsafe { libc::sigaction(signal, std::ptr::null(), current.as_mut_ptr()) } == 0;
            // SAFETY: zeroed is a valid sigaction, and the kernel filled it on success.
            let handler = unsafe { current.assume_init() }.sa_sigaction;
            queried && handler != libc::SIG_DFL && handler != libc::SIG_IGN
        })
        .collect()
}

/// GNU `timeout`'s rule: "not found" is 127, every other exec failure 126. The message
/// says what actually failed: a file that exists but whose `#!` interpreter does not, or
/// a directory, is not "command not found".
fn spawn_error(program: &OsString, path: Option<&OsString>, error: &io::Error) -> SpawnError {
    let shown = program.to_string_lossy();
    let reason = error
        .raw_os_error()
        .map(|code| Errno::from_raw(code).desc().to_string())
        .unwrap_or_else(|| error.to_string());
    let cannot_execute =
        |why: String| SpawnError::NotExecutable(format!("cannot execute {shown}: {why}"));
    let found = locate(program, path);
    match error.raw_os_error().map(Errno::from_raw) {
        Some(Errno::ENOENT) => match found.filter(|path| path.is_file()) {
            Some(path) => cannot_execute(match interpreter(&path) {
                Some(interpreter) if interpreter.ends_with('\r') => format!(
                    "its #! line ends with a carriage return (Windows line endings?), so its \
                     interpreter '{}' was not found",
                    interpreter.escape_debug()
                ),
                Some(interpreter) => {
                    format!("its interpreter '{interpreter}' (from its #! line) was not found")
                }
                None => "a program it needs to start (its dynamic loader?) was not found".into(),
            }),
            None => SpawnError::NotFound(format!("{shown}: command not found")),
        },
        Some(Errno::EAGAIN | Errno::ENOMEM | Errno::EMFILE | Errno::ENFILE) => {
            SpawnError::Failed(format!("cannot start {shown}: {reason}"))
        }
        _ if found.is_some_and(|path| path.is_dir()) => cannot_execute("it is a directory".into()),
        _ => cannot_execute(reason),
    }
}

/// The file `execvp` would have tried first for `program`: the path itself when it has a
/// `/`, else the first entry of `path` (the `PATH` it is looked up with) where something
/// of that name exists.
fn locate(program: &OsString, path: Option<&OsString>) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::path::{Path, PathBuf};
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return path.exists().then_some(path);
    }
    let search = path.cloned().unwrap_or_else(|| "/bin:/usr/bin".into());
    std::env::split_paths(&search)
        .map(|dir| {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".").to_path_buf()
            } else {
                dir
            };
            dir.join(program)
        })
        .find(|candidate| candidate.exists())
}

/// The interpreter named on a script's `#!` line.
fn interpreter(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|b| *b == b'\n').next()?;
    // The kernel splits the line at spaces and tabs only: a carriage return stays part
    // of the name.
    let line = String::from_utf8_lossy(line);
    let word = line
        .trim_start_matches([' ', '\t'])
        .split([' ', '\t'])
        .next()?;
    (!word.is_empty()).then(|| word.to_string())
}

#[cfg(target_os = "linux")]
fn start(argv: &[OsString], wiring: Wiring, setup: Setup) -> Result<Pid, Failure> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::sync::atomic::{AtomicI32, Ordering};

    use nix::sched::{CloneFlags, clone};
    use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

    let c_string =
        |bytes: &[u8]| CString::new(bytes).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL));
    // Everything the child needs is made here: between clone and exec it shares
    // saferun's memory and may not allocate.
    let args = argv
        .iter()
        .map(|arg| c_string(arg.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let env = setup
        .env
        .iter()
        .map(|(name, value)| c_string(&[name.as_bytes(), b"=", value.as_bytes()].concat()))
        .collect::<io::Result<Vec<_>>>()?;
    let cwd = setup
        .cwd
        .as_ref()
        .map(|dir| c_string(dir.as_os_str().as_bytes()))
        .transpose()?;
    let search_path = path_of(&setup.env);
    // execvpe looks the program up along this process's PATH: when the command's is
    // another, the program is found here, along the command's.
    let program = if search_path != std::env::var_os("PATH") {
        locate(&argv[0], search_path.as_ref())
            .map(|path| c_string(path.as_os_str().as_bytes()))
            .transpose()?
    } else {
        None
    };
    let program = program.as_ref().unwrap_or(&args[0]);
    let arg_ptrs = null_terminated(&args);
    let env_ptrs = null_terminated(&env);
    // glibc's execvpe runs a file without `#!` through /bin/sh, as POSIX asks of
    // execvp; other C libraries (musl) do not, so saferun does: the file is found here,
    // and the child falls back to /bin/sh on ENOEXEC.
    let through_sh = if cfg!(target_env = "gnu") {
        Vec::new()
    } else {
        match locate(&argv[0], search_path.as_ref()) {
            Some(path) => std::iter::once(c_string(b"/bin/sh")?)
                .chain(std::iter::once(c_string(path.as_os_str().as_bytes())?))
                .chain(args[1..].iter().cloned())
                .collect(),
            None => Vec::new(),
        }
    };
    let sh_ptrs = null_terminated(&through_sh);
    let raw = |fd: &Option<OwnedFd>| fd.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let fds = [
        (raw(&wiring.stdin), 0),
        (raw(&wiring.stdout), 1),
        (raw(&wiring.stderr), 2),
    ];
    let terminal = setup.terminal.as_ref().map(AsRawFd::as_raw_fd);
    let to_default = setup.to_default;
    let own_group = setup.own_group;
    let controlling_terminal = setup.controlling_terminal;
    let nofile = setup.nofile_soft.map(|soft| {
        // SAFETY: getrlimit fills the struct it is given.
        let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        limit.rlim_cur = soft as libc::rlim_t;
        limit
    });
    let sigpipe_ignored = setup.sigpipe_ignored;
    let caught = caught_signals();
    let parent = Pid::this();
    let failed_with = AtomicI32::new(0);
    let failure = &failed_with;
    let failed_in_chdir = AtomicI32::new(0);
    let chdir_failed = &failed_in_chdir;
    // glibc's execvpe needs a PATH-sized buffer, and a copy of argv for a script without
    // `#!`; the rest is a few frames.
    let mut stack = vec![0u8; 64 * 1024 + 2 * size_of_val(arg_ptrs.as_slice())];

    let child = move || -> isize {
        // SAFETY: only async-signal-safe system calls on values prepared above; nothing
        // allocates, locks or unwinds. On failure the errno goes to `failure` (shared
        // memory) and the child leaves with _exit, which runs nothing of saferun's.
        unsafe {
            for (fd, target) in fds {
                if fd < 0 {
                    continue;
                }
                let wired = if fd == target {
                    libc::fcntl(fd, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, target)
                };
                if wired < 0 {
                    failure.store(Errno::last_raw(), Ordering::SeqCst);
                    libc::_exit(127);
                }
            }
            for (fd, target) in fds {
                if fd < 0 {
                    libc::close(target);
                }
            }
            if let Some(limit) = &nofile {
                libc::setrlimit(libc::RLIMIT_NOFILE, limit);
            }
            if controlling_terminal {
                libc::setsid();
                // TIOCSCTTY's type differs between C libraries.
                #[allow(clippy::useless_conversion)]
                libc::ioctl(1, libc::TIOCSCTTY.into(), 0);
            } else if own_group {
                libc::setpgid(0, 0);
            }
            if let Some(tty) = terminal {
                libc::tcsetpgrp(tty, libc::getpgrp());
            }
            for &signal in &to_default {
                libc::signal(signal as i32, libc::SIG_DFL);
            }
            // No handler of this process may run here (this memory is the process's),
            // and the command starts with SIGPIPE as saferun's caller had it.
            for &signal in &caught {
                libc::signal(signal, libc::SIG_DFL);
            }
            if !sigpipe_ignored {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
            // If saferun is killed with KILL, the command gets KILL too.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != parent.as_raw() {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            if let Some(dir) = &cwd
                && libc::chdir(dir.as_ptr()) != 0
            {
                chdir_failed.store(1, Ordering::SeqCst);
                failure.store(Errno::last_raw(), Ordering::SeqCst);
                libc::_exit(127);
            }
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::execvpe(program.as_ptr(), arg_ptrs.as_ptr(), env_ptrs.as_ptr());
            if Errno::last_raw() == libc::ENOEXEC && !through_sh.is_empty() {
                libc::execve(through_sh[0].as_ptr(), sh_ptrs.as_ptr(), env_ptrs.as_ptr());
            }
            failure.store(Errno::last_raw(), Ordering::SeqCst);
            libc::_exit(127)
        }
    };

    // Every signal stays blocked in saferun until the child has exec'd: a handler must
    // not run in the child while it uses saferun's memory. The child resets its own
    // dispositions before it unblocks.
    let mut saved = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut saved),
    )
    .map_err(io::Error::from)?;
    // SAFETY: CLONE_VFORK suspends this thread until the child has exec'd or exited, so
    // the borrowed stack and values outlive the child's use of them, and the child only
    // does what the closure above allows.
    let spawned = unsafe {
        clone(
            Box::new(child),
            &mut stack,
            CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK,
            Some(Signal::SIGCHLD as i32),
        )
    };
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&saved), None).map_err(io::Error::from)?;
    let pid = spawned.map_err(io::Error::from)?;
    match failed_with.load(Ordering::SeqCst) {
        0 => Ok(pid),
        errno => {
            let _ = nix::sys::wait::waitpid(pid, None);
            let error = io::Error::from_raw_os_error(errno);
            Err(if failed_in_chdir.load(Ordering::SeqCst) != 0 {
                Failure::Directory(error)
            } else {
                Failure::Exec(error)
            })
        }
    }
}

#[cfg(target_os = "linux")]
fn null_terminated(strings: &[std::ffi::CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Elsewhere: std's fork and exec, with the same set-up in its pre-exec hook.
#[cfg(not(target_os = "linux"))]
fn start(argv: &[OsString], wiring: Wiring, setup: Setup) -> Result<Pid, Failure> {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use nix::sys::signal::SigHandler;

    use std::process::Stdio;
    let wire = |fd: Option<OwnedFd>| fd.map_or_else(Stdio::null, Stdio::from);
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(wire(wiring.stdin))
        .stdout(wire(wiring.stdout))
        .stderr(wire(wiring.stderr))
        .env_clear()
        .envs(setup.env);
    if let Some(dir) = &setup.cwd {
        if let Err(error) = std::fs::metadata(dir) {
            return Err(Failure::Directory(error));
        }
        command.current_dir(dir);
    }
    if setup.own_group && !setup.controlling_terminal {
        command.process_group(0);
    }
    let controlling_terminal = setup.controlling_terminal;
    let nofile_soft = setup.nofile_soft;
    let terminal = setup.terminal;
    let to_default = setup.to_default;
    let pipe = if setup.sigpipe_ignored {
        SigHandler::SigIgn
    } else {
        SigHandler::SigDfl
    };
    // SAFETY: the hook runs in the forked child before exec and only makes
    // async-signal-safe system calls (tcsetpgrp, sigaction); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if let Some(soft) = nofile_soft {
                use nix::sys::resource::{Resource, getrlimit, setrlimit};
                let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
                setrlimit(Resource::RLIMIT_NOFILE, soft, hard)?;
            }
            if controlling_terminal {
                nix::unistd::setsid()?;
                #[allow(clippy::useless_conversion)]
                if libc::ioctl(1, libc::TIOCSCTTY.into(), 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            if let Some(tty) = &terminal {
                let _ = nix::unistd::tcsetpgrp(tty, nix::unistd::getpgrp());
            }
            for &signal in &to_default {
                let _ = nix::sys::signal::signal(signal, SigHandler::SigDfl);
            }
            let _ = nix::sys::signal::signal(nix::sys::signal::Signal::SIGPIPE, pipe);
            Ok(())
        });
    }
    let child = command.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}
