//! What the hub sends a shard: deliveries, API answers (on their own channel), welcomes,
//! closes and shutdown.

use super::{Buf, Shard, State, HUB_MSGS_PER_TURN};
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
                ShardMsg::Deliver { frame, targets } => {
                    let frame = Buf::new(frame);
                    for &t in targets.iter() {
                        self.deliver(t, &frame);
                    }
                }
                ShardMsg::DeliverOne { target, frame } => self.deliver(target, &Buf::new(frame)),
                ShardMsg::Welcome { to, result } => self.welcome(to, result),
                ShardMsg::Close { target, code, reason } => {
                    if let Some(conn) = self.conn_at(target) {
                        // The hub already removed the client: no Disconnected needed.
                        if let State::Client { hub_knows } = &mut conn.state {
                            *hub_knows = false;
                        }
                        self.begin_close(target.slot as usize, code, reason, false);
                    }
                }
                ShardMsg::Shutdown => self.start_shutdown(),
            }
        }
    }

    /// Answers every API call the hub has answered (written at once, see `api_reply`).
    pub(super) fn drain_replies(&mut self) {
        while let Ok(Reply { to, status, body, known_system }) = self.replies.try_recv() {
            if let Some(s) = known_system {
                self.known_systems.insert(s);
            }
            self.api_reply(to, status, body);
        }
    }

    pub(super) fn deliver(&mut self, t: Target, frame: &Buf) {
        if let Some(conn) = self.conn_at(t) {
            if matches!(conn.state, State::Client { hub_knows: true }) {
                self.queue(t.slot as usize, frame.clone());
            }
        }
    }
}
