//! What verify's own work costs, counted rather than timed (issue 41; timings live in
//! ci/bench.sh): the sessions a throwaway server's start and amcheck open, the connections a
//! starting server refused, and how often the check reads the stored archive. Real
//! PostgreSQL 15 (native binaries), real pg_dump.

use std::path::Path;

use pgdrill::testkit::archive::{Codec, KeySource};
use pgdrill::testkit::backup::{self, Format};

use crate::common::*;

/// `connection authorized` lines of `log` (every session: the throwaway servers run with
/// `log_connections`) after `from` bytes.
fn sessions(log: &str, from: usize) -> usize {
    log[from..].lines().filter(|l| l.contains("connection authorized:")).count()
}

fn server_log(dir: &str) -> String {
    std::fs::read_to_string(Path::new(dir).join("server.log")).expect("server.log")
}

/// Bytes this process has read through read(2) and its kind (`rchar` of /proc/self/io), all
/// threads included. nextest runs each test in a process of its own.
fn bytes_read() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").expect("/proc/self/io");
    io.lines().find_map(|l| l.strip_prefix("rchar: ")).and_then(|n| n.trim().parse().ok()).expect("rchar")
}

/// A throwaway server's start opened three sessions (one to see it ready, one to give it a
/// password of its own, one to create its database) and, connecting every 25 ms while it
/// started, forked backends that refused each attempt; amcheck opened a session for its
/// listing besides one per job. Each now opens what it uses: one for the start, `jobs` for
/// amcheck. And the check read every byte of the stored archive twice, one pass for the
/// checksum and another for the chunks: now once, and a damaged archive is still named by
/// its checksum.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throwaway_start_amcheck_and_the_archive_check_did_work_twice() {
    let Some(s) = native_server("shop").await else { return };
    let log = server_log(&s.instance);
    assert_eq!(sessions(&log, 0), 1, "sessions opened by the start: {log}");
    assert!(
        !log.contains("the database system is starting up"),
        "connections tried before the server was ready: {log}"
    );
    // The one session set the password and created the database: both are there.
    assert_eq!(scalar(&s.url(), "current_database()").await, "shop");

    // Rows enough that the archive spans many 1 MiB blocks: random text, so it does not
    // compress away.
    exec(
        &s.url(),
        "create table orders (id bigint primary key, note text not null); \
         create index orders_note on orders (note); \
         insert into orders select g, md5(g::text) || md5((g * 7)::text) || md5(random()::text) from generate_series(1, 150000) g",
    )
    .await;

    let from = server_log(&s.instance).len();
    let tmp = tempfile::tempdir().expect("tmp");
    let rb = written(tmp.path().join("amcheck.yaml"), "name: amcheck\nvars: { url: ~ }\nsteps:\n  - id: amcheck\n    uses: verify.amcheck\n    with: { url: \"{{ vars.url }}\", heapallindexed: true, jobs: 2 }\n");
    let ran = Run::new(&rb).var("url", s.url()).junit(tmp.path().join("amcheck.xml")).expect(0);
    assert_eq!(ran.junit().status("amcheck"), "passed", "{}", ran.all());
    let junit = ran.junit().all_text();
    assert!(junit.contains("2 B-tree indexes checked"), "{junit}");
    let log = server_log(&s.instance);
    assert_eq!(sessions(&log, from), 2, "sessions opened by amcheck with jobs 2: {}", &log[from..]);

    let key = "11".repeat(32);
    let storage = tmp.path().join("storage");
    let created = backup::create(create_options(&s.url(), &storage, Format::Custom, Codec::Zstd, Some(&key)), &|_| {})
        .await
        .expect("backup");
    let size = std::fs::metadata(&created.path).expect("archive").len();
    assert!(size > 4 << 20, "the archive is {size} bytes: too small to tell one read from two");
    let ks = KeySource::from_secret(&key);
    let before = bytes_read();
    let checked = tokio::task::block_in_place(|| backup::check(&created.path, Some(&ks))).expect("checked");
    let read = bytes_read() - before;
    assert_eq!(checked.tables, 1);
    assert!(read < size + size / 2, "the check read {read} bytes of a {size}-byte archive");
    assert!(read >= size, "the check read {read} bytes of a {size}-byte archive: not all of it");

    // A flipped byte in the middle: named by the checksum, as when it had a pass of its own.
    let mut bytes = std::fs::read(&created.path).expect("archive");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&created.path, &bytes).expect("write");
    let e = tokio::task::block_in_place(|| backup::check(&created.path, Some(&ks))).map(|_| ()).expect_err("damaged");
    assert!(e.to_string().contains("does not match the manifest"), "{e}");
    s.stop().await;
}
