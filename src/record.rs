//! What happened in a run, filled in as it goes: the facts the report, the outcome
//! and saferun's notices are made from.

use std::time::{Duration, SystemTime};

use crate::event::{ChildEnd, Stream};
use crate::policy::Reason;

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
    pub why: Why,
}

/// Why a signal went out (the report's `why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The first signal of a stop, for this reason.
    Stop(Reason),
    /// saferun received it and passed it on.
    Forwarded,
    /// KILL after the grace.
    Escalation,
    /// Ctrl-Z and `fg`: the command continued with saferun.
    JobControl,
    /// What the command left, under `--kill-leftovers`.
    Leftovers,
}

impl Why {
    pub fn word(self) -> &'static str {
        match self {
            Why::Stop(reason) => reason.word(),
            Why::Forwarded => "forwarded",
            Why::Escalation => "escalation",
            Why::JobControl => "job-control",
            Why::Leftovers => "leftovers",
        }
    }
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
#[derive(Debug, Default, Clone)]
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
    fn human_durations() {
        assert_eq!(human(Duration::from_secs(90)), "1m 30s");
        assert_eq!(human(Duration::from_millis(200)), "200ms");
        assert_eq!(human(Duration::from_nanos(1)), "1ns");
    }
}
