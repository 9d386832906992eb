//! sql.exec and sql.assert against a real PostgreSQL server started by the test (local
//! binaries through the native provider).

use crate::common;
use crate::common::{run, text, written, Run};
use pgdrill::testkit::pg::native::{NativeOptions, NativeServer};

async fn server() -> Option<NativeServer> {
    match NativeServer::start(NativeOptions::default()).await {
        Ok(s) => Some(s),
        Err(e) => {
            common::require(false, &format!("local PostgreSQL server binaries ({e})"));
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_exec_and_assert_pass_on_a_real_server() {
    let Some(pg) = server().await else { return };
    let url = pg.url();
    let out = Run::new("fixtures/runbooks/sql.yaml").var("url", &url).raw();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with("passed ")).count(), 7, "{stdout}");
    assert!(!stdout.contains(&pg.password), "the server password is not printed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_assertion_exits_1_and_says_what_came_back() {
    let Some(pg) = server().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let junit = t.path().join("j.xml");
    let out = Run::new("fixtures/runbooks/sql-assert-fails.yaml").var("url", pg.url()).junit(&junit).raw();
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("returned 0, expected > 0"), "{stdout}");
    let xml = std::fs::read_to_string(&junit).unwrap_or_default();
    assert!(xml.contains(r#"<failure type="failed" message="`select count(*) from pg_class where relname = &apos;no_such_table&apos;` returned 0, expected &gt; 0""#) || xml.contains("returned 0, expected &gt; 0"), "{xml}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sql_error_fails_the_step_with_the_server_message() {
    let Some(pg) = server().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let rb = written(t.path().join("bad-sql.yaml"), "name: bad-sql\nvars: { url: ~ }\nsteps:\n  - id: q\n    uses: sql.exec\n    with: { url: \"{{ vars.url }}\", sql: select * from missing_table }\n");
    let out = Run::new(&rb).var("url", pg.url()).raw();
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains(r#"relation "missing_table" does not exist"#), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_an_environment_error_that_does_not_echo_it() {
    let Some(pg) = server().await else { return };
    let url = format!("postgres://{}:not-the-password@127.0.0.1:{}/postgres", pg.user, pg.port);
    let out = Run::new("fixtures/runbooks/unreachable.yaml").var("url", &url).raw();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("password authentication failed"), "{stdout}");
    assert!(!stdout.contains("not-the-password"), "{stdout}");
}

/// A connection string that cannot be read is the input's fault: exit 2 naming what is
/// wrong, whichever step reads it first. (It was exit 3, "the environment failed", when a
/// step handed it to the connection without checking it itself.)
#[test]
fn a_connection_string_that_cannot_be_read_is_exit_2_naming_it() {
    let t = tempfile::tempdir().expect("tmp");
    for (url, says) in [
        ("host=/tmp dbname=x sslmode=sometimes", "invalid sslmode `sometimes`"),
        ("host=/tmp dbname=x colour=blue", "unknown connection parameter `colour`"),
        ("just some words", "a connection is a postgresql:// URL or key=value pairs"),
    ] {
        let rb = written(
            t.path().join("bad-url.yaml"),
            format!(
                "name: bad-url\nsteps:\n  - id: q\n    uses: sql.exec\n    with: {{ url: \"{url}\", sql: select 1 }}\n"
            ),
        );
        let out = run(&["run", rb.to_str().unwrap_or_default()]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{url}: {all}");
        assert!(all.contains(says), "{url}: {all}");
    }
}

/// Regression: `sql.assert` compared numbers as f64 (`9007199254740993 == 9007199254740992`
/// held, `NaN == NaN` did not) and judged a multi-row query by its first row only (`values
/// (5),(0)` passed `> 1`). Numbers now compare as PostgreSQL's numeric, every row is judged
/// by default (`rows: all`), and a mismatch names the row.
#[tokio::test(flavor = "multi_thread")]
async fn sql_assert_compares_numbers_exactly_and_judges_every_row() {
    let Some(pg) = server().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let rb = t.path().join("numbers.yaml");
    let report = t.path().join("report");
    let step = |id: &str, query: &str, expect: &str, rows: &str| {
        let rows = if rows.is_empty() { String::new() } else { format!(", rows: {rows}") };
        format!("  - id: {id}\n    uses: sql.assert\n    continue_on_error: true\n    with: {{ url: \"{{{{ vars.url }}}}\", query: \"{query}\", expect: \"{expect}\"{rows} }}\n")
    };
    let steps = [
        step("big_eq", "select 9007199254740993::bigint", "== 9007199254740992", ""),
        step("big_ne", "select 9007199254740993::bigint", "!= 9007199254740992", ""),
        step("nan", "select 'NaN'::float8", "== NaN", ""),
        step("nan_above", "select 'NaN'::numeric", "> 1e300", ""),
        step("all_rows", "values (5),(0)", "> 1", ""),
        step("any_row", "values (0),(5)", "> 1", "any"),
        step("first_row", "values (5),(0)", "> 1", "first"),
    ];
    std::fs::write(&rb, format!("name: numbers\nvars: {{ url: ~ }}\nsteps:\n{}", steps.concat())).expect("write");
    let out = Run::new(&rb).var("url", pg.url()).report(&report).raw();
    // Each step continues on error, so every verdict is in run.json.
    assert!(report.join("run.json").exists(), "{}{}", text(&out.stdout), text(&out.stderr));
    let rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("run.json")).expect("run.json")).expect("json");
    let steps = rec["suites"][0]["steps"].as_array().cloned().unwrap_or_default();
    let of = |id: &str| steps.iter().find(|s| s["id"] == id).cloned().unwrap_or_default();
    for (id, want) in [
        ("big_eq", "failed"),
        ("big_ne", "passed"),
        ("nan", "passed"),
        ("nan_above", "passed"),
        ("all_rows", "failed"),
        ("any_row", "passed"),
        ("first_row", "passed"),
    ] {
        assert_eq!(of(id)["outcome"], want, "{id}: {}", of(id));
    }
    let msg = of("all_rows")["message"].as_str().unwrap_or_default().to_string();
    assert!(msg.contains("returned 0 in row 2, expected > 1"), "{msg}");
    assert_eq!(of("any_row")["outputs"]["rows"], 2, "{}", of("any_row"));
}

/// The assertion grammar agrees with PostgreSQL: every pair of a table of number texts
/// (integers past 2^53, decimals, exponents, NaN, infinities) is compared by the server as
/// `numeric` and by `Expect`, for every operator.
#[tokio::test(flavor = "multi_thread")]
async fn number_comparisons_agree_with_postgresql() {
    use pgdrill::testkit::steps::sql::Expect;
    let Some(pg) = server().await else { return };
    let numbers = [
        "0",
        "-0",
        "1",
        "-1",
        "0.5",
        "-0.5",
        "1.50",
        "9007199254740992",
        "9007199254740993",
        "-9007199254740993",
        "123456789012345678901234567890",
        "1e300",
        "-1e300",
        "1.5e-07",
        "0.00000015",
        "NaN",
        "Infinity",
        "-Infinity",
        "1e3",
        "1000",
        "999.999999999999999999",
    ];
    let values = numbers.iter().map(|n| format!("('{n}')")).collect::<Vec<_>>().join(",");
    let sql = format!(
        "select x.t, y.t, x.t::numeric = y.t::numeric, x.t::numeric < y.t::numeric, x.t::numeric > y.t::numeric \
         from (values {values}) x(t), (values {values}) y(t)"
    );
    let client = pgdrill::testkit::pg::connect(&pg.url()).await.expect("connect");
    let rows = client.query(&sql, &[]).await.expect("query");
    assert_eq!(rows.len(), numbers.len() * numbers.len());
    let mut disagree = Vec::new();
    for r in rows {
        let (x, y): (String, String) = (r.get(0), r.get(1));
        let (eq, lt, gt): (bool, bool, bool) = (r.get(2), r.get(3), r.get(4));
        for (op, pg_says) in [("==", eq), ("!=", !eq), ("<", lt), ("<=", lt || eq), (">", gt), (">=", gt || eq)] {
            let ours = Expect::parse(&format!("{op} {y}")).map(|e| e.holds(Some(&x)).is_ok());
            if ours != Ok(pg_says) {
                disagree.push(format!("{x} {op} {y}: PostgreSQL {pg_says}, pgdrill {ours:?}"));
            }
        }
    }
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
}

/// `pg.ping` (the kind ARCHITECTURE.md's recipe adds) reports a real server's major version
/// and that it is no standby; a port where nothing listens, and one that accepts but never
/// answers (within `timeout`), are the environment's failure (exit 3), naming the server.
#[tokio::test(flavor = "multi_thread")]
async fn pg_ping_reports_the_server_and_an_unreachable_one_is_exit_3() {
    let Some(pg) = server().await else { return };
    let t = tempfile::tempdir().expect("tmp");
    let rb = written(
        t.path().join("ping.yaml"),
        format!(
            "name: ping\nvars: {{ url: ~, timeout: 5s }}\nsteps:\n  - id: ping\n    uses: pg.ping\n    with: {{ url: \"{{{{ vars.url }}}}\", timeout: \"{{{{ vars.timeout }}}}\" }}\n    assert: {{ server_major: \"== {}\", in_recovery: \"== false\" }}\n",
            pg.major
        ),
    );
    let rb = rb.to_str().unwrap_or_default();
    let out = Run::new(rb).var("url", pg.url()).raw();
    assert_eq!(out.status.code(), Some(0), "{}{}", text(&out.stdout), text(&out.stderr));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
    let out = Run::new(rb).var("url", format!("postgres://postgres@127.0.0.1:{closed}/postgres")).raw();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains(&format!("127.0.0.1:{closed}")), "{}", text(&out.stdout));

    // Accepted by the kernel, never answered: only the step's own timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("addr").port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?sslmode=disable");
    let out = Run::new(rb).var("url", url).var("timeout", "1s").raw();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("no answer from postgres://postgres@127.0.0.1"), "{}", text(&out.stdout));
    drop(silent);
}
