//! What a verify proved of a backup's content, as every output says it (issue 35, case 2):
//! "restorable, content unproven" is its own outcome in JUnit, run.json and the compliance
//! report, and the earlier verified backup's schema is a ground truth too.

use std::path::Path;

use crate::common::*;

/// A verify of `backup` (no live source) with `vars`, writing JUnit and a report.
fn verify(backup: &Path, vars: &[&str], out: &Path) -> Ran {
    Run::new("verify")
        .var("backup", backup.display())
        .var("provider", "native")
        .var("max_age", "36000d")
        .var("force", true)
        .vars(vars)
        .junit(out.join("junit.xml"))
        .report(out.join("report"))
        .env_remove("PGDRILL_SOURCE_URL")
        .output()
}

/// Rewrite the ledger at `ledger` as one written before its entries kept `field`.
fn ledger_without(ledger: &Path, field: &str) {
    let old: Vec<String> = std::fs::read_to_string(ledger)
        .expect("ledger")
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).expect("json");
            v.as_object_mut().map(|m| m.remove(field));
            v.to_string()
        })
        .collect();
    std::fs::write(ledger, old.join("\n") + "\n").expect("older ledger");
}

/// Before: a verify of another tool's dump with no ground truth was, in JUnit, a plain
/// `<failure type="failed">` (or, accepted, a plain `<skipped>`) like any other check, and
/// run.json and the compliance report said only "failed" or "passed": an accepted unproven
/// run read as a plain pass everywhere but the ledger. Now the check's failure or skip has
/// type `unproven`, the suite says `content: unproven`, run.json, report.json and the history
/// carry `content: unproven` beside the outcome, and report.md's title says CONTENT
/// UNPROVEN; a ground truth that holds says `proven`.
#[tokio::test(flavor = "multi_thread")]
async fn a_verify_without_ground_truth_was_a_plain_failure_or_a_plain_pass_in_junit_and_run_json() {
    let Some(src) = native_server("app").await else { return };
    exec(
        &src.url(),
        "create table accounts (id int primary key, name text);
         insert into accounts select g, 'n' || g from generate_series(1, 300) g;",
    )
    .await;
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let f = d.join("app-20240105T130000.sql.gz");
    pg_dump_gzip(&src, "app", "", &f);

    // Not accepted: exit 1, the check's failure is of type unproven.
    let out = t.path().join("refused");
    let ran = verify(&f, &[], &out);
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let j = ran.junit();
    let tables = j.case("tables").expect("a tables case");
    assert_eq!((tables.status, tables.kind.as_str()), (Status::Failure, "unproven"), "{tables:?}");
    assert!(tables.message.contains("restorable, content unproven"), "{tables:?}");
    assert_eq!(j.case("restore").map(|c| (c.status, c.kind.as_str())), Some((Status::Passed, "")));
    assert!(j.suite_out.iter().any(|o| o == "content: unproven"), "{:?}", j.suite_out);
    let run = ran.run_json();
    assert_eq!((run.outcome.as_deref(), run.raw["content"].as_str()), (Some("failed"), Some("unproven")));
    assert_eq!(
        run.main().steps.iter().find(|s| s.id.as_deref() == Some("tables")).map(|s| s.outcome.as_str()),
        Some("failed")
    );
    assert_eq!(run.raw["suites"][0]["content"], "unproven");
    let report = out.join("report");
    let c = read_json(&report.join("report.json"));
    assert_eq!((c["outcome"].as_str(), c["content"].as_str()), (Some("failed"), Some("unproven")), "{c}");
    let check = c["checks"].as_array().and_then(|l| l.iter().find(|x| x["name"] == "tables")).expect("tables check");
    assert_eq!(check["content"], "unproven", "{check}");
    assert_eq!(last_json_line(&report.join("history.jsonl"))["content"], "unproven");

    // Accepted: exit 0, yet no plain pass anywhere: a skip of type unproven, content unproven.
    let out = t.path().join("accepted");
    let ran = verify(&f, &["accept_unproven=true"], &out);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let j = ran.junit();
    let tables = j.case("tables").expect("a tables case");
    assert_eq!((tables.status, tables.kind.as_str()), (Status::Skipped, "unproven"), "{tables:?}");
    assert!(tables.message.contains("content unproven") && tables.message.contains("accept_unproven"), "{tables:?}");
    assert!(j.suite_out.iter().any(|o| o == "content: unproven"), "{:?}", j.suite_out);
    let run = ran.run_json();
    assert_eq!((run.outcome.as_deref(), run.raw["content"].as_str()), (Some("passed"), Some("unproven")));
    let report = out.join("report");
    let c = read_json(&report.join("report.json"));
    assert_eq!((c["outcome"].as_str(), c["content"].as_str()), (Some("passed"), Some("unproven")), "{c}");
    let md = std::fs::read_to_string(report.join("report.md")).expect("report.md");
    assert!(md.lines().next().is_some_and(|l| l.ends_with("PASSED, CONTENT UNPROVEN")), "{md}");
    let html = std::fs::read_to_string(report.join("report.html")).expect("report.html");
    assert!(html.contains("CONTENT UNPROVEN"), "{html}");
    assert_eq!(last_json_line(&report.join("history.jsonl"))["content"], "unproven");

    // A ground truth that holds: proven, and nothing says unproven.
    let out = t.path().join("proven");
    let ran = verify(&f, &["expect_tables=public.accounts>=300"], &out);
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let j = ran.junit();
    assert_eq!(j.case("tables").map(|c| (c.status, c.kind.as_str())), Some((Status::Passed, "")));
    assert!(j.suite_out.iter().any(|o| o == "content: proven"), "{:?}", j.suite_out);
    assert!(!j.cases.iter().any(|c| c.kind == "unproven"), "{:?}", j.cases);
    assert_eq!(ran.run_json().raw["content"], "proven");
    let md = std::fs::read_to_string(out.join("report").join("report.md")).expect("report.md");
    assert!(!md.contains("UNPROVEN"), "{md}");
    src.stop().await;
}

/// Before: the nearest earlier verified backup was compared by tables and rows only, so a
/// complete-looking dump that lost its indexes and constraints (`pg_dump --section=pre-data
/// --section=data`: every table, every row, pg_dump's completion line) verified green
/// against it, and `schema` said only "no source fingerprint". Now the ledger keeps a proven
/// verification's schema objects, and a later dump missing any fails naming each; a
/// complete later dump is proven against them.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_cut_before_its_indexes_verified_green_against_the_earlier_backup() {
    let Some(src) = native_server("app").await else { return };
    exec(&src.url(), "create table accounts (id int primary key, name text not null);
         create index accounts_by_name on accounts (name, id);
         comment on table accounts is 'one row per customer';
         insert into accounts select g, 'n' || g from generate_series(1, 200) g;
         create table payments (id int primary key, account int references accounts, amount numeric);
         insert into payments select g, 1 + g % 200, g from generate_series(1, 300) g;
         create function balance(a int) returns numeric language sql as 'select sum(amount) from payments where account = a';").await;
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let run = |f: &Path, vars: &[&str], out: &str| verify(f, vars, &t.path().join(out));
    // `pg_dump ARGS` of `app` into `f`, verified with `vars` into `out`: it must exit `code`.
    let dumped = |f: &Path, args: &str, vars: &[&str], out: &str, code: i32| {
        pg_dump_gzip(&src, "app", args, f);
        let ran = run(f, vars, out);
        assert_eq!(ran.code, Some(code), "{}", ran.all());
        ran
    };

    // 1. Proven against declared expectations: the ledger keeps its schema objects.
    let first = d.join("app-20240105T130000.sql.gz");
    dumped(&first, "", &["expect_tables=public.accounts>=200, public.payments>=300"], "first", 0);
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["content"].as_str(), e["ground_truth"].as_str()), (Some("proven"), Some("expectations")), "{e}");
    let has = |kind: &str, o: &str| e["objects"][kind].as_array().is_some_and(|l| l.iter().any(|x| x == o));
    assert!(has("indexes", "accounts_by_name on public.accounts"), "{e}");
    assert!(has("constraints", "public.payments payments_account_fkey"), "{e}");
    assert!(has("functions", "public.balance(a integer)"), "{e}");
    assert!(has("columns", "public.accounts name"), "{e}");

    // 2. A later dump without its post-data section: every table and row, no index, no
    // key: held against the first, each missing object named, content failed.
    let cut = d.join("app-20240106T130000.sql.gz");
    let ran = dumped(&cut, "--section=pre-data --section=data", &[], "cut", 1);
    let all = ran.all();
    let from = "(the earlier verified backup app-20240105T130000.sql.gz had it)";
    for missing in [
        "indexes: accounts_by_name on public.accounts missing",
        "indexes: accounts_pkey on public.accounts missing",
        "constraints: public.payments payments_account_fkey missing",
    ] {
        assert!(all.contains(&format!("{missing} {from}")), "{missing}: {all}");
    }
    let e = schema_failed(&ran, &d);
    assert!(e.get("objects").is_none(), "a failed verification is no ground truth: {e}");
    assert_eq!(ran.run_json().raw["content"], "failed");

    // 3. A later complete dump, with a table added since: proven against the first, schema
    // included.
    exec(&src.url(), "create table notes (id int primary key, body text); insert into notes values (1, 'x')").await;
    let later = d.join("app-20240107T130000.sql.gz");
    let ran = dumped(&later, "", &[], "later", 0);
    let j = ran.junit();
    assert_eq!((j.status("tables"), j.status("schema")), ("passed", "passed"), "{}", ran.all());
    let said = j.case("schema").map(|c| c.system_out.clone()).unwrap_or_default();
    assert!(said.contains("every schema object of app-20240105T130000.sql.gz is in the restored copy"), "{said}");
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["content"].as_str(), e["ground_truth"].as_str()), (Some("proven"), Some("earlier")), "{e}");
    assert!(e["objects"]["tables"].as_array().is_some_and(|l| l.iter().any(|x| x == "public.notes")), "{e}");
    let digest = |kind: &str, o: &str| e["definitions"][kind][o].as_str().map(str::len);
    assert_eq!(digest("indexes", "accounts_by_name on public.accounts"), Some(16), "{e}");
    assert_eq!(digest("columns", "public.payments amount"), Some(16), "{e}");

    // 4. Before (issue 35): objects were compared by name only, so an index that lost a
    // column, a column whose type changed and a table's changed comment verified green. Now each is named with its
    // definition now, content failed.
    exec(
        &src.url(),
        "drop index accounts_by_name; create index accounts_by_name on accounts (name);
         alter table payments alter column amount type bigint;
         comment on table accounts is 'one row per customer or supplier';",
    )
    .await;
    let changed = d.join("app-20240108T130000.sql.gz");
    let ran = dumped(&changed, "", &[], "changed", 1);
    let all = ran.all();
    let since = "changed its definition since the earlier verified backup app-20240107T130000.sql.gz";
    assert!(all.contains(&format!("indexes: accounts_by_name on public.accounts {since}")), "{all}");
    assert!(all.contains("USING btree (name)"), "the index's definition now: {all}");
    assert!(all.contains(&format!("columns: public.payments amount {since}")), "{all}");
    assert!(all.contains(&format!("comments: table public.accounts {since}")), "{all}");
    assert!(!all.contains("public.accounts name changed"), "an unchanged column is no difference: {all}");
    let j = ran.junit();
    assert_eq!(j.case("schema").map(|c| (c.status, c.kind.as_str())), Some((Status::Failure, "failed")), "{all}");
    assert_eq!(last_json_line(&d.join("ledger.jsonl"))["content"], "failed");

    // 5. A ledger written before definitions were kept: the same dump compares by name only,
    // and says so.
    ledger_without(&d.join("ledger.jsonl"), "definitions");
    let ran = run(&changed, &[], "by_name");
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let said = ran.junit().case("schema").map(|c| c.system_out.clone()).unwrap_or_default();
    assert!(said.contains("compared by name only"), "{said}");
    src.stop().await;
}

/// A verify whose rows were all restored (`tables` passed) and whose schema check failed, a
/// content failure in JUnit and in the ledger of the backups in `d`: the ledger's entry.
#[track_caller]
fn schema_failed(ran: &Ran, d: &Path) -> serde_json::Value {
    let (j, all) = (ran.junit(), ran.all());
    assert_eq!(j.status("tables"), "passed", "the rows are all there: {all}");
    assert_eq!(j.case("schema").map(|c| (c.status, c.kind.as_str())), Some((Status::Failure, "failed")), "{all}");
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!((e["result"].as_str(), e["content"].as_str()), (Some("failed"), Some("failed")), "{e}");
    e
}

/// `pg_dump | grep -v LINE | gzip > FILE`: a team's dump whose one statement `line` was cut
/// (pg_dump's output edited, or a filter in the pipe), otherwise complete.
fn pg_dump_gzip_without(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, db: &str, line: &str, file: &Path) {
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "set -euo pipefail; /usr/lib/postgresql/15/bin/pg_dump | grep -v -x -F -e \"$2\" | gzip > \"$1\"",
            "-",
        ])
        .arg(file)
        .arg(line)
        .env("PGHOST", &src.host)
        .env("PGPORT", src.port.to_string())
        .env("PGUSER", &src.user)
        .env("PGPASSWORD", &src.password)
        .env("PGDATABASE", db)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("bash");
    assert!(out.status.success(), "pg_dump | grep -v: {}", String::from_utf8_lossy(&out.stderr));
}

/// Before (issue 35): verify restores another tool's dump without its grants (the dump's
/// roles are not in the throwaway: `--no-privileges`), and the earlier-backup comparison read
/// only the restored copy, so a dump whose GRANT lines were cut verified green against the
/// earlier backup. Now backup.check reads the dump's own grants from its ACL entries, the
/// ledger keeps them (`privileges`) with a proven verification, and a later dump that lost
/// one fails naming the object, the privilege and the role; a ledger written before
/// privileges were kept compares without them, and the log says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_dump_whose_grants_were_cut_verified_green_against_the_earlier_backup() {
    let Some(src) = native_server("app").await else { return };
    exec(
        &src.url(),
        "create role reporting;
         create table payments (id int primary key, amount numeric);
         insert into payments select g, g from generate_series(1, 300) g;
         grant select on payments to reporting;
         create function balance() returns numeric language sql as 'select sum(amount) from payments';
         revoke all on function balance() from public;",
    )
    .await;
    let t = tempfile::tempdir().expect("tmp");
    let d = made_dir(t.path().join("backups"));
    let run = |f: &Path, out: &str| verify(f, &[], &t.path().join(out));

    // 1. Proven against declared expectations: the ledger keeps the dump's own grants.
    let first = d.join("app-20240105T130000.sql.gz");
    pg_dump_gzip(&src, "app", "", &first);
    let ran = verify(&first, &["expect_tables=public.payments>=300"], &t.path().join("first"));
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let e = last_json_line(&d.join("ledger.jsonl"));
    assert_eq!(e["content"], "proven", "{e}");
    assert_eq!(e["privileges"]["TABLE public.payments"], serde_json::json!(["GRANT SELECT TO reporting"]), "{e}");
    assert_eq!(e["privileges"]["FUNCTION public.balance()"], serde_json::json!(["REVOKE ALL FROM PUBLIC"]), "{e}");

    // 2. A later dump, complete but for its GRANT line: every table and row, every schema
    // object, and the restore (without privileges) looks the same. Held against the first:
    // the lost grant is named, content failed, exit 1.
    let cut = d.join("app-20240106T130000.sql.gz");
    pg_dump_gzip_without(&src, "app", "GRANT SELECT ON TABLE public.payments TO reporting;", &cut);
    let ran = run(&cut, "cut");
    assert_eq!(ran.code, Some(1), "{}", ran.all());
    let all = ran.all();
    assert!(
        all.contains(
            "privileges: TABLE public.payments lost SELECT for role reporting since the earlier verified backup app-20240105T130000.sql.gz"
        ),
        "{all}"
    );
    assert!(!all.contains("balance() no longer revokes"), "a revoke still made is no difference: {all}");
    let e = schema_failed(&ran, &d);
    assert!(e.get("privileges").is_none(), "a failed verification is no ground truth: {e}");

    // 3. A ledger written before privileges were kept: the same dump compares without them,
    // and says so.
    ledger_without(&d.join("ledger.jsonl"), "privileges");
    let ran = run(&cut, "without_privileges");
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    let said = ran.junit().case("schema").map(|c| c.system_out.clone()).unwrap_or_default();
    assert!(said.contains("has no privileges recorded") && said.contains("compared without privileges"), "{said}");
    src.stop().await;
}
