//! Unit tests of the loop's bookkeeping on a real shard (real sockets on loopback, no threads).

use std::net::TcpStream as StdStream;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use mio::net::TcpListener;
use mio::{Poll, Waker};

use super::lifecycle::react::Event;
use super::{Shard, Shared, WAKER};
use crate::auth::Verifier;
use crate::config::Config;
use crate::metrics::{self, HubStats};
use crate::msg::Target;

fn shard() -> (Shard, std::net::SocketAddr) {
    let (hub, _) = bounded(16);
    shard_with(hub)
}

/// A shard whose hub queue is `hub`.
fn shard_with(hub: crossbeam_channel::Sender<crate::msg::Command>) -> (Shard, std::net::SocketAddr) {
    shard_full(hub, None)
}

/// A shard whose hub queue is `hub`, with per-address bounds `per_ip`.
fn shard_full(
    hub: crossbeam_channel::Sender<crate::msg::Command>,
    per_ip: Option<super::per_ip::PerIp>,
) -> (Shard, std::net::SocketAddr) {
    shard_kept(hub, per_ip, Vec::new())
}

/// [`shard_full`], started with the sessions a last run `kept`.
fn shard_kept(
    hub: crossbeam_channel::Sender<crate::msg::Command>,
    per_ip: Option<super::per_ip::PerIp>,
    kept: Vec<crate::msg::KeptSession>,
) -> (Shard, std::net::SocketAddr) {
    let cfg = Arc::new(Config::default());
    let shared = Arc::new(Shared {
        aliases: Default::default(),
        peers: false,
        verifier: Verifier::open(),
        stats: metrics::per_shard(1),
        hub_stats: Arc::new(HubStats::default()),
        connections: AtomicUsize::new(0),
        kept: AtomicUsize::new(0),
        per_ip,
        tls: None,
        cfg,
    });
    let poll = Poll::new().unwrap();
    let _waker = Waker::new(poll.registry(), WAKER).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, rx) = bounded(16);
    let (_, rrx) = bounded(16);
    (Shard::new(0, shared, poll, listener, (rx, rrx), hub, kept).unwrap(), addr)
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
    s.on_event(slot, Event::SocketLost);
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

/// Connects the shard welcomed itself leave for the hub together at the end of the turn; if
/// the hub's queue is full then, each client gets a 503 and nothing of its 101 or connect
/// frame (invariant 8: no clientId the hub does not know).
#[test]
fn batched_connects_the_hub_cannot_take_get_503_not_a_clientid() {
    use std::io::{Read, Write};
    let (hub, hub_rx) = bounded(1);
    hub.try_send(crate::msg::Command::Stop).unwrap(); // the queue is full
    let (mut s, addr) = shard_with(hub);
    s.known_systems.insert("sys".into(), 0);
    let upgrade = b"GET /ws?systemId=sys HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let mut clients = Vec::new();
    for n in 0..3 {
        let mut c = StdStream::connect(addr).unwrap();
        c.write_all(upgrade).unwrap();
        accept_one(&mut s, n);
        let slot = s.conns.iter().map(|(k, _)| k).max().unwrap();
        let t = Instant::now();
        while s.pending_connects.len() == n && t.elapsed() < Duration::from_secs(5) {
            s.on_readable(slot);
        }
        clients.push(c);
    }
    assert_eq!(s.pending_connects.len(), 3, "welcomed, waiting for the end of the turn");
    s.flush_dirty();
    s.close_marked();
    assert!(s.pending_connects.is_empty());
    for mut c in clients {
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = c.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(!text.contains("101") && !text.contains("clientId"), "{text}");
    }
    // Only what was there before: the hub never heard of them.
    assert_eq!(hub_rx.len(), 1);
    assert_eq!(s.stats().hub_busy_total.load(std::sync::atomic::Ordering::Relaxed), 3);
}

/// Every phase change keeps the phase gauges and the node's kept count (shard::lifecycle):
/// from each phase to each other, on a real slot, the gauges are the counts of their phases.
#[test]
fn every_phase_change_keeps_the_gauges() {
    use super::State;
    use std::sync::atomic::Ordering::Relaxed;
    let (mut s, addr) = shard();
    let _a = StdStream::connect(addr).unwrap();
    let _b = StdStream::connect(addr).unwrap();
    accept_one(&mut s, 0);
    accept_one(&mut s, 1);
    let slots: Vec<usize> = s.conns.iter().map(|(k, _)| k).collect();
    // Without their sockets: a detached session has none (asserted by set_state).
    for &slot in &slots {
        s.conns[slot].sock = None;
    }
    let phases = [
        State::Http { awaiting: false, keep_alive: true },
        State::Client { hub_knows: true },
        State::Echo,
        State::Edge,
        State::Parked { until: 0 },
        State::Relayed,
        State::Detached,
        State::Closing { until: 0, kind: super::CloseKind::WebSocket },
        State::Closing { until: 0, kind: super::CloseKind::Http },
    ];
    for from in phases {
        for to in phases {
            s.set_state_unchecked(slots[0], from);
            s.set_state_unchecked(slots[1], to);
            s.check_gauges();
            let kept = [from, to].iter().filter(|p| **p == State::Detached).count();
            assert_eq!(s.shared.kept.load(Relaxed), kept, "{from:?} then {to:?}");
            s.set_state_unchecked(slots[1], from);
            s.check_gauges();
        }
    }
    // Leaving the slab counts as leaving the phase.
    s.set_state_unchecked(slots[0], State::Detached);
    s.set_state_unchecked(slots[1], State::Edge);
    s.remove_conn(slots[0]);
    s.remove_conn(slots[1]);
    s.check_gauges();
    assert_eq!(s.shared.kept.load(Relaxed), 0);
    assert_eq!(s.stats().ws_clients.load(Relaxed), 0);
}

/// A recoverable client whose connection drops is detached (not a WebSocket client any more,
/// kept), and ends when its window lapses; a close handshake is no client either.
#[test]
fn a_dropped_recoverable_client_is_kept_then_ends() {
    use std::io::Write;
    use std::sync::atomic::Ordering::Relaxed;
    let (hub, hub_rx) = bounded(16);
    let (mut s, addr) = shard_with(hub);
    s.known_systems.insert("sys".into(), 0);
    let upgrade = |q: &str| {
        format!("GET /ws?systemId=sys{q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    };
    let mut slots = Vec::new();
    let mut socks = Vec::new();
    for (n, q) in ["&recover=1", ""].iter().enumerate() {
        let mut c = StdStream::connect(addr).unwrap();
        c.write_all(upgrade(q).as_bytes()).unwrap();
        accept_one(&mut s, n);
        let slot = s.conns.iter().map(|(k, _)| k).max().unwrap();
        let t = Instant::now();
        while s.conns[slot].state != (super::State::Client { hub_knows: true }) {
            assert!(t.elapsed() < Duration::from_secs(5), "no upgrade");
            s.on_readable(slot);
        }
        slots.push(slot);
        socks.push(c);
    }
    s.flush_dirty();
    assert!(hub_rx.try_recv().is_ok(), "the hub heard of the connects");
    fn st(s: &Shard) -> (u64, u64) {
        (s.stats().ws_clients.load(Relaxed), s.stats().recovery_sessions.load(Relaxed))
    }
    assert_eq!(st(&s), (2, 0));
    s.on_event(slots[0], Event::SocketLost);
    assert_eq!(s.conns[slots[0]].state, super::State::Detached);
    s.check_gauges();
    assert_eq!((st(&s), s.shared.kept.load(Relaxed)), ((1, 1), 1));
    s.on_event(slots[1], Event::ClientClosed { code: 1000, reason: "" });
    s.check_gauges();
    assert_eq!(st(&s), (0, 1));
    s.on_event(slots[0], Event::SessionEnds);
    s.check_gauges();
    assert_eq!((st(&s), s.shared.kept.load(Relaxed)), ((0, 0), 0));
}

/// Review finding: a detached session whose resume was refused because its `last` is gone
/// (`Event::ResumeRefused`) dropped its session before its slot, so its address kept counting
/// it for ever (and `max_connections_per_ip` refused that address in the end).
#[test]
fn a_refused_detached_session_releases_its_address() {
    use std::io::Write;
    let per_ip = super::per_ip::PerIp::new(100, 0, 64);
    assert!(per_ip.is_some());
    let (hub, _hub_rx) = bounded(16);
    let (mut s, addr) = shard_full(hub, per_ip);
    s.known_systems.insert("sys".into(), 0);
    let mut c = StdStream::connect(addr).unwrap();
    let head = "GET /ws?systemId=sys&recover=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    c.write_all(head.as_bytes()).unwrap();
    accept_one(&mut s, 0);
    let slot = s.conns.iter().map(|(k, _)| k).next().unwrap();
    let t = Instant::now();
    while s.conns[slot].state != (super::State::Client { hub_knows: true }) {
        assert!(t.elapsed() < Duration::from_secs(5), "no upgrade");
        s.on_readable(slot);
    }
    let shared = s.shared.clone();
    let addresses = || shared.per_ip.as_ref().unwrap().addresses();
    assert_eq!(addresses(), 1);
    s.on_event(slot, Event::SocketLost); // dropped without a close handshake: detached, still counted
    assert_eq!(s.conns[slot].state, super::State::Detached);
    assert_eq!(addresses(), 1, "a kept session counts against its address");
    s.on_event(slot, Event::ResumeRefused);
    assert!(s.conns.get(slot).is_none());
    assert_eq!(addresses(), 0, "the address is released with the session");
    s.check_gauges();
}

/// Sessions a last run kept go back into their slots with their generations, detached and
/// counted as kept; one past its window and one over `recovery_max_bytes` end at once (the
/// hub hears of each), and a new connection takes a free slot, never a kept one.
#[test]
fn kept_sessions_go_back_to_their_slots_and_past_a_bound_end() {
    use std::sync::atomic::Ordering::Relaxed;
    let frame = |n: usize| {
        let payload = format!("{{\"messageId\":\"m{n}\",\"msg\":\"{}\"}}", "x".repeat(n));
        crate::protocol::ws::frame(crate::protocol::ws::OP_TEXT, payload.as_bytes())
    };
    let now = crate::auth::now_millis();
    let kept = |slot, gen, detached_ms, frames: Vec<bytes::Bytes>| crate::msg::KeptSession {
        conn: crate::ids::ConnId { shard: 0, slot, gen },
        secret: crate::recovery::new_secret(),
        system: "sys".into(),
        detached_ms,
        ip: None,
        acked: None,
        frames,
        from_start: true,
    };
    let max = Config::default().recovery_max_bytes;
    let sessions = vec![
        kept(9, 1, 0, vec![frame(1)]),
        kept(3, 7, now, vec![frame(1), frame(2)]),
        kept(5, 2, now, vec![frame(max)]),
    ];
    let (hub, hub_rx) = bounded(16);
    let (mut s, addr) = shard_kept(hub, None, sessions);
    assert_eq!(s.conns.len(), 1, "the lapsed and the oversized one ended");
    assert_eq!((s.conns[3].gen, s.conns[3].state), (7, super::State::Detached));
    assert_eq!(s.conns[3].session.as_ref().unwrap().unacked.after(None).unwrap().count(), 2);
    assert_eq!((s.kept_here(), s.shared.kept.load(Relaxed)), (1, 1));
    assert_eq!(s.stats().recovery_restored_total.load(Relaxed), 3);
    assert_eq!(s.stats().recovery_overflows_total.load(Relaxed), 1);
    assert_eq!(s.stats().recovery_expired_total.load(Relaxed), 1);
    s.flush_backlog();
    assert_eq!(hub_rx.try_iter().count(), 2, "the hub heard of both ends");
    let _c = StdStream::connect(addr).unwrap();
    accept_one(&mut s, 1);
    assert!(s.conns.iter().any(|(k, _)| k != 3), "a new connection in a free slot");
    assert_eq!(s.conns[3].gen, 7);
}
