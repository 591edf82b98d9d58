//! Configuration: command line > `ROOMCAST_<KEY>` environment > `--config FILE` (TOML, same
//! keys in snake_case) > built-in defaults. [`Config`] is the resolved result; every field
//! documents its default and trade-off.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

/// The resolved server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Listen address. Default `127.0.0.1:7800`.
    pub listen: SocketAddr,
    /// Event-loop threads, each with its own SO_REUSEPORT listener. Default: available cores.
    pub shards: usize,
    /// JWT key for the HTTP API; `None` leaves the API open (loopback only).
    pub jwt: JwtKey,
    /// Require a JWT (`?token=`) on WebSocket connects too. Default off.
    pub ws_auth: bool,
    /// Serve an echo WebSocket at this path (conformance testing). Default off.
    pub echo_path: Option<String>,
    /// Cap on open TCP connections; beyond it new ones get 503. Default: open-file limit − 64.
    pub max_connections: usize,
    /// Largest incoming WebSocket message on `/ws` (close 1009 beyond). Default 8192 (upstream).
    pub max_message_size: usize,
    /// Largest incoming message on the echo path. Default 16 MiB (Autobahn 9.*).
    pub echo_max_message_size: usize,
    /// Largest HTTP request head (431 beyond). Default 8192.
    pub max_header_size: usize,
    /// Largest HTTP request body (413 beyond). Default 1 MiB.
    pub max_body_size: usize,
    /// Heartbeat ping period. Default 25 s (upstream).
    pub ping_interval: Duration,
    /// Close a connection that sent nothing (not even a pong) for this long. Default 60 s.
    pub idle_timeout: Duration,
    /// Output buffer hard limit per client: exceeded ⇒ closed 1008 at once. Default 1 MiB.
    pub output_hard_limit: usize,
    /// Output buffer soft limit: exceeded continuously for `output_soft_seconds` ⇒ closed 1008.
    /// Default 256 KiB.
    pub output_soft_limit: usize,
    /// See `output_soft_limit`. Default 10 s.
    pub output_soft_seconds: Duration,
    /// Bound of the shards → hub command queue (full ⇒ 503). Default 65536.
    pub hub_queue: usize,
    /// Bound of each hub → shard queue (full ⇒ the hub waits for that shard). Default 65536.
    pub shard_queue: usize,
    /// Groups larger than this get no 1001/1002 notices. Default 10000.
    pub notify_max_group_size: usize,
    /// Let clients publish to groups they belong to (`{"cmd":"publish",...}`). Default off.
    pub client_publish: bool,
    /// Bound on graceful shutdown (close 1001 to everyone, flush). Default 5 s.
    pub shutdown_timeout: Duration,
    /// Node id embedded in clientIds. Default random.
    pub node_id: u32,
    /// Cluster mode: the Redis URL (`None`: single node).
    pub redis: Option<String>,
    /// Cluster mode: how long a node's presence outlives its last heartbeat.
    pub presence_ttl: Duration,
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
    /// Print an HS256 token (no --system: an operator token).
    Token(TokenArgs),
}

#[derive(Args, Debug)]
pub struct TokenArgs {
    /// Scope the token to this systemId.
    #[arg(long)]
    pub system: Option<String>,
    /// Lifetime, e.g. 30m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// HS256 secret.
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// Server options; each can also be set as `ROOMCAST_<KEY>` or in the `--config` file.
#[derive(Args, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeArgs {
    /// TOML config file with the same keys (snake_case).
    #[arg(long, env = "ROOMCAST_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Listen address [default: 127.0.0.1:7800]
    #[arg(long, env = "ROOMCAST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Event-loop threads [default: available cores]
    #[arg(long, env = "ROOMCAST_SHARDS")]
    pub shards: Option<usize>,
    /// HS256 secret for API tokens
    #[arg(long, env = "ROOMCAST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// PEM public key file for RS256/ES256 API tokens
    #[arg(long, env = "ROOMCAST_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<PathBuf>,
    /// Algorithm of --jwt-public-key: RS256 or ES256 [default: RS256]
    #[arg(long, env = "ROOMCAST_JWT_ALG")]
    pub jwt_alg: Option<String>,
    /// Allow an open API (no JWT key) on a non-loopback address [default: false]
    #[arg(long, env = "ROOMCAST_INSECURE_NO_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_no_auth: Option<bool>,
    /// Require a JWT (?token=) on WebSocket connects [default: false]
    #[arg(long, env = "ROOMCAST_WS_AUTH", num_args = 0..=1, default_missing_value = "true")]
    pub ws_auth: Option<bool>,
    /// Serve an echo WebSocket at this path, for conformance tests [default: off]
    #[arg(long, env = "ROOMCAST_ECHO_PATH")]
    pub echo_path: Option<String>,
    /// Max open TCP connections [default: open-file limit - 64]
    #[arg(long, env = "ROOMCAST_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Max incoming WebSocket message bytes on /ws [default: 8192]
    #[arg(long, env = "ROOMCAST_MAX_MESSAGE_SIZE")]
    pub max_message_size: Option<usize>,
    /// Max incoming message bytes on the echo path [default: 16777216]
    #[arg(long, env = "ROOMCAST_ECHO_MAX_MESSAGE_SIZE")]
    pub echo_max_message_size: Option<usize>,
    /// Max HTTP request head bytes [default: 8192]
    #[arg(long, env = "ROOMCAST_MAX_HEADER_SIZE")]
    pub max_header_size: Option<usize>,
    /// Max HTTP request body bytes [default: 1048576]
    #[arg(long, env = "ROOMCAST_MAX_BODY_SIZE")]
    pub max_body_size: Option<usize>,
    /// Heartbeat ping period, e.g. 25s [default: 25s]
    #[arg(long, env = "ROOMCAST_PING_INTERVAL")]
    pub ping_interval: Option<String>,
    /// Close connections silent for this long [default: 60s]
    #[arg(long, env = "ROOMCAST_IDLE_TIMEOUT")]
    pub idle_timeout: Option<String>,
    /// Per-client output buffer hard limit in bytes [default: 1048576]
    #[arg(long, env = "ROOMCAST_OUTPUT_HARD_LIMIT")]
    pub output_hard_limit: Option<usize>,
    /// Per-client output buffer soft limit in bytes [default: 262144]
    #[arg(long, env = "ROOMCAST_OUTPUT_SOFT_LIMIT")]
    pub output_soft_limit: Option<usize>,
    /// How long the soft limit may be exceeded [default: 10s]
    #[arg(long, env = "ROOMCAST_OUTPUT_SOFT_SECONDS")]
    pub output_soft_seconds: Option<String>,
    /// Shards -> hub queue bound [default: 65536]
    #[arg(long, env = "ROOMCAST_HUB_QUEUE")]
    pub hub_queue: Option<usize>,
    /// Hub -> shard queue bound [default: 65536]
    #[arg(long, env = "ROOMCAST_SHARD_QUEUE")]
    pub shard_queue: Option<usize>,
    /// No 1001/1002 notices in groups larger than this [default: 10000]
    #[arg(long, env = "ROOMCAST_NOTIFY_MAX_GROUP_SIZE")]
    pub notify_max_group_size: Option<usize>,
    /// Let clients publish to their groups [default: false]
    #[arg(long, env = "ROOMCAST_CLIENT_PUBLISH", num_args = 0..=1, default_missing_value = "true")]
    pub client_publish: Option<bool>,
    /// Bound on graceful shutdown [default: 5s]
    #[arg(long, env = "ROOMCAST_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<String>,
    /// Node id (hex, 8 digits) embedded in clientIds [default: random]
    #[arg(long, env = "ROOMCAST_NODE_ID")]
    pub node_id: Option<String>,
    /// Redis URL such as redis://:password@host:6379/0: turns cluster mode on [default: off]
    #[arg(long, env = "ROOMCAST_REDIS")]
    pub redis: Option<String>,
    /// Cluster mode: a dead node's clients leave presence within this [default: 15s]
    #[arg(long, env = "ROOMCAST_PRESENCE_TTL")]
    pub presence_ttl: Option<String>,
}

macro_rules! merge {
    ($cli:ident, $file:ident, $($f:ident),*) => { $( if $cli.$f.is_none() { $cli.$f = $file.$f.take(); } )* };
}

fn duration(v: Option<String>, key: &str, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(&s)
            .map_err(|e| format!("{key}: invalid duration '{s}': {e} (e.g. 25s, 500ms, 1m)")),
    }
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
    /// Merges the config file (if any) under these arguments and resolves defaults.
    pub fn resolve(mut self) -> Result<Config, String> {
        if let Some(path) = self.config.clone() {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
            let mut file: ServeArgs =
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?;
            merge!(
                self,
                file,
                listen,
                shards,
                jwt_secret,
                jwt_public_key,
                jwt_alg,
                insecure_no_auth,
                ws_auth,
                echo_path,
                max_connections,
                max_message_size,
                echo_max_message_size,
                max_header_size,
                max_body_size,
                ping_interval,
                idle_timeout,
                output_hard_limit,
                output_soft_limit,
                output_soft_seconds,
                hub_queue,
                shard_queue,
                notify_max_group_size,
                client_publish,
                shutdown_timeout,
                node_id,
                redis,
                presence_ttl
            );
        }
        let listen =
            self.listen.unwrap_or_else(|| "127.0.0.1:7800".parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7800))));
        let jwt = match (self.jwt_secret, self.jwt_public_key) {
            (Some(_), Some(_)) => return Err("give either --jwt-secret or --jwt-public-key, not both".into()),
            (Some(s), None) if s.is_empty() => return Err("--jwt-secret is empty".into()),
            (Some(s), None) => JwtKey::Secret(s),
            (None, Some(p)) => {
                let pem =
                    std::fs::read(&p).map_err(|e| format!("cannot read --jwt-public-key {}: {e}", p.display()))?;
                let alg = match self.jwt_alg.as_deref().unwrap_or("RS256").to_ascii_uppercase().as_str() {
                    "RS256" => jsonwebtoken::Algorithm::RS256,
                    "ES256" => jsonwebtoken::Algorithm::ES256,
                    other => return Err(format!("--jwt-alg {other}: use RS256 or ES256")),
                };
                JwtKey::PublicKey { pem, alg }
            }
            (None, None) => JwtKey::None,
        };
        let ws_auth = self.ws_auth.unwrap_or(false);
        if matches!(jwt, JwtKey::None) {
            if !listen.ip().is_loopback() && !self.insecure_no_auth.unwrap_or(false) {
                return Err(format!(
                    "refusing to serve an open API on {listen}: give --jwt-secret or --jwt-public-key, \
                     or --insecure-no-auth if this network is trusted"
                ));
            }
            if ws_auth {
                return Err("--ws-auth needs --jwt-secret or --jwt-public-key".into());
            }
        }
        let shards = self.shards.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
        if shards == 0 || shards > 256 {
            return Err(format!("--shards {shards}: must be 1..=256"));
        }
        if let Some(p) = &self.echo_path {
            if !p.starts_with('/') || p == "/ws" || p.starts_with("/api") {
                return Err(format!("--echo-path {p}: must start with / and not clash with /ws or /api"));
            }
        }
        let node_id = match self.node_id {
            Some(s) => u32::from_str_radix(&s, 16).map_err(|_| format!("--node-id {s}: must be up to 8 hex digits"))?,
            None => fastrand::u32(..),
        };
        let c = Config {
            listen,
            shards,
            jwt,
            ws_auth,
            echo_path: self.echo_path,
            max_connections: self.max_connections.unwrap_or_else(|| open_file_limit().saturating_sub(64).max(1)),
            max_message_size: self.max_message_size.unwrap_or(8192),
            echo_max_message_size: self.echo_max_message_size.unwrap_or(16 << 20),
            max_header_size: self.max_header_size.unwrap_or(8192),
            max_body_size: self.max_body_size.unwrap_or(1 << 20),
            ping_interval: duration(self.ping_interval, "ping_interval", Duration::from_secs(25))?,
            idle_timeout: duration(self.idle_timeout, "idle_timeout", Duration::from_secs(60))?,
            output_hard_limit: self.output_hard_limit.unwrap_or(1 << 20),
            output_soft_limit: self.output_soft_limit.unwrap_or(256 << 10),
            output_soft_seconds: duration(self.output_soft_seconds, "output_soft_seconds", Duration::from_secs(10))?,
            hub_queue: self.hub_queue.unwrap_or(65536).max(16),
            shard_queue: self.shard_queue.unwrap_or(65536).max(16),
            notify_max_group_size: self.notify_max_group_size.unwrap_or(10_000),
            client_publish: self.client_publish.unwrap_or(false),
            shutdown_timeout: duration(self.shutdown_timeout, "shutdown_timeout", Duration::from_secs(5))?,
            node_id,
            redis: self.redis.filter(|r| !r.is_empty()),
            presence_ttl: duration(self.presence_ttl, "presence_ttl", Duration::from_secs(15))?,
        };
        if let Some(url) = &c.redis {
            let client = redis::Client::open(url.as_str()).map_err(|e| format!("redis: invalid URL '{url}': {e}"))?;
            if !matches!(client.get_connection_info().addr(), redis::ConnectionAddr::Tcp(..)) {
                return Err(format!("redis: '{url}': only redis://host:port URLs (plain TCP) are supported"));
            }
        }
        if c.presence_ttl < Duration::from_millis(300) || c.presence_ttl > Duration::from_secs(600) {
            return Err("presence_ttl must be between 300ms and 10m".into());
        }
        if c.ping_interval.is_zero() || c.idle_timeout.is_zero() {
            return Err("ping_interval and idle_timeout must be > 0".into());
        }
        if c.output_soft_limit > c.output_hard_limit {
            return Err("output_soft_limit must not exceed output_hard_limit".into());
        }
        Ok(c)
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
        let a = ServeArgs { ping_interval: Some("soon".into()), ..Default::default() };
        assert!(a.resolve().unwrap_err().contains("ping_interval"));
        let a = ServeArgs { echo_path: Some("/ws".into()), ..Default::default() };
        assert!(a.resolve().is_err());
    }
}
