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

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Push one message (one messageId, one frame) to several clients; unknown ids are skipped",
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
   "$ref": "#/components/responses/Sent"
  }
 }
}"##;
