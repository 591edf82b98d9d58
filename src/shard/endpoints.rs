//! The API's endpoints, in one table: who may call each, whether the shard may answer it at
//! once, and how its body becomes an [`Op`] for the hub (push frames are built here, once:
//! invariant 2). Adding an endpoint is a row here plus its operation in the hub (`hub/ops.rs`).
//! Pure: no sockets, no threads.

use bytes::Bytes;

use crate::ids::{self, ClientRef};
use crate::msg::Op;
use crate::protocol::api::{self, ApiError, Body, Page};

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
    pub op: fn(&Request<'_>) -> Result<Op, ApiError>,
}

/// What an endpoint's `op` reads: the body, how clientIds are read on this node, and the
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

fn check_len(value: &str, what: &str, max: usize, key: &'static str) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::over_bound(what, value.len(), key, max));
    }
    Ok(())
}

/// Every endpoint (the table of docs/API.md).
pub static ENDPOINTS: &[Endpoint] = &[
    Endpoint { name: "register", access: Access::Operator, early_answer: false, op: |_| Ok(Op::Register) },
    Endpoint { name: "send_to_client", access: Access::System, early_answer: false, op: send_to_client },
    Endpoint { name: "send_to_clients", access: Access::System, early_answer: true, op: send_to_clients },
    Endpoint { name: "send_to_group", access: Access::System, early_answer: true, op: send_to_group },
    Endpoint { name: "send_to_system", access: Access::System, early_answer: true, op: send_to_system },
    Endpoint { name: "bind_to_group", access: Access::System, early_answer: false, op: bind },
    Endpoint { name: "unbind_from_group", access: Access::System, early_answer: false, op: unbind },
    Endpoint { name: "get_online_list", access: Access::System, early_answer: false, op: online_list },
    Endpoint { name: "get_all_groups", access: Access::System, early_answer: false, op: all_groups },
    Endpoint { name: "close_client", access: Access::System, early_answer: false, op: close },
    Endpoint { name: "get_group_history", access: Access::System, early_answer: false, op: group_history },
    Endpoint { name: "send_to_user", access: Access::System, early_answer: false, op: send_to_user },
    Endpoint { name: "close_user", access: Access::System, early_answer: false, op: close_user },
    Endpoint { name: "get_user_presence", access: Access::System, early_answer: false, op: user_presence },
];

/// The endpoint called `name`.
pub fn find(name: &str) -> Option<&'static Endpoint> {
    ENDPOINTS.iter().find(|e| e.name == name)
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

    /// A clientId this node may address: any node's in cluster mode, else only its own.
    fn client_ref(&self, s: &str) -> Option<ClientRef> {
        ids::parse_client_ref(s).filter(|r| self.cluster || r.node == self.node)
    }

    /// The required `clientId`, addressable from here (else 404, as for a client gone).
    fn client(&self) -> Result<ClientRef, ApiError> {
        let id = self.required(&self.body.client_id, "clientId")?;
        self.client_ref(&id).ok_or_else(ApiError::unknown_client)
    }

    fn notify(&self) -> bool {
        self.body.notify.unwrap_or(true)
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

fn send_to_client(r: &Request<'_>) -> Result<Op, ApiError> {
    let client = r.client()?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToClients { clients: vec![client], frame, message_id, strict: true })
}

fn send_to_clients(r: &Request<'_>) -> Result<Op, ApiError> {
    let list = r.body.client_ids.as_ref().filter(|l| !l.is_empty());
    let list = list.ok_or_else(|| ApiError::bad_request("clientIds is required (a non-empty array)"))?;
    let clients = list.iter().filter_map(|s| r.client_ref(s)).collect();
    let (frame, message_id) = r.push();
    Ok(Op::SendToClients { clients, frame, message_id, strict: false })
}

fn send_to_group(r: &Request<'_>) -> Result<Op, ApiError> {
    let group = r.group()?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToGroup { group, frame, message_id })
}

fn send_to_system(r: &Request<'_>) -> Result<Op, ApiError> {
    let (frame, message_id) = r.push();
    Ok(Op::SendToSystem { frame, message_id })
}

fn bind(r: &Request<'_>) -> Result<Op, ApiError> {
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

fn unbind(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::Unbind { client: r.client()?, group: r.group()?, notify: r.notify() })
}

fn online_list(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::OnlineList { group: r.group()?, with_users: r.body.with_users.unwrap_or(false) })
}

/// The required `userId`, within `max_name_bytes`.
fn user(r: &Request<'_>) -> Result<Box<str>, ApiError> {
    let u = r.required(&r.body.user_id, "userId")?;
    r.limits.name(&u, "userId")?;
    Ok(u)
}

fn send_to_user(r: &Request<'_>) -> Result<Op, ApiError> {
    let user = user(r)?;
    let (frame, message_id) = r.push();
    Ok(Op::SendToUser { user, frame, message_id })
}

fn close_user(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::CloseUser { user: user(r)?, notify: r.notify() })
}

/// At most [`api::MAX_USER_IDS`] non-empty userIds; each answered once.
fn user_presence(r: &Request<'_>) -> Result<Op, ApiError> {
    let list = r.body.user_ids.as_ref().filter(|l| !l.is_empty());
    let list = list.ok_or_else(|| ApiError::bad_request("userIds is required (a non-empty array)"))?;
    if list.len() > api::MAX_USER_IDS {
        let mut e = ApiError::bad_request(format!(
            "userIds holds {} ids, more than the {} one call may ask about: split the call",
            list.len(),
            api::MAX_USER_IDS
        ));
        e.bound = Some("get_user_presence userIds");
        return Err(e);
    }
    let mut users: Vec<Box<str>> = Vec::with_capacity(list.len());
    for u in list {
        if u.is_empty() {
            return Err(ApiError::bad_request("userIds holds an empty userId"));
        }
        r.limits.name(u, "a userId of userIds")?;
        if !users.iter().any(|k| **k == **u) {
            users.push(u.as_str().into());
        }
    }
    Ok(Op::UserPresence { users })
}

/// Upstream's call (no `limit`, no `cursor`) answers the whole map while it fits in one answer;
/// with either, one page.
fn all_groups(r: &Request<'_>) -> Result<Op, ApiError> {
    let (cursor, limit) = (r.body.cursor.as_deref(), r.body.limit);
    if cursor.is_none() && limit.is_none() {
        return Ok(Op::AllGroups { page: None });
    }
    let after = cursor.unwrap_or_default();
    r.limits.name(after, "cursor")?;
    let limit = match limit {
        Some(0) => return Err(ApiError::bad_request("limit must be 1 or more")),
        Some(n) => (n.min(r.limits.page as u64)) as usize,
        None => r.limits.page,
    };
    Ok(Op::AllGroups { page: Some(Page { after: after.into(), limit }) })
}

/// The group's last `limit` messages (at most `history_size`, its default).
fn group_history(r: &Request<'_>) -> Result<Op, ApiError> {
    if r.limits.history == 0 {
        return Err(ApiError::new(404, "group history is off on this server (start it with history_size > 0)"));
    }
    let group = r.group()?;
    let limit = match r.body.limit {
        Some(0) => return Err(ApiError::bad_request("limit must be 1 or more")),
        Some(n) => n.min(r.limits.history as u64) as usize,
        None => r.limits.history,
    };
    Ok(Op::GroupHistory { group, limit })
}

fn close(r: &Request<'_>) -> Result<Op, ApiError> {
    Ok(Op::Close { client: r.client()?, notify: r.notify() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(name: &str, body: &str) -> Result<Op, ApiError> {
        let body = api::parse_body(body.as_bytes()).unwrap();
        let r = Request {
            body: &body,
            node: 7,
            cluster: false,
            limits: Limits { name: 8, extend: 10, page: 3, history: 5 },
        };
        (find(name).unwrap().op)(&r)
    }

    #[test]
    fn names_are_unique_and_found() {
        for (i, e) in ENDPOINTS.iter().enumerate() {
            assert!(ENDPOINTS[..i].iter().all(|o| o.name != e.name), "{} twice", e.name);
            assert!(std::ptr::eq(find(e.name).unwrap(), e));
        }
        assert!(find("nope").is_none());
        assert_eq!(ENDPOINTS.iter().filter(|e| e.access == Access::Operator).count(), 1);
    }

    /// The OpenAPI document describes exactly the endpoints of this table.
    #[test]
    fn the_openapi_document_matches_the_table() {
        let doc: serde_json::Value = serde_json::from_str(api::OPENAPI).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for e in ENDPOINTS {
            let op = &paths[&format!("/api/{}", e.name)]["post"];
            assert_eq!(op["operationId"], e.name);
            assert_eq!(op["parameters"].is_array(), e.access == Access::System, "{}: SystemId header", e.name);
        }
        let api_paths = paths.keys().filter(|p| p.starts_with("/api/") && *p != "/api/openapi.json").count();
        assert_eq!(api_paths, ENDPOINTS.len());
    }

    #[test]
    fn bodies_become_operations() {
        let mine = ids::client_id(7, ids::ConnId { shard: 0, slot: 1, gen: 2 });
        let other = ids::client_id(8, ids::ConnId { shard: 0, slot: 1, gen: 2 });
        assert!(matches!(op("send_to_group", r#"{"groupName":"g"}"#), Ok(Op::SendToGroup { .. })));
        assert_eq!(op("send_to_group", "{}").unwrap_err().status, 400);
        assert_eq!(op("bind_to_group", &format!(r#"{{"clientId":"{mine}"}}"#)).unwrap_err().status, 400);
        let bind = op("bind_to_group", &format!(r#"{{"clientId":"{mine}","groupName":"g","notify":false}}"#));
        assert!(matches!(bind, Ok(Op::Bind { notify: false, .. })));
        assert_eq!(op("close_client", &format!(r#"{{"clientId":"{other}"}}"#)).unwrap_err().status, 404);
        assert_eq!(op("send_to_clients", r#"{"clientIds":[]}"#).unwrap_err().status, 400);
        let list = op("send_to_clients", &format!(r#"{{"clientIds":["{mine}","{other}","x"]}}"#));
        assert!(matches!(list, Ok(Op::SendToClients { clients, strict: false, .. }) if clients.len() == 1));
        // Bounds: names 8 bytes, extend 10, pages of 3.
        assert_eq!(op("send_to_group", r#"{"groupName":"123456789"}"#).unwrap_err().status, 400);
        let long_user = format!(r#"{{"clientId":"{mine}","groupName":"g","userId":"123456789"}}"#);
        assert!(op("bind_to_group", &long_user).unwrap_err().msg.contains("max_name_bytes"));
        let long_extend = format!(r#"{{"clientId":"{mine}","groupName":"g","extend":"12345678901"}}"#);
        assert!(op("bind_to_group", &long_extend).unwrap_err().msg.contains("max_extend_bytes"));
        assert!(matches!(op("get_all_groups", "{}"), Ok(Op::AllGroups { page: None })));
        let page = |b: &str| match op("get_all_groups", b) {
            Ok(Op::AllGroups { page: Some(p) }) => (p.after.to_string(), p.limit),
            other => panic!("{other:?}"),
        };
        assert_eq!(page(r#"{"limit":2}"#), ("".into(), 2));
        assert_eq!(page(r#"{"cursor":"g7","limit":50}"#), ("g7".into(), 3));
        assert_eq!(op("get_all_groups", r#"{"limit":0}"#).unwrap_err().status, 400);
        assert!(matches!(
            op("get_group_history", r#"{"groupName":"g","limit":50}"#),
            Ok(Op::GroupHistory { limit: 5, .. })
        ));
        assert_eq!(op("get_group_history", r#"{"limit":2}"#).unwrap_err().status, 400);
    }
}
