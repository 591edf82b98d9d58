//! The subscriber thread: reads the pub/sub connection the broker opened and subscribes on.

use std::io::BufReader;
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use redis::Value;

use super::keys::{Chan, Keys};
use super::link;
use super::wire::{self, Delivery, NodeMsg};
use super::{Pending, Replies, SubEvent};
use crate::metrics::{self, HubStats};
use crate::msg::Command;

pub(super) struct Subscriber {
    pub hub: Sender<Command>,
    pub replies: Arc<Replies>,
    pub pending: Arc<Pending>,
    pub stats: Arc<HubStats>,
    pub events: Sender<SubEvent>,
    pub keys: Keys,
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
    pub fn run(self, streams: Receiver<(u64, link::Reader)>) {
        for (gen, stream) in streams {
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
            b"subscribe" | b"unsubscribe" => {
                let _ = self.events.send(SubEvent::Confirmed(gen));
            }
            _ => {}
        }
    }

    fn message(&self, chan: &[u8], payload: Vec<u8>) {
        let Some(chan) = std::str::from_utf8(chan).ok().and_then(|c| self.keys.parse_channel(c)) else { return };
        let (system, group) = match chan {
            Chan::Node(_) => return self.node_msg(&payload),
            Chan::Cluster => {
                if let Some(node) = wire::parse_hello(&payload) {
                    let _ = self.hub.send(Command::Nodes { alive: vec![node], dead: Vec::new() });
                }
                return;
            }
            Chan::Group(s, g) => (s, Some(g.into())),
            Chan::System(s) => (s, None),
        };
        let (frame, joined) = match wire::parse_delivery(&payload) {
            Some(Delivery::Frame { frame, .. }) => (Some(frame), None),
            Some(Delivery::Joined { client, notice }) => (notice, Some(client)),
            None => return,
        };
        // The frame is the payload's tail: keep the buffer, no copy.
        let frame = frame.map(|f| payload.len() - f.len()).map(|start| Bytes::from(payload).slice(start..));
        let _ = self.hub.send(Command::Frame { system: system.into(), group, frame, joined });
    }

    fn node_msg(&self, payload: &[u8]) {
        if let Some(m) = super::relay::decode(payload) {
            let _ = self.hub.send(Command::FromNode(m));
            return;
        }
        match wire::parse_node_msg(payload) {
            Some(NodeMsg::Request { origin, corr, system, op }) => {
                let _ = self.hub.send(Command::Remote { origin, corr, system, op });
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
