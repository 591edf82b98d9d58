//! The broker thread: the node's only writer to Redis.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use redis::{RedisResult, Value};

mod adopt;
mod links;
mod presence;
pub(super) mod results;

pub use presence::info;
use results::Post;

use super::endpoint::Endpoint;
use super::keys::{self, Keys};
use super::sharded::{Addr, Con, Sharded};
use super::subscriber::Stream;
use super::{link, scripts, wire, BrokerCmd, ClusterConfig, Pending, Replies, SubEvent};
use crate::ids::ConnId;
use crate::metrics::{self, HubStats};
use crate::msg::{Command, ReplyTo};
use crate::protocol::api;
use crate::webhooks::{Event, Gone, Kind};

/// Commands run as one pipeline.
const BATCH: usize = 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// With Sentinel a new master can appear any moment during a failover, and until every node
/// found it a group frame reaches only the nodes that did: ask again often (a question to a
/// Sentinel is cheap).
const MAX_BACKOFF_SENTINEL: Duration = Duration::from_millis(250);

/// An answer meaning the server is no longer (or not yet) a writable master.
fn demoted(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
    )
}

fn unavailable() -> Bytes {
    api::ApiError::cluster_unavailable().body()
}

struct GroupMirror {
    system: Arc<str>,
    group: Arc<str>,
    clients: HashMap<String, Box<str>>,
}

/// This node's connections of one user, each with whether Redis is known to hold it (its
/// USER_JOIN ran; `false` while it joined with Redis away).
struct UserMirror {
    system: Arc<str>,
    user: Arc<str>,
    clients: HashMap<String, bool>,
}

/// A pub/sub connection the broker subscribes on (its read half is the subscriber's).
struct Link {
    /// The master it is to (a Redis Cluster's; `None` on one Redis).
    addr: Option<Addr>,
    gen: u64,
    w: link::Writer,
}

/// Local effects that follow a batch's pipeline.
enum Later {
    Answer(ConnId, u16, Bytes),
    /// The client may have its connect frame (this node is subscribed to its system).
    Welcome(ConnId, Arc<str>, Option<Box<str>>),
    /// The client left this node (after leaving its groups), for webhooks.
    Left(ConnId, Arc<str>, Gone),
    /// The admin page asks for the nodes' figures (read after the batch).
    NodeFigures(crossbeam_channel::Sender<crate::msg::NodesView>),
}

/// One command's effect, in command order.
enum Step {
    Redis(Post),
    Local(Later),
    /// An API read: its `n` results make the answer to `to`.
    Read {
        read: Box<dyn super::read::Read>,
        to: ConnId,
        n: usize,
    },
}

pub(super) struct Broker {
    cfg: ClusterConfig,
    /// This cluster's key and channel names.
    k: Keys,
    endpoint: Endpoint,
    /// TLS settings for the pub/sub connection (the redis crate has its own for commands).
    tls: Arc<rustls::ClientConfig>,
    con: Option<Con>,
    /// The pub/sub connections (one per master on a Redis Cluster), in the order opened.
    links: Vec<Link>,
    sub_gen: u64,
    /// Each new pub/sub connection, for the subscriber.
    streams: Sender<Stream>,
    events: Receiver<SubEvent>,
    /// The subscriber's positions per channel: a channel this node left is forgotten there.
    gaps: Arc<std::sync::Mutex<super::stream::Gaps>>,
    /// Channels a master let go of (its slot moved): subscribed again where they are now.
    released: Vec<String>,
    /// Groups that got their first member (added to their system's index after the pipeline)
    /// or lost their last (taken out): `reindex`.
    to_index: Vec<(Arc<str>, Arc<str>)>,
    vacated: Vec<(Arc<str>, Arc<str>)>,
    /// Messages to publish once the batch's pipeline ran (`publish_after`).
    after: Vec<(String, Vec<u8>)>,
    /// The hub's `control` queue (unbounded: the broker never waits on the hub, so its
    /// heartbeats never wait behind frames).
    hub: Sender<Command>,
    replies: Arc<Replies>,
    pending: Arc<Pending>,
    stats: Arc<HubStats>,
    /// This node's presence, by group channel: what Redis must hold for this node.
    groups: HashMap<String, GroupMirror>,
    /// This node's connections with a user, by the user's key: what Redis must hold too.
    users: HashMap<String, UserMirror>,
    /// Connections that left while Redis held them and whose USER_LEAVE has not run yet (Redis
    /// away): at the resync their leave's result decides `user_offline`.
    users_left: HashMap<String, UserMirror>,
    /// Systems with clients here, by channel: how many.
    systems: HashMap<String, usize>,
    /// Systems seen registered (written again if Redis lost its data).
    known: HashSet<Box<str>>,
    /// Channels subscribed, each with the link it is subscribed on.
    subscribed: HashMap<String, usize>,
    /// Channels kept for sessions a stopping node is handing over (by that node).
    pinned: HashMap<u32, Vec<String>>,
    scripts: scripts::Scripts,
    next_beat: Instant,
    /// When this connection to Redis began: nodes are reaped only a whole `presence_ttl`
    /// after it (every live node cut off with us has had time to beat again).
    up_since: Instant,
    retry_at: Instant,
    backoff: Duration,
    corr: u64,
    /// Shards with answers queued this loop turn (woken once each, like the hub does).
    wakes: crate::msg::Wakes,
    /// This process's heartbeat value: another value under our node id means another
    /// process uses the same id.
    instance: String,
    /// The position of the next message on each channel this node publishes on.
    stamps: super::stream::Stamps,
    /// Why Redis was last found unreachable (logged again only when that changes).
    last_down: Option<String>,
}

impl Broker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ClusterConfig,
        endpoint: Endpoint,
        hub: Sender<Command>,
        replies: Arc<Replies>,
        pending: Arc<Pending>,
        stats: Arc<HubStats>,
        streams: Sender<Stream>,
        events: Receiver<SubEvent>,
        gaps: Arc<std::sync::Mutex<super::stream::Gaps>>,
    ) -> Result<Self, String> {
        let now = Instant::now();
        let cfg_node = cfg.node_id.0;
        // Written at every connect to Redis, as systems seen registered are.
        let known = cfg.start_systems.iter().cloned().collect();
        Ok(Broker {
            k: Keys::for_config(&cfg),
            tls: link::client_config(cfg.redis_ca.as_deref())?,
            cfg,
            endpoint,
            con: None,
            links: Vec::new(),
            sub_gen: 0,
            streams,
            events,
            gaps,
            released: Vec::new(),
            to_index: Vec::new(),
            vacated: Vec::new(),
            after: Vec::new(),
            hub,
            wakes: replies.wakes(),
            replies,
            pending,
            stats,
            groups: HashMap::new(),
            users: HashMap::new(),
            users_left: HashMap::new(),
            systems: HashMap::new(),
            known,
            subscribed: HashMap::new(),
            pinned: HashMap::new(),
            scripts: scripts::Scripts::new(),
            next_beat: now,
            up_since: now,
            retry_at: now,
            backoff: Duration::from_millis(100),
            corr: 0,
            instance: format!("{:016x}", fastrand::u64(..)),
            stamps: super::stream::Stamps::new(cfg_node),
            last_down: None,
        })
    }

    fn me(&self) -> u32 {
        self.cfg.node_id.0
    }

    /// Runs until the hub is gone, then removes this node's presence.
    pub fn run(mut self, rx: Receiver<BrokerCmd>) {
        let tick = (self.cfg.presence_ttl / 3).min(Duration::from_millis(500));
        loop {
            // Connected: until the next heartbeat; not: until the next attempt (a wait of 0
            // here would spin this thread for as long as Redis is away).
            let due = if self.con.is_some() { self.next_beat } else { self.retry_at };
            let wait = due.saturating_duration_since(Instant::now()).min(tick);
            let mut batch = Vec::new();
            // A subscriber event wakes the broker too (a master letting channels go: they are
            // subscribed again at once).
            let events = self.events.clone();
            crossbeam_channel::select! {
                recv(rx) -> cmd => match cmd {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                },
                recv(events) -> ev => {
                    if let Ok(ev) = ev {
                        if let Err(e) = self.event(ev, None) {
                            self.down(e);
                        }
                    }
                },
                default(wait) => {}
            }
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) => break,
                }
            }
            let bytes: u64 = batch.iter().map(BrokerCmd::queued_bytes).sum();
            metrics::sub(&self.stats.cluster_broker_queue_bytes, bytes);
            while let Ok(ev) = self.events.try_recv() {
                if let Err(e) = self.event(ev, None) {
                    self.down(e);
                }
            }
            if !self.released.is_empty() && self.con.is_some() {
                if let Err(e) = self.reroute() {
                    self.down(e);
                }
            }
            if self.con.is_none() && Instant::now() >= self.retry_at {
                if let Err(e) = self.connect() {
                    self.down(e);
                }
            }
            if !batch.is_empty() {
                self.run_batch(batch);
                self.wake_shards();
            }
            if self.con.is_some() && Instant::now() >= self.next_beat {
                if let Err(e) = self.beat() {
                    self.down(e);
                }
            }
            for to in self.pending.expired(Instant::now()) {
                metrics::add(&self.stats.cluster_remote_timeouts_total, 1);
                self.reply(to, 503, api::err_body("the client's node did not answer in time: retry later"), None);
            }
            self.wake_shards();
        }
        if self.con.is_some() {
            let _ = self.leave_all();
        }
        // Ends the subscriber's reads; it exits once this thread's stream sender is gone.
        self.links.drain(..).for_each(|l| l.w.shutdown());
    }

    fn down(&mut self, why: String) {
        // Logged when it goes down, and while it stays down whenever the reason changes (a
        // node that never reached Redis — a wrong password, a wrong address — says why once).
        if self.con.is_some() || self.stats.cluster_up.load(Relaxed) == 1 || self.last_down.as_deref() != Some(&why) {
            tracing::warn!(node = keys::node_name(self.me()), "Redis unreachable: {why}; retrying with backoff");
        }
        self.last_down = Some(why.clone());
        metrics::add(&self.stats.cluster_redis_errors_total, 1);
        self.con = None;
        self.links.drain(..).for_each(|l| l.w.shutdown());
        self.released.clear();
        self.stats.cluster_up.store(0, Relaxed);
        self.retry_at = Instant::now() + self.backoff;
        // A quarter of presence_ttl at most: a node cut off with the others must be back, once
        // Redis is, before the first one back may reap it (`presence::beat`).
        let max = if self.endpoint.is_sentinel() { MAX_BACKOFF_SENTINEL } else { MAX_BACKOFF };
        let max = max.min(self.cfg.presence_ttl / 4);
        self.backoff = (self.backoff * 2).min(max);
    }

    fn connect(&mut self) -> Result<(), String> {
        let e = |e: redis::RedisError| e.to_string();
        // The command connection, and the servers to open pub/sub connections to.
        let (con, servers) = match &mut self.endpoint {
            Endpoint::Cluster(nodes) => {
                let s = Sharded::connect(nodes, self.scripts.all(), IO_TIMEOUT)?;
                let servers = s.topology().masters().iter().map(|a| Ok((Some(a.clone()), nodes.client(a)?)));
                let servers = servers.collect::<Result<Vec<_>, String>>()?;
                (Con::Cluster(s), servers)
            }
            endpoint => {
                let client = endpoint.master()?;
                let mut con = client.get_connection_with_timeout(IO_TIMEOUT).map_err(e)?;
                con.set_read_timeout(Some(IO_TIMEOUT)).map_err(e)?;
                con.set_write_timeout(Some(IO_TIMEOUT)).map_err(e)?;
                self.scripts.load(&mut con).map_err(e)?;
                (Con::One(con), vec![(None, client)])
            }
        };
        let at: Vec<String> = servers.iter().map(|(_, c)| address(c)).collect();
        self.con = Some(con);
        let mut chans = vec![self.k.node(self.me()), self.k.cluster()];
        chans.extend(self.groups.keys().cloned());
        chans.extend(self.systems.keys().cloned());
        // (Empty after `down`; each one's reader ends only when its socket is shut.)
        self.links.drain(..).for_each(|l| l.w.shutdown());
        for (i, (addr, client)) in servers.into_iter().enumerate() {
            self.open_link(addr, &client, (i == 0).then_some(chans.len()))?;
        }
        self.subscribed.clear();
        self.subscribe(&chans)?;
        self.resync()?;
        self.load_moves()?;
        // The other nodes forward calls only to nodes they know alive: tell them at once, and
        // learn who is alive before taking calls.
        self.announce()?;
        self.up_since = Instant::now();
        self.beat()?;
        self.stats.cluster_up.store(1, Relaxed);
        self.backoff = Duration::from_millis(100);
        tracing::info!(node = keys::node_name(self.me()), redis = at.join(","), "connected to Redis");
        self.last_down = None;
        Ok(())
    }

    /// The groups index after a pipeline: the groups that got their first member added, those
    /// that lost their last taken out (`read::unindex`).
    fn reindex(&mut self) -> Result<(), String> {
        if self.to_index.is_empty() && self.vacated.is_empty() {
            return Ok(());
        }
        let (add, gone) = (std::mem::take(&mut self.to_index), std::mem::take(&mut self.vacated));
        let con = self.con.as_mut().ok_or("down")?;
        let mut more = |p: redis::Pipeline| p.query::<Vec<Value>>(con).map_err(|e| e.to_string());
        super::read::index(&self.k, add.iter().map(|(s, g)| (&**s, &**g)), &mut more)?;
        let gone: Vec<(&str, &str)> = gone.iter().map(|(s, g)| (&**s, &**g)).collect();
        super::read::unindex(&self.k, &gone, &mut more)
    }

    fn run_batch(&mut self, batch: Vec<BrokerCmd>) {
        self.subscribe_for(&batch);
        if self.con.is_none() {
            return self.fail_batch(batch);
        }
        let mut p = redis::pipe();
        p.ignore_errors();
        // Each command's effect, in command order: a pipeline result to handle, or a local
        // step; handled in this order once the pipeline ran (events and answers keep it).
        let mut steps: Vec<Step> = Vec::with_capacity(batch.len());
        for cmd in batch {
            self.plan(&mut p, &mut steps, cmd);
        }
        let (results, failed) = self.query(&p);
        self.send_after(failed);
        let mut results = results.into_iter();
        for step in steps {
            match step {
                Step::Redis(post) => {
                    let r =
                        results.next().unwrap_or_else(|| Err(redis::RedisError::from((redis::ErrorKind::Io, "down"))));
                    self.post(post, r);
                }
                Step::Local(l) => self.run_later(l, failed),
                Step::Read { read, to, n } => {
                    // Its n results are taken whatever they hold: the next step's are after them.
                    let got: Vec<RedisResult<Value>> = results.by_ref().take(n).collect();
                    let complete = got.len() == n;
                    let values = got.into_iter().map(|r| r.map_err(|e| tracing::debug!("redis: {e}")).ok());
                    match values.collect::<Option<Vec<Value>>>().filter(|_| complete) {
                        Some(values) => self.read_done(read, to, values),
                        None => self.unavailable(to),
                    }
                }
            }
        }
        if self.con.is_some() {
            if let Err(e) = self.reindex() {
                self.down(e);
            }
        } else {
            // Written again (every mirrored group) by the resync after the reconnect; groups
            // left empty are taken out by the next read that finds them.
            self.to_index.clear();
            self.vacated.clear();
        }
    }

    /// An API read's results: its answer, or what it hands the hub.
    /// A follow-up query (`Read::answer`'s `more`) that fails takes the connection down, as a
    /// failed pipeline does.
    fn read_done(&mut self, read: Box<dyn super::read::Read>, to: ConnId, values: Vec<Value>) {
        let (con, mut failed) = (&mut self.con, None);
        let mut more = |p: redis::Pipeline| {
            let con = con.as_mut().ok_or_else(|| "Redis connection down".to_string())?;
            p.query::<Vec<Value>>(con).map_err(|e| {
                failed = Some(e.to_string());
                e.to_string()
            })
        };
        let then = read.answer(&self.k, values, to, &mut more);
        if let Some(e) = failed {
            self.down(e);
        }
        match then {
            Some(super::read::Then::Answer(status, body)) => self.reply(to, status, body, None),
            Some(super::read::Then::Hub(cmd)) => {
                let _ = self.hub.send(cmd);
            }
            None => self.unavailable(to),
        }
    }

    /// Subscribes to the channels the batch's commands need and leaves those they ended.
    /// Both before the pipeline, whose PUBLISHes answer forwarded calls: a caller that saw a
    /// bind answered finds the node subscribed, an unbind answered finds it gone. (A channel
    /// left here has no member here any more: nothing it carries is needed.)
    fn subscribe_for(&mut self, batch: &[BrokerCmd]) {
        let mut unsub = Vec::new();
        let mut subs: Vec<String> = Vec::new();
        for cmd in batch {
            for c in self.mirror(cmd, &mut unsub).into_iter().chain(self.pin(cmd, &mut unsub)) {
                if !subs.contains(&c) {
                    subs.push(c);
                }
            }
        }
        if self.con.is_some() {
            if let Err(e) = self.subscribe(&subs).and_then(|()| self.unsubscribe(unsub)) {
                self.down(e);
            }
        }
    }

    /// Adds one command's Redis work to the pipeline and its steps (in order) to `steps`.
    fn plan(&mut self, p: &mut redis::Pipeline, steps: &mut Vec<Step>, cmd: BrokerCmd) {
        match cmd {
            BrokerCmd::Register { system, to } => {
                p.cmd("SADD").arg(self.k.systems()).arg(&*system);
                self.known.insert(system.clone());
                steps.push(Step::Redis(Post::Register { system, to }));
            }
            BrokerCmd::Lookup { system } => {
                p.cmd("SISMEMBER").arg(self.k.systems()).arg(&*system);
                steps.push(Step::Redis(Post::Lookup { system }));
            }
            BrokerCmd::Publish { system, group, frame, answer, history } => {
                steps.push(Step::Redis(Post::Publish { answer }));
                self.pipe_publish(p, steps, &system, group.as_deref(), &frame, history);
            }
            BrokerCmd::Join { system, group, client, info, notice, .. } => {
                let n = notice.unwrap_or_default();
                self.pipe_join(p, &system, &group, &client, &info, &n, false);
                steps.push(Step::Redis(Post::Join { system, group, client, info }));
            }
            BrokerCmd::Leave { system, group, client, notice, info } => {
                let me = self.me();
                self.pipe_leave(p, me, &system, &group, &client, notice.as_deref(), false);
                steps.push(Step::Redis(Post::Leave { system, group, client, info }));
            }
            BrokerCmd::SystemSub { system, welcome, left, .. } => {
                if let Some((conn, user)) = welcome {
                    steps.push(Step::Local(Later::Welcome(conn, system.clone(), user)));
                }
                if let Some((conn, why)) = left {
                    steps.push(Step::Local(Later::Left(conn, system, why)));
                }
            }
            BrokerCmd::Forward { node, system, op, reply } => self.pipe_forward(p, steps, node, &system, &op, reply),
            BrokerCmd::Read { read, to } => {
                let before = p.len();
                read.pipe(&self.k, p);
                let n = p.len() - before;
                debug_assert!(n > 0, "a read adds at least one command: {read:?}");
                steps.push(Step::Read { read, to, n });
            }
            BrokerCmd::UserJoin { system, user, client } => {
                self.pipe_user(p, true, self.me(), &system, &user, &client, false);
                steps.push(Step::Redis(Post::User { online: true, system, user, client }));
            }
            BrokerCmd::UserLeave { system, user, client } => {
                self.pipe_user(p, false, self.me(), &system, &user, &client, false);
                steps.push(Step::Redis(Post::User { online: false, system, user, client }));
            }
            BrokerCmd::NodeFigures { reply } => steps.push(Step::Local(Later::NodeFigures(reply))),
            BrokerCmd::Answer { to: ReplyTo::Local(to), status, body } => {
                steps.push(Step::Local(Later::Answer(to, status, body)))
            }
            BrokerCmd::ToNode { node, payload } => {
                p.cmd(self.k.publish()).arg(self.k.node(node)).arg(payload);
                steps.push(Step::Redis(Post::Ignore));
            }
            BrokerCmd::Prepare { from, channels } => {
                // Subscribed before this pipeline runs (`pin`): `Ready` follows the subscriptions.
                let ready = crate::handoff::Msg::Ready { from: self.me(), channels };
                p.cmd(self.k.publish()).arg(self.k.node(from)).arg(crate::handoff::encode(&ready));
                steps.push(Step::Redis(Post::Ignore));
            }
            BrokerCmd::Unprepare { .. } => {}
            BrokerCmd::HandedOff { clients } => self.forget_clients(&clients),
            BrokerCmd::Adopt { from, clients, moved, held } => self.pipe_adopt(p, steps, from, &clients, moved, held),
            BrokerCmd::Answer { to: ReplyTo::Remote { node, corr }, status, body } => {
                self.publish_after(p, steps, self.k.node(node), wire::answer(corr, status, &body));
            }
        }
    }

    /// A frame published on its channel (stamped with its position there) and, when the
    /// group keeps history, appended to it; pushes the history's step (the caller pushed the
    /// publish's own step before it, in pipeline order).
    fn pipe_publish(
        &mut self,
        p: &mut redis::Pipeline,
        steps: &mut Vec<Step>,
        system: &str,
        group: Option<&str>,
        frame: &crate::msg::Frame,
        history: bool,
    ) {
        let chan = match group {
            Some(g) => self.k.group(system, g),
            None => self.k.system(system),
        };
        let at = self.stamps.next(&chan);
        p.cmd(self.k.publish()).arg(chan).arg(wire::delivery(at, frame));
        if let (Some(g), true) = (group, history) {
            p.cmd("EVALSHA")
                .arg(self.scripts.keep.get_hash())
                .arg(2)
                .arg(self.k.group(system, g))
                .arg(self.k.history(system, g))
                .arg(crate::protocol::ws::payload(frame))
                .arg(self.cfg.history_size)
                .arg(self.cfg.history_ttl.as_millis() as u64);
            steps.push(Step::Redis(Post::Ignore));
        }
    }

    /// A message on a node's channel that must follow every effect before it in the batch (an
    /// answer to a forwarded call, a hand-off's `Done`): in the pipeline on one Redis (one
    /// connection keeps the order); on a Redis Cluster, where the effects may be on other
    /// masters, in a trip of its own once the pipeline ran (`send_after`).
    fn publish_after(&mut self, p: &mut redis::Pipeline, steps: &mut Vec<Step>, chan: String, payload: Vec<u8>) {
        if self.k.is_tagged() {
            self.after.push((chan, payload));
        } else {
            p.cmd("PUBLISH").arg(chan).arg(payload);
            steps.push(Step::Redis(Post::Ignore));
        }
    }

    /// Sends what `publish_after` held back (dropped if the pipeline failed: the callers wait
    /// for answers that do not come and get 503, as when such a publish fails).
    fn send_after(&mut self, failed: bool) {
        let after = std::mem::take(&mut self.after);
        if after.is_empty() || failed {
            return;
        }
        let mut p = redis::pipe();
        for (chan, payload) in after {
            p.cmd(self.k.publish()).arg(chan).arg(payload).ignore();
        }
        let Some(con) = self.con.as_mut() else { return };
        if let Err(e) = p.query::<()>(con) {
            self.down(e.to_string());
        }
    }

    /// Runs the pipeline (unless nothing in it): its results, and whether it failed (then
    /// the connection is down and every result is an error).
    fn query(&mut self, p: &redis::Pipeline) -> (Vec<RedisResult<Value>>, bool) {
        let results: Result<Vec<RedisResult<Value>>, String> = match p.is_empty() {
            true => Ok(Vec::new()),
            false => p.query(self.con.as_mut().expect("checked by run_batch")).map_err(|e| e.to_string()),
        };
        // A master demoted to a replica (a failover that went on without it) refuses
        // writes: look for the new master as if the connection had failed.
        let results = results.and_then(|r| match r.iter().find_map(|r| r.as_ref().err().filter(|e| demoted(e))) {
            Some(e) => Err(format!("{e}: this Redis is not the master any more")),
            None => Ok(r),
        });
        match results {
            Ok(r) => (r, false),
            Err(e) => {
                // What this batch changed is not in Redis yet (it is re-written after the
                // reconnect): callers hear 503 and may retry (binds are idempotent).
                self.down(e);
                (Vec::new(), true)
            }
        }
    }

    /// A call about clients of `node`, published on its channel; `reply`: the caller waits
    /// for the answer (5 s at most). A call that is never forwarded is answered 500 at once.
    fn pipe_forward(
        &mut self,
        p: &mut redis::Pipeline,
        steps: &mut Vec<Step>,
        node: u32,
        system: &str,
        op: &crate::msg::Op,
        reply: Option<ConnId>,
    ) {
        self.corr += 1;
        let Some(payload) = wire::request(self.me(), self.corr, system, op) else {
            debug_assert!(false, "not a forwardable operation: {op:?}");
            tracing::error!("a call that is never forwarded was about to be: answered 500");
            if let Some(to) = reply {
                let body = api::err_body("internal error: this call cannot be forwarded");
                steps.push(Step::Local(Later::Answer(to, 500, body)));
            }
            return;
        };
        if let Some(to) = reply {
            self.pending.insert(self.corr, to);
        }
        p.cmd(self.k.publish()).arg(self.k.node(node)).arg(payload);
        steps.push(Step::Redis(Post::Forward { corr: self.corr, waiting: reply.is_some() }));
    }

    fn run_later(&mut self, l: Later, failed: bool) {
        match l {
            Later::Answer(to, _, _) if failed => self.unavailable(to),
            Later::Answer(to, status, body) => self.reply(to, status, body, None),
            Later::Welcome(conn, system, user_id) => {
                let _ = self.hub.send(Command::Subscribed { conn });
                self.emit(Kind::ClientConnected { user_id }, system, None, Some(conn));
            }
            Later::Left(conn, system, why) => {
                self.emit(Kind::ClientDisconnected(why), system, None, Some(conn));
                // Its last word: an adopted session's old clientId goes with it.
                self.cfg.aliases.ended(conn);
            }
            Later::NodeFigures(_) if failed => {} // dropped: the asker answers without
            Later::NodeFigures(reply) => match self.node_figures() {
                Ok(nodes) => {
                    let _ = reply.try_send(nodes);
                }
                Err(e) => self.down(e),
            },
        }
    }

    /// Records a presence event about a client of this node (webhooks).
    pub(super) fn emit(&self, kind: Kind, system: Arc<str>, group: Option<Arc<str>>, client: Option<ConnId>) {
        if let Some(h) = &self.cfg.hooks {
            let client = client.map(|c| self.cfg.aliases.id(self.me(), c).into());
            h.emit(Event::new(kind, system, group, client));
        }
    }

    fn unavailable(&mut self, to: ConnId) {
        metrics::add(&self.stats.cluster_unavailable_total, 1);
        self.reply(to, 503, unavailable(), None);
    }

    /// Queues an answer; its shard is woken once, at the end of this loop turn.
    fn reply(&mut self, to: ConnId, status: u16, body: Bytes, known_system: Option<crate::msg::KnownSystem>) {
        let shard = self.replies.queue(to, status, body, known_system);
        self.wakes.mark(shard);
    }

    fn wake_shards(&mut self) {
        self.wakes.wake();
    }

    /// Redis is unreachable: the mirror was updated; callers get 503, lookups an error,
    /// welcomes go out (local delivery keeps working), frames for other nodes are dropped.
    fn fail_batch(&mut self, batch: Vec<BrokerCmd>) {
        for cmd in batch {
            match cmd {
                BrokerCmd::Register { to, .. }
                | BrokerCmd::Forward { reply: Some(to), .. }
                | BrokerCmd::Publish { answer: Some((to, _)), .. } => self.unavailable(to),
                BrokerCmd::Read { to, .. } => self.unavailable(to),
                BrokerCmd::Lookup { system } => {
                    let registered = Err(api::CLUSTER_UNAVAILABLE.to_string());
                    let _ = self.hub.send(Command::SystemKnown { system, registered });
                }
                BrokerCmd::SystemSub { system, welcome, left, .. } => {
                    if let Some((conn, user)) = welcome {
                        self.run_later(Later::Welcome(conn, system.clone(), user), true);
                    }
                    if let Some((conn, why)) = left {
                        self.run_later(Later::Left(conn, system, why), true);
                    }
                }
                // Membership changes while Redis is away still happened here (the mirror has
                // them, and writes them once Redis is back): the back end hears of them now,
                // without group_occupied/group_vacated (only Redis knows those).
                BrokerCmd::Join { system, group, client, info, new: true, .. } => {
                    self.emit_member(true, system, group, &client, &info, None)
                }
                BrokerCmd::Leave { system, group, client, info, .. } => {
                    self.emit_member(false, system, group, &client, &info, None)
                }
                BrokerCmd::Answer { to: ReplyTo::Local(to), .. } => self.unavailable(to),
                _ => {}
            }
        }
    }
}

/// `host:port` of the server `client` points at (for logs).
fn address(client: &redis::Client) -> String {
    match client.get_connection_info().addr() {
        redis::ConnectionAddr::Tcp(h, p) | redis::ConnectionAddr::TcpTls { host: h, port: p, .. } => format!("{h}:{p}"),
        other => format!("{other:?}"),
    }
}
