//! A worker process: holds its share of WebSocket clients in one mio loop.
//!
//! It connects its clients (paced, source addresses spread over 127.0.0.1..N), reports
//! `ready` with handshake latencies (and clientIds if asked), then obeys commands read from
//! stdin — `bind`, `expect`, `quit` — while counting frames by `code` and recording the
//! end-to-end latency of every code-200 frame from the send time embedded in `data` (`"t"`).
//! Everything it says goes to stdout as one JSON object per line.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use memchr::memmem::Finder;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde_json::json;

use crate::{now_nanos, Opts};

/// The permessage-deflate offer of `--compression` (one header line).
const EXT_OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

enum St {
    Connecting,
    Handshake,
    Open,
    Closed,
}

struct Ws {
    sock: crate::stream::Stream,
    st: St,
    started: Instant,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    id: String,
    global: usize,
    /// Session recovery (recover, reconnect scenarios).
    rec: Option<Box<crate::recover::Rec>>,
    /// Chaos: the index (`"i"`) of every message received, and when the connection closed.
    got: Option<Vec<u32>>,
    closed_at: u64,
    /// A recovering client told to come back (close 1012: its node restarts), or whose
    /// resume could not connect: it resumes through another node (`resume_elsewhere`).
    resume_due: bool,
    /// Connections tried for the resume under way.
    tries: u32,
}

/// Counters and histograms of one worker.
pub struct Tally {
    pub codes: HashMap<i64, u64>,
    pub latency: Histogram<u64>,
    pub interval: Histogram<u64>,
    pub first_rx: u64,
    pub last_rx: u64,
    pub closed: u64,
    /// Close frames 1012 (the node restarts) to recovering clients, each followed by a resume.
    pub restarts: u64,
    /// Churn mode only: per churner clientId, [1001 count, 1002 count] over all stayers.
    pub notices: Option<HashMap<String, [u64; 2]>>,
    /// Churn mode only: (stayer, churner, code) already seen, to count duplicates.
    seen: HashSet<(usize, String, i64)>,
    pub notice_dups: u64,
    /// Recovering clients' drops, resumes and sequence checks.
    pub rec: crate::recover::RecTally,
    /// Time from a drop to the resumed connect frame (µs).
    pub resume_latency: Histogram<u64>,
    /// Bytes on the wire (frame header and payload, as sent) of the code-200 frames.
    pub wire_bytes: u64,
    /// Frames that came compressed (permessage-deflate), and what inflates them.
    pub compressed: u64,
    inflater: roomcast::protocol::deflate::Inflater,
}

impl Tally {
    fn new() -> Self {
        let h = || Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds");
        Tally {
            codes: HashMap::new(),
            latency: h(),
            interval: h(),
            first_rx: 0,
            last_rx: 0,
            closed: 0,
            restarts: 0,
            notices: None,
            seen: HashSet::new(),
            notice_dups: 0,
            rec: Default::default(),
            resume_latency: h(),
            wire_bytes: 0,
            compressed: 0,
            inflater: Default::default(),
        }
    }
}

/// `[[value, count], ...]` of a histogram's recorded values (mergeable by the parent).
pub fn hist_json(h: &Histogram<u64>) -> serde_json::Value {
    h.iter_recorded().map(|v| json!([v.value_iterated_to(), v.count_at_value()])).collect()
}

fn emit(v: serde_json::Value) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

/// Searchers for the keys read from every frame, built once: a frame is searched with
/// SIMD `memmem`, not by comparing every window (which cost about 70 `memcmp` calls per
/// push frame, whose `"code"` comes after `messageId` and `sendUserId`).
static CODE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"code\":"));
/// In a 1001/1002 notice, `data` is a JSON string: `{\"clientId\":\"ID\",...}`.
static NOTICE_ID: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(br#"clientId\":\""#));
static T: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"t\":"));
static I: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"i\":"));

/// Extracts the integer after `key` (e.g. `"code":`) in a JSON text, without parsing it.
fn int_after(p: &[u8], key: &Finder<'_>) -> Option<i64> {
    let i = key.find(p)? + key.needle().len();
    let mut n: i64 = 0;
    let mut neg = false;
    let mut any = false;
    for (k, &c) in p[i..].iter().enumerate() {
        match c {
            b'-' if k == 0 => neg = true,
            b'0'..=b'9' => {
                n = n * 10 + (c - b'0') as i64;
                any = true;
            }
            _ => break,
        }
    }
    any.then_some(if neg { -n } else { n })
}

/// Runs worker `index` of `procs`, owning global clients `[lo, hi)`.
pub fn run(opts: &Opts, index: usize) -> io::Result<()> {
    let procs = opts.procs.max(1);
    let (lo, hi) = (opts.clients * index / procs, opts.clients * (index + 1) / procs);
    let (cmd_tx, cmd_rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(l) = line else { break };
            if cmd_tx.send(l).is_err() {
                return;
            }
        }
        // The parent is gone (stdin closed): stop now rather than at --time-limit.
        let _ = cmd_tx.send("quit".into());
    });
    let mut poll = Poll::new()?;
    // Index = mio token; `None`: the connect call itself failed.
    let mut conns: Vec<Option<Ws>> = Vec::with_capacity(hi - lo);
    let mut tally = Tally::new();
    if opts.churners > 0 {
        tally.notices = Some(HashMap::new());
    }
    let churn = Arc::new(crate::churn::Churn::default());
    let mut churn_threads = Vec::new();
    let mut handshake = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).expect("bounds");
    let (mut opened, mut failed) = (0usize, 0usize);
    let rate = opts.connect_rate.max(1) as f64 / procs as f64;
    let start = Instant::now();
    let deadline = start + Duration::from_secs(opts.time_limit);
    let path = format!("/ws?systemId={}", opts.system);
    let mut events = Events::with_capacity(4096);
    let mut chunk = vec![0u8; 256 * 1024];
    let mut expect: Option<(i64, u64, Instant)> = None;
    let mut ready_sent = false;
    let mut last_progress = Instant::now();
    let mut bind_rx: Option<mpsc::Receiver<(u64, u64)>> = None;
    // Recover: (drops per second, since, drops done so far).
    let mut drops: Option<(f64, Instant, u64)> = None;
    let mut awaiting_resumes = false;
    loop {
        // Open new connections as the connect rate allows.
        let mut due = ((start.elapsed().as_secs_f64() * rate) as usize + 1).min(hi - lo);
        if opts.connect_inflight > 0 {
            // Closed loop: at most this many handshakes waiting for their connect frame.
            due = due.min(opened + failed + opts.connect_inflight);
        }
        while conns.len() < due {
            let global = lo + conns.len();
            let addr = opts.ports[global % opts.ports.len()];
            let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (global % opts.src_ips.max(1)) as u8));
            match connect(addr, src) {
                Ok(mut sock) => {
                    poll.registry().register(&mut sock, Token(conns.len()), Interest::READABLE | Interest::WRITABLE)?;
                    let started = Instant::now();
                    conns.push(Some(Ws {
                        sock: crate::stream::Stream::new(sock),
                        st: St::Connecting,
                        started,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        id: String::new(),
                        global,
                        rec: opts.recover.then(Default::default),
                        got: opts.chaos.then(Vec::new),
                        closed_at: 0,
                        resume_due: false,
                        tries: 0,
                    }));
                }
                Err(_) => {
                    failed += 1;
                    conns.push(None);
                }
            }
        }
        let timeout = if conns.len() < hi - lo { Duration::from_millis(2) } else { Duration::from_millis(20) };
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0).and_then(Option::as_mut) else { continue };
            if let St::Connecting = c.st {
                if ev.is_writable() || ev.is_error() {
                    if c.sock.sock.peer_addr().is_err() {
                        c.st = St::Closed;
                        // A resume whose node is down (restarting): the next node.
                        match c.rec.as_ref().is_some_and(|r| r.dropped_at.is_some()) {
                            true => c.resume_due = true,
                            false => failed += 1,
                        }
                        continue;
                    }
                    let path = match &c.rec {
                        Some(r) => crate::recover::path(&opts.system, r),
                        None => path.clone(),
                    };
                    let ext = if opts.compression { EXT_OFFER } else { "" };
                    c.wbuf.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: loadtest\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n").as_bytes());
                    c.st = St::Handshake;
                }
            }
            if ev.is_writable() {
                let _ = c.sock.flush_tls();
                flush(c);
            }
            if ev.is_readable() || ev.is_read_closed() {
                read_all(c, &mut chunk, &mut tally, &mut handshake, &mut opened, &mut failed);
            }
        }
        // Only recovering clients resume (`rec` is set for them alone): without them, no scan of
        // every connection at every wake-up (at 20,000 clients a worker wakes for each of the
        // server's heartbeat pings; two scans per wake-up took a fifth of the 1M run's CPU).
        if opts.recover {
            for k in 0..conns.len() {
                if conns[k].as_ref().is_some_and(|c| c.resume_due) {
                    resume_elsewhere(&mut conns, k, &mut poll, opts, &mut tally)?;
                }
            }
        }
        let settled = opened + failed >= hi - lo;
        if settled && !ready_sent {
            ready_sent = true;
            let (ids, globals): (Vec<&str>, Vec<usize>) = if opts.report_ids {
                conns.iter().flatten().filter(|c| !c.id.is_empty()).map(|c| (c.id.as_str(), c.global)).unzip()
            } else {
                Default::default()
            };
            emit(json!({"type": "ready", "worker": index, "connected": opened, "failed": failed,
                "connect_secs": start.elapsed().as_secs_f64(), "handshake": hist_json(&handshake), "ids": ids,
                "globals": globals}));
        }
        // Commands from the parent.
        while let Ok(cmd) = cmd_rx.try_recv() {
            let parts: Vec<&str> = cmd.split_whitespace().collect();
            match parts.as_slice() {
                ["bind", groups, notify, rest @ ..] => {
                    let groups: usize = groups.parse().unwrap_or(1);
                    let notify = *notify == "true";
                    // With a tab count: client k is a connection of user u<k / tabs> (0: no
                    // user); with "mixed" as well, of churn::stayer_user's.
                    let tabs: Option<usize> = rest.first().and_then(|t| t.parse().ok()).filter(|&t| t > 0);
                    let mixed = rest.get(1) == Some(&"mixed");
                    let reqs: Vec<Vec<u8>> = conns
                        .iter()
                        .flatten()
                        .filter(|c| matches!(c.st, St::Open))
                        .map(|c| {
                            let mut body = json!({"clientId": c.id, "groupName": format!("g{}", c.global % groups), "notify": notify});
                            if let Some(t) = tabs {
                                body["userId"] = json!(if mixed {
                                    crate::churn::stayer_user(c.global, t)
                                } else {
                                    format!("u{}", c.global / t)
                                });
                            }
                            let body = body.to_string();
                            crate::sender::post("/api/bind_to_group", &opts.system, opts.token.as_deref(), &body)
                        })
                        .collect();
                    let (tx, rx) = mpsc::channel();
                    bind_rx = Some(rx);
                    let ports = opts.ports.clone();
                    let k = opts.concurrency.clamp(1, 16);
                    std::thread::spawn(move || {
                        let n = reqs.len() as u64;
                        // Until the run's own deadline: a fixed 600 s once left 4.6 % of a
                        // million clients unbound (binds at 1,663/s), counted as lost frames.
                        let r = crate::sender::run(
                            &ports,
                            k,
                            n,
                            None,
                            deadline,
                            |i| reqs[i as usize].clone(),
                            |_, _, _| {},
                        );
                        // Not bound: refused, failed, or never sent before the deadline.
                        let _ = tx.send(r.map(|s| (s.ok, n - s.ok.min(n))).unwrap_or((0, n)));
                    });
                }
                ["expect", code, n, secs] => {
                    let until = Instant::now() + Duration::from_secs(secs.parse().unwrap_or(30));
                    expect = Some((code.parse().unwrap_or(200), n.parse().unwrap_or(0), until));
                    tally.interval.reset();
                }
                ["churn", "start"] => {
                    churn_threads = crate::churn::start(
                        opts.churners,
                        opts.ports.clone(),
                        opts.system.clone(),
                        opts.token.clone(),
                        opts.groups,
                        crate::churn::Users { worker: index, tabs: opts.churn_tabs, clients: opts.clients },
                        churn.clone(),
                    );
                }
                ["churn", "stop"] => {
                    churn.stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    let (threads, churn) = (std::mem::take(&mut churn_threads), churn.clone());
                    std::thread::spawn(move || {
                        for t in threads {
                            let _ = t.join();
                        }
                        let sessions: Vec<serde_json::Value> = churn
                            .sessions
                            .lock()
                            .expect("sessions")
                            .iter()
                            .map(|s| json!([s.client_id, s.group, s.start, s.end, s.user, s.own_user]))
                            .collect();
                        let errors = *churn.errors.lock().expect("errors");
                        emit(json!({"type": "churned", "worker": index, "sessions": sessions, "errors": errors}));
                    });
                }
                ["drops", "start", per_sec] => drops = Some((per_sec.parse().unwrap_or(10.0), Instant::now(), 0)),
                ["drops", "stop"] => {
                    drops = None;
                    awaiting_resumes = true;
                }
                ["drop", "all"] => {
                    for k in 0..conns.len() {
                        drop_and_resume(&mut conns, k, &mut poll, opts, &mut tally)?;
                    }
                    awaiting_resumes = true;
                }
                ["verify", path] => {
                    let stayers =
                        conns.iter().flatten().filter_map(|c| Some((c.global, c.closed_at, c.got.as_deref()?)));
                    emit(crate::chaos::verify(index, path, opts.groups, stayers));
                }
                ["quit"] => return Ok(()),
                _ => {}
            }
        }
        // Recover: drop (reset) open clients at the asked rate; each resumes at once.
        if let Some((per_sec, since, done)) = drops.as_mut() {
            let due = (since.elapsed().as_secs_f64() * *per_sec) as u64;
            while *done < due {
                *done += 1;
                let open: Vec<usize> = (0..conns.len())
                    .filter(|&k| conns[k].as_ref().is_some_and(|c| matches!(c.st, St::Open) && !c.id.is_empty()))
                    .collect();
                if let Some(&k) = open.get(fastrand::usize(..open.len().max(1))) {
                    drop_and_resume(&mut conns, k, &mut poll, opts, &mut tally)?;
                }
            }
        }
        let resuming =
            opts.recover && conns.iter().flatten().any(|c| c.rec.as_ref().is_some_and(|r| r.dropped_at.is_some()));
        if awaiting_resumes && !resuming {
            awaiting_resumes = false;
            let t = &tally.rec;
            emit(json!({"type": "resumed", "worker": index, "drops": t.drops, "resumed": t.resumed,
                "resume_failed": t.resume_failed, "last_resume": t.last_resume,
                "resume_latency": hist_json(&tally.resume_latency)}));
        }
        if let Some(rx) = &bind_rx {
            if let Ok((ok, errors)) = rx.try_recv() {
                emit(json!({"type": "bound", "worker": index, "ok": ok, "errors": errors}));
                bind_rx = None;
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(250) {
            last_progress = Instant::now();
            let h = &tally.interval;
            emit(
                json!({"type": "progress", "worker": index, "connected": opened, "received": tally.codes.get(&200).copied().unwrap_or(0),
                "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99), "count": h.len()}),
            );
            tally.interval.reset();
        }
        if let Some((code, n, until)) = expect {
            let got = tally.codes.get(&code).copied().unwrap_or(0);
            // n == 0: until 2 s without any new frame of that code.
            let idle_done = n == 0 && tally.last_rx > 0 && now_nanos().saturating_sub(tally.last_rx) > 2_000_000_000;
            if (n > 0 && got >= n) || idle_done || Instant::now() >= until {
                let codes: HashMap<String, u64> = tally.codes.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                emit(json!({"type": "result", "worker": index, "codes": codes, "latency": hist_json(&tally.latency),
                    "first_rx": tally.first_rx, "last_rx": tally.last_rx, "closed": tally.closed, "connected": opened,
                    "notices": tally.notices, "notice_dups": tally.notice_dups,
                    "seq_gaps": tally.rec.gaps, "seq_dups": tally.rec.dups, "restarts": tally.restarts,
                    "resumed": tally.rec.resumed, "resume_failed": tally.rec.resume_failed,
                    "wire_bytes": tally.wire_bytes, "compressed": tally.compressed}));
                expect = None;
            }
        }
        if Instant::now() >= deadline {
            emit(json!({"type": "timeout", "worker": index}));
            return Ok(());
        }
    }
}

/// Drops client `k` with a reset (as a lost network would) and reconnects it at once with a
/// resume of its session.
fn drop_and_resume(
    conns: &mut [Option<Ws>],
    k: usize,
    poll: &mut Poll,
    opts: &Opts,
    tally: &mut Tally,
) -> io::Result<()> {
    let Some(c) = conns.get_mut(k).and_then(Option::as_mut) else { return Ok(()) };
    let Some(rec) = c.rec.as_mut() else { return Ok(()) };
    if rec.token.is_empty() || !matches!(c.st, St::Open) {
        return Ok(());
    }
    let _ = socket2::SockRef::from(&c.sock.sock).set_linger(Some(Duration::ZERO));
    let _ = poll.registry().deregister(&mut c.sock.sock);
    rec.dropped_at = Some(Instant::now());
    tally.rec.drops += 1;
    // Through the next node each time (cluster mode: a resume through another node is relayed
    // by the session's own node).
    let addr = opts.ports[(c.global + tally.rec.drops as usize) % opts.ports.len()];
    reconnect(c, k, poll, opts, addr) // the old socket is closed here, with a reset
}

/// Client `k` connects again, to `addr`, for a resume (its old socket is dropped).
fn reconnect(c: &mut Ws, k: usize, poll: &mut Poll, opts: &Opts, addr: SocketAddr) -> io::Result<()> {
    let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (c.global % opts.src_ips.max(1)) as u8));
    let mut sock = connect(addr, src)?;
    poll.registry().register(&mut sock, Token(k), Interest::READABLE | Interest::WRITABLE)?;
    c.sock = crate::stream::Stream::new(sock);
    c.st = St::Connecting;
    c.rbuf.clear();
    c.wbuf.clear();
    c.started = Instant::now();
    Ok(())
}

/// How many connections a resume after a 1012 tries (round the nodes) before it gives up.
const RESUME_TRIES: u32 = 200;

/// Client `k` was told to come back (1012) or its resume could not connect: it resumes
/// through the next node (the one that closed it may be restarting), as often as
/// [`RESUME_TRIES`] allows, a few milliseconds apart.
fn resume_elsewhere(
    conns: &mut [Option<Ws>],
    k: usize,
    poll: &mut Poll,
    opts: &Opts,
    tally: &mut Tally,
) -> io::Result<()> {
    let Some(c) = conns.get_mut(k).and_then(Option::as_mut) else { return Ok(()) };
    c.resume_due = false;
    let Some(rec) = c.rec.as_mut() else { return Ok(()) };
    if rec.dropped_at.is_none() {
        rec.dropped_at = Some(Instant::now());
        tally.rec.drops += 1;
        c.tries = 0;
    }
    c.tries += 1;
    if c.tries > RESUME_TRIES {
        tally.rec.resume_failed += 1;
        rec.dropped_at = None;
        close(c);
        return Ok(());
    }
    if c.tries > opts.ports.len() as u32 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = poll.registry().deregister(&mut c.sock.sock);
    let addr = opts.ports[(c.global + 1 + c.tries as usize) % opts.ports.len()];
    reconnect(c, k, poll, opts, addr)
}

fn connect(addr: SocketAddr, src: IpAddr) -> io::Result<TcpStream> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    s.set_nonblocking(true)?;
    s.set_nodelay(true)?;
    // Choose the source port at connect time, per destination: with a port picked at bind
    // time every source address would have only ~28k ports for all servers together, and
    // the TIME_WAIT left by a previous 100k run would exhaust them.
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own, with a pointer to a live c_int and its size.
    unsafe {
        use std::os::fd::AsRawFd;
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let _ = s.bind(&SocketAddr::new(src, 0).into());
    match s.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(s.into()))
}

fn flush(c: &mut Ws) {
    while !c.wbuf.is_empty() {
        match c.sock.write(&c.wbuf) {
            Ok(n) => {
                c.wbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(_) => {
                c.wbuf.clear();
                return;
            }
        }
    }
}

fn close(c: &mut Ws) {
    if !matches!(c.st, St::Closed) {
        c.closed_at = now_nanos();
    }
    c.st = St::Closed;
}

fn read_all(
    c: &mut Ws,
    chunk: &mut [u8],
    tally: &mut Tally,
    hs: &mut Histogram<u64>,
    opened: &mut usize,
    failed: &mut usize,
) {
    loop {
        match c.sock.read(chunk) {
            Ok(0) => {
                let resuming = c.rec.as_ref().is_some_and(|r| r.dropped_at.is_some());
                match c.st {
                    _ if c.resume_due => return,
                    St::Connecting | St::Handshake if resuming => c.resume_due = true,
                    St::Open => tally.closed += 1,
                    St::Connecting | St::Handshake => *failed += 1,
                    St::Closed => {}
                }
                close(c);
                return;
            }
            Ok(n) => {
                c.rbuf.extend_from_slice(&chunk[..n]);
                parse(c, now_nanos(), tally, hs, opened, failed);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => {
                let resuming = c.rec.as_ref().is_some_and(|r| r.dropped_at.is_some());
                if c.resume_due {
                    return;
                }
                if matches!(c.st, St::Connecting | St::Handshake) {
                    match resuming {
                        true => c.resume_due = true,
                        false => *failed += 1,
                    }
                }
                close(c);
                return;
            }
        }
    }
}

/// Parses what `c` has read; `now` is when it was read (one clock read per read call).
fn parse(c: &mut Ws, now: u64, tally: &mut Tally, hs: &mut Histogram<u64>, opened: &mut usize, failed: &mut usize) {
    let mut pos = 0;
    if let St::Handshake = c.st {
        let Some(end) = c.rbuf.windows(4).position(|w| w == b"\r\n\r\n") else { return };
        if !c.rbuf.starts_with(b"HTTP/1.1 101") {
            *failed += 1;
            c.st = St::Closed;
            return;
        }
        pos = end + 4;
        c.st = St::Open;
    }
    let mut pongs: Vec<Vec<u8>> = Vec::new();
    loop {
        let b = &c.rbuf[pos..];
        if b.len() < 2 {
            break;
        }
        let op = b[0] & 0x0f;
        let (len, hl) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().unwrap_or([0; 8])) as usize, 10),
            126 | 127 => break,
            n => (n as usize, 2),
        };
        if b.len() < hl + len {
            break;
        }
        let mut p = &b[hl..hl + len];
        let inflated;
        if b[0] & 0x40 != 0 {
            // permessage-deflate (--compression): the message inflated.
            tally.compressed += 1;
            inflated = tally.inflater.message(p, 1 << 24).unwrap_or_default();
            p = &inflated;
        }
        match op {
            0x1 => {
                if p.starts_with(b"{\"code\":0,\"msg\":\"success\",\"data\":{\"clientId\"") {
                    let resuming = !c.id.is_empty();
                    if let Some(i) = p.windows(12).position(|w| w == b"\"clientId\":\"") {
                        let rest = &p[i + 12..];
                        let end = rest.iter().position(|&x| x == b'"').unwrap_or(0);
                        c.id = String::from_utf8_lossy(&rest[..end]).into_owned();
                    }
                    if let Some(rec) = c.rec.as_mut() {
                        let since = rec.dropped_at;
                        if crate::recover::on_connect_frame(rec, p, &mut tally.rec, resuming) == Some(true) {
                            let us = since.map_or(1, |t| t.elapsed().as_micros().max(1) as u64);
                            let _ = tally.resume_latency.record(us);
                        }
                    }
                    if !resuming {
                        *opened += 1;
                        let _ = hs.record(c.started.elapsed().as_micros().max(1) as u64);
                    }
                } else if let Some(code) = int_after(p, &CODE) {
                    *tally.codes.entry(code).or_default() += 1;
                    if tally.first_rx == 0 {
                        tally.first_rx = now;
                    }
                    tally.last_rx = now;
                    if let (Some(rec), 1001 | 1002) = (c.rec.as_mut(), code) {
                        crate::recover::processed(rec, p);
                    }
                    if let (Some(map), 1001 | 1002) = (tally.notices.as_mut(), code) {
                        // data is a JSON string: {\"clientId\":\"ID\",...}
                        if let Some(i) = NOTICE_ID.find(p) {
                            let rest = &p[i + NOTICE_ID.needle().len()..];
                            let end = rest.iter().position(|&x| x == b'\\').unwrap_or(rest.len());
                            let id = String::from_utf8_lossy(&rest[..end]).into_owned();
                            if !tally.seen.insert((c.global, id.clone(), code)) {
                                tally.notice_dups += 1;
                            }
                            map.entry(id).or_insert([0, 0])[(code - 1001) as usize] += 1;
                        }
                    }
                    if code == 200 {
                        tally.wire_bytes += (hl + len) as u64;
                        if let Some(rec) = c.rec.as_mut() {
                            crate::recover::on_message(rec, p, &mut tally.rec);
                        }
                        if let (Some(got), Some(i)) = (c.got.as_mut(), int_after(p, &I)) {
                            got.push(i as u32);
                        }
                        if let Some(t) = int_after(p, &T) {
                            let us = (now.saturating_sub(t as u64) / 1000).max(1);
                            let _ = tally.latency.record(us);
                            let _ = tally.interval.record(us);
                        }
                    }
                }
            }
            // A ping's payload is echoed in its pong (RFC 6455 §5.5.3; roomcast's pings to
            // recovering clients carry what the pong acknowledges).
            0x9 => pongs.push(p.to_vec()),
            0x8 => {
                // 1012 to a recovering client: its node restarts; it resumes elsewhere.
                let code = (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]]));
                if code == Some(1012) && c.rec.is_some() {
                    tally.restarts += 1;
                    c.resume_due = true;
                    close(c);
                    break;
                }
                tally.closed += 1;
                close(c);
            }
            _ => {}
        }
        pos += hl + len;
    }
    c.rbuf.drain(..pos);
    if c.rbuf.capacity() > 4096 && c.rbuf.is_empty() {
        c.rbuf = Vec::new();
    }
    if !pongs.is_empty() {
        for p in pongs {
            // Masked with key 0, so the payload goes as it is (control payloads are < 126).
            c.wbuf.extend_from_slice(&[0x8a, 0x80 | p.len() as u8, 0, 0, 0, 0]);
            c.wbuf.extend_from_slice(&p);
        }
        flush(c);
    }
}

#[cfg(test)]
mod tests {
    use super::{int_after, Finder};

    #[test]
    fn int_after_finds_numbers() {
        let (code, t) = (Finder::new(b"\"code\":"), Finder::new(b"\"t\":"));
        assert_eq!(int_after(br#"{"code":200,"data":{"t":1763}}"#, &code), Some(200));
        assert_eq!(int_after(br#"{"messageId":"m","sendUserId":"","code":1001}"#, &code), Some(1001));
        assert_eq!(int_after(br#"{"code":-1001}"#, &code), Some(-1001));
        assert_eq!(int_after(br#"{"data":{"t":1763}}"#, &t), Some(1763));
        assert_eq!(int_after(br#"{"x":1}"#, &t), None);
    }
}
