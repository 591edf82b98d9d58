//! The shard's way to the hub. Every command goes through [`Shard::send_hub`] (or the
//! lifecycle backlog behind it), so this shard's commands reach the hub in the order the
//! shard decided them.
//!
//! Connects are batched: a client the shard welcomes itself (single node, a system the hub
//! confirmed) waits in `pending_connects` until the end of the loop turn, and the turn's
//! connects cross to the hub as one [`Command::ConnectMany`] — one hand-over between
//! threads for a burst of connections instead of one each (A/B, 9 rounds each way: hub CPU
//! per connection 0.78 → 0.58 µs, server CPU 0.96–0.97×). The batch leaves before anything
//! else: before any other command (order) and before any socket is written (invariant 8:
//! a connect frame is written only after its Connect is in the hub's queue).

use crossbeam_channel::TrySendError;

use super::{Shard, State};
use crate::ids::ConnId;
use crate::metrics;
use crate::msg::{Command, SystemRef};
use crate::protocol::api;

impl Shard {
    /// Queues `cmd` for the hub after this turn's pending connects. (crossbeam's `try_send`
    /// signature: a caller takes its command back when the queue is full.)
    #[allow(clippy::result_large_err)]
    pub(super) fn send_hub(&mut self, cmd: Command) -> Result<(), TrySendError<Command>> {
        self.flush_connects();
        self.hub.try_send(cmd)
    }

    /// A client welcomed by this shard: its Connect leaves with the turn's others.
    pub(super) fn connect_later(&mut self, conn: ConnId, system: u32) {
        self.pending_connects.push((conn, system));
    }

    /// Hands this turn's connects to the hub. If its queue is full they are refused: their
    /// 101 and connect frame have not been written (nothing is before this), so each gets a
    /// 503 instead, as a single connect does.
    pub(super) fn flush_connects(&mut self) {
        let cmd = match self.pending_connects.len() {
            0 => return,
            // One needs no allocation.
            1 => {
                let (conn, i) = self.pending_connects.pop().expect("one");
                Command::Connect { conn, system: SystemRef::Index(i), welcomed: true, grant: None }
            }
            _ => Command::ConnectMany(std::mem::take(&mut self.pending_connects)),
        };
        match self.hub.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(c) | TrySendError::Disconnected(c)) => match c {
                Command::Connect { conn, .. } => self.refuse_unsent(conn),
                Command::ConnectMany(conns) => conns.into_iter().for_each(|(conn, _)| self.refuse_unsent(conn)),
                _ => unreachable!("only connects are batched"),
            },
        }
    }

    /// A welcomed client whose Connect the hub could not take: its unsent output (the 101 and
    /// connect frame) is dropped and it gets an HTTP 503 instead.
    fn refuse_unsent(&mut self, conn: ConnId) {
        let slot = conn.slot as usize;
        let Some(c) = self.conns.get_mut(slot).filter(|c| c.gen == conn.gen) else { return };
        if !matches!(c.state, State::Client { hub_knows: true }) {
            return;
        }
        c.out = Default::default();
        c.session = None;
        self.set_state(slot, State::Http { keep_alive: false, awaiting: false });
        self.refuse_hub_busy(slot, false);
    }

    /// The 503 of a connect the hub's queue had no room for.
    pub(super) fn refuse_hub_busy(&mut self, slot: usize, keep_alive: bool) {
        metrics::add(&self.stats().hub_busy_total, 1);
        self.respond(slot, 503, &api::err_body("server busy: the hub queue is full, retry later"), keep_alive);
    }
}
