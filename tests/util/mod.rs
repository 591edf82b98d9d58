//! Shared helpers for the black-box tests: a real `roomcast` process on port 0, real
//! WebSocket clients (tungstenite) and a plain HTTP/1.1 client over `TcpStream`.
#![allow(dead_code)]

pub mod cluster;
pub mod hooks;
pub mod rawws;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

pub const SECRET: &str = "test-secret";

/// A server process; killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub token: Option<String>,
    /// The admin listener's address, when started with `--admin-listen`.
    pub admin: Option<SocketAddr>,
}

impl Server {
    /// Starts `roomcast` with an open API plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Server {
        Self::spawn(extra, None)
    }

    /// Starts `roomcast` with `--jwt-secret SECRET`; API calls use an operator token.
    pub fn start_with_jwt(extra: &[&str]) -> Server {
        let mut args = vec!["--jwt-secret", SECRET];
        args.extend_from_slice(extra);
        Self::spawn(&args, Some(token(None, 3600)))
    }

    /// Starts `roomcast` with extra environment variables.
    pub fn start_env(extra: &[&str], envs: &[(&str, &str)]) -> Server {
        Self::spawn_with(extra, envs, None)
    }

    fn spawn(extra: &[&str], token: Option<String>) -> Server {
        Self::spawn_with(extra, &[], token)
    }

    fn spawn_with(extra: &[&str], envs: &[(&str, &str)], token: Option<String>) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_roomcast"));
        // ROOMCAST_TEST_LOG (e.g. `info`) shows the servers' logs when a test is run alone.
        let log = std::env::var("ROOMCAST_TEST_LOG").unwrap_or_else(|_| "warn".into());
        cmd.env("RUST_LOG", log).envs(envs.iter().copied());
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--shards") {
            cmd.args(["--shards", "2"]);
        }
        let mut child =
            cmd.args(extra).stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn roomcast");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("read listen line");
        let addr = line
            .trim()
            .strip_prefix("roomcast listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .parse()
            .unwrap();
        let admin = extra.contains(&"--admin-listen").then(|| {
            line.clear();
            out.read_line(&mut line).expect("read admin line");
            line.trim()
                .strip_prefix("roomcast admin on ")
                .unwrap_or_else(|| panic!("no admin line: {line:?}"))
                .parse()
                .unwrap()
        });
        Server { child, addr, token, admin }
    }

    /// CPU time (user + system) the process has used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// POST /api/<name> with the server's default token.
    pub fn api(&self, name: &str, system: Option<&str>, body: Value) -> (u16, Value) {
        let auth = self.token.clone();
        self.api_as(name, system, auth.as_deref(), body)
    }

    /// POST /api/<name> with an explicit token (or none).
    pub fn api_as(&self, name: &str, system: Option<&str>, token: Option<&str>, body: Value) -> (u16, Value) {
        api_at(self.addr, name, system, token, body)
    }

    /// Sends raw bytes, reads until the server closes; returns the status and body.
    pub fn raw(&self, bytes: &[u8]) -> (u16, String) {
        raw_at(self.addr, bytes)
    }

    /// Registers `system` (operator call) and asserts success.
    pub fn register(&self, system: &str) {
        let (st, v) = self.api("register", None, json!({"systemId": system}));
        assert_eq!((st, &v["code"]), (200, &json!(0)), "register {system}: {v}");
    }

    /// Connects a WebSocket client to `system` and reads its connect frame.
    pub fn client(&self, system: &str) -> Client {
        let mut c = Client::connect(&self.url(&format!("/ws?systemId={system}")));
        let hello = c.recv().expect("connect frame");
        assert_eq!(hello["code"], 0, "connect frame: {hello}");
        c.id = hello["data"]["clientId"].as_str().expect("clientId").to_string();
        c
    }

    pub fn bind(&self, system: &str, client: &str, group: &str, user: &str) {
        let (st, v) =
            self.api("bind_to_group", Some(system), json!({"clientId": client, "groupName": group, "userId": user}));
        assert_eq!(st, 200, "bind: {v}");
    }

    /// SIGTERM, then wait (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POST /api/<name> to the server at `addr` (usable from any thread).
/// Runs `roomcast --listen 127.0.0.1:0 <args>`, which must refuse its settings (exit 2, before
/// serving anything); returns what it printed on stderr.
pub fn refused_settings(args: &[&str]) -> String {
    let out =
        Command::new(env!("CARGO_BIN_EXE_roomcast")).args(["--listen", "127.0.0.1:0"]).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?} was not refused: {err}");
    err
}

pub fn api_at(addr: SocketAddr, name: &str, system: Option<&str>, token: Option<&str>, body: Value) -> (u16, Value) {
    let body = body.to_string();
    let mut req = format!("POST /api/{name} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    if let Some(s) = system {
        req.push_str(&format!("SystemId: {s}\r\n"));
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let (status, text) = raw_at(addr, req.as_bytes());
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON body {text:?}: {e}"));
    (status, v)
}

/// Sends raw bytes to `addr`, reads one whole response (or until the server closes).
pub fn raw_at(addr: SocketAddr, bytes: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while complete_response(&out).is_none() {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
        }
    }
    parse_response(&out)
}

/// One complete response at the start of `buf` (it has a Content-Length): status, body
/// range and total length; `None` while incomplete.
pub fn complete_response(buf: &[u8]) -> Option<(u16, std::ops::Range<usize>, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:"))?.trim().parse().ok()?;
    (buf.len() >= end + len).then_some((status, end..end + len, end + len))
}

pub fn parse_response(out: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(out).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// An HS256 token signed with [`SECRET`].
pub fn token(system: Option<&str>, ttl: u64) -> String {
    roomcast::auth::mint_hs256(SECRET.as_bytes(), system, ttl).unwrap()
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocket<TcpStream>,
    pub id: String,
}

impl Client {
    pub fn connect(url: &str) -> Client {
        let u: tungstenite::http::Uri = url.parse().unwrap();
        let stream = TcpStream::connect((u.host().unwrap(), u.port_u16().unwrap())).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let (ws, _) = tungstenite::client::client(url, stream).expect("handshake");
        Client { ws, id: String::new() }
    }

    pub fn set_timeout(&mut self, d: Duration) {
        self.ws.get_ref().set_read_timeout(Some(d)).unwrap();
    }

    /// The next text frame as JSON; `None` on timeout or close.
    pub fn recv(&mut self) -> Option<Value> {
        loop {
            match self.ws.read() {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).expect("JSON frame")),
                Ok(Message::Close(_)) => return None,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Reads frames until the server's close frame; returns its code.
    pub fn close_code(&mut self) -> Option<CloseCode> {
        loop {
            match self.ws.read() {
                Ok(Message::Close(Some(f))) => return Some(f.code),
                Ok(Message::Close(None)) => return None,
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    /// Next frame with `code` (skipping others); panics after the timeout.
    pub fn expect_code(&mut self, code: i64) -> Value {
        loop {
            let v = self.recv().unwrap_or_else(|| panic!("no frame with code {code}"));
            if v["code"] == code {
                return v;
            }
        }
    }

    /// Asserts nothing arrives within `d` and the connection stays open: a frame, a close
    /// frame, a reset or an end of stream fails (pings are answered and skipped).
    pub fn expect_silence(&mut self, d: Duration) {
        let until = Instant::now() + d;
        while let Some(left) = until.checked_duration_since(Instant::now()).filter(|l| !l.is_zero()) {
            self.set_timeout(left);
            match self.ws.read() {
                Ok(Message::Ping(_) | Message::Pong(_)) => continue,
                Ok(Message::Close(c)) => panic!("closed ({c:?}) instead of staying silent"),
                Ok(m) => panic!("unexpected frame: {m}"),
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
                {
                    break
                }
                Err(e) => panic!("the connection failed instead of staying silent: {e}"),
            }
        }
        self.set_timeout(Duration::from_secs(5));
    }

    pub fn send_text(&mut self, t: &str) {
        self.ws.send(Message::text(t)).unwrap();
    }
}

/// A keep-alive HTTP/1.1 connection for many API calls in a row.
pub struct Http {
    s: TcpStream,
    buf: Vec<u8>,
    token: Option<String>,
}

impl Http {
    pub fn new(server: &Server) -> Http {
        let s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_nodelay(true).unwrap();
        Http { s, buf: Vec::new(), token: server.token.clone() }
    }

    /// One request on this connection; returns status and JSON body.
    pub fn call(&mut self, name: &str, system: &str, body: &Value) -> (u16, Value) {
        let body = body.to_string();
        let mut req =
            format!("POST /api/{name} HTTP/1.1\r\nHost: x\r\nSystemId: {system}\r\nContent-Length: {}\r\n", body.len());
        if let Some(t) = &self.token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        self.s.write_all(req.as_bytes()).unwrap();
        loop {
            if let Some((status, body, len)) = complete_response(&self.buf) {
                let v = serde_json::from_slice(&self.buf[body]).unwrap();
                self.buf.drain(..len);
                return (status, v);
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).expect("read response");
            assert!(n > 0, "server closed the keep-alive connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// Waits (at most 5 s, else fails saying `what`) until metric `name` is at least `n`.
pub fn wait_metric(server: &Server, name: &str, n: u64, what: &str) {
    let t = Instant::now();
    while metric(server, name) < n {
        assert!(t.elapsed() < Duration::from_secs(5), "{what} ({name} {} < {n})", metric(server, name));
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Reads `/metrics` and returns the value of `name`.
pub fn metric(server: &Server, name: &str) -> u64 {
    let auth = server.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let req = format!("GET /metrics HTTP/1.1\r\n{auth}Connection: close\r\n\r\n");
    let (status, text) = server.raw(req.as_bytes());
    assert_eq!(status, 200, "GET /metrics: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("roomcast_{name} ")).map(|v| v.trim().parse().unwrap()))
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// A client that opted in to session recovery, and its current resume token.
pub struct Recovering {
    pub c: Client,
    pub token: String,
}

/// Connects to system `a` of `s` with `recover=1` (resuming `resume` = (token, last) if
/// given); the client and its connect frame.
pub fn recovering(s: &Server, resume: Option<(&str, &str)>) -> (Recovering, Value) {
    let mut url = "/ws?systemId=a&recover=1".to_string();
    if let Some((token, last)) = resume {
        url.push_str(&format!("&resume={token}&last={last}"));
    }
    let mut c = Client::connect(&s.url(&url));
    let hello = c.recv().expect("connect frame");
    assert_eq!(hello["code"], 0, "{hello}");
    c.id = hello["data"]["clientId"].as_str().unwrap().to_string();
    let token = hello["data"]["resumeToken"].as_str().expect("a resume token").to_string();
    (Recovering { c, token }, hello)
}
