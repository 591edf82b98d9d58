//! Where the shard applies what [`react`](super::react) decided: the IO side of the event
//! side. [`Shard::on_event`] is the one entry for every event that may end, close or detach a
//! connection; the primitives below do one thing each (the gauges move in
//! [`Shard::set_state`] / [`Shard::remove_conn`], as everywhere).

use super::react::{react, Action, Event, Phase};
use crate::metrics;
use crate::msg::Command;
use crate::protocol::relay;
use crate::protocol::ws as wsp;
use crate::shard::{CloseKind, Shard, State, CLOSE_GRACE_MS};
use crate::webhooks::Gone;

/// The phases whose client the hub knows: leaving them it must hear of (`Disconnected`).
fn hub_knew(state: State) -> bool {
    matches!(state, State::Client { hub_knows: true } | State::Detached | State::Relayed)
}

impl Shard {
    /// Something happened to the connection at `slot`: does what [`react`] says, in order.
    pub(in crate::shard) fn on_event(&mut self, slot: usize, event: Event) {
        let Some(phase) = self.phase(slot) else { return };
        for action in react(phase, event).into_iter().flatten() {
            // Only `Free` ends a slot, and it is always the last action.
            debug_assert!(self.conns.contains(slot), "slot {slot}: {action:?} after the slot was freed");
            self.apply(slot, action);
        }
    }

    fn phase(&self, slot: usize) -> Option<Phase> {
        let c = self.conns.get(slot)?;
        let owes = match c.state {
            State::Http { awaiting, .. } => awaiting || !c.out.is_empty(),
            _ => false,
        };
        let shutting_down = self.shutdown_deadline.is_some();
        let keeps_sessions = self.keeps_sessions;
        Some(Phase { state: c.state, recoverable: c.session.is_some(), owes, shutting_down, keeps_sessions })
    }

    fn apply(&mut self, slot: usize, action: Action) {
        match action {
            Action::Detach => self.detach(slot),
            Action::Close { code, reason, drop_output, tell } => self.close_ws(slot, code, &reason, drop_output, tell),
            Action::Free { tell } => self.free(slot, tell),
            Action::OwnerKeeps => self.edge_event(slot, relay::Event::Dropped),
            Action::OwnerEnds => self.edge_event(slot, relay::Event::Closed),
            Action::EdgeCloses { code, reason } => self.edge_closes(slot, code, reason),
            Action::CutRelay => {
                if let Some(s) = self.conns[slot].session.as_mut() {
                    s.relay = None;
                }
            }
            Action::Unpark(why) => self.unpark(slot, why),
            Action::FinishHttp => {
                if let State::Http { awaiting, .. } = self.conns[slot].state {
                    self.set_state(slot, State::Http { awaiting, keep_alive: false });
                    self.mark_dirty(slot);
                }
            }
            Action::EndSession => self.conns[slot].session = None,
            Action::Restart => self.restart(slot),
        }
    }

    /// Starts a WebSocket close: (optionally) drops unsent output, queues a close frame, tells
    /// the hub the client is gone (`tell`, if it knew it), and waits for the flush (bounded by
    /// a grace period).
    fn close_ws(&mut self, slot: usize, code: u16, reason: &str, drop_output: bool, tell: Option<Gone>) {
        let until = self.now().wrapping_add(CLOSE_GRACE_MS);
        let conn = &mut self.conns[slot];
        debug_assert!(!conn.state.is_closing(), "slot {slot} closed twice");
        let was = conn.state;
        if drop_output {
            conn.out.drop_unstarted();
        }
        conn.out.push(wsp::close_frame(code, reason));
        conn.partial = None;
        conn.frag = None;
        self.set_state(slot, State::Closing { until, kind: CloseKind::WebSocket });
        if let Some(why) = tell {
            self.tell_left(slot, was, why);
        }
        self.mark_dirty(slot);
    }

    /// Frees `slot` now (its socket, if any, closed): the hub hears `tell` if it knew the
    /// client and the connection was not closing (a close told it already).
    fn free(&mut self, slot: usize, tell: Option<Gone>) {
        let was = self.conns[slot].state;
        if let Some(why) = tell.filter(|_| !was.is_closing()) {
            self.tell_left(slot, was, why);
        }
        let mut conn = self.remove_conn(slot);
        if let Some(sock) = conn.sock.as_mut() {
            // Closing the socket (its only descriptor) takes it out of epoll: no
            // EPOLL_CTL_DEL syscall on Linux.
            #[cfg(not(target_os = "linux"))]
            let _ = self.poll.registry().deregister(sock);
            self.shared.socket_gone(sock);
            metrics::sub(&self.stats().connections, 1);
        }
    }

    /// A connection left phase `was`: the hub is told (`why`) if it knew of the client.
    fn tell_left(&mut self, slot: usize, was: State, why: Gone) {
        if hub_knew(was) {
            let conn = self.conn_id(slot);
            self.tell_hub_lifecycle(Command::Disconnected { conn, why });
        }
    }

    /// An HTTP connection whose last response is queued: input is discarded from now on, and
    /// once the response is out the write side is shut and the peer's FIN awaited (bounded
    /// by the grace period), so closing never resets a response the peer has not read.
    pub(in crate::shard) fn linger(&mut self, slot: usize) {
        let until = self.now().wrapping_add(CLOSE_GRACE_MS);
        let Some(conn) = self.conns.get_mut(slot) else { return };
        debug_assert!(matches!(conn.state, State::Http { awaiting: false, .. }));
        conn.partial = None;
        self.set_state(slot, State::Closing { until, kind: CloseKind::Http });
        self.mark_dirty(slot);
    }
}
