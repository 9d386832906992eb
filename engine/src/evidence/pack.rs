//! The evidence pack (`pgdrill evidence pack`): one tar an auditor can check without
//! pgdrill. It holds the whole log (every record, the signed checkpoint: the chain proof),
//! the public key, an index of the records with those of the period marked, the period's
//! compliance report (given by the caller), a text for the auditor, and `verify.sh`, the
//! exact openssl commands that check every signature over its DSSE pre-authentication
//! encoding and every link of the chain.

use std::path::Path;

use super::log::{parse_head_name, record_name, CHECKPOINT, HEADS, PUBLIC_KEY, RECORDS};
use super::verify::Verified;
use crate::Error;

/// The locations the log was held to when packed, one line each as a record's signed
/// chain states its own (`"location":"...","previous":`), for verify.sh.
pub const LOCATIONS: &str = "locations.txt";

/// What `evidence pack` held the log to beside itself (the anchors it checked: a ledger's
/// line, a run.json, a backup's manifest, a kept checkpoint), and which newest records no
/// anchor names, one line each: verify.sh prints it.
pub const ANCHORS: &str = "anchors.txt";

/// The text of [`ANCHORS`] for a verified log.
pub fn anchors_text(v: &Verified) -> String {
    let mut out = String::new();
    for h in &v.held {
        out.push_str(&format!("checked: held to {}\n", crate::util::one_line(h)));
    }
    for u in &v.unauthenticated {
        out.push_str(&format!(
            "compared, UNAUTHENTICATED (can show a cut, never prove none): {}\n",
            crate::util::one_line(u)
        ));
    }
    if v.held.is_empty() {
        out.push_str("checked: no authenticated anchor of this log outside it was found (no published head, authenticated backup manifest or kept checkpoint; ledger lines and run.json files are unsigned)\n");
    }
    for u in &v.unproven {
        out.push_str(&format!("NOT PROVEN: {}\n", crate::util::one_line(u)));
    }
    out
}

/// The auditor's script: POSIX sh, openssl, sed, wc, cut, cat, grep. It relies on the canonical
/// form pgdrill writes envelopes in (one field per line), which `evidence verify` enforces.
pub const VERIFY_SH: &str = r#"#!/bin/sh
# Checks every signed statement of this pack with openssl alone (and sed, wc, cut, cat):
#  1. each envelope's Ed25519 signature over its DSSE pre-authentication encoding (PAE),
#  2. that each record names the sha256 of the record before it (nothing removed or edited),
#  3. that the signed checkpoint names the sha256 of the last record (nothing cut off the end).
#  4. with a TSA's CA certificates, each record's RFC 3161 timestamp (records/NNNNNNNN.tsr).
#  5. that each record says (signed) it was appended at a location locations.txt names: a
#     log of another location put in this one's place fails here.
#  6. prints anchors.txt: the anchors outside the log (ledger lines, run.json files, backup
#     manifests, kept checkpoints) pgdrill held it to when packing, and any newest records
#     none of them names (a cut of those could not be told).
#  7. each published head (heads/SEQUENCE-SHA256.dsse.json, a signed checkpoint its append
#     published and never replaced): its signature over its PAE, that it names the record its
#     file name says and that record is here unchanged, and that the last record here is the
#     newest head's: a cut of the newest records with an older checkpoint put back fails here.
# Usage: sh verify.sh [PUBLIC_KEY_PEM [TSA_CA_PEM]]   (default: public-key.pem, the one in
# this pack; better: the public key you were given separately)
set -eu
key=${1:-public-key.pem}
ca=${2:-}
case $key in /*) ;; *) key=$PWD/$key ;; esac
case $ca in /* | '') ;; *) ca=$PWD/$ca ;; esac
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
prev=""
seen=""
# signature FILE WANT WHAT: sets type (the envelope's payload type), writes $tmp/payload and
# $tmp/sig, and sets sig: ok when the signature over the PAE checks with the key and the type
# is WANT (the type is signed, but a good signature over another kind of envelope must not
# count), else BAD (for a wrong type: "its payload type is not WHAT"), and then bad=1.
signature() {
    # The envelope's fields, one per line as pgdrill writes them.
    type=$(sed -n 's/^  "payloadType": "\(.*\)",$/\1/p' "$1")
    sed -n 's/^  "payload": "\(.*\)",$/\1/p' "$1" | openssl base64 -d -A > "$tmp/payload"
    sed -n 's/^      "sig": "\(.*\)"$/\1/p' "$1" | openssl base64 -d -A > "$tmp/sig"
    # PAE: "DSSEv1" SP len(type) SP type SP len(payload) SP payload
    printf 'DSSEv1 %d %s %d ' "${#type}" "$type" "$(($(wc -c < "$tmp/payload")))" > "$tmp/pae"
    cat "$tmp/payload" >> "$tmp/pae"
    if [ "$type" != "$2" ]; then
        sig="BAD (its payload type is not $3)"
        bad=1
    elif openssl pkeyutl -verify -pubin -inkey "$key" -rawin -in "$tmp/pae" -sigfile "$tmp/sig" > /dev/null 2>&1; then
        sig=ok
    else
        sig=BAD
        bad=1
    fi
}
check() {
    f=$1
    # A checkpoint put in as a record (or a record as the checkpoint) must not count.
    want=application/vnd.in-toto+json
    [ "$f" = checkpoint.dsse.json ] && want=application/vnd.pgdrill.checkpoint+json
    signature "$f" "$want" "$want"
    named=$(sed -n 's/.*"record_sha256":"\([0-9a-f]*\)".*/\1/p' "$tmp/payload")
    link=ok
    if [ "$f" = checkpoint.dsse.json ] && [ -n "$named" ] && [ "$named" != "$prev" ] && case " $seen " in *" $named "*) true ;; *) false ;; esac; then
        # An append interrupted before its checkpoint: the records after the one it names
        # were checked above (signed, chained); an old checkpoint removes nothing.
        link="ok (it covers an earlier record: the records after it were appended after an interrupted run)"
    elif [ -n "$prev" ] && [ "$named" != "$prev" ]; then
        link="BROKEN (names ${named:-nothing}, the record before is $prev)"
        bad=1
    fi
    if [ -z "$prev" ] && [ -n "$named" ]; then
        link="BROKEN (names a record before the first one: records were removed)"
        bad=1
    fi
    prev=$(openssl dgst -sha256 -r "$f" | cut -c1-64)
    seen="$seen $prev"
    stamp=""
    if [ -n "$ca" ] && [ "$f" != checkpoint.dsse.json ]; then
        if openssl ts -verify -digest "$prev" -in "${f%.dsse.json}.tsr" -CAfile "$ca" > /dev/null 2>&1; then
            stamp=", timestamp ok"
        else
            stamp=", timestamp BAD"
            bad=1
        fi
    fi
    where=""
    if [ "$f" != checkpoint.dsse.json ] && [ -f locations.txt ]; then
        if grep -q -F -f locations.txt "$tmp/payload"; then
            where=", location ok"
        elif grep -q '"id":"[0-9a-f]*","location":' "$tmp/payload"; then
            where=", location BAD (appended at a location locations.txt does not name: another location's log)"
            bad=1
        else
            where=", location NOT STATED (written before records named it: a swap of it cannot be told)"
        fi
    fi
    echo "$f: signature $sig, chain $link$stamp$where"
}
for f in records/*.dsse.json checkpoint.dsse.json; do
    if [ ! -f "$f" ]; then
        # No record at all, or no checkpoint: nothing here can show that none was removed.
        echo "$f: MISSING"
        bad=1
        continue
    fi
    check "$f"
done
last=""
for f in records/*.dsse.json; do
    [ -f "$f" ] && last=${f#records/} && last=${last%.dsse.json}
done
newest=""
for h in heads/*.dsse.json; do
    [ -f "$h" ] || continue
    name=${h#heads/}
    n=${name%%-*}
    named=${name#*-}
    named=${named%.dsse.json}
    signature "$h" application/vnd.pgdrill.checkpoint+json "a head's"
    # Compact JSON, keys in order: the head's own sequence comes after its record's text.
    seq=$(sed -n 's/.*"sequence":\([0-9]*\).*/\1/p' "$tmp/payload")
    sha=$(sed -n 's/.*"record_sha256":"\([0-9a-f]*\)".*/\1/p' "$tmp/payload")
    rec=records/$n.dsse.json
    if [ -z "$seq" ] || [ "$seq" != "$(expr "$n" + 0 2> /dev/null)" ] || [ "$sha" != "$named" ]; then
        held="BAD (its signed payload names another record than its file name)"
        bad=1
    elif [ ! -f "$rec" ]; then
        held="BROKEN (it names $rec, which is not here: records were cut off the end)"
        bad=1
    elif [ "$(openssl dgst -sha256 -r "$rec" | cut -c1-64)" != "$sha" ]; then
        held="BROKEN ($rec is not the record it names: edited or replaced)"
        bad=1
    else
        held="ok ($rec is the one it names)"
    fi
    where=""
    if [ -f locations.txt ]; then
        sed 's/,"previous":$//' locations.txt > "$tmp/heads-at"
        if grep -q -F -f "$tmp/heads-at" "$tmp/payload"; then
            where=", location ok"
        else
            where=", location BAD (published at a location locations.txt does not name)"
            bad=1
        fi
    fi
    echo "$h: signature $sig, record $held$where"
    newest=$n
done
unproven=""
if [ -z "$newest" ]; then
    echo "heads: NOT PROVEN: this pack holds no published head: a cut of the newest records (with an older checkpoint put back) cannot be told here"
    unproven=", BUT no published head holds its newest record"
elif [ -z "$last" ]; then
    :
elif [ "$last" = "$newest" ]; then
    echo "heads: the last record, records/$last.dsse.json, is the newest head's"
elif [ "$(expr "$last" + 0)" -gt "$(expr "$newest" + 0)" ]; then
    echo "heads: NOT PROVEN: the records after $newest, to $last, have no published head here (an append stopped before publishing it): a cut of them cannot be told here"
    unproven=", BUT the records after $newest have no published head"
else
    echo "heads: BROKEN: the newest head names record $newest, the last record here is $last: records were cut off the end"
    bad=1
fi
if [ -f anchors.txt ]; then
    # Not checkable with openssl here (the anchors are outside this pack): what pgdrill held
    # the log to when it packed it, and which newest records nothing anchored.
    echo "anchors checked by pgdrill evidence pack when packing:"
    sed 's/^/  /' anchors.txt
fi
if [ "$bad" -ne 0 ]; then
    echo "FAILED: see the lines above"
    exit 1
fi
echo "ok: every signature checks with $key and the chain is unbroken up to the signed checkpoint and the newest published head$unproven"
"#;

/// What an auditor reads first.
pub fn auditor_text(keyid: &str, from: &str, to: &str, in_period: usize, total: usize) -> String {
    format!(
        r#"pgdrill evidence pack
=====================

Period: {from} to {to}. Records in the period: {in_period} (of {total} in the log; index.txt
lists them all, the period's marked with *). Signing key id: {keyid} (the sha256 of the
public key's DER encoding).

What each record is: records/NNNNNNNN.dsse.json is one pgdrill run (backup, verify, restore
or drill, passed or failed), an in-toto Statement v1 (predicateType
https://pgdrill.dev/evidence/run/v1) in a DSSE envelope signed with Ed25519. The statement
names the backup by its sha256 and the runbook by the sha256 of its text, and states each
check with its verdict and ground truth, RTO and RPO against their targets, start and end
times, pgdrill and PostgreSQL versions, and the throwaway server the data was restored into
(segregated from the source).

Why none can be removed unseen: each statement holds, inside what is signed, its own
sequence number and the sha256 of the record before it (with that run's name, kind, outcome
and end time). checkpoint.dsse.json, signed too, names the last record's sha256. Removing,
editing or reordering any record, or putting an old statement back as new, breaks a signed
link. Keep the head sequence and sha256 printed below from one audit to the next: a log cut
back to an earlier checkpoint is then visible too. Each record also states, signed, where it
was appended; locations.txt names where this log was checked to live, and verify.sh fails a
record appended elsewhere (a whole log of another location put in this one's place).
heads/ holds the signed heads the appends published (the newest, and the period's): each a
checkpoint signed when its record was appended and never replaced, so an older checkpoint
put back after a cut cannot undo it; verify.sh checks each, and that the last record here is
the newest head's.
anchors.txt says which anchors outside the log (ledger lines, run.json files, backup
manifests, kept checkpoints) pgdrill held it to when packing, and which newest records none
of them names; verify.sh prints it.

Check it with openssl alone (verify.sh does this for every record):

  sh verify.sh /path/to/the/public-key/you/were/given.pem [/path/to/the/TSA-CA.pem]

With a time-stamping authority configured, records/NNNNNNNN.tsr is the RFC 3161 timestamp
of the record's sha256; check one by hand with
  openssl ts -verify -digest "$(openssl dgst -sha256 -r records/00000001.dsse.json | cut -c1-64)" \
    -in records/00000001.tsr -CAfile TSA-CA.pem
  openssl ts -reply -in records/00000001.tsr -text     # the time it states

By hand, for one record, say records/00000001.dsse.json:

  f=records/00000001.dsse.json
  type=$(sed -n 's/^  "payloadType": "\(.*\)",$/\1/p' "$f")
  sed -n 's/^  "payload": "\(.*\)",$/\1/p' "$f" | openssl base64 -d -A > payload.json
  sed -n 's/^      "sig": "\(.*\)"$/\1/p' "$f" | openssl base64 -d -A > sig.bin
  printf 'DSSEv1 %d %s %d ' "${{#type}}" "$type" "$(($(wc -c < payload.json)))" > pae.bin
  cat payload.json >> pae.bin
  openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin -in pae.bin -sigfile sig.bin
  openssl dgst -sha256 records/00000001.dsse.json   # equals record 2's "record_sha256"

payload.json is then the signed statement, readable as JSON.

The period's compliance report (compliance.html, compliance.pdf, compliance.json) maps the
period's records to the controls they answer (SOC 2, ISO/IEC 27001:2022, DORA, NIS2, HIPAA,
PCI DSS, NIST SP 800-53), per control met / not met / not applicable, with the records that
support each verdict and what is missing.
"#
    )
}

/// The index: one line per record, the period's marked.
fn index(v: &Verified, in_period: &dyn Fn(&str) -> bool) -> String {
    let mut out = String::from("  sequence  finished_at                     kind     outcome  runbook  sha256\n");
    for g in &v.good {
        let p = &g.statement.predicate;
        let s = |k: &str| p[k].as_str().map(|v| crate::util::one_line(v).into_owned()).unwrap_or_default();
        let finished = s("finished_at");
        out.push_str(&format!(
            "{} {:>8}  {:<30}  {:<7}  {:<7}  {}  {}\n",
            if in_period(&finished) { "*" } else { " " },
            g.sequence,
            finished,
            s("kind"),
            s("outcome"),
            p["runbook"]["name"].as_str().map(crate::util::one_line).unwrap_or_default(),
            g.sha256
        ));
    }
    if let Some(g) = v.good.last() {
        out.push_str(&format!("head: sequence {} sha256 {}\n", g.sequence, g.sha256));
    }
    // What `evidence verify` noted (a clock that went back, an interrupted append): the
    // auditor reads it here too.
    for n in &v.notes {
        out.push_str(&format!("note: {}\n", crate::util::one_line(n)));
    }
    for u in &v.unproven {
        out.push_str(&format!("NOT PROVEN: {}\n", crate::util::one_line(u)));
    }
    out
}

/// Write the pack to `out` (whole or not at all): the verified log of `location`, with
/// `extra` files (name, bytes) such as the compliance report.
pub fn write(
    out: &Path,
    location: &Path,
    v: &Verified,
    from: &str,
    to: &str,
    in_period: &dyn Fn(&str) -> bool,
    extra: &[(String, Vec<u8>)],
) -> Result<(), Error> {
    let shown = crate::util::one_line(&out.display().to_string()).into_owned();
    let err = |e: std::io::Error| Error::io(format!("writing the evidence pack {shown}"), e);
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new().prefix(".pgdrill-pack-").tempfile_in(&dir).map_err(err)?;
    let mut tar = tar::Builder::new(tmp.reopen().map_err(err)?);
    let mut add = |name: &str, bytes: &[u8], mode: u32| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(0);
        h.set_cksum();
        tar.append_data(&mut h, name, bytes)
    };
    let public = std::fs::read(location.join(PUBLIC_KEY)).map_err(err)?;
    let count =
        v.good.iter().filter(|g| in_period(g.statement.predicate["finished_at"].as_str().unwrap_or(""))).count();
    add("README.txt", auditor_text(&v.keyid, from, to, count, v.good.len()).as_bytes(), 0o644).map_err(err)?;
    add("verify.sh", VERIFY_SH.as_bytes(), 0o755).map_err(err)?;
    add(PUBLIC_KEY, &public, 0o644).map_err(err)?;
    add("index.txt", index(v, in_period).as_bytes(), 0o644).map_err(err)?;
    for g in &v.good {
        add(&format!("{RECORDS}/{}", record_name(g.sequence)), &g.bytes, 0o644).map_err(err)?;
        let tsr = super::timestamp::tsr_name(g.sequence);
        if let Ok(bytes) = std::fs::read(location.join(RECORDS).join(&tsr)) {
            add(&format!("{RECORDS}/{tsr}"), &bytes, 0o644).map_err(err)?;
        }
    }
    if let Some(c) = &v.checkpoint {
        add(CHECKPOINT, c, 0o644).map_err(err)?;
    }
    // The published heads of the period's records, and always the newest (the first): with
    // it, verify.sh sees a cut of the newest record with openssl alone.
    for (i, (name, bytes)) in v.heads.iter().enumerate() {
        let of_period = parse_head_name(name)
            .and_then(|(n, _)| v.good.iter().find(|g| g.sequence == n))
            .is_some_and(|g| in_period(g.statement.predicate["finished_at"].as_str().unwrap_or("")));
        if i == 0 || of_period {
            add(&format!("{HEADS}/{name}"), bytes, 0o644).map_err(err)?;
        }
    }
    for (name, bytes) in extra {
        add(name, bytes, 0o644).map_err(err)?;
    }
    tar.into_inner().and_then(|f| f.sync_all()).map_err(err)?;
    // Nothing secret inside (statements are redacted): readable by whoever receives it.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(err)?;
    }
    tmp.persist(out).map_err(|e| err(e.error))?;
    Ok(())
}

/// A reporting period: from the start of `from` to the end of `to` (dates, `YYYY-MM-DD`,
/// UTC) or between two RFC 3339 instants.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Period {
    pub from: time::OffsetDateTime,
    /// Exclusive.
    pub to: time::OffsetDateTime,
}

impl Period {
    pub fn parse(from: &str, to: &str) -> Result<Period, Error> {
        let at = |s: &str, end: bool| -> Result<time::OffsetDateTime, Error> {
            let rfc = &time::format_description::well_known::Rfc3339;
            if let Ok(t) = time::OffsetDateTime::parse(s, rfc) {
                return Ok(t);
            }
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            let d = time::Date::parse(s, &fmt).map_err(|_| {
                Error::invalid(format!(
                    "`{}` is not a date: write YYYY-MM-DD (UTC) or an RFC 3339 time",
                    crate::util::one_line(s)
                ))
            })?;
            let d = if end { d.next_day().unwrap_or(d) } else { d };
            Ok(d.midnight().assume_utc())
        };
        let p = Period { from: at(from, false)?, to: at(to, true)? };
        if p.to <= p.from {
            return Err(Error::invalid(format!("the period {from} to {to} is empty: --to must come after --from")));
        }
        Ok(p)
    }

    /// Whether an instant falls in the period.
    pub fn contains_time(&self, t: time::OffsetDateTime) -> bool {
        t >= self.from && t < self.to
    }

    /// Whether an RFC 3339 instant falls in the period.
    pub fn contains(&self, rfc3339: &str) -> bool {
        time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| t >= self.from && t < self.to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_of_dates_holds_both_whole_days() {
        let p = Period::parse("2026-11-01", "2026-11-30").expect("period");
        assert!(p.contains("2026-11-01T00:00:00Z"));
        assert!(p.contains("2026-11-30T23:59:59.9Z"));
        assert!(!p.contains("2026-12-01T00:00:00Z"));
        assert!(!p.contains("2026-10-31T23:59:59Z"));
        assert!(!p.contains("not a time"));
        assert!(Period::parse("2026-11-30", "2026-11-01").is_err());
        assert!(Period::parse("yesterday", "2026-11-01").expect_err("refused").to_string().contains("YYYY-MM-DD"));
    }

    /// The pack's verify.sh under dash (`sh`), on a log whose last append was interrupted
    /// before its checkpoint, with hostile runbook names: it accepts the log (no false
    /// tamper), runs nothing a name holds, and still refuses a checkpoint envelope put in as
    /// a record (a signed file of the other kind).
    #[test]
    fn verify_sh_accepts_an_interrupted_append_and_refuses_a_checkpoint_as_a_record() {
        use super::super::{keys::SigningKey, log, statement::Statement, statement::Subject, verify};
        use serde_json::json;
        let on_path = |p: &str| crate::child::command(p).arg("version").output().is_ok();
        if !on_path("openssl") {
            assert!(std::env::var_os("CI").is_none(), "the openssl command is missing (CI)");
            eprintln!("skipped: no openssl command");
            return;
        }
        let t = tempfile::tempdir().expect("tmp");
        let (dir, key) = (t.path().join("log"), SigningKey::generate().expect("key"));
        let pwned = t.path().join("pwned");
        let hostile = [
            format!("$(touch {})", pwned.display()),
            format!("`touch {}`; \"q\" 'q' \n%s%n ../.. \u{1b}[31m жур (x) \\", pwned.display()),
            "plain".to_string(),
        ];
        let mut checkpoints = Vec::new();
        for name in &hostile {
            let s = Statement::run(
                vec![Subject::sha256(name.clone(), "00")],
                json!({"runbook": {"name": name}, "kind": "drill", "outcome": "failed", "finished_at": "2026-12-01T00:00:00Z"}),
            );
            log::append(&dir, &key, s).expect("append");
            checkpoints.push(std::fs::read(dir.join(log::CHECKPOINT)).expect("checkpoint"));
        }
        // Interrupted: the last record is in place, its checkpoint is not.
        std::fs::write(dir.join(log::CHECKPOINT), &checkpoints[1]).expect("interrupt");
        let v = verify::verify(&dir, &key.public()).expect("verify");
        assert!(v.ok(), "{:?}", v.findings);
        let idx = index(&v, &|_| true);
        assert!(!idx.contains('\u{1b}') && idx.lines().count() == 6, "a name broke index.txt's lines: {idx}");
        assert!(idx.lines().last().is_some_and(|l| l.starts_with("note: ") && l.contains("interrupted")), "{idx}");
        let out = t.path().join("pack.tar");
        write(&out, &dir, &v, "2026-12-01", "2026-12-01", &|_| true, &[]).expect("pack");
        let unpacked = t.path().join("unpacked");
        tar::Archive::new(std::fs::File::open(&out).expect("open")).unpack(&unpacked).expect("unpack");
        let sh = || {
            let o = crate::child::command("sh")
                .arg(unpacked.join("verify.sh"))
                .arg(dir.join(log::PUBLIC_KEY))
                .output()
                .expect("sh verify.sh");
            (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
        };
        let (ok, text) = sh();
        assert!(ok, "verify.sh calls an interrupted append tampering: {text}");
        assert!(text.contains("interrupted"), "{text}");
        assert!(!pwned.exists(), "verify.sh ran a command from a runbook name");
        // The old checkpoint 1 put in as record 2: its signature is good, its kind is not.
        std::fs::write(unpacked.join("records/00000002.dsse.json"), &checkpoints[0]).expect("swap");
        let (ok, text) = sh();
        assert!(!ok, "verify.sh accepted a checkpoint as a record: {text}");
        assert!(text.contains("00000002.dsse.json: signature BAD (its payload type"), "{text}");
        // The checkpoint removed: said plainly, not a sed error.
        std::fs::remove_file(unpacked.join("checkpoint.dsse.json")).expect("rm");
        let (ok, text) = sh();
        assert!(!ok && text.contains("checkpoint.dsse.json: MISSING") && text.contains("FAILED"), "{text}");
    }
}
