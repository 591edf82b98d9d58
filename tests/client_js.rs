//! `GET /roomcast.js`: the browser client served by a real server — the file of the repository
//! byte for byte, its entity tag, 304 for a copy that is current (on a connection that stays
//! usable), 200 again for a stale one. (Over TLS: tests/tls.rs. The client's own suites, in
//! Node and in Chromium: clients/js/test, run by scripts/test.sh.)

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::*;

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one response (head, body) from `s`: Content-Length bodies, or none for a 304.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = header(&head, "content-length").map_or(0, |v| v.parse().unwrap());
            if buf.len() >= end + len {
                return (head, buf[end..end + len].to_vec());
            }
        }
        let n = s.read(&mut chunk).expect("a response");
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn roomcast_js_is_the_built_client_with_an_etag_and_304_for_a_current_copy() {
    let s = Server::start(&[]);
    let file = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js/dist/roomcast.js")).unwrap();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"GET /roomcast.js HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body, file, "the repository's clients/js/dist/roomcast.js, byte for byte");
    assert_eq!(header(&head, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert!(header(&head, "cache-control").is_some_and(|v| v.contains("max-age")), "{head}");
    let etag = header(&head, "etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    // The same connection: a conditional request for the copy it has.
    c.write_all(format!("GET /roomcast.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: W/\"old\", {etag}\r\n\r\n").as_bytes())
        .unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 304 "), "{head}");
    assert!(body.is_empty() && header(&head, "content-length").is_none(), "{head}");
    assert!(header(&head, "content-type").is_none(), "a 304 has no content: {head}");
    assert_eq!(header(&head, "etag"), Some(etag.as_str()));
    // A stale copy gets the file again, still on the same connection.
    c.write_all(b"GET /roomcast.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"stale\"\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut c);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    assert_eq!(body.len(), file.len());
    // Only GET serves it.
    let (st, _) = s.raw(b"POST /roomcast.js HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 404);
}
