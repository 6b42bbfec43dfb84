//! What saferun says about a run: one-line notices on stderr (`saferun: …`), the extra
//! lines of `--verbose`, and the JSON record of `--report`, all rendered from the
//! [`Record`] the run fills in.

use std::sync::{Arc, OnceLock};

use crossbeam_channel::Sender;
use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::event::{ChildEnd, Stream};
use crate::policy::Reason;
use crate::signal::describe;
use crate::sink::LineEnd;

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// What saferun itself writes to its own stdout and stderr: `saferun:` lines, the
/// `--verbose` tree, `--on-timeout` output, held `--quiet-unless-fail` output, a report
/// to stderr. All of it goes through one writer thread, started on first use, so that a
/// reader downstream that stops reading can never block the main thread (and with it the
/// clock); at the end [`Notices::flush`] waits for the writer only as long as allowed.
/// Each line is written with one `write`, so it is never torn by the command's own
/// stderr passing through at the same time.
#[derive(Clone)]
pub struct Notices {
    pub verbose: bool,
    writer: Arc<OnceLock<Sender<Job>>>,
    /// How the last line on saferun's stderr ended: a notice after a partial line starts
    /// with a newline.
    line_end: Arc<LineEnd>,
}

type Job = Box<dyn FnOnce() + Send>;

impl Notices {
    pub fn new(verbose: bool) -> Notices {
        Notices {
            verbose,
            writer: Arc::new(OnceLock::new()),
            line_end: Arc::new(LineEnd::default()),
        }
    }

    /// What a destination that shares saferun's stderr reports its last byte to.
    pub fn line_end(&self) -> Arc<LineEnd> {
        self.line_end.clone()
    }

    /// A line that is always printed.
    pub fn say(&self, message: &str) {
        let line = format!("saferun: {message}\n");
        self.raw(line.into_bytes());
    }

    /// A line printed only with `--verbose`.
    pub fn detail(&self, message: &str) {
        if self.verbose {
            self.say(message);
        }
    }

    /// Bytes for saferun's stderr, as they are, on a line of their own.
    pub fn raw(&self, mut bytes: Vec<u8>) {
        let line_end = self.line_end.clone();
        self.run(move || {
            if line_end.mid_line() {
                bytes.insert(0, b'\n');
            }
            if let Ok(mut stderr) = crate::output::own_stream(Stream::Stderr)
                && crate::sink::write_all_waiting(&mut stderr, &bytes).is_ok()
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
            .field("verbose", &self.verbose)
            .finish()
    }
}

/// A duration the way people write it: `2s`, `1m 30s`, `250ms`.
pub fn human(duration: Duration) -> String {
    let rounded = Duration::from_millis(duration.as_millis() as u64);
    if rounded.is_zero() {
        return match duration.as_micros() {
            0 => format!("{}ns", duration.as_nanos()),
            micros => format!("{micros}µs"),
        };
    }
    humantime::format_duration(rounded).to_string()
}

/// One signal saferun sent.
#[derive(Debug, Clone)]
pub struct SentSignal {
    pub signal: String,
    /// Seconds since the command started.
    pub at: f64,
    /// `group`, `process`, or `leftovers`.
    pub to: &'static str,
    /// Why: `timeout`, `idle`, `cap`, `cancelled`, `failed`, `forwarded`, `escalation`,
    /// `job-control`, `leftovers`.
    pub why: &'static str,
}

/// A process named in the report.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    pub pid: i32,
    pub command: String,
    pub state: Option<String>,
}

/// One line of the process tree recorded when a limit fired.
#[derive(Debug, Clone)]
pub struct TreeLine {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub depth: usize,
    pub state: String,
    pub blocked_on: String,
    pub command: String,
}

/// A pipe still held open when `--linger` ran out.
#[derive(Debug, Clone)]
pub struct PipeHolder {
    pub stream: &'static str,
    pub pid: i32,
    pub command: String,
}

/// What `--on-timeout` did.
#[derive(Debug, Clone)]
pub struct OnTimeoutRun {
    pub command: String,
    /// Its exit code, or null if it was killed or could not start.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// Its combined output (the first 64 KiB).
    pub output: String,
}

/// Per-stream figures.
#[derive(Debug, Clone, Default)]
pub struct StreamRecord {
    /// Bytes read from the command (or, for stdin, accepted by it).
    pub bytes: u64,
    /// Bytes dropped by `--max-output`.
    pub elided: u64,
    pub truncated: bool,
    pub end: StreamEnding,
}

/// How saferun stopped handling a stream (the report's `end`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StreamEnding {
    /// Not handled by saferun (an inherited stdin, stderr under `--merge`).
    #[default]
    None,
    /// Every writer closed it (for stdin: the input ended).
    Eof,
    /// saferun's own output was closed by its reader.
    ReaderGone,
    /// `--linger` ran out, or the run ended, while it was open.
    Stopped,
    WriteFailed,
    /// Still delivering when saferun had to end.
    Unfinished,
    /// saferun's own stream was closed when it started, so the command's is too.
    Closed,
}

impl StreamEnding {
    pub fn word(self) -> &'static str {
        match self {
            StreamEnding::None => "none",
            StreamEnding::Eof => "eof",
            StreamEnding::ReaderGone => "reader_gone",
            StreamEnding::Stopped => "stopped",
            StreamEnding::WriteFailed => "write_failed",
            StreamEnding::Unfinished => "unfinished",
            StreamEnding::Closed => "closed",
        }
    }
}

/// The command's resource usage (its whole reaped tree).
#[derive(Debug, Clone, Default)]
pub struct Rusage {
    pub user_cpu_seconds: f64,
    pub system_cpu_seconds: f64,
    pub max_rss_kib: i64,
}

/// Everything known about a run, filled in as it goes.
#[derive(Debug, Default)]
pub struct Record {
    pub argv: Vec<String>,
    pub pid: Option<i32>,
    pub pgid: Option<i32>,
    pub started_at: Option<SystemTime>,
    pub duration: Duration,
    pub child: Option<ChildEnd>,
    pub reason: Option<Reason>,
    pub capped_by_outer_deadline: bool,
    pub signals: Vec<SentSignal>,
    pub stdin: StreamRecord,
    pub stdout: StreamRecord,
    pub stderr: StreamRecord,
    pub diagnosis: Vec<TreeLine>,
    pub on_timeout: Option<OnTimeoutRun>,
    pub pipe_holders: Vec<PipeHolder>,
    pub leftovers: Vec<ProcessInfo>,
    /// Descendants that had left the process group and were signalled one by one.
    pub escaped: Vec<ProcessInfo>,
    pub leftovers_action: &'static str,
    pub unkillable: Vec<ProcessInfo>,
    pub rusage: Rusage,
    pub errors: Vec<String>,
}

impl Record {
    /// The record of a run of `config`, before anything happened.
    pub fn new(config: &crate::config::Config) -> Record {
        Record {
            argv: config
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            leftovers_action: match config.leftovers {
                crate::config::Leftovers::Warn => "warn",
                crate::config::Leftovers::Fail => "fail",
                crate::config::Leftovers::Kill => "kill",
            },
            ..Record::default()
        }
    }

    pub fn stream_mut(&mut self, stream: Stream) -> &mut StreamRecord {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }
}

/// `end_reason`: a stable word for how the run ended.
pub fn end_reason(record: &Record) -> &'static str {
    match (record.reason, record.child) {
        (Some(reason), _) => reason.word(),
        (None, Some(ChildEnd::Signaled { .. })) => "signaled",
        (None, Some(ChildEnd::Exited(_))) => "exited",
        (None, None) => "failed",
    }
}

/// Renders the JSON report (every field is described in docs/report.md).
/// `exit_status` is what the caller's shell will see.
pub fn to_json(record: &Record, exit_status: i32) -> String {
    let command = match record.child {
        Some(ChildEnd::Exited(code)) => {
            json!({"exit_code": code, "signal": null, "core_dumped": false})
        }
        Some(ChildEnd::Signaled {
            signal,
            core_dumped,
        }) => json!({"exit_code": null, "signal": describe(signal), "core_dumped": core_dumped}),
        None => json!({"exit_code": null, "signal": null, "core_dumped": false}),
    };
    let json = json!({
        "schema_version": SCHEMA_VERSION,
        "saferun_version": env!("CARGO_PKG_VERSION"),
        "argv": record.argv,
        "pid": record.pid,
        "pgid": record.pgid,
        "started_at": record
            .started_at
            .map(|t| humantime::format_rfc3339_millis(t).to_string()),
        "duration_seconds": round_us(record.duration.as_secs_f64()),
        "exit_status": exit_status,
        "end_reason": end_reason(record),
        "command": command,
        "capped_by_outer_deadline": record.capped_by_outer_deadline,
        "signals_sent": list(&record.signals, SentSignal::json),
        "rusage": record.rusage.json(),
        "saferun_max_rss_kib": own_max_rss(),
        "streams": {
            "stdin": record.stdin.json(),
            "stdout": record.stdout.json(),
            "stderr": record.stderr.json(),
        },
        "diagnosis": list(&record.diagnosis, TreeLine::json),
        "on_timeout": record.on_timeout.as_ref().map(OnTimeoutRun::json),
        "pipe_holders": list(&record.pipe_holders, PipeHolder::json),
        "leftovers": {
            "action": record.leftovers_action,
            "processes": list(&record.leftovers, ProcessInfo::json),
        },
        "escaped": list(&record.escaped, ProcessInfo::json),
        "unkillable": list(&record.unkillable, ProcessInfo::json),
        "errors": record.errors,
    });
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

fn list<T>(items: &[T], json: fn(&T) -> Value) -> Value {
    Value::Array(items.iter().map(json).collect())
}

impl SentSignal {
    fn json(&self) -> Value {
        json!({"signal": self.signal, "at": self.at, "to": self.to, "why": self.why})
    }
}

impl ProcessInfo {
    fn json(&self) -> Value {
        let mut json = json!({"pid": self.pid, "command": self.command});
        if let Some(state) = &self.state {
            json["state"] = json!(state);
        }
        json
    }
}

impl TreeLine {
    fn json(&self) -> Value {
        json!({
            "pid": self.pid,
            "ppid": self.ppid,
            "pgid": self.pgid,
            "depth": self.depth,
            "state": self.state,
            "blocked_on": self.blocked_on,
            "command": self.command,
        })
    }
}

impl PipeHolder {
    fn json(&self) -> Value {
        json!({"stream": self.stream, "pid": self.pid, "command": self.command})
    }
}

impl OnTimeoutRun {
    fn json(&self) -> Value {
        json!({
            "command": self.command,
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "output": self.output,
        })
    }
}

impl StreamRecord {
    fn json(&self) -> Value {
        json!({
            "bytes": self.bytes,
            "elided": self.elided,
            "truncated": self.truncated,
            "end": self.end.word(),
        })
    }
}

impl Rusage {
    fn json(&self) -> Value {
        json!({
            "user_cpu_seconds": self.user_cpu_seconds,
            "system_cpu_seconds": self.system_cpu_seconds,
            "max_rss_kib": self.max_rss_kib,
        })
    }
}

/// saferun's own peak memory, so that anyone can check it stays small. `VmHWM` where
/// /proc has it: `getrusage` also counts the image of whatever process forked saferun
/// before its exec (a Python caller's 14 MiB, say).
fn own_max_rss() -> i64 {
    let from_proc = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        });
    from_proc.unwrap_or_else(|| {
        nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
            .map(|u| u.max_rss())
            .unwrap_or(0)
    })
}

pub fn round_ms(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

pub fn round_us(seconds: f64) -> f64 {
    (seconds * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_the_documented_fields() {
        let record = Record {
            argv: vec!["sleep".into(), "10".into()],
            pid: Some(42),
            reason: Some(Reason::Timeout),
            child: Some(ChildEnd::Signaled {
                signal: 15,
                core_dumped: false,
            }),
            leftovers_action: "warn",
            ..Record::default()
        };
        let value: serde_json::Value = serde_json::from_str(&to_json(&record, 124)).unwrap();
        assert_eq!(value["schema_version"], 1);
        assert_eq!(value["end_reason"], "timeout");
        assert_eq!(value["exit_status"], 124);
        assert_eq!(value["command"]["signal"], "TERM");
        assert_eq!(value["argv"][1], "10");
        for field in [
            "signals_sent",
            "rusage",
            "streams",
            "leftovers",
            "diagnosis",
            "duration_seconds",
        ] {
            assert!(value.get(field).is_some(), "{field}");
        }
    }

    #[test]
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
    }
}
