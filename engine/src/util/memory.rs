//! How much memory a run can spare: the tmpfs both a staged dump and a throwaway server's
//! files may go to, its free bytes, and the machine's available memory; what runs still
//! running have reserved there (`reserve`), so that two runs started together cannot both
//! take the same room; and the remedy a run names when the tmpfs filled all the same.

use std::path::{Path, PathBuf};

/// The tmpfs pgdrill puts a staged dump or a throwaway server's files in.
pub const TMPFS: &str = "/dev/shm";

/// Free bytes in the tmpfs, and the available memory (MemAvailable in /proc/meminfo), or
/// why either is not known.
pub fn room() -> Result<(u64, u64), String> {
    let fs = nix::sys::statvfs::statvfs(TMPFS).map_err(|e| format!("{TMPFS}: {e}"))?;
    let free = fs.blocks_available() as u64 * fs.fragment_size() as u64;
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let available = mem_available(&meminfo).ok_or("the available memory is not known (/proc/meminfo)")?;
    Ok((free, available))
}

/// MemAvailable from /proc/meminfo's text, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// `bytes` in MiB, for the lines that say why something went to memory or not.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / 1048576.0)
}

/// The rule of the `auto` choices (a staged dump, a throwaway's files): `bytes` go to memory
/// when they take at most min(25% of the `available` memory, 50% of the tmpfs's `free`
/// bytes, `max` when not 0, named `max_name`): what is left serves the throwaway server,
/// pg_restore's workers and the page cache, and never less than half of the tmpfs stays
/// free for others. `what` names the bytes; `Ok` and `Err` both say the numbers.
pub fn within_share(
    what: &str,
    bytes: u64,
    free: u64,
    available: u64,
    max: u64,
    max_name: &str,
) -> Result<String, String> {
    let mut share = (available / 4).min(free / 2);
    let mut rule = format!("min(25% of {} available, 50% of {} free in {TMPFS})", mib(available), mib(free));
    if max > 0 && max < share {
        share = max;
        rule = format!("{max_name} {}", mib(max));
    }
    if bytes <= share {
        Ok(format!("{what} ({}) is within {} = {rule}", mib(bytes), mib(share)))
    } else {
        Err(format!("{what} ({}) is over {} = {rule}", mib(bytes), mib(share)))
    }
}

/// The rule of the `memory` choices: `bytes` (named `what`) go to memory when they fit in
/// the tmpfs's `free` bytes with a quarter to spare and take at most half of the `available`
/// memory, the rest left to the throwaway server and the page cache. `Err` says why not.
pub fn fits(what: &str, bytes: u64, free: u64, available: u64) -> Result<String, String> {
    if bytes.saturating_add(bytes / 4) > free {
        return Err(format!("{what} ({}) does not fit in {TMPFS} ({} free)", mib(bytes), mib(free)));
    }
    if bytes.saturating_mul(2) > available {
        return Err(format!(
            "{what} ({}) would take more than half of the available memory ({})",
            mib(bytes),
            mib(available)
        ));
    }
    Ok(format!("{what} ({}) fits", mib(bytes)))
}

/// What the runs still running have reserved in the tmpfs (their reservation files): bytes
/// they chose to put there and may not have written yet.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub bytes: u64,
    /// Whether this process holds some of them (a staged dump beside its throwaway's files).
    pub this_run: bool,
    /// How many other processes hold the others.
    pub others: usize,
}

impl Reserved {
    /// The `room` (free bytes in the tmpfs, available memory) left once the reservations are
    /// written. A reservation is counted whole though its run may have written part of it
    /// already (then counted twice): the error is on the side of the disk, which costs time,
    /// where the other side fills the tmpfs.
    pub fn left(&self, (free, available): (u64, u64)) -> (u64, u64) {
        (free.saturating_sub(self.bytes), available.saturating_sub(self.bytes))
    }

    /// `2000 MiB reserved by 1 other run`, for the line that tells a choice; empty when
    /// nothing is reserved.
    pub fn said(&self) -> String {
        let runs = |n: usize| format!("{n} other run{}", if n == 1 { "" } else { "s" });
        let whose = match (self.this_run, self.others) {
            _ if self.bytes == 0 => return String::new(),
            (false, n) => runs(n),
            (true, 0) => "this run".to_string(),
            (true, n) => format!("this run and {}", runs(n)),
        };
        format!("{} reserved by {whose}", mib(self.bytes))
    }

    /// `line` followed by what is reserved, when anything is.
    pub fn after(&self, line: String) -> String {
        match self.said() {
            s if s.is_empty() => line,
            s => format!("{line}, after {s}"),
        }
    }
}

/// A reservation file's name: `pgdrill-reserved-<pid>-<start>-<random>`, the owner known by its
/// pid and its start time (a pid given to another process since is not the owner).
const RESERVED: &str = "pgdrill-reserved-";
/// A reservation being written, under its final name with this suffix.
const PARTIAL: &str = ".partial";
/// The file whose lock every choice of memory is made under, in the tmpfs.
const LOCK: &str = "pgdrill-reserved.lock";

/// Bytes this run will put in the tmpfs, recorded there until dropped (the staged dump or the
/// server it was made for removed, or the run ending however it ends): a file holding the
/// count, which the choices of other runs subtract from the tmpfs's room.
#[derive(Debug)]
pub struct Reservation {
    path: PathBuf,
    pub bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Make a choice of memory under the tmpfs's lock: `choose` is given the room (free bytes,
/// available memory, or why either is not known) and what live runs have reserved, and
/// answers the bytes it puts in the tmpfs (`None`: none). Those are reserved before the lock
/// is let go, so a run that chooses after it sees them. `Err`: they could not be reserved
/// (the caller stays on disk).
pub fn reserve(
    choose: impl FnOnce(Result<(u64, u64), String>, Reserved) -> Option<u64>,
) -> Result<Option<Reservation>, String> {
    reserve_in(Path::new(TMPFS), room, choose)
}

/// `reserve` in the tmpfs `dir` whose room `room` tells.
fn reserve_in(
    dir: &Path,
    room: impl FnOnce() -> Result<(u64, u64), String>,
    choose: impl FnOnce(Result<(u64, u64), String>, Reserved) -> Option<u64>,
) -> Result<Option<Reservation>, String> {
    // Without the lock, nothing stops another run from taking the same room: no room then.
    let held = lock(dir);
    let (room, reserved) = match &held {
        Ok(_) => (room(), reserved_in(dir)),
        Err(why) => (Err(why.clone()), Reserved::default()),
    };
    match choose(room, reserved) {
        Some(bytes) if held.is_ok() => record(dir, bytes)
            .map(Some)
            .map_err(|e| format!("the {} it takes cannot be reserved in {}: {e}", mib(bytes), dir.display())),
        _ => Ok(None),
    }
}

/// The lock of the tmpfs's reservations, held until dropped. Another user's lock file is
/// opened for reading: flock needs no more.
fn lock(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join(LOCK);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(&path)
        .or_else(|_| std::fs::File::open(&path))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", path.display()))
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), which a
/// reused pid does not share.
fn started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: fields after the last `)`.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// What the reservations in `dir` of processes still running add up to. A reservation of a
/// process that is gone (killed before it could remove it) is ignored and removed.
fn reserved_in(dir: &Path) -> Reserved {
    let me = std::process::id();
    let mut reserved = Reserved::default();
    let mut others = std::collections::BTreeSet::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return reserved };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(RESERVED)) else { continue };
        let mut parts = rest.splitn(3, '-');
        let (Some(pid), Some(start)) = (parts.next(), parts.next()) else { continue };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else { continue };
        if started(pid) != Some(start) {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        if rest.ends_with(PARTIAL) {
            continue;
        }
        let bytes = std::fs::read_to_string(e.path()).ok().and_then(|t| t.trim().parse::<u64>().ok()).unwrap_or(0);
        reserved.bytes = reserved.bytes.saturating_add(bytes);
        if pid == me {
            reserved.this_run = true;
        } else {
            others.insert(pid);
        }
    }
    reserved.others = others.len();
    reserved
}

/// Record a reservation of `bytes` in `dir`: written under a partial name, then renamed, so
/// that no reader sees a part of it. Readable by all: another user's runs count it too.
fn record(dir: &Path, bytes: u64) -> std::io::Result<Reservation> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let me = std::process::id();
    let start = started(me).ok_or_else(|| std::io::Error::other("this process's start time is not known (/proc)"))?;
    let mut file =
        tempfile::Builder::new().prefix(&format!("{RESERVED}{me}-{start}-")).suffix(PARTIAL).tempfile_in(dir)?;
    file.as_file().set_permissions(std::fs::Permissions::from_mode(0o644))?;
    writeln!(file, "{bytes}")?;
    let partial = file.path().to_string_lossy().into_owned();
    let path = PathBuf::from(partial.strip_suffix(PARTIAL).unwrap_or(&partial));
    file.persist_noclobber(&path).map_err(|e| e.error)?;
    Ok(Reservation { path, bytes })
}

/// What a run chose to keep in memory, named by the verify runbook's variable that keeps it
/// on disk instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InMemory {
    /// A throwaway server's files (`postgres.ephemeral` `data:`).
    Data,
    /// A staged dump (`backup.check` `staging:`).
    Staging,
}

/// Whether an error's text says a disk was full: ENOSPC as the system words it, or
/// PostgreSQL's short write of a relation, which names no errno ("could not extend file
/// ...: wrote only 4096 of 8192 bytes at block 140", found when a tmpfs filled mid-page).
pub fn says_full(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("could not extend file")
}

/// What a run says when the tmpfs it chose filled all the same (a server's files outgrew the
/// estimate, or runs outside pgdrill filled it): the remedy, in the verify runbook's words.
pub fn full_remedy(what: InMemory) -> String {
    let remedy = match what {
        InMemory::Data => "`--var data=disk` (a runbook's own `postgres.ephemeral` step: `data: disk`)",
        InMemory::Staging => "`--var staging=` (the dump staged beside the backup; `staging:` of `backup.check`)",
    };
    format!("{TMPFS} is full: run again with {remedy}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_available_memory_is_read_from_meminfo_in_bytes() {
        assert_eq!(super::mem_available("MemTotal: 10 kB\nMemAvailable:    2048 kB\n"), Some(2 << 20));
        assert_eq!(super::mem_available("MemTotal: 10 kB\n"), None);
    }

    const GIB: u64 = 1 << 30;

    /// What others reserved is taken from the tmpfs's free bytes and from the available
    /// memory before the rule is applied, and the line says so; nothing reserved, nothing said.
    #[test]
    fn reservations_are_taken_from_the_room_before_the_rule_and_said() {
        let none = super::Reserved::default();
        assert_eq!(none.left((8 * GIB, 12 * GIB)), (8 * GIB, 12 * GIB));
        assert_eq!(none.after("x".into()), "x");
        let one = super::Reserved { bytes: 2000 << 20, this_run: false, others: 1 };
        assert_eq!(one.left((8 * GIB, 12 * GIB)), (8 * GIB - (2000 << 20), 12 * GIB - (2000 << 20)));
        assert_eq!(one.left((GIB, GIB)), (0, 0), "never below nothing");
        assert_eq!(one.after("x".into()), "x, after 2000 MiB reserved by 1 other run");
        let mine = super::Reserved { bytes: GIB, this_run: true, others: 2 };
        assert_eq!(mine.said(), "1024 MiB reserved by this run and 2 other runs");
        // 1.5 GiB within half of 4 GiB free; not once 2000 MiB are reserved by another run.
        let (free, available) = one.left((4 * GIB, 64 * GIB));
        assert!(super::within_share("x", 3 * GIB / 2, 4 * GIB, 64 * GIB, 0, "").is_ok());
        assert!(super::within_share("x", 3 * GIB / 2, free, available, 0, "").is_err());
    }

    /// A reservation counts while its process runs (pid and start time); one whose process is
    /// gone, or whose pid another process has since, is ignored and removed.
    #[test]
    fn a_reservation_of_a_run_that_is_gone_is_ignored_and_removed() {
        let dir = tempfile::tempdir().expect("tmp");
        let me = std::process::id();
        let my_start = super::started(me).expect("this process's start");
        let init_start = super::started(1).expect("pid 1's start");
        let write = |name: String, bytes: u64| {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{bytes}\n")).expect("write");
            p
        };
        let other = write(format!("{}1-{init_start}-aaaa", super::RESERVED), 3 * GIB);
        let gone = write(format!("{}999999999-1-bbbb", super::RESERVED), 5 * GIB);
        let reused = write(format!("{}{me}-{}-cccc", super::RESERVED, my_start + 1), 7 * GIB);
        let dead_partial = write(format!("{}999999999-1-dddd{}", super::RESERVED, super::PARTIAL), 11 * GIB);
        let not_ours = write("pgdrill-native-1-xyz".into(), 13 * GIB);
        let reserved = super::reserved_in(dir.path());
        assert_eq!(reserved, super::Reserved { bytes: 3 * GIB, this_run: false, others: 1 });
        assert!(other.exists() && not_ours.exists());
        assert!(!gone.exists() && !reused.exists() && !dead_partial.exists(), "stale reservations removed");
        // This run's own reservation counts as this run's, and goes when dropped.
        let held = super::record(dir.path(), GIB).expect("record");
        assert_eq!(super::reserved_in(dir.path()), super::Reserved { bytes: 4 * GIB, this_run: true, others: 1 });
        drop(held);
        assert_eq!(super::reserved_in(dir.path()).bytes, 3 * GIB);
    }

    /// Two runs choosing at the same moment, in a tmpfs where one share fits and two do not:
    /// under the lock the second sees the first's reservation and stays on disk; once the
    /// first's is dropped, the room is free again.
    #[test]
    fn two_runs_choosing_together_cannot_both_take_the_same_room() {
        let dir = tempfile::tempdir().expect("tmp");
        let start = std::sync::Barrier::new(2);
        let choose = || {
            start.wait();
            super::reserve_in(
                dir.path(),
                || Ok((3 * GIB, 64 * GIB)),
                |room, reserved| {
                    let (free, available) = reserved.left(room.ok()?);
                    super::within_share("x", GIB + GIB / 5, free, available, 0, "").ok().map(|_| GIB + GIB / 5)
                },
            )
            .expect("reserve")
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(choose);
            let b = s.spawn(choose);
            (a.join().expect("a"), b.join().expect("b"))
        });
        assert_eq!([&a, &b].iter().filter(|r| r.is_some()).count(), 1, "{a:?} {b:?}");
        drop((a, b));
        let again = super::reserve_in(dir.path(), || Ok((3 * GIB, 64 * GIB)), |_, r| (r.bytes == 0).then_some(1));
        assert!(again.expect("reserve").is_some(), "the dropped reservation no longer counts");
        // No lock, no room: never memory.
        let missing = dir.path().join("missing");
        let no_lock = super::reserve_in(&missing, || Ok((3 * GIB, 64 * GIB)), |room, _| room.ok().map(|_| 1));
        assert!(no_lock.expect("no reservation").is_none());
    }

    /// When the tmpfs filled all the same, the message names the variable that keeps the
    /// bytes on disk, as the verify runbook spells it.
    #[test]
    fn a_full_tmpfs_names_the_variable_that_keeps_the_files_on_disk() {
        assert!(super::says_full("could not extend file \"base/1/2\": No space left on device"));
        assert!(super::says_full(
            "ERROR:  could not extend file \"base/2821328986/16423\": wrote only 4096 of 8192 bytes at block 140"
        ));
        assert!(!super::says_full("out of memory"));
        let data = super::full_remedy(super::InMemory::Data);
        assert!(data.starts_with("/dev/shm is full: run again with `--var data=disk`"), "{data}");
        let staging = super::full_remedy(super::InMemory::Staging);
        assert!(staging.starts_with("/dev/shm is full: run again with `--var staging=`"), "{staging}");
    }
}
