//! permessage-deflate (RFC 7692), sans-IO: the negotiation, per-message compression and
//! bounded inflation (flate2 on zlib-rs).
//!
//! The server always answers `server_no_context_takeover; client_no_context_takeover`:
//! every message is compressed and inflated on its own, so
//! - a message is compressed **once** and the one compressed frame is shared by every
//!   compressing recipient (invariant 2), whoever they are;
//! - a connection keeps no compression state: one [`Deflater`] and one [`Inflater`] per
//!   shard serve all its connections (an idle connection costs one byte more, not ~300 KiB
//!   of zlib windows).
//!
//! A client may ask for a smaller server window (`server_max_window_bits=N`): the server
//! agrees, and sends it the shared compressed frame only for messages of at most 2^N bytes
//! (no back-reference can then reach further than 2^N), the plain frame otherwise (RFC 7692
//! lets each message be compressed or not).

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::ws::{close, header, WsError, MAX_HEADER};

/// The RSV1 bit: "this message is compressed".
pub const RSV1: u8 = 0x40;

/// The end of a sync flush, removed from each compressed message and put back to inflate.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// An accepted offer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The client's window for what the server sends, 8..=15 (15 unless it asked for less).
    pub server_window: u8,
    /// The `Sec-WebSocket-Extensions` value of the 101.
    pub response: String,
}

impl Agreed {
    /// Whether a message of `len` bytes may go to this client in the shared compressed frame.
    pub fn fits(server_window: u8, len: usize) -> bool {
        server_window >= 15 || len <= 1 << server_window
    }
}

/// The first acceptable `permessage-deflate` offer among the client's
/// `Sec-WebSocket-Extensions` values (comma-separated, in order of preference), or `None`
/// (the connection then goes uncompressed).
pub fn negotiate(offers: &str) -> Option<Agreed> {
    offers.split(',').find_map(accept)
}

fn accept(offer: &str) -> Option<Agreed> {
    let mut parts = offer.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let (mut snct, mut cnct, mut smwb, mut cmwb) = (false, false, None, false);
    for p in parts {
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        let seen = match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => std::mem::replace(&mut snct, true),
            ("client_no_context_takeover", None) => std::mem::replace(&mut cnct, true),
            ("server_max_window_bits", Some(v)) => smwb.replace(window_bits(v)?).is_some(),
            ("client_max_window_bits", v) => {
                if let Some(v) = v {
                    window_bits(v)?;
                }
                std::mem::replace(&mut cmwb, true)
            }
            // An unknown parameter, or a known one with a value it must not have (or without
            // one it needs): this offer cannot be accepted.
            _ => return None,
        };
        if seen {
            return None; // a parameter twice
        }
    }
    let mut response = "permessage-deflate; server_no_context_takeover; client_no_context_takeover".to_string();
    if let Some(n) = smwb {
        response += &format!("; server_max_window_bits={n}");
    }
    Some(Agreed { server_window: smwb.unwrap_or(15), response })
}

/// `8`..=`15`, digits only, no leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| (8..=15).contains(n))
}

/// Compresses messages, one at a time, each on its own (no context kept between them).
pub struct Deflater {
    z: Compress,
}

impl Deflater {
    /// `level`: 1 (fastest) ..= 9 (smallest).
    pub fn new(level: u32) -> Self {
        Deflater { z: Compress::new(Compression::new(level.clamp(1, 9)), false) }
    }

    /// A complete compressed server frame (RSV1 set) carrying `payload` as a message of
    /// `opcode`; `None` if compressing does not make it smaller (send it plain).
    pub fn frame(&mut self, opcode: u8, payload: &[u8]) -> Option<Bytes> {
        if payload.is_empty() {
            return None;
        }
        self.z.reset();
        let mut v: Vec<u8> = Vec::with_capacity(MAX_HEADER + payload.len() / 2 + 64);
        v.resize(MAX_HEADER, 0);
        loop {
            let done = self.z.total_in() as usize;
            if v.len() == v.capacity() {
                v.reserve(payload.len() / 2 + 64);
            }
            self.z.compress_vec(&payload[done..], &mut v, FlushCompress::Sync).ok()?;
            // Finished when all input is in and the flush fit (room was left over).
            if self.z.total_in() as usize == payload.len() && v.len() < v.capacity() {
                break;
            }
        }
        if !v.ends_with(&TAIL) {
            return None;
        }
        v.truncate(v.len() - TAIL.len());
        let len = v.len() - MAX_HEADER;
        if len >= payload.len() {
            return None;
        }
        let (mut h, n) = header(opcode, len);
        h[0] |= RSV1;
        let start = MAX_HEADER - n;
        v[start..MAX_HEADER].copy_from_slice(&h[..n]);
        Some(Bytes::from(v).slice(start..))
    }
}

/// Inflates compressed messages from clients, each on its own, with bounded output.
pub struct Inflater {
    z: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater { z: Decompress::new(false) }
    }
}

impl Inflater {
    /// The message compressed in `data` (payloads of its frames, joined), at most `max`
    /// bytes of it: beyond, close 1009 — a few KiB of "zip bomb" costs `max` bytes, no more.
    pub fn message(&mut self, data: &[u8], max: usize) -> Result<Vec<u8>, WsError> {
        self.z.reset(false);
        let mut out: Vec<u8> = Vec::with_capacity((data.len() * 4).max(64).min(max.saturating_add(1)));
        for input in [data, &TAIL[..]] {
            let start = self.z.total_in();
            loop {
                if out.len() == out.capacity() {
                    if out.len() > max {
                        return Err(WsError { code: close::TOO_BIG, reason: "message too big (inflated)" });
                    }
                    out.reserve_exact((max + 1 - out.len()).min(out.len().max(64)));
                }
                let (before_in, before_out) = (self.z.total_in(), out.len());
                let used = (before_in - start) as usize;
                let status = self
                    .z
                    .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| WsError { code: close::INVALID_DATA, reason: "invalid compressed data" })?;
                if status == Status::StreamEnd {
                    // A final block: the message ends there.
                    return Self::bounded(out, max);
                }
                let all_in = (self.z.total_in() - start) as usize == input.len();
                let stuck = self.z.total_in() == before_in && out.len() == before_out;
                if (all_in && out.len() < out.capacity()) || stuck {
                    break;
                }
            }
        }
        Self::bounded(out, max)
    }

    fn bounded(out: Vec<u8>, max: usize) -> Result<Vec<u8>, WsError> {
        if out.len() > max {
            return Err(WsError { code: close::TOO_BIG, reason: "message too big (inflated)" });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ws::{payload, OP_TEXT};

    #[test]
    fn negotiation() {
        let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        let a = negotiate("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!((a.server_window, a.response.as_str()), (15, base));
        let a = negotiate("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10").unwrap();
        assert_eq!(a.server_window, 10);
        assert_eq!(a.response, format!("{base}; server_max_window_bits=10"));
        let a = negotiate("Permessage-Deflate; Server_No_Context_Takeover; client_max_window_bits=\"9\"").unwrap();
        assert_eq!(a.server_window, 15);
        // Offers that cannot be accepted; a later acceptable one is taken.
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=x",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "deflate-frame",
            "",
        ] {
            assert_eq!(negotiate(bad), None, "{bad}");
            let a = negotiate(&format!("{bad}, permessage-deflate; server_max_window_bits=12")).unwrap();
            assert_eq!(a.server_window, 12, "{bad}");
        }
    }

    #[test]
    fn window_fits() {
        assert!(Agreed::fits(15, 1 << 30));
        assert!(Agreed::fits(8, 256) && !Agreed::fits(8, 257));
    }

    #[test]
    fn compressed_frames_round_trip() {
        let mut d = Deflater::new(1);
        let mut i = Inflater::default();
        let msg = br#"{"messageId":"dea33023f9b967c8","sendUserId":"bob","code":200,"msg":"hi","data":{"text":"hello hello hello hello hello"}}"#;
        for _ in 0..3 {
            // The same input gives the same frame each time (no context carried over).
            let f = d.frame(OP_TEXT, msg).unwrap();
            assert_eq!(f[0], 0x80 | RSV1 | OP_TEXT);
            assert!(f.len() < msg.len());
            assert_eq!(i.message(payload(&f), 1 << 20).unwrap(), msg);
        }
        let big: Vec<u8> = (0..200_000u32).map(|n| (n % 251) as u8 ^ (n / 7) as u8).collect();
        let f = d.frame(0x2, &big).unwrap();
        assert_eq!(i.message(payload(&f), big.len()).unwrap(), big);
        assert_eq!(i.message(payload(&f), big.len() - 1).unwrap_err().code, close::TOO_BIG);
        // Incompressible or empty: sent plain.
        assert_eq!(d.frame(OP_TEXT, b""), None);
        assert_eq!(d.frame(OP_TEXT, b"ab"), None);
    }

    #[test]
    fn a_zip_bomb_is_cut_at_the_bound() {
        let zeros = vec![0u8; 4 << 20];
        let f = Deflater::new(9).frame(0x2, &zeros).unwrap();
        assert!(payload(&f).len() < 10_000, "{}", payload(&f).len());
        let e = Inflater::default().message(payload(&f), 8192).unwrap_err();
        assert_eq!(e.code, close::TOO_BIG);
    }

    #[test]
    fn garbage_and_final_blocks() {
        let mut i = Inflater::default();
        assert_eq!(i.message(&[0xff, 0xff, 0xff, 0x00], 100).unwrap_err().code, close::INVALID_DATA);
        // A stream ended with a final block (BFINAL) is fine too.
        let mut z = Compress::new(Compression::new(6), false);
        let mut v = Vec::with_capacity(100);
        z.compress_vec(b"Hello", &mut v, FlushCompress::Finish).unwrap();
        assert_eq!(i.message(&v, 100).unwrap(), b"Hello");
        // The classic RFC 7692 example: "Hello" compressed.
        assert_eq!(i.message(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100).unwrap(), b"Hello");
        // An empty compressed message.
        assert_eq!(i.message(&[0x00], 100).unwrap(), b"");
        assert_eq!(i.message(&[], 100).unwrap(), b"");
    }

    #[test]
    fn random_and_mutated_input_never_panics_and_stays_bounded() {
        let mut rng = fastrand::Rng::with_seed(7692);
        let mut d = Deflater::new(1);
        let mut i = Inflater::default();
        let text: Vec<u8> = (0..3000).map(|n| b"roomcast json {\"k\":1} "[n % 22]).collect();
        let valid = d.frame(0x1, &text).unwrap();
        let valid = payload(&valid).to_vec();
        for n in 0..20_000 {
            let input = crate::protocol::fuzz_input(&mut rng, n, &valid, 200);
            let max = rng.usize(0..5000);
            if let Ok(out) = i.message(&input, max) {
                assert!(out.len() <= max);
            }
        }
        // Still a working inflater after all that.
        assert_eq!(i.message(&valid, 1 << 20).unwrap(), text);
        for _ in 0..200 {
            let opts = (0..rng.usize(0..6))
                .map(|_| {
                    ["permessage-deflate", ";", ",", "=", "server_max_window_bits", "15", "\"", " ", "x"]
                        [rng.usize(0..9)]
                })
                .collect::<String>();
            let _ = negotiate(&opts);
        }
    }
}
