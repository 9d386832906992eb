//! Times as reports and outputs write them.

use time::OffsetDateTime;

/// `2026-11-21T08:30:00Z`: RFC 3339, as run.json, outputs and manifests carry times.
pub fn rfc3339(t: OffsetDateTime) -> String {
    // Formatting fails only for years outside 0..=9999, which no clock here reaches.
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
