//! The subscriber: reads the pub/sub connections the broker opened and subscribes on — one on
//! one Redis, one per master on a Redis Cluster (sharded pub/sub: a channel is served by its
//! slot's master), each read by a thread of its own over the state they share here.
//!
//! It never waits on the hub without a bound: what Redis brings goes to the hub's bounded
//! `redis` queue; while the queue is full the subscriber waits, for at most `redis_max_stall`
//! (100 ms) in any [`STALL_WINDOW`] (a burst is absorbed by the socket's and Redis's buffers, and the reader
//! reads at Redis's pace the rest of the time, so Redis's buffer for it drains between bursts),
//! and past that drops what the hub cannot take — counted (`cluster_redis_dropped_total`),
//! logged and recorded in [`Losses`] — so it goes on reading at Redis's pace and Redis never
//! drops it as a slow subscriber. A gap in a channel's positions ([`super::stream`]) is
//! recorded the same way (`cluster_redis_missed_total`). A loss is never silent.

use std::io::BufReader;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use redis::Value;

use super::keys::{Chan, Keys};
use super::link;
use super::stream::Gaps;
use super::wire::{self, Delivery, NodeMsg};
use super::{Lost, Pending, Replies, SubEvent, ToHub};
use crate::metrics::{self, HubStats};
use crate::msg::Command;

/// The window `redis_max_stall` is counted over: the subscriber waits for a full hub queue at
/// most that long in all per window, a budget that refills at that rate. Past it, what does not
/// fit is dropped (and the subscriber reads on at Redis's pace). Redis must hold what arrives
/// meanwhile, and the reader must then catch up: at the default 100 ms and 20 MB/s from Redis,
/// 2 MB, well inside Redis's default pub/sub output limit (32 MB, or 8 MB for 60 s); with a
/// tight limit, 0 (never wait). A per-episode bound is not enough: a hub that is steadily
/// slower would start an episode at every catch-up and hold the reader most of the time.
pub const STALL_WINDOW: Duration = Duration::from_secs(1);

/// What is left of the subscriber's waiting budget (`max` per [`STALL_WINDOW`]).
///
/// A bucket of half of `max` that refills at half of `max` per window: whatever the pattern,
/// the waits within any one window add up to at most `max` (what it holds when the window
/// begins, plus what refills during it).
pub(super) struct StallBudget {
    /// The bucket's size, and what it refills per window: half of `redis_max_stall`.
    half: Duration,
    left: Duration,
    at: Instant,
}

impl StallBudget {
    pub fn new(max: Duration, now: Instant) -> Self {
        debug_assert!(max <= STALL_WINDOW, "redis_max_stall is checked at start");
        StallBudget { half: max / 2, left: max / 2, at: now }
    }

    /// How long one may wait now: the budget, refilled for the time since it was last asked.
    fn available(&mut self, now: Instant) -> Duration {
        let since = now.saturating_duration_since(self.at);
        let refill = self.half.mul_f64(since.as_secs_f64() / STALL_WINDOW.as_secs_f64());
        self.left = (self.left + refill).min(self.half);
        self.at = now;
        self.left
    }

    /// Takes `waited` from the budget.
    fn spend(&mut self, waited: Duration) {
        self.left = self.left.saturating_sub(waited);
    }
}

pub(super) struct Subscriber {
    pub hub: ToHub,
    pub replies: Arc<Replies>,
    pub pending: Arc<Pending>,
    pub stats: Arc<HubStats>,
    pub events: Sender<SubEvent>,
    pub keys: Keys,
    /// The last position seen per channel and publisher (shared with the broker, which
    /// forgets a channel once it has left it).
    pub gaps: Arc<Mutex<Gaps>>,
    /// How long it may still wait for a full hub queue (all connections together).
    pub budget: Mutex<StallBudget>,
    /// Messages put in the hub's `redis` queue so far (a loss is recorded at this count: with
    /// several connections, messages of other channels may fall either side of it, which
    /// moves no loss past a message of its own channel).
    pub queued: AtomicU64,
    /// This node (its clients' join markers are never dropped).
    pub node: u32,
    /// Where moved clientIds are (a join marker of a session adopted here is ours too).
    pub aliases: Arc<crate::aliases::Aliases>,
    pub last_log: Mutex<Option<Instant>>,
}

/// A pub/sub connection for the subscriber: its generation, its read half, and — for the
/// first connection after the broker (re)connected — how many channels the broker subscribes
/// first, on all its connections (the node's own: `Gaps::reconnected`).
pub struct Stream {
    pub gen: u64,
    pub reader: link::Reader,
    pub resubscribing: Option<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn bulk(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

impl Subscriber {
    /// Reads each connection the broker hands over, each on a thread of its own until it
    /// fails; ends with the broker. A reconnect's first connection waits until every earlier
    /// one has ended (the broker shut them), so what they read comes before what it reads.
    pub fn run(self, streams: Receiver<Stream>) {
        let me = Arc::new(self);
        let mut readers: Vec<std::thread::JoinHandle<()>> = Vec::new();
        for stream in streams {
            if let Some(n) = stream.resubscribing {
                readers.drain(..).for_each(|r| {
                    let _ = r.join();
                });
                lock(&me.gaps).reconnected(n);
            }
            readers.retain(|r| !r.is_finished());
            let sub = me.clone();
            let spawned = std::thread::Builder::new()
                .name("roomcast-subscriber".into())
                .spawn(move || sub.read(stream.gen, stream.reader));
            match spawned {
                Ok(r) => readers.push(r),
                Err(e) => {
                    tracing::error!("cannot start a pub/sub reader thread: {e}");
                    let _ = me.events.send(SubEvent::Down(stream.gen));
                }
            }
        }
        readers.into_iter().for_each(|r| {
            let _ = r.join();
        });
    }

    /// Reads one connection until it fails.
    fn read(&self, gen: u64, stream: link::Reader) {
        let mut reader = BufReader::with_capacity(64 << 10, stream);
        let mut parser = redis::Parser::new();
        loop {
            match parser.parse_value(&mut reader) {
                Ok(Value::Array(items)) | Ok(Value::Push { data: items, .. }) => self.push(gen, items),
                // A sharded subscription the node asked of a master that no longer serves its
                // slot (`MOVED`): the broker looks again.
                Ok(Value::ServerError(e)) if self.keys.is_tagged() => {
                    let moved = (e.code() == "MOVED").then(|| e.details().map(str::to_string)).flatten();
                    let _ = self.events.send(SubEvent::Refused(gen, moved.ok_or_else(|| format!("{e:?}"))));
                }
                Ok(Value::ServerError(e)) => {
                    tracing::warn!("redis pub/sub connection: {e:?}");
                    break;
                }
                Ok(_) => {} // +OK of AUTH
                Err(_) => break,
            }
        }
        let _ = self.events.send(SubEvent::Down(gen));
    }

    fn push(&self, gen: u64, items: Vec<Value>) {
        let mut it = items.into_iter();
        let kind = it.next().and_then(bulk).unwrap_or_default();
        match &kind[..] {
            b"message" | b"smessage" => {
                let (Some(chan), Some(payload)) = (it.next().and_then(bulk), it.next().and_then(bulk)) else { return };
                metrics::add(&self.stats.cluster_received_total, 1);
                self.message(&chan, payload);
            }
            b"subscribe" | b"ssubscribe" => {
                if let Some(chan) = it.next().and_then(bulk) {
                    lock(&self.gaps).subscribed(&String::from_utf8_lossy(&chan));
                }
                let _ = self.events.send(SubEvent::Subscribed(gen));
            }
            // The broker's own, or (sharded) a master letting the channels of a slot it gave
            // away go: the broker tells them apart, and forgets the positions of its own.
            b"unsubscribe" | b"sunsubscribe" => {
                if let Some(chan) = it.next().and_then(bulk) {
                    let _ = self.events.send(SubEvent::Unsubscribed(gen, String::from_utf8_lossy(&chan).into_owned()));
                }
            }
            _ => {}
        }
    }

    fn message(&self, raw_chan: &[u8], payload: Vec<u8>) {
        let Some(name) = std::str::from_utf8(raw_chan).ok() else { return };
        let Some(chan) = self.keys.parse_channel(name) else { return };
        let (system, group) = match chan {
            Chan::Node(_) => return self.node_msg(&payload),
            Chan::Cluster => {
                if let Some(node) = wire::parse_hello(&payload) {
                    let _ = self.hub.control.send(Command::Nodes { alive: vec![node], dead: Vec::new() });
                } else if let Some(m) = wire::parse_moved(&payload) {
                    self.aliases.moved(m);
                } else if let Some(node) = wire::parse_bye(&payload).filter(|n| *n != self.node) {
                    let _ = self.hub.control.send(Command::Nodes { alive: Vec::new(), dead: vec![node] });
                }
                return;
            }
            Chan::Group(s, g) => (s, Some(g)),
            Chan::System(s) => (s, None),
        };
        let (at, frame, joined) = match wire::parse_delivery(&payload) {
            Some(Delivery::Frame { at, frame }) => (at, Some(frame), None),
            Some(Delivery::Joined { at, client, notice }) => (at, notice, Some(client)),
            Some(Delivery::Skip { at }) => (Some(at), None, None),
            None => return,
        };
        let channel = || Lost::Channel(system.into(), group.map(Into::into));
        if let Some(at) = at {
            let missed = lock(&self.gaps).saw(name, at);
            if missed > 0 {
                metrics::add(&self.stats.cluster_redis_missed_total, missed);
                self.lost(channel(), "messages of a channel never came (pub/sub connection lost?)");
            }
        }
        // Another node's client joining without a notice: nothing for this node. (Joins are
        // published on group channels only: a marker anywhere else means nothing.)
        let ours = joined
            .filter(|c| group.is_some() && matches!(self.aliases.route(self.node, *c), crate::aliases::Route::Here(_)));
        if frame.is_none() && ours.is_none() {
            return;
        }
        // The frame is the payload's tail: keep the buffer, no copy.
        let frame = frame.map(|f| payload.len() - f.len()).map(|start| Bytes::from(payload).slice(start..));
        let had_frame = frame.is_some();
        let at = at.map(|p| crate::handoff::At { origin: p.origin, epoch: p.epoch, seq: p.seq });
        let cmd = Command::Published { system: system.into(), group: group.map(Into::into), frame, joined: ours, at };
        if let Err(cmd) = self.to_hub(cmd) {
            if had_frame {
                metrics::add(&self.stats.cluster_redis_dropped_total, 1);
                self.lost(channel(), "the hub's queue was full: a frame from Redis was dropped");
            }
            // A client of ours joins at its marker: without it, it would never be a member
            // here. The join is recorded in its place in the stream instead.
            if let Command::Published { system, group: Some(group), joined: Some(client), .. } = cmd {
                self.hub.losses.record(self.queued.load(Ordering::Acquire), Lost::Joined { system, group, client });
            }
        }
    }

    /// Hands a message from Redis to the hub, waiting within the [`StallBudget`] while its
    /// queue is full; `Err`: it did not fit, and is handed back (the caller counts what is lost).
    fn to_hub(&self, cmd: Command) -> Result<(), Command> {
        let cmd = match self.hub.redis.try_send(cmd) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::AcqRel);
                return Ok(());
            }
            // The hub is gone (shutdown): nothing to deliver to.
            Err(TrySendError::Disconnected(_)) => return Ok(()),
            Err(TrySendError::Full(cmd)) => cmd,
        };
        let start = Instant::now();
        let left = lock(&self.budget).available(start);
        let sent = match left.is_zero() {
            true => Err(cmd),
            false => match self.hub.redis.send_timeout(cmd, left) {
                Ok(()) => Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(cmd)) => Err(cmd),
            },
        };
        lock(&self.budget).spend(start.elapsed());
        if sent.is_ok() {
            self.queued.fetch_add(1, Ordering::AcqRel);
        }
        sent
    }

    /// Records a loss in its place in the queue, and says so (at most once a second).
    fn lost(&self, what: Lost, why: &str) {
        self.hub.losses.record(self.queued.load(Ordering::Acquire), what);
        let mut last = lock(&self.last_log);
        if last.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            *last = Some(Instant::now());
            tracing::warn!("cluster: {why}; the sessions that may have missed it will not be recovered from before it");
        }
    }

    /// A forwarded call was dropped. One its caller waits for gets 503 at the forward timeout;
    /// a send nobody waits for (`send_to_clients` to several nodes, answered already) is a
    /// loss for the clients of this node it names.
    fn remote_lost(&self, op: crate::msg::Op) {
        match op {
            crate::msg::Op::SendToClients { clients, strict: false, .. } => {
                let mine = clients.iter().filter(|c| c.node == self.node).map(|c| c.conn).collect();
                self.lost(Lost::Clients(mine), "the hub's queue was full: a forwarded send was dropped");
            }
            _ => self.lost(
                Lost::Clients(Vec::new()),
                "the hub's queue was full: a forwarded call was dropped (its caller gets 503)",
            ),
        }
    }

    fn node_msg(&self, payload: &[u8]) {
        if let Some(msg) = crate::handoff::decode(payload) {
            let cut = match &msg {
                crate::handoff::Msg::Ready { channels, .. } => self.cut(channels),
                _ => Vec::new(),
            };
            if self.to_hub(Command::HandOff { msg: Box::new(msg), cut }).is_err() {
                metrics::add(&self.stats.cluster_redis_dropped_total, 1);
                tracing::warn!("the hub's queue was full: a hand-off message was dropped (the hand-off times out)");
            }
            return;
        }
        if let Some(m) = crate::protocol::relay::decode(payload) {
            let target = m.target();
            // After one is lost, the later ones for that connection go too, until the hub has
            // dealt with it (an acknowledgement must not pass the frame it would cover).
            let follows_a_loss = self.hub.losses.relay_lost(target);
            if follows_a_loss || self.to_hub(Command::FromNode(m)).is_err() {
                metrics::add(&self.stats.cluster_redis_dropped_total, 1);
                self.lost(Lost::Relay(target), "a relay message was dropped: its client reconnects");
            }
            return;
        }
        match wire::parse_node_msg(payload) {
            Some(NodeMsg::Request { origin, corr, system, op }) => {
                if let Err(Command::Remote { op, .. }) = self.to_hub(Command::Remote { origin, corr, system, op }) {
                    metrics::add(&self.stats.cluster_redis_dropped_total, 1);
                    self.remote_lost(op);
                }
            }
            Some(NodeMsg::Answer { corr, status, body }) => {
                if let Some(to) = self.pending.take(corr) {
                    self.replies.send(to, status, body, None);
                }
            }
            None => tracing::warn!("ignored a malformed message on this node's channel"),
        }
    }
}

impl Subscriber {
    /// The cut of a hand-off, taken as its `Ready` is read: on each of `channels`, the last
    /// position seen from each publisher (everything up to it is in the hub's queue already).
    fn cut(&self, channels: &[crate::handoff::Channel]) -> Vec<crate::handoff::Cut> {
        let gaps = lock(&self.gaps);
        let mut cut = Vec::new();
        for c in channels {
            let name = match &c.group {
                Some(g) => self.keys.group(&c.system, g),
                None => self.keys.system(&c.system),
            };
            for (origin, epoch, seq) in gaps.last(&name) {
                cut.push(crate::handoff::Cut { channel: c.clone(), at: crate::handoff::At { origin, epoch, seq } });
            }
        }
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stall_budget_is_max_stall_per_window() {
        const MAX: Duration = Duration::from_millis(100);
        let t0 = Instant::now();
        let mut b = StallBudget::new(MAX, t0);
        assert_eq!(b.available(t0), MAX / 2, "a burst of half at once");
        b.spend(MAX / 2);
        assert_eq!(b.available(t0), Duration::ZERO, "spent: nothing left at once");
        // Refilled in proportion to the time passed, never past half.
        let half = t0 + STALL_WINDOW / 2;
        assert_eq!(b.available(half), MAX / 4);
        assert_eq!(b.available(half + STALL_WINDOW * 5), MAX / 2);
        // Waits of any pattern (here: a hub steadily behind, waited on whenever there is
        // budget, from a full bucket): every window of STALL_WINDOW holds at most MAX of them.
        let start = half + STALL_WINDOW * 5;
        let step = Duration::from_millis(5);
        let mut waits = Vec::new();
        let mut t = start;
        for _ in 0..2000 {
            let w = b.available(t).min(Duration::from_millis(3));
            b.spend(w);
            waits.push((t, w));
            t += step.max(w);
        }
        for (i, &(from, _)) in waits.iter().enumerate() {
            let within: Duration =
                waits[i..].iter().take_while(|(at, _)| *at < from + STALL_WINDOW).map(|(_, w)| *w).sum();
            assert!(within <= MAX + Duration::from_micros(50), "{within:?} within one window from wait {i}");
        }
        assert!(waits.iter().map(|(_, w)| *w).sum::<Duration>() > MAX * 4, "it does wait: about half of MAX a second");
    }

    #[test]
    fn a_zero_budget_never_waits() {
        let t0 = Instant::now();
        let mut b = StallBudget::new(Duration::ZERO, t0);
        assert_eq!(b.available(t0 + STALL_WINDOW * 10), Duration::ZERO);
    }
}
