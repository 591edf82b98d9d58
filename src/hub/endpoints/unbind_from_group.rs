//! `unbind_from_group`: a client leaves a group (its members told 1002 unless `notify` is
//! false); a client not in it is no error. Forwarded to a client's node as `bind_to_group` is.

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "unbind_from_group", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::Unbind { client: r.client()?, group: r.group()?, notify: r.notify() })
}

impl Hub {
    /// Unbinds a client of this node.
    pub(super) fn unbind(&mut self, sys: SysId, conn: ConnId, group: &str, notify: bool, to: ReplyTo) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        let client = match self.local.index.client_and_system(sys, conn) {
            Ok((c, _)) => c,
            Err(e) => return e.into(),
        };
        if let Some(pos) = client.groups.iter().position(|g| **g == *group) {
            let key = client.groups.swap_remove(pos);
            self.backend.leave(&mut self.local, sys, &key, conn, None, notify);
        }
        self.backend.after_change(to, Ok(Done::Empty))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Remove a client from a group (1002 to the rest)",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "clientId": {
       "$ref": "#/components/schemas/ClientId"
      },
      "groupName": {
       "$ref": "#/components/schemas/GroupName"
      },
      "notify": {
       "type": [
        "boolean",
        "null"
       ],
       "default": true,
       "description": "false: no 1001/1002 notice for this call (webhooks still fire) (null: as if left out)"
      }
     },
     "required": [
      "clientId",
      "groupName"
     ]
    }
   }
  }
 },
 "responses": {
  "200": {
   "$ref": "#/components/responses/Empty"
  }
 }
}"##;
