//! WebSocket (RFC 6455) frame codec, sans-IO, built on tungstenite's `FrameHeader`.
//!
//! [`parse_frame`] returns `Ok(None)` and consumes nothing on incomplete input. Frames from
//! clients must be masked; RSV1 is allowed on the first frame of a data message when
//! permessage-deflate was negotiated (`protocol::deflate`), other RSV bits are errors.

use std::io::Cursor;

use bytes::{BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};
use tungstenite::protocol::frame::FrameHeader;

/// Close codes used by the server.
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    /// Service restart: the client should reconnect (and resume).
    pub const RESTART: u16 = 1012;
}

/// What kind of frame arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Kind {
    pub fn is_control(self) -> bool {
        matches!(self, Kind::Close | Kind::Ping | Kind::Pong)
    }
}

/// A parsed client frame: header facts plus where its payload sits in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    pub fin: bool,
    pub kind: Kind,
    pub mask: [u8; 4],
    /// RSV1: the message this frame starts is compressed (permessage-deflate).
    pub compressed: bool,
    /// Payload range in the input buffer.
    pub payload: std::ops::Range<usize>,
}

/// A protocol violation: the connection is closed with `code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsError {
    pub code: u16,
    pub reason: &'static str,
}

impl WsError {
    const fn new(code: u16, reason: &'static str) -> Self {
        WsError { code, reason }
    }
}

/// Parses one frame at the start of `buf`. `max_payload` bounds a single frame's payload
/// (close 1009 beyond it); `deflate`: permessage-deflate was negotiated (RSV1 allowed on
/// a message's first frame).
pub fn parse_frame(buf: &[u8], max_payload: usize, deflate: bool) -> Result<Option<FrameInfo>, WsError> {
    let mut cur = Cursor::new(buf);
    let (hdr, len) = match FrameHeader::parse(&mut cur) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(_) => return Err(WsError::new(close::PROTOCOL_ERROR, "reserved opcode")),
    };
    if (hdr.rsv1 && !deflate) || hdr.rsv2 || hdr.rsv3 {
        return Err(WsError::new(close::PROTOCOL_ERROR, "reserved bits set without extension"));
    }
    let Some(mask) = hdr.mask else {
        return Err(WsError::new(close::PROTOCOL_ERROR, "client frames must be masked"));
    };
    let kind = match hdr.opcode {
        OpCode::Data(Data::Continue) => Kind::Continuation,
        OpCode::Data(Data::Text) => Kind::Text,
        OpCode::Data(Data::Binary) => Kind::Binary,
        OpCode::Control(Control::Close) => Kind::Close,
        OpCode::Control(Control::Ping) => Kind::Ping,
        OpCode::Control(Control::Pong) => Kind::Pong,
        _ => return Err(WsError::new(close::PROTOCOL_ERROR, "reserved opcode")),
    };
    if kind.is_control() && (len > 125 || !hdr.is_final) {
        return Err(WsError::new(close::PROTOCOL_ERROR, "invalid control frame"));
    }
    if hdr.rsv1 && (kind.is_control() || kind == Kind::Continuation) {
        return Err(WsError::new(close::PROTOCOL_ERROR, "RSV1 on a control or continuation frame"));
    }
    if len > max_payload as u64 {
        return Err(WsError::new(close::TOO_BIG, "message too big"));
    }
    let start = cur.position() as usize;
    let end = start + len as usize;
    if buf.len() < end {
        return Ok(None);
    }
    Ok(Some(FrameInfo { fin: hdr.is_final, kind, mask, compressed: hdr.rsv1, payload: start..end }))
}

/// Unmasks `data` in place; `offset` is the position of `data[0]` within the payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut m = mask;
    m.rotate_left(offset % 4);
    let mut chunks = data.chunks_exact_mut(4);
    let word = u32::from_ne_bytes(m);
    for c in &mut chunks {
        let v = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]) ^ word;
        c.copy_from_slice(&v.to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i];
    }
}

/// Largest server frame header (unmasked, 64-bit length).
pub const MAX_HEADER: usize = 10;

/// Header bytes of an unmasked server frame of `opcode` carrying `len` payload bytes.
pub fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut h = [0u8; MAX_HEADER];
    h[0] = 0x80 | opcode;
    if len < 126 {
        h[1] = len as u8;
        (h, 2)
    } else if len <= u16::MAX as usize {
        h[1] = 126;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        (h, 4)
    } else {
        h[1] = 127;
        h[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        (h, 10)
    }
}

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Builds one complete server frame (one allocation, one copy of the payload).
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let (h, n) = header(opcode, payload.len());
    let mut b = BytesMut::with_capacity(n + payload.len());
    b.put_slice(&h[..n]);
    b.put_slice(payload);
    b.freeze()
}

/// A text frame whose payload is written by `fill` straight after a reserved header gap, so
/// the JSON is never copied: the header is written right-aligned into the gap afterwards.
pub fn text_frame_with(cap: usize, fill: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut v = Vec::with_capacity(MAX_HEADER + cap);
    v.resize(MAX_HEADER, 0);
    fill(&mut v);
    let len = v.len() - MAX_HEADER;
    let (h, n) = header(OP_TEXT, len);
    let start = MAX_HEADER - n;
    v[start..MAX_HEADER].copy_from_slice(&h[..n]);
    Bytes::from(v).slice(start..)
}

/// Appends a text frame whose payload is `parts` joined.
pub fn push_text_frame(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let (h, n) = header(OP_TEXT, len);
    out.reserve(n + len);
    out.extend_from_slice(&h[..n]);
    for p in parts {
        out.extend_from_slice(p);
    }
}

/// The payload of a complete server frame (as built by [`frame`] or [`text_frame_with`]).
pub fn payload(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7f) {
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
        None => return &[],
    };
    frame.get(start..).unwrap_or(&[])
}

/// Most bytes of a close frame's reason (a control frame's payload is at most 125 bytes, two of
/// them the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// A close frame with `code` and `reason`, the reason cut to [`MAX_CLOSE_REASON`] bytes on a
/// character boundary (reasons may come from other nodes: a cut inside a character would oblige
/// the peer to fail the connection with 1007).
pub fn close_frame(code: u16, reason: &str) -> Bytes {
    let reason = cut_at_char(reason, MAX_CLOSE_REASON);
    let mut p = Vec::with_capacity(2 + reason.len());
    p.extend_from_slice(&code.to_be_bytes());
    p.extend_from_slice(reason.as_bytes());
    frame(OP_CLOSE, &p)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Validates a close frame payload from a client; returns the code to echo.
pub fn check_close_payload(p: &[u8]) -> Result<Option<u16>, WsError> {
    match p.len() {
        0 => Ok(None),
        1 => Err(WsError::new(close::PROTOCOL_ERROR, "close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([p[0], p[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(WsError::new(close::PROTOCOL_ERROR, "invalid close code"));
            }
            if std::str::from_utf8(&p[2..]).is_err() {
                return Err(WsError::new(close::INVALID_DATA, "close reason is not UTF-8"));
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod close_reason_tests {
    use super::*;

    /// Issue: close reasons were cut at byte 123 inside a multi-byte character, which obliges
    /// the peer to fail with 1007.
    #[test]
    fn close_reasons_are_cut_on_a_character_boundary() {
        for reason in ["é".repeat(100), "日本".repeat(40), "a".repeat(200), "ok".into()] {
            let f = close_frame(1000, &reason);
            let payload = payload(&f);
            assert!(payload.len() <= 125);
            let text = std::str::from_utf8(&payload[2..]).expect("valid UTF-8");
            assert!(reason.starts_with(text) && (text.len() == reason.len() || text.len() > 119), "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut v = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let n = payload.len();
        if n < 126 {
            v.push(0x80 | n as u8);
        } else if n <= 0xffff {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            v.push(0x80 | 127);
            v.extend_from_slice(&(n as u64).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        let mut p = payload.to_vec();
        unmask(&mut p, mask, 0);
        v.extend_from_slice(&p);
        v
    }

    #[test]
    fn parses_a_masked_text_frame_and_unmasks_it() {
        let raw = masked(OP_TEXT, true, b"hello world", [1, 2, 3, 4]);
        let f = parse_frame(&raw, 100, false).unwrap().unwrap();
        assert_eq!(f.kind, Kind::Text);
        assert!(f.fin);
        let mut p = raw[f.payload.clone()].to_vec();
        unmask(&mut p, f.mask, 0);
        assert_eq!(p, b"hello world");
    }

    #[test]
    fn unmask_in_pieces_equals_unmask_whole() {
        let data: Vec<u8> = (0..37u8).collect();
        let mask = [9, 8, 7, 6];
        let mut whole = data.clone();
        unmask(&mut whole, mask, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(5);
        unmask(a, mask, 0);
        unmask(b, mask, 5);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn incomplete_input_is_none_at_every_cut() {
        let raw = masked(OP_BINARY, true, &[7u8; 300], [5, 6, 7, 8]);
        for cut in 0..raw.len() {
            assert_eq!(parse_frame(&raw[..cut], 1000, false), Ok(None), "cut at {cut}");
        }
        assert!(parse_frame(&raw, 1000, false).unwrap().is_some());
    }

    #[test]
    fn rejects_unmasked_rsv_oversized_and_bad_control() {
        assert_eq!(parse_frame(&[0x81, 0x01, b'a'], 10, false).unwrap_err().code, close::PROTOCOL_ERROR);
        let mut rsv = masked(OP_TEXT, true, b"a", [0; 4]);
        rsv[0] |= 0x40;
        assert_eq!(parse_frame(&rsv, 10, false).unwrap_err().code, close::PROTOCOL_ERROR);
        // With permessage-deflate: RSV1 starts a compressed message; never on control or
        // continuation frames; RSV2/3 stay errors.
        assert!(parse_frame(&rsv, 10, true).unwrap().unwrap().compressed);
        assert!(!parse_frame(&masked(OP_TEXT, true, b"a", [0; 4]), 10, true).unwrap().unwrap().compressed);
        for (op, bits) in [(OP_PING, 0x40), (0x0, 0x40), (OP_TEXT, 0x20), (OP_TEXT, 0x10)] {
            let mut f = masked(op, true, b"a", [0; 4]);
            f[0] |= bits;
            assert_eq!(parse_frame(&f, 10, true).unwrap_err().code, close::PROTOCOL_ERROR, "{op} {bits:#x}");
        }
        let big = masked(OP_TEXT, true, &[0u8; 200], [0; 4]);
        assert_eq!(parse_frame(&big, 100, false).unwrap_err().code, close::TOO_BIG);
        let frag_ping = masked(OP_PING, false, b"", [0; 4]);
        assert_eq!(parse_frame(&frag_ping, 100, false).unwrap_err().code, close::PROTOCOL_ERROR);
        let long_ping = masked(OP_PING, true, &[0u8; 126], [0; 4]);
        assert_eq!(parse_frame(&long_ping, 1000, false).unwrap_err().code, close::PROTOCOL_ERROR);
        let reserved = masked(0x3, true, b"", [0; 4]);
        assert_eq!(parse_frame(&reserved, 100, false).unwrap_err().code, close::PROTOCOL_ERROR);
    }

    #[test]
    fn server_frames_have_minimal_headers() {
        assert_eq!(&frame(OP_TEXT, b"hi")[..], &[0x81, 2, b'h', b'i']);
        let f = frame(OP_BINARY, &[0u8; 200]);
        assert_eq!(&f[..4], &[0x82, 126, 0, 200]);
        let f = frame(OP_BINARY, &vec![0u8; 70_000]);
        assert_eq!(&f[..2], &[0x82, 127]);
        assert_eq!(f.len(), 70_010);
    }

    #[test]
    fn payload_of_any_size() {
        for n in [0usize, 125, 126, 65_535, 65_536] {
            let p = vec![b'y'; n];
            assert_eq!(payload(&frame(OP_TEXT, &p)), &p[..], "len {n}");
        }
        assert!(payload(b"").is_empty());
    }

    #[test]
    fn push_text_frame_matches_frame() {
        for n in [0usize, 1, 125, 126, 65_535, 65_536] {
            let payload = vec![b'x'; n];
            let (a, b) = payload.split_at(n / 2);
            let mut v = b"before".to_vec();
            push_text_frame(&mut v, &[a, b]);
            assert_eq!(&v[6..], &frame(OP_TEXT, &payload)[..], "len {n}");
        }
    }

    #[test]
    fn text_frame_with_matches_frame() {
        for n in [0usize, 5, 125, 126, 65_535, 65_536] {
            let payload = vec![b'x'; n];
            let a = text_frame_with(4, |v| v.extend_from_slice(&payload));
            assert_eq!(a, frame(OP_TEXT, &payload), "len {n}");
        }
    }

    #[test]
    fn close_payload_validation() {
        assert_eq!(check_close_payload(b""), Ok(None));
        assert!(check_close_payload(b"\x03").is_err());
        assert_eq!(check_close_payload(b"\x03\xe8ok"), Ok(Some(1000)));
        assert!(check_close_payload(b"\x03\xed").is_err()); // 1005 may not be sent
        assert!(check_close_payload(b"\x03\xe8\xff").is_err());
        assert_eq!(&close_frame(1008, "slow")[..], b"\x88\x06\x03\xf0slow");
    }
}

/// Randomized robustness: arbitrary and mutated bytes never panic, and a frame reported
/// complete always lies inside the input. (A seeded generator stands in for a fuzzer.)
#[cfg(test)]
mod fuzz {
    use super::*;

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let valid: Vec<u8> = {
            let mut v = vec![0x81, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4];
            v.extend(std::iter::repeat_n(b'a', 256));
            v
        };
        for i in 0..200_000 {
            let buf = crate::protocol::fuzz_input(&mut rng, i, &valid, 64);
            if let Ok(Some(f)) = parse_frame(&buf, 1 << 20, i % 3 == 0) {
                assert!(f.payload.end <= buf.len());
                assert!(!f.compressed || (i % 3 == 0 && !f.kind.is_control() && f.kind != Kind::Continuation));
                let mut p = buf[f.payload.clone()].to_vec();
                unmask(&mut p, f.mask, 0);
                let _ = check_close_payload(&p);
            }
        }
    }
}
