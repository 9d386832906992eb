//! PostgreSQL plumbing shared by steps: connections, server discovery, ephemeral servers.

pub mod docker;
pub mod ephemeral;
pub mod fingerprint;
pub mod native;

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// A connection failure, with a message safe to show (no password).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectError(pub String);

/// Parse a connection URL (or key=value string); fill the password from PGPASSWORD when the
/// URL has none, as libpq does.
pub fn config(url: &str) -> Result<Config, ConnectError> {
    let mut cfg =
        Config::from_str(url).map_err(|e| ConnectError(format!("invalid connection URL {}: {e}", display_url(url))))?;
    if cfg.get_password().is_none() {
        if let Ok(pw) = std::env::var("PGPASSWORD") {
            cfg.password(pw);
        }
    }
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    Ok(cfg)
}

/// Connect and drive the connection in the background.
pub async fn connect(url: &str) -> Result<Client, ConnectError> {
    let cfg = config(url)?;
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| ConnectError(format!("cannot connect to {}: {}", display_url(url), describe(&e))))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The URL without its password, for messages.
pub fn display_url(url: &str) -> String {
    match Config::from_str(url) {
        Ok(cfg) => {
            let user = cfg.get_user().unwrap_or("");
            let host = match cfg.get_hosts().first() {
                Some(Host::Tcp(h)) => h.clone(),
                Some(Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            let port = cfg.get_ports().first().copied().unwrap_or(5432);
            let db = cfg.get_dbname().unwrap_or(user);
            format!("postgres://{user}@{host}:{port}/{db}")
        }
        Err(_) => "(unparseable URL)".into(),
    }
}

/// A server error's message, detail and hint, or the transport error.
pub fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut s = format!("{}: {}", db.severity(), db.message());
        if let Some(d) = db.detail() {
            s.push_str(&format!(" (detail: {d})"));
        }
        if let Some(h) = db.hint() {
            s.push_str(&format!(" (hint: {h})"));
        }
        return s;
    }
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        let t = inner.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = inner.source();
    }
    s
}

/// `postgres://user:password@host:port/database`, each part percent-encoded.
pub fn server_url(user: &str, password: &str, host: &str, port: u16, database: &str) -> String {
    use crate::redact::percent_encode as enc;
    format!("postgres://{}:{}@{host}:{port}/{}", enc(user), enc(password), enc(database))
}
