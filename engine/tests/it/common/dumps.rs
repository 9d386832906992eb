//! Files other tools write that the tests read back: another tool's dump, a JSON-lines log.

use std::path::Path;
use std::process::{Command, Stdio};

/// `bash -c SCRIPT` (SCRIPT given by the caller's `args`) with database `db` of `src` in the
/// libpq environment (PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE) and stdin closed: how
/// a team's own scripts find their server.
pub fn libpq_bash(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, db: &str) -> Command {
    let mut c = Command::new("bash");
    c.env("PGHOST", &src.host)
        .env("PGPORT", src.port.to_string())
        .env("PGUSER", &src.user)
        .env("PGPASSWORD", &src.password)
        .env("PGDATABASE", db)
        .stdin(Stdio::null());
    c
}

/// `pg_dump ARGS | gzip > FILE` of database `db` on `src` (PostgreSQL 15's pg_dump), as the
/// classic runbooks write it; a failing pg_dump fails the test (pipefail).
pub fn pg_dump_gzip(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, db: &str, args: &str, file: &Path) {
    let out = libpq_bash(src, db)
        .args(["-c", &format!("set -euo pipefail; /usr/lib/postgresql/15/bin/pg_dump {args} | gzip > \"$1\""), "-"])
        .arg(file)
        .output()
        .expect("bash");
    assert!(out.status.success(), "pg_dump {args}: {}", super::text(&out.stderr));
}

/// The last line of a JSON-lines file (a ledger, a history), parsed; a missing file, an empty
/// one or a line that is not JSON fails the test, naming the file.
pub fn last_json_line(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let line = text.lines().last().unwrap_or_else(|| panic!("{}: no line", path.display()));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
