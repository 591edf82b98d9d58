//! The shard's side of session recovery (the model is in `recovery`): recording what a
//! session is sent, acknowledgements, detaching and expiry, and resumes — with the takeover of
//! a connection that still looks open, and a fresh session when a resume cannot be honoured.
//!
//! A resume can arrive on any shard (SO_REUSEPORT picks one). That shard parses the request and
//! hands the socket, through the hub, to the shard holding the session (`Command::Resume` →
//! `ShardMsg::Resume`); the session's shard sends the 101, the connect frame and the missed
//! frames, all in its own order with the frames still arriving for the session.

use bytes::Bytes;
use crossbeam_channel::TrySendError;
use mio::{Interest, Token};

use super::lifecycle::react::Event;
use super::{Buf, OutQueue, Shard, State};
use crate::auth::Admit;
use crate::ids;
use crate::metrics;
use crate::msg::{Command, Resume};
use crate::protocol::api;
use crate::protocol::ws as wsp;
use crate::recovery::{self, Refusal};

/// How often (ms) an extra ping may ask a busy session's client to acknowledge what it received.
const ACK_PING_MS: u32 = 1000;

impl Shard {
    fn recovery_max(&self) -> usize {
        self.shared.cfg.recovery_max_bytes
    }

    /// Keeps a push frame in the unacknowledged frames of the session at `slot`. Connected, the oldest
    /// frames give way past `recovery_max_bytes` (and an extra ping asks the client to
    /// acknowledge before that). Detached, going past it ends the session. False if it ended.
    pub(super) fn record(&mut self, slot: usize, frame: &Buf) -> bool {
        let max = self.recovery_max();
        let now = self.now();
        let Some(conn) = self.conns.get_mut(slot) else { return false };
        let detached = conn.state == State::Detached;
        let Some(s) = conn.session.as_mut() else { return true };
        if s.unacked.record(frame.clone(), max) {
            let ask = !detached && s.unacked.bytes() > max / 8 && now.wrapping_sub(conn.last_ping) > ACK_PING_MS;
            if ask {
                conn.last_ping = now;
                let ping = ack_ping(s.unacked.next());
                self.queue(slot, ping);
            }
            return true;
        }
        if !detached {
            s.unacked.trim_to(max);
            return true;
        }
        metrics::add(&self.stats().recovery_overflows_total, 1);
        if self.log_ok() {
            tracing::info!(
                shard = self.id,
                slot,
                "recoverable session ended: recovery_max_bytes reached while detached"
            );
        }
        self.on_event(slot, Event::SessionEnds);
        false
    }

    /// A pong from a recovering client: the frames queued before its ping arrived.
    pub(super) fn ack(&mut self, slot: usize, payload: &[u8]) {
        let Ok(upto) = <[u8; 8]>::try_from(payload) else { return };
        if let Some(s) = self.conns.get_mut(slot).and_then(|c| c.session.as_mut()) {
            s.unacked.ack(u64::from_be_bytes(upto));
        }
    }

    /// The heartbeat ping for the connection at `slot`: a recovering client's carries the
    /// position it acknowledges (an edge's is plain: its owner sends those).
    pub(super) fn ping_for(&self, slot: usize) -> Buf {
        match self.conns.get(slot).filter(|c| c.state != State::Edge).and_then(|c| c.session.as_ref()) {
            Some(s) => ack_ping(s.unacked.next()),
            None => self.ping.clone(),
        }
    }

    /// The connection of a recoverable session ended without a close handshake: the session
    /// stays, without its socket, for `recovery_window`. Nobody is told.
    pub(super) fn detach(&mut self, slot: usize) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let st = &self.shared.stats[self.id as usize];
        conn.tls = None;
        let mut ip = None;
        if let Some(mut sock) = conn.sock.take() {
            let _ = self.poll.registry().deregister(&mut sock);
            // Its address keeps counting the session (see `per_ip`).
            let fd = std::os::fd::AsRawFd::as_raw_fd(&sock);
            ip = self.shared.per_ip.as_ref().and_then(|p| p.detach(fd));
            self.shared.connections.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            metrics::sub(&st.connections, 1);
        }
        conn.out = OutQueue::default();
        conn.partial = None;
        conn.frag = None;
        if let Some(s) = conn.session.as_mut() {
            s.detached_since = Some(now);
        }
        metrics::add(&st.recovery_detached_total, 1);
        self.set_state(slot, State::Detached);
        // A shutdown keeping sessions for the next start ends none (that start bounds them).
        let evict = self.shutdown_deadline.is_none();
        self.kept_begin(slot, ip, evict);
    }

    /// The session at `slot` is now kept without a connection (detached, counted as kept by
    /// [`Shard::set_state`]), still counting against its address `ip` (if counted) and
    /// `max_connections`: records the address and its place in the order. `evict`: past this shard's
    /// share of `max_recovery_sessions` the oldest kept session ends, as at `recovery_window`
    /// (not for a session kept only for a moment, about to end or be taken over).
    pub(super) fn kept_begin(&mut self, slot: usize, ip: Option<std::net::IpAddr>, evict: bool) {
        self.kept_next += 1;
        let seq = self.kept_next;
        let Some(conn) = self.conns.get_mut(slot) else { return };
        debug_assert_eq!(conn.state, State::Detached);
        if let Some(s) = conn.session.as_mut() {
            debug_assert!(s.ip.is_none(), "kept once");
            s.ip = ip;
            s.kept_seq = seq;
        }
        self.kept_order.push_back((slot as u32, seq));
        if evict {
            self.evict_oldest_kept();
        }
        // Entries of sessions resumed or ended meanwhile go when they are many.
        if self.kept_order.len() > 2 * self.kept_here() + 64 {
            let conns = &self.conns;
            self.kept_order.retain(|&(slot, seq)| kept_as(conns.get(slot as usize), seq));
        }
    }

    /// Sessions kept here without a connection: the shard's own `recovery_sessions` gauge
    /// (kept by [`Shard::set_state`]).
    pub(super) fn kept_here(&self) -> usize {
        self.stats().recovery_sessions.load(std::sync::atomic::Ordering::Relaxed) as usize
    }

    /// Ends the oldest kept sessions while this shard keeps more than its share of
    /// `max_recovery_sessions`. (Each kept session has one entry with its current `kept_seq`,
    /// so the newest — the one just kept — goes last: it is never its own victim.)
    pub(super) fn evict_oldest_kept(&mut self) {
        let cfg = &self.shared.cfg;
        let share = cfg.max_recovery_sessions.div_ceil(cfg.shards);
        while self.kept_here() > share {
            let Some((slot, seq)) = self.kept_order.pop_front() else { break };
            if kept_as(self.conns.get(slot as usize), seq) {
                metrics::add(&self.stats().recovery_evictions_total, 1);
                if self.log_ok() {
                    tracing::warn!(
                        shard = self.id,
                        share,
                        "max_recovery_sessions reached: the oldest kept session ends"
                    );
                }
                self.on_event(slot as usize, Event::SessionEnds);
            }
        }
    }

    /// A resume request parsed here: hands the socket to the session's shard (through the
    /// hub), or gives a fresh session when the token cannot name a session of this node.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume_request(
        &mut self,
        slot: usize,
        accept: Bytes,
        system: Box<str>,
        token: &str,
        last: Option<Box<str>>,
        ka: bool,
        admit: Admit,
    ) {
        let node = self.shared.cfg.node_id.0;
        let cluster = self.shared.peers;
        let session = recovery::parse_token(token)
            .filter(|(c, _)| c.node != node || (c.conn.shard as usize) < self.shared.stats.len());
        let session = session.filter(|(c, _)| c.node == node || cluster);
        // A session handed over by a stopping node is where the aliases say.
        let routed = session.map(|(c, secret)| (c, self.shared.aliases.route(node, c), secret));
        let (session, secret) = match routed {
            Some((_, crate::aliases::Route::Here(conn), secret)) => (conn, secret),
            Some((c, crate::aliases::Route::Node(_), secret)) => {
                // Another node owns the session: the client stays here, relayed (protocol::relay).
                return self.park(slot, accept, c, secret, system, last, admit);
            }
            Some((_, crate::aliases::Route::Gone, _)) | None => {
                self.refused(Refusal::Unknown);
                return self.connect_client(slot, accept.into(), &system, true, ka, admit);
            }
        };
        // The socket leaves this shard: not a connection of ours any more (still one of the
        // node's: `connections` is unchanged).
        let mut conn = self.remove_conn(slot);
        let Some(mut sock) = conn.sock.take() else { return };
        let _ = self.poll.registry().deregister(&mut sock);
        metrics::sub(&self.stats().connections, 1);
        let r = Box::new(Resume {
            sock,
            accept,
            deflate: conn.deflate,
            tls: conn.tls.take(),
            system,
            session,
            secret,
            last,
            admit,
        });
        match self.send_hub(Command::Resume(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(Command::Resume(r)) | TrySendError::Disconnected(Command::Resume(r))) => {
                // The hub is full: serve it here as a fresh session rather than drop it.
                metrics::add(&self.stats().hub_busy_total, 1);
                self.fresh(*r, None);
            }
            Err(_) => {}
        }
    }

    /// Whether the session `session` of this shard may be resumed with `secret` for `system`
    /// from `last`: the frames to send again, or why not.
    pub(super) fn check_resume(
        &mut self,
        session: ids::ConnId,
        secret: &recovery::Secret,
        system: &str,
        last: Option<&str>,
    ) -> Result<Vec<Buf>, Refusal> {
        let Some(conn) = self.conn_at(session.in_shard()) else { return Err(Refusal::Unknown) };
        let Some(s) = &conn.session else { return Err(Refusal::Unknown) };
        if !matches!(conn.state, State::Client { hub_knows: true } | State::Detached | State::Relayed) {
            return Err(Refusal::Unknown);
        }
        if !recovery::same_secret(&s.secret, secret) {
            return Err(Refusal::BadSecret);
        }
        if &*s.system != system {
            return Err(Refusal::OtherSystem);
        }
        s.unacked.after(last).map(|frames| frames.cloned().collect()).ok_or(Refusal::LastNotHeld)
    }

    /// A resume for a session of this shard ([`crate::msg::ShardMsg::Resume`]).
    pub(super) fn resume_session(&mut self, r: Resume) {
        let slot = r.session.slot as usize;
        match self.check_resume(r.session, &r.secret, &r.system, r.last.as_deref()) {
            Ok(missed) => {
                self.attach(slot, (r.sock, r.deflate, r.tls), r.accept, missed);
                self.shutdown_arrival(slot);
            }
            Err(why) => {
                if why == Refusal::LastNotHeld {
                    // The session's own client moved on: the session ends now (its groups are
                    // told), not at the end of the window.
                    self.on_event(slot, Event::ResumeRefused);
                }
                self.fresh(r, Some(why));
            }
        }
    }

    /// Puts a resumed session's new socket in place of the old one (closing that one if it
    /// still looked open), then sends the 101, the connect frame and the missed frames.
    #[allow(clippy::type_complexity)]
    fn attach(
        &mut self,
        slot: usize,
        (mut sock, deflate, tls): (mio::net::TcpStream, u8, Option<Box<super::tls::TlsConn>>),
        accept: Bytes,
        missed: Vec<Buf>,
    ) {
        // A client connected through another node is taken over too.
        self.unlink(slot, wsp::close::NORMAL, "session taken over");
        if let Err(e) = self.poll.registry().register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!("register failed: {e}");
            self.shared.socket_gone(&sock);
            return;
        }
        let now = self.now();
        self.set_state(slot, State::Client { hub_knows: true });
        let st = &self.shared.stats[self.id as usize];
        let conn = &mut self.conns[slot];
        match conn.sock.replace(sock) {
            // Takeover: the old connection still looked open.
            Some(mut old) => {
                let _ = self.poll.registry().deregister(&mut old);
                self.shared.socket_gone(&old);
                metrics::add(&st.recovery_takeovers_total, 1);
            }
            None => metrics::add(&st.connections, 1),
        }
        metrics::add(&st.recovery_resumed_total, 1);
        conn.deflate = deflate;
        conn.tls = tls;
        conn.out = OutQueue::default();
        conn.partial = None;
        conn.frag = None;
        conn.last_seen = now;
        conn.last_ping = now;
        conn.soft_since = 0;
        let Some(s) = conn.session.as_mut() else { return };
        s.detached_since = None;
        s.secret = recovery::new_secret();
        let here = ids::ConnId { shard: self.id, slot: slot as u32, gen: conn.gen };
        let id = self.shared.aliases.id(self.shared.cfg.node_id.0, here);
        let frame = api::session_frame(&id, &recovery::token(&id, &s.secret), Some(missed.len()));
        self.queue(slot, accept);
        self.queue(slot, frame);
        for f in missed {
            self.queue(slot, f);
        }
    }

    /// A resume that cannot be honoured (`why`; `None`: the hub was busy) gets a new session
    /// on this shard: a new clientId and `"recovered":false`.
    fn fresh(&mut self, r: Resume, why: Option<Refusal>) {
        if let Some(why) = why {
            self.refused(why);
        }
        if let Some(slot) = self.adopt(r.sock, r.tls) {
            self.conns[slot].deflate = r.deflate;
            self.connect_client(slot, r.accept.into(), &r.system, true, false, r.admit);
            self.shutdown_arrival(slot);
        }
    }

    /// A connection that arrived from another shard after this one began its shutdown gets the
    /// shutdown too (it missed [`Shard::start_shutdown`]): closed, or restarted and kept.
    fn shutdown_arrival(&mut self, slot: usize) {
        if self.shutdown_deadline.is_some() && self.conns.contains(slot) {
            self.on_event(slot, Event::Shutdown);
        }
    }

    pub(super) fn refused(&self, why: Refusal) {
        let st = self.stats();
        let c = match why {
            Refusal::Unknown => &st.recovery_refused_unknown_total,
            Refusal::BadSecret => &st.recovery_refused_secret_total,
            Refusal::OtherSystem => &st.recovery_refused_system_total,
            Refusal::LastNotHeld => &st.recovery_refused_last_total,
        };
        metrics::add(c, 1);
    }
}

/// Whether `conn` is a session kept (detached) in its kept period `seq`.
fn kept_as(conn: Option<&super::Conn>, seq: u64) -> bool {
    conn.is_some_and(|c| c.state == State::Detached && c.session.as_ref().is_some_and(|s| s.kept_seq == seq))
}

/// A ping whose payload is the position (in the session's unacknowledged frames) it acknowledges once answered.
fn ack_ping(next: u64) -> Buf {
    Buf::new(wsp::frame(wsp::OP_PING, &next.to_be_bytes()))
}
