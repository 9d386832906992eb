//! The command line: parse arguments, call the library, map the result to an exit code.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::error::ExitCode;
use crate::exec::{self, Executor, Reporter, Sink};
use crate::redact::Redactor;
use crate::report::{JsonRecord, Junit, Terminal};
use crate::{plan, runbook, shipped, steps, Error};

/// Prove PostgreSQL backups restore: runbooks as code, verification by restore, drills with
/// measured RTO and RPO.
#[derive(Debug, Parser)]
#[command(name = "pgdrill", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check runbooks; prints file:line:col for every problem and exits 2 if there are any.
    Validate {
        /// Runbook files or shipped runbook names.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the steps a run would take, with the values known before running. No side effects.
    Plan {
        /// Runbook file or shipped runbook name.
        runbook: PathBuf,
        /// Set a runbook variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Run a runbook.
    Run {
        /// Runbook file or shipped runbook name.
        runbook: PathBuf,
        /// Set a runbook variable (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
        vars: Vec<(String, String)>,
        /// Write a JUnit XML report here.
        #[arg(long, value_name = "PATH", env = "PGDRILL_JUNIT")]
        junit: Option<PathBuf>,
        /// Write run.json (and later compliance reports) into this directory.
        #[arg(long, value_name = "DIR", env = "PGDRILL_REPORT")]
        report: Option<PathBuf>,
        /// Plain lines instead of a progress spinner.
        #[arg(long, short)]
        quiet: bool,
    },
    /// List the step kinds with their fields and outputs.
    Steps {
        /// Show only this step kind.
        name: Option<String>,
    },
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Entry point used by `main`: returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::Environment.code();
        }
    };
    let redactor = Redactor::default();
    let result = rt.block_on(dispatch(cli, redactor.clone()));
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            let text = redactor.redact(&e.to_string());
            match &e {
                Error::Runbook(_) => eprint!("{text}"),
                _ => eprintln!("error: {text}"),
            }
            e.exit_code()
        }
    };
    // Spawned helpers (log pumps, connections) must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    code.code()
}

async fn dispatch(cli: Cli, redactor: Redactor) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Plan { runbook, vars } => {
            let rb = exec::load_runbook_ref(&runbook)?;
            let env: serde_json::Map<String, serde_json::Value> =
                std::env::vars().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
            let vars = exec::resolve_vars(&rb, &exec::overrides_from_pairs(&vars), &env)?;
            print!("{}", plan::render(&rb, &vars));
            Ok(ExitCode::Passed)
        }
        Command::Run { runbook, vars, junit, report, quiet } => {
            let rb = exec::load_runbook_ref(&runbook)?;
            let mut reporters: Vec<Box<dyn Reporter>> =
                vec![Box::new(Terminal::new(!quiet && std::io::stdout().is_terminal()))];
            if let Some(p) = junit {
                reporters.push(Box::new(Junit::new(p)));
            }
            if let Some(d) = report {
                reporters.push(Box::new(JsonRecord::new(d)));
            }
            let sink = Sink::new(redactor.clone(), reporters);
            let cancel = CancellationToken::new();
            let cause = Arc::new(Mutex::new(None));
            exec::signal::install(cancel.clone(), cause.clone())
                .map_err(|e| Error::Environment(format!("cannot install signal handlers: {e}")))?;
            let executor = Executor::new(sink.clone(), redactor, cancel, cause);
            let res = executor.run(&rb, &exec::overrides_from_pairs(&vars), None).await;
            // Reports are written whatever happened, so a failed run still leaves evidence.
            let finished = sink.finish();
            let res = res?;
            finished?;
            Ok(res.exit)
        }
        Command::Steps { name } => {
            if let Some(n) = &name {
                if steps::find(n).is_none() {
                    let help = runbook::suggest::help(n, steps::names()).map(|h| format!(" ({h})")).unwrap_or_default();
                    return Err(Error::Invalid(format!("no step kind `{n}`{help}")));
                }
            }
            print!("{}", steps::describe_catalogue(name.as_deref()));
            if name.is_none() {
                println!("shipped runbooks: {}", shipped::names().collect::<Vec<_>>().join(", "));
            }
            Ok(ExitCode::Passed)
        }
    }
}

fn validate(files: &[PathBuf]) -> Result<ExitCode, Error> {
    let mut all = runbook::Diagnostics::default();
    let mut other: Vec<String> = Vec::new();
    for f in files {
        match exec::load_runbook_ref(f) {
            Ok(rb) => println!("ok: {} ({}, {} steps)", rb.file, rb.name, rb.steps.len()),
            Err(Error::Runbook(d)) => all.0.extend(d.0),
            Err(e) => other.push(e.to_string()),
        }
    }
    if all.is_empty() && other.is_empty() {
        return Ok(ExitCode::Passed);
    }
    for o in &other {
        eprintln!("error: {o}");
    }
    if !all.is_empty() {
        return Err(Error::Runbook(all));
    }
    Ok(ExitCode::Invalid)
}
