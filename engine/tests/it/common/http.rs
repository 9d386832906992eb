//! A little HTTP server on 127.0.0.1 that keeps what each request carried, for the tests of
//! webhooks, on-call services and metrics pushes.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};

/// One request as it arrived.
pub struct HttpRequest {
    /// The request target (`/hook?x=1`).
    pub path: String,
    /// Each header line, trimmed, as sent.
    pub lines: Vec<String>,
    /// Each header as (name in lower case, value trimmed).
    pub headers: Vec<(String, String)>,
    /// The body, `content-length` bytes of it.
    pub body: Vec<u8>,
}

/// Start a server that answers every request with `reply` (a whole HTTP response) and keeps
/// what `keep` makes of it, in arrival order. Its port and what it kept; the server runs until
/// the test process ends.
pub fn http_recorder<T: Send + 'static>(
    reply: &'static [u8],
    keep: impl Fn(HttpRequest) -> T + Send + 'static,
) -> (u16, Arc<Mutex<Vec<T>>>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn.try_clone().expect("clone"));
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            let (mut lines, mut headers, mut len) = (Vec::new(), Vec::new(), 0usize);
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    let k = k.trim().to_ascii_lowercase();
                    if k == "content-length" {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k, v.trim().to_string()));
                }
                lines.push(h.trim().to_string());
            }
            let mut body = vec![0u8; len];
            let _ = r.read_exact(&mut body);
            let path = first.split(' ').nth(1).unwrap_or_default().to_string();
            g.lock().expect("lock").push(keep(HttpRequest { path, lines, headers, body }));
            let mut c = conn;
            let _ = c.write_all(reply);
        }
    });
    (port, got)
}
