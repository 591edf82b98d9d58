//! `send_to_system`: a push frame to every client of the system, as `send_to_group` does for
//! a group (never kept in a history).

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::msg::{Frame, Op, ReplyTo};
use crate::protocol::api::ApiError;

pub(super) static ROW: Endpoint =
    Endpoint { name: "send_to_system", access: Access::System, early_answer: true, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let (frame, message_id) = r.push();
    Ok(Op::SendToSystem { frame, message_id })
}

impl Hub {
    pub(super) fn send_to_system(&mut self, sys: SysId, frame: Frame, id: Box<str>, to: ReplyTo) -> Answer {
        self.backend.publish(&mut self.local, sys, None, frame, id, Some(to))
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Push a message to every client of the system",
 "requestBody": {
  "required": false,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
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
     }
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
