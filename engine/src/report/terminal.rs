//! Terminal progress: an indicatif spinner for each running step on a TTY (several for a
//! `parallel` group), plain lines otherwise (or with --quiet). Finished steps are always printed as one line each, so the
//! order of steps, rollbacks and `finally` reads the same in a terminal and in a CI log.

use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::{display_name, ReportSink, RunSummary};
use crate::exec::{Event, Fact, Outcome, Phase, Rollback, SuiteOutcome};

pub struct Terminal {
    multi: MultiProgress,
    /// Running steps by (suite, path): two steps of a group may share a label.
    spinners: HashMap<(usize, String), ProgressBar>,
    fancy: bool,
    depth: HashMap<usize, usize>,
    /// Steps reporting progress: when the first report came and when a plain line was last
    /// printed.
    progress: HashMap<(usize, String), (std::time::Instant, std::time::Instant)>,
    plain_every: Duration,
    /// Running steps whose log is what they report (`report_log` when they started).
    report_log: std::collections::HashSet<(usize, String)>,
    /// Where a unit test reads the lines instead of stdout (`capturing`).
    kept: Option<std::sync::Arc<std::sync::Mutex<Vec<String>>>>,
}

impl Terminal {
    /// `fancy`: draw a spinner (stdout is a TTY and not --quiet).
    pub fn new(fancy: bool) -> Self {
        Terminal {
            multi: MultiProgress::new(),
            spinners: HashMap::new(),
            fancy,
            depth: HashMap::new(),
            progress: HashMap::new(),
            plain_every: crate::progress::plain_interval(),
            report_log: std::collections::HashSet::new(),
            kept: None,
        }
    }

    /// A plain terminal whose lines are kept in the returned list, not printed.
    #[cfg(test)]
    pub(super) fn capturing() -> (Self, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        let kept = std::sync::Arc::default();
        (Terminal { kept: Some(std::sync::Arc::clone(&kept)), ..Terminal::new(false) }, kept)
    }

    fn line(&self, text: &str) {
        if let Some(kept) = &self.kept {
            kept.lock().map(|mut k| k.push(text.to_string())).unwrap_or_default();
            return;
        }
        if self.spinners.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        } else {
            // A closed stdout (`pgdrill run ... | head`) must not stop the run half-way:
            // write errors are ignored, the run and its rollbacks go on.
            self.multi.suspend(|| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            });
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

/// Text from data (names, messages, logs) on one terminal line (see `util::one_line`): a
/// name holding a newline cannot print a line that looks like another event, and ESC cannot
/// act on the terminal.
fn visible(s: &str) -> std::borrow::Cow<'_, str> {
    crate::util::one_line(s)
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

impl ReportSink for Terminal {
    fn on_event(&mut self, event: &Event) {
        match event {
            Event::SuiteStarted { suite, parent, name, file, .. } => {
                let d = parent.and_then(|p| self.depth.get(&p).copied()).map(|d| d + 1).unwrap_or(0);
                self.depth.insert(*suite, d);
                self.line(&format!("{}runbook {} ({})", self.indent(*suite), visible(name), visible(file)));
            }
            Event::StepStarted { step, uses, phase, interactive, report_log } => {
                let (suite, path, label) = (&step.suite, &step.path, &step.label);
                if *report_log {
                    self.report_log.insert((*suite, path.clone()));
                }
                if *interactive {
                    // The step talks to the operator on the terminal: no spinner over it.
                    self.clear_spinners();
                } else if self.fancy {
                    let label = visible(label);
                    let what = match phase {
                        Phase::Rollback { of } => format!("rollback of {}: {label}", visible(of)),
                        Phase::Finally => format!("finally: {label}"),
                        _ => label.to_string(),
                    };
                    let pb = self.multi.add(ProgressBar::new_spinner());
                    pb.set_style(
                        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    pb.set_message(format!("{}{what} [{uses}]", self.indent(*suite)));
                    pb.enable_steady_tick(Duration::from_millis(100));
                    if let Some(old) = self.spinners.insert((*suite, path.clone()), pb) {
                        old.finish_and_clear();
                    }
                }
            }
            Event::StepLog { step, line } => {
                if let Some(pb) = self.spinners.get(&(step.suite, step.path.clone())) {
                    pb.set_message(format!("{}: {}", visible(&step.label), visible(line)));
                }
            }
            Event::StepProgress { step, done, total } => {
                let (suite, label) = (&step.suite, &step.label);
                let now = std::time::Instant::now();
                let key = (step.suite, step.path.clone());
                let first = self.progress.get(&key).map(|p| p.0).unwrap_or(now);
                let elapsed = now - first;
                if let Some(pb) = self.spinners.get(&key) {
                    // The spinner becomes a bar: bytes, throughput and an estimate.
                    if pb.length().is_none() || pb.length() != *total {
                        let template = if total.is_some() {
                            "{spinner} {msg} [{bar:24}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}"
                        } else {
                            "{spinner} {msg} {binary_bytes} {binary_bytes_per_sec} {elapsed}"
                        };
                        if let Ok(style) = ProgressStyle::with_template(template) {
                            pb.set_style(style.progress_chars("=> "));
                        }
                        if let Some(t) = total {
                            pb.set_length(*t);
                        }
                    }
                    pb.set_position(*done);
                    self.progress.insert(key, (first, now));
                } else if !self.fancy {
                    // Off a TTY: a plain line every few seconds, so a long dump in a CI log
                    // shows it is moving.
                    let last = self.progress.get(&key).map(|p| p.1);
                    let due = last.map(|l| now - l >= self.plain_every).unwrap_or(true);
                    if last.is_none() {
                        self.progress.insert(key, (now, now));
                    } else if due && *done > 0 {
                        self.line(&format!(
                            "{}  progress     {}: {}",
                            self.indent(*suite),
                            visible(label),
                            crate::progress::describe(*done, *total, elapsed)
                        ));
                        self.progress.insert(key, (first, now));
                    }
                }
            }
            Event::StepRetrying { step, attempt, attempts, message, delay } => {
                self.line(&format!(
                    "{}  retry        {}: attempt {attempt}/{attempts} failed ({}); next in {}",
                    self.indent(step.suite),
                    visible(&step.label),
                    visible(message),
                    humantime::format_duration(*delay)
                ));
            }
            Event::StepFinished(rec) => {
                if let Some(pb) = self.spinners.remove(&(rec.suite, rec.path.clone())) {
                    pb.finish_and_clear();
                }
                self.progress.remove(&(rec.suite, rec.path.clone()));
                let report_log = self.report_log.remove(&(rec.suite, rec.path.clone()));
                let word = match rec.outcome {
                    Outcome::Passed => "passed",
                    Outcome::Failed => "FAILED",
                    Outcome::Errored => "ERROR",
                    Outcome::TimedOut => "TIMED OUT",
                    Outcome::Skipped => "skipped",
                };
                let mut text = format!(
                    "{}  {word:<12} {} [{}] {}",
                    self.indent(rec.suite),
                    visible(&display_name(rec)),
                    rec.uses,
                    secs(rec.duration)
                );
                if let Some(m) = &rec.message {
                    if rec.outcome != Outcome::Passed || rec.phase == Phase::Budget {
                        text.push_str(&format!(": {}", visible(m)));
                    }
                }
                self.line(&text);
                // A failure points at the runbook line that holds the step.
                if let (Outcome::Failed | Outcome::Errored | Outcome::TimedOut, Some(at)) = (rec.outcome, &rec.location)
                {
                    self.line(&format!("{}      at {}", self.indent(rec.suite), visible(at)));
                }
                if report_log {
                    for l in &rec.log {
                        self.line(&format!("{}      {}", self.indent(rec.suite), visible(l)));
                    }
                } else if matches!(rec.outcome, Outcome::Failed | Outcome::Errored | Outcome::TimedOut) {
                    let tail: Vec<&String> = rec.log.iter().rev().take(10).collect();
                    for l in tail.into_iter().rev() {
                        self.line(&format!("{}      | {}", self.indent(rec.suite), visible(l)));
                    }
                } else {
                    // A warning is shown whatever the step: it is what an operator must act on.
                    // Known by its kind (`Fact::Warning`), shown as the step logged it.
                    for f in &rec.facts {
                        if let Fact::Warning { text } = f {
                            self.line(&format!("{}      warning: {}", self.indent(rec.suite), visible(text)));
                        }
                    }
                }
            }
            Event::StepRolledBack { step, result, message } => {
                let (suite, label) = (&step.suite, &step.label);
                // Only a rollback whose steps passed is "rolled back"; a failed or skipped one
                // says so, with why.
                let word = match result {
                    Rollback::RolledBack => "rolled back",
                    Rollback::Failed => "ROLLBACK FAILED",
                    Rollback::Skipped => "rollback skipped",
                };
                let why = message.as_deref().map(|m| format!(": {}", visible(m))).unwrap_or_default();
                self.line(&format!("{}  {word:<12} {}{why}", self.indent(*suite), visible(label)));
            }
            Event::SuiteFinished { suite, name, outcome, duration, message, .. } => {
                let word = match outcome {
                    SuiteOutcome::Passed => "passed",
                    SuiteOutcome::Failed => "FAILED",
                    SuiteOutcome::Interrupted => "INTERRUPTED",
                };
                let why = message.as_ref().map(|m| format!(": {}", visible(m))).unwrap_or_default();
                self.line(&format!(
                    "{}runbook {} {word} in {}{why}",
                    self.indent(*suite),
                    visible(name),
                    secs(*duration)
                ));
            }
        }
    }

    /// The terminal has shown the run as it went; the summary adds nothing to it.
    fn finish(&mut self, _summary: &RunSummary) -> crate::Result<()> {
        self.clear_spinners();
        Ok(())
    }
}
