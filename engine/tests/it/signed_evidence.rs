//! Signed evidence (issue 42): real runs (a backup, a verify, a failing verify) each append a
//! signed in-toto statement to the evidence log; `pgdrill evidence verify` and the pack's
//! openssl commands accept the log, and an edited byte, a removed failed run, a record
//! re-signed with another key and an old statement replayed as new are each detected and
//! named.

use std::path::{Path, PathBuf};

use base64::Engine as _;

use crate::common;
use crate::common::{made_dir, on_path, require, tmp_backups, written, Ran, Run};

const KEY: &str = "signed-evidence test passphrase";

fn record(dir: &Path, n: u64) -> PathBuf {
    dir.join("records").join(format!("{n:08}.dsse.json"))
}

/// The signed statement inside a record's envelope.
fn statement(path: &Path) -> serde_json::Value {
    let env = common::read_json(path);
    let payload =
        base64::engine::general_purpose::STANDARD.decode(env["payload"].as_str().expect("payload")).expect("b64");
    serde_json::from_slice(&payload).expect("statement")
}

/// A copy of the evidence directory to damage.
fn copy_of(dir: &Path, to: &Path) -> PathBuf {
    let out = to.to_path_buf();
    std::fs::create_dir_all(out.join("records")).expect("mkdir");
    for name in ["public-key.pem", "checkpoint.dsse.json"] {
        std::fs::copy(dir.join(name), out.join(name)).expect("copy");
    }
    for e in std::fs::read_dir(dir.join("records")).expect("records").flatten() {
        std::fs::copy(e.path(), out.join("records").join(e.file_name())).expect("copy");
    }
    out
}

/// Remove the heads of records `from` and later (`heads/SEQ-SHA256.dsse.json`), as a cut that
/// knows of them would.
fn remove_heads_from(dir: &Path, from: u64) {
    for e in std::fs::read_dir(dir.join("heads")).expect("heads").flatten() {
        let n: u64 = e.file_name().to_string_lossy()[..8].parse().expect("a head's sequence");
        if n >= from {
            std::fs::remove_file(e.path()).expect("rm head");
        }
    }
}

/// The names under the log's `heads/`, sorted.
fn heads(dir: &Path) -> Vec<String> {
    common::names_in(&dir.join("heads"), |_| true)
}

fn verify(dir: &Path, public: &Path) -> common::Ran {
    common::verifying(dir, public).output()
}

/// `tiny.yaml` in `dir`: a verify runbook of one step that sleeps for no time.
fn tiny(dir: &Path) -> PathBuf {
    written(
        dir.join("tiny.yaml"),
        "name: tiny\nkind: verify\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n",
    )
}

/// `ok.yaml` and `broken.yaml` in `dir`: verify runbooks of one step, which passes in the
/// first and fails in the second.
fn ok_and_broken(dir: &Path) -> (PathBuf, PathBuf) {
    let ok = written(
        dir.join("ok.yaml"),
        "name: ok\nkind: verify\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n",
    );
    let broken = written(
        dir.join("broken.yaml"),
        "name: broken\nkind: verify\nsteps:\n  - id: s\n    uses: shell.run\n    with: { argv: [\"false\"] }\n",
    );
    (ok, broken)
}

/// A new folder with a key pair `pgdrill keygen` made in it: the folder, the private key's
/// path and the public key's.
fn keygen() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let t = tempfile::tempdir().expect("tmp");
    let (key, public) = key_pair(t.path(), "k.pem");
    (t, key, public)
}

/// A key pair `pgdrill keygen` made as `dir/name`: the private key's path and the public key's
/// (`name.pub` beside it).
fn key_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let key = dir.join(name);
    Run::cli(["keygen"]).arg(&key).expect(0);
    (key, dir.join(format!("{name}.pub")))
}

/// The log in `dir` cut at its end: the records `cut` removed and `checkpoint` (an older
/// one, kept aside) put back, so the log alone verifies whole.
fn cut_back(dir: &Path, cut: impl IntoIterator<Item = u64>, checkpoint: &[u8]) {
    for n in cut {
        std::fs::remove_file(record(dir, n)).expect("rm");
    }
    std::fs::write(dir.join("checkpoint.dsse.json"), checkpoint).expect("put back");
}

/// `pgdrill evidence pack` of the log at `evidence` into `out`, its period wide enough for
/// every run of a test, checked with `public`.
fn packing(public: &Path, evidence: impl AsRef<std::ffi::OsStr>, out: &Path) -> Run {
    Run::cli(["evidence", "pack", "--from", "2000-01-01", "--to", "2100-01-01", "--public-key"])
        .arg(public)
        .arg("--evidence")
        .arg(evidence)
        .arg(out)
}

/// Three signed `backup` runs of database `shop` (a new server, a table of two rows) into
/// `backups/`, their log `evidence/`, in a new folder with the key pair `signing.pem`.
struct ThreeBackups {
    /// Kept for as long as the test runs.
    _server: pgdrill::testkit::pg::ephemeral::Ephemeral,
    t: tempfile::TempDir,
    storage: PathBuf,
    evidence: PathBuf,
    key: PathBuf,
    public: PathBuf,
    /// The checkpoint as the first run left it (at record 1), to put back after a cut.
    older: Vec<u8>,
}

/// [`ThreeBackups`], or none where no PostgreSQL 15 server can start (said by `require`).
async fn three_backups() -> Option<ThreeBackups> {
    let s = common::native_server("shop").await?;
    common::exec(&s.url(), "create table t (id int primary key); insert into t values (1), (2)").await;
    let t = tempfile::tempdir().expect("tmp");
    let (storage, evidence) = (t.path().join("backups"), t.path().join("evidence"));
    let (key, public) = key_pair(t.path(), "signing.pem");
    let older = three_signed_runs(
        || Run::new("backup").var("database_url", s.url()).var("storage", storage.display()),
        &key,
        &evidence,
    );
    Some(ThreeBackups { _server: s, t, storage, evidence, key, public, older })
}

#[tokio::test(flavor = "multi_thread")]
async fn runs_sign_their_evidence_and_a_removed_failed_verify_is_named() {
    let Some(s) = common::native_server("shop").await else { return };
    common::exec(&s.url(), "create table t (id int primary key); insert into t values (1), (2)").await;
    let (t, storage) = tmp_backups();
    let evidence = t.path().join("evidence");
    let key = t.path().join("signing.pem");
    let public = t.path().join("signing.pem.pub");

    // keygen: a private key 0600, the public key printed and beside it.
    let ran = Run::cli(["keygen"]).arg(&key).expect(0);
    assert!(ran.stdout.starts_with("-----BEGIN PUBLIC KEY-----"), "{}", ran.all());
    assert!(!ran.all().contains("PRIVATE"), "keygen printed the private key: {}", ran.all());
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&key).expect("key").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&public).expect("pub"), ran.stdout);
    Run::cli(["keygen"]).arg(&key).expect(2);
    let private = std::fs::read_to_string(&key).expect("key");
    let private_body: String = private.lines().filter(|l| !l.starts_with("-----")).collect();

    let signed = |r: Run| r.signed(&key, &evidence);
    // 1: a backup.
    let backup =
        signed(Run::new("backup")).var("database_url", s.url()).var("storage", storage.display()).key(KEY).expect(0);
    // 2: a verify that passes.
    let verified = signed(Run::new("verify"))
        .var("storage", storage.display())
        .var("database", "shop")
        .var("provider", "native")
        .key(KEY)
        .expect(0);
    // 3: a verify that fails (the archive damaged since), the key in a variable.
    let file = common::backup_in(&storage.join("shop"));
    let manifest = common::read_json(&pgdrill::testkit::backup::layout::manifest_path(&file));
    let mut damaged = std::fs::read(&file).expect("backup");
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0xff;
    std::fs::write(&file, &damaged).expect("damage");
    let failed = Run::verify_native(storage.display(), "shop")
        .var("force", "true")
        .key(KEY)
        .env("PGDRILL_SIGNING_KEY", &private)
        .arg("--evidence")
        .arg(&evidence)
        .expect(1);
    for r in [&backup, &verified, &failed] {
        assert!(!r.all().contains(&private_body), "the signing key reached the output: {}", r.all());
        assert!(r.stderr.contains("evidence: signed statement"), "{}", r.all());
    }

    // What the statements say.
    let b = statement(&record(&evidence, 1));
    assert_eq!(b["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(b["predicateType"], "https://pgdrill.dev/evidence/run/v1");
    assert_eq!(b["predicate"]["kind"], "backup");
    assert_eq!(b["predicate"]["outcome"], "passed");
    let subject = b["subject"].as_array().expect("subject");
    assert!(
        subject.iter().any(|s| s["digest"]["sha256"] == manifest["sha256"]),
        "no subject with the manifest's sha256 {}: {subject:?}",
        manifest["sha256"]
    );
    let runbook = std::fs::read(common::root().join("runbooks/backup.yaml")).expect("runbook");
    let runbook_sha = pgdrill::testkit::evidence::keys::sha256_hex(&runbook);
    assert_eq!(b["predicate"]["runbook"]["sha256"], runbook_sha.as_str());
    assert!(subject.iter().any(|s| s["name"] == "runbook:backup" && s["digest"]["sha256"] == runbook_sha.as_str()));

    let v = statement(&record(&evidence, 2));
    let p = &v["predicate"];
    assert_eq!((p["kind"].as_str(), p["outcome"].as_str()), (Some("verify"), Some("passed")), "{p}");
    assert!(v["subject"].as_array().expect("subject").iter().any(|s| s["digest"]["sha256"] == manifest["sha256"]));
    let checks = p["checks"].as_array().expect("checks");
    assert!(checks.iter().any(|c| c["ground_truth"] == "manifest" && c["verdict"] == "passed"), "{checks:?}");
    assert_eq!(p["target"]["segregated_from_source"], true, "{p}");
    assert_eq!(p["target"]["throwaway_servers"][0]["provider"], "native", "{p}");
    assert!(p["versions"]["servers"][0].as_str().is_some_and(|v| v.starts_with("15")), "{p}");
    assert!(p["started_at"].is_string() && p["finished_at"].is_string());
    assert_eq!(p["chain"]["sequence"], 2);
    assert_eq!(p["chain"]["previous"]["sequence"], 1);

    let f = statement(&record(&evidence, 3));
    assert_eq!(f["predicate"]["outcome"], "failed", "{f}");
    assert!(f["predicate"]["checks"].as_array().expect("checks").iter().any(|c| c["verdict"] == "failed"), "{f}");

    // The log verifies.
    let ok = verify(&evidence, &public);
    assert_eq!(ok.code, Some(0), "{}", ok.all());
    assert!(ok.stdout.contains("3 records"), "{}", ok.all());

    // The pack verifies with openssl alone. Its period: yesterday and today (UTC), which
    // hold every run of this test whenever it runs.
    let pack = t.path().join("pack.tar");
    let today = time::OffsetDateTime::now_utc().date();
    let yesterday = today.previous_day().expect("a day before");
    Run::cli(["evidence", "pack", "--from", &yesterday.to_string(), "--to", &today.to_string(), "--public-key"])
        .arg(&public)
        .arg("--evidence")
        .arg(&evidence)
        .arg(&pack)
        .expect(0);
    let unpacked = made_dir(t.path().join("unpacked"));
    tar::Archive::new(std::fs::File::open(&pack).expect("pack")).unpack(&unpacked).expect("untar");
    let readme = std::fs::read_to_string(unpacked.join("README.txt")).expect("README.txt");
    assert!(readme.contains("openssl pkeyutl -verify -pubin -inkey public-key.pem -rawin"), "{readme}");
    // The period's compliance report: backups and a verify proven against its manifest
    // meet ISO/IEC 27001 A.8.13; no drill was run, so NIST CP-4 is not met, and says so.
    let report = common::read_json(&unpacked.join("compliance.json"));
    let control = |id: &str| {
        report["controls"].as_array().expect("controls").iter().find(|c| c["control"] == id).cloned().expect(id)
    };
    assert_eq!(control("A.8.13")["verdict"], "met", "{}", control("A.8.13"));
    assert_eq!(control("CP-9")["verdict"], "met", "{}", control("CP-9"));
    let cp4 = control("CP-4");
    assert_eq!(cp4["verdict"], "not_met", "{cp4}");
    assert!(cp4["judged"][0]["missing"].as_str().is_some_and(|m| m.contains("no passed recovery drill")), "{cp4}");
    let a813 = control("A.8.13");
    let supporting: Vec<u64> = a813["judged"]
        .as_array()
        .expect("judged")
        .iter()
        .flat_map(|j| j["supporting"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_u64())
        .collect();
    assert!(supporting.contains(&1) && supporting.contains(&2) && !supporting.contains(&3), "{a813}");
    assert!(std::fs::read_to_string(unpacked.join("compliance.html")).expect("html").contains("A.8.13"));
    if require(on_path("pdftotext") && on_path("pdfinfo"), "poppler-utils (pdftotext, pdfinfo)") {
        let pdf = unpacked.join("compliance.pdf");
        let info = std::process::Command::new("pdfinfo").arg(&pdf).output().expect("pdfinfo");
        assert!(info.status.success(), "pdfinfo: {}", common::text(&info.stderr));
        assert!(
            common::text(&info.stdout).contains("Title:           pgdrill compliance report"),
            "{}",
            common::text(&info.stdout)
        );
        let text =
            std::process::Command::new("pdftotext").arg("-layout").arg(&pdf).arg("-").output().expect("pdftotext");
        let text = common::text(&text.stdout);
        assert!(text.contains("ISO/IEC 27001:2022 Annex A A.8.13: MET"), "{text}");
        assert!(text.contains("CP-4: NOT MET"), "{text}");
        // Every page renders.
        if on_path("pdftoppm") {
            let out = std::process::Command::new("pdftoppm")
                .args(["-r", "20", "-png"])
                .arg(&pdf)
                .arg(t.path().join("page"))
                .output()
                .expect("pdftoppm");
            assert!(
                out.status.success() && common::text(&out.stderr).is_empty(),
                "pdftoppm: {}",
                common::text(&out.stderr)
            );
        }
    }

    if require(on_path("openssl"), "the openssl command") {
        let sh = |dir: &Path| {
            std::process::Command::new("sh").arg(dir.join("verify.sh")).arg(&public).output().expect("sh verify.sh")
        };
        let out = sh(&unpacked);
        let text = common::text(&out.stdout);
        assert!(out.status.success(), "verify.sh: {text}{}", common::text(&out.stderr));
        assert_eq!(text.matches("signature ok, chain ok").count(), 4, "{text}");
        // The heads the appends published are in the pack, each checked with openssl, and the
        // last record is the newest head's.
        let newest = heads(&evidence).pop().expect("a head");
        assert!(
            text.contains(&format!(
                "heads/{newest}: signature ok, record ok (records/00000003.dsse.json is the one it names), location ok"
            )) && text.contains("heads: the last record, records/00000003.dsse.json, is the newest head's")
                && text.contains("and the newest published head\n"),
            "{text}"
        );
        // Regression (issue 42): the pack carried no head, so the newest record cut with an
        // older checkpoint put back (here the head of record 2, a checkpoint signed then) was
        // accepted by verify.sh. The newest head in the pack names the cut.
        let cut = made_dir(t.path().join("unpacked-cut"));
        tar::Archive::new(std::fs::File::open(&pack).expect("pack")).unpack(&cut).expect("untar");
        let older = heads(&cut).into_iter().find(|h| h.starts_with("00000002-")).expect("record 2's head in the pack");
        std::fs::copy(cut.join("heads").join(older), cut.join("checkpoint.dsse.json")).expect("put back");
        std::fs::remove_file(cut.join("records/00000003.dsse.json")).expect("rm");
        let out = sh(&cut);
        let text = common::text(&out.stdout);
        assert!(!out.status.success(), "verify.sh accepted a cut of the newest record: {text}");
        assert!(
            text.contains("checkpoint.dsse.json: signature ok, chain ok")
                && text.contains(&format!(
                    "heads/{newest}: signature ok, record BROKEN (it names records/00000003.dsse.json, which is not here"
                ))
                && text.contains("heads: BROKEN: the newest head names record 00000003, the last record here is 00000002"),
            "{text}"
        );
        // openssl alone sees the failed run removed, too.
        std::fs::remove_file(unpacked.join("records/00000003.dsse.json")).expect("rm");
        let out = sh(&unpacked);
        assert!(!out.status.success(), "verify.sh accepted a removed record: {}", common::text(&out.stdout));
        assert!(common::text(&out.stdout).contains("checkpoint.dsse.json: signature ok, chain BROKEN"));
    }

    // The failed run's record removed: named by its successor... here the checkpoint.
    let d = copy_of(&evidence, &t.path().join("removed"));
    std::fs::remove_file(record(&d, 3)).expect("rm");
    let r = verify(&d, &public);
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(r.stdout.contains("record 3: missing: the failed verify `verify`"), "{}", r.all());
    // ... and from the middle of the chain: named by the next record's signed link.
    let d = copy_of(&evidence, &t.path().join("removed-middle"));
    std::fs::remove_file(record(&d, 2)).expect("rm");
    let r = verify(&d, &public);
    assert!(
        r.stdout.contains("record 2: missing: the passed verify `verify`")
            && r.stdout.contains("record 3's signed link"),
        "{}",
        r.all()
    );

    // Any byte edited: the payload, the key id, the signature, the layout.
    let bytes = std::fs::read(record(&evidence, 2)).expect("record");
    let text = String::from_utf8(bytes.clone()).expect("utf8");
    let at = |needle: &str| text.find(needle).expect(needle) + needle.len() + 2;
    for (what, i) in [
        ("payload", at("\"payload\": \"") + 40),
        ("keyid", at("\"keyid\": \"")),
        ("sig", at("\"sig\": \"") + 5),
        ("layout", 1),
    ] {
        let d = copy_of(&evidence, &t.path().join(format!("edited-{what}")));
        let mut b = bytes.clone();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        std::fs::write(record(&d, 2), &b).expect("write");
        let r = verify(&d, &public);
        assert_eq!(r.code, Some(1), "{what} edited and accepted: {}", r.all());
        assert!(r.stdout.contains("record 2:"), "{what}: {}", r.all());
    }

    // Re-signed with another key.
    let other = pgdrill::testkit::evidence::keys::SigningKey::generate().expect("key");
    let env: pgdrill::testkit::evidence::dsse::Envelope = serde_json::from_slice(&bytes).expect("envelope");
    let payload = env.payload_bytes().expect("payload");
    let resigned = pgdrill::testkit::evidence::dsse::Envelope::sign(&env.payload_type, &payload, &other).expect("sign");
    let d = copy_of(&evidence, &t.path().join("resigned"));
    std::fs::write(record(&d, 2), resigned.to_bytes()).expect("write");
    let r = verify(&d, &public);
    assert!(r.stdout.contains("record 2: signed with another key"), "{}", r.all());

    // An old statement replayed as new: the passed verify put in as record 4.
    let d = copy_of(&evidence, &t.path().join("replayed"));
    std::fs::copy(record(&d, 2), record(&d, 4)).expect("copy");
    let r = verify(&d, &public);
    assert!(r.stdout.contains("record 4: replayed: its signed sequence is 2"), "{}", r.all());

    // Another key's public key: every record refused, and the stored one named as different.
    let r = verify(&evidence, &{
        let p = t.path().join("other.pub");
        std::fs::write(&p, other.public().pem()).expect("write");
        p
    });
    assert_eq!(r.code, Some(1));
    assert!(r.stdout.contains("public-key.pem beside the evidence"), "{}", r.all());
    s.stop().await;
}

/// A time-stamping authority on loopback: a CA, a TSA certificate it issued for time
/// stamping, and a thread answering RFC 3161 queries over HTTP with `openssl ts -reply`.
struct LocalTsa {
    url: String,
    ca: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LocalTsa {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn openssl_ok(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {}: {}", args.join(" "), common::text(&out.stderr));
}

fn local_tsa(dir: &Path) -> LocalTsa {
    use std::io::{BufRead, BufReader, Read, Write};
    std::fs::create_dir_all(dir).expect("mkdir");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
    openssl_ok(
        dir,
        &[
            &["req", "-x509", "-new"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=pgdrill test TSA CA", "-days", "2"],
        ]
        .concat(),
    );
    openssl_ok(
        dir,
        &[&["req", "-new"][..], &ec, &["-keyout", "tsa.key", "-out", "tsa.csr", "-subj", "/CN=pgdrill test TSA"]]
            .concat(),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=critical,timeStamping\n",
    )
    .expect("ext");
    common::ca_sign(dir, "tsa.csr", "tsa.pem", "ext.cnf");
    std::fs::write(dir.join("serial"), "01\n").expect("serial");
    std::fs::write(
        dir.join("tsa.cnf"),
        format!(
            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/serial\nsigner_cert = $dir/tsa.pem\ncerts = $dir/tsa.pem\nsigner_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\ndigests = sha256\naccuracy = secs:1\ness_cert_id_alg = sha256\n",
            dir.display()
        ),
    )
    .expect("tsa.cnf");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/tsa", listener.local_addr().expect("addr"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (stop2, dir2) = (stop.clone(), dir.to_path_buf());
    let thread = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((stream, _)) = listener.accept() else {
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            };
            stream.set_nonblocking(false).expect("blocking");
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            let mut line = String::new();
            let mut content_type = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if let Some(v) = lower.strip_prefix("content-type:") {
                    content_type = v.trim().to_string();
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            reader.read_exact(&mut body).expect("body");
            // The documented media type of an RFC 3161 query, else refused.
            let reply = if content_type == "application/timestamp-query" {
                std::fs::write(dir2.join("q.tsq"), &body).expect("query");
                let out = std::process::Command::new("openssl")
                    .args(["ts", "-reply", "-config", "tsa.cnf", "-queryfile", "q.tsq", "-out", "r.tsr"])
                    .current_dir(&dir2)
                    .output()
                    .expect("openssl ts -reply");
                out.status.success().then(|| std::fs::read(dir2.join("r.tsr")).expect("reply"))
            } else {
                None
            };
            let mut stream = stream;
            let _ = match reply {
                Some(r) => stream
                    .write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", r.len()).as_bytes())
                    .and_then(|_| stream.write_all(&r)),
                None => stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
            };
        }
    });
    LocalTsa { url, ca: dir.join("ca.pem"), stop, thread: Some(thread) }
}

#[test]
fn a_record_s_rfc3161_timestamp_from_a_local_tsa_verifies_and_its_loss_is_named() {
    if !require(on_path("openssl"), "the openssl command") {
        return;
    }
    let t = tempfile::tempdir().expect("tmp");
    let tsa = local_tsa(&t.path().join("tsa"));
    let key = t.path().join("k.pem");
    Run::cli(["keygen"]).arg(&key).expect(0);
    let runbook = tiny(t.path());
    let evidence = t.path().join("evidence");
    let timestamped = |ran: Ran, n: u32| {
        let appended = format!("evidence: signed statement {n} appended");
        assert!(ran.stderr.contains(&appended) && ran.stderr.contains("timestamped"), "{}", ran.all());
    };
    timestamped(Run::new(&runbook).signed(&key, &evidence).arg("--tsa").arg(&tsa.url).expect(0), 1);
    // The TSA from the notify file instead of the flag.
    let notify = t.path().join("notify.yaml");
    std::fs::write(&notify, format!("tsa: \"{}\"\n", tsa.url)).expect("notify");
    timestamped(Run::new(&runbook).signed(&key, &evidence).arg("--notify").arg(&notify).expect(0), 2);
    let public = t.path().join("k.pem.pub");
    let verify = |ca: &Path| common::verifying(&evidence, &public).arg("--tsa-ca").arg(ca).output();
    let ok = verify(&tsa.ca);
    assert_eq!(ok.code, Some(0), "{}", ok.all());
    assert!(ok.stdout.contains("2 RFC 3161 timestamps verified"), "{}", ok.all());

    // The auditor's script checks it with openssl alone.
    let pack = t.path().join("pack.tar");
    Run::cli(["evidence", "pack", "--from", "2000-01-01", "--to", "2100-01-01", "--evidence"])
        .arg(&evidence)
        .arg(&pack)
        .expect(0);
    let unpacked = t.path().join("unpacked");
    tar::Archive::new(std::fs::File::open(&pack).expect("pack")).unpack(&unpacked).expect("untar");
    let out = std::process::Command::new("sh")
        .arg(unpacked.join("verify.sh"))
        .arg(&public)
        .arg(&tsa.ca)
        .output()
        .expect("sh");
    assert!(out.status.success(), "{}{}", common::text(&out.stdout), common::text(&out.stderr));
    assert!(common::text(&out.stdout).contains("records/00000001.dsse.json: signature ok, chain ok, timestamp ok"));

    // Another CA's view: the timestamp does not verify.
    let other = made_dir(t.path().join("other"));
    openssl_ok(
        &other,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "o.key",
            "-out",
            "o.pem",
            "-subj",
            "/CN=other",
            "-days",
            "2",
        ],
    );
    let r = verify(&other.join("o.pem"));
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(r.stdout.contains("record 1: its timestamp does not verify"), "{}", r.all());

    // The timestamp removed: named.
    std::fs::remove_file(evidence.join("records/00000001.tsr")).expect("rm");
    let r = verify(&tsa.ca);
    assert!(r.stdout.contains("record 1: it has no RFC 3161 timestamp"), "{}", r.all());
}

/// One request to the S3-compatible server as the account that published: the status and
/// the response's head and body as text.
fn s3(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    common::s3_request(port, method, path, headers)
}

#[test]
fn object_lock_keeps_published_evidence_from_deletion_and_a_bucket_without_it_is_refused() {
    let Some(moto) = common::moto() else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/locked-evidence", &[("x-amz-bucket-object-lock-enabled", "true")]).0, 200);
    assert_eq!(s3(port, "PUT", "/plain-evidence", &[]).0, 200);
    let (t, key, _) = keygen();
    let runbook = written(
        t.path().join("tiny.yaml"),
        "name: tiny\nkind: backup\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n",
    );
    let evidence = t.path().join("evidence");
    for _ in 0..2 {
        Run::new(&runbook).signed(&key, &evidence).expect(0);
    }
    const SECRET: &str = "object-lock-secret-access-key-never-shown";
    let publish = |to: &str| {
        let mut run = Run::cli(["evidence", "publish"]).arg(&evidence);
        for a in ["--to", to, "--retain", "30d", "--mode", "governance"] {
            run = run.arg(a);
        }
        run.moto(port, SECRET).output()
    };
    // A bucket without Object Lock: refused, nothing written.
    let r = publish("s3://plain-evidence/prod");
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("plain-evidence: it has no Object Lock configuration"), "{}", r.all());
    assert!(s3(port, "GET", "/plain-evidence?list-type=2", &[]).1.contains("<KeyCount>0</KeyCount>"));

    let r = publish("s3://locked-evidence/prod");
    assert_eq!(r.code, Some(0), "{}", r.all());
    // The public key, two records, the two heads their runs published and the checkpoint.
    assert!(r.stdout.contains("6 objects written, 0 already there; retained (governance) until"), "{}", r.all());
    let newest_head = heads(&evidence).pop().expect("a head");
    let (status, head) = s3(port, "HEAD", &format!("/locked-evidence/prod/heads/{newest_head}"), &[]);
    assert!(status == 200 && head.to_ascii_lowercase().contains("x-amz-object-lock-mode: governance"), "{head}");
    assert!(!r.all().contains(SECRET));
    let (status, head) = s3(port, "HEAD", "/locked-evidence/prod/records/00000001.dsse.json", &[]);
    assert_eq!(status, 200, "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("x-amz-object-lock-mode: governance"), "{head}");
    let version = lower
        .lines()
        .find_map(|l| l.strip_prefix("x-amz-version-id:"))
        .map(|v| v.trim().to_string())
        .expect("a version id");
    // Deleting the record's version before the date is refused by the store.
    let (status, body) =
        s3(port, "DELETE", &format!("/locked-evidence/prod/records/00000001.dsse.json?versionId={version}"), &[]);
    assert_eq!(status, 403, "a locked record was deleted: {body}");
    assert_eq!(s3(port, "GET", "/locked-evidence/prod/records/00000001.dsse.json", &[]).0, 200);

    // Again: the records are there already; only the checkpoint is written (a new version).
    let r = publish("s3://locked-evidence/prod");
    assert!(r.stdout.contains("1 objects written, 5 already there"), "{}", r.all());
    drop(moto);
}

/// Regression (issue 42): an object-store `--report` or `--evidence` with a signing key was
/// refused ("the evidence log is a local directory"). The log is now written straight into
/// the store, one chain across runs, a failed run included, checked there by `evidence
/// verify`; into a bucket with Object Lock each record and the checkpoint are written with
/// retention (deleting the record's version is refused), and asking for retention on a
/// bucket without Object Lock stops the run before it starts.
#[test]
fn evidence_goes_straight_into_an_object_store_and_an_object_lock_bucket_keeps_each_record() {
    let Some(moto) = common::moto() else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/run-evidence", &[]).0, 200);
    assert_eq!(s3(port, "PUT", "/locked-runs", &[("x-amz-bucket-object-lock-enabled", "true")]).0, 200);
    let (t, key, public) = keygen();
    let runbook = |name: &str, cmd: &str| {
        let p = written(
            t.path().join(format!("{name}.yaml")),
            format!(
                "name: {name}\nkind: verify\nsteps:\n  - id: s\n    uses: shell.run\n    with: {{ argv: [{cmd}] }}\n"
            ),
        );
        p
    };
    let (ok, bad) = (runbook("fine", "\"true\""), runbook("broken", "\"false\""));
    const SECRET: &str = "store-evidence-secret-never-shown";
    let aws = |run: Run| run.moto(port, SECRET).env_remove("PGDRILL_EVIDENCE");
    let signed = |rb: &Path| aws(Run::new(rb).arg("--signing-key").arg(&key));

    // --report s3://...: the evidence goes to its evidence/, three runs, the middle one failing.
    for (rb, code) in [(&ok, 0), (&bad, 1), (&ok, 0)] {
        let r = signed(rb).arg("--report").arg("s3://run-evidence/reports").expect(code);
        assert!(r.stderr.contains("appended to s3://run-evidence/reports/evidence/records/"), "{}", r.all());
        assert!(!r.all().contains(SECRET), "{}", r.all());
    }
    let listing = s3(port, "GET", "/run-evidence?list-type=2&prefix=reports/evidence/", &[]).1;
    for name in [
        "records/00000001.dsse.json",
        "records/00000002.dsse.json",
        "records/00000003.dsse.json",
        "checkpoint.dsse.json",
        "public-key.pem",
    ] {
        assert!(listing.contains(&format!("reports/evidence/{name}")), "{name} not in the store: {listing}");
    }
    let verify_store = |location: &str| aws(common::verifying(location, &public)).output();
    let v = verify_store("s3://run-evidence/reports/evidence");
    assert_eq!(v.code, Some(0), "{}", v.all());
    // Regression (issue 42): `evidence pack` read local directories only, so a log kept in a
    // store had to be copied out by hand first. It packs from the store, checked as `verify`
    // checks it, and the auditor's script accepts the pack.
    let pack_store = |location: &str, out: &Path| aws(packing(&public, location, out)).output();
    let pack = t.path().join("store-pack.tar");
    let p = pack_store("s3://run-evidence/reports/evidence", &pack);
    assert_eq!(p.code, Some(0), "{}", p.all());
    assert!(p.stdout.contains("3 records in the period"), "{}", p.all());
    assert!(!p.all().contains(SECRET), "{}", p.all());
    let unpacked = t.path().join("store-pack");
    tar::Archive::new(std::fs::File::open(&pack).expect("pack")).unpack(&unpacked).expect("untar");
    for n in 1..=3 {
        assert!(unpacked.join(format!("records/{n:08}.dsse.json")).is_file(), "record {n} in the pack");
    }
    let script = std::process::Command::new("sh").arg(unpacked.join("verify.sh")).arg(&public).output().expect("sh");
    assert!(script.status.success(), "{}{}", common::text(&script.stdout), common::text(&script.stderr));
    // The failed run's record removed from the store is named.
    assert_eq!(s3(port, "DELETE", "/run-evidence/reports/evidence/records/00000002.dsse.json", &[]).0, 204);
    let v = verify_store("s3://run-evidence/reports/evidence");
    assert_eq!(v.code, Some(1), "{}", v.all());
    assert!(v.stdout.contains("record 2: missing: the failed verify `broken`"), "{}", v.all());
    // ... and a pack of that log is refused, naming it.
    let refused = t.path().join("refused.tar");
    let p = pack_store("s3://run-evidence/reports/evidence", &refused);
    assert_eq!(p.code, Some(1), "{}", p.all());
    assert!(p.stdout.contains("record 2: missing"), "{}", p.all());
    assert!(p.stdout.contains("s3://run-evidence/reports/evidence"), "the store named, not a copy: {}", p.all());
    assert!(!refused.exists(), "nothing written under the pack's name");

    // Retention asked of a bucket without Object Lock: refused before the run (exit 2).
    let r = signed(&ok).arg("--evidence").arg("s3://run-evidence/other").arg("--evidence-retain").arg("30d").output();
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("run-evidence: it has no Object Lock configuration"), "{}", r.all());

    // Straight into an Object Lock bucket: every record and the checkpoint retained.
    for (rb, code) in [(&ok, 0), (&bad, 1)] {
        signed(rb)
            .arg("--evidence")
            .arg("s3://locked-runs/prod")
            .arg("--evidence-retain")
            .arg("30d")
            .arg("--evidence-lock-mode")
            .arg("governance")
            .expect(code);
    }
    // The heads the two runs published too: deleting one's version is refused as a record's is.
    let listing = s3(port, "GET", "/locked-runs?list-type=2&prefix=prod/heads/", &[]).1;
    let heads: Vec<String> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .map(|k| k.trim_start_matches("prod/").to_string())
        .collect();
    assert_eq!(heads.len(), 2, "{listing}");
    let fixed = ["records/00000001.dsse.json", "records/00000002.dsse.json", "checkpoint.dsse.json", "public-key.pem"];
    for name in fixed.iter().map(|n| n.to_string()).chain(heads) {
        let (status, head) = s3(port, "HEAD", &format!("/locked-runs/prod/{name}"), &[]);
        assert_eq!(status, 200, "{name}: {head}");
        let lower = head.to_ascii_lowercase();
        assert!(lower.contains("x-amz-object-lock-mode: governance"), "{name}: {head}");
        assert!(lower.contains("x-amz-object-lock-retain-until-date:"), "{name}: {head}");
        if name.starts_with("records/") || name.starts_with("heads/") {
            let version = lower
                .lines()
                .find_map(|l| l.strip_prefix("x-amz-version-id:"))
                .map(|v| v.trim().to_string())
                .expect("a version id");
            let (status, body) = s3(port, "DELETE", &format!("/locked-runs/prod/{name}?versionId={version}"), &[]);
            assert_eq!(status, 403, "a locked {name} was deleted: {body}");
        }
    }
    let v = verify_store("s3://locked-runs/prod");
    assert_eq!(v.code, Some(0), "{}", v.all());

    // Four runs at once into one store log: the store's conditional create lets one take
    // each sequence number, the others stage again, and the chain does not fork.
    let children: Vec<_> = (0..4)
        .map(|_| signed(&ok).arg("--evidence").arg("s3://run-evidence/race").command().spawn().expect("a run starts"))
        .collect();
    for mut c in children {
        assert!(c.wait().expect("the run ends").success());
    }
    let v = verify_store("s3://run-evidence/race");
    assert_eq!(v.code, Some(0), "{}", v.all());
    let listing = s3(port, "GET", "/run-evidence?list-type=2&prefix=race/records/", &[]).1;
    assert!(listing.contains("<KeyCount>4</KeyCount>"), "{listing}");
    drop(moto);
}

/// Attacks on a local log by its own runs (issue 42): four pgdrill processes appending to
/// one log at once make one chain of four (no fork, none lost); a run killed with -9 while
/// it holds the log's lock, before its record and then between its record and its
/// checkpoint, blocks no later run, and the log verifies each time (the second kill leaves a
/// signed, chained record the checkpoint does not cover yet: a note, no problem, until the
/// next run re-signs the checkpoint).
#[test]
fn concurrent_runs_and_runs_killed_mid_append_leave_one_verifiable_chain() {
    let (t, key, public) = keygen();
    let runbook = tiny(t.path());
    let evidence = t.path().join("evidence");
    let signed = || Run::new(&runbook).signed(&key, &evidence);
    let children: Vec<_> = (0..4)
        .map(|_| {
            signed()
                .command()
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("a run starts")
        })
        .collect();
    for mut c in children {
        assert!(c.wait().expect("the run ends").success());
    }
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(v.stdout.contains(": 4 records"), "{}", v.all());
    let older = std::fs::read(evidence.join("checkpoint.dsse.json")).expect("the checkpoint at 4");

    for (phase, records) in [("evidence-chained", 4), ("evidence-record-written", 6)] {
        let flag = t.path().join(phase);
        common::kill_paused_at(signed().command(), phase, &flag);
        let v = verify(&evidence, &public);
        assert_eq!(v.code, Some(0), "{phase}: {}", v.all());
        assert!(v.stdout.contains(&format!(": {records} records")), "{phase}: {}", v.all());
        if phase == "evidence-record-written" {
            assert!(
                v.stdout.contains("note: checkpoint.dsse.json covers records 1 to 5; records 6 to 6"),
                "{}",
                v.all()
            );
        }
        // Nothing half-written under a record's name, and the next run is not blocked.
        let names: Vec<String> = std::fs::read_dir(evidence.join("records"))
            .expect("records")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| n.ends_with(".dsse.json")), "{phase}: {names:?}");
        let r = signed().expect(0);
        assert!(r.stderr.contains(&format!("evidence: signed statement {} appended", records + 1)), "{}", r.all());
    }
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(v.stdout.contains(": 7 records") && !v.stdout.contains("note:"), "{}", v.all());

    // The log cut off at its end (records 5 to 7 removed) and the checkpoint at 4 put back:
    // the log alone verifies; held to the checkpoint an auditor kept (the one at 7), the cut
    // is named, exit 1.
    let kept = t.path().join("kept-checkpoint.dsse.json");
    std::fs::copy(evidence.join("checkpoint.dsse.json"), &kept).expect("keep");
    cut_back(&evidence, 5..=7, &older);
    // The head run 7 published (never replaced) names the cut; with the heads of the records
    // cut removed too, the log alone cannot show it.
    let v = verify(&evidence, &public);
    assert!(v.code == Some(1) && v.stdout.contains("record 7: missing: the head heads/00000007-"), "{}", v.all());
    remove_heads_from(&evidence, 5);
    assert_eq!(verify(&evidence, &public).code, Some(0), "the log alone cannot show the cut");
    let r = common::verifying(&evidence, &public).arg("--checkpoint").arg(&kept).output();
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stdout.contains("record 7: missing: the kept checkpoint")
            && r.stdout.contains("counts 7 records, this log holds 4"),
        "{}",
        r.all()
    );
}

/// A whole log replaced by another database's log signed with the same key (issue 42): the
/// log of `staging` copied over the log of `payments`, every file of it. Each record was
/// signed and chained, so `evidence verify` said ok; it names the swap now, with both
/// locations, and with `--database` both databases. A log that moved verifies with its earlier
/// location given.
#[test]
fn a_whole_log_replaced_by_another_database_s_log_under_the_same_key_is_named() {
    let (t, key, public) = keygen();
    let runbook = written(t.path().join("tiny.yaml"), "name: tiny\nkind: verify\nvars:\n  database: \"\"\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n");
    let (payments, staging) = (t.path().join("payments/evidence"), t.path().join("staging/evidence"));
    for (dir, db, runs) in [(&payments, "payments", 2), (&staging, "staging", 3)] {
        for _ in 0..runs {
            Run::new(&runbook).signed(&key, dir).var("database", db).expect(0);
        }
    }
    let r = common::verifying(&payments, &public).arg("--database").arg("payments").output();
    assert_eq!(r.code, Some(0), "{}", r.all());

    std::fs::remove_dir_all(&payments).expect("rm");
    copy_of(&staging, &payments);
    let r = common::verifying(&payments, &public).arg("--database").arg("payments").output();
    assert_eq!(r.code, Some(1), "the swapped log verified: {}", r.all());
    let (p, s) = (
        std::fs::canonicalize(&payments).expect("p").display().to_string(),
        std::fs::canonicalize(&staging).expect("s").display().to_string(),
    );
    assert!(
        r.stdout.contains(&format!("record 1: another location's log: records 1 to 3 were appended at {s}"))
            && r.stdout.contains(&format!("not here at {p}")),
        "{}",
        r.all()
    );
    assert!(
        r.stdout.contains("records 1 to 3 are runs of database `staging`, not of `payments` (--database)"),
        "{}",
        r.all()
    );
    // Moved, not swapped: its earlier location given, the log verifies.
    let r = common::verifying(&payments, &public).arg("--location").arg(&staging).output();
    assert_eq!(r.code, Some(0), "{}", r.all());
}

/// A log cut at its end with no checkpoint kept anywhere (issue 42): the last two records
/// (one a failed run) removed and the older checkpoint put back verified clean. Each run's
/// history line (the ledger beside a `--report`'s evidence) now carries the head it appended,
/// and `evidence verify` holds the log to the newest one it finds there: the cut is named.
/// A cut that also removes those ledger lines is not seen (README says so).
#[test]
fn a_log_cut_at_its_end_without_a_kept_checkpoint_is_named_against_the_ledger_its_runs_anchored() {
    let (t, key, public) = keygen();
    let (ok, broken) = ok_and_broken(t.path());
    let reports = t.path().join("reports");
    let run = |rb: &Path| Run::new(rb).arg("--signing-key").arg(&key).arg("--report").arg(&reports).output();
    for _ in 0..2 {
        assert_eq!(run(&ok).code, Some(0));
    }
    let evidence = reports.join("evidence");
    let older = std::fs::read(evidence.join("checkpoint.dsse.json")).expect("the checkpoint at 2");
    assert_eq!(run(&broken).code, Some(1));
    assert_eq!(run(&ok).code, Some(0));
    let history = std::fs::read_to_string(reports.join("history.jsonl")).expect("ledger");
    let last: serde_json::Value = serde_json::from_str(history.lines().last().expect("a line")).expect("json");
    assert_eq!(last["evidence"]["sequence"], serde_json::json!(4), "{last}");
    assert_eq!(
        last["evidence"]["location"].as_str(),
        Some(std::fs::canonicalize(&evidence).expect("canonical").display().to_string().as_str()),
        "{last}"
    );
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.contains("compared, UNAUTHENTICATED (can show a cut, never prove none), with the ledger")
            && v.stdout.contains("record 4 (line 4)"),
        "{}",
        v.all()
    );

    // (Exit 1 here: no drill ran, so the history is stale; the evidence is no problem yet.)
    let report = Run::cli(["report"]).arg(&reports).output();
    assert!(!report.stderr.contains("missing"), "{}", report.all());

    cut_back(&evidence, [3, 4], &older);
    // `pgdrill report` sees it too.
    let report = Run::cli(["report"]).arg(&reports).output();
    assert_eq!(report.code, Some(1), "{}", report.all());
    assert!(
        report.stderr.contains("record 4: missing: the ledger history.jsonl (line 4")
            && report.stderr.contains("record 4: missing: the head heads/00000004-"),
        "{}",
        report.all()
    );
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(1), "the cut log verified: {}", v.all());
    assert!(
        v.stdout.contains("record 4: missing: the ledger")
            && v.stdout.contains("history.jsonl (line 4, the passed verify `ok` that finished at")
            && v.stdout.contains("this log holds 2: records were cut off its end"),
        "{}",
        v.all()
    );
    // The ledger given by hand says the same; with its anchoring lines cut too, the last run's
    // run.json beside it still names the cut; with that gone as well, the cut is not seen
    // (what anchors kept beside the evidence cannot protect against).
    let cut = t.path().join("cut-history.jsonl");
    std::fs::write(&cut, history.lines().take(2).map(|l| format!("{l}\n")).collect::<String>()).expect("cut");
    let by_hand = || common::verifying(&evidence, &public).arg("--ledger").arg(&cut).output();
    let r = by_hand();
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(r.stdout.contains("record 4: missing: the run.json") && !r.stdout.contains("the ledger"), "{}", r.all());
    std::fs::remove_file(reports.join("run.json")).expect("rm");
    // The head the last run published still names it; with the heads of the records cut
    // removed as well, it is not seen.
    let r = by_hand();
    assert!(r.code == Some(1) && r.stdout.contains("record 4: missing: the head heads/00000004-"), "{}", r.all());
    remove_heads_from(&evidence, 3);
    let r = by_hand();
    assert_eq!(r.code, Some(0), "{}", r.all());
}

/// A run killed with -9 while it writes the checkpoint of a local log, and while it appends
/// to a log in an object store (moto): staged but nothing created, then its record created
/// and the store's checkpoint not yet replaced, then the checkpoint replaced and its head not
/// yet published (issue 42). Each time nothing half-written is under a final name (records
/// are whole envelopes, the checkpoint verifies), the log verifies (a checkpoint one record
/// behind is a note, records with no head are said anchored by nothing yet), and the next run
/// continues the one chain, re-signs the checkpoint and publishes its head.
#[test]
fn runs_killed_while_writing_the_checkpoint_or_appending_to_a_store_leave_one_verifiable_chain() {
    let (t, key, public) = keygen();
    let runbook = tiny(t.path());

    // A local log: the kill lands between the new checkpoint's temporary and its rename.
    let evidence = t.path().join("evidence");
    let signed = |to: &str| Run::new(&runbook).signed(&key, to);
    let local = evidence.display().to_string();
    signed(&local).expect(0);
    let phase = "evidence-checkpoint-temporary";
    common::kill_paused_at(signed(&local).command(), phase, &t.path().join(phase));
    let temporaries = common::names_in(&evidence, |n| n.starts_with(".evidence-"));
    assert_eq!(temporaries.len(), 1, "the kill did not land mid-write: {temporaries:?}");
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(v.stdout.contains("covers records 1 to 1; records 2 to 2 were appended after it"), "{}", v.all());
    let r = signed(&local).expect(0);
    assert!(r.stderr.contains("evidence: signed statement 3 appended"), "{}", r.all());
    let v = verify(&evidence, &public);
    assert!(v.code == Some(0) && v.stdout.contains(": 3 records") && !v.stdout.contains("note:"), "{}", v.all());

    // A log in a store.
    let Some(moto) = common::moto() else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/killed-evidence", &[]).0, 200);
    let aws = |run: Run| run.moto(port, "testing").env_remove("PGDRILL_EVIDENCE");
    let store = "s3://killed-evidence/prod";
    let keys = || {
        let listing = s3(port, "GET", "/killed-evidence?list-type=2&prefix=prod/", &[]).1;
        let mut keys: Vec<String> = listing
            .split("<Key>")
            .skip(1)
            .filter_map(|k| k.split("</Key>").next())
            .map(|k| k.trim_start_matches("prod/").to_string())
            .collect();
        keys.sort();
        keys
    };
    let verify_store = || aws(common::verifying(store, &public)).output();
    aws(signed(store)).expect(0);
    let phases =
        [("evidence-chained", 1), ("evidence-store-record-created", 2), ("evidence-store-checkpoint-written", 3)];
    for (phase, records) in phases {
        common::kill_paused_at(aws(signed(store)).command(), phase, &t.path().join(phase));
        let keys = keys();
        let recs: Vec<&String> = keys.iter().filter(|k| k.starts_with("records/")).collect();
        assert_eq!(recs.len(), records, "{phase}: {keys:?}");
        assert!(
            keys.iter().all(|k| ["public-key.pem", "checkpoint.dsse.json"].contains(&k.as_str())
                || ((k.starts_with("records/") || k.starts_with("heads/")) && k.ends_with(".dsse.json"))),
            "{phase}: something else under the log's names: {keys:?}"
        );
        let v = verify_store();
        assert_eq!(v.code, Some(0), "{phase}: {}", v.all());
        assert!(v.stdout.contains(&format!(": {records} records")), "{phase}: {}", v.all());
        if records == 2 {
            assert!(v.stdout.contains("covers records 1 to 1; records 2 to 2"), "{}", v.all());
        }
        // Killed after its checkpoint, before its head: no false failure, said unanchored.
        if records == 3 {
            assert!(v.stdout.contains("BUT records 2 to 3 (the newest) are anchored by nothing yet"), "{}", v.all());
        }
    }
    let r = aws(signed(store)).expect(0);
    assert!(r.stderr.contains("evidence: signed statement 4 appended to s3://killed-evidence/prod/"), "{}", r.all());
    let v = verify_store();
    assert!(
        v.code == Some(0)
            && v.stdout.contains(": 4 records")
            && !v.stdout.contains("note:")
            && !v.stdout.contains("BUT"),
        "{}",
        v.all()
    );
    drop(moto);
}

/// A log cut at its end for runs with `--evidence` and no `--report` (issue 42): no ledger
/// line anchored their records, so the last records removed and an older checkpoint put back
/// verified clean. Each backup's manifest now carries, under the backup key's MAC, the log's
/// head as its run found it, and a run's run.json the head it appended: `evidence verify`
/// reads the manifests of the storage the records name and a run.json given with
/// `--run-json`, and names the cut with the anchor that shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_cut_at_its_end_for_runs_without_a_report_is_named_against_the_manifests_and_run_json_they_anchored() {
    let Some(ThreeBackups { _server, t, storage, evidence, key, public, older }) = three_backups().await else {
        return;
    };
    // The manifests: the first backup's log was empty; each later one anchors the head before
    // its own run's record (records 1 and 2), the log's location named as its records name it.
    let mut anchors: Vec<serde_json::Value> = std::fs::read_dir(storage.join("shop"))
        .expect("storage")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".manifest.json"))
        .map(|e| common::read_json(&e.path())["evidence"].clone())
        .collect();
    anchors.sort_by_key(|a| a["sequence"].as_u64());
    assert_eq!(anchors.len(), 3, "{anchors:?}");
    assert!(anchors[0].is_null(), "{anchors:?}");
    let here = std::fs::canonicalize(&evidence).expect("canonical").display().to_string();
    assert_eq!(anchors[2]["sequence"], serde_json::json!(2), "{anchors:?}");
    assert_eq!(anchors[2]["location"].as_str(), Some(here.as_str()), "{anchors:?}");
    let two = pgdrill::testkit::evidence::keys::sha256_hex(&std::fs::read(record(&evidence, 2)).expect("record 2"));
    assert_eq!(anchors[2]["record_sha256"].as_str(), Some(two.as_str()), "{anchors:?}");

    // A fourth run with its report elsewhere: its run.json anchors the head it appended.
    let tiny = tiny(t.path());
    let reports = t.path().join("reports");
    Run::new(&tiny).signed(&key, &evidence).arg("--report").arg(&reports).expect(0);
    let run_json = reports.join("run.json");
    let anchored = common::read_json(&run_json)["evidence"].clone();
    assert_eq!(anchored["sequence"], serde_json::json!(4), "{anchored}");
    assert_eq!(anchored["location"].as_str(), Some(here.as_str()), "{anchored}");

    let verify_all = || common::verifying(&evidence, &public).arg("--run-json").arg(&run_json).key(KEY).output();
    verify_all().says(
        0,
        &[
            "held to the backup manifests: the newest anchor of this log, record 2 (",
            "authenticated under the backup key), is there unchanged",
            "compared, UNAUTHENTICATED (can show a cut, never prove none), with the run.json",
            "record 4, is there unchanged",
        ],
    );

    // Records 2 to 4 cut, the checkpoint at 1 put back: the log alone verifies.
    cut_back(&evidence, 2..=4, &older);
    // The backups' manifests anchor record 2, and name it (without the backup key: said
    // unauthenticated).
    common::verifying(&evidence, &public).output().says(
        1,
        &[
            "record 2: missing: the manifest ",
            "(a backup of database `shop` finished at ",
            "its MAC not checked here: no backup key given) anchors record 2 with sha256 ",
            "this log holds 1: records were cut off its end",
        ],
    );
    verify_all().says(
        1,
        &[
            "record 2: missing: the manifest ",
            "authenticated under the backup key) anchors record 2",
            &format!(
                "record 4: missing: the run.json {} (the passed verify `tiny` that finished at ",
                run_json.display()
            ),
        ],
    );
    // A manifest whose anchor was edited (to name the cut log's head) fails its MAC under the
    // key, and its anchor is not used: said, and the run.json still names the cut.
    for e in std::fs::read_dir(storage.join("shop")).expect("storage").flatten() {
        let p = e.path();
        if p.to_string_lossy().ends_with(".manifest.json") {
            let mut m = common::read_json(&p);
            if m["evidence"]["sequence"] == serde_json::json!(2) {
                m["evidence"]["sequence"] = serde_json::json!(1);
                std::fs::write(&p, serde_json::to_vec_pretty(&m).expect("json")).expect("edit");
            }
        }
    }
    verify_all()
        .says(1, &["fails authentication", "its evidence anchor is not used", "record 4: missing: the run.json"]);
}

/// `pgdrill report` on a report kept in an object store (issue 42): its history's runs
/// anchored the evidence log's head, but the report read the evidence of a local folder only,
/// so a cut log in a bucket passed unseen. It reads the store's evidence/ now and says what it
/// says of a local folder: the cut named against the ledger, exit 1.
#[test]
fn a_report_kept_in_an_object_store_names_a_cut_evidence_log_as_a_local_one_does() {
    let Some(moto) = common::moto() else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/cut-reports", &[]).0, 200);
    let t = tempfile::tempdir().expect("tmp");
    let key = t.path().join("k.pem");
    Run::cli(["keygen"]).arg(&key).expect(0);
    let (ok, broken) = ok_and_broken(t.path());
    const SECRET: &str = "cut-report-secret-never-shown";
    const AT: &str = "s3://cut-reports/team";
    let aws = |run: Run| run.moto(port, SECRET).env_remove("PGDRILL_EVIDENCE");
    let run =
        |rb: &Path, code: i32| aws(Run::new(rb).arg("--signing-key").arg(&key).arg("--report").arg(AT)).expect(code);
    run(&ok, 0);
    // The checkpoint at 1, kept aside in the bucket to be put back later.
    let copy = [("x-amz-copy-source", "/cut-reports/team/evidence/checkpoint.dsse.json")];
    assert_eq!(s3(port, "PUT", "/cut-reports/aside/checkpoint-1", &copy).0, 200);
    run(&broken, 1);
    run(&ok, 0);
    let report = || aws(Run::cli(["report", AT])).output();
    let r = report();
    assert!(!r.stderr.contains("missing"), "{}", r.all());

    for n in [2, 3] {
        assert_eq!(s3(port, "DELETE", &format!("/cut-reports/team/evidence/records/{n:08}.dsse.json"), &[]).0, 204);
    }
    let back = [("x-amz-copy-source", "/cut-reports/aside/checkpoint-1")];
    assert_eq!(s3(port, "PUT", "/cut-reports/team/evidence/checkpoint.dsse.json", &back).0, 200);
    let r = report();
    assert_eq!(r.code, Some(1), "{}", r.all());
    assert!(
        r.stderr
            .contains("record 3: missing: the ledger history.jsonl (line 3, the passed verify `ok` that finished at")
            && r.stderr.contains("this log holds 1: records were cut off its end")
            && r.stderr.contains(&format!("FAILED: {AT}/evidence")),
        "{}",
        r.all()
    );
    assert!(!r.all().contains(SECRET), "{}", r.all());
    drop(moto);
}

/// `evidence pack` of a log swapped in from another location (issue 42): `evidence verify`
/// names it, but the pack checked the chain alone and packed it as whole. It holds the log to
/// its location now and refuses, naming both; and the pack's verify.sh checks each record's
/// signed location against the pack's locations.txt, so records of another log put into a
/// pack fail the auditor's openssl check too.
#[test]
fn a_pack_of_a_log_swapped_in_from_another_location_is_refused_and_its_verify_sh_names_a_swap() {
    let t = tempfile::tempdir().expect("tmp");
    let (key, public) = key_pair(t.path(), "k.pem");
    let runbook = t.path().join("tiny.yaml");
    std::fs::write(
        &runbook,
        "name: tiny\nkind: verify\nvars:\n  database: \"\"\nsteps:\n  - id: s\n    uses: sleep\n    with: { duration: 0s }\n",
    )
    .expect("runbook");
    let (payments, staging) = (t.path().join("payments/evidence"), t.path().join("staging/evidence"));
    for (dir, db, runs) in [(&payments, "payments", 2), (&staging, "staging", 2)] {
        for _ in 0..runs {
            Run::new(&runbook).signed(&key, dir).var("database", db).expect(0);
        }
    }
    let pack = |dir: &Path, out: &Path| packing(&public, dir, out).output();
    let unpack = |tar: &Path, to: &Path| {
        tar::Archive::new(std::fs::File::open(tar).expect("pack")).unpack(to).expect("untar");
    };
    let verify_sh = |dir: &Path| {
        let o = std::process::Command::new("sh").arg(dir.join("verify.sh")).arg(&public).output().expect("sh");
        (o.status.success(), format!("{}{}", common::text(&o.stdout), common::text(&o.stderr)))
    };
    // The log's own pack: verify.sh checks each record's location.
    let good = t.path().join("payments.tar");
    assert_eq!(pack(&payments, &good).code, Some(0));
    let good_dir = t.path().join("payments-pack");
    unpack(&good, &good_dir);
    let (ok, out) = verify_sh(&good_dir);
    assert!(ok && out.contains("records/00000002.dsse.json: signature ok, chain ok, location ok"), "{out}");

    // Staging's log swapped in: the pack is refused, naming where its records were appended.
    let kept = t.path().join("payments-own");
    std::fs::rename(&payments, &kept).expect("keep");
    copy_of(&staging, &payments);
    let swapped = t.path().join("swapped.tar");
    let r = pack(&payments, &swapped);
    assert_eq!(r.code, Some(1), "the swapped log was packed: {}", r.all());
    let s = std::fs::canonicalize(&staging).expect("s").display().to_string();
    assert!(
        r.stdout.contains(&format!("record 1: another location's log: records 1 to 2 were appended at {s}"))
            && r.stderr.contains("not packed"),
        "{}",
        r.all()
    );
    assert!(!swapped.exists(), "nothing written under the pack's name");

    // Staging's records put into payments' pack: verify.sh names each.
    for n in 1..=2 {
        std::fs::copy(record(&staging, n), record(&good_dir, n)).expect("swap");
    }
    std::fs::copy(staging.join("checkpoint.dsse.json"), good_dir.join("checkpoint.dsse.json")).expect("swap");
    let (ok, out) = verify_sh(&good_dir);
    assert!(!ok, "{out}");
    assert!(out.contains("records/00000001.dsse.json: signature ok, chain ok, location BAD (appended at a location locations.txt does not name"), "{out}");
}

/// Regression (issue 42): the manifests of backups kept in an object store anchor the log's
/// head too, but `evidence verify` did not authenticate them (their MAC needs the archive's
/// header, which was read from local files only): an anchor read from a bucket was used and
/// said "its MAC not checked here: in an object store", even with the backup key given. The
/// header is now read with a ranged read of the archive's first bytes through the store and
/// each manifest authenticated under `PGDRILL_BACKUP_KEY` as a local one is; one that fails
/// (another backup's manifest copied over it) is not used, saying so.
#[tokio::test(flavor = "multi_thread")]
async fn manifests_in_an_object_store_were_used_as_anchors_unauthenticated_and_now_are_authenticated_under_the_key() {
    let Some(moto) = common::moto() else { return };
    let Some(s) = common::native_server("shop").await else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/anchors", &[]).0, 200);
    common::exec(&s.url(), "create table t (id int primary key); insert into t values (1), (2)").await;
    let t = tempfile::tempdir().expect("tmp");
    let evidence = t.path().join("evidence");
    let (key, public) = key_pair(t.path(), "signing.pem");
    const SECRET: &str = "anchors-in-a-bucket-secret";
    let older = three_signed_runs(
        || Run::new("backup").var("database_url", s.url()).var("storage", "s3://anchors/prod").moto(port, SECRET),
        &key,
        &evidence,
    );
    // Records 2 and 3 cut, the checkpoint at 1 put back: the log alone verifies.
    cut_back(&evidence, 2..=3, &older);
    let verify = |with_key: bool| {
        let run = Run::cli(["evidence", "verify"]).arg(&evidence).arg("--public-key").arg(&public).moto(port, SECRET);
        let run = if with_key { run.key(KEY) } else { run.env_remove("PGDRILL_BACKUP_KEY") };
        run.output()
    };
    // With the key: the bucket's manifest anchoring record 2 is authenticated, and names the cut.
    let v = verify(true);
    assert_eq!(v.code, Some(1), "{}", v.all());
    assert!(
        v.stdout.contains("record 2: missing: the manifest s3://anchors/prod/shop/")
            && v.stdout.contains("authenticated under the backup key) anchors record 2 with sha256 ")
            && !v.stdout.contains("in an object store"),
        "{}",
        v.all()
    );
    assert!(!v.all().contains(SECRET) && !v.all().contains(KEY), "{}", v.all());
    // Without it: used, and said unauthenticated.
    let v = verify(false);
    assert_eq!(v.code, Some(1), "{}", v.all());
    assert!(v.stdout.contains("its MAC not checked here: no backup key given) anchors record 2"), "{}", v.all());

    // Another backup's manifest (anchoring record 1) copied over the one anchoring record 2:
    // it fails its MAC under the key (its nonce prefix is another archive's) and is not used.
    let listing = s3(port, "GET", "/anchors?list-type=2&prefix=prod/shop/", &[]).1;
    let manifests: Vec<String> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .filter(|k| k.ends_with(".manifest.json"))
        .map(str::to_string)
        .collect();
    assert_eq!(manifests.len(), 3, "{listing}");
    let anchored = |k: &str| {
        let (status, body) = s3(port, "GET", &format!("/anchors/{k}"), &[]);
        assert_eq!(status, 200, "{body}");
        let json = &body[body.find('{').expect("a manifest's JSON")..];
        serde_json::from_str::<serde_json::Value>(json).expect("json")["evidence"]["sequence"].as_u64()
    };
    let of = |n: u64| manifests.iter().find(|k| anchored(k) == Some(n)).expect("a manifest anchoring it").clone();
    let (one, two) = (of(1), of(2));
    let from = format!("/anchors/{one}");
    assert_eq!(s3(port, "PUT", &format!("/anchors/{two}"), &[("x-amz-copy-source", &from)]).0, 200);
    let v = verify(true);
    assert!(
        v.stdout.contains(&format!("s3://anchors/{two}: fails authentication"))
            && v.stdout.contains("its evidence anchor is not used"),
        "{}",
        v.all()
    );
    drop(moto);
}

/// Regression (issue 42): `evidence pack` checked the log's chain and its location but not the
/// anchors `evidence verify` holds it to, so a log cut at its end with an older checkpoint put
/// back was packed as whole (exit 0) while verify named the cut against the ledger. The pack
/// now holds the log to the same anchors and refuses, naming the anchor; a pack it writes
/// carries anchors.txt (what was checked, and the newest records no anchor names yet), which
/// verify.sh prints. A record no anchor names is said plainly by verify too, never a bare ok.
#[test]
fn a_pack_of_a_log_cut_at_its_end_was_written_whole_and_now_is_refused_against_the_anchors_verify_uses() {
    let ThreeReported { t, key, public, tiny, evidence, older, .. } = three_reported_runs(1);
    // A fourth run with --evidence only: no ledger line, run.json or manifest anchors it, and
    // its head is gone (as a run killed before publishing it leaves it).
    Run::new(&tiny).signed(&key, &evidence).expect(0);
    remove_heads_from(&evidence, 4);
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.lines().next().unwrap_or("").contains(
            "BUT record 4 (the newest) is anchored by nothing yet (no published head, authenticated backup manifest or kept checkpoint names it): a cut of it cannot be told until a later run anchors it"
        ) && v.stdout.contains("compared, UNAUTHENTICATED (can show a cut, never prove none), with the ledger "),
        "{}",
        v.all()
    );
    let pack = |out: &Path| packing(&public, &evidence, out).output();
    // The whole log's pack: anchors.txt says what it was held to and what no anchor covers.
    let good = t.path().join("good.tar");
    let p = pack(&good);
    assert_eq!(p.code, Some(0), "{}", p.all());
    let unpacked = t.path().join("good");
    tar::Archive::new(std::fs::File::open(&good).expect("pack")).unpack(&unpacked).expect("untar");
    let anchors = std::fs::read_to_string(unpacked.join("anchors.txt")).expect("anchors.txt in the pack");
    assert!(
        anchors.contains("compared, UNAUTHENTICATED (can show a cut, never prove none): the ledger ")
            && anchors.contains("its newest anchor of this log, record 3 (line 3), is there unchanged")
            && anchors.contains("compared, UNAUTHENTICATED (can show a cut, never prove none): the run.json ")
            && anchors.contains("checked: held to the newest head its appends published, heads/00000003-")
            && anchors.contains("NOT PROVEN: record 4 (the newest) is anchored by nothing yet"),
        "{anchors}"
    );
    let o = std::process::Command::new("sh").arg(unpacked.join("verify.sh")).arg(&public).output().expect("sh");
    let out = format!("{}{}", common::text(&o.stdout), common::text(&o.stderr));
    assert!(
        o.status.success()
            && out.contains("anchors checked by pgdrill evidence pack when packing:")
            && out.contains("  compared, UNAUTHENTICATED (can show a cut, never prove none): the ledger ")
            && out.contains("  NOT PROVEN: record 4 (the newest)"),
        "{out}"
    );

    // Records 2 to 4 cut, the checkpoint at 1 put back: the log alone is whole, the ledger's
    // line 3 anchors record 3. The pack is refused, naming it; nothing is written.
    cut_back(&evidence, 2..=4, &older);
    let cut = t.path().join("cut.tar");
    let p = pack(&cut);
    assert_eq!(p.code, Some(1), "the cut log was packed: {}", p.all());
    assert!(
        p.stdout.contains("record 3: missing: the ledger ")
            && p.stdout.contains("this log holds 1: records were cut off its end")
            && p.stderr.contains("not packed"),
        "{}",
        p.all()
    );
    assert!(!cut.exists(), "nothing written under the pack's name");
}

/// Regression (issue 42): a base backup's manifest (`backup.base`) carried no anchor of the
/// evidence log, so runs that only take base backups left a log that could be cut at its end
/// (an older checkpoint put back) unseen. It now carries the head its run found, inside its
/// MAC, and `evidence verify` reads it as it reads a dump's manifest.
#[tokio::test(flavor = "multi_thread")]
async fn a_log_of_base_backup_runs_cut_at_its_end_was_unseen_and_now_is_named_against_a_base_manifest() {
    use pgdrill::testkit::physical::archiving::{ArchivingOptions, ArchivingServer};
    let t = tempfile::tempdir().expect("tmp");
    {
        use std::os::unix::fs::PermissionsExt as _;
        // The server's user (not root) reaches its archive folder through it.
        std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    // A server that streams base backups (wal_level replica, WAL senders), archiving to a
    // folder nothing reads.
    let opts = ArchivingOptions { archive_dir: Some(t.path().join("wal")), major: Some(15), ..Default::default() };
    let s = match ArchivingServer::start(opts).await {
        Ok(s) => s,
        Err(e) => {
            common::require(false, &format!("PostgreSQL 15 server binaries ({e})"));
            return;
        }
    };
    let (storage, evidence) = (t.path().join("base"), t.path().join("evidence"));
    let (key, public) = key_pair(t.path(), "signing.pem");
    let older = three_signed_runs(
        || {
            Run::new("base-backup")
                .var("database_url", s.url())
                .var("storage", storage.display())
                .var("check_wal", "false")
        },
        &key,
        &evidence,
    );
    cut_back(&evidence, 2..=3, &older);
    let v = Run::cli(["evidence", "verify"]).arg(&evidence).arg("--public-key").arg(&public).key(KEY).output();
    assert_eq!(v.code, Some(1), "the base manifests anchor record 2: {}", v.all());
    assert!(
        v.stdout.contains("record 2: missing: the manifest ")
            && v.stdout.contains("/base/")
            && v.stdout.contains("(a base backup of system ")
            && v.stdout.contains("authenticated under the backup key) anchors record 2 with sha256 ")
            && v.stdout.contains("this log holds 1: records were cut off its end"),
        "{}",
        v.all()
    );
}

/// Regression (issue 42): a run's newest record was anchored by nothing until a later run
/// (its manifests anchor the head it found, and a run with `--evidence` and no `--report`
/// writes no run.json or ledger line), so cutting it and putting the older checkpoint back
/// verified "ok", exit 0. Each append now publishes the head it made under `heads/` (signed
/// with the evidence key, created once, never replaced): `evidence verify` and `evidence
/// pack` name the cut against it. A run killed -9 after its checkpoint and before its head
/// leaves nothing half-written under `heads/` and its record said anchored by nothing yet
/// (exit 0, never a false failure); the next run publishes its own head.
#[test]
fn a_cut_newest_record_was_unseen_and_now_is_named_against_the_head_its_run_published() {
    let (t, key, public) = keygen();
    let runbook = tiny(t.path());
    let evidence = t.path().join("evidence");
    let signed = || Run::new(&runbook).signed(&key, &evidence);
    let older = three_runs_keeping_checkpoint(2, || signed().expect(0), &evidence);
    let three = pgdrill::testkit::evidence::keys::sha256_hex(&std::fs::read(record(&evidence, 3)).expect("record 3"));
    let names = heads(&evidence);
    assert_eq!(names.len(), 3, "{names:?}");
    assert_eq!(names[2], format!("00000003-{three}.dsse.json"), "{names:?}");
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        !v.stdout.contains("BUT")
            && v.stdout.contains(&format!(
                "held to the newest head its appends published, heads/00000003-{three}.dsse.json: record 3 is there unchanged"
            )),
        "{}",
        v.all()
    );

    // The newest record cut, the checkpoint at 2 put back: the log alone is whole.
    cut_back(&evidence, [3], &older);
    let named = [
        &format!("record 3: missing: the head heads/00000003-{three}.dsse.json (signed at "),
        "published when record 3, the passed verify `tiny` that finished at ",
        "this log holds 2: records were cut off its end",
    ];
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(1), "the cut log verified: {}", v.all());
    assert!(named.iter().all(|n| v.stdout.contains(n)), "{}", v.all());
    let out = t.path().join("cut.tar");
    let p = packing(&public, &evidence, &out).output();
    assert_eq!(p.code, Some(1), "the cut log was packed: {}", p.all());
    assert!(named.iter().all(|n| p.stdout.contains(n)) && p.stderr.contains("not packed"), "{}", p.all());
    assert!(!out.exists(), "nothing written under the pack's name");

    // A head signed with another key put in as the newest is named, and the true one held to.
    let (_other, other_key, _) = keygen();
    let forged = t.path().join("forged");
    Run::new(&runbook).signed(&other_key, &forged).expect(0);
    let forged_head = heads(&forged).pop().expect("a head");
    let fake = format!("00000009-{}", &forged_head[9..]);
    std::fs::copy(forged.join("heads").join(&forged_head), evidence.join("heads").join(&fake)).expect("copy");
    let v = verify(&evidence, &public);
    assert!(
        v.code == Some(1)
            && v.stdout.contains(&format!("the head heads/{fake}: "))
            && v.stdout.contains("record 3: missing: the head heads/00000003-"),
        "{}",
        v.all()
    );

    // Killed -9 between its checkpoint and its head: nothing half-written under heads/, the
    // record said anchored by nothing yet, exit 0; the next run publishes its own head.
    let killed = t.path().join("killed");
    Run::new(&runbook).signed(&key, &killed).expect(0);
    let phase = "evidence-checkpoint-written";
    common::kill_paused_at(Run::new(&runbook).signed(&key, &killed).command(), phase, &t.path().join(phase));
    let names = heads(&killed);
    assert!(names.len() == 1 && names[0].starts_with("00000001-"), "{names:?}");
    let v = verify(&killed, &public);
    assert_eq!(v.code, Some(0), "a run killed before its head reads as a failure: {}", v.all());
    assert!(
        v.stdout
            .lines()
            .next()
            .unwrap_or("")
            .contains("BUT record 2 (the newest) is anchored by nothing yet (no published head, "),
        "{}",
        v.all()
    );
    Run::new(&runbook).signed(&key, &killed).expect(0);
    let v = verify(&killed, &public);
    assert!(v.code == Some(0) && !v.stdout.contains("BUT") && v.stdout.contains("heads/00000003-"), "{}", v.all());
}

/// Regression (issue 42): a manifest without a MAC (here: read without the backup key, as an
/// unencrypted backup's, an old format's or a team's sidecar is) counted as an anchor like an
/// authenticated one: a log whose records only such manifests named verified "ok", held to
/// them, as if they proved nothing was cut, though whoever cut the log could have written
/// them. They are compared still (they can show a cut) but listed apart, UNAUTHENTICATED, and
/// the result line says no authenticated anchor names the records.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_without_a_mac_counted_as_proof_that_nothing_was_cut_and_now_is_listed_apart() {
    let Some(ThreeBackups { _server, t: _t, evidence, public, older, .. }) = three_backups().await else { return };
    // A log whose records no head anchors (written before heads were published): only the
    // backups' manifests name its records 1 and 2.
    std::fs::remove_dir_all(evidence.join("heads")).expect("rm heads");
    let without_key = || common::verifying(&evidence, &public).env_remove("PGDRILL_BACKUP_KEY").output();
    let v = without_key();
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.lines().next().unwrap_or("").contains(
            "BUT none of its 3 records is anchored outside the log (no published head, authenticated backup manifest or kept checkpoint names this log)"
        ) && v.stdout.contains("record 2 is named by an UNAUTHENTICATED anchor")
            && v.stdout.contains("compared, UNAUTHENTICATED (can show a cut, never prove none), with the backup manifests: the newest unauthenticated anchor of this log, record 2 (")
            && !v.stdout.contains("held to the backup manifests"),
        "{}",
        v.all()
    );
    // With the key the same manifest is authenticated and counts.
    let v = common::verifying(&evidence, &public).key(KEY).output();
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.contains("held to the backup manifests: the newest anchor of this log, record 2 (")
            && v.stdout.contains("authenticated under the backup key), is there unchanged")
            && v.stdout.contains("BUT record 3 (the newest) is anchored by nothing yet")
            && !v.stdout.contains("UNAUTHENTICATED"),
        "{}",
        v.all()
    );
    // An unauthenticated anchor still shows a cut.
    cut_back(&evidence, 2..=3, &older);
    let v = without_key();
    assert_eq!(v.code, Some(1), "{}", v.all());
    assert!(
        v.stdout.contains("record 2: missing: the manifest ")
            && v.stdout.contains("its MAC not checked here: no backup key given) anchors record 2"),
        "{}",
        v.all()
    );
}

/// Regression (issue 42): ledger lines and run.json files are unsigned text (whoever can edit
/// the evidence folder can edit the report folder beside it), yet they counted as proof that
/// nothing was cut: a log whose newest record only they named verified a bare "ok". They are
/// now compared (a cut they show is still named) but listed as UNAUTHENTICATED, and "ok"
/// rests only on anchors a key proves (published heads, kept checkpoints, authenticated
/// manifests).
#[test]
fn ledger_lines_and_run_json_counted_as_proof_that_nothing_was_cut_and_now_are_listed_unauthenticated() {
    let ThreeReported { t: _t, public, reports, evidence, older, .. } = three_reported_runs(2);
    // A log written before heads were published: only the ledger's lines and the run.json
    // name its records.
    std::fs::remove_dir_all(evidence.join("heads")).expect("rm heads");
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.lines().next().unwrap_or("").contains(
            "BUT none of its 3 records is anchored outside the log (no published head, authenticated backup manifest or kept checkpoint names this log): records cut off its end cannot be told; record 3 is named by an UNAUTHENTICATED anchor (a ledger line, a run.json or a manifest without a MAC under the backup key: unsigned)"
        ) && v.stdout.contains("compared, UNAUTHENTICATED (can show a cut, never prove none), with the ledger ")
            && v.stdout.contains("compared, UNAUTHENTICATED (can show a cut, never prove none), with the run.json ")
            && !v.stdout.contains("held to the ledger")
            && !v.stdout.contains("held to the run.json"),
        "{}",
        v.all()
    );
    // They still show a cut: record 3 cut, the checkpoint at 2 put back.
    cut_back(&evidence, [3], &older);
    let v = verify(&evidence, &public);
    assert!(v.code == Some(1) && v.stdout.contains("record 3: missing: the ledger "), "{}", v.all());
    // Whoever cut it edits the unsigned text too (the last ledger line and the run.json gone):
    // the log verifies, never as a bare "ok": nothing a key proves anchors it.
    let history = std::fs::read_to_string(reports.join("history.jsonl")).expect("ledger");
    let kept: Vec<&str> = history.lines().take(2).collect();
    std::fs::write(reports.join("history.jsonl"), kept.join("\n") + "\n").expect("edit the ledger");
    std::fs::remove_file(reports.join("run.json")).expect("rm run.json");
    let v = verify(&evidence, &public);
    assert_eq!(v.code, Some(0), "{}", v.all());
    assert!(
        v.stdout.lines().next().unwrap_or("").contains("BUT none of its 2 records is anchored outside the log"),
        "{}",
        v.all()
    );
}

/// Regression (issue 42): in an Object Lock bucket a DELETE without a version id removes
/// nothing locked but adds a delete marker that hides the object from the listing, and
/// verify read the listing only: the newest record and its head hidden that way, with the
/// head of the record before copied over the checkpoint (a new version, allowed), verified
/// ok. Verify now lists the object versions of a versioned bucket and names each record or
/// head hidden by a delete marker, with the version that holds it.
#[test]
fn a_record_and_head_hidden_by_a_delete_marker_in_an_object_lock_bucket_verified_ok_and_now_are_named() {
    let Some(moto) = common::moto() else { return };
    let port = moto.port;
    assert_eq!(s3(port, "PUT", "/hidden-evidence", &[("x-amz-bucket-object-lock-enabled", "true")]).0, 200);
    let (t, key, public) = keygen();
    let evidence = t.path().join("evidence");
    let tiny = tiny(t.path());
    for _ in 0..2 {
        Run::new(&tiny).signed(&key, &evidence).expect(0);
    }
    const SECRET: &str = "delete-marker-secret-never-shown";
    let mut publish = Run::cli(["evidence", "publish"]).arg(&evidence);
    for a in ["--to", "s3://hidden-evidence/prod", "--retain", "30d", "--mode", "governance"] {
        publish = publish.arg(a);
    }
    publish.moto(port, SECRET).expect(0);
    // Published from where it was appended: that location given as its earlier one.
    let verify_store = || {
        common::verifying("s3://hidden-evidence/prod", &public)
            .arg("--location")
            .arg(&evidence)
            .moto(port, SECRET)
            .output()
    };
    let v = verify_store();
    assert_eq!(v.code, Some(0), "{}", v.all());

    let names = heads(&evidence);
    let (first, newest) = (&names[0], &names[1]);
    // The version that holds record 2, as the store says.
    let (_, head) = s3(port, "HEAD", "/hidden-evidence/prod/records/00000002.dsse.json", &[]);
    let version = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().starts_with("x-amz-version-id:").then(|| l[17..].trim().to_string()))
        .expect("a version id");
    for name in ["records/00000002.dsse.json".to_string(), format!("heads/{newest}")] {
        let (status, body) = s3(port, "DELETE", &format!("/hidden-evidence/prod/{name}"), &[]);
        assert_eq!(status, 204, "{body}");
        assert_eq!(s3(port, "GET", &format!("/hidden-evidence/prod/{name}"), &[]).0, 404, "{name} still listed");
    }
    let source = format!("/hidden-evidence/prod/heads/{first}");
    let (status, body) =
        s3(port, "PUT", "/hidden-evidence/prod/checkpoint.dsse.json", &[("x-amz-copy-source", source.as_str())]);
    assert_eq!(status, 200, "{body}");

    let v = verify_store();
    assert_eq!(v.code, Some(1), "the hidden record and head verified ok: {}", v.all());
    assert!(
        v.stdout.contains(&format!(
            "record 2: records/00000002.dsse.json is hidden by a delete marker (a DELETE without a version id): its version {version} still holds it"
        )) && v.stdout.contains(&format!("heads/{newest} is hidden by a delete marker")),
        "{}",
        v.all()
    );
    assert!(!v.all().contains(SECRET), "{}", v.all());
    drop(moto);
}

/// Three runs of `run`, each appending one record to `evidence`: the checkpoint as it stood
/// after run `kept` (put back later to hide the runs after it).
fn three_runs_keeping_checkpoint<R>(kept: u64, run: impl Fn() -> R, evidence: &Path) -> Vec<u8> {
    let mut older = Vec::new();
    for n in 1..=3 {
        run();
        if n == kept {
            older = std::fs::read(evidence.join("checkpoint.dsse.json"))
                .unwrap_or_else(|e| panic!("the checkpoint at {n}: {e}"));
        }
    }
    older
}

/// Three runs of the command `run` builds (a runbook and its variables), each with the backup
/// key and signed with `key` into `evidence`: the checkpoint as the first left it.
fn three_signed_runs(run: impl Fn() -> Run, key: &Path, evidence: &Path) -> Vec<u8> {
    three_runs_keeping_checkpoint(1, || run().key(KEY).signed(key, evidence).expect(0), evidence)
}

/// Three runs of `tiny.yaml` in a new folder, each signed with the key pair `k.pem` and
/// reporting to `reports/` (the ledger, run.json and the log `reports/evidence`).
struct ThreeReported {
    t: tempfile::TempDir,
    key: PathBuf,
    public: PathBuf,
    tiny: PathBuf,
    reports: PathBuf,
    evidence: PathBuf,
    /// The checkpoint as run `kept` of [`three_reported_runs`] left it.
    older: Vec<u8>,
}

fn three_reported_runs(kept: u64) -> ThreeReported {
    let (t, key, public) = keygen();
    let tiny = tiny(t.path());
    let reports = t.path().join("reports");
    let evidence = reports.join("evidence");
    let run = || Run::new(&tiny).arg("--signing-key").arg(&key).arg("--report").arg(&reports).expect(0);
    let older = three_runs_keeping_checkpoint(kept, run, &evidence);
    ThreeReported { t, key, public, tiny, reports, evidence, older }
}
