//! A team's own names and formats, written by pgdrill (issue 40, item 2): each file is found
//! by the team's glob, read by the team's own command (`gunzip -t`, `zcat | psql`, `zstd -dc
//! | pg_restore -l`, `openssl enc -d -aes-256-cbc -pbkdf2`, `gpg --batch --passphrase-fd 0
//! -d`), verified green by pgdrill against its sidecar manifest, and fails verify once cut;
//! the passphrase is in no process's argv and in none of the run's outputs, and a backup
//! killed mid-stream leaves nothing under its final name.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const PASS: &str = "team-own-format passphrase 4711";
const PATTERN: &str = "{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}";

/// The source database both store tests back up: two tables, a foreign key between them.
const SHOP: &str = "create table items (id int primary key, name text not null);
     insert into items select g, 'item ' || g from generate_series(1, 1000) g;
     create table orders (id int primary key, item int references items);
     insert into orders select g, 1 + g % 1000 from generate_series(1, 500) g;";

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool).arg(arg).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `bash -c SCRIPT` with the source server in the libpq environment, the passphrase in
/// `BACKUP_PASS`, `F` the backup and a private `GNUPGHOME`, as the teams' runbooks run them;
/// it must succeed.
fn team(src: &pgdrill::testkit::pg::ephemeral::Ephemeral, script: &str, file: &Path, gnupghome: &Path) -> String {
    let out = libpq_bash(src, "postgres")
        .args(["-c", &format!("set -euo pipefail; {script}")])
        .env("BACKUP_PASS", PASS)
        .env("GNUPGHOME", gnupghome)
        .env("F", file)
        .output()
        .expect("bash");
    assert!(out.status.success(), "the team's own command `{script}` failed: {}", text(&out.stderr));
    text(&out.stdout)
}

/// Every file under `dir` a run wrote (reports, JUnit), read as text.
fn written_text(dir: &Path) -> String {
    walk(dir).iter().filter_map(|p| std::fs::read(p).ok()).map(|b| text(&b)).collect::<Vec<_>>().join("\n")
}

/// The command lines of every process now running, `\0` shown as spaces, with their pids.
fn processes() -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        if let Ok(b) = std::fs::read(e.path().join("cmdline")) {
            let line: String = text(&b).replace('\0', " ");
            out.push((pid, line));
        }
    }
    out
}

/// Whether `pid` is gone (or a zombie nobody runs any more).
fn gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

struct Case {
    /// The file name's ending after the pattern's time, and the team's glob for it.
    ext: &'static str,
    vars: &'static [&'static str],
    /// What the team runs on the file (`$F`).
    team: &'static str,
}

const CASES: &[Case] = &[
    Case {
        ext: ".sql.gz",
        vars: &["format=plain", "compression=gzip", "envelope=none", "encrypt=false"],
        team: "gunzip -t \"$F\"; psql -qc 'create database team_copy'; \
               zcat \"$F\" | psql -q -v ON_ERROR_STOP=1 -d team_copy >/dev/null; \
               psql -tA -d team_copy -c 'select count(*) from items'",
    },
    Case {
        ext: ".dump.zst",
        vars: &["format=custom", "compression=zstd", "envelope=none", "encrypt=false"],
        // `pg_restore -l` stops reading once it has the table of contents; the rest is
        // drained (`cat`), or the writer meets a closed pipe under `pipefail`.
        team: "zstd -qt \"$F\"; zstd -dc \"$F\" | { pg_restore -l; cat >/dev/null; } | grep -c ' TABLE public '",
    },
    Case {
        ext: ".sql.gz.enc",
        vars: &["format=plain", "compression=gzip", "envelope=openssl"],
        team: "openssl enc -d -aes-256-cbc -pbkdf2 -pass env:BACKUP_PASS -in \"$F\" | gunzip | \
               grep -c 'PostgreSQL database dump complete'",
    },
    Case {
        ext: ".dump.gpg",
        vars: &["format=custom", "compression=none", "envelope=gpg"],
        // The agent started first, with retries: under load gpg's own autostart gave up
        // waiting for it (CI: the command failed with nothing decrypted). The decrypt itself
        // is the team's command as written; its stderr is kept for the failure message. The
        // listing drains what `pg_restore -l` leaves unread: CI failed once with gpg's
        // "error writing to '-': Broken pipe" when pg_restore had its table of contents and
        // left before gpg's last write (an uncompressed dump, under `pipefail`).
        team: "for i in 1 2 3 4 5; do gpgconf --launch gpg-agent && break; sleep 1; done; \
               gpg --batch --passphrase-fd 0 -d \"$F\" <<<\"$BACKUP_PASS\" | { pg_restore -l; cat >/dev/null; } | \
               grep -c ' TABLE public '; gpgconf --kill gpg-agent",
    },
];

/// Before: every backup pgdrill wrote was a `.pgdrill` container in a folder of its own, so
/// a team's `ls *.sql.gz`, `gunzip -t`, openssl and gpg commands stopped working the day
/// they switched. Each format is now written under the team's own name, read by their own
/// command, and proven by verify against its sidecar manifest (fingerprint: tables and
/// schema); a cut file of each fails verify; openssl's and gpg's are refused without
/// `allow_unauthenticated` when a key is given (their manifests cannot be authenticated).
#[tokio::test(flavor = "multi_thread")]
async fn backups_written_in_a_teams_own_names_and_formats_are_read_by_their_commands_and_proven_by_verify() {
    if !require(
        have("gpg", "--version") && have("openssl", "version") && have("zstd", "--version"),
        "gpg, openssl, zstd",
    ) {
        return;
    }
    let Some(src) = native_server("shop").await else { return };
    let url = src.url();
    exec(&url, SHOP).await;
    let tmp = tempfile::tempdir().expect("tmp");
    let storage = tmp.path().join("team");
    // A name that says another format than the file's is refused before anything connects.
    let ran = Run::new("backup")
        .var("database_url", &url)
        .var("storage", storage.display())
        .var("name_pattern", format!("{PATTERN}.sql.gz"))
        .vars(&["format=plain", "compression=gzip", "envelope=openssl"])
        .key(PASS)
        .expect(2);
    assert!(ran.all().contains("the name does not end in `.enc`"), "{}", ran.all());
    assert!(!storage.exists(), "nothing written");
    let gnupg = made_dir(tmp.path().join("gnupg"));
    std::fs::set_permissions(&gnupg, std::os::unix::fs::PermissionsExt::from_mode(0o700)).expect("chmod");
    // What each team's `ls` and `psql` print, per case.
    let expected_team_output = ["1000", "2", "1", "2"];

    for (case, want) in CASES.iter().zip(expected_team_output) {
        let reports = tmp.path().join(format!("reports{}", case.ext));
        let ran = Run::new("backup")
            .var("database_url", &url)
            .var("storage", storage.display())
            .var("name_pattern", format!("{PATTERN}{}", case.ext))
            .vars(case.vars)
            .key(PASS)
            .junit(reports.join("junit.xml"))
            .report(&reports)
            .expect(0);
        assert_eq!(ran.junit().status("check"), "passed", "{}", ran.all());
        assert!(!ran.all().contains(PASS), "the passphrase is in the run's output: {}", ran.all());
        assert!(!written_text(&reports).contains(PASS), "the passphrase is in the run's reports");

        // Found by the team's glob, under the team's name, with its sidecar manifest.
        let ls = team(&src, &format!("cd {} && ls -1 *{}", storage.display(), case.ext), &storage, &gnupg);
        let names: Vec<&str> = ls.lines().collect();
        assert_eq!(names.len(), 1, "`ls *{}` finds the one backup: {ls}", case.ext);
        let name = names[0].to_string();
        let stem = name.strip_suffix(case.ext).unwrap_or_default();
        let stamp = stem.strip_prefix("shop_").unwrap_or_default();
        assert!(
            stamp.len() == 15
                && stamp.as_bytes()[8] == b'_'
                && stamp.replace('_', "").bytes().all(|b| b.is_ascii_digit()),
            "named by the pattern: {name}"
        );
        let file = storage.join(&name);
        let manifest: serde_json::Value = serde_json::from_slice(
            &std::fs::read(storage.join(format!("{name}.manifest.json"))).expect("the sidecar manifest"),
        )
        .expect("manifest json");
        assert_eq!(manifest["database"], "shop");
        assert!(manifest["fingerprint"]["tables"].is_object(), "{manifest}");

        // Read by the team's own command.
        let said = team(&src, case.team, &file, &gnupg);
        assert_eq!(said.lines().next().map(str::trim), Some(want), "{}: {said}", case.team);

        // Verified green against its sidecar manifest, like pgdrill's own backups.
        let verify = |extra: &[&str], junit: &Path| {
            Run::verify_native(storage.display(), "shop")
                .var("backup", &name)
                .var("force", true)
                .vars(extra)
                .key(PASS)
                .junit(junit)
                .output()
        };
        let junit = tmp.path().join(format!("verify{}.xml", case.ext));
        let ran = verify(&["allow_unauthenticated=true"], &junit);
        assert_eq!(ran.code, Some(0), "{}", ran.all());
        let j = ran.junit();
        // The roles too, from the sidecar: owners and grants restored and compared.
        for step in ["integrity", "roles", "restore", "tables", "schema"] {
            assert_eq!(j.status(step), "passed", "{step}: {}", ran.all());
        }
        // Proven against the manifest's fingerprint: both tables with their rows, and the schema.
        let said = j.all_text();
        assert!(said.contains("the sidecar of a team's own format"), "{said}");
        assert!(said.contains("2 tables, 1500 rows match the source"), "{said}");
        assert!(said.contains("schema matches the source"), "{said}");
        assert!(said.contains("default privileges, roles, memberships and role settings match the source"), "{said}");
        assert!(!ran.all().contains(PASS) && !said.contains(PASS), "the passphrase is in verify's output");

        if case.ext == ".sql.gz" {
            // The restore runbook takes it by its name, from its sidecar: restored into a new
            // database and proven against the sidecar's fingerprint before it is declared done.
            let junit = tmp.path().join("restore.xml");
            let ran = Run::new("restore")
                .arg("--yes")
                .var("database_url", &url)
                .var("storage", storage.display())
                .var("database", "shop")
                .var("backup", &name)
                .var("target", "shop_restored")
                .var("safety", tmp.path().join("safety").display())
                .var("allow_unauthenticated", true)
                .key(PASS)
                .junit(&junit)
                .expect(0);
            let j = ran.junit();
            for step in ["pick", "check", "restore", "verify"] {
                assert_eq!(j.status(step), "passed", "{step}: {}", ran.all());
            }
            assert!(j.all_text().contains("the sidecar of a team's own format"), "{}", j.all_text());
            assert_eq!(scalar(&src.url_for("shop_restored"), "select count(*) from orders").await, "500");
        }

        if case.vars.contains(&"envelope=openssl") {
            // A key given: its manifest cannot be authenticated, so it is refused by default.
            let ran = verify(&[], &tmp.path().join("refused.xml"));
            assert_eq!(ran.code, Some(1), "{}", ran.all());
            assert!(ran.all().contains("refused") && ran.all().contains("allow_unauthenticated"), "{}", ran.all());
        }

        // Cut to half its length: verify fails on the sha256 the manifest holds.
        let len = std::fs::metadata(&file).expect("size").len();
        std::fs::OpenOptions::new().write(true).open(&file).expect("open").set_len(len / 2).expect("cut");
        let ran = verify(&["allow_unauthenticated=true"], &tmp.path().join(format!("cut{}.xml", case.ext)));
        assert_eq!(ran.code, Some(1), "a cut {} passed verify: {}", case.ext, ran.all());
        let j = ran.junit();
        assert_eq!(j.status("integrity"), "failure", "{}", ran.all());
        assert!(j.all_text().contains("does not match its manifest"), "{}", j.all_text());
    }
}

/// A pg_dump that waits a few seconds before dumping (perl sleeps, then becomes pg_dump, so
/// it is one process that dies with pgdrill), so the encrypting tool is running when the
/// test looks at it.
fn slow_pg_dump(dir: &Path) -> PathBuf {
    let p = written(
        dir.join("slow-pg_dump"),
        "#!/bin/sh\nreal=/usr/lib/postgresql/15/bin/pg_dump\n\
 case \"$1\" in --version|-V) exec \"$real\" \"$@\";; esac\n\
 exec perl -e 'sleep 4; exec @ARGV or die' \"$real\" \"$@\"\n",
    );
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    p
}

const SLOW_RUNBOOK: &str = "name: team-backup
vars:
  url: ~
  storage: ~
  pg_dump: ~
  envelope: ~
  name_pattern: ~
secrets:
  key: { env: PGDRILL_BACKUP_KEY }
steps:
  - id: dump
    uses: backup.create
    with:
      database_url: \"{{ vars.url }}\"
      storage: \"{{ vars.storage }}\"
      pg_dump: \"{{ vars.pg_dump }}\"
      format: plain
      compression: gzip
      envelope: \"{{ vars.envelope }}\"
      name_pattern: \"{{ vars.name_pattern }}\"
      key: \"{{ secrets.key }}\"
";

/// Entries of `dir` whose name holds `pgdrill-gpg-` (gpg's home, hidden or not).
fn gpg_homes(dir: &Path) -> Vec<String> {
    names(dir).into_iter().filter(|n| n.contains("pgdrill-gpg-")).collect()
}

/// Every name under `dir`, hidden ones too, in the order the directory gives them; none when
/// `dir` does not exist (yet, or any more).
fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The passphrase reaches openssl through its own environment and gpg through its stdin,
/// never any process's argv; and a backup killed -9 while the tool encrypts leaves no file
/// under the team's name (only pgdrill's hidden partial directory) and no tool running.
/// Before: the kill left gpg's private home (`pgdrill-gpg-*`, a plain temporary directory
/// removed on drop) in the temporary directory for ever; it is now reaped by the next
/// pgdrill command, whatever it is (here `validate`).
#[tokio::test(flavor = "multi_thread")]
async fn an_encrypting_tool_never_sees_the_passphrase_in_argv_and_a_killed_backup_leaves_no_team_file_nor_gpg_home() {
    if !require(have("gpg", "--version") && have("openssl", "version") && have("perl", "-v"), "gpg, openssl, perl") {
        return;
    }
    let Some(src) = native_server("shop").await else { return };
    let url = src.url();
    exec(&url, "create table t (id int primary key); insert into t select generate_series(1, 100);").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let runbook = written(tmp.path().join("team-backup.yaml"), SLOW_RUNBOOK);
    let pg_dump = slow_pg_dump(tmp.path());

    // pgdrill's temporary directory, the test's own, so what it leaves there can be counted.
    let tmpdir = made_dir(tmp.path().join("tmpdir"));
    for (envelope, ext, tool) in [("openssl", ".sql.gz.enc", "openssl enc"), ("gpg", ".sql.gz.gpg", "--symmetric")] {
        let storage = tmp.path().join(envelope);
        let mut child = Run::new(&runbook)
            .env("TMPDIR", &tmpdir)
            .var("url", &url)
            .var("storage", storage.display())
            .var("pg_dump", pg_dump.display())
            .var("envelope", envelope)
            .var("name_pattern", format!("{PATTERN}{ext}"))
            .key(PASS)
            .command()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pgdrill");
        let pgdrill_pid = child.id();
        // The encrypting tool, pgdrill's own child, while pg_dump has not yet written a byte.
        let t = Instant::now();
        let tool_pid = loop {
            assert!(t.elapsed() < Duration::from_secs(90), "{envelope}: the tool never started");
            assert!(child.try_wait().expect("wait").is_none(), "{envelope}: the backup ended before the tool was seen");
            let found = processes().into_iter().find(|(pid, line)| {
                line.contains(tool)
                    && std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .ok()
                        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.split_whitespace().nth(1).map(str::to_string)))
                        .flatten()
                        == Some(pgdrill_pid.to_string())
            });
            if let Some((pid, _)) = found {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for (pid, line) in processes() {
            assert!(!line.contains(PASS), "{envelope}: process {pid} has the passphrase in its argv: {line}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        // Nothing under a final name: only the hidden partial directory.
        let left = names(&storage);
        assert!(left.iter().all(|n| n.starts_with(".pgdrill-partial-")), "{envelope}: {left:?}");
        let glob = team(
            &src,
            &format!("cd {} && (ls -1 *{ext} 2>/dev/null || true) | wc -l", storage.display()),
            &storage,
            tmp.path(),
        );
        assert_eq!(glob.trim(), "0", "{envelope}: the team's glob finds nothing");
        // The tool dies with pgdrill.
        let t = Instant::now();
        while !gone(tool_pid) {
            assert!(t.elapsed() < Duration::from_secs(10), "{envelope}: the tool {tool_pid} outlived pgdrill");
            std::thread::sleep(Duration::from_millis(50));
        }
        if envelope == "gpg" {
            // The kill left gpg's home (the scene this test is about), and the next command,
            // one that encrypts nothing, removes it.
            assert_eq!(gpg_homes(&tmpdir).len(), 1, "gpg's home while gpg ran: {:?}", gpg_homes(&tmpdir));
            Run::cli(["validate"]).arg(&runbook).env("TMPDIR", &tmpdir).expect(0);
            assert_eq!(gpg_homes(&tmpdir), Vec::<String>::new(), "gpg's home outlived the next run");
        }
    }
}

/// What pgdrill made for a backup whose owner is still blocked when the command ends (here
/// an encrypting tool that never answers, so the thread feeding it never returns and never
/// drops gpg's home nor the partial file) is removed on the way out: Ctrl-C ends the run
/// (130) and the process's exit list (`on_exit`) removes them. Without that list both stay
/// until the next pgdrill reaps them: gpg's home in the temporary directory, the partial
/// file beside the team's backups.
#[tokio::test(flavor = "multi_thread")]
async fn a_backup_stopped_while_its_encrypting_tool_hangs_leaves_no_gpg_home_and_no_partial_file() {
    if !require(have("gpg", "--version"), "gpg") {
        return;
    }
    let Some(src) = native_server("shop").await else { return };
    exec(&src.url(), "create table t (id int primary key); insert into t select generate_series(1, 100);").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let runbook = written(tmp.path().join("team-backup.yaml"), SLOW_RUNBOOK);
    let tmpdir = made_dir(tmp.path().join("tmpdir"));
    let storage = tmp.path().join("gpg");
    // A gpg that starts, says so, and never reads nor answers (as one waiting on a prompt).
    let bin = made_dir(tmp.path().join("bin"));
    let started = tmp.path().join("gpg.pid");
    let real = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("gpg"))
        .find(|p| p.is_file())
        .expect("gpg on PATH");
    let fake = written(
        bin.join("gpg"),
        format!(
            "#!/bin/sh\ncase \"$1\" in --version) exec {} \"$@\";; esac\necho $$ > {}.tmp && mv {}.tmp {}\nexec sleep 600\n",
            real.display(),
            started.display(),
            started.display(),
            started.display()
        ),
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut child = Run::new(&runbook)
        .env("TMPDIR", &tmpdir)
        .env("PATH", &path)
        .var("url", src.url())
        .var("storage", storage.display())
        .var("pg_dump", "/usr/lib/postgresql/15/bin/pg_dump")
        .var("envelope", "gpg")
        .var("name_pattern", format!("{PATTERN}.sql.gz.gpg"))
        .key(PASS)
        .spawn_quietly();
    while !started.exists() {
        assert!(child.try_wait().expect("wait").is_none(), "the backup ended before its tool started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let tool: u32 = std::fs::read_to_string(&started).expect("pid").trim().parse().expect("a pid");
    // The scene: gpg's home and the partial file exist while the tool hangs.
    assert_eq!(gpg_homes(&tmpdir).len(), 1, "gpg's home while gpg ran: {:?}", gpg_homes(&tmpdir));
    let partials = || names(&storage).into_iter().filter(|n| n.starts_with(".pgdrill-partial-")).collect::<Vec<_>>();
    assert_eq!(partials().len(), 1, "the partial file while gpg ran: {:?}", partials());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .expect("SIGINT");
    assert_eq!(child.wait().expect("wait").code(), Some(130));
    assert_eq!(gpg_homes(&tmpdir), Vec::<String>::new(), "gpg's home outlived the stopped backup");
    assert_eq!(partials(), Vec::<String>::new(), "the partial file outlived the stopped backup");
    let left = names(&storage);
    assert!(left.is_empty(), "nothing stays under the team's folder: {left:?}");
    // The hanging tool dies with pgdrill.
    while !gone(tool) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The names under `dir` that are not hidden (what a team's `ls` shows), sorted.
fn visible(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = names(dir).into_iter().filter(|n| !n.starts_with('.')).collect();
    out.sort();
    out
}

/// Before: a team's file was published first and its sidecar after it, so a kill between
/// the two left a whole `shop_*.sql.gz` without its sidecar, which the team's glob found and
/// verify read as another tool's file. Killed (by the debug build's pause hook) at each
/// phase of its publication: no team file is ever under its name without its sidecar; a
/// sidecar left alone is listed apart as unfinished, never a backup, and prune removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_team_file_killed_between_its_publication_and_its_sidecar_was_left_without_its_sidecar() {
    let Some(src) = native_server("shop").await else { return };
    let url = src.url();
    exec(&url, "create table t (id int primary key); insert into t select generate_series(1, 100);").await;
    let tmp = tempfile::tempdir().expect("tmp");
    let ext = ".sql.gz";
    // Each phase in a folder of its own: a name is the dump's second, and a left sidecar keeps it.
    let kill_at = |phase: &str| -> PathBuf {
        let storage = tmp.path().join(phase);
        let flag = tmp.path().join(format!("{phase}.flag"));
        let backup = Run::new("backup")
            .var("database_url", &url)
            .var("storage", storage.display())
            .var("name_pattern", format!("{PATTERN}{ext}"))
            .vars(&["format=plain", "compression=gzip", "envelope=none", "encrypt=false"]);
        kill_paused_at(backup.command(), phase, &flag);
        storage
    };
    let team_files = |dir: &Path| -> Vec<String> { visible(dir).into_iter().filter(|n| n.ends_with(ext)).collect() };

    // Written whole in its private partial file: nothing visible.
    let dir = kill_at("backup-written");
    assert_eq!(visible(&dir), Vec::<String>::new(), "nothing under a final name");

    // Published, or published and read back: the file with its sidecar, a backup.
    for phase in ["backup-uploaded", "backup-read-back"] {
        let dir = kill_at(phase);
        let files = team_files(&dir);
        assert_eq!(files.len(), 1, "{phase}: {:?}", visible(&dir));
        assert!(dir.join(format!("{}.manifest.json", files[0])).is_file(), "{phase}: the file without its sidecar");
        let list = Run::cli(["backups", "list", "--storage"]).arg(&dir).expect(0);
        assert!(list.stdout.contains(&files[0]) && !list.stdout.contains("NOT BACKUPS"), "{phase}: {}", list.stdout);
    }

    // The sidecar is published, the file not yet: the team's glob finds nothing, and the
    // sidecar is shown apart as unfinished and pruned once old enough.
    let dir = kill_at("backup-sidecar-written");
    let left = visible(&dir);
    assert_eq!(left.len(), 1, "the sidecar alone: {left:?}");
    let sidecar = left[0].clone();
    assert!(sidecar.ends_with(".sql.gz.manifest.json"), "{sidecar}");
    assert_eq!(team_files(&dir), Vec::<String>::new(), "no team file without its sidecar");
    let list = Run::cli(["backups", "list", "--storage"]).arg(&dir).expect(0);
    let (table, apart) = list
        .stdout
        .split_once("NOT BACKUPS: 1 unfinished archive")
        .unwrap_or_else(|| panic!("the lone sidecar is shown apart: {}", list.stdout));
    assert!(!table.contains(&sidecar), "never a row of the table: {}", list.stdout);
    assert!(apart.contains(&sidecar) && apart.contains("a sidecar manifest without its file"), "{}", list.stdout);
    let prune = |after: &str| prune_abandoned(&dir, after);
    let ran = prune("24h");
    assert!(ran.all().contains(&format!("keep   {sidecar} (unfinished")), "{}", ran.all());
    assert!(dir.join(&sidecar).exists());
    let ran = prune("0s");
    assert!(
        ran.all().contains(&format!("delete {sidecar} (unfinished: a sidecar manifest whose file")),
        "{}",
        ran.all()
    );
    assert_eq!(visible(&dir), Vec::<String>::new(), "the lone sidecar was pruned");

    // Copied offsite, the same order: killed after the sidecar, before the file, the copy
    // holds no team file without its sidecar; run again, it resumes and completes it.
    let whole = tmp.path().join("backup-read-back");
    let name = team_files(&whole).pop().expect("the complete backup");
    let to = tmp.path().join("offsite");
    let flag = tmp.path().join("copy.flag");
    let offsite = || {
        Run::new("offsite")
            .var("storage", whole.display())
            .var("offsite", to.display())
            .var("copy", "all")
            .var("name_pattern", format!("{PATTERN}{ext}"))
    };
    kill_paused_at(offsite().command(), "copy-sidecar-written", &flag);
    assert_eq!(visible(&to), [format!("{name}.manifest.json")], "the sidecar alone, no team file");
    let ran = offsite().expect(0);
    assert!(ran.all().contains("1 copied"), "{}", ran.all());
    assert_eq!(visible(&to), [name.clone(), format!("{name}.manifest.json")]);
    for f in [name.clone(), format!("{name}.manifest.json")] {
        assert_eq!(std::fs::read(whole.join(&f)).expect("source"), std::fs::read(to.join(&f)).expect("copy"), "{f}");
    }
    src.stop().await;
}

/// `run` against the moto on `port` (`object_store::with_aws`), the team's passphrase as the
/// key: its exit code and what it printed.
fn in_s3(run: Run, port: u16) -> (i32, String) {
    let mut c = crate::object_store::with_aws(run.command(), port);
    let o = c.env("PGDRILL_BACKUP_KEY", PASS).output().expect("pgdrill runs");
    (o.status.code().unwrap_or(-1), format!("{}{}", text(&o.stdout), text(&o.stderr)))
}

/// `run` against the moto store on `port` with `--junit JUNIT`: it must exit 0 with each of
/// `steps` passed. What it printed and its JUnit.
fn passes_in_s3(run: Run, port: u16, junit: &Path, steps: &[&str]) -> (String, Junit) {
    let (code, log) = in_s3(run.junit(junit), port);
    assert_eq!(code, 0, "{log}");
    let j = Junit::read(junit);
    for step in steps {
        assert_eq!(j.status(step), "passed", "{step}: {log}");
    }
    (log, j)
}

/// Before: a team's own name and format written into an object store had code and no test,
/// `backups list` showed its manifest as `none`, and verify from the store was said to take
/// the file for another tool's (no ground truth: "content unproven"). Written with a pattern
/// into s3:// (moto): the object and its sidecar at the location's root, listed with its
/// sidecar, verified against the sidecar's fingerprint, and restored by the restore runbook.
#[tokio::test(flavor = "multi_thread")]
async fn a_team_file_in_an_object_store_is_listed_with_its_sidecar_verified_against_it_and_restored() {
    let Some(s3) = moto() else { return };
    let Some(src) = native_server("shop").await else { return };
    let url = src.url();
    exec(&url, SHOP).await;
    assert_eq!(crate::object_store::http(s3.port, "PUT", "/team", &[]).0, 200, "bucket created");
    let loc = "s3://team/nightly";
    let tmp = tempfile::tempdir().expect("tmp");
    let ext = ".sql.gz.enc";

    // Written: the team's name at the location's root, its sidecar beside it, nothing else.
    let (code, log) = in_s3(
        Run::new("backup")
            .var("database_url", &url)
            .var("storage", loc)
            .var("name_pattern", format!("{PATTERN}{ext}"))
            .vars(&["format=plain", "compression=gzip", "envelope=openssl"]),
        s3.port,
    );
    assert_eq!(code, 0, "{log}");
    let keys = crate::object_store::s3_keys(s3.port, "team", "nightly/");
    let file = keys.iter().find(|k| k.ends_with(ext)).unwrap_or_else(|| panic!("the team's file: {keys:?}")).clone();
    assert!(file.starts_with("nightly/shop_"), "{file}");
    assert_eq!(keys, [file.clone(), format!("{file}.manifest.json")], "the file and its sidecar only");
    let name = file.strip_prefix("nightly/").unwrap_or_default().to_string();
    let object = format!("s3://team/{file}");
    assert!(!log.contains(PASS), "{log}");

    // Listed with its sidecar, unauthenticated, as the table and the JSON say it.
    let (code, table) = in_s3(Run::cli(["backups", "list", "--storage", loc]), s3.port);
    assert_eq!(code, 0, "{table}");
    let row = table.lines().find(|l| l.contains(&object)).unwrap_or_else(|| panic!("listed: {table}"));
    assert!(row.contains("sidecar UNAUTH"), "{row}");
    let (code, json) = in_s3(Run::cli(["backups", "list", "--json", "--storage", loc]), s3.port);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("json");
    assert_eq!(v[0]["path"], object.as_str(), "{json}");
    assert_eq!(v[0]["manifest_auth"], "unauthenticated (sidecar of a team's own format)", "{json}");

    // Verified from the store against its sidecar: the fingerprint is the ground truth (a
    // file taken for another tool's would have none here: "content unproven", exit 1).
    let junit = tmp.path().join("verify.xml");
    let (_, j) = passes_in_s3(
        Run::verify_native(loc, "shop").var("backup", &name).var("allow_unauthenticated", true),
        s3.port,
        &junit,
        &["integrity", "restore", "tables", "schema"],
    );
    let said = j.all_text();
    assert!(said.contains("the sidecar of a team's own format"), "{said}");
    assert!(said.contains("2 tables, 1500 rows match the source"), "{said}");
    assert!(!said.contains("content unproven"), "{said}");

    // Restored from the store by the restore runbook into a new database, proven against
    // the sidecar's fingerprint before it is declared done.
    let junit = tmp.path().join("restore.xml");
    let (log, _) = passes_in_s3(
        Run::new("restore")
            .arg("--yes")
            .var("database_url", &url)
            .var("storage", loc)
            .var("database", "shop")
            .var("backup", &name)
            .var("target", "shop_copy")
            .var("safety", tmp.path().join("safety").display())
            .var("allow_unauthenticated", true),
        s3.port,
        &junit,
        &["pick", "check", "restore", "verify"],
    );
    assert!(log.contains(&object), "the restore names the object: {log}");
    let copy = src.url_for("shop_copy");
    assert_eq!(scalar(&copy, "select count(*) from items").await, "1000");
    assert_eq!(scalar(&copy, "select count(*) from orders").await, "500");

    // Synced back to a folder by the team's pattern: the file and its sidecar, byte for byte.
    let here = tmp.path().join("here");
    let (code, log) = in_s3(
        Run::new("offsite")
            .var("storage", loc)
            .var("offsite", here.display())
            .var("copy", "all")
            .var("name_pattern", format!("{PATTERN}{ext}")),
        s3.port,
    );
    assert_eq!(code, 0, "{log}");
    assert_eq!(visible(&here), [name.clone(), format!("{name}.manifest.json")], "{log}");
    // moto takes any signature for a read (an unsigned one it refuses).
    let auth = [(
        "Authorization",
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
    )];
    let (status, sidecar) =
        crate::object_store::http(s3.port, "GET", &format!("/team/nightly/{name}.manifest.json"), &auth);
    assert_eq!(status, 200, "{sidecar}");
    let copied = std::fs::read(here.join(format!("{name}.manifest.json"))).expect("the sidecar copied");
    assert_eq!(text(&copied), sidecar, "the sidecar, byte for byte");
    let m: serde_json::Value = serde_json::from_str(&sidecar).expect("json");
    let file = std::fs::read(here.join(&name)).expect("the file copied");
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&file).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(m["sha256"], digest.as_str(), "the file is the one its sidecar names");
    src.stop().await;
}

/// Issue 37: `backup.check` of a team's own format in a bucket read it as another tool's
/// file: it never compared the stored bytes with the sha256 of the sidecar manifest beside it
/// (as it does for the same file here), so a file replaced under its name by another complete
/// dump of the same tables passed the check, and with it verify's integrity step. The check
/// reads the sidecar through the store now: the file as written passes with the sidecar's
/// sha256, the replaced one fails on it.
#[tokio::test(flavor = "multi_thread")]
async fn a_team_file_in_a_bucket_replaced_beside_its_sidecar_passed_the_check() {
    let Some(s3) = moto() else { return };
    let Some(src) = native_server("shop").await else { return };
    let url = src.url();
    exec(&url, SHOP).await;
    assert_eq!(crate::object_store::http(s3.port, "PUT", "/team", &[]).0, 200, "bucket created");
    let ext = ".sql.gz";
    let (code, log) = in_s3(
        Run::new("backup")
            .var("database_url", &url)
            .var("storage", "s3://team/nightly")
            .var("name_pattern", format!("{PATTERN}{ext}"))
            .vars(&["format=plain", "compression=gzip", "envelope=none", "encrypt=false"]),
        s3.port,
    );
    assert_eq!(code, 0, "{log}");
    let keys = crate::object_store::s3_keys(s3.port, "team", "nightly/");
    let file = keys.iter().find(|k| k.ends_with(ext)).unwrap_or_else(|| panic!("the team's file: {keys:?}")).clone();
    let tmp = tempfile::tempdir().expect("tmp");
    let runbook = written(
        tmp.path().join("check.yaml"),
        "name: team-check\nvars: { backup: \"\" }\nsteps:\n  - id: check\n    uses: backup.check\n    with: { path: \"{{ vars.backup }}\" }\n",
    );
    let check = |junit: &Path| {
        let (code, log) = in_s3(Run::new(&runbook).var("backup", format!("s3://team/{file}")).junit(junit), s3.port);
        (code, log, Junit::read(junit).all_text())
    };
    let (code, log, said) = check(&tmp.path().join("as-written.xml"));
    assert_eq!(code, 0, "{log}");
    assert!(said.contains("the sidecar of a team's own format") && said.contains("2 tables, sha256 "), "{said}");
    // Another complete dump of the same two tables (a row more) put under its name, the
    // sidecar left as it was.
    exec(&url, "insert into items values (1001, 'one more')").await;
    let dump = Command::new("sh")
        .arg("-c")
        .arg("pg_dump -d \"$U\" | gzip")
        .env("U", &url)
        .env("PATH", format!("/usr/lib/postgresql/15/bin:{}", std::env::var("PATH").unwrap_or_default()))
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let put = crate::object_store::http_body(s3.port, "PUT", &format!("/team/{file}"), &[], &dump.stdout);
    assert_eq!(put.0, 200, "replaced: {}", put.1);
    let (code, log, said) = check(&tmp.path().join("replaced.xml"));
    assert_eq!(code, 1, "a file replaced beside its sidecar passed the check: {log}");
    assert!(said.contains("does not match its manifest"), "{said}");
    src.stop().await;
}

/// Before: `offsite --var copy=all` (`backup.sync`) took no `name_pattern`, so a team whose
/// files only their pattern reads (`crm_20240101_020000.bak`: a database and a time, but no
/// dump's extension) had none of them copied, and the classic rules' files were copied in
/// their place. With the pattern, the team's files (and their sidecars) are copied, in the
/// folder's layout, and nothing the pattern does not name; without it, as before.
#[test]
fn offsite_copy_all_took_no_name_pattern_and_skipped_a_teams_own_files() {
    let (tmp, storage) = tmp_backups();
    std::fs::create_dir_all(storage.join("crm")).expect("mkdir");
    let team = ["crm/crm_20240101_020000.bak", "crm/crm_20240102_020000.bak"];
    for (i, f) in team.iter().enumerate() {
        std::fs::write(storage.join(f), format!("PGDMP team dump {i}")).expect("write");
    }
    std::fs::write(storage.join("crm/wal_20240102.tar.gz"), b"not a dump").expect("write");
    std::fs::write(storage.join("crm/other_20240102_020000.sql.gz"), b"another tool's").expect("write");
    let offsite = |to: &Path, pattern: &str| {
        Run::new("offsite")
            .var("storage", storage.display())
            .var("offsite", to.display())
            .var("copy", "all")
            .var("name_pattern", pattern)
            .expect(0)
    };
    let copied = |to: &Path| -> Vec<String> {
        let mut v: Vec<String> =
            walk(to).iter().filter_map(|p| p.strip_prefix(to).ok().map(|r| r.display().to_string())).collect();
        v.sort();
        v
    };

    // The classic rules: the `.bak` files are of a kind unknown to them.
    let classic = tmp.path().join("classic");
    offsite(&classic, "");
    assert_eq!(copied(&classic), ["crm/other_20240102_020000.sql.gz"]);

    // The team's pattern: its files, byte for byte, in the folder's layout; nothing else.
    let to = tmp.path().join("offsite");
    let ran = offsite(&to, "{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.bak");
    assert_eq!(copied(&to), team, "{}", ran.all());
    for f in team {
        assert_eq!(std::fs::read(storage.join(f)).expect("source"), std::fs::read(to.join(f)).expect("copy"), "{f}");
    }
    assert!(ran.all().contains("2 copied"), "{}", ran.all());
    // Run again: both are there, nothing is copied twice.
    let ran = offsite(&to, "{db}_{YYYY}{MM}{DD}_{hh}{mm}{ss}.bak");
    assert!(ran.all().contains("0 copied") && ran.all().contains("2 already at"), "{}", ran.all());
}
