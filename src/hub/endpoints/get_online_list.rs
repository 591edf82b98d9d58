//! `get_online_list`: the clientIds of a group's members; with `withUsers`, each one's
//! `userId` and `extend` too. Single node: from the index; cluster: the group's presence hash
//! in Redis (every node's members).

use redis::Value;

use super::{Access, Endpoint, Request};
use crate::cluster::keys::Keys;
use crate::cluster::read::{self, More, Read, Then};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub, Local};
use crate::ids::{self, ConnId};
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{self, ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "get_online_list", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::OnlineList { group: r.group()?, with_users: r.body.with_users.unwrap_or(false) })
}

impl Hub {
    pub(super) fn online_list(&mut self, sys: SysId, group: Box<str>, with_users: bool, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            None => here(l, sys, &group, with_users),
            Some(c) => c.read(l, sys, to, |system| Box::new(OnlineListRead { system, group, with_users })),
        }
    }
}

/// A single node's answer, from the index.
fn here(l: &Local, sys: SysId, group: &str, with_users: bool) -> Answer {
    let node = l.cfg.node_id.0;
    let index = &l.index;
    let members: Vec<ConnId> = index.systems[sys.index()].groups.get(group).map_or(Vec::new(), |m| m.iter().collect());
    let ids: Vec<String> = members.iter().map(|&c| ids::client_id(node, c)).collect();
    if !with_users {
        return Ok(Done::Body(api::online_list_body(&ids))).into();
    }
    let info = |c: &ConnId| index.clients.get(c).map_or(("", ""), |cl| (&*cl.user_id, &*cl.extend));
    let list = ids.iter().zip(&members).map(|(id, c)| {
        let (user, extend) = info(c);
        (id.as_str(), user, extend)
    });
    Ok(Done::Body(api::online_users_body(list))).into()
}

/// Cluster mode's answer: the group's presence hash (clientId → `[userId, extend]`).
#[derive(Debug)]
struct OnlineListRead {
    system: Box<str>,
    group: Box<str>,
    with_users: bool,
}

impl Read for OnlineListRead {
    fn pipe(&self, k: &Keys, p: &mut redis::Pipeline) {
        p.cmd(if self.with_users { "HGETALL" } else { "HKEYS" }).arg(k.group(&self.system, &self.group));
    }

    fn answer(self: Box<Self>, _: &Keys, mut results: Vec<Value>, _: ConnId, _: &mut More<'_>) -> Option<Then> {
        let items = read::strings(results.pop()?)?;
        if !self.with_users {
            return Some(Then::Answer(200, api::online_list_body(&items)));
        }
        let infos: Vec<(&str, [String; 2])> =
            items.chunks_exact(2).map(|p| (p[0].as_str(), serde_json::from_str(&p[1]).unwrap_or_default())).collect();
        let members = infos.iter().map(|(c, [u, e])| (*c, u.as_str(), e.as_str()));
        Some(Then::Answer(200, api::online_users_body(members)))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "The clients in a group",
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
      "withUsers": {
       "type": [
        "boolean",
        "null"
       ],
       "default": false,
       "description": "true: each member as {clientId, userId, extend} (null: as if left out)"
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
          "$ref": "#/components/schemas/OnlineList"
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
