//! The hub: the one thread that owns the index (systems, clients, groups) and turns each
//! send into at most one [`ShardMsg`] per shard.
//!
//! It runs commands in batches (up to [`BATCH`]) and wakes each shard it wrote to once per
//! batch. All removals of a client go through `Hub::remove_client`, keyed on the exact
//! (shard, slot, generation), so a 1002 notice is sent exactly once however many paths
//! (close, error, idle, `close_client`) report the same connection.

mod cluster;
mod members;
mod outbox;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};

pub use members::Members;
use outbox::{notice, Outbox};

use crate::cluster::{BrokerCmd, BrokerLink};
use crate::ids::{self, ConnId};
use crate::metrics::{self, HubStats};
use crate::msg::{Command, Op, Reply, ReplyTo, ShardMsg};
use crate::protocol::api;

/// Commands handled between two rounds of shard wake-ups.
pub const BATCH: usize = 1024;

/// How the hub reaches one shard: the ordered channel (deliveries, welcomes, closes) and a
/// separate one for API answers, which the shard also checks in the middle of long flushes
/// so a caller's answer never waits behind a broadcast's writes.
pub struct ShardLink {
    pub tx: Sender<ShardMsg>,
    pub replies: Sender<Reply>,
    pub waker: Arc<mio::Waker>,
}

/// Hub settings.
#[derive(Clone, Debug)]
pub struct HubConfig {
    pub node: u32,
    pub notify_max_group_size: usize,
    pub client_publish: bool,
}

struct Client {
    system: Arc<str>,
    user_id: Box<str>,
    extend: Box<str>,
    groups: Vec<Arc<str>>,
}

struct System {
    members: Members,
    groups: HashMap<Arc<str>, Members>,
}

/// The group index.
pub struct Hub {
    cfg: HubConfig,
    out: Outbox,
    systems: HashMap<Arc<str>, System>,
    clients: HashMap<ConnId, Client>,
    stats: Arc<HubStats>,
    /// Cluster mode: the broker, and commands waiting for a system lookup in Redis.
    cluster: Option<BrokerLink>,
    lookups: cluster::Lookups,
    /// Cluster mode: the other nodes alive; calls about clients of any other node are
    /// answered 404 at once instead of being published for nobody.
    live_nodes: std::collections::HashSet<u32>,
}

type ApiResult = Result<Bytes, (u16, String)>;

fn not_found_client() -> (u16, String) {
    (404, "client not found (unknown clientId, or not in this system)".into())
}

impl Hub {
    pub fn new(cfg: HubConfig, links: Vec<ShardLink>, stats: Arc<HubStats>, cluster: Option<BrokerLink>) -> Self {
        let n = links.len();
        Hub {
            cfg,
            out: Outbox { links, woken: vec![false; n] },
            systems: HashMap::new(),
            clients: HashMap::new(),
            stats,
            cluster,
            lookups: cluster::Lookups::default(),
            live_nodes: Default::default(),
        }
    }

    /// Runs until [`Command::Stop`] (or until every command sender is gone).
    pub fn run(mut self, rx: Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            if matches!(cmd, Command::Stop) {
                break;
            }
            self.handle(cmd);
            let mut n = 1;
            while n < BATCH {
                match rx.try_recv() {
                    Ok(Command::Stop) => return self.out.wake(),
                    Ok(cmd) => self.handle(cmd),
                    Err(_) => break,
                }
                n += 1;
            }
            metrics::add(&self.stats.commands_total, n as u64);
            self.out.wake();
            self.stats.clients.store(self.clients.len() as u64, Relaxed);
            self.stats.systems.store(self.systems.len() as u64, Relaxed);
        }
    }

    fn shards(&self) -> usize {
        self.out.links.len()
    }

    /// Handles one command (public for benches).
    pub fn handle(&mut self, cmd: Command) {
        let Some(cmd) = self.gate(cmd) else { return };
        match cmd {
            Command::Connect { conn, system } => {
                let result = match self.systems.get(&*system) {
                    Some(_) => {
                        let system = self.systems.get_key_value(&*system).map(|(k, _)| k.clone()).unwrap_or_default();
                        let client = Client {
                            system: system.clone(),
                            user_id: "".into(),
                            extend: "".into(),
                            groups: Vec::new(),
                        };
                        self.clients.insert(conn, client);
                        if let Some(cl) = &self.cluster {
                            // The client becomes a member (and gets its connect frame) once
                            // this node surely receives the system's sends from other nodes.
                            return cl.send(BrokerCmd::SystemSub { system, on: true, welcome: Some(conn) });
                        }
                        if let Some(sys) = self.systems.get_mut(&system) {
                            sys.members.insert(conn);
                        }
                        Ok(())
                    }
                    None => {
                        Err(self.lookups.failure().unwrap_or_else(|| format!("systemId '{system}' is not registered")))
                    }
                };
                self.out.send(conn.shard as usize, ShardMsg::Welcome { to: conn.in_shard(), result });
            }
            Command::Disconnected { conn } => self.remove_client(conn, true),
            Command::Api { from, system, op, answered } => {
                if let (Some(_), Op::Register) = (&self.cluster, &op) {
                    let to = ReplyTo::Local(from);
                    if let Some(r) = self.ask_broker(to, |to| BrokerCmd::Register { system, to }) {
                        self.answer(to, r, None);
                    }
                    return;
                }
                let learn = matches!(
                    op,
                    Op::Register | Op::SendToGroup { .. } | Op::SendToSystem { .. } | Op::SendToClients { .. }
                );
                let Some(r) = self.api(&system, op, ReplyTo::Local(from)) else { return };
                if !answered {
                    let registered = (learn && self.systems.contains_key(&*system)).then_some(system);
                    self.answer(ReplyTo::Local(from), r, registered);
                }
            }
            Command::Publish { conn, group, code, msg, data } => self.publish(conn, &group, code, &msg, &data),
            Command::Remote { origin, corr, system, op } => self.remote(origin, corr, system, op),
            Command::Deliver { system, group, frame, joined } => {
                self.deliver(&system, group.as_deref(), frame.as_ref(), joined)
            }
            Command::SystemKnown { system, registered } => self.system_known(system, registered),
            Command::Nodes { alive, dead } => {
                for n in dead {
                    self.live_nodes.remove(&n);
                }
                self.live_nodes.extend(alive);
            }
            Command::Subscribed { conn } => {
                let Some(c) = self.clients.get(&conn) else { return };
                if let Some(sys) = self.systems.get_mut(&c.system) {
                    sys.members.insert(conn);
                }
                self.out.send(conn.shard as usize, ShardMsg::Welcome { to: conn.in_shard(), result: Ok(()) });
            }
            Command::Stop => {}
        }
    }

    /// Sends an API answer to a caller here or on the node that forwarded the call.
    fn answer(&mut self, to: ReplyTo, r: ApiResult, registered: Option<Box<str>>) {
        let (status, body) = match r {
            Ok(b) => (200, b),
            Err((status, msg)) => (status, api::err_body(&msg)),
        };
        match (to, &self.cluster) {
            (ReplyTo::Local(c), _) => self.out.reply(c, status, body, registered),
            (to @ ReplyTo::Remote { .. }, Some(cl)) => cl.send(BrokerCmd::Answer { to, status, body }),
            (ReplyTo::Remote { .. }, None) => {}
        }
    }

    /// Removes a client everywhere and, if `notify`, tells its groups (1002). Idempotent.
    fn remove_client(&mut self, conn: ConnId, notify: bool) {
        let Some(client) = self.clients.remove(&conn) else { return };
        let Some(sys) = self.systems.get_mut(&client.system) else { return };
        // The connection is gone or closing (disconnect, or close_client which closes it):
        // shards will not deliver to it, so snapshots may keep its entry for a while.
        sys.members.remove_gone(conn);
        let client_id = ids::client_id(self.cfg.node, conn);
        for g in &client.groups {
            let Some(members) = sys.groups.get_mut(g) else { continue };
            members.remove_gone(conn);
            if let Some(cl) = &self.cluster {
                let notice = notify.then(|| cluster::notice_frame(api::OFFLINE, &client_id, &client));
                let (system, group) = (client.system.clone(), g.clone());
                cl.send(BrokerCmd::Leave { system, group, client: client_id.clone(), notice });
            }
            if members.is_empty() {
                sys.groups.remove(g);
                metrics::sub(&self.stats.groups, 1);
            } else if notify && self.cluster.is_none() {
                notice(&mut self.out, &self.cfg, &self.stats, members, api::OFFLINE, &client_id, &client);
            }
        }
        if let Some(cl) = &self.cluster {
            cl.send(BrokerCmd::SystemSub { system: client.system.clone(), on: false, welcome: None });
        }
    }

    fn client_in(&self, system: &str, c: ConnId) -> Result<&Client, (u16, String)> {
        match self.clients.get(&c) {
            Some(cl) if &*cl.system == system => Ok(cl),
            _ => Err(not_found_client()),
        }
    }

    /// Runs one API operation; `None` when the broker answers `to` later (cluster mode).
    fn api(&mut self, system: &str, op: Op, to: ReplyTo) -> Option<ApiResult> {
        if let Op::Register = op {
            if self.systems.contains_key(system) {
                return Some(Err((409, format!("systemId '{system}' is already registered"))));
            }
            self.systems.insert(system.into(), System { members: Members::new(self.shards()), groups: HashMap::new() });
            return Some(Ok(api::ok_body("[]")));
        }
        if !self.systems.contains_key(system) {
            if self.lookups.failure().is_some() {
                return Some(Err(self.unavailable("retry later")));
            }
            return Some(Err((404, format!("systemId '{system}' is not registered: call /api/register first"))));
        }
        let me = self.cfg.node;
        let presence = matches!(op, Op::Bind { .. } | Op::Unbind { .. } | Op::Close { .. });
        let r = match op {
            Op::Register => unreachable!("handled above"),
            Op::SendToClients { clients, frame, message_id, strict } => {
                let mut remote: Vec<ids::ClientRef> = Vec::new();
                for c in clients {
                    if c.node != me {
                        // Only nodes alive take forwards: a made-up node id costs nothing.
                        if self.live_nodes.contains(&c.node) {
                            remote.push(c);
                        } else if strict {
                            return Some(Err(not_found_client()));
                        }
                    } else if self.client_in(system, c.conn).is_ok() {
                        let msg = ShardMsg::DeliverOne { target: c.conn.in_shard(), frame: frame.clone() };
                        self.out.send(c.conn.shard as usize, msg);
                    } else if strict {
                        return Some(Err(not_found_client()));
                    }
                }
                if !remote.is_empty() {
                    return self.forward_sends(system, remote, frame, message_id, strict, to);
                }
                Ok(api::message_id_body(&message_id))
            }
            Op::SendToGroup { group, frame, message_id } if self.cluster.is_some() => {
                return self.publish_cluster(system, Some(group.into()), frame, &message_id, to);
            }
            Op::SendToSystem { frame, message_id } if self.cluster.is_some() => {
                return self.publish_cluster(system, None, frame, &message_id, to);
            }
            Op::SendToGroup { group, frame, message_id } => {
                let sys = self.systems.get_mut(system).expect("checked above");
                if let Some(members) = sys.groups.get_mut(&*group) {
                    self.out.broadcast(members, &frame);
                }
                Ok(api::message_id_body(&message_id))
            }
            Op::SendToSystem { frame, message_id } => {
                let sys = self.systems.get_mut(system).expect("checked above");
                self.out.broadcast(&mut sys.members, &frame);
                Ok(api::message_id_body(&message_id))
            }
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } if client.node != me => {
                if !self.live_nodes.contains(&client.node) {
                    return Some(Err(not_found_client()));
                }
                return self.forward(client.node, system, op, to);
            }
            Op::Bind { .. } | Op::Unbind { .. } | Op::Close { .. } if self.cluster_blocked() => {
                Err(self.unavailable("retry later"))
            }
            Op::Bind { client, group, user_id, extend, notify } => {
                self.bind(system, client.conn, group, user_id, extend, notify)
            }
            Op::Unbind { client, group, notify } => self.unbind(system, client.conn, &group, notify),
            Op::OnlineList { group } if self.cluster.is_some() => return self.query(system, Some(group), to),
            Op::AllGroups if self.cluster.is_some() => return self.query(system, None, to),
            Op::OnlineList { group } => {
                let sys = &self.systems[system];
                let mut list = Vec::new();
                if let Some(m) = sys.groups.get(&*group) {
                    list.extend(m.iter().map(|c| ids::client_id(self.cfg.node, c)));
                }
                let arr = api::string_array(list.iter().map(String::as_str));
                Ok(api::ok_body(&format!("{{\"count\":{},\"list\":{arr}}}", list.len())))
            }
            Op::AllGroups => {
                let sys = &self.systems[system];
                let mut s = String::from("{");
                for (i, (name, m)) in sys.groups.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let ids: Vec<String> = m.iter().map(|c| ids::client_id(self.cfg.node, c)).collect();
                    s.push_str(&api::json_string(name));
                    s.push(':');
                    s.push_str(&api::string_array(ids.iter().map(String::as_str)));
                }
                s.push('}');
                Ok(api::ok_body(&s))
            }
            Op::Close { client, notify } => {
                if let Err(e) = self.client_in(system, client.conn) {
                    return Some(Err(e));
                }
                self.remove_client(client.conn, notify);
                self.out.send(
                    client.conn.shard as usize,
                    ShardMsg::Close { target: client.conn.in_shard(), code: 1000, reason: "closed by server" },
                );
                Ok(api::ok_body("[]"))
            }
        };
        if presence {
            return self.after_change(to, r);
        }
        Some(r)
    }

    fn bind(
        &mut self,
        system: &str,
        c: ConnId,
        group: Box<str>,
        user_id: Box<str>,
        extend: Box<str>,
        notify: bool,
    ) -> ApiResult {
        self.client_in(system, c)?;
        let shards = self.shards();
        let sys = self.systems.get_mut(system).expect("checked by caller");
        let client = self.clients.get_mut(&c).expect("checked above");
        client.user_id = user_id;
        client.extend = extend;
        let id = ids::client_id(self.cfg.node, c);
        if let Some(g) = client.groups.iter().find(|g| ***g == *group) {
            if let Some(cl) = &self.cluster {
                // Already a member: only its info may change, without a notice.
                let (system, group) = (client.system.clone(), g.clone());
                let info = cluster::info(client);
                cl.send(BrokerCmd::Join { system, group, client: id, info, notice: None });
            }
            return Ok(api::ok_body("[]"));
        }
        let key: Arc<str> = match sys.groups.get_key_value(&*group) {
            Some((k, _)) => k.clone(),
            None => {
                metrics::add(&self.stats.groups, 1);
                let k: Arc<str> = group.into();
                sys.groups.insert(k.clone(), Members::new(shards));
                k
            }
        };
        let members = sys.groups.get_mut(&key).expect("inserted above");
        if self.cluster.is_none() {
            // (Cluster mode: it becomes a member when Redis orders its join; see `deliver`.)
            members.insert(c);
        }
        client.groups.push(key.clone());
        if let Some(cl) = &self.cluster {
            let notice = notify.then(|| cluster::notice_frame(api::ONLINE, &id, client));
            let info = cluster::info(client);
            cl.send(BrokerCmd::Join { system: client.system.clone(), group: key, client: id, info, notice });
        } else if notify {
            notice(&mut self.out, &self.cfg, &self.stats, members, api::ONLINE, &id, client);
        }
        Ok(api::ok_body("[]"))
    }

    fn unbind(&mut self, system: &str, c: ConnId, group: &str, notify: bool) -> ApiResult {
        self.client_in(system, c)?;
        let sys = self.systems.get_mut(system).expect("checked by caller");
        let client = self.clients.get_mut(&c).expect("checked above");
        let Some(pos) = client.groups.iter().position(|g| **g == *group) else { return Ok(api::ok_body("[]")) };
        let key = client.groups.swap_remove(pos);
        let id = ids::client_id(self.cfg.node, c);
        if let Some(cl) = &self.cluster {
            let notice = notify.then(|| cluster::notice_frame(api::OFFLINE, &id, client));
            cl.send(BrokerCmd::Leave { system: client.system.clone(), group: key, client: id.clone(), notice });
        }
        if let Some(members) = sys.groups.get_mut(group) {
            members.remove(c);
            if members.is_empty() {
                sys.groups.remove(group);
                metrics::sub(&self.stats.groups, 1);
            } else if notify && self.cluster.is_none() {
                notice(&mut self.out, &self.cfg, &self.stats, members, api::OFFLINE, &id, client);
            }
        }
        Ok(api::ok_body("[]"))
    }

    fn publish(&mut self, conn: ConnId, group: &str, code: i64, msg: &str, data: &serde_json::value::RawValue) {
        let reply = |hub: &mut Hub, text: &str| {
            let f = crate::protocol::ws::frame(crate::protocol::ws::OP_TEXT, text.as_bytes());
            hub.out.send(conn.shard as usize, ShardMsg::DeliverOne { target: conn.in_shard(), frame: f });
        };
        if !self.cfg.client_publish {
            return reply(self, r#"{"cmd":"error","msg":"client publishing is disabled on this server"}"#);
        }
        let Some(client) = self.clients.get(&conn) else { return };
        let Some(key) = client.groups.iter().find(|g| ***g == *group).cloned() else {
            return reply(self, r#"{"cmd":"error","msg":"publish: not a member of that group"}"#);
        };
        let f = api::push_frame(&ids::message_id(), &client.user_id, code, msg, Some(data));
        let system = client.system.clone();
        if let Some(cl) = &self.cluster {
            // Through Redis like every group frame, under the same availability check as the
            // API's sends.
            if !cl.usable() {
                metrics::add(&self.stats.cluster_unavailable_total, 1);
                return reply(self, r#"{"cmd":"error","msg":"cluster store unreachable (Redis): retry later"}"#);
            }
            return cl.send(BrokerCmd::Publish { system, group: Some(key), frame: f, answer: None });
        }
        if let Some(members) = self.systems.get_mut(&system).and_then(|s| s.groups.get_mut(group)) {
            self.out.broadcast(members, &f);
        }
    }
}
