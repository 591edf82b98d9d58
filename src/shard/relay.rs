//! Cluster mode: a session resumed through another node (`protocol::relay` has the picture).
//! This node is the *edge* of a client whose session another node owns (`State::Parked { .. }`, then
//! `State::Edge`), or the *owner* of a session whose client is connected elsewhere
//! (`State::Relayed`). The hub and broker only carry the messages.

use bytes::Bytes;

use super::lifecycle::react::Event as LifeEvent;
use super::{Buf, OutQueue, Shard, State};
use crate::auth::Admit;
use crate::ids::{self, ClientRef, ConnId};
use crate::metrics;
use crate::msg::Command;
use crate::protocol::api;
use crate::protocol::relay::{Event, Msg, Resumed};
use crate::protocol::ws::close;
use crate::recovery::{self, Peer, Refusal, Relay, Secret, Session};

/// How long an edge waits for the owner's answer to a resume.
const PARK_MS: u32 = 5_000;

impl Shard {
    fn node(&self) -> u32 {
        self.shared.cfg.node_id.0
    }

    /// Sends a relay message to `node` through the hub (in order with everything this shard
    /// tells the hub; never lost here).
    fn tell_node(&mut self, node: u32, m: &Msg) {
        let payload = crate::protocol::relay::encode(m);
        self.tell_hub_lifecycle(Command::ToNode { node, from_shard: self.id, payload });
    }

    /// The edge at `slot`: where its session is. The edge keeps the session's clientId (its
    /// node and connection there); this is where that routes now (`crate::aliases`: the node
    /// it names, or the node it was handed to).
    fn owner(&self, slot: usize) -> Option<Peer> {
        let p = self.conns.get(slot)?.session.as_ref()?.relay?.owner()?;
        let node = self.shared.aliases.node_of(self.node(), ids::ClientRef { node: p.node, conn: p.conn });
        Some(Peer { node, ..p })
    }

    /// The relayed session at `slot`: where its client is.
    fn edge(&self, slot: usize) -> Option<Peer> {
        self.conns.get(slot)?.session.as_ref()?.relay?.edge()
    }

    // ---- edge side ------------------------------------------------------------------------

    /// A resume whose session another node owns: the connection waits here (nothing sent
    /// yet) while the owner checks it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn park(
        &mut self,
        slot: usize,
        accept: Bytes,
        owner: ClientRef,
        secret: Secret,
        system: Box<str>,
        last: Option<Box<str>>,
        admit: Admit,
    ) {
        let now = self.now();
        let edge = self.conn_id(slot);
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let mut s = Session::new(system.clone());
        s.relay = Some(Relay::ToOwner(Peer { node: owner.node, conn: owner.conn }));
        s.accept = Some(accept);
        s.admit = admit;
        conn.session = Some(Box::new(s));
        self.set_state(slot, State::Parked { until: now.wrapping_add(PARK_MS) });
        let origin = self.node();
        let Some(to) = self.owner(slot) else { return };
        self.tell_node(to.node, &Msg::ResumeReq { origin, edge, session: owner.conn, secret, system, last });
    }

    /// The owner answered a parked resume.
    fn resume_answer(&mut self, edge: ConnId, result: Result<Resumed, Refusal>) {
        let slot = edge.slot as usize;
        let parked = self.conn_at(edge.in_shard()).is_some_and(|c| c.state.is_parked());
        if !parked {
            // Gone meanwhile: the owner keeps the session detached.
            if let (Ok(_), Some(owner)) = (&result, self.owner(slot)) {
                let m = Msg::Event { session: owner.conn, edge, event: Event::Dropped };
                self.tell_node(owner.node, &m);
            }
            return;
        }
        match result {
            Ok(r) => {
                metrics::add(&self.stats().recovery_resumed_total, 1);
                self.set_state(slot, State::Edge);
                let conn = &mut self.conns[slot];
                let accept = conn.session.as_mut().and_then(|s| s.accept.take()).unwrap_or_default();
                self.queue(slot, accept);
                self.queue(slot, api::session_frame(&r.client_id, &r.token, Some(r.missed.len())));
                for f in r.missed {
                    self.queue(slot, f);
                }
            }
            Err(why) => self.on_event(slot, LifeEvent::OwnerRefused(why)),
        }
    }

    /// A parked resume that cannot go on (refused, no answer, owner gone) gets a fresh
    /// session here. (The lifecycle tells the owner first, if it is there, in case it took the
    /// session after all: a late answer.)
    pub(super) fn unpark(&mut self, slot: usize, why: Option<Refusal>) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let Some(mut s) = conn.session.take() else { return };
        self.set_state(slot, State::Http { awaiting: false, keep_alive: false });
        self.refused(why.unwrap_or(Refusal::Unknown));
        let accept = s.accept.take().unwrap_or_default();
        let admit = std::mem::replace(&mut s.admit, Admit::Open);
        self.connect_client(slot, accept.into(), &s.system, true, false, admit);
    }

    /// What the client of an edge did, for its owner. `Dropped`/`Closed` also end the edge's
    /// tie (nothing more is told).
    pub(super) fn edge_event(&mut self, slot: usize, event: Event) {
        let edge = self.conn_id(slot);
        let Some(owner) = self.owner(slot) else { return };
        if matches!(event, Event::Dropped | Event::Closed) {
            if let Some(s) = self.conns[slot].session.as_mut() {
                s.relay = None;
            }
        }
        self.tell_node(owner.node, &Msg::Event { session: owner.conn, edge, event });
    }

    // ---- owner side -----------------------------------------------------------------------

    /// A resume through another node for a session of this shard.
    #[allow(clippy::too_many_arguments)]
    fn remote_resume(
        &mut self,
        origin: u32,
        edge: ConnId,
        session: ConnId,
        secret: Secret,
        system: Box<str>,
        last: Option<Box<str>>,
    ) {
        let slot = session.slot as usize;
        let verdict = self.check_resume(session, &secret, &system, last.as_deref());
        let result = match verdict {
            Ok(missed) => {
                self.unlink(slot, close::NORMAL, "session taken over");
                let (id, token) = self.relay_to(slot, Peer { node: origin, conn: edge });
                let missed = missed.into_iter().map(|f| (*f).clone()).collect();
                Ok(Resumed { client_id: id.into(), token: token.into(), missed })
            }
            Err(why) => {
                if why == Refusal::LastNotHeld {
                    self.on_event(slot, LifeEvent::ResumeRefused);
                }
                self.refused(why);
                Err(why)
            }
        };
        self.tell_node(origin, &Msg::ResumeAns { edge, result });
    }

    /// The session at `slot` now has its client at `edge`: its frames go there.
    fn relay_to(&mut self, slot: usize, edge: Peer) -> (String, String) {
        let now = self.now();
        let node = self.node();
        self.set_state(slot, State::Relayed);
        let st = &self.shared.stats[self.id as usize];
        let conn = &mut self.conns[slot];
        conn.tls = None;
        if let Some(mut sock) = conn.sock.take() {
            let _ = self.poll.registry().deregister(&mut sock);
            self.shared.socket_gone(&sock);
            metrics::sub(&st.connections, 1);
            metrics::add(&st.recovery_takeovers_total, 1);
        }
        metrics::add(&st.recovery_resumed_total, 1);
        conn.out = OutQueue::default();
        conn.partial = None;
        conn.frag = None;
        conn.last_ping = now;
        let id = self.shared.aliases.id(node, ids::ConnId { shard: self.id, slot: slot as u32, gen: conn.gen });
        let Some(s) = conn.session.as_mut() else { return (id, String::new()) };
        s.detached_since = None;
        s.relay = Some(Relay::ToEdge(edge));
        s.secret = recovery::new_secret();
        let token = recovery::token(&id, &s.secret);
        (id, token)
    }

    /// If the session at `slot` is relayed to an edge, tells that edge to close (a takeover,
    /// `close_client`, a shutdown) with `code` and `reason`, and forgets it.
    pub(super) fn unlink(&mut self, slot: usize, code: u16, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.state != State::Relayed {
            return;
        }
        let Some(edge) = conn.session.as_mut().and_then(|s| s.relay.take()).and_then(Relay::edge) else { return };
        self.set_state(slot, State::Detached);
        // Its client was another node's socket: no address of ours to count it against.
        // Kept for a moment only: every caller ends it or takes it over next.
        self.kept_begin(slot, None, false);
        self.tell_node(edge.node, &Msg::EdgeClose { edge: edge.conn, code, reason: reason.into() });
    }

    /// The relayed session at `slot` forgets its edge and tells it to close with `code`.
    pub(super) fn edge_closes(&mut self, slot: usize, code: u16, reason: &str) {
        let relay = self.conns[slot].session.as_mut().and_then(|s| s.relay.take());
        if let Some(edge) = relay.and_then(Relay::edge) {
            self.tell_node(edge.node, &Msg::EdgeClose { edge: edge.conn, code, reason: reason.into() });
        }
    }

    /// A frame for a relayed session goes to its edge.
    pub(super) fn relay_frame(&mut self, slot: usize, frame: &Buf) {
        if let Some(edge) = self.edge(slot) {
            self.tell_node(edge.node, &Msg::Frame { edge: edge.conn, frame: (**frame).clone() });
        }
    }

    /// What the client of a relayed session did, from its edge.
    fn edge_said(&mut self, session: ConnId, edge: ConnId, event: Event) {
        let slot = session.slot as usize;
        let current = self.conn_at(session.in_shard()).is_some_and(|c| {
            c.state == State::Relayed
                && c.session.as_ref().and_then(|s| s.relay).and_then(Relay::edge).map(|l| l.conn) == Some(edge)
        });
        if !current {
            return; // an edge replaced by a takeover
        }
        match event {
            Event::Ack(n) => self.ack(slot, &n.to_be_bytes()),
            Event::Publish(text) => self.client_command(slot, &text),
            Event::Dropped => self.on_event(slot, LifeEvent::EdgeDropped),
            Event::Closed => self.on_event(slot, LifeEvent::EdgeClosed),
        }
    }

    // ---- both -----------------------------------------------------------------------------

    /// A relay message for this shard.
    pub(super) fn node_said(&mut self, m: Msg) {
        match m {
            Msg::ResumeReq { origin, edge, session, secret, system, last } => {
                self.remote_resume(origin, edge, session, secret, system, last)
            }
            Msg::ResumeAns { edge, result } => self.resume_answer(edge, result),
            Msg::Frame { edge, frame } => {
                if self.conn_at(edge.in_shard()).is_some_and(|c| c.state == State::Edge) {
                    self.queue(edge.slot as usize, frame);
                }
            }
            Msg::Event { session, edge, event } => self.edge_said(session, edge, event),
            Msg::EdgeClose { edge, code, reason } => {
                if self.conn_at(edge.in_shard()).is_some() {
                    self.on_event(edge.slot as usize, LifeEvent::OwnerClosed { code, reason });
                }
            }
        }
    }

    /// `node` is gone (or was never reachable): edges it owned close, sessions relayed to it
    /// are kept detached, resumes parked for it get fresh sessions.
    pub(super) fn node_gone(&mut self, node: u32) {
        // An edge's owner is where its clientId routes now (`owner`), not the node it names.
        let hit: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| c.session.as_ref().and_then(|s| s.relay).is_some())
            .map(|(k, _)| k)
            .filter(|&k| self.owner(k).or_else(|| self.edge(k)).is_some_and(|p| p.node == node))
            .collect();
        for slot in hit {
            self.on_event(slot, LifeEvent::PeerNodeGone);
        }
    }
}
