//! How much memory a run can spare: the tmpfs both a staged dump and a throwaway server's
//! files may go to, its free bytes, and the machine's available memory.

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

#[cfg(test)]
mod tests {
    #[test]
    fn the_available_memory_is_read_from_meminfo_in_bytes() {
        assert_eq!(super::mem_available("MemTotal: 10 kB\nMemAvailable:    2048 kB\n"), Some(2 << 20));
        assert_eq!(super::mem_available("MemTotal: 10 kB\n"), None);
    }
}
