//! TLS on a shard's connections: the shard's side of [`crate::tls::TlsConn`] — reading
//! ciphertext from the socket into it and writing what it encrypts — so the HTTP/WebSocket
//! parser reads a TLS connection's bytes exactly as a plain socket's.

use std::io::{self, Read, Write};

use crate::tls::conn::RECORD;
pub use crate::tls::conn::{Received, TlsConn, MAX_RECORD};

use super::lifecycle::react::Event;
use super::Shard;
use crate::metrics;

impl Shard {
    /// [`Shard::on_readable`] for a TLS connection: read ciphertext, decrypt into the scratch
    /// buffer, parse as usual; send what the handshake needs.
    pub(super) fn on_readable_tls(&mut self, slot: usize, budget: usize) {
        for _ in 0..budget {
            let Some(conn) = self.conns.get(slot) else { return };
            if self.input_paused(conn) {
                self.conns[slot].deferred_read = true;
                return;
            }
            let conn = &mut self.conns[slot];
            let (Some(sock), Some(tls)) = (conn.sock.as_mut(), conn.tls.as_mut()) else { return };
            let n = match sock.read(&mut self.tls_in) {
                Ok(0) => return self.on_event(slot, Event::SocketLost),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.on_event(slot, Event::SocketLost),
            };
            let was_ready = tls.ready;
            let mut scratch = std::mem::take(&mut self.scratch);
            let r = tls.receive(&mut self.tls_in[..n], &mut scratch);
            let now = self.now();
            self.conns[slot].last_seen = now;
            let got = match r {
                Ok(Received::Data(got)) => got,
                Ok(Received::Closed) => {
                    self.scratch = scratch;
                    return self.on_event(slot, Event::SocketLost);
                }
                Err(e) => {
                    self.scratch = scratch;
                    return self.tls_failed(slot, n, e);
                }
            };
            let tls = self.conns[slot].tls.as_ref();
            let (ready, output) = (tls.is_some_and(|t| t.ready), tls.is_some_and(|t| t.has_output()));
            if !was_ready && ready {
                metrics::add(&self.stats().tls_handshakes_total, 1);
            }
            if output {
                self.mark_dirty(slot);
            }
            self.scratch = scratch;
            if got > 0 && !self.conns[slot].state.is_closing() {
                self.feed(slot, got);
            }
        }
        self.read_later(slot);
    }

    /// A TLS error: a plain HTTP request gets a plain 400 saying so; anything else is closed
    /// (rustls's alert is sent when there is one).
    fn tls_failed(&mut self, slot: usize, n: usize, e: rustls::Error) {
        metrics::add(&self.stats().tls_failures_total, 1);
        if self.log_ok() {
            tracing::info!(shard = self.id, slot, "TLS failed: {e}");
        }
        if looks_like_http(&self.tls_in[..n]) {
            if let Some(sock) = self.conns.get_mut(slot).and_then(|c| c.sock.as_mut()) {
                let _ = sock.write(PLAIN_TO_TLS);
            }
        } else if let Some(c) = self.conns.get_mut(slot) {
            if let (Some(sock), Some(tls)) = (c.sock.as_mut(), c.tls.as_mut()) {
                let _ = tls.write_pending(sock);
            }
        }
        self.on_event(slot, Event::SocketLost);
    }

    /// [`Shard::flush_one`]'s write for a TLS connection: pending ciphertext first, then the
    /// queued frames, one record's worth at a time. `Err` closes the connection.
    pub(super) fn write_tls(&mut self, slot: usize) -> io::Result<()> {
        let Shard { conns, tls_plain, tls_out, shared, id, .. } = self;
        let Some(conn) = conns.get_mut(slot) else { return Ok(()) };
        let (Some(sock), Some(tls)) = (conn.sock.as_mut(), conn.tls.as_mut()) else { return Ok(()) };
        let (mut bytes, mut calls) = (0usize, 0usize);
        let result = (|| {
            loop {
                if tls.has_output() {
                    calls += 1;
                    let (all, n) = tls.write_pending(sock)?;
                    bytes += n;
                    if !all {
                        return Ok(());
                    }
                }
                if !tls.ready {
                    return Ok(());
                }
                if conn.out.is_empty() {
                    if conn.state.is_closing() && !tls.notified {
                        // Everything is out: say so in TLS before the TCP half-close.
                        let mut alert = std::mem::take(&mut tls.outbuf);
                        tls.close_notify(&mut alert);
                        tls.outbuf = alert;
                        continue;
                    }
                    return Ok(());
                }
                tls_plain.clear();
                conn.out.copy_out(tls_plain, RECORD);
                tls_out.clear();
                tls.encrypt(tls_plain, tls_out).map_err(io::Error::other)?;
                let mut at = 0;
                while at < tls_out.len() {
                    calls += 1;
                    match sock.write(&tls_out[at..]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(n) => {
                            at += n;
                            bytes += n;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            tls.outbuf.extend_from_slice(&tls_out[at..]);
                            return Ok(());
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        })();
        let st = &shared.stats[*id as usize];
        metrics::add(&st.bytes_written_total, bytes as u64);
        metrics::add(&st.writev_calls_total, calls as u64);
        result
    }
}

/// A plain HTTP request sent to the TLS port: answered in plain text, then closed.
fn looks_like_http(b: &[u8]) -> bool {
    let method = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && b.get(method) == Some(&b' ')
}

const PLAIN_TO_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 75\r\nConnection: close\r\n\r\n{\"code\":-1,\"msg\":\"this port speaks TLS: use https:// or wss://\",\"data\":[]}";
