//! The JSON run record: `run.json` in the report directory, with every step's outcome,
//! timings and outputs. Its `schema` field versions the format for tools that read it.

use std::path::PathBuf;

use serde_json::json;

use super::{write_atomic, Suites};
use crate::exec::{Event, Reporter};

pub const SCHEMA: &str = "pgdrill.run/1";

pub struct JsonRecord {
    dir: PathBuf,
    /// How many dated reports (`report-YYYYMMDDhhmmss.html`) to keep; `None`: all.
    keep: Option<usize>,
    suites: Suites,
    started_at: time::OffsetDateTime,
    /// `--report` in an object store: `dir` is its local working copy, published at the end.
    remote: Option<super::remote::RemoteReport>,
}

impl JsonRecord {
    pub fn new(dir: PathBuf) -> Self {
        JsonRecord {
            dir,
            keep: None,
            suites: Suites::default(),
            started_at: time::OffsetDateTime::now_utc(),
            remote: None,
        }
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

    fn value(&self) -> serde_json::Value {
        let fmt = &time::format_description::well_known::Rfc3339;
        let suites: Vec<_> = self
            .suites
            .list
            .iter()
            .map(|s| {
                json!({
                    "id": s.id,
                    "parent": s.parent,
                    "name": s.name,
                    "file": s.file,
                    "kind": s.kind,
                    "started_at": s.started_at.format(fmt).unwrap_or_default(),
                    "duration": (s.duration.as_secs_f64() * 1000.0).round() / 1000.0,
                    "outcome": s.outcome,
                    "exit_code": s.exit.map(|e| e.code()),
                    "message": s.message,
                    "steps": s.steps,
                })
            })
            .collect();
        let outcome = self.suites.list.first().and_then(|s| s.outcome);
        let exit_code = self.suites.list.first().and_then(|s| s.exit).map(|e| e.code());
        json!({
            "schema": SCHEMA,
            "pgdrill_version": env!("CARGO_PKG_VERSION"),
            "started_at": self.started_at.format(fmt).unwrap_or_default(),
            "finished_at": time::OffsetDateTime::now_utc().format(fmt).unwrap_or_default(),
            "outcome": outcome,
            "exit_code": exit_code,
            "suites": suites,
        })
    }
}

impl Reporter for JsonRecord {
    fn on_event(&mut self, event: &Event) {
        self.suites.on_event(event);
    }

    fn finish(&mut self) -> crate::Result<()> {
        let v = self.value();
        write_atomic(&self.dir.join("run.json"), |w| {
            serde_json::to_writer_pretty(&mut *w, &v).map_err(std::io::Error::other)?;
            w.write_all(b"\n")
        })?;
        let dated = super::compliance::write(&self.dir, &v)?;
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
