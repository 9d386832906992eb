//! Durations as runbooks, schedules and the command line write them.

use std::time::Duration;

/// The longest duration pgdrill accepts anywhere (a timeout, a delay, a retention window):
/// a century. Longer is a typo (`1e300`), and the bound keeps every sum made from durations
/// (a deadline, a retry's grown delay, a date minus a window) far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 31_557_600); // humantime's year: 365.25 days

/// Parse `90s`, `15m`, `1h 30m`, or a bare number of seconds, up to [`MAX_DURATION`]. Never
/// panics: a number too large for a `Duration` is an error like any other typo.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let d = match t.parse::<f64>() {
        Ok(secs) if secs >= 0.0 && secs.is_finite() => Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX),
        _ => humantime::parse_duration(t).map_err(|e| e.to_string())?,
    };
    if d > MAX_DURATION {
        return Err(format!("`{t}` is longer than the longest duration pgdrill accepts (100 years)"));
    }
    Ok(d)
}
