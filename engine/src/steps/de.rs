//! Lenient deserializers for `with:` fields whose values often come from `--var k=v`, which
//! is always text: a number or a duration may be written natively or as a string.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrText {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A float as a person wrote it: `1e300`, not its three hundred digits.
pub fn float_text(f: f64) -> String {
    if f.is_finite() && f.abs() >= 1e15 {
        format!("{f:e}")
    } else {
        f.to_string()
    }
}

/// An integer written as a number or as text.
pub fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let n = match NumOrText::deserialize(d)? {
        NumOrText::Int(i) => i,
        // `1e300` is whole, but no i64: refused, never held at i64::MAX (`as` saturates).
        NumOrText::Float(f) if f.fract() == 0.0 && f.abs() < I64_LIMIT => f as i64,
        NumOrText::Float(f) if f.fract() == 0.0 => {
            return Err(serde::de::Error::custom(format!("{} is out of range", float_text(f))))
        }
        NumOrText::Float(f) => return Err(serde::de::Error::custom(format!("expected an integer, found {f}"))),
        NumOrText::Text(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| serde::de::Error::custom(format!("expected an integer, found `{s}`")))?,
    };
    T::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} is out of range")))
}

/// 2^63: the first whole float that is no i64.
const I64_LIMIT: f64 = 9_223_372_036_854_775_808.0;

/// The most parallel jobs a step takes: each is a connection to the server (and a process
/// or a task of pgdrill's), and a count past any server's `max_connections` only fails late
/// or exhausts memory (`verify.amcheck` starts one task per job).
pub const MAX_JOBS: u32 = 1024;

/// The most zstd threads: zstd's own limit on 64-bit machines (it would clamp a larger
/// count silently), each thread holding its jobs' buffers.
pub const MAX_THREADS: u32 = 200;

/// Parallel jobs (see [`MAX_JOBS`]).
pub fn jobs<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n: u32 = int(d)?;
    if n > MAX_JOBS {
        return Err(serde::de::Error::custom(format!(
            "{n} jobs: at most {MAX_JOBS} (each job is a connection to the server)"
        )));
    }
    Ok(n)
}

/// Compression threads (see [`MAX_THREADS`]).
pub fn threads<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n: u32 = int(d)?;
    if n > MAX_THREADS {
        return Err(serde::de::Error::custom(format!("{n} threads: at most {MAX_THREADS}")));
    }
    Ok(n)
}

/// The largest magnitude a number field takes: far past any epoch in seconds, ratio or
/// percentage a step reads, and small enough that arithmetic on it stays exact to the
/// millisecond. NaN and the infinities are refused with it: no field means them.
pub const MAX_NUMBER: f64 = 1e15;

/// A duration: `30s`, `15m`, `1h 30m`, or a number of seconds.
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = match NumOrText::deserialize(d)? {
        NumOrText::Int(i) => i.to_string(),
        NumOrText::Float(f) => float_text(f),
        NumOrText::Text(s) => s,
    };
    crate::util::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("invalid duration `{text}`: {e} (write `90s`, `15m`, `1h 30m`)")))
}

/// An optional duration; empty text (an unset var) is none.
pub fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = match NumOrText::deserialize(d)? {
        NumOrText::Int(i) => i.to_string(),
        NumOrText::Float(f) => float_text(f),
        NumOrText::Text(s) => s,
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    crate::util::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!("invalid duration `{text}`: {e} (write `90s`, `15m`, `1h 30m`, `30d`)"))
    })
}

/// Optional text that may be written as a number (`version: 15`).
pub fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Some(match NumOrText::deserialize(d)? {
        NumOrText::Int(i) => i.to_string(),
        NumOrText::Float(f) => float_text(f),
        // An empty rendering (`{{ x or '' }}`) means "not given".
        NumOrText::Text(s) if s.trim().is_empty() => return Ok(None),
        NumOrText::Text(s) => s,
    }))
}

/// A boolean written natively or as text (`--var apply=true`).
pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum BoolOrText {
        Bool(bool),
        Text(String),
    }
    match BoolOrText::deserialize(d)? {
        BoolOrText::Bool(b) => Ok(b),
        BoolOrText::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(true),
            "false" | "no" | "0" | "" => Ok(false),
            other => Err(serde::de::Error::custom(format!("expected true or false, found `{other}`"))),
        },
    }
}

/// A name -> name map written natively or as `a=b,c=d` text (`--var role_map=old=new`).
/// An optional boolean (`true/false/yes/no/on/off/1/0`).
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    boolean(d).map(Some)
}

pub fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<std::collections::BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum MapOrText {
        Map(std::collections::BTreeMap<String, String>),
        Text(String),
    }
    match MapOrText::deserialize(d)? {
        MapOrText::Map(m) => Ok(m),
        MapOrText::Text(s) => s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| match p.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                    Ok((k.trim().to_string(), v.trim().to_string()))
                }
                _ => Err(serde::de::Error::custom(format!("expected `from=to[,from=to]`, found `{p}`"))),
            })
            .collect(),
    }
}

/// A number written natively or as text (a rendered `{{ steps.x.at_epoch }}`).
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    let f = match NumOrText::deserialize(d)? {
        NumOrText::Int(i) => i as f64,
        NumOrText::Float(f) => f,
        NumOrText::Text(s) => {
            s.trim().parse().map_err(|_| serde::de::Error::custom(format!("expected a number, found `{s}`")))?
        }
    };
    if !f.is_finite() || f.abs() > MAX_NUMBER {
        return Err(serde::de::Error::custom(format!(
            "{} is out of range: a finite number within ±{}",
            float_text(f),
            float_text(MAX_NUMBER)
        )));
    }
    Ok(f)
}

/// An optional number written as a number or as text.
pub fn opt_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    number(d).map(Some)
}

/// The default `lock_mode` of a step that retains what it writes (`backup.create`,
/// `backup.copy`): S3 Object Lock's governance mode, which users allowed to bypass it may
/// still lift (see `storage::lock`).
pub fn governance() -> String {
    "governance".into()
}

/// `retain` and `lock_mode` of a step that keeps what it writes with S3 Object Lock
/// (`backup.create`, `backup.base`), checked before the run: a mode Object Lock has (a
/// templated one once rendered), and a period that keeps something.
pub fn check_retention(retain: Option<Duration>, lock_mode: &str) -> Result<(), super::WithError> {
    if !crate::template::is_template(lock_mode) {
        crate::storage::lock::Mode::parse(lock_mode).map_err(|m| super::WithError::new("lock_mode", m))?;
    }
    if retain.is_some_and(|d| d.is_zero()) {
        return Err(super::WithError::new(
            "retain",
            "a retention of 0 keeps nothing: give a period (`30d`) or leave it empty",
        ));
    }
    Ok(())
}

/// The retention `retain` and `lock_mode` ask for of what the step writes to `location`
/// (none without `retain`).
pub fn retention(
    retain: Option<Duration>,
    lock_mode: &str,
    location: &str,
) -> Result<Option<crate::backup::Retention>, super::StepError> {
    let Some(retain) = retain else { return Ok(None) };
    let mode = crate::storage::lock::Mode::parse(lock_mode).map_err(|m| super::StepError::field("lock_mode", m))?;
    Ok(Some(crate::backup::Retention { location: location.to_string(), mode, retain }))
}
