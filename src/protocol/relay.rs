//! Resuming a session through another node (pure: the messages and their encoding).
//!
//! A session stays on the node its clientId names (the *owner*), since every call about it
//! routes there. A client that resumes through another node (the *edge*) keeps its socket
//! there; the two relay over the nodes' own Redis channels (`rc:n:{node}`), in order:
//!
//! ```text
//! edge shard ─ResumeReq─► owner shard   checks token, system, last; the session is now relayed
//! edge shard ◄─ResumeAns─ owner shard   token, clientId and the missed frames (or a refusal)
//! edge shard ◄──Frame─── owner shard   every frame for the session from then on
//! edge shard ──Event───► owner shard   the client's acknowledgements, publishes, drop or close
//! edge shard ◄─EdgeClose─ owner shard  close_client, a takeover, a shutdown
//! ```
//!
//! The hub and broker only route these (by the shard of the connection they name); all the
//! logic is in the shards (`shard/relay.rs`). Frames travel once more than for a client of the
//! owner node, which is the price of a resume through another node.

use bytes::Bytes;

use super::codec::{R, W};
use crate::ids::ConnId;

/// A session's 128-bit secret (in its resume token; `recovery` makes them).
pub type Secret = [u8; 16];

/// Why a resume was not honoured (the client then gets a fresh session). On the wire between
/// nodes as the owner's answer, so it is defined here, below `recovery`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed token, or no such session (never was, ended, expired, or on another node
    /// this one cannot reach).
    Unknown,
    /// The session exists but the secret does not match (used before, or guessed).
    BadSecret,
    /// The token is another system's.
    OtherSystem,
    /// The frames after `last` are no longer all held.
    LastNotHeld,
}

const RESUME_REQ: u8 = b'E';
const RESUME_ANS: u8 = b'F';
const FRAME: u8 = b'G';
const EVENT: u8 = b'V';
const EDGE_CLOSE: u8 = b'X';

/// The client-side event an edge tells the owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A pong acknowledging history up to this position.
    Ack(u64),
    /// The client's text frame with a `publish` command (the owner's hub checks it).
    Publish(Box<[u8]>),
    /// The connection was lost without a close handshake: the session is kept.
    Dropped,
    /// The connection was closed (close frame, slow consumer): the session ends.
    Closed,
}

/// A relay message; `ConnId`s are connections of the node it is sent to, except `edge` in
/// `ResumeReq` and `Event` (the sender's).
#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    ResumeReq { origin: u32, edge: ConnId, session: ConnId, secret: Secret, system: Box<str>, last: Option<Box<str>> },
    ResumeAns { edge: ConnId, result: Result<Resumed, Refusal> },
    Frame { edge: ConnId, frame: Bytes },
    Event { session: ConnId, edge: ConnId, event: Event },
    EdgeClose { edge: ConnId, code: u16, reason: Box<str> },
}

/// What the owner hands the edge for a recovered session.
#[derive(Debug, PartialEq, Eq)]
pub struct Resumed {
    pub client_id: Box<str>,
    pub token: Box<str>,
    pub missed: Vec<Bytes>,
}

impl Msg {
    /// The connection (of the receiving node) it is for: which shard handles it.
    pub fn target(&self) -> ConnId {
        match self {
            Msg::ResumeReq { session, .. } | Msg::Event { session, .. } => *session,
            Msg::ResumeAns { edge, .. } | Msg::Frame { edge, .. } | Msg::EdgeClose { edge, .. } => *edge,
        }
    }
}

impl Msg {
    /// Names another connection of the receiving node instead (a session adopted there under
    /// its old clientId, `crate::aliases`).
    pub fn retarget(&mut self, conn: ConnId) {
        match self {
            Msg::ResumeReq { session, .. } | Msg::Event { session, .. } => *session = conn,
            Msg::ResumeAns { edge, .. } | Msg::Frame { edge, .. } | Msg::EdgeClose { edge, .. } => *edge = conn,
        }
    }
}

fn refusal_code(r: Refusal) -> u8 {
    match r {
        Refusal::Unknown => 1,
        Refusal::BadSecret => 2,
        Refusal::OtherSystem => 3,
        Refusal::LastNotHeld => 4,
    }
}

fn refusal(c: u8) -> Option<Refusal> {
    Some(match c {
        1 => Refusal::Unknown,
        2 => Refusal::BadSecret,
        3 => Refusal::OtherSystem,
        4 => Refusal::LastNotHeld,
        _ => return None,
    })
}

/// Encodes a message for a node channel.
pub fn encode(m: &Msg) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(64));
    match m {
        Msg::ResumeReq { origin, edge, session, secret, system, last } => {
            w.u8(RESUME_REQ).u32(*origin).conn(*edge).conn(*session).bytes(secret).str(system);
            if let Some(l) = last {
                w.str(l);
            }
        }
        Msg::ResumeAns { edge, result } => {
            w.u8(RESUME_ANS).conn(*edge);
            match result {
                Err(r) => {
                    w.u8(refusal_code(*r));
                }
                Ok(r) => {
                    w.u8(0).str(&r.client_id).str(&r.token).u32(r.missed.len() as u32);
                    for f in &r.missed {
                        w.bytes(f);
                    }
                }
            }
        }
        Msg::Frame { edge, frame } => {
            w.u8(FRAME).conn(*edge);
            w.0.extend_from_slice(frame);
        }
        Msg::Event { session, edge, event } => {
            w.u8(EVENT).conn(*session).conn(*edge);
            match event {
                Event::Ack(n) => w.u8(1).u64(*n),
                Event::Publish(text) => w.u8(2).bytes(text),
                Event::Dropped => w.u8(3),
                Event::Closed => w.u8(4),
            };
        }
        Msg::EdgeClose { edge, code, reason } => {
            w.u8(EDGE_CLOSE).conn(*edge).u32(u32::from(*code)).str(reason);
        }
    }
    w.0
}

/// Reads a relay message; `None` if it is not one (or malformed).
pub fn decode(p: &[u8]) -> Option<Msg> {
    let mut r = R(p);
    Some(match r.u8()? {
        RESUME_REQ => {
            let (origin, edge, session) = (r.u32()?, r.conn()?, r.conn()?);
            let secret: Secret = r.bytes()?.try_into().ok()?;
            let system = r.str()?;
            let last = if r.0.is_empty() { None } else { Some(r.str()?) };
            Msg::ResumeReq { origin, edge, session, secret, system, last }
        }
        RESUME_ANS => {
            let edge = r.conn()?;
            let result = match r.u8()? {
                0 => {
                    let (client_id, token) = (r.str()?, r.str()?);
                    let n = r.u32()? as usize;
                    let mut missed = Vec::with_capacity(n.min(r.0.len() / 4));
                    for _ in 0..n {
                        missed.push(Bytes::copy_from_slice(r.bytes()?));
                    }
                    Ok(Resumed { client_id, token, missed })
                }
                c => Err(refusal(c)?),
            };
            Msg::ResumeAns { edge, result }
        }
        FRAME => {
            let edge = r.conn()?;
            Msg::Frame { edge, frame: Bytes::copy_from_slice(r.0) }
        }
        EVENT => {
            let (session, edge) = (r.conn()?, r.conn()?);
            let event = match r.u8()? {
                1 => Event::Ack(r.u64()?),
                2 => Event::Publish(r.bytes()?.into()),
                3 => Event::Dropped,
                4 => Event::Closed,
                _ => return None,
            };
            Msg::Event { session, edge, event }
        }
        EDGE_CLOSE => {
            let edge = r.conn()?;
            let code = u16::try_from(r.u32()?).ok()?;
            Msg::EdgeClose { edge, code, reason: r.str()? }
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_round_trips_and_truncations_are_refused() {
        let c = |slot| ConnId { shard: 1, slot, gen: 1 << 40 };
        let msgs = [
            Msg::ResumeReq {
                origin: 7,
                edge: c(1),
                session: c(2),
                secret: [9; 16],
                system: "s".into(),
                last: Some("m".into()),
            },
            Msg::ResumeReq { origin: 7, edge: c(1), session: c(2), secret: [9; 16], system: "s".into(), last: None },
            Msg::ResumeAns { edge: c(3), result: Err(Refusal::LastNotHeld) },
            Msg::ResumeAns {
                edge: c(3),
                result: Ok(Resumed {
                    client_id: "id".into(),
                    token: "tok".into(),
                    missed: vec![Bytes::from_static(b"\x81\x01a"), Bytes::new()],
                }),
            },
            Msg::Frame { edge: c(4), frame: Bytes::from_static(b"\x81\x02hi") },
            Msg::Event { session: c(5), edge: c(6), event: Event::Ack(42) },
            Msg::Event { session: c(5), edge: c(6), event: Event::Publish(b"{}"[..].into()) },
            Msg::Event { session: c(5), edge: c(6), event: Event::Dropped },
            Msg::Event { session: c(5), edge: c(6), event: Event::Closed },
            Msg::EdgeClose { edge: c(7), code: 1000, reason: "bye".into() },
        ];
        for m in msgs {
            let p = encode(&m);
            assert_eq!(decode(&p).as_ref(), Some(&m));
            for n in 0..p.len() {
                // A cut is refused, or (a frame or an optional `last`) reads as something else
                // that still names the same connection: never a panic.
                if let Some(d) = decode(&p[..n]) {
                    assert_eq!(d.target(), m.target());
                }
            }
        }
        assert!(decode(b"Z").is_none());
    }
}
