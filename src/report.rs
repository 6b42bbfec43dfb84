//! The JSON report (`--report`), rendered from a run's [`Record`]. Every field is
//! described in docs/report.md.

use serde_json::{Value, json};

use crate::event::ChildEnd;
use crate::record::{
    OnTimeoutRun, PipeHolder, ProcessInfo, Record, Rusage, SentSignal, StreamRecord, TreeLine,
    round_us,
};
use crate::signal::describe;

/// Version of the JSON layout; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

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
        json!({"signal": self.signal, "at": self.at, "to": self.to, "why": self.why.word()})
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Reason;

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
}
