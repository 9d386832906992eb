//! The operator restore onto a rebuilt server (issues 34 and 43, second round): preflight
//! itself names the roles the server lacks, a mistyped `create_roles` is refused before
//! any step runs, and the roles a restore created are dropped again when it rolls back,
//! never a role that was there before, leaving `pg_dumpall --globals-only` and
//! `pg_dump --create` byte-identical to before. Real servers: PostgreSQL 15 (native).

use std::path::Path;

use crate::common::{self, scalar, Run};

const KEY: &str = "roles-test passphrase";

/// `pgdrill run restore --yes` of the backed-up `erp` from `storage` into `admin`'s server.
fn restore(admin: &str, storage: &Path, report: &Path, vars: &[&str]) -> Run {
    Run::new("restore")
        .arg("--yes")
        .var("database_url", admin)
        .var("storage", storage.display())
        .var("database", "erp")
        .var("jobs", 1)
        .vars(vars)
        .key(KEY)
        .report(report)
}

/// `pg_dumpall --globals-only` and `pg_dump --create` of `database` (the system's tools):
/// what must be byte-identical after a rollback.
fn dumps(admin: &str, database: &str) -> (String, String) {
    let run = |tool: &str, args: &[&str]| {
        let out = std::process::Command::new(tool).args(args).output().expect("dump tool runs");
        assert!(out.status.success(), "{tool}: {}", common::text(&out.stderr));
        common::text(&out.stdout)
    };
    // A fixed \restrict key: pg_dump draws a random one per run otherwise.
    let key = "--restrict-key=pgdrilltest";
    (run("pg_dumpall", &["--globals-only", key, "-d", admin]), run("pg_dump", &["--create", key, "-d", database]))
}

async fn erp_roles(url: &str) -> String {
    scalar(url, "select coalesce(string_agg(rolname, ',' order by rolname), '') from pg_roles where rolname like 'erp%'")
        .await
}

/// Regression (issue 43, case 4): the roles a restore created on a rebuilt server stayed
/// after its rollback, `restore.preflight` did not name them (only a later dry run did),
/// and `--var create_roles=flase` acted as `ask`. Now preflight lists the missing roles in
/// its own outputs, a mistyped value exits 2 naming restore.yaml's line before any step
/// runs, and a restore whose smoke check fails drops exactly the roles it created: the role
/// that was there before stays, and the globals and the database dump are as before.
#[tokio::test(flavor = "multi_thread")]
async fn roles_a_rolled_back_restore_created_stayed_and_a_mistyped_create_roles_acted_as_ask() {
    let Some((src, dir, _path)) = crate::roles::read_only_erp_backed_up().await else { return };
    src.stop().await;
    let Some(target) = common::native_server("erp").await else { return };
    let (admin, erp) = (target.url_for("postgres"), target.url());
    // A rebuilt server that has one of the backup's roles already (made by hand, with
    // another attribute than the backup's): it is never dropped nor altered.
    common::exec(&admin, "create role erp_readonly login").await;
    common::exec(&erp, "create table before_restore(x int); insert into before_restore values (1)").await;
    let before = dumps(&admin, &erp);
    let storage = dir.path();

    // A mistyped value: exit 2 with the field's place in restore.yaml, nothing run.
    let ran = restore(&admin, storage, &dir.path().join("typo"), &["create_roles=flase"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(2), "{all}");
    assert!(all.contains("`flase` is not `ask`, `true` or `false`"), "{all}");
    assert!(all.contains("restore.yaml:") && all.contains("create_roles"), "names the place: {all}");
    assert!(all.contains("no step was started"), "{all}");
    assert_eq!(erp_roles(&admin).await, "erp_readonly", "nothing created");

    // create_roles=false: restore.preflight itself refuses, naming the roles.
    let ran = restore(&admin, storage, &dir.path().join("false"), &["create_roles=false"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(1), "{all}");
    let json = ran.run_json();
    let pre = json.step("preflight");
    assert_eq!(pre.outcome, "failed", "{all}");
    let msg = pre.message.clone().unwrap_or_default();
    assert!(
        msg.contains("lacks the backup's roles \"erp reader\", \"erp_app\", \"erp_owner\"")
            && msg.contains("create_roles=false: create them by hand")
            && msg.contains("nothing was changed"),
        "{msg}"
    );
    assert_eq!(erp_roles(&admin).await, "erp_readonly");

    // create_roles=true with a smoke check that fails: the roles are created, the restore
    // rolls back, and the roles it created go again.
    let ran = restore(&admin, storage, &dir.path().join("rollback"), &["create_roles=true", "smoke_sql=select 0"]).output();
    let all = ran.all();
    assert_eq!(ran.code, Some(1), "{all}");
    assert!(all.contains("was rolled back to the safety snapshot"), "{all}");
    let json = ran.run_json();
    let pre = json.step("preflight");
    assert_eq!(pre.outcome, "passed", "{all}");
    assert_eq!(
        pre.outputs["missing_roles"],
        serde_json::json!(["erp reader", "erp_app", "erp_owner"]),
        "preflight's own list: {all}"
    );
    let lines = |v: &serde_json::Value| -> Vec<String> {
        let mut l: Vec<String> =
            v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect();
        l.sort();
        l
    };
    assert!(
        lines(&pre.outputs["differing_roles"]).contains(&"role \"erp_readonly\": login is true here, false in the backup".to_string()),
        "{}",
        pre.outputs["differing_roles"]
    );
    assert!(pre.log.iter().any(|l| l.contains("a rollback drops them again")), "{:?}", pre.log);
    assert_eq!(lines(&json.step("roles").outputs["created"]), ["erp reader", "erp_app", "erp_owner"], "{all}");
    let finish = json.step("finish");
    let dropped = finish.log.iter().find(|l| l.starts_with("dropped again the roles this restore created: "));
    assert!(
        dropped.is_some_and(|l| ["\"erp reader\"", "\"erp_app\"", "\"erp_owner\""].iter().all(|r| l.contains(r))),
        "{:?}",
        finish.log
    );
    assert_eq!(erp_roles(&admin).await, "erp_readonly", "only the role that was there before stays");
    assert_eq!(scalar(&admin, "select rolcanlogin::text from pg_roles where rolname = 'erp_readonly'").await, "true");
    assert_eq!(scalar(&erp, "select count(*) from before_restore").await, "1", "put back");
    assert!(dumps(&admin, &erp) == before, "pg_dumpall --globals-only and pg_dump --create differ after the rollback");

    // The same restore without the failing check keeps them: the restored database uses them.
    let ran = restore(&admin, storage, &dir.path().join("restored"), &["create_roles=true"]).output();
    assert_eq!(ran.code, Some(0), "{}", ran.all());
    assert_eq!(erp_roles(&admin).await, "erp reader,erp_app,erp_owner,erp_readonly");
    target.stop().await;
}
