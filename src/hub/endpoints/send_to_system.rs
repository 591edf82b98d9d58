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

/// Its path item in the OpenAPI document.
const OPENAPI: &str = r##"{
 "post": {
  "operationId": "send_to_system",
  "summary": "Push a message to every client of the system",
  "tags": [
   "api"
  ],
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
