//! The hub's cluster-mode side: what it asks the broker, and what it does with what the
//! broker brings back. The hub keeps only this node's clients; systems are learnt from
//! Redis (and cached, since systems are never unregistered); presence and other nodes'
//! clients are the broker's business.

use std::collections::HashMap;
use std::sync::Arc;

use super::{not_found_client, ApiResult, Client, Hub, Members, System};
use crate::cluster::BrokerCmd;
use crate::ids::{ClientRef, ConnId};
use crate::msg::{Command, Frame, Op, ReplyTo};
use crate::protocol::api;

/// Commands waiting for Redis to say whether their system is registered.
#[derive(Default)]
pub struct Lookups {
    waiting: HashMap<Box<str>, Vec<Command>>,
    /// Connections whose `Connect` waits (their `Disconnected` must wait behind it).
    conns: HashMap<ConnId, Box<str>>,
    /// While a lookup's commands run again: their system, and why Redis could not answer.
    replaying: Option<(Box<str>, Option<String>)>,
}

impl Lookups {
    /// Why the system being replayed could not be checked, if Redis was unreachable.
    pub fn failure(&self) -> Option<String> {
        self.replaying.as_ref().and_then(|(_, e)| e.clone())
    }
}

pub fn notice_frame(code: i64, client_id: &str, c: &Client) -> Frame {
    api::notice_frame(code, &crate::ids::message_id(), client_id, &c.user_id, &c.extend)
}

pub fn info(c: &Client) -> Box<str> {
    crate::cluster::info(&c.user_id, &c.extend)
}

impl Hub {
    /// Cluster mode: holds back a command whose system this node has not seen yet and asks
    /// Redis about it; the command runs when the answer comes ([`Command::SystemKnown`]).
    pub(super) fn gate(&mut self, cmd: Command) -> Option<Command> {
        let Some(cl) = &self.cluster else { return Some(cmd) };
        let system: Box<str> = match &cmd {
            Command::Connect { system, .. } => system.clone(),
            Command::Api { system, op, .. } if !matches!(op, Op::Register) => system.clone(),
            Command::Disconnected { conn } => match self.lookups.conns.get(conn) {
                Some(s) => s.clone(),
                None => return Some(cmd),
            },
            _ => return Some(cmd),
        };
        if self.systems.contains_key(&*system) || self.lookups.replaying.as_ref().is_some_and(|(s, _)| *s == system) {
            return Some(cmd);
        }
        if let Command::Connect { conn, .. } = &cmd {
            self.lookups.conns.insert(*conn, system.clone());
        }
        let waiting = self.lookups.waiting.entry(system.clone()).or_default();
        waiting.push(cmd);
        if waiting.len() == 1 {
            cl.send(BrokerCmd::Lookup { system });
        }
        None
    }

    /// Redis answered a lookup (or a register): cache the system, run what waited for it.
    pub(super) fn system_known(&mut self, system: Box<str>, registered: Result<bool, String>) {
        let cmds = self.lookups.waiting.remove(&system).unwrap_or_default();
        let failure = match registered {
            Ok(true) => {
                if !self.systems.contains_key(&*system) {
                    let sys = System { members: Members::new(self.shards()), groups: HashMap::new() };
                    self.systems.insert(system.as_ref().into(), sys);
                }
                None
            }
            Ok(false) => None,
            Err(e) => Some(e),
        };
        self.lookups.replaying = Some((system, failure));
        for c in cmds {
            if let Command::Connect { conn, .. } = &c {
                self.lookups.conns.remove(conn);
            }
            self.handle(c);
        }
        self.lookups.replaying = None;
    }

    /// A call another node forwarded about clients of this node.
    pub(super) fn remote(&mut self, origin: u32, corr: u64, system: Box<str>, op: Op) {
        let to = ReplyTo::Remote { node: origin, corr };
        let me = self.cfg.node;
        let (foreign, wants_answer) = match &op {
            Op::SendToClients { clients, strict, .. } => (clients.iter().any(|c| c.node != me), *strict),
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } => (client.node != me, true),
            _ => (true, true),
        };
        let r = if foreign || !self.systems.contains_key(&*system) {
            Some(Err(not_found_client()))
        } else {
            self.api(&system, op, to)
        };
        if let (Some(r), true) = (r, wants_answer) {
            self.answer(to, r, None);
        }
    }

    /// A frame through Redis (any node's send, a notice decided in Redis) for members here;
    /// first, if `joined` is a client of ours still in the group, it becomes a member.
    pub(super) fn deliver(
        &mut self,
        system: &str,
        group: Option<&str>,
        frame: Option<&Frame>,
        joined: Option<ClientRef>,
    ) {
        let shards = self.shards();
        let Some(sys) = self.systems.get_mut(system) else { return };
        let members = match group {
            Some(g) => {
                if let Some(c) = joined.filter(|c| c.node == self.cfg.node) {
                    let key = self.clients.get(&c.conn).and_then(|cl| cl.groups.iter().find(|k| ***k == *g));
                    if let Some(key) = key {
                        let m = sys.groups.entry(key.clone()).or_insert_with(|| {
                            crate::metrics::add(&self.stats.groups, 1);
                            Members::new(shards)
                        });
                        m.insert(c.conn);
                    }
                }
                sys.groups.get_mut(g)
            }
            None => Some(&mut sys.members),
        };
        if let (Some(m), Some(f)) = (members, frame) {
            self.out.broadcast(m, f);
        }
    }

    /// Cluster mode and the broker cannot take an API call now.
    pub(super) fn cluster_blocked(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| !c.usable())
    }

    /// The 503 of a call the cluster cannot take now (counted).
    pub(super) fn unavailable(&self, what: &str) -> (u16, String) {
        crate::metrics::add(&self.stats.cluster_unavailable_total, 1);
        (503, format!("cluster store unreachable (Redis): {what}"))
    }

    /// Hands a call of a caller here to the broker, which answers it (`None`); or answers
    /// now: 503 when the broker cannot take it, 404 for a call that no node may pass on.
    pub(super) fn ask_broker(&self, to: ReplyTo, cmd: impl FnOnce(ConnId) -> BrokerCmd) -> Option<ApiResult> {
        let (Some(cl), ReplyTo::Local(conn)) = (&self.cluster, to) else { return Some(Err(not_found_client())) };
        if !cl.usable() {
            return Some(Err(self.unavailable("retry later")));
        }
        cl.send(cmd(conn));
        None
    }

    /// A call about a client of another node: the broker forwards it, its node answers.
    pub(super) fn forward(&mut self, node: u32, system: &str, op: Op, to: ReplyTo) -> Option<ApiResult> {
        self.ask_broker(to, |conn| BrokerCmd::Forward { node, system: system.into(), op, reply: Some(conn) })
    }

    /// The part of a send that is for other nodes' clients.
    pub(super) fn forward_sends(
        &mut self,
        system: &str,
        remote: Vec<ClientRef>,
        frame: Frame,
        message_id: Box<str>,
        strict: bool,
        to: ReplyTo,
    ) -> Option<ApiResult> {
        let Some(cl) = &self.cluster else {
            return Some(if strict { Err(not_found_client()) } else { Ok(api::message_id_body(&message_id)) });
        };
        if !cl.usable() {
            return Some(Err(self.unavailable("sent to this node's clients only")));
        }
        if strict {
            let node = remote[0].node;
            return self.forward(node, system, Op::SendToClients { clients: remote, frame, message_id, strict }, to);
        }
        let mut by_node: HashMap<u32, Vec<ClientRef>> = HashMap::new();
        for c in remote {
            by_node.entry(c.node).or_default().push(c);
        }
        for (node, clients) in by_node {
            let op = Op::SendToClients { clients, frame: frame.clone(), message_id: message_id.clone(), strict };
            cl.send(BrokerCmd::Forward { node, system: system.into(), op, reply: None });
        }
        // Answered once the forwards are in Redis: a later send through another node comes
        // after them at every client's node.
        cl.send(BrokerCmd::Answer { to, status: 200, body: api::message_id_body(&message_id) });
        None
    }

    /// `send_to_group` / `send_to_system`: every node's members (this one's too) get the
    /// frame through Redis, so all of them see a group's frames in one order; the caller is
    /// answered once Redis has it. While Redis is unreachable nothing is delivered (503):
    /// a retry cannot duplicate.
    pub(super) fn publish_cluster(
        &mut self,
        system: &str,
        group: Option<Arc<str>>,
        frame: Frame,
        message_id: &str,
        to: ReplyTo,
    ) -> Option<ApiResult> {
        let Some((system, _)) = self.systems.get_key_value(system) else { return Some(Err(not_found_client())) };
        let system = system.clone();
        let body = api::message_id_body(message_id);
        self.ask_broker(to, |conn| BrokerCmd::Publish { system, group, frame, answer: Some((conn, body)) })
    }

    /// `get_online_list` / `get_all_groups`: read from presence by the broker.
    pub(super) fn query(&mut self, system: &str, group: Option<Box<str>>, to: ReplyTo) -> Option<ApiResult> {
        self.ask_broker(to, |conn| BrokerCmd::Query { system: system.into(), group, to: conn })
    }

    /// Cluster mode: a successful presence change is answered by the broker once Redis has
    /// it (read-your-writes from any node).
    pub(super) fn after_change(&mut self, to: ReplyTo, r: ApiResult) -> Option<ApiResult> {
        match (&self.cluster, r) {
            (Some(cl), Ok(body)) => {
                cl.send(BrokerCmd::Answer { to, status: 200, body });
                None
            }
            (_, r) => Some(r),
        }
    }
}
