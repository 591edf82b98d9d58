//! Unit tests of the loop's bookkeeping on a real shard (real sockets on loopback, no threads).

use std::net::TcpStream as StdStream;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use mio::net::TcpListener;
use mio::{Poll, Waker};

use super::{Shard, Shared, WAKER};
use crate::auth::Verifier;
use crate::config::Config;
use crate::metrics::{self, HubStats};
use crate::msg::Target;

fn shard() -> (Shard, std::net::SocketAddr) {
    let cfg = Config::default();
    let shared = Arc::new(Shared {
        verifier: Verifier::open(),
        stats: metrics::per_shard(1),
        hub_stats: Arc::new(HubStats::default()),
        connections: AtomicUsize::new(0),
        per_ip: None,
        tls: None,
        cfg,
    });
    let poll = Poll::new().unwrap();
    let _waker = Waker::new(poll.registry(), WAKER).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, rx) = bounded(16);
    let (_, rrx) = bounded(16);
    let (hub, _) = bounded(16);
    (Shard::new(0, shared, poll, listener, (rx, rrx), hub).unwrap(), addr)
}

/// Accepts until a connection is in the slab (the listener is non-blocking).
fn accept_one(s: &mut Shard, before: usize) {
    let t = Instant::now();
    while s.conns.len() == before {
        assert!(t.elapsed() < Duration::from_secs(5), "no connection accepted");
        s.accept();
    }
}

/// Regression (security review, low): a close marked for a connection whose slot was freed
/// and reused in the same loop turn closed the new connection instead.
#[test]
fn a_stale_close_mark_spares_the_slots_new_connection() {
    let (mut s, addr) = shard();
    let _a = StdStream::connect(addr).unwrap();
    accept_one(&mut s, 0);
    let (slot, gen) = s.conns.iter().map(|(k, c)| (k, c.gen)).next().unwrap();
    s.to_close.push(Target { slot: slot as u32, gen });
    // Within the same turn the connection goes another way, and a new one takes its slot.
    s.close_now(slot);
    let _b = StdStream::connect(addr).unwrap();
    accept_one(&mut s, 0);
    let (slot2, gen2) = s.conns.iter().map(|(k, c)| (k, c.gen)).next().unwrap();
    assert_eq!(slot2, slot, "the slab reuses the freed slot");
    assert_ne!(gen2, gen);
    s.close_marked();
    assert!(s.conns.get(slot).is_some_and(|c| c.gen == gen2), "the new connection survived");
    // The mark of the live connection itself still closes it.
    s.to_close.push(Target { slot: slot as u32, gen: gen2 });
    s.close_marked();
    assert!(s.conns.is_empty());
}
