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
