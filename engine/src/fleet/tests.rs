use super::*;

fn parse_ok(text: &str) -> Fleet {
    parse("fleet.yaml", text, PathBuf::from(".")).unwrap_or_else(|d| panic!("{d}"))
}

fn parse_err(text: &str) -> String {
    parse("fleet.yaml", text, PathBuf::from(".")).expect_err("invalid").to_string()
}

const TWO_SERVERS: &str = "\
defaults:
  storage: /backups/{project}/{environment}/{database}
  retention: { daily: 7, weekly: 4, monthly: 12 }
  rpo: 26h
  schedules: [nightly]
schedules:
  nightly: { runbook: backup, cron: '0 2 * * *' }
  weekly: { runbook: verify, cron: '0 5 * * 0', parallel: 2 }
projects:
  shop:
    defaults:
      connection: postgres://backup@db-a:5432/postgres
      password_env: SHOP_PASSWORD
    environments:
      prod:
        databases:
          auth_db: {}
          payment_db:
            connection: host=db-b port=5433 user=backup
            retention: { daily: 30 }
            schedules: [nightly, weekly]
            vars: { jobs: 4 }
";

#[test]
fn levels_merge_nearest_first_and_retention_key_by_key() {
    let f = parse_ok(TWO_SERVERS);
    assert_eq!(f.targets.len(), 2);
    let a = &f.targets[0];
    assert_eq!(a.id, "shop/prod/auth_db");
    assert_eq!(a.database_url, "postgres://backup@db-a:5432/auth_db");
    assert_eq!(a.storage, "/backups/shop/prod/auth_db");
    assert_eq!(a.retention.daily, Some(7));
    assert_eq!(a.password_env.as_deref(), Some("SHOP_PASSWORD"));
    let b = &f.targets[1];
    assert_eq!(b.database_url, "host='db-b' port='5433' user='backup' dbname='payment_db'");
    assert_eq!((b.retention.daily, b.retention.weekly), (Some(30), Some(4)));
    assert_eq!(b.schedules, vec!["nightly", "weekly"]);
    assert_eq!(b.vars, vec![("jobs".to_string(), "4".to_string())]);
}

#[test]
fn selection_by_only_and_schedule_keeps_file_order() {
    let f = parse_ok(TWO_SERVERS);
    let ids = |v: Vec<&Target>| v.into_iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(select(&f, &[], Some("weekly")).expect("ok")), ["shop/prod/payment_db"]);
    assert_eq!(ids(select(&f, &["shop/prod".into()], None).expect("ok")).len(), 2);
    assert!(select(&f, &["shop/prod/auth".into()], None).expect_err("invalid").contains("auth_db"));
    assert!(select(&f, &[], Some("hourly")).is_err());
}

#[test]
fn a_password_in_a_connection_is_refused_at_its_line() {
    let text = TWO_SERVERS.replace("backup@db-a", "backup:hunter2@db-a");
    let e = parse_err(&text);
    assert!(e.contains("fleet.yaml:12:"), "{e}");
    assert!(e.contains("password_env"), "{e}");
    assert!(!e.contains("hunter2"), "the diagnostic shows the password: {e}");
}

#[test]
fn unknown_keys_schedules_and_hostile_names_point_at_their_line() {
    let e = parse_err(&TWO_SERVERS.replace("retention: { daily: 30 }", "retension: { daily: 30 }"));
    assert!(e.contains("unknown field `retension`") && e.contains("fleet.yaml:20:"), "{e}");
    let e = parse_err(&TWO_SERVERS.replace("[nightly, weekly]", "[nightly, weekley]"));
    assert!(e.contains("no schedule `weekley`") && e.contains("weekly"), "{e}");
    let e = parse_err(&TWO_SERVERS.replace("auth_db: {}", "\"../auth\": {}"));
    assert!(e.contains("`../auth`") && e.contains("fleet.yaml:17:"), "{e}");
    // Both day fields restricted is cron's OR (two OnCalendar= lines); a `*/N` step there is
    // read differently by cron implementations and refused.
    assert!(parse("fleet.yaml", &TWO_SERVERS.replace("'0 5 * * 0'", "'0 5 1 * 0'"), PathBuf::from(".")).is_ok());
    let e = parse_err(&TWO_SERVERS.replace("'0 5 * * 0'", "'0 5 */2 * 0'"));
    assert!(e.contains("`*/N` step"), "{e}");
    let e =
        parse_err(&TWO_SERVERS.replace("          auth_db: {}\n", "          auth_db: {}\n          auth_db: {}\n"));
    assert!(e.contains("duplicate entry with key \"auth_db\""), "{e}");
}

#[test]
fn a_database_without_connection_or_storage_is_named() {
    let e = parse_err("projects:\n  p:\n    environments:\n      e:\n        databases:\n          d: {}\n");
    assert!(e.contains("p/e/d has no connection") && e.contains("fleet.yaml:6:"), "{e}");
}

/// Regression (issue 37): `validate` asked serde_yaml whether a file was a fleet before the
/// runbook parser's depth check, and serde_yaml scans deep flow brackets in quadratic time
/// (70 s of the suite for one file of 100,000 `[`). A file too deep for a runbook is no
/// fleet; one within the bound still is.
#[test]
fn a_file_nested_too_deep_is_not_taken_for_a_fleet_without_serde_yaml_reading_it() {
    let deep = format!("projects: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(!is_fleet(&deep));
    assert!(is_fleet(TWO_SERVERS));
    assert!(!is_fleet("name: x\nsteps: []\n"));
}
