//! SIGINT and SIGTERM cancel the run instead of killing the process, so rollbacks, `finally`
//! and resource teardown (servers, temp files) still happen.

use std::sync::{Arc, Mutex};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Cancel `token` on the first SIGINT or SIGTERM and record which one it was. Later signals
/// are absorbed: an operator pressing Ctrl-C twice must not abort a rollback half-way.
pub fn install(token: CancellationToken, cause: Arc<Mutex<Option<String>>>) -> std::io::Result<()> {
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            if let Ok(mut c) = cause.lock() {
                if c.is_none() {
                    *c = Some(name.to_string());
                }
            }
            token.cancel();
        }
    });
    Ok(())
}
