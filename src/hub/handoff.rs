//! Cluster mode: a stopping node hands its recoverable sessions to a live node, and a live
//! node adopts them (the messages are `crate::handoff`'s; the order and the failure cases are
//! in docs/CLUSTER.md, "Restarts").
//!
//! The stopping side runs once every shard is quiet (only kept sessions left, `keep.rs`): ask
//! an adopter; once it is subscribed to the sessions' channels (its `Ready`, which carries the
//! cut) ask the shards for the sessions; send them; wait for `Done`, then let the hub exit. A
//! direct send or a resume for one of them that comes meanwhile is passed on behind the
//! sessions. If no node takes them within the bounds, they end as without a hand-off.
//!
//! The adopting side keeps every frame of those channels from its subscription on, puts the
//! sessions in its shards (`ShardMsg::Adopt`), indexes them under their old clientIds
//! (`crate::aliases`), delivers what they have not had (by the cut), and has the broker move
//! their presence entries to this node and announce the move.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::Hub;
use crate::cluster::BrokerCmd;
use crate::handoff::{self, Channel, Cut, Msg};
use crate::ids::{ClientRef, ConnId};
use crate::metrics;
use crate::msg::{Adoption, Frame, KeptSession, ShardMsg};
use crate::protocol::relay;

/// How long a stopping node waits for an adopter's `Ready` before it asks the next one
/// (the shards wait for their sessions to be asked for at most 1 s past their deadline).
const READY_TIMEOUT: Duration = Duration::from_millis(250);
/// How many nodes a stopping node asks at most (within the shards' 1 s margin).
const MAX_ASKED: usize = 3;
/// How long a stopping node still passes on resumes for its sessions after `Done`.
const LINGER: Duration = Duration::from_millis(250);
/// Most frames an adopter keeps for coming sessions (then the hand-off is given up).
const MAX_KEPT_FRAMES: usize = 100_000;

/// Where this node's own hand-off stands.
enum Phase {
    /// No adopter asked yet.
    Starting,
    /// `Ask` sent to the adopter; waiting for `Ready` until the deadline.
    Asked(Instant),
    /// The cut taken, the shards asked for their sessions (until the deadline).
    Cutting { cut: Vec<Cut>, until: Instant },
    /// Sessions sent; waiting for `Done` until the deadline.
    Sent(Instant),
    /// Done; for a moment still passing on what comes for the sessions from nodes that have
    /// not heard of the move yet (it is announced with `Done`).
    Lingering(Instant),
    /// Over (done, or given up: `failed`): the hub may exit once the shards' sessions are in.
    Over { failed: bool },
}

/// The stopping side.
pub(super) struct Out {
    adopter: u32,
    asked: Vec<u32>,
    phase: Phase,
    /// The sessions' connections here (from the cut on, sends for them go to the adopter).
    moving: HashSet<ConnId>,
    /// What came for them after the cut, before the sessions were sent: passed on after.
    later: Vec<Msg>,
    bounced: Vec<relay::Msg>,
    sessions: usize,
    /// Shards that handed their sessions to the hub (`Command::Sessions`).
    answered: usize,
    /// When the first node was asked: the adopter must confirm within `shutdown_timeout` + 1 s
    /// of it (it gives up itself after `shutdown_timeout`, and says so).
    asked_at: Instant,
}

/// The adopting side, per stopping node.
pub(super) struct In {
    channels: HashSet<Channel>,
    /// Frames of those channels since the subscription, with their positions.
    frames: Vec<(Channel, Option<handoff::At>, Frame)>,
    sessions: Vec<crate::state::Session>,
    cut: Vec<Cut>,
    /// Direct sends and relay messages that came before the sessions were held here.
    sends: Vec<(String, String)>,
    relays: Vec<relay::Msg>,
    /// Shards asked to hold sessions, not answered yet.
    waiting: usize,
    held: Vec<(ClientRef, ConnId)>,
    clients: HashMap<ClientRef, crate::restore::Client>,
    until: Instant,
}

#[derive(Default)]
pub(super) struct HandOffs {
    pub out: Option<Out>,
    pub ins: HashMap<u32, In>,
    /// `Stop` came while a hand-off was under way: exit once it is over.
    pub stop_asked: bool,
    /// This node is shutting down (from the signal on: it adopts nothing).
    pub stopping: bool,
    /// Relay messages bounced before the hand-off started (passed on with it).
    early: Vec<relay::Msg>,
}

impl HandOffs {
    /// A hand-off of ours is under way (the hub must not exit yet).
    pub fn busy(&self) -> bool {
        self.out.as_ref().is_some_and(|o| !matches!(o.phase, Phase::Over { .. }))
    }

    /// How long the hub may sleep.
    pub fn tick(&self, idle: Duration) -> Duration {
        if self.busy() || !self.ins.is_empty() {
            Duration::from_millis(20)
        } else {
            idle
        }
    }

    /// Whether sends for `conn` go to the adopter now.
    pub fn moving(&self, conn: ConnId) -> bool {
        self.out.as_ref().is_some_and(|o| o.moving.contains(&conn))
    }
}

impl Hub {
    fn me(&self) -> u32 {
        self.local.cfg.node_id.0
    }

    fn tell_node(&mut self, node: u32, m: &Msg) {
        if let Some(c) = self.backend.cluster() {
            c.link.send(BrokerCmd::ToNode { node, payload: handoff::encode(m) });
        }
    }

    /// Every shard is quiet: the kept sessions (all the index holds now) go to a live node.
    pub(super) fn hand_off_start(&mut self) {
        let sessions = self.local.index.clients.len();
        if sessions == 0 {
            return self.ask_for_sessions();
        }
        let moving = self.local.index.clients.keys().copied().collect();
        self.handoff.out = Some(Out {
            adopter: 0,
            asked: Vec::new(),
            phase: Phase::Starting,
            moving,
            later: Vec::new(),
            bounced: std::mem::take(&mut self.handoff.early),
            sessions,
            answered: 0,
            asked_at: Instant::now(),
        });
        self.ask_next();
    }

    /// Every shard hands its kept sessions to the hub (`Command::Sessions`).
    fn ask_for_sessions(&mut self) {
        for shard in 0..self.local.shards() {
            self.local.out.send(shard, ShardMsg::HandOver);
        }
    }

    /// Asks the next live node to adopt, or gives up.
    fn ask_next(&mut self) {
        let me = self.me();
        let Some(out) = self.handoff.out.as_mut().filter(|o| matches!(o.phase, Phase::Starting | Phase::Asked(_)))
        else {
            return;
        };
        let live: Vec<u32> = match self.backend.cluster() {
            Some(c) if c.link.usable() => {
                let mut l: Vec<u32> = c.live.iter().copied().filter(|n| *n != me && !out.asked.contains(n)).collect();
                // The next node after this one (a rolling restart spreads the sessions).
                l.sort_by_key(|n| n.wrapping_sub(me));
                l
            }
            _ => Vec::new(),
        };
        let Some(&node) = live.first().filter(|_| out.asked.len() < MAX_ASKED) else {
            return self.hand_off_failed("no live node took them");
        };
        out.adopter = node;
        out.asked.push(node);
        out.phase = Phase::Asked(Instant::now() + READY_TIMEOUT);
        let channels = self.channels();
        let sessions = self.local.index.clients.len() as u32;
        self.tell_node(node, &Msg::Ask { from: me, sessions, channels });
    }

    /// The systems and groups of the index's clients (the sessions).
    fn channels(&self) -> Vec<Channel> {
        let ix = &self.local.index;
        let mut set = HashSet::new();
        for c in ix.clients.values() {
            let system = ix.name(c.system).to_string();
            for g in &c.groups {
                set.insert(Channel { system: system.clone(), group: Some(g.to_string()) });
            }
            set.insert(Channel { system, group: None });
        }
        set.into_iter().collect()
    }

    /// No hand-off: the sessions end as without one, once the shards handed them to the hub.
    fn hand_off_failed(&mut self, why: &str) {
        let shards = self.local.shards();
        let Some(out) = self.handoff.out.as_mut() else { return };
        let shards_not_asked = matches!(out.phase, Phase::Starting | Phase::Asked(_));
        out.phase = Phase::Over { failed: true };
        let all_in = out.answered >= shards;
        metrics::add(&self.local.stats.handoff_failed_total, 1);
        tracing::warn!(
            sessions = out.sessions,
            "shutdown: the sessions could not be handed to a live node ({why}): they end"
        );
        if shards_not_asked {
            // Their sessions come to `self.kept` and end there (`sessions_in`).
            self.ask_for_sessions();
        } else if all_in {
            self.kept_sessions_end();
        }
    }

    /// A hand-off message from another node (or our own, answered).
    pub(super) fn hand_off_msg(&mut self, msg: Msg, cut: Vec<Cut>) {
        match msg {
            Msg::Ask { from, sessions, channels } => self.asked(from, sessions, channels),
            Msg::Ready { from, .. } => self.ready(from, cut),
            Msg::Refused { from, why } => self.refused(from, why),
            Msg::Part { from, sessions, frames, refs, last, cut } => {
                let (sessions, left_out) = handoff::unpack(sessions, &frames, refs);
                if left_out > 0 {
                    tracing::warn!(
                        node = format!("{from:08x}"),
                        left_out,
                        "handed sessions with damaged frame references: not adopted (their node ends them)"
                    );
                }
                self.part(from, sessions, last, cut)
            }
            Msg::Send { from, client, payload } => self.send_in(from, client, payload),
            Msg::Done { from, held } => self.done(from, held),
        }
    }

    /// The adopter asked said no (before `Ready`: ask the next one), or gave up (after).
    fn refused(&mut self, from: u32, why: String) {
        let Some(out) = self.handoff.out.as_ref().filter(|o| o.adopter == from) else { return };
        match out.phase {
            Phase::Asked(_) => {
                tracing::info!(node = format!("{from:08x}"), "shutdown: hand-off refused ({why}); asking another node");
                self.ask_next();
            }
            Phase::Cutting { .. } | Phase::Sent(_) => self.hand_off_failed(&format!("the adopter gave up: {why}")),
            _ => {}
        }
    }

    /// The adopter is subscribed; `cut`: what this node's shards were given of its channels.
    fn ready(&mut self, from: u32, cut: Vec<Cut>) {
        let Some(out) = self.handoff.out.as_mut().filter(|o| o.adopter == from) else { return };
        if !matches!(out.phase, Phase::Asked(_)) {
            return;
        }
        // The shards answer at once (they are quiet, waiting for this); they give up 1 s past
        // their own deadline.
        out.phase = Phase::Cutting { cut, until: Instant::now() + Duration::from_secs(1) };
        self.ask_for_sessions();
    }

    /// A shard's kept sessions (`Command::Sessions`).
    pub(super) fn sessions_in(&mut self, kept: Vec<KeptSession>) {
        self.kept.extend(kept);
        let shards = self.local.shards();
        let Some(out) = self.handoff.out.as_mut() else { return };
        out.answered += 1;
        if out.answered < shards {
            return;
        }
        match &mut out.phase {
            Phase::Cutting { cut, .. } => {
                let cut = std::mem::take(cut);
                self.send_sessions(cut);
            }
            // Given up before they were all in: they end now.
            Phase::Over { failed: true } => self.kept_sessions_end(),
            _ => {}
        }
    }

    /// Every shard handed its sessions over: to the adopter, then what came for them since.
    fn send_sessions(&mut self, cut: Vec<Cut>) {
        let me = self.me();
        let sessions: Vec<crate::state::Session> = {
            let l = &self.local;
            self.kept.iter().filter_map(|k| super::keep::kept_state(&l.index, &l.aliases, me, k)).collect()
        };
        let Some(out) = self.handoff.out.as_mut() else { return };
        let adopter = out.adopter;
        out.sessions = sessions.len();
        out.phase = Phase::Sent(out.asked_at + self.local.cfg.shutdown_timeout + Duration::from_secs(1));
        let later = std::mem::take(&mut out.later);
        let bounced = std::mem::take(&mut out.bounced);
        for part in handoff::parts(me, sessions, cut) {
            self.tell_node(adopter, &part);
        }
        for m in later {
            self.tell_node(adopter, &m);
        }
        for m in bounced {
            if let Some(c) = self.backend.cluster() {
                c.link.send(BrokerCmd::ToNode { node: adopter, payload: relay::encode(&m) });
            }
        }
    }

    /// A send to `conn` (one of the sessions on their way) goes to the adopter.
    pub(super) fn pass_on_send(&mut self, conn: ConnId, frame: &Frame) {
        let me = self.me();
        let client = self.local.aliases.id(me, conn);
        let payload = String::from_utf8_lossy(crate::protocol::ws::payload(frame)).into_owned();
        let Some(out) = self.handoff.out.as_mut() else { return };
        let m = Msg::Send { from: me, client, payload };
        match out.phase {
            Phase::Sent(_) | Phase::Lingering(_) => {
                let adopter = out.adopter;
                self.tell_node(adopter, &m);
            }
            _ => out.later.push(m),
        }
    }

    /// A relay message a shard could not serve any more (its session is on its way).
    pub(super) fn bounced(&mut self, mut m: relay::Msg) {
        // A session this node had adopted was named by its connection here: the adopter knows
        // it by its old one.
        if let Some(r) = self.local.aliases.adopted_as(m.target()) {
            m.retarget(r.conn);
        }
        let Some(out) = self.handoff.out.as_mut() else {
            if self.handoff.early.len() < MAX_KEPT_FRAMES {
                self.handoff.early.push(m);
            }
            return;
        };
        match out.phase {
            Phase::Sent(_) | Phase::Lingering(_) => {
                let adopter = out.adopter;
                if let Some(c) = self.backend.cluster() {
                    c.link.send(BrokerCmd::ToNode { node: adopter, payload: relay::encode(&m) });
                }
            }
            Phase::Over { .. } => {}
            _ => out.bounced.push(m),
        }
    }

    /// The adopter holds the sessions `held` (their clientIds): they are its own now. Any
    /// other one (no room there, or not taken) ends here as on a plain shutdown.
    fn done(&mut self, from: u32, held: Vec<String>) {
        let Some(out) = self.handoff.out.as_mut().filter(|o| o.adopter == from) else { return };
        if !matches!(out.phase, Phase::Sent(_)) {
            return;
        }
        out.phase = Phase::Lingering(Instant::now() + LINGER);
        let me = self.me();
        let held: HashSet<String> = held.into_iter().collect();
        let kept = std::mem::take(&mut self.kept);
        let (handed, rest): (Vec<KeptSession>, Vec<KeptSession>) =
            kept.into_iter().partition(|k| held.contains(&self.local.aliases.id(me, k.conn)));
        metrics::add(&self.local.stats.handoff_sessions_total, handed.len() as u64);
        tracing::info!(
            adopter = format!("{from:08x}"),
            handed = handed.len(),
            ended = rest.len(),
            "shutdown: recoverable sessions handed to a live node (their clients, closed 1012, resume through any node)"
        );
        let clients = handed.iter().map(|k| self.local.aliases.id(me, k.conn)).collect();
        if let Some(c) = self.backend.cluster() {
            c.link.send(BrokerCmd::HandedOff { clients });
        }
        self.kept = rest;
        self.kept_sessions_end();
    }

    /// `Stop`: every shard is gone. A hand-off that has not sent the sessions yet cannot go
    /// on (the shards that had not answered never will): what came in ends. Adoptions under
    /// way are given up, and their stopping nodes told (they end their sessions at once).
    pub(super) fn shards_gone(&mut self) {
        let adopting: Vec<u32> = self.handoff.ins.keys().copied().collect();
        for from in adopting {
            self.give_up_adoption(from, "the adopter is stopping");
        }
        let early = |o: &Out| matches!(o.phase, Phase::Starting | Phase::Asked(_) | Phase::Cutting { .. });
        if self.handoff.out.as_ref().is_some_and(early) {
            self.hand_off_failed("the shards stopped before the adopter was ready");
            self.kept_sessions_end();
        }
    }

    /// Timeouts of both sides (called every turn while one is under way).
    pub(super) fn hand_off_tick(&mut self) {
        let now = Instant::now();
        match self.handoff.out.as_ref().map(|o| &o.phase) {
            Some(Phase::Asked(t)) if now >= *t => self.ask_next(),
            Some(Phase::Cutting { until, .. }) if now >= *until => {
                self.hand_off_failed("a shard did not hand its sessions over in time")
            }
            Some(Phase::Sent(t)) if now >= *t => self.hand_off_failed("the adopter did not confirm in time"),
            Some(Phase::Lingering(t)) if now >= *t => {
                if let Some(o) = self.handoff.out.as_mut() {
                    o.phase = Phase::Over { failed: false };
                }
            }
            _ => {}
        }
        let late: Vec<u32> = self.handoff.ins.iter().filter(|(_, i)| now >= i.until).map(|(n, _)| *n).collect();
        for n in late {
            self.give_up_adoption(n, "the stopping node sent no sessions in time");
        }
    }

    // --- The adopting side. ---

    /// A stopping node asks this one to adopt `sessions` in `channels`.
    fn asked(&mut self, from: u32, sessions: u32, channels: Vec<Channel>) {
        let me = self.me();
        let stopping = self.handoff.stopping || self.quiet > 0 || self.handoff.out.is_some() || self.handoff.stop_asked;
        let why = if stopping {
            Some("this node is stopping too".to_string())
        } else if sessions as usize + self.local.aliases.adopted_count() > self.local.cfg.max_recovery_sessions {
            Some(format!("past max_recovery_sessions ({})", self.local.cfg.max_recovery_sessions))
        } else if self.handoff.ins.contains_key(&from) {
            Some("a hand-off from that node is under way".to_string())
        } else {
            None
        };
        if let Some(why) = why {
            metrics::add(&self.local.stats.handoff_refused_total, 1);
            tracing::info!(node = format!("{from:08x}"), sessions, "refused to adopt sessions: {why}");
            return self.tell_node(from, &Msg::Refused { from: me, why });
        }
        let shards = self.local.shards();
        for c in &channels {
            // Registered cluster-wide (the stopping node had clients of it).
            if self.local.index.find(&c.system).is_none() {
                self.local.index.add_system(&c.system, shards);
            }
        }
        // Given up (and the stopping node told) past `shutdown_timeout`: before the stopping
        // node itself gives up (1 s later), so the two never both act.
        let until = Instant::now() + self.local.cfg.shutdown_timeout;
        let inc = In {
            channels: channels.iter().cloned().collect(),
            frames: Vec::new(),
            sessions: Vec::new(),
            cut: Vec::new(),
            sends: Vec::new(),
            relays: Vec::new(),
            waiting: 0,
            held: Vec::new(),
            clients: HashMap::new(),
            until,
        };
        self.handoff.ins.insert(from, inc);
        if let Some(c) = self.backend.cluster() {
            c.link.send(BrokerCmd::Prepare { from, channels });
        }
    }

    /// A frame from Redis: kept for coming sessions in its channel.
    pub(super) fn keep_for_adoption(
        &mut self,
        system: &str,
        group: Option<&str>,
        frame: &Frame,
        at: Option<handoff::At>,
    ) {
        if self.handoff.ins.is_empty() {
            return;
        }
        let ch = Channel { system: system.to_string(), group: group.map(str::to_string) };
        let mut over = Vec::new();
        for (node, i) in self.handoff.ins.iter_mut() {
            if i.channels.contains(&ch) {
                if i.frames.len() >= MAX_KEPT_FRAMES {
                    over.push(*node);
                    continue;
                }
                i.frames.push((ch.clone(), at, frame.clone()));
            }
        }
        for n in over {
            self.give_up_adoption(n, "too many frames kept for the coming sessions");
        }
    }

    fn give_up_adoption(&mut self, from: u32, why: &str) {
        if self.handoff.ins.remove(&from).is_none() {
            return;
        }
        tracing::warn!(node = format!("{from:08x}"), "gave up adopting sessions: {why}");
        metrics::add(&self.local.stats.handoff_failed_total, 1);
        // Sessions already in the shards stay until their window ends (their node still owns
        // them in Redis; nobody routes to them here): the sweep ends them. The stopping node
        // hears of it and ends them on its side.
        if let Some(c) = self.backend.cluster() {
            c.link.send(BrokerCmd::Unprepare { from });
        }
        let me = self.me();
        self.tell_node(from, &Msg::Refused { from: me, why: why.to_string() });
    }

    fn part(&mut self, from: u32, sessions: Vec<crate::state::Session>, last: bool, cut: Vec<Cut>) {
        let Some(i) = self.handoff.ins.get_mut(&from) else { return };
        i.sessions.extend(sessions);
        if !last {
            return;
        }
        i.cut = cut;
        let shards = self.local.shards();
        let mut per_shard: Vec<Vec<Adoption>> = (0..shards).map(|_| Vec::new()).collect();
        for (n, s) in std::mem::take(&mut i.sessions).into_iter().enumerate() {
            match crate::restore::handed(s) {
                Ok((id, kept, client)) => {
                    i.clients.insert(id, client);
                    per_shard[n % shards].push(Adoption { id, kept });
                }
                Err((id, why)) => tracing::warn!(client = id, "a handed session not taken: {why}"),
            }
        }
        for (shard, sessions) in per_shard.into_iter().enumerate().filter(|(_, s)| !s.is_empty()) {
            i.waiting += 1;
            self.local.out.send(shard, ShardMsg::Adopt { from, sessions });
        }
        if i.waiting == 0 {
            self.adoption_done(from);
        }
    }

    /// A direct send for a session on its way here.
    fn send_in(&mut self, from: u32, client: String, payload: String) {
        // Behind the sessions on the same channel: until they are held, kept for them.
        if let Some(i) = self.handoff.ins.get_mut(&from) {
            return i.sends.push((client, payload));
        }
        self.deliver_send(&client, &payload);
    }

    fn deliver_send(&mut self, client: &str, payload: &str) {
        let me = self.me();
        let Some(r) = crate::ids::parse_client_ref(client) else { return };
        if let crate::aliases::Route::Here(conn) = self.local.aliases.route(me, r) {
            let frame = Frame::from(crate::protocol::ws::frame(crate::protocol::ws::OP_TEXT, payload.as_bytes()));
            let zipped = self.local.out.zipped(&frame);
            self.local.out.send(conn.shard as usize, ShardMsg::DeliverOne { target: conn.in_shard(), frame, zipped });
        }
    }

    /// A relay message for a session this node holds under its old clientId, or one on its
    /// way here (kept until it is held).
    pub(super) fn relay_in(&mut self, mut m: relay::Msg) {
        let target = m.target();
        if self.quiet > 0 && self.quiet == self.local.shards() {
            // Stopping, the shards done: a resume or an edge's word goes with the sessions.
            if matches!(m, relay::Msg::ResumeReq { .. } | relay::Msg::Event { .. }) {
                self.bounced(m);
            }
            return;
        }
        let names_session = matches!(m, relay::Msg::ResumeReq { .. } | relay::Msg::Event { .. });
        if let Some(conn) = self.local.aliases.adopted_conn(target).filter(|_| names_session) {
            m.retarget(conn);
            let shard = conn.shard as usize;
            if shard < self.local.shards() {
                self.local.out.send(shard, ShardMsg::FromNode(m));
            }
            return;
        }
        let coming = self
            .handoff
            .ins
            .values_mut()
            .filter(|_| names_session)
            .find(|i| i.clients.keys().any(|r| r.conn == target));
        if let Some(i) = coming {
            return i.relays.push(m);
        }
        let shard = target.shard as usize;
        if shard < self.local.shards() {
            self.local.out.send(shard, ShardMsg::FromNode(m));
        }
    }

    /// A shard holds its part of the sessions (`Command::Adopted`).
    pub(super) fn adopted(&mut self, from: u32, held: Vec<(ClientRef, ConnId)>, over: Vec<ClientRef>) {
        let Some(i) = self.handoff.ins.get_mut(&from) else { return };
        for r in &over {
            i.clients.remove(r);
        }
        i.held.extend(held);
        i.waiting = i.waiting.saturating_sub(1);
        if i.waiting == 0 {
            self.adoption_done(from);
        }
    }

    /// Every session is in a shard: index them under their old clientIds, deliver what they
    /// missed, move their presence in Redis.
    fn adoption_done(&mut self, from: u32) {
        let me = self.me();
        let Some(mut i) = self.handoff.ins.remove(&from) else { return };
        let mut entries = Vec::new();
        let mut adopted: HashMap<ChannelKey, Vec<ConnId>> = HashMap::new();
        for &(r, conn) in &i.held {
            let Some(mut client) = i.clients.remove(&r) else { continue };
            self.local.aliases.adopt(r, conn);
            client.conn = conn;
            adopted.entry((client.system.to_string(), None)).or_default().push(conn);
            for g in &client.groups {
                adopted.entry((client.system.to_string(), Some(g.to_string()))).or_default().push(conn);
            }
            entries.push(crate::cluster::Adopted {
                client: r.id(),
                system: client.system.clone(),
                groups: client.groups.clone(),
                info: crate::cluster::info(&client.user_id, &client.extend),
                user: client.user.clone(),
            });
            self.restore_client(client);
        }
        // What they missed: every kept frame after the cut, in order.
        let mut delivered = 0;
        for (ch, at, frame) in std::mem::take(&mut i.frames) {
            if handoff::before_cut(&i.cut, &ch, at) {
                continue;
            }
            let Some(conns) = adopted.get(&(ch.system.clone(), ch.group.clone())) else { continue };
            let zipped = self.local.out.zipped(&frame);
            for &conn in conns {
                let msg =
                    ShardMsg::DeliverOne { target: conn.in_shard(), frame: frame.clone(), zipped: zipped.clone() };
                self.local.out.send(conn.shard as usize, msg);
                delivered += 1;
            }
        }
        for (client, payload) in std::mem::take(&mut i.sends) {
            self.deliver_send(&client, &payload);
        }
        for m in std::mem::take(&mut i.relays) {
            self.relay_in(m);
        }
        let own = crate::aliases::span(i.held.iter().map(|(r, _)| *r).filter(|r| r.node == from));
        let moved = own.map(|(lo, hi)| crate::aliases::Move { node: from, lo, hi, to: me });
        if let Some(m) = moved {
            self.local.aliases.moved(m);
        }
        tracing::info!(
            node = format!("{from:08x}"),
            sessions = i.held.len(),
            frames = delivered,
            "adopted the sessions of a stopping node (detached, under their old clientIds)"
        );
        let held = i.held.iter().map(|(r, _)| r.id()).collect();
        if let Some(c) = self.backend.cluster() {
            c.link.send(BrokerCmd::Adopt { from, clients: entries, moved, held });
        }
    }
}

type ChannelKey = (String, Option<String>);
