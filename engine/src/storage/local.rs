//! A local directory as a `Store`: keys are paths under the root. A writer writes into a
//! private directory beside its final place (same disk; mode 0600 files in a 0700
//! directory), and publishing is an fsync, a rename that never replaces a file, and an
//! fsync of the directory. A writer dropped unpublished removes its private directory.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

use super::private_dir;
use super::store::{Children, Meta, Published, Result, Space, Store, View, Writer};
use crate::on_exit::{track, untrack};

/// A local directory of objects.
#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsStore { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`: refused when a component could leave the root or is not a name.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        path_under(&self.root, key)
    }

    fn walk(&self, dir: &Path, rel: &str, prefix: &str, out: &mut Vec<Meta>) -> io::Result<()> {
        let rd = match fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Working files of pgdrill's own, and links (a pointer to a backup is not one).
            if name.starts_with(".pgdrill-") || name.starts_with(".fetch-") {
                continue;
            }
            let Ok(ft) = e.file_type() else { continue };
            let key = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            // Only what can hold a key with `prefix`: a directory on the way there, or under it.
            let on_way = prefix.starts_with(&format!("{key}/")) || key.starts_with(prefix);
            if ft.is_dir() && on_way {
                self.walk(&e.path(), &key, prefix, out)?;
            } else if ft.is_file() && key.starts_with(prefix) {
                if let Ok(md) = e.metadata() {
                    out.push(meta(key, &md));
                }
            }
        }
        Ok(())
    }
}

/// The path of `key` under `root`: refused when a component could leave the root or is not
/// a name.
fn path_under(root: &Path, key: &str) -> Result<PathBuf> {
    if key.is_empty() || key.starts_with('/') || key.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("`{}` is not an object's key under {}", key.escape_debug(), root.display()));
    }
    Ok(root.join(key))
}

fn meta(key: String, md: &fs::Metadata) -> Meta {
    Meta { key, size: md.len(), modified: md.modified().unwrap_or(std::time::UNIX_EPOCH), version: None }
}

/// A file being written into its private directory.
struct FsWriter {
    file: Option<File>,
    tmp: PathBuf,
    private: PathBuf,
    /// The store's root and the key being written: `publish_new`'s other keys are under it.
    root: PathBuf,
    key: String,
    target: PathBuf,
    shown: String,
    written: u64,
}

impl Write for FsWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let f = self.file.as_mut().ok_or_else(|| io::Error::other("the writer is closed"))?;
        let n = f.write(b)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl FsWriter {
    /// fsync, then rename to the first of `targets` that is free (never replacing a file),
    /// and fsync its directory. Returns the index of the target taken; every one taken is
    /// an `EEXIST` error.
    fn finish(&mut self, targets: &[PathBuf]) -> io::Result<usize> {
        if let Some(f) = self.file.take() {
            f.sync_all()?;
        }
        let mut taken = None;
        for (i, target) in targets.iter().enumerate() {
            match renameat2(AT_FDCWD, &self.tmp, AT_FDCWD, target, RenameFlags::RENAME_NOREPLACE) {
                Ok(()) => {
                    taken = Some(i);
                    break;
                }
                Err(nix::errno::Errno::EEXIST) => continue,
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        let Some(i) = taken else { return Err(io::Error::from(nix::errno::Errno::EEXIST)) };
        self.tmp = PathBuf::new();
        let _ = fs::remove_dir(&self.private);
        untrack(&self.private);
        File::open(targets[i].parent().unwrap_or(Path::new(".")))?.sync_all()?;
        Ok(i)
    }
}

#[async_trait::async_trait]
impl Writer for FsWriter {
    async fn publish(mut self: Box<Self>) -> Result<u64> {
        let shown = self.shown.clone();
        let target = [self.target.clone()];
        match tokio::task::block_in_place(|| self.finish(&target)) {
            Ok(_) => Ok(self.written),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {
                Err(format!("{shown} already exists: nothing was replaced"))
            }
            Err(e) => Err(format!("writing {shown}: {e}")),
        }
    }

    async fn publish_new(mut self: Box<Self>, others: &[String]) -> Result<Published> {
        let shown = self.shown.clone();
        let mut keys = vec![self.key.clone()];
        keys.extend(others.iter().cloned());
        let targets = keys.iter().map(|k| path_under(&self.root, k)).collect::<Result<Vec<PathBuf>>>()?;
        match tokio::task::block_in_place(|| self.finish(&targets)) {
            Ok(i) => Ok(Published { key: keys[i].clone(), size: self.written, etag: None }),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32) => {
                Err(format!("{shown} and the {} names after it already exist: nothing was replaced", others.len()))
            }
            Err(e) => Err(format!("writing {shown}: {e}")),
        }
    }

    async fn abort(self: Box<Self>) {
        drop(self);
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.private);
            untrack(&self.private);
        }
    }
}

#[async_trait::async_trait]
impl Store for FsStore {
    fn url(&self) -> String {
        self.root.display().to_string()
    }

    /// A file's path, as the filesystem joins it (a root of `""` or `.` stays relative).
    fn url_of(&self, key: &str) -> String {
        match key.is_empty() {
            true => self.url(),
            false => self.root.join(key).display().to_string(),
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(if key.is_empty() { self.root.clone() } else { self.root.join(key) })
    }

    async fn local_view(&self) -> Result<View> {
        Ok(View {
            root: self.root.clone(),
            listed: Vec::new(),
            tree: super::tree::Tree::local(self.root.clone()),
            warnings: Vec::new(),
        })
    }

    async fn probe(&self) -> Result<()> {
        match fs::metadata(&self.root) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(format!("{} is not a directory", self.url())),
            // Made on the first write.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.url())),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Meta>> {
        let mut out = Vec::new();
        tokio::task::block_in_place(|| self.walk(&self.root, "", prefix, &mut out))
            .map_err(|e| format!("cannot list {}: {e}", self.url()))?;
        Ok(out)
    }

    async fn children(&self, dir: &str) -> Result<Children> {
        let dir = dir.trim_end_matches('/');
        let path = if dir.is_empty() { self.root.clone() } else { self.path_of(dir)? };
        let rd = match fs::read_dir(&path) {
            Ok(rd) => rd,
            // No such folder (nor one where a file stands): it holds nothing, as in a bucket.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    || e.raw_os_error() == Some(nix::errno::Errno::ENOTDIR as i32) =>
            {
                return Ok(Children::default())
            }
            Err(e) => return Err(format!("cannot list {}: {e}", path.display())),
        };
        let mut out = Children::default();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // As `walk`: pgdrill's working files are not objects, and a link is not one.
            if name.starts_with(".pgdrill-") || name.starts_with(".fetch-") {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => out.folders.push(name),
                Ok(t) if t.is_file() => out.objects.push(name),
                _ => {}
            }
        }
        out.folders.sort();
        out.objects.sort();
        Ok(out)
    }

    async fn head(&self, key: &str) -> Result<Option<Meta>> {
        let p = self.path_of(key)?;
        match fs::metadata(&p) {
            Ok(md) if md.is_file() => Ok(Some(meta(key.to_string(), &md))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", p.display())),
        }
    }

    async fn open(
        &self,
        key: &str,
        range: Option<std::ops::Range<u64>>,
        _version: Option<&str>,
    ) -> Result<Box<dyn Read + Send>> {
        let p = self.path_of(key)?;
        let mut f = File::open(&p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        match range {
            None => Ok(Box::new(f)),
            Some(r) => {
                f.seek(io::SeekFrom::Start(r.start)).map_err(|e| format!("reading {}: {e}", p.display()))?;
                Ok(Box::new(f.take(r.end.saturating_sub(r.start))))
            }
        }
    }

    async fn read(&self, key: &str) -> Result<Vec<u8>> {
        let p = self.path_of(key)?;
        fs::read(&p).map_err(|e| format!("reading {}: {e}", p.display()))
    }

    async fn create(&self, key: &str) -> Result<Box<dyn Writer>> {
        let target = self.path_of(key)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        let private = private_dir(&dir, "partial").map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
        track(&private);
        let made = tempfile::Builder::new().suffix(".partial").tempfile_in(&private).map_err(|e| e.to_string());
        let (file, tmp) = match made.and_then(|t| {
            let (file, tmp) = t.into_parts();
            tmp.keep().map(|p| (file, p)).map_err(|e| e.error.to_string())
        }) {
            Ok(ft) => ft,
            Err(e) => {
                let _ = fs::remove_dir_all(&private);
                untrack(&private);
                return Err(format!("cannot write in {}: {e}", dir.display()));
            }
        };
        Ok(Box::new(FsWriter {
            file: Some(file),
            tmp,
            private,
            root: self.root.clone(),
            key: key.to_string(),
            shown: target.display().to_string(),
            target,
            written: 0,
        }))
    }

    async fn put_new(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let mut w = self.create(key).await?;
        w.write_all(&bytes).map_err(|e| format!("writing {}: {e}", self.url_of(key)))?;
        w.publish().await.map(|_| ())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let p = self.path_of(key)?;
        super::write_replace(&p, &bytes).map_err(|e| format!("writing {}: {e}", p.display()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let p = self.path_of(key)?;
        match fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("deleting {}: {e}", p.display())),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> Result<()> {
        let src = self.path_of(from)?;
        let mut r = File::open(&src).map_err(|e| format!("reading {}: {e}", src.display()))?;
        let mut w = self.create(to).await?;
        tokio::task::block_in_place(|| io::copy(&mut r, &mut w))
            .map_err(|e| format!("copying {} to {}: {e}", src.display(), self.url_of(to)))?;
        w.publish().await.map(|_| ())
    }

    fn space(&self) -> Option<Result<Space>> {
        let st = match nix::sys::statvfs::statvfs(&self.root) {
            Ok(st) => st,
            Err(e) => return Some(Err(format!("cannot measure the filesystem of {}: {e}", self.root.display()))),
        };
        let frag = st.fragment_size().max(1);
        Some(Ok(Space { free: st.blocks_available() * frag, total: st.blocks() * frag }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 37: the trait had no one-level listing (report pages, history, doctor listed
    /// through remote.rs's own type). A directory's `children` are its subdirectories and
    /// files, nothing deeper, without a writer's private directory, and the same as what
    /// the trait's default makes of a whole listing (what a backend without its own gets).
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn children_are_one_level_of_folders_and_objects_as_the_default_makes_them_from_list() {
        let t = tempfile::tempdir().expect("tmp");
        let s = FsStore::new(t.path());
        for key in ["top.json", "app/a.dump", "app/b.dump", "app/sub/deep/x.json", "other/y"] {
            s.put_new(key, b"x".to_vec()).await.expect("put_new");
        }
        let mut writing = s.create("app/c.dump").await.expect("create");
        writing.write_all(b"partial").expect("write");
        let top = s.children("").await.expect("children");
        assert_eq!(top.folders, ["app", "other"]);
        assert_eq!(top.objects, ["top.json"]);
        let app = s.children("app").await.expect("children");
        assert_eq!(app.folders, ["sub"], "a writer's private directory or a deeper one was shown");
        assert_eq!(app.objects, ["a.dump", "b.dump"]);
        for dir in ["", "app", "app/", "app/sub", "none", "top.json"] {
            let listed = s.list(&super::super::store::folder_prefix(dir)).await.expect("list");
            assert_eq!(
                s.children(dir).await.expect("children"),
                super::super::store::children_of(listed, dir),
                "{dir:?}"
            );
        }
        assert!(s.children("../x").await.is_err(), "a folder outside the root was listed");
        writing.abort().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn nothing_is_under_a_key_until_publish_and_publish_never_replaces() {
        let t = tempfile::tempdir().expect("tmp");
        let s = FsStore::new(t.path());
        let mut w = s.create("app/a.dump").await.expect("create");
        w.write_all(b"one").expect("write");
        assert_eq!(s.head("app/a.dump").await.expect("head"), None, "visible before publish");
        assert!(s.list("").await.expect("list").is_empty(), "a writer's private file was listed");
        assert_eq!(w.publish().await.expect("publish"), 3);
        let m = s.head("app/a.dump").await.expect("head").expect("published");
        assert_eq!((m.key.as_str(), m.size), ("app/a.dump", 3));

        let mut again = s.create("app/a.dump").await.expect("create");
        again.write_all(b"two").expect("write");
        let e = again.publish().await.expect_err("replaced");
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(s.read("app/a.dump").await.expect("read"), b"one");
        assert!(s.put_new("app/a.dump", b"x".to_vec()).await.is_err());

        let mut gone = s.create("app/b.dump").await.expect("create");
        gone.write_all(b"partial").expect("write");
        gone.abort().await;
        assert_eq!(s.head("app/b.dump").await.expect("head"), None);
        assert_eq!(fs::read_dir(t.path().join("app")).expect("dir").count(), 1, "the aborted writer left a file");
    }

    /// Two backups stamped in the same millisecond: `backup::create` chose the second's name
    /// when it published (a rename that never replaces), and writing through a `Writer`,
    /// whose key is chosen when it starts, must not lose that: the second takes the next
    /// free name, and the first is left as it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn publish_new_takes_the_next_free_name_and_replaces_nothing() {
        let t = tempfile::tempdir().expect("tmp");
        let s = FsStore::new(t.path());
        let others = ["app/a-1.dump".to_string(), "app/a-2.dump".to_string()];
        let mut first = s.create("app/a.dump").await.expect("create");
        let mut second = s.create("app/a.dump").await.expect("create");
        first.write_all(b"one").expect("write");
        second.write_all(b"two").expect("write");
        let p = first.publish_new(&others).await.expect("publish");
        assert_eq!(p, Published { key: "app/a.dump".into(), size: 3, etag: None });
        let p = second.publish_new(&others).await.expect("publish");
        assert_eq!(p.key, "app/a-1.dump");
        assert_eq!(s.read("app/a.dump").await.expect("read"), b"one");
        assert_eq!(s.read("app/a-1.dump").await.expect("read"), b"two");
        assert_eq!(s.check_published(&p, 3, "").await, Ok(None), "a local rename is its own proof");
        assert!(matches!(s.check_published(&p, 4, "").await, Err(super::super::store::Unproven::Differs(_))));
        let mut third = s.create("app/a.dump").await.expect("create");
        third.write_all(b"three").expect("write");
        let e = third.publish_new(&others[..1]).await.expect_err("every name taken");
        assert!(e.contains("already exist"), "{e}");
        let mut names: Vec<String> = s.list("app/").await.expect("list").into_iter().map(|m| m.key).collect();
        names.sort();
        assert_eq!(names, ["app/a-1.dump", "app/a.dump"], "the refused writer left a file");
        assert_eq!(s.local_path("app/a.dump"), Some(t.path().join("app/a.dump")));
        assert_eq!(s.url_of("app/a.dump"), t.path().join("app/a.dump").display().to_string());
        assert_eq!(s.local_view().await.expect("view").root, t.path());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn lists_by_prefix_reads_ranges_copies_and_refuses_keys_leaving_the_root() {
        let t = tempfile::tempdir().expect("tmp");
        let s = FsStore::new(t.path());
        s.put_new("app/x.dump", b"0123456789".to_vec()).await.expect("put");
        s.put_new("app/.ledger/1.json", b"{}".to_vec()).await.expect("put");
        s.put_new("other/y.dump", b"y".to_vec()).await.expect("put");
        let mut keys: Vec<String> = s.list("app/").await.expect("list").into_iter().map(|m| m.key).collect();
        keys.sort();
        assert_eq!(keys, ["app/.ledger/1.json", "app/x.dump"]);
        assert_eq!(s.list("").await.expect("list").len(), 3);
        let mut r = s.open("app/x.dump", Some(2..5), None).await.expect("open");
        let mut got = String::new();
        r.read_to_string(&mut got).expect("read");
        assert_eq!(got, "234");
        s.copy("app/x.dump", "app/z.dump").await.expect("copy");
        assert_eq!(s.read("app/z.dump").await.expect("read"), b"0123456789");
        s.delete("app/z.dump").await.expect("delete");
        s.delete("app/z.dump").await.expect("a missing object is not an error");
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", ""] {
            assert!(s.path_of(bad).is_err(), "{bad}");
        }
        assert!(s.space().is_some_and(|sp| sp.is_ok_and(|sp| sp.total > 0)));
        assert!(FsStore::new(t.path().join("absent")).space().is_some_and(|sp| sp.is_err()));
    }
}
