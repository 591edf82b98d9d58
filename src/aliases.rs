//! Where the clientIds of a stopped node live now (cluster mode: sessions handed to a live
//! node on SIGTERM, docs/CLUSTER.md "Restarts").
//!
//! A clientId names its node (`ids`), and every call, resume and relay message about it is
//! routed there. A node that stops hands its recoverable sessions to one live node, the
//! *adopter*, which keeps them under their old clientIds. So that the ids keep working, every
//! node holds the cluster's *moves* (node → ranges of its generations → adopter, from Redis's
//! `moved` hash and the `rc:cluster` announcements), and the adopter holds its *adoptions*: each
//! adopted clientId ↔ the connection that now holds the session here.
//!
//! A range of generations, not a whole node, is moved: a node restarted with the same
//! `node_id` hands out new clientIds at once (its generations start past every earlier one,
//! `ids::first_gen`), and those are its own again.
//!
//! One table for the node, read by the hub, the shards, the broker and the subscriber; written
//! only by the hub (adoptions) and the subscriber and broker (moves). Empty, as on every node
//! that never saw a hand-off, a lookup costs one atomic load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::RwLock;

use crate::ids::{ClientRef, ConnId, Gen};

/// The clientIds of `node` with a generation in `lo..=hi` went to node `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Move {
    pub node: u32,
    pub lo: Gen,
    pub hi: Gen,
    pub to: u32,
}

impl Move {
    fn covers(&self, r: ClientRef) -> bool {
        r.node == self.node && (self.lo..=self.hi).contains(&r.conn.gen)
    }

    /// The form kept in Redis and announced: `node lo hi to`, hex.
    pub fn encode(&self) -> String {
        format!("{:08x} {:x} {:x} {:08x}", self.node, self.lo, self.hi, self.to)
    }

    pub fn decode(s: &str) -> Option<Move> {
        let mut it = s.split(' ');
        let mut hex = || u64::from_str_radix(it.next()?, 16).ok();
        let (node, lo, hi, to) = (hex()?, hex()?, hex()?, hex()?);
        let m = Move { node: u32::try_from(node).ok()?, lo, hi, to: u32::try_from(to).ok()? };
        (lo <= hi && it.next().is_none()).then_some(m)
    }
}

/// Where a clientId's session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Here, at this connection.
    Here(ConnId),
    /// On that node (which may route it further).
    Node(u32),
    /// It was moved here and ended since: nowhere.
    Gone,
}

#[derive(Default)]
struct Table {
    moves: Vec<Move>,
    adopted: HashMap<ClientRef, ConnId>,
    foreign: HashMap<ConnId, ClientRef>,
    /// `adopted` by the old connection alone (relay messages name no node).
    by_old: HashMap<ConnId, ConnId>,
}

/// The node's table (see the module docs).
#[derive(Default)]
pub struct Aliases {
    any: AtomicBool,
    table: RwLock<Table>,
}

impl Aliases {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.any.store(true, Ordering::Release);
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the session named `r` is, seen from node `me`.
    pub fn route(&self, me: u32, r: ClientRef) -> Route {
        if !self.any.load(Ordering::Acquire) {
            return if r.node == me { Route::Here(r.conn) } else { Route::Node(r.node) };
        }
        let t = self.read();
        if let Some(&conn) = t.adopted.get(&r) {
            return Route::Here(conn);
        }
        match t.moves.iter().rev().find(|m| m.covers(r)) {
            Some(m) if m.to == me => Route::Gone,
            Some(m) => Route::Node(m.to),
            None if r.node == me => Route::Here(r.conn),
            None => Route::Node(r.node),
        }
    }

    /// The node a message for `r`'s node should go to (its adopter's, if it moved).
    pub fn node_of(&self, me: u32, r: ClientRef) -> u32 {
        match self.route(me, r) {
            Route::Here(_) | Route::Gone => me,
            Route::Node(n) => n,
        }
    }

    /// The clientId of the connection `conn` of node `me`: its own, or the one it was adopted
    /// under.
    pub fn id(&self, me: u32, conn: ConnId) -> String {
        self.client_ref(me, conn).id()
    }

    /// [`Aliases::id`] as a reference.
    pub fn client_ref(&self, me: u32, conn: ConnId) -> ClientRef {
        if self.any.load(Ordering::Acquire) {
            if let Some(&r) = self.read().foreign.get(&conn) {
                return r;
            }
        }
        ClientRef { node: me, conn }
    }

    /// Whether `conn` holds an adopted session (and under which clientId).
    pub fn adopted_as(&self, conn: ConnId) -> Option<ClientRef> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.read().foreign.get(&conn).copied()
    }

    /// The adopted session a relay message names by its old connection (relay messages carry
    /// a connection, not a node: an adopter looks its adoptions up by that alone).
    pub fn adopted_conn(&self, old: ConnId) -> Option<ConnId> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.read().by_old.get(&old).copied()
    }

    /// The session named `r` is now at `conn` here.
    pub fn adopt(&self, r: ClientRef, conn: ConnId) {
        let mut t = self.write();
        debug_assert!(!t.foreign.contains_key(&conn), "one adopted session per connection");
        t.adopted.insert(r, conn);
        t.foreign.insert(conn, r);
        // Two nodes' connections alike (shard, slot and a clock-drawn generation): the later
        // wins the relay lookup; calls, which name the node, still find both.
        t.by_old.insert(r.conn, conn);
    }

    /// The connection `conn` ended: if it held an adopted session, that alias goes.
    pub fn ended(&self, conn: ConnId) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut t = self.write();
        if let Some(r) = t.foreign.remove(&conn) {
            t.adopted.remove(&r);
            if t.by_old.get(&r.conn) == Some(&conn) {
                t.by_old.remove(&r.conn);
            }
        }
    }

    /// A move learnt (from Redis or an announcement). Moves that named the new move's node
    /// as their adopter now name its adopter: those sessions were handed on with its own.
    pub fn moved(&self, m: Move) {
        let mut t = self.write();
        for old in t.moves.iter_mut().filter(|o| o.to == m.node) {
            old.to = m.to;
        }
        if !t.moves.contains(&m) {
            t.moves.push(m);
        }
    }

    /// Moves that named `node` as adopter: the node is dead, the sessions with it.
    pub fn adopter_dead(&self, node: u32) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        self.write().moves.retain(|m| m.to != node);
    }

    /// How many sessions this node holds adopted.
    pub fn adopted_count(&self) -> usize {
        self.read().adopted.len()
    }
}

/// The range of generations `refs` (of one node) span.
pub fn span(refs: impl Iterator<Item = ClientRef>) -> Option<(Gen, Gen)> {
    refs.map(|r| r.conn.gen).fold(None, |acc, g| match acc {
        None => Some((g, g)),
        Some((lo, hi)) => Some((lo.min(g), hi.max(g))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(node: u32, gen: Gen) -> ClientRef {
        ClientRef { node, conn: ConnId { shard: 0, slot: 1, gen } }
    }

    #[test]
    fn an_empty_table_routes_by_the_id() {
        let a = Aliases::default();
        assert_eq!(a.route(1, r(1, 5)), Route::Here(r(1, 5).conn));
        assert_eq!(a.route(1, r(2, 5)), Route::Node(2));
        assert_eq!(a.id(1, r(1, 5).conn), r(1, 5).id());
    }

    #[test]
    fn moved_ids_route_to_the_adopter_and_new_ids_to_the_node() {
        let a = Aliases::default();
        a.moved(Move { node: 2, lo: 10, hi: 20, to: 3 });
        assert_eq!(a.route(1, r(2, 15)), Route::Node(3));
        assert_eq!(a.route(1, r(2, 21)), Route::Node(2), "the restarted node's own ids");
        // Node 3 stops and hands on to 4: the old move follows.
        a.moved(Move { node: 3, lo: 1, hi: 9, to: 4 });
        assert_eq!(a.route(1, r(2, 15)), Route::Node(4));
        assert_eq!(a.route(1, r(3, 5)), Route::Node(4));
        a.adopter_dead(4);
        assert_eq!(a.route(1, r(2, 15)), Route::Node(2));
    }

    #[test]
    fn the_adopter_finds_its_adoptions_and_names_them_by_their_old_ids() {
        let a = Aliases::default();
        a.moved(Move { node: 2, lo: 10, hi: 20, to: 1 });
        let here = ConnId { shard: 1, slot: 7, gen: 99 };
        a.adopt(r(2, 12), here);
        assert_eq!(a.route(1, r(2, 12)), Route::Here(here));
        assert_eq!(a.route(1, r(2, 13)), Route::Gone, "moved here, but no such session");
        assert_eq!(a.id(1, here), r(2, 12).id());
        assert_eq!(a.adopted_conn(r(2, 12).conn), Some(here));
        a.ended(here);
        assert_eq!(a.route(1, r(2, 12)), Route::Gone);
        assert_eq!(a.id(1, here), ClientRef { node: 1, conn: here }.id());
    }

    #[test]
    fn a_move_survives_its_text_form() {
        let m = Move { node: 0xabc, lo: 5, hi: 0xffff_ffff_ffff, to: 7 };
        assert_eq!(Move::decode(&m.encode()), Some(m));
        assert_eq!(Move::decode("1 5 4 2"), None, "lo past hi");
        assert_eq!(Move::decode("1 2 3"), None);
        assert_eq!(Move::decode("1 2 3 4 5"), None);
    }
}
