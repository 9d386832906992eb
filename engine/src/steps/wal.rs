//! `wal.check`: is the WAL archive whole from a base backup's start through its end and on to
//! the archive's end? And the view of a store's physical backups that `pgdrill wal list` and
//! `backups list` show: each system's base backups, timelines and recoverable windows. Here
//! because it reads both `backup::base` and `wal`, which stand in one layer.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fields, step, StepCtx, StepError, With};
use crate::archive::KeySource;
use crate::backup::base::{self, ListedBase};
use crate::error::Failure;
use crate::storage::Store;
use crate::wal::check::{self, Continuity, Inventory, Timeline, Tree};
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

/// Every system a store holds (see `SystemView`), from one LIST pass over its `.cluster/`
/// tree: what `wal list` and `backups list` show.
pub async fn system_views(store: &dyn Store, key: &KeySource) -> Result<Vec<SystemView>, Failure> {
    let tree = Tree::list(store).await?;
    let mut out = Vec::new();
    for system in tree.systems() {
        out.push(system_view(store, &tree, system, key).await?);
    }
    Ok(out)
}

/// What a store holds of one system (see `SystemView`), from its listed `tree`: manifests
/// and history files are read, nothing is listed again, segments are not opened (`wal.check`
/// does that).
pub async fn system_view(store: &dyn Store, tree: &Tree, system: u64, key: &KeySource) -> Result<SystemView, Failure> {
    let bases = base::list_from(store, tree.objects(), Some(system)).await?;
    let seg_size = match bases.first() {
        Some(b) => b.manifest.wal_segment_size,
        None => check::seg_size_in(store, tree.objects().iter().cloned(), system, key).await?.unwrap_or(DEFAULT_SEG),
    };
    let inv = tree.inventory(system, seg_size);
    let mut views = Vec::new();
    let mut windows: Vec<Window> = Vec::new();
    for b in &bases {
        let (window, gaps) = match chain_in(store, &inv, key, b, false).await {
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
    let inv = check::inventory(store, system, b.manifest.wal_segment_size).await?;
    chain_in(store, &inv, key, b, verify).await
}

/// `chain_of` over an inventory already listed (of the base backup's segment size).
async fn chain_in(
    store: &dyn Store,
    inv: &Inventory,
    key: &KeySource,
    b: &ListedBase,
    verify: bool,
) -> Result<Continuity, Failure> {
    let bad = |what: &str| Failure::failed(format!("{}: its manifest's {what} is not an LSN", b.url));
    let start = Lsn::parse(&b.manifest.start_lsn).ok_or_else(|| bad("start_lsn"))?;
    let stop = Lsn::parse(&b.manifest.stop_lsn).ok_or_else(|| bad("stop_lsn"))?;
    if inv.seg_size != b.manifest.wal_segment_size {
        return Err(Failure::failed(format!(
            "{}: its manifest gives WAL segments of {} bytes, the system's other base backups {}",
            b.url, b.manifest.wal_segment_size, inv.seg_size
        )));
    }
    check::continuity_in(store, inv, key, (b.manifest.timeline, start), stop, verify).await
}

/// The systems as a node_exporter textfile: when each last archived, each timeline's
/// recoverable window, and how many gaps its timelines have (the alert rules read them).
pub fn metrics(systems: &[SystemView]) -> String {
    let epoch = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|t| t.unix_timestamp_nanos() as f64 / 1e9)
            .ok()
    };
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    // System identifiers are digits and timelines numbers: nothing to escape in a label.
    let sys = |s: &SystemView| format!("system=\"{}\"", s.system_identifier);
    gauge(
        "pgdrill_wal_last_archived_timestamp_seconds",
        "When the newest WAL file of the system was archived (Unix seconds).",
        systems.iter().filter_map(|s| Some((sys(s), s.last_archived_epoch?))).collect(),
    );
    let window = |end: bool| -> Vec<(String, f64)> {
        systems
            .iter()
            .flat_map(|s| {
                s.windows.iter().filter_map(move |w| {
                    let t = if end { &w.latest_time } else { &w.earliest_time };
                    Some((format!("{},timeline=\"{}\"", sys(s), w.timeline), epoch(t)?))
                })
            })
            .collect()
    };
    gauge(
        "pgdrill_wal_window_start_timestamp_seconds",
        "The earliest point a point-in-time recovery can reach (the oldest covered base backup's end).",
        window(false),
    );
    gauge(
        "pgdrill_wal_window_end_timestamp_seconds",
        "The latest point a point-in-time recovery can reach (the end of the unbroken WAL chain).",
        window(true),
    );
    gauge(
        "pgdrill_wal_gaps",
        "Gaps (missing segments) between the first and last archived segment of each timeline.",
        systems.iter().map(|s| (sys(s), s.timelines.iter().map(|t| t.gaps.len()).sum::<usize>() as f64)).collect(),
    );
    out
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

/// Check the WAL archive from a base backup's start through its end and on to the archive's end, across timelines:
/// every segment there, the right size, decryptable and authenticated. A gap fails, named by segment and time.
#[step(name = "wal.check")]
impl WalCheck {
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
            ctx.warn(format!("{}: the manifest is not authenticated (the base backup is not encrypted)", b.url));
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

/// What `prune_physical_in` decided for one system.
#[derive(Debug, Default, Clone)]
pub struct Pruned {
    pub kept_bases: Vec<String>,
    pub deleted_bases: Vec<String>,
    pub deleted_wal: Vec<String>,
    /// The first segment every kept base backup's chain starts at or after.
    pub horizon: Option<String>,
}

/// Retention of one system's base backups (grandfather-father-son, as for dumps) and of the
/// WAL: every segment from the oldest kept base backup's start on is kept, older ones (and
/// older `.partial` and `.backup` files) go; history files always stay. Without a kept base
/// backup no WAL is deleted. `log` gets one line per object; deletes only when `apply`.
/// Read from a listed `tree` (one LIST pass for every system pruned).
pub async fn prune_physical_in(
    store: &dyn Store,
    tree: &Tree,
    system: u64,
    policy: crate::backup::retention::Policy,
    now: time::OffsetDateTime,
    apply: bool,
    log: &(dyn Fn(String) + Send + Sync),
) -> Result<Pruned, Failure> {
    use crate::backup::retention::{decide_at, Item};
    let bases = base::list_from(store, tree.objects(), Some(system)).await?;
    let items: Vec<Item> =
        bases.iter().map(|b| Item { name: b.key.clone(), at: b.manifest.started_at, verified: false }).collect();
    let mut out = Pruned::default();
    let verb = if apply { "delete" } else { "would delete" };
    let mut kept: Vec<&ListedBase> = Vec::new();
    for d in decide_at(&items, policy, now) {
        let Some(b) = bases.iter().find(|b| b.key == d.name) else { continue };
        if d.keep {
            log(format!("keep   {} ({})", b.url, d.reason));
            out.kept_bases.push(b.url.clone());
            kept.push(b);
            continue;
        }
        if apply {
            // The backup first: a manifest without its backup is reported, never used.
            store.delete(&b.key).await.map_err(Failure::environment)?;
            store.delete(&crate::backup::layout::manifest_key(&b.key)).await.map_err(Failure::environment)?;
        }
        log(format!("{verb} {} ({})", b.url, d.reason));
        out.deleted_bases.push(b.url.clone());
    }
    // The WAL every kept base backup needs starts at the oldest one's start.
    let horizon = kept
        .iter()
        .filter_map(|b| Lsn::parse(&b.manifest.start_lsn).map(|l| (l.segno(b.manifest.wal_segment_size), b)))
        .min_by_key(|(s, _)| *s);
    let Some((horizon, oldest)) = horizon else {
        log(format!("system {system}: no base backup kept, so no WAL is deleted"));
        return Ok(out);
    };
    let seg_size = oldest.manifest.wal_segment_size;
    out.horizon = Some(crate::wal::segment_name(oldest.manifest.timeline, horizon, seg_size));
    let inv = tree.inventory(system, seg_size);
    let mut old: Vec<(u64, String, String)> = Vec::new();
    for ((tli, segno), m) in inv.segments.iter().chain(inv.partials.iter()) {
        if *segno < horizon {
            old.push((*segno, m.key.clone(), crate::wal::segment_name(*tli, *segno, seg_size)));
        }
    }
    for m in &inv.backups {
        let name = m.key.rsplit('/').next().unwrap_or(&m.key).trim_end_matches(".pgdrill");
        if let Some(crate::wal::WalName::Backup { log, seg, .. }) = crate::wal::WalName::parse(name) {
            let segno = crate::wal::segno_of(log, seg, seg_size);
            if segno < horizon {
                old.push((segno, m.key.clone(), name.to_string()));
            }
        }
    }
    old.sort();
    for (_, key, name) in &old {
        if apply {
            store.delete(key).await.map_err(Failure::environment)?;
        }
        out.deleted_wal.push(name.clone());
    }
    if let (Some(first), Some(last)) = (old.first(), old.last()) {
        log(format!(
            "{verb} {} WAL files {} .. {} (before {}, where the oldest kept base backup starts)",
            old.len(),
            first.2,
            last.2,
            out.horizon.as_deref().unwrap_or("")
        ));
    } else {
        log(format!("keep   every WAL file (none before {})", out.horizon.as_deref().unwrap_or("")));
    }
    Ok(out)
}

super::retention::keeping! {
    pub struct PruneWith {
        /// where the base backups and the WAL archive are: a directory, s3://, gs://, az://
        #[field(ty = "path")]
        storage: String,
        /// the system to prune (default: every system in storage)
        #[serde(default, deserialize_with = "super::de::opt_text")]
        system_identifier: Option<String>,
        @keep {
            /// newest base backup of each of the last N days
            daily,
            /// newest of each of the last N ISO weeks
            weekly,
            /// newest of each of the last N months
            monthly,
            /// newest of each of the last N years
            yearly,
            /// never fewer than this many base backups (default 1)
            min_keep,
            /// keep every base backup younger than this, e.g. 30d
            within,
        }
        /// delete (default false: a dry run that lists what would go)
        #[serde(default, deserialize_with = "super::de::boolean")]
        apply: bool,
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct PruneOutputs {
    /// base backups kept
    kept: usize,
    /// base backups deleted (or that would be, in a dry run)
    deleted: Vec<String>,
    /// WAL files deleted (or that would be)
    deleted_wal: Vec<String>,
    /// whether anything was deleted (apply: true)
    applied: bool,
}

/// Retention of base backups (grandfather-father-son) and of the WAL archive: every WAL file a kept base backup needs
/// stays, older ones go; a dry run unless apply: true.
#[step(name = "wal.prune", report_log)]
impl WalPrune {
    async fn run(ctx: StepCtx, w: PruneWith) -> Result<PruneOutputs, StepError> {
        let store = ctx.store(&w.storage)?;
        let tree = Tree::list(store.as_ref()).await?;
        let systems = match w.system_identifier.as_deref().filter(|s| !s.is_empty()) {
            Some(s) => vec![s
                .parse::<u64>()
                .map_err(|_| StepError::field("system_identifier", format!("`{s}` is not a system identifier")))?],
            None => tree.systems(),
        };
        let policy = w.policy();
        let mut out = PruneOutputs { applied: w.apply, ..Default::default() };
        let log = |l: String| ctx.log(l);
        for system in systems {
            let p =
                prune_physical_in(store.as_ref(), &tree, system, policy, time::OffsetDateTime::now_utc(), w.apply, &log)
                    .await?;
            out.kept += p.kept_bases.len();
            out.deleted.extend(p.deleted_bases);
            out.deleted_wal.extend(p.deleted_wal);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::local::FsStore;
    use std::path::Path;

    const SEG: u64 = 1 << 20;
    const SYSTEM: u64 = 7_700_000_000_000_000_001;

    fn segment(segno: u64) -> Vec<u8> {
        let mut b = vec![0u8; SEG as usize];
        b[2..4].copy_from_slice(&0x0006u16.to_ne_bytes());
        b[8..16].copy_from_slice(&(segno * SEG).to_ne_bytes());
        b[24..32].copy_from_slice(&SYSTEM.to_ne_bytes());
        b[32..36].copy_from_slice(&(SEG as u32).to_ne_bytes());
        b
    }

    async fn base(store: &FsStore, stamp: &str, started: time::OffsetDateTime, start_segno: u64) -> String {
        let key = format!("{}{stamp}.base.tar.pgdrill", base::base_prefix(SYSTEM));
        store.put_new(&key, b"not read by retention".to_vec()).await.expect("object");
        let m = serde_json::json!({
            "schema": base::BASE_SCHEMA, "kind": "base", "pgdrill_version": "0", "system_identifier": SYSTEM.to_string(),
            "timeline": 1, "start_lsn": Lsn(start_segno * SEG + 40).to_string(), "stop_lsn": Lsn(start_segno * SEG + 400).to_string(),
            "server_version": "15", "server_major": 15, "pg_basebackup_version": "15", "wal_segment_size": SEG,
            "wal_method": "none", "tablespaces": [], "files": 1, "backup_manifest_sha256": "", "codec": "zstd", "level": 3,
            "cipher": "none", "sizes": {"raw": 1, "compressed": 1, "stored": 1}, "sha256": "",
            "started_at": crate::util::rfc3339(started), "finished_at": crate::util::rfc3339(started),
        });
        store.put_new(&format!("{key}.manifest.json"), serde_json::to_vec(&m).expect("json")).await.expect("manifest");
        key
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn retention_deletes_only_wal_older_than_the_oldest_kept_base_backup_and_a_dry_run_deletes_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let data = tempfile::tempdir().expect("tmp");
        std::fs::create_dir_all(data.path().join("global")).expect("global");
        std::fs::create_dir_all(data.path().join("pg_wal")).expect("pg_wal");
        let mut control = SYSTEM.to_ne_bytes().to_vec();
        control.resize(8192, 0);
        std::fs::write(data.path().join("global/pg_control"), control).expect("pg_control");
        let store = FsStore::new(dir.path());
        let cfg = crate::wal::Config {
            storage: dir.path().display().to_string(),
            key: KeySource::from_secret("6b1f3c2a9d8e7f60112233445566778899aabbccddeeff00112233445566aa77"),
            level: 1,
            credentials: Vec::new(),
        };
        for segno in 1..=6 {
            let name = crate::wal::segment_name(1, segno, SEG);
            std::fs::write(data.path().join("pg_wal").join(&name), segment(segno)).expect("write");
            crate::wal::push_to(&store, &cfg, &Path::new("pg_wal").join(&name), data.path()).await.expect("push");
        }
        std::fs::write(data.path().join("pg_wal/00000002.history"), "1\t0/100000\tx\n").expect("history");
        crate::wal::push_to(&store, &cfg, Path::new("pg_wal/00000002.history"), data.path()).await.expect("push");
        let now = time::OffsetDateTime::now_utc();
        let old = base(&store, "20260101T000000.000Z", now - time::Duration::days(10), 2).await;
        let new = base(&store, "20260111T000000.000Z", now, 4).await;
        let policy = crate::backup::retention::Policy { min_keep: 1, ..Default::default() };
        let lines = std::sync::Mutex::new(Vec::new());
        let log = |l: String| lines.lock().expect("lock").push(l);

        let dry = prune_physical_in(&store, &Tree::list(&store).await.expect("list"), SYSTEM, policy, now, false, &log).await.expect("dry run");
        assert_eq!(dry.deleted_bases.len(), 1);
        assert_eq!(dry.deleted_wal, (1..=3).map(|s| crate::wal::segment_name(1, s, SEG)).collect::<Vec<_>>());
        assert!(store.head(&old).await.expect("head").is_some(), "a dry run deleted a base backup");
        assert!(lines.lock().expect("lock").iter().any(|l| l.starts_with("would delete 3 WAL files")), "{lines:?}");

        prune_physical_in(&store, &Tree::list(&store).await.expect("list"), SYSTEM, policy, now, true, &log).await.expect("apply");
        assert!(store.head(&old).await.expect("head").is_none() && store.head(&new).await.expect("head").is_some());
        let inv = check::inventory(&store, SYSTEM, SEG).await.expect("inventory");
        assert_eq!(inv.segments.keys().map(|(_, s)| *s).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(inv.histories.len(), 1, "a history file was deleted");

        // No base backup left to keep: no WAL is deleted.
        store.delete(&new).await.expect("delete");
        store.delete(&format!("{new}.manifest.json")).await.expect("delete");
        let none = prune_physical_in(&store, &Tree::list(&store).await.expect("list"), SYSTEM, policy, now, true, &log).await.expect("apply");
        assert!(none.deleted_wal.is_empty());
    }
}
