//! The cross-thread contract: everything a shard and the hub say to each other.
//!
//! Shards send [`Command`]s to the hub over one bounded MPSC channel (so commands from
//! different shards are totally ordered: a client that learnt its id from shard A and
//! whose back end then calls bind on shard B is always known to the hub first). The hub
//! answers with [`ShardMsg`]s over one bounded channel per shard, waking the shard's
//! `mio::Poll` once per batch. A shard never blocks on the hub (it uses `try_send` and
//! answers 503 when the hub is full); the hub may block on a full shard queue, which the
//! shard always drains, after waking it.

use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};
use serde_json::value::RawValue;

pub use crate::ids::Target;
use crate::ids::{ClientRef, ConnId};

/// A complete, immutable server-to-client WebSocket frame (header + payload), shared by
/// every recipient (invariant 2).
pub type Frame = Bytes;

/// The compressed form of a frame (permessage-deflate), made by the first shard that has a
/// compressing recipient for it and shared by every shard; `None` inside: compressing did not
/// make it smaller. The hub attaches one cell per message when compression is on and the
/// message is large enough (`compression_min_size`); `None`: send it plain to everyone.
pub type Zipped = Option<Arc<std::sync::OnceLock<Option<Bytes>>>>;

/// How a shard names a new client's system to the hub: by name, or (single node, once the
/// hub has said the system is registered) by the hub's index of it, which stays valid there
/// (systems are never removed) — nothing to hash, copy or free on the hub's side.
#[derive(Debug)]
pub enum SystemRef {
    Name(Box<str>),
    Index(u32),
}

/// Shard → hub.
#[derive(Debug)]
pub enum Command {
    /// A WebSocket handshake completed for `system`; the hub registers the client (or
    /// refuses it: unknown system) and answers [`ShardMsg::Welcome`] — unless `welcomed`: the
    /// shard knew the system registered (single node) and sent the connect frame itself,
    /// right after this command was queued. (Whatever the client does with its clientId
    /// reaches the hub after this command: one FIFO queue, and causality.)
    /// `grant`: what the client's connect token grants (its user, groups joined before its
    /// connect frame); never with `welcomed`.
    Connect { conn: ConnId, system: SystemRef, welcomed: bool, grant: Option<Box<crate::auth::Grant>> },
    /// The connects of one shard loop turn that the shard welcomed itself (single node,
    /// systems by index; `welcomed` is true for each): one command for a burst.
    ConnectMany(Vec<(ConnId, u32)>),
    /// The connection is gone (closed, error, idle, slow consumer; `why`, for webhooks).
    /// Idempotent.
    Disconnected { conn: ConnId, why: crate::webhooks::Gone },
    /// An HTTP API call, answered with a [`Reply`] to `from` unless `answered`:
    /// the shard already answered it (a send to a system it knows is registered).
    Api { from: ConnId, system: Box<str>, op: Op, answered: bool },
    /// A client published to a group it belongs to (opt-in by config).
    Publish { conn: ConnId, group: Box<str>, code: i64, msg: Box<str>, data: Box<RawValue> },
    /// Cluster mode, from the broker: an API operation another node forwarded for a client
    /// of this node; answered to `origin` with correlation id `corr`.
    Remote { origin: u32, corr: u64, system: Box<str>, op: Op },
    /// Cluster mode, from the subscriber: a frame published to a group (or, without `group`,
    /// to a whole system) for this node's members. `joined`: a client that joined the group
    /// at this point of Redis's order; if it is ours it becomes a member here before the frame
    /// (its 1001 notice, if any) is delivered, so group membership follows one order
    /// cluster-wide.
    /// `at`: its place in its publisher's stream (what a hand-off's cut compares).
    Published {
        system: Box<str>,
        group: Option<Box<str>>,
        frame: Option<Frame>,
        joined: Option<ClientRef>,
        at: Option<crate::handoff::At>,
    },
    /// Cluster mode, from the subscriber: a hand-off message for this node (`handoff`), in
    /// its place among Redis's messages; with a `Ready`, `cut` holds the last positions this
    /// node saw on its channels (everything before it in the queue).
    HandOff { msg: Box<crate::handoff::Msg>, cut: Vec<crate::handoff::Cut> },
    /// Cluster mode, from shards: sessions another node handed over, now held here
    /// ([`ShardMsg::Adopt`]): each old clientId with its connection here; `over`: those no
    /// slot could take.
    Adopted { from: u32, held: Vec<(ClientRef, ConnId)>, over: Vec<ClientRef> },
    /// Cluster mode, from a shard shutting down: a relay message for one of its sessions that
    /// came too late (the session is being handed over): the hub passes it to the adopter.
    Bounced(crate::protocol::relay::Msg),
    /// Cluster mode, from the broker: whether `system` is registered (`Err`: Redis
    /// unreachable), answering a lookup the hub asked for.
    SystemKnown { system: Box<str>, registered: Result<bool, String> },
    /// Cluster mode, from the broker: the connections of a user across the cluster (read from
    /// Redis), for a `send_to_user` / `close_user` of the caller `to`.
    UserClients { system: Box<str>, clients: Vec<ClientRef>, call: UserCall, to: ConnId },
    /// Cluster mode, from the broker: this node now receives `system`'s broadcasts, so the
    /// client waiting for its connect frame can get it.
    Subscribed { conn: ConnId },
    /// Cluster mode: nodes seen alive (heartbeat present, or just announced) and nodes seen
    /// dead (heartbeat expired). Calls are forwarded only to nodes alive: a clientId naming any
    /// other node is unknown at once (no made-up node id costs a publish).
    Nodes { alive: Vec<u32>, dead: Vec<u32> },
    /// A client asked to resume a session of this node (`resume=<token>`): the socket goes to
    /// the session's shard (the hub only relays it there, in order with everything else it
    /// sends that shard).
    Resume(Box<Resume>),
    /// Cluster mode, from a shard: a relay message for another node (`protocol::relay`); the
    /// hub hands it to the broker if that node is alive, else answers `from_shard` with
    /// [`ShardMsg::NodeGone`].
    ToNode { node: u32, from_shard: u16, payload: Vec<u8> },
    /// Cluster mode, from the subscriber: a relay message for a shard of this node.
    FromNode(crate::protocol::relay::Msg),
    /// From the admin listener (`GET /admin/stats`): this node's systems, answered on
    /// `reply` at once; in cluster mode every node's figures too, read from Redis by the
    /// broker and answered on `nodes` (channels of one; the asker waits a bounded time and
    /// may be gone).
    AdminView { reply: Sender<AdminView>, nodes: Option<Sender<NodesView>> },
    /// A single node with `state_dir`, a shard at the end of its shutdown: its recoverable
    /// sessions, for the state the hub writes (the hub adds what its index knows of them).
    Sessions(Vec<KeptSession>),
    /// A single node with `state_dir`, a shard shutting down: only kept sessions are left
    /// there, and it sends nothing more until [`ShardMsg::HandOver`].
    Quiet,
    /// The node is shutting down (sent before the shards are told): it adopts nothing more.
    Stopping,
    /// Every shard has stopped: the hub exits (and with it the broker).
    Stop,
}

/// A session handed over by a stopping node: its old clientId and what its shard held.
#[derive(Debug)]
pub struct Adoption {
    pub id: ClientRef,
    pub kept: KeptSession,
}

/// A recoverable session kept across a restart (single node, `state_dir`): what its shard holds
/// of it — written at shutdown (`Command::Sessions`), and handed back to its shard at the next
/// start (`crate::restore`), which puts it in its slot, detached.
pub struct KeptSession {
    pub conn: ConnId,
    pub secret: crate::recovery::Secret,
    pub system: Box<str>,
    /// Unix time (ms) it lost its connection.
    pub detached_ms: u64,
    /// The address it counts against (`max_connections_per_ip`), if one is counted.
    pub ip: Option<std::net::IpAddr>,
    /// What `recovery::Unacked::saved` says of its frames: the acknowledged frame before them,
    /// the frames, and whether a resume from before the first can be served.
    pub acked: Option<Frame>,
    pub frames: Vec<Frame>,
    pub from_start: bool,
}

impl std::fmt::Debug for KeptSession {
    /// Never shows the secret (tokens are never logged).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeptSession")
            .field("conn", &self.conn)
            .field("system", &self.system)
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

/// What the admin page shows of the hub's index: the systems with the most clients here
/// (at most [`AdminView::SYSTEMS`]), each with its largest groups (at most
/// [`AdminView::GROUPS`]). Counts are this node's (in cluster mode: its own clients).
#[derive(Debug, Default)]
pub struct AdminView {
    /// How many systems there are in all (the list may hold fewer).
    pub systems_total: usize,
    pub systems: Vec<SystemView>,
}

/// Cluster mode: every node's figures as it last wrote them to Redis with its heartbeat
/// (node name, JSON object text).
pub type NodesView = Vec<(String, String)>;

impl AdminView {
    pub const SYSTEMS: usize = 20;
    pub const GROUPS: usize = 5;
}

/// One system in an [`AdminView`].
#[derive(Debug)]
pub struct SystemView {
    pub name: Arc<str>,
    pub clients: usize,
    pub users: usize,
    pub groups: usize,
    /// (group, members here), largest first.
    pub largest: Vec<(Arc<str>, usize)>,
}

/// A resume request with its socket, on its way from the shard that accepted the connection
/// to the shard that holds the session.
pub struct Resume {
    pub sock: mio::net::TcpStream,
    /// The 101 response, not sent yet (the session's shard sends it, then the connect frame).
    pub accept: Bytes,
    /// What the 101 agreed for permessage-deflate (`Conn::deflate`).
    pub deflate: u8,
    /// The socket's TLS session (TLS port only).
    pub tls: Option<Box<crate::tls::TlsConn>>,
    pub system: Box<str>,
    /// The session the token names (on this node).
    pub session: ConnId,
    pub secret: crate::recovery::Secret,
    /// The messageId of the last frame the client processed (`None`: none after connecting).
    /// (A client sends nothing after its upgrade request until it has the 101, RFC 6455 §4.1,
    /// so there is no input to carry along.)
    pub last: Option<Box<str>>,
    /// What the connect brought for a fresh session, should the resume fail.
    pub admit: crate::auth::Admit,
}

impl std::fmt::Debug for Resume {
    /// Never shows the secret (tokens are never logged).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume").field("session", &self.session).field("system", &self.system).finish_non_exhaustive()
    }
}

/// Where an API answer goes: an HTTP connection of this node, or another node that
/// forwarded the call (cluster mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyTo {
    Local(ConnId),
    Remote { node: u32, corr: u64 },
}

/// What `send_to_user` / `close_user` do to each connection of the user.
#[derive(Debug)]
pub enum UserCall {
    Send { frame: Frame, message_id: Box<str> },
    Close { notify: bool },
}

/// The API operations that need the index. Frames are already built by the shard.
#[derive(Debug)]
pub enum Op {
    Register,
    /// `send_to_client` (`strict`: 404 when the one client is unknown) and `send_to_clients`.
    SendToClients {
        clients: Vec<ClientRef>,
        frame: Frame,
        message_id: Box<str>,
        strict: bool,
    },
    SendToGroup {
        group: Box<str>,
        frame: Frame,
        message_id: Box<str>,
    },
    SendToSystem {
        frame: Frame,
        message_id: Box<str>,
    },
    /// `user_id`: `None` when the call named none (the connection's user, if it has one).
    Bind {
        client: ClientRef,
        group: Box<str>,
        user_id: Option<Box<str>>,
        extend: Box<str>,
        notify: bool,
    },
    Unbind {
        client: ClientRef,
        group: Box<str>,
        notify: bool,
    },
    /// `with_users`: each member's `userId` and `extend` too.
    OnlineList {
        group: Box<str>,
        with_users: bool,
    },
    /// `send_to_user`: every connection of the user in the system.
    SendToUser {
        user: Box<str>,
        frame: Frame,
        message_id: Box<str>,
    },
    /// `close_user`: each connection closed as by `close_client`, its session ended.
    CloseUser {
        user: Box<str>,
        notify: bool,
    },
    /// `get_user_presence` (at most [`crate::protocol::api::MAX_USER_IDS`] users, each once).
    UserPresence {
        users: Vec<Box<str>>,
    },
    /// `get_group_history`: the group's last `limit` messages.
    GroupHistory {
        group: Box<str>,
        limit: usize,
    },
    /// `get_all_groups`; `page`: the caller asked for a page.
    AllGroups {
        page: Option<crate::protocol::api::Page>,
    },
    Close {
        client: ClientRef,
        notify: bool,
    },
}

impl Op {
    /// Whether its answer tells the caller's shard that the system is registered (so the
    /// shard may answer later sends to it at once).
    pub fn teaches_system(&self) -> bool {
        matches!(
            self,
            Op::Register
                | Op::SendToGroup { .. }
                | Op::SendToSystem { .. }
                | Op::SendToClients { .. }
                | Op::SendToUser { .. }
        )
    }
}

/// Sends on a channel to a shard without ever losing the message: when the channel is full
/// the shard may be asleep, so it is woken before the sender waits for room (a shard always
/// drains its channels once awake).
pub fn send_to_shard<T>(tx: &Sender<T>, waker: &mio::Waker, msg: T) {
    match tx.try_send(msg) {
        Ok(()) => {}
        Err(TrySendError::Full(msg)) => {
            let _ = waker.wake();
            let _ = tx.send(msg);
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}

/// Shards to wake once at the end of a batch (the hub's and the broker's): one wake-up per
/// shard per batch, however many messages it got.
pub struct Wakes {
    wakers: Vec<Arc<mio::Waker>>,
    pending: Vec<bool>,
}

impl Wakes {
    pub fn new(wakers: Vec<Arc<mio::Waker>>) -> Self {
        let n = wakers.len();
        Wakes { wakers, pending: vec![false; n] }
    }

    /// `shard` got something this batch.
    pub fn mark(&mut self, shard: usize) {
        if let Some(p) = self.pending.get_mut(shard) {
            *p = true;
        }
    }

    /// Wakes every shard marked since the last call.
    pub fn wake(&mut self) {
        for (p, w) in self.pending.iter_mut().zip(&self.wakers) {
            if std::mem::take(p) {
                let _ = w.wake();
            }
        }
    }
}

/// Hub → shard.
#[derive(Debug)]
pub enum ShardMsg {
    /// Queue `frame` on every live target of this shard.
    Deliver { frame: Frame, zipped: Zipped, targets: Arc<[Target]> },
    /// Queue `frame` on one target.
    DeliverOne { target: Target, frame: Frame, zipped: Zipped },
    /// The answer to [`Command::Connect`]: `Ok(())` sends the connect frame, `Err(msg)`
    /// sends the -1001 error frame with `msg` and closes.
    /// `system`: the system's name when the shard may welcome its next clients itself.
    Welcome { to: Target, result: Result<(), String>, system: Option<(Arc<str>, u32)> },
    /// Close the connection with a close frame (close_client).
    Close { target: Target, code: u16, reason: &'static str },
    /// A resume for a session of this shard (see [`Command::Resume`]).
    Resume(Box<Resume>),
    /// A frame for one client that is not a push frame (an error answer to its publish): not
    /// kept for session recovery.
    Tell { target: Target, frame: Frame },
    /// Cluster mode: a relay message for this shard.
    FromNode(crate::protocol::relay::Msg),
    /// Cluster mode: a node is gone; relays with it end.
    NodeGone(u32),
    /// Cluster mode: frames for these targets were lost on the way from Redis: their
    /// sessions are not recoverable from before now.
    Lost { targets: Arc<[Target]> },
    /// Cluster mode: so much was lost that every session of this shard is concerned.
    LostAll,
    /// Cluster mode: a relay message for this connection was lost: it is dropped (as a
    /// network loss) so its client resumes and gets what it missed from the session's owner.
    RelayLost(Target),
    /// Graceful shutdown: close 1001 to everyone, flush, exit.
    Shutdown,
    /// Sessions kept (a single node with `state_dir`, or a cluster node's hand-off): every
    /// shard is quiet ([`Command::Quiet`]) and the hub has handled all they sent: hand the
    /// kept sessions over and exit.
    HandOver,
    /// Cluster mode: sessions another node handed over, to hold here, detached, under their
    /// old clientIds (answered with [`Command::Adopted`]).
    Adopt { from: u32, sessions: Vec<Adoption> },
}

/// Hub (or broker, subscriber) → shard, on the shard's reply channel: the answer to an API
/// call (HTTP status and JSON body). `known_system` names the caller's system when it is
/// registered (single node), so the shard can answer later sends to it itself (systems are never
/// unregistered). Answers travel apart from [`ShardMsg`] so a shard can write them in the
/// middle of a long flush.
#[derive(Debug)]
pub struct Reply {
    pub to: Target,
    pub status: u16,
    pub body: Bytes,
    pub known_system: Option<KnownSystem>,
}

/// A system a single node's hub confirmed registered, and its index there (see
/// [`SystemRef`]); cluster mode never sends one.
pub type KnownSystem = (Box<str>, u32);
