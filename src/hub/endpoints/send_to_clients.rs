//! `send_to_clients`: one push frame to each of a list of clients (those not connected are
//! skipped); also the operation of `send_to_client` (strict: 404 for its one client gone).
//! A single node answers it as soon as it is queued.

use super::{Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::ids::ClientRef;
use crate::msg::{Frame, Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "send_to_clients", access: Access::System, early_answer: true, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let list = r.body.client_ids.as_ref().filter(|l| !l.is_empty());
    let list = list.ok_or_else(|| ApiError::bad_request("clientIds is required (a non-empty array)"))?;
    let clients = list.iter().filter_map(|s| r.client_ref(s)).collect();
    let (frame, message_id) = r.push();
    Ok(Op::SendToClients { clients, frame, message_id, strict: false })
}

impl Hub {
    /// The frame to each of `clients` here, and forwarded to their nodes for the others.
    pub(super) fn send_to_clients(
        &mut self,
        sys: SysId,
        clients: Vec<ClientRef>,
        frame: Frame,
        id: Box<str>,
        strict: bool,
        to: ReplyTo,
    ) -> Answer {
        let done = Done::Sent(id.clone());
        self.send_frames(sys, clients, frame, id, strict, to, done)
    }
}

/// Its path item in the OpenAPI document.
const OPENAPI: &str = r##"{
 "post": {
  "operationId": "send_to_clients",
  "summary": "Push one message (one messageId, one frame) to several clients; unknown ids are skipped",
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
       "clientIds": {
        "type": "array",
        "minItems": 1,
        "items": {
         "type": "string"
        }
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
       "clientIds"
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
