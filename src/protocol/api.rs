//! The JSON of the HTTP API and of the frames pushed to clients (docs/API.md).
//!
//! Push frames are written straight into their WebSocket frame buffer
//! ([`ws::text_frame_with`]), once per message; `data` is copied byte for byte from the
//! request, never re-encoded.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::ws;

/// The OpenAPI 3.1 document of the HTTP API without the `/api/<name>` endpoints: the other
/// paths, the WebSocket frames, the webhook events and the shared schemas. Each endpoint's path
/// item is in its own file; `hub::endpoints::openapi` puts the whole document together for
/// `GET /api/openapi.json`, checked against a live server by `scripts/openapi-check.sh`
/// (Schemathesis) in the test command.
pub const OPENAPI_BASE: &str = include_str!("openapi.json");

/// An API failure: the HTTP status and a message saying what was wrong (and what to do).
/// The body is `{"code":-1,"msg":<msg>,"data":[]}` ([`ApiError::body`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub msg: Cow<'static, str>,
    /// The configured bound this call went over, if that is why it failed (counted).
    pub bound: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, msg: impl Into<Cow<'static, str>>) -> Self {
        ApiError { status, msg: msg.into(), bound: None }
    }

    /// 400: `what` (`len` bytes or items) is over the setting `key` (`max`).
    pub fn over_bound(what: &str, len: usize, key: &'static str, max: usize) -> Self {
        let msg = format!("{what} is {len} bytes, more than {key} ({max})");
        ApiError { status: 400, msg: msg.into(), bound: Some(key) }
    }

    /// 400: the request is not what the endpoint takes.
    pub fn bad_request(msg: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, msg)
    }

    /// 404: no such client in the caller's system.
    pub fn unknown_client() -> Self {
        Self::new(404, "client not found (unknown clientId, or not in this system)")
    }

    /// 404: the caller's system was never registered.
    pub fn unknown_system(system: &str) -> Self {
        Self::new(404, format!("systemId '{system}' is not registered: call /api/register first"))
    }

    /// 409: `register` of a system that exists.
    pub fn already_registered(system: &str) -> Self {
        Self::new(409, format!("systemId '{system}' is already registered"))
    }

    /// 503: the hub's queue is full.
    pub fn hub_busy() -> Self {
        Self::new(503, "server busy: the hub queue is full, retry later")
    }

    /// 503: cluster mode cannot take the call now (Redis unreachable, or the broker behind).
    pub fn cluster_unavailable() -> Self {
        Self::new(503, CLUSTER_UNAVAILABLE)
    }

    /// The JSON body of this error.
    pub fn body(&self) -> Bytes {
        err_body(&self.msg)
    }
}

/// The message of a 503 in cluster mode while Redis cannot be used.
pub const CLUSTER_UNAVAILABLE: &str = "cluster store unreachable (Redis): retry later";

/// A successful answer's body, built only when someone waits for it (a send the shard already
/// answered costs no body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    /// `{"messageId":..}`.
    Sent(Box<str>),
    /// `[]`.
    Empty,
    /// Any other body, already built.
    Body(Bytes),
}

impl Done {
    pub fn body(self) -> Bytes {
        match self {
            Done::Sent(id) => message_id_body(&id),
            Done::Empty => ok_body("[]"),
            Done::Body(b) => b,
        }
    }
}

/// What an API operation came to.
pub type ApiResult = Result<Done, ApiError>;

/// Every field any endpoint takes; each endpoint checks its own required fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Body<'a> {
    pub system_id: Option<String>,
    pub client_id: Option<String>,
    pub client_ids: Option<Vec<String>>,
    pub group_name: Option<String>,
    pub send_user_id: Option<String>,
    pub code: Option<i64>,
    pub msg: Option<String>,
    #[serde(borrow)]
    pub data: Option<&'a RawValue>,
    pub user_id: Option<String>,
    pub extend: Option<String>,
    pub notify: Option<bool>,
    /// `get_all_groups` paging: the last group of the previous page (`""`: the first page).
    pub cursor: Option<String>,
    /// `get_all_groups` paging: most groups in this page.
    pub limit: Option<u64>,
    /// `get_user_presence`: the users asked about.
    pub user_ids: Option<Vec<String>>,
    /// `get_online_list`: list each member's `userId` and `extend` too.
    pub with_users: Option<bool>,
}

/// Parses a request body; an empty body (or one of JSON's whitespace only) is `{}`.
pub fn parse_body(body: &[u8]) -> Result<Body<'_>, String> {
    let text = std::str::from_utf8(body).map_err(|_| "request body is not UTF-8".to_string())?;
    // JSON's own whitespace only: `str::trim` would also pass a form feed or a no-break space,
    // which no JSON parser takes (found by schemathesis: `\x0c` answered 200).
    if text.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return Ok(Body::default());
    }
    serde_json::from_str(text).map_err(|e| explain_body_error(text, e))
}

/// The message for a body that did not parse: which field was wrong, when one was (read a
/// second time with the path tracked, so a body that parses costs nothing for it).
fn explain_body_error(text: &str, e: serde_json::Error) -> String {
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Body<'_>>(&mut de) {
        Err(p) if p.path().to_string() != "." => format!("invalid JSON body: {}: {}", p.path(), p.inner()),
        _ => format!("invalid JSON body: {e}"),
    }
}

impl Body<'_> {
    /// A required, non-empty string field.
    pub fn required<'s>(field: &'s Option<String>, name: &str) -> Result<&'s str, String> {
        match field.as_deref() {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(format!("{name} is required")),
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The frame pushed to clients: `{"messageId","sendUserId","code","msg","data"}` in that
/// order. A missing `data` is `""` (upstream's `data` was a string).
pub fn push_frame(message_id: &str, send_user_id: &str, code: i64, msg: &str, data: Option<&RawValue>) -> Bytes {
    let data = data.map(RawValue::get).unwrap_or("\"\"");
    let cap = 64 + message_id.len() + send_user_id.len() + msg.len() + data.len();
    ws::text_frame_with(cap, |v| {
        v.extend_from_slice(b"{\"messageId\":");
        push_str(v, message_id);
        v.extend_from_slice(b",\"sendUserId\":");
        push_str(v, send_user_id);
        v.extend_from_slice(b",\"code\":");
        v.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
        v.extend_from_slice(b",\"msg\":");
        push_str(v, msg);
        v.extend_from_slice(b",\"data\":");
        v.extend_from_slice(data.as_bytes());
        v.push(b'}');
    })
}

/// Code of the "client bound to group" notice.
pub const ONLINE: i64 = 1001;
/// Code of the "client left" notice.
pub const OFFLINE: i64 = 1002;

/// The 1001/1002 notice: `data` is a JSON *string* holding
/// `{"clientId":..,"extend":..,"userId":..}` (keys sorted, as Go marshals a map).
pub fn notice_frame(code: i64, message_id: &str, client_id: &str, user_id: &str, extend: &str) -> Bytes {
    let mut inner = Vec::with_capacity(64 + client_id.len() + user_id.len() + extend.len());
    inner.extend_from_slice(b"{\"clientId\":");
    push_str(&mut inner, client_id);
    inner.extend_from_slice(b",\"extend\":");
    push_str(&mut inner, extend);
    inner.extend_from_slice(b",\"userId\":");
    push_str(&mut inner, user_id);
    inner.push(b'}');
    // The inner JSON is built from valid strings, so it is valid UTF-8.
    let inner = String::from_utf8(inner).unwrap_or_default();
    let data = serde_json::to_string(&inner).unwrap_or_default();
    let raw = RawValue::from_string(data).ok();
    let (send_user_id, msg) = if code == ONLINE { (user_id, "客户端上线") } else { ("", "客户端下线") };
    push_frame(message_id, send_user_id, code, msg, raw.as_deref())
}

/// The frame sent right after the handshake.
pub fn welcome_frame(client_id: &str) -> Bytes {
    let mut v = Vec::with_capacity(WELCOME_FRAME_LEN);
    push_welcome_frame(&mut v, client_id);
    Bytes::from(v)
}

/// Appends the frame sent right after the handshake to `out` (so it can share the 101's buffer).
pub fn push_welcome_frame(out: &mut Vec<u8>, client_id: &str) {
    if client_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        // Ours: nothing to escape.
        ws::push_text_frame(out, &[WELCOME_HEAD, b"\"", client_id.as_bytes(), b"\"}}"]);
    } else {
        let mut id = Vec::with_capacity(client_id.len() + 2);
        push_str(&mut id, client_id);
        ws::push_text_frame(out, &[WELCOME_HEAD, &id, b"}}"]);
    }
}

const WELCOME_HEAD: &[u8] = b"{\"code\":0,\"msg\":\"success\",\"data\":{\"clientId\":";

/// Length of the connect frame of a clientId of ours: 2-byte header, then the JSON.
pub const WELCOME_FRAME_LEN: usize = 2 + WELCOME_HEAD.len() + 1 + crate::ids::CLIENT_ID_LEN + 3;

/// The connect frame of a client that opted in to session recovery: also its resume token
/// and whether this connection recovered a session (`missed`: how many frames follow).
pub fn session_frame(client_id: &str, token: &str, missed: Option<usize>) -> Bytes {
    ws::text_frame_with(128 + token.len(), |v| {
        v.extend_from_slice(b"{\"code\":0,\"msg\":\"success\",\"data\":{\"clientId\":");
        push_str(v, client_id);
        v.extend_from_slice(b",\"resumeToken\":");
        push_str(v, token);
        match missed {
            None => v.extend_from_slice(b",\"recovered\":false}}"),
            Some(n) => {
                v.extend_from_slice(b",\"recovered\":true,\"missed\":");
                v.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                v.extend_from_slice(b"}}");
            }
        }
    })
}

/// The frame sent before closing a refused connection (upstream shape).
pub fn refused_frame(msg: &str) -> Bytes {
    ws::text_frame_with(64 + msg.len(), |v| {
        v.extend_from_slice(b"{\"messageId\":\"\",\"sendUserId\":\"\",\"code\":-1001,\"msg\":");
        push_str(v, msg);
        v.extend_from_slice(b",\"data\":[]}");
    })
}

/// `{"code":0,"msg":"success","data":<data>}` where `data` is raw JSON.
pub fn ok_body(data: &str) -> Bytes {
    const HEAD: &[u8] = b"{\"code\":0,\"msg\":\"success\",\"data\":";
    // Exact capacity: a full `Vec` becomes `Bytes` without a second allocation.
    let mut v = Vec::with_capacity(HEAD.len() + data.len() + 1);
    v.extend_from_slice(HEAD);
    v.extend_from_slice(data.as_bytes());
    v.push(b'}');
    Bytes::from(v)
}

/// `{"code":-1,"msg":<msg>,"data":[]}`.
pub fn err_body(msg: &str) -> Bytes {
    let mut v = Vec::with_capacity(40 + msg.len());
    v.extend_from_slice(b"{\"code\":-1,\"msg\":");
    push_str(&mut v, msg);
    v.extend_from_slice(b",\"data\":[]}");
    Bytes::from(v)
}

/// `{"messageId":".."}` as success data.
pub fn message_id_body(message_id: &str) -> Bytes {
    let mut v = Vec::with_capacity(14 + message_id.len());
    v.extend_from_slice(b"{\"messageId\":");
    push_str(&mut v, message_id);
    v.push(b'}');
    // `push_str` wrote valid JSON, hence valid UTF-8.
    ok_body(std::str::from_utf8(&v).unwrap_or("{}"))
}

/// `get_online_list`'s answer: `{"count":N,"list":[clientId..]}`.
pub fn online_list_body<S: AsRef<str>>(ids: &[S]) -> Bytes {
    let arr = string_array(ids.iter().map(AsRef::as_ref));
    let mut n = itoa::Buffer::new();
    ok_body(&format!("{{\"count\":{},\"list\":{arr}}}", n.format(ids.len())))
}

/// Most users one `get_user_presence` call may ask about.
pub const MAX_USER_IDS: usize = 1000;

/// `send_to_user`'s answer: `{"messageId":"..","clients":N}`.
pub fn user_sent_body(message_id: &str, clients: usize) -> Bytes {
    let mut v = Vec::with_capacity(40 + message_id.len());
    v.extend_from_slice(b"{\"messageId\":");
    push_str(&mut v, message_id);
    v.extend_from_slice(b",\"clients\":");
    v.extend_from_slice(itoa::Buffer::new().format(clients).as_bytes());
    v.push(b'}');
    ok_body(std::str::from_utf8(&v).unwrap_or("{}"))
}

/// `close_user`'s answer: `{"clients":N}`.
pub fn clients_body(clients: usize) -> Bytes {
    ok_body(&format!("{{\"clients\":{clients}}}"))
}

/// `get_user_presence`'s answer: for each user asked about (in the order asked, each once),
/// `{"online":bool,"clients":[clientId..]}`.
pub fn user_presence_body<'a, S: AsRef<str> + 'a>(users: impl Iterator<Item = (&'a str, &'a [S])>) -> Bytes {
    let mut v = vec![b'{'];
    for (i, (user, clients)) in users.enumerate() {
        if i > 0 {
            v.push(b',');
        }
        push_str(&mut v, user);
        v.extend_from_slice(if clients.is_empty() { b":{\"online\":false" } else { b":{\"online\":true" });
        v.extend_from_slice(b",\"clients\":");
        v.extend_from_slice(string_array(clients.iter().map(AsRef::as_ref)).as_bytes());
        v.push(b'}');
    }
    v.push(b'}');
    ok_body(std::str::from_utf8(&v).unwrap_or("{}"))
}

/// `get_online_list`'s answer with `withUsers`: `{"count":N,"list":[{"clientId","userId","extend"}..]}`.
pub fn online_users_body<'a>(members: impl ExactSizeIterator<Item = (&'a str, &'a str, &'a str)>) -> Bytes {
    let mut v = Vec::from(&b"{\"count\":"[..]);
    v.extend_from_slice(itoa::Buffer::new().format(members.len()).as_bytes());
    v.extend_from_slice(b",\"list\":[");
    for (i, (client, user, extend)) in members.enumerate() {
        if i > 0 {
            v.push(b',');
        }
        v.extend_from_slice(b"{\"clientId\":");
        push_str(&mut v, client);
        v.extend_from_slice(b",\"userId\":");
        push_str(&mut v, user);
        v.extend_from_slice(b",\"extend\":");
        push_str(&mut v, extend);
        v.push(b'}');
    }
    v.extend_from_slice(b"]}");
    ok_body(std::str::from_utf8(&v).unwrap_or("{}"))
}

/// `get_group_history`'s answer: the messages' JSON objects (push frame payloads), oldest
/// first, as an array.
pub fn history_body<'a>(messages: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut v = Vec::from(&b"{\"code\":0,\"msg\":\"success\",\"data\":["[..]);
    for (i, m) in messages.enumerate() {
        if i > 0 {
            v.push(b',');
        }
        v.extend_from_slice(m);
    }
    v.extend_from_slice(b"]}");
    Bytes::from(v)
}

/// Most clientIds one `get_all_groups` answer lists (a page ends early past it, after at
/// least one group): with `groups_page_size`, what bounds the answer's size.
pub const MAX_LISTED_CLIENTS: usize = 100_000;

/// A page of `get_all_groups`: the groups named after `after` (in byte order), at most `limit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    pub after: Box<str>,
    pub limit: usize,
}

/// `get_all_groups`' answer from the system's group names in byte order, starting after the
/// page's cursor: `names` holds up to `limit + 1` of them (one more tells that more follow),
/// `members` lists a group's clientIds. Unpaged (`page` `None`, upstream's call), the whole
/// map `{"<group>":[clientId..],..}`, or a 400 asking to page when it does not fit in one
/// answer. Paged, `{"groups":{..},"cursor":"<last group, or \"\" at the end>"}`.
pub fn groups_page<N: AsRef<str>>(
    names: &[N],
    limit: usize,
    paged: bool,
    mut members: impl FnMut(&str) -> Vec<String>,
) -> Result<Bytes, ApiError> {
    let mut s = String::from("{");
    let (mut listed, mut taken) = (0, 0);
    for name in names.iter().take(limit) {
        if taken > 0 && listed >= MAX_LISTED_CLIENTS {
            break;
        }
        let ids = members(name.as_ref());
        listed += ids.len();
        if taken > 0 {
            s.push(',');
        }
        s.push_str(&json_string(name.as_ref()));
        s.push(':');
        s.push_str(&string_array(ids.iter().map(String::as_str)));
        taken += 1;
    }
    s.push('}');
    let more = names.len() > taken;
    if !paged {
        if more {
            return Err(ApiError::bad_request(format!(
                "this system has more groups than one answer holds ({limit} groups, or {MAX_LISTED_CLIENTS} clientIds): \
                 read them in pages, {{\"limit\":{limit},\"cursor\":\"\"}}, passing each answer's cursor back"
            )));
        }
        return Ok(ok_body(&s));
    }
    let cursor = if more { names[taken - 1].as_ref() } else { "" };
    Ok(ok_body(&format!("{{\"groups\":{s},\"cursor\":{}}}", json_string(cursor))))
}

/// A JSON array of strings.
pub fn string_array<'a>(items: impl Iterator<Item = &'a str>) -> String {
    let mut v = Vec::new();
    v.push(b'[');
    for (i, s) in items.enumerate() {
        if i > 0 {
            v.push(b',');
        }
        push_str(&mut v, s);
    }
    v.push(b']');
    String::from_utf8(v).unwrap_or_default()
}

/// JSON string literal of `s`.
pub fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(frame: &Bytes) -> &str {
        let off = if frame[1] & 0x7f == 126 { 4 } else { 2 };
        std::str::from_utf8(&frame[off..]).unwrap()
    }

    #[test]
    fn push_frame_keeps_key_order_and_raw_data() {
        let body = parse_body(br#"{"data": {"b":1, "a":[1,2.50,"x"]}}"#).unwrap();
        let f = push_frame("9fa54bdbbf2778cb", "u1", 200, "hello", body.data);
        assert_eq!(
            payload(&f),
            r#"{"messageId":"9fa54bdbbf2778cb","sendUserId":"u1","code":200,"msg":"hello","data":{"b":1, "a":[1,2.50,"x"]}}"#
        );
        let f = push_frame("m", "", 0, "", None);
        assert_eq!(payload(&f), r#"{"messageId":"m","sendUserId":"","code":0,"msg":"","data":""}"#);
    }

    #[test]
    fn notice_data_is_a_json_string() {
        let f = notice_frame(ONLINE, "m", "c1", "u\"1", "e");
        let v: serde_json::Value = serde_json::from_str(payload(&f)).unwrap();
        assert_eq!(v["code"], 1001);
        assert_eq!(v["sendUserId"], "u\"1");
        let inner = v["data"].as_str().unwrap();
        assert_eq!(inner, r#"{"clientId":"c1","extend":"e","userId":"u\"1"}"#);
        let off = notice_frame(OFFLINE, "m", "c1", "u", "");
        let v: serde_json::Value = serde_json::from_str(payload(&off)).unwrap();
        assert_eq!(v["sendUserId"], "");
        assert_eq!(v["code"], 1002);
    }

    #[test]
    fn session_connect_frames() {
        assert_eq!(
            payload(&session_frame("c", "t", None)),
            r#"{"code":0,"msg":"success","data":{"clientId":"c","resumeToken":"t","recovered":false}}"#
        );
        assert_eq!(
            payload(&session_frame("c", "t", Some(3))),
            r#"{"code":0,"msg":"success","data":{"clientId":"c","resumeToken":"t","recovered":true,"missed":3}}"#
        );
    }

    #[test]
    fn connect_frames_match_upstream() {
        assert_eq!(payload(&welcome_frame("abc")), r#"{"code":0,"msg":"success","data":{"clientId":"abc"}}"#);
        assert_eq!(payload(&welcome_frame("a\"b")), r#"{"code":0,"msg":"success","data":{"clientId":"a\"b"}}"#);
        let ours = crate::ids::client_id(7, crate::ids::ConnId { shard: 1, slot: 2, gen: 3 });
        assert_eq!(welcome_frame(&ours).len(), WELCOME_FRAME_LEN);
        assert_eq!(
            payload(&refused_frame("systemId is required")),
            r#"{"messageId":"","sendUserId":"","code":-1001,"msg":"systemId is required","data":[]}"#
        );
    }

    #[test]
    fn bodies() {
        assert_eq!(&err_body("x \"y\"")[..], br#"{"code":-1,"msg":"x \"y\"","data":[]}"#);
        assert_eq!(&ok_body("[]")[..], br#"{"code":0,"msg":"success","data":[]}"#);
        assert_eq!(string_array(["a", "b\""].into_iter()), r#"["a","b\""]"#);
        assert_eq!(&message_id_body("9fa5")[..], br#"{"code":0,"msg":"success","data":{"messageId":"9fa5"}}"#);
        assert_eq!(
            &online_list_body(&["a", "b"])[..],
            br#"{"code":0,"msg":"success","data":{"count":2,"list":["a","b"]}}"#
        );
        let ids = |g: &str| if g == "g1" { vec!["a".to_string()] } else { vec![] };
        let whole = groups_page(&["g1", "g\"2"], 10, false, ids).unwrap();
        assert_eq!(&whole[..], br#"{"code":0,"msg":"success","data":{"g1":["a"],"g\"2":[]}}"#);
        assert_eq!(groups_page(&["a", "b", "c"], 2, false, ids).unwrap_err().status, 400);
        let page = groups_page(&["a", "b", "c"], 2, true, ids).unwrap();
        assert_eq!(&page[..], br#"{"code":0,"msg":"success","data":{"groups":{"a":[],"b":[]},"cursor":"b"}}"#);
        let last = groups_page(&["c"], 2, true, ids).unwrap();
        assert_eq!(&last[..], br#"{"code":0,"msg":"success","data":{"groups":{"c":[]},"cursor":""}}"#);
        // A page ends early past MAX_LISTED_CLIENTS clientIds, after at least one group.
        let big = |_: &str| vec![String::from("x"); MAX_LISTED_CLIENTS];
        let page = groups_page(&["a", "b"], 2, true, big).unwrap();
        assert!(page.ends_with(br#""cursor":"a"}}"#));
        assert_eq!(Done::Sent("m".into()).body(), message_id_body("m"));
        let (a, b) = (push_frame("1", "u", 0, "x", None), push_frame("2", "u", 0, "y", None));
        let h = history_body([ws::payload(&a), ws::payload(&b)].into_iter());
        let v: serde_json::Value = serde_json::from_slice(&h).unwrap();
        assert_eq!(v["data"][1]["messageId"], "2");
        assert_eq!(&history_body(std::iter::empty())[..], br#"{"code":0,"msg":"success","data":[]}"#);
        assert_eq!(ApiError::unknown_client().body(), err_body(&ApiError::unknown_client().msg));
        assert!(parse_body(b"{").unwrap_err().contains("invalid JSON"));
        assert!(parse_body(b"").unwrap().client_id.is_none());
        assert!(parse_body(b" \r\n\t").unwrap().client_id.is_none());
        for not_json in [&b"\x0c"[..], "\u{a0}".as_bytes(), "\u{2028}".as_bytes()] {
            assert!(parse_body(not_json).unwrap_err().contains("invalid JSON"), "{not_json:?}");
        }
        assert!(parse_body(br#"{"code":"x"}"#).is_err());
        assert_eq!(Body::required(&Some(String::new()), "clientId").unwrap_err(), "clientId is required");
    }
}

/// Randomized robustness: arbitrary bodies never panic the parser or the frame builder.
#[cfg(test)]
mod fuzz {
    use super::*;

    #[test]
    fn random_and_mutated_bodies_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0xbeef);
        let valid = br#"{"clientId":"abc","groupName":"g","code":200,"msg":"m\u00e9","data":{"a":[1,2,{"b":null}]},"notify":false}"#;
        for i in 0..100_000 {
            let buf: Vec<u8> = if i % 2 == 0 {
                (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect()
            } else {
                let mut v = valid.to_vec();
                let at = rng.usize(..v.len());
                v[at] = rng.u8(..);
                v
            };
            if let Ok(b) = parse_body(&buf) {
                let f = push_frame("m", b.send_user_id.as_deref().unwrap_or(""), b.code.unwrap_or(0), "", b.data);
                assert!(f.len() > 2);
            }
        }
    }
}
