//! Identifiers that cross threads (and, in cluster mode, nodes).
//!
//! A clientId encodes where the connection lives: node, shard, slab slot and generation,
//! as 28 lowercase hex characters. It is opaque to users; the generation makes a reused
//! slot's new connection unreachable through the old id (invariant 5).

use std::fmt::Write;

/// A connection anywhere in the node: shard, slab slot, generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub shard: u16,
    pub slot: u32,
    pub gen: u32,
}

impl ConnId {
    pub fn target(self) -> crate::msg::Target {
        crate::msg::Target { slot: self.slot, gen: self.gen }
    }
}

/// Length of a clientId string.
pub const CLIENT_ID_LEN: usize = 28;

/// Formats the clientId of `conn` on node `node`.
pub fn client_id(node: u32, conn: ConnId) -> String {
    let mut s = String::with_capacity(CLIENT_ID_LEN);
    write_client_id(&mut s, node, conn);
    s
}

/// Appends the clientId of `conn` to `out`.
fn write_client_id(out: &mut String, node: u32, conn: ConnId) {
    let _ = write!(out, "{:08x}{:04x}{:08x}{:08x}", node, conn.shard, conn.slot, conn.gen);
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
    let hex = |r: std::ops::Range<usize>| u32::from_str_radix(&s[r], 16).ok();
    let conn = ConnId { shard: hex(8..12)? as u16, slot: hex(12..20)?, gen: hex(20..28)? };
    Some(ClientRef { node: hex(0..8)?, conn })
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
        let c = ConnId { shard: 3, slot: 0xdead, gen: u32::MAX };
        let s = client_id(0x1234_abcd, c);
        assert_eq!(s.len(), CLIENT_ID_LEN);
        assert_eq!(parse_client_id(0x1234_abcd, &s), Some(c));
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
