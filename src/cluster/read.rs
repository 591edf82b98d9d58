//! Cluster mode's API reads: a call answered from what Redis holds (`get_online_list`,
//! `get_all_groups`, `get_group_history`, `get_user_presence`, a user's connections). Each
//! read is written beside its endpoint (`hub/endpoints/`; the user's connections, shared by
//! `send_to_user` and `close_user`, in `hub/ops.rs`) as a [`Read`]; the broker only runs it,
//! in command order, inside the batch's pipeline, so a read sees every change this node queued
//! before it (read-your-writes through any node, as the changes are answered once Redis has
//! them) and none queued after it.

use bytes::Bytes;
use redis::Value;

use super::keys::Keys;
use crate::ids::ConnId;
use crate::msg::Command;

/// What a read's results come to.
pub enum Then {
    /// The caller's answer (HTTP status and JSON body).
    Answer(u16, Bytes),
    /// A command for the hub, which answers the caller once it has acted on it (the
    /// connections of a user, for `send_to_user` / `close_user`).
    Hub(Command),
}

/// A follow-up pipeline on the broker's connection, for a read whose second question depends on
/// its first answer (a page of groups, then their members).
pub type More<'a> = dyn FnMut(redis::Pipeline) -> Result<Vec<Value>, String> + 'a;

/// An API call answered from Redis.
pub trait Read: Send + std::fmt::Debug {
    /// Adds its commands to the batch's pipeline: at least one, none of them `ignore()`d (each
    /// gives one result; the broker counts them and hands them to [`Read::answer`] in order).
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline);

    /// What its results come to, for the caller `to`; `None`: they are not what the read
    /// expects (the caller gets 503, as when Redis is unreachable). Called only when every one
    /// of its results is a value (an error reply is a 503 too).
    fn answer(self: Box<Self>, k: &Keys, results: Vec<Value>, to: ConnId, more: &mut More<'_>) -> Option<Then>;

    /// Frame bytes it holds while it waits for the broker (`broker_queue_bytes`).
    fn queued_bytes(&self) -> u64 {
        0
    }
}

/// Takes groups found empty out of their systems' index (`rc:gs:`, read by `get_all_groups`):
/// ZREM, then (a trip later) EXISTS of the group's hash, then ZADD again for a group a member
/// came to meanwhile. Right against a join on any node, whose ZADD follows its step's HSET by a
/// trip (`Broker::reindex`): either that HSET came before the EXISTS (added back here) or the
/// join's ZADD comes after the ZREM. Each in its own trip: on a Redis Cluster the index and the
/// group are in different slots, and commands to different masters have no order.
pub fn unindex(k: &Keys, groups: &[(&str, &str)], more: &mut More<'_>) -> Result<(), String> {
    if groups.is_empty() {
        return Ok(());
    }
    let mut zrem = redis::pipe();
    for (s, g) in groups {
        zrem.cmd("ZREM").arg(k.groups(s)).arg(*g);
    }
    more(zrem)?;
    let mut exists = redis::pipe();
    for (s, g) in groups {
        exists.cmd("EXISTS").arg(k.group(s, g));
    }
    let found = more(exists)?;
    index(k, groups.iter().zip(found).filter(|(_, e)| matches!(e, Value::Int(1))).map(|(g, _)| *g), more)
}

/// Adds groups to their systems' index (ZADD, score 0: by name).
pub fn index<'a>(
    k: &Keys,
    groups: impl Iterator<Item = (&'a str, &'a str)>,
    more: &mut More<'_>,
) -> Result<(), String> {
    let mut p = redis::pipe();
    for (s, g) in groups {
        p.cmd("ZADD").arg(k.groups(s)).arg(0).arg(g);
    }
    if !p.is_empty() {
        more(p)?;
    }
    Ok(())
}

/// A text reply (bulk or simple string), if it is one.
pub fn string(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// The strings of an array reply (anything else in it is left out); `None`: not an array.
pub fn strings(v: Value) -> Option<Vec<String>> {
    match v {
        Value::Array(items) => Some(items.into_iter().filter_map(string).collect()),
        _ => None,
    }
}
