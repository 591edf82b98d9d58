//! One method per API operation, written once for both modes: each finds the system once,
//! checks and changes the index, and calls the backend seam (`backend.rs`) for whatever
//! reaches beyond this node. Each returns [`Answer::Now`] or [`Answer::Later`] (the broker
//! answers).

use serde_json::value::RawValue;

use super::index::SysId;
use super::{Answer, Hub};
use crate::ids::{ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Frame, Op, ReplyTo, ShardMsg, UserCall};
use crate::protocol::api::{self, ApiError, Done};

impl Hub {
    /// Runs one API operation for `to`.
    pub(super) fn api(&mut self, system: &str, op: Op, to: ReplyTo) -> Answer {
        match self.local.index.find(system) {
            Some(sys) => self.api_in(sys, op, to),
            None if matches!(op, Op::Register) => self.backend.register(&mut self.local, system, to),
            None => ApiError::unknown_system(system).into(),
        }
    }

    /// Runs one API operation of a known system.
    pub(super) fn api_in(&mut self, sys: SysId, op: Op, to: ReplyTo) -> Answer {
        match op {
            Op::Register => ApiError::already_registered(self.local.index.name(sys)).into(),
            Op::SendToClients { clients, frame, message_id, strict } => {
                let done = Done::Sent(message_id.clone());
                self.send_frames(sys, clients, frame, message_id, strict, to, done)
            }
            Op::SendToGroup { group, frame, message_id } => {
                self.backend.publish(&mut self.local, sys, Some(&group), frame, message_id, Some(to))
            }
            Op::SendToSystem { frame, message_id } => {
                self.backend.publish(&mut self.local, sys, None, frame, message_id, Some(to))
            }
            Op::Bind { client, group, user_id, extend, notify } if client.node == self.local.cfg.node_id.0 => {
                self.bind(sys, client.conn, &group, user_id, extend, notify, to)
            }
            Op::Unbind { client, group, notify } if client.node == self.local.cfg.node_id.0 => {
                self.unbind(sys, client.conn, &group, notify, to)
            }
            Op::Close { client, notify } if client.node == self.local.cfg.node_id.0 => {
                self.close(sys, client.conn, notify, to)
            }
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } => {
                self.backend.forward(&mut self.local, client.node, sys, op, to)
            }
            Op::OnlineList { group, with_users } => {
                self.backend.online_list(&mut self.local, sys, group, with_users, to)
            }
            Op::SendToUser { user, frame, message_id } => {
                metrics::add(&self.local.stats.user_sends_total, 1);
                self.user_op(sys, user, UserCall::Send { frame, message_id }, to)
            }
            Op::CloseUser { user, notify } => {
                metrics::add(&self.local.stats.user_closes_total, 1);
                self.user_op(sys, user, UserCall::Close { notify }, to)
            }
            Op::UserPresence { users } => self.backend.user_presence(&mut self.local, sys, users, to),
            Op::GroupHistory { group, limit } => self.backend.group_history(&mut self.local, sys, group, limit, to),
            Op::AllGroups { page } => self.backend.all_groups(&mut self.local, sys, page, to),
        }
    }

    /// One frame to each of `clients` (here, or forwarded to their nodes): `send_to_client`
    /// (`strict`: 404 when the one client is unknown), `send_to_clients`, `send_to_user`;
    /// `done`: the answer once it is on its way.
    #[allow(clippy::too_many_arguments)]
    fn send_frames(
        &mut self,
        sys: SysId,
        clients: Vec<ClientRef>,
        frame: Frame,
        id: Box<str>,
        strict: bool,
        to: ReplyTo,
        done: Done,
    ) -> Answer {
        let me = self.local.cfg.node_id.0;
        let mut remote = Vec::new();
        let zipped = self.local.out.zipped(&frame);
        for c in clients {
            if c.node != me {
                remote.push(c);
            } else if self.local.index.client_in(sys, c.conn).is_ok() {
                let msg =
                    ShardMsg::DeliverOne { target: c.conn.in_shard(), frame: frame.clone(), zipped: zipped.clone() };
                self.local.out.send(c.conn.shard as usize, msg);
            } else if strict {
                return ApiError::unknown_client().into();
            }
        }
        if remote.is_empty() {
            return Ok(done).into();
        }
        self.backend.forward_sends(&mut self.local, sys, remote, (frame, id, done), strict, to)
    }

    /// `send_to_user` / `close_user`: the user's connections are found (this node's, or the
    /// cluster's by the broker, which hands them back as [`crate::msg::Command::UserClients`]),
    /// then [`Hub::user_call`] acts on them.
    fn user_op(&mut self, sys: SysId, user: Box<str>, call: UserCall, to: ReplyTo) -> Answer {
        if let UserCall::Close { .. } = call {
            if let Some(e) = self.backend.blocked(&mut self.local) {
                return e.into();
            }
        }
        match self.backend.user_clients(&mut self.local, sys, user, call, to) {
            Ok((clients, call)) => self.user_call(sys, clients, call, to),
            Err(later) => later,
        }
    }

    /// Acts on the connections of a user: one frame shared by all of them, or each closed as
    /// by `close_client` (its session ended).
    pub(super) fn user_call(&mut self, sys: SysId, clients: Vec<ClientRef>, call: UserCall, to: ReplyTo) -> Answer {
        // What the call reaches: clients here still connected, and those of nodes alive (a node
        // that died keeps its connections in Redis until it is reaped).
        let me = self.local.cfg.node_id.0;
        let (index, backend) = (&self.local.index, &self.backend);
        let clients: Vec<ClientRef> = clients
            .into_iter()
            .filter(|c| if c.node == me { index.client_in(sys, c.conn).is_ok() } else { backend.alive(c.node) })
            .collect();
        let n = clients.len();
        match call {
            UserCall::Send { frame, message_id } => {
                let done = Done::Body(api::user_sent_body(&message_id, n));
                self.send_frames(sys, clients, frame, message_id, false, to, done)
            }
            UserCall::Close { notify } => {
                for c in clients {
                    match c.node == me {
                        true => self.kick(c.conn, notify),
                        false => self.backend.forward_quietly(&mut self.local, sys, Op::Close { client: c, notify }),
                    }
                }
                self.backend.after_change(to, Ok(Done::Body(api::clients_body(n))))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn bind(
        &mut self,
        sys: SysId,
        conn: ConnId,
        group: &str,
        user_id: Option<Box<str>>,
        extend: Box<str>,
        notify: bool,
        to: ReplyTo,
    ) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        // A bind naming no userId: the connection's user (its connect token's sub), if any.
        let known = self.local.index.users.get(&conn).map(|u| Box::<str>::from(&**u));
        let user_id = user_id.or(known).unwrap_or_default();
        match self.join_group(sys, conn, group, user_id.clone(), extend, notify) {
            Ok(()) => {
                // A connection without a user takes the first userId a bind names.
                if !user_id.is_empty() && !self.local.index.users.contains_key(&conn) {
                    self.give_user(sys, conn, &user_id);
                }
                self.backend.after_change(to, Ok(Done::Empty))
            }
            Err(e) => e.into(),
        }
    }

    /// Puts `conn` in `group` (or, if it is in already, only updates its info, without a
    /// notice): a bind, or a connect token's group.
    pub(super) fn join_group(
        &mut self,
        sys: SysId,
        conn: ConnId,
        group: &str,
        user_id: Box<str>,
        extend: Box<str>,
        notify: bool,
    ) -> Result<(), ApiError> {
        let shards = self.local.shards();
        let (client, system) = self.local.index.client_and_system(sys, conn)?;
        client.user_id = user_id;
        client.extend = extend;
        let max = self.local.cfg.max_groups_per_client;
        let (key, new) = match client.groups.iter().find(|g| ***g == *group) {
            // Already a member: only its info may change, without a notice.
            Some(k) => (k.clone(), false),
            None if client.groups.len() >= max => {
                metrics::add(&self.local.stats.group_limit_refusals_total, 1);
                let mut e = ApiError::bad_request(format!(
                    "the client is in {max} groups already, the most max_groups_per_client allows: unbind it from one first"
                ));
                e.bound = Some("max_groups_per_client");
                return Err(e);
            }
            None => {
                let (k, _, created) = system.group_entry(group, shards);
                if created {
                    metrics::add(&self.local.stats.groups, 1);
                }
                client.groups.push(k.clone());
                (k, true)
            }
        };
        self.backend.join(&mut self.local, sys, &key, conn, new, notify);
        Ok(())
    }

    fn unbind(&mut self, sys: SysId, conn: ConnId, group: &str, notify: bool, to: ReplyTo) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        let client = match self.local.index.client_and_system(sys, conn) {
            Ok((c, _)) => c,
            Err(e) => return e.into(),
        };
        if let Some(pos) = client.groups.iter().position(|g| **g == *group) {
            let key = client.groups.swap_remove(pos);
            self.backend.leave(&mut self.local, sys, &key, conn, None, notify);
        }
        self.backend.after_change(to, Ok(Done::Empty))
    }

    fn close(&mut self, sys: SysId, conn: ConnId, notify: bool, to: ReplyTo) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        if let Err(e) = self.local.index.client_in(sys, conn) {
            return e.into();
        }
        self.kick(conn, notify);
        self.backend.after_change(to, Ok(Done::Empty))
    }

    /// Removes a client of this node and closes it with 1000 (its session, if any, ends).
    fn kick(&mut self, conn: ConnId, notify: bool) {
        self.remove_client(conn, notify, crate::webhooks::Gone::Kicked);
        let close = ShardMsg::Close { target: conn.in_shard(), code: 1000, reason: "closed by server" };
        self.local.out.send(conn.shard as usize, close);
    }

    /// A client published to a group it is in (opt-in: `client_publish`).
    pub(super) fn publish(&mut self, conn: ConnId, group: &str, code: i64, msg: &str, data: &RawValue) {
        let reply = |hub: &mut Hub, text: &str| {
            let frame = crate::protocol::ws::frame(crate::protocol::ws::OP_TEXT, text.as_bytes());
            hub.local.out.send(conn.shard as usize, ShardMsg::Tell { target: conn.in_shard(), frame });
        };
        let Some(client) = self.local.index.clients.get(&conn) else { return };
        if !client.groups.iter().any(|g| **g == *group) {
            return reply(self, r#"{"cmd":"error","msg":"publish: not a member of that group"}"#);
        }
        let id = crate::ids::message_id();
        let f = api::push_frame(&id, &client.user_id, code, msg, Some(data));
        let sys = client.system;
        if let Answer::Now(Err(e)) = self.backend.publish(&mut self.local, sys, Some(group), f, id.into(), None) {
            let text = format!(r#"{{"cmd":"error","msg":{}}}"#, api::json_string(&e.msg));
            reply(self, &text);
        }
    }
}
