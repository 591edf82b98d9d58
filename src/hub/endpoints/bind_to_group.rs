//! `bind_to_group`: a client joins a group (its members told 1001 unless `notify` is false),
//! with the `userId` and `extend` its online list shows; binding it again only updates those.
//! A client of another node: forwarded there (`cluster/wire.rs`), which runs this.
//! Cluster mode answers once Redis has the change, so a read through any node sees it.

use super::{check_len, Access, Endpoint, Request};
use crate::hub::index::SysId;
use crate::hub::{Answer, Hub};
use crate::ids::ConnId;
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{ApiError, Done};

pub(super) static ROW: Endpoint =
    Endpoint { name: "bind_to_group", access: Access::System, early_answer: false, parse, openapi: OPENAPI };

fn parse(r: &Request<'_>) -> Result<Op, ApiError> {
    let b = r.body;
    let extend = b.extend.as_deref().unwrap_or_default();
    if let Some(u) = &b.user_id {
        r.limits.name(u, "userId")?;
    }
    check_len(extend, "extend", r.limits.extend, "max_extend_bytes")?;
    Ok(Op::Bind {
        client: r.client()?,
        group: r.group()?,
        user_id: b.user_id.as_deref().map(Into::into),
        extend: extend.into(),
        notify: r.notify(),
    })
}

impl Hub {
    /// Binds a client of this node.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn bind(
        &mut self,
        sys: SysId,
        conn: ConnId,
        group: &str,
        user_id: Option<Box<str>>,
        extend: Box<str>,
        notify: bool,
        to: ReplyTo,
    ) -> Answer {
        if let Some(e) = self.backend.blocked(&mut self.local) {
            return e.into();
        }
        // A bind naming no userId: the connection's user (its connect token's sub), if any.
        let known = self.local.index.users.get(&conn).map(|u| Box::<str>::from(&**u));
        let user_id = user_id.or(known).unwrap_or_default();
        match self.join_group(sys, conn, group, user_id.clone(), extend, notify) {
            Ok(()) => {
                // A connection without a user takes the first userId a bind names.
                if !user_id.is_empty() && !self.local.index.users.contains_key(&conn) {
                    self.give_user(sys, conn, &user_id);
                }
                self.backend.after_change(to, Ok(Done::Empty))
            }
            Err(e) => e.into(),
        }
    }
}

/// Its own part of its OpenAPI operation (`Endpoint::openapi`).
const OPENAPI: &str = r##"{
 "summary": "Add a client to a group (1001 to its members); binding twice only updates userId/extend",
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
      "groupName": {
       "$ref": "#/components/schemas/GroupName"
      },
      "userId": {
       "type": [
        "string",
        "null"
       ],
       "maxLength": 256,
       "default": "",
       "description": "(null: as if left out)"
      },
      "extend": {
       "type": [
        "string",
        "null"
       ],
       "maxLength": 4096,
       "default": "",
       "description": "(null: as if left out)"
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
      "clientId",
      "groupName"
     ]
    }
   }
  }
 },
 "responses": {
  "200": {
   "$ref": "#/components/responses/Empty"
  }
 }
}"##;
