//! The churning clients of the `churn` scenario: each thread loops connect → bind into a
//! random group (notices on) → stay 50–300 ms → leave (close frame or plain TCP drop), with
//! blocking sockets. Completed sessions are recorded so the parent can tell how many 1001
//! and 1002 notices every stayer must have seen.
//!
//! Users (`--webhook-port`, the chaos soak): a churn session binds as a user of its own
//! (`c<worker>.<thread>.<n>`: online and offline once each), except every third one, which is
//! one more tab of a multi-tab stayer's user (online throughout, as long as one of its stayer
//! tabs is: `--tabs` a multiple of the node count keeps one through a node kill; then no
//! transition at all). Stayers are users by [`stayer_user`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::{report, Opts};

/// One completed churn session: the client bound to `group`, then left.
#[derive(Clone, Debug)]
pub struct Session {
    pub client_id: String,
    pub group: usize,
    /// The userId it bound with, and whether the user was its own (else a stayer's).
    pub user: String,
    pub own_user: bool,
    /// When it connected and when it left (ns since the epoch).
    pub start: u64,
    pub end: u64,
}

/// Shared between the worker loop and its churn threads.
#[derive(Default)]
pub struct Churn {
    pub stop: AtomicBool,
    pub sessions: Mutex<Vec<Session>>,
    pub errors: Mutex<u64>,
}

fn read_until(s: &mut TcpStream, pred: impl Fn(&[u8]) -> bool) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !pred(&buf) {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The user of stayer `global` when stayers are users (`tabs` > 0): blocks of `tabs`
/// consecutive stayers (spread over the nodes, as clients go round robin) alternate between
/// one multi-tab user `u<block>` (even blocks) and single-tab users `s<global>` (odd blocks).
pub fn stayer_user(global: usize, tabs: usize) -> String {
    let block = global / tabs.max(1);
    if block.is_multiple_of(2) {
        format!("u{block}")
    } else {
        format!("s{global}")
    }
}

/// Where churn sessions get their users.
#[derive(Clone, Debug)]
pub struct Users {
    pub worker: usize,
    /// The stayers' tab count (0: no multi-tab users to join) and how many stayers there are.
    pub tabs: usize,
    pub clients: usize,
}

impl Users {
    /// Session `n` of thread `t`: its userId and whether it is its own.
    fn pick(&self, t: usize, n: u64, rng: &mut fastrand::Rng) -> (String, bool) {
        let multi = self.clients / self.tabs.max(1);
        if self.tabs > 0 && n.is_multiple_of(3) && multi >= 2 {
            (format!("u{}", 2 * rng.usize(..multi.div_ceil(2))), false)
        } else {
            (format!("c{}.{t}.{n}", self.worker), true)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn session(
    addr: SocketAddr,
    system: &str,
    token: Option<&str>,
    groups: usize,
    api: &mut TcpStream,
    rng: &mut fastrand::Rng,
    n: u64,
    (user, own_user): (String, bool),
) -> std::io::Result<Session> {
    let start = crate::now_nanos();
    let mut ws = TcpStream::connect(addr)?;
    ws.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(ws, "GET /ws?systemId={system} HTTP/1.1\r\nHost: churn\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")?;
    let hello = read_until(&mut ws, |b| b.windows(3).any(|w| w == b"\"}}"))?;
    let text = String::from_utf8_lossy(&hello);
    let id = text.split("\"clientId\":\"").nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_string();
    let group = rng.usize(..groups);
    let body = format!(r#"{{"clientId":"{id}","groupName":"g{group}","userId":"{user}"}}"#);
    api.write_all(&crate::sender::post("/api/bind_to_group", system, token, &body))?;
    let resp = read_until(api, |b| {
        b.windows(4).position(|w| w == b"\r\n\r\n").is_some_and(|end| {
            let head = String::from_utf8_lossy(&b[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            b.len() >= end + 4 + len
        })
    })?;
    if !resp.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other(format!("bind: {}", String::from_utf8_lossy(&resp))));
    }
    std::thread::sleep(Duration::from_millis(rng.u64(50..300)));
    if n.is_multiple_of(2) {
        ws.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])?; // masked close 1000 (zero mask)
    }
    drop(ws);
    Ok(Session { client_id: id, group, user, own_user, start, end: crate::now_nanos() })
}

/// Runs `threads` churners until `churn.stop`.
pub fn start(
    threads: usize,
    addrs: Vec<SocketAddr>,
    system: String,
    token: Option<String>,
    groups: usize,
    users: Users,
    churn: Arc<Churn>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let (addrs, system, token, churn) = (addrs.clone(), system.clone(), token.clone(), churn.clone());
            let users = users.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t as u64 + 1);
                let addr = addrs[t % addrs.len()];
                let Ok(mut api) = TcpStream::connect(addr) else { return };
                let _ = api.set_read_timeout(Some(Duration::from_secs(10)));
                let mut n = 0u64;
                while !churn.stop.load(Ordering::Relaxed) {
                    n += 1;
                    let user = users.pick(t, n, &mut rng);
                    match session(addr, &system, token.as_deref(), groups, &mut api, &mut rng, n, user) {
                        Ok(s) => churn.sessions.lock().expect("sessions").push(s),
                        Err(_) => {
                            *churn.errors.lock().expect("errors") += 1;
                            std::thread::sleep(Duration::from_millis(50));
                            if let Ok(a) = TcpStream::connect(addr) {
                                api = a;
                                let _ = api.set_read_timeout(Some(Duration::from_secs(10)));
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// How many stayers each group holds (clients are bound round robin).
pub fn stayers_per_group(clients: usize, groups: usize) -> Vec<u64> {
    let mut stayers = vec![0u64; groups];
    for c in 0..clients {
        stayers[c % groups] += 1;
    }
    stayers
}

/// Per churner clientId, [1001, 1002] notices seen by all stayers together, from the
/// workers' results.
pub fn notice_counts(results: &[Value]) -> HashMap<String, [u64; 2]> {
    let mut got: HashMap<String, [u64; 2]> = HashMap::new();
    for r in results {
        for (id, v) in r["notices"].as_object().into_iter().flatten() {
            let e = got.entry(id.clone()).or_insert([0, 0]);
            e[0] += v[0].as_u64().unwrap_or(0);
            e[1] += v[1].as_u64().unwrap_or(0);
        }
    }
    got
}

/// Churn: every completed session must have produced exactly one 1001 and one 1002 at each
/// stayer of its group. Returns the number of missing plus duplicated notices.
pub fn check(opts: &Opts, groups: usize, churned: &[Value], results: &[Value], out: &mut report::Outcome) -> u64 {
    let stayers = stayers_per_group(opts.clients, groups);
    let got = notice_counts(results);
    let dups: u64 = results.iter().map(|r| r["notice_dups"].as_u64().unwrap_or(0)).sum();
    let (mut sessions, mut expected, mut missing) = (0u64, 0u64, 0u64);
    for c in churned {
        for s in c["sessions"].as_array().into_iter().flatten() {
            let (id, g) = (s[0].as_str().unwrap_or(""), s[1].as_u64().unwrap_or(0) as usize);
            sessions += 1;
            let want = stayers[g % groups];
            expected += 2 * want;
            let have = got.get(id).copied().unwrap_or([0, 0]);
            missing += want.saturating_sub(have[0]) + want.saturating_sub(have[1]);
        }
    }
    let errors: u64 = churned.iter().map(|c| c["errors"].as_u64().unwrap_or(0)).sum();
    out.set("churn_sessions", json!(sessions));
    out.set("churn_errors", json!(errors));
    out.set("notices_expected", json!(expected));
    out.set("notices_missing", json!(missing));
    out.set("notices_duplicated", json!(dups));
    missing + dups
}
