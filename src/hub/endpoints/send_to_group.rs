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

/// Its path item in the OpenAPI document.
const OPENAPI: &str = r##"{
 "post": {
  "operationId": "send_to_group",
  "summary": "Push a message to every member of a group",
  "tags": [
   "api"
  ],
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
            "messageId"
           ],
           "properties": {
            "messageId": {
             "$ref": "#/components/schemas/MessageId"
            }
           }
          }
         }
        }
       ]
      }
     }
    }
   },
   "400": {
    "$ref": "#/components/responses/Error"
   },
   "401": {
    "$ref": "#/components/responses/Error"
   },
   "403": {
    "$ref": "#/components/responses/Error"
   },
   "404": {
    "$ref": "#/components/responses/Error"
   },
   "408": {
    "$ref": "#/components/responses/Error"
   },
   "411": {
    "$ref": "#/components/responses/Error"
   },
   "413": {
    "$ref": "#/components/responses/Error"
   },
   "431": {
    "$ref": "#/components/responses/Error"
   },
   "503": {
    "$ref": "#/components/responses/Error"
   }
  },
  "parameters": [
   {
    "$ref": "#/components/parameters/SystemId"
   }
  ]
 }
}"##;
