//! `send_to_client`: a push frame to one client, of this node or (cluster mode) any node;
//! 404 when it is not connected. Its operation is `send_to_clients`'s, strict.

use super::{Access, Endpoint, Request};
use crate::msg::Op;
use crate::protocol::api::ApiError;

pub(super) static ROW: Endpoint =
    Endpoint { name: "send_to_client", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let client = r.client()?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToClients { clients: vec![client], frame, message_id, strict: true })
}

/// Its path item in the OpenAPI document.
const OPENAPI: &str = r##"{
 "post": {
  "operationId": "send_to_client",
  "summary": "Push a message to one client",
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
       "clientId": {
        "$ref": "#/components/schemas/ClientId"
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
       "clientId"
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
