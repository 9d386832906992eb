//! What a tar stream holds, read as it passes on its way to the archive writer: a parser
//! over the tar's 512-byte blocks, fed whatever each read of the pipe brings.
//!
//! The base backup used to copy pg_basebackup's whole stream into a second pipe for a tar
//! reader on another thread: every byte crossed the kernel twice more, and the two threads
//! woke each other every 8 KiB (a profile of the bench's 470 MB backup: a fifth of pgdrill's
//! CPU in that copy and its reader). This sees the same bytes where they already are and
//! keeps only what the manifest needs: the number of files, PostgreSQL's `backup_manifest`,
//! the `backup_label`.
//!
//! It reads what the `tar` crate's `entries()` reads (ustar and GNU headers, a GNU long name
//! or a pax `path` for the next entry, octal or base-256 sizes, a checksum on every header)
//! and is stricter at the end: a stream that stops inside an entry, or before the
//! end-of-archive block pg_basebackup always writes, is an error, never a short tar taken
//! for a whole one.
//!
//! What this module must not do: copy or hold the stream (only the two small files it
//! names), or stop the bytes on their way (a malformed tar is reported at the end, when
//! nothing has been published).

use super::TarSeen;

const BLOCK: usize = 512;
/// As much of `backup_manifest` or `backup_label` as is kept (the earlier reader's bound).
const KEEP_AT_MOST: usize = 256 << 20;
/// A GNU long name or a pax header longer than this is not pg_basebackup's.
const EXTENSION_AT_MOST: usize = 1 << 20;

/// An entry's content that is kept while it passes.
#[derive(Debug)]
enum Keep {
    Nothing,
    Manifest(Vec<u8>),
    Label(Vec<u8>),
    LongName(Vec<u8>),
    Pax(Vec<u8>),
}

impl Keep {
    fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        let (v, at_most) = match self {
            Keep::Nothing => return Ok(()),
            Keep::Manifest(v) | Keep::Label(v) => (v, KEEP_AT_MOST),
            Keep::LongName(v) | Keep::Pax(v) => (v, EXTENSION_AT_MOST),
        };
        let room = at_most.saturating_sub(v.len());
        if room < bytes.len() && at_most == EXTENSION_AT_MOST {
            return Err(format!("a tar header extension longer than {EXTENSION_AT_MOST} bytes"));
        }
        v.extend_from_slice(&bytes[..bytes.len().min(room)]);
        Ok(())
    }
}

#[derive(Debug)]
enum State {
    /// Between entries: the next header's bytes so far are in `TarScan::header`.
    Header,
    /// Inside an entry: `data` bytes of content left, then `pad` bytes of padding.
    Body { data: u64, pad: u64 },
    /// After the end-of-archive block: whatever follows is not looked at.
    End,
    /// An error was found (in `seen.error`): the rest passes unread.
    Failed,
}

/// Feed it every byte of the stream in order (`feed`), then `finish`.
#[derive(Debug)]
pub(super) struct TarScan {
    seen: TarSeen,
    header: Vec<u8>,
    state: State,
    keep: Keep,
    /// A GNU long name or a pax `path` for the next entry.
    next_path: Option<String>,
}

impl Default for TarScan {
    fn default() -> Self {
        TarScan {
            seen: TarSeen::default(),
            header: Vec::with_capacity(BLOCK),
            state: State::Header,
            keep: Keep::Nothing,
            next_path: None,
        }
    }
}

impl TarScan {
    /// The next bytes of the stream, cut anywhere.
    pub(super) fn feed(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            match self.state {
                State::End | State::Failed => return,
                State::Header => {
                    let take = (BLOCK - self.header.len()).min(buf.len());
                    self.header.extend_from_slice(&buf[..take]);
                    buf = &buf[take..];
                    if self.header.len() == BLOCK {
                        let block = std::mem::replace(&mut self.header, Vec::with_capacity(BLOCK));
                        if let Err(e) = self.on_header(&block) {
                            self.fail(e);
                        }
                    }
                }
                State::Body { data, pad } if data > 0 => {
                    let take = data.min(buf.len() as u64) as usize;
                    if let Err(e) = self.keep.push(&buf[..take]) {
                        self.fail(e);
                        return;
                    }
                    buf = &buf[take..];
                    self.state = State::Body { data: data - take as u64, pad };
                    if data == take as u64 {
                        self.entry_done(pad);
                    }
                }
                State::Body { data: _, pad } => {
                    let take = pad.min(buf.len() as u64);
                    buf = &buf[take as usize..];
                    self.state = if pad == take { State::Header } else { State::Body { data: 0, pad: pad - take } };
                }
            }
        }
    }

    /// What the stream held; an error when it was not a whole tar.
    pub(super) fn finish(mut self) -> TarSeen {
        let cut = match self.state {
            State::End | State::Failed => None,
            State::Header if self.header.is_empty() => {
                Some("it ends without the end-of-archive block (the stream was cut short)")
            }
            State::Header | State::Body { .. } => Some("it ends inside an entry (the stream was cut short)"),
        };
        if let Some(why) = cut {
            self.seen.error = Some(why.to_string());
        }
        self.seen
    }

    fn fail(&mut self, why: String) {
        self.seen.error.get_or_insert(why);
        self.state = State::Failed;
    }

    fn on_header(&mut self, h: &[u8]) -> Result<(), String> {
        if h.iter().all(|&b| b == 0) {
            self.state = State::End;
            return Ok(());
        }
        let stored = octal(&h[148..156]).ok_or("a tar header's checksum is not a number")?;
        let sum: u64 =
            h.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { u64::from(b) }).sum();
        if stored != sum {
            return Err("archive header checksum mismatch".into());
        }
        let size = number(&h[124..136]).ok_or("a tar header's size is not a number")?;
        let path = match self.next_path.take() {
            Some(p) => p,
            None => {
                let name = text(&h[..100]);
                // The prefix field is POSIX ustar's; GNU headers use those bytes otherwise.
                match (&h[257..263] == b"ustar\0", text(&h[345..500])) {
                    (true, prefix) if !prefix.is_empty() => format!("{prefix}/{name}"),
                    _ => name,
                }
            }
        };
        self.keep = match h[156] {
            b'0' | 0 => {
                self.seen.files += 1;
                match path.as_str() {
                    "backup_manifest" => Keep::Manifest(Vec::new()),
                    "backup_label" => Keep::Label(Vec::new()),
                    _ => Keep::Nothing,
                }
            }
            b'L' => Keep::LongName(Vec::new()),
            b'x' => Keep::Pax(Vec::new()),
            _ => Keep::Nothing,
        };
        let pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        self.state = State::Body { data: size, pad };
        if size == 0 {
            self.entry_done(pad);
        }
        Ok(())
    }

    /// The entry's content has passed: what was kept goes where it belongs.
    fn entry_done(&mut self, pad: u64) {
        match std::mem::replace(&mut self.keep, Keep::Nothing) {
            Keep::Nothing => {}
            Keep::Manifest(v) => self.seen.backup_manifest = Some(v),
            Keep::Label(v) => self.seen.backup_label = Some(String::from_utf8_lossy(&v).into_owned()),
            Keep::LongName(v) => self.next_path = Some(text(&v)),
            Keep::Pax(v) => {
                if let Some(p) = pax_path(&v) {
                    self.next_path = Some(p);
                }
            }
        }
        self.state = if pad == 0 { State::Header } else { State::Body { data: 0, pad } };
    }
}

/// A NUL-terminated field as text.
fn text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// An octal field (NUL- or space-terminated, space-padded).
fn octal(field: &[u8]) -> Option<u64> {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let s = std::str::from_utf8(&field[..end]).ok()?.trim();
    u64::from_str_radix(s, 8).ok()
}

/// A numeric field: octal, or base-256 when its first byte's high bit is set (GNU, for
/// sizes of 8 GiB and more).
fn number(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 == 0 {
        return octal(field);
    }
    let tail = &field[field.len() - 8..];
    let high = field[..field.len() - 8].iter().enumerate().any(|(i, &b)| if i == 0 { b & 0x7f != 0 } else { b != 0 });
    (!high).then(|| u64::from_be_bytes(tail.try_into().unwrap_or_default()))
}

/// The `path` record of a pax extended header (`LEN path=VALUE\n` records).
fn pax_path(mut v: &[u8]) -> Option<String> {
    let mut path = None;
    while !v.is_empty() {
        let space = v.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&v[..space]).ok()?.parse().ok()?;
        if len <= space || len > v.len() {
            return path;
        }
        let record = &v[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(value) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(value).into_owned());
        }
        v = &v[len..];
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar as the `tar` crate writes it: some files (one with a name over 100 bytes, which
    /// takes a GNU long-name entry), a directory, a symlink, backup_label and backup_manifest.
    fn sample() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8], kind: tar::EntryType| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            if kind == tar::EntryType::Symlink {
                h.set_link_name("base/1").expect("link");
            }
            b.append_data(&mut h, path, data).expect("append");
        };
        add("backup_label", b"START WAL LOCATION: 0/2000028\n", tar::EntryType::Regular);
        add("base", b"", tar::EntryType::Directory);
        add("base/1/1259", &vec![7u8; 8192 * 3 + 17], tar::EntryType::Regular);
        add(&format!("base/{}/deep", "d".repeat(120)), b"x", tar::EntryType::Regular);
        add("pg_tblspc/16384", b"", tar::EntryType::Symlink);
        add("empty", b"", tar::EntryType::Regular);
        add("backup_manifest", br#"{"PostgreSQL-Backup-Manifest-Version": 1}"#, tar::EntryType::Regular);
        b.into_inner().expect("tar")
    }

    fn scan_in(bytes: &[u8], piece: usize) -> TarSeen {
        let mut s = TarScan::default();
        for c in bytes.chunks(piece) {
            s.feed(c);
        }
        s.finish()
    }

    /// What the `tar` crate's reader makes of the same bytes (the reader this replaced).
    fn as_the_tar_crate_reads(bytes: &[u8]) -> (u64, Option<Vec<u8>>, Option<String>) {
        use std::io::Read;
        let mut a = tar::Archive::new(bytes);
        let (mut files, mut manifest, mut label) = (0, None, None);
        for e in a.entries().expect("entries") {
            let mut e = e.expect("entry");
            files += u64::from(e.header().entry_type().is_file());
            let path = e.path().expect("path").to_string_lossy().into_owned();
            let mut v = Vec::new();
            e.read_to_end(&mut v).expect("read");
            match path.as_str() {
                "backup_manifest" => manifest = Some(v),
                "backup_label" => label = Some(String::from_utf8_lossy(&v).into_owned()),
                _ => {}
            }
        }
        (files, manifest, label)
    }

    #[test]
    fn a_tar_read_as_it_passes_gives_what_the_tar_crate_reads_however_the_pipe_cuts_it() {
        let bytes = sample();
        let (files, manifest, label) = as_the_tar_crate_reads(&bytes);
        assert_eq!(files, 5);
        for piece in [1, 7, 511, 512, 513, 4096, 65536, bytes.len()] {
            let seen = scan_in(&bytes, piece);
            assert_eq!(seen.error, None, "pieces of {piece}");
            assert_eq!(seen.files, files, "pieces of {piece}");
            assert_eq!(seen.backup_manifest, manifest, "pieces of {piece}");
            assert_eq!(seen.backup_label, label, "pieces of {piece}");
        }
        // What follows the end-of-archive block is not read as entries.
        let mut more = bytes.clone();
        more.extend_from_slice(&[0xff; 700]);
        assert_eq!(scan_in(&more, 4096).error, None);
    }

    #[test]
    fn a_pax_path_names_the_next_entry() {
        let mut b = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        // A record's length counts the whole record, its own digits included.
        let data = "21 path=backup_label\n";
        assert_eq!(data.len(), 21);
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(data.len() as u64);
        b.append_data(&mut pax, "PaxHeaders/x", data.as_bytes()).expect("pax");
        let mut h = tar::Header::new_ustar();
        h.set_size(5);
        b.append_data(&mut h, "other_name", &b"label"[..]).expect("file");
        let bytes = b.into_inner().expect("tar");
        let seen = scan_in(&bytes, 100);
        assert_eq!(seen.error, None);
        assert_eq!(seen.backup_label.as_deref(), Some("label"));
        assert_eq!(seen.files, 1);
        assert_eq!(as_the_tar_crate_reads(&bytes).2.as_deref(), Some("label"));
    }

    #[test]
    fn a_torn_or_changed_tar_stream_is_an_error_never_a_shorter_tar() {
        let bytes = sample();
        let end = bytes.len() - 1024;
        // Cut inside an entry, inside a header, and exactly before the end-of-archive block.
        for cut in [700, 512 + 3, end] {
            let seen = scan_in(&bytes[..cut], 300);
            assert!(seen.error.as_deref().is_some_and(|e| e.contains("cut short")), "cut at {cut}: {:?}", seen.error);
        }
        // A byte changed in a header.
        let mut changed = bytes.clone();
        changed[10] ^= 1;
        assert_eq!(scan_in(&changed, 4096).error.as_deref(), Some("archive header checksum mismatch"));
        // A size that is not a number.
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.as_mut_bytes()[124..136].copy_from_slice(b"zz\0\0\0\0\0\0\0\0\0\0");
        h.set_cksum();
        let mut s = TarScan::default();
        s.feed(h.as_bytes());
        assert_eq!(s.finish().error.as_deref(), Some("a tar header's size is not a number"));
    }

    #[test]
    fn base_256_sizes_are_read() {
        let mut f = [0u8; 12];
        f[0] = 0x80;
        f[4..].copy_from_slice(&(9u64 << 30).to_be_bytes());
        assert_eq!(number(&f), Some(9 << 30));
        assert_eq!(number(b"00000001750\0"), Some(0o1750));
    }
}
