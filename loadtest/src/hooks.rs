//! The chaos soak's webhook receiver (`churn --webhook-port P`, the nodes started with
//! `--webhook-url http://127.0.0.1:P/`): a keep-alive HTTP/1.1 listener on loopback that
//! answers every POST 200 and keeps its events (deduplicated by `id`, as a receiver must, with
//! the duplicates counted), so the soak can hold the presence webhooks to "exactly once per
//! transition" (`check`).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::report;

/// Requests larger than this are refused (the server's batches hold at most 100 events).
const MAX_BODY: usize = 16 << 20;

/// What the receiver has taken so far.
#[derive(Default)]
pub struct Got {
    /// Distinct events in arrival order: (name, clientId, userId).
    pub events: Vec<(String, String, String)>,
    ids: HashSet<String>,
    /// Events seen again under an `id` already taken (a retry's resend).
    pub resent: u64,
    /// When the last request came.
    pub last: Option<Instant>,
}

pub type Hooks = Arc<Mutex<Got>>;

/// Listens on 127.0.0.1:`port` for the rest of the run.
pub fn listen(port: u16) -> std::io::Result<Hooks> {
    let l = TcpListener::bind(("127.0.0.1", port))?;
    let got = Hooks::default();
    let g = got.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let g = g.clone();
            std::thread::spawn(move || serve(s, &g));
        }
    });
    Ok(got)
}

/// One keep-alive connection: requests until EOF or a malformed one.
fn serve(s: TcpStream, got: &Mutex<Got>) {
    let Ok(mut w) = s.try_clone() else { return };
    let mut r = BufReader::new(s);
    while let Some(body) = request(&mut r) {
        // A batch that is not JSON with events is refused (the server retries it), never
        // taken as empty.
        let batch = serde_json::from_slice::<Value>(&body).ok().filter(|v| v["events"].is_array());
        let answer: &[u8] = match &batch {
            Some(v) => {
                take(got, v);
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
            }
            None => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        };
        if w.write_all(answer).is_err() {
            return;
        }
    }
}

/// Reads one request's head and body; `None` at EOF or on a malformed request.
fn request(r: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut len = 0usize;
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let h = line.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    if len > MAX_BODY {
        return None;
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn take(got: &Mutex<Got>, batch: &Value) {
    let mut g = got.lock().expect("hooks");
    g.last = Some(Instant::now());
    for e in batch["events"].as_array().into_iter().flatten() {
        let id = e["id"].as_str().unwrap_or("").to_string();
        if !g.ids.insert(id) {
            g.resent += 1;
            continue;
        }
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        g.events.push((s("name"), s("clientId"), s("userId")));
    }
}

/// Waits (at most `limit`) until no request came for 2 s.
pub fn settle(got: &Hooks, limit: Duration) {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        let quiet = got.lock().expect("hooks").last.is_none_or(|t| t.elapsed() > Duration::from_secs(2));
        if quiet {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Counts of one event name per key (clientId or userId).
fn counts(events: &[(String, String, String)], name: &str, by_user: bool) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for (_, c, u) in events.iter().filter(|e| e.0 == name) {
        *m.entry(if by_user { u.clone() } else { c.clone() }).or_insert(0) += 1;
    }
    m
}

/// What the webhooks must have said, and what they said.
pub struct Expect {
    /// Per clientId: (client_connected, client_disconnected) wanted.
    pub clients: Vec<(String, u64, u64)>,
    /// Per userId: (user_online, user_offline) wanted.
    pub users: Vec<(String, u64, u64)>,
}

/// Holds the events to `want`: returns the number of missing plus extra events (and records
/// both in `out`, with a sample of what differed).
pub fn check(got: &Hooks, want: &Expect, out: &mut report::Outcome) -> u64 {
    let g = got.lock().expect("hooks");
    let on = [counts(&g.events, "client_connected", false), counts(&g.events, "client_disconnected", false)];
    let users = [counts(&g.events, "user_online", true), counts(&g.events, "user_offline", true)];
    let dropped = g.events.iter().filter(|e| e.0 == "events_dropped").count() as u64;
    let (mut missing, mut extra, mut sample) = (0u64, 0u64, Vec::new());
    let mut judge = |key: &str, wanted: [u64; 2], got: [&HashMap<String, u64>; 2], names: [&str; 2]| {
        for k in 0..2 {
            let have = got[k].get(key).copied().unwrap_or(0);
            missing += wanted[k].saturating_sub(have);
            extra += have.saturating_sub(wanted[k]);
            if have != wanted[k] && sample.len() < 20 {
                sample.push(json!([names[k], key, wanted[k], have]));
            }
        }
    };
    for (id, c, d) in &want.clients {
        judge(id, [*c, *d], [&on[0], &on[1]], ["client_connected", "client_disconnected"]);
    }
    for (u, a, b) in &want.users {
        judge(u, [*a, *b], [&users[0], &users[1]], ["user_online", "user_offline"]);
    }
    out.set("webhook_events", json!(g.events.len()));
    out.set("webhook_events_resent", json!(g.resent));
    out.set("webhook_events_dropped", json!(dropped));
    out.set("webhook_clients_judged", json!(want.clients.len()));
    out.set("webhook_users_judged", json!(want.users.len()));
    out.set("webhook_user_transitions_expected", json!(want.users.iter().map(|u| u.1 + u.2).sum::<u64>()));
    out.set("webhook_missing", json!(missing));
    out.set("webhook_extra", json!(extra));
    for s in &sample {
        eprintln!("webhook mismatch: {} for {}: wanted {}, got {}", s[0], s[1], s[2], s[3]);
    }
    missing + extra + dropped
}
