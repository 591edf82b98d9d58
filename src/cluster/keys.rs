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
//!
//! On a Redis Cluster ([`Keys::tagged`]) a group's hash (its channel) and its history carry one
//! hash tag, `rc:g:{3:sys:grp}` and `rc:h:{3:sys:grp}`, so they and the Lua steps over them stay
//! in one slot while different groups spread over the masters; every other step touches one
//! key. (The prefix must then hold no braces: `check_prefix`.)

use std::sync::Arc;

/// The names of one cluster's keys and channels: its prefix and the layout below it.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: Arc<str>,
    /// A Redis Cluster's layout: group keys in braces (their hash tag).
    tagged: bool,
}

/// A node id as written in keys and in `rc:nodes`: 8 hex digits, as in clientIds.
pub fn node_name(node: u32) -> String {
    format!("{node:08x}")
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { prefix: prefix.into(), tagged: false }
    }

    /// The layout for a Redis Cluster (group keys tagged), or for one Redis (`false`: the names
    /// as they always were, so nodes of either version share one Redis).
    pub fn tagged(self, tagged: bool) -> Self {
        Keys { tagged, ..self }
    }

    /// The layout `--redis` calls for.
    pub fn for_config(cfg: &crate::config::Config) -> Self {
        Keys::new(&cfg.redis_prefix).tagged(cfg.redis.as_deref().is_some_and(super::endpoint::is_cluster))
    }

    /// Whether names carry hash tags (a Redis Cluster).
    pub fn is_tagged(&self) -> bool {
        self.tagged
    }

    /// The command that publishes on a channel: `SPUBLISH` (sharded) on a Redis Cluster.
    pub fn publish(&self) -> &'static str {
        if self.tagged {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }

    fn group_body(&self, kind: &str, system: &str, group: &str) -> String {
        match self.tagged {
            true => format!("{}{kind}:{{{}:{system}:{group}}}", self.prefix, system.len()),
            false => format!("{}{kind}:{}:{system}:{group}", self.prefix, system.len()),
        }
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
        self.group_body("g", system, group)
    }

    pub fn history(&self, system: &str, group: &str) -> String {
        self.group_body("h", system, group)
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
            let rest = match self.tagged {
                true => rest.strip_prefix('{')?.strip_suffix('}')?,
                false => rest,
            };
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

/// On a Redis Cluster the prefix may hold no brace: one would be read as every key's hash
/// tag, putting them all in one slot.
pub fn check_prefix(cfg: &crate::config::Config) -> Result<(), String> {
    let cluster = cfg.redis.as_deref().is_some_and(super::endpoint::is_cluster);
    match cluster && cfg.redis_prefix.contains(['{', '}']) {
        true => Err(format!(
            "--redis-prefix {:?}: no braces on a Redis Cluster (they would make one hash tag of every key)",
            cfg.redis_prefix
        )),
        false => Ok(()),
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
    fn a_redis_cluster_keeps_each_groups_keys_in_one_slot() {
        let k = Keys::new("rc:").tagged(true);
        assert_eq!(k.group("s", "g"), "rc:g:{1:s:g}");
        assert_eq!(k.history("s", "g"), "rc:h:{1:s:g}");
        for (s, g) in [("s", "g"), ("a}b", "c"), ("x", "y}z{"), ("", "")] {
            let slot = super::super::sharded::slot(k.group(s, g).as_bytes());
            assert_eq!(slot, super::super::sharded::slot(k.history(s, g).as_bytes()), "{s} {g}");
            assert_eq!(k.parse_channel(&k.group(s, g)), Some(Chan::Group(s, g)));
        }
        assert_ne!(
            super::super::sharded::slot(k.group("s", "g1").as_bytes()),
            super::super::sharded::slot(k.group("s", "g2").as_bytes()),
            "groups spread"
        );
        assert_eq!(k.parse_channel("rc:g:1:s:g"), None, "an untagged name is another layout's");
        assert_eq!(Keys::new("rc:").parse_channel(&k.group("s", "g")), None);
        assert_eq!((k.publish(), Keys::new("rc:").publish()), ("SPUBLISH", "PUBLISH"));
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
