//! permessage-deflate on a shard (`compression`; the codec is `protocol::deflate`): which
//! form of a delivered message each client gets, compressed echoes, and inflating what
//! clients send. One deflater and one inflater per shard serve every connection (no context
//! takeover either way), so a connection only carries its negotiated window (`Conn::deflate`).

use std::sync::OnceLock;

use bytes::Bytes;

use super::{Buf, Shard};
use crate::metrics;
use crate::msg::Zipped;
use crate::protocol::deflate::{Agreed, Deflater, Inflater};
use crate::protocol::ws::{self as wsp, WsError};

/// The shard's compression state (only when `compression` is on).
pub(super) struct Zip {
    deflater: Deflater,
    pub(super) inflater: Inflater,
}

impl Zip {
    pub(super) fn new(level: usize) -> Box<Zip> {
        Box::new(Zip { deflater: Deflater::new(level as u32), inflater: Inflater::default() })
    }
}

/// A message being delivered on this shard: its plain frame, and its compressed frame once a
/// recipient needed it — made by the first shard to need it (the hub's shared cell), wrapped
/// once per shard.
pub(super) struct Outgoing {
    pub(super) plain: Buf,
    cell: Zipped,
    zipped: Option<Option<Buf>>,
}

impl Outgoing {
    pub(super) fn new(frame: Bytes, cell: Zipped) -> Self {
        Outgoing { plain: Buf::new(frame), cell, zipped: None }
    }
}

impl Shard {
    /// What a client with `deflate` (0: no compression, else its server window bits) gets of
    /// `out`: the shared compressed frame when there is one that fits its window, else the
    /// plain frame.
    pub(super) fn form_for(&mut self, deflate: u8, out: &mut Outgoing) -> Buf {
        if deflate == 0 {
            return out.plain.clone();
        }
        let Some(cell) = out.cell.as_deref() else { return out.plain.clone() };
        if !Agreed::fits(deflate, wsp::payload(&out.plain).len()) {
            return out.plain.clone();
        }
        if out.zipped.is_none() {
            out.zipped = Some(self.compressed(cell, &out.plain).map(Buf::new));
        }
        match out.zipped.clone().flatten() {
            Some(z) => {
                metrics::add(&self.stats().compressed_frames_total, 1);
                z
            }
            None => out.plain.clone(),
        }
    }

    /// The compressed form of `plain`, from `cell` or made now (once for all shards).
    fn compressed(&mut self, cell: &OnceLock<Option<Bytes>>, plain: &Bytes) -> Option<Bytes> {
        let zip = self.zip.as_deref_mut()?;
        let st = &self.shared.stats[self.id as usize];
        cell.get_or_init(|| {
            let payload = wsp::payload(plain);
            let z = zip.deflater.frame(plain[0] & 0x0f, payload);
            metrics::add(&st.compressions_total, 1);
            metrics::add(&st.compression_in_bytes_total, payload.len() as u64);
            metrics::add(
                &st.compression_out_bytes_total,
                z.as_ref().map_or(payload.len(), |z| wsp::payload(z).len()) as u64,
            );
            z
        })
        .clone()
    }

    /// A frame of this connection's own (an echo), compressed if it negotiated it and the
    /// message is large enough.
    pub(super) fn own_frame(&mut self, slot: usize, opcode: u8, payload: &[u8]) -> Bytes {
        let min = self.shared.cfg.compression_min_size;
        let deflate = self.conns[slot].deflate;
        if deflate != 0 && payload.len() >= min && Agreed::fits(deflate, payload.len()) {
            if let Some(z) = self.zip.as_deref_mut().and_then(|z| z.deflater.frame(opcode, payload)) {
                metrics::add(&self.stats().compressed_frames_total, 1);
                return z;
            }
        }
        wsp::frame(opcode, payload)
    }

    /// A compressed message from a client, inflated (at most `max` bytes).
    pub(super) fn inflate(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, WsError> {
        metrics::add(&self.stats().inflated_messages_total, 1);
        match self.zip.as_deref_mut() {
            Some(z) => z.inflater.message(data, max),
            // RSV1 is refused by the frame parser unless compression was negotiated.
            None => {
                Err(WsError { code: wsp::close::PROTOCOL_ERROR, reason: "compressed message without the extension" })
            }
        }
    }
}
