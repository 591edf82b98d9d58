//! Sessions across a restart (a single node with `state_dir`): at shutdown a recoverable
//! client is closed with 1012 and its session kept, detached, still recording what is sent to
//! it, until the shard exits and hands every kept session to the hub for the state
//! (`Command::Sessions`); at the next start the shard gets them back (`crate::restore`) and
//! puts each in its slot with its generation, detached, for what is left of its
//! `recovery_window`. Nobody is told either time: to the hub's index and every group the
//! session never left. The model of a session is in `recovery`; the resume is `resume.rs`'s.

use std::io::Read;

use super::lifecycle::react::Event;
use super::{Buf, Conn, Shard, State};
use crate::ids::ConnId;
use crate::metrics;
use crate::msg::{Command, KeptSession};
use crate::protocol::ws as wsp;
use crate::recovery::{Session, Unacked};

/// Reads of a closing socket's unread input before it is dropped (see [`Shard::restart`]).
const DRAIN_READS: usize = 16;

impl Shard {
    /// Shutdown, sessions kept: the client is told to come back (1012, written now if its
    /// socket takes it) and the session is kept, detached, for the state. Input not yet read is
    /// read away first: closing a socket with unread input resets it, and a reset drops the
    /// close frame still in the kernel's send queue.
    pub(super) fn restart(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        conn.out.push(wsp::close_frame(wsp::close::RESTART, "server restarting: resume"));
        self.flush_one(slot);
        if let Some(sock) = self.conns.get_mut(slot).and_then(|c| c.sock.as_mut()) {
            for _ in 0..DRAIN_READS {
                if !matches!(sock.read(&mut self.scratch), Ok(n) if n > 0) {
                    break;
                }
            }
        }
        metrics::add(&self.stats().recovery_restart_closes_total, 1);
        self.detach(slot);
    }

    /// Asked by the hub once every shard is quiet (`Shard::shutdown_done`): every kept
    /// session, for the state the hub writes; then the shard exits. The hub is running (it
    /// stops once every shard has exited) and sends nothing more to shards.
    pub(super) fn hand_over_sessions(&mut self) {
        debug_assert!(self.keeps_sessions && self.quiet, "asked only of a quiet shard");
        self.handed_over = true;
        let kept = self.kept_sessions();
        let n = kept.len();
        if self.hub.send_timeout(Command::Sessions(kept), self.cfg().shutdown_timeout).is_err() {
            tracing::error!(shard = self.id, sessions = n, "the hub took no kept sessions: they are lost");
        }
    }

    /// The kept (detached) sessions, as the state holds them.
    fn kept_sessions(&self) -> Vec<KeptSession> {
        let (now, unix) = (self.now(), crate::auth::now_millis());
        let mut kept = Vec::new();
        for (slot, c) in self.conns.iter() {
            let Some(s) = c.session.as_ref().filter(|_| c.state == State::Detached) else { continue };
            let since = super::lifecycle::elapsed(now, s.detached_since.unwrap_or(now));
            let (acked, frames, from_start) = s.unacked.saved();
            kept.push(KeptSession {
                conn: ConnId { shard: self.id, slot: slot as u32, gen: c.gen },
                secret: s.secret,
                system: s.system.clone(),
                detached_ms: unix.saturating_sub(u64::from(since)),
                ip: s.ip,
                acked: acked.map(|f| (**f).clone()),
                frames: frames.map(|f| (**f).clone()).collect(),
                from_start,
            });
        }
        kept
    }

    /// At start: the sessions the last run kept for this shard, each put in its slot with its
    /// generation, detached (counted as every detached session is: the phase gauges, the
    /// node's kept sessions, its address, the `max_recovery_sessions` order), its window
    /// shortened by the time since it lost its connection. A session past its window or its
    /// byte bound ends at once, and the oldest beyond this shard's share of
    /// `max_recovery_sessions`, as they would have in a run: the hub hears of each.
    pub(super) fn restore(&mut self, kept: Vec<KeptSession>) {
        if kept.is_empty() {
            return;
        }
        debug_assert!(self.conns.is_empty(), "restored before any connection");
        debug_assert!(
            kept.iter().map(|k| k.conn.slot).collect::<std::collections::HashSet<_>>().len() == kept.len(),
            "one session per slot (restore::read)"
        );
        let addresses = self.put_back(kept);
        metrics::add(&self.stats().recovery_restored_total, self.conns.len() as u64);
        for (slot, ip) in addresses {
            self.set_state_restored(slot);
            let ip = ip.and_then(|ip| self.shared.per_ip.as_ref().map(|p| p.keep_restored(ip)));
            self.kept_begin(slot, ip, false);
        }
        self.end_over_bounds();
        tracing::info!(shard = self.id, sessions = self.kept_here(), "kept sessions put back, detached");
    }

    /// The kept sessions into the slab, each at its slot; each slot with its address, in the
    /// order given (oldest detached first: the `max_recovery_sessions` order).
    fn put_back(&mut self, kept: Vec<KeptSession>) -> Vec<(usize, Option<std::net::IpAddr>)> {
        let (now, unix) = (self.now(), crate::auth::now_millis());
        let window = u64::from(super::lifecycle::Bounds::of(self.cfg()).window_ms);
        let mut addresses = Vec::with_capacity(kept.len());
        let conns = kept.into_iter().map(|k| {
            let slot = k.conn.slot as usize;
            addresses.push((slot, k.ip));
            // Past the window: lapsed at the first look (1 ms over it).
            let since = unix.saturating_sub(k.detached_ms).min(window + 1) as u32;
            (slot, restored_conn(k, now.wrapping_sub(since)))
        });
        self.conns = conns.collect();
        addresses
    }

    /// Sessions put back past a bound end now, as they would have in a run: over
    /// `recovery_max_bytes`, the oldest beyond this shard's share of `max_recovery_sessions`,
    /// and (the sweep) past their window.
    fn end_over_bounds(&mut self) {
        let max = self.shared.cfg.recovery_max_bytes;
        let over: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.as_ref().is_some_and(|s| s.unacked.bytes() > max))
            .map(|(slot, _)| slot)
            .collect();
        for slot in over {
            metrics::add(&self.stats().recovery_overflows_total, 1);
            self.on_event(slot, Event::SessionEnds);
        }
        self.evict_oldest_kept();
        self.sweep();
    }
}

impl Shard {
    /// Cluster mode, shutting down with sessions to hand over: relay messages for them are
    /// no longer served here.
    pub(super) fn handing_off(&self) -> bool {
        self.keeps_sessions && self.shared.peers && self.shutdown_deadline.is_some()
    }

    /// A relay message that came while this shard's sessions are being handed over: a resume
    /// through another node, or what its edge said. The hub passes it to the adopter (which
    /// holds the session by then), so the resume is served there. Anything else is for a
    /// connection of this shard that is going: dropped.
    pub(super) fn bounce(&mut self, m: crate::protocol::relay::Msg) {
        use crate::protocol::relay::Msg;
        match m {
            Msg::ResumeReq { .. } | Msg::Event { .. } => self.tell_hub_lifecycle(Command::Bounced(m)),
            _ => self.node_said(m),
        }
    }

    /// Cluster mode: sessions a stopping node handed over, each put in a free slot with a
    /// new generation, detached for what is left of its window (counted as every detached
    /// session is); the hub learns where each is ([`Command::Adopted`]) and holds it under its
    /// old clientId. Past this shard's share of `max_recovery_sessions` (or its slots) a
    /// session is not taken: its old node ends it.
    pub(super) fn adopt_sessions(&mut self, from: u32, sessions: Vec<crate::msg::Adoption>) {
        let (now, unix) = (self.now(), crate::auth::now_millis());
        let window = u64::from(super::lifecycle::Bounds::of(self.cfg()).window_ms);
        let share = self.shared.cfg.max_recovery_sessions.div_ceil(self.shared.cfg.shards);
        let mut held = Vec::with_capacity(sessions.len());
        let mut over = Vec::new();
        for a in sessions {
            if self.kept_here() >= share || self.conns.len() >= crate::ids::SLOTS {
                over.push(a.id);
                continue;
            }
            let slot = self.conns.vacant_key();
            let gen = self.next_gen;
            self.next_gen = crate::ids::next_gen(gen);
            let ip = a.kept.ip;
            let since = unix.saturating_sub(a.kept.detached_ms).min(window) as u32;
            let kept = KeptSession { conn: ConnId { shard: self.id, slot: slot as u32, gen }, ..a.kept };
            let at = self.conns.insert(restored_conn(kept, now.wrapping_sub(since)));
            debug_assert_eq!(at, slot);
            self.set_state_restored(slot);
            let ip = ip.and_then(|ip| self.shared.per_ip.as_ref().map(|p| p.keep_restored(ip)));
            self.kept_begin(slot, ip, false);
            held.push((a.id, ConnId { shard: self.id, slot: slot as u32, gen }));
        }
        metrics::add(&self.stats().recovery_adopted_total, held.len() as u64);
        self.tell_hub_lifecycle(Command::Adopted { from, held, over });
    }
}

/// A kept session as its slot holds it, detached since shard clock `since`.
fn restored_conn(k: KeptSession, since: u32) -> Conn {
    let mut c = Conn::without_socket(k.conn.gen, since);
    c.state = State::Detached;
    let mut s = Session::new(k.system);
    s.secret = k.secret;
    s.detached_since = Some(since);
    let buf = |f: bytes::Bytes| -> Buf { std::rc::Rc::new(f) };
    s.unacked = Unacked::restored(k.acked.map(buf), k.frames.into_iter().map(buf), k.from_start);
    c.session = Some(Box::new(s));
    c
}
