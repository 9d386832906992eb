//! The evidence log in an object store (`--evidence s3://BUCKET/PREFIX`, or an object-store
//! `--report`, whose `evidence/` it then is), with the chain rules of a local log.
//!
//! A store has no lock and no append, so a run stages: before it starts, the store's
//! public key, checkpoint and newest record are copied into a private local directory (0700,
//! removed afterwards); the run's statement is appended there as to any local log (chained to
//! that newest record, a new signed checkpoint); then the new record (and its RFC 3161
//! timestamp) is created in the store with the store's conditional create, which never
//! replaces an object, and the checkpoint after it, so a reader never finds a checkpoint
//! counting a record the store lacks, and last the head it made (`heads/SEQ-SHA256.dsse.json`,
//! the checkpoint's signed payload under a name of its own), created once and never
//! replaced. Two runs that staged the same head race for one
//! sequence number: the store lets one create it, and the other stages again and appends
//! after it (`Publish::Taken`), so the chain never forks.
//!
//! With Object Lock (`lock`: an S3 bucket with Object Lock enabled, checked before the run),
//! every object is written with a retention (governance or compliance mode, until now plus
//! the period), the checkpoint included: each checkpoint is a new version of its key, and
//! the older versions stay locked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::immutable::{retain_until, Locked, Mode, Put};
use super::keys::SigningKey;
use super::log::{parse_head_name, parse_record_name, record_name, CHECKPOINT, HEADS, PUBLIC_KEY, RECORDS};
use crate::storage::{Opened, Store};
use crate::Error;

/// Where the evidence goes and how it is kept.
enum Target {
    /// Any object store: conditional create for records, the checkpoint replaced.
    Store(Arc<dyn Store>),
    /// An S3 bucket with Object Lock: every object written with retention.
    Locked { bucket: Box<Locked>, mode: Mode, retain: Duration },
}

/// An evidence log in an object store, staged in a private local directory.
pub struct RemoteLog {
    location: String,
    target: Target,
    local: PathBuf,
    /// Whether the store held the public key when staged (else this run writes it).
    had_key: bool,
}

/// What publishing the staged record did.
#[derive(Debug, PartialEq, Eq)]
pub enum Publish {
    /// The store has the record and the checkpoint now: its URL.
    Done(String),
    /// Another run created this sequence number first: stage again and append after it.
    Taken(u64),
}

fn env(location: &str) -> impl Fn(String) -> Error + '_ {
    move |e| Error::environment(format!("evidence location {}: {e}", crate::util::one_line(location)))
}

impl RemoteLog {
    /// Open `location` and stage its head for `key`; `lock`: write with Object Lock
    /// retention (`mode`, for `retain`), refused unless the bucket has Object Lock enabled.
    /// A log of another key is refused here, before the run changes anything. The store is
    /// the command's (`stores`), opened once for the run.
    pub async fn open(
        location: &str,
        key: &SigningKey,
        lock: Option<(Mode, Duration)>,
        stores: &Opened,
    ) -> Result<RemoteLog, Error> {
        let target = match lock {
            Some((mode, retain)) => Target::Locked { bucket: Box::new(Locked::open(location).await?), mode, retain },
            None => {
                let store = stores.open_in(location, Path::new("")).map_err(Error::invalid)?;
                store.probe().await.map_err(env(location))?;
                Target::Store(store)
            }
        };
        let parent = std::env::temp_dir().join("pgdrill-mirror");
        let local = crate::storage::private_dir(&parent, "evidence")
            .map_err(|e| Error::io(format!("creating a private directory in {}", parent.display()), e))?;
        let mut log = RemoteLog { location: location.to_string(), target, local, had_key: false };
        log.stage(key).await?;
        Ok(log)
    }

    /// The local staging directory the run appends to.
    pub fn dir(&self) -> &Path {
        &self.local
    }

    /// The location as given, for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Error> {
        match &self.target {
            Target::Locked { bucket, .. } => bucket.get(name).await,
            Target::Store(s) => match s.head(name).await.map_err(env(&self.location))? {
                None => Ok(None),
                Some(_) => s.read(name).await.map(Some).map_err(env(&self.location)),
            },
        }
    }

    /// The store's newest record's sequence number.
    async fn newest(&self) -> Result<Option<u64>, Error> {
        match &self.target {
            Target::Store(s) => {
                let metas = s.list(&format!("{RECORDS}/")).await.map_err(env(&self.location))?;
                Ok(metas.iter().filter_map(|m| m.key.rsplit('/').next().and_then(parse_record_name)).max())
            }
            // Listing through the S3 client is not needed: records are numbered from 1, so
            // the newest is found by probing upwards from the checkpoint's sequence.
            Target::Locked { .. } => {
                let mut n = match self.get(CHECKPOINT).await? {
                    Some(c) => checkpoint_sequence(&c).unwrap_or(0),
                    None => 0,
                };
                while self.get(&format!("{RECORDS}/{}", record_name(n + 1))).await?.is_some() {
                    n += 1;
                }
                Ok((n > 0).then_some(n))
            }
        }
    }

    /// (Re)make the staging directory: the store's public key, checkpoint and newest record,
    /// what a local append reads. The whole log stays in the store; `evidence verify` reads
    /// a copy of it.
    pub async fn stage(&mut self, key: &SigningKey) -> Result<(), Error> {
        let io = |p: &Path, e: std::io::Error| Error::io(format!("staging evidence in {}", p.display()), e);
        let records = self.local.join(RECORDS);
        for d in [&records, &self.local.join(HEADS)] {
            if d.exists() {
                std::fs::remove_dir_all(d).map_err(|e| io(d, e))?;
            }
        }
        for f in [PUBLIC_KEY, CHECKPOINT] {
            let _ = std::fs::remove_file(self.local.join(f));
        }
        std::fs::create_dir_all(&records).map_err(|e| io(&records, e))?;
        self.had_key = false;
        if let Some(k) = self.get(PUBLIC_KEY).await? {
            std::fs::write(self.local.join(PUBLIC_KEY), k).map_err(|e| io(&self.local, e))?;
            self.had_key = true;
        }
        if let Some(c) = self.get(CHECKPOINT).await? {
            std::fs::write(self.local.join(CHECKPOINT), c).map_err(|e| io(&self.local, e))?;
        }
        if let Some(n) = self.newest().await? {
            let name = format!("{RECORDS}/{}", record_name(n));
            let bytes = self.get(&name).await?.ok_or_else(|| {
                Error::environment(format!("evidence location {}: {name} vanished while staging", self.location))
            })?;
            std::fs::write(self.local.join(&name), bytes).map_err(|e| io(&self.local, e))?;
        }
        // Refuses another key's log, and writes this key's on first use.
        super::log::prepare(&self.local, key)
    }

    /// Put record `sequence` (with its timestamp, if any), the public key on first use, and
    /// then the checkpoint, into the store.
    pub async fn publish(&self, sequence: u64) -> Result<Publish, Error> {
        let record = format!("{RECORDS}/{}", record_name(sequence));
        let read = |name: &str| {
            let p = self.local.join(name);
            std::fs::read(&p).map_err(|e| Error::io(format!("reading {}", p.display()), e))
        };
        let mut created = vec![record.clone()];
        let tsr = format!("{RECORDS}/{}", super::timestamp::tsr_name(sequence));
        if self.local.join(&tsr).exists() {
            created.push(tsr);
        }
        if !self.had_key {
            created.push(PUBLIC_KEY.to_string());
        }
        for name in created {
            let bytes = read(&name)?;
            let taken = match &self.target {
                Target::Store(s) => match s.put_new(&name, bytes.clone()).await {
                    Ok(()) => false,
                    Err(e) => match s.head(&name).await {
                        Ok(Some(_)) => true,
                        _ => return Err(env(&self.location)(e)),
                    },
                },
                Target::Locked { bucket, mode, retain } => {
                    bucket.put(&name, bytes.clone(), *mode, &retain_until(*retain), true).await? == Put::Taken
                }
            };
            if taken {
                if name == record {
                    return Ok(Publish::Taken(sequence));
                }
                // The public key another run wrote first must be this key's, and a
                // timestamp is never replaced.
                if name == PUBLIC_KEY && self.get(PUBLIC_KEY).await?.as_deref() != Some(bytes.as_slice()) {
                    return Err(Error::invalid(format!(
                        "evidence location {}: another key's public key appeared there during the run",
                        self.location
                    )));
                }
            }
        }
        // Where a kill -9 mid-append to a store is tested: the record created, the store's
        // checkpoint still the one before it.
        crate::util::test_pause("evidence-store-record-created");
        let checkpoint = read(CHECKPOINT)?;
        match &self.target {
            Target::Store(s) => s.put(CHECKPOINT, checkpoint).await.map_err(env(&self.location))?,
            Target::Locked { bucket, mode, retain } => {
                bucket.put(CHECKPOINT, checkpoint, *mode, &retain_until(*retain), false).await?;
            }
        }
        // The head this append made, under its own name: created once, never replaced (one
        // already there is this same head, published by an earlier try).
        crate::util::test_pause("evidence-store-checkpoint-written");
        let prefix = format!("{sequence:08}-");
        let heads = std::fs::read_dir(self.local.join(HEADS)).into_iter().flatten().flatten();
        for h in heads.filter_map(|e| e.file_name().to_str().map(str::to_string)) {
            if !h.starts_with(&prefix) || parse_head_name(&h).is_none() {
                continue;
            }
            let name = format!("{HEADS}/{h}");
            let bytes = read(&name)?;
            match &self.target {
                Target::Store(s) => {
                    if let Err(e) = s.put_new(&name, bytes).await {
                        if !matches!(s.head(&name).await, Ok(Some(_))) {
                            return Err(env(&self.location)(e));
                        }
                    }
                }
                Target::Locked { bucket, mode, retain } => {
                    bucket.put(&name, bytes, *mode, &retain_until(*retain), true).await?;
                }
            }
        }
        Ok(Publish::Done(format!("{}/{record}", self.location.trim_end_matches('/'))))
    }
}

impl Drop for RemoteLog {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

/// The sequence a signed checkpoint's payload names (its signature is `evidence verify`'s to
/// check; here it only says where to start looking).
fn checkpoint_sequence(envelope: &[u8]) -> Option<u64> {
    use base64::Engine as _;
    let env: serde_json::Value = serde_json::from_slice(envelope).ok()?;
    let payload = base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str()?).ok()?;
    serde_json::from_slice::<serde_json::Value>(&payload).ok()?["sequence"].as_u64()
}

/// Copy the whole log at `location` into `dir` (a new local directory), for `evidence
/// verify` and `evidence pack` of a log kept in a store, opened among the command's `stores`.
pub async fn download(location: &str, dir: &Path, stores: &Opened) -> Result<usize, Error> {
    let store = stores.open_in(location, Path::new("")).map_err(Error::invalid)?;
    for d in [RECORDS, HEADS] {
        std::fs::create_dir_all(dir.join(d)).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    }
    let mut n = 0;
    for m in store.list("").await.map_err(env(location))? {
        let name = m.key.as_str();
        let wanted = name == PUBLIC_KEY
            || name == CHECKPOINT
            || [RECORDS, HEADS]
                .iter()
                .any(|d| name.strip_prefix(&format!("{d}/")).is_some_and(|r| !r.contains('/') && !r.starts_with('.')));
        if !wanted {
            continue;
        }
        let bytes = store.read(name).await.map_err(env(location))?;
        std::fs::write(dir.join(name), bytes)
            .map_err(|e| Error::io(format!("writing {}", dir.join(name).display()), e))?;
        n += 1;
    }
    Ok(n)
}
