//! Cluster mode on Redis: many nodes act as one server.
//!
//! Two threads per node talk to Redis; neither the shards nor the hub ever wait on it.
//!
//! - The **broker** (`broker/`) receives [`BrokerCmd`]s from the hub (one ordered,
//!   unbounded channel: the hub refuses API calls with 503 beyond `hub_queue` waiting
//!   commands, but a departure is always recorded). It runs each batch as one Redis pipeline
//!   on one connection, so effects land in the order the hub decided them, then answers API
//!   callers: an answer is sent only once its effect is in Redis (read-your-writes on any
//!   node). It keeps a mirror of this node's presence and subscriptions, so after Redis comes
//!   back it re-subscribes and re-writes them; it beats a heartbeat and reaps dead nodes.
//! - The **subscriber** (`subscriber.rs`) reads the pub/sub connection: frames for groups and
//!   systems that have members here, calls forwarded by other nodes, and their answers. It
//!   hands them to the hub as [`Command`]s (or answers waiting HTTP callers directly).
//!
//! Keys and channels are in [`keys`] (all under `--redis-prefix`), the payloads in [`wire`],
//! the Lua steps in `scripts.rs`. Where Redis is: [`endpoint`] reads `--redis` and, with
//! Sentinel, asks for the master at every (re)connect; on a Redis Cluster [`sharded`] routes
//! each command to its slot's master and the pub/sub is sharded (`SSUBSCRIBE`/`SPUBLISH`, one
//! connection per master); `link.rs` opens a pub/sub connection (plain or TLS, one half read by
//! the subscriber, the other written by the broker).
//! API reads answered from Redis are [`read::Read`]s, each written beside its endpoint in
//! `hub/endpoints/`; the broker runs them in its pipeline.
//! What crosses nodes is the exact frame the origin built: a message is serialized once.

mod broker;
pub use broker::info;
pub mod endpoint;
pub mod keys;
mod link;
pub mod read;
mod scripts;
pub mod sharded;
pub mod stream;
mod subscriber;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::ids::ConnId;
use crate::metrics::HubStats;
use crate::msg::{Command, Frame, Op, Reply, ReplyTo};

/// How long a forwarded call may wait for the other node's answer (then 503).
pub const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// Hub → broker.
#[derive(Debug)]
pub enum BrokerCmd {
    /// The admin page: every node's figures from Redis, sent on `reply` (nothing is sent if
    /// Redis is unreachable: the asker stops waiting).
    NodeFigures { reply: crossbeam_channel::Sender<crate::msg::NodesView> },
    /// `register`: SADD; answered to `to`, and the hub learns the system.
    Register { system: Box<str>, to: ConnId },
    /// Is `system` registered? Answered with [`Command::SystemKnown`].
    Lookup { system: Box<str> },
    /// A frame for a group's (or a whole system's) members on every node, this one too;
    /// `answer`: the caller and its 200 body, sent once Redis has the frame.
    /// `history`: keep it in the group's history stream too (`history_size` > 0).
    Publish { system: Arc<str>, group: Option<Arc<str>>, frame: Frame, answer: Option<(ConnId, Bytes)>, history: bool },
    /// A client of this node joined a group (`new`; else only its info changed); `notice` is
    /// the 1001 frame, sent to the whole group if the client is new there.
    Join { system: Arc<str>, group: Arc<str>, client: String, info: Box<str>, notice: Option<Frame>, new: bool },
    /// A client of this node left a group; `notice` is the 1002 frame; `info` its
    /// `[userId, extend]` (webhooks).
    Leave { system: Arc<str>, group: Arc<str>, client: String, notice: Option<Frame>, info: Box<str> },
    /// This node has its first (`on`) or no more clients of `system`: (un)subscribe its
    /// channel. `welcome`: a client whose connect frame waits for the subscription; `left`: the
    /// client that left (and why), for webhooks.
    /// (`welcome` carries the client's user, for `client_connected`.)
    SystemSub {
        system: Arc<str>,
        on: bool,
        welcome: Option<(ConnId, Option<Box<str>>)>,
        left: Option<(ConnId, crate::webhooks::Gone)>,
    },
    /// A call about clients of another node; `reply`: the caller waits for its answer.
    Forward { node: u32, system: Box<str>, op: Op, reply: Option<ConnId> },
    /// An API read answered from Redis (`cluster::read`), to the caller `to`.
    Read { read: Box<dyn read::Read>, to: ConnId },
    /// A connection of this node got its user (its first connection cluster-wide: `user_online`).
    UserJoin { system: Arc<str>, user: Arc<str>, client: String },
    /// A connection of this node with a user left (the user's last cluster-wide: `user_offline`).
    UserLeave { system: Arc<str>, user: Arc<str>, client: String },
    /// An answer the hub decided; sent after every earlier command took effect.
    Answer { to: ReplyTo, status: u16, body: Bytes },
    /// A relay message (a session resumed through another node) for `node`'s channel.
    ToNode { node: u32, payload: Vec<u8> },
    /// A stopping node `from` asked this one to adopt sessions in `channels`: subscribe to
    /// them (kept until [`BrokerCmd::Adopt`] or [`BrokerCmd::Unprepare`]), then answer `Ready`.
    Prepare { from: u32, channels: Vec<crate::handoff::Channel> },
    /// These sessions of this node are another node's now: the mirror forgets them (so
    /// leaving Redis at exit does not end them).
    HandedOff { clients: Vec<String> },
    /// The hand-off from `from` was given up: its channels are no longer kept for it.
    Unprepare { from: u32 },
    /// The sessions of `from` are held here: their presence entries move from `from`'s node
    /// hash to this node's, the `moved` hash and the cluster learn the move, `from` hears
    /// `Done`.
    Adopt { from: u32, clients: Vec<Adopted>, moved: Option<crate::aliases::Move>, held: Vec<String> },
}

/// A session adopted here, as its presence entries name it.
#[derive(Debug)]
pub struct Adopted {
    pub client: String,
    pub system: Box<str>,
    pub groups: Vec<Box<str>>,
    pub info: Box<str>,
    pub user: Option<Box<str>>,
}

impl BrokerCmd {
    /// Frame bytes this command holds while it waits for the broker (the sends an API call
    /// can make; bounded by `broker_queue_bytes`).
    pub fn queued_bytes(&self) -> u64 {
        match self {
            BrokerCmd::Publish { frame, .. } => frame.len() as u64,
            BrokerCmd::Forward { op: Op::SendToClients { frame, .. }, .. } => frame.len() as u64,
            BrokerCmd::Read { read, .. } => read.queued_bytes(),
            BrokerCmd::ToNode { payload, .. } => payload.len() as u64,
            _ => 0,
        }
    }
}

/// The hub's end of the broker channel.
pub struct BrokerLink {
    tx: Sender<BrokerCmd>,
    /// What the subscriber lost, for the hub to apply.
    pub losses: Arc<Losses>,
    soft_cap: usize,
    max_bytes: u64,
    /// `cluster_up` (set by the broker) is the one record of whether Redis is reachable;
    /// `cluster_broker_queue_bytes` of the frame bytes waiting for the broker.
    stats: Arc<HubStats>,
}

impl BrokerLink {
    /// Whether an API call may use the cluster now: Redis reachable, fewer than the soft
    /// bound of commands waiting, and fewer frame bytes than `broker_queue_bytes`.
    pub fn usable(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.stats.cluster_up.load(Relaxed) == 1
            && self.tx.len() < self.soft_cap
            && self.stats.cluster_broker_queue_bytes.load(Relaxed) < self.max_bytes
    }

    pub fn send(&self, cmd: BrokerCmd) {
        crate::metrics::add(&self.stats.cluster_broker_queue_bytes, cmd.queued_bytes());
        let _ = self.tx.send(cmd);
    }
}

/// The shards' answer channels, for the broker and the subscriber to answer HTTP callers.
pub struct Replies(pub Vec<(Sender<Reply>, Arc<mio::Waker>)>);

impl Replies {
    /// Queues an answer without waking its shard; returns the shard to wake.
    pub fn queue(&self, to: ConnId, status: u16, body: Bytes, known_system: Option<crate::msg::KnownSystem>) -> usize {
        let shard = to.shard as usize;
        if let Some((tx, waker)) = self.0.get(shard) {
            crate::msg::send_to_shard(tx, waker, Reply { to: to.in_shard(), status, body, known_system });
        }
        shard
    }

    /// A wake set over these shards.
    pub fn wakes(&self) -> crate::msg::Wakes {
        crate::msg::Wakes::new(self.0.iter().map(|(_, w)| w.clone()).collect())
    }

    pub fn wake(&self, shard: usize) {
        if let Some((_, waker)) = self.0.get(shard) {
            let _ = waker.wake();
        }
    }

    /// Queues an answer and wakes its shard.
    pub fn send(&self, to: ConnId, status: u16, body: Bytes, known_system: Option<crate::msg::KnownSystem>) {
        let shard = self.queue(to, status, body, known_system);
        self.wake(shard);
    }
}

/// Forwarded calls waiting for the other node's answer: correlation id → caller.
#[derive(Default)]
pub struct Pending(Mutex<HashMap<u64, (ConnId, Instant)>>);

impl Pending {
    fn insert(&self, corr: u64, to: ConnId) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(corr, (to, Instant::now() + FORWARD_TIMEOUT));
        }
    }
    fn take(&self, corr: u64) -> Option<ConnId> {
        self.0.lock().ok()?.remove(&corr).map(|(to, _)| to)
    }
    fn expired(&self, now: Instant) -> Vec<ConnId> {
        let Ok(mut m) = self.0.lock() else { return Vec::new() };
        let gone: Vec<u64> = m.iter().filter(|(_, (_, t))| *t <= now).map(|(k, _)| *k).collect();
        gone.into_iter().filter_map(|k| m.remove(&k)).map(|(to, _)| to).collect()
    }
}

/// What cluster mode reads: the server's configuration (never copied) and the webhook queue
/// the broker records presence events into (in cluster mode the broker, not the hub, does).
#[derive(Clone)]
pub struct ClusterConfig {
    pub cfg: Arc<crate::config::Config>,
    pub hooks: Option<crate::webhooks::Webhooks>,
    /// This node's figures for the admin page (a JSON object), written to Redis with each
    /// heartbeat so any node's page can show every node's without asking them.
    pub figures: NodeFigures,
    /// Where moved clientIds are (`aliases`): learnt from Redis and announcements, written
    /// for the sessions this node adopted.
    pub aliases: Arc<crate::aliases::Aliases>,
}

/// Renders this node's figures (JSON object text), on the broker's thread.
pub type NodeFigures = Arc<dyn Fn() -> String + Send + Sync>;

impl std::ops::Deref for ClusterConfig {
    type Target = crate::config::Config;
    fn deref(&self) -> &crate::config::Config {
        &self.cfg
    }
}

/// Checks `--redis` (and `--redis-ca`) the way cluster mode will read them: a clear error for a
/// URL it cannot use, before anything starts.
pub fn check_url(cfg: &crate::config::Config) -> Result<(), String> {
    match &cfg.redis {
        Some(url) => endpoint::Endpoint::new(url, cfg.redis_ca.as_deref()).and_then(|_| keys::check_prefix(cfg)),
        None => Ok(()),
    }
}

/// Starts the broker and subscriber threads; returns the hub's link and the receiving end
/// the broker reads (the hub's `Command` sender is `hub`).
pub fn start(
    cfg: ClusterConfig,
    hub: ToHub,
    replies: Replies,
    stats: Arc<HubStats>,
) -> Result<(BrokerLink, Vec<std::thread::JoinHandle<()>>), String> {
    // The redis crate builds its rustls settings with the process's default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = cfg.redis.as_deref().ok_or("cluster mode needs --redis")?;
    let endpoint = endpoint::Endpoint::new(url, cfg.redis_ca.as_deref())?;
    let (tx, rx): (Sender<BrokerCmd>, Receiver<BrokerCmd>) = unbounded();
    let replies = Arc::new(replies);
    let pending = Arc::new(Pending::default());
    keys::check_prefix(&cfg)?;
    let (streams_tx, streams_rx) = unbounded();
    let (events_tx, events_rx) = unbounded();
    let losses = hub.losses.clone();
    let gaps: Arc<Mutex<stream::Gaps>> = Default::default();
    let sub = subscriber::Subscriber {
        hub: hub.clone(),
        replies: replies.clone(),
        pending: pending.clone(),
        stats: stats.clone(),
        events: events_tx,
        keys: keys::Keys::for_config(&cfg),
        gaps: gaps.clone(),
        budget: Mutex::new(subscriber::StallBudget::new(cfg.redis_max_stall, std::time::Instant::now())),
        queued: Default::default(),
        node: cfg.node_id.0,
        aliases: cfg.aliases.clone(),
        last_log: Mutex::new(None),
    };
    let s = std::thread::Builder::new()
        .name("roomcast-subscriber".into())
        .spawn(move || sub.run(streams_rx))
        .map_err(|e| e.to_string())?;
    let b = broker::Broker::new(
        cfg.clone(),
        endpoint,
        hub.control,
        replies,
        pending,
        stats.clone(),
        streams_tx,
        events_rx,
        gaps,
    )?;
    let b = std::thread::Builder::new()
        .name("roomcast-broker".into())
        .spawn(move || b.run(rx))
        .map_err(|e| e.to_string())?;
    Ok((
        BrokerLink { tx, losses, soft_cap: cfg.hub_queue, max_bytes: cfg.broker_queue_bytes as u64, stats },
        vec![b, s],
    ))
}

/// How the cluster threads reach the hub, never waiting on it (a full hub must not stall
/// Redis's pub/sub reader — Redis would drop it past `client-output-buffer-limit pubsub` and
/// every frame in between would be lost unseen — nor the broker's heartbeats).
#[derive(Clone)]
pub struct ToHub {
    /// Answers to what the hub asked (subscribed, lookups, live nodes) and the nodes announcing
    /// themselves: unbounded, and bounded in practice by the hub's own requests and the nodes.
    pub control: Sender<Command>,
    /// What Redis brings (frames, forwarded calls, relay messages): bounded by `hub_queue`.
    /// What finds it full is dropped, counted and recorded in `losses`.
    pub redis: Sender<Command>,
    pub losses: Arc<Losses>,
}

/// Messages from Redis this node lost (the hub was too far behind to take them, or a gap in a
/// channel's positions showed they never came): the subscriber records, the hub applies
/// (`Hub::apply_losses`): the sessions that may have missed one are no longer recoverable from
/// before it, a relayed session's client reconnects.
///
/// A loss is applied in its place in the stream: it is recorded with the number of messages
/// the subscriber had put in the hub's `redis` queue before it, and the hub applies it only
/// once it has taken exactly those (frames queued before the loss must not count as after it).
#[derive(Default)]
pub struct Losses {
    pending: std::sync::atomic::AtomicBool,
    list: Mutex<LostList>,
}

#[derive(Default)]
struct LostList {
    /// (messages queued before it, what), in that order.
    entries: std::collections::VecDeque<(u64, Lost)>,
    /// The entries at the last count, so a burst of drops lists each loss once.
    tail: std::collections::HashSet<Lost>,
    /// Relay targets with a loss not yet applied (later relay messages for them are dropped).
    relays: std::collections::HashSet<ConnId>,
}

/// One loss (or, [`Lost::Joined`], what must not be lost with a dropped message).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Lost {
    /// A client of this node joined a group at this point of the stream, and the marker that
    /// says so did not fit in the queue: it still becomes a member exactly there (never folded
    /// into [`Lost::All`]; as many as this node's own joins).
    Joined { system: Box<str>, group: Box<str>, client: crate::ids::ClientRef },
    /// A frame of `system`'s group (or of the whole system, `None`).
    Channel(Box<str>, Option<Box<str>>),
    /// A frame for these clients of this node (a forwarded `send_to_clients`).
    Clients(Vec<ConnId>),
    /// A relay message for this connection of this node.
    Relay(ConnId),
    /// Too much to list: every session of the node, and every relay.
    All,
}

/// Losses listed before they count as every session's.
const MAX_LISTED_LOSSES: usize = 10_000;

impl Losses {
    /// Records `what`, lost after the `queued`-th message put in the hub's `redis` queue.
    pub fn record(&self, queued: u64, what: Lost) {
        let mut l = self.list.lock().unwrap_or_else(|p| p.into_inner());
        if let Lost::Relay(c) = &what {
            l.relays.insert(*c);
        }
        if l.entries.back().is_none_or(|(at, _)| *at != queued) {
            l.tail.clear();
        }
        if l.tail.insert(what.clone()) {
            l.entries.push_back((queued, what));
        }
        if l.entries.len() > MAX_LISTED_LOSSES {
            // Too many to list: every session of the node, at the first listed place (sooner is
            // safe); joins keep their places.
            let first = l.entries.front().map_or(queued, |(at, _)| *at);
            l.entries.retain(|(_, w)| matches!(w, Lost::Joined { .. }));
            l.entries.push_front((first, Lost::All));
            l.tail.clear();
        }
        self.pending.store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether a relay message for `conn` was lost and not yet applied: later ones are dropped
    /// too (an acknowledgement must not pass the frame it would cover).
    pub fn relay_lost(&self, conn: ConnId) -> bool {
        self.pending.load(std::sync::atomic::Ordering::Acquire)
            && self.list.lock().map(|l| l.relays.contains(&conn)).unwrap_or(true)
    }

    /// The losses recorded at or before `taken` messages (one atomic load when there are none).
    pub fn due(&self, taken: u64) -> Vec<Lost> {
        if !self.pending.load(std::sync::atomic::Ordering::Acquire) {
            return Vec::new();
        }
        let mut l = self.list.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        while l.entries.front().is_some_and(|(at, _)| *at <= taken) {
            let (_, what) = l.entries.pop_front().expect("checked");
            match &what {
                Lost::Relay(c) => {
                    l.relays.remove(c);
                }
                Lost::All => l.relays.clear(),
                _ => {}
            }
            due.push(what);
        }
        if l.entries.is_empty() {
            self.pending.store(false, std::sync::atomic::Ordering::Release);
        }
        due
    }
}

/// Subscriber → broker.
#[derive(Debug)]
enum SubEvent {
    /// A subscription was confirmed on the pub/sub connection of this generation.
    Subscribed(u64),
    /// A channel was unsubscribed on it: at the broker's asking, or (sharded pub/sub) by a
    /// master that gave the channel's slot away (the broker subscribes where it is now).
    Unsubscribed(u64, String),
    /// A sharded (un)subscribe was refused there: `MOVED` (its detail: the slot, and the master
    /// serving it now), or another error.
    Refused(u64, Result<String, String>),
    /// The pub/sub connection of this generation failed.
    Down(u64),
}
