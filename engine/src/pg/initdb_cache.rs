//! Freshly initialized data directories, kept to be copied instead of running initdb again.
//!
//! initdb takes about 0.4 s of CPU on every throwaway server (bootstrap, then the catalogs
//! filled in single-user mode), and a verify waits for it. Copying the 39 MiB it writes
//! takes a tenth of that. The first native server for a given set of binaries, superuser and
//! server user keeps a copy of its data directory, as initdb left it and before the server
//! ever ran, under `$XDG_CACHE_HOME/pgdrill/initdb` (or `~/.cache/pgdrill/initdb`);
//! `PGDRILL_INITDB_CACHE` names another directory, or `off` for initdb every time.
//!
//! What keeps it honest:
//! - The key covers what makes initdb's output differ: the binaries (path, size, modified
//!   time), the superuser, the user the server runs as, the time zone initdb would pick up,
//!   and initdb's arguments. New binaries after an upgrade get a new template.
//! - A template is written under a temporary name, flushed to disk, then renamed into place:
//!   a crash leaves a temporary directory (reaped once its writer is gone), never half a
//!   template. Two first runs at once each write their own; the second rename finds the first
//!   and its copy is removed.
//! - The superuser's password in a template is known to whoever can read the cache, which is
//!   whoever can read a running server's data directory anyway. Each server started from a
//!   template is given a new password at once (a SCRAM verifier, so the password itself never
//!   reaches the server), before it is handed to anyone.
//! - A template that is incomplete or from which a server does not start is removed, and
//!   that server is initialized by initdb instead.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// Templates not used for this long are removed when another one is written.
const UNUSED_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A template found in the cache.
pub struct Template {
    pub data: PathBuf,
    pub password: String,
}

/// The cache directory, or `None` when the cache is off or there is no home to keep it in.
pub fn root() -> Option<PathBuf> {
    match std::env::var_os("PGDRILL_INITDB_CACHE") {
        Some(v) if v == "off" || v.is_empty() => None,
        Some(v) => Some(PathBuf::from(v)),
        None => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".cache")))
            .map(|c| c.join("pgdrill").join("initdb")),
    }
}

/// The template's name for these binaries, superuser, server user and initdb arguments.
pub fn key(bin_dir: &Path, superuser: &str, server_uid: u32, initdb_args: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(b"pgdrill initdb template 1\n");
    h.update(fs::canonicalize(bin_dir).unwrap_or_else(|_| bin_dir.to_path_buf()).as_os_str().as_encoded_bytes());
    for program in ["initdb", "postgres"] {
        if let Ok(m) = fs::metadata(bin_dir.join(program)) {
            h.update(format!("\n{program} {} {} {}", m.len(), m.mtime(), m.mtime_nsec()).as_bytes());
        }
    }
    h.update(format!("\nsuperuser {} {}\nuid {server_uid}\n", superuser.len(), superuser).as_bytes());
    h.update(format!("TZ {:?}\n", std::env::var_os("TZ")).as_bytes());
    h.update(format!("localtime {:?}\n", fs::read_link("/etc/localtime").ok()).as_bytes());
    for a in initdb_args {
        h.update(a.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    crate::archive::hex(&digest[..12])
}

/// The template under `key`, when it is complete, of `major`, and nobody but this user could
/// have written it (see `private`).
pub fn find(root: &Path, key: &str, major: u32) -> Option<Template> {
    let dir = root.join(key);
    let data = dir.join("data");
    if ![root, dir.as_path(), data.as_path()].into_iter().all(private) {
        return None;
    }
    reap(root);
    let version = fs::read_to_string(data.join("PG_VERSION")).ok()?;
    if version.trim() != major.to_string() || !data.join("global/pg_control").is_file() {
        return None;
    }
    let password = fs::read_to_string(dir.join("password")).ok()?.trim().to_string();
    if password.is_empty() {
        return None;
    }
    // Used now: the age reaper keeps it.
    if let Ok(f) = fs::OpenOptions::new().write(true).open(dir.join("password")) {
        let _ = f.set_modified(SystemTime::now());
    }
    Some(Template { data, password })
}

/// A directory this user owns and no one else can write to. A template's postgresql.conf is
/// the server's configuration (`archive_command` runs a shell command as the server's user),
/// and its key can be computed by anyone: a template planted in a shared directory is
/// never used.
fn private(dir: &Path) -> bool {
    fs::symlink_metadata(dir)
        .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::geteuid().as_raw() && m.mode() & 0o022 == 0)
}

/// Keep `data` (initdb's output, before any server ran in it) as the template under `key`,
/// with the superuser's `password`. Best effort: a cache that cannot be written only costs
/// the next run an initdb.
pub fn store(root: &Path, key: &str, data: &Path, password: &str) -> Result<(), String> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
        .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    reap(root);
    let tmp = root.join(format!(".tmp-{}-{}", std::process::id(), unique()));
    let written = (|| -> io::Result<()> {
        fs::DirBuilder::new().mode(0o700).create(&tmp)?;
        copy_tree(data, &tmp.join("data"))?;
        let pw = tmp.join("password");
        fs::write(&pw, password)?;
        fs::set_permissions(&pw, fs::Permissions::from_mode(0o600))?;
        sync_tree(&tmp)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = fs::remove_dir_all(&tmp);
        return Err(format!("cannot write an initdb template in {}: {e}", root.display()));
    }
    match fs::rename(&tmp, root.join(key)) {
        Ok(()) => {
            if let Ok(d) = fs::File::open(root) {
                let _ = d.sync_all();
            }
            Ok(())
        }
        // Another run stored the same template first.
        Err(_) if root.join(key).is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(())
        }
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(format!("cannot store an initdb template in {}: {e}", root.display()))
        }
    }
}

/// A random part for a name of this process's own (a template being written or discarded).
fn unique() -> String {
    crate::archive::hex(&crate::archive::crypto::random::<18>())
}

/// Remove the template under `key` (a server did not start from it). Renamed aside first, so
/// a run that finds it in the meantime finds it whole or not at all.
pub fn discard(root: &Path, key: &str) {
    let aside = root.join(format!(".discard-{}-{}", std::process::id(), unique()));
    if fs::rename(root.join(key), &aside).is_ok() {
        let _ = fs::remove_dir_all(&aside);
    }
}

/// Temporary directories whose writer is gone, and templates unused for `UNUSED_FOR`.
fn reap(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = e.path();
        if let Some(rest) = name.strip_prefix(".tmp-").or_else(|| name.strip_prefix(".discard-")) {
            let owner: Option<i32> = rest.split('-').next().and_then(|p| p.parse().ok());
            if owner.is_some_and(|p| p > 0 && !crate::child::is_alive(p)) {
                let _ = fs::remove_dir_all(&path);
            }
            continue;
        }
        let used = fs::metadata(path.join("password")).and_then(|m| m.modified());
        if used.is_ok_and(|t| t.elapsed().is_ok_and(|age| age > UNUSED_FOR)) {
            discard(root, name);
        }
    }
}

/// Copy a directory tree: directories 0700, files with their permissions, symbolic links as
/// links. A data directory holds nothing else.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o700).create(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let t = e.file_type()?;
        let target = to.join(e.file_name());
        if t.is_dir() {
            copy_tree(&e.path(), &target)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &target)?;
        } else if t.is_file() {
            fs::copy(e.path(), &target)?;
        } else {
            return Err(io::Error::other(format!("{} is neither a file nor a directory", e.path().display())));
        }
    }
    Ok(())
}

/// `copy_tree` for a server's data directory, each file and directory handed to `owner`
/// (uid, gid) and given the modes PostgreSQL wants (0700, 0600) as it is created: on its
/// open descriptor, not by a second walk that looked each path up three times again (a
/// thousand files: the copy was most of a small verify's own CPU, issue 41).
pub fn copy_tree_owned(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::DirBuilder::new().mode(0o700).create(to)?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(to, Some(uid), Some(gid))?;
    }
    for e in fs::read_dir(from)? {
        let e = e?;
        let t = e.file_type()?;
        let target = to.join(e.file_name());
        if t.is_dir() {
            copy_tree_owned(&e.path(), &target, owner)?;
        } else if t.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path())?, &target)?;
        } else if t.is_file() {
            let mut src = fs::File::open(e.path())?;
            let mut dst = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&target)?;
            // The mode asked for at creation passes through the umask; this one does not.
            dst.set_permissions(fs::Permissions::from_mode(0o600))?;
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::fchown(&dst, Some(uid), Some(gid))?;
            }
            io::copy(&mut src, &mut dst)?;
        } else {
            return Err(io::Error::other(format!("{} is neither a file nor a directory", e.path().display())));
        }
    }
    Ok(())
}

/// Flush every file and directory of a tree to disk (initdb ran with --no-sync; a template
/// outlives a crash of the machine).
fn sync_tree(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        if t.is_dir() {
            sync_tree(&e.path())?;
        } else if t.is_file() {
            fs::File::open(e.path())?.sync_all()?;
        }
    }
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `find` looks at of initdb's output, for PostgreSQL 15.
    fn initdb_output(tmp: &Path) -> PathBuf {
        let data = tmp.join("src");
        fs::create_dir_all(data.join("global")).expect("mkdir");
        fs::write(data.join("PG_VERSION"), "15\n").expect("PG_VERSION");
        fs::write(data.join("global/pg_control"), [0u8; 16]).expect("pg_control");
        data
    }

    /// A cache (`root`) holding one template, `k`, of `data` stored with `password`.
    fn cache_of_one(password: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = initdb_output(tmp.path());
        let root = tmp.path().join("cache");
        store(&root, "k", &data, password).expect("fixture");
        (tmp, data, root)
    }

    #[test]
    fn a_template_is_found_only_whole_and_of_its_major() {
        let (_tmp, data, root) = cache_of_one("secret");
        // A second writer of the same key finds it stored and leaves no temporary behind.
        store(&root, "k", &data, "other").expect("fixture");
        let names: Vec<String> = fs::read_dir(&root)
            .expect("fixture")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["k".to_string()]);
        let t = find(&root, "k", 15).expect("found");
        assert_eq!(t.password, "secret");
        assert_eq!(fs::metadata(root.join("k")).expect("fixture").permissions().mode() & 0o777, 0o700);
        assert!(find(&root, "k", 17).is_none(), "another major");
        fs::remove_file(root.join("k/data/global/pg_control")).expect("fixture");
        assert!(find(&root, "k", 15).is_none(), "incomplete");
        discard(&root, "k");
        assert!(!root.join("k").exists());
    }

    #[test]
    fn a_template_in_a_directory_others_can_write_is_never_used() {
        let (_tmp, _, root) = cache_of_one("planted");
        assert!(find(&root, "k", 15).is_some());
        for dir in [root.clone(), root.join("k"), root.join("k/data")] {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).expect("fixture");
            assert!(find(&root, "k", 15).is_none(), "{} writable by others", dir.display());
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("fixture");
        }
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&root.join("k"), Some(65534.into()), None).expect("fixture");
            assert!(find(&root, "k", 15).is_none(), "owned by another user");
        }
    }

    /// The copy for a server used to be handed over by a second walk of the tree (a chown
    /// and a chmod by path per file): each file now gets its owner and mode as it is made.
    #[test]
    fn a_data_directory_copy_is_private_and_handed_over_as_it_is_made() {
        let tmp = tempfile::tempdir().expect("tmp");
        let data = initdb_output(tmp.path());
        fs::create_dir_all(data.join("base/1")).expect("fixture");
        fs::write(data.join("base/1/1259"), vec![7u8; 3 << 20]).expect("fixture");
        fs::write(data.join("base/1/2619_fsm"), b"").expect("fixture");
        fs::set_permissions(data.join("base/1/1259"), fs::Permissions::from_mode(0o644)).expect("fixture");
        let owner = nix::unistd::geteuid().is_root().then_some((65534, 65534));
        let to = tmp.path().join("server");
        copy_tree_owned(&data, &to, owner).expect("copied");
        assert_eq!(fs::read(to.join("base/1/1259")).expect("copy"), vec![7u8; 3 << 20]);
        assert_eq!(fs::read(to.join("PG_VERSION")).expect("copy"), b"15\n");
        assert!(to.join("base/1/2619_fsm").is_file());
        let want_uid = owner.map_or(nix::unistd::geteuid().as_raw(), |(u, _)| u);
        for p in [&to, &to.join("base"), &to.join("base/1"), &to.join("base/1/1259"), &to.join("global/pg_control")] {
            let m = fs::metadata(p).expect("copied");
            assert_eq!(m.mode() & 0o777, if m.is_dir() { 0o700 } else { 0o600 }, "{}", p.display());
            assert_eq!(m.uid(), want_uid, "{}", p.display());
        }
        // Nothing is copied over what exists: a second copy into the same place fails.
        assert!(copy_tree_owned(&data, &to, owner).is_err());
    }

    #[test]
    fn a_temporary_left_by_a_writer_that_died_is_reaped() {
        let tmp = tempfile::tempdir().expect("fixture");
        let root = tmp.path();
        let mut dead = crate::child::spawn(&mut crate::child::command("true")).expect("fixture");
        let pid = dead.id();
        dead.wait().expect("fixture");
        fs::create_dir_all(root.join(format!(".tmp-{pid}-x/data"))).expect("fixture");
        let mine = root.join(format!(".tmp-{}-y", std::process::id()));
        fs::create_dir_all(&mine).expect("fixture");
        reap(root);
        assert!(!root.join(format!(".tmp-{pid}-x")).exists(), "the dead writer's temporary");
        assert!(mine.exists(), "a live writer's temporary stays");
    }
}
