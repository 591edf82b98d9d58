//! A minimal WebSocket client over a raw `TcpStream`, for what tungstenite's client does not
//! do: offering permessage-deflate and seeing each frame's RSV1 bit. Compression on the test
//! side uses miniz_oxide, an implementation independent of the server's (zlib-rs).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One frame from the server.
#[derive(Debug)]
pub struct Frame {
    pub fin: bool,
    pub rsv1: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The message it carries: inflated if RSV1 is set.
    pub fn message(&self) -> Vec<u8> {
        if self.rsv1 {
            inflate(&self.payload)
        } else {
            self.payload.clone()
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.message()).expect("JSON message")
    }
}

/// Inflates one permessage-deflate message (RFC 7692 §7.2.2: append 00 00 ff ff; an empty
/// final block then ends the stream for a one-shot decoder).
pub fn inflate(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d.extend_from_slice(&[0x00, 0x00, 0xff, 0xff, 0x03, 0x00]);
    miniz_oxide::inflate::decompress_to_vec(&d).expect("valid deflate data")
}

/// Compresses a message as a client would (a complete raw deflate stream).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    miniz_oxide::deflate::compress_to_vec(data, 6)
}

pub struct RawWs {
    pub sock: TcpStream,
    /// The server's 101 (or refusal) head.
    pub head: String,
    buf: Vec<u8>,
}

impl RawWs {
    /// Opens `path` with `extensions` as the `Sec-WebSocket-Extensions` offer (if any).
    pub fn connect(addr: SocketAddr, path: &str, extensions: Option<&str>) -> RawWs {
        let mut sock = TcpStream::connect(addr).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let ext = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
        );
        sock.write_all(req.as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = sock.read(&mut chunk).expect("read handshake");
            assert!(n > 0, "closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        RawWs { sock, head, buf }
    }

    /// The value of `name` in the 101.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The next frame, or `None` when the connection ends (or times out).
    pub fn frame(&mut self) -> Option<Frame> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some((f, used)) = parse(&self.buf) {
                self.buf.drain(..used);
                return Some(f);
            }
            match self.sock.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next data frame (pings answered with nothing, pongs skipped).
    pub fn data(&mut self) -> Option<Frame> {
        loop {
            let f = self.frame()?;
            if f.opcode != 0x9 && f.opcode != 0xA {
                return Some(f);
            }
        }
    }

    /// Sends one masked frame.
    pub fn send(&mut self, opcode: u8, rsv1: bool, fin: bool, payload: &[u8]) {
        let mut f = vec![(u8::from(fin) << 7) | (u8::from(rsv1) << 6) | opcode];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n <= 65535 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        let _ = self.sock.write_all(&f);
    }
}

fn parse(b: &[u8]) -> Option<(Frame, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (mut at, len) = match b[1] & 0x7f {
        126 => (4, u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as usize),
        127 => (10, u64::from_be_bytes(b.get(2..10)?.try_into().ok()?) as usize),
        n => (2, n as usize),
    };
    assert_eq!(b[1] & 0x80, 0, "server frames are never masked");
    let payload = b.get(at..at + len)?.to_vec();
    at += len;
    Some((Frame { fin: b[0] & 0x80 != 0, rsv1: b[0] & 0x40 != 0, opcode: b[0] & 0x0f, payload }, at))
}
