//! The operator at the terminal, as steps ask them (`StepCtx::ask`): the prompt goes to
//! stderr, the answer is one line of stdin. Steps never touch the terminal themselves, so
//! this is the one place a run reads stdin.

use std::io::{BufRead, IsTerminal, Write};

use crate::error::Failure;
use crate::steps::{BoxFuture, Operator};

/// The terminal the run was started from.
pub struct Terminal;

impl Operator for Terminal {
    fn ask(&self, prompt: String) -> BoxFuture<'static, Result<Option<String>, Failure>> {
        Box::pin(async move {
            // Without a terminal nobody can answer; a pipe's contents are not an operator.
            if !std::io::stdin().is_terminal() {
                return Ok(None);
            }
            // Reading stdin blocks: off the runtime's threads, so other steps keep running.
            tokio::task::spawn_blocking(move || {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(prompt.as_bytes());
                let _ = err.flush();
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|e| Failure::environment(e.to_string()))?
            .map(Some)
            .map_err(|e| Failure::environment(format!("reading the answer: {e}")))
        })
    }
}
