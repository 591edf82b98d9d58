//! The byte codec of the messages nodes send each other (pure): big-endian integers,
//! length-prefixed bytes and strings, connection ids. The leaf under `cluster::wire` and
//! `protocol::relay`.

use crate::ids::{ClientRef, ConnId};

/// Writes big-endian integers and length-prefixed bytes.
pub struct W(pub Vec<u8>);

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

/// Reads what [`W`] wrote; every read is `None` past the end.
pub struct R<'a>(pub &'a [u8]);

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
