//! `roomcast-loadtest`: drives a roomcast-compatible server (roomcast itself, or the Bun
//! reference in `peers/`) with real WebSocket clients and HTTP API calls, and reports what
//! it measured. See `loadtest/README.md`.
//!
//! Process model: the parent spawns `--procs` worker processes (this binary with
//! `--worker I`), each holding its share of the clients in one mio loop (one process holds
//! at most ~19,900 sockets here), and drives the HTTP side itself. Workers report JSON lines
//! on stdout; the parent sends them commands on stdin. Every loop is bounded by
//! `--time-limit`.

mod chaos;
mod churn;
mod hooks;
mod recover;
mod report;
mod sender;
mod stream;
mod worker;
mod workers;

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use workers::Workers;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Open --clients connections: rate, handshake latency, failures, RSS per connection.
    Connect,
    /// Clients bound round-robin to --groups groups; --messages send_to_group calls.
    Fanout,
    /// One group holding every client (bound with notify false); --messages sends to it.
    Broadcast,
    /// --messages send_to_client calls to random clients.
    Unicast,
    /// Clients in users of --tabs connections each (bound with userId `u<k>`); --messages
    /// send_to_user calls to random users (with --by-ids: send_to_clients to the same
    /// clientIds, the reference).
    Users,
    /// Every client binds into one group with notices on: time until all C(C+1)/2 arrive.
    Joinstorm,
    /// A fanout while --churners clients per worker keep connecting, binding (notices on)
    /// and leaving: nothing lost for the clients that stay, each notice exactly once.
    Churn,
    /// Clients with session recovery (recover=1) keep being dropped (reset) and resuming while
    /// a paced fanout runs (one sender, so every group has one order): every client must get
    /// every message exactly once and in order.
    Recover,
    /// Every client (recover=1) is dropped at once and resumes while --messages are sent:
    /// time until all recovered, and nothing lost.
    Reconnect,
    /// A rolling restart under load: recovering clients (recover=1) over the nodes, a paced
    /// fanout through them (one sender; a send whose node goes down is sent again through the
    /// next), and --chaos-cmd restarting the nodes in turn (loadtest/rolling.sh). A client
    /// told 1012 resumes through the next node. Judged: every message once and in order at
    /// every member (lost, gaps, duplicates), every resume recovered, no 1001/1002 (flaps).
    Rolling,
}

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(name = "roomcast-loadtest", about = "Load tester for roomcast and compatible servers")]
pub struct Cli {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port(s), comma-separated: clients and API calls go round robin over them.
    #[arg(long, default_value = "7800", value_delimiter = ',')]
    pub port: Vec<u16>,
    /// systemId to use (registered if needed).
    #[arg(long, default_value = "loadtest")]
    pub system: String,
    /// WebSocket clients in total.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Groups (fanout).
    #[arg(long, default_value_t = 10)]
    pub groups: usize,
    /// API send calls.
    #[arg(long, default_value_t = 1000)]
    pub messages: u64,
    /// Concurrent keep-alive HTTP connections for API calls.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Extra bytes of padding in each message's data: text of common words, as compressible
    /// as chat (about 2-3x with deflate), not a run of one letter.
    #[arg(long, default_value_t = 0)]
    pub payload: usize,
    /// New connections per second (all workers together).
    #[arg(long, default_value_t = 20_000)]
    pub connect_rate: u64,
    /// At most this many connections per worker between connect and their connect frame (0: no
    /// bound, --connect-rate alone paces): a closed loop that measures the server, not its
    /// listen backlog.
    #[arg(long, default_value_t = 0)]
    pub connect_inflight: usize,
    /// API sends per second (0: as fast as the server answers).
    #[arg(long, default_value_t = 0.0)]
    pub send_rate: f64,
    /// HS256 secret to mint an operator token for the API.
    #[arg(long)]
    pub jwt_secret: Option<String>,
    /// Hard limit on the whole run, seconds.
    #[arg(long, default_value_t = 120)]
    pub time_limit: u64,
    /// Seconds to wait for deliveries after the last send.
    #[arg(long, default_value_t = 20)]
    pub drain_secs: u64,
    /// Seconds to hold the clients connected (and bound) before sending: an idle phase for
    /// measuring what connections cost at rest (heartbeats, presence). The phases are printed
    /// on stderr as `phase NAME UNIX_NANOS` (start: before the first connection; hold, send,
    /// sent).
    #[arg(long, default_value_t = 0)]
    pub hold_secs: u64,
    /// Write the JSON result here.
    #[arg(long)]
    pub json: Option<String>,
    /// Write an HTML report (charts) here.
    #[arg(long)]
    pub html: Option<String>,
    /// Server PIDs to sample (RSS and CPU from /proc), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub pid: Vec<u32>,
    /// Worker processes holding the clients.
    #[arg(long, default_value_t = 1)]
    pub procs: usize,
    /// Spread client source addresses over 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 8)]
    pub src_ips: usize,
    /// Users: connections per user (0: bound without a userId, to measure what a user costs).
    #[arg(long, default_value_t = 3)]
    pub tabs: usize,
    /// Users: send to each user's clientIds with send_to_clients instead of send_to_user.
    #[arg(long)]
    pub by_ids: bool,
    /// Churn: churning client threads per worker process.
    #[arg(long, default_value_t = 4)]
    pub churners: usize,
    /// Clients opt in to session recovery (recover=1) in any scenario (what it costs).
    #[arg(long)]
    pub recover: bool,
    /// Speak TLS (https and wss) to the server (any certificate is accepted).
    #[arg(long)]
    pub tls: bool,
    /// Clients offer permessage-deflate (start the server with --compression); what comes
    /// compressed is inflated, and bytes on the wire are counted either way.
    #[arg(long)]
    pub compression: bool,
    /// Recover: clients dropped (and resumed) per second, all workers together.
    #[arg(long, default_value_t = 50.0)]
    pub drop_rate: f64,
    /// Churn: a command run as `CMD K` at the K-th --chaos-at time (it breaks something and
    /// returns once the cluster is whole again); see loadtest/chaos.sh.
    #[arg(long)]
    pub chaos_cmd: Option<String>,
    /// Seconds after sending began at which the chaos steps run, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub chaos_at: Vec<f64>,
    /// Chaos soak: receive the nodes' webhooks on 127.0.0.1:PORT (start them with
    /// `--webhook-url http://127.0.0.1:PORT/`) and hold them to exactly once per transition;
    /// stayers and churn sessions then bind as users (multi-tab users of --tabs, single-tab
    /// users, and churn sessions joining a multi-tab user).
    #[arg(long)]
    pub webhook_port: Option<u16>,
    /// Ports the paced sender calls (default: --port); e.g. not a node the chaos kills.
    #[arg(long, value_delimiter = ',')]
    pub api_port: Vec<u16>,
    /// Label for this run in the outputs (e.g. roomcast, bun).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Internal: run as worker I.
    #[arg(long, hide = true)]
    pub worker: Option<usize>,
}

/// Resolved options shared by parent and workers.
#[derive(Clone, Debug)]
pub struct Opts {
    pub scenario: Scenario,
    pub ports: Vec<SocketAddr>,
    pub system: String,
    pub clients: usize,
    pub concurrency: usize,
    pub connect_rate: u64,
    pub connect_inflight: usize,
    pub time_limit: u64,
    pub procs: usize,
    pub src_ips: usize,
    pub token: Option<String>,
    pub report_ids: bool,
    pub groups: usize,
    /// Churning threads per worker (churn scenario only, else 0).
    pub churners: usize,
    /// Clients opt in to session recovery (recover, reconnect).
    pub recover: bool,
    /// Clients offer permessage-deflate.
    pub compression: bool,
    /// TLS to the server.
    pub tls: bool,
    /// Chaos soak: messages carry their index, stayers record what they got.
    pub chaos: bool,
    /// Where the sender's API calls go.
    pub api_ports: Vec<SocketAddr>,
    /// Chaos soak with webhooks: the stayers' tab count (`churn::stayer_user`); 0: no users.
    pub churn_tabs: usize,
}

/// `n` bytes of chat-like text: common words picked by a seeded generator (the same text on
/// every run).
fn chat_text(n: usize) -> String {
    const WORDS: [&str; 40] = [
        "the", "room", "is", "open", "and", "we", "are", "playing", "next", "round", "score", "team", "red", "blue",
        "wins", "again", "hello", "everyone", "who", "ready", "quiz", "question", "answer", "seven", "vote", "for",
        "best", "idea", "today", "let's", "go", "back", "later", "nice", "move", "thanks", "see", "you", "at", "nine",
    ];
    let mut rng = fastrand::Rng::with_seed(42);
    let mut s = String::with_capacity(n + 16);
    while s.len() < n {
        s.push_str(WORDS[rng.usize(..WORDS.len())]);
        s.push(if rng.u8(..) < 24 { '.' } else { ' ' });
    }
    s.truncate(n);
    s
}

/// Nanoseconds since the Unix epoch (the same clock in every process on this machine).
pub fn now_nanos() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn main() {
    let cli = Cli::parse();
    let resolve =
        |p: &u16| (cli.host.as_str(), *p).to_socket_addrs().ok().and_then(|mut a| a.next()).expect("resolvable --host");
    let ports: Vec<SocketAddr> = cli.port.iter().map(resolve).collect();
    let api_ports: Vec<SocketAddr> =
        if cli.api_port.is_empty() { ports.clone() } else { cli.api_port.iter().map(resolve).collect() };
    let token =
        cli.jwt_secret.as_ref().map(|s| roomcast::auth::mint_hs256(s.as_bytes(), None, 24 * 3600).expect("token"));
    let opts = Opts {
        scenario: cli.scenario,
        ports,
        system: cli.system.clone(),
        clients: cli.clients,
        concurrency: cli.concurrency,
        connect_rate: cli.connect_rate,
        connect_inflight: cli.connect_inflight,
        time_limit: cli.time_limit,
        procs: cli.procs.max(1),
        src_ips: cli.src_ips.clamp(1, 250),
        token,
        report_ids: matches!(
            cli.scenario,
            Scenario::Unicast | Scenario::Joinstorm | Scenario::Users | Scenario::Rolling
        ),
        groups: cli.groups.max(1),
        churners: if matches!(cli.scenario, Scenario::Churn | Scenario::Rolling) { cli.churners } else { 0 },
        recover: cli.recover || matches!(cli.scenario, Scenario::Recover | Scenario::Reconnect | Scenario::Rolling),
        compression: cli.compression,
        tls: cli.tls,
        chaos: cli.chaos_cmd.is_some() && cli.scenario == Scenario::Churn,
        api_ports,
        churn_tabs: if cli.webhook_port.is_some() { cli.tabs } else { 0 },
    };
    if cli.webhook_port.is_some() && !opts.chaos {
        eprintln!("--webhook-port: only for the chaos soak (churn --chaos-cmd)");
        std::process::exit(2);
    }
    if cli.webhook_port.is_some() && (cli.tabs < 2 || cli.tabs % opts.ports.len() != 0) {
        // A multi-tab user must keep a tab when one node is killed (churn tabs keep joining
        // it, and only an always-online user has no transition to judge).
        eprintln!("--webhook-port: --tabs must be a multiple of the node count (--port), at least 2");
        std::process::exit(2);
    }
    if cli.chaos_cmd.is_some() && !matches!(cli.scenario, Scenario::Churn | Scenario::Rolling) {
        eprintln!("--chaos-cmd: only for the churn and rolling scenarios");
        std::process::exit(2);
    }
    if cli.scenario == Scenario::Rolling && cli.chaos_cmd.is_none() {
        eprintln!("rolling: --chaos-cmd restarts the nodes (loadtest/rolling.sh runs it)");
        std::process::exit(2);
    }
    sender::RETRY.store(cli.scenario == Scenario::Rolling, std::sync::atomic::Ordering::Relaxed);
    stream::TLS.store(cli.tls, std::sync::atomic::Ordering::Relaxed);
    if cli.tls && cli.scenario == Scenario::Churn {
        eprintln!("--tls: not for the churn scenario (its churning clients are plain)");
        std::process::exit(2);
    }
    if let Some(i) = cli.worker {
        if let Err(e) = worker::run(&opts, i) {
            eprintln!("worker {i}: {e}");
            std::process::exit(1);
        }
        return;
    }
    match parent(&cli, &opts) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("roomcast-loadtest: {e}");
            std::process::exit(1);
        }
    }
}

/// Merges `[[value,count],..]` histograms.
fn merge(into: &mut Histogram<u64>, v: &Value) {
    for pair in v.as_array().into_iter().flatten() {
        let (val, n) = (pair[0].as_u64().unwrap_or(1), pair[1].as_u64().unwrap_or(0));
        let _ = into.record_n(val.max(1), n);
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("histogram bounds")
}

fn parent(cli: &Cli, opts: &Opts) -> Result<i32, String> {
    let deadline = Instant::now() + Duration::from_secs(cli.time_limit);
    let t0 = Instant::now();
    eprintln!("phase start {}", now_nanos());
    // Register the system (409: it already exists, fine).
    let reg = sender::post(
        "/api/register",
        &opts.system,
        opts.token.as_deref(),
        &json!({"systemId": opts.system}).to_string(),
    );
    sender::run(
        &opts.ports[..1],
        1,
        1,
        None,
        deadline,
        |_| reg.clone(),
        |_, st, body| {
            if st != 200 && st != 409 {
                eprintln!("register: HTTP {st} {}", String::from_utf8_lossy(body));
            }
        },
    )
    .map_err(|e| format!("cannot reach the server at {:?}: {e}", opts.ports))?;
    let hooks = match cli.webhook_port {
        Some(p) => Some(hooks::listen(p).map_err(|e| format!("--webhook-port {p}: {e}"))?),
        None => None,
    };
    let mem_before = report::sample(&cli.pid);
    let mut w = Workers::spawn(opts.procs).map_err(|e| format!("spawn workers: {e}"))?;
    w.wait_for(opts.procs, deadline, "connect", |s| s.ready.len())?;
    let cpu_connected = report::sample(&cli.pid);
    std::thread::sleep(Duration::from_millis(300));
    let mem_after = report::sample(&cli.pid);
    let ready = w.state.lock().expect("lock").ready.clone();
    let connected: u64 = ready.iter().map(|r| r["connected"].as_u64().unwrap_or(0)).sum();
    let failed: u64 = ready.iter().map(|r| r["failed"].as_u64().unwrap_or(0)).sum();
    let connect_secs = ready.iter().map(|r| r["connect_secs"].as_f64().unwrap_or(0.0)).fold(0.0, f64::max);
    let mut hs = hist();
    ready.iter().for_each(|r| merge(&mut hs, &r["handshake"]));
    let mut out = report::Outcome::new(cli, opts);
    out.set("connected", json!(connected));
    out.set("connect_failed", json!(failed));
    out.set("connect_rate_per_s", json!(connected as f64 / connect_secs.max(1e-9)));
    out.set("all_connected_secs", json!(connect_secs));
    out.set("handshake_p50_ms", json!(hs.value_at_quantile(0.5) as f64 / 1e3));
    out.set("handshake_p99_ms", json!(hs.value_at_quantile(0.99) as f64 / 1e3));
    if let (Some(b), Some(a)) = (&mem_before, &cpu_connected) {
        // Accept, handshake and connect frame, all connections together (the server's own
        // idle work in that time included).
        let secs = match (b.cpu_ns, a.cpu_ns) {
            (b, a) if b > 0 && a >= b => (a - b) as f64 / 1e9,
            _ => a.cpu_secs - b.cpu_secs,
        };
        out.set("server_cpu_us_per_connection", json!(secs * 1e6 / connected.max(1) as f64));
    }
    if let (Some(b), Some(a)) = (&mem_before, &mem_after) {
        let per = (a.rss_kib.saturating_sub(b.rss_kib)) as f64 * 1024.0 / connected.max(1) as f64;
        out.set("server_rss_kib", json!(a.rss_kib));
        out.set("rss_per_connection_bytes", json!(per.round()));
    }
    let code = match cli.scenario {
        Scenario::Connect => 0,
        Scenario::Fanout | Scenario::Broadcast => run_sends(cli, opts, &mut w, &mut out, deadline, &ready, None)?,
        Scenario::Unicast | Scenario::Users | Scenario::Churn => {
            run_sends(cli, opts, &mut w, &mut out, deadline, &ready, hooks.as_ref())?
        }
        Scenario::Recover | Scenario::Reconnect | Scenario::Rolling => {
            run_sends(cli, opts, &mut w, &mut out, deadline, &ready, None)?
        }
        Scenario::Joinstorm => run_joinstorm(cli, opts, &mut w, &mut out, deadline, &ready)?,
    };
    out.set("wall_secs", json!(t0.elapsed().as_secs_f64()));
    let series = {
        let mut s = w.state.lock().expect("lock");
        s.done = true;
        s.series.clone()
    };
    drop(w);
    out.finish(&series)?;
    Ok(code)
}

/// fanout / broadcast / unicast / users / churn / recover: bind (if needed), send, wait for
/// deliveries, tally (the chaos soak: `finish_chaos`, with the webhooks `hooks` took).
fn run_sends(
    cli: &Cli,
    opts: &Opts,
    w: &mut Workers,
    out: &mut report::Outcome,
    deadline: Instant,
    ready: &[Value],
    hooks: Option<&hooks::Hooks>,
) -> Result<i32, String> {
    let groups = if cli.scenario == Scenario::Broadcast { 1 } else { cli.groups.max(1) };
    let procs = opts.procs;
    let range = |i: usize| (opts.clients * i / procs, opts.clients * (i + 1) / procs);
    let mut expected = vec![0u64; procs];
    // unicast targets: (worker, clientId); users: each user's (worker, clientId)s
    let mut targets: Vec<(usize, String)> = Vec::new();
    // (--tabs 0: connections without a user, to measure what a user costs.)
    let tabs = cli.tabs;
    let mut users: Vec<Vec<(usize, String)>> = Vec::new();
    if cli.scenario == Scenario::Users {
        users = vec![Vec::new(); if tabs == 0 { 0 } else { opts.clients.div_ceil(tabs) }];
        for r in ready.iter().filter(|_| tabs > 0) {
            let wk = r["worker"].as_u64().unwrap_or(0) as usize;
            let ids = r["ids"].as_array().into_iter().flatten();
            for (id, g) in ids.zip(r["globals"].as_array().into_iter().flatten()) {
                let g = g.as_u64().unwrap_or(0) as usize;
                users[g / tabs].push((wk, id.as_str().unwrap_or("").to_string()));
            }
        }
        let before = report::sample(&cli.pid);
        w.tell_all(&format!("bind {groups} false {tabs}"));
        w.wait_for(procs, deadline, "bind", |s| s.bound.len())?;
        if let (Some(b), Some(a)) = (before, report::sample(&cli.pid)) {
            let per = a.rss_kib.saturating_sub(b.rss_kib) as f64 * 1024.0 / opts.clients.max(1) as f64;
            out.set("bind_rss_per_connection_bytes", json!(per.round()));
        }
    } else if cli.scenario == Scenario::Unicast {
        for r in ready {
            let wk = r["worker"].as_u64().unwrap_or(0) as usize;
            for id in r["ids"].as_array().into_iter().flatten() {
                targets.push((wk, id.as_str().unwrap_or("").to_string()));
            }
        }
        if targets.is_empty() {
            return Err("no client connected".into());
        }
    } else {
        let users = if opts.churn_tabs > 0 { format!(" {} mixed", opts.churn_tabs) } else { String::new() };
        let bind_start = Instant::now();
        w.tell_all(&format!("bind {groups} false{users}"));
        w.wait_for(procs, deadline, "bind", |s| s.bound.len())?;
        let (bound, unbound) = w
            .state
            .lock()
            .expect("lock")
            .bound
            .iter()
            .fold((0, 0), |(b, u), v| (b + v["ok"].as_u64().unwrap_or(0), u + v["errors"].as_u64().unwrap_or(0)));
        out.set("binds_per_s", json!(bound as f64 / bind_start.elapsed().as_secs_f64()));
        // A client left unbound gets none of its group's messages: they count as lost, and
        // this says why.
        out.set("bind_failed", json!(unbound));
        if unbound > 0 {
            eprintln!("note: {unbound} clients were not bound (refused, failed or past the deadline); their messages count as lost");
        }
        let per_group = |g: usize| cli.messages / groups as u64 + u64::from((g as u64) < cli.messages % groups as u64);
        for (i, e) in expected.iter_mut().enumerate() {
            let (lo, hi) = range(i);
            *e = (lo..hi).map(|c| per_group(c % groups)).sum();
        }
        // Clients that failed to connect cannot receive: their messages stay in "expected"
        // and so count as lost (a failed connection is a failure, not an excuse).
        for r in ready {
            let wk = r["worker"].as_u64().unwrap_or(0) as usize;
            if r["failed"].as_u64().unwrap_or(0) > 0 {
                eprintln!("note: worker {wk} has {} failed connections; their messages count as lost", r["failed"]);
            }
        }
    }
    let pad = chat_text(cli.payload);
    let mut rng = fastrand::Rng::with_seed(7);
    let choices = if cli.scenario == Scenario::Users { users.len() } else { targets.len() };
    let picks: Vec<usize> = (0..cli.messages).map(|_| rng.usize(..choices.max(1))).collect();
    for &p in &picks {
        if let Some((wk, _)) = targets.get(p) {
            expected[*wk] += 1;
        }
        for (wk, _) in users.get(p).into_iter().flatten() {
            expected[*wk] += 1;
        }
    }
    let by_ids = cli.by_ids;
    if cli.hold_secs > 0 {
        eprintln!("phase hold {}", now_nanos());
        std::thread::sleep(Duration::from_secs(cli.hold_secs).min(deadline.saturating_duration_since(Instant::now())));
    }
    if matches!(cli.scenario, Scenario::Churn | Scenario::Rolling) {
        w.tell_all("churn start");
        std::thread::sleep(Duration::from_millis(500));
    }
    let drop_start = now_nanos();
    match cli.scenario {
        Scenario::Recover => w.tell_all(&format!("drops start {}", cli.drop_rate / procs as f64)),
        Scenario::Reconnect => w.tell_all("drop all"),
        _ => {}
    }
    // One sender keeps one order per group (the recovering clients check every sequence
    // number); otherwise --concurrency keep-alive connections.
    let sequenced = matches!(cli.scenario, Scenario::Recover | Scenario::Reconnect | Scenario::Rolling);
    let concurrency = if sequenced { 1 } else { cli.concurrency };
    let cpu_before = report::sample(&cli.pid);
    let send_start = now_nanos();
    eprintln!("phase send {send_start}");
    let rate = (cli.send_rate > 0.0).then_some(cli.send_rate);
    let (system, token) = (opts.system.clone(), opts.token.clone());
    let scenario = cli.scenario;
    let mut api_errors = 0u64;
    w.set_phase("send");
    let sent = w.sent.clone();
    let windows = chaos::Windows::default();
    let chaos_thread =
        cli.chaos_cmd.clone().map(|cmd| chaos::start(cmd, cli.chaos_at.clone(), Instant::now(), windows.clone()));
    let calls = std::cell::RefCell::new(vec![(0u64, 0u64, 0u16); if opts.chaos { cli.messages as usize } else { 0 }]);
    let stats = sender::run(
        &opts.api_ports,
        concurrency,
        cli.messages,
        rate,
        deadline,
        |i| {
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let data = if sequenced {
                format!(r#"{{"t":{},"s":{}}}"#, now_nanos(), i / groups as u64)
            } else if let Some(c) = calls.borrow_mut().get_mut(i as usize) {
                c.0 = now_nanos();
                format!(r#"{{"t":{},"i":{i}}}"#, c.0)
            } else if pad.is_empty() {
                format!(r#"{{"t":{}}}"#, now_nanos())
            } else {
                format!(r#"{{"t":{},"p":"{pad}"}}"#, now_nanos())
            };
            let (path, body) = match scenario {
                Scenario::Unicast => {
                    let id = &targets[picks[i as usize]].1;
                    ("/api/send_to_client", format!(r#"{{"clientId":"{id}","code":200,"data":{data}}}"#))
                }
                Scenario::Users if by_ids => {
                    let ids: Vec<&str> = users[picks[i as usize]].iter().map(|(_, id)| id.as_str()).collect();
                    let ids = serde_json::to_string(&ids).unwrap_or_default();
                    ("/api/send_to_clients", format!(r#"{{"clientIds":{ids},"code":200,"data":{data}}}"#))
                }
                Scenario::Users => {
                    let k = picks[i as usize];
                    ("/api/send_to_user", format!(r#"{{"userId":"u{k}","code":200,"data":{data}}}"#))
                }
                _ => (
                    "/api/send_to_group",
                    format!(r#"{{"groupName":"g{}","code":200,"data":{data}}}"#, i % groups as u64),
                ),
            };
            sender::post(path, &system, token.as_deref(), &body)
        },
        |i, st, body| {
            if let Some(c) = calls.borrow_mut().get_mut(i as usize) {
                (c.1, c.2) = (now_nanos(), st);
            }
            if st != 200 {
                api_errors += 1;
                if api_errors <= 3 {
                    eprintln!("API error: HTTP {st} {}", String::from_utf8_lossy(body));
                }
            }
        },
    )
    .map_err(|e| format!("sending: {e}"))?;
    eprintln!("phase sent {}", now_nanos());
    if let Some(t) = chaos_thread {
        if !t.is_finished() {
            eprintln!("note: sending ended before the last chaos step; waiting for it");
        }
        let _ = t.join();
    }
    if matches!(cli.scenario, Scenario::Churn | Scenario::Rolling) {
        w.tell_all("churn stop");
        w.wait_for(procs, deadline, "churn stop", |s| s.churned.len())?;
        std::thread::sleep(Duration::from_millis(1500)); // let the last 1002s arrive
    }
    if opts.chaos {
        let calls = calls.into_inner();
        let (windows, hits) = windows.lock().expect("windows").clone();
        out.set("chaos_sends_refused_secs", json!(chaos::refused_for(&calls, &hits, &windows)));
        return chaos::finish(cli, opts, w, out, deadline, &calls, &windows, &stats, hooks);
    }
    if sequenced && cli.scenario != Scenario::Rolling {
        if cli.scenario == Scenario::Recover {
            w.tell_all("drops stop");
        }
        w.wait_for(procs, deadline, "resumes", |s| s.resumed.len())?;
        let resumed = w.state.lock().expect("lock").resumed.clone();
        let sum = |k: &str| resumed.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
        let last = resumed.iter().map(|r| r["last_resume"].as_u64().unwrap_or(0)).max().unwrap_or(0);
        out.set("drops", json!(sum("drops")));
        out.set("resumed", json!(sum("resumed")));
        out.set("resume_failed", json!(sum("resume_failed")));
        if cli.scenario == Scenario::Reconnect {
            out.set("all_resumed_secs", json!(last.saturating_sub(drop_start) as f64 / 1e9));
        }
        let mut rl = hist();
        resumed.iter().for_each(|r| merge(&mut rl, &r["resume_latency"]));
        out.set("resume_p50_ms", json!(rl.value_at_quantile(0.5) as f64 / 1e3));
        out.set("resume_p99_ms", json!(rl.value_at_quantile(0.99) as f64 / 1e3));
    }
    for (i, e) in expected.iter().enumerate() {
        w.tell(i, &format!("expect 200 {e} {}", cli.drain_secs));
    }
    w.wait_for(procs, deadline, "deliver", |s| s.results.len())?;
    let cpu_after = report::sample(&cli.pid);
    let results = w.state.lock().expect("lock").results.clone();
    let delivered: u64 = results.iter().map(|r| r["codes"]["200"].as_u64().unwrap_or(0)).sum();
    let last_rx = results.iter().map(|r| r["last_rx"].as_u64().unwrap_or(0)).max().unwrap_or(0);
    let window = (last_rx.saturating_sub(send_start)) as f64 / 1e9;
    let mut lat = hist();
    results.iter().for_each(|r| merge(&mut lat, &r["latency"]));
    let total_expected: u64 = expected.iter().sum();
    let lost = total_expected.saturating_sub(delivered);
    out.set("api_calls", json!(stats.sent));
    out.set("api_errors", json!(stats.errors));
    out.set("api_req_per_s", json!(stats.sent as f64 / stats.elapsed.as_secs_f64().max(1e-9)));
    out.set("api_p99_ms", json!(stats.latency.value_at_quantile(0.99) as f64 / 1e3));
    out.set("expected", json!(total_expected));
    out.set("delivered", json!(delivered));
    out.set("lost", json!(lost));
    out.set("delivered_per_s", json!(delivered as f64 / window.max(1e-9)));
    out.set("latency_p50_ms", json!(lat.value_at_quantile(0.5) as f64 / 1e3));
    out.set("latency_p99_ms", json!(lat.value_at_quantile(0.99) as f64 / 1e3));
    out.set("latency_p999_ms", json!(lat.value_at_quantile(0.999) as f64 / 1e3));
    out.set("latency_max_ms", json!(lat.max() as f64 / 1e3));
    let mut notice_problems = 0;
    if matches!(cli.scenario, Scenario::Churn | Scenario::Rolling) {
        notice_problems = churn::check(opts, groups, &w.state.lock().expect("lock").churned, &results, out);
    }
    if sequenced {
        let sum = |k: &str| results.iter().map(|r| r[k].as_u64().unwrap_or(0)).sum::<u64>();
        out.set("sequence_gaps", json!(sum("seq_gaps")));
        out.set("duplicated_or_reordered", json!(sum("seq_dups")));
        let failed =
            w.state.lock().expect("lock").resumed.iter().map(|r| r["resume_failed"].as_u64().unwrap_or(0)).sum::<u64>();
        notice_problems += sum("seq_gaps") + sum("seq_dups") + failed;
        if cli.scenario == Scenario::Rolling {
            // The recovering clients never leave nor join again: any notice about one of them
            // is a presence flap (the churners' own are judged above, exactly once).
            let stayers: std::collections::HashSet<&str> = ready
                .iter()
                .flat_map(|r| r["ids"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            let got = churn::notice_counts(&results);
            let flaps: u64 = got.iter().filter(|(id, _)| stayers.contains(id.as_str())).map(|(_, n)| n[0] + n[1]).sum();
            out.set("stayers", json!(stayers.len()));
            out.set("restarts_1012", json!(sum("restarts")));
            out.set("resumed", json!(sum("resumed")));
            out.set("resume_failed", json!(sum("resume_failed")));
            out.set("presence_flaps", json!(flaps));
            notice_problems += flaps + sum("resume_failed");
        }
    }
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        let cpu = a.cpu_secs - b.cpu_secs;
        out.set("server_cpu_secs", json!(cpu));
        out.set("server_cpu_us_per_frame", json!(cpu * 1e6 / delivered.max(1) as f64));
    }
    let wire: u64 = results.iter().map(|r| r["wire_bytes"].as_u64().unwrap_or(0)).sum();
    out.set("wire_bytes_per_frame", json!(wire as f64 / delivered.max(1) as f64));
    let compressed: u64 = results.iter().map(|r| r["compressed"].as_u64().unwrap_or(0)).sum();
    out.set("compressed_frames", json!(compressed));
    Ok(i32::from(lost > 0 || stats.errors > 0 || notice_problems > 0))
}

/// Every client binds into one group with notices on; all C(C+1)/2 notices must arrive.
fn run_joinstorm(
    cli: &Cli,
    opts: &Opts,
    w: &mut Workers,
    out: &mut report::Outcome,
    deadline: Instant,
    ready: &[Value],
) -> Result<i32, String> {
    let ids: Vec<String> = ready
        .iter()
        .flat_map(|r| r["ids"].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let c = ids.len() as u64;
    let start = now_nanos();
    let cpu_before = report::sample(&cli.pid);
    let (system, token) = (opts.system.clone(), opts.token.clone());
    w.set_phase("bind");
    let sent = w.sent.clone();
    let stats = sender::run(
        &opts.ports,
        cli.concurrency,
        c,
        None,
        deadline,
        |i| {
            sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let body =
                json!({"clientId": ids[i as usize], "groupName": "storm", "userId": format!("u{i}")}).to_string();
            sender::post("/api/bind_to_group", &system, token.as_deref(), &body)
        },
        |_, _, _| {},
    )
    .map_err(|e| format!("binding: {e}"))?;
    w.tell_all(&format!("expect 1001 0 {}", cli.drain_secs));
    w.wait_for(opts.procs, deadline, "notices", |s| s.results.len())?;
    let cpu_after = report::sample(&cli.pid);
    let results = w.state.lock().expect("lock").results.clone();
    let got: u64 = results.iter().map(|r| r["codes"]["1001"].as_u64().unwrap_or(0)).sum();
    let last = results.iter().map(|r| r["last_rx"].as_u64().unwrap_or(0)).max().unwrap_or(0);
    let secs = (last.saturating_sub(start)) as f64 / 1e9;
    let expected = c * (c + 1) / 2;
    out.set("binds", json!(stats.sent));
    out.set("api_errors", json!(stats.errors));
    out.set("expected", json!(expected));
    out.set("delivered", json!(got));
    out.set("lost", json!(expected.saturating_sub(got)));
    out.set("storm_secs", json!(secs));
    out.set("delivered_per_s", json!(got as f64 / secs.max(1e-9)));
    if let (Some(b), Some(a)) = (cpu_before, cpu_after) {
        out.set("server_cpu_secs", json!(a.cpu_secs - b.cpu_secs));
    }
    Ok(i32::from(got < expected || stats.errors > 0))
}
