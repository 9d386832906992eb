//! What the WAL archive holds and whether it is whole: the segments of a system by timeline,
//! the timelines' history files, the chain of segments a base backup needs from its start
//! to its end and onwards to the archive's end (following timeline switches), each segment
//! opened and authenticated when asked, and every gap named by segment and time.
//!
//! The caller hands in what it knows of a base backup (timeline, start and stop LSN, segment
//! size): this module does not read base backups.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use super::{segment_name, segno_of, unseal, wal_key, wal_prefix, Lsn, WalName};
use crate::archive::KeySource;
use crate::error::Failure;
use crate::storage::{Meta, Store};

/// The objects of one system's archive, by kind.
#[derive(Debug, Default)]
pub struct Inventory {
    pub system: u64,
    pub seg_size: u64,
    /// (timeline, segment number) -> the object.
    pub segments: BTreeMap<(u32, u64), Meta>,
    pub partials: BTreeMap<(u32, u64), Meta>,
    pub histories: BTreeMap<u32, Meta>,
    pub backups: Vec<Meta>,
    /// Objects under the WAL prefix that are no archived file (left by hand?).
    pub strangers: Vec<String>,
}

/// A store's `.cluster/` tree as one LIST pass returned it: every system's base backups and
/// WAL. A command that shows several systems, or a system's base backups beside its archive,
/// reads them all from one `Tree` (issue 41: `wal list` and `backups list` listed `.cluster/`
/// once for the systems, again for a segment size and again for each inventory).
#[derive(Debug, Default, Clone)]
pub struct Tree {
    objects: Vec<Meta>,
}

impl Tree {
    /// One LIST pass over `.cluster/`.
    pub async fn list(store: &dyn Store) -> Result<Tree, Failure> {
        let objects = store.list(&format!("{}/", super::ROOT)).await.map_err(Failure::environment)?;
        Ok(Tree { objects })
    }

    /// Every object listed.
    pub fn objects(&self) -> &[Meta] {
        &self.objects
    }

    /// The objects whose keys start with `prefix`.
    pub fn under<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Meta> + 'a {
        self.objects.iter().filter(move |m| m.key.starts_with(prefix))
    }

    /// Every system with a WAL archive or base backups, in order.
    pub fn systems(&self) -> Vec<u64> {
        let root = format!("{}/", super::ROOT);
        let mut out: Vec<u64> =
            self.objects.iter().filter_map(|m| m.key.strip_prefix(&root)?.split('/').next()?.parse().ok()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A system's archive by kind (see `inventory`).
    pub fn inventory(&self, system: u64, seg_size: u64) -> Inventory {
        let prefix = wal_prefix(system);
        inventory_of(self.under(&prefix).cloned(), system, seg_size)
    }
}

/// List a system's archive. `seg_size` gives segment numbers their meaning.
pub async fn inventory(store: &dyn Store, system: u64, seg_size: u64) -> Result<Inventory, Failure> {
    let listed = store.list(&wal_prefix(system)).await.map_err(Failure::environment)?;
    Ok(inventory_of(listed, system, seg_size))
}

fn inventory_of(listed: impl IntoIterator<Item = Meta>, system: u64, seg_size: u64) -> Inventory {
    let prefix = wal_prefix(system);
    let mut inv = Inventory { system, seg_size, ..Default::default() };
    for m in listed {
        let Some(rest) = m.key.strip_prefix(&prefix) else { continue };
        if rest == super::MARKER {
            continue;
        }
        let Some(name) = rest.strip_suffix(".pgdrill") else {
            inv.strangers.push(m.key.clone());
            continue;
        };
        match WalName::parse(name) {
            Some(WalName::Segment { tli, log, seg }) => {
                inv.segments.insert((tli, segno_of(log, seg, seg_size)), m);
            }
            Some(WalName::Partial { tli, log, seg }) => {
                inv.partials.insert((tli, segno_of(log, seg, seg_size)), m);
            }
            Some(WalName::History { tli }) => {
                inv.histories.insert(tli, m);
            }
            Some(WalName::Backup { .. }) => inv.backups.push(m),
            None => inv.strangers.push(m.key.clone()),
        }
    }
    inv
}

/// The segment size of a system's archive, read from its first segment's authenticated
/// preamble (the size of a whole segment), when the caller does not know it, from objects
/// already listed (a `Tree`'s).
pub async fn seg_size_in(
    store: &dyn Store,
    listed: impl IntoIterator<Item = Meta>,
    system: u64,
    key: &KeySource,
) -> Result<Option<u64>, Failure> {
    let prefix = wal_prefix(system);
    let mut keys: Vec<Meta> = listed.into_iter().filter(|m| m.key.starts_with(&prefix)).collect();
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    for m in keys {
        let Some(name) = m.key.strip_prefix(&prefix).and_then(|r| r.strip_suffix(".pgdrill")) else { continue };
        if let Some(WalName::Segment { .. }) = WalName::parse(name) {
            let object = store.read(&m.key).await.map_err(Failure::environment)?;
            let (pre, _) = tokio::task::block_in_place(|| unseal(name, &object, key))?;
            return Ok(Some(pre.size));
        }
    }
    Ok(None)
}

/// One line of a history file: timeline `tli` ended at `switch` (the next one began there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Switch {
    pub tli: u32,
    #[serde(serialize_with = "lsn_text")]
    pub switch: Lsn,
}

fn lsn_text<S: serde::Serializer>(l: &Lsn, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&l.to_string())
}

/// A history file's entries (`parentTLI <tab> switchpoint <tab> reason`), oldest first.
pub fn parse_history(text: &str) -> Result<Vec<Switch>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let tli = parts.next().and_then(|t| t.parse::<u32>().ok());
        let lsn = parts.next().and_then(Lsn::parse);
        match (tli, lsn) {
            (Some(tli), Some(switch)) => out.push(Switch { tli, switch }),
            _ => return Err(format!("line {}: `{line}` is not `timeline <tab> LSN <tab> reason`", i + 1)),
        }
    }
    Ok(out)
}

async fn read_history(store: &dyn Store, system: u64, tli: u32, key: &KeySource) -> Result<Vec<Switch>, Failure> {
    let name = format!("{tli:08X}.history");
    let object = store.read(&wal_key(system, &name)).await.map_err(Failure::environment)?;
    let (_, body) = tokio::task::block_in_place(|| unseal(&name, &object, key))?;
    parse_history(&String::from_utf8_lossy(&body)).map_err(|m| Failure::failed(format!("archived {name}: {m}")))
}

/// A run of segments a recovery reads from one timeline, `to` inclusive (`None`: up to the
/// archive's end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Span {
    pub tli: u32,
    pub from: String,
    pub to: Option<String>,
}

/// Segments missing from the chain, with their neighbours and when those were archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub first_missing: String,
    pub last_missing: String,
    pub count: u64,
    /// The last segment before the gap and when it was archived (RFC 3339).
    pub after: Option<(String, String)>,
    /// The first segment after it and when it was archived.
    pub before: Option<(String, String)>,
}

impl Gap {
    pub fn describe(&self) -> String {
        let range = if self.count == 1 {
            format!("segment {} is missing", self.first_missing)
        } else {
            format!("{} segments {}..{} are missing", self.count, self.first_missing, self.last_missing)
        };
        let after = self.after.as_ref().map(|(n, t)| format!(" after {n} (archived {t})")).unwrap_or_default();
        let before = self.before.as_ref().map(|(n, t)| format!(", before {n} (archived {t})")).unwrap_or_default();
        format!("{range}{after}{before}")
    }
}

/// What a continuity check found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Continuity {
    pub system_identifier: String,
    /// The timelines followed, oldest first.
    pub path: Vec<Span>,
    /// The timeline the chain ends on.
    pub timeline: u32,
    /// Segments found and (when verified) opened and authenticated.
    pub segments: u64,
    pub verified: bool,
    pub gaps: Vec<Gap>,
    /// Objects that are there but do not open: name and why.
    pub damaged: Vec<(String, String)>,
    /// The last segment of the unbroken chain from the start.
    pub last_segment: Option<String>,
    /// Where the unbroken chain ends (the end of its last segment) and when that segment was
    /// archived: the latest point a recovery from this start can reach.
    pub end_lsn: String,
    pub end_time: Option<String>,
    /// Whether the unbroken chain covers the base backup's end (its consistency point).
    pub reaches_stop: bool,
    /// The stop LSN asked about.
    pub stop_lsn: String,
}

fn time_of(m: &Meta) -> String {
    crate::util::rfc3339(time::OffsetDateTime::from(m.modified))
}

/// Check the chain from `start` (timeline and LSN of a base backup's start) through `stop`
/// (its end) and onwards to the archive's end, following the newest timeline that descends
/// from `start`'s. `verify` opens and authenticates every segment of the chain.
pub async fn continuity(
    store: &dyn Store,
    system: u64,
    key: &KeySource,
    seg_size: u64,
    start: (u32, Lsn),
    stop: Lsn,
    verify: bool,
) -> Result<Continuity, Failure> {
    let inv = inventory(store, system, seg_size).await?;
    continuity_in(store, &inv, key, start, stop, verify).await
}

/// `continuity` over an inventory already listed (a `Tree`'s): objects are read (history
/// files, and segments when `verify`), never listed again.
pub async fn continuity_in(
    store: &dyn Store,
    inv: &Inventory,
    key: &KeySource,
    start: (u32, Lsn),
    stop: Lsn,
    verify: bool,
) -> Result<Continuity, Failure> {
    let (system, seg_size) = (inv.system, inv.seg_size);
    let (base_tli, start_lsn) = start;
    // The newest timeline whose history leads back to the base's.
    let mut histories = BTreeMap::new();
    for tli in inv.histories.keys() {
        histories.insert(*tli, read_history(store, system, *tli, key).await?);
    }
    let target = histories
        .iter()
        .rev()
        .find(|(t, h)| **t > base_tli && h.iter().any(|s| s.tli == base_tli))
        .map(|(t, _)| *t)
        .unwrap_or(base_tli);
    let switches: Vec<Switch> =
        histories.get(&target).map(|h| h.iter().copied().filter(|s| s.tli >= base_tli).collect()).unwrap_or_default();
    let mut spans: Vec<(u32, u64, Option<u64>)> = Vec::new();
    let mut cur = start_lsn.segno(seg_size);
    for (i, s) in switches.iter().enumerate() {
        // The switch segment itself is read from the new timeline, which holds a copy of the
        // old one's part of it.
        let end = s.switch.segno(seg_size);
        if end > cur {
            spans.push((s.tli, cur, Some(end - 1)));
        }
        cur = cur.max(end);
        let _ = i;
    }
    spans.push((target, cur, None));

    let mut out = Continuity {
        system_identifier: system.to_string(),
        timeline: target,
        verified: verify,
        stop_lsn: stop.to_string(),
        ..Default::default()
    };
    let stop_seg = stop.segno(seg_size);
    let mut unbroken = true;
    let mut last: Option<(u32, u64, &Meta)> = None;
    let mut chain_end: Option<(u32, u64, &Meta)> = None;
    for (tli, from, to) in &spans {
        let to = match to {
            Some(t) => *t,
            // Open: up to the newest segment archived on this timeline (or where the chain
            // must reach, so a missing end is a gap too).
            None => inv
                .segments
                .range((*tli, 0)..=(*tli, u64::MAX))
                .next_back()
                .map(|((_, s), _)| *s)
                .unwrap_or(0)
                .max(stop_seg)
                .max(*from),
        };
        out.path.push(Span {
            tli: *tli,
            from: segment_name(*tli, *from, seg_size),
            to: Some(segment_name(*tli, to, seg_size)),
        });
        let mut missing: Option<(u64, u64)> = None;
        for segno in *from..=to {
            match inv.segments.get(&(*tli, segno)) {
                Some(m) => {
                    if let Some((a, b)) = missing.take() {
                        out.gaps.push(gap(*tli, a, b, seg_size, last, Some((*tli, segno, m))));
                    }
                    out.segments += 1;
                    if verify {
                        let name = segment_name(*tli, segno, seg_size);
                        let object = store.read(&m.key).await.map_err(Failure::environment)?;
                        let opened = tokio::task::block_in_place(|| {
                            unseal(&name, &object, key).and_then(|(_, body)| {
                                super::check_segment(&name, &body, Some(system)).map_err(Failure::failed)
                            })
                        });
                        if let Err(e) = opened {
                            out.damaged.push((name, e.message));
                            unbroken = false;
                        }
                    }
                    last = Some((*tli, segno, m));
                    if unbroken {
                        chain_end = last;
                    }
                }
                None => {
                    unbroken = false;
                    missing = Some(missing.map_or((segno, segno), |(a, _)| (a, segno)));
                }
            }
        }
        if let Some((a, b)) = missing {
            out.gaps.push(gap(*tli, a, b, seg_size, last, None));
        }
    }
    if let Some((tli, segno, m)) = chain_end {
        out.last_segment = Some(segment_name(tli, segno, seg_size));
        out.end_lsn = Lsn((segno + 1) * seg_size).to_string();
        out.end_time = Some(time_of(m));
        out.reaches_stop = segno >= stop_seg;
    } else {
        out.end_lsn = start_lsn.to_string();
    }
    Ok(out)
}

fn gap(
    tli: u32,
    a: u64,
    b: u64,
    seg_size: u64,
    after: Option<(u32, u64, &Meta)>,
    before: Option<(u32, u64, &Meta)>,
) -> Gap {
    Gap {
        first_missing: segment_name(tli, a, seg_size),
        last_missing: segment_name(tli, b, seg_size),
        count: b - a + 1,
        after: after.map(|(t, s, m)| (segment_name(t, s, seg_size), time_of(m))),
        before: before.map(|(t, s, m)| (segment_name(t, s, seg_size), time_of(m))),
    }
}

/// One timeline of an archive as `wal list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Timeline {
    pub timeline: u32,
    pub first_segment: String,
    pub last_segment: String,
    pub segments: u64,
    pub first_archived: String,
    pub last_archived: String,
    /// Holes between the first and last segment.
    pub gaps: Vec<Gap>,
}

/// The timelines of an inventory, with their holes.
pub fn timelines(inv: &Inventory) -> Vec<Timeline> {
    let mut out: Vec<Timeline> = Vec::new();
    let mut by_tli: BTreeMap<u32, Vec<(u64, &Meta)>> = BTreeMap::new();
    for ((tli, segno), m) in &inv.segments {
        by_tli.entry(*tli).or_default().push((*segno, m));
    }
    for (tli, segs) in by_tli {
        let (Some(first), Some(lastseg)) = (segs.first(), segs.last()) else { continue };
        let mut gaps = Vec::new();
        for w in segs.windows(2) {
            let ((a, ma), (b, mb)) = (w[0], w[1]);
            if b > a + 1 {
                gaps.push(gap(tli, a + 1, b - 1, inv.seg_size, Some((tli, a, ma)), Some((tli, b, mb))));
            }
        }
        let oldest = segs.iter().map(|(_, m)| m.modified).min().unwrap_or(SystemTime::UNIX_EPOCH);
        let newest = segs.iter().map(|(_, m)| m.modified).max().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push(Timeline {
            timeline: tli,
            first_segment: segment_name(tli, first.0, inv.seg_size),
            last_segment: segment_name(tli, lastseg.0, inv.seg_size),
            segments: segs.len() as u64,
            first_archived: crate::util::rfc3339(time::OffsetDateTime::from(oldest)),
            last_archived: crate::util::rfc3339(time::OffsetDateTime::from(newest)),
            gaps,
        });
    }
    out
}

/// The newest time anything was archived for a system (the
/// `pgdrill_wal_last_archived_timestamp_seconds` metric), in Unix seconds.
pub fn last_archived(inv: &Inventory) -> Option<f64> {
    inv.segments
        .values()
        .chain(inv.histories.values())
        .map(|m| m.modified)
        .max()
        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
}
