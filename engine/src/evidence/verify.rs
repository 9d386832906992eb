//! `pgdrill evidence verify LOCATION`: every signature, every link of the chain, the signed
//! checkpoint, and no record missing, edited, signed by another key or replayed. Each
//! problem is a finding that names the record and what happened to it.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::dsse::{Envelope, IN_TOTO};
use super::keys::{sha256_hex, PublicKey};
use super::log::{described, parse_record_name, record_name, sequences, CHECKPOINT, PUBLIC_KEY, RECORDS};
use super::statement::{Statement, CHECKPOINT_TYPE, RUN_PREDICATE, STATEMENT_TYPE};
use crate::Error;

/// One problem, about a record (by sequence) or the log as a whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub record: Option<u64>,
    pub problem: String,
}

/// A record that passed every check of its own (signature, form, sequence).
#[derive(Debug, Clone)]
pub struct Good {
    pub sequence: u64,
    pub sha256: String,
    pub bytes: Vec<u8>,
    pub statement: Statement,
    /// The time its RFC 3161 timestamp states, when checked against a TSA's CA.
    pub timestamp: Option<String>,
}

#[derive(Debug, Default)]
pub struct Verified {
    pub good: Vec<Good>,
    pub findings: Vec<Finding>,
    /// The checkpoint's envelope, as its file holds it, when it verified.
    pub checkpoint: Option<Vec<u8>>,
    pub keyid: String,
    /// What is worth saying but is no problem (an append interrupted before its checkpoint).
    pub notes: Vec<String>,
    /// What the log was held to beside itself (a ledger's anchor, a kept checkpoint).
    pub held: Vec<String>,
    /// What the checks could not prove, said in the result line itself (records written
    /// before records named their location: a swap of those cannot be told).
    pub unproven: Vec<String>,
    /// Anchors compared without a key's proof (a ledger line, a run.json, a manifest without a
    /// MAC): they can show a cut, never prove there was none, so they are listed apart from
    /// `held`.
    pub unauthenticated: Vec<String>,
    /// The published heads this log was held to and those older that check too (their file
    /// name under `heads/` and bytes), newest first: the pack carries them for verify.sh.
    pub heads: Vec<(String, Vec<u8>)>,
}

impl Verified {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// What `evidence verify` prints.
    pub fn text(&self, location: &str) -> String {
        let loc = crate::util::one_line(location);
        if self.ok() {
            let head = self
                .good
                .last()
                .map(|g| format!(", head record {} sha256 {}", g.sequence, g.sha256))
                .unwrap_or_default();
            let stamped = self.good.iter().filter(|g| g.timestamp.is_some()).count();
            let stamped = if stamped > 0 { format!(", {stamped} RFC 3161 timestamps verified") } else { String::new() };
            let unproven: String = self.unproven.iter().map(|u| format!("; BUT {u}")).collect();
            let mut out = format!(
                "ok: {loc}: {} records, every signature checks with keyid {}, chain and signed checkpoint intact{stamped}{head}{unproven}\n",
                self.good.len(),
                self.keyid
            );
            for n in &self.notes {
                out.push_str(&format!("  note: {n}\n"));
            }
            for h in &self.held {
                out.push_str(&format!("  held to {h}\n"));
            }
            for u in &self.unauthenticated {
                out.push_str(&format!("  compared, UNAUTHENTICATED (can show a cut, never prove none), with {u}\n"));
            }
            return out;
        }
        let n = self.findings.len();
        let mut out = format!("FAILED: {loc}: {n} problem{}\n", if n == 1 { "" } else { "s" });
        for f in &self.findings {
            match f.record {
                Some(n) => out.push_str(&format!("  record {n}: {}\n", f.problem)),
                None => out.push_str(&format!("  {}\n", f.problem)),
            }
        }
        for u in &self.unproven {
            out.push_str(&format!("  and {u}\n"));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

/// [`verify`], and every record's RFC 3161 timestamp against the TSA's CA certificates
/// `tsa_ca`: a record without one, or whose timestamp does not verify for its sha256, is a
/// finding.
pub fn verify_with_timestamps(dir: &Path, key: &PublicKey, tsa_ca: &Path) -> Result<Verified, Error> {
    let mut v = verify(dir, key)?;
    for g in v.good.iter_mut() {
        let tsr = dir.join(RECORDS).join(super::timestamp::tsr_name(g.sequence));
        if !tsr.exists() {
            v.findings.push(Finding { record: Some(g.sequence), problem: "it has no RFC 3161 timestamp".into() });
            continue;
        }
        match super::timestamp::verify(&tsr, &g.sha256, tsa_ca) {
            Ok(t) => {
                // The TSA's time is the one an auditor can trust; the statement's is the
                // signing host's clock, which its owner sets.
                if let Some(p) = tsa_disagrees(g.statement.predicate["finished_at"].as_str().unwrap_or(""), &t) {
                    v.findings.push(Finding { record: Some(g.sequence), problem: p });
                }
                g.timestamp = Some(t)
            }
            Err(e) => v.findings.push(Finding { record: Some(g.sequence), problem: e }),
        }
    }
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
    Ok(v)
}

/// How far a statement's end time may be from its TSA time: the timestamp is asked for
/// right after the record is appended, once the run's other reports are written.
const TSA_SLACK: time::Duration = time::Duration::minutes(10);

/// The time `openssl ts -reply -text` prints (`Dec  6 08:00:00 2026 GMT`, seconds perhaps
/// with a fraction).
fn tsa_time(s: &str) -> Option<time::OffsetDateTime> {
    let f: Vec<&str> = s.split_whitespace().collect();
    let [mon, day, hms, year, "GMT"] = f[..] else { return None };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == mon)
        .and_then(|i| time::Month::try_from(i as u8 + 1).ok())?;
    let mut t = hms.split(':');
    let (h, m, sec) = (t.next()?.parse().ok()?, t.next()?.parse().ok()?, t.next()?);
    let sec: f64 = sec.parse().ok()?;
    let date = time::Date::from_calendar_date(year.parse().ok()?, month, day.parse().ok()?).ok()?;
    let at = time::Time::from_hms(h, m, sec.trunc() as u8).ok()?;
    Some(time::PrimitiveDateTime::new(date, at).assume_utc() + time::Duration::seconds_f64(sec.fract()))
}

/// Why a statement that says it finished at `finished_at` (RFC 3339) cannot be right when
/// its TSA stamped it at `tsa` (openssl's text), if it cannot: a clock set back to date a
/// late drill on time, or one ahead.
fn tsa_disagrees(finished_at: &str, tsa: &str) -> Option<String> {
    let Some(at) = tsa_time(tsa) else {
        return Some(format!("its timestamp's time `{}` does not read", crate::util::one_line(tsa)));
    };
    let Ok(finished) = time::OffsetDateTime::parse(finished_at, &time::format_description::well_known::Rfc3339) else {
        return Some(format!("it states no end time the TSA's ({tsa}) can be held against"));
    };
    let off = finished - at;
    (off.abs() > TSA_SLACK).then(|| {
        format!(
            "it says it finished at {finished_at}, but the TSA stamped it at {tsa}: the signing host's clock was {} by {} min",
            if off.is_negative() { "behind (a back-dated record?)" } else { "ahead" },
            off.whole_minutes().abs()
        )
    })
}

/// How far the statements' own times may disagree with their order or with now before it is
/// worth a note.
const CLOCK_SLACK: time::Duration = time::Duration::minutes(5);

/// Notes on the statements' own times (the signing host's clock): a record that says it
/// finished before its predecessor, or after now. No finding: a clock stepped by NTP does
/// this too, and an append-only log keeps it; but an auditor should see it.
fn clock_notes(good: &[Good], now: time::OffsetDateTime) -> Vec<String> {
    let at = |g: &Good| {
        g.statement.predicate["finished_at"]
            .as_str()
            .and_then(|t| time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok())
    };
    let mut notes = Vec::new();
    let mut before: Option<(u64, time::OffsetDateTime)> = None;
    for g in good {
        let Some(t) = at(g) else { continue };
        // Runs that end together append in the order they take the log's lock, not the order
        // they ended: an end a moment before the predecessor's is that, not a clock set back.
        if let Some((n, p)) = before.filter(|(_, p)| t < *p - CLOCK_SLACK) {
            notes.push(format!(
                "record {} says it finished at {}, before record {n} ({}): the signing host's clock went back (a back-dated record?)",
                g.sequence,
                crate::util::rfc3339(t),
                crate::util::rfc3339(p)
            ));
        }
        if t > now + CLOCK_SLACK {
            notes.push(format!(
                "record {} says it finished at {}, later than now ({}): the signing host's clock was ahead",
                g.sequence,
                crate::util::rfc3339(t),
                crate::util::rfc3339(now)
            ));
        }
        before = Some((g.sequence, t));
    }
    notes
}

/// Check the log in `dir` against `key`. An `Err` is a location that holds no log at all.
pub fn verify(dir: &Path, key: &PublicKey) -> Result<Verified, Error> {
    let mut v = Verified { keyid: key.keyid(), ..Default::default() };
    let mut find = |record: Option<u64>, problem: String| v.findings.push(Finding { record, problem });
    match std::fs::read(dir.join(PUBLIC_KEY)) {
        Ok(b) => match PublicKey::from_pem(&b, PUBLIC_KEY) {
            Ok(stored) if stored.keyid() != key.keyid() => find(
                None,
                format!(
                    "{PUBLIC_KEY} beside the evidence (keyid {}) is not the public key given (keyid {}): it was replaced, or this is another key's log",
                    stored.keyid(),
                    key.keyid()
                ),
            ),
            Ok(_) => {}
            Err(e) => find(None, format!("{PUBLIC_KEY} beside the evidence is unreadable: {e}")),
        },
        Err(_) => find(None, format!("{PUBLIC_KEY} is missing beside the evidence")),
    }
    // The checkpoint before the records: a run appending meanwhile then only adds records
    // past it (no finding), never a checkpoint counting a record not listed (a false
    // "missing").
    let checkpoint = std::fs::read(dir.join(CHECKPOINT));
    let seqs = sequences(dir)?;
    // Files under records/ that are not records: something put there by hand.
    if let Ok(rd) = std::fs::read_dir(dir.join(RECORDS)) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let timestamp =
                name.strip_suffix(".tsr").is_some_and(|n| parse_record_name(&format!("{n}.dsse.json")).is_some());
            if parse_record_name(&name).is_none() && !timestamp {
                find(None, format!("{RECORDS}/{} is not a record of this log", crate::util::one_line(&name)));
            }
        }
    }
    let mut digests: BTreeMap<u64, String> = BTreeMap::new();
    let mut links: BTreeMap<u64, Value> = BTreeMap::new();
    let mut payloads: BTreeMap<String, u64> = BTreeMap::new();
    let mut good = Vec::new();
    let mut misplaced: Vec<(u64, Option<u64>, Option<u64>)> = Vec::new();
    for &n in &seqs {
        let path = dir.join(RECORDS).join(record_name(n));
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                find(Some(n), format!("unreadable: {e}"));
                continue;
            }
        };
        digests.insert(n, sha256_hex(&bytes));
        let envelope = match Envelope::from_bytes(&bytes) {
            Ok(e) => e,
            Err(e) => {
                find(Some(n), e);
                continue;
            }
        };
        let payload = match envelope.verify(key) {
            Ok(p) => p,
            Err(e) => {
                find(Some(n), e);
                continue;
            }
        };
        if envelope.payload_type != IN_TOTO {
            find(Some(n), format!("its payload type is {}, not an in-toto statement", envelope.payload_type));
            continue;
        }
        let statement: Statement = match serde_json::from_slice(&payload) {
            Ok(s) => s,
            Err(e) => {
                find(Some(n), format!("its signed payload is not an in-toto statement: {e}"));
                continue;
            }
        };
        if statement.type_ != STATEMENT_TYPE || statement.predicate_type != RUN_PREDICATE {
            find(
                Some(n),
                format!("it is a {} / {}, not a pgdrill run statement", statement.type_, statement.predicate_type),
            );
            continue;
        }
        let chain = &statement.predicate["chain"];
        let signed = chain["sequence"].as_u64();
        let payload_digest = sha256_hex(&payload);
        if signed != Some(n) {
            // Said once every record is read: two records that hold each other's signed
            // sequence were swapped, not replayed.
            misplaced.push((n, signed, payloads.get(&payload_digest).copied()));
            continue;
        }
        if let Some(first) = payloads.insert(payload_digest, n) {
            find(Some(n), format!("replayed: the same signed statement as record {first}"));
            continue;
        }
        links.insert(n, chain["previous"].clone());
        good.push(Good { sequence: n, sha256: digests[&n].clone(), bytes, statement, timestamp: None });
    }
    for &(n, signed, copy_of) in &misplaced {
        let swapped = signed.filter(|m| misplaced.iter().any(|&(o, back, _)| o == *m && back == Some(n)));
        match (swapped, signed) {
            (Some(m), _) => find(
                Some(n),
                format!("out of place: its signed sequence is {m}, not {n}: records {n} and {m} were swapped"),
            ),
            (None, was) => {
                let was = was.map(|s| s.to_string()).unwrap_or_else(|| "none".into());
                let copy_of = copy_of.map(|o| format!(", the same statement as record {o}")).unwrap_or_default();
                find(
                    Some(n),
                    format!("replayed: its signed sequence is {was}, not {n}: an old statement put in as new{copy_of}"),
                );
            }
        }
    }
    // The signed checkpoint's head (sequence, sha256), read now so that a link that does not
    // match can be blamed on the right record (below); judged itself further down.
    let checkpoint_head: Option<(u64, String)> = checkpoint.as_ref().ok().and_then(|bytes| {
        let e = Envelope::from_bytes(bytes).ok()?;
        let p = e.verify(key).ok().filter(|_| e.payload_type == CHECKPOINT_TYPE)?;
        let c: Value = serde_json::from_slice(&p).ok()?;
        Some((c["sequence"].as_u64()?, c["record_sha256"].as_str()?.to_string()))
    });
    // What the rest of the log signed of record `m`'s sha256: its successor's link, else the
    // checkpoint when it names `m`.
    let vouched = |m: u64| -> Option<String> {
        links
            .get(&(m + 1))
            .and_then(|l| l["record_sha256"].as_str().map(str::to_string))
            .or_else(|| checkpoint_head.as_ref().filter(|(s, _)| *s == m).map(|(_, d)| d.clone()))
    };
    // Every link: the predecessor it signed is there, unchanged.
    let mut named: Vec<u64> = Vec::new();
    for (&n, prev) in &links {
        if n == 1 {
            if !prev.is_null() {
                find(Some(1), "the first record links to a predecessor: records before it were removed".into());
            }
            continue;
        }
        let want = prev["sequence"].as_u64();
        if want != Some(n - 1) {
            find(Some(n), format!("its signed link names record {want:?}, not {}", n - 1));
            continue;
        }
        match digests.get(&(n - 1)) {
            None => {
                named.push(n - 1);
                find(
                    Some(n - 1),
                    format!("missing: {} (named by record {n}'s signed link)", described(&prev["record"])),
                );
            }
            // Record n-1 is what the rest of the log signed, or record n is not: then record n
            // is the stranger (a record of another log signed with the same key, or one
            // that replaced this log's own), not its predecessor.
            Some(d)
                if Some(d.as_str()) != prev["record_sha256"].as_str()
                    && (checkpoint_head.as_ref().is_some_and(|(s, c)| *s == n - 1 && c == d)
                        || vouched(n).is_some_and(|v| Some(v.as_str()) != digests.get(&n).map(String::as_str))) =>
            {
                find(
                    Some(n),
                    format!(
                        "not of this chain: its signed link names a predecessor with sha256 {}, but record {} is {d}, as the rest of the log signed it: a record of another log (another database's, with the same key), or one that replaced this log's own",
                        prev["record_sha256"].as_str().unwrap_or("?"),
                        n - 1
                    ),
                )
            }
            Some(d) if Some(d.as_str()) != prev["record_sha256"].as_str() => find(
                Some(n - 1),
                format!(
                    "edited or replaced: record {n} signed its sha256 as {}, the file's is {d}",
                    prev["record_sha256"].as_str().unwrap_or("?")
                ),
            ),
            Some(_) => {}
        }
    }
    // The checkpoint: the head the log had at its last append.
    let last = seqs.last().copied().unwrap_or(0);
    let mut head = last;
    match checkpoint {
        Err(_) => find(None, format!("{CHECKPOINT} is missing: the log's last records cannot be checked")),
        Ok(bytes) => match Envelope::from_bytes(&bytes).and_then(|e| {
            let p = e.verify(key)?;
            if e.payload_type != CHECKPOINT_TYPE {
                return Err(format!("its payload type is {}", e.payload_type));
            }
            serde_json::from_slice::<Value>(&p).map_err(|e| e.to_string())
        }) {
            Err(e) => find(None, format!("{CHECKPOINT}: {e}")),
            Ok(c) => {
                let s = c["sequence"].as_u64().unwrap_or(0);
                head = head.max(s);
                if s > last {
                    named.push(s);
                    find(
                        Some(s),
                        format!(
                            "missing: {} (named by the signed checkpoint, which counts {s} records)",
                            described(&c["record"])
                        ),
                    );
                } else if s < last {
                    // Records after it passed their own checks above (signed with the key,
                    // chained): only a run with the key appends those, and one killed (or out
                    // of disk) between its record and its checkpoint leaves exactly this. An
                    // old checkpoint put back removes nothing, so it is no finding; the
                    // checkpoint must still name its own record truly.
                    if digests.get(&s).map(String::as_str) != c["record_sha256"].as_str() {
                        find(Some(s), "edited or replaced: the signed checkpoint names another sha256 for it".into());
                    } else {
                        v.notes.push(format!(
                            "{CHECKPOINT} covers records 1 to {s}; records {} to {last} were appended after it (an append interrupted before its checkpoint, or an older checkpoint put back): they are signed and chained, and the next signed run re-signs the checkpoint",
                            s + 1
                        ));
                        v.checkpoint = Some(bytes);
                    }
                } else if digests.get(&s).map(String::as_str) != c["record_sha256"].as_str() {
                    find(Some(s), "edited or replaced: the signed checkpoint names another sha256 for it".into());
                } else {
                    v.checkpoint = Some(bytes);
                }
            }
        },
    }
    // Numbers with no file that no link named.
    for n in 1..=head {
        if !digests.contains_key(&n) && !named.contains(&n) {
            find(Some(n), "missing".into());
        }
    }
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
    v.notes.extend(clock_notes(&good, time::OffsetDateTime::now_utc()));
    v.good = good;
    Ok(v)
}

/// Hold the log to a checkpoint kept elsewhere (`kept`: the bytes of a `checkpoint.dsse.json`
/// from an earlier pack, a published copy, an auditor's notes; `shown`: where it came from).
/// The log alone cannot show records cut off its end when an older checkpoint was put back
/// beside it: every record left is signed and chained, and that checkpoint names the last
/// one truly. A checkpoint kept where the log's writer cannot reach can: every record it
/// counts must still be there, its last one unchanged. Returns the sequence it anchors, when
/// it is a checkpoint of this key.
pub fn against_kept_checkpoint(v: &mut Verified, dir: &Path, key: &PublicKey, kept: &[u8], shown: &str) -> Option<u64> {
    let shown = crate::util::one_line(shown).into_owned();
    let head = Envelope::from_bytes(kept).and_then(|e| {
        let p = e.verify(key)?;
        if e.payload_type != CHECKPOINT_TYPE {
            return Err(format!("its payload type is {}, not a checkpoint", e.payload_type));
        }
        serde_json::from_slice::<Value>(&p).map_err(|e| e.to_string())
    });
    let c = match head {
        Ok(c) => c,
        Err(e) => {
            v.findings.push(Finding { record: None, problem: format!("the kept checkpoint {shown}: {e}") });
            return None;
        }
    };
    let (Some(s), Some(sha)) = (c["sequence"].as_u64(), c["record_sha256"].as_str()) else {
        v.findings.push(Finding { record: None, problem: format!("the kept checkpoint {shown} names no record") });
        return None;
    };
    let signed_at = c["signed_at"].as_str().map(crate::util::one_line).unwrap_or_default();
    let last = sequences(dir).ok().and_then(|q| q.last().copied()).unwrap_or(0);
    match v.good.iter().find(|g| g.sequence == s) {
        Some(g) if g.sha256 == sha => {}
        Some(g) => v.findings.push(Finding {
            record: Some(s),
            problem: format!(
                "edited or replaced: the kept checkpoint {shown} (signed at {signed_at}) names sha256 {sha}, the file's is {}",
                g.sha256
            ),
        }),
        // A record that is there but failed its own checks is already named.
        None if dir.join(RECORDS).join(record_name(s)).exists() => {}
        None => v.findings.push(Finding {
            record: Some(s),
            problem: format!(
                "missing: the kept checkpoint {shown} (signed at {signed_at}) counts {s} records, this log holds {last}: records were cut off its end and an older checkpoint put back ({})",
                described(&c["record"])
            ),
        }),
    }
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
    Some(s)
}

/// Hold the log to the heads a ledger anchored (`ledger`: the text of a `history.jsonl`,
/// `shown`: where it was read). Each run that appended to an evidence log wrote, in its
/// history line, the head it appended (`evidence`: location, chain, sequence, sha256): the
/// newest anchor of this log (its location one of `here`) must still be in it, unchanged. A
/// log cut at its end with an older checkpoint put back verifies by itself; against the ledger
/// the cut is named, with no checkpoint kept by anyone. What still escapes: a cut that also
/// removes or edits every ledger line (and every kept checkpoint) that anchors the records cut.
/// A ledger is unsigned, so it is listed as `unauthenticated`: it can show a cut, never prove
/// there was none. Returns the newest anchor's sequence, if the ledger holds one of this log.
pub fn against_ledger(v: &mut Verified, dir: &Path, here: &[String], ledger: &str, shown: &str) -> Option<u64> {
    let shown = crate::util::one_line(shown).into_owned();
    let mut newest: Option<(u64, String, usize, Value)> = None;
    for (i, line) in ledger.lines().enumerate() {
        let Ok(l) = serde_json::from_str::<Value>(line) else { continue };
        let e = &l["evidence"];
        let (Some(at), Some(n), Some(sha)) =
            (e["location"].as_str(), e["sequence"].as_u64(), e["record_sha256"].as_str())
        else {
            continue;
        };
        if here.iter().any(|h| h == at) && newest.as_ref().is_none_or(|(m, ..)| n > *m) {
            newest = Some((n, sha.to_string(), i + 1, l.clone()));
        }
    }
    let (n, sha, line, l) = newest?;
    // Unsigned text whoever cuts the log can edit too: compared (it can show a cut), never
    // counted as proof that none was made.
    v.unauthenticated.push(format!(
        "the ledger {shown}: its newest anchor of this log, record {n} (line {line}), is there unchanged"
    ));
    let s = |k: &str| l[k].as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_else(|| "?".into());
    let run = format!("the {} {} `{}` that finished at {}", s("outcome"), s("kind"), s("runbook"), s("finished_at"));
    hold(v, dir, n, &sha, &format!("the ledger {shown} (line {line}, {run})"));
    Some(n)
}

/// Hold the log to one anchor: record `n` must be there with sha256 `sha`. `what` names the
/// anchor in the finding ("the ledger h (line 2, the passed verify `x` ...)").
pub(crate) fn hold(v: &mut Verified, dir: &Path, n: u64, sha: &str, what: &str) {
    let last = sequences(dir).ok().and_then(|q| q.last().copied()).unwrap_or(0);
    match v.good.iter().find(|g| g.sequence == n) {
        Some(g) if g.sha256 == sha => {}
        Some(g) => v.findings.push(Finding {
            record: Some(n),
            problem: format!("edited or replaced: {what} anchors it with sha256 {sha}, the file's is {}", g.sha256),
        }),
        // A record that is there but failed its own checks is already named.
        None if dir.join(RECORDS).join(record_name(n)).exists() => {}
        None => v.findings.push(Finding {
            record: Some(n),
            problem: format!(
                "missing: {what} anchors record {n} with sha256 {sha}, this log holds {last}: records were cut off its end"
            ),
        }),
    }
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
}

/// Hold the log to where it is read (`here`: the location names it may have, as
/// [`super::log::location_name`] writes them: where it is read, and where it lived before a
/// move) and, when asked, to the database it is the log of. The chain alone cannot show a
/// whole log of another location, signed with the same key, put in this one's place: every
/// record of it is signed and chained. Each record names (signed) its chain's id and where it
/// was appended, so such a log is named here with both locations, and a record of another
/// chain with both ids. Records written before chains had ids are noted, not judged.
pub fn against_location(v: &mut Verified, here: &[String], database: Option<&str>) {
    let one = |s: &str| crate::util::one_line(s).into_owned();
    let here_shown = here.first().map(|h| one(h)).unwrap_or_default();
    let mut chain: Option<(String, u64, String, String)> = None; // id, genesis sequence, its location, its database
    let mut unbound: Vec<u64> = Vec::new();
    // Runs of consecutive records appended at one foreign location, or of a foreign database:
    // (first, last, what), one finding each rather than one per record.
    let mut foreign: Vec<(u64, u64, String)> = Vec::new();
    let mut other_db: Vec<(u64, u64, String)> = Vec::new();
    let mut findings = Vec::new();
    fn extend(runs: &mut Vec<(u64, u64, String)>, n: u64, what: String) {
        match runs.last_mut() {
            Some((_, last, w)) if *w == what && *last + 1 == n => *last = n,
            _ => runs.push((n, n, what)),
        }
    }
    for g in &v.good {
        let c = &g.statement.predicate["chain"];
        let db = g.statement.predicate["database"].as_str().unwrap_or("");
        if let (Some(want), false) = (database, db.is_empty()) {
            if db != want {
                extend(&mut other_db, g.sequence, db.to_string());
            }
        }
        let Some(id) = c["id"].as_str() else {
            match &chain {
                None => unbound.push(g.sequence),
                Some((id, first, at, _)) => findings.push(Finding {
                    record: Some(g.sequence),
                    problem: format!(
                        "not of this chain: it carries no chain id, but record {first} started this log's chain {id} at {}: a record of an older log put in",
                        one(at)
                    ),
                }),
            }
            continue;
        };
        let at = c["location"].as_str().unwrap_or("");
        match &chain {
            None => {
                let started = c["genesis"]["location"].as_str().unwrap_or(at).to_string();
                let db0 = c["genesis"]["database"].as_str().unwrap_or(db).to_string();
                chain = Some((id.to_string(), g.sequence, started, db0));
            }
            Some((ours, first, started, _)) if ours != id => {
                findings.push(Finding {
                    record: Some(g.sequence),
                    problem: format!(
                        "not of this chain: its chain id is {}, this log's is {ours} (started by record {first} at {}): a record of another log signed with the same key",
                        one(id),
                        one(started)
                    ),
                });
                continue;
            }
            Some(_) => {}
        }
        if !here.iter().any(|h| h == at) {
            extend(&mut foreign, g.sequence, at.to_string());
        }
    }
    let db_of = |db: &str| if db.is_empty() { String::new() } else { format!(", database `{}`", one(db)) };
    let (id, started_db) = chain.as_ref().map(|(id, _, _, d)| (id.clone(), d.clone())).unwrap_or_default();
    for (first, last, at) in foreign {
        let which =
            if first == last { format!("record {first} was") } else { format!("records {first} to {last} were") };
        findings.push(Finding {
            record: Some(first),
            problem: format!(
                "another location's log: {which} appended at {} (chain {id}{}), not here at {here_shown}: a log of another location, signed with the same key, was put in this one's place (or the log was moved: then give its earlier location with --location)",
                if at.is_empty() { "no location".to_string() } else { one(&at) },
                db_of(&started_db)
            ),
        });
    }
    if let Some(want) = database {
        for (first, last, db) in other_db {
            let which = if first == last {
                format!("record {first} is a run")
            } else {
                format!("records {first} to {last} are runs")
            };
            findings.push(Finding {
                record: Some(first),
                problem: format!(
                    "another database's log: {which} of database `{}`, not of `{}` (--database)",
                    one(&db),
                    one(want)
                ),
            });
        }
    }
    // Said in the result, not as a note: exit 0 says nothing of where these were appended.
    if let (Some(first), Some(last)) = (unbound.first(), unbound.last()) {
        let named_db = v
            .good
            .iter()
            .filter(|g| unbound.contains(&g.sequence))
            .filter(|g| !g.statement.predicate["database"].as_str().unwrap_or("").is_empty())
            .count();
        let db = match database {
            Some(want) if named_db == unbound.len() => {
                format!("--database checked that each is a run of `{}`", one(want))
            }
            Some(want) => format!(
                "--database checked that {named_db} of them are runs of `{}`; {} name no database",
                one(want),
                unbound.len() - named_db
            ),
            None => format!("{named_db} of them name their database: give --database NAME to hold those to it"),
        };
        v.unproven.push(format!(
            "{} record{} (records {first} to {last}) carry no location, written before records named their chain and location: a swap of those for another location's log signed with the same key cannot be told ({db})",
            unbound.len(),
            if unbound.len() == 1 { "" } else { "s" }
        ));
    }
    v.findings.extend(findings);
    v.findings.sort_by_key(|f| f.record.unwrap_or(0));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evidence::{keys::SigningKey, log, statement::Subject};
    use serde_json::json;

    /// A signing host whose clock was set back (to date a late drill on time) or ahead:
    /// `evidence verify` trusted the statements' own times and said nothing. The chain now
    /// shows it as a note, and the TSA's time, when there is one, as a finding.
    #[test]
    fn a_clock_set_back_or_ahead_is_named() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        for at in ["2026-11-20T10:00:00Z", "2026-11-01T10:00:00Z", "2999-01-01T00:00:00Z"] {
            let s = Statement::run(
                vec![Subject::sha256("x", "00")],
                json!({"runbook": {"name": "dr"}, "kind": "drill", "outcome": "passed", "finished_at": at}),
            );
            log::append(dir.path(), &key, s).expect("append");
        }
        let v = verify(dir.path(), &key.public()).expect("verify");
        let text = v.text("loc");
        assert!(v.ok(), "{text}");
        assert!(text.contains("record 2 says it finished at 2026-11-01T10:00:00Z, before record 1"), "{text}");
        assert!(text.contains("record 3 says it finished at 2999-01-01T00:00:00Z, later than now"), "{text}");
        assert!(!text.contains("record 1 says"), "{text}");
        // Two runs that ended together, appended in the order they took the lock: no note
        // (four concurrent runs were told their clock went back).
        let dir = tempfile::tempdir().expect("tmp");
        for at in ["2026-11-20T10:00:00.460Z", "2026-11-20T10:00:00.412Z"] {
            let s = Statement::run(
                vec![Subject::sha256("x", "00")],
                json!({"runbook": {"name": "dr"}, "kind": "drill", "outcome": "passed", "finished_at": at}),
            );
            log::append(dir.path(), &key, s).expect("append");
        }
        let text = verify(dir.path(), &key.public()).expect("verify").text("loc");
        assert!(!text.contains("note:"), "{text}");

        assert_eq!(tsa_time("Dec  6 08:00:00.5 2026 GMT"), Some(time::macros::datetime!(2026-12-06 08:00:00.5 UTC)));
        assert_eq!(tsa_time("Dec  6 08:00:00 2026 GMT"), Some(time::macros::datetime!(2026-12-06 08:00:00 UTC)));
        assert_eq!(tsa_disagrees("2026-12-06T07:59:30Z", "Dec  6 08:00:00 2026 GMT"), None);
        let back = tsa_disagrees("2026-12-01T08:00:00Z", "Dec  6 08:00:00 2026 GMT").expect("back-dated");
        assert!(back.contains("behind (a back-dated record?) by 7200 min"), "{back}");
        let ahead = tsa_disagrees("2026-12-06T09:00:00Z", "Dec  6 08:00:00 2026 GMT").expect("ahead");
        assert!(ahead.contains("ahead by 60 min"), "{ahead}");
        assert!(tsa_disagrees("2026-12-06T08:00:00Z", "yesterday").is_some());
    }

    /// A log of `n` records signed with `key`, one per run, for the attacks below.
    fn log_of(dir: &Path, key: &SigningKey, database: &str, n: usize) {
        for i in 0..n {
            let s = Statement::run(
                vec![Subject::sha256(format!("{database}/backup-{i}"), "00")],
                json!({"runbook": {"name": database}, "database": database, "kind": "verify", "outcome": if i == 1 { "failed" } else { "passed" }, "finished_at": "2026-12-01T00:00:00Z"}),
            );
            log::append(dir, key, s).expect("append");
        }
    }

    fn record(dir: &Path, n: u64) -> std::path::PathBuf {
        dir.join(RECORDS).join(record_name(n))
    }

    /// Two records swapped (files 2 and 3 exchanged) were called "replayed ... an old
    /// statement put in as new", twice: what happened is named now, on both.
    #[test]
    fn two_swapped_records_are_named_as_swapped_not_replayed() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        log_of(dir.path(), &key, "payments", 4);
        let (two, three) =
            (std::fs::read(record(dir.path(), 2)).expect("2"), std::fs::read(record(dir.path(), 3)).expect("3"));
        std::fs::write(record(dir.path(), 2), &three).expect("swap");
        std::fs::write(record(dir.path(), 3), &two).expect("swap");
        let v = verify(dir.path(), &key.public()).expect("verify");
        let text = v.text("loc");
        assert!(!v.ok(), "{text}");
        assert!(
            text.contains("record 2: out of place: its signed sequence is 3, not 2: records 2 and 3 were swapped"),
            "{text}"
        );
        assert!(
            text.contains("record 3: out of place: its signed sequence is 2, not 3: records 3 and 2 were swapped"),
            "{text}"
        );
        assert!(!text.contains("replayed"), "{text}");
    }

    /// A record of another database's log, signed with the same key, put into this log in
    /// place of its own (same sequence) or after its last: found before, but blamed on this
    /// log's own record before it ("record 2: edited or replaced"), which was intact. The
    /// stranger is named now.
    #[test]
    fn a_record_from_another_database_s_chain_is_named_not_its_predecessor() {
        let key = SigningKey::generate().expect("key");
        let (ours, theirs) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
        log_of(ours.path(), &key, "payments", 4);
        log_of(theirs.path(), &key, "staging", 5);
        // In place of record 3.
        let ours_3 = std::fs::read(record(ours.path(), 3)).expect("3");
        std::fs::copy(record(theirs.path(), 3), record(ours.path(), 3)).expect("copy");
        let text = verify(ours.path(), &key.public()).expect("verify").text("loc");
        assert!(text.contains("record 3: not of this chain: its signed link names a predecessor"), "{text}");
        assert!(text.contains("record 3: edited or replaced: record 4 signed its sha256"), "{text}");
        assert!(!text.contains("record 2:"), "record 2 is intact and was blamed: {text}");
        std::fs::write(record(ours.path(), 3), ours_3).expect("restore");
        assert!(verify(ours.path(), &key.public()).expect("verify").ok());
        // After the last record, the checkpoint left as it was.
        std::fs::copy(record(theirs.path(), 5), record(ours.path(), 5)).expect("copy");
        let v = verify(ours.path(), &key.public()).expect("verify");
        let text = v.text("loc");
        assert!(!v.ok(), "{text}");
        assert!(text.contains("record 5: not of this chain"), "{text}");
        assert!(!text.contains("record 4:"), "record 4 is intact and was blamed: {text}");
    }

    /// Envelopes signed with the log's key over another payload type: the checkpoint put in
    /// as a record, a record put in as the checkpoint. Each signature is good; each is
    /// refused by its type. And a record cut short (a truncated file) is named.
    #[test]
    fn a_good_signature_over_another_payload_type_and_a_truncated_record_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        log_of(dir.path(), &key, "payments", 3);
        let checkpoint = std::fs::read(dir.path().join(CHECKPOINT)).expect("checkpoint");
        let third = std::fs::read(record(dir.path(), 3)).expect("3");
        std::fs::write(record(dir.path(), 4), &checkpoint).expect("as a record");
        let text = verify(dir.path(), &key.public()).expect("verify").text("loc");
        assert!(
            text.contains(&format!("record 4: its payload type is {CHECKPOINT_TYPE}, not an in-toto statement")),
            "{text}"
        );
        std::fs::remove_file(record(dir.path(), 4)).expect("rm");
        std::fs::write(dir.path().join(CHECKPOINT), &third).expect("as the checkpoint");
        let text = verify(dir.path(), &key.public()).expect("verify").text("loc");
        assert!(text.contains(&format!("{CHECKPOINT}: its payload type is {IN_TOTO}")), "{text}");
        std::fs::write(dir.path().join(CHECKPOINT), &checkpoint).expect("put back");
        assert!(verify(dir.path(), &key.public()).expect("verify").ok());
        // A record cut short.
        std::fs::write(record(dir.path(), 2), &third[..third.len() / 2]).expect("truncate");
        let v = verify(dir.path(), &key.public()).expect("verify");
        let text = v.text("loc");
        assert!(!v.ok(), "{text}");
        assert!(text.contains("record 2:"), "{text}");
    }

    /// A log cut off at its end with an older checkpoint put back beside it verified clean:
    /// every record left is signed and chained, and that checkpoint is genuine. Held to a
    /// checkpoint kept elsewhere (an earlier pack's), the cut is named.
    #[test]
    fn a_log_cut_off_at_its_end_with_an_older_checkpoint_put_back_is_named_against_a_kept_checkpoint() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        log_of(dir.path(), &key, "payments", 2);
        let older = std::fs::read(dir.path().join(CHECKPOINT)).expect("checkpoint at 2");
        log_of(dir.path(), &key, "payments", 2);
        let kept = std::fs::read(dir.path().join(CHECKPOINT)).expect("checkpoint at 4");
        // Records 3 and 4 (the second a failed run) removed, the checkpoint at 2 put back.
        for n in [3, 4] {
            std::fs::remove_file(record(dir.path(), n)).expect("rm");
        }
        std::fs::write(dir.path().join(CHECKPOINT), &older).expect("put back");
        let mut v = verify(dir.path(), &key.public()).expect("verify");
        assert!(v.ok(), "the log alone cannot show it: {}", v.text("loc"));
        against_kept_checkpoint(&mut v, dir.path(), &key.public(), &kept, "pack-2026-11/checkpoint.dsse.json");
        let text = v.text("loc");
        assert!(!v.ok(), "{text}");
        assert!(
            text.contains("record 4: missing: the kept checkpoint pack-2026-11/checkpoint.dsse.json (signed at ")
                && text.contains("counts 4 records, this log holds 2")
                && text.contains("the failed verify `payments`"),
            "{text}"
        );
        // Another key's checkpoint proves nothing: said, not taken.
        let other = SigningKey::generate().expect("key");
        let mut v = verify(dir.path(), &key.public()).expect("verify");
        let forged = Envelope::sign(
            CHECKPOINT_TYPE,
            &Envelope::from_bytes(&kept).expect("e").payload_bytes().expect("p"),
            &other,
        )
        .expect("sign")
        .to_bytes();
        against_kept_checkpoint(&mut v, dir.path(), &key.public(), &forged, "forged.json");
        assert!(v.text("loc").contains("the kept checkpoint forged.json:"), "{}", v.text("loc"));
    }

    /// A statement made to name another file: its subject's digest replaced by that file's
    /// sha256, the envelope's signature kept. The signature covers the subject (inside the
    /// payload, under the PAE): refused, naming the record.
    #[test]
    fn a_statement_whose_subject_digest_was_changed_to_another_file_s_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let key = SigningKey::generate().expect("key");
        log_of(dir.path(), &key, "payments", 3);
        let bytes = std::fs::read(record(dir.path(), 2)).expect("2");
        let mut env: Envelope = serde_json::from_slice(&bytes).expect("envelope");
        let mut st: Value = serde_json::from_slice(&env.payload_bytes().expect("payload")).expect("statement");
        st["subject"][0]["digest"]["sha256"] = json!(sha256_hex(b"another backup file"));
        env.payload =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, serde_json::to_vec(&st).expect("json"));
        std::fs::write(record(dir.path(), 2), env.to_bytes()).expect("write");
        let v = verify(dir.path(), &key.public()).expect("verify");
        let text = v.text("loc");
        assert!(!v.ok(), "{text}");
        assert!(text.contains("record 2:"), "{text}");
    }

    /// A whole log replaced by another location's log signed with the same key: database
    /// `staging`'s log copied over `payments`'s. Every record of it is signed and chained, so
    /// the chain alone verified it clean (nothing tied a record to where it lives). Each record
    /// now names its chain's id and where it was appended: the swap is named with both
    /// locations, and with `--database` both databases.
    #[test]
    fn a_whole_log_replaced_by_another_location_s_log_under_the_same_key_is_named_with_both() {
        let key = SigningKey::generate().expect("key");
        let root = tempfile::tempdir().expect("tmp");
        let (a, b) = (root.path().join("payments/evidence"), root.path().join("staging/evidence"));
        log_of(&a, &key, "payments", 3);
        log_of(&b, &key, "staging", 4);
        let (a_at, b_at) = (log::location_name(&a.display().to_string()), log::location_name(&b.display().to_string()));
        let v = verify(&a, &key.public()).expect("verify");
        let mut bound = verify(&a, &key.public()).expect("verify");
        against_location(&mut bound, std::slice::from_ref(&a_at), Some("payments"));
        assert!(v.ok() && bound.ok(), "{}", bound.text("a"));
        let genesis = &v.good[0].statement.predicate["chain"];
        assert_eq!(genesis["genesis"]["location"], json!(a_at), "{genesis}");
        assert_eq!(genesis["genesis"]["database"], json!("payments"), "{genesis}");
        let id = genesis["id"].as_str().expect("a chain id").to_string();
        assert_eq!(id.len(), 32, "{id}");
        assert!(v.good.iter().all(|g| g.statement.predicate["chain"]["id"] == json!(id)), "every record carries it");

        // The swap: B's whole log (records, checkpoint, the same public key) over A's.
        std::fs::remove_dir_all(&a).expect("rm a");
        std::fs::create_dir_all(a.join(RECORDS)).expect("mk");
        for f in [PUBLIC_KEY, CHECKPOINT] {
            std::fs::copy(b.join(f), a.join(f)).expect("copy");
        }
        for n in 1..=4 {
            std::fs::copy(record(&b, n), record(&a, n)).expect("copy");
        }
        let mut v = verify(&a, &key.public()).expect("verify");
        assert!(v.ok(), "the chain alone cannot see it: {}", v.text("a"));
        against_location(&mut v, std::slice::from_ref(&a_at), Some("payments"));
        let text = v.text("a");
        assert!(!v.ok(), "{text}");
        assert!(
            text.contains(&format!("record 1: another location's log: records 1 to 4 were appended at {b_at}"))
                && text.contains(&format!("not here at {a_at}"))
                && text.contains("database `staging`"),
            "{text}"
        );
        assert!(
            text.contains("records 1 to 4 are runs of database `staging`, not of `payments` (--database)"),
            "{text}"
        );
        // Without --database the location alone names it.
        let mut v = verify(&a, &key.public()).expect("verify");
        against_location(&mut v, std::slice::from_ref(&a_at), None);
        assert!(!v.ok() && !v.text("a").contains("--database"), "{}", v.text("a"));
        // A log that moved is accepted when its earlier location is given.
        let mut v = verify(&a, &key.public()).expect("verify");
        against_location(&mut v, &[a_at.clone(), b_at.clone()], None);
        assert!(v.ok(), "{}", v.text("a"));

        // A run appending to the swapped-in log does not launder it: its record is here, the
        // ones before it are still another location's.
        log_of(&a, &key, "payments", 1);
        let mut v = verify(&a, &key.public()).expect("verify");
        against_location(&mut v, std::slice::from_ref(&a_at), None);
        let text = v.text("a");
        assert!(text.contains("records 1 to 4 were appended at") && !text.contains("record 5:"), "{text}");

        // One record of another chain (same key) in place of this log's own is named by its id.
        let c = root.path().join("c");
        log_of(&c, &key, "payments", 2);
        std::fs::copy(record(&b, 3), record(&c, 3)).expect("copy");
        let mut v = verify(&c, &key.public()).expect("verify");
        against_location(&mut v, &[log::location_name(&c.display().to_string())], None);
        assert!(v.text("c").contains("record 3: not of this chain: its chain id is"), "{}", v.text("c"));
    }

    /// The ledger's anchor against the log: the newest anchor of this location counts (one of
    /// another location is not this log's), a record cut is missing, one replaced is named.
    #[test]
    fn the_newest_ledger_anchor_of_this_location_names_a_cut_or_a_replaced_record() {
        let key = SigningKey::generate().expect("key");
        let dir = tempfile::tempdir().expect("tmp");
        log_of(dir.path(), &key, "payments", 3);
        let here = log::location_name(&dir.path().display().to_string());
        let v = verify(dir.path(), &key.public()).expect("verify");
        let line = |at: &str, n: u64, sha: &str| {
            json!({"runbook": "payments", "kind": "verify", "outcome": "passed", "finished_at": "2026-12-01T00:00:00Z",
                   "evidence": {"location": at, "chain": "c", "sequence": n, "record_sha256": sha}})
            .to_string()
        };
        let sha = |n: u64| v.good[n as usize - 1].sha256.clone();
        let ledger = [line(&here, 2, &sha(2)), line(&here, 3, &sha(3)), line("/elsewhere", 9, "00")].join("\n");
        let mut v2 = verify(dir.path(), &key.public()).expect("verify");
        assert_eq!(against_ledger(&mut v2, dir.path(), std::slice::from_ref(&here), &ledger, "h"), Some(3));
        assert!(v2.ok(), "{}", v2.text("loc"));
        assert!(v2.text("loc").contains(
            "compared, UNAUTHENTICATED (can show a cut, never prove none), with the ledger h: its newest anchor of this log, record 3 (line 2)"
        ));
        // Record 3 replaced by another signed record of the same key (sequence 3, another log).
        let other = tempfile::tempdir().expect("tmp");
        log_of(other.path(), &key, "payments", 3);
        std::fs::copy(record(other.path(), 3), record(dir.path(), 3)).expect("copy");
        let mut v3 = verify(dir.path(), &key.public()).expect("verify");
        against_ledger(&mut v3, dir.path(), std::slice::from_ref(&here), &ledger, "h");
        assert!(v3.text("loc").contains("record 3: edited or replaced: the ledger h (line 2"), "{}", v3.text("loc"));
        // Record 3 cut.
        std::fs::remove_file(record(dir.path(), 3)).expect("rm");
        let mut v4 = verify(dir.path(), &key.public()).expect("verify");
        against_ledger(&mut v4, dir.path(), std::slice::from_ref(&here), &ledger, "h");
        assert!(
            v4.text("loc").contains("record 3: missing: the ledger h (line 2, the passed verify `payments`")
                && v4.text("loc").contains("this log holds 2: records were cut off its end"),
            "{}",
            v4.text("loc")
        );
    }

    /// A log written before records named their chain and location (`chain` holds only the
    /// sequence and the link), as such a log's runs wrote it.
    fn legacy_log_of(dir: &Path, key: &SigningKey, database: Option<&str>, n: u64) {
        std::fs::create_dir_all(dir.join(RECORDS)).expect("mkdir");
        std::fs::write(dir.join(PUBLIC_KEY), key.public().pem()).expect("public key");
        let mut previous = Value::Null;
        let mut last = String::new();
        for i in 1..=n {
            let s = Statement::run(
                vec![Subject::sha256(format!("backup-{i}"), "00")],
                json!({"runbook": {"name": "old"}, "database": database, "kind": "verify", "outcome": "passed",
                       "finished_at": "2026-06-01T00:00:00Z", "chain": {"sequence": i, "previous": previous}}),
            );
            let bytes = Envelope::sign(IN_TOTO, &serde_json::to_vec(&s).expect("json"), key).expect("sign").to_bytes();
            std::fs::write(record(dir, i), &bytes).expect("record");
            last = sha256_hex(&bytes);
            previous = json!({"sequence": i, "record_sha256": last});
        }
        let c = json!({"_type": CHECKPOINT_TYPE, "sequence": n, "record_sha256": last, "record": {}, "signed_at": "2026-06-01T00:00:00Z"});
        let signed =
            Envelope::sign(CHECKPOINT_TYPE, &serde_json::to_vec(&c).expect("json"), key).expect("sign").to_bytes();
        std::fs::write(dir.join(CHECKPOINT), signed).expect("checkpoint");
    }

    /// Records written before the location field existed: a whole such log of another
    /// location (same key) swapped in verified "ok" with only a note. The result line says
    /// now how many records carry no location and that a swap of those cannot be told, and
    /// `--database` holds them to the database they name (one naming none is counted).
    #[test]
    fn a_swap_of_records_written_before_they_named_their_location_is_said_unprovable_and_checked_by_database() {
        let key = SigningKey::generate().expect("key");
        let root = tempfile::tempdir().expect("tmp");
        let (payments, staging) = (root.path().join("payments"), root.path().join("staging"));
        legacy_log_of(&payments, &key, Some("payments"), 2);
        legacy_log_of(&staging, &key, Some("staging"), 3);
        let here = [log::location_name(&payments.display().to_string())];
        // The swap: staging's old log in payments' place.
        std::fs::remove_dir_all(&payments).expect("rm");
        std::fs::rename(&staging, &payments).expect("mv");
        let mut v = verify(&payments, &key.public()).expect("verify");
        against_location(&mut v, &here, None);
        let text = v.text("payments");
        assert!(v.ok(), "no location to hold them to: {text}");
        assert!(
            text.starts_with("ok: payments: 3 records")
                && text.lines().next().unwrap_or("").contains(
                    "BUT 3 records (records 1 to 3) carry no location, written before records named their chain and location: a swap of those for another location's log signed with the same key cannot be told (3 of them name their database: give --database NAME to hold those to it)"
                ),
            "{text}"
        );
        // --database names the swap by the database the statements name.
        let mut v = verify(&payments, &key.public()).expect("verify");
        against_location(&mut v, &here, Some("payments"));
        let text = v.text("payments");
        assert!(!v.ok(), "{text}");
        assert!(
            text.contains("record 1: another database's log: records 1 to 3 are runs of database `staging`, not of `payments` (--database)")
                && text.contains("and 3 records (records 1 to 3) carry no location")
                && text.contains("(--database checked that each is a run of `payments`)"),
            "{text}"
        );
        // Records naming no database: --database cannot hold them, and says how many.
        let anon = root.path().join("anon");
        legacy_log_of(&anon, &key, None, 2);
        let mut v = verify(&anon, &key.public()).expect("verify");
        against_location(&mut v, &[log::location_name(&anon.display().to_string())], Some("payments"));
        let text = v.text("anon");
        assert!(
            v.ok() && text.contains("--database checked that 0 of them are runs of `payments`; 2 name no database"),
            "{text}"
        );
        // A log of records that name their location says nothing of the kind.
        let new = root.path().join("new");
        log_of(&new, &key, "payments", 2);
        let mut v = verify(&new, &key.public()).expect("verify");
        against_location(&mut v, &[log::location_name(&new.display().to_string())], Some("payments"));
        assert!(v.ok() && !v.text("new").contains("BUT"), "{}", v.text("new"));
    }
}
