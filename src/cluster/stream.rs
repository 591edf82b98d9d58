//! Positions in a channel's stream (pure): the publisher's side ([`Stamps`]: the next position
//! of each channel this node publishes on) and the receiver's ([`Gaps`]: the last position seen
//! from each publisher on each channel, and what a new one says was missed).
//!
//! Redis pub/sub is at most once: a pub/sub connection that drops (a network fault, or Redis
//! closing a subscriber past `client-output-buffer-limit pubsub`) loses what was published
//! meanwhile, without a word. With positions, the first message after such a loss on a channel
//! shows it: the node counts the missed messages and treats the sessions of that channel's
//! members as no longer recoverable from before it (`hub::Hub::apply_losses`). A channel that
//! carries nothing after the loss shows nothing until its next message.

use std::cell::RefCell;
use std::collections::HashMap;

use super::wire::Pos;

/// Channels a node keeps counters for before it forgets them all and starts a new epoch
/// (receivers then take the new epoch's first position as it comes: no gap can be told across
/// the change, and none is made up).
pub const MAX_CHANNELS: usize = 100_000;

/// The publisher's counters.
pub struct Stamps {
    node: u32,
    inner: RefCell<(u32, HashMap<String, u64>)>,
}

impl Stamps {
    pub fn new(node: u32) -> Self {
        Stamps { node, inner: RefCell::new((fastrand::u32(..), HashMap::new())) }
    }

    /// The position of the next message on `chan` (each call takes one: publish exactly one
    /// message with it).
    pub fn next(&self, chan: &str) -> Pos {
        let mut g = self.inner.borrow_mut();
        let (epoch, map) = &mut *g;
        if map.len() >= MAX_CHANNELS && !map.contains_key(chan) {
            map.clear();
            *epoch = epoch.wrapping_add(1);
        }
        // No allocation for a channel seen before (the usual case, once per publish).
        let seq = match map.get_mut(chan) {
            Some(s) => s,
            None => map.entry(chan.to_string()).or_insert(0),
        };
        *seq += 1;
        Pos { origin: self.node, epoch: *epoch, seq: *seq }
    }
}

/// The receiver's view: per channel, per publisher, the last (epoch, seq) seen.
#[derive(Default)]
pub struct Gaps {
    seen: HashMap<String, HashMap<u32, (u32, u64)>>,
    /// What was seen on the pub/sub connections before the current one, kept for the channels
    /// the new one subscribes to again (a gap across the reconnect is the point); the others
    /// were left meanwhile and go once the new connection has subscribed everything it had.
    before: HashMap<String, HashMap<u32, (u32, u64)>>,
    /// Subscriptions the current connection still makes to restore the node's (0: done).
    resubscribing: usize,
}

impl Gaps {
    /// A message at `at` came on `chan`: how many messages of that publisher were missed
    /// before it (0: none, or nothing to tell).
    pub fn saw(&mut self, chan: &str, at: Pos) -> u64 {
        if self.seen.len() >= MAX_CHANNELS && !self.seen.contains_key(chan) {
            self.seen.clear();
        }
        let by_origin = match self.seen.get_mut(chan) {
            Some(m) => m,
            None => self.seen.entry(chan.to_string()).or_default(),
        };
        match by_origin.insert(at.origin, (at.epoch, at.seq)) {
            Some((epoch, last)) if epoch == at.epoch && at.seq > last + 1 => at.seq - last - 1,
            // A first message, a new epoch, or (never expected) one out of order.
            _ => 0,
        }
    }

    /// The node no longer listens to `chan` (what it last saw there no longer matters).
    pub fn forget(&mut self, chan: &str) {
        self.seen.remove(chan);
    }

    /// A new pub/sub connection, which first subscribes `resubscribing` channels (the node's
    /// own): until it has, every channel counts as left. (A connection that failed before it
    /// had subscribed them all leaves its predecessors' positions in place: they are merged.)
    pub fn reconnected(&mut self, resubscribing: usize) {
        for (chan, m) in self.seen.drain() {
            self.before.insert(chan, m);
        }
        self.resubscribing = resubscribing;
    }

    /// The connection subscribed `chan`: what was seen there before the reconnect holds; once
    /// the node's channels are all back, the others' old positions go (a channel joined later
    /// starts afresh).
    pub fn subscribed(&mut self, chan: &str) {
        if let Some(m) = self.before.remove(chan) {
            self.seen.insert(chan.to_string(), m);
        }
        if self.resubscribing > 0 {
            self.resubscribing -= 1;
            if self.resubscribing == 0 {
                self.before.clear();
            }
        }
    }

    /// The last position seen on `chan` from each publisher: (origin, epoch, seq).
    pub fn last(&self, chan: &str) -> Vec<(u32, u32, u64)> {
        self.seen.get(chan).map_or_else(Vec::new, |m| m.iter().map(|(&o, &(e, s))| (o, e, s)).collect())
    }

    pub fn channels(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_up_per_channel_and_gaps_are_told() {
        let s = Stamps::new(7);
        let (a1, a2, b1) = (s.next("a"), s.next("a"), s.next("b"));
        assert_eq!((a1.seq, a2.seq, b1.seq), (1, 2, 1));
        assert_eq!((a1.origin, a1.epoch), (7, a2.epoch));
        let mut g = Gaps::default();
        assert_eq!(g.saw("a", a1), 0, "a first message tells nothing");
        assert_eq!(g.saw("a", a2), 0);
        let (_lost1, _lost2, a5) = (s.next("a"), s.next("a"), s.next("a"));
        assert_eq!(g.saw("a", a5), 2, "two never came");
        assert_eq!(g.saw("b", b1), 0);
        let other = Pos { origin: 9, epoch: 1, seq: 40 };
        assert_eq!(g.saw("a", other), 0, "another publisher has its own stream");
        assert_eq!(g.saw("a", Pos { seq: 42, ..other }), 1);
        assert_eq!(g.saw("a", Pos { epoch: 2, seq: 1, ..other }), 0, "a new epoch starts over");
        g.forget("a");
        assert_eq!(g.saw("a", Pos { epoch: 2, seq: 9, ..other }), 0, "forgotten: nothing to compare");
        assert_eq!(g.channels(), 2);
    }

    /// Review finding: a channel left while the pub/sub connection was down kept its last
    /// positions, and when the node joined it again much later, the others' progress read as
    /// a gap.
    #[test]
    fn a_reconnect_keeps_only_the_channels_subscribed_again() {
        let p = |seq| Pos { origin: 2, epoch: 5, seq };
        let mut g = Gaps::default();
        g.saw("kept", p(1));
        g.saw("left", p(1));
        g.saw("flaky", p(1));
        // A connection that fails before it subscribed "flaky" again…
        g.reconnected(3);
        g.subscribed("kept");
        // …and the next one, which subscribes the node's two channels.
        g.reconnected(2);
        g.subscribed("kept");
        g.subscribed("flaky");
        assert_eq!(g.saw("kept", p(4)), 2, "a gap across the reconnect is told");
        assert_eq!(g.saw("flaky", p(3)), 1, "and across two");
        // "left" was left while Redis was away; joined again later, it starts afresh.
        g.subscribed("left");
        assert_eq!(g.saw("left", p(90)), 0);
    }

    #[test]
    fn too_many_channels_start_a_new_epoch() {
        let s = Stamps::new(1);
        let first = s.next("c0");
        for i in 1..MAX_CHANNELS {
            s.next(&format!("c{i}"));
        }
        let again = s.next("c0");
        assert_eq!((again.epoch, again.seq), (first.epoch, 2), "a known channel goes on");
        let new = s.next("new");
        assert_eq!((new.epoch, new.seq), (first.epoch.wrapping_add(1), 1));
        let mut g = Gaps::default();
        g.saw("c0", again);
        assert_eq!(g.saw("c0", s.next("c0")), 0, "the new epoch's first position is no gap");
    }
}
