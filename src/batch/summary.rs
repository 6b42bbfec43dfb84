//! What a finished batch says: the summary on stderr, one line per job, and the JSON
//! report (docs/report.md).

use serde_json::{Map, Value, json};

use super::{BatchOutcome, JobEnd, JobOutcome, StopCause};
use crate::outcome::Ending;
use crate::signal::short_name;

/// The jobs counted by how they ended.
struct Totals {
    succeeded: usize,
    failed: usize,
    stopped: usize,
    not_started: usize,
}

fn totals(outcome: &BatchOutcome) -> Totals {
    let jobs = outcome.jobs();
    let count = |keep: &dyn Fn(&JobOutcome) -> bool| jobs.iter().filter(|job| keep(job)).count();
    // Stopped: by the batch or by a signal to the process, whatever its status then.
    let stopped = |job: &JobOutcome| {
        job.outcome().is_some_and(|o| {
            job.stopped_by().is_some()
                || matches!(
                    o.ending(),
                    Ending::Stopped { .. } | Ending::Cancelled { .. }
                )
        })
    };
    Totals {
        succeeded: count(&|job| job.outcome().is_some_and(|o| o.success()) && !stopped(job)),
        failed: count(&JobOutcome::failed),
        stopped: count(&stopped),
        not_started: count(&|job| matches!(job.end(), JobEnd::NotStarted)),
    }
}

/// The summary: a line of totals, then one per job (name, status, duration, how it
/// ended), each starting `saferun:`.
pub(super) fn lines(outcome: &BatchOutcome) -> String {
    let totals = totals(outcome);
    let jobs = outcome.jobs();
    let mut counts = vec![format!("{} succeeded", totals.succeeded)];
    for (count, word) in [
        (totals.failed, "failed"),
        (totals.stopped, "stopped"),
        (totals.not_started, "not started"),
    ] {
        if count > 0 {
            counts.push(format!("{count} {word}"));
        }
    }
    let mut text = format!(
        "saferun: {} command{} in {}: {}; exit status {}\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        seconds(outcome.duration()),
        counts.join(", "),
        outcome.code()
    );
    let width = jobs
        .iter()
        .map(|job| job.name().chars().count())
        .max()
        .unwrap_or(0);
    for job in jobs {
        let status = job.code().map_or("-".to_string(), |code| code.to_string());
        let duration = job
            .outcome()
            .map_or("-".to_string(), |o| seconds(o.duration()));
        text.push_str(&format!(
            "saferun:   {:<width$}  {status:>3}  {duration:>8}  {}\n",
            job.name(),
            how_it_ended(job)
        ));
    }
    text
}

fn seconds(duration: std::time::Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// How one job ended, in a few words.
pub(super) fn how_it_ended(job: &JobOutcome) -> String {
    let because = job
        .stopped_by()
        .map(|cause| format!(" ({})", cause_words(cause)))
        .unwrap_or_default();
    let outcome = match job.end() {
        JobEnd::NotStarted => return format!("not started{because}"),
        JobEnd::NotRun(error) => return format!("could not start: {error}"),
        JobEnd::Ran(outcome) => outcome,
    };
    let mut words = match outcome.ending() {
        Ending::Stopped { killed } => {
            format!("stopped{because}{}", if *killed { ", killed" } else { "" })
        }
        _ => outcome.describe(),
    };
    let leftovers = outcome.leftovers().len();
    let mut holders: Vec<u32> = outcome.pipe_holders().iter().map(|p| p.pid).collect();
    holders.sort_unstable();
    holders.dedup();
    if leftovers > 0 {
        words.push_str(&format!("; {leftovers} outlived it"));
    }
    if !holders.is_empty() {
        words.push_str(&format!(
            "; {} held its output open past the linger",
            holders.len()
        ));
    }
    words
}

fn cause_words(cause: &StopCause) -> String {
    match cause {
        StopCause::FailFast { failed } => format!("--fail-fast: {failed} failed"),
        StopCause::Until { ended } => format!("--until: {ended} ended"),
        StopCause::Signal(signal) => format!("saferun got {}", short_name(*signal)),
        StopCause::TotalTimeout => "--total-timeout".into(),
    }
}

/// A stable word for why the batch stopped a job, for the report.
fn cause_word(cause: &StopCause) -> &'static str {
    match cause {
        StopCause::FailFast { .. } => "fail-fast",
        StopCause::Until { .. } => "until",
        StopCause::Signal(_) => "signal",
        StopCause::TotalTimeout => "total-timeout",
    }
}

/// The batch's JSON report: the totals, and a `jobs` array of single-command reports,
/// each with its `name` first.
pub(super) fn report(outcome: &BatchOutcome) -> String {
    let totals = totals(outcome);
    let jobs: Vec<Value> = outcome.jobs().iter().map(job_report).collect();
    let json = json!({
        "schema_version": crate::report::SCHEMA_VERSION,
        "saferun_version": env!("CARGO_PKG_VERSION"),
        "exit_status": outcome.code(),
        "duration_seconds": crate::record::round_us(outcome.duration().as_secs_f64()),
        "totals": {
            "jobs": outcome.jobs().len(),
            "succeeded": totals.succeeded,
            "failed": totals.failed,
            "stopped": totals.stopped,
            "not_started": totals.not_started,
        },
        "jobs": jobs,
    });
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// The report of a batch refused before anything started.
pub(super) fn refusal(message: &str) -> String {
    let json = json!({
        "schema_version": crate::report::SCHEMA_VERSION,
        "saferun_version": env!("CARGO_PKG_VERSION"),
        "exit_status": i32::from(crate::outcome::SAFERUN_FAILED),
        "end_reason": "refused",
        "errors": [message],
        "jobs": [],
    });
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

fn job_report(job: &JobOutcome) -> Value {
    let mut object = Map::new();
    object.insert("name".into(), json!(job.name()));
    object.insert(
        "started_after_seconds".into(),
        json!(
            job.started
                .map(|at| crate::record::round_us(at.as_secs_f64()))
        ),
    );
    object.insert("failed".into(), json!(job.failed()));
    object.insert("stopped_by".into(), json!(job.stopped_by().map(cause_word)));
    match job.end() {
        JobEnd::Ran(outcome) => {
            if let Ok(Value::Object(single)) = serde_json::from_str(&outcome.report()) {
                object.extend(single);
            }
        }
        JobEnd::NotRun(error) => {
            object.insert("exit_status".into(), json!(error.code()));
            object.insert("end_reason".into(), json!("not_run"));
            object.insert("errors".into(), json!([error.to_string()]));
        }
        JobEnd::NotStarted => {
            object.insert("exit_status".into(), Value::Null);
            object.insert("end_reason".into(), json!("not_started"));
        }
    }
    Value::Object(object)
}
