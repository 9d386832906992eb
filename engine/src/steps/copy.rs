//! `backup.copy`: one backup (and its manifest) from one location to another, local or an
//! object store, for the 3-2-1 rule. The copy is checked: its size and sha256, read back from
//! where it landed, must be the source's (and the manifest's, for pgdrill's own backups).
//! Nothing is replaced: a copy already there with the same sha256 is reported as such, one
//! with other contents is a failure.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Fields, Step, StepCtx, StepError, With, WithError};
use crate::storage::{remote, Store};

#[derive(Debug, Deserialize, Fields)]
#[serde(deny_unknown_fields)]
pub struct CopyWith {
    /// the backup: a path or an object URL (e.g. steps.backup.outputs.path)
    #[field(ty = "path")]
    backup: String,
    /// the destination storage: a directory or s3://, gs://, az:// URL
    #[field(ty = "path")]
    to: String,
    /// the folder in the destination (default: the manifest's database, else the source's folder)
    #[serde(default)]
    database: Option<String>,
}

impl With for CopyWith {
    fn check(&self) -> Result<(), WithError> {
        if self.to.trim().is_empty() {
            return Err(WithError::new("to", "no destination: give a directory or an object store URL (s3://...)"));
        }
        Ok(())
    }
}

#[derive(Debug, Default, Serialize, Fields)]
#[fields(outputs)]
pub struct CopyOutputs {
    /// the copy
    path: String,
    /// its sha256, read back from the destination
    sha256: String,
    /// its size in bytes
    size: u64,
    /// false when the same copy was already there
    copied: bool,
}

pub struct Copy;

impl Step for Copy {
    const NAME: &'static str = "backup.copy";
    const SUMMARY: &'static str =
        "Copy a backup and its manifest to another location (local or object store), checking size and sha256 of the copy.";
    const REPORT_LOG: bool = true;
    type With = CopyWith;
    type Outputs = CopyOutputs;

    async fn run(ctx: StepCtx, w: CopyWith) -> Result<CopyOutputs, StepError> {
        let src = ctx.backup_file(&w.backup).await?;
        let shown_src = if crate::storage::is_remote(&w.backup) { w.backup.trim().to_string() } else { remote::display(&src) };
        let name = src
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| StepError::invalid(format!("{shown_src} names no file")))?;
        if src.is_dir() {
            return Err(StepError::invalid(format!(
                "{shown_src} is a directory dump: copy it as a tar or with the store's own tools"
            )));
        }
        let manifest_file = crate::backup::layout::manifest_path(&src);
        let manifest = std::fs::read(&manifest_file).ok();
        let recorded: Option<crate::backup::Manifest> =
            manifest.as_deref().and_then(|b| serde_json::from_slice(b).ok());
        let folder_db = match (&w.database, &recorded) {
            (Some(d), _) if !d.is_empty() => d.clone(),
            (_, Some(m)) => m.stored_as().to_string(),
            _ => src
                .parent()
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned())
                .and_then(|f| crate::backup::layout::database_of_folder(&f))
                .ok_or_else(|| StepError::invalid(format!("which database is {shown_src} of? give `database`")))?,
        };
        let folder = crate::backup::layout::folder_name(&folder_db);
        let rel = format!("{folder}/{name}");
        let (sha, size) = {
            let p = src.clone();
            tokio::task::spawn_blocking(move || digest_file(&p))
                .await
                .map_err(|e| StepError::environment(e.to_string()))?
                .map_err(|e| StepError::environment(format!("reading {shown_src}: {e}")))?
        };
        if let Some(m) = &recorded {
            if m.sha256 != sha || m.sizes.stored != size {
                return Err(StepError::failed(format!(
                    "{shown_src} does not match its manifest (sha256 {sha}, {size} bytes; the manifest says {}, {} bytes): refusing to copy a damaged backup",
                    m.sha256, m.sizes.stored
                )));
            }
        }
        let to = ctx.store(&w.to)?;
        let copied = to_store(&*to, &rel, &src, manifest.as_deref(), &sha, size).await?;
        let dest = to.url_of(&rel);
        if copied {
            ctx.log(format!("copied {shown_src} to {dest} ({size} bytes, sha256 {sha}, read back and matched)"));
        } else {
            ctx.log(format!("{dest} is already there with the same sha256 {sha}: nothing copied"));
        }
        Ok(CopyOutputs { path: dest, sha256: sha, size, copied })
    }
}

fn digest_file(p: &Path) -> std::io::Result<(String, u64)> {
    use sha2::Digest;
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(p)?);
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf)?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((crate::archive::hex(&h.finalize()), n))
}

/// sha256 and size of `key` in `store`, read back as a stream (memory stays bounded).
async fn digest_in(store: &dyn Store, key: &str) -> Result<(String, u64), String> {
    let mut r = store.open(key, None, None).await?;
    tokio::task::spawn_blocking(move || {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = r.read(&mut buf)?;
            if k == 0 {
                break;
            }
            h.update(&buf[..k]);
            n += k as u64;
        }
        Ok::<_, std::io::Error>((crate::archive::hex(&h.finalize()), n))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("reading {}: {e}", store.url_of(key)))
}

/// Copy `src` (and its manifest) to `key` in `store`: nothing under the key until the copy
/// is whole, read back and matched; an existing copy with the same sha256 is kept
/// (`false`), one with other contents is never replaced.
async fn to_store(
    store: &dyn Store,
    key: &str,
    src: &Path,
    manifest: Option<&[u8]>,
    sha: &str,
    size: u64,
) -> Result<bool, StepError> {
    let env = StepError::environment;
    if store.head(key).await.map_err(env)?.is_some() {
        let (there, n) = digest_in(store, key).await.map_err(env)?;
        if there == sha && n == size {
            return Ok(false);
        }
        return Err(StepError::failed(format!(
            "{} already exists with other contents (sha256 {there}): nothing was replaced",
            store.url_of(key)
        )));
    }
    let mut writer = store.create(key).await.map_err(env)?;
    let p = src.to_path_buf();
    let (writer, sent) = tokio::task::spawn_blocking(move || {
        let sent = std::fs::File::open(&p).and_then(|f| {
            let mut f = std::io::BufReader::with_capacity(1 << 20, f);
            std::io::copy(&mut f, &mut writer)
        });
        (writer, sent)
    })
    .await
    .map_err(|e| StepError::environment(e.to_string()))?;
    if let Err(e) = sent {
        writer.abort().await;
        return Err(StepError::environment(format!("copying to {}: {e}", store.url_of(key))));
    }
    writer.publish().await.map_err(env)?;
    let (back, n) = digest_in(store, key).await.map_err(env)?;
    if back != sha || n != size {
        let _ = store.delete(key).await;
        return Err(StepError::environment(format!(
            "the copy {} reads back as {n} bytes with sha256 {back}, not {size} bytes with {sha}: it was removed",
            store.url_of(key)
        )));
    }
    if let Some(m) = manifest {
        if let Err(e) = store.put_new(&crate::backup::layout::manifest_key(key), m.to_vec()).await {
            let _ = store.delete(key).await;
            return Err(StepError::environment(format!("writing the copy's manifest: {e}")));
        }
    }
    Ok(true)
}
