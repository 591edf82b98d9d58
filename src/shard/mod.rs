//! A shard: one thread, one `mio::Poll`, its own SO_REUSEPORT listener, a `Slab<Conn>`.
//!
//! The loop's contract (as mio's): sockets are edge-triggered, so every read drains until
//! `WouldBlock`; spurious events are normal; unknown tokens are ignored. One turn is:
//! poll → read ready sockets (parsing requests and frames as they come) → drain the hub's
//! messages (queueing shared frames) → flush every connection with new output once with
//! `writev` → close what was marked for closing → periodic sweep (heartbeats, idle and
//! soft-limit checks). Nothing on this thread blocks: the hub is reached with `try_send`.
//! A turn that accepted connections ends with one `sched_yield` (see [`Shard::run`]).
//!
//! Invariant 1 lives here: only this thread touches these sockets.
//!
//! Files: `mod.rs` the loop, accepts and the input path; `http.rs` requests and the API;
//! `ws.rs` WebSocket frames and client commands; `output.rs` queues, writes and closing;
//! `inbox.rs` what the hub sends; `to_hub.rs` what goes to the hub (in order; a turn's
//! connects as one command); `sweep.rs` heartbeats, timeouts and shutdown; `conn.rs` the
//! connection and its output queue; `lifecycle.rs` every change of a connection's phase (the
//! only place that keeps the per-phase gauges, checked against the slab in debug builds), its
//! deadlines, and (`lifecycle/react.rs`, `lifecycle/apply.rs`) what each event does to it:
//! the files where events arrive only name them (`Shard::on_event`); `resume.rs` session
//! recovery, `restart.rs` sessions kept across a restart (`state_dir`).

mod conn;
mod http;
mod inbox;
mod lifecycle;
mod output;
pub mod per_ip;
mod refusals;
mod relay;
mod restart;
mod resume;
mod sweep;
#[cfg(test)]
mod tests;
pub mod tls;
mod to_hub;
mod ws;
mod zip;

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

pub use conn::{Buf, CloseKind, Conn, OutQueue, State, MAX_IOV};
pub use sweep::LogLimiter;

use crate::auth::Verifier;
use crate::config::Config;
use crate::ids::{self, ConnId, Gen};
use crate::metrics::{self, HubStats, ShardStats};
use crate::msg::{Command, Reply, ShardMsg, Target};
use crate::protocol::ws as wsp;
use lifecycle::react::Event;

/// Token of the listening socket.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the hub's waker.
pub const WAKER: Token = Token(usize::MAX - 2);

/// Per-shard read buffer: every socket is read into it (invariant 7).
const SCRATCH: usize = 64 * 1024;
/// Ciphertext read from a TLS socket at once. Its plaintext, with that of a partial record kept
/// from before, is decrypted into the scratch buffer (plaintext is never longer than its
/// records), so the two must fit there: checked when this compiles.
const TLS_IN: usize = SCRATCH / 2;
const _: () = assert!(TLS_IN + tls::MAX_RECORD <= SCRATCH, "TLS input and one kept record must fit in SCRATCH");
/// Hub messages handled per loop turn before flushing: output is written while it is
/// produced instead of piling up in every connection's queue behind undrained work (a
/// notice storm otherwise queued thousands of frames per member before the first write).
const HUB_MSGS_PER_TURN: usize = 256;
/// Reads of one socket per loop turn before others get their turn (fairness).
const READS_PER_TURN: usize = 16;
/// How long a closing connection may take to flush and see the peer's FIN.
const CLOSE_GRACE_MS: u32 = 10_000;

/// What every shard shares (read-only, or atomics).
pub struct Shared {
    pub cfg: Arc<Config>,
    pub verifier: Verifier,
    pub stats: Vec<metrics::PerShard>,
    pub hub_stats: Arc<HubStats>,
    /// Open TCP connections over all shards, against `max_connections`.
    pub connections: AtomicUsize,
    /// Sessions kept for recovery without a connection, over all shards: they count against
    /// `max_connections` too when a fresh session asks (`Shard::fresh_fits`).
    pub kept: AtomicUsize,
    /// Per source address counts, when a per-address bound is set.
    pub per_ip: Option<per_ip::PerIp>,
    /// TLS termination (`tls_cert`): every connection speaks TLS.
    pub tls: Option<crate::tls::Tls>,
    /// Other nodes exist (cluster mode): a clientId or a session token naming another node
    /// names something real, and `/health` reports the cluster. The shard's one view of the
    /// mode, set at start; what else differs per mode the hub decides (`hub::backend`).
    pub peers: bool,
    /// Where moved clientIds are (cluster mode's hand-off; empty otherwise).
    pub aliases: Arc<crate::aliases::Aliases>,
}

impl Shared {
    /// A counted socket is going (still open): it no longer counts against `max_connections`
    /// nor against its address.
    pub(crate) fn socket_gone(&self, sock: &TcpStream) {
        self.connections.fetch_sub(1, Relaxed);
        if let Some(p) = &self.per_ip {
            p.release(std::os::fd::AsRawFd::as_raw_fd(sock));
        }
    }
}

/// One event loop.
pub struct Shard {
    id: u16,
    shared: Arc<Shared>,
    poll: Poll,
    listener: Option<TcpListener>,
    conns: Slab<Conn>,
    rx: Receiver<ShardMsg>,
    /// API answers from the hub (checked every turn and during long flushes).
    replies: Receiver<Reply>,
    hub: Sender<Command>,
    /// Connects this shard welcomed this turn, sent before anything else ([`to_hub`]).
    pending_connects: Vec<(ConnId, u32)>,
    /// Disconnects that found the hub queue full; retried every turn, in order.
    backlog: VecDeque<Command>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    /// Connections to drop at the end of the turn, by exact generation: a slot freed and
    /// reused within the turn must not take its predecessor's close.
    to_close: Vec<Target>,
    /// Connections to read again next turn: read budget used up, or reading was paused
    /// (API call at the hub, HTTP output over the limit) and may resume.
    read_again: Vec<usize>,
    /// The order sessions were kept here without a connection (detached) in
    /// (oldest first; entries of sessions resumed or ended since are skipped), for
    /// `max_recovery_sessions`.
    kept_order: VecDeque<(u32, u64)>,
    /// The last kept period handed out (`Session::kept_seq`).
    kept_next: u64,
    next_gen: Gen,
    epoch: Instant,
    ping: Buf,
    accept_paused: bool,
    shutdown_deadline: Option<u32>,
    /// A single node with `state_dir`: a shutdown keeps the recoverable sessions for the next
    /// start (`restart.rs`).
    keeps_sessions: bool,
    /// Keeping sessions, shutting down: this shard told the hub it is quiet (see
    /// [`Shard::shutdown_done`]).
    quiet: bool,
    /// The kept sessions were handed over: the shard exits.
    handed_over: bool,
    logs: LogLimiter,
    /// When each refusal cause was last logged for each source address.
    refusals: refusals::Refusals,
    /// Frames queued since the counter was last published (one atomic add per turn).
    queued_frames: u64,
    /// Of them, push messages (sends, notices) queued to WebSocket clients, published alike.
    queued_messages: u64,
    /// Systems a single node's hub confirmed registered (`Backend::shards_answer`), with
    /// its index of each: sends to them are answered here at once, and connects name them by
    /// [`crate::msg::SystemRef::Index`]. Always empty in cluster mode.
    known_systems: HashMap<Box<str>, u32>,
    /// permessage-deflate codecs, when `compression` is on.
    zip: Option<Box<zip::Zip>>,
    /// TLS: ciphertext read (half the scratch buffer, so its plaintext always fits there),
    /// and plaintext / ciphertext staging for writes. Empty without TLS.
    tls_in: Vec<u8>,
    tls_plain: Vec<u8>,
    tls_out: Vec<u8>,
}

impl Shard {
    pub fn new(
        id: u16,
        shared: Arc<Shared>,
        poll: Poll,
        mut listener: TcpListener,
        (rx, replies): (Receiver<ShardMsg>, Receiver<Reply>),
        hub: Sender<Command>,
        kept: Vec<crate::msg::KeptSession>,
    ) -> io::Result<Self> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        let keeps_sessions = shared.cfg.state_dir.is_some() || shared.peers;
        let zip = shared.cfg.compression.then(|| zip::Zip::new(shared.cfg.compression_level));
        let tls_in = if shared.tls.is_some() { vec![0; TLS_IN] } else { Vec::new() };
        let mut shard = Shard {
            id,
            shared,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            rx,
            replies,
            hub,
            pending_connects: Vec::new(),
            backlog: VecDeque::new(),
            scratch: vec![0; SCRATCH],
            dirty: Vec::new(),
            to_close: Vec::new(),
            read_again: Vec::new(),
            kept_order: VecDeque::new(),
            kept_next: 0,
            next_gen: ids::first_gen_now(),
            epoch: Instant::now(),
            ping: Buf::new(wsp::frame(wsp::OP_PING, b"")),
            accept_paused: false,
            shutdown_deadline: None,
            keeps_sessions,
            quiet: false,
            handed_over: false,
            logs: LogLimiter::default(),
            refusals: refusals::Refusals::default(),
            queued_frames: 0,
            queued_messages: 0,
            known_systems: HashMap::new(),
            zip,
            tls_in,
            tls_plain: Vec::new(),
            tls_out: Vec::new(),
        };
        shard.restore(kept);
        Ok(shard)
    }

    fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.id as usize]
    }

    /// True if a limit-related log line may be written now (see [`LogLimiter`]).
    fn log_ok(&mut self) -> bool {
        let now = self.now();
        self.logs.allow(now)
    }

    /// Logs the refusal of the request on `slot` (`what`: what was refused, `detail`: the
    /// message its client got), once per cause and source address per interval
    /// ([`refusals`]).
    fn log_refusal(&mut self, slot: usize, cause: refusals::Cause, what: &str, detail: &str) {
        let ip = self.conns.get(slot).and_then(|c| c.sock.as_ref()).and_then(|s| s.peer_addr().ok()).map(|a| a.ip());
        let now = self.now();
        if self.refusals.allow(now, cause, ip) {
            let ip = ip.map_or_else(|| "?".to_string(), |ip| ip.to_string());
            tracing::info!(shard = self.id, %ip, "{what} refused: {detail}; {}", cause.hint());
        }
    }

    fn cfg(&self) -> &Config {
        &self.shared.cfg
    }

    /// Shard clock: milliseconds since start, wrapping (compare with `wrapping_sub`).
    fn now(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    fn tick_every(&self) -> Duration {
        let c = self.cfg();
        let t = (c.ping_interval / 2).min(c.idle_timeout / 4).min(c.request_timeout / 4).min(Duration::from_secs(1));
        t.max(Duration::from_millis(10))
    }

    /// Runs the loop until shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let tick = self.tick_every();
        let mut next_tick = Instant::now() + tick;
        loop {
            let timeout = next_tick.saturating_duration_since(Instant::now());
            let timeout = if !self.read_again.is_empty() || !self.rx.is_empty() || !self.replies.is_empty() {
                Duration::ZERO
            } else if self.backlog.is_empty() {
                timeout
            } else {
                timeout.min(Duration::from_millis(1))
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(shard = self.id, "poll failed: {e}");
                    return;
                }
            }
            let mut accepted = 0;
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => accepted += self.accept(),
                    WAKER => {}
                    Token(slot) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            self.on_readable(slot);
                        }
                        if ev.is_writable() {
                            self.mark_dirty(slot);
                        }
                    }
                }
            }
            self.read_queued();
            self.drain_hub();
            self.flush_dirty();
            self.close_marked();
            // Connections come in clumps. A turn that took some (its answers already written)
            // gives the core away once before polling again: if other threads are runnable
            // on it (the hub, other processes), the rest of the clump queues up meanwhile and
            // the next turn takes it together instead of one sleep and wake-up per
            // connection; if none are, the call returns at once. Measured with the load
            // generator on the same cores: 0.89x CPU per connection, handshake p99 1.18x.
            // Turns without accepts never yield: a yield in every turn put 10–25 ms on the
            // unicast p99.
            if accepted > 0 {
                std::thread::yield_now();
            }
            // Quiet (shutting down, only kept sessions left): nothing may end or change now.
            if Instant::now() >= next_tick && !self.quiet {
                self.sweep();
                next_tick = Instant::now() + tick;
            }
            if self.shutdown_done() {
                return;
            }
        }
    }

    /// Accepts until `WouldBlock`; how many connections it took.
    fn accept(&mut self) -> usize {
        let mut n = 0;
        if self.shutdown_deadline.is_some() {
            return n;
        }
        loop {
            let Some(listener) = &self.listener else { return n };
            match listener.accept() {
                Ok((sock, peer)) => {
                    n += 1;
                    self.admit(sock, peer.ip());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE: pause; the sweep retries (edge-triggered: no new event
                    // would come for connections already waiting).
                    if !self.accept_paused {
                        tracing::warn!(shard = self.id, "accept failed, pausing accepts: {e}");
                    }
                    self.accept_paused = true;
                    return n;
                }
            }
        }
    }

    /// A new TCP connection: counted against `max_connections` (503 beyond) and against its
    /// address's `max_connections_per_ip` (429 beyond), then adopted.
    fn admit(&mut self, mut sock: TcpStream, ip: std::net::IpAddr) {
        let shared = self.shared.clone();
        let refused = if shared.connections.fetch_add(1, Relaxed) >= shared.cfg.max_connections {
            shared.connections.fetch_sub(1, Relaxed);
            metrics::add(&self.stats().refused_full_total, 1);
            Some((503, "server is full: max_connections reached"))
        } else if shared.per_ip.as_ref().is_some_and(|p| !p.admit(std::os::fd::AsRawFd::as_raw_fd(&sock), ip)) {
            shared.connections.fetch_sub(1, Relaxed);
            metrics::add(&self.stats().refused_per_ip_total, 1);
            Some((429, "too many connections from this address: max_connections_per_ip reached"))
        } else {
            None
        };
        if let Some((status, why)) = refused {
            if self.log_ok() {
                tracing::warn!(shard = self.id, %ip, "connection refused ({status}): {why}");
            }
            // (On a TLS port there is no session to answer in: the close says it.)
            if shared.tls.is_none() {
                let body = crate::protocol::api::err_body(why);
                let resp = crate::protocol::http::json(status, &body, false);
                let _ = io::Write::write(&mut sock, &resp);
            }
            return;
        }
        // Linux: inherited from the listener (one setsockopt fewer per connection).
        #[cfg(not(target_os = "linux"))]
        let _ = sock.set_nodelay(true);
        metrics::add(&self.stats().accepted_total, 1);
        let tls = match &shared.tls {
            None => None,
            Some(t) => match tls::TlsConn::new(t.config.clone(), self.now()) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("TLS session: {e}");
                    shared.socket_gone(&sock);
                    return;
                }
            },
        };
        // Linux (TCP_DEFER_ACCEPT on the listener): its request is already here; read it
        // now rather than after another turn of the loop.
        if let Some(slot) = self.adopt(sock, tls) {
            if cfg!(target_os = "linux") {
                self.read_first(slot);
            }
        }
    }

    /// The first read of a new connection. A read that does not fill the buffer emptied the
    /// socket, and anything arriving later raises a new edge, so the read that would only
    /// hear `WouldBlock` is skipped (one syscall per connection). Only here: on a busy
    /// connection that extra read is what lets a caller's next request join the same hub
    /// batch (stopping at short reads everywhere cost broadcast a third of its throughput).
    fn read_first(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.tls.is_some() {
            return self.on_readable(slot);
        }
        let Some(sock) = conn.sock.as_mut() else { return };
        match sock.read(&mut self.scratch) {
            Ok(n) if n > 0 && n < self.scratch.len() => {
                let now = self.now();
                self.conns[slot].last_seen = now;
                self.feed(slot, n);
            }
            Ok(n) if n > 0 => {
                self.conns[slot].last_seen = self.now();
                self.feed(slot, n);
                self.read_later(slot);
            }
            // The end, an error, or nothing yet: the general path says which.
            _ => self.on_readable(slot),
        }
    }

    /// Puts a socket (new, or handed over by another shard for a resume; already counted in
    /// `connections`) into the slab as an HTTP connection; its slot, or `None` if it could not
    /// be registered (the socket is then uncounted and closed).
    pub(super) fn adopt(&mut self, mut sock: TcpStream, tls: Option<Box<tls::TlsConn>>) -> Option<usize> {
        let now = self.now();
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        if slot >= ids::SLOTS {
            // A clientId has room for 2^24 slots per shard (far above any open-file limit).
            self.shared.socket_gone(&sock);
            return None;
        }
        // Edge-triggered, readable and writable registered once: no re-registration syscalls.
        if let Err(e) = self.poll.registry().register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!("register failed: {e}");
            self.shared.socket_gone(&sock);
            return None;
        }
        let gen = self.next_gen;
        self.next_gen = ids::next_gen(gen);
        let mut conn = Conn::new(sock, gen, now);
        conn.tls = tls;
        entry.insert(conn);
        metrics::add(&self.stats().connections, 1);
        Some(slot)
    }

    fn conn_id(&self, slot: usize) -> ConnId {
        ConnId { shard: self.id, slot: slot as u32, gen: self.conns[slot].gen }
    }

    /// The live connection at `t`, if its generation still matches (invariant 5).
    fn conn_at(&mut self, t: Target) -> Option<&mut Conn> {
        self.conns.get_mut(t.slot as usize).filter(|c| c.gen == t.gen)
    }

    /// True while this connection's input must wait: an API call is at the hub, or HTTP
    /// responses are piling up unread (which bounds a pipelining client's output).
    fn input_paused(&self, conn: &Conn) -> bool {
        match conn.state {
            State::Http { awaiting, .. } => awaiting || conn.out.cost() > self.shared.cfg.output_hard_limit,
            _ => false,
        }
    }

    /// Reads until `WouldBlock` (edge-triggered), at most [`READS_PER_TURN`] times; feeds
    /// each chunk to the parser.
    fn on_readable(&mut self, slot: usize) {
        // Reads go into the scratch buffer, which `feed` holds while it parses: a read from
        // inside the parser would see an empty buffer and take it for EOF.
        debug_assert!(!self.scratch.is_empty(), "on_readable re-entered from inside feed");
        if self.conns.get(slot).is_some_and(|c| c.tls.is_some()) {
            return self.on_readable_tls(slot, READS_PER_TURN);
        }
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get(slot) else { return };
            if self.input_paused(conn) {
                self.conns[slot].deferred_read = true;
                return;
            }
            let conn = &mut self.conns[slot];
            let Some(sock) = conn.sock.as_mut() else { return };
            match sock.read(&mut self.scratch) {
                Ok(0) => {
                    // (A half-closed HTTP client still gets what it asked for, then the close.)
                    return self.on_event(slot, Event::Eof);
                }
                Ok(n) => {
                    let now = self.now();
                    let conn = &mut self.conns[slot];
                    conn.last_seen = now;
                    if conn.state.is_closing() {
                        continue; // discard input while closing
                    }
                    // (Stopping at a short read saves the read that hears `WouldBlock`, but
                    // measured it cost broadcast and joinstorm a third of their throughput:
                    // the next turn's check of a paused connection sets `deferred_read`,
                    // which lets its next request join the same hub batch.)
                    self.feed(slot, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.on_event(slot, Event::SocketLost),
            }
        }
        // Budget used up: the socket may hold more, and no new edge will announce it.
        self.read_later(slot);
    }

    /// Queues `slot` to be resumed (parse what is buffered, then read) at the next
    /// [`Shard::read_queued`]; once, however often it is asked.
    pub(super) fn read_later(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !std::mem::replace(&mut c.read_queued, true) {
                self.read_again.push(slot);
            }
        }
    }

    /// Resumes every connection queued by [`Shard::read_later`].
    fn read_queued(&mut self) {
        for slot in std::mem::take(&mut self.read_again) {
            if let Some(c) = self.conns.get_mut(slot) {
                c.read_queued = false;
            }
            self.continue_input(slot);
        }
    }

    /// Continues a connection whose input was paused: parse what is buffered, then read.
    pub(super) fn continue_input(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else { return };
        if self.input_paused(conn) {
            return;
        }
        let deferred = std::mem::take(&mut self.conns[slot].deferred_read);
        if self.conns[slot].partial.is_some() {
            self.feed(slot, 0);
        }
        if deferred && self.conns.get(slot).is_some_and(|c| !self.input_paused(c)) {
            self.on_readable(slot);
        } else if let Some(c) = self.conns.get_mut(slot) {
            c.deferred_read |= deferred;
        }
    }

    /// Parses `scratch[..n]` after any buffered partial input; keeps the unparsed rest.
    fn feed(&mut self, slot: usize, n: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let partial = self.conns[slot].partial.take();
        match partial {
            Some(mut buf) => {
                buf.extend_from_slice(&scratch[..n]);
                let used = self.process(slot, &mut buf);
                buf.drain(..used);
                if let Some(c) = self.conns.get_mut(slot) {
                    if !buf.is_empty() && !c.state.is_closing() {
                        c.partial = Some(buf);
                    }
                }
            }
            None => {
                let used = self.process(slot, &mut scratch[..n]);
                if let Some(c) = self.conns.get_mut(slot) {
                    if used < n && !c.state.is_closing() {
                        c.partial = Some(Box::new(scratch[used..n].to_vec()));
                    }
                }
            }
        }
        self.scratch = scratch;
        // An incomplete HTTP request must complete within request_timeout of its first byte
        // (slowloris); the clock starts with the first byte kept.
        let now = self.now();
        if let Some(c) = self.conns.get_mut(slot) {
            if matches!(c.state, State::Http { .. }) && c.partial.is_some() && c.req_since == 0 {
                c.req_since = now | 1;
            }
        }
    }

    /// Parses as much of `data` as the connection's state allows; returns bytes consumed.
    fn process(&mut self, slot: usize, data: &mut [u8]) -> usize {
        let mut pos = 0;
        while pos < data.len() {
            let Some(conn) = self.conns.get(slot) else { return data.len() };
            if self.input_paused(conn) {
                return pos;
            }
            let used = match conn.state {
                // The last response is decided (Connection: close, HTTP/1.0, shutdown): nothing
                // after that request is a request.
                State::Http { keep_alive: false, awaiting: false } => return data.len(),
                State::Http { .. } => self.http_input(slot, &data[pos..]),
                State::Client { .. } | State::Echo | State::Edge => self.ws_input(slot, &mut data[pos..]),
                // Parked: a client sends nothing before its 101 (RFC 6455 §4.1).
                State::Closing { .. } | State::Detached | State::Parked { .. } | State::Relayed => return data.len(),
            };
            if used == 0 {
                break;
            }
            pos += used;
        }
        pos
    }
}
