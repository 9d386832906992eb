//! A relay in front of an object store that stalls the requests a test picks: a store that
//! takes a request and never answers it.

use std::io::{Read, Write};
use std::net::TcpStream;

/// A TCP relay to the store on 127.0.0.1:`upstream` that forwards every request except one
/// whose request line `stall` matches: that one it takes, then forwards nothing and answers
/// nothing, holding the connection open until the client gives up.
pub fn stalling_relay(upstream: u16, stall: fn(&str) -> bool) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
            let (mut c_in, mut s_out) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut stalled = false;
                loop {
                    let n = match c_in.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let line = head.lines().next().unwrap_or_default();
                    // A request line starts with its method; the bytes of a body do not.
                    let is_request = ["GET ", "HEAD ", "PUT ", "POST ", "DELETE "].iter().any(|m| line.starts_with(m));
                    stalled |= is_request && stall(line);
                    // A stalled request's body is read and dropped, so the client's writes never
                    // block on a full socket: it sent everything and waits for an answer.
                    if !stalled && s_out.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let (mut s_in, mut c_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s_in, &mut c_out);
            });
        }
    });
    port
}
