//! The broker's pub/sub connections: one on one Redis, one per master on a Redis Cluster
//! (sharded pub/sub); which one a channel is subscribed on, (un)subscribing and waiting for
//! the confirmations, and following channels a master lets go of.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::{Broker, Link, IO_TIMEOUT};
use crate::cluster::endpoint::Endpoint;
use crate::cluster::sharded::{self, Addr, Con};
use crate::cluster::subscriber::Stream;
use crate::cluster::{link, SubEvent};
use crate::metrics;

impl Broker {
    /// Opens a pub/sub connection to `client`'s server and hands its read half to the
    /// subscriber; `resubscribing`: the first of a (re)connect, with the channels to come.
    pub(super) fn open_link(
        &mut self,
        addr: Option<Addr>,
        client: &redis::Client,
        resubscribing: Option<usize>,
    ) -> Result<(), String> {
        let (reader, mut w) = link::open(client, &self.tls, IO_TIMEOUT)?;
        let info = client.get_connection_info();
        if let Some(pw) = info.redis_settings().password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = info.redis_settings().username() {
                auth.arg(user);
            }
            w.write_all(&auth.arg(pw).get_packed_command()).map_err(|e| e.to_string())?;
        }
        self.sub_gen += 1;
        let gen = self.sub_gen;
        self.streams.send(Stream { gen, reader, resubscribing }).map_err(|e| e.to_string())?;
        self.links.push(Link { addr, gen, w });
        Ok(())
    }

    /// The link `chan` is to be subscribed on: the only one, or its slot's master's (opened
    /// if that master is new).
    pub(super) fn link_for(&mut self, chan: &str) -> Result<usize, String> {
        let Some(Con::Cluster(s)) = &self.con else { return Ok(0) };
        let addr = s.topology().master_of(sharded::slot(chan.as_bytes())).clone();
        if let Some(i) = self.links.iter().position(|l| l.addr.as_ref() == Some(&addr)) {
            return Ok(i);
        }
        let Endpoint::Cluster(nodes) = &self.endpoint else { unreachable!("a sharded connection is a cluster's") };
        let client = nodes.client(&addr)?;
        self.open_link(Some(addr), &client, None)?;
        Ok(self.links.len() - 1)
    }

    /// Subscribes and waits until Redis confirmed every channel.
    /// (On a Redis Cluster, a channel whose slot moved since the map was read is refused with
    /// `MOVED`, and subscribed again where it is: a few times at most.)
    pub(super) fn subscribe(&mut self, chans: &[String]) -> Result<(), String> {
        let mut chans = chans.to_vec();
        for _ in 0..4 {
            if chans.is_empty() {
                return Ok(());
            }
            let mut by_link: Vec<(usize, Vec<String>)> = Vec::new();
            for c in chans {
                let i = self.link_for(&c)?;
                match by_link.iter_mut().find(|(l, _)| *l == i) {
                    Some((_, list)) => list.push(c),
                    None => by_link.push((i, vec![c])),
                }
            }
            let refused = self.pubsub_command(true, &by_link)?;
            for (i, list) in by_link {
                self.subscribed.extend(list.into_iter().filter(|c| !refused.contains(c)).map(|c| (c, i)));
            }
            chans = refused;
        }
        Err("subscriptions refused again and again (MOVED)".into())
    }

    /// Unsubscribes from channels that lost their last member here, and waits for Redis.
    pub(super) fn unsubscribe(&mut self, chans: Vec<String>) -> Result<(), String> {
        let pinned: HashSet<&String> = self.pinned.values().flatten().collect();
        let keep = |c: &String| self.groups.contains_key(c) || self.systems.contains_key(c) || pinned.contains(c);
        let chans: Vec<String> = chans.into_iter().filter(|c| !keep(c)).collect();
        let mut by_link: Vec<(usize, Vec<String>)> = Vec::new();
        for c in chans {
            let Some(i) = self.subscribed.remove(&c) else { continue };
            match by_link.iter_mut().find(|(l, _)| *l == i) {
                Some((_, list)) => list.push(c),
                None => by_link.push((i, vec![c])),
            }
        }
        if by_link.is_empty() || self.links.is_empty() {
            return Ok(());
        }
        self.pubsub_command(false, &by_link).map(|_| ())
    }

    /// Sends (UN)SUBSCRIBE on each link for its channels (sharded: `SSUBSCRIBE`, one command
    /// per channel, as a command's channels must share a slot) and waits for every
    /// confirmation. A channel unsubscribed here is forgotten by the subscriber's positions.
    /// Returns the channels refused with `MOVED` (the slot map learnt where they are).
    pub(super) fn pubsub_command(&mut self, on: bool, by_link: &[(usize, Vec<String>)]) -> Result<Vec<String>, String> {
        let sharded = self.k.is_tagged();
        let cmd = match (on, sharded) {
            (true, false) => "SUBSCRIBE",
            (false, false) => "UNSUBSCRIBE",
            (true, true) => "SSUBSCRIBE",
            (false, true) => "SUNSUBSCRIBE",
        };
        let mut subscribing: HashMap<u64, usize> = HashMap::new();
        let mut leaving: HashSet<(u64, String)> = HashSet::new();
        for (i, chans) in by_link {
            let link = self.links.get_mut(*i).ok_or("no pub/sub connection")?;
            let bytes = match sharded {
                true => chans.iter().flat_map(|c| redis::cmd(cmd).arg(c).get_packed_command()).collect(),
                false => redis::cmd(cmd).arg(chans).get_packed_command(),
            };
            link.w.write_all(&bytes).map_err(|e| e.to_string())?;
            match on {
                true => *subscribing.entry(link.gen).or_default() += chans.len(),
                false => leaving.extend(chans.iter().map(|c| (link.gen, c.clone()))),
            }
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut again = Vec::new();
        while !subscribing.is_empty() || !leaving.is_empty() {
            let wait = deadline.saturating_duration_since(Instant::now());
            let ev = self.events.recv_timeout(wait).map_err(|_| format!("no {cmd} confirmation in time"))?;
            if let SubEvent::Refused(g, Ok(detail)) = &ev {
                // A slot that moved since the map was read. Each command names one channel and
                // gets one reply: one channel of that slot (not yet refused) is refused.
                let Some(link) = self.links.iter().find(|l| l.gen == *g) else { continue };
                let from = link.addr.clone().unwrap_or_default();
                let Some((slot, addr)) = sharded::moved(detail, &from) else {
                    return Err(format!("a subscription was refused: MOVED {detail}"));
                };
                let in_slot = |c: &String| sharded::slot(c.as_bytes()) == slot;
                if on {
                    let mine = by_link.iter().find(|(i, _)| self.links.get(*i).is_some_and(|l| l.gen == *g));
                    let Some((_, chans)) = mine else { continue };
                    let Some(c) = chans.iter().find(|c| in_slot(c) && !again.contains(*c)) else { continue };
                    again.push(c.clone());
                    if let Some(n) = subscribing.get_mut(g) {
                        *n -= 1;
                        if *n == 0 {
                            subscribing.remove(g);
                        }
                    }
                } else if let Some(left) = leaving.iter().find(|(lg, c)| lg == g && in_slot(c)).cloned() {
                    // That server no longer holds the channel: left as asked.
                    leaving.remove(&left);
                    self.gaps.lock().unwrap_or_else(|p| p.into_inner()).forget(&left.1);
                }
                if let Some(Con::Cluster(s)) = &mut self.con {
                    s.moved(slot, addr);
                }
                continue;
            }
            self.event(ev, Some((&mut subscribing, &mut leaving)))?;
        }
        Ok(again)
    }

    /// A subscriber event. `waiting`: the confirmations a (un)subscribe waits for (it counts
    /// them); anything else is handled here: a failed or refusing connection is an error, a
    /// channel a master let go of is subscribed again later (`reroute`).
    #[allow(clippy::type_complexity)]
    pub(super) fn event(
        &mut self,
        ev: SubEvent,
        waiting: Option<(&mut HashMap<u64, usize>, &mut HashSet<(u64, String)>)>,
    ) -> Result<(), String> {
        let current = |g: u64, links: &[Link]| links.iter().any(|l| l.gen == g);
        match ev {
            SubEvent::Down(g) if current(g, &self.links) && self.con.is_some() => Err("pub/sub connection lost".into()),
            // Subscriptions are refused while one waits for them (`pubsub_command`); a MOVED
            // now answers an unsubscribe sent unwaited-for (`reroute`) where the slot was.
            SubEvent::Refused(_, Ok(_)) => Ok(()),
            SubEvent::Refused(g, Err(e)) if current(g, &self.links) => Err(format!("a subscription was refused: {e}")),
            SubEvent::Subscribed(g) => {
                if let Some((subscribing, _)) = waiting {
                    if let Some(n) = subscribing.get_mut(&g) {
                        *n -= 1;
                        if *n == 0 {
                            subscribing.remove(&g);
                        }
                    }
                }
                Ok(())
            }
            SubEvent::Unsubscribed(g, chan) => {
                let asked = waiting.is_some_and(|(_, leaving)| leaving.remove(&(g, chan.clone())));
                if asked {
                    self.gaps.lock().unwrap_or_else(|p| p.into_inner()).forget(&chan);
                } else if self.k.is_tagged()
                    && self.subscribed.get(&chan).and_then(|&i| self.links.get(i)).is_some_and(|l| l.gen == g)
                {
                    self.released.push(chan);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Channels a master let go of (their slot moved to another master): the slot map is
    /// asked again — of that master first, which knows where it gave the slot — and they are
    /// subscribed where they are now. What was published there meanwhile is missed, and the
    /// positions show it (the subscriber keeps them: the sessions of those channels are not
    /// recoverable from before); this node's join markers on them are published again, so a
    /// member who joined meanwhile is one here.
    pub(super) fn reroute(&mut self) -> Result<(), String> {
        let released = std::mem::take(&mut self.released);
        let from = released.first().and_then(|c| self.subscribed.get(c)).and_then(|&i| self.links.get(i)?.addr.clone());
        if let Some(Con::Cluster(s)) = &mut self.con {
            s.refresh(from.as_ref())?;
        }
        let mut chans = Vec::new();
        for c in released {
            let Some(old) = self.subscribed.remove(&c) else { continue };
            // Let go where it was too, unanswered-for (a master that let it go has already; a
            // server that is a replica now would deliver the shard's messages a second time).
            let bye = redis::cmd("SUNSUBSCRIBE").arg(&c).get_packed_command();
            let link = self.links.get_mut(old).ok_or("no pub/sub connection")?;
            link.w.write_all(&bye).map_err(|e| e.to_string())?;
            chans.push(c);
        }
        metrics::add(&self.stats.cluster_resubscribed_total, chans.len() as u64);
        tracing::info!(channels = chans.len(), "Redis Cluster: channels moved to another master; subscribed there");
        self.subscribe(&chans)?;
        let mut p = redis::pipe();
        for c in &chans {
            if let Some(m) = self.groups.get(c) {
                for (client, info) in &m.clients {
                    self.pipe_join(&mut p, &m.system, &m.group, client, info, b"", true);
                }
            }
        }
        if !p.is_empty() {
            let con = self.con.as_mut().ok_or("down")?;
            p.query::<()>(con).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// A Redis Cluster's slot map, asked again with each heartbeat: a channel subscribed on a
    /// server that no longer is its slot's master (its `sunsubscribe` missed, or it became a
    /// replica) is subscribed again where it is (`reroute`), and the command connection sends
    /// to the masters as they are now.
    pub(super) fn check_slots(&mut self) -> Result<(), String> {
        let Some(Con::Cluster(s)) = &mut self.con else { return Ok(()) };
        // Not fatal: the pipelines say soon enough whether the masters can be reached.
        if let Err(e) = s.refresh(None) {
            tracing::debug!("Redis Cluster slot map not read at the heartbeat: {e}");
            return Ok(());
        }
        let topo = s.topology();
        for (chan, &i) in &self.subscribed {
            let owner = topo.master_of(sharded::slot(chan.as_bytes()));
            if self.links.get(i).and_then(|l| l.addr.as_ref()) != Some(owner) && !self.released.contains(chan) {
                self.released.push(chan.clone());
            }
        }
        Ok(())
    }
}
