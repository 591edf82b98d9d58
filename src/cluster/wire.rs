//! What nodes publish to each other through Redis (pure): frames to deliver, forwarded
//! API calls and their answers. Binary, length-prefixed, big-endian; frames travel as the
//! exact bytes the origin built (invariant 2 across nodes).

use bytes::Bytes;

use crate::ids::{ClientRef, ConnId};
use crate::msg::{Frame, Op};

/// Group or system channel: a frame for every member, on every node (the origin's too:
/// everyone receives a group's frames in Redis's order).
const DELIVER: u8 = b'D';
/// Group channel: a client joined here, in Redis's order; maybe with its 1001 notice.
const JOINED: u8 = b'J';
const REQUEST: u8 = b'Q';
/// Cluster channel: a node (re)connected to Redis and takes calls for its clients.
const HELLO: u8 = b'H';
const ANSWER: u8 = b'R';

/// A frame for a group or system channel, published by node `origin`.
pub fn delivery(origin: u32, frame: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(5 + frame.len());
    v.push(DELIVER);
    v.extend_from_slice(&origin.to_be_bytes());
    v.extend_from_slice(frame);
    v
}

/// The marker a JOIN step publishes: `client` joined; `notice` (may be empty) follows.
pub fn joined(client_id: &str, notice: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + client_id.len() + notice.len());
    v.push(JOINED);
    v.extend_from_slice(client_id.as_bytes());
    v.extend_from_slice(notice);
    v
}

/// A node announcing itself on the cluster channel.
pub fn hello(node: u32) -> Vec<u8> {
    let mut v = vec![HELLO];
    v.extend_from_slice(&node.to_be_bytes());
    v
}

/// The node a hello announces; `None` for anything malformed.
pub fn parse_hello(p: &[u8]) -> Option<u32> {
    match p {
        [HELLO, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// What a group or system channel carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    Frame { origin: u32, frame: &'a [u8] },
    Joined { client: ClientRef, notice: Option<&'a [u8]> },
}

/// Reads a delivery; `None` for anything malformed.
pub fn parse_delivery(p: &[u8]) -> Option<Delivery<'_>> {
    let (&kind, rest) = p.split_first()?;
    match kind {
        DELIVER => {
            let origin = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
            Some(Delivery::Frame { origin, frame: &rest[4..] })
        }
        JOINED => {
            let id = std::str::from_utf8(rest.get(..crate::ids::CLIENT_ID_LEN)?).ok()?;
            let client = crate::ids::parse_client_ref(id)?;
            let notice = &rest[id.len()..];
            Some(Delivery::Joined { client, notice: (!notice.is_empty()).then_some(notice) })
        }
        _ => None,
    }
}

/// What arrives on a node's own channel.
#[derive(Debug)]
pub enum NodeMsg {
    Request { origin: u32, corr: u64, system: Box<str>, op: Op },
    Answer { corr: u64, status: u16, body: Bytes },
}

pub(super) struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
        self
    }
    pub fn client(&mut self, c: ClientRef) -> &mut Self {
        self.u32(c.node).conn(c.conn)
    }
    pub fn conn(&mut self, c: ConnId) -> &mut Self {
        self.u32(u32::from(c.shard)).u32(c.slot).u64(c.gen)
    }
}

pub(super) struct R<'a>(pub &'a [u8]);

impl<'a> R<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn str(&mut self) -> Option<Box<str>> {
        std::str::from_utf8(self.bytes()?).ok().map(Into::into)
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn client(&mut self) -> Option<ClientRef> {
        let node = self.u32()?;
        Some(ClientRef { node, conn: self.conn()? })
    }
    pub fn conn(&mut self) -> Option<ConnId> {
        let shard = u16::try_from(self.u32()?).ok()?;
        Some(ConnId { shard, slot: self.u32()?, gen: self.u64()? })
    }
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
        let d = delivery(7, b"frame");
        assert_eq!(parse_delivery(&d), Some(Delivery::Frame { origin: 7, frame: &b"frame"[..] }));
        let c = ClientRef { node: 3, conn: ConnId { shard: 1, slot: 2, gen: 3 } };
        let j = joined(&c.id(), b"notice");
        assert_eq!(parse_delivery(&j), Some(Delivery::Joined { client: c, notice: Some(&b"notice"[..]) }));
        assert_eq!(parse_delivery(&joined(&c.id(), b"")), Some(Delivery::Joined { client: c, notice: None }));
        assert_eq!(parse_delivery(&j[..20]), None);
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
