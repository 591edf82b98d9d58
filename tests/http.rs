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

/// Writes `bytes`, then reads until the server closes (bounded); returns everything read.
fn exchange(s: &Server, bytes: &[u8]) -> String {
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may stop reading (and close) before all of a large request is written.
    let _ = t.write_all(bytes);
    let mut out = Vec::new();
    let _ = t.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn responses(out: &str) -> usize {
    out.matches("HTTP/1.1 ").count()
}

/// Regression (security review, high): requests hidden inside a rejected request's bytes must
/// never run. Before the fix a 413 was followed by hundreds of responses and the hidden
/// `register` ran.
#[test]
fn bytes_inside_a_rejected_request_never_run() {
    let s = Server::start(&["--max-body-size", "1000"]);
    let hidden = "POST /api/register HTTP/1.1\r\nContent-Length: 20\r\n\r\n{\"systemId\":\"evil\"}";
    let smuggled: String = std::iter::repeat_n(format!("{}{hidden}", "\n".repeat(4000)), 100).collect();
    let req = format!("POST /api/register HTTP/1.1\r\nContent-Length: {}\r\n\r\n{smuggled}", smuggled.len());
    let out = exchange(&s, req.as_bytes());
    assert!(out.starts_with("HTTP/1.1 413"), "{out:.200}");
    assert_eq!(responses(&out), 1, "one response, then the connection closes: {out:.400}");
    // The hidden register never ran: registering the system now succeeds.
    s.register("evil");
    // The same for a malformed head followed by a valid request in the same write.
    let out = exchange(&s, b"GET / HTTP/9\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    assert_eq!((responses(&out), out.starts_with("HTTP/1.1 400")), (1, true), "{out}");
    // And for a refused body (400) with a request pipelined behind it.
    let out = exchange(
        &s,
        b"POST /api/send_to_group HTTP/1.1\r\nSystemId: evil\r\nContent-Length: 5\r\n\r\n{oopsGET /health HTTP/1.1\r\n\r\n",
    );
    assert_eq!((responses(&out), out.starts_with("HTTP/1.1 400")), (1, true), "{out}");
}

/// `Connection: close` (and HTTP/1.0) end the connection after one response, even with
/// another request already sent behind it.
#[test]
fn connection_close_is_honoured() {
    let s = Server::start(&[]);
    let out = exchange(&s, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    assert_eq!(responses(&out), 1, "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    let out = exchange(&s, b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.1\r\n\r\n");
    assert_eq!(responses(&out), 1, "{out}");
    // Keep-alive still works: two requests, two answers (then close asked on the second).
    let out = exchange(&s, b"GET /health HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(responses(&out), 2, "{out}");
}

/// Content-Length is digits only: `+17` is refused, not read as 17.
#[test]
fn signed_content_length_is_refused() {
    let s = Server::start(&[]);
    let body = r#"{"systemId":"x"}"#;
    let req = format!("POST /api/register HTTP/1.1\r\nContent-Length: +{}\r\n\r\n{body}", body.len());
    let out = exchange(&s, req.as_bytes());
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    s.register("x");
}

/// Sends `bytes` one at a time, `gap` apart, until the server closes; returns what it answered
/// and how long it took (`None`: still open after `limit`).
fn trickle(s: &Server, prefix: &[u8], bytes: &[u8], gap: Duration, limit: Duration) -> (String, Option<Duration>) {
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.set_read_timeout(Some(gap)).unwrap();
    t.write_all(prefix).unwrap();
    let start = std::time::Instant::now();
    let mut out = Vec::new();
    for b in bytes.iter().cycle() {
        if start.elapsed() > limit {
            return (String::from_utf8_lossy(&out).into_owned(), None);
        }
        if t.write_all(&[*b]).is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match t.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    (String::from_utf8_lossy(&out).into_owned(), Some(start.elapsed()))
}

/// Regression (security review, slowloris): a request head or body that trickles in a byte at
/// a time is cut off after request_timeout, although every byte resets the idle timer. Before
/// the fix such a connection stayed open for as long as bytes kept coming.
#[test]
fn trickled_requests_time_out() {
    let s = Server::start(&["--request-timeout", "1s", "--idle-timeout", "60s"]);
    let gap = Duration::from_millis(200);
    let head = b"GET /health HTTP/1.1\r\nX-Slow: ".repeat(20);
    let (out, took) = trickle(&s, b"", &head, gap, Duration::from_secs(8));
    let took = took.unwrap_or_else(|| panic!("a trickled head was never cut off: {out:?}"));
    assert!(out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    // A body trickling in after a complete head gets its own bound.
    let head = b"POST /api/register HTTP/1.1\r\nContent-Length: 100000\r\n\r\n";
    let (out, took) = trickle(&s, head, b" ", gap, Duration::from_secs(8));
    assert!(took.is_some() && out.starts_with("HTTP/1.1 408"), "{out:?}");
    assert!(metric(&s, "request_timeouts_total") >= 2);
    // A prompt request is unaffected.
    let (st, _) = s.raw(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 200);
}
