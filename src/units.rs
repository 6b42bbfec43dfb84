//! DURATION, SIZE and SIGNAL as the command line takes them: pure functions, GNU
//! coreutils' forms.
//!
//! A duration is what GNU `timeout` accepts (a floating-point number with an optional
//! `s`, `m`, `h` or `d`), plus `ms` and compound forms such as `1m30s`. Sizes use the
//! coreutils convention: `K`, `M`, `G`, `T` (and `KiB`…) are powers of 1024, `KB`, `MB`…
//! powers of 1000. Anything ambiguous (`5M` as a duration, `3y`) is refused rather than
//! guessed, because a wrong guess turns a five-minute limit into five months.

use std::time::Duration;

use saferun::Signal;

/// The accepted form of a DURATION, quoted in every error message.
pub const DURATION_FORM: &str = "a number of seconds or a number with a unit ms, s, m, h or d \
     (e.g. 5, 0.5, 1e-3, 250ms, 1.5m, 1m30s, 2h, inf); 0 disables";

/// The accepted form of a SIZE, quoted in every error message.
pub const SIZE_FORM: &str = "a number of bytes, optionally with a unit K, M, G, T (powers of 1024; \
     also KiB, MiB, GiB, TiB) or KB, MB, GB, TB (powers of 1000), e.g. 64K, 10MB";

/// Longest duration saferun represents. Anything longer is "practically never" and is
/// clamped here so that adding it to a clock reading can never overflow.
pub const PRACTICALLY_NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Parses a DURATION. `Ok(None)` means the limit is disabled (`0`).
pub fn parse_duration(text: &str) -> Result<Option<Duration>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = trimmed;
    let mut total = 0f64;
    let mut parts = 0;
    // A value too small for a double (`1e-10000`) reads as 0.0 but is not "no limit".
    let mut tiny = false;
    while !rest.is_empty() {
        if parts > 0 && rest.starts_with(['+', '-']) {
            return Err(format!("'{rest}': only the whole duration may have a sign"));
        }
        let (number, after_number) =
            split_number(rest).ok_or_else(|| format!("'{rest}' does not start with a number"))?;
        let unit_len = after_number
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        let seconds_per_unit = match unit {
            "" if parts == 0 && after_unit.is_empty() => 1.0,
            "" => return Err("every part of a compound duration needs a unit".into()),
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            other => return Err(format!("unknown unit '{other}'")),
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("'{number}' is not a number"))?;
        let mantissa = number.split(['e', 'E']).next().unwrap_or(number);
        let nonzero = mantissa.bytes().any(|b| (b'1'..=b'9').contains(&b))
            || number.to_ascii_lowercase().contains("inf");
        if value.is_nan() || (number.starts_with('-') && nonzero) {
            return Err(format!("'{number}' is negative: a duration cannot be"));
        }
        tiny |= nonzero;
        total += value.abs() * seconds_per_unit;
        parts += 1;
        rest = after_unit;
    }
    if total == 0.0 && !tiny {
        return Ok(None);
    }
    if !total.is_finite() || total >= PRACTICALLY_NEVER.as_secs_f64() {
        return Ok(Some(PRACTICALLY_NEVER));
    }
    // A tiny positive value is still a limit, never "disabled".
    Ok(Some(
        Duration::from_secs_f64(total).max(Duration::from_nanos(1)),
    ))
}

/// Splits a leading floating-point literal (as `strtod` reads them, including `inf`,
/// `infinity`, `.5`, `1e-3`) from the rest of the text.
fn split_number(text: &str) -> Option<(&str, &str)> {
    let bytes = text.as_bytes();
    let mut end = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        end = 1;
    }
    let lower = text[end..].to_ascii_lowercase();
    for word in ["infinity", "inf"] {
        if lower.starts_with(word) {
            return Some(text.split_at(end + word.len()));
        }
    }
    let digits_start = end;
    while end < bytes.len() && (bytes[end].is_ascii_digit() || bytes[end] == b'.') {
        end += 1;
    }
    if end == digits_start {
        return None;
    }
    // An exponent only counts when digits follow, so `1e` is not a number and `5d` is days.
    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut exp_end = end + 1;
        if exp_end < bytes.len() && (bytes[exp_end] == b'+' || bytes[exp_end] == b'-') {
            exp_end += 1;
        }
        let exp_digits = exp_end;
        while exp_end < bytes.len() && bytes[exp_end].is_ascii_digit() {
            exp_end += 1;
        }
        if exp_end > exp_digits {
            end = exp_end;
        }
    }
    Some(text.split_at(end))
}

/// Parses a SIZE into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!("'{trimmed}' does not start with a whole number"));
    }
    let multiplier: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "T" | "TiB" => 1 << 40,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        other => return Err(format!("unknown unit '{other}'")),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("'{digits}' is too large"))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{trimmed}' is too large"))
}

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

    fn secs(s: f64) -> Option<Duration> {
        Some(Duration::from_secs_f64(s))
    }

    #[test]
    fn durations_gnu_accepts() {
        let table: &[(&str, Option<Duration>)] = &[
            ("5", secs(5.0)),
            ("0.5", secs(0.5)),
            (".1", secs(0.1)),
            ("1e-3", secs(0.001)),
            ("1.5m", secs(90.0)),
            ("2h", secs(7200.0)),
            ("1d", secs(86400.0)),
            ("250ms", secs(0.25)),
            ("1m30s", secs(90.0)),
            ("1h2m3s", secs(3723.0)),
            ("+3", secs(3.0)),
            ("5s", secs(5.0)),
            ("0", None),
            ("0s", None),
            ("0.0", None),
            ("inf", Some(PRACTICALLY_NEVER)),
            ("infinity", Some(PRACTICALLY_NEVER)),
            ("1e300", Some(PRACTICALLY_NEVER)),
            ("99999999999d", Some(PRACTICALLY_NEVER)),
            ("1e-12", Some(Duration::from_nanos(1))),
            // Below the smallest double, still a limit (GNU: rounded up to 1 ns).
            ("1e-10000", Some(Duration::from_nanos(1))),
            ("-0", None),
            ("-0.0", None),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_refused() {
        for text in [
            "",
            "5M",
            "3y",
            "5x",
            "-1",
            "abc",
            "1m30",
            "nan",
            "5 s s",
            "1..2",
            "e5",
            "s",
            "-1e-10000",
            "-inf",
        ] {
            assert!(parse_duration(text).is_err(), "{text:?} should be refused");
        }
    }

    #[test]
    fn sizes() {
        let table: &[(&str, u64)] = &[
            ("0", 0),
            ("100", 100),
            ("1K", 1024),
            ("1k", 1024),
            ("1KiB", 1024),
            ("2M", 2 << 20),
            ("3G", 3 << 30),
            ("1KB", 1000),
            ("5MB", 5_000_000),
            ("1GB", 1_000_000_000),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(*want), "{text}");
        }
        for text in [
            "",
            "K",
            "1.5M",
            "-1",
            "1X",
            "99999999999999999999",
            "20000000T",
        ] {
            assert!(parse_size(text).is_err(), "{text:?} should be refused");
        }
    }
}
