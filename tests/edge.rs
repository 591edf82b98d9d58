//! The internet edge: `/metrics` behind the operator token, the admin listener, allowed
//! origins and per-address bounds — through a real server process and real sockets.

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use tungstenite::client::IntoClientRequest;
use util::*;

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let auth = auth.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    raw_at(addr, format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes())
}

#[test]
fn metrics_need_an_operator_token_unless_on_the_admin_listener() {
    let s = Server::start_with_jwt(&["--admin-listen", "127.0.0.1:0"]);
    let (st, body) = get(s.addr, "/metrics", None);
    assert_eq!(st, 401, "{body}");
    let (st, body) = get(s.addr, "/metrics", Some(&token(Some("sys"), 60)));
    assert_eq!(st, 403, "a system's token is not an operator's: {body}");
    let (st, body) = get(s.addr, "/metrics", s.token.as_deref());
    assert_eq!(st, 200);
    assert!(body.contains("roomcast_metrics_refusals_total 2"), "{body}");
    let (st, body) = get(s.addr, "/health", None);
    assert_eq!(st, 200, "health stays open on the public listener: {body}");

    let admin = s.admin.expect("admin address");
    let (st, body) = get(admin, "/metrics", None);
    assert_eq!(st, 200);
    assert!(body.contains("roomcast_connections "), "{body}");
    let (st, body) = get(admin, "/health", None);
    assert_eq!((st, body.contains("\"status\":\"ok\"")), (200, true), "{body}");
    let (st, body) = get(admin, "/api/send_to_client", None);
    assert_eq!(st, 404, "{body}");
    let (st, _) = raw_at(admin, b"GARBAGE\r\n\r\n");
    assert_eq!(st, 400);
    // A POST (with a body) is told to use GET, not that its body is too large.
    let post = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let (st, body) = raw_at(admin, post);
    assert_eq!(st, 405, "{body}");
    assert!(body.contains("GET only"), "{body}");
}

#[test]
fn metrics_stay_open_without_an_api_key() {
    let s = Server::start(&[]);
    assert_eq!(get(s.addr, "/metrics", None).0, 200);
}

/// A handshake with `origin`: the HTTP status the server answered (101 on success).
fn handshake_status(s: &Server, origin: Option<&str>) -> u16 {
    let mut req = s.url("/ws?systemId=sys").into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("Origin", o.parse().unwrap());
    }
    let stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    match tungstenite::client::client(req, stream) {
        Ok((_, resp)) => resp.status().as_u16(),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => resp.status().as_u16(),
        Err(e) => panic!("handshake: {e}"),
    }
}

#[test]
fn only_allowed_origins_may_open_a_websocket() {
    let s = Server::start(&["--allowed-origins", "https://app.example.com, *.example.org"]);
    s.register("sys");
    assert_eq!(handshake_status(&s, Some("https://app.example.com")), 101);
    assert_eq!(handshake_status(&s, Some("https://live.example.org:8443")), 101);
    assert_eq!(handshake_status(&s, None), 101, "no Origin: not a browser");
    assert_eq!(handshake_status(&s, Some("https://evil.example.com")), 403);
    assert_eq!(handshake_status(&s, Some("http://app.example.com")), 403, "another scheme");
    assert_eq!(handshake_status(&s, Some("null")), 403);
    assert_eq!(metric(&s, "origin_refusals_total"), 3);
    // The refused handshakes took nothing with them: the server still serves.
    let mut c = s.client("sys");
    c.send_text(r#"{"cmd":"ping"}"#);
    assert_eq!(c.recv().unwrap()["cmd"], "pong");
    c.expect_silence(Duration::from_millis(50));
}

/// `allowed_origins` as a TOML list (the flag's comma-separated string otherwise).
#[test]
fn allowed_origins_may_be_a_toml_list() {
    let path = std::env::temp_dir().join(format!("roomcast-origins-{}.toml", std::process::id()));
    std::fs::write(&path, "allowed_origins = [\"https://app.example.com\", \"*.example.org\"]\n").unwrap();
    let s = Server::start(&["--config", path.to_str().unwrap()]);
    std::fs::remove_file(&path).ok();
    s.register("sys");
    assert_eq!(upgrade_with_origins(&s, &["https://app.example.com"]), 101);
    assert_eq!(upgrade_with_origins(&s, &["https://x.example.org"]), 101);
    assert_eq!(upgrade_with_origins(&s, &["https://evil.example"]), 403);
}

/// A raw upgrade request with these `Origin` headers: the status answered.
fn upgrade_with_origins(s: &Server, origins: &[&str]) -> u16 {
    let mut req =
        String::from("GET /ws?systemId=sys HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    req.push_str("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n");
    for o in origins {
        req.push_str(&format!("Origin: {o}\r\n"));
    }
    req.push_str("\r\n");
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(req.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    c.read_exact(&mut head).unwrap();
    String::from_utf8_lossy(&head[9..12]).parse().unwrap()
}

/// Security review, low: origins with a fragment, path, query or user info passed
/// `*.example.org`, and of two Origin headers the last one counted.
#[test]
fn only_a_plain_origin_passes_and_two_origins_are_refused() {
    let s = Server::start(&["--allowed-origins", "*.example.org"]);
    s.register("sys");
    assert_eq!(upgrade_with_origins(&s, &["https://a.example.org"]), 101);
    for bad in [
        "https://evil.io#.example.org",
        "https://evil.io/.example.org",
        "https://evil.io?.example.org",
        "https://user@a.example.org",
    ] {
        assert_eq!(upgrade_with_origins(&s, &[bad]), 403, "{bad}");
    }
    assert_eq!(upgrade_with_origins(&s, &["https://evil.io", "https://a.example.org"]), 403);
    assert_eq!(upgrade_with_origins(&s, &["https://a.example.org", "https://a.example.org"]), 403);
    assert_eq!(metric(&s, "origin_refusals_total"), 6);
}

#[test]
fn bad_allowed_origins_stop_the_server_with_a_message() {
    let err = refused_settings(&["--allowed-origins", "app.example.com"]);
    assert!(err.contains("allowed_origins") && err.contains("app.example.com"), "{err}");
}

/// A TCP connection from `from` (any 127/8 address works on Linux loopback).
fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&format!("{from}:0").parse::<SocketAddr>().unwrap().into()).unwrap();
    sock.connect(&to.into()).unwrap();
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// `GET /health` on an open keep-alive connection: the status.
fn health_on(c: &mut TcpStream) -> u16 {
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some((st, _, _)) = complete_response(&buf) {
            return st;
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return 0,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// What the server says to a connection it refuses at once: it answers before reading the
/// request (which, as any client does, goes out first: on Linux the listener hands a
/// connection over only once its first bytes arrived, TCP_DEFER_ACCEPT).
fn refusal(mut c: TcpStream) -> (u16, String) {
    let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    parse_response(&out)
}

#[test]
fn connections_per_address_are_bounded() {
    let s = Server::start(&["--max-connections-per-ip", "2"]);
    let mut a = connect_from("127.0.0.1", s.addr);
    let mut b = connect_from("127.0.0.1", s.addr);
    assert_eq!((health_on(&mut a), health_on(&mut b)), (200, 200));
    let (st, body) = refusal(connect_from("127.0.0.1", s.addr));
    assert_eq!(st, 429, "{body}");
    assert!(body.contains("max_connections_per_ip"), "{body}");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2", s.addr);
    assert_eq!(health_on(&mut other), 200);
    // A closed connection gives its place back (the close reaches the server shortly after).
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut again = loop {
        let mut c = connect_from("127.0.0.1", s.addr);
        if health_on(&mut c) == 200 {
            break c;
        }
        assert!(Instant::now() < deadline, "the place of a closed connection never came back");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(health_on(&mut again), 200);
    drop((again, b, other));
    std::thread::sleep(Duration::from_millis(100));
    assert!(metric(&s, "refused_per_ip_total") >= 1);
}

#[test]
fn websocket_handshakes_per_address_are_rate_bounded() {
    let s = Server::start(&["--handshakes-per-ip-per-second", "2"]);
    s.register("sys");
    // Six handshakes within well under a second span at most two one-second windows: at most
    // four may pass.
    let started = Instant::now();
    let statuses: Vec<u16> = (0..6).map(|_| handshake_status(&s, None)).collect();
    if started.elapsed() < Duration::from_millis(900) {
        let ok = statuses.iter().filter(|&&st| st == 101).count();
        let refused = statuses.iter().filter(|&&st| st == 429).count();
        assert_eq!(ok + refused, 6, "{statuses:?}");
        assert!((2..=4).contains(&ok), "{statuses:?}");
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // HTTP API calls are not handshakes: not bounded by the rate.
    for _ in 0..5 {
        assert_eq!(get(s.addr, "/health", None).0, 200);
    }
}

/// Security review, medium (reproduced): the admin listener served one connection at a time
/// with a per-read timeout, so a peer sending a byte every 1.5 s held `/health` for over 8 s
/// and four idle connections delayed it 5.8 s. Now each connection has its own thread and the
/// whole request one deadline.
#[test]
fn slow_admin_peers_do_not_hold_up_health_checks() {
    let s = Server::start(&["--admin-listen", "127.0.0.1:0"]);
    let admin = s.admin.unwrap();
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(admin).unwrap()).collect();
    let trickle = std::thread::spawn(move || {
        let mut c = TcpStream::connect(admin).unwrap();
        let req = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
        let t = Instant::now();
        for b in req {
            if c.write_all(&[*b]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        (t.elapsed(), rest)
    });
    std::thread::sleep(Duration::from_millis(100));
    let (st, body) = get(admin, "/health", None);
    assert_eq!(st, 200, "{body}");
    // Answered while the idle peers were still held open (not after they timed out).
    for mut c in idle.iter().map(|c| c.try_clone().unwrap()) {
        c.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = c.read(&mut b);
        assert!(matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock), "{r:?}");
    }
    // The trickling peer is cut off at the deadline although its bytes keep coming (the whole
    // request would take 8 s): it gets no answer.
    let (took, answer) = trickle.join().unwrap();
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert!(took < Duration::from_secs(8), "cut off before its request was complete ({took:?})");
    wait_metric(&s, "admin_timeouts_total", 5, "the idle peers were never timed out");
    drop(idle);
}

/// A tungstenite handshake to /ws offering `offer` (Sec-WebSocket-Protocol): the subprotocol
/// agreed, or the client's error. tungstenite, as browsers do, fails a handshake that offered
/// subprotocols and got none.
fn connect_offering(s: &Server, offer: &str) -> Result<Option<String>, String> {
    let mut req = s.url("/ws?systemId=sys").into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", offer.parse().unwrap());
    let stream = TcpStream::connect(s.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (mut ws, resp) = tungstenite::client::client(req, stream).map_err(|e| e.to_string())?;
    let hello: serde_json::Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    assert!(hello["data"]["clientId"].is_string(), "{hello}");
    Ok(resp.headers().get("Sec-WebSocket-Protocol").map(|v| v.to_str().unwrap().to_string()))
}

/// Issue 28: `new WebSocket(url, ["json"])` failed in every browser, as no subprotocol was
/// ever chosen. With `subprotocols` the first one the client offers that is listed is (the
/// log line for an unlisted offer: tests/logs.rs).
#[test]
fn a_listed_subprotocol_is_chosen() {
    let s = Server::start(&["--subprotocols", "json, v2.roomcast"]);
    s.register("sys");
    assert_eq!(connect_offering(&s, "json").unwrap().as_deref(), Some("json"));
    assert_eq!(connect_offering(&s, "chat, v2.roomcast, json").unwrap().as_deref(), Some("v2.roomcast"));
    // Offered but not listed: the handshake is answered without one (as upstream), which
    // a browser (and tungstenite) then fails.
    let err = connect_offering(&s, "chat").unwrap_err();
    assert!(err.to_lowercase().contains("subprotocol"), "{err}");
    let unlisted = Server::start(&[]);
    unlisted.register("sys");
    assert!(connect_offering(&unlisted, "json").is_err());
    // Clients that offer none are untouched.
    let mut c = s.client("sys");
    assert!(!c.id.is_empty());
    c.expect_silence(Duration::from_millis(100));
}

#[test]
fn a_subprotocol_that_is_not_a_token_stops_the_server_with_a_message() {
    let err = refused_settings(&["--subprotocols", "json, a b"]);
    assert!(err.contains("subprotocols") && err.contains("\"a b\""), "{err}");
}
