//! The HTTP side: K keep-alive connections in one mio loop, one request in flight on each,
//! optionally paced to a global rate. Requests come from a generator; every response goes
//! to a callback.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// What a sender run did.
pub struct SendStats {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Request → response, microseconds.
    pub latency: Histogram<u64>,
}

struct Conn {
    sock: crate::stream::Stream,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    inflight: Option<(u64, Instant)>,
    /// With [`RETRY`]: the request in flight (sent again if it fails), and how often it was.
    req: Vec<u8>,
    tries: u32,
}

/// The rolling scenario: a request whose connection closes before its answer (its node went
/// down; it was never read) or that is answered 503 is sent again, through the next node,
/// until answered otherwise ([`MAX_TRIES`]). Every message then has one sequence number.
pub static RETRY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
const MAX_TRIES: u32 = 500;

fn retrying() -> bool {
    RETRY.load(std::sync::atomic::Ordering::Relaxed)
}

/// Builds a POST request.
pub fn post(path: &str, system: &str, token: Option<&str>, body: &str) -> Vec<u8> {
    let mut r =
        format!("POST {path} HTTP/1.1\r\nHost: loadtest\r\nSystemId: {system}\r\nContent-Length: {}\r\n", body.len());
    if let Some(t) = token {
        r.push_str("Authorization: Bearer ");
        r.push_str(t);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.push_str(body);
    r.into_bytes()
}

/// Parses one complete response at the start of `buf`: (status, body range, total length).
fn parse_response(buf: &[u8]) -> Option<(u16, std::ops::Range<usize>, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= end + len).then_some((status, end..end + len, end + len))
}

/// Sends `total` requests made by `make(i)` over `conns` connections (spread over `addrs`),
/// at most `rate` per second if given, until done or `deadline`. `done(i, status, body)` sees
/// every response.
pub fn run(
    addrs: &[SocketAddr],
    conns: usize,
    total: u64,
    rate: Option<f64>,
    deadline: Instant,
    mut make: impl FnMut(u64) -> Vec<u8>,
    mut done: impl FnMut(u64, u16, &[u8]),
) -> io::Result<SendStats> {
    let mut poll = Poll::new()?;
    // Connection `i` (its poll token) to node `at` (modulo the nodes).
    let open = |poll: &Poll, i: usize, at: usize| -> io::Result<Conn> {
        let s = match std::net::TcpStream::connect(addrs[at % addrs.len()]) {
            Ok(s) => s,
            // A node restarting: the next ones, a while.
            Err(_) if retrying() => (1..addrs.len() * 100)
                .find_map(|k| {
                    if k % addrs.len() == 0 {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    std::net::TcpStream::connect(addrs[(at + k) % addrs.len()]).ok()
                })
                .ok_or_else(|| io::Error::other("no node takes connections"))?,
            Err(e) => return Err(e),
        };
        s.set_nodelay(true)?;
        s.set_nonblocking(true)?;
        let mut sock = TcpStream::from_std(s);
        poll.registry().register(&mut sock, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn {
            sock: crate::stream::Stream::new(sock),
            out: Vec::new(),
            written: 0,
            inbuf: Vec::new(),
            inflight: None,
            req: Vec::new(),
            tries: 0,
        })
    };
    // Connections are reopened at the next node each time (rolling: the last may be down).
    let mut opened = conns.max(1);
    let mut cs = Vec::new();
    for i in 0..conns.max(1) {
        cs.push(open(&poll, i, i)?);
    }
    let mut next_conn = 0usize;
    let mut stats = SendStats {
        sent: 0,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    };
    let start = Instant::now();
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut received = 0u64;
    while received < total && Instant::now() < deadline {
        // Hand out requests to idle connections, as pacing allows.
        let allowed = match rate {
            Some(r) => ((start.elapsed().as_secs_f64() * r) as u64 + 1).min(total),
            None => total,
        };
        // Rotate the starting connection so paced runs use them all (an unused keep-alive
        // connection would hit the server's idle timeout).
        let nconns = cs.len();
        next_conn = (next_conn + 1) % nconns;
        for k in 0..nconns {
            let i = (next_conn + k) % nconns;
            let c = &mut cs[i];
            if stats.sent >= allowed {
                break;
            }
            if c.inflight.is_none() && c.out.is_empty() {
                let n = stats.sent;
                c.out = make(n);
                c.written = 0;
                c.inflight = Some((n, Instant::now()));
                if retrying() {
                    c.req = c.out.clone();
                    c.tries = 0;
                }
                stats.sent += 1;
                match flush(c) {
                    // Rolling: its node is going down; the read side sees it and sends again.
                    Err(_) if retrying() => {}
                    r => r.map_err(|e| io::Error::new(e.kind(), format!("conn {i}: {e}")))?,
                }
            }
        }
        // Paced and held back by the rate (not by busy connections, whose answers wake the
        // poll): sleep until the next request is due, not a fixed short tick (waking a
        // thousand times a second took CPU from the server being measured).
        let timeout = match rate {
            Some(r) if stats.sent >= allowed && stats.sent < total => {
                let due = start + Duration::from_secs_f64(stats.sent as f64 / r);
                due.saturating_duration_since(Instant::now()).min(Duration::from_millis(100))
            }
            _ => Duration::from_millis(100),
        };
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut cs[i];
            if ev.is_writable() {
                match flush(c) {
                    Err(_) if retrying() => {}
                    r => r?,
                }
            }
            if !ev.is_readable() {
                continue;
            }
            let mut closed = false;
            loop {
                match c.sock.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    // Rolling: a node going down resets its connections.
                    Err(_) if retrying() => {
                        closed = true;
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            while let Some((status, body, len)) = parse_response(&c.inbuf) {
                if status == 503 && retrying() && c.tries < MAX_TRIES && c.inflight.is_some() {
                    c.inbuf.drain(..len);
                    c.tries += 1;
                    std::thread::sleep(Duration::from_millis(10));
                    c.out = c.req.clone();
                    c.written = 0;
                    flush(c)?;
                    continue;
                }
                let Some((n, t)) = c.inflight.take() else { break };
                let _ = stats.latency.record(t.elapsed().as_micros().max(1) as u64);
                if status == 200 {
                    stats.ok += 1;
                } else {
                    stats.errors += 1;
                }
                done(n, status, &c.inbuf[body]);
                c.inbuf.drain(..len);
                received += 1;
            }
            if closed {
                // The server closed this connection. Idle: its keep-alive timeout, so open a
                // new one. With a request in flight: that request failed (rolling: it was
                // never read, its node going down: sent again through the next node).
                let again = retrying() && c.inflight.is_some() && c.tries < MAX_TRIES;
                let resend = again.then(|| (c.inflight, c.req.clone(), c.tries + 1));
                if !again && c.inflight.take().is_some() {
                    stats.errors += 1;
                    received += 1;
                }
                let _ = poll.registry().deregister(&mut c.sock.sock);
                opened += 1;
                cs[i] = open(&poll, i, opened)?;
                if let Some((inflight, req, tries)) = resend {
                    let c = &mut cs[i];
                    (c.inflight, c.out, c.req, c.tries, c.written) = (inflight, req.clone(), req, tries, 0);
                    flush(c)?;
                }
            }
        }
    }
    stats.elapsed = start.elapsed();
    Ok(stats)
}

fn flush(c: &mut Conn) -> io::Result<()> {
    c.sock.flush_tls()?;
    while c.written < c.out.len() {
        match c.sock.write(&c.out[c.written..]) {
            Ok(n) => c.written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_complete_responses_only() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1";
        let (st, body, len) = parse_response(r).unwrap();
        assert_eq!((st, &r[body], len), (200, &b"{}"[..], 40));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").is_none());
    }
}
