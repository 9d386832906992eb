//! Keys and the authenticated chunk stream (AES-256-GCM, STREAM-style nonces).

use std::io::{self, Read, Write};

use aes_gcm::aead::{AeadInPlace, KeyInit, OsRng};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{hex, unhex, unhex_bytes, ArchiveError, Header, Kdf, CHUNK_SIZE};

const TAG: usize = 16;
const LAST: u32 = 0x8000_0000;
// Argon2id at OWASP's recommended cost (19 MiB, 2 passes): it keeps pgdrill's peak memory
// well under its 64 MiB budget while making each passphrase guess cost real work.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;

pub fn random<const N: usize>() -> [u8; N] {
    use aes_gcm::aead::rand_core::RngCore;
    let mut b = [0u8; N];
    OsRng.fill_bytes(&mut b);
    b
}

/// A secret as the operator gave it: a raw key, a passphrase, or a keyring of them.
#[derive(Clone)]
pub enum KeySource {
    Raw([u8; 32]),
    Passphrase(String),
    /// Several keys, newest first (`from_secret` of a text of one key per line): the first
    /// writes, every one is tried for reading, so backups written before a rotation keep
    /// opening until `pgdrill rekey` has moved them to the newest key.
    Ring(Vec<KeySource>),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeySource::Raw(_) => "KeySource::Raw(..)",
            KeySource::Passphrase(_) => "KeySource::Passphrase(..)",
            KeySource::Ring(_) => "KeySource::Ring(..)",
        })
    }
}

impl KeySource {
    /// A text of several keys, one per line (`keyring_lines`), is a keyring, newest first;
    /// one key is as `one`.
    pub fn from_secret(s: &str) -> KeySource {
        let lines = keyring_lines(s);
        if lines.len() > 1 {
            return KeySource::Ring(lines.into_iter().map(KeySource::one).collect());
        }
        KeySource::one(s)
    }

    /// 64 hex digits or base64 of 32 bytes is a raw key; anything else is a passphrase.
    fn one(s: &str) -> KeySource {
        let t = s.trim();
        if let Some(k) = unhex::<32>(t) {
            return KeySource::Raw(k);
        }
        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(t) {
            if let Ok(k) = <[u8; 32]>::try_from(bytes.as_slice()) {
                return KeySource::Raw(k);
            }
        }
        KeySource::Passphrase(s.to_string())
    }

    /// The keys to try for reading, newest first (one for a single key).
    pub fn members(&self) -> Vec<&KeySource> {
        match self {
            KeySource::Ring(keys) => keys.iter().flat_map(KeySource::members).collect(),
            k => vec![k],
        }
    }

    /// The key that writes: the newest of a keyring.
    pub fn writing(&self) -> &KeySource {
        match self {
            KeySource::Ring(keys) => keys.first().map(KeySource::writing).unwrap_or(self),
            k => k,
        }
    }

    /// How the logs and manifests name the writing key, never the key itself: 16 hex digits
    /// of SHA-256 over a label and the key. For a passphrase the hash is over its Argon2id
    /// derivation with a fixed salt (cached as any derivation), so the fingerprint is no
    /// cheaper a way to guess the passphrase than an archive's key check is.
    pub fn fingerprint(&self) -> String {
        let bytes = match self.writing() {
            KeySource::Raw(k) => *k,
            KeySource::Passphrase(p) => {
                let kdf = Kdf::Argon2id {
                    salt: "pgdrill key fingerprint".into(),
                    m_cost: M_COST,
                    t_cost: T_COST,
                    p_cost: P_COST,
                };
                // Within the costs argon2 checks, so it cannot fail; an empty keyring (no key)
                // hashes nothing.
                argon2(p, &kdf).unwrap_or_default()
            }
            KeySource::Ring(_) => [0u8; 32],
        };
        let mut h = Sha256::new();
        h.update(b"pgdrill key fingerprint");
        h.update(bytes);
        hex(&h.finalize()[..8])
    }

    /// The key of a keyring that opens an archive written with `kdf` and `key_check`, tried
    /// newest first, with the member it came from; `WrongKey` when none does.
    pub fn unlock(&self, kdf: &Kdf, key_check: Option<&str>) -> Result<(Key, &KeySource), super::ArchiveError> {
        for k in self.members() {
            let key = k.derive_for(kdf).map_err(super::ArchiveError::BadHeader)?;
            if key_check == Some(key.check().as_str()) {
                return Ok((key, k));
            }
        }
        Err(super::ArchiveError::WrongKey)
    }

    /// A key for a new archive (a fresh salt for passphrases), from the writing key.
    pub fn derive_new(&self) -> Result<Key, String> {
        match self.writing() {
            KeySource::Raw(k) => Ok(Key { bytes: *k, kdf: Kdf::Raw }),
            KeySource::Ring(_) => Err("an empty keyring holds no key".into()),
            KeySource::Passphrase(p) => {
                let kdf = Kdf::Argon2id { salt: hex(&random::<16>()), m_cost: M_COST, t_cost: T_COST, p_cost: P_COST };
                Ok(Key { bytes: argon2(p, &kdf)?, kdf })
            }
        }
    }

    /// The key for an existing archive, by its recorded derivation.
    pub fn derive_for(&self, kdf: &Kdf) -> Result<Key, String> {
        match (self.writing(), kdf) {
            (KeySource::Raw(k), Kdf::Raw) => Ok(Key { bytes: *k, kdf: Kdf::Raw }),
            (KeySource::Passphrase(p), Kdf::Argon2id { .. }) => Ok(Key { bytes: argon2(p, kdf)?, kdf: kdf.clone() }),
            // A raw key where a passphrase was used (or the reverse) is simply the wrong key:
            // derive something that will fail the key check.
            (KeySource::Raw(k), _) => Ok(Key { bytes: *k, kdf: kdf.clone() }),
            (KeySource::Passphrase(p), Kdf::Raw) => {
                Ok(Key { bytes: Sha256::digest(p.as_bytes()).into(), kdf: Kdf::Raw })
            }
            (KeySource::Ring(_), _) => Err("an empty keyring holds no key".into()),
        }
    }
}

/// The keys of a keyring text, newest first: one per line, blank lines and lines starting
/// with `#` left out, spaces around a key not part of it. One line (or none) is one key,
/// which `from_secret` reads whole, as before keyrings.
pub fn keyring_lines(s: &str) -> Vec<&str> {
    s.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
}

/// The most an archive header may ask of Argon2id. The header is read before anything is
/// authenticated (the key comes out of it), so a hostile or corrupted one must not make
/// pgdrill allocate terabytes (m_cost is in KiB) or spin for hours. 256 MiB and 16 passes
/// are well above what pgdrill writes (19 MiB, 2 passes) and within a small machine.
pub const MAX_M_COST: u32 = 256 * 1024;
pub const MAX_T_COST: u32 = 16;
pub const MAX_P_COST: u32 = 16;

fn argon2(pass: &str, kdf: &Kdf) -> Result<[u8; 32], String> {
    let Kdf::Argon2id { salt, m_cost, t_cost, p_cost } = kdf else { return Err("not argon2id".into()) };
    // Checked here, before the argon2 crate allocates its memory blocks.
    for (name, value, max) in
        [("m_cost", *m_cost, MAX_M_COST), ("t_cost", *t_cost, MAX_T_COST), ("p_cost", *p_cost, MAX_P_COST)]
    {
        if value > max {
            return Err(format!(
                "Argon2id {name} {value} is more than pgdrill allows ({max}): a corrupted or hostile archive header"
            ));
        }
    }
    // One derivation per passphrase and archive per process: a verify needs the key for the
    // manifest's MAC, the integrity check and the restore, and each derivation takes 19 MiB
    // (which glibc keeps once freed, one arena per thread: two derivations on two threads put
    // verify's peak RSS at 62 MiB instead of 44) and tens of milliseconds of CPU.
    let mut id = Sha256::new();
    id.update(b"pgdrill argon2id\0");
    id.update((pass.len() as u64).to_le_bytes());
    id.update(pass.as_bytes());
    id.update(format!("\0{salt}\0{m_cost}\0{t_cost}\0{p_cost}").as_bytes());
    let id: [u8; 32] = id.finalize().into();
    let cache = DERIVED.get_or_init(Default::default);
    if let Some(k) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&id) {
        return Ok(*k);
    }
    let params = argon2::Params::new(*m_cost, *t_cost, *p_cost, Some(32)).map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = [0u8; 32];
    a.hash_password_into(pass.as_bytes(), salt.as_bytes(), &mut out).map_err(|e| e.to_string())?;
    DERIVATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut keys = cache.lock().unwrap_or_else(|e| e.into_inner());
    if keys.len() >= 64 {
        keys.clear();
    }
    keys.insert(id, out);
    Ok(out)
}

/// Keys derived from passphrases in this process, by a hash of passphrase, salt and costs.
static DERIVED: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<[u8; 32], [u8; 32]>>> =
    std::sync::OnceLock::new();
/// How many Argon2id derivations this process has computed (the cache's test reads it).
static DERIVATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A derived 256-bit key and how it was derived.
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
    pub kdf: Kdf,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key").field("kdf", &self.kdf).finish_non_exhaustive()
    }
}

impl Key {
    pub fn check(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"pgdrill key check");
        h.update(self.bytes);
        hex(&h.finalize()[..16])
    }

    /// The MAC binding a manifest to the archive written with this key: HMAC-SHA256 under a
    /// key of its own (derived from the archive key with a label, so it is never the
    /// encryption key itself) over a label, the archive's nonce prefix (unique per archive,
    /// so a manifest cannot be moved to another archive) and the manifest's canonical bytes.
    pub fn manifest_mac(&self, nonce_prefix: &str, manifest: &[u8]) -> String {
        let mut k = Sha256::new();
        k.update(b"pgdrill manifest key");
        k.update(self.bytes);
        let mac_key: [u8; 32] = k.finalize().into();
        let mut msg = Vec::with_capacity(manifest.len() + 64);
        msg.extend_from_slice(b"pgdrill manifest v1\n");
        msg.extend_from_slice(nonce_prefix.as_bytes());
        msg.push(b'\n');
        msg.extend_from_slice(manifest);
        hex(&hmac_sha256(&mac_key, &msg))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(&self.bytes.into())
    }

    /// A small secret sealed for the manifest (password verifiers): AES-256-GCM under a key
    /// of its own derived with `label` (never the archive's key itself), a random nonce, the
    /// label as associated data; hex of nonce and ciphertext.
    pub fn seal(&self, label: &str, plain: &[u8]) -> Result<String, String> {
        let n = random::<12>();
        let mut buf = plain.to_vec();
        self.sealing(label)
            .encrypt_in_place(Nonce::from_slice(&n), label.as_bytes(), &mut buf)
            .map_err(|_| "sealing failed".to_string())?;
        Ok(format!("{}{}", hex(&n), hex(&buf)))
    }

    /// What `seal` sealed with the same key and label; an error when it was changed.
    pub fn unseal(&self, label: &str, sealed: &str) -> Result<Vec<u8>, String> {
        let bad = || format!("the sealed {label} do not open under this key: changed, or another key");
        let bytes = unhex_bytes(sealed).ok_or_else(bad)?;
        if bytes.len() < 12 + TAG {
            return Err(bad());
        }
        let (n, ct) = bytes.split_at(12);
        let mut buf = ct.to_vec();
        self.sealing(label).decrypt_in_place(Nonce::from_slice(n), label.as_bytes(), &mut buf).map_err(|_| bad())?;
        Ok(buf)
    }

    fn sealing(&self, label: &str) -> Aes256Gcm {
        let mut k = Sha256::new();
        k.update(b"pgdrill sealed ");
        k.update(label.as_bytes());
        k.update(self.bytes);
        let key: [u8; 32] = k.finalize().into();
        Aes256Gcm::new(&key.into())
    }
}

/// HMAC (RFC 2104) with SHA-256, for a key no longer than the 64-byte block.
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |b: u8| block.map(|k| k ^ b);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(msg).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// Compare two MACs without an early exit.
pub fn same_mac(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn prefix_of(header: &Header) -> Result<[u8; 7], ArchiveError> {
    let p = header.nonce_prefix.as_deref().ok_or_else(|| ArchiveError::BadHeader("no nonce prefix".into()))?;
    unhex::<7>(p).ok_or_else(|| ArchiveError::BadHeader("bad nonce prefix".into()))
}

/// What sealing and opening both start from: the key's cipher, the header's nonce prefix and
/// room for one sealed chunk.
fn chunk_state(key: &Key, header: &Header) -> Result<(Aes256Gcm, [u8; 7], Vec<u8>), ArchiveError> {
    Ok((key.cipher(), prefix_of(header)?, Vec::with_capacity(CHUNK_SIZE + TAG)))
}

fn nonce(prefix: &[u8; 7], counter: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..7].copy_from_slice(prefix);
    n[7..11].copy_from_slice(&counter.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// Seals the compressed stream into chunks.
pub struct SealWriter<W> {
    out: W,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    aad: Vec<u8>,
    buf: Vec<u8>,
    counter: u32,
}

impl<W: Write> SealWriter<W> {
    pub fn new(out: W, key: &Key, header: &Header, aad: Vec<u8>) -> io::Result<Self> {
        let (cipher, prefix, buf) = chunk_state(key, header)?;
        Ok(SealWriter { out, cipher, prefix, aad, buf, counter: 0 })
    }

    fn seal(&mut self, last: bool) -> io::Result<()> {
        let n = nonce(&self.prefix, self.counter, last);
        self.cipher
            .encrypt_in_place(Nonce::from_slice(&n), &self.aad, &mut self.buf)
            .map_err(|_| io::Error::other("encryption failed"))?;
        let mut len = self.buf.len() as u32;
        if last {
            len |= LAST;
        }
        self.out.write_all(&len.to_be_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.counter = self.counter.checked_add(1).ok_or_else(|| io::Error::other("too many chunks"))?;
        Ok(())
    }
}

impl<W: Write> Write for SealWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() == CHUNK_SIZE {
            // More data after a full chunk: that chunk was not the last.
            self.seal(false)?;
        }
        let n = data.len().min(CHUNK_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<W: Write> super::WriteFinish<W> for SealWriter<W> {
    fn finish(mut self: Box<Self>) -> io::Result<W> {
        self.seal(true)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Opens chunks, handing out only authenticated plaintext.
pub struct OpenReader<R> {
    input: R,
    cipher: Aes256Gcm,
    prefix: [u8; 7],
    aad: Vec<u8>,
    buf: Vec<u8>,
    pos: usize,
    counter: u32,
    done: bool,
}

impl<R: Read> OpenReader<R> {
    pub fn new(input: R, key: &Key, header: &Header, aad: Vec<u8>) -> Result<Self, ArchiveError> {
        if header.chunk_size != Some(CHUNK_SIZE) {
            return Err(ArchiveError::BadHeader(format!("unsupported chunk size {:?}", header.chunk_size)));
        }
        let (cipher, prefix, buf) = chunk_state(key, header)?;
        Ok(OpenReader { input, cipher, prefix, aad, buf, pos: 0, counter: 0, done: false })
    }

    fn next_chunk(&mut self) -> Result<(), ArchiveError> {
        let idx = u64::from(self.counter);
        let mut len = [0u8; 4];
        if !read_full(&mut self.input, &mut len) {
            return Err(ArchiveError::Truncated(idx));
        }
        let raw = u32::from_be_bytes(len);
        let last = raw & LAST != 0;
        let n = raw & !LAST;
        if (n as usize) < TAG || n as usize > CHUNK_SIZE + TAG {
            return Err(ArchiveError::BadLength(idx, n));
        }
        self.buf.resize(n as usize, 0);
        self.pos = 0;
        if !read_full(&mut self.input, &mut self.buf) {
            self.buf.clear();
            return Err(ArchiveError::Truncated(idx));
        }
        let nn = nonce(&self.prefix, self.counter, last);
        if self.cipher.decrypt_in_place(Nonce::from_slice(&nn), &self.aad, &mut self.buf).is_err() {
            self.buf.clear();
            return Err(ArchiveError::ChunkAuth(idx));
        }
        self.counter += 1;
        if last {
            let mut extra = [0u8; 1];
            if read_full(&mut self.input, &mut extra) {
                self.buf.clear();
                return Err(ArchiveError::TrailingData);
            }
            self.done = true;
        }
        Ok(())
    }
}

/// Fill `buf` completely; false on a clean or partial EOF.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return false,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

impl<R: Read> Read for OpenReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod kdf_tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn a_passphrase_is_derived_once_per_archive_salt_and_the_key_is_the_same() {
        let pass = KeySource::Passphrase("kdf cache test passphrase".into());
        let first = pass.derive_new().expect("derive");
        let before = DERIVATIONS.load(Ordering::Relaxed);
        let again = pass.derive_for(&first.kdf).expect("derive again");
        assert_eq!(again.check(), first.check(), "the same key");
        assert_eq!(DERIVATIONS.load(Ordering::Relaxed), before, "not derived again");
        // Another passphrase with the same salt is another key, derived.
        let other = KeySource::Passphrase("another passphrase".into()).derive_for(&first.kdf).expect("derive");
        assert_ne!(other.check(), first.check());
        assert_eq!(DERIVATIONS.load(Ordering::Relaxed), before + 1);
        // Another salt too.
        let second = pass.derive_new().expect("derive");
        assert_ne!(second.check(), first.check());
    }
}
