use super::*;
use crate::storage::local::FsStore;

const SEG: u64 = 1 << 20;
const SYSTEM: u64 = 7_716_079_913_155_838_230;

fn key() -> KeySource {
    KeySource::from_secret("a WAL test passphrase")
}

/// A segment of `SEG` bytes whose long page header says `system` and where it starts.
fn segment(system: u64, segno: u64, fill: u8) -> Vec<u8> {
    let mut b = vec![fill; SEG as usize];
    b[0..2].copy_from_slice(&0xD110u16.to_ne_bytes());
    b[2..4].copy_from_slice(&0x0006u16.to_ne_bytes());
    b[4..8].copy_from_slice(&1u32.to_ne_bytes());
    b[8..16].copy_from_slice(&(segno * SEG).to_ne_bytes());
    b[24..32].copy_from_slice(&system.to_ne_bytes());
    b[32..36].copy_from_slice(&(SEG as u32).to_ne_bytes());
    b
}

/// A data directory whose pg_control names `system`, with pg_wal/.
fn data_dir(system: u64) -> tempfile::TempDir {
    let d = tempfile::tempdir().expect("tmp");
    std::fs::create_dir_all(d.path().join("global")).expect("global");
    std::fs::create_dir_all(d.path().join("pg_wal")).expect("pg_wal");
    let mut control = system.to_ne_bytes().to_vec();
    control.resize(8192, 0);
    std::fs::write(d.path().join("global/pg_control"), control).expect("pg_control");
    d
}

/// An empty archive in a folder of its own (the folder, its store) and a data directory of
/// `SYSTEM`.
fn archive_and_data_dir() -> (tempfile::TempDir, FsStore, tempfile::TempDir) {
    let store = tempfile::tempdir().expect("tmp");
    let s = FsStore::new(store.path());
    (store, s, data_dir(SYSTEM))
}

fn cfg(storage: &Path) -> Config {
    Config { storage: storage.display().to_string(), key: key(), level: 3, credentials: Vec::new() }
}

#[test]
fn names_lsns_and_segment_numbers_follow_postgresql() {
    assert_eq!(WalName::parse("000000010000000000000002"), Some(WalName::Segment { tli: 1, log: 0, seg: 2 }));
    assert_eq!(WalName::parse("00000002.history"), Some(WalName::History { tli: 2 }));
    assert_eq!(
        WalName::parse("000000010000000000000002.00000028.backup"),
        Some(WalName::Backup { tli: 1, log: 0, seg: 2 })
    );
    assert_eq!(WalName::parse("000000010000000000000002.partial"), Some(WalName::Partial { tli: 1, log: 0, seg: 2 }));
    for bad in ["", "../00000001.history", "00000001000000000000000g", "0000000100000000000000021", "x.history"] {
        assert_eq!(WalName::parse(bad), None, "{bad}");
    }
    let l = Lsn::parse("1/2000028").expect("lsn");
    assert_eq!(l.to_string(), "1/2000028");
    assert_eq!(Lsn::parse("0/"), None);
    let seg16 = 16 << 20;
    assert_eq!(segment_name(1, l.segno(seg16), seg16), "000000010000000100000002");
    assert_eq!(segno_of(1, 2, seg16), l.segno(seg16));
}

#[test]
fn a_sealed_file_opens_only_under_its_own_name_whole_and_with_its_key() {
    let seg = segment(SYSTEM, 2, 0);
    let name = "000000010000000000000002";
    let object = seal(name, &seg, SYSTEM, &key(), 3).expect("seal");
    let (pre, body) = unseal(name, &object, &key()).expect("unseal");
    assert_eq!((pre.size, body == seg), (SEG, true));
    let renamed = unseal("000000010000000000000003", &object, &key()).expect_err("renamed");
    assert!(renamed.message.contains("copied or renamed"), "{}", renamed.message);
    let wrong = unseal(name, &object, &KeySource::from_secret("another passphrase")).expect_err("wrong key");
    assert!(wrong.message.contains("wrong key"), "{}", wrong.message);
    let short = unseal(name, &object[..object.len() / 2], &key()).expect_err("short");
    assert!(short.message.contains("corrupted") || short.message.contains("truncated"), "{}", short.message);
    assert!(unseal(name, &[], &key()).expect_err("empty").message.contains("0 bytes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn push_is_idempotent_for_the_same_bytes_and_refuses_different_ones() {
    let store = tempfile::tempdir().expect("tmp");
    let d = data_dir(SYSTEM);
    let rel = Path::new("pg_wal/000000010000000000000002");
    std::fs::write(d.path().join(rel), segment(SYSTEM, 2, 0)).expect("write");
    let c = cfg(store.path());
    let s = FsStore::new(store.path());
    assert!(matches!(push_to(&s, &c, rel, d.path()).await.expect("push"), Pushed::Stored { .. }));
    assert!(matches!(push_to(&s, &c, rel, d.path()).await.expect("again"), Pushed::AlreadyThere { .. }));
    std::fs::write(d.path().join(rel), segment(SYSTEM, 2, 7)).expect("write");
    let e = push_to(&s, &c, rel, d.path()).await.expect_err("different content");
    assert!(e.message.contains("different content") && e.message.contains("nothing was replaced"), "{}", e.message);
    // Fetched back: the first content, never the second.
    let out = d.path().join("pg_wal/RECOVERYXLOG");
    fetch_from(&s, &key(), "000000010000000000000002", Path::new("pg_wal/RECOVERYXLOG"), d.path(), None)
        .await
        .expect("fetch");
    assert_eq!(std::fs::read(&out).expect("read"), segment(SYSTEM, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn fetch_says_absent_only_for_a_missing_file_of_a_known_archive() {
    let (store, s, d) = archive_and_data_dir();
    let dest = Path::new("pg_wal/RECOVERYXLOG");
    // No archive of this system at all: not "absent", or recovery would end early.
    let e = fetch_from(&s, &key(), "000000010000000000000002", dest, d.path(), None).await.expect_err("no archive");
    assert!(matches!(e, FetchError::Fatal(_)), "{e:?}");
    let rel = Path::new("pg_wal/000000010000000000000002");
    std::fs::write(d.path().join(rel), segment(SYSTEM, 2, 0)).expect("write");
    push_to(&s, &cfg(store.path()), rel, d.path()).await.expect("push");
    let e = fetch_from(&s, &key(), "000000010000000000000003", dest, d.path(), None).await.expect_err("absent");
    assert!(matches!(e, FetchError::Absent), "{e:?}");
    let e = fetch_from(&s, &key(), "00000002.history", dest, d.path(), None).await.expect_err("absent");
    assert!(matches!(e, FetchError::Absent), "{e:?}");
    // Another system's data directory asks another archive.
    let other = data_dir(SYSTEM + 1);
    let e = fetch_from(&s, &key(), "000000010000000000000002", dest, other.path(), None).await.expect_err("other");
    assert!(matches!(e, FetchError::Fatal(_)), "{e:?}");
    assert!(!d.path().join(dest).exists(), "a failed fetch left a file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_segment_of_another_system_or_cut_short_is_never_pushed() {
    let (store, s, d) = archive_and_data_dir();
    let rel = Path::new("pg_wal/000000010000000000000002");
    std::fs::write(d.path().join(rel), segment(SYSTEM + 1, 2, 0)).expect("write");
    let e = push_to(&s, &cfg(store.path()), rel, d.path()).await.expect_err("other system");
    assert!(e.message.contains("belongs to system"), "{}", e.message);
    let mut short = segment(SYSTEM, 2, 0);
    short.truncate(4096);
    std::fs::write(d.path().join(rel), short).expect("write");
    let e = push_to(&s, &cfg(store.path()), rel, d.path()).await.expect_err("short");
    assert!(e.message.contains("cut short"), "{}", e.message);
    assert!(s.head(&wal_key(SYSTEM, "000000010000000000000002")).await.expect("head").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn continuity_names_a_missing_segment_and_follows_a_timeline_switch() {
    let (store, s, d) = archive_and_data_dir();
    let c = cfg(store.path());
    let put = |tli: u32, segno: u64| {
        let name = segment_name(tli, segno, SEG);
        std::fs::write(d.path().join("pg_wal").join(&name), segment(SYSTEM, segno, tli as u8)).expect("write");
        PathBuf::from("pg_wal").join(name)
    };
    for segno in [2, 3, 5] {
        push_to(&s, &c, &put(1, segno), d.path()).await.expect("push");
    }
    let start = (1, Lsn(2 * SEG + 40));
    let r = check::continuity(&s, SYSTEM, &key(), SEG, start, Lsn(3 * SEG + 10), true).await.expect("check");
    assert!(r.reaches_stop, "{r:?}");
    assert_eq!(r.gaps.len(), 1, "{r:?}");
    assert_eq!(r.gaps[0].first_missing, "000000010000000000000004");
    assert!(r.gaps[0].describe().contains("after 000000010000000000000003 (archived "), "{}", r.gaps[0].describe());
    assert_eq!(r.last_segment.as_deref(), Some("000000010000000000000003"));

    // Timeline 2 branched off in segment 4: the chain reads 2, 3 on timeline 1, then 4, 5 on 2.
    push_to(&s, &c, &put(2, 4), d.path()).await.expect("push");
    push_to(&s, &c, &put(2, 5), d.path()).await.expect("push");
    let hist = d.path().join("pg_wal/00000002.history");
    std::fs::write(&hist, format!("1\t{}\tno recovery target specified\n", Lsn(4 * SEG + 100))).expect("write");
    push_to(&s, &c, Path::new("pg_wal/00000002.history"), d.path()).await.expect("push history");
    let r = check::continuity(&s, SYSTEM, &key(), SEG, start, Lsn(3 * SEG + 10), true).await.expect("check");
    assert_eq!((r.timeline, r.gaps.len(), r.segments), (2, 0, 4), "{r:?}");
    assert_eq!(r.last_segment.as_deref(), Some("000000020000000000000005"));

    // A damaged object breaks the chain where it is.
    let k = wal_key(SYSTEM, "000000020000000000000004");
    std::fs::write(store.path().join(&k), b"").expect("truncate");
    let r = check::continuity(&s, SYSTEM, &key(), SEG, start, Lsn(3 * SEG + 10), true).await.expect("check");
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    assert_eq!(r.last_segment.as_deref(), Some("000000010000000000000003"));
}

#[test]
fn the_config_file_names_its_line_and_never_holds_the_key() {
    let d = tempfile::tempdir().expect("tmp");
    let f = d.path().join("wal.conf");
    std::fs::write(&f, "# archive\nstorage = /srv/wal\nkey = secret\n").expect("write");
    let e = Config::load(&Given { config: Some(f.clone()), ..Default::default() }).expect_err("key in file");
    assert!(e.message.contains("wal.conf:3") && e.message.contains("unknown setting `key`"), "{}", e.message);
    let kf = d.path().join("wal.key");
    std::fs::write(&kf, "a WAL test passphrase\n").expect("write");
    std::fs::write(&f, format!("storage = /srv/wal\nkey_file = {}\n", kf.display())).expect("write");
    let (c, secret) = Config::load(&Given { config: Some(f), ..Default::default() }).expect("loads");
    assert_eq!((c.storage.as_str(), secret.as_str()), ("/srv/wal", "a WAL test passphrase"));
}

#[test]
fn a_credentials_file_keeps_values_whole_and_never_echoes_a_bad_line() {
    let d = tempfile::tempdir().expect("tmp");
    let p = d.path().join("s3.env");
    std::fs::write(&p, "AWS_ACCESS_KEY_ID=id\nAWS_SECRET_ACCESS_KEY=a=b#c \n\n").expect("write");
    let got = read_credentials(&p).expect("read");
    assert_eq!(got, vec![("AWS_ACCESS_KEY_ID".into(), "id".into()), ("AWS_SECRET_ACCESS_KEY".into(), "a=b#c ".into())]);
    std::fs::write(&p, "AWS_REGION=x\nPATH=/tmp/s3cr3t\n").expect("write");
    let e = read_credentials(&p).expect_err("not a store setting");
    assert!(e.message.contains("s3.env:2") && !e.message.contains("s3cr3t"), "{}", e.message);
    // Only the variables of the location's own scheme are carried, and no local path's.
    assert!(store_credentials("/srv/backups").is_empty());
}

/// Issue 41: one listing of `.cluster/` serves every system of a store: their identifiers,
/// and each one's inventory and continuity, the same as listing each archive on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn one_listing_of_the_cluster_tree_serves_every_systems_inventory_and_chain() {
    let store = tempfile::tempdir().expect("tmp");
    let s = FsStore::new(store.path());
    for system in [SYSTEM, SYSTEM + 1] {
        let d = data_dir(system);
        for segno in 1..=3 {
            let name = segment_name(1, segno, SEG);
            std::fs::write(d.path().join("pg_wal").join(&name), segment(system, segno, 0)).expect("write");
            push_to(&s, &cfg(store.path()), &Path::new("pg_wal").join(name), d.path()).await.expect("push");
        }
    }
    let tree = check::Tree::list(&s).await.expect("one listing");
    assert_eq!(tree.systems(), vec![SYSTEM, SYSTEM + 1]);
    for system in [SYSTEM, SYSTEM + 1] {
        let from_tree = tree.inventory(system, SEG);
        let alone = check::inventory(&s, system, SEG).await.expect("inventory");
        assert_eq!(from_tree.segments.keys().collect::<Vec<_>>(), alone.segments.keys().collect::<Vec<_>>());
        assert_eq!(from_tree.segments.len(), 3, "{from_tree:?}");
        let c = check::continuity_in(&s, &from_tree, &key(), (1, Lsn(SEG + 40)), Lsn(2 * SEG + 10), true)
            .await
            .expect("chain");
        assert!(c.reaches_stop && c.gaps.is_empty() && c.damaged.is_empty(), "{c:?}");
        assert_eq!((c.segments, c.system_identifier.clone()), (3, system.to_string()));
    }
}

/// The settings pgdrill writes for a server it starts (archive_command, restore_command):
/// the key in a file of its own, the config naming it, both 0600 in a 0700 folder; no
/// credentials file for a local archive.
#[test]
fn a_servers_wal_config_keeps_the_key_in_a_private_file_of_its_own() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().expect("tmp");
    let dir = d.path().join("wal");
    let conf = write_private_config(&dir, "/srv/wal", "a WAL test passphrase").expect("written");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!((mode(&conf), mode(&dir.join("wal.key"))), (0o600, 0o600));
    assert!(!std::fs::read_to_string(&conf).expect("conf").contains("passphrase"));
    assert!(!dir.join("store.env").exists());
    let (c, secret) = Config::load(&Given { config: Some(conf), ..Default::default() }).expect("loads");
    assert_eq!((c.storage.as_str(), secret.as_str()), ("/srv/wal", "a WAL test passphrase"));
}

/// The physical sources had a parser of their own that took `+1/2` (Rust's number parsing
/// accepts a leading `+`); PostgreSQL's `pg_lsn` refuses it, and so does the one parser now.
/// What both parsers accepted is still accepted, with the same value.
#[test]
fn lsn_parse_refuses_a_sign_the_physical_sources_parser_accepted() {
    for (text, value) in [
        ("16/B374D848", 0x16_B374_D848u64),
        ("0/3000028", 0x300_0028),
        ("ffffffff/ffffffff", u64::MAX),
        (" 1/2000028\n", 0x1_0200_0028),
        ("00000000/00000001", 1),
    ] {
        assert_eq!(Lsn::parse(text), Some(Lsn(value)), "{text:?}");
    }
    for bad in
        ["+1/2", "1/+2", "-1/2", "1/2/3", "123456789/0", "0/123456789", "/1", "1/", "0x1/2", "1 /2", "g/0", "nonsense"]
    {
        assert_eq!(Lsn::parse(bad), None, "{bad:?}");
    }
    assert_eq!(
        Lsn::parse("0/3000028").map(|l| l.segment_name(1, 16 << 20)).as_deref(),
        Some("000000010000000000000003")
    );
}
