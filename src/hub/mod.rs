//! The hub: the one thread that owns the index (systems, clients, groups) and turns each
//! send into at most one [`ShardMsg`] per shard.
//!
//! It runs commands in batches (up to [`BATCH`]) and wakes each shard it wrote to once per
//! batch. All removals of a client go through `Hub::remove_client`, keyed on the exact
//! (shard, slot, generation), so a 1002 notice is sent exactly once however many paths
//! (close, error, idle, `close_client`) report the same connection.
//!
//! Files: `mod.rs` the loop and the commands; `endpoints/` the API, one file per endpoint (its
//! row, body parsing, operation in both modes and OpenAPI part); `ops.rs` the operations
//! several endpoints share, written once for both modes; `backend.rs` the seam for what they
//! share and the modes do differently (publish, join, leave, forward, answer after a change);
//! `cluster.rs` the cluster side of that seam (the broker link, system lookups, live nodes)
//! and what comes back from Redis; `index.rs` the data; `members.rs` member sets with their
//! per-shard snapshots; `outbox.rs` sends to shards; `keep.rs` what is kept across a restart
//! (systems registered without a call, a single node's `state_dir` and its sessions).

mod backend;
mod cluster;
pub mod endpoints;
mod handoff;
mod index;
mod keep;
mod members;
mod ops;
mod outbox;
mod single;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

pub use members::Members;
use outbox::Outbox;

use self::backend::Backend;
use self::index::{Index, SysId};
use crate::auth::Grant;
use crate::cluster::BrokerLink;
use crate::config::Config;
use crate::ids::ConnId;
use crate::metrics::{self, HubStats};
use crate::msg::{Command, KnownSystem, Reply, ReplyTo, ShardMsg, SystemRef};
use crate::protocol::api::{ApiError, ApiResult};
use crate::webhooks::{self, Webhooks};

/// Commands taken from each of the hub's queues between two rounds of shard wake-ups.
pub const BATCH: usize = 1024;

/// How often the hub does its housekeeping (even when idle).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// How the hub reaches one shard: the ordered channel (deliveries, welcomes, closes) and a
/// separate one for API answers, which the shard also checks in the middle of long flushes
/// so a caller's answer never waits behind a broadcast's writes.
pub struct ShardLink {
    pub tx: Sender<ShardMsg>,
    pub replies: Sender<Reply>,
    pub waker: Arc<mio::Waker>,
}

/// What an operation came to: answered now, or later by the broker (cluster mode).
enum Answer {
    Now(ApiResult),
    Later,
}

impl From<ApiResult> for Answer {
    fn from(r: ApiResult) -> Self {
        Answer::Now(r)
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Answer::Now(Err(e))
    }
}

/// Which queue of the [`Inbox`] a command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Shards,
    Control,
    Redis,
}

/// Where the hub's commands come from.
pub struct Inbox {
    /// The shards' commands (bounded: `hub_queue`; full answers 503).
    pub shards: Receiver<Command>,
    /// Cluster mode: the broker's answers to what the hub asked (unbounded, see
    /// `cluster::ToHub`); a node alone never gets any.
    pub control: Receiver<Command>,
    /// Cluster mode: frames and calls from Redis (bounded: `hub_queue`).
    pub redis: Receiver<Command>,
    /// Only `shards` can ever have anything (a single node).
    pub single: bool,
}

impl Inbox {
    /// A single node's: the shards' commands only.
    pub fn single(shards: Receiver<Command>) -> Self {
        Inbox { shards, control: crossbeam_channel::never(), redis: crossbeam_channel::never(), single: true }
    }
}

/// This node's side of the hub: the index and the way to the shards. The [`Backend`] gets it
/// handed in for what it does locally.
struct Local {
    /// The server's configuration (read, never copied).
    cfg: Arc<Config>,
    out: Outbox,
    index: Index,
    stats: Arc<HubStats>,
    /// Presence webhooks, if configured (single node: the hub records the events).
    hooks: Option<Webhooks>,
    /// Where moved clientIds are (cluster mode's hand-off; shared with the shards).
    aliases: Arc<crate::aliases::Aliases>,
}

impl Local {
    fn shards(&self) -> usize {
        self.out.links.len()
    }

    /// The clientId of `conn` of this node (the old one of a session adopted here).
    fn id(&self, conn: ConnId) -> String {
        self.aliases.id(self.cfg.node_id.0, conn)
    }

    /// Where the session a clientId names is, seen from here.
    fn route(&self, r: crate::ids::ClientRef) -> crate::aliases::Route {
        self.aliases.route(self.cfg.node_id.0, r)
    }

    /// Records a presence event (single node; cluster mode records them in the broker).
    fn emit(&self, kind: webhooks::Kind, system: &Arc<str>, group: Option<&Arc<str>>, client: Option<ConnId>) {
        if let Some(h) = &self.hooks {
            let client = client.map(|c| self.id(c).into());
            h.emit(webhooks::Event::new(kind, system.clone(), group.cloned(), client));
        }
    }
}

/// The group index.
pub struct Hub {
    local: Local,
    backend: Backend,
    /// Commands taken from the `redis` queue so far (losses are applied by this count).
    redis_taken: u64,
    /// A single node with `state_dir`, shutting down: the sessions the shards kept for the
    /// next start (written with the state at `Stop`).
    kept: Vec<crate::msg::KeptSession>,
    /// How many shards said they are quiet ([`Command::Quiet`]).
    quiet: usize,
    /// Cluster mode: sessions handed to another node at shutdown, or adopted from one.
    handoff: handoff::HandOffs,
}

impl Hub {
    pub fn new(
        cfg: Arc<Config>,
        links: Vec<ShardLink>,
        stats: Arc<HubStats>,
        broker: Option<BrokerLink>,
        hooks: Option<Webhooks>,
    ) -> Self {
        let out = Outbox::new(links, cfg.compression.then_some(cfg.compression_min_size));
        // Cluster mode: the broker records the events (after Redis took each change).
        let hooks = hooks.filter(|_| broker.is_none());
        let mut hub = Hub {
            local: Local { cfg, out, index: Index::default(), stats, hooks, aliases: Default::default() },
            backend: Backend::new(broker),
            redis_taken: 0,
            kept: Vec::new(),
            quiet: 0,
            handoff: Default::default(),
        };
        hub.register_at_start();
        hub
    }

    /// Shares the node's table of moved clientIds (the shards hold it too).
    pub fn share_aliases(&mut self, aliases: Arc<crate::aliases::Aliases>) {
        self.local.aliases = aliases;
    }

    /// `Stop` came: exit now, or once this node's hand-off is over.
    fn stop_now(&mut self) -> bool {
        self.handoff.stop_asked = true;
        self.shards_gone();
        !self.handoff.busy()
    }

    /// Runs until [`Command::Stop`] (or until every shard's command sender is gone).
    pub fn run(mut self, mut inbox: Inbox) {
        let mut next_sweep = std::time::Instant::now() + SWEEP_EVERY;
        loop {
            let first = match inbox.single {
                // One node: the shards' queue is all there is (no `select` on every wake).
                true => match inbox.shards.recv_timeout(SWEEP_EVERY) {
                    Ok(cmd) => Some((cmd, Source::Shards)),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
                },
                false => crossbeam_channel::select! {
                    recv(inbox.shards) -> m => match m {
                        Ok(cmd) => Some((cmd, Source::Shards)),
                        Err(_) => break,
                    },
                    // The cluster threads are gone (shutdown): stop listening to them.
                    recv(inbox.control) -> m => {
                        m.map_err(|_| inbox.control = crossbeam_channel::never()).ok().map(|c| (c, Source::Control))
                    }
                    recv(inbox.redis) -> m => {
                        m.map_err(|_| inbox.redis = crossbeam_channel::never()).ok().map(|c| (c, Source::Redis))
                    }
                    default(self.handoff.tick(SWEEP_EVERY)) => None,
                },
            };
            self.sweep(&mut next_sweep);
            self.hand_off_tick();
            let n = match first {
                None => 0,
                Some((Command::Stop, _)) if self.stop_now() => break,
                Some((Command::Stop, _)) => 0,
                Some((cmd, from)) => {
                    self.take(cmd, from);
                    match self.batch(&inbox) {
                        Some(n) => n + 1,
                        None if self.stop_now() => break,
                        None => 0,
                    }
                }
            };
            self.apply_losses();
            let l = &mut self.local;
            metrics::add(&l.stats.commands_total, n as u64);
            l.out.wake();
            l.stats.clients.store(l.index.clients.len() as u64, Relaxed);
            l.stats.systems.store(l.index.systems.len() as u64, Relaxed);
            if self.handoff.stop_asked && !self.handoff.busy() {
                break;
            }
        }
        self.local.out.wake();
        self.save_state();
    }

    /// Handles what else is waiting, up to [`BATCH`] commands from each queue, so none starves
    /// another: the cluster's answers (few, and what other work waits on), frames from Redis,
    /// the shards' commands. Returns how many were handled, or `None` at [`Command::Stop`].
    fn batch(&mut self, inbox: &Inbox) -> Option<usize> {
        let mut n = 0;
        for (rx, from) in
            [(&inbox.control, Source::Control), (&inbox.redis, Source::Redis), (&inbox.shards, Source::Shards)]
        {
            for _ in 0..BATCH {
                match rx.try_recv() {
                    Ok(Command::Stop) => return None,
                    Ok(cmd) => self.take(cmd, from),
                    Err(_) => break,
                }
                n += 1;
            }
        }
        Some(n)
    }

    /// Handles one command taken from `from`. What Redis brought is counted: a loss (or a
    /// join) the subscriber recorded after the k-th of them is applied after the k-th and
    /// before the next is handled, in its place in the stream (`cluster::Losses`; it was
    /// recorded before the next was queued).
    fn take(&mut self, cmd: Command, from: Source) {
        if from == Source::Redis {
            self.apply_losses();
            self.handle(cmd);
            self.redis_taken += 1;
        } else {
            self.handle(cmd);
        }
    }

    /// Handles one command (public for benches).
    pub fn handle(&mut self, cmd: Command) {
        let Some(cmd) = self.gate(cmd) else { return };
        match cmd {
            Command::Connect { conn, system, welcomed, grant } => self.connect(conn, system, welcomed, grant),
            Command::ConnectMany(conns) => {
                for (conn, i) in conns {
                    self.connect(conn, SystemRef::Index(i), true, None);
                }
            }
            Command::Disconnected { conn, why } => self.remove_client(conn, true, why),
            Command::Api { from, system, op, answered } => {
                let to = ReplyTo::Local(from);
                let teaches = op.teaches_system();
                if let Answer::Now(r) = self.api(&system, op, to) {
                    if !answered {
                        // The shard may answer later sends to a registered system itself.
                        let id = self.local.index.find(&system).filter(|_| teaches && self.backend.shards_answer());
                        let known = id.map(|id| (system, id.raw()));
                        self.answer(to, r, known);
                    }
                }
            }
            Command::Publish { conn, group, code, msg, data } => self.publish(conn, &group, code, &msg, &data),
            Command::Remote { origin, corr, system, op } => self.remote(origin, corr, system, op),
            Command::Published { system, group, frame, joined, at } => {
                self.published(&system, group.as_deref(), frame.as_ref(), joined, at)
            }
            Command::HandOff { msg, cut } => self.hand_off_msg(*msg, cut),
            Command::Adopted { from, held, over } => self.adopted(from, held, over),
            Command::Bounced(m) => self.bounced(m),
            Command::SystemKnown { system, registered } => self.system_known(system, registered),
            Command::UserClients { system, clients, call, to } => {
                let to = ReplyTo::Local(to);
                let answer = match self.local.index.find(&system) {
                    Some(sys) => self.user_call(sys, clients, call, to),
                    None => ApiError::unknown_system(&system).into(),
                };
                if let Answer::Now(r) = answer {
                    self.answer(to, r, None);
                }
            }
            Command::Subscribed { conn } => self.subscribed(conn),
            Command::Nodes { alive, dead } => self.nodes_changed(alive, dead),
            Command::ToNode { node, from_shard, payload } => self.relay_out(node, from_shard, payload),
            Command::FromNode(m) => self.relay_in(m),
            Command::Resume(r) => {
                let shard = r.session.shard as usize;
                if shard < self.local.shards() {
                    self.local.out.send(shard, ShardMsg::Resume(r));
                }
            }
            Command::AdminView { reply, nodes } => {
                let _ = reply.try_send(self.local.index.admin_view());
                // The nodes' figures are the broker's to read from Redis.
                if let (Some(c), Some(nodes)) = (self.backend.cluster(), nodes) {
                    c.link.send(crate::cluster::BrokerCmd::NodeFigures { reply: nodes });
                }
            }
            Command::Sessions(kept) => self.sessions_in(kept),
            Command::Stopping => self.handoff.stopping = true,
            Command::Quiet => self.shard_quiet(),
            Command::Stop => {}
        }
    }

    /// Housekeeping, at most every [`SWEEP_EVERY`]: group histories past `history_ttl` go.
    fn sweep(&mut self, next: &mut std::time::Instant) {
        let now = std::time::Instant::now();
        if now < *next {
            return;
        }
        *next = now + SWEEP_EVERY;
        let l = &mut self.local;
        if l.cfg.history_size == 0 {
            return;
        }
        let Some(cutoff) = now.checked_sub(l.cfg.history_ttl) else { return };
        let mut kept = 0;
        for sys in &mut l.index.systems {
            sys.histories.retain(|_, h| {
                while h.front().is_some_and(|(t, _)| *t < cutoff) {
                    h.pop_front();
                }
                kept += h.len();
                !h.is_empty()
            });
        }
        l.stats.history_messages.store(kept as u64, Relaxed);
    }

    /// A WebSocket client completed its handshake for `system`; `grant`: its connect token's
    /// user and groups (joined as binds, right after it became a member of its system and
    /// before anything else reaches the hub).
    fn connect(&mut self, conn: ConnId, system: SystemRef, welcomed: bool, grant: Option<Box<Grant>>) {
        let l = &mut self.local;
        let sys = match &system {
            SystemRef::Index(i) => l.index.at(*i),
            SystemRef::Name(n) => l.index.find(n),
        };
        let Some(sys) = sys else {
            let msg = match system {
                SystemRef::Name(n) => format!("systemId '{n}' is not registered"),
                SystemRef::Index(_) => "systemId is not registered".to_string(),
            };
            let welcome = ShardMsg::Welcome { to: conn.in_shard(), result: Err(msg), system: None };
            return l.out.send(conn.shard as usize, welcome);
        };
        let Grant { sub, groups } = grant.map(|g| *g).unwrap_or_default();
        let user_id = sub.clone().unwrap_or_default();
        let client = index::Client { system: sys, user_id, extend: "".into(), groups: Vec::new() };
        l.index.clients.insert(conn, client);
        self.backend.connected(&mut self.local, sys, conn, welcomed, sub.clone());
        if let Some(sub) = &sub {
            self.give_user(sys, conn, sub);
        }
        match self.backend.cluster() {
            _ if groups.is_empty() => {}
            None => self.join_granted(conn, groups),
            // Once the node receives the system's sends (`subscribed`).
            Some(c) => c.granted.insert(conn, groups).map_or((), drop),
        }
    }

    /// Joins a connect token's groups for `conn` (single node: at connect; cluster mode: once
    /// it is subscribed to its system), after its connect frame was queued. Their bounds were
    /// checked by the shard.
    fn join_granted(&mut self, conn: ConnId, groups: Vec<Box<str>>) {
        let Some(client) = self.local.index.clients.get(&conn) else { return };
        let (sys, user) = (client.system, client.user_id.clone());
        for g in groups {
            if let Err(e) = self.join_group(sys, conn, &g, user.clone(), "".into(), true) {
                tracing::warn!("a connect token's group could not be joined: {}", e.msg);
            }
        }
    }

    /// Sends an API answer to a caller here or on the node that forwarded the call;
    /// `known_system` tells the caller's shard the system is registered.
    fn answer(&mut self, to: ReplyTo, r: ApiResult, known_system: Option<KnownSystem>) {
        let (status, body) = match r {
            Ok(done) => (200, done.body()),
            Err(e) => (e.status, e.body()),
        };
        match to {
            ReplyTo::Local(c) => self.local.out.reply(c, status, body, known_system),
            ReplyTo::Remote { .. } => self.backend.answer_remote(to, status, body),
        }
    }

    /// Removes a client everywhere and, if `notify`, tells its groups (1002); `why` it went
    /// (webhooks). Idempotent.
    fn remove_client(&mut self, conn: ConnId, notify: bool, why: webhooks::Gone) {
        let Some(client) = self.local.index.clients.remove(&conn) else { return };
        if let Some(c) = self.backend.cluster() {
            c.granted.remove(&conn);
        }
        let sys = client.system;
        // The connection is gone or closing (disconnect, or close_client which closes it):
        // shards will not deliver to it, so snapshots may keep its entry for a while.
        self.local.index.system(sys).members.remove_gone(conn);
        for g in &client.groups {
            self.backend.leave(&mut self.local, sys, g, conn, Some(&client), notify);
        }
        if let Some((user, last)) = self.local.index.drop_user(sys, conn) {
            if last {
                metrics::sub(&self.local.stats.users, 1);
            }
            self.backend.user_went(&mut self.local, sys, conn, &user);
        }
        self.backend.system_left(&mut self.local, sys, conn, why);
    }

    /// `conn` (a client of `sys` without a user yet) is a connection of `user` from now on.
    fn give_user(&mut self, sys: SysId, conn: ConnId, user: &str) {
        if self.local.index.set_user(sys, conn, user) {
            metrics::add(&self.local.stats.users, 1);
        }
        let user = self.local.index.users[&conn].clone();
        self.backend.user_came(&mut self.local, sys, conn, &user);
    }
}
