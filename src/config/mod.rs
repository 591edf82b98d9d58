//! Configuration: command line > `ROOMCAST_<KEY>` environment > `--config FILE` (TOML, same
//! keys in snake_case) > built-in defaults.
//!
//! Each setting is declared once, as one row of the table below: its key, type, default,
//! environment variable and help text. The same parser reads it from a flag, a variable, the
//! file or the default (`setting.rs`). [`Config`] is the resolved, checked result.

mod setting;

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use setting::{default_suffix, resolved_ty, resolved_value, settings};
pub use setting::{NodeId, Setting};

settings! {
    listen: SocketAddr = "127.0.0.1:7800", "ROOMCAST_LISTEN",
        "Listen address (port 0 picks one; printed on stdout)";
    shards: usize = (available_cores(), "available cores"), "ROOMCAST_SHARDS",
        "Event-loop threads, each with its own SO_REUSEPORT listener (1..=256)";
    #[arg(hide_env_values = true)]
    jwt_secret: String = none, "ROOMCAST_JWT_SECRET",
        "HS256 secret for API tokens";
    jwt_public_key: PathBuf = none, "ROOMCAST_JWT_PUBLIC_KEY",
        "PEM public key file for RS256/ES256 API tokens";
    jwt_alg: String = "RS256", "ROOMCAST_JWT_ALG",
        "Algorithm of --jwt-public-key: RS256 or ES256";
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    insecure_no_auth: bool = "false", "ROOMCAST_INSECURE_NO_AUTH",
        "Allow an open API (no JWT key) on a non-loopback address";
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    ws_auth: bool = "false", "ROOMCAST_WS_AUTH",
        "Require a connect token (?token=, scope \"connect\") on WebSocket connects; API tokens are refused there";
    echo_path: String = none, "ROOMCAST_ECHO_PATH",
        "Serve an echo WebSocket at this path, for conformance tests";
    tls_cert: PathBuf = none, "ROOMCAST_TLS_CERT",
        "PEM certificate chain: with tls_key, the listener serves HTTPS and WSS only (reloaded on SIGHUP)";
    tls_key: PathBuf = none, "ROOMCAST_TLS_KEY",
        "PEM private key of tls_cert";
    tls_handshake_timeout: Duration = "10s", "ROOMCAST_TLS_HANDSHAKE_TIMEOUT",
        "A TLS handshake not complete within this is closed";
    admin_listen: SocketAddr = none, "ROOMCAST_ADMIN_LISTEN",
        "Internal address serving /metrics and /health without a token (off by default)";
    allowed_origins: String = none, "ROOMCAST_ALLOWED_ORIGINS",
        "Browser origins allowed to open a WebSocket, comma-separated: https://app.example.com, *.example.com (others: 403; no Origin header: allowed)";
    subprotocols: String = none, "ROOMCAST_SUBPROTOCOLS",
        "WebSocket subprotocols to accept, comma-separated (e.g. json): the first a client offers (Sec-WebSocket-Protocol) that is listed is chosen; browsers fail a connection that offered some and got none";
    max_connections_per_ip: usize = "0", "ROOMCAST_MAX_CONNECTIONS_PER_IP",
        "Open connections one source address may hold, sessions kept for recovery included (0: no bound); beyond: 429 and close";
    handshakes_per_ip_per_second: usize = "0", "ROOMCAST_HANDSHAKES_PER_IP_PER_SECOND",
        "WebSocket handshakes one source address may make per second (0: no bound); beyond: 429 and close";
    per_ip_ipv6_prefix: usize = "64", "ROOMCAST_PER_IP_IPV6_PREFIX",
        "The per-address bounds count an IPv6 client by its network of this many bits (1..=128)";
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    compression: bool = "false", "ROOMCAST_COMPRESSION",
        "Offer permessage-deflate to clients that ask (each message compressed once, shared by its compressing recipients)";
    compression_min_size: usize = "256", "ROOMCAST_COMPRESSION_MIN_SIZE",
        "Messages smaller than this (bytes) go out uncompressed";
    compression_level: usize = "1", "ROOMCAST_COMPRESSION_LEVEL",
        "Deflate level, 1 (fastest) to 9 (smallest)";
    max_connections: usize = (open_file_limit().saturating_sub(64).max(1), "open-file limit - 64"),
        "ROOMCAST_MAX_CONNECTIONS", "Max open TCP connections; beyond: 503 and close";
    max_message_size: usize = "8192", "ROOMCAST_MAX_MESSAGE_SIZE",
        "Max incoming WebSocket message bytes on /ws (close 1009 beyond; upstream's limit)";
    echo_max_message_size: usize = "16777216", "ROOMCAST_ECHO_MAX_MESSAGE_SIZE",
        "Max incoming message bytes on the echo path";
    echo_max_inflated_size: usize = "1048576", "ROOMCAST_ECHO_MAX_INFLATED_SIZE",
        "Max bytes a compressed message on the echo path inflates to (close 1009 beyond): bounds the work one small compressed message can ask for";
    max_header_size: usize = "8192", "ROOMCAST_MAX_HEADER_SIZE",
        "Max HTTP request head bytes (431 beyond)";
    max_body_size: usize = "1048576", "ROOMCAST_MAX_BODY_SIZE",
        "Max HTTP request body bytes (413 beyond)";
    request_timeout: Duration = "10s", "ROOMCAST_REQUEST_TIMEOUT",
        "An HTTP request head, and then its body, must arrive within this from their first byte (408 and close)";
    ping_interval: Duration = "25s", "ROOMCAST_PING_INTERVAL",
        "Heartbeat ping period (upstream's)";
    idle_timeout: Duration = "60s", "ROOMCAST_IDLE_TIMEOUT",
        "Close connections that sent nothing (not even a pong) for this long";
    output_hard_limit: usize = "1048576", "ROOMCAST_OUTPUT_HARD_LIMIT",
        "Per-client output memory hard limit in bytes: beyond, closed 1008 at once";
    output_soft_limit: usize = "262144", "ROOMCAST_OUTPUT_SOFT_LIMIT",
        "Per-client output memory soft limit in bytes";
    output_soft_seconds: Duration = "10s", "ROOMCAST_OUTPUT_SOFT_SECONDS",
        "How long the soft limit may be exceeded before a 1008 close";
    hub_queue: usize = "65536", "ROOMCAST_HUB_QUEUE",
        "Shards -> hub queue bound (full: HTTP 503)";
    shard_queue: usize = "65536", "ROOMCAST_SHARD_QUEUE",
        "Hub -> shard queue bound (full: the hub waits for that shard)";
    notify_max_group_size: usize = "10000", "ROOMCAST_NOTIFY_MAX_GROUP_SIZE",
        "No 1001/1002 notices in groups larger than this";
    max_name_bytes: usize = "256", "ROOMCAST_MAX_NAME_BYTES",
        "Longest systemId, groupName or userId in bytes (400 beyond)";
    max_extend_bytes: usize = "4096", "ROOMCAST_MAX_EXTEND_BYTES",
        "Longest extend of a bind in bytes (400 beyond)";
    max_groups_per_client: usize = "1000", "ROOMCAST_MAX_GROUPS_PER_CLIENT",
        "Groups one client may be in at once (400 beyond)";
    groups_page_size: usize = "1000", "ROOMCAST_GROUPS_PAGE_SIZE",
        "Most groups in one get_all_groups answer; a system with more is read in pages";
    systems: String = none, "ROOMCAST_SYSTEMS",
        "Systems registered at every start, comma-separated (a list in the file): connects and calls for them never wait for a register call";
    state_dir: PathBuf = none, "ROOMCAST_STATE_DIR",
        "Single node: keep the registered systems in this directory across restarts (state.json, written atomically after each register and at shutdown)";
    history_size: usize = "0", "ROOMCAST_HISTORY_SIZE",
        "Messages kept per group for get_group_history (0: off); at most 10000";
    history_ttl: Duration = "10m", "ROOMCAST_HISTORY_TTL",
        "How long a group's kept messages stay (also after its last member left)";
    #[arg(hide_env_values = true)]
    webhook_url: String = none, "ROOMCAST_WEBHOOK_URL",
        "Presence webhooks: POST events here (http:// or https://)";
    #[arg(hide_env_values = true)]
    webhook_secret: String = none, "ROOMCAST_WEBHOOK_SECRET",
        "Sign webhook bodies with this key (X-Roomcast-Signature: sha256=<HMAC>)";
    webhook_batch_size: usize = "100", "ROOMCAST_WEBHOOK_BATCH_SIZE",
        "Most events in one webhook request";
    webhook_batch_delay: Duration = "100ms", "ROOMCAST_WEBHOOK_BATCH_DELAY",
        "Longest an event waits for its batch to fill";
    webhook_timeout: Duration = "5s", "ROOMCAST_WEBHOOK_TIMEOUT",
        "A webhook request without an answer within this is retried";
    webhook_retry_for: Duration = "10m", "ROOMCAST_WEBHOOK_RETRY_FOR",
        "A batch is retried (backoff 100ms doubling to 30s) for this long, then dropped";
    webhook_queue: usize = "100000", "ROOMCAST_WEBHOOK_QUEUE",
        "Webhook events that may wait; beyond, the oldest are dropped";
    recovery_window: Duration = "120s", "ROOMCAST_RECOVERY_WINDOW",
        "How long a session whose connection dropped (recover=1) can be resumed";
    recovery_max_bytes: usize = "1048576", "ROOMCAST_RECOVERY_MAX_BYTES",
        "Frame bytes (each + 64) a recoverable session keeps for its client; a detached session past it ends";
    max_recovery_sessions: usize = "100000", "ROOMCAST_MAX_RECOVERY_SESSIONS",
        "Sessions kept for recovery without a connection (split evenly between shards); beyond, the oldest ends";
    #[arg(num_args = 0..=1, default_missing_value = "true")]
    client_publish: bool = "false", "ROOMCAST_CLIENT_PUBLISH",
        "Let clients publish to their groups";
    log_format: String = "text", "ROOMCAST_LOG_FORMAT",
        "Log lines on stderr: text (coloured only on a terminal, never with NO_COLOR set) or json (one object per line)";
    shutdown_timeout: Duration = "5s", "ROOMCAST_SHUTDOWN_TIMEOUT",
        "Bound on graceful shutdown (close 1001 to everyone, flush)";
    node_id: NodeId = (NodeId(fastrand::u32(..)), "random"), "ROOMCAST_NODE_ID",
        "Node id (hex, up to 8 digits) embedded in clientIds";
    #[arg(hide_env_values = true)]
    redis: String = none, "ROOMCAST_REDIS",
        "Redis URL: redis://[:password@]host:6379[/db], rediss:// (TLS), redis+sentinel://[:password@]host:26379[,host:port…]/<master>[/db] (rediss+sentinel:// for TLS), or redis+cluster://[:password@]host:6379[,host:port…] (a Redis Cluster; rediss+cluster:// for TLS): turns cluster mode on";
    redis_prefix: String = "rc:", "ROOMCAST_REDIS_PREFIX",
        "Cluster mode: prefix of every Redis key and channel, so several clusters can share one Redis";
    redis_ca: PathBuf = none, "ROOMCAST_REDIS_CA",
        "Cluster mode: PEM certificates trusted for rediss:// (Redis and Sentinel) instead of the system's";
    broker_queue_bytes: usize = "67108864", "ROOMCAST_BROKER_QUEUE_BYTES",
        "Cluster mode: frame bytes of sends waiting to go to Redis; beyond, sends answer 503";
    presence_ttl: Duration = "15s", "ROOMCAST_PRESENCE_TTL",
        "Cluster mode: a dead node's clients leave presence within about this (300ms..10m)";
    redis_max_stall: Duration = "100ms", "ROOMCAST_REDIS_MAX_STALL",
        "Cluster mode: longest the pub/sub reader waits for a hub that is behind, in any second, before it drops frames (0..1s; Redis must buffer what arrives meanwhile)";
}

/// The resolved server configuration: every [`Settings`] field (read through `Deref`), checked
/// for consistency, plus what is derived from them.
#[derive(Clone, Debug)]
pub struct Config {
    settings: Settings,
    /// The JWT key for the API (from `jwt_secret` or `jwt_public_key` + `jwt_alg`).
    pub jwt: JwtKey,
    /// `allowed_origins`, parsed.
    pub origins: Option<crate::protocol::origin::Origins>,
    /// `subprotocols`, parsed (empty: none accepted).
    pub subprotocols: Vec<Box<str>>,
    /// `redis_ca`'s contents.
    pub redis_ca: Option<Vec<u8>>,
    /// `systems`, parsed: registered at start, each once.
    pub start_systems: Vec<Box<str>>,
    /// `node_id` was given (flag, environment or file), not drawn at random.
    pub node_id_given: bool,
}

impl Config {
    /// A single node's start found the node id its kept sessions were given (`state_dir`):
    /// it is this run's too, unless one was given. Returns the node id in force.
    pub fn take_node_id(&mut self, kept: NodeId) -> NodeId {
        if !self.node_id_given {
            self.settings.node_id = kept;
        }
        self.settings.node_id
    }
}

impl Deref for Config {
    type Target = Settings;
    fn deref(&self) -> &Settings {
        &self.settings
    }
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// The JWT verification key.
#[derive(Clone, Debug)]
pub enum JwtKey {
    None,
    Secret(String),
    PublicKey { pem: Vec<u8>, alg: jsonwebtoken::Algorithm },
}

/// `roomcast` command line.
#[derive(Parser, Debug)]
#[command(name = "roomcast", version, about = "Realtime WebSocket push server (go-websocket compatible)")]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Print an HS256 token: an API token for --system, an operator token without it, or with
    /// --connect a connect token for a browser (opens /ws only; never calls the API).
    Token(TokenArgs),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Scope the token to this systemId.
    #[arg(long)]
    pub system: Option<String>,
    /// A connect token (`?token=` of /ws): for --system, as --user, joining each --group.
    #[arg(long)]
    pub connect: bool,
    /// Connect token: the user (`sub`).
    #[arg(long)]
    pub user: Option<String>,
    /// Connect token: a group joined at connect (repeat for more).
    #[arg(long)]
    pub group: Vec<String>,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// HS256 secret.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// The soft open-file limit of this process.
pub fn open_file_limit() -> usize {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur as usize
    } else {
        1024
    }
}

impl ServeArgs {
    /// Merges the config file (if any) under these arguments, applies defaults and checks the
    /// result — all but the Redis URL, which cluster mode reads itself (`cluster::check_url`:
    /// the binary runs it right after this, `server::Server::start` before anything starts).
    pub fn resolve(mut self) -> Result<Config, String> {
        if let Some(path) = self.config.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let table: toml::Table =
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
            self.merge_file(table).map_err(|e| format!("config file {}: {e}", path.display()))?;
        }
        let node_id_given = self.node_id.is_some();
        let mut s = self.settings();
        s.hub_queue = s.hub_queue.max(16);
        s.shard_queue = s.shard_queue.max(16);
        s.redis = s.redis.filter(|r| !r.is_empty());
        let jwt = jwt_key(&s)?;
        let redis_ca = match &s.redis_ca {
            Some(p) => Some(std::fs::read(p).map_err(|e| format!("cannot read --redis-ca {}: {e}", p.display()))?),
            None => None,
        };
        check_serving(&s)?;
        check_cluster(&s)?;
        check_durations(&s)?;
        check_bounds(&s)?;
        let origins = s.allowed_origins.as_deref().map(crate::protocol::origin::Origins::parse).transpose()?;
        let subprotocols = crate::protocol::http::parse_subprotocols(s.subprotocols.as_deref().unwrap_or(""))?;
        let start_systems = start_systems(&s)?;
        if let Some(dir) = &s.state_dir {
            crate::state::check_dir(dir)?;
        }
        Ok(Config { settings: s, jwt, origins, subprotocols, redis_ca, start_systems, node_id_given })
    }
}

/// `systems`: each name non-empty and within `max_name_bytes`; a name given twice counts once.
fn start_systems(s: &Settings) -> Result<Vec<Box<str>>, String> {
    let mut out: Vec<Box<str>> = Vec::new();
    for name in s.systems.as_deref().unwrap_or("").split(',').map(str::trim) {
        if name.is_empty() {
            if s.systems.as_deref().is_some_and(|l| !l.trim().is_empty()) {
                return Err("systems: an empty systemId in the list".into());
            }
            continue;
        }
        if name.len() > s.max_name_bytes {
            return Err(format!("systems: '{name}' is longer than max_name_bytes ({})", s.max_name_bytes));
        }
        if !out.iter().any(|n| **n == *name) {
            out.push(name.into());
        }
    }
    Ok(out)
}

/// The API's key, and whether serving without one is allowed here.
fn jwt_key(s: &Settings) -> Result<JwtKey, String> {
    let jwt = match (&s.jwt_secret, &s.jwt_public_key) {
        (Some(_), Some(_)) => return Err("give either --jwt-secret or --jwt-public-key, not both".into()),
        (Some(k), None) if k.is_empty() => return Err("--jwt-secret is empty".into()),
        (Some(k), None) => JwtKey::Secret(k.clone()),
        (None, Some(p)) => {
            let pem = std::fs::read(p).map_err(|e| format!("cannot read --jwt-public-key {}: {e}", p.display()))?;
            let alg = match s.jwt_alg.to_ascii_uppercase().as_str() {
                "RS256" => jsonwebtoken::Algorithm::RS256,
                "ES256" => jsonwebtoken::Algorithm::ES256,
                other => return Err(format!("--jwt-alg {other}: use RS256 or ES256")),
            };
            JwtKey::PublicKey { pem, alg }
        }
        (None, None) => JwtKey::None,
    };
    if matches!(jwt, JwtKey::None) {
        if !s.listen.ip().is_loopback() && !s.insecure_no_auth {
            return Err(format!(
                "refusing to serve an open API on {}: give --jwt-secret or --jwt-public-key, \
                 or --insecure-no-auth if this network is trusted",
                s.listen
            ));
        }
        if s.ws_auth {
            return Err("--ws-auth needs --jwt-secret or --jwt-public-key".into());
        }
    }
    Ok(jwt)
}

/// Shards, paths, TLS and webhook settings that go together.
fn check_serving(s: &Settings) -> Result<(), String> {
    if s.shards == 0 || s.shards > 256 {
        return Err(format!("--shards {}: must be 1..=256", s.shards));
    }
    if !matches!(s.log_format.as_str(), "text" | "json") {
        return Err(format!("--log-format {}: must be text or json", s.log_format));
    }
    if let Some(p) = &s.echo_path {
        if !p.starts_with('/') || p == "/ws" || p.starts_with("/api") {
            return Err(format!("--echo-path {p}: must start with / and not clash with /ws or /api"));
        }
    }
    if s.tls_cert.is_some() != s.tls_key.is_some() {
        return Err("tls_cert and tls_key go together: give both, or neither".into());
    }
    if let Some(u) = &s.webhook_url {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            return Err(format!("webhook_url {}: must start with http:// or https://", redact_url(u)));
        }
    }
    Ok(())
}

/// Cluster mode's settings: a usable Redis URL, a sane prefix and timings.
/// (The Redis URL itself is read by `cluster::endpoint`: the binary checks it right after
/// these, `cluster::check_url`.)
fn check_cluster(s: &Settings) -> Result<(), String> {
    if s.redis_prefix.len() > 64 || s.redis_prefix.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(format!("redis_prefix '{}': at most 64 bytes, no spaces or control characters", s.redis_prefix));
    }
    if s.presence_ttl < Duration::from_millis(300) || s.presence_ttl > Duration::from_secs(600) {
        return Err("presence_ttl must be between 300ms and 10m".into());
    }
    if s.redis_max_stall > Duration::from_secs(1) {
        return Err(format!(
            "redis_max_stall = {:?}: at most 1s (it is a share of each second the pub/sub reader may wait)",
            s.redis_max_stall
        ));
    }
    if s.redis.is_some() && s.state_dir.is_some() {
        return Err("state_dir is for a single node: cluster mode keeps registered systems in Redis \
                    (pre-register them with systems)"
            .into());
    }
    Ok(())
}

/// Sizes and counts: each within its range.
fn check_bounds(s: &Settings) -> Result<(), String> {
    if s.ping_interval.is_zero() || s.idle_timeout.is_zero() || s.request_timeout.is_zero() {
        return Err("ping_interval, idle_timeout and request_timeout must be > 0".into());
    }
    if s.output_soft_limit > s.output_hard_limit {
        return Err("output_soft_limit must not exceed output_hard_limit".into());
    }
    if s.webhook_batch_size == 0 || s.webhook_queue == 0 || s.webhook_timeout.is_zero() {
        return Err("webhook_batch_size, webhook_queue and webhook_timeout must be > 0".into());
    }
    if s.history_size > 10_000 {
        return Err("history_size must be at most 10000".into());
    }
    if s.history_ttl.is_zero() {
        return Err("history_ttl must be > 0".into());
    }
    if s.max_name_bytes == 0 || s.groups_page_size == 0 || s.max_groups_per_client == 0 {
        return Err("max_name_bytes, max_groups_per_client and groups_page_size must be > 0".into());
    }
    if s.max_recovery_sessions < s.shards {
        return Err(format!(
            "max_recovery_sessions ({}) must be at least the number of shards ({}): each keeps its share",
            s.max_recovery_sessions, s.shards
        ));
    }
    if !(1..=128).contains(&s.per_ip_ipv6_prefix) {
        return Err(format!("per_ip_ipv6_prefix must be 1..=128, not {}", s.per_ip_ipv6_prefix));
    }
    if !(1..=9).contains(&s.compression_level) {
        return Err(format!("compression_level must be 1..=9, not {}", s.compression_level));
    }
    Ok(())
}

/// The longest a duration the event loops time on their clock may be: a shard's clock is
/// `u32` milliseconds, wrapping, compared by `wrapping_sub`, so anything past a quarter of its
/// range (~12.4 days) would silently wrap.
pub const MAX_LOOP_DURATION: Duration = Duration::from_millis(u32::MAX as u64 / 4);

/// The longest any other duration may be.
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Refuses a duration out of range, naming its key (never wraps it silently).
fn check_durations(s: &Settings) -> Result<(), String> {
    let on_loop = [
        ("ping_interval", s.ping_interval),
        ("idle_timeout", s.idle_timeout),
        ("request_timeout", s.request_timeout),
        ("output_soft_seconds", s.output_soft_seconds),
        ("recovery_window", s.recovery_window),
        ("tls_handshake_timeout", s.tls_handshake_timeout),
        ("shutdown_timeout", s.shutdown_timeout),
    ];
    let others = [
        ("history_ttl", s.history_ttl),
        ("webhook_batch_delay", s.webhook_batch_delay),
        ("webhook_timeout", s.webhook_timeout),
        ("webhook_retry_for", s.webhook_retry_for),
    ];
    let days = |d: Duration| d.as_secs_f64() / 86400.0;
    let over = |key: &str, d: Duration, max: Duration| {
        Err(format!("{key} = {:.1} days: at most {:.1} days is allowed", days(d), days(max)))
    };
    for (key, d) in on_loop {
        if d > MAX_LOOP_DURATION {
            return over(key, d, MAX_LOOP_DURATION);
        }
    }
    for (key, d) in others {
        if d > MAX_DURATION {
            return over(key, d, MAX_DURATION);
        }
    }
    Ok(())
}

/// A duration on a shard's clock, in its milliseconds (checked at start: [`MAX_LOOP_DURATION`]).
pub fn loop_ms(d: Duration) -> u32 {
    debug_assert!(d <= MAX_LOOP_DURATION, "{d:?} was not checked at start");
    d.min(MAX_LOOP_DURATION).as_millis() as u32
}

/// The URL with any password hidden, for messages and logs.
pub fn redact_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => match url[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
            None => format!("{}***{}", &url[..s + 3], &url[at..]),
        },
        _ => url.to_string(),
    }
}

/// A URL as it may be shown in messages and logs: any password and the query hidden.
pub fn redact_url(url: &str) -> String {
    let url = redact_password(url);
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?***"),
        None => url,
    }
}

impl Default for Config {
    /// The defaults, on `127.0.0.1:0`, open API.
    fn default() -> Self {
        ServeArgs { listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))), ..ServeArgs::default() }
            .resolve()
            .expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = ServeArgs::default().resolve().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:7800");
        assert_eq!(c.max_message_size, 8192);
        assert_eq!(c.ping_interval, Duration::from_secs(25));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.output_hard_limit, 1 << 20);
    }

    #[test]
    fn open_api_refused_off_loopback() {
        let a = ServeArgs { listen: Some("0.0.0.0:7800".parse().unwrap()), ..Default::default() };
        assert!(a.resolve().unwrap_err().contains("--insecure-no-auth"));
        let a = ServeArgs {
            listen: Some("0.0.0.0:7800".parse().unwrap()),
            insecure_no_auth: Some(true),
            ..Default::default()
        };
        assert!(a.resolve().is_ok());
        let a = ServeArgs {
            listen: Some("0.0.0.0:7800".parse().unwrap()),
            jwt_secret: Some("s".into()),
            ..Default::default()
        };
        assert!(a.resolve().is_ok());
    }

    #[test]
    fn file_values_sit_under_cli_values() {
        let dir = std::env::temp_dir().join(format!("roomcast-cfg-{}", std::process::id()));
        std::fs::write(&dir, "shards = 3\nmax_message_size = 100\nping_interval = \"2s\"\n").unwrap();
        let a = ServeArgs { config: Some(dir.clone()), shards: Some(1), ..Default::default() };
        let c = a.resolve().unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!(c.shards, 1);
        assert_eq!(c.max_message_size, 100);
        assert_eq!(c.ping_interval, Duration::from_secs(2));
    }

    #[test]
    fn boolean_flags_work_bare_or_with_a_value() {
        let cli = Cli::try_parse_from(["roomcast", "--listen", "0.0.0.0:7800", "--insecure-no-auth"]).unwrap();
        assert!(cli.serve.resolve().is_ok());
        let cli = Cli::try_parse_from(["roomcast", "--client-publish", "--shards", "1"]).unwrap();
        assert!(cli.serve.resolve().unwrap().client_publish);
        let cli = Cli::try_parse_from(["roomcast", "--client-publish", "false"]).unwrap();
        assert!(!cli.serve.resolve().unwrap().client_publish);
        let cli = Cli::try_parse_from(["roomcast", "serve", "--shards", "3"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Serve(a)) if a.shards == Some(3)));
    }

    #[test]
    fn bad_values_are_explained() {
        let e = Cli::try_parse_from(["roomcast", "--ping-interval", "soon"]).unwrap_err().to_string();
        assert!(e.contains("ping-interval") && e.contains("duration"), "{e}");
        let a = ServeArgs { echo_path: Some("/ws".into()), ..Default::default() };
        assert!(a.resolve().is_err());
    }

    /// Security review, low: `idle_timeout = 50d` wrapped to about 7 hours on the event loop's
    /// clock. Out-of-range durations are refused at start, naming the key.
    #[test]
    fn durations_out_of_range_are_refused_by_name() {
        let a = ServeArgs { idle_timeout: Some(Duration::from_secs(50 * 86400)), ..Default::default() };
        let e = a.resolve().unwrap_err();
        assert_eq!(e, "idle_timeout = 50.0 days: at most 12.4 days is allowed");
        let a = ServeArgs { recovery_window: Some(MAX_LOOP_DURATION), ..Default::default() };
        assert!(a.resolve().is_ok());
        assert_eq!(loop_ms(MAX_LOOP_DURATION), u32::MAX / 4);
        let a = ServeArgs { webhook_retry_for: Some(Duration::from_secs(400 * 86400)), ..Default::default() };
        assert!(a.resolve().unwrap_err().starts_with("webhook_retry_for"));
    }

    /// Security review, low: a config error echoed the webhook URL with its credentials.
    #[test]
    fn urls_in_errors_are_redacted() {
        let a = ServeArgs { webhook_url: Some("ftp://user:hunter2@h/x?token=abc".into()), ..Default::default() };
        let e = a.resolve().unwrap_err();
        assert!(!e.contains("hunter2") && !e.contains("abc") && e.contains("ftp://user:***@h/x?***"), "{e}");
    }

    #[test]
    fn every_key_has_its_variable_and_file_key() {
        for (key, env) in KEYS {
            assert_eq!(*env, format!("ROOMCAST_{}", key.to_ascii_uppercase()), "{key}");
        }
        let dir = std::env::temp_dir().join(format!("roomcast-keys-{}", std::process::id()));
        let text: String =
            KEYS.iter().filter(|(k, _)| k.starts_with("max_")).map(|(k, _)| format!("{k} = 7\n")).collect();
        std::fs::write(&dir, text).unwrap();
        let c = ServeArgs { config: Some(dir.clone()), ..Default::default() }.resolve().unwrap();
        std::fs::remove_file(&dir).ok();
        assert_eq!((c.max_body_size, c.max_name_bytes, c.max_groups_per_client), (7, 7, 7));
    }
}
