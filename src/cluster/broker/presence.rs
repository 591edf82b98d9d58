//! The broker's presence work: the Lua steps, its mirror of this node's presence, and the
//! heartbeat, reaping and re-writing that keep Redis in line with the live nodes.

use std::collections::HashMap;
use std::time::Instant;

use super::results;
use super::{Broker, GroupMirror, UserMirror};
use crate::cluster::{keys, wire, BrokerCmd};
use crate::metrics;
use crate::protocol::api;
use crate::webhooks::{Gone, Kind};
use std::sync::Arc;

/// A client's presence info: `[userId, extend]`.
pub fn info(user_id: &str, extend: &str) -> Box<str> {
    serde_json::to_string(&[user_id, extend]).unwrap_or_default().into()
}

fn offline_notice(client: &str, info: &str) -> bytes::Bytes {
    let [user, extend]: [String; 2] = serde_json::from_str(info).unwrap_or_default();
    api::notice_frame(api::OFFLINE, &crate::ids::message_id(), client, &user, &extend)
}

impl Broker {
    /// `notice`: the 1001 frame, or empty. Two commands: the node's hash first (on one Redis a
    /// node that dies right after leaves nothing its reaper cannot find; on a Redis Cluster the
    /// two go to different masters in the same instant, with no order), then the JOIN step (its
    /// result kept, unless `quiet`). The system's groups index follows the step's answer
    /// (`Broker::reindex`, see `read::unindex`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pipe_join(
        &self,
        p: &mut redis::Pipeline,
        system: &str,
        group: &str,
        client: &str,
        info: &str,
        notice: &[u8],
        quiet: bool,
    ) {
        let chan = self.k.group(system, group);
        // One position for either marker: the step publishes exactly one of them.
        let at = self.stamps.next(&chan);
        let with_notice = if notice.is_empty() { Vec::new() } else { wire::joined(at, client, notice) };
        p.cmd("HSET").arg(self.k.node(self.me())).arg(keys::member_field(client, system, group)).arg(info).ignore();
        p.cmd("EVALSHA")
            .arg(self.scripts.join.get_hash())
            .arg(1)
            .arg(chan)
            .arg(client)
            .arg(info)
            .arg(with_notice)
            .arg(self.cfg.notify_max_group_size)
            .arg(wire::joined(at, client, b""))
            .arg(self.k.publish());
        if quiet {
            p.ignore();
        }
        p.cmd("ZADD").arg(self.k.groups(system)).arg(0).arg(group).ignore();
    }

    /// `node`: whose presence the client leaves (this one, or a dead one being reaped);
    /// `notice`: the 1002 frame, if the remaining members are to be told. Two commands: the
    /// LEAVE step (its result kept, unless `quiet`), then the node's hash.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pipe_leave(
        &self,
        p: &mut redis::Pipeline,
        node: u32,
        system: &str,
        group: &str,
        client: &str,
        notice: Option<&[u8]>,
        quiet: bool,
    ) {
        let chan = self.k.group(system, group);
        // The step publishes the notice or, when it sends none, the skip: one message either way.
        let at = self.stamps.next(&chan);
        let notice = notice.map(|f| wire::delivery(at, f)).unwrap_or_default();
        p.cmd("EVALSHA")
            .arg(self.scripts.leave.get_hash())
            .arg(1)
            .arg(chan)
            .arg(client)
            .arg(notice)
            .arg(self.cfg.notify_max_group_size)
            .arg(wire::skip(at))
            .arg(self.k.publish());
        if quiet {
            p.ignore();
        }
        p.cmd("HDEL").arg(self.k.node(node)).arg(keys::member_field(client, system, group)).ignore();
    }

    /// A USER_JOIN (`join`) or USER_LEAVE step for `client`, a connection of `node` (this one,
    /// or a dead one being reaped), with the node's hash (written before a join, cleared after
    /// a leave); the step's result is kept unless `quiet`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pipe_user(
        &self,
        p: &mut redis::Pipeline,
        join: bool,
        node: u32,
        system: &str,
        user: &str,
        client: &str,
        quiet: bool,
    ) {
        let field = keys::user_field(client, system, user);
        if join {
            p.cmd("HSET").arg(self.k.node(node)).arg(&field).arg("").ignore();
        }
        let script = if join { &self.scripts.user_join } else { &self.scripts.user_leave };
        p.cmd("EVALSHA").arg(script.get_hash()).arg(1).arg(self.k.user(system, user)).arg(client);
        if quiet {
            p.ignore();
        }
        if !join {
            p.cmd("HDEL").arg(self.k.node(node)).arg(&field).ignore();
        }
    }

    /// A USER_LEAVE whose `user_offline` (if it was the last connection) is sent once the
    /// pipeline ran: `offline` collects what to look at.
    fn pipe_user_gone<'a>(
        &self,
        p: &mut redis::Pipeline,
        node: u32,
        (system, user, client): (&'a str, &'a str, &str),
        offline: &mut Vec<(&'a str, &'a str)>,
    ) {
        self.pipe_user(p, false, node, system, user, client, false);
        offline.push((system, user));
    }

    /// The `user_offline` events of USER_LEAVE steps run in one pipeline (`results`: theirs,
    /// in `gone`'s order).
    fn users_gone(&self, gone: &[(&str, &str)], results: impl Iterator<Item = redis::Value>) {
        let Some(h) = &self.cfg.hooks else { return };
        for (&(system, user), r) in gone.iter().zip(results) {
            if let Some((1, n)) = results::pair(&Ok(r)) {
                h.user(system.into(), user.into(), false, Some(n.max(0) as usize));
            }
        }
    }

    /// A USER_JOIN (`joined`) or USER_LEAVE of `client` ran in Redis: the mirror knows Redis
    /// holds it, or that its leave is done.
    pub(super) fn user_applied(&mut self, system: &str, user: &str, client: &str, joined: bool) {
        let key = self.k.user(system, user);
        let map = if joined { &mut self.users } else { &mut self.users_left };
        let Some(m) = map.get_mut(&key) else { return };
        if joined {
            if let Some(held) = m.clients.get_mut(client) {
                *held = true;
            }
        } else {
            m.clients.remove(client);
            if m.clients.is_empty() {
                map.remove(&key);
            }
        }
    }

    /// The mirror holds `client` in `group` (a JOIN's, or a session adopted here).
    pub(super) fn mirror_join(&mut self, system: &Arc<str>, group: &Arc<str>, client: &str, info: &str) {
        let chan = self.k.group(system, group);
        let m = self.groups.entry(chan).or_insert_with(|| GroupMirror {
            system: system.clone(),
            group: group.clone(),
            clients: HashMap::new(),
        });
        m.clients.insert(client.to_string(), info.into());
    }

    /// Updates the mirror; returns the channel to subscribe to, if any.
    pub(super) fn mirror(&mut self, cmd: &BrokerCmd, unsub: &mut Vec<String>) -> Option<String> {
        match cmd {
            BrokerCmd::Join { system, group, client, info, .. } => {
                let chan = self.k.group(system, group);
                let m = self.groups.entry(chan.clone()).or_insert_with(|| GroupMirror {
                    system: system.clone(),
                    group: group.clone(),
                    clients: HashMap::new(),
                });
                m.clients.insert(client.clone(), info.clone());
                (!self.subscribed.contains_key(&chan)).then_some(chan)
            }
            BrokerCmd::Leave { system, group, client, .. } => {
                let chan = self.k.group(system, group);
                if let Some(m) = self.groups.get_mut(&chan) {
                    m.clients.remove(client);
                    if m.clients.is_empty() {
                        self.groups.remove(&chan);
                        unsub.push(chan);
                    }
                }
                None
            }
            BrokerCmd::UserJoin { system, user, client } => {
                user_entry(&mut self.users, self.k.user(system, user), system, user).insert(client.clone(), false);
                None
            }
            BrokerCmd::UserLeave { system, user, client } => {
                let key = self.k.user(system, user);
                let held = self.users.get_mut(&key).and_then(|m| m.clients.remove(client));
                if self.users.get(&key).is_some_and(|m| m.clients.is_empty()) {
                    self.users.remove(&key);
                }
                // Redis holds it: until its USER_LEAVE runs, the leave is pending.
                if held == Some(true) {
                    user_entry(&mut self.users_left, key, system, user).insert(client.clone(), true);
                }
                None
            }
            BrokerCmd::SystemSub { system, on, .. } => {
                let chan = self.k.system(system);
                if *on {
                    *self.systems.entry(chan.clone()).or_default() += 1;
                    (!self.subscribed.contains_key(&chan)).then_some(chan)
                } else {
                    if let Some(n) = self.systems.get_mut(&chan) {
                        *n -= 1;
                        if *n == 0 {
                            self.systems.remove(&chan);
                            unsub.push(chan);
                        }
                    }
                    None
                }
            }
            _ => None,
        }
    }

    /// What Redis holds for `node`: member field → info.
    fn held(&mut self, node: u32) -> Result<HashMap<String, String>, String> {
        let con = self.con.as_mut().ok_or("down")?;
        redis::cmd("HGETALL").arg(self.k.node(node)).query(con).map_err(|e| e.to_string())
    }

    /// A LEAVE step for a client that is gone, with its 1002 notice; its result is ignored.
    fn pipe_gone(&self, p: &mut redis::Pipeline, node: u32, system: &str, group: &str, client: &str, info: &str) {
        self.pipe_leave(p, node, system, group, client, Some(&offline_notice(client, info)), true);
    }

    /// Makes Redis hold exactly this node's presence: entries it no longer has leave (with
    /// their 1002 notices: they left while Redis was away, or before a restart), the rest
    /// is written again; registered systems and the heartbeat too.
    pub(super) fn resync(&mut self) -> Result<(), String> {
        let me = self.me();
        let held = self.held(me)?;
        let mut p = redis::pipe();
        // The user steps whose results are events, in pipeline order: (system, user, joined).
        let mut decided: Vec<(Arc<str>, Arc<str>, bool)> = Vec::new();
        for (field, info) in &held {
            if let Some((client, system, group)) = keys::parse_member_field(field) {
                let chan = self.k.group(system, group);
                if !self.groups.get(&chan).is_some_and(|m| m.clients.contains_key(client)) {
                    self.pipe_gone(&mut p, me, system, group, client, info);
                }
            } else if let Some((client, system, user)) = keys::parse_user_field(field) {
                let key = self.k.user(system, user);
                if !self.users.get(&key).is_some_and(|m| m.clients.contains_key(client)) {
                    // A leave while Redis was away: its result decides user_offline. (Anything
                    // else Redis holds for us but we do not is stale: no event.)
                    let decides = self.users_left.get(&key).is_some_and(|m| m.clients.contains_key(client));
                    self.pipe_user(&mut p, false, me, system, user, client, !decides);
                    if decides {
                        decided.push((system.into(), user.into(), false));
                    }
                }
            } else {
                p.cmd("HDEL").arg(self.k.node(me)).arg(field).ignore();
            }
        }
        for m in self.groups.values() {
            for (client, info) in &m.clients {
                self.pipe_join(&mut p, &m.system, &m.group, client, info, b"", true);
            }
        }
        // Joins while Redis was away (not held yet): their results decide user_online. Those
        // Redis held before are written again silently (it may have restarted empty).
        for m in self.users.values() {
            for (client, held) in &m.clients {
                self.pipe_user(&mut p, true, me, &m.system, &m.user, client, *held);
                if !held {
                    decided.push((m.system.clone(), m.user.clone(), true));
                }
            }
        }
        for s in &self.known {
            p.cmd("SADD").arg(self.k.systems()).arg(&**s).ignore();
        }
        // Heartbeat before membership: a node listed in rc:nodes is never seen without one
        // until it really lapses (another node's beat would take it for dead). A trip of its
        // own: on a Redis Cluster the two keys are on different masters, with no order.
        let ttl = self.cfg.presence_ttl.as_millis() as u64;
        let con = self.con.as_mut().ok_or("down")?;
        let beat = redis::cmd("SET").arg(self.k.alive(me)).arg(&self.instance).arg("PX").arg(ttl).query::<()>(con);
        beat.map_err(|e| e.to_string())?;
        p.cmd("SADD").arg(self.k.nodes()).arg(keys::node_name(me)).ignore();
        let con = self.con.as_mut().ok_or("down")?;
        let results: Vec<redis::Value> = p.query(con).map_err(|e| e.to_string())?;
        if let Some(h) = &self.cfg.hooks {
            for ((system, user, joined), r) in decided.into_iter().zip(results) {
                if let Some((1, n)) = results::pair(&Ok(r)) {
                    h.user(system, user, joined, Some(n.max(0) as usize));
                }
            }
        }
        // Every group with a member here is in its system's index (after the JOIN steps).
        let groups: Vec<_> = self.groups.values().map(|m| (m.system.clone(), m.group.clone())).collect();
        self.to_index.extend(groups);
        self.reindex()?;
        // Redis holds every connection of ours now, and none that left.
        for m in self.users.values_mut() {
            m.clients.values_mut().for_each(|held| *held = true);
        }
        self.users_left.clear();
        self.next_beat = Instant::now() + self.cfg.presence_ttl / 3;
        Ok(())
    }

    /// Heartbeat, then reap nodes whose heartbeat expired — only once this node has been on
    /// Redis for a whole `presence_ttl`: after an outage (a failover, a partition) the first
    /// node back would otherwise find the heartbeats of live nodes, cut off with it, expired
    /// and reap them (seen in the chaos soak: `user_offline` for connected users).
    pub(super) fn beat(&mut self) -> Result<(), String> {
        let me = self.me();
        let ttl = self.cfg.presence_ttl.as_millis() as u64;
        self.next_beat = Instant::now() + self.cfg.presence_ttl / 3;
        let e = |e: redis::RedisError| e.to_string();
        let con = self.con.as_mut().ok_or("down")?;
        // The heartbeat, and this node's figures for the admin page (same TTL), in one trip.
        let (prev,): (Option<String>,) = redis::pipe()
            .cmd("SET")
            .arg(self.k.alive(me))
            .arg(&self.instance)
            .arg("PX")
            .arg(ttl)
            .arg("GET")
            .cmd("SET")
            .arg(self.k.figures(me))
            .arg((self.cfg.figures)())
            .arg("PX")
            .arg(ttl)
            .ignore()
            .query(con)
            .map_err(e)?;
        match prev {
            None => {
                // Our heartbeat lapsed: a survivor may have reaped us (and others stopped
                // forwarding to us). Write it all again and say we are back.
                tracing::warn!("this node's heartbeat had expired; re-writing its presence");
                self.resync()?;
                self.announce()?;
                // Every heartbeat may have gone at once (FLUSHALL, eviction of TTL keys) with
                // the connections up: the others get a whole presence_ttl to beat again too.
                self.up_since = Instant::now();
            }
            Some(v) if v != self.instance => {
                // Another live process beats under our node id: clientIds, forwarded calls
                // and presence of the two collide. Nothing here can fix that; say it loudly.
                metrics::add(&self.stats.cluster_node_id_conflicts_total, 1);
                tracing::error!(
                    node = keys::node_name(me),
                    "another running node uses this node id: give every node its own --node-id"
                );
            }
            Some(_) => {}
        }
        self.check_slots()?;
        let (others, alive) = self.others_alive()?;
        let (mut up, mut dead) = (vec![me], Vec::new());
        for (node, alive) in others.into_iter().zip(alive) {
            let con = self.con.as_mut().ok_or("down")?;
            if alive {
                up.push(node);
                continue;
            }
            if self.up_since.elapsed() < self.cfg.presence_ttl {
                continue; // perhaps still on its way back: neither up nor dead yet
            }
            dead.push(node);
            let won: Option<String> = redis::cmd("SET")
                .arg(self.k.reap_lock(node))
                .arg(keys::node_name(me))
                .arg("NX")
                .arg("PX")
                .arg(ttl)
                .query(con)
                .map_err(e)?;
            if won.is_some() {
                self.reap(node)?;
            }
        }
        let _ = self.hub.send(crate::msg::Command::Nodes { alive: up, dead });
        Ok(())
    }

    /// Every other node in `nodes`, with whether its heartbeat is there, in one round trip (one
    /// trip per node held the broker, and the API answers behind it, for 50 trips per beat at
    /// 51 nodes). A snapshot: a node whose heartbeat returns while earlier ones are reaped is
    /// judged by it (and heals itself: it finds its heartbeat gone and writes it all again).
    fn others_alive(&mut self) -> Result<(Vec<u32>, Vec<bool>), String> {
        let me = self.me();
        let e = |e: redis::RedisError| e.to_string();
        let con = self.con.as_mut().ok_or("down")?;
        let nodes: Vec<String> = redis::cmd("SMEMBERS").arg(self.k.nodes()).query(con).map_err(e)?;
        let others: Vec<u32> =
            nodes.iter().filter_map(|n| u32::from_str_radix(n, 16).ok()).filter(|&n| n != me).collect();
        if others.is_empty() {
            return Ok((others, Vec::new()));
        }
        let mut check = redis::pipe();
        for &node in &others {
            check.cmd("EXISTS").arg(self.k.alive(node));
        }
        let alive: Vec<bool> = check.query(con).map_err(e)?;
        if alive.len() != others.len() {
            return Err(format!("{} answers to {} heartbeat checks", alive.len(), others.len()));
        }
        Ok((others, alive))
    }

    /// Tells every node (on the cluster channel) that this one takes calls for its clients.
    pub(super) fn announce(&mut self) -> Result<(), String> {
        let con = self.con.as_mut().ok_or("down")?;
        redis::cmd(self.k.publish())
            .arg(self.k.cluster())
            .arg(wire::hello(self.cfg.node_id.0))
            .query::<i64>(con)
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Removes a dead node's presence, sending the 1002 notices its clients never got; the
    /// back end hears of each (webhooks: `group_left`, `group_vacated`, then
    /// `client_disconnected` with `node_lost`), from this survivor only.
    fn reap(&mut self, node: u32) -> Result<(), String> {
        self.forget_moves_to(node);
        let held = self.held(node)?;
        let mut p = redis::pipe();
        let mut gone = Vec::new();
        let mut users = Vec::new();
        for (field, info) in &held {
            if let Some((client, system, group)) = keys::parse_member_field(field) {
                self.pipe_leave(&mut p, node, system, group, client, Some(&offline_notice(client, info)), false);
                gone.push((client, system, group, info));
            }
        }
        // After the group steps, in one pipeline: their results come first.
        for field in held.keys() {
            if let Some((client, system, user)) = keys::parse_user_field(field) {
                self.pipe_user_gone(&mut p, node, (system, user, client), &mut users);
            }
        }
        p.cmd("DEL").arg(self.k.node(node)).ignore();
        p.cmd("SREM").arg(self.k.nodes()).arg(keys::node_name(node)).ignore();
        let con = self.con.as_mut().ok_or("down")?;
        let results: Vec<redis::Value> = p.query(con).map_err(|e| e.to_string())?;
        for (&(_, sys, group, _), r) in gone.iter().zip(&results) {
            if matches!(r, redis::Value::Array(v) if matches!(v.as_slice(), [_, redis::Value::Int(0)])) {
                self.vacated.push((sys.into(), group.into()));
            }
        }
        self.reindex()?;
        if self.cfg.hooks.is_some() {
            // Each client's group_left events first, then the users' user_offline, then the
            // clients' client_disconnected.
            let mut results = results.into_iter();
            // Each client once, in the order first seen (a set: a dead node may have had
            // tens of thousands).
            let (mut clients, mut seen): (Vec<(&str, &str)>, std::collections::HashSet<&str>) = Default::default();
            for (&(client, sys, group, info), r) in gone.iter().zip(results.by_ref()) {
                if let Some((1, n)) = results::pair(&Ok(r)) {
                    self.emit_member(false, sys.into(), group.into(), client, info, Some(n.max(0) as usize));
                }
                if seen.insert(client) {
                    clients.push((client, sys));
                }
            }
            self.users_gone(&users, results);
            for field in held.keys() {
                if let Some((client, sys, _)) = keys::parse_user_field(field) {
                    if seen.insert(client) {
                        clients.push((client, sys));
                    }
                }
            }
            for (client, sys) in clients {
                self.emit_client(Kind::ClientDisconnected(Gone::NodeLost), sys.into(), client);
            }
        }
        metrics::add(&self.stats.cluster_reaped_total, held.len() as u64);
        tracing::info!(node = keys::node_name(node), entries = held.len(), "reaped a dead node's presence");
        Ok(())
    }

    /// Graceful exit: this node's clients leave (with notices) and its heartbeat goes.
    pub(super) fn leave_all(&mut self) -> Result<(), String> {
        let me = self.me();
        let mut p = redis::pipe();
        // The users' steps first: their results, in order, say who went offline.
        let mut users = Vec::new();
        for m in self.users.values() {
            for client in m.clients.keys() {
                self.pipe_user_gone(&mut p, me, (&m.system, &m.user, client), &mut users);
            }
        }
        for m in self.groups.values() {
            for (client, info) in &m.clients {
                self.pipe_gone(&mut p, me, &m.system, &m.group, client, info);
            }
        }
        // One key each: they are in different slots on a Redis Cluster.
        p.cmd("DEL").arg(self.k.node(me)).ignore();
        p.cmd("DEL").arg(self.k.alive(me)).ignore();
        p.cmd("SREM").arg(self.k.nodes()).arg(keys::node_name(me)).ignore();
        // The others stop routing here now, not at their next look at the heartbeats (a
        // node stopping next must not pick this one to hand its sessions to).
        p.cmd(self.k.publish()).arg(self.k.cluster()).arg(wire::bye(me)).ignore();
        let con = self.con.as_mut().ok_or("down")?;
        let results: Vec<redis::Value> = p.query(con).map_err(|e| e.to_string())?;
        self.users_gone(&users, results.into_iter());
        Ok(())
    }
}

/// The mirror entry of the user at `key`, created empty if there is none.
fn user_entry<'a>(
    map: &'a mut HashMap<String, UserMirror>,
    key: String,
    system: &Arc<str>,
    user: &Arc<str>,
) -> &'a mut HashMap<String, bool> {
    &mut map
        .entry(key)
        .or_insert_with(|| UserMirror { system: system.clone(), user: user.clone(), clients: HashMap::new() })
        .clients
}
