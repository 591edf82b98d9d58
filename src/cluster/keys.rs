//! Redis key and channel names (pure).
//!
//! A system id is written with its length (`{len}:{system}`) so that no pair of system and
//! group names can spell another pair's key: tenants never share a key or a channel.
//!
//! | name | kind | holds |
//! | --- | --- | --- |
//! | `rc:systems` | set | registered systems |
//! | `rc:nodes` | set | nodes that may hold presence |
//! | `rc:alive:{node}` | string, TTL | a node's heartbeat |
//! | `rc:reap:{node}` | string, TTL | lock of the survivor cleaning a dead node |
//! | `rc:n:{node}` | hash, and channel | member field → info of the node's clients; the channel carries forwarded calls and their answers |
//! | `rc:g:{len}:{system}:{group}` | hash, and channel | clientId → info of a group's members; the channel carries the group's frames |
//! | `rc:gs:{len}:{system}` | sorted set (all scores 0: by name) | a system's non-empty groups, read a page at a time (`ZRANGEBYLEX`) |
//! | `rc:s:{len}:{system}` | channel | frames to a whole system |
//! | `rc:h:{len}:{system}:{group}` | stream, TTL `history_ttl` | the group's last `history_size` messages (`get_group_history`) |
//! | `rc:cluster` | channel | a node announcing itself (so the others forward to it at once) |

pub const SYSTEMS: &str = "rc:systems";
pub const NODES: &str = "rc:nodes";
pub const CLUSTER: &str = "rc:cluster";

/// A node id as written in keys and in `rc:nodes`: 8 hex digits, as in clientIds.
pub fn node_name(node: u32) -> String {
    format!("{node:08x}")
}

pub fn node(node: u32) -> String {
    format!("rc:n:{}", node_name(node))
}

pub fn alive(node: u32) -> String {
    format!("rc:alive:{}", node_name(node))
}

pub fn reap_lock(node: u32) -> String {
    format!("rc:reap:{}", node_name(node))
}

pub fn group(system: &str, group: &str) -> String {
    format!("rc:g:{}:{system}:{group}", system.len())
}

pub fn history(system: &str, group: &str) -> String {
    format!("rc:h:{}:{system}:{group}", system.len())
}

pub fn groups(system: &str) -> String {
    format!("rc:gs:{}:{system}", system.len())
}

pub fn system(system: &str) -> String {
    format!("rc:s:{}:{system}", system.len())
}

/// A node hash field: which client is in which group of which system.
pub fn member_field(client_id: &str, system: &str, group: &str) -> String {
    format!("{client_id}{}:{system}{group}", system.len())
}

/// Splits a [`member_field`] into (clientId, system, group).
pub fn parse_member_field(f: &str) -> Option<(&str, &str, &str)> {
    let id = f.get(..crate::ids::CLIENT_ID_LEN)?;
    let rest = &f[id.len()..];
    let colon = rest.find(':')?;
    let len: usize = rest[..colon].parse().ok()?;
    let sys = rest.get(colon + 1..colon + 1 + len)?;
    Some((id, sys, &rest[colon + 1 + len..]))
}

/// What a channel a node subscribed to carries.
#[derive(Debug, PartialEq, Eq)]
pub enum Chan<'a> {
    Group(&'a str, &'a str),
    System(&'a str),
    Node(u32),
    Cluster,
}

/// Names a subscribed channel's content.
pub fn parse_channel(c: &str) -> Option<Chan<'_>> {
    fn split(rest: &str) -> Option<(&str, &str)> {
        let colon = rest.find(':')?;
        let len: usize = rest[..colon].parse().ok()?;
        let sys = rest.get(colon + 1..colon + 1 + len)?;
        Some((sys, &rest[colon + 1 + len..]))
    }
    if let Some(rest) = c.strip_prefix("rc:g:") {
        let (sys, g) = split(rest)?;
        return Some(Chan::Group(sys, g.strip_prefix(':')?));
    }
    if let Some(rest) = c.strip_prefix("rc:s:") {
        let (sys, tail) = split(rest)?;
        return tail.is_empty().then_some(Chan::System(sys));
    }
    if c == CLUSTER {
        return Some(Chan::Cluster);
    }
    let n = c.strip_prefix("rc:n:")?;
    (n.len() == 8).then(|| u32::from_str_radix(n, 16).ok()).flatten().map(Chan::Node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_collide() {
        assert_eq!(parse_channel(&group("a:g:b", "c")), Some(Chan::Group("a:g:b", "c")));
        assert_eq!(parse_channel(&group("a", "b:g:c")), Some(Chan::Group("a", "b:g:c")));
        assert_ne!(group("a:g:b", "c"), group("a", "b:g:c"));
        assert_ne!(group("ab", "c"), group("a", "bc"));
        assert_eq!(parse_channel(&system("x:1")), Some(Chan::System("x:1")));
        assert_eq!(parse_channel(&node(0xdead)), Some(Chan::Node(0xdead)));
        assert_eq!(parse_channel(CLUSTER), Some(Chan::Cluster));
        assert_eq!(parse_channel("rc:g:9:ab"), None);
        assert_eq!(parse_channel("rc:n:zz"), None);
        assert_eq!(parse_channel("other"), None);
    }

    #[test]
    fn member_fields_round_trip() {
        let id = "0".repeat(crate::ids::CLIENT_ID_LEN);
        for (s, g) in [("sys", "room:1"), ("a:b", ""), ("", "x"), ("日本", "語")] {
            let f = member_field(&id, s, g);
            assert_eq!(parse_member_field(&f), Some((id.as_str(), s, g)));
        }
        assert_eq!(parse_member_field("short"), None);
        assert_eq!(parse_member_field(&format!("{id}99:ab")), None);
    }
}
