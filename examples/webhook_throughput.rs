//! How many presence events a second the webhook sender delivers to a fast local receiver.
//!
//! `cargo run --release --example webhook_throughput -- [EVENTS] [BATCH]`
//! `cargo run --release --example webhook_throughput -- sink PORT` only runs the receiver
//! (for a server's `--webhook-url http://127.0.0.1:PORT/`), printing its count each second.
//!
//! A receiver thread (plain HTTP/1.1 on loopback, keep-alive, answers 200 at once and counts
//! the events) and the real sender (`roomcast::webhooks`: collector, queue, batches, HMAC
//! signature, ureq); EVENTS events are recorded as fast as possible, then the time until the
//! receiver has them all is measured. Prints one line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use roomcast::metrics::HubStats;
use roomcast::webhooks::{self, Event, Kind};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("sink") {
        let got = Arc::new(AtomicU64::new(0));
        let port = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(7899);
        receiver(TcpListener::bind(("127.0.0.1", port)).unwrap(), got.clone());
        loop {
            std::thread::sleep(Duration::from_secs(1));
            eprintln!("sink: {} events", got.load(Relaxed));
        }
    }
    let n: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(500_000);
    let batch: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let got = Arc::new(AtomicU64::new(0));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    receiver(l, got.clone());
    run(n, batch, port, got);
}

/// A fast receiver: answers 200 at once, counts the events.
fn receiver(l: TcpListener, got: Arc<AtomicU64>) {
    let g = got;
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::with_capacity(1 << 20, s);
                let mut line = String::new();
                loop {
                    line.clear();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut len = 0;
                    loop {
                        line.clear();
                        r.read_line(&mut line).unwrap();
                        let h = line.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                    let mut body = vec![0u8; len];
                    r.read_exact(&mut body).unwrap();
                    // Count the events without a full parse: one "id" per event.
                    let events = memchr::memmem::find_iter(&body, b"{\"id\":").count() as u64;
                    g.fetch_add(events, Relaxed);
                    w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                }
            });
        }
    });
}

fn run(n: u64, batch: usize, port: u16, got: Arc<AtomicU64>) {
    let args = roomcast::config::ServeArgs {
        webhook_url: Some(format!("http://127.0.0.1:{port}/hooks")),
        webhook_secret: Some("k".into()),
        webhook_batch_size: Some(batch),
        webhook_queue: Some(n as usize),
        webhook_retry_for: Some(Duration::from_secs(60)),
        node_id: Some(roomcast::config::NodeId(1)),
        ..Default::default()
    };
    let cfg = Arc::new(args.resolve().expect("valid settings"));
    let (hooks, _threads) = webhooks::start(cfg, Arc::new(HubStats::default())).unwrap();
    let system: Arc<str> = "system".into();
    let group: Arc<str> = "room-1".into();
    let t = Instant::now();
    for i in 0..n {
        let kind = if i % 2 == 0 {
            Kind::GroupJoined { user_id: "user-1234".into(), extend: "{}".into() }
        } else {
            Kind::GroupLeft { user_id: "user-1234".into(), extend: "{}".into() }
        };
        hooks.emit(Event::new(kind, system.clone(), Some(group.clone()), Some("0000000100000000000000000042".into())));
        // The hand-off channel is bounded: let the collector keep up instead of dropping.
        while i % 1024 == 0 && got.load(Relaxed) + 60_000 < i {
            std::thread::sleep(Duration::from_micros(100));
        }
    }
    let recorded = t.elapsed();
    while got.load(Relaxed) < n && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "webhook sender: {} events in {secs:.2} s = {:.0} events/s delivered (batches of {batch}; recorded in {:.2} s)",
        got.load(Relaxed),
        got.load(Relaxed) as f64 / secs,
        recorded.as_secs_f64()
    );
}
