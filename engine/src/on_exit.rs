//! What this process removes before it exits: the private directories and half-written
//! files still in use when the command ends (a backup's partial file whose writer thread
//! is still blocked on pg_dump after Ctrl-C, a staged dump, gpg's home, an object store's
//! private mirror). Each is removed by its owner when dropped; this list is for the owners
//! that never get dropped because the process ends first. It belongs to the process, as
//! the child processes belong to it (`child.rs`), not to a store or a run: a store or a
//! backup registers what it made, the command line (`cli.rs`) calls [`remove_all`] on every
//! way out (success, error, Ctrl-C, `wal`'s answers).
//!
//! A kill -9 skips this; the private directories' names record their owner, so the next
//! pgdrill reaps them (`storage::reap`). This module must not decide what is made or
//! where: it only removes what it was handed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Paths made and not yet removed by their owner, in the order they were made.
struct Left(Mutex<Vec<PathBuf>>);

/// The process's list.
static LEFT: Left = Left(Mutex::new(Vec::new()));

impl Left {
    fn track(&self, p: &Path) {
        if let Ok(mut l) = self.0.lock() {
            l.push(p.to_path_buf());
        }
    }

    fn untrack(&self, p: &Path) {
        if let Ok(mut l) = self.0.lock() {
            l.retain(|x| x != p);
        }
    }

    fn remove_all(&self) {
        if let Ok(mut l) = self.0.lock() {
            for p in l.drain(..) {
                if p.is_dir() {
                    let _ = std::fs::remove_dir_all(p);
                } else {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// Remove `p` (a file, or a directory with what it holds) if the process exits first.
pub(crate) fn track(p: &Path) {
    LEFT.track(p);
}

/// `p` was removed (or published) by its owner: nothing to do for it at exit.
pub(crate) fn untrack(p: &Path) {
    LEFT.untrack(p);
}

/// Remove every path still tracked (the command's last act before it exits).
pub fn remove_all() {
    LEFT.remove_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is still tracked at exit goes, what its owner untracked stays (a published
    /// file's private directory is untracked before the rename would make it a backup).
    #[test]
    fn what_is_tracked_is_removed_at_exit_and_what_is_untracked_is_left() {
        let t = tempfile::tempdir().expect("tmp");
        let (dir, file, kept) = (t.path().join("dir"), t.path().join("file.partial"), t.path().join("kept"));
        std::fs::create_dir(&dir).expect("dir");
        std::fs::write(dir.join("staged.dump"), b"plaintext").expect("staged");
        std::fs::write(&file, b"half").expect("file");
        std::fs::write(&kept, b"published").expect("kept");
        // A list of the test's own: the process's is shared with the other tests of this binary.
        let left = Left(Mutex::new(Vec::new()));
        for p in [&dir, &file, &kept] {
            left.track(p);
        }
        left.untrack(&kept);
        left.remove_all();
        assert!(!dir.exists() && !file.exists(), "tracked paths outlived the exit");
        assert!(kept.exists(), "an untracked path was removed");
    }
}
