//! Identifiers that cross threads (and, in cluster mode, nodes).
//!
//! A clientId encodes where the connection lives: node (8 hex digits), shard (2), slab slot (6)
//! and generation (12), as 28 lowercase hex characters. It is opaque to users; the generation
//! makes a reused slot's new connection unreachable through the old id (invariant 5). A shard
//! draws generations from one 48-bit counter: at 100,000 accepts a second it would take 89
//! years to come round, so no stale clientId can ever name a newer connection.
//!
//! The counter starts at the clock ([`first_gen`]: microseconds since the epoch, modulo 2^48),
//! not at 1: a node restarted with the same `node_id` must not hand out the clientIds of its
//! previous run, which a back end may still hold (it would send to, bind or close a different
//! user). A run moves its counter one per accept, and no shard accepts a million connections a
//! second, so the counter of a run stays behind the clock, and the next run starts past every
//! id the last one gave (unless the wall clock is set back by more than the downtime).

/// A connection's generation: unique per shard (48 bits are used).
pub type Gen = u64;

/// Generations count up to this, then start again at 1.
pub const GEN_MAX: Gen = (1 << 48) - 1;

/// Slots a shard may use (6 hex digits of the clientId).
pub const SLOTS: usize = 1 << 24;

/// The generation after `g` (never 0).
pub fn next_gen(g: Gen) -> Gen {
    if g >= GEN_MAX {
        1
    } else {
        g + 1
    }
}

/// Where a shard's generation counter starts: the clock in microseconds (see the module docs),
/// within 1..=[`GEN_MAX`].
pub fn first_gen(unix_micros: u64) -> Gen {
    (unix_micros % GEN_MAX).max(1)
}

/// [`first_gen`] for now.
pub fn first_gen_now() -> Gen {
    let micros = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros());
    first_gen(micros as u64)
}

/// A connection inside one shard: slab slot plus generation (invariant 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub slot: u32,
    pub gen: Gen,
}

/// A connection anywhere in the node: shard, slab slot, generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub shard: u16,
    pub slot: u32,
    pub gen: Gen,
}

impl ConnId {
    /// Its place inside its shard.
    pub fn in_shard(self) -> Target {
        Target { slot: self.slot, gen: self.gen }
    }
}

/// Length of a clientId string.
pub const CLIENT_ID_LEN: usize = 28;

/// Formats the clientId of `conn` on node `node`.
pub fn client_id(node: u32, conn: ConnId) -> String {
    client_id_buf(node, conn).as_str().to_owned()
}

/// A clientId in a buffer on the stack (no allocation).
pub struct ClientIdBuf([u8; CLIENT_ID_LEN]);

impl ClientIdBuf {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits")
    }
}

/// The clientId of `conn` on node `node`, without allocating.
pub fn client_id_buf(node: u32, conn: ConnId) -> ClientIdBuf {
    debug_assert!(conn.shard < 256 && (conn.slot as usize) < SLOTS && conn.gen <= GEN_MAX);
    let mut out = [0u8; CLIENT_ID_LEN];
    put_hex(&mut out[..8], node.into());
    put_hex(&mut out[8..10], conn.shard.into());
    put_hex(&mut out[10..16], conn.slot.into());
    put_hex(&mut out[16..], conn.gen);
    ClientIdBuf(out)
}

/// Writes the low `out.len()` hex digits of `v` (lowercase, zero-padded).
fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
    }
}

/// A connection anywhere in the cluster: its node and its place there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientRef {
    pub node: u32,
    pub conn: ConnId,
}

impl ClientRef {
    /// The clientId string.
    pub fn id(self) -> String {
        client_id(self.node, self.conn)
    }
}

/// Parses a clientId of any node; `None` when it is malformed.
pub fn parse_client_ref(s: &str) -> Option<ClientRef> {
    let b = s.as_bytes();
    if b.len() != CLIENT_ID_LEN || !b.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| u64::from_str_radix(&s[r], 16).ok();
    let conn = ConnId { shard: hex(8..10)? as u16, slot: hex(10..16)? as u32, gen: hex(16..28)? };
    Some(ClientRef { node: hex(0..8)? as u32, conn })
}

/// Parses a clientId; `None` when it is malformed or belongs to another node.
pub fn parse_client_id(node: u32, s: &str) -> Option<ConnId> {
    parse_client_ref(s).filter(|r| r.node == node).map(|r| r.conn)
}

/// A fresh messageId: 16 lowercase hex characters.
pub fn message_id() -> String {
    format!("{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_id_round_trips() {
        let c = ConnId { shard: 255, slot: (SLOTS - 1) as u32, gen: GEN_MAX };
        let s = client_id(0x1234_abcd, c);
        assert_eq!(s.len(), CLIENT_ID_LEN);
        assert_eq!(parse_client_id(0x1234_abcd, &s), Some(c));
    }

    /// Regression (security review, low): generations were 32 bits and wrapped after 2^32
    /// accepts (~12 h at 100k accepts/s), so a stale clientId could name a new connection in
    /// the same slot. Past u32::MAX they keep counting, and every id stays distinct.
    #[test]
    fn generations_do_not_wrap_at_32_bits() {
        let mut g = u32::MAX as Gen - 2;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..6 {
            let id = client_id(1, ConnId { shard: 0, slot: 0, gen: g });
            assert_eq!(parse_client_id(1, &id).unwrap().gen, g);
            assert!(seen.insert(id));
            g = next_gen(g);
        }
        assert!(g > u32::MAX as Gen);
        assert_eq!(next_gen(GEN_MAX), 1);
        assert_eq!(next_gen(0), 1);
    }

    /// Security review, high: generations started at 1, so with a fixed node id the first
    /// connections after a restart got exactly the clientIds of the first ones before it.
    #[test]
    fn a_restart_never_hands_out_an_id_of_the_run_before() {
        let t0 = 1_764_370_000_000_000u64;
        // A run of 10 s that accepted 500,000 connections per second on one shard.
        let first = first_gen(t0);
        let last = first + 5_000_000;
        // Restarted one second after it stopped: every new generation is past the old ones.
        let again = first_gen(t0 + 11_000_000);
        assert!(again > last && first != 1, "{first} {last} {again}");
        assert_eq!(first_gen(0), 1);
        assert!(first_gen(GEN_MAX + 5) <= GEN_MAX && first_gen(u64::MAX) >= 1);
    }

    #[test]
    fn client_id_rejects_other_node_and_garbage() {
        let node = 0xabcd_ef01;
        let s = client_id(node, ConnId { shard: 0, slot: 1, gen: 1 });
        assert_eq!(parse_client_id(2, &s), None);
        assert_eq!(parse_client_id(node, "nope"), None);
        assert_eq!(parse_client_id(node, &s.to_uppercase()), None);
        assert!(parse_client_id(node, &format!("{}0", &s[..27])).is_some());
        assert_eq!(parse_client_id(node, &format!("{}g", &s[..27])), None);
    }

    #[test]
    fn message_id_is_16_lower_hex() {
        let m = message_id();
        assert_eq!(m.len(), 16);
        assert!(m.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
