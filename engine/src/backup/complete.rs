//! Whether a pg_dump output is complete, read as SQL text: a plain dump as it is, and a
//! custom or directory dump through `pg_restore -f -`, which writes the same script.
//!
//! `pg_dump ... | gzip > file` without pipefail is how the classic runbooks back up: when
//! pg_dump dies half-way (disk full, out of memory, a lost connection, a killed job) gzip
//! still writes a valid, shorter stream that restores without an error. The one mark of a
//! finished dump is pg_dump's last comment, `-- PostgreSQL database dump complete`, written
//! after everything else; a script cut short lacks it, and one cut inside a table's data
//! also leaves a `COPY` without its `\.`. Nothing here restores or interprets SQL.
//!
//! The same pass keeps the dump's own grants (`privileges`): verify restores another tool's
//! dump without them (`--no-privileges`: its roles are not in the throwaway), so what it
//! granted is read from the script's ACL entries instead, for the earlier-backup comparison.

/// pg_dump's and pg_restore's last comment; pg_dumpall's for a whole cluster.
const DONE: &[&[u8]] = &[b"-- PostgreSQL database dump complete", b"-- PostgreSQL database cluster dump complete"];

/// Only the start of a line is needed to recognise it; longer lines (COPY data, function
/// bodies) are not kept whole, so a dump of any size is scanned in bounded memory.
const KEEP: usize = 512;

/// A dump's grants by object, as its ACL entries state them: the object as its statements
/// name it (`TABLE public.payments`, `FUNCTION public.f(a integer)`, `DEFAULT PRIVILEGES FOR
/// ROLE app IN SCHEMA public ON TABLES`) -> its items, sorted, one privilege each: `GRANT
/// SELECT TO reporting`, `GRANT UPDATE(amount) TO app WITH GRANT OPTION`, `REVOKE ALL FROM
/// PUBLIC`.
pub type Privileges = std::collections::BTreeMap<String, Vec<String>>;

/// A streaming scan of a dump's SQL text.
#[derive(Debug, Default)]
pub struct PlainScan {
    /// Bytes of the current line seen so far (at most `KEEP`).
    line: Vec<u8>,
    /// The current line is longer than `KEEP`.
    long: bool,
    bytes: u64,
    tables: usize,
    /// Inside a COPY's data: the table it fills.
    copy: Option<String>,
    /// The completion comment was seen, and nothing but comments, blank lines and psql's
    /// `\unrestrict` after it.
    done: bool,
    /// The last `-- Name:` or `-- Data for Name:` header, to say where a cut dump stops.
    last_entry: Option<String>,
    /// Inside an ACL or DEFAULT ACL entry: only there is a `GRANT` line a grant (a function
    /// body may hold one too).
    in_acl: bool,
    privileges: Privileges,
}

impl PlainScan {
    pub fn feed(&mut self, mut buf: &[u8]) {
        self.bytes += buf.len() as u64;
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            self.take(&buf[..i]);
            let line = std::mem::take(&mut self.line);
            self.line_end(&line);
            self.line = line;
            self.line.clear();
            self.long = false;
            buf = &buf[i + 1..];
        }
        self.take(buf);
    }

    fn take(&mut self, part: &[u8]) {
        let room = KEEP.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.long |= part.len() > room;
    }

    fn line_end(&mut self, l: &[u8]) {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if self.copy.is_some() {
            if l == b"\\." && !self.long {
                self.copy = None;
            }
            return;
        }
        if l.starts_with(b"COPY ") && (self.long || l.ends_with(b" FROM stdin;")) {
            let name = l[5..].split(|&b| b == b' ').next().unwrap_or_default();
            self.copy = Some(String::from_utf8_lossy(name).into_owned());
            self.done = false;
            return;
        }
        if DONE.contains(&l) {
            self.done = true;
            return;
        }
        if l.starts_with(b"-- Name: ") || l.starts_with(b"-- Data for Name: ") {
            self.last_entry = Some(String::from_utf8_lossy(&l[3..]).into_owned());
            self.in_acl = l.starts_with(b"-- Name: ")
                && (contains(l, b"; Type: ACL; Schema: ") || contains(l, b"; Type: DEFAULT ACL; Schema: "));
            if l.starts_with(b"-- Name: ") && contains(l, b"; Type: TABLE; Schema: ") {
                self.tables += 1;
            }
        }
        // After the completion comment only comments, blank lines and psql's `\unrestrict`
        // (pg_dump 17.6, 16.10, 15.14 and later) may follow; anything else is a second,
        // unfinished dump appended to the first.
        let trailer = l.is_empty() || l.starts_with(b"--") || l.starts_with(b"\\unrestrict ");
        if !trailer {
            self.done = false;
        }
        if self.in_acl && !self.long {
            if let Some((object, item)) = acl_item(&String::from_utf8_lossy(l)) {
                let items = self.privileges.entry(object).or_default();
                items.extend(item);
                items.sort();
                items.dedup();
            }
        }
    }

    /// The grants the dump's ACL entries state, by object (call before `finish`).
    pub fn privileges(&self) -> Privileges {
        self.privileges.clone()
    }

    /// The last entry header read (`Data for Name: t; Type: TABLE DATA; ...`).
    pub fn last_entry(&self) -> Option<&str> {
        self.last_entry.as_deref()
    }

    /// The tables defined, or what shows the dump is not complete, naming what is missing.
    pub fn finish(mut self) -> Result<usize, String> {
        if !self.line.is_empty() || self.long {
            let line = std::mem::take(&mut self.line);
            self.line_end(&line);
        }
        if self.bytes == 0 {
            return Err("it holds no SQL at all (0 bytes after decompression and decryption): not a pg_dump output, or one that failed before writing anything".into());
        }
        if let Some(table) = &self.copy {
            return Err(format!(
                "the dump is cut inside the data of {table} (its COPY has no closing `\\.`): the rest of that table's rows and every object after it (other tables' data, indexes, constraints) are missing; pg_dump did not finish (killed, out of disk or memory, or a lost connection)"
            ));
        }
        if !self.done {
            let after = match &self.last_entry {
                Some(e) => format!("it stops after `{e}`; what pg_dump writes after that entry (further tables' data, indexes, constraints) is missing"),
                None => "it stops before the first object's definition".into(),
            };
            return Err(format!(
                "incomplete dump: no `-- PostgreSQL database dump complete` line at its end, so pg_dump did not finish (killed, out of disk or memory, or a lost connection); {after}"
            ));
        }
        Ok(self.tables)
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// One statement of an ACL entry as its object and items, one privilege each (`GRANT
/// SELECT,UPDATE(amount) ON TABLE public.t TO r;` -> `TABLE public.t`, [`GRANT SELECT TO
/// r`, `GRANT UPDATE(amount) TO r`]). None for what is no grant (`SET SESSION AUTHORIZATION`
/// around a grant made by another role) or a line it cannot read. The object and role are
/// kept as pg_dump wrote them, quoted where it quoted them: text compared, never run.
fn acl_item(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim_end().strip_suffix(';')?;
    // `ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT ... ON TABLES TO r`: the
    // object is the defaults' scope and the kind of object they apply to.
    let (scope, statement) = match line.strip_prefix("ALTER ") {
        Some(rest) if rest.starts_with("DEFAULT PRIVILEGES ") => {
            let at = [" GRANT ", " REVOKE "].iter().filter_map(|k| unquoted(rest, k)).min()?;
            (Some(&rest[..at]), &rest[at + 1..])
        }
        Some(_) => return None,
        None => (None, line),
    };
    let (verb, to, rest) = if let Some(r) = statement.strip_prefix("GRANT ") {
        ("GRANT", " TO ", r)
    } else if let Some(r) = statement.strip_prefix("REVOKE ") {
        ("REVOKE", " FROM ", r)
    } else {
        return None;
    };
    // `REVOKE GRANT OPTION FOR ...` takes back only the option.
    let (option_for, rest) = match rest.strip_prefix("GRANT OPTION FOR ") {
        Some(r) => ("GRANT OPTION FOR ", r),
        None => ("", rest),
    };
    let on = unquoted(rest, " ON ")?;
    let privileges = &rest[..on];
    let target = &rest[on + 4..];
    let at = unquoted(target, to)?;
    let (object, grantee) = (&target[..at], &target[at + to.len()..]);
    let (grantee, option) = match grantee.strip_suffix(" WITH GRANT OPTION") {
        Some(g) => (g, " WITH GRANT OPTION"),
        None => (grantee, ""),
    };
    let object = match scope {
        Some(scope) => format!("{scope} ON {object}"),
        None => object.to_string(),
    };
    let direction = to.trim();
    let items = split_privileges(privileges)
        .into_iter()
        .map(|p| format!("{verb} {option_for}{p} {direction} {grantee}{option}"))
        .collect();
    Some((object, items))
}

/// Where `pat` first occurs outside a double-quoted identifier (`"Team TO B"` is a name).
fn unquoted(s: &str, pat: &str) -> Option<usize> {
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if !quoted && s[i..].starts_with(pat) {
            return Some(i);
        }
    }
    None
}

/// `SELECT,UPDATE(a, b)` -> `SELECT`, `UPDATE(a, b)`: commas inside a column list stay.
fn split_privileges(list: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    let mut quoted = false;
    for (i, c) in list.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            ',' if depth == 0 && !quoted => {
                out.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(list[start..].trim());
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(s: &str, chunk: usize) -> Result<usize, String> {
        let mut p = PlainScan::default();
        for c in s.as_bytes().chunks(chunk.max(1)) {
            p.feed(c);
        }
        p.finish()
    }

    const DUMP: &str = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\n\n--\n-- Name: a; Type: TABLE; Schema: public; Owner: x\n--\n\nCREATE TABLE public.a (id int);\n\n--\n-- Data for Name: a; Type: TABLE DATA; Schema: public; Owner: x\n--\n\nCOPY public.a (id) FROM stdin;\n1\n2\n\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc\n\n";

    #[test]
    fn a_complete_dump_passes_in_any_chunking() {
        for chunk in [1, 3, 7, 64, 4096] {
            assert_eq!(scan(DUMP, chunk), Ok(1), "chunk {chunk}");
        }
    }

    #[test]
    fn every_cut_of_a_dump_is_incomplete() {
        let end = DUMP.find("-- PostgreSQL database dump complete").expect("in the dump") + 30;
        for cut in 0..end {
            assert!(scan(&DUMP[..cut], 5).is_err(), "cut at {cut} passed");
        }
    }

    #[test]
    fn a_cut_inside_copy_names_the_table() {
        let cut = DUMP.find("2\n").expect("in the dump");
        let e = scan(&DUMP[..cut], 4096).expect_err("cut");
        assert!(e.contains("public.a"), "{e}");
    }

    /// The grants of a dump are read from its ACL entries only, one privilege per item, with
    /// the grant option, column lists, revokes and default privileges kept; a `GRANT` line
    /// inside a function's body or a table's data is no grant.
    #[test]
    fn a_dumps_grants_are_read_from_its_acl_entries_only() {
        let dump = DUMP.replace(
            "\n--\n-- PostgreSQL database dump complete",
            concat!(
                "\n--\n-- Name: f(); Type: FUNCTION; Schema: public; Owner: x\n--\n\n",
                "CREATE FUNCTION public.f() RETURNS void LANGUAGE sql AS $$\nGRANT SELECT ON TABLE public.a TO intruder;\n$$;\n",
                "\n--\n-- Name: TABLE a; Type: ACL; Schema: public; Owner: x\n--\n\n",
                "GRANT SELECT,UPDATE(id, \"odd, name\") ON TABLE public.a TO reporting;\n",
                "SET SESSION AUTHORIZATION app;\n",
                "GRANT INSERT ON TABLE public.a TO \"Team TO B\" WITH GRANT OPTION;\n",
                "RESET SESSION AUTHORIZATION;\n",
                "\n--\n-- Name: FUNCTION f(); Type: ACL; Schema: public; Owner: x\n--\n\n",
                "REVOKE ALL ON FUNCTION public.f() FROM PUBLIC;\n",
                "\n--\n-- Name: DEFAULT PRIVILEGES FOR TABLES; Type: DEFAULT ACL; Schema: public; Owner: app\n--\n\n",
                "ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO reporting;\n",
                "\n--\n-- PostgreSQL database dump complete",
            ),
        );
        let mut p = PlainScan::default();
        for c in dump.as_bytes().chunks(7) {
            p.feed(c);
        }
        let got = p.privileges();
        assert_eq!(p.finish(), Ok(1));
        let want: Privileges = [
            (
                "TABLE public.a",
                vec![
                    "GRANT INSERT TO \"Team TO B\" WITH GRANT OPTION",
                    "GRANT SELECT TO reporting",
                    "GRANT UPDATE(id, \"odd, name\") TO reporting",
                ],
            ),
            ("FUNCTION public.f()", vec!["REVOKE ALL FROM PUBLIC"]),
            ("DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public ON TABLES", vec!["GRANT SELECT TO reporting"]),
        ]
        .into_iter()
        .map(|(o, i)| (o.to_string(), i.into_iter().map(String::from).collect()))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn data_after_the_completion_line_is_not_complete() {
        let e = scan(&format!("{DUMP}CREATE TABLE b (id int);\n"), 4096);
        assert!(e.is_err());
    }
}
