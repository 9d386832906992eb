//! Other tools' physical backups as sources: where they are (a location string, named in
//! runbooks and `backups list` the way a storage is), the tool's binary and version, and how
//! its child processes are run. The tools restore their own backups: pgdrill runs them as
//! children and never reads their repository formats itself.
//!
//! This module must not start servers nor judge a recovery (recover.rs does both); it only
//! turns a location into a source and a tool's failure into an error of the right class.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::error::Failure;

/// A tool's binary as found, with the version it reported (the log and the report say
/// which binary served).
#[derive(Debug, Clone)]
pub struct Tool {
    pub path: PathBuf,
    /// As the tool printed it, e.g. `pgBackRest 2.45`.
    pub version: String,
}

/// Environment variables a tool child gets from pgdrill's environment, by prefix: the
/// tool's own settings (`PGBACKREST_REPO1_CIPHER_PASS`, S3 keys) and the cloud SDKs'
/// credentials. Secrets reach the tool through these, never through argv.
pub const TOOL_ENV_PREFIXES: &[&str] =
    &["PGBACKREST_", "AWS_", "AZURE_", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT", "BOTO_"];

/// The variables of pgdrill's environment a tool child gets (names and values).
pub fn tool_env() -> Vec<(OsString, OsString)> {
    std::env::vars_os()
        .filter(|(k, _)| k.to_str().is_some_and(|k| TOOL_ENV_PREFIXES.iter().any(|p| k.starts_with(p))))
        .collect()
}

/// A command for a tool: a clean environment (`child::command`) plus the tool's variables.
pub fn tool_command(program: &Path) -> Command {
    let mut cmd = crate::child::command(program);
    cmd.envs(tool_env());
    cmd
}

/// Find `program` (`explicit`, else on PATH) and ask its version with `version_args`. A
/// missing tool is the environment's failure naming the Debian package that holds it.
pub fn find(program: &str, explicit: Option<&Path>, version_args: &[&str], package: &str) -> Result<Tool, Failure> {
    let path = match explicit {
        Some(p) => p.to_path_buf(),
        None => on_path(program).ok_or_else(|| {
            Failure::environment(format!(
                "{program} not found on PATH: install the Debian package `{package}` (apt-get install {package}) or give the binary's path"
            ))
        })?,
    };
    let out = crate::child::output(tool_command(&path).args(version_args)).map_err(|e| {
        Failure::environment(format!(
            "cannot run {} ({e}): install the Debian package `{package}` or give the binary's path",
            path.display()
        ))
    })?;
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let version = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default().to_string();
    if !out.status.success() || version.is_empty() {
        return Err(Failure::environment(format!(
            "{} {} did not report its version ({}): check the installation of `{package}`",
            path.display(),
            version_args.join(" "),
            last_lines(&text, 3)
        )));
    }
    Ok(Tool { path, version })
}

/// The first `program` in PATH's directories that is an executable file.
fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// Run a tool child to its end with stdout and stderr captured; a child that could not be
/// started is the environment's failure.
pub fn run(cmd: &mut Command, what: &str) -> Result<Output, Failure> {
    crate::child::output(cmd).map_err(|e| Failure::environment(format!("cannot run {what}: {e}")).with_source(e))
}

/// The last `n` non-empty lines of a tool's output, joined with " / ": what a one-line
/// message quotes of a failure.
pub fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let from = lines.len().saturating_sub(n);
    crate::util::visible(&lines[from..].join(" / ")).into_owned()
}

/// Both streams of a finished child, as text.
pub fn both(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Options after `?` in a location: `k=v` pairs separated by `&`, values percent-decoded
/// strictly. An unknown option or a bad encoding is invalid input naming it.
pub fn options(query: &str, known: &[&str], location: &str) -> Result<Vec<(String, String)>, Failure> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if !known.contains(&k) {
            return Err(Failure::invalid(format!(
                "unknown option `{}` in the source `{}` (known: {})",
                crate::util::visible(k),
                crate::util::visible(location),
                known.join(", ")
            )));
        }
        let v = crate::util::percent_decode_strict(v).ok_or_else(|| {
            Failure::invalid(format!("the option `{k}` of the source `{}` is not valid percent-encoding", crate::util::visible(location)))
        })?;
        out.push((k.to_string(), v));
    }
    Ok(out)
}

/// Whether the string names a source of another tool (rather than a pgdrill storage).
pub fn is_tool_location(location: &str) -> bool {
    location.starts_with(super::pgbackrest::SCHEME) || location.starts_with(super::barman::CLOUD_SCHEME)
}

/// A word of a restore_command as the server reads it: `%` is the server's escape (`%f`,
/// `%p`), so a `%` of a path or a name is written `%%`.
pub fn server_escape(word: &str) -> String {
    word.replace('%', "%%")
}

/// `0/5000028` -> 0x5000028.
pub fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

/// The timeline of a WAL segment's name (its first eight hex digits).
pub fn segment_timeline(segment: &str) -> Option<u32> {
    u32::from_str_radix(segment.get(..8)?, 16).ok()
}

/// The LSN where WAL segment `segment` (24 hex digits) starts, for 16 MiB segments.
pub fn segment_start_lsn(segment: &str, segment_size: u64) -> Option<u64> {
    if segment.len() < 24 || segment_size == 0 {
        return None;
    }
    let log = u64::from_str_radix(&segment[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&segment[16..24], 16).ok()?;
    Some(log * (0x1_0000_0000 / segment_size) * segment_size + seg * segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsns_and_segments_read_as_postgresql_writes_them() {
        assert_eq!(parse_lsn("0/5000028"), Some(0x500_0028));
        assert_eq!(parse_lsn("1/0"), Some(1 << 32));
        assert_eq!(parse_lsn("nonsense"), None);
        assert_eq!(segment_timeline("000000020000000000000005"), Some(2));
        assert_eq!(segment_start_lsn("000000010000000000000005", 16 << 20), Some(0x500_0000));
        assert_eq!(segment_start_lsn("000000010000000100000002", 16 << 20), Some((1 << 32) + 0x200_0000));
        assert_eq!(segment_start_lsn("short", 16 << 20), None);
    }

    #[test]
    fn an_unknown_option_in_a_source_is_named() {
        let e = options("stanza=a&colour=red", &["stanza"], "pgbackrest://a?colour=red").unwrap_err();
        assert!(e.to_string().contains("`colour`"), "{e}");
        let ok = options("config=%2Fetc%2Fp.conf", &["config"], "x").unwrap();
        assert_eq!(ok, vec![("config".to_string(), "/etc/p.conf".to_string())]);
    }

    #[test]
    fn a_missing_tool_names_its_debian_package() {
        let e = find("pgdrill-no-such-tool", None, &["version"], "pgbackrest").unwrap_err();
        assert_eq!(e.class, crate::error::Class::Environment);
        assert!(e.to_string().contains("apt-get install pgbackrest"), "{e}");
    }
}
