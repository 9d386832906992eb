//! Terminal progress: an indicatif spinner for each running step on a TTY (several for a
//! `parallel` group), plain lines otherwise (or with --quiet). Finished steps are always printed as one line each, so the
//! order of steps, rollbacks and `finally` reads the same in a terminal and in a CI log.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::display_name;
use crate::exec::{Event, Outcome, Phase, Reporter, SuiteOutcome};

pub struct Terminal {
    multi: MultiProgress,
    /// Running steps by (suite, label).
    spinners: HashMap<(usize, String), ProgressBar>,
    fancy: bool,
    depth: HashMap<usize, usize>,
}

impl Terminal {
    /// `fancy`: draw a spinner (stdout is a TTY and not --quiet).
    pub fn new(fancy: bool) -> Self {
        Terminal { multi: MultiProgress::new(), spinners: HashMap::new(), fancy, depth: HashMap::new() }
    }

    fn line(&self, text: &str) {
        if self.spinners.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        } else {
            self.multi.suspend(|| println!("{text}"));
        }
    }

    fn clear_spinners(&mut self) {
        for (_, pb) in self.spinners.drain() {
            pb.finish_and_clear();
        }
    }

    fn indent(&self, suite: usize) -> String {
        "  ".repeat(self.depth.get(&suite).copied().unwrap_or(0))
    }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl Reporter for Terminal {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::SuiteStarted { suite, parent, name, file, .. } => {
                let d = parent.and_then(|p| self.depth.get(&p).copied()).map(|d| d + 1).unwrap_or(0);
                self.depth.insert(*suite, d);
                self.line(&format!("{}runbook {name} ({file})", self.indent(*suite)));
            }
            Event::StepStarted { suite, label, uses, phase } => {
                if uses == "operator.confirm" {
                    // The step talks to the operator on the terminal: no spinner over it.
                    self.clear_spinners();
                } else if self.fancy {
                    let what = match phase {
                        Phase::Rollback { of } => format!("rollback of {of}: {label}"),
                        Phase::Finally => format!("finally: {label}"),
                        _ => label.clone(),
                    };
                    let pb = self.multi.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_message(format!("{}{what} [{uses}]", self.indent(*suite)));
                    pb.enable_steady_tick(Duration::from_millis(100));
                    if let Some(old) = self.spinners.insert((*suite, label.clone()), pb) {
                        old.finish_and_clear();
                    }
                }
            }
            Event::StepLog { suite, label, line } => {
                if let Some(pb) = self.spinners.get(&(*suite, label.clone())) {
                    pb.set_message(format!("{label}: {line}"));
                }
            }
            Event::StepRetrying { suite, label, attempt, attempts, message, delay } => {
                self.line(&format!(
                    "{}  retry        {label}: attempt {attempt}/{attempts} failed ({message}); next in {}",
                    self.indent(*suite),
                    humantime::format_duration(*delay)
                ));
            }
            Event::StepFinished(rec) => {
                if let Some(pb) = self.spinners.remove(&(rec.suite, rec.label.clone())) {
                    pb.finish_and_clear();
                }
                let word = match rec.outcome {
                    Outcome::Passed => "passed",
                    Outcome::Failed => "FAILED",
                    Outcome::Errored => "ERROR",
                    Outcome::TimedOut => "TIMED OUT",
                    Outcome::Skipped => "skipped",
                    Outcome::RolledBack => "rolled back",
                };
                let mut text = format!(
                    "{}  {word:<12} {} [{}] {}",
                    self.indent(rec.suite),
                    display_name(rec),
                    rec.uses,
                    secs(rec.duration)
                );
                if let Some(m) = &rec.message {
                    if rec.outcome != Outcome::Passed || rec.phase == Phase::Budget {
                        text.push_str(&format!(": {m}"));
                    }
                }
                self.line(&text);
                if crate::steps::find(&rec.uses).is_some_and(|k| k.report_log) {
                    for l in &rec.log {
                        self.line(&format!("{}      {l}", self.indent(rec.suite)));
                    }
                } else if matches!(rec.outcome, Outcome::Failed | Outcome::Errored | Outcome::TimedOut) {
                    let tail: Vec<&String> = rec.log.iter().rev().take(10).collect();
                    for l in tail.into_iter().rev() {
                        self.line(&format!("{}      | {l}", self.indent(rec.suite)));
                    }
                }
            }
            Event::StepRolledBack { suite, label } => {
                self.line(&format!("{}  rolled back  {label}", self.indent(*suite)));
            }
            Event::SuiteFinished { suite, name, outcome, duration, message } => {
                let word = match outcome {
                    SuiteOutcome::Passed => "passed",
                    SuiteOutcome::Failed => "FAILED",
                    SuiteOutcome::Interrupted => "INTERRUPTED",
                };
                let why = message.as_ref().map(|m| format!(": {m}")).unwrap_or_default();
                self.line(&format!("{}runbook {name} {word} in {}{why}", self.indent(*suite), secs(*duration)));
            }
        }
    }

    fn finish(&mut self) -> crate::Result<()> {
        self.clear_spinners();
        Ok(())
    }
}
