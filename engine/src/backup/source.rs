//! Opening any backup for reading: pgdrill archives and files made by other tools (plain
//! `.sql`, `pg_dump | gzip`, `pg_dump | zstd`, custom `.dump`, directory dumps and
//! `openssl enc -aes-256-cbc -pbkdf2` files).
//!
//! What a file is comes from its first bytes, never from its name: a `.sql.gz` that is not
//! gzip is reported as what it is. Layers are peeled until a pg_dump format is found, so
//! `pg_dump | gzip | openssl enc` opens too. Nothing here writes plaintext anywhere.

use std::io::{self, Chain, Cursor, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};

use serde::Serialize;

use super::BackupError;
use crate::archive::{self, KeySource};

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
    let mut magic = [0u8; 9];
    match std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)) {
        Ok(()) if &magic == archive::MAGIC => Origin::Pgdrill,
        _ => Origin::Foreign,
    }
}

/// A directory dump (has `toc.dat`) or a file.
pub fn locate(path: &Path) -> Result<Located, BackupError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| BackupError::Invalid(format!("cannot read backup {}: {e}", path.display())))?;
    if meta.is_dir() {
        if path.join("toc.dat").is_file() {
            return Ok(Located::Directory(path.to_path_buf()));
        }
        return Err(BackupError::Invalid(format!(
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

/// Open a backup file. `key` is the pgdrill key or passphrase, or the openssl passphrase.
pub fn open(path: &Path, key: Option<&KeySource>, openssl_pass: Option<&str>) -> Result<Opened, BackupError> {
    let failed = |m: String| BackupError::Failed(format!("{}: {m}", path.display()));
    let file = std::fs::File::open(path)
        .map_err(|e| BackupError::Invalid(format!("cannot open backup {}: {e}", path.display())))?;
    let mut reader: Box<dyn Read + Send> = Box::new(io::BufReader::with_capacity(1 << 20, file));
    let mut layers = Vec::new();
    // At most a few layers: pgdrill, openssl, then a compressor, then the dump itself.
    for _ in 0..4 {
        let (head, peeked) = peek(reader).map_err(|e| failed(format!("read error: {e}")))?;
        if head.starts_with(archive::MAGIC) {
            let (_, plain) = archive::open(peeked, key).map_err(|e| failed(e.to_string()))?;
            layers.push("pgdrill");
            reader = plain;
        } else if head.starts_with(OPENSSL) {
            let pass = openssl_pass.ok_or_else(|| {
                BackupError::Invalid(format!(
                    "{} is encrypted with openssl enc: give its passphrase as `key:` (a declared secret)",
                    path.display()
                ))
            })?;
            layers.push("openssl");
            // Not being able to run openssl says nothing about the backup: the environment's.
            reader = Box::new(OpensslReader::spawn(peeked, pass).map_err(BackupError::Environment)?);
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
            } else if layers.contains(&"openssl") {
                // A wrong passphrase decrypts to noise; openssl only says so at the end.
                return Err(failed("openssl decrypted it to something that is not a pg_dump output: wrong passphrase or corrupted backup".into()));
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

/// `openssl enc -d -aes-256-cbc -pbkdf2` as a reader; its failure ("bad decrypt") is an
/// error at the end of the stream, never silently short data.
struct OpensslReader {
    child: Child,
    out: ChildStdout,
    feeder: Option<std::thread::JoinHandle<()>>,
    stderr: Option<std::thread::JoinHandle<String>>,
    finished: bool,
}

impl OpensslReader {
    fn spawn(mut input: Peeked, pass: &str) -> Result<Self, String> {
        let mut cmd = crate::child::command("openssl");
        cmd.args(["enc", "-d", "-aes-256-cbc", "-pbkdf2", "-pass", "env:PGDRILL_OPENSSL_PASS"])
            // The passphrase goes through the environment of this one child, never argv.
            .env("PGDRILL_OPENSSL_PASS", pass)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = crate::child::spawn(&mut cmd)
            .map_err(|e| format!("cannot run openssl (needed for openssl-encrypted backups): {e}"))?;
        let mut stdin = child.stdin.take().ok_or("openssl has no stdin")?;
        let out = child.stdout.take().ok_or("openssl has no stdout")?;
        let mut err = child.stderr.take().ok_or("openssl has no stderr")?;
        let feeder = std::thread::spawn(move || {
            let _ = io::copy(&mut input, &mut stdin);
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Ok(OpensslReader { child, out, feeder: Some(feeder), stderr: Some(stderr), finished: false })
    }
}

impl Read for OpensslReader {
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
                let first = err.lines().next().unwrap_or("").trim().to_string();
                return Err(io::Error::other(format!(
                    "openssl could not decrypt ({first}): wrong passphrase or corrupted backup"
                )));
            }
        }
        Ok(n)
    }
}

impl Drop for OpensslReader {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
