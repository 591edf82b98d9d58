//! The admin listener (`admin_listen`, off by default): `/metrics` and `/health` without a
//! token, on an internal address, for a Prometheus scraper and health checks inside the
//! network, and `/admin`, a live page for operators (`admin.html`: self-contained, read-only,
//! polling `/admin/stats` every second; nothing runs for it while nobody looks, but for the
//! figures a cluster node writes with its heartbeat). Blocking sockets, one short-lived thread per connection, at most [`MAX_ACTIVE`] at
//! once (beyond: 503 at once), each request bounded by [`DEADLINE`] for the whole of it (not
//! per read: a peer sending a byte a second cannot hold one longer) and an 8 KiB head. A slow
//! or idle peer therefore never delays a liveness probe. It never touches the event loops;
//! `/admin/stats` asks the hub (and, through it, the broker) with a bounded wait.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;

use crate::metrics;
use crate::msg::{AdminView, Command};
use crate::protocol::{api, http};
use crate::shard::Shared;

/// The admin page: one file, no asset from anywhere else (its CSP says so too).
const PAGE: &str = include_str!("admin.html");

/// Who may load what on the admin page: nothing from another origin; the page's own inline
/// script and style, and requests to this listener only.
const PAGE_CSP: &str =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:";

/// How long `/admin/stats` waits for the hub's view of the systems before answering without.
const HUB_WAIT: Duration = Duration::from_millis(500);

/// Connections served at once; beyond, 503 and close.
pub const MAX_ACTIVE: usize = 64;

/// The whole of one request — head in, answer out — must fit in this.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Binds `addr` and serves it from a thread of its own; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<Shared>, hub: Sender<Command>) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let bound = l.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("roomcast-admin".into()).spawn(move || {
        for s in l.incoming() {
            match s {
                Ok(s) => accept(s, &shared, &hub, &active),
                Err(e) => {
                    // Out of descriptors, say: wait rather than spin on the same error.
                    tracing::warn!("admin listener: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })?;
    Ok(bound)
}

/// One of the [`MAX_ACTIVE`] places, held by a connection's thread.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Hands a connection to a thread of its own, or refuses it when [`MAX_ACTIVE`] are served.
fn accept(mut s: TcpStream, shared: &Arc<Shared>, hub: &Sender<Command>, active: &Arc<AtomicUsize>) {
    let refuse = |s: &mut TcpStream| {
        metrics::add(&shared.hub_stats.admin_refusals_total, 1);
        let _ = s.set_nonblocking(true);
        let _ = s.write_all(&http::json(503, &api::err_body("admin listener busy: retry"), false));
    };
    if active.fetch_add(1, Relaxed) >= MAX_ACTIVE {
        active.fetch_sub(1, Relaxed);
        tracing::warn!(max = MAX_ACTIVE, "admin listener: too many connections at once, refused (503)");
        return refuse(&mut s);
    }
    let (sh, hub, act) = (shared.clone(), hub.clone(), active.clone());
    let spawned = std::thread::Builder::new().name("roomcast-admin-conn".into()).spawn(move || {
        let _slot = Slot(act); // given back however `serve` ends
        serve(s, &sh, &hub);
    });
    if let Err(e) = spawned {
        active.fetch_sub(1, Relaxed);
        tracing::warn!("admin listener: cannot start a thread: {e}");
    }
}

/// Reads one request head by `deadline`; `None`: the peer closed, failed or ran out of time.
fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> Option<Result<usize, http::HttpError>> {
    let mut chunk = [0u8; 1024];
    loop {
        // Any declared body is allowed here (and never read): a POST gets its 405, not a 413.
        match http::parse_head(buf, 8192, usize::MAX) {
            Ok(Some(h)) => return Some(Ok(h.head_len)),
            Ok(None) => {}
            Err(e) => return Some(Err(e)),
        }
        let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        let _ = s.set_read_timeout(Some(left));
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn serve(mut s: TcpStream, shared: &Shared, hub: &Sender<Command>) {
    let deadline = Instant::now() + DEADLINE;
    let mut buf = Vec::with_capacity(1024);
    let Some(parsed) = read_head(&mut s, &mut buf, deadline) else {
        if Instant::now() >= deadline {
            metrics::add(&shared.hub_stats.admin_timeouts_total, 1);
        }
        return;
    };
    let head = parsed.and_then(|_| http::parse_head(&buf, 8192, usize::MAX).map(|h| h.expect("complete above")));
    let resp = match head {
        Err(e) => http::json(e.status(), &api::err_body(e.message()), false),
        Ok(h) => match (h.method, h.path) {
            ("GET", "/metrics") => {
                let text = metrics::render(&shared.stats, &shared.hub_stats);
                http::response(200, "text/plain; version=0.0.4", text.as_bytes(), false)
            }
            ("GET", "/health") => {
                let body = metrics::health(&shared.stats, &shared.hub_stats, shared.cfg.redis.is_some());
                http::json(200, body.as_bytes(), false)
            }
            ("GET", "/admin") => http::response_with(
                200,
                "text/html; charset=utf-8",
                &[("Content-Security-Policy", PAGE_CSP), ("Cache-Control", "no-store")],
                PAGE.as_bytes(),
                false,
            ),
            ("GET", "/admin/stats") => http::response_with(
                200,
                "application/json",
                &[("Cache-Control", "no-store")],
                stats(shared, hub).to_string().as_bytes(),
                false,
            ),
            (_, "/metrics" | "/health" | "/admin" | "/admin/stats") => http::response_with(
                405,
                "application/json",
                &[("Allow", "GET")],
                &api::err_body("the admin listener answers GET only"),
                false,
            ),
            (_, p) => http::json(
                404,
                &api::err_body(&format!("the admin listener serves /metrics, /health and /admin, not {p}")),
                false,
            ),
        },
    };
    // The answer too must be out by the deadline (a peer that reads slowly cannot hold on).
    let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
    let Some(left) = left else { return metrics::add(&shared.hub_stats.admin_timeouts_total, 1) };
    let _ = s.set_write_timeout(Some(left));
    let _ = s.write_all(&resp);
}

/// `/admin/stats`: every metric (as `/metrics` has it, without the `roomcast_` prefix), the
/// node and its mode, the hub's view of the systems (`null` if the hub did not answer within
/// [`HUB_WAIT`]: busy, or its queue full) and in cluster mode every node's figures from Redis
/// (`null` if the broker did not answer in that same time: Redis unreachable, or slow).
fn stats(shared: &Shared, hub: &Sender<Command>) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let metrics: Map<String, Value> =
        metrics::values(&shared.stats, &shared.hub_stats).into_iter().map(|(k, _, v)| (k.into(), v.into())).collect();
    let time_ms = unix_ms(); // with the metrics: the page's rates divide by it
    let cluster = shared.cfg.redis.is_some();
    let redis = cluster.then(|| if shared.hub_stats.cluster_up.load(Relaxed) == 1 { "up" } else { "unreachable" });
    let deadline = Instant::now() + HUB_WAIT;
    let (tx, rx) = crossbeam_channel::bounded(1);
    let (ntx, nrx) = crossbeam_channel::bounded(1);
    let asked = hub.try_send(Command::AdminView { reply: tx, nodes: cluster.then_some(ntx) }).is_ok();
    let view: Option<AdminView> = asked.then(|| rx.recv_deadline(deadline).ok()).flatten();
    let nodes = (asked && cluster).then(|| nrx.recv_deadline(deadline).ok()).flatten();
    let systems = view.map(|v| {
        let top: Vec<Value> = v
            .systems
            .iter()
            .map(|s| {
                let largest: Vec<Value> = s.largest.iter().map(|(g, n)| json!({"group": &**g, "members": n})).collect();
                json!({"system": &*s.name, "clients": s.clients, "users": s.users, "groups": s.groups, "largest": largest})
            })
            .collect();
        json!({"total": v.systems_total, "top": top})
    });
    let nodes = nodes.map(|n| {
        let list: Vec<Value> = n
            .iter()
            .map(|(name, figures)| {
                // Whatever another process left under the key: an object, or nothing.
                let mut o = match serde_json::from_str(figures) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                };
                o.insert("node".into(), name.as_str().into());
                Value::Object(o)
            })
            .collect();
        list
    });
    json!({
        "node": format!("{:08x}", shared.cfg.node_id.0),
        "mode": if cluster { "cluster" } else { "single" },
        "redis": redis,
        "timeMs": time_ms,
        "metrics": metrics,
        "systems": systems,
        "nodes": nodes,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The figures of this node that every node's admin page shows (cluster mode: written to Redis
/// with each heartbeat, `cluster::NodeFigures`; one SET in the heartbeat's round trip).
pub fn node_figures(shared: Arc<Shared>) -> crate::cluster::NodeFigures {
    const SHOWN: [&str; 6] = ["ws_clients", "clients", "groups", "users", "recovery_sessions", "messages_queued_total"];
    Arc::new(move || {
        let all = metrics::values(&shared.stats, &shared.hub_stats);
        let mut picked: serde_json::Map<String, serde_json::Value> =
            all.into_iter().filter(|(k, _, _)| SHOWN.contains(k)).map(|(k, _, v)| (k.into(), v.into())).collect();
        picked.insert("timeMs".into(), unix_ms().into());
        serde_json::Value::Object(picked).to_string()
    })
}
