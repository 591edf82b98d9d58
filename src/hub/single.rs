//! The single-node implementation of the backend seam ([`super::backend`]): everything happens
//! in this hub's index, now — membership, notices, webhooks, the groups' kept messages. Its
//! cluster counterpart is [`super::cluster::ClusterSide`], side by side.
//!
//! Delivery: a frame published here reaches every member connected at that moment, in the
//! hub's order (one thread), at most once; a group's history keeps the last `history_size`
//! frames for `history_ttl`.

use std::sync::Arc;
use std::time::Instant;

use super::index::{Client, SysId, System};
use super::outbox::notice;
use super::{Answer, Local};
use crate::ids::{self, ConnId};
use crate::msg::{Frame, ShardMsg};
use crate::protocol::api::{self, Done};
use crate::webhooks::{Gone, Kind, Membership, Webhooks};

/// A new client of `sys`: a member of its system at once; welcomed unless the shard did.
pub(super) fn connected(l: &mut Local, sys: SysId, conn: ConnId, welcomed: bool, user: Option<Box<str>>) {
    l.index.system(sys).members.insert(conn);
    if !welcomed {
        // Naming the system lets the shard welcome its next clients itself.
        let system = Some((l.index.name(sys).clone(), sys.raw()));
        l.out.send(conn.shard as usize, ShardMsg::Welcome { to: conn.in_shard(), result: Ok(()), system });
    }
    l.emit(Kind::ClientConnected { user_id: user }, l.index.name(sys), None, Some(conn));
}

pub(super) fn system_left(l: &mut Local, sys: SysId, conn: ConnId, why: Gone) {
    l.emit(Kind::ClientDisconnected(why), l.index.name(sys), None, Some(conn));
}

/// Broadcast to the members now (and kept, for a group with history).
pub(super) fn publish(l: &mut Local, sys: SysId, group: Option<&str>, frame: Frame, id: Box<str>) -> Answer {
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

/// A member now; the members are told (1001) if `notify`, the webhooks hear of it.
pub(super) fn join(l: &mut Local, sys: SysId, key: &Arc<str>, conn: ConnId, notify: bool) {
    let node = l.cfg.node_id.0;
    let Local { index, out, cfg, stats, hooks, .. } = l;
    let system = &mut index.systems[sys.index()];
    let Some(client) = index.clients.get(&conn) else { return };
    let Some(members) = system.groups.get_mut(&**key) else { return };
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

/// Before `conn` leaves group `key` of `system`: the webhooks hear of it.
pub(super) fn leaving(
    hooks: Option<&Webhooks>,
    system: &System,
    key: &Arc<str>,
    conn: ConnId,
    id: &str,
    client: &Client,
) {
    let Some(h) = hooks else { return };
    let size_after = system.groups.get(&**key).map(|m| m.len() - usize::from(m.contains(conn)));
    h.membership(Membership {
        system: system.name.clone(),
        group: key.clone(),
        client: id.into(),
        user_id: client.user_id.clone(),
        extend: client.extend.clone(),
        joined: false,
        size_after,
    });
}

/// A connection of `user` came (`online`) or went (the index has the change): the webhooks
/// hear of the user's first and last.
pub(super) fn user_changed(l: &mut Local, sys: SysId, user: &Arc<str>, online: bool) {
    if let Some(h) = &l.hooks {
        let n = l.index.user_conns(sys, user).len();
        h.user(l.index.name(sys).clone(), user.clone(), online, Some(n));
    }
}

/// Keeps a message sent to group `g` in its history: while the group has members, or a
/// history of its own still (it outlives them by `history_ttl`).
fn keep(system: &mut System, g: &str, frame: Frame, size: usize) {
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
