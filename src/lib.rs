//! # roomcast — a realtime WebSocket push server
//!
//! Browsers and devices hold WebSocket connections (`GET /ws?systemId=S`); business back ends
//! steer them over a small JSON HTTP API (`POST /api/<name>`), wire-compatible with the Go
//! servers `woodylan/go-websocket` and `goravel-socket` (see `README.md` and `docs/API.md`).
//!
//! ## Threads and who owns what
//!
//! ```text
//!  TCP ─► shard 0..N  (one mio loop per core, own SO_REUSEPORT listener, Slab<Conn>)
//!          │  HTTP (httparse, keep-alive) ─upgrade─► WebSocket (frames in/out)
//!          │  POST /api/*: JWT check, JSON parse, the outgoing frame is built ONCE here
//!          │  GET /health, /metrics: answered locally from per-shard atomics
//!          │
//!          │ Command (bounded crossbeam channel; full ⇒ HTTP 503)
//!          ▼
//!         hub  (one thread: systems, clients, groups; per-shard member snapshots)
//!          │ ShardMsg (bounded channel per shard + mio::Waker, one wake per batch)
//!          ▼
//!         shard: queue the shared frame on each target connection, writev once per turn
//!
//!  cluster mode only (--redis):
//!         hub ──BrokerCmd──► broker thread ── one Redis pipeline per batch ──► Redis
//!         hub ◄──Command──── broker (answers: unbounded) / subscriber thread (frames: bounded,
//!                            never waits) ◄── pub/sub (groups, systems, node channel)
//! ```
//!
//! In cluster mode the hub keeps only this node's clients; registered systems, presence and
//! the order of group frames live in Redis ([`cluster`], `docs/CLUSTER.md`). Neither a shard
//! nor the hub ever waits on Redis.
//!
//! ## Module map (dependencies point down: no two modules name each other, `tests/layers.rs`)
//!
//! | module | owner / role |
//! | --- | --- |
//! | [`config`] | CLI, env vars and TOML file merged into one [`config::Config`] |
//! | [`server`] | starts shards and hub, owns shutdown ([`server::Server`]) |
//! | [`shard`] | the per-core event loop: sockets, HTTP, WebSocket, output queues, heartbeats; every phase change of a connection, its deadlines and what each event does to it (`shard/lifecycle.rs`, `shard/lifecycle/`); it reads API bodies with the hub's endpoint table ([`hub::endpoints`]); compression (`shard/zip.rs`); per-address bounds (`shard/per_ip.rs`) |
//! | [`hub`] | the group index: the only place membership lives; fans out to shards. The API, one file per endpoint (`hub/endpoints/`: its row, how its body is read — run by the shard —, its operation in both modes, its Redis read, its OpenAPI part), the operations they share (`hub/ops.rs`) over one backend seam (`hub/backend.rs`), one implementation per mode side by side (`hub/single.rs`, `hub/cluster.rs`) |
//! | [`cluster`] | cluster mode: the broker and subscriber threads, Redis keys (under `--redis-prefix`), the API reads answered from Redis ([`cluster::read::Read`], each written beside its endpoint), the wire format between nodes, positions in each channel's stream and the losses they reveal (`cluster/stream.rs`, [`cluster::Losses`]), finding the master (`redis://`, `rediss://`, Sentinel) and the pub/sub connection (plain or TLS) |
//! | [`msg`] | **the contract between shards and hub** (it names no thread's module: `tests/layers.rs`): `Command` (shard → hub), `ShardMsg` and `Reply` (hub → shard), `send_to_shard`/`Wakes`; cluster mode's own messages (`BrokerCmd`, `Replies`, `SubEvent`) are in [`cluster`] |
//! | [`protocol`] | pure code: HTTP request parsing, WebSocket frame codec, permessage-deflate (negotiation, compress/inflate), allowed origins, API JSON and typed API errors, the byte codec between nodes (`protocol/codec.rs`) and the relay messages of sessions resumed through another node (`protocol/relay.rs`); it names no module above it (`tests/layers.rs`) |
//! | [`auth`] | JWT verification (HS256 / RS256 / ES256) and minting: API tokens (system, operator) and connect tokens (`/ws` only: user and groups, [`auth::Grant`]) |
//! | [`recovery`] | session recovery: what a recoverable session keeps (its unacknowledged frames by reference, resume token), pure; the shard's side is `shard/resume.rs` |
//! | [`ids`] | `ConnId` (shard, slot, generation) and the clientId / messageId encodings |
//! | [`aliases`] | cluster mode: where the clientIds of a stopped node live now (moves of generation ranges to an adopter; the adopter's table of adopted sessions), one table per node read by every thread |
//! | [`handoff`] | cluster mode: the messages of a SIGTERMed node's hand-off of its sessions to a live node (pure; the hub's side is `hub/handoff.rs`, the broker's `cluster/broker/adopt.rs`, the shards' `shard/restart.rs`) |
//! | [`tls`] | TLS termination: certificate loading, reload on SIGHUP, the rustls configuration, one connection's state ([`tls::TlsConn`], rustls's unbuffered API, no sockets); the shard's socket side is `shard/tls.rs` |
//! | [`admin`] | `admin_listen`: `/metrics`, `/health` and the admin page (`admin.html`, polling `/admin/stats`: the metrics, the hub's [`msg::AdminView`], in cluster mode every node's figures from Redis) without a token on an internal address (a thread per connection, bounded, one deadline per request) |
//! | [`state`] | a single node's `state_dir`: the registered systems, the node id and (at a graceful shutdown) the recoverable sessions kept across restarts (one versioned file, written atomically) |
//! | [`restore`] | what a start makes of that state: systems to register, the node id to take, each kept session checked whole and handed to its shard (`shard/restart.rs`, which also keeps them at shutdown) and to the hub's index (`hub/keep.rs`) |
//! | [`metrics`] | per-shard atomic counters, summed when `/metrics` is read |
//! | [`webhooks`] | presence webhooks: events recorded by the hub (cluster: the broker) into one bounded queue, posted by a sender thread of their own (signed with a timestamp, never redirected, drops told) |
//!
//! ## Invariants (each is relied on where a comment says so)
//!
//! 1. A connection is read and written only by the shard that accepted it; hub state only by
//!    the hub thread. No lock on any per-message path of a single node (cluster mode: a
//!    forwarded call takes the `Pending` mutex once when sent and once when answered; once a
//!    node has learnt of a hand-off, reading a clientId takes the `aliases` read lock;
//!    per-address bounds, when set, take one mutex at accept, handshake and close).
//! 2. One outgoing message is serialized exactly once into an immutable [`bytes::Bytes`]
//!    (WebSocket header + JSON) shared by every recipient on every shard (inside a shard,
//!    through a shard-local `Rc`, so recipients never contend on one atomic refcount).
//!    With `compression`, its compressed form is made at most once too, by the first shard
//!    that needs it, into a cell the hub attached to the message (`msg::Zipped`).
//! 3. A broadcast costs the hub O(shards): it hands each shard an `Arc` snapshot of that
//!    shard's members, rebuilt only after membership changed.
//! 4. Per-connection output is a queue of shared buffers flushed with `writev` (`send` for a
//!    lone buffer) once per loop turn, bounded by a hard and a soft (timed) limit; a slow
//!    consumer is closed with 1008.
//! 5. References to a connection from outside its shard carry a generation; a message for a
//!    stale (slot, generation) is dropped.
//! 6. Every queue between threads is bounded; a full hub queue answers HTTP 503. (Cluster
//!    mode: hub → broker is unbounded so a departure is never lost, but API calls answer 503
//!    once `hub_queue` commands wait there; broker → hub is unbounded too, no more than what
//!    the hub asked; Redis → hub is bounded, and what finds it full is dropped, counted and
//!    makes the sessions that missed it unrecoverable from before it: `cluster::Losses`.)
//!    The broker never waits on the hub; the subscriber at most `redis_max_stall` (100 ms) in
//!    any second.
//! 7. An idle connection keeps no read buffer (reads go to a per-shard scratch buffer).
//! 8. A client's connect frame leaves only after its `Command::Connect` is in the hub's queue
//!    (one FIFO for all shards): whatever its back end does with the clientId reaches the hub
//!    later, so a bind or send can never miss it. Single node, system known to the shard: the
//!    shard sends the frame itself (in the 101's buffer; the Connect names the system by the
//!    hub's index, `msg::SystemRef`, and leaves with the loop turn's other connects as one
//!    `ConnectMany`, before any socket is written: `shard/to_hub.rs`); otherwise after the
//!    hub's `Welcome` (cluster mode: once the node is subscribed to the system's channel).
//! 9. Each phase gauge (`ws_clients`, `recovery_edges`, `recovery_relayed`,
//!    `recovery_sessions`) is the count of the shard's connections in its phases: only
//!    `Shard::set_state` and `Shard::remove_conn` move them, and debug builds check the counts
//!    at every sweep.
//! 10. A connection changes phase only by a move in the table of `shard/lifecycle.rs`
//!     (`lifecycle::legal`): nothing leaves `Closing` but the slab, a detached session is never
//!     closed as if it had a socket; debug builds assert it at every `Shard::set_state`.
//! 11. A connection ends, closes or detaches only through `Shard::on_event`, by the actions
//!     `lifecycle::react` returns for its phase and the event; the slot is freed by the last
//!     of them (asserted in debug builds).

pub mod admin;
pub mod aliases;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod handoff;
pub mod hub;
pub mod ids;
pub mod metrics;
pub mod msg;
pub mod protocol;
pub mod recovery;
pub mod restore;
pub mod server;
pub mod shard;
pub mod state;
pub mod tls;
pub mod webhooks;
