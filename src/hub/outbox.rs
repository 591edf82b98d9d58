//! How the hub reaches the shards: sends with one wake per shard per batch, and notices.

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};

use super::{Client, HubConfig, Members, ShardLink};
use crate::ids::{self, ConnId};
use crate::metrics::{self, HubStats};
use crate::msg::{Frame, Reply, ShardMsg};
use crate::protocol::api;

/// Sends to shards and remembers whom to wake.
pub(super) struct Outbox {
    pub(super) links: Vec<ShardLink>,
    pub(super) woken: Vec<bool>,
}

impl Outbox {
    pub(super) fn send(&mut self, shard: usize, msg: ShardMsg) {
        let link = &self.links[shard];
        Self::push(&link.tx, &link.waker, msg);
        self.woken[shard] = true;
    }

    fn push<T>(tx: &Sender<T>, waker: &mio::Waker, msg: T) {
        match tx.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(msg)) => {
                // The shard may be asleep with a full queue: wake it before waiting on it.
                let _ = waker.wake();
                let _ = tx.send(msg);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    pub(super) fn broadcast(&mut self, members: &mut Members, frame: &Frame) {
        for shard in 0..members.shards() {
            if let Some(targets) = members.snapshot(shard) {
                self.send(shard, ShardMsg::Deliver { frame: frame.clone(), targets });
            }
        }
    }

    pub(super) fn reply(&mut self, to: ConnId, status: u16, body: Bytes, registered: Option<Box<str>>) {
        let shard = to.shard as usize;
        let link = &self.links[shard];
        Self::push(&link.replies, &link.waker, Reply { to: to.in_shard(), status, body, registered });
        self.woken[shard] = true;
    }

    pub(super) fn wake(&mut self) {
        for (i, w) in self.woken.iter_mut().enumerate() {
            if std::mem::take(w) {
                let _ = self.links[i].waker.wake();
            }
        }
    }
}

/// Sends the 1001 (`api::ONLINE`) or 1002 (`api::OFFLINE`) notice about `client` to
/// `members`, unless the group is larger than `notify_max_group_size`.
pub(super) fn notice(
    out: &mut Outbox,
    cfg: &HubConfig,
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
