//! The seam between the index and where its effects go: one implementation per mode, side by
//! side — `single.rs` (everything in this hub's index, now) and `cluster.rs`
//! ([`ClusterSide`]: through Redis, by the broker). The operations in `ops.rs` and the
//! endpoints (`endpoints/`) call these methods for what several of them share and the modes do
//! differently; each method here only picks the mode's implementation (what both share —
//! taking a leaving member out of the index — stays here). Reads differ per mode (from the
//! index, or from Redis) and are not here: each is in its endpoint's file, both modes side by
//! side (the user's connections, which two endpoints share, in `ops.rs`).
//!
//! The delivery each mode promises: single node, a frame reaches every member connected when
//! it is published, in the hub's order, at most once. Cluster, a group's frames reach every
//! node's members in Redis's one order, at most once (Redis pub/sub); what a node misses is
//! counted and makes its sessions unrecoverable from before it (`cluster::Losses`).
//!
//! | seam | single node | cluster |
//! | --- | --- | --- |
//! | `connected` / `system_left` | member of its system at once | also (un)subscribe the system's channel; member once subscribed |
//! | `publish` | broadcast to the members now | published to Redis, delivered when it comes back |
//! | `join` / `leave` | member set and notice now | Lua step in Redis (membership and notices in Redis's order) |
//! | `user_came` / `user_went` | `user_online`/`user_offline` from this node's count | a Lua step counts the user's connections in Redis; the one that makes it 1 / 0 sends the webhook |
//! | `forward` | (no other node) | to the client's node, if alive |
//! | `after_change` | answered now | answered once Redis has the change |

use std::sync::Arc;

use bytes::Bytes;

use super::cluster::ClusterSide;
use super::index::{Client, SysId};
use super::outbox::notice;
use super::{single, Answer, Local};
use crate::cluster::{BrokerCmd, BrokerLink};
use crate::ids::{ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Frame, Op, ReplyTo};
use crate::protocol::api::{self, ApiError, ApiResult, Done};
use crate::webhooks::Gone;

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
            Backend::Single => single::connected(l, sys, conn, welcomed, user),
            Backend::Cluster(c) => c.connected(l, sys, conn, user),
        }
    }

    /// A client of `sys` left this node (`why`, for webhooks), after leaving its groups.
    pub fn system_left(&mut self, l: &mut Local, sys: SysId, conn: ConnId, why: Gone) {
        match self {
            Backend::Single => single::system_left(l, sys, conn, why),
            Backend::Cluster(c) => c.system_left(l, sys, conn, why),
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
            Backend::Single => single::publish(l, sys, group, frame, id),
            Backend::Cluster(c) => c.publish(l, sys, group, frame, id, to),
        }
    }

    /// `conn` is now in group `key` of `sys` (`new`: it was not before; else only its info
    /// may have changed). Members are told (1001) if `new` and `notify`.
    pub fn join(&mut self, l: &mut Local, sys: SysId, key: &Arc<str>, conn: ConnId, new: bool, notify: bool) {
        match self {
            Backend::Single if new => single::join(l, sys, key, conn, notify),
            Backend::Single => {}
            Backend::Cluster(c) => c.join(l, sys, key, conn, new, notify),
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
        let id = l.id(conn);
        let Local { index, out, cfg, stats, hooks, .. } = l;
        let Some(client) = removed.or_else(|| index.clients.get(&conn)) else { return };
        let system = &mut index.systems[sys.index()];
        match self {
            Backend::Single => single::leaving(hooks.as_ref(), system, key, conn, &id, client),
            Backend::Cluster(c) => c.leaving(system, key, &id, client, notify),
        }
        let Some(members) = system.groups.get_mut(&**key) else { return };
        if removed.is_some() {
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

    /// `conn` is a connection of `user` from now on (the index has it): `user_online` if it
    /// is the user's first in the system (single node: here; cluster: across the cluster, as
    /// Redis decides).
    pub fn user_came(&mut self, l: &mut Local, sys: SysId, conn: ConnId, user: &Arc<str>) {
        match self {
            Backend::Single => single::user_changed(l, sys, user, true),
            Backend::Cluster(c) => c.user_changed(l, sys, conn, user, true),
        }
    }

    /// `conn`, a connection of `user`, is gone (the index let it go): `user_offline` if it
    /// was the user's last.
    pub fn user_went(&mut self, l: &mut Local, sys: SysId, conn: ConnId, user: &Arc<str>) {
        match self {
            Backend::Single => single::user_changed(l, sys, user, false),
            Backend::Cluster(c) => c.user_changed(l, sys, conn, user, false),
        }
    }

    /// Whether node `node` (not this one) is known alive: its clients can be reached.
    pub fn alive(&self, node: u32) -> bool {
        matches!(self, Backend::Cluster(c) if c.live.contains(&node))
    }

    /// A call about a client of another node whose answer nobody waits for (`close_user`'s
    /// closes); dropped for a node not alive (its clients are gone with it).
    pub fn forward_quietly(&mut self, l: &mut Local, sys: SysId, op: Op) {
        if let Backend::Cluster(c) = self {
            c.forward_quietly(l, sys, op);
        }
    }

    /// An operation about a client of node `node` (not this one).
    pub fn forward(&mut self, l: &mut Local, node: u32, sys: SysId, op: Op, to: ReplyTo) -> Answer {
        match self {
            Backend::Single => ApiError::unknown_client().into(),
            Backend::Cluster(c) => c.forward(l, node, sys, op, to),
        }
    }

    /// The part of a send (`send_to_client(s)`, `send_to_user`: its frame, messageId and the
    /// answer once sent) for other nodes' clients.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_sends(
        &mut self,
        l: &mut Local,
        sys: SysId,
        remote: Vec<(u32, ClientRef)>,
        send: (Frame, Box<str>, Done),
        strict: bool,
        to: ReplyTo,
    ) -> Answer {
        match self {
            Backend::Single if strict => ApiError::unknown_client().into(),
            Backend::Single => Ok(send.2).into(),
            Backend::Cluster(c) => c.forward_sends(l, sys, remote, send, strict, to),
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

    /// Whether shards may answer sends to a system this hub confirmed registered, and name it
    /// by this hub's index (`KnownSystem`): a single node only. Cluster mode answers a send
    /// once Redis has it (one order cluster-wide), and connects wait for Redis's word.
    pub fn shards_answer(&self) -> bool {
        matches!(self, Backend::Single)
    }

    /// Nodes seen alive or dead (cluster mode); returns those that were alive and are not.
    pub fn nodes(&mut self, alive: Vec<u32>, dead: Vec<u32>) -> Vec<u32> {
        let Backend::Cluster(c) = self else { return Vec::new() };
        let gone: Vec<u32> = dead.into_iter().filter(|n| c.live.remove(n)).collect();
        c.live.extend(alive);
        gone
    }
}
