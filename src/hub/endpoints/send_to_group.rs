//! `send_to_group`: a push frame to every member of a group (kept in the group's history
//! with `history_size`). Single node: broadcast now, answered as soon as it is queued; cluster:
//! published through Redis, answered once Redis has it (one order for every node's members).

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::msg::{Frame, Op, ReplyTo};
use crate::protocol::api::ApiError;

pub(super) static ROW: Endpoint =
    Endpoint { name: "send_to_group", access: Access::System, early_answer: true, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let group = r.group()?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToGroup { group, frame, message_id })
}

impl Hub {
    pub(super) fn send_to_group(&mut self, sys: SysId, group: &str, frame: Frame, id: Box<str>, to: ReplyTo) -> Answer {
        self.backend.publish(&mut self.local, sys, Some(group), frame, id, Some(to))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Push a message to every member of a group",
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
      "sendUserId": {
       "type": [
        "string",
        "null"
       ],
       "default": "",
       "description": "(null: as if left out)"
      },
      "code": {
       "type": [
        "integer",
        "null"
       ],
       "format": "int64",
       "default": 0,
       "description": "(null: as if left out)"
      },
      "msg": {
       "type": [
        "string",
        "null"
       ],
       "default": "",
       "description": "(null: as if left out)"
      },
      "data": {
       "description": "Any JSON value, passed to clients byte for byte (absent: \"\")"
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
   "$ref": "#/components/responses/Sent"
  }
 }
}"##;
