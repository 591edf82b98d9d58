//! The admin listener (`admin_listen`, off by default): `/metrics` and `/health` without a
//! token, on an internal address, for a Prometheus scraper and health checks inside the
//! network. One small thread with blocking sockets: it serves one short request at a time
//! (each bounded by a 2 s timeout and an 8 KiB head) and never touches the event loops.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::metrics;
use crate::protocol::{api, http};
use crate::shard::Shared;

/// Binds `addr` and serves it on a thread of its own; returns the bound address.
pub fn start(addr: SocketAddr, shared: Arc<Shared>) -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(addr)?;
    let bound = l.local_addr()?;
    std::thread::Builder::new().name("roomcast-admin".into()).spawn(move || {
        for s in l.incoming().flatten() {
            serve(s, &shared);
        }
    })?;
    Ok(bound)
}

fn serve(mut s: TcpStream, shared: &Shared) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = loop {
        match http::parse_head(&buf, 8192, 0) {
            Ok(Some(h)) => break Ok(h),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
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
            (_, p) => http::json(
                404,
                &api::err_body(&format!("the admin listener serves /metrics and /health, not {p}")),
                false,
            ),
        },
    };
    let _ = s.write_all(&resp);
}
