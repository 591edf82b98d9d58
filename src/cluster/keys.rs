//! Redis key and channel names (pure).
//!
//! Every name starts with the cluster's prefix (`--redis-prefix`, default `rc:`, shown below),
//! so several clusters can share one Redis: pub/sub channels are server-wide, a `/db` would
//! not separate them.
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
//! | `rc:n:{node}` | hash, and channel | member field → info of the node's clients, user field → `""` for each of its connections with a user; the channel carries forwarded calls and their answers |
//! | `rc:g:{len}:{system}:{group}` | hash, and channel | clientId → info of a group's members; the channel carries the group's frames |
//! | `rc:gs:{len}:{system}` | sorted set (all scores 0: by name) | a system's non-empty groups, read a page at a time (`ZRANGEBYLEX`) |
//! | `rc:s:{len}:{system}` | channel | frames to a whole system |
//! | `rc:u:{len}:{system}:{user}` | hash | clientId → `1` for each connection of the user, on any node (`send_to_user`, `user_online`/`user_offline`) |
//! | `rc:h:{len}:{system}:{group}` | stream, TTL `history_ttl` | the group's last `history_size` messages (`get_group_history`) |
//! | `rc:cluster` | channel | a node announcing itself (so the others forward to it at once) |

use std::sync::Arc;

/// The names of one cluster's keys and channels: its prefix and the layout below it.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: Arc<str>,
}

/// A node id as written in keys and in `rc:nodes`: 8 hex digits, as in clientIds.
pub fn node_name(node: u32) -> String {
    format!("{node:08x}")
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.into() }
    }

    pub fn systems(&self) -> String {
        format!("{}systems", self.prefix)
    }

    pub fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Hash of the moves of stopped nodes' clientIds (`aliases::Move` text → '').
    pub fn moved(&self) -> String {
        format!("{}moved", self.prefix)
    }

    pub fn cluster(&self) -> String {
        format!("{}cluster", self.prefix)
    }

    pub fn node(&self, node: u32) -> String {
        format!("{}n:{}", self.prefix, node_name(node))
    }

    pub fn alive(&self, node: u32) -> String {
        format!("{}alive:{}", self.prefix, node_name(node))
    }

    /// A node's figures for the admin page (JSON), written with its heartbeat, same TTL.
    pub fn figures(&self, node: u32) -> String {
        format!("{}figures:{}", self.prefix, node_name(node))
    }

    pub fn reap_lock(&self, node: u32) -> String {
        format!("{}reap:{}", self.prefix, node_name(node))
    }

    pub fn group(&self, system: &str, group: &str) -> String {
        format!("{}g:{}:{system}:{group}", self.prefix, system.len())
    }

    pub fn history(&self, system: &str, group: &str) -> String {
        format!("{}h:{}:{system}:{group}", self.prefix, system.len())
    }

    pub fn user(&self, system: &str, user: &str) -> String {
        format!("{}u:{}:{system}:{user}", self.prefix, system.len())
    }

    pub fn groups(&self, system: &str) -> String {
        format!("{}gs:{}:{system}", self.prefix, system.len())
    }

    pub fn system(&self, system: &str) -> String {
        format!("{}s:{}:{system}", self.prefix, system.len())
    }

    /// Names a subscribed channel's content (`None`: not one of this cluster's channels).
    pub fn parse_channel<'a>(&self, c: &'a str) -> Option<Chan<'a>> {
        fn split(rest: &str) -> Option<(&str, &str)> {
            let colon = rest.find(':')?;
            let len: usize = rest[..colon].parse().ok()?;
            let sys = rest.get(colon + 1..colon + 1 + len)?;
            Some((sys, &rest[colon + 1 + len..]))
        }
        let c = c.strip_prefix(&*self.prefix)?;
        if let Some(rest) = c.strip_prefix("g:") {
            let (sys, g) = split(rest)?;
            return Some(Chan::Group(sys, g.strip_prefix(':')?));
        }
        if let Some(rest) = c.strip_prefix("s:") {
            let (sys, tail) = split(rest)?;
            return tail.is_empty().then_some(Chan::System(sys));
        }
        if c == "cluster" {
            return Some(Chan::Cluster);
        }
        let n = c.strip_prefix("n:")?;
        (n.len() == 8).then(|| u32::from_str_radix(n, 16).ok()).flatten().map(Chan::Node)
    }
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

/// A node hash field: which client is a connection of which user of which system. (A
/// [`member_field`] has digits where this has `u`: neither parses as the other.)
pub fn user_field(client_id: &str, system: &str, user: &str) -> String {
    format!("{client_id}u{}:{system}{user}", system.len())
}

/// Splits a [`user_field`] into (clientId, system, user).
pub fn parse_user_field(f: &str) -> Option<(&str, &str, &str)> {
    let id = f.get(..crate::ids::CLIENT_ID_LEN)?;
    let rest = f[id.len()..].strip_prefix('u')?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_never_collide() {
        let k = Keys::new("rc:");
        assert_eq!(k.parse_channel(&k.group("a:g:b", "c")), Some(Chan::Group("a:g:b", "c")));
        assert_eq!(k.parse_channel(&k.group("a", "b:g:c")), Some(Chan::Group("a", "b:g:c")));
        assert_ne!(k.group("a:g:b", "c"), k.group("a", "b:g:c"));
        assert_ne!(k.group("ab", "c"), k.group("a", "bc"));
        assert_eq!(k.parse_channel(&k.system("x:1")), Some(Chan::System("x:1")));
        assert_eq!(k.parse_channel(&k.node(0xdead)), Some(Chan::Node(0xdead)));
        assert_eq!(k.parse_channel(&k.cluster()), Some(Chan::Cluster));
        assert_eq!(k.group("s", "g"), "rc:g:1:s:g");
        assert_eq!(k.parse_channel("rc:g:9:ab"), None);
        assert_eq!(k.parse_channel("rc:n:zz"), None);
        assert_eq!(k.parse_channel("other"), None);
    }

    #[test]
    fn prefixes_separate_clusters() {
        let (a, b) = (Keys::new("rc:"), Keys::new("blue:"));
        assert_eq!(b.group("s", "g"), "blue:g:1:s:g");
        assert_eq!(b.systems(), "blue:systems");
        assert_eq!(a.parse_channel(&b.group("s", "g")), None);
        assert_eq!(b.parse_channel(&a.cluster()), None);
        assert_eq!(b.parse_channel(&b.node(7)), Some(Chan::Node(7)));
        let none = Keys::new("");
        assert_eq!(none.parse_channel(&none.system("x")), Some(Chan::System("x")));
    }

    #[test]
    fn member_fields_round_trip() {
        let id = "0".repeat(crate::ids::CLIENT_ID_LEN);
        for (s, g) in [("sys", "room:1"), ("a:b", ""), ("", "x"), ("日本", "語")] {
            let f = member_field(&id, s, g);
            assert_eq!(parse_member_field(&f), Some((id.as_str(), s, g)));
        }
        assert_eq!(parse_member_field("short"), None);
        for (s, u) in [("sys", "alice"), ("a:b", "u1"), ("日本", "語")] {
            let f = user_field(&id, s, u);
            assert_eq!(parse_user_field(&f), Some((id.as_str(), s, u)));
            assert_eq!(parse_member_field(&f), None, "a user field is not a member field");
            assert_eq!(parse_user_field(&member_field(&id, s, u)), None, "nor the other way");
        }
        assert_eq!(parse_member_field(&format!("{id}99:ab")), None);
    }
}
