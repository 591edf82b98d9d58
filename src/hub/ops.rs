//! The hub's operations several endpoints (`endpoints/`) or a client's own actions share: a
//! frame to some clients, here or forwarded (`send_to_client(s)`, `send_to_user`), acting on
//! a user's connections (`send_to_user`, `close_user`), joining a group (`bind_to_group`, a
//! connect token's groups), closing a client (`close_client`, `close_user`) and a client's
//! publish. Each is written once for both modes: what the modes do differently goes through
//! the backend seam (`backend.rs`), but for the user's connections, read here from the index
//! or, in cluster mode, from Redis (`UserConnsRead`, a `cluster::read::Read`).

use redis::Value;
use serde_json::value::RawValue;

use super::index::SysId;
use super::{Answer, Hub};
use crate::cluster::keys::Keys;
use crate::cluster::read::{self, More, Read, Then};
use crate::ids::{ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Command, Frame, Op, ReplyTo, ShardMsg, UserCall};
use crate::protocol::api::{self, ApiError, Done};

impl Hub {
    /// One frame to each of `clients` (here, or forwarded to their nodes): `send_to_client`
    /// (`strict`: 404 when the one client is unknown), `send_to_clients`, `send_to_user`;
    /// `done`: the answer once it is on its way.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_frames(
        &mut self,
        sys: SysId,
        clients: Vec<ClientRef>,
        frame: Frame,
        id: Box<str>,
        strict: bool,
        to: ReplyTo,
        done: Done,
    ) -> Answer {
        use crate::aliases::Route;
        let mut remote = Vec::new();
        let zipped = self.local.out.zipped(&frame);
        for c in clients {
            match self.local.route(c) {
                Route::Node(node) => remote.push((node, c)),
                Route::Here(conn) if self.local.index.client_in(sys, conn).is_ok() => match self.handoff.moving(conn) {
                    true => self.pass_on_send(conn, &frame),
                    false => {
                        let msg = ShardMsg::DeliverOne {
                            target: conn.in_shard(),
                            frame: frame.clone(),
                            zipped: zipped.clone(),
                        };
                        self.local.out.send(conn.shard as usize, msg);
                    }
                },
                _ if strict => return ApiError::unknown_client().into(),
                _ => {}
            }
        }
        if remote.is_empty() {
            return Ok(done).into();
        }
        self.backend.forward_sends(&mut self.local, sys, remote, (frame, id, done), strict, to)
    }

    /// `send_to_user` / `close_user`: the user's connections are found (this node's, or the
    /// cluster's, read from Redis by the broker, which hands them back as
    /// [`crate::msg::Command::UserClients`]), then [`Hub::user_call`] acts on them.
    pub(super) fn user_op(&mut self, sys: SysId, user: Box<str>, call: UserCall, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            None => {
                let node = l.cfg.node_id.0;
                let conns = l.index.user_conns(sys, &user).iter().map(|&conn| ClientRef { node, conn });
                let clients = conns.collect();
                self.user_call(sys, clients, call, to)
            }
            Some(c) => c.read(l, sys, to, |system| Box::new(UserConnsRead { system, user, call })),
        }
    }

    /// Acts on the connections of a user: one frame shared by all of them, or each closed as
    /// by `close_client` (its session ended).
    pub(super) fn user_call(&mut self, sys: SysId, clients: Vec<ClientRef>, call: UserCall, to: ReplyTo) -> Answer {
        // What the call reaches: clients here still connected, and those of nodes alive (a node
        // that died keeps its connections in Redis until it is reaped).
        use crate::aliases::Route;
        let (l, backend) = (&self.local, &self.backend);
        let clients: Vec<ClientRef> = clients
            .into_iter()
            .filter(|c| match l.route(*c) {
                Route::Here(conn) => l.index.client_in(sys, conn).is_ok(),
                Route::Node(n) => backend.alive(n),
                Route::Gone => false,
            })
            .collect();
        let n = clients.len();
        match call {
            UserCall::Send { frame, message_id } => {
                let done = Done::Body(api::user_sent_body(&message_id, n));
                self.send_frames(sys, clients, frame, message_id, false, to, done)
            }
            UserCall::Close { notify } => {
                for c in clients {
                    match self.local.route(c) {
                        // One moving to an adopter is not closed here (the close would race
                        // the adoption): it stays connected to its new node.
                        Route::Here(conn) if self.handoff.moving(conn) => {}
                        Route::Here(conn) => self.kick(conn, notify),
                        _ => self.backend.forward_quietly(&mut self.local, sys, Op::Close { client: c, notify }),
                    }
                }
                self.backend.after_change(to, Ok(Done::Body(api::clients_body(n))))
            }
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

    /// Removes a client of this node and closes it with 1000 (its session, if any, ends).
    pub(super) fn kick(&mut self, conn: ConnId, notify: bool) {
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

/// Cluster mode: the user's connections on every node (its hash in Redis), handed back to the
/// hub with the call to make on them.
#[derive(Debug)]
struct UserConnsRead {
    system: Box<str>,
    user: Box<str>,
    call: UserCall,
}

impl Read for UserConnsRead {
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline) {
        p.cmd("HKEYS").arg(k.user(&self.system, &self.user));
    }

    fn answer(self: Box<Self>, _: &Keys, mut results: Vec<Value>, to: ConnId, _: &mut More<'_>) -> Option<Then> {
        let ids = read::strings(results.pop()?)?;
        let clients = ids.iter().filter_map(|s| crate::ids::parse_client_ref(s)).collect();
        let UserConnsRead { system, call, .. } = *self;
        Some(Then::Hub(Command::UserClients { system, clients, call, to }))
    }

    fn queued_bytes(&self) -> u64 {
        match &self.call {
            UserCall::Send { frame, .. } => frame.len() as u64,
            UserCall::Close { .. } => 0,
        }
    }
}
