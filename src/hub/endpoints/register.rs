//! `register` (operator token): a new system (tenant). A single node adds it to the index (and
//! with `state_dir` writes the registered systems there, `crate::state`); cluster mode adds it
//! to Redis's set of systems (`SADD`) and the broker answers, after which every node learns it
//! on first use. Systems registered without a call — the `systems` setting, and what
//! `state_dir` kept — are added at start (`hub/keep.rs`).

use super::{Access, Endpoint};
use crate::cluster::BrokerCmd;
use crate::hub::{Answer, Hub};
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};

pub(super) static ROW: Endpoint = Endpoint {
    name: "register",
    access: Access::Operator,
    early_answer: false,
    parse: |_| Ok(Op::Register),
    openapi: OPENAPI,
};

impl Hub {
    /// `register` of a system this node has not seen (one it has is refused 409 before this).
    pub(super) fn register(&mut self, name: &str, to: ReplyTo) -> Answer {
        let Hub { local: l, backend, .. } = self;
        match backend.cluster() {
            Some(c) => c.ask(l, to, |to| BrokerCmd::Register { system: name.into(), to }),
            None => {
                let shards = l.shards();
                if l.index.add_system(name, shards).is_none() {
                    return ApiError::already_registered(name).into();
                }
                self.save_state();
                Ok(Done::Empty).into()
            }
        }
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Register a system (tenant); operator token only",
 "requestBody": {
  "required": true,
  "content": {
   "application/json": {
    "schema": {
     "type": "object",
     "properties": {
      "systemId": {
       "$ref": "#/components/schemas/SystemIdValue"
      }
     },
     "required": [
      "systemId"
     ]
    }
   }
  }
 },
 "responses": {
  "200": {
   "$ref": "#/components/responses/Empty"
  },
  "409": {
   "$ref": "#/components/responses/Error"
  }
 }
}"##;
