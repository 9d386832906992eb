//! `--report s3://bucket/reports` (or `gs://`, `az://`): the report directory in an object
//! store. The run writes its reports into a private local directory as usual, seeded with
//! the store's history so the page's charts cover earlier runs, then publishes them:
//!
//! - `run.json`, `report.json`, `report.md`, `report.html`: the latest run's, replaced;
//! - `report-YYYYMMDDhhmmss-NNNNNNNNN.html`: one per run, kept (`--keep N` deletes the oldest);
//! - the history, with append semantics on a store that has none: one object per run,
//!   `history/<time>-<random>.jsonl`, created without replacing anything; readers
//!   (`pgdrill report`, the next run's charts) concatenate them in name order.

use std::path::Path;
use std::sync::Arc;

use crate::error::Error;
use crate::storage::{Opened, Store};

const HISTORY_DIR: &str = "history";
const HISTORY_FILE: &str = "history.jsonl";

/// A report location in an object store, with its local working copy.
pub struct RemoteReport {
    remote: Arc<dyn Store>,
    /// A private directory (`.pgdrill-report-<pid>-...`): removed on drop, and by the next
    /// run's reaper if this process is killed.
    local: std::path::PathBuf,
    /// Bytes of history that were already in the store (the run appends after them).
    seeded: usize,
}

impl RemoteReport {
    /// Open `url` among the command's stores (whose uploads it aborts when stopped) and seed
    /// a private local directory with the store's history.
    pub async fn open(url: &str, stores: &Opened) -> Result<RemoteReport, Error> {
        let remote = stores.open_in(url, Path::new("")).map_err(Error::invalid)?;
        let history = history(&*remote).await?;
        let parent = std::env::temp_dir().join("pgdrill-mirror");
        let local = crate::storage::private_dir(&parent, "report")
            .map_err(|e| Error::io(format!("creating a private directory in {}", parent.display()), e))?;
        std::fs::write(local.join(HISTORY_FILE), &history)
            .map_err(|e| Error::io(format!("writing {}", local.display()), e))?;
        Ok(RemoteReport { remote, local, seeded: history.len() })
    }

    /// Where the reporters write.
    pub fn dir(&self) -> &Path {
        &self.local
    }

    /// Publish what the reporters wrote; keep only the newest `keep` dated pages, never
    /// removing `current`, this run's own (it counts as one of them).
    pub async fn publish(&self, keep: Option<usize>, current: Option<&str>) -> Result<(), Error> {
        let env = |m: String| Error::environment(m);
        let mut files: Vec<String> = std::fs::read_dir(self.dir())
            .map_err(|e| Error::io(format!("reading {}", self.dir().display()), e))?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| n != HISTORY_FILE && !n.starts_with('.'))
            .collect();
        // The dated page first and the latest views after it, so a reader that finds the new
        // report.html also finds its dated copy.
        files.sort_by_key(|n| (!n.starts_with("report-"), n.clone()));
        for name in &files {
            let bytes = std::fs::read(self.dir().join(name))
                .map_err(|e| Error::io(format!("reading {}", self.dir().join(name).display()), e))?;
            self.remote.put(name, bytes).await.map_err(env)?;
        }
        let history = std::fs::read(self.dir().join(HISTORY_FILE))
            .map_err(|e| Error::io(format!("reading {}", self.dir().join(HISTORY_FILE).display()), e))?;
        if history.len() > self.seeded {
            let stamp = crate::util::compact_utc_digits(time::OffsetDateTime::now_utc(), 6);
            let rand = crate::archive::hex(&crate::archive::crypto::random::<6>());
            let name = format!("{HISTORY_DIR}/{stamp}-{rand}.jsonl");
            self.remote.put_new(&name, history[self.seeded..].to_vec()).await.map_err(env)?;
        }
        if let Some(k) = keep {
            let mut dated: Vec<((String, u32, u32), String)> = self
                .remote
                .children("")
                .await
                .map_err(env)?
                .objects
                .into_iter()
                .filter(|n| Some(n.as_str()) != current)
                .filter_map(|n| super::compliance::dated_key(&n).map(|k| (k, n)))
                .collect();
            // Names carry the time: the oldest sort first.
            dated.sort();
            let keep_others = k.saturating_sub(usize::from(current.is_some()));
            for (_, old) in dated.iter().take(dated.len().saturating_sub(keep_others)) {
                self.remote.delete(old).await.map_err(env)?;
            }
        }
        Ok(())
    }
}

impl Drop for RemoteReport {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.local);
    }
}

/// The history of runs in the report location at `url` (what `pgdrill report` reads).
pub async fn read_history(url: &str, stores: &Opened) -> Result<String, Error> {
    let remote = stores.open_in(url, Path::new("")).map_err(Error::invalid)?;
    String::from_utf8(history(&*remote).await?)
        .map_err(|_| Error::environment(format!("{}: the history is not UTF-8 text", remote.url_of(HISTORY_DIR))))
}

/// Every history object in name (time) order, concatenated.
async fn history(remote: &dyn Store) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for name in remote.children(HISTORY_DIR).await.map_err(Error::environment)?.objects {
        if !name.ends_with(".jsonl") {
            continue;
        }
        let mut bytes = remote.read(&format!("{HISTORY_DIR}/{name}")).await.map_err(Error::environment)?;
        if !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        out.extend_from_slice(&bytes);
    }
    Ok(out)
}
