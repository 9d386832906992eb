//! The JSON run record: `run.json` in the report directory, with every step's outcome,
//! timings and outputs. Its `schema` field versions the format for tools that read it.

use std::path::PathBuf;

use super::{write_atomic, ReportSink, RunSummary};

pub struct JsonRecord {
    dir: PathBuf,
    /// How many dated reports (`report-YYYYMMDDhhmmss.html`) to keep; `None`: all.
    keep: Option<usize>,
    /// `--report` in an object store: `dir` is its local working copy, published at the end.
    remote: Option<super::remote::RemoteReport>,
}

impl JsonRecord {
    pub fn new(dir: PathBuf) -> Self {
        JsonRecord { dir, keep: None, remote: None }
    }

    /// Keep only the newest `keep` dated reports.
    pub fn keep(mut self, keep: Option<usize>) -> Self {
        self.keep = keep;
        self
    }

    /// Write into the object-store location `r` (through its local working copy).
    pub fn remote(r: super::remote::RemoteReport) -> Self {
        let mut j = JsonRecord::new(r.dir().to_path_buf());
        j.remote = Some(r);
        j
    }
}

impl ReportSink for JsonRecord {
    fn finish(&mut self, summary: &RunSummary) -> crate::Result<()> {
        // Through a JSON value, whose keys are sorted, as run.json always was.
        let v = serde_json::to_value(&summary.record)
            .map_err(|e| crate::Error::io("writing run.json", std::io::Error::other(e)))?;
        write_atomic(&self.dir.join("run.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, &v).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?;
        let dated = super::compliance::write(&self.dir, summary)?;
        if let Some(r) = &self.remote {
            let handle = tokio::runtime::Handle::current();
            let current = dated.as_deref().and_then(|p| p.file_name()).and_then(|n| n.to_str());
            return tokio::task::block_in_place(|| handle.block_on(r.publish(self.keep, current)));
        }
        if let Some(k) = self.keep {
            super::compliance::prune_dated(&self.dir, k, dated.as_deref())?;
        }
        Ok(())
    }
}
