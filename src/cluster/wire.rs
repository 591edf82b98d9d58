//! What nodes publish to each other through Redis (pure): frames to deliver, forwarded
//! API calls and their answers. Binary, length-prefixed, big-endian; frames travel as the
//! exact bytes the origin built (invariant 2 across nodes).

use bytes::Bytes;

use crate::ids::ClientRef;
#[cfg(test)]
use crate::ids::ConnId;
use crate::msg::{Frame, Op};
pub(crate) use crate::protocol::codec::{R, W};

/// Group or system channel: a frame for every member, on every node (the origin's too:
/// everyone receives a group's frames in Redis's order). Read from older nodes (no position).
const DELIVER: u8 = b'D';
/// Group channel: a client joined here, in Redis's order; maybe with its 1001 notice. Read from
/// older nodes (no position).
const JOINED: u8 = b'J';
/// [`DELIVER`] with its position in the publisher's stream of that channel ([`Pos`]).
const DELIVER_AT: u8 = b'E';
/// [`JOINED`] with its position.
const JOINED_AT: u8 = b'K';
/// A position the publisher used without a frame (a LEAVE step that sent no notice), so the
/// stream has no hole where nothing was lost.
const SKIP_AT: u8 = b'S';
const REQUEST: u8 = b'Q';
/// Cluster channel: a node (re)connected to Redis and takes calls for its clients.
const HELLO: u8 = b'H';
const ANSWER: u8 = b'R';

/// Where a message stands in one publisher's stream of one channel: every message a node
/// publishes on a group or system channel takes the next `seq` of that channel (from 1, within
/// an `epoch` the publisher picks at random when it starts or forgets its counters). A
/// receiver that sees a `seq` further on than the one after the last it got, in the same
/// epoch, knows it missed messages (a pub/sub connection lost, a subscriber that dropped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub origin: u32,
    pub epoch: u32,
    pub seq: u64,
}

const POS_LEN: usize = 16;

fn head(kind: u8, at: Pos, extra: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + POS_LEN + extra);
    v.push(kind);
    v.extend_from_slice(&at.origin.to_be_bytes());
    v.extend_from_slice(&at.epoch.to_be_bytes());
    v.extend_from_slice(&at.seq.to_be_bytes());
    v
}

/// A frame for a group or system channel, at `at` in its publisher's stream.
pub fn delivery(at: Pos, frame: &[u8]) -> Vec<u8> {
    let mut v = head(DELIVER_AT, at, frame.len());
    v.extend_from_slice(frame);
    v
}

/// The marker a JOIN step publishes: `client` joined; `notice` (may be empty) follows.
pub fn joined(at: Pos, client_id: &str, notice: &[u8]) -> Vec<u8> {
    let mut v = head(JOINED_AT, at, client_id.len() + notice.len());
    v.extend_from_slice(client_id.as_bytes());
    v.extend_from_slice(notice);
    v
}

/// What a LEAVE step publishes when it sends no notice: the position, used.
pub fn skip(at: Pos) -> Vec<u8> {
    head(SKIP_AT, at, 0)
}

/// A node announcing itself on the cluster channel.
pub fn hello(node: u32) -> Vec<u8> {
    let mut v = vec![HELLO];
    v.extend_from_slice(&node.to_be_bytes());
    v
}

/// Cluster channel: a node leaves (graceful exit): the others stop routing to it at once.
const BYE: u8 = b'B';

/// A node's goodbye on the cluster channel.
pub fn bye(node: u32) -> Vec<u8> {
    let mut v = vec![BYE];
    v.extend_from_slice(&node.to_be_bytes());
    v
}

/// The node a goodbye names; `None` for anything else.
pub fn parse_bye(p: &[u8]) -> Option<u32> {
    match p {
        [BYE, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// Cluster channel: clientIds of a stopped node moved to their adopter (`aliases::Move`).
const MOVED: u8 = b'M';

/// The announcement of a move on the cluster channel.
pub fn moved(m: &crate::aliases::Move) -> Vec<u8> {
    let mut v = vec![MOVED];
    v.extend_from_slice(m.encode().as_bytes());
    v
}

/// The move an announcement names; `None` for anything else.
pub fn parse_moved(p: &[u8]) -> Option<crate::aliases::Move> {
    let (&MOVED, rest) = p.split_first()? else { return None };
    crate::aliases::Move::decode(std::str::from_utf8(rest).ok()?)
}

/// The node a hello announces; `None` for anything malformed.
pub fn parse_hello(p: &[u8]) -> Option<u32> {
    match p {
        [HELLO, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// What a group or system channel carried (`at`: its position, `None` from an older node).
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    Frame { at: Option<Pos>, frame: &'a [u8] },
    Joined { at: Option<Pos>, client: ClientRef, notice: Option<&'a [u8]> },
    Skip { at: Pos },
}

fn parse_pos(r: &mut R<'_>) -> Option<Pos> {
    Some(Pos { origin: r.u32()?, epoch: r.u32()?, seq: r.u64()? })
}

fn parse_joined(rest: &[u8]) -> Option<(ClientRef, Option<&[u8]>)> {
    let id = std::str::from_utf8(rest.get(..crate::ids::CLIENT_ID_LEN)?).ok()?;
    let client = crate::ids::parse_client_ref(id)?;
    let notice = &rest[id.len()..];
    Some((client, (!notice.is_empty()).then_some(notice)))
}

/// Reads a delivery; `None` for anything malformed.
pub fn parse_delivery(p: &[u8]) -> Option<Delivery<'_>> {
    let (&kind, rest) = p.split_first()?;
    let mut r = R(rest);
    match kind {
        DELIVER => {
            r.u32()?;
            Some(Delivery::Frame { at: None, frame: r.0 })
        }
        DELIVER_AT => Some(Delivery::Frame { at: Some(parse_pos(&mut r)?), frame: r.0 }),
        JOINED => parse_joined(rest).map(|(client, notice)| Delivery::Joined { at: None, client, notice }),
        JOINED_AT => {
            let at = parse_pos(&mut r)?;
            parse_joined(r.0).map(|(client, notice)| Delivery::Joined { at: Some(at), client, notice })
        }
        SKIP_AT => Some(Delivery::Skip { at: parse_pos(&mut r)? }),
        _ => None,
    }
}

/// What arrives on a node's own channel.
#[derive(Debug)]
pub enum NodeMsg {
    Request { origin: u32, corr: u64, system: Box<str>, op: Op },
    Answer { corr: u64, status: u16, body: Bytes },
}

/// A forwarded call; only operations on given clients are ever forwarded (`None` for the
/// others: every operation is named here, so a new one does not compile until it is decided).
pub fn request(origin: u32, corr: u64, system: &str, op: &Op) -> Option<Vec<u8>> {
    let mut w = W(Vec::with_capacity(64));
    w.u8(REQUEST).u32(origin).u64(corr).str(system);
    match op {
        Op::SendToClients { clients, frame, message_id, strict } => {
            w.u8(1).u8(u8::from(*strict)).str(message_id).u32(clients.len() as u32);
            for c in clients {
                w.client(*c);
            }
            w.0.extend_from_slice(frame);
        }
        // 2: with a userId; 5: without (the client's own user applies, on its node).
        Op::Bind { client, group, user_id: Some(user_id), extend, notify } => {
            w.u8(2).client(*client).u8(u8::from(*notify)).str(group).str(user_id).str(extend);
        }
        Op::Bind { client, group, user_id: None, extend, notify } => {
            w.u8(5).client(*client).u8(u8::from(*notify)).str(group).str(extend);
        }
        Op::Unbind { client, group, notify } => {
            w.u8(3).client(*client).u8(u8::from(*notify)).str(group);
        }
        Op::Close { client, notify } => {
            w.u8(4).client(*client).u8(u8::from(*notify));
        }
        // Answered by the node that got the call (from Redis): never forwarded.
        Op::Register
        | Op::SendToGroup { .. }
        | Op::SendToSystem { .. }
        | Op::OnlineList { .. }
        | Op::SendToUser { .. }
        | Op::CloseUser { .. }
        | Op::UserPresence { .. }
        | Op::GroupHistory { .. }
        | Op::AllGroups { .. } => return None,
    }
    Some(w.0)
}

/// An answer to a forwarded call.
pub fn answer(corr: u64, status: u16, body: &[u8]) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(11 + body.len()));
    w.u8(ANSWER).u64(corr).u32(u32::from(status));
    w.0.extend_from_slice(body);
    w.0
}

/// Reads what arrived on a node channel; `None` for anything malformed.
pub fn parse_node_msg(p: &[u8]) -> Option<NodeMsg> {
    let mut r = R(p);
    match r.u8()? {
        ANSWER => {
            let corr = r.u64()?;
            let status = u16::try_from(r.u32()?).ok()?;
            Some(NodeMsg::Answer { corr, status, body: Bytes::copy_from_slice(r.0) })
        }
        REQUEST => {
            let (origin, corr, system) = (r.u32()?, r.u64()?, r.str()?);
            let op = match r.u8()? {
                1 => {
                    let strict = r.u8()? != 0;
                    let message_id = r.str()?;
                    let n = r.u32()? as usize;
                    let mut clients = Vec::with_capacity(n.min(r.0.len() / 16));
                    for _ in 0..n {
                        clients.push(r.client()?);
                    }
                    let frame: Frame = Bytes::copy_from_slice(r.0);
                    Op::SendToClients { clients, frame, message_id, strict }
                }
                2 => {
                    let (client, notify) = (r.client()?, r.u8()? != 0);
                    Op::Bind { client, notify, group: r.str()?, user_id: Some(r.str()?), extend: r.str()? }
                }
                5 => {
                    let (client, notify) = (r.client()?, r.u8()? != 0);
                    Op::Bind { client, notify, group: r.str()?, user_id: None, extend: r.str()? }
                }
                3 => {
                    let (client, notify) = (r.client()?, r.u8()? != 0);
                    Op::Unbind { client, notify, group: r.str()? }
                }
                4 => Op::Close { client: r.client()?, notify: r.u8()? != 0 },
                _ => return None,
            };
            Some(NodeMsg::Request { origin, corr, system, op })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(node: u32, slot: u32) -> ClientRef {
        ClientRef { node, conn: ConnId { shard: 1, slot, gen: 7 } }
    }

    #[test]
    fn requests_round_trip() {
        let ops = [
            Op::SendToClients {
                clients: vec![c(1, 2), c(3, 4)],
                frame: Bytes::from_static(b"\x81\x02hi"),
                message_id: "m1".into(),
                strict: true,
            },
            Op::Bind {
                client: c(9, 1),
                group: "g:1".into(),
                user_id: Some("u".into()),
                extend: "{}".into(),
                notify: false,
            },
            Op::Bind { client: c(9, 2), group: "g".into(), user_id: None, extend: "".into(), notify: true },
            Op::Unbind { client: c(9, 1), group: "日本".into(), notify: true },
            Op::Close { client: c(2, 3), notify: false },
        ];
        for op in ops {
            let p = request(5, 77, "sys", &op).expect("forwardable");
            let Some(NodeMsg::Request { origin: 5, corr: 77, system, op: back }) = parse_node_msg(&p) else {
                panic!("bad parse")
            };
            assert_eq!(&*system, "sys");
            assert_eq!(format!("{op:?}"), format!("{back:?}"));
            // Every truncation is refused, never a panic.
            for n in 0..p.len() {
                if let Some(NodeMsg::Request { op, .. }) = parse_node_msg(&p[..n]) {
                    assert!(matches!(op, Op::SendToClients { .. }), "only a frame may be cut short");
                }
            }
        }
        assert!(request(1, 1, "s", &Op::AllGroups { page: None }).is_none());
    }

    #[test]
    fn answers_and_deliveries_round_trip() {
        let p = answer(42, 404, b"{\"code\":404}");
        match parse_node_msg(&p) {
            Some(NodeMsg::Answer { corr: 42, status: 404, body }) => assert_eq!(&body[..], b"{\"code\":404}"),
            other => panic!("{other:?}"),
        }
        let at = Pos { origin: 7, epoch: 3, seq: 99 };
        let d = delivery(at, b"frame");
        assert_eq!(parse_delivery(&d), Some(Delivery::Frame { at: Some(at), frame: &b"frame"[..] }));
        let old = [&b"D\0\0\0\x07"[..], b"frame"].concat();
        assert_eq!(parse_delivery(&old), Some(Delivery::Frame { at: None, frame: &b"frame"[..] }), "an older node's");
        assert_eq!(parse_delivery(&skip(at)), Some(Delivery::Skip { at }));
        let c = ClientRef { node: 3, conn: ConnId { shard: 1, slot: 2, gen: 3 } };
        let j = joined(at, &c.id(), b"notice");
        assert_eq!(
            parse_delivery(&j),
            Some(Delivery::Joined { at: Some(at), client: c, notice: Some(&b"notice"[..]) })
        );
        let bare = joined(at, &c.id(), b"");
        assert_eq!(parse_delivery(&bare), Some(Delivery::Joined { at: Some(at), client: c, notice: None }));
        let old = [&b"J"[..], c.id().as_bytes()].concat();
        assert_eq!(parse_delivery(&old), Some(Delivery::Joined { at: None, client: c, notice: None }));
        assert_eq!(parse_delivery(&j[..30]), None);
        assert_eq!(parse_delivery(b"x"), None);
        assert_eq!(parse_delivery(b"Z\0\0\0\0"), None);
        assert_eq!(parse_hello(&hello(0xabcd_0123)), Some(0xabcd_0123));
        assert_eq!(parse_hello(b"H\0\0\0"), None);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = fastrand::Rng::with_seed(4);
        for _ in 0..20_000 {
            let n = rng.usize(0..64);
            let mut v: Vec<u8> = (0..n).map(|_| rng.u8(..)).collect();
            if !v.is_empty() && rng.bool() {
                v[0] = *rng.choice(&[REQUEST, ANSWER]).unwrap_or(&REQUEST);
            }
            let _ = parse_node_msg(&v);
            let _ = parse_delivery(&v);
        }
    }
}
