//! The admin listener (`admin_listen`, off by default): `/metrics` and `/health` without a
//! token, on an internal address, for a Prometheus scraper and health checks inside the
//! network. Blocking sockets, one short-lived thread per connection, at most [`MAX_ACTIVE`] at
//! once (beyond: 503 at once), each request bounded by [`DEADLINE`] for the whole of it (not
//! per read: a peer sending a byte a second cannot hold one longer) and an 8 KiB head. A slow
//! or idle peer therefore never delays a liveness probe. It never touches the event loops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics;
use crate::protocol::{api, http};
use crate::shard::Shared;

/// Connections served at once; beyond, 503 and close.
pub const MAX_ACTIVE: usize = 64;

/// The whole of one request — head in, answer out — must fit in this.
pub const DEADLINE: Duration = Duration::from_secs(2);

/// Binds `addr` and serves it from a thread of its own; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let bound = l.local_addr()?;
    let active = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("roomcast-admin".into()).spawn(move || {
        for s in l.incoming() {
            match s {
                Ok(s) => accept(s, &shared, &active),
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

/// Hands a connection to a thread of its own, or refuses it when [`MAX_ACTIVE`] are served.
fn accept(mut s: TcpStream, shared: &Arc<Shared>, active: &Arc<AtomicUsize>) {
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
    let (sh, act) = (shared.clone(), active.clone());
    let spawned = std::thread::Builder::new().name("roomcast-admin-conn".into()).spawn(move || {
        serve(s, &sh);
        act.fetch_sub(1, Relaxed);
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

fn serve(mut s: TcpStream, shared: &Shared) {
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
            (_, "/metrics" | "/health") => http::response_with(
                405,
                "application/json",
                &[("Allow", "GET")],
                &api::err_body("the admin listener answers GET only"),
                false,
            ),
            (_, p) => http::json(
                404,
                &api::err_body(&format!("the admin listener serves /metrics and /health, not {p}")),
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
