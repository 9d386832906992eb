//! Round trips and tampering: every way a stored archive can be damaged is detected.

use std::io::Read;

use super::*;

fn data(n: usize) -> Vec<u8> {
    // Compressible but not trivial: a counter pattern.
    (0..n).map(|i| ((i * 31) % 251) as u8 ^ ((i / 4096) as u8)).collect()
}

fn seal(input: &[u8], codec: Codec, key: Option<&KeySource>) -> Vec<u8> {
    let opts = WriteOptions { codec, level: 3, threads: 1, key: key.map(|k| k.derive_new().expect("key")) };
    let (out, sizes) = write(input, Vec::new(), &opts).expect("write");
    assert_eq!(sizes.raw, input.len() as u64);
    assert_eq!(sizes.stored, out.len() as u64);
    out
}

fn unseal(archive: &[u8], key: Option<&KeySource>) -> Result<Vec<u8>, String> {
    let (_, mut r) = open(archive, key).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

fn raw_key() -> KeySource {
    KeySource::from_secret(&"ab".repeat(32))
}

#[test]
fn round_trips_for_every_codec_and_cipher() {
    let input = data(3 * CHUNK_SIZE + 12345);
    for codec in [Codec::Zstd, Codec::Gzip, Codec::None] {
        for key in [None, Some(raw_key()), Some(KeySource::Passphrase("correct horse".into()))] {
            let a = seal(&input, codec, key.as_ref());
            assert_eq!(unseal(&a, key.as_ref()).expect("round trip"), input, "{codec:?} {key:?}");
        }
    }
    // Empty input still has a final chunk.
    let a = seal(&[], Codec::None, Some(&raw_key()));
    assert_eq!(unseal(&a, Some(&raw_key())).expect("empty"), Vec::<u8>::new());
}

#[test]
fn keys_parse_from_hex_base64_or_passphrase() {
    assert!(matches!(KeySource::from_secret(&"0f".repeat(32)), KeySource::Raw(_)));
    assert!(matches!(KeySource::from_secret("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), KeySource::Raw(_)));
    assert!(matches!(KeySource::from_secret("a passphrase"), KeySource::Passphrase(_)));
}

/// Incompressible data so the archive has several chunks.
fn multi_chunk() -> (Vec<u8>, Vec<u8>) {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let input: Vec<u8> = (0..(2 * CHUNK_SIZE + 100))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let a = seal(&input, Codec::None, Some(&raw_key()));
    (input, a)
}

fn header_len(a: &[u8]) -> usize {
    9 + 4 + u32::from_be_bytes([a[9], a[10], a[11], a[12]]) as usize
}

#[test]
fn truncation_at_any_offset_is_detected() {
    let (_, a) = multi_chunk();
    let h = header_len(&a);
    for cut in [5, h - 1, h, h + 2, h + 4 + 100, h + 4 + CHUNK_SIZE + 16, a.len() - 1] {
        let e = unseal(&a[..cut], Some(&raw_key())).expect_err("truncated");
        assert!(e.contains("corrupted backup") || e.contains("not a pgdrill archive"), "cut {cut}: {e}");
    }
    // Cut exactly at a chunk boundary: no final chunk.
    let boundary = h + 4 + CHUNK_SIZE + 16;
    assert_eq!(
        unseal(&a[..boundary], Some(&raw_key())).expect_err("cut"),
        "corrupted backup: truncated after chunk 1 (no final chunk)"
    );
}

#[test]
fn a_flipped_byte_in_header_body_or_tail_is_detected() {
    let (_, a) = multi_chunk();
    let h = header_len(&a);
    for (what, at) in [("header", 20), ("body", h + 4 + 1000), ("tail", a.len() - 3)] {
        let mut b = a.clone();
        b[at] ^= 0x01;
        let e = unseal(&b, Some(&raw_key())).expect_err(what);
        assert!(e.contains("corrupted backup") || e.contains("wrong key or corrupted backup"), "{what}: {e}");
    }
    let mut b = a.clone();
    b[h + 4 + 1000] ^= 0x01;
    assert_eq!(
        unseal(&b, Some(&raw_key())).expect_err("body"),
        "wrong key or corrupted backup: chunk 0 failed authentication"
    );
}

#[test]
fn swapped_chunks_and_trailing_bytes_are_detected() {
    let (_, a) = multi_chunk();
    let h = header_len(&a);
    let rec = 4 + CHUNK_SIZE + 16;
    let mut b = a[..h].to_vec();
    b.extend_from_slice(&a[h + rec..h + 2 * rec]);
    b.extend_from_slice(&a[h..h + rec]);
    b.extend_from_slice(&a[h + 2 * rec..]);
    assert_eq!(
        unseal(&b, Some(&raw_key())).expect_err("swap"),
        "wrong key or corrupted backup: chunk 0 failed authentication"
    );
    let mut c = a.clone();
    c.push(0);
    assert_eq!(unseal(&c, Some(&raw_key())).expect_err("trailing"), "corrupted backup: data after the final chunk");
}

#[test]
fn a_wrong_key_is_named() {
    let (_, a) = multi_chunk();
    let other = KeySource::from_secret(&"cd".repeat(32));
    assert_eq!(
        unseal(&a, Some(&other)).expect_err("wrong"),
        "wrong key or corrupted backup: the key does not match this backup's key check"
    );
    assert_eq!(unseal(&a, None).expect_err("none"), "the backup is encrypted: a key is needed");
    let p = seal(b"x", Codec::Zstd, Some(&KeySource::Passphrase("right".into())));
    let e = unseal(&p, Some(&KeySource::Passphrase("wrong".into()))).expect_err("wrong passphrase");
    assert!(e.starts_with("wrong key or corrupted backup"), "{e}");
}

#[test]
fn a_corrupted_unencrypted_archive_fails_decompression() {
    let a = seal(&data(200_000), Codec::Zstd, None);
    let mut b = a.clone();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    b.truncate(b.len() - 10);
    let e = unseal(&b, None).expect_err("corrupt");
    assert!(e.starts_with("corrupted backup: decompression failed"), "{e}");
}

#[test]
fn a_keyring_writes_with_its_first_key_and_reads_with_any() {
    let input = data(2 * CHUNK_SIZE + 7);
    let a = "cd".repeat(32);
    let b = "the newer passphrase of the ring";
    let old = seal(&input, Codec::Zstd, Some(&KeySource::from_secret(&a)));
    let ring = KeySource::from_secret(&format!("# newest first\n{b}\n\n  {a}  \n"));
    assert_eq!(ring.members().len(), 2);
    assert_eq!(ring.fingerprint(), KeySource::from_secret(b).fingerprint(), "the newest writes");
    assert_ne!(ring.fingerprint(), KeySource::from_secret(&a).fingerprint());
    assert_eq!(unseal(&old, Some(&ring)).expect("an old archive opens with the ring"), input);
    let new = seal(&input, Codec::Zstd, Some(&ring));
    assert_eq!(unseal(&new, Some(&KeySource::from_secret(b))).expect("written with the newest"), input);
    assert!(unseal(&new, Some(&KeySource::from_secret(&a))).expect_err("not with the old").contains("wrong key"));
    // One line is one key, as before keyrings: a passphrase is not split or trimmed.
    assert!(matches!(KeySource::from_secret(" one passphrase "), KeySource::Passphrase(p) if p == " one passphrase "));
}

#[test]
fn reseal_moves_an_archive_to_the_new_key_without_changing_its_content() {
    let input = data(CHUNK_SIZE + 99);
    let a = KeySource::from_secret(&"ef".repeat(32));
    let b = KeySource::from_secret("the key after the rotation");
    let old = seal(&input, Codec::Gzip, Some(&a));
    let ring = KeySource::from_secret(&format!("the key after the rotation\n{}", "ef".repeat(32)));
    let new_key = ring.derive_new().expect("key");
    let (header, out, sizes) = reseal(old.as_slice(), Vec::new(), &ring, &new_key).expect("reseal");
    assert_eq!(sizes.stored, out.len() as u64);
    assert_eq!(header.key_check, Some(new_key.check()));
    assert_eq!(unseal(&out, Some(&b)).expect("opens under the new key alone"), input);
    assert!(unseal(&out, Some(&a)).is_err(), "no longer under the old key");
    // A damaged chunk stops it: nothing unauthenticated is sealed again.
    let mut bad = old.clone();
    let n = bad.len();
    bad[n - 40] ^= 1;
    assert!(reseal(bad.as_slice(), Vec::new(), &ring, &new_key).is_err());
}

/// Sealed values (the globals' password verifiers) had a hex decoder of their own that read
/// `+a` as `0a`, so an altered text still opened; the one decoder takes hex digits only.
#[test]
fn sealed_text_with_a_sign_in_its_hex_does_not_open() {
    let key = raw_key().derive_new().expect("key");
    // The nonce is random: seal until a byte pair starts with a zero a sign can stand for.
    let (sealed, at) = (0..100)
        .find_map(|_| {
            let sealed = key.seal("verifiers", b"secret").expect("seal");
            let at = (0..sealed.len()).step_by(2).find(|&i| sealed.as_bytes()[i] == b'0')?;
            Some((sealed, at))
        })
        .expect("a sealed text with a pair starting with 0");
    assert_eq!(key.unseal("verifiers", &sealed).expect("opens"), b"secret");
    let signed = format!("{}+{}", &sealed[..at], &sealed[at + 1..]);
    assert!(key.unseal("verifiers", &signed).is_err(), "{signed}");
    for (text, bytes) in [
        ("", Some(vec![])),
        ("00ff1A", Some(vec![0, 255, 26])),
        ("+a", None),
        ("abc", None),
        ("zz", None),
        ("\u{e9}0", None),
    ] {
        assert_eq!(unhex_bytes(text), bytes, "{text:?}");
    }
    assert_eq!(unhex::<2>("0a0b"), Some([10, 11]));
    assert_eq!(unhex::<2>("0a0b0c"), None);
}
