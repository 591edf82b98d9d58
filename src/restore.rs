//! What a single node's start makes of the state its last run left in `state_dir`
//! (`crate::state`): the systems to register, the node id to take (so the kept clientIds stay
//! valid), and the sessions to put back — each to its shard ([`KeptSession`], put in its slot,
//! detached, by `Shard::new`) and into the hub's index ([`Client`], by `Hub::restore`), so a
//! client that resumes after the restart gets its clientId, groups and unacknowledged frames as
//! after a blip, and nobody is told anything.
//!
//! A session that cannot be put back whole (its clientId names another node or a shard this
//! run does not have, its system is gone, its secret is damaged) is left out, counted and logged
//! by cause; never half restored. A session whose window ran out during the downtime is put
//! back all the same: the shard's first sweep ends it the way any lapsed session ends (its
//! groups told 1002, its webhooks sent), so the back end hears of it exactly once.

use std::collections::HashSet;

use crate::config::{Config, NodeId};
use crate::ids::{self, ConnId};
use crate::msg::KeptSession;
use crate::protocol::ws as wsp;
use crate::state::{self, Found, State};

/// A restored session as the hub's index holds it.
#[derive(Debug)]
pub struct Client {
    pub conn: ConnId,
    pub system: Box<str>,
    pub user: Option<Box<str>>,
    pub user_id: Box<str>,
    pub extend: Box<str>,
    pub groups: Vec<Box<str>>,
}

/// What a start puts back.
#[derive(Debug, Default)]
pub struct Plan {
    /// The systems the state kept (the `systems` setting's are the hub's own).
    pub systems: Vec<Box<str>>,
    /// Each shard's sessions, oldest detached first (the order `max_recovery_sessions` ends
    /// them in).
    pub shards: Vec<Vec<KeptSession>>,
    pub clients: Vec<Client>,
    /// Sessions left out, with why.
    pub left_out: Vec<(String, &'static str)>,
}

/// Reads `state_dir` (single node; an empty plan otherwise, or when it holds nothing usable:
/// logged) and takes the kept node id when `cfg` has none of its own.
pub fn read(cfg: &mut Config) -> Plan {
    let shards = cfg.shards;
    let mut plan = Plan { shards: (0..shards).map(|_| Vec::new()).collect(), ..Plan::default() };
    let Some(dir) = cfg.state_dir.clone().filter(|_| cfg.redis.is_none()) else { return plan };
    let state = match state::read(&dir) {
        Found::Nothing => {
            tracing::info!(dir = %dir.display(), "state_dir holds no state yet: a clean start");
            return plan;
        }
        Found::Unusable(why) => {
            tracing::warn!("state_dir: {why}: starting clean");
            return plan;
        }
        Found::State(s) => s,
    };
    let node = match state.node_id.as_deref().map(<NodeId as crate::config::Setting>::parse) {
        Some(Ok(kept)) => cfg.take_node_id(kept),
        Some(Err(e)) => {
            tracing::warn!("state_dir: the kept node id is not one ({e}): its sessions cannot be put back");
            cfg.node_id
        }
        None => cfg.node_id,
    };
    plan.systems = state.systems.iter().map(|s| s.as_str().into()).collect();
    let n = state.sessions.len();
    // A shard's slab reaches past the slots it ever used only as far as its connections did.
    let max_slot = cfg.max_connections.saturating_add(cfg.max_recovery_sessions).min(ids::SLOTS);
    sessions(&mut plan, state, node.0, max_slot);
    tracing::info!(
        dir = %dir.display(),
        systems = plan.systems.len(),
        sessions = n - plan.left_out.len(),
        "registered systems and sessions restored from state_dir"
    );
    log_left_out(&plan.left_out);
    plan
}

/// Puts each kept session into the plan, or into `left_out` with why.
fn sessions(plan: &mut Plan, state: State, node: u32, max_slot: usize) {
    let shards = plan.shards.len();
    let systems: HashSet<&str> = state.systems.iter().map(String::as_str).collect();
    let mut seen = HashSet::new();
    let mut sessions = state.sessions;
    sessions.sort_by_key(|s| s.detached_ms);
    for s in sessions {
        match session(s, (node, shards, max_slot), &systems) {
            // One session per slot (a slot's generation tells two apart, but a slot holds one).
            Ok((kept, client)) if seen.insert((kept.conn.shard, kept.conn.slot)) => {
                plan.shards[kept.conn.shard as usize].push(kept);
                plan.clients.push(client);
            }
            Ok((kept, _)) => plan.left_out.push((ids::client_id(node, kept.conn), "its slot kept twice")),
            Err((id, why)) => plan.left_out.push((id, why)),
        }
    }
}

/// One kept session, checked whole.
fn session(
    s: state::Session,
    (node, shards, max_slot): (u32, usize, usize),
    systems: &HashSet<&str>,
) -> Result<(KeptSession, Client), (String, &'static str)> {
    let fail = |why| Err((s.client_id.clone(), why));
    let Some(r) = ids::parse_client_ref(&s.client_id) else { return fail("a malformed clientId") };
    if r.node != node {
        return fail("its clientId names another node id (node_id changed)");
    }
    if r.conn.shard as usize >= shards {
        return fail("its shard is not started in this run (shards changed)");
    }
    if r.conn.slot as usize >= max_slot {
        return fail("its slot is past max_connections + max_recovery_sessions");
    }
    if !systems.contains(s.system.as_str()) {
        return fail("its system is not registered");
    }
    let (_, kept, client) = convert(s)?;
    Ok((kept, client))
}

/// A session handed over by another node (cluster mode's hand-off): its old clientId, what
/// its new shard holds and what the index holds (`conn` still the old one), or why not.
pub fn handed(s: state::Session) -> Result<(ids::ClientRef, KeptSession, Client), (String, &'static str)> {
    convert(s)
}

/// A session in the state's form made into what a shard and the index hold.
fn convert(s: state::Session) -> Result<(ids::ClientRef, KeptSession, Client), (String, &'static str)> {
    let fail = |why| Err((s.client_id.clone(), why));
    let Some(r) = ids::parse_client_ref(&s.client_id) else { return fail("a malformed clientId") };
    let Some(secret) = secret(&s.secret) else { return fail("a damaged secret") };
    let frame = |p: &state::Payload| wsp::frame(wsp::OP_TEXT, p.text().as_bytes());
    let kept = KeptSession {
        conn: r.conn,
        secret,
        system: s.system.as_str().into(),
        detached_ms: s.detached_ms,
        ip: s.ip,
        acked: s.acked.as_ref().map(frame),
        frames: s.frames.iter().map(frame).collect(),
        from_start: s.from_start && s.acked.is_none(),
    };
    let client = Client {
        conn: r.conn,
        system: s.system.into(),
        user: s.user.filter(|u| !u.is_empty()).map(Into::into),
        user_id: s.user_id.into(),
        extend: s.extend.into(),
        groups: s.groups.into_iter().map(Into::into).collect(),
    };
    Ok((r, kept, client))
}

/// 32 hex digits.
fn secret(hex: &str) -> Option<crate::recovery::Secret> {
    if hex.len() != 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The secret as the state file holds it.
pub fn secret_hex(s: &crate::recovery::Secret) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

/// One warn line per cause, with how many and one of the clientIds.
fn log_left_out(left: &[(String, &'static str)]) {
    let mut causes: Vec<&'static str> = left.iter().map(|(_, why)| *why).collect();
    causes.sort_unstable();
    causes.dedup();
    for why in causes {
        let n = left.iter().filter(|(_, w)| *w == why).count();
        let example = left.iter().find(|(_, w)| *w == why).map_or("", |(id, _)| id.as_str());
        tracing::warn!(sessions = n, example, "kept sessions not restored: {why}; their clients get fresh sessions");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(client_id: &str, system: &str) -> state::Session {
        state::Session {
            client_id: client_id.into(),
            secret: "00112233445566778899aabbccddeeff".into(),
            system: system.into(),
            groups: vec!["g".into()],
            detached_ms: 5,
            from_start: true,
            frames: vec![state::Payload::new(br#"{"messageId":"m1","code":0}"#).unwrap()],
            ..state::Session::default()
        }
    }

    #[test]
    fn a_session_is_put_back_whole_or_left_out_with_why() {
        let node = 0xab;
        let id = |shard, slot, gen| ids::client_id(node, ConnId { shard, slot, gen });
        let state = State {
            systems: vec!["a".into()],
            sessions: vec![
                kept(&id(1, 7, 99), "a"),
                kept(&id(1, 7, 99), "a"),
                kept(&id(1, 7, 100), "a"),
                kept(&id(2, 0, 1), "a"),
                kept(&ids::client_id(0xcd, ConnId { shard: 0, slot: 1, gen: 1 }), "a"),
                kept(&id(0, 3, 4), "gone"),
                state::Session { secret: "zz".into(), ..kept(&id(0, 4, 4), "a") },
            ],
            ..State::default()
        };
        let mut plan = Plan { shards: vec![Vec::new(), Vec::new()], ..Plan::default() };
        sessions(&mut plan, state, node, 1000);
        assert_eq!(plan.shards[1].len(), 1);
        let s = &plan.shards[1][0];
        assert_eq!((s.conn, s.secret[15], s.frames.len()), (ConnId { shard: 1, slot: 7, gen: 99 }, 0xff, 1));
        assert_eq!(wsp::payload(&s.frames[0]), br#"{"messageId":"m1","code":0}"#);
        assert_eq!(crate::recovery::message_id(&s.frames[0]), Some(&b"m1"[..]));
        assert_eq!(plan.clients.len(), 1);
        assert_eq!(&*plan.clients[0].groups[0], "g");
        let mut why: Vec<&str> = plan.left_out.iter().map(|(_, w)| *w).collect();
        why.sort_unstable();
        assert_eq!(
            why,
            [
                "a damaged secret",
                "its clientId names another node id (node_id changed)",
                "its shard is not started in this run (shards changed)",
                "its slot kept twice",
                "its slot kept twice",
                "its system is not registered",
            ]
        );
    }

    #[test]
    fn secrets_round_trip() {
        let s = crate::recovery::new_secret();
        assert_eq!(secret(&secret_hex(&s)), Some(s));
        assert_eq!(secret("0011"), None);
    }
}
