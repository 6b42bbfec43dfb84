//! Helpers for the integration tests: run the real binary under a watchdog, feed and
//! collect its streams on threads (so the test itself can never deadlock), and print
//! everything when an assertion fails.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_saferun");

/// A saferun invocation being built.
pub struct Run {
    command: Command,
    argv: Vec<String>,
    stdin: Input,
    watchdog: Duration,
}

enum Input {
    Null,
    Bytes(Vec<u8>),
    File(PathBuf),
}

/// What a finished run produced.
pub struct Output {
    pub argv: Vec<String>,
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

/// `saferun ARGS…`, with stdin from /dev/null and a 60 s watchdog.
pub fn saferun<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = Command::new(BIN);
    let mut argv = vec!["saferun".to_string()];
    for arg in args {
        argv.push(arg.as_ref().to_string_lossy().into_owned());
        command.arg(arg);
    }
    // Whatever CI runs the tests, saferun must not print its markers unless told to.
    for name in [
        "SAFERUN_DEADLINE",
        "GITHUB_ACTIONS",
        "GITLAB_CI",
        "GITHUB_STEP_SUMMARY",
    ] {
        command.env_remove(name);
    }
    Run {
        command,
        argv,
        stdin: Input::Null,
        watchdog: Duration::from_secs(60),
    }
}

impl Run {
    pub fn stdin_bytes(mut self, bytes: Vec<u8>) -> Run {
        self.stdin = Input::Bytes(bytes);
        self
    }

    pub fn stdin_file(mut self, path: &Path) -> Run {
        self.stdin = Input::File(path.to_path_buf());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Run {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: &str) -> Run {
        self.command.env_remove(key);
        self
    }

    pub fn watchdog(mut self, limit: Duration) -> Run {
        self.watchdog = limit;
        self
    }

    /// Starts saferun and returns its pid and a handle to wait for it.
    pub fn start(mut self) -> Running {
        self.command
            .stdin(match &self.stdin {
                Input::Null => Stdio::null(),
                Input::Bytes(_) => Stdio::piped(),
                Input::File(path) => Stdio::from(fs::File::open(path).expect("stdin file")),
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = self.command.spawn().expect("start saferun");
        let pid = child.id() as i32;
        if let (Input::Bytes(bytes), Some(mut stdin)) = (self.stdin, child.stdin.take()) {
            thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let stdout = collect(child.stdout.take().expect("stdout"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        let (done_tx, done_rx) = mpsc::channel();
        thread::spawn(move || {
            let status = child.wait().expect("wait");
            let _ = done_tx.send(status);
        });
        Running {
            pid,
            argv: self.argv,
            started,
            watchdog: self.watchdog,
            done: done_rx,
            stdout,
            stderr,
        }
    }

    pub fn run(self) -> Output {
        self.start().wait()
    }
}

fn collect(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// A saferun still running.
pub struct Running {
    pub pid: i32,
    argv: Vec<String>,
    started: Instant,
    watchdog: Duration,
    done: mpsc::Receiver<ExitStatus>,
    stdout: thread::JoinHandle<Vec<u8>>,
    stderr: thread::JoinHandle<Vec<u8>>,
}

impl Running {
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) with a pid we started; no memory is involved.
        unsafe {
            libc::kill(self.pid, signal);
        }
    }

    /// Waits for saferun to end; past the watchdog it is killed and the test fails.
    pub fn wait(self) -> Output {
        let status = match self.done.recv_timeout(self.watchdog) {
            Ok(status) => status,
            Err(_) => {
                // SAFETY: as above.
                unsafe {
                    libc::kill(self.pid, libc::SIGKILL);
                }
                let _ = self.done.recv_timeout(Duration::from_secs(5));
                let stderr = self.stderr.join().unwrap_or_default();
                panic!(
                    "watchdog: {:?} still running after {:?}\nstderr:\n{}",
                    self.argv,
                    self.watchdog,
                    String::from_utf8_lossy(&stderr)
                );
            }
        };
        let elapsed = self.started.elapsed();
        Output {
            argv: self.argv,
            status,
            stdout: self.stdout.join().unwrap_or_default(),
            stderr: self.stderr.join().unwrap_or_default(),
            elapsed,
        }
    }
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Output {
        assert_eq!(self.code(), Some(code), "unexpected exit status\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_signal(&self, signal: i32) -> &Output {
        assert_eq!(
            self.status.signal(),
            Some(signal),
            "expected death by signal {signal}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_stdout(&self, expected: &str) -> &Output {
        assert_eq!(self.stdout_text(), expected, "stdout differs\n{self}");
        self
    }

    #[track_caller]
    pub fn assert_stderr_contains(&self, needle: &str) -> &Output {
        assert!(
            self.stderr_text().contains(needle),
            "stderr lacks {needle:?}\n{self}"
        );
        self
    }

    #[track_caller]
    pub fn assert_faster_than(&self, limit: Duration) -> &Output {
        assert!(
            self.elapsed < limit,
            "took {:?}, expected under {limit:?}\n{self}",
            self.elapsed
        );
        self
    }

    /// The lines saferun itself wrote on stderr.
    pub fn saferun_lines(&self) -> Vec<String> {
        self.stderr_text()
            .lines()
            .filter(|l| l.starts_with("saferun:"))
            .map(str::to_string)
            .collect()
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clip = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(4000)]).into_owned();
            if bytes.len() > 4000 {
                format!("{text}… ({} bytes)", bytes.len())
            } else {
                text
            }
        };
        writeln!(f, "argv: {:?}", self.argv)?;
        writeln!(f, "status: {:?} after {:?}", self.status, self.elapsed)?;
        writeln!(f, "stdout:\n{}", clip(&self.stdout))?;
        write!(f, "stderr:\n{}", clip(&self.stderr))
    }
}

/// The `--timestamps` elapsed stamp of each line: when saferun saw it.
pub fn stamps(text: &str) -> Vec<f64> {
    text.lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

/// A fresh temporary directory, removed at the end of the test.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(str::to_string));
            state.as_deref() != Some("Z")
        }
        Err(_) => false,
    }
}

/// Whether `pid` exists at all, zombie or not.
pub fn exists(pid: i32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Waits until `pred` holds, for at most `limit`.
pub fn eventually(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    pred()
}

/// Waits for a process a test started itself (not through [`saferun`]), killing it
/// after `limit` so that a hang fails the test instead of stopping it; `None` then.
pub fn wait_bounded(
    mut child: std::process::Child,
    limit: Duration,
) -> Option<std::process::Output> {
    let ended = eventually(limit, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    ended.then_some(out)
}

/// The JSON a `--report PATH` run wrote.
pub fn read_report(path: &Path) -> serde_json::Value {
    let text = fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Reads pids written one per line into `path` by a test command.
pub fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so big-data tests need no fixtures.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Kills leftover test processes recorded in a pid file, so a failing test does not
/// leave sleepers behind.
pub fn cleanup(pids: &[i32]) {
    for pid in pids {
        // SAFETY: kill(2) on a pid the test's own command reported.
        unsafe {
            libc::kill(*pid, libc::SIGKILL);
        }
    }
}

/// Whether `program` is installed. Where every tool is required (`SAFERUN_REQUIRE_TOOLS`,
/// set by CI), a missing one fails the test instead of skipping it.
pub fn tool(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SAFERUN_REQUIRE_TOOLS").is_none(),
            "{program} is required here (SAFERUN_REQUIRE_TOOLS) but is not installed"
        );
        eprintln!("skipped: {program} is not installed");
    }
    found
}

/// Whether this process may make new PID namespaces (root, with `unshare`). Required
/// under `SAFERUN_REQUIRE_TOOLS`, as [`tool`].
pub fn can_unshare() -> bool {
    if !tool("unshare") {
        return false;
    }
    let works = Command::new("unshare")
        .args(["--pid", "--fork", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        assert!(
            std::env::var_os("SAFERUN_REQUIRE_TOOLS").is_none(),
            "unshare --pid is required here (SAFERUN_REQUIRE_TOOLS) but fails"
        );
        eprintln!("skipped: unshare --pid needs privileges this run lacks");
    }
    works
}
