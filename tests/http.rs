//! HTTP/1.1 details real clients rely on.
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::*;

/// A client that half-closes after its request still gets the answer (it was at the hub).
#[test]
fn half_closed_client_still_gets_its_response() {
    let s = Server::start(&[]);
    s.register("a");
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = r#"{"groupName":"g"}"#;
    write!(t, "POST /api/get_online_list HTTP/1.1\r\nSystemId: a\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .unwrap();
    t.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out:?}");
    assert!(out.contains(r#""count":0"#), "{out}");
}

/// `Expect: 100-continue` (curl, for bodies over 1 KiB) gets its interim answer.
#[test]
fn expect_continue_is_answered() {
    let s = Server::start(&[]);
    s.register("a");
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = format!(r#"{{"groupName":"g","data":"{}"}}"#, "x".repeat(2000));
    write!(
        t,
        "POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut buf = [0u8; 25];
    t.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 100 Continue\r\n\r\n");
    t.write_all(body.as_bytes()).unwrap();
    let mut buf = [0u8; 12];
    t.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
}
