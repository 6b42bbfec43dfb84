//! `--junit FILE`: JUnit XML, one test case per command (per job when several run), as
//! CI systems read it: a failure's message is how the command ended, and the head and
//! tail of its output are the case's `system-out` and `system-err`.

use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;

use crate::cases::{Case, Verdict};

/// How much of each stream a case keeps: its first and last half of this.
pub const EXCERPT: u64 = 64 * 1024;

/// The file, opened (created or truncated) before anything runs.
pub struct Junit {
    file: File,
    path: PathBuf,
}

impl Junit {
    /// Opens `path`; `Err` is the one line saferun refuses the run with.
    pub fn open(path: PathBuf) -> Result<Junit, String> {
        match File::create(&path) {
            Ok(file) => Ok(Junit { file, path }),
            Err(source) => Err(saferun::Error::Io {
                what: format!("cannot write the --junit file '{}'", path.display()),
                source,
            }
            .to_string()),
        }
    }

    /// Writes the cases; says so on stderr if it cannot.
    pub fn write(mut self, suite: &str, cases: &[Case]) {
        let text = render(suite, cases, &timestamp());
        if let Err(error) = self.file.write_all(text.as_bytes()) {
            crate::say(&format!(
                "cannot write the --junit file '{}': {error}",
                self.path.display()
            ));
        }
    }
}

fn timestamp() -> String {
    // JUnit's timestamp: ISO 8601 without a zone.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    now.trim_end_matches('Z').to_string()
}

/// The XML of a suite of `cases`.
pub fn render(suite: &str, cases: &[Case], timestamp: &str) -> String {
    let count = |verdict: Verdict| cases.iter().filter(|c| c.verdict == verdict).count();
    let time: f64 = cases.iter().map(|c| c.duration.as_secs_f64()).sum();
    let (tests, failures, errors, skipped) = (
        cases.len(),
        count(Verdict::Failed),
        count(Verdict::Error),
        count(Verdict::Skipped),
    );
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"saferun\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\" timestamp=\"{timestamp}\">",
        attribute(suite)
    );
    for case in cases {
        let _ = writeln!(
            xml,
            "    <testcase name=\"{}\" classname=\"saferun\" time=\"{:.3}\">",
            attribute(&case.name),
            case.duration.as_secs_f64()
        );
        let status = crate::ci::status(case);
        let message = attribute(&format!("{}{status}", case.how));
        match case.verdict {
            Verdict::Passed => {}
            Verdict::Failed => {
                let _ = writeln!(
                    xml,
                    "      <failure message=\"{message}\" type=\"{}\">{}</failure>",
                    kind(case),
                    text(&format!("{}\n{}{status}", case.command, case.how))
                );
            }
            Verdict::Error => {
                let _ = writeln!(xml, "      <error message=\"{message}\" type=\"not-run\"/>");
            }
            Verdict::Skipped => {
                let _ = writeln!(xml, "      <skipped message=\"{message}\"/>");
            }
        }
        for (tag, output) in [("system-out", &case.stdout), ("system-err", &case.stderr)] {
            if output.bytes().is_empty() {
                continue;
            }
            let mut body = String::from_utf8_lossy(output.head()).into_owned();
            if output.elided() > 0 {
                let _ = write!(body, "\n[saferun: {} bytes elided]\n", output.elided());
                body.push_str(&String::from_utf8_lossy(output.tail()));
            }
            let _ = writeln!(xml, "      <{tag}>{}</{tag}>", text(&body));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// The failure's type: a stable word for how the command ended.
fn kind(case: &Case) -> &'static str {
    let how = case.how.as_str();
    if how.starts_with("timed out") {
        "timeout"
    } else if how.starts_with("no output") {
        "idle-timeout"
    } else if how.starts_with("output over") {
        "output-cap"
    } else if how.starts_with("killed by") {
        "signal"
    } else if how.starts_with("cancelled") {
        "cancelled"
    } else {
        "exit-status"
    }
}

/// Text content: markup escaped, and every character XML 1.0 cannot hold (terminal
/// escapes, NULs) written as visible `\xNN` instead.
fn text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if allowed(c) => out.push(c),
            c => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
        }
    }
    out
}

/// An attribute's value: also quotes, and line breaks kept as character references.
fn attribute(raw: &str) -> String {
    text(raw)
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

fn allowed(c: char) -> bool {
    matches!(u32::from(c), 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_xml_cannot_hold_is_made_visible() {
        assert_eq!(
            text("a<b & \x1b[31mred\x00"),
            "a&lt;b &amp; \\x1b[31mred\\x00"
        );
        assert_eq!(attribute("say \"hi\"\n"), "say &quot;hi&quot;&#10;");
    }
}
