//! Log lines as an operator's tools see them: no colour codes when stderr is not a terminal
//! (files, journald, container logs), colour on a terminal unless `NO_COLOR` is set, and
//! `log_format = "json"`: one JSON object per line. A real server process each time; the
//! terminal is a pseudo-terminal made by util-linux's `script`.

mod util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_roomcast");

/// The server's stderr lines up to its "roomcast started" line (then it is killed).
fn startup_lines(extra: &[&str]) -> Vec<String> {
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(extra)
        .env("RUST_LOG", "info")
        .env_remove("NO_COLOR")
        .env_remove("ROOMCAST_LOG_FORMAT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that never says it started is killed after 20 s (the test then fails).
    let pid = child.id();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    });
    let mut lines = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line.contains("roomcast started");
        lines.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.last().is_some_and(|l| l.contains("roomcast started")), "{lines:?}");
    lines
}

/// What the server writes to a terminal in its first 4 s (`NO_COLOR` as given). (util-linux's
/// `script`, in Debian's essential bsdutils; the server is killed by `timeout`, whatever it was
/// doing: it needs no signal handler for that.)
fn on_a_terminal(no_color: Option<&str>) -> String {
    let cmd = format!("timeout -s KILL 4 '{BIN}' --listen 127.0.0.1:0 --shards 1");
    let mut c = Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"]).env("RUST_LOG", "info").env_remove("NO_COLOR");
    c.env_remove("ROOMCAST_LOG_FORMAT");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let out = c.output().expect("script (util-linux) runs the server on a pseudo-terminal");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("roomcast started"), "{text}");
    text
}

#[test]
fn text_logs_are_plain_unless_on_a_terminal_without_no_color() {
    let lines = startup_lines(&[]);
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "escape codes in a pipe: {lines:?}");
    assert!(on_a_terminal(None).contains("\u{1b}["), "a terminal gets colour");
    assert!(!on_a_terminal(Some("1")).contains('\u{1b}'), "NO_COLOR=1 turns it off");
    assert!(on_a_terminal(Some("")).contains("\u{1b}["), "an empty NO_COLOR is unset (no-color.org)");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let lines = startup_lines(&["--log-format", "json"]);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{l}");
    }
    let started: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(started["fields"]["message"], "roomcast started");
    assert_eq!(started["fields"]["shards"], 1);
    assert_eq!(started["level"], "INFO");
}

#[test]
fn an_unknown_log_format_is_refused_at_start() {
    let out = Command::new(BIN).args(["--listen", "127.0.0.1:0", "--log-format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-format xml: must be text or json"));
}

/// A server whose stderr lines are collected as they come; its address.
struct Logged {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Logged {
    fn start(extra: &[&str]) -> Logged {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--shards", "1"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env_remove("ROOMCAST_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
        let addr = first.trim().strip_prefix("roomcast listening on ").expect("listen line").parse().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (l, err) = (lines.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            BufReader::new(err).lines().map_while(Result::ok).for_each(|x| l.lock().unwrap().push(x))
        });
        Logged { child, addr, lines }
    }

    /// Waits (bounded) for a line containing every one of `parts`; returns it.
    fn wait_line(&self, parts: &[&str]) -> String {
        let t = std::time::Instant::now();
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| parts.iter().all(|p| l.contains(p))) {
                return l.clone();
            }
            let all = self.lines.lock().unwrap().clone();
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "no line with {parts:?} in {all:#?}");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn count(&self, part: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(part)).count()
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw HTTP/1.1 exchange read until the server closes (a refused WebSocket: its -1001 frame
/// and close come after the 101): the status line of the answer.
fn request(addr: std::net::SocketAddr, req: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string()
}

fn ws(path: &str, origin: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nOrigin: {origin}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Every refusal says why and what to do, once per cause and address per interval; a failing
/// webhook receiver is named.
#[test]
fn refusals_are_logged_with_what_to_do() {
    let s = Logged::start(&[
        "--allowed-origins",
        "https://app.example.com",
        "--jwt-secret",
        "k",
        "--webhook-url",
        "http://127.0.0.1:9/hooks",
    ]);
    for _ in 0..3 {
        assert!(request(s.addr, &ws("/ws?systemId=a", "https://evil.example")).contains("403"));
    }
    let line = s.wait_line(&["WebSocket (403) refused", "https://evil.example", "allowed_origins", "127.0.0.1"]);
    assert!(line.contains("INFO"), "{line}");
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(s.count("WebSocket (403) refused"), 1, "once per cause and address per interval");
    assert!(request(s.addr, &ws("/ws?systemId=nope", "https://app.example.com")).contains("101"));
    s.wait_line(&["WebSocket (-1001) refused", "'nope' is not registered", "POST /api/register"]);
    assert!(request(s.addr, &ws("/ws", "https://app.example.com")).contains("101"));
    s.wait_line(&["WebSocket (-1001) refused", "systemId is required"]);
    let offer = ws("/ws", "https://app.example.com").replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: json\r\n\r\n");
    assert!(request(s.addr, &offer).contains("101"));
    s.wait_line(&["WebSocket subprotocol refused", "offered \"json\"", "add the subprotocol it needs to subprotocols"]);
    let call = "POST /api/send_to_system HTTP/1.1\r\nHost: x\r\nSystemId: a\r\nAuthorization: Bearer bad\r\n\
                Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    assert!(request(s.addr, call).contains("401"));
    s.wait_line(&["API call /api/send_to_system (401) refused", "Authorization: Bearer"]);
    // A client connects (to a registered system): its client_connected cannot be delivered.
    let token = Command::new(BIN).args(["token", "--jwt-secret", "k"]).output().unwrap();
    let token = String::from_utf8(token.stdout).unwrap();
    let register = format!(
        "POST /api/register HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Length: 16\r\n\
         Connection: close\r\n\r\n{{\"systemId\":\"a\"}}",
        token.trim()
    );
    assert!(request(s.addr, &register).contains("200"));
    let mut c = std::net::TcpStream::connect(s.addr).unwrap();
    std::io::Write::write_all(&mut c, ws("/ws?systemId=a", "https://app.example.com").as_bytes()).unwrap();
    s.wait_line(&["webhook receiver failed", "retrying", "webhook_url"]);
    drop(c);
}

/// A node that never reaches Redis says why (a wrong password here), once, not at every retry.
#[test]
fn a_wrong_redis_password_is_logged_once() {
    let redis = util::cluster::Redis::start_with(Some("right"));
    let url = format!("redis://:wrong@127.0.0.1:{}", redis.port);
    let s = Logged::start(&["--redis", &url]);
    let line = s.wait_line(&["Redis unreachable", "retrying with backoff"]);
    assert!(line.contains("WARN") && line.to_lowercase().contains("pass"), "names the password problem: {line}");
    // The broker retries with backoff (100 ms doubling): several attempts in 2 s, one line.
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(s.count("Redis unreachable"), 1);
}

/// A `state_dir` whose state file is not ours: one warning naming the file, why, where it was
/// set aside and that the node starts clean.
#[test]
fn an_unusable_state_is_told_in_one_line() {
    let dir = std::env::temp_dir().join(format!("roomcast-logs-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("state.json"), b"{ not json").unwrap();
    let lines = startup_lines(&["--state-dir", dir.to_str().unwrap()]);
    let told: Vec<&String> = lines.iter().filter(|l| l.contains("state.json")).collect();
    assert_eq!(told.len(), 1, "{lines:?}");
    let line = told[0];
    assert!(line.contains("WARN") && line.contains("not a state file"), "{line}");
    assert!(line.contains("state.json.unreadable") && line.contains("starting clean"), "{line}");
}
