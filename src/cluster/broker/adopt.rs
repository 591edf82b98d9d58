//! The broker's part of a hand-off (`hub::handoff`): the channels kept for coming sessions,
//! and the move of adopted sessions' presence entries to this node.

use super::{Broker, Post, Step};
use crate::aliases::Move;
use crate::cluster::{keys, wire, Adopted, BrokerCmd};

impl Broker {
    /// Channels to subscribe to for a hand-off (before the pipeline, as any subscription), or
    /// to let go when it is over.
    pub(super) fn pin(&mut self, cmd: &BrokerCmd, unsub: &mut Vec<String>) -> Vec<String> {
        match cmd {
            BrokerCmd::Prepare { from, channels } => {
                let chans: Vec<String> = channels
                    .iter()
                    .map(|c| match &c.group {
                        Some(g) => self.k.group(&c.system, g),
                        None => self.k.system(&c.system),
                    })
                    .collect();
                let new = chans.iter().filter(|c| !self.subscribed.contains_key(*c)).cloned().collect();
                self.pinned.insert(*from, chans);
                new
            }
            BrokerCmd::Adopt { from, clients, .. } => {
                // Members here first: the channels they are in stay subscribed.
                self.mirror_adopted(clients);
                unsub.extend(self.pinned.remove(from).unwrap_or_default());
                Vec::new()
            }
            BrokerCmd::Unprepare { from } => {
                unsub.extend(self.pinned.remove(from).unwrap_or_default());
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The mirror learns the adopted sessions, as if they had joined here.
    fn mirror_adopted(&mut self, clients: &[Adopted]) {
        for c in clients {
            let system: std::sync::Arc<str> = c.system.as_ref().into();
            for g in &c.groups {
                self.mirror_join(&system, &g.as_ref().into(), &c.client, &c.info);
            }
            *self.systems.entry(self.k.system(&c.system)).or_default() += 1;
        }
    }

    /// Redis learns the adopted sessions: each entry moves from `from`'s node hash to this node's (reaping `from` or its leaving
    /// finds nothing of them), the move is kept and announced, and `from` hears `Done`.
    pub(super) fn pipe_adopt(
        &mut self,
        p: &mut redis::Pipeline,
        steps: &mut Vec<Step>,
        from: u32,
        clients: &[Adopted],
        moved: Option<Move>,
        held: Vec<String>,
    ) {
        let me = self.me();
        let (old, new) = (self.k.node(from), self.k.node(me));
        let mut n = 0;
        for c in clients {
            for g in &c.groups {
                let field = keys::member_field(&c.client, &c.system, g);
                p.cmd("HDEL").arg(&old).arg(&field);
                p.cmd("HSET").arg(&new).arg(&field).arg(&*c.info);
                n += 2;
            }
            // (Its user's entry here is the hub's UserJoin, sent as it indexed the session.)
            if let Some(u) = &c.user {
                p.cmd("HDEL").arg(&old).arg(keys::user_field(&c.client, &c.system, u));
                n += 1;
            }
        }
        for m in self.moves_after(from, moved) {
            p.cmd("HSET").arg(self.k.moved()).arg(m.encode()).arg("");
            p.cmd(self.k.publish()).arg(self.k.cluster()).arg(wire::moved(&m));
            n += 2;
        }
        steps.extend((0..n).map(|_| Step::Redis(Post::Ignore)));
        // After the moves (on a Redis Cluster they may be on other masters).
        let done = crate::handoff::Msg::Done { from: me, held };
        self.publish_after(p, steps, self.k.node(from), crate::handoff::encode(&done));
    }

    /// The moves to write for an adoption from `from`: its own, and each that named `from` as
    /// adopter now naming this node (`from` handed those sessions on with its own). The
    /// rewritten ones replace the old in the `moved` hash (HDEL now: a read before the
    /// pipeline; a failure leaves the old entry, which names a node that is going).
    fn moves_after(&mut self, from: u32, moved: Option<Move>) -> Vec<Move> {
        let me = self.me();
        let mut out: Vec<Move> = moved.into_iter().collect();
        let Some(con) = self.con.as_mut() else { return out };
        let held: Vec<String> = redis::cmd("HKEYS").arg(self.k.moved()).query(con).unwrap_or_default();
        for text in held {
            let Some(m) = Move::decode(&text).filter(|m| m.to == from) else { continue };
            let _: redis::RedisResult<()> = redis::cmd("HDEL").arg(self.k.moved()).arg(&text).query(con);
            out.push(Move { to: me, ..m });
        }
        out
    }

    /// Sessions handed to another node: no longer this node's in the mirror (their entries in
    /// Redis moved with them).
    pub(super) fn forget_clients(&mut self, clients: &[String]) {
        let gone: std::collections::HashSet<&str> = clients.iter().map(String::as_str).collect();
        self.groups.retain(|_, m| {
            m.clients.retain(|c, _| !gone.contains(c.as_str()));
            !m.clients.is_empty()
        });
        self.users.retain(|_, m| {
            m.clients.retain(|c, _| !gone.contains(c.as_str()));
            !m.clients.is_empty()
        });
    }

    /// At every (re)connect: the moves Redis holds, into the node's table.
    pub(super) fn load_moves(&mut self) -> Result<(), String> {
        let con = self.con.as_mut().ok_or("down")?;
        let held: Vec<String> = redis::cmd("HKEYS").arg(self.k.moved()).query(con).map_err(|e| e.to_string())?;
        for m in held.iter().filter_map(|t| Move::decode(t)) {
            self.cfg.aliases.moved(m);
        }
        Ok(())
    }

    /// `node` is dead: the moves to it go (its sessions died with it).
    pub(super) fn forget_moves_to(&mut self, node: u32) {
        self.cfg.aliases.adopter_dead(node);
        let Some(con) = self.con.as_mut() else { return };
        let held: Vec<String> = redis::cmd("HKEYS").arg(self.k.moved()).query(con).unwrap_or_default();
        for text in held.iter().filter(|t| Move::decode(t).is_some_and(|m| m.to == node)) {
            let _: redis::RedisResult<()> = redis::cmd("HDEL").arg(self.k.moved()).arg(text).query(con);
        }
    }
}
