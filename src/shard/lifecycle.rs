//! Where a connection changes phase. Every change of [`Conn::state`](super::Conn) to another
//! phase goes through [`Shard::set_state`], and every slot leaves the slab through
//! [`Shard::remove_conn`]: the one place that keeps the per-phase gauges (`ws_clients`,
//! `recovery_edges`, `recovery_relayed`, `recovery_sessions`) and the node's count of kept
//! sessions (`Shared::kept`, and the session's address in `per_ip`). Debug builds check, at
//! each sweep, that every gauge equals the number of connections in its phases
//! ([`Shard::check_gauges`]), so a change made around these two functions fails the tests.
//!
//! What a phase counts in:
//!
//! | phase | `ws_clients` | `recovery_edges` | `recovery_relayed` | `recovery_sessions` (kept) |
//! |---|---|---|---|---|
//! | `Client`, `Echo` | 1 | | | |
//! | `Edge` | 1 | 1 | | |
//! | `Relayed` | | | 1 | |
//! | `Detached` | | | | 1 |
//! | `Http`, `Parked`, `Closing` | | | | |

use std::sync::atomic::Ordering::Relaxed;

use super::conn::{Conn, State};
use super::Shard;
use crate::metrics::{self, ShardStats};

/// The gauges a phase counts in (see the module's table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Counted {
    pub ws: bool,
    pub edge: bool,
    pub relayed: bool,
    pub kept: bool,
}

impl Counted {
    pub fn of(state: State) -> Counted {
        Counted {
            ws: state.is_ws(),
            edge: state == State::Edge,
            relayed: state == State::Relayed,
            kept: state == State::Detached,
        }
    }

    /// Moves the gauges of `st` from `self` to `to`.
    fn shift(self, to: Counted, st: &ShardStats) {
        let pairs = [
            (self.ws, to.ws, &st.ws_clients),
            (self.edge, to.edge, &st.recovery_edges),
            (self.relayed, to.relayed, &st.recovery_relayed),
            (self.kept, to.kept, &st.recovery_sessions),
        ];
        for (was, is, gauge) in pairs {
            match (was, is) {
                (false, true) => metrics::add(gauge, 1),
                (true, false) => metrics::sub(gauge, 1),
                _ => {}
            }
        }
    }
}

impl Shard {
    /// Moves the connection at `slot` to `to`, keeping the gauges. Leaving `Detached` also
    /// stops the session counting as kept (against `max_connections` and its address); entering
    /// it starts that count ([`Shard::kept_begin`] records the order and the address).
    pub(super) fn set_state(&mut self, slot: usize, to: State) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let from = std::mem::replace(&mut conn.state, to);
        self.phase_changed(slot, from, to);
    }

    /// Frees `slot`: its phase's gauges drop as for a move to nothing.
    pub(super) fn remove_conn(&mut self, slot: usize) -> Conn {
        let from = self.conns[slot].state;
        // `Http` counts in no gauge: the move to it is the move to nothing.
        self.phase_changed(slot, from, State::Http { awaiting: false, keep_alive: false });
        self.conns.remove(slot)
    }

    fn phase_changed(&mut self, slot: usize, from: State, to: State) {
        let (was, is) = (Counted::of(from), Counted::of(to));
        was.shift(is, &self.shared.stats[self.id as usize]);
        match (was.kept, is.kept) {
            (false, true) => {
                self.shared.kept.fetch_add(1, Relaxed);
            }
            (true, false) => {
                self.shared.kept.fetch_sub(1, Relaxed);
                let ip = self.conns[slot].session.as_mut().and_then(|s| s.ip.take());
                if let (Some(ip), Some(p)) = (ip, &self.shared.per_ip) {
                    p.end_kept(ip);
                }
            }
            _ => {}
        }
    }

    /// Debug builds: every phase gauge equals the number of this shard's connections in its
    /// phases (the invariant [`Shard::set_state`] keeps).
    pub(super) fn check_gauges(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        let count = |f: fn(Counted) -> bool| self.conns.iter().filter(|(_, c)| f(Counted::of(c.state))).count() as u64;
        let st = self.stats();
        let gauges = [
            ("ws_clients", count(|c| c.ws), &st.ws_clients),
            ("recovery_edges", count(|c| c.edge), &st.recovery_edges),
            ("recovery_relayed", count(|c| c.relayed), &st.recovery_relayed),
            ("recovery_sessions", count(|c| c.kept), &st.recovery_sessions),
        ];
        for (name, n, gauge) in gauges {
            assert_eq!(gauge.load(Relaxed), n, "shard {}: gauge {name} is not the count of its phase", self.id);
        }
    }
}
