//! The compatibility checklist of docs/API.md, byte for byte where upstream clients could care.
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tungstenite::Message;
use util::*;

fn raw_text(c: &mut Client) -> String {
    loop {
        match c.ws.read().expect("frame") {
            Message::Text(t) => return t.as_str().to_string(),
            _ => continue,
        }
    }
}

#[test]
fn connect_frame_is_byte_exact() {
    let s = Server::start(&[]);
    s.register("a");
    let mut c = Client::connect(&s.url("/ws?systemId=a"));
    let t = raw_text(&mut c);
    let id = t
        .strip_prefix(r#"{"code":0,"msg":"success","data":{"clientId":""#)
        .and_then(|r| r.strip_suffix(r#""}}"#))
        .unwrap_or_else(|| panic!("connect frame: {t}"));
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit()));
}

#[test]
fn system_id_header_is_accepted_on_ws() {
    let s = Server::start(&[]);
    s.register("a");
    let mut req = tungstenite::client::IntoClientRequest::into_client_request(s.url("/ws")).unwrap();
    req.headers_mut().insert("SystemId", "a".parse().unwrap());
    let stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut ws, _) = tungstenite::client::client(req, stream).unwrap();
    let Message::Text(t) = ws.read().unwrap() else { panic!("text frame expected") };
    assert!(t.as_str().starts_with(r#"{"code":0,"msg":"success""#));
}

#[test]
fn missing_system_id_gets_the_upstream_frame_then_close() {
    let s = Server::start(&[]);
    let mut c = Client::connect(&s.url("/ws"));
    assert_eq!(
        raw_text(&mut c),
        r#"{"messageId":"","sendUserId":"","code":-1001,"msg":"systemId is required","data":[]}"#
    );
    assert_eq!(c.close_code().map(u16::from), Some(1008), "a refusal closes with 1008");
}

#[test]
fn push_frame_keys_in_order_and_data_byte_for_byte() {
    let s = Server::start(&[]);
    s.register("a");
    let mut c = s.client("a");
    // Raw body so the data's exact bytes (spacing, number format, key order) are ours.
    let body = format!(
        r#"{{"clientId":"{}","sendUserId":"u1","code":200,"msg":"hello","data":{{"z":1.50, "a":[true,null]}}}}"#,
        c.id
    );
    let req = format!(
        "POST /api/send_to_client HTTP/1.1\r\nSystemId: a\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (st, resp) = s.raw(req.as_bytes());
    assert_eq!(st, 200, "{resp}");
    let v: serde_json::Value = serde_json::from_str(&resp).unwrap();
    assert_eq!(v["code"], 0);
    assert_eq!(v["msg"], "success");
    let mid = v["data"]["messageId"].as_str().unwrap().to_string();
    assert_eq!(mid.len(), 16);
    assert!(mid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert_eq!(
        raw_text(&mut c),
        format!(
            r#"{{"messageId":"{mid}","sendUserId":"u1","code":200,"msg":"hello","data":{{"z":1.50, "a":[true,null]}}}}"#
        )
    );
    // A plain string, as upstream clients send.
    s.api("send_to_client", Some("a"), json!({"clientId": c.id, "data": "text"}));
    assert!(raw_text(&mut c).ends_with(r#","code":0,"msg":"","data":"text"}"#));
}

#[test]
fn notices_carry_data_as_a_json_string() {
    let s = Server::start(&[]);
    s.register("a");
    let mut c = s.client("a");
    s.api("bind_to_group", Some("a"), json!({"clientId": c.id, "groupName": "g", "userId": "u7", "extend": "e"}));
    let t = raw_text(&mut c);
    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["code"], 1001);
    assert_eq!(v["msg"], "客户端上线");
    let want = format!(r#"{{"clientId":"{}","extend":"e","userId":"u7"}}"#, c.id);
    assert_eq!(v["data"].as_str(), Some(want.as_str()));
    let keys: Vec<&str> = ["\"messageId\"", "\"sendUserId\"", "\"code\"", "\"msg\"", "\"data\""].to_vec();
    let pos: Vec<usize> = keys.iter().map(|k| t.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "key order in {t}");
}

#[test]
fn server_pings_at_the_configured_interval() {
    let s = Server::start(&["--ping-interval", "200ms"]);
    s.register("a");
    let mut c = s.client("a");
    loop {
        match c.ws.read().expect("a ping within the read timeout") {
            Message::Ping(_) => break,
            _ => continue,
        }
    }
    // Default is upstream's 25 s.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 25s]"));
}

#[test]
fn plain_http_to_ws_gets_426() {
    let s = Server::start(&[]);
    let mut t = TcpStream::connect(s.addr).unwrap();
    t.write_all(b"GET /ws?systemId=a HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    t.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 426"), "{out}");
}
