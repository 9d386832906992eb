//! The team's own smoke checks inside the operator restore (issue 40 item 5): a checks
//! runbook given to restore.yaml (`--var checks=FILE`) runs against the restored database
//! before the restore is declared done, and a failing check rolls the restore back: the
//! marker row written after the backup is there again and the database is as before. The
//! health checks are a list of HTTPS endpoints behind a private CA (issue 40 item 4).

use crate::common::{self, fingerprint_of, made_dir, scalar, snapshots, tmp_backups, Run};

const KEY: &str = "restore-checks passphrase";

/// Regression: checks added after a nested restore failed with the restored database left in
/// place (the marker row of the test lost); inside the restore they roll it back.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_team_check_rolls_the_restore_back_and_the_marker_row_is_there_again() {
    let (dir, storage) = tmp_backups();
    // Bookings in the backup are old: the team's check wants one from the last day.
    let bookings = "create table bookings (id serial primary key, booked_at timestamptz not null);
                    insert into bookings (booked_at) values ('2026-01-01');";
    let Some((s, _)) = common::shop_backed_up(&storage, KEY, (50, 100), bookings).await else { return };
    let shop = s.url_for("shop");
    common::exec(&shop, "insert into bookings (booked_at) values (now())").await;
    let before = fingerprint_of(&shop).await;

    // The application's endpoints, behind a certificate of the team's own CA: all checked.
    let certs = made_dir(dir.path().join("certs"));
    let Some(tls) = crate::http_tls::tls_endpoint(&certs, false) else { return };
    let base = format!("https://127.0.0.1:{}", tls.port);

    let checks = common::root().join("fixtures/restore-checks/shop-smoke.yaml");
    let junit = dir.path().join("restore.xml");
    let report = dir.path().join("report");
    let ran = common::restore_shop(&s, &storage, KEY)
        .var("health_url", format!("{base}/api {base}/worker {base}/dashboard"))
        .var("health_ca_file", tls.ca.display())
        .var("checks", checks.display())
        .report(&report)
        .arg("--yes")
        .junit(&junit)
        .expect(1);
    let all = ran.all();
    let last = all.lines().last().unwrap_or_default();
    assert!(last.contains("step `team_checks` failed"), "{all}");
    let snaps = snapshots(&storage);
    assert!(
        last.contains(&format!("database `shop` was rolled back to the safety snapshot {}", snaps[0].display())),
        "{last}"
    );
    // The team's suite ran, its first check passed on the restored database, the second failed.
    let cases = ran.junit();
    assert_eq!(cases.status("customers"), "passed", "{all}");
    assert_eq!(cases.status("recent_bookings"), "failure", "{all}");
    assert_eq!(cases.status("rollback of drop: put_back"), "passed", "{all}");
    assert_eq!(cases.status("smoke_http"), "passed", "{all}");
    let health = ran.run_json().main().step("smoke_http").log.join("\n");
    for path in ["/api", "/worker", "/dashboard"] {
        assert!(health.contains(&format!("GET {base}{path} -> 200")), "{health}");
    }
    // As before the restore: the marker row is back, and everything else too.
    assert_eq!(scalar(&shop, "select count(*) from bookings where booked_at > now() - interval '1 day'").await, "1");
    assert_eq!(fingerprint_of(&shop).await, before, "the database is not what it was before the restore");
    assert_eq!(scalar(&shop, "select datallowconn from pg_database where datname = 'shop'").await, "true");

    // The README shows this very file.
    let readme = std::fs::read_to_string(common::root().join("README.md")).expect("README");
    let body = std::fs::read_to_string(&checks).expect("fixture");
    assert!(readme.contains(&body), "fixtures/restore-checks/shop-smoke.yaml is no longer the README's example");
    let _ = Run::cli(["validate"]).arg(&checks).expect(0);
}
