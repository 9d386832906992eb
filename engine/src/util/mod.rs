//! The bottom of the house: small helpers every layer may use and that use nothing of
//! pgdrill's own (units, quoting, times, the host's name). One copy of each: a second copy
//! drifts (two shell quoters had different safe sets, one percent decoder could split a
//! character).

mod bytes;
mod duration;
mod host;
mod quote;
mod time;

pub use bytes::{human_bytes, parse_bytes};
pub use duration::{parse_duration, MAX_DURATION};
pub use host::hostname;
pub use quote::{
    conninfo_quote, percent_decode, percent_decode_strict, percent_encode, percent_encode_keep, shell_quote, visible,
};
pub use time::rfc3339;
