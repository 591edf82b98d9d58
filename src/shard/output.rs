//! The shard's output side: queueing shared frames (hard limit), the once-per-turn gathered
//! writes, the half-close of a flushed closing connection, and the hub's lifecycle commands
//! (never lost: a backlog when its queue is full). Closing itself is the lifecycle's
//! (`lifecycle::apply`).

use crossbeam_channel::TrySendError;

use super::conn::FRAME_COST;
use super::lifecycle::react::Event;
use super::{Buf, Shard, State};
use crate::metrics;
use crate::msg::{Command, Target};

impl Shard {
    /// Queues `frame` for `slot`, enforcing the hard output limit (invariant 4).
    pub(super) fn queue(&mut self, slot: usize, frame: impl Into<Buf>) {
        let frame: Buf = frame.into();
        let hard = self.shared.cfg.output_hard_limit;
        let Some(conn) = self.conns.get_mut(slot) else { return };
        match conn.state {
            State::Closing { .. } | State::Detached | State::Parked { .. } => return,
            State::Relayed => return self.relay_frame(slot, &frame),
            _ => {}
        }
        if conn.state.is_ws() && conn.out.cost() + frame.len() + FRAME_COST > hard && !conn.out.is_empty() {
            let queued = conn.out.cost();
            metrics::add(&self.stats().slow_consumer_closes_total, 1);
            if self.log_ok() {
                tracing::info!(shard = self.id, slot, queued, "slow consumer: output hard limit reached, closing 1008");
            }
            return self.on_event(slot, Event::SlowConsumer);
        }
        conn.out.push_shared(frame);
        self.queued_frames += 1;
        self.mark_dirty(slot);
    }

    pub(super) fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            let tls_out = c.tls.as_ref().is_some_and(|t| t.has_output());
            if !c.dirty && (!c.out.is_empty() || tls_out || c.state.is_closing()) {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Writes every connection with pending output once (`writev`), then closes what is done.
    pub(super) fn flush_dirty(&mut self) {
        self.flush_connects();
        let stats = &self.shared.stats[self.id as usize];
        metrics::add(&stats.frames_queued_total, std::mem::take(&mut self.queued_frames));
        metrics::add(&stats.messages_queued_total, std::mem::take(&mut self.queued_messages));
        let mut dirty = std::mem::take(&mut self.dirty);
        for (i, &slot) in dirty.iter().enumerate() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.dirty = false;
                self.flush_one(slot);
            }
            // A long flush (a broadcast to thousands) must not hold back API answers.
            if i % 32 == 31 {
                self.drain_replies();
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// One gathered write of `slot`'s queue; schedules the close of a finished connection.
    /// Used by the end-of-turn flush, and at once for API answers: a caller waiting for its
    /// answer should not wait behind a broadcast's writes (it sends its next request sooner,
    /// so more messages share each later `writev`).
    pub(super) fn flush_one(&mut self, slot: usize) {
        // Invariant 8: no connect frame before its Connect is with the hub.
        self.flush_connects();
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let me = Target { slot: slot as u32, gen: conn.gen };
        if conn.tls.is_some() {
            if self.write_tls(slot).is_err() {
                self.to_close.push(me);
                return;
            }
        } else {
            let Some(sock) = conn.sock.as_mut() else { return };
            match conn.out.write_to(sock) {
                Ok((bytes, calls)) => {
                    let st = &self.shared.stats[self.id as usize];
                    metrics::add(&st.bytes_written_total, bytes as u64);
                    metrics::add(&st.writev_calls_total, calls as u64);
                }
                Err(_) => {
                    self.to_close.push(me);
                    return;
                }
            }
        }
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.deferred_read && matches!(conn.state, State::Http { awaiting: false, .. }) && !conn.read_queued {
            conn.read_queued = true;
            self.read_again.push(slot);
        }
        if conn.out.is_empty() && !conn.tls.as_ref().is_some_and(|t| t.has_output()) {
            match conn.state {
                State::Http { awaiting: false, keep_alive: false } => self.to_close.push(me),
                State::Closing { .. } if !conn.write_shut => {
                    // Everything (close frame last) is out: half-close and wait for the
                    // peer's FIN (read side) until the grace period ends.
                    if let Some(sock) = conn.sock.as_mut() {
                        let _ = sock.shutdown(std::net::Shutdown::Write);
                    }
                    conn.write_shut = true;
                }
                _ => {}
            }
        }
    }

    /// Drops the connections marked this turn that are still the ones marked (regression:
    /// a slot closed and reused within one turn used to lose its new connection here).
    pub(super) fn close_marked(&mut self) {
        while let Some(t) = self.to_close.pop() {
            if self.conn_at(t).is_some() {
                self.on_event(t.slot as usize, Event::SocketLost);
            }
        }
    }

    /// Sends a command that must not be lost: queued locally if the hub is full.
    pub(super) fn tell_hub_lifecycle(&mut self, cmd: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(cmd);
            return;
        }
        match self.send_hub(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => self.backlog.push_back(cmd),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(super) fn flush_backlog(&mut self) {
        while let Some(cmd) = self.backlog.pop_front() {
            match self.send_hub(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    self.backlog.push_front(cmd);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }
}
