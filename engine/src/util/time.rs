//! Times as reports and outputs write them.

use time::OffsetDateTime;

/// `2026-11-21T08:30:00Z`: RFC 3339, as run.json, outputs and manifests carry times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which no clock here reaches.
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// `20261121T083000Z`: ISO 8601's basic format in UTC, with no separators to quote, as a
/// lock's `application_name` and SigV4's `x-amz-date` carry a time; with `millis`,
/// `20261121T083000.123Z` (names that must sort and differ within a second: a backup's).
pub fn compact_utc(t: OffsetDateTime, millis: bool) -> String {
    compact_utc_digits(t, if millis { 3 } else { 0 })
}

/// `compact_utc` with `digits` (at most 9) digits of the second, cut rather than rounded so
/// that a name never sorts after a later time's: `20261121T083000.123456Z` for 6 (a report's
/// history part). The one place such a stamp is formatted.
pub fn compact_utc_digits(t: OffsetDateTime, digits: usize) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    let nanos = format!("{:09}", t.nanosecond());
    let fraction = match digits.min(9) {
        0 => String::new(),
        n => format!(".{}", &nanos[..n]),
    };
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}{fraction}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_times_are_utc_with_no_separators() {
        let t = time::macros::datetime!(2026-11-21 09:30:05.042 +01:00);
        assert_eq!(compact_utc(t, false), "20261121T083005Z");
        assert_eq!(compact_utc(t, true), "20261121T083005.042Z");
        let t = time::macros::datetime!(2026-11-21 09:30:05.999_999_999 +01:00);
        assert_eq!(compact_utc(t, true), "20261121T083005.999Z", "rounded up into the next second");
        assert_eq!(compact_utc_digits(t, 6), "20261121T083005.999999Z");
        assert_eq!(compact_utc_digits(t, 0), compact_utc(t, false));
    }
}
