//! `database.size` (added by the step recipe of ARCHITECTURE.md) against a real server: the
//! size and the largest tables as PostgreSQL counts them, names kept as data.

use crate::common::*;

/// The database's size is what `pg_database_size` says at the time, the largest table comes
/// first with its indexes counted, a table whose name needs quoting is shown quoted (never
/// as SQL it could break), `top` bounds the list, and the database is the run's in the
/// alerts' sense (`Fact::Database`) when the run was given none.
#[tokio::test(flavor = "multi_thread")]
async fn database_size_reports_the_server_s_figures_and_quotes_table_names() {
    let Some(srv) = native_server("sized").await else { return };
    exec(
        &srv.url(),
        "create table small (id int); insert into small values (1); \
         create table \"we\"\"ird name\" (id int primary key, pad text); \
         insert into \"we\"\"ird name\" select g, repeat('x', 200) from generate_series(1, 5000) g",
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let rb = written(dir.path().join("size.yaml"), "name: size\nvars: { url: ~ }\nsteps:\n  - id: size\n    uses: database.size\n    with: { url: \"{{ vars.url }}\", top: 1 }\n    assert: { bytes: \"> 1000000\" }\n");
    let report = dir.path().join("report");
    let ran = Run::new(&rb).var("url", srv.url()).report(&report).expect(0);
    let out = ran.run_json().step("size").outputs.clone();
    let client = pgdrill::testkit::pg::connect(&srv.url()).await.expect("connect");
    let row = client
        .query_one(
            "select pg_database_size(current_database()), pg_total_relation_size('\"we\"\"ird name\"'), pg_indexes_size('\"we\"\"ird name\"')",
            &[],
        )
        .await
        .expect("sizes");
    let (db, table, index): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(out["database"], "sized", "{out}");
    // Nothing writes between the step and this query: the same figures.
    assert_eq!(out["bytes"].as_i64(), Some(db), "{out}");
    let tables = out["tables"].as_array().expect("tables");
    assert_eq!(tables.len(), 1, "top: 1 lists one table: {out}");
    assert_eq!(tables[0]["table"], "public.\"we\"\"ird name\"", "{out}");
    assert_eq!((tables[0]["bytes"].as_i64(), tables[0]["index_bytes"].as_i64()), (Some(table), Some(index)), "{out}");
    assert!(index > 0 && tables[0]["table_bytes"].as_i64().is_some_and(|t| t > 0 && t < table), "{out}");
    assert!(out["size"].as_str().is_some_and(|s| s.ends_with("MiB") || s.ends_with("KiB")), "{out}");
    let log = ran.run_json().step("size").log.join("\n");
    assert!(log.contains("database sized is ") && log.contains("largest table public.\"we\"\"ird name\""), "{log}");
    srv.stop().await;
}
