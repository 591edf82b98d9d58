//! `send_to_user`: one push frame to every connection of a user (its connect token's `sub`, or
//! the `userId` of its first bind) in the system, on any node; answered with how many it
//! reached. The user's connections are found by `Hub::user_op` (`hub/ops.rs`).

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::metrics;
use crate::msg::{Frame, Op, ReplyTo, UserCall};
use crate::protocol::api::ApiError;

pub(super) static ROW: Endpoint =
    Endpoint { name: "send_to_user", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let user = r.user()?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToUser { user, frame, message_id })
}

impl Hub {
    pub(super) fn send_to_user(
        &mut self,
        sys: SysId,
        user: Box<str>,
        frame: Frame,
        id: Box<str>,
        to: ReplyTo,
    ) -> Answer {
        metrics::add(&self.local.stats.user_sends_total, 1);
        self.user_op(sys, user, UserCall::Send { frame, message_id: id }, to)
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Push one message to every connection of a user (a connect token's sub, else its first bind's userId), on every node",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "userId": {
       "$ref": "#/components/schemas/UserId"
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
      "userId"
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
          "required": [
           "messageId",
           "clients"
          ],
          "properties": {
           "messageId": {
            "$ref": "#/components/schemas/MessageId"
           },
           "clients": {
            "type": "integer",
            "minimum": 0,
            "description": "connections the message went to"
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
