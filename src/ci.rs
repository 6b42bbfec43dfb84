//! `--ci`: what CI runners read in a log. The command's output goes inside a collapsible
//! group named after it; a failure or a timeout gets an annotation (GitHub) or a red
//! line (GitLab) outside the group; GitHub also gets a Markdown line in the step's
//! summary. On GitHub the command's own output cannot issue workflow commands: they are
//! stopped (`::stop-commands::TOKEN`) until it has ended.
//!
//! Every marker goes to saferun's stderr, which both runners read as they read stdout,
//! so the command's stdout stays exactly its own.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cases::{Case, Verdict};

/// Which runner's markers to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ci {
    None,
    GitHub,
    GitLab,
}

impl Ci {
    /// `auto`: GitHub Actions sets `GITHUB_ACTIONS=true`, GitLab CI `GITLAB_CI=true`.
    pub fn detect(choice: &str) -> Ci {
        let set = |name: &str| std::env::var(name).is_ok_and(|v| v == "true");
        match choice {
            "github" => Ci::GitHub,
            "gitlab" => Ci::GitLab,
            "none" => Ci::None,
            _ if set("GITHUB_ACTIONS") => Ci::GitHub,
            _ if set("GITLAB_CI") => Ci::GitLab,
            _ => Ci::None,
        }
    }
}

/// A group opened before the command runs, closed when it has ended.
pub struct Group {
    ci: Ci,
    /// GitHub: the token that stops workflow commands.
    token: String,
    /// GitLab: the section's name.
    section: String,
}

/// Opens the group titled `title` (nothing off CI).
pub fn begin(ci: Ci, title: &str) -> Group {
    let group = Group {
        ci,
        token: if ci == Ci::GitHub {
            token()
        } else {
            String::new()
        },
        section: format!("saferun_{}", std::process::id()),
    };
    match ci {
        Ci::None => {}
        Ci::GitHub => say(&format!(
            "::group::{}\n::stop-commands::{}\n",
            data(title),
            group.token
        )),
        Ci::GitLab => say(&format!(
            "\x1b[0Ksection_start:{}:{}[collapsed=true]\r\x1b[0K{}\n",
            now(),
            group.section,
            one_line(title)
        )),
    }
    group
}

impl Group {
    /// Closes the group; then an annotation for each case that failed, and (GitHub) a
    /// line per case in the step summary.
    pub fn end(self, cases: &[Case]) {
        match self.ci {
            Ci::None => {}
            Ci::GitHub => {
                let mut text = format!("::{}::\n::endgroup::\n", self.token);
                for case in cases.iter().filter(|c| failed(c)) {
                    text.push_str(&format!(
                        "::error title={}::{}\n",
                        property(&format!("saferun: {}", case.name)),
                        data(&sentence(case))
                    ));
                }
                say(&text);
                step_summary(cases);
            }
            Ci::GitLab => {
                let mut text = format!("\x1b[0Ksection_end:{}:{}\r\x1b[0K\n", now(), self.section);
                for case in cases.iter().filter(|c| failed(c)) {
                    text.push_str(&format!(
                        "\x1b[31;1msaferun: {}\x1b[0m\n",
                        one_line(&sentence(case))
                    ));
                }
                say(&text);
            }
        }
    }
}

/// ` (exit status N)`, unless the words say it already.
pub fn status(case: &Case) -> String {
    match case.code {
        Some(code) if !case.how.starts_with("exited") => format!(" (exit status {code})"),
        _ => String::new(),
    }
}

fn failed(case: &Case) -> bool {
    matches!(case.verdict, Verdict::Failed | Verdict::Error)
}

/// `make test: timed out (exit status 124) after 10m 0s`.
fn sentence(case: &Case) -> String {
    let status = status(case);
    format!(
        "{}: {}{status} after {:.1}s",
        case.name,
        case.how,
        case.duration.as_secs_f64()
    )
}

/// A Markdown line per case, appended to `$GITHUB_STEP_SUMMARY`.
fn step_summary(cases: &[Case]) {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return;
    };
    let mut text = String::new();
    for case in cases {
        let mark = match case.verdict {
            Verdict::Passed => "✅",
            Verdict::Failed | Verdict::Error => "❌",
            Verdict::Skipped => "⏹️",
        };
        let status = case.code.map_or("-".to_string(), |c| c.to_string());
        text.push_str(&format!(
            "- {mark} `{}`: {} (exit status {status}, {:.1}s)\n",
            case.command.replace('`', "'"),
            case.how.replace('\n', " "),
            case.duration.as_secs_f64()
        ));
    }
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut file| file.write_all(text.as_bytes()));
    if let Err(error) = written {
        crate::say(&format!("cannot write $GITHUB_STEP_SUMMARY: {error}"));
    }
}

/// A workflow command's message: `%`, `\r` and `\n` escaped as GitHub reads them.
fn data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A workflow command's property value: `:` and `,` escaped too.
fn property(text: &str) -> String {
    data(text).replace(':', "%3A").replace(',', "%2C")
}

fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// A token the command cannot guess, to stop and resume workflow commands.
fn token() -> String {
    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if random.is_err() {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        bytes = seed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn say(text: &str) {
    let _ = std::io::stderr().write_all(text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_properties_are_escaped() {
        assert_eq!(data("50% done\r\nnext"), "50%25 done%0D%0Anext");
        assert_eq!(property("saferun: a,b"), "saferun%3A a%2Cb");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
        assert_eq!(token().len(), 32);
    }
}
