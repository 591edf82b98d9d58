//! A shard: one thread, one `mio::Poll`, its own SO_REUSEPORT listener, a `Slab<Conn>`.
//!
//! The loop's contract (as mio's): sockets are edge-triggered, so every read drains until
//! `WouldBlock`; spurious events are normal; unknown tokens are ignored. One turn is:
//! poll → read ready sockets (parsing requests and frames as they come) → drain the hub's
//! messages (queueing shared frames) → flush every connection with new output once with
//! `writev` → close what was marked for closing → periodic sweep (heartbeats, idle and
//! soft-limit checks). Nothing on this thread blocks: the hub is reached with `try_send`.
//!
//! Invariant 1 lives here: only this thread touches these sockets.

mod conn;
mod http;
mod ws;

use std::collections::{HashSet, VecDeque};
use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

pub use conn::{Buf, Conn, OutQueue, State, MAX_IOV};

use crate::auth::Verifier;
use crate::config::Config;
use crate::ids::ConnId;
use crate::metrics::{self, HubStats, ShardStats};
use crate::msg::{Command, ShardMsg, Target};
use crate::protocol::ws::{self as wsp, close};

/// Token of the listening socket.
pub const LISTENER: Token = Token(usize::MAX - 1);
/// Token of the hub's waker.
pub const WAKER: Token = Token(usize::MAX - 2);

/// Per-shard read buffer: every socket is read into it (invariant 7).
const SCRATCH: usize = 64 * 1024;
/// Hub messages handled per loop turn before flushing: output is written while it is
/// produced instead of piling up in every connection's queue behind undrained work (a
/// notice storm otherwise queued thousands of frames per member before the first write).
const HUB_MSGS_PER_TURN: usize = 256;
/// Reads of one socket per loop turn before others get their turn (fairness).
const READS_PER_TURN: usize = 16;
/// How long a closing connection may take to flush and see the peer's FIN.
const CLOSE_GRACE_MS: u32 = 10_000;

/// Caps the log lines about limits being hit, so a flood of bad clients cannot flood the
/// log: at most [`LogLimiter::PER_SECOND`] a second per shard, then one summary line.
#[derive(Default)]
pub struct LogLimiter {
    second: u64,
    used: u32,
    suppressed: u64,
}

impl LogLimiter {
    pub const PER_SECOND: u32 = 20;

    /// May a line be logged now (`now_ms`: shard clock)?
    pub fn allow(&mut self, now_ms: u32) -> bool {
        let sec = u64::from(now_ms / 1000);
        if sec != self.second {
            if self.suppressed > 0 {
                tracing::warn!(suppressed = self.suppressed, "limit log lines suppressed in the last second");
            }
            self.second = sec;
            self.used = 0;
            self.suppressed = 0;
        }
        if self.used < Self::PER_SECOND {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// What every shard shares (read-only, or atomics).
pub struct Shared {
    pub cfg: Config,
    pub verifier: Verifier,
    pub stats: Vec<ShardStats>,
    pub hub_stats: Arc<HubStats>,
    /// Open TCP connections over all shards, against `max_connections`.
    pub connections: AtomicUsize,
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
    replies: Receiver<ShardMsg>,
    hub: Sender<Command>,
    /// Disconnects that found the hub queue full; retried every turn, in order.
    backlog: VecDeque<Command>,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    to_close: Vec<usize>,
    /// Connections to read again next turn: read budget used up, or reading was paused
    /// (API call at the hub, HTTP output over the limit) and may resume.
    read_again: Vec<usize>,
    next_gen: u32,
    epoch: Instant,
    ping: Buf,
    accept_paused: bool,
    shutdown_deadline: Option<u32>,
    logs: LogLimiter,
    /// Frames queued since the counter was last published (one atomic add per turn).
    queued_frames: u64,
    /// Systems the hub has confirmed registered: sends to them are answered here at once.
    known_systems: HashSet<Box<str>>,
}

impl Shard {
    pub fn new(
        id: u16,
        shared: Arc<Shared>,
        poll: Poll,
        mut listener: TcpListener,
        (rx, replies): (Receiver<ShardMsg>, Receiver<ShardMsg>),
        hub: Sender<Command>,
    ) -> io::Result<Self> {
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Shard {
            id,
            shared,
            poll,
            listener: Some(listener),
            conns: Slab::new(),
            rx,
            replies,
            hub,
            backlog: VecDeque::new(),
            scratch: vec![0; SCRATCH],
            dirty: Vec::new(),
            to_close: Vec::new(),
            read_again: Vec::new(),
            next_gen: 1,
            epoch: Instant::now(),
            ping: Buf::new(wsp::frame(wsp::OP_PING, b"")),
            accept_paused: false,
            shutdown_deadline: None,
            logs: LogLimiter::default(),
            queued_frames: 0,
            known_systems: HashSet::new(),
        })
    }

    fn stats(&self) -> &ShardStats {
        &self.shared.stats[self.id as usize]
    }

    /// True if a limit-related log line may be written now (see [`LogLimiter`]).
    fn log_ok(&mut self) -> bool {
        let now = self.now();
        self.logs.allow(now)
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
        let t = (c.ping_interval / 2).min(c.idle_timeout / 4).min(Duration::from_secs(1));
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
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept(),
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
            for slot in std::mem::take(&mut self.read_again) {
                self.resume(slot);
            }
            self.drain_hub();
            self.flush_dirty();
            self.close_marked();
            if Instant::now() >= next_tick {
                self.sweep();
                next_tick = Instant::now() + tick;
            }
            if let Some(deadline) = self.shutdown_deadline {
                let late = (self.now().wrapping_sub(deadline) as i32) >= 0;
                if self.conns.is_empty() || late {
                    let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
                    for s in slots {
                        self.close_now(s);
                    }
                    self.flush_backlog();
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((sock, _)) => self.admit(sock),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE/ENFILE: pause; the sweep retries (edge-triggered: no new event
                    // would come for connections already waiting).
                    if !self.accept_paused {
                        tracing::warn!(shard = self.id, "accept failed, pausing accepts: {e}");
                    }
                    self.accept_paused = true;
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut sock: TcpStream) {
        let shared = self.shared.clone();
        if shared.connections.fetch_add(1, Relaxed) >= shared.cfg.max_connections {
            shared.connections.fetch_sub(1, Relaxed);
            metrics::add(&self.stats().refused_full_total, 1);
            if self.log_ok() {
                tracing::warn!(
                    shard = self.id,
                    max = self.shared.cfg.max_connections,
                    "connection refused (503): max_connections reached"
                );
            }
            let body = crate::protocol::api::err_body("server is full: max_connections reached");
            let resp = crate::protocol::http::json(503, &body, false);
            let _ = io::Write::write(&mut sock, &resp);
            return;
        }
        let _ = sock.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        // Edge-triggered, readable and writable registered once: no re-registration syscalls.
        if let Err(e) = self.poll.registry().register(&mut sock, Token(slot), Interest::READABLE | Interest::WRITABLE) {
            tracing::warn!("register failed: {e}");
            shared.connections.fetch_sub(1, Relaxed);
            return;
        }
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        let now = self.epoch.elapsed().as_millis() as u32;
        entry.insert(Conn::new(sock, gen, now));
        let st = self.stats();
        metrics::add(&st.accepted_total, 1);
        metrics::add(&st.connections, 1);
    }

    fn conn_id(&self, slot: usize) -> ConnId {
        ConnId { shard: self.id, slot: slot as u32, gen: self.conns[slot].gen }
    }

    /// The live connection at `t`, if its generation still matches (invariant 5).
    fn target(&mut self, t: Target) -> Option<&mut Conn> {
        self.conns.get_mut(t.slot as usize).filter(|c| c.gen == t.gen)
    }

    /// True while this connection's input must wait: an API call is at the hub, or HTTP
    /// responses are piling up unread (which bounds a pipelining client's output).
    fn input_paused(&self, conn: &Conn) -> bool {
        match conn.state {
            State::Http { awaiting, .. } => awaiting || conn.out.bytes() > self.shared.cfg.output_hard_limit,
            _ => false,
        }
    }

    /// Reads until `WouldBlock` (edge-triggered), at most [`READS_PER_TURN`] times; feeds
    /// each chunk to the parser.
    fn on_readable(&mut self, slot: usize) {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.conns.get(slot) else { return };
            if self.input_paused(conn) {
                self.conns[slot].deferred_read = true;
                return;
            }
            let conn = &mut self.conns[slot];
            match conn.sock.read(&mut self.scratch) {
                Ok(0) => {
                    // A half-closed HTTP client still gets what it asked for, then the close.
                    if let State::Http { awaiting, .. } = conn.state {
                        if awaiting || !conn.out.is_empty() {
                            conn.state = State::Http { awaiting, keep_alive: false };
                            self.mark_dirty(slot);
                            return;
                        }
                    }
                    self.close_now(slot);
                    return;
                }
                Ok(n) => {
                    let now = self.now();
                    let conn = &mut self.conns[slot];
                    conn.last_seen = now;
                    if conn.state == State::Closing {
                        continue; // discard input while closing
                    }
                    self.feed(slot, n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.close_now(slot);
                    return;
                }
            }
        }
        // Budget used up: the socket may hold more, and no new edge will announce it.
        self.read_again.push(slot);
    }

    /// Continues a connection whose input was paused: parse what is buffered, then read.
    pub(super) fn resume(&mut self, slot: usize) {
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
                    if !buf.is_empty() && c.state != State::Closing {
                        c.partial = Some(buf);
                    }
                }
            }
            None => {
                let used = self.process(slot, &mut scratch[..n]);
                if let Some(c) = self.conns.get_mut(slot) {
                    if used < n && c.state != State::Closing {
                        c.partial = Some(Box::new(scratch[used..n].to_vec()));
                    }
                }
            }
        }
        self.scratch = scratch;
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
                State::Http { .. } => self.http_input(slot, &data[pos..]),
                State::Client { .. } | State::Echo => self.ws_input(slot, &mut data[pos..]),
                State::Closing => return data.len(),
            };
            if used == 0 {
                break;
            }
            pos += used;
        }
        pos
    }

    /// Queues `frame` for `slot`, enforcing the hard output limit (invariant 4).
    fn queue(&mut self, slot: usize, frame: impl Into<Buf>) {
        let frame: Buf = frame.into();
        let hard = self.shared.cfg.output_hard_limit;
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.state == State::Closing {
            return;
        }
        if conn.state.is_ws() && conn.out.bytes() + frame.len() > hard && !conn.out.is_empty() {
            let queued = conn.out.bytes();
            metrics::add(&self.stats().slow_consumer_closes_total, 1);
            if self.log_ok() {
                tracing::info!(shard = self.id, slot, queued, "slow consumer: output hard limit reached, closing 1008");
            }
            self.begin_close(slot, close::POLICY, "slow consumer: output buffer limit exceeded", true);
            return;
        }
        conn.out.push_shared(frame);
        self.queued_frames += 1;
        self.mark_dirty(slot);
    }

    fn mark_dirty(&mut self, slot: usize) {
        if let Some(c) = self.conns.get_mut(slot) {
            if !c.dirty && (!c.out.is_empty() || c.state == State::Closing) {
                c.dirty = true;
                self.dirty.push(slot);
            }
        }
    }

    /// Writes every connection with pending output once (`writev`), then closes what is done.
    fn flush_dirty(&mut self) {
        metrics::add(&self.shared.stats[self.id as usize].frames_queued_total, std::mem::take(&mut self.queued_frames));
        let mut dirty = std::mem::take(&mut self.dirty);
        for (i, &slot) in dirty.iter().enumerate() {
            if let Some(conn) = self.conns.get_mut(slot) {
                conn.dirty = false;
                self.flush_one(slot);
            }
            // A long flush (a broadcast to thousands) must not hold back API answers.
            if i % 32 == 31 {
                self.drain_replies();
            }
        }
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// One gathered write of `slot`'s queue; schedules the close of a finished connection.
    /// Used by the end-of-turn flush, and at once for API answers: a caller waiting for its
    /// answer should not wait behind a broadcast's writes (it sends its next request sooner,
    /// so more messages share each later `writev`).
    pub(super) fn flush_one(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot) else { return };
        match conn.out.write_to(&mut conn.sock) {
            Ok((bytes, calls)) => {
                let st = &self.shared.stats[self.id as usize];
                metrics::add(&st.bytes_written_total, bytes as u64);
                metrics::add(&st.writev_calls_total, calls as u64);
            }
            Err(_) => {
                self.to_close.push(slot);
                return;
            }
        }
        if conn.deferred_read && matches!(conn.state, State::Http { awaiting: false, .. }) {
            self.read_again.push(slot);
        }
        if conn.out.is_empty() {
            match conn.state {
                State::Http { awaiting: false, keep_alive: false } => self.to_close.push(slot),
                State::Closing if !conn.write_shut => {
                    // Everything (close frame last) is out: half-close and wait for the
                    // peer's FIN (read side) until the grace period ends.
                    let _ = conn.sock.shutdown(std::net::Shutdown::Write);
                    conn.write_shut = true;
                }
                _ => {}
            }
        }
    }

    fn close_marked(&mut self) {
        while let Some(slot) = self.to_close.pop() {
            self.close_now(slot);
        }
    }

    /// Starts a WebSocket close: (optionally) drops unsent output, queues a close frame, tells
    /// the hub the client is gone, and waits for the flush (bounded by a grace period).
    fn begin_close(&mut self, slot: usize, code: u16, reason: &str, drop_output: bool) {
        let now = self.now();
        let Some(conn) = self.conns.get_mut(slot) else { return };
        if conn.state == State::Closing {
            return;
        }
        let was = conn.state;
        if drop_output {
            conn.out.drop_unstarted();
        }
        conn.out.push(wsp::close_frame(code, reason));
        conn.state = State::Closing;
        conn.close_deadline = now.wrapping_add(CLOSE_GRACE_MS);
        conn.partial = None;
        conn.frag = None;
        self.left(slot, was);
        self.mark_dirty(slot);
    }

    /// Bookkeeping when a connection stops being a client: tell the hub, fix gauges.
    fn left(&mut self, slot: usize, was: State) {
        if was.is_ws() {
            metrics::sub(&self.stats().ws_clients, 1);
        }
        if let State::Client { registered: true } = was {
            let conn = self.conn_id(slot);
            self.tell_hub_lifecycle(Command::Disconnected { conn });
        }
    }

    /// Sends a command that must not be lost: queued locally if the hub is full.
    fn tell_hub_lifecycle(&mut self, cmd: Command) {
        if !self.backlog.is_empty() {
            self.backlog.push_back(cmd);
            return;
        }
        match self.hub.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(cmd)) => self.backlog.push_back(cmd),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    fn flush_backlog(&mut self) {
        while let Some(cmd) = self.backlog.pop_front() {
            match self.hub.try_send(cmd) {
                Ok(()) => {}
                Err(TrySendError::Full(cmd)) => {
                    self.backlog.push_front(cmd);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    /// Drops the connection now (socket closed, slot freed).
    fn close_now(&mut self, slot: usize) {
        let Some(conn) = self.conns.get(slot) else { return };
        let was = conn.state;
        if was != State::Closing {
            self.left(slot, was);
        }
        let mut conn = self.conns.remove(slot);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        self.shared.connections.fetch_sub(1, Relaxed);
        metrics::sub(&self.stats().connections, 1);
    }

    /// Handles what the hub sent, at most [`HUB_MSGS_PER_TURN`] messages (the loop comes
    /// straight back when more are waiting).
    fn drain_hub(&mut self) {
        self.flush_backlog();
        self.drain_replies();
        for _ in 0..HUB_MSGS_PER_TURN {
            let Ok(msg) = self.rx.try_recv() else { break };
            match msg {
                ShardMsg::Deliver { frame, targets } => {
                    let frame = Buf::new(frame);
                    for &t in targets.iter() {
                        self.deliver(t, &frame);
                    }
                }
                ShardMsg::DeliverOne { target, frame } => self.deliver(target, &Buf::new(frame)),
                ShardMsg::Reply { to, status, body, registered } => self.on_reply(to, status, body, registered),
                ShardMsg::Welcome { to, result } => self.welcome(to, result),
                ShardMsg::Close { target, code, reason } => {
                    if let Some(conn) = self.target(target) {
                        // The hub already removed the client: no Disconnected needed.
                        if let State::Client { registered } = &mut conn.state {
                            *registered = false;
                        }
                        self.begin_close(target.slot as usize, code, reason, false);
                    }
                }
                ShardMsg::Shutdown => self.start_shutdown(),
            }
        }
    }

    /// Answers every API call the hub has answered (written at once, see `api_reply`).
    fn drain_replies(&mut self) {
        while let Ok(msg) = self.replies.try_recv() {
            if let ShardMsg::Reply { to, status, body, registered } = msg {
                self.on_reply(to, status, body, registered);
            }
        }
    }

    fn on_reply(&mut self, to: Target, status: u16, body: bytes::Bytes, registered: Option<Box<str>>) {
        if let Some(s) = registered {
            self.known_systems.insert(s);
        }
        self.api_reply(to, status, body);
    }

    fn deliver(&mut self, t: Target, frame: &Buf) {
        if let Some(conn) = self.target(t) {
            if matches!(conn.state, State::Client { registered: true }) {
                self.queue(t.slot as usize, frame.clone());
            }
        }
    }

    fn start_shutdown(&mut self) {
        if self.shutdown_deadline.is_some() {
            return;
        }
        let grace = self.cfg().shutdown_timeout.as_millis().min(u32::MAX as u128 / 4) as u32;
        self.shutdown_deadline = Some(self.now().wrapping_add(grace));
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        let slots: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for slot in slots {
            match self.conns[slot].state {
                State::Client { .. } | State::Echo => {
                    self.begin_close(slot, close::GOING_AWAY, "server shutting down", false)
                }
                State::Http { awaiting: false, .. } if self.conns[slot].out.is_empty() => self.close_now(slot),
                State::Http { awaiting, .. } => self.conns[slot].state = State::Http { awaiting, keep_alive: false },
                State::Closing => {}
            }
        }
    }

    /// Periodic sweep: pings, idle timeouts, soft output limit, closing deadlines, retries.
    fn sweep(&mut self) {
        let now = self.now();
        let cfg = &self.shared.cfg;
        let ping_ms = cfg.ping_interval.as_millis() as u32;
        let idle_ms = cfg.idle_timeout.as_millis() as u32;
        let soft = cfg.output_soft_limit;
        let soft_ms = cfg.output_soft_seconds.as_millis() as u32;
        let mut idle = Vec::new();
        let mut slow = Vec::new();
        let mut ping = Vec::new();
        let mut expired = Vec::new();
        let mut queued = 0u64;
        for (slot, c) in self.conns.iter_mut() {
            queued += c.out.bytes() as u64;
            c.out.release_if_idle();
            let silent = now.wrapping_sub(c.last_seen);
            match c.state {
                State::Closing => {
                    if (now.wrapping_sub(c.close_deadline) as i32) >= 0 {
                        expired.push(slot);
                    }
                }
                State::Http { awaiting, .. } => {
                    if !awaiting && silent > idle_ms {
                        expired.push(slot);
                    }
                }
                State::Client { .. } | State::Echo => {
                    if silent > idle_ms {
                        idle.push(slot);
                        continue;
                    }
                    if c.out.bytes() > soft {
                        if c.soft_since == 0 {
                            c.soft_since = now | 1;
                        } else if now.wrapping_sub(c.soft_since) > soft_ms {
                            slow.push(slot);
                            continue;
                        }
                    } else {
                        c.soft_since = 0;
                    }
                    if now.wrapping_sub(c.last_ping) >= ping_ms {
                        c.last_ping = now;
                        ping.push(slot);
                    }
                }
            }
        }
        self.stats().output_buffer_bytes.store(queued, Relaxed);
        for slot in expired {
            self.close_now(slot);
        }
        for slot in idle {
            metrics::add(&self.stats().idle_closes_total, 1);
            if self.log_ok() {
                tracing::info!(shard = self.id, slot, "idle timeout: closing a silent connection");
            }
            self.begin_close(slot, close::GOING_AWAY, "idle timeout", true);
        }
        for slot in slow {
            metrics::add(&self.stats().slow_consumer_closes_total, 1);
            if self.log_ok() {
                tracing::info!(
                    shard = self.id,
                    slot,
                    "slow consumer: output over the soft limit too long, closing 1008"
                );
            }
            self.begin_close(slot, close::POLICY, "slow consumer: output buffer limit exceeded", true);
        }
        metrics::add(&self.stats().pings_sent_total, ping.len() as u64);
        for slot in ping {
            let p = self.ping.clone();
            self.queue(slot, p);
        }
        self.flush_backlog();
        if self.accept_paused {
            self.accept_paused = false;
            self.accept();
        }
        self.flush_dirty();
        self.close_marked();
    }
}

#[cfg(test)]
mod tests {
    use super::LogLimiter;

    #[test]
    fn log_limiter_caps_lines_per_second() {
        let mut l = LogLimiter::default();
        let allowed = (0..100).filter(|i| l.allow(5_000 + i)).count();
        assert_eq!(allowed, LogLimiter::PER_SECOND as usize);
        assert!(l.allow(6_000), "a new second starts afresh");
    }
}
