//! Backups against a real server with the real pg_dump and pg_restore: the format x codec x
//! cipher matrix, tampering caught by backup.check, failures that must leave no file under
//! a final name, and the pg_dump version gate.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;
use crate::common::{made_dir, pgdrill, text, written, Run};
use pgdrill::testkit::archive::{Codec, KeySource};
use pgdrill::testkit::backup::{self, CreateOptions, Format};
use pgdrill::testkit::error::Class;
use pgdrill::testkit::pg::ephemeral::Ephemeral;

const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

async fn source(random_mb: usize) -> Option<Ephemeral> {
    let s = common::native_server("shop").await?;
    let client = pgdrill::testkit::pg::connect(&s.url()).await.expect("connect");
    client
        .batch_execute(&format!(
            "create table customers (id serial primary key, name text not null, email text unique);
             insert into customers (name, email) select 'c' || g, 'c' || g || '@example.com' from generate_series(1, 2000) g;
             create table orders (id bigserial primary key, customer int references customers, total numeric(12,2), placed timestamptz default '2026-01-01');
             insert into orders (customer, total) select 1 + g % 2000, g * 0.25 from generate_series(1, 20000) g;
             create table blobs (id int primary key, data bytea);
             insert into blobs select g, decode(string_agg(md5(random()::text || g2), ''), 'hex') from generate_series(1, {random_mb}) g, generate_series(1, 65536) g2 group by g;
             create index orders_customer on orders (customer);"
        ))
        .await
        .expect("load");
    Some(s)
}

fn opts(url: &str, storage: &Path, format: Format, codec: Codec, key: Option<&str>) -> CreateOptions {
    common::create_options(url, storage, format, codec, key)
}

fn no_log(_: String) {}

fn decrypt_with_cli(path: &Path, key: Option<&str>) -> Vec<u8> {
    let mut c = pgdrill(&["decrypt", path.to_str().unwrap_or_default()]);
    match key {
        Some(k) => c.env("PGDRILL_BACKUP_KEY", k),
        None => c.env_remove("PGDRILL_BACKUP_KEY"),
    };
    let out = c.stdin(Stdio::null()).output().expect("decrypt");
    assert!(out.status.success(), "decrypt: {}", text(&out.stderr));
    out.stdout
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = common::walk(dir).into_iter().map(|p| p.display().to_string()).collect();
    v.sort();
    v
}

/// Whether `pg_restore --list` of the dump at `path` (a file or a directory) lists the data
/// of table `orders`.
fn lists_orders_data(path: &Path) -> bool {
    let out =
        Command::new("/usr/lib/postgresql/15/bin/pg_restore").arg("--list").arg(path).output().expect("pg_restore");
    String::from_utf8_lossy(&out.stdout).contains("TABLE DATA public orders")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_format_codec_and_cipher_round_trips() {
    let Some(src) = source(1).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    for format in [Format::Custom, Format::Plain, Format::Directory] {
        for codec in [Codec::Zstd, Codec::Gzip, Codec::None] {
            for key in [None, Some(KEY_HEX), Some("a long passphrase")] {
                let what = format!("{format:?}/{codec:?}/{}", if key.is_some() { "encrypted" } else { "plain" });
                let created =
                    backup::create(opts(&src.url(), t.path(), format, codec, key), &no_log).await.expect(&what);
                let m = &created.manifest;
                assert_eq!(m.fingerprint.as_ref().map(|f| f.tables.len()), Some(3), "{what}");
                assert_eq!(
                    m.fingerprint.as_ref().and_then(|f| f.tables.get("public.orders")).map(|p| p.rows),
                    Some(20000)
                );
                let checked = backup::check(&created.path, key.map(KeySource::from_secret).as_ref()).expect(&what);
                assert_eq!(checked.tables, 3, "{what}");
                let dump = decrypt_with_cli(&created.path, key);
                assert_eq!(dump.len() as u64, m.sizes.raw, "{what}: decrypt gives pg_dump's bytes back");
                match format {
                    Format::Custom => {
                        let f = t.path().join("dump.bin");
                        std::fs::File::create(&f).and_then(|mut w| w.write_all(&dump)).expect("write dump");
                        assert!(lists_orders_data(&f), "{what}");
                    }
                    Format::Plain => {
                        assert!(String::from_utf8_lossy(&dump).contains("CREATE TABLE public.orders"), "{what}")
                    }
                    Format::Directory => {
                        // The stream is a tar of pg_dump's directory: unpack it and list it.
                        let d = t.path().join("unpacked");
                        let _ = std::fs::remove_dir_all(&d);
                        tar::Archive::new(&dump[..]).unpack(&d).expect("untar");
                        assert!(lists_orders_data(&d), "{what}");
                    }
                }
                // Nothing staged is left beside the backups.
                let stray: Vec<_> = common::walk(t.path())
                    .into_iter()
                    .filter(|p| p.to_string_lossy().contains(".pgdrill-stage-"))
                    .collect();
                assert!(stray.is_empty(), "{what}: staging left behind: {stray:?}");
                let mode = std::fs::metadata(&created.path).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{what}: backups are private");
            }
        }
    }
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_check_names_every_kind_of_damage() {
    let Some(src) = source(3).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let key = KeySource::from_secret(KEY_HEX);
    // Random bytea does not compress: several 1 MiB chunks.
    let created = backup::create(opts(&src.url(), t.path(), Format::Custom, Codec::Zstd, Some(KEY_HEX)), &no_log)
        .await
        .expect("backup");
    src.stop().await;
    let good = std::fs::read(&created.path).expect("read");
    let manifest = std::fs::read(pgdrill::testkit::backup::layout::manifest_path(&created.path)).expect("manifest");
    assert!(good.len() > 3 << 20, "several chunks: {}", good.len());
    let header = 13 + u32::from_be_bytes([good[9], good[10], good[11], good[12]]) as usize;
    let chunk = 4 + (1 << 20) + 16;

    let check_variant = |name: &str, bytes: &[u8], with_manifest: bool, k: Option<&KeySource>| -> String {
        let dir = made_dir(t.path().join("variants"));
        let p = written(dir.join(format!("{name}.dump.pgdrill")), bytes);
        let mp = pgdrill::testkit::backup::layout::manifest_path(&p);
        if with_manifest {
            // The manifest's sha256 is updated so that the content checks, not the checksum, speak;
            // and its MAC recomputed with the key (as only a key holder can), or the manifest
            // check would speak first.
            let mut m: serde_json::Value = serde_json::from_slice(&manifest).expect("json");
            m["sha256"] = serde_json::Value::String(pgdrill::testkit::archive::hex(&sha2_digest(bytes)));
            if let Ok((h, _)) = pgdrill::testkit::archive::read_header(&mut &bytes[..]) {
                if let (Some(kdf), Some(prefix)) = (&h.kdf, &h.nonce_prefix) {
                    let k = key.derive_for(kdf).expect("key");
                    m["authentication"]["mac"] = k.manifest_mac(prefix, &backup::manifest_bytes(m.clone())).into();
                }
            }
            std::fs::write(&mp, serde_json::to_vec(&m).expect("json")).expect("write");
        } else {
            let _ = std::fs::remove_file(&mp);
        }
        match backup::check(&p, k) {
            Ok(_) => format!("{name}: PASSED"),
            Err(e) => e.to_string(),
        }
    };

    assert!(check_variant("good", &good, true, Some(&key)).ends_with("PASSED"));
    for (name, cut) in [
        ("cut-in-header", 20),
        ("cut-at-boundary", header + chunk),
        ("cut-mid-chunk", header + chunk + 5000),
        ("cut-tail", good.len() - 1),
    ] {
        let e = check_variant(name, &good[..cut], true, Some(&key));
        assert!(e.contains("corrupted backup"), "{name}: {e}");
    }
    assert!(check_variant("cut-at-boundary", &good[..header + chunk], true, Some(&key))
        .ends_with("truncated after chunk 1 (no final chunk)"));
    for (name, at) in [("flip-header", 30), ("flip-body", header + chunk + 100), ("flip-tail", good.len() - 2)] {
        let mut b = good.clone();
        b[at] ^= 0x40;
        let e = check_variant(name, &b, true, Some(&key));
        assert!(e.contains("corrupted backup"), "{name}: {e}");
    }
    let mut swapped = good[..header].to_vec();
    swapped.extend_from_slice(&good[header + chunk..header + 2 * chunk]);
    swapped.extend_from_slice(&good[header..header + chunk]);
    swapped.extend_from_slice(&good[header + 2 * chunk..]);
    assert!(check_variant("swapped", &swapped, true, Some(&key))
        .ends_with("wrong key or corrupted backup: chunk 0 failed authentication"));
    let wrong = KeySource::from_secret(&"77".repeat(32));
    assert!(check_variant("wrong-key", &good, true, Some(&wrong))
        .ends_with("wrong key or corrupted backup: the key does not match this backup's key check"));
    assert!(check_variant("no-manifest", &good, false, Some(&key)).contains("missing manifest"));
    // A flipped byte with the original manifest: the checksum says it first.
    let mut b = good.clone();
    b[header + chunk + 10] ^= 1;
    let p = created.path.clone();
    std::fs::write(&p, &b).expect("write");
    let e = backup::check(&p, Some(&key)).map(|_| ()).expect_err("sha");
    assert!(e.to_string().contains("does not match the manifest"), "{e}");

    // Through the runbook and CLI: a wrong key is exit 1 with the message, and the key
    // never appears.
    std::fs::write(&p, &good).expect("restore the file");
    let rb = written(t.path().join("check.yaml"), "name: check\nvars: { path: ~ }\nsecrets: { key: { env: K } }\nsteps:\n  - id: check\n    uses: backup.check\n    with: { path: \"{{ vars.path }}\", key: \"{{ secrets.key }}\" }\n");
    let out = Run::new(&rb).var("path", p.display()).env("K", "wrong passphrase value").raw();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("wrong key or corrupted backup"), "{stdout}");
    assert!(!stdout.contains("wrong passphrase value"));
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

fn fake_pg_dump(dir: &Path, body: &str) -> PathBuf {
    let p = written(dir.join("pg_dump"), format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pg_dump_that_fails_midway_leaves_no_file() {
    let Some(src) = source(1).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("storage");
    let real = "/usr/lib/postgresql/15/bin/pg_dump";
    let fake = fake_pg_dump(
        t.path(),
        &format!("if [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} \"$@\" | head -c 100000\necho 'pg_dump: error: connection lost' >&2\nexit 1"),
    );
    let mut o = opts(&src.url(), &storage, Format::Custom, Codec::Zstd, Some(KEY_HEX));
    o.pg_dump = Some(fake);
    let e = backup::create(o, &no_log).await.map(|_| ()).expect_err("pg_dump fails");
    assert_eq!(e.class, Class::Failed, "{e}");
    assert!(e.to_string().contains("connection lost"), "{e}");
    assert_eq!(files_in(&storage), Vec::<String>::new(), "no file, not even a temp file");
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pg_dump_older_than_the_server_is_refused_before_writing() {
    let Some(src) = source(1).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("storage");
    let fake = fake_pg_dump(t.path(), "echo 'pg_dump (PostgreSQL) 13.9'");
    let mut o = opts(&src.url(), &storage, Format::Custom, Codec::Zstd, None);
    o.pg_dump = Some(fake);
    let e = backup::create(o, &no_log).await.map(|_| ()).expect_err("too old");
    assert_eq!(e.class, Class::Environment, "{e}");
    assert!(
        e.to_string().contains("pg_dump 13") && e.to_string().contains("older than the server (PostgreSQL 15)"),
        "{e}"
    );
    assert!(!storage.exists());
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_leaves_no_file_under_a_final_name() {
    let root = nix::unistd::geteuid().is_root();
    if !common::require(root, "root (to mount a small tmpfs as a full disk)") {
        return;
    }
    let Some(src) = source(2).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let storage = made_dir(t.path().join("small"));
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"]).arg(&storage).status();
    assert!(mounted.is_ok_and(|s| s.success()), "mount tmpfs");
    let e = backup::create(opts(&src.url(), &storage, Format::Custom, Codec::None, None), &no_log)
        .await
        .map(|_| ())
        .expect_err("disk full");
    let listed = files_in(&storage);
    let _ = Command::new("umount").arg(&storage).status();
    assert!(e.to_string().contains("No space left on device"), "{e}");
    assert_eq!(listed, Vec::<String>::new());
    src.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_backups_at_once_do_not_collide_and_the_shipped_runbook_works() {
    let Some(src) = source(1).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let a = backup::create(opts(&src.url(), t.path(), Format::Custom, Codec::Zstd, None), &no_log);
    let b = backup::create(opts(&src.url(), t.path(), Format::Custom, Codec::Zstd, None), &no_log);
    let (a, b) = tokio::join!(a, b);
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_ne!(a.path, b.path);
    assert_eq!(files_in(&t.path().join("shop")).len(), 4, "two backups, two manifests");

    // `pgdrill run backup` from another directory, with the key from the environment.
    let storage = t.path().join("shipped");
    let out = Run::new("backup")
        .var("database_url", src.url())
        .var("storage", storage.display())
        .current_dir(t.path())
        .key("operator passphrase")
        .raw();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!text(&out.stdout).contains(&src.password), "the server password is redacted");
    let list = pgdrill(&["backups", "list", "--storage", storage.to_str().unwrap_or_default(), "--json"])
        .output()
        .expect("list");
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    assert_eq!(v[0]["encrypted"], true);
    src.stop().await;
}

#[test]
fn decrypt_refuses_a_terminal() {
    // `script` gives the child a pseudo-terminal as stdout.
    let has_script = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIPPED: util-linux `script` is not installed");
        return;
    }
    let cmd = format!("{} decrypt /nonexistent.pgdrill", common::bin().display());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().expect("script");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(all.contains("refusing to write a database dump to a terminal"), "{all}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_a_backup_leaves_no_file_and_no_pg_dump() {
    let Some(src) = source(1).await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let storage = t.path().join("storage");
    let marker = t.path().join("started");
    let real = "/usr/lib/postgresql/15/bin/pg_dump";
    // A pg_dump that streams part of the dump, then stalls like a slow network.
    let fake = fake_pg_dump(
        t.path(),
        &format!(
            "if [ \"$1\" = --version ]; then exec {real} --version; fi\n{real} \"$@\" | (head -c 50000; touch {}; sleep 28.25; cat)",
            marker.display()
        ),
    );
    let rb = written(
        t.path().join("b.yaml"),
        format!(
            "name: b\nvars: {{ url: ~, storage: ~ }}\nsteps:\n  - id: dump\n    uses: backup.create\n    with: {{ database_url: \"{{{{ vars.url }}}}\", storage: \"{{{{ vars.storage }}}}\", pg_dump: {} }}\n",
            fake.display()
        ),
    );
    let mut child = Run::new(&rb)
        .var("url", src.url())
        .var("storage", storage.display())
        .command()
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !marker.exists() {
        assert!(std::time::Instant::now() < deadline, "the dump never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("kill");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    assert_eq!(files_in(&storage), Vec::<String>::new(), "no partial file left");
    src.stop().await;
}

/// Regression: a dump written into a pipe has no data offsets, so each parallel pg_restore
/// worker scanned the whole file for every table. Offsets recorded while staging must be
/// exactly those pg_dump writes when it can seek back into a regular file.
#[tokio::test(flavor = "multi_thread")]
async fn offsets_recorded_while_staging_equal_those_pg_dump_writes_into_a_regular_file() {
    let Some(s) = source(1).await else { return };
    common::exec(
        &s.url(),
        "create table empty_one (a int); select lo_from_bytea(0, 'large object one'), lo_from_bytea(0, 'two');",
    )
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let seekable = dir.path().join("seekable.dump");
    let st =
        Command::new("pg_dump").args(["-Fc", "-Z0", "-d", &s.url(), "-f"]).arg(&seekable).status().expect("pg_dump");
    assert!(st.success());
    let piped = Command::new("pg_dump").args(["-Fc", "-Z0", "-d", &s.url()]).output().expect("pg_dump");
    assert!(piped.status.success());
    let staged = dir.path().join("staged.dump");

    let mut rec = backup::offsets::OffsetRecorder::new(std::fs::File::create(&staged).expect("create"));
    // Uneven slices, so fields and chunk headers are split across writes.
    let mut rest: &[u8] = &piped.stdout;
    for size in [1usize, 3, 7, 11, 4096, 65_537].iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let n = (*size).min(rest.len());
        rec.write_all(&rest[..n]).expect("write");
        rest = &rest[n..];
    }
    rec.flush().expect("flush");
    let offsets = rec.finish().expect("the dump parses");
    let patched = offsets.patch(&staged).expect("patch");
    assert!(patched >= 5, "table data of customers, orders, blobs, empty_one and the large objects: {patched}");

    let want = std::fs::read(&seekable).expect("read");
    let got = std::fs::read(&staged).expect("read");
    assert_ne!(piped.stdout, want, "the piped dump lacks the offsets to begin with");
    assert_eq!(got.len(), want.len());
    // Only the creation time in the header (its first bytes) may differ.
    let differ: Vec<usize> = got.iter().zip(&want).enumerate().filter(|(_, (a, b))| a != b).map(|(i, _)| i).collect();
    assert!(differ.iter().all(|&i| i < 64), "bytes differ at {:?}", &differ[..differ.len().min(10)]);
}

/// `pgdrill decrypt` of a 0-byte file, of a gzip stream of nothing, of a pgdrill archive
/// cut inside its header and of a plain dump cut short exited 0 with short or empty output:
/// an emergency pipe into pg_restore or psql then "restored" nothing.
#[tokio::test(flavor = "multi_thread")]
async fn decrypt_of_an_empty_or_headerless_file_exited_0() {
    let t = tempfile::tempdir().expect("tmp");
    let empty = written(t.path().join("app-20261205T130000.sql"), b"");
    let gz = t.path().join("app-20261205T130000.sql.gz");
    let out =
        Command::new("bash").args(["-c", &format!("gzip -c </dev/null > {}", gz.display())]).status().expect("gzip");
    assert!(out.success());
    let headerless = written(t.path().join("app.dump.pgdrill"), b"PGDRI");
    for (p, says) in [
        (&empty, "empty (0 bytes)"),
        (&gz, "holds nothing inside its gzip layer"),
        (&headerless, "cut inside its header"),
    ] {
        let out = pgdrill(&["decrypt", p.to_str().unwrap_or_default()]).stdin(Stdio::null()).output().expect("run");
        assert_eq!(out.status.code(), Some(1), "{}: {}", p.display(), text(&out.stderr));
        assert!(text(&out.stderr).contains(says), "{}: {}", p.display(), text(&out.stderr));
    }
    // A real pg_dump's output cut short (what `pg_dump | gzip` leaves when pg_dump dies).
    let Some(src) = source(0).await else { return };
    let cut = t.path().join("shop-20261205T130000.sql.gz");
    let script =
        format!("/usr/lib/postgresql/15/bin/pg_dump '{}' | head -c 100000 | gzip > {}", src.url(), cut.display());
    assert!(Command::new("bash").args(["-c", &script]).status().expect("bash").success());
    let out = pgdrill(&["decrypt", cut.to_str().unwrap_or_default()]).stdin(Stdio::null()).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("incomplete dump") || text(&out.stderr).contains("cut inside the data"));
    src.stop().await;
}
