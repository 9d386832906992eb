//! Progress of a long byte stream (a dump, a staging pass, a restore): a shared counter the
//! pipeline adds to as bytes pass, read by the step's watcher, which reports it as events.
//! The pipeline knows nothing of terminals; the terminal reporter draws a bar on a TTY and
//! prints a plain line every few seconds elsewhere.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes done so far and, when known, the expected total.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    done: AtomicU64,
    /// 0: unknown.
    total: AtomicU64,
}

impl Meter {
    pub fn new(total: Option<u64>) -> Meter {
        let m = Meter::default();
        m.set_total(total);
        m
    }

    pub fn add(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_total(&self, total: Option<u64>) {
        self.inner.total.store(total.unwrap_or(0), Ordering::Relaxed);
    }

    /// (done, total)
    pub fn get(&self) -> (u64, Option<u64>) {
        let total = self.inner.total.load(Ordering::Relaxed);
        (self.inner.done.load(Ordering::Relaxed), (total > 0).then_some(total))
    }
}

/// A reader that counts what passes through it into a meter.
pub struct Counted<R> {
    inner: R,
    meter: Meter,
}

impl<R> Counted<R> {
    pub fn new(inner: R, meter: Meter) -> Counted<R> {
        Counted { inner, meter }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.add(n as u64);
        Ok(n)
    }
}

/// How often a plain (non-TTY) progress line is printed: `PGDRILL_PROGRESS_INTERVAL`
/// (`10s` by default; `200ms` in tests).
pub fn plain_interval() -> std::time::Duration {
    std::env::var("PGDRILL_PROGRESS_INTERVAL")
        .ok()
        .and_then(|v| crate::util::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(std::time::Duration::from_secs(10))
}

/// `1.2 GiB of ~4.0 GiB (30%), 85.3 MiB/s, about 36s left` or `1.2 GiB, 85.3 MiB/s`.
pub fn describe(done: u64, total: Option<u64>, elapsed: std::time::Duration) -> String {
    let hb = crate::util::human_bytes;
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
    let rate_text = format!("{}/s", hb(rate as u64));
    match total {
        Some(t) if t > 0 => {
            let pct = (done as f64 * 100.0 / t as f64).min(100.0);
            let left = if rate > 0.0 && t > done { (t - done) as f64 / rate } else { 0.0 };
            format!(
                "{} of ~{} ({pct:.0}%), {rate_text}, about {} left",
                hb(done),
                hb(t),
                humantime::format_duration(std::time::Duration::from_secs(left.round() as u64))
            )
        }
        _ => format!("{}, {rate_text}", hb(done)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_reader_and_descriptions() {
        let m = Meter::new(Some(4096));
        let mut r = Counted::new(&[7u8; 1024][..], m.clone());
        let mut sink = Vec::new();
        r.read_to_end(&mut sink).expect("read");
        assert_eq!(m.get(), (1024, Some(4096)));
        let d = describe(1024 * 1024, Some(4 * 1024 * 1024), std::time::Duration::from_secs(2));
        assert_eq!(d, "1.0 MiB of ~4.0 MiB (25%), 512.0 KiB/s, about 6s left");
        assert_eq!(describe(2048, None, std::time::Duration::from_secs(1)), "2.0 KiB, 2.0 KiB/s");
        m.set_total(None);
        assert_eq!(m.get().1, None);
    }
}
