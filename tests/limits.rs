//! Bounds and bad input: each gets its documented error or close code, and the server keeps
//! serving.
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;
use util::*;

fn still_serving(s: &Server) {
    let (st, _) = s.raw(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(st, 200);
    let mut c = s.client("a");
    c.send_text(r#"{"cmd":"ping"}"#);
    assert_eq!(c.recv().unwrap()["cmd"], "pong");
}

#[test]
fn oversized_messages_close_1009() {
    let s = Server::start(&[]);
    s.register("a");
    let mut ok = s.client("a");
    ok.send_text(&"x".repeat(8192));
    ok.send_text(r#"{"cmd":"ping"}"#);
    assert_eq!(ok.recv().unwrap()["cmd"], "pong", "8192 bytes is within the default limit");
    let mut big = s.client("a");
    big.send_text(&"x".repeat(8193));
    assert_eq!(big.close_code().map(u16::from), Some(1009));
    // The same limit holds for a message split into fragments.
    let mut frag = s.client("a");
    for i in 0..3 {
        let op = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        frag.ws.write(Message::Frame(Frame::message(vec![b'y'; 4000], op, i == 2))).unwrap();
    }
    frag.ws.flush().unwrap();
    assert_eq!(frag.close_code().map(u16::from), Some(1009));
    assert!(metric(&s, "oversized_closes_total") >= 2);
    still_serving(&s);
}

#[test]
fn invalid_utf8_text_closes_1007() {
    let s = Server::start(&[]);
    s.register("a");
    let mut c = s.client("a");
    c.ws.write(Message::Frame(Frame::message(vec![0xff, 0xfe, b'a'], OpCode::Data(Data::Text), true))).unwrap();
    c.ws.flush().unwrap();
    assert_eq!(c.close_code().map(u16::from), Some(1007));
    still_serving(&s);
}

#[test]
fn unmasked_client_frame_closes_1002() {
    let s = Server::start(&[]);
    s.register("a");
    let mut c = s.client("a");
    c.ws.get_mut().write_all(&[0x81, 0x02, b'h', b'i']).unwrap();
    assert_eq!(c.close_code().map(u16::from), Some(1002));
    still_serving(&s);
}

#[test]
fn bad_http_gets_clear_errors() {
    let s = Server::start(&["--max-body-size", "1000"]);
    s.register("a");
    let cases: &[(&[u8], u16, &str)] = &[
        (b"\x16\x03\x01garbage\r\n\r\n", 400, "malformed HTTP request"),
        (b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: 5\r\n\r\n{oops", 400, "JSON"),
        (
            b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: 15\r\n\r\n{\"code\":\"high\"}",
            400,
            "code",
        ),
        (b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: 1001\r\n\r\n", 413, "body"),
        (
            b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            411,
            "Content-Length",
        ),
        (b"GET /api/send_to_group HTTP/1.1\r\nSystemId: a\r\n\r\n", 405, "POST"),
        (b"POST /api/nope HTTP/1.1\r\nSystemId: a\r\nContent-Length: 0\r\n\r\n", 404, "/api/nope"),
        (b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n", 404, "/nope"),
        (b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: 2\r\n\r\n\xff\xfe", 400, "UTF-8"),
    ];
    for (req, want, names) in cases {
        let (st, body) = s.raw(req);
        assert_eq!(st, *want, "request {:?} -> {body}", String::from_utf8_lossy(req));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("JSON error body: {body}"));
        assert_eq!((&v["code"], &v["data"]), (&serde_json::json!(-1), &serde_json::json!([])), "{body}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(names), "the message of a {want} should name {names:?}: {msg}");
    }
    let mut huge = b"GET /health HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 10_000));
    huge.extend_from_slice(b"\r\n\r\n");
    assert_eq!(s.raw(&huge).0, 431);
    still_serving(&s);
}

#[test]
fn max_connections_refuses_with_503() {
    let s = Server::start(&["--max-connections", "3"]);
    s.register("a");
    let c1 = s.client("a");
    let _c2 = s.client("a");
    let _c3 = s.client("a");
    let (st, body) = s.raw(b"GET /health HTTP/1.1\r\n\r\n");
    assert_eq!(st, 503, "{body}");
    assert!(body.contains("max_connections"));
    assert!(metric_after_close(&s, c1) >= 1);
}

fn metric_after_close(s: &Server, c: Client) -> u64 {
    drop(c);
    for _ in 0..100 {
        let (st, text) = s.raw(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        if st == 200 {
            return text
                .lines()
                .find_map(|l| l.strip_prefix("roomcast_refused_full_total ").map(|v| v.parse().unwrap()))
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("server did not free the connection");
}

/// A client that stops reading is closed with 1008 once its output passes the hard limit,
/// while a healthy client in the same group receives every message.
#[test]
fn slow_consumer_is_closed_1008_and_others_keep_receiving() {
    let s = Server::start(&["--output-hard-limit", "262144", "--output-soft-limit", "131072"]);
    s.register("a");
    // The slow client: a tiny receive buffer so the kernel cannot hide the backlog.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (ws, _) = tungstenite::client::client(s.url("/ws?systemId=a"), stream).unwrap();
    let mut slow = Client { ws, id: String::new() };
    slow.id = slow.recv().unwrap()["data"]["clientId"].as_str().unwrap().to_string();
    let mut healthy = s.client("a");
    healthy.set_timeout(Duration::from_secs(20));
    s.bind("a", &slow.id, "g", "slow");
    s.bind("a", &healthy.id, "g", "ok");

    let n = 2500; // 2500 × 4 KB = 10 MB: far past the hard limit plus any kernel buffer
    let slow_id = slow.id.clone();
    // How far the healthy client got: the sender keeps within 32 messages (128 KB) of it, so
    // it is never behind by the hard limit however busy this machine is (a healthy client is
    // one that keeps up), while the slow client's backlog grows without bound.
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = progress.clone();
    let reader = std::thread::spawn(move || {
        let (mut got, mut offline) = (0, 0);
        while got < n || offline == 0 {
            let Some(v) = healthy.recv() else { break };
            match v["code"].as_i64() {
                Some(200) => {
                    assert_eq!(v["msg"], got.to_string(), "in order, none lost");
                    got += 1;
                    seen.store(got, std::sync::atomic::Ordering::Relaxed);
                }
                Some(1002) if v["data"].as_str().unwrap().contains(&slow_id) => offline += 1,
                _ => {}
            }
        }
        (got, offline, healthy)
    });
    let mut h = Http::new(&s);
    let data = "d".repeat(4000);
    for i in 0..n {
        let t = std::time::Instant::now();
        while i >= progress.load(std::sync::atomic::Ordering::Relaxed) + 32 && t.elapsed() < Duration::from_secs(20) {
            std::thread::sleep(Duration::from_micros(200));
        }
        let (st, v) =
            h.call("send_to_group", "a", &json!({"groupName": "g", "code": 200, "msg": i.to_string(), "data": data}));
        assert_eq!(st, 200, "{v}");
    }
    let (got, offline, _healthy) = reader.join().unwrap();
    assert_eq!(got, n, "the healthy client received everything");
    assert_eq!(offline, 1, "the slow client went offline exactly once");
    // The slow client now reads its backlog and finds the 1008 close at the end.
    let code = loop {
        match slow.ws.read() {
            Ok(Message::Close(f)) => break f.map(|f| u16::from(f.code)),
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some(1008));
    assert_eq!(metric(&s, "slow_consumer_closes_total"), 1);
    let (_, v) = s.api("get_online_list", Some("a"), json!({"groupName": "g"}));
    assert_eq!(v["data"]["count"], 1);
}

#[test]
fn partial_requests_do_not_hang_the_server() {
    let s = Server::start(&[]);
    s.register("a");
    // Half a request head, never finished, on a connection kept open.
    let mut stuck = TcpStream::connect(s.addr).unwrap();
    stuck.write_all(b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Le").unwrap();
    // A declared body that never fully arrives.
    let mut short = TcpStream::connect(s.addr).unwrap();
    short.write_all(b"POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: 100\r\n\r\n{").unwrap();
    still_serving(&s);
    let mut buf = [0u8; 16];
    stuck.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    assert!(stuck.read(&mut buf).is_err(), "no answer to an incomplete head");
}

/// A client that pipelines thousands of requests (local answers and hub round trips mixed)
/// before reading gets every response, in order; its unread output is bounded by pausing
/// its input, not by dropping anything.
#[test]
fn pipelined_requests_all_answered_in_order() {
    let s = Server::start(&["--output-hard-limit", "65536", "--output-soft-limit", "32768"]);
    s.register("a");
    let n = 3000;
    let mut reqs = Vec::new();
    for i in 0..n {
        if i % 3 == 0 {
            let body = format!(r#"{{"groupName":"g","code":{i}}}"#);
            reqs.extend_from_slice(
                format!(
                    "POST /api/send_to_group HTTP/1.1\r\nSystemId: a\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        } else {
            reqs.extend_from_slice(b"GET /health HTTP/1.1\r\n\r\n");
        }
    }
    let mut w = TcpStream::connect(s.addr).unwrap();
    w.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut r = w.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&reqs).unwrap());
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut seen = 0;
    while seen < n {
        let k = r.read(&mut chunk).expect("responses keep coming");
        assert!(k > 0, "closed after {seen} responses");
        buf.extend_from_slice(&chunk[..k]);
        while let Some((status, body, len)) = complete_response(&buf) {
            let body = String::from_utf8_lossy(&buf[body]).to_string();
            assert_eq!(status, 200, "{body}");
            let api = seen % 3 == 0;
            assert_eq!(body.contains("messageId"), api, "response {seen} out of order: {body}");
            buf.drain(..len);
            seen += 1;
        }
    }
    writer.join().unwrap();
}

/// Regression (security review, medium): output limits counted frame bytes, so a client that
/// sends pings and never reads could queue ~500,000 two-byte pongs (~50 MB of allocations)
/// under a 1 MiB limit. Each queued frame now also counts its bookkeeping: the hard limit
/// closes such a client (1008) after some 16,000 pongs.
#[test]
fn unread_pongs_count_as_memory() {
    let s = Server::start(&["--output-soft-seconds", "60s"]);
    s.register("a");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&s.addr.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let url = s.url("/ws?systemId=a");
    let (mut ws, _) = tungstenite::client::client(url.as_str(), stream).expect("handshake");
    let hello = ws.read().unwrap();
    assert!(hello.is_text());
    // 300,000 empty masked pings (6 bytes each), written without reading anything.
    let mut w = ws.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let ping = [0x89u8, 0x80, 1, 2, 3, 4];
        let burst: Vec<u8> = ping.iter().copied().cycle().take(6 * 10_000).collect();
        for _ in 0..30 {
            if w.write_all(&burst).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_secs(2));
    assert!(metric(&s, "slow_consumer_closes_total") >= 1, "a ping flood that is never read must hit the limit");
    let mut code = None;
    for _ in 0..1_000_000 {
        match ws.read() {
            Ok(Message::Close(f)) => {
                code = f.map(|f| u16::from(f.code));
                break;
            }
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    assert_eq!(code, Some(1008));
    let _ = writer.join();
    still_serving(&s);
}

/// Regression (security review, medium): 100 KB group names and extends and 1,100 groups on
/// one client were accepted. Names, extends and groups per client are bounded, with a 400
/// that names the setting, and counted.
#[test]
fn names_extends_and_groups_per_client_are_bounded() {
    let s = Server::start(&["--max-groups-per-client", "3"]);
    s.register("a");
    let c = s.client("a");
    let long = "n".repeat(257);
    let cases = [
        ("register", None, json!({"systemId": long})),
        ("send_to_group", Some("a"), json!({"groupName": long})),
        ("get_online_list", Some("a"), json!({"groupName": long})),
        ("bind_to_group", Some("a"), json!({"clientId": c.id, "groupName": long})),
        ("bind_to_group", Some("a"), json!({"clientId": c.id, "groupName": "g", "userId": long})),
        ("bind_to_group", Some("a"), json!({"clientId": c.id, "groupName": "g", "extend": "e".repeat(4097)})),
        ("get_all_groups", Some(long.as_str()), json!({})),
    ];
    for (name, system, body) in cases {
        let (st, v) = s.api(name, system, body);
        assert_eq!(st, 400, "{name}: {v}");
        assert!(v["msg"].as_str().unwrap().contains("max_"), "{name}: {v}");
    }
    assert!(metric(&s, "limit_refusals_total") >= 7);
    // At the bounds exactly: accepted.
    let (st, v) = s.api(
        "bind_to_group",
        Some("a"),
        json!({"clientId": c.id, "groupName": "g".repeat(256), "userId": "u".repeat(256), "extend": "e".repeat(4096)}),
    );
    assert_eq!(st, 200, "{v}");
    for g in ["g2", "g3"] {
        s.bind("a", &c.id, g, "u");
    }
    let (st, v) = s.api("bind_to_group", Some("a"), json!({"clientId": c.id, "groupName": "g4"}));
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("max_groups_per_client"), "{v}");
    assert_eq!(metric(&s, "group_limit_refusals_total"), 1);
    // Binding again to a group it is in is no new group; after an unbind there is room.
    s.bind("a", &c.id, "g2", "u2");
    let (st, _) = s.api("unbind_from_group", Some("a"), json!({"clientId": c.id, "groupName": "g3"}));
    assert_eq!(st, 200);
    s.bind("a", &c.id, "g4", "u");
    // A WebSocket connect naming an over-long system gets the -1001 frame saying so.
    let mut w = Client::connect(&s.url(&format!("/ws?systemId={long}")));
    let v = w.recv().unwrap();
    assert_eq!(v["code"], -1001);
    assert!(v["msg"].as_str().unwrap().contains("max_name_bytes"), "{v}");
}

/// `get_all_groups` answers upstream's call whole while it fits in one answer, and otherwise
/// says to page; pages walk every group once, in name order.
#[test]
fn all_groups_is_read_in_pages() {
    let s = Server::start(&["--groups-page-size", "3"]);
    s.register("a");
    let c = s.client("a");
    let d = s.client("a");
    let names = ["b", "a", "e", "c", "g", "f", "d"];
    for g in names {
        s.bind("a", &c.id, g, "u");
    }
    s.bind("a", &d.id, "a", "u");
    let (st, v) = s.api("get_all_groups", Some("a"), json!({}));
    assert_eq!(st, 400, "{v}");
    assert!(v["msg"].as_str().unwrap().contains("cursor"), "{v}");
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let (st, v) = s.api("get_all_groups", Some("a"), json!({"limit": 100, "cursor": cursor}));
        assert_eq!(st, 200, "{v}");
        let groups = v["data"]["groups"].as_object().unwrap();
        assert!(groups.len() <= 3);
        seen.extend(groups.keys().cloned());
        if groups.contains_key("a") {
            assert_eq!(groups["a"].as_array().unwrap().len(), 2);
        }
        cursor = v["data"]["cursor"].as_str().unwrap().to_string();
        if cursor.is_empty() {
            break;
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e", "f", "g"]);
    // A small system still gets upstream's whole map.
    s.register("small");
    let e = s.client("small");
    s.bind("small", &e.id, "only", "u");
    let (st, v) = s.api("get_all_groups", Some("small"), json!({}));
    assert_eq!((st, v["data"]["only"][0].as_str()), (200, Some(e.id.as_str())), "{v}");
}
