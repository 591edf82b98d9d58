//! How the hub reaches the shards: sends with one wake per shard per batch, and notices.

use bytes::Bytes;

use super::index::Client;
use super::{Members, ShardLink};
use crate::config::Config;
use crate::ids::{self, ConnId};
use crate::metrics::{self, HubStats};
use crate::msg::{send_to_shard, Frame, KnownSystem, Reply, ShardMsg, Wakes, Zipped};
use crate::protocol::api;

/// Sends to shards and remembers whom to wake.
pub(super) struct Outbox {
    pub(super) links: Vec<ShardLink>,
    wakes: Wakes,
    /// `compression_min_size` when compression is on.
    compress_min: Option<usize>,
}

impl Outbox {
    pub(super) fn new(links: Vec<ShardLink>, compress_min: Option<usize>) -> Self {
        let wakes = Wakes::new(links.iter().map(|l| l.waker.clone()).collect());
        Outbox { links, wakes, compress_min }
    }

    /// A cell for `frame`'s compressed form, shared by the shards it goes to (see [`Zipped`]).
    pub(super) fn zipped(&self, frame: &Frame) -> Zipped {
        let min = self.compress_min?;
        (crate::protocol::ws::payload(frame).len() >= min).then(Default::default)
    }

    pub(super) fn send(&mut self, shard: usize, msg: ShardMsg) {
        let link = &self.links[shard];
        send_to_shard(&link.tx, &link.waker, msg);
        self.wakes.mark(shard);
    }

    pub(super) fn broadcast(&mut self, members: &mut Members, frame: &Frame) {
        let mut zipped = None;
        for shard in 0..members.shards() {
            if let Some(targets) = members.snapshot(shard) {
                let zipped = zipped.get_or_insert_with(|| self.zipped(frame)).clone();
                self.send(shard, ShardMsg::Deliver { frame: frame.clone(), zipped, targets });
            }
        }
    }

    pub(super) fn reply(&mut self, to: ConnId, status: u16, body: Bytes, known_system: Option<KnownSystem>) {
        let shard = to.shard as usize;
        let link = &self.links[shard];
        send_to_shard(&link.replies, &link.waker, Reply { to: to.in_shard(), status, body, known_system });
        self.wakes.mark(shard);
    }

    pub(super) fn wake(&mut self) {
        self.wakes.wake();
    }
}

/// Sends the 1001 (`api::ONLINE`) or 1002 (`api::OFFLINE`) notice about `client` to
/// `members`, unless the group is larger than `notify_max_group_size`.
pub(super) fn notice(
    out: &mut Outbox,
    cfg: &Config,
    stats: &HubStats,
    members: &mut Members,
    code: i64,
    client_id: &str,
    client: &Client,
) {
    if members.len() > cfg.notify_max_group_size {
        return;
    }
    let f = api::notice_frame(code, &ids::message_id(), client_id, &client.user_id, &client.extend);
    out.broadcast(members, &f);
    metrics::add(&stats.notices_total, 1);
}
