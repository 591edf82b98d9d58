//! The hub's cluster side: its half of the backend seam (what it asks the broker), and what
//! the broker and subscriber bring back — system lookups, calls other nodes forward, frames in
//! Redis's order, subscriptions. The hub keeps only this node's clients; systems are learnt
//! from Redis (and cached: systems are never unregistered); presence and other nodes' clients
//! are the broker's business.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::index::{Client, SysId, System};
use super::{Answer, Hub, Local};
use crate::cluster::{BrokerCmd, BrokerLink, Lost};
use crate::ids::{ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Command, Frame, Op, ReplyTo, ShardMsg, SystemRef};
use crate::protocol::api::{self, ApiError, Done};

/// Cluster mode's state in the hub.
pub(super) struct ClusterSide {
    pub link: BrokerLink,
    /// Commands waiting for Redis to say whether their system is registered.
    waiting: HashMap<Box<str>, Vec<Command>>,
    /// Connections whose `Connect` waits there (their `Disconnected` must wait behind it).
    waiting_conns: HashMap<ConnId, Box<str>>,
    /// A connect token's groups, joined once the client is subscribed to its system.
    pub granted: HashMap<ConnId, Vec<Box<str>>>,
    /// The other nodes alive: calls about clients of any other node are answered 404 at once
    /// instead of being published for nobody.
    pub live: HashSet<u32>,
}

impl ClusterSide {
    pub fn new(link: BrokerLink) -> Self {
        ClusterSide {
            link,
            waiting: HashMap::new(),
            waiting_conns: HashMap::new(),
            granted: HashMap::new(),
            live: HashSet::new(),
        }
    }

    /// A new client of `sys`: it becomes a member (and gets its connect frame) once this node
    /// surely receives the system's sends from other nodes.
    pub fn connected(&mut self, l: &Local, sys: SysId, conn: ConnId, user: Option<Box<str>>) {
        let system = l.index.name(sys).clone();
        let welcome = Some((conn, user));
        self.link.send(BrokerCmd::SystemSub { system, on: true, welcome, left: None });
    }

    pub fn system_left(&mut self, l: &Local, sys: SysId, conn: ConnId, why: crate::webhooks::Gone) {
        let left = Some((conn, why));
        self.link.send(BrokerCmd::SystemSub { system: l.index.name(sys).clone(), on: false, welcome: None, left });
    }

    /// Every node's members (this one's too) get the frame through Redis, so all of them see a
    /// group's frames in one order; the caller is answered once Redis has it. While Redis is
    /// unreachable nothing is delivered (503): a retry cannot duplicate.
    pub fn publish(
        &mut self,
        l: &Local,
        sys: SysId,
        group: Option<&str>,
        frame: Frame,
        id: Box<str>,
        to: Option<ReplyTo>,
    ) -> Answer {
        let system = l.index.name(sys).clone();
        let group: Option<Arc<str>> = group.map(Into::into);
        let history = group.is_some() && l.cfg.history_size > 0;
        match to {
            Some(to) => self.ask(l, to, |conn| {
                let answer = Some((conn, Done::Sent(id).body()));
                BrokerCmd::Publish { system, group, frame, answer, history }
            }),
            None if self.link.usable() => {
                self.link.send(BrokerCmd::Publish { system, group, frame, answer: None, history });
                Ok(Done::Sent(id)).into()
            }
            None => self.unavailable(l).into(),
        }
    }

    /// Membership here follows Redis's order: the client becomes a member when its join comes
    /// back (see `Hub::frame_from_redis`); the notice goes out in that order too.
    pub fn join(&mut self, l: &Local, sys: SysId, key: &Arc<str>, conn: ConnId, new: bool, notify: bool) {
        let Some(client) = l.index.clients.get(&conn) else { return };
        let id = l.id(conn);
        let notice = (new && notify).then(|| notice_frame(api::ONLINE, &id, client));
        let info = crate::cluster::info(&client.user_id, &client.extend);
        let (system, group) = (l.index.systems[sys.index()].name.clone(), key.clone());
        self.link.send(BrokerCmd::Join { system, group, client: id, info, notice, new });
    }

    /// Before `conn` leaves group `key` here: Redis hears of it (and sends the notice).
    pub fn leaving(&mut self, system: &System, key: &Arc<str>, id: &str, client: &Client, notify: bool) {
        let notice = notify.then(|| notice_frame(api::OFFLINE, id, client));
        let info = crate::cluster::info(&client.user_id, &client.extend);
        let group = key.clone();
        self.link.send(BrokerCmd::Leave { system: system.name.clone(), group, client: id.into(), notice, info });
    }

    /// The 503 of a call the cluster cannot take now (counted).
    pub fn unavailable(&self, l: &Local) -> ApiError {
        metrics::add(&l.stats.cluster_unavailable_total, 1);
        ApiError::cluster_unavailable()
    }

    /// Hands a call of a caller here to the broker, which answers it; or answers now: 503 when
    /// the broker cannot take it, 404 for a call no node may pass on (a forwarded one).
    pub fn ask(&mut self, l: &Local, to: ReplyTo, cmd: impl FnOnce(ConnId) -> BrokerCmd) -> Answer {
        let ReplyTo::Local(conn) = to else { return ApiError::unknown_client().into() };
        if !self.link.usable() {
            return self.unavailable(l).into();
        }
        self.link.send(cmd(conn));
        Answer::Later
    }

    /// An API read answered from Redis ([`crate::cluster::read`]) for a caller here; `make`
    /// builds it from the system's name.
    pub fn read(
        &mut self,
        l: &Local,
        sys: SysId,
        to: ReplyTo,
        make: impl FnOnce(Box<str>) -> Box<dyn crate::cluster::read::Read>,
    ) -> Answer {
        let read = make(Box::from(&**l.index.name(sys)));
        self.ask(l, to, |to| BrokerCmd::Read { read, to })
    }

    /// A call about a client of node `node`: the broker forwards it, that node answers.
    pub fn forward(&mut self, l: &Local, node: u32, sys: SysId, op: Op, to: ReplyTo) -> Answer {
        if !self.live.contains(&node) {
            return ApiError::unknown_client().into();
        }
        let system = l.index.name(sys).to_string().into();
        self.ask(l, to, |conn| BrokerCmd::Forward { node, system, op, reply: Some(conn) })
    }

    /// The part of a send for other nodes' clients: one forward per node alive (a made-up
    /// node id costs nothing), answered once the forwards are in Redis, so a later send
    /// through another node comes after them at every client's node.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_sends(
        &mut self,
        l: &Local,
        sys: SysId,
        remote: Vec<(u32, ClientRef)>,
        (frame, id, done): (Frame, Box<str>, Done),
        strict: bool,
        to: ReplyTo,
    ) -> Answer {
        let mut by_node: HashMap<u32, Vec<ClientRef>> = HashMap::new();
        for (node, c) in remote {
            if self.live.contains(&node) {
                by_node.entry(node).or_default().push(c);
            } else if strict {
                return ApiError::unknown_client().into();
            }
        }
        if by_node.is_empty() {
            return Ok(done).into();
        }
        if !self.link.usable() {
            metrics::add(&l.stats.cluster_unavailable_total, 1);
            return ApiError::new(503, "cluster store unreachable (Redis): sent to this node's clients only").into();
        }
        if strict {
            let (node, clients) = by_node.into_iter().next().expect("not empty");
            let op = Op::SendToClients { clients, frame, message_id: id, strict };
            return self.forward(l, node, sys, op, to);
        }
        let system: Box<str> = l.index.name(sys).to_string().into();
        for (node, clients) in by_node {
            let op = Op::SendToClients { clients, frame: frame.clone(), message_id: id.clone(), strict };
            self.link.send(BrokerCmd::Forward { node, system: system.clone(), op, reply: None });
        }
        self.link.send(BrokerCmd::Answer { to, status: 200, body: done.body() });
        Answer::Later
    }

    /// A call about a client of another node, answered to nobody (dropped for a node not
    /// alive, or while the broker cannot take it).
    pub fn forward_quietly(&mut self, l: &Local, sys: SysId, op: Op) {
        let node = match &op {
            Op::Close { client, .. } | Op::Bind { client, .. } | Op::Unbind { client, .. } => {
                l.aliases.node_of(l.cfg.node_id.0, *client)
            }
            _ => return debug_assert!(false, "not a call about one client: {op:?}"),
        };
        if self.live.contains(&node) && self.link.usable() {
            let system = l.index.name(sys).to_string().into();
            self.link.send(BrokerCmd::Forward { node, system, op, reply: None });
        }
    }

    /// A connection of this node got (`online`) or lost its user: Redis counts the user's
    /// connections (the step that makes it 1 or 0 sends the webhook).
    pub fn user_changed(&mut self, l: &Local, sys: SysId, conn: ConnId, user: &Arc<str>, online: bool) {
        let (system, user) = (l.index.name(sys).clone(), user.clone());
        let client = l.id(conn);
        self.link.send(match online {
            true => BrokerCmd::UserJoin { system, user, client },
            false => BrokerCmd::UserLeave { system, user, client },
        });
    }
}

impl Hub {
    /// Applies the losses the subscriber recorded up to what this hub has taken from the
    /// `redis` queue (cluster mode; one atomic load when there are none): the members of each
    /// channel that lost a frame, or every session of the node, are told their sessions are
    /// not recoverable from before now ([`ShardMsg::Lost`]); a connection whose relay message
    /// was lost is dropped so its client resumes ([`ShardMsg::RelayLost`]).
    pub(super) fn apply_losses(&mut self) {
        let taken = self.redis_taken;
        let Some(c) = self.backend.cluster() else { return };
        let due = c.link.losses.due(taken);
        for lost in due {
            if let Lost::Joined { system, group, client } = lost {
                self.frame_from_redis(&system, Some(&group), None, Some(client));
                continue;
            }
            let Local { index, out, .. } = &mut self.local;
            let shards = out.links.len();
            match lost {
                Lost::Joined { .. } => unreachable!("handled above"),
                Lost::All => (0..shards).for_each(|s| out.send(s, ShardMsg::LostAll)),
                Lost::Channel(system, group) => {
                    let Some(sys) = index.find(&system) else { continue };
                    let system = index.system(sys);
                    let members = match &group {
                        Some(g) => system.groups.get_mut(&**g),
                        None => Some(&mut system.members),
                    };
                    let Some(m) = members else { continue };
                    for shard in 0..m.shards() {
                        if let Some(targets) = m.snapshot(shard) {
                            out.send(shard, ShardMsg::Lost { targets });
                        }
                    }
                }
                Lost::Clients(conns) => {
                    for c in conns.into_iter().filter(|c| (c.shard as usize) < shards) {
                        out.send(c.shard as usize, ShardMsg::Lost { targets: Arc::from([c.in_shard()]) });
                    }
                }
                Lost::Relay(c) if (c.shard as usize) < shards => {
                    out.send(c.shard as usize, ShardMsg::RelayLost(c.in_shard()));
                }
                Lost::Relay(_) => {}
            }
        }
    }

    /// Cluster mode: holds back a command whose system this node has not seen yet and asks
    /// Redis about it; the command runs when the answer comes ([`Command::SystemKnown`]).
    pub(super) fn gate(&mut self, cmd: Command) -> Option<Command> {
        let Some(c) = self.backend.cluster() else { return Some(cmd) };
        let system: Box<str> = match &cmd {
            Command::Connect { system: SystemRef::Name(n), .. } => n.clone(),
            Command::Api { system, op, .. } if !matches!(op, Op::Register) => system.clone(),
            Command::Disconnected { conn, .. } => match c.waiting_conns.get(conn) {
                Some(s) => s.clone(),
                None => return Some(cmd),
            },
            _ => return Some(cmd),
        };
        if self.local.index.find(&system).is_some() {
            return Some(cmd);
        }
        if let Command::Connect { conn, .. } = &cmd {
            c.waiting_conns.insert(*conn, system.clone());
        }
        let waiting = c.waiting.entry(system.clone()).or_default();
        waiting.push(cmd);
        if waiting.len() == 1 {
            c.link.send(BrokerCmd::Lookup { system });
        }
        None
    }

    /// Redis answered a lookup (or a register): cache the system and run what waited for it,
    /// or refuse what waited (unknown system, or Redis unreachable).
    pub(super) fn system_known(&mut self, system: Box<str>, registered: Result<bool, String>) {
        let Some(c) = self.backend.cluster() else { return };
        let cmds = c.waiting.remove(&system).unwrap_or_default();
        for cmd in &cmds {
            if let Command::Connect { conn, .. } = cmd {
                c.waiting_conns.remove(conn);
            }
        }
        if registered == Ok(true) {
            let shards = self.local.shards();
            self.local.index.add_system(&system, shards);
            return cmds.into_iter().for_each(|cmd| self.handle(cmd));
        }
        for cmd in cmds {
            match cmd {
                Command::Connect { conn, .. } => {
                    let msg = match &registered {
                        Err(e) => e.clone(),
                        Ok(_) => format!("systemId '{system}' is not registered"),
                    };
                    let welcome = ShardMsg::Welcome { to: conn.in_shard(), result: Err(msg), system: None };
                    self.local.out.send(conn.shard as usize, welcome);
                }
                Command::Api { from, .. } => {
                    let e = match &registered {
                        Err(_) => {
                            metrics::add(&self.local.stats.cluster_unavailable_total, 1);
                            ApiError::cluster_unavailable()
                        }
                        Ok(_) => ApiError::unknown_system(&system),
                    };
                    self.answer(ReplyTo::Local(from), Err(e), None);
                }
                // Its Connect was refused above: the hub never knew the client.
                _ => {}
            }
        }
    }

    /// A call another node forwarded about clients of this node.
    pub(super) fn remote(&mut self, origin: u32, corr: u64, system: Box<str>, op: Op) {
        let to = ReplyTo::Remote { node: origin, corr };
        let here = |c: &ClientRef| !matches!(self.local.route(*c), crate::aliases::Route::Node(_));
        let (foreign, wants_answer) = match &op {
            Op::SendToClients { clients, strict, .. } => (!clients.iter().all(here), *strict),
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } => (!here(client), true),
            _ => (true, true),
        };
        let answer = match self.local.index.find(&system) {
            Some(sys) if !foreign => self.api_in(sys, op, to),
            _ => ApiError::unknown_client().into(),
        };
        if let (Answer::Now(r), true) = (answer, wants_answer) {
            self.answer(to, r, None);
        }
    }

    /// What a group or system channel carried: kept for sessions on their way here (a
    /// hand-off), then delivered to the members here.
    pub(super) fn published(
        &mut self,
        system: &str,
        group: Option<&str>,
        frame: Option<&Frame>,
        joined: Option<ClientRef>,
        at: Option<crate::handoff::At>,
    ) {
        if let Some(f) = frame {
            self.keep_for_adoption(system, group, f, at);
        }
        self.frame_from_redis(system, group, frame, joined)
    }

    /// Nodes seen alive or dead: relays with a node gone end in every shard.
    pub(super) fn nodes_changed(&mut self, alive: Vec<u32>, dead: Vec<u32>) {
        for n in self.backend.nodes(alive, dead) {
            for shard in 0..self.local.shards() {
                self.local.out.send(shard, ShardMsg::NodeGone(n));
            }
        }
    }

    /// A shard's relay message for `node`. For this node itself it loops back (a session
    /// adopted here whose client resumed here before the move was known: edge and session
    /// are both this node's); for a node not alive the shard hears it is gone.
    pub(super) fn relay_out(&mut self, node: u32, from_shard: u16, payload: Vec<u8>) {
        if node == self.local.cfg.node_id.0 {
            if let Some(m) = crate::protocol::relay::decode(&payload) {
                self.relay_in(m);
            }
        } else if !self.backend.send_to_node(node, payload) {
            self.local.out.send(from_shard as usize, ShardMsg::NodeGone(node));
        }
    }

    /// A frame through Redis (any node's send, a notice decided in Redis) for members here;
    /// first, if `joined` is a client of ours still in the group, it becomes a member.
    pub(super) fn frame_from_redis(
        &mut self,
        system: &str,
        group: Option<&str>,
        frame: Option<&Frame>,
        joined: Option<ClientRef>,
    ) {
        let shards = self.local.shards();
        let joined = joined.and_then(|c| match self.local.route(c) {
            crate::aliases::Route::Here(conn) => Some(ClientRef { node: self.local.cfg.node_id.0, conn }),
            _ => None,
        });
        let Local { index, out, stats, .. } = &mut self.local;
        let Some(sys) = index.find(system) else { return };
        let in_group = |c: &ClientRef| {
            index.clients.get(&c.conn).is_some_and(|cl| group.is_some_and(|g| cl.groups.iter().any(|k| **k == *g)))
        };
        let joined = joined.filter(in_group);
        let system = &mut index.systems[sys.index()];
        let members = match group {
            Some(g) => {
                if let Some(c) = joined {
                    let (_, m, created) = system.group_entry(g, shards);
                    if created {
                        metrics::add(&stats.groups, 1);
                    }
                    m.insert(c.conn);
                }
                system.groups.get_mut(g)
            }
            None => Some(&mut system.members),
        };
        if let (Some(m), Some(f)) = (members, frame) {
            out.broadcast(m, f);
        }
    }

    /// This node now receives the system's sends: the waiting client becomes a member of its
    /// system and gets its connect frame, then joins its connect token's groups (their joins
    /// reach Redis right after; their notices come back through Redis, behind the frame).
    pub(super) fn subscribed(&mut self, conn: ConnId) {
        let Local { index, out, .. } = &mut self.local;
        let Some(sys) = index.clients.get(&conn).map(|c| c.system) else { return };
        index.system(sys).members.insert(conn);
        out.send(conn.shard as usize, ShardMsg::Welcome { to: conn.in_shard(), result: Ok(()), system: None });
        if let Some(groups) = self.backend.cluster().and_then(|c| c.granted.remove(&conn)) {
            self.join_granted(conn, groups);
        }
    }
}

/// A 1001/1002 notice about `client` (cluster mode builds it here, Redis decides who gets it).
fn notice_frame(code: i64, client_id: &str, c: &Client) -> Frame {
    api::notice_frame(code, &crate::ids::message_id(), client_id, &c.user_id, &c.extend)
}
