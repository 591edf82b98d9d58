//! permessage-deflate (RFC 7692) through a real server: negotiation and its absence, one
//! message reaching compressed and plain recipients as the same JSON, compressed once,
//! small messages plain, a small client window, compressed client messages, a zip bomb.

mod util;

use serde_json::{json, Value};
use util::rawws::{deflate, Frame, RawWs};
use util::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const AGREED: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A `/ws` client of `system` with `offer`; returns it and its clientId.
fn client(s: &Server, system: &str, offer: Option<&str>) -> (RawWs, String) {
    let mut c = RawWs::connect(s.addr, &format!("/ws?systemId={system}"), offer);
    assert!(c.head.starts_with("HTTP/1.1 101"), "{}", c.head);
    let f = c.data().expect("connect frame");
    assert!(!f.rsv1, "the connect frame goes plain");
    let v = f.json();
    assert_eq!(v["code"], 0, "{v}");
    let id = v["data"]["clientId"].as_str().unwrap().to_string();
    (c, id)
}

/// The next frame whose message has `msg` (notices of binds are skipped).
fn next_with(c: &mut RawWs, msg: &str) -> Frame {
    next_where(c, |v| v["msg"] == msg)
}

fn next_where(c: &mut RawWs, want: impl Fn(&Value) -> bool) -> Frame {
    loop {
        let f = c.data().expect("no frame of the kind awaited");
        if want(&f.json()) {
            return f;
        }
    }
}

fn send_group(s: &Server, group: &str, msg: &str, data: Value) {
    let (st, v) =
        s.api("send_to_group", Some("sys"), json!({"groupName": group, "code": 200, "msg": msg, "data": data}));
    assert_eq!(st, 200, "{v}");
}

#[test]
fn negotiated_only_when_on_and_offered() {
    let on = Server::start(&["--compression"]);
    on.register("sys");
    let (c, _) = client(&on, "sys", Some(OFFER));
    assert_eq!(c.header("Sec-WebSocket-Extensions").as_deref(), Some(AGREED));
    let (c, _) = client(&on, "sys", Some("permessage-deflate; server_max_window_bits=10"));
    assert_eq!(c.header("Sec-WebSocket-Extensions"), Some(format!("{AGREED}; server_max_window_bits=10")));
    let (c, _) = client(&on, "sys", None);
    assert_eq!(c.header("Sec-WebSocket-Extensions"), None, "not offered");
    let (c, _) = client(&on, "sys", Some("permessage-deflate; mystery_param"));
    assert_eq!(c.header("Sec-WebSocket-Extensions"), None, "no acceptable offer");

    let off = Server::start(&[]);
    off.register("sys");
    let (mut c, id) = client(&off, "sys", Some(OFFER));
    assert_eq!(c.header("Sec-WebSocket-Extensions"), None, "compression is off by default");
    off.bind("sys", &id, "g", "u");
    send_group(&off, "g", "big", json!("x".repeat(2000)));
    assert!(!next_with(&mut c, "big").rsv1);
}

#[test]
fn compressed_and_plain_recipients_get_the_same_json_compressed_once() {
    let s = Server::start(&["--compression"]);
    s.register("sys");
    let mut zipped: Vec<RawWs> = Vec::new();
    for i in 0..4 {
        let (c, id) = client(&s, "sys", Some(OFFER));
        s.bind("sys", &id, "room", &format!("z{i}"));
        zipped.push(c);
    }
    let (mut plain, id) = client(&s, "sys", None);
    s.bind("sys", &id, "room", "p");
    let before = (metric(&s, "compressions_total"), metric(&s, "compressed_frames_total"));

    let text: String = (0..200).map(|i| format!("line {i} of a chatty JSON message; ")).collect();
    send_group(&s, "room", "big", json!({"text": text}));
    let reference = next_with(&mut plain, "big");
    assert!(!reference.rsv1);
    for c in &mut zipped {
        let f = next_with(c, "big");
        assert!(f.rsv1, "a compressing recipient gets the compressed frame");
        assert!(f.payload.len() * 5 < reference.payload.len(), "{} vs {}", f.payload.len(), reference.payload.len());
        assert_eq!(f.message(), reference.payload, "the same JSON, byte for byte");
    }
    let after = (metric(&s, "compressions_total"), metric(&s, "compressed_frames_total"));
    assert_eq!(after.0 - before.0, 1, "compressed once for all recipients, whatever their shard");
    assert_eq!(after.1 - before.1, 4);

    // Below compression_min_size (256 by default): plain for everyone.
    send_group(&s, "room", "small", json!("hi"));
    for c in &mut zipped {
        assert!(!next_with(c, "small").rsv1);
    }
}

#[test]
fn a_small_client_window_gets_plain_frames_for_larger_messages() {
    let s = Server::start(&["--compression", "--compression-min-size", "16"]);
    s.register("sys");
    let (mut c, id) = client(&s, "sys", Some("permessage-deflate; server_max_window_bits=9"));
    s.bind("sys", &id, "g", "u");
    send_group(&s, "g", "fits", json!("y".repeat(300)));
    let f = next_with(&mut c, "fits");
    assert!(f.rsv1, "a message of at most 2^9 bytes cannot reach back further than the window");
    send_group(&s, "g", "larger", json!("y".repeat(2000)));
    let f = next_with(&mut c, "larger");
    assert!(!f.rsv1, "over 2^9 bytes: plain");
    assert_eq!(f.json()["data"], json!("y".repeat(2000)));
}

#[test]
fn compressed_client_messages_are_understood() {
    let s = Server::start(&["--compression", "--client-publish", "--compression-min-size", "16"]);
    s.register("sys");
    let (mut a, id) = client(&s, "sys", Some(OFFER));
    s.bind("sys", &id, "g", "a");
    a.send(0x1, true, true, &deflate(br#"{"cmd":"ping"}"#));
    next_where(&mut a, |v| v["cmd"] == "pong");
    // A compressed publish, fragmented: RSV1 on the first frame only.
    let publish = json!({"cmd": "publish", "groupName": "g", "code": 7, "msg": "pub", "data": "z".repeat(500)});
    let z = deflate(publish.to_string().as_bytes());
    let (head, tail) = z.split_at(z.len() / 2);
    a.send(0x1, true, false, head);
    a.send(0x0, false, true, tail);
    let f = next_with(&mut a, "pub");
    assert_eq!(f.json()["data"], json!("z".repeat(500)));
    assert_eq!(metric(&s, "inflated_messages_total"), 2);
}

#[test]
fn rsv1_without_the_extension_is_a_protocol_error() {
    let s = Server::start(&["--compression"]);
    s.register("sys");
    let (mut c, _) = client(&s, "sys", None);
    c.send(0x1, true, true, &deflate(br#"{"cmd":"ping"}"#));
    let close = c.data().expect("close frame");
    assert_eq!((close.opcode, &close.payload[..2]), (0x8, &1002u16.to_be_bytes()[..]));
}

#[test]
fn a_zip_bomb_gets_1009_and_the_server_keeps_serving() {
    let s = Server::start(&["--compression"]);
    s.register("sys");
    let (mut c, _) = client(&s, "sys", Some(OFFER));
    // 64 MiB of spaces in a JSON string: ~64 KiB compressed, far past max_message_size (8 KiB).
    let mut bomb = b"{\"cmd\":\"ping\",\"pad\":\"".to_vec();
    bomb.resize(64 << 20, b' ');
    let z = deflate(&bomb);
    assert!(z.len() < 8192 * 16, "{}", z.len());
    // Sent in fragments each under the frame bound: only the inflated size is over it.
    for (i, part) in z.chunks(4096).enumerate() {
        let last = (i + 1) * 4096 >= z.len();
        c.send(if i == 0 { 0x1 } else { 0x0 }, i == 0, last, part);
    }
    let close = c.data().expect("close frame");
    assert_eq!(close.opcode, 0x8);
    assert_eq!(u16::from_be_bytes([close.payload[0], close.payload[1]]), 1009);
    assert!(metric(&s, "oversized_closes_total") >= 1);
    let (mut other, _) = client(&s, "sys", Some(OFFER));
    other.send(0x1, true, true, &deflate(br#"{"cmd":"ping"}"#));
    assert_eq!(other.data().unwrap().json(), json!({"cmd": "pong"}));
}

#[test]
fn a_resumed_session_keeps_compressing_and_gets_missed_frames_in_full() {
    let s = Server::start(&["--compression"]);
    s.register("sys");
    let url = "/ws?systemId=sys&recover=1";
    let mut c = RawWs::connect(s.addr, url, Some(OFFER));
    let hello = c.data().unwrap().json();
    let id = hello["data"]["clientId"].as_str().unwrap().to_string();
    let token = hello["data"]["resumeToken"].as_str().unwrap().to_string();
    s.bind("sys", &id, "g", "u");
    next_where(&mut c, |v| v["code"] == 1001);
    // Dropped without a close handshake: the session waits for its client.
    socket2::SockRef::from(&c.sock).set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(c);
    let t = std::time::Instant::now();
    while metric(&s, "recovery_sessions") < 1 {
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "the drop was not noticed");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let big = "m".repeat(1000);
    send_group(&s, "g", "missed", json!(big));
    let mut c = RawWs::connect(s.addr, &format!("{url}&resume={token}"), Some(OFFER));
    assert_eq!(c.header("Sec-WebSocket-Extensions").as_deref(), Some(AGREED));
    let hello = c.data().unwrap().json();
    assert_eq!((hello["data"]["clientId"].as_str(), &hello["data"]["recovered"]), (Some(id.as_str()), &json!(true)));
    assert_eq!(next_with(&mut c, "missed").json()["data"], json!(big));
    send_group(&s, "g", "after", json!(big));
    let f = next_with(&mut c, "after");
    assert!(f.rsv1, "the new connection's compression applies");
    assert_eq!(f.json()["data"], json!(big));
}

/// Security review, low (reproduced): on the echo path a compressed message inflated up to
/// echo_max_message_size (16 MiB) and was deflated again, ~1000x the work of what was sent.
/// Inflation there stops at echo_max_inflated_size (1 MiB by default).
#[test]
fn echo_inflation_is_bounded() {
    let s = Server::start(&["--echo-path", "/echo", "--compression", "--compression-min-size", "1"]);
    let mut ok = RawWs::connect(s.addr, "/echo", Some(OFFER));
    assert!(ok.header("sec-websocket-extensions").is_some(), "{}", ok.head);
    let half = vec![b'a'; 512 * 1024];
    ok.send(0x2, true, true, &deflate(&half));
    let back = ok.data().expect("the echo");
    assert_eq!(util::rawws::inflate(&back.payload).len(), half.len());
    let mut bomb = RawWs::connect(s.addr, "/echo", Some(OFFER));
    let two_mib = deflate(&vec![0u8; 2 << 20]);
    assert!(two_mib.len() < 4096, "a small message: {}", two_mib.len());
    bomb.send(0x2, true, true, &two_mib);
    let close = bomb.data().expect("a close frame");
    assert_eq!(close.opcode, 0x8);
    assert_eq!(u16::from_be_bytes([close.payload[0], close.payload[1]]), 1009);
}
