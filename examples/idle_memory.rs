//! Measures the server's resident memory per idle WebSocket connection.
//!
//! `cargo run --release --example idle_memory -- [N] [--shards S]` starts
//! `target/release/roomcast` as its own process, registers a system, opens 1,000 warm-up
//! connections, reads the server's `VmRSS` from `/proc/PID/status`, opens N more (default
//! 10,000; each completes the handshake and receives its connect frame), waits for the server
//! to settle, reads `VmRSS` again and prints (after − before) / N. Kernel socket buffers are
//! not in RSS; this is the user-space cost. N + 1,000 must stay under this process's
//! open-file limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn post(addr: SocketAddr, path: &str, body: &str) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nSystemId: mem\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Opens one WebSocket connection and reads the connect frame.
fn connect(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /ws?systemId=mem HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    // 101 response, then the connect frame ({"code":0,...}} ends the frame).
    while !got.ends_with(b"}}") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed during handshake");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// Kills the server when dropped, whatever happens to this program (panic included).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let shards = args.iter().position(|a| a == "--shards").map(|i| args[i + 1].clone()).unwrap_or_else(|| "2".into());
    let bin = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/roomcast");
    let mut child = Child(
        Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--shards", &shards])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .expect("run `cargo build --release` first"),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().trim_start_matches("roomcast listening on ").parse().unwrap();
    post(addr, "/api/register", r#"{"systemId":"mem"}"#);
    let warm: Vec<TcpStream> = (0..1000).map(|_| connect(addr)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(child.0.id());
    let t = std::time::Instant::now();
    let conns: Vec<TcpStream> = (0..n).map(|_| connect(addr)).collect();
    let took = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(child.0.id());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    // Printing must not panic (e.g. `| head -1` closes the pipe): release builds abort on
    // panic, which would skip the guard that stops the server.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "shards={shards} connections={} rss_before={before}KiB rss_after={after}KiB per_connection={per:.0}B ({:.2} KiB) connect_rate={:.0}/s (sequential)",
        n + warm.len(),
        per / 1024.0,
        n as f64 / took.as_secs_f64()
    );
    // Idle again after traffic: one message to every connection, read by every client.
    post(addr, "/api/send_to_system", r#"{"code":1,"data":"x"}"#);
    let mut buf = [0u8; 256];
    for mut c in warm.iter().chain(conns.iter()) {
        let _ = c.read(&mut buf).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    let after_msg = rss_kib(child.0.id());
    let per_msg = (after_msg.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    let _ = writeln!(
        out,
        "after one message to all: rss={after_msg}KiB per_connection={per_msg:.0}B ({:.2} KiB)",
        per_msg / 1024.0
    );
    drop(conns);
}
