//! `get_user_presence`: for each of 1 to [`api::MAX_USER_IDS`] userIds (each answered once),
//! its connections' clientIds in the system. Single node: from the index; cluster: each
//! user's hash in Redis (every node's connections).

use redis::Value;

use super::{Access, Endpoint, Request};
use crate::cluster::keys::Keys;
use crate::cluster::read::{self, More, Read, Then};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub, Local};
use crate::ids;
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{self, ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "get_user_presence", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let list = r.body.user_ids.as_ref().filter(|l| !l.is_empty());
    let list = list.ok_or_else(|| ApiError::bad_request("userIds is required (a non-empty array)"))?;
    if list.len() > api::MAX_USER_IDS {
        let mut e = ApiError::bad_request(format!(
            "userIds holds {} ids, more than the {} one call may ask about: split the call",
            list.len(),
            api::MAX_USER_IDS
        ));
        e.bound = Some("get_user_presence userIds");
        return Err(e);
    }
    let mut users: Vec<Box<str>> = Vec::with_capacity(list.len());
    for u in list {
        if u.is_empty() {
            return Err(ApiError::bad_request("userIds holds an empty userId"));
        }
        r.limits.name(u, "a userId of userIds")?;
        if !users.iter().any(|k| **k == **u) {
            users.push(u.as_str().into());
        }
    }
    Ok(Op::UserPresence { users })
}

impl Hub {
    pub(super) fn user_presence(&mut self, sys: SysId, users: Vec<Box<str>>, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            None => here(l, sys, &users),
            Some(c) => c.read(l, sys, to, |system| Box::new(PresenceRead { system, users })),
        }
    }
}

/// A single node's answer: each user's connections here.
fn here(l: &Local, sys: SysId, users: &[Box<str>]) -> Answer {
    let node = l.cfg.node_id.0;
    let lists: Vec<Vec<String>> =
        users.iter().map(|u| l.index.user_conns(sys, u).iter().map(|&c| ids::client_id(node, c)).collect()).collect();
    Ok(Done::Body(body(users, &lists))).into()
}

fn body(users: &[Box<str>], lists: &[Vec<String>]) -> bytes::Bytes {
    api::user_presence_body(users.iter().map(|u| &**u).zip(lists.iter().map(Vec::as_slice)))
}

/// Cluster mode's answer: each user's hash (clientId → 1), one `HKEYS` each.
#[derive(Debug)]
struct PresenceRead {
    system: Box<str>,
    /// Not empty (`parse`).
    users: Vec<Box<str>>,
}

impl Read for PresenceRead {
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline) {
        for u in &self.users {
            p.cmd("HKEYS").arg(k.user(&self.system, u));
        }
    }

    fn answer(self: Box<Self>, _: &Keys, results: Vec<Value>, _: ConnId, _: &mut More<'_>) -> Option<Then> {
        let lists: Vec<Vec<String>> = results.into_iter().map(read::strings).collect::<Option<_>>()?;
        Some(Then::Answer(200, body(&self.users, &lists)))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Whether each user is online, with their clientIds (at most 1000 users a call)",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "userIds": {
       "type": "array",
       "minItems": 1,
       "maxItems": 1000,
       "items": {
        "$ref": "#/components/schemas/UserId"
       }
      }
     },
     "required": [
      "userIds"
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
          "type": "object",
          "additionalProperties": {
           "type": "object",
           "required": [
            "online",
            "clients"
           ],
           "properties": {
            "online": {
             "type": "boolean"
            },
            "clients": {
             "type": "array",
             "items": {
              "$ref": "#/components/schemas/ClientId"
             }
            }
           }
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
