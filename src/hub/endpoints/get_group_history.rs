//! `get_group_history`: a group's last `limit` messages (at most `history_size`, its
//! default), oldest first, none older than `history_ttl`. 404 while `history_size` is 0.
//! Single node: the group's kept frames in the index (kept by `hub/single.rs` as they are
//! published); cluster: the group's history stream in Redis (appended by the broker).

use std::time::Instant;

use redis::Value;

use super::{Access, Endpoint, Request};
use crate::cluster::keys::Keys;
use crate::cluster::read::{self, More, Read, Then};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub, Local};
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{self, ApiError, Done};
use crate::protocol::ws as wsp;

pub(super) static ROW: Endpoint =
    Endpoint { name: "get_group_history", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    if r.limits.history == 0 {
        return Err(ApiError::new(404, "group history is off on this server (start it with history_size > 0)"));
    }
    let group = r.group()?;
    let limit = r.limit(r.limits.history)?;
    Ok(Op::GroupHistory { group, limit })
}

impl Hub {
    pub(super) fn group_history(&mut self, sys: SysId, group: Box<str>, limit: usize, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            None => here(l, sys, &group, limit),
            Some(c) => {
                let ttl_ms = l.cfg.history_ttl.as_millis() as u64;
                c.read(l, sys, to, |system| Box::new(HistoryRead { system, group, limit, ttl_ms }))
            }
        }
    }
}

/// A single node's answer: the kept frames younger than `history_ttl`.
fn here(l: &mut Local, sys: SysId, group: &str, limit: usize) -> Answer {
    let cutoff = Instant::now().checked_sub(l.cfg.history_ttl);
    let system = l.index.system(sys);
    let kept = system.histories.get(group);
    let recent = kept.into_iter().flatten().filter(|(t, _)| cutoff.is_none_or(|c| *t >= c));
    let n = recent.clone().count();
    let last = recent.skip(n.saturating_sub(limit)).map(|(_, f)| wsp::payload(f));
    Ok(Done::Body(api::history_body(last))).into()
}

/// Cluster mode's answer: the newest `limit` entries of the group's stream.
#[derive(Debug)]
struct HistoryRead {
    system: Box<str>,
    group: Box<str>,
    limit: usize,
    /// `history_ttl` in ms: older entries are left out.
    ttl_ms: u64,
}

impl Read for HistoryRead {
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline) {
        let key = k.history(&self.system, &self.group);
        p.cmd("XREVRANGE").arg(key).arg("+").arg("-").arg("COUNT").arg(self.limit);
    }

    fn answer(self: Box<Self>, _: &Keys, mut results: Vec<Value>, _: ConnId, _: &mut More<'_>) -> Option<Then> {
        let Value::Array(entries) = results.pop()? else { return None };
        // Entry ids are `<ms>-<n>`: older than history_ttl is gone (the stream's own expiry
        // only runs when it is idle that long).
        let cutoff = crate::auth::now_millis().saturating_sub(self.ttl_ms);
        let mut kept: Vec<Vec<u8>> = entries.into_iter().filter_map(|e| stream_message(e, cutoff)).collect();
        kept.reverse();
        Some(Then::Answer(200, api::history_body(kept.iter().map(Vec::as_slice))))
    }
}

/// The message of one stream entry `[id, [field, value]]`, if not older than `cutoff` (ms).
fn stream_message(e: Value, cutoff: u64) -> Option<Vec<u8>> {
    let Value::Array(mut parts) = e else { return None };
    let Value::Array(fields) = parts.pop()? else { return None };
    let id = read::string(parts.pop()?)?;
    let ms: u64 = id.split('-').next()?.parse().ok()?;
    if ms < cutoff {
        return None;
    }
    match fields.into_iter().nth(1)? {
        Value::BulkString(b) => Some(b),
        _ => None,
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "A group's last messages as its members received them (history_size > 0)",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "groupName": {
       "$ref": "#/components/schemas/GroupName"
      },
      "limit": {
       "type": [
        "integer",
        "null"
       ],
       "minimum": 1,
       "description": "(null: as if left out)"
      }
     },
     "required": [
      "groupName"
     ]
    }
   }
  }
 },
 "responses": {
  "200": {
   "description": "Success",
   "content": {
    "application/json": {
     "schema": {
      "allOf": [
       {
        "$ref": "#/components/schemas/Ok"
       },
       {
        "type": "object",
        "properties": {
         "data": {
          "type": "array",
          "items": {
           "$ref": "#/components/schemas/PushFrame"
          }
         }
        }
       }
      ]
     }
    }
   }
  }
 }
}"##;
