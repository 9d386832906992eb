//! `wal.check`: is the WAL archive whole from a base backup's start through its end and on to
//! the archive's end? And the view of a store's physical backups that `pgdrill wal list` and
//! `backups list` show: each system's base backups, timelines and recoverable windows. Here
//! because it reads both `backup::base` and `wal`, which stand in one layer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fields, Step, StepCtx, StepError, With};
use crate::archive::KeySource;
use crate::backup::base::{self, ListedBase};
use crate::error::Failure;
use crate::storage::Store;
use crate::wal::check::{self, Continuity, Timeline};
use crate::wal::Lsn;

/// A span of time and WAL a point-in-time recovery can reach.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    pub timeline: u32,
    /// The earliest base backup's consistency point, and when it finished.
    pub earliest_lsn: String,
    pub earliest_time: String,
    /// The end of the unbroken chain of segments from it, and when that segment was archived.
    pub latest_lsn: String,
    pub latest_time: String,
}

/// A base backup and what the archive lets it reach.
#[derive(Debug, Clone, Serialize)]
pub struct BaseView {
    pub path: String,
    pub created: String,
    pub timeline: u32,
    pub start_lsn: String,
    pub stop_lsn: String,
    pub size: u64,
    pub encrypted: bool,
    pub wal_method: String,
    /// `None`: the archive does not hold the WAL from its start to its end.
    pub window: Option<Window>,
    /// Gaps in the chain from it, described.
    pub gaps: Vec<String>,
}

/// One system in a store.
#[derive(Debug, Clone, Serialize)]
pub struct SystemView {
    pub system_identifier: String,
    pub wal_segment_size: u64,
    pub timelines: Vec<Timeline>,
    pub base_backups: Vec<BaseView>,
    /// Per timeline, from the earliest base backup the archive covers to the archive's end.
    pub windows: Vec<Window>,
    pub last_archived_epoch: Option<f64>,
}

const DEFAULT_SEG: u64 = 16 << 20;

/// What a store holds of one system (see `SystemView`). Listing only: segments are not
/// opened here (`wal.check` does that).
pub async fn system_view(store: &dyn Store, system: u64, key: &KeySource) -> Result<SystemView, Failure> {
    let bases = base::list(store, Some(system)).await?;
    let seg_size = match bases.first() {
        Some(b) => b.manifest.wal_segment_size,
        None => check::seg_size_of(store, system, key).await?.unwrap_or(DEFAULT_SEG),
    };
    let inv = check::inventory(store, system, seg_size).await?;
    let mut views = Vec::new();
    let mut windows: Vec<Window> = Vec::new();
    for b in &bases {
        let (window, gaps) = match chain_of(store, system, key, b, false).await {
            Ok(c) => {
                let w = c.reaches_stop.then(|| Window {
                    timeline: c.timeline,
                    earliest_lsn: b.manifest.stop_lsn.clone(),
                    earliest_time: crate::util::rfc3339(b.manifest.finished_at),
                    latest_lsn: c.end_lsn.clone(),
                    latest_time: c.end_time.clone().unwrap_or_default(),
                });
                (w, c.gaps.iter().map(|g| g.describe()).collect())
            }
            Err(e) => (None, vec![e.message]),
        };
        if let Some(w) = &window {
            match windows.iter_mut().find(|x| x.timeline == w.timeline) {
                // Bases are newest first: a later one in the list is older, so it moves the
                // window's start back; the end is the furthest any reaches.
                Some(x) => {
                    if w.earliest_time < x.earliest_time {
                        x.earliest_lsn = w.earliest_lsn.clone();
                        x.earliest_time = w.earliest_time.clone();
                    }
                    if Lsn::parse(&w.latest_lsn) > Lsn::parse(&x.latest_lsn) {
                        x.latest_lsn = w.latest_lsn.clone();
                        x.latest_time = w.latest_time.clone();
                    }
                }
                None => windows.push(w.clone()),
            }
        }
        views.push(BaseView {
            path: b.url.clone(),
            created: crate::util::rfc3339(b.manifest.finished_at),
            timeline: b.manifest.timeline,
            start_lsn: b.manifest.start_lsn.clone(),
            stop_lsn: b.manifest.stop_lsn.clone(),
            size: b.manifest.sizes.stored,
            encrypted: b.manifest.cipher != "none",
            wal_method: b.manifest.wal_method.clone(),
            window,
            gaps,
        });
    }
    Ok(SystemView {
        system_identifier: system.to_string(),
        wal_segment_size: seg_size,
        timelines: check::timelines(&inv),
        base_backups: views,
        windows,
        last_archived_epoch: check::last_archived(&inv),
    })
}

async fn chain_of(
    store: &dyn Store,
    system: u64,
    key: &KeySource,
    b: &ListedBase,
    verify: bool,
) -> Result<Continuity, Failure> {
    let bad = |what: &str| Failure::failed(format!("{}: its manifest's {what} is not an LSN", b.url));
    let start = Lsn::parse(&b.manifest.start_lsn).ok_or_else(|| bad("start_lsn"))?;
    let stop = Lsn::parse(&b.manifest.stop_lsn).ok_or_else(|| bad("stop_lsn"))?;
    check::continuity(store, system, key, b.manifest.wal_segment_size, (b.manifest.timeline, start), stop, verify).await
}

/// `wal list`'s text for one system.
pub fn lines(s: &SystemView) -> Vec<String> {
    let mut out = vec![format!("system {} (WAL segments of {})", s.system_identifier, crate::util::human_bytes(s.wal_segment_size))];
    if s.timelines.is_empty() {
        out.push("  WAL: none archived".into());
    }
    for t in &s.timelines {
        out.push(format!(
            "  timeline {}: {} segments {}..{}, archived {} .. {}",
            t.timeline, t.segments, t.first_segment, t.last_segment, t.first_archived, t.last_archived
        ));
        for g in &t.gaps {
            out.push(format!("    GAP: {}", g.describe()));
        }
    }
    for b in &s.base_backups {
        out.push(format!(
            "  base {} timeline {} WAL {}..{} {} {}",
            b.created,
            b.timeline,
            b.start_lsn,
            b.stop_lsn,
            crate::util::human_bytes(b.size),
            b.path
        ));
        for g in &b.gaps {
            out.push(format!("    GAP: {g}"));
        }
    }
    if s.windows.is_empty() {
        out.push("  recoverable window: none (no base backup whose WAL the archive holds whole)".into());
    }
    for w in &s.windows {
        out.push(format!(
            "  recoverable window, timeline {}: {} ({}) .. {} ({})",
            w.timeline, w.earliest_time, w.earliest_lsn, w.latest_time, w.latest_lsn
        ));
    }
    out
}

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct WalCheckWith {
    /// where the base backups and the WAL archive are: a directory, s3://, gs://, az://
    #[field(ty = "path")]
    storage: String,
    /// the archive's key or passphrase (the WAL archive is always encrypted)
    #[field(key)]
    key: String,
    /// the base backup to check from (its key or path, e.g. `steps.base.outputs.key`);
    /// default: the newest one in storage
    base: Option<String>,
    /// how long to wait for the segment holding the base backup's end to be archived
    /// (default 60s)
    #[serde(default = "minute", deserialize_with = "super::de::duration")]
    wait: Duration,
    /// open and authenticate every segment of the chain (default true)
    #[serde(default = "yes", deserialize_with = "super::de::boolean")]
    verify: bool,
}

fn minute() -> Duration {
    Duration::from_secs(60)
}
fn yes() -> bool {
    true
}

impl With for WalCheckWith {}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct WalCheckOutputs {
    /// the base backup checked from
    base: String,
    /// the cluster's system identifier
    system_identifier: String,
    /// the timeline the chain ends on
    timeline: u32,
    /// segments in the chain found (and opened, with verify)
    segments: u64,
    /// gaps found (each named in the log and the failure)
    gaps: u64,
    /// objects that do not open (wrong key, damaged, cut short)
    damaged: u64,
    /// the last segment of the unbroken chain
    last_segment: String,
    /// the latest point a recovery from this base can reach (`X/Y`)
    end_lsn: String,
    /// when the last segment of the chain was archived (RFC 3339)
    end_time: String,
    /// the base backup's consistency point: the window's start
    window_start_lsn: String,
}

pub struct WalCheck;

impl Step for WalCheck {
    const NAME: &'static str = "wal.check";
    const SUMMARY: &'static str = "Check the WAL archive from a base backup's start through its end and on to the archive's end, across timelines: every segment there, the right size, decryptable and authenticated. A gap fails, named by segment and time.";
    type With = WalCheckWith;
    type Outputs = WalCheckOutputs;

    async fn run(ctx: StepCtx, w: WalCheckWith) -> Result<WalCheckOutputs, StepError> {
        let store = ctx.store(&w.storage)?;
        let key = KeySource::from_secret(&w.key);
        let bases = base::list(store.as_ref(), None).await?;
        let b = match &w.base {
            Some(want) => {
                let url = store.url();
                let k = want.strip_prefix(&format!("{}/", url.trim_end_matches('/'))).unwrap_or(want);
                bases.iter().find(|b| b.key == k || b.url == *want).ok_or_else(|| {
                    StepError::failed(format!("no base backup {want} in {url} (is the key or path right?)"))
                })?
            }
            None => bases
                .first()
                .ok_or_else(|| StepError::failed(format!("{} holds no base backup to check from", store.url())))?,
        };
        let (manifest, authenticated) = base::read_manifest(store.as_ref(), &b.key, Some(&key)).await?;
        if !authenticated {
            ctx.log(format!("warning: {}: the manifest is not authenticated (the base backup is not encrypted)", b.url));
        }
        let system = manifest
            .system()
            .ok_or_else(|| StepError::failed(format!("{}: the manifest's system identifier is not a number", b.url)))?;
        let b = ListedBase { manifest, ..b.clone() };
        // The segment holding the backup's end is archived once it is full (or archive_timeout
        // passes): a check right after the backup waits for it.
        let until = std::time::Instant::now() + w.wait;
        loop {
            let c = chain_of(store.as_ref(), system, &key, &b, false).await?;
            if c.reaches_stop || std::time::Instant::now() >= until {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let c = chain_of(store.as_ref(), system, &key, &b, w.verify).await?;
        for s in &c.path {
            ctx.log(format!("timeline {}: {} .. {}", s.tli, s.from, s.to.as_deref().unwrap_or("end")));
        }
        let out = WalCheckOutputs {
            base: b.url.clone(),
            system_identifier: c.system_identifier.clone(),
            timeline: c.timeline,
            segments: c.segments,
            gaps: c.gaps.len() as u64,
            damaged: c.damaged.len() as u64,
            last_segment: c.last_segment.clone().unwrap_or_default(),
            end_lsn: c.end_lsn.clone(),
            end_time: c.end_time.clone().unwrap_or_default(),
            window_start_lsn: b.manifest.stop_lsn.clone(),
        };
        let mut problems: Vec<String> = c.gaps.iter().map(|g| g.describe()).collect();
        problems.extend(c.damaged.iter().map(|(n, why)| format!("{n} does not open: {why}")));
        for p in &problems {
            ctx.log(format!("FAILED: {p}"));
        }
        if !c.reaches_stop {
            problems.insert(
                0,
                format!(
                    "the archive does not reach the base backup's end ({}): the unbroken chain from its start ({}) ends at {}",
                    b.manifest.stop_lsn, b.manifest.start_lsn, c.end_lsn
                ),
            );
        }
        if !problems.is_empty() {
            return Err(StepError::failed(format!("WAL archive of system {system}: {}", problems.join("; "))));
        }
        ctx.log(format!(
            "{} segments{} from {} to {} (archived {}): recoverable from {} to {}",
            c.segments,
            if w.verify { " opened and authenticated" } else { "" },
            c.path.first().map(|s| s.from.as_str()).unwrap_or(""),
            out.last_segment,
            out.end_time,
            b.manifest.stop_lsn,
            c.end_lsn
        ));
        Ok(out)
    }
}
