//! sql.exec and sql.assert against a real PostgreSQL server started by the test (local
//! binaries through the native provider).

mod common;

use common::{run, text};
use pgdrill::pg::native::{NativeOptions, NativeServer};

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
    let out = run(&["run", "fixtures/runbooks/sql.yaml", "--var", &format!("url={url}")]);
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
    let out = run(&[
        "run",
        "fixtures/runbooks/sql-assert-fails.yaml",
        "--var",
        &format!("url={}", pg.url()),
        "--junit",
        junit.to_str().unwrap_or_default(),
    ]);
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
    let rb = t.path().join("bad-sql.yaml");
    std::fs::write(
        &rb,
        "name: bad-sql\nvars: { url: ~ }\nsteps:\n  - id: q\n    uses: sql.exec\n    with: { url: \"{{ vars.url }}\", sql: select * from missing_table }\n",
    )
    .expect("write");
    let out = run(&["run", rb.to_str().unwrap_or_default(), "--var", &format!("url={}", pg.url())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains(r#"relation "missing_table" does not exist"#), "{}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_an_environment_error_that_does_not_echo_it() {
    let Some(pg) = server().await else { return };
    let url = format!("postgres://{}:not-the-password@127.0.0.1:{}/postgres", pg.user, pg.port);
    let out = run(&["run", "fixtures/runbooks/unreachable.yaml", "--var", &format!("url={url}")]);
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
        let rb = t.path().join("bad-url.yaml");
        std::fs::write(
            &rb,
            format!(
                "name: bad-url\nsteps:\n  - id: q\n    uses: sql.exec\n    with: {{ url: \"{url}\", sql: select 1 }}\n"
            ),
        )
        .expect("write");
        let out = run(&["run", rb.to_str().unwrap_or_default()]);
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{url}: {all}");
        assert!(all.contains(says), "{url}: {all}");
    }
}
