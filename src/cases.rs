//! Each command's result as a test report sees it: one case per command (per job when
//! several run), for the CI markers ([`crate::ci`]) and JUnit ([`crate::junit`]).

use std::time::Duration;

use saferun::{BatchOutcome, Captured, JobEnd, Outcome};

/// How one command did.
pub struct Case {
    /// The job's name, or the command line of a single command.
    pub name: String,
    /// The command line.
    pub command: String,
    /// Its exit status (`None`: never started).
    pub code: Option<i32>,
    /// How it ended, in words.
    pub how: String,
    pub duration: Duration,
    pub verdict: Verdict,
    pub stdout: Captured,
    pub stderr: Captured,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    Failed,
    /// It could not be run at all.
    Error,
    /// Never started, or stopped by saferun on behalf of the others.
    Skipped,
}

/// The command line as one readable string.
pub fn command_line(argv: &[std::ffi::OsString]) -> String {
    argv.iter()
        .map(|word| {
            let word = word.to_string_lossy();
            if word.is_empty()
                || word.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c))
            {
                format!("'{}'", word.replace('\'', r"'\''"))
            } else {
                word.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The case of a single command.
pub fn of_one(argv: &[std::ffi::OsString], outcome: &Outcome) -> Case {
    let command = command_line(argv);
    Case {
        name: command.clone(),
        command,
        code: Some(outcome.code()),
        how: outcome.describe(),
        duration: outcome.duration(),
        verdict: if outcome.success() {
            Verdict::Passed
        } else {
            Verdict::Failed
        },
        stdout: outcome.stdout_excerpt().clone(),
        stderr: outcome.stderr_excerpt().clone(),
    }
}

/// One case per job of a batch.
pub fn of_batch(batch: &BatchOutcome) -> Vec<Case> {
    batch
        .jobs()
        .iter()
        .map(|job| {
            let outcome = job.outcome();
            let verdict = match job.end() {
                JobEnd::NotRun(_) => Verdict::Error,
                _ if job.failed() => Verdict::Failed,
                _ if job.stopped_by().is_some() => Verdict::Skipped,
                JobEnd::Ran(outcome) if outcome.success() => Verdict::Passed,
                JobEnd::Ran(_) => Verdict::Skipped,
                _ => Verdict::Skipped,
            };
            Case {
                name: job.name().to_string(),
                command: command_line(job.argv()),
                code: job.code(),
                how: job.describe(),
                duration: outcome.map(Outcome::duration).unwrap_or_default(),
                verdict,
                stdout: outcome
                    .map(|o| o.stdout_excerpt().clone())
                    .unwrap_or_default(),
                stderr: outcome
                    .map(|o| o.stderr_excerpt().clone())
                    .unwrap_or_default(),
            }
        })
        .collect()
}
