//! `close_user`: every connection of a user closed as by `close_client` (each session ended,
//! detached ones too), on any node; answered with how many.

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::metrics;
use crate::msg::{Op, ReplyTo, UserCall};
use crate::protocol::api::ApiError;

pub(super) static ROW: Endpoint =
    Endpoint { name: "close_user", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::CloseUser { user: r.user()?, notify: r.notify() })
}

impl Hub {
    pub(super) fn close_user(&mut self, sys: SysId, user: Box<str>, notify: bool, to: ReplyTo) -> Answer {
        metrics::add(&self.local.stats.user_closes_total, 1);
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        self.user_op(sys, user, UserCall::Close { notify }, to)
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Close every connection of a user with 1000, as close_client does (1002 to their groups, sessions ended)",
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
           "clients"
          ],
          "properties": {
           "clients": {
            "type": "integer",
            "minimum": 0
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
