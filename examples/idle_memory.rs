//! Measures the server's resident memory per idle WebSocket connection.
//!
//! `cargo run --release --example idle_memory -- [N] [--shards S]` starts
//! `target/release/roomcast` as its own process, registers a system, opens 1,000 warm-up
//! connections, reads the server's `VmRSS` from `/proc/PID/status`, opens N more (default
//! 10,000; each completes the handshake and receives its connect frame), waits for the server
//! to settle, reads `VmRSS` again and prints (after − before) / N. Kernel socket buffers are
//! not in RSS; this is the user-space cost. N + 1,000 must stay under this process's
//! open-file limit.
//!
//! `--tls`: the server terminates TLS (a self-signed certificate made here with rcgen) and
//! every client is a wss client (rustls): the figure is then the cost of an idle TLS
//! WebSocket connection.
//!
//! `--threads K`: K client threads connect at once (a burst) instead of one by one.
//!
//! `--bun`: measures the reference peer instead (`loadtest/peers/bun-server.js` on Bun, the
//! same API; `npm install` in `loadtest/peers` first), with `--tls` too — the same clients,
//! the same count, so the two figures stand side by side.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

/// A client connection: plain, or TLS (rustls, blocking).
enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Conn {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(b),
            Conn::Tls(s) => s.read(b),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(b),
            Conn::Tls(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

fn open(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Conn {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // (Without it, a TLS client's two small writes wait on the peer's delayed ACK: ~40 ms.)
    s.set_nodelay(true).unwrap();
    match tls {
        None => Conn::Plain(s),
        Some(cfg) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
            Conn::Tls(Box::new(rustls::StreamOwned::new(c, s)))
        }
    }
}

/// A certificate for the server and a client configuration trusting it.
fn make_tls(dir: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), c.key_pair.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(c.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(cfg)
}

fn post(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>, path: &str, body: &str) {
    let mut s = open(addr, tls);
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nSystemId: mem\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the one response by its Content-Length (a peer may keep a TLS session open).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&out).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                break;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}

/// Opens one WebSocket connection and reads the connect frame.
fn connect(addr: SocketAddr, tls: Option<&Arc<rustls::ClientConfig>>) -> Conn {
    let mut s = open(addr, tls);
    s.write_all(b"GET /ws?systemId=mem HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
    let mut buf = [0u8; 512];
    let mut got = Vec::new();
    // 101 response, then the connect frame ({"code":0,...}} ends the frame).
    while !got.ends_with(b"}}") {
        let n = s.read(&mut buf).unwrap_or_else(|e| panic!("{e}; got {:?}", String::from_utf8_lossy(&got)));
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
    let dir = std::env::temp_dir().join(format!("roomcast-idle-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tls = args.iter().any(|a| a == "--tls").then(|| make_tls(&dir));
    let tls = tls.as_ref();
    let mut server_args = vec!["--listen".to_string(), "127.0.0.1:0".into(), "--shards".into(), shards.clone()];
    if tls.is_some() {
        for (flag, file) in [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")] {
            server_args.push(flag.into());
            server_args.push(dir.join(file).display().to_string());
        }
    }
    let bun = args.iter().any(|a| a == "--bun");
    let mut cmd = if bun {
        let peers = concat!(env!("CARGO_MANIFEST_DIR"), "/loadtest/peers");
        let mut c = Command::new(format!("{peers}/node_modules/.bin/bun"));
        c.current_dir(peers).args(["bun-server.js", "0"]);
        if tls.is_some() {
            c.env("TLS_CERT", dir.join("cert.pem")).env("TLS_KEY", dir.join("key.pem"));
        }
        c
    } else {
        let mut c = Command::new(bin);
        c.args(&server_args).env("RUST_LOG", "warn");
        c
    };
    let mut child = Child(cmd.stdout(Stdio::piped()).spawn().expect("run `cargo build --release` first"));
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr: SocketAddr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    post(addr, tls, "/api/register", r#"{"systemId":"mem"}"#);
    let warm: Vec<Conn> = (0..1000).map(|_| connect(addr, tls)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(child.0.id());
    let t = std::time::Instant::now();
    // `--threads K`: K clients connect at once (a burst, as after a deploy), not one by one.
    let threads: usize = args.iter().position(|a| a == "--threads").map(|i| args[i + 1].parse().unwrap()).unwrap_or(1);
    let mut conns: Vec<Conn> = std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|k| {
                let share = n / threads + usize::from(k < n % threads);
                s.spawn(move || (0..share).map(|_| connect(addr, tls)).collect::<Vec<Conn>>())
            })
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap()).collect()
    });
    let took = t.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss_kib(child.0.id());
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    // Printing must not panic (e.g. `| head -1` closes the pipe): release builds abort on
    // panic, which would skip the guard that stops the server.
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "server={} shards={shards} tls={} connections={} rss_before={before}KiB rss_after={after}KiB per_connection={per:.0}B ({:.2} KiB) connect_rate={:.0}/s ({threads} client thread(s))",
        if bun { "bun" } else { "roomcast" },
        tls.is_some(),
        n + warm.len(),
        per / 1024.0,
        n as f64 / took.as_secs_f64()
    );
    // Idle again after traffic: one message to every connection, read by every client.
    post(addr, tls, "/api/send_to_system", r#"{"code":1,"data":"x"}"#);
    let mut buf = [0u8; 256];
    let mut warm = warm;
    for c in warm.iter_mut().chain(conns.iter_mut()) {
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
    let _ = std::fs::remove_dir_all(&dir);
}
