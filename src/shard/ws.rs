//! The shard's WebSocket input side: frames → messages → client commands (or echo).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::conn::Fragments;
use super::lifecycle::react::Event;
use super::{Shard, State};
use crate::metrics;
use crate::msg::Command;
use crate::protocol::ws::{self as wsp, close, Kind};

/// A text message a `/ws` client may send. Anything else is ignored, as upstream did.
#[derive(Deserialize)]
struct ClientCmd<'a> {
    cmd: &'a str,
    #[serde(rename = "groupName")]
    group_name: Option<String>,
    code: Option<i64>,
    msg: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
}

impl Shard {
    /// Parses frames from `data` (unmasking in place); returns bytes consumed.
    pub(super) fn ws_input(&mut self, slot: usize, data: &mut [u8]) -> usize {
        let state = self.conns[slot].state;
        let max = match state {
            State::Echo => self.shared.cfg.echo_max_message_size,
            _ => self.shared.cfg.max_message_size,
        };
        let deflate = self.conns[slot].deflate != 0;
        let mut pos = 0;
        loop {
            if self.conns.get(slot).is_none_or(|c| c.state != state) {
                return data.len();
            }
            let f = match wsp::parse_frame(&data[pos..], max, deflate) {
                Ok(Some(f)) => f,
                Ok(None) => return pos,
                Err(e) => {
                    self.ws_error(slot, e.code, e.reason);
                    return data.len();
                }
            };
            let payload = (pos + f.payload.start)..(pos + f.payload.end);
            pos = payload.end;
            wsp::unmask(&mut data[payload.clone()], f.mask, 0);
            let p = &data[payload];
            match f.kind {
                Kind::Ping => {
                    let pong = wsp::frame(wsp::OP_PONG, p);
                    self.queue(slot, pong);
                }
                Kind::Pong if self.conns[slot].state == State::Edge => {
                    // An acknowledgement for the session's owner (a plain pong has no payload).
                    if let Ok(upto) = <[u8; 8]>::try_from(p) {
                        self.edge_event(slot, crate::protocol::relay::Event::Ack(u64::from_be_bytes(upto)));
                    }
                }
                Kind::Pong => self.ack(slot, p),
                Kind::Close => {
                    let (code, reason) = match wsp::check_close_payload(p) {
                        Ok(Some(code)) => (code, ""),
                        Ok(None) => (close::NORMAL, ""),
                        Err(e) => (e.code, e.reason),
                    };
                    self.on_event(slot, Event::ClientClosed { code, reason });
                    return data.len();
                }
                Kind::Text | Kind::Binary | Kind::Continuation => {
                    if let Err((code, reason)) = self.data_frame(slot, (f.kind, f.compressed), f.fin, p, max) {
                        self.ws_error(slot, code, reason);
                        return data.len();
                    }
                }
            }
        }
    }

    fn ws_error(&mut self, slot: usize, code: u16, reason: &'static str) {
        let st = self.stats();
        metrics::add(if code == close::TOO_BIG { &st.oversized_closes_total } else { &st.protocol_closes_total }, 1);
        if self.log_ok() {
            tracing::info!(shard = self.id, slot, code, reason, "closing WebSocket: bad input");
        }
        self.on_event(slot, Event::BadInput { code, reason });
    }

    /// One data frame: assembles fragments, then handles the complete message (inflated
    /// first if compressed: `max` bounds the compressed size, and the inflated size on `/ws`;
    /// on the echo path `echo_max_inflated_size` bounds the inflated size, so a small message
    /// that inflates a thousandfold cannot make the server inflate and deflate megabytes).
    fn data_frame(
        &mut self,
        slot: usize,
        (kind, compressed): (Kind, bool),
        fin: bool,
        p: &[u8],
        max: usize,
    ) -> Result<(), (u16, &'static str)> {
        let conn = &mut self.conns[slot];
        let whole: Option<(Kind, bool, Vec<u8>)> = match (kind, conn.frag.as_mut()) {
            (Kind::Continuation, None) => return Err((close::PROTOCOL_ERROR, "continuation without a message")),
            (Kind::Continuation, Some(fr)) => {
                if fr.data.len() + p.len() > max {
                    return Err((close::TOO_BIG, "message too big"));
                }
                fr.data.extend_from_slice(p);
                if fin {
                    conn.frag.take().map(|fr| (fr.kind, fr.compressed, fr.data))
                } else {
                    None
                }
            }
            (_, Some(_)) => return Err((close::PROTOCOL_ERROR, "new message inside a fragmented one")),
            (k, None) if fin && !compressed => {
                return self.message(slot, k, p);
            }
            (k, None) if fin => Some((k, true, p.to_vec())),
            (k, None) => {
                conn.frag = Some(Box::new(Fragments { kind: k, compressed, data: p.to_vec() }));
                None
            }
        };
        match whole {
            Some((k, false, data)) => self.message(slot, k, &data),
            Some((k, true, data)) => {
                let cfg = &self.shared.cfg;
                let inflated_max = match self.conns[slot].state {
                    State::Echo => cfg.echo_max_inflated_size.min(max),
                    _ => max,
                };
                let data = self.inflate(&data, inflated_max).map_err(|e| (e.code, e.reason))?;
                self.message(slot, k, &data)
            }
            None => Ok(()),
        }
    }

    /// A complete message.
    fn message(&mut self, slot: usize, kind: Kind, p: &[u8]) -> Result<(), (u16, &'static str)> {
        if kind == Kind::Text && std::str::from_utf8(p).is_err() {
            return Err((close::INVALID_DATA, "text message is not valid UTF-8"));
        }
        metrics::add(&self.stats().client_messages_total, 1);
        match self.conns[slot].state {
            State::Echo => {
                let op = if kind == Kind::Text { wsp::OP_TEXT } else { wsp::OP_BINARY };
                let f = self.own_frame(slot, op, p);
                self.queue(slot, f);
            }
            State::Client { hub_knows: true } if kind == Kind::Text => self.client_command(slot, p),
            State::Edge if kind == Kind::Text => self.edge_command(slot, p),
            _ => {}
        }
        Ok(())
    }

    /// A client command on an edge: a ping is answered here, a publish goes to the session's
    /// owner (its hub knows the groups).
    fn edge_command(&mut self, slot: usize, p: &[u8]) {
        let Ok(cmd) = serde_json::from_slice::<ClientCmd<'_>>(p) else { return };
        match cmd.cmd {
            "ping" => self.queue(slot, wsp::frame(wsp::OP_TEXT, br#"{"cmd":"pong"}"#)),
            "publish" => self.edge_event(slot, crate::protocol::relay::Event::Publish(p.into())),
            _ => {}
        }
    }

    pub(super) fn client_command(&mut self, slot: usize, p: &[u8]) {
        let Ok(cmd) = serde_json::from_slice::<ClientCmd<'_>>(p) else { return };
        match cmd.cmd {
            "ping" => self.queue(slot, wsp::frame(wsp::OP_TEXT, br#"{"cmd":"pong"}"#)),
            "publish" => {
                let reply =
                    |msg: &str| wsp::frame(wsp::OP_TEXT, format!(r#"{{"cmd":"error","msg":"{msg}"}}"#).as_bytes());
                if !self.shared.cfg.client_publish {
                    return self.queue(slot, reply("client publishing is disabled on this server"));
                }
                let Some(group) = cmd.group_name.filter(|g| !g.is_empty()) else {
                    return self.queue(slot, reply("publish: groupName is required"));
                };
                let data = cmd
                    .data
                    .map(|d| d.to_owned())
                    .unwrap_or_else(|| RawValue::from_string("\"\"".into()).expect("valid JSON literal"));
                let conn = self.conn_id(slot);
                let c = Command::Publish {
                    conn,
                    group: group.into(),
                    code: cmd.code.unwrap_or(0),
                    msg: cmd.msg.unwrap_or_default().into(),
                    data,
                };
                if self.send_hub(c).is_err() {
                    metrics::add(&self.stats().hub_busy_total, 1);
                    self.queue(slot, reply("server busy, retry later"));
                }
            }
            _ => {}
        }
    }
}
