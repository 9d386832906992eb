//! Writing a backup in a team's own format (issue 40, item 2): the compressed dump stream
//! bare (`x.sql.gz` as `pg_dump | gzip` writes it), or encrypted by the tools teams' own
//! decrypt commands run: `openssl enc -aes-256-cbc -pbkdf2` and `gpg --symmetric`. The
//! tools themselves encrypt, so their own `openssl enc -d` and `gpg --decrypt` read the
//! result whatever their versions' details; pgdrill only feeds them and counts and hashes
//! what they write. The passphrase never reaches a child's argv: openssl reads it from its
//! own environment (`-pass env:`), gpg from the first line of its stdin (`--passphrase-fd
//! 0`, which gpg reads byte by byte, before the data that follows it).
//!
//! What this gives up against pgdrill's own archive is in the README ("Formats"): no MAC
//! binds the sidecar manifest to the file, and openssl's CBC has no integrity of its own.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::archive::{self, Envelope, Sizes, WriteOptions};

/// gpg's S2K iteration count, given so gpg does not ask an agent for its calibrated one
/// (with `--no-autostart` and no agent, gpg 2.2 then exits 2 after writing a good file,
/// and a failure could not be told from it). 65011712 is the largest OpenPGP can encode.
const GPG_S2K_COUNT: &str = "65011712";

/// `input` compressed per `opts` and wrapped per `envelope` into `out`. `passphrase` is
/// required by openssl and gpg (checked before: `Envelope::needs_passphrase`). `sizes.stored`
/// counts every byte that reached `out`.
pub fn write<R: Read, W: Write + Send>(
    input: R,
    out: W,
    opts: &WriteOptions,
    envelope: Envelope,
    passphrase: Option<&str>,
) -> io::Result<(W, Sizes)> {
    match envelope {
        Envelope::Pgdrill => archive::write(input, out, opts),
        Envelope::None => archive::write_bare(input, out, opts),
        Envelope::Openssl | Envelope::Gpg => {
            let pass = passphrase.filter(|p| !p.is_empty()).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "this format is encrypted: a passphrase is needed")
            })?;
            through_tool(input, out, opts, envelope, pass)
        }
    }
}

/// The encrypting child for `envelope`, its passphrase handed over as the module says.
/// Returns the command and what goes to its stdin before the data (gpg's passphrase line).
fn tool(envelope: Envelope, pass: &str) -> io::Result<(std::process::Command, Vec<u8>, Option<GpgHome>)> {
    match envelope {
        Envelope::Openssl => {
            let mut cmd = crate::child::command("openssl");
            cmd.args(["enc", "-e", "-aes-256-cbc", "-pbkdf2", "-salt", "-pass", "env:PGDRILL_OPENSSL_PASS"])
                .env("PGDRILL_OPENSSL_PASS", pass);
            Ok((cmd, Vec::new(), None))
        }
        Envelope::Gpg => {
            if pass.contains('\n') || pass.contains('\r') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "gpg reads its passphrase as one line: a passphrase with a line break cannot be given to it",
                ));
            }
            // A private, empty home: no keyring or agent of the user's is touched.
            let home = GpgHome::new()?;
            let mut cmd = crate::child::command("gpg");
            cmd.arg("--homedir")
                .arg(home.path())
                .args(["--batch", "--quiet", "--no-tty", "--no-autostart", "--pinentry-mode", "loopback"])
                .args(["--passphrase-fd", "0", "--symmetric", "--cipher-algo", "AES256", "--s2k-count", GPG_S2K_COUNT])
                // The stream is compressed already (or meant to stay as it is).
                .args(["--compress-algo", "none", "--output", "-"]);
            Ok((cmd, format!("{pass}\n").into_bytes(), Some(home)))
        }
        _ => Err(io::Error::other("not a tool's envelope")),
    }
}

/// gpg's home directory for one run of gpg: private (0700) and empty, so no keyring or
/// agent of the user's is touched. A `storage::private_dir` of kind `gpg` in the temporary
/// directory rather than a plain temporary one: removed when dropped, and when a kill -9
/// left it behind (a plain one stayed forever), the next pgdrill reaps it, since its name
/// records its owner (a dead owner's is removed by the next private directory made there
/// and when any pgdrill command starts).
pub(crate) struct GpgHome(PathBuf);

impl GpgHome {
    pub(crate) fn new() -> io::Result<GpgHome> {
        let dir = crate::storage::private_dir(&std::env::temp_dir(), "gpg")
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create a home directory for gpg: {e}")))?;
        // Removed at exit too, should this process end before the guard is dropped.
        crate::on_exit::track(&dir);
        Ok(GpgHome(dir))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
        crate::on_exit::untrack(&self.0);
    }
}

/// Compress into the tool's stdin on this thread while another copies its stdout into
/// `out`; the tool's failure (its last stderr line) is the error, never a short file.
fn through_tool<R: Read, W: Write + Send>(
    mut input: R,
    out: W,
    opts: &WriteOptions,
    envelope: Envelope,
    pass: &str,
) -> io::Result<(W, Sizes)> {
    let name = if envelope == Envelope::Gpg { "gpg" } else { "openssl" };
    let (mut cmd, first, _home) = tool(envelope, pass)?;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = crate::child::spawn(&mut cmd)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {name} (needed for envelope {name}): {e}")))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(io::Error::other(format!("{name} has no pipes")));
    };
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let (fed, copied) = std::thread::scope(|s| {
        let copier = s.spawn(move || -> io::Result<(W, u64)> {
            let mut out = out;
            let n = io::copy(&mut stdout, &mut out)?;
            out.flush()?;
            Ok((out, n))
        });
        let fed = (|| -> io::Result<(u64, u64)> {
            stdin.write_all(&first)?;
            let (_, sizes) = archive::write_bare(&mut input, &mut stdin, opts)?;
            Ok((sizes.raw, sizes.compressed))
        })();
        // Closed, so the tool sees the end (or, after a failure, stops).
        drop(stdin);
        if fed.is_err() {
            let _ = child.kill();
        }
        let copied = copier.join().unwrap_or_else(|_| Err(io::Error::other("the copying thread panicked")));
        (fed, copied)
    });
    let status = child.wait()?;
    let said = errors.join().unwrap_or_default();
    let tool_failed = || {
        let last = said.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("").to_string();
        io::Error::other(format!("{name} failed ({status}): {last}"))
    };
    // The cause, not its echo: pg_dump's stream failing is ours to report; a broken pipe
    // into the tool is the tool stopping, because the disk it wrote to failed (the copy's
    // error) or on its own (its status).
    let (raw, compressed) = match fed {
        Ok(v) => v,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            copied?;
            return Err(if status.success() { e } else { tool_failed() });
        }
        Err(e) => return Err(e),
    };
    let (out, stored) = copied?;
    if !status.success() {
        return Err(tool_failed());
    }
    Ok((out, Sizes { raw, compressed, stored }))
}

/// The file-name endings that say a compression or an encryption, and the envelope or
/// codec each means: a name that claims one the backup does not have is refused.
pub fn ending_disagrees(name: &str, envelope: Envelope, codec: archive::Codec) -> Option<String> {
    use archive::Codec;
    let lower = name.to_ascii_lowercase();
    if envelope == Envelope::Pgdrill {
        // Only pgdrill reads its archive: a name ending like gzip would send `gunzip` at it.
        return (!lower.ends_with(".pgdrill"))
            .then(|| "pgdrill's own archive is read by pgdrill only: its name must end in `.pgdrill`".into());
    }
    let mut rest = lower.as_str();
    let claims_tool = |ext: &str| match ext {
        "enc" => Some(Envelope::Openssl),
        "gpg" | "pgp" => Some(Envelope::Gpg),
        _ => None,
    };
    let outer = rest.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let said = claims_tool(outer);
    let envelope_is_tool = matches!(envelope, Envelope::Openssl | Envelope::Gpg);
    match (said, envelope_is_tool) {
        (Some(s), _) if s != envelope => {
            return Some(format!(
                "it ends in `.{outer}`, which says {}-encrypted, but the envelope is {}",
                s.name(),
                envelope.name()
            ))
        }
        (None, true) => {
            let want = if envelope == Envelope::Gpg { ".gpg" } else { ".enc" };
            return Some(format!(
                "the backup is encrypted ({}) but the name does not end in `{want}`: a team's `ls *.sql.gz` and `gunzip` would take it for plain gzip",
                envelope.name()
            ));
        }
        _ => {}
    }
    if said.is_some() {
        rest = rest.rsplit_once('.').map(|(r, _)| r).unwrap_or(rest);
    }
    let inner = rest.rsplit_once('.').map(|(_, e)| e).unwrap_or_default();
    let claimed = match inner {
        "gz" | "gzip" => Some(Codec::Gzip),
        "zst" | "zstd" => Some(Codec::Zstd),
        _ => None,
    };
    match claimed {
        Some(c) if c != codec => Some(format!("it ends in `.{inner}` but the compression is {}", codec_name(codec))),
        None if codec != Codec::None => Some(format!(
            "the compression is {} but the name does not end in `.{}`",
            codec_name(codec),
            if codec == Codec::Gzip { "gz" } else { "zst" }
        )),
        _ => None,
    }
}

/// A codec as runbooks spell it (`compression: gzip`).
fn codec_name(c: archive::Codec) -> &'static str {
    match c {
        archive::Codec::Zstd => "zstd",
        archive::Codec::Gzip => "gzip",
        archive::Codec::None => "none",
    }
}

/// The file name a writing `name_pattern` gives a backup of `database` started at `at`
/// (UTC): `{db}` is the database's name as its folder would be (`layout::folder_name`: no
/// `/`, no leading `.`, anything else as `%XX`), the time fields are zero-padded. The
/// pattern must name one file (no `/`), hold no `*` (nothing to write there) and read back:
/// the name it gives matches it as the reading side matches it, and reads as a backup
/// (`names::looks_like_backup`), so pgdrill's own listings find what it wrote.
pub fn render_name(pattern: &str, database: &str, at: time::OffsetDateTime) -> Result<String, String> {
    if pattern.contains('/') || pattern.contains('*') {
        return Err(format!(
            "name_pattern `{pattern}`: a pattern to write with names one file in the storage folder: no `/` and no `*`"
        ));
    }
    let parsed = super::names::NamePattern::parse(pattern)?;
    let fields: [(&str, String); 7] = [
        ("{db}", super::layout::folder_name(database)),
        ("{YYYY}", format!("{:04}", at.year())),
        ("{MM}", format!("{:02}", u8::from(at.month()))),
        ("{DD}", format!("{:02}", at.day())),
        ("{hh}", format!("{:02}", at.hour())),
        ("{mm}", format!("{:02}", at.minute())),
        ("{ss}", format!("{:02}", at.second())),
    ];
    // One pass, so a database named `{YYYY}` stays that text.
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let field = fields.iter().find(|(f, _)| rest[open..].starts_with(f));
        let Some((f, v)) = field else { return Err(format!("name_pattern `{pattern}`: unknown field")) };
        out.push_str(v);
        rest = &rest[open + f.len()..];
    }
    out.push_str(rest);
    if !pattern.contains("{YYYY}") {
        return Err(format!(
            "name_pattern `{pattern}`: a pattern to write with needs a time ({{YYYY}}{{MM}}{{DD}} at least), or every backup would take the same name"
        ));
    }
    if out.starts_with('.') || !super::names::looks_like_backup(&out) {
        return Err(format!(
            "name_pattern `{pattern}` gives `{out}`, which listings do not read as a backup: end it in .sql, .dump, .gz, .zst, .enc or .gpg (not hidden)"
        ));
    }
    let back = parsed.matches(&out);
    let db_back = back.as_ref().and_then(|i| i.database.clone());
    if back.is_none() || (pattern.contains("{db}") && db_back.as_deref() != Some(fields[0].1.as_str())) {
        return Err(format!(
            "name_pattern `{pattern}` gives `{out}`, which the same pattern does not read back as `{}`'s: put a separator that the database name cannot hold after {{db}}",
            database
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archive::Codec;

    #[test]
    fn a_name_must_say_the_compression_and_encryption_it_has() {
        assert_eq!(ending_disagrees("app_20260101.sql.gz", Envelope::None, Codec::Gzip), None);
        assert_eq!(ending_disagrees("app_20260101.sql.gz.enc", Envelope::Openssl, Codec::Gzip), None);
        assert_eq!(ending_disagrees("app_20260101.dump.zst.gpg", Envelope::Gpg, Codec::Zstd), None);
        assert_eq!(ending_disagrees("app_20260101.dump", Envelope::None, Codec::None), None);
        assert!(ending_disagrees("app.sql.gz", Envelope::None, Codec::Zstd).is_some());
        assert!(ending_disagrees("app.sql.gz", Envelope::Openssl, Codec::Gzip).is_some());
        assert!(ending_disagrees("app.sql.gz.enc", Envelope::Gpg, Codec::Gzip).is_some());
        assert!(ending_disagrees("app.sql", Envelope::None, Codec::Gzip).is_some());
        assert_eq!(ending_disagrees("app_20260101.dump.pgdrill", Envelope::Pgdrill, Codec::Zstd), None);
        assert!(ending_disagrees("app_20260101.sql.gz", Envelope::Pgdrill, Codec::Gzip).is_some());
    }

    #[test]
    fn a_writing_pattern_renders_a_name_that_reads_back() {
        let at = time::macros::datetime!(2026-12-06 14:05:09 UTC);
        let n = render_name("{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.sql.gz", "auth_db", at).expect("renders");
        assert_eq!(n, "auth_db_20261206_140509.sql.gz");
        // Names are data: a slash or a leading dot cannot move the file.
        let n = render_name("{db}_{YYYY}{MM}{DD}.dump", "../etc/x", at).expect("renders");
        assert!(!n.contains('/') && !n.starts_with('.'), "{n}");
        assert!(render_name("{db}.sql.gz", "app", at).expect_err("no time").contains("needs a time"));
        assert!(render_name("x/{db}_{YYYY}{MM}{DD}.sql", "app", at).expect_err("slash").contains("no `/`"));
        assert!(render_name("{db}_{YYYY}{MM}{DD}.log", "app", at).expect_err("not a backup").contains("do not read"));
    }
}
