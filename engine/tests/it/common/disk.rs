//! A small disk for a test that must fill one: a tmpfs mounted for the test alone.

use std::path::{Path, PathBuf};

/// A tmpfs mounted at `.0` for one test, unmounted when dropped (whatever the test did).
pub struct SmallDisk(pub PathBuf);

impl SmallDisk {
    /// A tmpfs of `size` at `at`, mode 0755. None (a printed skip, a failure in CI) without
    /// the right to mount.
    pub fn mount(at: &Path, size: &str) -> Option<SmallDisk> {
        SmallDisk::mount_with(at, &format!("size={size},mode=0755"))
    }

    /// A tmpfs of `size` at `at`, mode 0700, owned by `uid`:`gid` (the server's user, for a
    /// tablespace).
    pub fn mount_owned(at: &Path, size: &str, uid: u32, gid: u32) -> Option<SmallDisk> {
        SmallDisk::mount_with(at, &format!("size={size},mode=0700,uid={uid},gid={gid}"))
    }

    fn mount_with(at: &Path, options: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(at).expect("mount point");
        let out = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", options, "tmpfs"]).arg(at).output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        if !super::require(ok, &format!("permission to mount a tmpfs ({out:?})")) {
            return None;
        }
        Some(SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}
