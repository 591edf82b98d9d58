//! What the hub sends a shard: deliveries, API answers (on their own channel), welcomes,
//! closes and shutdown.

use super::lifecycle::react::Event;
use super::zip::Outgoing;
use super::{Shard, State, HUB_MSGS_PER_TURN};
use crate::metrics;
use crate::msg::{Reply, ShardMsg, Target};

impl Shard {
    /// Handles what the hub sent, at most [`HUB_MSGS_PER_TURN`] messages (the loop comes
    /// straight back when more are waiting).
    pub(super) fn drain_hub(&mut self) {
        self.flush_backlog();
        self.drain_replies();
        for _ in 0..HUB_MSGS_PER_TURN {
            let Ok(msg) = self.rx.try_recv() else { break };
            match msg {
                ShardMsg::Deliver { frame, zipped, targets } => {
                    let mut out = Outgoing::new(frame, zipped);
                    for &t in targets.iter() {
                        self.deliver(t, &mut out);
                    }
                }
                ShardMsg::DeliverOne { target, frame, zipped } => {
                    self.deliver(target, &mut Outgoing::new(frame, zipped))
                }
                ShardMsg::Tell { target, frame } => {
                    if let Some(conn) = self.conn_at(target) {
                        if matches!(conn.state, State::Client { hub_knows: true } | State::Relayed) {
                            self.queue(target.slot as usize, frame);
                        }
                    }
                }
                ShardMsg::FromNode(m) if self.handing_off() => self.bounce(m),
                ShardMsg::FromNode(m) => self.node_said(m),
                ShardMsg::NodeGone(node) => self.node_gone(node),
                ShardMsg::Resume(r) => self.resume_session(*r),
                ShardMsg::Welcome { to, result, system } => self.welcome(to, result, system),
                ShardMsg::Close { target, code, reason } => {
                    // close_client: the hub has removed the client already. A session without
                    // a connection here simply ends (its edge closing, if any).
                    if self.conn_at(target).is_some() {
                        self.on_event(target.slot as usize, Event::Kicked { code, reason });
                    }
                }
                ShardMsg::Lost { targets } => {
                    for t in targets.iter() {
                        self.lose(*t);
                    }
                }
                ShardMsg::LostAll => {
                    let all: Vec<Target> =
                        self.conns.iter().map(|(slot, c)| Target { slot: slot as u32, gen: c.gen }).collect();
                    for t in all {
                        self.lose(t);
                        self.relay_lost(t);
                    }
                }
                ShardMsg::RelayLost(t) => self.relay_lost(t),
                ShardMsg::Shutdown => self.start_shutdown(),
                ShardMsg::HandOver => self.hand_over_sessions(),
                ShardMsg::Adopt { from, sessions } => self.adopt_sessions(from, sessions),
            }
        }
    }

    /// Answers every API call the hub has answered (written at once, see `api_reply`).
    pub(super) fn drain_replies(&mut self) {
        while let Ok(Reply { to, status, body, known_system }) = self.replies.try_recv() {
            if let Some((name, index)) = known_system {
                debug_assert!(!self.shared.peers, "cluster mode never answers sends in the shard");
                self.known_systems.insert(name, index);
            }
            self.api_reply(to, status, body);
        }
    }

    /// A push frame for a client: queued (in the form it negotiated: see `zip`), and kept
    /// (plain) in its unacknowledged frames if it opted in to session recovery (only kept, while its
    /// session is detached).
    pub(super) fn deliver(&mut self, t: Target, out: &mut Outgoing) {
        let Some(conn) = self.conn_at(t) else { return };
        let slot = t.slot as usize;
        let deflate = conn.deflate;
        match (conn.state, conn.session.is_some()) {
            (State::Client { hub_knows: true }, false) => {
                let f = self.form_for(deflate, out);
                self.queued_messages += 1;
                self.queue(slot, f)
            }
            (State::Client { hub_knows: true }, true) if self.record(slot, &out.plain) => {
                let f = self.form_for(deflate, out);
                self.queued_messages += 1;
                self.queue(slot, f)
            }
            (State::Detached, _) => {
                self.record(slot, &out.plain);
            }
            (State::Relayed, _) if self.record(slot, &out.plain) => self.relay_frame(slot, &out.plain),
            _ => {}
        }
    }

    /// A frame for the session at `t` may have been lost on the way from Redis: its unacknowledged frames
    /// can no longer complete a resume from before now (`recovery::Unacked::lose`).
    fn lose(&mut self, t: Target) {
        let Some(s) = self.conn_at(t).and_then(|c| c.session.as_mut()) else { return };
        s.unacked.lose();
        metrics::add(&self.stats().recovery_losses_total, 1);
    }

    /// A relay message for the connection at `t` was lost: an edge (or a parked resume) is
    /// dropped as on a network loss, so its client resumes through any node and gets what it
    /// missed from the owner; an owner tells its edge to close (1012) and keeps the session
    /// detached, as when its edge reports a drop.
    fn relay_lost(&mut self, t: Target) {
        if self.conn_at(t).is_some() {
            self.on_event(t.slot as usize, Event::RelayLost);
        }
    }
}
