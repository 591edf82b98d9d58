//! The back-end examples (`examples/backends/`: Go, PHP, Python, Node), each run as its README
//! says against a real roomcast: the example's webhook receiver starts first and prints its
//! URL, a server is started with that `--webhook-url` and the example's two secrets, and the
//! example is told the server's base URL on stdin. It registers the system, prints a connect
//! URL (its own connect token), and a real WebSocket client connects with it; the example
//! learns the clientId from the verified `client_connected` webhook, binds it, sends to the
//! group and to the user, and reads the online list. Checked: the client gets both messages
//! (the messageIds the example printed), the example printed the verified webhooks and the
//! list, and its receiver refuses forged, stale and changed requests with 401 and drops a
//! duplicate event id. A missing interpreter fails the test, naming the Debian package.
mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;
use util::*;

const HOOK_KEY: &str = "backends-hook-secret";
const SYSTEM: &str = "shop";
const USER: &str = "alice";
const GROUP: &str = "room1";
const SECS_15: Duration = Duration::from_secs(15);

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/backends")
}

/// Fails (never skips) when `program` cannot run, naming the Debian package to install.
fn require(program: &str, version_arg: &str, package: &str) {
    let ok = Command::new(program).arg(version_arg).output().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program}` is not installed: install Debian's {package} (apt-get install -y {package}); scripts/test.sh does"
    );
}

/// A running example: its stdin, and its stdout lines as they come (read by a thread).
struct Example {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Example {
    fn spawn(name: &'static str, mut cmd: Command) -> Example {
        let mut child = cmd
            .env("ROOMCAST_JWT_SECRET", SECRET)
            .env("ROOMCAST_WEBHOOK_SECRET", HOOK_KEY)
            .env("SYSTEM_ID", SYSTEM)
            .env("USER_ID", USER)
            .env("GROUP_NAME", GROUP)
            .env_remove("ROOMCAST_URL")
            .env_remove("HOOK_PORT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start the example: {e}"));
        let stdin = child.stdin.take();
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Example { name, child, stdin, lines, seen: Vec::new() }
    }

    /// The first line printed so far or within `wait` that `pred` accepts.
    fn line(&mut self, what: &str, wait: Duration, pred: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + wait;
        loop {
            if let Some(l) = self.seen.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let left = until.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(e) => {
                    let why = match e {
                        mpsc::RecvTimeoutError::Timeout => format!("within {wait:?}"),
                        mpsc::RecvTimeoutError::Disconnected => {
                            format!("before it exited ({:?})", self.child.try_wait())
                        }
                    };
                    panic!("{}: never printed {what} {why}; printed:\n{}", self.name, self.seen.join("\n"))
                }
            }
        }
    }

    /// What follows `prefix` on the first line starting with it (within `wait`).
    fn after(&mut self, prefix: &str, wait: Duration) -> String {
        let l = self.line(prefix, wait, |l| l.starts_with(prefix));
        l[prefix.len()..].to_string()
    }

    /// Waits for this exact line.
    fn expect(&mut self, line: &str) {
        self.line(&format!("{line:?}"), Duration::from_secs(15), |l| l == line);
    }

    /// Closes its stdin (the example's signal to stop), waits for its exit; returns every line.
    fn finish(mut self) -> Vec<String> {
        drop(self.stdin.take());
        let until = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < until, "{}: did not exit after its stdin closed", self.name);
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{}: exited with {status}; printed:\n{}", self.name, self.seen.join("\n"));
        self.seen.extend(self.lines.try_iter());
        std::mem::take(&mut self.seen)
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs `body` to the example's receiver with these headers; returns the status.
fn post_hook(addr: SocketAddr, body: &str, headers: &[(&str, String)]) -> u16 {
    let raw: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
    util::hooks::post_raw(addr, "/hook", &raw, body.as_bytes())
}

fn signed(key: &str, ts: u64, body: &str) -> Vec<(&'static str, String)> {
    let t = ts.to_string();
    let sig = roomcast::webhooks::signature(key.as_bytes(), &t, body.as_bytes());
    vec![("X-Roomcast-Timestamp", t), ("X-Roomcast-Signature", sig)]
}

/// Runs one example through the whole scenario.
fn drive(name: &'static str, cmd: Command) {
    let mut ex = Example::spawn(name, cmd);
    let hook = ex.after("listening ", SECS_15);
    let hook_addr: SocketAddr = hook
        .strip_prefix("http://")
        .and_then(|r| r.strip_suffix("/hook"))
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{name}: not a receiver URL: {hook:?}"));
    let s = Server::start_with_jwt(&[
        "--webhook-url",
        &hook,
        "--webhook-secret",
        HOOK_KEY,
        "--webhook-batch-delay",
        "10ms",
    ]);
    let stdin = ex.stdin.as_mut().unwrap();
    writeln!(stdin, "http://{}", s.addr).unwrap();
    stdin.flush().unwrap();

    ex.expect(&format!("registered {SYSTEM}"));
    let url = ex.after("connect-url ", SECS_15);
    assert!(url.starts_with(&format!("ws://{}/ws?systemId={SYSTEM}&token=", s.addr)), "{name}: {url}");
    let mut c = Client::connect(&url);
    let hello = c.recv().expect("connect frame");
    assert_eq!(hello["code"], 0, "{name}: the example's connect token was refused: {hello}");
    let id = hello["data"]["clientId"].as_str().unwrap().to_string();

    // The example learnt the clientId from the webhook, and used it.
    // (The receiver's lines and the calls' lines may interleave: each is waited for by itself.)
    ex.expect(&format!("webhook client_connected {id}"));
    ex.expect(&format!("bound {id} to {GROUP}"));
    let group_mid = ex.after(&format!("sent_to_group {GROUP} messageId="), SECS_15);
    let user_sent = ex.after(&format!("sent_to_user {USER} messageId="), SECS_15);
    let (user_mid, clients) = user_sent.split_once(' ').unwrap_or_else(|| panic!("{name}: {user_sent}"));
    assert_eq!(clients, "clients=1", "{name}: send_to_user reached one connection");
    assert_eq!(ex.after(&format!("online {GROUP} "), SECS_15), format!("count=1 clients={id}"), "{name}: online list");
    ex.expect(&format!("webhook user_online {USER}"));
    ex.expect(&format!("webhook group_joined {id}"));

    // Real delivery: the bind's notice, then the group's message, then the user's.
    let notice = c.expect_code(1001);
    assert!(notice["data"].as_str().unwrap().contains(&id), "{name}: {notice}");
    let to_group = c.recv().expect("the group's message");
    assert_eq!((&to_group["messageId"], &to_group["msg"]), (&json!(group_mid), &json!(format!("hello {GROUP}"))));
    let to_user = c.recv().expect("the user's message");
    assert_eq!((&to_user["messageId"], &to_user["msg"]), (&json!(user_mid), &json!(format!("hello {USER}"))));
    assert_eq!((&to_user["sendUserId"], &to_user["code"]), (&json!("backend"), &json!(200)), "{name}: {to_user}");

    // The receiver refuses what roomcast did not sign just now, and drops a duplicate id.
    let now = roomcast::auth::now_secs();
    let probe =
        r#"{"timeMs":1,"events":[{"id":"probe-1","name":"probe","systemId":"shop","clientId":"p1","timeMs":1}]}"#;
    let changed = probe.replace("p1", "p2");
    assert_eq!(post_hook(hook_addr, probe, &[]), 401, "{name}: unsigned");
    assert_eq!(post_hook(hook_addr, probe, &signed("another key", now, probe)), 401, "{name}: another key");
    assert_eq!(post_hook(hook_addr, probe, &signed(HOOK_KEY, now - 400, probe)), 401, "{name}: 400 s old");
    assert_eq!(post_hook(hook_addr, probe, &signed(HOOK_KEY, now + 400, probe)), 401, "{name}: 400 s ahead");
    assert_eq!(post_hook(hook_addr, &changed, &signed(HOOK_KEY, now, probe)), 401, "{name}: a changed body");
    // Bytes a naive check trips on: a Latin-1 "¹" as the timestamp, a signature of the right
    // length ending in a non-ASCII byte. Refused, not a crash or a dropped connection.
    let mut odd = b"sha256=".to_vec();
    odd.extend([b'0'; 63]);
    odd.push(0xe9);
    let now_text = now.to_string();
    let forged: [(&str, &[u8]); 2] = [("X-Roomcast-Timestamp", now_text.as_bytes()), ("X-Roomcast-Signature", &odd)];
    assert_eq!(
        util::hooks::post_raw(hook_addr, "/hook", &forged, probe.as_bytes()),
        401,
        "{name}: a non-ASCII signature"
    );
    let forged: [(&str, &[u8]); 2] = [("X-Roomcast-Timestamp", &[0xb9]), ("X-Roomcast-Signature", b"sha256=00")];
    assert_eq!(
        util::hooks::post_raw(hook_addr, "/hook", &forged, probe.as_bytes()),
        401,
        "{name}: a non-ASCII timestamp"
    );
    assert_eq!(post_hook(hook_addr, probe, &signed(HOOK_KEY, now, probe)), 200, "{name}: signed now");
    assert_eq!(post_hook(hook_addr, probe, &signed(HOOK_KEY, now, probe)), 200, "{name}: the same id again");
    ex.expect("webhook probe p1");

    // The client leaves: the example is told; it stops once roomcast has its 2xx for every event
    // (an example prints an event before it answers).
    drop(c);
    ex.expect(&format!("webhook user_offline {USER}"));
    ex.expect(&format!("webhook client_disconnected {id}"));
    let recorded = metric(&s, "webhook_events_total");
    wait_metric(&s, "webhook_events_sent_total", recorded, "every event acknowledged");
    let lines = ex.finish();
    println!("{name} printed:\n{}", lines.join("\n"));
    // Once: not the changed body's p2, not the duplicate.
    assert_eq!(lines.iter().filter(|l| l.starts_with("webhook probe")).count(), 1, "{name}: {lines:#?}");
}

/// An example run by its interpreter: `interpreter` (Debian's `package`) on `file`.
fn interpreted(name: &'static str, interpreter: &str, version_flag: &str, package: &str, file: &str) {
    require(interpreter, version_flag, package);
    let mut cmd = Command::new(interpreter);
    cmd.arg(examples().join(file));
    drive(name, cmd);
}

#[test]
fn python_backend() {
    interpreted("python", "python3", "--version", "python3", "python/backend.py");
}

#[test]
fn node_backend() {
    interpreted("node", "node", "--version", "nodejs", "node/backend.js");
}

#[test]
fn php_backend() {
    interpreted("php", "php", "--version", "php-cli", "php/backend.php");
}

#[test]
fn go_backend() {
    require("go", "version", "golang-go");
    // A writable cache and module path of the test's own, the local toolchain only, no network:
    // as root on a fresh machine too. Built first so the test runs (and kills) the program itself.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR")).join("backends-go");
    let bin = tmp.join("roomcast-example");
    let out = Command::new("go")
        .args(["build", "-buildvcs=false", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(examples().join("go"))
        .env("GOCACHE", tmp.join("cache"))
        .env("GOPATH", tmp.join("gopath"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTELEMETRY", "off")
        .env("CGO_ENABLED", "0")
        .output()
        .expect("go build");
    assert!(out.status.success(), "go build failed: {}", String::from_utf8_lossy(&out.stderr));
    drive("go", Command::new(bin));
}
