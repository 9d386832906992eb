//! `pgdrill rekey`: move an encrypted pgdrill backup to the newest key of a keyring after a
//! rotation, so the old key can be retired.
//!
//! The archive's chunks are opened and sealed again as they stream (`archive::reseal`): the
//! plaintext never reaches a disk. Before anything is replaced, the new file is proved: it
//! opens under the new key alone, and the SHA-256 of its decompressed content equals that
//! of the old file's. Publishing never replaces a file: the new archive and its manifest go
//! under a name no file has (the same timestamp, `-N` after it), the manifest first, then the
//! archive (renamed in without replacing), and only then the old archive and its manifest
//! are removed. So a kill -9 at any moment leaves the old backup whole, or the new one whole,
//! or both (a run after that finishes the job: it finds the new one beside the old and
//! removes the old).

use std::io::{BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use super::{authenticate_manifest, layout, manifest_bytes, Manifest, ManifestAuth, ManifestTrust, Staged};
use crate::archive::{self, KeySource};
use crate::error::Failure;

/// What `rekey` did with one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rekeyed {
    /// Moved from the key `from` to the key `to` (fingerprints), now at `path`; `plain_sha256`
    /// is the content both files decrypt to.
    Moved { from: String, to: String, path: PathBuf, plain_sha256: String },
    /// Already under the newest key (its fingerprint).
    Already(String),
    /// An earlier run was interrupted after publishing the new backup at `path`: the old one
    /// was removed now.
    Finished(PathBuf),
    /// Not encrypted: there is no key to move it from.
    NotEncrypted,
}

/// Move the pgdrill backup at `path` (a local file beside its manifest) to `ring`'s newest
/// key; see the module's documentation for the order of things.
pub fn rekey(path: &Path, ring: &KeySource) -> Result<Rekeyed, Failure> {
    let shown = path.display().to_string();
    let failed = |m: String| Failure::failed(format!("{shown}: {m}"));
    // The staging of a rekey that was killed (its owner gone) is removed first.
    crate::storage::reap(path.parent().unwrap_or(Path::new(".")));
    let manifest = Manifest::read(path)?;
    // Nothing in a manifest is carried over (and signed under the new key) unless its MAC
    // held under the old one: rekey must never launder an edited manifest.
    match authenticate_manifest(path, Some(ring))? {
        ManifestTrust::Unencrypted => return Ok(Rekeyed::NotEncrypted),
        ManifestTrust::Authenticated => {}
        t => {
            return Err(failed(format!(
                "{}: its manifest cannot be carried over to a new key without vouching for what it says; leave it under its key",
                t.describe()
            )))
        }
    }
    let open = |p: &Path| {
        std::fs::File::open(p)
            .map(|f| BufReader::with_capacity(1 << 20, f))
            .map_err(|e| Failure::environment(format!("cannot open {}: {e}", p.display())))
    };
    let (header, _) = archive::read_header(&mut open(path)?).map_err(|e| Failure::from(e).context(&shown))?;
    let kdf = header.kdf.clone().ok_or_else(|| failed("its header names no key derivation".into()))?;
    let (old_key, member) = ring.unlock(&kdf, header.key_check.as_deref()).map_err(|e| {
        Failure::from(e).context(format!("{shown}: none of the {} keys given opens it", ring.members().len()))
    })?;
    let newest = ring.writing();
    if std::ptr::eq(member, newest) {
        remove_orphan_manifests(path, &manifest);
        return Ok(Rekeyed::Already(newest.fingerprint()));
    }
    if let Some(new) = interrupted_sibling(path, &manifest, newest)? {
        remove_pair(path)?;
        return Ok(Rekeyed::Finished(new));
    }

    // 1. What the old file holds: its stored bytes are the manifest's, and its content's hash.
    let (stored_sha, plain_sha) = digests(open(path)?, member).map_err(|e| e.context(&shown))?;
    if stored_sha != manifest.sha256 {
        return Err(failed(format!(
            "sha256 {stored_sha} does not match the manifest's {}: corrupted backup; not moved",
            manifest.sha256
        )));
    }

    // 2. Sealed again under the new key into a private staging file beside it.
    let dir = path.parent().unwrap_or(Path::new("."));
    let staged = Staged::new(dir, ".rekey")?;
    let new_key = newest.derive_new().map_err(Failure::invalid)?;
    let file = staged.create_file().map_err(|e| Failure::environment(format!("staging in {}: {e}", dir.display())))?;
    let (new_header, out, sizes) =
        archive::reseal(open(path)?, BufWriter::with_capacity(1 << 20, file), ring, &new_key).map_err(|e| {
            match archive::archive_error(&e) {
                Some(a) => Failure::from(a.clone()).context(&shown),
                None => Failure::environment(format!("writing the new copy of {shown}: {e}")),
            }
        })?;
    let file = out.into_inner().map_err(|e| Failure::environment(format!("writing the new copy: {}", e.error())))?;
    file.sync_all().map_err(|e| Failure::environment(format!("writing the new copy: {e}")))?;
    drop(file);
    stop_here("staged");

    // 3. Proved before anything is replaced: it opens under the new key alone and holds
    // exactly what the old one held.
    let (new_sha, new_plain) = digests(open(&staged.0)?, newest)
        .map_err(|e| e.context(format!("the new copy of {shown} does not read back; nothing replaced")))?;
    if new_plain != plain_sha {
        return Err(failed(format!(
            "the new copy decrypts to content with sha256 {new_plain}, the old one to {plain_sha}; nothing replaced"
        )));
    }

    // The manifest, carried over: the new key's derivation, fingerprint and checksum, the
    // sealed password verifiers sealed again, and a MAC under the new key.
    let mut m = manifest.clone();
    m.kdf = new_header.kdf.clone();
    m.sha256 = new_sha;
    m.sizes.stored = sizes.stored;
    m.sizes.compressed = sizes.compressed;
    m.key_fingerprint = Some(newest.fingerprint());
    m.authentication = None;
    if let Some(g) = m.globals.as_mut() {
        if let Some(sealed) = &g.verifiers {
            let plain = old_key.unseal(crate::pg::globals::VERIFIERS, sealed).map_err(failed)?;
            g.verifiers = Some(new_key.seal(crate::pg::globals::VERIFIERS, &plain).map_err(failed)?);
        }
    }
    let value = serde_json::to_value(&m).map_err(|e| Failure::environment(e.to_string()))?;
    let prefix = new_header.nonce_prefix.clone().unwrap_or_default();
    m.authentication = Some(ManifestAuth {
        alg: archive::MANIFEST_MAC.into(),
        mac: new_key.manifest_mac(&prefix, &manifest_bytes(value)),
    });
    let json = serde_json::to_vec_pretty(&m).map_err(|e| Failure::environment(e.to_string()))?;

    // 4. Published without replacing anything, manifest first, then the old pair removed.
    let new_path = publish(path, &m, &staged, &json)?;
    stop_here("published");
    remove_pair(path)?;
    Ok(Rekeyed::Moved { from: member.fingerprint(), to: newest.fingerprint(), path: new_path, plain_sha256: plain_sha })
}

/// The SHA-256 of the stored bytes read from `input` and of the content they decrypt (with
/// `key`) and decompress to.
fn digests(input: impl Read + Send, key: &KeySource) -> Result<(String, String), Failure> {
    let mut stored = archive::HashReader::new(input);
    let plain_sha = {
        let (_, plain) = archive::open(&mut stored, Some(key))?;
        let mut plain = archive::HashReader::new(plain);
        std::io::copy(&mut plain, &mut std::io::sink()).map_err(|e| match archive::archive_error(&e) {
            Some(a) => Failure::from(a.clone()),
            None => Failure::environment(format!("reading: {e}")),
        })?;
        plain.finish().0
    };
    std::io::copy(&mut stored, &mut std::io::sink()).map_err(|e| Failure::environment(format!("reading: {e}")))?;
    Ok((stored.finish().0, plain_sha))
}

/// The name of the file without its `-N` (a second backup of the same millisecond, or an
/// earlier rekey) and its extension: `20261204T010203.123Z-1.dump.pgdrill` -> the stamp.
fn stem_of(name: &str, ext: &str) -> String {
    let stem = name.strip_suffix(&format!(".{ext}")).unwrap_or(name);
    match stem.rsplit_once('-') {
        Some((s, n)) if !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()) => s.to_string(),
        _ => stem.to_string(),
    }
}

/// Put the staged archive and its manifest under a name beside `old` that no file has.
fn publish(old: &Path, m: &Manifest, staged: &Staged, json: &[u8]) -> Result<PathBuf, Failure> {
    let env = |what: &str, e: &dyn std::fmt::Display| Failure::environment(format!("{what}: {e}"));
    let dir = old.parent().unwrap_or(Path::new("."));
    let name = old.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let ext = m.format.ext();
    let stem = stem_of(name, ext);
    // The manifest is staged beside the archive, in the same private directory.
    let staged_manifest = staged.1.join("manifest.json");
    crate::storage::write_small(&staged_manifest, json).map_err(|e| env("staging the manifest", &e))?;
    let sync_dir = || std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| env("syncing the folder", &e));
    for n in 0..1000 {
        let candidate = dir.join(if n == 0 { format!("{stem}.{ext}") } else { format!("{stem}-{n}.{ext}") });
        let mp = layout::manifest_path(&candidate);
        if candidate.exists() {
            continue;
        }
        // A manifest without its archive, of this same dump: what a rekey killed between
        // the two left. It is this run's to replace.
        if mp.exists() {
            match Manifest::read(&candidate) {
                Ok(o) if same_dump(&o, m) => std::fs::remove_file(&mp)
                    .map_err(|e| env("removing a manifest left by an interrupted rekey", &e))?,
                _ => continue,
            }
        }
        match renameat2(AT_FDCWD, &staged_manifest, AT_FDCWD, &mp, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {}
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(env("publishing the manifest", &e)),
        }
        sync_dir()?;
        stop_here("manifest");
        match renameat2(AT_FDCWD, &staged.0, AT_FDCWD, &candidate, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => {
                sync_dir()?;
                return Ok(candidate);
            }
            Err(nix::errno::Errno::EEXIST) => {
                // Another writer took the name between the check and now: the manifest goes
                // back to staging, and the next name is tried.
                std::fs::rename(&mp, &staged_manifest).map_err(|e| env("unpublishing the manifest", &e))?;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&mp);
                return Err(env("publishing the archive", &e));
            }
        }
    }
    Err(Failure::environment(format!("no free name beside {}", old.display())))
}

/// Remove a backup and then its manifest (so no moment shows a backup without one), each
/// removal made durable.
fn remove_pair(path: &Path) -> Result<(), Failure> {
    let dir = path.parent().unwrap_or(Path::new("."));
    for (i, p) in [path.to_path_buf(), layout::manifest_path(path)].into_iter().enumerate() {
        if i == 1 {
            stop_here("removed");
        }
        std::fs::remove_file(&p).map_err(|e| Failure::environment(format!("removing {}: {e}", p.display())))?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Failure::environment(format!("syncing {}: {e}", dir.display())))?;
    }
    Ok(())
}

/// Whether two manifests describe the same dump (database, snapshot, start).
fn same_dump(a: &Manifest, b: &Manifest) -> bool {
    a.database == b.database && a.snapshot == b.snapshot && a.started_at == b.started_at
}

/// Manifests beside `path` of the same dump whose archive is gone: what a rekey killed after
/// removing the old archive left. Removed; nothing else is touched.
fn remove_orphan_manifests(path: &Path, manifest: &Manifest) {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(archive) = name.strip_suffix(".manifest.json").map(|a| dir.join(a)) else { continue };
        if name.starts_with('.') || archive.exists() || archive == path {
            continue;
        }
        if Manifest::read(&archive).is_ok_and(|o| same_dump(&o, manifest)) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A kill -9 at a named point of a rekey, for the test that proves each leaves a whole
/// backup (debug builds only): the process sends itself SIGKILL there.
fn stop_here(point: &str) {
    if cfg!(debug_assertions) && std::env::var("PGDRILL_REKEY_STOP").is_ok_and(|p| p == point) {
        let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    }
}

/// A backup beside `path` that is the same dump (database, snapshot and start) already under
/// `newest`, its manifest authenticated under it: what an interrupted rekey published.
fn interrupted_sibling(path: &Path, manifest: &Manifest, newest: &KeySource) -> Result<Option<PathBuf>, Failure> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let Ok(rd) = std::fs::read_dir(dir) else { return Ok(None) };
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p == path || name.starts_with('.') || !name.ends_with(".pgdrill") {
            continue;
        }
        let Ok(other) = Manifest::read(&p) else { continue };
        if other.database != manifest.database
            || other.snapshot != manifest.snapshot
            || other.started_at != manifest.started_at
        {
            continue;
        }
        if matches!(authenticate_manifest(&p, Some(newest)), Ok(ManifestTrust::Authenticated)) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::stem_of;

    #[test]
    fn the_stem_drops_the_extension_and_a_numbered_suffix_only() {
        assert_eq!(stem_of("20261204T010203.123Z.dump.pgdrill", "dump.pgdrill"), "20261204T010203.123Z");
        assert_eq!(stem_of("20261204T010203.123Z-2.dump.pgdrill", "dump.pgdrill"), "20261204T010203.123Z");
        assert_eq!(stem_of("nightly-final.sql.pgdrill", "sql.pgdrill"), "nightly-final");
    }
}
