//! Data offsets for a staged custom-format dump.
//!
//! pg_dump writing to a pipe cannot go back and record where each table's data starts, so
//! its table of contents says "position not set" for every entry. pg_restore with `-j` then
//! finds each table's data by scanning the file from the start, chunk header by chunk
//! header: every worker, for every table, re-reads everything before it. With many tables
//! that grows with tables x size.
//!
//! While a dump is staged, `OffsetRecorder` follows the format as the bytes pass (header,
//! table of contents, then the data blocks) and notes where each block starts; `patch`
//! then writes those positions into the staged file's table of contents, in place and with
//! the same length, exactly as pg_dump does itself when it writes to a regular file. It
//! never guesses: an archive version it does not know, or anything that does not parse,
//! leaves the file as it was (still a valid dump, only slower to restore in parallel). A
//! wrong offset could not restore wrong data either: pg_restore checks the block id it
//! finds there.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::Path;

// pg_backup_archiver.h
const K_OFFSET_POS_NOT_SET: u8 = 1;
const K_OFFSET_POS_SET: u8 = 2;
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

/// Archive versions whose layout this module knows (1.12 .. 1.15: PostgreSQL 11 to 16).
const MIN_VERSION: (u8, u8) = (1, 12);
const MAX_VERSION: (u8, u8) = (1, 15);

/// The largest integer size (bytes) a dump's header may declare: pg_dump's is 4.
const MAX_INT: usize = 16;

/// Where in the file an entry's offset field is, by dump id.
type Fields = HashMap<i64, u64>;

enum State {
    /// Collecting the header and table of contents (small; parsed once complete).
    Toc(Vec<u8>),
    /// Between blocks: the next byte is a block type.
    BlockType,
    /// Reading a small integer field (a sign byte and `int_size` bytes) into `buf`: a
    /// fixed buffer, since a data block of pg_dump's is one chunk per row: a heap
    /// allocation for each row's chunk length was about 14 million of them in a 2.5 GB
    /// staging (issue 41).
    Int { buf: [u8; MAX_INT + 1], len: usize, then: After },
    /// Skipping `left` bytes of chunk data, then a chunk length follows.
    Data { left: u64, in_blobs: bool },
    /// Parsing gave up; the bytes still pass through.
    Gave(String),
}

impl State {
    fn int(then: After) -> State {
        State::Int { buf: [0; MAX_INT + 1], len: 0, then }
    }
}

#[derive(Clone, Copy)]
enum After {
    DumpId { blobs: bool, start: u64 },
    ChunkLen { in_blobs: bool },
    BlobOid,
}

/// A `Write` that passes everything to `inner` and records data block positions.
pub struct OffsetRecorder<W: Write> {
    inner: W,
    pos: u64,
    state: State,
    int_size: usize,
    off_size: usize,
    fields: Fields,
    found: Vec<(i64, u64)>,
}

/// What `finish` found: the fields to patch and the offsets to write into them.
pub struct Offsets {
    off_size: usize,
    fields: Fields,
    found: Vec<(i64, u64)>,
}

impl<W: Write> OffsetRecorder<W> {
    pub fn new(inner: W) -> Self {
        OffsetRecorder {
            inner,
            pos: 0,
            state: State::Toc(Vec::new()),
            int_size: 0,
            off_size: 0,
            fields: Fields::new(),
            found: Vec::new(),
        }
    }

    /// The offsets found, or why there are none.
    pub fn finish(self) -> Result<Offsets, String> {
        match self.state {
            State::BlockType => Ok(Offsets { off_size: self.off_size, fields: self.fields, found: self.found }),
            State::Gave(why) => Err(why),
            State::Toc(_) => Err("the table of contents did not parse".into()),
            _ => Err("the dump ends inside a data block".into()),
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let here = self.pos;
            match &mut self.state {
                State::Gave(_) => return,
                State::Toc(buf) => {
                    buf.extend_from_slice(bytes);
                    self.pos += bytes.len() as u64;
                    let parsed = parse_toc(buf);
                    match parsed {
                        Ok(Some(toc)) => {
                            let rest = buf.split_off(toc.end);
                            self.int_size = toc.int_size;
                            self.off_size = toc.off_size;
                            self.fields = toc.fields;
                            self.state = if toc.int_size > MAX_INT {
                                State::Gave(format!("an integer size of {} bytes", toc.int_size))
                            } else {
                                State::BlockType
                            };
                            self.pos -= rest.len() as u64;
                            self.feed(&rest);
                        }
                        Ok(None) if buf.len() > 64 << 20 => {
                            self.state = State::Gave("the table of contents is larger than 64 MiB".into())
                        }
                        Ok(None) => {}
                        Err(e) => self.state = State::Gave(e),
                    }
                    return;
                }
                State::BlockType => {
                    let t = bytes[0];
                    bytes = &bytes[1..];
                    self.pos += 1;
                    self.state = match t {
                        BLK_DATA | BLK_BLOBS => State::int(After::DumpId { blobs: t == BLK_BLOBS, start: here }),
                        other => State::Gave(format!("unknown block type {other} at byte {here}")),
                    };
                }
                State::Int { buf, len, then } => {
                    let need = 1 + self.int_size - *len;
                    let take = need.min(bytes.len());
                    buf[*len..*len + take].copy_from_slice(&bytes[..take]);
                    *len += take;
                    bytes = &bytes[take..];
                    self.pos += take as u64;
                    if *len < 1 + self.int_size {
                        continue;
                    }
                    let v = read_int(&buf[..*len], self.int_size);
                    let then = *then;
                    self.state = match then {
                        After::DumpId { blobs, start } => {
                            self.found.push((v, start));
                            State::int(if blobs { After::BlobOid } else { After::ChunkLen { in_blobs: false } })
                        }
                        After::BlobOid if v == 0 => State::BlockType,
                        After::BlobOid => State::int(After::ChunkLen { in_blobs: true }),
                        After::ChunkLen { in_blobs } if v == 0 => {
                            if in_blobs {
                                State::int(After::BlobOid)
                            } else {
                                State::BlockType
                            }
                        }
                        After::ChunkLen { .. } if v < 0 => State::Gave(format!("negative chunk length at byte {here}")),
                        After::ChunkLen { in_blobs } => State::Data { left: v as u64, in_blobs },
                    };
                }
                State::Data { left, in_blobs } => {
                    let take = (*left).min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    self.pos += take;
                    *left -= take;
                    if *left == 0 {
                        let in_blobs = *in_blobs;
                        self.state = State::int(After::ChunkLen { in_blobs });
                    }
                }
            }
        }
    }
}

impl<W: Write> Write for OffsetRecorder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.feed(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Offsets {
    /// Data blocks found.
    pub fn blocks(&self) -> usize {
        self.found.len()
    }

    /// Write the offsets into the table of contents of the staged file at `path`.
    pub fn patch(&self, path: &Path) -> Result<usize, String> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(|e| e.to_string())?;
        let mut patched = 0;
        for (id, offset) in &self.found {
            let Some(field) = self.fields.get(id) else {
                return Err(format!("data block for dump id {id} has no table of contents entry"));
            };
            let mut flag = [0u8; 1];
            f.read_exact_at(&mut flag, *field).map_err(|e| e.to_string())?;
            if flag[0] != K_OFFSET_POS_NOT_SET {
                continue;
            }
            let mut bytes = vec![K_OFFSET_POS_SET];
            bytes.extend((0..self.off_size).map(|i| if i < 8 { (offset >> (8 * i)) as u8 } else { 0 }));
            f.write_all_at(&bytes, *field).map_err(|e| e.to_string())?;
            patched += 1;
        }
        Ok(patched)
    }
}

/// A parsed header and table of contents.
struct Toc {
    int_size: usize,
    off_size: usize,
    /// Where the data area starts.
    end: usize,
    fields: Fields,
}

/// Signed integer as pg_dump writes it: a sign byte, then `size` bytes little-endian.
fn read_int(b: &[u8], size: usize) -> i64 {
    let mut v: i64 = 0;
    for (i, byte) in b[1..=size].iter().enumerate().take(8) {
        v |= (*byte as i64) << (8 * i);
    }
    if b[0] != 0 {
        -v
    } else {
        v
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
    int_size: usize,
}

/// Not enough bytes yet.
struct More;

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, More> {
        let v = *self.b.get(self.at).ok_or(More)?;
        self.at += 1;
        Ok(v)
    }

    fn int(&mut self) -> Result<i64, More> {
        let end = self.at + 1 + self.int_size;
        if end > self.b.len() {
            return Err(More);
        }
        let v = read_int(&self.b[self.at..end], self.int_size);
        self.at = end;
        Ok(v)
    }

    /// A string (length, then bytes; -1 is NULL): only its presence matters here.
    fn string(&mut self) -> Result<bool, More> {
        let len = self.int()?;
        if len < 0 {
            return Ok(false);
        }
        let end = self.at + len as usize;
        if end > self.b.len() {
            return Err(More);
        }
        self.at = end;
        Ok(true)
    }
}

/// `Ok(None)`: the buffer does not hold the whole table of contents yet.
fn parse_toc(b: &[u8]) -> Result<Option<Toc>, String> {
    if b.len() < 11 {
        return Ok(None);
    }
    if &b[..5] != b"PGDMP" {
        return Err("not a custom-format dump".into());
    }
    let version = (b[5], b[6]);
    if version < MIN_VERSION || version > MAX_VERSION {
        return Err(format!("archive version {}.{} is not one this pgdrill records offsets for", version.0, version.1));
    }
    let (int_size, off_size, format) = (b[8] as usize, b[9] as usize, b[10]);
    if !(1..=8).contains(&int_size) || !(1..=16).contains(&off_size) || format != 1 {
        return Err("unexpected header (integer size, offset size or format)".into());
    }
    let mut c = Cursor { b, at: 11, int_size };
    match walk_toc(&mut c, version, off_size) {
        Ok(fields) => Ok(Some(Toc { int_size, off_size, end: c.at, fields })),
        Err(More) => Ok(None),
    }
}

fn walk_toc(c: &mut Cursor<'_>, version: (u8, u8), off_size: usize) -> Result<Fields, More> {
    // Compression: an int before 1.15, one byte (the algorithm) from 1.15.
    if version >= (1, 15) {
        c.byte()?;
    } else {
        c.int()?;
    }
    for _ in 0..7 {
        c.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    c.string()?; // database name
    c.string()?; // server version
    c.string()?; // pg_dump version
    let count = c.int()?;
    let mut fields = Fields::new();
    for _ in 0..count.max(0) {
        let dump_id = c.int()?;
        c.int()?; // had dumper
        c.string()?; // table oid
        c.string()?; // oid
        c.string()?; // tag
        c.string()?; // desc
        c.int()?; // section
        c.string()?; // defn
        c.string()?; // drop statement
        c.string()?; // copy statement
        c.string()?; // namespace
        c.string()?; // tablespace
        if version >= (1, 14) {
            c.string()?; // table access method
        }
        c.string()?; // owner
        c.string()?; // "with oids"
        while c.string()? {} // dependencies, ended by NULL
        let field = c.at as u64;
        c.byte()?; // offset flag
        for _ in 0..off_size {
            c.byte()?;
        }
        fields.insert(dump_id, field);
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(bytes: &[u8]) -> Result<Offsets, String> {
        let mut r = OffsetRecorder::new(Vec::new());
        r.write_all(bytes).expect("write to a Vec");
        r.finish()
    }

    #[test]
    fn what_is_not_a_custom_dump_is_left_alone() {
        let e = recorded(b"-- PostgreSQL database dump\nSET x = 1;\n").err().unwrap_or_default();
        assert!(e.contains("not a custom-format dump"), "{e}");
    }

    #[test]
    fn an_archive_version_it_does_not_know_is_left_alone() {
        let mut head = b"PGDMP".to_vec();
        head.extend([1, 16, 0, 4, 8, 1]);
        head.extend([0u8; 64]);
        let e = recorded(&head).err().unwrap_or_default();
        assert!(e.contains("1.16"), "{e}");
    }

    #[test]
    fn a_dump_cut_short_gives_no_offsets() {
        let e = recorded(b"PGDMP\x01\x0e\x00\x04\x08\x01\x00\x00").err().unwrap_or_default();
        assert!(e.contains("did not parse"), "{e}");
    }
}
