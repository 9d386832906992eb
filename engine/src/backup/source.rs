//! Opening any backup for reading: pgdrill archives and files made by other tools (plain
//! `.sql`, `pg_dump | gzip`, `pg_dump | zstd`, custom `.dump`, directory dumps and
//! `openssl enc -aes-256-cbc` files with or without -pbkdf2, and `gpg --symmetric` files).
//!
//! What a file is comes from its first bytes, never from its name: a `.sql.gz` that is not
//! gzip is reported as what it is. Layers are peeled until a pg_dump format is found, so
//! `pg_dump | gzip | openssl enc` opens too. Nothing here writes plaintext anywhere.

use std::io::{self, Chain, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};

use serde::Serialize;

use crate::archive::{self, KeySource};
use crate::error::Failure;
use crate::storage::tree::Tree;

/// The pg_dump format found inside all layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Content {
    /// Custom format (`PGDMP`): pg_restore.
    Custom,
    /// SQL script: psql.
    Plain,
    /// A tar stream of a directory-format dump (pgdrill `format: directory`).
    Tar,
}

/// Where a backup came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// A pgdrill archive with a manifest.
    Pgdrill,
    /// Made by another tool: no manifest, no source fingerprint.
    Foreign,
}

/// An opened backup: its plaintext pg_dump stream and what it holds.
pub struct Opened {
    pub content: Content,
    /// Layers peeled, outermost first (`openssl`, `gzip`, `pgdrill`...), for logs.
    pub layers: Vec<&'static str>,
    pub reader: Box<dyn Read + Send>,
}

/// What a path on disk is, before opening it.
pub enum Located {
    /// A directory-format dump: pg_restore reads it in place.
    Directory(PathBuf),
    File(PathBuf),
}

/// The origin of a backup path: pgdrill archives start with the archive magic.
pub fn origin(path: &Path) -> Origin {
    // A path handed over without its view: its store is looked up by path.
    origin_in(&Tree::from(path), path)
}

/// `origin`, for a path of `tree` (the view it was found in).
pub fn origin_in(tree: &Tree, path: &Path) -> Origin {
    // A store's file listed without its first bytes: read them now (a decision needs them).
    let _ = tree.materialize(path);
    let mut magic = [0u8; 9];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)) {
        Ok(()) if &magic == archive::MAGIC => Origin::Pgdrill,
        _ => Origin::Foreign,
    }
}

/// `origin`, of what `named` names, from its first bytes read through its store: no local
/// stand-in made of an object. A store that cannot answer is the environment's failure.
pub async fn origin_of(named: &crate::storage::Named) -> Result<Origin, Failure> {
    let magic = named.first_bytes(archive::MAGIC.len() as u64).await.map_err(Failure::environment)?;
    Ok(if magic == archive::MAGIC { Origin::Pgdrill } else { Origin::Foreign })
}

/// A directory dump (has `toc.dat`) or a file.
pub fn locate(path: &Path) -> Result<Located, Failure> {
    let meta =
        std::fs::metadata(path).map_err(|e| Failure::invalid(format!("cannot read backup {}: {e}", path.display())))?;
    if meta.is_dir() {
        if path.join("toc.dat").is_file() {
            return Ok(Located::Directory(path.to_path_buf()));
        }
        return Err(Failure::invalid(format!(
            "{} is a directory without toc.dat: not a pg_dump directory-format dump",
            path.display()
        )));
    }
    Ok(Located::File(path.to_path_buf()))
}

const GZIP: &[u8] = &[0x1f, 0x8b];
const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const OPENSSL: &[u8] = b"Salted__";
const PGDMP: &[u8] = b"PGDMP";

type Peeked = Chain<Cursor<Vec<u8>>, Box<dyn Read + Send>>;

/// Read up to 512 bytes to look at, and give back a reader that still yields them.
fn peek(mut r: Box<dyn Read + Send>) -> io::Result<(Vec<u8>, Peeked)> {
    let mut head = Vec::with_capacity(512);
    (&mut r).take(512).read_to_end(&mut head)?;
    Ok((head.clone(), Cursor::new(head).chain(r)))
}

/// SQL text: no NUL bytes and mostly printable (any encoding pg_dump may write).
fn looks_like_text(head: &[u8]) -> bool {
    if head.contains(&0) {
        return false;
    }
    let odd = head.iter().filter(|&&b| b < 0x09 || (0x0e..0x20).contains(&b) || b == 0x7f).count();
    odd * 20 <= head.len()
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// `openssl enc -aes-256-cbc` key derivations, tried in this order on a file's outermost
/// layer: `-pbkdf2` (today's), then the legacy `EVP_BytesToKey` that `openssl enc` used
/// without -pbkdf2, with OpenSSL 1.1's default digest (sha256) and the older md5.
const OPENSSL_VARIANTS: &[(&[&str], &str)] = &[
    (&["-pbkdf2"], "openssl"),
    (&["-md", "sha256"], "openssl (legacy key derivation: EVP_BytesToKey, sha256, made without -pbkdf2)"),
    (&["-md", "md5"], "openssl (legacy key derivation: EVP_BytesToKey, md5, made without -pbkdf2)"),
];

/// What decrypted or decompressed bytes must start with to be the next layer or a dump.
fn recognizable(head: &[u8]) -> bool {
    head.starts_with(archive::MAGIC)
        || head.starts_with(GZIP)
        || head.starts_with(ZSTD)
        || head.starts_with(PGDMP)
        || is_tar(head)
        || (!head.is_empty() && looks_like_text(head))
}

/// An OpenPGP message: binary packets (a symmetric-key session key packet, tag 3, in the
/// old or new header format, or a public-key one, tag 1) or ASCII armor.
fn gpg_kind(head: &[u8]) -> Option<&'static str> {
    match head.first()? {
        0x8c..=0x8e | 0xc3 => Some("symmetric"),
        0x84..=0x86 | 0xc1 => Some("public-key"),
        _ if head.starts_with(b"-----BEGIN PGP MESSAGE-----") => Some("armored"),
        _ => None,
    }
}

/// A short description of a file's outer layers and, when visible without a key, the dump
/// format inside: for listings (`gzip/plain`, `openssl`, `gpg`, `custom`, `pgdrill`), for a
/// path of `tree` (the view it was found in).
pub fn sniff_in(tree: &Tree, path: &Path) -> String {
    if path.is_dir() {
        return if path.join("toc.dat").is_file() { "directory".into() } else { "?".into() };
    }
    if tree.materialize(path).is_err() {
        return "unreadable".into();
    }
    let Ok(file) = std::fs::File::open(path) else { return "unreadable".into() };
    sniff_read(Box::new(io::BufReader::new(file)))
}

/// `sniff`, of a file's first bytes (an object's, read through its store): what they show
/// of its layers and, when visible without a key, the dump format inside.
pub fn sniff_bytes(first: &[u8]) -> String {
    sniff_read(Box::new(Cursor::new(first.to_vec())))
}

/// `sniff`'s layers, read from `r`.
fn sniff_read(mut r: Box<dyn Read + Send>) -> String {
    let mut layers: Vec<&str> = Vec::new();
    for _ in 0..3 {
        let Ok((head, peeked)) = peek(r) else { break };
        if head.starts_with(archive::MAGIC) {
            layers.push("pgdrill");
            break;
        } else if head.starts_with(OPENSSL) {
            layers.push("openssl");
            break;
        } else if gpg_kind(&head).is_some() {
            layers.push("gpg");
            break;
        } else if head.starts_with(GZIP) {
            layers.push("gzip");
            r = Box::new(flate2::read::MultiGzDecoder::new(peeked));
        } else if head.starts_with(ZSTD) {
            layers.push("zstd");
            match zstd::stream::read::Decoder::new(peeked) {
                Ok(d) => r = Box::new(d),
                Err(_) => break,
            }
        } else {
            layers.push(if head.starts_with(PGDMP) {
                "custom"
            } else if is_tar(&head) {
                "tar"
            } else if !head.is_empty() && looks_like_text(&head) {
                "plain"
            } else {
                "?"
            });
            break;
        }
    }
    layers.join("/")
}

/// Up to `n` bytes from `r`, keeping what was read before an error (a stand-in of an object
/// holds only its first bytes; a decompressor fails past them).
fn head_of(r: &mut dyn Read, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match r.read(&mut out[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    out.truncate(got);
    out
}

/// Name endings of a pg_dump output under encryption: what an encryption envelope's name
/// must read as before prune takes it for a backup (its content cannot be seen without the
/// passphrase).
const DUMP_EXTS: &[&str] = &["sql", "dump", "backup", "pgdump", "custom", "tar", "pgsql", "psql"];

/// Whether another tool's file is recognisably a pg_dump output, from its content: a
/// custom-format header (`PGDMP`), a tar dump's `toc.dat`, a directory dump, or pg_dump's
/// opening comment (`-- PostgreSQL database dump`) after decompression; or an encryption
/// envelope (openssl, gpg) whose name reads as a dump (`.sql.gz.enc`, `.dump.gpg`). `Ok`
/// says what it is; `Err` why it is not taken for a backup. Prune deletes only the former:
/// a name with a date and `.gz` is not enough (`DB-2020-01-05.log.gz`). For a path of `tree`
/// (the view it was found in).
pub fn recognise_in(tree: &Tree, path: &Path) -> Result<String, String> {
    if path.is_dir() {
        return if path.join("toc.dat").is_file() {
            Ok("directory dump".into())
        } else {
            Err("a directory without toc.dat".into())
        };
    }
    tree.materialize(path)?;
    let file = std::fs::File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let mut r: Box<dyn Read + Send> = Box::new(io::BufReader::new(file));
    let mut layers: Vec<&str> = Vec::new();
    for _ in 0..3 {
        let head = head_of(&mut r, 4096);
        let again = Cursor::new(head.clone());
        if head.starts_with(OPENSSL) || gpg_kind(&head).is_some() {
            let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
            let mut parts: Vec<&str> = name.split('.').skip(1).collect();
            while parts
                .last()
                .is_some_and(|p| matches!(*p, "enc" | "gpg" | "pgp" | "asc" | "gz" | "zst" | "bz2" | "xz"))
            {
                parts.pop();
            }
            let what = if head.starts_with(OPENSSL) { "openssl" } else { "gpg" };
            return match parts.last() {
                Some(ext) if DUMP_EXTS.contains(ext) => Ok(format!("{what}-encrypted dump (by its name)")),
                _ => Err(format!(
                    "{what}-encrypted, and its name does not read as a dump (.sql, .dump, ... before the compression and encryption endings)"
                )),
            };
        }
        if head.starts_with(GZIP) {
            layers.push("gzip");
            r = Box::new(flate2::read::MultiGzDecoder::new(again));
            continue;
        }
        if head.starts_with(ZSTD) {
            layers.push("zstd");
            match zstd::stream::read::Decoder::new(again) {
                Ok(d) => r = Box::new(d),
                Err(e) => return Err(format!("zstd: {e}")),
            }
            continue;
        }
        let inside = if layers.is_empty() { String::new() } else { format!(" inside {}", layers.join("/")) };
        if head.starts_with(PGDMP) {
            return Ok(format!("custom-format dump{inside}"));
        }
        if is_tar(&head) && head.starts_with(b"toc.dat") {
            return Ok(format!("tar-format dump{inside}"));
        }
        let text = String::from_utf8_lossy(&head[..head.len().min(1024)]).into_owned();
        if text.contains("-- PostgreSQL database dump") || text.contains("-- PostgreSQL database cluster dump") {
            return Ok(format!("SQL dump{inside}"));
        }
        return Err(if head.is_empty() {
            format!("empty{inside}")
        } else {
            format!("its content{inside} is not a pg_dump output (no PGDMP header, no `-- PostgreSQL database dump` opening)")
        });
    }
    Err("too many layers".into())
}

/// Whether another tool's file, known by its first bytes (`sniff_bytes`, read through its
/// store), can be read as a stream: everything but directory dumps and unknown kinds. No
/// local stand-in is made of it.
pub fn streamable_head(first: &[u8]) -> bool {
    streamable_kind(&sniff_bytes(first))
}

fn streamable_kind(kind: &str) -> bool {
    !(kind.is_empty() || kind.contains('?') || kind == "directory" || kind == "unreadable")
}

/// Open a backup file. `key` is the pgdrill key or passphrase; `passphrase` the one of an
/// `openssl enc` or `gpg --symmetric` file.
pub fn open(path: &Path, key: Option<&KeySource>, passphrase: Option<&str>) -> Result<Opened, Failure> {
    let open_file = || -> Result<Box<dyn Read + Send>, Failure> {
        let file = std::fs::File::open(path)
            .map_err(|e| Failure::invalid(format!("cannot open backup {}: {e}", path.display())))?;
        Ok(Box::new(io::BufReader::with_capacity(1 << 20, file)))
    };
    peel(path, open_file()?, Some(&open_file), key, passphrase)
}

/// A pgdrill archive read as a stream (an object in a store), its layers peeled as from a
/// file. `shown` names it in messages. A stream cannot be read twice, so an outer `openssl
/// enc` layer gets today's key derivation only.
pub fn open_stream(shown: &Path, stream: Box<dyn Read + Send>, key: Option<&KeySource>) -> Result<Opened, Failure> {
    peel(shown, Box::new(io::BufReader::with_capacity(1 << 20, stream)), None, key, None)
}

/// Opens the same input again from its start.
pub type Reopen<'a> = &'a dyn Fn() -> Result<Box<dyn Read + Send>, Failure>;

/// A backup that can be read from its start as often as needed but is not a local file
/// (another tool's file in an object store); `shown` names it.
pub fn open_from(
    shown: &Path,
    open: Reopen<'_>,
    key: Option<&KeySource>,
    passphrase: Option<&str>,
) -> Result<Opened, Failure> {
    peel(shown, Box::new(io::BufReader::with_capacity(1 << 20, open()?)), Some(open), key, passphrase)
}

fn peel(
    path: &Path,
    first: Box<dyn Read + Send>,
    reopen: Option<Reopen<'_>>,
    key: Option<&KeySource>,
    passphrase: Option<&str>,
) -> Result<Opened, Failure> {
    let failed = |m: String| Failure::failed(format!("{}: {m}", path.display()));
    let need_pass = |what: &str| {
        Failure::invalid(format!(
            "{} is encrypted with {what}: give its passphrase as `key:` (a declared secret, e.g. PGDRILL_BACKUP_KEY)",
            path.display()
        ))
    };
    let mut reader = first;
    let mut layers: Vec<&'static str> = Vec::new();
    // At most a few layers: pgdrill, openssl or gpg, then a compressor, then the dump itself.
    for _ in 0..4 {
        let (head, peeked) = peek(reader).map_err(|e| failed(format!("read error: {e}")))?;
        // Nothing at all (a 0-byte file, `gzip -c </dev/null`, a pg_dump that failed before
        // writing) is no backup: without this it read as an empty SQL script.
        if head.is_empty() {
            return Err(failed(match layers.last() {
                None => "the file is empty (0 bytes): not a backup".into(),
                Some(l) => format!("it holds nothing inside its {l} layer (0 bytes of dump): not a backup"),
            }));
        }
        // The first bytes of a pgdrill or custom-format header and nothing more: a file cut
        // inside its header (`PGD` starts both).
        let what = match (archive::MAGIC.starts_with(&head), PGDMP.starts_with(&head)) {
            (true, true) => Some("a pgdrill archive or pg_dump custom-format dump"),
            (true, false) if head.len() < archive::MAGIC.len() => Some("a pgdrill archive"),
            (false, true) if head.len() < PGDMP.len() => Some("a pg_dump custom-format dump"),
            _ => None,
        };
        if let Some(what) = what {
            return Err(failed(format!("{what} cut inside its header ({} bytes): not a complete backup", head.len())));
        }
        if head.starts_with(archive::MAGIC) {
            let (_, plain) = archive::open(peeked, key).map_err(|e| Failure::from(e).context(path.display()))?;
            layers.push("pgdrill");
            reader = plain;
        } else if head.starts_with(OPENSSL) {
            let pass = passphrase.ok_or_else(|| need_pass("openssl enc"))?;
            let Some(open_file) = reopen.filter(|_| layers.is_empty()) else {
                // Inside another layer, or from a stream, the input cannot be read twice:
                // today's derivation only.
                layers.push("openssl");
                reader =
                    Box::new(ToolReader::openssl(Box::new(peeked), pass, &["-pbkdf2"]).map_err(Failure::environment)?);
                continue;
            };
            drop(peeked);
            // Each key derivation is tried on the file from its start; the right one turns
            // the first bytes into something recognizable, a wrong one into noise.
            let mut found = None;
            for (args, name) in OPENSSL_VARIANTS {
                let r = ToolReader::openssl(open_file()?, pass, args).map_err(Failure::environment)?;
                let (head, peeked) = peek(Box::new(r)).map_err(|e| failed(format!("read error: {e}")))?;
                if recognizable(&head) {
                    found = Some((*name, peeked));
                    break;
                }
            }
            let Some((name, peeked)) = found else {
                return Err(failed(
                    "openssl enc could not decrypt it with the passphrase given (tried -pbkdf2 and the legacy key derivations with sha256 and md5): wrong passphrase or corrupted backup".into(),
                ));
            };
            layers.push(name);
            reader = Box::new(peeked);
        } else if let Some(kind) = gpg_kind(&head) {
            if kind == "public-key" {
                return Err(Failure::invalid(format!(
                    "{} is encrypted to a gpg public key: pgdrill decrypts only `gpg --symmetric` files; decrypt it with gpg first",
                    path.display()
                )));
            }
            if !layers.is_empty() {
                return Err(failed("a gpg message inside another layer: decrypt it with gpg first".into()));
            }
            let pass = passphrase.ok_or_else(|| need_pass("gpg --symmetric"))?;
            layers.push("gpg");
            reader = Box::new(ToolReader::gpg(Box::new(peeked), pass).map_err(Failure::environment)?);
        } else if head.starts_with(GZIP) {
            layers.push("gzip");
            reader = Box::new(flate2::read::MultiGzDecoder::new(peeked));
        } else if head.starts_with(ZSTD) {
            layers.push("zstd");
            reader = Box::new(zstd::stream::read::Decoder::new(peeked).map_err(|e| failed(e.to_string()))?);
        } else {
            let content = if head.starts_with(PGDMP) {
                Content::Custom
            } else if is_tar(&head) {
                Content::Tar
            } else if looks_like_text(&head) {
                Content::Plain
            } else if layers.iter().any(|l| l.starts_with("openssl") || *l == "gpg") {
                // A wrong passphrase decrypts to noise; openssl only says so at the end.
                return Err(failed(
                    "it decrypted to something that is not a pg_dump output: wrong passphrase or corrupted backup"
                        .into(),
                ));
            } else {
                return Err(failed(
                    "not a pg_dump output (neither custom format, directory, nor SQL text) nor a known compression or encryption".into(),
                ));
            };
            return Ok(Opened { content, layers, reader: Box::new(peeked) });
        }
    }
    Err(failed("too many layers of compression or encryption".into()))
}

/// A decrypting child process as a reader: `openssl enc -d` or `gpg --decrypt`. Its failure
/// ("bad decrypt", "Bad session key") is an error at the end of the stream, never silently
/// short data.
struct ToolReader {
    tool: &'static str,
    child: Child,
    out: ChildStdout,
    feeder: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    finished: bool,
    /// gpg's private home directory, removed with the reader (reaped after a kill).
    _home: Option<super::envelope::GpgHome>,
}

impl ToolReader {
    fn openssl(input: Box<dyn Read + Send>, pass: &str, kdf: &[&str]) -> Result<Self, String> {
        let mut cmd = crate::child::command("openssl");
        cmd.args(["enc", "-d", "-aes-256-cbc"])
            .args(kdf)
            .args(["-pass", "env:PGDRILL_OPENSSL_PASS"])
            // The passphrase goes through the environment of this one child, never argv.
            .env("PGDRILL_OPENSSL_PASS", pass);
        Self::spawn("openssl", cmd, input, None)
    }

    /// `gpg --decrypt` of `input`, fed on its stdin after the passphrase's line
    /// (`--passphrase-fd 0`: gpg reads that line byte by byte and the message from the rest,
    /// as `gpg --symmetric` does in `envelope`), so a file in an object store is read as a
    /// stream like any other, never downloaded first; the passphrase never in argv or the
    /// environment; a private, empty home directory so no keyring or agent of the user's is
    /// touched, and `--no-autostart` so no gpg-agent outlives the run.
    fn gpg(input: Box<dyn Read + Send>, pass: &str) -> Result<Self, String> {
        let home = super::envelope::GpgHome::new().map_err(|e| e.to_string())?;
        let mut cmd = crate::child::command("gpg");
        cmd.arg("--homedir")
            .arg(home.path())
            .args(["--batch", "--quiet", "--no-tty", "--no-autostart", "--pinentry-mode", "loopback"])
            .args(["--passphrase-fd", "0", "--decrypt"]);
        let line = format!("{pass}\n").into_bytes();
        Self::spawn("gpg", cmd, Box::new(Cursor::new(line).chain(input)), Some(home))
    }

    fn spawn(
        tool: &'static str,
        mut cmd: std::process::Command,
        mut input: Box<dyn Read + Send>,
        home: Option<super::envelope::GpgHome>,
    ) -> Result<Self, String> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = crate::child::spawn(&mut cmd)
            .map_err(|e| format!("cannot run {tool} (needed for {tool}-encrypted backups): {e}"))?;
        let mut stdin = child.stdin.take().ok_or("no stdin")?;
        let out = child.stdout.take().ok_or("no stdout")?;
        let mut err = child.stderr.take().ok_or("no stderr")?;
        let feeder = std::thread::spawn(move || {
            let _ = io::copy(&mut input, &mut stdin);
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Ok(ToolReader { tool, child, out, feeder: Some(feeder), stderr: Some(stderr), finished: false, _home: home })
    }
}

impl Read for ToolReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.out.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.finished {
            self.finished = true;
            if let Some(f) = self.feeder.take() {
                let _ = f.join();
            }
            let status = self.child.wait()?;
            let err = self.stderr.take().and_then(|h| h.join().ok()).unwrap_or_default();
            if !status.success() {
                let last = err.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
                return Err(io::Error::other(format!(
                    "{} could not decrypt ({last}): wrong passphrase or corrupted backup",
                    self.tool
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for ToolReader {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
