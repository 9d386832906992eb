//! Where objects live: the `Store` seam (`store`), a local directory (`local`) and object
//! stores (`remote`), and the private working directories pgdrill writes in. What the
//! objects mean (archives, manifests, ledgers) is backup/'s business (`backup::layout`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub mod bounded;
pub mod gcs;
pub mod local;
pub mod location;
pub mod lock;
pub mod remote;
pub mod store;
pub mod tree;
pub use location::{canonical_in, local_dir, local_dir_in, open, Named, Opened, StoreOpener, Streamed};
pub use remote::{credential_values, credential_values_of};
pub use store::{store_failure, Children, Meta, Published, Space, Store, Unproven, Watched, Writer};

/// Where plaintext and half-written files live: a private directory per use, mode 0700,
/// created in the directory it belongs to (the same disk as the final file, so publishing
/// is a rename), named `.pgdrill-<kind>-<pid>-<start>-<host>-<random>` after its owner: the
/// process id, the process's start time (so a reused pid is not mistaken for the owner)
/// and a hash of the host name (storage may be shared between machines, whose pids mean
/// nothing here). A kill -9 leaves it behind; the next private directory made in the same
/// place removes every one whose owner on this host is gone.
pub fn private_dir(parent: &Path, kind: &str) -> io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    if !PRIVATE_KINDS.contains(&kind) {
        // A kind `reap` does not know would be left for good by a killed owner.
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no private directory of kind {kind:?}")));
    }
    fs::create_dir_all(parent)?;
    reap(parent);
    let (pid, start) = (std::process::id(), start_time(std::process::id()).unwrap_or(0));
    let rand: u64 = rand_u64();
    let p = parent.join(format!(".pgdrill-{kind}-{pid}-{start}-{}-{rand:016x}", host_tag()));
    fs::DirBuilder::new().mode(0o700).create(&p)?;
    // The umask cannot widen 0700, but an inherited default ACL could: set it explicitly.
    fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(p)
}

fn rand_u64() -> u64 {
    u64::from_le_bytes(crate::archive::crypto::random::<8>())
}

/// A short tag of this host's name (names may hold `-`, and need not be shown).
fn host_tag() -> String {
    use sha2::Digest;
    let host = crate::util::hostname().unwrap_or_default();
    crate::archive::hex(&sha2::Sha256::digest(host.as_bytes())[..4])
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat).
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after the last `)`.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Every kind `private_dir` makes, and so every kind `reap` removes once its owner is gone: a
/// staged dump, a partial backup, a store's mirror, a report's working copy, gpg's home
/// (`backup::envelope::GpgHome`), an evidence log's staging copy (`evidence::remote`).
const PRIVATE_KINDS: &[&str] = &["stage", "partial", "mirror", "report", "gpg", "evidence"];

/// Remove private directories (and staged files of older versions) in `dir` whose owning
/// process on this host is gone. Returns what was removed.
pub fn reap(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = fs::read_dir(dir) else { return removed };
    let host = host_tag();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) =
            PRIVATE_KINDS.iter().find_map(|k| name.strip_prefix(&format!(".pgdrill-{k}-")).map(str::to_string))
        else {
            continue;
        };
        let rest = rest.as_str();
        let parts: Vec<&str> = rest.splitn(4, '-').collect();
        let Some(pid) = parts.first().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let gone = match parts.as_slice() {
            [_, start, tag, _] if start.chars().all(|c| c.is_ascii_digit()) => {
                if *tag != host {
                    continue;
                }
                start_time(pid) != start.parse().ok()
            }
            // `.pgdrill-stage-<pid>-<random><suffix>`, written before owners were recorded
            // with their start time: the pid alone.
            _ => start_time(pid).is_none(),
        };
        if gone {
            let p = e.path();
            let ok = if p.is_dir() { fs::remove_dir_all(&p) } else { fs::remove_file(&p) };
            if ok.is_ok() {
                removed.push(p);
            }
        }
    }
    removed
}

/// Write a small file (a manifest) atomically with mode 0600, replacing nothing.
pub fn write_small(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.partial-{}",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Write a small file atomically with mode 0600, replacing what was there (a mirror's copy).
pub(crate) fn write_replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::Builder::new().prefix(".fetch-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    /// Regression: an evidence log's staging copy (`.pgdrill-evidence-…` under
    /// `$TMPDIR/pgdrill-mirror`) left by a pgdrill killed with -9 was never reaped: `reap`
    /// knew every kind but "evidence" (fifty were found after a test run). Every kind made is
    /// now removed once its owner is gone, and no other kind can be made.
    #[test]
    fn every_kind_of_private_directory_left_by_a_dead_owner_is_reaped() {
        let parent = tempfile::tempdir().expect("tmp");
        // Linux gives pids below pid_max, at most 2^22: this one never runs.
        let dead = 1u32 << 22;
        for kind in super::PRIVATE_KINDS {
            let mine = super::private_dir(parent.path(), kind).expect("private dir");
            let name = mine.file_name().and_then(|n| n.to_str()).expect("name").to_string();
            let pid = std::process::id().to_string();
            let left = parent.path().join(name.replacen(&format!("-{pid}-"), &format!("-{dead}-"), 1));
            std::fs::create_dir(&left).expect("a dead owner's folder");
            let removed = super::reap(parent.path());
            assert_eq!(removed, vec![left.clone()], "{kind}: the dead owner's folder is reaped, ours kept");
            assert!(mine.is_dir(), "{kind}: a live owner's folder was reaped");
        }
        let err = super::private_dir(parent.path(), "other").expect_err("an unknown kind");
        assert!(err.to_string().contains("\"other\""), "{err}");
    }

    /// Pieces of hostile locations, paths and keys: multibyte characters at every offset,
    /// broken and half percent-escapes, separators, control characters, long components.
    const PIECES: &[&str] = &[
        "s3://",
        "S3://",
        "gs://",
        "az://",
        "/tmp/",
        "ç",
        "çà",
        "€",
        "😀",
        "%",
        "%c3",
        "%C3%A7",
        "%zz",
        "%4",
        "?",
        "&",
        "=",
        "endpoint=",
        "/",
        "..",
        ".",
        "b",
        "\n",
        "\0",
        "\u{fffd}",
        "file://",
        ":",
        "@",
        "{db}",
        "*",
    ];

    /// Every sequence of up to three pieces (and long ones): hostile input for parsers of
    /// locations, paths and names (backup/'s layout tests use them too).
    pub(crate) fn hostile_inputs() -> Vec<String> {
        let long = "é".repeat(200);
        let mut inputs: Vec<String> = vec![String::new(), long.clone(), format!("s3://b/{long}/x.dump")];
        for a in PIECES {
            inputs.push(a.to_string());
            for b in PIECES {
                inputs.push(format!("{a}{b}"));
                for c in PIECES {
                    inputs.push(format!("{a}{b}{c}"));
                }
            }
        }
        inputs
    }
}
