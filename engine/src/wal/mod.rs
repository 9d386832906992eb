//! The WAL archive: `pgdrill wal push` (PostgreSQL's `archive_command`), `pgdrill wal fetch`
//! (its `restore_command`), and what `wal.check` and `wal list` read (`check`).
//!
//! Layout in any store pgdrill writes (`storage::Store`):
//! `.cluster/<system identifier>/wal/<file name>.pgdrill`, one object per archived file
//! (segments, `.partial` segments, `.history` and `.backup` files), plus the marker
//! `.cluster/<system identifier>/wal/ARCHIVE` written by the first push. The leading dot
//! keeps the tree apart from database folders (`backup::layout::folder_name` encodes a
//! leading dot, so no database's folder is `.cluster`). Keying by the system identifier
//! keeps a restored clone that archives by mistake out of its source's WAL.
//!
//! Each object is a pgdrill archive (zstd, AES-256-GCM chunks; `archive`) whose plaintext
//! is a one-line preamble (`PGDRILL-WAL 1` and a JSON line naming the file, its size, its
//! SHA-256 and its system) followed by the file's bytes. The preamble is inside the
//! authenticated stream, so an object copied to another name, cut short or altered is
//! refused, never restored. The archive is always encrypted: an unauthenticated WAL object
//! could be planted by anyone who can write to the bucket and replayed into a restore.
//!
//! What this module must not do: know about steps or runbooks, or read base backups (the
//! caller hands `check` the LSNs it needs).

pub mod check;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::archive::{self, Codec, KeySource, WriteOptions};
use crate::error::{Class, Failure};
use crate::storage::{Opened, Store};

/// The top of pgdrill's physical tree in a store (see the module docs).
pub const ROOT: &str = ".cluster";
/// The marker object a system's first push writes: its presence tells "this segment is not
/// archived" apart from "this is not the archive" (a wrong location or system).
pub const MARKER: &str = "ARCHIVE";
const PREAMBLE: &[u8] = b"PGDRILL-WAL 1\n";
/// The most a WAL file may be (PostgreSQL's largest segment size is 1 GiB).
pub const MAX_FILE: u64 = 1 << 30;
/// `wal fetch`'s exit code for every failure that is not "absent": above 125, so PostgreSQL
/// stops recovery instead of taking the failure for the end of the archive (its
/// `restore_command` rule: an exit status above 125 is a fatal error, as a signal is; 143
/// would be read as a shutdown request, so it is avoided).
pub const FETCH_FATAL: i32 = 200;

/// The key prefix of a system's WAL.
pub fn wal_prefix(system: u64) -> String {
    format!("{ROOT}/{system}/wal/")
}

/// The key of an archived file.
pub fn wal_key(system: u64, name: &str) -> String {
    format!("{}{name}.pgdrill", wal_prefix(system))
}

/// A WAL location (`pg_lsn`), `X/Y` in PostgreSQL's text: `16/B374D848`. The one type for
/// it: physical sources (`physical::source`) use this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// `X/Y`, each half one to eight hexadecimal digits (PostgreSQL's `pg_lsn` input takes
    /// no sign either: a `+` that Rust's number parsing would let through is refused), with
    /// surrounding whitespace ignored; anything else is `None`.
    pub fn parse(s: &str) -> Option<Lsn> {
        let (hi, lo) = s.trim().split_once('/')?;
        let valid = |p: &str| !p.is_empty() && p.len() <= 8 && p.chars().all(|c| c.is_ascii_hexdigit());
        if !valid(hi) || !valid(lo) {
            return None;
        }
        Some(Lsn((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?))
    }

    /// The segment number holding this location.
    pub fn segno(self, seg_size: u64) -> u64 {
        self.0 / seg_size.max(1)
    }

    /// The WAL segment file holding this location on `timeline`, for segments of
    /// `segment_size` bytes (16 MiB unless initdb was told otherwise).
    pub fn segment_name(self, timeline: u32, segment_size: u64) -> String {
        segment_name(timeline, self.segno(segment_size), segment_size)
    }
}

impl std::fmt::Display for Lsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What an archived file is, by its name (PostgreSQL's naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: timeline, then the segment as "log" and "seg" halves.
    Segment { tli: u32, log: u32, seg: u32 },
    /// A segment a promoted server archived unfinished (`<segment>.partial`).
    Partial { tli: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: how a timeline branched off its parent.
    History { tli: u32 },
    /// `<segment>.XXXXXXXX.backup`: a base backup's label.
    Backup { tli: u32, log: u32, seg: u32 },
}

fn hex8(s: &str) -> Option<u32> {
    (s.len() == 8 && s.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_lowercase()))
        .then(|| u32::from_str_radix(s, 16).ok())
        .flatten()
}

fn seg24(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 || !s.is_ascii() {
        return None;
    }
    Some((hex8(&s[..8])?, hex8(&s[8..16])?, hex8(&s[16..])?))
}

impl WalName {
    /// The kind of file `name` is; `None` for anything PostgreSQL does not archive (which
    /// also keeps a `/` or `..` out of a key).
    pub fn parse(name: &str) -> Option<WalName> {
        if let Some(t) = name.strip_suffix(".history") {
            return hex8(t).map(|tli| WalName::History { tli });
        }
        if let Some(s) = name.strip_suffix(".partial") {
            return seg24(s).map(|(tli, log, seg)| WalName::Partial { tli, log, seg });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (seg, off) = s.split_once('.')?;
            hex8(off)?;
            return seg24(seg).map(|(tli, log, seg)| WalName::Backup { tli, log, seg });
        }
        seg24(name).map(|(tli, log, seg)| WalName::Segment { tli, log, seg })
    }
}

/// Segments per "log" half of a segment name.
fn per_log(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size.max(1)
}

/// The segment number a name's halves stand for.
pub fn segno_of(log: u32, seg: u32, seg_size: u64) -> u64 {
    u64::from(log) * per_log(seg_size) + u64::from(seg)
}

/// The file name of segment `segno` on timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, seg_size: u64) -> String {
    let p = per_log(seg_size);
    format!("{tli:08X}{:08X}{:08X}", segno / p, segno % p)
}

/// What the archive records of a file, in the authenticated preamble.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preamble {
    pub name: String,
    pub size: u64,
    pub sha256: String,
    /// As text: JSON numbers lose digits past 2^53 in many readers.
    pub system_identifier: String,
    pub pushed_at: String,
}

/// Where the WAL archive is and how it is sealed: from a small file, the environment and the
/// command line (see `Config::load`).
#[derive(Clone)]
pub struct Config {
    pub storage: String,
    pub key: KeySource,
    /// zstd level (default 3).
    pub level: i32,
    /// The object store's settings a `credentials_file` gave (`NAME`, value): the store of
    /// `storage` is opened with them (`storage::open_with`), nothing else sees them.
    pub credentials: Vec<(String, String)>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config").field("storage", &self.storage).finish_non_exhaustive()
    }
}

/// The settings as given: each from the command line, else the environment, else the file.
#[derive(Debug, Default, Clone)]
pub struct Given {
    pub config: Option<PathBuf>,
    pub storage: Option<String>,
    pub key_file: Option<PathBuf>,
    pub key_env: Option<String>,
}

impl Config {
    /// Settings from the config file (`storage = ...`, `key_file = ...`, `key_env = ...`,
    /// `level = ...`; `#` starts a comment), overridden by what `given` holds. The key never
    /// comes from the file itself nor from the command line: from the file `key_file` names
    /// (mode 0600 advised) or the variable `key_env` names (default `PGDRILL_BACKUP_KEY`).
    /// Returns the config and the secret (for the caller's redactor).
    pub fn load(given: &Given) -> Result<(Config, String), Failure> {
        let mut storage = None;
        let mut key_file = None;
        let mut key_env = None;
        let mut level = 3;
        let mut credentials = Vec::new();
        if let Some(path) = &given.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::invalid(format!("cannot read the WAL config {}: {e}", path.display())))?;
            for (i, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if line.is_empty() {
                    continue;
                }
                let at = || format!("{}:{}", path.display(), i + 1);
                let Some((k, v)) = line.split_once('=') else {
                    return Err(Failure::invalid(format!("{}: `{line}` is not `name = value`", at())));
                };
                let v = v.trim().trim_matches('"').to_string();
                match k.trim() {
                    "storage" => storage = Some(v),
                    "key_file" => key_file = Some(PathBuf::from(v)),
                    "key_env" => key_env = Some(v),
                    // The object store's credentials, for a process started without them in
                    // its environment (a throwaway server's restore_command).
                    "credentials_file" => credentials = read_credentials(Path::new(&v))?,
                    "level" => {
                        level = v.parse().map_err(|_| {
                            Failure::invalid(format!("{}: level `{v}` is not a number (zstd 1-19)", at()))
                        })?
                    }
                    other => {
                        return Err(Failure::invalid(format!(
                            "{}: unknown setting `{other}`: use storage, key_file, key_env, credentials_file or level",
                            at()
                        )))
                    }
                }
            }
        }
        let storage = given.storage.clone().or(storage).filter(|s| !s.trim().is_empty()).ok_or_else(|| {
            Failure::invalid(
                "no WAL archive location: set `storage = ...` in the WAL config (--config or PGDRILL_WAL_CONFIG), --storage or PGDRILL_WAL_STORAGE",
            )
        })?;
        let key_file = given.key_file.clone().or(key_file);
        let key_env = given.key_env.clone().or(key_env).unwrap_or_else(|| "PGDRILL_BACKUP_KEY".into());
        let secret = match &key_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| Failure::invalid(format!("cannot read the WAL key file {}: {e}", p.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            None => std::env::var(&key_env).unwrap_or_default(),
        };
        if secret.is_empty() {
            return Err(Failure::invalid(format!(
                "no key for the WAL archive: the archive is always encrypted; put the key in a file named by `key_file` (WAL config or --key-file) or in the variable {key_env}"
            )));
        }
        Ok((Config { storage, key: KeySource::from_secret(&secret), level, credentials }, secret))
    }
}

/// `NAME=value` lines (AWS_*, AZURE_*, GOOGLE_*): an object store's settings, written 0600 by
/// pgdrill for a recovery's restore_command. Values may hold `=` and `#`; nothing is trimmed
/// but the line end.
pub fn read_credentials(path: &Path) -> Result<Vec<(String, String)>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::invalid(format!("cannot read the credentials file {}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match line.split_once('=') {
            Some((k, v)) if ["AWS_", "AZURE_", "GOOGLE_"].iter().any(|p| k.starts_with(p)) => {
                out.push((k.to_string(), v.to_string()))
            }
            // Never the line itself: it may hold a secret.
            _ => {
                return Err(Failure::invalid(format!(
                    "{}:{}: not an AWS_, AZURE_ or GOOGLE_ setting as NAME=value",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    Ok(out)
}

/// The object store's settings in this process's environment, for `location`'s scheme: what a
/// process started without them (a throwaway server's restore_command) needs to reach it.
pub fn store_credentials(location: &str) -> Vec<(String, String)> {
    let prefix = match location.trim().split_once("://").map(|(s, _)| s) {
        Some("s3") => "AWS_",
        Some("az" | "azure") => "AZURE_",
        Some("gs") => "GOOGLE_",
        _ => return Vec::new(),
    };
    // A value spanning lines cannot be written as one NAME=value line.
    std::env::vars().filter(|(k, v)| k.starts_with(prefix) && !v.contains(['\n', '\r'])).collect()
}

/// The settings a process pgdrill starts (a server's `archive_command` or `restore_command`)
/// reads its WAL archive with: `dir/wal.conf` naming `location`, the key in `dir/wal.key`, and
/// an object store's credentials from this process's environment in `dir/store.env` (the
/// server runs with a clean environment), each 0600 in `dir`, a 0700 folder made here. Files,
/// never argv: a command line is visible to every user of the machine. Returns the config's
/// path; the caller hands the folder to the server's user and removes it afterwards.
pub fn write_private_config(dir: &Path, location: &str, secret: &str) -> Result<PathBuf, Failure> {
    write_private_dir(dir)?;
    let key_file = dir.join("wal.key");
    write_private(&key_file, format!("{secret}\n").as_bytes())?;
    let mut text = format!(
        "# written by pgdrill for a server it started\nstorage = {location}\nkey_file = {}\n",
        key_file.display()
    );
    let creds = store_credentials(location);
    if !creds.is_empty() {
        let file = dir.join("store.env");
        let body: String = creds.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        write_private(&file, body.as_bytes())?;
        text.push_str(&format!("credentials_file = {}\n", file.display()));
    }
    let conf = dir.join("wal.conf");
    write_private(&conf, text.as_bytes())?;
    Ok(conf)
}

fn write_private_dir(dir: &Path) -> Result<(), Failure> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| Failure::environment(format!("cannot create {}: {e}", dir.display())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| Failure::environment(format!("writing {}: {e}", path.display())))
}

/// The system identifier of the cluster in `data_dir` (`global/pg_control` starts with it,
/// in the machine's byte order).
pub fn system_of_data_dir(data_dir: &Path) -> Result<u64, Failure> {
    let p = data_dir.join("global/pg_control");
    let mut f = std::fs::File::open(&p).map_err(|e| {
        Failure::environment(format!(
            "cannot read {} ({e}): run from the data directory (PostgreSQL runs archive_command and restore_command there)",
            p.display()
        ))
    })?;
    let mut b = [0u8; 8];
    f.read_exact(&mut b).map_err(|e| Failure::environment(format!("reading {}: {e}", p.display())))?;
    Ok(u64::from_ne_bytes(b))
}

/// What a segment's first page says: its system and segment size (the long page header:
/// `xlp_sysid` at byte 24, `xlp_seg_size` at 32) and the location it starts at (`xlp_pageaddr`
/// at 8). `None` when the first page is no long header.
pub fn segment_header(bytes: &[u8]) -> Option<(u64, u64, u64)> {
    const XLP_LONG_HEADER: u16 = 0x0002;
    let info = u16::from_ne_bytes(bytes.get(2..4)?.try_into().ok()?);
    if info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let pageaddr = u64::from_ne_bytes(bytes.get(8..16)?.try_into().ok()?);
    let sysid = u64::from_ne_bytes(bytes.get(24..32)?.try_into().ok()?);
    let seg_size = u64::from(u32::from_ne_bytes(bytes.get(32..36)?.try_into().ok()?));
    Some((sysid, seg_size, pageaddr))
}

/// Check a segment's bytes against its name and system; returns the segment size.
fn check_segment(name: &str, bytes: &[u8], system: Option<u64>) -> Result<(u64, u64), String> {
    let Some(WalName::Segment { log, seg, .. } | WalName::Partial { log, seg, .. }) = WalName::parse(name) else {
        return Err(format!("{name} is not a segment"));
    };
    let (sysid, seg_size, pageaddr) =
        segment_header(bytes).ok_or_else(|| format!("{name} does not start with a WAL segment's long page header"))?;
    if !seg_size.is_power_of_two() || !(1 << 20..=MAX_FILE).contains(&seg_size) {
        return Err(format!("{name}: its header gives an impossible segment size {seg_size}"));
    }
    if bytes.len() as u64 != seg_size {
        return Err(format!(
            "{name} is {} bytes, but its segments are {seg_size} bytes: cut short or padded",
            bytes.len()
        ));
    }
    let expected = segno_of(log, seg, seg_size) * seg_size;
    if pageaddr != expected {
        return Err(format!("{name} holds the segment at {} (renamed or another file)", Lsn(pageaddr)));
    }
    if let Some(s) = system {
        if s != sysid {
            return Err(format!("{name} belongs to system {sysid}, not {s}"));
        }
    }
    Ok((sysid, seg_size))
}

fn sha256_hex(bytes: &[u8]) -> String {
    archive::hex(&Sha256::digest(bytes))
}

/// Seal `bytes` (a WAL file named `name`) as an archive object.
pub fn seal(name: &str, bytes: &[u8], system: u64, key: &KeySource, level: i32) -> Result<Vec<u8>, Failure> {
    let pre = Preamble {
        name: name.to_string(),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
        system_identifier: system.to_string(),
        pushed_at: crate::util::rfc3339(time::OffsetDateTime::now_utc()),
    };
    let mut plain = PREAMBLE.to_vec();
    plain.extend_from_slice(&serde_json::to_vec(&pre).map_err(|e| Failure::environment(e.to_string()))?);
    plain.push(b'\n');
    let k = key.derive_new().map_err(Failure::invalid)?;
    let opts = WriteOptions { codec: Codec::Zstd, level, threads: 1, key: Some(k) };
    let input = std::io::Cursor::new(plain).chain(bytes);
    let (out, _) = archive::write(input, Vec::with_capacity(bytes.len() / 2), &opts)
        .map_err(|e| Failure::environment(format!("compressing {name}: {e}")))?;
    Ok(out)
}

/// Open an archived object: the preamble and the file's bytes, every byte authenticated and
/// matched against the preamble and the name it was asked for.
pub fn unseal(name: &str, object: &[u8], key: &KeySource) -> Result<(Preamble, Vec<u8>), Failure> {
    let failed = |m: String| Failure::failed(format!("archived {name}: {m}"));
    if object.is_empty() {
        return Err(failed("the object is empty (0 bytes): damaged in the archive".into()));
    }
    let (header, mut plain) = archive::open(object, Some(key)).map_err(|e| failed(e.to_string()))?;
    if header.cipher != "aes-256-gcm" {
        return Err(failed("not encrypted: the WAL archive only holds authenticated objects (planted?)".into()));
    }
    let mut all = Vec::new();
    plain
        .by_ref()
        .take(MAX_FILE + 4096)
        .read_to_end(&mut all)
        .map_err(|e| failed(archive::archive_error(&e).map_or_else(|| e.to_string(), |a| a.to_string())))?;
    let rest = all.strip_prefix(PREAMBLE).ok_or_else(|| failed("no WAL preamble: not a WAL object".into()))?;
    let nl = rest.iter().position(|b| *b == b'\n').ok_or_else(|| failed("preamble cut short".into()))?;
    let pre: Preamble = serde_json::from_slice(&rest[..nl]).map_err(|e| failed(format!("unreadable preamble: {e}")))?;
    let body = rest[nl + 1..].to_vec();
    if pre.name != name {
        return Err(failed(format!("the object holds {}, not {name}: copied or renamed in the archive", pre.name)));
    }
    if body.len() as u64 != pre.size || sha256_hex(&body) != pre.sha256 {
        return Err(failed(format!("{} bytes do not match the {} recorded when it was pushed", body.len(), pre.size)));
    }
    Ok((pre, body))
}

/// What `push` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushed {
    /// Stored, this many bytes.
    Stored { key: String, bytes: u64 },
    /// The archive already held the same bytes under the name (PostgreSQL retried after a
    /// crash between our publish and its bookkeeping): success, nothing written.
    AlreadyThere { key: String },
}

/// Archive the file at `path` (`%p`, relative to `data_dir`, PostgreSQL's working directory),
/// through a store opened among the command's `stores` (whose uploads it aborts when stopped).
pub async fn push(stores: &Opened, cfg: &Config, path: &Path, data_dir: &Path) -> Result<Pushed, Failure> {
    let store = stores.open_with(&cfg.storage, &cfg.credentials).map_err(Failure::invalid)?;
    push_to(store.as_ref(), cfg, path, data_dir).await
}

pub async fn push_to(store: &dyn Store, cfg: &Config, path: &Path, data_dir: &Path) -> Result<Pushed, Failure> {
    let full = data_dir.join(path);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Failure::invalid(format!("{} names no file", path.display())))?
        .to_string();
    let kind = WalName::parse(&name).ok_or_else(|| {
        Failure::invalid(format!(
            "`{}` is not a WAL file name PostgreSQL archives (segment, .partial, .history or .backup)",
            name.escape_debug()
        ))
    })?;
    let len = std::fs::metadata(&full)
        .map_err(|e| Failure::environment(format!("cannot read {}: {e}", full.display())))?
        .len();
    if len > MAX_FILE {
        return Err(Failure::invalid(format!("{} is {len} bytes: more than a WAL file can be", full.display())));
    }
    let bytes =
        std::fs::read(&full).map_err(|e| Failure::environment(format!("cannot read {}: {e}", full.display())))?;
    let control = system_of_data_dir(data_dir);
    let system = match kind {
        WalName::Segment { .. } | WalName::Partial { .. } => {
            let (sysid, _) = check_segment(&name, &bytes, control.as_ref().ok().copied()).map_err(Failure::failed)?;
            sysid
        }
        _ => control?,
    };
    let key = wal_key(system, &name);
    // The first push of a system leaves the marker `fetch` looks for.
    let marker = format!("{}{MARKER}", wal_prefix(system));
    match store.head(&marker).await.map_err(Failure::environment)? {
        Some(_) => {}
        None => {
            let text = format!("pgdrill WAL archive of system {system}\n");
            if let Err(e) = store.put_new(&marker, text.into_bytes()).await {
                // Another push made it first: fine. Anything else is the store's failure.
                if store.head(&marker).await.map_err(Failure::environment)?.is_none() {
                    return Err(Failure::environment(e));
                }
            }
        }
    }
    if store.head(&key).await.map_err(Failure::environment)?.is_some() {
        return same_as_archived(store, cfg, &key, &name, &bytes).await;
    }
    let sealed = tokio::task::block_in_place(|| seal(&name, &bytes, system, &cfg.key, cfg.level))?;
    let n = sealed.len() as u64;
    match store.put_new(&key, sealed).await {
        Ok(()) => Ok(Pushed::Stored { key, bytes: n }),
        // Raced by another push of the same file: judged by content like any repeat.
        Err(e) => match store.head(&key).await {
            Ok(Some(_)) => same_as_archived(store, cfg, &key, &name, &bytes).await,
            _ => Err(Failure::environment(e)),
        },
    }
}

/// A file pushed again: the same bytes is success; anything else is refused, never replaced.
async fn same_as_archived(
    store: &dyn Store,
    cfg: &Config,
    key: &str,
    name: &str,
    bytes: &[u8],
) -> Result<Pushed, Failure> {
    let object = store.read(key).await.map_err(Failure::environment)?;
    let (pre, _) = tokio::task::block_in_place(|| unseal(name, &object, &cfg.key)).map_err(|e| {
        Failure::failed(format!(
            "{} is already archived and cannot be read to compare ({}); nothing was replaced",
            store.url_of(key),
            e.message
        ))
    })?;
    if pre.size == bytes.len() as u64 && pre.sha256 == sha256_hex(bytes) {
        return Ok(Pushed::AlreadyThere { key: key.to_string() });
    }
    Err(Failure::failed(format!(
        "{name} is already archived at {} with different content ({} bytes, sha256 {}; this file: {} bytes, sha256 {}): refused, nothing was replaced. Two servers archiving into one place, or a restored clone archiving as its source? Find out before removing anything",
        store.url_of(key),
        pre.size,
        pre.sha256,
        bytes.len(),
        sha256_hex(bytes)
    )))
}

/// Why `fetch` did not restore a file.
#[derive(Debug, Clone)]
pub enum FetchError {
    /// The archive holds no such file: PostgreSQL's "end of the archive" (exit 1).
    Absent,
    /// Anything else: the store, the key, a damaged object (exit `FETCH_FATAL`).
    Fatal(Failure),
}

impl From<Failure> for FetchError {
    fn from(f: Failure) -> Self {
        FetchError::Fatal(f)
    }
}

/// Restore the archived `name` to `dest` (`%p`, relative to `data_dir`). The system is the
/// data directory's (from its `pg_control`, which came with the base backup) unless given.
/// The store is opened among the command's `stores`.
pub async fn fetch(
    stores: &Opened,
    cfg: &Config,
    name: &str,
    dest: &Path,
    data_dir: &Path,
    system: Option<u64>,
) -> Result<u64, FetchError> {
    let store = stores.open_with(&cfg.storage, &cfg.credentials).map_err(Failure::invalid)?;
    fetch_from(store.as_ref(), &cfg.key, name, dest, data_dir, system).await
}

pub async fn fetch_from(
    store: &dyn Store,
    key: &KeySource,
    name: &str,
    dest: &Path,
    data_dir: &Path,
    system: Option<u64>,
) -> Result<u64, FetchError> {
    let kind = WalName::parse(name).ok_or_else(|| {
        Failure::invalid(format!("`{}` is not a WAL file name (restore_command passes %f)", name.escape_debug()))
    })?;
    let system = match system {
        Some(s) => s,
        None => system_of_data_dir(data_dir)?,
    };
    let k = wal_key(system, name);
    if store.head(&k).await.map_err(Failure::environment)?.is_none() {
        let marker = format!("{}{MARKER}", wal_prefix(system));
        return match store.head(&marker).await.map_err(Failure::environment)? {
            Some(_) => Err(FetchError::Absent),
            None => Err(FetchError::Fatal(Failure::environment(format!(
                "{} holds no WAL archive of system {system} (no {}): a wrong location, or a base backup of another system; recovery is stopped rather than ended early",
                store.url(),
                store.url_of(&marker)
            )))),
        };
    }
    let object = store.read(&k).await.map_err(Failure::environment)?;
    let (_, body) = tokio::task::block_in_place(|| unseal(name, &object, key))?;
    if let WalName::Segment { .. } | WalName::Partial { .. } = kind {
        check_segment(name, &body, Some(system)).map_err(|m| Failure::failed(format!("archived {m}")))?;
    }
    let out = data_dir.join(dest);
    write_new(&out, &body).map_err(|e| Failure::environment(format!("writing {}: {e}", out.display())))?;
    Ok(body.len() as u64)
}

/// Write `bytes` to `path` whole or not at all: a temp file beside it, fsynced, renamed.
fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new().prefix(".pgdrill-fetch-").tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// The class of an error, for the command line's exit code of `wal push` (always non-zero).
pub fn push_exit(f: &Failure) -> i32 {
    match f.class {
        Class::Invalid => 2,
        Class::Environment => 3,
        Class::Failed => 1,
    }
}

#[cfg(test)]
mod tests;
