//! S3 Object Lock on backups themselves (issue 42, item 4): `backup.create` with `retain`
//! writes the archive and its manifest and then locks the very versions it published; the
//! S3-compatible server (moto) then refuses to delete them, and a storage that cannot keep a
//! retention is refused before the dump runs.

use std::path::Path;
use std::process::Command;

use crate::common::*;

const KEY: &str = "object-lock test backup key";
const SECRET: &str = "object-lock-backup-secret-never-shown";

/// One request to moto on loopback as the account `testing`: the status.
fn s3_status(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> u16 {
    s3_request(port, method, path, headers).0
}

/// boto3 against moto: `script` runs with `s` an S3 client; its stdout.
fn boto3(port: u16, script: &str) -> String {
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import boto3, json, datetime\ns=boto3.client('s3', endpoint_url='http://127.0.0.1:{port}', aws_access_key_id='testing', aws_secret_access_key='t', region_name='us-east-1')\n{script}"
        ))
        .output()
        .expect("python3");
    assert!(out.status.success(), "boto3: {}{}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Nothing in the bucket without Object Lock (`plain-backups`): what a refused `what` must
/// leave there.
fn plain_backups_left_empty(port: u16, what: &str) {
    let keys = boto3(port, "print(s.list_objects_v2(Bucket='plain-backups').get('KeyCount'))");
    assert_eq!(keys.trim(), "0", "the refused {what} left objects");
}

/// The lock of every version under `prefix` in `bucket`: `EXTENSION MODE DAYS-LEFT` each,
/// sorted.
fn lock_modes(port: u16, bucket: &str, prefix: &str) -> Vec<String> {
    let modes = boto3(
        port,
        &format!("for o in s.list_object_versions(Bucket='{bucket}', Prefix='{prefix}').get('Versions', []):\n    h=s.head_object(Bucket='{bucket}', Key=o['Key'], VersionId=o['VersionId'])\n    print(o['Key'].rsplit('.', 1)[-1], h.get('ObjectLockMode'), round((h['ObjectLockRetainUntilDate']-datetime.datetime.now(datetime.timezone.utc)).total_seconds()/86400))"),
    );
    let mut lines: Vec<String> = modes.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn with_aws(run: Run, port: u16) -> Run {
    run.moto(port, SECRET)
}

/// Regression (issue 42): Object Lock kept evidence but never the backups it speaks of;
/// `retain` on a backup was not there. Now the archive and its manifest are locked in the
/// mode asked, readable with boto3, their versions cannot be deleted, and a bucket without
/// Object Lock (or a local directory) asked for retention stops the run with exit 2 before
/// pg_dump runs, nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_asked_to_be_retained_is_locked_with_its_manifest_and_a_bucket_without_lock_is_refused_before_the_dump(
) {
    let Some(moto) = moto() else { return };
    if !require(
        Command::new("python3").args(["-c", "import boto3"]).output().is_ok_and(|o| o.status.success()),
        "python3 with boto3",
    ) {
        return;
    }
    let Some(s) = native_server("ledger").await else { return };
    exec(&s.url(), "create table t (id int primary key); insert into t select generate_series(1, 100)").await;
    let port = moto.port;
    assert_eq!(s3_status(port, "PUT", "/locked-backups", &[("x-amz-bucket-object-lock-enabled", "true")]), 200);
    assert_eq!(s3_status(port, "PUT", "/plain-backups", &[]), 200);
    let backup = |storage: &str, retain: &str, mode: &str| {
        with_aws(Run::new("backup"), port)
            .var("database_url", s.url())
            .var("storage", storage)
            .var("retain", retain)
            .var("lock_mode", mode)
            .key(KEY)
            .output()
    };

    // A bucket without Object Lock: exit 2 (the runbook asks for what this storage cannot
    // give: a configuration to change, not an outage to retry), before pg_dump took its
    // snapshot, nothing in the bucket.
    let r = backup("s3://plain-backups/prod", "30d", "governance");
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("S3 bucket plain-backups: it has no Object Lock configuration"), "{}", r.all());
    assert!(!r.all().contains("snapshot"), "pg_dump ran before the refusal: {}", r.all());
    assert!(!r.all().contains(SECRET), "{}", r.all());
    plain_backups_left_empty(port, "backup");
    // A local directory cannot keep one either: refused, saying what can.
    let (_t, local) = tmp_backups();
    let r = backup(&local.display().to_string(), "30d", "governance");
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("retention is kept only by S3 Object Lock"), "{}", r.all());
    assert!(!Path::new(&local).join("ledger").exists(), "a refused backup wrote a folder");
    // A mode that is no Object Lock mode: refused as the runbook's input.
    let r = backup("s3://locked-backups/prod", "30d", "forever");
    assert_eq!(r.code, Some(2), "{}", r.all());

    // A bucket with Object Lock: the archive and its manifest, compliance mode, 30 days.
    let r = backup("s3://locked-backups/prod", "30d", "compliance");
    assert_eq!(r.code, Some(0), "{}", r.all());
    assert!(r.all().contains("in compliance mode until"), "{}", r.all());
    assert!(!r.all().contains(SECRET), "{}", r.all());
    let listed = boto3(
        port,
        // pgdrill's own upload markers (`.pgdrill-uploads/`) leave versions too: not backups.
        "for o in s.list_object_versions(Bucket='locked-backups', Prefix='prod/ledger/').get('Versions', []):\n    h=s.head_object(Bucket='locked-backups', Key=o['Key'], VersionId=o['VersionId'])\n    left=(h['ObjectLockRetainUntilDate']-datetime.datetime.now(datetime.timezone.utc)).total_seconds() if 'ObjectLockRetainUntilDate' in h else None\n    print(json.dumps({'key': o['Key'], 'version': o['VersionId'], 'mode': h.get('ObjectLockMode'), 'days': left and round(left/86400)}))",
    );
    let objects: Vec<serde_json::Value> =
        listed.lines().map(|l| serde_json::from_str(l).expect("a line of JSON")).collect();
    assert_eq!(objects.len(), 2, "one archive and one manifest: {listed}");
    let archive = objects.iter().find(|o| o["key"].as_str().is_some_and(|k| k.ends_with(".dump.pgdrill")));
    let manifest = objects.iter().find(|o| o["key"].as_str().is_some_and(|k| k.ends_with(".manifest.json")));
    for (what, o) in [("archive", archive), ("manifest", manifest)] {
        let o = o.unwrap_or_else(|| panic!("no {what} in the bucket: {listed}"));
        assert_eq!(o["mode"], "COMPLIANCE", "{what}: {o}");
        assert_eq!(o["days"], 30, "{what}: {o}");
        // Deleting that version before the date: refused by the store.
        let out = boto3(
            port,
            &format!(
                "try:\n    s.delete_object(Bucket='locked-backups', Key={key:?}, VersionId={version:?}, BypassGovernanceRetention=True)\n    print('deleted')\nexcept Exception as e:\n    print('refused', e)",
                key = o["key"].as_str().unwrap_or_default(),
                version = o["version"].as_str().unwrap_or_default()
            ),
        );
        assert!(out.starts_with("refused"), "{what}: a locked version was deleted: {out}");
    }
    // backup.base takes the same `retain` and `lock_mode` (the shipped base-backup runbook
    // passes them): a bucket without Object Lock is exit 2 before pg_basebackup starts,
    // nothing written; into one with it, the archive and its manifest are locked.
    // (A server that takes replication connections, which pg_basebackup needs.)
    let archive = tempfile::tempdir().expect("tmp");
    let opts = pgdrill::testkit::physical::archiving::ArchivingOptions {
        archive_dir: Some(archive.path().join("wal")),
        major: Some(15),
        ..Default::default()
    };
    let cluster = match pgdrill::testkit::physical::archiving::ArchivingServer::start(opts).await {
        Ok(c) => c,
        Err(e) => {
            require(false, &format!("PostgreSQL 15 server binaries ({e})"));
            return;
        }
    };
    let base = |storage: &str| {
        with_aws(Run::new("base-backup"), port)
            .var("database_url", cluster.url())
            .var("storage", storage)
            .var("check_wal", "false")
            .var("retain", "7d")
            .key(KEY)
            .output()
    };
    let r = base("s3://plain-backups/base");
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("S3 bucket plain-backups: it has no Object Lock configuration"), "{}", r.all());
    assert!(!r.all().contains("streaming a base backup"), "pg_basebackup ran before the refusal: {}", r.all());
    plain_backups_left_empty(port, "base backup");
    let r = base("s3://locked-backups/base");
    assert_eq!(r.code, Some(0), "{}", r.all());
    let modes = lock_modes(port, "locked-backups", "base/.cluster/");
    assert_eq!(modes, ["json GOVERNANCE 7", "pgdrill GOVERNANCE 7"], "{modes:?}");
    cluster.stop();

    // The offsite copy: into a bucket without Object Lock, refused before anything is
    // copied (exit 2); into one with it, the copy and its manifest locked (governance).
    assert_eq!(s3_status(port, "PUT", "/locked-offsite", &[("x-amz-bucket-object-lock-enabled", "true")]), 200);
    let offsite = |to: &str| {
        with_aws(Run::new("offsite"), port)
            .var("storage", "s3://locked-backups/prod")
            .var("offsite", to)
            .var("database", "ledger")
            .var("offsite_retain", "90d")
            .output()
    };
    let r = offsite("s3://plain-backups/offsite");
    assert_eq!(r.code, Some(2), "{}", r.all());
    assert!(r.all().contains("S3 bucket plain-backups: it has no Object Lock configuration"), "{}", r.all());
    plain_backups_left_empty(port, "copy");
    let r = offsite("s3://locked-offsite/prod");
    assert_eq!(r.code, Some(0), "{}", r.all());
    let modes = lock_modes(port, "locked-offsite", "prod/ledger/");
    assert_eq!(modes, ["json GOVERNANCE 90", "pgdrill GOVERNANCE 90"], "{modes:?}");

    // The backup is whole: the shipped verify proves it from the locked bucket.
    with_aws(Run::new("verify"), port)
        .var("storage", "s3://locked-backups/prod")
        .var("database", "ledger")
        .var("provider", "native")
        .key(KEY)
        .expect(0);
    s.stop().await;
    drop(moto);
}
