//! One TLS connection's state, with rustls's unbuffered API: the caller owns every buffer
//! (no sockets here; the shard reads and writes them: `shard/tls.rs`).
//!
//! A TLS connection carries a [`TlsConn`]: rustls's state (keys, handshake) plus ciphertext
//! that is waiting — a partial record received, or encrypted output the socket did not take
//! — and nothing else while idle (both buffers are released when empty). Reads decrypt from
//! a per-shard buffer into the shard's scratch buffer, which the HTTP/WebSocket parser then
//! reads exactly as it reads a plain socket's bytes. Writes take the queued shared frames
//! (invariant 2 holds up to here), coalesce up to one record's worth, encrypt into a
//! per-shard buffer and write; only what the socket refuses is copied into the connection.

use std::io::{self, Write};

/// The largest TLS record on the wire (RFC 8446 §5.2: 2^14 plaintext + 256 expansion, and the
/// 5-byte header; TLS 1.2 allows 2048 expansion): the most a partial record kept between reads
/// can hold.
pub const MAX_RECORD: usize = (1 << 14) + 2048 + 5;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{AppDataRecord, ConnectionState, EncodeError, EncryptError, UnbufferedStatus};

/// Plaintext encrypted into one record at most (TLS's maximum fragment).
pub(crate) const RECORD: usize = 16 * 1024;

/// A connection's TLS state.
pub struct TlsConn {
    conn: UnbufferedServerConnection,
    /// Ciphertext received but not processed yet (a partial record), only while there is some.
    inbuf: Vec<u8>,
    /// Ciphertext to send that the socket has not taken yet (handshake, or encrypted output).
    pub(crate) outbuf: Vec<u8>,
    /// The handshake is complete: application data flows.
    pub ready: bool,
    /// A close_notify was queued (the connection is ending).
    pub(crate) notified: bool,
    /// Shard clock when the handshake began (`tls_handshake_timeout`).
    pub since: u32,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn").field("ready", &self.ready).field("outbuf", &self.outbuf.len()).finish()
    }
}

/// What a read brought.
pub enum Received {
    /// This many bytes of application data were written to the output slice.
    Data(usize),
    /// The peer closed the TLS session (close_notify).
    Closed,
}

impl TlsConn {
    pub fn new(config: std::sync::Arc<rustls::ServerConfig>, now: u32) -> Result<Box<TlsConn>, rustls::Error> {
        let conn = UnbufferedServerConnection::new(config)?;
        Ok(Box::new(TlsConn { conn, inbuf: Vec::new(), outbuf: Vec::new(), ready: false, notified: false, since: now }))
    }

    /// Ciphertext waits to be written.
    pub fn has_output(&self) -> bool {
        !self.outbuf.is_empty()
    }

    /// Processes ciphertext `input` just read (after any partial record kept from before):
    /// application data is copied to `plain` (which must be at least as long as the
    /// ciphertext given), handshake messages are queued in the output.
    pub fn receive(&mut self, input: &mut [u8], plain: &mut [u8]) -> Result<Received, rustls::Error> {
        // The copy into `plain` relies on this (the sizes are checked at compile time in mod.rs).
        assert!(self.inbuf.len() + input.len() <= plain.len(), "TLS plaintext would not fit the scratch buffer");
        if self.inbuf.is_empty() {
            let (used, r) = self.process(input, plain);
            if used < input.len() {
                self.inbuf.extend_from_slice(&input[used..]);
            }
            r
        } else {
            let mut buf = std::mem::take(&mut self.inbuf);
            buf.extend_from_slice(input);
            let (used, r) = self.process(&mut buf, plain);
            buf.drain(..used);
            if !buf.is_empty() {
                self.inbuf = buf;
            }
            r
        }
    }

    /// Runs rustls over `buf`; returns how much of it is consumed and what it brought.
    fn process(&mut self, buf: &mut [u8], plain: &mut [u8]) -> (usize, Result<Received, rustls::Error>) {
        let (mut used, mut got) = (0, 0);
        loop {
            let UnbufferedStatus { mut discard, state } = self.conn.process_tls_records(&mut buf[used..]);
            let state = match state {
                Ok(s) => s,
                Err(e) => return (used + discard, Err(e)),
            };
            match state {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        match rec {
                            Ok(AppDataRecord { discard: d, payload }) => {
                                discard += d;
                                plain[got..got + payload.len()].copy_from_slice(payload);
                                got += payload.len();
                            }
                            Err(e) => return (used + discard, Err(e)),
                        }
                    }
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let at = self.outbuf.len();
                    self.outbuf.resize(at + 4096, 0);
                    let n = match e.encode(&mut self.outbuf[at..]) {
                        Ok(n) => n,
                        Err(EncodeError::InsufficientSize(s)) => {
                            self.outbuf.resize(at + s.required_size, 0);
                            match e.encode(&mut self.outbuf[at..]) {
                                Ok(n) => n,
                                Err(_) => return (used + discard, Err(rustls::Error::General("encode".into()))),
                            }
                        }
                        Err(_) => return (used + discard, Err(rustls::Error::General("encode".into()))),
                    };
                    self.outbuf.truncate(at + n);
                }
                // The bytes are in `outbuf`; the shard writes them before anything else.
                ConnectionState::TransmitTlsData(t) => t.done(),
                ConnectionState::BlockedHandshake => return (used + discard, Ok(Received::Data(got))),
                ConnectionState::WriteTraffic(_) => {
                    self.ready = true;
                    return (used + discard, Ok(Received::Data(got)));
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => return (used + discard, Ok(Received::Closed)),
                // Early data is not enabled (max_early_data_size 0); anything new: stop here.
                _ => return (used + discard, Ok(Received::Data(got))),
            }
            used += discard;
        }
    }

    /// Encrypts `plain` (at most [`RECORD`] bytes make one record) onto the end of `out`.
    pub(crate) fn encrypt(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), rustls::Error> {
        self.write_with(out, plain.len() + 64, |w, buf| w.encrypt(plain, buf))
    }

    /// Queues a close_notify alert onto `out` (once).
    pub(crate) fn close_notify(&mut self, out: &mut Vec<u8>) {
        if !std::mem::replace(&mut self.notified, true) && self.ready {
            let _ = self.write_with(out, 64, |w, buf| w.queue_close_notify(buf));
        }
    }

    fn write_with(
        &mut self,
        out: &mut Vec<u8>,
        guess: usize,
        mut f: impl FnMut(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut [u8],
        ) -> Result<usize, EncryptError>,
    ) -> Result<(), rustls::Error> {
        // Only partial records wait in `inbuf`: rustls has nothing to process and can write.
        let UnbufferedStatus { state, .. } = self.conn.process_tls_records(&mut self.inbuf);
        let Ok(ConnectionState::WriteTraffic(mut w)) = state else {
            return Err(rustls::Error::General("TLS connection cannot send now".into()));
        };
        let at = out.len();
        out.resize(at + guess, 0);
        let n = match f(&mut w, &mut out[at..]) {
            Ok(n) => n,
            Err(EncryptError::InsufficientSize(s)) => {
                out.resize(at + s.required_size, 0);
                f(&mut w, &mut out[at..]).map_err(|e| rustls::Error::General(e.to_string()))?
            }
            Err(e) => return Err(rustls::Error::General(e.to_string())),
        };
        out.truncate(at + n);
        Ok(())
    }

    /// Writes what waits in `outbuf`; `Ok(true)` when all of it went.
    pub(crate) fn write_pending(&mut self, sock: &mut impl Write) -> io::Result<(bool, usize)> {
        let mut total = 0;
        while !self.outbuf.is_empty() {
            match sock.write(&self.outbuf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.outbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((false, total)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        self.outbuf = Vec::new();
        Ok((true, total))
    }
}
