//! What the broker does with each pipeline result but API reads' (`Step::Read`, whose
//! `cluster::read::Read` makes the answer): answers, lookups, forwarded calls, webhooks.

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
    /// A USER_JOIN (`online`) or USER_LEAVE step's `{changed, connections after}`: webhooks.
    User {
        online: bool,
        system: Arc<str>,
        user: Arc<str>,
        client: String,
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
            Post::User { online, system, user, client } => {
                if r.is_ok() {
                    self.user_applied(&system, &user, &client, online);
                }
                if let (Some(h), Some((1, n))) = (&self.cfg.hooks, pair(&r)) {
                    h.user(system, user, online, Some(n.max(0) as usize));
                }
            }
        }
    }

    /// A join (`joined`) or leave step's result: the system's groups index learns a group
    /// that got its first member or lost its last (`Broker::reindex`, after the pipeline); one
    /// that changed the group has its webhook events (the member's, and the group's when it
    /// became occupied or vacant).
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
        match (joined, n) {
            (true, 1) => self.to_index.push((system.clone(), group.clone())),
            (false, 0) => self.vacated.push((system.clone(), group.clone())),
            _ => {}
        }
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

    /// Every known node's figures as it last wrote them (`figures` keys; a node whose key
    /// expired is left out): one SMEMBERS, then one GET each (in one pipeline: on a Redis
    /// Cluster the keys are in different slots).
    pub(super) fn node_figures(&mut self) -> Result<Vec<(String, String)>, String> {
        let e = |e: redis::RedisError| e.to_string();
        let con = self.con.as_mut().ok_or("down")?;
        let mut nodes: Vec<String> = redis::cmd("SMEMBERS").arg(self.k.nodes()).query(con).map_err(e)?;
        nodes.sort();
        let ids: Vec<u32> = nodes.iter().filter_map(|n| u32::from_str_radix(n, 16).ok()).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut gets = redis::pipe();
        ids.iter().for_each(|&n| {
            gets.cmd("GET").arg(self.k.figures(n));
        });
        let got: Vec<Option<String>> = gets.query(con).map_err(e)?;
        Ok(ids.iter().zip(got).filter_map(|(&n, f)| Some((keys::node_name(n), f?))).collect())
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
