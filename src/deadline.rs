//! Nested deadlines: saferun exports the deadline it enforces as `SAFERUN_DEADLINE`
//! (seconds since the Unix epoch), and a saferun started inside the command caps its own
//! limits so that its command is stopped, and reported, before the outer one fires.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Limits;

/// The environment variable carrying the deadline.
pub const ENV: &str = "SAFERUN_DEADLINE";

/// Reads `SAFERUN_DEADLINE`'s value; anything unreadable is ignored.
pub fn parse(text: &str) -> Option<SystemTime> {
    // Digits, not a float: a float loses the microseconds of a present-day epoch time.
    let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if whole.is_empty()
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let seconds: u64 = whole.parse().ok()?;
    let nanos: u32 = format!("{:0<9}", fraction.get(..fraction.len().min(9))?)
        .parse()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// The enclosing saferun's deadline, from this process's environment.
pub(crate) fn from_env() -> Option<SystemTime> {
    parse(std::env::var_os(ENV)?.to_str()?)
}

/// Writes a deadline as `SAFERUN_DEADLINE` carries it.
pub fn format(deadline: SystemTime) -> String {
    let since = deadline.duration_since(UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:06}", since.as_secs(), since.subsec_micros())
}

/// The limits after taking an enclosing deadline into account.
#[derive(Debug, Clone)]
pub struct Effective {
    pub limits: Limits,
    /// The enclosing deadline cut this run's timeout short.
    pub capped: bool,
    /// The deadline to export to the command, if any.
    pub export: Option<SystemTime>,
}

/// Caps `limits` to an enclosing deadline. The inner run keeps a margin (a quarter of
/// what is left, at most 1s) before the outer deadline, and fits its own timeout, grace
/// before KILL and linger into what is left, so that it ends, and says why, before the
/// outer one acts. A grace the user turned off (`-k 0`) is turned back on here: the
/// outer saferun would KILL anyway.
pub fn apply(mut limits: Limits, outer: Option<SystemTime>, now: SystemTime) -> Effective {
    let Some(outer) = outer else {
        let export = limits.timeout.and_then(|t| now.checked_add(t));
        return Effective {
            limits,
            capped: false,
            export,
        };
    };
    let tiny = Duration::from_nanos(1);
    let remaining = outer.duration_since(now).unwrap_or_default();
    let margin = (remaining / 4).min(Duration::from_secs(1));
    let budget = remaining - margin;
    let capped = limits.timeout.is_none_or(|t| t > budget);
    let timeout = limits.timeout.unwrap_or(budget).min(budget).max(tiny);
    // What is left between this run's timeout and the outer deadline, less what the
    // teardown after the bound may take (flushing, reaping: under a second).
    let teardown = (margin / 2).min(Duration::from_secs(1));
    let rest = (budget.saturating_sub(timeout) + margin).saturating_sub(teardown);
    limits.timeout = Some(timeout);
    limits.kill_after = Some(
        limits
            .kill_after
            .unwrap_or(Duration::MAX)
            .min(rest * 2 / 3)
            .max(tiny),
    );
    limits.linger = limits.linger.min(rest / 4);
    let export = now.checked_add(timeout);
    Effective {
        limits,
        capped,
        export,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout: Option<u64>) -> Limits {
        // The defaults: TERM, 5s grace, 1s linger.
        Limits {
            timeout: timeout.map(Duration::from_secs),
            ..Limits::default()
        }
    }

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(parse(&format(t)), Some(t));
        assert_eq!(parse("garbage"), None);
        assert_eq!(parse("-5"), None);
    }

    #[test]
    fn no_outer_deadline_exports_own() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let e = apply(limits(Some(10)), None, now);
        assert!(!e.capped);
        assert_eq!(e.export, Some(now + Duration::from_secs(10)));
        assert_eq!(apply(limits(None), None, now).export, None);
    }

    #[test]
    fn inner_stops_first() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let outer = now + Duration::from_secs(2);
        let e = apply(limits(Some(60)), Some(outer), now);
        assert!(e.capped);
        let t = e.limits.timeout.unwrap();
        let k = e.limits.kill_after.unwrap();
        assert!(t + k + e.limits.linger < Duration::from_secs(2));
        assert_eq!(e.export, Some(now + t));
        // A shorter own timeout is kept, and so is a grace that fits.
        let short = apply(limits(Some(1)), Some(now + Duration::from_secs(100)), now);
        assert!(!short.capped);
        assert_eq!(short.limits.timeout, Some(Duration::from_secs(1)));
        assert_eq!(short.limits.kill_after, Some(Duration::from_secs(5)));
    }

    #[test]
    fn grace_and_linger_fit_before_the_outer_deadline() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let outer = now + Duration::from_secs(3);
        let e = apply(limits(Some(2)), Some(outer), now);
        assert!(!e.capped);
        let total = e.limits.timeout.unwrap() + e.limits.kill_after.unwrap() + e.limits.linger;
        assert!(total < Duration::from_secs(3), "{total:?}");
        // `-k 0` under an outer deadline still escalates in time.
        let mut never = limits(Some(2));
        never.kill_after = None;
        assert!(apply(never, Some(outer), now).limits.kill_after.is_some());
    }

    #[test]
    fn deadline_already_past() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let e = apply(limits(Some(60)), Some(now - Duration::from_secs(5)), now);
        assert!(e.capped);
        assert_eq!(e.limits.timeout, Some(Duration::from_nanos(1)));
        assert_eq!(e.limits.kill_after, Some(Duration::from_nanos(1)));
    }
}
