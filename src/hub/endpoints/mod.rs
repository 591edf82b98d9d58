//! The API's endpoints, one file each. A file holds everything that is that endpoint's own:
//! its row ([`Endpoint`]: name, who may call it, whether a single node answers it at once), how
//! its body becomes an [`Op`] (run by the shard that read the request, so push frames are built
//! there, once: invariant 2), its operation in the hub for both modes side by side (a single
//! node's from the index; cluster mode's through the broker, a Redis read as a
//! [`crate::cluster::read::Read`]), and its part of the OpenAPI document.
//!
//! What endpoints share lives below them: the request's helpers here ([`Request`]), the
//! hub's operations several of them use in `hub/ops.rs` (a frame to some clients, a user's
//! connections, joining a group, closing a client), the backend seam for what differs
//! between the modes in `hub/backend.rs` (publish, join, leave, forward, answer after a
//! change), the JSON bodies in `protocol/api.rs`, the `Op` in `msg.rs`. Adding an endpoint:
//! its file; here its `mod` line, its line in [`ENDPOINTS`] and its arm in `Hub::api_in`; its
//! `Op` variant in `msg.rs` (and in `Op::teaches_system` if it is a send); its arm in
//! `cluster/wire.rs`'s `request` (which names every `Op`: `None` unless it is about one client
//! of another node, then its encoding); `docs/API.md`; its test.

mod bind_to_group;
mod close_client;
mod close_user;
mod get_all_groups;
mod get_group_history;
mod get_online_list;
mod get_user_presence;
mod register;
mod send_to_client;
mod send_to_clients;
mod send_to_group;
mod send_to_system;
mod send_to_user;
mod unbind_from_group;

use std::sync::OnceLock;

use bytes::Bytes;

use super::index::SysId;
use super::{Answer, Hub};
use crate::ids::{self, ClientRef};
use crate::msg::{Op, ReplyTo};
use crate::protocol::api::{self, ApiError, Body};

/// Who may call an endpoint, and so where its system comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// An operator token; the system is the body's `systemId` (`register`).
    Operator,
    /// A token for the `SystemId` header's system (or an operator token).
    System,
}

/// One API endpoint.
pub struct Endpoint {
    pub name: &'static str,
    pub access: Access,
    /// A single node answers it as soon as it is queued once the caller's system is known to
    /// be registered: a send that cannot fail at the hub. (Cluster mode answers sends once
    /// Redis has them, for one order cluster-wide.)
    pub early_answer: bool,
    /// Builds the operation from the request body.
    pub parse: fn(&Request<'_>) -> Result<Op, ApiError>,
    /// Its own part of its OpenAPI operation (`POST /api/<name>`), a JSON object: summary,
    /// request body, its success answer (and any answer only it gives). What every endpoint
    /// shares — operationId, tag, the `SystemId` header (by `access`), the error answers — is
    /// added by [`openapi`].
    pub openapi: &'static str,
}

/// Every endpoint, in the order of the OpenAPI document.
pub static ENDPOINTS: &[&Endpoint] = &[
    &register::ROW,
    &send_to_client::ROW,
    &send_to_clients::ROW,
    &send_to_group::ROW,
    &send_to_system::ROW,
    &bind_to_group::ROW,
    &unbind_from_group::ROW,
    &get_online_list::ROW,
    &get_all_groups::ROW,
    &get_group_history::ROW,
    &close_client::ROW,
    &send_to_user::ROW,
    &close_user::ROW,
    &get_user_presence::ROW,
];

/// The endpoint called `name`.
pub fn find(name: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().copied().find(|e| e.name == name)
}

impl Hub {
    /// Runs one API operation for `to`.
    pub(super) fn api(&mut self, system: &str, op: Op, to: ReplyTo) -> Answer {
        match self.local.index.find(system) {
            Some(sys) => self.api_in(sys, op, to),
            None if matches!(op, Op::Register) => self.register(system, to),
            None => ApiError::unknown_system(system).into(),
        }
    }

    /// Runs one API operation of a known system: each endpoint's own method (in its file), or,
    /// for a call about one client of another node, the forward to that node (which runs it).
    pub(super) fn api_in(&mut self, sys: SysId, op: Op, to: ReplyTo) -> Answer {
        use crate::aliases::Route;
        let route = |c: &ClientRef| self.local.route(*c);
        match op {
            Op::Register => ApiError::already_registered(self.local.index.name(sys)).into(),
            Op::SendToClients { clients, frame, message_id, strict } => {
                self.send_to_clients(sys, clients, frame, message_id, strict, to)
            }
            Op::SendToGroup { group, frame, message_id } => self.send_to_group(sys, &group, frame, message_id, to),
            Op::SendToSystem { frame, message_id } => self.send_to_system(sys, frame, message_id, to),
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } if matches!(route(&client), Route::Here(c) if self.handoff.moving(c)) => {
                ApiError::new(503, "the client's session is moving to another node (shutdown): retry").into()
            }
            Op::Bind { client, group, user_id, extend, notify } if let Route::Here(conn) = route(&client) => {
                self.bind(sys, conn, &group, user_id, extend, notify, to)
            }
            Op::Unbind { client, group, notify } if let Route::Here(conn) = route(&client) => {
                self.unbind(sys, conn, &group, notify, to)
            }
            Op::Close { client, notify } if let Route::Here(conn) = route(&client) => {
                self.close_client(sys, conn, notify, to)
            }
            Op::Bind { client, .. } | Op::Unbind { client, .. } | Op::Close { client, .. } => match route(&client) {
                Route::Node(node) => self.backend.forward(&mut self.local, node, sys, op, to),
                _ => ApiError::unknown_client().into(),
            },
            Op::OnlineList { group, with_users } => self.online_list(sys, group, with_users, to),
            Op::AllGroups { page } => self.all_groups(sys, page, to),
            Op::GroupHistory { group, limit } => self.group_history(sys, group, limit, to),
            Op::SendToUser { user, frame, message_id } => self.send_to_user(sys, user, frame, message_id, to),
            Op::CloseUser { user, notify } => self.close_user(sys, user, notify, to),
            Op::UserPresence { users } => self.user_presence(sys, users, to),
        }
    }
}

/// What an endpoint's `parse` reads: the body, how clientIds are read on this node, and the
/// bounds on what a body may hold.
pub struct Request<'a> {
    pub body: &'a Body<'a>,
    /// This node's id.
    pub node: u32,
    /// Cluster mode: a clientId of any node may be named (single node: only this one's).
    pub cluster: bool,
    pub limits: Limits,
}

/// Bounds on names and values a client or caller may store (400 beyond).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// `max_name_bytes`: systemId, groupName, userId.
    pub name: usize,
    /// `max_extend_bytes`.
    pub extend: usize,
    /// `groups_page_size`: most groups in one `get_all_groups` answer.
    pub page: usize,
    /// `history_size`: messages kept per group (0: off).
    pub history: usize,
}

impl Limits {
    /// A name (systemId, groupName, userId) within `max_name_bytes`.
    pub fn name(&self, value: &str, what: &str) -> Result<(), ApiError> {
        check_len(value, what, self.name, "max_name_bytes")
    }
}

/// A value within `max` bytes, else 400 naming the setting `key`.
fn check_len(value: &str, what: &str, max: usize, key: &'static str) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::over_bound(what, value.len(), key, max));
    }
    Ok(())
}

impl Request<'_> {
    /// A required, non-empty string field.
    fn required(&self, field: &Option<String>, name: &'static str) -> Result<Box<str>, ApiError> {
        Body::required(field, name).map(Into::into).map_err(ApiError::bad_request)
    }

    /// The required `groupName`, within `max_name_bytes`.
    fn group(&self) -> Result<Box<str>, ApiError> {
        let g = self.required(&self.body.group_name, "groupName")?;
        self.limits.name(&g, "groupName")?;
        Ok(g)
    }

    /// The required `userId`, within `max_name_bytes`.
    fn user(&self) -> Result<Box<str>, ApiError> {
        let u = self.required(&self.body.user_id, "userId")?;
        self.limits.name(&u, "userId")?;
        Ok(u)
    }

    /// A clientId this node may address: any node's in cluster mode, else only its own.
    fn client_ref(&self, s: &str) -> Option<ClientRef> {
        ids::parse_client_ref(s).filter(|r| self.cluster || r.node == self.node)
    }

    /// The required `clientId`, addressable from here (else 404, as for a client gone).
    fn client(&self) -> Result<ClientRef, ApiError> {
        let id = self.required(&self.body.client_id, "clientId")?;
        self.client_ref(&id).ok_or_else(ApiError::unknown_client)
    }

    /// `notify`, true unless the call says false.
    fn notify(&self) -> bool {
        self.body.notify.unwrap_or(true)
    }

    /// A `limit` of 1 or more, at most `max` (its default).
    fn limit(&self, max: usize) -> Result<usize, ApiError> {
        match self.body.limit {
            Some(0) => Err(ApiError::bad_request("limit must be 1 or more")),
            Some(n) => Ok(n.min(max as u64) as usize),
            None => Ok(max),
        }
    }

    /// The push frame, built once with a fresh messageId.
    fn push(&self) -> (Bytes, Box<str>) {
        let b = self.body;
        let message_id = ids::message_id();
        let frame = api::push_frame(
            &message_id,
            b.send_user_id.as_deref().unwrap_or(""),
            b.code.unwrap_or(0),
            b.msg.as_deref().unwrap_or(""),
            b.data,
        );
        (frame, message_id.into())
    }
}

/// The error answers every endpoint may give, each of the `Error` shape.
const ERRORS: [&str; 9] = ["400", "401", "403", "404", "408", "411", "413", "431", "503"];

/// The OpenAPI document served at `/api/openapi.json`: the server's own paths, schemas and
/// webhooks (`protocol/openapi.json`) with each endpoint's path item put in, in table order.
pub fn openapi() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        const AT: &str = "\"paths\": {";
        let base = api::OPENAPI_BASE;
        // Constants: `the_openapi_document_matches_the_table` checks both.
        let at = base.find(AT).expect("the base document has its paths") + AT.len();
        let mut doc = String::with_capacity(base.len() + ENDPOINTS.len() * 2048);
        doc.push_str(&base[..at]);
        for e in ENDPOINTS {
            doc.push_str(&format!("\n  \"/api/{}\": {{\"post\": {}}},", e.name, operation(e)));
        }
        doc.push_str(&base[at..]);
        doc
    })
}

/// An endpoint's OpenAPI operation: its own part with what every endpoint shares.
fn operation(e: &Endpoint) -> serde_json::Value {
    use serde_json::{json, Value};
    let mut op: serde_json::Map<String, Value> = serde_json::from_str(e.openapi).expect("an endpoint's part is JSON");
    op.insert("operationId".into(), e.name.into());
    op.insert("tags".into(), json!(["api"]));
    if e.access == Access::System {
        op.insert("parameters".into(), json!([{"$ref": "#/components/parameters/SystemId"}]));
    }
    if let Some(responses) = op.entry("responses").or_insert_with(|| json!({})).as_object_mut() {
        for status in ERRORS {
            responses.entry(status).or_insert_with(|| json!({"$ref": "#/components/responses/Error"}));
        }
    }
    Value::Object(op)
}

#[cfg(test)]
mod tests;
