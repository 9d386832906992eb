//! The bottom of the house: small helpers every layer may use and that use nothing of
//! pgdrill's own (units, quoting, times, the host's name). One copy of each: a second copy
//! drifts (two shell quoters had different safe sets, one percent decoder could split a
//! character).

mod behind;
mod bytes;
mod duration;
mod host;
pub mod memory;
mod quote;
mod time;

pub use behind::Behind;
pub use bytes::{human_bytes, parse_bytes};
pub use duration::{parse_duration, MAX_DURATION};
pub use host::hostname;
pub use quote::{
    conninfo_quote, is_bidi_control, one_line, percent_decode, percent_decode_strict, percent_encode,
    percent_encode_keep, shell_quote, visible,
};
pub use time::{compact_utc, compact_utc_digits, rfc3339};

/// Tests only (debug builds): stop for good at `phase` when `PGDRILL_TEST_PAUSE_AT` names
/// it, after creating the file `PGDRILL_TEST_PAUSE_FLAG` names, so a test can kill -9 the
/// process at an exact point of a multi-step write (a backup's publication) instead of
/// guessing it with timings. A release build never pauses.
pub fn test_pause(phase: &str) {
    if !cfg!(debug_assertions) || std::env::var("PGDRILL_TEST_PAUSE_AT").ok().as_deref() != Some(phase) {
        return;
    }
    if let Some(flag) = std::env::var_os("PGDRILL_TEST_PAUSE_FLAG") {
        let _ = std::fs::write(flag, phase);
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
