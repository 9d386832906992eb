//! The objects logical backups and fingerprints most often get wrong (fixtures/sql/edge.sql)
//! on real servers with the real pg_dump and pg_restore: backup.check counts their tables
//! right in every format; a faithful round trip through `run backup` and `run verify` passes
//! every check (native, and Docker when the local image is there); and each deliberate
//! change to a restored copy is named by the fingerprint comparison.

use std::path::Path;

use crate::common;
use crate::common::{junit_cases, status_of, text, tmp_backups, written, Run};
use pgdrill::testkit::archive::{Codec, KeySource};
use pgdrill::testkit::backup::restore::{restore, RestoreOptions};
use pgdrill::testkit::backup::{self, CreateOptions, Format};
use pgdrill::testkit::pg::fingerprint::Mode;

const KEY: &str = "edge-fixture passphrase";

fn no_log(_: String) {}

fn opts(url: &str, storage: &Path, format: Format) -> CreateOptions {
    common::create_options(url, storage, format, Codec::Zstd, Some(KEY))
}

/// Load the shipped `types` and `edge` fixtures through `fixtures.load`, as a drill does.
fn load_fixtures(url: &str) {
    let out = Run::new("fixtures/runbooks/load-edge.yaml").var("url", url).raw();
    assert!(out.status.success(), "load: {}{}", text(&out.stdout), text(&out.stderr));
}

fn verify(storage: &Path, database: &str, provider: &str, junit: &Path) -> std::process::Output {
    let image = std::env::var("PGDRILL_TEST_IMAGE").unwrap_or_else(|_| "pgdrill/postgres-local:15".into());
    Run::new("verify")
        .var("storage", storage.display())
        .var("database", database)
        .var("provider", provider)
        .var("force", "true")
        .junit(junit)
        .command()
        .env("PGDRILL_BACKUP_KEY", KEY)
        .env(pgdrill::testkit::pg::docker::IMAGE_ENV, image)
        .output()
        .expect("verify runs")
}

/// Every check of the verify runbook passed: not failed, and not skipped either.
fn assert_every_check_passed(out: &std::process::Output, junit: &Path, what: &str) {
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{what}: {all}");
    let cases = junit_cases(junit);
    for check in ["integrity", "restore", "schema", "tables", "amcheck"] {
        assert_eq!(status_of(&cases, check), "passed", "{what}: {check} in {cases:?}\n{all}");
    }
}

/// Regression: `backup.check` counted `TABLE ATTACH` entries of `pg_restore --list` as tables,
/// so any database with declarative partitions failed its own backup ("the dump lists 18
/// tables, the manifest 15"); it missed a table in a schema named `DATA` (its entry reads
/// `TABLE DATA t owner`); a plain dump was counted by `CREATE TABLE` lines, which misses
/// `CREATE UNLOGGED TABLE` and counts data rows holding DDL; and an extension's own table
/// (PostGIS's spatial_ref_sys), which no dump lists, was in the manifest's count.
#[tokio::test(flavor = "multi_thread")]
async fn backup_check_counted_partition_attach_entries_and_data_rows_as_tables() {
    let Some(s) = common::native_server("parts").await else { return };
    common::exec(&s.url(), "create table p (id int, at date) partition by range (at);
         create table p_2025 partition of p for values from ('2025-01-01') to ('2026-01-01');
         create table p_2026 partition of p for values from ('2026-01-01') to ('2027-01-01') partition by hash (id);
         create table p_2026_0 partition of p_2026 for values with (modulus 2, remainder 0);
         create table p_2026_1 partition of p_2026 for values with (modulus 2, remainder 1);
         create table p_other partition of p default;
         insert into p select g, date '2025-01-01' + g from generate_series(1, 900) g;
         create table parent (id int); create table child (extra int) inherits (parent);
         insert into child values (1, 2);
         create unlogged table scratch (a int); insert into scratch values (1);
         create schema \"DATA\"; create table \"DATA\".t (a int); insert into \"DATA\".t values (1);
         create table migrations (statement text);
         insert into migrations values ('CREATE TABLE users (id int)'), ('-- Name: x; Type: TABLE; Schema: public; Owner: x');
         create function make() returns void language plpgsql as $$
         begin
         CREATE TABLE made (a int);
         end $$;
         create extension postgres_fdw;
         create server elsewhere foreign data wrapper postgres_fdw;
         create foreign table remote (a int) server elsewhere;
         create materialized view mv as select 1 as one;
         create table belongs_to_an_extension (a int);
         alter extension postgres_fdw add table belongs_to_an_extension;").await;
    // p, p_2025, p_2026, p_2026_0, p_2026_1, p_other, parent, child, scratch, "DATA".t,
    // migrations: not the foreign table, the view, nor the extension's table.
    let expected = 11;
    let dir = tempfile::tempdir().expect("tmp");
    for format in [Format::Custom, Format::Plain, Format::Directory] {
        let created = backup::create(opts(&s.url(), dir.path(), format), &no_log).await.expect("backup");
        assert_eq!(created.manifest.table_count(), Some(expected), "{format:?}: the manifest's count");
        let checked = tokio::task::block_in_place(|| backup::check(&created.path, Some(&KeySource::from_secret(KEY))))
            .unwrap_or_else(|e| panic!("{format:?}: {e}"));
        assert_eq!(checked.tables, expected, "{format:?}: the dump's count");
    }
}

/// Regression: verify.amcheck handed a partitioned table's own index (relkind `I`, no
/// storage) to bt_index_check, which refuses it: any database with an index on a
/// partitioned table failed verification.
#[tokio::test(flavor = "multi_thread")]
async fn amcheck_failed_on_the_index_of_a_partitioned_table() {
    let data = "create table p (id int primary key, kind text) partition by range (id);
         create table p_1 partition of p for values from (0) to (100);
         create table p_2 partition of p for values from (100) to (200) partition by hash (id);
         create table p_2_0 partition of p_2 for values with (modulus 1, remainder 0);
         create index p_kind on p (kind);
         insert into p select g, 'k' || g % 3 from generate_series(0, 199) g;";
    let Some(s) = common::native_server_with("parts", data).await else { return };
    let dir = tempfile::tempdir().expect("tmp");
    let runbook = written(dir.path().join("amcheck.yaml"), "name: amcheck\nvars: { url: ~ }\nsteps:\n  - id: amcheck\n    uses: verify.amcheck\n    with: { url: \"{{ vars.url }}\" }\n");
    let report = dir.path().join("report");
    let out = Run::new(&runbook).var("url", s.url()).report(&report).command().output().expect("run");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{all}");
    // The leaves' indexes are checked: p_1 and p_2_0, a primary key and a kind index each.
    let amcheck = common::RunJson::read(&report).step("amcheck").clone();
    assert_eq!(amcheck.outputs["indexes"], 4, "{amcheck:?}");
}

/// Regression: the columns fingerprint held `attnum`, so a table that once lost a column in
/// the middle (or a partition created apart with one dropped) failed `schema` after a
/// faithful restore, which numbers its columns afresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_table_with_a_dropped_column_is_not_a_schema_difference() {
    let data = "create table t (a int, gone text, b int); alter table t drop column gone; insert into t values (1, 2);";
    let Some((s, dir, storage)) = common::source_and_storage("dropped", data).await else { return };
    common::backup_to(&s.url(), &storage, KEY, "dropped");
    let junit = dir.path().join("verify.xml");
    let out = verify(&storage, "dropped", "native", &junit);
    assert_every_check_passed(&out, &junit, "native");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_edge_fixture_round_trips_through_backup_and_verify_with_every_check_passed() {
    let Some(s) = common::native_server("edge").await else { return };
    load_fixtures(&s.url());
    let (dir, storage) = tmp_backups();
    common::backup_to(&s.url(), &storage, KEY, "edge");
    let junit = dir.path().join("verify.xml");

    let out = verify(&storage, "edge", "native", &junit);
    assert_every_check_passed(&out, &junit, "native, custom format");
    // The comparison saw the edge objects, not an empty fingerprint.
    let junit_text = std::fs::read_to_string(&junit).expect("junit");
    assert!(junit_text.contains("match the source (counts and content hashes)"), "{junit_text}");

    // The directory format (pg_dump -Fd -j, stored as tar) and the plain format too.
    for format in ["directory", "plain"] {
        let backed = Run::new("backup")
            .var("database_url", s.url())
            .var("storage", storage.display())
            .var("format", format)
            .command()
            .env("PGDRILL_BACKUP_KEY", KEY)
            .output()
            .expect("backup");
        assert!(backed.status.success(), "{format}: {}{}", text(&backed.stdout), text(&backed.stderr));
        let out = verify(&storage, "edge", "native", &junit);
        assert_every_check_passed(&out, &junit, format);
    }

    if common::docker_ready(&common::test_image()) {
        let out = verify(&storage, "edge", "docker", &junit);
        assert_every_check_passed(&out, &junit, "docker");
    }
}

/// Backups already written carry content hashes computed as `sum(hash::numeric)`; the
/// cheaper `sum(hash)` must give the same text for every table of the edge fixture, for a
/// table whose sum leaves the range of a bigint, and for an empty one.
#[tokio::test(flavor = "multi_thread")]
async fn the_content_hash_is_the_text_earlier_backups_recorded() {
    let Some(src) = common::native_server("edge").await else { return };
    load_fixtures(&src.url());
    common::exec(
        &src.url(),
        "create table public.beyond_bigint as select g, md5(g::text) as t from generate_series(1, 5000) g; \
         create table public.nothing (a int)",
    )
    .await;
    let c = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    c.batch_execute("begin isolation level repeatable read read only").await.expect("begin");
    let prints = pgdrill::testkit::pg::fingerprint::compute_tables(
        &c,
        Mode::Full,
        pgdrill::testkit::pg::fingerprint::Content::RowText,
    )
    .await
    .expect("tables");
    assert!(prints.len() > 10, "the edge fixture's tables: {prints:?}");
    let mut beyond = false;
    for (table, print) in &prints {
        let first =
            format!("select {} from {table} x", pgdrill::testkit::pg::fingerprint::CONTENT_HASH_AS_FIRST_WRITTEN);
        let want: String = c.query_one(first.as_str(), &[]).await.expect("first form").get(0);
        assert_eq!(print.hash.as_deref(), Some(want.as_str()), "{table}");
        beyond |= want.trim_start_matches('-').parse::<i64>().is_err();
    }
    assert_eq!(prints["public.nothing"].hash.as_deref(), Some("0"));
    assert!(beyond, "some sum leaves the range of a bigint: {prints:?}");
    c.batch_execute("commit").await.expect("commit");
    src.stop().await;
}

/// The field hashes see a change that the types' own equality hides: under a
/// nondeterministic collation, in a numeric's scale, a jsonb number's form, an interval's
/// units, a citext's case. Each change is made to the one row, and each must move the hash.
#[tokio::test(flavor = "multi_thread")]
async fn field_hashes_see_changes_that_equality_hides() {
    use pgdrill::testkit::pg::fingerprint::{compute_tables, Content};
    let Some(src) = common::native_server("fields").await else { return };
    common::exec(
        &src.url(),
        "create extension citext; \
         create collation nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false); \
         create table t (id int, name text collate nocase, n numeric, j jsonb, iv interval, ci citext, c char(3)); \
         insert into t values (1, 'abc', 1.5, '{\"a\": 1}', '1 day', 'MiXeD', 'ab')",
    )
    .await;
    let hash = || async {
        let c = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
        c.batch_execute("begin isolation level repeatable read read only").await.expect("begin");
        let p = compute_tables(&c, Mode::Full, Content::Fields).await.expect("tables");
        c.batch_execute("commit").await.expect("commit");
        p["public.t"].field_hash.clone().expect("a field hash")
    };
    let mut before = hash().await;
    for change in [
        "update t set name = 'ABC'",
        "update t set n = 1.50",
        "update t set j = '{\"a\": 1.0}'",
        "update t set iv = '24:00:00'",
        "update t set ci = 'mixed'",
    ] {
        common::exec(&src.url(), change).await;
        let after = hash().await;
        assert_ne!(after, before, "`{change}` did not change the field hash");
        before = after;
    }
    // The same values again give the same hash (nothing random in it).
    assert_eq!(hash().await, before);
    src.stop().await;
}

/// Restore the newest backup once, then change copies of it (CREATE DATABASE ... TEMPLATE) one
/// way each and compare each with the source fingerprint through `verify.fingerprint`.
#[tokio::test(flavor = "multi_thread")]
async fn each_deliberate_change_to_a_restored_copy_is_caught_by_the_fingerprint() {
    let Some(src) = common::native_server("edge").await else { return };
    load_fixtures(&src.url());
    let (_dir, storage) = tmp_backups();
    let path = common::backup_to(&src.url(), &storage, KEY, "edge");
    src.stop().await;
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}.manifest.json", path.display())).expect("manifest"))
            .expect("json");
    let expected: pgdrill::testkit::pg::fingerprint::Fingerprint =
        serde_json::from_value(manifest["fingerprint"].clone()).expect("fingerprint");
    assert_eq!(expected.content(), pgdrill::testkit::pg::fingerprint::Content::Fields, "a 15 source hashes fields");

    let Some(scratch) = common::native_server("restored").await else { return };
    restore(
        RestoreOptions {
            backup: pgdrill::testkit::backup::restore::RestoreFrom::File {
                path: path.clone(),
                tree: pgdrill::testkit::storage::tree::Tree::local(path.parent().expect("the backup's folder")),
            },
            into: scratch.url(),
            key: Some(KEY.into()),
            jobs: 1,
            create: false,
            clean: false,
            no_owner: true,
            role_map: Default::default(),
            staging: None,
            staged: None,
            bin_dir: None,
            meter: None,
            sections: Default::default(),
        },
        &no_log,
    )
    .await
    .expect("restore");

    let compare = |db: &str| {
        let out = Run::new("fixtures/runbooks/fingerprint-compare.yaml")
            .var("backup", path.display())
            .var("url", scratch.url_for(db))
            .command()
            .output()
            .expect("compare runs");
        (out.status.code(), format!("{}{}", text(&out.stdout), text(&out.stderr)))
    };
    let admin = pgdrill::testkit::pg::connect(&scratch.url_for("postgres")).await.expect("connect");

    // The copy itself is faithful: what follows is caught because of the change alone.
    admin.batch_execute("create database unchanged template restored").await.expect("copy");
    let (code, all) = compare("unchanged");
    assert_eq!(code, Some(0), "an unchanged copy: {all}");

    let cases: &[(&str, &str, &str)] = &[
        (
            "partition_row",
            "update edge.events_2024 set kind = 'tampered' where id = (select min(id) from edge.events_2024)",
            "edge.events_2024: content differs",
        ),
        ("minus_zero", "update edge.every_type set f8 = 0 where id = 4", "edge.every_type: content differs"),
        ("nan", "update edge.every_type set num = 0 where id = 2", "edge.every_type: content differs"),
        // Equal values with another text: the content hash hashes these types' text, not their
        // hash functions, which would take each pair for the same value.
        ("numeric_scale", "update edge.every_type set num = 1.50 where id = 1", "edge.every_type: content differs"),
        ("citext_case", "update edge.every_type set ci = 'mixed' where id = 1", "edge.every_type: content differs"),
        ("interval_form", "update edge.every_type set iv = '26:03:04' where id = 1", "edge.every_type: content differs"),
        ("jsonb_number", "update edge.every_type set jb = '{\"a\": 1.0}' where id = 1", "edge.every_type: content differs"),
        // Per-column sums would not see this; a hash per row does.
        (
            "values_swapped_between_rows",
            "update edge.every_type set i4 = case id when 1 then 2147483647 else 1 end where id in (1, 3)",
            "edge.every_type: content differs",
        ),
        ("large_object", "select lo_put(910001, 0, '\\x58')", "large_objects: missing 3 large objects"),
        (
            "sequence_reset",
            "select setval(pg_get_serial_sequence('edge.booking', 'id'), 100)",
            "is at 100, behind the source's",
        ),
        ("descending_sequence", "select setval('edge.countdown', -1)", "edge.countdown is at -1, behind the source's -7"),
        ("policy_dropped", "drop policy tenant_write on edge.tenant_rows", "policies: missing edge.tenant_rows tenant_write"),
        ("rls_off", "alter table edge.tenant_rows no force row level security", "relations: missing edge.tenant_rows"),
        ("comment", "comment on column edge.every_type.f8 is 'changed'", "comments: missing column f8 of table edge.every_type"),
        ("default", "alter table edge.car alter column doors set default 5", "columns: missing edge.car"),
        (
            "generated_became_default",
            "update pg_attribute set attgenerated = '' where attrelid = 'edge.booking'::regclass and attname = 'price_with_tax'",
            "column_details: missing edge.booking price_with_tax generated stored",
        ),
        (
            "enum_order",
            "update pg_enum set enumsortorder = 10 where enumtypid = 'edge.mood'::regtype and enumlabel = 'sad'",
            "types: missing edge.mood e 'sad','ok','happy','überglücklich'",
        ),
        (
            "domain_check",
            "alter domain edge.positive_int drop constraint positive_int_check",
            "types: missing edge.positive_int d integer not null default 1 positive_int_check",
        ),
        ("unlogged_became_logged", "alter table edge.cache set logged", "relations: missing edge.cache kind=r persistence=u"),
        (
            "trigger_enabled",
            "alter table edge.documents enable trigger documents_audit",
            "triggers: missing CREATE TRIGGER documents_audit",
        ),
        ("function_volatility", "alter function edge.add_tax(numeric) volatile", "routines: missing edge.add_tax(numeric)"),
        ("index_dropped", "drop index edge.documents_origin", "indexes: missing CREATE INDEX documents_origin"),
        ("matview_emptied", "refresh materialized view edge.events_per_kind with no data", "populated=t replica"),
        ("rule_dropped", "drop rule documents_delete_log on edge.documents", "objects: missing rule documents_delete_log"),
        ("statistics_dropped", "drop statistics edge.booking_room_price", "objects: missing statistics edge.booking_room_price"),
        ("aggregate_dropped", "drop aggregate edge.product(numeric)", "objects: missing aggregate edge.product(numeric)"),
        (
            "publication_table_dropped",
            "alter publication edge_changes drop table edge.booking",
            "objects: missing publication edge_changes table edge.booking",
        ),
        ("cast_dropped", "drop cast (edge.mood as int)", "objects: missing cast (edge.mood as integer)"),
    ];
    for (name, sql, expected) in cases {
        admin.batch_execute(&format!("create database m_{name} template restored")).await.expect("copy");
        common::exec(&scratch.url_for(&format!("m_{name}")), sql).await;
        let (code, all) = compare(&format!("m_{name}"));
        assert_eq!(code, Some(1), "{name} ({sql}) was not caught: {all}");
        assert!(all.contains(expected), "{name} ({sql}): expected `{expected}` in\n{all}");
    }
}
