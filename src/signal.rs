//! Signal names and numbers: pure parsing and naming, no signal is sent here.

use nix::sys::signal::Signal;

/// The accepted form of a signal, quoted in error messages.
pub const SIGNAL_FORM: &str = "a signal name or number, e.g. TERM, SIGTERM, term, 15, KILL, INT";

/// Parses `TERM`, `SIGTERM`, `term`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<Signal, String> {
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<i32>() {
        return Signal::try_from(number).map_err(|_| format!("no signal has number {number}"));
    }
    let upper = trimmed.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    full.parse::<Signal>()
        .map_err(|_| format!("unknown signal '{trimmed}'"))
}

/// The short name users type: `TERM` for `SIGTERM`.
pub fn short_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// The short name of a raw signal number, or the number itself for one nix does not name
/// (real-time signals).
pub fn describe(number: i32) -> String {
    Signal::try_from(number)
        .map(|s| short_name(s).to_string())
        .unwrap_or_else(|_| format!("signal {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        for text in ["TERM", "SIGTERM", "term", "sigterm", "15", " Term "] {
            assert_eq!(parse_signal(text), Ok(Signal::SIGTERM), "{text}");
        }
        assert_eq!(parse_signal("9"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("hup"), Ok(Signal::SIGHUP));
        assert_eq!(parse_signal("USR1"), Ok(Signal::SIGUSR1));
        for text in ["", "TERMINATE", "0", "99", "-15", "SIG"] {
            assert!(parse_signal(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn names() {
        assert_eq!(short_name(Signal::SIGKILL), "KILL");
        assert_eq!(describe(15), "TERM");
        assert_eq!(describe(1000), "signal 1000");
    }
}
