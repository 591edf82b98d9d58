//! What the hub keeps across a restart: the systems registered without a call (the `systems`
//! setting, and on a single node what `state_dir` kept), the sessions the last run kept put
//! back into the index without a word to anyone (`crate::restore`), and the state written to
//! `state_dir` — after each `register`, at start, and at shutdown with the sessions the shards
//! handed over (`Command::Sessions`) and what the index knows of them.

use super::index;
use super::Hub;
use crate::metrics;
use crate::msg::KeptSession;
use crate::restore::{self, Plan};
use crate::state::{self, State};

impl Hub {
    /// Registers the `systems` setting's list (both modes; cluster mode's broker writes it to
    /// Redis too).
    pub(in crate::hub) fn register_at_start(&mut self) {
        let shards = self.local.shards();
        for n in &self.local.cfg.start_systems.clone() {
            self.local.index.add_system(n, shards);
        }
    }

    /// A single node's start: the systems and sessions the last run kept (`plan`), put back
    /// silently — no notice, no webhook: to every group they never left — and the state
    /// written again (without the sessions: from now on they live in the shards, and a crash
    /// must not bring them back twice).
    pub fn restore(&mut self, plan: Plan) {
        let shards = self.local.shards();
        for n in &plan.systems {
            self.local.index.add_system(n, shards);
        }
        metrics::add(&self.local.stats.state_sessions_left_out_total, plan.left_out.len() as u64);
        for c in plan.clients {
            self.restore_client(c);
        }
        if self.local.cfg.state_dir.is_some() && self.backend.cluster().is_none() {
            self.save_state();
        }
    }

    /// One kept session into the index, as it was: member of its system and groups, with its
    /// user, `userId` and `extend`.
    pub(in crate::hub) fn restore_client(&mut self, c: restore::Client) {
        let shards = self.local.shards();
        let l = &mut self.local;
        let Some(sys) = l.index.find(&c.system) else { return };
        let mut client = index::Client {
            system: sys,
            user_id: c.user_id,
            extend: c.extend,
            groups: Vec::with_capacity(c.groups.len()),
        };
        let system = l.index.system(sys);
        system.members.insert(c.conn);
        for g in c.groups.iter().take(l.cfg.max_groups_per_client) {
            if client.groups.iter().any(|k| **k == **g) {
                continue;
            }
            let (key, members, created) = system.group_entry(g, shards);
            members.insert(c.conn);
            if created {
                metrics::add(&l.stats.groups, 1);
            }
            client.groups.push(key);
        }
        l.index.clients.insert(c.conn, client);
        if let Some(user) = &c.user {
            self.give_user(sys, c.conn, user);
        }
    }

    /// A shard keeping sessions has only those left. Once every shard is quiet, all they sent
    /// before has been handled here (one queue, in order) and every frame it made is in their
    /// queues: each is asked for its sessions after those frames, so none falls between.
    pub(in crate::hub) fn shard_quiet(&mut self) {
        self.quiet += 1;
        if self.quiet == self.local.shards() {
            match self.backend.cluster() {
                Some(_) => self.hand_off_start(),
                None => {
                    for shard in 0..self.local.shards() {
                        self.local.out.send(shard, crate::msg::ShardMsg::HandOver);
                    }
                }
            }
        }
    }

    /// A single node with `state_dir`: writes the registered systems, the node id and the
    /// sessions the shards handed over (only at shutdown) there. A failed write is logged and
    /// counted; the state written last stays.
    pub(in crate::hub) fn save_state(&mut self) {
        let Some(dir) = &self.local.cfg.state_dir else { return };
        debug_assert!(self.backend.cluster().is_none(), "state_dir is refused in cluster mode (config)");
        let l = &self.local;
        let sessions: Vec<state::Session> =
            self.kept.iter().filter_map(|k| kept_state(&l.index, &l.aliases, l.cfg.node_id.0, k)).collect();
        let state = State {
            systems: l.index.systems.iter().map(|s| s.name.to_string()).collect(),
            node_id: Some(format!("{:08x}", l.cfg.node_id.0)),
            written_ms: crate::auth::now_millis(),
            sessions,
        };
        match state::write(dir, &state) {
            Ok(()) => {
                metrics::add(&l.stats.state_writes_total, 1);
                if !self.kept.is_empty() {
                    metrics::add(&l.stats.state_sessions_written_total, state.sessions.len() as u64);
                    tracing::info!(
                        dir = %dir.display(),
                        sessions = state.sessions.len(),
                        "shutdown: recoverable sessions written to state_dir; their clients (closed 1012) resume after the next start"
                    );
                }
            }
            Err(e) => {
                metrics::add(&l.stats.state_write_errors_total, 1);
                tracing::error!(dir = %dir.display(), "cannot write the state to state_dir: {e}; the state written last stays");
                self.kept_sessions_end();
            }
        }
    }

    /// Kept sessions that cannot live on (the state could not be written; no live node took
    /// them): they end here, as at a shutdown without keeping them — the webhooks say so, and
    /// in cluster mode their groups' members on other nodes get their 1002 (on one node every
    /// client is gone already).
    pub(in crate::hub) fn kept_sessions_end(&mut self) {
        if self.kept.is_empty() {
            return;
        }
        tracing::error!(sessions = self.kept.len(), "the kept sessions end: their clients' resumes get fresh sessions");
        let notify = self.backend.cluster().is_some();
        for k in std::mem::take(&mut self.kept) {
            self.remove_client(k.conn, notify, crate::webhooks::Gone::Shutdown);
        }
    }
}

/// A kept session as the state holds it, with what the index knows of it (`None`: the index no
/// longer has it — it ended meanwhile).
pub(in crate::hub) fn kept_state(
    ix: &index::Index,
    aliases: &crate::aliases::Aliases,
    node: u32,
    k: &KeptSession,
) -> Option<state::Session> {
    let client = ix.clients.get(&k.conn)?;
    // A push frame's payload is JSON we built.
    let payload = |f: &bytes::Bytes| {
        let p = state::Payload::new(crate::protocol::ws::payload(f));
        debug_assert!(p.is_some(), "a kept frame that is not JSON");
        p
    };
    Some(state::Session {
        client_id: aliases.id(node, k.conn),
        secret: restore::secret_hex(&k.secret),
        system: ix.name(client.system).to_string(),
        user: ix.users.get(&k.conn).map(|u| u.to_string()),
        user_id: client.user_id.to_string(),
        extend: client.extend.to_string(),
        groups: client.groups.iter().map(|g| g.to_string()).collect(),
        detached_ms: k.detached_ms,
        ip: k.ip,
        from_start: k.from_start,
        acked: k.acked.as_ref().and_then(payload),
        frames: k.frames.iter().filter_map(payload).collect(),
    })
}
