//! Signal names and numbers: pure parsing and naming, no signal is sent here.

use nix::sys::signal::Signal;

/// The short name users type: `TERM` for `SIGTERM`.
pub(crate) fn short_name(signal: Signal) -> &'static str {
    let name = signal.as_str();
    name.strip_prefix("SIG").unwrap_or(name)
}

/// The short name of a raw signal number, or the number itself for one nix does not name
/// (real-time signals).
pub(crate) fn describe(number: i32) -> String {
    Signal::try_from(number)
        .map(|s| short_name(s).to_string())
        .unwrap_or_else(|_| format!("signal {number}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(short_name(Signal::SIGKILL), "KILL");
        assert_eq!(describe(15), "TERM");
        assert_eq!(describe(1000), "signal 1000");
    }
}
