//! Where events go: the run's reporters, each event redacted before any of them sees it, so
//! a secret's value cannot reach the terminal, JUnit or run.json. Nothing here decides an
//! outcome or knows a step kind.

use std::sync::{Arc, Mutex};

use super::Event;
use crate::redact::Redactor;

/// A consumer of the event stream.
pub trait Reporter: Send {
    fn on_event(&mut self, event: &Event);
    /// Called once after the run; writes files.
    fn finish(&mut self) -> crate::Result<()> {
        Ok(())
    }
}

/// Fans events out to reporters, redacting them first.
#[derive(Clone)]
pub struct Sink {
    reporters: Arc<Mutex<Vec<Box<dyn Reporter>>>>,
    redactor: Redactor,
}

impl Sink {
    pub fn new(redactor: Redactor, reporters: Vec<Box<dyn Reporter>>) -> Self {
        Sink { reporters: Arc::new(Mutex::new(reporters)), redactor }
    }

    pub fn emit(&self, mut event: Event) {
        redact_event(&self.redactor, &mut event);
        if let Ok(mut list) = self.reporters.lock() {
            for r in list.iter_mut() {
                r.on_event(&event);
            }
        }
    }

    /// Let every reporter write its files; the first error wins.
    pub fn finish(&self) -> crate::Result<()> {
        let mut first = Ok(());
        if let Ok(mut list) = self.reporters.lock() {
            for r in list.iter_mut() {
                if let Err(e) = r.finish() {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

fn redact_event(r: &Redactor, e: &mut Event) {
    match e {
        Event::StepRetrying { message, .. } => *message = r.redact(message),
        Event::StepLog { line, .. } => *line = r.redact(line),
        Event::StepFinished(rec) => {
            if let Some(m) = &mut rec.message {
                *m = r.redact(m);
            }
            for l in rec.log.iter_mut() {
                *l = r.redact(l);
            }
            r.redact_json(&mut rec.outputs);
            // The terminal shows a step's warnings from its facts as it finishes.
            for f in rec.facts.iter_mut() {
                if let super::Fact::Warning { text } = f {
                    *text = r.redact(text);
                }
            }
        }
        Event::SuiteFinished { message: Some(m), .. } => *m = r.redact(m),
        _ => {}
    }
}
