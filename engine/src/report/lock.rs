//! A local report directory belongs to one run at a time, and where reports go is checked
//! before the first step: two runs writing the same directory would overwrite each other's
//! files, and a location found read-only only at the end leaves a run whose side effects
//! happened without evidence.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::Error;

/// The lock file inside a report directory; it stays (removing it would let a third run
/// lock a new file while a second still holds the old one).
const LOCK_FILE: &str = ".pgdrill.lock";

/// Held for the whole run; the lock goes with it (or with the process).
#[derive(Debug)]
pub struct DirLock {
    _file: nix::fcntl::Flock<std::fs::File>,
}

/// Create `dir` if needed, prove it writable and take its lock; refused when another run
/// holds it (naming that run's pid).
pub fn lock_dir(dir: &Path, what: &str) -> Result<DirLock, Error> {
    let shown = super::visible(&dir.display().to_string()).into_owned();
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::environment(format!("{what} {shown}: cannot create the directory: {e}")))?;
    let path = dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::environment(format!("{what} {shown} is not writable: {e}")))?;
    let mut file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(f) => f,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            let by = if holder.is_empty() { String::new() } else { format!(" (pid {})", super::visible(holder)) };
            return Err(Error::environment(format!(
                "{what} {shown} is in use by another pgdrill run{by}: give each run its own directory"
            )));
        }
        Err((_, e)) => return Err(Error::environment(format!("{what} {shown}: cannot lock it: {e}"))),
    };
    file.set_len(0)
        .and_then(|_| file.write_all(format!("{}\n", std::process::id()).as_bytes()))
        .map_err(|e| Error::environment(format!("{what} {shown} is not writable: {e}")))?;
    Ok(DirLock { _file: file })
}

/// Prove that a file can be written at `path` (its directory made if needed), without
/// touching `path` itself.
pub fn check_writable(path: &Path, what: &str) -> Result<(), Error> {
    let shown = super::visible(&path.display().to_string()).into_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| Error::environment(format!("{what} {shown}: cannot create its directory: {e}")))?;
    let probe = tempfile::Builder::new()
        .prefix(".pgdrill-probe-")
        .tempfile_in(&parent)
        .map_err(|e| Error::environment(format!("{what} {shown}: its directory is not writable: {e}")))?;
    drop(probe);
    Ok(())
}
