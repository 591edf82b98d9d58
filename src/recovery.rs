//! Session recovery (opt-in per connection with `recover=1`): what a session keeps so that a
//! client that drops for a few seconds gets its clientId, groups and every missed frame back.
//! Pure: no sockets, no threads; the shard glue is `shard/resume.rs`.
//!
//! ## How it works
//!
//! A session is its connection's slab entry: it keeps its slot (so its clientId keeps
//! routing to it), its place in the hub's index (its groups: nobody is told of a blip), and a
//! list ([`Unacked`]) of the push frames sent to it that the client may not have received. Those are
//! references to the shared frame buffers, never copies (invariant 2).
//!
//! A frame leaves [`Unacked`] once the client has surely received it: the server's pings to
//! a recovering client carry the position in it they were queued at, and TCP delivers in
//! order, so the pong that echoes a ping acknowledges every frame queued before it. While
//! connected the unacknowledged frames are therefore those of the last ping interval or so;
//! an extra ping asks for an acknowledgement when they grow past an eighth of
//! `recovery_max_bytes` (at most once a second: `shard::resume`'s `ACK_PING_MS`).
//!
//! When the connection ends without a close handshake (reset, network loss, idle timeout)
//! the session is kept, detached, for `recovery_window` and `recovery_max_bytes`; frames sent
//! to it meanwhile are kept the same way. A resume presents the session's token and the
//! messageId of the last frame the client processed; the frames after it are sent again, in
//! order, once.
//!
//! ## The resume token
//!
//! `<clientId><secret>`: the clientId (28 hex digits) routes the resume to the session's node
//! and shard, the secret (128 random bits, 32 hex digits) proves it. A new secret is drawn at
//! every resume, so a token works once. Tokens are never logged.

use std::collections::VecDeque;

use crate::ids::{self, ClientRef, CLIENT_ID_LEN};
pub use crate::protocol::relay::{Refusal, Secret};

/// Hex digits of a token's secret.
const SECRET_HEX: usize = 32;

/// Length of a resume token.
pub const TOKEN_LEN: usize = CLIENT_ID_LEN + SECRET_HEX;

/// What it costs to keep a frame beyond its bytes (its slot in [`Unacked`] and its handle).
pub const KEPT_FRAME_COST: usize = 64;

/// A fresh secret. `fastrand` is seeded per thread from the OS's randomness and is not a
/// cryptographic generator, so the secret comes from the OS directly.
pub fn new_secret() -> Secret {
    let mut s = [0u8; 16];
    // SAFETY: getrandom writes at most `s.len()` bytes into `s`.
    let n = unsafe { libc::getrandom(s.as_mut_ptr().cast(), s.len(), 0) };
    if n != s.len() as isize {
        // getrandom(2) with a 16-byte buffer does not fail short on Linux; never hand out a
        // predictable token if it somehow does.
        panic!("getrandom failed: no secure randomness for resume tokens");
    }
    s
}

/// The token of a session: its clientId and secret.
pub fn token(client_id: &str, secret: &Secret) -> String {
    let mut t = String::with_capacity(TOKEN_LEN);
    t.push_str(client_id);
    for b in secret {
        t.push_str(&format!("{b:02x}"));
    }
    t
}

/// Splits a token into the session it names and its secret; `None` if malformed.
pub fn parse_token(t: &str) -> Option<(ClientRef, Secret)> {
    if t.len() != TOKEN_LEN || !t.is_char_boundary(CLIENT_ID_LEN) {
        return None;
    }
    let client = ids::parse_client_ref(&t[..CLIENT_ID_LEN])?;
    let hex = &t.as_bytes()[CLIENT_ID_LEN..];
    let mut secret = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        if !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        secret[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some((client, secret))
}

/// Compares secrets in constant time (a token check must not leak how much of it matched).
pub fn same_secret(a: &Secret, b: &Secret) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The messageId of a push frame (a complete server WebSocket frame whose JSON starts with
/// `{"messageId":"…"`), as bytes; `None` for any other frame.
pub fn message_id(frame: &[u8]) -> Option<&[u8]> {
    let len = *frame.get(1)? & 0x7f;
    let start = match len {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    let json = frame.get(start..)?;
    let rest = json.strip_prefix(b"{\"messageId\":\"")?;
    let end = rest.iter().position(|&c| c == b'"')?;
    Some(&rest[..end])
}

/// A frame as [`Unacked`] holds it: anything that shows its bytes (a shared `Bytes`, or the
/// shard's `Rc` of one).
pub trait Kept {
    fn bytes(&self) -> &[u8];
}

impl Kept for bytes::Bytes {
    fn bytes(&self) -> &[u8] {
        self
    }
}

impl Kept for std::rc::Rc<bytes::Bytes> {
    fn bytes(&self) -> &[u8] {
        self
    }
}

/// A recoverable session's state beside its connection (boxed: clients that do not opt in
/// pay one pointer).
#[derive(Debug)]
pub struct Session<F> {
    /// The current token's secret.
    pub secret: Secret,
    /// The session's system: a token is good for it only.
    pub system: Box<str>,
    pub unacked: Unacked<F>,
    /// Shard clock (ms) since when the session has been without a connection; `None` while
    /// connected.
    pub detached_since: Option<u32>,
    /// Cluster mode, a session resumed through another node: the other end of its relay
    /// (see `protocol::relay`).
    pub relay: Option<Relay>,
    /// On an edge waiting for the owner's answer: the 101 to send once it comes.
    pub accept: Option<bytes::Bytes>,
    /// On an edge waiting for the owner's answer: what the connect brought for a fresh
    /// session, should the resume fail (its connect token's grant, or that it had none).
    pub admit: crate::auth::Admit,
    /// While detached: the address it still counts against (`max_connections_per_ip`).
    pub ip: Option<std::net::IpAddr>,
    /// While detached: which of the shard's kept periods this is (its place in the
    /// `max_recovery_sessions` order; a session detached again gets a new one).
    pub kept_seq: u64,
}

/// A node and a connection there: one end of a relayed session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: u32,
    pub conn: crate::ids::ConnId,
}

/// The other end of a session resumed through another node, seen from each end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// On the edge (the node the client is connected to): where the session is.
    ToOwner(Peer),
    /// On the owner (the node the session is kept on): where its client is.
    ToEdge(Peer),
}

impl Relay {
    pub fn peer(self) -> Peer {
        match self {
            Relay::ToOwner(p) | Relay::ToEdge(p) => p,
        }
    }

    pub fn owner(self) -> Option<Peer> {
        match self {
            Relay::ToOwner(p) => Some(p),
            Relay::ToEdge(_) => None,
        }
    }

    pub fn edge(self) -> Option<Peer> {
        match self {
            Relay::ToEdge(p) => Some(p),
            Relay::ToOwner(_) => None,
        }
    }
}

impl<F: Kept> Session<F> {
    pub fn new(system: Box<str>) -> Self {
        Session {
            secret: new_secret(),
            system,
            unacked: Unacked::default(),
            detached_since: None,
            relay: None,
            accept: None,
            admit: crate::auth::Admit::Open,
            ip: None,
            kept_seq: 0,
        }
    }
}

/// The push frames a session may still owe its client, in the order they were sent.
#[derive(Debug)]
pub struct Unacked<F> {
    frames: VecDeque<F>,
    /// Bytes held, each frame counted with [`KEPT_FRAME_COST`].
    bytes: usize,
    /// Position (count of frames ever recorded) of `frames[0]`.
    first: u64,
    /// The frame just before `frames[0]` (acknowledged, or dropped at the bound): a resume
    /// whose `last` is that frame gets everything held.
    dropped: Option<F>,
    /// A frame may have been lost before it got here ([`Unacked::lose`]): a resume from the
    /// connect frame can no longer be complete, even if nothing was recorded yet.
    lost: bool,
}

impl<F: Kept> Default for Unacked<F> {
    fn default() -> Self {
        Unacked { frames: VecDeque::new(), bytes: 0, first: 0, dropped: None, lost: false }
    }
}

impl<F: Kept> Unacked<F> {
    /// Position the next frame will take.
    pub fn next(&self) -> u64 {
        self.first + self.frames.len() as u64
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Records a frame sent to the session. Returns false if that took the frames kept over
    /// `max` bytes: the caller decides (connected: [`Unacked::trim_to`]; detached: the
    /// session ends).
    pub fn record(&mut self, frame: F, max: usize) -> bool {
        self.bytes += frame.bytes().len() + KEPT_FRAME_COST;
        self.frames.push_back(frame);
        self.bytes <= max
    }

    fn pop(&mut self) -> bool {
        let Some(f) = self.frames.pop_front() else { return false };
        self.bytes -= f.bytes().len() + KEPT_FRAME_COST;
        self.first += 1;
        self.dropped = Some(f);
        true
    }

    /// Drops the oldest frames, unacknowledged, until at most `max` bytes are held (a resume
    /// from before them can then not be served).
    pub fn trim_to(&mut self, max: usize) {
        while self.bytes > max && self.pop() {}
    }

    /// A frame meant for the session may have been lost before it got here: nothing held so far
    /// can complete a resume any more (one from a frame recorded before now gets
    /// [`Refusal::LastNotHeld`]); frames recorded from now on can.
    pub fn lose(&mut self) {
        self.first = self.next();
        self.frames.clear();
        self.bytes = 0;
        self.dropped = None;
        self.lost = true;
    }

    /// The client has received every frame before position `upto`.
    pub fn ack(&mut self, upto: u64) {
        while self.first < upto && self.pop() {}
        if self.frames.is_empty() && self.frames.capacity() > 8 {
            self.frames = VecDeque::new();
        }
    }

    /// What a restart keeps of it ([`Unacked::restored`] builds it again): the frame just before
    /// those held (acknowledged), those held in order, and whether a resume from before the
    /// first frame (no `last`) can still be served.
    pub fn saved(&self) -> (Option<&F>, impl Iterator<Item = &F>, bool) {
        (self.dropped.as_ref(), self.frames.iter(), self.first == 0 && !self.lost)
    }

    /// Frames kept across a restart ([`Unacked::saved`]): a resume gets what it would have got
    /// before. Positions start again at 0 (the client's acknowledgements name positions of
    /// pings sent after the restart only).
    pub fn restored(dropped: Option<F>, frames: impl IntoIterator<Item = F>, from_start: bool) -> Self {
        let frames: VecDeque<F> = frames.into_iter().collect();
        let bytes = frames.iter().map(|f| f.bytes().len() + KEPT_FRAME_COST).sum();
        debug_assert!(!from_start || dropped.is_none(), "a frame before the first one");
        Unacked { frames, bytes, first: 0, dropped, lost: !from_start }
    }

    /// The frames after the one whose messageId is `last` (`None`: after the connect frame,
    /// i.e. every frame ever sent), if it still holds everything after that point.
    pub fn after(&self, last: Option<&str>) -> Option<std::collections::vec_deque::Iter<'_, F>> {
        let skip = match last {
            None if self.first == 0 && !self.lost => 0,
            None => return None,
            Some(id) => match self.frames.iter().rposition(|f| message_id(f.bytes()) == Some(id.as_bytes())) {
                Some(pos) => pos + 1,
                None if self.dropped.as_ref().and_then(|f| message_id(f.bytes())) == Some(id.as_bytes()) => 0,
                None => return None,
            },
        };
        let mut it = self.frames.iter();
        if skip > 0 {
            it.nth(skip - 1);
        }
        Some(it)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::api::push_frame;

    fn frame(id: &str) -> bytes::Bytes {
        push_frame(id, "u", 0, "m", None)
    }

    #[test]
    fn tokens_round_trip_and_refuse_garbage() {
        let c = ClientRef { node: 0xabcd, conn: ids::ConnId { shard: 1, slot: 2, gen: 3 } };
        let s = new_secret();
        let t = token(&c.id(), &s);
        assert_eq!(t.len(), TOKEN_LEN);
        let (c2, s2) = parse_token(&t).unwrap();
        assert_eq!((c2, s2), (c, s));
        assert!(parse_token(&t[1..]).is_none());
        assert!(parse_token(&t.to_uppercase()).is_none());
        assert!(parse_token(&format!("{}é", &t[..TOKEN_LEN - 2])).is_none());
        assert!(same_secret(&s, &s2));
        let mut other = s;
        other[15] ^= 1;
        assert!(!same_secret(&s, &other));
        assert_ne!(new_secret(), new_secret());
    }

    #[test]
    fn message_ids_are_found_in_frames_of_any_size() {
        assert_eq!(message_id(&frame("9fa54bdbbf2778cb")), Some(&b"9fa54bdbbf2778cb"[..]));
        let big = push_frame("0123456789abcdef", "u", 0, &"x".repeat(70_000), None);
        assert_eq!(message_id(&big), Some(&b"0123456789abcdef"[..]));
        assert_eq!(message_id(&crate::protocol::api::welcome_frame("c")), None);
        assert_eq!(message_id(b"\x81"), None);
    }

    /// Cluster mode: a frame for the session was lost on the way from Redis. No resume from
    /// before that is complete any more — not even from the connect frame of frames still
    /// empty — while one from a frame recorded after it is.
    #[test]
    fn a_loss_refuses_resumes_from_before_it() {
        let mut fresh: Unacked<bytes::Bytes> = Unacked::default();
        assert!(fresh.after(None).is_some());
        fresh.lose();
        assert!(fresh.after(None).is_none(), "the lost frame may have been the first");
        let mut h = Unacked::default();
        h.record(frame("00000000000000a1"), 1 << 20);
        h.record(frame("00000000000000a2"), 1 << 20);
        h.lose();
        assert_eq!((h.len(), h.bytes(), h.next()), (0, 0, 2));
        assert!(h.after(Some("00000000000000a1")).is_none());
        assert!(h.after(Some("00000000000000a2")).is_none());
        h.record(frame("00000000000000a4"), 1 << 20);
        h.record(frame("00000000000000a5"), 1 << 20);
        assert_eq!(h.after(Some("00000000000000a4")).map(|i| i.count()), Some(1));
        h.ack(3);
        assert_eq!((h.len(), h.next()), (1, 4));
    }

    #[test]
    fn a_resume_gets_exactly_the_frames_after_last() {
        let mut h = Unacked::default();
        for id in ["a", "b", "c", "d"] {
            assert!(h.record(frame(id), 1 << 20));
        }
        let ids = |it: std::collections::vec_deque::Iter<'_, bytes::Bytes>| {
            it.map(|f| String::from_utf8(message_id(f).unwrap().to_vec()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(ids(h.after(Some("b")).unwrap()), ["c", "d"]);
        assert_eq!(ids(h.after(Some("d")).unwrap()), Vec::<String>::new());
        assert_eq!(ids(h.after(None).unwrap()), ["a", "b", "c", "d"]);
        assert!(h.after(Some("zz")).is_none(), "an unknown last is not held");
        // The client acknowledged a and b: a resume from b (or later) still works; from a or
        // from nothing no longer.
        h.ack(2);
        assert_eq!(h.len(), 2);
        assert_eq!(ids(h.after(Some("b")).unwrap()), ["c", "d"]);
        assert_eq!(ids(h.after(Some("c")).unwrap()), ["d"]);
        assert!(h.after(Some("a")).is_none());
        assert!(h.after(None).is_none());
        assert_eq!(h.next(), 4);
    }

    /// A restart keeps exactly what a resume could be served: from the acknowledged frame, from
    /// a held one, and from the start only if nothing was ever dropped.
    #[test]
    fn what_a_restart_keeps_serves_the_same_resumes() {
        let ids = |it: std::collections::vec_deque::Iter<'_, bytes::Bytes>| {
            it.map(|f| String::from_utf8(message_id(f).unwrap().to_vec()).unwrap()).collect::<Vec<_>>()
        };
        let again = |h: &Unacked<bytes::Bytes>| {
            let (dropped, frames, from_start) = h.saved();
            Unacked::restored(dropped.cloned(), frames.cloned().collect::<Vec<_>>(), from_start)
        };
        let mut h = Unacked::default();
        for id in ["a", "b", "c"] {
            h.record(frame(id), 1 << 20);
        }
        let r = again(&h);
        assert_eq!((r.len(), r.bytes()), (h.len(), h.bytes()));
        assert_eq!(ids(r.after(None).unwrap()), ["a", "b", "c"]);
        h.ack(1);
        let r = again(&h);
        assert!(r.after(None).is_none(), "a was acknowledged: not from the start");
        assert_eq!(ids(r.after(Some("a")).unwrap()), ["b", "c"], "from the acknowledged frame");
        assert_eq!(ids(r.after(Some("b")).unwrap()), ["c"]);
        assert_eq!(r.next(), 2, "positions start again");
        let mut l = Unacked::<bytes::Bytes>::default();
        l.lose();
        assert!(again(&l).after(None).is_none(), "a loss is kept");
    }

    #[test]
    fn bytes_are_bounded_and_trimming_loses_the_past() {
        let mut h = Unacked::default();
        let f = frame("a");
        let one = f.len() + KEPT_FRAME_COST;
        assert!(h.record(f, one));
        assert!(!h.record(frame("b"), one), "over the bound");
        h.trim_to(one);
        assert_eq!((h.len(), h.bytes()), (1, one));
        assert!(h.after(None).is_none(), "a frame was dropped unacknowledged");
        assert_eq!(h.after(Some("a")).unwrap().count(), 1, "a client that had a gets b");
        h.ack(10);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
    }
}
