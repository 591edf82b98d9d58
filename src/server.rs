//! Starting and stopping a node: listeners, shard threads, the hub thread.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::admin;
use crate::auth::Verifier;
use crate::cluster::{self, ClusterConfig, Replies};
use crate::config::{Config, JwtKey};
use crate::hub::{Hub, Inbox, ShardLink};
use crate::metrics::{self, HubStats};
use crate::msg::{Command, ShardMsg};
use crate::restore;
use crate::shard::{Shard, Shared, WAKER};
use crate::webhooks;

/// A running node.
pub struct Server {
    addr: SocketAddr,
    tls: Option<crate::tls::Tls>,
    admin: Option<SocketAddr>,
    links: Vec<(Sender<ShardMsg>, Arc<Waker>)>,
    shards: Vec<JoinHandle<()>>,
    hub: Option<JoinHandle<()>>,
    cluster: Vec<JoinHandle<()>>,
    hub_tx: Sender<Command>,
}

fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    // One listener per shard on the same port: the kernel spreads accepts.
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    // Accepted sockets inherit TCP_NODELAY from the listener on Linux: no setsockopt per
    // connection (see `Shard::admit`).
    s.set_nodelay(true)?;
    defer_accept(&s);
    s.bind(&addr.into())?;
    s.listen(4096)?;
    Ok(s.into())
}

/// Linux: a connection is handed to `accept` once its first bytes (the request) arrived, so
/// the shard reads it at once instead of waiting for another event (`Shard::admit`); a
/// connection that sends nothing for 5 s is handed over anyway (and then meets
/// `request_timeout`).
fn defer_accept(s: &Socket) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let secs: libc::c_int = 5;
        // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                (&secs as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = s;
}

/// SO_REUSEPORT would let a second server on the same port silently take part of the
/// connections; a plain bind first fails if anything listens there already.
fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into()).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            io::Error::new(
                e.kind(),
                format!("{addr} is already in use (another roomcast or another server listens there)"),
            )
        } else {
            e
        }
    })
}

fn verifier(cfg: &Config) -> io::Result<Verifier> {
    Ok(match &cfg.jwt {
        JwtKey::None => Verifier::open(),
        JwtKey::Secret(s) => Verifier::hs256(s.as_bytes()),
        JwtKey::PublicKey { pem, alg } => Verifier::public_key(pem, *alg).map_err(io::Error::other)?,
    })
}

impl Server {
    /// Binds and starts every thread. With port 0 the first shard picks a port and the
    /// others bind the same one.
    pub fn start(mut cfg: Config) -> io::Result<Server> {
        // Before any thread starts: a Redis URL cluster mode cannot use fails here, not midway.
        cluster::check_url(&cfg).map_err(io::Error::other)?;
        // A single node's state_dir: what the last run kept (it may set the node id).
        let mut kept = restore::read(&mut cfg);
        let cfg = Arc::new(cfg);
        let tls = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Some(crate::tls::Tls::load(cert, key).map_err(io::Error::other)?),
            _ => None,
        };
        let (listeners, addr) = bind_all(&cfg)?;
        let hub_stats = Arc::new(HubStats::default());
        let shared = Arc::new(Shared {
            aliases: Default::default(),
            peers: cfg.redis.is_some(),
            verifier: verifier(&cfg)?,
            stats: metrics::per_shard(cfg.shards),
            hub_stats: hub_stats.clone(),
            connections: AtomicUsize::new(0),
            kept: AtomicUsize::new(0),
            per_ip: crate::shard::per_ip::PerIp::new(
                cfg.max_connections_per_ip,
                cfg.handshakes_per_ip_per_second,
                cfg.per_ip_ipv6_prefix as u8,
            ),
            tls: tls.clone(),
            cfg: cfg.clone(),
        });
        let (hub_tx, hub_rx) = bounded(cfg.hub_queue);
        let per_shard = std::mem::take(&mut kept.shards);
        let Started { links, hub_links, shards } = start_shards(listeners, &shared, &hub_tx, per_shard)?;
        let admin = match cfg.admin_listen {
            Some(a) => Some(admin::start(a, shared.clone(), hub_tx.clone())?),
            None => None,
        };
        let (hooks, hook_threads) = start_webhooks(&cfg, &hub_stats)?;
        let mut inbox = Inbox::single(hub_rx);
        let (broker, mut cluster) = match &cfg.redis {
            None => (None, Vec::new()),
            Some(_) => {
                let (link, threads) = start_cluster(&cfg, &hooks, &shared, &hub_links, &mut inbox)?;
                (Some(link), threads)
            }
        };
        let mut hub = Hub::new(cfg.clone(), hub_links, hub_stats, broker, hooks);
        hub.share_aliases(shared.aliases.clone());
        hub.restore(kept);
        // Joined after the hub and the broker (which hold the event senders): the webhook
        // sender then delivers what is left, bounded by shutdown_timeout.
        cluster.extend(hook_threads);
        let hub = std::thread::Builder::new().name("roomcast-hub".into()).spawn(move || hub.run(inbox))?;
        Ok(Server { addr, tls, admin, links, shards, hub: Some(hub), cluster, hub_tx })
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the TLS certificate and key again (SIGHUP): new handshakes use them; open
    /// connections are not touched. `Ok(false)`: TLS is off. On error the old pair stays.
    pub fn reload_tls(&self) -> Result<bool, String> {
        match &self.tls {
            None => Ok(false),
            Some(t) => t.reload().map(|()| true),
        }
    }

    /// The admin listener's bound address, if `admin_listen` is set.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Graceful shutdown: every shard stops accepting, sends close 1001 to its clients (1012
    /// to recovering ones whose sessions `state_dir` keeps), flushes (bounded by
    /// `shutdown_timeout`), hands the kept sessions to the hub and exits; then the hub exits
    /// (writing the state).
    pub fn shutdown(mut self) {
        let _ = self.hub_tx.send(Command::Stopping);
        for (tx, waker) in &self.links {
            let _ = tx.send(ShardMsg::Shutdown);
            let _ = waker.wake();
        }
        self.links.clear();
        for t in self.shards.drain(..) {
            let _ = t.join();
        }
        let _ = self.hub_tx.send(Command::Stop);
        if let Some(h) = self.hub.take() {
            let _ = h.join();
        }
        // The broker ends when the hub is gone (after removing this node's presence); the
        // subscriber when the broker is.
        for t in self.cluster.drain(..) {
            let _ = t.join();
        }
    }
}

/// One SO_REUSEPORT listener per shard on `listen` (a fixed port checked free first), and
/// the address bound.
fn bind_all(cfg: &Config) -> io::Result<(Vec<std::net::TcpListener>, SocketAddr)> {
    if cfg.listen.port() != 0 {
        ensure_free(cfg.listen)?;
    }
    let first = listener(cfg.listen)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..cfg.shards {
        listeners.push(listener(addr)?);
    }
    Ok((listeners, addr))
}

/// The shards' threads and the ends of their queues.
struct Started {
    /// For the main thread (shutdown).
    links: Vec<(Sender<ShardMsg>, Arc<Waker>)>,
    /// For the hub.
    hub_links: Vec<ShardLink>,
    shards: Vec<JoinHandle<()>>,
}

/// Starts one shard per listener; returns once each said it started (a server missing a
/// shard must not run).
fn start_shards(
    listeners: Vec<std::net::TcpListener>,
    shared: &Arc<Shared>,
    hub_tx: &Sender<Command>,
    kept: Vec<Vec<crate::msg::KeptSession>>,
) -> io::Result<Started> {
    let cfg = &shared.cfg;
    let n = listeners.len();
    debug_assert_eq!(kept.len(), n, "one list of kept sessions per shard");
    let mut kept = kept.into_iter();
    let mut started = Started { links: Vec::new(), hub_links: Vec::new(), shards: Vec::new() };
    let (started_tx, started_rx) = bounded::<Result<(), String>>(n);
    for (i, l) in listeners.into_iter().enumerate() {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, rx) = bounded(cfg.shard_queue);
        // Answers in flight are bounded by the shard's waiting HTTP connections; a full
        // channel only makes the hub wait (after waking the shard). crossbeam touches every
        // slot up front, so this stays small.
        let (replies, replies_rx) = bounded(cfg.shard_queue.min(4096));
        started.links.push((tx.clone(), waker.clone()));
        started.hub_links.push(ShardLink { tx, replies, waker });
        let (shared, hub_tx, started_tx) = (shared.clone(), hub_tx.clone(), started_tx.clone());
        let kept = kept.next().unwrap_or_default();
        let listener = mio::net::TcpListener::from_std(l);
        // Built on its own thread: a shard holds thread-local (`Rc`) buffers.
        let thread =
            std::thread::Builder::new().name(format!("roomcast-shard-{i}")).spawn(move || {
                match Shard::new(i as u16, shared, poll, listener, (rx, replies_rx), hub_tx, kept) {
                    Ok(shard) => {
                        let _ = started_tx.send(Ok(()));
                        shard.run()
                    }
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("cannot start shard {i}: {e}")));
                    }
                }
            })?;
        started.shards.push(thread);
    }
    drop(started_tx);
    all_started(&started_rx, n)?;
    Ok(started)
}

/// The webhook sender, when `webhook_url` is set.
fn start_webhooks(
    cfg: &Arc<Config>,
    hub_stats: &Arc<HubStats>,
) -> io::Result<(Option<webhooks::Webhooks>, Vec<JoinHandle<()>>)> {
    if cfg.webhook_url.is_none() {
        return Ok((None, Vec::new()));
    }
    let (h, t) = webhooks::start(cfg.clone(), hub_stats.clone())?;
    Ok((Some(h), t))
}

/// Cluster mode's threads (broker, subscriber) on `url`; the hub's `inbox` gets their queues.
fn start_cluster(
    cfg: &Arc<Config>,
    hooks: &Option<webhooks::Webhooks>,
    shared: &Arc<Shared>,
    hub_links: &[ShardLink],
    inbox: &mut Inbox,
) -> io::Result<(cluster::BrokerLink, Vec<JoinHandle<()>>)> {
    let ccfg = ClusterConfig {
        cfg: cfg.clone(),
        hooks: hooks.clone(),
        figures: admin::node_figures(shared.clone()),
        aliases: shared.aliases.clone(),
    };
    let replies = Replies(hub_links.iter().map(|l| (l.replies.clone(), l.waker.clone())).collect());
    let (control, control_rx) = crossbeam_channel::unbounded();
    let (redis, redis_rx) = bounded(cfg.hub_queue);
    (inbox.control, inbox.redis, inbox.single) = (control_rx, redis_rx, false);
    let to_hub = cluster::ToHub { control, redis, losses: Default::default() };
    cluster::start(ccfg, to_hub, replies, shared.hub_stats.clone()).map_err(io::Error::other)
}

/// Waits until each of `n` shards said it started; the first that could not is the error, so
/// the process exits non-zero rather than serve without it (as `panic = "abort"` intends for
/// a thread that dies later).
fn all_started(started: &crossbeam_channel::Receiver<Result<(), String>>, n: usize) -> io::Result<()> {
    for _ in 0..n {
        match started.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(io::Error::other(e)),
            Err(_) => return Err(io::Error::other("a shard thread ended before it started")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correctness review: a shard that failed to start was logged and the server ran on
    /// without it.
    #[test]
    fn a_shard_that_cannot_start_stops_the_server() {
        let (tx, rx) = bounded(3);
        tx.send(Ok(())).unwrap();
        tx.send(Err("cannot start shard 1: no epoll".into())).unwrap();
        assert_eq!(all_started(&rx, 3).unwrap_err().to_string(), "cannot start shard 1: no epoll");
        let (tx, rx) = bounded::<Result<(), String>>(2);
        tx.send(Ok(())).unwrap();
        drop(tx);
        assert!(all_started(&rx, 2).is_err(), "a thread gone without a word");
        let (tx, rx) = bounded(2);
        tx.send(Ok(())).unwrap();
        tx.send(Ok(())).unwrap();
        assert!(all_started(&rx, 2).is_ok());
    }
}
