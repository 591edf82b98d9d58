//! HTTP/1.1 request heads (httparse) and responses. Sans-IO: [`parse_head`] returns
//! `Ok(None)` on incomplete input and never consumes anything itself.

use std::borrow::Cow;

use bytes::Bytes;

use super::api;

/// Why a request cannot be served; each maps to a status and closes the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// Head larger than the limit (431).
    HeadTooLarge,
    /// Not HTTP/1.x, bad syntax, bad Content-Length (400).
    Malformed(&'static str),
    /// Body larger than the limit (413).
    BodyTooLarge,
    /// Transfer-Encoding bodies are not supported (411: send Content-Length).
    LengthRequired,
}

impl HttpError {
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge => 431,
            HttpError::Malformed(_) => 400,
            HttpError::BodyTooLarge => 413,
            HttpError::LengthRequired => 411,
        }
    }
    pub fn message(&self) -> &'static str {
        match self {
            HttpError::HeadTooLarge => "request header too large",
            HttpError::Malformed(m) => m,
            HttpError::BodyTooLarge => "request body too large",
            HttpError::LengthRequired => "chunked bodies are not supported: send Content-Length",
        }
    }
}

/// The parts of a request head the server uses, borrowed from the input buffer (no copies:
/// a WebSocket upgrade allocates nothing until it names its system).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub system_id: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub content_length: usize,
    pub keep_alive: bool,
    pub upgrade_websocket: bool,
    pub ws_key: Option<&'a str>,
    pub ws_version: Option<&'a str>,
    /// `Origin` (browsers send it on WebSocket handshakes).
    pub origin: Option<&'a str>,
    /// More than one `Origin` header came (no browser sends that; refused where origins are
    /// checked, as the value to check is ambiguous).
    pub origin_repeated: bool,
    /// `Sec-WebSocket-Extensions` (several headers joined with ", ").
    pub ws_extensions: Option<Cow<'a, str>>,
    /// `Sec-WebSocket-Protocol`: the subprotocols offered (several headers joined with ", ").
    pub ws_protocols: Option<Cow<'a, str>>,
    /// `Expect: 100-continue`: the client waits for an interim 100 before the body.
    pub expect_continue: bool,
    /// `If-None-Match` (conditional `GET /roomcast.js`), repeated fields joined with ", "; a
    /// value that is not UTF-8 is ignored (it can only cost the caller a 304).
    pub if_none_match: Option<Cow<'a, str>>,
    /// Length of the head in bytes; the body follows.
    pub head_len: usize,
}

impl<'a> Head<'a> {
    /// Value of query parameter `name` (percent-decoded; borrowed when nothing is encoded).
    pub fn query_param(&self, name: &str) -> Option<Cow<'a, str>> {
        // Byte-wise ('&' and '=' are ASCII, so every cut is on a char boundary): splitting
        // with char patterns cost this function two thirds of its time.
        let mut rest: &'a str = self.query;
        while !rest.is_empty() {
            let end = rest.bytes().position(|b| b == b'&').unwrap_or(rest.len());
            let kv = &rest[..end];
            rest = rest.get(end + 1..).unwrap_or("");
            let (k, v) = match kv.bytes().position(|b| b == b'=') {
                Some(i) => (&kv[..i], &kv[i + 1..]),
                None => (kv, ""),
            };
            if k == name {
                return Some(percent_decode(v));
            }
        }
        None
    }
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b'+') {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

/// The request headers the server reads; every other header is skipped unread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    ContentLength,
    TransferEncoding,
    SystemId,
    Authorization,
    Connection,
    Upgrade,
    Expect,
    WsKey,
    WsVersion,
    Origin,
    WsExtensions,
    WsProtocol,
    IfNoneMatch,
}

impl Field {
    /// The field `name` is (any case), if the server reads it. Lengths are compared before
    /// bytes, so a header the server does not read costs a dozen integer comparisons.
    fn of(name: &str) -> Option<Field> {
        const BY_NAME: [(&str, Field); 14] = [
            ("content-length", Field::ContentLength),
            ("transfer-encoding", Field::TransferEncoding),
            ("systemid", Field::SystemId),
            ("system-id", Field::SystemId),
            ("authorization", Field::Authorization),
            ("connection", Field::Connection),
            ("upgrade", Field::Upgrade),
            ("expect", Field::Expect),
            ("sec-websocket-key", Field::WsKey),
            ("sec-websocket-version", Field::WsVersion),
            ("origin", Field::Origin),
            ("sec-websocket-extensions", Field::WsExtensions),
            ("sec-websocket-protocol", Field::WsProtocol),
            ("if-none-match", Field::IfNoneMatch),
        ];
        BY_NAME.iter().find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name)).map(|&(_, f)| f)
    }
}

const MAX_HEADERS: usize = 48;

/// Parses a request head from `buf`. `max_head` bounds the head, `max_body` the body.
pub fn parse_head(buf: &[u8], max_head: usize, max_body: usize) -> Result<Option<Head<'_>>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > max_head { Err(HttpError::HeadTooLarge) } else { Ok(None) };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HttpError::HeadTooLarge),
        Err(_) => return Err(HttpError::Malformed("malformed HTTP request")),
    };
    if head_len > max_head {
        return Err(HttpError::HeadTooLarge);
    }
    let version = req.version.unwrap_or(1);
    // HTTP/1.0 gets one response per connection: its keep-alive needs a response header this
    // server does not send.
    let http11 = version == 1;
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut h = Head { method: req.method.unwrap_or(""), path, query, keep_alive: http11, head_len, ..Head::default() };
    let mut seen = Seen::default();
    for hd in req.headers.iter() {
        // Only the headers used here are decoded (a browser's User-Agent, Accept-* and
        // cookies are skipped unread); the name's length picks the candidates.
        if let Some(field) = Field::of(hd.name) {
            h.take(field, hd.value, http11, &mut seen)?;
        }
    }
    h.upgrade_websocket &= seen.connection_upgrade;
    if h.content_length > max_body {
        return Err(HttpError::BodyTooLarge);
    }
    Ok(Some(h))
}

/// What the headers said that matters only while reading them.
#[derive(Default)]
struct Seen {
    length: bool,
    connection_upgrade: bool,
}

impl<'a> Head<'a> {
    /// Takes one header this server reads into the head.
    fn take(&mut self, field: Field, value: &'a [u8], http11: bool, seen: &mut Seen) -> Result<(), HttpError> {
        let text =
            || std::str::from_utf8(value).map(str::trim).map_err(|_| HttpError::Malformed("header value is not UTF-8"));
        match field {
            Field::ContentLength => {
                // Digits only (RFC 9110): Rust's integer parsing would also take a leading '+'.
                let n: usize = text()
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse().ok())
                    .ok_or(HttpError::Malformed("invalid Content-Length"))?;
                if seen.length && n != self.content_length {
                    return Err(HttpError::Malformed("conflicting Content-Length headers"));
                }
                seen.length = true;
                self.content_length = n;
            }
            Field::TransferEncoding => return Err(HttpError::LengthRequired),
            Field::SystemId => self.system_id = Some(text()?),
            Field::Authorization => self.authorization = Some(text()?),
            Field::Connection => {
                for tok in text().unwrap_or("").split(',').map(str::trim) {
                    if tok.eq_ignore_ascii_case("close") {
                        self.keep_alive = false;
                    } else if tok.eq_ignore_ascii_case("keep-alive") {
                        self.keep_alive = http11;
                    } else if tok.eq_ignore_ascii_case("upgrade") {
                        seen.connection_upgrade = true;
                    }
                }
            }
            Field::Upgrade => self.upgrade_websocket = text().is_ok_and(|v| v.eq_ignore_ascii_case("websocket")),
            Field::Expect => self.expect_continue = text().is_ok_and(|v| v.eq_ignore_ascii_case("100-continue")),
            Field::WsKey => self.ws_key = Some(text()?),
            Field::WsVersion => self.ws_version = Some(text()?),
            Field::Origin => {
                self.origin_repeated |= self.origin.is_some();
                self.origin = Some(text()?);
            }
            Field::IfNoneMatch => {
                let Ok(v) = text() else { return Ok(()) };
                self.if_none_match = Some(match self.if_none_match.take() {
                    Some(all) => Cow::Owned(format!("{all}, {v}")),
                    None => Cow::Borrowed(v),
                });
            }
            Field::WsExtensions => self.ws_extensions = Some(joined(self.ws_extensions.take(), text()?)),
            Field::WsProtocol => self.ws_protocols = Some(joined(self.ws_protocols.take(), text()?)),
        }
        Ok(())
    }
}

/// A repeated list header's values, joined with ", " (RFC 9110 §5.3).
fn joined<'a>(before: Option<Cow<'a, str>>, v: &'a str) -> Cow<'a, str> {
    match before {
        Some(all) => Cow::Owned(format!("{all}, {v}")),
        None => Cow::Borrowed(v),
    }
}

/// Parses the `subprotocols` setting: comma-separated tokens (RFC 6455 §4.1: the token
/// characters of RFC 7230); `Err` names a bad entry.
pub fn parse_subprotocols(list: &str) -> Result<Vec<Box<str>>, String> {
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| match p.bytes().all(is_tchar) {
            true => Ok(p.into()),
            false => Err(format!("subprotocols: {p:?} is not a token (letters, digits and !#$%&'*+-.^_`|~)")),
        })
        .collect()
}

/// The subprotocol to answer an offer with: the first the client offers (its order of
/// preference) that `accepted` lists.
pub fn choose_subprotocol<'a>(offered: &str, accepted: &'a [Box<str>]) -> Option<&'a str> {
    offered.split(',').map(str::trim).find_map(|o| accepted.iter().find(|a| &***a == o)).map(|a| &**a)
}

/// Whether a connection may carry more requests after a response with `status`.
///
/// Only answers to well-framed, accepted requests keep it: success, and the outcomes of a valid
/// call (404 unknown client or route, 409 already registered, 503 retry later). Every other
/// error means the request was refused (malformed, too large, unauthorized, wrong method, too
/// slow): nothing after it on that connection is read, so bytes smuggled inside a rejected
/// request can never run as requests of their own.
pub fn keeps_alive_after(status: u16) -> bool {
    status < 400 || matches!(status, 404 | 409 | 503)
}

/// Reason phrase of the statuses the server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A complete response with a body.
///
/// One allocation: the length is computed first, so the buffer becomes `Bytes` without the
/// extra shared header a partly used `Vec` would need.
pub fn response(status: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Bytes {
    response_with(status, content_type, &[], body, keep_alive)
}

/// A response with more header fields (`extra`: name and value pairs, written as given). A 304
/// carries neither `Content-Type` nor `Content-Length`.
pub fn response_with(status: u16, content_type: &str, extra: &[(&str, &str)], body: &[u8], keep_alive: bool) -> Bytes {
    let (mut st, mut ln) = (itoa::Buffer::new(), itoa::Buffer::new());
    // A 304 has no content: no Content-Type (RFC 9110 §15.4.5), and no Content-Length, which
    // could only be the 200's (§8.6).
    let bare = status == 304;
    debug_assert!(!bare || body.is_empty());
    let head: [&[u8]; 6] = [
        b"HTTP/1.1 ",
        st.format(status).as_bytes(),
        b" ",
        reason(status).as_bytes(),
        if bare { b"" } else { b"\r\nContent-Type: " },
        if bare { b"" } else { content_type.as_bytes() },
    ];
    let tail: [&[u8]; 3] = [
        if bare { b"" } else { b"\r\nContent-Length: " },
        if bare { b"" } else { ln.format(body.len()).as_bytes() },
        if keep_alive { b"\r\n\r\n" } else { b"\r\nConnection: close\r\n\r\n" },
    ];
    let extra_len: usize = extra.iter().map(|(n, v)| n.len() + v.len() + 4).sum();
    let len = head.iter().chain(&tail).map(|p| p.len()).sum::<usize>() + extra_len + body.len();
    let mut v = Vec::with_capacity(len);
    for p in head {
        v.extend_from_slice(p);
    }
    for (name, value) in extra {
        for p in [b"\r\n", name.as_bytes(), b": ", value.as_bytes()] {
            v.extend_from_slice(p);
        }
    }
    for p in tail {
        v.extend_from_slice(p);
    }
    v.extend_from_slice(body);
    Bytes::from(v)
}

/// A JSON response.
pub fn json(status: u16, body: &[u8], keep_alive: bool) -> Bytes {
    response(status, "application/json", body, keep_alive)
}

/// The interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// `Sec-WebSocket-Accept` for `ws_key` (RFC 6455 §4.2.2): base64 of the SHA-1 of the key and
/// the protocol's GUID, on the stack.
pub fn accept_key(ws_key: &str) -> [u8; 28] {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(ws_key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let mut out = [0u8; 28];
    data_encoding::BASE64.encode_mut(&h.finalize(), &mut out);
    out
}

/// The 101 answer to a WebSocket upgrade, with room for the connect frame that usually
/// follows it ([`api::WELCOME_FRAME_LEN`]): both leave in one buffer of the exact size.
/// `extensions` and `protocol` are the agreed `Sec-WebSocket-Extensions` and
/// `Sec-WebSocket-Protocol`, if any.
pub fn switching_protocols(ws_key: &str, extensions: Option<&str>, protocol: Option<&str>) -> Vec<u8> {
    const HEAD: &[u8] =
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    const EXT: &[u8] = b"\r\nSec-WebSocket-Extensions: ";
    const PROTO: &[u8] = b"\r\nSec-WebSocket-Protocol: ";
    let ext = extensions.map_or(0, |e| EXT.len() + e.len()) + protocol.map_or(0, |p| PROTO.len() + p.len());
    let mut v = Vec::with_capacity(HEAD.len() + 28 + ext + 4 + api::WELCOME_FRAME_LEN);
    v.extend_from_slice(HEAD);
    v.extend_from_slice(&accept_key(ws_key));
    for (name, value) in [(EXT, extensions), (PROTO, protocol)] {
        if let Some(value) = value {
            v.extend_from_slice(name);
            v.extend_from_slice(value.as_bytes());
        }
    }
    v.extend_from_slice(b"\r\n\r\n");
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_the_first_offered_subprotocol_that_is_accepted() {
        let accepted = parse_subprotocols(" json, v2.roomcast ").unwrap();
        assert_eq!(accepted, vec![Box::from("json"), Box::from("v2.roomcast")]);
        assert_eq!(choose_subprotocol("chat, v2.roomcast, json", &accepted), Some("v2.roomcast"));
        assert_eq!(choose_subprotocol("chat", &accepted), None);
        assert_eq!(choose_subprotocol("json", &[]), None);
        assert_eq!(parse_subprotocols("").unwrap(), Vec::<Box<str>>::new());
        assert!(parse_subprotocols("json, a b").unwrap_err().contains("\"a b\""));
        let raw = b"GET /ws HTTP/1.1\r\nSec-WebSocket-Protocol: chat\r\nsec-websocket-protocol: json\r\n\r\n";
        let h = parse_head(raw, 8192, 0).unwrap().unwrap();
        assert_eq!(h.ws_protocols.as_deref(), Some("chat, json"));
        let resp = switching_protocols("dGhlIHNhbXBsZSBub25jZQ==", None, Some("json"));
        assert!(String::from_utf8(resp).unwrap().ends_with("\r\nSec-WebSocket-Protocol: json\r\n\r\n"));
    }

    #[test]
    fn parses_an_api_request() {
        let raw = b"POST /api/send_to_group HTTP/1.1\r\nHost: x\r\nSystemId: s1\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}";
        let h = parse_head(raw, 8192, 1024).unwrap().unwrap();
        assert!(!h.expect_continue);
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/api/send_to_group");
        assert_eq!(h.system_id, Some("s1"));
        assert_eq!(h.authorization, Some("Bearer t"));
        assert_eq!(h.content_length, 2);
        assert!(h.keep_alive);
        assert_eq!(&raw[h.head_len..], b"{}");
    }

    #[test]
    fn if_none_match_fields_join_and_a_bad_one_is_ignored() {
        let raw = b"GET /roomcast.js HTTP/1.1\r\nIf-None-Match: \"a\"\r\nif-none-match: W/\"b\"\r\n\r\n";
        let h = parse_head(raw, 8192, 0).unwrap().unwrap();
        assert_eq!(h.if_none_match.as_deref(), Some("\"a\", W/\"b\""));
        let raw = b"GET /ws HTTP/1.1\r\nIf-None-Match: \xff\xfe\r\n\r\n";
        let h = parse_head(raw, 8192, 0).expect("not a refusal: the field only picks 304 or 200").unwrap();
        assert_eq!(h.if_none_match, None);
    }

    #[test]
    fn partial_head_is_none_until_limit() {
        let raw = b"GET /ws?systemId=a HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(parse_head(raw, 8192, 0), Ok(None));
        assert_eq!(parse_head(raw, 10, 0), Err(HttpError::HeadTooLarge));
    }

    #[test]
    fn query_parameters_in_any_shape() {
        let head = |q: &'static str| Head { query: q, ..Head::default() };
        let h = head("&&flag&systemId=&x=1=2&x=3&%C3%A9=e&t=%C3%A9");
        assert_eq!(h.query_param("flag").as_deref(), Some(""), "no '=': empty value");
        assert_eq!(h.query_param("systemId").as_deref(), Some(""));
        assert_eq!(h.query_param("x").as_deref(), Some("1=2"), "first one wins, cut at the first '='");
        assert_eq!(h.query_param("t").as_deref(), Some("é"));
        assert_eq!(h.query_param("é"), None, "names are matched as sent");
        assert_eq!(h.query_param(""), Some(Cow::Borrowed("")), "the empty segments");
        assert_eq!(head("").query_param("x"), None);
        assert_eq!(head("é=1&x=ü").query_param("x").as_deref(), Some("ü"));
    }

    #[test]
    fn parses_an_upgrade_with_query() {
        let raw = b"GET /ws?systemId=a%20b&x=1 HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: foo\r\nsec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
        let h = parse_head(raw, 8192, 0).unwrap().unwrap();
        assert!(h.upgrade_websocket);
        assert_eq!(h.query_param("systemId").as_deref(), Some("a b"));
        assert_eq!(h.query_param("x").as_deref(), Some("1"));
        assert_eq!(h.query_param("nope"), None);
        assert_eq!(h.ws_extensions.as_deref(), Some("foo, permessage-deflate; client_max_window_bits"));
        let resp = switching_protocols(h.ws_key.unwrap(), None, None);
        assert!(std::str::from_utf8(&resp).unwrap().contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        assert_eq!(
            &resp[..],
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
        );
        assert!(matches!(h.query_param("x"), Some(Cow::Borrowed("1"))), "nothing encoded: no copy");
        let resp = switching_protocols(h.ws_key.unwrap(), Some("permessage-deflate"), None);
        assert!(std::str::from_utf8(&resp)
            .unwrap()
            .ends_with("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
    }

    #[test]
    fn connection_tokens_ignore_case() {
        let raw = b"GET /ws HTTP/1.1\r\nConnection: Keep-Alive , UPGRADE\r\nUpgrade: WebSocket\r\n\r\n";
        let h = parse_head(raw, 8192, 0).unwrap().unwrap();
        assert!(h.upgrade_websocket && h.keep_alive);
        let raw = b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n";
        assert!(!parse_head(raw, 8192, 0).unwrap().unwrap().keep_alive);
    }

    #[test]
    fn accept_key_matches_tungstenite() {
        for key in ["dGhlIHNhbXBsZSBub25jZQ==", "x3JJHMbDL1EzLkh9GBhXDw==", ""] {
            let ours = accept_key(key);
            assert_eq!(std::str::from_utf8(&ours).unwrap(), tungstenite::handshake::derive_accept_key(key.as_bytes()));
        }
    }

    #[test]
    fn rejects_bad_requests() {
        assert!(matches!(parse_head(b"\x00\x01garbage\r\n\r\n", 8192, 0), Err(HttpError::Malformed(_))));
        let te = b"POST /api/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(te, 8192, 100), Err(HttpError::LengthRequired));
        let big = b"POST /api/x HTTP/1.1\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(parse_head(big, 8192, 100), Err(HttpError::BodyTooLarge));
        let bad = b"POST /api/x HTTP/1.1\r\nContent-Length: -1\r\n\r\n";
        assert!(matches!(parse_head(bad, 8192, 100), Err(HttpError::Malformed(_))));
        let http10 = b"GET /health HTTP/1.0\r\n\r\n";
        assert!(!parse_head(http10, 8192, 0).unwrap().unwrap().keep_alive);
        let http10_ka = b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
        assert!(!parse_head(http10_ka, 8192, 0).unwrap().unwrap().keep_alive);
        for cl in ["+17", "-0", "0x10", " ", "1 7", "١"] {
            let raw = format!("POST /api/x HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
            assert!(matches!(parse_head(raw.as_bytes(), 8192, 100), Err(HttpError::Malformed(_))), "{cl:?}");
        }
        let ok = b"POST /api/x HTTP/1.1\r\nContent-Length: 017\r\n\r\n";
        assert_eq!(parse_head(ok, 8192, 100).unwrap().unwrap().content_length, 17);
    }

    #[test]
    fn percent_decoding_tolerates_garbage() {
        assert_eq!(percent_decode("a%2Fb"), "a/b");
        assert_eq!(percent_decode("%zz%"), "%zz%");
        assert_eq!(percent_decode("%4"), "%4");
    }

    #[test]
    fn responses_are_well_formed() {
        let r = json(404, b"{}", false);
        assert_eq!(&r[..], &b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"[..]);
        let body = vec![b'x'; 1234];
        let r = response(200, "text/plain", &body, true);
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1234\r\n\r\n";
        assert_eq!(&r[..head.len()], &head[..]);
        assert_eq!(&r[head.len()..], &body[..]);
        let r = response_with(304, "text/javascript", &[("ETag", "\"x\"")], b"", true);
        assert_eq!(&r[..], &b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"[..]);
    }
}

/// Randomized robustness: arbitrary and mutated requests never panic, and a parsed head
/// never claims more bytes than it was given.
#[cfg(test)]
mod fuzz {
    use super::*;

    #[test]
    fn random_and_mutated_requests_never_panic() {
        let mut rng = fastrand::Rng::with_seed(0xfeed);
        let valid = b"POST /api/send_to_group?x=%41%zz HTTP/1.1\r\nSystemId: s\r\nContent-Length: 2\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n{}";
        for i in 0..200_000 {
            let buf = crate::protocol::fuzz_input(&mut rng, i, &valid[..], 96);
            if let Ok(Some(h)) = parse_head(&buf, 8192, 1 << 20) {
                assert!(h.head_len <= buf.len());
                let _ = h.query_param("x");
            }
        }
    }
}
