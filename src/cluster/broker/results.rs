//! What the broker does with each pipeline result: answers, lookups, forwarded calls.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use redis::{RedisResult, Value};

use super::Broker;
use crate::cluster::keys;
use crate::ids::ConnId;
use crate::metrics;
use crate::msg::Command;
use crate::protocol::api;
use crate::webhooks::{Event, Kind, Membership};

/// What to do with one pipeline result.
pub(super) enum Post {
    Ignore,
    /// A JOIN step's `{new, size}`: webhook events.
    Join {
        system: Arc<str>,
        group: Arc<str>,
        client: String,
        info: Box<str>,
    },
    /// A LEAVE step's `{was a member, size after}`: webhook events.
    Leave {
        system: Arc<str>,
        group: Arc<str>,
        client: String,
        info: Box<str>,
    },
    /// A send: answered once Redis has it, so a later send from any node comes after it.
    Publish {
        answer: Option<(ConnId, Bytes)>,
    },
    Register {
        system: Box<str>,
        to: ConnId,
    },
    Lookup {
        system: Box<str>,
    },
    Forward {
        corr: u64,
        waiting: bool,
    },
    Online {
        with_users: bool,
        to: ConnId,
    },
    /// A USER_JOIN (`online`) or USER_LEAVE step's `{changed, connections after}`: webhooks.
    User {
        online: bool,
        system: Arc<str>,
        user: Arc<str>,
        client: String,
    },
    /// The user's clientIds, for the hub to act on.
    UserClients {
        system: Box<str>,
        call: crate::msg::UserCall,
        to: ConnId,
    },
    /// A group's history stream, newest first.
    History {
        to: ConnId,
    },
    /// The page's group names; their members are read next, one `HKEYS` each.
    AllGroups {
        system: Box<str>,
        limit: usize,
        paged: bool,
        to: ConnId,
    },
}

impl Broker {
    pub(super) fn post(&mut self, post: Post, r: RedisResult<Value>) {
        if let Err(e) = &r {
            if !matches!(post, Post::Ignore | Post::Publish { .. }) || !e.is_io_error() {
                tracing::debug!("redis: {e}");
            }
        }
        match post {
            Post::Ignore => {}
            Post::Join { system, group, client, info } => self.membership(true, system, group, &client, &info, &r),
            Post::Leave { system, group, client, info } => self.membership(false, system, group, &client, &info, &r),
            Post::Publish { answer } => {
                metrics::add(&self.stats.cluster_published_total, 1);
                match (answer, r.is_ok()) {
                    (Some((to, body)), true) => self.reply(to, 200, body, None),
                    (Some((to, _)), false) => self.unavailable(to),
                    (None, _) => {}
                }
            }
            Post::Register { system, to } => self.registered(system, to, r),
            Post::Lookup { system } => {
                let registered = match r {
                    Ok(Value::Int(n)) => Ok(n == 1),
                    _ => Err(api::CLUSTER_UNAVAILABLE.to_string()),
                };
                if registered == Ok(true) {
                    self.known.insert(system.clone());
                }
                let _ = self.hub.send(Command::SystemKnown { system, registered });
            }
            Post::Forward { corr, waiting } => {
                metrics::add(&self.stats.cluster_published_total, 1);
                if waiting {
                    self.forwarded(corr, r);
                }
            }
            Post::Online { with_users: false, to } => match r {
                Ok(Value::Array(ids)) => {
                    let ids: Vec<String> = ids.into_iter().filter_map(string).collect();
                    self.reply(to, 200, api::online_list_body(&ids), None);
                }
                _ => self.unavailable(to),
            },
            Post::Online { with_users: true, to } => match r {
                Ok(Value::Array(kv)) => {
                    let kv: Vec<String> = kv.into_iter().filter_map(string).collect();
                    let infos: Vec<(&str, [String; 2])> = kv
                        .chunks_exact(2)
                        .map(|p| (p[0].as_str(), serde_json::from_str(&p[1]).unwrap_or_default()))
                        .collect();
                    let members = infos.iter().map(|(c, [u, e])| (*c, u.as_str(), e.as_str()));
                    self.reply(to, 200, api::online_users_body(members), None);
                }
                _ => self.unavailable(to),
            },
            Post::User { online, system, user, client } => {
                if r.is_ok() {
                    self.user_applied(&system, &user, &client, online);
                }
                if let (Some(h), Some((1, n))) = (&self.cfg.hooks, pair(&r)) {
                    h.user(system, user, online, Some(n.max(0) as usize));
                }
            }
            Post::UserClients { system, call, to } => match r {
                Ok(Value::Array(ids)) => {
                    let clients = ids.into_iter().filter_map(string).filter_map(|s| crate::ids::parse_client_ref(&s));
                    let clients = clients.collect();
                    let _ = self.hub.send(Command::UserClients { system, clients, call, to });
                }
                _ => self.unavailable(to),
            },
            Post::History { to } => self.history_read(to, r),
            Post::AllGroups { system, limit, paged, to } => self.groups_read(&system, limit, paged, to, r),
        }
    }

    /// A join (`joined`) or leave that changed the group: its webhook events (the member's,
    /// and the group's when it became occupied or vacant).
    fn membership(
        &mut self,
        joined: bool,
        system: Arc<str>,
        group: Arc<str>,
        client: &str,
        info: &str,
        r: &RedisResult<Value>,
    ) {
        let Some((1, n)) = pair(r) else { return };
        self.emit_member(joined, system, group, client, info, Some(n.max(0) as usize));
    }

    fn registered(&mut self, system: Box<str>, to: ConnId, r: RedisResult<Value>) {
        let Ok(Value::Int(n)) = r else { return self.unavailable(to) };
        let _ = self.hub.send(Command::SystemKnown { system: system.clone(), registered: Ok(true) });
        match n {
            1 => self.reply(to, 200, api::ok_body("[]"), None),
            _ => {
                let body = api::err_body(&format!("systemId '{system}' is already registered"));
                self.reply(to, 409, body, None)
            }
        }
    }

    /// The PUBLISH of a forwarded call someone waits for: no listener means its node is gone.
    fn forwarded(&mut self, corr: u64, r: RedisResult<Value>) {
        match r {
            // No node listens there: the node is gone, and its clients with it.
            Ok(Value::Int(0)) => {
                if let Some(to) = self.pending.take(corr) {
                    let body = api::err_body("client not found (its node is not running)");
                    self.reply(to, 404, body, None);
                }
            }
            Ok(_) => {}
            Err(_) => {
                if let Some(to) = self.pending.take(corr) {
                    self.unavailable(to);
                }
            }
        }
    }

    fn history_read(&mut self, to: ConnId, r: RedisResult<Value>) {
        let Ok(Value::Array(entries)) = r else { return self.unavailable(to) };
        // Entry ids are `<ms>-<n>`: older than history_ttl is gone (the stream's own expiry
        // only runs when it is idle that long).
        let cutoff = crate::auth::now_millis().saturating_sub(self.cfg.history_ttl.as_millis() as u64);
        let mut kept: Vec<Vec<u8>> = entries.into_iter().filter_map(|e| stream_message(e, cutoff)).collect();
        kept.reverse();
        self.reply(to, 200, api::history_body(kept.iter().map(Vec::as_slice)), None);
    }

    fn groups_read(&mut self, system: &str, limit: usize, paged: bool, to: ConnId, r: RedisResult<Value>) {
        let Ok(Value::Array(names)) = r else { return self.unavailable(to) };
        let names: Vec<String> = names.into_iter().filter_map(string).collect();
        let Ok(mut members) = self.group_members(system, &names[..names.len().min(limit)]) else {
            return self.unavailable(to);
        };
        match api::groups_page(&names, limit, paged, |g| members.remove(g).unwrap_or_default()) {
            Ok(body) => self.reply(to, 200, body, None),
            Err(e) => self.reply(to, e.status, e.body(), None),
        }
    }
}

impl Broker {
    /// A client joined (`true`) or left a group, leaving `size_after` members cluster-wide
    /// (if known; webhooks); `info` is its `[userId, extend]`.
    pub(super) fn emit_member(
        &self,
        joined: bool,
        system: Arc<str>,
        group: Arc<str>,
        client: &str,
        info: &str,
        size_after: Option<usize>,
    ) {
        let Some(h) = &self.cfg.hooks else { return };
        let [user_id, extend]: [String; 2] = serde_json::from_str(info).unwrap_or_default();
        let (user_id, extend) = (user_id.into(), extend.into());
        h.membership(Membership { system, group, client: client.into(), user_id, extend, joined, size_after });
    }

    /// An event about a client of any node (a dead one's, when reaping).
    pub(super) fn emit_client(&self, kind: Kind, system: Arc<str>, client: &str) {
        if let Some(h) = &self.cfg.hooks {
            h.emit(Event::new(kind, system, None, Some(client.into())));
        }
    }

    /// The clientIds of each of `users` (one pipeline of `HKEYS`).
    pub(super) fn user_clients(&mut self, system: &str, users: &[Box<str>]) -> Result<Vec<Vec<String>>, String> {
        let mut p = redis::pipe();
        for u in users {
            p.cmd("HKEYS").arg(self.k.user(system, u));
        }
        let con = self.con.as_mut().ok_or("down")?;
        if users.is_empty() {
            return Ok(Vec::new());
        }
        p.query(con).map_err(|e| e.to_string())
    }

    /// Every known node's figures as it last wrote them (`figures` keys; a node whose key
    /// expired is left out): one SMEMBERS and one MGET.
    pub(super) fn node_figures(&mut self) -> Result<Vec<(String, String)>, String> {
        let e = |e: redis::RedisError| e.to_string();
        let con = self.con.as_mut().ok_or("down")?;
        let mut nodes: Vec<String> = redis::cmd("SMEMBERS").arg(self.k.nodes()).query(con).map_err(e)?;
        nodes.sort();
        let ids: Vec<u32> = nodes.iter().filter_map(|n| u32::from_str_radix(n, 16).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        ids.iter().for_each(|&n| {
            mget.arg(self.k.figures(n));
        });
        let got: Vec<Option<String>> = mget.query(con).map_err(e)?;
        Ok(ids.iter().zip(got).filter_map(|(&n, f)| Some((keys::node_name(n), f?))).collect())
    }

    /// The members of each of `groups` (one pipeline of `HKEYS`, one per group of the page).
    fn group_members(&mut self, system: &str, groups: &[String]) -> Result<HashMap<String, Vec<String>>, String> {
        let mut p = redis::pipe();
        for g in groups {
            p.cmd("HKEYS").arg(self.k.group(system, g));
        }
        let con = self.con.as_mut().ok_or("down")?;
        let lists: Vec<Vec<String>> =
            if groups.is_empty() { Vec::new() } else { p.query(con).map_err(|e| e.to_string())? };
        Ok(groups.iter().cloned().zip(lists).collect())
    }
}

/// The message of one stream entry `[id, [field, value]]`, if not older than `cutoff` (ms).
fn stream_message(e: Value, cutoff: u64) -> Option<Vec<u8>> {
    let Value::Array(mut parts) = e else { return None };
    let Value::Array(fields) = parts.pop()? else { return None };
    let id = string(parts.pop()?)?;
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    if ms < cutoff {
        return None;
    }
    match fields.into_iter().nth(1)? {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// A Lua step's `{a, b}` result.
pub(super) fn pair(r: &RedisResult<Value>) -> Option<(i64, i64)> {
    match r {
        Ok(Value::Array(v)) => match v.as_slice() {
            [Value::Int(a), Value::Int(b)] => Some((*a, *b)),
            _ => None,
        },
        _ => None,
    }
}

fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}
