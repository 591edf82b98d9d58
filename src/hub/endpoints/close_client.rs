//! `close_client`: closes a client with 1000 and ends its session (its groups told 1002 unless
//! `notify` is false). Forwarded to a client's node as `bind_to_group` is.

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "close_client", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::Close { client: r.client()?, notify: r.notify() })
}

impl Hub {
    /// Closes a client of this node.
    pub(super) fn close_client(&mut self, sys: SysId, conn: ConnId, notify: bool, to: ReplyTo) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        if let Err(e) = self.local.index.client_in(sys, conn) {
            return e.into();
        }
        self.kick(conn, notify);
        self.backend.after_change(to, Ok(Done::Empty))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Close a client's connection (1002 to its groups)",
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
      "clientId"
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
