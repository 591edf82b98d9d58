//! The subscriber thread: reads the pub/sub connection the broker opened and subscribes on.
//!
//! It never waits on the hub without a bound: what Redis brings goes to the hub's bounded
//! `redis` queue; while the queue is full the subscriber waits, for at most [`MAX_STALL`] per
//! episode (a burst is absorbed by the socket's and Redis's buffers),
//! and past that drops what the hub cannot take — counted (`cluster_redis_dropped_total`),
//! logged and recorded in [`Losses`] — so it goes on reading at Redis's pace and Redis never
//! drops it as a slow subscriber. A gap in a channel's positions ([`super::stream`]) is
//! recorded the same way (`cluster_redis_missed_total`). A loss is never silent.

use std::cell::Cell;
use std::io::BufReader;
use std::sync::Arc;
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

/// The longest the subscriber waits for a hub that is behind, in all, per episode: from the
/// moment its queue is found full until it is back under half full. Past it, what does not fit
/// is dropped (and the subscriber reads on at Redis's pace).
pub const MAX_STALL: Duration = Duration::from_millis(100);

pub(super) struct Subscriber {
    pub hub: ToHub,
    pub replies: Arc<Replies>,
    pub pending: Arc<Pending>,
    pub stats: Arc<HubStats>,
    pub events: Sender<SubEvent>,
    pub keys: Keys,
    /// The last position seen per channel and publisher.
    pub gaps: std::cell::RefCell<Gaps>,
    /// Since when the hub's queue has been full (waits count against [`MAX_STALL`]).
    pub stalled: Cell<Option<Instant>>,
    /// Messages put in the hub's `redis` queue so far (a loss is recorded at this count).
    pub queued: Cell<u64>,
    /// This node (its clients' join markers are never dropped).
    pub node: u32,
    pub last_log: Cell<Option<Instant>>,
}

fn bulk(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        _ => None,
    }
}

impl Subscriber {
    /// Reads each connection the broker hands over until it fails; ends with the broker.
    pub fn run(self, streams: Receiver<(u64, link::Reader, usize)>) {
        for (gen, stream, resubscribing) in streams {
            self.gaps.borrow_mut().reconnected(resubscribing);
            let mut reader = BufReader::with_capacity(64 << 10, stream);
            let mut parser = redis::Parser::new();
            loop {
                match parser.parse_value(&mut reader) {
                    Ok(Value::Array(items)) | Ok(Value::Push { data: items, .. }) => self.push(gen, items),
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
    }

    fn push(&self, gen: u64, items: Vec<Value>) {
        let mut it = items.into_iter();
        let kind = it.next().and_then(bulk).unwrap_or_default();
        match &kind[..] {
            b"message" => {
                let (Some(chan), Some(payload)) = (it.next().and_then(bulk), it.next().and_then(bulk)) else { return };
                metrics::add(&self.stats.cluster_received_total, 1);
                self.message(&chan, payload);
            }
            b"subscribe" => {
                if let Some(chan) = it.next().and_then(bulk) {
                    self.gaps.borrow_mut().subscribed(&String::from_utf8_lossy(&chan));
                }
                let _ = self.events.send(SubEvent::Confirmed(gen));
            }
            b"unsubscribe" => {
                if let Some(chan) = it.next().and_then(bulk) {
                    self.gaps.borrow_mut().forget(&String::from_utf8_lossy(&chan));
                }
                let _ = self.events.send(SubEvent::Confirmed(gen));
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
            let missed = self.gaps.borrow_mut().saw(name, at);
            if missed > 0 {
                metrics::add(&self.stats.cluster_redis_missed_total, missed);
                self.lost(channel(), "messages of a channel never came (pub/sub connection lost?)");
            }
        }
        // Another node's client joining without a notice: nothing for this node.
        let ours = joined.filter(|c| c.node == self.node);
        if frame.is_none() && ours.is_none() {
            return;
        }
        // The frame is the payload's tail: keep the buffer, no copy.
        let frame = frame.map(|f| payload.len() - f.len()).map(|start| Bytes::from(payload).slice(start..));
        let had_frame = frame.is_some();
        let cmd = Command::Frame { system: system.into(), group: group.map(Into::into), frame, joined: ours };
        if let Err(cmd) = self.to_hub(cmd) {
            if had_frame {
                self.lost(channel(), "the hub's queue was full: a frame from Redis was dropped");
            }
            // A client of ours joins at its marker: without it, it would never be a member
            // here. The join is recorded in its place in the stream instead.
            if let Command::Frame { system, group: Some(group), joined: Some(client), .. } = cmd {
                self.hub.losses.record(self.queued.get(), Lost::Joined { system, group, client });
            }
        }
    }

    /// Hands a message from Redis to the hub, waiting within [`MAX_STALL`] while its queue is
    /// full; `Err`: it was dropped (counted), and is handed back.
    fn to_hub(&self, cmd: Command) -> Result<(), Command> {
        let cmd = match self.hub.redis.try_send(cmd) {
            Ok(()) => {
                // The episode ends once the hub has caught up well, not at the first free slot
                // (a steadily slower hub would otherwise hold the reader most of the time).
                if self.hub.redis.len() * 2 < self.hub.redis.capacity().unwrap_or(usize::MAX) {
                    self.stalled.set(None);
                }
                self.queued.set(self.queued.get() + 1);
                return Ok(());
            }
            // The hub is gone (shutdown): nothing to deliver to.
            Err(TrySendError::Disconnected(_)) => return Ok(()),
            Err(TrySendError::Full(cmd)) => cmd,
        };
        let since = *self.stalled.get().get_or_insert_with(Instant::now);
        self.stalled.set(Some(since));
        let left = MAX_STALL.saturating_sub(since.elapsed());
        let cmd = match left.is_zero() {
            true => cmd,
            false => match self.hub.redis.send_timeout(cmd, left) {
                Ok(()) => {
                    self.queued.set(self.queued.get() + 1);
                    return Ok(());
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return Ok(()),
                Err(crossbeam_channel::SendTimeoutError::Timeout(cmd)) => cmd,
            },
        };
        metrics::add(&self.stats.cluster_redis_dropped_total, 1);
        Err(cmd)
    }

    /// Records a loss in its place in the queue, and says so (at most once a second).
    fn lost(&self, what: Lost, why: &str) {
        self.hub.losses.record(self.queued.get(), what);
        if self.last_log.get().is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
            self.last_log.set(Some(Instant::now()));
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
        if let Some(m) = crate::protocol::relay::decode(payload) {
            let target = m.target();
            // After one is lost, the later ones for that connection go too, until the hub has
            // dealt with it (an acknowledgement must not pass the frame it would cover).
            let follows_a_loss = self.hub.losses.relay_lost(target);
            if follows_a_loss {
                metrics::add(&self.stats.cluster_redis_dropped_total, 1);
            }
            if follows_a_loss || self.to_hub(Command::FromNode(m)).is_err() {
                self.lost(Lost::Relay(target), "a relay message was dropped: its client reconnects");
            }
            return;
        }
        match wire::parse_node_msg(payload) {
            Some(NodeMsg::Request { origin, corr, system, op }) => {
                if let Err(Command::Remote { op, .. }) = self.to_hub(Command::Remote { origin, corr, system, op }) {
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
