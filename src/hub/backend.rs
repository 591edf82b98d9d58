//! The seam between the index and where its effects go: a single node does everything here,
//! a cluster goes through Redis (the broker). The operations in `ops.rs` call only these
//! methods for anything that differs between the two, so neither mode is a special case
//! threaded through them.
//!
//! | seam | single node | cluster |
//! | --- | --- | --- |
//! | `connected` / `system_left` | member of its system at once | also (un)subscribe the system's channel; member once subscribed |
//! | `register` | added to the index | `SADD` in Redis, answered later |
//! | `publish` | broadcast to the members now | published to Redis, delivered when it comes back |
//! | `join` / `leave` | member set and notice now | Lua step in Redis (membership and notices in Redis's order) |
//! | `online_list` / `all_groups` | read from the index | read from Redis, answered later |
//! | `forward` | (no other node) | to the client's node, if alive |
//! | `after_change` | answered now | answered once Redis has the change |

use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::cluster::ClusterSide;
use super::index::{Client, SysId};
use super::outbox::notice;
use super::{Answer, Local};
use crate::cluster::{BrokerCmd, BrokerLink};
use crate::ids::{self, ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Frame, Op, ReplyTo, ShardMsg};
use crate::protocol::api::{self, ApiError, ApiResult, Done, Page};
use crate::protocol::ws as wsp;
use crate::webhooks::{Gone, Kind, Membership};

/// Single node, or cluster mode with its broker.
pub(super) enum Backend {
    Single,
    Cluster(Box<ClusterSide>),
}

impl Backend {
    pub fn new(broker: Option<BrokerLink>) -> Self {
        match broker {
            None => Backend::Single,
            Some(link) => Backend::Cluster(Box::new(ClusterSide::new(link))),
        }
    }

    pub fn cluster(&mut self) -> Option<&mut ClusterSide> {
        match self {
            Backend::Single => None,
            Backend::Cluster(c) => Some(c),
        }
    }

    /// A new client of `sys`: it gets its connect frame once it can receive the system's sends.
    /// `welcomed`: the shard already sent the connect frame. `user`: its connect token's `sub`.
    pub fn connected(&mut self, l: &mut Local, sys: SysId, conn: ConnId, welcomed: bool, user: Option<Box<str>>) {
        match self {
            Backend::Single => {
                l.index.system(sys).members.insert(conn);
                if !welcomed {
                    // Naming the system lets the shard welcome its next clients itself.
                    let system = Some((l.index.name(sys).clone(), sys.raw()));
                    l.out.send(conn.shard as usize, ShardMsg::Welcome { to: conn.in_shard(), result: Ok(()), system });
                }
                l.emit(Kind::ClientConnected { user_id: user }, l.index.name(sys), None, Some(conn));
            }
            // The client becomes a member (and gets its connect frame) once this node surely
            // receives the system's sends from other nodes.
            Backend::Cluster(c) => {
                let system = l.index.name(sys).clone();
                let welcome = Some((conn, user));
                c.link.send(BrokerCmd::SystemSub { system, on: true, welcome, left: None });
            }
        }
    }

    /// A client of `sys` left this node (`why`, for webhooks), after leaving its groups.
    pub fn system_left(&mut self, l: &mut Local, sys: SysId, conn: ConnId, why: Gone) {
        match self {
            Backend::Single => l.emit(Kind::ClientDisconnected(why), l.index.name(sys), None, Some(conn)),
            Backend::Cluster(c) => {
                let left = Some((conn, why));
                c.link.send(BrokerCmd::SystemSub { system: l.index.name(sys).clone(), on: false, welcome: None, left });
            }
        }
    }

    /// `register` of a system this node has not seen.
    pub fn register(&mut self, l: &mut Local, name: &str, to: ReplyTo) -> Answer {
        match self {
            Backend::Single => {
                let shards = l.shards();
                match l.index.add_system(name, shards) {
                    Some(_) => Ok(Done::Empty).into(),
                    None => ApiError::already_registered(name).into(),
                }
            }
            Backend::Cluster(c) => c.ask(l, to, |to| BrokerCmd::Register { system: name.into(), to }),
        }
    }

    /// A frame for the members of `group` (or of the whole system): `send_to_group`,
    /// `send_to_system`, and (without `to`) a client's publish.
    pub fn publish(
        &mut self,
        l: &mut Local,
        sys: SysId,
        group: Option<&str>,
        frame: Frame,
        id: Box<str>,
        to: Option<ReplyTo>,
    ) -> Answer {
        match self {
            Backend::Single => {
                let system = l.index.system(sys);
                let members = match group {
                    Some(g) => system.groups.get_mut(g),
                    None => Some(&mut system.members),
                };
                if let Some(m) = members {
                    l.out.broadcast(m, &frame);
                }
                if let (Some(g), true) = (group, l.cfg.history_size > 0) {
                    keep(system, g, frame, l.cfg.history_size);
                }
                Ok(Done::Sent(id)).into()
            }
            // Every node's members (this one's too) get the frame through Redis, so all of
            // them see a group's frames in one order; the caller is answered once Redis has it.
            // While Redis is unreachable nothing is delivered (503): a retry cannot duplicate.
            Backend::Cluster(c) => {
                let system = l.index.name(sys).clone();
                let group: Option<Arc<str>> = group.map(Into::into);
                let history = group.is_some() && l.cfg.history_size > 0;
                match to {
                    Some(to) => c.ask(l, to, |conn| {
                        let answer = Some((conn, Done::Sent(id).body()));
                        BrokerCmd::Publish { system, group, frame, answer, history }
                    }),
                    None if c.link.usable() => {
                        c.link.send(BrokerCmd::Publish { system, group, frame, answer: None, history });
                        Ok(Done::Sent(id)).into()
                    }
                    None => c.unavailable(l).into(),
                }
            }
        }
    }

    /// `conn` is now in group `key` of `sys` (`new`: it was not before; else only its info
    /// may have changed). Members are told (1001) if `new` and `notify`.
    pub fn join(&mut self, l: &mut Local, sys: SysId, key: &Arc<str>, conn: ConnId, new: bool, notify: bool) {
        let node = l.cfg.node_id.0;
        let Local { index, out, cfg, stats, hooks } = l;
        let system = &mut index.systems[sys.index()];
        let Some(client) = index.clients.get(&conn) else { return };
        match self {
            Backend::Single => {
                let Some(members) = system.groups.get_mut(&**key) else { return };
                if new {
                    members.insert(conn);
                    if notify {
                        notice(out, cfg, stats, members, api::ONLINE, &ids::client_id(node, conn), client);
                    }
                    if let Some(h) = hooks {
                        h.membership(Membership {
                            system: system.name.clone(),
                            group: key.clone(),
                            client: ids::client_id(node, conn).into(),
                            user_id: client.user_id.clone(),
                            extend: client.extend.clone(),
                            joined: true,
                            size_after: Some(members.len()),
                        });
                    }
                }
            }
            // Membership here follows Redis's order: the client becomes a member when its
            // join comes back (see `Hub::frame_from_redis`).
            Backend::Cluster(c) => {
                let id = ids::client_id(node, conn);
                let notice = (new && notify).then(|| notice_frame(api::ONLINE, &id, client));
                let info = crate::cluster::info(&client.user_id, &client.extend);
                let (system, group) = (system.name.clone(), key.clone());
                c.link.send(BrokerCmd::Join { system, group, client: id, info, notice, new });
            }
        }
    }

    /// `conn` left group `key` of `sys`. `removed`: the client, already taken out of the
    /// index with its connection gone (else it is still in the index). The remaining members
    /// are told (1002) if `notify`; an empty group is forgotten.
    #[allow(clippy::too_many_arguments)]
    pub fn leave(
        &mut self,
        l: &mut Local,
        sys: SysId,
        key: &Arc<str>,
        conn: ConnId,
        removed: Option<&Client>,
        notify: bool,
    ) {
        let id = ids::client_id(l.cfg.node_id.0, conn);
        let Local { index, out, cfg, stats, hooks } = l;
        let system = &mut index.systems[sys.index()];
        let gone = removed.is_some();
        let Some(client) = removed.or_else(|| index.clients.get(&conn)) else { return };
        if let Backend::Cluster(c) = self {
            let notice = notify.then(|| notice_frame(api::OFFLINE, &id, client));
            let (system, group) = (system.name.clone(), key.clone());
            let info = crate::cluster::info(&client.user_id, &client.extend);
            c.link.send(BrokerCmd::Leave { system, group, client: id.clone(), notice, info });
        } else if let Some(h) = hooks {
            let size_after = system.groups.get(&**key).map(|m| m.len() - usize::from(m.contains(conn)));
            h.membership(Membership {
                system: system.name.clone(),
                group: key.clone(),
                client: id.clone().into(),
                user_id: client.user_id.clone(),
                extend: client.extend.clone(),
                joined: false,
                size_after,
            });
        }
        let Some(members) = system.groups.get_mut(&**key) else { return };
        if gone {
            members.remove_gone(conn);
        } else {
            members.remove(conn);
        }
        if members.is_empty() {
            system.drop_if_empty(key);
            metrics::sub(&stats.groups, 1);
        } else if notify && matches!(self, Backend::Single) {
            notice(out, cfg, stats, members, api::OFFLINE, &id, client);
        }
    }

    /// `get_online_list`.
    pub fn online_list(&mut self, l: &mut Local, sys: SysId, group: Box<str>, to: ReplyTo) -> Answer {
        match self {
            Backend::Single => {
                let node = l.cfg.node_id.0;
                let system = l.index.system(sys);
                let ids: Vec<String> = match system.groups.get(&*group) {
                    Some(m) => m.iter().map(|c| ids::client_id(node, c)).collect(),
                    None => Vec::new(),
                };
                Ok(Done::Body(api::online_list_body(&ids))).into()
            }
            Backend::Cluster(c) => {
                let system = l.index.name(sys).to_string().into();
                c.ask(l, to, |to| BrokerCmd::OnlineList { system, group, to })
            }
        }
    }

    /// `get_group_history`: the group's last `limit` messages, oldest first.
    pub fn group_history(&mut self, l: &mut Local, sys: SysId, group: Box<str>, limit: usize, to: ReplyTo) -> Answer {
        match self {
            Backend::Single => {
                let cutoff = Instant::now().checked_sub(l.cfg.history_ttl);
                let system = l.index.system(sys);
                let kept = system.histories.get(&*group);
                let recent = kept.into_iter().flatten().filter(|(t, _)| cutoff.is_none_or(|c| *t >= c));
                let n = recent.clone().count();
                let last = recent.skip(n.saturating_sub(limit)).map(|(_, f)| wsp::payload(f));
                Ok(Done::Body(api::history_body(last))).into()
            }
            Backend::Cluster(c) => {
                let system = l.index.name(sys).to_string().into();
                c.ask(l, to, |to| BrokerCmd::GroupHistory { system, group, limit, to })
            }
        }
    }

    /// `get_all_groups`: the whole map while it fits in one answer, or one page.
    pub fn all_groups(&mut self, l: &mut Local, sys: SysId, page: Option<Page>, to: ReplyTo) -> Answer {
        let paged = page.is_some();
        let page = page.unwrap_or(Page { after: "".into(), limit: l.cfg.groups_page_size });
        match self {
            Backend::Single => {
                let node = l.cfg.node_id.0;
                let system = l.index.system(sys);
                let from = match &*page.after {
                    "" => Bound::Unbounded,
                    after => Bound::Excluded(after),
                };
                let names: Vec<&Arc<str>> =
                    system.names.range::<str, _>((from, Bound::Unbounded)).take(page.limit + 1).collect();
                let members = |g: &str| match system.groups.get(g) {
                    Some(m) => m.iter().map(|c| ids::client_id(node, c)).collect(),
                    None => Vec::new(),
                };
                api::groups_page(&names, page.limit, paged, members).map(Done::Body).into()
            }
            Backend::Cluster(c) => {
                let system = l.index.name(sys).to_string().into();
                c.ask(l, to, |to| BrokerCmd::AllGroups { system, page, paged, to })
            }
        }
    }

    /// An operation about a client of node `node` (not this one).
    pub fn forward(&mut self, l: &mut Local, node: u32, sys: SysId, op: Op, to: ReplyTo) -> Answer {
        match self {
            Backend::Single => ApiError::unknown_client().into(),
            Backend::Cluster(c) => c.forward(l, node, sys, op, to),
        }
    }

    /// The part of a `send_to_client(s)` for other nodes' clients.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_sends(
        &mut self,
        l: &mut Local,
        sys: SysId,
        remote: Vec<ClientRef>,
        frame: Frame,
        id: Box<str>,
        strict: bool,
        to: ReplyTo,
    ) -> Answer {
        match self {
            Backend::Single if strict => ApiError::unknown_client().into(),
            Backend::Single => Ok(Done::Sent(id)).into(),
            Backend::Cluster(c) => c.forward_sends(l, sys, remote, frame, id, strict, to),
        }
    }

    /// Whether presence changes cannot be made now (cluster mode without a usable broker).
    pub fn blocked(&mut self, l: &mut Local) -> Option<ApiError> {
        match self {
            Backend::Cluster(c) if !c.link.usable() => Some(c.unavailable(l)),
            _ => None,
        }
    }

    /// A successful presence change: cluster mode answers once Redis has it (read-your-writes
    /// from any node).
    pub fn after_change(&mut self, to: ReplyTo, r: ApiResult) -> Answer {
        match (self, r) {
            (Backend::Cluster(c), Ok(done)) => {
                c.link.send(BrokerCmd::Answer { to, status: 200, body: done.body() });
                Answer::Later
            }
            (_, r) => Answer::Now(r),
        }
    }

    /// An answer for another node's caller.
    pub fn answer_remote(&mut self, to: ReplyTo, status: u16, body: Bytes) {
        if let Backend::Cluster(c) = self {
            c.link.send(BrokerCmd::Answer { to, status, body });
        }
    }

    /// A relay message for `node`; false if that node is not alive (or this is one node).
    pub fn send_to_node(&mut self, node: u32, payload: Vec<u8>) -> bool {
        match self {
            Backend::Cluster(c) if c.live.contains(&node) => {
                c.link.send(BrokerCmd::ToNode { node, payload });
                true
            }
            _ => false,
        }
    }

    /// Nodes seen alive or dead (cluster mode); returns those that were alive and are not.
    pub fn nodes(&mut self, alive: Vec<u32>, dead: Vec<u32>) -> Vec<u32> {
        let Backend::Cluster(c) = self else { return Vec::new() };
        let gone: Vec<u32> = dead.into_iter().filter(|n| c.live.remove(n)).collect();
        c.live.extend(alive);
        gone
    }
}

/// Keeps a message sent to group `g` in its history (single node): while the group has
/// members, or a history of its own still (it outlives them by `history_ttl`).
fn keep(system: &mut super::index::System, g: &str, frame: Frame, size: usize) {
    let key = match (system.histories.get_key_value(g), system.groups.get_key_value(g)) {
        (Some((k, _)), _) | (None, Some((k, _))) => k.clone(),
        (None, None) => return,
    };
    let h = system.histories.entry(key).or_default();
    if h.len() == size {
        h.pop_front();
    }
    h.push_back((Instant::now(), frame));
}

/// A 1001/1002 notice about `client` (cluster mode builds it here, Redis decides who gets it).
fn notice_frame(code: i64, client_id: &str, c: &Client) -> Frame {
    api::notice_frame(code, &ids::message_id(), client_id, &c.user_id, &c.extend)
}
