//! A small SMTP client for the email sink: plain, STARTTLS or implicit TLS (OpenSSL, the
//! system's roots or a CA file), AUTH PLAIN, one message to its recipients.

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufStream};

use crate::runbook::notify::{Email, TlsMode};

const TIMEOUT: Duration = Duration::from_secs(15);

async fn reply<S: AsyncRead + AsyncWrite + Unpin>(s: &mut BufStream<S>, want: &[&str]) -> Result<(), String> {
    let last = loop {
        let mut line = String::new();
        let n = tokio::time::timeout(TIMEOUT, s.read_line(&mut line))
            .await
            .map_err(|_| "the server stopped answering".to_string())?
            .map_err(|e| format!("reading the server's reply: {e}"))?;
        if n == 0 {
            return Err("the server closed the connection".into());
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            break line;
        }
    };
    let code = last.get(..3).unwrap_or("");
    if want.contains(&code) {
        Ok(())
    } else {
        // The server's words, not ours: one line, no credentials (we never echo them).
        Err(format!("the server answered `{}`", last.trim()))
    }
}

async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufStream<S>,
    line: &str,
    want: &[&str],
) -> Result<(), String> {
    s.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| format!("writing to the server: {e}"))?;
    s.flush().await.map_err(|e| format!("writing to the server: {e}"))?;
    reply(s, want).await
}

async fn tls<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<tokio_openssl::SslStream<S>, String> {
    let mut b = openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls()).map_err(|e| e.to_string())?;
    if let Some(ca) = ca_file {
        b.set_ca_file(ca).map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
    }
    let ssl = b.build().configure().and_then(|c| c.into_ssl(host)).map_err(|e| e.to_string())?;
    let mut s = tokio_openssl::SslStream::new(ssl, stream).map_err(|e| e.to_string())?;
    tokio::time::timeout(TIMEOUT, Pin::new(&mut s).connect())
        .await
        .map_err(|_| "the TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS with {host}: {e} (check `tls`, and `ca_file` for a private CA)"))?;
    Ok(s)
}

/// After the greeting (and TLS, when there is any): EHLO, AUTH, the envelope, the message.
/// Without a message (`pgdrill doctor`) the envelope is reset once the server took the
/// sender and every recipient: nothing is sent.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufStream<S>,
    e: &Email,
    password: Option<&str>,
    message: Option<&str>,
) -> Result<(), String> {
    command(s, "EHLO pgdrill", &["250"]).await?;
    if let (Some(user), Some(pw)) = (e.user.as_deref(), password) {
        use base64::Engine;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
        command(s, &format!("AUTH PLAIN {token}"), &["235"])
            .await
            .map_err(|_| "authentication refused (user, password_env)".to_string())?;
    }
    command(s, &format!("MAIL FROM:<{}>", e.from), &["250"]).await?;
    for to in &e.to {
        command(s, &format!("RCPT TO:<{to}>"), &["250", "251"]).await?;
    }
    let Some(message) = message else {
        command(s, "RSET", &["250"]).await?;
        let _ = command(s, "QUIT", &["221"]).await;
        return Ok(());
    };
    command(s, "DATA", &["354"]).await?;
    // Dot-stuffing: a line that starts with `.` gets another one.
    let mut data = String::new();
    for line in message.lines() {
        if line.starts_with('.') {
            data.push('.');
        }
        data.push_str(line);
        data.push_str("\r\n");
    }
    data.push_str(".\r\n");
    s.write_all(data.as_bytes()).await.map_err(|e| format!("writing the message: {e}"))?;
    s.flush().await.map_err(|e| format!("writing the message: {e}"))?;
    reply(s, &["250"]).await?;
    let _ = command(s, "QUIT", &["221"]).await;
    Ok(())
}

/// Send `message` (headers and body, `\n` line ends) as configured.
pub async fn send(e: &Email, password: Option<&str>, message: &str) -> Result<(), String> {
    deliver(e, password, Some(message)).await
}

/// Everything `send` does short of the message: connect, TLS as configured, EHLO, AUTH, the
/// sender and every recipient accepted, then RSET and QUIT.
pub async fn probe(e: &Email, password: Option<&str>) -> Result<(), String> {
    deliver(e, password, None).await
}

async fn deliver(e: &Email, password: Option<&str>, message: Option<&str>) -> Result<(), String> {
    let host = e.smtp.rsplit_once(':').map(|(h, _)| h).unwrap_or(&e.smtp).to_string();
    let tcp = tokio::time::timeout(TIMEOUT, tokio::net::TcpStream::connect(&e.smtp))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|err| format!("cannot connect: {err}"))?;
    let ca = e.ca_file.as_deref();
    match e.tls {
        TlsMode::Tls => {
            let mut s = BufStream::new(tls(tcp, &host, ca).await?);
            reply(&mut s, &["220"]).await?;
            session(&mut s, e, password, message).await
        }
        TlsMode::None => {
            let mut s = BufStream::new(tcp);
            reply(&mut s, &["220"]).await?;
            session(&mut s, e, password, message).await
        }
        TlsMode::Starttls => {
            let mut s = BufStream::new(tcp);
            reply(&mut s, &["220"]).await?;
            command(&mut s, "EHLO pgdrill", &["250"]).await?;
            command(&mut s, "STARTTLS", &["220"])
                .await
                .map_err(|e| format!("{e}: the server offers no STARTTLS (tls: none or tls: tls)"))?;
            let mut t = BufStream::new(tls(s.into_inner(), &host, ca).await?);
            session(&mut t, e, password, message).await
        }
    }
}
