//! TLS termination through a real server: wss and https with a self-signed certificate made
//! here (rcgen), large messages over several records, plain HTTP to the TLS port, a stalled
//! handshake, certificate reload on SIGHUP (open connections untouched, a bad file ignored).

mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use serde_json::{json, Value};
use tungstenite::WebSocket;
use util::*;

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A self-signed certificate for localhost: (PEM cert, PEM key, DER cert).
fn make_cert() -> (String, String, CertificateDer<'static>) {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    (c.cert.pem(), c.key_pair.serialize_pem(), c.cert.der().clone())
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("roomcast-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Files { dir }
    }
    fn write(&self, cert: &str, key: &str) {
        std::fs::write(self.dir.join("cert.pem"), cert).unwrap();
        std::fs::write(self.dir.join("key.pem"), key).unwrap();
    }
    fn cert(&self) -> String {
        self.dir.join("cert.pem").display().to_string()
    }
    fn key(&self) -> String {
        self.dir.join("key.pem").display().to_string()
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn client_config(trusted: &[&CertificateDer<'static>]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for c in trusted {
        roots.add((*c).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Full handshakes each time: a resumed session would not show the certificate again.
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

fn tls_connect(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> Tls {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let conn = ClientConnection::new(cfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    StreamOwned::new(conn, tcp)
}

/// One raw request (ending with `Connection: close`) on a fresh TLS connection: (status, body).
fn tls_request(addr: SocketAddr, cfg: &Arc<ClientConfig>, req: &[u8]) -> (u16, String) {
    let mut s = tls_connect(addr, cfg);
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    parse_response(&out)
}

/// One HTTPS API call on a fresh connection: (status, body).
fn https(addr: SocketAddr, cfg: &Arc<ClientConfig>, path: &str, body: &Value) -> (u16, Value) {
    let b = body.to_string();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nSystemId: sys\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{b}",
        b.len()
    );
    let (status, text) = tls_request(addr, cfg, req.as_bytes());
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn wss(addr: SocketAddr, cfg: &Arc<ClientConfig>) -> (WebSocket<Tls>, String) {
    let s = tls_connect(addr, cfg);
    let (mut ws, _) = tungstenite::client::client(format!("wss://localhost:{}/ws?systemId=sys", addr.port()), s)
        .expect("wss handshake");
    let hello: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    (ws, hello["data"]["clientId"].as_str().unwrap().to_string())
}

fn recv_msg(ws: &mut WebSocket<Tls>, msg: &str) -> Value {
    loop {
        let m = ws.read().expect("a frame");
        if let Ok(t) = m.to_text() {
            let v: Value = serde_json::from_str(t).unwrap_or(Value::Null);
            if v["msg"] == msg {
                return v;
            }
        }
    }
}

fn start(files: &Files, extra: &[&str]) -> Server {
    let (cert, key) = (files.cert(), files.key());
    let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn wss_and_https_carry_the_whole_api() {
    let files = Files::new("api");
    let (cert, key, der) = make_cert();
    files.write(&cert, &key);
    let s = start(&files, &["--compression"]);
    let cfg = client_config(&[&der]);
    assert_eq!(https(s.addr, &cfg, "/api/register", &json!({"systemId": "sys"})).0, 200);
    let (mut a, id_a) = wss(s.addr, &cfg);
    let (mut b, id_b) = wss(s.addr, &cfg);
    for (id, u) in [(&id_a, "a"), (&id_b, "b")] {
        let (st, v) =
            https(s.addr, &cfg, "/api/bind_to_group", &json!({"clientId": id, "groupName": "g", "userId": u}));
        assert_eq!(st, 200, "{v}");
    }
    // 200 KiB: many TLS records, coalesced and split by the server, reassembled here.
    let big: String = (0..200_000).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    for (msg, data) in [("small", json!("hi")), ("big", json!(big))] {
        let (st, v) = https(
            s.addr,
            &cfg,
            "/api/send_to_group",
            &json!({"groupName": "g", "code": 200, "msg": msg, "data": data}),
        );
        assert_eq!(st, 200, "{v}");
        assert_eq!(recv_msg(&mut a, msg)["data"], data);
        assert_eq!(recv_msg(&mut b, msg)["data"], data);
    }
    // A client command over wss.
    a.send(tungstenite::Message::text(r#"{"cmd":"ping"}"#)).unwrap();
    loop {
        let v: Value = serde_json::from_str(a.read().unwrap().to_text().unwrap()).unwrap();
        if v["cmd"] == "pong" {
            break;
        }
    }
    assert!(metric_tls(&s, &cfg, "tls_handshakes_total") >= 7);
}

/// `GET /metrics` over https.
fn metric_tls(s: &Server, cfg: &Arc<ClientConfig>, name: &str) -> u64 {
    let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (_, text) = tls_request(s.addr, cfg, req);
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("roomcast_{name} ")).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

#[test]
fn roomcast_js_is_served_over_tls() {
    let files = Files::new("js");
    let (cert, key, der) = make_cert();
    files.write(&cert, &key);
    let s = start(&files, &[]);
    let req = b"GET /roomcast.js HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let (status, body) = tls_request(s.addr, &client_config(&[&der]), req);
    assert_eq!(status, 200);
    let file = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/clients/js/dist/roomcast.js")).unwrap();
    assert_eq!(body, file);
}

#[test]
fn plain_http_to_the_tls_port_is_told_and_closed() {
    let files = Files::new("plain");
    let (cert, key, der) = make_cert();
    files.write(&cert, &key);
    let s = start(&files, &[]);
    let t = Instant::now();
    let (status, body) = s.raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 400);
    assert!(body.contains("TLS"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // Garbage that is not HTTP either: closed at once, nothing said.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&[0x17; 64]).unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap_or(0);
    assert!(n < 16, "at most an alert: {n} bytes");
    // Still serving TLS.
    let cfg = client_config(&[&der]);
    let (st, _) = https(s.addr, &cfg, "/api/register", &json!({"systemId": "sys"}));
    assert_eq!(st, 200);
}

#[test]
fn a_stalled_handshake_is_cut_off_and_blocks_nobody() {
    let files = Files::new("stall");
    let (cert, key, der) = make_cert();
    files.write(&cert, &key);
    let s = start(&files, &["--tls-handshake-timeout", "1s"]);
    // Half a ClientHello, then silence.
    let mut stalled = TcpStream::connect(s.addr).unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // Meanwhile, others are served.
    let cfg = client_config(&[&der]);
    assert_eq!(https(s.addr, &cfg, "/api/register", &json!({"systemId": "sys"})).0, 200);
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = stalled.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without a word");
    let waited = t.elapsed();
    assert!(waited < Duration::from_secs(5), "cut off after {waited:?}");
    assert_eq!(metric_tls(&s, &cfg, "tls_handshake_timeouts_total"), 1);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_anyone() {
    let files = Files::new("reload");
    let (cert_a, key_a, der_a) = make_cert();
    let (cert_b, key_b, der_b) = make_cert();
    files.write(&cert_a, &key_a);
    let s = start(&files, &[]);
    let cfg = client_config(&[&der_a, &der_b]);
    assert_eq!(https(s.addr, &cfg, "/api/register", &json!({"systemId": "sys"})).0, 200);
    let (mut old, id) = wss(s.addr, &cfg);
    assert_eq!(old.get_ref().conn.peer_certificates().unwrap()[0], der_a);
    https(s.addr, &cfg, "/api/bind_to_group", &json!({"clientId": id, "groupName": "g", "userId": "u"}));

    let served = |expect: &CertificateDer<'static>| {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mut t = tls_connect(s.addr, &cfg);
            t.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
            let mut b = [0u8; 512];
            let _ = t.read(&mut b);
            if t.conn.peer_certificates().unwrap()[0] == *expect {
                return;
            }
            assert!(Instant::now() < deadline, "the new certificate was never served");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    files.write(&cert_b, &key_b);
    unsafe_kill(&s, "HUP");
    served(&der_b);
    // A bad pair: the old one (B) stays.
    std::fs::write(files.dir.join("cert.pem"), "not a certificate").unwrap();
    unsafe_kill(&s, "HUP");
    std::thread::sleep(Duration::from_millis(200));
    served(&der_b);
    // The key of A with the certificate of B do not belong together: refused too.
    files.write(&cert_b, &key_a);
    unsafe_kill(&s, "HUP");
    std::thread::sleep(Duration::from_millis(200));
    served(&der_b);
    // The connection opened before any reload still works.
    let (st, _) = https(s.addr, &cfg, "/api/send_to_group", &json!({"groupName": "g", "msg": "after", "data": "x"}));
    assert_eq!(st, 200);
    assert_eq!(recv_msg(&mut old, "after")["data"], "x");
}

fn unsafe_kill(s: &Server, sig: &str) {
    let st = std::process::Command::new("kill").args([&format!("-{sig}"), &s.child.id().to_string()]).status().unwrap();
    assert!(st.success());
}

#[test]
fn tls_flags_go_together_and_bad_files_are_named() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_roomcast"))
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--tls-cert", "/nonexistent.pem"]).contains("tls_cert and tls_key go together"));
    let err = run(&["--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"]);
    assert!(err.contains("tls_cert /nonexistent.pem"), "{err}");
}

#[test]
fn a_session_resumes_over_wss_whichever_shard_takes_the_new_socket() {
    let files = Files::new("resume");
    let (cert, key, der) = make_cert();
    files.write(&cert, &key);
    let s = start(&files, &["--shards", "2"]);
    let cfg = client_config(&[&der]);
    assert_eq!(https(s.addr, &cfg, "/api/register", &json!({"systemId": "sys"})).0, 200);
    let url = |q: &str| format!("wss://localhost:{}/ws?systemId=sys&recover=1{q}", s.addr.port());
    let (mut ws, _) = tungstenite::client::client(url(""), tls_connect(s.addr, &cfg)).unwrap();
    let hello: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    let (id, mut token) = (
        hello["data"]["clientId"].as_str().unwrap().to_string(),
        hello["data"]["resumeToken"].as_str().unwrap().to_string(),
    );
    https(s.addr, &cfg, "/api/bind_to_group", &json!({"clientId": id, "groupName": "g", "userId": "u"}));
    // Several drops and resumes: the new sockets land on either shard (SO_REUSEPORT), and
    // the TLS session moves with the socket to the shard holding the session.
    for round in 0..6 {
        socket2::SockRef::from(ws.get_ref().get_ref()).set_linger(Some(Duration::ZERO)).unwrap();
        drop(ws);
        let deadline = Instant::now() + Duration::from_secs(5);
        while metric_tls(&s, &cfg, "recovery_sessions") < 1 {
            assert!(Instant::now() < deadline, "drop not noticed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let msg = format!("missed{round}");
        https(s.addr, &cfg, "/api/send_to_group", &json!({"groupName": "g", "msg": msg, "data": round}));
        let (w, _) = tungstenite::client::client(url(&format!("&resume={token}")), tls_connect(s.addr, &cfg)).unwrap();
        ws = w;
        let hello: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
        assert_eq!(hello["data"]["recovered"], true, "{hello}");
        assert_eq!(hello["data"]["clientId"], id.as_str());
        token = hello["data"]["resumeToken"].as_str().unwrap().to_string();
        assert_eq!(recv_msg(&mut ws, &msg)["data"], round);
    }
}
