//! `fleet plan` and `fleet run`: one runbook once per target.
//!
//! Each target runs as its own `pgdrill run` process. That gives every database its own
//! report directory and JUnit file, its own secrets (a run's environment holds its own
//! password and key and none of the other targets'), its own signal handling (SIGTERM lets a
//! restore roll back) and a failure that cannot reach the others. The processes die with
//! the fleet run (SIGTERM from the kernel if it is killed, so they still roll back).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use super::{select, vars_for, Fleet, Target};
use crate::error::ExitCode;
use crate::runbook::Runbook;
use crate::Error;

/// What `fleet run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// As given on the command line: a file or a shipped runbook's name.
    pub runbook: PathBuf,
    pub only: Vec<String>,
    pub schedule: Option<String>,
    /// Run only the N-th selected target (a Kubernetes Indexed Job's pod).
    pub index: Option<usize>,
    pub parallel: usize,
    pub report: Option<PathBuf>,
    pub junit: Option<PathBuf>,
    pub vars: Vec<(String, String)>,
    pub yes: bool,
}

/// The runbook a fleet command names: a file (relative to the current directory, then to
/// the fleet file), else a shipped runbook. Returns it with the reference its runs get.
pub fn runbook(fleet: &Fleet, given: &Path) -> Result<(Runbook, String), Error> {
    let candidates = [given.to_path_buf(), fleet.base_dir.join(given)];
    for c in candidates {
        if c.is_file() {
            let abs = std::fs::canonicalize(&c).map_err(|e| Error::io(format!("cannot open {}", c.display()), e))?;
            let rb = crate::runbook::load_checked(&abs)?;
            return Ok((rb, abs.display().to_string()));
        }
    }
    let rb = crate::runbook::load_checked(given)?;
    Ok((rb, given.display().to_string()))
}

/// The selected targets, checked against what the runbook may do to them.
pub fn targets<'a>(fleet: &'a Fleet, rb: &Runbook, o: &Options) -> Result<Vec<&'a Target>, Error> {
    let mut ts = select(fleet, &o.only, o.schedule.as_deref()).map_err(Error::invalid)?;
    if let Some(i) = o.index {
        let n = ts.len();
        let Some(t) = ts.get(i).copied() else {
            return Err(Error::invalid(format!(
                "--index {i}: the selection has {n} target(s) (0 to {}); regenerate the schedule after changing the fleet file",
                n.saturating_sub(1)
            )));
        };
        ts = vec![t];
    }
    // A runbook with a step that changes or replaces a database (its kind says so:
    // `StepKind::destructive`, as its plan resolved it) runs for exactly one target
    // (`--only project/environment/database`).
    let plan = crate::plan::Plan::build(rb)?;
    if let Some(step) = plan.all_steps().find(|s| s.kind.destructive).map(|s| s.def) {
        let exactly_one = ts.len() == 1 && (o.index.is_some() || o.only.iter().any(|x| x.split('/').count() == 3));
        if !exactly_one {
            return Err(Error::invalid(format!(
                "{} changes a database (step {} at {}): name exactly one target with --only project/environment/database",
                rb.name,
                step.uses,
                rb.location(&step.path)
            )));
        }
    }
    Ok(ts)
}

/// Whether `rb` measures a recovery time (a `drill.rto` step), so `run --rto` sets its
/// objective; any other runbook refuses `--rto`.
pub fn measures_rto(rb: &Runbook) -> bool {
    crate::plan::Plan::build(rb).is_ok_and(|p| p.all_steps().any(|s| s.kind.measures_rto))
}

/// How a target's `rto` reaches its run: the drill's recovery objective (`--rto`) when the
/// runbook measures one, else the time the whole run may take (`--budget`), which for a
/// verify or a restore is its time to a verified copy.
fn rto_flag(rb: &Runbook) -> &'static str {
    if measures_rto(rb) {
        "--rto"
    } else {
        "--budget"
    }
}

/// Secrets a target's run needs that are not in the environment.
fn missing_secrets(t: &Target) -> Vec<&str> {
    [t.password_env.as_deref(), t.key_env.as_deref()]
        .into_iter()
        .flatten()
        .filter(|v| std::env::var_os(v).is_none_or(|x| x.is_empty()))
        .collect()
}

/// `fleet plan`: what would run, with every value resolved; nothing is touched.
pub fn plan(fleet: &Fleet, o: &Options) -> Result<String, Error> {
    let (rb, reference) = runbook(fleet, &o.runbook)?;
    let ts = targets(fleet, &rb, o)?;
    let schedule = o.schedule.as_deref().and_then(|s| fleet.schedule(s));
    let mut out = String::new();
    out.push_str(&format!(
        "fleet {}: runbook {} for {} target(s), at most {} at a time\n",
        fleet.file.display(),
        rb.name,
        ts.len(),
        o.parallel.max(1)
    ));
    for t in ts {
        out.push_str(&format!("\n{}\n", t.id));
        out.push_str(&format!("  pgdrill run {reference}"));
        if let Some(r) = &t.rto {
            out.push_str(&format!(" {} {r}", rto_flag(&rb)));
        }
        out.push('\n');
        for (k, v) in vars_for(&rb, t, schedule, &o.vars) {
            out.push_str(&format!("    {k} = {}\n", crate::report::visible(&v)));
        }
        for (what, var, to) in [
            ("password", t.password_env.as_deref(), "PGPASSWORD"),
            ("backup key", t.key_env.as_deref(), "PGDRILL_BACKUP_KEY"),
        ] {
            if let Some(var) = var {
                let state = if missing_secrets(t).contains(&var) { "NOT SET" } else { "set" };
                out.push_str(&format!("    {what}: from ${var} as {to} ({state})\n"));
            }
        }
        if let Some(p) = &t.passfile {
            out.push_str(&format!("    passfile: {p} as PGPASSFILE\n"));
        }
    }
    Ok(out)
}

/// One target's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetResult {
    pub target: String,
    pub database: String,
    /// The run's exit code; `None` when it never started.
    pub exit: Option<i32>,
    pub outcome: &'static str,
    pub duration_s: f64,
    pub report: Option<PathBuf>,
    /// Why it failed, in one line (from the run's summary, or why it did not start).
    pub message: Option<String>,
    /// The run's summary, read back from the run.json it wrote (none when it stopped before
    /// its runbook ran).
    #[serde(skip)]
    pub summary: Option<Box<crate::report::RunSummary>>,
}

fn outcome_of(code: i32) -> &'static str {
    match code {
        0 => "passed",
        1 => "failed",
        2 => "invalid",
        3 => "environment",
        130 => "interrupted",
        _ => "crashed",
    }
}

/// The summary a target's run wrote (its run.json), if it got as far as running its runbook.
fn summary_of(dir: &Path, database: &str) -> Option<crate::report::RunSummary> {
    let text = std::fs::read_to_string(dir.join("run.json")).ok()?;
    let record: crate::report::RunRecord = serde_json::from_str(&text).ok()?;
    Some(crate::report::RunSummary::from_record(record, database, time::OffsetDateTime::now_utc()))
}

/// Why a run failed, in one line: what its summary says (its runbook's message, else its
/// first failed check's), or that it left none.
fn why_failed(summary: Option<&crate::report::RunSummary>) -> String {
    let said = summary.and_then(|s| {
        s.top().and_then(|t| t.message.clone()).or_else(|| s.failed.first().and_then(|f| f.message.clone()))
    });
    match said {
        Some(m) => m.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(300).collect(),
        None if summary.is_some() => "no message".into(),
        None => "it stopped before its runbook ran (no run.json); its output.log says why".into(),
    }
}

/// `fleet run`: the runbook once per selected target, at most `parallel` at a time; then a
/// summary table and a combined JUnit file. Exit 0 when every target passed, 130 when
/// interrupted, otherwise 1.
/// `pgdrill-fleet-<pid>-XXXX`: a fleet run's scratch directory for its runs' reports.
const SCRATCH_PREFIX: &str = "pgdrill-fleet-";

/// Removes the scratch directories of fleet runs whose process is gone (kill -9, a crash).
fn reap_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SCRATCH_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let alive = crate::child::is_alive(pid);
        if !alive && e.file_type().is_ok_and(|t| t.is_dir()) {
            // The killed fleet's orphaned runs may still be ending (their finally, then their
            // report, written with the directories it needs): removed under them, the
            // directory was made again by a run's last report and left behind. It is removed
            // once no process names it in its arguments (each run is given its `--report`
            // there), waiting up to 5 s for them; else left to the next fleet run.
            for _ in 0..25 {
                if !named_by_a_process(&e.path()) {
                    let _ = std::fs::remove_dir_all(e.path());
                    if !e.path().exists() {
                        break;
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
}

/// Whether a running process names `dir` in its arguments (read from /proc/PID/cmdline).
fn named_by_a_process(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let needle = dir.as_os_str().as_bytes();
    let Ok(procs) = std::fs::read_dir("/proc") else { return false };
    procs.flatten().any(|p| {
        p.file_name().to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            && std::fs::read(p.path().join("cmdline"))
                .is_ok_and(|c| !needle.is_empty() && c.windows(needle.len()).any(|w| w == needle))
    })
}

pub async fn run(fleet: &Fleet, o: &Options, cancel: CancellationToken) -> Result<ExitCode, Error> {
    let (rb, reference) = runbook(fleet, &o.runbook)?;
    let rto_flag = rto_flag(&rb);
    let ts: Vec<Target> = targets(fleet, &rb, o)?.into_iter().cloned().collect();
    if ts.is_empty() {
        println!("fleet {}: no target selected, nothing to do", fleet.file.display());
        return Ok(ExitCode::Passed);
    }
    // Two fleet runs sharing a report directory would overwrite each other's per-target
    // files: it is this run's alone. Both locations are proven writable before any run starts.
    let _report_lock = o.report.as_deref().map(|d| crate::report::lock::lock_dir(d, "--report")).transpose()?;
    if let Some(j) = &o.junit {
        crate::report::lock::check_writable(j, "--junit")?;
    }
    let exe =
        std::env::current_exe().map_err(|e| Error::environment(format!("cannot find the pgdrill binary: {e}")))?;
    // Without --report the runs' reports live until the summary is written, in a directory
    // named after this process, so one left by a fleet run killed outright is removed here.
    reap_scratch();
    let scratch = match &o.report {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix(&format!("{SCRATCH_PREFIX}{}-", std::process::id()))
                .tempdir()
                .map_err(|e| Error::io("creating a temporary directory", e))?,
        ),
    };
    let root = o.report.clone().unwrap_or_else(|| scratch.as_ref().map(|d| d.path().to_path_buf()).unwrap_or_default());
    let schedule = o.schedule.as_deref().and_then(|s| fleet.schedule(s)).cloned();
    let secret_envs = fleet.secret_envs();
    let parallel = o.parallel.max(1);
    println!(
        "fleet {}: runbook {} for {} target(s), at most {parallel} at a time",
        fleet.file.display(),
        rb.name,
        ts.len()
    );

    let sem = Arc::new(tokio::sync::Semaphore::new(parallel));
    let running: Arc<Mutex<Vec<u32>>> = Arc::new(Mutex::new(Vec::new()));
    // SIGINT/SIGTERM: no new runs; the running ones get SIGTERM and roll back.
    {
        let (cancel, running) = (cancel.clone(), running.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            for pid in running.lock().map(|r| r.clone()).unwrap_or_default() {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
        });
    }
    let mut handles = Vec::new();
    for t in ts.iter().cloned() {
        let dir = root.join(&t.project).join(&t.environment).join(&t.key);
        let vars = vars_for(&rb, &t, schedule.as_ref(), &o.vars);
        let (running, cancel) = (running.clone(), cancel.clone());
        let (exe, reference, secret_envs, yes) = (exe.clone(), reference.clone(), secret_envs.clone(), o.yes);
        let base = fleet.base_dir.clone();
        // Permits are taken here, in file order, so targets start in the order of the file.
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => p.ok(),
            _ = cancel.cancelled() => None,
        };
        handles.push(tokio::spawn(async move {
            let _permit = permit;
            let not_run = |why: String, exit: Option<i32>, outcome| TargetResult {
                target: t.id.clone(),
                database: t.database.clone(),
                exit,
                outcome,
                duration_s: 0.0,
                report: None,
                message: Some(why),
                summary: None,
            };
            if cancel.is_cancelled() {
                return not_run("not started: the fleet run was interrupted".into(), None, "interrupted");
            }
            let missing = missing_secrets(&t);
            if !missing.is_empty() {
                let r = not_run(
                    format!(
                        "not started: {} not set (the fleet file names it as this target's secret)",
                        missing.join(", ")
                    ),
                    Some(3),
                    "environment",
                );
                println!("{:<11} {}  {}", r.outcome, t.id, r.message.as_deref().unwrap_or_default());
                return r;
            }
            if let Err(e) = std::fs::create_dir_all(&dir) {
                return not_run(
                    format!("cannot create its report directory {}: {e}", dir.display()),
                    Some(3),
                    "environment",
                );
            }
            let log = dir.join("output.log");
            let file = match std::fs::File::create(&log) {
                Ok(f) => f,
                Err(e) => return not_run(format!("cannot write {}: {e}", log.display()), Some(3), "environment"),
            };
            let mut cmd = crate::child::own_command(&exe, &secret_envs);
            cmd.arg("run").arg(&reference).arg("--quiet");
            cmd.arg("--report").arg(&dir).arg("--junit").arg(dir.join("junit.xml"));
            if let Some(r) = &t.rto {
                cmd.arg(rto_flag).arg(r);
            }
            if yes {
                cmd.arg("--yes");
            }
            for (k, v) in &vars {
                cmd.arg("--var").arg(format!("{k}={v}"));
            }
            // Each run gets its own secrets under the names pgdrill and libpq read.
            if let Some(v) = &t.password_env {
                cmd.env("PGPASSWORD", std::env::var_os(v).unwrap_or_default());
            }
            if let Some(p) = &t.passfile {
                cmd.env("PGPASSFILE", base.join(p));
            }
            if let Some(v) = &t.key_env {
                cmd.env("PGDRILL_BACKUP_KEY", std::env::var_os(v).unwrap_or_default());
            }
            let err_file = match file.try_clone() {
                Ok(f) => f,
                Err(e) => return not_run(format!("cannot write {}: {e}", log.display()), Some(3), "environment"),
            };
            cmd.stdin(std::process::Stdio::null()).stdout(file).stderr(err_file);
            let mut cmd = tokio::process::Command::from(cmd);
            let started = Instant::now();
            println!("{:<11} {}", "started", t.id);
            let mut child = match crate::child::spawn_async(&mut cmd) {
                Ok(c) => c,
                Err(e) => return not_run(format!("cannot start pgdrill: {e}"), Some(3), "environment"),
            };
            // No pid means the child is already gone: nothing to signal (and signalling pid 0
            // would reach this whole process group).
            let pid = child.id().filter(|p| *p > 0);
            if let (Some(pid), Ok(mut r)) = (pid, running.lock()) {
                r.push(pid);
            }
            // A cancel that came before the pid was listed still reaches this run.
            if let Some(pid) = pid.filter(|_| cancel.is_cancelled()) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM);
            }
            let status = child.wait().await;
            if let (Some(pid), Ok(mut r)) = (pid, running.lock()) {
                r.retain(|p| *p != pid);
            }
            let elapsed = started.elapsed();
            let code = match status {
                Ok(s) => s.code().unwrap_or(128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0)),
                Err(_) => 3,
            };
            let outcome = outcome_of(code);
            let summary = summary_of(&dir, &t.database);
            let message = (code != 0).then(|| why_failed(summary.as_ref()));
            println!("{:<11} {}  {:.1} s", outcome, t.id, elapsed.as_secs_f64());
            TargetResult {
                target: t.id.clone(),
                database: t.database.clone(),
                exit: Some(code),
                outcome,
                duration_s: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
                report: Some(dir),
                message,
                summary: summary.map(Box::new),
            }
        }));
    }
    let mut results = Vec::new();
    for h in handles {
        match h.await {
            Ok(r) => results.push(r),
            Err(e) => return Err(Error::environment(format!("a fleet worker failed: {e}"))),
        }
    }
    let kept = o.report.is_some();
    print!("\n{}", table(&results, kept));
    if let Some(j) = &o.junit {
        combined_junit(j, &results, &rb.name)?;
    }
    if let Some(dir) = &o.report {
        let summary = serde_json::json!({
            "fleet": fleet.file.display().to_string(),
            "runbook": rb.name,
            "schedule": o.schedule,
            "targets": results,
        });
        crate::report::write_atomic(&dir.join("fleet.json"), |w| {
            w.write_all(serde_json::to_string_pretty(&summary).unwrap_or_default().as_bytes())
        })?;
    }
    drop(scratch);
    let interrupted = cancel.is_cancelled();
    Ok(if interrupted {
        ExitCode::Interrupted
    } else if results.iter().all(|r| r.exit == Some(0)) {
        ExitCode::Passed
    } else {
        ExitCode::Failed
    })
}

/// The summary: one row per target, the failures' reasons under it.
pub fn table(results: &[TargetResult], kept: bool) -> String {
    let w = results.iter().map(|r| r.target.chars().count()).max().unwrap_or(6).max(6);
    let mut out = format!("{:<w$}  {:<11}  {:>4}  {:>9}\n", "target", "result", "exit", "seconds");
    for r in results {
        let exit = r.exit.map(|e| e.to_string()).unwrap_or("-".into());
        out.push_str(&format!("{:<w$}  {:<11}  {:>4}  {:>9.1}\n", r.target, r.outcome, exit, r.duration_s));
    }
    let passed = results.iter().filter(|r| r.exit == Some(0)).count();
    out.push_str(&format!("{passed} of {} passed\n", results.len()));
    for r in results.iter().filter(|r| r.exit != Some(0)) {
        out.push_str(&format!(
            "  {}: {}",
            r.target,
            crate::report::visible(r.message.as_deref().unwrap_or("no message"))
        ));
        if let (true, Some(d)) = (kept, &r.report) {
            out.push_str(&format!(" (log: {})", d.join("output.log").display()));
        }
        out.push('\n');
    }
    out
}

/// One JUnit file with every target's suites, named `target: runbook`, through the one
/// JUnit builder; a target that left none (it never started, or its runbook was invalid)
/// gets a suite with one errored case saying why.
fn combined_junit(path: &Path, results: &[TargetResult], runbook: &str) -> Result<(), Error> {
    use crate::report::junit::Part;
    let parts: Vec<Part<'_>> = results
        .iter()
        .map(|r| match r.summary.as_deref() {
            Some(s)
                if !s.record.suites.is_empty()
                    && (r.exit != Some(2) || s.record.suites.iter().any(|x| !x.steps.is_empty())) =>
            {
                Part::Run { prefix: Some(&r.target), summary: s }
            }
            _ => Part::NotRun {
                suite: format!("{}: {runbook}", r.target),
                classname: &r.target,
                kind: r.outcome,
                message: r.message.as_deref().unwrap_or(r.outcome),
            },
        })
        .collect();
    crate::report::junit::write(path, &parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::{Event, Outcome, Phase, StepRecord, SuiteOutcome};
    use crate::report::summary::SummaryBuilder;

    /// The summary of a run of `runbook` whose one step ended `outcome` saying `message`.
    fn summary(runbook: &str, outcome: Outcome, message: &str) -> crate::report::RunSummary {
        let mut b = SummaryBuilder::default();
        let now = time::OffsetDateTime::now_utc();
        b.on_event(&Event::SuiteStarted {
            suite: 0,
            parent: None,
            name: runbook.into(),
            file: format!("{runbook}.yaml"),
            kind: None,
            started_at: now,
        });
        b.on_event(&Event::StepFinished(StepRecord {
            suite: 0,
            path: "steps[0]".into(),
            label: "dump".into(),
            id: None,
            uses: "shell.run".into(),
            location: Some(format!("{runbook}.yaml:4:5")),
            phase: Phase::Main,
            outcome,
            error_kind: None,
            started_at: now,
            duration: std::time::Duration::from_millis(20),
            attempts: 1,
            message: Some(message.into()),
            outputs: serde_json::json!({}),
            log: vec![],
            rollback: None,
            notice: None,
            facts: vec![],
        }));
        let (o, exit) = match outcome {
            Outcome::Passed => (SuiteOutcome::Passed, ExitCode::Passed),
            _ => (SuiteOutcome::Failed, ExitCode::Failed),
        };
        b.on_event(&Event::SuiteFinished {
            suite: 0,
            name: runbook.into(),
            outcome: o,
            exit,
            duration: std::time::Duration::from_millis(30),
            message: (outcome != Outcome::Passed).then(|| format!("step `dump` failed: {message}")),
        });
        b.summary(&crate::redact::Redactor::default(), "")
    }

    fn result(target: &str, exit: Option<i32>, summary: Option<crate::report::RunSummary>) -> TargetResult {
        TargetResult {
            target: target.into(),
            database: "db".into(),
            exit,
            outcome: exit.map(outcome_of).unwrap_or("environment"),
            duration_s: 0.1,
            report: None,
            message: exit.filter(|c| *c != 0).map(|_| why_failed(summary.as_ref())),
            summary: summary.map(Box::new),
        }
    }

    /// A fleet's JUnit was the targets' files spliced as strings: every suite kept its own
    /// `id="0"`. It is now written by the one builder from the targets' summaries.
    #[test]
    fn fleet_junit_suites_had_duplicate_ids() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("all.xml");
        let results = [
            result("p/e/a", Some(0), Some(summary("backup", Outcome::Passed, "ok"))),
            result("p/e/b", Some(1), Some(summary("backup", Outcome::Failed, "pg_dump said <no>"))),
            result("p/e/c", None, None),
        ];
        combined_junit(&path, &results, "backup").expect("junit");
        let xml = std::fs::read_to_string(&path).expect("read");
        for (i, target) in ["p/e/a", "p/e/b", "p/e/c"].iter().enumerate() {
            assert!(xml.contains(&format!("<testsuite id=\"{i}\" name=\"{target}: backup\"")), "{target}: {xml}");
        }
        assert!(xml.contains("package=\"testsuite/backup\""), "{xml}");
        assert!(xml.contains("message=\"pg_dump said &lt;no&gt; (at backup.yaml:4:5)\""), "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert_eq!(xml.matches("<error").count(), 1, "the target that never ran has its errored case: {xml}");
    }

    /// Why a target failed comes from the run.json it wrote, not from its output.
    #[test]
    fn a_target_s_failure_is_read_from_its_run_summary_not_its_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = summary("verify", Outcome::Failed, "3 rows,\nexpected 4");
        let record = serde_json::to_string(&s.record).expect("json");
        std::fs::write(dir.path().join("run.json"), record).expect("run.json");
        std::fs::write(dir.path().join("output.log"), "error: a decoy line\n").expect("log");
        let back = summary_of(dir.path(), "app").expect("the run.json reads back");
        assert_eq!(back.database, "app");
        assert_eq!(back.failed.len(), 1);
        assert_eq!(why_failed(Some(&back)), "step `dump` failed: 3 rows, expected 4");
        let none = tempfile::tempdir().expect("tempdir");
        assert!(summary_of(none.path(), "app").is_none());
        assert!(why_failed(None).contains("no run.json"), "{}", why_failed(None));
    }
}
