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
//!
//! The moves ([`legal`], checked by [`Shard::set_state`] in debug builds, so a move the table
//! does not know fails every test that makes it):
//!
//! | from | to |
//! |---|---|
//! | `Http` | `Client`, `Echo` (upgraded), `Parked` (a resume for another node's session), `Http` (a request's own flags), `Closing` |
//! | `Client` | `Client` (the hub told or not), `Detached` (a blip), `Relayed` (resumed through another node), `Http` (a 503 instead of the 101 the hub could not take), `Closing` |
//! | `Echo`, `Edge` | `Closing` |
//! | `Parked` | `Edge` (the owner answered), `Http` (a fresh session here), `Closing` |
//! | `Relayed` | `Detached` (the edge dropped or went, a takeover, its node gone) |
//! | `Detached` | `Client` (resumed here), `Relayed` (resumed through another node) |
//! | `Closing` | — (only out of the slab) |
//!
//! The clocks: [`due`] says, for one connection and `now`, what its phase's deadlines make
//! due (a ping, an idle close, a lapsed session…) — pure, driven by a fake clock in its unit
//! tests; the sweep applies what it returns.
//!
//! The events: [`react`] says what an event (a socket lost, a close from the client, a hub or
//! relay message, a shutdown…) does to a connection in its phase — pure, its table in its
//! module docs, unit-tested in every phase; [`Shard::on_event`](apply) applies the actions it
//! returns, and is the one way a connection ends, closes or detaches.

mod apply;
pub(super) mod react;

use std::sync::atomic::Ordering::Relaxed;

use super::conn::{Conn, State};
use super::Shard;
use crate::config::{loop_ms, Config};
use crate::metrics::{self, ShardStats};

/// The sweep's bounds, in shard-clock milliseconds.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub ping_ms: u32,
    pub idle_ms: u32,
    pub request_ms: u32,
    pub tls_ms: u32,
    pub window_ms: u32,
    pub soft_ms: u32,
    /// `output_soft_limit`, bytes as output limits count them.
    pub soft: usize,
}

impl Bounds {
    pub fn of(cfg: &Config) -> Bounds {
        Bounds {
            ping_ms: loop_ms(cfg.ping_interval),
            idle_ms: loop_ms(cfg.idle_timeout),
            request_ms: loop_ms(cfg.request_timeout),
            tls_ms: loop_ms(cfg.tls_handshake_timeout),
            window_ms: loop_ms(cfg.recovery_window),
            soft_ms: loop_ms(cfg.output_soft_seconds),
            soft: cfg.output_soft_limit,
        }
    }
}

/// What a connection's deadlines make due at a sweep, in the order the sweep applies them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Due {
    /// A parked resume got no answer in time: a fresh session here.
    ParkTimeout,
    /// Dropped now: a closing connection past its grace, or an idle HTTP connection.
    Drop,
    /// A detached session past `recovery_window`: it ends.
    SessionLapsed,
    /// An API call with no answer within `request_timeout`: 503.
    Unanswered,
    /// A TLS handshake not done within `tls_handshake_timeout`: dropped.
    TlsStalled,
    /// An HTTP request not complete within `request_timeout`: 408.
    RequestTimeout,
    /// A WebSocket client silent for `idle_timeout`.
    Idle,
    /// Output over the soft limit for `output_soft_seconds`: 1008.
    SlowConsumer,
    /// A heartbeat ping (`last_ping` is set to now).
    Ping,
}

/// Milliseconds on the shard clock from the stamp `t` to `now`. Stamps that must not be 0 (0
/// means "none") are taken as `now | 1`, which is up to 1 ms *ahead* of `now`: read plainly
/// with `wrapping_sub` such a stamp looked ~49 days old, so a request stamped in the same
/// millisecond as a sweep timed out at once (408, or 503 for an API call waiting for its
/// answer) and a client just over the soft output limit was closed as a slow consumer.
pub(super) fn elapsed(now: u32, t: u32) -> u32 {
    (now.wrapping_sub(t) as i32).max(0) as u32
}

/// A deadline stamp reached at `now`.
fn reached(now: u32, until: u32) -> bool {
    (now.wrapping_sub(until) as i32) >= 0
}

/// What is due for `c` at `now` (at most one thing). Keeps the connection's own clocks: the
/// soft-limit stamp starts and clears here, and a due ping sets `last_ping`.
pub(super) fn due(c: &mut Conn, now: u32, b: &Bounds) -> Option<Due> {
    let silent = now.wrapping_sub(c.last_seen);
    let ping = |c: &mut Conn| {
        (now.wrapping_sub(c.last_ping) >= b.ping_ms).then(|| {
            c.last_ping = now;
            Due::Ping
        })
    };
    match c.state {
        State::Detached => {
            let since = c.session.as_ref().and_then(|s| s.detached_since).unwrap_or(now);
            (now.wrapping_sub(since) > b.window_ms).then_some(Due::SessionLapsed)
        }
        State::Parked { until } => reached(now, until).then_some(Due::ParkTimeout),
        // A relayed session's pings (which carry its acknowledgements) go to its edge.
        State::Relayed => ping(c),
        State::Closing { until, .. } => reached(now, until).then_some(Due::Drop),
        State::Http { awaiting: true, .. } => {
            // Its answer is due within request_timeout of the call.
            (c.req_since != 0 && elapsed(now, c.req_since) > b.request_ms).then_some(Due::Unanswered)
        }
        State::Http { awaiting: false, .. } => match c.tls.as_ref().filter(|t| !t.ready) {
            Some(t) => (now.wrapping_sub(t.since) > b.tls_ms).then_some(Due::TlsStalled),
            None if c.req_since != 0 && elapsed(now, c.req_since) > b.request_ms => Some(Due::RequestTimeout),
            None => (silent > b.idle_ms).then_some(Due::Drop),
        },
        State::Client { .. } | State::Echo | State::Edge => {
            if silent > b.idle_ms {
                return Some(Due::Idle);
            }
            if c.out.cost() <= b.soft {
                c.soft_since = 0;
            } else if c.soft_since == 0 {
                c.soft_since = now | 1;
            } else if elapsed(now, c.soft_since) > b.soft_ms {
                return Some(Due::SlowConsumer);
            }
            ping(c)
        }
    }
}

/// Whether a connection may move from `from` to `to` (the module's table of moves). Of the
/// moves within a phase only `Http` and `Client` ones (new flags) are moves; nothing leaves
/// `Closing`.
pub(super) fn legal(from: State, to: State) -> bool {
    use State::*;
    match (from, to) {
        (Closing { .. }, _) => false,
        // Without a socket there is nothing to close: such a session is freed, or detached.
        (_, Closing { .. }) => !matches!(from, Detached | Relayed),
        (Http { .. }, Http { .. } | Client { .. } | Echo | Parked { .. }) => true,
        (Client { .. }, Client { .. } | Detached | Relayed | Http { .. }) => true,
        (Parked { .. }, Edge | Http { .. }) => true,
        (Relayed, Detached) => true,
        (Detached, Client { .. } | Relayed) => true,
        _ => false,
    }
}

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
        // A detached session has no socket: the per-address and connection counts rely on it.
        debug_assert!(to != State::Detached || conn.sock.is_none(), "slot {slot} detached with its socket");
        debug_assert!(legal(conn.state, to), "slot {slot}: no move from {:?} to {to:?}", conn.state);
        self.set_state_unchecked(slot, to);
    }

    /// [`Shard::set_state`] without the check of the move: only for tests that walk every
    /// pair of phases to check the gauges.
    pub(super) fn set_state_unchecked(&mut self, slot: usize, to: State) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        let from = std::mem::replace(&mut conn.state, to);
        self.phase_changed(slot, Counted::of(from), Counted::of(to));
    }

    /// A session the last run kept (`restart.rs`), put at `slot` already `Detached`: its
    /// phase's gauges rise as for a move from a phase that counts in none.
    pub(super) fn set_state_restored(&mut self, slot: usize) {
        debug_assert_eq!(self.conns[slot].state, State::Detached);
        self.phase_changed(slot, Counted::default(), Counted::of(State::Detached));
    }

    /// Frees `slot`: its phase's gauges drop as for a move to a phase that counts in none.
    pub(super) fn remove_conn(&mut self, slot: usize) -> Conn {
        self.phase_changed(slot, Counted::of(self.conns[slot].state), Counted::default());
        self.conns.remove(slot)
    }

    fn phase_changed(&mut self, slot: usize, was: Counted, is: Counted) {
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
        let mut n = [0u64; 4];
        for (_, c) in self.conns.iter() {
            let k = Counted::of(c.state);
            for (i, counts) in [k.ws, k.edge, k.relayed, k.kept].into_iter().enumerate() {
                n[i] += u64::from(counts);
            }
        }
        let st = self.stats();
        let gauges = [
            ("ws_clients", n[0], &st.ws_clients),
            ("recovery_edges", n[1], &st.recovery_edges),
            ("recovery_relayed", n[2], &st.recovery_relayed),
            ("recovery_sessions", n[3], &st.recovery_sessions),
        ];
        for (name, n, gauge) in gauges {
            assert_eq!(gauge.load(Relaxed), n, "shard {}: gauge {name} is not the count of its phase", self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recovery::Session;
    use bytes::Bytes;

    const B: Bounds = Bounds {
        ping_ms: 25_000,
        idle_ms: 60_000,
        request_ms: 10_000,
        tls_ms: 10_000,
        window_ms: 120_000,
        soft_ms: 10_000,
        soft: 1000,
    };

    fn conn(state: State, now: u32) -> Conn {
        let mut c = Conn::without_socket(1, now);
        c.state = state;
        c
    }

    /// Regression: a stamp of `now | 1` taken at an even `now` read as 2^32 - 1 ms old.
    #[test]
    fn a_stamp_rounded_up_is_not_ancient() {
        let now = 1000;
        assert_eq!(elapsed(now, now | 1), 0);
        assert_eq!(elapsed(now + 5, now | 1), 4);
        assert_eq!(elapsed(3, u32::MAX - 1), 5, "across the wrap");
        assert_eq!(elapsed(now, now), 0);
    }

    #[test]
    fn a_client_is_pinged_each_interval_and_closed_when_silent() {
        let mut c = conn(State::Client { hub_knows: true }, 0);
        assert_eq!(due(&mut c, 24_999, &B), None);
        assert_eq!(due(&mut c, 25_000, &B), Some(Due::Ping));
        assert_eq!(c.last_ping, 25_000);
        assert_eq!(due(&mut c, 25_001, &B), None, "one ping per interval");
        c.last_seen = 50_000; // it answered
        assert_eq!(due(&mut c, 50_001, &B), Some(Due::Ping));
        assert_eq!(due(&mut c, 110_001, &B), Some(Due::Idle), "silent for idle_timeout");
    }

    #[test]
    fn output_over_the_soft_limit_too_long_is_a_slow_consumer() {
        let mut c = conn(State::Edge, 0);
        c.last_ping = 0;
        c.out.push(Bytes::from(vec![b'x'; 2000]));
        assert_eq!(due(&mut c, 100, &B), None);
        assert_eq!(c.soft_since, 101, "over the limit since now (a stamp is never 0)");
        assert_eq!(due(&mut c, 10_101, &B), None, "not longer than output_soft_seconds yet");
        assert_eq!(due(&mut c, 10_102, &B), Some(Due::SlowConsumer));
        // Drained below the limit meanwhile: the stamp clears.
        let mut c = conn(State::Echo, 0);
        c.out.push(Bytes::from(vec![b'x'; 2000]));
        due(&mut c, 100, &B);
        c.out = Default::default();
        due(&mut c, 200, &B);
        assert_eq!(c.soft_since, 0);
    }

    #[test]
    fn a_detached_session_lapses_after_its_window() {
        let mut c = conn(State::Detached, 0);
        let mut s = Session::new("s".into());
        s.detached_since = Some(5_000);
        c.session = Some(Box::new(s));
        assert_eq!(due(&mut c, 125_000, &B), None);
        assert_eq!(due(&mut c, 125_001, &B), Some(Due::SessionLapsed));
        // Detached sessions are never pinged, however long they wait.
        assert_eq!(c.last_ping, 0);
    }

    #[test]
    fn parked_and_closing_connections_end_at_their_deadlines() {
        let mut p = conn(State::Parked { until: 3_000 }, 0);
        assert_eq!(due(&mut p, 2_999, &B), None);
        assert_eq!(due(&mut p, 3_000, &B), Some(Due::ParkTimeout));
        let kind = super::super::CloseKind::WebSocket;
        let mut c = conn(State::Closing { until: u32::MAX - 10, kind }, 0);
        assert_eq!(due(&mut c, u32::MAX - 11, &B), None);
        assert_eq!(due(&mut c, 5, &B), Some(Due::Drop), "across the clock's wrap");
    }

    #[test]
    fn http_deadlines_request_answer_handshake_and_idle() {
        let mut c = conn(State::Http { awaiting: false, keep_alive: true }, 0);
        assert_eq!(due(&mut c, 60_001, &B), Some(Due::Drop), "an idle keep-alive connection");
        c.last_seen = 60_000;
        c.req_since = 60_001;
        assert_eq!(due(&mut c, 70_001, &B), None);
        assert_eq!(due(&mut c, 70_002, &B), Some(Due::RequestTimeout));
        c.state = State::Http { awaiting: true, keep_alive: true };
        assert_eq!(due(&mut c, 70_002, &B), Some(Due::Unanswered), "a call at the hub too long");
        c.req_since = 0;
        assert_eq!(due(&mut c, 200_000, &B), None, "waiting for the hub is never idle");
    }

    /// The table of moves, walked through the paths a connection takes: a blip and a resume, a
    /// takeover, a resume through another node and back, a park that times out, an upgrade
    /// refused for a full hub; and what may never happen.
    #[test]
    fn the_moves_a_connection_may_make() {
        use super::super::CloseKind::{Http as HttpClose, WebSocket};
        let http = State::Http { awaiting: false, keep_alive: true };
        let (client, told) = (State::Client { hub_knows: false }, State::Client { hub_knows: true });
        let closing = State::Closing { until: 0, kind: WebSocket };
        let paths: [&[State]; 6] = [
            &[http, client, told, State::Detached, told, closing],
            &[http, told, State::Relayed, State::Detached, State::Relayed, State::Detached, told, closing],
            &[http, State::Parked { until: 9 }, State::Edge, closing],
            &[http, State::Parked { until: 9 }, http, client],
            &[http, told, http, State::Closing { until: 0, kind: HttpClose }],
            &[http, State::Echo, closing],
        ];
        for path in paths {
            for w in path.windows(2) {
                assert!(legal(w[0], w[1]), "{:?} -> {:?} in {path:?}", w[0], w[1]);
            }
        }
        let never = [
            (closing, told),
            (closing, closing),
            (State::Detached, closing),
            (State::Detached, http),
            (State::Edge, State::Detached),
            (State::Echo, told),
            (http, State::Detached),
            (http, State::Relayed),
            (State::Relayed, State::Edge),
            (State::Relayed, told),
            (State::Relayed, closing),
        ];
        for (from, to) in never {
            assert!(!legal(from, to), "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn a_relayed_session_is_pinged_through_its_edge_and_never_idles() {
        let mut c = conn(State::Relayed, 0);
        assert_eq!(due(&mut c, 25_000, &B), Some(Due::Ping));
        assert_eq!(due(&mut c, 1_000_000, &B), Some(Due::Ping), "no idle close: its edge has the socket");
    }
}
