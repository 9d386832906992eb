//! The backup archive format: pg_dump's bytes, compressed, optionally encrypted in
//! authenticated chunks, with a self-describing header.
//!
//! ```text
//! magic "PGDRILL" 0x00 0x01 | header length (u32 BE) | header (JSON) | body
//! ```
//! Without encryption the body is the compressed stream. With AES-256-GCM it is a sequence
//! of records `length (u32 BE) | ciphertext+tag`, each sealing at most `chunk_size` bytes of
//! the compressed stream under nonce `prefix(7) | counter(u32 BE) | last(u8)` and with the
//! magic and header as associated data. So an altered byte anywhere, a reordered or missing
//! chunk, a file cut short (no chunk marked last) or bytes after the last chunk are all
//! detected, and no plaintext from a chunk that failed authentication is ever returned.
//! Everything streams: memory is one chunk whatever the database size.

pub(crate) mod crypto;

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Class, Classified};

pub use crypto::{Key, KeySource};

pub const MAGIC: &[u8; 9] = b"PGDRILL\x00\x01";
/// Plaintext bytes sealed per chunk.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Bytes of input per zstd job when compressing on several threads.
const ZSTD_JOB: u32 = 2 << 20;
pub(crate) const MAX_HEADER: u32 = 64 * 1024;

/// Compression of the dump stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    Zstd,
    Gzip,
    None,
}

impl Codec {
    pub fn parse(s: &str) -> Result<Codec, String> {
        match s {
            "zstd" => Ok(Codec::Zstd),
            "gzip" | "gz" => Ok(Codec::Gzip),
            "none" => Ok(Codec::None),
            other => Err(format!("unknown compression `{other}`: use zstd, gzip or none")),
        }
    }
}

/// What wraps the compressed dump stream in storage. pgdrill's own archive is the default
/// and the only one whose manifest can be authenticated (its MAC sits in the authenticated
/// header's key); the others are what teams' scripts write (`pg_dump | gzip > x.sql.gz`,
/// `... | openssl enc -aes-256-cbc -pbkdf2`, `gpg --symmetric`), so their own commands
/// (`gunzip -t`, `openssl enc -d`, `gpg --decrypt`) keep reading what pgdrill writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Envelope {
    /// This module's archive: magic, header, compressed stream (AES-256-GCM chunks with a key).
    #[default]
    Pgdrill,
    /// The compressed stream alone, as `gzip`/`zstd` write it (or pg_dump's bytes with
    /// compression none): nothing to tell a damaged file but the sidecar manifest's sha256.
    None,
    /// `openssl enc -aes-256-cbc -pbkdf2 -salt` over the compressed stream: no MAC, so a
    /// damaged file is found by the manifest's sha256 or as a failed decryption.
    Openssl,
    /// `gpg --symmetric --cipher-algo AES256` over the compressed stream (OpenPGP's MDC
    /// detects alteration).
    Gpg,
}

impl Envelope {
    pub fn parse(s: &str) -> Result<Envelope, String> {
        match s {
            "pgdrill" => Ok(Envelope::Pgdrill),
            "none" => Ok(Envelope::None),
            "openssl" => Ok(Envelope::Openssl),
            "gpg" => Ok(Envelope::Gpg),
            o => Err(format!("unknown envelope `{o}`: use pgdrill, none, openssl or gpg")),
        }
    }

    /// What the manifest's `cipher` says of a file in this envelope, `key` given or not.
    pub fn cipher(self, key: bool) -> &'static str {
        match (self, key) {
            (Envelope::Pgdrill, true) => "aes-256-gcm",
            (Envelope::Openssl, _) => "aes-256-cbc",
            (Envelope::Gpg, _) => "openpgp-aes256",
            _ => "none",
        }
    }

    /// Its name in runbooks and manifests.
    pub fn name(self) -> &'static str {
        match self {
            Envelope::Pgdrill => "pgdrill",
            Envelope::None => "none",
            Envelope::Openssl => "openssl",
            Envelope::Gpg => "gpg",
        }
    }

    /// Whether it takes a passphrase (and refuses to be written without one).
    pub fn needs_passphrase(self) -> bool {
        matches!(self, Envelope::Openssl | Envelope::Gpg)
    }
}

/// Key derivation recorded in the header (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "alg", rename_all = "lowercase")]
pub enum Kdf {
    /// A raw 32-byte key was given.
    Raw,
    /// A passphrase through Argon2id.
    Argon2id { salt: String, m_cost: u32, t_cost: u32, p_cost: u32 },
}

/// The archive header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub codec: Codec,
    /// `aes-256-gcm` or `none`.
    pub cipher: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kdf: Option<Kdf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce_prefix: Option<String>,
    /// First 16 bytes of SHA-256("pgdrill key check" | key), hex: tells a wrong key apart
    /// from a corrupted chunk without revealing anything usable about the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_check: Option<String>,
    /// `hmac-sha256`: the manifest beside this archive carries a MAC under the archive's key
    /// (`Key::manifest_mac`). In the header, so it is authenticated with every chunk: a
    /// manifest of a new archive cannot be passed off as one written before binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
}

/// How manifests are bound to encrypted archives.
pub const MANIFEST_MAC: &str = "hmac-sha256";

/// Why an archive could not be read.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ArchiveError {
    #[error("not a pgdrill archive (bad magic); for files made by other tools use the matching restore path")]
    NotAnArchive,
    #[error("corrupted backup: unreadable header ({0})")]
    BadHeader(String),
    #[error("wrong key or corrupted backup: the key does not match this backup's key check")]
    WrongKey,
    #[error("the backup is encrypted: a key is needed")]
    KeyNeeded,
    #[error("wrong key or corrupted backup: chunk {0} failed authentication")]
    ChunkAuth(u64),
    #[error("corrupted backup: truncated after chunk {0} (no final chunk)")]
    Truncated(u64),
    #[error("corrupted backup: data after the final chunk")]
    TrailingData,
    #[error("corrupted backup: chunk {0} has an impossible length {1}")]
    BadLength(u64, u32),
    #[error("corrupted backup: decompression failed ({0})")]
    Decompress(String),
}

/// Every way an archive cannot be read is a verdict on the backup (not one of ours, damaged,
/// or not readable with the key given), never the environment's: a failed check. Except a
/// key that was not given at all: that is the input's (exit 2), and says nothing of the
/// backup, so the ledger must not record it as a failed verification.
impl Classified for ArchiveError {
    fn class(&self) -> Class {
        match self {
            ArchiveError::KeyNeeded => Class::Invalid,
            _ => Class::Failed,
        }
    }
}

impl From<ArchiveError> for io::Error {
    fn from(e: ArchiveError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

/// Sizes seen while writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sizes {
    /// Bytes pg_dump produced.
    pub raw: u64,
    /// Bytes after compression.
    pub compressed: u64,
    /// Bytes written to storage (header, records, tags).
    pub stored: u64,
}

/// Counts and hashes what passes through to the inner writer.
pub struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter { inner, hasher: Sha256::new(), bytes: 0 }
    }
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts bytes passing through a writer.
struct CountWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Counts and hashes what is read through it.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R) -> Self {
        HashReader { inner, hasher: Sha256::new(), bytes: 0 }
    }
    pub fn finish(self) -> (String, u64) {
        (hex(&self.hasher.finalize()), self.bytes)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Exactly `2 * N` hex digits -> `N` bytes.
pub fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    unhex_bytes(s)?.try_into().ok()
}

/// An even number of hex digits -> the bytes; anything else is `None`. The one hex decoder:
/// sealed values had a second one that took `+a` for `0a`.
pub fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    // from_str_radix would accept a `+` sign: only hex digits count.
    if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes().chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

/// Options for writing.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub codec: Codec,
    pub level: i32,
    pub threads: u32,
    pub key: Option<Key>,
}

/// The header of an archive sealed under `key`: a fresh nonce prefix and the key's check
/// (what `write` and `reseal` both start an encrypted archive with).
fn sealed_header(codec: Codec, key: &Key) -> Header {
    Header {
        codec,
        cipher: "aes-256-gcm".into(),
        kdf: Some(key.kdf.clone()),
        chunk_size: Some(CHUNK_SIZE),
        nonce_prefix: Some(hex(&crypto::random::<7>())),
        key_check: Some(key.check()),
        manifest: Some(MANIFEST_MAC.into()),
    }
}

/// The bytes an archive starts with, magic, header length and header, which are also the
/// associated data every chunk authenticates (`read_header` gives them back).
fn header_aad(header: &Header) -> io::Result<Vec<u8>> {
    let header_bytes = serde_json::to_vec(header).map_err(io::Error::other)?;
    let mut aad = MAGIC.to_vec();
    aad.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    aad.extend_from_slice(&header_bytes);
    Ok(aad)
}

/// Stream `input` into `out` as an archive. Returns the sizes (stored excludes nothing:
/// it is every byte written to `out`).
pub fn write<R: Read, W: Write>(mut input: R, out: W, opts: &WriteOptions) -> io::Result<(W, Sizes)> {
    let mut out = CountWriter { inner: out, bytes: 0 };
    let header = match &opts.key {
        None => Header {
            codec: opts.codec,
            cipher: "none".into(),
            kdf: None,
            chunk_size: None,
            nonce_prefix: None,
            key_check: None,
            manifest: None,
        },
        Some(k) => sealed_header(opts.codec, k),
    };
    let aad = header_aad(&header)?;
    out.write_all(&aad)?;

    // pg_dump -> compression -> (encryption) -> out
    let sealed: Box<dyn WriteFinish<CountWriter<W>>> = match &opts.key {
        None => Box::new(Plain(out)),
        Some(k) => Box::new(crypto::SealWriter::new(out, k, &header, aad)?),
    };
    let mut counted = CountWriter { inner: sealed, bytes: 0 };
    let raw = compress_stream(&mut input, &mut counted, opts)?;
    let compressed = counted.bytes;
    let out = counted.inner.finish()?;
    let stored = out.bytes;
    let mut inner = out.inner;
    inner.flush()?;
    Ok((inner, Sizes { raw, compressed, stored }))
}

/// `input` through `opts.codec` into `out`; returns the bytes read from `input`.
fn compress_stream<R: Read, W: Write>(input: &mut R, out: &mut W, opts: &WriteOptions) -> io::Result<u64> {
    Ok(match opts.codec {
        Codec::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, opts.level)?;
            if opts.threads > 1 {
                enc.multithread(opts.threads)?;
                // zstd's default job is four windows (8 MiB at level 3) and it holds several
                // jobs' input and output at once: about 45 MiB with 2 threads, most of the
                // backup's memory. 2 MiB jobs compressed the bench's dump to within 0.2 % in
                // the same CPU time, in 17 MiB (README, "Backups": the bench's figures).
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB))?;
            }
            let n = io::copy(input, &mut enc)?;
            enc.finish()?;
            n
        }
        Codec::Gzip => {
            let level = flate2::Compression::new(opts.level.clamp(0, 9) as u32);
            let mut enc = flate2::write::GzEncoder::new(out, level);
            let n = io::copy(input, &mut enc)?;
            enc.finish()?;
            n
        }
        Codec::None => io::copy(input, out)?,
    })
}

/// `input` compressed into `out` with no header and no encryption: exactly what `gzip`,
/// `zstd` (or nothing, for `none`) would have written, for a team's own format
/// (`Envelope::None`) or as the stream an outside encryptor reads. `stored` counts what
/// reached `out`, which is `compressed` here. `key` in `opts` is not used.
pub fn write_bare<R: Read, W: Write>(mut input: R, out: W, opts: &WriteOptions) -> io::Result<(W, Sizes)> {
    let mut counted = CountWriter { inner: out, bytes: 0 };
    let raw = compress_stream(&mut input, &mut counted, opts)?;
    counted.flush()?;
    let compressed = counted.bytes;
    Ok((counted.inner, Sizes { raw, compressed, stored: compressed }))
}

/// A writer that must be finished (the last chunk sealed) before it is done.
trait WriteFinish<W>: Write {
    fn finish(self: Box<Self>) -> io::Result<W>;
}

struct Plain<W>(W);

impl<W: Write> Write for Plain<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<W: Write> WriteFinish<W> for Plain<W> {
    fn finish(self: Box<Self>) -> io::Result<W> {
        Ok(self.0)
    }
}

/// Read the header of an archive.
pub fn read_header<R: Read>(input: &mut R) -> Result<(Header, Vec<u8>), ArchiveError> {
    let mut magic = [0u8; 9];
    input.read_exact(&mut magic).map_err(|_| ArchiveError::NotAnArchive)?;
    if &magic != MAGIC {
        return Err(ArchiveError::NotAnArchive);
    }
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(|_| ArchiveError::BadHeader("cut short".into()))?;
    let n = u32::from_be_bytes(len);
    if n > MAX_HEADER {
        return Err(ArchiveError::BadHeader(format!("length {n}")));
    }
    let mut bytes = vec![0u8; n as usize];
    input.read_exact(&mut bytes).map_err(|_| ArchiveError::BadHeader("cut short".into()))?;
    let header: Header = serde_json::from_slice(&bytes).map_err(|e| ArchiveError::BadHeader(e.to_string()))?;
    let mut aad = magic.to_vec();
    aad.extend_from_slice(&len);
    aad.extend_from_slice(&bytes);
    Ok((header, aad))
}

/// Open an archive for reading: the returned reader yields pg_dump's original bytes. Errors
/// (authentication, truncation, decompression) surface as `io::Error`s wrapping
/// `ArchiveError`, before any unauthenticated byte is returned.
pub fn open<'a, R: Read + Send + 'a>(
    mut input: R,
    key: Option<&KeySource>,
) -> Result<(Header, Box<dyn Read + Send + 'a>), ArchiveError> {
    let (header, aad) = read_header(&mut input)?;
    let plain: Box<dyn Read + Send + 'a> = match header.cipher.as_str() {
        "none" => Box::new(input),
        "aes-256-gcm" => {
            let src = key.ok_or(ArchiveError::KeyNeeded)?;
            let kdf = header.kdf.clone().ok_or_else(|| ArchiveError::BadHeader("no kdf".into()))?;
            let (key, _) = src.unlock(&kdf, header.key_check.as_deref())?;
            Box::new(crypto::OpenReader::new(input, &key, &header, aad)?)
        }
        other => return Err(ArchiveError::BadHeader(format!("unknown cipher `{other}`"))),
    };
    let out: Box<dyn Read + Send + 'a> = match header.codec {
        Codec::Zstd => Box::new(DecompressErrors(
            zstd::stream::read::Decoder::new(plain).map_err(|e| ArchiveError::Decompress(e.to_string()))?,
        )),
        Codec::Gzip => Box::new(DecompressErrors(flate2::read::MultiGzDecoder::new(plain))),
        Codec::None => plain,
    };
    Ok((header, out))
}

/// Read an encrypted archive's header and prove it authentic: derive the key (bounded KDF),
/// check it, and open the first chunk, whose associated data is the header. Reads one chunk
/// (at most 1 MiB), whatever the archive's size. Returns the header and the key.
pub fn authenticate_header<R: Read>(mut input: R, key: &KeySource) -> Result<(Header, Key), ArchiveError> {
    let (header, aad) = read_header(&mut input)?;
    if header.cipher != "aes-256-gcm" {
        return Err(ArchiveError::BadHeader(format!("cipher `{}` is not authenticated", header.cipher)));
    }
    let kdf = header.kdf.clone().ok_or_else(|| ArchiveError::BadHeader("no kdf".into()))?;
    let (k, _) = key.unlock(&kdf, header.key_check.as_deref())?;
    let mut r = crypto::OpenReader::new(input, &k, &header, aad)?;
    let mut one = [0u8; 1];
    r.read(&mut one).map_err(|e| archive_error(&e).cloned().unwrap_or(ArchiveError::ChunkAuth(0)))?;
    Ok((header, k))
}

/// Move an encrypted archive to another key without decompressing it or writing any
/// plaintext anywhere: each chunk of `input` is opened with whichever key of `old` unlocks it
/// and its compressed bytes sealed again under `new` into `out`, with a fresh nonce prefix
/// and a header naming the new key. Returns the new header and what was written (`raw` is
/// unknown here and left 0: the caller keeps the manifest's). A chunk that fails
/// authentication stops it before its bytes are sealed again.
pub fn reseal<R: Read, W: Write>(
    mut input: R,
    out: W,
    old: &KeySource,
    new: &Key,
) -> Result<(Header, W, Sizes), io::Error> {
    let (header, aad) = read_header(&mut input)?;
    if header.cipher != "aes-256-gcm" {
        return Err(ArchiveError::BadHeader(format!(
            "cipher `{}`: not encrypted, nothing to move to another key",
            header.cipher
        ))
        .into());
    }
    let kdf = header.kdf.clone().ok_or_else(|| ArchiveError::BadHeader("no kdf".into()))?;
    let (old_key, _) = old.unlock(&kdf, header.key_check.as_deref())?;
    let opened = crypto::OpenReader::new(input, &old_key, &header, aad)?;
    let mut out = CountWriter { inner: out, bytes: 0 };
    let new_header = sealed_header(header.codec, new);
    let new_aad = header_aad(&new_header)?;
    out.write_all(&new_aad)?;
    let mut sealed = Box::new(crypto::SealWriter::new(out, new, &new_header, new_aad)?);
    let mut opened = opened;
    let compressed = io::copy(&mut opened, &mut sealed)?;
    let out = sealed.finish()?;
    let stored = out.bytes;
    let mut inner = out.inner;
    inner.flush()?;
    Ok((new_header, inner, Sizes { raw: 0, compressed, stored }))
}

/// Decoder errors that are not ours (authentication) read as "decompression failed".
struct DecompressErrors<R>(R);

impl<R: Read> Read for DecompressErrors<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|i| i.is::<ArchiveError>()) {
                e
            } else {
                ArchiveError::Decompress(e.to_string()).into()
            }
        })
    }
}

/// The archive error inside an I/O error, if that is what it is.
pub fn archive_error(e: &io::Error) -> Option<&ArchiveError> {
    e.get_ref().and_then(|i| i.downcast_ref::<ArchiveError>())
}

#[cfg(test)]
mod tests;
