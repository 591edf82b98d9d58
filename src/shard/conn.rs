//! One connection as its shard holds it, and its output queue.
//!
//! Kept small on purpose (invariant 7): an idle WebSocket connection is this struct in the
//! slab and nothing else — no read buffer, no allocated queue.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::ids::Gen;
use crate::protocol::ws::Kind;
use crate::recovery::Session;

/// What the connection currently speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// A recoverable session whose connection is gone (no socket): it keeps its slot, its
    /// groups and the frames sent to it until a resume, `recovery_window` or
    /// `recovery_max_bytes` (see `recovery`).
    Detached,
    /// Cluster mode: a resume for a session another node owns, waiting for its answer (the
    /// socket is here, nothing sent yet) until shard clock `until` (then a fresh session).
    Parked { until: u32 },
    /// Cluster mode: a client whose session another node owns (its frames come from there).
    Edge,
    /// Cluster mode: a session whose client is connected through another node (its frames go
    /// there); no socket here.
    Relayed,
    /// HTTP/1.1; `awaiting` while an API call is at the hub (no further request is parsed).
    Http { awaiting: bool, keep_alive: bool },
    /// A `/ws` client (`hub_knows`: the hub was told, so it must hear of the disconnect).
    Client { hub_knows: bool },
    /// An echo WebSocket (conformance testing).
    Echo,
    /// Sending what is queued, then shutting the write side and awaiting the peer's FIN; input
    /// is discarded. Dropped at shard clock `until` regardless.
    Closing { until: u32, kind: CloseKind },
}

/// What a closing connection was ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseKind {
    /// A WebSocket close: the close frame is queued last.
    WebSocket,
    /// An HTTP connection whose last response is queued (a lingering close, so the response
    /// is never reset before the peer read it).
    Http,
}

impl State {
    pub fn is_ws(self) -> bool {
        matches!(self, State::Client { .. } | State::Echo | State::Edge)
    }

    pub fn is_closing(self) -> bool {
        matches!(self, State::Closing { .. })
    }

    pub fn is_parked(self) -> bool {
        matches!(self, State::Parked { .. })
    }
}

/// A fragmented message being assembled.
#[derive(Debug)]
pub struct Fragments {
    pub kind: Kind,
    /// Its first frame had RSV1 (permessage-deflate): `data` is compressed.
    pub compressed: bool,
    pub data: Vec<u8>,
}

/// A connection (or a detached session: see [`State::Detached`]).
#[derive(Debug)]
pub struct Conn {
    /// The socket; `None` only while [`State::Detached`].
    pub sock: Option<TcpStream>,
    pub gen: Gen,
    pub state: State,
    pub out: OutQueue,
    /// Unparsed input (a partial frame or request), only while there is some.
    pub partial: Option<Box<Vec<u8>>>,
    /// A fragmented message in progress, only while there is one.
    pub frag: Option<Box<Fragments>>,
    /// Shard clock (ms, wrapping) of the last byte received.
    pub last_seen: u32,
    /// Shard clock of the last ping sent.
    pub last_ping: u32,
    /// Shard clock since when the output has been over the soft limit (0: it is not).
    pub soft_since: u32,
    /// Queued in the shard's dirty list for this loop turn.
    pub dirty: bool,
    /// A read was skipped (HTTP request pending at the hub) and must be redone.
    pub deferred_read: bool,
    /// In the shard's `read_again` list.
    pub read_queued: bool,
    /// Write side already shut down (`Closing`, everything flushed).
    pub write_shut: bool,
    /// The head of the HTTP request being received is complete, its body is not (the body's
    /// own `request_timeout` runs; `100 Continue` was sent if asked for).
    pub in_body: bool,
    /// Shard clock when the incomplete HTTP request (head, then body) began; 0: none pending.
    pub req_since: u32,
    /// permessage-deflate: 0 if not negotiated, else the client's window for what it is sent
    /// (`server_max_window_bits`, 8..=15).
    pub deflate: u8,
    /// A client that opted in to session recovery (`recover=1`).
    pub session: Option<Box<Session<Buf>>>,
    /// TLS state (`tls_cert`), moving with the socket.
    pub tls: Option<Box<super::tls::TlsConn>>,
}

impl Conn {
    pub fn new(sock: TcpStream, gen: Gen, now: u32) -> Self {
        Conn { sock: Some(sock), ..Conn::without_socket(gen, now) }
    }

    /// A connection in its first phase (HTTP), without a socket: what [`Conn::new`] adds one
    /// to, and what the lifecycle's unit tests drive with a fake clock.
    pub fn without_socket(gen: Gen, now: u32) -> Self {
        Conn {
            sock: None,
            gen,
            state: State::Http { awaiting: false, keep_alive: true },
            out: OutQueue::default(),
            partial: None,
            frag: None,
            last_seen: now,
            last_ping: now,
            soft_since: 0,
            dirty: false,
            deferred_read: false,
            read_queued: false,
            write_shut: false,
            in_body: false,
            req_since: 0,
            deflate: 0,
            session: None,
            tls: None,
        }
    }
}

impl Conn {
    /// An API call of this HTTP connection went to the hub: no further request is parsed
    /// until it is answered.
    pub fn await_hub(&mut self) {
        if let State::Http { keep_alive, .. } = self.state {
            self.state = State::Http { awaiting: true, keep_alive };
        }
    }

    /// The hub answered this connection's API call: `Some(keep_alive)`, or `None` if it was
    /// not waiting (closed meanwhile, or a stale answer). A request pipelined behind the
    /// answered one starts its `request_timeout` now.
    pub fn hub_answered(&mut self) -> Option<bool> {
        let State::Http { awaiting: true, keep_alive } = self.state else { return None };
        self.state = State::Http { awaiting: false, keep_alive };
        self.req_since = 0;
        Some(keep_alive)
    }
}

/// A frame as queued on a connection: the hub's shared buffer behind a shard-local `Rc`.
/// The buffer's own (atomic) refcount is touched once per shard per message; each recipient
/// only bumps this non-atomic count, so shards never contend on one cache line.
pub type Buf = Rc<Bytes>;

/// Pending output: shared frame buffers plus how much of the first one is already written
/// (invariant 4). `bytes` counts what is still to be written.
#[derive(Debug, Default)]
pub struct OutQueue {
    frames: VecDeque<Buf>,
    offset: usize,
    bytes: usize,
}

/// Most buffers handed to one `writev`.
pub const MAX_IOV: usize = 64;

/// What a queued frame costs beyond its bytes: its slot in the queue, the shard-local `Rc`
/// and, for a frame of its own (a pong, an API answer), the buffer's bookkeeping. Output
/// limits count this too, so a client sending tiny pings it never reads the answers of
/// cannot pin ~50x more memory than the limit says (a 2-byte pong costs ~100 bytes).
pub const FRAME_COST: usize = 64;

impl OutQueue {
    pub fn push(&mut self, b: Bytes) {
        self.push_shared(Rc::new(b));
    }

    /// Queues a buffer shared with other connections of this shard.
    pub fn push_shared(&mut self, b: Buf) {
        if b.is_empty() {
            return;
        }
        self.bytes += b.len();
        self.frames.push_back(b);
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Memory the queue holds, as output limits count it: bytes plus `FRAME_COST` a frame.
    pub fn cost(&self) -> usize {
        self.bytes + self.frames.len() * FRAME_COST
    }

    pub fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Copies up to `max` queued bytes onto `dst` and takes them off the queue (TLS encrypts
    /// from the copy). Returns the bytes copied.
    pub fn copy_out(&mut self, dst: &mut Vec<u8>, max: usize) -> usize {
        let mut n = 0;
        for (i, f) in self.frames.iter().enumerate() {
            let from = if i == 0 { self.offset } else { 0 };
            let take = (f.len() - from).min(max - n);
            dst.extend_from_slice(&f[from..from + take]);
            n += take;
            if n == max {
                break;
            }
        }
        self.advance(n);
        n
    }

    /// Drops every buffer not yet started, keeping a partly written head so the peer never
    /// sees a truncated frame. Returns the bytes dropped.
    pub fn drop_unstarted(&mut self) -> usize {
        let keep = usize::from(self.offset > 0);
        let dropped: usize = self.frames.iter().skip(keep).map(|f| f.len()).sum();
        self.frames.truncate(keep);
        if self.frames.is_empty() {
            self.frames = VecDeque::new();
        }
        self.bytes -= dropped;
        dropped
    }

    /// Writes as much as `w` takes with gathered writes. Returns bytes written and the number
    /// of write calls; stops at `WouldBlock` (not an error) or when empty.
    pub fn write_to(&mut self, w: &mut impl Write) -> io::Result<(usize, usize)> {
        let (mut total, mut calls) = (0, 0);
        while !self.frames.is_empty() {
            let mut iov: [IoSlice<'_>; MAX_IOV] = [IoSlice::new(&[]); MAX_IOV];
            let mut n = 0;
            for (i, f) in self.frames.iter().take(MAX_IOV).enumerate() {
                iov[i] = IoSlice::new(if i == 0 { &f[self.offset..] } else { &f[..] });
                n += 1;
            }
            calls += 1;
            // One buffer: a plain `send`, which skips the VFS layer and the iovec copy-in a
            // `writev` costs (most writes carry one frame).
            let r = if n == 1 { w.write(&iov[0]) } else { w.write_vectored(&iov[..n]) };
            match r {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    total += written;
                    self.advance(written);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((total, calls))
    }

    fn advance(&mut self, mut n: usize) {
        // Past the queued bytes the loop below would never end (an empty queue has a head of 0).
        debug_assert!(n <= self.bytes, "advanced {n} past the {} bytes queued", self.bytes);
        self.bytes -= n;
        while n > 0 {
            let head = self.frames.front().map(|f| f.len() - self.offset).unwrap_or(0);
            if n >= head {
                n -= head;
                self.frames.pop_front();
                self.offset = 0;
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }

    /// Frees the buffer list's allocation if nothing is queued (invariant 7: an idle
    /// connection holds no heap memory for output). Called by the periodic sweep rather than
    /// on every drain, so a busy connection does not reallocate for each burst.
    pub fn release_if_idle(&mut self) {
        if self.frames.is_empty() && self.frames.capacity() > 0 {
            self.frames = VecDeque::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `cap` bytes per call, then blocks after `budget`.
    struct Trickle {
        got: Vec<u8>,
        cap: usize,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.cap - n).min(self.budget - n);
                self.got.extend_from_slice(&b[..take]);
                n += take;
                if take < b.len() {
                    break;
                }
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_resume_exactly() {
        let mut q = OutQueue::default();
        for i in 0..100u8 {
            q.push(Bytes::from(vec![i; (i as usize % 7) + 1]));
        }
        let expected: Vec<u8> = (0..100u8).flat_map(|i| vec![i; (i as usize % 7) + 1]).collect();
        let mut w = Trickle { got: vec![], cap: 5, budget: 50 };
        q.write_to(&mut w).unwrap();
        assert_eq!(w.got.len(), 50);
        assert_eq!(q.bytes(), expected.len() - 50);
        w.budget = usize::MAX;
        q.write_to(&mut w).unwrap();
        assert_eq!(w.got, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn drop_unstarted_keeps_the_partial_head() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abcd"));
        q.push(Bytes::from_static(b"efgh"));
        let mut w = Trickle { got: vec![], cap: 2, budget: 2 };
        q.write_to(&mut w).unwrap();
        assert_eq!(q.drop_unstarted(), 4);
        q.push(Bytes::from_static(b"Z"));
        w.budget = 100;
        q.write_to(&mut w).unwrap();
        assert_eq!(w.got, b"abcdZ");
    }

    #[test]
    fn release_if_idle_frees_only_an_empty_queue() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.release_if_idle();
        assert_eq!(q.bytes(), 3);
        q.write_to(&mut Trickle { got: vec![], cap: 10, budget: 10 }).unwrap();
        assert!(q.frames.capacity() > 0);
        q.release_if_idle();
        assert_eq!(q.frames.capacity(), 0);
    }

    #[test]
    fn copy_out_takes_across_frames() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abcd"));
        q.push(Bytes::from_static(b"efgh"));
        q.push(Bytes::from_static(b"ij"));
        let mut w = Trickle { got: vec![], cap: 1, budget: 1 };
        q.write_to(&mut w).unwrap();
        let mut dst = Vec::new();
        assert_eq!(q.copy_out(&mut dst, 5), 5);
        assert_eq!(dst, b"bcdef");
        assert_eq!(q.copy_out(&mut dst, 100), 4);
        assert_eq!(dst, b"bcdefghij");
        assert!(q.is_empty());
        assert_eq!(q.copy_out(&mut dst, 100), 0);
    }

    #[test]
    fn idle_conn_is_small() {
        // Invariant 7: a few hundred bytes at most, slab entry included. (Debug builds: mio
        // adds a selector id to each socket, 8 bytes more.)
        let max = if cfg!(debug_assertions) { 136 } else { 128 };
        assert!(std::mem::size_of::<Conn>() <= max, "Conn is {} bytes", std::mem::size_of::<Conn>());
    }
}
