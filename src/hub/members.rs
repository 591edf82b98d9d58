//! A member set kept per shard, with an `Arc` snapshot per shard rebuilt only after that
//! shard's members changed — so a broadcast costs the hub O(shards) (invariant 3).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::ids::{ConnId, Gen};
use crate::msg::Target;

/// Members of a group (or of a whole system), split by shard.
#[derive(Debug)]
pub struct Members {
    /// Per shard: slot → generation (a slot holds one live connection at a time). Keys are
    /// server-assigned, so a fast hash without flooding resistance is safe.
    per_shard: Vec<FxHashMap<u32, Gen>>,
    /// Per shard: the delivery snapshot, `None` until needed or after a change.
    snaps: Vec<Option<Arc<[Target]>>>,
    /// Per shard: entries of the snapshot whose connection has since disconnected.
    stale: Vec<usize>,
    len: usize,
}

impl Members {
    pub fn new(shards: usize) -> Self {
        Members {
            per_shard: vec![FxHashMap::default(); shards],
            snaps: vec![None; shards],
            stale: vec![0; shards],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains(&self, c: ConnId) -> bool {
        self.per_shard[c.shard as usize].get(&c.slot) == Some(&c.gen)
    }

    /// Adds `c`; false if it was already there.
    pub fn insert(&mut self, c: ConnId) -> bool {
        let s = c.shard as usize;
        match self.per_shard[s].insert(c.slot, c.gen) {
            Some(old) if old == c.gen => false,
            Some(_) => {
                // A stale generation in this slot. Shards report a disconnect before the
                // slot's next Connect (same ordered queue, backlog first), so this should not
                // happen; if it does, the newer connection wins and the count is unchanged.
                self.snaps[s] = None;
                self.stale[s] = 0;
                true
            }
            None => {
                self.len += 1;
                self.snaps[s] = None;
                self.stale[s] = 0;
                true
            }
        }
    }

    /// Removes `c` (exact generation); false if it was not there. The snapshot is rebuilt
    /// before the next delivery.
    pub fn remove(&mut self, c: ConnId) -> bool {
        self.remove_inner(c, false)
    }

    /// Removes a member whose connection is gone (closed, or closing). Its snapshot entry may
    /// stay: shards drop targets that are not live clients (generation and state checks), so
    /// the snapshot is rebuilt only once a quarter of it is stale. A mass disconnect then
    /// costs O(n log n) snapshot work instead of one O(n) rebuild per departure.
    pub fn remove_gone(&mut self, c: ConnId) -> bool {
        self.remove_inner(c, true)
    }

    fn remove_inner(&mut self, c: ConnId, gone: bool) -> bool {
        let s = c.shard as usize;
        let m = &mut self.per_shard[s];
        if m.get(&c.slot) != Some(&c.gen) {
            return false;
        }
        m.remove(&c.slot);
        if m.capacity() > 64 && m.len() < m.capacity() / 8 {
            m.shrink_to_fit();
        }
        self.len -= 1;
        match &self.snaps[s] {
            Some(snap) if gone && (self.stale[s] + 1) * 4 <= snap.len() => self.stale[s] += 1,
            _ => {
                self.snaps[s] = None;
                self.stale[s] = 0;
            }
        }
        true
    }

    /// The members on `shard` as a shared snapshot; `None` when there are none.
    pub fn snapshot(&mut self, shard: usize) -> Option<Arc<[Target]>> {
        let m = &self.per_shard[shard];
        if m.is_empty() {
            self.snaps[shard] = None;
            self.stale[shard] = 0;
            return None;
        }
        let snap =
            self.snaps[shard].get_or_insert_with(|| m.iter().map(|(&slot, &gen)| Target { slot, gen }).collect());
        Some(snap.clone())
    }

    pub fn shards(&self) -> usize {
        self.per_shard.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.per_shard
            .iter()
            .enumerate()
            .flat_map(|(shard, m)| m.iter().map(move |(&slot, &gen)| ConnId { shard: shard as u16, slot, gen }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(shard: u16, slot: u32, gen: Gen) -> ConnId {
        ConnId { shard, slot, gen }
    }

    #[test]
    fn snapshots_are_shared_until_membership_changes() {
        let mut m = Members::new(2);
        assert!(m.insert(c(0, 1, 1)));
        assert!(!m.insert(c(0, 1, 1)));
        assert!(m.insert(c(1, 1, 2)));
        let a = m.snapshot(0).unwrap();
        let b = m.snapshot(0).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(m.insert(c(0, 2, 3)));
        let d = m.snapshot(0).unwrap();
        assert_eq!(d.len(), 2);
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn gone_members_keep_the_snapshot_until_a_quarter_is_stale() {
        let mut m = Members::new(1);
        for i in 0..8 {
            m.insert(c(0, i, 1));
        }
        let a = m.snapshot(0).unwrap();
        assert!(m.remove_gone(c(0, 0, 1)));
        assert!(m.remove_gone(c(0, 1, 1)));
        let b = m.snapshot(0).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "2 of 8 stale: kept");
        assert!(m.remove_gone(c(0, 2, 1)));
        let d = m.snapshot(0).unwrap();
        assert_eq!(d.len(), 5, "3 of 8 stale: rebuilt");
        assert!(m.remove(c(0, 3, 1)));
        assert_eq!(m.snapshot(0).unwrap().len(), 4, "a plain remove always rebuilds");
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn remove_needs_the_exact_generation() {
        let mut m = Members::new(1);
        m.insert(c(0, 7, 1));
        assert!(!m.remove(c(0, 7, 2)));
        assert!(m.contains(c(0, 7, 1)));
        assert!(m.remove(c(0, 7, 1)));
        assert!(m.is_empty());
        assert!(m.snapshot(0).is_none());
    }
}
