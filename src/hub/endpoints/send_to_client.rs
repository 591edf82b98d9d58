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

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Push a message to one client",
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
   "$ref": "#/components/responses/Sent"
  }
 }
}"##;
