//! `register` (operator token): a new system (tenant). A single node adds it to the index;
//! cluster mode adds it to Redis's set of systems (`SADD`) and the broker answers, after which
//! every node learns it on first use.

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
            None => {
                let shards = l.shards();
                match l.index.add_system(name, shards) {
                    Some(_) => Ok(Done::Empty).into(),
                    None => ApiError::already_registered(name).into(),
                }
            }
            Some(c) => c.ask(l, to, |to| BrokerCmd::Register { system: name.into(), to }),
        }
    }
}

/// Its path item in the OpenAPI document.
const OPENAPI: &str = r##"{
 "post": {
  "operationId": "register",
  "summary": "Register a system (tenant); operator token only",
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
           "type": "array",
           "maxItems": 0
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
   "409": {
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
  }
 }
}"##;
