//! Verification by restore on real servers with the real pg_dump, pg_restore and psql: a
//! clean backup passes and is recorded in the ledger; a changed manifest, a table left out,
//! a deleted row each fail naming the table; a corrupted archive fails at integrity before
//! any restore; another tool's `.sql.gz` and openssl-encrypted dump pass with the
//! fingerprint checks reported as skipped; a wrong key fails with exit 1 and leaves no server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common;
use crate::common::{made_dir, text, tmp_backups, written, Run, KEY_ENV};
use pgdrill::testkit::pg::ephemeral::Ephemeral;

const KEY: &str = "verify-test passphrase";

/// A source server with the roundtrip fixture's data, backed up with `KEY` into `backups/` in
/// a new folder.
struct Shop {
    dir: tempfile::TempDir,
    storage: PathBuf,
    src: Ephemeral,
    /// The backup.
    path: PathBuf,
}

async fn backed_up() -> Option<Shop> {
    let (dir, storage) = tmp_backups();
    let s = common::native_server("shop").await?;
    let client = pgdrill::testkit::pg::connect(&s.url()).await.expect("connect");
    client
        .batch_execute(
            "create role app_owner;
             create table customers (id serial primary key, name text not null, email text unique);
             insert into customers (name, email) select 'c' || g, 'c' || g || '@example.com' from generate_series(1, 500) g;
             create table orders (id bigserial primary key, customer int references customers, total numeric(12,2),
                                  placed timestamptz default '2026-01-01', note text);
             insert into orders (customer, total, note) select 1 + g % 500, g * 0.25, 'Grüße ' || g from generate_series(1, 5000) g;
             create index orders_customer on orders (customer);
             alter table orders owner to app_owner;",
        )
        .await
        .expect("load");
    let path = common::backup_to(&s.url(), &storage, KEY, "shop");
    Some(Shop { dir, storage, src: s, path })
}

/// `pgdrill run verify` of `shop` in `storage` with the vars `extra`, the backup key in its
/// environment.
fn verify(storage: &Path, extra: &[&str], junit: &Path) -> Run {
    Run::verify_native(storage.display(), "shop").junit(junit).vars(extra).key(KEY)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_backup_passes_every_check_and_is_recorded_then_skipped_unless_forced() {
    let Some(Shop { dir, storage, src, path }) = backed_up().await else { return };
    let junit = dir.path().join("verify.xml");
    let ran = verify(&storage, &[], &junit).expect(0);
    let cases = ran.junit();
    for check in ["integrity", "restore", "schema", "tables", "amcheck", "freshness", "rto"] {
        assert_eq!(cases.status(check), "passed", "{check} in {cases:?}");
    }
    let junit_text = cases.all_text();
    assert!(junit_text.contains("4 B-tree indexes checked"), "{junit_text}");
    assert!(junit_text.contains("match the source (counts and content hashes)"), "{junit_text}");
    // fingerprint=full (the default) checks every heap tuple is indexed.
    assert!(junit_text.contains("structure and heapallindexed"), "{junit_text}");
    assert!(!ran.all().contains(KEY), "the key leaked: {}", ran.all());
    // By default (`data: auto`) a small dump's throwaway keeps its files in memory, said so.
    assert!(ran.all().contains("data auto: in memory (/dev/shm)"), "{}", ran.all());

    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let line: serde_json::Value = serde_json::from_str(ledger.lines().next().unwrap_or("{}")).expect("json");
    assert_eq!(line["result"], "passed");
    assert_eq!(line["backup"], path.file_name().and_then(|n| n.to_str()).unwrap_or_default());
    assert_eq!(line["checks"]["tables"]["outcome"], "passed");

    let listed = Run::cli(["backups", "list", "--json", "--storage"]).arg(&storage).expect(0);
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).expect("list json");
    assert_eq!(listed[0]["last_verification"]["result"], "passed", "{listed}");

    // Already verified: nothing is restored again...
    let again = verify(&storage, &[], &junit).expect(0);
    assert_eq!(again.junit().status("restore"), "skipped");
    assert!(again.stdout.contains("already verified"), "{}", again.stdout);
    // ...unless forced. fingerprint=counts is the quick level: row counts, and amcheck
    // checks index structure without the heapallindexed scan.
    let forced = verify(&storage, &["force=true", "fingerprint=counts"], &junit).expect(0);
    assert_eq!(forced.junit().status("restore"), "passed");
    assert_eq!(forced.junit().status("amcheck"), "passed");
    let junit_text = forced.junit().all_text();
    assert!(junit_text.contains("structure only, without heapallindexed"), "{junit_text}");
    assert!(!junit_text.contains("structure and heapallindexed"), "{junit_text}");
    assert!(junit_text.contains("match the source (row counts)"), "{junit_text}");
    assert_eq!(std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger").lines().count(), 2);
    let left = common::staged_leftovers(&storage.join("shop"));
    assert!(left.is_empty(), "the staged dump is removed when the run ends: {left:?}");
    assert!(forced.stdout.contains("passed       integrity"), "{}", forced.stdout);

    // A directory-format backup (pg_dump -Fd -j, stored as tar) verifies the same way.
    Run::new("backup")
        .var("database_url", src.url())
        .var("storage", storage.display())
        .var("format", "directory")
        .key(KEY)
        .expect(0);
    let ran = verify(&storage, &[], &junit).expect(0);
    assert!(ran.all().contains(".dir.tar.pgdrill"), "the newest (directory) backup was verified: {}", ran.all());
    for check in ["integrity", "restore", "schema", "tables"] {
        assert_eq!(ran.junit().status(check), "passed", "{check}");
    }
}

/// Backups taken before field hashes existed carry row-text hashes (`hash`): they still verify,
/// hashed the same way, and a difference in one is still caught.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_with_the_first_row_text_hashes_still_verifies_and_its_differences_are_caught() {
    use pgdrill::testkit::pg::fingerprint::{compute_tables, Content, Mode};
    let Some(Shop { dir, storage, src, path }) = backed_up().await else { return };
    let c = pgdrill::testkit::pg::connect(&src.url()).await.expect("connect");
    c.batch_execute("begin isolation level repeatable read read only").await.expect("begin");
    let first = compute_tables(&c, Mode::Full, Content::RowText).await.expect("row-text hashes");
    c.batch_execute("commit").await.expect("commit");

    let manifest_path = pgdrill::testkit::backup::layout::manifest_path(&path);
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).expect("manifest")).expect("json");
    assert!(m["fingerprint"]["tables"]["public.orders"]["field_hash"].is_string(), "a new backup hashes fields");
    m["fingerprint"]["tables"] = serde_json::to_value(&first).expect("tables");
    assert!(m["fingerprint"]["tables"]["public.orders"]["field_hash"].is_null());
    common::write_rebound_manifest(&path, m.clone(), KEY);
    let ran = verify(&storage, &["force=true"], &dir.path().join("v1.xml")).expect(0);
    assert_eq!(ran.junit().status("tables"), "passed");

    m["fingerprint"]["tables"]["public.orders"]["hash"] = serde_json::json!("12345");
    common::write_rebound_manifest(&path, m, KEY);
    let ran = verify(&storage, &["force=true"], &dir.path().join("v1-changed.xml")).expect(1);
    assert!(ran.all().contains("public.orders: content differs"), "{}", ran.all());
    assert_eq!(ran.junit().status("tables"), "failure");
}

#[tokio::test(flavor = "multi_thread")]
async fn differences_fail_naming_the_table() {
    let Some(Shop { dir, storage, src: _src, path }) = backed_up().await else { return };

    // A manifest whose hash for one table was edited.
    let manifest_path = pgdrill::testkit::backup::layout::manifest_path(&path);
    let original = std::fs::read_to_string(&manifest_path).expect("manifest");
    let mut m: serde_json::Value = serde_json::from_str(&original).expect("json");
    m["fingerprint"]["tables"]["public.customers"]["field_hash"] = serde_json::json!("12345");
    // Re-bound with the key, as only a key holder can: otherwise the manifest's MAC fails
    // first (an_edited_manifest_of_an_encrypted_backup_was_trusted) and no table is compared.
    common::write_rebound_manifest(&path, m, KEY);
    let ran = verify(&storage, &[], &dir.path().join("verify.xml")).expect(1);
    let all = ran.all();
    assert!(all.contains("public.customers: content differs"), "{all}");
    assert!(!all.contains("public.orders:"), "only the edited table is named: {all}");
    assert_eq!(ran.junit().status("tables"), "failure");
    assert_eq!(ran.junit().status("schema"), "passed");
    std::fs::write(&manifest_path, &original).expect("restore manifest");

    // A table left out of the restore, and a row deleted from the restored copy.
    for (mutate, expected) in [
        ("drop table orders", "public.orders: missing from the restore (5000 rows expected)"),
        ("delete from orders where id = 7", "public.orders: 4999 rows, expected 5000"),
    ] {
        let ran = Run::new("fixtures/runbooks/verify-mutated.yaml")
            .var("backup", path.display())
            .var("mutate", mutate)
            .key(KEY)
            .expect(1);
        assert!(ran.all().contains(expected), "{mutate}: {}", ran.all());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_archive_fails_at_integrity_before_any_restore_a_wrong_key_exits_1_and_no_key_exits_2() {
    let Some(Shop { dir, storage, src: _src, path }) = backed_up().await else { return };
    let junit = dir.path().join("verify.xml");

    let good = std::fs::read(&path).expect("read");
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    std::fs::write(&path, &bad).expect("write");
    let ran = verify(&storage, &[], &junit).expect(1);
    let all = ran.all();
    let cases = ran.junit();
    assert_eq!(cases.status("integrity"), "failure", "{cases:?}");
    // The server starts beside the integrity check. Which finishes first depends on the
    // machine's load, so both are allowed: a start cancelled by the failure is reported as
    // skipped, one that was ready first as passed (and torn down); never as a failure.
    assert!(matches!(cases.status("scratch"), "skipped" | "passed"), "{cases:?}");
    assert_eq!(cases.status("restore"), "skipped", "{cases:?}");
    assert!(all.contains("corrupted backup"), "{all}");
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    assert!(ledger.contains("\"result\":\"failed\""), "{ledger}");
    std::fs::write(&path, &good).expect("write");

    let all = Run::new("verify")
        .var("storage", storage.display())
        .var("provider", "native")
        .key("not the right key")
        .expect(1)
        .all();
    assert!(all.contains("wrong key or corrupted backup"), "{all}");
    assert!(!all.contains("not the key"), "the key leaked: {all}");
    assert!(!all.contains("FAILED       scratch"), "the server start is not a verdict: {all}");

    // No key at all: the input's fault (exit 2), and the ledger records an error, never a
    // failed verification of a sound backup. (It was once a failed check, exit 1.)
    let ran = verify(&storage, &[], &dir.path().join("no-key.xml")).env_remove(KEY_ENV).expect(2);
    let all = ran.all();
    assert!(all.contains("the backup is encrypted: a key is needed"), "{all}");
    assert_eq!(ran.junit().status("integrity"), "error", "{all}");
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let last: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap_or("{}")).expect("json");
    assert_eq!(last["result"], "error", "a missing key recorded as a verdict: {ledger}");
}

fn pg_bin(tool: &str) -> String {
    format!("/usr/lib/postgresql/15/bin/{tool}")
}

#[tokio::test(flavor = "multi_thread")]
async fn dumps_made_by_other_tools_verify_with_fingerprint_checks_skipped() {
    let Some(Shop { dir, src, path: _path, .. }) = backed_up().await else { return };
    let foreign = made_dir(dir.path().join("foreign"));
    let env = |c: &mut Command| {
        c.env("PGHOST", &src.host)
            .env("PGPORT", src.port.to_string())
            .env("PGUSER", &src.user)
            .env("PGPASSWORD", &src.password)
            .env("PGDATABASE", "shop");
    };
    // The classic runbook's pipelines, run through a real shell.
    let scripts = [
        ("shop.sql", format!("{} > {}/shop.sql", pg_bin("pg_dump"), foreign.display())),
        ("shop.sql.gz", format!("{} | gzip -6 > {}/shop.sql.gz", pg_bin("pg_dump"), foreign.display())),
        ("shop.dump", format!("{} -Fc -f {}/shop.dump", pg_bin("pg_dump"), foreign.display())),
        ("shop.dir", format!("{} -Fd -j 2 -f {}/shop.dir", pg_bin("pg_dump"), foreign.display())),
        (
            "shop.sql.gz.enc",
            format!(
                "{} | gzip | openssl enc -aes-256-cbc -pbkdf2 -salt -pass env:PGDRILL_BACKUP_KEY > {}/shop.sql.gz.enc",
                pg_bin("pg_dump"),
                foreign.display()
            ),
        ),
    ];
    for (name, script) in &scripts {
        let mut c = Command::new("bash");
        c.args(["-c", &format!("set -o pipefail; {script}")]).env("PGDRILL_BACKUP_KEY", KEY);
        env(&mut c);
        let out = c.stdin(Stdio::null()).output().expect("sh");
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));

        let junit = dir.path().join(format!("{name}.xml"));
        let ran = verify(
            Path::new(""),
            &[&format!("backup={}/{name}", foreign.display()), "max_age=1h", "accept_unproven=true"],
            &junit,
        )
        .expect(0);
        let all = ran.all();
        let cases = ran.junit();
        assert_eq!(cases.status("integrity"), "passed", "{name}: {cases:?}");
        assert_eq!(cases.status("restore"), "passed", "{name}: {cases:?}");
        assert_eq!(cases.status("schema"), "skipped", "{name}: never passed without a source: {cases:?}");
        assert_eq!(cases.status("tables"), "skipped", "{name}: {cases:?}");
        assert!(all.contains("the restored copy has 2 tables, 5500 rows"), "{name}: counts still reported: {all}");
        assert!(all.contains("content unproven"), "{name}: never passed without ground truth: {all}");
    }

    // The wrong openssl passphrase is a failure, not a partial restore.
    let ran = Run::new("verify")
        .var("backup", format!("{}/shop.sql.gz.enc", foreign.display()))
        .var("provider", "native")
        .var("force", true)
        .junit(dir.path().join("wrong.xml"))
        .key("incorrect-secret-123")
        .expect(1);
    assert!(ran.all().contains("wrong passphrase or corrupted backup"), "{}", ran.all());
    assert_eq!(ran.junit().status("restore"), "skipped");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_roles_fail_with_advice_or_are_mapped() {
    let Some(Shop { dir: _dir, src: _src, path, .. }) = backed_up().await else { return };
    Run::new("fixtures/runbooks/restore-roles.yaml").var("backup", path.display()).key(KEY).expect(0);

    // Verify keeps ownership: the backup's roles are created first (issue 43), so the missing
    // role is no failure there any more.
    let all = Run::new("verify").var("backup", path.display()).var("provider", "native").key(KEY).expect(0).all();
    assert!(all.contains("passed       roles [globals.restore]"), "{all}");

    // Without a mapping, with ownership kept and without the roles, the missing role is named,
    // with the remedy.
    let runbook = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(
        runbook.path(),
        "name: restore-owned\nvars: { backup: ~ }\nsecrets:\n  key: { env: PGDRILL_BACKUP_KEY }\nsteps:\n  - id: scratch\n    uses: postgres.ephemeral\n    with: { provider: native }\n  - id: restore\n    uses: backup.restore\n    with: { backup: \"{{ vars.backup }}\", into: \"{{ steps.scratch.outputs.url }}\", key: \"{{ secrets.key }}\" }\n",
    )
    .expect("runbook");
    let all = Run::new(runbook.path()).var("backup", path.display()).key(KEY).expect(1).all();
    assert!(all.contains("role \"app_owner\" does not exist"), "{all}");
    assert!(all.contains("map them with `role_map`"), "{all}");
}

/// An index that cannot be built from the restored data (a unique index over duplicated rows,
/// in a hand-edited plain dump) fails in the last part of the restore, after every row is in:
/// `restore` fails with the server's reason and nothing after it is reported as passed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failure_building_indexes_after_the_data_fails_restore_and_nothing_passes() {
    let Some(Shop { dir, src, path: _path, .. }) = backed_up().await else { return };
    let out = Command::new(pg_bin("pg_dump"))
        .env("PGHOST", &src.host)
        .env("PGPORT", src.port.to_string())
        .env("PGUSER", &src.user)
        .env("PGPASSWORD", &src.password)
        .env("PGDATABASE", "shop")
        .stdin(Stdio::null())
        .output()
        .expect("pg_dump");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plain = text(&out.stdout);
    // orders.customer repeats every 500 rows: a unique index over it cannot be built.
    let index = "CREATE INDEX orders_customer ON public.orders";
    assert!(plain.contains(index), "the dump builds orders_customer: {plain}");
    let edited = plain.replace(index, "CREATE UNIQUE INDEX orders_customer ON public.orders");
    let dump = written(dir.path().join("shop-edited.sql"), edited);

    let junit = dir.path().join("edited.xml");
    // A failed restore is a failed verify.
    let ran = verify(Path::new(""), &[&format!("backup={}", dump.display()), "max_age=1h"], &junit).expect(1);
    let all = ran.all();
    let cases = ran.junit();
    assert_eq!(cases.status("integrity"), "passed", "{cases:?}");
    assert_eq!(cases.status("restore"), "failure", "{cases:?}");
    assert!(all.contains("could not create unique index"), "the server's reason is shown: {all}");
    for check in ["schema", "tables", "amcheck"] {
        assert_ne!(cases.status(check), "passed", "{check} after a failed restore: {cases:?}");
    }
}

/// An index that cannot be built fails `restore` with the server's reason, and nothing that
/// follows or waits for the restore passes: amcheck, which checked indexes beside it, says
/// its check is not of every index. Restored in sections by hand (`backup.restore`'s
/// `sections`), the same index fails the post-data step while pre-data and data pass; a SQL
/// script cannot be restored in parts, and a post-data-only restore of one is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_index_that_cannot_be_built_fails_the_restore_and_in_sections_fails_post_data() {
    let (dir, storage) = tmp_backups();
    let Some(s) = common::native_server("shop").await else { return };
    let client = pgdrill::testkit::pg::connect(&s.url()).await.expect("connect");
    // An expression index whose function refuses to run for pg_restore: it builds here, and
    // fails when a restore builds it.
    client
        .batch_execute(
            "create table items (id int primary key, name text);
             insert into items select g, 'i' || g from generate_series(1, 1000) g;
             create function picky(int) returns int language plpgsql immutable as $$
               begin
                 if current_setting('application_name') = 'pg_restore' then
                   raise exception 'picky refuses pg_restore';
                 end if;
                 return $1;
               end $$;
             create index items_picky on items (picky(id));",
        )
        .await
        .expect("load");
    let path = common::backup_to(&s.url(), &storage, KEY, "shop");
    let ran = verify(&storage, &[], &dir.path().join("verify.xml")).expect(1);
    assert!(ran.all().contains("picky refuses pg_restore"), "the server's reason is shown: {}", ran.all());
    let cases = ran.junit();
    assert_eq!(cases.status("restore"), "failure", "{cases:?}");
    for check in ["amcheck", "tables", "schema"] {
        assert_eq!(cases.status(check), "skipped", "{check} after a failed restore: {cases:?}");
    }
    let ledger = std::fs::read_to_string(storage.join("shop/ledger.jsonl")).expect("ledger");
    let line: serde_json::Value = serde_json::from_str(ledger.lines().last().unwrap_or("{}")).expect("json");
    assert_eq!(line["result"], "failed", "{line}");

    // In sections, into a fresh database of the same server.
    client.batch_execute("create database parts").await.expect("create");
    let into = s.url().replace("/shop", "/parts");
    assert_ne!(into, s.url(), "{into}");
    let rb = dir.path().join("sections.yaml");
    std::fs::write(
        &rb,
        r#"name: sections
vars: { backup: ~, into: ~ }
secrets: { key: { env: PGDRILL_BACKUP_KEY } }
steps:
  - id: check
    uses: backup.check
    with: { path: "{{ vars.backup }}", key: "{{ secrets.key }}", stage: true }
  - id: data
    uses: backup.restore
    with: { backup: "{{ vars.backup }}", staged: "{{ steps.check.outputs.staged }}", into: "{{ vars.into }}", key: "{{ secrets.key }}", jobs: 2, no_owner: true, sections: [pre-data, data] }
  - id: post
    uses: backup.restore
    with: { backup: "{{ vars.backup }}", staged: "{{ steps.check.outputs.staged }}", into: "{{ vars.into }}", key: "{{ secrets.key }}", jobs: 2, no_owner: true, sections: [post-data] }
"#,
    )
    .expect("write");
    let ran = Run::new(&rb)
        .var("backup", path.display())
        .var("into", &into)
        .report(dir.path().join("report"))
        .key(KEY)
        .expect(1);
    let all = ran.all();
    let run = ran.run_json();
    assert_eq!(run.step("data").outcome, "passed", "{all}");
    assert_eq!(run.step("data").outputs["sections"], serde_json::json!(["pre-data", "data"]), "{all}");
    assert_eq!(run.step("post").outcome, "failed", "{all}");
    assert!(run.step("post").message.as_deref().unwrap_or_default().contains("picky refuses pg_restore"), "{all}");
    let parts = pgdrill::testkit::pg::connect(&into).await.expect("connect parts");
    let rows: i64 = parts.query_one("select count(*) from items", &[]).await.expect("count").get(0);
    assert_eq!(rows, 1000, "the data section was restored");

    // A SQL script has no sections: post-data alone is refused, before anything is run.
    let sql = written(dir.path().join("items.sql"), "create table t (x int);\n");
    std::fs::write(
        &rb,
        "name: sections\nvars: { backup: ~, into: ~ }\nsteps:\n  - id: post\n    uses: backup.restore\n    with: { backup: \"{{ vars.backup }}\", into: \"{{ vars.into }}\", sections: [post-data] }\n",
    )
    .expect("write");
    let all = Run::new(&rb).var("backup", sql.display()).var("into", &into).expect(2).all();
    assert!(all.contains("this one is a SQL script"), "{all}");
}

/// amcheck's verdict, on two connections: an index whose expression no longer gives what it
/// stored (its function was replaced) is found by heapallindexed and named, the sound index
/// beside it is not, and structure-only checking (the `counts` level) does not see it, as
/// the README says.
#[tokio::test(flavor = "multi_thread")]
async fn amcheck_names_an_index_missing_heap_tuples_and_only_that_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let Some(s) = common::native_server("idx").await else { return };
    let client = pgdrill::testkit::pg::connect(&s.url()).await.expect("connect");
    client
        .batch_execute(
            "create table t (x int);
             insert into t select g from generate_series(1, 2000) g;
             create index t_sound on t (x);
             create function f(int) returns int language sql immutable as 'select $1';
             create index t_lying on t (f(x));
             create or replace function f(int) returns int language sql immutable as 'select -$1';",
        )
        .await
        .expect("load");
    let rb = written(
        dir.path().join("amcheck.yaml"),
        // Beside a step it follows: the last listing is taken once that step has ended.
        "name: amcheck\nvars: { url: ~, heap: true }\nsteps:\n  - parallel:\n      - id: build\n        uses: sleep\n        with: { duration: 1s }\n      - id: amcheck\n        uses: verify.amcheck\n        with: { url: \"{{ vars.url }}\", heapallindexed: \"{{ vars.heap }}\", jobs: 2, follow: build }\n",
    );
    let run = |heap: bool| Run::new(&rb).var("url", s.url()).var("heap", heap);
    let all = run(true).expect(1).all();
    assert!(all.contains("1 index difference: t_lying:"), "only the lying index is named: {all}");
    assert!(!all.contains("t_sound:"), "{all}");
    // Structure only does not see a missing heap tuple.
    run(false).expect(0);
    // The extension the check added is gone again.
    let left = client.query_opt("select 1 from pg_extension where extname = 'amcheck'", &[]).await.expect("query");
    assert!(left.is_none(), "amcheck left its extension behind");
}

/// `--var staging=memory`: the checked plain dump is staged in /dev/shm (it fits), never on
/// the disk beside the backup, and is gone when the run ends.
#[tokio::test(flavor = "multi_thread")]
async fn staging_in_memory_keeps_the_plain_dump_in_dev_shm_and_removes_it() {
    let Some(Shop { dir, storage, src: _src, path: _path }) = backed_up().await else { return };
    let ran = verify(&storage, &["staging=memory"], &dir.path().join("verify.xml")).expect(0);
    let xml = ran.junit().all_text();
    assert!(xml.contains("staging in memory (/dev/shm)"), "{xml}");
    let staged = xml
        .split("staged the checked dump (")
        .nth(1)
        .and_then(|r| r.split(" in ").nth(1))
        .and_then(|r| r.split(" for the restore").next())
        .expect("the staged file is named")
        .to_string();
    assert!(staged.starts_with("/dev/shm/.pgdrill-stage-"), "{staged}");
    assert!(!std::path::Path::new(&staged).exists(), "the staged plaintext outlived the run: {staged}");
    let beside: Vec<_> = std::fs::read_dir(storage.join("shop"))
        .expect("folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pgdrill-stage-"))
        .collect();
    assert!(beside.is_empty(), "staged beside the backup too: {beside:?}");
}

/// Issue 34, case 4 (the verify half): the manifest did not record the database's
/// encoding, locale provider and ICU locale, and verify restored every backup into the
/// throwaway's `postgres` database (C locale), so an ICU database was verified as another
/// database's collation. The manifest records them now and the throwaway database is
/// created with them; a server that lacks the locale creates it with its defaults and says
/// what stays unproven.
#[tokio::test(flavor = "multi_thread")]
async fn an_icu_database_was_verified_in_a_c_locale_throwaway() {
    let (dir, storage) = tmp_backups();
    let Some(s) = common::native_server("postgres").await else { return };
    common::exec(
        &s.url(),
        "create database icu_app template template0 encoding 'UTF8' locale_provider icu icu_locale 'sv-SE'",
    )
    .await;
    let url = s.url_for("icu_app");
    common::exec(&url, "create table words(w text primary key); insert into words values ('a'), ('B'), ('ä'), ('z')")
        .await;
    let path = common::backup_to(&url, &storage, KEY, "icu_app");
    let m = pgdrill::testkit::backup::Manifest::read(&path).expect("manifest");
    let p = m.database_properties.expect("the manifest records the database's properties");
    assert_eq!(
        (p.encoding.as_str(), p.locale.provider.as_str(), p.locale.name.as_str()),
        ("UTF8", "icu", "sv-SE"),
        "{p:?}"
    );

    let verify = |storage: &Path, report: &Path| {
        Run::verify_native(storage.display(), "icu_app").var("force", "true").report(report).key(KEY).expect(0)
    };
    let ran = verify(&storage, &dir.path().join("icu"));
    let json = ran.run_json();
    let created = json.step("scratch_db");
    assert_eq!(created.outcome, "passed");
    assert!(
        created.log.iter().any(|l| l.contains("created as the backup's source database: UTF8, icu sv-SE")),
        "{:?}",
        created.log
    );

    // A throwaway without the source's locale: an unencrypted backup whose manifest names
    // one no server here has (nothing binds an unencrypted manifest, so it can be edited).
    let plain = dir.path().join("plain");
    let out = common::Run::new("backup")
        .var("database_url", url)
        .var("storage", plain.display())
        .var("encrypt", "false")
        .command()
        .env_remove(KEY_ENV)
        .output()
        .expect("backup");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let backup = common::backup_in(&plain.join("icu_app"));
    let mp = pgdrill::testkit::backup::layout::manifest_path(&backup);
    let edited = std::fs::read_to_string(&mp)
        .expect("manifest")
        .replace("\"sv-SE\"", "\"xx-nowhere@colStrength=bogus\"")
        .replace("\"lc_collate\": \"C\"", "\"lc_collate\": \"xx_XX.NOPE\"");
    assert!(edited.contains("xx_XX.NOPE"), "{edited}");
    std::fs::write(&mp, edited).expect("write");
    let ran = Run::verify_native(plain.display(), "icu_app")
        .report(dir.path().join("fallback"))
        .env_remove(KEY_ENV)
        .expect(0);
    let json = ran.run_json();
    let created = json.step("scratch_db");
    assert!(
        created.log.iter().any(|l| l.contains("warning: this server cannot create the database as the source's")
            && l.contains("xx_XX.NOPE")
            && l.contains("is not proven as the source's")),
        "{:?}",
        created.log
    );

    // The operator restore creates a database new to its server as the source was, and
    // its preflight refuses, changing nothing, a server that lacks the source's locales.
    let restore = |storage: &Path, target: &str, key: bool| {
        let r = Run::new("restore")
            .var("database_url", s.url())
            .var("storage", storage.display())
            .var("database", "icu_app")
            .var("target", target)
            .var("jobs", "1")
            .arg("--yes");
        if key { r.key(KEY) } else { r.env_remove(KEY_ENV) }.output()
    };
    let ran = restore(&storage, "icu_copy", true);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(
        common::scalar(
            &s.url(),
            "select datlocprovider::text || ' ' || daticulocale from pg_database where datname = 'icu_copy'"
        )
        .await,
        "i sv-SE"
    );
    let ran = restore(&plain, "icu_nowhere", false);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let all = ran.all();
    assert!(all.contains("this server lacks the operating system locale 'xx_XX.NOPE'"), "{all}");
    assert!(all.contains("this server lacks the ICU locale 'xx-nowhere@colStrength=bogus'"), "{all}");
    assert_eq!(
        common::scalar(&s.url(), "select count(*) from pg_database where datname = 'icu_nowhere'").await,
        "0",
        "nothing created"
    );
    s.stop().await;
}
